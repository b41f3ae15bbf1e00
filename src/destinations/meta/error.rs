//! Errors of the Meta Marketing API client.
//!
//! Every error keeps what is needed to decide what to do next (HTTP status, Meta's code and
//! subcode, type, message, `fbtrace_id`, `is_transient`) and nothing secret: the access token,
//! the app secret and payload data never reach `Display`, `Debug` or [`MetaError::user_message`].
//! Meta's own message text is scrubbed defensively before it is stored.

use std::fmt;
use std::time::Duration;

use serde::Deserialize;

/// What an error means for the caller; drives retries and the message shown to a marketer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// Temporary: rate limits, Meta server errors, HTML bodies, timeouts, connection errors,
    /// a replace still in progress. Retried with backoff.
    Transient,
    /// Code 190: the access token is expired or invalid.
    TokenInvalid,
    /// Codes 10, 200–299, 294, 102: the token lacks a permission or an asset assignment.
    Permission,
    /// 1870034 / 1870090: the Custom Audience Terms of Service are not accepted.
    TermsNotAccepted,
    /// 100/1713230 or operation status 471: the audience is flagged, uploads are blocked.
    AudienceFlagged,
    /// 2635: the Graph API version is deprecated.
    VersionDeprecated,
    /// 2656: the audience cannot be deleted while lookalikes are built on it.
    DeleteBlockedByLookalikes,
    /// 200/1870047: Meta refuses removals that would make the audience too small.
    RemovalTooSmall,
    /// 2650/1870158: the replace session ran past its 90 minutes.
    ReplaceSessionTimedOut,
    /// 2650/1870147: the replace session has no first batch.
    ReplaceBatchMissing,
    /// Invalid parameter (code 100 and others), or a request the client refused to send.
    InvalidRequest,
    /// Anything else.
    Other,
}

impl ErrorKind {
    /// Whether a request failing with this kind should be retried.
    pub fn is_retryable(self) -> bool {
        matches!(self, ErrorKind::Transient)
    }

    /// A stable snake_case name, for logs and stored sync results.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Transient => "transient",
            ErrorKind::TokenInvalid => "token_invalid",
            ErrorKind::Permission => "permission",
            ErrorKind::TermsNotAccepted => "terms_not_accepted",
            ErrorKind::AudienceFlagged => "audience_flagged",
            ErrorKind::VersionDeprecated => "version_deprecated",
            ErrorKind::DeleteBlockedByLookalikes => "delete_blocked_by_lookalikes",
            ErrorKind::RemovalTooSmall => "removal_too_small",
            ErrorKind::ReplaceSessionTimedOut => "replace_session_timed_out",
            ErrorKind::ReplaceBatchMissing => "replace_batch_missing",
            ErrorKind::InvalidRequest => "invalid_request",
            ErrorKind::Other => "other",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Meta's error envelope `{"error": {...}}`, as kept by the client (message text scrubbed).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GraphError {
    /// HTTP status of the answer.
    pub status: u16,
    pub code: i64,
    pub subcode: Option<i64>,
    /// Meta's `type`, e.g. `OAuthException`.
    pub error_type: Option<String>,
    pub message: String,
    pub user_title: Option<String>,
    pub user_msg: Option<String>,
    pub fbtrace_id: Option<String>,
    pub is_transient: Option<bool>,
}

/// An error of a Meta Marketing API call.
#[derive(Debug, Clone, thiserror::Error)]
pub enum MetaError {
    /// Meta answered with its JSON error envelope.
    #[error("{}", display_api(.error))]
    Api {
        error: Box<GraphError>,
        /// From `X-Business-Use-Case-Usage`'s `estimated_time_to_regain_access`.
        retry_after: Option<Duration>,
    },
    /// Meta answered with an error status and a body that is not JSON (often HTML).
    #[error("Meta answered HTTP {status} with a non-JSON {} body ({len} bytes)", if *.html { "HTML" } else { "text" })]
    NonJson {
        status: u16,
        html: bool,
        len: usize,
        retry_after: Option<Duration>,
    },
    /// The request did not complete: connection refused or reset, DNS, TLS, timeout.
    #[error("could not complete the request to Meta: {detail}")]
    Transport {
        timeout: bool,
        connect: bool,
        detail: String,
    },
    /// The client refused to send the request (e.g. more than 10,000 rows, bad ids).
    #[error("request not sent to Meta: {0}")]
    InvalidRequest(String),
    /// The audience is flagged (operation status 471): Meta blocks membership changes.
    #[error("Meta audience {audience_id} is flagged (operation status 471){}", .description.as_deref().map(|d| format!(": {d}")).unwrap_or_default())]
    Flagged {
        audience_id: String,
        description: Option<String>,
    },
    /// A successful status whose body could not be understood.
    #[error("unexpected answer from Meta (HTTP {status}): {detail}")]
    UnexpectedResponse { status: u16, detail: String },
}

