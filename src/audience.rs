//! Custom audiences: the domain type, its validation rules, and its store.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio_postgres::{GenericClient, Row};
use uuid::Uuid;

use crate::db::DbError;
use crate::error::{Error, Result};

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

impl tokio_postgres::types::ToSql for AudienceType {
    fn to_sql(
        &self,
        ty: &tokio_postgres::types::Type,
        out: &mut bytes::BytesMut,
    ) -> std::result::Result<tokio_postgres::types::IsNull, Box<dyn std::error::Error + Sync + Send>>
    {
        self.as_str().to_sql(ty, out)
    }

    fn accepts(ty: &tokio_postgres::types::Type) -> bool {
        <&str as tokio_postgres::types::ToSql>::accepts(ty)
    }

    tokio_postgres::types::to_sql_checked!();
}

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
}

const COLUMNS: &str = "id, name, description, meta_audience_id, meta_business_account_id, \
    segment_id, audience_type, lookalike_country, lookalike_percentage, rule, auto_sync, \
    sync_interval_hours, last_synced_at, is_active, status, total_synced, sync_error_message, \
    meta_seed_audience_id, created_at, updated_at, meta_metrics";

impl Audience {
    fn from_row(row: &Row) -> Self {
        Audience {
            id: row.get("id"),
            name: row.get("name"),
            description: row.get("description"),
            meta_audience_id: row.get("meta_audience_id"),
            meta_business_account_id: row.get("meta_business_account_id"),
            segment_id: row.get("segment_id"),
            audience_type: AudienceType::from_db(row.get("audience_type")),
            lookalike_country: row.get("lookalike_country"),
            lookalike_percentage: row.get("lookalike_percentage"),
            rule: row.get("rule"),
            auto_sync: row.get("auto_sync"),
            sync_interval_hours: row.get("sync_interval_hours"),
            last_synced_at: row.get("last_synced_at"),
            is_active: row.get("is_active"),
            status: row.get("status"),
            total_synced: row.get("total_synced"),
            sync_error_message: row.get("sync_error_message"),
            meta_seed_audience_id: row.get("meta_seed_audience_id"),
            created_at: row.get("created_at"),
            updated_at: row.get("updated_at"),
            meta_metrics: row.get("meta_metrics"),
        }
    }

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
            sync_interval_hours: self.sync_interval_hours,
            is_active: self.is_active,
            meta_business_account_id: self.meta_business_account_id.clone(),
            meta_audience_id: self.meta_audience_id.clone(),
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
    pub sync_interval_hours: i32,
    pub is_active: bool,
    pub meta_business_account_id: Option<String>,
    pub meta_audience_id: Option<String>,
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
    pub sync_interval_hours: Option<i32>,
    pub is_active: Option<bool>,
    pub meta_business_account_id: Option<String>,
}

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
            sync_interval_hours: self.sync_interval_hours.unwrap_or(24),
            is_active: self.is_active.unwrap_or(true),
            meta_business_account_id: self.meta_business_account_id,
            meta_audience_id: None,
        })
    }
}

/// `PUT /api/audiences/{id}`: absent = unchanged, `null` = cleared (where a field may be empty).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AudiencePatch {
    #[serde(default, deserialize_with = "present")]
    pub name: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    pub description: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    pub audience_type: Option<Option<AudienceType>>,
    #[serde(default, deserialize_with = "present")]
    pub segment_id: Option<Option<Uuid>>,
    #[serde(default, deserialize_with = "present")]
    pub lookalike_country: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    pub lookalike_percentage: Option<Option<i32>>,
    #[serde(default, deserialize_with = "present")]
    pub rule: Option<Option<Value>>,
    #[serde(default, deserialize_with = "present")]
    pub auto_sync: Option<Option<bool>>,
    #[serde(default, deserialize_with = "present")]
    pub sync_interval_hours: Option<Option<i32>>,
    #[serde(default, deserialize_with = "present")]
    pub is_active: Option<Option<bool>>,
    #[serde(default, deserialize_with = "present")]
    pub meta_business_account_id: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    pub meta_audience_id: Option<Option<String>>,
}

/// Tells a field sent as `null` (Some(None)) from a field not sent (None, via `default`).
pub(crate) fn present<'de, D, T>(d: D) -> std::result::Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

fn required<T>(field: &str, v: Option<T>) -> Result<T> {
    v.ok_or_else(|| Error::invalid(field, format!("{field} cannot be null")))
}

