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
use crate::sync::{fence, AtomicBool, Ordering};
use core::cell::UnsafeCell;
use core::ptr::{null_mut, NonNull};

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
    /// Pools of our segments into which other threads freed chunks, and
    /// whether a thread uses the core, for those frees (see [`Inbox`]).
    pub(crate) inbox: Inbox,
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
    /// `owner_lock` (the inbox's idle hint follows it, written under the
    /// lock too).
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

/// A heap's inbox: the queue of its pools into which other threads freed
/// chunks, and whether a thread uses the heap (the idle hint).
///
/// The free that sets a pool's `QUEUED` bit pushes the pool onto `queue`
/// (see `Pool`'s `remote`); the heap's thread takes the whole queue in its
/// slow path ([`collect_queue`]). Cores are never unmapped, so a push onto
/// the queue of a core whose thread has gone is harmless, but nobody would
/// collect it: so the two sides meet in a fence pair (a Dekker/store-buffer
/// pattern, so SeqCst: acquire/release orders nothing between a store and a
/// later load of another location).
///
/// * A free: pushes the pool ([`push`](Inbox::push)), SeqCst fence, reads
///   the hint; if it reads "idle" it services the heap
///   (`threads::service_idle`, which try-locks the owner lock).
/// * Thread exit: with the owner lock held, writes the hint
///   ([`set_idle`](Inbox::set_idle)); releases the lock; SeqCst fence,
///   reads the queue ([`queued_after_idle`](Inbox::queued_after_idle)); if
///   it is not empty it services the heap itself.
///
/// The two fences are ordered one way or the other in the single total
/// order of SeqCst fences. If the exit's comes first, the free's hint read
/// (after its fence) sees "idle", and its try-lock sees the owner lock
/// released (the release is before the exit's fence too), so the free
/// services the heap unless someone else holds that lock (the exit's own
/// service, or a new thread that took the heap and will collect its queue
/// in its slow path). If the free's comes first, the exit's queue read
/// sees the push. Either way no pool is left on the queue of a heap nobody
/// uses: the loom model `loom_tests` below checks this on this code, and
/// fails with either fence weakened to AcqRel. (One case stays open, as
/// the README says: a servicer, and the exit's last look, give up at once
/// if another thread is servicing, reaping or giving up idle heaps,
/// `threads::REAP_LOCK`.)
pub(crate) struct Inbox {
    /// The pools to collect, each with its `QUEUED` bit set (see
    /// `PoolQueue`).
    pub(crate) queue: PoolQueue,
    /// `!attached`, readable without the lock: written only while the owner
    /// lock is held (set by thread exit and by a reaper before they release
    /// it, cleared by attach once it holds it). Only a hint: a servicer
    /// checks `attached` under the lock.
    idle_hint: AtomicBool,
}

impl Inbox {
    /// An empty inbox of a core no thread uses yet.
    pub(crate) fn new() -> Inbox {
        Inbox {
            queue: PoolQueue::new(),
            idle_hint: AtomicBool::new(false),
        }
    }

    /// The free's half: queues `pool`, then returns whether the heap looked
    /// idle afterwards (the caller must then service it,
    /// `threads::service_idle`).
    ///
    /// # Safety
    /// As [`PoolQueue::push`].
    pub(crate) unsafe fn push(&self, pool: *mut Pool) -> bool {
        // SAFETY: the caller keeps `PoolQueue::push`'s contract.
        unsafe { self.queue.push(pool) };
        // Pairs with the fence in `queued_after_idle` (see the type).
        fence(Ordering::SeqCst);
        self.idle_hint.load(Ordering::Relaxed)
    }

    /// Sets the idle hint; the caller holds the core's owner lock and sets
    /// `attached` to `!idle` with it.
    pub(crate) fn set_idle(&self, idle: bool) {
        self.idle_hint.store(idle, Ordering::Relaxed);
    }

    /// The exit's half, after it released the owner lock: whether a pool
    /// was queued that the free that queued it may have left (the caller
    /// then services the heap itself).
    pub(crate) fn queued_after_idle(&self) -> bool {
        // Pairs with the fence in `push` (see the type).
        fence(Ordering::SeqCst);
        !self.queue.is_empty()
    }
}

