//! Meta (Facebook) Marketing API: the Graph API client, its errors, and the one definition of
//! how contact data is normalized and hashed before it leaves the database.

pub mod client;
pub mod error;
pub mod normalize;

pub use client::{MetaClient, MetaConfig, SecretToken};
pub use error::{ErrorKind, MetaError};
