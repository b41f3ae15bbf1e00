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

/// Segments one overlap compares: at least two, at most [`OVERLAP_MAX`] (a person's
/// memberships are a bitmask of them, see [`store::overlap`]).
pub const OVERLAP_MIN: usize = 2;
pub const OVERLAP_MAX: usize = 10;

/// `POST /api/segments/overlap`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OverlapRequest {
    /// Checked by [`OverlapRequest::segment_ids`] (so every mistake names `segment_ids`).
    pub segment_ids: Option<Value>,
}

/// A segment's size in an overlap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct OverlapSize {
    pub id: Uuid,
    pub size: i64,
}

/// Two segments: the people in both, and `both` / people in either (0 when neither has any).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct OverlapPair {
    pub a: Uuid,
    pub b: Uuid,
    pub both: i64,
    pub jaccard: f64,
}

/// Each segment's size and every pair's overlap, in the order the segments were asked.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Overlap {
    pub segments: Vec<OverlapSize>,
    pub pairs: Vec<OverlapPair>,
}

impl OverlapRequest {
    /// The ids asked: a list of 2 to 10 distinct segment ids.
    pub fn segment_ids(&self) -> Result<Vec<Uuid>> {
        let bad = |why: String| Error::invalid("segment_ids", why);
        let shape = || {
            bad(format!(
                "segment_ids must be a list of {OVERLAP_MIN} to {OVERLAP_MAX} segment ids"
            ))
        };
        let items = match &self.segment_ids {
            None | Some(Value::Null) => return Err(bad("segment_ids is required".into())),
            Some(Value::Array(items)) => items,
            Some(_) => return Err(shape()),
        };
        if !(OVERLAP_MIN..=OVERLAP_MAX).contains(&items.len()) {
            return Err(shape());
        }
        let mut ids = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let id = item
                .as_str()
                .and_then(|s| Uuid::parse_str(s).ok())
                .ok_or_else(|| bad(format!("segment_ids[{i}] must be a segment id (a UUID)")))?;
            if ids.contains(&id) {
                return Err(bad(format!(
                    "segment_ids[{i}] repeats {id}: name each segment once"
                )));
            }
            ids.push(id);
        }
        Ok(ids)
    }
}

/// The J of two sets from their sizes and their intersection.
fn jaccard(size_a: i64, size_b: i64, both: i64) -> f64 {
    match size_a + size_b - both {
        0 => 0.0,
        either => both as f64 / either as f64,
    }
}

/// How far the segments asked overlap (one statement, see [`store::overlap`]); an unknown
/// segment is a 404 naming it.
pub async fn overlap(db: &impl GenericClient, request: &OverlapRequest) -> Result<Overlap> {
    let ids = request.segment_ids()?;
    let counts = store::overlap(db, &ids).await?;
    if let Some(missing) = counts.missing {
        return Err(Error::not_found("segment", missing));
    }
    let n = ids.len();
    let both = |i: usize, j: usize| counts.both[i.min(j) * n + i.max(j)];
    let segments = (0..n)
        .map(|i| OverlapSize {
            id: ids[i],
            size: both(i, i),
        })
        .collect();
    let pairs = (0..n)
        .flat_map(|i| (i + 1..n).map(move |j| (i, j)))
        .map(|(i, j)| OverlapPair {
            a: ids[i],
            b: ids[j],
            both: both(i, j),
            jaccard: jaccard(both(i, i), both(j, j), both(i, j)),
        })
        .collect();
    Ok(Overlap { segments, pairs })
}

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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ids(v: Value) -> Result<Vec<Uuid>> {
        OverlapRequest {
            segment_ids: Some(v),
        }
        .segment_ids()
    }

    #[test]
    fn jaccard_is_both_over_either_and_zero_for_two_empty_sets() {
        assert_eq!(jaccard(0, 0, 0), 0.0);
        assert_eq!(jaccard(10, 10, 10), 1.0);
        assert_eq!(jaccard(6, 4, 2), 0.25);
        assert_eq!(jaccard(5, 0, 0), 0.0);
    }

    #[test]
    fn segment_ids_must_be_two_to_ten_distinct_uuids() {
        let a = Uuid::from_u128(1).to_string();
        let b = Uuid::from_u128(2).to_string();
        assert_eq!(ids(json!([a, b])).unwrap().len(), 2);
        let eleven: Vec<String> = (1..=11u128)
            .map(|i| Uuid::from_u128(i).to_string())
            .collect();
        for bad in [
            json!([a]),
            json!([]),
            json!(eleven),
            json!([a, a]),
            json!([a, "nope"]),
            json!([a, 7]),
            json!("x"),
            Value::Null,
        ] {
            let Err(Error::Invalid { field, .. }) = ids(bad.clone()) else {
                panic!("{bad} accepted");
            };
            assert_eq!(field.as_deref(), Some("segment_ids"), "{bad}");
        }
    }
}
