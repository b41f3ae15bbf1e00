//! Meta as a destination of the sync engine: the audience (and a lookalike's seed) created on
//! first sync, members sent as hashed rows, Meta's answers kept in the log, its view of the
//! audience read back.

use serde_json::{json, Value};
use tokio_postgres::Client;

use super::client::{customaudiences_path, users_path, MetaClient};
use super::error::ErrorKind;
use super::hashing::{FIELDS, SCHEMA};
use super::row::MetaRow;
use super::wire::{Session, UsersPayload, UsersResponse, LOOKALIKE_VALUE, MAX_ROWS};
use crate::audience::store::{self as audiences, PlatformId};
use crate::audience::{Audience, AudienceType, EngagementRule};
use crate::destinations::{
    Accepted, Destination, Opening, PlannedCall, Platform, PlatformSize, Removal, Row, Step,
};
use crate::error::{Error, Result};
use crate::sync::member_store;

/// Meta keeps at most this many invalid-entry samples per answer; we keep as many per sync.
const MAX_SAMPLES: usize = 100;

/// Members go to one Meta audience: a customer list's own, or a lookalike's seed.
pub struct MetaDestination<'a> {
    client: &'a MetaClient,
    /// Where members go, once [`Destination::open`] has settled it.
    target: Option<String>,
    replace: Option<ReplaceSession>,
    stats: Stats,
    /// The audience's Meta ids, as they stand (the sync may create them).
    meta_audience_id: Option<String>,
    meta_seed_audience_id: Option<String>,
    /// The audience's own ad account, if it names one (else the configured default).
    account: Option<String>,
    /// A value-based list (the audience has a `value_attribute`): rows carry LOOKALIKE_VALUE.
    value_based: bool,
    /// Meta's size of the audience, read back by [`Destination::finish`].
    size: Option<PlatformSize>,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct ReplaceSession {
    session_id: u64,
    next_seq: u32,
    estimated_total: u64,
    #[serde(default)]
    closed: bool,
    /// Meta timed the session out; what it did not receive was added with `/users`.
    #[serde(default)]
    timed_out: bool,
}

#[derive(Default)]
struct Stats {
    requests: u64,
    session_ids: Vec<String>,
    num_received: u64,
    num_invalid_entries: u64,
    samples: Vec<Value>,
    removals_deferred: bool,
    /// An earlier sync's replace session this one closed.
    closed_unfinished: Option<u64>,
}

impl<'a> MetaDestination<'a> {
    pub fn new(client: &'a MetaClient, audience: &Audience) -> Self {
        MetaDestination {
            client,
            target: None,
            replace: None,
            stats: Stats::default(),
            meta_audience_id: audience.meta_audience_id.clone(),
            meta_seed_audience_id: audience.meta_seed_audience_id.clone(),
            account: audience.meta_business_account_id.clone(),
            value_based: audience.value_attribute.is_some(),
            size: None,
        }
    }

    /// For removals alone (the purge of erased and opted-out people), without
    /// [`Destination::open`]: the Meta audience the audience's members were sent to, or `None`
    /// when it has none (then Meta holds none of them). Nothing is created or called.
    pub fn existing(client: &'a MetaClient, audience: &Audience) -> Option<Self> {
        let target = members_audience_id(audience)?.to_string();
        let mut dest = MetaDestination::new(client, audience);
        dest.target = Some(target);
        Some(dest)
    }

    fn target(&self) -> &str {
        self.target.as_deref().unwrap_or_default()
    }

    /// `e`, or [`Error::PlatformAudienceGone`] when it is Meta saying the members' audience
    /// does not exist and it really is gone (see [`MetaClient::audience_vanished`]).
    async fn gone_or(&self, e: Error) -> Error {
        let Error::Meta(meta) = &e else { return e };
        let Some(target) = self.target.as_deref().filter(|_| meta.is_missing_object()) else {
            return e;
        };
        vanished(self.client, self.account.as_deref(), target)
            .await
            .unwrap_or(e)
    }

