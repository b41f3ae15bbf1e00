//! Where a sync sends members. Each ad platform is one folder behind [`Destination`]: its
//! client, wire types, errors and retries, and its own normalization and hashing ([`Row`]).
//! The sync engine (`crate::sync`) knows nothing platform-specific: it reads members, asks the
//! platform's [`Row`] to hash them, and hands batches to the [`Destination`].

pub mod deadline;
pub mod google;
pub mod linkedin;
pub mod meta;
pub mod retry;
pub mod settings;
pub mod tiktok;
pub mod token;
pub mod transport;

use std::collections::HashSet;
use std::fmt;
use std::time::Duration;

use serde_json::{json, Value};
use tokio_postgres::Client;

use crate::audience::Audience;
use crate::error::Result;
use crate::identity::PersonFields;

/// The ad platform an audience's members go to (`custom_audience.destination`, DESIGN §8.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Platform {
    Meta,
    Google,
    Linkedin,
    Tiktok,
}

impl Platform {
    pub const ALL: [Platform; 4] = [
        Platform::Meta,
        Platform::Google,
        Platform::Linkedin,
        Platform::Tiktok,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Platform::Meta => "meta",
            Platform::Google => "google",
            Platform::Linkedin => "linkedin",
            Platform::Tiktok => "tiktok",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Platform::ALL.into_iter().find(|p| p.as_str() == s)
    }

    /// An account id on this platform in its one spelling (digits), or the rule it breaks:
    /// a Meta ad account (`act_` accepted), a Google customer id of 10 digits (dashes
    /// accepted), a LinkedIn ad account (`urn:li:sponsoredAccount:` accepted), a TikTok
    /// advertiser id.
    pub fn account_id(self, raw: &str) -> Result<String, &'static str> {
        let raw = raw.trim();
        let (digits, rule) = match self {
            Platform::Meta => (
                raw.trim_start_matches("act_").to_string(),
                "a numeric Meta id (an ad account may start with act_)",
            ),
            Platform::Google => (
                raw.replace('-', ""),
                "a Google Ads customer id of 10 digits, e.g. 123-456-7890",
            ),
            Platform::Linkedin => (
                raw.trim_start_matches("urn:li:sponsoredAccount:")
                    .to_string(),
                "a LinkedIn ad account id: digits, or urn:li:sponsoredAccount:<digits>",
            ),
            Platform::Tiktok => (raw.to_string(), "a TikTok advertiser id: digits"),
        };
        let length_ok = match self {
            Platform::Google => digits.len() == 10,
            _ => (1..=30).contains(&digits.len()),
        };
        match length_ok && digits.bytes().all(|b| b.is_ascii_digit()) {
            true => Ok(digits),
            false => Err(rule),
        }
    }
}

/// A day, for the membership durations below.
const DAY: Duration = Duration::from_secs(86_400);

impl Platform {
    /// How often every member must be sent again, on a platform where a membership lapses
    /// unless re-sent: an automatic sync becomes `full` when the audience's last completed full
    /// sync is older than this. Each is the platform's membership life less 60 days, so that a
    /// refresh that fails, or waits for the audience's interval, is retried in time.
    pub fn resend_every(self) -> Option<Duration> {
        match self {
            // Customer Match lists are created with `membershipDuration` 540 days (the
            // maximum): a member not uploaded again within it leaves the list.
            Platform::Google => Some(DAY * 480),
            // A TikTok custom audience keeps people `retention_in_days`, at most 365.
            Platform::Tiktok => Some(DAY * 305),
            // Meta keeps a customer list's members until they are removed (it may delete a
            // whole audience unused by ads for two years: the deleted-outside lifecycle then
            // recreates it). LinkedIn documents no expiry of a DMP segment's members.
            Platform::Meta | Platform::Linkedin => None,
        }
    }
}

