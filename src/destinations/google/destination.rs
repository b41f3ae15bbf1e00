//! Google Customer Match as a destination of the sync engine: the user list created at the
//! first sync, members ingested and removed in requests of up to 10,000, every record checked
//! before it leaves (one bad record fails Google's whole request), the list read back.
//!
//! A full sync is a full diff, not a replace: Google's `removeAll` empties the list until the
//! re-ingested members are processed (hours), and `removeAsOfTime` only avoids that if a
//! re-ingest refreshes a member's "last added" time, which Google does not document
//! (DESTINATIONS.md §7). So leavers and changed members' old identifiers are removed, and
//! every member is ingested again, which also renews their 540-day membership.

use serde_json::{json, Value};
use tokio_postgres::Client;

use super::client::GoogleClient;
use super::client::{INGEST_PATH, REMOVE_PATH};
use super::error::{ErrorKind, GoogleError};
use super::hashing::{hex, GoogleRow};
use super::wire::{
    member_problem, AddressInfo, AudienceMember, IngestRequest, ProductAccount, RemoveRequest,
    TermsOfService, UserData, UserIdentifier, UserList, WireDestination, MAX_MEMBERS,
};
use crate::audience::store::{self as audiences, PlatformId};
use crate::audience::Audience;
use crate::destinations::{
    Accepted, Destination, Opening, PlannedCall, Platform, PlatformSize, Removal, Step,
};
use crate::error::{Error, Result};
use crate::sync::member_store;

/// Request ids kept in the sync log (the last ones: enough to ask Google about a sync).
const MAX_REQUEST_IDS: usize = 20;

pub struct GoogleDestination<'a> {
    client: &'a GoogleClient,
    /// The operating account and the user list, once [`Destination::open`] has settled them.
    account: Option<String>,
    list_id: Option<String>,
    stats: Stats,
}

#[derive(Default)]
struct Stats {
    /// The list's size read back by `finish`.
    size: Option<PlatformSize>,
    ingest_requests: u64,
    remove_requests: u64,
    members_sent: u64,
    members_removed: u64,
    /// Records that would have failed Google's request; marked failed instead.
    refused_before_sending: u64,
    request_ids: Vec<String>,
    /// The list this sync created, or found by its name (a create whose answer was lost).
    created: Option<&'static str>,
}

impl<'a> GoogleDestination<'a> {
    pub fn new(client: &'a GoogleClient, audience: &Audience) -> Self {
        GoogleDestination {
            client,
            account: None,
            list_id: audience.destination_audience_id.clone(),
            stats: Stats::default(),
        }
    }

    /// For removals alone (the purge of erased and opted-out people): the list the members
    /// were sent to, or `None` when there is none (Google holds none of them). Nothing is
    /// created.
    pub fn existing(client: &'a GoogleClient, audience: &Audience) -> Result<Option<Self>> {
        if audience.destination_audience_id.is_none() {
            return Ok(None);
        }
        let mut dest = GoogleDestination::new(client, audience);
        dest.account = Some(client.resolve_account(audience.destination_account_id.as_deref())?);
        Ok(Some(dest))
    }

    fn destinations(&self) -> [WireDestination; 1] {
        [WireDestination {
            operating_account: ProductAccount::google_ads(
                self.account.as_deref().unwrap_or_default(),
            ),
            login_account: self
                .client
                .login_customer_id()
                .map(ProductAccount::google_ads),
            product_destination_id: self.list_id.clone().unwrap_or_default(),
        }]
    }

    /// Google's error as the domain's: a list that no longer exists is the platform audience
    /// gone (the engine clears its id; the next sync creates it again).
    fn domain_error(&self, e: GoogleError) -> Error {
        match (e.kind(), &self.list_id) {
            (ErrorKind::ListGone, Some(id)) => Error::PlatformAudienceGone {
                platform: Platform::Google,
                platform_audience_id: id.clone(),
            },
            _ => Error::Google(e),
        }
    }

    fn record(&mut self, request_id: String) {
        if self.stats.request_ids.len() == MAX_REQUEST_IDS {
            self.stats.request_ids.remove(0);
        }
        if !request_id.is_empty() {
            self.stats.request_ids.push(request_id);
        }
    }

