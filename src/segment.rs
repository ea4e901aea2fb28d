//! Segments: 4 MiB-aligned regions from the OS that hold pools.
//!
//! The header sits in the first pages of the segment: owner, a page bitmap,
//! a page -> pool map and the pool headers. A chunk's pool is then found in
//! O(1): `segment = addr & !(SEGMENT_SIZE-1)`, `pool = pools[page_map[page]]`
//! (after the segment map has said the segment is ours). A pool too large for
//! a normal segment gets a *huge* segment of its own (several granules, one
//! pool in slot 0, no page map).
//!
//! A segment has one owner at a time, so its page bitmap and pool slots are
//! only touched by that owner: this is the unit the global allocator hands
//! between threads.

use crate::os;
use crate::pool::Pool;
use crate::segment_map::{self, HUGE_FLAG, SEGMENT_SIZE};
use crate::size_class::PAGE;
use core::ptr::{null_mut, NonNull};
use core::sync::atomic::{AtomicPtr, Ordering};

pub(crate) const PAGES_PER_SEGMENT: usize = SEGMENT_SIZE / PAGE;
/// Pool header slots per normal segment (pools are at least a page, usually
/// four or more, so this rarely binds).
pub(crate) const POOLS_PER_SEGMENT: usize = 256;
const BITMAP_WORDS: usize = PAGES_PER_SEGMENT / 64;
pub(crate) const NO_POOL: u16 = u16::MAX;

#[repr(C)]
pub(crate) struct Segment {
    /// Owner tag, as in the segment map.
    pub tag: usize,
    /// The owning core (an `Arena`'s or a thread heap's), checked after the
    /// tag. Null while a global segment is abandoned. Changes only under the
    /// global allocator's abandoned-list lock (to or from null).
    pub owner: AtomicPtr<()>,
    /// Bytes mapped for this segment.
    pub size: usize,
    pub huge: bool,
    /// Links in the owner's list of segments.
    pub next: *mut Segment,
    pub prev: *mut Segment,
    /// Pages not used by the header or a pool.
    pub free_pages: usize,
    pub live_pools: usize,
    used: [u64; BITMAP_WORDS],
    page_map: [u16; PAGES_PER_SEGMENT],
    pub pools: [Pool; POOLS_PER_SEGMENT],
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
        // the header; we write it before anyone can see the segment.
        unsafe {
            let s = seg.as_ptr();
            (*s).tag = tag;
            (*s).owner = AtomicPtr::new(owner);
            (*s).size = size;
            (*s).huge = huge;
            (*s).next = null_mut();
            (*s).prev = null_mut();
            (*s).free_pages = PAGES_PER_SEGMENT - HEADER_PAGES;
            (*s).live_pools = 0;
            (*s).page_map = [NO_POOL; PAGES_PER_SEGMENT];
            // Pool slots are all-zero, which is `Pool::EMPTY`.
            for p in 0..HEADER_PAGES {
                (*s).used[p / 64] |= 1 << (p % 64);
            }
        }
        crate::stats::segment_mapped(tag, size as isize);
        let entry = base.as_ptr().expose_provenance() | tag | if huge { HUGE_FLAG } else { 0 };
        if !segment_map::insert(base.as_ptr() as usize, size, entry) {
            // SAFETY: the mapping was made above and never published.
            unsafe { os::unmap(base, size, SEGMENT_SIZE) };
            return None;
        }
        Some(seg)
    }

    /// Unregisters and unmaps the segment.
    ///
    /// # Safety
    /// `seg` is a live segment no one will touch again.
    pub unsafe fn destroy(seg: NonNull<Segment>) {
        // SAFETY: live segment (contract).
        let (size, tag) = unsafe { ((*seg.as_ptr()).size, (*seg.as_ptr()).tag) };
        crate::stats::segment_mapped(tag, -(size as isize));
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
        // SAFETY: in bounds of the live header (contract).
        unsafe { core::ptr::addr_of_mut!((*seg).pools[slot]) }
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
        self.pools.iter().position(|p| !p.live)
    }

    /// Claims pages `first..first+n` for the pool in `slot`.
    pub fn claim(&mut self, slot: usize, first: usize, n: usize) {
        for page in first..first + n {
            self.used[page / 64] |= 1 << (page % 64);
            self.page_map[page] = slot as u16;
        }
        self.free_pages -= n;
        self.live_pools += 1;
    }

    /// Gives the pages of the pool in `slot` back to the segment and the OS.
    pub fn release_pool(&mut self, slot: usize) {
        let pool = &mut self.pools[slot];
        let (first, n) = (pool.first_page as usize, pool.pages);
        let start = pool.start;
        *pool = Pool::EMPTY;
        self.live_pools -= 1;
        if self.huge {
            return;
        }
        for page in first..first + n {
            self.used[page / 64] &= !(1 << (page % 64));
            self.page_map[page] = NO_POOL;
        }
        self.free_pages += n;
        // SAFETY: the pool's pages lie inside this live segment and hold no
        // live chunk (the caller releases only empty pools).
        unsafe { os::decommit(NonNull::new_unchecked(start), n * PAGE) };
    }

    /// The owner, as seen by anyone holding a live chunk of this segment.
    #[inline(always)]
    pub fn owner(&self) -> *mut () {
        self.owner.load(Ordering::Acquire)
    }

    /// The pool slot covering page `page` of a normal segment.
    #[inline(always)]
    pub fn pool_at(&self, page: usize) -> u16 {
        self.page_map[page]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
            assert_eq!(s.find_pages(2).unwrap(), first + 4);
            s.release_pool(0);
            assert_eq!(s.pool_at(first), NO_POOL);
            assert_eq!(s.find_pages(4).unwrap(), first);
            Segment::destroy(seg);
        }
    }
}
