//! The global list of abandoned segments (their thread exited while they
//! held live chunks) and the spin lock that guards it and every move of a
//! segment's ownership to or from null.
//!
//! The protocol is written as methods of the list value
//! ([`AbandonedSegments`]); the free functions apply them to the one
//! [`ABANDONED`] static. The loom model (`loom_tests` below) applies the
//! same methods to a list it builds, with a loom lock word: loom's atomics
//! cannot live in a `static`.

use crate::list::List;
use crate::pool::Pool;
use crate::segment::{AbandonedList, Segment};
use crate::sync::Ordering;
use core::cell::UnsafeCell;
use core::sync::atomic::AtomicBool;

/// The atomic word of a [`SpinLock`]: `core`'s `AtomicBool` (the statics),
/// or, under `--cfg loom`, loom's (the models).
pub(crate) trait LockWord: Sync {
    /// `compare_exchange_weak` of the atomic.
    fn cas_weak(&self, current: bool, new: bool, ok: Ordering, err: Ordering) -> bool;
    /// `compare_exchange` of the atomic (no spurious failure).
    fn cas(&self, current: bool, new: bool, ok: Ordering, err: Ordering) -> bool;
    /// `store` of the atomic.
    fn store(&self, value: bool, order: Ordering);
    /// Waits before the `spins`-th retry of a contended lock.
    fn pause(spins: u32);
}

impl LockWord for AtomicBool {
    #[inline(always)]
    fn cas_weak(&self, current: bool, new: bool, ok: Ordering, err: Ordering) -> bool {
        self.compare_exchange_weak(current, new, ok, err).is_ok()
    }

    #[inline(always)]
    fn cas(&self, current: bool, new: bool, ok: Ordering, err: Ordering) -> bool {
        self.compare_exchange(current, new, ok, err).is_ok()
    }

    #[inline(always)]
    fn store(&self, value: bool, order: Ordering) {
        AtomicBool::store(self, value, order)
    }

    fn pause(spins: u32) {
        if spins < 64 {
            core::hint::spin_loop();
        } else {
            // SAFETY: sched_yield has no preconditions.
            unsafe { libc::sched_yield() };
        }
    }
}

#[cfg(loom)]
impl LockWord for crate::sync::AtomicBool {
    fn cas_weak(&self, current: bool, new: bool, ok: Ordering, err: Ordering) -> bool {
        self.compare_exchange_weak(current, new, ok, err).is_ok()
    }

    fn cas(&self, current: bool, new: bool, ok: Ordering, err: Ordering) -> bool {
        self.compare_exchange(current, new, ok, err).is_ok()
    }

    fn store(&self, value: bool, order: Ordering) {
        crate::sync::AtomicBool::store(self, value, order)
    }

    /// A spinning loom thread must yield, or loom never schedules the
    /// holder.
    fn pause(_spins: u32) {
        loom::thread::yield_now();
    }
}

/// A tiny spin lock: held for a few list operations, never across an
/// allocation; the fork handlers take it.
pub(crate) struct SpinLock<W = AtomicBool>(W);

impl SpinLock {
    pub(crate) const fn new() -> SpinLock {
        SpinLock::from_word(AtomicBool::new(false))
    }
}

impl<W: LockWord> SpinLock<W> {
    /// A lock over `word`, which reads `false` (unlocked).
    pub(crate) const fn from_word(word: W) -> SpinLock<W> {
        SpinLock(word)
    }

    pub(crate) fn lock(&self) {
        let mut spins = 0u32;
        while !self
            .0
            .cas_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
        {
            spins += 1;
            W::pause(spins);
        }
    }

    /// Takes the lock if it is free; false (nothing taken) if it is held.
    /// A strong compare-exchange: a weak one may fail spuriously (on
    /// aarch64), and a caller that skips a free lock (the budget reclaim)
    /// would fail an allocation it could have served.
    pub(crate) fn try_lock(&self) -> bool {
        self.0
            .cas(false, true, Ordering::Acquire, Ordering::Relaxed)
    }