fn display_api(e: &GraphError) -> String {
    let mut s = format!("Meta Graph API error (HTTP {}, code {}", e.status, e.code);
    if let Some(sub) = e.subcode {
        s.push_str(&format!(", subcode {sub}"));
    }
    if let Some(t) = &e.error_type {
        s.push_str(&format!(", {t}"));
    }
    s.push_str("): ");
    s.push_str(&e.message);
    if let Some(id) = &e.fbtrace_id {
        s.push_str(&format!(" (fbtrace_id {id})"));
    }
    s
}

const TRANSIENT_CODES: &[i64] = &[1, 2, 4, 17, 32, 341, 613, 80000, 80003, 80004, 80014];
const RATE_LIMIT_CODES: &[i64] = &[4, 17, 32, 341, 613, 80000, 80003, 80004, 80014];

impl MetaError {
    /// Classify the error (drives retries and [`MetaError::user_message`]).
    pub fn kind(&self) -> ErrorKind {
        match self {
            MetaError::Api { error, .. } => classify(error),
            MetaError::NonJson { status, html, .. } => {
                if *html || *status >= 500 || *status == 429 {
                    ErrorKind::Transient
                } else {
                    ErrorKind::Other
                }
            }
            MetaError::Transport { .. } => ErrorKind::Transient,
            MetaError::InvalidRequest(_) => ErrorKind::InvalidRequest,
            MetaError::Flagged { .. } => ErrorKind::AudienceFlagged,
            MetaError::UnexpectedResponse { .. } => ErrorKind::Other,
        }
    }

    /// The request may have been carried out although no success came back: it timed out or
    /// broke after it was sent, or Meta's side failed (5xx, an HTML page). A refusal (4xx, a
    /// rate limit) or a connection never made means it was not.
    pub fn may_have_been_applied(&self) -> bool {
        match self {
            MetaError::Transport { connect, .. } => !connect,
            MetaError::NonJson { status, html, .. } => *html || *status >= 500,
            MetaError::Api { error, .. } => error.status >= 500,
            _ => false,
        }
    }

