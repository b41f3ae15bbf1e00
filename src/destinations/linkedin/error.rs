//! Errors of the LinkedIn client. Nothing secret reaches `Display` or
//! [`LinkedinError::user_message`]: the token travels only in a header, and LinkedIn's own
//! message text is scrubbed before it is kept.

use std::time::Duration;

use crate::destinations::transport::Retryable;

#[derive(Debug, thiserror::Error)]
pub enum LinkedinError {
    /// HTTP 401: the token expired (they last 60 days) or was revoked.
    #[error("LinkedIn refused the access token (HTTP 401)")]
    TokenInvalid,
    /// An HTTP error answer (LinkedIn's `{"status", "serviceErrorCode"?, "message"}`).
    #[error("LinkedIn answered HTTP {status}: {message}")]
    Api {
        status: u16,
        message: String,
        retry_after: Option<Duration>,
    },
    #[error("LinkedIn could not be reached: {detail}")]
    Transport { timeout: bool, detail: String },
    #[error("LinkedIn's answer was not what its API documents (HTTP {status}): {detail}")]
    Unexpected { status: u16, detail: String },
    /// A request the client refused to send, or a setting it cannot use.
    #[error("{0}")]
    InvalidRequest(String),
}

impl LinkedinError {
    pub fn status(&self) -> Option<u16> {
        match self {
            LinkedinError::TokenInvalid => Some(401),
            LinkedinError::Api { status, .. } | LinkedinError::Unexpected { status, .. } => {
                Some(*status)
            }
            _ => None,
        }
    }

    pub fn is_not_found(&self) -> bool {
        self.status() == Some(404)
    }

    /// What a marketer reads in the sync log: what happened and what to do.
    pub fn user_message(&self) -> String {
        match self {
            LinkedinError::TokenInvalid => {
                "LinkedIn refused the access token (expired or revoked: \
                LinkedIn tokens last 60 days and this service has no refresh flow); renew the \
                token in LINKEDIN_ACCESS_TOKEN or the LINKEDIN_TOKEN_SECRET_ARN secret, then sync \
                again"
                    .to_string()
            }
            LinkedinError::Api {
                status: 403,
                message,
                ..
            } => format!(
                "LinkedIn refused the request (HTTP 403): the token needs the rw_dmp_segments \
                 scope and a role above VIEWER on the ad account ({message})"
            ),
            LinkedinError::Api { status: 429, .. } => "LinkedIn kept throttling the requests \
                (HTTP 429) after every retry; the next sync carries on"
                .to_string(),
            LinkedinError::Api {
                status, message, ..
            } => {
                format!("LinkedIn refused the request (HTTP {status}): {message}")
            }
            other => other.to_string(),
        }
    }
}

impl Retryable for LinkedinError {
    /// Throttling, LinkedIn's server errors and transport failures (as integrators retry:
    /// 408, 423, 429, 500, 502, 503, 504). Anything else in 4xx is the request's fault.
    fn is_transient(&self) -> bool {
        match self {
            LinkedinError::Api { status, .. } => {
                matches!(status, 408 | 423 | 429 | 500 | 502 | 503 | 504)
            }
            LinkedinError::Transport { .. } => true,
            _ => false,
        }
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            LinkedinError::Api { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_message_says_to_renew_and_what_is_retried() {
        let m = LinkedinError::TokenInvalid.user_message();
        assert!(
            m.contains("renew") && m.contains("LINKEDIN_ACCESS_TOKEN"),
            "{m}"
        );
        assert!(!LinkedinError::TokenInvalid.is_transient());
        let api = |status| LinkedinError::Api {
            status,
            message: String::new(),
            retry_after: None,
        };
        assert!(api(429).is_transient() && api(503).is_transient());
        assert!(!api(400).is_transient() && !api(404).is_transient());
        assert!(api(404).is_not_found());
    }
}
