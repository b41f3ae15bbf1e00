//! TikTok API for Business client: partner audiences through the audience segment API, their
//! reads, delete and lookalikes through the DMP endpoints.
//!
//! The token travels only in the `Access-Token` header and is never logged. TikTok answers
//! errors as HTTP 200 with a body `code`: every answer's code is checked. Throttling (40100),
//! TikTok's system errors (5xxxx), HTTP 429/5xx and transport failures are retried with
//! backoff, within the sync's deadline.

use std::fmt;
use std::time::{Duration, Instant};

use reqwest::header::CONTENT_TYPE;
use reqwest::Method;
use serde::Serialize;
use serde_json::{json, Value};

use super::error::{TiktokError, BAD_TOKEN};
use super::hashing::{TiktokRow, ID_SCHEMA};
use super::wire::{
    id_text, lookalike_size, AudienceDetails, AudienceList, CreateAudience, CreateLookalike,
    DeleteAudiences, Envelope, LookalikeSpec, Mapping, MappingAction, MAX_USERS,
};
use crate::destinations::retry::RetryPolicy;
use crate::destinations::settings::TiktokConfig;
use crate::destinations::token::SecretToken;
use crate::destinations::transport;

/// Creates a partner audience.
pub const CREATE_AUDIENCE_PATH: &str = "/segment/audience/";
/// Adds or deletes users of an audience.
pub const MAPPING_PATH: &str = "/segment/mapping/";
/// Creates a lookalike from a seed audience.
pub const CREATE_LOOKALIKE_PATH: &str = "/dmp/custom_audience/lookalike/create/";

/// Client of TikTok's audience APIs. Cheap to clone.
#[derive(Clone)]
pub struct TiktokClient {
    http: reqwest::Client,
    base: String,
    token: SecretToken,
    advertiser_id: Option<String>,
    timeout: Duration,
    retry: RetryPolicy,
}

impl fmt::Debug for TiktokClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TiktokClient")
            .field("api_url", &self.base)
            .field("access_token", &self.token)
            .field("advertiser_id", &self.advertiser_id)
            .finish()
    }
}

fn digits(value: &str) -> Option<String> {
    let v = value.trim();
    (!v.is_empty() && v.bytes().all(|b| b.is_ascii_digit())).then(|| v.to_string())
}

fn check_id(what: &str, id: &str) -> Result<(), TiktokError> {
    match digits(id) {
        Some(_) => Ok(()),
        None => Err(TiktokError::InvalidRequest(format!(
            "the TikTok {what} must be numeric"
        ))),
    }
}

/// One request, replayable across retries.
struct Call {
    op: &'static str,
    method: Method,
    path: &'static str,
    query: Vec<(&'static str, String)>,
    body: Option<Vec<u8>>,
}

impl TiktokClient {
    pub fn new(config: TiktokConfig) -> Result<Self, TiktokError> {
        if config.access_token.is_empty() {
            return Err(TiktokError::InvalidRequest(
                "the TikTok access token is empty (set TIKTOK_ACCESS_TOKEN or the token secret)"
                    .to_string(),
            ));
        }
        let base = transport::base_url(&config.api_url, "TIKTOK_API_URL")
            .map_err(TiktokError::InvalidRequest)?;
        let advertiser_id = match config.advertiser_id.as_deref().map(str::trim) {
            Some(s) if !s.is_empty() => Some(digits(s).ok_or_else(|| {
                TiktokError::InvalidRequest("TIKTOK_ADVERTISER_ID must be digits".to_string())
            })?),
            _ => None,
        };
        Ok(TiktokClient {
            http: transport::http_client(config.request_timeout)
                .map_err(TiktokError::InvalidRequest)?,
            base,
            token: config.access_token,
            advertiser_id,
            timeout: config.request_timeout,
            retry: config.retry,
        })
    }

    /// The audience's own advertiser when it names one, else `TIKTOK_ADVERTISER_ID`.
    pub fn resolve_advertiser(&self, own: Option<&str>) -> Result<String, TiktokError> {
        match own.map(str::trim).filter(|s| !s.is_empty()) {
            Some(a) => digits(a).ok_or_else(|| {
                TiktokError::InvalidRequest(
                    "the audience's destination_account_id must be a TikTok advertiser id (digits)"
                        .to_string(),
                )
            }),
            None => self.advertiser_id.clone().ok_or_else(|| {
                TiktokError::InvalidRequest(
                    "no TikTok advertiser: set the audience's destination_account_id or \
                     TIKTOK_ADVERTISER_ID"
                        .to_string(),
                )
            }),
        }
    }

    /// Creates a partner audience (`segment/audience/`, action create); returns its id. Not
    /// repeated when unanswered: TikTok may have made it, and a second would be a duplicate.
    pub async fn create_audience(
        &self,
        advertiser: &str,
        name: &str,
    ) -> Result<String, TiktokError> {
        let body = CreateAudience {
            custom_audience_name: &truncate(name, 128),
            advertiser_id: advertiser,
            action: "create",
        };
        let call = self.post("create_audience", CREATE_AUDIENCE_PATH, &body)?;
        let call = &call;
        let data = transport::retrying(&self.retry, "tiktok", call.op, move || async move {
            match self.send(call).await {
                Err(TiktokError::Transport { detail, .. }) => {
                    Err(TiktokError::Unanswered { detail })
                }
                other => other,
            }
        })
        .await?;
        new_id(&data, "audience_id")
    }

