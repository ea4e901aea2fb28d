//! The C allocator: `malloc` and its family with the C standard's and
//! POSIX's semantics, over the same thread cores as [`Flist`](crate::Flist),
//! for the `libflistalloc.so` crate (through [`raw`](crate::raw), which
//! documents the rules).
//!
//! * **Routing by address.** Every pointer is sorted through the segment
//!   map, never by reading memory that may not be mapped: a chunk of a
//!   global segment (flist), a large block (`large.rs`, tag `LARGE_TAG`),
//!   other flistalloc memory (misuse: one line on stderr, abort), or not
//!   ours: under the `jemalloc` backend jemalloc's, otherwise glibc's
//!   ("foreign"), handed to glibc's own functions found with
//!   `dlsym(RTLD_NEXT, ...)`.
//! * **Start-up.** Lazy: the first call that finds `environ` set resolves
//!   glibc's functions, reads the configuration and creates the thread key
//!   and fork handlers. Before that (ld.so's calls) and for calls that
//!   re-enter during it (from `dlsym`, `pthread_atfork`), blocks come from
//!   flist.
//! * **errno.** Successful calls and every `free` leave it as they found it
//!   (saved and restored around the slow paths, which may make system
//!   calls); failures set `ENOMEM`.
//! * **Large blocks** are mapped one per block (`large.rs`); a few free
//!   mappings are kept in [`LARGE_CACHE`] for reuse.

use super::abandoned::{Locked, SpinLock};
use super::threads::{self, DETACHED};
use super::{budget, decide, flist_free, thread_core, BACKEND, COUNT_ALL};
use crate::backend::{self, c as sysc, Backend, SystemFns};
use crate::flist_core::{pool_of_chunk_remote, segment_of};
use crate::large::{self, Found, Large};
use crate::msg::{die, warn};
use crate::segment_map::{self, GLOBAL_TAG, LARGE_TAG, TAG_MASK};
use crate::size_class::{self, LARGEST_FLIST_SIZE, PAGE, SMALL_MAX};
use crate::stats;
use core::cell::UnsafeCell;
use core::ffi::{c_int, c_void, CStr};
use core::ptr::null_mut;
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// Every block is aligned to at least this (`max_align_t` on x86_64 and
/// aarch64 Linux), even `malloc(1)`.
const MIN_ALIGN: usize = 16;
const FLIST: u8 = Backend::Flist as u8;
const MALLOC: u8 = Backend::Malloc as u8;
const JEMALLOC: u8 = Backend::Jemalloc as u8;

// ---------------------------------------------------------------- errno

#[inline(always)]
fn errno() -> c_int {
    // SAFETY: __errno_location returns this thread's errno, always valid.
    unsafe { *libc::__errno_location() }
}

#[inline(always)]
fn set_errno(e: c_int) {
    // SAFETY: as in `errno`.
    unsafe { *libc::__errno_location() = e }
}

// ---------------------------------------------------------------- start-up

/// Held while one thread starts the C allocator up.
static INIT_LOCK: SpinLock = SpinLock::new();
/// `pthread_self()` of the thread starting up, or 0: its calls that
/// re-enter during start-up are served from flist at once.
static INIT_OWNER: AtomicUsize = AtomicUsize::new(0);
/// Whether `GLIBC` holds glibc's own functions (set once, after they are
/// written).
static RESOLVED: AtomicBool = AtomicBool::new(false);
/// Whether the C allocator has started up (glibc's functions looked for,
/// configuration read, thread key made): set last, under `INIT_LOCK`. Not
/// `BACKEND != 0`, which the Rust `Flist` may set on its own.
static STARTED: AtomicBool = AtomicBool::new(false);

/// glibc's allocator functions, as `dlsym(RTLD_NEXT, ...)` found them.
/// Invariant: written once, under `INIT_LOCK`, before `RESOLVED` is set;
/// read only after `RESOLVED` is seen set (or by the malloc backend, after
/// `set_system` published it).
struct GlibcFns(UnsafeCell<SystemFns>);
// SAFETY: written once before it is published (the invariant above), then
// only read.
unsafe impl Sync for GlibcFns {}
static GLIBC: GlibcFns = GlibcFns(UnsafeCell::new(SystemFns::LIBC));

