//! The segment map: which 4 MiB-aligned address ranges are flistalloc
//! segments, and who owns each. Every free consults it *before* touching any
//! header, so a foreign pointer is reported, never dereferenced.
//!
//! Two tables, both indexed by granule (`addr >> SEGMENT_SHIFT`):
//!
//! * The **entries**: a two-level radix table over the 48-bit user address
//!   space. An entry is `header address | HUGE flag | owner tag`; 0 means
//!   "not ours". It tells arena from global segments, large blocks and huge
//!   segments apart, and is fixed while the segment is mapped. The top level
//!   is a 64 KiB static (zero pages in `.bss`, touched only where used); a
//!   null top-level entry stands for a static all-zero leaf (in `.bss`,
//!   never written), selected without a branch, so every lookup reads a
//!   leaf. (Top-level entries initialised to the static leaf would be 8,192
//!   load-time relocations and 64 KiB touched in every process, the C
//!   library's users included; byte offsets from it instead would hide the
//!   leaves from miri's leak check.) Each leaf (64 KiB, covering 32 GiB) is
//!   mapped from the OS the first time a segment lands in its range.
//!
//! * The **owner words**: a flat table of one word per granule of the
//!   target's user address space (47 bits on x86_64: 256 MiB; 48 bits
//!   elsewhere: 512 MiB), reserved `MAP_NORESERVE` when the first core is
//!   made and touched a page (2 GiB of address space) at a time. A word is
//!   the owning core's address for a normal segment, `core | `[`HUGE_OWNER`]
//!   for a huge one, 0 while abandoned, for large blocks, and for memory
//!   that is not ours. Invariant: owner word == `c` (with `c` a core)
//!   implies `c` owns the segment, and only `c`'s thread (or a thread holding
//!   that idle or dead core) changes the word away from `c`: it is written
//!   wherever [`Segment::owner`](crate::segment::Segment) is (create,
//!   abandon, adopt; through `Segment::set_owner`) and cleared with the
//!   entry. So the thread of core `c` that reads `c` there needs no
//!   ordering: it reads its own write, or one made before it got the core.
//!   `Segment::owner` stays the authority for every other thread (the
//!   remote-free protocol).
//!
//! The free fast path is then "ours and local" in one compare:
//! `table[addr >> SEGMENT_SHIFT] == core`, one load after a bounds check
//! against the table's length (both held by the core: [`OwnerTable`]); a
//! core whose reservation failed holds an empty table and always takes the
//! full path. The flat table beats an owner word beside each entry in the
//! two-level table by six to seven instructions per free (no top-level
//! load, offset add, address-width test or slot arithmetic; 64-byte pair
//! of `scripts/callgrind-pair.sh`, measured before the `Arena`'s direct
//! allocation path: `Flist` 77 -> 70, `Arena` 83 -> 77), for
//! address space only: the issue's `ulimit -v 4194304` churn runs
//! (`tests/global_ulimit.rs`).

use crate::os;
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
/// Set in the owner word of a huge segment's granules (cores are aligned to
/// the page, so the bit is free), so that `owner word == core` alone means
/// "a normal segment of `core`".
pub(crate) const HUGE_OWNER: usize = 1;

struct Leaf {
    entries: [AtomicUsize; LEAF_LEN],
}

/// The top level and the static empty leaf, in one static so one address
/// computation serves both.
#[repr(C)]
struct Map {
    /// Per 32 GiB range: its leaf, or null for `empty`. Changes once, from
    /// null to a fresh leaf (CAS), and leaves are never freed.
    top: [AtomicPtr<Leaf>; 1 << TOP_BITS],
    /// All zero, never written: every lookup in a range without a leaf
    /// reads "not ours" here.
    empty: Leaf,
}

#[allow(clippy::declare_interior_mutable_const)]
const ZERO: AtomicUsize = AtomicUsize::new(0);
#[allow(clippy::declare_interior_mutable_const)]
const NO_LEAF: AtomicPtr<Leaf> = AtomicPtr::new(core::ptr::null_mut());
static MAP: Map = Map {
    top: [NO_LEAF; 1 << TOP_BITS],
    empty: Leaf {
        entries: [ZERO; LEAF_LEN],
    },
};

/// The entry of granule `g` (below `1 << (TOP_BITS + LEAF_BITS)`), in its
/// leaf or in the empty leaf.
#[inline(always)]
fn entry_of(g: usize) -> &'static AtomicUsize {
    let p = MAP.top[g >> LEAF_BITS].load(Ordering::Acquire);
    let leaf: &'static Leaf = if p.is_null() {
        &MAP.empty
    } else {
        // SAFETY: a leaf installed by `leaf_for`: never freed, mapped zeroed
        // (a valid `Leaf`: atomics).
        unsafe { &*p }
    };
    &leaf.entries[g & (LEAF_LEN - 1)]
}