    pub(crate) fn unlock(&self) {
        self.0.store(false, Ordering::Release);
    }
}

/// A value guarded by a [`SpinLock`].
pub(crate) struct Locked<T, W = AtomicBool> {
    pub(crate) lock: SpinLock<W>,
    value: UnsafeCell<T>,
}

// SAFETY: the value is reached only through `with`, which holds the lock, so
// one thread at a time touches it; the values kept here are lists of raw
// pointers to allocator metadata that any thread may use under the lock.
unsafe impl<T, W: LockWord> Sync for Locked<T, W> {}

impl<T> Locked<T> {
    pub(crate) const fn new(value: T) -> Locked<T> {
        Locked::from_parts(SpinLock::new(), value)
    }
}

impl<T, W: LockWord> Locked<T, W> {
    /// `value` guarded by `lock`, which is unlocked.
    pub(crate) const fn from_parts(lock: SpinLock<W>, value: T) -> Locked<T, W> {
        Locked {
            lock,
            value: UnsafeCell::new(value),
        }
    }

    /// Runs `f` on the value with the lock held.
    pub(crate) fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        self.lock.lock();
        // SAFETY: we hold the lock, so no other `&mut` to the value exists.
        let r = f(unsafe { &mut *self.value.get() });
        self.lock.unlock();
        r
    }
}

/// A list of abandoned segments with its lock. Invariant: a segment is on
/// the list iff its owner is null, and an owner changes to or from null
/// only under the lock.
pub(crate) type AbandonedSegments<W = AtomicBool> = Locked<List<AbandonedList>, W>;

impl<W: LockWord> AbandonedSegments<W> {
    /// Pops an abandoned segment and makes `owner` its owner.
    pub(crate) fn pop_to(&self, owner: *mut ()) -> Option<*mut Segment> {
        self.with(|list| {
            // SAFETY: abandoned segments are live (only an owner unmaps a
            // segment); we hold the lock, under which owners change.
            unsafe {
                let seg = list.pop_front();
                if seg.is_null() {
                    return None;
                }
                Segment::set_owner(seg, owner);
                Some(seg)
            }
        })
    }

    /// Makes `seg` abandoned: owner null, on the list.
    ///
    /// # Safety
    /// `seg` is a live segment its owner gives up, on no owner's list, with
    /// its pools on no list.
    pub(crate) unsafe fn push(&self, seg: *mut Segment) {
        self.with(|list| {
            // SAFETY: `seg` is live and on no list (precondition), so its
            // abandoned link is free to use; we hold the lock, under which
            // owners move to or from null (the list's invariant).
            unsafe {
                Segment::set_owner(seg, core::ptr::null_mut());
                list.push_front(seg);
            }
        })
    }

    /// Adopts `seg` for `owner` if it is still abandoned (a free into it
    /// from a thread with a heap); false if someone else took it first.
    ///
    /// # Safety
    /// `seg` is a live segment (the caller holds a live chunk of it).
    pub(crate) unsafe fn take_if_abandoned(&self, seg: *mut Segment, owner: *mut ()) -> bool {
        self.with(|list| {
            // SAFETY: `seg` is live (its chunk is held by the caller); we
            // hold the lock, so a null owner means `seg` is on this list (the
            // list's invariant) and may be removed.
            unsafe {
                if !(*seg).owner_relaxed().is_null() {
                    return false;
                }
                list.remove(seg);
                Segment::set_owner(seg, owner);
                true
            }
        })
    }

