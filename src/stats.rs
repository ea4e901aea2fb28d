//! Figures about an arena's memory.

/// Memory figures of an [`Arena`](crate::Arena), from [`Arena::info`](crate::Arena::info).
///
/// ```
/// let arena = flistalloc::Arena::new(1 << 20);
/// let p = arena.alloc(100);
/// let info = arena.info();
/// assert_eq!(info.capacity, 1 << 20);
/// assert_eq!(info.allocated, 104);           // slab size of the live chunk
/// assert_eq!(info.heap, 16384);               // the first pool of slab 104
/// # unsafe { arena.free(p.as_ptr()) };
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
///
/// On an arena over malloc or jemalloc (see [`Arena`](crate::Arena)'s
/// backends) the arena maps no pools: `heap` and `allocated` are both the sum
/// of the usable sizes of the live chunks, and `overhead` is the core's page
/// plus the table of live chunks.
pub struct Info {
    /// The capacity the arena was made with: the most `heap` may reach, in
    /// bytes.
    pub capacity: usize,
    /// Bytes mapped from the OS for pools (what capacity bounds); on malloc
    /// and jemalloc, the usable sizes of the live chunks.
    pub heap: usize,
    /// Sum of the slab sizes of live chunks (on malloc and jemalloc: of
    /// their usable sizes), in bytes.
    pub allocated: usize,
    /// Bytes of bookkeeping mapped beside the pools: segment headers and the
    /// arena's slab table (on malloc and jemalloc: the core's page and the
    /// table of live chunks). The process-wide segment map, and jemalloc's
    /// own metadata, are not included.
    pub overhead: usize,
}

/// How one slab of an [`Arena`](crate::Arena) is used, from
/// [`Arena::utilization`](crate::Arena::utilization).
///
/// ```
/// let arena = flistalloc::Arena::new(1 << 20);
/// let p = arena.alloc(64);
/// let u = arena.utilization();
/// assert_eq!(u[0].slab, 64);
/// assert_eq!(u[0].in_use, 1);
/// assert_eq!(u[0].held, 256);                 // a 16 KiB first pool
/// assert!((u[0].ratio - 1.0 / 256.0).abs() < 1e-9);
/// # unsafe { arena.free(p.as_ptr()) };
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SlabUse {
    /// The slab (chunk) size.
    pub slab: usize,
    /// Chunks handed out and not freed.
    pub in_use: usize,
    /// Chunks in the pools this slab holds.
    pub held: usize,
    /// `in_use / held`.
    pub ratio: f64,
}

use core::sync::atomic::{AtomicIsize, AtomicUsize, Ordering::Relaxed};

/// Process-wide counters of the global allocator, updated off the fast path
/// (when segments, pools or fallback blocks come and go), relaxed.
pub(crate) static MAPPED: AtomicIsize = AtomicIsize::new(0);
pub(crate) static POOL_BYTES: AtomicIsize = AtomicIsize::new(0);
pub(crate) static FALLBACK_LIVE: AtomicIsize = AtomicIsize::new(0);
pub(crate) static POOLS_IN_USE: AtomicIsize = AtomicIsize::new(0);
pub(crate) static POOLS_ABANDONED: AtomicIsize = AtomicIsize::new(0);
pub(crate) static POOLS_RETURNED: AtomicUsize = AtomicUsize::new(0);
pub(crate) static THREADS: AtomicIsize = AtomicIsize::new(0);
pub(crate) static RESERVE_BYTES: AtomicIsize = AtomicIsize::new(0);
pub(crate) static PURGED_BYTES: AtomicUsize = AtomicUsize::new(0);

/// Counts pool bytes and pools coming (positive) or going (negative), and
/// segment bytes mapped or unmapped, for the global allocator's cores.
pub(crate) fn count(pool_bytes: isize, pools: isize, segment_bytes: isize) {
    if segment_bytes != 0 {
        MAPPED.fetch_add(segment_bytes, Relaxed);
    }
    if pools != 0 {
        POOL_BYTES.fetch_add(pool_bytes, Relaxed);
        POOLS_IN_USE.fetch_add(pools, Relaxed);
        if pools < 0 {
            POOLS_RETURNED.fetch_add((-pools) as usize, Relaxed);
        }
    }
}

fn get(c: &AtomicIsize) -> usize {
    c.load(Relaxed).max(0) as usize
}

/// Process-wide figures of the global allocator [`Flist`](crate::Flist), from
/// [`stats`](crate::stats). Counters are updated when pools, segments and
/// fallback blocks come and go, never per small allocation, so they cost the
/// fast path nothing; `flist_pool_bytes` counts whole pools, not live chunks.
///
/// ```
/// let s = flistalloc::stats();
/// assert!(s.mapped >= s.flist_pool_bytes);
/// ```
///
/// The struct is `#[non_exhaustive]`: fields are added as the allocator
/// grows (`purged_bytes` was), so it is read, never built, outside this
/// crate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Stats {
    /// Bytes of segments mapped from the OS for the global allocator.
    pub mapped: usize,
    /// Bytes in flist pools in use (live chunks plus the free room of their pools).
    pub flist_pool_bytes: usize,
    /// Bytes live in the fallback backend (large or over-aligned blocks).
    pub fallback_live: usize,
    /// Pools in use, held by live threads or abandoned.
    pub pools_in_use: usize,
    /// Pools in segments abandoned by exited threads, not yet adopted.
    pub pools_abandoned: usize,
    /// Pools returned to the OS so far (cumulative).
    pub pools_returned: usize,
    /// Threads that have a flist heap now.
    pub threads: usize,
    /// Bytes of the pools on the thread heaps' empty-pool reserves (idle
    /// heaps' included), summed over all heaps: memory kept mapped for
    /// reuse, at most 2 MiB (and 512 pools) per heap by default. Pools decommitted by
    /// a reclaim over the budget stay counted until they leave the reserve,
    /// so this is an upper bound on the empty bytes held.
    pub reserve_bytes: usize,
    /// Bytes of wholly free pages inside pools that still hold live chunks
    /// given back to the OS so far (cumulative): after a program frees most
    /// of its small blocks at random, a thread heap decommits the pages of
    /// its sparse pools that hold no live chunk before it maps new pools.
    /// They stay counted in `flist_pool_bytes` (and the budget); a pool
    /// faults them in again when it needs them.
    pub purged_bytes: usize,
}

pub(crate) fn snapshot() -> Stats {
    Stats {
        mapped: get(&MAPPED),
        flist_pool_bytes: get(&POOL_BYTES),
        fallback_live: get(&FALLBACK_LIVE),
        pools_in_use: get(&POOLS_IN_USE),
        pools_abandoned: get(&POOLS_ABANDONED),
        pools_returned: POOLS_RETURNED.load(Relaxed),
        threads: get(&THREADS),
        reserve_bytes: get(&RESERVE_BYTES),
        purged_bytes: PURGED_BYTES.load(Relaxed),
    }
}
