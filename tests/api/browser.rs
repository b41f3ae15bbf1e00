//! The local server refuses what a web page could make a developer's browser send it (DESIGN
//! §8.3); scripts and curl are served as before.

use reqwest::{Client, StatusCode};
use serde_json::{json, Value};

use crate::support::{assert_error, spawn_app, TestApp};

async fn send(req: reqwest::RequestBuilder) -> (StatusCode, Value) {
    let resp = req.send().await.expect("request");
    let status = resp.status();
    let text = resp.text().await.expect("body");
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

fn port(t: &TestApp) -> u16 {
    t.base.rsplit(':').next().unwrap().parse().unwrap()
}

#[tokio::test]
async fn a_body_that_is_not_json_is_refused_with_415_and_nothing_is_created() {
    let t = spawn_app().await;
    let http = Client::new();
    let body = json!({"name": "From a form"}).to_string();
    for content_type in [
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        Some("multipart/form-data; boundary=x"),
        None,
    ] {
        let mut req = http
            .post(format!("{}/api/audiences", t.base))
            .body(body.clone());
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        let (status, err) = send(req).await;
        assert_error(status, &err, StatusCode::UNSUPPORTED_MEDIA_TYPE, None);
    }
    let (_, list) = t.get("/api/audiences").await;
    assert_eq!(list["audiences"].as_array().unwrap().len(), 0, "{list}");
    // JSON with a charset parameter is JSON.
    let (status, created) = send(
        http.post(format!("{}/api/audiences", t.base))
            .header("content-type", "application/json; charset=utf-8")
            .body(body),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    // A POST without a body needs no content type (sync every active audience).
    let (status, all) = send(http.post(format!("{}/api/audiences/sync", t.base))).await;
    assert_eq!(status, StatusCode::OK, "{all}");
}

#[tokio::test]
async fn a_foreign_origin_is_refused_with_403_and_the_own_origin_is_served() {
    let t = spawn_app().await;
    let http = Client::new();
    let port = port(&t);
    for origin in [
        "https://evil.example".to_string(),
        "null".to_string(),
        format!("http://127.0.0.1:{}", port + 1),
        format!("https://localhost:{port}"),
    ] {
        let (status, err) = send(
            http.post(format!("{}/api/audiences", t.base))
                .header("origin", &origin)
                .json(&json!({"name": format!("from {origin}")})),
        )
        .await;
        assert_error(status, &err, StatusCode::FORBIDDEN, None);
        let (status, _) = send(
            http.get(format!("{}/api/audiences", t.base))
                .header("origin", &origin),
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{origin}");
    }
    for host in ["127.0.0.1", "localhost", "[::1]"] {
        let origin = format!("http://{host}:{port}");
        let (status, body) = send(
            http.get(format!("{}/api/audiences", t.base))
                .header("origin", &origin),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{origin}: {body}");
    }
}

#[tokio::test]
async fn a_host_that_is_not_loopback_is_refused_with_421() {
    let t = spawn_app().await;
    let http = Client::new();
    let port = port(&t);
    for host in [format!("evil.example:{port}"), "attacker.test".to_string()] {
        let (status, err) = send(
            http.get(format!("{}/api/audiences", t.base))
                .header("host", &host),
        )
        .await;
        assert_error(status, &err, StatusCode::MISDIRECTED_REQUEST, None);
    }
    for host in [format!("localhost:{port}"), format!("127.0.0.1:{port}")] {
        let (status, _) = send(
            http.get(format!("{}/api/audiences", t.base))
                .header("host", &host),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{host}");
    }
}