    /// Adds or deletes at most [`MAX_USERS`] users of `audience_id`.
    pub async fn mapping(
        &self,
        advertiser: &str,
        audience_id: &str,
        action: MappingAction,
        rows: &[&TiktokRow],
    ) -> Result<(), TiktokError> {
        check_id("audience id", audience_id)?;
        if rows.is_empty() || rows.len() > MAX_USERS {
            return Err(TiktokError::InvalidRequest(format!(
                "a mapping request holds 1 to {MAX_USERS} users, not {}",
                rows.len()
            )));
        }
        let cell = |h: Option<String>| match h {
            Some(id) => json!({"id": id, "audience_ids": [audience_id]}),
            None => json!({}),
        };
        let body = Mapping {
            advertiser_ids: [advertiser],
            action,
            id_schema: ID_SCHEMA,
            batch_data: rows.iter().map(|r| r.hex_fields().map(cell)).collect(),
        };
        let call = self.post("mapping", MAPPING_PATH, &body)?;
        self.execute(&call).await.map(|_| ())
    }

    /// The advertiser's info (`GET /advertiser/info/`): the health check's proof that the token
    /// works and may act for the advertiser; its `status` (`STATUS_ENABLE`, …).
    pub(super) async fn advertiser(&self, advertiser: &str) -> Result<Value, TiktokError> {
        check_id("advertiser id", advertiser)?;
        let call = Call {
            op: "health_advertiser",
            method: Method::GET,
            path: "/advertiser/info/",
            query: vec![("advertiser_ids", json!([advertiser]).to_string())],
            body: None,
        };
        self.execute(&call).await
    }

    /// TikTok's view of an audience (size, validity); `None` when TikTok does not list it.
    pub async fn audience(
        &self,
        advertiser: &str,
        audience_id: &str,
    ) -> Result<Option<AudienceDetails>, TiktokError> {
        check_id("audience id", audience_id)?;
        let call = Call {
            op: "get_audience",
            method: Method::GET,
            path: "/dmp/custom_audience/get/",
            query: vec![
                ("advertiser_id", advertiser.to_string()),
                ("custom_audience_ids", json!([audience_id]).to_string()),
            ],
            body: None,
        };
        let data = self.execute(&call).await?;
        let list: AudienceList = serde_json::from_value(data)
            .map_err(|e| TiktokError::Unexpected(format!("the audience list: {e}")))?;
        Ok(list
            .list
            .into_iter()
            .map(|l| l.audience_details)
            .find(|d| d.id().as_deref() == Some(audience_id)))
    }

    /// Deletes an audience.
    pub async fn delete_audience(
        &self,
        advertiser: &str,
        audience_id: &str,
    ) -> Result<(), TiktokError> {
        check_id("audience id", audience_id)?;
        let body = DeleteAudiences {
            advertiser_id: advertiser,
            custom_audience_ids: [audience_id],
        };
        let call = self.post("delete_audience", "/dmp/custom_audience/delete/", &body)?;
        self.execute(&call).await.map(|_| ())
    }

    /// Creates a lookalike of `source_audience_id` in `country`, sized from the percentage
    /// (1–3 NARROW, 4–6 BALANCED, 7–10 BROAD); returns its id. Not repeated when unanswered.
    pub async fn create_lookalike(
        &self,
        advertiser: &str,
        name: &str,
        source_audience_id: &str,
        percentage: i32,
        country: &str,
    ) -> Result<String, TiktokError> {
        check_id("source audience id", source_audience_id)?;
        let audience_size = lookalike_size(percentage).ok_or_else(|| {
            TiktokError::InvalidRequest("lookalike_percentage must be 1 to 10".to_string())
        })?;
        let country = country.trim().to_ascii_uppercase();
        if country.len() != 2 || !country.bytes().all(|b| b.is_ascii_alphabetic()) {
            return Err(TiktokError::InvalidRequest(
                "the lookalike country must be an ISO 3166-1 alpha-2 code".to_string(),
            ));
        }
        let body = CreateLookalike {
            advertiser_id: advertiser,
            custom_audience_name: &truncate(name, 128),
            lookalike_spec: LookalikeSpec {
                source_audience_id,
                audience_size,
                include_source: false,
                location_ids: [&country],
                mobile_os: "ALL",
                placements: ["TIKTOK"],
            },
        };
        let call = self.post("create_lookalike", CREATE_LOOKALIKE_PATH, &body)?;
        let call = &call;
        let data = transport::retrying(&self.retry, "tiktok", call.op, move || async move {
            match self.send(call).await {
                Err(TiktokError::Transport { detail, .. }) => {
                    Err(TiktokError::Unanswered { detail })
                }
                other => other,
            }
        })
        .await?;
        new_id(&data, "custom_audience_id").or_else(|_| new_id(&data, "audience_id"))
    }

