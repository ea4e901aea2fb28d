//! A thread's core: the flist core with the thread policy. Beyond an
//! `Arena`'s core it counts against the process budget, keeps a bounded
//! reserve of empty pools (then hands the oldest back to the OS), collects
//! chunks other threads freed through its queue of pools ([`collect_queue`]),
//! and adopts abandoned segments; at thread exit it abandons its segments
//! ([`abandon`]).

use super::{abandoned, budget};
use crate::flist_core::{Core, Policy};
use crate::list::{Adapter, Link, List};
use crate::pool::{EmptyQueue, Pool, PoolQueue};
use crate::segment::Segment;
use crate::segment_map::GLOBAL_TAG;
use crate::stats;
use core::ptr::null_mut;
use core::sync::atomic::Ordering;

/// The per-thread state of the global allocator.
pub(crate) type ThreadCore = Core<ThreadPolicy>;

/// What a thread's core keeps beyond an `Arena`'s.
pub(crate) struct ThreadPolicy {
    /// Pools of our segments into which other threads freed chunks: the
    /// free that sets a pool's `QUEUED` bit pushes the pool here (see
    /// `Pool`'s `remote`); the owner takes the whole queue in its slow path
    /// ([`collect_queue`]). Cores are never unmapped, so a push onto the
    /// queue of a core whose thread has gone is harmless: the pool waits
    /// there for the core's next thread (which hands it on if the segment
    /// has moved), and stays live meanwhile.
    pub(crate) queue: PoolQueue,
    /// True while the core collects its queue or adopts a segment: a pool
    /// emptied then does not make [`ThreadPolicy::pool_emptied`] collect the
    /// queue itself (no recursion, and the caller's pointers to pools stay
    /// valid).
    collecting: bool,
    /// Pools that became empty, oldest first: the reserve. A pool reused
    /// since it was queued stays queued (and counted) until it is popped.
    empty: List<EmptyQueue>,
    /// Bytes of the pools on `empty`. Invariant: at most `reserve_bytes`
    /// after every free (and `empty.len()` at most `reserve_pools`).
    empty_bytes: usize,
    /// The reserve's bounds, from the configuration.
    reserve_pools: usize,
    reserve_bytes: usize,
    /// Link in the stack of idle thread cores (`threads.rs`).
    pub(crate) idle: Link<ThreadCore>,
    /// A robust mutex the thread using this core holds from attach to its
    /// exit (see `threads::reap_dead`). Initialised before first use.
    pub(crate) owner_lock: libc::pthread_mutex_t,
    /// Whether a thread uses this core; read and written only while holding
    /// `owner_lock`.
    pub(crate) attached: bool,
    /// Link in the list of every thread core ever made (never unmapped);
    /// written once, before the core is published.
    pub(crate) next_all: *mut ThreadCore,
}

/// Adapter for the stack of idle thread cores.
pub(crate) struct IdleList;
// SAFETY: returns the `policy.idle` field, derived from the raw pointer.
unsafe impl Adapter for IdleList {
    type Node = ThreadCore;
    unsafe fn link(node: *mut ThreadCore) -> *mut Link<ThreadCore> {
        // SAFETY: `node` is a live thread core (trait contract).
        unsafe { core::ptr::addr_of_mut!((*node).policy.idle) }
    }
}

impl ThreadPolicy {
    /// A fresh policy with the reserve bounds of the configuration.
    pub(crate) fn new(reserve_pools: usize, reserve_bytes: usize) -> ThreadPolicy {
        ThreadPolicy {
            queue: PoolQueue::new(),
            collecting: false,
            empty: List::NEW,
            empty_bytes: 0,
            reserve_pools,
            reserve_bytes,
            idle: Link::NEW,
            owner_lock: libc::PTHREAD_MUTEX_INITIALIZER,
            attached: false,
            next_all: null_mut(),
        }
    }

