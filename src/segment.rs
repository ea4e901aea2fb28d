//! Segments: 4 MiB-aligned regions from the OS that hold pools.
//!
//! The header sits in the first pages of the segment: owner, a page bitmap,
//! a page -> pool map and the pool headers. A chunk's pool is then found in
//! O(1): `segment = addr & !(SEGMENT_SIZE-1)`, `pool = segment +
//! page_map[page]` (the map holds header offsets; after the segment map has
//! said the segment is ours). A pool too large for
//! a normal segment gets a *huge* segment of its own (several granules, one
//! pool in slot 0, no page map).
//!
//! A segment has one owner at a time, so its page bitmap and pool slots are
//! only touched by that owner: this is the unit the global allocator hands
//! between threads.

use crate::list::{Adapter, Link};
use crate::os;
use crate::pool::Pool;
use crate::segment_map::{self, HUGE_FLAG, SEGMENT_SIZE};
use crate::size_class::PAGE;
use crate::sync::{AtomicPtr, Ordering};
use core::ptr::NonNull;

pub(crate) const PAGES_PER_SEGMENT: usize = SEGMENT_SIZE / PAGE;
/// Pool header slots per normal segment (pools are at least a page, usually
/// four or more, so this rarely binds).
pub(crate) const POOLS_PER_SEGMENT: usize = 256;
const BITMAP_WORDS: usize = PAGES_PER_SEGMENT / 64;
/// What [`Segment::pool_at`] says for a page of no pool (tests).
#[cfg(all(test, not(loom)))]
pub(crate) const NO_POOL: u16 = u16::MAX;
/// Byte offset of the first pool header slot from the segment's base.
const POOLS_OFFSET: usize = core::mem::offset_of!(Segment, pools);
/// Byte offset of the `none` slot: what the page map holds for a page of no
/// pool.
const NONE_OFFSET: u16 = core::mem::offset_of!(Segment, none) as u16;
const _: () = assert!(
    core::mem::offset_of!(Segment, none) + core::mem::size_of::<Pool>() <= u16::MAX as usize
);

#[repr(C)]
pub(crate) struct Segment {
    /// Owner tag, as in the segment map. Fixed for the segment's life.
    tag: usize,
    /// The owning core (an `Arena`'s or a thread heap's), checked after the
    /// tag. Null while a global segment is abandoned. Changes only under the
    /// global allocator's abandoned-list lock (to or from null), through
    /// [`Segment::set_owner`], which keeps the segment map's owner word in
    /// step (the word's invariant: it names a core only while that core owns
    /// the segment). The authority for every thread but the owner's.
    owner: AtomicPtr<()>,
    /// Bytes mapped for this segment. Fixed.
    size: usize,
    /// One pool in slot 0 spanning several granules, no page map. Fixed.
    huge: bool,
    /// Pages not used by the header or a pool (owner only).
    free_pages: usize,
    /// Live pool slots (owner only).
    live_pools: usize,
    /// Link in the owner's list of segments.
    pub(crate) owned: Link<Segment>,
    /// Link in the global list of abandoned segments (under its lock).
    pub(crate) abandoned: Link<Segment>,
    /// Page bitmap: bit set = page used by the header or a pool (owner
    /// only).
    used: [u64; BITMAP_WORDS],
    /// Purged pages: bit set = a page of a live pool given back to the OS
    /// while the pool lives (`Core::purge_sparse`). Invariant: every chunk
    /// overlapping a set page is free, below its pool's `fresh`, and on
    /// none of the pool's lists (not on `free`, not on `remote`, not handed
    /// out); bits are set only for pages of live pools and cleared when the
    /// pool is released or re-cut (owner only).
    purged: [u64; BITMAP_WORDS],
    /// Per page, the byte offset from the segment's base of the header slot
    /// of the pool it belongs to, or of `none` (so a free finds a header by
    /// one load and an add, with no test for "no pool": see `none`).
    /// Invariant: not `none`'s iff page `p` is a pool's, and then a live
    /// slot whose page range holds `p` (owner only).
    page_map: [u16; PAGES_PER_SEGMENT],
    pools: [Pool; POOLS_PER_SEGMENT],
    /// The header the page map names for a page of no pool: an all-zero
    /// slot, never live and never written (its `fresh` is null, so no
    /// address is a chunk start of it, and its span is 0).
    none: Pool,
}

