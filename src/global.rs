//! [`Flist`], the `#[global_allocator]`: `GlobalAlloc` routing over the
//! thread cores, the fallback backend and the whole-process backends.
//!
//! # How it works
//! * **Per-thread cores.** Each thread allocates from its own flist core
//!   (`thread_core.rs`: the same core as [`Arena`](crate::Arena), with the
//!   thread policy), attached at its first allocation and detached at its
//!   exit (`threads.rs`).
//! * **Routing by address.** A pointer is flist memory iff the segment map
//!   says so; everything else came from the fallback backend. So a block is
//!   always freed by the allocator that made it, even one allocated after its
//!   thread's core was detached (such late allocations go to the fallback).
//! * **Remote frees** (`remote.rs`): a chunk freed by a thread that does not
//!   own its segment goes onto the pool's atomic remote list, and the first
//!   such free queues the pool on its owner. The owner takes a dry pool's
//!   own list in its allocation slow path, and collects its whole queue
//!   when a slab has no pool with room, when one of its own frees empties a
//!   pool, at [`trim`] and at thread exit, so pools emptied remotely fall
//!   under the reserve bound.
//! * **Thread exit**: the exiting core collects its queue and remote lists,
//!   returns empty pools and segments to the OS, and puts segments that
//!   still hold live chunks on the abandoned list (`abandoned.rs`); threads
//!   adopt them when they need a pool, or when they free into one.
//! * **Memory held**: a core keeps a reserve of empty pools (512 pools and
//!   2 MiB by default, see `config.rs`), then hands the oldest back
//!   (`MADV_DONTNEED`, so RSS drops; a segment left with no pool is
//!   unmapped). Over the budget the reserve is given back before an
//!   allocation fails. [`trim`] does it at once.

mod abandoned;
mod budget;
pub(crate) mod clib;
mod remote;
mod thread_core;
mod threads;

use crate::backend::{self, Backend, FALLBACK};
use crate::config::Config;
use crate::flist_core::{pool_of_chunk, segment_of};
use crate::msg::die;
use crate::segment_map::{self, GLOBAL_TAG, TAG_MASK};
use crate::size_class::{self, LARGEST_FLIST_SIZE, PAGE, SMALL_MAX};
use crate::stats::{self, Stats};
use core::alloc::{GlobalAlloc, Layout};
use core::ptr::null_mut;
use core::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use thread_core::ThreadCore;
use threads::DETACHED;

/// The global allocator. One line makes a program use it:
///
/// ```
/// #[global_allocator]
/// static GLOBAL: flistalloc::Flist = flistalloc::Flist::new();
///
/// fn main() {
///     let v: Vec<u64> = (0..1000).collect();
///     assert_eq!(v.iter().sum::<u64>(), 499_500);
/// }
/// ```
///
/// The backend is chosen once per process, at the first allocation: by
/// `FLISTALLOC_BACKEND=flist|malloc|jemalloc` (default `flist`) for
/// [`Flist::new`], or fixed by [`Flist::with_backend`]. `FLISTALLOC_CAPACITY`
/// (bytes, or with a K/M/G/T suffix; default and maximum 1 TiB) caps the
/// memory it uses; past it, allocation returns null. The README lists every
/// variable.
pub struct Flist {
    /// The backend fixed at compile time, or `None` to read the environment.
    fixed: Option<Backend>,
}

impl Flist {
    /// A global allocator whose backend comes from `FLISTALLOC_BACKEND`.
    ///
    /// ```
    /// static A: flistalloc::Flist = flistalloc::Flist::new();
    /// ```
    pub const fn new() -> Flist {
        Flist { fixed: None }
    }

    /// A global allocator with the backend fixed at compile time
    /// (`FLISTALLOC_BACKEND` is ignored; the other variables still apply).
    ///
    /// ```
    /// use flistalloc::{Backend, Flist};
    /// static A: Flist = Flist::with_backend(Backend::Malloc);
    /// ```
    pub const fn with_backend(backend: Backend) -> Flist {
        Flist {
            fixed: Some(backend),
        }
    }
}

