//! The C allocator of `flistalloc::raw` (what `libflistalloc.so` exports),
//! tested from Rust in the plain build: C's semantics with `errno` checked
//! after every call, classification by address, large blocks, the
//! backends and the capacity (those in child processes, since the
//! configuration is read once per process), and misuse aborts.
//!
//! This binary's global allocator is `System` (glibc), so glibc's blocks
//! are the "foreign" pointers here, as in a program that runs with the
//! library preloaded.

use core::ffi::c_void;
use flistalloc::raw::{self, Class};
use std::ptr::null_mut;

mod common;
use common::{child_aborts, child_ok, is_child, DONE};

fn errno() -> i32 {
    // SAFETY: this thread's errno.
    unsafe { *libc::__errno_location() }
}

fn set_errno(e: i32) {
    // SAFETY: this thread's errno.
    unsafe { *libc::__errno_location() = e }
}

const MARK: i32 = 4321;

/// Checks that `errno` is still `MARK`.
#[track_caller]
fn errno_kept() {
    assert_eq!(errno(), MARK, "errno changed");
}

/// Checks `errno == e`, then sets it back to `MARK`.
#[track_caller]
fn errno_is(e: i32) {
    assert_eq!(errno(), e);
    set_errno(MARK);
}

const SIZES: &[usize] = &[
    0,
    1,
    8,
    15,
    16,
    17,
    100,
    1000,
    1024,
    1025,
    5000,
    70_000,
    256 << 10,
    (256 << 10) + 1,
    1 << 20,
    5 << 20,
    40 << 20,
];

#[test]
fn blocks_are_aligned_usable_and_calloc_zeroes() {
    set_errno(MARK);
    for &n in SIZES {
        for round in 0..3 {
            let p = raw::malloc(n).cast::<u8>();
            errno_kept();
            assert!(
                !p.is_null() && (p as usize).is_multiple_of(16),
                "malloc({n})"
            );
            // SAFETY: live blocks of raw, freed once; the usable size is
            // writable (what is under test).
            unsafe {
                let u = raw::usable_size(p.cast());
                assert!(u >= n, "usable {u} < {n}");
                p.write_bytes(0xA5, u);
                raw::free(p.cast());
                errno_kept();
                // calloc right after: may reuse the dirty block.
                let c = raw::calloc(1, n).cast::<u8>();
                errno_kept();
                assert!(!c.is_null());
                let s = std::slice::from_raw_parts(c, n);
                assert!(s.iter().all(|&b| b == 0), "calloc({n}) round {round}");
                c.write_bytes(0x5A, raw::usable_size(c.cast()));
                raw::free(c.cast());
            }
        }
    }
    // Unique zero-size blocks.
    let (a, b) = (raw::malloc(0), raw::malloc(0));
    assert!(!a.is_null() && !b.is_null() && a != b);
    // SAFETY: blocks of raw, freed once; null is a no-op.
    unsafe {
        raw::free(a);
        raw::free(b);
        raw::free(null_mut());
        assert_eq!(raw::usable_size(core::ptr::null()), 0);
        let r = raw::realloc(null_mut(), 0);
        assert!(!r.is_null());
        raw::free(r);
    }
    errno_kept();
}

