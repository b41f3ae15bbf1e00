//! What each platform's client needs, as `Config` builds it from the DESIGN §8.1 variables (and
//! the secrets fetched at cold start). A platform whose credentials are absent has no settings:
//! its audiences sync the database side only. Meta's are `meta::MetaConfig`.

use std::time::Duration;

use super::retry::RetryPolicy;
use super::token::SecretToken;

pub const DEFAULT_GOOGLE_TOKEN_URL: &str = "https://oauth2.googleapis.com/token";
pub const DEFAULT_GOOGLE_DATAMANAGER_URL: &str = "https://datamanager.googleapis.com/v1";
pub const DEFAULT_LINKEDIN_API_URL: &str = "https://api.linkedin.com/rest";
pub const DEFAULT_LINKEDIN_VERSION: &str = "202604";
pub const DEFAULT_TIKTOK_API_URL: &str = "https://business-api.tiktok.com/open_api/v1.3";

/// How a request asserts consent (`CONSENT_GRANTED` | `CONSENT_DENIED`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Consent {
    Granted,
    Denied,
}

impl Consent {
    pub fn as_str(self) -> &'static str {
        match self {
            Consent::Granted => "CONSENT_GRANTED",
            Consent::Denied => "CONSENT_DENIED",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s.trim() {
            "CONSENT_GRANTED" => Some(Consent::Granted),
            "CONSENT_DENIED" => Some(Consent::Denied),
            _ => None,
        }
    }
}

/// How the Google client gets its access tokens.
#[derive(Debug, Clone)]
pub enum GoogleAuth {
    /// `GOOGLE_ACCESS_TOKEN`: used as is (tests, short jobs); a 401 fails the sync.
    AccessToken(SecretToken),
    /// `GOOGLE_CREDENTIALS_SECRET_ARN`'s JSON: the client refreshes access tokens itself at
    /// `GoogleConfig::token_url`.
    Refresh {
        client_id: String,
        client_secret: SecretToken,
        refresh_token: SecretToken,
    },
}

#[derive(Debug, Clone)]
pub struct GoogleConfig {
    pub auth: GoogleAuth,
    /// `GOOGLE_TOKEN_URL`.
    pub token_url: String,
    /// `GOOGLE_DATAMANAGER_URL`: base with version.
    pub api_url: String,
    /// `GOOGLE_CUSTOMER_ID`: the operating account of audiences that name none.
    pub customer_id: Option<String>,
    /// `GOOGLE_LOGIN_CUSTOMER_ID`: the manager account, when one is used.
    pub login_customer_id: Option<String>,
    pub ad_user_data_consent: Consent,
    pub ad_personalization_consent: Consent,
    pub request_timeout: Duration,
    pub retry: RetryPolicy,
}

#[derive(Debug, Clone)]
pub struct LinkedinConfig {
    pub access_token: SecretToken,
    /// `LINKEDIN_AD_ACCOUNT_ID`: the ad account of audiences that name none.
    pub ad_account_id: Option<String>,
    /// `LINKEDIN_API_URL`.
    pub api_url: String,
    /// `LINKEDIN_VERSION`, sent as the `LinkedIn-Version` header.
    pub version: String,
    pub request_timeout: Duration,
    pub retry: RetryPolicy,
}

#[derive(Debug, Clone)]
pub struct TiktokConfig {
    pub access_token: SecretToken,
    /// `TIKTOK_ADVERTISER_ID`: the advertiser of audiences that name none.
    pub advertiser_id: Option<String>,
    /// `TIKTOK_API_URL`.
    pub api_url: String,
    pub request_timeout: Duration,
    pub retry: RetryPolicy,
}
