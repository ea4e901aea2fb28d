//! The cross-thread half of a free (after mimalloc's `free.c`, which names it
//! apart from the local fast path): a chunk of a segment this thread does not
//! own goes onto its pool's atomic remote list, or, when the segment was
//! abandoned, the segment is adopted first and the chunk freed locally.
//!
//! The argument that this is sound, where it is used:
//! * The pusher holds a live chunk, so its pool cannot be released (owners
//!   release only pools whose `used` count, which still counts this chunk,
//!   is 0) and its segment cannot be unmapped before the push completes.
//! * Only the owner takes from a remote list, the whole list at once with
//!   one swap, so there is no ABA (`Pool::push_remote`).
//! * After the push the pusher touches only the owner core, to raise its
//!   `remote_flag`; cores are never unmapped (idle ones are reused), so a
//!   late store into a core whose thread has gone is harmless.
//! * Ownership moves to or from null only under the abandoned-list lock, so
//!   an adopter and a concurrent pusher agree on who owns the segment.

use super::abandoned;
use super::thread_core::{self, ThreadCore};
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
        let mut owner = (*seg).owner();
        if owner.is_null() {
            // Abandoned: adopt it, then free locally.
            let me = threads::attach();
            if !me.is_null() {
                if abandoned::take_if_abandoned(seg, me.cast()) {
                    thread_core::adopt(&mut *me, seg);
                    return true;
                }
                owner = (*seg).owner();
            }
        }
        let Some(pool) = pool_of_chunk_remote(seg, entry, addr) else {
            die(
                b"free of a pointer that is not a live flist chunk (an interior pointer, or memory freed before): ",
                addr,
            )
        };
        if Pool::push_remote(pool, addr) && !owner.is_null() {
            // The list was empty: tell the owner. From here the chunk may be
            // collected and the segment released; only the owner core (never
            // unmapped) is touched.
            (*owner.cast::<ThreadCore>()).policy.remote_flag.raise();
        }
        false
    }
}
