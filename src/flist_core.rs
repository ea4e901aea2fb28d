//! The single-threaded flist core: [`Core<P>`] owns segments (see
//! `segment.rs`), hands out chunks from per-slab lists of pools with room,
//! and takes them back after checking, through the segment map, that the
//! pointer is one of its own.
//!
//! What the core cannot know it asks its [`Policy`], resolved at compile time
//! (after talc's `Source` trait and rlsf's `FlexSource`): how many more bytes
//! it may map, what becomes of a pool that empties, where to look when a slab
//! runs dry, what to give back before it fails, and how to count. The
//! explicit [`Arena`](crate::Arena) is the core with the arena policy (its
//! capacity, empty pools kept until released); a thread heap of the global
//! allocator is the core with the thread-heap policy (`global/heap.rs`). The
//! core never names the global allocator.

use crate::error::Error;
use crate::list::List;
use crate::os;
use crate::pool::{
    self, AvailList, Pool, PURGE_MAX_PAGES, WATCH_EMPTY, WATCH_NONE, WATCH_OFF_LIST,
};
use crate::segment::{
    OwnedList, Segment, HEADER_BYTES, HEADER_PAGES, MAX_NORMAL_POOL, POOLS_PER_SEGMENT,
};
use crate::segment_map::{self, OwnerTable, HUGE_FLAG, SEGMENT_SIZE, TAG_MASK};
use crate::size_class::{self, DIRECT_ENTRIES, MAX_ARENA_SIZE, PAGE, SMALL_MAX};
use crate::stats::{Info, SlabUse};
use core::alloc::Layout;
use core::ptr::{null_mut, NonNull};

/// What a [`Core`] asks of its owner. Every method has a default that suits
/// a core with no one else to ask; the implementations are `ArenaPolicy`
/// (`arena.rs`) and `HeapPolicy` (`global/heap.rs`).
pub(crate) trait Policy: Sized {
    /// Whether the core must tell the policy when a pool empties (calls
    /// [`pool_emptied`](Policy::pool_emptied)). A constant, so a policy
    /// that keeps empty pools where they are pays no test on the free path.
    const TRACKS_EMPTY: bool;

    /// The segment-map tag of this core's segments.
    fn tag(&self) -> usize;

    /// Bytes of new pools the core may still map, when it holds `heap`.
    fn room(&self, heap: usize) -> usize;

    /// Claims `bytes` (at most what [`room`](Policy::room) said) for a new
    /// pool; false when they are no longer there (another thread took them).
    fn claim(&self, bytes: usize) -> bool {
        let _ = bytes;
        true
    }

    /// Takes back bytes of a pool that was released, or that failed to map.
    fn unclaim(&self, bytes: usize) {
        let _ = bytes;
    }

    /// Counts `bytes` of wholly free pages of pools with live chunks given
    /// back to the OS ([`Core::purge_sparse`]). They stay claimed: the
    /// budget counts pool bytes, and the pool gets its pages back when it
    /// needs them.
    fn count_purged(&self, bytes: usize) {
        let _ = bytes;
    }

    /// Counts pool bytes and pools coming (positive) and going (negative),
    /// and segment bytes mapped and unmapped.
    fn count(&self, pool_bytes: isize, pools: isize, segment_bytes: isize) {
        let _ = (pool_bytes, pools, segment_bytes);
    }

    /// A local free left `pool` with no live chunk (only if `TRACKS_EMPTY`,
    /// and only while the pool is not on the policy's queue of empty pools,
    /// its `empty` link: a pool that empties again and again while queued
    /// costs the free path one test, not a call).
    ///
    /// # Safety
    /// `pool` is a live pool of `core`, on its slab's list of pools with
    /// room; the caller does not touch it afterwards (the policy may release
    /// it).
    unsafe fn pool_emptied(core: &mut Core<Self>, pool: *mut Pool) {
        let _ = (core, pool);
    }

    /// Called just before `core` releases `pool` (empty, live): take it off
    /// any list of the policy's own.
    ///
    /// # Safety
    /// `pool` is a live pool of `core`.
    unsafe fn pool_released(core: &mut Core<Self>, pool: *mut Pool) {
        let _ = (core, pool);
    }

    /// A slab ran out of pools with room: find chunks elsewhere (other
    /// threads' frees, abandoned segments). True when the core should look
    /// at its lists again.
    fn refill(core: &mut Core<Self>) -> bool {
        let _ = core;
        false
    }

    /// A new pool did not fit: give back memory held for reuse. True when
    /// something was given back (the core then tries once more).
    fn reclaim(core: &mut Core<Self>) -> bool {
        let _ = core;
        false
    }

    /// Before a new pool of slab `idx` (`chunk` bytes) is mapped: an empty
    /// pool the policy holds off every slab list, to reuse instead (warm
    /// pages before new ones). The policy prefers a pool of slab `idx`, else
    /// one of another slab of `chunk..=max_bytes` bytes (the size a new
    /// pool would have), else a larger one. The flag says the pool's pages
    /// were decommitted (they read as zero; the policy has claimed its bytes
    /// again).
    ///
    /// The returned pool is a live pool of `core`, empty, on no list, with
    /// nothing on its remote list.
    fn reuse(
        core: &mut Core<Self>,
        idx: usize,
        chunk: usize,
        max_bytes: usize,
    ) -> Option<(*mut Pool, bool)> {
        let _ = (core, idx, chunk, max_bytes);
        None
    }
}

/// Per-slab state.
#[repr(C)]
pub(crate) struct SlabState {
    /// Pools of this slab with room, the one chunks come from first at the
    /// head. Invariant: every pool with a free or fresh chunk is on it (a
    /// pool may stay on it after it fills; it is dropped when found full).
    avail: List<AvailList>,
    /// Pools this slab holds (for the doubling rule of `pool::pool_bytes`).
    pools: u32,
}

/// The single-threaded heap core. Lives at the start of its own OS mapping,
/// followed by its slab table, so its address is stable (segments point
/// back to it as their owner).
#[repr(C)]
pub(crate) struct Core<P: Policy> {
    /// The segment map's owner table (fixed): a free of a chunk in a normal
    /// segment of this core finds this core's address there.
    owners: OwnerTable,
    /// The direct table (mimalloc's `pages_free_direct`): entry
    /// `size_class::direct_index(size)` of a size up to `SMALL_MAX` is the
    /// head of the avail list of that size's slab, or [`empty_pool`] when
    /// the list is empty or the entry is not served: some size it stands
    /// for lies outside `min_size..=max_size` ([`Core::direct_served`]).
    /// Invariant: kept in step with every avail list by
    /// [`Core::sync_direct`], which every change of a list's head goes
    /// through (the `avail_*` methods). So the allocation fast path is one
    /// load and a pop, with no null test and no range check: a pop that
    /// succeeds is a size the core serves.
    direct: [*mut Pool; DIRECT_ENTRIES],
    /// `hi - lo + 1` slab states, right after the core in its mapping.
    slabs: *mut SlabState,
    /// Slab indices `lo..=hi` have a `SlabState`: every slab a request in
    /// `min_size..=max_size` (any alignment up to the page) can map to.
    lo: usize,
    hi: usize,
    /// Requested sizes served: `min_size..=max_size`. A closed core
    /// ([`Core::create_closed`]) has `min_size = 1 > max_size = 0`: it
    /// serves no size, so every allocation misses at the range check.
    min_size: usize,
    max_size: usize,
    /// Bytes of the live pools (the seed's `Info.heap`). Invariant: the sum
    /// of `bytes()` over the live pools of the segments on `segments`.
    heap: usize,
    /// The segments this core owns; each has `owner == self`, and the
    /// segment map's owner word of each of its granules is this core's
    /// address (`| HUGE_OWNER` for a huge one): a free checks that word.
    segments: List<OwnedList>,
    /// Bytes of this core's own mapping (core + slab table).
    mapping_bytes: usize,
    /// `heap` at or above which the next new pool first gives back the
    /// wholly free pages of sparse pools ([`Core::purge_sparse`]):
    /// [`sparse_scan_at`] of the heap after each scan, so the scans cost
    /// O(log) walks of the heap as it grows, and lowered to
    /// `sparse_scan_at` of the heap when a pool is released, so a heap that
    /// shrank and grows again scans again.
    next_sparse_scan: usize,
    /// The owner's answers and state.
    pub(crate) policy: P,
}

