//! Segments in PostgreSQL: CRUD, membership refresh (one set-based statement) and preview.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio_postgres::types::ToSql;
use tokio_postgres::{GenericClient, Row};
use uuid::Uuid;

use super::compile::compile;
use super::rule::Rule;
use crate::audience::{present, DESCRIPTION_MAX_CHARS, NAME_MAX_CHARS};
use crate::db::DbError;
use crate::error::{Error, Result};

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

const SELECT: &str = "SELECT s.id, s.name, s.description, s.rule, s.member_count, s.refreshed_at, \
    s.created_at, s.updated_at, \
    COALESCE((SELECT json_agg(json_build_object('id', a.id, 'name', a.name) ORDER BY a.created_at, a.id) \
              FROM custom_audience a WHERE a.segment_id = s.id), '[]'::json) AS audiences \
    FROM segment s";

impl Segment {
    fn from_row(r: &Row) -> Self {
        Segment {
            id: r.get("id"),
            name: r.get("name"),
            description: r.get("description"),
            rule: r.get("rule"),
            member_count: r.get("member_count"),
            refreshed_at: r.get("refreshed_at"),
            created_at: r.get("created_at"),
            updated_at: r.get("updated_at"),
            audiences: r.get("audiences"),
        }
    }
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
    #[serde(default, deserialize_with = "present")]
    pub name: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    pub description: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    pub rule: Option<Option<Value>>,
}

fn valid_name(name: Option<String>) -> Result<String> {
    let name = name.ok_or_else(|| Error::invalid("name", "name is required"))?;
    let name = name.trim();
    if name.is_empty() {
        return Err(Error::invalid("name", "name must not be empty"));
    }
    if name.chars().count() > NAME_MAX_CHARS {
        return Err(Error::invalid(
            "name",
            format!("name must be at most {NAME_MAX_CHARS} characters"),
        ));
    }
    Ok(name.to_string())
}

fn valid_description(d: &Option<String>) -> Result<()> {
    match d {
        Some(d) if d.chars().count() > DESCRIPTION_MAX_CHARS => Err(Error::invalid(
            "description",
            format!("description must be at most {DESCRIPTION_MAX_CHARS} characters"),
        )),
        _ => Ok(()),
    }
}

/// A stored rule, checked; `None` for a manual segment.
fn valid_rule(rule: &Option<Value>) -> Result<Option<Rule>> {
    rule.as_ref().map(|r| Rule::parse("rule", r)).transpose()
}

fn write_error(e: tokio_postgres::Error) -> Error {
    let e = DbError::from(e);
    match e.constraint() {
        Some("segment_name_key") => {
            Error::Conflict("a segment with this name already exists".into())
        }
        _ => Error::Db(e),
    }
}

pub async fn list(db: &impl GenericClient) -> Result<Vec<Segment>> {
    let rows = db
        .query(&format!("{SELECT} ORDER BY s.created_at DESC, s.id"), &[])
        .await?;
    Ok(rows.iter().map(Segment::from_row).collect())
}

pub async fn get(db: &impl GenericClient, id: Uuid) -> Result<Segment> {
    db.query_opt(&format!("{SELECT} WHERE s.id = $1"), &[&id])
        .await?
        .map(|r| Segment::from_row(&r))
        .ok_or_else(|| Error::not_found("segment", id))
}

/// Creates a segment; one with a rule gets its members at once.
pub async fn create(db: &impl GenericClient, input: NewSegment) -> Result<Segment> {
    let name = valid_name(input.name)?;
    valid_description(&input.description)?;
    let rule = valid_rule(&input.rule)?;
    let id: Uuid = db
        .query_one(
            "INSERT INTO segment (name, description, rule) VALUES ($1, $2, $3) RETURNING id",
            &[&name, &input.description, &input.rule],
        )
        .await
        .map_err(write_error)?
        .get(0);
    if let Some(rule) = rule {
        refresh_rule(db, id, &rule).await?;
    }
    get(db, id).await
}

/// Applies a partial update; a new rule is applied to the members at once.
pub async fn update(db: &impl GenericClient, id: Uuid, patch: SegmentPatch) -> Result<Segment> {
    let current = get(db, id).await?;
    let name = match patch.name {
        Some(n) => valid_name(n)?,
        None => current.name,
    };
    let description = patch.description.unwrap_or(current.description);
    valid_description(&description)?;
    let rule_changed = patch.rule.is_some();
    let rule = patch.rule.unwrap_or(current.rule);
    let parsed = valid_rule(&rule)?;
    let n = db
        .execute(
            "UPDATE segment SET name = $2, description = $3, rule = $4, updated_at = now() \
             WHERE id = $1",
            &[&id, &name, &description, &rule],
        )
        .await
        .map_err(write_error)?;
    if n == 0 {
        return Err(Error::not_found("segment", id));
    }
    if let (true, Some(rule)) = (rule_changed, parsed) {
        refresh_rule(db, id, &rule).await?;
    }
    get(db, id).await
}

