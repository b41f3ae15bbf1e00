//! The domain layer's error: what a caller did wrong, or what stopped us. The HTTP layer maps it
//! to a status and the JSON error shape in one place (`http::response`).

use crate::db::DbError;
use crate::destinations::google::GoogleError;
use crate::destinations::linkedin::LinkedinError;
use crate::destinations::meta::error::MetaError;
use crate::destinations::tiktok::TiktokError;
use crate::destinations::Platform;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The input broke a rule. `field` names the field at fault when one is.
    #[error("{message}")]
    Invalid {
        code: &'static str,
        field: Option<String>,
        message: String,
    },
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Meta(#[from] MetaError),
    #[error(transparent)]
    Google(#[from] GoogleError),
    #[error(transparent)]
    Linkedin(#[from] LinkedinError),
    #[error(transparent)]
    Tiktok(#[from] TiktokError),
    /// The platform no longer has the audience (deleted in its ads UI, expired): the sync fails
    /// saying so, its platform id is cleared, and the next sync creates it anew and sends
    /// everyone (DESIGN §8.1). Every destination reports a vanished audience with this.
    #[error(
        "the {platform} audience {platform_audience_id} no longer exists on the platform (deleted \
         outside audience-sync, or expired); the next sync creates it again and sends every member"
    )]
    PlatformAudienceGone {
        platform: Platform,
        platform_audience_id: String,
    },
}

impl Error {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Invalid {
            code: "invalid_field",
            field: Some(field.into()),
            message: message.into(),
        }
    }

    pub fn not_found(what: &str, id: impl std::fmt::Display) -> Self {
        Error::NotFound(format!("{what} {id} does not exist"))
    }
}

impl From<tokio_postgres::Error> for Error {
    fn from(e: tokio_postgres::Error) -> Self {
        Error::Db(DbError::from(e))
    }
}

impl From<deadpool_postgres::PoolError> for Error {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        Error::Db(DbError::from(e))
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
