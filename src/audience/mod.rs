//! Custom audiences: the domain type, its validation rules, and what creating, changing and
//! deleting one involves. Its SQL is in `store`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio_postgres::GenericClient;
use uuid::Uuid;

use crate::app::App;
use crate::destinations::Platform;
use crate::error::{Error, Result};
use crate::input;
use crate::sync::AudienceLock;

pub mod store;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AudienceType {
    CustomList,
    Lookalike,
    Engagement,
}

impl AudienceType {
    pub fn as_str(self) -> &'static str {
        match self {
            AudienceType::CustomList => "custom_list",
            AudienceType::Lookalike => "lookalike",
            AudienceType::Engagement => "engagement",
        }
    }

    pub fn from_db(s: &str) -> Self {
        match s {
            "lookalike" => AudienceType::Lookalike,
            "engagement" => AudienceType::Engagement,
            _ => AudienceType::CustomList,
        }
    }
}

crate::db::text_enum_to_sql!(AudienceType);

#[derive(Debug, Clone, Serialize)]
pub struct Audience {
    pub id: Uuid,
    pub name: String,
    pub description: Option<String>,
    pub meta_audience_id: Option<String>,
    pub meta_business_account_id: Option<String>,
    pub segment_id: Option<Uuid>,
    pub audience_type: AudienceType,
    pub lookalike_country: Option<String>,
    pub lookalike_percentage: Option<i32>,
    pub rule: Option<Value>,
    pub auto_sync: bool,
    /// Synced at every scheduler pass in which its members changed (DESIGN §8.2).
    pub realtime: bool,
    pub sync_interval_hours: i32,
    pub last_synced_at: Option<DateTime<Utc>>,
    pub is_active: bool,
    pub status: String,
    pub total_synced: i32,
    pub sync_error_message: Option<String>,
    pub meta_seed_audience_id: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Meta's counts and status as read at the last sync; served under `metrics`.
    #[serde(skip)]
    pub meta_metrics: Option<Value>,
    /// Where the members go (DESIGN §8.1), and the account and audience there. On Meta
    /// audiences the two ids mirror `meta_business_account_id` / `meta_audience_id`.
    pub destination: Platform,
    pub destination_account_id: Option<String>,
    pub destination_audience_id: Option<String>,
    /// Removal guardrails (DESIGN §8.4): a sync removing more than this share of what the
    /// platform holds (None: no limit), or leaving fewer than `min_members`, is blocked.
    pub max_removal_percent: Option<i32>,
    pub min_members: i32,
    /// A numeric trait whose value each row carries (value-based Meta customer list).
    pub value_attribute: Option<String>,
    /// The share of eligible members held out, never sent (0–50).
    pub holdout_percent: i32,
}

impl Audience {
    /// The settable fields as they stand, the base a partial update applies to.
    fn spec(&self) -> AudienceSpec {
        AudienceSpec {
            name: self.name.clone(),
            description: self.description.clone(),
            audience_type: self.audience_type,
            segment_id: self.segment_id,
            lookalike_country: self.lookalike_country.clone(),
            lookalike_percentage: self.lookalike_percentage,
            rule: self.rule.clone(),
            auto_sync: self.auto_sync,
            realtime: self.realtime,
            sync_interval_hours: self.sync_interval_hours,
            is_active: self.is_active,
            meta_business_account_id: self.meta_business_account_id.clone(),
            meta_audience_id: self.meta_audience_id.clone(),
            destination: self.destination,
            destination_account_id: self.destination_account_id.clone(),
            max_removal_percent: self.max_removal_percent,
            min_members: self.min_members,
            value_attribute: self.value_attribute.clone(),
            holdout_percent: self.holdout_percent,
        }
    }
}

/// Every field a user may set, resolved: what gets validated and written.
#[derive(Debug, Clone)]
pub struct AudienceSpec {
    pub name: String,
    pub description: Option<String>,
    pub audience_type: AudienceType,
    pub segment_id: Option<Uuid>,
    pub lookalike_country: Option<String>,
    pub lookalike_percentage: Option<i32>,
    pub rule: Option<Value>,
    pub auto_sync: bool,
    pub realtime: bool,
    pub sync_interval_hours: i32,
    pub is_active: bool,
    pub meta_business_account_id: Option<String>,
    pub meta_audience_id: Option<String>,
    /// Fixed at create (DESIGN §8.1).
    pub destination: Platform,
    /// The account on the platform; on Meta the same as `meta_business_account_id`.
    pub destination_account_id: Option<String>,
    pub max_removal_percent: Option<i32>,
    pub min_members: i32,
    pub value_attribute: Option<String>,
    pub holdout_percent: i32,
}

