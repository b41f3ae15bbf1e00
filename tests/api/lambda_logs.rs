//! Logs of the Lambda path, in the JSON format Lambda gets: every line written while a request
//! is handled carries that request's id, each request has exactly one summary line (route,
//! status, latency), and no line carries contact data.

use std::sync::{Arc, Mutex};

use audience_sync::http::{router, Group};
use audience_sync::telemetry::json_subscriber;
use lambda_http::tower::ServiceExt;
use lambda_http::{Context, RequestExt};
use serde_json::Value;
use tracing_subscriber::EnvFilter;

use crate::support::{spawn_app, TestApp};

const PLACEHOLDER: &str = "00000000-0000-4000-8000-000000000000";

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Capture {
    type Writer = Capture;
    fn make_writer(&'a self) -> Capture {
        self.clone()
    }
}

impl Capture {
    fn lines(&self) -> Vec<Value> {
        let text = String::from_utf8(self.0.lock().unwrap().clone()).unwrap();
        text.lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|_| panic!("not JSON: {l}")))
            .collect()
    }
}

async fn invoke(t: &TestApp, group: Group, event: &str, id: Option<&str>, request_id: &str) -> u16 {
    let path = format!("{}/events/{event}.json", env!("CARGO_MANIFEST_DIR"));
    let mut text = std::fs::read_to_string(&path).unwrap();
    if let Some(id) = id {
        text = text.replace(PLACEHOLDER, id);
    }
    let mut ctx = Context::default();
    ctx.request_id = request_id.to_string();
    let req = lambda_http::request::from_str(&text)
        .unwrap()
        .with_lambda_context(ctx);
    let response = router(group, t.app.clone()).oneshot(req).await.unwrap();
    response.status().as_u16()
}

#[tokio::test]
async fn request_lines_carry_the_request_id_and_no_contact_data() {
    let t = spawn_app().await;
    let seg = t.segment("Log segment").await;
    t.people_in_segment(seg, "logpii", 5).await;

    let logs = Capture::default();
    let _guard =
        tracing::subscriber::set_default(json_subscriber(EnvFilter::new("info"), logs.clone()));

    assert_eq!(
        invoke(&t, Group::Audiences, "audiences-create", None, "req-create").await,
        201
    );
    let id: uuid::Uuid =
        t.db.query_one("SELECT id FROM custom_audience", &[])
            .await
            .unwrap()
            .get(0);
    t.db.execute(
        "UPDATE custom_audience SET segment_id = $1 WHERE id = $2",
        &[&seg, &id],
    )
    .await
    .unwrap();
    let id = id.to_string();
    assert_eq!(
        invoke(&t, Group::Sync, "sync-one", Some(&id), "req-sync").await,
        200
    );
    assert_eq!(
        invoke(
            &t,
            Group::Audiences,
            "audiences-create-invalid",
            None,
            "req-invalid"
        )
        .await,
        400
    );
    assert_eq!(
        invoke(&t, Group::Audience, "audience-get", Some(&id), "req-get").await,
        200
    );

    let lines = logs.lines();
    let ids = ["req-create", "req-sync", "req-invalid", "req-get"];
    for line in &lines {
        let rid = line["span"]["request_id"].as_str().unwrap_or("");
        assert!(ids.contains(&rid), "a line without the request id: {line}");
        let text = line.to_string().to_lowercase();
        assert!(
            !text.contains("logpii") && !text.contains("example.com"),
            "contact data in a log line: {line}"
        );
    }
    for rid in ids {
        let summaries: Vec<&Value> = lines
            .iter()
            .filter(|l| l["span"]["request_id"] == rid && l["message"] == "request")
            .collect();
        assert_eq!(summaries.len(), 1, "one summary line for {rid}: {lines:?}");
        let s = summaries[0];
        assert!(
            s["route"].is_string() && s["status"].is_u64() && s["latency_ms"].is_u64(),
            "{s}"
        );
    }
    let sync_line = lines
        .iter()
        .find(|l| l["message"] == "request" && l["span"]["request_id"] == "req-sync")
        .unwrap();
    assert_eq!(sync_line["route"], "/api/audiences/sync");
}