/// Whether the URL's host is this machine (where a platform's API may be plain http: a local
/// fake).
pub fn is_loopback(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

crate::db::text_enum_to_sql!(Platform);

/// A member's identifiers as one platform matches them, hashed by that platform's rules, and
/// stored in `audience_member_sync.hashes` so that a later sync can tell what changed and
/// remove exactly what the platform holds.
pub trait Row: Sized + Send + Sync + 'static {
    /// Per-sync state of the hashing (caches).
    type Hasher: Default + Send + 'static;
    /// The person's row, or why it cannot be sent (a fixed sentence, never the person's data).
    fn hash(hasher: &mut Self::Hasher, person: &PersonFields) -> Result<Self, &'static str>;
    fn to_bytes(&self) -> Vec<u8>;
    /// `None` when the bytes are not a row of this platform.
    fn from_bytes(bytes: &[u8]) -> Option<Self>;
}

/// Which rows of a sent batch the destination refused (by index in the batch), and how many
/// more it counted as invalid without saying which (Meta quotes at most 100).
#[derive(Debug, Default)]
pub struct Accepted {
    pub invalid: HashSet<usize>,
    pub unidentified: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Removal {
    Done,
    /// Refused for now (Meta: the audience would become too small); retried by a later sync.
    Deferred,
}

/// How a sync starts talking to the platform.
pub struct Opening<'a> {
    /// The members a full sync's replace will carry (about), when [`Destination::wants_total`].
    pub replace_total: Option<u64>,
    /// What [`Destination::checkpoint`] saved, when the sync resumes.
    pub resume: Option<&'a Value>,
    /// What [`Destination::checkpoint`] saved for a sync that failed or was abandoned: an upload
    /// session it left open is closed first, since the platform refuses other updates until it
    /// ends.
    pub unfinished: Option<&'a Value>,
}

/// A call a sync would make to its platform, as a dry run lists it (DESIGN §8.4): the method,
/// the path as the platform's client sends it (`{…}` for an id that does not exist yet), and
/// the members it carries.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PlannedCall {
    pub method: &'static str,
    pub path: String,
    pub rows: u64,
}

impl PlannedCall {
    /// One call without members (a create).
    pub fn bare(method: &'static str, path: impl Into<String>) -> Vec<PlannedCall> {
        vec![PlannedCall {
            method,
            path: path.into(),
            rows: 0,
        }]
    }

    /// `rows` members in calls of at most `max` each.
    pub fn chunked(method: &'static str, path: &str, rows: u64, max: usize) -> Vec<PlannedCall> {
        let max = max.max(1) as u64;
        (0..rows.div_ceil(max))
            .map(|i| PlannedCall {
                method,
                path: path.to_string(),
                rows: max.min(rows - i * max),
            })
            .collect()
    }
}

/// A step of a sync, for [`Destination::plan`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// [`Destination::open`]: the platform audience created when it does not exist.
    Open,
    /// One batch of members added (`replace`: a batch of a full sync's replace session).
    Send { rows: u64, replace: bool },
    /// One batch of members' stored rows removed.
    Remove { rows: u64 },
    /// [`Destination::finish`]: what the platform builds itself (a lookalike) when missing.
    Finish,
}

