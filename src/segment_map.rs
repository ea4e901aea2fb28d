//! The segment map: which 4 MiB-aligned address ranges are flistalloc
//! segments, and who owns each. Every free consults it *before* touching any
//! header, so a foreign pointer is reported, never dereferenced.
//!
//! A two-level radix table over the 48-bit user address space, indexed by
//! `addr >> SEGMENT_SHIFT`. The top level is a 64 KiB static (zero pages in
//! `.bss`, touched only where used); each leaf (64 KiB, covering 32 GiB of
//! address space) is mapped from the OS the first time a segment lands in its
//! range. Nothing is reserved up front, so valgrind and `RLIMIT_AS` users are
//! unaffected.
//!
//! An entry is `header address | HUGE flag | owner tag`; 0 means "not ours".

use crate::os;
use core::ptr::null_mut;
use core::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};

/// Segments are aligned to, and (unless huge) exactly, this size.
pub(crate) const SEGMENT_SHIFT: u32 = 22;
pub(crate) const SEGMENT_SIZE: usize = 1 << SEGMENT_SHIFT;

const ADDR_BITS: u32 = 48;
const LEAF_BITS: u32 = 13;
const TOP_BITS: u32 = ADDR_BITS - SEGMENT_SHIFT - LEAF_BITS;
const LEAF_LEN: usize = 1 << LEAF_BITS;

/// Low bits of an entry: the owner tag (an arena id; [`GLOBAL_TAG`] for the
/// global allocator's heaps).
pub(crate) const TAG_BITS: u32 = 21;
pub(crate) const TAG_MASK: usize = (1 << TAG_BITS) - 1;
/// Set in the entries of a huge segment (one pool spanning several granules).
pub(crate) const HUGE_FLAG: usize = 1 << TAG_BITS;
/// Tag of segments owned by the global allocator's thread heaps.
pub(crate) const GLOBAL_TAG: usize = 1;
/// Tag of the C library's large blocks (`large.rs`): one block per mapping,
/// its header at the entry's base. Never an arena's tag.
pub(crate) const LARGE_TAG: usize = TAG_MASK;

struct Leaf {
    entries: [AtomicUsize; LEAF_LEN],
}

#[allow(clippy::declare_interior_mutable_const)]
const NO_LEAF: AtomicPtr<Leaf> = AtomicPtr::new(null_mut());
static TOP: [AtomicPtr<Leaf>; 1 << TOP_BITS] = [NO_LEAF; 1 << TOP_BITS];

/// The entry for the segment granule holding `addr`, or 0 when no segment of
/// ours covers it.
#[inline(always)]
pub(crate) fn lookup(addr: usize) -> usize {
    if addr >> ADDR_BITS != 0 {
        return 0;
    }
    let leaf = TOP[addr >> (SEGMENT_SHIFT + LEAF_BITS)].load(Ordering::Acquire);
    if leaf.is_null() {
        return 0;
    }
    let slot = (addr >> SEGMENT_SHIFT) & (LEAF_LEN - 1);
    // SAFETY: leaves are never freed once installed, and are mapped zeroed.
    unsafe { (*leaf).entries[slot].load(Ordering::Acquire) }
}

fn leaf_for(granule: usize) -> Option<&'static Leaf> {
    let top = &TOP[granule >> LEAF_BITS];
    let mut leaf = top.load(Ordering::Acquire);
    if leaf.is_null() {
        let size = core::mem::size_of::<Leaf>();
        let fresh = os::map_aligned(size, crate::size_class::PAGE)?
            .as_ptr()
            .cast::<Leaf>();
        match top.compare_exchange(null_mut(), fresh, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => leaf = fresh,
            Err(winner) => {
                // SAFETY: `fresh` was mapped just above and never shared.
                unsafe {
                    os::unmap(
                        core::ptr::NonNull::new_unchecked(fresh.cast()),
                        size,
                        crate::size_class::PAGE,
                    )
                };
                leaf = winner;
            }
        }
    }
    // SAFETY: non-null leaves are installed once and live for the process.
    Some(unsafe { &*leaf })
}

/// Records `entry` for the `len` bytes of segment memory starting at `base`
/// (segment-aligned). `false` when a leaf could not be mapped.
pub(crate) fn insert(base: usize, len: usize, entry: usize) -> bool {
    debug_assert_eq!(base % SEGMENT_SIZE, 0);
    if (base + len) >> ADDR_BITS != 0 {
        return false;
    }
    let first = base >> SEGMENT_SHIFT;
    let count = len.div_ceil(SEGMENT_SIZE);
    for g in first..first + count {
        let Some(leaf) = leaf_for(g) else {
            remove(base, (g - first) * SEGMENT_SIZE);
            return false;
        };
        leaf.entries[g & (LEAF_LEN - 1)].store(entry, Ordering::Release);
    }
    true
}

/// Forgets the segment memory `[base, base+len)`.
pub(crate) fn remove(base: usize, len: usize) {
    let first = base >> SEGMENT_SHIFT;
    for g in first..first + len.div_ceil(SEGMENT_SIZE) {
        let leaf = TOP[g >> LEAF_BITS].load(Ordering::Acquire);
        if !leaf.is_null() {
            // SAFETY: installed leaves live for the process.
            unsafe { (*leaf).entries[g & (LEAF_LEN - 1)].store(0, Ordering::Release) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_addresses_are_not_ours() {
        assert_eq!(lookup(0), 0);
        assert_eq!(lookup(usize::MAX), 0);
        let on_stack = 5u8;
        assert_eq!(lookup(&on_stack as *const u8 as usize), 0);
    }

    #[test]
    fn insert_lookup_remove() {
        // An address range no real segment uses in this test binary.
        let base = 0x7000_0000_0000usize - 3 * SEGMENT_SIZE;
        assert!(insert(base, 2 * SEGMENT_SIZE, base | 7));
        assert_eq!(lookup(base + 5), base | 7);
        assert_eq!(lookup(base + SEGMENT_SIZE + 5), base | 7);
        assert_eq!(lookup(base + 2 * SEGMENT_SIZE), 0);
        remove(base, 2 * SEGMENT_SIZE);
        assert_eq!(lookup(base + 5), 0);
    }
}