/// What an empty direct-table entry points at: a pool-sized block of
/// zeros, never written (a pool whose `free` is null, so `pool::pop_ptr`
/// fails before it writes, and the caller takes its slow path).
static EMPTY_POOL: [usize; EMPTY_POOL_WORDS] = [0; EMPTY_POOL_WORDS];
const EMPTY_POOL_WORDS: usize = core::mem::size_of::<Pool>().div_ceil(8);
const _: () = assert!(core::mem::align_of::<Pool>() <= core::mem::align_of::<usize>());

/// The never-written empty pool of the direct table (see [`EMPTY_POOL`]).
#[inline(always)]
fn empty_pool() -> *mut Pool {
    EMPTY_POOL.as_ptr().cast_mut().cast()
}

/// The part of a [`Core`] that its raw fast paths
/// ([`Core::pop_direct_raw`], [`Core::free_owned_raw`]) read, laid out as
/// the core's first fields (both `#[repr(C)]`, the same leading fields), and
/// nothing else: a static stub stands for "no core" where a thread's core
/// pointer is read (`global/threads.rs`), so those paths need no null test.
/// A stub's direct table points every size at the empty pool (a pop fails)
/// and its owner table holds no address (a free is not its own): both send
/// the caller to its slow path, which tells a stub from a core.
#[repr(C)]
pub(crate) struct CoreStub {
    owners: OwnerTable,
    direct: [*mut Pool; DIRECT_ENTRIES],
}

// SAFETY: a stub is never written (no method takes `&mut`, and the raw
// fast paths only read it); its pointers name the immutable empty pool.
unsafe impl Sync for CoreStub {}

impl CoreStub {
    /// A stub: every pop fails, every free is not its own.
    pub(crate) const fn new() -> CoreStub {
        CoreStub {
            owners: OwnerTable::NONE,
            direct: [EMPTY_POOL.as_ptr().cast_mut().cast(); DIRECT_ENTRIES],
        }
    }
}

/// The largest last empty pool a slab keeps on its list
/// ([`Core::take_off_slab`]): those pools are outside a policy's reserve
/// bounds, so only small ones stay (a slab's first three pools).
pub(crate) const KEEP_EMPTY_MAX_BYTES: usize = 16 * PAGE;

/// The least growth of a core's heap, in bytes, between two scans for
/// sparse pools' free pages ([`Core::purge_sparse`]).
pub(crate) const SPARSE_SCAN_MIN: usize = 4 << 20;

/// The heap size, in bytes, at which a core whose heap is `heap` bytes
/// next scans for sparse pools' free pages: an eighth more, at least
/// [`SPARSE_SCAN_MIN`] more. Scans cost a look at every pool header, so
/// spacing them by a fraction of the heap keeps their cost proportional to
/// the bytes the heap grows by.
fn sparse_scan_at(heap: usize) -> usize {
    heap + (heap / 8).max(SPARSE_SCAN_MIN)
}

impl<P: Policy> Core<P> {
    /// Maps a new core serving requested sizes `min..=max`.
    ///
    /// # Errors
    /// `InvalidChunkRange` when `min > max` or `max` is above 1 TiB;
    /// `OutOfMemory` when the OS refuses the core's own pages.
    pub fn create(min: usize, max: usize, policy: P) -> Result<NonNull<Core<P>>, Error> {
        if min > max || max > MAX_ARENA_SIZE {
            return Err(Error::InvalidChunkRange { min, max });
        }
        let lo = size_class::slab_index(min);
        // Aligned layouts of size <= max may round up to a page multiple.
        let hi = size_class::slab_index(pool::round_pages(max.max(1)).min(MAX_ARENA_SIZE));
        let table = (hi - lo + 1) * core::mem::size_of::<SlabState>();
        let bytes = pool::round_pages(core::mem::size_of::<Core<P>>() + table);
        let map = os::map_aligned(bytes, PAGE).ok_or(Error::OutOfMemory { bytes })?;
        let core = map.cast::<Core<P>>();
        // SAFETY: a fresh zeroed mapping of `bytes`, page-aligned: room for
        // the core followed by the slab table (an all-zero SlabState is an
        // empty list and no pools).
        unsafe {
            core.as_ptr().write(Core {
                owners: segment_map::owner_table(),
                direct: [empty_pool(); DIRECT_ENTRIES],
                slabs: map.as_ptr().add(core::mem::size_of::<Core<P>>()).cast(),
                lo,
                hi,
                min_size: min,
                max_size: max,
                heap: 0,
                segments: List::NEW,
                mapping_bytes: bytes,
                next_sparse_scan: 0,
                policy,
            });
        }
        Ok(core)
    }

    /// A core that serves no size and maps no pool: every allocation fails
    /// its range check (`SizeOutOfRange`) and every free its segment-map
    /// lookup (`ForeignPointer`), both before any other work, so an owner
    /// that serves requests elsewhere (the `Arena` over malloc or jemalloc)
    /// finds them on the error path its flist fast paths already have.
    ///
    /// # Errors
    /// `OutOfMemory` when the OS refuses the core's own page.
    pub fn create_closed(policy: P) -> Result<NonNull<Core<P>>, Error> {
        let core = Self::create(0, 0, policy)?;
        // SAFETY: a core just made, ours alone.
        unsafe {
            (*core.as_ptr()).min_size = 1;
            (*core.as_ptr()).max_size = 0;
        }
        Ok(core)
    }

    /// Returns every segment and the core's own mapping.
    ///
    /// # Safety
    /// `core` came from `create`; nothing it handed out is used afterwards.
    pub unsafe fn destroy(core: NonNull<Core<P>>) {
        // SAFETY: a live core (contract) whose segments are ours and
        // unreachable once it is gone.
        unsafe {
            let c = &mut *core.as_ptr();
            loop {
                let seg = c.segments.pop_front();
                if seg.is_null() {
                    break;
                }
                c.policy.count(0, 0, -((*seg).size() as isize));
                Segment::destroy(NonNull::new_unchecked(seg));
            }
            let bytes = c.mapping_bytes;
            core::ptr::drop_in_place(core.as_ptr());
            os::unmap(core.cast(), bytes, PAGE);
        }
    }

    /// Smallest requested size served.
    pub fn min_size(&self) -> usize {
        self.min_size
    }

    /// Largest requested size served.
    pub fn max_size(&self) -> usize {
        self.max_size
    }

    /// The state of slab `idx`.
    ///
    /// # Safety
    /// `lo <= idx <= hi`.
    #[inline(always)]
    unsafe fn slab(&self, idx: usize) -> *mut SlabState {
        debug_assert!(idx >= self.lo && idx <= self.hi);
        // SAFETY: the table has `hi - lo + 1` entries (contract on idx).
        unsafe { self.slabs.add(idx - self.lo) }
    }

    #[inline(always)]
    fn check_size(&self, size: usize) -> Result<(), Error> {
        if size < self.min_size || size > self.max_size {
            return Err(Error::SizeOutOfRange {
                size,
                min: self.min_size,
                max: self.max_size,
            });
        }
        Ok(())
    }

    /// The allocation fast path of the `Arena`: a chunk for `size` bytes,
    /// aligned to 8, popped through the direct table, or null when that
    /// misses (a size above `SMALL_MAX`, a size of an entry not served,
    /// the head pool's free list empty); the caller then takes
    /// [`alloc`](Core::alloc), which does every check. A size compare, one
    /// table load and the pop: the range check is in the table (an entry
    /// standing for a size out of range is the empty pool).
    #[inline(always)]
    pub fn alloc_direct(&mut self, size: usize) -> *mut u8 {
        if size > SMALL_MAX {
            return null_mut();
        }
        // SAFETY: size <= SMALL_MAX, checked above.
        unsafe { self.pop_direct(size) }
    }

    /// The direct-table entries whose every size lies in
    /// `min_size..=max_size`: entry 0 stands for size 0, entry `k >= 1` for
    /// sizes `8k - 7..=8k`. Only these point at a pool; the others stay the
    /// empty pool, so their sizes always take the checked path.
    fn direct_served(&self) -> core::ops::Range<usize> {
        let lo = if self.min_size == 0 {
            0
        } else {
            // The first k with 8k - 7 >= min_size.
            (self.min_size + 7).div_ceil(8)
        };
        // The last k with 8k <= max_size (entry 0, size 0, when max is 0..7).
        let hi = (self.max_size / 8 + 1).min(DIRECT_ENTRIES);
        lo..hi.max(lo)
    }