/// The entry for the segment granule holding `addr`, or 0 when no segment of
/// ours covers it.
#[inline(always)]
pub(crate) fn lookup(addr: usize) -> usize {
    if addr >> ADDR_BITS != 0 {
        return 0;
    }
    entry_of(addr >> SEGMENT_SHIFT).load(Ordering::Acquire)
}

/// Bits of a granule number the owner table covers: the user address space
/// of the target (a smaller one under miri, whose allocations stand in for
/// mappings and whose addresses are small). Segments above it have owner
/// word 0 for everyone: their frees take the full path.
#[cfg(all(target_arch = "x86_64", not(miri)))]
const OWNER_BITS: u32 = 47 - SEGMENT_SHIFT;
#[cfg(all(not(target_arch = "x86_64"), not(miri)))]
const OWNER_BITS: u32 = 48 - SEGMENT_SHIFT;
#[cfg(miri)]
const OWNER_BITS: u32 = 40 - SEGMENT_SHIFT;
const OWNER_LEN: usize = 1 << OWNER_BITS;

/// The owner table (`OWNER_LEN` words), null until reserved. Changes once,
/// from null (CAS); never freed.
static OWNERS: AtomicPtr<AtomicUsize> = AtomicPtr::new(core::ptr::null_mut());
/// What a core whose reservation failed reads: nothing (length 0).
static NO_OWNERS: AtomicUsize = AtomicUsize::new(0);

/// A core's view of the owner table: its words and its length in granules
/// (0 when the reservation failed). Copied into each core when it is made,
/// so the free fast path finds both next to the core's other fields.
#[derive(Clone, Copy)]
pub(crate) struct OwnerTable {
    words: *const AtomicUsize,
    len: usize,
}

impl OwnerTable {
    /// A table that holds no address (length 0): what a core stub reads
    /// (`flist_core::CoreStub`). Its words are never read.
    pub(crate) const NONE: OwnerTable = OwnerTable {
        words: core::ptr::null(),
        len: 0,
    };

    /// The owner word of the granule holding `addr` (see the module docs):
    /// a bounds check and one load (tests; the allocator asks `holds`).
    #[cfg(test)]
    pub(crate) fn word(&self, addr: usize) -> usize {
        let g = addr >> SEGMENT_SHIFT;
        if g >= self.len {
            return 0;
        }
        // SAFETY: `g < len`, and `words` holds `len` words that live for
        // the process (the reserved table, or the empty one with len 0).
        // Relaxed: the one reader the word is exact for sees its own
        // writes, or writes made before it got its core (module docs).
        unsafe { (*self.words.add(g)).load(Ordering::Relaxed) }
    }

    /// Whether the owner word of the granule holding `addr` (see the module
    /// docs) is the non-zero `word`: a bounds check, one load, one compare.
    /// Exact for the thread of the core that `word` names (the owner word's
    /// invariant); anyone else may read a stale value and must go by
    /// `Segment::owner`.
    #[inline(always)]
    pub(crate) fn holds(&self, addr: usize, word: usize) -> bool {
        let g = addr >> SEGMENT_SHIFT;
        // SAFETY: as in `word`: `g < len` is checked first.
        g < self.len && unsafe { (*self.words.add(g)).load(Ordering::Relaxed) } == word
    }
}

/// The owner table, reserved on first use; an empty one (every word 0) if
/// the OS refuses the address space.
pub(crate) fn owner_table() -> OwnerTable {
    let mut t = OWNERS.load(Ordering::Acquire);
    if t.is_null() {
        let bytes = OWNER_LEN * core::mem::size_of::<usize>();
        let Some(fresh) = os::map_aligned(bytes, crate::size_class::PAGE) else {
            return OwnerTable {
                words: &NO_OWNERS,
                len: 0,
            };
        };
        let fresh = fresh.as_ptr().cast::<AtomicUsize>();
        match OWNERS.compare_exchange(
            core::ptr::null_mut(),
            fresh,
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            Ok(_) => t = fresh,
            Err(winner) => {
                // SAFETY: `fresh` was mapped just above and never shared.
                unsafe {
                    os::unmap(
                        core::ptr::NonNull::new_unchecked(fresh.cast()),
                        bytes,
                        crate::size_class::PAGE,
                    )
                };
                t = winner;
            }
        }
    }
    OwnerTable {
        words: t,
        len: OWNER_LEN,
    }
}

/// The owner-word slot of granule `g`, if the table is reserved and covers
/// it.
fn owner_slot(g: usize) -> Option<&'static AtomicUsize> {
    let t = OWNERS.load(Ordering::Acquire);
    if t.is_null() || g >= OWNER_LEN {
        return None;
    }
    // SAFETY: a reserved table of OWNER_LEN words, never freed; g is below.
    Some(unsafe { &*t.add(g) })
}

