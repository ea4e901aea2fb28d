//! The explicit [`Arena`]: the flist arena of the original design, the core
//! (`flist_core.rs`) with the arena policy: a hard capacity, empty pools
//! kept until [`Arena::trim`] or release, misuse reported as the seed says.
//! Over the `malloc` or `jemalloc` backend ([`ArenaBuilder::backend`]) the
//! core is closed and `backed.rs` serves the chunks, with the same contract.

use crate::backend::Backend;
use crate::error::Error;
use crate::flist_core::{Core, Policy};
use crate::segment_map::TAG_MASK;
use crate::size_class::{self, MAX_ARENA_SIZE};
use crate::stats::{Info, SlabUse};
use core::alloc::Layout;
use core::cell::Cell;
use core::marker::PhantomData;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicUsize, Ordering};

/// The arena policy: a fixed capacity, its own segment-map tag, and the
/// seed's rule that empty pools stay with the arena until trimmed.
pub(crate) struct ArenaPolicy {
    /// The most bytes of pools the arena may hold.
    capacity: usize,
    /// Unique among live arenas with high probability (see `next_tag`); the
    /// segment's owner pointer is checked as well.
    tag: usize,
    /// `Some` for an arena over malloc or jemalloc. Invariant: then the
    /// core is closed (`Core::create_closed`): it serves no size and owns no
    /// segment, and every chunk of the arena is in `backed`.
    backed: Option<backed::Backed>,
}

impl Policy for ArenaPolicy {
    const TRACKS_EMPTY: bool = false;

    fn tag(&self) -> usize {
        self.tag
    }

    fn room(&self, heap: usize) -> usize {
        self.capacity - heap
    }
}

static NEXT_TAG: AtomicUsize = AtomicUsize::new(2);

fn next_tag() -> usize {
    // Tags 0 (no segment), 1 (the global allocator) and `LARGE_TAG` (the C
    // library's large blocks) are reserved. After 2^21 - 3 arenas tags
    // repeat; the segment's owner pointer is checked as well, so two live
    // arenas sharing a tag still tell their pointers apart.
    let n = NEXT_TAG.fetch_add(1, Ordering::Relaxed);
    2 + n % (TAG_MASK - 2)
}

/// A single-threaded heap with a hard capacity, released in one go: the flist
/// arena of the original design.
///
/// Memory is taken from the OS in pools, each holding chunks of one slab size
/// (see [`slabs`](crate::slabs)). Pools stay with the arena (empty ones are
/// reused) until it is dropped or [`release`](Arena::release)d;
/// [`trim`](Arena::trim) hands empty pools back earlier. Before the arena
/// maps a new pool (once per eighth of growth, at least 4 MiB), the pages of
/// its sparse pools that hold no live chunk go back to the OS
/// (`MADV_DONTNEED`); their chunks stay the arena's and come back when their
/// pool runs dry, and they stay counted in the capacity. This is not in the
/// seed: a slab allocator cannot coalesce the holes a program leaves when it
/// frees most of its small chunks at random, as glibc's malloc does.
///
/// # Backends
///
/// [`Arena::builder`] picks the allocator the chunks come from, the seed's
/// backend setting: [`Backend::Flist`] (the default, described above),
/// [`Backend::Malloc`] (the C library's `malloc`) or [`Backend::Jemalloc`]
/// (a jemalloc arena of its own with an explicit tcache; cargo feature
/// `jemalloc`). The contract is the same on all three: the capacity, the
/// chunk range, every panic and its `try_` twin, [`chunk_size`](Arena::chunk_size),
/// [`info`](Arena::info), [`utilization`](Arena::utilization), [`trim`](Arena::trim),
/// release, the `Allocator` impl. What differs:
///
/// | | flist | malloc | jemalloc |
/// |---|---|---|---|
/// | capacity bounds | bytes of pools mapped | usable sizes of live chunks | usable sizes of live chunks |
/// | `chunk_size` | the slab | `malloc_usable_size` | `nallocx` (its size class) |
/// | foreign-pointer check | segment map + page map, O(1) | hash set of live chunks, O(1) expected | the same hash set |
/// | double free caught | the cheap cases (see [`free`](Arena::free)) | as a foreign pointer, unless the address was handed out again | the same |
/// | release | unmap the segments | `free` of every live chunk (a walk of the set) | `arena.<i>.destroy`, all at once |
///
/// The malloc and jemalloc arenas keep the set of their live chunks (address
/// and usable size, 16 bytes a slot, at most 3/4 full) in memory mapped from
/// the OS, counted in `info().overhead`.
///
/// **Not thread safe**, as the design says: `Arena` is `Send` (move it to
/// another thread) but not `Sync`, because every method mutates free lists
/// through `&self` without locks. Use one arena per thread, or the global
/// allocator [`Flist`](crate) for shared use.
///
/// ```
/// use flistalloc::Arena;
/// let arena = Arena::new(1 << 20);
/// let p = arena.alloc(67);
/// assert_eq!(arena.chunk_size(p.as_ptr()), 72);
/// // SAFETY: p came from this arena and is not used afterwards.
/// unsafe { arena.free(p.as_ptr()) };
/// arena.release();
/// ```
pub struct Arena {
    /// Invariant: a live core from `Core::create`, reached only through
    /// [`Arena::core`], which hands out one `&mut` at a time (checked in
    /// debug builds by `borrowed`).
    core: NonNull<Core<ArenaPolicy>>,
    /// Debug builds: where the live `&mut Core` was taken, if one is live.
    #[cfg(debug_assertions)]
    borrowed: Cell<Option<&'static core::panic::Location<'static>>>,
    /// `&self` methods mutate through `core`: not `Sync`.
    _not_sync: PhantomData<Cell<()>>,
}

