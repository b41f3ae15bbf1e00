//! TikTok Custom Audiences (the audience segment API: "partner audiences") as a destination:
//! the client (the body `code` of every answer, retries), wire types, TikTok's row (hashed email
//! and phone) and the destination the sync engine drives. Facts and sources:
//! shared/DESTINATIONS.md §4.

pub mod client;
mod destination;
pub mod error;
pub mod hashing;
pub mod health;
pub mod wire;

pub use client::TiktokClient;
pub use destination::{delete_audience, TiktokDestination};
pub use error::TiktokError;
pub use hashing::TiktokRow;