/// The owner word of `addr` as the process's owner table holds it (tests).
#[cfg(test)]
pub(crate) fn owner_word(addr: usize) -> usize {
    match OWNERS.load(Ordering::Acquire).is_null() {
        true => 0,
        false => owner_table().word(addr),
    }
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
    let mut leaf = top.load(Ordering::Acquire);
    if leaf.is_null() {
        let size = core::mem::size_of::<Leaf>();
        let fresh = os::map_aligned(size, crate::size_class::PAGE)?;
        match top.compare_exchange(
            core::ptr::null_mut(),
            fresh.as_ptr().cast(),
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            Ok(_) => leaf = fresh.as_ptr().cast(),
            Err(winner) => {
                // SAFETY: `fresh` was mapped just above and never shared.
                unsafe { os::unmap(fresh, size, crate::size_class::PAGE) };
                leaf = winner;
            }
        }
    }
    // SAFETY: a leaf installed above or by another thread; installed leaves
    // live for the process.
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
        if let Some(w) = owner_slot(g) {
            w.store(owner, Ordering::Release);
        }
        leaf.entries[g & (LEAF_LEN - 1)].store(entry, Ordering::Release);
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
        if entry_of(g).load(Ordering::Acquire) != 0 {
            if let Some(w) = owner_slot(g) {
                w.store(owner, Ordering::Release);
            }
        }
    }
}

/// Forgets the segment memory `[base, base+len)`.
pub(crate) fn remove(base: usize, len: usize) {
    let first = base >> SEGMENT_SHIFT;
    for g in first..first + len.div_ceil(SEGMENT_SIZE) {
        let e = entry_of(g);
        // A registered granule is in a real leaf (the empty leaf's entries
        // are all 0), so this never writes the static leaf.
        if e.load(Ordering::Relaxed) != 0 {
            if let Some(w) = owner_slot(g) {
                w.store(0, Ordering::Release);
            }
            e.store(0, Ordering::Release);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether every entry of the static empty leaf is still zero.
    fn empty_leaf_is_zero() -> bool {
        MAP.empty
            .entries
            .iter()
            .all(|e| e.load(Ordering::Relaxed) == 0)
    }

    #[test]
    fn unknown_addresses_are_not_ours() {
        let t = owner_table();
        assert_eq!(t.len, OWNER_LEN);
        assert_eq!(lookup(0), 0);
        assert_eq!(t.word(0), 0);
        assert_eq!(lookup(usize::MAX), 0);
        assert_eq!(t.word(usize::MAX), 0);
        assert_eq!(t.word(OWNER_LEN << SEGMENT_SHIFT), 0);
        let on_stack = 5u8;
        assert_eq!(lookup(&on_stack as *const u8 as usize), 0);
        assert_eq!(t.word(&on_stack as *const u8 as usize), 0);
        // A core whose reservation failed reads nothing.
        let none = OwnerTable {
            words: &NO_OWNERS,
            len: 0,
        };
        assert_eq!(none.word(0), 0);
        assert_eq!(none.word(&on_stack as *const u8 as usize), 0);
    }

    #[test]
    fn ranges_without_a_leaf_read_the_static_leaf() {
        owner_table();
        // A 32 GiB range no test maps anything in (64 TiB up).
        let base = 0x4000_0000_0000usize;
        let top = base >> (SEGMENT_SHIFT + LEAF_BITS);
        assert!(MAP.top[top].load(Ordering::Relaxed).is_null());
        for addr in [base, base + 12345, base + (1 << 35) - 1] {
            assert_eq!(lookup(addr), 0);
            assert_eq!(owner_word(addr), 0);
        }
        // Setting the owner of memory the map does not hold writes nothing,
        // least of all the shared static leaf.
        set_owner(base, 2 * SEGMENT_SIZE, 0x1000);
        remove(base, SEGMENT_SIZE);
        assert_eq!(owner_word(base), 0);
        assert_eq!(owner_word(base + SEGMENT_SIZE), 0);
        assert!(MAP.top[top].load(Ordering::Relaxed).is_null());
        assert!(empty_leaf_is_zero());
    }

    #[test]
    fn insert_lookup_set_owner_remove() {
        owner_table();
        // An address range no real segment uses in this test binary, inside
        // the owner table (smaller under miri).
        let base = 0x7000_0000_0000usize.min(OWNER_LEN << SEGMENT_SHIFT) - 3 * SEGMENT_SIZE;
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
        assert_eq!(owner_table().word(base + SEGMENT_SIZE), 0x6000);
        remove(base, 2 * SEGMENT_SIZE);
        assert_eq!(lookup(base + 5), 0);
        assert_eq!(owner_word(base + 5), 0);
        assert_eq!(owner_word(base + SEGMENT_SIZE), 0);
        assert!(empty_leaf_is_zero());
    }

    #[test]
    fn owner_words_of_cores() {
        let c = core::ptr::without_provenance_mut::<()>(0x7f00_0000_2000);
        assert_eq!(owner_word_of(c, false), 0x7f00_0000_2000);
        assert_eq!(owner_word_of(c, true), 0x7f00_0000_2001);
        assert_eq!(owner_word_of(core::ptr::null_mut(), true), 0);
    }
}
