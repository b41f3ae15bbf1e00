//! Extractors whose rejections are the API's error shape: bodies parsed with field-naming
//! errors (`crate::input`), ids from the path, query parameters.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use uuid::Uuid;

use super::error::{error_body, ApiError};
use crate::app::App;
use crate::input;

/// Requests larger than this are refused (Lambda's own payload limit is 6 MB).
pub const MAX_BODY_BYTES: usize = 6 * 1024 * 1024;

/// Why a request could not be read.
pub enum Rejection {
    TooLarge,
    Api(ApiError),
}

impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        match self {
            Rejection::TooLarge => error_body(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "the request body is larger than 6 MB",
                None,
            ),
            Rejection::Api(e) => e.into_response(),
        }
    }
}

impl From<crate::error::Error> for Rejection {
    fn from(e: crate::error::Error) -> Self {
        Rejection::Api(ApiError(e))
    }
}

/// The request body as sent, up to [`MAX_BODY_BYTES`].
pub struct RawBody(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for RawBody {
    type Rejection = Rejection;

    async fn from_request(req: Request, _state: &S) -> Result<Self, Self::Rejection> {
        axum::body::to_bytes(req.into_body(), MAX_BODY_BYTES)
            .await
            .map(RawBody)
            .map_err(|_| Rejection::TooLarge)
    }
}

/// A JSON body the client may send: which of its fields the server sets itself.
pub trait Payload: DeserializeOwned {
    /// Fields refused with a 400 saying they are read-only.
    const READ_ONLY: &'static [&'static str] = &[];
    /// Fields whose items the handler checks one by one, reporting each bad one (an import).
    const ROWS: &'static [&'static str] = &[];
}

/// The body as `T`: a JSON object, no unknown or read-only field, each field of its type.
pub struct Json<T>(pub T);

impl<S: Send + Sync, T: Payload> FromRequest<S> for Json<T> {
    type Rejection = Rejection;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let RawBody(bytes) = RawBody::from_request(req, state).await?;
        Ok(Json(input::parse_body(&bytes, T::READ_ONLY, T::ROWS)?))
    }
}

/// The `{id}` of the path, a UUID (400 naming `id` otherwise).
pub struct Id(pub Uuid);

impl<S: Send + Sync> FromRequestParts<S> for Id {
    type Rejection = Rejection;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let axum::extract::Path(raw) =
            axum::extract::Path::<String>::from_request_parts(parts, state)
                .await
                .map_err(|_| crate::error::Error::invalid("id", "id is missing from the path"))?;
        Ok(Id(input::uuid_param("id", &raw)?))
    }
}

/// The query string's parameters, decoded; unknown ones are ignored.
pub struct Params(Vec<(String, String)>);

impl<S: Send + Sync> FromRequestParts<S> for Params {
    type Rejection = Rejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(Params(input::query_pairs(parts.uri.query())))
    }
}

impl Params {
    fn last(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The parameter's value as sent (the last one when repeated).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.last(name)
    }

    pub fn bool(&self, name: &str) -> crate::error::Result<Option<bool>> {
        self.last(name)
            .map(|v| input::bool_param(name, v))
            .transpose()
    }

    pub fn int(&self, name: &str, min: i64, max: i64) -> crate::error::Result<Option<i64>> {
        self.last(name)
            .map(|v| input::int_param(name, v, min, max))
            .transpose()
    }

    /// The page of a list route: `limit` and `cursor` (400 naming the one at fault).
    pub fn page(&self) -> crate::error::Result<input::PageRequest> {
        input::PageRequest::parse(self.last("limit"), self.last("cursor"))
    }

    /// Every value of a repeatable parameter, comma-separated lists split.
    pub fn list(&self, name: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, _)| k == name)
            .flat_map(|(_, v)| v.split(','))
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .collect()
    }
}

/// When a sync this request starts must pause at its checkpoint (see
/// [`crate::lambda::sync_deadline`]): before the Lambda invocation ends, not killed mid-batch.
pub struct SyncDeadline(pub Option<std::time::Instant>);

impl FromRequestParts<App> for SyncDeadline {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, app: &App) -> Result<Self, Self::Rejection> {
        Ok(SyncDeadline(crate::lambda::sync_deadline(
            &parts.extensions,
            app,
        )))
    }
}
