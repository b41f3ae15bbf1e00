//! Alerts (DESIGN §8.4): a sync that failed or was blocked, an audience whose platform size
//! dropped by more than `ALERT_SIZE_DROP_PERCENT` since its last sync, and health turning bad
//! (seen by the scheduler pass). Each event is recorded once in the outbox ([`store`], its key
//! unique) after the sync's outcome is committed, then delivered to `ALERT_WEBHOOK_URL` (a
//! Slack-compatible `{"text": …}` plus structured fields) and to the SNS topic `ALERT_TOPIC_ARN`;
//! a failed delivery is retried with backoff by later passes. Nothing here can fail or hold up a
//! sync: every error is logged and left for the next pass.
//!
//! Messages carry ids, counts, audience names and the sync's own error sentence (which never
//! holds personal data or secrets), never a person's data.

pub mod sns;
pub mod store;

use std::time::Duration;

use serde_json::{json, Map, Value};
use tokio_postgres::GenericClient;
use uuid::Uuid;

use crate::app::App;
use crate::config::AlertSettings;
use crate::error::Result;
use crate::sync::history::{size_drop, size_figure};
use crate::sync::log;
pub use sns::SnsPublisher;

/// One delivery attempt of one event keeps other deliverers off it this long.
const LEASE_SECONDS: f64 = 60.0;
/// The first retry waits this long, doubling after each failure (at most an hour).
const RETRY_BASE_SECONDS: f64 = 30.0;
/// After this many attempts (about 8 hours), an event is given up (the log says so).
const MAX_ATTEMPTS: i32 = 12;
/// Events delivered per call.
const BATCH: i64 = 50;
/// One webhook call's limit.
const WEBHOOK_TIMEOUT: Duration = Duration::from_secs(10);

/// The channels, built once per process.
#[derive(Clone, Debug)]
pub struct Alerts {
    settings: AlertSettings,
    http: reqwest::Client,
    sns: Option<SnsPublisher>,
}

impl Alerts {
    /// The channels `settings` names (the SNS client from the standard AWS chain).
    pub async fn build(settings: &AlertSettings) -> Alerts {
        let sns = match &settings.topic_arn {
            Some(arn) => Some(SnsPublisher::from_env(arn).await),
            None => None,
        };
        Alerts::new(settings.clone(), sns)
    }

    /// With an SNS publisher of the caller's (tests: moto's server).
    pub fn new(settings: AlertSettings, sns: Option<SnsPublisher>) -> Alerts {
        let http = reqwest::Client::builder()
            .timeout(WEBHOOK_TIMEOUT)
            .build()
            .unwrap_or_default();
        Alerts {
            settings,
            http,
            sns,
        }
    }

    pub fn enabled(&self) -> bool {
        self.settings.webhook_url.is_some() || self.sns.is_some()
    }

    /// Records `event` once for every channel configured. Whether it was new.
    async fn record(&self, db: &impl GenericClient, event: &Event) -> Result<bool> {
        let message = event.message();
        let new = store::NewEvent {
            key: &event.key,
            kind: event.kind,
            audience_id: event.audience_id,
            message: &message,
        };
        store::enqueue(
            db,
            &new,
            self.settings.webhook_url.is_some(),
            self.sns.is_some(),
        )
        .await
    }

    async fn post_webhook(&self, message: &Value) -> std::result::Result<(), String> {
        let Some(url) = &self.settings.webhook_url else {
            return Ok(());
        };
        // The URL is a credential: errors go without it.
        match self.http.post(url.clone()).json(message).send().await {
            Ok(r) if r.status().is_success() => Ok(()),
            Ok(r) => Err(format!("the webhook answered HTTP {}", r.status().as_u16())),
            Err(e) => Err(format!(
                "the webhook could not be reached: {}",
                e.without_url()
            )),
        }
    }

    async fn publish_sns(&self, message: &Value) -> std::result::Result<(), String> {
        let Some(sns) = &self.sns else {
            return Ok(());
        };
        let subject = message["subject"].as_str().unwrap_or("audience-sync alert");
        sns.publish(subject, &message.to_string()).await
    }
}

/// One alert.
#[derive(Debug, Clone)]
struct Event {
    key: String,
    kind: &'static str,
    audience_id: Option<Uuid>,
    /// The human sentence (`text`).
    text: String,
    /// Structured fields beside it.
    fields: Map<String, Value>,
}

impl Event {
    /// What both channels receive (SNS: as the message's JSON text, `subject` as its subject).
    fn message(&self) -> Value {
        let mut m = self.fields.clone();
        m.insert("text".into(), json!(self.text));
        m.insert("subject".into(), json!(subject(self.kind)));
        m.insert("event".into(), json!(self.kind));
        m.insert("event_key".into(), json!(self.key));
        m.insert("audience_id".into(), json!(self.audience_id));
        m.insert("at".into(), json!(chrono::Utc::now()));
        Value::Object(m)
    }
}

