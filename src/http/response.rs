//! Responses, and the one place an error becomes a status and the JSON error shape.

use http::{header, Response, StatusCode};
use serde::Serialize;
use serde_json::json;

use crate::error::Error;

pub type ApiResponse = Response<String>;

pub fn json<T: Serialize>(status: StatusCode, body: &T) -> ApiResponse {
    match serde_json::to_string(body) {
        Ok(text) => with_body(status, text),
        Err(e) => {
            tracing::error!(error = %e, "response did not serialize");
            error_body(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal_error",
                "internal error",
                None,
            )
        }
    }
}

pub fn no_content() -> ApiResponse {
    Response::builder()
        .status(StatusCode::NO_CONTENT)
        .body(String::new())
        .expect("static response parts are valid")
}

fn with_body(status: StatusCode, text: String) -> ApiResponse {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(text)
        .expect("static response parts are valid")
}

pub fn error_body(
    status: StatusCode,
    code: &str,
    message: &str,
    field: Option<&str>,
) -> ApiResponse {
    let mut error = json!({"code": code, "message": message});
    if let Some(f) = field {
        error["field"] = json!(f);
    }
    with_body(status, json!({ "error": error }).to_string())
}

pub fn not_found_route() -> ApiResponse {
    error_body(StatusCode::NOT_FOUND, "not_found", "no such route", None)
}

pub fn method_not_allowed(allowed: &str) -> ApiResponse {
    let mut r = error_body(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        &format!("this route accepts {allowed}"),
        None,
    );
    if let Ok(v) = allowed.replace(' ', "").parse() {
        r.headers_mut().insert(header::ALLOW, v);
    }
    r
}

impl From<Error> for ApiResponse {
    fn from(e: Error) -> Self {
        match &e {
            Error::Invalid {
                code,
                field,
                message,
            } => error_body(StatusCode::BAD_REQUEST, code, message, field.as_deref()),
            Error::NotFound(m) => error_body(StatusCode::NOT_FOUND, "not_found", m, None),
            Error::Conflict(m) => error_body(StatusCode::CONFLICT, "conflict", m, None),
            Error::Meta(m) => {
                tracing::warn!(error = %m, "Meta refused");
                error_body(
                    StatusCode::BAD_GATEWAY,
                    "meta_error",
                    &m.user_message(),
                    None,
                )
            }
            Error::Db(db) => {
                tracing::error!(error = %db, "request failed");
                error_body(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal_error",
                    "internal error; the details are in the service's log",
                    None,
                )
            }
        }
    }
}