    /// The owner of `seg`, read under the lock, for a thread that must queue
    /// `pool` (a pool of `seg` whose `QUEUED` bit it set, or took off its own
    /// queue for a segment it no longer owns); when the owner is null (the
    /// segment is abandoned) it clears the bit under the lock
    /// ([`Pool::unqueue`]) and returns null: the pool's chunks then wait on
    /// its remote stack for the segment's adopter, which collects them when
    /// it takes the segment (`Core::adopt_segment`), and the next remote free
    /// into the pool sets the bit and queues it on its then owner.
    ///
    /// Under the lock no one adopts the segment between the read and the
    /// clear, so an adopter either sees the bit set by a later push (and that
    /// pusher queues the pool on it) or its collection takes every chunk.
    ///
    /// # Safety
    /// `seg` is a live segment; `pool` is one of its pools with `QUEUED`
    /// set, on no queue, which the caller is entitled to queue.
    pub(crate) unsafe fn owner_or_unqueue(&self, seg: *mut Segment, pool: *const Pool) -> *mut () {
        self.with(|_| {
            // SAFETY: `seg` is live (its queued pool pins it); owners move to
            // or from null only under the lock we hold, so a null owner
            // stays null until we release it (`unqueue`'s contract).
            unsafe {
                let owner = (*seg).owner();
                if owner.is_null() {
                    Pool::unqueue(pool);
                }
                owner
            }
        })
    }
}

/// [`AbandonedSegments::owner_or_unqueue`] on [`ABANDONED`].
///
/// # Safety
/// As [`AbandonedSegments::owner_or_unqueue`].
pub(crate) unsafe fn owner_or_unqueue(seg: *mut Segment, pool: *const Pool) -> *mut () {
    // SAFETY: the caller keeps `owner_or_unqueue`'s contract.
    unsafe { ABANDONED.owner_or_unqueue(seg, pool) }
}

/// Segments whose thread exited while they held live chunks, owner null.
pub(crate) static ABANDONED: AbandonedSegments = Locked::new(List::NEW);

/// [`AbandonedSegments::pop_to`] on [`ABANDONED`].
pub(crate) fn pop_to(owner: *mut ()) -> Option<*mut Segment> {
    ABANDONED.pop_to(owner)
}

/// [`AbandonedSegments::push`] on [`ABANDONED`].
///
/// # Safety
/// As [`AbandonedSegments::push`].
pub(crate) unsafe fn push(seg: *mut Segment) {
    // SAFETY: the caller keeps `push`'s contract.
    unsafe { ABANDONED.push(seg) }
}

/// [`AbandonedSegments::take_if_abandoned`] on [`ABANDONED`].
///
/// # Safety
/// As [`AbandonedSegments::take_if_abandoned`].
pub(crate) unsafe fn take_if_abandoned(seg: *mut Segment, owner: *mut ()) -> bool {
    // SAFETY: the caller keeps `take_if_abandoned`'s contract.
    unsafe { ABANDONED.take_if_abandoned(seg, owner) }
}

