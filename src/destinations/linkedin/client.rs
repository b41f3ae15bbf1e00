//! LinkedIn Marketing API client: DMP segments and their users.
//!
//! Every call carries `Authorization: Bearer`, `LinkedIn-Version` and
//! `X-Restli-Protocol-Version: 2.0.0`; the token travels only in that header and is never
//! logged. Throttling (429), LinkedIn's server errors and transport failures are retried with
//! backoff, within the sync's deadline.

use std::fmt;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use reqwest::header::{HeaderMap, CONTENT_TYPE};
use reqwest::Method;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::error::LinkedinError;
use super::wire::{
    Action, BatchAnswer, ElementStatus, ErrorBody, NewSegment, Segment, SegmentDestination,
    SegmentList, UserElement, UserId, UsersBody, MAX_ELEMENTS, SHA256_EMAIL,
};
use crate::destinations::deadline::{hard_stop, DEADLINE_GRACE};
use crate::destinations::retry::RetryPolicy;
use crate::destinations::settings::LinkedinConfig;
use crate::destinations::token::SecretToken;
use crate::destinations::transport;

/// `sourcePlatform` of the segments this service creates. LinkedIn issues the value to each
/// partner admitted to the Audiences program [UNCONFIRMED which one applies here].
pub const SOURCE_PLATFORM: &str = "AUDIENCE_SYNC";

/// How long a new segment may answer 404 before it counts as missing: LinkedIn says to wait
/// 5 seconds; integrators see 1–2 minutes.
pub const READY_WINDOW: Duration = Duration::from_secs(180);

const ACCOUNT_URN: &str = "urn:li:sponsoredAccount:";

/// Client of LinkedIn's DMP segment API. Cheap to clone.
#[derive(Clone)]
pub struct LinkedinClient {
    http: reqwest::Client,
    base: String,
    token: SecretToken,
    version: String,
    ad_account_id: Option<String>,
    timeout: Duration,
    retry: RetryPolicy,
}

impl fmt::Debug for LinkedinClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LinkedinClient")
            .field("api_url", &self.base)
            .field("access_token", &self.token)
            .field("version", &self.version)
            .field("ad_account_id", &self.ad_account_id)
            .finish()
    }
}

/// `123` or `urn:li:sponsoredAccount:123` → `123`; anything but digits is refused.
/// Where DMP segments are created and found.
pub const SEGMENTS_PATH: &str = "/dmpSegments";

/// A segment's members (`BATCH_CREATE` adds or removes them).
pub fn users_path(segment_id: &str) -> String {
    format!("{SEGMENTS_PATH}/{segment_id}/users")
}

pub fn normalize_account_id(value: &str) -> Option<String> {
    let v = value.trim();
    let digits = v.strip_prefix(ACCOUNT_URN).unwrap_or(v);
    (!digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())).then(|| digits.to_string())
}

fn check_segment_id(id: &str) -> Result<(), LinkedinError> {
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
        return Err(LinkedinError::InvalidRequest(
            "the LinkedIn segment id must be numeric".to_string(),
        ));
    }
    Ok(())
}

/// One request, replayable across retries.
struct Call<'a> {
    op: &'static str,
    method: Method,
    path: String,
    query: Vec<(&'static str, String)>,
    body: Option<Vec<u8>>,
    restli_method: Option<&'a str>,
}

impl LinkedinClient {
    pub fn new(config: LinkedinConfig) -> Result<Self, LinkedinError> {
        if config.access_token.is_empty() {
            return Err(LinkedinError::InvalidRequest(
                "the LinkedIn access token is empty (set LINKEDIN_ACCESS_TOKEN or the token secret)"
                    .to_string(),
            ));
        }
        let base = transport::base_url(&config.api_url, "LINKEDIN_API_URL")
            .map_err(LinkedinError::InvalidRequest)?;
        let version = config.version.trim().to_string();
        if version.len() != 6 || !version.bytes().all(|b| b.is_ascii_digit()) {
            return Err(LinkedinError::InvalidRequest(
                "LINKEDIN_VERSION must be a YYYYMM version such as 202604".to_string(),
            ));
        }
        let ad_account_id = match config.ad_account_id.as_deref().map(str::trim) {
            Some(s) if !s.is_empty() => Some(normalize_account_id(s).ok_or_else(|| {
                LinkedinError::InvalidRequest(
                    "LINKEDIN_AD_ACCOUNT_ID must be digits (or urn:li:sponsoredAccount:digits)"
                        .to_string(),
                )
            })?),
            _ => None,
        };
        Ok(LinkedinClient {
            http: transport::http_client(config.request_timeout)
                .map_err(LinkedinError::InvalidRequest)?,
            base,
            token: config.access_token,
            version,
            ad_account_id,
            timeout: config.request_timeout,
            retry: config.retry,
        })
    }

