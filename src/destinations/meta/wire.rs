//! What travels to and from the Graph API: member payloads and upload sessions, Meta's answers
//! (read leniently: ids and counts come as strings or numbers), website-audience rules, and the
//! checks a payload passes before it is sent.

use std::fmt;

use serde::de;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{json, Value};

use super::error::MetaError;

/// Meta's maximum number of rows in one `/users` or `/usersreplace` request.
pub const MAX_ROWS: usize = 10_000;

/// The schema key of a value-based list's value: a number, not hashed, last in each row here.
pub const LOOKALIKE_VALUE: &str = "LOOKALIKE_VALUE";

/// A member payload: rows of values in schema order, `""` for unknown values. A value-based
/// list's rows also carry `values` (one each, the schema's last key being
/// [`LOOKALIKE_VALUE`]): sent as JSON numbers after the row's strings.
#[derive(Clone, Copy)]
pub struct UsersPayload<'a> {
    pub schema: &'a [&'a str],
    pub data: &'a [Vec<String>],
    pub values: Option<&'a [f64]>,
}

impl Serialize for UsersPayload<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{SerializeSeq, SerializeStruct};
        /// One row: its strings, then its value if any.
        struct ValuedRow<'a>(&'a [String], Option<f64>);
        impl Serialize for ValuedRow<'_> {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let mut row =
                    s.serialize_seq(Some(self.0.len() + usize::from(self.1.is_some())))?;
                for cell in self.0 {
                    row.serialize_element(cell)?;
                }
                if let Some(v) = self.1 {
                    row.serialize_element(&v)?;
                }
                row.end()
            }
        }
        struct Rows<'a>(&'a UsersPayload<'a>);
        impl Serialize for Rows<'_> {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let p = self.0;
                let value = |i: usize| p.values.and_then(|v| v.get(i).copied());
                s.collect_seq(
                    p.data
                        .iter()
                        .enumerate()
                        .map(|(i, r)| ValuedRow(r, value(i))),
                )
            }
        }
        let mut m = s.serialize_struct("UsersPayload", 2)?;
        m.serialize_field("schema", self.schema)?;
        m.serialize_field("data", &Rows(self))?;
        m.end()
    }
}

impl fmt::Debug for UsersPayload<'_> {
    // Never prints the data, only its shape.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UsersPayload")
            .field("schema", &self.schema)
            .field("rows", &self.data.len())
            .finish()
    }
}

/// An upload session (optional on `/users`, required on `/usersreplace`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// Positive int64, unique in the ad account.
    pub session_id: u64,
    /// 1, 2, 3, …; 1 starts a replace.
    pub batch_seq: u32,
    /// True on the last batch.
    pub last_batch_flag: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub estimated_num_total: Option<u64>,
}

/// Meta's answer to `/users` and `/usersreplace`.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq)]
pub struct UsersResponse {
    #[serde(default, deserialize_with = "de_string_or_number")]
    pub audience_id: String,
    #[serde(default, deserialize_with = "de_string_or_number")]
    pub session_id: String,
    #[serde(default, deserialize_with = "de_u64_lenient")]
    pub num_received: u64,
    #[serde(default, deserialize_with = "de_u64_lenient")]
    pub num_invalid_entries: u64,
    /// As Meta sends it (a map or a list).
    #[serde(default)]
    pub invalid_entry_samples: Value,
}

/// `operation_status` / `delivery_status` of an audience.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AudienceStatus {
    #[serde(default, deserialize_with = "de_opt_i64_lenient")]
    pub code: Option<i64>,
    #[serde(default)]
    pub description: Option<String>,
}

/// What [`MetaClient::get_audience`](super::MetaClient::get_audience) reads.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AudienceInfo {
    #[serde(default, deserialize_with = "de_opt_string_or_number")]
    pub id: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "de_opt_i64_lenient")]
    pub approximate_count_lower_bound: Option<i64>,
    #[serde(default, deserialize_with = "de_opt_i64_lenient")]
    pub approximate_count_upper_bound: Option<i64>,
    #[serde(default)]
    pub operation_status: Option<AudienceStatus>,
    #[serde(default)]
    pub delivery_status: Option<AudienceStatus>,
    #[serde(default)]
    pub time_content_updated: Option<Value>,
}

