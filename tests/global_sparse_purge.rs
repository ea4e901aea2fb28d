//! Sparse pools give their wholly free pages back (issue 10, peak RSS of the
//! `compare` frag workload).
//!
//! A thread allocates many 700-byte blocks, frees 90% of them in random
//! order, then allocates blocks of another size. A slab allocator cannot
//! coalesce the holes the way glibc does, so before this fix every page of
//! the 10%-occupied pools stayed resident and the new blocks came on top.
//! Now, before its heap grows, the thread heap decommits the pages of
//! sparse pools that hold no live chunk: `stats().purged_bytes` grows, RSS
//! grows by less than the new blocks, the surviving blocks keep their bytes,
//! and allocating the old size again takes the purged chunks back without
//! mapping new pools. RSS is process-wide, so this file holds one test.

#[global_allocator]
static GLOBAL: flistalloc::Flist = flistalloc::Flist::new();

mod common;
use common::{rss, Rng};

const MIB: usize = 1 << 20;
/// The small blocks: 700 bytes (slab 768: 5.3 per page, so with 10% live
/// about half of their pages hold no live block).
const SMALL: usize = 700;
/// How many small blocks: about 56 MiB.
const N: usize = 80_000;
/// Bytes of the other size allocated afterwards.
const BIG_BYTES: usize = 24 * MIB;
const BIG: usize = 3000;

/// The byte block `i` is filled with.
fn fill(i: usize) -> u8 {
    (i % 251) as u8
}

/// Allocates `BIG_BYTES` in blocks of `BIG` bytes, block `i` filled with
/// `fill(i + offset)`; returns them, the bytes purged meanwhile and how much
/// RSS grew, and prints both for round `round`.
fn refill_big(round: u32, offset: usize) -> (Vec<Box<[u8]>>, usize, usize) {
    let purged0 = flistalloc::stats().purged_bytes;
    let rss0 = rss();
    let mut big: Vec<Box<[u8]>> = Vec::with_capacity(BIG_BYTES / BIG + 1);
    for i in 0..BIG_BYTES / BIG {
        big.push(vec![fill(i + offset); BIG].into_boxed_slice());
    }
    let purged = flistalloc::stats().purged_bytes - purged0;
    let grown = rss().saturating_sub(rss0);
    eprintln!(
        "round {round}: purged {} KiB; RSS grew {} KiB for {} KiB of new blocks",
        purged >> 10,
        grown >> 10,
        BIG_BYTES >> 10
    );
    (big, purged, grown)
}

#[test]
fn sparse_pools_give_free_pages_back() {
    let mut rng = Rng::new(0x5a17);
    let mut small: Vec<Option<Box<[u8]>>> = (0..N)
        .map(|i| Some(vec![fill(i); SMALL].into_boxed_slice()))
        .collect();
    let mut order: Vec<usize> = (0..N).collect();
    for i in (1..N).rev() {
        order.swap(i, rng.below(i + 1));
    }
    for &i in &order[..N / 10 * 9] {
        small[i] = None;
    }
    drop(order);
    let (big, purged, grown) = refill_big(1, 0);
    // About half of the 56 MiB of small pools holds no live block; ask for
    // a quarter.
    let small_bytes = N * 768;
    assert!(
        purged >= small_bytes / 4,
        "only {purged} bytes of sparse pools given back (of {small_bytes})"
    );
    // Without the purge RSS grows by the new blocks (24.6 MiB with their
    // slab's rounding); with it, the new pools take the place of purged
    // pages (here RSS does not grow at all).
    assert!(
        grown <= BIG_BYTES / 2,
        "RSS grew {grown} bytes for {BIG_BYTES} of new blocks, {purged} purged"
    );
    // The survivors kept their bytes.
    for (i, b) in small.iter().enumerate() {
        if let Some(b) = b {
            assert!(b.iter().all(|&x| x == fill(i)), "block {i} changed");
        }
    }
    // The old size again: the purged chunks come back, no new pool.
    let pools0 = flistalloc::stats().flist_pool_bytes;
    let mut again: Vec<Box<[u8]>> = Vec::with_capacity(N / 2);
    for i in 0..N / 2 {
        again.push(vec![fill(i + 7); SMALL].into_boxed_slice());
    }
    let pools1 = flistalloc::stats().flist_pool_bytes;
    assert!(
        pools1 <= pools0 + MIB,
        "the old size mapped {} bytes of new pools instead of reusing its own",
        pools1 - pools0
    );
    // Every block still holds its own bytes: no chunk was handed out twice.
    for (i, b) in again.iter().enumerate() {
        assert!(b.iter().all(|&x| x == fill(i + 7)), "new block {i} changed");
    }
    for (i, b) in small.iter().enumerate() {
        if let Some(b) = b {
            assert!(b.iter().all(|&x| x == fill(i)), "block {i} changed");
        }
    }
    for (i, b) in big.iter().enumerate() {
        assert!(
            b.len() == BIG && b.iter().all(|&x| x == fill(i)),
            "big block {i} changed"
        );
    }

    // A second round: the big blocks go (their pools are released, the heap
    // shrinks below the size of its last scan), 90% of the small blocks go,
    // and the big size comes back. The heap grows by an eighth from where it
    // shrank to, so it scans again (before the fix the next scan waited
    // until the heap passed its old peak, which this round never does).
    drop(big);
    let mut live: Vec<Box<[u8]>> = small.into_iter().flatten().chain(again).collect();
    let n = live.len();
    for i in (1..n).rev() {
        live.swap(i, rng.below(i + 1));
    }
    live.truncate(n / 10);
    let (big, purged, grown) = refill_big(2, 3);
    assert!(
        purged >= small_bytes / 8,
        "round 2: only {purged} bytes of sparse pools given back (of {small_bytes})"
    );
    assert!(
        grown <= BIG_BYTES / 2,
        "round 2: RSS grew {grown} bytes for {BIG_BYTES} of new blocks, {purged} purged"
    );
    for b in &live {
        let x = b[0];
        assert!(
            b.iter().all(|&y| y == x),
            "a small block changed in round 2"
        );
    }
    for (i, b) in big.iter().enumerate() {
        assert!(
            b.iter().all(|&x| x == fill(i + 3)),
            "round 2: big block {i} changed"
        );
    }
}