    /// The audience's own ad account when it names one, else `LINKEDIN_AD_ACCOUNT_ID` (digits).
    pub fn resolve_account(&self, own: Option<&str>) -> Result<String, LinkedinError> {
        match own.map(str::trim).filter(|s| !s.is_empty()) {
            Some(a) => normalize_account_id(a).ok_or_else(|| {
                LinkedinError::InvalidRequest(
                    "the audience's destination_account_id must be a LinkedIn ad account id \
                     (digits, or urn:li:sponsoredAccount:digits)"
                        .to_string(),
                )
            }),
            None => self.ad_account_id.clone().ok_or_else(|| {
                LinkedinError::InvalidRequest(
                    "no LinkedIn ad account: set the audience's destination_account_id or \
                     LINKEDIN_AD_ACCOUNT_ID"
                        .to_string(),
                )
            }),
        }
    }

    /// Creates a USER segment in `account`; returns its id (from `x-restli-id`). A create whose
    /// answer was lost may have been carried out: the segment is then looked up by its
    /// `sourceSegmentId` rather than made twice.
    pub async fn create_segment(
        &self,
        account: &str,
        name: &str,
        source_segment_id: &str,
    ) -> Result<String, LinkedinError> {
        let body = NewSegment {
            name,
            source_platform: SOURCE_PLATFORM,
            source_segment_id,
            account: format!("{ACCOUNT_URN}{account}"),
            kind: "USER",
            destinations: [SegmentDestination {
                destination: "LINKEDIN",
            }],
        };
        let call = Call {
            op: "create_segment",
            method: Method::POST,
            path: SEGMENTS_PATH.to_string(),
            query: Vec::new(),
            body: Some(encode(&body)?),
            restli_method: None,
        };
        // Shared across attempts (and `Send`, as the sync's future must be).
        let unanswered = std::sync::atomic::AtomicBool::new(false);
        let (call, unanswered) = (&call, &unanswered);
        transport::retrying(&self.retry, "linkedin", call.op, move || async move {
            if unanswered.load(Ordering::Relaxed) {
                if let Some(id) = self.find_segment(account, source_segment_id).await? {
                    tracing::info!("an unanswered segment create had been carried out: using it");
                    return Ok(id);
                }
            }
            let result = self.send(call).await;
            unanswered.store(
                matches!(result, Err(LinkedinError::Transport { .. })),
                Ordering::Relaxed,
            );
            let (_, headers, _) = result?;
            segment_id_header(&headers)
        })
        .await
    }

    /// The segment of `account` created for `source_segment_id`, if any.
    async fn find_segment(
        &self,
        account: &str,
        source_segment_id: &str,
    ) -> Result<Option<String>, LinkedinError> {
        let call = Call {
            op: "find_segment",
            method: Method::GET,
            path: SEGMENTS_PATH.to_string(),
            query: vec![
                ("q", "account".to_string()),
                ("account", format!("{ACCOUNT_URN}{account}")),
                ("sourceSegmentId", source_segment_id.to_string()),
                ("sourcePlatform", SOURCE_PLATFORM.to_string()),
            ],
            body: None,
            restli_method: None,
        };
        let list: SegmentList = self.json(&call).await?;
        Ok(list
            .elements
            .into_iter()
            .find(|s| s.source_segment_id.as_deref() == Some(source_segment_id))
            .and_then(|s| match s.id {
                serde_json::Value::Number(n) => Some(n.to_string()),
                serde_json::Value::String(s) => Some(s),
                _ => None,
            }))
    }

    /// Reads an ad account (`GET /adAccounts/{id}`): the health check's proof that the token
    /// works and reaches the account; its `status` (ACTIVE, …).
    pub(super) async fn ad_account(
        &self,
        account: &str,
    ) -> Result<serde_json::Value, LinkedinError> {
        let call = Call {
            op: "health_ad_account",
            method: Method::GET,
            path: format!("/adAccounts/{account}"),
            query: Vec::new(),
            body: None,
            restli_method: None,
        };
        self.json(&call).await
    }

