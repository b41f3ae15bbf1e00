//! `POST /api/segments/overlap` (DESIGN §8.4): sizes, pairwise intersections and Jaccard
//! indexes of segments with known memberships, and the checks of its input.

use reqwest::StatusCode;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::support::{assert_error, spawn_app, TestApp};

/// A segment holding `people`.
async fn segment_of(t: &TestApp, name: &str, people: &[Uuid]) -> Uuid {
    let seg = t.segment(name).await;
    t.db.execute(
        "INSERT INTO segment_member (segment_id, person_id) SELECT $1, unnest($2::uuid[])",
        &[&seg, &people],
    )
    .await
    .unwrap();
    seg
}

fn pair(body: &Value, a: Uuid, b: Uuid) -> &Value {
    body["pairs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["a"] == json!(a) && p["b"] == json!(b))
        .unwrap_or_else(|| panic!("no pair {a} {b} in {body}"))
}

#[tokio::test]
async fn sizes_intersections_and_jaccard_of_known_memberships() {
    let t = spawn_app().await;
    // 30 people: A holds 0..10, B 5..20, C 25..30, D and E nobody.
    let pool = t.segment("pool").await;
    let people = t.people_in_segment(pool, "o", 30).await;
    let a = segment_of(&t, "A", &people[0..10]).await;
    let b = segment_of(&t, "B", &people[5..20]).await;
    let c = segment_of(&t, "C", &people[25..30]).await;
    let d = segment_of(&t, "D", &[]).await;
    let e = segment_of(&t, "E", &[]).await;

    let (s, body) = t
        .post(
            "/api/segments/overlap",
            &json!({"segment_ids": [a, b, c, d, e, pool]}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let sizes: Vec<(Value, Value)> = body["segments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| (x["id"].clone(), x["size"].clone()))
        .collect();
    assert_eq!(
        sizes,
        [(a, 10), (b, 15), (c, 5), (d, 0), (e, 0), (pool, 30)].map(|(id, n)| (json!(id), json!(n))),
        "in the order asked"
    );
    assert_eq!(body["pairs"].as_array().unwrap().len(), 15, "6 choose 2");
    let ab = pair(&body, a, b);
    assert_eq!(ab["both"], 5);
    // 5 / (10 + 15 - 5)
    assert_eq!(ab["jaccard"].as_f64(), Some(0.25));
    assert_eq!(pair(&body, a, c)["both"], 0);
    assert_eq!(pair(&body, a, c)["jaccard"].as_f64(), Some(0.0));
    assert_eq!(pair(&body, b, pool)["both"], 15);
    assert_eq!(pair(&body, b, pool)["jaccard"].as_f64(), Some(0.5));
    assert_eq!(pair(&body, c, pool)["jaccard"].as_f64(), Some(5.0 / 30.0));
    let de = pair(&body, d, e);
    assert_eq!(
        (de["both"].as_i64(), de["jaccard"].as_f64()),
        (Some(0), Some(0.0)),
        "two empty segments: 0, not NaN"
    );
}

#[tokio::test]
async fn segment_ids_are_checked_and_an_unknown_segment_is_a_404() {
    let t = spawn_app().await;
    let pool = t.segment("pool").await;
    let people = t.people_in_segment(pool, "v", 3).await;
    let a = segment_of(&t, "A", &people).await;
    let eleven: Vec<Uuid> = (0..11).map(|_| Uuid::new_v4()).collect();
    for body in [
        json!({}),
        json!({"segment_ids": null}),
        json!({"segment_ids": [a]}),
        json!({"segment_ids": []}),
        json!({"segment_ids": eleven}),
        json!({"segment_ids": [a, a]}),
        json!({"segment_ids": [a, "not-a-uuid"]}),
        json!({"segment_ids": [a, 42]}),
        json!({"segment_ids": a}),
    ] {
        let (s, err) = t.post("/api/segments/overlap", &body).await;
        assert_error(s, &err, StatusCode::BAD_REQUEST, Some("segment_ids"));
    }
    let (s, err) = t
        .post(
            "/api/segments/overlap",
            &json!({"segment_ids": [a, pool], "x": 1}),
        )
        .await;
    assert_error(s, &err, StatusCode::BAD_REQUEST, Some("x"));

    let unknown = Uuid::new_v4();
    let (s, err) = t
        .post(
            "/api/segments/overlap",
            &json!({"segment_ids": [a, unknown]}),
        )
        .await;
    assert_error(s, &err, StatusCode::NOT_FOUND, None);
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains(&unknown.to_string()),
        "{err}"
    );
}