    /// Takes the oldest pool off the reserve queue, or null.
    fn pop_empty(&mut self) -> *mut Pool {
        // SAFETY: queue members are live pools of this core.
        let p = unsafe { self.empty.pop_front() };
        if !p.is_null() {
            // SAFETY: as above.
            let bytes = unsafe { (*p).bytes() };
            self.empty_bytes -= bytes;
            stats::RESERVE_BYTES.fetch_sub(bytes as isize, Ordering::Relaxed);
        }
        p
    }
}

impl Policy for ThreadPolicy {
    const TRACKS_EMPTY: bool = true;

    fn tag(&self) -> usize {
        GLOBAL_TAG
    }

    fn room(&self, _heap: usize) -> usize {
        budget::room()
    }

    fn claim(&self, bytes: usize) -> bool {
        budget::take(bytes)
    }

    fn unclaim(&self, bytes: usize) {
        budget::give(bytes)
    }

    fn count(&self, pool_bytes: isize, pools: isize, segment_bytes: isize) {
        stats::count(pool_bytes, pools, segment_bytes);
    }

    /// Queues the pool in the reserve, then hands the oldest queued pools
    /// back until both bounds hold again (one out per one in is not enough
    /// once the oldest pools are smaller than the newest). A popped pool
    /// that was reused since it was queued just leaves the queue.
    ///
    /// Then, on a free, collects the core's queue of pools if any are
    /// queued: a thread that only frees (a consumer) never takes its
    /// allocation slow path, and a pool on its queue is pinned (never
    /// released) until collected, so without this its pools emptied by its
    /// own frees would stay held.
    unsafe fn pool_emptied(core: &mut ThreadCore, pool: *mut Pool) {
        // SAFETY: `pool` is a live pool of ours (contract), and so is every
        // queue member; releasing a popped pool never unmaps the segment of
        // `pool`, which still has a live pool (itself) unless it was popped.
        unsafe {
            debug_assert!(!(*pool).empty.is_linked());
            let policy = &mut core.policy;
            policy.empty.push_back(pool);
            policy.empty_bytes += (*pool).bytes();
            stats::RESERVE_BYTES.fetch_add((*pool).bytes() as isize, Ordering::Relaxed);
            while core.policy.empty.len() > core.policy.reserve_pools
                || core.policy.empty_bytes > core.policy.reserve_bytes
            {
                let p = core.policy.pop_empty();
                // A queued pool is released once its queue is collected.
                if (*p).used() == 0 && !(*p).remote_in_use() {
                    core.release_pool_and_segment(p);
                }
            }
        }
        // `pool` is not touched any more: collecting may release it.
        if !core.policy.collecting && !core.policy.queue.is_empty() {
            collect_queue(core);
        }
    }

    unsafe fn pool_released(core: &mut ThreadCore, pool: *mut Pool) {
        // SAFETY: a live pool of ours (contract); if queued, it is on our
        // queue.
        unsafe {
            if (*pool).empty.is_linked() {
                let p = &mut core.policy;
                p.empty.remove(pool);
                p.empty_bytes -= (*pool).bytes();
                stats::RESERVE_BYTES.fetch_sub((*pool).bytes() as isize, Ordering::Relaxed);
            }
        }
    }

    /// Collects the queued pools (the slab has no pool left, or none with
    /// room), then adopts an abandoned segment.
    fn refill(core: &mut ThreadCore) -> bool {
        if collect_queue(core) {
            return true;
        }
        match abandoned::pop_to((core as *mut ThreadCore).cast()) {
            Some(seg) => {
                // SAFETY: popped off the abandoned list with us as owner.
                unsafe { adopt(core, seg) };
                true
            }
            None => false,
        }
    }

    /// Over the budget: hands the whole reserve back.
    fn reclaim(core: &mut ThreadCore) -> bool {
        purge_reserve(core)
    }
}