/// The `&mut Core` of an [`Arena`], live while this guard is; in debug
/// builds, dropping it ends the borrow recorded in `Arena::borrowed`.
pub(crate) struct CoreRef<'a> {
    core: &'a mut Core<ArenaPolicy>,
    #[cfg(debug_assertions)]
    borrowed: &'a Cell<Option<&'static core::panic::Location<'static>>>,
}

impl core::ops::Deref for CoreRef<'_> {
    type Target = Core<ArenaPolicy>;
    fn deref(&self) -> &Core<ArenaPolicy> {
        self.core
    }
}

impl core::ops::DerefMut for CoreRef<'_> {
    fn deref_mut(&mut self) -> &mut Core<ArenaPolicy> {
        self.core
    }
}

#[cfg(debug_assertions)]
impl Drop for CoreRef<'_> {
    fn drop(&mut self) {
        self.borrowed.set(None);
    }
}

// SAFETY: the core and its segments belong to this Arena alone and hold no
// thread-affine state; moving the Arena moves sole access to them.
unsafe impl Send for Arena {}

impl Arena {
    /// An arena whose pools may take up to `capacity` bytes, with the chunk
    /// range 0 to `capacity`: a size is served when its pool still fits
    /// (pools are 4 KiB at least, so a capacity below that serves nothing,
    /// and a size near `capacity` needs a pool of at most `capacity` bytes).
    ///
    /// # Panics
    /// When `capacity > MAX_ARENA_SIZE` (1 TiB), or the OS refuses the few
    /// pages of bookkeeping.
    ///
    /// ```
    /// let arena = flistalloc::Arena::new(64 << 20);
    /// assert_eq!(arena.info().capacity, 64 << 20);
    /// ```
    #[track_caller]
    pub fn new(capacity: usize) -> Arena {
        match Self::try_new(capacity) {
            Ok(a) => a,
            Err(e) => fail(e),
        }
    }

    /// [`Arena::new`], returning an error instead of panicking.
    ///
    /// ```
    /// use flistalloc::{Arena, Error, MAX_ARENA_SIZE};
    /// assert!(matches!(Arena::try_new(MAX_ARENA_SIZE + 1), Err(Error::CapacityTooLarge { .. })));
    /// ```
    pub fn try_new(capacity: usize) -> Result<Arena, Error> {
        Self::builder(capacity).try_build()
    }