    fn record(&mut self, r: &UsersResponse) {
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

/// The replace session a checkpoint names, if any.
fn session_in(checkpoint: &Value) -> Option<ReplaceSession> {
    serde_json::from_value(checkpoint.get("replace").cloned().unwrap_or(Value::Null)).ok()
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

/// The schema of a value-based list: Meta's multi-key schema, then the value.
const VALUE_SCHEMA: [&str; FIELDS + 1] = {
    let mut keys = [LOOKALIKE_VALUE; FIELDS + 1];
    let mut i = 0;
    while i < FIELDS {
        keys[i] = SCHEMA[i];
        i += 1;
    }
    keys
};

/// Rows as a payload carries them: the hashes as hex, and for a value-based list each row's
/// value (a row stored without one, which a value-based list never sends, is removed with 0:
/// Meta removes by the identifiers).
struct PayloadRows {
    data: Vec<Vec<String>>,
    values: Option<Vec<f64>>,
}

impl PayloadRows {
    fn new(rows: &[&MetaRow], value_based: bool) -> Self {
        PayloadRows {
            data: rows
                .iter()
                .map(|r| r.hashes.hex_fields().to_vec())
                .collect(),
            values: value_based.then(|| rows.iter().map(|r| r.value.unwrap_or(0.0)).collect()),
        }
    }

    fn payload(&self) -> UsersPayload<'_> {
        UsersPayload {
            schema: match self.values {
                Some(_) => &VALUE_SCHEMA,
                None => &SCHEMA,
            },
            data: &self.data,
            values: self.values.as_deref(),
        }
    }
}

impl Destination for MetaDestination<'_> {
    type Row = MetaRow;

    fn wants_total(&self) -> bool {
        true
    }

    fn rejected_reason(&self) -> &'static str {
        "Meta rejected this member's identifiers as invalid"
    }

    async fn open(
        &mut self,
        db: &Client,
        audience: &mut Audience,
        opening: Opening<'_>,
    ) -> Result<()> {
        self.target = Some(member_target(db, self.client, audience).await?);
        self.meta_seed_audience_id = audience.meta_seed_audience_id.clone();
        self.meta_audience_id = audience.meta_audience_id.clone();
        let unfinished = opening
            .unfinished
            .and_then(|cp| session_in(cp).filter(|s| !s.closed));
        if let Some(session) = unfinished {
            if let Err(e) = self.close_unfinished(db, audience, session).await {
                return Err(self.gone_or(e).await);
            }
        }
        self.replace = match opening.resume {
            // Continues the replace session a checkpoint recorded, if any.
            Some(cp) => session_in(cp),
            None => opening.replace_total.map(|estimated_total| ReplaceSession {
                // Unique in the ad account: random, positive as an int64.
                session_id: rand::random_range(1..i64::MAX as u64),
                next_seq: 1,
                estimated_total,
                closed: false,
                timed_out: false,
            }),
        };
        Ok(())
    }

    async fn finish(&mut self, db: &Client, audience: &mut Audience) -> Result<()> {
        let built = ensure_built_by_meta(db, self.client, audience).await;
        self.meta_audience_id = audience.meta_audience_id.clone();
        built?;
        self.size = refresh_metrics(db, self.client, audience).await?;
        Ok(())
    }

    fn size(&self) -> Option<PlatformSize> {
        self.size.clone()
    }

    async fn send(&mut self, rows: &[&MetaRow], last: bool) -> Result<Accepted> {
        match self.send_rows(rows, last).await {
            Err(e) => Err(self.gone_or(e).await),
            ok => ok,
        }
    }

