//! The segment map: which 4 MiB-aligned address ranges are flistalloc
//! segments, and who owns each. Every free consults it *before* touching any
//! header, so a foreign pointer is reported, never dereferenced.
//!
//! A two-level radix table over the 48-bit user address space, indexed by
//! `addr >> SEGMENT_SHIFT`. The top level is a 64 KiB static (zero pages in
//! `.bss`, touched only where used); each leaf (128 KiB, covering 32 GiB of
//! address space) is mapped from the OS the first time a segment lands in its
//! range. Nothing is reserved up front, so valgrind and `RLIMIT_AS` users are
//! unaffected.
//!
//! A top-level entry is the byte offset of its leaf from a static all-zero
//! leaf (in `.bss`, never written), so the 0 of an unused range *is* a leaf:
//! a lookup is two dependent loads with no null branch, and the top level
//! stays all-zero `.bss` (pointers to the static leaf would be 8,192 load-time
//! relocations and 64 KiB of memory touched in every process, the C library's
//! users included, for one `add` saved per lookup).
//!
//! Each granule has a slot of two adjacent words (one cache line):
//! * the **entry**, `header address | HUGE flag | owner tag`; 0 means "not
//!   ours". It tells arena from global segments, large blocks and huge
//!   segments apart, and is fixed while the segment is mapped.
//! * the **owner word**: the owning core's address for a normal segment,
//!   `core | `[`HUGE_OWNER`] for a huge one, 0 while abandoned and for the C
//!   library's large blocks. Invariant: owner word == `c` (with `c` a core)
//!   implies `c` owns the segment, and only `c`'s thread (or a thread holding
//!   that idle or dead core) changes the word away from `c`: it is written
//!   wherever [`Segment::owner`](crate::segment::Segment) is (create,
//!   abandon, adopt; through `Segment::set_owner`). So the thread of core
//!   `c` that reads `c` there needs no ordering: it reads its own write, or
//!   one made before it got the core. `Segment::owner` stays the authority
//!   for every other thread (the remote-free protocol).
//!
//! The free fast path is then "ours and local" in one compare:
//! [`owner_word`]`(addr) == core`.

use crate::os;
use core::sync::atomic::{AtomicUsize, Ordering};

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
/// Set in the owner word of a huge segment's granules (cores are aligned to
/// the page, so the bit is free), so that `owner_word == core` alone means
/// "a normal segment of `core`".
pub(crate) const HUGE_OWNER: usize = 1;

/// One granule's words, adjacent so that a lookup of either touches one
/// cache line.
#[repr(C, align(16))]
struct Slot {
    entry: AtomicUsize,
    owner: AtomicUsize,
}

struct Leaf {
    slots: [Slot; LEAF_LEN],
}

/// The top level and the static empty leaf, in one static so one address
/// computation serves both.
#[repr(C)]
struct Map {
    /// Per 32 GiB range: the byte offset of its leaf from `empty`
    /// (wrapping); 0 = `empty`. Changes once, from 0 to a fresh leaf (CAS),
    /// and leaves are never freed.
    top: [AtomicUsize; 1 << TOP_BITS],
    /// All zero, never written: every lookup in a range without a leaf
    /// reads "not ours" here.
    empty: Leaf,
}

#[allow(clippy::declare_interior_mutable_const)]
const ZERO: AtomicUsize = AtomicUsize::new(0);
#[allow(clippy::declare_interior_mutable_const)]
const ZERO_SLOT: Slot = Slot {
    entry: ZERO,
    owner: ZERO,
};
static MAP: Map = Map {
    top: [ZERO; 1 << TOP_BITS],
    empty: Leaf {
        slots: [ZERO_SLOT; LEAF_LEN],
    },
};

/// The static empty leaf.
#[inline(always)]
fn empty_leaf() -> *const Leaf {
    &MAP.empty
}

