//! Fault injection: which requests a fault applies to, and what it answers in their place.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::wire::{account_of, usage_header, FakeAnswer, Req};
use super::Shared;

/// Predicate over (method, path without version).
pub type FaultPredicate = Arc<dyn Fn(&str, &str) -> bool + Send + Sync>;

/// Which requests a fault applies to.
#[derive(Clone)]
pub enum FaultMatch {
    Any,
    /// Method (case-insensitive) and the path without version ending with `path_suffix`
    /// (e.g. `"/users"`, `"/usersreplace"`, `"/customaudiences"`; `""` matches every path).
    Route {
        method: String,
        path_suffix: String,
    },
    /// Any predicate over (method, path without version, e.g. `/123/users`).
    Custom(FaultPredicate),
}

impl FaultMatch {
    pub fn route(method: &str, path_suffix: &str) -> Self {
        FaultMatch::Route {
            method: method.to_string(),
            path_suffix: path_suffix.to_string(),
        }
    }

    pub fn when(f: impl Fn(&str, &str) -> bool + Send + Sync + 'static) -> Self {
        FaultMatch::Custom(Arc::new(f))
    }

    pub(super) fn matches(&self, method: &str, path: &str) -> bool {
        match self {
            FaultMatch::Any => true,
            FaultMatch::Route {
                method: m,
                path_suffix,
            } => m.eq_ignore_ascii_case(method) && path.ends_with(path_suffix.as_str()),
            FaultMatch::Custom(f) => f(method, path),
        }
    }
}

impl fmt::Debug for FaultMatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FaultMatch::Any => f.write_str("Any"),
            FaultMatch::Route {
                method,
                path_suffix,
            } => write!(f, "Route({method} *{path_suffix})"),
            FaultMatch::Custom(_) => f.write_str("Custom(..)"),
        }
    }
}

/// What a fault answers.
#[derive(Debug, Clone)]
pub enum FaultResponse {
    /// Meta's JSON error envelope.
    MetaError {
        status: u16,
        code: i64,
        subcode: Option<i64>,
        /// Default: a Meta-like message for the code.
        message: Option<String>,
        is_transient: bool,
        /// Sends `X-Business-Use-Case-Usage` with this `estimated_time_to_regain_access`.
        regain_access_minutes: Option<u64>,
    },
    /// HTTP 500 with an HTML page.
    Html500,
    /// Waits, then handles the request normally.
    Delay(Duration),
    /// Handles the request at once, then waits before answering: a client that times out
    /// meanwhile cannot know its request was carried out.
    AnswerLate(Duration),
}

/// A fault applied to the next `times` matching requests.
#[derive(Debug, Clone)]
pub struct Fault {
    pub matching: FaultMatch,
    pub times: usize,
    pub response: FaultResponse,
}

impl Fault {
    /// Meta error `code`/`subcode` with HTTP `status`.
    pub fn meta_error(
        matching: FaultMatch,
        times: usize,
        status: u16,
        code: i64,
        subcode: Option<i64>,
    ) -> Self {
        let is_transient = matches!(
            code,
            1 | 2 | 4 | 17 | 32 | 341 | 613 | 80000 | 80003 | 80004 | 80014
        ) || matches!(subcode, Some(1870145 | 1870148));
        Fault {
            matching,
            times,
            response: FaultResponse::MetaError {
                status,
                code,
                subcode,
                message: None,
                is_transient,
                regain_access_minutes: None,
            },
        }
    }

    pub fn html500(matching: FaultMatch, times: usize) -> Self {
        Fault {
            matching,
            times,
            response: FaultResponse::Html500,
        }
    }

    pub fn delay(matching: FaultMatch, times: usize, delay: Duration) -> Self {
        Fault {
            matching,
            times,
            response: FaultResponse::Delay(delay),
        }
    }

    /// Carry the request out at once but answer only after `delay`.
    pub fn answer_late(matching: FaultMatch, times: usize, delay: Duration) -> Self {
        Fault {
            matching,
            times,
            response: FaultResponse::AnswerLate(delay),
        }
    }

    /// Override the error message (Meta error faults only).
    pub fn with_message(mut self, text: &str) -> Self {
        if let FaultResponse::MetaError { message, .. } = &mut self.response {
            *message = Some(text.to_string());
        }
        self
    }