    /// Creates the list (name unique in the account: it carries the audience id); a name
    /// already taken is the list an unanswered create made, and is used.
    async fn create_list(&mut self, account: &str, audience: &Audience) -> Result<String> {
        let name = display_name(audience);
        let description = audience.description.clone().unwrap_or_default();
        let list = match self
            .client
            .create_user_list(account, &name, &description)
            .await
        {
            Ok(list) => {
                self.stats.created = Some("created");
                list
            }
            Err(e) if e.kind() == ErrorKind::NameTaken => {
                let found = self.client.find_user_list(account, &name).await?;
                self.stats.created = Some("found by its name");
                found.ok_or(Error::Google(e))?
            }
            Err(e) => return Err(e.into()),
        };
        Ok(list.id)
    }
}

/// `<name> [<audience id>]`: unique among the account's lists, and recognisable in Google Ads.
pub fn display_name(audience: &Audience) -> String {
    format!("{} [{}]", audience.name, audience.id)
}

/// A row as Google's audience member: hex digests, the address's region and postal in clear.
fn member(row: &GoogleRow) -> AudienceMember {
    let mut ids = Vec::with_capacity(3);
    if let Some(h) = &row.email {
        ids.push(UserIdentifier::EmailAddress(hex(h)));
    }
    if let Some(h) = &row.phone {
        ids.push(UserIdentifier::PhoneNumber(hex(h)));
    }
    if let Some(a) = &row.address {
        ids.push(UserIdentifier::Address(AddressInfo {
            given_name: hex(&a.given_name),
            family_name: hex(&a.family_name),
            region_code: String::from_utf8_lossy(&a.region_code).into_owned(),
            postal_code: a.postal_code.clone(),
        }));
    }
    AudienceMember {
        user_data: UserData {
            user_identifiers: ids,
        },
    }
}

/// The rows' members that Google would take, and the indices of those it would refuse.
fn checked<'r>(rows: impl Iterator<Item = &'r GoogleRow>) -> (Vec<AudienceMember>, Vec<usize>) {
    let mut ok = Vec::new();
    let mut refused = Vec::new();
    for (i, row) in rows.enumerate() {
        let m = member(row);
        match member_problem(&m) {
            None => ok.push(m),
            Some(_) => refused.push(i),
        }
    }
    (ok, refused)
}

impl Destination for GoogleDestination<'_> {
    type Row = GoogleRow;

    fn replaces(&self) -> bool {
        false
    }

    async fn open(
        &mut self,
        db: &Client,
        audience: &mut Audience,
        _opening: Opening<'_>,
    ) -> Result<()> {
        let account = self
            .client
            .resolve_account(audience.destination_account_id.as_deref())?;
        self.account = Some(account.clone());
        if let Some(id) = audience.destination_audience_id.clone() {
            self.list_id = Some(id);
            return Ok(());
        }
        let id = self.create_list(&account, audience).await?;
        audiences::set_platform_id(db, audience.id, PlatformId::Audience, &id).await?;
        member_store::forget_sent(db, audience.id).await?;
        tracing::info!(audience_id = %audience.id, google_user_list_id = %id, "user list created in Google");
        audience.destination_audience_id = Some(id.clone());
        self.list_id = Some(id);
        Ok(())
    }

    async fn send(&mut self, rows: &[&GoogleRow], _last: bool) -> Result<Accepted> {
        let (members, refused) = checked(rows.iter().copied());
        self.stats.refused_before_sending += refused.len() as u64;
        let accepted = Accepted {
            invalid: refused.into_iter().collect(),
            unidentified: 0,
        };
        if members.is_empty() {
            return Ok(accepted);
        }
        let destinations = self.destinations();
        let request = IngestRequest {
            destinations: &destinations,
            audience_members: &members,
            consent: self.client.consent(),
            terms_of_service: TermsOfService {
                customer_match_terms_of_service_status: "ACCEPTED",
            },
            encoding: "HEX",
        };
        let answer = self
            .client
            .ingest(&request)
            .await
            .map_err(|e| self.domain_error(e))?;
        self.stats.ingest_requests += 1;
        self.stats.members_sent += members.len() as u64;
        self.record(answer.request_id);
        Ok(accepted)
    }

    async fn remove(&mut self, rows: &[GoogleRow]) -> Result<Removal> {
        // A record Google would refuse was never accepted by it: nothing to take back.
        let (members, _) = checked(rows.iter());
        if members.is_empty() {
            return Ok(Removal::Done);
        }
        let destinations = self.destinations();
        let request = RemoveRequest {
            destinations: &destinations,
            audience_members: &members,
            encoding: "HEX",
        };
        let answer = self
            .client
            .remove(&request)
            .await
            .map_err(|e| self.domain_error(e))?;
        self.stats.remove_requests += 1;
        self.stats.members_removed += members.len() as u64;
        self.record(answer.request_id);
        Ok(Removal::Done)
    }

    /// Reads the list back into the audience's metrics. Only a list that is gone fails the
    /// sync; any other failure leaves the last numbers (they are informational).
    async fn finish(&mut self, db: &Client, audience: &mut Audience) -> Result<()> {
        let (Some(account), Some(id)) = (self.account.clone(), self.list_id.clone()) else {
            return Ok(());
        };
        match self.client.get_user_list(&account, &id).await {
            Ok(list) => {
                self.stats.size = Some(size(&list));
                if let Err(e) =
                    audiences::record_meta_metrics(db, audience.id, &metrics(&list)).await
                {
                    tracing::warn!(error = %e, "could not store Google's metrics");
                }
                Ok(())
            }
            Err(e) if e.kind() == ErrorKind::ListGone => Err(self.domain_error(e)),
            Err(e) => {
                tracing::warn!(audience_id = %audience.id, error = %e, "could not read the user list from Google");
                Ok(())
            }
        }
    }

    fn plan(&self, audience: &Audience, step: Step) -> Vec<PlannedCall> {
        match step {
            Step::Open if audience.destination_audience_id.is_none() => {
                let own = audience.destination_account_id.as_deref();
                let account = self.client.resolve_account(own);
                let account = account.as_deref().unwrap_or("{account}");
                PlannedCall::bare("POST", GoogleClient::user_lists_path(account))
            }
            Step::Send { rows, .. } => PlannedCall::chunked("POST", INGEST_PATH, rows, MAX_MEMBERS),
            Step::Remove { rows } => PlannedCall::chunked("POST", REMOVE_PATH, rows, MAX_MEMBERS),
            Step::Open | Step::Finish => Vec::new(),
        }
    }

    fn size(&self) -> Option<PlatformSize> {
        self.stats.size.clone()
    }

    fn response(&self) -> Value {
        let s = &self.stats;
        let mut v = json!({
            "platform": "google",
            "user_list_id": self.list_id,
            "operating_account": self.account,
            "ingest_requests": s.ingest_requests,
            "remove_requests": s.remove_requests,
            "members_sent": s.members_sent,
            "members_removed": s.members_removed,
            "request_ids": s.request_ids,
        });
        if s.refused_before_sending > 0 {
            v["refused_before_sending"] = json!(s.refused_before_sending);
        }
        if let Some(how) = s.created {
            v["user_list"] = json!(how);
        }
        v
    }
}