impl ThreadPolicy {
    /// A fresh policy with the reserve bounds of the configuration.
    pub(crate) fn new(reserve_pools: usize, reserve_bytes: usize) -> ThreadPolicy {
        ThreadPolicy {
            inbox: Inbox::new(),
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
        if !core.policy.collecting && !core.policy.inbox.queue.is_empty() {
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
    let list = core.policy.inbox.queue.take();
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
            // Either the owner's thread exit sees our push (and services
            // its queue itself) or we see its idle hint (see `Inbox`).
            if (*owner).policy.inbox.push(pool) {
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
/// pools; a pool queued later is collected by the free that queued it or
/// by the exit's last look at the queue, see [`Inbox`]), moves every
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

/// Loom model of the idle hand-off between a thread's exit and a free that
/// queues a pool on its heap: the real [`Inbox`] (its fence pair), `Pool`,
/// `PoolQueue` and `SpinLock` (run with `--cfg loom`, see `sync.rs`).
#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use crate::pool::for_each_queued;
    use loom::cell::UnsafeCell;
    use loom::sync::Arc;
    use loom::thread;
    use std::alloc::Layout;

    const CHUNK: usize = 64;

    /// One heap as its thread exits: its inbox, a loom lock word standing
    /// for its robust owner lock (`threads::service_idle` try-locks it as
    /// the model's servicer does), `attached`, and one pool of its segment
    /// with a chunk handed to another thread. `private` stands for the
    /// heap's owner-only state that a collection writes (free lists,
    /// counts, the reserve): loom does not see plain memory, so the cell is
    /// how it checks that the collections of the exiting thread and of a
    /// servicer are ordered by the owner lock. It counts chunks collected.
    struct Heap {
        inbox: Inbox,
        owner_lock: SpinLock<crate::sync::AtomicBool>,
        attached: UnsafeCell<bool>,
        private: UnsafeCell<u32>,
        pool: *mut Pool,
        mem: *mut u8,
    }

    // SAFETY: the pool is shared as the allocator shares one: its owner-only
    // fields are used under the owner lock (the exiting thread holds it
    // until it releases the heap), other threads only push chunks they hold
    // (`Pool::push_remote`) and queue the pool when their push set its bit.
    unsafe impl Send for Heap {}
    // SAFETY: as for Send.
    unsafe impl Sync for Heap {}

    fn layout() -> Layout {
        Layout::from_size_align(2 * CHUNK, crate::size_class::PAGE).unwrap()
    }

    impl Heap {
        /// An attached heap, its owner lock held by its thread (the model's
        /// main thread), with one chunk of its pool handed out; returns the
        /// chunk too.
        fn new() -> (Heap, usize) {
            // SAFETY: a non-zero size.
            let mem = unsafe { std::alloc::alloc_zeroed(layout()) };
            assert!(!mem.is_null());
            let pool = Box::into_raw(Box::new(Pool::empty()));
            // SAFETY: the box just made, not shared yet; the memory is ours,
            // page-aligned and zeroed, as a fresh pool's pages are.
            let chunk = unsafe {
                (*pool).init(mem, 2 * CHUNK, CHUNK, 0, 0);
                (*pool).take().unwrap().0.as_ptr() as usize
            };
            let heap = Heap {
                inbox: Inbox::new(),
                owner_lock: SpinLock::from_word(crate::sync::AtomicBool::new(false)),
                attached: UnsafeCell::new(true),
                private: UnsafeCell::new(0),
                pool,
                mem,
            };
            heap.owner_lock.lock();
            heap.inbox.set_idle(false);
            (heap, chunk)
        }

        /// The heap's collection of its queue (`collect_queue`): takes the
        /// queue whole and collects each pool on it, clearing its bit. The
        /// caller holds the owner lock.
        fn collect(&self) {
            let list = self.inbox.queue.take();
            let mut n = 0;
            // SAFETY: the list was just taken by the heap (its owner lock
            // held); each pool on it is of the heap's own segment.
            unsafe {
                for_each_queued(list, |p| {
                    assert_eq!(p, self.pool, "only the model's pool is queued");
                    n += (*p).collect_dequeued();
                });
            }
            // SAFETY: the cell's own pointer; loom fails the model if two
            // collections are not ordered by the owner lock.
            self.private.with_mut(|c| unsafe { *c += n });
        }

        /// `threads::service_idle`: collects the queue for the heap if it
        /// can take the owner lock at once and no thread is attached.
        fn service(&self) {
            if !self.owner_lock.try_lock() {
                return;
            }
            // SAFETY: read under the owner lock, which guards it.
            if !self.attached.with(|a| unsafe { *a }) {
                self.collect();
            }
            self.owner_lock.unlock();
        }

        /// Another thread frees the chunk it holds (`remote::free`, then
        /// `enqueue` for the owned segment): pushes it onto the pool's
        /// remote stack, and the push that set the pool's bit queues the
        /// pool on the heap and services the heap if it looked idle.
        fn remote_free(&self, chunk: usize) {
            // SAFETY: a live pool and a chunk of it this thread holds and
            // hands back; a true return makes it the one that queues it.
            unsafe {
                if Pool::push_remote(self.pool, chunk) && self.inbox.push(self.pool) {
                    self.service();
                }
            }
        }

        /// The heap's thread exits (`threads::thread_exit`): `retire`
        /// collects the queue; detaches (with the idle hint) under the
        /// owner lock; the push onto the idle stack (no part of this
        /// protocol) comes here; releases the lock; then the exit's half of
        /// the fence pair, servicing the heap itself if a pool was queued.
        fn exit(&self) {
            self.collect();
            // SAFETY: written under the owner lock, which guards it.
            self.attached.with_mut(|a| unsafe { *a = false });
            self.inbox.set_idle(true);
            self.owner_lock.unlock();
            if self.inbox.queued_after_idle() {
                self.service();
            }
        }
    }

    impl Heap {
        /// A new thread takes the heap off the idle stack (`threads::attach`:
        /// waits for the owner lock, then `attached` and the hint under
        /// it), and runs its slow path once (collects its queue). It keeps
        /// the lock: it is the heap's thread now.
        fn attach(&self) {
            self.owner_lock.lock();
            // SAFETY: written under the owner lock, which guards it.
            self.attached.with_mut(|a| unsafe { *a = true });
            self.inbox.set_idle(false);
            self.collect();
        }

        /// After the model's threads: the chunk was collected exactly once,
        /// or is on the queue of a heap a thread is attached to, whose next
        /// slow path then collects it (never on the queue of a heap nobody
        /// uses); then no pool is queued and the pool's bit is clear.
        fn check(&self) {
            // SAFETY: every other thread is done.
            let attached = self.attached.with(|a| unsafe { *a });
            if !self.inbox.queue.is_empty() {
                assert!(attached, "a pool stranded on the queue of an idle heap");
                self.collect();
            }
            // SAFETY: every other thread is done.
            let pool = unsafe { &*self.pool };
            assert!(self.inbox.queue.is_empty());
            assert!(!pool.is_queued(), "a pool stranded with its bit set");
            assert!(!pool.remote_in_use());
            // SAFETY: every other thread is done.
            assert_eq!(self.private.with(|c| unsafe { *c }), 1);
            assert_eq!(pool.used(), 0);
        }
    }

    impl Drop for Heap {
        fn drop(&mut self) {
            // SAFETY: made by `Heap::new` with these layouts, freed once,
            // after every thread of the model is done.
            unsafe {
                drop(Box::from_raw(self.pool));
                std::alloc::dealloc(self.mem, layout());
            }
        }
    }

    /// A model heap with one live chunk, and a thread freeing that chunk
    /// into it remotely (both models start so).
    fn heap_and_freer() -> (Arc<Heap>, thread::JoinHandle<()>) {
        let (heap, chunk) = Heap::new();
        let heap = Arc::new(heap);
        let freer = {
            let heap = heap.clone();
            thread::spawn(move || heap.remote_free(chunk))
        };
        (heap, freer)
    }

    /// A thread frees a chunk into a pool of a heap whose thread exits
    /// meanwhile. No pool is stranded: at the end the chunk was collected
    /// exactly once (by the exit's `retire`, by the exit's own service, or
    /// by the free's service), the queue is empty and the pool's bit clear.
    /// Each of the two SeqCst fences in `Inbox` weakened to AcqRel makes
    /// this fail (the chunk stays queued on a heap nobody uses).
    #[test]
    fn loom_exit_and_remote_free_strand_no_pool() {
        loom::model(|| {
            let (heap, freer) = heap_and_freer();
            heap.exit();
            freer.join().unwrap();
            assert!(heap.inbox.queue.is_empty(), "a pool stranded on the queue");
            heap.check();
        });
    }

    /// As above, with a new thread taking the heap as soon as the exit
    /// releases it: the free's service may then find the owner lock held
    /// (by the exit's service or the new thread) or the heap attached, and
    /// the pool may stay queued, but only on the new thread's heap. This
    /// checks that every collection (exit, servicer, new thread) is ordered
    /// by the owner lock; it cannot catch a weakened fence (a pool left
    /// queued is always on an attached heap here): the model above does.
    #[test]
    fn loom_exit_remote_free_and_attach_strand_no_pool() {
        loom::model(|| {
            let (heap, freer) = heap_and_freer();
            let next = {
                let heap = heap.clone();
                thread::spawn(move || heap.attach())
            };
            heap.exit();
            freer.join().unwrap();
            next.join().unwrap();
            heap.check();
        });
    }
}