/// Adapter for a core's list of the segments it owns.
pub(crate) struct OwnedList;
// SAFETY: returns the `owned` field, derived from the raw pointer.
unsafe impl Adapter for OwnedList {
    type Node = Segment;
    unsafe fn link(node: *mut Segment) -> *mut Link<Segment> {
        // SAFETY: `node` is a live segment header (trait contract).
        unsafe { core::ptr::addr_of_mut!((*node).owned) }
    }
}

/// Adapter for the global list of abandoned segments.
pub(crate) struct AbandonedList;
// SAFETY: returns the `abandoned` field, derived from the raw pointer.
unsafe impl Adapter for AbandonedList {
    type Node = Segment;
    unsafe fn link(node: *mut Segment) -> *mut Link<Segment> {
        // SAFETY: `node` is a live segment header (trait contract).
        unsafe { core::ptr::addr_of_mut!((*node).abandoned) }
    }
}

/// Pages the header takes at the start of every segment.
pub(crate) const HEADER_PAGES: usize = core::mem::size_of::<Segment>().div_ceil(PAGE);
pub(crate) const HEADER_BYTES: usize = HEADER_PAGES * PAGE;
/// The largest pool that fits a normal segment.
pub(crate) const MAX_NORMAL_POOL: usize = SEGMENT_SIZE - HEADER_BYTES;

impl Segment {
    /// Maps a segment of `size` bytes (a multiple of `SEGMENT_SIZE`), writes
    /// its header and registers it in the segment map under `tag`.
    pub fn create(size: usize, huge: bool, tag: usize, owner: *mut ()) -> Option<NonNull<Segment>> {
        let base = os::map_aligned(size, SEGMENT_SIZE)?;
        let seg = base.cast::<Segment>();
        // SAFETY: the mapping is fresh, zeroed, large enough and aligned for
        // the header, and no one else can see it yet.
        unsafe { Segment::write_header(seg.as_ptr(), size, huge, tag, owner) };
        let entry = base.as_ptr().expose_provenance() | tag | if huge { HUGE_FLAG } else { 0 };
        let word = segment_map::owner_word_of(owner, huge);
        if !segment_map::insert(base.as_ptr() as usize, size, entry, word) {
            // SAFETY: the mapping was made above and never published.
            unsafe { os::unmap(base, size, SEGMENT_SIZE) };
            return None;
        }
        Some(seg)
    }

    /// Writes the header of a fresh segment of `size` bytes at `s`, owned by
    /// `owner`: what [`create`](Segment::create) does to a new mapping, and
    /// the loom models to a zeroed allocation of their own.
    ///
    /// # Safety
    /// `s` is aligned and valid for writes of a `Segment`, its bytes are all
    /// zero, and no other thread can see it yet.
    pub(crate) unsafe fn write_header(
        s: *mut Segment,
        size: usize,
        huge: bool,
        tag: usize,
        owner: *mut (),
    ) {
        // SAFETY: contract; every write goes through the raw pointer, and
        // the atomic is written without reading (or dropping) the zeroes
        // it replaces.
        unsafe {
            (*s).tag = tag;
            core::ptr::addr_of_mut!((*s).owner).write(AtomicPtr::new(owner));
            (*s).size = size;
            (*s).huge = huge;
            (*s).owned = Link::NEW;
            (*s).abandoned = Link::NEW;
            (*s).free_pages = PAGES_PER_SEGMENT - HEADER_PAGES;
            (*s).live_pools = 0;
            (*s).page_map = [NONE_OFFSET; PAGES_PER_SEGMENT];
            // Pool slots are all-zero, which is an empty slot; loom's atomics
            // must be built, so under loom each slot is written.
            #[cfg(loom)]
            for slot in 0..POOLS_PER_SEGMENT {
                Segment::pool_ptr(s, slot).write(Pool::empty());
            }
            #[cfg(loom)]
            core::ptr::addr_of_mut!((*s).none).write(Pool::empty());
            for p in 0..HEADER_PAGES {
                (*s).used[p / 64] |= 1 << (p % 64);
            }
        }
    }