    /// How long Meta asked to wait (`estimated_time_to_regain_access`), when it said so.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            MetaError::Api { retry_after, .. } | MetaError::NonJson { retry_after, .. } => {
                *retry_after
            }
            _ => None,
        }
    }

    /// Meta's error code, when Meta answered with one.
    pub fn code(&self) -> Option<i64> {
        match self {
            MetaError::Api { error, .. } => Some(error.code),
            _ => None,
        }
    }

    /// 100/33: the object "does not exist, cannot be loaded due to missing permissions, or does
    /// not support this operation" (Meta says the same for each).
    pub fn is_missing_object(&self) -> bool {
        self.code() == Some(100) && self.subcode() == Some(33)
    }

    /// Meta's error subcode, when present.
    pub fn subcode(&self) -> Option<i64> {
        match self {
            MetaError::Api { error, .. } => error.subcode,
            _ => None,
        }
    }

    /// Meta's `fbtrace_id`, when present (quote it to Meta support).
    pub fn fbtrace_id(&self) -> Option<&str> {
        match self {
            MetaError::Api { error, .. } => error.fbtrace_id.as_deref(),
            _ => None,
        }
    }

    /// HTTP status of Meta's answer, when there was one.
    pub fn http_status(&self) -> Option<u16> {
        match self {
            MetaError::Api { error, .. } => Some(error.status),
            MetaError::NonJson { status, .. } | MetaError::UnexpectedResponse { status, .. } => {
                Some(*status)
            }
            _ => None,
        }
    }

    /// The parsed Meta error envelope, when there was one.
    pub fn graph_error(&self) -> Option<&GraphError> {
        match self {
            MetaError::Api { error, .. } => Some(error.as_ref()),
            _ => None,
        }
    }

    /// True when the request timed out.
    pub fn is_timeout(&self) -> bool {
        matches!(self, MetaError::Transport { timeout: true, .. })
    }

    /// One specific, actionable sentence for a marketer, ending with Meta's fbtrace_id when
    /// present. Never contains the token, the app secret or payload data.
    pub fn user_message(&self) -> String {
        let mut msg = self.base_user_message();
        if let Some(id) = self.fbtrace_id() {
            msg.push_str(&format!(" (Meta fbtrace_id: {id})"));
        }
        msg
    }

    fn base_user_message(&self) -> String {
        let code_text = match (self.code(), self.subcode()) {
            (Some(c), Some(s)) => format!("code {c}/{s}"),
            (Some(c), None) => format!("code {c}"),
            _ => String::new(),
        };
        match self {
            MetaError::Transport {
                timeout: true,
                detail,
                ..
            } => format!(
                "Meta did not answer in time ({detail}); the call was retried and still failed: \
                 try the sync again later, and check status.fb.com if it keeps happening."
            ),
            MetaError::Transport { detail, .. } => format!(
                "Could not reach the Meta Graph API ({detail}): check that this service can reach \
                 graph.facebook.com (network, proxy, NAT or VPC egress) and that META_GRAPH_URL \
                 is right, then run the sync again."
            ),
            MetaError::NonJson { status, .. } => format!(
                "Meta had a temporary server problem (HTTP {status}, no JSON answer) and retries \
                 did not get through: run the sync again later; if it persists, the request may \
                 be too large for Meta."
            ),
            MetaError::InvalidRequest(detail) => {
                format!("The request was not sent to Meta: {detail}.")
            }
            MetaError::Flagged { .. } => flagged_message(),
            MetaError::UnexpectedResponse { status, .. } => format!(
                "Meta answered HTTP {status} with a body audience-sync could not read: run the \
                 sync again, and report it if it keeps happening."
            ),
            MetaError::Api { error, retry_after } => match self.kind() {
                ErrorKind::TokenInvalid => {
                    let why = match error.subcode {
                        Some(463) => "expired",
                        Some(467) => "invalid",
                        Some(460) => "invalidated by a password change",
                        Some(458) | Some(459) => "no longer authorized",
                        _ => "expired or invalid",
                    };
                    format!(
                        "Meta rejected the access token ({why}): generate a new system-user token \
                         with the ads_management permission in Business Settings and update \
                         META_ACCESS_TOKEN / the token secret (META_TOKEN_SECRET_ARN)."
                    )
                }
                ErrorKind::Permission => {
                    if error.subcode == Some(1870050) {
                        "The ad account is not linked to the business that owns the access token \
                         (code 200/1870050): link the ad account to the business in Business \
                         Settings, then run the sync again."
                            .to_string()
                    } else {
                        format!(
                            "The Meta access token is not allowed to do this ({code_text}): give \
                             the system user the ads_management permission and assign it to the \
                             ad account (META_AD_ACCOUNT_ID or the audience's account) in Business \
                             Settings, then run the sync again."
                        )
                    }
                }
                ErrorKind::TermsNotAccepted => format!(
                    "The Custom Audience Terms of Service are not accepted for this ad account's \
                     business ({code_text}): a business admin must accept them at \
                     https://business.facebook.com/ads/manage/customaudiences/tos/ , then run the \
                     sync again."
                ),
                ErrorKind::AudienceFlagged => flagged_message(),
                ErrorKind::VersionDeprecated => format!(
                    "The Graph API version in META_GRAPH_URL is deprecated ({code_text}): set \
                     META_GRAPH_URL to a current version (for example {}) and redeploy.",
                    super::client::DEFAULT_GRAPH_URL
                ),
                ErrorKind::DeleteBlockedByLookalikes => format!(
                    "Meta will not delete this audience while lookalike audiences are built on it \
                     ({code_text}): delete those lookalikes first, then delete this audience."
                ),
                ErrorKind::RemovalTooSmall => format!(
                    "Meta refused to remove these people because the audience would become too \
                     small ({code_text}): nothing was removed; keep the members, or delete the \
                     audience and create a new one."
                ),
                ErrorKind::ReplaceSessionTimedOut => format!(
                    "The full-replace upload took longer than Meta's 90-minute limit \
                     ({code_text}): run an incremental sync to send the remaining members as \
                     additions, or start the full sync again."
                ),
                ErrorKind::ReplaceBatchMissing => format!(
                    "Meta lost the first batch of the full-replace upload ({code_text}): start \
                     the full sync again."
                ),
                ErrorKind::Transient => {
                    let wait = retry_after
                        .map(|d| format!(" about {} minute(s)", d.as_secs().div_ceil(60).max(1)))
                        .unwrap_or_default();
                    if error.code == 2650 {
                        format!(
                            "Meta is still processing an earlier replace of this audience \
                             ({code_text}): no other upload can run until it finishes; run the \
                             sync again later."
                        )
                    } else if RATE_LIMIT_CODES.contains(&error.code) {
                        format!(
                            "Meta is rate-limiting this ad account or app ({code_text}) and \
                             retries did not get through: wait{} and run the sync again; large \
                             audiences use fewer calls with full syncs.",
                            if wait.is_empty() {
                                " a few minutes".to_string()
                            } else {
                                wait
                            }
                        )
                    } else {
                        format!(
                            "Meta had a temporary problem ({code_text}) and retries did not get \
                             through: run the sync again later."
                        )
                    }
                }
                ErrorKind::InvalidRequest => {
                    if error.subcode == Some(33) {
                        format!(
                            "Meta says the ad account or audience does not exist or is not \
                             shared with this token ({code_text}): check META_AD_ACCOUNT_ID / the \
                             audience's Meta id and assign the ad account to the system user. \
                             Meta said: {}",
                            meta_said(error)
                        )
                    } else {
                        format!(
                            "Meta rejected the request as invalid ({code_text}): {}",
                            meta_said(error)
                        )
                    }
                }
                ErrorKind::Other => {
                    if error.code == 2654 {
                        format!(
                            "Meta could not create the audience ({code_text}): {}",
                            meta_said(error)
                        )
                    } else {
                        format!(
                            "Meta returned an unexpected error ({code_text}): {}",
                            meta_said(error)
                        )
                    }
                }
            },
        }
    }

    /// Build the error for an answer that is not a success (or a success carrying `error`).
    ///
    /// `secrets` are scrubbed from any text kept (the token, the app secret).
    pub fn from_response(
        status: u16,
        content_type: Option<&str>,
        usage_header: Option<&str>,
        body: &[u8],
        secrets: &[&str],
    ) -> MetaError {
        let retry_after = usage_header.and_then(parse_usage_header);
        if let Ok(env) = serde_json::from_slice::<Envelope>(body) {
            if let Some(raw) = env.error {
                return MetaError::Api {
                    error: Box::new(raw.into_graph_error(status, secrets)),
                    retry_after,
                };
            }
        }
        let html = content_type
            .map(|c| c.to_ascii_lowercase().contains("html"))
            .unwrap_or(false)
            || body
                .iter()
                .find(|b| !b.is_ascii_whitespace())
                .map(|b| *b == b'<')
                .unwrap_or(false);
        MetaError::NonJson {
            status,
            html,
            len: body.len(),
            retry_after,
        }
    }
}

