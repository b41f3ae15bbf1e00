//! Invoking a Lambda's router with the sample API Gateway v2 events in `events/`.

use audience_sync::http::{router, Group};
use lambda_http::tower::ServiceExt;
use serde_json::Value;

use super::TestApp;

/// The id the sample events carry, replaced by a real one.
pub const PLACEHOLDER: &str = "00000000-0000-4000-8000-000000000000";

/// `events/{event}.json` (with `id` in place of the placeholder) as `lambda_http` hands it to the
/// router a function serves (`lambda_http::run(router(group, app))` in its `main`): the status
/// and the JSON body.
pub async fn invoke(t: &TestApp, group: Group, event: &str, id: Option<&str>) -> (u16, Value) {
    let path = format!("{}/events/{event}.json", env!("CARGO_MANIFEST_DIR"));
    let mut text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    if let Some(id) = id {
        text = text.replace(PLACEHOLDER, id);
    }
    let req = lambda_http::request::from_str(&text).unwrap_or_else(|e| panic!("{event}: {e}"));
    let resp = router(group, t.app.clone())
        .oneshot(req)
        .await
        .expect("the router answers every request");
    read(resp).await
}

/// A response's status and JSON body.
async fn read(resp: axum::response::Response) -> (u16, Value) {
    let status = resp.status().as_u16();
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .expect("response body");
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).expect("JSON body")
    };
    (status, body)
}

/// A `POST` of `body` to `path` as the function serving `group` receives it through the Lambda
/// runtime, which puts the invocation's context (with its deadline) in the request: `left` is
/// the time the invocation has. The status and the JSON body.
pub async fn post_within(
    t: &TestApp,
    group: Group,
    path: &str,
    body: &Value,
    left: std::time::Duration,
) -> (u16, Value) {
    let mut ctx = lambda_http::Context::default();
    let deadline = std::time::SystemTime::now() + left;
    ctx.deadline = deadline
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_millis() as u64;
    let req = lambda_http::http::Request::builder()
        .method("POST")
        .uri(path)
        .header("content-type", "application/json")
        .extension(ctx)
        .body(axum::body::Body::from(body.to_string()))
        .expect("request");
    let resp = router(group, t.app.clone())
        .oneshot(req)
        .await
        .expect("the router answers every request");
    read(resp).await
}
