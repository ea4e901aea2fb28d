//! Large blocks of the C library (`libflistalloc.so`): requests above the
//! largest slab, or aligned above the page, each in a mapping of its own
//! that the segment map records under [`LARGE_TAG`], so that `free`,
//! `realloc` and `malloc_usable_size` know them by address (the Rust
//! [`Flist`](crate::Flist) sends such requests to jemalloc instead, whose
//! pointers cannot be told from glibc's).
//!
//! A mapping is a whole number of 4 MiB segment granules (so no foreign
//! mapping shares a granule the map calls ours), aligned to the granule or to
//! the block's alignment if larger, mapped `MAP_NORESERVE`: the part past
//! the block is address space only, never touched. A [`Large`] header sits
//! at the mapping's base; the block starts `max(64, align)` bytes in. The
//! block's usable size runs to the end of its last page, and a `realloc`
//! that stays within the mapping is done in place.
//!
//! This layer only maps, describes and unmaps; the budget, the statistics
//! and the cache of free mappings are the global allocator's (`global/clib.rs`).

use crate::os;
use crate::segment_map::{self, LARGE_TAG, SEGMENT_SIZE};
use crate::size_class::PAGE;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicUsize, Ordering};

/// Header at the base of a large block's mapping.
#[repr(C)]
pub(crate) struct Large {
    /// [`LIVE`] while the block is handed out, [`FREE`] while the mapping
    /// waits in the cache.
    state: AtomicUsize,
    /// Bytes mapped, a multiple of `SEGMENT_SIZE`. Fixed.
    map_bytes: usize,
    /// The alignment of the mapping's base (at least `SEGMENT_SIZE`). Fixed.
    map_align: usize,
    /// The block's offset from the base: `max(HEADER, align)`. Changed only
    /// by the thread that takes the mapping from the cache.
    offset: usize,
    /// Bytes from the block's start to the end of its last page. Invariant:
    /// `offset + usable` is a page multiple at most `map_bytes`. Changed only
    /// by the block's holder (`resize`) or the taker from the cache.
    usable: usize,
    /// The largest `offset + usable` since the mapping was made: the pages
    /// that may be dirty (resident). Changed as `usable`.
    touched: usize,
}

/// Bytes kept for the header before an (at most 64-byte aligned) block.
const HEADER: usize = 64;
const LIVE: usize = 0x4c49_5645;
const FREE: usize = 0x4652_4545;

/// What the segment map's entry of a large block says about an address.
pub(crate) enum Found {
    /// The start of a live block.
    Block(*mut Large),
    /// Inside a large mapping, but not the start of a live block.
    Inside,
}

/// Offset of the block, page-rounded end of the block, bytes to map and
/// alignment of the mapping for `size` bytes aligned to `align` (a power of
/// two); `None` when that does not fit the address space.
fn geometry(size: usize, align: usize) -> Option<(usize, usize, usize, usize)> {
    let offset = align.max(HEADER);
    let end = offset.checked_add(size)?.checked_add(PAGE - 1)? & !(PAGE - 1);
    let map_bytes = end.checked_add(SEGMENT_SIZE - 1)? & !(SEGMENT_SIZE - 1);
    if map_bytes > isize::MAX as usize {
        return None;
    }
    Some((offset, end, map_bytes, align.max(SEGMENT_SIZE)))
}

/// The bytes a new block of `size` bytes aligned to `align` counts (its
/// offset plus usable size: the pages it spans), and the bytes its mapping
/// takes; `None` when it cannot be made.
pub(crate) fn needs(size: usize, align: usize) -> Option<(usize, usize)> {
    geometry(size, align).map(|(_, end, map_bytes, _)| (end, map_bytes))
}

/// Maps a new block of `size` bytes aligned to `align` (a power of two) and
/// records it in the segment map; `None` when the OS refuses.
pub(crate) fn map(size: usize, align: usize) -> Option<NonNull<Large>> {
    let (offset, end, map_bytes, map_align) = geometry(size, align)?;
    let base = os::map_aligned(map_bytes, map_align)?;
    let h = base.cast::<Large>();
    // SAFETY: a fresh, zeroed, page-aligned mapping nobody else sees yet,
    // large enough for the header.
    unsafe {
        h.as_ptr().write(Large {
            state: AtomicUsize::new(LIVE),
            map_bytes,
            map_align,
            offset,
            usable: end - offset,
            touched: end,
        })
    };
    let entry = base.as_ptr().expose_provenance() | LARGE_TAG;
    if !segment_map::insert(base.as_ptr() as usize, map_bytes, entry, 0) {
        // SAFETY: the mapping made above, never published.
        unsafe { os::unmap(base, map_bytes, map_align) };
        return None;
    }
    Some(h)
}