#[test]
fn failures_set_enomem_or_einval() {
    set_errno(MARK);
    assert!(raw::malloc(isize::MAX as usize + 1).is_null());
    errno_is(libc::ENOMEM);
    assert!(raw::malloc(usize::MAX).is_null());
    errno_is(libc::ENOMEM);
    assert!(raw::calloc(usize::MAX / 2, 3).is_null());
    errno_is(libc::ENOMEM);
    assert!(raw::calloc(1 << 33, 1 << 33).is_null());
    errno_is(libc::ENOMEM);
    assert!(raw::pvalloc(usize::MAX - 100).is_null());
    errno_is(libc::ENOMEM);
    assert!(raw::aligned_alloc(0, 8).is_null());
    errno_is(libc::EINVAL);
    assert!(raw::aligned_alloc(48, 8).is_null());
    errno_is(libc::EINVAL);
    assert!(raw::memalign(usize::MAX, 8).is_null());
    errno_is(libc::EINVAL);
    let p = raw::malloc(10).cast::<u8>();
    // SAFETY: a live block; failed reallocs leave it intact; freed once.
    unsafe {
        p.write_bytes(7, 10);
        assert!(raw::reallocarray(p.cast(), usize::MAX, 2).is_null());
        errno_is(libc::ENOMEM);
        assert!(raw::realloc(p.cast(), usize::MAX).is_null());
        errno_is(libc::ENOMEM);
        assert!(std::slice::from_raw_parts(p, 10).iter().all(|&b| b == 7));
        let mut out = 0x1234 as *mut c_void;
        for bad in [0usize, 3, 4, 24, 1000] {
            assert_eq!(raw::posix_memalign(&mut out, bad, 8), libc::EINVAL);
            errno_kept();
        }
        assert_eq!(raw::posix_memalign(&mut out, 1 << 63, 8), libc::ENOMEM);
        errno_kept();
        assert_eq!(
            raw::posix_memalign(&mut out, 64, isize::MAX as usize),
            libc::ENOMEM
        );
        errno_kept();
        assert_eq!(out as usize, 0x1234, "*memptr changed on error");
        raw::free(p.cast());
    }
    errno_kept();
}

#[test]
fn alignments_up_to_2_pow_27() {
    set_errno(MARK);
    for shift in 0..=27 {
        let align = 1usize << shift;
        for size in [1usize, 100, 5000, 300 << 10] {
            let mut out = null_mut();
            // SAFETY: a valid out-pointer; blocks freed once.
            unsafe {
                if align >= 8 {
                    assert_eq!(raw::posix_memalign(&mut out, align, size), 0);
                    errno_kept();
                    assert_eq!(out as usize % align, 0);
                    out.cast::<u8>().write_bytes(1, size);
                    raw::free(out);
                }
                let p = raw::aligned_alloc(align, size);
                errno_kept();
                assert!(!p.is_null() && (p as usize).is_multiple_of(align.max(16)));
                assert!(raw::usable_size(p) >= size);
                raw::free(p);
                let p = raw::memalign(align + align / 2 + 1, size); // rounded up
                assert!(!p.is_null() && (p as usize).is_multiple_of(align * 2));
                raw::free(p);
            }
        }
    }
    let page = 4096;
    let p = raw::valloc(1);
    let q = raw::pvalloc(1);
    // SAFETY: blocks of raw, freed once.
    unsafe {
        assert_eq!(p as usize % page, 0);
        assert_eq!(q as usize % page, 0);
        assert!(raw::usable_size(q) >= page);
        raw::free(p);
        raw::free(q);
    }
    errno_kept();
}

#[test]
fn realloc_copies_and_frees() {
    set_errno(MARK);
    let mut p = raw::malloc(10).cast::<u8>();
    // SAFETY: blocks of raw, each freed or reallocated once.
    unsafe {
        for (i, b) in std::slice::from_raw_parts_mut(p, 10).iter_mut().enumerate() {
            *b = i as u8;
        }
        let mut n = 10;
        while n < (64 << 20) {
            n = n * 3 + 1;
            p = raw::realloc(p.cast(), n).cast();
            errno_kept();
            assert!(!p.is_null());
            assert!(raw::usable_size(p.cast()) >= n);
            let s = std::slice::from_raw_parts(p, 10);
            assert!(s.iter().enumerate().all(|(i, &b)| b == i as u8));
            p.add(n - 1).write(0xEE);
        }
        // A large block grows in place within its mapping.
        let big = raw::malloc(300 << 10);
        let grown = raw::realloc(big, 600 << 10);
        assert_eq!(big, grown);
        raw::free(grown);
        // Shrinking keeps the prefix.
        p = raw::realloc(p.cast(), 5).cast();
        assert!(std::slice::from_raw_parts(p, 5)
            .iter()
            .enumerate()
            .all(|(i, &b)| b == i as u8));
        // realloc(p, 0) frees and returns null, errno untouched.
        assert!(raw::realloc(p.cast(), 0).is_null());
        errno_kept();
    }
}

