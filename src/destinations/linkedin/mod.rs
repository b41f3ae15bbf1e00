//! LinkedIn Matched Audiences (DMP segments, streaming users) as a destination: the client
//! (headers, retries, errors), wire types, LinkedIn's row (one SHA-256 email) and the
//! destination the sync engine drives. Facts and sources: shared/DESTINATIONS.md §3.

pub mod client;
mod destination;
pub mod error;
pub mod hashing;
pub mod health;
pub mod wire;

pub use client::LinkedinClient;
pub use destination::{delete_audience, LinkedinDestination};
pub use error::LinkedinError;
pub use hashing::LinkedinRow;