/// Deletes a segment and its membership; refused while an audience is built from it.
pub async fn delete(db: &impl GenericClient, id: Uuid) -> Result<()> {
    match db
        .execute("DELETE FROM segment WHERE id = $1", &[&id])
        .await
    {
        Ok(0) => Err(Error::not_found("segment", id)),
        Ok(_) => Ok(()),
        Err(e) => {
            let e = DbError::from(e);
            if e.constraint() != Some("custom_audience_segment_id_fkey") {
                return Err(Error::Db(e));
            }
            let names: Vec<String> = db
                .query(
                    "SELECT name FROM custom_audience WHERE segment_id = $1 ORDER BY name",
                    &[&id],
                )
                .await?
                .iter()
                .map(|r| r.get(0))
                .collect();
            Err(Error::Conflict(format!(
                "the segment feeds {} audience(s) ({}): point them at another segment or delete them first",
                names.len(),
                names.join(", ")
            )))
        }
    }
}

/// What a refresh changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Refreshed {
    pub joined: i64,
    pub left: i64,
    pub member_count: i32,
}

/// Brings the segment's members to its rule, or for a manual segment recounts them.
pub async fn refresh(db: &impl GenericClient, id: Uuid) -> Result<Refreshed> {
    let row = db
        .query_opt("SELECT rule FROM segment WHERE id = $1", &[&id])
        .await?
        .ok_or_else(|| Error::not_found("segment", id))?;
    let rule: Option<Value> = row.get(0);
    match valid_rule(&rule)? {
        Some(rule) => refresh_rule(db, id, &rule).await,
        None => {
            let row = db
                .query_one(
                    "UPDATE segment s SET member_count = \
                       (SELECT count(*) FROM segment_member sm WHERE sm.segment_id = s.id) \
                     WHERE s.id = $1 RETURNING s.member_count",
                    &[&id],
                )
                .await?;
            Ok(Refreshed {
                joined: 0,
                left: 0,
                member_count: row.get(0),
            })
        }
    }
}

/// One statement: the people matching the rule (computed once), compared with the members in
/// one hash join, joiners inserted, leavers deleted, the count and time recorded. The segment
/// row is locked first, so two refreshes of one segment take turns instead of racing.
async fn refresh_rule(db: &impl GenericClient, id: Uuid, rule: &Rule) -> Result<Refreshed> {
    let w = compile(rule, 1);
    let sql = format!(
        "WITH s AS (SELECT id FROM segment WHERE id = $1 FOR NO KEY UPDATE), \
         matched AS MATERIALIZED (SELECT p.id FROM s CROSS JOIN person p WHERE {}), \
         diff AS MATERIALIZED ( \
           SELECT m.id AS joiner, sm.person_id AS leaver \
           FROM matched m \
           FULL JOIN (SELECT person_id FROM segment_member WHERE segment_id = $1) sm \
             ON sm.person_id = m.id \
           WHERE m.id IS NULL OR sm.person_id IS NULL), \
         joined AS ( \
           INSERT INTO segment_member (segment_id, person_id) \
           SELECT $1, d.joiner FROM diff d WHERE d.joiner IS NOT NULL \
           ON CONFLICT (segment_id, person_id) DO NOTHING RETURNING 1), \
         gone AS ( \
           DELETE FROM segment_member sm USING diff d \
           WHERE sm.segment_id = $1 AND sm.person_id = d.leaver RETURNING 1) \
         UPDATE segment SET member_count = (SELECT count(*) FROM matched), refreshed_at = now() \
         WHERE id = $1 \
         RETURNING (SELECT count(*) FROM joined), (SELECT count(*) FROM gone), member_count",
        w.sql
    );
    let row = db
        .query_opt(&sql, &w.params_after(&[&id as &(dyn ToSql + Sync)]))
        .await?
        .ok_or_else(|| Error::not_found("segment", id))?;
    let r = Refreshed {
        joined: row.get(0),
        left: row.get(1),
        member_count: row.get(2),
    };
    tracing::info!(segment_id = %id, joined = r.joined, left = r.left,
        member_count = r.member_count, "segment refreshed");
    Ok(r)
}

/// What a rule selects, without saving anything.
#[derive(Debug, Clone, Serialize)]
pub struct Preview {
    pub count: i64,
    /// Up to 10 person ids, in id order.
    pub sample: Vec<Uuid>,
}

pub const PREVIEW_SAMPLE: i64 = 10;

pub async fn preview(db: &impl GenericClient, rule: &Rule) -> Result<Preview> {
    let w = compile(rule, 1);
    let sql = format!(
        "WITH m AS MATERIALIZED (SELECT p.id FROM person p WHERE {}) \
         SELECT (SELECT count(*) FROM m), ARRAY(SELECT id FROM m ORDER BY id LIMIT $1)",
        w.sql
    );
    let row = db
        .query_one(
            &sql,
            &w.params_after(&[&PREVIEW_SAMPLE as &(dyn ToSql + Sync)]),
        )
        .await?;
    Ok(Preview {
        count: row.get(0),
        sample: row.get(1),
    })
}
