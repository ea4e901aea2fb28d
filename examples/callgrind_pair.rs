//! The fast path in instructions: one 64-byte allocation immediately freed,
//! counted by valgrind's callgrind (instruction counts are the same on every
//! run, unlike time). Run it through `scripts/callgrind-pair.sh`, which prints
//! the table; by hand:
//!
//! ```text
//! cargo build --release --example callgrind_pair
//! valgrind --tool=callgrind --callgrind-out-file=/dev/null \
//!     target/release/examples/callgrind_pair flist 1000000
//! ```
//!
//! `callgrind_pair ALLOCATOR N` warms up with 4,096 pairs, then runs N pairs
//! in one `#[inline(never)]` loop, the same generic function for every
//! allocator (one copy each). Instructions per pair are
//! `(Ir(N = 2,000,000) - Ir(N = 1,000,000)) / 1,000,000`: the difference
//! removes start-up, warm-up and exit. The size and every pointer pass through
//! `black_box`, so nothing is folded away; the returned pointer is checked
//! for null (a `GlobalAlloc` may fail), in every loop alike.
//!
//! Allocators (`--list` prints them):
//!
//! * `arena`, `arena-try`: `flistalloc::Arena` (`alloc` + `free`, and
//!   `try_alloc` + `try_free`), capacity 1 GiB.
//! * `flist`, `mimalloc`, `jemalloc`, `system`: `Flist`, `MiMalloc`,
//!   `Jemalloc` and `std::alloc::System` (glibc), all through
//!   `GlobalAlloc::alloc` + `GlobalAlloc::dealloc` with `Layout(64, 8)`. The
//!   `Flist` is a plain `static`, not this program's global allocator (that
//!   stays `System`), so the harness's own allocations touch none of them.
//!   `Flist::new()` reads `FLISTALLOC_BACKEND` (default `flist`).
//! * `libc`: glibc `malloc(64)` + `free` called directly.
//! * `null`: the harness alone: an "allocator" that returns a fixed pointer
//!   and does nothing on free, inlined into the loop. Its count is the cost
//!   of the loop, the `black_box`es and the null check, to subtract.
//! * `null-call`: the same, but called out of line (not inlined), so its
//!   count minus `null`'s is the cost of a call and return.

use flistalloc::{Arena, Flist};
use mimalloc::MiMalloc;
use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::process::exit;
use tikv_jemallocator::Jemalloc;

/// The size of every allocation.
const SIZE: usize = 64;
/// Pairs run before the measured ones, so first-use set-up (thread heaps,
/// pools, caches) is out of the loop.
const WARMUP: usize = 4096;
/// The Arena's capacity; pools are mapped lazily, so it costs nothing.
const ARENA_CAPACITY: usize = 1 << 30;

static FLIST: Flist = Flist::new();

/// One allocation and its free; the loop is generic over this.
trait Pair {
    /// A block of `size` bytes, or null.
    ///
    /// # Safety
    /// `size` is not zero and, rounded up to 8, at most `isize::MAX` (a
    /// valid `Layout` size with align 8).
    unsafe fn alloc(&self, size: usize) -> *mut u8;

    /// Frees `p`.
    ///
    /// # Safety
    /// `p` came from `self.alloc(size)`, is not null, and is not used after.
    unsafe fn free(&self, p: *mut u8, size: usize);
}

/// A `GlobalAlloc`, called through the trait's methods.
struct Global<A: GlobalAlloc + 'static>(&'static A);

impl<A: GlobalAlloc> Global<A> {
    /// `Layout(size, 8)`, unchecked: the size is the constant [`SIZE`], so
    /// the loop pays no check (the other allocators take a bare size).
    ///
    /// # Safety
    /// As [`Pair::alloc`]: `size` rounded up to 8 is at most `isize::MAX`.
    #[inline(always)]
    unsafe fn layout(size: usize) -> Layout {
        // SAFETY: 8 is a power of two, and the caller guarantees the size
        // bound.
        unsafe { Layout::from_size_align_unchecked(size, 8) }
    }
}

impl<A: GlobalAlloc> Pair for Global<A> {
    #[inline(always)]
    unsafe fn alloc(&self, size: usize) -> *mut u8 {
        // SAFETY: by this method's contract `size` is a valid layout size
        // and not zero, the one requirement of `GlobalAlloc::alloc`.
        unsafe { self.0.alloc(Self::layout(size)) }
    }

    #[inline(always)]
    unsafe fn free(&self, p: *mut u8, size: usize) {
        // SAFETY: by this method's contract `p` came from `self.0.alloc` with
        // the same layout (same size, align 8), is freed once and not used
        // after.
        unsafe { self.0.dealloc(p, Self::layout(size)) }
    }
}

/// `Arena::alloc` + `Arena::free` (they panic on misuse).
struct ArenaPanic(Arena);

impl Pair for ArenaPanic {
    #[inline(always)]
    unsafe fn alloc(&self, size: usize) -> *mut u8 {
        self.0.alloc(size).as_ptr()
    }

