//! Turning input (request bodies, query strings, path segments, rows of an import) into typed
//! values, with errors that name the field at fault, and the text rules several resources share.
//! Used by the domain and by the HTTP layer alike; it knows nothing of HTTP.

use chrono::{DateTime, Datelike, Utc};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::Value;
use uuid::Uuid;

use crate::error::{Error, Result};

fn invalid(code: &'static str, field: Option<String>, message: String) -> Error {
    Error::Invalid {
        code,
        field,
        message,
    }
}

/// The body as a JSON object.
pub fn json_object(body: &[u8]) -> Result<serde_json::Map<String, Value>> {
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        invalid(
            "malformed_json",
            None,
            format!("the request body is not valid JSON: {e}"),
        )
    })?;
    match value {
        Value::Object(map) => Ok(map),
        _ => Err(invalid(
            "malformed_json",
            None,
            "the request body must be a JSON object".into(),
        )),
    }
}

/// Rejects fields the server sets itself, with a message that says so.
pub fn reject_read_only(obj: &serde_json::Map<String, Value>, read_only: &[&str]) -> Result<()> {
    match read_only.iter().find(|f| obj.contains_key(**f)) {
        Some(f) => Err(invalid(
            "read_only_field",
            Some((*f).to_string()),
            format!("{f} is read-only: the server sets it"),
        )),
        None => Ok(()),
    }
}

/// The body as `T`. The values of the top-level fields named in `rows` are checked for NUL
/// characters by the caller, row by row (an import reports a bad row and writes the others).
pub fn parse_body<T: DeserializeOwned>(
    body: &[u8],
    read_only: &[&str],
    rows: &[&str],
) -> Result<T> {
    let obj = json_object(body)?;
    reject_read_only(&obj, read_only)?;
    for (key, value) in obj.iter().filter(|(k, _)| !rows.contains(&k.as_str())) {
        reject_nul(key, value)?;
    }
    deserialize("", Value::Object(obj))
}

/// `value` as `T`; errors name the field, prefixed with `prefix` (the path to `value`).
pub fn from_value<T: DeserializeOwned>(prefix: &str, value: Value) -> Result<T> {
    reject_nul(prefix, &value)?;
    deserialize(prefix, value)
}

/// PostgreSQL stores no NUL character in text or JSON: a string (or key) holding one is the
/// caller's mistake, named by its path, rather than a database error.
fn reject_nul(path: &str, value: &Value) -> Result<()> {
    let bad = |p: &str| {
        let shown = if p.is_empty() { "body" } else { p };
        invalid(
            "invalid_field",
            (!p.is_empty()).then(|| p.to_string()),
            format!("{shown}: must not contain the NUL character (\\u0000)"),
        )
    };
    let child = |name: &str| match path.is_empty() {
        true => name.to_string(),
        false => format!("{path}.{name}"),
    };
    match value {
        Value::String(text) if text.contains('\0') => Err(bad(path)),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .try_for_each(|(i, item)| reject_nul(&format!("{path}[{i}]"), item)),
        Value::Object(map) => map.iter().try_for_each(|(key, item)| {
            if key.contains('\0') {
                return Err(bad(path));
            }
            reject_nul(&child(key), item)
        }),
        _ => Ok(()),
    }
}

fn deserialize<T: DeserializeOwned>(prefix: &str, value: Value) -> Result<T> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        let join = |name: &str| match (prefix.is_empty(), name.is_empty() || name == ".") {
            (_, true) => prefix.to_string(),
            (true, false) => name.to_string(),
            (false, false) => format!("{prefix}.{name}"),
        };
        if let Some(name) = backticked(&inner, "unknown field `") {
            let allowed = inner
                .split_once("expected ")
                .map(|(_, rest)| format!(": expected {rest}"))
                .unwrap_or_default();
            // serde_path_to_error's path already ends at the unknown key.
            let field = if path.is_empty() || path == "." {
                join(name)
            } else {
                join(&path)
            };
            return invalid(
                "unknown_field",
                Some(field.clone()),
                format!("{field} is not a known field{allowed}"),
            );
        }
        if let Some(name) = backticked(&inner, "missing field `") {
            let field = join(&join_path(&path, name));
            return invalid(
                "missing_field",
                Some(field.clone()),
                format!("{field} is required"),
            );
        }
        let field = join(&path);
        let shown = if field.is_empty() { "body" } else { &field };
        invalid(
            "invalid_field",
            (!field.is_empty()).then_some(field.clone()),
            format!("{shown}: {}", readable(&inner)),
        )
    })
}

