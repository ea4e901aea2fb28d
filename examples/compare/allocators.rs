//! The allocators compared, and the `#[global_allocator]` that switches
//! between them: [`Switch`] forwards every call either to
//! `mimalloc::MiMalloc` or to [`FLIST`], a `flistalloc::Flist` that reads
//! `FLISTALLOC_BACKEND` itself (flist, malloc or jemalloc). Which one is
//! decided once, at the first allocation, from `COMPARE_ALLOC`. A global
//! allocator must live in the binary, so this stays in the example.

use std::alloc::{GlobalAlloc, Layout};
use std::process::Command;
use std::sync::atomic::{AtomicU8, Ordering};

static FLIST: flistalloc::Flist = flistalloc::Flist::new();

/// 0: not decided yet; [`MODE_FLIST`]; [`MODE_MIMALLOC`].
static MODE: AtomicU8 = AtomicU8::new(0);
const MODE_FLIST: u8 = 1;
const MODE_MIMALLOC: u8 = 2;

/// Forwards every call to `mimalloc` when `COMPARE_ALLOC=mimalloc`, else to
/// [`FLIST`].
struct Switch;

#[global_allocator]
static GLOBAL: Switch = Switch;

#[inline(always)]
pub fn use_mimalloc() -> bool {
    match MODE.load(Ordering::Relaxed) {
        0 => decide_mode(),
        m => m == MODE_MIMALLOC,
    }
}

/// Reads `COMPARE_ALLOC` without allocating. Threads racing here compute the
/// same answer (the environment does not change), so a plain store is enough.
#[cold]
#[inline(never)]
fn decide_mode() -> bool {
    let mimalloc = support::env::var_is(c"COMPARE_ALLOC", b"mimalloc");
    let mode = if mimalloc { MODE_MIMALLOC } else { MODE_FLIST };
    MODE.store(mode, Ordering::Relaxed);
    mimalloc
}

// SAFETY: every call goes to one of two sound global allocators, and always
// to the same one: the mode is decided before the first allocation and never
// changes, so each block is freed (or resized) by the allocator that made it.
unsafe impl GlobalAlloc for Switch {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if use_mimalloc() {
            // SAFETY: forwarded GlobalAlloc contract.
            unsafe { mimalloc::MiMalloc.alloc(layout) }
        } else {
            // SAFETY: forwarded GlobalAlloc contract.
            unsafe { FLIST.alloc(layout) }
        }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if use_mimalloc() {
            // SAFETY: forwarded GlobalAlloc contract.
            unsafe { mimalloc::MiMalloc.alloc_zeroed(layout) }
        } else {
            // SAFETY: forwarded GlobalAlloc contract.
            unsafe { FLIST.alloc_zeroed(layout) }
        }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if use_mimalloc() {
            // SAFETY: forwarded contract; the block came from mimalloc (the
            // mode never changes).
            unsafe { mimalloc::MiMalloc.dealloc(ptr, layout) }
        } else {
            // SAFETY: forwarded contract; the block came from FLIST.
            unsafe { FLIST.dealloc(ptr, layout) }
        }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if use_mimalloc() {
            // SAFETY: forwarded contract; the block came from mimalloc.
            unsafe { mimalloc::MiMalloc.realloc(ptr, layout, new_size) }
        } else {
            // SAFETY: forwarded contract; the block came from FLIST.
            unsafe { FLIST.realloc(ptr, layout, new_size) }
        }
    }
}

// ---------------------------------------------------------------------------
// The four columns

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Alloc {
    Flist,
    Malloc,
    Jemalloc,
    Mimalloc,
}

impl Alloc {
    pub const ALL: [Alloc; 4] = [
        Alloc::Flist,
        Alloc::Malloc,
        Alloc::Jemalloc,
        Alloc::Mimalloc,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Alloc::Flist => "flist",
            Alloc::Malloc => "malloc",
            Alloc::Jemalloc => "jemalloc",
            Alloc::Mimalloc => "mimalloc",
        }
    }

    pub fn color(self) -> &'static str {
        match self {
            Alloc::Flist => "#1f6fb4",
            Alloc::Malloc => "#8c8c8c",
            Alloc::Jemalloc => "#e8871e",
            Alloc::Mimalloc => "#2f9e44",
        }
    }

    /// The environment a child needs to run on this allocator.
    pub fn configure(self, cmd: &mut Command) {
        match self {
            Alloc::Mimalloc => {
                cmd.env("COMPARE_ALLOC", "mimalloc")
                    .env_remove("FLISTALLOC_BACKEND");
            }
            b => {
                cmd.env("FLISTALLOC_BACKEND", b.name())
                    .env_remove("COMPARE_ALLOC");
            }
        }
    }
}
