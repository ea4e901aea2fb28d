//! `libflistalloc.so`: flistalloc as the C allocator of any Linux program
//! (`LD_PRELOAD=.../libflistalloc.so program`).
//!
//! Build: `cargo build --profile release-c -p flistalloc-c`, which writes
//! `target/release-c/libflistalloc.so`. This crate only gives C names to
//! [`flistalloc::raw`](flistalloc_lib::raw), which documents the semantics
//! (classification by address, start-up, errno, backends); the README's
//! section "The C library (`LD_PRELOAD`)" says how to use it.
//!
//! Exported (and nothing else): `malloc free calloc realloc reallocarray
//! aligned_alloc posix_memalign memalign valloc pvalloc malloc_usable_size
//! cfree`, glibc's aliases `__libc_malloc __libc_calloc __libc_realloc
//! __libc_free __libc_memalign __libc_valloc __libc_pvalloc
//! __posix_memalign`, and `flistalloc_backend flistalloc_trim
//! flistalloc_stats` (declared in `include/flistalloc.h`).
#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]

use core::ffi::{c_char, c_int, c_void};
use flistalloc_lib::{raw, Flist};

/// The library's own Rust code allocates through flist too (it hardly
/// does): never through `System`, which here is this library.
#[global_allocator]
static GLOBAL: Flist = Flist::new();

/// The constructor: starts the allocator up (if no allocation did yet), so
/// the thread-exit key and the fork handlers exist before `main`.
extern "C" fn constructor() {
    raw::init();
}

#[used]
#[link_section = ".init_array"]
static CONSTRUCTOR: extern "C" fn() = constructor;

/// C `malloc`.
///
/// # Safety
/// None beyond C's; the function is `unsafe` as every export is.
#[no_mangle]
#[inline(never)]
pub unsafe extern "C" fn malloc(size: usize) -> *mut c_void {
    raw::malloc(size)
}

/// C `calloc`.
///
/// # Safety
/// None beyond C's.
#[no_mangle]
#[inline(never)]
pub unsafe extern "C" fn calloc(n: usize, size: usize) -> *mut c_void {
    raw::calloc(n, size)
}

/// C `realloc`.
///
/// # Safety
/// `ptr` is null or a live block of the C allocator.
#[no_mangle]
#[inline(never)]
pub unsafe extern "C" fn realloc(ptr: *mut c_void, size: usize) -> *mut c_void {
    // SAFETY: the caller's contract is raw::realloc's.
    unsafe { raw::realloc(ptr, size) }
}

/// C `reallocarray`.
///
/// # Safety
/// As `realloc`.
#[no_mangle]
pub unsafe extern "C" fn reallocarray(ptr: *mut c_void, n: usize, size: usize) -> *mut c_void {
    // SAFETY: the caller's contract is raw::reallocarray's.
    unsafe { raw::reallocarray(ptr, n, size) }
}

/// C `free`.
///
/// # Safety
/// `ptr` is null or a live block of the C allocator, not used afterwards.
#[no_mangle]
#[inline(never)]
pub unsafe extern "C" fn free(ptr: *mut c_void) {
    // SAFETY: the caller's contract is raw::free's.
    unsafe { raw::free(ptr) }
}

/// `cfree`, an old name of `free`.
///
/// # Safety
/// As `free`.
#[no_mangle]
pub unsafe extern "C" fn cfree(ptr: *mut c_void) {
    // SAFETY: the caller's contract is free's.
    unsafe { free(ptr) }
}

/// C `aligned_alloc`.
///
/// # Safety
/// None beyond C's.
#[no_mangle]
#[inline(never)]
pub unsafe extern "C" fn aligned_alloc(align: usize, size: usize) -> *mut c_void {
    raw::aligned_alloc(align, size)
}

/// POSIX `posix_memalign`.
///
/// # Safety
/// `out` is valid for a pointer write.
#[no_mangle]
#[inline(never)]
pub unsafe extern "C" fn posix_memalign(out: *mut *mut c_void, align: usize, size: usize) -> c_int {
    // SAFETY: the caller's contract is raw::posix_memalign's.
    unsafe { raw::posix_memalign(out, align, size) }
}

/// glibc `memalign`.
///
/// # Safety
/// None beyond C's.
#[no_mangle]
#[inline(never)]
pub unsafe extern "C" fn memalign(align: usize, size: usize) -> *mut c_void {
    raw::memalign(align, size)
}

/// glibc `valloc`.
///
/// # Safety
/// None beyond C's.
#[no_mangle]
#[inline(never)]
pub unsafe extern "C" fn valloc(size: usize) -> *mut c_void {
    raw::valloc(size)
}

/// glibc `pvalloc`.
///
/// # Safety
/// None beyond C's.
#[no_mangle]
#[inline(never)]
pub unsafe extern "C" fn pvalloc(size: usize) -> *mut c_void {
    raw::pvalloc(size)
}