/// Reads the segment-map entry `entry` (tagged [`LARGE_TAG`]) of `addr`.
///
/// # Safety
/// `entry` is the current map entry of `addr`, so its mapping is live (it is
/// unmapped only after its entries are cleared, by the thread freeing it or
/// emptying the cache: a caller that holds the block, or passes a pointer
/// that is no block, is safe unless it races such a free).
pub(crate) unsafe fn find(entry: usize, addr: usize) -> Found {
    let h: *mut Large = core::ptr::with_exposed_provenance_mut(entry & !(SEGMENT_SIZE - 1));
    // SAFETY: the header of a live mapping (contract).
    unsafe {
        if (*h).state.load(Ordering::Acquire) == LIVE && addr == h as usize + (*h).offset {
            Found::Block(h)
        } else {
            Found::Inside
        }
    }
}

/// The block's first byte.
///
/// # Safety
/// `h` is a live block's header.
pub(crate) unsafe fn ptr(h: *mut Large) -> *mut u8 {
    // SAFETY: the offset lies inside the mapping (contract, invariant);
    // derived from the header pointer, which carries the mapping's
    // provenance.
    unsafe { h.cast::<u8>().add((*h).offset) }
}

/// The block's usable size in bytes.
///
/// # Safety
/// `h` is the header of a block the caller holds.
pub(crate) unsafe fn usable(h: *mut Large) -> usize {
    // SAFETY: the caller holds the block, so its mapping (and the header at
    // its base) stays mapped, and `usable` changes only by the holder
    // (`Large::usable`'s invariant): a plain read does not race.
    unsafe { (*h).usable }
}

/// The bytes the block counts: its offset plus its usable size.
///
/// # Safety
/// As [`usable`].
pub(crate) unsafe fn counted(h: *mut Large) -> usize {
    // SAFETY: as in `usable`: the held block's header is mapped, and
    // `offset` and `usable` change only by the holder or the cache's taker.
    unsafe { (*h).offset + (*h).usable }
}

/// The bytes of the block's mapping.
///
/// # Safety
/// `h` is a live mapping's header.
pub(crate) unsafe fn map_bytes(h: *mut Large) -> usize {
    // SAFETY: contract; the field is fixed.
    unsafe { (*h).map_bytes }
}

/// The pages of the mapping that may be resident.
///
/// # Safety
/// `h` is the header of a block the caller holds, or of a cached mapping
/// the caller took.
pub(crate) unsafe fn touched(h: *mut Large) -> usize {
    // SAFETY: the caller holds the block or took the mapping from the
    // cache, so the header is mapped and `touched` changes only by that
    // caller (`Large::touched`).
    unsafe { (*h).touched }
}

/// The new counted bytes if the block can hold `size` bytes in place.
///
/// # Safety
/// `h` is the header of a block the caller holds.
pub(crate) unsafe fn fits(h: *mut Large, size: usize) -> Option<usize> {
    // SAFETY: the held block's header is mapped; `offset` changes only by
    // the cache's taker and `map_bytes` never, so neither races.
    let (offset, map) = unsafe { ((*h).offset, (*h).map_bytes) };
    let end = offset.checked_add(size)?.checked_add(PAGE - 1)? & !(PAGE - 1);
    (end <= map).then_some(end)
}

/// Makes the block hold `size` bytes in place (after [`fits`] said yes);
/// on a shrink by whole pages, gives those pages back to the OS (they may
/// change `errno`).
///
/// # Safety
/// `h` is the header of a block the caller holds; `fits(h, size)` is `Some`.
pub(crate) unsafe fn resize(h: *mut Large, size: usize) {
    // SAFETY: contract: the block is the caller's, and so is its header;
    // the pages past the new end lie in the mapping and hold no data the
    // block still keeps.
    unsafe {
        let old_end = (*h).offset + (*h).usable;
        let end = ((*h).offset + size + PAGE - 1) & !(PAGE - 1);
        (*h).usable = end - (*h).offset;
        if end > (*h).touched {
            (*h).touched = end;
        }
        if end < old_end {
            let base = h.cast::<u8>();
            os::decommit(NonNull::new_unchecked(base.add(end)), old_end - end);
        }
    }
}