#[test]
fn pointers_are_classified_by_address() {
    raw::init();
    let small = raw::malloc(64);
    let large = raw::malloc(1 << 20);
    // SAFETY: glibc's own block (this binary's C allocator), freed once.
    let foreign = unsafe { libc::malloc(100) };
    let x = 0u64;
    // SAFETY: live blocks, or addresses that start none.
    unsafe {
        assert_eq!(raw::classify(small), Class::Flist);
        assert_eq!(
            raw::classify(small.cast::<u8>().add(8).cast()),
            Class::Inside
        );
        assert_eq!(raw::classify(large), Class::Large);
        assert_eq!(
            raw::classify(large.cast::<u8>().add(16).cast()),
            Class::Inside
        );
        assert_eq!(raw::classify(foreign), Class::Foreign);
        assert_eq!(raw::classify((&x as *const u64).cast()), Class::Foreign);
        // glibc's functions serve foreign blocks.
        assert!(raw::usable_size(foreign) >= 100);
        let foreign = raw::realloc(foreign, 200);
        assert_eq!(raw::classify(foreign), Class::Foreign);
        raw::free(foreign);
        raw::free(small);
        raw::free(large);
    }
    assert_eq!(raw::backend_name(), c"flist");
    assert!(raw::trim() > 0 || raw::trim() == 0);
}

#[test]
fn blocks_cross_threads() {
    let ptrs: Vec<usize> = (0..2000)
        .map(|i| raw::malloc(1 + (i * 37) % 3000) as usize)
        .collect();
    std::thread::spawn(move || {
        for (i, p) in ptrs.into_iter().enumerate() {
            // SAFETY: live blocks of raw made by the other thread, freed once.
            unsafe {
                assert!(raw::usable_size(p as *const c_void) > (i * 37) % 3000);
                raw::free(p as *mut c_void);
            }
        }
        // A thread whose first calls are frees, then allocations at exit.
        let p = raw::malloc(100);
        // SAFETY: freed once.
        unsafe { raw::free(p) };
    })
    .join()
    .unwrap();
}

#[test]
fn free_of_an_interior_pointer_aborts() {
    if is_child() {
        let p = raw::malloc(64).cast::<u8>();
        // SAFETY: none: the misuse under test.
        unsafe { raw::free(p.add(16).cast()) };
        eprintln!("survived");
        return;
    }
    let err = child_aborts("free_of_an_interior_pointer_aborts", &[]);
    assert_eq!(
        err.lines()
            .filter(|l| l.starts_with("flistalloc: "))
            .count(),
        1,
        "{err}"
    );
    assert!(
        !err.contains("survived") && !err.contains("panicked"),
        "{err}"
    );
}

#[test]
fn free_inside_a_large_block_aborts() {
    if is_child() {
        let p = raw::malloc(1 << 20).cast::<u8>();
        // SAFETY: none: the misuse under test.
        unsafe { raw::free(p.add(4096).cast()) };
        eprintln!("survived");
        return;
    }
    let err = child_aborts("free_inside_a_large_block_aborts", &[]);
    assert!(
        err.contains("flistalloc: free of a pointer inside a flistalloc large block"),
        "{err}"
    );
}

