//! All SQL of `person`: the bulk upsert (one statement over column arrays), consent, erasure.

use chrono::NaiveDate;
use serde_json::Value;
use tokio_postgres::{GenericClient, Row};
use uuid::Uuid;

use super::{Person, Valid};
use crate::error::Result;

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

/// Writes checked rows in one statement (sorted by `external_id`, the one lock order of every
/// import). Returns the rows written.
pub(crate) async fn upsert(db: &impl GenericClient, valid: Vec<Valid>) -> Result<u64> {
    let mut cols = Columns::default();
    valid.into_iter().for_each(|v| cols.push(v));
    Ok(if cols.external_id.is_empty() {
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
    })
}

/// Sets the opt-out flag; `None` when there is no such person.
pub async fn set_opt_out(
    db: &impl GenericClient,
    id: Uuid,
    opt_out: bool,
) -> Result<Option<Person>> {
    let sql = format!(
        "UPDATE person SET marketing_opt_out = $2, updated_at = now() WHERE id = $1 \
         RETURNING {COLUMNS}"
    );
    Ok(db
        .query_opt(&sql, &[&id, &opt_out])
        .await?
        .map(|r| Person::from_row(&r)))
}

/// Deletes the person and lowers the counts of the rule segments it was in (a manual segment's
/// count moves by the deltas V12's triggers record for the memberships the deletion cascades
/// to, at its next refresh); `false` when there was no such person.
pub async fn delete(db: &impl GenericClient, id: Uuid) -> Result<bool> {
    let row = db
        .query_one(
            "WITH counts AS ( \
               UPDATE segment s SET member_count = GREATEST(s.member_count - 1, 0) \
               FROM segment_member sm \
               WHERE sm.segment_id = s.id AND sm.person_id = $1 AND s.rule IS NOT NULL), \
             gone AS (DELETE FROM person WHERE id = $1 RETURNING 1) \
             SELECT count(*) FROM gone",
            &[&id],
        )
        .await?;
    Ok(row.get::<_, i64>(0) > 0)
}