fn join_path(path: &str, name: &str) -> String {
    if path.is_empty() || path == "." {
        name.to_string()
    } else {
        format!("{path}.{name}")
    }
}

fn backticked<'a>(msg: &'a str, start: &str) -> Option<&'a str> {
    let rest = msg.strip_prefix(start)?;
    rest.split('`').next()
}

/// serde's words for Rust types, in the words of a JSON API.
fn readable(msg: &str) -> String {
    msg.replace(
        "expected i32",
        "expected an integer from -2147483648 to 2147483647",
    )
    .replace("expected i64", "expected an integer")
    .replace("expected a boolean", "expected true or false")
    .replace("expected UUID", "expected a UUID")
}

pub fn uuid_param(field: &str, raw: &str) -> Result<Uuid> {
    Uuid::parse_str(raw).map_err(|_| {
        invalid(
            "invalid_field",
            Some(field.to_string()),
            format!("{field} must be a UUID, not {:?}", truncate(raw, 60)),
        )
    })
}

pub fn bool_param(field: &str, raw: &str) -> Result<bool> {
    match raw {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(invalid(
            "invalid_field",
            Some(field.to_string()),
            format!("{field} must be true or false"),
        )),
    }
}

pub fn int_param(field: &str, raw: &str, min: i64, max: i64) -> Result<i64> {
    match raw.parse::<i64>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(invalid(
            "invalid_field",
            Some(field.to_string()),
            format!("{field} must be an integer from {min} to {max}"),
        )),
    }
}

/// Items of a list page when the client names no `limit`.
pub const PAGE_DEFAULT: i64 = 100;
/// The largest `limit` of a list page.
pub const PAGE_MAX: i64 = 1000;

/// Where a page of a newest-first list starts: after the item with this key. Lists are ordered by
/// `(created_at, id)` descending, so a page stays right when rows are inserted meanwhile (new
/// rows sort before the cursor) and no row is read twice or skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub created_at: DateTime<Utc>,
    pub id: Uuid,
}

impl Cursor {
    /// Opaque to clients: hex of the key's 24 bytes (microseconds since the epoch, big-endian,
    /// then the UUID), so nobody builds one from a name or a date and we may change it.
    pub fn encode(&self) -> String {
        let mut bytes = self.created_at.timestamp_micros().to_be_bytes().to_vec();
        bytes.extend_from_slice(self.id.as_bytes());
        hex::encode(bytes)
    }

    pub fn decode(raw: &str) -> Result<Cursor> {
        let bad = || {
            Error::invalid(
                "cursor",
                "cursor must be a next_cursor value of an earlier page of this list, as given",
            )
        };
        let bytes = hex::decode(raw).map_err(|_| bad())?;
        let (micros, id) = bytes.split_at_checked(8).ok_or_else(bad)?;
        let micros = i64::from_be_bytes(micros.try_into().map_err(|_| bad())?);
        // Years PostgreSQL and chrono both hold: a timestamp outside PostgreSQL's range would
        // be a database error, not the client's.
        let created_at = DateTime::from_timestamp_micros(micros)
            .filter(|t| (1..=9999).contains(&t.year()))
            .ok_or_else(bad)?;
        Ok(Cursor {
            created_at,
            id: Uuid::from_slice(id).map_err(|_| bad())?,
        })
    }
}

/// Which page of a list a client asked for: `limit` (1 to [`PAGE_MAX`], default
/// [`PAGE_DEFAULT`]) items after `cursor`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRequest {
    /// `None`: every item (internal callers only).
    pub limit: Option<i64>,
    pub after: Option<Cursor>,
}

impl PageRequest {
    /// The whole list in one page.
    pub const ALL: PageRequest = PageRequest {
        limit: None,
        after: None,
    };

    /// From the raw `limit` and `cursor` query parameters.
    pub fn parse(limit: Option<&str>, cursor: Option<&str>) -> Result<PageRequest> {
        Ok(PageRequest {
            limit: Some(match limit {
                Some(raw) => int_param("limit", raw, 1, PAGE_MAX)?,
                None => PAGE_DEFAULT,
            }),
            after: cursor.map(Cursor::decode).transpose()?,
        })
    }

    /// The cursor's key as two bind parameters, both NULL on the first page.
    pub fn after_key(&self) -> (Option<DateTime<Utc>>, Option<Uuid>) {
        (self.after.map(|c| c.created_at), self.after.map(|c| c.id))
    }

    /// The SQL `LIMIT` that also tells whether another page follows (one row more than the
    /// page; NULL is no limit).
    pub fn fetch_limit(&self) -> Option<i64> {
        self.limit.map(|n| n + 1)
    }

