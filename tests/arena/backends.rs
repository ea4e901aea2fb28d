//! The `Arena` contract on every backend: one test body, run by
//! [`on_every_backend!`] for `flist`, `malloc` and `jemalloc` (the last only
//! with the `jemalloc` feature, and not under miri, which cannot run C code).
//! The flist-exact figures (pool sizes, slabs) stay in `api.rs`; what is
//! checked here holds on all three:
//!
//! * the builder: shorthands, errors, `backend()`;
//! * every panic of the seed and its `try_` twin: over capacity, size outside
//!   the chunk range, alignment above the page, free of null, free of a
//!   pointer the arena did not hand out (stack, heap, another arena of any
//!   backend, the inside of a chunk), `chunk_size` of one;
//! * `chunk_size` at least the request and writable, `info()` (allocated is
//!   the sum of the live chunks' sizes, heap within capacity), `utilization()`
//!   grouped by the flist slab table, `trim`, release and drop;
//! * `&Arena` as an `allocator_api2` allocator;
//! * per backend, in a child process, that release returns the memory by the
//!   backend's own statistics (`info()`, glibc's `mallinfo2`, jemalloc's
//!   `stats.arenas.<i>.pactive`).

use crate::{layout, MIB, PAGE};
use allocator_api2::alloc::Allocator;
use flistalloc::{slabs, Arena, Backend, Error, MAX_ARENA_SIZE};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr::NonNull;

