//! (f) frag: allocate a lot, free most at random, allocate other sizes.

use super::{Extra, Rng, Scale};
use support::checksum::sample_hash;
use support::rss;

/// The workload; returns its checksum and reports the final RSS and the
/// live bytes in `extra`.
pub fn run(scale: Scale, extra: &mut Extra) -> u64 {
    let n = scale.pick(3_600_000, 150_000);
    let mut rng = Rng::new_spread(0xf7a6);
    let mut sum = 0u64;
    // Phase 1: many small objects (16 B - 1 KiB, mostly small), all touched.
    let mut objs: Vec<Option<Box<[u8]>>> = (0..n)
        .map(|i| {
            let size = match rng.below(10) {
                0..=5 => rng.range(16, 64),
                6..=8 => rng.range(65, 256),
                _ => rng.range(257, 1024),
            };
            Some(vec![i as u8; size].into_boxed_slice())
        })
        .collect();
    // Phase 2: free 90% of them, in random order.
    let mut order: Vec<u32> = (0..n as u32).collect();
    for i in (1..n).rev() {
        order.swap(i, rng.below(i + 1));
    }
    for &i in &order[..n / 10 * 9] {
        let o = objs[i as usize].take().expect("freed once");
        sum = sum.wrapping_add(o.len() as u64 ^ o[o.len() - 1] as u64);
    }
    drop(order);
    // Phase 3: other sizes (1.1 - 6 KiB), half the bytes that were freed.
    let small_live: u64 = objs.iter().flatten().map(|o| o.len() as u64).sum();
    let target = scale.pick(216 << 20, 12 << 20) as u64;
    let mut big: Vec<Box<[u8]>> = Vec::new();
    let mut big_bytes = 0u64;
    while big_bytes < target {
        let size = rng.range(1100, 6 << 10);
        let mut b = vec![(big.len() % 251) as u8; size].into_boxed_slice();
        b[0] = 7;
        big_bytes += size as u64;
        big.push(b);
    }
    // The state at the end: RSS against the bytes the program holds.
    let book = (objs.capacity() * std::mem::size_of::<Option<Box<[u8]>>>()
        + big.capacity() * std::mem::size_of::<Box<[u8]>>()) as u64;
    extra.live_bytes = Some(small_live + big_bytes + book);
    extra.final_rss_kb = rss::current_kb();
    for o in objs.iter().flatten() {
        sum = sum.wrapping_add(sample_hash(o));
    }
    for b in &big {
        sum = sum.wrapping_add(sample_hash(b));
    }
    sum
}
