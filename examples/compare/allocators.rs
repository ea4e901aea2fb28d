//! The allocators compared, and the `#[global_allocator]` that switches
//! between them: [`Switch`] forwards every call to `mimalloc::MiMalloc`, to
//! `tikv_jemallocator::Jemalloc` or `std::alloc::System` installed directly
//! (the `--direct` columns), or to [`FLIST`], a `flistalloc::Flist` that
//! reads `FLISTALLOC_BACKEND` itself (flist, malloc or jemalloc). Which one
//! is decided once, at the first allocation, from `COMPARE_ALLOC`. A global
//! allocator must live in the binary, so this stays in the example.

use std::alloc::{GlobalAlloc, Layout, System};
use std::process::Command;
use std::sync::atomic::{AtomicU8, Ordering};

static FLIST: flistalloc::Flist = flistalloc::Flist::new();

/// 0: not decided yet; else one of the `MODE_` values.
static MODE: AtomicU8 = AtomicU8::new(0);
/// [`FLIST`], whatever its backend.
const MODE_FLIST: u8 = 1;
/// `COMPARE_ALLOC=mimalloc`.
const MODE_MIMALLOC: u8 = 2;
/// `COMPARE_ALLOC=jemalloc-direct`: `tikv_jemallocator::Jemalloc`.
const MODE_JEMALLOC: u8 = 3;
/// `COMPARE_ALLOC=malloc-direct`: `std::alloc::System` (glibc).
const MODE_SYSTEM: u8 = 4;

/// Forwards every call to the allocator `COMPARE_ALLOC` names, else to
/// [`FLIST`].
struct Switch;

#[global_allocator]
static GLOBAL: Switch = Switch;

/// The mode of this process (decided at the first call).
#[inline(always)]
fn mode() -> u8 {
    match MODE.load(Ordering::Relaxed) {
        0 => decide_mode(),
        m => m,
    }
}

/// Whether this process runs on an allocator other than [`FLIST`], and
/// which: `Some("mimalloc" | "jemalloc-direct" | "malloc-direct")`.
pub fn direct_name() -> Option<&'static str> {
    match mode() {
        MODE_MIMALLOC => Some("mimalloc"),
        MODE_JEMALLOC => Some("jemalloc-direct"),
        MODE_SYSTEM => Some("malloc-direct"),
        _ => None,
    }
}

/// Reads `COMPARE_ALLOC` without allocating. Threads racing here compute the
/// same answer (the environment does not change), so a plain store is enough.
#[cold]
#[inline(never)]
fn decide_mode() -> u8 {
    let mode = if support::env::var_is(c"COMPARE_ALLOC", b"mimalloc") {
        MODE_MIMALLOC
    } else if support::env::var_is(c"COMPARE_ALLOC", b"jemalloc-direct") {
        MODE_JEMALLOC
    } else if support::env::var_is(c"COMPARE_ALLOC", b"malloc-direct") {
        MODE_SYSTEM
    } else {
        MODE_FLIST
    };
    MODE.store(mode, Ordering::Relaxed);
    mode
}

/// Runs `$call` on the allocator of this process's mode.
macro_rules! forward {
    ($a:ident => $call:expr) => {
        match mode() {
            MODE_MIMALLOC => {
                let $a = &mimalloc::MiMalloc;
                $call
            }
            MODE_JEMALLOC => {
                let $a = &tikv_jemallocator::Jemalloc;
                $call
            }
            MODE_SYSTEM => {
                let $a = &System;
                $call
            }
            _ => {
                let $a = &FLIST;
                $call
            }
        }
    };
}

// SAFETY: every call goes to one sound global allocator, and always to the
// same one: the mode is decided before the first allocation and never
// changes, so each block is freed (or resized) by the allocator that made it.
unsafe impl GlobalAlloc for Switch {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded GlobalAlloc contract.
        forward!(a => unsafe { a.alloc(layout) })
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded GlobalAlloc contract.
        forward!(a => unsafe { a.alloc_zeroed(layout) })
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded contract; the block came from the same allocator
        // (the mode never changes).
        forward!(a => unsafe { a.dealloc(ptr, layout) })
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded contract; the block came from the same allocator.
        forward!(a => unsafe { a.realloc(ptr, layout, new_size) })
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
    /// `tikv_jemallocator::Jemalloc` installed directly (`--direct`).
    JemallocDirect,
    /// `std::alloc::System` installed directly (`--direct`).
    MallocDirect,
}

impl Alloc {
    pub const ALL: [Alloc; 4] = [
        Alloc::Flist,
        Alloc::Malloc,
        Alloc::Jemalloc,
        Alloc::Mimalloc,
    ];

    /// The two `--direct` columns.
    pub const DIRECT: [Alloc; 2] = [Alloc::JemallocDirect, Alloc::MallocDirect];

    pub fn name(self) -> &'static str {
        match self {
            Alloc::Flist => "flist",
            Alloc::Malloc => "malloc",
            Alloc::Jemalloc => "jemalloc",
            Alloc::Mimalloc => "mimalloc",
            Alloc::JemallocDirect => "jemalloc-direct",
            Alloc::MallocDirect => "malloc-direct",
        }
    }

    pub fn color(self) -> &'static str {
        match self {
            Alloc::Flist => "#1f6fb4",
            Alloc::Malloc => "#8c8c8c",
            Alloc::Jemalloc => "#e8871e",
            Alloc::Mimalloc => "#2f9e44",
            Alloc::JemallocDirect => "#f5b971",
            Alloc::MallocDirect => "#c4c4c4",
        }
    }

    /// The environment a child needs to run on this allocator.
    pub fn configure(self, cmd: &mut Command) {
        match self {
            Alloc::Mimalloc | Alloc::JemallocDirect | Alloc::MallocDirect => {
                cmd.env("COMPARE_ALLOC", self.name())
                    .env_remove("FLISTALLOC_BACKEND");
            }
            b => {
                cmd.env("FLISTALLOC_BACKEND", b.name())
                    .env_remove("COMPARE_ALLOC");
            }
        }
    }
}
