//! The Data Manager API's JSON (DESTINATIONS.md §2.3): lowerCamelCase proto names, int64 values
//! as strings (proto3 JSON), enums as their names. Only what audience-sync sends and reads.

use serde::{Deserialize, Serialize};

/// Google's account type of a Customer Match operating or login account.
pub const GOOGLE_ADS: &str = "GOOGLE_ADS";

/// 540 days, the longest membership Customer Match keeps (`membershipDuration`, whole days).
pub const MEMBERSHIP_DURATION: &str = "46656000s";

/// Google's limits per ingest or remove request (DESTINATIONS.md §2.5).
pub const MAX_MEMBERS: usize = 10_000;
pub const MAX_IDENTIFIERS: usize = 10;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ProductAccount {
    pub account_type: String,
    pub account_id: String,
}

impl ProductAccount {
    pub fn google_ads(id: &str) -> Self {
        ProductAccount {
            account_type: GOOGLE_ADS.to_string(),
            account_id: id.to_string(),
        }
    }
}

/// One `destinations[]` entry: the user list inside its operating account, and the manager
/// account the call is made through (ingestion ignores headers: the account path goes here).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WireDestination {
    pub operating_account: ProductAccount,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub login_account: Option<ProductAccount>,
    pub product_destination_id: String,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Consent {
    pub ad_user_data: &'static str,
    pub ad_personalization: &'static str,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TermsOfService {
    pub customer_match_terms_of_service_status: &'static str,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct AddressInfo {
    pub given_name: String,
    pub family_name: String,
    pub region_code: String,
    pub postal_code: String,
}

/// Exactly one key per identifier (`emailAddress | phoneNumber | address`).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum UserIdentifier {
    EmailAddress(String),
    PhoneNumber(String),
    Address(AddressInfo),
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UserData {
    pub user_identifiers: Vec<UserIdentifier>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AudienceMember {
    pub user_data: UserData,
}

/// `POST /audienceMembers:ingest`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct IngestRequest<'a> {
    pub destinations: &'a [WireDestination],
    pub audience_members: &'a [AudienceMember],
    pub consent: Consent,
    pub terms_of_service: TermsOfService,
    pub encoding: &'static str,
}

/// `POST /audienceMembers:remove`: the message has no consent and no terms of service (Google
/// refuses unknown fields), so they are not part of this type.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RemoveRequest<'a> {
    pub destinations: &'a [WireDestination],
    pub audience_members: &'a [AudienceMember],
    pub encoding: &'static str,
}