    /// A builder for an arena of `capacity` bytes: set the chunk range and
    /// the backend, then [`build`](ArenaBuilder::build). Without settings
    /// it builds what [`Arena::new`] does.
    ///
    /// ```
    /// use flistalloc::{Arena, Backend};
    /// let arena = Arena::builder(1 << 20)
    ///     .chunk_range(8, 4096)
    ///     .backend(Backend::Malloc)
    ///     .build();
    /// let p = arena.alloc(100);
    /// assert!(arena.chunk_size(p.as_ptr()) >= 100);
    /// // SAFETY: p is ours and not used afterwards.
    /// unsafe { arena.free(p.as_ptr()) };
    /// ```
    pub fn builder(capacity: usize) -> ArenaBuilder {
        ArenaBuilder {
            capacity,
            range: None,
            backend: Backend::Flist,
        }
    }

    /// An arena that serves only requested sizes in `min..=max`; other sizes
    /// panic in [`alloc`](Arena::alloc) and are `Err` in
    /// [`try_alloc`](Arena::try_alloc).
    ///
    /// # Panics
    /// On `capacity` above 1 TiB, `min > max` or `max` above 1 TiB.
    ///
    /// ```
    /// let arena = flistalloc::Arena::with_chunk_range(1 << 20, 8, 512);
    /// assert!(arena.try_alloc(4).is_err());
    /// assert!(arena.try_alloc(600).is_err());
    /// let p = arena.alloc(500);
    /// # unsafe { arena.free(p.as_ptr()) };
    /// ```
    #[track_caller]
    pub fn with_chunk_range(capacity: usize, min: usize, max: usize) -> Arena {
        Self::builder(capacity).chunk_range(min, max).build()
    }

    /// [`Arena::with_chunk_range`], returning an error instead of panicking.
    ///
    /// ```
    /// use flistalloc::{Arena, Error};
    /// assert_eq!(
    ///     Arena::try_with_chunk_range(1 << 20, 64, 8).err(),
    ///     Some(Error::InvalidChunkRange { min: 64, max: 8 })
    /// );
    /// ```
    pub fn try_with_chunk_range(capacity: usize, min: usize, max: usize) -> Result<Arena, Error> {
        Self::builder(capacity).chunk_range(min, max).try_build()
    }

    /// The backend the chunks come from.
    ///
    /// ```
    /// assert_eq!(flistalloc::Arena::new(1 << 20).backend(), flistalloc::Backend::Flist);
    /// ```
    pub fn backend(&self) -> Backend {
        match &self.core().policy.backed {
            None => Backend::Flist,
            Some(b) => b.backend(),
        }
    }

    /// The index of the jemalloc arena the chunks come from (for its
    /// `stats.arenas.<i>.*` through `mallctl`), on the jemalloc backend;
    /// `None` on the others.
    ///
    /// ```
    /// assert_eq!(flistalloc::Arena::new(1 << 20).jemalloc_arena(), None);
    /// ```
    pub fn jemalloc_arena(&self) -> Option<u32> {
        self.core().policy.backed.as_ref()?.jemalloc_arena()
    }

