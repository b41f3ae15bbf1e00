//! TikTok's JSON (API for Business v1.3): the envelope every answer comes in, the audience
//! segment API (`segment/audience`, `segment/mapping`) and the DMP reads, delete and lookalike.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Most users in one `segment/mapping` request. TikTok publishes no figure (Tealium batches
/// 1,000): [UNCONFIRMED].
pub const MAX_USERS: usize = 1_000;

/// Every answer: `{"code", "message", "request_id", "data"}`; `code` 0 is success.
#[derive(Debug, Deserialize)]
pub struct Envelope {
    pub code: i64,
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub request_id: String,
    #[serde(default)]
    pub data: Value,
}

/// `POST segment/audience/` with `action: "create"`.
#[derive(Debug, Serialize)]
pub struct CreateAudience<'a> {
    pub custom_audience_name: &'a str,
    pub advertiser_id: &'a str,
    pub action: &'static str,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MappingAction {
    Add,
    Delete,
}

/// `POST segment/mapping/`: each user one array aligned with `id_schema`, `{}` where the user
/// has no such identifier.
#[derive(Debug, Serialize)]
pub struct Mapping<'a> {
    pub advertiser_ids: [&'a str; 1],
    pub action: MappingAction,
    pub id_schema: [&'static str; 2],
    pub batch_data: Vec<[Value; 2]>,
}

/// `POST dmp/custom_audience/delete/`.
#[derive(Debug, Serialize)]
pub struct DeleteAudiences<'a> {
    pub advertiser_id: &'a str,
    pub custom_audience_ids: [&'a str; 1],
}

/// `POST dmp/custom_audience/lookalike/create/`.
#[derive(Debug, Serialize)]
pub struct CreateLookalike<'a> {
    pub advertiser_id: &'a str,
    pub custom_audience_name: &'a str,
    pub lookalike_spec: LookalikeSpec<'a>,
}

#[derive(Debug, Serialize)]
pub struct LookalikeSpec<'a> {
    pub source_audience_id: &'a str,
    pub audience_size: &'static str,
    pub include_source: bool,
    pub location_ids: [&'a str; 1],
    pub mobile_os: &'static str,
    pub placements: [&'static str; 1],
}

/// `audience_size` from `lookalike_percentage` (DESIGN §8.1): 1–3 NARROW, 4–6 BALANCED,
/// 7–10 BROAD.
pub fn lookalike_size(percentage: i32) -> Option<&'static str> {
    match percentage {
        1..=3 => Some("NARROW"),
        4..=6 => Some("BALANCED"),
        7..=10 => Some("BROAD"),
        _ => None,
    }
}

/// `data.list[].audience_details` of `dmp/custom_audience/get/`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct AudienceDetails {
    pub audience_id: Value,
    pub name: String,
    pub cover_num: Option<i64>,
    pub is_valid: Option<bool>,
    pub is_expiring: Option<bool>,
    pub audience_type: Option<String>,
}

impl AudienceDetails {
    pub fn id(&self) -> Option<String> {
        id_text(&self.audience_id)
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct AudienceList {
    pub list: Vec<Listed>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Listed {
    pub audience_details: AudienceDetails,
}

/// An id TikTok gives as a string or a number.
pub fn id_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn mapping_rows_line_up_with_the_schema() {
        let m = Mapping {
            advertiser_ids: ["7000"],
            action: MappingAction::Add,
            id_schema: ["EMAIL_SHA256", "PHONE_SHA256"],
            batch_data: vec![[json!({"id": "e", "audience_ids": ["1"]}), json!({})]],
        };
        assert_eq!(
            serde_json::to_value(&m).unwrap(),
            json!({"advertiser_ids": ["7000"], "action": "add",
                "id_schema": ["EMAIL_SHA256", "PHONE_SHA256"],
                "batch_data": [[{"id": "e", "audience_ids": ["1"]}, {}]]})
        );
    }

    #[test]
    fn lookalike_sizes() {
        let sizes: Vec<_> = (0..=11).map(lookalike_size).collect();
        assert_eq!(sizes[0], None);
        assert_eq!(sizes[1..=3], [Some("NARROW"); 3]);
        assert_eq!(sizes[4..=6], [Some("BALANCED"); 3]);
        assert_eq!(sizes[7..=10], [Some("BROAD"); 4]);
        assert_eq!(sizes[11], None);
    }
}
