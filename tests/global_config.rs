//! The reserve settings `FLISTALLOC_RESERVE_POOLS`,
//! `FLISTALLOC_RESERVE_BYTES` and `FLISTALLOC_PURGE_DELAY`: they bound the
//! empty pools a thread keeps and how long they stay warm, and a bad value
//! gives one clear line on stderr and the default. The
//! configuration is read once per process, so each case is a child process.

use std::alloc::{alloc, dealloc, Layout};

#[global_allocator]
static GLOBAL: flistalloc::Flist = flistalloc::Flist::new();

mod common;
use common::{child_ok, is_child, DONE};

const KIB: usize = 1 << 10;

/// Allocates one 200 KiB buffer after another (each in a pool of its own),
/// frees them all, and returns the most bytes the reserve held after any
/// free.
fn churn_buffers() -> usize {
    let layout = Layout::from_size_align(200 * KIB, 8).expect("layout");
    let base = flistalloc::stats().reserve_bytes;
    let blocks: Vec<*mut u8> = (0..64)
        .map(|_| {
            // SAFETY: a non-zero-size layout.
            let p = unsafe { alloc(layout) };
            assert!(!p.is_null());
            p
        })
        .collect();
    let mut worst = 0;
    for p in blocks {
        // SAFETY: allocated above with this layout, freed once.
        unsafe { dealloc(p, layout) };
        worst = worst.max(flistalloc::stats().reserve_bytes.saturating_sub(base));
    }
    worst
}

#[test]
fn reserve_limits_come_from_the_environment() {
    if is_child() {
        let bound: usize = std::env::var("EXPECT_BOUND").unwrap().parse().unwrap();
        let worst = churn_buffers();
        eprintln!("reserve at most {worst} bytes, bound {bound}");
        assert!(worst <= bound, "reserve held {worst} bytes, bound {bound}");
        eprintln!("{DONE}");
        return;
    }
    // 1 MiB of bytes: at most four 256 KiB pools stay.
    child_ok(
        "reserve_limits_come_from_the_environment",
        &[
            ("FLISTALLOC_RESERVE_BYTES", "1M"),
            ("EXPECT_BOUND", "1048576"),
        ],
    );
    // Two pools.
    child_ok(
        "reserve_limits_come_from_the_environment",
        &[
            ("FLISTALLOC_RESERVE_POOLS", "2"),
            ("EXPECT_BOUND", &(2 * 256 * KIB).to_string()),
        ],
    );
    // Zero: nothing is kept.
    child_ok(
        "reserve_limits_come_from_the_environment",
        &[("FLISTALLOC_RESERVE_POOLS", "0"), ("EXPECT_BOUND", "0")],
    );
}

#[test]
fn bad_reserve_values_warn_once_and_use_the_default() {
    if is_child() {
        // The default bound, 2 MiB, holds; 64 buffers of 256 KiB pools
        // would be 16 MiB.
        let worst = churn_buffers();
        assert!(worst <= 2 << 20 && worst > 1 << 20, "reserve held {worst}");
        eprintln!("{DONE}");
        return;
    }
    for (var, value) in [
        ("FLISTALLOC_RESERVE_POOLS", "many"),
        ("FLISTALLOC_RESERVE_POOLS", "2G"),
        ("FLISTALLOC_RESERVE_BYTES", "12Q"),
        ("FLISTALLOC_RESERVE_BYTES", "2T"),
    ] {
        let stderr = child_ok(
            "bad_reserve_values_warn_once_and_use_the_default",
            &[(var, value)],
        );
        let line = one_warning(&stderr, &format!("{var}={value}"));
        assert!(
            line.contains(&format!("bad {var}={value}")) && line.contains("using the default"),
            "{var}={value}: {line}"
        );
    }
}

/// `FLISTALLOC_PURGE_DELAY`: reserve pools older than the delay are
/// decommitted by slow paths (here, a pool emptying and a fallback
/// allocation). With 0 the reserve gives its pages back at once; with an
/// hour it keeps them (no test runs that long, so neither case depends on
/// timing).
#[test]
fn purge_delay_comes_from_the_environment() {
    if is_child() {
        let expect_purged = std::env::var("EXPECT_PURGED").unwrap() == "1";
        let layout = Layout::from_size_align(200 * KIB, 8).expect("layout");
        let rss0 = common::rss();
        let blocks: Vec<*mut u8> = (0..32)
            .map(|_| {
                // SAFETY: a non-zero-size layout.
                let p = unsafe { alloc(layout) };
                assert!(!p.is_null());
                // SAFETY: a fresh block of the layout's size.
                unsafe { p.write_bytes(0x5a, layout.size()) };
                p
            })
            .collect();
        for p in blocks {
            // SAFETY: allocated above with this layout, freed once.
            unsafe { dealloc(p, layout) };
        }
        // One more slow path: a fallback allocation.
        let big: Vec<u8> = Vec::with_capacity(8 << 20);
        drop(big);
        let held = common::rss().saturating_sub(rss0);
        eprintln!(
            "purge delay: RSS +{held} bytes after 32 x 200 KiB freed; {:?}",
            flistalloc::stats()
        );
        if expect_purged {
            assert!(held < 1 << 20, "reserve not purged: RSS +{held}");
        } else {
            assert!(held > 4 << 20, "reserve purged early: RSS +{held}");
        }
        eprintln!("{DONE}");
        return;
    }
    for (delay, purged) in [("0", "1"), ("3600000", "0")] {
        let out = child_ok(
            "purge_delay_comes_from_the_environment",
            // A reserve of 8 MiB (the default is 2), so the pools kept are
            // well above the noise of RSS.
            &[
                ("FLISTALLOC_PURGE_DELAY", delay),
                ("FLISTALLOC_RESERVE_BYTES", "8M"),
                ("EXPECT_PURGED", purged),
            ],
        );
        let line = out.lines().find(|l| l.starts_with("purge delay"));
        eprintln!("FLISTALLOC_PURGE_DELAY={delay}: {}", line.unwrap_or("?"));
    }
}

#[test]
fn bad_purge_delay_warns_once_and_uses_the_default() {
    if is_child() {
        eprintln!("{DONE}");
        return;
    }
    for value in ["soon", "250ms", "3600001", "-1"] {
        let stderr = child_ok(
            "bad_purge_delay_warns_once_and_uses_the_default",
            &[("FLISTALLOC_PURGE_DELAY", value)],
        );
        let line = one_warning(&stderr, value);
        assert!(
            line.contains(&format!("bad FLISTALLOC_PURGE_DELAY={value}"))
                && line.contains("using the default, 250"),
            "{value}: {line}"
        );
    }
}

/// The one line of the child's stderr that starts `flistalloc:` (its
/// warning); fails, naming `what`, unless there is exactly one.
fn one_warning<'a>(stderr: &'a str, what: &str) -> &'a str {
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("flistalloc:"))
        .collect();
    assert_eq!(lines.len(), 1, "{what}: {stderr}");
    lines[0]
}
