//! Errors of the Data Manager API client. Each keeps what decides the next step (HTTP status,
//! Google's `status` and `ErrorInfo.reason`) and nothing secret: tokens, the client secret and
//! hashes never reach `Display`, `Debug` or [`GoogleError::user_message`]; Google's own message
//! text is scrubbed before it is kept.

use std::time::Duration;

use serde_json::Value;

/// What an error means for the caller: drives retries and the message a marketer reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// 429 `RESOURCE_EXHAUSTED`, 500, 502, 503, 504, timeouts, broken connections: retried.
    Transient,
    /// 401, or the token endpoint refused the refresh token.
    TokenInvalid,
    /// 403: the credentials lack access to the account, or the API is not enabled.
    Permission,
    /// The user list does not exist (404, `INVALID_USER_LIST_ID`).
    ListGone,
    /// `DISPLAY_NAME_ALREADY_USED`.
    NameTaken,
    /// `TERMS_AND_CONDITIONS_NOT_SIGNED`.
    TermsNotAccepted,
    /// Any other refusal of the request, or one the client would not send.
    InvalidRequest,
    Other,
}

/// Google's error envelope `{"error": {code, message, status, details}}`, as kept.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApiError {
    pub http_status: u16,
    /// `INVALID_ARGUMENT`, `RESOURCE_EXHAUSTED`, `UNAUTHENTICATED`, …
    pub status: String,
    /// `ErrorInfo.reason`, e.g. `INVALID_SHA256_FORMAT`.
    pub reason: Option<String>,
    /// Google's message, scrubbed.
    pub message: String,
    /// `RequestInfo.requestId`, for Google's support.
    pub request_id: Option<String>,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum GoogleError {
    #[error("Google Data Manager API error (HTTP {}, {}{}): {}", .error.http_status, .error.status, .error.reason.as_deref().map(|r| format!(", {r}")).unwrap_or_default(), .error.message)]
    Api {
        error: Box<ApiError>,
        retry_after: Option<Duration>,
    },
    /// The token endpoint refused to issue an access token (OAuth2 `error`, e.g. `invalid_grant`).
    #[error("Google's token endpoint refused the refresh (HTTP {status}, {error})")]
    Token { status: u16, error: String },
    #[error("could not complete the request to Google: {detail}")]
    Transport {
        timeout: bool,
        connect: bool,
        detail: String,
    },
    /// The client refused to send the request (bad ids, too many members, no account).
    #[error("request not sent to Google: {0}")]
    InvalidRequest(String),
    #[error("unexpected answer from Google (HTTP {status}): {detail}")]
    UnexpectedResponse { status: u16, detail: String },
}

const TRANSIENT_STATUSES: &[u16] = &[429, 500, 502, 503, 504];

