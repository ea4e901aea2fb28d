//! Warm idle heaps: a thread's heap keeps its memory when the thread exits,
//! and the next new thread inherits it, so thread churn does not fault the
//! same pages in again. Counted in minor page faults of each thread
//! (`getrusage(RUSAGE_THREAD)`), not in time. Runs in a child process, so
//! no other test's thread takes the idle heap in between.

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
    // time if the machine stalls between the two threads.
    child_ok_echo(
        "next_thread_inherits_a_warm_heap",
        &[("FLISTALLOC_PURGE_DELAY", "3600000")],
        "minor faults",
    );
}