    /// Allocates a chunk for `size` bytes, aligned to 8.
    #[inline(always)]
    pub fn alloc(&mut self, size: usize) -> Result<NonNull<u8>, Error> {
        self.check_size(size)?;
        // SAFETY: sizes in min..=max map to slabs in lo..=hi.
        unsafe { self.alloc_index(size_class::slab_index(size)) }.map(|(p, _)| p)
    }

    /// Allocates a chunk for `layout`; returns it with its slab index.
    #[inline(always)]
    pub fn alloc_layout(&mut self, layout: Layout) -> Result<(NonNull<u8>, usize), Error> {
        self.check_size(layout.size())?;
        let idx = size_class::slab_index_aligned(layout.size(), layout.align()).ok_or(
            Error::UnsupportedAlignment {
                align: layout.align(),
            },
        )?;
        // SAFETY: a size in min..=max with an alignment up to the page maps
        // to a slab of at most the page-rounded max, in lo..=hi.
        Ok((unsafe { self.alloc_index(idx) }?.0, idx))
    }

    /// Pops a chunk of slab `idx` off the head pool's free list, or returns
    /// null (the caller then takes [`alloc_index`](Core::alloc_index)): the
    /// allocation fast path of the `Arena` and the global allocator.
    ///
    /// # Safety
    /// `lo <= idx <= hi`.
    #[inline(always)]
    pub unsafe fn pop_fast(&mut self, idx: usize) -> *mut u8 {
        // SAFETY: idx is in range (contract); pools on an avail list are
        // live pools of this core.
        unsafe {
            let pool = (*self.slab(idx)).avail.head();
            if pool.is_null() {
                return null_mut();
            }
            pool::pop(&mut *pool)
        }
    }

    /// Pops a chunk for a request of `size <= SMALL_MAX` bytes with
    /// alignment at most 8 through the direct table, or returns null (the
    /// caller then takes its slow path): the global allocator's fast path,
    /// and the `Arena`'s through [`alloc_direct`](Core::alloc_direct).
    ///
    /// # Safety
    /// `size <= SMALL_MAX`.
    #[inline(always)]
    pub unsafe fn pop_direct(&mut self, size: usize) -> *mut u8 {
        // SAFETY: direct_index(size) < DIRECT_ENTRIES for size <= SMALL_MAX
        // (contract); each entry is a live pool of ours on its slab's avail
        // list, or the never-written empty pool (the table's invariant),
        // which is what pop_ptr needs.
        unsafe {
            let pool = *self.direct.get_unchecked(size_class::direct_index(size));
            pool::pop_ptr(pool)
        }
    }

    /// The `watch` of a pool on its slab's list, not kept (see `Pool`'s
    /// field): a core whose policy tracks empty pools hears of every free
    /// that empties one.
    const LISTED_WATCH: i32 = if P::TRACKS_EMPTY {
        WATCH_EMPTY
    } else {
        WATCH_NONE
    };

    /// [`pop_direct`](Core::pop_direct) through a raw pointer that may
    /// point at a [`CoreStub`] instead (then it returns null): the global
    /// allocator's fast path, which reads the thread's core pointer and pops
    /// with no test of it. Reads only the direct table.
    ///
    /// # Safety
    /// `size <= SMALL_MAX`; `core` points to a live core used only by the
    /// calling thread, or to a `CoreStub`.
    #[inline(always)]
    pub unsafe fn pop_direct_raw(core: *mut Self, size: usize) -> *mut u8 {
        // SAFETY: both a core and a stub start with the direct table at the
        // same offset (`CoreStub`'s layout), read in place without a
        // reference to a whole core; the index is below DIRECT_ENTRIES for
        // size <= SMALL_MAX (contract); each entry is a live pool of the
        // calling thread's core, or the never-written empty pool (the
        // table's invariant, and the stub's), as `pop_ptr` needs.
        unsafe {
            let direct = core::ptr::addr_of!((*core).direct).cast::<*mut Pool>();
            pool::pop_ptr(*direct.add(size_class::direct_index(size)))
        }
    }

    /// Points the direct-table entries of slab `idx` at its avail list's
    /// head (or the empty pool): called after every change of that head.
    ///
    /// # Safety
    /// `lo <= idx <= hi`.
    #[inline(always)]
    unsafe fn sync_direct(&mut self, idx: usize) {
        // SAFETY: idx is in range (contract).
        let head = unsafe { (*self.slab(idx)).avail.head() };
        let head = if head.is_null() { empty_pool() } else { head };
        let served = self.direct_served();
        let range = size_class::direct_range(idx);
        for k in range.start.max(served.start)..range.end.min(served.end) {
            self.direct[k] = head;
        }
    }

    /// Puts `pool` first on its slab's avail list (the one chunks come from
    /// first), keeping the direct table in step.
    ///
    /// # Safety
    /// `pool` is a live pool of ours, not on its avail list.
    pub(crate) unsafe fn avail_push_front(&mut self, pool: *mut Pool) {
        // SAFETY: a live pool of ours (contract), so its slab is in lo..=hi
        // and its `avail` link is ours, unlinked.
        unsafe {
            let idx = (*pool).slab();
            (*self.slab(idx)).avail.push_front(pool);
            (*pool).set_watch(Self::LISTED_WATCH);
            self.sync_direct(idx);
        }
    }

    /// Takes `pool` off its slab's avail list, keeping the direct table in
    /// step.
    ///
    /// # Safety
    /// `pool` is a live pool of ours, on its avail list.
    pub(crate) unsafe fn avail_remove(&mut self, pool: *mut Pool) {
        // SAFETY: a live pool of ours on its slab's list (contract).
        unsafe {
            let idx = (*pool).slab();
            (*self.slab(idx)).avail.remove(pool);
            (*pool).kept = false;
            (*pool).set_watch(WATCH_OFF_LIST);
            self.sync_direct(idx);
        }
    }

    /// Empties every slab's avail list and points the direct table at the
    /// empty pool.
    fn avail_clear(&mut self) {
        for i in 0..=(self.hi - self.lo) {
            // SAFETY: the table has hi - lo + 1 entries; the pools on each
            // list are live pools of ours.
            unsafe {
                let st = self.slabs.add(i);
                loop {
                    let p = (*st).avail.pop_front();
                    if p.is_null() {
                        break;
                    }
                    (*p).kept = false;
                    (*p).set_watch(WATCH_OFF_LIST);
                }
            }
        }
        self.direct = [empty_pool(); DIRECT_ENTRIES];
    }

    /// Allocates a chunk of slab `idx`; the flag says whether it is fresh
    /// memory, still zero (never handed out since its pages were mapped or
    /// decommitted).
    ///
    /// # Safety
    /// `lo <= idx <= hi`.
    #[inline(always)]
    pub unsafe fn alloc_index(&mut self, idx: usize) -> Result<(NonNull<u8>, bool), Error> {
        // SAFETY: `lo <= idx <= hi` (this function's own precondition is
        // the one pop_fast and alloc_slow need).
        let c = unsafe { self.pop_fast(idx) };
        match NonNull::new(c) {
            Some(c) => Ok((c, false)),
            // SAFETY: as above.
            None => unsafe { self.alloc_slow(idx) },
        }
    }

    /// # Safety
    /// `lo <= idx <= hi`.
    #[inline(never)]
    unsafe fn alloc_slow(&mut self, idx: usize) -> Result<(NonNull<u8>, bool), Error> {
        let mut refilled = false;
        // SAFETY: idx is in range (contract); pools on the avail list are
        // live pools of this core.
        unsafe {
            let st = self.slab(idx);
            loop {
                let pool = (*st).avail.head();
                if pool.is_null() {
                    // Ask the policy once for chunks from elsewhere.
                    if !refilled {
                        refilled = true;
                        if P::refill(self) {
                            continue;
                        }
                    }
                    break;
                }
                if let Some(c) = (*pool).take() {
                    return Ok(c);
                }
                // The head pool is dry: take what other threads freed into
                // it, keeping its queued bit (so their next frees into it
                // queue nothing). The queue itself is collected by
                // `P::refill`, when the slab has no pool with room: taking
                // it here, each time the head runs dry, cleared the bits
                // of the pools a consumer is freeing into and made its
                // frees queue them again and again (the cross-thread bench
                // about 2.5x slower).
                // Then the chunks on its purged pages, if any.
                if (*pool).collect_remote() > 0 || self.unpurge(pool) {
                    continue;
                }
                self.avail_remove(pool);
            }
            let p = self.new_pool(idx)?;
            self.avail_push_front(p);
            // A new pool has at least one chunk (pool_bytes never returns a
            // size below one chunk).
            Ok((*p).take().unwrap_or_else(|| unreachable!()))
        }
    }

