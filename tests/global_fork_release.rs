//! A `fork` child gives back the empty pools that the parent's other
//! threads kept for reuse: those threads do not exist in the child. A
//! thread allocates and frees about 6 MiB of small blocks (its reserve keeps
//! the empty pools, warm: the purge delay is an hour) and waits, alive; the
//! main thread forks; the child's RSS must be below the parent's by most of
//! that reserve, and the child can still allocate, free and start a thread,
//! then exits 0.
//!
//! RSS is process-wide and the test forks, so this file holds this one test
//! only (its body runs in a child process with its own settings).

use std::sync::mpsc;

#[global_allocator]
static GLOBAL: flistalloc::Flist = flistalloc::Flist::new();

mod common;
use common::{child_ok_echo, is_child, rss, DONE};

/// Bytes the parked thread allocates and frees.
const CHURN: usize = 6 << 20;

fn parent_side() {
    let (ready_tx, ready_rx) = mpsc::channel::<()>();
    let (stop_tx, stop_rx) = mpsc::channel::<()>();
    let parked = std::thread::spawn(move || {
        let blocks: Vec<Box<[u8; 256]>> =
            (0..CHURN / 256).map(|i| Box::new([i as u8; 256])).collect();
        assert!(blocks.iter().enumerate().all(|(i, b)| b[255] == i as u8));
        drop(blocks);
        ready_tx.send(()).expect("main waits");
        let _ = stop_rx.recv();
    });
    ready_rx.recv().expect("parked thread ready");
    let reserve = flistalloc::stats().reserve_bytes;
    assert!(
        reserve >= CHURN / 2,
        "the parked thread's reserve holds only {reserve} bytes"
    );
    let parent_rss = rss();
    let threads_before = flistalloc::stats().threads;

    // SAFETY: fork has no preconditions; the child runs allocating code
    // (under test) and leaves with _exit, running no destructors.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        let child_rss = rss();
        let s = flistalloc::stats();
        // The parent's threads (the parked one) do not exist here.
        let ok_threads = s.threads < threads_before;
        // Most of the reserve was decommitted: not resident in the child.
        let ok_rss = child_rss + reserve / 2 < parent_rss;
        // The child still allocates and frees, in a thread of its own too.
        let v: Vec<u64> = (0..100_000).collect();
        let sum = std::thread::spawn(|| (0..10_000u64).map(Box::new).map(|b| *b).sum::<u64>())
            .join()
            .expect("child's thread");
        let ok_work = v.iter().sum::<u64>() == 4_999_950_000 && sum == 49_995_000;
        drop(v);
        eprintln!(
            "fork child: parent RSS {:.1} MiB, child RSS {:.1} MiB, reserve {:.1} MiB; threads {} -> {}",
            parent_rss as f64 / (1 << 20) as f64,
            child_rss as f64 / (1 << 20) as f64,
            reserve as f64 / (1 << 20) as f64,
            threads_before,
            s.threads,
        );
        // SAFETY: _exit ends the child at once.
        unsafe {
            libc::_exit(if ok_threads && ok_rss && ok_work {
                0
            } else {
                1
            })
        };
    }
    let mut status = 0;
    // SAFETY: waitpid on our own child with a valid status pointer.
    let r = unsafe { libc::waitpid(pid, &mut status, 0) };
    assert_eq!(r, pid, "waitpid failed");
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "the fork child failed its checks (status {status:#x})"
    );
    stop_tx.send(()).expect("parked thread waits");
    parked.join().expect("parked thread");
}

#[test]
fn fork_child_gives_back_other_threads_reserves() {
    if is_child() {
        parent_side();
        eprintln!("{DONE}");
        return;
    }
    child_ok_echo(
        "fork_child_gives_back_other_threads_reserves",
        // A reserve that holds the 6 MiB churn (the default is 2 MiB).
        &[
            ("FLISTALLOC_PURGE_DELAY", "3600000"),
            ("FLISTALLOC_RESERVE_BYTES", "8M"),
        ],
        "fork child",
    );
}
