//! Where a sync sends members: Meta, or nowhere when Meta is not configured (the database side
//! alone is then the sync, and every batch counts as accepted).

use std::collections::HashSet;

use serde_json::{json, Value};

use crate::destinations::meta::hashing::HashedRow;
use crate::error::Result;

/// Which rows of a sent batch the destination refused (by index in the batch), and how many
/// more it counted as invalid without saying which (Meta quotes at most 100).
#[derive(Debug, Default)]
pub struct Accepted {
    pub invalid: HashSet<usize>,
    pub unidentified: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Removal {
    Done,
    /// Refused for now (Meta: the audience would become too small); retried by a later sync.
    Deferred,
}

#[allow(async_fn_in_trait)]
pub trait Destination {
    /// Adds a batch (or, in a replace session, the next batch; `last` closes it).
    async fn send(&mut self, rows: &[&HashedRow], last: bool) -> Result<Accepted>;
    async fn remove(&mut self, rows: &[HashedRow]) -> Result<Removal>;
    /// What the sync log keeps of the destination's answers.
    fn response(&self) -> Value;
    /// What a checkpoint must remember to continue in another invocation.
    fn checkpoint(&self) -> Value {
        Value::Null
    }
    /// An upload session is open and still needs its last batch.
    fn needs_closing(&self) -> bool {
        false
    }
}

/// Meta not configured.
pub struct DatabaseOnly;

impl Destination for DatabaseOnly {
    async fn send(&mut self, _rows: &[&HashedRow], _last: bool) -> Result<Accepted> {
        Ok(Accepted::default())
    }

    async fn remove(&mut self, _rows: &[HashedRow]) -> Result<Removal> {
        Ok(Removal::Done)
    }

    fn response(&self) -> Value {
        json!({"skipped": "meta not configured"})
    }
}
