//! Whether TikTok works for the service (`GET /api/health`): one read of the default
//! advertiser (`GET /advertiser/info/`) proves the token and its authorization for the
//! advertiser, and tells whether the advertiser is enabled.

use super::client::TiktokClient;
use crate::destinations::PlatformHealth;

pub async fn check(client: &TiktokClient) -> PlatformHealth {
    let Ok(advertiser) = client.resolve_advertiser(None) else {
        return PlatformHealth::ok(
            "the token is set; no default advertiser to check (TIKTOK_ADVERTISER_ID is unset, \
             so each audience must name its destination_account_id)",
        );
    };
    match client.advertiser(&advertiser).await {
        Ok(data) => {
            let status = data["list"]
                .as_array()
                .and_then(|l| l.first())
                .and_then(|a| a["status"].as_str())
                .map(str::to_string);
            match status.as_deref() {
                Some("STATUS_ENABLE") => PlatformHealth::ok(format!(
                    "the token works and may act for TikTok advertiser {advertiser}"
                )),
                Some(other) => PlatformHealth::bad(format!(
                    "TikTok advertiser {advertiser} is {other}, not enabled: settle it in TikTok \
                     Ads Manager (review, billing), or correct TIKTOK_ADVERTISER_ID"
                )),
                None => PlatformHealth::bad(format!(
                    "TikTok did not list advertiser {advertiser} for this token: authorize the \
                     app for the advertiser in TikTok for Business, or correct \
                     TIKTOK_ADVERTISER_ID"
                )),
            }
        }
        Err(e) => PlatformHealth::bad(e.user_message()),
    }
}
