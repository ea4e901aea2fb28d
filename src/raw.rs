//! The low-level interface for code that makes flistalloc the C allocator:
//! the `libflistalloc.so` crate (`flistalloc-c/`) uses this module and
//! nothing else of the crate's internals. Its functions have the C
//! standard's and POSIX's semantics; the crate only exports them under C's
//! names.
//!
//! # The C allocator
//! * **Blocks.** Requests up to 256 KiB ([`LARGEST_FLIST_SIZE`](crate::LARGEST_FLIST_SIZE))
//!   aligned to at most the page come from the calling thread's flist core,
//!   as for [`Flist`](crate::Flist); every block is at least 16-byte aligned
//!   (so `malloc(1)` takes a 16-byte chunk). Larger or more aligned requests
//!   get a mapping of their own (a *large block*, recorded in the segment
//!   map, up to 8 free ones, 32 MiB, kept for reuse), not jemalloc's: so
//!   every pointer can be sorted by address ([`classify`]).
//! * **Backends.** `FLISTALLOC_BACKEND=malloc` sends new requests to glibc's
//!   own allocator, `jemalloc` to jemalloc; blocks made before the
//!   configuration was read stay flist's and are still freed by flist.
//! * **Foreign pointers** (not flistalloc memory) are glibc's (jemalloc's
//!   under the jemalloc backend): `free`, `realloc` and `usable_size` hand
//!   them to glibc's own functions, found with `dlsym(RTLD_NEXT, ...)` at
//!   start-up. Before that, [`free`] leaks them, [`usable_size`] says 0 and
//!   [`realloc`] aborts with a message. A pointer into flistalloc memory that
//!   is not a block start is misuse: one line on stderr, then abort.
//! * **Start-up** is lazy ([`init`] is the constructor's backup): the first
//!   call after libc has set `environ` resolves glibc's functions, reads the
//!   configuration and creates the thread-exit key and fork handlers; calls
//!   before it (ld.so's) and calls that re-enter during it are served from
//!   flist.
//! * **errno**: successful calls and every [`free`] leave it unchanged;
//!   failures set `ENOMEM` (or `EINVAL`, as each function says).
//! * **`FLISTALLOC_CAPACITY`** counts flist pools, large blocks by the pages
//!   they span, and under the `malloc`/`jemalloc` backends each block's
//!   usable size, so no size is needed on `free`.
//!
//! ```
//! use flistalloc::raw;
//! // SAFETY: blocks of this allocator, each freed once.
//! unsafe {
//!     let p = raw::malloc(100);
//!     assert_eq!(p as usize % 16, 0);
//!     assert!(raw::usable_size(p) >= 100);
//!     let p = raw::realloc(p, 1 << 20);
//!     assert_eq!(raw::classify(p), raw::Class::Large);
//!     raw::free(p);
//! }
//! ```

use crate::global::clib;
use core::ffi::{c_int, c_void, CStr};

pub use crate::backend::SystemFns;
pub use crate::global::clib::Class;

/// Makes the `malloc` backend (and the fallback of a build without
/// jemalloc) call `fns` instead of the C library's functions as linked.
///
/// # Safety
/// Each function behaves as the C allocator function of its name, and
/// nothing has been allocated through the malloc backend yet: call it before
/// the first allocation of the process.
///
/// ```
/// static FNS: flistalloc::raw::SystemFns = flistalloc::raw::SystemFns::LIBC;
/// // SAFETY: glibc's own functions, set before anything was allocated
/// // through the malloc backend in this doctest's process.
/// unsafe { flistalloc::raw::set_system(&FNS) };
/// ```
pub unsafe fn set_system(fns: &'static SystemFns) {
    // SAFETY: the caller's contract is the one `backend::set_system` needs.
    unsafe { crate::backend::set_system(fns) }
}

/// Starts the C allocator up now (resolves glibc's functions, reads the
/// configuration, creates the thread-exit key and fork handlers), if that
/// has not happened: for the library's constructor.
///
/// ```
/// flistalloc::raw::init();
/// ```
pub fn init() {
    clib::start(true);
}

/// C `malloc`: `size` bytes aligned to 16, or null with `errno = ENOMEM`
/// (`size` above `PTRDIFF_MAX`, over `FLISTALLOC_CAPACITY`, or the OS
/// refuses). `malloc(0)` returns a unique pointer.
///
/// ```
/// let p = flistalloc::raw::malloc(0);
/// assert!(!p.is_null());
/// // SAFETY: a block of malloc, freed once.
/// unsafe { flistalloc::raw::free(p) };
/// ```
#[inline(always)]
pub fn malloc(size: usize) -> *mut core::ffi::c_void {
    clib::malloc(size)
}

