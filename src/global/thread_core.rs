//! A thread's core: the flist core with the thread policy. Beyond an
//! `Arena`'s core it counts against the process budget, keeps a bounded
//! reserve of empty pools (then hands the oldest back to the OS), collects
//! chunks other threads freed through its queue of pools ([`collect_queue`]),
//! and adopts abandoned segments. At thread exit it keeps its memory for the
//! next thread ([`retire`]) unless the warm idle heaps are over their bounds
//! (`threads.rs`), when the oldest warm one abandons its segments
//! ([`abandon`]).

use super::abandoned::SpinLock;
use super::{abandoned, budget, threads};
use crate::flist_core::{Core, Policy};
use crate::list::{Adapter, Link, List};
use crate::os;
use crate::pool::{EmptyQueue, Pool, PoolQueue};
use crate::segment::Segment;
use crate::segment_map::GLOBAL_TAG;
use crate::stats;
use core::cell::UnsafeCell;
use core::ptr::{null_mut, NonNull};
use core::sync::atomic::{fence, AtomicBool, Ordering};

/// The per-thread state of the global allocator.
pub(crate) type ThreadCore = Core<ThreadPolicy>;

/// A thread heap's reserve: empty pools kept for reuse, off their slab's
/// lists of pools with room, so a new pool of any slab can reuse their warm
/// pages, and any thread can decommit them when the budget runs out.
pub(crate) struct Reserve {
    /// The pools, oldest first (except that thread exit moves those whose
    /// pages were all touched to the end, newest). Invariant: a pool is on it iff its `empty`
    /// link is linked; each member is a live pool of this heap with no live
    /// chunk, on no slab list, whose pages hold nothing anyone needs; a
    /// member has a non-empty remote word only if it entered with one, and
    /// then is never decommitted or reused.
    pools: List<EmptyQueue>,
    /// Bytes of the pools on `pools` (decommitted ones included).
    /// Invariant: at most `reserve_bytes` after every free (and
    /// `pools.len()` at most `reserve_pools`).
    bytes: usize,
}

/// What a thread's core keeps beyond an `Arena`'s.
pub(crate) struct ThreadPolicy {
    /// Pools of our segments into which other threads freed chunks: the
    /// free that sets a pool's `QUEUED` bit pushes the pool here (see
    /// `Pool`'s `remote`); the owner takes the whole queue in its slow path
    /// ([`collect_queue`]). Cores are never unmapped, so a push onto the
    /// queue of a core whose thread has gone is harmless: the pusher
    /// collects the queue for the idle core if it can ([`enqueue`],
    /// `threads::service_idle`), handing the pool on if its segment has
    /// moved; otherwise the pool waits there, live, for the next push or the
    /// core's next thread.
    pub(crate) queue: PoolQueue,
    /// True while the core collects its queue or adopts a segment: a pool
    /// emptied then does not make [`ThreadPolicy::pool_emptied`] collect the
    /// queue itself (no recursion, and the caller's pointers to pools stay
    /// valid).
    collecting: bool,
    /// Guards `reserve`: the list, its members' `empty` links, their
    /// `decommitted` flags and `emptied_ms` times, and `bytes`. The owner takes it to put pools on
    /// or take them off (only the owner changes the list, so it may read a
    /// pool's `empty` link without the lock); other threads take it with
    /// `try_lock` only (never waiting on a thread) to decommit members
    /// ([`decommit_reserve`], [`decommit_expired`]); the fork handlers hold every one across
    /// `fork`. Held for a few list steps and `madvise` calls, never across
    /// an allocation or another lock.
    pub(crate) reserve_lock: SpinLock,
    /// The reserve (see `Reserve`), reached only under `reserve_lock`.
    reserve: UnsafeCell<Reserve>,
    /// The reserve's bounds, from the configuration.
    reserve_pools: usize,
    reserve_bytes: usize,
    /// Link in the stack of idle thread cores (`threads.rs`).
    pub(crate) idle: Link<ThreadCore>,
    /// Whether this idle core still holds its pools and segments (a warm
    /// idle heap, `threads.rs`), and the committed bytes of its reserve
    /// when it went idle (0 once the idle stack's byte bound decommitted
    /// them). Read and written under the idle stack's lock.
    pub(crate) warm: bool,
    pub(crate) warm_bytes: usize,
    /// A robust mutex the thread using this core holds from attach to its
    /// exit (see `threads::reap_dead`). Initialised before first use.
    pub(crate) owner_lock: libc::pthread_mutex_t,
    /// Whether a thread uses this core; read and written only while holding
    /// `owner_lock`.
    pub(crate) attached: bool,
    /// `!attached`, readable without the lock: set by thread exit before
    /// it releases `owner_lock`, cleared by attach once it holds it. Only a
    /// hint (a free that queues a pool here reads it to decide whether to
    /// collect the queue for the idle heap, `threads::service_idle`, which
    /// checks `attached` under the lock).
    pub(crate) idle_hint: AtomicBool,
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
            reserve_lock: SpinLock::new(),
            reserve: UnsafeCell::new(Reserve {
                pools: List::NEW,
                bytes: 0,
            }),
            reserve_pools,
            reserve_bytes,
            idle: Link::NEW,
            warm: false,
            warm_bytes: 0,
            owner_lock: libc::PTHREAD_MUTEX_INITIALIZER,
            attached: false,
            idle_hint: AtomicBool::new(false),
            next_all: null_mut(),
        }
    }

    /// Runs `f` on the reserve with its lock held.
    fn with_reserve<R>(&self, f: impl FnOnce(&mut Reserve) -> R) -> R {
        self.reserve_lock.lock();
        // SAFETY: we hold `reserve_lock`, which guards `reserve`.
        let r = f(unsafe { &mut *self.reserve.get() });
        self.reserve_lock.unlock();
        r
    }

    /// Takes the oldest pool off the reserve if the reserve is over its
    /// bounds (or always, with `all`); null if not.
    fn pop_oldest(&self, all: bool) -> *mut Pool {
        self.pop_oldest_over(if all { 0 } else { self.reserve_bytes })
    }

    /// Takes the oldest pool off the reserve if the reserve holds more than
    /// `max_bytes` bytes or `reserve_pools` pools (any pool when `max_bytes`
    /// is 0); null if not.
    fn pop_oldest_over(&self, max_bytes: usize) -> *mut Pool {
        let max_pools = if max_bytes == 0 {
            0
        } else {
            self.reserve_pools
        };
        let max_bytes = max_bytes.min(self.reserve_bytes);
        self.with_reserve(|r| {
            if r.pools.len() <= max_pools && r.bytes <= max_bytes {
                return null_mut();
            }
            let p = r.pools.head();
            if !p.is_null() {
                // SAFETY: a member: a live pool of ours, on this list.
                unsafe { r.take(p) };
            }
            p
        })
    }
}