impl Default for Flist {
    fn default() -> Self {
        Self::new()
    }
}

// ---------------------------------------------------------------- configuration

/// 0 until the configuration is read, then a `Backend` as u8.
static BACKEND: AtomicU8 = AtomicU8::new(0);
/// 0: not read; 1: being read; 2: read.
static INIT: AtomicU8 = AtomicU8::new(0);
/// Whether every allocation is counted against the budget (whole-process
/// backends with `FLISTALLOC_CAPACITY` set).
static COUNT_ALL: AtomicBool = AtomicBool::new(false);
/// The whole-process backend (`Backend::Malloc` or `Backend::Jemalloc` as
/// u8) when its blocks go uncounted (no `FLISTALLOC_CAPACITY`), else 0
/// (configuration not read yet, the flist backend, or counted). Written once,
/// with `BACKEND`, before `INIT` says the configuration is read. The slow
/// paths test it first, so an uncounted whole-process backend costs one load
/// and a branch before the backend's own function.
static PLAIN: AtomicU8 = AtomicU8::new(0);

/// The backend serving this process (reading the configuration now if
/// nothing has been allocated yet).
///
/// ```
/// // Under `FLISTALLOC_BACKEND=malloc` this says Malloc; by default Flist,
/// // when Flist is the global allocator.
/// let _b: flistalloc::Backend = flistalloc::backend();
/// ```
pub fn backend() -> Backend {
    Backend::from_u8(decided(None))
}

#[inline(always)]
fn decided(fixed: Option<Backend>) -> u8 {
    let b = BACKEND.load(Ordering::Acquire);
    if b != 0 {
        b
    } else {
        decide(fixed)
    }
}

/// Reads the configuration once (the first caller does; others wait).
#[cold]
fn decide(fixed: Option<Backend>) -> u8 {
    if INIT
        .compare_exchange(0, 1, Ordering::AcqRel, Ordering::Acquire)
        .is_ok()
    {
        let config = Config::from_env(fixed);
        if let Some(limit) = config.capacity {
            budget::set_limit(limit);
            COUNT_ALL.store(true, Ordering::Relaxed);
        }
        threads::init(
            config.reserve_pools,
            config.reserve_bytes,
            config.purge_delay_ms,
        );
        if config.backend != Backend::Flist && config.capacity.is_none() {
            PLAIN.store(config.backend as u8, Ordering::Relaxed);
        }
        BACKEND.store(config.backend as u8, Ordering::Release);
        INIT.store(2, Ordering::Release);
    } else {
        while INIT.load(Ordering::Acquire) != 2 {
            core::hint::spin_loop();
        }
    }
    BACKEND.load(Ordering::Acquire)
}

// ---------------------------------------------------------------- alloc / free

#[inline(always)]
fn is_flist_layout(layout: &Layout) -> bool {
    layout.size() <= LARGEST_FLIST_SIZE && layout.align() <= PAGE
}

/// Allocates from the fallback, counted in the budget.
#[inline(never)]
fn fallback_alloc(layout: Layout, zeroed: bool) -> *mut u8 {
    let core = threads::current();
    // SAFETY: this thread's live core, if any; no `&mut` to it is alive in
    // this frame (the allocator does not re-enter itself).
    threads::purge_expired((core as usize > DETACHED).then(|| unsafe { &(*core).policy }));
    if !budget::take(layout.size()) {
        // Over the budget: give back this thread's empty reserve and
        // decommit every other heap's, then retry once.
        let reclaimed = if (core as usize) > DETACHED {
            // SAFETY: this thread's live core, not otherwise borrowed here.
            thread_core::reclaim_everywhere(unsafe { &mut *core })
        } else {
            threads::decommit_reserves(core::ptr::null()) > 0
        };
        if !reclaimed || !budget::take(layout.size()) {
            return null_mut();
        }
    }
    let p = backend::alloc(FALLBACK, layout, zeroed);
    if p.is_null() {
        budget::give(layout.size());
    } else {
        stats::FALLBACK_LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
    }
    p
}

