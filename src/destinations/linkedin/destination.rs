//! LinkedIn as a destination of the sync engine: the DMP segment created on first sync, members
//! added and removed as SHA-256 email hashes in batches of at most 5,000, each element's status
//! mapped back to its member, the segment's status and counts read back.

use serde_json::{json, Value};
use tokio_postgres::Client;

use super::client::{users_path, LinkedinClient, SEGMENTS_PATH};
use super::error::LinkedinError;
use super::hashing::LinkedinRow;
use super::wire::{Action, MAX_ELEMENTS};
use crate::audience::store::{self as audiences, PlatformId};
use crate::audience::Audience;
use crate::destinations::{
    Accepted, Destination, Opening, PlannedCall, Platform, PlatformSize, Removal, Step,
};
use crate::error::{Error, Result};
use crate::sync::member_store;

/// LinkedIn's per-element messages kept per sync (they name no member: only hashes were sent,
/// and they are masked).
const MAX_SAMPLES: usize = 20;

/// Members go to one DMP segment.
pub struct LinkedinDestination<'a> {
    client: &'a LinkedinClient,
    segment_id: Option<String>,
    stats: Stats,
}

#[derive(Default)]
struct Stats {
    /// The segment's size read back by `finish`.
    size: Option<PlatformSize>,
    requests: u64,
    added: u64,
    removed: u64,
    rejected: u64,
    samples: Vec<String>,
    created: bool,
}

impl<'a> LinkedinDestination<'a> {
    pub fn new(client: &'a LinkedinClient, audience: &Audience) -> Self {
        LinkedinDestination {
            client,
            segment_id: audience.destination_audience_id.clone(),
            stats: Stats::default(),
        }
    }

    /// For removals alone (the purge), without [`Destination::open`]: `None` when the audience
    /// has no segment yet (LinkedIn then holds none of its members).
    pub fn existing(client: &'a LinkedinClient, audience: &Audience) -> Option<Self> {
        audience.destination_audience_id.as_ref()?;
        Some(LinkedinDestination::new(client, audience))
    }

    fn segment(&self) -> &str {
        self.segment_id.as_deref().unwrap_or_default()
    }

    /// One action for `hashes`, in requests of at most [`MAX_ELEMENTS`]; the indexes (into
    /// `hashes`) of the elements LinkedIn refused.
    async fn apply(&mut self, action: Action, hashes: &[String]) -> Result<Vec<usize>> {
        let mut refused = Vec::new();
        for (n, chunk) in hashes.chunks(MAX_ELEMENTS).enumerate() {
            let statuses = self
                .client
                .update_users(self.segment(), action, chunk)
                .await
                .map_err(|e| gone_or(e, self.segment()))?;
            self.stats.requests += 1;
            for (i, s) in statuses.iter().enumerate().filter(|(_, s)| !s.ok()) {
                refused.push(n * MAX_ELEMENTS + i);
                if self.stats.samples.len() < MAX_SAMPLES {
                    let message = s.error.as_ref().map_or("", |e| e.message.as_str());
                    self.stats
                        .samples
                        .push(format!("{}: {}", s.status, message));
                }
            }
        }
        self.stats.rejected += refused.len() as u64;
        Ok(refused)
    }
}

/// A 404 on a segment we hold an id of: LinkedIn no longer has it.
fn gone_or(e: LinkedinError, segment_id: &str) -> Error {
    if e.is_not_found() {
        Error::PlatformAudienceGone {
            platform: Platform::Linkedin,
            platform_audience_id: segment_id.to_string(),
        }
    } else {
        e.into()
    }
}

