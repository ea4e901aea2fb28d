//! Pools: a run of pages inside a segment, cut into chunks of one slab.
//!
//! A pool has no per-chunk header. Its own header lives in the segment header
//! (see `segment.rs`), found in O(1) from a chunk address. Free chunks are
//! linked through their first word (intrusive free list); chunks never handed
//! out yet are carved lazily from `fresh`, so a new pool costs no writes and
//! its untouched pages stay zero and unbacked.

use crate::list::{Adapter, Link};
use crate::size_class::PAGE;
use crate::sync::{AtomicBool, AtomicPtr, Ordering};
use core::ptr::{null_mut, NonNull};

/// The link stored inside a free chunk.
#[repr(C)]
pub(crate) struct FreeChunk {
    pub next: *mut FreeChunk,
}

/// First pool of a slab: this many bytes (or one chunk, if larger).
pub(crate) const FIRST_POOL_BYTES: usize = 4 * PAGE;
/// Pools double per slab up to this size (or one chunk, if larger).
pub(crate) const MAX_POOL_BYTES: usize = 64 * PAGE;

/// Bytes of the next pool of a slab of `chunk` bytes when the slab already
/// holds `held` pools and `room` bytes of capacity are left, rounded to whole
/// pages; 0 when not even one chunk fits in `room`.
///
/// Rule: `min(FIRST_POOL_BYTES << held, MAX_POOL_BYTES)`, at least one chunk,
/// rounded up to a page multiple; then cut down to the largest page multiple
/// of `room` that still holds a whole number of chunks (at least one).
pub(crate) fn pool_bytes(chunk: usize, held: u32, room: usize) -> usize {
    let target = FIRST_POOL_BYTES
        .checked_shl(held.min(16))
        .unwrap_or(MAX_POOL_BYTES)
        .min(MAX_POOL_BYTES);
    let bytes = round_pages(target.max(chunk));
    // Only whole pages of the room can hold a pool.
    let room = room & !(PAGE - 1);
    if bytes <= room {
        return bytes;
    }
    // As many whole chunks as fit: `chunks * chunk <= room`, and room is a
    // page multiple, so rounding up to a page stays within it.
    let chunks = room / chunk;
    if chunks == 0 {
        0
    } else {
        round_pages(chunks * chunk)
    }
}

pub(crate) fn round_pages(n: usize) -> usize {
    (n + PAGE - 1) & !(PAGE - 1)
}

/// Exact divisibility test by a constant without a division: with
/// `d = odd << shift` and `inv` the inverse of `odd` mod 2^64, `x % d == 0`
/// iff `(x * inv).rotate_right(shift) <= u64::MAX / d` (Granlund &
/// Montgomery; the rotation folds the power-of-two test into the same
/// compare, as in Lemire et al., "Faster remainder by direct computation").
/// One multiply, one rotate, one compare on the free path.
#[derive(Clone, Copy, Default)]
pub(crate) struct Divisor {
    inv: u64,
    limit: u64,
    shift: u32,
}

impl Divisor {
    pub fn new(d: usize) -> Divisor {
        let shift = d.trailing_zeros();
        let odd = (d >> shift) as u64;
        // Newton's iteration doubles the correct low bits each step.
        let mut inv = odd;
        for _ in 0..6 {
            inv = inv.wrapping_mul(2u64.wrapping_sub(odd.wrapping_mul(inv)));
        }
        Divisor {
            inv,
            limit: u64::MAX / d as u64,
            shift,
        }
    }

    #[inline(always)]
    pub fn divides(&self, x: usize) -> bool {
        (x as u64).wrapping_mul(self.inv).rotate_right(self.shift) <= self.limit
    }
}