/// C `calloc`: `n * size` zero bytes, or null with `errno = ENOMEM` (also
/// when the product overflows).
///
/// ```
/// assert!(flistalloc::raw::calloc(usize::MAX / 2, 3).is_null());
/// ```
#[inline]
pub fn calloc(n: usize, size: usize) -> *mut c_void {
    clib::calloc(n, size)
}

/// C `free`: null is a no-op; `errno` is unchanged.
///
/// # Safety
/// `ptr` is null or a live block of this allocator (or of glibc's, see the
/// module docs), not used afterwards. Pointers into flistalloc memory that
/// start no live block abort the process with a message.
///
/// ```
/// // SAFETY: null.
/// unsafe { flistalloc::raw::free(core::ptr::null_mut()) };
/// ```
#[inline(always)]
pub unsafe fn free(ptr: *mut c_void) {
    // SAFETY: the caller's contract.
    unsafe { clib::free(ptr) }
}

/// C `realloc`: null `ptr` is `malloc(size)`; `size` 0 frees `ptr` and
/// returns null (as glibc does); otherwise a block of `size` bytes holding
/// the first `min(old usable size, size)` bytes, or null with
/// `errno = ENOMEM` and `ptr` left intact.
///
/// # Safety
/// As [`free`].
///
/// ```
/// use flistalloc::raw;
/// // SAFETY: blocks of this allocator, each freed once.
/// unsafe {
///     let p = raw::malloc(8).cast::<u8>();
///     p.write(7);
///     let q = raw::realloc(p.cast(), 5000).cast::<u8>();
///     assert_eq!(q.read(), 7);
///     raw::free(q.cast());
/// }
/// ```
#[inline]
pub unsafe fn realloc(ptr: *mut c_void, size: usize) -> *mut c_void {
    // SAFETY: the caller's contract.
    unsafe { clib::realloc(ptr, size) }
}

/// C `reallocarray`: `realloc(ptr, n * size)`, or null with `errno =
/// ENOMEM` and `ptr` intact when the product overflows.
///
/// # Safety
/// As [`free`].
///
/// ```
/// use flistalloc::raw;
/// let p = raw::malloc(16);
/// // SAFETY: a block of malloc, freed once.
/// unsafe {
///     assert!(raw::reallocarray(p, usize::MAX, 2).is_null());
///     raw::free(p);
/// }
/// ```
#[inline]
pub unsafe fn reallocarray(ptr: *mut c_void, n: usize, size: usize) -> *mut c_void {
    match n.checked_mul(size) {
        // SAFETY: the caller's contract.
        Some(total) => unsafe { clib::realloc(ptr, total) },
        None => {
            set_errno(libc::ENOMEM);
            core::ptr::null_mut()
        }
    }
}

fn set_errno(e: c_int) {
    // SAFETY: __errno_location returns this thread's errno.
    unsafe { *libc::__errno_location() = e }
}

fn errno() -> c_int {
    // SAFETY: __errno_location returns this thread's errno.
    unsafe { *libc::__errno_location() }
}

/// C `posix_memalign`: stores a block of `size` bytes aligned to `align` in
/// `*out` and returns 0; returns `EINVAL` when `align` is not a power of
/// two multiple of `sizeof(void *)`, `ENOMEM` when out of memory, leaving
/// `*out` untouched. Never changes `errno`.
///
/// # Safety
/// `out` is valid for a pointer write.
///
/// ```
/// let mut p = core::ptr::null_mut();
/// // SAFETY: a valid out-pointer; the block is freed once.
/// unsafe {
///     assert_eq!(flistalloc::raw::posix_memalign(&mut p, 4096, 10), 0);
///     assert_eq!(p as usize % 4096, 0);
///     assert_eq!(flistalloc::raw::posix_memalign(&mut p, 24, 10), libc::EINVAL);
///     flistalloc::raw::free(p);
/// }
/// ```
pub unsafe fn posix_memalign(out: *mut *mut c_void, align: usize, size: usize) -> c_int {
    if !align.is_power_of_two() || !align.is_multiple_of(core::mem::size_of::<*mut c_void>()) {
        return libc::EINVAL;
    }
    let saved = errno();
    let p = clib::aligned(align, size);
    set_errno(saved);
    if p.is_null() {
        return libc::ENOMEM;
    }
    // SAFETY: the caller's contract.
    unsafe { out.write(p) };
    0
}

