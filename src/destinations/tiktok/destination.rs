//! TikTok as a destination of the sync engine: a partner audience (a lookalike's seed) created
//! on first sync, members added and deleted as hashed email and phone in requests of at most
//! 1,000, the lookalike built from its seed, TikTok's view of the audience read back.

use serde_json::{json, Value};
use tokio_postgres::Client;

use super::client::{TiktokClient, CREATE_AUDIENCE_PATH, CREATE_LOOKALIKE_PATH, MAPPING_PATH};
use super::hashing::TiktokRow;
use super::wire::{MappingAction, MAX_USERS};
use crate::audience::store::{self as audiences, PlatformId};
use crate::audience::{Audience, AudienceType};
use crate::destinations::{
    Accepted, Destination, Opening, PlannedCall, Platform, PlatformSize, Removal, Step,
};
use crate::error::{Error, Result};
use crate::sync::member_store;

/// Members go to one TikTok audience: a customer list's own, or a lookalike's seed.
pub struct TiktokDestination<'a> {
    client: &'a TiktokClient,
    advertiser: Option<String>,
    /// Where members go, once settled.
    target: Option<String>,
    stats: Stats,
    audience_id: Option<String>,
    seed_audience_id: Option<String>,
}

#[derive(Default)]
struct Stats {
    /// The audience's size read back by `finish`.
    size: Option<PlatformSize>,
    requests: u64,
    added: u64,
    removed: u64,
    created: bool,
}

/// The TikTok audience an audience's members go to, when it exists: a lookalike's seed, else
/// its own.
fn members_audience_id(audience: &Audience) -> Option<&str> {
    match audience.audience_type {
        AudienceType::Lookalike => audience.meta_seed_audience_id.as_deref(),
        _ => audience.destination_audience_id.as_deref(),
    }
}

fn gone(id: &str) -> Error {
    Error::PlatformAudienceGone {
        platform: Platform::Tiktok,
        platform_audience_id: id.to_string(),
    }
}

impl<'a> TiktokDestination<'a> {
    pub fn new(client: &'a TiktokClient, audience: &Audience) -> Self {
        TiktokDestination {
            client,
            advertiser: client
                .resolve_advertiser(audience.destination_account_id.as_deref())
                .ok(),
            target: None,
            stats: Stats::default(),
            audience_id: audience.destination_audience_id.clone(),
            seed_audience_id: audience.meta_seed_audience_id.clone(),
        }
    }

    /// For removals alone (the purge), without [`Destination::open`]: `None` when the audience
    /// has no TikTok audience yet (TikTok then holds none of its members).
    pub fn existing(client: &'a TiktokClient, audience: &Audience) -> Option<Self> {
        let target = members_audience_id(audience)?.to_string();
        let mut dest = TiktokDestination::new(client, audience);
        dest.target = Some(target);
        Some(dest)
    }

    fn advertiser(&self) -> Result<&str> {
        match &self.advertiser {
            Some(a) => Ok(a),
            // The resolution's own error names what to set.
            None => Err(self.client.resolve_advertiser(None).unwrap_err().into()),
        }
    }

    async fn map(&mut self, action: MappingAction, rows: &[&TiktokRow]) -> Result<()> {
        let advertiser = self.advertiser()?.to_string();
        let target = self.target.clone().unwrap_or_default();
        for chunk in rows.chunks(MAX_USERS) {
            self.client
                .mapping(&advertiser, &target, action, chunk)
                .await?;
            self.stats.requests += 1;
        }
        Ok(())
    }

    /// Creates the audience members go to, and records it; a new audience holds nothing, so
    /// what the database believed sent is forgotten.
    async fn create_target(&mut self, db: &Client, audience: &mut Audience) -> Result<String> {
        let advertiser = self.advertiser()?.to_string();
        let (which, name) = match audience.audience_type {
            AudienceType::Lookalike => (
                PlatformId::LookalikeSeed,
                format!("{} (lookalike seed)", audience.name),
            ),
            AudienceType::CustomList => (PlatformId::Audience, audience.name.clone()),
            AudienceType::Engagement => {
                return Err(Error::invalid(
                    "audience_type",
                    "engagement audiences are built from Meta pixel events: TikTok has none",
                ))
            }
        };
        let id = self.client.create_audience(&advertiser, &name).await?;
        audiences::set_platform_id(db, audience.id, which, &id).await?;
        member_store::forget_sent(db, audience.id).await?;
        tracing::info!(audience_id = %audience.id, tiktok_audience_id = %id, "created in TikTok");
        match which {
            PlatformId::LookalikeSeed => audience.meta_seed_audience_id = Some(id.clone()),
            PlatformId::Audience => audience.destination_audience_id = Some(id.clone()),
        }
        self.stats.created = true;
        Ok(id)
    }
}