/// `POST /api/audiences`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewAudience {
    pub name: Option<String>,
    pub description: Option<String>,
    pub audience_type: Option<AudienceType>,
    pub segment_id: Option<Uuid>,
    pub lookalike_country: Option<String>,
    pub lookalike_percentage: Option<i32>,
    pub rule: Option<Value>,
    pub auto_sync: Option<bool>,
    pub realtime: Option<bool>,
    pub sync_interval_hours: Option<i32>,
    pub is_active: Option<bool>,
    pub meta_business_account_id: Option<String>,
    pub destination: Option<Platform>,
    pub destination_account_id: Option<String>,
    /// Absent: the default (50); `null`: no limit.
    #[serde(default, deserialize_with = "input::present")]
    pub max_removal_percent: Option<Option<i32>>,
    pub min_members: Option<i32>,
    pub value_attribute: Option<String>,
    pub holdout_percent: Option<i32>,
}

/// `max_removal_percent` when an audience is created without it.
pub const DEFAULT_MAX_REMOVAL_PERCENT: i32 = 50;

impl NewAudience {
    fn into_spec(self) -> Result<AudienceSpec> {
        Ok(AudienceSpec {
            name: self
                .name
                .ok_or_else(|| Error::invalid("name", "name is required"))?,
            description: self.description,
            audience_type: self.audience_type.unwrap_or(AudienceType::CustomList),
            segment_id: self.segment_id,
            lookalike_country: self.lookalike_country,
            lookalike_percentage: self.lookalike_percentage,
            rule: self.rule,
            auto_sync: self.auto_sync.unwrap_or(false),
            realtime: self.realtime.unwrap_or(false),
            sync_interval_hours: self.sync_interval_hours.unwrap_or(24),
            is_active: self.is_active.unwrap_or(true),
            meta_business_account_id: self.meta_business_account_id,
            meta_audience_id: None,
            destination: self.destination.unwrap_or(Platform::Meta),
            destination_account_id: self.destination_account_id,
            max_removal_percent: self
                .max_removal_percent
                .unwrap_or(Some(DEFAULT_MAX_REMOVAL_PERCENT)),
            min_members: self.min_members.unwrap_or(0),
            value_attribute: self.value_attribute,
            holdout_percent: self.holdout_percent.unwrap_or(0),
        })
    }
}

/// `PUT /api/audiences/{id}`: absent = unchanged, `null` = cleared (where a field may be empty).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AudiencePatch {
    #[serde(default, deserialize_with = "input::present")]
    pub name: Option<Option<String>>,
    #[serde(default, deserialize_with = "input::present")]
    pub description: Option<Option<String>>,
    #[serde(default, deserialize_with = "input::present")]
    pub audience_type: Option<Option<AudienceType>>,
    #[serde(default, deserialize_with = "input::present")]
    pub segment_id: Option<Option<Uuid>>,
    #[serde(default, deserialize_with = "input::present")]
    pub lookalike_country: Option<Option<String>>,
    #[serde(default, deserialize_with = "input::present")]
    pub lookalike_percentage: Option<Option<i32>>,
    #[serde(default, deserialize_with = "input::present")]
    pub rule: Option<Option<Value>>,
    #[serde(default, deserialize_with = "input::present")]
    pub auto_sync: Option<Option<bool>>,
    #[serde(default, deserialize_with = "input::present")]
    pub realtime: Option<Option<bool>>,
    #[serde(default, deserialize_with = "input::present")]
    pub sync_interval_hours: Option<Option<i32>>,
    #[serde(default, deserialize_with = "input::present")]
    pub is_active: Option<Option<bool>>,
    #[serde(default, deserialize_with = "input::present")]
    pub meta_business_account_id: Option<Option<String>>,
    /// Fixed at create: only the current value is accepted.
    #[serde(default, deserialize_with = "input::present")]
    pub destination: Option<Option<Platform>>,
    /// Fixed at create: only the current value is accepted.
    #[serde(default, deserialize_with = "input::present")]
    pub destination_account_id: Option<Option<String>>,
    #[serde(default, deserialize_with = "input::present")]
    pub max_removal_percent: Option<Option<i32>>,
    #[serde(default, deserialize_with = "input::present")]
    pub min_members: Option<Option<i32>>,
    #[serde(default, deserialize_with = "input::present")]
    pub value_attribute: Option<Option<String>>,
    #[serde(default, deserialize_with = "input::present")]
    pub holdout_percent: Option<Option<i32>>,
}

