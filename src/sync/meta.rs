//! The Meta side of a sync: the audience (and a lookalike's seed) created on first sync, members
//! sent as hashed rows, Meta's answers kept in the log, its view of the audience read back.

use serde_json::{json, Value};
use tokio_postgres::Client;
use uuid::Uuid;

use super::destination::{Accepted, Destination, Removal};
use crate::audience::{self, Audience, AudienceType, EngagementRule};
use crate::destinations::meta::error::ErrorKind;
use crate::destinations::meta::hashing::{HashedRow, SCHEMA};
use crate::destinations::meta::wire::{Session, UsersPayload};
use crate::destinations::meta::MetaClient;
use crate::error::{Error, Result};

/// Meta keeps at most this many invalid-entry samples per answer; we keep as many per sync.
const MAX_SAMPLES: usize = 100;

/// Members go to one Meta audience: a customer list's own, or a lookalike's seed.
pub struct MetaDestination<'a> {
    client: &'a MetaClient,
    audience_id: String,
    replace: Option<ReplaceSession>,
    stats: Stats,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct ReplaceSession {
    session_id: u64,
    next_seq: u32,
    estimated_total: u64,
    #[serde(default)]
    closed: bool,
}

#[derive(Default)]
struct Stats {
    requests: u64,
    session_ids: Vec<String>,
    num_received: u64,
    num_invalid_entries: u64,
    samples: Vec<Value>,
    removals_deferred: bool,
}

impl<'a> MetaDestination<'a> {
    /// `replace_total`: the members a full sync's replace session will carry (about).
    pub fn new(client: &'a MetaClient, audience_id: String, replace_total: Option<u64>) -> Self {
        MetaDestination {
            client,
            audience_id,
            // Unique in the ad account: random, positive as an int64.
            replace: replace_total.map(|estimated_total| ReplaceSession {
                session_id: rand::random_range(1..i64::MAX as u64),
                next_seq: 1,
                estimated_total,
                closed: false,
            }),
            stats: Stats::default(),
        }
    }

    /// Continues the replace session a checkpoint recorded (`checkpoint()`), if any.
    pub fn resume(client: &'a MetaClient, audience_id: String, checkpoint: &Value) -> Self {
        let mut d = MetaDestination::new(client, audience_id, None);
        d.replace =
            serde_json::from_value(checkpoint.get("replace").cloned().unwrap_or(Value::Null)).ok();
        d
    }

    fn record(&mut self, r: &crate::destinations::meta::wire::UsersResponse) {
        self.stats.requests += 1;
        if !r.session_id.is_empty() && !self.stats.session_ids.contains(&r.session_id) {
            self.stats.session_ids.push(r.session_id.clone());
        }
        self.stats.num_received += r.num_received;
        self.stats.num_invalid_entries += r.num_invalid_entries;
        let room = MAX_SAMPLES.saturating_sub(self.stats.samples.len());
        self.stats
            .samples
            .extend(sample_values(&r.invalid_entry_samples).take(room));
    }
}

/// The hashes Meta quotes as invalid: keys of a map, or the items (or their first string) of a
/// list. Only hashes ever come back, since only hashes were sent.
fn sample_values(samples: &Value) -> Box<dyn Iterator<Item = Value> + '_> {
    match samples {
        Value::Object(m) => Box::new(m.keys().map(|k| json!(k))),
        Value::Array(items) => Box::new(items.iter().filter_map(|i| {
            match i {
                Value::String(_) => Some(i.clone()),
                Value::Array(row) => row
                    .iter()
                    .find(|v| v.as_str().is_some_and(|s| !s.is_empty()))
                    .cloned(),
                _ => None,
            }
        })),
        _ => Box::new(std::iter::empty()),
    }
}

fn payload_rows(rows: &[&HashedRow]) -> Vec<Vec<String>> {
    rows.iter().map(|r| r.hex_fields().to_vec()).collect()
}

