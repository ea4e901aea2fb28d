//! Loom models of the global allocator's two cross-thread protocols (see the
//! module docs of `src/global.rs`). Loom atomics cannot live in `const`
//! statics, so the shared structures are built as values inside each model,
//! following the code step for step:
//! * the remote-free list: threads push chunks with a Release CAS and raise
//!   the owner's flag when the list was empty; the owner swaps the whole list
//!   out (Acquire) and must see every chunk exactly once;
//! * abandonment and adoption: ownership goes to and from null only under a
//!   lock; a freeing thread that finds the segment abandoned adopts it, and
//!   exactly one thread ends up owning it.
//!
//! Run: `RUSTFLAGS="--cfg loom" cargo test --release --test loom_remote`
#![cfg(loom)]

use loom::sync::atomic::{AtomicBool, AtomicPtr, AtomicUsize, Ordering};
use loom::sync::{Arc, Mutex};
use loom::thread;
use std::ptr::null_mut;

struct Chunk {
    next: AtomicPtr<Chunk>,
    id: usize,
}

struct Pool {
    remote: AtomicPtr<Chunk>,
    owner_flag: AtomicBool,
}

fn push(pool: &Pool, c: *mut Chunk) {
    let mut old = pool.remote.load(Ordering::Relaxed);
    loop {
        // SAFETY: `c` is a live chunk owned by the pushing thread until the
        // CAS publishes it.
        unsafe { (*c).next.store(old, Ordering::Relaxed) };
        match pool
            .remote
            .compare_exchange_weak(old, c, Ordering::Release, Ordering::Relaxed)
        {
            Ok(_) => break,
            Err(now) => old = now,
        }
    }
    if old.is_null() {
        pool.owner_flag.store(true, Ordering::Release);
    }
}

fn collect(pool: &Pool, seen: &mut Vec<usize>) {
    let mut list = pool.remote.swap(null_mut(), Ordering::Acquire);
    while !list.is_null() {
        // SAFETY: the swap made the list ours; links were published by the
        // Release CAS of each push.
        unsafe {
            seen.push((*list).id);
            list = (*list).next.load(Ordering::Relaxed);
        }
    }
}

#[test]
fn remote_frees_are_collected_exactly_once() {
    loom::model(|| {
        let pool = Arc::new(Pool {
            remote: AtomicPtr::new(null_mut()),
            owner_flag: AtomicBool::new(false),
        });
        let chunks: Vec<usize> = (0..3)
            .map(|id| {
                Box::into_raw(Box::new(Chunk {
                    next: AtomicPtr::new(null_mut()),
                    id,
                })) as usize
            })
            .collect();
        let pushers: Vec<_> = chunks[..2]
            .iter()
            .map(|&c| {
                let pool = pool.clone();
                thread::spawn(move || push(&pool, c as *mut Chunk))
            })
            .collect();
        // The owner collects concurrently, then a third free arrives.
        let mut seen = Vec::new();
        if pool.owner_flag.swap(false, Ordering::Acquire) {
            collect(&pool, &mut seen);
        }
        for p in pushers {
            p.join().unwrap();
        }
        push(&pool, chunks[2] as *mut Chunk);
        collect(&pool, &mut seen);
        seen.sort_unstable();
        assert_eq!(seen, vec![0, 1, 2]);
        for c in chunks {
            // SAFETY: made by Box::into_raw above, collected exactly once.
            drop(unsafe { Box::from_raw(c as *mut Chunk) });
        }
    });
}

/// Segment ownership: 0 = abandoned (in the list), else a heap id.
struct Segment {
    owner: AtomicUsize,
    in_list: Mutex<bool>,
}

fn adopt_if_abandoned(seg: &Segment, me: usize) -> bool {
    if seg.owner.load(Ordering::Acquire) != 0 {
        return false;
    }
    let mut in_list = seg.in_list.lock().unwrap();
    if seg.owner.load(Ordering::Relaxed) == 0 {
        assert!(
            *in_list,
            "an ownerless segment is always in the abandoned list"
        );
        *in_list = false;
        seg.owner.store(me, Ordering::Release);
        true
    } else {
        false
    }
}

#[test]
fn abandoned_segment_is_adopted_by_exactly_one_thread() {
    loom::model(|| {
        let seg = Arc::new(Segment {
            owner: AtomicUsize::new(1),
            in_list: Mutex::new(false),
        });
        let adopters: Vec<_> = [2usize, 3]
            .into_iter()
            .map(|me| {
                let seg = seg.clone();
                thread::spawn(move || adopt_if_abandoned(&seg, me))
            })
            .collect();
        // The owner (heap 1) exits: abandon under the lock.
        {
            let mut in_list = seg.in_list.lock().unwrap();
            seg.owner.store(0, Ordering::Release);
            *in_list = true;
        }
        let wins: usize = adopters
            .into_iter()
            .map(|t| t.join().unwrap() as usize)
            .sum();
        let owner = seg.owner.load(Ordering::Acquire);
        let in_list = *seg.in_list.lock().unwrap();
        assert!(wins <= 1);
        if wins == 1 {
            assert!(owner == 2 || owner == 3);
            assert!(!in_list);
        } else {
            assert_eq!(owner, 0);
            assert!(in_list);
        }
    });
}