/// A pool header. One type serves the explicit `Arena` and the global
/// allocator's thread heaps; the cross-thread field (`remote`) stays idle in
/// an `Arena`, costing its fast path nothing.
///
/// Only the owner of the pool's segment touches a pool header, except
/// `remote` (any thread holding a live chunk of the pool may push onto it)
/// and the fields that stay fixed while the pool has a live chunk (`start`,
/// `end`, `div`, read by [`Pool::is_chunk_start_remote`]).
#[repr(C)]
pub(crate) struct Pool {
    /// The owner's free list. Invariant: every member is a distinct chunk
    /// start of this pool below `fresh`, not handed out and not on `remote`,
    /// holding the link to the next member in its first word.
    free: *mut FreeChunk,
    /// Chunks handed out and not yet freed back to the owner (chunks pushed
    /// on `remote` still count until collected). Invariant:
    /// `used + len(free) == carved chunks - len(remote)`, so
    /// `used <= capacity`.
    used: u32,
    /// Chunks the pool holds: `(end - start) / chunk_size`.
    capacity: u32,
    /// Next never-handed-out chunk. Invariant: `start <= fresh <= end`, on a
    /// chunk boundary; `fresh..end` was never handed out since the pool was
    /// (re)initialised, and reads as zero when `zeroed` is set.
    fresh: *mut u8,
    /// End of the last whole chunk.
    end: *mut u8,
    /// First chunk; page-aligned; the pool's pages start here.
    start: *mut u8,
    chunk_size: usize,
    /// Divisibility test by `chunk_size`.
    div: Divisor,
    /// Index in the slab table.
    slab: u32,
    /// First page (index inside the segment).
    first_page: u32,
    /// Pages the pool spans.
    pages: usize,
    /// Whether this header slot describes a live pool (all-zero: a free slot).
    live: bool,
    /// Whether `fresh..end` reads as zero. True for a pool whose pages were
    /// mapped or decommitted since it was (re)initialised; false for a pool
    /// re-cut from warm pages of another slab (`reinit`), whose fresh tail
    /// holds old data. A fresh chunk is reported zero only when this is set.
    zeroed: bool,
    /// Whether the pool's pages were decommitted while it sat, empty, on a
    /// thread heap's reserve (its bytes are then not counted in the budget).
    /// Written only under that heap's reserve lock while the pool is on the
    /// reserve (by any thread), or by the owner when it is on none; false
    /// for every pool off a reserve except between the owner taking it off
    /// and releasing it (`Core::release_pool` then gives back no budget).
    decommitted: AtomicBool,
    /// Whether the pool is its slab's kept empty pool (`Core::take_off_slab`
    /// left it on the slab's list): while set, a free that empties it again
    /// skips the policy, so one block allocated and freed over and over
    /// costs the free path one more test, not the retire path (mimalloc 3
    /// guards its page retire the same way). Owner only. Invariant: set
    /// only while the pool is on its slab's list (`Core::avail_remove` and
    /// `Core::avail_clear` clear it).
    pub(crate) kept: bool,
    /// When the pool went onto a reserve, in milliseconds of
    /// `CLOCK_MONOTONIC_COARSE` (wrapping); written and read under that
    /// reserve's lock, meaningless off a reserve.
    pub(crate) emptied_ms: u32,
    /// Link in its slab's list of pools with room (linked iff the pool is
    /// on that list).
    pub(crate) avail: Link<Pool>,
    /// Link in a thread heap's queue of pools that became empty.
    pub(crate) empty: Link<Pool>,
    /// Chunks freed by threads other than the owner (global allocator): a
    /// Treiber stack that any thread holding a live chunk of this pool
    /// pushes onto ([`Pool::push_remote`]) and only the owner empties, all
    /// at once ([`Pool::collect_remote`]).
    remote: AtomicPtr<FreeChunk>,
}

/// Adapter for a slab's list of pools with room.
pub(crate) struct AvailList;
// SAFETY: returns the `avail` field, derived from the raw pointer.
unsafe impl Adapter for AvailList {
    type Node = Pool;
    unsafe fn link(node: *mut Pool) -> *mut Link<Pool> {
        // SAFETY: `node` is a live pool header (trait contract).
        unsafe { core::ptr::addr_of_mut!((*node).avail) }
    }
}

/// Adapter for a thread heap's queue of empty pools.
pub(crate) struct EmptyQueue;
// SAFETY: returns the `empty` field, derived from the raw pointer.
unsafe impl Adapter for EmptyQueue {
    type Node = Pool;
    unsafe fn link(node: *mut Pool) -> *mut Link<Pool> {
        // SAFETY: `node` is a live pool header (trait contract).
        unsafe { core::ptr::addr_of_mut!((*node).empty) }
    }
}