/// # Safety
/// `ptr` is a live fallback block of `layout`.
#[inline(never)]
unsafe fn fallback_free(ptr: *mut u8, layout: Layout) {
    // SAFETY: `ptr` is a live fallback block of `layout` (precondition),
    // and FALLBACK is the backend that made every fallback block.
    unsafe { backend::free(FALLBACK, ptr, layout) };
    budget::give(layout.size());
    stats::FALLBACK_LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
}

/// Whole-process backends: everything goes to malloc or jemalloc, counted in
/// the budget only when `FLISTALLOC_CAPACITY` is set. Inlined into the slow
/// paths, with the counted case out of line, so an uncounted call costs a
/// load and a branch before the backend's own function (the `--direct`
/// columns of `compare` measure what is left).
#[inline(always)]
fn whole_alloc(b: u8, layout: Layout, zeroed: bool) -> *mut u8 {
    if COUNT_ALL.load(Ordering::Relaxed) {
        return whole_alloc_counted(b, layout, zeroed);
    }
    backend::alloc(Backend::from_u8(b), layout, zeroed)
}

#[cold]
#[inline(never)]
fn whole_alloc_counted(b: u8, layout: Layout, zeroed: bool) -> *mut u8 {
    if !budget::take(layout.size()) {
        return null_mut();
    }
    let p = backend::alloc(Backend::from_u8(b), layout, zeroed);
    if p.is_null() {
        budget::give(layout.size());
    }
    p
}

/// An flist allocation of a layout of at most `LARGEST_FLIST_SIZE` bytes and
/// alignment at most the page.
#[inline(always)]
fn flist_alloc(layout: Layout, zeroed: bool) -> *mut u8 {
    let Some(idx) = size_class::slab_index_aligned(layout.size(), layout.align()) else {
        return fallback_alloc(layout, zeroed);
    };
    let core = threads::current();
    if (core as usize) > DETACHED {
        // SAFETY: this thread's live core; idx is a slab it serves (layouts
        // here are at most LARGEST_FLIST_SIZE with align <= PAGE).
        let p = unsafe { (*core).pop_fast(idx) };
        if !p.is_null() {
            if zeroed {
                // SAFETY: the chunk holds at least layout.size() bytes.
                unsafe { p.write_bytes(0, layout.size()) };
            }
            return p;
        }
    }
    flist_alloc_slow(layout, zeroed, idx)
}

#[inline(never)]
fn flist_alloc_slow(layout: Layout, zeroed: bool, idx: usize) -> *mut u8 {
    let core = threads::attach();
    if core.is_null() {
        return fallback_alloc(layout, zeroed);
    }
    // SAFETY: `core` is this thread's live core; no other reference to it
    // exists (the allocator does not re-enter itself); idx is a slab every
    // thread core serves.
    match unsafe { (*core).alloc_index(idx) } {
        Ok((p, fresh)) => {
            if zeroed && !fresh {
                // SAFETY: the chunk holds at least layout.size() bytes.
                unsafe { p.as_ptr().write_bytes(0, layout.size()) };
            }
            p.as_ptr()
        }
        Err(_) => null_mut(),
    }
}

/// Frees a chunk of a global segment (`entry` is its segment-map entry).
///
/// # Safety
/// `ptr` is a live block this allocator handed out, or misuse to report.
unsafe fn flist_free(entry: usize, ptr: *mut u8) {
    let addr = ptr as usize;
    if entry & TAG_MASK != GLOBAL_TAG {
        die(
            b"dealloc of memory owned by an explicit flistalloc::Arena, at ",
            addr,
        );
    }
    let seg = segment_of(entry, addr);
    let core = threads::current();
    // SAFETY: the map says `seg` is a live global segment covering addr.
    let owner = unsafe { (*seg).owner_relaxed() };
    if owner != core.cast() || (core as usize) <= DETACHED {
        // SAFETY: as above; the caller hands the chunk back.
        if !unsafe { remote::free(seg, entry, addr) } {
            return;
        }
        // Adopted: the segment is ours now, free locally below.
    }
    let core = threads::current();
    // SAFETY: the segment is ours (only we set or clear our ownership), so
    // its page map and pools are ours to read and write.
    unsafe {
        let Some(pool) = pool_of_chunk(seg, entry, addr) else {
            die(
                b"free of a pointer that is not a live flist chunk (an interior pointer, or memory freed before): ",
                addr,
            )
        };
        if (*core).free_in_pool(pool, addr).is_err() {
            die(
                b"double free (free or realloc of a chunk already free): ",
                addr,
            );
        }
    }
}

