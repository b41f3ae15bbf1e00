//! Whether Meta works for the service (`GET /api/health`): one read of the default ad account
//! tells whether the token works, the account is reachable and active, and the Custom Audience
//! Terms are accepted (`tos_accepted.custom_audience_tos` is 1, Meta's documented check).
//! Without a default ad account, the token alone is checked (`GET /me`).

use serde_json::Value;

use super::client::MetaClient;
use crate::destinations::PlatformHealth;

/// `account_status` 1 is ACTIVE; the others (disabled, unsettled, in review, closed, …) stop
/// ads and audience changes.
const ACTIVE: i64 = 1;

pub async fn check(client: &MetaClient) -> PlatformHealth {
    let Some(account) = client.ad_account_id().map(str::to_string) else {
        return match client.read_object("health_me", "/me".into(), "id").await {
            Ok(_) => PlatformHealth::ok(
                "the token works; no default ad account to check (META_AD_ACCOUNT_ID is unset, \
                 so each audience must name its destination_account_id)",
            ),
            Err(e) => PlatformHealth::bad(e.user_message()),
        };
    };
    let path = format!("/act_{account}");
    match client
        .read_object("health_ad_account", path, "id,account_status,tos_accepted")
        .await
    {
        Ok(answer) => judge(&account, &answer),
        Err(e) if e.is_missing_object() => PlatformHealth::bad(format!(
            "ad account act_{account} cannot be reached with this token (Meta code 100/33): \
             assign the system user to the ad account in Business Settings, or correct \
             META_AD_ACCOUNT_ID"
        )),
        Err(e) => PlatformHealth::bad(e.user_message()),
    }
}

/// What the ad account's fields say.
fn judge(account: &str, answer: &Value) -> PlatformHealth {
    let status = answer["account_status"].as_i64();
    if status.is_some_and(|s| s != ACTIVE) {
        return PlatformHealth::bad(format!(
            "ad account act_{account} is not active (account_status {}): settle it in Ads Manager \
             (billing, review or closure) before syncing",
            status.unwrap_or_default()
        ));
    }
    // Meta leaves out a field with nothing in it: no `tos_accepted` is terms not accepted.
    let accepted = answer["tos_accepted"]["custom_audience_tos"]
        .as_i64()
        .is_some_and(|v| v == 1);
    if !accepted {
        return PlatformHealth::bad(format!(
            "the Custom Audience Terms are not accepted for ad account act_{account}: a business \
             admin must accept them at \
             https://business.facebook.com/ads/manage/customaudiences/tos/?act={account}"
        ));
    }
    PlatformHealth::ok(format!(
        "the token works, ad account act_{account} is active and its Custom Audience Terms are \
         accepted"
    ))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::judge;

    #[test]
    fn the_terms_and_the_account_status_decide() {
        let ok =
            json!({"id": "act_1", "account_status": 1, "tos_accepted": {"custom_audience_tos": 1}});
        assert!(judge("1", &ok).ok);
        let no_terms = json!({"id": "act_1", "account_status": 1});
        let h = judge("1", &no_terms);
        assert!(
            !h.ok && h.message.contains("Custom Audience Terms"),
            "{h:?}"
        );
        let disabled =
            json!({"id": "act_1", "account_status": 2, "tos_accepted": {"custom_audience_tos": 1}});
        let h = judge("1", &disabled);
        assert!(!h.ok && h.message.contains("account_status 2"), "{h:?}");
    }
}
