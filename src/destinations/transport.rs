//! HTTP plumbing shared by the LinkedIn and TikTok clients: the base URL check (the token
//! travels in headers, so plain HTTP only to this machine), one `reqwest` client per platform,
//! answers read with a size cap, transport errors described without secrets, and the retry loop
//! bounded by the sync's deadline ([`super::deadline`]). What an answer means stays with each
//! platform's client.

use std::future::Future;
use std::time::{Duration, Instant};

use super::deadline::hard_stop;
use super::retry::RetryPolicy;

/// The largest answer read from a platform: their answers are a few kilobytes (LinkedIn's
/// per-element statuses of 5,000 rows are about 100 KB); anything bigger is not buffered.
pub const MAX_ANSWER_BYTES: usize = 4 * 1024 * 1024;

/// An error a client may retry, and how long the platform asked to wait.
pub trait Retryable: std::fmt::Display {
    fn is_transient(&self) -> bool;
    fn retry_after(&self) -> Option<Duration> {
        None
    }
}

/// The base URL without a trailing slash, when it is http(s) without a query, and plain
/// http only to this machine (a local fake or proxy). `var` names the setting in the message.
pub fn base_url(url: &str, var: &str) -> Result<String, String> {
    let base = url.trim().trim_end_matches('/').to_string();
    let parsed = url::Url::parse(&base).map_err(|_| format!("{var} is not a valid URL"))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.query().is_some() {
        return Err(format!(
            "{var} must be an http(s) URL without a query string"
        ));
    }
    if parsed.scheme() == "http" && !is_loopback(&parsed) {
        return Err(format!(
            "{var} must use https (plain http only to localhost or 127.0.0.1, e.g. a local fake)"
        ));
    }
    Ok(base)
}

fn is_loopback(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// A client with `timeout` per attempt (0: 60 s).
pub fn http_client(timeout: Duration) -> Result<reqwest::Client, String> {
    let timeout = effective_timeout(timeout);
    reqwest::Client::builder()
        .connect_timeout(timeout.min(Duration::from_secs(10)))
        .timeout(timeout)
        .user_agent(concat!("audience-sync/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| format!("HTTP client setup failed: {e}"))
}

fn effective_timeout(timeout: Duration) -> Duration {
    if timeout.is_zero() {
        Duration::from_secs(60)
    } else {
        timeout
    }
}

/// One attempt's timeout: the configured one, cut short by the sync's deadline.
pub fn attempt_timeout(configured: Duration) -> Duration {
    let configured = effective_timeout(configured);
    match hard_stop() {
        Some(stop) => {
            let left = stop.saturating_duration_since(Instant::now());
            configured.min(left.max(Duration::from_secs(1)))
        }
        None => configured,
    }
}

/// What went wrong below HTTP: no answer in time, no connection, or an answer too big.
#[derive(Debug)]
pub struct TransportFailure {
    pub timeout: bool,
    pub detail: String,
}

/// A `reqwest` error described with its causes, the URL left out and `secrets` redacted.
pub fn describe(e: &reqwest::Error, secrets: &[&str]) -> TransportFailure {
    let timeout = e.is_timeout();
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    // `without_url` needs ownership; the URL carries no secret (tokens go in headers), but
    // ids in it are not needed in a message either.
    let detail = if timeout {
        "no answer in time".to_string()
    } else if e.is_connect() {
        format!("connection failed: {}", scrub(&text, secrets))
    } else {
        scrub(&text, secrets)
    };
    TransportFailure { timeout, detail }
}

/// The status, headers and body of an answer, the body refused past [`MAX_ANSWER_BYTES`].
pub async fn read_answer(
    mut resp: reqwest::Response,
    secrets: &[&str],
) -> Result<(u16, reqwest::header::HeaderMap, Vec<u8>), TransportFailure> {
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let too_big = || TransportFailure {
        timeout: false,
        detail: format!("an answer larger than {MAX_ANSWER_BYTES} bytes (HTTP {status}); not read"),
    };
    if resp
        .content_length()
        .is_some_and(|n| n > MAX_ANSWER_BYTES as u64)
    {
        return Err(too_big());
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| describe(&e, secrets))? {
        if body.len() + chunk.len() > MAX_ANSWER_BYTES {
            return Err(too_big());
        }
        body.extend_from_slice(&chunk);
    }
    Ok((status, headers, body))
}

/// `Retry-After` in seconds, when the platform sent one.
pub fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

/// Runs `attempt` until it succeeds, fails for good, runs out of attempts, or a retry could
/// not end before the sync's deadline; waits `policy`'s backoff (at least the platform's
/// `Retry-After`) between attempts.
pub async fn retrying<T, E, F, Fut>(
    policy: &RetryPolicy,
    platform: &'static str,
    op: &'static str,
    mut attempt: F,
) -> Result<T, E>
where
    E: Retryable,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let max_attempts = policy.max_attempts.max(1);
    let mut n = 1;
    loop {
        let err = match attempt().await {
            Ok(v) => return Ok(v),
            Err(e) => e,
        };
        let transient = err.is_transient();
        let delay = policy.delay(n, err.retry_after());
        // One more attempt needs the wait and at least a second to be answered.
        let out_of_time =
            hard_stop().is_some_and(|stop| Instant::now() + delay + Duration::from_secs(1) > stop);
        if !transient || n >= max_attempts || out_of_time {
            if transient {
                tracing::warn!(platform, op, attempts = n, out_of_time, error = %err,
                    "platform call still failing; giving up");
            }
            return Err(err);
        }
        tracing::warn!(platform, op, attempt = n, max_attempts,
            delay_ms = delay.as_millis() as u64, error = %err, "transient platform error; retrying");
        tokio::time::sleep(delay).await;
        n += 1;
    }
}

/// `text` with `secrets` replaced and hash-like runs (32+ hex digits) masked: a platform's
/// message may echo what it was sent.
pub fn scrub(text: &str, secrets: &[&str]) -> String {
    let mut s = text.to_string();
    for secret in secrets.iter().filter(|s| !s.is_empty()) {
        s = s.replace(secret, "[redacted]");
    }
    let mut out = String::with_capacity(s.len());
    let mut run = String::new();
    for c in s.chars().chain(std::iter::once(' ')) {
        if c.is_ascii_hexdigit() {
            run.push(c);
            continue;
        }
        if run.len() >= 32 {
            out.push_str("[hash]");
        } else {
            out.push_str(&run);
        }
        run.clear();
        out.push(c);
    }
    out.pop();
    // Long messages are cut: a platform's text is context, not a payload.
    if out.chars().count() > 300 {
        out = out.chars().take(300).collect::<String>() + "…";
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls() {
        assert_eq!(
            base_url("https://api.linkedin.com/rest/", "X").unwrap(),
            "https://api.linkedin.com/rest"
        );
        assert!(base_url("http://127.0.0.1:9/x", "X").is_ok());
        assert!(base_url("http://example.com/x", "X")
            .unwrap_err()
            .contains("https"));
        assert!(base_url("https://a.b/x?q=1", "X").is_err());
        assert!(base_url("not a url", "LINKEDIN_API_URL")
            .unwrap_err()
            .contains("LINKEDIN_API_URL"));
    }

    #[test]
    fn scrub_masks_secrets_and_hashes() {
        let h = "509e933019bb285a134a9334b8bb679dff79d0ce023d529af4bd744d47b4fd8a";
        let s = scrub(&format!("bad value {h} with tok-123 ok"), &["tok-123"]);
        assert_eq!(s, "bad value [hash] with [redacted] ok");
        assert_eq!(scrub("code 40105", &[]), "code 40105");
    }
}
