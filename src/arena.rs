//! The single-threaded flist core ([`Core`]) and the public [`Arena`] on top.
//!
//! `Core` owns segments (see `segment.rs`), hands out chunks from per-slab
//! lists of pools with room, and takes them back after checking, through the
//! segment map, that the pointer is one of its own. The global allocator's
//! thread heaps reuse the same `Core`.

use crate::error::Error;
use crate::os;
use crate::pool::{self, FreeChunk, Pool};
use crate::segment::{
    Segment, HEADER_BYTES, HEADER_PAGES, MAX_NORMAL_POOL, NO_POOL, POOLS_PER_SEGMENT,
};
use crate::segment_map::{self, HUGE_FLAG, SEGMENT_SIZE, TAG_MASK};
use crate::size_class::{self, PAGE};
use crate::stats;
use crate::stats::{Info, SlabUse};
use crate::MAX_ARENA_SIZE;
use core::alloc::Layout;
use core::cell::Cell;
use core::marker::PhantomData;
use core::ptr::{null_mut, NonNull};
use core::sync::atomic::{AtomicUsize, Ordering};

/// Per-slab state: the head of the list of pools with room (the pool chunks
/// come from), and how many pools the slab holds (for the doubling rule).
#[repr(C)]
pub(crate) struct SlabState {
    pub avail: *mut Pool,
    pub held: u32,
}

/// The single-threaded heap. Lives at the start of its own OS mapping, followed
/// by its slab table, so its address is stable (segments point back to it).
#[repr(C)]
pub(crate) struct Core {
    pub slabs: *mut SlabState,
    /// Slab indices `lo..=hi` have a `SlabState`.
    pub lo: usize,
    pub hi: usize,
    pub min_size: usize,
    pub max_size: usize,
    pub capacity: usize,
    pub heap: usize,
    pub segments: *mut Segment,
    pub segment_count: usize,
    pub tag: usize,
    mapping_bytes: usize,
    /// Global-allocator heap state, idle in an `Arena` (see `global/heap.rs`).
    pub global: HeapState,
}

/// What a thread heap of the global allocator keeps beyond an `Arena`.
#[repr(C)]
pub(crate) struct HeapState {
    /// This core is a thread heap: capacity is the process-wide budget, empty
    /// pools beyond a reserve go back to the OS, remote frees are collected.
    pub shared: bool,
    /// Set by other threads after they push a chunk onto one of our pools'
    /// remote lists; heaps are never unmapped, so a stale store is harmless.
    pub remote_flag: core::sync::atomic::AtomicBool,
    /// FIFO of pools that became empty (may hold pools reused since).
    pub empty_head: *mut Pool,
    pub empty_tail: *mut Pool,
    pub empty_len: usize,
    pub empty_bytes: usize,
    /// Link in the list of idle heaps, for reuse by new threads.
    pub next_idle: *mut Core,
    /// Base of a normal segment this core owns, freed into last, or
    /// [`NO_HOT_SEGMENT`] (never a segment base, unlike 0).
    pub hot_seg: usize,
    /// A robust mutex the thread using this heap holds from attach to its
    /// exit: when the thread ends without the key destructor detaching it
    /// (a first allocation in the last destructor round), the kernel marks
    /// the mutex owner-dead and a later `trylock` proves the thread is gone
    /// (see `global::reap_dead_heaps`). Initialised by `global` before use.
    pub owner_lock: libc::pthread_mutex_t,
    /// Whether a thread uses this heap; read and written only while holding
    /// `owner_lock` (or by the owner thread, which holds it).
    pub attached: bool,
    /// Link in the list of every thread heap ever made (heaps are never
    /// unmapped); written once, before the heap is published.
    pub next_all: *mut Core,
}

/// `hot_seg` value meaning "none": not segment-aligned, so no address masks to it.
pub(crate) const NO_HOT_SEGMENT: usize = usize::MAX;

static NEXT_TAG: AtomicUsize = AtomicUsize::new(2);

fn next_tag() -> usize {
    // Tags 0 (no segment) and 1 (the global allocator) are reserved. After
    // 2^21 - 2 arenas tags repeat; the segment's owner pointer is checked as
    // well, so two live arenas sharing a tag still tell their pointers apart.
    let n = NEXT_TAG.fetch_add(1, Ordering::Relaxed);
    2 + n % (TAG_MASK - 1)
}