    /// The core, mutably, for the length of one method. In debug builds a
    /// second borrow while one is live panics naming where the first was
    /// taken (after talc's `TalcCell::borrow`).
    #[inline(always)]
    #[track_caller]
    pub(crate) fn core(&self) -> CoreRef<'_> {
        #[cfg(debug_assertions)]
        {
            if let Some(earlier) = self.borrowed.get() {
                panic!("flistalloc: Arena core borrowed again while borrowed at {earlier}");
            }
            self.borrowed.set(Some(core::panic::Location::caller()));
        }
        CoreRef {
            // SAFETY: the Arena is !Sync, so only this thread reaches the
            // core, and the `borrowed` check (debug builds) proves no other
            // `CoreRef` is live; no method keeps one across a call that
            // could re-enter the arena.
            core: unsafe { &mut *self.core.as_ptr() },
            #[cfg(debug_assertions)]
            borrowed: &self.borrowed,
        }
    }

    /// A chunk of at least `size` bytes, aligned to 8 (to more if the slab
    /// size allows, see [`chunk_size`](Arena::chunk_size)). Size 0 gives a
    /// unique, freeable chunk.
    ///
    /// # Panics
    /// When `size` is outside the chunk range, the arena would go over its
    /// capacity, or the OS refuses memory.
    ///
    /// ```
    /// let arena = flistalloc::Arena::new(1 << 20);
    /// let p = arena.alloc(24);
    /// assert_eq!(p.as_ptr() as usize % 8, 0);
    /// # unsafe { arena.free(p.as_ptr()) };
    /// ```
    #[inline]
    #[track_caller]
    pub fn alloc(&self, size: usize) -> NonNull<u8> {
        // The fast path: a size compare, one table load and the pop. Every
        // size it cannot serve (out of range, above 1 KiB, head pool dry,
        // another backend) goes on to the core's `alloc`, which does every
        // check.
        let r = {
            let mut core = self.core();
            if let Some(p) = NonNull::new(core.alloc_direct(size)) {
                return p;
            }
            core.alloc(size)
        };
        match r {
            Ok(p) => p,
            Err(e) => self.alloc_miss(e, 1),
        }
    }

    /// [`Arena::alloc`], returning an error instead of panicking.
    ///
    /// ```
    /// let arena = flistalloc::Arena::new(64 << 10);
    /// assert!(arena.try_alloc(1 << 20).is_err()); // above the range (= capacity)
    /// ```
    #[inline]
    pub fn try_alloc(&self, size: usize) -> Result<NonNull<u8>, Error> {
        // As in `alloc`: the fast path, else every check.
        let r = {
            let mut core = self.core();
            if let Some(p) = NonNull::new(core.alloc_direct(size)) {
                return Ok(p);
            }
            core.alloc(size)
        };
        match r {
            Ok(p) => Ok(p),
            Err(e) => self.try_alloc_miss(e, 1).map(|(p, _)| p),
        }
    }

    /// A chunk fitting `layout`: at least `layout.size()` bytes, aligned to
    /// `layout.align()` (at most the page, 4096).
    ///
    /// # Panics
    /// As [`alloc`](Arena::alloc), and on an alignment above 4096.
    ///
    /// ```
    /// use std::alloc::Layout;
    /// let arena = flistalloc::Arena::new(1 << 20);
    /// let p = arena.alloc_layout(Layout::from_size_align(100, 64).unwrap());
    /// assert_eq!(p.as_ptr() as usize % 64, 0);
    /// # unsafe { arena.free(p.as_ptr()) };
    /// ```
    #[inline]
    #[track_caller]
    pub fn alloc_layout(&self, layout: Layout) -> NonNull<u8> {
        // Every slab is a multiple of 8, so up to align 8 the size's chunk
        // fits the layout and the fast path of `alloc` serves it.
        let r = {
            let mut core = self.core();
            if layout.align() <= 8 {
                if let Some(p) = NonNull::new(core.alloc_direct(layout.size())) {
                    return p;
                }
            }
            core.alloc_layout(layout)
        };
        match r {
            Ok((p, _)) => p,
            Err(e) => self.alloc_miss(e, layout.align()),
        }
    }

    /// [`Arena::alloc_layout`], returning an error instead of panicking.
    ///
    /// ```
    /// use std::alloc::Layout;
    /// let arena = flistalloc::Arena::new(1 << 20);
    /// let big_align = Layout::from_size_align(64, 8192).unwrap();
    /// assert!(arena.try_alloc_layout(big_align).is_err());
    /// ```
    #[inline]
    pub fn try_alloc_layout(&self, layout: Layout) -> Result<NonNull<u8>, Error> {
        self.alloc_with_len(layout).map(|(p, _)| p)
    }

    /// A chunk for `layout` and its length (the slab, or the backend's
    /// usable size).
    #[inline]
    pub(crate) fn alloc_with_len(&self, layout: Layout) -> Result<(NonNull<u8>, usize), Error> {
        let r = {
            let mut core = self.core();
            if layout.align() <= 8 {
                if let Some(p) = NonNull::new(core.alloc_direct(layout.size())) {
                    // A direct pop is a size up to `SMALL_MAX` in range,
                    // from its own slab.
                    let idx = size_class::slab_index(layout.size());
                    return Ok((p, size_class::slab_size(idx)));
                }
            }
            core.alloc_layout(layout)
        };
        match r {
            Ok((p, idx)) => Ok((p, size_class::slab_size(idx))),
            Err(e) => self.try_alloc_miss(e, layout.align()),
        }
    }

    /// The error path of the allocations: on a malloc or jemalloc arena
    /// (whose closed core refuses every size), the allocation itself.
    #[cold]
    #[inline(never)]
    #[track_caller]
    fn alloc_miss(&self, e: Error, align: usize) -> NonNull<u8> {
        match self.try_alloc_miss(e, align) {
            Ok((p, _)) => p,
            Err(e) => fail(e),
        }
    }

    /// As `alloc_miss`, returning the error and the chunk's length.
    #[cold]
    #[inline(never)]
    fn try_alloc_miss(&self, e: Error, align: usize) -> Result<(NonNull<u8>, usize), Error> {
        match (e, &mut self.core().policy.backed) {
            // The closed core's range check carries the size.
            (Error::SizeOutOfRange { size, .. }, Some(b)) => b.alloc(size, align),
            _ => Err(e),
        }
    }

    /// The error path of `free`: on a malloc or jemalloc arena (whose
    /// closed core owns no segment), the free itself.
    ///
    /// # Safety
    /// As [`Arena::free`].
    #[cold]
    #[inline(never)]
    unsafe fn free_miss(&self, ptr: *mut u8, e: Error) -> Result<(), Error> {
        match (e, &mut self.core().policy.backed) {
            // SAFETY: any pointer may be passed (the set is checked first);
            // a chunk of ours is not used afterwards (caller).
            (Error::ForeignPointer { .. }, Some(b)) => unsafe { b.free(ptr) },
            _ => Err(e),
        }
    }

    /// Gives a chunk back to the arena.
    ///
    /// Detects and panics on: a null pointer; any pointer this arena did not
    /// hand out (another arena's or allocator's memory, the stack, the
    /// inside of a chunk), found from its address through the segment map and
    /// never by reading memory that is not ours; and, at the cost of one
    /// compare, a double free of the chunk freed last in its pool or of any
    /// chunk of a pool with no live chunk. Other double frees are not caught.
    ///
    /// On malloc and jemalloc the pointer is looked up in the arena's set of
    /// live chunks (O(1) expected) before the C allocator sees it: what is
    /// not there is reported as `ForeignPointer`, which includes a double
    /// free (unless the C allocator handed the address out again since).
    ///
    /// # Safety
    /// Any pointer value may be passed: what is not this arena's is reported.
    /// The caller guarantees that a chunk of this arena that is passed is no
    /// longer used afterwards, and that it is not already free (only some
    /// double frees are caught, see above; an uncaught one corrupts the arena).
    ///
    /// # Panics
    /// On the misuse listed above.
    ///
    /// ```
    /// let arena = flistalloc::Arena::new(1 << 20);
    /// let p = arena.alloc(8);
    /// // SAFETY: p is ours and not used afterwards.
    /// unsafe { arena.free(p.as_ptr()) };
    /// ```
    #[inline]
    #[track_caller]
    pub unsafe fn free(&self, ptr: *mut u8) {
        // SAFETY: any pointer may be passed (the core checks it against
        // the segment map); a chunk of ours is no longer used (caller).
        let r = unsafe { self.core().free(ptr) };
        if let Err(e) = r {
            // SAFETY: as above, for the backend's set.
            if let Err(e) = unsafe { self.free_miss(ptr, e) } {
                fail(e)
            }
        }
    }

    /// [`Arena::free`], returning the misuse as an error instead of
    /// panicking (the arena is unchanged then).
    ///
    /// # Safety
    /// As [`Arena::free`].
    ///
    /// ```
    /// let arena = flistalloc::Arena::new(1 << 20);
    /// let mut x = 5u64;
    /// // SAFETY: any pointer may be passed; a foreign one is reported.
    /// let err = unsafe { arena.try_free(&mut x as *mut u64 as *mut u8) };
    /// assert!(matches!(err, Err(flistalloc::Error::ForeignPointer { .. })));
    /// ```
    #[inline]
    pub unsafe fn try_free(&self, ptr: *mut u8) -> Result<(), Error> {
        // SAFETY: as in `free`: the core checks the pointer, the caller
        // promises a chunk of ours is no longer used.
        let r = unsafe { self.core().free(ptr) };
        match r {
            Ok(()) => Ok(()),
            // SAFETY: as above, for the backend's set.
            Err(e) => unsafe { self.free_miss(ptr, e) },
        }
    }

    /// The size of the chunk at `ptr` (its slab; on malloc and jemalloc the
    /// backend's usable size), at least what was asked, all of it usable.
    ///
    /// # Panics
    /// When `ptr` is not a chunk this arena handed out.
    ///
    /// ```
    /// let arena = flistalloc::Arena::new(1 << 20);
    /// let p = arena.alloc(1000);
    /// assert_eq!(arena.chunk_size(p.as_ptr()), flistalloc::suitable_slab(1000));
    /// # unsafe { arena.free(p.as_ptr()) };
    /// ```
    #[track_caller]
    pub fn chunk_size(&self, ptr: *const u8) -> usize {
        match self.try_chunk_size(ptr) {
            Ok(n) => n,
            Err(e) => fail(e),
        }
    }

    pub(crate) fn try_chunk_size(&self, ptr: *const u8) -> Result<usize, Error> {
        let core = self.core();
        match &core.policy.backed {
            None => core.chunk_size(ptr),
            Some(b) => b.chunk_size(ptr),
        }
    }

    /// The slab sizes (same as [`flistalloc::slabs`](crate::slabs)).
    ///
    /// ```
    /// let arena = flistalloc::Arena::new(1 << 20);
    /// assert_eq!(arena.slabs(), flistalloc::slabs());
    /// ```
    pub fn slabs(&self) -> &'static [usize] {
        size_class::slabs()
    }

    /// Capacity, heap, allocated and overhead figures (see [`Info`]).
    ///
    /// ```
    /// let arena = flistalloc::Arena::new(1 << 20);
    /// assert_eq!(arena.info().heap, 0);
    /// ```
    pub fn info(&self) -> Info {
        let core = self.core();
        let info = core.info(core.policy.capacity);
        match &core.policy.backed {
            None => info,
            Some(b) => Info {
                heap: b.held(),
                allocated: b.held(),
                overhead: info.overhead + b.bookkeeping(),
                ..info
            },
        }
    }

    /// Per slab: chunks in use, chunks held, and their ratio; only slabs that
    /// hold pools, by increasing size. On malloc and jemalloc: the live
    /// chunks grouped by the flist slab their usable size falls in (the
    /// smallest slab at least that size), with `held == in_use`, so the
    /// figures compare across backends.
    ///
    /// ```
    /// let arena = flistalloc::Arena::new(1 << 20);
    /// assert!(arena.utilization().is_empty());
    /// ```
    pub fn utilization(&self) -> Vec<SlabUse> {
        let core = self.core();
        match &core.policy.backed {
            None => core.utilization(),
            Some(b) => b.utilization(),
        }
    }

    /// Hands empty pools back to the OS (and segments left empty); returns
    /// the bytes given back, the drop in `info().heap`. On jemalloc it purges
    /// the arena's unused dirty pages (`arena.<i>.purge`), on malloc it does
    /// nothing (glibc's heap is the process's); both hold no empty chunk and
    /// return 0.
    ///
    /// ```
    /// let arena = flistalloc::Arena::new(1 << 20);
    /// let p = arena.alloc(64);
    /// unsafe { arena.free(p.as_ptr()) };
    /// assert_eq!(arena.trim(), 16384);
    /// assert_eq!(arena.info().heap, 0);
    /// ```
    pub fn trim(&self) -> usize {
        let mut core = self.core();
        match &core.policy.backed {
            None => core.trim(),
            Some(b) => {
                b.trim();
                0
            }
        }
    }

    /// Returns all memory at once (the same as dropping the arena). Every
    /// chunk it handed out becomes invalid.
    ///
    /// flist unmaps the arena's segments (one `munmap` per 4 MiB segment);
    /// malloc calls `free` on every live chunk (a walk of the set of live
    /// chunks); jemalloc flushes and destroys the arena's tcache and then
    /// destroys its jemalloc arena (`arena.<i>.destroy`), discarding every
    /// chunk at once. The set's own pages go back to the OS.
    ///
    /// ```
    /// let arena = flistalloc::Arena::new(1 << 20);
    /// let _p = arena.alloc(64);
    /// arena.release();
    /// ```
    pub fn release(self) {
        drop(self)
    }
}