impl Pool {
    /// A free slot. Outside loom an all-zero slot (a fresh segment's) is
    /// one too; under loom the atomic must be built, so there is no `const`
    /// and segment headers write their slots (`Segment::write_header`).
    #[inline(always)]
    pub fn empty() -> Pool {
        Pool {
            free: null_mut(),
            used: 0,
            capacity: 0,
            fresh: null_mut(),
            end: null_mut(),
            start: null_mut(),
            chunk_size: 0,
            div: Divisor {
                inv: 0,
                limit: 0,
                shift: 0,
            },
            slab: 0,
            first_page: 0,
            pages: 0,
            live: false,
            zeroed: false,
            decommitted: AtomicBool::new(false),
            kept: false,
            emptied_ms: 0,
            avail: Link::NEW,
            empty: Link::NEW,
            remote: AtomicPtr::new(null_mut()),
        }
    }

    /// Makes this slot describe a fresh pool of `bytes` at `start` (page
    /// aligned, `bytes` of never-written or decommitted memory), cut into
    /// chunks of `chunk` bytes of slab `slab`; `page` is its first page in
    /// the segment.
    pub fn init(&mut self, start: *mut u8, bytes: usize, chunk: usize, slab: usize, page: u32) {
        let capacity = bytes / chunk;
        *self = Pool {
            fresh: start,
            end: start.wrapping_add(capacity * chunk),
            capacity: capacity as u32,
            chunk_size: chunk,
            start,
            div: Divisor::new(chunk),
            slab: slab as u32,
            first_page: page,
            pages: bytes / PAGE,
            live: true,
            zeroed: true,
            ..Pool::empty()
        };
    }

    /// Re-cuts this live pool, empty and on no list, into chunks of `chunk`
    /// bytes of slab `slab` over the same pages: every chunk fresh again.
    /// `zeroed` says whether the pages read as zero (they were decommitted)
    /// or hold old data (warm pages).
    pub fn reinit(&mut self, chunk: usize, slab: usize, zeroed: bool) {
        debug_assert!(self.live && self.used == 0 && !self.has_remote());
        debug_assert!(!self.avail.is_linked() && !self.empty.is_linked());
        let (start, bytes, page) = (self.start, self.bytes(), self.first_page);
        self.init(start, bytes, chunk, slab, page);
        self.zeroed = zeroed;
    }

    /// Whether the pool's pages were decommitted on a reserve (see the
    /// field; the caller holds the reserve lock or owns a pool on no
    /// reserve).
    pub fn is_decommitted(&self) -> bool {
        self.decommitted.load(Ordering::Relaxed)
    }

    /// Sets or clears [`is_decommitted`](Pool::is_decommitted) (under the
    /// same rule as the field).
    pub fn set_decommitted(&self, value: bool) {
        self.decommitted.store(value, Ordering::Relaxed);
    }

    /// Whether this slot describes a live pool.
    #[inline(always)]
    pub fn is_live(&self) -> bool {
        self.live
    }

    /// Chunks handed out and not yet freed back (see the field).
    #[inline(always)]
    pub fn used(&self) -> u32 {
        self.used
    }

    /// Chunks the pool holds.
    pub fn capacity(&self) -> u32 {
        self.capacity
    }

    /// The slab (chunk) size in bytes.
    #[inline(always)]
    pub fn chunk_size(&self) -> usize {
        self.chunk_size
    }

    /// The slab index.
    #[inline(always)]
    pub fn slab(&self) -> usize {
        self.slab as usize
    }

    /// First page in the segment and number of pages.
    pub fn page_range(&self) -> (usize, usize) {
        (self.first_page as usize, self.pages)
    }

    /// The first byte of the pool.
    pub fn start(&self) -> *mut u8 {
        self.start
    }

    /// Bytes of pages the pool spans.
    pub fn bytes(&self) -> usize {
        self.pages * PAGE
    }

    /// Whether every chunk was handed out at some point since the pool was
    /// (re)initialised (no fresh tail left), so all its pages were touched.
    pub fn all_carved(&self) -> bool {
        self.fresh >= self.end
    }

    /// Whether a chunk can be taken without collecting remote frees: a free
    /// chunk or a never-used one.
    pub fn has_room(&self) -> bool {
        !self.free.is_null() || self.fresh < self.end
    }

