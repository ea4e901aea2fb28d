//! Under `ulimit -v 4194304` (`RLIMIT_AS` of 4 GiB) the global allocator
//! works: nothing reserves large address ranges up front (the segment map
//! maps its 128 KiB leaves lazily, the heaps map 4 MiB segments as needed).
//! A child process lowers its limit before its allocation-heavy work, checks
//! that the limit bites (a 5 GiB reservation fails cleanly), then runs a
//! churn over many segments: threads allocate blocks of 16 B to 4 KiB, free
//! them in random order (the free path's segment-map check on every one),
//! hand some to the main thread, and exit while others start.

use std::sync::mpsc;

#[global_allocator]
static GLOBAL: flistalloc::Flist = flistalloc::Flist::new();

mod common;
use common::{child_ok_echo, is_child, Rng, DONE};

/// The address-space limit, as `ulimit -v 4194304` sets it (KiB there).
const LIMIT: u64 = 4194304 * 1024;
/// Worker threads in all, and at most this many alive at once.
const THREADS: usize = 32;
const ALIVE: usize = 4;
/// Bytes each worker holds at its peak before it frees in random order.
const PER_THREAD: usize = 32 << 20;

fn set_address_space_limit() {
    // SAFETY: getrlimit/setrlimit read and write the struct we pass.
    unsafe {
        let mut r: libc::rlimit = std::mem::zeroed();
        assert_eq!(libc::getrlimit(libc::RLIMIT_AS, &mut r), 0);
        r.rlim_cur = LIMIT;
        if r.rlim_max != libc::RLIM_INFINITY && r.rlim_max < LIMIT {
            r.rlim_cur = r.rlim_max;
        }
        assert_eq!(libc::setrlimit(libc::RLIMIT_AS, &r), 0);
        assert_eq!(libc::getrlimit(libc::RLIMIT_AS, &mut r), 0);
        assert!(r.rlim_cur <= LIMIT);
    }
}

/// One worker: fills `PER_THREAD` bytes of blocks (each tagged), frees them
/// in random order except every 64th, which goes to the main thread, and
/// then refills a quarter with other sizes and frees that too.
fn worker(n: usize, to_main: mpsc::Sender<Vec<Vec<u8>>>) -> u64 {
    let mut rng = Rng::new(0x5eed ^ (n as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let mut blocks: Vec<Vec<u8>> = Vec::new();
    let mut bytes = 0;
    while bytes < PER_THREAD {
        let size = 16 + rng.below(4096 - 16 + 1);
        blocks.push(vec![size as u8; size]);
        bytes += size;
    }
    let mut handed = Vec::new();
    let mut sum = 0u64;
    for round in 0..2 {
        // Fisher-Yates, then free in that order.
        for i in (1..blocks.len()).rev() {
            blocks.swap(i, rng.below(i + 1));
        }
        for (i, b) in blocks.drain(..).enumerate() {
            assert_eq!(b[b.len() - 1], b.len() as u8, "block corrupted");
            sum += b.len() as u64;
            if round == 0 && i % 64 == 0 {
                handed.push(b);
            }
        }
        if round == 0 {
            let mut refill = 0;
            while refill < PER_THREAD / 4 {
                let size = 24 + rng.below(2000);
                blocks.push(vec![size as u8; size]);
                refill += size;
            }
        }
    }
    to_main.send(handed).unwrap();
    sum
}

#[test]
fn churn_under_a_4_gib_address_space_limit() {
    if !is_child() {
        child_ok_echo("churn_under_a_4_gib_address_space_limit", &[], "ulimit:");
        return;
    }
    set_address_space_limit();
    // The limit bites: 5 GiB cannot be reserved (a clean failure, no abort).
    let mut big: Vec<u8> = Vec::new();
    assert!(
        big.try_reserve_exact(5 << 30).is_err(),
        "RLIMIT_AS not in effect"
    );

    let (tx, rx) = mpsc::channel::<Vec<Vec<u8>>>();
    let mut alive = std::collections::VecDeque::new();
    let mut held: Vec<Vec<u8>> = Vec::new();
    let mut total = 0u64;
    for n in 0..THREADS {
        if alive.len() == ALIVE {
            let h: std::thread::JoinHandle<u64> = alive.pop_front().unwrap();
            total += h.join().unwrap();
        }
        let tx = tx.clone();
        alive.push_back(std::thread::spawn(move || worker(n, tx)));
        // The main thread frees what it was handed a while ago: remote
        // frees, many into segments of threads that have exited.
        while let Ok(batch) = rx.try_recv() {
            held.extend(batch);
        }
        if held.len() > 20_000 {
            held.drain(..10_000);
        }
    }
    for h in alive {
        total += h.join().unwrap();
    }
    drop(tx);
    for batch in rx {
        held.extend(batch);
    }
    for b in &held {
        assert_eq!(b[0], b.len() as u8);
    }
    drop(held);
    let s = flistalloc::stats();
    eprintln!(
        "ulimit: {THREADS} threads, {} MiB checked, {} MiB mapped at the end",
        total >> 20,
        s.mapped >> 20
    );
    assert!(total > 0);
    eprintln!("{DONE}");
}
