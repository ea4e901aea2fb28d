//! Pools: a run of pages inside a segment, cut into chunks of one slab.
//!
//! A pool has no per-chunk header. Its own header lives in the segment header
//! (see `segment.rs`), found in O(1) from a chunk address. Free chunks are
//! linked through their first word (intrusive free list); chunks never handed
//! out yet are carved lazily from `fresh`, so a new pool costs no writes and
//! its untouched pages stay zero and unbacked.

use crate::size_class::PAGE;
use core::ptr::null_mut;
use core::sync::atomic::AtomicPtr;

/// The link stored inside a free chunk.
#[repr(C)]
pub(crate) struct FreeChunk {
    pub next: *mut FreeChunk,
}

/// First pool of a slab: this many bytes (or one chunk, if larger).
pub(crate) const FIRST_POOL_BYTES: usize = 4 * PAGE;
/// Pools double per slab up to this size (or one chunk, if larger).
pub(crate) const MAX_POOL_BYTES: usize = 64 * PAGE;

/// Bytes of the next pool of a slab of `chunk` bytes when the slab already
/// holds `held` pools and `room` bytes of capacity are left, rounded to whole
/// pages; 0 when not even one chunk fits in `room`.
///
/// Rule: `min(FIRST_POOL_BYTES << held, MAX_POOL_BYTES)`, at least one chunk,
/// rounded up to a page multiple; then cut down to the largest page multiple
/// of `room` that still holds a whole number of chunks (at least one).
pub(crate) fn pool_bytes(chunk: usize, held: u32, room: usize) -> usize {
    let target = FIRST_POOL_BYTES
        .checked_shl(held.min(16))
        .unwrap_or(MAX_POOL_BYTES)
        .min(MAX_POOL_BYTES);
    let bytes = round_pages(target.max(chunk));
    // Only whole pages of the room can hold a pool.
    let room = room & !(PAGE - 1);
    if bytes <= room {
        return bytes;
    }
    // As many whole chunks as fit: `chunks * chunk <= room`, and room is a
    // page multiple, so rounding up to a page stays within it.
    let chunks = room / chunk;
    if chunks == 0 {
        0
    } else {
        round_pages(chunks * chunk)
    }
}

pub(crate) fn round_pages(n: usize) -> usize {
    (n + PAGE - 1) & !(PAGE - 1)
}

/// Exact divisibility test by a constant without a division: `x % d == 0`
/// iff the low `shift` bits of `x` are zero and `(x >> shift) * inv <= limit`,
/// where `d = odd << shift` and `inv` is the inverse of `odd` mod 2^64
/// (Granlund & Montgomery). One multiply, on the free path.
#[derive(Clone, Copy, Default)]
pub(crate) struct Divisor {
    shift: u32,
    inv: u64,
    limit: u64,
}

impl Divisor {
    pub fn new(d: usize) -> Divisor {
        let shift = d.trailing_zeros();
        let odd = (d >> shift) as u64;
        // Newton's iteration doubles the correct low bits each step.
        let mut inv = odd;
        for _ in 0..6 {
            inv = inv.wrapping_mul(2u64.wrapping_sub(odd.wrapping_mul(inv)));
        }
        Divisor {
            shift,
            inv,
            limit: u64::MAX / odd,
        }
    }

    #[inline(always)]
    pub fn divides(&self, x: usize) -> bool {
        let low = x & ((1usize << self.shift) - 1);
        low == 0 && ((x >> self.shift) as u64).wrapping_mul(self.inv) <= self.limit
    }
}

/// A pool header. One type serves the explicit `Arena` and the global
/// allocator's thread heaps; the cross-thread fields (`remote`) stay idle in
/// an `Arena`, costing its fast path nothing.
#[repr(C)]
pub(crate) struct Pool {
    /// Local free list (owner only).
    pub free: *mut FreeChunk,
    /// Next never-handed-out chunk; `fresh..end` is untouched, zero memory.
    pub fresh: *mut u8,
    pub end: *mut u8,
    /// Chunks handed out and not yet freed (owner's view).
    pub used: u32,
    /// Chunks the pool holds.
    pub capacity: u32,
    pub chunk_size: usize,
    /// First chunk; page-aligned.
    pub start: *mut u8,
    pub div: Divisor,
    /// Index in the slab table.
    pub slab: u32,
    /// Whether the pool is linked in its slab's list of pools with room.
    pub in_avail: bool,
    /// Whether this header slot describes a live pool.
    pub live: bool,
    /// First page (index inside the segment) and number of pages.
    pub first_page: u32,
    pub pages: usize,
    /// Links in the slab's list of pools with room.
    pub next: *mut Pool,
    pub prev: *mut Pool,
    /// Chunks freed by threads other than the owner (global allocator).
    pub remote: AtomicPtr<FreeChunk>,
    /// Link in the owner's queue of pools that became empty (global allocator).
    pub empty_next: *mut Pool,
    pub in_empty: bool,
}