impl Core {
    /// Maps a new core serving requested sizes `min..=max`.
    pub fn create(
        capacity: usize,
        min: usize,
        max: usize,
        tag: usize,
    ) -> Result<NonNull<Core>, Error> {
        if capacity > MAX_ARENA_SIZE {
            return Err(Error::CapacityTooLarge { capacity });
        }
        if min > max || max > MAX_ARENA_SIZE {
            return Err(Error::InvalidChunkRange { min, max });
        }
        let lo = size_class::slab_index(min);
        // Aligned layouts of size <= max may round up to a page multiple.
        let hi = size_class::slab_index(pool::round_pages(max.max(1)).min(MAX_ARENA_SIZE));
        let table = (hi - lo + 1) * core::mem::size_of::<SlabState>();
        let bytes = pool::round_pages(core::mem::size_of::<Core>() + table);
        let map = os::map_aligned(bytes, PAGE).ok_or(Error::OutOfMemory { bytes })?;
        let core = map.cast::<Core>();
        // SAFETY: fresh zeroed mapping of `bytes`, page-aligned: room for the
        // Core followed by the slab table (all-zero SlabState is valid: null
        // list, zero pools).
        unsafe {
            core.as_ptr().write(Core {
                slabs: map.as_ptr().add(core::mem::size_of::<Core>()).cast(),
                lo,
                hi,
                min_size: min,
                max_size: max,
                capacity,
                heap: 0,
                segments: null_mut(),
                segment_count: 0,
                tag,
                mapping_bytes: bytes,
                global: HeapState {
                    shared: tag == segment_map::GLOBAL_TAG,
                    remote_flag: core::sync::atomic::AtomicBool::new(false),
                    empty_head: null_mut(),
                    empty_tail: null_mut(),
                    empty_len: 0,
                    empty_bytes: 0,
                    next_idle: null_mut(),
                    hot_seg: NO_HOT_SEGMENT,
                    owner_lock: libc::PTHREAD_MUTEX_INITIALIZER,
                    attached: false,
                    next_all: null_mut(),
                },
            });
        }
        Ok(core)
    }