    /// The page out of the rows fetched with [`Self::fetch_limit`]; `key` gives a row's cursor.
    pub fn page<T>(&self, mut rows: Vec<T>, key: impl Fn(&T) -> Cursor) -> Page<T> {
        let more = self.limit.is_some_and(|n| rows.len() as i64 > n);
        if more {
            rows.truncate(self.limit.unwrap_or_default() as usize);
        }
        let next = rows.last().filter(|_| more).map(key);
        Page { items: rows, next }
    }
}

/// Where a page of a list in id order starts (the holdout's people): after this id. Opaque to
/// clients like [`Cursor`]: hex of the id's 16 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdCursor(pub Uuid);

impl IdCursor {
    pub fn encode(&self) -> String {
        hex::encode(self.0.as_bytes())
    }

    pub fn decode(raw: &str) -> Result<IdCursor> {
        hex::decode(raw)
            .ok()
            .and_then(|b| Uuid::from_slice(&b).ok())
            .map(IdCursor)
            .ok_or_else(|| {
                Error::invalid(
                    "cursor",
                    "cursor must be a next_cursor value of an earlier page of this list, as given",
                )
            })
    }
}

/// One page of a list, and where the next one starts (`None`: this was the last).
#[derive(Debug, Clone)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next: Option<Cursor>,
}

fn truncate(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

/// Query string pairs, decoded.
pub fn query_pairs(query: Option<&str>) -> Vec<(String, String)> {
    form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .into_owned()
        .collect()
}

/// Tells a field sent as `null` (`Some(None)`) from a field not sent (`None`, via `default`):
/// `#[serde(default, deserialize_with = "present")]` on an `Option<Option<T>>`.
pub fn present<'de, D, T>(d: D) -> std::result::Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// A field a partial update may leave out but not clear.
pub fn required<T>(field: &str, v: Option<T>) -> Result<T> {
    v.ok_or_else(|| Error::invalid(field, format!("{field} cannot be null")))
}

/// Characters of a resource's name (audiences, segments).
pub const NAME_MAX_CHARS: usize = 200;
/// Characters of a resource's description.
pub const DESCRIPTION_MAX_CHARS: usize = 2000;

/// A name, trimmed: present, not empty, at most [`NAME_MAX_CHARS`].
pub fn name(name: Option<&str>) -> Result<String> {
    let name = name
        .ok_or_else(|| Error::invalid("name", "name is required"))?
        .trim();
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

/// A description of at most [`DESCRIPTION_MAX_CHARS`].
pub fn description(d: Option<&str>) -> Result<()> {
    match d {
        Some(d) if d.chars().count() > DESCRIPTION_MAX_CHARS => Err(Error::invalid(
            "description",
            format!("description must be at most {DESCRIPTION_MAX_CHARS} characters"),
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_round_trips_and_anything_else_is_refused() {
        let c = Cursor {
            created_at: DateTime::from_timestamp_micros(1_795_000_000_123_456).unwrap(),
            id: Uuid::new_v4(),
        };
        assert_eq!(Cursor::decode(&c.encode()).unwrap(), c);
        let mut altered = c.encode();
        altered.pop();
        for bad in [altered.as_str(), "", "xyz", &c.encode()[..46]] {
            let Err(Error::Invalid { field, .. }) = Cursor::decode(bad) else {
                panic!("{bad:?} was taken for a cursor");
            };
            assert_eq!(field.as_deref(), Some("cursor"));
        }
    }

    #[test]
    fn a_page_has_a_next_cursor_only_when_a_row_more_was_fetched() {
        let key = |n: &i64| Cursor {
            created_at: DateTime::from_timestamp_micros(*n).unwrap(),
            id: Uuid::nil(),
        };
        let req = PageRequest::parse(Some("3"), None).unwrap();
        assert_eq!(req.fetch_limit(), Some(4));
        let full = req.page(vec![9, 8, 7, 6], key);
        assert_eq!((full.items, full.next), (vec![9, 8, 7], Some(key(&7))));
        let last = req.page(vec![5, 4, 3], key);
        assert_eq!((last.items, last.next), (vec![5, 4, 3], None));
        let all = PageRequest::ALL.page(vec![1; 5000], key);
        assert_eq!((all.items.len(), all.next), (5000, None));
        assert_eq!(PageRequest::ALL.fetch_limit(), None);
        assert_eq!(
            PageRequest::parse(None, None).unwrap().limit,
            Some(PAGE_DEFAULT)
        );
    }
}