    /// Whether `addr` is the start of a chunk this pool handed out at some
    /// point (inside the carved part, on a chunk boundary).
    #[inline(always)]
    pub fn is_chunk_start(&self, addr: usize) -> bool {
        let off = addr.wrapping_sub(self.start as usize);
        addr < self.fresh as usize
            && off < (self.end as usize - self.start as usize)
            && self.div.divides(off)
    }

    /// [`is_chunk_start`](Pool::is_chunk_start) for an address known to lie
    /// at or above `start` (the segment's page map put it in this pool's
    /// pages): one compare fewer.
    #[inline(always)]
    pub fn is_chunk_start_in_pages(&self, addr: usize) -> bool {
        debug_assert!(addr >= self.start as usize);
        addr < self.fresh as usize && self.div.divides(addr - self.start as usize)
    }

    /// Like [`is_chunk_start`](Pool::is_chunk_start), reading only fields
    /// that stay fixed while the pool has a live chunk, so a thread other
    /// than the owner may call it for a chunk it holds.
    #[inline(always)]
    pub fn is_chunk_start_remote(&self, addr: usize) -> bool {
        let off = addr.wrapping_sub(self.start as usize);
        off < (self.end as usize - self.start as usize) && self.div.divides(off)
    }

    /// Takes a chunk from the free list or, failing that, from the fresh
    /// tail; the flag is true for a fresh chunk of a `zeroed` pool (zero
    /// memory). `None` when
    /// the pool is full.
    #[inline(always)]
    pub fn take(&mut self) -> Option<(NonNull<u8>, bool)> {
        let c = pop(self);
        if let Some(c) = NonNull::new(c) {
            return Some((c, false));
        }
        if self.fresh < self.end {
            let c = self.fresh;
            // Stays within `end` (fresh < end, both on chunk boundaries).
            self.fresh = c.wrapping_add(self.chunk_size);
            self.used += 1;
            return NonNull::new(c).map(|c| (c, self.zeroed));
        }
        None
    }

    /// Moves the chunks other threads freed into the local free list; returns
    /// how many. Owner only.
    pub fn collect_remote(&mut self) -> u32 {
        if self.remote.load(Ordering::Relaxed).is_null() {
            return 0;
        }
        // Acquire pairs with the Release CAS of each push, so the links
        // written by the pushers are visible.
        let mut list = self.remote.swap(null_mut(), Ordering::Acquire);
        let mut n = 0;
        while !list.is_null() {
            // SAFETY: remote-list members are chunks of this pool no one
            // uses any more, each holding a link written before the Release
            // CAS that published it; after the swap they are ours alone.
            unsafe {
                let next = (*list).next;
                (*list).next = self.free;
                self.free = list;
                list = next;
            }
            n += 1;
        }
        self.used -= n;
        n
    }

    /// Whether other threads have freed chunks not yet collected.
    pub fn has_remote(&self) -> bool {
        !self.remote.load(Ordering::Relaxed).is_null()
    }

    /// Pushes chunk `addr` onto the remote list; true when the list was
    /// empty before (the pusher then tells the owner).
    ///
    /// Sound from any thread because: the caller holds the live chunk
    /// `addr`, so the pool (it is never released while `used > 0`, and
    /// `used` still counts this chunk) and its fixed fields stay valid until
    /// the push completes; the chunk's first word is written before the
    /// Release CAS that publishes it; only the owner takes from the list,
    /// and it takes the whole list with one swap, so a node never leaves and
    /// re-enters between a pusher's load and CAS (no ABA).
    ///
    /// # Safety
    /// `pool` is a live pool; `addr` is a chunk start of it that the caller
    /// holds and hands back (it is not used afterwards).
    pub unsafe fn push_remote(pool: *const Pool, addr: usize) -> bool {
        // SAFETY: contract: the pool is live while we hold the chunk, and
        // the chunk is ours to write until the CAS publishes it.
        unsafe {
            let chunk = (*pool).start.with_addr(addr).cast::<FreeChunk>();
            let remote = &(*pool).remote;
            let mut old = remote.load(Ordering::Relaxed);
            loop {
                (*chunk).next = old;
                match remote.compare_exchange_weak(old, chunk, Ordering::Release, Ordering::Relaxed)
                {
                    Ok(_) => return old.is_null(),
                    Err(now) => old = now,
                }
            }
        }
    }
}