/// glibc `malloc_usable_size`.
///
/// # Safety
/// `ptr` is null or a live block of the C allocator.
#[no_mangle]
pub unsafe extern "C" fn malloc_usable_size(ptr: *mut c_void) -> usize {
    // SAFETY: the caller's contract is raw::usable_size's.
    unsafe { raw::usable_size(ptr) }
}

/// glibc's alias of `malloc`.
///
/// # Safety
/// As `malloc`.
#[no_mangle]
pub unsafe extern "C" fn __libc_malloc(size: usize) -> *mut c_void {
    // SAFETY: the same contract (none beyond C's).
    unsafe { malloc(size) }
}

/// glibc's alias of `calloc`.
///
/// # Safety
/// As `calloc`.
#[no_mangle]
pub unsafe extern "C" fn __libc_calloc(n: usize, size: usize) -> *mut c_void {
    // SAFETY: the same contract (none beyond C's).
    unsafe { calloc(n, size) }
}

/// glibc's alias of `realloc`.
///
/// # Safety
/// As `realloc`.
#[no_mangle]
pub unsafe extern "C" fn __libc_realloc(ptr: *mut c_void, size: usize) -> *mut c_void {
    // SAFETY: the caller's contract is realloc's.
    unsafe { realloc(ptr, size) }
}

/// glibc's alias of `free`.
///
/// # Safety
/// As `free`.
#[no_mangle]
pub unsafe extern "C" fn __libc_free(ptr: *mut c_void) {
    // SAFETY: the caller's contract is free's.
    unsafe { free(ptr) }
}

/// glibc's alias of `memalign`.
///
/// # Safety
/// As `memalign`.
#[no_mangle]
pub unsafe extern "C" fn __libc_memalign(align: usize, size: usize) -> *mut c_void {
    // SAFETY: the same contract (none beyond C's).
    unsafe { memalign(align, size) }
}

/// glibc's alias of `valloc`.
///
/// # Safety
/// As `valloc`.
#[no_mangle]
pub unsafe extern "C" fn __libc_valloc(size: usize) -> *mut c_void {
    // SAFETY: the same contract (none beyond C's).
    unsafe { valloc(size) }
}

/// glibc's alias of `pvalloc`.
///
/// # Safety
/// As `pvalloc`.
#[no_mangle]
pub unsafe extern "C" fn __libc_pvalloc(size: usize) -> *mut c_void {
    // SAFETY: the same contract (none beyond C's).
    unsafe { pvalloc(size) }
}

/// glibc's alias of `posix_memalign`.
///
/// # Safety
/// As `posix_memalign`.
#[no_mangle]
pub unsafe extern "C" fn __posix_memalign(
    out: *mut *mut c_void,
    align: usize,
    size: usize,
) -> c_int {
    // SAFETY: the caller's contract is posix_memalign's.
    unsafe { posix_memalign(out, align, size) }
}

/// `const char *flistalloc_backend(void)`: "flist", "malloc" or "jemalloc".
///
/// # Safety
/// None.
#[no_mangle]
pub unsafe extern "C" fn flistalloc_backend() -> *const c_char {
    raw::backend_name().as_ptr()
}

/// `size_t flistalloc_trim(void)`: bytes given back to the OS.
///
/// # Safety
/// None.
#[no_mangle]
pub unsafe extern "C" fn flistalloc_trim() -> usize {
    raw::trim()
}

/// `struct flistalloc_stats` of `include/flistalloc.h`.
#[repr(C)]
pub struct FlistallocStats {
    mapped: usize,
    flist_pool_bytes: usize,
    fallback_live: usize,
    pools_in_use: usize,
    pools_abandoned: usize,
    pools_returned: usize,
    threads: usize,
    reserve_bytes: usize,
}

/// `int flistalloc_stats(struct flistalloc_stats *out, size_t out_size)`:
/// 0, or -1 with `errno = EINVAL` when `out_size` is too small.
///
/// # Safety
/// `out` is valid for writes of `out_size` bytes.
#[no_mangle]
pub unsafe extern "C" fn flistalloc_stats(out: *mut FlistallocStats, out_size: usize) -> c_int {
    if out.is_null() || out_size < core::mem::size_of::<FlistallocStats>() {
        // SAFETY: __errno_location returns this thread's errno.
        unsafe { *libc::__errno_location() = libc::EINVAL };
        return -1;
    }
    let s = flistalloc_lib::stats();
    // SAFETY: `out` holds at least a FlistallocStats (contract, checked size).
    unsafe {
        out.write_unaligned(FlistallocStats {
            mapped: s.mapped,
            flist_pool_bytes: s.flist_pool_bytes,
            fallback_live: s.fallback_live,
            pools_in_use: s.pools_in_use,
            pools_abandoned: s.pools_abandoned,
            pools_returned: s.pools_returned,
            threads: s.threads,
            reserve_bytes: s.reserve_bytes,
        })
    };
    0
}
