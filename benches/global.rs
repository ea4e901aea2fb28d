//! The global allocator, [`Flist`], against `System` (glibc malloc),
//! jemalloc and mimalloc, in the same run and the same criterion groups, so
//! `pair/64/flist` sits right beside `pair/64/mimalloc`. Every case calls the
//! allocators' `GlobalAlloc` methods directly (layouts and pointers pass
//! through `black_box`); the bench binary itself keeps `System` as its global
//! allocator, so criterion's own allocations touch none of the four.
//!
//! * `pair/SIZE/*`: one allocation immediately freed (the hot path), for
//!   16, 64 and 256 B.
//! * `batch/64/*`: 1,000 allocations of 64 B, then 1,000 frees in a random
//!   order (a seeded shuffle, the same for every allocator and every run).
//! * `vec/1MiB/*`: a `Vec` grown by push, simulated: `alloc` 8 B, `realloc`
//!   doubling up to 1 MiB, `dealloc`. Nothing is written but what `realloc`
//!   copies.
//! * `vec_push/1MiB/*`: the same, but every byte a push would write is
//!   written (the new half after each doubling), so page faults and copies
//!   count as they do in a real `Vec`.
//! * `xthread/64/*`: the bench thread allocates batches of 1,000 blocks of
//!   64 B and hands each batch to a long-lived worker thread, which frees
//!   them. Two batch buffers are in flight (the worker frees batch N while
//!   the bench thread allocates batch N+1), the hand-off is a spin on two
//!   atomic slots (no channel, which would allocate), and the time is per
//!   batch: in the steady state, the slower of the two sides plus the
//!   hand-off, the same for every allocator.
//!
//! `Flist::new()` reads `FLISTALLOC_BACKEND` once per process (default
//! `flist`); the backend in use is printed first. Run:
//! `cargo bench --bench global`. Criterion's settings are trimmed (25
//! samples, 0.5 s warm-up, 2 s measurement) so the whole run stays within
//! about two minutes on 2 cores.

use criterion::measurement::WallTime;
use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion};
use flistalloc::Flist;
use mimalloc::MiMalloc;
use std::alloc::{handle_alloc_error, GlobalAlloc, Layout, System};
use std::hint::{black_box, spin_loop};
use std::ptr::null_mut;
use std::sync::atomic::{AtomicBool, AtomicPtr, Ordering};
use std::time::Duration;
use support::rng::permutation;
use tikv_jemallocator::Jemalloc;

static FLIST: Flist = Flist::new();
static SYSTEM: System = System;
static JEMALLOC: Jemalloc = Jemalloc;
static MIMALLOC: MiMalloc = MiMalloc;

const PAIR_SIZES: [usize; 3] = [16, 64, 256];
const BATCH: usize = 1000;
const BATCH_SIZE: usize = 64;
const VEC_START: usize = 8;
const VEC_END: usize = 1 << 20;

/// Runs `$case(group, name, allocator, args...)` for the four allocators.
macro_rules! each_allocator {
    ($case:ident, $g:expr $(, $arg:expr)*) => {{
        $case($g, "flist", &FLIST $(, $arg)*);
        $case($g, "system", &SYSTEM $(, $arg)*);
        $case($g, "jemalloc", &JEMALLOC $(, $arg)*);
        $case($g, "mimalloc", &MIMALLOC $(, $arg)*);
    }};
}

fn layout(size: usize) -> Layout {
    Layout::from_size_align(size, 8).expect("a valid layout")
}

/// `a.alloc(layout)`, aborting (like `Vec`) on null.
///
/// # Safety
/// `layout` has a non-zero size (the `GlobalAlloc::alloc` contract).
#[inline(always)]
unsafe fn alloc<A: GlobalAlloc>(a: &A, layout: Layout) -> *mut u8 {
    // SAFETY: forwarded contract.
    let p = unsafe { a.alloc(black_box(layout)) };
    if p.is_null() {
        handle_alloc_error(layout);
    }
    black_box(p)
}

// ---------------------------------------------------------------- pairs

