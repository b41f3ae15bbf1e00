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
use tokio_postgres::{GenericClient, Row};
use uuid::Uuid;

use crate::error::{Error, Result};
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

const COLUMNS: &str = "id, external_id, email, phone, first_name, last_name, city, state, zip, \
    country, date_of_birth, gender, attributes, marketing_opt_out, created_at, updated_at";

impl Person {
    fn from_row(r: &Row) -> Self {
        Person {
            id: r.get("id"),
            external_id: r.get("external_id"),
            email: r.get("email"),
            phone: r.get("phone"),
            first_name: r.get("first_name"),
            last_name: r.get("last_name"),
            city: r.get("city"),
            state: r.get("state"),
            zip: r.get("zip"),
            country: r.get("country"),
            date_of_birth: r.get("date_of_birth"),
            gender: r.get("gender"),
            attributes: r.get("attributes"),
            marketing_opt_out: r.get("marketing_opt_out"),
            created_at: r.get("created_at"),
            updated_at: r.get("updated_at"),
        }
    }
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

/// The columns of the rows to write, one vector per column (for `UNNEST`).
#[derive(Default)]
struct Columns {
    external_id: Vec<String>,
    email: Vec<Option<String>>,
    phone: Vec<Option<String>>,
    first_name: Vec<Option<String>>,
    last_name: Vec<Option<String>>,
    city: Vec<Option<String>>,
    state: Vec<Option<String>>,
    zip: Vec<Option<String>>,
    country: Vec<Option<String>>,
    date_of_birth: Vec<Option<NaiveDate>>,
    gender: Vec<Option<String>>,
    attributes: Vec<Value>,
    marketing_opt_out: Vec<bool>,
}

/// A checked row, as it will be stored.
struct Valid {
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

impl Columns {
    fn push(&mut self, v: Valid) {
        let i = v.input;
        self.external_id.push(v.external_id);
        self.email.push(v.email);
        self.phone.push(i.phone);
        self.first_name.push(i.first_name);
        self.last_name.push(i.last_name);
        self.city.push(i.city);
        self.state.push(i.state);
        self.zip.push(i.zip);
        self.country.push(v.country);
        self.date_of_birth.push(v.date_of_birth);
        self.gender.push(i.gender);
        self.attributes.push(v.attributes);
        self.marketing_opt_out
            .push(i.marketing_opt_out.unwrap_or(false));
    }
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
        let input: PersonInput = match crate::http::request::from_value("", row) {
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
    let mut cols = Columns::default();
    valid.into_iter().for_each(|v| cols.push(v));
    let upserted = if cols.external_id.is_empty() {
        0
    } else {
        db.execute(
            "INSERT INTO person (external_id, email, phone, first_name, last_name, city, state, \
                                 zip, country, date_of_birth, gender, attributes, marketing_opt_out) \
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], \
                                  $6::text[], $7::text[], $8::text[], $9::text[], $10::date[], \
                                  $11::text[], $12::jsonb[], $13::boolean[]) \
             ON CONFLICT (external_id) DO UPDATE SET \
               email = COALESCE(EXCLUDED.email, person.email), \
               phone = COALESCE(EXCLUDED.phone, person.phone), \
               first_name = COALESCE(EXCLUDED.first_name, person.first_name), \
               last_name = COALESCE(EXCLUDED.last_name, person.last_name), \
               city = COALESCE(EXCLUDED.city, person.city), \
               state = COALESCE(EXCLUDED.state, person.state), \
               zip = COALESCE(EXCLUDED.zip, person.zip), \
               country = COALESCE(EXCLUDED.country, person.country), \
               date_of_birth = COALESCE(EXCLUDED.date_of_birth, person.date_of_birth), \
               gender = COALESCE(EXCLUDED.gender, person.gender), \
               attributes = person.attributes || EXCLUDED.attributes, \
               marketing_opt_out = person.marketing_opt_out OR EXCLUDED.marketing_opt_out, \
               updated_at = now()",
            &[
                &cols.external_id,
                &cols.email,
                &cols.phone,
                &cols.first_name,
                &cols.last_name,
                &cols.city,
                &cols.state,
                &cols.zip,
                &cols.country,
                &cols.date_of_birth,
                &cols.gender,
                &cols.attributes,
                &cols.marketing_opt_out,
            ],
        )
        .await?
    };
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
    let sql = format!(
        "UPDATE person SET marketing_opt_out = $2, updated_at = now() WHERE id = $1 \
         RETURNING {COLUMNS}"
    );
    db.query_opt(&sql, &[&id, &patch.marketing_opt_out])
        .await?
        .map(|r| Person::from_row(&r))
        .ok_or_else(|| Error::not_found("person", id))
}

/// Erases a person: the row goes, and with it every segment membership (the segments' counts
/// follow). Audience members keep only the hashes Meta was sent, without a person, so the next
/// sync removes exactly those from Meta.
pub async fn erase(db: &impl GenericClient, id: Uuid) -> Result<()> {
    let row = db
        .query_one(
            "WITH counts AS ( \
               UPDATE segment s SET member_count = GREATEST(s.member_count - 1, 0) \
               FROM segment_member sm WHERE sm.segment_id = s.id AND sm.person_id = $1), \
             gone AS (DELETE FROM person WHERE id = $1 RETURNING 1) \
             SELECT count(*) FROM gone",
            &[&id],
        )
        .await?;
    if row.get::<_, i64>(0) == 0 {
        return Err(Error::not_found("person", id));
    }
    Ok(())
}