fn meta_said(error: &GraphError) -> String {
    let mut s = error
        .user_msg
        .clone()
        .filter(|m| !m.trim().is_empty())
        .unwrap_or_else(|| error.message.clone());
    if !s.ends_with('.') {
        s.push('.');
    }
    s
}

fn flagged_message() -> String {
    "Meta flagged this audience for integrity restrictions (operation status 471) and blocks \
     changes to its members: appeal the restriction in Audience Manager, or create a new audience \
     with a neutral name and description."
        .to_string()
}

fn classify(e: &GraphError) -> ErrorKind {
    let code = e.code;
    let sub = e.subcode;
    let is = |s: i64| sub == Some(s);
    if code == 2650 || matches!(sub, Some(1870145 | 1870148 | 1870158 | 1870147)) {
        if is(1870145) || is(1870148) {
            return ErrorKind::Transient;
        }
        if is(1870158) {
            return ErrorKind::ReplaceSessionTimedOut;
        }
        if is(1870147) {
            return ErrorKind::ReplaceBatchMissing;
        }
        if code == 2650 {
            // 1870159 session closed, 1870144 too big for replace, others: not retryable.
            return ErrorKind::InvalidRequest;
        }
    }
    if matches!(code, 1870034 | 1870090) || matches!(sub, Some(1870034 | 1870090)) {
        return ErrorKind::TermsNotAccepted;
    }
    if is(1713230) {
        return ErrorKind::AudienceFlagged;
    }
    if code == 200 && is(1870047) {
        return ErrorKind::RemovalTooSmall;
    }
    match code {
        190 => return ErrorKind::TokenInvalid,
        2635 => return ErrorKind::VersionDeprecated,
        2656 => return ErrorKind::DeleteBlockedByLookalikes,
        10 | 102 | 294 | 200..=299 => return ErrorKind::Permission,
        _ => {}
    }
    if TRANSIENT_CODES.contains(&code) {
        return ErrorKind::Transient;
    }
    if code == 100 {
        return ErrorKind::InvalidRequest;
    }
    if e.status >= 500 || e.is_transient == Some(true) {
        return ErrorKind::Transient;
    }
    ErrorKind::Other
}

