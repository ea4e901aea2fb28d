//! The empty-pool reserve of a thread heap stays within its documented bound
//! (8 MiB and 512 pools per thread) after every free, whatever the order of
//! frees and sizes. RSS is process-wide, so each order runs in a child
//! process (this test binary re-run).
//!
//! The case replays a report: one small object in each slab up to 12 KiB,
//! then 200 buffers of 200 KiB written in full, then everything freed. Before
//! the fix the release step gave back one pool per pool queued, so once the
//! oldest queued pools were smaller than the new ones about 40 MiB stayed
//! queued (RSS about +32 MiB).

use std::alloc::{alloc, dealloc, Layout};

#[global_allocator]
static GLOBAL: flistalloc::Flist = flistalloc::Flist::new();

mod common;
use common::{child_ok, is_child, rss, Rng, DONE};

const MIB: usize = 1 << 20;
/// The documented per-thread reserve bound.
const RESERVE_BOUND: usize = 8 * MIB;
/// RSS growth allowed at the end: the reserve plus segment headers and the
/// few pages the test itself keeps.
const RSS_BOUND: usize = RESERVE_BOUND + 4 * MIB;

const BUFFERS: usize = 200;
const BUFFER_BYTES: usize = 200 << 10;

#[derive(Clone, Copy)]
enum Order {
    SmallThenBuffers,
    BuffersThenSmall,
    Interleaved,
    Reverse,
    Random,
}

fn order_from_env() -> Order {
    match std::env::var("RESERVE_ORDER").as_deref() {
        Ok("small-then-buffers") => Order::SmallThenBuffers,
        Ok("buffers-then-small") => Order::BuffersThenSmall,
        Ok("interleaved") => Order::Interleaved,
        Ok("reverse") => Order::Reverse,
        Ok("random") => Order::Random,
        other => panic!("bad RESERVE_ORDER {other:?}"),
    }
}

/// One block: its address and layout.
struct Block(*mut u8, Layout);

fn allocate(size: usize) -> Block {
    let layout = Layout::from_size_align(size, 8).expect("valid layout");
    // SAFETY: the layout has a non-zero size.
    let p = unsafe { alloc(layout) };
    assert!(!p.is_null(), "allocation of {size} bytes failed");
    // Write every byte, so the pages are really resident.
    // SAFETY: p is a fresh block of `size` bytes.
    unsafe { p.write_bytes(0x5a, size) };
    Block(p, layout)
}

fn run_order(order: Order) {
    let reserve0 = flistalloc::stats().reserve_bytes;
    let rss0 = rss();
    let small: Vec<Block> = flistalloc::slabs()
        .iter()
        .take_while(|&&s| s <= 12 << 10)
        .map(|&s| allocate(s))
        .collect();
    let buffers: Vec<Block> = (0..BUFFERS).map(|_| allocate(BUFFER_BYTES)).collect();
    let mut frees: Vec<Block> = match order {
        Order::SmallThenBuffers => small.into_iter().chain(buffers).collect(),
        Order::BuffersThenSmall => buffers.into_iter().chain(small).collect(),
        Order::Interleaved => {
            let mut out = Vec::new();
            let (mut s, mut b) = (small.into_iter(), buffers.into_iter());
            loop {
                match (s.next(), b.next()) {
                    (None, None) => break,
                    (x, y) => out.extend(x.into_iter().chain(y)),
                }
            }
            out
        }
        Order::Reverse => small.into_iter().chain(buffers).rev().collect(),
        Order::Random => {
            let mut all: Vec<Block> = small.into_iter().chain(buffers).collect();
            let mut rng = Rng::new(0x5eed);
            for i in (1..all.len()).rev() {
                all.swap(i, rng.below(i + 1));
            }
            all
        }
    };
    let mut worst = 0;
    for (i, Block(p, layout)) in frees.drain(..).enumerate() {
        // SAFETY: allocated above with this layout, freed once.
        unsafe { dealloc(p, layout) };
        let held = flistalloc::stats().reserve_bytes.saturating_sub(reserve0);
        worst = worst.max(held);
        assert!(
            held <= RESERVE_BOUND,
            "after free {i} ({} bytes): {held} bytes in the empty-pool reserve, bound {RESERVE_BOUND}",
            layout.size()
        );
    }
    let grown = rss().saturating_sub(rss0);
    eprintln!(
        "reserve at most {:.2} MiB over the frees; RSS +{:.2} MiB at the end",
        worst as f64 / MIB as f64,
        grown as f64 / MIB as f64
    );
    assert!(
        grown <= RSS_BOUND,
        "RSS grew by {grown} bytes after everything was freed, bound {RSS_BOUND}"
    );
}

#[test]
fn reserve_bound_holds_after_every_free() {
    if is_child() {
        run_order(order_from_env());
        eprintln!("{DONE}");
        return;
    }
    for order in [
        "small-then-buffers",
        "buffers-then-small",
        "interleaved",
        "reverse",
        "random",
    ] {
        let out = child_ok(
            "reserve_bound_holds_after_every_free",
            &[("RESERVE_ORDER", order)],
        );
        let line = out.lines().find(|l| l.starts_with("reserve at most"));
        eprintln!("{order}: {}", line.unwrap_or("?"));
    }
}