    /// A new pool for slab `idx`, asking the policy to reclaim memory once
    /// if it does not fit.
    fn new_pool(&mut self, idx: usize) -> Result<*mut Pool, Error> {
        let first = self.new_pool_once(idx);
        if first.is_err() && P::reclaim(self) {
            return self.new_pool_once(idx);
        }
        first
    }

    fn new_pool_once(&mut self, idx: usize) -> Result<*mut Pool, Error> {
        let chunk = size_class::slab_size(idx);
        // SAFETY: idx is in range (the callers' contract).
        let held = unsafe { (*self.slab(idx)).pools };
        let wanted = pool::pool_bytes(chunk, held, usize::MAX);
        if let Some((p, decommitted)) = P::reuse(self, idx, chunk, wanted) {
            // SAFETY: the policy returns a live, empty pool of ours on no
            // list with an empty remote list (`reuse`'s contract); both
            // slabs are in range (the pool's was cut from this table).
            unsafe {
                let from = (*p).slab();
                // Chunks on purged pages are on no list: re-cut the pool.
                let purged = self.clear_purged(p) != 0;
                if from != idx || decommitted || purged {
                    // A decommitted pool's free list lived in its pages.
                    (*p).reinit(chunk, idx, decommitted);
                    (*self.slab(from)).pools -= 1;
                    (*self.slab(idx)).pools += 1;
                }
            }
            return Ok(p);
        }
        // The heap is about to grow: first give back what sparse pools hold
        // free (every so often).
        if self.heap >= self.next_sparse_scan {
            self.purge_sparse();
            self.next_sparse_scan = sparse_scan_at(self.heap);
        }
        let bytes = pool::pool_bytes(chunk, held, self.policy.room(self.heap));
        if bytes == 0 || !self.policy.claim(bytes) {
            return Err(Error::OutOfCapacity {
                needed: pool::round_pages(chunk),
                heap: self.heap,
                capacity: self.heap + self.policy.room(self.heap),
            });
        }
        match self.map_pool(idx, chunk, bytes) {
            Ok(p) => {
                // SAFETY: idx is in range.
                unsafe { (*self.slab(idx)).pools += 1 };
                self.heap += bytes;
                self.policy.count(bytes as isize, 1, 0);
                Ok(p)
            }
            Err(e) => {
                self.policy.unclaim(bytes);
                Err(e)
            }
        }
    }

    fn map_pool(&mut self, idx: usize, chunk: usize, bytes: usize) -> Result<*mut Pool, Error> {
        if bytes > MAX_NORMAL_POOL {
            let size = (HEADER_BYTES + bytes).div_ceil(SEGMENT_SIZE) * SEGMENT_SIZE;
            let s = self.new_segment(size, true)?;
            // SAFETY: a fresh huge segment, ours alone; slot 0 exists and
            // its pages follow the header.
            unsafe {
                (*s).claim_huge();
                let p = Segment::pool_ptr(s, 0);
                (*p).init(
                    Segment::base(s).add(HEADER_BYTES),
                    bytes,
                    chunk,
                    idx,
                    HEADER_PAGES as u32,
                );
                Ok(p)
            }
        } else {
            let pages = bytes / PAGE;
            let (seg, slot, first) = self.place(pages)?;
            // SAFETY: `seg` is a live segment of ours with `slot` free and
            // pages `first..first+pages` free (checked by `place`).
            unsafe {
                (*seg).claim(slot, first, pages);
                let p = Segment::pool_ptr(seg, slot);
                (*p).init(
                    Segment::base(seg).add(first * PAGE),
                    bytes,
                    chunk,
                    idx,
                    first as u32,
                );
                Ok(p)
            }
        }
    }

    /// The purged marks of pool `p`'s pages (bit `i`: page `i` of the
    /// pool), and the segment holding it when it may have some (a normal
    /// one, the pool small enough).
    ///
    /// # Safety
    /// `p` is a live pool of ours.
    unsafe fn purged_of(p: *mut Pool) -> Option<(*mut Segment, usize, usize, u64)> {
        // SAFETY: contract: the pool and its segment are live and ours.
        unsafe {
            let seg = segment_of_pool(p);
            let (first, n) = (*p).page_range();
            if (*seg).is_huge() || n > PURGE_MAX_PAGES {
                return None;
            }
            Some((seg, first, n, (*seg).purged_mask(first, n)))
        }
    }

    /// Clears the purged marks of pool `p`'s pages, without giving its
    /// chunks there back (the caller re-cuts the pool); returns the marks.
    ///
    /// # Safety
    /// `p` is a live pool of ours.
    unsafe fn clear_purged(&mut self, p: *mut Pool) -> u64 {
        // SAFETY: `p` is a live pool of ours (precondition), what
        // `purged_of` needs.
        match unsafe { Self::purged_of(p) } {
            Some((seg, first, _, mask)) if mask != 0 => {
                // SAFETY: the live pool's own segment, so a live segment of
                // ours whose purged bitmap only we write; the caller re-cuts
                // the pool, so no chunk is left relying on the marks.
                unsafe { (*seg).mark_purged(first, mask, false) };
                mask
            }
            _ => 0,
        }
    }

    /// Gives the chunks on pool `p`'s purged pages back to its free list
    /// (faulting the pages in again); true if there were any.
    ///
    /// # Safety
    /// `p` is a live pool of ours.
    unsafe fn unpurge(&mut self, p: *mut Pool) -> bool {
        // SAFETY: contract; the chunks overlapping purged pages are free and
        // on no list (the segment's `purged` invariant), which is what
        // `Pool::unpurge` relinks, and the marks go with them.
        unsafe {
            match Self::purged_of(p) {
                Some((seg, first, _, mask)) if mask != 0 => {
                    (*p).unpurge(mask);
                    (*seg).mark_purged(first, mask, false);
                    true
                }
                _ => false,
            }
        }
    }

    /// Gives back to the OS the wholly free pages of the sparse pools of
    /// this core (those with live chunks where
    /// [`Pool::purge_worthwhile`] expects enough such pages): their free
    /// chunks there leave the free list, the pages are decommitted and
    /// marked purged in the segment, and the pool takes them back
    /// ([`unpurge`](Core::unpurge)) when its free list runs dry, or re-cuts
    /// them when it is reused empty. Memory a slab allocator keeps after a
    /// workload frees most of its small blocks at random (glibc coalesces
    /// such holes; a pool cannot): in the `compare` frag workload about a
    /// third of the pages of the 257 B - 1 KiB pools. Called before the heap
    /// grows ([`new_pool_once`](Core::new_pool_once)), every eighth of
    /// growth from the last scan or from the heap's size after it last
    /// shrank; returns the bytes given back. Cost: a look at every pool
    /// header, and two walks of the free list of each pool scanned.
    pub fn purge_sparse(&mut self) -> usize {
        let mut total = 0;
        let mut seg = self.segments.head();
        while !seg.is_null() {
            // SAFETY: live segments of ours, whose pools are ours; a pool is
            // purged only while live with a live chunk (so it is no
            // reserve's), under the field invariants kept by
            // `Pool::purge_free_pages` (its chunks there are off the free
            // list before the pages are decommitted).
            unsafe {
                let s = seg;
                seg = List::<OwnedList>::next(s);
                if (*s).is_huge() {
                    continue;
                }
                // The slots first (the loop changes pools, not the map; slots
                // fit a byte).
                const { assert!(POOLS_PER_SEGMENT <= 256) };
                let mut slots = [0u8; POOLS_PER_SEGMENT];
                let mut count = 0;
                for slot in (*s).live_slots() {
                    slots[count] = slot as u8;
                    count += 1;
                }
                for &slot in &slots[..count] {
                    let p = Segment::pool_ptr(s, slot as usize);
                    if !(*p).is_live() || (*p).used() == 0 {
                        continue;
                    }
                    let (first, n) = (*p).page_range();
                    if n > PURGE_MAX_PAGES {
                        continue;
                    }
                    let old = (*s).purged_mask(first, n);
                    if !(*p).purge_worthwhile(old.count_ones()) {
                        continue;
                    }
                    let mask = (*p).purge_free_pages(old);
                    if mask == 0 {
                        continue;
                    }
                    let start = (*p).start();
                    let mut m = mask;
                    while m != 0 {
                        let lo = m.trailing_zeros() as usize;
                        let run = (m >> lo).trailing_ones() as usize;
                        os::decommit(NonNull::new_unchecked(start.add(lo * PAGE)), run * PAGE);
                        m = if lo + run >= 64 {
                            0
                        } else {
                            m & !(((1u64 << run) - 1) << lo)
                        };
                    }
                    (*s).mark_purged(first, mask, true);
                    total += mask.count_ones() as usize * PAGE;
                }
            }
        }
        if total > 0 {
            self.policy.count_purged(total);
        }
        total
    }