/// Returns every pool of the empty reserve to the OS now; true if any was
/// released.
pub(crate) fn purge_reserve(core: &mut ThreadCore) -> bool {
    let mut released = false;
    loop {
        let p = core.policy.pop_empty();
        if p.is_null() {
            return released;
        }
        // SAFETY: a live pool of ours, off the queue; released only if
        // still empty with its remote word 0.
        unsafe {
            if (*p).used() == 0 && !(*p).remote_in_use() {
                core.release_pool_and_segment(p);
                released = true;
            }
        }
    }
}

/// Takes `core`'s queue of pools whole and collects it (see
/// [`Core::collect_queue`]); pools of segments `core` no longer owns are
/// handed on with [`enqueue`]. True when any chunk was collected.
#[cold]
#[inline(never)]
pub(crate) fn collect_queue(core: &mut ThreadCore) -> bool {
    let list = core.policy.queue.take();
    let was = core::mem::replace(&mut core.policy.collecting, true);
    // SAFETY: taken just now by the core's owner from its own queue; a
    // foreign pool has its bit set and is on no queue any more, and we took
    // it off ours, so we may queue it again.
    let found = unsafe { core.collect_queue(list, |pool, seg| enqueue(pool, seg)) };
    core.policy.collecting = was;
    found
}

/// Queues `pool` (of `seg`) on the queue of the segment's owner; or, if the
/// segment is abandoned, clears its `QUEUED` bit under the abandoned lock,
/// leaving its chunks to the adopter ([`abandoned::owner_or_unqueue`]). After
/// the push only the owner core is touched (never unmapped).
///
/// # Safety
/// `seg` is live; `pool` is a pool of it with `QUEUED` set, on no queue,
/// which the caller is entitled to queue: the remote free whose push set
/// the bit, or a core that took the pool off its own queue.
pub(crate) unsafe fn enqueue(pool: *mut Pool, seg: *mut Segment) {
    // SAFETY: contract; the set bit keeps the pool and its segment live
    // until the pool is on a queue or unqueued; cores are never unmapped.
    unsafe {
        let mut owner = (*seg).owner();
        if owner.is_null() {
            owner = abandoned::owner_or_unqueue(seg, pool);
        }
        if !owner.is_null() {
            (*owner.cast::<ThreadCore>()).policy.queue.push(pool);
        }
    }
}

/// Takes a segment whose owner was just set to `core`.
///
/// # Safety
/// `seg` was removed from the abandoned list with its owner set to `core`.
pub(crate) unsafe fn adopt(core: &mut ThreadCore, seg: *mut Segment) {
    let was = core::mem::replace(&mut core.policy.collecting, true);
    // SAFETY: contract: the segment is ours alone, on no list.
    let pools = unsafe { core.adopt_segment(seg) };
    core.policy.collecting = was;
    stats::POOLS_ABANDONED.fetch_sub(pools as isize, Ordering::Relaxed);
}

/// At thread exit: collects remote frees, returns empty pools and segments,
/// abandons the rest to other threads, and leaves the core empty, ready for
/// the next thread.
///
/// The queue is collected first, and again once the segments are abandoned:
/// a pool queued in between is then handed on (its segment now abandoned or
/// adopted). A pool queued after that (its pusher read this core as the
/// owner before the segment was abandoned) waits on this core's queue for
/// the core's next thread, which hands it on; until then it stays live,
/// with its segment.
pub(crate) fn abandon(core: &mut ThreadCore) {
    collect_queue(core);
    core.invariant();
    // SAFETY: the queue's members are live pools of ours.
    unsafe { core.policy.empty.invariant() };
    while !core.policy.pop_empty().is_null() {}
    // SAFETY: the reserve queue is empty, so the policy holds no pool on a
    // list of its own; each kept segment is handed to the abandoned list.
    unsafe {
        core.abandon_segments(|seg, pools| {
            stats::POOLS_ABANDONED.fetch_add(pools as isize, Ordering::Relaxed);
            abandoned::push(seg);
        });
    }
    collect_queue(core);
}
