//! End-to-end sync bench: a segment of BENCH_MEMBERS people (default 1,000,000) synced into an
//! audience against a real PostgreSQL (DATABASE_URL, or a throwaway local server): a rule
//! segment's refresh (from empty, nothing changed, after 1,000 people changed); the first full
//! sync and a sync with nothing changed, with Meta not configured and against the fake Graph API
//! on loopback; then one change, 1% churn, and an update pass. Prints times, rates and the
//! process's peak memory: numbers, not pass/fail. `cargo bench --bench sync` (release), or the
//! CI smoke run `.ci/bench-smoke` (debug build, 20,000 members).

#[path = "../tests/support/fake_meta/mod.rs"]
mod fake_meta;

use std::time::{Duration, Instant};

use audience_sync::config::Config;
use audience_sync::db::local::LocalPostgres;
use audience_sync::sync::{self, NoProgress, SyncType};
use audience_sync::{audience, db, segment, App};
use tokio_postgres::NoTls;
use uuid::Uuid;

/// Peak resident memory of this process so far (VmHWM), in MiB.
fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn current_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

async fn new_audience(app: &App, name: &str, segment: Uuid) -> Uuid {
    let db = app.pool.get().await.unwrap();
    let input: audience::NewAudience = serde_json::from_value(serde_json::json!({
        "name": name, "segment_id": segment,
    }))
    .unwrap();
    audience::create(&**db, input).await.unwrap().id
}

async fn timed_sync(app: &App, id: Uuid, t: SyncType, label: &str, members: u64) -> Duration {
    let before = current_rss_mib();
    let started = Instant::now();
    let r = sync::run(app, id, Some(t), &NoProgress, None)
        .await
        .unwrap();
    let took = started.elapsed();
    assert_eq!(r.status, sync::SyncStatus::Completed, "{r:?}");
    println!(
        "{label:<52} {:>8.2} s  {:>10.0} members/s  synced {:>8}  failed {:>5}  rss before {:>6.1} MiB, peak so far {:>6.1} MiB",
        took.as_secs_f64(),
        members as f64 / took.as_secs_f64(),
        r.synced_count,
        r.failed_count,
        before,
        peak_rss_mib()
    );
    took
}