    /// Unregisters and unmaps the segment.
    ///
    /// # Safety
    /// `seg` is a live segment no one will touch again.
    pub unsafe fn destroy(seg: NonNull<Segment>) {
        // SAFETY: live segment (contract).
        let size = unsafe { (*seg.as_ptr()).size };
        segment_map::remove(seg.as_ptr() as usize, size);
        // SAFETY: the whole mapping made by `create`, now unreachable.
        unsafe { os::unmap(seg.cast(), size, SEGMENT_SIZE) };
    }

    /// The segment's first byte. Pointers to chunks are derived from the raw
    /// segment pointer, never from a reference to the header, so they keep
    /// the mapping's provenance.
    pub fn base(seg: *mut Segment) -> *mut u8 {
        seg.cast()
    }

    /// The header slot of pool `slot`, derived without a reference.
    ///
    /// # Safety
    /// `seg` is a live segment; `slot < POOLS_PER_SEGMENT`.
    pub unsafe fn pool_ptr(seg: *mut Segment, slot: usize) -> *mut Pool {
        debug_assert!(slot < POOLS_PER_SEGMENT);
        // SAFETY: in bounds of the live header's pool array (contract); no
        // bounds check, since callers pass slots from the page map or loops
        // below POOLS_PER_SEGMENT.
        unsafe {
            core::ptr::addr_of_mut!((*seg).pools)
                .cast::<Pool>()
                .add(slot)
        }
    }

    /// The header of the segment at `base`, as recorded in the segment map.
    /// Its provenance is the one `create` exposed, so the header can be read
    /// whatever pointer led here (a user's pointer may only cover its chunk).
    #[inline(always)]
    pub fn from_addr(base: usize) -> *mut Segment {
        core::ptr::with_exposed_provenance_mut(base)
    }

    /// Finds `n` contiguous free pages; returns the first page index.
    pub fn find_pages(&self, n: usize) -> Option<usize> {
        if n > self.free_pages {
            return None;
        }
        let mut run = 0;
        for page in HEADER_PAGES..PAGES_PER_SEGMENT {
            if self.used[page / 64] & (1 << (page % 64)) == 0 {
                run += 1;
                if run == n {
                    return Some(page + 1 - n);
                }
            } else {
                run = 0;
            }
        }
        None
    }

    pub fn free_slot(&self) -> Option<usize> {
        if self.live_pools == POOLS_PER_SEGMENT {
            return None;
        }
        self.pools.iter().position(|p| !p.is_live())
    }

    /// Claims pages `first..first+n` for the pool in `slot`.
    pub fn claim(&mut self, slot: usize, first: usize, n: usize) {
        for page in first..first + n {
            self.used[page / 64] |= 1 << (page % 64);
            self.page_map[page] = (POOLS_OFFSET + slot * core::mem::size_of::<Pool>()) as u16;
        }
        self.free_pages -= n;
        self.live_pools += 1;
    }

    /// Gives the pages of the pool in `slot` back to the segment and the OS
    /// (decommitted: they read as zero afterwards) and frees the slot.
    ///
    /// # Safety
    /// The pool in `slot` is live, holds no live chunk, its remote word is 0
    /// (no chunk on its remote stack, not queued), is on no list, and
    /// nothing uses its memory any more.
    pub unsafe fn release_pool(&mut self, slot: usize) {
        let pool = &mut self.pools[slot];
        debug_assert!(pool.is_live() && pool.used() == 0 && !pool.remote_in_use());
        debug_assert!(!pool.avail.is_linked() && !pool.empty.is_linked());
        let (first, n) = pool.page_range();
        let start = pool.start();
        *pool = Pool::empty();
        self.live_pools -= 1;
        if self.huge {
            return;
        }
        for page in first..first + n {
            self.used[page / 64] &= !(1 << (page % 64));
            self.purged[page / 64] &= !(1 << (page % 64));
            self.page_map[page] = NONE_OFFSET;
        }
        self.free_pages += n;
        // SAFETY: the pool's pages lie inside this live segment and hold no
        // data anyone needs (contract); `start` is page-aligned.
        unsafe { os::decommit(NonNull::new_unchecked(start), n * PAGE) };
    }