impl AudienceInfo {
    /// Operation status 471: flagged for integrity, no edits allowed.
    pub fn is_flagged(&self) -> bool {
        self.operation_code() == Some(471)
    }

    /// Operation status 414: a replace is running.
    pub fn replace_in_progress(&self) -> bool {
        self.operation_code() == Some(414)
    }

    pub fn operation_code(&self) -> Option<i64> {
        self.operation_status.as_ref().and_then(|s| s.code)
    }

    /// `Err(MetaError::Flagged)` when the audience is flagged (kind `AudienceFlagged`).
    pub fn ensure_not_flagged(&self, audience_id: &str) -> Result<(), MetaError> {
        if self.is_flagged() {
            Err(MetaError::Flagged {
                audience_id: audience_id.to_string(),
                description: self
                    .operation_status
                    .as_ref()
                    .and_then(|s| s.description.clone()),
            })
        } else {
            Ok(())
        }
    }
}

/// Rule of a website (pixel) audience: people who fired `event` on `pixel_id` within
/// `retention_days`.
pub fn pixel_rule(pixel_id: &str, event: &str, retention_days: u32) -> Value {
    json!({
        "inclusions": {
            "operator": "or",
            "rules": [{
                "event_sources": [{"id": pixel_id, "type": "pixel"}],
                "retention_seconds": u64::from(retention_days) * 86_400,
                "filter": {
                    "operator": "and",
                    "filters": [{"field": "event", "operator": "eq", "value": event}]
                }
            }]
        }
    })
}

#[derive(Serialize)]
pub(super) struct UsersBody<'a> {
    pub(super) payload: UsersPayload<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) session: Option<&'a Session>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) appsecret_proof: Option<&'a str>,
}

#[derive(Deserialize)]
pub(super) struct IdAnswer {
    #[serde(deserialize_with = "de_string_or_number")]
    pub(super) id: String,
}

#[derive(Deserialize)]
pub(super) struct SuccessAnswer {
    #[serde(default)]
    pub(super) success: bool,
}

pub(super) fn validate_payload(payload: &UsersPayload<'_>) -> Result<(), MetaError> {
    if payload.schema.is_empty() {
        return Err(MetaError::InvalidRequest(
            "the payload schema is empty".to_string(),
        ));
    }
    if payload.data.is_empty() {
        return Err(MetaError::InvalidRequest(
            "the payload has no rows".to_string(),
        ));
    }
    if payload.data.len() > MAX_ROWS {
        return Err(MetaError::InvalidRequest(format!(
            "{} rows in one request; Meta accepts at most {MAX_ROWS}",
            payload.data.len()
        )));
    }
    let valued = usize::from(payload.values.is_some());
    if let Some(i) = payload
        .data
        .iter()
        .position(|row| row.len() + valued != payload.schema.len())
    {
        return Err(MetaError::InvalidRequest(format!(
            "row {i} has {} values but the schema has {} keys",
            payload.data[i].len() + valued,
            payload.schema.len()
        )));
    }
    validate_values(payload)
}

/// A value-based payload: one value a row, each a number of at least 0 (Meta's rule), under
/// [`LOOKALIKE_VALUE`] as the schema's last key; no such key without values.
fn validate_values(payload: &UsersPayload<'_>) -> Result<(), MetaError> {
    let last_is_value = payload.schema.last() == Some(&LOOKALIKE_VALUE);
    let bad = |m: &str| Err(MetaError::InvalidRequest(m.to_string()));
    match payload.values {
        None if payload.schema.contains(&LOOKALIKE_VALUE) => {
            bad("LOOKALIKE_VALUE is in the schema but the rows carry no values")
        }
        None => Ok(()),
        Some(_) if !last_is_value => {
            bad("rows with values need LOOKALIKE_VALUE last in the schema")
        }
        Some(v) if v.len() != payload.data.len() => bad("one value is needed for each row"),
        Some(v) if v.iter().any(|x| !x.is_finite() || *x < 0.0) => {
            bad("LOOKALIKE_VALUE must be a number of at least 0")
        }
        Some(_) => Ok(()),
    }
}