impl Drop for Arena {
    fn drop(&mut self) {
        // SAFETY: the core is ours; after drop no chunk may be used (the
        // borrow checker ties collections using `&Arena` to its lifetime).
        unsafe { Core::destroy(self.core) }
    }
}

impl core::fmt::Debug for Arena {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Arena").field("info", &self.info()).finish()
    }
}

#[cold]
#[inline(never)]
#[track_caller]
fn fail(e: Error) -> ! {
    panic!("flistalloc: {e}")
}

/// Settings of a new [`Arena`], from [`Arena::builder`]: the chunk range and
/// the backend. `Arena::builder(c).build()` is `Arena::new(c)`.
///
/// ```
/// use flistalloc::{Arena, Backend, Error};
/// let arena = Arena::builder(64 << 20).backend(Backend::Malloc).build();
/// assert_eq!(arena.backend(), Backend::Malloc);
/// let jemalloc = Arena::builder(64 << 20).backend(Backend::Jemalloc).try_build();
/// if cfg!(feature = "jemalloc") {
///     assert!(jemalloc.is_ok());
/// } else {
///     assert!(matches!(jemalloc, Err(Error::BackendUnavailable { .. })));
/// }
/// ```
#[derive(Debug, Clone, Copy)]
#[must_use = "an ArenaBuilder does nothing until `build` or `try_build`"]
pub struct ArenaBuilder {
    capacity: usize,
    range: Option<(usize, usize)>,
    backend: Backend,
}