    /// Maps a segment of `size` bytes owned by this core and lists it.
    fn new_segment(&mut self, size: usize, huge: bool) -> Result<*mut Segment, Error> {
        let owner = (self as *mut Core<P>).cast::<()>();
        let seg = Segment::create(size, huge, self.policy.tag(), owner)
            .ok_or(Error::OutOfMemory { bytes: size })?;
        self.policy.count(0, 0, size as isize);
        // SAFETY: a fresh segment, ours alone, on no list.
        unsafe { self.segments.push_front(seg.as_ptr()) };
        Ok(seg.as_ptr())
    }

    /// A segment with a free slot and `pages` free pages in a row: an
    /// existing one, or a new one.
    fn place(&mut self, pages: usize) -> Result<(*mut Segment, usize, usize), Error> {
        let mut seg = self.segments.head();
        // SAFETY: the segment list holds live segments of ours.
        unsafe {
            while !seg.is_null() {
                let s = &*seg;
                if !s.is_huge() {
                    if let (Some(slot), Some(first)) = (s.free_slot(), s.find_pages(pages)) {
                        return Ok((seg, slot, first));
                    }
                }
                seg = List::<OwnedList>::next(seg);
            }
        }
        let seg = self.new_segment(SEGMENT_SIZE, false)?;
        Ok((seg, 0, HEADER_PAGES))
    }

    /// Takes `seg` off this core's list and unmaps it.
    ///
    /// # Safety
    /// `seg` is on this core's list and has no live pool.
    unsafe fn drop_segment(&mut self, seg: *mut Segment) {
        // SAFETY: contract: ours, listed, and empty, so no one else uses it.
        unsafe {
            debug_assert_eq!((*seg).live_pools(), 0);
            self.segments.remove(seg);
            self.policy.count(0, 0, -((*seg).size() as isize));
            Segment::destroy(NonNull::new_unchecked(seg));
        }
    }

    /// Finds the pool of a chunk this core handed out.
    #[inline(always)]
    fn pool_of(&self, addr: usize) -> Result<*mut Pool, Error> {
        if self.owners.holds(addr, self as *const Core<P> as usize) {
            // SAFETY: the owner word names this core, so a live normal
            // segment of ours covers `addr` (the word's invariant; this core
            // is only used by the thread that owns it).
            return unsafe { pool_in_normal(Segment::from_addr(addr & !(SEGMENT_SIZE - 1)), addr) }
                .ok_or(Error::ForeignPointer { addr });
        }
        self.pool_of_cold(addr)
    }

    /// [`pool_of`](Core::pool_of) for everything but a normal segment of
    /// ours: a huge segment of ours, or an error.
    #[cold]
    #[inline(never)]
    fn pool_of_cold(&self, addr: usize) -> Result<*mut Pool, Error> {
        let entry = segment_map::lookup(addr);
        if entry == 0 || entry & TAG_MASK != self.policy.tag() {
            return Err(Error::ForeignPointer { addr });
        }
        let seg = segment_of(entry, addr);
        // SAFETY: the map says a live segment with our tag covers `addr`, so
        // its header can be read; once the owner check passes, the segment
        // is ours and so are its pools.
        unsafe {
            if (*seg).owner_relaxed() != (self as *const Core<P>).cast_mut().cast() {
                return Err(Error::ForeignPointer { addr });
            }
            pool_of_chunk(seg, entry, addr).ok_or(Error::ForeignPointer { addr })
        }
    }

    /// Takes back a chunk: the free of the `Arena`, with every check.
    ///
    /// # Safety
    /// If `ptr` is a chunk of this core, it is not used any more.
    #[inline(always)]
    pub unsafe fn free(&mut self, ptr: *mut u8) -> Result<(), Error> {
        // The fast path builds no error: a null pointer's owner word is 0,
        // and anything it does not free (changing nothing) is checked again,
        // and reported, out of line.
        // SAFETY: the caller's contract, passed on.
        if unsafe { self.free_owned(ptr as usize) } {
            return Ok(());
        }
        // SAFETY: as above.
        unsafe { self.free_cold(ptr) }
    }

    /// [`free`](Core::free) for everything its fast path did not free.
    ///
    /// # Safety
    /// As [`free`](Core::free).
    #[cold]
    #[inline(never)]
    unsafe fn free_cold(&mut self, ptr: *mut u8) -> Result<(), Error> {
        if ptr.is_null() {
            return Err(Error::NullPointer);
        }
        let addr = ptr as usize;
        let pool = self.pool_of(addr)?;
        // SAFETY: a live pool of ours and one of its chunk starts (pool_of),
        // which the caller hands back.
        unsafe { self.free_in_pool(pool, addr) }
    }

    /// The free fast path of the `Arena` (and, through
    /// [`free_owned_raw`](Core::free_owned_raw), of the global allocator):
    /// frees `addr` if the
    /// segment map's owner word says a normal segment of this core holds it
    /// (a bounds check, one load, one compare) and it is a chunk start there.
    /// False leaves everything unchanged and sends the caller to its full
    /// path (remote, abandoned, huge, fallback; it reports misuse).
    ///
    /// # Safety
    /// `self` is used only by the calling thread (or the caller holds it);
    /// if `addr` is a chunk of this core, it is not used any more.
    #[inline(always)]
    pub unsafe fn free_owned(&mut self, addr: usize) -> bool {
        // SAFETY: the caller's contract, passed on; a reference is a live
        // core.
        unsafe { Self::free_owned_raw(self, addr) }
    }

    /// [`free_owned`](Core::free_owned) through a raw pointer that may point
    /// at a [`CoreStub`] instead (then it returns false: a stub's owner
    /// table holds no address): the global allocator's fast path.
    ///
    /// # Safety
    /// `core` points to a live core used only by the calling thread (or
    /// that the caller holds), or to a `CoreStub`; if `addr` is a chunk of
    /// that core, it is not used any more.
    #[inline(always)]
    pub unsafe fn free_owned_raw(core: *mut Self, addr: usize) -> bool {
        // SAFETY: both a core and a stub start with the owner table (read in
        // place, without a reference to a whole core). Once the owner word
        // names `core`, `core` is a real core (a stub's table holds
        // nothing), so a live normal segment of it covers `addr` (the word's
        // invariant), whose page map and pools are its own; a chunk start
        // found there is handed back by the caller.
        unsafe {
            if !(*core).owners.holds(addr, core as usize) {
                return false;
            }
            match pool_in_normal(Segment::from_addr(addr & !(SEGMENT_SIZE - 1)), addr) {
                Some(pool) => (*core).free_in_pool(pool, addr).is_ok(),
                None => false,
            }
        }
    }