impl AudiencePatch {
    fn apply(self, s: &mut AudienceSpec) -> Result<()> {
        if let Some(v) = self.name {
            s.name = required("name", v)?;
        }
        if let Some(v) = self.audience_type {
            s.audience_type = required("audience_type", v)?;
        }
        if let Some(v) = self.auto_sync {
            s.auto_sync = required("auto_sync", v)?;
        }
        if let Some(v) = self.sync_interval_hours {
            s.sync_interval_hours = required("sync_interval_hours", v)?;
        }
        if let Some(v) = self.is_active {
            s.is_active = required("is_active", v)?;
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
            s.meta_business_account_id = v;
        }
        if let Some(v) = self.meta_audience_id {
            s.meta_audience_id = v;
        }
        Ok(())
    }
}

pub const NAME_MAX_CHARS: usize = 200;
pub const DESCRIPTION_MAX_CHARS: usize = 2000;
pub const RETENTION_DAYS_MAX: i64 = 180;

impl AudienceSpec {
    /// Checks every rule and normalizes what has one spelling (country upper case, account id
    /// without `act_`).
    pub fn validate(&mut self) -> Result<()> {
        let name = self.name.trim();
        if name.is_empty() {
            return Err(Error::invalid("name", "name must not be empty"));
        }
        if name.chars().count() > NAME_MAX_CHARS {
            return Err(Error::invalid(
                "name",
                format!("name must be at most {NAME_MAX_CHARS} characters"),
            ));
        }
        self.name = name.to_string();
        if let Some(d) = &self.description {
            if d.chars().count() > DESCRIPTION_MAX_CHARS {
                return Err(Error::invalid(
                    "description",
                    format!("description must be at most {DESCRIPTION_MAX_CHARS} characters"),
                ));
            }
        }
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
        self.meta_business_account_id = digits_id(
            "meta_business_account_id",
            self.meta_business_account_id.take(),
        )?;
        self.meta_audience_id = digits_id("meta_audience_id", self.meta_audience_id.take())?;
        self.validate_type_fields()
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

fn digits_id(field: &str, v: Option<String>) -> Result<Option<String>> {
    let Some(v) = v else { return Ok(None) };
    let digits = v.trim().trim_start_matches("act_");
    if digits.is_empty() || digits.len() > 30 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Error::invalid(
            field,
            format!("{field} must be a numeric Meta id (an ad account may start with act_)"),
        ));
    }
    Ok(Some(digits.to_string()))
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
        let rule: EngagementRule = crate::http::request::from_value("rule", v.clone())?;
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

/// Maps the constraint violations a write can hit to the caller's mistake.
fn write_error(e: tokio_postgres::Error, segment_id: Option<Uuid>) -> Error {
    let e = DbError::from(e);
    match e.constraint() {
        Some("custom_audience_name_key") => {
            Error::Conflict("an audience with this name already exists".into())
        }
        Some("custom_audience_segment_id_fkey") => Error::invalid(
            "segment_id",
            format!(
                "segment {} does not exist",
                segment_id.map(|s| s.to_string()).unwrap_or_default()
            ),
        ),
        _ => Error::Db(e),
    }
}

pub async fn list(db: &impl GenericClient, is_active: Option<bool>) -> Result<Vec<Audience>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM custom_audience \
         WHERE $1::boolean IS NULL OR is_active = $1 ORDER BY created_at DESC, id"
    );
    let rows = db.query(&sql, &[&is_active]).await?;
    Ok(rows.iter().map(Audience::from_row).collect())
}

pub async fn get(db: &impl GenericClient, id: Uuid) -> Result<Audience> {
    let sql = format!("SELECT {COLUMNS} FROM custom_audience WHERE id = $1");
    let row = db.query_opt(&sql, &[&id]).await?;
    row.map(|r| Audience::from_row(&r))
        .ok_or_else(|| Error::not_found("audience", id))
}

pub async fn create(db: &impl GenericClient, input: NewAudience) -> Result<Audience> {
    let mut spec = input.into_spec()?;
    spec.validate()?;
    let sql = format!(
        "INSERT INTO custom_audience (name, description, audience_type, segment_id, \
         lookalike_country, lookalike_percentage, rule, auto_sync, sync_interval_hours, is_active, \
         meta_business_account_id, meta_audience_id) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) RETURNING {COLUMNS}"
    );
    let row = db
        .query_one(&sql, &spec_params(&spec))
        .await
        .map_err(|e| write_error(e, spec.segment_id))?;
    Ok(Audience::from_row(&row))
}

fn spec_params(s: &AudienceSpec) -> [&(dyn tokio_postgres::types::ToSql + Sync); 12] {
    [
        &s.name,
        &s.description,
        &s.audience_type,
        &s.segment_id,
        &s.lookalike_country,
        &s.lookalike_percentage,
        &s.rule,
        &s.auto_sync,
        &s.sync_interval_hours,
        &s.is_active,
        &s.meta_business_account_id,
        &s.meta_audience_id,
    ]
}