impl GoogleError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            GoogleError::Api { error, .. } => classify(error),
            GoogleError::Token { status, .. } if TRANSIENT_STATUSES.contains(status) => {
                ErrorKind::Transient
            }
            GoogleError::Token { .. } => ErrorKind::TokenInvalid,
            GoogleError::Transport { .. } => ErrorKind::Transient,
            GoogleError::InvalidRequest(_) => ErrorKind::InvalidRequest,
            GoogleError::UnexpectedResponse { status, .. }
                if TRANSIENT_STATUSES.contains(status) =>
            {
                ErrorKind::Transient
            }
            GoogleError::UnexpectedResponse { .. } => ErrorKind::Other,
        }
    }

    pub fn http_status(&self) -> Option<u16> {
        match self {
            GoogleError::Api { error, .. } => Some(error.http_status),
            GoogleError::Token { status, .. } | GoogleError::UnexpectedResponse { status, .. } => {
                Some(*status)
            }
            _ => None,
        }
    }

    pub fn reason(&self) -> Option<&str> {
        match self {
            GoogleError::Api { error, .. } => error.reason.as_deref(),
            _ => None,
        }
    }

    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            GoogleError::Api { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// Reads an error answer: Google's envelope when it is one, else a short description.
    pub fn from_response(
        status: u16,
        body: &[u8],
        retry_after: Option<Duration>,
        secrets: &[&str],
    ) -> Self {
        let Some(e) = serde_json::from_slice::<Value>(body)
            .ok()
            .and_then(|v| v.get("error").filter(|e| e.is_object()).cloned())
        else {
            return GoogleError::UnexpectedResponse {
                status,
                detail: format!("{} bytes that are not Google's error shape", body.len()),
            };
        };
        let details = e["details"].as_array().cloned().unwrap_or_default();
        let of_type = |t: &str| {
            details
                .iter()
                .find(|d| d["@type"].as_str().is_some_and(|s| s.ends_with(t)))
                .cloned()
        };
        let reason =
            of_type("google.rpc.ErrorInfo").and_then(|d| d["reason"].as_str().map(str::to_string));
        let request_id = of_type("google.rpc.RequestInfo")
            .and_then(|d| d["requestId"].as_str().map(str::to_string));
        let retry_after = retry_after.or_else(|| {
            of_type("google.rpc.RetryInfo")
                .and_then(|d| d["retryDelay"].as_str().and_then(parse_seconds))
        });
        GoogleError::Api {
            error: Box::new(ApiError {
                http_status: status,
                status: e["status"].as_str().unwrap_or("UNKNOWN").to_string(),
                reason,
                message: scrub(e["message"].as_str().unwrap_or_default(), secrets),
                request_id,
            }),
            retry_after,
        }
    }

    /// What a marketer reads (sync log, audience): what happened and what to do, no secrets.
    pub fn user_message(&self) -> String {
        let mut msg = match (self, self.kind()) {
            (_, ErrorKind::TokenInvalid) => "Google refused the credentials (the access token \
                is invalid or expired, or the refresh token was revoked): renew them \
                (GOOGLE_ACCESS_TOKEN or the GOOGLE_CREDENTIALS_SECRET_ARN secret) with the \
                https://www.googleapis.com/auth/datamanager scope, then sync again"
                .to_string(),
            (_, ErrorKind::Permission) => format!(
                "Google denied access ({}): check that the Data Manager API is enabled in the \
                 Google Cloud project, and that the credentials' user can manage the operating \
                 account (and GOOGLE_LOGIN_CUSTOMER_ID's manager account, when set)",
                self.summary()
            ),
            (_, ErrorKind::TermsNotAccepted) => "Google refused the upload: the Customer Match \
                terms of service are not accepted in this Google Ads account; accept them in \
                Google Ads, then sync again"
                .to_string(),
            (_, ErrorKind::NameTaken) => "Google refused to create the user list: its name is \
                already used in the account"
                .to_string(),
            (_, ErrorKind::ListGone) => {
                "the Google user list no longer exists (deleted in Google Ads)".to_string()
            }
            (GoogleError::Transport { detail, .. }, _) => format!(
                "could not reach Google's Data Manager API ({detail}); retries did not get \
                 through: check the network path to datamanager.googleapis.com, then sync again"
            ),
            (_, ErrorKind::Transient) => format!(
                "Google stayed busy or unavailable ({}) through every retry: the sync stops \
                 here and the next one carries on from what was accepted",
                self.summary()
            ),
            (GoogleError::InvalidRequest(m), _) => m.clone(),
            _ => format!("Google refused the request ({})", self.summary()),
        };
        if let GoogleError::Api { error, .. } = self {
            if let Some(id) = &error.request_id {
                msg.push_str(&format!(" (Google request id {id})"));
            }
        }
        msg
    }

    /// HTTP status, Google's status and reason, and its (scrubbed) message.
    fn summary(&self) -> String {
        match self {
            GoogleError::Api { error, .. } => {
                let mut s = format!("HTTP {} {}", error.http_status, error.status);
                if let Some(r) = &error.reason {
                    s.push_str(&format!(" {r}"));
                }
                if !error.message.is_empty() {
                    s.push_str(&format!(": {}", error.message));
                }
                s
            }
            other => other.to_string(),
        }
    }
}