impl Pool {
    /// A free slot (all-zero, as in a fresh segment). A fresh value per use,
    /// never shared, so its atomic is never aliased.
    #[allow(clippy::declare_interior_mutable_const)]
    pub const EMPTY: Pool = Pool {
        free: null_mut(),
        fresh: null_mut(),
        end: null_mut(),
        used: 0,
        capacity: 0,
        chunk_size: 0,
        start: null_mut(),
        div: Divisor {
            shift: 0,
            inv: 0,
            limit: 0,
        },
        slab: 0,
        in_avail: false,
        live: false,
        first_page: 0,
        pages: 0,
        next: null_mut(),
        prev: null_mut(),
        remote: AtomicPtr::new(null_mut()),
        empty_next: null_mut(),
        in_empty: false,
    };

    /// Makes this slot describe a fresh pool of `bytes` at `start`.
    pub fn init(&mut self, start: *mut u8, bytes: usize, chunk: usize, slab: usize, page: u32) {
        let capacity = bytes / chunk;
        *self = Pool {
            free: null_mut(),
            fresh: start,
            end: start.wrapping_add(capacity * chunk),
            used: 0,
            capacity: capacity as u32,
            chunk_size: chunk,
            start,
            div: Divisor::new(chunk),
            slab: slab as u32,
            in_avail: false,
            live: true,
            first_page: page,
            pages: bytes / PAGE,
            next: null_mut(),
            prev: null_mut(),
            remote: AtomicPtr::new(null_mut()),
            empty_next: null_mut(),
            in_empty: false,
        };
    }

    /// Whether `addr` is the start of a chunk this pool handed out at some
    /// point (inside the carved part, on a chunk boundary).
    #[inline(always)]
    pub fn is_chunk_start(&self, addr: usize) -> bool {
        let off = addr.wrapping_sub(self.start as usize);
        addr < self.fresh as usize
            && off < (self.end as usize - self.start as usize)
            && self.div.divides(off)
    }

    /// Like [`is_chunk_start`](Pool::is_chunk_start), reading only fields
    /// that stay fixed while the pool has a live chunk, so a thread other
    /// than the owner may call it for a chunk it holds.
    #[inline(always)]
    pub fn is_chunk_start_remote(&self, addr: usize) -> bool {
        let off = addr.wrapping_sub(self.start as usize);
        off < (self.end as usize - self.start as usize) && self.div.divides(off)
    }

    /// Moves the chunks other threads freed into the local free list; returns
    /// how many.
    pub fn collect_remote(&mut self) -> u32 {
        if self
            .remote
            .load(core::sync::atomic::Ordering::Relaxed)
            .is_null()
        {
            return 0;
        }
        let mut list = self
            .remote
            .swap(null_mut(), core::sync::atomic::Ordering::Acquire);
        let mut n = 0;
        while !list.is_null() {
            // SAFETY: remote-list members are free chunks of this pool, each
            // holding a link, published by the Release CAS that pushed them.
            let next = unsafe { (*list).next };
            // SAFETY: as above; the chunk is ours again and free.
            unsafe { (*list).next = self.free };
            self.free = list;
            list = next;
            n += 1;
        }
        self.used -= n;
        n
    }

    pub fn bytes(&self) -> usize {
        self.pages * PAGE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn divisor_matches_modulo() {
        for d in [8usize, 24, 72, 168, 4096, 5000, 12_345_672, 1 << 40] {
            let div = Divisor::new(d);
            for x in (0..d * 40)
                .step_by((d / 7).max(1))
                .chain([d * 3, d * 1000, usize::MAX - 7])
            {
                assert_eq!(div.divides(x), x % d == 0, "d {d} x {x}");
            }
        }
    }

    #[test]
    fn pool_sizes_double_to_cap_and_respect_room() {
        assert_eq!(pool_bytes(16, 0, usize::MAX), 4 * PAGE);
        assert_eq!(pool_bytes(16, 1, usize::MAX), 8 * PAGE);
        assert_eq!(pool_bytes(16, 10, usize::MAX), MAX_POOL_BYTES);
        assert_eq!(pool_bytes(1 << 20, 0, usize::MAX), 1 << 20);
        assert_eq!(pool_bytes(4096, 3, 5 * PAGE), 5 * PAGE);
        assert_eq!(pool_bytes(4096, 0, 4095), 0);
        assert_eq!(pool_bytes(5000, 0, 8192), 8192);
        assert_eq!(pool_bytes(5000, 0, 6000), 0);
        assert_eq!(pool_bytes(8, 0, 4196), PAGE);
    }
}