/// The owner's side of the remote-free protocol: "some pool of yours has
/// remote frees". A pusher whose [`Pool::push_remote`] found the list empty
/// (it returned true) raises it; the owner takes it, then collects.
///
/// No notice is lost. Raises and takes are read-modify-writes, so a take
/// that comes after a raise in the flag's modification order reads from
/// that raise's release sequence and sees the push before it. A push that
/// finds the list non-empty raises nothing, but the chunk it joins was
/// pushed onto an empty list by a pusher that raises; the owner that takes
/// that raise sees the list non-empty, and its collecting swap takes every
/// chunk pushed before it. So while no push or collect is under way, a
/// non-empty remote list has its owner's flag raised (the loom model in
/// `pool::loom_tests` checks this, and found the lost notice when `raise`
/// was a plain store).
pub(crate) struct RemoteFlag(AtomicBool);

impl RemoteFlag {
    /// A lowered flag.
    pub fn new() -> RemoteFlag {
        RemoteFlag(AtomicBool::new(false))
    }

    /// Tells the owner (after a push that returned true).
    ///
    /// A swap, not a store: a Release store could land before the owner's
    /// `take` in the flag's modification order without the owner seeing the
    /// push (the pusher's CAS read the owner's collecting swap, which
    /// releases nothing), and the take would erase it, stranding the chunk
    /// on the list. Same instruction count (x86: `xchg` for `mov`).
    #[inline(always)]
    pub fn raise(&self) {
        self.0.swap(true, Ordering::Release);
    }

    /// Lowers the flag; true if it was raised. Acquire pairs with
    /// [`raise`](RemoteFlag::raise), so the owner then sees the remote lists
    /// the raiser pushed onto as non-empty. Owner only.
    #[inline(always)]
    pub fn take(&self) -> bool {
        self.0.load(Ordering::Relaxed) && self.0.swap(false, Ordering::Acquire)
    }

    /// Lowers the flag of an owner that has just emptied all its lists.
    pub fn clear(&self) {
        self.0.store(false, Ordering::Relaxed);
    }
}

/// Pops a chunk off `pool`'s free list, or returns null: the one allocation
/// fast path, used by the `Arena` and the global allocator alike.
#[inline(always)]
pub(crate) fn pop(pool: &mut Pool) -> *mut u8 {
    let c = pool.free;
    if c.is_null() {
        return null_mut();
    }
    // SAFETY: free-list members are free chunks of this pool holding the
    // link to the next member in their first word (`free`'s invariant).
    pool.free = unsafe { (*c).next };
    pool.used += 1;
    c.cast()
}

/// [`pop`] through a raw pointer, for the global allocator's direct table,
/// whose entries may point at a never-written block of zeros standing for
/// "no pool with room": its `free` is null, so the pop returns null before
/// any write.
///
/// # Safety
/// `pool` points to a live pool the caller owns, or to a readable block of
/// at least `size_of::<Pool>()` zero bytes aligned as a pool.
#[inline(always)]
pub(crate) unsafe fn pop_ptr(pool: *mut Pool) -> *mut u8 {
    // SAFETY: `free` can be read in either case (contract); a non-null one
    // belongs to a live pool of the caller's, whose free-list members hold
    // the link to the next member (`free`'s invariant).
    unsafe {
        let c = (*pool).free;
        if c.is_null() {
            return null_mut();
        }
        (*pool).free = (*c).next;
        (*pool).used += 1;
        c.cast()
    }
}

