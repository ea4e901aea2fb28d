use super::*;

#[test]
fn table_shape() {
    let s = slabs();
    assert_eq!(s[0], 8);
    assert_eq!(*s.last().unwrap(), MAX_ARENA_SIZE);
    for w in s.windows(2) {
        let (a, b) = (w[0], w[1]);
        assert!(a < b);
        assert_eq!(b % 8, 0);
        let bound = 8usize.max((a / WASTE_DIV) & !7);
        assert!(b - a <= bound, "{a} -> {b} gap above {bound}");
    }
}

#[test]
fn four_slabs_per_doubling() {
    assert_eq!(
        slabs()[..24],
        [
            8, 16, 24, 32, 40, 48, 56, 64, 72, 80, 88, 96, 104, 112, 120, 128, 160, 192, 224, 256,
            320, 384, 448, 512
        ]
    );
    assert_eq!(NUM_SLABS, 148);
    assert_eq!(SMALL_SLABS, 28);
    // Every multiple of 8 up to FINE_MAX, then 4 slabs per doubling.
    assert_eq!(
        slabs().iter().filter(|&&s| s <= FINE_MAX).count(),
        FINE_MAX / 8
    );
    let mut p = FINE_MAX;
    while p < MAX_ARENA_SIZE {
        let n = slabs().iter().filter(|&&s| s > p && s <= 2 * p).count();
        assert_eq!(n, 4, "slabs in ({p}, {}]", 2 * p);
        p *= 2;
    }
    assert!(slabs().contains(&LARGEST_FLIST_SIZE));
}

#[test]
fn sixty_seven_is_seventy_two() {
    // The seed's own example.
    assert_eq!(suitable_slab(67), 72);
    assert_eq!(suitable_slab(64), 64);
    assert_eq!(suitable_slab(129), 160);
    assert_eq!(suitable_slab(1), 8);
    assert_eq!(suitable_slab(0), 8);
    assert_eq!(suitable_slab(MAX_ARENA_SIZE), MAX_ARENA_SIZE);
}

#[test]
#[should_panic(expected = "above the largest slab")]
fn above_one_tib_panics() {
    suitable_slab(MAX_ARENA_SIZE + 1);
}

fn check(size: usize, align: usize) {
    let idx = slab_index_aligned(size, align).expect("served");
    let slab = slab_size(idx);
    assert!(slab >= size.max(1), "size {size} align {align}");
    assert!(
        chunk_align(slab) >= align,
        "size {size} align {align} slab {slab}"
    );
    if idx > 0 {
        // It is the smallest aligned slab.
        let prev = slabs()[..idx]
            .iter()
            .rev()
            .find(|&&s| chunk_align(s) >= align)
            .copied();
        if let Some(p) = prev {
            assert!(p < size.max(1), "size {size} align {align}: {p} also fits");
        }
    }
    let waste = slab - size.max(1);
    if align <= 8 {
        if size > 8 * WASTE_DIV {
            assert!(
                waste * WASTE_DIV <= size,
                "size {size}: slab {slab} wastes over 1/{WASTE_DIV}"
            );
        } else {
            assert!(waste < 8);
        }
    } else {
        assert!(
            waste <= size / WASTE_DIV + align,
            "size {size} align {align} slab {slab}"
        );
    }
}

#[test]
fn every_small_size_and_alignment() {
    // Under miri: every size across the 8-byte steps and the first 25 %
    // ones, at every fourth alignment (the rest is sampled below).
    let (max, align_step) = if cfg!(miri) { (200, 4) } else { (65536, 1) };
    let mut shift = 0;
    while 1 << shift <= PAGE {
        for size in 1..=max {
            check(size, 1 << shift);
        }
        shift += align_step;
    }
}

#[test]
fn sampled_sizes_up_to_one_tib() {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let n = if cfg!(miri) { 200 } else { 100_000 };
    for _ in 0..n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let bits = (x % 41) as u32;
        let size = ((x >> 8) as usize & ((1usize << bits) - 1)).clamp(1, MAX_ARENA_SIZE);
        let align = 1usize << ((x >> 50) % 13);
        check(size, align);
    }
}

#[test]
fn small_table_matches_search() {
    // Under miri every third size (each 8-byte step is still covered).
    for size in (0..=SMALL_MAX).step_by(if cfg!(miri) { 3 } else { 1 }) {
        assert_eq!(slab_index(size), slab_index_large(size.max(1)));
    }
}

#[test]
fn big_alignment_refused() {
    assert_eq!(slab_index_aligned(16, 8192), None);
    assert_eq!(slab_index_aligned(MAX_ARENA_SIZE + 1, 8), None);
}

#[test]
fn slab_index_16_is_the_aligned_lookup() {
    for size in 0..=SMALL_MAX {
        // SAFETY: size <= SMALL_MAX.
        let idx = unsafe { slab_index_16(size) };
        assert_eq!(Some(idx), slab_index_aligned(size, 16), "size {size}");
        assert_eq!(slab_size(idx) % 16, 0);
        assert!(slab_size(idx) >= size.max(1));
    }
}

#[test]
fn direct_ranges_cover_each_entry_once_with_its_slab() {
    let mut owner = [usize::MAX; DIRECT_ENTRIES];
    for idx in 0..SMALL_SLABS + 2 {
        for k in direct_range(idx) {
            assert_eq!(owner[k], usize::MAX, "entry {k} in two ranges");
            owner[k] = idx;
        }
    }
    for size in 0..=SMALL_MAX {
        assert_eq!(owner[direct_index(size)], slab_index(size), "size {size}");
    }
    assert!(direct_range(SMALL_SLABS).is_empty());
}