#[allow(async_fn_in_trait)]
pub trait Destination {
    type Row: Row;
    /// A full sync's [`Opening::replace_total`] is worth counting for.
    fn wants_total(&self) -> bool {
        false
    }
    /// A full sync replaces what the platform holds in one session (Meta's `usersreplace`).
    /// A platform without a replace that keeps the audience whole meanwhile answers `false`:
    /// its full sync is a full diff (leavers and changed members' old rows removed, every
    /// member sent again).
    fn replaces(&self) -> bool {
        true
    }
    /// The failure reason of a member whose identifiers the platform refused in a batch.
    fn rejected_reason(&self) -> &'static str {
        "the platform rejected this member's identifiers as invalid"
    }
    /// Makes sure the platform audience members go to exists: on the first sync it is created
    /// and its id recorded (and what the database believed sent is forgotten: a new audience
    /// holds nothing).
    async fn open(
        &mut self,
        _db: &Client,
        _audience: &mut Audience,
        _opening: Opening<'_>,
    ) -> Result<()> {
        Ok(())
    }
    /// Adds a batch (or, in a replace session, the next batch; `last` closes it).
    async fn send(&mut self, rows: &[&Self::Row], last: bool) -> Result<Accepted>;
    async fn remove(&mut self, rows: &[Self::Row]) -> Result<Removal>;
    /// After the members: what the platform builds itself (lookalikes, pixel audiences), and
    /// its view of the audience read back.
    async fn finish(&mut self, _db: &Client, _audience: &mut Audience) -> Result<()> {
        Ok(())
    }
    /// What the sync log keeps of the destination's answers.
    fn response(&self) -> Value;
    /// The platform's size of the audience as [`Destination::finish`] read it back (`None`:
    /// not read, or the platform gives none): the sync's point of history.
    fn size(&self) -> Option<PlatformSize> {
        None
    }
    /// What a checkpoint must remember to continue in another invocation.
    fn checkpoint(&self) -> Value {
        Value::Null
    }
    /// An upload session is open and still needs its last batch.
    fn needs_closing(&self) -> bool {
        false
    }
    /// The calls that change the platform which `step` of a sync of `audience` would make,
    /// for a dry run: nothing is called. Reads (existence checks, the size read back) are
    /// left out. A destination without a platform (not configured) makes none.
    fn plan(&self, _audience: &Audience, _step: Step) -> Vec<PlannedCall> {
        Vec::new()
    }
}

/// A platform's view of an audience's size, read back after a sync (each platform's folder
/// maps its own figures into this; `None` where it gives none).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct PlatformSize {
    pub lower: Option<i64>,
    pub upper: Option<i64>,
    /// The platform's own match rate (0 to 1), when it reports one (Google).
    pub match_rate: Option<f64>,
    pub operation_status: Option<Value>,
    pub delivery_status: Option<Value>,
}

/// What `GET /api/health` says of one platform (DESIGN §8.4): `ok` with a sentence, or what is
/// wrong and what to do about it. Never a secret: messages are fixed sentences plus the
/// platform's error code and the account id.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PlatformHealth {
    pub configured: bool,
    pub ok: bool,
    pub message: String,
}

impl PlatformHealth {
    pub fn ok(message: impl Into<String>) -> Self {
        PlatformHealth {
            configured: true,
            ok: true,
            message: message.into(),
        }
    }

    pub fn bad(message: impl Into<String>) -> Self {
        PlatformHealth {
            configured: true,
            ok: false,
            message: message.into(),
        }
    }

    /// Not configured is not a failure: the platform is simply not used.
    pub fn not_configured(how: &str) -> Self {
        PlatformHealth {
            configured: false,
            ok: true,
            message: format!("not configured: {how}"),
        }
    }
}

/// The platform is not configured: the database side alone is the sync, and every batch counts
/// as accepted. Rows are still hashed the platform's way, so what is stored stays comparable.
pub struct DatabaseOnly<R> {
    platform: &'static str,
    _rows: std::marker::PhantomData<R>,
}

impl<R> DatabaseOnly<R> {
    pub fn new(platform: &'static str) -> Self {
        DatabaseOnly {
            platform,
            _rows: std::marker::PhantomData,
        }
    }
}

impl<R: Row> Destination for DatabaseOnly<R> {
    type Row = R;

    async fn send(&mut self, _rows: &[&R], _last: bool) -> Result<Accepted> {
        Ok(Accepted::default())
    }

    async fn remove(&mut self, _rows: &[R]) -> Result<Removal> {
        Ok(Removal::Done)
    }

    fn response(&self) -> Value {
        json!({"skipped": format!("{} not configured", self.platform)})
    }
}