    /// Send `X-Business-Use-Case-Usage` with `estimated_time_to_regain_access` = `minutes`.
    pub fn with_regain_access_minutes(mut self, minutes: u64) -> Self {
        if let FaultResponse::MetaError {
            regain_access_minutes,
            ..
        } = &mut self.response
        {
            *regain_access_minutes = Some(minutes);
        }
        self
    }
}

/// The answer of the first fault matching the request, counted as used (a fault used up is
/// removed). Faults are tried in the order they were injected.
pub(super) fn take(faults: &mut Vec<Fault>, method: &str, rest: &str) -> Option<FaultResponse> {
    let pos = faults
        .iter()
        .position(|f| f.times > 0 && f.matching.matches(method, rest))?;
    let fault = faults[pos].response.clone();
    faults[pos].times -= 1;
    if faults[pos].times == 0 {
        faults.remove(pos);
    }
    Some(fault)
}

/// What a fault answers in place of the request (a [`FaultResponse::Delay`] or
/// [`FaultResponse::AnswerLate`] is no answer: the caller waits and handles the request).
pub(super) fn answer(shared: &Shared, fault: FaultResponse, req: &Req) -> FakeAnswer {
    match fault {
        FaultResponse::Delay(_) | FaultResponse::AnswerLate(_) => {
            unreachable!("a delay is waited for, and the request handled normally")
        }
        FaultResponse::Html500 => FakeAnswer {
            status: 500,
            body: b"<!DOCTYPE html><html><head><title>Error</title></head><body><h1>Sorry, \
                    something went wrong.</h1><p>We're working on it.</p></body></html>"
                .to_vec(),
            content_type: "text/html; charset=utf-8",
            headers: Vec::new(),
            error_code: None,
        },
        FaultResponse::MetaError {
            status,
            code,
            subcode,
            message,
            is_transient,
            regain_access_minutes,
        } => {
            let mut st = shared.lock();
            let text = message.unwrap_or_else(|| default_message(code, subcode));
            let (title, user_msg) = if subcode == Some(1713230) {
                (
                    Some("Audience Upload Blocked"),
                    Some("Before updating user memberships, you must resolve integrity restrictions on this Data File Custom Audience."),
                )
            } else {
                (None, None)
            };
            let mut a = st.error_full(status, code, subcode, &text, title, user_msg, is_transient);
            if let Some(m) = regain_access_minutes {
                let account = account_of(&req.rest);
                a.headers
                    .push(("x-business-use-case-usage", usage_header(&account, m)));
            }
            a
        }
    }
}

/// Meta's message for an injected error code, when the fault names none.
fn default_message(code: i64, subcode: Option<i64>) -> String {
    match (code, subcode) {
        (1, _) => "An unknown error occurred".into(),
        (2, _) => "An unexpected error has occurred. Please retry your request later.".into(),
        (4, _) => "(#4) Application request limit reached".into(),
        (17, _) => "(#17) User request limit reached".into(),
        (32, _) => "(#32) Page request limit reached".into(),
        (341, _) => "(#341) Application limit reached".into(),
        (613, _) => "(#613) Calls to this api have exceeded the rate limit.".into(),
        (80003, _) => "(#80003) There have been too many calls to this ad-account. Wait a bit \
                       and try again."
            .into(),
        (c, _) if (80000..=80014).contains(&c) => {
            format!("(#{c}) There have been too many calls for this business use case.")
        }
        (190, Some(463)) => "Error validating access token: Session has expired.".into(),
        (190, _) => "Invalid OAuth access token - Cannot parse access token".into(),
        (200, Some(1870047)) => "(#200) Removing these users would make the audience too \
                                 small."
            .into(),
        (200, Some(1870034)) | (200, Some(1870090)) => {
            "(#200) You must accept the Custom Audience Terms before using this feature.".into()
        }
        (10, _) | (200..=299, _) => format!("(#{code}) Permission error"),
        (2635, _) => "(#2635) You are calling a deprecated version of the Ads API. Please \
                      update to the latest version."
            .into(),
        (2650, Some(1870145)) => "(#2650) Another update is in progress for this audience.".into(),
        (2650, _) => "(#2650) Failed to update the custom audience".into(),
        (2656, _) => "(#2656) This audience cannot be deleted because lookalike audiences \
                      were created from it."
            .into(),
        (100, _) => "(#100) Invalid parameter".into(),
        (c, _) => format!("(#{c}) Error"),
    }
}
