use super::*;

#[test]
fn alloc_free_reuses_chunk() {
    let a = Arena::new(1 << 20);
    let p = a.alloc(40);
    // SAFETY: p is ours, unused afterwards.
    unsafe { a.free(p.as_ptr()) };
    let q = a.alloc(40);
    assert_eq!(p, q);
    // SAFETY: as above.
    unsafe { a.free(q.as_ptr()) };
}

#[test]
fn foreign_and_interior_pointers_are_reported() {
    let a = Arena::new(1 << 20);
    let b = Arena::new(1 << 20);
    let p = a.alloc(64);
    // SAFETY: any pointer may be passed to try_free; errors leave arenas unchanged.
    unsafe {
        assert!(matches!(
            b.try_free(p.as_ptr()),
            Err(Error::ForeignPointer { .. })
        ));
        assert!(matches!(
            a.try_free(p.as_ptr().add(8)),
            Err(Error::ForeignPointer { .. })
        ));
        assert!(matches!(
            a.try_free(core::ptr::null_mut()),
            Err(Error::NullPointer)
        ));
        a.free(p.as_ptr());
        assert!(matches!(
            a.try_free(p.as_ptr()),
            Err(Error::DoubleFree { .. })
        ));
    }
}

#[test]
fn pools_double_and_capacity_binds() {
    let a = Arena::new(64 << 10);
    let mut v = Vec::new();
    while let Ok(p) = a.try_alloc(4096) {
        v.push(p);
    }
    assert_eq!(v.len(), 16);
    assert_eq!(a.info().heap, 64 << 10);
    for p in v {
        // SAFETY: ours, freed once.
        unsafe { a.free(p.as_ptr()) };
    }
    assert_eq!(a.trim(), 64 << 10);
}

#[test]
fn huge_chunk_gets_its_own_segment() {
    let a = Arena::new(16 << 20);
    let p = a.alloc(6 << 20);
    assert!(a.chunk_size(p.as_ptr()) >= 6 << 20);
    // SAFETY: p holds at least 6 MiB.
    unsafe { p.as_ptr().add((6 << 20) - 1).write(1) };
    // SAFETY: ours, freed once.
    unsafe { a.free(p.as_ptr()) };
    assert!(a.trim() >= 6 << 20);
}

#[test]
fn tiny_addresses_are_foreign_even_after_a_free() {
    let a = Arena::new(1 << 20);
    let p = a.alloc(32);
    let q = a.alloc(32);
    // SAFETY: p is ours; after its free the owner table has words set.
    unsafe { a.free(p.as_ptr()) };
    for addr in [8usize, 4096, 1 << 21] {
        // SAFETY: any pointer value may be passed to try_free.
        let r = unsafe { a.try_free(core::ptr::without_provenance_mut(addr)) };
        assert!(matches!(r, Err(Error::ForeignPointer { .. })), "{addr:#x}");
    }
    // SAFETY: ours, through the owner-word fast path.
    unsafe { a.free(q.as_ptr()) };
    let fresh = Arena::new(1 << 20);
    // SAFETY: as above, on an arena that never freed.
    let r = unsafe { fresh.try_free(core::ptr::without_provenance_mut(8)) };
    assert!(matches!(r, Err(Error::ForeignPointer { .. })));
}

#[cfg(debug_assertions)]
#[test]
#[should_panic(expected = "Arena core borrowed again while borrowed at src/arena/tests.rs")]
fn a_second_core_borrow_names_the_first() {
    let a = Arena::new(1 << 20);
    let _first = a.core();
    let _second = a.core();
}

#[test]
fn core_borrows_end_with_their_guard() {
    let a = Arena::new(1 << 20);
    {
        let _c = a.core();
    }
    let p = a.alloc(8);
    // SAFETY: p is ours, unused afterwards.
    unsafe { a.free(p.as_ptr()) };
}