impl Destination for MetaDestination<'_> {
    async fn send(&mut self, rows: &[&HashedRow], last: bool) -> Result<Accepted> {
        let data = payload_rows(rows);
        let payload = UsersPayload {
            schema: &SCHEMA,
            data: &data,
        };
        let response = match &mut self.replace {
            Some(s) => {
                let session = Session {
                    session_id: s.session_id,
                    batch_seq: s.next_seq,
                    last_batch_flag: last,
                    estimated_num_total: Some(s.estimated_total),
                };
                s.next_seq += 1;
                s.closed = last;
                self.client
                    .replace_users(&self.audience_id, &payload, session)
                    .await?
            }
            None => {
                self.client
                    .add_users(&self.audience_id, &payload, None)
                    .await?
            }
        };
        self.record(&response);
        let quoted: std::collections::HashSet<String> =
            sample_values(&response.invalid_entry_samples)
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect();
        let invalid = data
            .iter()
            .enumerate()
            .filter(|(_, row)| row.iter().any(|v| !v.is_empty() && quoted.contains(v)))
            .map(|(i, _)| i)
            .collect::<std::collections::HashSet<usize>>();
        let unidentified = response
            .num_invalid_entries
            .saturating_sub(invalid.len() as u64);
        Ok(Accepted {
            invalid,
            unidentified,
        })
    }

    async fn remove(&mut self, rows: &[HashedRow]) -> Result<Removal> {
        let refs: Vec<&HashedRow> = rows.iter().collect();
        let data = payload_rows(&refs);
        let payload = UsersPayload {
            schema: &SCHEMA,
            data: &data,
        };
        match self
            .client
            .remove_users(&self.audience_id, &payload, None)
            .await
        {
            Ok(r) => {
                self.record(&r);
                Ok(Removal::Done)
            }
            Err(e) if e.kind() == ErrorKind::RemovalTooSmall => {
                tracing::warn!(meta_audience_id = %self.audience_id, "Meta refused removals: audience too small; retried at the next sync");
                self.stats.removals_deferred = true;
                Ok(Removal::Deferred)
            }
            Err(e) => Err(e.into()),
        }
    }

    fn checkpoint(&self) -> Value {
        json!({ "replace": self.replace })
    }

    fn needs_closing(&self) -> bool {
        self.replace
            .as_ref()
            .is_some_and(|r| r.next_seq > 1 && !r.closed)
    }

    fn response(&self) -> Value {
        let s = &self.stats;
        let mut v = json!({
            "audience_id": self.audience_id,
            "requests": s.requests,
            "num_received": s.num_received,
            "num_invalid_entries": s.num_invalid_entries,
            "invalid_entry_samples": s.samples,
        });
        if let Some(r) = &self.replace {
            v["replace_session_id"] = json!(r.session_id.to_string());
            v["replace_batches"] = json!(r.next_seq - 1);
        }
        if !s.session_ids.is_empty() {
            v["session_ids"] = json!(s.session_ids);
        }
        if s.removals_deferred {
            v["removals_deferred"] = json!(
                "Meta refused removals because the audience would become too small; the leavers stay marked and are removed by a later sync"
            );
        }
        v
    }
}

/// The Meta audience members are sent to, created (with a lookalike's seed) when missing. A
/// new Meta audience holds nothing, so what the database believed sent is forgotten.
pub async fn member_target(
    db: &Client,
    client: &MetaClient,
    audience: &mut Audience,
) -> Result<String> {
    let account = client.resolve_ad_account(audience.meta_business_account_id.as_deref())?;
    let description = audience.description.clone().unwrap_or_default();
    let (existing, column, name) = match audience.audience_type {
        AudienceType::Lookalike => (
            audience.meta_seed_audience_id.clone(),
            "meta_seed_audience_id",
            format!("{} (lookalike seed)", audience.name),
        ),
        _ => (
            audience.meta_audience_id.clone(),
            "meta_audience_id",
            audience.name.clone(),
        ),
    };
    if let Some(id) = existing {
        return Ok(id);
    }
    let id = client
        .create_custom_audience(&account, &name, &description)
        .await?;
    store_meta_id(db, audience.id, column, &id).await?;
    db.execute(
        "UPDATE audience_member_sync SET is_synced = false, hashes = NULL, synced_at = NULL, \
         updated_at = now() WHERE audience_id = $1 AND (is_synced OR hashes IS NOT NULL)",
        &[&audience.id],
    )
    .await?;
    db.execute(
        "DELETE FROM audience_member_sync WHERE audience_id = $1 AND removal_pending",
        &[&audience.id],
    )
    .await?;
    tracing::info!(audience_id = %audience.id, meta_audience_id = %id, "created in Meta");
    match audience.audience_type {
        AudienceType::Lookalike => audience.meta_seed_audience_id = Some(id.clone()),
        _ => audience.meta_audience_id = Some(id.clone()),
    }
    Ok(id)
}

