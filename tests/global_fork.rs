//! A child forked while other threads allocate can allocate and free: no
//! allocator lock may be left held across `fork`. Forks many times while
//! three threads allocate and free (small and large blocks, cross-thread
//! frees, short-lived threads); each child allocates and frees (Vec, String,
//! HashMap, a large block, a thread of its own) and exits 0 within a timeout.
//!
//! One test in this file: forking from a multi-threaded test harness is
//! exactly what is under test, but other tests' threads would only add noise.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

#[global_allocator]
static GLOBAL: flistalloc::Flist = flistalloc::Flist::new();

mod common;
use common::Rng;

const FORKS: usize = if cfg!(debug_assertions) { 20 } else { 50 };
const TIMEOUT: Duration = Duration::from_secs(10);

/// What the forked child does. Returns normally only if every check held.
fn child_work(inherited: Vec<Vec<u8>>) {
    let mut v: Vec<u64> = Vec::new();
    for i in 0..100_000 {
        v.push(i);
    }
    assert_eq!(v.iter().sum::<u64>(), 4_999_950_000);
    let s: String = (0..10_000)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    assert_eq!(s.len(), 10_000);
    let mut m: HashMap<String, Vec<u8>> = HashMap::new();
    for i in 0..10_000usize {
        m.insert(format!("k{i}"), vec![i as u8; i % 300]);
    }
    for i in (0..10_000usize).step_by(2) {
        assert_eq!(m.remove(&format!("k{i}")).expect("present").len(), i % 300);
    }
    let big = vec![3u8; 4 << 20];
    assert_eq!(big[(4 << 20) - 1], 3);
    drop((v, s, m, big));
    // Blocks made before the fork, some by threads that do not exist in
    // the child, are still readable and can be freed.
    for b in inherited {
        assert!(b.iter().all(|&x| x == b[0]));
        drop(b);
    }
    // A thread of its own: a new heap, its exit and its abandoned pools.
    let h = std::thread::spawn(|| {
        let v: Vec<Box<u64>> = (0..10_000).map(Box::new).collect();
        v.into_iter().map(|b| *b).sum::<u64>()
    });
    assert_eq!(h.join().expect("child thread"), 49_995_000);
}

/// Waits for `pid` for at most `TIMEOUT`, polling; kills it on timeout.
/// Returns its wait status, or `None` on timeout.
fn wait_with_timeout(pid: libc::pid_t) -> Option<libc::c_int> {
    let start = Instant::now();
    loop {
        let mut status = 0;
        // SAFETY: waitpid on our own child, with a valid status pointer.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if r == pid {
            return Some(status);
        }
        assert_eq!(r, 0, "waitpid failed");
        if start.elapsed() > TIMEOUT {
            // SAFETY: kill and reap our own child, which has not been reaped.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, &mut status, 0);
            }
            return None;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn forked_child_can_allocate_while_threads_allocate() {
    let stop = Arc::new(AtomicBool::new(false));
    let ops = Arc::new(AtomicU64::new(0));
    let (tx, rx) = mpsc::sync_channel::<Vec<u8>>(1000);
    let mut threads = Vec::new();
    for t in 0..3u64 {
        let (stop, ops, tx) = (stop.clone(), ops.clone(), tx.clone());
        threads.push(std::thread::spawn(move || {
            let mut rng = Rng::new(0x5851_f42d_4c95_7f2d ^ (t + 1));
            let mut live: Vec<Vec<u8>> = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let r = rng.next_u64();
                let size = if r.is_multiple_of(256) {
                    (r >> 8) as usize % (1 << 20)
                } else {
                    (r >> 8) as usize % 1024
                } + 1;
                let v = vec![(r >> 32) as u8; size];
                if r.is_multiple_of(5) {
                    // Freed by the main thread: cross-thread frees (or here,
                    // when the channel is full).
                    let _ = tx.try_send(v);
                } else {
                    live.push(v);
                }
                if live.len() > 2000 {
                    let b = live.swap_remove((r >> 16) as usize % live.len());
                    assert!(b.iter().all(|&x| x == b[0]));
                }
                // One thread also starts short-lived threads, so forks land
                // while heaps are made, abandoned and reused too.
                if t == 2 && r.is_multiple_of(2000) {
                    let keep: Vec<Vec<u8>> = live.drain(..live.len() / 2).collect();
                    std::thread::spawn(move || {
                        let fresh: Vec<Box<[u8; 48]>> =
                            (0..500).map(|_| Box::new([1; 48])).collect();
                        drop(keep);
                        fresh.len()
                    })
                    .join()
                    .expect("short-lived thread");
                }
                ops.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    drop(tx);

    let mut inherited: Vec<Vec<u8>> = Vec::new();
    let mut failures = Vec::new();
    let start = Instant::now();
    for i in 0..FORKS {
        // Let the threads run, and free what they sent.
        let until = Instant::now() + Duration::from_millis(20);
        while Instant::now() < until {
            while let Ok(v) = rx.try_recv() {
                if inherited.len() < 100 {
                    inherited.push(v);
                }
            }
            std::thread::yield_now();
        }
        // SAFETY: fork has no preconditions. In the child only this thread
        // exists; it runs code that allocates, which is what is under test,
        // and leaves with _exit, running no exit handlers or destructors.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            let mine = std::mem::take(&mut inherited);
            let ok = std::panic::catch_unwind(|| child_work(mine)).is_ok();
            // SAFETY: _exit ends the child at once; nothing after it runs.
            unsafe { libc::_exit(if ok { 0 } else { 1 }) };
        }
        match wait_with_timeout(pid) {
            None => failures.push(format!("fork {i}: child hung, killed after {TIMEOUT:?}")),
            Some(st) if libc::WIFEXITED(st) && libc::WEXITSTATUS(st) == 0 => {}
            Some(st) if libc::WIFEXITED(st) => {
                failures.push(format!("fork {i}: child exit {}", libc::WEXITSTATUS(st)))
            }
            Some(st) => failures.push(format!("fork {i}: child signal {}", libc::WTERMSIG(st))),
        }
        if failures.len() >= 3 {
            break;
        }
    }
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().expect("allocating thread");
    }
    eprintln!(
        "{FORKS} forks in {:.1} s while 3 threads made {} allocations",
        start.elapsed().as_secs_f64(),
        ops.load(Ordering::Relaxed)
    );
    assert!(failures.is_empty(), "{failures:#?}");
}