/// What ingest and remove answer: the id `requestStatus:retrieve` takes.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestAnswer {
    #[serde(default)]
    pub request_id: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NewUserList<'a> {
    pub display_name: &'a str,
    pub description: &'a str,
    pub membership_duration: &'static str,
    pub ingested_user_list_info: NewIngestedInfo,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NewIngestedInfo {
    pub upload_key_types: [&'static str; 1],
    pub contact_id_info: NewContactIdInfo,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NewContactIdInfo {
    pub data_source_type: &'static str,
}

/// A user list as Google answers it (the fields read; int64 counts arrive as strings).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserList {
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub display_name: String,
    #[serde(default)]
    pub membership_status: Option<String>,
    #[serde(default)]
    pub closing_reason: Option<String>,
    #[serde(default)]
    pub size_info: SizeInfo,
    #[serde(default)]
    pub target_network_info: TargetNetworkInfo,
    #[serde(default)]
    pub ingested_user_list_info: IngestedInfo,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SizeInfo {
    #[serde(default, with = "int64")]
    pub display_network_members_count: Option<i64>,
    #[serde(default, with = "int64")]
    pub search_network_members_count: Option<i64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TargetNetworkInfo {
    #[serde(default)]
    pub eligible_for_display: Option<bool>,
    #[serde(default)]
    pub eligible_for_search: Option<bool>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IngestedInfo {
    #[serde(default)]
    pub contact_id_info: ContactIdInfo,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContactIdInfo {
    #[serde(default)]
    pub match_rate_percentage: Option<i64>,
}

/// `GET …/userLists`: one page.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserListPage {
    #[serde(default)]
    pub user_lists: Vec<UserList>,
    #[serde(default)]
    pub next_page_token: Option<String>,
}

/// The OAuth2 token endpoint's answer.
#[derive(Debug, Clone, Deserialize)]
pub struct TokenAnswer {
    pub access_token: String,
    #[serde(default)]
    pub expires_in: Option<u64>,
}

/// proto3 JSON int64: a string (`"12"`), numbers accepted too.
mod int64 {
    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Int {
            Text(String),
            Number(i64),
        }
        Ok(match Option::<Int>::deserialize(d)? {
            Some(Int::Text(s)) => s.parse().ok(),
            Some(Int::Number(n)) => Some(n),
            None => None,
        })
    }
}

/// Why Google would refuse this member (and with it the whole request: one bad record fails
/// an ingest), checked before anything is sent. A fixed sentence, never the member's data.
pub fn member_problem(m: &AudienceMember) -> Option<&'static str> {
    let ids = &m.user_data.user_identifiers;
    if ids.is_empty() {
        return Some("a member without identifiers");
    }
    if ids.len() > MAX_IDENTIFIERS {
        return Some("more than 10 identifiers in a member");
    }
    ids.iter().find_map(|id| match id {
        UserIdentifier::EmailAddress(h) | UserIdentifier::PhoneNumber(h) if !is_hex_sha256(h) => {
            Some("an identifier that is not a hex SHA-256")
        }
        UserIdentifier::Address(a) => address_problem(a),
        _ => None,
    })
}

fn address_problem(a: &AddressInfo) -> Option<&'static str> {
    if !is_hex_sha256(&a.given_name) || !is_hex_sha256(&a.family_name) {
        return Some("an address name that is not a hex SHA-256");
    }
    let region = a.region_code.as_bytes();
    if region.len() != 2 || !region.iter().all(u8::is_ascii_uppercase) {
        return Some("an address region that is not two uppercase letters");
    }
    if a.postal_code.trim().is_empty() || a.postal_code.trim() != a.postal_code {
        return Some("an address without a trimmed postal code");
    }
    None
}

/// 64 lowercase hex digits (what `encoding: HEX` declares).
pub fn is_hex_sha256(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn identifiers_are_one_key_each_and_counts_read_from_strings() {
        let ids = vec![
            UserIdentifier::EmailAddress("a".repeat(64)),
            UserIdentifier::Address(AddressInfo {
                given_name: "b".repeat(64),
                family_name: "c".repeat(64),
                region_code: "US".into(),
                postal_code: "94045".into(),
            }),
        ];
        let v = serde_json::to_value(&ids).unwrap();
        assert_eq!(v[0], json!({"emailAddress": "a".repeat(64)}));
        assert_eq!(v[1]["address"]["regionCode"], "US");
        assert_eq!(v[1]["address"]["givenName"], "b".repeat(64));
        let list: UserList = serde_json::from_value(json!({
            "id": "5550001111",
            "sizeInfo": {"displayNetworkMembersCount": "1200", "searchNetworkMembersCount": "0"},
            "ingestedUserListInfo": {"contactIdInfo": {"matchRatePercentage": 41}}
        }))
        .unwrap();
        assert_eq!(list.size_info.display_network_members_count, Some(1200));
        assert_eq!(list.size_info.search_network_members_count, Some(0));
        assert_eq!(
            list.ingested_user_list_info
                .contact_id_info
                .match_rate_percentage,
            Some(41)
        );
    }

    #[test]
    fn records_google_would_refuse_are_found_before_sending() {
        let hash = "a".repeat(64);
        let with = |ids: Vec<UserIdentifier>| AudienceMember {
            user_data: UserData {
                user_identifiers: ids,
            },
        };
        let address = |region: &str, postal: &str| {
            UserIdentifier::Address(AddressInfo {
                given_name: hash.clone(),
                family_name: hash.clone(),
                region_code: region.into(),
                postal_code: postal.into(),
            })
        };
        assert_eq!(
            member_problem(&with(vec![UserIdentifier::EmailAddress(hash.clone())])),
            None
        );
        assert_eq!(member_problem(&with(vec![address("US", "94045")])), None);
        for bad in [
            with(vec![]),
            with(vec![UserIdentifier::EmailAddress(hash.to_uppercase())]),
            with(vec![UserIdentifier::PhoneNumber(hash[..63].to_string())]),
            with(vec![UserIdentifier::EmailAddress(hash.clone()); 11]),
            with(vec![address("us", "94045")]),
            with(vec![address("US", " 94045")]),
            with(vec![address("US", "")]),
        ] {
            assert!(member_problem(&bad).is_some(), "{bad:?}");
        }
    }
}
