//! Errors of the TikTok client. TikTok answers almost everything with HTTP 200 and a body
//! `code` (0 = OK); the codes handled are DESTINATIONS.md §4.3's (integrator-sourced). Nothing
//! secret reaches `Display` or [`TiktokError::user_message`]: the token travels in a header
//! only, and TikTok's message text is scrubbed before it is kept.

use std::time::Duration;

use crate::destinations::transport::Retryable;

/// `code` of a throttled request ("You've hit the rate limit").
pub const THROTTLED: i64 = 40100;
/// `code` of a missing or invalid access token.
pub const BAD_TOKEN: i64 = 40105;
/// `code` of a token without permission for the advertiser or the API.
pub const NO_PERMISSION: i64 = 40001;
/// `code` of a parameter error.
pub const BAD_PARAMETER: i64 = 40002;

#[derive(Debug, thiserror::Error)]
pub enum TiktokError {
    #[error("TikTok refused the access token (code 40105)")]
    TokenInvalid,
    /// A body `code` other than 0.
    #[error("TikTok answered code {code}: {message}")]
    Api {
        code: i64,
        message: String,
        request_id: String,
    },
    /// An HTTP status other than 2xx (gateways, throttling in front of the API).
    #[error("TikTok answered HTTP {status}")]
    Http {
        status: u16,
        retry_after: Option<Duration>,
    },
    #[error("TikTok could not be reached: {detail}")]
    Transport { timeout: bool, detail: String },
    /// A create whose answer was lost: TikTok may have made the audience, so it is not sent
    /// again blindly.
    #[error("TikTok did not answer the audience creation ({detail}); the next sync tries again")]
    Unanswered { detail: String },
    #[error("TikTok's answer was not what its API documents: {0}")]
    Unexpected(String),
    /// A request the client refused to send, or a setting it cannot use.
    #[error("{0}")]
    InvalidRequest(String),
}

impl TiktokError {
    pub fn code(&self) -> Option<i64> {
        match self {
            TiktokError::TokenInvalid => Some(BAD_TOKEN),
            TiktokError::Api { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// What a marketer reads in the sync log: what happened and what to do.
    pub fn user_message(&self) -> String {
        match self {
            TiktokError::TokenInvalid => "TikTok refused the access token (code 40105: missing, \
                invalid or revoked); authorize the advertiser again and set TIKTOK_ACCESS_TOKEN \
                or the TIKTOK_TOKEN_SECRET_ARN secret, then sync again"
                .to_string(),
            TiktokError::Api {
                code: NO_PERMISSION,
                message,
                ..
            } => format!(
                "TikTok refused the request (code 40001, no permission): the app needs the \
                 Audience Management scope and access to the advertiser ({message})"
            ),
            TiktokError::Api {
                code: BAD_PARAMETER,
                message,
                ..
            } => format!("TikTok refused a parameter (code 40002): {message}"),
            TiktokError::Api {
                code: THROTTLED, ..
            } => "TikTok kept throttling the requests \
                (code 40100) after every retry; the next sync carries on"
                .to_string(),
            other => other.to_string(),
        }
    }
}

impl Retryable for TiktokError {
    /// Throttling (40100), TikTok's system errors (5xxxx), HTTP 429/5xx and transport failures.
    fn is_transient(&self) -> bool {
        match self {
            TiktokError::Api { code, .. } => *code == THROTTLED || (50000..60000).contains(code),
            TiktokError::Http { status, .. } => *status == 429 || *status >= 500,
            TiktokError::Transport { .. } => true,
            _ => false,
        }
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            TiktokError::Http { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(code: i64) -> TiktokError {
        TiktokError::Api {
            code,
            message: "m".into(),
            request_id: String::new(),
        }
    }

    #[test]
    fn which_codes_are_retried() {
        assert!(api(THROTTLED).is_transient() && api(50002).is_transient());
        for fatal in [NO_PERMISSION, BAD_PARAMETER, BAD_TOKEN, 40000] {
            assert!(!api(fatal).is_transient(), "{fatal}");
        }
        assert!(!TiktokError::TokenInvalid.is_transient());
        assert!(!TiktokError::Unanswered {
            detail: String::new()
        }
        .is_transient());
        let m = TiktokError::TokenInvalid.user_message();
        assert!(m.contains("TIKTOK_ACCESS_TOKEN"), "{m}");
    }
}