/// The backend now: the configured one, or 0 (served as flist) while the
/// configuration cannot be read yet.
#[inline(always)]
fn backend_now() -> u8 {
    if STARTED.load(Ordering::Acquire) {
        BACKEND.load(Ordering::Acquire)
    } else {
        start(false)
    }
}

/// Starts the C allocator up if it has not been, and returns the backend
/// (0 while not started). Without `force`, waits until libc has set
/// `environ` (ld.so allocates before that, and `getenv` would find
/// nothing). A call re-entering from the start-up itself, or (without
/// `force`) made while another thread starts it up, returns at once (0:
/// served from flist).
#[cold]
#[inline(never)]
pub(crate) fn start(force: bool) -> u8 {
    // SAFETY: pthread_self has no preconditions and does not allocate.
    let me = unsafe { libc::pthread_self() } as usize;
    if INIT_OWNER.load(Ordering::Relaxed) == me {
        // Re-entered from the start-up itself (dlsym, pthread_atfork,
        // pthread_setspecific, or jemalloc's own start-up below): flist
        // serves it, whatever the backend; its blocks are told apart by
        // address later.
        return 0;
    }
    // SAFETY: reads the pointer libc keeps in `environ` (null until libc
    // has initialised itself).
    if !force && unsafe { core::ptr::addr_of!(libc::environ).read() }.is_null() {
        return 0;
    }
    // Another thread starting up may wait on a lock we hold (ld.so's, in
    // dlsym): without `force`, serve this call from flist rather than wait.
    if force {
        INIT_LOCK.lock();
    } else if !INIT_LOCK.try_lock() {
        return BACKEND.load(Ordering::Acquire);
    }
    if !STARTED.load(Ordering::Acquire) {
        INIT_OWNER.store(me, Ordering::Relaxed);
        resolve();
        if BACKEND.load(Ordering::Acquire) == 0 {
            decide(None);
        }
        threads::register_current();
        if BACKEND.load(Ordering::Acquire) == JEMALLOC {
            // Start jemalloc up now, while our calls re-entering from its
            // start-up (glibc's `pthread_setspecific` callocs for a key
            // index of 32 or more) go to flist: sent back into jemalloc,
            // they would re-enter its start-up and register its fork
            // handlers twice, which deadlocks the first `fork`.
            let p = sysc::malloc(Backend::Jemalloc, 1);
            if !p.is_null() {
                // SAFETY: a live jemalloc block, just made.
                unsafe { sysc::free(Backend::Jemalloc, p) };
            }
        }
        INIT_OWNER.store(0, Ordering::Relaxed);
        STARTED.store(true, Ordering::Release);
    }
    INIT_LOCK.unlock();
    BACKEND.load(Ordering::Acquire)
}

/// Finds glibc's own allocator functions (the next definitions after this
/// library) and hands them to the malloc backend.
fn resolve() {
    if RESOLVED.load(Ordering::Relaxed) {
        return;
    }
    let names: [&CStr; 6] = [
        c"malloc",
        c"calloc",
        c"realloc",
        c"free",
        c"posix_memalign",
        c"malloc_usable_size",
    ];
    let mut found = [null_mut::<c_void>(); 6];
    for (name, slot) in names.iter().zip(found.iter_mut()) {
        // SAFETY: dlsym with RTLD_NEXT and a NUL-terminated name; calls it
        // makes into malloc re-enter `start`, which serves them from flist.
        *slot = unsafe { libc::dlsym(libc::RTLD_NEXT, name.as_ptr()) };
        if slot.is_null() {
            warn(&[
                b"dlsym(RTLD_NEXT, \"",
                name.to_bytes(),
                b"\") found nothing: memory from the C library's own malloc is never freed",
            ]);
            return;
        }
    }
    // SAFETY: each symbol is glibc's function of that name, with the C
    // signature of the field it goes to; GLIBC is written once, here, under
    // INIT_LOCK, before RESOLVED publishes it; set_system is called before
    // any block came from the malloc backend (the backend is chosen after
    // this, in `decide`).
    unsafe {
        *GLIBC.0.get() = SystemFns {
            malloc: core::mem::transmute::<*mut c_void, unsafe extern "C" fn(usize) -> *mut c_void>(
                found[0],
            ),
            calloc: core::mem::transmute::<
                *mut c_void,
                unsafe extern "C" fn(usize, usize) -> *mut c_void,
            >(found[1]),
            realloc: core::mem::transmute::<
                *mut c_void,
                unsafe extern "C" fn(*mut c_void, usize) -> *mut c_void,
            >(found[2]),
            free: core::mem::transmute::<*mut c_void, unsafe extern "C" fn(*mut c_void)>(found[3]),
            posix_memalign: core::mem::transmute::<
                *mut c_void,
                unsafe extern "C" fn(*mut *mut c_void, usize, usize) -> c_int,
            >(found[4]),
            malloc_usable_size: core::mem::transmute::<
                *mut c_void,
                unsafe extern "C" fn(*mut c_void) -> usize,
            >(found[5]),
        };
        backend::set_system(&*GLIBC.0.get());
    }
    RESOLVED.store(true, Ordering::Release);
}