    async fn remove(&mut self, rows: &[MetaRow]) -> Result<Removal> {
        match self.remove_rows(rows).await {
            Err(e) => Err(self.gone_or(e).await),
            ok => ok,
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

    fn plan(&self, audience: &Audience, step: Step) -> Vec<PlannedCall> {
        let account = || {
            let own = audience.meta_business_account_id.as_deref();
            let account = self.client.resolve_ad_account(own);
            customaudiences_path(account.as_deref().unwrap_or("{ad_account}"))
        };
        let target = members_audience_id(audience).unwrap_or("{new_audience_id}");
        match step {
            Step::Open if members_audience_id(audience).is_none() => {
                PlannedCall::bare("POST", account())
            }
            Step::Send { rows, replace } => {
                let edge = if replace { "usersreplace" } else { "users" };
                PlannedCall::chunked("POST", &users_path(target, edge), rows, MAX_ROWS)
            }
            Step::Remove { rows } => {
                PlannedCall::chunked("DELETE", &users_path(target, "users"), rows, MAX_ROWS)
            }
            // A lookalike or pixel audience Meta builds itself, once.
            Step::Finish
                if audience.meta_audience_id.is_none()
                    && audience.audience_type != AudienceType::CustomList =>
            {
                PlannedCall::bare("POST", account())
            }
            Step::Open | Step::Finish => Vec::new(),
        }
    }

    fn response(&self) -> Value {
        let mut v = match &self.target {
            Some(target) => self.upload_response(target),
            None => json!({}),
        };
        if let Some(id) = &self.meta_audience_id {
            v["meta_audience_id"] = json!(id);
        }
        if let Some(id) = &self.meta_seed_audience_id {
            v["meta_seed_audience_id"] = json!(id);
        }
        v
    }
}

impl MetaDestination<'_> {
    async fn send_rows(&mut self, rows: &[&MetaRow], last: bool) -> Result<Accepted> {
        let rows = PayloadRows::new(rows, self.value_based);
        let (payload, data) = (rows.payload(), &rows.data);
        let (client, target) = (self.client, self.target.as_deref().unwrap_or_default());
        let response = match &mut self.replace {
            Some(s) if !s.closed => {
                let session = Session {
                    session_id: s.session_id,
                    batch_seq: s.next_seq,
                    last_batch_flag: last,
                    estimated_num_total: Some(s.estimated_total),
                };
                s.next_seq += 1;
                s.closed = last;
                match client.replace_users(target, &payload, session).await {
                    Err(e) if e.kind() == ErrorKind::ReplaceSessionTimedOut => {
                        // Meta ended the session 90 minutes after its first batch, holding what
                        // it received: the rest are added to that ("finish with adds").
                        tracing::warn!(meta_audience_id = %target,
                            "the replace session timed out; the remaining members are added");
                        s.closed = true;
                        s.timed_out = true;
                        client.add_users(target, &payload, None).await?
                    }
                    other => other?,
                }
            }
            _ => client.add_users(target, &payload, None).await?,
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

    async fn remove_rows(&mut self, rows: &[MetaRow]) -> Result<Removal> {
        let refs: Vec<&MetaRow> = rows.iter().collect();
        let rows = PayloadRows::new(&refs, self.value_based);
        let payload = rows.payload();
        match self
            .client
            .remove_users(self.target(), &payload, None)
            .await
        {
            Ok(r) => {
                self.record(&r);
                Ok(Removal::Done)
            }
            Err(e) if e.kind() == ErrorKind::RemovalTooSmall => {
                tracing::warn!(meta_audience_id = %self.target(), "Meta refused removals: audience too small; retried at the next sync");
                self.stats.removals_deferred = true;
                Ok(Removal::Deferred)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Closes the replace session an earlier sync left open (it failed or was abandoned after
    /// a batch): until the session ends Meta refuses every other update of the audience. Its
    /// last batch re-sends one row of a member marked synced (Meta holds it, or will once the
    /// session ends); Meta then holds what the session received, which is what the member rows
    /// say since [`member_store::unsettle_replace`]. A session Meta already ended is left be.
    async fn close_unfinished(
        &mut self,
        db: &Client,
        audience: &Audience,
        s: ReplaceSession,
    ) -> Result<()> {
        let stored = member_store::last_synced_row(db, audience.id).await?;
        let Some(row) = stored.as_deref().and_then(<MetaRow as Row>::from_bytes) else {
            return Ok(());
        };
        let rows = PayloadRows::new(&[&row], self.value_based);
        let payload = rows.payload();
        let session = Session {
            session_id: s.session_id,
            batch_seq: s.next_seq,
            last_batch_flag: true,
            estimated_num_total: Some(s.estimated_total),
        };
        match self
            .client
            .replace_users(self.target(), &payload, session)
            .await
        {
            Ok(r) => {
                self.record(&r);
                self.stats.closed_unfinished = Some(s.session_id);
                tracing::info!(meta_audience_id = %self.target(),
                    "closed the replace session an unfinished sync left open");
                Ok(())
            }
            // Timed out (what it received stands) or closed already: over either way.
            Err(e)
                if e.kind() == ErrorKind::ReplaceSessionTimedOut
                    || e.subcode() == Some(1870159) =>
            {
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Meta's answers to the uploads.
    fn upload_response(&self, target: &str) -> Value {
        let s = &self.stats;
        let mut v = json!({
            "audience_id": target,
            "requests": s.requests,
            "num_received": s.num_received,
            "num_invalid_entries": s.num_invalid_entries,
            "invalid_entry_samples": s.samples,
        });
        if let Some(r) = &self.replace {
            v["replace_session_id"] = json!(r.session_id.to_string());
            v["replace_batches"] = json!(r.next_seq - 1);
            if r.timed_out {
                v["replace_timed_out"] = json!(
                    "Meta ended the replace session 90 minutes after its first batch; the remaining members were added to what it had received"
                );
            }
        }
        if !s.session_ids.is_empty() {
            v["session_ids"] = json!(s.session_ids);
        }
        if let Some(id) = s.closed_unfinished {
            v["closed_unfinished_session_id"] = json!(id.to_string());
        }
        if s.removals_deferred {
            v["removals_deferred"] = json!(
                "Meta refused removals because the audience would become too small; the leavers stay marked and are removed by a later sync"
            );
        }
        v
    }
}

/// The Meta audience an audience's members go to, when it exists: a lookalike's seed, else its
/// own.
fn members_audience_id(audience: &Audience) -> Option<&str> {
    match audience.audience_type {
        AudienceType::Lookalike => audience.meta_seed_audience_id.as_deref(),
        _ => audience.meta_audience_id.as_deref(),
    }
}

/// The Meta audience members are sent to, created (with a lookalike's seed) when missing. A
/// new Meta audience holds nothing, so what the database believed sent is forgotten.
async fn member_target(
    db: &Client,
    client: &MetaClient,
    audience: &mut Audience,
) -> Result<String> {
    let account = client.resolve_ad_account(audience.meta_business_account_id.as_deref())?;
    let description = audience.description.clone().unwrap_or_default();
    if let Some(id) = members_audience_id(audience) {
        return Ok(id.to_string());
    }
    let (which, name) = match audience.audience_type {
        AudienceType::Lookalike => (
            PlatformId::LookalikeSeed,
            format!("{} (lookalike seed)", audience.name),
        ),
        _ => (PlatformId::Audience, audience.name.clone()),
    };
    // A lookalike of a value-based audience is built on a value-based seed.
    let value_based = audience.value_attribute.is_some();
    let id = client
        .create_customer_list(&account, &name, &description, value_based)
        .await?;
    audiences::set_platform_id(db, audience.id, which, &id).await?;
    member_store::forget_sent(db, audience.id).await?;
    tracing::info!(audience_id = %audience.id, meta_audience_id = %id, "created in Meta");
    match audience.audience_type {
        AudienceType::Lookalike => audience.meta_seed_audience_id = Some(id.clone()),
        _ => audience.meta_audience_id = Some(id.clone()),
    }
    Ok(id)
}

/// Creates what Meta builds itself: the lookalike from its uploaded seed, or a pixel audience.
async fn ensure_built_by_meta(
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
            let pixel_rule = super::wire::pixel_rule(&rule.pixel_id, &rule.event, days);
            client
                .create_engagement(&account, &audience.name, &description, &pixel_rule, days)
                .await?
        }
        AudienceType::CustomList => return Ok(()),
    };
    audiences::set_platform_id(db, audience.id, PlatformId::Audience, &id).await?;
    tracing::info!(audience_id = %audience.id, meta_audience_id = %id, "created in Meta");
    audience.meta_audience_id = Some(id);
    Ok(())
}

/// [`Error::PlatformAudienceGone`] when Meta no longer has `audience_id` (see
/// [`MetaClient::audience_vanished`]); `None` when it has, or when that could not be told.
async fn vanished(client: &MetaClient, account: Option<&str>, audience_id: &str) -> Option<Error> {
    let account = client.resolve_ad_account(account).ok()?;
    match client.audience_vanished(&account, audience_id).await {
        Ok(true) => {
            tracing::warn!(meta_audience_id = %audience_id, "the Meta audience no longer exists");
            Some(Error::PlatformAudienceGone {
                platform: Platform::Meta,
                platform_audience_id: audience_id.to_string(),
            })
        }
        Ok(false) => None,
        Err(e) => {
            tracing::warn!(meta_audience_id = %audience_id, error = %e,
                "could not tell whether the Meta audience still exists");
            None
        }
    }
}

/// Reads Meta's size and status of the audience and keeps them for `include=metrics`. A failure
/// here does not fail the sync (the numbers are informational and refreshed next time), but
/// for an audience Meta no longer has: a lookalike or pixel audience (which receives no
/// members) is seen to be gone here alone.
async fn refresh_metrics(
    db: &Client,
    client: &MetaClient,
    audience: &Audience,
) -> Result<Option<PlatformSize>> {
    let Some(meta_id) = audience.meta_audience_id.as_deref() else {
        return Ok(None);
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
            if let Err(e) = audiences::record_meta_metrics(db, audience.id, &metrics).await {
                tracing::warn!(error = %e, "could not store Meta's metrics");
            }
            return Ok(Some(PlatformSize {
                lower: info.approximate_count_lower_bound,
                upper: info.approximate_count_upper_bound,
                match_rate: None,
                operation_status: info.operation_status.map(|s| json!(s)),
                delivery_status: info.delivery_status.map(|s| json!(s)),
            }));
        }
        Err(e) => {
            tracing::warn!(audience_id = %audience.id, error = %e, "could not read the audience from Meta");
            if e.is_missing_object() {
                let account = audience.meta_business_account_id.as_deref();
                if let Some(gone) = vanished(client, account, meta_id).await {
                    return Err(gone);
                }
            }
        }
    }
    Ok(None)
}

/// Deletes the audience (and a lookalike's seed) in Meta. An audience Meta no longer has counts
/// as deleted; one with lookalikes built on it is a conflict the user must resolve first.
pub async fn delete_audience(client: &MetaClient, audience: &Audience) -> Result<()> {
    for id in [&audience.meta_audience_id, &audience.meta_seed_audience_id]
        .into_iter()
        .flatten()
    {
        match client.delete_audience(id).await {
            Ok(()) => {}
            Err(e) if e.is_missing_object() => {}
            Err(e) if e.kind() == ErrorKind::DeleteBlockedByLookalikes => {
                return Err(Error::Conflict(e.user_message()));
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}
