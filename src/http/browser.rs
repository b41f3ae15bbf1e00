//! What the local server refuses because a web page could send it cross-site (DESIGN §8.3): a
//! `Host` that is not loopback (DNS rebinding) → 421, a foreign `Origin` → 403, a body that is
//! not JSON (a form or `text/plain` post needs no CORS preflight) → 415. Curl and scripts send
//! no `Origin` and are served. Only `audiences serve` has this layer: in AWS, API Gateway and
//! its authorizer stand in front of the functions.

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::Response;

use super::error::error_body;

/// The host names a loopback server answers to.
const LOOPBACK: [&str; 3] = ["localhost", "127.0.0.1", "[::1]"];

/// The checks, for a server listening on `port`.
pub async fn guard(State(port): State<u16>, req: Request, next: Next) -> Response {
    match refusal(req.headers(), port) {
        Some(response) => response,
        None => next.run(req).await,
    }
}

fn refusal(headers: &HeaderMap, port: u16) -> Option<Response> {
    let text = |name| headers.get(name).map(|v| v.to_str().unwrap_or("\u{0}"));
    if let Some(host) = text(header::HOST) {
        if !LOOPBACK.contains(&host_name(host)) {
            return Some(error_body(
                StatusCode::MISDIRECTED_REQUEST,
                "misdirected_request",
                "the local server answers only to localhost, 127.0.0.1 and [::1]",
                None,
            ));
        }
    }
    if let Some(origin) = text(header::ORIGIN) {
        let own = LOOPBACK
            .iter()
            .any(|h| origin.eq_ignore_ascii_case(&format!("http://{h}:{port}")));
        if !own {
            return Some(error_body(
                StatusCode::FORBIDDEN,
                "forbidden_origin",
                "requests from web pages of other origins are refused; call the API from a script, curl or a page served by this server",
                None,
            ));
        }
    }
    if has_body(headers) && !is_json(text(header::CONTENT_TYPE)) {
        return Some(error_body(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "the request body must be JSON, sent with Content-Type: application/json",
            None,
        ));
    }
    None
}

/// The name part of a `Host` header (`[::1]:3000` → `[::1]`, `localhost:3000` → `localhost`).
fn host_name(host: &str) -> &str {
    let host = host.trim();
    match host.rfind(':') {
        Some(i) if !host[i..].contains(']') => &host[..i],
        _ => host,
    }
}

fn has_body(headers: &HeaderMap) -> bool {
    headers.contains_key(header::TRANSFER_ENCODING)
        || headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|n| n.trim() != "0")
}

/// `application/json`, any case, parameters such as `charset` allowed.
fn is_json(content_type: Option<&str>) -> bool {
    content_type.is_some_and(|ct| {
        ct.split(';')
            .next()
            .is_some_and(|essence| essence.trim().eq_ignore_ascii_case("application/json"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names_and_content_types() {
        assert_eq!(host_name("localhost:3000"), "localhost");
        assert_eq!(host_name("[::1]:3000"), "[::1]");
        assert_eq!(host_name("[::1]"), "[::1]");
        assert_eq!(host_name("127.0.0.1"), "127.0.0.1");
        assert_eq!(host_name("evil.example:3000"), "evil.example");
        assert!(is_json(Some("application/json")));
        assert!(is_json(Some("Application/JSON; charset=utf-8")));
        assert!(!is_json(Some("text/plain")));
        assert!(!is_json(Some("application/x-www-form-urlencoded")));
        assert!(!is_json(None));
    }
}