// ---------------------------------------------------------------- large blocks

/// Free large mappings kept for reuse (saving an `mmap`, a `munmap` and the
/// segment-map updates per block): at most this many...
const CACHE_BLOCKS: usize = 8;
/// ... holding at most this many possibly resident bytes. A mapping's pages
/// are given back as it enters the cache (`large::decommit`, one `madvise`),
/// so each holds only its header page: keeping them resident instead cost
/// 5.7 MiB of peak RSS on `tests/real/dicts.py` (65.7 against 59.9 MiB) for
/// no measurable speed.
const CACHE_BYTES: usize = CACHE_BLOCKS * PAGE;

/// The cache of free large mappings. Invariant: `blocks[..len]` are free
/// mappings (state FREE, still in the segment map) that no one else holds;
/// `bytes` is the sum of their `touched` pages.
pub(crate) struct LargeCache {
    blocks: [*mut Large; CACHE_BLOCKS],
    len: usize,
    bytes: usize,
}

/// The cache, under its spin lock (the fork handlers take it).
pub(crate) static LARGE_CACHE: Locked<LargeCache> = Locked::new(LargeCache {
    blocks: [null_mut(); CACHE_BLOCKS],
    len: 0,
    bytes: 0,
});

/// Takes a cached mapping that suits `size` bytes aligned to `align`.
fn cache_take(size: usize, align: usize) -> Option<*mut Large> {
    LARGE_CACHE.with(|c| {
        for i in 0..c.len {
            let h = c.blocks[i];
            // SAFETY: cached mappings are live and ours under the lock.
            if unsafe { large::suits(h, size, align) } {
                c.len -= 1;
                c.blocks[i] = c.blocks[c.len];
                // SAFETY: as above.
                c.bytes -= unsafe { large::touched(h) };
                return Some(h);
            }
        }
        None
    })
}

/// Keeps a freed mapping for reuse; false when the cache is full.
///
/// # Safety
/// `h` is a mapping just released, that no one else holds.
unsafe fn cache_put(h: *mut Large) -> bool {
    if LARGE_CACHE.with(|c| c.len) >= CACHE_BLOCKS {
        return false;
    }
    // Outside the lock (a system call): if the cache fills meanwhile, the
    // mapping is unmapped after all, one `madvise` wasted.
    // SAFETY: contract: a released mapping only we hold.
    let t = unsafe {
        large::decommit(h);
        large::touched(h)
    };
    LARGE_CACHE.with(|c| {
        if c.len < CACHE_BLOCKS && c.bytes + t <= CACHE_BYTES {
            c.blocks[c.len] = h;
            c.len += 1;
            c.bytes += t;
            true
        } else {
            false
        }
    })
}

/// Unmaps every cached mapping; returns the bytes of their mappings.
fn cache_trim() -> usize {
    let mut taken = [null_mut::<Large>(); CACHE_BLOCKS];
    let n = LARGE_CACHE.with(|c| {
        let n = c.len;
        taken[..n].copy_from_slice(&c.blocks[..n]);
        c.len = 0;
        c.bytes = 0;
        n
    });
    let mut bytes = 0;
    for &h in &taken[..n] {
        // SAFETY: taken off the cache, so free mappings no one holds.
        unsafe {
            bytes += large::map_bytes(h);
            large::unmap(h);
        }
    }
    bytes
}

