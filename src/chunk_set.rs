//! The live chunks of an `Arena` over the `malloc` or `jemalloc` backend: an
//! open-addressing hash map from chunk address to its usable size, in memory
//! mapped from the OS layer (never the global allocator, which may be this
//! crate). It is what lets such an arena tell its own chunks from any other
//! pointer without handing a foreign one to the C allocator, and what
//! `release` walks (malloc) to free what is left.
//!
//! Linear probing with backward-shift deletion (no tombstones), after Knuth's
//! Algorithm R (TAOCP 6.4): the load stays at most 3/4, so a lookup probes
//! about 2.5 slots on average when found and 8.5 when not. The table doubles
//! when full to that load; it never shrinks until the set is dropped.

use crate::os;
use core::ptr::NonNull;

/// One slot: a null `ptr` means empty (no chunk lives at address 0). The
/// pointer (not only its address) is kept so that `release` frees chunks
/// with their provenance.
#[derive(Clone, Copy)]
#[repr(C)]
struct Slot {
    ptr: *mut u8,
    size: usize,
}

impl Slot {
    #[inline(always)]
    fn addr(&self) -> usize {
        self.ptr as usize
    }
}

/// Bytes of the first table (one page: 256 slots).
const FIRST_BYTES: usize = 4096;
const PAGE: usize = 4096;

/// Address -> usable size of the live chunks of one arena.
pub(crate) struct ChunkSet {
    /// `slots` entries mapped from the OS (dangling when `slots == 0`).
    /// Invariant: every live entry is reachable from its home slot
    /// (`home(addr)`) by a run of non-empty slots (linear probing).
    table: NonNull<Slot>,
    /// Number of slots: 0 or a power of two, at least `FIRST_BYTES / 16`.
    slots: usize,
    /// Live entries. Invariant: `len * 4 <= slots * 3`.
    len: usize,
    /// Sum of the sizes of the live entries.
    bytes: usize,
}

// SAFETY: the table is this set's own OS mapping, reached only through it.
unsafe impl Send for ChunkSet {}

impl ChunkSet {
    /// An empty set; no memory until the first insert.
    pub const fn new() -> ChunkSet {
        ChunkSet {
            table: NonNull::dangling(),
            slots: 0,
            len: 0,
            bytes: 0,
        }
    }

    /// Live entries.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Sum of the usable sizes of the live entries.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Bytes of the table mapped from the OS (0 before the first insert).
    pub fn table_bytes(&self) -> usize {
        self.slots * core::mem::size_of::<Slot>()
    }

