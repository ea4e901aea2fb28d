//! The slab table: every request size from 1 byte to 1 TiB rounds up to one
//! of a fixed set of chunk sizes ("slabs").
//!
//! The table is computed by `const fn` at compile time (no `build.rs`): the
//! rule is three lines, so generating it in Rust keeps the rule and the table
//! in one place, and the compiler proves it is a constant.
//!
//! Rule: starting at 8, the next slab after `s` is `s` rounded up to the next
//! multiple of `step(s)`: 8 below 128 B, else the largest power of two
//! `<= s / 4`. Hence:
//! * sizes up to 128 B are multiples of 8 (the seed's example, 67 -> 72);
//! * beyond, there are 4 slabs per doubling (128, 160, 192, 224, 256, 320,
//!   ...), the spacing of jemalloc's and mimalloc's size classes; two
//!   consecutive slabs are at most `max(8, 25% of the smaller)` apart, so a
//!   request above 32 B never wastes more than 25% of its size;
//! * within a run of equal steps every multiple of the step is a slab, which is
//!   what makes aligned lookups cheap: the smallest slab that is a multiple of
//!   a power of two `a` and holds `size` is `suitable(round_up(size, a))`.
//!
//! The divisor (`WASTE_DIV`, 4) was measured (with 8-byte steps up to 64 B;
//! they now go to 128 B, for the seed's 67 -> 72) against 20 (at most 5% waste,
//! about 20 slabs per doubling) and 8 (12.5%) with `examples/compare` and
//! `examples/server`: every slab has its own pools in each thread heap, so
//! with 20 slabs per doubling a mixed-size workload spreads a few chunks over
//! many part-empty pools. Peak RSS, 20 -> 8 -> 4: threads workload 75 -> 62
//! -> 55 MiB (medians of 5), server workload 85 -> 78 -> 75 MiB, the server
//! example 81 -> 62 -> 54 MiB; the price is internal waste where few sizes
//! are live at once: frag 765 -> 778 -> 804 MiB, randfree 1224 -> 1252 ->
//! 1312 MiB (jemalloc: 779 and 1521). Times moved within the noise.

/// The largest capacity an [`Arena`](crate::Arena) may have, and the largest
/// request size: 1 TiB, the seed's `Maxarenasize`.
///
/// ```
/// assert_eq!(flistalloc::MAX_ARENA_SIZE, 1 << 40);
/// ```
pub const MAX_ARENA_SIZE: usize = 1 << 40;

/// Page size assumed for pools: chunk areas start page-aligned.
pub(crate) const PAGE: usize = 4096;

/// Requests up to this size use the O(1) lookup table (and the global
/// allocator's shortest alloc path).
pub(crate) const SMALL_MAX: usize = 1024;

/// Requests above this size (and alignments above the page) go from the
/// global allocator to its fallback backend. 256 KiB: the largest pool size,
/// so every flist slab has at least one chunk per pool. See the README for
/// the measurement.
///
/// ```
/// assert_eq!(flistalloc::LARGEST_FLIST_SIZE, 256 << 10);
/// ```
pub const LARGEST_FLIST_SIZE: usize = 256 << 10;

/// The waste divisor of the slab rule: a slab's step is the largest power of
/// two `<= s / WASTE_DIV` (at least 8), so above `8 * WASTE_DIV` bytes a
/// request wastes at most `1 / WASTE_DIV` of its size (see the module docs).
pub(crate) const WASTE_DIV: usize = 4;

/// Below this size every multiple of 8 is a slab (so the seed's own example,
/// 67 -> 72, holds, and small objects waste at most 7 bytes).
pub(crate) const FINE_MAX: usize = 128;

const fn step(s: usize) -> usize {
    if s < FINE_MAX {
        8
    } else {
        let part = s / WASTE_DIV;
        1 << (usize::BITS - 1 - part.leading_zeros())
    }
}

const fn next_slab(s: usize) -> usize {
    let st = step(s);
    (s + st) / st * st
}