/// Counts `bytes` in the budget; when over it, gives back this thread's
/// empty reserve and decommits every other heap's, then retries once.
fn take_budget(bytes: usize) -> bool {
    if budget::take(bytes) {
        return true;
    }
    let core = threads::current();
    let reclaimed = if core as usize > DETACHED {
        // SAFETY: this thread's live core, not otherwise borrowed here.
        thread_core::reclaim_everywhere(unsafe { &mut *core })
    } else {
        threads::decommit_reserves(core::ptr::null()) > 0
    };
    reclaimed && budget::take(bytes)
}

/// A large block of `size` bytes aligned to `align`, zeroed if asked; null
/// when over the budget or refused by the OS.
fn large_alloc(size: usize, align: usize, zeroed: bool) -> *mut u8 {
    let Some((count, _)) = large::needs(size, align) else {
        return null_mut();
    };
    if !take_budget(count) {
        return null_mut();
    }
    stats::FALLBACK_LIVE.fetch_add(count as isize, Ordering::Relaxed);
    if let Some(h) = cache_take(size, align) {
        // SAFETY: a cached mapping we took, which suits the request; its
        // block holds at least `size` bytes. Bytes of the mapping past its
        // `touched` mark are zero (never written since mapped, or
        // decommitted when cached), so only those below it are cleared.
        unsafe {
            let dirty_end = h as usize + large::touched(h);
            large::reuse(h, size, align);
            let p = large::ptr(h);
            if zeroed {
                p.write_bytes(0, dirty_end.saturating_sub(p as usize).min(size));
            }
            return p;
        }
    }
    match large::map(size, align) {
        // SAFETY: a fresh live block (zero, as fresh mappings are).
        Some(h) => unsafe { large::ptr(h.as_ptr()) },
        None => {
            budget::give(count);
            stats::FALLBACK_LIVE.fetch_sub(count as isize, Ordering::Relaxed);
            null_mut()
        }
    }
}

/// Frees the large block `h` (at `addr`).
///
/// # Safety
/// `h` is the header `large::find` returned for `addr`, a block the caller
/// hands back.
unsafe fn large_free(h: *mut Large, addr: usize) {
    // SAFETY: a live mapping (contract); once released it is ours alone.
    unsafe {
        if !large::release(h) {
            die(
                b"double free (free or realloc of a large block already free): ",
                addr,
            );
        }
        let count = large::counted(h);
        budget::give(count);
        stats::FALLBACK_LIVE.fetch_sub(count as isize, Ordering::Relaxed);
        if !cache_put(h) {
            large::unmap(h);
        }
    }
}

// ---------------------------------------------------------------- allocation

/// The slab index of a `malloc(size)`: the size rounded up to 16 (at least
/// 16), whose slab is a multiple of 16.
///
/// # Safety
/// `size <= SMALL_MAX`.
#[inline(always)]
unsafe fn small_index(size: usize) -> usize {
    // SAFETY: the same contract.
    unsafe { size_class::slab_index_16(size) }
}

/// An flist chunk (size at most `LARGEST_FLIST_SIZE`, `16 <= align <=
/// PAGE`), zeroed if asked; a large block for a thread whose core is
/// detached.
#[inline(never)]
fn small_alloc(size: usize, align: usize, zeroed: bool) -> *mut u8 {
    let Some(idx) = size_class::slab_index_aligned(size, align) else {
        return null_mut();
    };
    let core = threads::current();
    if core as usize > DETACHED {
        // SAFETY: this thread's live core; idx is a slab of at most
        // LARGEST_FLIST_SIZE, which every thread core serves.
        let p = unsafe { (*core).pop_fast(idx) };
        if !p.is_null() {
            if zeroed {
                // SAFETY: the chunk holds at least `size` bytes.
                unsafe { p.write_bytes(0, size) };
            }
            return p;
        }
    }
    let core = threads::attach();
    if core.is_null() {
        return large_alloc(size, align, zeroed);
    }
    // SAFETY: as above; no other reference to the core is live.
    match unsafe { (*core).alloc_index(idx) } {
        Ok((p, fresh)) => {
            if zeroed && !fresh {
                // SAFETY: the chunk holds at least `size` bytes.
                unsafe { p.as_ptr().write_bytes(0, size) };
            }
            p.as_ptr()
        }
        Err(_) => null_mut(),
    }
}