/// Applies a partial update. Changing the type of an audience Meta already has is refused:
/// Meta cannot change it, so the user must create a new audience.
pub async fn update(
    db: &mut deadpool_postgres::Object,
    id: Uuid,
    patch: AudiencePatch,
) -> Result<Audience> {
    let tx = db.transaction().await?;
    let current = get_for_update(&*tx, id).await?;
    let mut spec = current.spec();
    patch.apply(&mut spec)?;
    spec.validate()?;
    if current.meta_audience_id.is_some()
        && spec.meta_audience_id == current.meta_audience_id
        && spec.audience_type != current.audience_type
    {
        return Err(Error::Conflict(format!(
            "audience_type cannot change once the audience exists in Meta (id {}): create a new audience instead",
            current.meta_audience_id.as_deref().unwrap_or_default()
        )));
    }
    let sql = format!(
        "UPDATE custom_audience SET name = $1, description = $2, audience_type = $3, \
         segment_id = $4, lookalike_country = $5, lookalike_percentage = $6, rule = $7, \
         auto_sync = $8, sync_interval_hours = $9, is_active = $10, \
         meta_business_account_id = $11, meta_audience_id = $12, updated_at = now() \
         WHERE id = $13 RETURNING {COLUMNS}"
    );
    let mut params = spec_params(&spec).to_vec();
    params.push(&id);
    let row = tx
        .query_one(&sql, &params)
        .await
        .map_err(|e| write_error(e, spec.segment_id))?;
    tx.commit().await?;
    Ok(Audience::from_row(&row))
}

async fn get_for_update(db: &impl GenericClient, id: Uuid) -> Result<Audience> {
    let sql = format!("SELECT {COLUMNS} FROM custom_audience WHERE id = $1 FOR UPDATE");
    let row = db.query_opt(&sql, &[&id]).await?;
    row.map(|r| Audience::from_row(&r))
        .ok_or_else(|| Error::not_found("audience", id))
}

pub async fn delete(db: &impl GenericClient, id: Uuid) -> Result<()> {
    let n = db
        .execute("DELETE FROM custom_audience WHERE id = $1", &[&id])
        .await?;
    if n == 0 {
        return Err(Error::not_found("audience", id));
    }
    Ok(())
}

/// Meta's view of the audience, recorded after each sync.
pub async fn record_meta_metrics(db: &impl GenericClient, id: Uuid, metrics: &Value) -> Result<()> {
    db.execute(
        "UPDATE custom_audience SET meta_metrics = $2 WHERE id = $1",
        &[&id, metrics],
    )
    .await?;
    Ok(())
}

/// One member as the API shows it: state only, never contact data or hashes.
#[derive(Debug, Serialize)]
pub struct Member {
    pub id: Uuid,
    pub person_id: Option<Uuid>,
    pub is_synced: bool,
    pub synced_at: Option<DateTime<Utc>>,
    pub failure_reason: Option<String>,
    pub removal_pending: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

pub async fn members(db: &impl GenericClient, id: Uuid, limit: i64) -> Result<Vec<Member>> {
    let rows = db
        .query(
            "SELECT id, person_id, is_synced, synced_at, failure_reason, removal_pending, \
             created_at, updated_at FROM audience_member_sync \
             WHERE audience_id = $1 ORDER BY created_at, id LIMIT $2",
            &[&id, &limit],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| Member {
            id: r.get(0),
            person_id: r.get(1),
            is_synced: r.get(2),
            synced_at: r.get(3),
            failure_reason: r.get(4),
            removal_pending: r.get(5),
            created_at: r.get(6),
            updated_at: r.get(7),
        })
        .collect())
}

/// `get_audience_metrics`, plus Meta's own numbers as read at the last sync.
pub async fn metrics(db: &impl GenericClient, audience: &Audience) -> Result<Value> {
    let row = db
        .query_one(
            "SELECT total_members, synced_count, last_sync_date, sync_status \
             FROM get_audience_metrics($1)",
            &[&audience.id],
        )
        .await?;
    let mut metrics = serde_json::json!({
        "total_members": row.get::<_, i32>(0),
        "synced_count": row.get::<_, i32>(1),
        "last_sync_date": row.get::<_, Option<DateTime<Utc>>>(2),
        "sync_status": row.get::<_, String>(3),
    });
    if let (Some(Value::Object(meta)), Value::Object(m)) = (&audience.meta_metrics, &mut metrics) {
        m.extend(meta.clone());
    }
    Ok(metrics)
}
