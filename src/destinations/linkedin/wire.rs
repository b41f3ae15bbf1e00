//! LinkedIn's JSON: DMP segments and the `BATCH_CREATE` of segment users (Rest.li protocol
//! 2.0.0, LinkedIn-Version pinned). Field names as DESTINATIONS.md §3.2 quotes them.

use serde::{Deserialize, Serialize};

/// Most elements in one `/users` request (integrators' figure; LinkedIn publishes none).
pub const MAX_ELEMENTS: usize = 5_000;

/// `idType` of the one identifier sent (DESIGN §8.1).
pub const SHA256_EMAIL: &str = "SHA256_EMAIL";

/// `POST /dmpSegments`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NewSegment<'a> {
    pub name: &'a str,
    pub source_platform: &'a str,
    pub source_segment_id: &'a str,
    /// `urn:li:sponsoredAccount:{id}`.
    pub account: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub destinations: [SegmentDestination; 1],
}

#[derive(Debug, Serialize)]
pub struct SegmentDestination {
    pub destination: &'static str,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Action {
    Add,
    Remove,
}

/// `POST /dmpSegments/{id}/users` (`X-RestLi-Method: BATCH_CREATE`).
#[derive(Debug, Serialize)]
pub struct UsersBody<'a> {
    pub elements: Vec<UserElement<'a>>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UserElement<'a> {
    pub action: Action,
    pub user_ids: [UserId<'a>; 1],
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UserId<'a> {
    pub id_type: &'static str,
    pub id_value: &'a str,
}

/// The answer of a batch: one status per element, in order (HTTP 200 even when some fail).
#[derive(Debug, Deserialize)]
pub struct BatchAnswer {
    pub elements: Vec<ElementStatus>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ElementStatus {
    pub status: u16,
    #[serde(default)]
    pub error: Option<ElementError>,
}

impl ElementStatus {
    pub fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct ElementError {
    #[serde(default)]
    pub message: String,
}

/// A DMP segment as read back. Where LinkedIn puts the counts (segment or destination level)
/// is unconfirmed (DESTINATIONS.md §7): both are read.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Segment {
    pub name: String,
    pub destinations: Vec<DestinationStatus>,
    pub matched_count: Option<i64>,
    pub input_count: Option<i64>,
    pub audience_size: Option<i64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct DestinationStatus {
    pub destination: String,
    pub status: String,
    pub matched_count: Option<i64>,
    pub audience_size: Option<i64>,
}

impl Segment {
    /// The LinkedIn destination's status (`BUILDING`, `UPDATING`, `READY`, `ARCHIVED`,
    /// `EXPIRED`, `FAILED`, `ERROR`).
    pub fn status(&self) -> Option<&str> {
        self.destinations
            .iter()
            .find(|d| d.destination == "LINKEDIN")
            .map(|d| d.status.as_str())
    }

    pub fn matched_count(&self) -> Option<i64> {
        self.matched_count
            .or_else(|| self.destinations.iter().find_map(|d| d.matched_count))
    }

    pub fn audience_size(&self) -> Option<i64> {
        self.audience_size
            .or_else(|| self.destinations.iter().find_map(|d| d.audience_size))
    }
}

/// `GET /dmpSegments?q=account…` (a finder: one page is enough, the filter names one segment).
#[derive(Debug, Deserialize)]
pub struct SegmentList {
    #[serde(default)]
    pub elements: Vec<ListedSegment>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListedSegment {
    pub id: serde_json::Value,
    #[serde(default)]
    pub source_segment_id: Option<String>,
}

/// LinkedIn's error body.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ErrorBody {
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn users_body_is_the_documented_shape() {
        let h = "509e933019bb285a134a9334b8bb679dff79d0ce023d529af4bd744d47b4fd8a";
        let body = UsersBody {
            elements: vec![UserElement {
                action: Action::Remove,
                user_ids: [UserId {
                    id_type: SHA256_EMAIL,
                    id_value: h,
                }],
            }],
        };
        assert_eq!(
            serde_json::to_value(&body).unwrap(),
            json!({"elements": [{"action": "REMOVE",
                "userIds": [{"idType": "SHA256_EMAIL", "idValue": h}]}]})
        );
    }

    #[test]
    fn counts_are_read_at_either_level() {
        let s: Segment = serde_json::from_value(json!({"id": 1, "destinations": [
            {"destination": "LINKEDIN", "status": "READY", "audienceSize": 900}],
            "matchedCount": 800}))
        .unwrap();
        assert_eq!(s.status(), Some("READY"));
        assert_eq!(
            (s.matched_count(), s.audience_size()),
            (Some(800), Some(900))
        );
    }
}
