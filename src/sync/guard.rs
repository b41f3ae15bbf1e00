//! Removal guardrails (DESIGN §8.4): a sync that would take out more than an audience's
//! `max_removal_percent` of what its platform holds, or leave fewer than its `min_members`, is
//! blocked before any platform call, so that an upstream mistake (an emptied table, a broken
//! rule) cannot wipe a live audience. `"force": true` on the sync request lets it through once.
//!
//! What is counted: leavers whose rows the platform holds and whose person is still there and
//! has not opted out. Erased and opted-out people are never counted (their removal is owed
//! to them, whatever the numbers); a changed member whose old row is replaced is not a leaver.
//! What the platform holds is the audience's `total_synced` (its synced members when the last
//! sync ended) less those erased or opted-out leavers: a stored number, so the check costs no
//! scan of the audience. A first sync (the platform holds nothing) is never blocked.

use serde::{Deserialize, Serialize};

use super::member_store::DiffCounts;
use crate::audience::Audience;

/// Why a sync was (or would be) blocked, with the numbers; the fields of a blocked answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Block {
    /// `max_removal_percent` or `min_members`.
    pub blocked_by: String,
    pub would_remove: u64,
    pub holds: u64,
    pub would_leave: u64,
}

impl Block {
    /// The sentence kept on the audience (`sync_error_message`) and in the log row.
    pub fn message(&self, audience: &Audience) -> String {
        let limit = match self.blocked_by.as_str() {
            "min_members" => format!(
                "it would leave {} members, fewer than min_members {}",
                self.would_leave, audience.min_members
            ),
            _ => format!(
                "it would remove {} of the {} members the platform holds, more than \
                 max_removal_percent {}%",
                self.would_remove,
                self.holds,
                audience.max_removal_percent.unwrap_or(100)
            ),
        };
        format!(
            "blocked by the removal guardrails: {limit}; nothing was sent or removed. Check the \
             segment; if the removal is intended, sync with \"force\": true (once) or change the \
             audience's limit"
        )
    }
}

/// The block the audience's limits put on a diff, if any.
pub fn check(audience: &Audience, counts: &DiffCounts) -> Option<Block> {
    let total_synced = u64::try_from(audience.total_synced).unwrap_or(0);
    let min_members = u64::try_from(audience.min_members).unwrap_or(0);
    limit(
        audience.max_removal_percent,
        min_members,
        total_synced,
        counts,
    )
}

/// [`check`] on the numbers alone.
fn limit(
    max_removal_percent: Option<i32>,
    min_members: u64,
    total_synced: u64,
    counts: &DiffCounts,
) -> Option<Block> {
    let would_remove = counts.guarded;
    let purged = counts.leavers.saturating_sub(counts.guarded);
    let holds = total_synced.saturating_sub(purged);
    // Nothing to protect (a first sync), or nothing to take out.
    if holds == 0 || would_remove == 0 {
        return None;
    }
    let would_leave = holds.saturating_sub(would_remove);
    let block = |by: &str| Block {
        blocked_by: by.to_string(),
        would_remove,
        holds,
        would_leave,
    };
    if let Some(percent) = max_removal_percent {
        // More than the share, in integers: would_remove / holds > percent / 100.
        if u128::from(would_remove) * 100 > u128::from(holds) * percent.max(0) as u128 {
            return Some(block("max_removal_percent"));
        }
    }
    if would_leave < min_members {
        return Some(block("min_members"));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(leavers: u64, guarded: u64) -> DiffCounts {
        DiffCounts {
            joiners: 0,
            leavers,
            guarded,
        }
    }

    fn by(b: Option<Block>) -> Option<(String, u64, u64, u64)> {
        b.map(|b| (b.blocked_by, b.would_remove, b.holds, b.would_leave))
    }

    #[test]
    fn more_than_the_share_is_blocked_the_share_itself_is_not() {
        assert_eq!(limit(Some(50), 0, 100, &counts(50, 50)), None);
        assert_eq!(
            by(limit(Some(50), 0, 100, &counts(51, 51))),
            Some(("max_removal_percent".into(), 51, 100, 49))
        );
        assert_eq!(
            limit(Some(100), 0, 10, &counts(10, 10)),
            None,
            "100% allows all"
        );
        assert_eq!(limit(None, 0, 10, &counts(10, 10)), None, "no limit");
    }

    #[test]
    fn erased_and_opted_out_leavers_are_neither_counted_nor_held() {
        // 70 of 100 leave, 60 of them erased or opted out: 10 of the 40 left held is 25%.
        assert_eq!(limit(Some(50), 0, 100, &counts(70, 10)), None);
        assert_eq!(limit(Some(50), 0, 100, &counts(60, 0)), None);
        assert_eq!(
            by(limit(Some(20), 0, 100, &counts(70, 10))),
            Some(("max_removal_percent".into(), 10, 40, 30))
        );
    }

    #[test]
    fn min_members_blocks_only_a_sync_that_removes() {
        assert_eq!(
            by(limit(Some(50), 10, 12, &counts(3, 3))),
            Some(("min_members".into(), 3, 12, 9))
        );
        assert_eq!(limit(Some(50), 9, 12, &counts(3, 3)), None);
        assert_eq!(
            limit(Some(50), 100, 12, &counts(0, 0)),
            None,
            "nothing removed"
        );
    }

    #[test]
    fn a_first_sync_is_never_blocked() {
        assert_eq!(limit(Some(1), 1000, 0, &counts(5, 5)), None);
    }
}