    /// The live pool slots of this normal segment, in page order, found
    /// through the page map (2 KiB) rather than the 256 pool headers: a
    /// segment of a few large pools costs a few steps.
    pub fn live_slots(&self) -> impl Iterator<Item = usize> + '_ {
        debug_assert!(!self.huge);
        let mut page = HEADER_PAGES;
        core::iter::from_fn(move || {
            while page < PAGES_PER_SEGMENT {
                let off = self.page_map[page];
                if off == NONE_OFFSET {
                    page += 1;
                    continue;
                }
                // A slot's offset (the map's invariant): back to its index.
                let slot = (off as usize - POOLS_OFFSET) / core::mem::size_of::<Pool>();
                let (first, n) = self.pools[slot].page_range();
                page = first + n.max(1);
                return Some(slot);
            }
            None
        })
    }

    /// The purged bits of pages `first..first + n` (`n <= 64`), bit `i`
    /// for page `first + i`: see the `purged` field.
    pub fn purged_mask(&self, first: usize, n: usize) -> u64 {
        debug_assert!(n <= 64 && first + n <= PAGES_PER_SEGMENT);
        if n == 0 {
            return 0;
        }
        let (w, b) = (first / 64, first % 64);
        let mut mask = self.purged[w] >> b;
        if b > 0 && w + 1 < BITMAP_WORDS {
            mask |= self.purged[w + 1] << (64 - b);
        }
        if n < 64 {
            mask &= (1u64 << n) - 1;
        }
        mask
    }

    /// Sets (`on`) or clears the purged bits of the pages `first + i` for
    /// each bit `i` of `mask` (the caller keeps the field's invariant).
    pub fn mark_purged(&mut self, first: usize, mask: u64, on: bool) {
        let mut m = mask;
        while m != 0 {
            let page = first + m.trailing_zeros() as usize;
            m &= m - 1;
            if on {
                self.purged[page / 64] |= 1 << (page % 64);
            } else {
                self.purged[page / 64] &= !(1 << (page % 64));
            }
        }
    }

    /// Bytes mapped for this segment.
    pub fn size(&self) -> usize {
        self.size
    }

    /// Whether this is a huge segment (one pool, no page map).
    pub fn is_huge(&self) -> bool {
        self.huge
    }

    /// Live pool slots.
    pub fn live_pools(&self) -> usize {
        self.live_pools
    }

    /// Takes slot 0 of a fresh huge segment for its one pool.
    pub fn claim_huge(&mut self) {
        debug_assert!(self.huge && self.live_pools == 0);
        self.live_pools = 1;
        self.free_pages = 0;
    }

    /// The owner, as seen by anyone holding a live chunk of this segment.
    #[inline(always)]
    pub fn owner(&self) -> *mut () {
        self.owner.load(Ordering::Acquire)
    }

    /// The owner, read without ordering: exact for a thread whose own core
    /// is, or might be, the owner (only that thread, or one holding the core,
    /// makes a segment its own or gives it up).
    #[inline(always)]
    pub fn owner_relaxed(&self) -> *mut () {
        self.owner.load(Ordering::Relaxed)
    }

    /// Makes `owner` (null: no one) the owner of `seg`, in the header
    /// (`Release`) and in the segment map's owner word of each of its
    /// granules (a segment the map does not hold, as the loom models' are,
    /// has no word to set). The map's word is written first: between the
    /// two writes only the thread making the change, or one holding the
    /// core it names, acts on either.
    ///
    /// # Safety
    /// `seg` is a live segment; the caller holds the global allocator's
    /// abandoned-list lock (the invariant on `owner`), and is the old owner's
    /// thread (or holds that idle or dead core) when the old owner is not
    /// null, and the new owner's when the new owner is not null.
    pub unsafe fn set_owner(seg: *mut Segment, owner: *mut ()) {
        // SAFETY: `seg` is live (contract), so its header is mapped; `size`
        // and `huge` are fixed for its life; the caller holds the
        // abandoned-list lock, so no other thread writes `owner` or the
        // map's owner words of this segment meanwhile.
        unsafe {
            let word = segment_map::owner_word_of(owner, (*seg).huge);
            segment_map::set_owner(seg as usize, (*seg).size, word);
            (*seg).owner.store(owner, Ordering::Release);
        }
    }

    /// The pool slot covering page `page` of a normal segment, or
    /// `NO_POOL` (tests; the allocator asks [`Segment::pool_in_page`]).
    #[cfg(all(test, not(loom)))]
    pub fn pool_at(&self, page: usize) -> u16 {
        let off = self.page_map[page];
        if off == NONE_OFFSET {
            NO_POOL
        } else {
            ((off as usize - POOLS_OFFSET) / core::mem::size_of::<Pool>()) as u16
        }
    }

    /// The header of the pool covering page `page` of a normal segment, or
    /// the never-live `none` slot (whose `fresh` is null and span 0, so no
    /// address is a chunk start of it): one load and an add.
    ///
    /// # Safety
    /// `seg` is a live normal segment; `page < PAGES_PER_SEGMENT`.
    #[inline(always)]
    pub unsafe fn pool_in_page(seg: *mut Segment, page: usize) -> *mut Pool {
        // SAFETY: in bounds of the live header's page map (contract); the
        // entry is the offset of a slot of the header (the map's
        // invariant), derived from the raw segment pointer.
        unsafe {
            let off = *core::ptr::addr_of!((*seg).page_map).cast::<u16>().add(page);
            seg.cast::<u8>().add(off as usize).cast::<Pool>()
        }
    }
}