impl Flist {
    /// Everything the inlined `alloc` did not serve. A thin dispatcher: an
    /// uncounted whole-process backend (`PLAIN`) is one load, a branch and a
    /// tail call into the backend, with no frame of its own (measured with
    /// callgrind: 28 instructions of dispatch per allocation before, when
    /// this read `BACKEND` and `COUNT_ALL` and kept the first-use path in
    /// line); everything else is out of line.
    #[inline(never)]
    unsafe fn alloc_slow(&self, layout: Layout) -> *mut u8 {
        let plain = PLAIN.load(Ordering::Relaxed);
        #[cfg(feature = "jemalloc")]
        if plain == Backend::Jemalloc as u8 {
            return backend::jemalloc::alloc(layout);
        }
        if plain == Backend::Malloc as u8 {
            return backend::malloc::alloc(layout);
        }
        self.alloc_rest(layout)
    }

    /// `alloc_slow` for the flist backend, a counted whole-process backend,
    /// or before the configuration is read.
    #[inline(never)]
    fn alloc_rest(&self, layout: Layout) -> *mut u8 {
        let b = decided(self.fixed);
        if b != Backend::Flist as u8 {
            return whole_alloc(b, layout, false);
        }
        flist_alloc_any(layout)
    }

    /// As [`alloc_slow`](Flist::alloc_slow), for `dealloc`.
    ///
    /// # Safety
    /// `ptr` is a live block of this allocator with `layout` (GlobalAlloc).
    #[inline(never)]
    unsafe fn dealloc_slow(&self, ptr: *mut u8, layout: Layout) {
        let plain = PLAIN.load(Ordering::Relaxed);
        #[cfg(feature = "jemalloc")]
        if plain == Backend::Jemalloc as u8 {
            // SAFETY: PLAIN names the whole-process backend, which made
            // every block of this process's allocator: `ptr` is a live
            // jemalloc block of `layout` (precondition).
            return unsafe { backend::jemalloc::free(ptr, layout) };
        }
        if plain == Backend::Malloc as u8 {
            // SAFETY: as above, a live block of the malloc backend.
            return unsafe { backend::malloc::free(ptr) };
        }
        // SAFETY: the caller's GlobalAlloc contract, passed on.
        unsafe { dealloc_rest(ptr, layout) }
    }
}

/// `dealloc_slow` for the flist backend or a counted whole-process backend.
///
/// # Safety
/// `ptr` is a live block of this allocator with `layout` (GlobalAlloc).
#[inline(never)]
unsafe fn dealloc_rest(ptr: *mut u8, layout: Layout) {
    let b = BACKEND.load(Ordering::Relaxed);
    if b != Backend::Flist as u8 {
        if COUNT_ALL.load(Ordering::Relaxed) {
            budget::give(layout.size());
        }
        // SAFETY: under a whole-process backend every block is its own.
        return unsafe { backend::free(Backend::from_u8(b), ptr, layout) };
    }
    // SAFETY: the caller's GlobalAlloc contract, passed on.
    unsafe { flist_dealloc_any(ptr, layout) }
}

/// An allocation under the flist backend: flist or fallback by layout.
#[inline(never)]
fn flist_alloc_any(layout: Layout) -> *mut u8 {
    if is_flist_layout(&layout) {
        flist_alloc(layout, false)
    } else {
        fallback_alloc(layout, false)
    }
}