impl AudiencePatch {
    fn apply(self, s: &mut AudienceSpec) -> Result<()> {
        if let Some(v) = self.name {
            s.name = input::required("name", v)?;
        }
        if let Some(v) = self.audience_type {
            s.audience_type = input::required("audience_type", v)?;
        }
        if let Some(v) = self.auto_sync {
            s.auto_sync = input::required("auto_sync", v)?;
        }
        if let Some(v) = self.realtime {
            s.realtime = input::required("realtime", v)?;
        }
        if let Some(v) = self.sync_interval_hours {
            s.sync_interval_hours = input::required("sync_interval_hours", v)?;
        }
        if let Some(v) = self.is_active {
            s.is_active = input::required("is_active", v)?;
        }
        if let Some(v) = self.min_members {
            s.min_members = input::required("min_members", v)?;
        }
        if let Some(v) = self.holdout_percent {
            s.holdout_percent = input::required("holdout_percent", v)?;
        }
        if let Some(v) = self.max_removal_percent {
            s.max_removal_percent = v;
        }
        if let Some(v) = self.value_attribute {
            s.value_attribute = v;
        }
        if let Some(v) = self.description {
            s.description = v;
        }
        if let Some(v) = self.segment_id {
            s.segment_id = v;
        }
        if let Some(v) = self.lookalike_country {
            s.lookalike_country = v;
        }
        if let Some(v) = self.lookalike_percentage {
            s.lookalike_percentage = v;
        }
        if let Some(v) = self.rule {
            s.rule = v;
        }
        if let Some(v) = self.meta_business_account_id {
            // On Meta the account is one value under two names (DESIGN §8.1).
            if s.destination == Platform::Meta {
                s.destination_account_id = v.clone();
            }
            s.meta_business_account_id = v;
        }
        Ok(())
    }

    /// Refuses a change of what is fixed at create: the destination, and the account there
    /// (moving an audience would leave its members and its platform audience behind).
    /// Repeating the current value is fine.
    fn check_fixed(&self, current: &Audience) -> Result<()> {
        if let Some(v) = self.destination {
            if v != Some(current.destination) {
                return Err(Error::invalid(
                    "destination",
                    format!(
                        "destination cannot change once the audience exists (it is {}): create a \
                         new audience for another platform",
                        current.destination
                    ),
                ));
            }
        }
        if let Some(v) = &self.destination_account_id {
            let wanted = account_id(current.destination, "destination_account_id", v.clone())?;
            if wanted != current.destination_account_id {
                return Err(Error::invalid(
                    "destination_account_id",
                    "destination_account_id is set at create only: create a new audience for \
                     another account",
                ));
            }
        }
        Ok(())
    }
}

pub const RETENTION_DAYS_MAX: i64 = 180;

impl AudienceSpec {
    /// Checks every rule and normalizes what has one spelling (country upper case, account id
    /// without `act_`).
    pub fn validate(&mut self) -> Result<()> {
        self.name = input::name(Some(&self.name))?;
        input::description(self.description.as_deref())?;
        if !(1..=8760).contains(&self.sync_interval_hours) {
            return Err(Error::invalid(
                "sync_interval_hours",
                "sync_interval_hours must be between 1 and 8760",
            ));
        }
        if let Some(p) = self.lookalike_percentage {
            if !(1..=10).contains(&p) {
                return Err(Error::invalid(
                    "lookalike_percentage",
                    "lookalike_percentage must be between 1 and 10",
                ));
            }
        }
        if let Some(c) = &self.lookalike_country {
            let c = c.trim();
            if c.len() != 2 || !c.chars().all(|ch| ch.is_ascii_alphabetic()) {
                return Err(Error::invalid(
                    "lookalike_country",
                    "lookalike_country must be an ISO 3166-1 alpha-2 country code such as US",
                ));
            }
            self.lookalike_country = Some(c.to_ascii_uppercase());
        }
        self.validate_safety()?;
        self.validate_account()?;
        self.meta_audience_id = digits_id("meta_audience_id", self.meta_audience_id.take())?;
        self.validate_platform_types()?;
        self.validate_type_fields()
    }