#[derive(Deserialize)]
struct Envelope {
    error: Option<RawError>,
}

#[derive(Deserialize)]
struct RawError {
    #[serde(default)]
    message: Option<String>,
    #[serde(default, rename = "type")]
    error_type: Option<String>,
    #[serde(default)]
    code: Option<serde_json::Value>,
    #[serde(default)]
    error_subcode: Option<serde_json::Value>,
    #[serde(default)]
    error_user_title: Option<String>,
    #[serde(default)]
    error_user_msg: Option<String>,
    #[serde(default)]
    fbtrace_id: Option<String>,
    #[serde(default)]
    is_transient: Option<bool>,
}

fn json_int(v: &Option<serde_json::Value>) -> Option<i64> {
    match v {
        Some(serde_json::Value::Number(n)) => n.as_i64(),
        Some(serde_json::Value::String(s)) => s.trim().parse().ok(),
        _ => None,
    }
}

impl RawError {
    fn into_graph_error(self, status: u16, secrets: &[&str]) -> GraphError {
        let clean = |s: Option<String>| s.map(|s| scrub(&s, secrets));
        GraphError {
            status,
            code: json_int(&self.code).unwrap_or(0),
            subcode: json_int(&self.error_subcode),
            error_type: clean(self.error_type),
            message: scrub(self.message.as_deref().unwrap_or(""), secrets),
            user_title: clean(self.error_user_title),
            user_msg: clean(self.error_user_msg),
            fbtrace_id: clean(self.fbtrace_id),
            is_transient: self.is_transient,
        }
    }
}

/// Parse `X-Business-Use-Case-Usage` (JSON: business id → list of usage objects) and return the
/// longest `estimated_time_to_regain_access` (minutes) as a duration; `None` when absent or 0.
pub fn parse_usage_header(value: &str) -> Option<Duration> {
    let v: serde_json::Value = serde_json::from_str(value).ok()?;
    let mut max_minutes: Option<u64> = None;
    let mut visit = |entry: &serde_json::Value| {
        if let Some(m) = entry.get("estimated_time_to_regain_access") {
            let minutes = m
                .as_u64()
                .or_else(|| m.as_f64().filter(|f| *f > 0.0).map(|f| f.ceil() as u64))
                .or_else(|| m.as_str().and_then(|s| s.trim().parse().ok()));
            if let Some(minutes) = minutes {
                max_minutes = Some(max_minutes.map_or(minutes, |cur| cur.max(minutes)));
            }
        }
    };
    match &v {
        serde_json::Value::Object(map) => {
            for entries in map.values() {
                match entries {
                    serde_json::Value::Array(list) => list.iter().for_each(&mut visit),
                    other => visit(other),
                }
            }
        }
        serde_json::Value::Array(list) => list.iter().for_each(&mut visit),
        _ => {}
    }
    max_minutes
        .filter(|m| *m > 0)
        .map(|m| Duration::from_secs(m.saturating_mul(60)))
}

const MAX_MESSAGE_CHARS: usize = 500;