impl Reserve {
    /// Takes member `p` off the list.
    ///
    /// # Safety
    /// `p` is on the list; the caller holds the reserve lock.
    unsafe fn take(&mut self, p: *mut Pool) {
        // SAFETY: a member, so a live pool on this list (contract).
        unsafe {
            self.pools.remove(p);
            self.bytes -= (*p).bytes();
            stats::RESERVE_BYTES.fetch_sub((*p).bytes() as isize, Ordering::Relaxed);
        }
    }
}

/// A pool the reserve let go (over its bounds, or purged): released with
/// its segment if that empties, or, if its remote word is not empty (it
/// entered the reserve so, and was never decommitted), put back on its
/// slab's list.
///
/// # Safety
/// `p` is a live pool of `core` with no live chunk, just taken off its
/// reserve.
unsafe fn let_go(core: &mut ThreadCore, p: *mut Pool) -> bool {
    // SAFETY: `p` is a live pool of `core`, off every list and with no live
    // chunk (precondition), so releasing it or relinking it on its slab's
    // list is the owner's to do.
    unsafe {
        if (*p).used() == 0 && !(*p).remote_in_use() {
            core.release_pool_and_segment(p);
            true
        } else {
            debug_assert!(!(*p).is_decommitted());
            core.relink(p);
            false
        }
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

    fn count_purged(&self, bytes: usize) {
        stats::PURGED_BYTES.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Unless it is its slab's last pool with room, takes the pool off its
    /// slab's list and onto the reserve, then hands the oldest reserve pools
    /// back until both bounds hold again (one out per one in is not enough
    /// once the oldest pools are smaller than the newest). A pool whose
    /// remote word is in use is not released (`let_go`).
    ///
    /// Then, on a free, collects the core's queue of pools if any are
    /// queued: a thread that only frees (a consumer) never takes its
    /// allocation slow path, and a pool on its queue is pinned (never
    /// released) until collected, so without this its pools emptied by its
    /// own frees would stay held.
    unsafe fn pool_emptied(core: &mut ThreadCore, pool: *mut Pool) {
        // SAFETY: `pool` is a live pool of ours on its slab's list
        // (contract), and so is every reserve member; releasing a popped
        // pool never unmaps the segment of a pool still on the reserve.
        unsafe {
            debug_assert!(!(*pool).empty.is_linked());
            if !core.take_off_slab(pool) {
                return;
            }
            threads::purge_expired(Some(&core.policy));
            let now = threads::now_ms();
            core.policy.with_reserve(|r| {
                (*pool).emptied_ms = now;
                r.pools.push_back(pool);
                r.bytes += (*pool).bytes();
            });
            stats::RESERVE_BYTES.fetch_add((*pool).bytes() as isize, Ordering::Relaxed);
            loop {
                let p = core.policy.pop_oldest(false);
                if p.is_null() {
                    break;
                }
                let_go(core, p);
            }
        }
        // `pool` is not touched any more: collecting may release it.
        if !core.policy.collecting && !core.policy.queue.is_empty() {
            collect_queue(core);
        }
    }

    unsafe fn pool_released(core: &mut ThreadCore, pool: *mut Pool) {
        // SAFETY: a live pool of ours (contract); if its `empty` link is
        // linked it is on our reserve (only we change that list).
        unsafe {
            if (*pool).empty.is_linked() {
                core.policy.with_reserve(|r| r.take(pool));
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

    /// Over the budget: hands this heap's reserve back, then decommits the
    /// reserves of every other heap whose lock is free.
    fn reclaim(core: &mut ThreadCore) -> bool {
        reclaim_everywhere(core)
    }

    /// Over the reserve, newest first: the newest pool of slab `idx` whose
    /// pages were all touched (looked for among the 64 newest once one of
    /// slab `idx` is found), else the newest of slab `idx`, else the
    /// newest of another slab of `chunk..=max_bytes` bytes, else the
    /// smallest larger one (its pages are held anyway; warm pages before new
    /// ones); a decommitted one only if its bytes can be claimed again.
    fn reuse(
        core: &mut ThreadCore,
        idx: usize,
        chunk: usize,
        max_bytes: usize,
    ) -> Option<(*mut Pool, bool)> {
        core.policy.with_reserve(|r| {
            // SAFETY: members are live pools of ours (the list's invariant);
            // we hold the lock, which guards their `decommitted` flags.
            unsafe {
                let (mut same, mut small, mut big): (*mut Pool, *mut Pool, *mut Pool) =
                    (null_mut(), null_mut(), null_mut());
                let mut p = r.pools.tail();
                let mut looked = 0;
                while !p.is_null() {
                    let bytes = (*p).bytes();
                    if !(*p).remote_in_use() && bytes >= chunk {
                        if (*p).slab() == idx {
                            // Warm all through (every chunk was handed out)
                            // first: the next thread repeats the last one's
                            // pattern. Looked for among the 64 newest only
                            // once one of the slab is found, so a slab that
                            // cycles a pool does not walk the whole reserve.
                            if (*p).all_carved() && !(*p).is_decommitted() {
                                same = p;
                                break;
                            }
                            if same.is_null() {
                                same = p;
                            }
                        } else if bytes <= max_bytes {
                            if small.is_null() {
                                small = p;
                            }
                        } else if bytes <= 2 * max_bytes
                            && (big.is_null() || bytes < (*big).bytes())
                        {
                            big = p;
                        }
                    }
                    if !same.is_null() && looked >= 64 {
                        break;
                    }
                    looked += 1;
                    p = List::<EmptyQueue>::prev(p);
                }
                let best = [same, small, big]
                    .into_iter()
                    .find(|p| !p.is_null())
                    .unwrap_or(null_mut());
                if best.is_null() {
                    return None;
                }
                let decommitted = (*best).is_decommitted();
                if decommitted && !budget::take((*best).bytes()) {
                    return None;
                }
                r.take(best);
                (*best).set_decommitted(false);
                Some((best, decommitted))
            }
        })
    }
}

/// Over the budget: hands `core`'s reserve back to the OS, then decommits
/// the reserve pools of every thread heap (live, idle) whose reserve lock is
/// free; true if any bytes were given back to the budget.
pub(crate) fn reclaim_everywhere(core: &mut ThreadCore) -> bool {
    let released = purge_reserve(core);
    threads::decommit_reserves(&core.policy) > 0 || released
}

/// Returns every pool of the empty reserve to the OS now; true if any was
/// released.
pub(crate) fn purge_reserve(core: &mut ThreadCore) -> bool {
    let mut released = false;
    loop {
        let p = core.policy.pop_oldest(true);
        if p.is_null() {
            return released;
        }
        // SAFETY: a live pool of ours with no live chunk, just taken off
        // the reserve.
        released |= unsafe { let_go(core, p) };
    }
}

/// Decommits the pages of `core`'s reserve pools that are not decommitted
/// yet (and have an empty remote word), and gives their bytes back to the
/// budget, if its reserve lock is free now; returns the bytes given back.
/// Any thread may call it: the pools stay on the reserve, marked, and their
/// owner claims their bytes again when it reuses one.
///
/// # Safety
/// `core` is a live thread core (cores are never unmapped).
pub(crate) unsafe fn decommit_reserve(core: *mut ThreadCore) -> usize {
    // SAFETY: `core` is a live thread core (precondition; cores are never
    // unmapped), which is all `decommit_expired` asks: it takes the reserve
    // lock itself before touching the reserve.
    unsafe { decommit_expired(core, 0, 0) }
}

/// [`decommit_reserve`] for the pools that went onto the reserve at least
/// `delay` milliseconds before `now` (the purge by time).
///
/// # Safety
/// `core` is a live thread core (cores are never unmapped).
pub(crate) unsafe fn decommit_expired(core: *mut ThreadCore, now: u32, delay: u32) -> usize {
    // SAFETY: `core` is live (contract); only its reserve lock and reserve
    // are reached, through raw pointers (its owner may hold `&mut` to the
    // rest of the core).
    unsafe {
        decommit_older(
            &*core::ptr::addr_of!((*core).policy.reserve_lock),
            (*core::ptr::addr_of!((*core).policy.reserve)).get(),
            now,
            delay,
        )
    }
}

impl ThreadPolicy {
    /// [`decommit_expired`] for the calling thread's own heap (reached
    /// through its own reference, not through `threads::ALL`).
    pub(crate) fn decommit_own(&self, now: u32, delay: u32) -> usize {
        // SAFETY: this policy's own lock and reserve.
        unsafe { decommit_older(&self.reserve_lock, self.reserve.get(), now, delay) }
    }
}

/// Decommits the reserve pools behind `lock` that emptied at least `delay`
/// ms before `now` (all of them when both are 0), if the lock is free now.
///
/// # Safety
/// `lock` and `reserve` are one live thread core's reserve lock and
/// reserve.
unsafe fn decommit_older(lock: &SpinLock, reserve: *const Reserve, now: u32, delay: u32) -> usize {
    // SAFETY: the reserve is reached only while we hold its lock (contract).
    // Members are live pools with no live chunk whose pages hold nothing
    // anyone needs (the list's invariant), so their pages may be
    // decommitted; a page-aligned range inside their segment.
    unsafe {
        if !lock.try_lock() {
            return 0;
        }
        let r = &*reserve;
        let mut given = 0;
        let mut p = r.pools.head();
        while !p.is_null() {
            if !(*p).is_decommitted()
                && !(*p).remote_in_use()
                && now.wrapping_sub((*p).emptied_ms) >= delay
            {
                let bytes = (*p).bytes();
                os::decommit(NonNull::new_unchecked((*p).start()), bytes);
                (*p).set_decommitted(true);
                budget::give(bytes);
                given += bytes;
            }
            p = List::<EmptyQueue>::next(p);
        }
        lock.unlock();
        given
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
/// the push only the owner core is touched (never unmapped). If no thread
/// uses the owner (an idle heap), collects its queue for it
/// ([`threads::service_idle`]), so memory freed into an idle heap does not
/// wait for the heap's next thread.
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
            let owner = owner.cast::<ThreadCore>();
            (*owner).policy.queue.push(pool);
            // Pairs with the fence in thread exit: either it sees our push
            // (and collects its queue itself) or we see its hint.
            fence(Ordering::SeqCst);
            if (*owner).policy.idle_hint.load(Ordering::Relaxed) {
                threads::service_idle(owner);
            }
        }
    }
}

/// For an idle heap (`threads::service_idle`): collects its queue, then
/// hands the oldest reserve pools back until the reserve holds at most
/// `max_bytes` (what the idle stack counted for it, or a floor), so the pools emptied
/// by the collection do not grow it past the warm idle heaps' bound.
pub(crate) fn service(core: &mut ThreadCore, max_bytes: usize) {
    collect_queue(core);
    loop {
        let p = core.policy.pop_oldest_over(max_bytes);
        if p.is_null() {
            break;
        }
        // SAFETY: a live pool of ours with no live chunk, just taken off
        // the reserve.
        unsafe { let_go(core, p) };
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

/// At thread exit: collects the chunks other threads freed (its queue of
/// pools; a pool queued later waits there for the next thread that takes
/// the core, live, with its segment), moves every
/// empty pool onto the reserve (those whose pages were all touched newest),
/// hands the oldest reserve pools back until the reserve holds at most
/// `max_bytes` (and its own bounds), and keeps everything else (pools with
/// live chunks, the reserve, segments) for the next thread that takes the
/// core. Pools with live chunks are not bounded here: giving them up
/// ([`abandon`]) would return none of their pages, and the next thread of
/// this heap fills their free chunks before it makes new pools.
pub(crate) fn retire(core: &mut ThreadCore, max_bytes: usize) {
    core.invariant();
    collect_queue(core);
    // Every empty pool onto the reserve, where the next thread's new pools
    // look for the warmest first (the last empty pool of a slab kept on its
    // list may have a fresh, never-touched tail); then the bounds again.
    let now = threads::now_ms();
    core.unlist_empty_pools(|policy, p| {
        policy.with_reserve(|r| {
            // SAFETY: a live, empty pool of ours just taken off its slab's
            // list, not on the reserve.
            unsafe {
                (*p).emptied_ms = now;
                r.pools.push_back(p);
                r.bytes += (*p).bytes();
                stats::RESERVE_BYTES.fetch_add((*p).bytes() as isize, Ordering::Relaxed);
            }
        })
    });
    // Pools whose every chunk was handed out (all pages warm) go newest,
    // where the next thread's reuse looks first, and leave last.
    core.policy.with_reserve(|r| {
        let mut p = r.pools.head();
        for _ in 0..r.pools.len() {
            // SAFETY: members are live pools of ours on this list; `next`
            // is read before `p` moves, and moved pools land after the
            // members not visited yet, so each is visited once.
            unsafe {
                let next = List::<EmptyQueue>::next(p);
                if (*p).all_carved() {
                    r.pools.remove(p);
                    r.pools.push_back(p);
                }
                p = next;
            }
        }
    });
    loop {
        let p = core.policy.pop_oldest_over(max_bytes);
        if p.is_null() {
            break;
        }
        // SAFETY: a live pool of ours with no live chunk, just taken off
        // the reserve.
        unsafe { let_go(core, p) };
    }
    debug_assert!(core.policy.warm_reserve_bytes() <= core.heap_bytes());
}

impl ThreadPolicy {
    /// Bytes of the reserve's pools whose pages are still committed: what
    /// the heap holds that no live chunk needs (and what [`abandon`] or a
    /// decommit would give back), for the warm idle heaps' byte bound.
    pub(crate) fn warm_reserve_bytes(&self) -> usize {
        self.with_reserve(|r| {
            let mut bytes = 0;
            let mut p = r.pools.head();
            while !p.is_null() {
                // SAFETY: members are live pools of ours on this list; we
                // hold the lock, which guards their `decommitted` flags.
                unsafe {
                    if !(*p).is_decommitted() {
                        bytes += (*p).bytes();
                    }
                    p = List::<EmptyQueue>::next(p);
                }
            }
            bytes
        })
    }
}

/// Gives up `core`'s memory: collects remote frees, returns the reserve,
/// empty pools and empty segments to the OS, abandons the rest to other
/// threads, and leaves the core empty, ready for the next thread (a thread
/// exit over the warm idle bound, a dead thread's core, `trim`).
///
/// The queue is collected first, and again once the segments are abandoned:
/// a pool queued in between is then handed on (its segment now abandoned or
/// adopted). A pool queued after that (its pusher read this core as the
/// owner before the segment was abandoned) is handed on by the pusher itself
/// once the core is idle ([`enqueue`]); if that cannot run (another thread
/// services or reaps heaps then) it waits on this core's queue for the next
/// push or the core's next thread, and stays live, with its segment.
pub(crate) fn abandon(core: &mut ThreadCore) {
    collect_queue(core);
    core.invariant();
    // SAFETY: the reserve's members are live pools of ours.
    core.policy.with_reserve(|r| unsafe { r.pools.invariant() });
    // Off the reserve, each keeps its `decommitted` flag, which tells
    // `abandon_segments` not to give its bytes back twice.
    while !core.policy.pop_oldest(true).is_null() {}
    // SAFETY: the reserve is empty, so the policy holds no pool of this
    // core on a list of its own; each kept segment is handed to the
    // abandoned list.
    unsafe {
        core.abandon_segments(|seg, pools| {
            stats::POOLS_ABANDONED.fetch_add(pools as isize, Ordering::Relaxed);
            abandoned::push(seg);
        });
    }
    collect_queue(core);
}
