//! Segments: a marketer's rule over people (`rule`), compiled to one SQL query (`compile`), and
//! the membership it yields kept in `segment_member` (`store`, which holds all their SQL).
//! Audiences are built from segments; every sync refreshes its segment first.

pub mod compile;
pub mod rule;
pub mod store;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio_postgres::GenericClient;
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::input;
pub use rule::Rule;

/// A segment as the API shows it, with the audiences it feeds.
#[derive(Debug, Clone, Serialize)]
pub struct Segment {
    pub id: Uuid,
    pub name: String,
    pub description: Option<String>,
    /// `None`: a manual segment, whose members are put in by SQL.
    pub rule: Option<Value>,
    pub member_count: i32,
    pub refreshed_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// `[{id, name}]` of the audiences built from it.
    pub audiences: Value,
}

/// `POST /api/segments`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewSegment {
    pub name: Option<String>,
    pub description: Option<String>,
    pub rule: Option<Value>,
}

/// `PUT /api/segments/{id}`: absent = unchanged; `"rule": null` makes the segment manual.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SegmentPatch {
    #[serde(default, deserialize_with = "input::present")]
    pub name: Option<Option<String>>,
    #[serde(default, deserialize_with = "input::present")]
    pub description: Option<Option<String>>,
    #[serde(default, deserialize_with = "input::present")]
    pub rule: Option<Option<Value>>,
}

/// What a refresh changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Refreshed {
    pub joined: i64,
    pub left: i64,
    pub member_count: i32,
}

/// What a rule selects, without saving anything.
#[derive(Debug, Clone, Serialize)]
pub struct Preview {
    pub count: i64,
    /// Up to [`PREVIEW_SAMPLE`] person ids, in id order.
    pub sample: Vec<Uuid>,
}

pub const PREVIEW_SAMPLE: i64 = 10;

/// A stored rule, checked; `None` for a manual segment.
fn valid_rule(rule: &Option<Value>) -> Result<Option<Rule>> {
    rule.as_ref().map(|r| Rule::parse("rule", r)).transpose()
}

/// Creates a segment; one with a rule gets its members at once.
pub async fn create(db: &impl GenericClient, input: NewSegment) -> Result<Segment> {
    let name = input::name(input.name.as_deref())?;
    input::description(input.description.as_deref())?;
    let rule = valid_rule(&input.rule)?;
    let id = store::insert(db, &name, &input.description, &input.rule).await?;
    if let Some(rule) = rule {
        store::refresh_rule(db, id, &rule).await?;
    }
    store::get(db, id).await
}

/// Applies a partial update; a new rule is applied to the members at once.
pub async fn update(db: &impl GenericClient, id: Uuid, patch: SegmentPatch) -> Result<Segment> {
    let current = store::get(db, id).await?;
    let name = match patch.name {
        Some(n) => input::name(n.as_deref())?,
        None => current.name,
    };
    let description = patch.description.unwrap_or(current.description);
    input::description(description.as_deref())?;
    let rule_changed = patch.rule.is_some();
    let rule = patch.rule.unwrap_or(current.rule);
    let parsed = valid_rule(&rule)?;
    store::update(db, id, &name, &description, &rule).await?;
    if let (true, Some(rule)) = (rule_changed, parsed) {
        store::refresh_rule(db, id, &rule).await?;
    }
    store::get(db, id).await
}

/// Deletes a segment and its membership; refused while an audience is built from it.
pub async fn delete(db: &impl GenericClient, id: Uuid) -> Result<()> {
    if store::delete(db, id).await? {
        return Ok(());
    }
    let names = store::audiences_fed(db, id).await?;
    Err(Error::Conflict(format!(
        "the segment feeds {} audience(s) ({}): point them at another segment or delete them first",
        names.len(),
        names.join(", ")
    )))
}

/// Brings the segment's members to its rule, or for a manual segment recounts them (when they
/// changed). A rule is re-evaluated only for the people changed since the last refresh when
/// the change log covers that; in full when it does not (never refreshed, the last full
/// evaluation is a day old, the log was trimmed past it) or when the rule reads `updated_at`.
pub async fn refresh(db: &impl GenericClient, id: Uuid) -> Result<Refreshed> {
    let (rule, covered) = store::rule_and_coverage(db, id).await?;
    match valid_rule(&rule)? {
        Some(rule) => {
            if covered && !rule.reads_updated_at() {
                if let Some(r) = store::refresh_changed(db, id, &rule).await? {
                    return Ok(r);
                }
            }
            store::refresh_rule(db, id, &rule).await
        }
        None => Ok(Refreshed {
            joined: 0,
            left: 0,
            member_count: store::recount(db, id).await?,
        }),
    }
}

/// What `rule` selects today.
pub async fn preview(db: &impl GenericClient, rule: &Rule) -> Result<Preview> {
    store::preview(db, rule, PREVIEW_SAMPLE).await
}
