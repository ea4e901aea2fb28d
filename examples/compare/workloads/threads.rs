//! (g) threads: thousands of short-lived threads, each allocating a few
//! hundred blocks and handing a few to the main thread, which keeps them.

use super::{Extra, Rng, Scale};
use std::sync::mpsc;

/// The workload; returns its checksum.
pub fn run(scale: Scale, _extra: &mut Extra) -> u64 {
    let threads = scale.pick(4_000, 300);
    const ALIVE: usize = 4;
    const BLOCKS: usize = 300;
    const KEPT: usize = 4;
    let (tx, rx) = mpsc::channel::<Vec<Box<[u8]>>>();
    let mut kept: Vec<Box<[u8]>> = Vec::new();
    let mut sum = 0u64;
    let mut started = 0;
    while started < threads {
        let batch: Vec<_> = (started..(started + ALIVE).min(threads))
            .map(|t| {
                let tx = tx.clone();
                std::thread::spawn(move || {
                    let mut rng = Rng::new_spread(0x7e4d ^ t as u64);
                    let mut sum = 0u64;
                    let mut blocks: Vec<Box<[u8]>> = (0..BLOCKS)
                        .map(|i| {
                            let size = rng.range(64, 4096);
                            vec![(i % 251) as u8; size].into_boxed_slice()
                        })
                        .collect();
                    let give: Vec<Box<[u8]>> = (0..KEPT)
                        .map(|_| blocks.swap_remove(rng.below(blocks.len())))
                        .collect();
                    for b in blocks {
                        sum = sum.wrapping_add(b.len() as u64 + b[b.len() - 1] as u64);
                    }
                    tx.send(give).expect("main thread receives");
                    sum
                })
            })
            .collect();
        started += batch.len();
        for h in batch {
            sum = sum.wrapping_add(h.join().expect("worker thread"));
        }
        kept.extend(rx.try_iter().flatten());
    }
    drop(tx);
    kept.extend(rx.iter().flatten());
    for b in &kept {
        sum = sum.wrapping_add(b.len() as u64 * 3 + b[0] as u64);
    }
    sum
}
