//! Memory freed by another thread goes back while its owner runs (issue 10,
//! the "remote-free RSS" fault, replayed from other allocators' reports).
//!
//! Thread A allocates about 300 MiB of 1 KiB blocks and hands them all to
//! thread B, which frees them; A then keeps running with a few small batches
//! of other sizes, enough to take its allocation slow path. Before the
//! remote-free queue, A collected remote frees only when a slab ran out of
//! pools with room, and handed the pools emptied that way back 64 at a time:
//! RSS stayed about 300 MiB above the start until A exited. Now its slow
//! path collects the pools B's frees queued, and pools left empty fall under
//! the reserve bound at once. RSS is process-wide, so this file holds one
//! test.

use std::sync::mpsc;
use std::thread;

#[global_allocator]
static GLOBAL: flistalloc::Flist = flistalloc::Flist::new();

mod common;
use common::rss;

const MIB: usize = 1 << 20;
/// Bytes of 1 KiB blocks A hands to B.
const BIG: usize = 300 * MIB;
/// The documented per-thread reserve bound (`config.rs`).
const RESERVE_BOUND: usize = 2 * MIB;
/// What A's RSS may end above its start: the reserve plus slack for segment
/// headers, the channels and the test harness.
const RSS_BOUND: usize = RESERVE_BOUND + 16 * MIB;

type Block = Box<[u8; 1024]>;

#[test]
fn remote_frees_give_memory_back_while_the_owner_runs() {
    let (to_b, from_a) = mpsc::channel::<Vec<Block>>();
    let (to_a, from_b) = mpsc::channel::<()>();
    let b = thread::spawn(move || {
        for blocks in from_a {
            drop(blocks);
            to_a.send(()).unwrap();
        }
    });
    let a = thread::spawn(move || {
        // Warm A's own heap and the channel first, so the baseline holds them.
        let warm: Vec<Block> = (0..64).map(|i| Box::new([i as u8; 1024])).collect();
        drop(warm);
        let rss0 = rss();
        let n = BIG / 1024;
        // Several vectors, so no single allocation is huge.
        let all: Vec<Vec<Block>> = (0..4)
            .map(|_| (0..n / 4).map(|i| Box::new([i as u8; 1024])).collect())
            .collect();
        let peak = rss();
        for blocks in all {
            to_b.send(blocks).unwrap();
        }
        for _ in 0..4 {
            from_b.recv().unwrap();
        }
        drop(to_b);
        // A keeps running: small batches of other sizes, each enough to
        // open a new pool (so A passes its allocation slow path).
        let mut kept = 0usize;
        for size in [24usize, 48, 96, 200, 400, 3000] {
            for _ in 0..3 {
                let batch: Vec<Vec<u8>> = (0..256).map(|i| vec![i as u8; size]).collect();
                kept = kept.wrapping_add(batch.iter().map(|v| v[0] as usize).sum::<usize>());
            }
        }
        let end = rss();
        (rss0, peak, end, kept)
    });
    let (rss0, peak, end, _) = a.join().unwrap();
    b.join().unwrap();
    let mib = |x: usize| x as f64 / MIB as f64;
    eprintln!(
        "RSS: {:.1} MiB at the start, {:.1} MiB with the blocks live, {:.1} MiB at the end (+{:.1} MiB, bound {:.1})",
        mib(rss0),
        mib(peak),
        mib(end),
        mib(end.saturating_sub(rss0)),
        mib(RSS_BOUND)
    );
    assert!(
        peak >= rss0 + BIG / 2,
        "the blocks were not resident: RSS {rss0} -> {peak}"
    );
    assert!(
        end <= rss0 + RSS_BOUND,
        "A's RSS stayed {} MiB above its start after B freed its blocks (bound {} MiB)",
        mib(end - rss0),
        mib(RSS_BOUND)
    );
}