    /// Returns every segment and the core's own mapping.
    ///
    /// # Safety
    /// `core` came from `create`; nothing it handed out is used afterwards.
    pub unsafe fn destroy(core: NonNull<Core>) {
        // SAFETY: live core (contract); segments are ours and unreachable now.
        unsafe {
            let c = &mut *core.as_ptr();
            let mut seg = c.segments;
            while !seg.is_null() {
                let next = (*seg).next;
                Segment::destroy(NonNull::new_unchecked(seg));
                seg = next;
            }
            os::unmap(core.cast(), c.mapping_bytes, PAGE);
        }
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

    /// Allocates a chunk for `size` bytes, aligned to 8.
    #[inline(always)]
    pub fn alloc(&mut self, size: usize) -> Result<NonNull<u8>, Error> {
        self.check_size(size)?;
        self.alloc_index(size_class::slab_index(size))
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
        Ok((self.alloc_index(idx)?, idx))
    }

    #[inline(always)]
    pub fn alloc_index(&mut self, idx: usize) -> Result<NonNull<u8>, Error> {
        self.alloc_index_z(idx).map(|(p, _)| p)
    }

    /// Allocates a chunk of slab `idx`; the flag says whether the chunk is
    /// fresh memory, still zero (never handed out since its pages were
    /// mapped or decommitted).
    #[inline(always)]
    pub fn alloc_index_z(&mut self, idx: usize) -> Result<(NonNull<u8>, bool), Error> {
        debug_assert!(idx >= self.lo && idx <= self.hi);
        // SAFETY: idx is within lo..=hi (sizes were range-checked and the
        // table covers page-rounded max), so the SlabState exists; its avail
        // list holds live pools of this core, whose free lists hold free
        // chunks with a link in their first word.
        unsafe {
            let pool = (*self.slabs.add(idx - self.lo)).avail;
            if let Some(p) = pool.as_mut() {
                let c = p.free;
                if !c.is_null() {
                    p.free = (*c).next;
                    p.used += 1;
                    return Ok((NonNull::new_unchecked(c.cast()), false));
                }
            }
        }
        self.alloc_slow(idx)
    }

    #[inline(never)]
    fn alloc_slow(&mut self, idx: usize) -> Result<(NonNull<u8>, bool), Error> {
        let mut refilled = false;
        // SAFETY: as in alloc_index_z; pools in the list are live and ours.
        unsafe {
            let st = self.slabs.add(idx - self.lo);
            loop {
                let pool = (*st).avail;
                if pool.is_null() {
                    // A thread heap first looks for chunks freed by other
                    // threads and for abandoned segments, once.
                    if self.global.shared && !refilled {
                        refilled = true;
                        if self.global_refill() {
                            continue;
                        }
                    }
                    break;
                }
                if let Some(c) = take(&mut *pool) {
                    return Ok(c);
                }
                if (*pool).collect_remote() > 0 {
                    continue;
                }
                unlink(st, pool);
            }
            let p = self.new_pool(idx)?;
            link_pool(st, p);
            Ok(take(&mut *p).expect("a new pool has room"))
        }
    }

    fn new_pool(&mut self, idx: usize) -> Result<*mut Pool, Error> {
        let first = self.new_pool_once(idx);
        // A thread heap over the process budget first gives back the empty
        // pools it keeps in reserve, then tries once more.
        if first.is_err() && self.global.shared && self.purge_empty() {
            return self.new_pool_once(idx);
        }
        first
    }

    fn new_pool_once(&mut self, idx: usize) -> Result<*mut Pool, Error> {
        let chunk = size_class::slab_size(idx);
        // SAFETY: idx in range (see alloc_index).
        let st = unsafe { &mut *self.slabs.add(idx - self.lo) };
        let room = if self.global.shared {
            crate::global::budget_room()
        } else {
            self.capacity - self.heap
        };
        let bytes = pool::pool_bytes(chunk, st.held, room);
        if bytes == 0 || (self.global.shared && !crate::global::budget_take(bytes)) {
            return Err(Error::OutOfCapacity {
                needed: pool::round_pages(chunk),
                heap: self.heap,
                capacity: self.capacity,
            });
        }
        let result = self.map_pool(idx, chunk, bytes);
        match result {
            Ok(p) => {
                st.held += 1;
                self.heap += bytes;
                stats::pool_change(self.tag, bytes as isize, 1);
                Ok(p)
            }
            Err(e) => {
                if self.global.shared {
                    crate::global::budget_give(bytes);
                }
                Err(e)
            }
        }
    }

    fn map_pool(&mut self, idx: usize, chunk: usize, bytes: usize) -> Result<*mut Pool, Error> {
        let owner = (self as *mut Core).cast::<()>();
        let pool = if bytes > MAX_NORMAL_POOL {
            let size = (HEADER_BYTES + bytes).div_ceil(SEGMENT_SIZE) * SEGMENT_SIZE;
            let seg = Segment::create(size, true, self.tag, owner)
                .ok_or(Error::OutOfMemory { bytes: size })?;
            let s = seg.as_ptr();
            // SAFETY: fresh segment, ours alone; slot 0 exists.
            unsafe {
                self.push_segment(s);
                (*s).live_pools = 1;
                (*s).free_pages = 0;
                let p = Segment::pool_ptr(s, 0);
                (*p).init(
                    Segment::base(s).add(HEADER_BYTES),
                    bytes,
                    chunk,
                    idx,
                    HEADER_PAGES as u32,
                );
                p
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
                p
            }
        };
        Ok(pool)
    }

    /// A segment with a free slot and `pages` free pages in a row: an
    /// existing one, or a new one.
    fn place(&mut self, pages: usize) -> Result<(*mut Segment, usize, usize), Error> {
        let mut seg = self.segments;
        // SAFETY: the segment list holds live segments of ours.
        unsafe {
            while !seg.is_null() {
                let s = &*seg;
                if !s.huge {
                    if let (Some(slot), Some(first)) = (s.free_slot(), s.find_pages(pages)) {
                        return Ok((seg, slot, first));
                    }
                }
                seg = s.next;
            }
        }
        let owner = (self as *mut Core).cast::<()>();
        let seg =
            Segment::create(SEGMENT_SIZE, false, self.tag, owner).ok_or(Error::OutOfMemory {
                bytes: SEGMENT_SIZE,
            })?;
        // SAFETY: fresh segment, ours alone.
        unsafe { self.push_segment(seg.as_ptr()) };
        Ok((seg.as_ptr(), 0, HEADER_PAGES))
    }

    /// # Safety
    /// `seg` is live, ours, and not in the list.
    pub unsafe fn push_segment(&mut self, seg: *mut Segment) {
        #[cfg(debug_assertions)]
        {
            let mut s = self.segments;
            while !s.is_null() {
                assert!(s != seg, "flistalloc: segment pushed twice");
                // SAFETY: live list members.
                s = unsafe { (*s).next };
            }
        }
        // SAFETY: contract; the old head is live.
        unsafe {
            (*seg).next = self.segments;
            (*seg).prev = null_mut();
            if let Some(h) = self.segments.as_mut() {
                h.prev = seg;
            }
        }
        self.segments = seg;
        self.segment_count += 1;
    }

    /// # Safety
    /// `seg` is live, ours, and in the list.
    pub unsafe fn drop_segment(&mut self, seg: *mut Segment) {
        #[cfg(debug_assertions)]
        {
            let mut s = self.segments;
            while !s.is_null() && s != seg {
                // SAFETY: live list members.
                s = unsafe { (*s).next };
            }
            assert!(s == seg, "flistalloc: dropping a segment not in the list");
        }
        self.global.hot_seg = NO_HOT_SEGMENT;
        // SAFETY: contract; neighbours are live list members.
        unsafe {
            let s = &mut *seg;
            match s.prev.as_mut() {
                Some(p) => p.next = s.next,
                None => self.segments = s.next,
            }
            if let Some(n) = s.next.as_mut() {
                n.prev = s.prev;
            }
            Segment::destroy(NonNull::new_unchecked(seg));
        }
        self.segment_count -= 1;
    }

    /// Finds the pool of a chunk this core handed out; the flag says the
    /// segment is a normal one confirmed through the segment map (so it may
    /// become the hot segment).
    #[inline(always)]
    fn pool_of(&self, addr: usize) -> Result<(*mut Pool, bool), Error> {
        let base = addr & !(SEGMENT_SIZE - 1);
        if base == self.global.hot_seg {
            // The normal segment we freed into last: confirmed ours through
            // the map then, and `hot_seg` is reset when we drop it.
            // SAFETY: a live normal segment of ours, so its page map and
            // pools are ours to read.
            unsafe {
                let pool = pool_in(Segment::from_addr(base), 0, addr)?;
                if !(*pool).is_chunk_start(addr) {
                    return Err(Error::ForeignPointer { addr });
                }
                return Ok((pool, false));
            }
        }
        let entry = segment_map::lookup(addr);
        // One predicted branch for the common case (our tag, normal
        // segment), so the header address does not wait on the map load.
        if entry & (TAG_MASK | HUGE_FLAG) != self.tag {
            return self.pool_of_cold(entry, addr).map(|p| (p, false));
        }
        // SAFETY: the segment map says a live normal segment with our tag
        // covers `addr`.
        unsafe { self.pool_in_segment(Segment::from_addr(base), entry, addr) }.map(|p| (p, true))
    }

    #[cold]
    #[inline(never)]
    fn pool_of_cold(&self, entry: usize, addr: usize) -> Result<*mut Pool, Error> {
        if entry & TAG_MASK != self.tag {
            return Err(Error::ForeignPointer { addr });
        }
        // SAFETY: a live huge segment with our tag covers `addr`.
        unsafe { self.pool_in_segment(segment_of(entry, addr), entry, addr) }
    }

    /// # Safety
    /// `seg` is the live segment that `entry` describes, carrying our tag.
    #[inline(always)]
    unsafe fn pool_in_segment(
        &self,
        seg: *mut Segment,
        entry: usize,
        addr: usize,
    ) -> Result<*mut Pool, Error> {
        // SAFETY: the header of a live segment can be read; after the owner
        // check, it is ours.
        unsafe {
            if (*seg).owner.load(Ordering::Relaxed) != (self as *const Core).cast_mut().cast() {
                return Err(Error::ForeignPointer { addr });
            }
            let pool = pool_in(seg, entry, addr)?;
            if !(*pool).is_chunk_start(addr) {
                return Err(Error::ForeignPointer { addr });
            }
            Ok(pool)
        }
    }

    /// Takes back a chunk.
    ///
    /// # Safety
    /// If `ptr` is a chunk of this core, it is not in use any more.
    #[inline(always)]
    pub unsafe fn free(&mut self, ptr: *mut u8) -> Result<(), Error> {
        if ptr.is_null() {
            return Err(Error::NullPointer);
        }
        let addr = ptr as usize;
        let (pool, normal) = self.pool_of(addr)?;
        // SAFETY: a live pool of ours and one of its chunk starts (pool_of).
        unsafe { self.free_in_pool(pool, addr)? };
        if normal {
            self.global.hot_seg = addr & !(SEGMENT_SIZE - 1);
        }
        Ok(())
    }

    /// Puts chunk `addr` back on its pool's free list.
    ///
    /// # Safety
    /// `pool` is a live pool of this core; `addr` is a chunk start it carved,
    /// which the caller no longer uses.
    #[inline(always)]
    pub unsafe fn free_in_pool(&mut self, pool: *mut Pool, addr: usize) -> Result<(), Error> {
        // SAFETY: contract: we may write the link into the chunk, through a
        // pointer with the pool's own provenance.
        unsafe {
            let p = &mut *pool;
            let c = p.start.with_addr(addr).cast::<FreeChunk>();
            if c == p.free || p.used == 0 {
                return Err(Error::DoubleFree { addr });
            }
            (*c).next = p.free;
            p.free = c;
            p.used -= 1;
            if !p.in_avail {
                link_pool(self.slabs.add(p.slab as usize - self.lo), pool);
            }
            if p.used == 0 && self.global.shared && !p.in_empty {
                self.pool_emptied(pool);
            }
        }
        Ok(())
    }

    /// The slab size of a chunk this core handed out.
    pub fn chunk_size(&self, ptr: *const u8) -> Result<usize, Error> {
        let (pool, _) = self.pool_of(ptr as usize)?;
        // SAFETY: pool_of returns live pools of ours.
        Ok(unsafe { (*pool).chunk_size })
    }

    fn pools(&self) -> impl Iterator<Item = &Pool> {
        let mut seg = self.segments;
        core::iter::from_fn(move || {
            // SAFETY: the segment list holds live segments of ours.
            let s = unsafe { seg.as_ref()? };
            seg = s.next;
            Some(s.pools.iter().filter(|p| p.live))
        })
        .flatten()
    }

    pub fn info(&self) -> Info {
        Info {
            capacity: self.capacity,
            heap: self.heap,
            allocated: self.pools().map(|p| p.used as usize * p.chunk_size).sum(),
            overhead: self.segment_count * HEADER_BYTES + self.mapping_bytes,
        }
    }

    pub fn utilization(&self) -> Vec<SlabUse> {
        let mut out: Vec<SlabUse> = Vec::new();
        for p in self.pools() {
            let slab = p.chunk_size;
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
            out[i].in_use += p.used as usize;
            out[i].held += p.capacity as usize;
        }
        for u in &mut out {
            u.ratio = u.in_use as f64 / u.held as f64;
        }
        out
    }

    /// Returns empty pools (and segments left empty) to the OS; returns the
    /// drop in `heap`.
    pub fn trim(&mut self) -> usize {
        let before = self.heap;
        if self.global.shared {
            self.clear_empty_queue();
        }
        let mut seg = self.segments;
        while !seg.is_null() {
            // SAFETY: live segment of ours; we read `next` before a possible
            // destroy; pools we release are empty (used == 0).
            unsafe {
                let next = (*seg).next;
                for slot in 0..POOLS_PER_SEGMENT {
                    let p = Segment::pool_ptr(seg, slot);
                    if (*p).live {
                        (*p).collect_remote();
                        if (*p).used == 0 {
                            self.release_pool(seg, slot);
                        }
                    }
                }
                if (*seg).live_pools == 0 {
                    self.drop_segment(seg);
                }
                seg = next;
            }
        }
        before - self.heap
    }

    /// Returns the empty pool in `slot` of `seg` to the OS (the segment
    /// stays, even if now empty).
    ///
    /// # Safety
    /// `seg` is a live segment of ours; its pool in `slot` is live, empty,
    /// and not in the empty queue.
    pub unsafe fn release_pool(&mut self, seg: *mut Segment, slot: usize) {
        // SAFETY: contract.
        unsafe {
            let p = Segment::pool_ptr(seg, slot);
            debug_assert!((*p).live && (*p).used == 0 && !(*p).in_empty);
            let st = self.slabs.add((*p).slab as usize - self.lo);
            if (*p).in_avail {
                unlink(st, p);
            }
            (*st).held -= 1;
            let bytes = (*p).bytes();
            self.heap -= bytes;
            stats::pool_change(self.tag, -(bytes as isize), -1);
            if self.global.shared {
                crate::global::budget_give(bytes);
            }
            (*seg).release_pool(slot);
        }
    }
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

/// The pool whose pages hold `addr` (not yet checked to be a chunk start).
///
/// # Safety
/// `seg` is the live segment that `entry` (its map entry) describes, and its
/// page map is stable for `addr`: we own the segment, or hold a live chunk at
/// `addr` (a pool with a live chunk is never released).
#[inline(always)]
pub(crate) unsafe fn pool_in(
    seg: *mut Segment,
    entry: usize,
    addr: usize,
) -> Result<*mut Pool, Error> {
    // SAFETY: contract; fields read through the raw pointer.
    unsafe {
        let slot = if entry & HUGE_FLAG != 0 {
            0
        } else {
            (*seg).pool_at((addr - seg as usize) / PAGE)
        };
        if slot == NO_POOL {
            return Err(Error::ForeignPointer { addr });
        }
        Ok(Segment::pool_ptr(seg, slot as usize))
    }
}

/// Takes a chunk from a pool's free list or its fresh tail.
/// The flag is true for a chunk from the fresh tail (zero memory).
#[inline(always)]
fn take(p: &mut Pool) -> Option<(NonNull<u8>, bool)> {
    let c = p.free;
    if !c.is_null() {
        // SAFETY: free-list members are free chunks of this pool holding a link.
        p.free = unsafe { (*c).next };
        p.used += 1;
        return NonNull::new(c.cast()).map(|c| (c, false));
    }
    if p.fresh < p.end {
        let c = p.fresh;
        p.fresh = c.wrapping_add(p.chunk_size);
        p.used += 1;
        return NonNull::new(c).map(|c| (c, true));
    }
    None
}

/// Puts `p` at the head of its slab's list of pools with room. The list
/// stores raw pointers derived from the segment, never from references.
///
/// # Safety
/// `st` is the slab state of `p`'s slab; `p` is live and not in the list.
pub(crate) unsafe fn link_pool(st: *mut SlabState, p: *mut Pool) {
    // SAFETY: contract; the old head is a live pool of the same list.
    unsafe {
        let head = (*st).avail;
        (*p).next = head;
        (*p).prev = null_mut();
        if !head.is_null() {
            (*head).prev = p;
        }
        (*st).avail = p;
        (*p).in_avail = true;
    }
}

/// # Safety
/// `p` is in the list of `st`.
unsafe fn unlink(st: *mut SlabState, p: *mut Pool) {
    // SAFETY: contract; neighbours are live pools of the same list.
    unsafe {
        let (prev, next) = ((*p).prev, (*p).next);
        if prev.is_null() {
            (*st).avail = next;
        } else {
            (*prev).next = next;
        }
        if !next.is_null() {
            (*next).prev = prev;
        }
        (*p).next = null_mut();
        (*p).prev = null_mut();
        (*p).in_avail = false;
    }
}

/// A single-threaded heap with a hard capacity, released in one go: the flist
/// arena of the original design.
///
/// Memory is taken from the OS in pools, each holding chunks of one slab size
/// (see [`slabs`](crate::slabs)). Pools stay with the arena (empty ones are
/// reused) until it is dropped or [`release`](Arena::release)d;
/// [`trim`](Arena::trim) hands empty pools back earlier.
///
/// **Not thread safe**, as the design says: `Arena` is `Send` (move it to
/// another thread) but not `Sync`, because every method mutates free lists
/// through `&self` without locks. Use one arena per thread, or the global
/// allocator [`Flist`](crate) for shared use.
///
/// ```
/// use flistalloc::Arena;
/// let arena = Arena::new(1 << 20);
/// let p = arena.alloc(67);
/// assert_eq!(arena.chunk_size(p.as_ptr()), 72);
/// // SAFETY: p came from this arena and is not used afterwards.
/// unsafe { arena.free(p.as_ptr()) };
/// arena.release();
/// ```
pub struct Arena {
    core: NonNull<Core>,
    /// `&self` methods mutate through `core`: not `Sync`.
    _not_sync: PhantomData<Cell<()>>,
}

// SAFETY: the core and its segments belong to this Arena alone and hold no
// thread-affine state; moving the Arena moves sole access to them.
unsafe impl Send for Arena {}

impl Arena {
    /// An arena whose pools may take up to `capacity` bytes, serving every
    /// size from 0 to `capacity`.
    ///
    /// # Panics
    /// When `capacity > MAX_ARENA_SIZE` (1 TiB), or the OS refuses the few
    /// pages of bookkeeping.
    ///
    /// ```
    /// let arena = flistalloc::Arena::new(64 << 20);
    /// assert_eq!(arena.info().capacity, 64 << 20);
    /// ```
    pub fn new(capacity: usize) -> Arena {
        Self::try_new(capacity).unwrap_or_else(|e| panic!("flistalloc: {e}"))
    }

    /// [`Arena::new`], returning an error instead of panicking.
    ///
    /// ```
    /// use flistalloc::{Arena, Error, MAX_ARENA_SIZE};
    /// assert!(matches!(Arena::try_new(MAX_ARENA_SIZE + 1), Err(Error::CapacityTooLarge { .. })));
    /// ```
    pub fn try_new(capacity: usize) -> Result<Arena, Error> {
        Self::try_with_chunk_range(capacity, 0, capacity.min(MAX_ARENA_SIZE))
    }

    /// An arena that serves only requested sizes in `min..=max`; other sizes
    /// panic in [`alloc`](Arena::alloc) and are `Err` in
    /// [`try_alloc`](Arena::try_alloc).
    ///
    /// # Panics
    /// On `capacity` above 1 TiB, `min > max` or `max` above 1 TiB.
    ///
    /// ```
    /// let arena = flistalloc::Arena::with_chunk_range(1 << 20, 8, 512);
    /// assert!(arena.try_alloc(4).is_err());
    /// assert!(arena.try_alloc(600).is_err());
    /// let p = arena.alloc(500);
    /// # unsafe { arena.free(p.as_ptr()) };
    /// ```
    pub fn with_chunk_range(capacity: usize, min: usize, max: usize) -> Arena {
        Self::try_with_chunk_range(capacity, min, max).unwrap_or_else(|e| panic!("flistalloc: {e}"))
    }

    /// [`Arena::with_chunk_range`], returning an error instead of panicking.
    ///
    /// ```
    /// use flistalloc::{Arena, Error};
    /// assert_eq!(
    ///     Arena::try_with_chunk_range(1 << 20, 64, 8).err(),
    ///     Some(Error::InvalidChunkRange { min: 64, max: 8 })
    /// );
    /// ```
    pub fn try_with_chunk_range(capacity: usize, min: usize, max: usize) -> Result<Arena, Error> {
        Ok(Arena {
            core: Core::create(capacity, min, max, next_tag())?,
            _not_sync: PhantomData,
        })
    }

    #[inline(always)]
    #[allow(clippy::mut_from_ref)]
    fn core(&self) -> &mut Core {
        // SAFETY: the Arena is !Sync and no method re-enters another or keeps
        // the reference across a call out, so this is the only live reference.
        unsafe { &mut *self.core.as_ptr() }
    }

    /// A chunk of at least `size` bytes, aligned to 8 (to more if the slab
    /// size allows, see [`chunk_size`](Arena::chunk_size)). Size 0 gives a
    /// unique, freeable chunk.
    ///
    /// # Panics
    /// When `size` is outside the chunk range, the arena would go over its
    /// capacity, or the OS refuses memory.
    ///
    /// ```
    /// let arena = flistalloc::Arena::new(1 << 20);
    /// let p = arena.alloc(24);
    /// assert_eq!(p.as_ptr() as usize % 8, 0);
    /// # unsafe { arena.free(p.as_ptr()) };
    /// ```
    #[inline]
    pub fn alloc(&self, size: usize) -> NonNull<u8> {
        match self.core().alloc(size) {
            Ok(p) => p,
            Err(e) => fail(e),
        }
    }

    /// [`Arena::alloc`], returning an error instead of panicking.
    ///
    /// ```
    /// let arena = flistalloc::Arena::new(64 << 10);
    /// assert!(arena.try_alloc(1 << 20).is_err()); // above the range (= capacity)
    /// ```
    #[inline]
    pub fn try_alloc(&self, size: usize) -> Result<NonNull<u8>, Error> {
        self.core().alloc(size)
    }

    /// A chunk fitting `layout`: at least `layout.size()` bytes, aligned to
    /// `layout.align()` (at most the page, 4096).
    ///
    /// # Panics
    /// As [`alloc`](Arena::alloc), and on an alignment above 4096.
    ///
    /// ```
    /// use std::alloc::Layout;
    /// let arena = flistalloc::Arena::new(1 << 20);
    /// let p = arena.alloc_layout(Layout::from_size_align(100, 64).unwrap());
    /// assert_eq!(p.as_ptr() as usize % 64, 0);
    /// # unsafe { arena.free(p.as_ptr()) };
    /// ```
    #[inline]
    pub fn alloc_layout(&self, layout: Layout) -> NonNull<u8> {
        match self.core().alloc_layout(layout) {
            Ok((p, _)) => p,
            Err(e) => fail(e),
        }
    }

    /// [`Arena::alloc_layout`], returning an error instead of panicking.
    ///
    /// ```
    /// use std::alloc::Layout;
    /// let arena = flistalloc::Arena::new(1 << 20);
    /// let big_align = Layout::from_size_align(64, 8192).unwrap();
    /// assert!(arena.try_alloc_layout(big_align).is_err());
    /// ```
    #[inline]
    pub fn try_alloc_layout(&self, layout: Layout) -> Result<NonNull<u8>, Error> {
        self.core().alloc_layout(layout).map(|(p, _)| p)
    }

    /// Gives a chunk back to the arena.
    ///
    /// Detects and panics on: a null pointer; any pointer this arena did not
    /// hand out (another arena's or allocator's memory, the stack, the
    /// inside of a chunk), found from its address through the segment map and
    /// never by reading memory that is not ours; and, at the cost of one
    /// compare, a double free of the chunk freed last in its pool or of any
    /// chunk of a pool with no live chunk. Other double frees are not caught.
    ///
    /// # Safety
    /// Any pointer value may be passed: what is not this arena's is reported.
    /// The caller guarantees that a chunk of this arena that is passed is no
    /// longer used afterwards, and that it is not already free (only some
    /// double frees are caught, see above; an uncaught one corrupts the arena).
    ///
    /// # Panics
    /// On the misuse listed above.
    ///
    /// ```
    /// let arena = flistalloc::Arena::new(1 << 20);
    /// let p = arena.alloc(8);
    /// // SAFETY: p is ours and not used afterwards.
    /// unsafe { arena.free(p.as_ptr()) };
    /// ```
    #[inline]
    pub unsafe fn free(&self, ptr: *mut u8) {
        // SAFETY: forwarded caller contract.
        if let Err(e) = unsafe { self.core().free(ptr) } {
            fail(e)
        }
    }

    /// [`Arena::free`], returning the misuse as an error instead of
    /// panicking (the arena is unchanged then).
    ///
    /// # Safety
    /// As [`Arena::free`].
    ///
    /// ```
    /// let arena = flistalloc::Arena::new(1 << 20);
    /// let mut x = 5u64;
    /// // SAFETY: any pointer may be passed; a foreign one is reported.
    /// let err = unsafe { arena.try_free(&mut x as *mut u64 as *mut u8) };
    /// assert!(matches!(err, Err(flistalloc::Error::ForeignPointer { .. })));
    /// ```
    #[inline]
    pub unsafe fn try_free(&self, ptr: *mut u8) -> Result<(), Error> {
        // SAFETY: forwarded caller contract.
        unsafe { self.core().free(ptr) }
    }

    /// The size of the chunk at `ptr` (its slab), at least what was asked.
    ///
    /// # Panics
    /// When `ptr` is not a chunk this arena handed out.
    ///
    /// ```
    /// let arena = flistalloc::Arena::new(1 << 20);
    /// let p = arena.alloc(1000);
    /// assert_eq!(arena.chunk_size(p.as_ptr()), flistalloc::suitable_slab(1000));
    /// # unsafe { arena.free(p.as_ptr()) };
    /// ```
    pub fn chunk_size(&self, ptr: *const u8) -> usize {
        self.core().chunk_size(ptr).unwrap_or_else(|e| fail(e))
    }

    /// The slab sizes (same as [`flistalloc::slabs`](crate::slabs)).
    ///
    /// ```
    /// let arena = flistalloc::Arena::new(1 << 20);
    /// assert_eq!(arena.slabs(), flistalloc::slabs());
    /// ```
    pub fn slabs(&self) -> &'static [usize] {
        size_class::slabs()
    }

    /// Capacity, heap, allocated and overhead figures (see [`Info`]).
    ///
    /// ```
    /// let arena = flistalloc::Arena::new(1 << 20);
    /// assert_eq!(arena.info().heap, 0);
    /// ```
    pub fn info(&self) -> Info {
        self.core().info()
    }

    /// Per slab: chunks in use, chunks held, and their ratio; only slabs that
    /// hold pools, by increasing size.
    ///
    /// ```
    /// let arena = flistalloc::Arena::new(1 << 20);
    /// assert!(arena.utilization().is_empty());
    /// ```
    pub fn utilization(&self) -> Vec<SlabUse> {
        self.core().utilization()
    }

    /// Hands empty pools back to the OS (and segments left empty); returns
    /// the bytes given back, the drop in `info().heap`.
    ///
    /// ```
    /// let arena = flistalloc::Arena::new(1 << 20);
    /// let p = arena.alloc(64);
    /// unsafe { arena.free(p.as_ptr()) };
    /// assert_eq!(arena.trim(), 16384);
    /// assert_eq!(arena.info().heap, 0);
    /// ```
    pub fn trim(&self) -> usize {
        self.core().trim()
    }

    /// Returns all memory to the OS at once (the same as dropping the arena).
    /// Every chunk it handed out becomes invalid.
    ///
    /// ```
    /// let arena = flistalloc::Arena::new(1 << 20);
    /// let _p = arena.alloc(64);
    /// arena.release();
    /// ```
    pub fn release(self) {
        drop(self)
    }
}

impl Drop for Arena {
    fn drop(&mut self) {
        // SAFETY: the core is ours; after drop no chunk may be used (the
        // borrow checker ties collections using `&Arena` to its lifetime).
        unsafe { Core::destroy(self.core) }
    }
}

impl core::fmt::Debug for Arena {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Arena").field("info", &self.info()).finish()
    }
}

#[cold]
#[inline(never)]
#[track_caller]
fn fail(e: Error) -> ! {
    panic!("flistalloc: {e}")
}

mod allocator;

#[cfg(test)]
mod tests;