    fn post<T: Serialize>(
        &self,
        op: &'static str,
        path: &'static str,
        body: &T,
    ) -> Result<Call, TiktokError> {
        let body = serde_json::to_vec(body).map_err(|e| {
            TiktokError::InvalidRequest(format!("could not encode the request: {e}"))
        })?;
        Ok(Call {
            op,
            method: Method::POST,
            path,
            query: Vec::new(),
            body: Some(body),
        })
    }

    async fn execute(&self, call: &Call) -> Result<Value, TiktokError> {
        transport::retrying(&self.retry, "tiktok", call.op, move || self.send(call)).await
    }

    /// One attempt: the answer's `data` when its `code` is 0, or the error it means.
    async fn send(&self, call: &Call) -> Result<Value, TiktokError> {
        let started = Instant::now();
        let secrets = [self.token.expose()];
        let mut rb = self
            .http
            .request(call.method.clone(), format!("{}{}", self.base, call.path))
            .header("Access-Token", self.token.expose())
            .timeout(transport::attempt_timeout(self.timeout));
        if !call.query.is_empty() {
            rb = rb.query(&call.query);
        }
        if let Some(body) = &call.body {
            rb = rb
                .header(CONTENT_TYPE, "application/json")
                .body(body.clone());
        }
        let transport_error = |f: transport::TransportFailure| TiktokError::Transport {
            timeout: f.timeout,
            detail: f.detail,
        };
        let resp = rb
            .send()
            .await
            .map_err(|e| transport_error(transport::describe(&e, &secrets)))?;
        let (status, headers, body) = transport::read_answer(resp, &secrets)
            .await
            .map_err(transport_error)?;
        let envelope = serde_json::from_slice::<Envelope>(&body);
        tracing::debug!(
            op = call.op,
            status,
            code = envelope.as_ref().ok().map(|e| e.code),
            request_id = envelope.as_ref().ok().map(|e| e.request_id.as_str()),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "TikTok call"
        );
        let envelope = match envelope {
            Ok(e) => e,
            Err(_) if !(200..300).contains(&status) => {
                return Err(TiktokError::Http {
                    status,
                    retry_after: transport::retry_after(&headers),
                })
            }
            Err(_) => {
                return Err(TiktokError::Unexpected(format!(
                    "{} bytes that are not TikTok's JSON envelope (HTTP {status})",
                    body.len()
                )))
            }
        };
        match envelope.code {
            0 if (200..300).contains(&status) => Ok(envelope.data),
            0 => Err(TiktokError::Http {
                status,
                retry_after: transport::retry_after(&headers),
            }),
            BAD_TOKEN => Err(TiktokError::TokenInvalid),
            code => Err(TiktokError::Api {
                code,
                message: transport::scrub(&envelope.message, &secrets),
                request_id: envelope.request_id,
            }),
        }
    }
}

/// The id TikTok gave a new object, under `data.{field}`.
fn new_id(data: &Value, field: &str) -> Result<String, TiktokError> {
    id_text(&data[field])
        .filter(|id| digits(id).is_some())
        .ok_or_else(|| TiktokError::Unexpected(format!("no {field} in the answer")))
}

fn truncate(s: &str, max_chars: usize) -> String {
    s.chars().take(max_chars).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(token: &str) -> TiktokConfig {
        TiktokConfig {
            access_token: SecretToken::new(token),
            advertiser_id: Some("7000000000000".into()),
            api_url: crate::destinations::settings::DEFAULT_TIKTOK_API_URL.into(),
            request_timeout: Duration::from_secs(5),
            retry: RetryPolicy::default(),
        }
    }

    #[test]
    fn advertisers_and_settings() {
        let c = TiktokClient::new(config("tt-secret")).unwrap();
        assert!(!format!("{c:?}").contains("tt-secret"));
        assert_eq!(c.resolve_advertiser(None).unwrap(), "7000000000000");
        assert_eq!(c.resolve_advertiser(Some(" 42 ")).unwrap(), "42");
        assert!(c.resolve_advertiser(Some("adv-42")).is_err());
        let mut none = config("t");
        none.advertiser_id = None;
        let err = TiktokClient::new(none)
            .unwrap()
            .resolve_advertiser(None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("destination_account_id") && err.contains("TIKTOK_ADVERTISER_ID"));
        assert!(TiktokClient::new(config("")).is_err());
        let mut http = config("t");
        http.api_url = "http://business-api.tiktok.com/open_api/v1.3".into();
        assert!(TiktokClient::new(http).is_err());
    }

    #[test]
    fn new_ids_as_string_or_number() {
        assert_eq!(
            new_id(&json!({"audience_id": "123"}), "audience_id").unwrap(),
            "123"
        );
        assert_eq!(
            new_id(&json!({"audience_id": 123}), "audience_id").unwrap(),
            "123"
        );
        assert!(new_id(&json!({}), "audience_id").is_err());
    }
}