    /// Guardrails, holdout and value attribute (DESIGN §8.4).
    fn validate_safety(&mut self) -> Result<()> {
        if let Some(p) = self.max_removal_percent {
            if !(1..=100).contains(&p) {
                return Err(Error::invalid(
                    "max_removal_percent",
                    "max_removal_percent must be between 1 and 100, or null for no limit",
                ));
            }
        }
        if self.min_members < 0 {
            return Err(Error::invalid(
                "min_members",
                "min_members must be 0 or more",
            ));
        }
        if !(0..=50).contains(&self.holdout_percent) {
            return Err(Error::invalid(
                "holdout_percent",
                "holdout_percent must be between 0 and 50",
            ));
        }
        let Some(attribute) = self.value_attribute.take() else {
            return Ok(());
        };
        let attribute = attribute.trim().to_string();
        if attribute.is_empty()
            || attribute.chars().count() > crate::segment::rule::MAX_ATTRIBUTE_CHARS
        {
            return Err(Error::invalid(
                "value_attribute",
                format!(
                    "value_attribute must be the name of a numeric trait, 1 to {} characters",
                    crate::segment::rule::MAX_ATTRIBUTE_CHARS
                ),
            ));
        }
        if self.destination != Platform::Meta {
            return Err(Error::invalid(
                "value_attribute",
                format!(
                    "value_attribute applies only to Meta audiences (value-based customer lists), not {}",
                    self.destination
                ),
            ));
        }
        if self.audience_type == AudienceType::Engagement {
            return Err(Error::invalid(
                "value_attribute",
                "value_attribute applies only to custom_list and lookalike audiences",
            ));
        }
        self.value_attribute = Some(attribute);
        Ok(())
    }

    /// The platform's account id in its one spelling. On Meta, `destination_account_id` and
    /// `meta_business_account_id` are the same value: either may be given, both only if equal.
    fn validate_account(&mut self) -> Result<()> {
        let account = account_id(
            self.destination,
            "destination_account_id",
            self.destination_account_id.take(),
        )?;
        if self.destination != Platform::Meta {
            if self.meta_business_account_id.is_some() {
                return Err(Error::invalid(
                    "meta_business_account_id",
                    format!(
                        "meta_business_account_id applies only to Meta audiences: set the {} \
                         account in destination_account_id",
                        self.destination
                    ),
                ));
            }
            self.destination_account_id = account;
            return Ok(());
        }
        let meta = digits_id(
            "meta_business_account_id",
            self.meta_business_account_id.take(),
        )?;
        let merged =
            match (meta, account) {
                (Some(m), Some(a)) if m != a => return Err(Error::invalid(
                    "destination_account_id",
                    "destination_account_id and meta_business_account_id name the same Meta ad \
                     account on a Meta audience: give one, or both equal",
                )),
                (m, a) => m.or(a),
            };
        self.meta_business_account_id = merged.clone();
        self.destination_account_id = merged;
        Ok(())
    }

    /// The audience types each platform can build (DESIGN §8.1).
    fn validate_platform_types(&self) -> Result<()> {
        let refused = match (self.audience_type, self.destination) {
            (AudienceType::CustomList, _)
            | (_, Platform::Meta)
            | (AudienceType::Lookalike, Platform::Tiktok) => return Ok(()),
            (AudienceType::Engagement, p) => {
                format!("engagement audiences are built from Meta pixel events: Meta only, not {p}")
            }
            (AudienceType::Lookalike, Platform::Google) => {
                "Google has no lookalikes: similar segments were retired in 2023".to_string()
            }
            (AudienceType::Lookalike, _) => {
                "LinkedIn has no lookalike API open to us: lookalike audiences are on Meta and \
                 TikTok"
                    .to_string()
            }
        };
        Err(Error::invalid("audience_type", refused))
    }

