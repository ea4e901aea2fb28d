//! The process budget (`FLISTALLOC_CAPACITY`): bytes of flist pools mapped
//! plus live fallback bytes (under the `malloc`/`jemalloc` backends, live
//! bytes requested, when the variable is set). Lock-free counters.

use crate::size_class::MAX_ARENA_SIZE;
use core::sync::atomic::{AtomicUsize, Ordering};

/// The limit; `MAX_ARENA_SIZE` until the configuration sets one.
static LIMIT: AtomicUsize = AtomicUsize::new(MAX_ARENA_SIZE);
/// Bytes counted against the limit. Invariant: at most `LIMIT`.
static USED: AtomicUsize = AtomicUsize::new(0);

/// Sets the limit (once, when the configuration is read).
pub(crate) fn set_limit(bytes: usize) {
    LIMIT.store(bytes, Ordering::Relaxed);
}

/// Bytes left under the limit now.
pub(crate) fn room() -> usize {
    LIMIT
        .load(Ordering::Relaxed)
        .saturating_sub(USED.load(Ordering::Relaxed))
}

/// Counts `bytes` if they fit under the limit; false (nothing counted) if not.
pub(crate) fn take(bytes: usize) -> bool {
    let limit = LIMIT.load(Ordering::Relaxed);
    let mut used = USED.load(Ordering::Relaxed);
    loop {
        let Some(next) = used.checked_add(bytes).filter(|&n| n <= limit) else {
            return false;
        };
        match USED.compare_exchange_weak(used, next, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return true,
            Err(now) => used = now,
        }
    }
}

/// Gives back bytes counted by [`take`].
pub(crate) fn give(bytes: usize) {
    USED.fetch_sub(bytes, Ordering::Relaxed);
}

/// Gives back up to `bytes` (never below zero): for counts that may not
/// have been taken (a C `free` of a block the budget never saw).
pub(crate) fn give_at_most(bytes: usize) {
    let mut used = USED.load(Ordering::Relaxed);
    loop {
        let next = used.saturating_sub(bytes);
        match USED.compare_exchange_weak(used, next, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return,
            Err(now) => used = now,
        }
    }
}