impl Destination for LinkedinDestination<'_> {
    type Row = LinkedinRow;

    /// LinkedIn has no replace: a full sync removes leavers and changed identifiers, then
    /// sends everyone again.
    fn replaces(&self) -> bool {
        false
    }

    fn rejected_reason(&self) -> &'static str {
        "LinkedIn refused this member's email hash (its element of the batch failed)"
    }

    async fn open(&mut self, db: &Client, audience: &mut Audience, _: Opening<'_>) -> Result<()> {
        if self.segment_id.is_some() {
            return Ok(());
        }
        let account = self
            .client
            .resolve_account(audience.destination_account_id.as_deref())?;
        let id = self
            .client
            .create_segment(&account, &audience.name, &audience.id.to_string())
            .await?;
        audiences::set_platform_id(db, audience.id, PlatformId::Audience, &id).await?;
        // A new segment holds nothing: what the database believed sent is forgotten.
        member_store::forget_sent(db, audience.id).await?;
        tracing::info!(audience_id = %audience.id, linkedin_segment_id = %id, "created in LinkedIn");
        audience.destination_audience_id = Some(id.clone());
        self.segment_id = Some(id);
        self.stats.created = true;
        self.client.wait_until_available(self.segment()).await?;
        Ok(())
    }

    async fn send(&mut self, rows: &[&LinkedinRow], _last: bool) -> Result<Accepted> {
        let hashes: Vec<String> = rows.iter().map(|r| r.hex()).collect();
        let refused = self.apply(Action::Add, &hashes).await?;
        self.stats.added += (hashes.len() - refused.len()) as u64;
        Ok(Accepted {
            invalid: refused.into_iter().collect(),
            unidentified: 0,
        })
    }

    /// An element LinkedIn refuses to remove was never one it held (a malformed hash cannot
    /// have been added): the removal is done either way.
    async fn remove(&mut self, rows: &[LinkedinRow]) -> Result<Removal> {
        let hashes: Vec<String> = rows.iter().map(|r| r.hex()).collect();
        let refused = self.apply(Action::Remove, &hashes).await?;
        self.stats.removed += (hashes.len() - refused.len()) as u64;
        Ok(Removal::Done)
    }

    async fn finish(&mut self, db: &Client, audience: &mut Audience) -> Result<()> {
        let Some(id) = self.segment_id.clone() else {
            return Ok(());
        };
        // Informational: a failed read does not fail the sync; the next one reads again.
        match self.client.segment(&id).await {
            Ok(s) => {
                // LinkedIn's audience size is its one figure: both bounds.
                self.stats.size = Some(PlatformSize {
                    lower: s.audience_size(),
                    upper: s.audience_size(),
                    operation_status: s.status().map(|st| json!(st)),
                    ..PlatformSize::default()
                });
                let metrics = json!({
                    "platform": "linkedin",
                    "segment_status": s.status(),
                    "matched_count": s.matched_count(),
                    "audience_size": s.audience_size(),
                    "input_count": s.input_count,
                    "read_at": chrono::Utc::now(),
                });
                audiences::record_meta_metrics(db, audience.id, &metrics).await?;
            }
            Err(e) if e.is_not_found() => return Err(gone_or(e, &id)),
            Err(e) => tracing::warn!(audience_id = %audience.id, error = %e,
                "could not read the segment from LinkedIn"),
        }
        Ok(())
    }

    fn plan(&self, audience: &Audience, step: Step) -> Vec<PlannedCall> {
        let target = audience
            .destination_audience_id
            .as_deref()
            .unwrap_or("{new_segment_id}");
        match step {
            Step::Open if audience.destination_audience_id.is_none() => {
                PlannedCall::bare("POST", SEGMENTS_PATH)
            }
            Step::Send { rows, .. } | Step::Remove { rows } => {
                PlannedCall::chunked("POST", &users_path(target), rows, MAX_ELEMENTS)
            }
            Step::Open | Step::Finish => Vec::new(),
        }
    }

    fn size(&self) -> Option<PlatformSize> {
        self.stats.size.clone()
    }

    fn response(&self) -> Value {
        let s = &self.stats;
        json!({
            "platform": "linkedin",
            "segment_id": self.segment_id,
            "created": s.created,
            "requests": s.requests,
            "added": s.added,
            "removed": s.removed,
            "rejected": s.rejected,
            "rejected_samples": s.samples,
        })
    }
}

/// Deletes the audience's segment in LinkedIn (one LinkedIn no longer has counts as deleted).
pub async fn delete_audience(client: &LinkedinClient, audience: &Audience) -> Result<()> {
    if let Some(id) = &audience.destination_audience_id {
        client.delete_segment(id).await?;
    }
    Ok(())
}
