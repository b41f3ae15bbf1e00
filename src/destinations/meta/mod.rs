//! Meta (Facebook) Marketing API as a destination: the Graph API client (its token, retry
//! policy and wire types), its errors, Meta's multi-key row of hashed contact data, and the
//! destination the sync engine drives. How contact data is normalized before it is hashed is
//! defined once, in [`crate::identity`].

pub mod client;
mod destination;
pub mod error;
pub mod hashing;
pub mod health;
mod row;
pub mod wire;

pub use crate::destinations::token::SecretToken;
pub use client::{MetaClient, MetaConfig};
pub use destination::{delete_audience, MetaDestination};
pub use error::{ErrorKind, MetaError};
pub use row::MetaRow;