/// Loom model of abandonment and adoption, on the real list methods, lock
/// and segment header (run with `--cfg loom`, see `sync.rs`).
#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use crate::segment_map::SEGMENT_SIZE;
    use loom::cell::UnsafeCell;
    use loom::sync::Arc;
    use loom::thread;
    use std::alloc::Layout;

    /// The model's cores: distinct non-null owners, never dereferenced.
    const A: usize = 0x10;
    const B: usize = 0x20;
    const C: usize = 0x30;
    const D: usize = 0x40;

    fn core_ptr(id: usize) -> *mut () {
        core::ptr::without_provenance_mut(id)
    }

    /// What the model's threads share: an abandoned list with a loom lock
    /// word, a segment header, and a loom cell standing for the segment's
    /// owner-only state (page bitmap, pool slots). loom does not see plain
    /// memory, so the cell is how it checks that each owner's use of that
    /// state happens after the previous owner's (through the lock).
    struct Shared {
        list: AbandonedSegments<crate::sync::AtomicBool>,
        seg: *mut Segment,
        state: UnsafeCell<usize>,
    }

    // SAFETY: `seg` is the model's segment header, shared as the allocator
    // shares one: its owner-only parts go from owner to owner through the
    // list's lock, and anyone may read its owner.
    unsafe impl Send for Shared {}
    // SAFETY: as for Send.
    unsafe impl Sync for Shared {}

    impl Shared {
        /// A segment owned by core `A`, on no list.
        fn new() -> Shared {
            let layout = Layout::new::<Segment>();
            // SAFETY: a non-zero size.
            let seg = unsafe { std::alloc::alloc_zeroed(layout) }.cast::<Segment>();
            assert!(!seg.is_null());
            // SAFETY: aligned, zeroed, ours alone.
            unsafe { Segment::write_header(seg, SEGMENT_SIZE, false, 0, core_ptr(A)) };
            Shared {
                list: Locked::from_parts(
                    SpinLock::from_word(crate::sync::AtomicBool::new(false)),
                    List::NEW,
                ),
                seg,
                state: UnsafeCell::new(A),
            }
        }

        /// Owner `me` uses the segment's private state, last used by `prev`.
        fn use_state(&self, prev: usize, me: usize) {
            // SAFETY: the cell's own pointer; loom fails the model if this
            // access races with another owner's.
            self.state.with_mut(|s| unsafe {
                assert_eq!(*s, prev);
                *s = me;
            });
        }

        fn owner(&self) -> *mut () {
            // SAFETY: the segment lives until the model ends.
            unsafe { (*self.seg).owner() }
        }
    }

    impl Drop for Shared {
        fn drop(&mut self) {
            // SAFETY: allocated in `new` with this layout, freed once after
            // every thread is done; the header holds nothing to drop.
            unsafe { std::alloc::dealloc(self.seg.cast(), Layout::new::<Segment>()) };
        }
    }

    /// Core `B`, out of pools, adopts through the list
    /// (`ThreadPolicy::refill`); `Some(B)` if it got the segment.
    fn refill(sh: &Shared) -> Option<usize> {
        let seg = sh.list.pop_to(core_ptr(B))?;
        assert_eq!(seg, sh.seg);
        assert_eq!(sh.owner(), core_ptr(B));
        sh.use_state(A, B);
        Some(B)
    }

    /// A thread of core `C` frees a chunk of the segment, which it does not
    /// own, adopting it if it finds it abandoned (`global::remote::free`);
    /// `Some(C)` if it did.
    fn free(sh: &Shared) -> Option<usize> {
        // SAFETY: a live segment (this thread holds a chunk of it).
        if sh.owner().is_null() && unsafe { sh.list.take_if_abandoned(sh.seg, core_ptr(C)) } {
            assert_eq!(sh.owner(), core_ptr(C));
            sh.use_state(A, C);
            Some(C)
        } else {
            None
        }
    }

    /// Core `A`'s thread exit gives up the segment.
    fn abandon(sh: &Shared) {
        sh.use_state(A, A);
        // SAFETY: A's live segment, on no list, its pools on none.
        unsafe { sh.list.push(sh.seg) };
    }

    fn spawn(
        sh: &Arc<Shared>,
        f: fn(&Shared) -> Option<usize>,
    ) -> thread::JoinHandle<Option<usize>> {
        let sh = sh.clone();
        thread::spawn(move || f(&sh))
    }

    /// After the threads: the segment has the one owner `winner`, off the
    /// list, or, with no winner, is still abandoned (owner null, on the
    /// list) and the next `pop_to` gets it. The lock is free throughout.
    fn check(sh: &Shared, winner: Option<usize>) {
        // SAFETY: every other thread is done; the segment is live.
        let linked = unsafe { (*sh.seg).abandoned.is_linked() };
        match winner {
            Some(w) => {
                assert_eq!(sh.owner(), core_ptr(w));
                assert!(!linked);
                assert_eq!(sh.list.with(|l| l.len()), 0);
            }
            None => {
                assert!(sh.owner().is_null());
                assert!(linked);
                assert_eq!(sh.list.pop_to(core_ptr(D)), Some(sh.seg));
                assert_eq!(sh.owner(), core_ptr(D));
                sh.use_state(A, D);
            }
        }
        assert_eq!(sh.list.with(|l| l.len()), 0);
    }

    // Each model has two threads on the lock at a time: with two spinning on
    // a third, loom's scheduler oscillates between the spinners
    // (tokio-rs/loom#53) and never ends.

    /// Core `A` has abandoned the segment; core `B` (refill) and a thread of
    /// core `C` (free) race for it: exactly one becomes its owner.
    #[test]
    fn loom_abandoned_segment_is_adopted_by_exactly_one_core() {
        loom::model(|| {
            let sh = Arc::new(Shared::new());
            abandon(&sh);
            let b = spawn(&sh, refill);
            let c = spawn(&sh, free);
            let (b, c) = (b.join().unwrap(), c.join().unwrap());
            assert!(
                b.is_some() != c.is_some(),
                "not exactly one owner: {b:?} {c:?}"
            );
            check(&sh, b.or(c));
        });
    }

    /// Core `A`'s thread exits while a thread of core `C` frees into the
    /// segment: `C` adopts it only once it is abandoned, else the segment
    /// stays abandoned.
    #[test]
    fn loom_free_races_abandon() {
        loom::model(|| {
            let sh = Arc::new(Shared::new());
            let c = spawn(&sh, free);
            abandon(&sh);
            let c = c.join().unwrap();
            check(&sh, c);
        });
    }

    /// Core `A`'s thread exits while core `B` looks for a segment to adopt:
    /// `B` gets it only once it is abandoned, else it stays abandoned.
    #[test]
    fn loom_refill_races_abandon() {
        loom::model(|| {
            let sh = Arc::new(Shared::new());
            let b = spawn(&sh, refill);
            abandon(&sh);
            let b = b.join().unwrap();
            check(&sh, b);
        });
    }

    /// A thread of core `C` frees a chunk into a pool of the segment while
    /// core `A`'s thread exits and core `B` then adopts the segment through
    /// the list: `C`'s push sets the pool's `QUEUED` bit and it queues the
    /// pool on the owner it reads (`thread_core::enqueue`), or, finding the
    /// segment abandoned, clears the bit under the lock
    /// ([`AbandonedSegments::owner_or_unqueue`]). No wake-up is lost: at the
    /// end the chunk was collected by the adopter, or is on the stack with
    /// the bit set (the pool queued on the owner `C` read), or is on the
    /// stack of a still-abandoned segment with the bit clear (its adopter
    /// collects it).
    #[test]
    fn loom_remote_free_races_abandon_and_adoption() {
        use crate::pool::Pool;
        loom::model(|| {
            let sh = Arc::new(Shared::new());
            let layout = Layout::from_size_align(2 * 64, crate::size_class::PAGE).unwrap();
            // SAFETY: a non-zero size.
            let mem = unsafe { std::alloc::alloc_zeroed(layout) };
            // SAFETY: slot 0 of the model's segment, not shared yet.
            let pool = unsafe { Segment::pool_ptr(sh.seg, 0) };
            // SAFETY: as above; the memory is the model's, page-aligned.
            let chunk = unsafe {
                (*pool).init(mem, 2 * 64, 64, 0, 0);
                (*pool).take().unwrap().0.as_ptr() as usize
            };
            let pool_addr = pool as usize;
            let c = {
                let sh = sh.clone();
                thread::spawn(move || {
                    let pool = core::ptr::with_exposed_provenance_mut::<Pool>(pool_addr);
                    // SAFETY: a live pool and a chunk of it this thread
                    // holds; a true return makes it the one that queues it.
                    unsafe {
                        if !Pool::push_remote(pool, chunk) {
                            return None;
                        }
                        let owner = sh.owner();
                        Some(if owner.is_null() {
                            sh.list.owner_or_unqueue(sh.seg, pool)
                        } else {
                            owner
                        } as usize)
                    }
                })
            };
            // Let C run first in some executions (loom does not preempt the
            // model's main thread for it otherwise).
            thread::yield_now();
            abandon(&sh);
            // Core B's refill: adopt through the list and collect what the
            // segment's pools hold (as `Core::adopt_segment` does).
            let mut collected = 0;
            if let Some(seg) = sh.list.pop_to(core_ptr(B)) {
                sh.use_state(A, B);
                // SAFETY: the segment is B's now; its pool is B's.
                collected = unsafe { (*Segment::pool_ptr(seg, 0)).collect_remote() };
            }
            let queued_on = c.join().unwrap().expect("the first push sets the bit");
            // SAFETY: every other thread is done.
            let p = unsafe { &mut *pool };
            let owner = sh.owner();
            // The bit is set iff the pool is on the queue of the owner C
            // read (else it would be pinned for ever on no queue).
            assert_eq!(p.is_queued(), queued_on != 0);
            if collected == 0 {
                // The chunk is still on the stack: queued on the owner C
                // read, or waiting for the adopter of an abandoned segment.
                if p.is_queued() {
                    assert!(queued_on == A || queued_on == B);
                } else {
                    assert_eq!(queued_on, 0);
                    assert!(owner.is_null(), "chunk stranded in an owned segment");
                }
                assert_eq!(p.collect_remote(), 1);
            }
            assert_eq!(p.used(), 0);
            if owner.is_null() {
                check(&sh, None);
            }
            // SAFETY: allocated above with this layout; no one uses it.
            unsafe { std::alloc::dealloc(mem, layout) };
        });
    }
}