#[tokio::main]
async fn main() {
    let n: i32 = std::env::var("BENCH_MEMBERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let (_server, admin) = match std::env::var("DATABASE_URL") {
        Ok(url) => (None, url),
        Err(_) => {
            let pg = LocalPostgres::start_ephemeral().expect("local PostgreSQL");
            let url = pg.url("postgres");
            (Some(pg), url)
        }
    };
    let name = format!("bench_{}", Uuid::new_v4().simple());
    db::ensure_database(&admin, &name).await.unwrap();
    let url = match admin.rsplit_once('/') {
        Some((base, _)) => format!("{base}/{name}"),
        None => admin.clone(),
    };
    db::migrate(&url, &db::CaSource::Embedded).await.unwrap();
    let (client, conn) = tokio_postgres::connect(&url, NoTls).await.unwrap();
    tokio::spawn(conn);

    let started = Instant::now();
    let segment: Uuid = client
        .query_one(
            "INSERT INTO segment (name) VALUES ('bench') RETURNING id",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    // Realistic, messy contact data: mixed case, spaces, national phone formats.
    client
        .execute(
            "INSERT INTO person (email, phone, first_name, last_name, city, state, zip, country, date_of_birth, gender, attributes) \
             SELECT ' User' || i || '@Example.com ', '(650) 555-' || lpad((i % 10000)::text, 4, '0'), \
                    'First' || (i % 997), 'Last-' || (i % 991), 'San Francisco', 'California', \
                    '94105-' || lpad((i % 10000)::text, 4, '0'), ' us ', \
                    date '1950-01-01' + (i % 20000), CASE WHEN i % 2 = 0 THEN 'F' ELSE 'male' END, \
                    jsonb_build_object('total_renders', i % 10) \
             FROM generate_series(1, $1) i",
            &[&n],
        )
        .await
        .unwrap();
    client
        .execute(
            "INSERT INTO segment_member (segment_id, person_id) SELECT $1, id FROM person",
            &[&segment],
        )
        .await
        .unwrap();
    client.batch_execute("VACUUM ANALYZE").await.unwrap();
    println!(
        "setup: {n} people in a segment in {:.1} s (not part of any sync)",
        started.elapsed().as_secs_f64()
    );
    let members = n as u64;
    let churn = (n / 100).max(1);

    // Meta not configured: the database side alone (members hashed and stored, nothing sent).
    let mut settings = Config::from_vars(&|_| None).unwrap();
    settings.database_url = Some(url.clone());
    settings.db_pool_size = 4;
    let db_only = App::build(&settings).await.unwrap();
    // Refreshes run on the service's own sessions (their settings: no JIT, timeouts).
    let session = db_only.pool.get().await.unwrap();
    let refresher: &tokio_postgres::Client = &session;

    // A rule segment over everyone: "High Engagers", total_renders >= 5 (half of them).
    let rule_segment: Uuid = client
        .query_one(
            "INSERT INTO segment (name, rule) VALUES ('High Engagers', \
             '{\"type\": \"condition\", \"attribute\": \"total_renders\", \"operator\": \">=\", \"value\": 5}') \
             RETURNING id",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    timed_refresh(
        refresher,
        rule_segment,
        "segment refresh, rule over all people, from empty",
        n,
    )
    .await;
    timed_refresh(
        refresher,
        rule_segment,
        "segment refresh, rule, nothing changed",
        n,
    )
    .await;
    // 1,000 people's trait moves by 5: each of them joins or leaves the rule's segment.
    client
        .execute(
            "UPDATE person SET attributes = jsonb_build_object('total_renders', \
                 ((attributes->>'total_renders')::int + 5) % 10), updated_at = now() \
             WHERE id IN (SELECT id FROM person ORDER BY id LIMIT 1000)",
            &[],
        )
        .await
        .unwrap();
    timed_refresh(
        refresher,
        rule_segment,
        "segment refresh, rule, after 1,000 people changed",
        n,
    )
    .await;

    // An audience's first sync comes after its people were imported, not a second after: it
    // should not share the machine with the checkpoints that setup's million rows and the
    // refreshes' half million set off (it still pays for those its own rows set off).
    if let Err(e) = client.batch_execute("CHECKPOINT").await {
        println!("(no CHECKPOINT before the first sync: {e})");
    }
    let a = new_audience(&db_only, "bench db-only", segment).await;
    timed_sync(
        &db_only,
        a,
        SyncType::Full,
        "first full sync, database only",
        members,
    )
    .await;
    timed_sync(
        &db_only,
        a,
        SyncType::Incremental,
        "incremental, no change, database only",
        members,
    )
    .await;

    // Against the fake Graph API (which holds every row in this same process: its memory
    // counts in the peak below, and it competes for the same cores).
    let fake = fake_meta::FakeMeta::start().await;
    let mut config = fake.meta_config();
    config.timeout = Duration::from_secs(120);
    config.retry = Default::default();
    settings.meta = Some(config);
    let app = App::build(&settings).await.unwrap();
    let b = new_audience(&app, "bench meta", segment).await;
    timed_sync(
        &app,
        b,
        SyncType::Full,
        "first full sync to Meta (fake, loopback)",
        members,
    )
    .await;
    timed_sync(
        &app,
        b,
        SyncType::Incremental,
        "incremental, no change, to Meta",
        members,
    )
    .await;

    // One change: one person joins the segment.
    join_segment(&client, segment, 1, "one").await;
    timed_sync(
        &app,
        b,
        SyncType::Incremental,
        "incremental, 1 change (a joiner), to Meta",
        members,
    )
    .await;

    // 1% churn: 1% leave, 1% join.
    client
        .execute(
            "DELETE FROM segment_member WHERE person_id IN \
             (SELECT person_id FROM segment_member WHERE segment_id = $1 LIMIT $2)",
            &[&segment, &(churn as i64)],
        )
        .await
        .unwrap();
    join_segment(&client, segment, churn, "joiner").await;
    // A churn synced hours after the last sync finds the pages it touches written out since
    // (each pays a full-page write to the WAL); and it does not share the machine with the
    // checkpoint that a million rows written just before set off.
    if let Err(e) = client.batch_execute("CHECKPOINT").await {
        println!("(no CHECKPOINT before the churn: {e})");
    }
    // Our own time (the diff, the member rows), then the same churn to the fake Graph API.
    timed_sync(
        &db_only,
        a,
        SyncType::Incremental,
        "incremental, 1% churn, database only",
        members,
    )
    .await;
    timed_sync(
        &app,
        b,
        SyncType::Incremental,
        "incremental, 1% churn, to Meta",
        members,
    )
    .await;
    timed_sync(
        &app,
        b,
        SyncType::Update,
        "update (re-hash all, none changed), to Meta",
        members,
    )
    .await;
    let held = {
        let db = app.pool.get().await.unwrap();
        let meta_id = audience::store::get(&**db, b)
            .await
            .unwrap()
            .meta_audience_id
            .unwrap();
        fake.member_count(&meta_id)
    };
    println!("fake Meta holds {held} members");
}

/// `count` new people (emails `<prefix><i>@example.com`) join `segment`.
async fn join_segment(client: &tokio_postgres::Client, segment: Uuid, count: i32, prefix: &str) {
    client
        .execute(
            "WITH p AS (INSERT INTO person (email, country) \
                        SELECT $3 || i || '@example.com', 'US' FROM generate_series(1, $2) i RETURNING id) \
             INSERT INTO segment_member (segment_id, person_id) SELECT $1, id FROM p",
            &[&segment, &count, &prefix],
        )
        .await
        .unwrap();
}

async fn timed_refresh(client: &tokio_postgres::Client, segment: Uuid, label: &str, people: i32) {
    let started = Instant::now();
    let r = segment::refresh(client, segment).await.unwrap();
    println!(
        "{label:<52} {:>8.2} s  ({people} people, {} members, {} joined, {} left)",
        started.elapsed().as_secs_f64(),
        r.member_count,
        r.joined,
        r.left
    );
}