// Not under loom: segments made here would build loom atomics outside a
// model.
#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use core::ptr::null_mut;

    #[test]
    fn header_is_small() {
        // Under 1% of a segment.
        const { assert!(HEADER_PAGES * 100 <= PAGES_PER_SEGMENT) };
    }

    #[test]
    fn pages_are_claimed_and_released() {
        let seg = Segment::create(SEGMENT_SIZE, false, 5, null_mut()).unwrap();
        // SAFETY: a live segment owned by this test.
        unsafe {
            let s = &mut *seg.as_ptr();
            assert_eq!(
                segment_map::lookup(seg.as_ptr() as usize + 100) & 0x1f_ffff,
                5
            );
            let first = s.find_pages(4).unwrap();
            assert_eq!(first, HEADER_PAGES);
            s.claim(0, first, 4);
            s.pools[0].init(
                Segment::base(seg.as_ptr()).add(first * PAGE),
                4 * PAGE,
                64,
                7,
                first as u32,
            );
            assert_eq!(s.pool_at(first + 3), 0);
            let seg_ptr: *mut Segment = &raw mut *s;
            assert_eq!(
                Segment::pool_in_page(seg_ptr, first + 3),
                Segment::pool_ptr(seg_ptr, 0)
            );
            // A page of no pool names the `none` slot: never live, and no
            // address is a chunk start of it.
            let none = Segment::pool_in_page(seg_ptr, first + 4);
            assert_eq!(none, core::ptr::addr_of_mut!((*seg_ptr).none));
            assert!(!(*none).is_live());
            let addr = seg_ptr as usize + (first + 4) * PAGE;
            assert!(!(*none).is_chunk_start_in_pages(addr));
            assert!(!(*none).is_chunk_start_remote(addr));
            assert_eq!(s.find_pages(2).unwrap(), first + 4);
            s.release_pool(0);
            assert_eq!(s.pool_at(first), NO_POOL);
            assert_eq!(Segment::pool_in_page(seg_ptr, first), none);
            assert_eq!(s.find_pages(4).unwrap(), first);
            Segment::destroy(seg);
        }
    }
}