/// Generates, for each named body `fn name(b: Backend)`, a test per backend:
/// `backends::flist::name`, `backends::malloc::name`, `backends::jemalloc::name`.
macro_rules! on_every_backend {
    ($($name:ident),* $(,)?) => {
        mod flist {
            $( #[test] fn $name() { super::$name(flistalloc::Backend::Flist) } )*
        }
        mod malloc {
            $( #[test] fn $name() { super::$name(flistalloc::Backend::Malloc) } )*
        }
        #[cfg(all(feature = "jemalloc", not(miri)))]
        mod jemalloc {
            $( #[test] fn $name() { super::$name(flistalloc::Backend::Jemalloc) } )*
        }
    };
}

on_every_backend!(
    builder_settings_hold,
    capacity_bounds_the_bytes_held,
    sizes_outside_the_range_are_refused,
    alignment_above_the_page_is_refused,
    free_null_panics_and_errs,
    foreign_pointers_are_reported_without_harm,
    double_free_is_reported,
    chunks_are_as_large_as_said_and_writable,
    info_and_utilization_agree_with_the_live_chunks,
    trim_and_release,
    allocator_api2_collections,
    allocator_grow_shrink_keep_contents,
    zero_size_rules,
    shrink_to_fit_gives_capacity_back,
    a_request_over_the_room_left_is_out_of_capacity,
    panics_point_at_the_caller,
);

/// Runs `f`, which must panic, and returns its panic message; `None`
/// (without running `f`) under miri, where a panic takes seconds: the
/// panicking methods wrap their `try_` twins, which miri checks.
fn panic_message(f: impl FnOnce()) -> Option<String> {
    if cfg!(miri) {
        return None;
    }
    let payload = catch_unwind(AssertUnwindSafe(f)).expect_err("expected a panic");
    if let Some(s) = payload.downcast_ref::<String>() {
        Some(s.clone())
    } else if let Some(s) = payload.downcast_ref::<&str>() {
        Some((*s).to_string())
    } else {
        panic!("panic payload is not a string")
    }
}

fn arena(b: Backend, capacity: usize) -> Arena {
    Arena::builder(capacity).backend(b).build()
}

fn ranged(b: Backend, capacity: usize, min: usize, max: usize) -> Arena {
    Arena::builder(capacity)
        .chunk_range(min, max)
        .backend(b)
        .build()
}

/// Frees every pointer in `ptrs`.
fn free_all(a: &Arena, ptrs: impl IntoIterator<Item = NonNull<u8>>) {
    for p in ptrs {
        // SAFETY: every pointer passed here is a live chunk of `a`, freed once.
        unsafe { a.free(p.as_ptr()) };
    }
}

/// Every backend this build (and miri) can run.
fn all_backends() -> Vec<Backend> {
    let mut v = vec![Backend::Flist, Backend::Malloc];
    if Backend::Jemalloc.available() && !cfg!(miri) {
        v.push(Backend::Jemalloc);
    }
    v
}

fn builder_settings_hold(b: Backend) {
    let a = arena(b, 4 * MIB);
    assert_eq!(a.backend(), b);
    assert_eq!(a.info().capacity, 4 * MIB);
    assert_eq!((a.info().heap, a.info().allocated), (0, 0));
    assert!(a.info().overhead > 0, "the core's page at least");
    assert!(a.utilization().is_empty());
    assert_eq!(a.slabs(), slabs());
    assert_eq!(a.jemalloc_arena().is_some(), b == Backend::Jemalloc);
    let e = |r: Result<Arena, Error>| r.err();
    assert_eq!(
        e(Arena::builder(MAX_ARENA_SIZE + 1).backend(b).try_build()),
        Some(Error::CapacityTooLarge {
            capacity: MAX_ARENA_SIZE + 1
        })
    );
    assert_eq!(
        e(Arena::builder(MIB)
            .chunk_range(64, 8)
            .backend(b)
            .try_build()),
        Some(Error::InvalidChunkRange { min: 64, max: 8 })
    );
    assert_eq!(
        e(Arena::builder(MIB)
            .chunk_range(0, MAX_ARENA_SIZE + 1)
            .backend(b)
            .try_build()),
        Some(Error::InvalidChunkRange {
            min: 0,
            max: MAX_ARENA_SIZE + 1
        })
    );
    if let Some(msg) = panic_message(|| drop(Arena::builder(MAX_ARENA_SIZE + 1).backend(b).build()))
    {
        assert!(msg.contains("exceeds MAX_ARENA_SIZE"), "{msg}");
    }
    // Exactly 1 TiB is accepted (nothing is mapped up front).
    let big = arena(b, MAX_ARENA_SIZE);
    assert_eq!(big.info().capacity, MAX_ARENA_SIZE);
}

/// Allocates `size`-byte chunks until the arena is out of capacity.
fn fill(a: &Arena, size: usize) -> Vec<NonNull<u8>> {
    let mut v = Vec::new();
    loop {
        match a.try_alloc(size) {
            Ok(p) => v.push(p),
            Err(Error::OutOfCapacity {
                needed,
                heap,
                capacity,
            }) => {
                assert_eq!(capacity, a.info().capacity);
                assert_eq!(heap, a.info().heap);
                assert!(needed >= size && heap + needed > capacity);
                return v;
            }
            Err(e) => panic!("unexpected error {e:?}"),
        }
    }
}

fn capacity_bounds_the_bytes_held(b: Backend) {
    let cap = 256 << 10;
    let a = arena(b, cap);
    let v = fill(&a, 1000);
    let info = a.info();
    assert!(info.heap <= cap && info.allocated <= info.heap, "{info:?}");
    // Nearly full: less than one pool (flist) or one chunk short.
    assert!(info.allocated + 64 * 1024 > cap, "{info:?}");
    assert!(v.len() * 1000 <= cap);
    if let Some(msg) = panic_message(|| {
        a.alloc(1000);
    }) {
        assert!(msg.contains("out of capacity"), "{msg}");
    }
    // The failed allocation changed nothing.
    assert_eq!(a.info(), info);
    // One more fits after a free.
    let last = *v.last().unwrap();
    free_all(&a, [last]);
    let again = a.alloc(1000);
    free_all(&a, v[..v.len() - 1].iter().copied().chain([again]));
    assert_eq!(a.info().allocated, 0);
    // A chunk larger than the room left is refused (flist: after its empty
    // pools went back).
    a.trim();
    let p = a.alloc(64 << 10);
    assert!(matches!(
        a.try_alloc(cap - (32 << 10)),
        Err(Error::OutOfCapacity { .. })
    ));
    free_all(&a, [p]);
}

fn sizes_outside_the_range_are_refused(b: Backend) {
    let a = ranged(b, MIB, 16, 1024);
    let out = |size| Error::SizeOutOfRange {
        size,
        min: 16,
        max: 1024,
    };
    assert_eq!(a.try_alloc(8).err(), Some(out(8)));
    assert_eq!(a.try_alloc(1025).err(), Some(out(1025)));
    assert_eq!(a.try_alloc_layout(layout(2000, 8)).err(), Some(out(2000)));
    if let Some(msg) = panic_message(|| {
        a.alloc(4);
    }) {
        assert_eq!(
            msg,
            "flistalloc: size 4 is outside this arena's chunk range 16..=1024"
        );
    }
    if let Some(msg) = panic_message(|| {
        a.alloc_layout(layout(4096, 64));
    }) {
        assert!(msg.contains("outside this arena's chunk range"), "{msg}");
    }
    let p = a.alloc(16);
    let q = a.alloc(1024);
    free_all(&a, [p, q]);
    assert_eq!(a.info().allocated, 0);
}

fn alignment_above_the_page_is_refused(b: Backend) {
    let a = arena(b, MIB);
    assert_eq!(
        a.try_alloc_layout(layout(64, 8192)).err(),
        Some(Error::UnsupportedAlignment { align: 8192 })
    );
    if let Some(msg) = panic_message(|| {
        a.alloc_layout(layout(64, 8192));
    }) {
        assert!(
            msg.contains("alignment 8192 is above the page size"),
            "{msg}"
        );
    }
    for align in [1, 8, 16, 64, 512, PAGE] {
        let p = a.alloc_layout(layout(100, align));
        assert_eq!(p.as_ptr() as usize % align, 0, "align {align}");
        free_all(&a, [p]);
    }
}

fn free_null_panics_and_errs(b: Backend) {
    let a = arena(b, MIB);
    // SAFETY: any pointer may be passed; null is reported.
    let r = unsafe { a.try_free(std::ptr::null_mut()) };
    assert_eq!(r, Err(Error::NullPointer));
    // SAFETY: as above.
    if let Some(msg) = panic_message(|| unsafe { a.free(std::ptr::null_mut()) }) {
        assert_eq!(msg, "flistalloc: free of a null pointer");
    }
}

fn foreign_pointers_are_reported_without_harm(b: Backend) {
    let a = arena(b, 4 * MIB);
    let mine = a.alloc(64);
    let big = a.alloc(MIB);
    let before = a.info();
    let mut stack = 7u64;
    let heap = Box::new(5u64);
    let heap_ptr = Box::into_raw(heap);
    let mut foreign: Vec<*mut u8> = vec![
        (&mut stack as *mut u64).cast(),
        heap_ptr.cast(),
        mine.as_ptr().wrapping_add(8),
        big.as_ptr().wrapping_add(PAGE),
        std::ptr::without_provenance_mut(8),
        std::ptr::without_provenance_mut(1 << 21),
    ];
    // Live chunks of other arenas, of every backend (and the same one).
    let others: Vec<Arena> = all_backends().into_iter().map(|o| arena(o, MIB)).collect();
    for o in &others {
        foreign.push(o.alloc(64).as_ptr());
        foreign.push(o.alloc(5000).as_ptr());
    }
    for &p in &foreign {
        // SAFETY: any pointer may be passed; a foreign one is reported and
        // nothing changes.
        let r = unsafe { a.try_free(p) };
        assert_eq!(r, Err(Error::ForeignPointer { addr: p as usize }), "{p:p}");
        if let Some(msg) = panic_message(|| {
            a.chunk_size(p);
        }) {
            assert!(msg.contains("was not handed out by this arena"), "{msg}");
        }
    }
    // SAFETY: as above: the panicking twin.
    if let Some(msg) = panic_message(|| unsafe { a.free(foreign[0]) }) {
        assert_eq!(
            msg,
            format!(
                "flistalloc: pointer {:#x} was not handed out by this arena",
                foreign[0] as usize
            )
        );
    }
    assert_eq!(a.info(), before);
    // The other arenas' chunks are intact and still theirs.
    for (i, o) in others.iter().enumerate() {
        let (p, q) = (foreign[6 + 2 * i], foreign[7 + 2 * i]);
        assert!(o.chunk_size(p) >= 64 && o.chunk_size(q) >= 5000);
        // SAFETY: live chunks of `o`, freed once.
        unsafe {
            o.free(p);
            o.free(q);
        }
    }
    free_all(&a, [mine, big]);
    // SAFETY: the Box's own pointer, returned to it.
    drop(unsafe { Box::from_raw(heap_ptr) });
}

fn double_free_is_reported(b: Backend) {
    let a = arena(b, MIB);
    let keep = a.alloc(64);
    let p = a.alloc(64);
    free_all(&a, [p]);
    let before = a.info();
    // SAFETY: any pointer may be passed; the immediate double free is
    // caught on every backend (flist: DoubleFree; malloc and jemalloc: the
    // address is no longer a live chunk of the arena).
    let r = unsafe { a.try_free(p.as_ptr()) };
    let addr = p.as_ptr() as usize;
    match b {
        Backend::Flist => assert_eq!(r, Err(Error::DoubleFree { addr })),
        _ => assert_eq!(r, Err(Error::ForeignPointer { addr })),
    }
    assert_eq!(a.info(), before);
    free_all(&a, [keep]);
}

fn chunks_are_as_large_as_said_and_writable(b: Backend) {
    let a = arena(b, 64 * MIB);
    let sizes: &[usize] = if cfg!(miri) {
        &[0, 1, 7, 8, 67, 100, 4096, 5000, 70_000]
    } else {
        &[
            0,
            1,
            7,
            8,
            67,
            100,
            1000,
            4096,
            5000,
            70_000,
            300_000,
            3 * MIB,
        ]
    };
    let mut live = Vec::new();
    for (i, &size) in sizes.iter().enumerate() {
        let p = a.alloc(size);
        let n = a.chunk_size(p.as_ptr());
        assert!(n >= size.max(1), "size {size}: chunk {n}");
        assert_eq!(p.as_ptr() as usize % 8, 0);
        if b == Backend::Flist {
            assert_eq!(n, flistalloc::suitable_slab(size.max(1)).max(8));
        }
        // SAFETY: the chunk holds n bytes.
        unsafe { p.as_ptr().write_bytes(i as u8 + 1, n) };
        live.push((p, n, i as u8 + 1));
    }
    // No two chunks overlap: every one still holds its own pattern.
    for &(p, n, pat) in &live {
        // SAFETY: n live bytes of the chunk, written above.
        let s = unsafe { std::slice::from_raw_parts(p.as_ptr(), n) };
        assert!(s.iter().all(|&x| x == pat));
    }
    // Size 0 gives unique chunks.
    let z1 = a.alloc(0);
    let z2 = a.alloc(0);
    assert_ne!(z1, z2);
    free_all(&a, live.iter().map(|l| l.0).chain([z1, z2]));
    assert_eq!(a.info().allocated, 0);
}

fn info_and_utilization_agree_with_the_live_chunks(b: Backend) {
    let a = arena(b, 16 * MIB);
    let n = if cfg!(miri) { 40 } else { 400 };
    let live: Vec<_> = (0..n).map(|i| a.alloc(8 + i * 37 % 3000)).collect();
    let sizes: Vec<usize> = live.iter().map(|p| a.chunk_size(p.as_ptr())).collect();
    let info = a.info();
    assert_eq!(info.allocated, sizes.iter().sum::<usize>());
    assert!(info.allocated <= info.heap && info.heap <= info.capacity);
    assert!(
        info.overhead > 0 && info.overhead.is_multiple_of(PAGE),
        "{info:?}"
    );
    let util = a.utilization();
    assert!(util.windows(2).all(|w| w[0].slab < w[1].slab));
    assert_eq!(util.iter().map(|u| u.in_use).sum::<usize>(), n);
    for u in &util {
        assert!(slabs().contains(&u.slab), "{u:?}");
        assert!(u.in_use <= u.held && u.ratio == u.in_use as f64 / u.held as f64);
        // Each group counts the live chunks whose size falls in the slab.
        let in_slab = sizes
            .iter()
            .filter(|&&s| {
                let i = slabs().partition_point(|&x| x < s);
                slabs()[i] == u.slab
            })
            .count();
        assert_eq!(in_slab, u.in_use, "{u:?}");
    }
    free_all(&a, live);
    assert_eq!(a.info().allocated, 0);
}

fn trim_and_release(b: Backend) {
    let a = arena(b, 16 * MIB);
    let live: Vec<_> = (0..100).map(|i| a.alloc(100 + i * 50)).collect();
    let held = a.info().heap;
    assert!(held > 0);
    free_all(&a, live[..50].iter().copied());
    let before = a.info();
    let given = a.trim();
    let after = a.info();
    assert_eq!(after.heap, before.heap - given);
    assert_eq!(after.allocated, before.allocated);
    free_all(&a, live[50..].iter().copied());
    a.trim();
    assert_eq!((a.info().heap, a.info().allocated), (0, 0));
    // Release and drop with live chunks, repeatedly: nothing leaks into
    // later arenas' failures.
    for _ in 0..if cfg!(miri) { 2 } else { 20 } {
        let a = arena(b, 16 * MIB);
        for s in [8, 100, 4096, 3 * MIB] {
            a.alloc(s);
        }
        a.release();
        let d = arena(b, MIB);
        d.alloc(64);
        drop(d);
    }
}

fn allocator_api2_collections(b: Backend) {
    let a = arena(b, 64 * MIB);
    {
        let n = if cfg!(miri) { 500u64 } else { 100_000 };
        let mut v = allocator_api2::vec::Vec::new_in(&a);
        for i in 0..n {
            v.push(i * 3 + 1);
        }
        assert!(v.iter().enumerate().all(|(i, &x)| x == i as u64 * 3 + 1));
        let chunk = a.chunk_size(v.as_ptr().cast());
        assert!(chunk >= v.capacity() * 8);
        // Every smaller buffer went back: only the current one is live.
        assert_eq!(a.info().allocated, chunk);
        let boxed = allocator_api2::boxed::Box::new_in([7u8; 300], &a);
        assert_eq!(boxed.iter().map(|&x| x as usize).sum::<usize>(), 2100);
        let mut nested = allocator_api2::vec::Vec::new_in(&a);
        for i in 0..20 {
            let mut inner = allocator_api2::vec::Vec::new_in(&a);
            inner.extend(0..i);
            nested.push(inner);
        }
        assert_eq!(nested[19].len(), 19);
        v.truncate(3);
        v.shrink_to_fit();
        assert_eq!(v, [1, 4, 7]);
    }
    assert_eq!(a.info().allocated, 0);
}

fn allocator_grow_shrink_keep_contents(b: Backend) {
    let a = arena(b, 16 * MIB);
    let alloc = &a;
    let l = |n| layout(n, 8);
    let block = alloc.allocate(l(100)).unwrap();
    assert_eq!(block.len(), a.chunk_size(block.cast::<u8>().as_ptr()));
    let p = block.cast::<u8>();
    // SAFETY: the block holds at least 100 bytes.
    unsafe { p.as_ptr().write_bytes(0xAB, 100) };
    // SAFETY: a live block of `alloc` fitting l(100); the new layout is
    // larger.
    let grown = unsafe { alloc.grow_zeroed(p, l(100), l(50_000)) }.unwrap();
    assert!(grown.len() >= 50_000);
    let g = grown.cast::<u8>();
    // SAFETY: grown.len() live bytes.
    let s = unsafe { std::slice::from_raw_parts(g.as_ptr(), grown.len()) };
    assert!(s[..100].iter().all(|&x| x == 0xAB));
    assert!(s[100..].iter().all(|&x| x == 0));
    // SAFETY: a live block fitting l(50_000), shrunk.
    let shrunk = unsafe { alloc.shrink(g, l(50_000), l(10)) }.unwrap();
    let q = shrunk.cast::<u8>();
    // SAFETY: at least 10 live bytes.
    assert!(unsafe { std::slice::from_raw_parts(q.as_ptr(), 10) }
        .iter()
        .all(|&x| x == 0xAB));
    assert_eq!(a.info().allocated, a.chunk_size(q.as_ptr()));
    // A grow that does not fit the capacity fails and keeps the block.
    // SAFETY: a live block fitting l(10).
    let r = unsafe { alloc.grow(q, l(10), l(32 * MIB)) };
    assert!(r.is_err());
    // SAFETY: the block is still live and fits l(10).
    unsafe { alloc.deallocate(q, l(10)) };
    assert_eq!(a.info().allocated, 0);
}

fn zero_size_rules(b: Backend) {
    let a = ranged(b, MIB, 64, 1024);
    let alloc = &a;
    let before = a.info();
    let z = alloc.allocate(layout(0, 32)).unwrap();
    assert_eq!((z.len(), z.cast::<u8>().as_ptr() as usize), (0, 32));
    assert_eq!(a.info(), before);
    // SAFETY: the zero-size block of this allocator.
    unsafe { alloc.deallocate(z.cast(), layout(0, 32)) };
    // SAFETY: growing from size 0 only allocates.
    let g = unsafe { alloc.grow(z.cast(), layout(0, 32), layout(100, 32)) }.unwrap();
    assert_eq!(g.cast::<u8>().as_ptr() as usize % 32, 0);
    // SAFETY: shrinking to 0 frees and returns a dangling block.
    let s = unsafe { alloc.shrink(g.cast(), layout(100, 32), layout(0, 16)) }.unwrap();
    assert_eq!((s.len(), s.cast::<u8>().as_ptr() as usize), (0, 16));
    assert_eq!(a.info().allocated, 0);
    // An empty boxed slice never touches the arena, whatever its range.
    let e: allocator_api2::boxed::Box<[u64], _> =
        allocator_api2::vec::Vec::new_in(&a).into_boxed_slice();
    drop(e);
    assert_eq!(a.info().allocated, 0);
}

#[test]
fn the_builder_without_settings_is_arena_new() {
    let a = Arena::builder(8 * MIB).build();
    let b = Arena::new(8 * MIB);
    assert_eq!(a.backend(), Backend::Flist);
    let (p, q) = (a.alloc(67), b.alloc(67));
    assert_eq!(a.info(), b.info());
    assert_eq!(a.utilization(), b.utilization());
    assert_eq!(a.chunk_size(p.as_ptr()), b.chunk_size(q.as_ptr()));
    let r = Arena::builder(8 * MIB).chunk_range(8, 512).build();
    let s = Arena::with_chunk_range(8 * MIB, 8, 512);
    assert_eq!(r.try_alloc(513).err(), s.try_alloc(513).err());
    free_all(&a, [p]);
    free_all(&b, [q]);
}

#[test]
#[cfg(not(feature = "jemalloc"))]
fn jemalloc_without_the_feature_is_an_error_naming_it() {
    let e = Arena::builder(MIB)
        .backend(Backend::Jemalloc)
        .try_build()
        .unwrap_err();
    assert_eq!(
        e,
        Error::BackendUnavailable {
            backend: Backend::Jemalloc
        }
    );
    assert!(e.to_string().contains("cargo feature `jemalloc`"), "{e}");
    if let Some(msg) =
        panic_message(|| drop(Arena::builder(MIB).backend(Backend::Jemalloc).build()))
    {
        assert!(msg.contains("jemalloc"), "{msg}");
    }
}

#[test]
fn backend_unavailable_message_names_the_feature() {
    let e = Error::BackendUnavailable {
        backend: Backend::Jemalloc,
    };
    assert_eq!(
        e.to_string(),
        "backend jemalloc is not in this build (it needs the cargo feature `jemalloc`)"
    );
}

#[test]
fn arenas_of_every_backend_move_between_threads() {
    for b in all_backends() {
        let a = arena(b, 4 * MIB);
        let p = a.alloc(100).as_ptr() as usize;
        let a = std::thread::spawn(move || {
            let q = a.alloc(200);
            // SAFETY: q is a live chunk of `a`.
            unsafe { a.free(q.as_ptr()) };
            a
        })
        .join()
        .unwrap();
        assert!(a.chunk_size(std::ptr::without_provenance(p)) >= 100);
        assert_eq!(a.utilization().iter().map(|u| u.in_use).sum::<usize>(), 1);
        a.release();
    }
}

// ---------------------------------------------------------------------------
// Release returns the memory, by each backend's own statistics (child
// processes: the figures are process-wide).
// ---------------------------------------------------------------------------

/// Chunks and their size for the release tests: 16 MiB in 200-byte chunks,
/// below glibc's mmap threshold, so they sit in its heap.
#[cfg(not(miri))]
const RELEASE_CHUNKS: usize = 80_000;
#[cfg(not(miri))]
const RELEASE_SIZE: usize = 200;

#[cfg(not(miri))]
fn fill_for_release(a: &Arena) {
    for i in 0..RELEASE_CHUNKS {
        // Written, so the pages are resident.
        // SAFETY: the chunk holds RELEASE_SIZE bytes.
        unsafe {
            a.alloc(RELEASE_SIZE)
                .as_ptr()
                .write_bytes(i as u8, RELEASE_SIZE)
        };
    }
}

#[test]
#[cfg(not(miri))]
fn release_returns_the_memory_flist() {
    const NAME: &str = "backends::release_returns_the_memory_flist";
    if !crate::common::is_child() {
        crate::common::child_ok(NAME, &[]);
        return;
    }
    let a = arena(Backend::Flist, 64 * MIB);
    fill_for_release(&a);
    let info = a.info();
    assert!(info.heap >= RELEASE_CHUNKS * RELEASE_SIZE, "{info:?}");
    let rss_held = crate::common::rss();
    a.release();
    // Our own statistics: a new arena starts from nothing, and the
    // process's resident set dropped by the heap.
    let fresh = arena(Backend::Flist, 64 * MIB);
    assert_eq!((fresh.info().heap, fresh.info().allocated), (0, 0));
    let rss_after = crate::common::rss();
    assert!(
        rss_held.saturating_sub(rss_after) >= info.heap * 9 / 10,
        "rss {rss_held} -> {rss_after}, heap {}",
        info.heap
    );
    eprintln!("{}", crate::common::DONE);
}

#[cfg(not(miri))]
fn uordblks() -> usize {
    // SAFETY: mallinfo2 only reads glibc's statistics.
    unsafe { libc::mallinfo2().uordblks }
}

#[test]
#[cfg(not(miri))]
fn release_returns_the_memory_malloc() {
    const NAME: &str = "backends::release_returns_the_memory_malloc";
    if !crate::common::is_child() {
        crate::common::child_ok(NAME, &[]);
        return;
    }
    let a = arena(Backend::Malloc, 64 * MIB);
    let before = uordblks();
    fill_for_release(&a);
    let held = uordblks() - before;
    assert!(held >= RELEASE_CHUNKS * RELEASE_SIZE, "glibc holds {held}");
    assert_eq!(a.info().heap, a.info().allocated);
    assert!(a.info().heap >= RELEASE_CHUNKS * RELEASE_SIZE);
    a.release();
    let after = uordblks();
    eprintln!("uordblks: {before} -> +{held} -> {after}");
    // Everything the arena held is free in glibc again (the chunk set was
    // OS memory, never glibc's), give or take the harness's own use.
    assert!(after <= before + 64 * 1024, "{before} -> {after}");
    eprintln!("{}", crate::common::DONE);
}

#[cfg(all(feature = "jemalloc", not(miri)))]
fn jemalloc_pactive(arena: u32) -> usize {
    use tikv_jemalloc_sys::mallctl;
    let mut epoch: u64 = 1;
    let mut len = std::mem::size_of::<u64>();
    let name = std::ffi::CString::new(format!("stats.arenas.{arena}.pactive")).unwrap();
    let mut pactive: usize = 0;
    // SAFETY: `epoch` refreshes the statistics (read and write a u64); the
    // pactive read writes one size_t into a buffer of that size.
    unsafe {
        let p = (&mut epoch as *mut u64).cast();
        assert_eq!(mallctl(c"epoch".as_ptr(), p, &mut len, p, len), 0);
        len = std::mem::size_of::<usize>();
        let r = mallctl(
            name.as_ptr(),
            (&mut pactive as *mut usize).cast(),
            &mut len,
            std::ptr::null_mut(),
            0,
        );
        assert_eq!(r, 0, "mallctl {name:?}");
    }
    pactive * PAGE
}

#[test]
#[cfg(all(feature = "jemalloc", not(miri)))]
fn release_returns_the_memory_jemalloc() {
    const NAME: &str = "backends::release_returns_the_memory_jemalloc";
    if !crate::common::is_child() {
        crate::common::child_ok(NAME, &[]);
        return;
    }
    let a = arena(Backend::Jemalloc, 64 * MIB);
    let index = a.jemalloc_arena().unwrap();
    assert_eq!(jemalloc_pactive(index), 0);
    fill_for_release(&a);
    let active = jemalloc_pactive(index);
    assert!(active >= RELEASE_CHUNKS * RELEASE_SIZE, "pactive {active}");
    a.release();
    // The arena is destroyed: jemalloc 5.3's `arenas.create` hands out a
    // destroyed index first (ctl.c keeps them on a list), and that arena
    // starts from zero active pages.
    let b = arena(Backend::Jemalloc, MIB);
    let again = b.jemalloc_arena().unwrap();
    eprintln!("pactive of arena {index}: {active} bytes, then arena {again}");
    assert_eq!(again, index);
    assert_eq!(jemalloc_pactive(again), 0);
    b.alloc(100);
    assert!(jemalloc_pactive(again) > 0);
    b.release();
    eprintln!("{}", crate::common::DONE);
}

/// A vector grown to 8 MB then shrunk to 10 elements holds a small chunk
/// again: `allocated` falls back (on malloc/jemalloc a shrink below half of
/// the usable size moves the block).
fn shrink_to_fit_gives_capacity_back(b: Backend) {
    let a = arena(b, 64 * MIB);
    let n = if cfg!(miri) { 10_000 } else { 1_000_000 };
    let mut v = allocator_api2::vec::Vec::new_in(&a);
    for i in 0..n as u64 {
        v.push(i);
    }
    assert!(a.info().allocated >= n * 8);
    v.truncate(10);
    v.shrink_to_fit();
    assert_eq!(v.iter().sum::<u64>(), 45);
    assert!(
        a.info().allocated <= 4096,
        "{b:?}: {} bytes still counted",
        a.info().allocated
    );
}

/// A request larger than the room left is `OutOfCapacity` on every backend,
/// decided before the backend is asked (malloc is never handed 64 GiB).
fn a_request_over_the_room_left_is_out_of_capacity(b: Backend) {
    let a = ranged(b, MIB, 0, MAX_ARENA_SIZE);
    let err = a.try_alloc(1 << 36).unwrap_err();
    assert!(
        matches!(err, Error::OutOfCapacity { capacity, .. } if capacity == MIB),
        "{b:?}: {err:?}"
    );
}

/// The panicking methods report the caller's line (`#[track_caller]`), not
/// one inside flistalloc.
fn panics_point_at_the_caller(b: Backend) {
    if cfg!(miri) {
        return;
    }
    let a = ranged(b, MIB, 8, 512);
    let here = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let seen = here.clone();
    // The hook is process-wide: record only this thread's panic.
    let me = std::thread::current().id();
    let prev = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if std::thread::current().id() == me {
            if let Some(l) = info.location() {
                *seen.lock().unwrap() = l.file().to_string();
            }
        }
    }));
    let r = catch_unwind(AssertUnwindSafe(|| a.alloc(4096)));
    std::panic::set_hook(prev);
    assert!(r.is_err());
    let file = here.lock().unwrap().clone();
    assert!(
        file.ends_with("backends.rs"),
        "{b:?}: panic located in {file}"
    );
}