    #[inline(always)]
    unsafe fn free(&self, p: *mut u8, _size: usize) {
        // SAFETY: by this method's contract `p` is a chunk this arena handed
        // out, not used afterwards and not already free.
        unsafe { self.0.free(p) }
    }
}

/// `Arena::try_alloc` + `Arena::try_free` (errors end the program).
struct ArenaTry(Arena);

impl Pair for ArenaTry {
    #[inline(always)]
    unsafe fn alloc(&self, size: usize) -> *mut u8 {
        match self.0.try_alloc(size) {
            Ok(p) => p.as_ptr(),
            Err(e) => die(&e.to_string()),
        }
    }

    #[inline(always)]
    unsafe fn free(&self, p: *mut u8, _size: usize) {
        // SAFETY: by this method's contract `p` is a chunk this arena handed
        // out, not used afterwards and not already free.
        if let Err(e) = unsafe { self.0.try_free(p) } {
            die(&e.to_string())
        }
    }
}

/// glibc `malloc` + `free`, directly.
struct Libc;

impl Pair for Libc {
    #[inline(always)]
    unsafe fn alloc(&self, size: usize) -> *mut u8 {
        // SAFETY: `malloc` accepts any size; the block is only freed below.
        unsafe { libc::malloc(size) as *mut u8 }
    }

    #[inline(always)]
    unsafe fn free(&self, p: *mut u8, _size: usize) {
        // SAFETY: by this method's contract `p` came from `malloc` and is
        // freed once.
        unsafe { libc::free(p as *mut libc::c_void) }
    }
}

/// The fixed block the null "allocators" return (64 bytes, aligned to 8);
/// never read or written.
static SLOT: [u64; SIZE / 8] = [0; SIZE / 8];

/// The harness alone: a fixed pointer, nothing on free, inlined.
struct Null;

impl Pair for Null {
    #[inline(always)]
    unsafe fn alloc(&self, _size: usize) -> *mut u8 {
        SLOT.as_ptr() as *mut u8
    }

    #[inline(always)]
    unsafe fn free(&self, _p: *mut u8, _size: usize) {}
}

/// As [`Null`], but called out of line.
struct NullCall;

impl Pair for NullCall {
    #[inline(never)]
    unsafe fn alloc(&self, _size: usize) -> *mut u8 {
        black_box(SLOT.as_ptr() as *mut u8)
    }

    #[inline(never)]
    unsafe fn free(&self, p: *mut u8, _size: usize) {
        black_box(p);
    }
}

/// `n` pairs of `a.alloc(64)` + `a.free`, one copy per allocator.
#[inline(never)]
fn run<P: Pair>(a: &P, n: usize) {
    for _ in 0..n {
        // SAFETY: `black_box` returns its argument, so the size is `SIZE`,
        // 64: not zero and a valid layout size.
        let p = black_box(unsafe { a.alloc(black_box(SIZE)) });
        if p.is_null() {
            die("out of memory");
        }
        // SAFETY: `p` came from `a.alloc(SIZE)` just above, is not null, and
        // is not used after this free.
        unsafe { a.free(black_box(p), SIZE) };
    }
}

fn measure<P: Pair>(a: &P, n: usize) {
    run(a, WARMUP);
    run(a, n);
}

#[cold]
#[inline(never)]
fn die(msg: &str) -> ! {
    eprintln!("callgrind_pair: {msg}");
    exit(1)
}

const NAMES: [&str; 9] = [
    "arena",
    "arena-try",
    "flist",
    "mimalloc",
    "jemalloc",
    "system",
    "libc",
    "null",
    "null-call",
];

fn usage() -> ! {
    eprintln!(
        "usage: callgrind_pair ALLOCATOR N   (ALLOCATOR: {})",
        NAMES.join(", ")
    );
    eprintln!("       callgrind_pair --list");
    exit(2)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() == 1 && args[0] == "--list" {
        for name in NAMES {
            println!("{name}");
        }
        return;
    }
    if args.len() != 2 {
        usage();
    }
    let Ok(n) = args[1].parse::<usize>() else {
        usage()
    };
    static MIMALLOC: MiMalloc = MiMalloc;
    static JEMALLOC: Jemalloc = Jemalloc;
    static SYSTEM: System = System;
    match args[0].as_str() {
        "arena" => measure(&ArenaPanic(Arena::new(ARENA_CAPACITY)), n),
        "arena-try" => measure(&ArenaTry(Arena::new(ARENA_CAPACITY)), n),
        "flist" => measure(&Global(&FLIST), n),
        "mimalloc" => measure(&Global(&MIMALLOC), n),
        "jemalloc" => measure(&Global(&JEMALLOC), n),
        "system" => measure(&Global(&SYSTEM), n),
        "libc" => measure(&Libc, n),
        "null" => measure(&Null, n),
        "null-call" => measure(&NullCall, n),
        _ => usage(),
    }
}