/// Allocates and frees under the child's backend; prints the backend name.
fn backend_child() {
    set_errno(MARK);
    let mut v = Vec::new();
    for &n in SIZES {
        let p = raw::malloc(n);
        assert!(!p.is_null());
        // SAFETY: a live block of at least n usable bytes.
        unsafe { p.cast::<u8>().write_bytes(3, raw::usable_size(p)) };
        v.push(p);
    }
    // SAFETY: live blocks, realloc'd or freed once each.
    unsafe {
        // Not flistalloc memory under a whole-process backend.
        assert_eq!(raw::classify(v[5]), Class::Foreign);
        let c = raw::calloc(1000, 10).cast::<u8>();
        assert!(std::slice::from_raw_parts(c, 10_000)
            .iter()
            .all(|&b| b == 0));
        raw::free(c.cast());
        v[3] = raw::realloc(v[3], 100_000);
        let mut out = null_mut();
        assert_eq!(raw::posix_memalign(&mut out, 1 << 16, 10), 0);
        assert_eq!(out as usize % (1 << 16), 0);
        raw::free(out);
        for p in v {
            raw::free(p);
        }
    }
    errno_kept();
    eprintln!("backend={}", raw::backend_name().to_str().unwrap());
}

#[test]
fn malloc_backend_serves_through_glibc() {
    if is_child() {
        backend_child();
        eprintln!("{DONE}");
        return;
    }
    let err = child_ok(
        "malloc_backend_serves_through_glibc",
        &[("FLISTALLOC_BACKEND", "malloc")],
    );
    assert!(err.contains("backend=malloc"), "{err}");
}

#[test]
fn jemalloc_backend_serves_through_jemalloc() {
    if is_child() {
        backend_child();
        eprintln!("{DONE}");
        return;
    }
    let err = child_ok(
        "jemalloc_backend_serves_through_jemalloc",
        &[("FLISTALLOC_BACKEND", "jemalloc")],
    );
    assert!(err.contains("backend=jemalloc"), "{err}");
}

/// Under a 64 MiB capacity: allocates until refused, frees everything
/// (no size given), and can allocate as much again.
fn capacity_child() {
    let fill = || {
        let mut v = Vec::new();
        loop {
            set_errno(MARK);
            let p = raw::malloc(1 << 20);
            if p.is_null() {
                errno_is(libc::ENOMEM);
                break;
            }
            v.push(p);
            assert!(v.len() < 1000, "the capacity is not enforced");
        }
        v
    };
    let first = fill();
    assert!(first.len() >= 40, "only {} MiB under 64 MiB", first.len());
    for &p in &first {
        // SAFETY: live blocks, freed once.
        unsafe { raw::free(p) };
    }
    let second = fill();
    assert_eq!(
        first.len(),
        second.len(),
        "frees did not give the budget back"
    );
    for p in second {
        // SAFETY: live blocks, freed once.
        unsafe { raw::free(p) };
    }
}

#[test]
fn capacity_counts_without_sizes() {
    if is_child() {
        capacity_child();
        eprintln!("{DONE}");
        return;
    }
    for backend in ["flist", "malloc", "jemalloc"] {
        child_ok(
            "capacity_counts_without_sizes",
            &[
                ("FLISTALLOC_BACKEND", backend),
                ("FLISTALLOC_CAPACITY", "64M"),
            ],
        );
    }
}

#[test]
fn double_free_of_an_unmapped_large_block_aborts() {
    if is_child() {
        // More large blocks than the cache of free mappings keeps, so the
        // last ones freed are unmapped; then the last one is freed again.
        let blocks: Vec<*mut core::ffi::c_void> = (0..20).map(|_| raw::malloc(1 << 20)).collect();
        assert!(blocks.iter().all(|p| !p.is_null()));
        for &p in &blocks {
            // SAFETY: each block freed once here.
            unsafe { raw::free(p) };
        }
        // SAFETY: none: the misuse under test.
        unsafe { raw::free(blocks[19]) };
        eprintln!("survived");
        return;
    }
    let err = child_aborts("double_free_of_an_unmapped_large_block_aborts", &[]);
    let lines: Vec<&str> = err
        .lines()
        .filter(|l| l.starts_with("flistalloc: "))
        .collect();
    assert_eq!(lines.len(), 1, "{err}");
    assert!(lines[0].contains("free of an unmapped address"), "{err}");
    assert!(!err.contains("survived"), "{err}");
}