    /// Reads a segment: its status and counts. 404: LinkedIn has no such segment (or, for a
    /// few seconds after its creation, not yet).
    pub async fn segment(&self, id: &str) -> Result<Segment, LinkedinError> {
        check_segment_id(id)?;
        let call = Call {
            op: "get_segment",
            method: Method::GET,
            path: format!("/dmpSegments/{id}"),
            query: Vec::new(),
            body: None,
            restli_method: None,
        };
        self.json(&call).await
    }

    /// Waits until a segment just created answers (LinkedIn: "wait 5 seconds … before adding
    /// users"), polling with the retry policy's backoff, for at most [`READY_WINDOW`] and never
    /// past the sync's deadline.
    pub async fn wait_until_available(&self, id: &str) -> Result<(), LinkedinError> {
        let started = Instant::now();
        let mut attempt = 1;
        loop {
            match self.segment(id).await {
                Ok(_) => return Ok(()),
                Err(e) if e.is_not_found() => {
                    let delay = self.retry.delay(attempt, None).max(self.retry.base_delay);
                    // Waiting is not a call in flight: it stops at the deadline itself.
                    let past_deadline =
                        hard_stop().is_some_and(|s| Instant::now() + delay + DEADLINE_GRACE > s);
                    if started.elapsed() + delay > READY_WINDOW || past_deadline {
                        return Err(LinkedinError::Api {
                            status: 404,
                            message: format!(
                                "the new segment {id} was still unavailable after {} s; the \
                                 next sync sends its members",
                                started.elapsed().as_secs()
                            ),
                            retry_after: None,
                        });
                    }
                    tokio::time::sleep(delay).await;
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Adds or removes members: one `BATCH_CREATE` of at most [`MAX_ELEMENTS`] SHA-256 email
    /// hashes. LinkedIn answers 200 with one status per element, in order.
    pub async fn update_users(
        &self,
        id: &str,
        action: Action,
        hashes: &[String],
    ) -> Result<Vec<ElementStatus>, LinkedinError> {
        check_segment_id(id)?;
        if hashes.is_empty() || hashes.len() > MAX_ELEMENTS {
            return Err(LinkedinError::InvalidRequest(format!(
                "a users batch holds 1 to {MAX_ELEMENTS} elements, not {}",
                hashes.len()
            )));
        }
        let body = UsersBody {
            elements: hashes
                .iter()
                .map(|h| UserElement {
                    action,
                    user_ids: [UserId {
                        id_type: SHA256_EMAIL,
                        id_value: h,
                    }],
                })
                .collect(),
        };
        let call = Call {
            op: "update_users",
            method: Method::POST,
            path: users_path(id),
            query: Vec::new(),
            body: Some(encode(&body)?),
            restli_method: Some("BATCH_CREATE"),
        };
        let answer: BatchAnswer = self.json(&call).await?;
        if answer.elements.len() != hashes.len() {
            return Err(LinkedinError::Unexpected {
                status: 200,
                detail: format!(
                    "{} element statuses for {} elements sent",
                    answer.elements.len(),
                    hashes.len()
                ),
            });
        }
        Ok(answer.elements)
    }

    /// Deletes a segment; one LinkedIn no longer has counts as deleted.
    pub async fn delete_segment(&self, id: &str) -> Result<(), LinkedinError> {
        check_segment_id(id)?;
        let call = Call {
            op: "delete_segment",
            method: Method::DELETE,
            path: format!("/dmpSegments/{id}"),
            query: Vec::new(),
            body: None,
            restli_method: None,
        };
        let call = &call;
        match transport::retrying(&self.retry, "linkedin", call.op, move || self.send(call)).await {
            Ok(_) => Ok(()),
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn json<T: DeserializeOwned>(&self, call: &Call<'_>) -> Result<T, LinkedinError> {
        let (status, _, body) =
            transport::retrying(&self.retry, "linkedin", call.op, || self.send(call)).await?;
        serde_json::from_slice(&body).map_err(|e| LinkedinError::Unexpected {
            status,
            detail: format!("could not read the answer to {}: {e}", call.op),
        })
    }

    /// One attempt: a 2xx answer, or the error it means.
    async fn send(&self, call: &Call<'_>) -> Result<(u16, HeaderMap, Vec<u8>), LinkedinError> {
        let started = Instant::now();
        let secrets = [self.token.expose()];
        let mut rb = self
            .http
            .request(call.method.clone(), format!("{}{}", self.base, call.path))
            .bearer_auth(self.token.expose())
            .header("LinkedIn-Version", &self.version)
            .header("X-Restli-Protocol-Version", "2.0.0")
            .timeout(transport::attempt_timeout(self.timeout));
        if let Some(m) = call.restli_method {
            rb = rb.header("X-RestLi-Method", m);
        }
        if !call.query.is_empty() {
            rb = rb.query(&call.query);
        }
        if let Some(body) = &call.body {
            rb = rb
                .header(CONTENT_TYPE, "application/json")
                .body(body.clone());
        }
        let transport_error = |f: transport::TransportFailure| LinkedinError::Transport {
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
        tracing::debug!(op = call.op, method = %call.method, status,
            elapsed_ms = started.elapsed().as_millis() as u64, "LinkedIn call");
        match status {
            200..=299 => Ok((status, headers, body)),
            401 => Err(LinkedinError::TokenInvalid),
            _ => {
                let message = serde_json::from_slice::<ErrorBody>(&body)
                    .map(|b| b.message)
                    .unwrap_or_else(|_| {
                        format!("{} bytes that are not LinkedIn's JSON", body.len())
                    });
                Err(LinkedinError::Api {
                    status,
                    message: transport::scrub(&message, &secrets),
                    retry_after: transport::retry_after(&headers),
                })
            }
        }
    }
}

/// The new segment's id: `x-restli-id` (documented) or `x-linkedin-id`, a number or a URN.
fn segment_id_header(headers: &HeaderMap) -> Result<String, LinkedinError> {
    let value = ["x-restli-id", "x-linkedin-id"]
        .iter()
        .find_map(|h| headers.get(*h).and_then(|v| v.to_str().ok()))
        .unwrap_or_default();
    let id = value.rsplit(':').next().unwrap_or_default().trim();
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
        return Err(LinkedinError::Unexpected {
            status: 201,
            detail: "no segment id in the x-restli-id header".to_string(),
        });
    }
    Ok(id.to_string())
}

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, LinkedinError> {
    serde_json::to_vec(value)
        .map_err(|e| LinkedinError::InvalidRequest(format!("could not encode the request: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(token: &str) -> LinkedinConfig {
        LinkedinConfig {
            access_token: SecretToken::new(token),
            ad_account_id: Some("urn:li:sponsoredAccount:516848833".into()),
            api_url: crate::destinations::settings::DEFAULT_LINKEDIN_API_URL.into(),
            version: crate::destinations::settings::DEFAULT_LINKEDIN_VERSION.into(),
            request_timeout: Duration::from_secs(5),
            retry: RetryPolicy::default(),
        }
    }

    #[test]
    fn accounts_and_settings() {
        let c = LinkedinClient::new(config("AQVsecret")).unwrap();
        assert!(!format!("{c:?}").contains("AQVsecret"));
        assert_eq!(c.resolve_account(None).unwrap(), "516848833");
        assert_eq!(c.resolve_account(Some(" 42 ")).unwrap(), "42");
        assert!(c.resolve_account(Some("act_42")).is_err());
        let mut none = config("t");
        none.ad_account_id = None;
        let err = LinkedinClient::new(none)
            .unwrap()
            .resolve_account(None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("destination_account_id") && err.contains("LINKEDIN_AD_ACCOUNT_ID"));
        assert!(LinkedinClient::new(config(" ")).is_err());
        let mut v = config("t");
        v.version = "2026-04".into();
        assert!(LinkedinClient::new(v)
            .unwrap_err()
            .to_string()
            .contains("LINKEDIN_VERSION"));
    }

    #[test]
    fn segment_id_from_either_header() {
        let mut h = HeaderMap::new();
        h.insert("x-linkedin-id", "123".parse().unwrap());
        assert_eq!(segment_id_header(&h).unwrap(), "123");
        h.insert("x-restli-id", "urn:li:dmpSegment:456".parse().unwrap());
        assert_eq!(segment_id_header(&h).unwrap(), "456");
        assert!(segment_id_header(&HeaderMap::new()).is_err());
    }
}