/// A block from a whole-process backend (`b` is `MALLOC` or `JEMALLOC`),
/// counted by its usable size when `FLISTALLOC_CAPACITY` is set.
fn whole_alloc(b: u8, size: usize, align: usize, zeroed: bool) -> *mut u8 {
    let bk = Backend::from_u8(b);
    let p = if align <= MIN_ALIGN {
        if zeroed {
            sysc::calloc(bk, size)
        } else {
            sysc::malloc(bk, size)
        }
    } else {
        let p = sysc::memalign(bk, align, size);
        if zeroed && !p.is_null() {
            // SAFETY: the block holds `size` bytes.
            unsafe { p.write_bytes(0, size) };
        }
        p
    };
    if !p.is_null() && COUNT_ALL.load(Ordering::Relaxed) {
        // SAFETY: a live block of that backend.
        let u = unsafe { sysc::usable_size(bk, p) };
        if !budget::take(u) {
            // SAFETY: as above, never handed out.
            unsafe { sysc::free(bk, p) };
            return null_mut();
        }
    }
    p
}

/// A block of `size` bytes aligned to `align` (a power of two, at least 16)
/// from backend `b` (0: flist, not yet configured); null on failure.
fn alloc_any(b: u8, size: usize, align: usize, zeroed: bool) -> *mut u8 {
    if size > isize::MAX as usize {
        return null_mut();
    }
    // (Under `malloc` with glibc's functions not found, which dlsym never
    // does to glibc, flist serves rather than this library's own exports.)
    if b == JEMALLOC || (b == MALLOC && RESOLVED.load(Ordering::Acquire)) {
        whole_alloc(b, size, align, zeroed)
    } else if size <= LARGEST_FLIST_SIZE && align <= PAGE {
        small_alloc(size, align, zeroed)
    } else {
        large_alloc(size, align, zeroed)
    }
}

/// Everything but the fast path: errno kept on success, `ENOMEM` on failure.
#[inline(never)]
fn alloc_slow(size: usize, align: usize, zeroed: bool) -> *mut u8 {
    let saved = errno();
    let p = alloc_any(backend_now(), size, align, zeroed);
    set_errno(if p.is_null() { libc::ENOMEM } else { saved });
    p
}

/// C `malloc`.
#[inline(always)]
pub(crate) fn malloc(size: usize) -> *mut c_void {
    if size <= SMALL_MAX && BACKEND.load(Ordering::Relaxed) == FLIST {
        let core = threads::current();
        if core as usize > DETACHED {
            // SAFETY: this thread's live core; size <= SMALL_MAX, and small
            // sizes map to slabs every thread core serves.
            let p = unsafe { (*core).pop_fast(small_index(size)) };
            if !p.is_null() {
                return p.cast();
            }
        }
    }
    alloc_slow(size, MIN_ALIGN, false).cast()
}

/// C `calloc`.
#[inline]
pub(crate) fn calloc(n: usize, size: usize) -> *mut c_void {
    let Some(total) = n.checked_mul(size) else {
        set_errno(libc::ENOMEM);
        return null_mut();
    };
    if total <= SMALL_MAX && BACKEND.load(Ordering::Relaxed) == FLIST {
        let core = threads::current();
        if core as usize > DETACHED {
            // SAFETY: as in `malloc` (total <= SMALL_MAX).
            let p = unsafe { (*core).pop_fast(small_index(total)) };
            if !p.is_null() {
                // SAFETY: the chunk holds at least `total` bytes.
                unsafe { p.write_bytes(0, total) };
                return p.cast();
            }
        }
    }
    alloc_slow(total, MIN_ALIGN, true).cast()
}

/// A block aligned to `align` (a power of two): errno as `malloc`.
pub(crate) fn aligned(align: usize, size: usize) -> *mut c_void {
    if align <= MIN_ALIGN {
        return malloc(size);
    }
    alloc_slow(size, align, false).cast()
}

// ---------------------------------------------------------------- free

