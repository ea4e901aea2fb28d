//! Std collections under load on the flist global allocator, 8 threads with
//! cross-thread frees and content checksums.

use std::collections::{BTreeMap, HashMap};
use std::sync::mpsc;

#[global_allocator]
static GLOBAL: flistalloc::Flist = flistalloc::Flist::new();

mod common;
use common::Rng;

#[test]
fn collections_work() {
    assert_eq!(flistalloc::backend(), flistalloc::Backend::Flist);
    let mut m = HashMap::new();
    let mut b = BTreeMap::new();
    for i in 0..200_000u64 {
        m.insert(i, format!("value-{i}"));
        b.insert(format!("k{i:08}"), vec![i as u8; (i % 300) as usize]);
    }
    let sum: usize = m.values().map(|s| s.len()).sum();
    assert!(sum > 0);
    for i in (0..200_000u64).step_by(2) {
        m.remove(&i);
        b.remove(&format!("k{i:08}"));
    }
    assert_eq!(m.len(), 100_000);
    for (k, v) in &b {
        let i: u64 = k[1..].parse().unwrap();
        assert_eq!(v.len(), (i % 300) as usize);
        assert!(v.iter().all(|&x| x == i as u8));
    }
    let big = vec![7u8; 10 << 20];
    assert_eq!(big.iter().map(|&x| x as usize).sum::<usize>(), 70 << 20);
    let z = vec![0u64; 100_000];
    assert!(z.iter().all(|&x| x == 0));
}

#[test]
fn eight_threads_cross_thread_frees_keep_contents() {
    let ops: usize = if cfg!(debug_assertions) {
        100_000
    } else {
        1_000_000
    };
    let (txs, rxs): (Vec<_>, Vec<_>) = (0..8).map(|_| mpsc::channel::<Vec<u8>>()).unzip();
    let handles: Vec<_> = rxs
        .into_iter()
        .enumerate()
        .map(|(t, rx)| {
            let next = txs[(t + 1) % 8].clone();
            std::thread::spawn(move || {
                let mut rng = Rng::new(0x1234_5678_9abc_def1 ^ (t as u64 * 0x9e37_79b9));
                let mut live: Vec<Vec<u8>> = Vec::new();
                let mut checked = 0u64;
                for i in 0..ops {
                    let r = rng.next_u64();
                    let size = match r % 1000 {
                        0..=799 => (r >> 8) as usize % 256,
                        800..=997 => (r >> 8) as usize % 8192,
                        _ => (r >> 8) as usize % (1 << 20),
                    };
                    let fill = (r >> 40) as u8;
                    let mut v = vec![fill; size + 1];
                    v[0] = fill;
                    if i % 3 == 0 {
                        let _ = next.send(v);
                    } else {
                        live.push(v);
                    }
                    if live.len() > 1000 {
                        let idx = (r >> 20) as usize % live.len();
                        let v = live.swap_remove(idx);
                        assert!(v.iter().all(|&x| x == v[0]));
                        checked += 1;
                    }
                    while let Ok(v) = rx.try_recv() {
                        assert!(
                            v.iter().all(|&x| x == v[0]),
                            "content corrupted across threads"
                        );
                        checked += 1;
                    }
                }
                for v in live {
                    assert!(v.iter().all(|&x| x == v[0]));
                }
                checked
            })
        })
        .collect();
    drop(txs);
    let total: u64 = handles.into_iter().map(|h| h.join().unwrap()).sum();
    assert!(total > 0);
    let s = flistalloc::stats();
    assert!(s.mapped > 0);
}
