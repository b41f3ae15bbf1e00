//! A sync's deadline, shared by every platform's client: a sync pauses before its invocation
//! ends, so its calls (and their retries) must end in time for it to write where it stopped.

use std::time::{Duration, Instant};

tokio::task_local! {
    /// When the sync making these calls must have paused (see [`within`]).
    static DEADLINE: Option<Instant>;
}

/// Runs `f` (a sync's platform calls) bound by `deadline`: no retry starts that could not finish
/// by [`DEADLINE_GRACE`] past it, and no attempt waits beyond that. A task-local rather than
/// a parameter of every call: the bound belongs to the sync, the calls are many.
pub async fn within<F: std::future::Future>(deadline: Option<Instant>, f: F) -> F::Output {
    DEADLINE.scope(deadline, f).await
}

/// How far past a sync's deadline its platform calls may run: the sync pauses half its reserve
/// (30 s by default) before the invocation ends, and must still write where it stopped.
pub const DEADLINE_GRACE: Duration = Duration::from_secs(20);

/// The latest instant a call may still be waiting for a platform, when a sync set a deadline.
pub fn hard_stop() -> Option<Instant> {
    DEADLINE
        .try_with(|d| *d)
        .ok()
        .flatten()
        .map(|d| d + DEADLINE_GRACE)
}