/// The segment map's owner word follows a real segment through abandonment
/// and adoption (on a list of the test's own, not the process's).
#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::segment_map::{owner_word, HUGE_OWNER, SEGMENT_SIZE};

    #[test]
    fn owner_word_follows_abandon_and_adopt() {
        // Distinct page-aligned "cores", never dereferenced.
        let a = core::ptr::without_provenance_mut::<()>(0x7a00_0000_0000);
        let b = core::ptr::without_provenance_mut::<()>(0x7b00_0000_0000);
        let list: AbandonedSegments = Locked::new(List::NEW);
        // Reserved, as making a core does.
        crate::segment_map::owner_table();
        for huge in [false, true] {
            let size = if huge { 3 * SEGMENT_SIZE } else { SEGMENT_SIZE };
            let seg = Segment::create(size, huge, 5, a).unwrap().as_ptr();
            let bit = if huge { HUGE_OWNER } else { 0 };
            let last = seg as usize + size - 1;
            assert_eq!(owner_word(seg as usize + 64), a as usize | bit);
            assert_eq!(owner_word(last), a as usize | bit);
            // SAFETY: a live segment of this test, on no list.
            unsafe { list.push(seg) };
            assert_eq!(owner_word(seg as usize + 64), 0);
            assert_eq!(owner_word(last), 0);
            // SAFETY: the header is live.
            assert!(unsafe { (*seg).owner() }.is_null());
            assert_eq!(list.pop_to(b), Some(seg));
            assert_eq!(owner_word(seg as usize + 64), b as usize | bit);
            assert_eq!(owner_word(last), b as usize | bit);
            // SAFETY: as above.
            unsafe {
                list.push(seg);
                assert!(list.take_if_abandoned(seg, a));
                assert_eq!((*seg).owner(), a);
                assert_eq!(owner_word(last), a as usize | bit);
                // A second adopter finds it taken: nothing changes.
                assert!(!list.take_if_abandoned(seg, b));
                assert_eq!(owner_word(seg as usize), a as usize | bit);
                Segment::destroy(core::ptr::NonNull::new_unchecked(seg));
            }
            assert_eq!(owner_word(seg as usize + 64), 0);
            assert_eq!(owner_word(last), 0);
        }
    }
}