/// Remove secrets and anything that looks like a token or a hashed identifier from text that
/// came from Meta (or from a transport error), and bound its length.
pub fn scrub(text: &str, secrets: &[&str]) -> String {
    let mut s = text.to_string();
    for secret in secrets {
        if !secret.is_empty() {
            s = s.replace(secret, "[redacted]");
        }
    }
    // Word-level pass: long Meta tokens (EAA...), `access_token=...`, 32+ hex runs (hashes).
    let mut out = String::with_capacity(s.len());
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String| {
        if !word.is_empty() {
            let hexish = word.len() >= 32 && word.chars().all(|c| c.is_ascii_hexdigit());
            let tokenish = word.len() >= 32 && word.starts_with("EAA");
            if tokenish {
                out.push_str("[redacted]");
            } else if hexish {
                out.push_str("[hash]");
            } else {
                out.push_str(word);
            }
            word.clear();
        }
    };
    let mut redact_next_value = false;
    for c in s.chars() {
        if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
            word.push(c);
        } else {
            if redact_next_value {
                if !word.is_empty() {
                    out.push_str("[redacted]");
                    word.clear();
                }
                redact_next_value = false;
            }
            if (c == '=' || c == ':') && word.eq_ignore_ascii_case("access_token") {
                redact_next_value = true;
            }
            flush(&mut word, &mut out);
            out.push(c);
        }
    }
    if redact_next_value && !word.is_empty() {
        out.push_str("[redacted]");
        word.clear();
    }
    flush(&mut word, &mut out);
    if out.chars().count() > MAX_MESSAGE_CHARS {
        let cut: String = out.chars().take(MAX_MESSAGE_CHARS).collect();
        out = format!("{cut}…");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(status: u16, code: i64, subcode: Option<i64>) -> MetaError {
        MetaError::Api {
            error: Box::new(GraphError {
                status,
                code,
                subcode,
                message: "m".into(),
                ..Default::default()
            }),
            retry_after: None,
        }
    }

    #[test]
    fn classification_table() {
        use ErrorKind::*;
        let cases: &[(u16, i64, Option<i64>, ErrorKind)] = &[
            (400, 1, None, Transient),
            (500, 2, None, Transient),
            (403, 4, None, Transient),
            (400, 17, Some(2446079), Transient),
            (400, 32, None, Transient),
            (400, 341, None, Transient),
            (400, 613, None, Transient),
            (400, 80000, None, Transient),
            (400, 80003, Some(2446079), Transient),
            (400, 80004, None, Transient),
            (400, 80014, None, Transient),
            (400, 2650, Some(1870145), Transient),
            (400, 2650, Some(1870148), Transient),
            (400, 2650, Some(1870158), ReplaceSessionTimedOut),
            (400, 2650, Some(1870147), ReplaceBatchMissing),
            (400, 2650, Some(1870159), InvalidRequest),
            (400, 2650, Some(1870144), InvalidRequest),
            (400, 190, Some(463), TokenInvalid),
            (401, 190, None, TokenInvalid),
            (403, 10, None, Permission),
            (403, 200, None, Permission),
            (403, 200, Some(1870050), Permission),
            (403, 299, None, Permission),
            (400, 294, None, Permission),
            (400, 102, None, Permission),
            (400, 200, Some(1870034), TermsNotAccepted),
            (400, 200, Some(1870090), TermsNotAccepted),
            (400, 1870090, None, TermsNotAccepted),
            (400, 1870034, None, TermsNotAccepted),
            (400, 100, Some(1713230), AudienceFlagged),
            (400, 2635, None, VersionDeprecated),
            (400, 2656, None, DeleteBlockedByLookalikes),
            (400, 200, Some(1870047), RemovalTooSmall),
            (400, 100, None, InvalidRequest),
            (400, 100, Some(33), InvalidRequest),
            (500, 100, None, InvalidRequest),
            (400, 2654, None, Other),
            (503, 12345, None, Transient),
        ];
        for (status, code, sub, kind) in cases {
            assert_eq!(
                api(*status, *code, *sub).kind(),
                *kind,
                "status {status} code {code} subcode {sub:?}"
            );
        }
    }

    #[test]
    fn non_json_and_transport_kinds() {
        let html = MetaError::from_response(
            500,
            Some("text/html; charset=utf-8"),
            None,
            b"<html>oops</html>",
            &[],
        );
        assert_eq!(html.kind(), ErrorKind::Transient);
        let html_400 = MetaError::from_response(400, None, None, b"  <!DOCTYPE html>", &[]);
        assert_eq!(html_400.kind(), ErrorKind::Transient);
        let text_404 = MetaError::from_response(404, Some("text/plain"), None, b"nope", &[]);
        assert_eq!(text_404.kind(), ErrorKind::Other);
        let t = MetaError::Transport {
            timeout: true,
            connect: false,
            detail: "timed out".into(),
        };
        assert_eq!(t.kind(), ErrorKind::Transient);
        assert!(t.is_timeout());
    }

    #[test]
    fn envelope_is_parsed_and_scrubbed() {
        let token = "EAAsecretTOKENvalue1234567890abcdefXYZ";
        let body = format!(
            r#"{{"error":{{"message":"Invalid token {token} for row f1904cf1a9d73a55fa5de0ac823c4403ded71afd4c3248d00bdcd0866552bb79","type":"OAuthException","code":190,"error_subcode":"463","fbtrace_id":"AbC123","is_transient":false}}}}"#
        );
        let e = MetaError::from_response(
            400,
            Some("application/json"),
            None,
            body.as_bytes(),
            &[token],
        );
        let g = e.graph_error().unwrap();
        assert_eq!(g.code, 190);
        assert_eq!(g.subcode, Some(463));
        assert_eq!(g.fbtrace_id.as_deref(), Some("AbC123"));
        assert_eq!(g.error_type.as_deref(), Some("OAuthException"));
        assert_eq!(g.is_transient, Some(false));
        for text in [e.to_string(), format!("{e:?}"), e.user_message()] {
            assert!(!text.contains(token), "{text}");
            assert!(!text.contains("f1904cf1a9d7"), "{text}");
        }
        assert!(e.user_message().ends_with("(Meta fbtrace_id: AbC123)"));
        assert!(e.user_message().contains("expired"));
    }

    #[test]
    fn scrub_removes_token_like_words() {
        let s = scrub(
            "bad access_token=abc123 and EAABwzLixnjYBAOZCZCabcdefghijklmnopqrstuvwxyz0123 end",
            &[],
        );
        assert!(!s.contains("abc123"), "{s}");
        assert!(!s.contains("EAABwz"), "{s}");
        assert!(s.ends_with(" end"));
        let long = "x ".repeat(1000);
        assert!(scrub(&long, &[]).chars().count() <= MAX_MESSAGE_CHARS + 1);
    }

    #[test]
    fn usage_header_parsing() {
        let h = r#"{"123456": [{"type": "custom_audience", "call_count": 100, "total_cputime": 10, "total_time": 10, "estimated_time_to_regain_access": 3}, {"type": "ads_management", "estimated_time_to_regain_access": 5}]}"#;
        assert_eq!(parse_usage_header(h), Some(Duration::from_secs(300)));
        let zero = r#"{"1": [{"type": "custom_audience", "estimated_time_to_regain_access": 0}]}"#;
        assert_eq!(parse_usage_header(zero), None);
        assert_eq!(parse_usage_header("not json"), None);
        assert_eq!(parse_usage_header(r#"{"1": []}"#), None);
        let e = MetaError::from_response(
            400,
            Some("application/json"),
            Some(h),
            br#"{"error":{"message":"limit","code":80003,"error_subcode":2446079}}"#,
            &[],
        );
        assert_eq!(e.retry_after(), Some(Duration::from_secs(300)));
        assert!(
            e.user_message().contains("5 minute"),
            "{}",
            e.user_message()
        );
    }

    #[test]
    fn user_messages_are_specific() {
        assert!(api(400, 2656, None)
            .user_message()
            .contains("delete those lookalikes"));
        assert!(api(400, 200, Some(1870047))
            .user_message()
            .contains("too small"));
        assert!(api(400, 200, Some(1870034))
            .user_message()
            .contains("Terms"));
        assert!(api(400, 2635, None)
            .user_message()
            .contains("META_GRAPH_URL"));
        assert!(api(403, 10, None).user_message().contains("ads_management"));
        assert!(api(400, 2650, Some(1870158))
            .user_message()
            .contains("90-minute"));
    }
}
