//! The low-level interface for code that makes flistalloc the C allocator
//! (the `LD_PRELOAD` library of a later issue): the one module such a crate
//! uses, documented here and nowhere else.
//!
//! Today: the injection of the C library's own allocator functions for the
//! `malloc` backend and the fallback. (Pointer classification, the usable
//! size and a free without a size join this module with the C library.)

pub use crate::backend::SystemFns;

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