/// C `free`.
///
/// # Safety
/// `ptr` is null, a live block of this allocator or of glibc's, or misuse
/// (reported when it points into flistalloc memory).
#[inline(always)]
pub(crate) unsafe fn free(ptr: *mut c_void) {
    if BACKEND.load(Ordering::Relaxed) == FLIST {
        let core = threads::current();
        // SAFETY: this thread's live core, used by this thread alone; the
        // caller hands the block back. A null pointer's owner word is 0.
        if core as usize > DETACHED && unsafe { (*core).free_owned(ptr as usize) } {
            return;
        }
    }
    if !ptr.is_null() {
        // SAFETY: the caller's contract.
        unsafe { free_slow(ptr.cast()) }
    }
}

/// # Safety
/// As [`free`], for a non-null pointer.
#[inline(never)]
unsafe fn free_slow(p: *mut u8) {
    let saved = errno();
    let addr = p as usize;
    let entry = segment_map::lookup(addr);
    if entry == 0 {
        // SAFETY: not ours: a block of the jemalloc backend or glibc's
        // (contract).
        unsafe { free_foreign(p) };
    } else {
        match entry & TAG_MASK {
            // SAFETY: a global segment covers it: a chunk handed back, or
            // misuse flist_free reports.
            GLOBAL_TAG => unsafe { flist_free(entry, p) },
            // SAFETY: the map's entry of addr; a block handed back.
            LARGE_TAG => match unsafe { large::find(entry, addr) } {
                // SAFETY: the block at addr, handed back.
                Found::Block(h) => unsafe { large_free(h, addr) },
                Found::Inside => die(
                    b"free of a pointer inside a flistalloc large block (double free, or not its start): ",
                    addr,
                ),
            },
            _ => die(b"free of memory owned by an explicit flistalloc::Arena, at ", addr),
        }
    }
    set_errno(saved);
}

/// Under the flist backend a pointer that is not flistalloc memory should
/// be a block glibc made before this library took over, and glibc reads its
/// chunk header, just below it. When those bytes are not even mapped, the
/// pointer is nobody's (most likely a large block of ours freed before, its
/// mapping gone): report it rather than let glibc fault. One `mincore` per
/// such call; under the flist backend they are rare (glibc's blocks are
/// only those made before the library was loaded). Under `malloc` and
/// `jemalloc`, whose blocks are all not flistalloc's, no check is made, as
/// with those allocators loaded directly.
fn check_foreign_mapped(what: &[u8], addr: usize) {
    // SAFETY: sysconf has no preconditions and does not allocate.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize;
    if !page.is_power_of_two() {
        return;
    }
    let start = addr.saturating_sub(2 * core::mem::size_of::<usize>()) & !(page - 1);
    let end = (addr & !(page - 1)) + page;
    let mut resident = [0u8; 2];
    // SAFETY: mincore writes one byte per page of [start, end), at most two
    // pages (the header lies at most 16 bytes below addr), into a 2-byte
    // buffer; `start` is page-aligned. It reads no memory of the range.
    let rc = unsafe { libc::mincore(start as *mut c_void, end - start, resident.as_mut_ptr()) };
    if rc != 0 && errno() == libc::ENOMEM {
        die(what, addr);
    }
}

/// The allocator of a pointer that is not flistalloc memory, under backend
/// `b` (0: not configured yet): jemalloc under the jemalloc backend, else
/// glibc once its functions are known; `None` before that. Under the flist
/// backend the pointer is first checked mapped ([`check_foreign_mapped`],
/// which reports `what` and aborts when it is not).
fn foreign_owner(b: u8, what: &[u8], addr: usize) -> Option<Backend> {
    if b != MALLOC && b != JEMALLOC {
        check_foreign_mapped(what, addr);
    }
    if b == JEMALLOC {
        Some(Backend::Jemalloc)
    } else if RESOLVED.load(Ordering::Acquire) {
        Some(Backend::Malloc)
    } else {
        None
    }
}