/// Pushes chunk `addr` back onto `pool`'s free list: the one free fast path.
/// False, and nothing changed, when the free is a detected double free (the
/// chunk is the free list's head, or the pool has no live chunk).
///
/// # Safety
/// `addr` is a chunk start of `pool` below `fresh` (checked with
/// [`Pool::is_chunk_start`] or its `_in_pages` twin) that the caller hands
/// back and no longer uses; the caller owns the pool.
#[inline(always)]
pub(crate) unsafe fn push(pool: &mut Pool, addr: usize) -> bool {
    // Derived from the pool's own pointer, so the link write keeps the
    // mapping's provenance whatever pointer the caller held.
    let c = pool.start.with_addr(addr).cast::<FreeChunk>();
    if c == pool.free || pool.used == 0 {
        return false;
    }
    // SAFETY: `c` is a chunk of this pool that nobody uses (contract), so
    // its first word is ours to write the link into.
    unsafe { (*c).next = pool.free };
    pool.free = c;
    pool.used -= 1;
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn divisor_matches_modulo() {
        for d in [8usize, 24, 72, 168, 4096, 5000, 12_345_672, 1 << 40] {
            let div = Divisor::new(d);
            for x in (0..d * 40)
                .step_by((d / 7).max(1))
                .chain([d * 3, d * 1000, usize::MAX - 7])
            {
                assert_eq!(div.divides(x), x % d == 0, "d {d} x {x}");
            }
        }
    }

    #[test]
    fn divisor_matches_modulo_for_every_slab() {
        // Miri interprets every step: a sample of the slabs and chunks there.
        let (every, chunks) = if cfg!(miri) { (37, 20) } else { (1, 600) };
        for &d in crate::size_class::slabs().iter().step_by(every) {
            let div = Divisor::new(d);
            // Chunk starts of a whole pool and their neighbours, plus offsets
            // off every power of two below the slab.
            for k in 0..chunks {
                for x in [k * d, (k * d).wrapping_sub(1), k * d + 1, k * d + d / 2] {
                    assert_eq!(div.divides(x), x % d == 0, "d {d} x {x}");
                }
            }
            for b in 0..usize::BITS {
                let x = 1usize << b;
                assert_eq!(div.divides(x), x.is_multiple_of(d), "d {d} x {x}");
            }
        }
    }

    #[test]
    fn pool_sizes_double_to_cap_and_respect_room() {
        assert_eq!(pool_bytes(16, 0, usize::MAX), 4 * PAGE);
        assert_eq!(pool_bytes(16, 1, usize::MAX), 8 * PAGE);
        assert_eq!(pool_bytes(16, 10, usize::MAX), MAX_POOL_BYTES);
        assert_eq!(pool_bytes(1 << 20, 0, usize::MAX), 1 << 20);
        assert_eq!(pool_bytes(4096, 3, 5 * PAGE), 5 * PAGE);
        assert_eq!(pool_bytes(4096, 0, 4095), 0);
        assert_eq!(pool_bytes(5000, 0, 8192), 8192);
        assert_eq!(pool_bytes(5000, 0, 6000), 0);
        assert_eq!(pool_bytes(8, 0, 4196), PAGE);
    }
}