/// SNS subjects are ASCII, at most 100 characters.
fn subject(kind: &str) -> &'static str {
    match kind {
        "sync_failed" => "audience-sync: a sync failed",
        "sync_blocked" => "audience-sync: a sync was blocked by a guardrail",
        "size_drop" => "audience-sync: an audience's size dropped",
        _ => "audience-sync: health turned bad",
    }
}

/// What a finished sync calls for: failed or blocked, or a completed one whose platform size
/// fell by more than the threshold since the last completed sync that read one.
fn sync_events(log_id: Uuid, c: &log::Closed, threshold: u32) -> Vec<Event> {
    let mut fields = Map::new();
    fields.insert("audience_name".into(), json!(c.audience_name));
    fields.insert("destination".into(), json!(c.platform));
    fields.insert("sync_log_id".into(), json!(log_id));
    fields.insert("status".into(), json!(c.status));
    let who = format!("audience \"{}\" ({})", c.audience_name, c.audience_id);
    let why = c.error_message.as_deref().unwrap_or("no reason recorded");
    let event = |kind: &'static str, text: String, fields: Map<String, Value>| Event {
        key: format!("{kind}:{log_id}"),
        kind,
        audience_id: Some(c.audience_id),
        text,
        fields,
    };
    match c.status.as_str() {
        // A blocked sync (the guardrails) is alerted exactly as a failed one, in its own words.
        "failed" | "blocked" => {
            fields.insert("error_message".into(), json!(c.error_message));
            let (kind, verb) = match c.status.as_str() {
                "blocked" => ("sync_blocked", "was blocked"),
                _ => ("sync_failed", "failed"),
            };
            let text = format!("audience-sync: the sync of {who} {verb}: {why}");
            vec![event(kind, text, fields)]
        }
        _ => {
            let before = size_figure(c.size_before.0, c.size_before.1);
            let now = size_figure(c.size.0, c.size.1);
            let Some(drop) = size_drop(before, now, threshold) else {
                return Vec::new();
            };
            let (before, now) = (before.unwrap_or_default(), now.unwrap_or_default());
            fields.insert("size_before".into(), json!(before.round()));
            fields.insert("size".into(), json!(now.round()));
            fields.insert("drop_percent".into(), json!((drop * 10.0).round() / 10.0));
            fields.insert("threshold_percent".into(), json!(threshold));
            let text = format!(
                "audience-sync: {who} shrank on {} from about {before:.0} to about {now:.0} \
                 people ({drop:.1}% less; the alert threshold is {threshold}%)",
                c.platform
            );
            vec![event("size_drop", text, fields)]
        }
    }
}

/// Called once a sync's outcome is committed (whatever it was: completed, failed, blocked):
/// records the alerts it calls for and starts their delivery in the background. Never fails
/// (a failed sync whose alert this could not record is alerted by the next scheduler pass).
pub async fn after_sync(app: &App, db: &impl GenericClient, log_id: Uuid) {
    if !app.alerts.enabled() {
        return;
    }
    match record_sync(app, db, log_id).await {
        Ok(0) => {}
        Ok(_) => {
            let app = app.clone();
            tokio::spawn(async move {
                if let Err(e) = deliver_due(&app).await {
                    tracing::warn!(error = %e, "alerts: delivery failed; the next pass retries");
                }
            });
        }
        Err(e) => tracing::warn!(sync_log_id = %log_id, error = %e,
            "alerts: the sync's alerts could not be recorded"),
    }
}

/// Records the alerts the finished sync `log_id` calls for; how many were new.
async fn record_sync(app: &App, db: &impl GenericClient, log_id: Uuid) -> Result<usize> {
    let Some(closed) = log::closed(db, log_id).await? else {
        return Ok(0);
    };
    let mut new = 0;
    for event in sync_events(log_id, &closed, app.alerts.settings.size_drop_percent) {
        new += usize::from(app.alerts.record(db, &event).await?);
    }
    Ok(new)
}

/// How far back a scheduler pass looks for failed syncs whose alert was never recorded: longer
/// than a Lambda can run, and than the scheduler's interval.
const MISSED_WITHIN_SECONDS: f64 = 3600.0;

