//! Google Customer Match through the Data Manager API (DESTINATIONS.md §0, §2; DESIGN §8.1):
//! the client (OAuth2 with refresh, retries), its wire types and errors, Google's own
//! normalization and row, and the destination the sync engine drives.

pub mod client;
mod destination;
pub mod error;
pub mod hashing;
pub mod health;
mod row;
pub mod wire;

pub use client::GoogleClient;
pub use destination::{delete_user_list, display_name, GoogleDestination};
pub use error::{ErrorKind, GoogleError};
pub use hashing::GoogleRow;
