//! Responses, and the one place an error becomes a status and the JSON error shape
//! `{"error": {"code", "message", "field"?}}` (DESIGN §6).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use serde_json::json;

use crate::error::Error;

/// What a handler returns on failure.
#[derive(Debug)]
pub struct ApiError(pub Error);

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        ApiError(e)
    }
}

impl From<crate::db::DbError> for ApiError {
    fn from(e: crate::db::DbError) -> Self {
        ApiError(e.into())
    }
}

impl From<deadpool_postgres::PoolError> for ApiError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        ApiError(e.into())
    }
}

impl From<tokio_postgres::Error> for ApiError {
    fn from(e: tokio_postgres::Error) -> Self {
        ApiError(e.into())
    }
}

pub type ApiResult<T = Response> = Result<T, ApiError>;

/// The error shape with `status`.
pub fn error_body(status: StatusCode, code: &str, message: &str, field: Option<&str>) -> Response {
    let mut error = json!({"code": code, "message": message});
    if let Some(f) = field {
        error["field"] = json!(f);
    }
    (status, Json(json!({ "error": error }))).into_response()
}

/// `body` as JSON with `status`.
pub fn json<T: Serialize>(status: StatusCode, body: &T) -> Response {
    (status, Json(body)).into_response()
}

/// A page of a list route: `{"<items>": [...], "next_cursor": "…" | null}` (200).
pub fn page<T: Serialize>(items: &str, page: crate::input::Page<T>) -> Response {
    page_of(items, page.items, page.next.map(|c| c.encode()))
}

/// [`page`] with its cursor already encoded (lists with another cursor than creation order).
pub fn page_of<T: Serialize>(items: &str, list: Vec<T>, next_cursor: Option<String>) -> Response {
    json(
        StatusCode::OK,
        &json!({ items: list, "next_cursor": next_cursor }),
    )
}

pub fn no_content() -> Response {
    StatusCode::NO_CONTENT.into_response()
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match &self.0 {
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
            Error::Google(g) => {
                tracing::warn!(error = %g, "Google refused");
                error_body(
                    StatusCode::BAD_GATEWAY,
                    "google_error",
                    &g.user_message(),
                    None,
                )
            }
            Error::Linkedin(e) => {
                tracing::warn!(error = %e, "LinkedIn refused");
                error_body(
                    StatusCode::BAD_GATEWAY,
                    "linkedin_error",
                    &e.user_message(),
                    None,
                )
            }
            Error::Tiktok(e) => {
                tracing::warn!(error = %e, "TikTok refused");
                error_body(
                    StatusCode::BAD_GATEWAY,
                    "tiktok_error",
                    &e.user_message(),
                    None,
                )
            }
            e @ Error::PlatformAudienceGone { .. } => error_body(
                StatusCode::BAD_GATEWAY,
                "platform_audience_gone",
                &e.to_string(),
                None,
            ),
            Error::Db(db) if is_timeout(db) => {
                tracing::warn!(error = %db, "database timeout");
                error_body(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "database_timeout",
                    "the database did not finish in time (a statement ran past \
                     DB_STATEMENT_TIMEOUT_SECONDS, or waited too long for a lock held elsewhere); \
                     try again, or narrow the request",
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

/// The session's statement or lock timeout ended the statement (not a client's mistake, nor
/// a fault of ours to hide behind a 500: the answer says what happened).
fn is_timeout(db: &crate::db::DbError) -> bool {
    use tokio_postgres::error::SqlState;
    matches!(
        db.sqlstate(),
        Some(&SqlState::QUERY_CANCELED | &SqlState::LOCK_NOT_AVAILABLE)
    )
}

/// No route has this path.
pub async fn no_route() -> Response {
    error_body(StatusCode::NOT_FOUND, "not_found", "no such route", None)
}

/// The route exists but not with this method (axum adds the `Allow` header listing the
/// methods it takes).
pub async fn method_not_allowed(method: axum::http::Method) -> Response {
    error_body(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        &format!("this route does not accept {method}: the Allow header lists what it accepts"),
        None,
    )
}