/// Records the alerts of failed or blocked syncs whose own process did not (it died after the
/// outcome's commit, or the sync was abandoned and a later one failed its row). A size drop
/// lost that way is not looked for: only a completed sync's own process raises it.
async fn record_missed(app: &App) -> Result<()> {
    let db = crate::db::get(&app.pool).await?;
    for log_id in store::unalerted_failures(&**db, MISSED_WITHIN_SECONDS, BATCH).await? {
        if record_sync(app, &**db, log_id).await? > 0 {
            tracing::info!(sync_log_id = %log_id, "alerts: a failed sync's alert recorded late");
        }
    }
    Ok(())
}

/// The scheduler pass's part: health checked (an alert when it turned bad since the last
/// pass), failed syncs' missed alerts recorded, then every alert due delivered, and old ones
/// forgotten. Never fails.
pub async fn scheduler_pass(app: &App) {
    if !app.alerts.enabled() {
        return;
    }
    if let Err(e) = check_health(app).await {
        tracing::warn!(error = %e, "alerts: the health state could not be recorded");
    }
    if let Err(e) = record_missed(app).await {
        tracing::warn!(error = %e, "alerts: failed syncs' missed alerts could not be recorded");
    }
    if let Err(e) = deliver_due(app).await {
        tracing::warn!(error = %e, "alerts: delivery failed; the next pass retries");
    }
}

async fn check_health(app: &App) -> Result<()> {
    let report = crate::health::check(app).await;
    let db = crate::db::get(&app.pool).await?;
    let Some(since) = store::health_turned_bad(&**db, report.is_ok()).await? else {
        return Ok(());
    };
    let problems = report.problems();
    let mut fields = Map::new();
    fields.insert("problems".into(), json!(problems));
    fields.insert("health".into(), json!(report));
    let event = Event {
        key: format!("health_degraded:{}", since.to_rfc3339()),
        kind: "health_degraded",
        audience_id: None,
        text: format!(
            "audience-sync: health turned bad: {} (GET /api/health for details)",
            problems.join("; ")
        ),
        fields,
    };
    app.alerts.record(&**db, &event).await?;
    Ok(())
}

/// What one [`deliver_due`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Delivery {
    pub delivered: usize,
    pub failed: usize,
}

/// Tries every event due now on the channels it still waits for.
pub async fn deliver_due(app: &App) -> Result<Delivery> {
    let alerts = &app.alerts;
    let db = crate::db::get(&app.pool).await?;
    let mut done = Delivery::default();
    for due in store::claim_due(&**db, LEASE_SECONDS, BATCH).await? {
        let mut errors = Vec::new();
        let webhook = due.webhook_pending && {
            let r = alerts.post_webhook(&due.message).await;
            r.map_err(|e| errors.push(e)).is_err()
        };
        let sns = due.sns_pending && {
            let r = alerts.publish_sns(&due.message).await;
            r.map_err(|e| errors.push(e)).is_err()
        };
        let error = (!errors.is_empty()).then(|| errors.join("; "));
        store::settle(
            &**db,
            due.id,
            webhook,
            sns,
            error.as_deref(),
            RETRY_BASE_SECONDS,
            MAX_ATTEMPTS,
        )
        .await?;
        match &error {
            None => {
                done.delivered += 1;
                tracing::info!(event_key = %due.key, "alert delivered");
            }
            Some(e) => {
                done.failed += 1;
                tracing::warn!(event_key = %due.key, error = %e, "alert not delivered; retried later");
            }
        }
    }
    let trimmed = store::trim(&**db).await?;
    if trimmed > 0 {
        tracing::info!(trimmed, "old alerts forgotten");
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn closed(status: &str, size: (i64, i64), before: (i64, i64)) -> log::Closed {
        log::Closed {
            audience_id: Uuid::nil(),
            audience_name: "Newsletter".into(),
            platform: "meta".into(),
            status: status.into(),
            error_message: Some("it broke".into()),
            size: (Some(size.0), Some(size.1)),
            size_before: (Some(before.0), Some(before.1)),
        }
    }

    #[test]
    fn failed_and_blocked_syncs_and_drops_past_the_threshold_are_events() {
        let id = Uuid::nil();
        let failed = sync_events(id, &closed("failed", (0, 0), (0, 0)), 20);
        assert_eq!(failed[0].kind, "sync_failed");
        assert!(failed[0].text.contains("it broke"));
        let blocked = sync_events(id, &closed("blocked", (0, 0), (0, 0)), 20);
        assert_eq!(blocked[0].kind, "sync_blocked");
        let dropped = sync_events(id, &closed("completed", (600, 800), (900, 1100)), 20);
        assert_eq!(dropped[0].kind, "size_drop");
        assert_eq!(dropped[0].fields["drop_percent"], json!(30.0));
        assert!(sync_events(id, &closed("completed", (850, 950), (900, 1100)), 20).is_empty());
        let message = dropped[0].message();
        assert!(message["text"].is_string() && message["event_key"].is_string());
    }
}