fn classify(e: &ApiError) -> ErrorKind {
    match (e.http_status, e.reason.as_deref()) {
        (_, Some("DISPLAY_NAME_ALREADY_USED")) => ErrorKind::NameTaken,
        (_, Some("TERMS_AND_CONDITIONS_NOT_SIGNED")) => ErrorKind::TermsNotAccepted,
        (_, Some("INVALID_USER_LIST_ID")) | (404, _) => ErrorKind::ListGone,
        (401, _) => ErrorKind::TokenInvalid,
        (403, _) => ErrorKind::Permission,
        (s, _) if TRANSIENT_STATUSES.contains(&s) => ErrorKind::Transient,
        (400..=499, _) => ErrorKind::InvalidRequest,
        _ => ErrorKind::Other,
    }
}

/// `"1.5s"` (a protobuf Duration) → 1.5 s.
fn parse_seconds(s: &str) -> Option<Duration> {
    let secs: f64 = s.trim().strip_suffix('s')?.parse().ok()?;
    (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs.min(3600.0)))
}

/// Google's text with any secret replaced, and long hex or token-like words (hashes, tokens)
/// cut out: its messages may quote what was sent.
pub fn scrub(text: &str, secrets: &[&str]) -> String {
    let mut s = text.to_string();
    for secret in secrets.iter().filter(|s| !s.is_empty()) {
        s = s.replace(secret, "[redacted]");
    }
    s.split(' ')
        .map(|w| {
            let hexish = w.len() >= 32 && w.chars().all(|c| c.is_ascii_hexdigit());
            if hexish || w.contains("ya29.") || w.contains("1//") {
                "[redacted]"
            } else {
                w
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, body: &str) -> GoogleError {
        GoogleError::from_response(status, body.as_bytes(), None, &["ya29.secret"])
    }

    #[test]
    fn google_error_shape_is_read_and_classified() {
        let e = answer(
            400,
            r#"{"error":{"code":400,"message":"bad hash ab","status":"INVALID_ARGUMENT",
               "details":[{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"INVALID_SHA256_FORMAT"},
                          {"@type":"type.googleapis.com/google.rpc.RequestInfo","requestId":"r-1"}]}}"#,
        );
        assert_eq!(e.kind(), ErrorKind::InvalidRequest);
        assert_eq!(e.reason(), Some("INVALID_SHA256_FORMAT"));
        assert!(e.user_message().contains("INVALID_SHA256_FORMAT"));
        assert!(e.user_message().contains("r-1"));
        let e = answer(
            429,
            r#"{"error":{"code":429,"message":"Quota exceeded","status":"RESOURCE_EXHAUSTED",
               "details":[{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"2s"}]}}"#,
        );
        assert_eq!(e.kind(), ErrorKind::Transient);
        assert_eq!(e.retry_after(), Some(Duration::from_secs(2)));
        assert_eq!(answer(503, "<html>").kind(), ErrorKind::Transient);
        assert_eq!(
            answer(401, r#"{"error":{"code":401,"message":"token ya29.secret expired","status":"UNAUTHENTICATED"}}"#).kind(),
            ErrorKind::TokenInvalid
        );
        assert_eq!(
            answer(
                404,
                r#"{"error":{"code":404,"message":"not found","status":"NOT_FOUND"}}"#
            )
            .kind(),
            ErrorKind::ListGone
        );
        assert_eq!(
            answer(400, r#"{"error":{"code":400,"message":"x","status":"INVALID_ARGUMENT","details":[{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"DISPLAY_NAME_ALREADY_USED"}]}}"#).kind(),
            ErrorKind::NameTaken
        );
    }

    #[test]
    fn no_secret_or_hash_survives() {
        let e = answer(
            401,
            r#"{"error":{"code":401,"message":"token ya29.secret for 509e933019bb285a134a9334b8bb679dff79d0ce023d529af4bd744d47b4fd8a","status":"UNAUTHENTICATED"}}"#,
        );
        for text in [e.to_string(), format!("{e:?}"), e.user_message()] {
            assert!(!text.contains("ya29.secret"), "{text}");
            assert!(!text.contains("509e9330"), "{text}");
        }
    }
}
