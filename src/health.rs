//! `GET /api/health` (DESIGN §8.4): the database reachable with every migration applied, and for
//! each configured platform whether its credentials work, reach the default account and (Meta)
//! whether the Custom Audience Terms are accepted. Each platform's check lives in its folder
//! (`destinations/<platform>/health.rs`: one light call); here they run concurrently, each
//! bounded by [`CHECK_TIMEOUT`], and the report is kept [`CACHE_FOR`] so that a monitor polling
//! every minute (and the scheduler pass, which alerts when health turns bad) costs at most one
//! call per platform and half-minute per process.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::Mutex;

use crate::app::App;
use crate::destinations::{google, linkedin, meta, tiktok, PlatformHealth};

/// The longest one check may take before it counts as failed.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a report is reused.
pub const CACHE_FOR: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// `ok` or `degraded`.
    pub status: &'static str,
    pub database: Database,
    pub destinations: Destinations,
}

#[derive(Debug, Clone, Serialize)]
pub struct Database {
    pub ok: bool,
    pub migrations_current: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Destinations {
    pub meta: PlatformHealth,
    pub google: PlatformHealth,
    pub linkedin: PlatformHealth,
    pub tiktok: PlatformHealth,
}

impl Report {
    pub fn is_ok(&self) -> bool {
        self.status == "ok"
    }

    /// The platforms that are not ok, with their sentence (what an alert says).
    pub fn problems(&self) -> Vec<String> {
        let d = &self.destinations;
        let mut out: Vec<String> = [
            ("meta", &d.meta),
            ("google", &d.google),
            ("linkedin", &d.linkedin),
            ("tiktok", &d.tiktok),
        ]
        .into_iter()
        .filter(|(_, h)| !h.ok)
        .map(|(name, h)| format!("{name}: {}", h.message))
        .collect();
        if !self.database.ok {
            out.insert(0, "database: unreachable".into());
        } else if !self.database.migrations_current {
            out.insert(
                0,
                "database: migrations not current (run `audiences migrate`)".into(),
            );
        }
        out
    }
}

/// The last report and when it was made, shared by the handlers and passes of one process.
#[derive(Clone, Default)]
pub struct Cache(Arc<Mutex<Option<(Instant, Report)>>>);

impl Cache {
    /// Drops the report kept: the next [`check`] checks again.
    pub async fn forget(&self) {
        *self.0.lock().await = None;
    }
}

/// The report, from the cache when fresh. The lock is held while checking, so concurrent
/// callers wait for one check instead of each calling every platform.
pub async fn check(app: &App) -> Report {
    let mut cached = app.health.0.lock().await;
    if let Some((at, report)) = cached.as_ref() {
        if at.elapsed() < CACHE_FOR {
            return report.clone();
        }
    }
    let report = fresh(app).await;
    *cached = Some((Instant::now(), report.clone()));
    report
}

/// Every check, now.
pub async fn fresh(app: &App) -> Report {
    let (database, meta, google, linkedin, tiktok) = tokio::join!(
        database(app),
        platform(app.meta.as_deref(), meta::health::check, META_HOW),
        platform(app.google.as_deref(), google::health::check, GOOGLE_HOW),
        platform(
            app.linkedin.as_deref(),
            linkedin::health::check,
            LINKEDIN_HOW
        ),
        platform(app.tiktok.as_deref(), tiktok::health::check, TIKTOK_HOW),
    );
    let destinations = Destinations {
        meta,
        google,
        linkedin,
        tiktok,
    };
    let all_ok = database.ok
        && database.migrations_current
        && [
            &destinations.meta,
            &destinations.google,
            &destinations.linkedin,
            &destinations.tiktok,
        ]
        .iter()
        .all(|h| h.ok);
    Report {
        status: if all_ok { "ok" } else { "degraded" },
        database,
        destinations,
    }
}

const META_HOW: &str = "set META_ACCESS_TOKEN (or META_TOKEN_SECRET_ARN) and META_AD_ACCOUNT_ID";
const GOOGLE_HOW: &str =
    "set GOOGLE_CREDENTIALS_SECRET_ARN (or GOOGLE_ACCESS_TOKEN) and GOOGLE_CUSTOMER_ID";
const LINKEDIN_HOW: &str =
    "set LINKEDIN_ACCESS_TOKEN (or LINKEDIN_TOKEN_SECRET_ARN) and LINKEDIN_AD_ACCOUNT_ID";
const TIKTOK_HOW: &str =
    "set TIKTOK_ACCESS_TOKEN (or TIKTOK_TOKEN_SECRET_ARN) and TIKTOK_ADVERTISER_ID";

/// One platform's check, bounded by [`CHECK_TIMEOUT`].
async fn platform<'a, C, F, Fut>(client: Option<&'a C>, check: F, how: &str) -> PlatformHealth
where
    F: FnOnce(&'a C) -> Fut,
    Fut: Future<Output = PlatformHealth>,
{
    let Some(client) = client else {
        return PlatformHealth::not_configured(how);
    };
    match tokio::time::timeout(CHECK_TIMEOUT, check(client)).await {
        Ok(health) => health,
        Err(_) => PlatformHealth::bad(format!(
            "the platform did not answer within {} s: check the network path to its API (NAT, \
             proxy, VPC egress) and its status page; the next check tries again",
            CHECK_TIMEOUT.as_secs()
        )),
    }
}

async fn database(app: &App) -> Database {
    let checked = tokio::time::timeout(CHECK_TIMEOUT, async {
        let db = crate::db::get(&app.pool).await.ok()?;
        Some(crate::db::migrations_current(&**db).await)
    })
    .await;
    match checked {
        Ok(Some(Ok(current))) => Database {
            ok: true,
            migrations_current: current,
        },
        Ok(Some(Err(e))) => {
            tracing::warn!(error = %e, "health: the migrations could not be read");
            Database {
                ok: true,
                migrations_current: false,
            }
        }
        Ok(None) | Err(_) => Database {
            ok: false,
            migrations_current: false,
        },
    }
}