/// The slot of granule `g` (below `1 << (TOP_BITS + LEAF_BITS)`), in its
/// leaf or in the empty leaf; `ord` orders the top-level load.
#[inline(always)]
fn slot(g: usize, ord: Ordering) -> &'static Slot {
    let off = MAP.top[g >> LEAF_BITS].load(ord);
    let leaf: *const Leaf = core::ptr::with_exposed_provenance(
        (empty_leaf() as usize).wrapping_add(off),
    );
    // SAFETY: `off` is 0 (the static empty leaf) or the offset of a leaf
    // installed by `leaf_for`, whose address it exposed; leaves are never
    // freed, are mapped zeroed (a valid `Leaf`: atomics), and the index is
    // masked below LEAF_LEN.
    unsafe { &(*leaf).slots[g & (LEAF_LEN - 1)] }
}

/// The entry for the segment granule holding `addr`, or 0 when no segment of
/// ours covers it.
#[inline(always)]
pub(crate) fn lookup(addr: usize) -> usize {
    if addr >> ADDR_BITS != 0 {
        return 0;
    }
    slot(addr >> SEGMENT_SHIFT, Ordering::Acquire)
        .entry
        .load(Ordering::Acquire)
}

/// The owner word of the granule holding `addr` (see the module docs): two
/// dependent loads and no branch but the address-width guard. Exact for the
/// thread of the core it names (the invariant on the owner word); anyone
/// else may read a stale value and must go by `Segment::owner`.
#[inline(always)]
pub(crate) fn owner_word(addr: usize) -> usize {
    if addr >> ADDR_BITS != 0 {
        return 0;
    }
    // Relaxed: the one reader the word is exact for sees its own writes, or
    // writes made before it got its core (module docs); others re-check.
    slot(addr >> SEGMENT_SHIFT, Ordering::Relaxed)
        .owner
        .load(Ordering::Relaxed)
}

/// The owner word of a segment owned by `core` (null: none).
pub(crate) fn owner_word_of(core: *mut (), huge: bool) -> usize {
    if core.is_null() {
        0
    } else {
        debug_assert_eq!(core as usize & HUGE_OWNER, 0);
        core as usize | if huge { HUGE_OWNER } else { 0 }
    }
}

/// The leaf covering granule `granule`, installed if need be.
fn leaf_for(granule: usize) -> Option<&'static Leaf> {
    let top = &MAP.top[granule >> LEAF_BITS];
    let empty = empty_leaf() as usize;
    let mut off = top.load(Ordering::Acquire);
    if off == 0 {
        let size = core::mem::size_of::<Leaf>();
        let fresh = os::map_aligned(size, crate::size_class::PAGE)?;
        let fresh_off = fresh.as_ptr().expose_provenance().wrapping_sub(empty);
        match top.compare_exchange(0, fresh_off, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => off = fresh_off,
            Err(winner) => {
                // SAFETY: `fresh` was mapped just above and never shared.
                unsafe { os::unmap(fresh, size, crate::size_class::PAGE) };
                off = winner;
            }
        }
    }
    let leaf: *const Leaf = core::ptr::with_exposed_provenance(empty.wrapping_add(off));
    // SAFETY: a leaf installed above or by another thread (its address
    // exposed there); installed leaves live for the process.
    Some(unsafe { &*leaf })
}

/// Records `entry` and owner word `owner` for the `len` bytes of segment
/// memory starting at `base` (segment-aligned). `false` when a leaf could
/// not be mapped.
pub(crate) fn insert(base: usize, len: usize, entry: usize, owner: usize) -> bool {
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
        let s = &leaf.slots[g & (LEAF_LEN - 1)];
        s.owner.store(owner, Ordering::Release);
        s.entry.store(entry, Ordering::Release);
    }
    true
}

/// Sets the owner word of the registered segment memory `[base, base+len)`
/// (the caller changes the segment's owner: see the owner word's invariant).
/// Granules the map does not hold are skipped, so a segment header that was
/// never registered (the loom models' own) changes nothing here.
pub(crate) fn set_owner(base: usize, len: usize, owner: usize) {
    if (base + len) >> ADDR_BITS != 0 {
        return;
    }
    let first = base >> SEGMENT_SHIFT;
    for g in first..first + len.div_ceil(SEGMENT_SIZE) {
        let s = slot(g, Ordering::Acquire);
        // A registered granule is in a real leaf (the empty one's entries
        // are all 0), so this never writes the static leaf.
        if s.entry.load(Ordering::Acquire) != 0 {
            s.owner.store(owner, Ordering::Release);
        }
    }
}