const fn count_slabs() -> usize {
    let mut n = 1;
    let mut s = 8;
    while s < MAX_ARENA_SIZE {
        s = next_slab(s);
        n += 1;
    }
    n
}

/// Number of slabs between 8 B and 1 TiB.
pub(crate) const NUM_SLABS: usize = count_slabs();

const fn build_slabs() -> [usize; NUM_SLABS] {
    let mut t = [0usize; NUM_SLABS];
    let mut s = 8;
    let mut i = 0;
    while i < NUM_SLABS {
        t[i] = s;
        s = next_slab(s);
        i += 1;
    }
    t
}

static SLABS: [usize; NUM_SLABS] = build_slabs();

const SMALL_ENTRIES: usize = SMALL_MAX / 8 + 1;

/// `SMALL[(size + 7) / 8]` is the slab index for `size <= 1024`: 129 bytes,
/// two cache lines. Slab indices below 1 KiB fit a byte (there are 24 slabs
/// up to 1 KiB).
const fn build_small() -> [u8; SMALL_ENTRIES] {
    let slabs = build_slabs();
    let mut t = [0u8; SMALL_ENTRIES];
    let mut k = 0;
    let mut idx = 0;
    while k < SMALL_ENTRIES {
        let size = if k == 0 { 1 } else { k * 8 };
        while slabs[idx] < size {
            idx += 1;
        }
        assert!(idx < 256);
        t[k] = idx as u8;
        k += 1;
    }
    t
}

static SMALL: [u8; SMALL_ENTRIES] = build_small();

/// Entries of a thread core's direct table (`flist_core.rs`): one per
/// 8-byte step of the sizes `0..=SMALL_MAX`, indexed by [`direct_index`].
pub(crate) const DIRECT_ENTRIES: usize = SMALL_ENTRIES;

/// Slabs that serve some size up to `SMALL_MAX` (indices `0..SMALL_SLABS`).
pub(crate) const SMALL_SLABS: usize = build_small()[SMALL_ENTRIES - 1] as usize + 1;

/// For each slab up to `SMALL_MAX`, the direct-table entries `lo..hi` whose
/// sizes it serves (`SMALL` is non-decreasing, so they are one run).
const fn build_direct_ranges() -> [(u8, u8); SMALL_SLABS] {
    let small = build_small();
    let mut t = [(0u8, 0u8); SMALL_SLABS];
    let mut k = 0;
    while k < SMALL_ENTRIES {
        let idx = small[k] as usize;
        if t[idx].1 == 0 {
            t[idx].0 = k as u8;
        }
        t[idx].1 = k as u8 + 1;
        k += 1;
    }
    t
}

static DIRECT_RANGES: [(u8, u8); SMALL_SLABS] = build_direct_ranges();

/// The direct-table entry of a request of `size <= SMALL_MAX` bytes with
/// alignment at most 8: `(size + 7) / 8`, below [`DIRECT_ENTRIES`].
#[inline(always)]
pub(crate) fn direct_index(size: usize) -> usize {
    debug_assert!(size <= SMALL_MAX);
    (size + 7) >> 3
}

/// The direct-table entries that slab `idx` serves: `lo..hi`, empty for a
/// slab above `SMALL_MAX`. Every entry belongs to exactly one slab.
#[inline(always)]
pub(crate) fn direct_range(idx: usize) -> core::ops::Range<usize> {
    match DIRECT_RANGES.get(idx) {
        Some(&(lo, hi)) => lo as usize..hi as usize,
        None => 0..0,
    }
}

/// All slab sizes in bytes, strictly increasing, from 8 B to 1 TiB (the last
/// is exactly 1 TiB): 148 slabs, every multiple of 8 up to 128, then 4 per
/// doubling.
///
/// ```
/// let s = flistalloc::slabs();
/// assert_eq!(s.len(), 148);
/// assert_eq!(s[14..20], [120, 128, 160, 192, 224, 256]);
/// assert!(s.windows(2).all(|w| w[0] < w[1]));
/// assert!(*s.last().unwrap() >= 1 << 40);
/// ```
pub fn slabs() -> &'static [usize] {
    &SLABS
}

