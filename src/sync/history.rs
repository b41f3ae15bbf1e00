//! An audience's history (DESIGN §8.4): one point per finished sync, written with its outcome
//! ([`super::log::close`]) and read newest first ([`super::log::history_page`]). The platform's
//! size is what its destination read back after the members ([`Destination::size`]), each
//! platform's figures mapped in its own folder.
//!
//! [`Destination::size`]: crate::destinations::Destination::size

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

use crate::destinations::PlatformSize;

/// One point of `GET /api/audiences/{id}/history`.
#[derive(Debug, Clone, Serialize)]
pub struct Point {
    pub at: DateTime<Utc>,
    pub sync_log_id: Uuid,
    /// Members the sync delivered (the log's `synced_count`).
    pub sent: i32,
    pub failed: i32,
    /// `None` for syncs recorded before history existed.
    pub removed: Option<i32>,
    pub approximate_count_lower_bound: Option<i64>,
    pub approximate_count_upper_bound: Option<i64>,
    pub match_rate: Option<f64>,
    pub operation_status: Option<Value>,
    pub delivery_status: Option<Value>,
}

/// One figure for a size given as bounds: the midpoint when both are known (the platform's
/// rounding puts the true size anywhere between them), else the bound there is. A negative
/// bound is Meta's "too small to tell": unknown.
pub fn size_figure(lower: Option<i64>, upper: Option<i64>) -> Option<f64> {
    let known = |b: Option<i64>| b.filter(|n| *n >= 0).map(|n| n as f64);
    match (known(lower), known(upper)) {
        (Some(l), Some(u)) => Some((l + u) / 2.0),
        (l, u) => l.or(u),
    }
}

/// The match rate of a sync's point: the platform's own when it reports one (Google), else the
/// estimate: the size figure ([`size_figure`]) over the members the platform should hold after
/// the sync (every member sent and not removed), at most 1 (rounding may overshoot). `None`
/// when either is unknown or nothing was sent.
pub fn match_rate(size: &PlatformSize, members_held: i64) -> Option<f64> {
    if let Some(rate) = size.match_rate {
        return Some(rate);
    }
    let figure = size_figure(size.lower, size.upper)?;
    (members_held > 0).then(|| (figure / members_held as f64).min(1.0))
}

/// The drop from `before` to `now`, in percent of `before`, when it is more than
/// `threshold_percent` (the `ALERT_SIZE_DROP_PERCENT` alert).
pub fn size_drop(before: Option<f64>, now: Option<f64>, threshold_percent: u32) -> Option<f64> {
    let (before, now) = (before?, now?);
    if before <= 0.0 {
        return None;
    }
    let drop = (before - now) / before * 100.0;
    (drop > f64::from(threshold_percent)).then_some(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_estimate_is_the_midpoint_over_the_members_held() {
        let size = PlatformSize {
            lower: Some(900),
            upper: Some(1100),
            ..PlatformSize::default()
        };
        assert_eq!(match_rate(&size, 2000), Some(0.5));
        assert_eq!(match_rate(&size, 0), None);
        assert_eq!(match_rate(&size, 500), Some(1.0));
        assert_eq!(match_rate(&PlatformSize::default(), 100), None);
        let google = PlatformSize {
            match_rate: Some(0.42),
            ..size
        };
        assert_eq!(match_rate(&google, 2000), Some(0.42));
        assert_eq!(size_figure(Some(-1), Some(-1)), None);
        assert_eq!(size_figure(None, Some(30)), Some(30.0));
    }

    #[test]
    fn a_drop_counts_past_the_threshold_only() {
        assert_eq!(size_drop(Some(1000.0), Some(700.0), 20), Some(30.0));
        assert_eq!(size_drop(Some(1000.0), Some(800.0), 20), None);
        assert_eq!(size_drop(Some(1000.0), Some(1200.0), 20), None);
        assert_eq!(size_drop(None, Some(10.0), 20), None);
        assert_eq!(size_drop(Some(0.0), Some(0.0), 20), None);
    }
}