    /// Puts chunk `addr` back on its pool's free list; `DoubleFree` (and
    /// nothing changed) when the cheap check catches one. The fast path is
    /// the push and one compare against the pool's `watch`; everything else
    /// (a double free, a full pool to relink, an emptied pool to report) is
    /// out of line.
    ///
    /// # Safety
    /// `pool` is a live pool of this core; `addr` is a chunk start it
    /// carved, which the caller no longer uses.
    #[inline(always)]
    pub unsafe fn free_in_pool(&mut self, pool: *mut Pool, addr: usize) -> Result<(), Error> {
        // SAFETY: `pool` is a live pool of ours, so we may take `&mut` to
        // its header (only the owner touches it besides `remote`), and
        // `addr` is one of its carved chunk starts that nobody uses: what
        // `pool::push_fast` needs, and `free_fixup`.
        unsafe {
            if pool::push_fast(&mut *pool, addr) {
                return Ok(());
            }
            self.free_fixup(pool, addr)
        }
    }

    /// The rare half of a free, which the pool's `watch` sent here: the
    /// checked push (a double free is refused), then relink a pool that was
    /// full, tell the policy of a pool that emptied.
    ///
    /// # Safety
    /// As [`free_in_pool`](Core::free_in_pool).
    #[cold]
    #[inline(never)]
    unsafe fn free_fixup(&mut self, pool: *mut Pool, addr: usize) -> Result<(), Error> {
        // SAFETY: `pool` is a live pool of ours (precondition), so its slab
        // is in range (it was allocated from this core's table) and its
        // links are ours; `addr` is a carved chunk start nobody uses
        // (`push`'s contract); the policy hook gets a live pool on our list.
        unsafe {
            if !pool::push(&mut *pool, addr) {
                return Err(Error::DoubleFree { addr });
            }
            if !(*pool).avail.is_linked() {
                self.avail_push_front(pool);
            }
            if P::TRACKS_EMPTY && (*pool).used() == 0 && !(*pool).empty.is_linked() && !(*pool).kept
            {
                P::pool_emptied(self, pool);
            }
        }
        Ok(())
    }

    /// Puts a pool back on its slab's list of pools with room, if it has
    /// room and is not there (nor on the policy's reserve).
    ///
    /// # Safety
    /// `pool` is a live pool of this core.
    pub unsafe fn relink(&mut self, pool: *mut Pool) {
        // SAFETY: `pool` is a live pool of ours (precondition), so its slab
        // is in lo..=hi (it was allocated from this core's table) and its
        // `avail` link is ours to set.
        unsafe {
            if !(*pool).avail.is_linked() && !(*pool).empty.is_linked() && (*pool).has_room() {
                self.avail_push_front(pool);
            }
        }
    }

    /// For a policy's reserve: takes the empty pool `pool` off its slab's
    /// list of pools with room and returns true, unless no other pool on
    /// that list has room (among the first few looked at) and it is at most
    /// [`KEEP_EMPTY_MAX_BYTES`], when it stays there (false): a slab keeps
    /// its last small empty pool, so one block allocated and freed over and
    /// over does not cycle a pool.
    ///
    /// # Safety
    /// `pool` is a live pool of ours, empty (if it is on no slab list, it
    /// just returns true).
    pub unsafe fn take_off_slab(&mut self, pool: *mut Pool) -> bool {
        // SAFETY: contract; the list holds live pools of ours.
        unsafe {
            if !(*pool).avail.is_linked() {
                return true;
            }
            let st = self.slab((*pool).slab());
            let mut other_with_room = false;
            let mut p = (*st).avail.head();
            let mut looked = 0;
            while !p.is_null() && looked < 8 {
                if p != pool && (*p).has_room() {
                    other_with_room = true;
                    break;
                }
                looked += 1;
                p = List::<AvailList>::next(p);
            }
            // Only a small pool stays: the kept pools are outside the
            // reserve's bounds, one per slab.
            if !other_with_room && p.is_null() && (*pool).bytes() <= KEEP_EMPTY_MAX_BYTES {
                (*pool).kept = true;
                (*pool).set_watch(WATCH_NONE);
                return false;
            }
            self.avail_remove(pool);
            true
        }
    }

    /// Takes every empty pool (with an empty remote word) off its slab's list
    /// and hands it to `park` (a policy's reserve, at thread exit, so the
    /// next thread starts each slab from pools whose pages are warm).
    pub fn unlist_empty_pools(&mut self, mut park: impl FnMut(&mut P, *mut Pool)) {
        for i in 0..=(self.hi - self.lo) {
            // SAFETY: the table has hi - lo + 1 entries; the pools on each
            // list are live pools of ours; `next` is read before a pool is
            // unlinked.
            unsafe {
                let st = self.slabs.add(i);
                let mut p = (*st).avail.head();
                while !p.is_null() {
                    let next = List::<AvailList>::next(p);
                    if (*p).used() == 0 && !(*p).remote_in_use() && !(*p).empty.is_linked() {
                        self.avail_remove(p);
                        park(&mut self.policy, p);
                    }
                    p = next;
                }
            }
        }
    }

    /// Bytes of the live pools of this core.
    pub fn heap_bytes(&self) -> usize {
        self.heap
    }

    /// Collects the pools of a queue list the caller took whole
    /// ([`PoolQueue::take`](crate::pool::PoolQueue::take)): each pool of a
    /// segment this core owns has its chunks taken and its `QUEUED` bit
    /// cleared in one swap, is relinked if it gained room, and goes to the
    /// policy if it is left empty (so pools emptied by other threads fall
    /// under the reserve bound at once); each pool of a segment owned by
    /// someone else, or no one (abandoned or adopted since it was queued),
    /// is handed to `foreign`, which must queue it where it belongs. True
    /// when any chunk was collected. Cost: the pools on the list, not the
    /// heap.
    ///
    /// Releasing pools during the walk is safe: each pool's link is read
    /// before the pool is touched (`for_each_queued`), and the pools still
    /// on the list have their bit set, so the policy releases none of them
    /// and none of their segments.
    ///
    /// # Safety
    /// `list` was taken by this core's owner from this core's own queue.
    pub unsafe fn collect_queue(
        &mut self,
        list: *mut Pool,
        mut foreign: impl FnMut(*mut Pool, *mut Segment),
    ) -> bool {
        let me = (self as *mut Core<P>).cast::<()>();
        let mut found = false;
        // SAFETY: queued pools are live (QUEUED pins them); the owner check
        // is exact without the lock, since only this core's owner makes a
        // segment ours or gives it up; pools of our segments are ours.
        unsafe {
            pool::for_each_queued(list, |p| {
                let seg = segment_of_pool(p);
                if (*seg).owner_relaxed() != me {
                    foreign(p, seg);
                    return;
                }
                if (*p).collect_dequeued() > 0 {
                    found = true;
                    self.relink(p);
                }
                if P::TRACKS_EMPTY && (*p).used() == 0 && !(*p).empty.is_linked() && !(*p).kept {
                    P::pool_emptied(self, p);
                }
            });
        }
        found
    }

    /// The slab size of a chunk this core handed out.
    pub fn chunk_size(&self, ptr: *const u8) -> Result<usize, Error> {
        let pool = self.pool_of(ptr as usize)?;
        // SAFETY: pool_of returns live pools of ours.
        Ok(unsafe { (*pool).chunk_size() })
    }