/// Forgets the segment memory `[base, base+len)`.
pub(crate) fn remove(base: usize, len: usize) {
    let first = base >> SEGMENT_SHIFT;
    for g in first..first + len.div_ceil(SEGMENT_SIZE) {
        let s = slot(g, Ordering::Acquire);
        if s.entry.load(Ordering::Relaxed) != 0 {
            s.entry.store(0, Ordering::Release);
            s.owner.store(0, Ordering::Release);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether every slot of the static empty leaf is still zero.
    fn empty_leaf_is_zero() -> bool {
        MAP.empty.slots.iter().all(|s| {
            s.entry.load(Ordering::Relaxed) == 0 && s.owner.load(Ordering::Relaxed) == 0
        })
    }

    #[test]
    fn unknown_addresses_are_not_ours() {
        assert_eq!(lookup(0), 0);
        assert_eq!(owner_word(0), 0);
        assert_eq!(lookup(usize::MAX), 0);
        assert_eq!(owner_word(usize::MAX), 0);
        assert_eq!(owner_word(1 << ADDR_BITS), 0);
        let on_stack = 5u8;
        assert_eq!(lookup(&on_stack as *const u8 as usize), 0);
        assert_eq!(owner_word(&on_stack as *const u8 as usize), 0);
    }

    #[test]
    fn ranges_without_a_leaf_read_the_static_leaf() {
        // A 32 GiB range no test maps anything in (64 TiB up).
        let base = 0x4000_0000_0000usize;
        assert_eq!(MAP.top[base >> (SEGMENT_SHIFT + LEAF_BITS)].load(Ordering::Relaxed), 0);
        for addr in [base, base + 12345, base + (1 << 35) - 1] {
            assert_eq!(lookup(addr), 0);
            assert_eq!(owner_word(addr), 0);
        }
        // Setting the owner of memory the map does not hold writes nothing,
        // least of all the shared static leaf.
        set_owner(base, 2 * SEGMENT_SIZE, 0x1000);
        remove(base, SEGMENT_SIZE);
        assert_eq!(owner_word(base), 0);
        assert_eq!(MAP.top[base >> (SEGMENT_SHIFT + LEAF_BITS)].load(Ordering::Relaxed), 0);
        assert!(empty_leaf_is_zero());
    }

    #[test]
    fn insert_lookup_set_owner_remove() {
        // An address range no real segment uses in this test binary.
        let base = 0x7000_0000_0000usize - 3 * SEGMENT_SIZE;
        let core = 0x5555_0000_1000usize;
        assert!(insert(base, 2 * SEGMENT_SIZE, base | 7, core | HUGE_OWNER));
        assert_eq!(lookup(base + 5), base | 7);
        assert_eq!(lookup(base + SEGMENT_SIZE + 5), base | 7);
        assert_eq!(owner_word(base + SEGMENT_SIZE + 5), core | HUGE_OWNER);
        assert_eq!(lookup(base + 2 * SEGMENT_SIZE), 0);
        assert_eq!(owner_word(base + 2 * SEGMENT_SIZE), 0);
        // Abandoned, then adopted by another core.
        set_owner(base, 2 * SEGMENT_SIZE, 0);
        assert_eq!(owner_word(base + 5), 0);
        assert_eq!(lookup(base + 5), base | 7);
        set_owner(base, 2 * SEGMENT_SIZE, 0x6000);
        assert_eq!(owner_word(base + 5), 0x6000);
        assert_eq!(owner_word(base + SEGMENT_SIZE), 0x6000);
        remove(base, 2 * SEGMENT_SIZE);
        assert_eq!(lookup(base + 5), 0);
        assert_eq!(owner_word(base + 5), 0);
        assert_eq!(owner_word(base + SEGMENT_SIZE), 0);
        assert!(empty_leaf_is_zero());
    }

    #[test]
    fn owner_words_of_cores() {
        let c = 0x7f00_0000_2000usize as *mut ();
        assert_eq!(owner_word_of(c, false), 0x7f00_0000_2000);
        assert_eq!(owner_word_of(c, true), 0x7f00_0000_2001);
        assert_eq!(owner_word_of(core::ptr::null_mut(), true), 0);
    }
}
