//! (h) randfree: millions of small blocks freed in random order over a heap
//! of hundreds of MiB, then refilled with other sizes.

use super::{Extra, Rng, Scale};
use support::checksum::sample_hash;

/// The workload; returns its checksum.
pub fn run(scale: Scale, _extra: &mut Extra) -> u64 {
    let n = scale.pick(3_000_000, 120_000);
    let mut rng = Rng::new_spread(0x4a2d);
    let mut sum = 0u64;
    let mut objs: Vec<Option<Box<[u8]>>> = (0..n)
        .map(|i| Some(vec![i as u8; rng.range(16, 160)].into_boxed_slice()))
        .collect();
    let mut order: Vec<u32> = (0..n as u32).collect();
    for i in (1..n).rev() {
        order.swap(i, rng.below(i + 1));
    }
    // Free every block in random order, refilling each freed slot at once
    // with a block of another size about a third of the time.
    for &i in &order {
        let o = objs[i as usize].take().expect("freed once");
        sum = sum.wrapping_add(o.len() as u64 ^ o[o.len() - 1] as u64);
        drop(o);
        if rng.below(3) == 0 {
            objs[i as usize] = Some(vec![(i % 253) as u8; rng.range(24, 512)].into_boxed_slice());
        }
    }
    // Refill the rest with other sizes.
    for (i, slot) in objs.iter_mut().enumerate() {
        if slot.is_none() {
            *slot = Some(vec![(i % 241) as u8; rng.range(170, 700)].into_boxed_slice());
        }
    }
    for o in objs.iter().flatten() {
        sum = sum.wrapping_add(sample_hash(o));
    }
    sum
}