    fn validate_type_fields(&mut self) -> Result<()> {
        let only_for = |field: &str, kind: &str| {
            Error::invalid(field, format!("{field} applies only to {kind} audiences"))
        };
        match self.audience_type {
            AudienceType::Lookalike => {
                for (field, missing) in [
                    ("segment_id", self.segment_id.is_none()),
                    ("lookalike_country", self.lookalike_country.is_none()),
                    ("lookalike_percentage", self.lookalike_percentage.is_none()),
                ] {
                    if missing {
                        return Err(Error::invalid(
                            field,
                            format!("{field} is required for a lookalike audience"),
                        ));
                    }
                }
            }
            _ if self.lookalike_country.is_some() => {
                return Err(only_for("lookalike_country", "lookalike"))
            }
            _ if self.lookalike_percentage.is_some() => {
                return Err(only_for("lookalike_percentage", "lookalike"))
            }
            _ => {}
        }
        match self.audience_type {
            AudienceType::Engagement => {
                if self.segment_id.is_some() {
                    return Err(Error::invalid(
                        "segment_id",
                        "segment_id does not apply to engagement audiences: they are built from pixel events by the rule",
                    ));
                }
                let rule = self.rule.as_ref().ok_or_else(|| {
                    Error::invalid("rule", "rule is required for an engagement audience")
                })?;
                self.rule = Some(EngagementRule::parse(rule)?.to_json());
            }
            _ if self.rule.is_some() => return Err(only_for("rule", "engagement")),
            _ => {}
        }
        Ok(())
    }
}

/// An account id on `platform` in its one spelling ([`Platform::account_id`]).
pub fn account_id(platform: Platform, field: &str, v: Option<String>) -> Result<Option<String>> {
    let Some(raw) = v else { return Ok(None) };
    platform
        .account_id(&raw)
        .map(Some)
        .map_err(|rule| Error::invalid(field, format!("{field} must be {rule}")))
}

/// A Meta id: digits (`act_` accepted).
fn digits_id(field: &str, v: Option<String>) -> Result<Option<String>> {
    account_id(Platform::Meta, field, v)
}

/// The pixel rule of an engagement audience: people who fired `event` on pixel `pixel_id` in the
/// last `retention_days` days.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EngagementRule {
    pub pixel_id: String,
    pub event: String,
    pub retention_days: i64,
}

impl EngagementRule {
    pub fn parse(v: &Value) -> Result<Self> {
        let rule: EngagementRule = input::from_value("rule", v.clone())?;
        if rule.pixel_id.is_empty() || !rule.pixel_id.bytes().all(|b| b.is_ascii_digit()) {
            return Err(Error::invalid(
                "rule.pixel_id",
                "rule.pixel_id must be the numeric id of a Meta pixel, as a string",
            ));
        }
        let event = rule.event.trim();
        if event.is_empty() || event.chars().count() > 100 {
            return Err(Error::invalid(
                "rule.event",
                "rule.event must be an event name of 1 to 100 characters, e.g. ViewContent",
            ));
        }
        if !(1..=RETENTION_DAYS_MAX).contains(&rule.retention_days) {
            return Err(Error::invalid(
                "rule.retention_days",
                format!("rule.retention_days must be between 1 and {RETENTION_DAYS_MAX}"),
            ));
        }
        Ok(EngagementRule {
            event: event.to_string(),
            ..rule
        })
    }

    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).expect("plain struct serializes")
    }
}

/// Creates an audience from what the caller sent, after checking every rule.
pub async fn create(db: &impl GenericClient, input: NewAudience) -> Result<Audience> {
    let mut spec = input.into_spec()?;
    spec.validate()?;
    store::insert(db, &spec).await
}

/// Applies a partial update. Changing the type of an audience Meta already has is refused:
/// Meta cannot change it, so the user must create a new audience.
pub async fn update(
    db: &mut deadpool_postgres::Object,
    id: Uuid,
    patch: AudiencePatch,
) -> Result<Audience> {
    let tx = db.transaction().await?;
    let current = store::get_for_update(&*tx, id).await?;
    patch.check_fixed(&current)?;
    let mut spec = current.spec();
    patch.apply(&mut spec)?;
    spec.validate()?;
    if let Some(platform_id) = &current.destination_audience_id {
        if spec.audience_type != current.audience_type {
            return Err(Error::Conflict(format!(
                "audience_type cannot change once the audience exists in {} (id {platform_id}): \
                 create a new audience instead",
                current.destination
            )));
        }
    }
    check_value_based_fixed(&current, &spec)?;
    let updated = store::update(&*tx, id, &spec).await?;
    tx.commit().await?;
    Ok(updated)
}

