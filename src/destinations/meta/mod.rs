//! Meta (Facebook) Marketing API: the Graph API client (its token, retry policy and wire types),
//! its errors, and Meta's multi-key row of hashed contact data. How contact data is normalized
//! and hashed before it leaves the database is defined once, in [`crate::identity`].

pub mod client;
pub mod error;
pub mod hashing;
pub mod retry;
pub mod token;
pub mod wire;

pub use client::{MetaClient, MetaConfig};
pub use error::{ErrorKind, MetaError};
pub use token::SecretToken;