/// What `include=metrics` shows of a Google list (int64 counts read from Google's strings).
fn metrics(list: &UserList) -> Value {
    json!({
        "platform": "google",
        "display_network_members_count": list.size_info.display_network_members_count,
        "search_network_members_count": list.size_info.search_network_members_count,
        "match_rate_percentage": list.ingested_user_list_info.contact_id_info.match_rate_percentage,
        "membership_status": list.membership_status,
        "closing_reason": list.closing_reason,
        "eligible_for_display": list.target_network_info.eligible_for_display,
        "eligible_for_search": list.target_network_info.eligible_for_search,
        "google_read_at": chrono::Utc::now(),
    })
}

/// The list's size as history records it: Google counts members per network (rounded); the
/// larger of the two is the list's reach, used as both bounds. Google reports its own match
/// rate (a percentage), which history keeps instead of an estimate.
fn size(list: &UserList) -> PlatformSize {
    let counts = &list.size_info;
    let reach = match (
        counts.display_network_members_count,
        counts.search_network_members_count,
    ) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    };
    PlatformSize {
        lower: reach,
        upper: reach,
        match_rate: list
            .ingested_user_list_info
            .contact_id_info
            .match_rate_percentage
            .map(|p| p as f64 / 100.0),
        operation_status: list.membership_status.as_ref().map(|s| json!(s)),
        delivery_status: Some(json!({
            "eligible_for_display": list.target_network_info.eligible_for_display,
            "eligible_for_search": list.target_network_info.eligible_for_search,
        })),
    }
}

/// Deletes the audience's user list in Google; one Google no longer has counts as deleted.
pub async fn delete_user_list(client: &GoogleClient, audience: &Audience) -> Result<()> {
    let Some(id) = audience.destination_audience_id.as_deref() else {
        return Ok(());
    };
    let account = client.resolve_account(audience.destination_account_id.as_deref())?;
    match client.delete_user_list(&account, id).await {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::ListGone => Ok(()),
        Err(e) => Err(e.into()),
    }
}