/// Creates what Meta builds itself: the lookalike from its uploaded seed, or a pixel audience.
pub async fn ensure_built_by_meta(
    db: &Client,
    client: &MetaClient,
    audience: &mut Audience,
) -> Result<()> {
    if audience.meta_audience_id.is_some() {
        return Ok(());
    }
    let account = client.resolve_ad_account(audience.meta_business_account_id.as_deref())?;
    let description = audience.description.clone().unwrap_or_default();
    let id = match audience.audience_type {
        AudienceType::Lookalike => {
            let seed = audience
                .meta_seed_audience_id
                .as_deref()
                .unwrap_or_default();
            let country = audience.lookalike_country.as_deref().unwrap_or_default();
            let ratio = f64::from(audience.lookalike_percentage.unwrap_or(1)) / 100.0;
            client
                .create_lookalike(&account, &audience.name, &description, seed, country, ratio)
                .await?
        }
        AudienceType::Engagement => {
            let rule = EngagementRule::parse(audience.rule.as_ref().unwrap_or(&Value::Null))?;
            let days = u32::try_from(rule.retention_days).unwrap_or(1);
            let pixel_rule =
                crate::destinations::meta::wire::pixel_rule(&rule.pixel_id, &rule.event, days);
            client
                .create_engagement(&account, &audience.name, &description, &pixel_rule, days)
                .await?
        }
        AudienceType::CustomList => return Ok(()),
    };
    store_meta_id(db, audience.id, "meta_audience_id", &id).await?;
    tracing::info!(audience_id = %audience.id, meta_audience_id = %id, "created in Meta");
    audience.meta_audience_id = Some(id);
    Ok(())
}

async fn store_meta_id(db: &Client, audience_id: Uuid, column: &str, id: &str) -> Result<()> {
    // `column` is one of two fixed names chosen above, never input.
    let sql = format!("UPDATE custom_audience SET {column} = $2, updated_at = now() WHERE id = $1");
    db.execute(&sql, &[&audience_id, &id]).await?;
    Ok(())
}

/// Reads Meta's size and status of the audience and keeps them for `include=metrics`. A failure
/// here does not fail the sync: the numbers are informational and refreshed next time.
pub async fn refresh_metrics(db: &Client, client: &MetaClient, audience: &Audience) {
    let Some(meta_id) = audience.meta_audience_id.as_deref() else {
        return;
    };
    match client.get_audience(meta_id).await {
        Ok(info) => {
            let metrics = json!({
                "approximate_count_lower_bound": info.approximate_count_lower_bound,
                "approximate_count_upper_bound": info.approximate_count_upper_bound,
                "operation_status": info.operation_status,
                "delivery_status": info.delivery_status,
                "meta_read_at": chrono::Utc::now(),
            });
            if let Err(e) = audience::record_meta_metrics(db, audience.id, &metrics).await {
                tracing::warn!(error = %e, "could not store Meta's metrics");
            }
        }
        Err(e) => {
            tracing::warn!(audience_id = %audience.id, error = %e, "could not read the audience from Meta")
        }
    }
}

/// Deletes the audience (and a lookalike's seed) in Meta. An audience Meta no longer has counts
/// as deleted; one with lookalikes built on it is a conflict the user must resolve first.
pub async fn delete_in_meta(client: &MetaClient, audience: &Audience) -> Result<()> {
    for id in [&audience.meta_audience_id, &audience.meta_seed_audience_id]
        .into_iter()
        .flatten()
    {
        match client.delete_audience(id).await {
            Ok(()) => {}
            Err(e) if e.code() == Some(100) && e.subcode() == Some(33) => {}
            Err(e) if e.kind() == ErrorKind::DeleteBlockedByLookalikes => {
                return Err(Error::Conflict(e.user_message()));
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}