/// The slab (chunk size) that serves a request of `size` bytes: the smallest
/// slab `>= size`, in bytes. Size 0 is served as size 1. Up to 128 B that is
/// `size` rounded up to 8 (the seed's example: 67 -> 72); above 32 B it
/// wastes at most 25% of `size`.
///
/// # Panics
/// When `size` is above [`MAX_ARENA_SIZE`] (1 TiB).
///
/// ```
/// assert_eq!(flistalloc::suitable_slab(0), 8);
/// assert_eq!(flistalloc::suitable_slab(60), 64);
/// assert_eq!(flistalloc::suitable_slab(67), 72);
/// assert_eq!(flistalloc::suitable_slab(129), 160);
/// assert_eq!(flistalloc::suitable_slab(1000), 1024);
/// assert_eq!(flistalloc::suitable_slab(1025), 1280);
/// ```
pub fn suitable_slab(size: usize) -> usize {
    assert!(
        size <= MAX_ARENA_SIZE,
        "flistalloc: size {size} is above the largest slab (1 TiB)"
    );
    SLABS[slab_index(size)]
}

/// Index of the smallest slab `>= size`. Requires `size <= MAX_ARENA_SIZE`.
#[inline(always)]
pub(crate) fn slab_index(size: usize) -> usize {
    if size <= SMALL_MAX {
        SMALL[(size + 7) >> 3] as usize
    } else {
        slab_index_large(size)
    }
}

/// Index of the smallest slab that is a multiple of 16 and holds
/// `max(size, 1)` bytes, for `size <= SMALL_MAX` (the C library's `malloc`,
/// whose blocks are 16-byte aligned): the slab of `size` rounded up to 16,
/// one table load, with no bounds check (the C library's fast path must
/// not reach the panic machinery even in code it never runs).
///
/// # Safety
/// `size <= SMALL_MAX`.
#[inline(always)]
pub(crate) unsafe fn slab_index_16(size: usize) -> usize {
    let i = ((size + 15) >> 4 << 1).max(2);
    debug_assert!(i < SMALL_ENTRIES);
    // SAFETY: size <= SMALL_MAX (contract), so i <= 2 * ((SMALL_MAX + 15)
    // / 16) = SMALL_MAX / 8 = SMALL_ENTRIES - 1.
    unsafe { *SMALL.get_unchecked(i) as usize }
}

#[inline(never)]
fn slab_index_large(size: usize) -> usize {
    SLABS.partition_point(|&s| s < size)
}

/// Index of the smallest slab that holds `size` bytes with chunks aligned to
/// `align` (a power of two), or `None` when no slab can: `align` above the
/// page or the rounded size above 1 TiB.
#[inline(always)]
pub(crate) fn slab_index_aligned(size: usize, align: usize) -> Option<usize> {
    if align <= 8 {
        if size > MAX_ARENA_SIZE {
            return None;
        }
        return Some(slab_index(size));
    }
    if align > PAGE || size > MAX_ARENA_SIZE {
        return None;
    }
    // Every multiple of `align` that lies in a run of steps <= align is a
    // slab, and every slab in a run of steps > align is a multiple of align:
    // so the slab serving the rounded size is aligned (see module docs).
    let rounded = (size.max(1) + align - 1) & !(align - 1);
    Some(slab_index(rounded))
}

/// The slab size at `index`.
#[inline(always)]
pub(crate) fn slab_size(index: usize) -> usize {
    SLABS[index]
}

/// Alignment guaranteed for chunks of a slab: the largest power of two that
/// divides it, capped at the page.
#[cfg(test)]
pub(crate) fn chunk_align(slab: usize) -> usize {
    (1usize << slab.trailing_zeros()).min(PAGE)
}

#[cfg(test)]
mod tests;