/// Marks a block free (its mapping goes to the cache or is unmapped next);
/// false when it was not live (a double free).
///
/// # Safety
/// `h` is a live mapping's header.
pub(crate) unsafe fn release(h: *mut Large) -> bool {
    // SAFETY: a live mapping's header is mapped; `state` is atomic, so a
    // racing second free is ordered by the swap (one of them sees LIVE).
    unsafe { (*h).state.swap(FREE, Ordering::AcqRel) == LIVE }
}

/// Whether a cached (free) mapping can hold `size` bytes aligned to `align`
/// in the same number of granules as a fresh one would take.
///
/// # Safety
/// `h` is a cached mapping's header.
pub(crate) unsafe fn suits(h: *mut Large, size: usize, align: usize) -> bool {
    match geometry(size, align) {
        // SAFETY: contract; the fields read are fixed.
        Some((_, _, map_bytes, _)) => unsafe {
            (*h).map_bytes == map_bytes && (*h).map_align >= align
        },
        None => false,
    }
}

/// Makes a cached mapping a live block of `size` bytes aligned to `align`
/// (after [`suits`] said yes). Its pages hold old data: the caller zeroes
/// what must be zero.
///
/// # Safety
/// `h` is a cached mapping's header that the caller took off the cache;
/// `suits(h, size, align)`.
pub(crate) unsafe fn reuse(h: *mut Large, size: usize, align: usize) {
    let Some((offset, end, _, _)) = geometry(size, align) else {
        return;
    };
    // SAFETY: contract: the mapping is the caller's alone.
    unsafe {
        (*h).offset = offset;
        (*h).usable = end - offset;
        if end > (*h).touched {
            (*h).touched = end;
        }
        (*h).state.store(LIVE, Ordering::Release);
    }
}

/// Gives the pages of a free mapping back to the OS (`MADV_DONTNEED`), all
/// but the first, which holds the header: a cached mapping then holds
/// address space, not memory. Its pages read as zero when touched again.
/// This may change `errno`.
///
/// # Safety
/// `h` is a free mapping's header (released, not yet reused) that only the
/// caller holds: no block lives in it.
pub(crate) unsafe fn decommit(h: *mut Large) {
    // SAFETY: contract: the mapping is the caller's alone and holds no live
    // block, so every page past the header's is dead; `touched` is a page
    // multiple within the mapping (its invariant).
    unsafe {
        let touched = (*h).touched;
        if touched > PAGE {
            let from = NonNull::new_unchecked(h.cast::<u8>().add(PAGE));
            os::decommit(from, touched - PAGE);
            (*h).touched = PAGE;
        }
    }
}

/// Forgets the mapping in the segment map and unmaps it (this may change
/// `errno`).
///
/// # Safety
/// `h` is a free mapping's header that no one uses any more.
pub(crate) unsafe fn unmap(h: *mut Large) {
    // SAFETY: contract: the whole mapping made by `map`, now unreachable.
    unsafe {
        let (bytes, align) = ((*h).map_bytes, (*h).map_align);
        segment_map::remove(h as usize, bytes);
        os::unmap(NonNull::new_unchecked(h.cast()), bytes, align);
    }
}

#[cfg(all(test, not(miri)))]
mod tests {
    use super::*;

    #[test]
    fn blocks_are_found_by_address_and_resized_in_place() {
        let h = map(300 << 10, 16).unwrap().as_ptr();
        // SAFETY: a live block made here, freed at the end.
        unsafe {
            let p = ptr(h);
            assert_eq!(p as usize % 64, 0);
            assert!(usable(h) >= 300 << 10);
            p.write_bytes(0xAB, usable(h));
            let entry = segment_map::lookup(p as usize);
            assert!(matches!(find(entry, p as usize), Found::Block(x) if x == h));
            assert!(matches!(find(entry, p as usize + 16), Found::Inside));
            let grown = fits(h, 2 << 20).unwrap();
            resize(h, 2 << 20);
            assert_eq!(counted(h), grown);
            assert!(fits(h, 8 << 20).is_none());
            assert!(release(h));
            assert!(!release(h));
            assert!(matches!(find(entry, p as usize), Found::Inside));
            unmap(h);
            assert_eq!(segment_map::lookup(p as usize), 0);
        }
    }

    #[test]
    fn alignment_above_the_granule() {
        let align = 1 << 27;
        let h = map(100, align).unwrap().as_ptr();
        // SAFETY: a live block made here, freed at the end.
        unsafe {
            assert_eq!(ptr(h) as usize % align, 0);
            assert!(release(h));
            unmap(h);
        }
    }
}
