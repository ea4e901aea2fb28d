//! Warm idle heaps: a thread's heap keeps its memory when the thread exits,
//! and the next new thread inherits it, so thread churn does not fault the
//! same pages in again. Counted in minor page faults of each thread
//! (`getrusage(RUSAGE_THREAD)`), not in time. And memory another thread
//! frees into an idle heap is given back without waiting for the heap's
//! next thread. Each test runs in a child process, so no other test's
//! thread takes the idle heap in between.

#[global_allocator]
static GLOBAL: flistalloc::Flist = flistalloc::Flist::new();

mod common;
use common::{child_ok_echo, is_child, Rng, DONE};

/// Bytes each thread allocates (then frees).
const BYTES: usize = 4 << 20;

/// This thread's minor page faults so far.
fn minor_faults() -> i64 {
    // SAFETY: getrusage writes the struct we pass, nothing else.
    unsafe {
        let mut u: libc::rusage = std::mem::zeroed();
        assert_eq!(libc::getrusage(libc::RUSAGE_THREAD, &mut u), 0);
        u.ru_minflt
    }
}

/// Allocates about `BYTES` of blocks of 64..=4096 bytes (each written), frees
/// them all, and returns the minor faults it took.
fn churn() -> i64 {
    let mut blocks: Vec<Vec<u8>> = Vec::with_capacity(BYTES / 64);
    let f0 = minor_faults();
    let mut rng = Rng::new(0x1d1e);
    let mut total = 0;
    while total < BYTES {
        let size = 64 + rng.below(4096 - 64 + 1);
        blocks.push(vec![size as u8; size]);
        total += size;
    }
    drop(blocks);
    minor_faults() - f0
}

#[test]
fn next_thread_inherits_a_warm_heap() {
    if is_child() {
        let first = std::thread::spawn(churn).join().unwrap();
        let second = std::thread::spawn(churn).join().unwrap();
        eprintln!("minor faults: first thread {first}, second thread {second}");
        assert!(
            second * 4 < first,
            "the second thread faulted {second} times, the first {first}: no warm heap"
        );
        eprintln!("{DONE}");
        return;
    }
    // An hour's purge delay: the warm reserve must not be decommitted by
    // time if the machine stalls between the two threads. A reserve that
    // holds the churn's pools (the default is 2 MiB): what is checked is
    // that the heap, reserve included, goes to the next thread warm.
    child_ok_echo(
        "next_thread_inherits_a_warm_heap",
        &[
            ("FLISTALLOC_PURGE_DELAY", "3600000"),
            ("FLISTALLOC_RESERVE_BYTES", "8M"),
        ],
        "minor faults",
    );
}

/// Blocks of 1 KiB a thread makes and hands over before it exits.
const HANDED: usize = 8 << 20;

#[test]
fn frees_into_an_idle_heap_are_collected_without_its_next_thread() {
    if is_child() {
        let blocks: Vec<Box<[u8; 1024]>> = std::thread::spawn(|| {
            (0..HANDED / 1024)
                .map(|i| Box::new([i as u8; 1024]))
                .collect()
        })
        .join()
        .unwrap();
        // The maker's heap is idle now, holding every block's pool.
        let held = flistalloc::stats().flist_pool_bytes;
        assert!(held >= HANDED, "pools hold {held} bytes for {HANDED} live");
        for (i, b) in blocks.into_iter().enumerate() {
            assert_eq!(b[1023], i as u8);
        }
        // No thread attached to the idle heap since: its queue was
        // collected by the frees that queued its pools, and its emptied
        // pools went back beyond the reserve it had when it went idle.
        let s = flistalloc::stats();
        eprintln!(
            "idle heap: pools {:.1} MiB with {} MiB live, {:.1} MiB after the main thread freed them; {s:?}",
            held as f64 / (1 << 20) as f64,
            HANDED >> 20,
            s.flist_pool_bytes as f64 / (1 << 20) as f64,
        );
        assert!(
            s.flist_pool_bytes < HANDED / 4,
            "{} bytes of pools still held after everything was freed",
            s.flist_pool_bytes
        );
        eprintln!("{DONE}");
        return;
    }
    child_ok_echo(
        "frees_into_an_idle_heap_are_collected_without_its_next_thread",
        &[("FLISTALLOC_PURGE_DELAY", "3600000")],
        "idle heap",
    );
}
