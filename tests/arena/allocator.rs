//! `&Arena` as an `allocator_api2::alloc::Allocator`, through the public API
//! only:
//!
//! * **returned length**: a non-empty block is a whole chunk, so the returned
//!   slice may be longer than the layout asks; `allocate_zeroed` must zero all
//!   of it and `grow_zeroed` everything from `old.size()` to its end, while
//!   `grow` / `shrink` keep the first `min(old.size(), new.size())` bytes.
//!   Free chunks are dirtied (filled with [`DIRT`]) first, so a reused chunk
//!   that is not zeroed shows;
//! * **zero size**: a size-0 layout never touches the arena. `allocate` and
//!   `allocate_zeroed` give a dangling pointer whose address is the alignment
//!   (length 0), whatever the chunk range; `deallocate` of size 0 does
//!   nothing; `grow` from size 0 only allocates; `shrink` to size 0 frees the
//!   block. So zero-size values in arena collections (`Box<()>`, an empty
//!   boxed slice, `Vec<()>`) drop without a panic.
//!
//! The sweeps are scaled down under miri
//! (`cargo +nightly miri test -p flistalloc --test arena`).

use crate::{layout, MIB};
use allocator_api2::alloc::{AllocError, Allocator};
use allocator_api2::boxed::Box as ABox;
use allocator_api2::vec::Vec as AVec;
use flistalloc::Arena;
use std::alloc::Layout;
use std::ptr::NonNull;

/// What free chunks are filled with before they are reused.
const DIRT: u8 = 0xAB;

/// Requested sizes of the sweeps: 0, slab boundaries and their neighbours,
/// across the 8-byte, the 5 % and the page-sized steps.
const SIZES: &[usize] = if cfg!(miri) {
    &[0, 20, 24, 4097]
} else {
    &[
        0, 1, 7, 8, 9, 16, 20, 24, 25, 63, 64, 65, 100, 160, 161, 168, 200, 500, 1000, 1024, 1025,
        3000, 4096, 4097, 5000, 10000, 70000,
    ]
};

/// Alignments of the sweeps, up to the page (the largest the arena serves).
const ALIGNS: &[usize] = if cfg!(miri) {
    &[1, 16, 4096]
} else {
    &[1, 2, 8, 16, 32, 64, 256, 1024, 4096]
};

/// The bytes of a block whose whole length the test has initialised.
///
/// # Safety
/// `block` is live and all its `block.len()` bytes were written.
unsafe fn bytes<'a>(block: NonNull<[u8]>) -> &'a [u8] {
    // SAFETY: `block` is live, `block.len()` initialised bytes (caller), or
    // a dangling aligned non-null pointer with length 0, which an empty slice
    // may have.
    unsafe { std::slice::from_raw_parts(block.cast::<u8>().as_ptr(), block.len()) }
}

/// Fills the first `n` bytes of `p` with `pat`.
///
/// # Safety
/// `p` is live with at least `n` writable bytes.
unsafe fn fill(p: NonNull<u8>, n: usize, pat: u8) {
    // SAFETY: `n` writable bytes at `p` (caller).
    unsafe { p.as_ptr().write_bytes(pat, n) }
}

/// Makes the next chunk the arena hands out for `lay`'s slab a dirty one:
/// allocates it, fills its whole length with [`DIRT`] and frees it (the free
/// list is LIFO, so it is taken first next time). Zero-size layouts get no
/// chunk, so there is nothing to dirty.
fn dirty(a: &Arena, lay: Layout) {
    if lay.size() == 0 {
        return;
    }
    let block = a.allocate(lay).unwrap();
    let p = block.cast::<u8>();
    // SAFETY: a fresh block of `block.len()` bytes.
    unsafe { fill(p, block.len(), DIRT) };
    // SAFETY: `p` is live and was allocated with `lay`.
    unsafe { a.deallocate(p, lay) };
}

