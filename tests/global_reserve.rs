//! The empty-pool reserve of a thread heap stays within its documented bound
//! (2 MiB and 512 pools per thread by default) after every free, whatever the order of
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
const RESERVE_BOUND: usize = 2 * MIB;
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

/// A pool emptied by one slab is re-cut for another (its warm pages are
/// reused before new ones are mapped), and `alloc_zeroed` still returns
/// zeroed memory from it: the re-cut pool's fresh chunks hold the old
/// slab's bytes.
#[test]
fn alloc_zeroed_after_a_pool_is_reused_by_another_slab() {
    if is_child() {
        use std::alloc::alloc_zeroed;
        // 1000-byte blocks over many pools, every byte written, all freed:
        // the pools but one go to the reserve, dirty.
        let a: Vec<Block> = (0..4000).map(|_| allocate(1000)).collect();
        for Block(p, layout) in a {
            // SAFETY: allocated above with this layout, freed once.
            unsafe { dealloc(p, layout) };
        }
        let mapped0 = flistalloc::stats().mapped;
        let pools0 = flistalloc::stats().flist_pool_bytes;
        // Another slab: its pools come from the reserve.
        let layout = Layout::from_size_align(3000, 8).unwrap();
        let mut b = Vec::with_capacity(600);
        for i in 0..600 {
            // SAFETY: a non-zero size.
            let p = unsafe { alloc_zeroed(layout) };
            assert!(!p.is_null());
            // SAFETY: p is a live block of 3000 bytes.
            let bytes = unsafe { std::slice::from_raw_parts(p, 3000) };
            assert!(
                bytes.iter().all(|&x| x == 0),
                "alloc_zeroed block {i} not zero: {:?}",
                &bytes[..16]
            );
            // SAFETY: as above.
            unsafe { p.write_bytes(0x77, 3000) };
            b.push(p);
        }
        let s = flistalloc::stats();
        eprintln!(
            "mapped {mapped0} -> {}, pool bytes {pools0} -> {}",
            s.mapped, s.flist_pool_bytes
        );
        assert_eq!(s.mapped, mapped0, "new segments mapped: no reuse");
        assert_eq!(s.flist_pool_bytes, pools0, "new pools mapped: no reuse");
        for p in b {
            // SAFETY: allocated above with `layout`.
            unsafe { dealloc(p, layout) };
        }
        eprintln!("{DONE}");
        return;
    }
    // A reserve that holds the 4 MB of 1000-byte pools (the default is
    // 2 MiB): what is checked is reuse across slabs, not the bound.
    child_ok(
        "alloc_zeroed_after_a_pool_is_reused_by_another_slab",
        &[("FLISTALLOC_RESERVE_BYTES", "8M")],
    );
}