/// A page of the audience's holdout (DESIGN §8.4): up to `limit` person ids in id order after
/// `after`, and where the next page starts (`None`: this was the last).
pub async fn holdout(
    db: &impl GenericClient,
    id: Uuid,
    after: Option<input::IdCursor>,
    limit: i64,
) -> Result<(Vec<Uuid>, Option<input::IdCursor>)> {
    let audience = store::get(db, id).await?;
    let Some(segment_id) = audience.segment_id.filter(|_| audience.holdout_percent > 0) else {
        return Ok((Vec::new(), None));
    };
    let from = after.map_or(Uuid::nil(), |c| c.0);
    let mut ids = store::holdout_page(db, &audience, segment_id, from, limit + 1).await?;
    let more = ids.len() as i64 > limit;
    ids.truncate(limit as usize);
    let next = ids.last().filter(|_| more).map(|id| input::IdCursor(*id));
    Ok((ids, next))
}

/// Meta fixes `is_value_based` when it creates a customer list: once the list (or a lookalike's
/// seed) exists, `value_attribute` can change from one trait to another but not appear or
/// disappear.
fn check_value_based_fixed(current: &Audience, spec: &AudienceSpec) -> Result<()> {
    let on_meta = current.meta_audience_id.is_some() || current.meta_seed_audience_id.is_some();
    if on_meta && current.value_attribute.is_some() != spec.value_attribute.is_some() {
        return Err(Error::Conflict(format!(
            "value_attribute cannot be {} once the audience exists in Meta (a customer list is \
             value-based or not from its creation): create a new audience instead",
            match spec.value_attribute {
                Some(_) => "set",
                None => "cleared",
            }
        )));
    }
    Ok(())
}

/// `get_audience_metrics`, plus the platform's own numbers as read at the last sync.
pub async fn metrics(db: &impl GenericClient, audience: &Audience) -> Result<Value> {
    let mut metrics = store::member_metrics(db, audience.id).await?;
    if let (Some(Value::Object(platform)), Value::Object(m)) =
        (&audience.meta_metrics, &mut metrics)
    {
        m.extend(platform.clone());
    }
    Ok(metrics)
}

/// Deletes the audience: on its platform first (when it is there and `keep_on_platform` is
/// false), then here, under the audience's sync lock so no sync runs meanwhile. A platform
/// failure deletes nothing.
pub async fn delete(app: &App, id: Uuid, keep_on_platform: bool) -> Result<()> {
    let conn = crate::db::get(&app.pool).await?;
    let audience = store::get(&**conn, id).await?;
    let lock = AudienceLock::try_acquire(conn, id).await?.ok_or_else(|| {
        Error::Conflict(
            "a sync of this audience is running; delete it when the sync has finished".into(),
        )
    })?;
    let on_platform = audience.destination_audience_id.is_some()
        || audience.meta_audience_id.is_some()
        || audience.meta_seed_audience_id.is_some();
    if on_platform && !keep_on_platform {
        delete_on_platform(app, &audience).await?;
    }
    store::delete(lock.client(), id).await?;
    lock.release().await
}

/// Deletes the audience (and a lookalike's seed) on its platform.
async fn delete_on_platform(app: &App, audience: &Audience) -> Result<()> {
    // `keep_in_meta=true` (the query parameter's name predates other platforms) keeps it there.
    let not_configured = |platform: &str, variable: &str| {
        Error::Conflict(format!(
            "the audience exists in {platform} but {platform} is not configured here: set \
             {variable} to delete it there too, or pass keep_in_meta=true to delete only this \
             record"
        ))
    };
    match audience.destination {
        Platform::Google => {
            let client = app.google.as_deref().ok_or_else(|| {
                not_configured(
                    "Google",
                    "GOOGLE_ACCESS_TOKEN or GOOGLE_CREDENTIALS_SECRET_ARN",
                )
            })?;
            crate::destinations::google::delete_user_list(client, audience).await
        }
        Platform::Linkedin => {
            let client = app.linkedin.as_deref();
            let client =
                client.ok_or_else(|| not_configured("LinkedIn", "LINKEDIN_ACCESS_TOKEN"))?;
            crate::destinations::linkedin::delete_audience(client, audience).await
        }
        Platform::Tiktok => {
            let client = app.tiktok.as_deref();
            let client = client.ok_or_else(|| not_configured("TikTok", "TIKTOK_ACCESS_TOKEN"))?;
            crate::destinations::tiktok::delete_audience(client, audience).await
        }
        Platform::Meta => {
            let client = app.meta.as_deref();
            let client = client.ok_or_else(|| not_configured("Meta", "META_ACCESS_TOKEN"))?;
            crate::destinations::meta::delete_audience(client, audience).await
        }
    }
}
