//! The hard memory budget, `FLISTALLOC_CAPACITY`: past it allocation
//! returns null, so `try_reserve` gets an `Err` and an infallible allocation
//! reaches `handle_alloc_error` (an abort). The budget is read once per
//! process, so each case runs in a child process (this test binary re-run
//! with the variable set).

use std::hint::black_box;

#[global_allocator]
static GLOBAL: flistalloc::Flist = flistalloc::Flist::new();

mod common;
use common::{child_aborts, child_ok, child_ok_echo, is_child, DONE};

/// Runs the child and checks it died of `handle_alloc_error`: SIGABRT, with
/// std's "memory allocation of N bytes failed" message.
fn child_aborts_out_of_memory(name: &str, env: &[(&str, &str)]) {
    let stderr = child_aborts(name, env);
    assert!(
        stderr.contains("memory allocation of"),
        "no handle_alloc_error message:\n{stderr}"
    );
    assert!(!stderr.contains(DONE), "{stderr}");
}

const MIB: usize = 1 << 20;

#[test]
fn try_reserve_respects_capacity() {
    if is_child() {
        // 2 GiB does not fit a 1 GiB budget; 64 MiB does.
        let mut v: Vec<u8> = Vec::new();
        assert!(
            v.try_reserve(2 << 30).is_err(),
            "2 GiB under a 1 GiB budget"
        );
        assert!(v.try_reserve(64 * MIB).is_ok());
        assert!(v.capacity() >= 64 * MIB);
        v.extend((0..64 * MIB).map(|i| i as u8));
        assert_eq!(v[12345], 12345usize as u8);
        // Live fallback bytes count: with 600 MiB held, another 600 MiB
        // does not fit (address space only; the pages are never touched).
        let mut a: Vec<u8> = Vec::new();
        assert!(a.try_reserve_exact(600 * MIB).is_ok());
        let mut b: Vec<u8> = Vec::new();
        assert!(
            b.try_reserve_exact(600 * MIB).is_err(),
            "600 MiB + 600 MiB + 64 MiB fit a 1 GiB budget"
        );
        drop(a);
        drop(v);
        // Freeing gives the bytes back to the budget.
        assert!(b.try_reserve_exact(600 * MIB).is_ok());
        // Growth by realloc is counted too.
        let mut c: Vec<u8> = Vec::new();
        // (600 MiB held in b, so growing c from 300 to 500 MiB does not
        // fit until b is freed.)
        assert!(c.try_reserve_exact(300 * MIB).is_ok());
        assert!(c.try_reserve_exact(500 * MIB).is_err());
        drop(b);
        assert!(c.try_reserve_exact(500 * MIB).is_ok());
        eprintln!("{DONE}");
        return;
    }
    child_ok(
        "try_reserve_respects_capacity",
        &[("FLISTALLOC_CAPACITY", "1G")],
    );
}

#[test]
fn vec_macro_past_capacity_aborts() {
    if is_child() {
        let v = vec![0u8; black_box(2usize << 30)];
        black_box(&v);
        eprintln!("{DONE}");
        return;
    }
    child_aborts_out_of_memory(
        "vec_macro_past_capacity_aborts",
        &[("FLISTALLOC_CAPACITY", "1G")],
    );
}

#[test]
fn push_loop_past_capacity_aborts() {
    // 64 MiB rather than 1 GiB: the pushes touch every byte, and the Vec
    // fails when doubling from 32 to 64 MiB, so RSS stays small.
    if is_child() {
        let mut v: Vec<u64> = Vec::new();
        for i in 0..black_box(1usize << 30) {
            v.push(i as u64);
        }
        black_box(&v);
        eprintln!("{DONE}");
        return;
    }
    child_aborts_out_of_memory(
        "push_loop_past_capacity_aborts",
        &[("FLISTALLOC_CAPACITY", "64M")],
    );
}

/// Allocates 1-chunk Vecs of `size` bytes until `try_reserve_exact` fails;
/// returns them.
fn fill(size: usize, holder: &mut Vec<Vec<u8>>) -> usize {
    let start = holder.len();
    while holder.len() < holder.capacity() {
        let mut v: Vec<u8> = Vec::new();
        if v.try_reserve_exact(size).is_err() {
            break;
        }
        v.push(holder.len() as u8);
        holder.push(v);
    }
    assert!(holder.len() < holder.capacity(), "the budget never ran out");
    holder.len() - start
}

