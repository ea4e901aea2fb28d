//! The cross-thread half of a free (after mimalloc's `free.c`, which names it
//! apart from the local fast path): a chunk of a segment this thread does not
//! own goes onto its pool's atomic remote stack, and the free that finds the
//! pool not queued queues it on the owner's queue of pools to collect (the
//! owner's slow path takes that queue whole: its cost follows the pools
//! touched, not the heap). When the segment was abandoned, the segment is
//! adopted first and the chunk freed locally.
//!
//! The argument that this is sound, where it is used:
//! * The pusher holds a live chunk, so its pool cannot be released (owners
//!   release only pools whose `used` count, which still counts this chunk,
//!   is 0) and its segment cannot be unmapped before the push completes.
//! * After the push the pool's remote word is not 0 (it has the `QUEUED`
//!   bit), and no pool with a non-zero word is released, so the pusher that
//!   set the bit may still read the segment's owner and write the pool's
//!   queue link; once the pool is on a queue it touches only the owner core
//!   (never unmapped: idle ones are reused).
//! * Only an owner takes chunks off a remote stack, the whole stack at once
//!   with one read-modify-write; only the heap that takes a pool off its own
//!   queue while owning its segment clears the bit (in the same swap), so a
//!   pool is on at most one queue, and a push after the clear queues it
//!   again: no ABA, no lost wake-up (`Pool::push_remote`, the loom model in
//!   `pool::loom_tests`).
//! * Ownership moves to or from null only under the abandoned-list lock, so
//!   an adopter and a concurrent pusher agree on who owns the segment; a
//!   pusher that finds it abandoned clears its bit under that lock and the
//!   adopter collects the chunks (`abandoned::owner_or_unqueue`).

use super::abandoned;
use super::thread_core;
use super::threads;
use crate::flist_core::pool_of_chunk_remote;
use crate::msg::die;
use crate::pool::Pool;
use crate::segment::Segment;

/// Frees chunk `addr` of `seg`, a global segment this thread does not own.
/// Returns true when the segment was adopted by this thread (the caller then
/// frees the chunk locally).
///
/// # Safety
/// `seg` is the live segment `entry` (its map entry) describes, and `addr`
/// a chunk of it that the caller hands back, or misuse to report.
#[inline(never)]
pub(crate) unsafe fn free(seg: *mut Segment, entry: usize, addr: usize) -> bool {
    // SAFETY: the caller holds a live chunk of `seg`, so the segment and the
    // chunk's pool stay live until the chunk is handed back below.
    unsafe {
        if (*seg).owner().is_null() {
            // Abandoned: adopt it, then free locally.
            let me = threads::attach();
            if !me.is_null() && abandoned::take_if_abandoned(seg, me.cast()) {
                thread_core::adopt(&mut *me, seg);
                return true;
            }
        }
        let Some(pool) = pool_of_chunk_remote(seg, entry, addr) else {
            die(
                b"free of a pointer that is not a live flist chunk (an interior pointer, or memory freed before): ",
                addr,
            )
        };
        if Pool::push_remote(pool, addr) {
            // This push set the pool's bit: queue it on its owner (read
            // again: it may have changed since the read above).
            thread_core::enqueue(pool, seg);
        }
        false
    }
}
