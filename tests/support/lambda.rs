//! Invoking the Lambda handler with the sample API Gateway v2 events in `events/`.

use audience_sync::http::Group;
use audience_sync::lambda::handle_request;
use serde_json::Value;

use super::TestApp;

/// The id the sample events carry, replaced by a real one.
pub const PLACEHOLDER: &str = "00000000-0000-4000-8000-000000000000";

/// `events/{event}.json` (with `id` in place of the placeholder) through `group`'s handler, as
/// the binaries receive it: the status and the JSON body.
pub async fn invoke(t: &TestApp, group: Group, event: &str, id: Option<&str>) -> (u16, Value) {
    let path = format!("{}/events/{event}.json", env!("CARGO_MANIFEST_DIR"));
    let mut text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    if let Some(id) = id {
        text = text.replace(PLACEHOLDER, id);
    }
    let req = lambda_http::request::from_str(&text).unwrap_or_else(|e| panic!("{event}: {e}"));
    let resp = handle_request(&t.app, group, req).await;
    let status = resp.status().as_u16();
    let body = match resp.body() {
        lambda_http::Body::Text(s) if !s.is_empty() => serde_json::from_str(s).expect("JSON body"),
        lambda_http::Body::Empty => Value::Null,
        lambda_http::Body::Text(_) => Value::Null,
        other => panic!("unexpected body {other:?}"),
    };
    (status, body)
}