#[test]
fn small_pools_count_against_capacity() {
    if is_child() {
        const BUDGET: usize = 64 * MIB;
        // Room for more than the budget's worth of 1 KiB blocks, reserved
        // up front so the holder itself never needs to grow.
        let mut holder: Vec<Vec<u8>> = Vec::with_capacity(BUDGET / 1024 + 4096);
        let n = fill(1024, &mut holder);
        let bytes = n * 1024;
        eprintln!(
            "1 KiB blocks under a 64 MiB budget: {n} ({:.1} MiB); {:?}",
            bytes as f64 / MIB as f64,
            flistalloc::stats()
        );
        assert!(bytes <= BUDGET, "{bytes} bytes of blocks under 64 MiB");
        assert!(bytes >= BUDGET - 8 * MIB, "only {bytes} bytes fit");
        for (i, v) in holder.iter().enumerate() {
            assert_eq!(v[0], i as u8);
        }
        // A large block does not fit either while the small ones are live.
        let mut big: Vec<u8> = Vec::new();
        assert!(big.try_reserve_exact(16 * MIB).is_err());

        // Freeing them gives their pools back to the budget: a large block
        // and blocks of another slab (which cannot reuse the 1 KiB pools)
        // fit again.
        holder.clear();
        assert!(big.try_reserve_exact(16 * MIB).is_ok());
        drop(big);
        let m = fill(3000, &mut holder);
        eprintln!(
            "then 3000 B blocks: {m} ({:.1} MiB); {:?}",
            (m * 3000) as f64 / MIB as f64,
            flistalloc::stats()
        );
        assert!(m * 3000 <= BUDGET);
        assert!(
            m * 3000 >= BUDGET - 12 * MIB,
            "after freeing, only {m} blocks of 3000 B fit"
        );
        eprintln!("{DONE}");
        return;
    }
    child_ok_echo(
        "small_pools_count_against_capacity",
        &[("FLISTALLOC_CAPACITY", "64M")],
        "blocks",
    );
}

#[test]
fn malloc_backend_respects_capacity() {
    if is_child() {
        assert_eq!(flistalloc::backend(), flistalloc::Backend::Malloc);
        let mut v: Vec<u8> = Vec::new();
        assert!(v.try_reserve(2 << 30).is_err());
        assert!(v.try_reserve(64 * MIB).is_ok());
        let mut w: Vec<u8> = Vec::new();
        assert!(w.try_reserve_exact(1000 * MIB).is_err());
        drop(v);
        assert!(w.try_reserve_exact(1000 * MIB).is_ok());
        eprintln!("{DONE}");
        return;
    }
    child_ok(
        "malloc_backend_respects_capacity",
        &[
            ("FLISTALLOC_CAPACITY", "1G"),
            ("FLISTALLOC_BACKEND", "malloc"),
        ],
    );
}

/// Issue 10's "idle threads" fault: 16 threads each allocate and free about
/// 10 MiB of 200-byte objects, then block, alive and idle, holding almost
/// nothing live. Under a 256 MiB budget the main thread's 160 MiB
/// reservation, and then every one of 150 MiB of 512-byte fallible
/// allocations, must succeed: a caller over the budget decommits the idle
/// threads' reserves before it fails.
#[test]
fn idle_threads_do_not_hold_the_budget() {
    if is_child() {
        use std::alloc::{alloc, dealloc, Layout};
        use std::sync::{Arc, Barrier};
        const THREADS: usize = 16;
        const PER_THREAD: usize = 10 * MIB;
        const SMALL: usize = 512;
        const SMALL_TOTAL: usize = 150 * MIB;
        let n_small = SMALL_TOTAL / SMALL;
        // The holder first, so it never grows during the test.
        let mut held: Vec<*mut u8> = Vec::with_capacity(n_small);
        let ready = Arc::new(Barrier::new(THREADS + 1));
        let done = Arc::new(Barrier::new(THREADS + 1));
        let threads: Vec<_> = (0..THREADS)
            .map(|t| {
                let (ready, done) = (ready.clone(), done.clone());
                std::thread::spawn(move || {
                    let objects: Vec<Box<[u8; 200]>> = (0..PER_THREAD / 200)
                        .map(|i| Box::new([(i + t) as u8; 200]))
                        .collect();
                    black_box(&objects);
                    drop(objects);
                    ready.wait();
                    done.wait();
                })
            })
            .collect();
        ready.wait();
        let before = flistalloc::stats();
        let mut big: Vec<u8> = Vec::new();
        let big_ok = big.try_reserve_exact(160 * MIB).is_ok();
        drop(big);
        let layout = Layout::from_size_align(SMALL, 8).unwrap();
        let mut failed = 0usize;
        for _ in 0..n_small {
            // SAFETY: a non-zero size.
            let p = unsafe { alloc(layout) };
            if p.is_null() {
                failed += 1;
            } else {
                held.push(p);
            }
        }
        eprintln!(
            "idle threads: 160 MiB reservation {}; {failed} of {n_small} 512-B allocations failed \
             ({:.1} MiB); reserve before {:.1} MiB",
            if big_ok { "ok" } else { "FAILED" },
            (failed * SMALL) as f64 / MIB as f64,
            before.reserve_bytes as f64 / MIB as f64,
        );
        for p in held.drain(..) {
            // SAFETY: allocated above with `layout`.
            unsafe { dealloc(p, layout) };
        }
        done.wait();
        for t in threads {
            t.join().unwrap();
        }
        assert!(big_ok, "the 160 MiB reservation failed");
        assert_eq!(failed, 0, "{failed} 512-byte allocations failed");
        eprintln!("{DONE}");
        return;
    }
    child_ok_echo(
        "idle_threads_do_not_hold_the_budget",
        &[("FLISTALLOC_CAPACITY", "256M")],
        "idle threads",
    );
}
