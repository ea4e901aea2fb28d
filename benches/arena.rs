//! `Arena` against glibc `malloc`/`free`, in the same run and the same
//! criterion groups, so `pair/64/flist` sits right beside `pair/64/glibc`.
//!
//! * `pair/SIZE/*`: one allocation immediately freed (the hot path).
//! * `batch/SIZE/*`: 1,000 allocations of SIZE, then 1,000 frees in a random
//!   order (a seeded shuffle, the same for both allocators and every run).
//!
//! Sizes: 8, 64, 256, 4 KiB, 64 KiB. Run: `cargo bench --bench arena`.
//! Criterion's settings are trimmed (30 samples, 0.5 s warm-up, 2 s
//! measurement) so the whole run stays within a few minutes on 2 cores.

use criterion::{criterion_group, criterion_main, Criterion};
use flistalloc::Arena;
use std::hint::black_box;
use std::time::Duration;
use support::rng::permutation;

const SIZES: [usize; 5] = [8, 64, 256, 4096, 65536];
const BATCH: usize = 1000;
/// Pools are mapped lazily, so a large capacity costs nothing up front.
const CAPACITY: usize = 1 << 30;

fn pairs(c: &mut Criterion) {
    for size in SIZES {
        let mut g = c.benchmark_group(format!("pair/{size}"));
        let arena = Arena::new(CAPACITY);
        g.bench_function("flist", |b| {
            b.iter(|| {
                let p = arena.alloc(black_box(size)).as_ptr();
                // SAFETY: `p` was just handed out by this arena and is not
                // used after the free.
                unsafe { arena.free(black_box(p)) };
            })
        });
        g.bench_function("glibc", |b| {
            b.iter(|| {
                // SAFETY: plain malloc/free of a block nobody else sees.
                unsafe {
                    let p = libc::malloc(black_box(size));
                    assert!(!p.is_null());
                    libc::free(black_box(p));
                }
            })
        });
        g.finish();
        drop(arena);
    }
}

fn batches(c: &mut Criterion) {
    // A seeded shuffle: the same free order for every allocator and run.
    let order = permutation(BATCH, 0x5eed_f11a);
    for size in SIZES {
        let mut g = c.benchmark_group(format!("batch/{size}"));
        let arena = Arena::new(CAPACITY);
        let mut ptrs: Vec<*mut u8> = vec![std::ptr::null_mut(); BATCH];
        g.bench_function("flist", |b| {
            b.iter(|| {
                for p in ptrs.iter_mut() {
                    *p = black_box(arena.alloc(black_box(size)).as_ptr());
                }
                for &i in &order {
                    // SAFETY: every `ptrs[i]` was handed out by this arena in
                    // the loop above and `order` is a permutation, so each is
                    // freed exactly once and not used afterwards.
                    unsafe { arena.free(black_box(ptrs[i])) };
                }
            })
        });
        g.bench_function("glibc", |b| {
            b.iter(|| {
                for p in ptrs.iter_mut() {
                    // SAFETY: plain malloc; the block is freed below.
                    let q = unsafe { libc::malloc(black_box(size)) };
                    assert!(!q.is_null());
                    *p = black_box(q.cast());
                }
                for &i in &order {
                    // SAFETY: each block came from malloc above and is freed
                    // exactly once (`order` is a permutation).
                    unsafe { libc::free(black_box(ptrs[i]).cast()) };
                }
            })
        });
        g.finish();
        drop(arena);
    }
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(30)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
}

criterion_group! {
    name = benches;
    config = config();
    targets = pairs, batches
}
criterion_main!(benches);
