//! Thread churn must not make a server hold memory it no longer uses.
//!
//! 10,000 threads are created over time, at most 8 alive at once. Each
//! allocates about 1 MiB in small objects (16..=512 bytes), frees half itself
//! and hands the other half, in batches, to one long-lived collector thread,
//! which frees them later (most after the thread that made them has exited,
//! so into abandoned segments). At the end everything is freed and, without
//! calling `flistalloc::trim()`, the process RSS must stay below the RSS
//! before the churn + 16 MiB.
//!
//! RSS is process-wide, so this file holds this one test only.

use std::collections::VecDeque;
use std::sync::mpsc;
use std::thread::JoinHandle;

#[global_allocator]
static GLOBAL: flistalloc::Flist = flistalloc::Flist::new();

mod common;
use common::{rss, Rng};

/// Threads created in all: the full 10,000 in every profile (about 9 s in
/// release and 17 s in a debug build on two cores).
const THREADS: usize = 10_000;
/// Most worker threads alive at once.
const ALIVE: usize = 8;
/// Bytes each worker allocates.
const PER_THREAD: usize = 1 << 20;
/// Objects per batch sent to the collector.
const BATCH: usize = 256;
/// Batches the collector holds before it frees the oldest.
const DELAY: usize = 64;
/// The bound on RSS growth.
const SLACK: usize = 16 << 20;

/// An object whose bytes all equal its tag; the check reads both ends.
fn object(size: usize, tag: u8) -> Box<[u8]> {
    vec![tag; size].into_boxed_slice()
}

fn check(o: &[u8]) -> u64 {
    let (first, last) = (o[0], o[o.len() - 1]);
    assert_eq!(first, last, "object of {} bytes corrupted", o.len());
    first as u64 + o.len() as u64
}

fn worker(n: usize, to_collector: mpsc::SyncSender<Vec<Box<[u8]>>>) -> u64 {
    let mut rng = Rng::new(0x9e37_79b9_7f4a_7c15 ^ (n as u64).wrapping_mul(0x2545_f491_4f6c_dd1d));
    let mut mine: Vec<Box<[u8]>> = Vec::new();
    let mut theirs: Vec<Box<[u8]>> = Vec::with_capacity(BATCH);
    let mut bytes = 0;
    let mut sum = 0u64;
    while bytes < PER_THREAD {
        let r = rng.next_u64();
        let size = 16 + (r >> 11) as usize % 497;
        let tag = (r >> 3) as u8;
        bytes += size;
        sum += tag as u64 + size as u64;
        let o = object(size, tag);
        if r & 1 == 0 {
            mine.push(o);
        } else {
            theirs.push(o);
            if theirs.len() == BATCH {
                let full = std::mem::replace(&mut theirs, Vec::with_capacity(BATCH));
                to_collector.send(full).expect("collector alive");
            }
        }
        // Free some of our own half as we go, in random order.
        if mine.len() > 512 && r & 6 == 0 {
            let i = (r >> 20) as usize % mine.len();
            sum -= check(&mine.swap_remove(i));
        }
    }
    while !mine.is_empty() {
        let i = rng.next_u64() as usize % mine.len();
        sum -= check(&mine.swap_remove(i));
    }
    if !theirs.is_empty() {
        to_collector.send(theirs).expect("collector alive");
    }
    sum
}

/// Frees what the workers hand over, `DELAY` batches later. Returns the sum
/// of what it freed.
fn collector(from_workers: mpsc::Receiver<Vec<Box<[u8]>>>) -> u64 {
    let mut held: VecDeque<Vec<Box<[u8]>>> = VecDeque::with_capacity(DELAY + 1);
    let mut sum = 0u64;
    for batch in from_workers {
        held.push_back(batch);
        if held.len() > DELAY {
            for o in held.pop_front().expect("not empty") {
                sum += check(&o);
            }
        }
    }
    for batch in held {
        for o in batch {
            sum += check(&o);
        }
    }
    sum
}

#[test]
fn thread_churn_does_not_grow_rss() {
    assert_eq!(flistalloc::backend(), flistalloc::Backend::Flist);
    let start = std::time::Instant::now();
    let before = rss();
    let before_stats = flistalloc::stats();

    // Bounded, so a collector that falls behind slows the workers down
    // instead of letting a backlog of batches pile up.
    let (tx, rx) = mpsc::sync_channel::<Vec<Box<[u8]>>>(DELAY);
    let (done_tx, done_rx) = mpsc::channel::<u64>();
    let (stop_tx, stop_rx) = mpsc::channel::<()>();
    // The collector stays alive (with everything freed) while RSS is read.
    let collector = std::thread::spawn(move || {
        let sum = collector(rx);
        done_tx.send(sum).expect("main waits");
        let _ = stop_rx.recv();
    });

    let mut alive: VecDeque<JoinHandle<u64>> = VecDeque::with_capacity(ALIVE);
    let mut left = 0u64;
    let mut peak = before;
    for n in 0..THREADS {
        if alive.len() == ALIVE {
            left += alive
                .pop_front()
                .expect("not empty")
                .join()
                .expect("worker");
        }
        let to_collector = tx.clone();
        alive.push_back(std::thread::spawn(move || worker(n, to_collector)));
        if n % 500 == 0 {
            peak = peak.max(rss());
        }
    }
    for h in alive {
        left += h.join().expect("worker");
    }
    drop(tx);
    let collected = done_rx.recv().expect("collector finished");
    // Every object was freed: by its thread (subtracted from its sum) or by
    // the collector (the rest).
    assert_eq!(left, collected, "objects lost or corrupted");

    let after = rss();
    let s = flistalloc::stats();
    let growth = after as isize - before as isize;
    eprintln!(
        "thread churn: {THREADS} threads x {} KiB, at most {ALIVE} alive, {:.1} s: \
         RSS before {:.1} MiB, peak seen {:.1} MiB, after (collector alive, no trim) \
         {:.1} MiB, growth {:+.2} MiB (bound {} MiB)",
        PER_THREAD >> 10,
        start.elapsed().as_secs_f64(),
        before as f64 / (1 << 20) as f64,
        peak.max(after) as f64 / (1 << 20) as f64,
        after as f64 / (1 << 20) as f64,
        growth as f64 / (1 << 20) as f64,
        SLACK >> 20,
    );
    eprintln!("stats before: {before_stats:?}");
    eprintln!("stats after:  {s:?}");

    stop_tx.send(()).expect("collector waits");
    collector.join().expect("collector");
    let joined = rss();
    eprintln!(
        "after the collector exited: RSS {:.1} MiB, growth {:+.2} MiB; {:?}",
        joined as f64 / (1 << 20) as f64,
        (joined as isize - before as isize) as f64 / (1 << 20) as f64,
        flistalloc::stats(),
    );

    assert!(
        after < before + SLACK,
        "RSS grew by {growth} bytes (bound {SLACK}); stats {s:?}"
    );
    assert!(
        joined < before + SLACK,
        "RSS after the collector exited grew by {} bytes (bound {SLACK})",
        joined as isize - before as isize
    );
}
