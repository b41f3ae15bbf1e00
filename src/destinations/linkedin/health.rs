//! Whether LinkedIn works for the service (`GET /api/health`): one read of the default ad
//! account (`GET /adAccounts/{id}`) proves the token and the account's access, and tells
//! whether the account is active.

use super::client::LinkedinClient;
use crate::destinations::PlatformHealth;

pub async fn check(client: &LinkedinClient) -> PlatformHealth {
    let Ok(account) = client.resolve_account(None) else {
        return PlatformHealth::ok(
            "the token is set; no default ad account to check (LINKEDIN_AD_ACCOUNT_ID is unset, \
             so each audience must name its destination_account_id)",
        );
    };
    match client.ad_account(&account).await {
        Ok(a) => match a["status"].as_str() {
            Some("ACTIVE") | None => PlatformHealth::ok(format!(
                "the token works and reaches LinkedIn ad account {account}"
            )),
            Some(other) => PlatformHealth::bad(format!(
                "LinkedIn ad account {account} is {other}, not ACTIVE: reactivate it in Campaign \
                 Manager (or correct LINKEDIN_AD_ACCOUNT_ID)"
            )),
        },
        Err(e) if matches!(e.status(), Some(403 | 404)) => PlatformHealth::bad(format!(
            "LinkedIn ad account {account} cannot be reached with this token (HTTP {}): give \
             the token's member a role on the account in Campaign Manager, or correct \
             LINKEDIN_AD_ACCOUNT_ID",
            e.status().unwrap_or_default()
        )),
        Err(e) => PlatformHealth::bad(e.user_message()),
    }
}