impl ArenaBuilder {
    /// Serve only requested sizes in `min..=max` (bytes); by default
    /// `0..=capacity` (at most 1 TiB). Checked by `build`.
    pub fn chunk_range(mut self, min: usize, max: usize) -> ArenaBuilder {
        self.range = Some((min, max));
        self
    }

    /// Where the chunks come from; [`Backend::Flist`] by default.
    pub fn backend(mut self, backend: Backend) -> ArenaBuilder {
        self.backend = backend;
        self
    }

    /// The arena.
    ///
    /// # Panics
    /// As [`Arena::new`] and [`Arena::with_chunk_range`]: capacity above
    /// 1 TiB, `min > max`, `max` above 1 TiB, the OS refusing the arena's
    /// own pages (or jemalloc refusing a new arena); and on
    /// [`Backend::Jemalloc`] in a build without the `jemalloc` feature.
    #[track_caller]
    pub fn build(self) -> Arena {
        match self.try_build() {
            Ok(a) => a,
            Err(e) => fail(e),
        }
    }

    /// [`build`](ArenaBuilder::build), returning an error instead of
    /// panicking: `CapacityTooLarge`, `InvalidChunkRange`,
    /// `BackendUnavailable` or `OutOfMemory`.
    ///
    /// ```
    /// use flistalloc::{Arena, Backend, Error};
    /// let e = Arena::builder(1 << 20).chunk_range(9, 8).backend(Backend::Malloc).try_build();
    /// assert_eq!(e.err(), Some(Error::InvalidChunkRange { min: 9, max: 8 }));
    /// ```
    pub fn try_build(self) -> Result<Arena, Error> {
        let capacity = self.capacity;
        if capacity > MAX_ARENA_SIZE {
            return Err(Error::CapacityTooLarge { capacity });
        }
        let (min, max) = self.range.unwrap_or((0, capacity.min(MAX_ARENA_SIZE)));
        let core = match self.backend {
            Backend::Flist => Core::create(
                min,
                max,
                ArenaPolicy {
                    capacity,
                    tag: next_tag(),
                    backed: None,
                },
            )?,
            other => {
                if !other.available() {
                    return Err(Error::BackendUnavailable { backend: other });
                }
                if min > max || max > MAX_ARENA_SIZE {
                    return Err(Error::InvalidChunkRange { min, max });
                }
                Core::create_closed(ArenaPolicy {
                    capacity,
                    tag: next_tag(),
                    backed: Some(backed::Backed::new(other, capacity, min, max)?),
                })?
            }
        };
        Ok(Arena {
            core,
            #[cfg(debug_assertions)]
            borrowed: Cell::new(None),
            _not_sync: PhantomData,
        })
    }
}

mod allocator;
mod backed;

#[cfg(test)]
mod tests;