/// C `aligned_alloc`: a block of `size` bytes (any size, C17 DR460) aligned
/// to `align`; null with `errno = EINVAL` when `align` is 0 or not a power
/// of two, `ENOMEM` when out of memory.
///
/// ```
/// assert!(flistalloc::raw::aligned_alloc(3, 8).is_null());
/// ```
pub fn aligned_alloc(align: usize, size: usize) -> *mut c_void {
    if !align.is_power_of_two() {
        set_errno(libc::EINVAL);
        return core::ptr::null_mut();
    }
    clib::aligned(align, size)
}

/// C `memalign`: as [`aligned_alloc`], but an alignment that is not a power
/// of two is rounded up to one; `EINVAL` when none exists (above 2^63).
///
/// ```
/// assert!(flistalloc::raw::memalign(usize::MAX, 8).is_null());
/// ```
pub fn memalign(align: usize, size: usize) -> *mut c_void {
    match align.checked_next_power_of_two() {
        Some(a) => clib::aligned(a, size),
        None => {
            set_errno(libc::EINVAL);
            core::ptr::null_mut()
        }
    }
}

fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if p > 0 {
        p as usize
    } else {
        4096
    }
}

/// C `valloc`: `size` bytes aligned to the page.
///
/// ```
/// let p = flistalloc::raw::valloc(1);
/// assert_eq!(p as usize % 4096, 0);
/// // SAFETY: a block of this allocator, freed once.
/// unsafe { flistalloc::raw::free(p) };
/// ```
pub fn valloc(size: usize) -> *mut c_void {
    clib::aligned(page_size(), size)
}

/// C `pvalloc`: `size` rounded up to whole pages (at least one), aligned
/// to the page; null with `errno = ENOMEM` when the rounding overflows.
///
/// ```
/// assert!(flistalloc::raw::pvalloc(usize::MAX - 100).is_null());
/// ```
pub fn pvalloc(size: usize) -> *mut c_void {
    let page = page_size();
    match size.checked_add(page - 1) {
        Some(n) => clib::aligned(page, (n & !(page - 1)).max(page)),
        None => {
            set_errno(libc::ENOMEM);
            core::ptr::null_mut()
        }
    }
}

/// C `malloc_usable_size`: the bytes of the block that may be written (at
/// least the request); 0 for null (and for a foreign pointer before
/// glibc's functions are known).
///
/// # Safety
/// `ptr` is null or a live block, as for [`free`].
///
/// ```
/// let p = flistalloc::raw::malloc(100);
/// // SAFETY: a live block, freed once.
/// unsafe {
///     assert_eq!(flistalloc::raw::usable_size(p), 112);
///     flistalloc::raw::free(p);
/// }
/// ```
pub unsafe fn usable_size(ptr: *const c_void) -> usize {
    // SAFETY: the caller's contract.
    unsafe { clib::usable_size(ptr) }
}

/// Sorts `ptr` by address, without reading memory that may be unmapped
/// (see [`Class`]).
///
/// # Safety
/// If `ptr` starts a flistalloc block, it does not race that block's
/// release by another thread.
///
/// ```
/// let x = 5;
/// // SAFETY: a stack address is no flistalloc block.
/// let c = unsafe { flistalloc::raw::classify(&x as *const i32 as *const _) };
/// assert_eq!(c, flistalloc::raw::Class::Foreign);
/// ```
pub unsafe fn classify(ptr: *const c_void) -> Class {
    // SAFETY: the caller's contract.
    unsafe { clib::classify(ptr) }
}

/// The backend serving new C allocations: `c"flist"`, `c"malloc"` or
/// `c"jemalloc"`, reading the configuration now if it was not yet.
///
/// ```
/// let name = flistalloc::raw::backend_name();
/// assert!([c"flist", c"malloc", c"jemalloc"].contains(&name));
/// ```
pub fn backend_name() -> &'static CStr {
    clib::backend_name()
}

/// Gives the calling thread's empty pools (as [`trim`](crate::trim)) and
/// the cached free large mappings back to the OS; returns the bytes given
/// back. `errno` is unchanged.
///
/// ```
/// let _bytes: usize = flistalloc::raw::trim();
/// ```
pub fn trim() -> usize {
    clib::trim()
}