/// Loom model of the remote-free list, on the real `Pool` and `RemoteFlag`
/// (run with `--cfg loom`, see `sync.rs`).
#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use loom::cell::UnsafeCell;
    use loom::sync::Arc;
    use loom::thread;
    use std::alloc::Layout;

    const CHUNK: usize = 64;
    const CHUNKS: usize = 4;

    /// What the model's threads share: a pool over memory the model owns,
    /// its owner's flag, and per chunk a loom cell standing for the data its
    /// user writes. loom does not see plain memory, so the cells are how it
    /// checks that a chunk's last use by the freeing thread happens before
    /// the owner reuses it (the push's Release, the collect's Acquire).
    struct Shared {
        pool: *mut Pool,
        flag: RemoteFlag,
        data: [UnsafeCell<usize>; CHUNKS],
        mem: *mut u8,
    }

    // SAFETY: the pointers are the model's pool and chunk memory, shared
    // exactly as the allocator shares a segment's: the owner thread alone
    // uses the pool's private fields, the others only `Pool::push_remote`
    // for chunks they hold.
    unsafe impl Send for Shared {}
    // SAFETY: as for Send.
    unsafe impl Sync for Shared {}

    fn layout() -> Layout {
        Layout::from_size_align(CHUNK * CHUNKS, PAGE).unwrap()
    }

    impl Shared {
        fn new() -> Shared {
            // SAFETY: a non-zero size.
            let mem = unsafe { std::alloc::alloc_zeroed(layout()) };
            assert!(!mem.is_null());
            let pool = Box::into_raw(Box::new(Pool::empty()));
            // SAFETY: the box just made, not shared yet; the memory is
            // ours, page-aligned and zeroed, as a fresh pool's pages are.
            unsafe { (*pool).init(mem, CHUNK * CHUNKS, CHUNK, 0, 0) };
            Shared {
                pool,
                flag: RemoteFlag::new(),
                data: std::array::from_fn(|_| UnsafeCell::new(0)),
                mem,
            }
        }

        fn index(&self, chunk: usize) -> usize {
            (chunk - self.mem as usize) / CHUNK
        }

        /// The owner collects its remote list and takes back (reuses) every
        /// chunk it got, recording them in `got`; checks `used`.
        fn collect(&self, got: &mut Vec<usize>) {
            // SAFETY: called by the owner thread only, which alone uses the
            // pool's private fields (as `Core` does through its pointer).
            let pool = unsafe { &mut *self.pool };
            let used = pool.used();
            let n = pool.collect_remote();
            assert_eq!(pool.used(), used - n);
            for _ in 0..n {
                // The free list was empty, so these are the collected chunks.
                let (c, fresh) = pool.take().unwrap();
                assert!(!fresh, "a collected chunk comes off the free list");
                let c = c.as_ptr() as usize;
                let i = self.index(c);
                // Reuse: the freeing thread's last write must be visible.
                // SAFETY: the cell's own pointer; loom fails the model if
                // this access races with the freeing thread's.
                self.data[i].with_mut(|d| unsafe {
                    assert_eq!(*d, i + 1);
                    *d = 0;
                });
                got.push(c);
            }
        }
    }

    impl Drop for Shared {
        fn drop(&mut self) {
            // SAFETY: made by `Shared::new` with these layouts, freed once,
            // after every thread of the model is done.
            unsafe {
                drop(Box::from_raw(self.pool));
                std::alloc::dealloc(self.mem, layout());
            }
        }
    }

    /// Two threads free a chunk each onto the pool's remote list (raising
    /// the flag as `global::remote::free` does) while the owner takes the
    /// flag and collects (as `ThreadPolicy::refill` does). Checks: every
    /// chunk is collected exactly once, `used` stays right, a reused chunk's
    /// last write happens before its reuse, and no chunk is left on the list
    /// without the flag raised.
    #[test]
    fn loom_remote_frees_are_collected_exactly_once() {
        loom::model(|| {
            let sh = Arc::new(Shared::new());
            // The owner hands out three chunks; two go to other threads.
            let mut out = Vec::new();
            for _ in 0..3 {
                // SAFETY: the owner thread, before any other exists.
                let (c, fresh) = unsafe { (*sh.pool).take() }.unwrap();
                assert!(fresh);
                out.push(c.as_ptr() as usize);
            }
            let freed = [out[0], out[1]];
            let pushers: Vec<_> = freed
                .iter()
                .map(|&c| {
                    let sh = sh.clone();
                    thread::spawn(move || {
                        let i = sh.index(c);
                        // SAFETY: the cell's own pointer; loom checks the
                        // access against the owner's.
                        sh.data[i].with_mut(|d| unsafe { *d = i + 1 });
                        // SAFETY: a live pool and a chunk start of it that
                        // this thread holds and hands back.
                        if unsafe { Pool::push_remote(sh.pool, c) } {
                            sh.flag.raise();
                        }
                    })
                })
                .collect();
            // The owner, concurrently: refill's step, twice.
            let mut got = Vec::new();
            for _ in 0..2 {
                // SAFETY: the owner reads its own pool.
                if sh.flag.take() && unsafe { (*sh.pool).has_remote() } {
                    sh.collect(&mut got);
                }
            }
            for p in pushers {
                p.join().unwrap();
            }
            // SAFETY: every other thread is done.
            let pool = unsafe { &mut *sh.pool };
            // No notice lost: chunks left on the list have the flag raised.
            assert!(!pool.has_remote() || sh.flag.take());
            // The allocation path collects without the flag.
            sh.collect(&mut got);
            got.sort_unstable();
            assert_eq!(got, freed);
            assert!(!pool.has_remote());
            assert_eq!(pool.used(), 3);
            for &c in &out {
                // SAFETY: chunks of this pool the owner holds, freed once.
                assert!(unsafe { push(pool, c) });
            }
            assert_eq!(pool.used(), 0);
        });
    }
}