/// Checks the common shape of a returned block: aligned, at least the size
/// asked; a zero-size one is dangling at the alignment with length 0, a
/// non-empty one is a whole chunk of the arena.
fn check_shape(arena: &Arena, block: NonNull<[u8]>, lay: Layout, what: &str) {
    let addr = block.cast::<u8>().as_ptr() as usize;
    assert_eq!(addr % lay.align(), 0, "{what}: {addr:#x} not aligned");
    if lay.size() == 0 {
        assert_eq!(block.len(), 0, "{what}: zero-size block has a length");
        assert_eq!(addr, lay.align(), "{what}: zero-size block is not dangling");
    } else {
        assert!(block.len() >= lay.size(), "{what}: block too short");
        assert_eq!(
            arena.chunk_size(block.cast::<u8>().as_ptr()),
            block.len(),
            "{what}: returned length is not the chunk's"
        );
    }
}

/// The first index in `s` whose byte is not `pat`. Compares whole pieces
/// against a reference first (a `memcmp`, cheap under miri too).
fn first_not(s: &[u8], pat: u8) -> Option<usize> {
    let reference = [pat; 4096];
    if s.chunks(4096).all(|c| c == &reference[..c.len()]) {
        return None;
    }
    s.iter().position(|&b| b != pat)
}

// ---------------------------------------------------------------------------
// Fault 1: zeroing covers the returned length
// ---------------------------------------------------------------------------

#[test]
fn grow_zeroed_zeroes_up_to_the_returned_length() {
    // The reported case, byte for byte.
    let arena = Arena::new(64 << 20);
    let a = &arena;
    let d = a.allocate(layout(24, 8)).unwrap();
    assert_eq!(d.len(), 24);
    // SAFETY: a fresh 24-byte block.
    unsafe { fill(d.cast(), 24, DIRT) };
    // SAFETY: live, allocated with (24, 8).
    unsafe { a.deallocate(d.cast(), layout(24, 8)) };

    let b = a.allocate(layout(8, 8)).unwrap();
    assert_eq!(b.len(), 8);
    // SAFETY: a fresh 8-byte block.
    unsafe { fill(b.cast(), 8, 0x11) };
    // SAFETY: `b` is live and fits (8, 8); 20 >= 8.
    let g = unsafe { a.grow_zeroed(b.cast(), layout(8, 8), layout(20, 8)) }.unwrap();
    // It moved into the 24-byte slab, onto the dirty chunk.
    assert_eq!(g.len(), 24);
    assert_eq!(g.cast::<u8>(), d.cast::<u8>());
    // SAFETY: 8 bytes copied, 16 zeroed (when right).
    let s = unsafe { bytes(g) };
    let mut want = [0u8; 24];
    want[..8].fill(0x11);
    assert_eq!(s, &want[..], "bytes 20..24 must be zero, not stale");
    // SAFETY: live, fits (20, 8).
    unsafe { a.deallocate(g.cast(), layout(20, 8)) };

    // The same in place: (20, 8) sits in the 24-byte slab, and growing to
    // 22 keeps it there; bytes 20..24 held dirt.
    let p = a.allocate(layout(20, 8)).unwrap();
    // SAFETY: a 24-byte block.
    unsafe { fill(p.cast(), 24, DIRT) };
    // SAFETY: a 24-byte block.
    unsafe { fill(p.cast(), 20, 0x22) };
    // SAFETY: `p` is live and fits (20, 8); 22 >= 20.
    let g = unsafe { a.grow_zeroed(p.cast(), layout(20, 8), layout(22, 8)) }.unwrap();
    assert_eq!(g.cast::<u8>(), p.cast::<u8>());
    assert_eq!(g.len(), 24);
    // SAFETY: 20 bytes written, 4 zeroed (when right).
    let s = unsafe { bytes(g) };
    assert_eq!(first_not(&s[..20], 0x22), None);
    assert_eq!(&s[20..], &[0, 0, 0, 0]);
    // SAFETY: live, fits (22, 8).
    unsafe { a.deallocate(g.cast(), layout(22, 8)) };
    assert_eq!(arena.info().allocated, 0);
}