    /// The live pool slots of this core's segments.
    pub fn pools(&self) -> impl Iterator<Item = *mut Pool> + '_ {
        let mut seg = self.segments.head();
        core::iter::from_fn(move || {
            if seg.is_null() {
                return None;
            }
            let s = seg;
            // SAFETY: the segment list holds live segments of ours.
            seg = unsafe { List::<OwnedList>::next(s) };
            Some(
                // SAFETY: slots below POOLS_PER_SEGMENT of a live segment.
                (0..POOLS_PER_SEGMENT).map(move |slot| unsafe { Segment::pool_ptr(s, slot) }),
            )
        })
        .flatten()
        // SAFETY: pool headers of live segments can be read.
        .filter(|&p| unsafe { (*p).is_live() })
    }

    /// Capacity, heap, allocated and overhead figures; `capacity` is the
    /// owner's.
    pub fn info(&self, capacity: usize) -> Info {
        Info {
            capacity,
            heap: self.heap,
            allocated: self
                .pools()
                // SAFETY: pools() yields live pools of ours.
                .map(|p| unsafe { (*p).used() as usize * (*p).chunk_size() })
                .sum(),
            overhead: self.segments.len() * HEADER_BYTES + self.mapping_bytes,
        }
    }

    /// Per slab: chunks in use and held; only slabs that hold pools, by
    /// increasing size.
    pub fn utilization(&self) -> Vec<SlabUse> {
        let mut out: Vec<SlabUse> = Vec::new();
        for p in self.pools() {
            // SAFETY: pools() yields live pools of ours.
            let p = unsafe { &*p };
            let slab = p.chunk_size();
            let i = match out.binary_search_by_key(&slab, |u| u.slab) {
                Ok(i) => i,
                Err(i) => {
                    out.insert(
                        i,
                        SlabUse {
                            slab,
                            in_use: 0,
                            held: 0,
                            ratio: 0.0,
                        },
                    );
                    i
                }
            };
            out[i].in_use += p.used() as usize;
            out[i].held += p.capacity() as usize;
        }
        for u in &mut out {
            u.ratio = u.in_use as f64 / u.held as f64;
        }
        out
    }

    /// Collects remote frees, then returns every empty pool (and segments
    /// left empty) to the OS; returns the drop in `heap`.
    pub fn trim(&mut self) -> usize {
        let before = self.heap;
        let mut seg = self.segments.head();
        while !seg.is_null() {
            // SAFETY: live segments of ours; `next` is read before the
            // segment may be unmapped; only empty pools are released.
            unsafe {
                let next = List::<OwnedList>::next(seg);
                for slot in 0..POOLS_PER_SEGMENT {
                    let p = Segment::pool_ptr(seg, slot);
                    if (*p).is_live() {
                        (*p).collect_remote();
                        // A queued pool waits for its queue (see `Pool`'s
                        // `remote`).
                        if (*p).used() == 0 && !(*p).remote_in_use() {
                            self.release_pool(seg, slot);
                        }
                    }
                }
                if (*seg).live_pools() == 0 {
                    self.drop_segment(seg);
                }
                seg = next;
            }
        }
        self.invariant();
        before - self.heap
    }

    /// Returns the empty pool in `slot` of `seg` to the OS (the segment
    /// stays, even if now empty).
    ///
    /// # Safety
    /// `seg` is a live segment of ours; its pool in `slot` is live, holds no
    /// live chunk, and its remote word is 0 (nothing on its remote stack,
    /// not queued: [`Pool::remote_in_use`]).
    pub unsafe fn release_pool(&mut self, seg: *mut Segment, slot: usize) {
        // SAFETY: contract; the policy unlinks the pool from its own lists
        // first, so the segment may decommit it.
        unsafe {
            let p = Segment::pool_ptr(seg, slot);
            P::pool_released(self, p);
            if (*p).avail.is_linked() {
                self.avail_remove(p);
            }
            (*self.slab((*p).slab())).pools -= 1;
            let bytes = (*p).bytes();
            self.heap -= bytes;
            // A heap that shrank scans again when it grows by an eighth
            // from here, not only past its old peak (a program that frees
            // most of its blocks and refills, round after round).
            self.next_sparse_scan = self.next_sparse_scan.min(sparse_scan_at(self.heap));
            self.policy.count(-(bytes as isize), -1, 0);
            // A pool decommitted on a reserve gave its bytes back then.
            if !(*p).is_decommitted() {
                self.policy.unclaim(bytes);
            }
            (*seg).release_pool(slot);
        }
    }

    /// Releases an empty pool, and its segment if that is now empty.
    ///
    /// # Safety
    /// As [`release_pool`](Core::release_pool), for the pool `p`.
    pub unsafe fn release_pool_and_segment(&mut self, p: *mut Pool) {
        // SAFETY: contract; `segment_of_pool` finds the live pool's header.
        unsafe {
            let seg = segment_of_pool(p);
            let slot = (p as usize - Segment::pool_ptr(seg, 0) as usize) / size_of::<Pool>();
            self.release_pool(seg, slot);
            if (*seg).live_pools() == 0 {
                self.drop_segment(seg);
            }
        }
    }

    /// Takes a segment whose owner was just set to this core: collects what
    /// other threads freed into it and lists its pools; tells the policy of
    /// each pool left empty (after the walk, when releasing is safe).
    /// Returns its number of live pools.
    ///
    /// # Safety
    /// `seg` is a live segment of this core's tag whose owner was set to
    /// this core, on no owner's list, with its pools on no list.
    pub unsafe fn adopt_segment(&mut self, seg: *mut Segment) -> usize {
        // SAFETY: the segment is now ours alone (contract).
        unsafe {
            self.segments.push_front(seg);
            let mut pools = 0;
            let mut emptied = [null_mut::<Pool>(); POOLS_PER_SEGMENT];
            let mut n_empty = 0;
            for slot in 0..POOLS_PER_SEGMENT {
                let p = Segment::pool_ptr(seg, slot);
                if !(*p).is_live() {
                    continue;
                }
                pools += 1;
                (*p).collect_remote();
                (*self.slab((*p).slab())).pools += 1;
                self.heap += (*p).bytes();
                self.relink(p);
                if (*p).used() == 0 && !(*p).empty.is_linked() {
                    emptied[n_empty] = p;
                    n_empty += 1;
                }
            }
            // Tell the policy after the walk: it may release pools.
            if P::TRACKS_EMPTY {
                for &p in &emptied[..n_empty] {
                    if (*p).used() == 0 && (*p).is_live() && !(*p).empty.is_linked() {
                        P::pool_emptied(self, p);
                    }
                }
            }
            pools
        }
    }

    /// Gives up every segment: collects remote frees, returns empty pools
    /// and empty segments to the OS, and hands each segment that still has
    /// live chunks to `keep` (with its number of live pools), unlinked from
    /// every list of this core. The core is left empty, ready for reuse.
    ///
    /// # Safety
    /// The policy holds no pool of this core on a list of its own.
    pub unsafe fn abandon_segments(&mut self, mut keep: impl FnMut(*mut Segment, usize)) {
        // Empty every slab's list first: those lists link pools across
        // segments, so unlinking later would write into segments already
        // handed to `keep`.
        self.avail_clear();
        for i in 0..=(self.hi - self.lo) {
            // SAFETY: the table has hi - lo + 1 entries.
            unsafe { (*self.slabs.add(i)).pools = 0 };
        }
        let mut segments = self.segments.take();
        loop {
            // SAFETY: live segments of ours, now off our list.
            unsafe {
                let seg = segments.pop_front();
                if seg.is_null() {
                    break;
                }
                for slot in 0..POOLS_PER_SEGMENT {
                    let p = Segment::pool_ptr(seg, slot);
                    if (*p).is_live() {
                        (*p).collect_remote();
                        let bytes = (*p).bytes();
                        self.heap -= bytes;
                        // A queued pool stays, live, with its segment.
                        if (*p).used() == 0 && !(*p).remote_in_use() {
                            self.policy.count(-(bytes as isize), -1, 0);
                            if !(*p).is_decommitted() {
                                self.policy.unclaim(bytes);
                            }
                            (*seg).release_pool(slot);
                        }
                    }
                }
                if (*seg).live_pools() == 0 {
                    self.policy.count(0, 0, -((*seg).size() as isize));
                    Segment::destroy(NonNull::new_unchecked(seg));
                } else {
                    keep(seg, (*seg).live_pools());
                }
            }
        }
        debug_assert_eq!(self.heap, 0);
        self.heap = 0;
        self.next_sparse_scan = 0;
    }

    /// The first direct-table entry that is not its slab's avail head (or
    /// the empty pool for an empty list, a slab not in `lo..=hi` or an
    /// entry not served), if any.
    #[cfg(any(test, debug_assertions))]
    #[cfg_attr(loom, allow(dead_code))] // its tests do not run under loom
    fn direct_out_of_step(&self) -> Option<usize> {
        (0..DIRECT_ENTRIES).find(|&k| {
            let idx = size_class::slab_index(k * 8);
            let head = if idx >= self.lo && idx <= self.hi && self.direct_served().contains(&k) {
                // SAFETY: idx is in lo..=hi.
                unsafe { (*self.slab(idx)).avail.head() }
            } else {
                null_mut()
            };
            self.direct[k] != if head.is_null() { empty_pool() } else { head }
        })
    }

    /// Checks the lists' invariants (debug builds; a no-op in release).
    pub fn invariant(&self) {
        #[cfg(debug_assertions)]
        // SAFETY: every list holds live nodes of ours.
        unsafe {
            self.segments.invariant();
            for i in 0..=(self.hi - self.lo) {
                (*self.slabs.add(i)).avail.invariant();
            }
            if let Some(k) = self.direct_out_of_step() {
                panic!("flistalloc: direct table entry {k} out of step");
            }
            if let Some(p) = self.watch_out_of_step() {
                panic!("flistalloc: pool {p:?} has watch {}", (*p).watch());
            }
        }
    }

    /// The first live pool whose `watch` is not what its lists say (see
    /// `Pool`'s field), if any.
    #[cfg(any(test, debug_assertions))]
    #[cfg_attr(loom, allow(dead_code))] // its tests do not run under loom
    fn watch_out_of_step(&self) -> Option<*mut Pool> {
        self.pools().find(|&p| {
            // SAFETY: pools() yields live pools of ours.
            let p = unsafe { &*p };
            let want = if !p.avail.is_linked() {
                WATCH_OFF_LIST
            } else if p.kept {
                WATCH_NONE
            } else {
                Self::LISTED_WATCH
            };
            p.watch() != want
        })
    }
}