    #[inline(always)]
    fn home(&self, addr: usize) -> usize {
        // Fibonacci hashing of the address without its low (alignment) bits.
        let h = ((addr >> 3) as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        (h >> (64 - self.slots.trailing_zeros())) as usize
    }

    #[inline(always)]
    fn slot(&self, i: usize) -> *mut Slot {
        debug_assert!(i < self.slots);
        // SAFETY: `i < slots`, inside the table mapping.
        unsafe { self.table.as_ptr().add(i) }
    }

    /// The slot index holding `addr`, if present.
    #[inline]
    fn find(&self, addr: usize) -> Option<usize> {
        if self.slots == 0 || addr == 0 {
            return None;
        }
        let mask = self.slots - 1;
        let mut i = self.home(addr);
        loop {
            // SAFETY: `i <= mask`, a slot of the table.
            let s = unsafe { *self.slot(i) };
            if s.addr() == addr {
                return Some(i);
            }
            if s.ptr.is_null() {
                return None;
            }
            i = (i + 1) & mask;
        }
    }

    /// The usable size recorded for `addr`, if it is a live entry.
    #[inline]
    pub fn get(&self, addr: usize) -> Option<usize> {
        // SAFETY: `find` returns an index of a live slot.
        self.find(addr).map(|i| unsafe { (*self.slot(i)).size })
    }

    /// Makes room for one more entry, growing the table if needed.
    ///
    /// # Errors
    /// `Err(bytes)` with the size of the table the OS refused; the set is
    /// unchanged then.
    pub fn reserve_one(&mut self) -> Result<(), usize> {
        if (self.len + 1) * 4 <= self.slots * 3 {
            return Ok(());
        }
        let new_bytes = (self.table_bytes() * 2).max(FIRST_BYTES);
        let new = os::map_aligned(new_bytes, PAGE).ok_or(new_bytes)?;
        let old = core::mem::replace(
            self,
            ChunkSet {
                table: new.cast(),
                slots: new_bytes / core::mem::size_of::<Slot>(),
                len: 0,
                bytes: 0,
            },
        );
        for i in 0..old.slots {
            // SAFETY: `i < old.slots`, a slot of the old table.
            let s = unsafe { *old.slot(i) };
            if !s.ptr.is_null() {
                self.insert_new(s.ptr, s.size);
            }
        }
        drop(old);
        Ok(())
    }

    /// Adds `ptr` (not present, not null) with `size`.
    ///
    /// # Panics
    /// Debug builds: when no room was reserved ([`reserve_one`](Self::reserve_one)).
    pub fn insert_new(&mut self, ptr: *mut u8, size: usize) {
        let addr = ptr as usize;
        debug_assert!(addr != 0 && (self.len + 1) * 4 <= self.slots * 3);
        let mask = self.slots - 1;
        let mut i = self.home(addr);
        // SAFETY: indices are masked to the table; the load is below 3/4, so
        // an empty slot exists.
        unsafe {
            while !(*self.slot(i)).ptr.is_null() {
                debug_assert!((*self.slot(i)).addr() != addr);
                i = (i + 1) & mask;
            }
            *self.slot(i) = Slot { ptr, size };
        }
        self.len += 1;
        self.bytes += size;
    }

    /// Removes `addr`; returns its size, or `None` (and nothing changes)
    /// when it is not a live entry.
    #[inline]
    pub fn remove(&mut self, addr: usize) -> Option<usize> {
        let mut hole = self.find(addr)?;
        let mask = self.slots - 1;
        // SAFETY: every index is masked to the table.
        unsafe {
            let size = (*self.slot(hole)).size;
            // Backward shift: move later entries of the run into the hole
            // when their home does not lie cyclically in (hole, j].
            let mut j = hole;
            loop {
                j = (j + 1) & mask;
                let s = *self.slot(j);
                if s.ptr.is_null() {
                    break;
                }
                let home = self.home(s.addr());
                let stays = if hole <= j {
                    hole < home && home <= j
                } else {
                    hole < home || home <= j
                };
                if !stays {
                    *self.slot(hole) = s;
                    hole = j;
                }
            }
            *self.slot(hole) = Slot {
                ptr: core::ptr::null_mut(),
                size: 0,
            };
            self.len -= 1;
            self.bytes -= size;
            Some(size)
        }
    }

    /// Every live entry, as `(ptr, size)`, in table order.
    pub fn iter(&self) -> impl Iterator<Item = (*mut u8, usize)> + '_ {
        (0..self.slots)
            // SAFETY: `i < slots`, a slot of the table.
            .map(move |i| unsafe { *self.slot(i) })
            .filter(|s| !s.ptr.is_null())
            .map(|s| (s.ptr, s.size))
    }
}

impl Drop for ChunkSet {
    fn drop(&mut self) {
        if self.slots != 0 {
            // SAFETY: the table is one live mapping of `table_bytes()` bytes
            // from `map_aligned(.., PAGE)`, unreachable once the set is gone.
            unsafe { os::unmap(self.table.cast(), self.table_bytes(), PAGE) }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_find_remove_against_a_model() {
        let mut set = ChunkSet::new();
        let mut model = std::collections::BTreeMap::new();
        let n = if cfg!(miri) { 64 } else { 5000 };
        let mut x: u64 = 0x1234_5678;
        for step in 0..n * 3 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // Clustered addresses, as an allocator hands out.
            let addr = 0x7f00_0000_0000usize + ((x as usize % (n * 2)) << 4);
            match model.entry(addr) {
                std::collections::btree_map::Entry::Occupied(e) => {
                    if step % 3 != 0 {
                        assert_eq!(set.remove(addr), Some(e.remove()));
                    }
                }
                std::collections::btree_map::Entry::Vacant(e) => {
                    set.reserve_one().unwrap();
                    set.insert_new(core::ptr::without_provenance_mut(addr), step);
                    e.insert(step);
                }
            }
            assert_eq!(set.len(), model.len());
        }
        for (&a, &s) in &model {
            assert_eq!(set.get(a), Some(s));
            assert_eq!(set.get(a + 8), None);
        }
        assert_eq!(set.bytes(), model.values().sum::<usize>());
        let mut seen: Vec<_> = set.iter().map(|(p, s)| (p as usize, s)).collect();
        seen.sort_unstable();
        assert_eq!(seen, model.into_iter().collect::<Vec<_>>());
        assert_eq!(set.remove(8), None);
    }
}