/// Frees a pointer that is not flistalloc memory: jemalloc's under the
/// jemalloc backend, glibc's otherwise; leaked while glibc's functions are
/// not known yet.
///
/// # Safety
/// `p` is a live block of that allocator.
unsafe fn free_foreign(p: *mut u8) {
    let b = BACKEND.load(Ordering::Acquire);
    let Some(bk) = foreign_owner(
        b,
        b"free of an unmapped address (a large block freed before?): ",
        p as usize,
    ) else {
        return;
    };
    // SAFETY: a live block of `bk` (contract).
    unsafe {
        if (b == MALLOC || b == JEMALLOC) && COUNT_ALL.load(Ordering::Relaxed) {
            budget::give_at_most(sysc::usable_size(bk, p));
        }
        sysc::free(bk, p);
    }
}

// ---------------------------------------------------------------- realloc

/// C `realloc`.
///
/// # Safety
/// As [`free`].
#[inline]
pub(crate) unsafe fn realloc(ptr: *mut c_void, size: usize) -> *mut c_void {
    if ptr.is_null() {
        return malloc(size);
    }
    if size == 0 {
        // SAFETY: the caller's contract.
        unsafe { free(ptr) };
        return null_mut();
    }
    let saved = errno();
    // SAFETY: the caller's contract.
    let p = unsafe { realloc_inner(ptr.cast(), size) };
    set_errno(if p.is_null() { libc::ENOMEM } else { saved });
    p.cast()
}

/// # Safety
/// As [`free`], for a non-null pointer; `size > 0`.
#[inline(never)]
unsafe fn realloc_inner(p: *mut u8, size: usize) -> *mut u8 {
    if size > isize::MAX as usize {
        return null_mut();
    }
    let addr = p as usize;
    let entry = segment_map::lookup(addr);
    let b = backend_now();
    let flist_now = b == 0 || b == FLIST;
    let old_usable;
    if entry == 0 {
        let Some(bk) = foreign_owner(
            b,
            b"realloc of an unmapped address (a large block freed before?): ",
            addr,
        ) else {
            die(
                b"realloc of memory flistalloc did not hand out, before glibc's realloc was found: ",
                addr,
            )
        };
        if flist_now || !COUNT_ALL.load(Ordering::Relaxed) {
            // SAFETY: a live block of `bk` (contract).
            return unsafe { sysc::realloc(bk, p, size) };
        }
        // Counted by usable size: move it, so the budget sees both sizes.
        // SAFETY: a live block of `bk` (contract).
        old_usable = unsafe { sysc::usable_size(bk, p) };
    } else {
        match entry & TAG_MASK {
            GLOBAL_TAG => {
                let seg = segment_of(entry, addr);
                // SAFETY: a live global segment covers addr, and the caller
                // holds the chunk, which pins its pool's fixed fields.
                let Some(pool) = (unsafe { pool_of_chunk_remote(seg, entry, addr) }) else {
                    die(
                        b"realloc of a pointer that is not a live flist chunk (an interior pointer, or memory freed before): ",
                        addr,
                    )
                };
                // SAFETY: as above.
                let (slab, chunk) = unsafe { ((*pool).slab(), (*pool).chunk_size()) };
                if flist_now
                    && size <= LARGEST_FLIST_SIZE
                    && size_class::slab_index_aligned(size, MIN_ALIGN) == Some(slab)
                {
                    return p;
                }
                old_usable = chunk;
            }
            LARGE_TAG => {
                // SAFETY: the map's entry of addr, whose block the caller holds.
                let Found::Block(h) = (unsafe { large::find(entry, addr) }) else {
                    die(
                        b"realloc of a pointer inside a flistalloc large block (freed, or not its start): ",
                        addr,
                    )
                };
                // SAFETY: the caller holds the block.
                unsafe {
                    if flist_now && size > LARGEST_FLIST_SIZE {
                        if let Some(new) = large::fits(h, size) {
                            let old = large::counted(h);
                            if new > old && !take_budget(new - old) {
                                return null_mut();
                            }
                            large::resize(h, size);
                            if new < old {
                                budget::give(old - new);
                            }
                            stats::FALLBACK_LIVE
                                .fetch_add(new as isize - old as isize, Ordering::Relaxed);
                            return p;
                        }
                    }
                    old_usable = large::usable(h);
                }
            }
            _ => die(
                b"realloc of memory owned by an explicit flistalloc::Arena, at ",
                addr,
            ),
        }
    }
    let fresh = alloc_any(b, size, MIN_ALIGN, false);
    if !fresh.is_null() {
        // SAFETY: two distinct live blocks holding the bytes copied; the
        // old one is handed back after (contract).
        unsafe {
            core::ptr::copy_nonoverlapping(p, fresh, old_usable.min(size));
            free_slow(p);
        }
    }
    fresh
}