/// The header of the segment holding pool `p`: a pool's chunks start inside
/// its segment's first granule for normal segments, and right after the
/// header of a huge one, so masking the start finds the header.
///
/// # Safety
/// `p` is a live pool (its `start` is fixed while it lives).
pub(crate) unsafe fn segment_of_pool(p: *const Pool) -> *mut Segment {
    // SAFETY: `p` is a live pool (caller), so its header slot lies in a
    // mapped segment header and `start` is fixed while the pool lives.
    Segment::from_addr(unsafe { (*p).start() } as usize & !(SEGMENT_SIZE - 1))
}

/// The header of the segment covering `addr`, given its segment-map entry.
#[inline(always)]
pub(crate) fn segment_of(entry: usize, addr: usize) -> *mut Segment {
    let base = if entry & HUGE_FLAG == 0 {
        addr & !(SEGMENT_SIZE - 1)
    } else {
        entry & !(SEGMENT_SIZE - 1)
    };
    Segment::from_addr(base)
}

/// The pool of a normal segment whose pages hold `addr`, if `addr` is a
/// chunk start it carved.
///
/// # Safety
/// `seg` is a live normal segment whose page map is stable for `addr`: the
/// caller owns the segment.
#[inline(always)]
pub(crate) unsafe fn pool_in_normal(seg: *mut Segment, addr: usize) -> Option<*mut Pool> {
    // SAFETY: the caller owns the live normal segment `seg`, so its page map
    // is stable; the page index is below PAGES_PER_SEGMENT because `addr`
    // lies in the segment (the segment map said so); the page map names a
    // live slot, or the never-live `none` slot, which no address is a chunk
    // start of (Segment's invariant).
    unsafe {
        let pool = Segment::pool_in_page(seg, (addr - seg as usize) / PAGE);
        (*pool).is_chunk_start_in_pages(addr).then_some(pool)
    }
}

/// The pool of the segment `entry` describes that holds chunk start `addr`,
/// or `None` when `addr` is not one.
///
/// # Safety
/// `seg` is the live segment that `entry` (its map entry) describes, and the
/// caller owns it.
#[inline(always)]
pub(crate) unsafe fn pool_of_chunk(
    seg: *mut Segment,
    entry: usize,
    addr: usize,
) -> Option<*mut Pool> {
    // SAFETY: `seg` is a live segment the caller owns and `entry` its map
    // entry: a normal one has a page map stable for us (pool_in_normal's
    // precondition); a huge one has its one pool in slot 0.
    unsafe {
        if entry & HUGE_FLAG == 0 {
            pool_in_normal(seg, addr)
        } else {
            let pool = Segment::pool_ptr(seg, 0);
            (*pool).is_chunk_start(addr).then_some(pool)
        }
    }
}

/// The pool whose pages hold `addr` for a thread that does not own the
/// segment but holds a live chunk at `addr` (so the page map entry and the
/// pool's fixed fields are stable), if `addr` is a chunk start.
///
/// # Safety
/// `seg` is the live segment that `entry` describes; if `addr` is a chunk of
/// it, the caller holds that chunk live.
#[inline(always)]
pub(crate) unsafe fn pool_of_chunk_remote(
    seg: *mut Segment,
    entry: usize,
    addr: usize,
) -> Option<*mut Pool> {
    // SAFETY: contract: a live chunk pins its pool and the page map entries
    // of its pages.
    unsafe {
        let pool = if entry & HUGE_FLAG != 0 {
            Segment::pool_ptr(seg, 0)
        } else {
            // The `none` slot for a page of no pool: its span is 0, so no
            // address is a chunk start of it.
            Segment::pool_in_page(seg, (addr - seg as usize) / PAGE)
        };
        (*pool).is_chunk_start_remote(addr).then_some(pool)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    /// A policy with room for 64 MiB and nothing else.
    struct Plain;
    impl Policy for Plain {
        const TRACKS_EMPTY: bool = false;
        fn tag(&self) -> usize {
            // A tag no `Arena` of this test binary uses (they count up from 2).
            TAG_MASK - 1
        }
        fn room(&self, heap: usize) -> usize {
            (64 << 20) - heap
        }
    }

    /// The direct table follows every avail list through pools filling,
    /// freeing, being released by `trim` and abandoned, and the fast pop
    /// takes from the head pool.
    #[test]
    fn direct_table_follows_the_avail_lists() {
        let core = Core::create(1, 4096, Plain).unwrap();
        // SAFETY: a core just made, used by this test alone; every chunk is
        // freed once; the core is destroyed last.
        unsafe {
            let c = &mut *core.as_ptr();
            assert_eq!(c.direct_out_of_step(), None);
            assert!(c.pop_direct(64).is_null(), "nothing before first use");
            let mut held = Vec::new();
            for size in [8, 24, 64, 200, 1000, 1024] {
                // Several pools of each slab (fewer under miri, which
                // interprets every step).
                for _ in 0..if cfg!(miri) { 600 } else { 3000 } {
                    held.push(c.alloc(size).unwrap().as_ptr());
                }
                assert_eq!(c.direct_out_of_step(), None, "after allocating {size}");
                assert_eq!(c.watch_out_of_step(), None, "after allocating {size}");
            }
            // Free every other chunk, then pop them back through the table.
            let mut back = Vec::new();
            for p in held.iter().step_by(2) {
                c.free(*p).unwrap();
            }
            assert_eq!(c.direct_out_of_step(), None, "after freeing");
            assert_eq!(c.watch_out_of_step(), None, "after freeing");
            // One size per slab (1000 and 1024 share one).
            for size in [8, 24, 64, 200, 1024] {
                let before = back.len();
                loop {
                    let head = c.direct[size_class::direct_index(size)];
                    let p = c.pop_direct(size);
                    if p.is_null() {
                        break;
                    }
                    assert!(
                        (*head).is_chunk_start(p as usize),
                        "popped off the head pool"
                    );
                    assert_eq!(c.chunk_size(p).unwrap(), size_class::suitable_slab(size));
                    back.push(p);
                }
                assert!(
                    back.len() > before,
                    "the head pool of {size} had free chunks"
                );
                assert_eq!(c.direct_out_of_step(), None, "after popping {size}");
            }
            for p in back
                .into_iter()
                .chain(held.iter().skip(1).step_by(2).copied())
            {
                c.free(p).unwrap();
            }
            c.trim();
            assert_eq!(c.direct_out_of_step(), None, "after trim");
            assert_eq!(c.watch_out_of_step(), None, "after trim");
            assert!(c.pop_direct(64).is_null(), "every pool released");
            held.clear();
            for _ in 0..100 {
                held.push(c.alloc(64).unwrap().as_ptr());
            }
            assert_ne!(c.direct[size_class::direct_index(64)], empty_pool());
            let mut kept = Vec::new();
            c.abandon_segments(|seg, _| kept.push(seg));
            assert!((0..DIRECT_ENTRIES).all(|k| c.direct[k] == empty_pool()));
            assert!(c.pop_direct(64).is_null(), "abandoned pools are not ours");
            for seg in kept {
                Segment::destroy(NonNull::new(seg).unwrap());
            }
            Core::destroy(core);
        }
    }
}