#[test]
fn grow_zeroed_sweep_zeroes_every_byte_past_the_old_size() {
    let arena = Arena::new(64 << 20);
    let a = &arena;
    let mut cases = 0;
    for &old_size in SIZES {
        for &new_size in SIZES.iter().filter(|&&n| n >= old_size) {
            for &old_align in ALIGNS {
                for &new_align in ALIGNS {
                    let old = layout(old_size, old_align);
                    let new = layout(new_size, new_align);
                    dirty(a, new);
                    dirty(a, old);
                    let b = a.allocate(old).unwrap();
                    let p = b.cast::<u8>();
                    // SAFETY: the block holds `old_size` bytes.
                    unsafe { fill(p, old_size, 0x5A) };
                    // SAFETY: `p` is live and fits `old` (allocated with it);
                    // `new` is no smaller.
                    let g = unsafe { a.grow_zeroed(p, old, new) }.unwrap();
                    let what = format!("grow_zeroed {old:?} -> {new:?}, got {}", g.len());
                    check_shape(&arena, g, new, &what);
                    // SAFETY: `old_size` bytes copied, the rest zeroed when
                    // right; dirt or copies otherwise, all initialised.
                    let s = unsafe { bytes(g) };
                    assert_eq!(
                        first_not(&s[..old_size], 0x5A),
                        None,
                        "{what}: lost contents"
                    );
                    assert_eq!(
                        first_not(&s[old_size..], 0).map(|i| i + old_size),
                        None,
                        "{what}: byte not zero"
                    );
                    // SAFETY: live, fits `new`.
                    unsafe { a.deallocate(g.cast(), new) };
                    assert_eq!(arena.info().allocated, 0, "{what}: leaked");
                    cases += 1;
                }
            }
        }
    }
    assert!(cases > 0);
}

#[test]
fn allocate_zeroed_sweep_zeroes_the_whole_block() {
    let arena = Arena::new(64 << 20);
    let a = &arena;
    for &size in SIZES {
        for &align in ALIGNS {
            let lay = layout(size, align);
            dirty(a, lay);
            let b = a.allocate_zeroed(lay).unwrap();
            let what = format!("allocate_zeroed {lay:?}, got {}", b.len());
            check_shape(&arena, b, lay, &what);
            // SAFETY: every byte zeroed when right (a reused chunk's bytes
            // are dirt otherwise, still initialised).
            let s = unsafe { bytes(b) };
            assert_eq!(first_not(s, 0), None, "{what}: byte not zero");
            // SAFETY: live, allocated with `lay`.
            unsafe { a.deallocate(b.cast(), lay) };
            assert_eq!(arena.info().allocated, 0, "{what}: leaked");
        }
    }
}