/// A free under the flist backend: flist chunk or fallback block, by
/// address.
///
/// # Safety
/// `ptr` is a live block of this allocator with `layout` (GlobalAlloc).
#[inline(never)]
unsafe fn flist_dealloc_any(ptr: *mut u8, layout: Layout) {
    let entry = segment_map::lookup(ptr as usize);
    if entry == 0 {
        // SAFETY: not flist memory, so a fallback block (GlobalAlloc contract).
        unsafe { fallback_free(ptr, layout) }
    } else {
        // SAFETY: GlobalAlloc contract: a live block of ours.
        unsafe { flist_free(entry, ptr) }
    }
}

// SAFETY: alloc returns null or a block of at least `layout.size()` bytes
// aligned to `layout.align()` (slabs guarantee alignment up to the page;
// larger goes to the fallback); blocks stay valid until dealloc; dealloc
// routes each pointer by address to the allocator that made it; nothing here
// unwinds (misuse aborts) or calls the global allocator.
unsafe impl GlobalAlloc for Flist {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // No backend test: under a whole-process backend no thread core is
        // ever attached, so `current_fast()` is a stub and the slow
        // path dispatches on the backend. (The C library attaches its
        // start-up thread's core whatever the backend, so its build keeps
        // the test.)
        if layout.size() <= SMALL_MAX
            && layout.align() <= 8
            && (!cfg!(feature = "c-library")
                || BACKEND.load(Ordering::Acquire) == Backend::Flist as u8)
        {
            // SAFETY: this thread's live core or a stub (`current_fast`);
            // size <= SMALL_MAX.
            let p = unsafe { ThreadCore::pop_direct_raw(threads::current_fast(), layout.size()) };
            if !p.is_null() {
                return p;
            }
        }
        // SAFETY: the caller's GlobalAlloc contract, passed on.
        unsafe { self.alloc_slow(layout) }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let b = decided(self.fixed);
        if b != Backend::Flist as u8 {
            return whole_alloc(b, layout, true);
        }
        if is_flist_layout(&layout) {
            flist_alloc(layout, true)
        } else {
            fallback_alloc(layout, true)
        }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // No backend test: under a whole-process backend `current_fast()`
        // is a stub (see `alloc`), and `free_owned_raw` only takes
        // addresses of segments this core owns, never another allocator's.
        // SAFETY: this thread's live core, used by this thread alone, or a
        // stub (`current_fast`); the caller hands the block back.
        if unsafe { ThreadCore::free_owned_raw(threads::current_fast(), ptr as usize) } {
            return;
        }
        // SAFETY: the caller's GlobalAlloc contract, passed on.
        unsafe { self.dealloc_slow(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let b = BACKEND.load(Ordering::Relaxed);
        if b != Backend::Flist as u8 {
            let count = COUNT_ALL.load(Ordering::Relaxed);
            if count && new_size > layout.size() && !budget::take(new_size - layout.size()) {
                return null_mut();
            }
            // SAFETY: GlobalAlloc contract: a live block of this backend.
            let p = unsafe { backend::realloc(Backend::from_u8(b), ptr, layout, new_size) };
            if count {
                if p.is_null() {
                    budget::give(new_size.saturating_sub(layout.size()));
                } else if new_size < layout.size() {
                    budget::give(layout.size() - new_size);
                }
            }
            return p;
        }
        // SAFETY: GlobalAlloc contract: new_size with layout.align() is valid.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        let entry = segment_map::lookup(ptr as usize);
        if entry == 0 {
            if !is_flist_layout(&new_layout) {
                // Fallback to fallback: the backend's own realloc.
                if new_size > layout.size() && !budget::take(new_size - layout.size()) {
                    return null_mut();
                }
                // SAFETY: a live fallback block (GlobalAlloc contract).
                let p = unsafe { backend::realloc(FALLBACK, ptr, layout, new_size) };
                if p.is_null() {
                    budget::give(new_size.saturating_sub(layout.size()));
                } else {
                    if new_size < layout.size() {
                        budget::give(layout.size() - new_size);
                    }
                    stats::FALLBACK_LIVE.fetch_add(
                        new_size as isize - layout.size() as isize,
                        Ordering::Relaxed,
                    );
                }
                return p;
            }
        } else if is_flist_layout(&new_layout) && entry & TAG_MASK == GLOBAL_TAG {
            // Stay in place when the new size maps to the same slab. A live
            // chunk pins its pool's fixed fields, whoever owns the segment.
            let seg = segment_of(entry, ptr as usize);
            // SAFETY: the map says a live global segment covers ptr, and the
            // caller holds the live chunk at ptr.
            let pool = unsafe { crate::flist_core::pool_of_chunk_remote(seg, entry, ptr as usize) };
            // SAFETY: as above: the pool is live while we hold its chunk.
            let same = pool.is_some_and(|p| unsafe {
                size_class::slab_index_aligned(new_size, layout.align()) == Some((*p).slab())
            });
            if same {
                return ptr;
            }
        }
        // SAFETY: GlobalAlloc contract for alloc and dealloc.
        unsafe {
            let fresh = self.alloc(new_layout);
            if !fresh.is_null() {
                core::ptr::copy_nonoverlapping(ptr, fresh, layout.size().min(new_size));
                self.dealloc(ptr, layout);
            }
            fresh
        }
    }
}

/// Hands the calling thread's empty pools back to the OS at once, adopting
/// and trimming abandoned segments too (among them those of the warm idle
/// heaps that exited threads left, which are abandoned first), and
/// reclaiming the cores of threads that exited without detaching them;
/// returns the bytes of pools given back.
///
/// ```
/// let _given_back: usize = flistalloc::trim();
/// ```
pub fn trim() -> usize {
    if BACKEND.load(Ordering::Relaxed) != Backend::Flist as u8 {
        return 0;
    }
    threads::reap_dead();
    threads::cool_idle();
    let core = threads::attach();
    if core.is_null() {
        return 0;
    }
    // SAFETY: this thread's live core, used by no one else.
    let core: &mut ThreadCore = unsafe { &mut *core };
    thread_core::collect_queue(core);
    while let Some(seg) = abandoned::pop_to((core as *mut ThreadCore).cast()) {
        // SAFETY: popped off the abandoned list with us as owner.
        unsafe { thread_core::adopt(core, seg) };
    }
    core.trim()
}

/// Process-wide figures of the global allocator (see [`Stats`]).
///
/// ```
/// let s = flistalloc::stats();
/// println!("{} bytes mapped, {} threads", s.mapped, s.threads);
/// ```
pub fn stats() -> Stats {
    stats::snapshot()
}

#[cfg(all(test, not(loom), not(feature = "c-library")))]
mod tests {
    use super::thread_core::ThreadCore;
    use super::threads;

    /// A thread that never allocated through `Flist` (this test binary's
    /// allocator is `System`) reads a stub on the fast paths: every pop
    /// fails and no free is its own, so both go to the slow paths, which
    /// read null from `current()`.
    #[test]
    fn fast_paths_read_a_stub_before_attach() {
        std::thread::spawn(|| {
            assert!(threads::current().is_null());
            let stub = threads::current_fast();
            assert!(!stub.is_null());
            let x = 0u64;
            // SAFETY: the stub is what `current_fast` returns before attach;
            // sizes up to SMALL_MAX; nothing is freed (a stub holds nothing).
            unsafe {
                for size in [0, 1, 8, 64, 1000, 1024] {
                    assert!(ThreadCore::pop_direct_raw(stub, size).is_null());
                }
                assert!(!ThreadCore::free_owned_raw(stub, &x as *const u64 as usize));
                assert!(!ThreadCore::free_owned_raw(stub, 0));
                assert!(!ThreadCore::free_owned_raw(stub, usize::MAX));
            }
        })
        .join()
        .unwrap();
    }
}