fn pair_case<A: GlobalAlloc>(g: &mut BenchmarkGroup<WallTime>, name: &str, a: &A, size: usize) {
    let l = layout(size);
    g.bench_function(name, |b| {
        b.iter(|| {
            // SAFETY: a non-zero size; the block is freed with the layout it
            // was allocated with, by the allocator that made it, once.
            unsafe {
                let p = alloc(a, l);
                a.dealloc(black_box(p), black_box(l));
            }
        })
    });
}

fn pairs(c: &mut Criterion) {
    for size in PAIR_SIZES {
        let mut g = c.benchmark_group(format!("pair/{size}"));
        each_allocator!(pair_case, &mut g, size);
        g.finish();
    }
}

// ---------------------------------------------------------------- batches

fn batch_case<A: GlobalAlloc>(
    g: &mut BenchmarkGroup<WallTime>,
    name: &str,
    a: &A,
    order: &[usize],
) {
    let l = layout(BATCH_SIZE);
    let mut ptrs: Vec<*mut u8> = vec![null_mut(); BATCH];
    g.bench_function(name, |b| {
        b.iter(|| {
            for p in ptrs.iter_mut() {
                // SAFETY: a non-zero size; the block is freed below.
                *p = unsafe { alloc(a, l) };
            }
            for &i in order {
                // SAFETY: every `ptrs[i]` came from `a` with layout `l` in
                // the loop above and `order` is a permutation, so each is
                // freed exactly once and not used afterwards.
                unsafe { a.dealloc(black_box(ptrs[i]), black_box(l)) };
            }
        })
    });
}

fn batches(c: &mut Criterion) {
    // A seeded shuffle: the same free order for every allocator and run.
    let order = permutation(BATCH, 0x5eed_f11a);
    let mut g = c.benchmark_group(format!("batch/{BATCH_SIZE}"));
    each_allocator!(batch_case, &mut g, &order);
    g.finish();
}

// ---------------------------------------------------------------- vec growth

/// Grows a block from `VEC_START` to `VEC_END` bytes by doubling `realloc`s
/// and frees it; with `touch`, writes the bytes each doubling adds, as the
/// pushes filling a `Vec` would.
#[inline(always)]
fn grow<A: GlobalAlloc>(a: &A, touch: bool) {
    let mut l = layout(VEC_START);
    // SAFETY: a non-zero size. Each realloc gets the block's current layout
    // and a larger non-zero size that is valid with align 8; the old pointer
    // is dropped for the returned one (checked non-null); writes stay inside
    // the current block; the final dealloc uses the final layout.
    unsafe {
        let mut p = alloc(a, l);
        if touch {
            p.write_bytes(1, l.size());
        }
        while l.size() < VEC_END {
            let new_size = l.size() * 2;
            let q = a.realloc(black_box(p), black_box(l), black_box(new_size));
            if q.is_null() {
                handle_alloc_error(layout(new_size));
            }
            if touch {
                q.add(l.size()).write_bytes(1, new_size - l.size());
            }
            p = black_box(q);
            l = layout(new_size);
        }
        a.dealloc(black_box(p), black_box(l));
    }
}

fn vec_case<A: GlobalAlloc>(g: &mut BenchmarkGroup<WallTime>, name: &str, a: &A, touch: bool) {
    g.bench_function(name, |b| b.iter(|| grow(a, touch)));
}

fn vecs(c: &mut Criterion) {
    for (group, touch) in [("vec/1MiB", false), ("vec_push/1MiB", true)] {
        let mut g = c.benchmark_group(group);
        each_allocator!(vec_case, &mut g, touch);
        g.finish();
    }
}

// ---------------------------------------------------------------- cross-thread

/// A batch of block addresses (as `usize`, so the buffer is `Send`).
type Batch = Vec<usize>;

/// The hand-off between the allocating thread and the freeing worker: one
/// slot each way, holding a leaked `Box<Batch>` or null.
struct Mailbox {
    /// A full batch for the worker to free.
    to_worker: AtomicPtr<Batch>,
    /// An emptied batch buffer coming back.
    to_main: AtomicPtr<Batch>,
    stop: AtomicBool,
}

/// Spins (then yields) until `f` returns `Some`.
#[inline(always)]
fn spin_until<T>(mut f: impl FnMut() -> Option<T>) -> T {
    let mut spins = 0u32;
    loop {
        if let Some(v) = f() {
            return v;
        }
        if spins < 1 << 12 {
            spins += 1;
            spin_loop();
        } else {
            std::thread::yield_now();
        }
    }
}