fn de_string_or_number<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(de_opt_string_or_number(d)?.unwrap_or_default())
}

fn de_opt_string_or_number<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    match Option::<Value>::deserialize(d)? {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(_) => Err(de::Error::custom("expected a string or a number")),
    }
}

fn de_opt_i64_lenient<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    match Option::<Value>::deserialize(d)? {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => Ok(n.as_i64().or_else(|| n.as_f64().map(|f| f as i64))),
        Some(Value::String(s)) => s
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| de::Error::custom("expected an integer")),
        Some(_) => Err(de::Error::custom("expected an integer")),
    }
}

fn de_u64_lenient<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    Ok(de_opt_i64_lenient(d)?.unwrap_or(0).max(0) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pixel_rule_shape() {
        let r = pixel_rule("1234", "Purchase", 30);
        let rule = &r["inclusions"]["rules"][0];
        assert_eq!(r["inclusions"]["operator"], "or");
        assert_eq!(rule["event_sources"][0]["id"], "1234");
        assert_eq!(rule["event_sources"][0]["type"], "pixel");
        assert_eq!(rule["retention_seconds"], 2_592_000);
        assert_eq!(rule["filter"]["filters"][0]["value"], "Purchase");
        assert_eq!(rule["filter"]["filters"][0]["field"], "event");
    }

    #[test]
    fn users_response_is_lenient() {
        let r: UsersResponse = serde_json::from_str(
            r#"{"audience_id": 123, "session_id": "456", "num_received": "10", "num_invalid_entries": 1, "invalid_entry_samples": {"x": "y"}}"#,
        )
        .unwrap();
        assert_eq!(r.audience_id, "123");
        assert_eq!(r.session_id, "456");
        assert_eq!(r.num_received, 10);
        assert_eq!(r.num_invalid_entries, 1);
        assert!(r.invalid_entry_samples.is_object());
        let payload = UsersPayload {
            schema: &["EMAIL"],
            data: &[vec!["secretvalue".to_string()]],
            values: None,
        };
        assert!(!format!("{payload:?}").contains("secretvalue"));
    }

    #[test]
    fn a_value_based_payload_sends_each_value_as_a_number_after_the_hashes() {
        let data = [vec!["a".to_string()], vec!["b".to_string()]];
        let payload = UsersPayload {
            schema: &["EMAIL", LOOKALIKE_VALUE],
            data: &data,
            values: Some(&[44.5, 0.0]),
        };
        assert!(validate_payload(&payload).is_ok());
        assert_eq!(
            serde_json::to_value(payload).unwrap(),
            json!({"schema": ["EMAIL", "LOOKALIKE_VALUE"], "data": [["a", 44.5], ["b", 0.0]]})
        );
        for (schema, values) in [
            (&["EMAIL", LOOKALIKE_VALUE][..], Some(&[1.0, -1.0][..])),
            (&["EMAIL", LOOKALIKE_VALUE][..], Some(&[1.0, f64::NAN][..])),
            (&["EMAIL", LOOKALIKE_VALUE][..], Some(&[1.0][..])),
            (&["EMAIL", LOOKALIKE_VALUE][..], None),
            (&[LOOKALIKE_VALUE, "EMAIL"][..], Some(&[1.0, 2.0][..])),
        ] {
            let p = UsersPayload {
                schema,
                data: &data,
                values,
            };
            assert!(validate_payload(&p).is_err(), "{schema:?} {values:?}");
        }
    }
}
