//! Seeded generators: every allocator gets the same sequence, hence the same
//! work and the same checksum.
//!
//! The generator is `rand_xoshiro`'s splitmix64. The sampling on top of it
//! ([`Rng::below`] and what builds on it) is a fixed multiply-shift rather
//! than `rand`'s ranges, so that the workloads' sequences, and so their
//! allocations and checksums, stay exactly as they were when each example
//! carried its own copy.

use rand_core::{Rng as _, SeedableRng};
use rand_xoshiro::SplitMix64;

/// splitmix64 with the samplers the workloads use.
pub struct Rng(SplitMix64);

impl Rng {
    /// A generator whose state starts at `seed`.
    #[inline]
    pub fn new(seed: u64) -> Rng {
        Rng(SplitMix64::seed_from_u64(seed))
    }

    /// A generator for a small or consecutive seed (a loop index, a request
    /// number): the seed is spread over the state first (`compare`'s
    /// workloads use this one).
    #[inline]
    pub fn new_spread(seed: u64) -> Rng {
        Rng::new(seed.wrapping_mul(0x2545_f491_4f6c_dd1d) ^ 0x1234_5678)
    }

    /// The next 64 random bits.
    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    /// In `0..n` (n > 0), from the top 32 bits (uniform enough for n far
    /// below 2^32).
    #[inline]
    pub fn below(&mut self, n: usize) -> usize {
        (((self.next_u64() >> 32) * n as u64) >> 32) as usize
    }

    /// In `lo..=hi`.
    #[inline]
    pub fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + self.below(hi - lo + 1)
    }

    /// True with probability `pct` percent.
    #[inline]
    pub fn pct(&mut self, pct: usize) -> bool {
        self.below(100) < pct
    }
}

/// A permutation of `0..n`: Fisher-Yates driven by [`Rng::new`]`(seed)` (the
/// benches' reproducible free order).
pub fn permutation(n: usize, seed: u64) -> Vec<usize> {
    let mut rng = Rng::new(seed);
    let mut order: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        let j = (rng.next_u64() % (i as u64 + 1)) as usize;
        order.swap(i, j);
    }
    order
}

/// xorshift64*, the generator of the `server` example's clients (kept so
/// their request streams stay what they were). No crate of the `rand`
/// family ships this variant.
pub struct XorShift64Star(pub u64);

impl XorShift64Star {
    /// The next 64 random bits.
    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// In `0..n` (n > 0), by remainder.
    #[inline]
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The splitmix64 sequence the examples were written with.
    fn splitmix_by_hand(state: &mut u64) -> u64 {
        *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = *state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    #[test]
    fn same_sequence_as_before() {
        for seed in [0, 1, 0x511d, 0x5eed_f11a, u64::MAX] {
            let mut rng = Rng::new(seed);
            let mut state = seed;
            for _ in 0..100 {
                assert_eq!(rng.next_u64(), splitmix_by_hand(&mut state));
            }
        }
        let mut spread = Rng::new_spread(7);
        let mut state = 7u64.wrapping_mul(0x2545_f491_4f6c_dd1d) ^ 0x1234_5678;
        assert_eq!(spread.next_u64(), splitmix_by_hand(&mut state));
    }

    #[test]
    fn samplers_stay_in_range() {
        let mut rng = Rng::new(42);
        for _ in 0..1000 {
            assert!(rng.below(7) < 7);
            let r = rng.range(3, 5);
            assert!((3..=5).contains(&r));
        }
        assert!(!rng.pct(0));
        assert!(rng.pct(100));
    }

    #[test]
    fn permutation_is_one() {
        let mut p = permutation(1000, 0x5eed_f11a);
        assert_ne!(p, (0..1000).collect::<Vec<_>>());
        p.sort_unstable();
        assert_eq!(p, (0..1000).collect::<Vec<_>>());
    }

    #[test]
    fn xorshift_known_values() {
        let mut x = XorShift64Star(1);
        // x = 1: after the shifts the state is 0x2000001 ^ ... ; check
        // against the three-line definition instead of magic numbers.
        let mut s = 1u64;
        for _ in 0..10 {
            s ^= s >> 12;
            s ^= s << 25;
            s ^= s >> 27;
            assert_eq!(x.next_u64(), s.wrapping_mul(0x2545_f491_4f6c_dd1d));
        }
    }
}