#[test]
fn grow_and_shrink_sweep_keep_the_common_prefix() {
    let arena = Arena::new(64 << 20);
    let a = &arena;
    // A pattern that tells positions apart (period 251, a prime, so it does
    // not line up with slab sizes).
    let largest = SIZES.iter().copied().max().unwrap();
    let pattern: Vec<u8> = (0..largest).map(|i| (i % 251) as u8 ^ 0x33).collect();
    for &old_size in SIZES {
        for &new_size in SIZES {
            for &old_align in ALIGNS {
                for &new_align in ALIGNS {
                    let old = layout(old_size, old_align);
                    let new = layout(new_size, new_align);
                    dirty(a, new);
                    dirty(a, old);
                    let b = a.allocate(old).unwrap();
                    let p = b.cast::<u8>();
                    // SAFETY: the block holds `old_size` bytes; `pattern`
                    // is at least as long, and a separate allocation.
                    unsafe {
                        std::ptr::copy_nonoverlapping(pattern.as_ptr(), p.as_ptr(), old_size)
                    };
                    let grow = new_size >= old_size;
                    // SAFETY: `p` is live and fits `old`; `new` is no smaller
                    // (grow) / no larger (shrink).
                    let r = unsafe {
                        if grow {
                            a.grow(p, old, new)
                        } else {
                            a.shrink(p, old, new)
                        }
                    }
                    .unwrap();
                    let op = if grow { "grow" } else { "shrink" };
                    let what = format!("{op} {old:?} -> {new:?}, got {}", r.len());
                    check_shape(&arena, r, new, &what);
                    let kept = old_size.min(new_size);
                    let q = r.cast::<u8>().as_ptr();
                    // SAFETY: the first `kept` bytes of the block are the
                    // copied (or kept) pattern.
                    let s = unsafe { std::slice::from_raw_parts(q, kept) };
                    if s != &pattern[..kept] {
                        let bad = (0..kept).find(|&i| s[i] != pattern[i]);
                        panic!("{what}: lost contents at {bad:?}");
                    }
                    // The caller may use the whole returned length.
                    // SAFETY: the block holds `r.len()` bytes.
                    unsafe { fill(r.cast(), r.len(), 0x77) };
                    // SAFETY: live; `new` fits (asked for it).
                    unsafe { a.deallocate(r.cast(), new) };
                    assert_eq!(arena.info().allocated, 0, "{what}: leaked");
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Fault 2: zero size never touches the arena
// ---------------------------------------------------------------------------

#[test]
fn box_of_unit_drops() {
    let arena = Arena::new(64 << 20);
    let b = ABox::new_in((), &arena);
    drop(b);
    let b = ABox::new_in([0u64; 0], &arena);
    drop(b);
    assert_eq!(arena.info().allocated, 0);
    assert_eq!(arena.info().heap, 0);
}

#[test]
fn empty_vec_into_boxed_slice_drops() {
    let arena = Arena::new(64 << 20);
    // Never allocated: the box holds the vector's dangling pointer (0x1).
    let v: AVec<u8, &Arena> = AVec::new_in(&arena);
    drop(v.into_boxed_slice());
    // Allocated, emptied, boxed: shrinking to 0 frees the chunk.
    let mut v: AVec<u64, &Arena> = AVec::new_in(&arena);
    v.extend([1, 2, 3]);
    assert!(arena.info().allocated > 0);
    v.clear();
    let b = v.into_boxed_slice();
    assert_eq!(arena.info().allocated, 0, "shrink to 0 must free the chunk");
    drop(b);
    assert_eq!(arena.info().allocated, 0);
}

#[test]
fn vec_of_unit_with_pushes_drops() {
    let arena = Arena::new(64 << 20);
    let mut v: AVec<(), &Arena> = AVec::new_in(&arena);
    for _ in 0..1000 {
        v.push(());
    }
    assert_eq!(v.len(), 1000);
    drop(v);
    let mut v: AVec<(), &Arena> = AVec::new_in(&arena);
    v.extend(std::iter::repeat_n((), 77));
    let b = v.into_boxed_slice();
    assert_eq!(b.len(), 77);
    drop(b);
    assert_eq!(arena.info().allocated, 0);
    assert_eq!(arena.info().heap, 0);
}

#[test]
fn zero_size_works_whatever_the_chunk_range() {
    let arena = Arena::with_chunk_range(MIB, 64, 4096);
    let a = &arena;
    // Outside the range for `alloc`, as before.
    assert!(arena.try_alloc(0).is_err());
    for &align in ALIGNS {
        let lay = layout(0, align);
        let b = a.allocate(lay).unwrap();
        check_shape(&arena, b, lay, "allocate");
        let z = a.allocate_zeroed(lay).unwrap();
        check_shape(&arena, z, lay, "allocate_zeroed");
        // SAFETY: both came from allocate(_zeroed) with `lay`.
        unsafe {
            a.deallocate(b.cast(), lay);
            a.deallocate(z.cast(), lay);
        }
    }
    // Collections of zero-size values.
    drop(ABox::new_in((), a));
    let v: AVec<u8, &Arena> = AVec::new_in(a);
    drop(v.into_boxed_slice());
    let mut v: AVec<(), &Arena> = AVec::new_in(a);
    v.push(());
    drop(v.into_boxed_slice());
    // From 0 up into the range, and back down to 0.
    let z = a.allocate(layout(0, 8)).unwrap();
    // SAFETY: `z` came from allocate((0, 8)); 100 >= 0.
    let g = unsafe { a.grow(z.cast(), layout(0, 8), layout(100, 8)) }.unwrap();
    check_shape(&arena, g, layout(100, 8), "grow from 0");
    // SAFETY: `g` is live and fits (100, 8); 0 <= 100.
    let s = unsafe { a.shrink(g.cast(), layout(100, 8), layout(0, 8)) }.unwrap();
    check_shape(&arena, s, layout(0, 8), "shrink to 0");
    // SAFETY: `s` came from shrink to (0, 8).
    unsafe { a.deallocate(s.cast(), layout(0, 8)) };
    assert_eq!(arena.info().allocated, 0);
    // A size inside the range still fails properly below it.
    assert_eq!(a.allocate(layout(10, 8)), Err(AllocError));
}

#[test]
fn zero_size_never_touches_the_arena() {
    let arena = Arena::new(64 << 20);
    let a = &arena;
    let before = arena.info();
    let mut blocks = Vec::new();
    for &align in ALIGNS {
        let lay = layout(0, align);
        blocks.push((a.allocate(lay).unwrap(), lay));
        blocks.push((a.allocate_zeroed(lay).unwrap(), lay));
    }
    assert_eq!(
        arena.info(),
        before,
        "a zero-size allocation used the arena"
    );
    for (b, lay) in blocks {
        check_shape(&arena, b, lay, "zero-size");
        // SAFETY: `b` came from allocate(_zeroed) with `lay`.
        let g = unsafe { a.grow(b.cast(), lay, layout(0, lay.align())) }.unwrap();
        check_shape(&arena, g, lay, "grow 0 -> 0");
        // SAFETY: as above; shrinking 0 -> 0.
        let s = unsafe { a.shrink(g.cast(), lay, lay) }.unwrap();
        check_shape(&arena, s, lay, "shrink 0 -> 0");
        // SAFETY: as above.
        unsafe { a.deallocate(s.cast(), lay) };
    }
    assert_eq!(arena.info(), before);

    // grow / grow_zeroed from 0 allocate without reading or freeing the old
    // (dangling) pointer.
    let z = a.allocate(layout(0, 16)).unwrap();
    // SAFETY: `z` came from allocate((0, 16)); 40 >= 0.
    let g = unsafe { a.grow_zeroed(z.cast(), layout(0, 16), layout(40, 16)) }.unwrap();
    check_shape(&arena, g, layout(40, 16), "grow_zeroed from 0");
    // SAFETY: grow_zeroed zeroed the whole block.
    assert_eq!(first_not(unsafe { bytes(g) }, 0), None);
    // Shrink to 0 frees the chunk.
    // SAFETY: `g` is live and fits (40, 16).
    let s = unsafe { a.shrink(g.cast(), layout(40, 16), layout(0, 16)) }.unwrap();
    check_shape(&arena, s, layout(0, 16), "shrink to 0");
    assert_eq!(arena.info().allocated, 0, "shrink to 0 must free the chunk");
    // SAFETY: `s` came from shrink to (0, 16).
    unsafe { a.deallocate(s.cast(), layout(0, 16)) };

    // `Arena::alloc(0)` keeps its own rule: a real, unique, freeable chunk.
    let p = arena.alloc(0);
    let q = arena.alloc(0);
    assert_ne!(p, q);
    assert_eq!(arena.chunk_size(p.as_ptr()), 8);
    // SAFETY: p, q are live chunks of this arena, each freed once.
    unsafe {
        arena.free(p.as_ptr());
        arena.free(q.as_ptr());
    }
    assert_eq!(arena.info().allocated, 0);
}
