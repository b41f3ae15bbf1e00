//! Whether Google works for the service (`GET /api/health`): one read of the default operating
//! account's user lists (`pageSize=1`) proves the credentials (the access token, refreshed when
//! needed) and the account's access. Google's Customer Match terms show only on an upload, so
//! they are not checked here (a sync refused for them says so).

use super::client::GoogleClient;
use crate::destinations::PlatformHealth;

pub async fn check(client: &GoogleClient) -> PlatformHealth {
    let Ok(account) = client.resolve_account(None) else {
        return PlatformHealth::ok(
            "credentials are set; no default customer to check (GOOGLE_CUSTOMER_ID is unset, so \
             each audience must name its destination_account_id)",
        );
    };
    match client.probe_account(&account).await {
        Ok(()) => PlatformHealth::ok(format!(
            "the credentials work and reach Google Ads customer {account}"
        )),
        Err(e) => PlatformHealth::bad(e.user_message()),
    }
}
