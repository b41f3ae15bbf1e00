//! People: bulk upsert by `external_id`, consent, and erasure.
//!
//! The person table belongs to the wider app in a larger deployment; these are the ways the
//! service itself writes it. An upsert carries the fields it changes: a field absent (or `null`)
//! keeps what is stored, `attributes` are merged key by key (a trait sent as `null` is stored as
//! `null`, which rules treat as absent), and `marketing_opt_out: true` records an opt-out, which
//! no import undoes: opting back in is `PATCH /api/persons/{id}` only.

use std::collections::HashMap;

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio_postgres::GenericClient;
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::input;

pub mod store;
use crate::identity::{normalize_country, normalize_email, parse_date};

/// Rows of one `POST /api/persons`.
pub const MAX_PER_REQUEST: usize = 10_000;
/// Characters of any text field of a person.
pub const MAX_TEXT_CHARS: usize = 1000;

#[derive(Debug, Clone, Serialize)]
pub struct Person {
    pub id: Uuid,
    pub external_id: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub city: Option<String>,
    pub state: Option<String>,
    pub zip: Option<String>,
    pub country: Option<String>,
    pub date_of_birth: Option<NaiveDate>,
    pub gender: Option<String>,
    pub attributes: Value,
    pub marketing_opt_out: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// One row of `POST /api/persons`, as sent.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PersonInput {
    pub external_id: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub city: Option<String>,
    pub state: Option<String>,
    pub zip: Option<String>,
    pub country: Option<String>,
    pub date_of_birth: Option<String>,
    pub gender: Option<String>,
    pub attributes: Option<Value>,
    pub marketing_opt_out: Option<bool>,
}

/// Why a row of an import was not written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RowError {
    pub index: usize,
    pub field: Option<String>,
    pub message: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct UpsertResult {
    pub upserted: u64,
    pub errors: Vec<RowError>,
}

/// A checked row, as it will be stored.
pub(crate) struct Valid {
    external_id: String,
    email: Option<String>,
    country: Option<String>,
    date_of_birth: Option<NaiveDate>,
    attributes: Value,
    input: PersonInput,
}

/// Every rule a row breaks (not only the first).
fn validate(index: usize, input: PersonInput) -> std::result::Result<Valid, Vec<RowError>> {
    let mut errors = Vec::new();
    let mut fail = |field: &str, message: String| {
        errors.push(RowError {
            index,
            field: Some(field.to_string()),
            message,
        })
    };
    let external_id = input.external_id.as_deref().map(str::trim).unwrap_or("");
    if external_id.is_empty() {
        fail(
            "external_id",
            "external_id is required and must not be empty".into(),
        );
    }
    let texts = [
        ("external_id", &input.external_id),
        ("email", &input.email),
        ("phone", &input.phone),
        ("first_name", &input.first_name),
        ("last_name", &input.last_name),
        ("city", &input.city),
        ("state", &input.state),
        ("zip", &input.zip),
        ("country", &input.country),
        ("gender", &input.gender),
    ];
    for (field, v) in texts {
        if v.as_ref()
            .is_some_and(|s| s.chars().count() > MAX_TEXT_CHARS)
        {
            fail(
                field,
                format!("{field} must be at most {MAX_TEXT_CHARS} characters"),
            );
        }
    }
    let email = input.email.as_deref().map(str::trim);
    if let Some(e) = email {
        if normalize_email(e).is_none() {
            fail(
                "email",
                format!("email {e:?} does not look like an email address"),
            );
        }
    }
    let country = match input.country.as_deref().map(str::trim) {
        None => None,
        Some(c) if c.len() == 2 => match normalize_country(c) {
            Some(code) => Some(code.to_ascii_uppercase()),
            None => {
                fail(
                    "country",
                    format!("country {c:?} is not an ISO 3166-1 alpha-2 code"),
                );
                None
            }
        },
        Some(c) => {
            fail(
                "country",
                format!("country must be an ISO 3166-1 alpha-2 code such as US, not {c:?}"),
            );
            None
        }
    };
    let date_of_birth = match input.date_of_birth.as_deref().map(str::trim) {
        None => None,
        Some(d) => match parse_date(d) {
            Some(d) => Some(d),
            None => {
                fail(
                    "date_of_birth",
                    format!("date_of_birth must be a date YYYY-MM-DD, not {d:?}"),
                );
                None
            }
        },
    };
    let attributes = match &input.attributes {
        None => Value::Object(Default::default()),
        Some(v @ Value::Object(_)) => v.clone(),
        Some(_) => {
            fail(
                "attributes",
                "attributes must be a JSON object of traits, e.g. {\"total_renders\": 7}".into(),
            );
            Value::Null
        }
    };
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(Valid {
        external_id: external_id.to_string(),
        email: email.map(str::to_string),
        country,
        date_of_birth,
        attributes,
        input,
    })
}

/// Checks every row, then writes the good ones in one statement. A row that breaks a rule is
/// reported and nothing of it is written. Rows are `Value`s so that one malformed row cannot
/// reject the others.
pub async fn upsert(db: &impl GenericClient, rows: Vec<Value>) -> Result<UpsertResult> {
    if rows.len() > MAX_PER_REQUEST {
        return Err(Error::invalid(
            "persons",
            format!(
                "at most {MAX_PER_REQUEST} persons per request, not {}: split the import",
                rows.len()
            ),
        ));
    }
    let mut errors = Vec::new();
    let mut valid = Vec::with_capacity(rows.len());
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (index, row) in rows.into_iter().enumerate() {
        if !row.is_object() {
            errors.push(RowError {
                index,
                field: None,
                message: "each person must be a JSON object".into(),
            });
            continue;
        }
        let input: PersonInput = match input::from_value("", row) {
            Ok(i) => i,
            Err(Error::Invalid { field, message, .. }) => {
                errors.push(RowError {
                    index,
                    field,
                    message,
                });
                continue;
            }
            Err(e) => return Err(e),
        };
        match validate(index, input) {
            Err(mut e) => errors.append(&mut e),
            Ok(v) => match seen.get(&v.external_id) {
                Some(first) => errors.push(RowError {
                    index,
                    field: Some("external_id".into()),
                    message: format!(
                        "external_id {:?} is already at index {first} of this request",
                        v.external_id
                    ),
                }),
                None => {
                    seen.insert(v.external_id.clone(), index);
                    valid.push(v);
                }
            },
        }
    }
    // One lock order for every import, so two concurrent imports of the same people wait for
    // each other instead of deadlocking.
    valid.sort_unstable_by(|a, b| a.external_id.cmp(&b.external_id));
    let upserted = store::upsert(db, valid).await?;
    Ok(UpsertResult { upserted, errors })
}

/// `PATCH /api/persons/{id}`: consent only.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsentPatch {
    pub marketing_opt_out: bool,
}

/// Records consent. An opted-out person leaves every audience at its next sync.
pub async fn set_consent(db: &impl GenericClient, id: Uuid, patch: ConsentPatch) -> Result<Person> {
    store::set_opt_out(db, id, patch.marketing_opt_out)
        .await?
        .ok_or_else(|| Error::not_found("person", id))
}

/// Erases a person: the row goes, and with it every segment membership (the segments' counts
/// follow). Audience members keep only the hashes the platform was sent, without a person, so
/// the next sync removes exactly those from the platform.
pub async fn erase(db: &impl GenericClient, id: Uuid) -> Result<()> {
    if !store::delete(db, id).await? {
        return Err(Error::not_found("person", id));
    }
    Ok(())
}