impl Destination for TiktokDestination<'_> {
    type Row = TiktokRow;

    /// TikTok's segment API has no replace (its file API's REPLACE refuses audiences under
    /// 1,000): a full sync removes leavers and changed identifiers, then sends everyone again,
    /// which also renews their retention.
    fn replaces(&self) -> bool {
        false
    }

    async fn open(&mut self, db: &Client, audience: &mut Audience, _: Opening<'_>) -> Result<()> {
        let advertiser = self.advertiser()?.to_string();
        let target = match members_audience_id(audience).map(str::to_string) {
            // An audience TikTok no longer lists was deleted outside the service (or expired).
            Some(id) => match self.client.audience(&advertiser, &id).await? {
                Some(_) => id,
                None => return Err(gone(&id)),
            },
            None => self.create_target(db, audience).await?,
        };
        self.target = Some(target);
        self.audience_id = audience.destination_audience_id.clone();
        self.seed_audience_id = audience.meta_seed_audience_id.clone();
        Ok(())
    }

    async fn send(&mut self, rows: &[&TiktokRow], _last: bool) -> Result<Accepted> {
        self.map(MappingAction::Add, rows).await?;
        self.stats.added += rows.len() as u64;
        Ok(Accepted::default())
    }

    async fn remove(&mut self, rows: &[TiktokRow]) -> Result<Removal> {
        let refs: Vec<&TiktokRow> = rows.iter().collect();
        self.map(MappingAction::Delete, &refs).await?;
        self.stats.removed += rows.len() as u64;
        Ok(Removal::Done)
    }

    async fn finish(&mut self, db: &Client, audience: &mut Audience) -> Result<()> {
        let advertiser = self.advertiser()?.to_string();
        if audience.audience_type == AudienceType::Lookalike
            && audience.destination_audience_id.is_none()
        {
            let seed = audience.meta_seed_audience_id.clone().unwrap_or_default();
            let id = self
                .client
                .create_lookalike(
                    &advertiser,
                    &audience.name,
                    &seed,
                    audience.lookalike_percentage.unwrap_or(1),
                    audience.lookalike_country.as_deref().unwrap_or_default(),
                )
                .await?;
            audiences::set_platform_id(db, audience.id, PlatformId::Audience, &id).await?;
            tracing::info!(audience_id = %audience.id, tiktok_audience_id = %id, "lookalike created in TikTok");
            audience.destination_audience_id = Some(id.clone());
            self.audience_id = Some(id);
        }
        let Some(id) = audience.destination_audience_id.clone() else {
            return Ok(());
        };
        // Informational: a failed read does not fail the sync; the next one reads again.
        match self.client.audience(&advertiser, &id).await {
            Ok(Some(d)) => {
                // TikTok's cover number is its one size figure: both bounds.
                self.stats.size = Some(PlatformSize {
                    lower: d.cover_num,
                    upper: d.cover_num,
                    operation_status: Some(
                        json!({"is_valid": d.is_valid, "is_expiring": d.is_expiring}),
                    ),
                    ..PlatformSize::default()
                });
                let metrics = json!({
                    "platform": "tiktok",
                    "cover_num": d.cover_num,
                    "is_valid": d.is_valid,
                    "is_expiring": d.is_expiring,
                    "read_at": chrono::Utc::now(),
                });
                audiences::record_meta_metrics(db, audience.id, &metrics).await?;
            }
            Ok(None) => return Err(gone(&id)),
            Err(e) => tracing::warn!(audience_id = %audience.id, error = %e,
                "could not read the audience from TikTok"),
        }
        Ok(())
    }

    fn plan(&self, audience: &Audience, step: Step) -> Vec<PlannedCall> {
        match step {
            Step::Open if members_audience_id(audience).is_none() => {
                PlannedCall::bare("POST", CREATE_AUDIENCE_PATH)
            }
            Step::Send { rows, .. } | Step::Remove { rows } => {
                PlannedCall::chunked("POST", MAPPING_PATH, rows, MAX_USERS)
            }
            Step::Finish
                if audience.audience_type == AudienceType::Lookalike
                    && audience.destination_audience_id.is_none() =>
            {
                PlannedCall::bare("POST", CREATE_LOOKALIKE_PATH)
            }
            Step::Open | Step::Finish => Vec::new(),
        }
    }

    fn size(&self) -> Option<PlatformSize> {
        self.stats.size.clone()
    }

    fn response(&self) -> Value {
        let s = &self.stats;
        let mut v = json!({
            "platform": "tiktok",
            "audience_id": self.target,
            "created": s.created,
            "requests": s.requests,
            "added": s.added,
            "removed": s.removed,
        });
        if let Some(id) = &self.audience_id {
            v["tiktok_audience_id"] = json!(id);
        }
        if let Some(id) = &self.seed_audience_id {
            v["tiktok_seed_audience_id"] = json!(id);
        }
        v
    }
}

/// Deletes the audience (and a lookalike's seed) in TikTok.
pub async fn delete_audience(client: &TiktokClient, audience: &Audience) -> Result<()> {
    let advertiser = client.resolve_advertiser(audience.destination_account_id.as_deref())?;
    for id in [
        &audience.destination_audience_id,
        &audience.meta_seed_audience_id,
    ]
    .into_iter()
    .flatten()
    {
        client.delete_audience(&advertiser, id).await?;
    }
    Ok(())
}
