//! Bounds and defaults every backend shares, so that a store behaves the same whichever holds
//! the data.
//!
//! What is here is part of [`crate::Store`]'s contract (how much one call may do, what it
//! reports); a backend must use these rather than its own copies. Layout choices of one backend
//! (partition sizes, batch sizes) stay in that backend.

use crate::StoredMessage;

/// Most inbox entries one read-pointer move ([`crate::Store::read_upto`]) looks at: bounds the
/// work of `{"upto": …}` after a long absence.
pub const READ_SCAN: usize = 5000;

/// Most messages one read-pointer move reports as newly read (the newest are kept).
pub const READ_REPORT: usize = 1000;

/// How long a `(sender, cid)` pair deduplicates unless configured (`limits.dedup_hours` = 48).
pub const DEFAULT_DEDUP_MS: u64 = 48 * 3600 * 1000;

/// Writes accepted and not yet committed before new ones get [`crate::StoreError::Busy`],
/// unless configured (`store.max_queue`).
pub const DEFAULT_MAX_WAITING: usize = 16_384;

/// Keeps the newest [`READ_REPORT`] of the messages a read-pointer move made read (they are in
/// inbox order, oldest first).
pub fn trim_newly_read(newly: &mut Vec<StoredMessage>) {
    if newly.len() > READ_REPORT {
        newly.drain(..newly.len() - READ_REPORT);
    }
}