// ---------------------------------------------------------------- queries

/// What an address is, to the C allocator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// The start of a chunk of a flist pool of the global allocator.
    Flist,
    /// The start of a live large block (`libflistalloc.so`'s own mapping).
    Large,
    /// Inside flistalloc memory, but not the start of a chunk or a live
    /// large block (or an explicit `Arena`'s memory): misuse for `free`.
    Inside,
    /// Not flistalloc memory: jemalloc's under the jemalloc backend,
    /// glibc's otherwise.
    Foreign,
}

/// Sorts `ptr` by address (see [`Class`]).
///
/// # Safety
/// If `ptr` lies in flistalloc memory, the block it starts is live or
/// `ptr` does not race its release.
pub(crate) unsafe fn classify(ptr: *const c_void) -> Class {
    let addr = ptr as usize;
    let entry = segment_map::lookup(addr);
    if entry == 0 {
        return Class::Foreign;
    }
    match entry & TAG_MASK {
        GLOBAL_TAG => {
            // SAFETY: a live global segment covers addr (contract).
            match unsafe { pool_of_chunk_remote(segment_of(entry, addr), entry, addr) } {
                Some(_) => Class::Flist,
                None => Class::Inside,
            }
        }
        // SAFETY: the map's entry of addr (contract).
        LARGE_TAG => match unsafe { large::find(entry, addr) } {
            Found::Block(_) => Class::Large,
            Found::Inside => Class::Inside,
        },
        _ => Class::Inside,
    }
}

/// C `malloc_usable_size`.
///
/// # Safety
/// As [`free`].
pub(crate) unsafe fn usable_size(ptr: *const c_void) -> usize {
    if ptr.is_null() {
        return 0;
    }
    let addr = ptr as usize;
    let entry = segment_map::lookup(addr);
    if entry == 0 {
        let Some(bk) = foreign_owner(
            BACKEND.load(Ordering::Acquire),
            b"malloc_usable_size of an unmapped address (a large block freed before?): ",
            addr,
        ) else {
            return 0;
        };

        // SAFETY: a live block of `bk` (contract).
        return unsafe { sysc::usable_size(bk, ptr.cast_mut().cast()) };
    }
    match entry & TAG_MASK {
        GLOBAL_TAG => {
            // SAFETY: a live global segment covers addr; the caller holds
            // the chunk, which pins its pool's fixed fields.
            match unsafe { pool_of_chunk_remote(segment_of(entry, addr), entry, addr) } {
                // SAFETY: as above.
                Some(pool) => unsafe { (*pool).chunk_size() },
                None => die(
                    b"malloc_usable_size of a pointer that is not a live flist chunk (an interior pointer, or memory freed before): ",
                    addr,
                ),
            }
        }
        // SAFETY: the map's entry of addr; the caller holds the block.
        LARGE_TAG => match unsafe { large::find(entry, addr) } {
            // SAFETY: as above.
            Found::Block(h) => unsafe { large::usable(h) },
            Found::Inside => die(
                b"malloc_usable_size of a pointer inside a flistalloc large block (freed, or not its start): ",
                addr,
            ),
        },
        _ => die(
            b"malloc_usable_size of memory owned by an explicit flistalloc::Arena, at ",
            addr,
        ),
    }
}

/// The backend's name, reading the configuration now if need be.
pub(crate) fn backend_name() -> &'static CStr {
    let b = if STARTED.load(Ordering::Acquire) {
        BACKEND.load(Ordering::Acquire)
    } else {
        start(true)
    };
    match b {
        MALLOC => c"malloc",
        JEMALLOC => c"jemalloc",
        _ => c"flist",
    }
}

/// The calling thread's empty pools and the cached large mappings back to
/// the OS; returns the bytes given back. errno is kept.
pub(crate) fn trim() -> usize {
    let saved = errno();
    let n = super::trim() + cache_trim();
    set_errno(saved);
    n
}
