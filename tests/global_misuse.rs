//! Misuse of the global allocator is reported on one line of stderr and
//! aborts. Each case runs in a child process (this test binary re-run with
//! `FLIST_CHILD` set); the parent checks the signal and the message.

use std::alloc::Layout;
use std::hint::black_box;

#[global_allocator]
static GLOBAL: flistalloc::Flist = flistalloc::Flist::new();

mod common;
use common::{child_aborts, is_child};

/// Printed by a child that survived its misuse (it must not).
const SURVIVED: &str = "flist-child-survived";

/// Runs test `name` as a child and checks it aborted with exactly one line
/// from flistalloc, starting `flistalloc: ` and containing `needle`.
fn child_dies_with(name: &str, needle: &str) {
    let stderr = child_aborts(name, &[]);
    assert!(!stderr.contains(SURVIVED), "{stderr}");
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("flistalloc"))
        .collect();
    assert_eq!(lines.len(), 1, "expected one line:\n{stderr}");
    assert!(
        lines[0].starts_with("flistalloc: ") && lines[0].contains(needle),
        "expected \"flistalloc: ...{needle}...\", got {:?}",
        lines[0]
    );
    // No panic: the allocator must not unwind.
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn dealloc_of_explicit_arena_memory_aborts() {
    if is_child() {
        let arena = flistalloc::Arena::new(1 << 20);
        let p = arena.alloc(64);
        // SAFETY: none: this is the misuse under test (memory of an explicit
        // Arena given to the global allocator); it must abort before any
        // harm.
        unsafe {
            std::alloc::dealloc(
                black_box(p.as_ptr()),
                Layout::from_size_align(64, 8).unwrap(),
            )
        };
        eprintln!("{SURVIVED}");
        return;
    }
    child_dies_with(
        "dealloc_of_explicit_arena_memory_aborts",
        "explicit flistalloc::Arena",
    );
}

#[test]
fn dealloc_of_interior_pointer_aborts() {
    if is_child() {
        let b = Box::new([7u8; 64]);
        let p = black_box(Box::into_raw(b).cast::<u8>());
        // SAFETY: none: this is the misuse under test (a pointer 8 bytes
        // into a 64-byte block); it must abort before any harm.
        unsafe { std::alloc::dealloc(p.add(8), Layout::from_size_align(56, 1).unwrap()) };
        eprintln!("{SURVIVED}");
        return;
    }
    child_dies_with(
        "dealloc_of_interior_pointer_aborts",
        "not a live flist chunk",
    );
}

#[test]
fn double_free_aborts() {
    if is_child() {
        let layout = Layout::from_size_align(64, 8).unwrap();
        // black_box: the compiler may otherwise drop the alloc/dealloc pair.
        // SAFETY: the first dealloc is correct; the second is the misuse
        // under test (a double free), which must abort before any harm.
        unsafe {
            let p = black_box(std::alloc::alloc(layout));
            assert!(!p.is_null());
            std::alloc::dealloc(black_box(p), layout);
            std::alloc::dealloc(black_box(p), layout);
        }
        eprintln!("{SURVIVED}");
        return;
    }
    child_dies_with("double_free_aborts", "double free");
}