/// Puts `b` in `slot` once the slot is empty.
fn send(slot: &AtomicPtr<Batch>, b: Box<Batch>) {
    let raw = Box::into_raw(b);
    spin_until(|| {
        slot.compare_exchange(null_mut(), raw, Ordering::Release, Ordering::Relaxed)
            .ok()
    });
}

/// Takes the batch in `slot`, if any.
fn take(slot: &AtomicPtr<Batch>) -> Option<Box<Batch>> {
    let raw = slot.swap(null_mut(), Ordering::Acquire);
    // SAFETY: a non-null slot holds a `Box<Batch>` leaked by `send`, and the
    // swap made us its only owner.
    (!raw.is_null()).then(|| unsafe { Box::from_raw(raw) })
}

/// The freeing side: frees every batch it is sent, returns the buffer, and
/// stops once `stop` is set and no batch is left.
fn worker<A: GlobalAlloc>(a: &A, m: &Mailbox, l: Layout) {
    loop {
        let batch = spin_until(|| {
            if let Some(b) = take(&m.to_worker) {
                return Some(Some(b));
            }
            if m.stop.load(Ordering::Acquire) {
                // The last batch was sent before `stop` was set: look again.
                return Some(take(&m.to_worker));
            }
            None
        });
        let Some(batch) = batch else { return };
        for &addr in batch.iter() {
            // SAFETY: each address is a live block of `a` with layout `l`,
            // allocated by the bench thread and handed over once; it is freed
            // here exactly once.
            unsafe { a.dealloc(black_box(addr as *mut u8), black_box(l)) };
        }
        send(&m.to_main, batch);
    }
}

/// The allocating side: two batch buffers, one filled here while the worker
/// frees the other.
struct Producer<'m> {
    m: &'m Mailbox,
    spare: [Option<Box<Batch>>; 2],
}

impl Producer<'_> {
    #[inline(always)]
    fn step<A: GlobalAlloc>(&mut self, a: &A, l: Layout) {
        let mut batch = match self.spare.iter_mut().find_map(Option::take) {
            Some(b) => b,
            None => spin_until(|| take(&self.m.to_main)),
        };
        batch.clear();
        for _ in 0..BATCH {
            // SAFETY: a non-zero size; the worker frees the block.
            let p = unsafe { alloc(a, l) };
            batch.push(p as usize);
        }
        send(&self.m.to_worker, batch);
    }
}

fn xthread_case<A: GlobalAlloc + Sync>(g: &mut BenchmarkGroup<WallTime>, name: &str, a: &A) {
    let l = layout(BATCH_SIZE);
    let m = Mailbox {
        to_worker: AtomicPtr::new(null_mut()),
        to_main: AtomicPtr::new(null_mut()),
        stop: AtomicBool::new(false),
    };
    std::thread::scope(|s| {
        let freer = s.spawn(|| worker(a, &m, l));
        let mut producer = Producer {
            m: &m,
            // Capacity reserved up front: pushes never reallocate.
            spare: [(); 2].map(|_| Some(Box::new(Vec::with_capacity(BATCH)))),
        };
        g.bench_function(name, |b| b.iter(|| producer.step(a, l)));
        m.stop.store(true, Ordering::Release);
        // The worker may be waiting to return a buffer into a full slot:
        // keep emptying it until the worker is done.
        while !freer.is_finished() {
            drop(take(&m.to_main));
            std::thread::yield_now();
        }
        freer.join().expect("the freeing worker panicked");
    });
    // Every batch sent was freed; drop the last returned buffer.
    drop(take(&m.to_main));
}

fn xthread(c: &mut Criterion) {
    let mut g = c.benchmark_group(format!("xthread/{BATCH_SIZE}"));
    each_allocator!(xthread_case, &mut g);
    g.finish();
}

// ---------------------------------------------------------------- driver

fn announce(_: &mut Criterion) {
    eprintln!(
        "flistalloc backend for Flist::new(): {:?}",
        flistalloc::backend()
    );
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(25)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
}

criterion_group! {
    name = benches;
    config = config();
    targets = announce, pairs, batches, vecs, xthread
}
criterion_main!(benches);
