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
pub struct Info {
    /// The capacity the arena was made with: the most `heap` may reach.
    pub capacity: usize,
    /// Bytes mapped from the OS for pools (what capacity bounds).
    pub heap: usize,
    /// Sum of the slab sizes of live chunks.
    pub allocated: usize,
    /// Bytes of bookkeeping mapped beside the pools: segment headers and the
    /// arena's slab table. (The process-wide segment map is not included.)
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
