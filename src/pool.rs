//! Pools: a run of pages inside a segment, cut into chunks of one slab.
//!
//! A pool has no per-chunk header. Its own header lives in the segment header
//! (see `segment.rs`), found in O(1) from a chunk address. Free chunks are
//! linked through their first word (intrusive free list); chunks never handed
//! out yet are carved lazily from `fresh`, so a new pool costs no writes and
//! its untouched pages stay zero and unbacked.

use crate::list::{Adapter, Link};
use crate::size_class::PAGE;
use crate::sync::{AtomicBool, AtomicPtr, AtomicUsize, Ordering};
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

/// Offsets and divisors below this are tested by [`Divisor::divides_small`].
pub(crate) const SMALL_DIVIDEND: usize = 1 << 31;

/// Exact divisibility test by a constant `d` without a division (Lemire,
/// Kaser and Kurz, "Faster remainder by direct computation", 2019): with
/// `m = ceil(2^64 / d)`, `x % d == 0` iff `x * m mod 2^64 < m`, for every
/// `x` and `d` of at most 31 bits. One multiply and one compare on the free
/// path, with one field (the older form, an inverse of the odd part and a
/// rotation, needed three and one more instruction).
///
/// Why it is exact: write `m * d = 2^64 + e` with `0 <= e < d`, and
/// `x = q * d + r` with `0 <= r < d`. Then `x * m = q * 2^64 + q * e + r * m`,
/// so `x * m mod 2^64 = q * e + r * m` as long as that is below `2^64`; it
/// is, since `q * e < x < 2^31` and `r * m <= (d - 1) * m = 2^64 + e - m`
/// with `m >= 2^33 > 2^31 + e`. For `r = 0` the value is `q * e < 2^31 <=
/// m`; for `r >= 1` it is at least `m`.
#[derive(Clone, Copy, Default)]
pub(crate) struct Divisor {
    /// `ceil(2^64 / d)`, or 0 when `d` is above [`SMALL_DIVIDEND`] (then
    /// only the division tests it).
    m: u64,
}

impl Divisor {
    /// The test for `d >= 2`.
    pub fn new(d: usize) -> Divisor {
        debug_assert!(d >= 2);
        Divisor {
            m: if d <= SMALL_DIVIDEND {
                u64::MAX / d as u64 + 1
            } else {
                0
            },
        }
    }

    /// Whether `d` is small enough for [`divides_small`](Divisor::divides_small).
    #[inline(always)]
    pub fn is_small(&self) -> bool {
        self.m != 0
    }

    /// `x % d == 0`.
    ///
    /// Requires `x < SMALL_DIVIDEND` and [`is_small`](Divisor::is_small)
    /// (checked in debug builds; outside them the answer is meaningless).
    #[inline(always)]
    pub fn divides_small(&self, x: usize) -> bool {
        debug_assert!(x < SMALL_DIVIDEND && self.is_small());
        (x as u64).wrapping_mul(self.m) < self.m
    }
}

/// The most pages a pool may span for its wholly free pages to be purged
/// while it has live chunks (one bit each in a `u64` mask): every pool of
/// up to [`MAX_POOL_BYTES`].
pub(crate) const PURGE_MAX_PAGES: usize = 64;
/// The most chunks a pool may hold for its free pages to be purged: the
/// scan's bitmap of free chunks, 512 bytes on the stack (chunks of 64 bytes
/// and up in a 64-page pool).
pub(crate) const PURGE_MAX_CHUNKS: usize = 4096;

/// The mask of pages `p0..=p1` (`p0 <= p1 < 64`).
fn page_span(p0: usize, p1: usize) -> u64 {
    let n = p1 - p0 + 1;
    (if n >= 64 { u64::MAX } else { (1u64 << n) - 1 }) << p0
}
/// [`Pool`]'s `watch` while the pool is on no slab list: every local free
/// takes the cold path.
pub(crate) const WATCH_OFF_LIST: i32 = i32::MAX;
/// `watch` of a listed pool whose emptying the core's policy must hear of.
pub(crate) const WATCH_EMPTY: i32 = 0;
/// `watch` of a listed pool whose frees need nothing but the push.
pub(crate) const WATCH_NONE: i32 = -1;

/// Bit 0 of [`Pool`]'s `remote` word: the pool is on a heap's queue of pools
/// to collect (or about to be; see the field).
pub(crate) const QUEUED: usize = 1;

