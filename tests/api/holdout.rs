//! Holdouts (DESIGN §8.4) against the strict fake Graph API: the held-out people are never
//! sent, the holdout route lists exactly them, a new percentage moves people in and out at
//! the next sync (raising only adds to the holdout), and each audience has its own holdout.

use std::collections::HashSet;

use reqwest::StatusCode;
use serde_json::json;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::support::fake_meta::FakeMeta;
use crate::support::{assert_error, list_page, spawn_app_with, TestApp};

fn sha(s: &str) -> String {
    Sha256::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Every page of the holdout route, `limit` at a time, checking the order.
async fn holdout(t: &TestApp, id: &str, limit: usize) -> Vec<Uuid> {
    let mut all = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/audiences/{id}/holdout?limit={limit}&cursor={c}"),
            None => format!("/api/audiences/{id}/holdout?limit={limit}"),
        };
        let (items, next) = list_page(t, &path, "person_ids").await;
        assert!(items.len() <= limit);
        all.extend(
            items
                .iter()
                .map(|v| Uuid::parse_str(v.as_str().unwrap()).unwrap()),
        );
        match next {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    assert!(all.windows(2).all(|w| w[0] < w[1]), "in person id order");
    all
}

/// The people the SQL function puts in the holdout at `percent`.
async fn bucket_below(t: &TestApp, id: &str, people: &[Uuid], percent: i32) -> HashSet<Uuid> {
    let id = Uuid::parse_str(id).unwrap();
    crate::support::column::<Uuid>(
        &t.db,
        "SELECT p FROM unnest($2::uuid[]) p WHERE audience_holdout_bucket($1, p) < $3",
        &[&id, &people, &percent],
    )
    .await
    .into_iter()
    .collect()
}

/// The hashed emails of `people`, as Meta holds them.
async fn emails_of(t: &TestApp, people: &HashSet<Uuid>) -> HashSet<String> {
    let ids: Vec<Uuid> = people.iter().copied().collect();
    crate::support::column::<String>(
        &t.db,
        "SELECT lower(email) FROM person WHERE id = ANY($1)",
        &[&ids],
    )
    .await
    .iter()
    .map(|e| sha(e))
    .collect()
}

fn held_by_meta(fake: &FakeMeta, meta_id: &str) -> HashSet<String> {
    fake.members(meta_id)
        .into_iter()
        .map(|r| r[0].clone())
        .collect()
}

async fn meta_id(t: &TestApp, id: &str) -> String {
    let (_, a) = t.get(&format!("/api/audiences/{id}")).await;
    a["meta_audience_id"].as_str().unwrap().to_string()
}

async fn set_holdout(t: &TestApp, id: &str, percent: i32) {
    let (s, b) = t
        .put(
            &format!("/api/audiences/{id}"),
            &json!({"holdout_percent": percent}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
}

#[tokio::test]
async fn the_holdout_is_never_sent_and_is_what_the_route_lists() {
    let fake = FakeMeta::start().await;
    let t = spawn_app_with(Some(fake.meta_config())).await;
    let seg = t.segment("Everyone").await;
    let people = t.people_in_segment(seg, "h", 200).await;
    let a = t
        .create_audience(json!({"name": "Lift", "segment_id": seg, "holdout_percent": 20}))
        .await;
    let id = a["id"].as_str().unwrap();
    let expected = bucket_below(&t, id, &people, 20).await;
    assert!(
        (20..=60).contains(&expected.len()),
        "about 20% of 200: {}",
        expected.len()
    );

    let r = t.sync(id, "full").await;
    assert_eq!(r["status"], "completed", "{r}");
    let listed: HashSet<Uuid> = holdout(&t, id, 7).await.into_iter().collect();
    assert_eq!(listed, expected);
    let meta = held_by_meta(&fake, &meta_id(&t, id).await);
    let everyone: HashSet<Uuid> = people.iter().copied().collect();
    let sent: HashSet<Uuid> = everyone.difference(&expected).copied().collect();
    assert_eq!(meta, emails_of(&t, &sent).await, "exactly the others");
    assert!(meta.is_disjoint(&emails_of(&t, &expected).await));

    // An opted-out person is in neither.
    let out = *expected.iter().next().unwrap();
    t.db.execute(
        "UPDATE person SET marketing_opt_out = true WHERE id = $1",
        &[&out],
    )
    .await
    .unwrap();
    assert!(!holdout(&t, id, 1000).await.contains(&out));

    // A different audience on the same segment holds out other people.
    let b = t
        .create_audience(json!({"name": "Lift B", "segment_id": seg, "holdout_percent": 20}))
        .await;
    let other: HashSet<Uuid> = holdout(&t, b["id"].as_str().unwrap(), 1000)
        .await
        .into_iter()
        .collect();
    assert!(!other.is_empty());
    assert_ne!(other, listed);
}

#[tokio::test]
async fn raising_the_percentage_only_adds_to_the_holdout_and_lowering_releases() {
    let fake = FakeMeta::start().await;
    let t = spawn_app_with(Some(fake.meta_config())).await;
    let seg = t.segment("Everyone").await;
    let people = t.people_in_segment(seg, "r", 200).await;
    let everyone: HashSet<Uuid> = people.iter().copied().collect();
    let a = t
        .create_audience(json!({"name": "Lift", "segment_id": seg, "holdout_percent": 10}))
        .await;
    let id = a["id"].as_str().unwrap();
    let r = t.sync(id, "full").await;
    assert_eq!(r["status"], "completed", "{r}");
    let meta = meta_id(&t, id).await;
    let at10: HashSet<Uuid> = holdout(&t, id, 1000).await.into_iter().collect();

    set_holdout(&t, id, 20).await;
    let at20: HashSet<Uuid> = holdout(&t, id, 1000).await.into_iter().collect();
    assert!(at20.is_superset(&at10), "raising only adds");
    assert!(at20.len() > at10.len());
    // An incremental sync: the new percentage forces a full diff, the newly held out leave.
    let r = t.sync(id, "incremental").await;
    assert_eq!(r["status"], "completed", "{r}");
    let kept: HashSet<Uuid> = everyone.difference(&at20).copied().collect();
    assert_eq!(held_by_meta(&fake, &meta), emails_of(&t, &kept).await);
    assert_eq!(
        t.member_ids(id, "true").await.len(),
        kept.len(),
        "their member rows went with them"
    );

    set_holdout(&t, id, 10).await;
    assert_eq!(
        holdout(&t, id, 1000)
            .await
            .into_iter()
            .collect::<HashSet<_>>(),
        at10
    );
    let r = t.sync(id, "incremental").await;
    assert_eq!(r["status"], "completed", "{r}");
    let kept: HashSet<Uuid> = everyone.difference(&at10).copied().collect();
    assert_eq!(
        held_by_meta(&fake, &meta),
        emails_of(&t, &kept).await,
        "the released joined"
    );

    set_holdout(&t, id, 0).await;
    let (items, next) = list_page(&t, &format!("/api/audiences/{id}/holdout"), "person_ids").await;
    assert!(items.is_empty() && next.is_none());
}

#[tokio::test]
async fn the_holdout_route_checks_its_parameters() {
    let t = spawn_app_with(None).await;
    let seg = t.segment("S").await;
    t.people_in_segment(seg, "p", 5).await;
    let a = t
        .create_audience(json!({"name": "A", "segment_id": seg, "holdout_percent": 50}))
        .await;
    let id = a["id"].as_str().unwrap();
    for (query, field) in [
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("limit=x", "limit"),
        ("cursor=zz", "cursor"),
        ("cursor=abcd", "cursor"),
    ] {
        let (s, err) = t.get(&format!("/api/audiences/{id}/holdout?{query}")).await;
        assert_error(s, &err, StatusCode::BAD_REQUEST, Some(field));
    }
    let (s, err) = t
        .get(&format!("/api/audiences/{}/holdout", Uuid::new_v4()))
        .await;
    assert_error(s, &err, StatusCode::NOT_FOUND, None);
    let (s, err) = t.get("/api/audiences/nope/holdout").await;
    assert_error(s, &err, StatusCode::BAD_REQUEST, Some("id"));
}