/// A pool header. One type serves the explicit `Arena` and the global
/// allocator's thread heaps; the cross-thread field (`remote`) stays idle in
/// an `Arena`, costing its fast path nothing.
///
/// Only the owner of the pool's segment touches a pool header, except
/// `remote` (any thread holding a live chunk of the pool may push onto it),
/// `next_queued` (the thread that queues the pool) and the fields that stay
/// fixed while the pool has a live chunk (`start`, `end`, `chunk_size`,
/// `div`, read by [`Pool::is_chunk_start_remote`]).
///
/// 128 bytes (a power of two, so a slot's header is one shift away from its
/// index), with the free path's fields (`free`, `used`, `watch`, `fresh`,
/// `start`, `div`) in the first cache line.
#[repr(C)]
pub(crate) struct Pool {
    /// The owner's free list. Invariant: every member is a distinct chunk
    /// start of this pool below `fresh`, not handed out and not on `remote`,
    /// holding the link to the next member in its first word.
    free: *mut FreeChunk,
    /// Chunks handed out and not yet freed back to the owner (chunks pushed
    /// on `remote` still count until collected). Invariant:
    /// `used + len(free) + purged == carved chunks - len(remote)`, so
    /// `used <= capacity`, where `purged` counts the chunks overlapping the
    /// pages the segment marks purged (free, on no list:
    /// [`Pool::purge_free_pages`], [`Pool::unpurge`]).
    used: u32,
    /// The free fast path's one test of whether a pool needs more than a
    /// push ([`push_fast`]): a local free that leaves `used` at or below
    /// `watch` (compared as `i32`) takes the cold path (`Core::free_fixup`).
    /// Invariant, kept by the core's `avail_*` methods and
    /// `Core::take_off_slab`, the only places that link, unlink or keep a
    /// pool: [`WATCH_OFF_LIST`] while the pool is on no slab list (a free
    /// into a full pool relinks it; one into a reserve pool is a double
    /// free), [`WATCH_EMPTY`] while it is on its slab's list in a core whose
    /// policy tracks empty pools and it is not kept (the free that empties
    /// it tells the policy), [`WATCH_NONE`] otherwise. A free with `used`
    /// at 0 (a double free) leaves -1, at or below every value: the cold
    /// path reports it. A free slot (all zero) reads 0, which no free
    /// reaches (the page map names live pools only).
    watch: i32,
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
    /// Chunks the pool holds: `(end - start) / chunk_size`.
    capacity: u32,
    /// Index in the slab table.
    slab: u32,
    /// First page (index inside the segment).
    first_page: u32,
    /// Pages the pool spans (a pool is at most 1 TiB: 2^28 pages).
    pages: u32,
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
    /// Chunks freed by threads other than the owner (global allocator), and
    /// whether the pool is queued for its owner: the address of the top
    /// chunk of a Treiber stack of such chunks, or-ed with [`QUEUED`] (bit
    /// 0; chunk starts are multiples of 8). Pushed onto by any thread
    /// holding a live chunk ([`Pool::push_remote`]); emptied, whole, only by
    /// the owner ([`Pool::collect_remote`], [`Pool::collect_dequeued`]).
    ///
    /// Invariants:
    /// * `QUEUED` is set iff the pool is on exactly one heap's
    ///   [`PoolQueue`], or the one pusher whose CAS set it is between that
    ///   CAS and its queue push (or, when it finds the segment abandoned,
    ///   its [`Pool::unqueue`] under the abandoned lock).
    /// * `QUEUED` is cleared only by a heap that took the pool off its own
    ///   queue and owns its segment, in the swap that takes the chunks
    ///   ([`Pool::collect_dequeued`]), or by the pusher that set it, as said
    ///   above. Every other collection keeps it.
    /// * While the word is not 0 the pool is never released, reused or
    ///   re-initialised, so its segment stays mapped: the pusher that set
    ///   `QUEUED` still reads the segment's owner and writes `next_queued`
    ///   after publishing its chunk.
    remote: AtomicUsize,
    /// Link in a heap's [`PoolQueue`] (meaningful only while `QUEUED` is
    /// set): written, Relaxed, by the thread that pushes the pool onto a
    /// queue, before its Release CAS on the queue's head; read, Relaxed, by
    /// the heap that took the queue with an Acquire swap, before anything
    /// that lets the pool be queued again (the swap of `remote` to 0).
    next_queued: AtomicPtr<Pool>,
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
            watch: 0,
            fresh: null_mut(),
            end: null_mut(),
            start: null_mut(),
            chunk_size: 0,
            div: Divisor { m: 0 },
            capacity: 0,
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
            remote: AtomicUsize::new(0),
            next_queued: AtomicPtr::new(null_mut()),
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
            pages: (bytes / PAGE) as u32,
            watch: WATCH_OFF_LIST,
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
        debug_assert!(self.live && self.used == 0 && !self.remote_in_use());
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
        (self.first_page as usize, self.pages as usize)
    }

    /// The first byte of the pool.
    pub fn start(&self) -> *mut u8 {
        self.start
    }

    /// Bytes of pages the pool spans.
    pub fn bytes(&self) -> usize {
        self.pages as usize * PAGE
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

    /// Whether `off`, an offset from `start` below `end - start`, is on a
    /// chunk boundary: the multiply test when it applies, else a division
    /// (a huge pool's offsets may reach 1 TiB).
    #[inline(always)]
    fn is_boundary(&self, off: usize) -> bool {
        if off < SMALL_DIVIDEND && self.div.is_small() {
            self.div.divides_small(off)
        } else {
            off.is_multiple_of(self.chunk_size)
        }
    }

    /// Whether `addr` is the start of a chunk this pool handed out at some
    /// point (inside the carved part, on a chunk boundary).
    #[inline(always)]
    pub fn is_chunk_start(&self, addr: usize) -> bool {
        let off = addr.wrapping_sub(self.start as usize);
        addr < self.fresh as usize
            && off < (self.end as usize - self.start as usize)
            && self.is_boundary(off)
    }

    /// [`is_chunk_start`](Pool::is_chunk_start) for an address known to lie
    /// at or above `start` in a pool of a normal segment (the segment's page
    /// map put it in this pool's pages), so its offset and chunk size are
    /// below 4 MiB: one compare and the multiply test. False for the
    /// segment's never-live `none` slot (its `fresh` is null).
    #[inline(always)]
    pub fn is_chunk_start_in_pages(&self, addr: usize) -> bool {
        debug_assert!(addr >= self.start as usize);
        debug_assert!(self.end as usize - self.start as usize <= SMALL_DIVIDEND);
        addr < self.fresh as usize && self.div.divides_small(addr - self.start as usize)
    }

    /// Like [`is_chunk_start`](Pool::is_chunk_start), reading only fields
    /// that stay fixed while the pool has a live chunk, so a thread other
    /// than the owner may call it for a chunk it holds.
    #[inline(always)]
    pub fn is_chunk_start_remote(&self, addr: usize) -> bool {
        let off = addr.wrapping_sub(self.start as usize);
        off < (self.end as usize - self.start as usize) && self.is_boundary(off)
    }

    /// Sets [`watch`](Pool#structfield.watch) (the core keeps it in step
    /// with the pool's lists; see the field).
    #[inline(always)]
    pub fn set_watch(&mut self, watch: i32) {
        self.watch = watch;
    }

    /// The current [`watch`](Pool#structfield.watch) (invariant checks).
    #[cfg(any(test, debug_assertions))]
    pub fn watch(&self) -> i32 {
        self.watch
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

    /// Whether a purge of this pool's wholly free pages
    /// ([`purge_free_pages`](Pool::purge_free_pages)) is worth its scan:
    /// the pool has a live chunk, fits the scan's limits, and, if its live
    /// chunks were spread at random, at least a third of its pages would
    /// hold none: `(1 - used / capacity)^k` with `k` the chunks that
    /// overlap one page; a pool scanned before (`purged_pages` given back
    /// already) is scanned again only when it is expected to give an eighth
    /// of its pages more. At 10% occupancy chunks of about 460 bytes and up
    /// pass; 256-byte chunks need under 6%, 64-byte ones under 1.7%. The
    /// scan's cost is the walk of the free list (in free order, so a cache
    /// miss a chunk) and a `madvise` a run of pages: a third keeps what the
    /// `compare` frag workload pays per MiB given back low (about 1.3 ms).
    pub fn purge_worthwhile(&self, purged_pages: u32) -> bool {
        let cap = self.capacity as u64;
        if self.used == 0
            || self.pages as usize > PURGE_MAX_PAGES
            || cap as usize > PURGE_MAX_CHUNKS
            || self.free.is_null()
        {
            return false;
        }
        // Chunks overlapping a page: PAGE / chunk, plus one straddling.
        let k = if self.chunk_size >= PAGE {
            2
        } else {
            PAGE / self.chunk_size + 1
        };
        let free = cap - self.used as u64;
        // 1 - occupancy, raised to k, in 1/65536ths.
        let mut f: u64 = 1 << 16;
        for _ in 0..k {
            f = f * free / cap;
            if f == 0 {
                return false;
            }
        }
        let expect = (f * self.pages as u64) >> 16;
        f * 3 >= 1 << 16 && expect > purged_pages as u64 + (self.pages as u64 / 8)
    }

    /// The first and last page (inside the pool) chunk `i` overlaps.
    fn chunk_pages(&self, i: usize) -> (usize, usize) {
        let off = i * self.chunk_size;
        (off / PAGE, (off + self.chunk_size - 1) / PAGE)
    }

    /// Finds the pages of this pool, not in `purged` (bit `i` = page `i` of
    /// the pool, purged before), that hold only free chunks (on the free
    /// list, or overlapping a page of `purged`), none of them fresh; takes
    /// the chunks overlapping those pages off the free list and returns
    /// their mask. The caller then decommits those pages and marks them
    /// purged in the segment (they read as zero afterwards, so no link may
    /// live there: none does once this returns), and later gives their
    /// chunks back with [`unpurge`](Pool::unpurge). The free list is left
    /// in address order. Owner only; only for a pool of at most
    /// [`PURGE_MAX_PAGES`] pages and [`PURGE_MAX_CHUNKS`] chunks. Cost: one
    /// walk of the free list, and when pages are found one pass over the
    /// free chunks in address order.
    pub fn purge_free_pages(&mut self, purged: u64) -> u64 {
        let cap = self.capacity as usize;
        if self.pages as usize > PURGE_MAX_PAGES || cap > PURGE_MAX_CHUNKS || cap == 0 {
            return 0;
        }
        let chunk = self.chunk_size;
        let start = self.start as usize;
        let carved = (self.fresh as usize - start) / chunk;
        let mut free = [0u64; PURGE_MAX_CHUNKS / 64];
        let mut c = self.free;
        while !c.is_null() {
            let i = (c as usize - start) / chunk;
            free[i / 64] |= 1 << (i % 64);
            // SAFETY: free-list members are free chunks of this pool holding
            // the link to the next member (`free`'s invariant).
            c = unsafe { (*c).next };
        }
        let mut old = purged;
        while old != 0 {
            let page = old.trailing_zeros() as usize;
            old &= old - 1;
            let hi = (((page + 1) * PAGE - 1) / chunk).min(cap - 1);
            for i in page * PAGE / chunk..=hi {
                free[i / 64] |= 1 << (i % 64);
            }
        }
        let mut mask = 0u64;
        for page in 0..self.pages as usize {
            let lo = page * PAGE / chunk;
            if lo >= carved {
                // Fresh chunks from here on.
                break;
            }
            let hi = (((page + 1) * PAGE - 1) / chunk).min(cap - 1);
            if purged & (1 << page) != 0 || hi >= carved {
                continue;
            }
            if (lo..=hi).all(|i| free[i / 64] & (1 << (i % 64)) != 0) {
                mask |= 1 << page;
            }
        }
        if mask == 0 {
            return 0;
        }
        // Rebuild the list from the bitmap, in address order (one sequential
        // pass, not a second walk in free order), without the chunks that
        // overlap a purged page, old or new.
        let all = purged | mask;
        let mut head: *mut FreeChunk = null_mut();
        for w in (0..carved.div_ceil(64)).rev() {
            let mut bits = free[w];
            while bits != 0 {
                let b = 63 - bits.leading_zeros() as usize;
                bits &= !(1u64 << b);
                let i = w * 64 + b;
                let (p0, p1) = self.chunk_pages(i);
                if all & page_span(p0, p1) != 0 {
                    continue;
                }
                let c = self.start.wrapping_add(i * chunk).cast::<FreeChunk>();
                // SAFETY: chunk `i` was on the free list (its bit is set and
                // it overlaps no purged page), so it is a free chunk of this
                // pool: ours to link.
                unsafe { (*c).next = head };
                head = c;
            }
        }
        self.free = head;
        mask
    }

    /// Puts the chunks overlapping the pages of `mask` (purged pages of this
    /// pool, see [`purge_free_pages`](Pool::purge_free_pages)) back on the
    /// free list, in address order ahead of the others; returns how many.
    /// Writing their links faults the pages in again. The caller then
    /// clears the pages' purged marks. Owner only.
    pub fn unpurge(&mut self, mask: u64) -> u32 {
        if mask == 0 {
            return 0;
        }
        let chunk = self.chunk_size;
        let lo_page = mask.trailing_zeros() as usize;
        let hi_page = 63 - mask.leading_zeros() as usize;
        let lo = lo_page * PAGE / chunk;
        let hi = (((hi_page + 1) * PAGE - 1) / chunk).min(self.capacity as usize - 1);
        let mut n = 0;
        for i in (lo..=hi).rev() {
            let (p0, p1) = self.chunk_pages(i);
            if mask & page_span(p0, p1) == 0 {
                continue;
            }
            let c = self.start.wrapping_add(i * chunk).cast::<FreeChunk>();
            debug_assert!((c as usize) < self.fresh as usize);
            // SAFETY: chunk `i` overlaps a purged page, so it is a free
            // chunk of this pool on no list (the segment's `purged`
            // invariant): ours to link; its pages are still mapped.
            unsafe { (*c).next = self.free };
            self.free = c;
            n += 1;
        }
        n
    }

    /// Moves the chunks other threads freed into the local free list and
    /// keeps the `QUEUED` bit (the pool may be on a queue: only the heap
    /// that takes it off its queue clears the bit); returns how many. Owner
    /// only: the allocation slow path (a pool with no room), adoption, trim
    /// and thread exit.
    pub fn collect_remote(&mut self) -> u32 {
        let mut old = self.remote.load(Ordering::Relaxed);
        loop {
            if old & !QUEUED == 0 {
                return 0;
            }
            // Acquire pairs with the Release half of each push, so the
            // chunks' links (and their users' last writes) are visible.
            match self.remote.compare_exchange_weak(
                old,
                old & QUEUED,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => return self.take_remote_chunks(old & !QUEUED),
                Err(now) => old = now,
            }
        }
    }

    /// Takes the chunks other threads freed and clears `QUEUED`, in one swap
    /// (so a push after it finds the word 0 and queues the pool again: no
    /// lost wake-up); returns how many chunks.
    ///
    /// # Safety
    /// The caller owns the pool's segment and has just taken the pool off its
    /// own [`PoolQueue`] (and read its [`next_queued`](Pool::next_queued)).
    pub unsafe fn collect_dequeued(&mut self) -> u32 {
        debug_assert!(self.remote.load(Ordering::Relaxed) & QUEUED != 0);
        // Acquire: as in `collect_remote`. Release: the owner's read of
        // `next_queued` happens before the next queuer's write of it (that
        // pusher's CAS reads this swap with Acquire).
        let old = self.remote.swap(0, Ordering::AcqRel);
        self.take_remote_chunks(old & !QUEUED)
    }

    /// Moves the chunk stack whose top chunk is at `top` (0: none), taken
    /// off `remote` by the caller, onto the free list; returns how many.
    fn take_remote_chunks(&mut self, top: usize) -> u32 {
        let mut n = 0;
        let mut list = if top == 0 {
            null_mut()
        } else {
            self.start.with_addr(top).cast::<FreeChunk>()
        };
        while !list.is_null() {
            // SAFETY: remote-stack members are chunks of this pool no one
            // uses any more, each holding a link written before the Release
            // CAS that published it (derived from `start`, see
            // `push_remote`); after the caller's swap they are ours alone.
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

    /// Whether the `remote` word is not 0: chunks freed by other threads not
    /// yet collected, or the pool is queued (or being queued). Such a pool
    /// must not be released (see the field).
    pub fn remote_in_use(&self) -> bool {
        self.remote.load(Ordering::Relaxed) != 0
    }

    /// Whether the `QUEUED` bit is set (the loom model's checks).
    #[cfg(test)]
    pub fn is_queued(&self) -> bool {
        self.remote.load(Ordering::Relaxed) & QUEUED != 0
    }

    /// Pushes chunk `addr` onto the remote stack, setting `QUEUED`; true
    /// when this push set it (it was clear): the caller must then put the
    /// pool onto its owner's queue ([`PoolQueue::push`]) or, if the segment
    /// is abandoned, [`unqueue`](Pool::unqueue) it under the abandoned lock.
    ///
    /// Sound from any thread because: the caller holds the live chunk
    /// `addr`, so the pool (never released while `used > 0`, and `used`
    /// still counts this chunk) and its fixed fields stay valid until the
    /// push completes, and after it the word is not 0, which keeps the pool
    /// live for the queue push; the chunk's first word is written before the
    /// Release CAS that publishes it; only the owner takes chunks off the
    /// stack, and it takes the whole stack with one read-modify-write, so a
    /// node never leaves and re-enters between a pusher's load and CAS (no
    /// ABA).
    ///
    /// # Safety
    /// `pool` is a live pool; `addr` is a chunk start of it that the caller
    /// holds and hands back (it is not used afterwards).
    pub unsafe fn push_remote(pool: *const Pool, addr: usize) -> bool {
        // SAFETY: contract: the pool is live while we hold the chunk, and
        // the chunk is ours to write until the CAS publishes it. The link is
        // rebuilt from the pool's `start` (strict provenance).
        unsafe {
            let start = (*pool).start;
            let chunk = start.with_addr(addr).cast::<FreeChunk>();
            let remote = &(*pool).remote;
            let mut old = remote.load(Ordering::Relaxed);
            loop {
                let top = old & !QUEUED;
                (*chunk).next = if top == 0 {
                    null_mut()
                } else {
                    start.with_addr(top).cast()
                };
                // AcqRel: Release publishes the chunk; Acquire, when this
                // sets QUEUED after the owner's clearing swap, orders the
                // owner's read of `next_queued` before our write of it.
                match remote.compare_exchange_weak(
                    old,
                    addr | QUEUED,
                    Ordering::AcqRel,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => return old & QUEUED == 0,
                    Err(now) => old = now,
                }
            }
        }
    }

    /// Clears `QUEUED` without taking the chunks: the pusher that set it
    /// found, under the abandoned lock, that the segment has no owner. The
    /// chunks then wait on the stack for the segment's adopter, whose
    /// [`collect_remote`](Pool::collect_remote) takes them; the next push
    /// after this sets `QUEUED` again and queues the pool itself.
    ///
    /// # Safety
    /// The caller is the pusher whose [`push_remote`](Pool::push_remote)
    /// returned true, the pool is on no queue, and the caller holds the
    /// abandoned lock and saw the segment's owner null under it (so no heap
    /// collects the pool meanwhile).
    pub unsafe fn unqueue(pool: *const Pool) {
        // SAFETY: contract: QUEUED is set, so the pool stays live.
        unsafe { (*pool).remote.fetch_and(!QUEUED, Ordering::Release) };
    }

    /// The pool after `pool` on the queue it was taken from with
    /// [`PoolQueue::take`]. Read it before the pool may be queued again (its
    /// [`collect_dequeued`](Pool::collect_dequeued)) or handed on.
    ///
    /// # Safety
    /// `pool` is on a queue list the caller took, not handed on yet.
    pub unsafe fn next_queued(pool: *const Pool) -> *mut Pool {
        // SAFETY: contract: a queued pool is live; the queuer's write was
        // made visible by the caller's Acquire swap of the queue head.
        unsafe { (*pool).next_queued.load(Ordering::Relaxed) }
    }
}

/// A heap's queue of pools to collect: a multi-producer Treiber stack of
/// pools whose `QUEUED` bit was set by a remote free, linked through
/// `next_queued`. Producers push one pool at a time; the heap takes the
/// whole stack with one swap ([`take`](PoolQueue::take)) and never pops a
/// node, so there is no ABA. Heaps are never unmapped, so a push onto the
/// queue of a heap whose thread has gone is harmless: the pool waits there
/// for the heap's next thread.
pub(crate) struct PoolQueue(AtomicPtr<Pool>);

impl PoolQueue {
    /// An empty queue.
    pub fn new() -> PoolQueue {
        PoolQueue(AtomicPtr::new(null_mut()))
    }

    /// Whether the queue looks empty: one Relaxed load, for the owner's slow
    /// path (a pool pushed just after is collected on the next one).
    #[inline(always)]
    pub fn is_empty(&self) -> bool {
        self.0.load(Ordering::Relaxed).is_null()
    }

    /// Pushes `pool`.
    ///
    /// # Safety
    /// `pool` is live with `QUEUED` set and on no queue, and the caller is
    /// the one thread entitled to queue it (the pusher that set the bit, or
    /// the heap that took it off its own queue and hands it on).
    pub unsafe fn push(&self, pool: *mut Pool) {
        let mut head = self.0.load(Ordering::Relaxed);
        loop {
            // SAFETY: contract: the pool is live (QUEUED keeps it so) and its
            // link is ours to write until the CAS publishes it.
            unsafe { (*pool).next_queued.store(head, Ordering::Relaxed) };
            match self
                .0
                .compare_exchange_weak(head, pool, Ordering::Release, Ordering::Relaxed)
            {
                Ok(_) => return,
                Err(now) => head = now,
            }
        }
    }

    /// Takes every queued pool at once; walk the list with
    /// [`Pool::next_queued`]. Owner only.
    pub fn take(&self) -> *mut Pool {
        if self.is_empty() {
            return null_mut();
        }
        // Acquire pairs with each push's Release CAS (a chain of
        // read-modify-writes: one release sequence), so every link is
        // visible.
        self.0.swap(null_mut(), Ordering::Acquire)
    }
}

/// Calls `f` on each pool of a list taken with [`PoolQueue::take`], reading
/// each pool's link before `f` runs (`f` may collect the pool, letting it be
/// queued again, or hand it on).
///
/// # Safety
/// `list` was taken by the caller with [`PoolQueue::take`].
pub(crate) unsafe fn for_each_queued(mut list: *mut Pool, mut f: impl FnMut(*mut Pool)) {
    while !list.is_null() {
        let p = list;
        // SAFETY: contract: `p` is on the list the caller took.
        list = unsafe { Pool::next_queued(p) };
        f(p);
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

/// Pushes chunk `addr` back onto `pool`'s free list, with every check: the
/// free's cold path. False, and nothing changed, when the free is a
/// detected double free (the chunk is the free list's head, or the pool has
/// no live chunk).
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

/// The free fast path: pushes chunk `addr` back onto `pool`'s free list
/// when that is all the free has to do, in one compare beyond the
/// double-free check at the head: the count left is above `watch` (see the
/// field). False, and nothing changed, otherwise: the chunk is the free
/// list's head (a double free), the pool had no live chunk (a double free),
/// or the pool needs relinking or its emptying told; the caller then takes
/// its cold path ([`push`] and the fix-up).
///
/// # Safety
/// As [`push`]. The link is written through a pointer with the segment
/// mapping's exposed provenance (`Segment::create` exposes it), so whatever
/// pointer the caller held, the write stays within the mapping.
#[inline(always)]
pub(crate) unsafe fn push_fast(pool: &mut Pool, addr: usize) -> bool {
    let c = core::ptr::with_exposed_provenance_mut::<FreeChunk>(addr);
    let head = pool.free;
    let left = pool.used.wrapping_sub(1);
    if c == head || (left as i32) <= pool.watch {
        return false;
    }
    // SAFETY: `c` is a chunk of this pool that nobody uses (contract), so
    // its first word is ours to write the link into.
    unsafe { (*c).next = head };
    pool.free = c;
    pool.used = left;
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn divisor_matches_modulo() {
        // Every x below 2^22 (a segment) for a few divisors, then samples up
        // to 2^31 (fewer under miri, which interprets every step).
        let (every, top) = if cfg!(miri) {
            (4099, 1usize << 16)
        } else {
            (1, 1 << 22)
        };
        for d in [8usize, 24, 72, 168, 4096, 5000, 12_345, 3 << 20] {
            let div = Divisor::new(d);
            assert!(div.is_small());
            for x in (0..top).step_by(every) {
                assert_eq!(div.divides_small(x), x % d == 0, "d {d} x {x}");
            }
        }
        let wide = if cfg!(miri) { 1 << 20 } else { SMALL_DIVIDEND };
        for d in [8usize, 24, 5000, 12_345_672, (1 << 31) - 1, 1 << 31] {
            let div = Divisor::new(d);
            assert!(div.is_small());
            for x in (0..wide).step_by((d / 7).max(1) * every + 13) {
                assert_eq!(div.divides_small(x), x % d == 0, "d {d} x {x}");
            }
            for k in 0..SMALL_DIVIDEND / d {
                let x = k * d;
                for y in [x, x + 1, x.wrapping_sub(1), x + d / 2] {
                    if y < SMALL_DIVIDEND {
                        assert_eq!(div.divides_small(y), y % d == 0, "d {d} y {y}");
                    }
                }
                if k > if cfg!(miri) { 20 } else { 1000 } {
                    break;
                }
            }
        }
        assert!(!Divisor::new((1 << 31) + 8).is_small());
    }

    #[test]
    fn divisor_matches_modulo_for_every_slab() {
        // Miri interprets every step: a sample of the slabs and chunks there.
        let (every, chunks) = if cfg!(miri) { (37, 20) } else { (1, 600) };
        for &d in crate::size_class::slabs().iter().step_by(every) {
            let div = Divisor::new(d);
            if d > SMALL_DIVIDEND {
                assert!(!div.is_small(), "d {d}");
                continue;
            }
            // Chunk starts of a whole pool and their neighbours, plus every
            // power of two below 2^31.
            for k in 0..chunks {
                for x in [k * d, (k * d).wrapping_sub(1), k * d + 1, k * d + d / 2] {
                    if x < SMALL_DIVIDEND {
                        assert_eq!(div.divides_small(x), x % d == 0, "d {d} x {x}");
                    }
                }
            }
            for b in 0..31 {
                let x = 1usize << b;
                assert_eq!(div.divides_small(x), x.is_multiple_of(d), "d {d} x {x}");
            }
        }
    }

    /// Purging a sparse pool's free pages takes exactly the chunks on pages
    /// with no live or fresh chunk off the free list, and `unpurge` gives
    /// each back once: a brute-force check over chunk sizes that straddle
    /// pages, divide them, and span several.
    #[test]
    fn purge_takes_free_pages_off_the_list_and_unpurge_gives_them_back() {
        const PAGES: usize = 16;
        let layout = std::alloc::Layout::from_size_align(PAGES * PAGE, PAGE).unwrap();
        let chunks: &[usize] = if cfg!(miri) {
            &[1000]
        } else {
            &[256, 768, 1000, 4096, 5120]
        };
        let mut purged_some = 0;
        for &chunk in chunks {
            // SAFETY: a non-zero size.
            let mem = unsafe { std::alloc::alloc_zeroed(layout) };
            assert!(!mem.is_null());
            let mut pool = Pool::empty();
            pool.init(mem, PAGES * PAGE, chunk, 0, 0);
            let cap = pool.capacity() as usize;
            // Carve all but the last two chunks (a fresh tail stays).
            let carved = cap - 2;
            let got: Vec<usize> = (0..carved)
                .map(|_| pool.take().unwrap().0.as_ptr() as usize)
                .collect();
            // Keep every seventh chunk and those of page 3; free the rest.
            let live = |i: usize| {
                i % 7 == 3 || (i * chunk / PAGE..=(i * chunk + chunk - 1) / PAGE).contains(&3)
            };
            for (i, &c) in got.iter().enumerate() {
                if !live(i) {
                    // SAFETY: a chunk of this pool we hold, freed once.
                    assert!(unsafe { push(&mut pool, c) });
                }
            }
            let used = pool.used();
            // Brute force: a page is purgeable iff some chunk overlaps it
            // and every chunk overlapping it is carved and free.
            let mut want = 0u64;
            for page in 0..PAGES {
                let over: Vec<usize> = (0..cap)
                    .filter(|&i| i * chunk < (page + 1) * PAGE && i * chunk + chunk > page * PAGE)
                    .collect();
                if !over.is_empty() && over.iter().all(|&i| i < carved && !live(i)) {
                    want |= 1 << page;
                }
            }
            let mask = pool.purge_free_pages(0);
            assert_eq!(mask, want, "chunk {chunk}");
            purged_some += (mask != 0) as usize;
            assert_eq!(pool.used(), used);
            // The list holds the free chunks on no purged page.
            let on_list = |pool: &Pool| {
                let mut v = Vec::new();
                let mut c = pool.free;
                while !c.is_null() {
                    v.push((c as usize - mem as usize) / chunk);
                    // SAFETY: free-list members hold the next link.
                    c = unsafe { (*c).next };
                }
                v
            };
            let mut listed = on_list(&pool);
            listed.sort_unstable();
            let expect: Vec<usize> = (0..carved)
                .filter(|&i| {
                    !live(i)
                        && mask & page_span(i * chunk / PAGE, (i * chunk + chunk - 1) / PAGE) == 0
                })
                .collect();
            assert_eq!(listed, expect, "chunk {chunk}");
            // Purging again finds nothing new.
            assert_eq!(pool.purge_free_pages(mask), 0);
            // Decommit as the core does, then give the chunks back.
            if mask != 0 {
                for page in 0..PAGES {
                    if mask & (1 << page) != 0 {
                        // SAFETY: a page of our allocation holding no list link.
                        unsafe {
                            crate::os::decommit(NonNull::new(mem.add(page * PAGE)).unwrap(), PAGE)
                        };
                    }
                }
            }
            let back = pool.unpurge(mask);
            let mut all = on_list(&pool);
            assert_eq!(all.len(), listed.len() + back as usize);
            all.sort_unstable();
            let free: Vec<usize> = (0..carved).filter(|&i| !live(i)).collect();
            assert_eq!(all, free, "chunk {chunk}: every free chunk listed once");
            // SAFETY: allocated above with this layout.
            unsafe { std::alloc::dealloc(mem, layout) };
        }
        assert!(
            purged_some * 5 >= chunks.len() * 3,
            "the sizes above 256 B purge pages"
        );
    }

    #[test]
    fn purge_is_worthwhile_only_for_sparse_pools_of_larger_chunks() {
        let layout = std::alloc::Layout::from_size_align(64 * PAGE, PAGE).unwrap();
        // SAFETY: a non-zero size.
        let mem = unsafe { std::alloc::alloc_zeroed(layout) };
        for (chunk, live_every, want) in [(768, 10, true), (768, 2, false), (64, 10, false)] {
            let mut pool = Pool::empty();
            pool.init(mem, 64 * PAGE, chunk, 0, 0);
            let cs: Vec<usize> = (0..pool.capacity())
                .map(|_| pool.take().unwrap().0.as_ptr() as usize)
                .collect();
            for (i, &c) in cs.iter().enumerate() {
                if i % live_every != 0 {
                    // SAFETY: a chunk of this pool we hold, freed once.
                    assert!(unsafe { push(&mut pool, c) });
                }
            }
            assert_eq!(
                pool.purge_worthwhile(0),
                want,
                "chunk {chunk} live 1/{live_every}"
            );
            // Nothing more to expect once the expected pages are purged.
            assert!(!pool.purge_worthwhile(64));
        }
        // SAFETY: allocated above with this layout.
        unsafe { std::alloc::dealloc(mem, layout) };
    }

    #[test]
    fn pool_header_is_128_bytes() {
        assert_eq!(core::mem::size_of::<Pool>(), 128);
    }

    /// The fast push frees only what needs nothing else, and changes
    /// nothing otherwise; the checked push still catches both double frees.
    #[test]
    fn fast_push_defers_to_the_cold_path() {
        let layout = std::alloc::Layout::from_size_align(4 * 64, PAGE).unwrap();
        // SAFETY: a non-zero size.
        let mem = unsafe { std::alloc::alloc_zeroed(layout) };
        assert!(!mem.is_null());
        // The mapping's provenance, as `Segment::create` exposes it.
        let _ = mem.expose_provenance();
        let mut p = Pool::empty();
        // SAFETY: `p` is a pool over `mem`, ours; each chunk is pushed only
        // where the test says, and the double frees are refused before any
        // write.
        unsafe {
            p.init(mem, 4 * 64, 64, 0, 0);
            let a = p.take().unwrap().0.as_ptr() as usize;
            let b = p.take().unwrap().0.as_ptr() as usize;
            // Off every list: always the cold path.
            assert_eq!(p.watch(), WATCH_OFF_LIST);
            assert!(!push_fast(&mut p, a));
            assert_eq!(p.used(), 2);
            p.set_watch(WATCH_EMPTY);
            assert!(push_fast(&mut p, a));
            // The free that empties the pool goes cold under WATCH_EMPTY...
            assert!(!push_fast(&mut p, b));
            p.set_watch(WATCH_NONE);
            // ... and a double free at the head is refused either way.
            assert!(!push_fast(&mut p, a));
            assert!(push_fast(&mut p, b));
            assert_eq!(p.used(), 0);
            // A double free below the head, with no live chunk.
            assert!(!push_fast(&mut p, a));
            assert!(!push(&mut p, a));
            assert!(!push(&mut p, b));
            assert_eq!(p.used(), 0);
            assert_eq!(pop(&mut p) as usize, b);
            assert_eq!(pop(&mut p) as usize, a);
            std::alloc::dealloc(mem, layout);
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

/// The remote-free protocol run by one thread: which push queues the pool,
/// which collection keeps or clears the bit.
#[cfg(all(test, not(loom)))]
mod queue_tests {
    use super::*;
    use std::alloc::Layout;

    #[test]
    fn first_push_queues_and_only_the_dequeuing_collect_clears() {
        let layout = Layout::from_size_align(4 * 64, PAGE).unwrap();
        // SAFETY: a non-zero size.
        let mem = unsafe { std::alloc::alloc_zeroed(layout) };
        assert!(!mem.is_null());
        // Every access goes through `p`, as the allocator's do.
        let p = Box::into_raw(Box::new(Pool::empty()));
        let queue = PoolQueue::new();
        // SAFETY: `p` is a live pool over `mem`, used by this thread only;
        // each chunk is freed once; a true push return makes us the one
        // that queues the pool, and `unqueue` is called by that pusher with
        // the pool on no queue.
        unsafe {
            (*p).init(mem, 4 * 64, 64, 0, 0);
            let chunks: Vec<usize> = (0..4)
                .map(|_| (*p).take().unwrap().0.as_ptr() as usize)
                .collect();
            assert!(Pool::push_remote(p, chunks[0]));
            queue.push(p);
            assert!(!Pool::push_remote(p, chunks[1]));
            assert!((*p).is_queued());
            // The allocation slow path's collection keeps the bit.
            assert_eq!((*p).collect_remote(), 2);
            assert!((*p).is_queued() && (*p).remote_in_use());
            assert_eq!((*p).used(), 2);
            // The bit is still set, so this push queues nothing.
            assert!(!Pool::push_remote(p, chunks[2]));
            let list = queue.take();
            assert!(queue.is_empty());
            let mut seen = 0;
            for_each_queued(list, |q| {
                assert_eq!(q, p);
                seen += 1;
                assert_eq!((*q).collect_dequeued(), 1);
            });
            assert_eq!(seen, 1);
            assert!(!(*p).remote_in_use());
            assert_eq!((*p).used(), 1);
            // Cleared: the next push queues the pool again.
            assert!(Pool::push_remote(p, chunks[3]));
            // Abandoned segment: the pusher clears the bit, the chunk stays
            // for the adopter.
            Pool::unqueue(p);
            assert!(!(*p).is_queued() && (*p).remote_in_use());
            assert_eq!((*p).collect_remote(), 1);
            assert!(!(*p).remote_in_use());
            assert_eq!((*p).used(), 0);
            drop(Box::from_raw(p));
            std::alloc::dealloc(mem, layout);
        }
    }
}

/// Loom model of the remote-free protocol, on the real `Pool`, `PoolQueue`
/// and `for_each_queued` (run with `--cfg loom`, see `sync.rs`).
#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use loom::cell::UnsafeCell;
    use loom::sync::Arc;
    use loom::thread;
    use std::alloc::Layout;

    const CHUNK: usize = 64;
    const CHUNKS: usize = 4;
    const POOLS: usize = 2;

    /// What the model's threads share: two pools over memory the model
    /// owns, their owner's queue, and per chunk a loom cell standing for the
    /// data its user writes. loom does not see plain memory, so the cells
    /// are how it checks that a chunk's last use by the freeing thread
    /// happens before the owner reuses it (the push's Release, the
    /// collection's Acquire).
    struct Shared {
        pools: [*mut Pool; POOLS],
        mem: [*mut u8; POOLS],
        queue: PoolQueue,
        data: [[UnsafeCell<usize>; CHUNKS]; POOLS],
    }

    // SAFETY: the pointers are the model's pools and chunk memory, shared
    // exactly as the allocator shares a segment's: the owner thread alone
    // uses the pools' private fields, the others only `Pool::push_remote`
    // for chunks they hold and `PoolQueue::push` for pools whose bit they
    // set.
    unsafe impl Send for Shared {}
    // SAFETY: as for Send.
    unsafe impl Sync for Shared {}

    fn layout() -> Layout {
        Layout::from_size_align(CHUNK * CHUNKS, PAGE).unwrap()
    }

    impl Shared {
        fn new() -> Shared {
            let mem: [*mut u8; POOLS] = std::array::from_fn(|_| {
                // SAFETY: a non-zero size.
                let m = unsafe { std::alloc::alloc_zeroed(layout()) };
                assert!(!m.is_null());
                m
            });
            let pools = std::array::from_fn(|i| {
                let pool = Box::into_raw(Box::new(Pool::empty()));
                // SAFETY: the box just made, not shared yet; the memory is
                // ours, page-aligned and zeroed, as a fresh pool's pages are.
                unsafe { (*pool).init(mem[i], CHUNK * CHUNKS, CHUNK, 0, 0) };
                pool
            });
            Shared {
                pools,
                mem,
                queue: PoolQueue::new(),
                data: std::array::from_fn(|_| std::array::from_fn(|_| UnsafeCell::new(0))),
            }
        }

        /// (pool, chunk index) of a chunk address.
        fn index(&self, chunk: usize) -> (usize, usize) {
            let p = (0..POOLS)
                .find(|&p| (chunk - self.mem[p] as usize) < CHUNK * CHUNKS)
                .unwrap();
            (p, (chunk - self.mem[p] as usize) / CHUNK)
        }

        fn pool_index(&self, pool: *mut Pool) -> usize {
            self.pools.iter().position(|&p| p == pool).unwrap()
        }

        /// A thread that holds chunk `c` writes it, then frees it remotely
        /// (as `global::remote::free` does, the segment owned).
        fn free_remote(&self, c: usize) {
            let (p, i) = self.index(c);
            // SAFETY: the cell's own pointer; loom checks the access against
            // the owner's.
            self.data[p][i].with_mut(|d| unsafe { *d = c });
            // SAFETY: a live pool and a chunk start of it that this thread
            // holds and hands back; a true return makes us the one thread
            // that queues the pool.
            unsafe {
                if Pool::push_remote(self.pools[p], c) {
                    self.queue.push(self.pools[p]);
                }
            }
        }

        /// The owner reuses the `n` chunks a collection put on pool `p`'s
        /// (empty) free list, recording them in `got`.
        fn reuse(&self, p: usize, n: u32, got: &mut Vec<usize>) {
            // SAFETY: the owner thread alone uses the pool's private fields.
            let pool = unsafe { &mut *self.pools[p] };
            for _ in 0..n {
                let (c, fresh) = pool.take().unwrap();
                assert!(!fresh, "a collected chunk comes off the free list");
                let c = c.as_ptr() as usize;
                let (q, i) = self.index(c);
                assert_eq!(q, p);
                // Reuse: the freeing thread's last write must be visible.
                // SAFETY: the cell's own pointer; loom fails the model if
                // this access races with the freeing thread's.
                self.data[p][i].with_mut(|d| unsafe {
                    assert_eq!(*d, c);
                    *d = 0;
                });
                got.push(c);
            }
        }

        /// The owner's collection (`thread_core::collect_queue`, run by
        /// `ThreadPolicy::refill`): takes its queue
        /// and collects each pool on it, clearing its bit. Returns the pools
        /// it found queued.
        fn collect_queue(&self, got: &mut Vec<usize>) -> Vec<usize> {
            let mut seen = Vec::new();
            let list = self.queue.take();
            // SAFETY: the list was just taken by the owner; each pool on it
            // is ours (the model's segment is never abandoned).
            unsafe {
                for_each_queued(list, |pool| {
                    let p = self.pool_index(pool);
                    assert!(!seen.contains(&p), "a pool is on the queue twice");
                    seen.push(p);
                    let pool = &mut *pool;
                    assert!(pool.is_queued(), "a queued pool without its bit");
                    let used = pool.used();
                    let n = pool.collect_dequeued();
                    assert_eq!(pool.used(), used - n);
                    self.reuse(p, n, got);
                });
            }
            seen
        }

        /// The allocation slow path's direct collection of a pool with no
        /// room: takes the chunks, keeps the bit.
        fn collect_direct(&self, p: usize, got: &mut Vec<usize>) {
            // SAFETY: the owner thread alone uses the pool's private fields.
            let pool = unsafe { &mut *self.pools[p] };
            let queued = pool.is_queued();
            let used = pool.used();
            let n = pool.collect_remote();
            assert_eq!(pool.used(), used - n);
            // Only the owner clears the bit, and not here (a pusher may set
            // it meanwhile, never clear it).
            assert!(!queued || pool.is_queued());
            self.reuse(p, n, got);
        }
    }

    impl Drop for Shared {
        fn drop(&mut self) {
            // SAFETY: made by `Shared::new` with these layouts, freed once,
            // after every thread of the model is done.
            unsafe {
                for p in 0..POOLS {
                    drop(Box::from_raw(self.pools[p]));
                    std::alloc::dealloc(self.mem[p], layout());
                }
            }
        }
    }

    /// Two threads each free one chunk (of pools `targets[0]` and
    /// `targets[1]`) while the owner collects through its queue twice, with
    /// a direct collection of pool 0 (the allocation slow path) between.
    /// Checks: every chunk is collected exactly once, a reused chunk's last
    /// write happens before its reuse, `used` stays right, no pool is on the
    /// queue twice or on it without its bit, and at the end (all joined) a
    /// pool with chunks on its remote stack has its bit set and is on the
    /// queue (no lost wake-up), a pool with its bit set is on the queue
    /// exactly once, and one more collection through the queue empties
    /// every stack.
    fn model(targets: [usize; 2]) {
        loom::model(move || {
            let sh = Arc::new(Shared::new());
            // The owner hands out two chunks of each pool; one of each
            // target goes to another thread.
            let mut out = [[0usize; 2]; POOLS];
            for (p, o) in out.iter_mut().enumerate() {
                for c in o.iter_mut() {
                    // SAFETY: the owner thread, before any other exists.
                    let (ch, fresh) = unsafe { (*sh.pools[p]).take() }.unwrap();
                    assert!(fresh);
                    *c = ch.as_ptr() as usize;
                }
            }
            let freed = if targets[0] == targets[1] {
                [out[targets[0]][0], out[targets[0]][1]]
            } else {
                [out[targets[0]][0], out[targets[1]][0]]
            };
            let pushers: Vec<_> = freed
                .iter()
                .map(|&c| {
                    let sh = sh.clone();
                    thread::spawn(move || sh.free_remote(c))
                })
                .collect();
            let mut got = Vec::new();
            // Without a yield here loom never runs the pushers before the
            // owner's collections (checked: every execution then collected
            // nothing before the joins).
            thread::yield_now();
            sh.collect_queue(&mut got);
            sh.collect_direct(0, &mut got);
            sh.collect_queue(&mut got);
            for p in pushers {
                p.join().unwrap();
            }
            // No lost wake-up: what is left is queued, each pool once.
            // SAFETY: every other thread is done; the pools taken off the
            // queue go back onto it, each once, with their bits still set.
            let queued: Vec<usize> = unsafe {
                let mut v = Vec::new();
                let list = sh.queue.take();
                for_each_queued(list, |pool| v.push(sh.pool_index(pool)));
                for &p in &v {
                    sh.queue.push(sh.pools[p]);
                }
                v
            };
            for p in 0..POOLS {
                // SAFETY: every other thread is done.
                let pool = unsafe { &*sh.pools[p] };
                let on = queued.iter().filter(|&&q| q == p).count();
                assert_eq!(on, pool.is_queued() as usize, "pool {p}");
                let word = pool.remote.load(Ordering::Relaxed);
                assert!(word & !QUEUED == 0 || word & QUEUED != 0, "lost wake-up");
            }
            sh.collect_queue(&mut got);
            got.sort_unstable();
            let mut want = freed.to_vec();
            want.sort_unstable();
            assert_eq!(got, want);
            for p in 0..POOLS {
                // SAFETY: every other thread is done.
                let pool = unsafe { &mut *sh.pools[p] };
                assert!(!pool.remote_in_use());
                assert_eq!(pool.used(), 2);
            }
            // Every chunk back once: the owner frees what it kept, and the
            // collected ones it reused.
            for (&pool, chunks) in sh.pools.iter().zip(&out) {
                // SAFETY: every other thread is done.
                let pool = unsafe { &mut *pool };
                for &c in chunks {
                    // SAFETY: chunks of this pool the owner holds, freed once.
                    assert!(unsafe { push(pool, c) });
                }
                assert_eq!(pool.used(), 0);
            }
        });
    }

    #[test]
    fn loom_remote_frees_into_two_pools() {
        model([0, 1]);
    }

    #[test]
    fn loom_remote_frees_into_one_pool() {
        model([0, 0]);
    }
}
