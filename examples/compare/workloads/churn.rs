//! (e) churn: short-lived threads that leave objects behind.

use super::{sentence, Extra, Rng, Scale};
use std::sync::Mutex;
use support::checksum::{fnv, sample_hash};

enum Leftover {
    Bytes(Box<[u8]>),
    Text(String),
    Words(Vec<u64>),
}

impl Leftover {
    fn make(rng: &mut Rng, id: u64) -> Leftover {
        match rng.below(10) {
            0..=4 => {
                let n = if rng.pct(2) {
                    rng.range(4 << 10, 64 << 10)
                } else {
                    rng.range(8, 512)
                };
                let mut b = vec![id as u8; n].into_boxed_slice();
                b[n - 1] = (id >> 8) as u8;
                Leftover::Bytes(b)
            }
            5..=7 => Leftover::Text(format!("{id}:{}", sentence(rng, 1, 6))),
            _ => Leftover::Words((0..rng.range(1, 40) as u64).map(|k| id ^ k).collect()),
        }
    }

    /// Consumes the object: its digest, then it is freed (here, by whichever
    /// thread holds it).
    fn finish(self) -> u64 {
        match self {
            Leftover::Bytes(b) => sample_hash(&b),
            Leftover::Text(s) => fnv(s.as_bytes()),
            Leftover::Words(w) => w.iter().fold(w.len() as u64, |a, &x| a.wrapping_add(x)),
        }
    }
}

/// The workload; returns its checksum.
pub fn run(scale: Scale, _: &mut Extra) -> u64 {
    const AT_ONCE: usize = 4;
    const OBJECTS: usize = 1_200;
    let threads = scale.pick(4_000, 300);
    let shared: Mutex<Vec<Leftover>> = Mutex::new(Vec::new());
    let mut sum = 0u64;
    for wave in 0..threads / AT_ONCE {
        let wave_sum = std::thread::scope(|s| {
            let handles: Vec<_> = (0..AT_ONCE)
                .map(|k| {
                    let shared = &shared;
                    s.spawn(move || {
                        let id = (wave * AT_ONCE + k) as u64;
                        let mut rng = Rng::new_spread(id ^ 0xc4c4);
                        let mut sum = 0u64;
                        // Free what earlier (now gone) threads left behind.
                        let inherited: Vec<Leftover> = {
                            let mut list = shared.lock().expect("leftovers");
                            let n = list.len().min(OBJECTS / 3);
                            let at = list.len() - n;
                            list.split_off(at)
                        };
                        for o in inherited {
                            sum = sum.wrapping_add(o.finish());
                        }
                        // Work: make objects, free half of them at random.
                        let mut mine: Vec<Option<Leftover>> = (0..OBJECTS)
                            .map(|i| Some(Leftover::make(&mut rng, id << 20 | i as u64)))
                            .collect();
                        for _ in 0..OBJECTS / 2 {
                            if let Some(o) = mine[rng.below(OBJECTS)].take() {
                                sum = sum.wrapping_add(o.finish());
                            }
                        }
                        // Leave about a quarter behind for later threads; the
                        // rest is freed as the thread ends.
                        let mut leave = Vec::with_capacity(OBJECTS / 4);
                        for slot in mine.iter_mut().step_by(2) {
                            if let Some(o) = slot.take() {
                                leave.push(o);
                            }
                        }
                        shared.lock().expect("leftovers").append(&mut leave);
                        for o in mine.into_iter().flatten() {
                            sum = sum.wrapping_add(o.finish());
                        }
                        sum
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("churn thread"))
                .fold(0, u64::wrapping_add)
        });
        sum = sum.wrapping_add(wave_sum);
    }
    let rest = std::mem::take(&mut *shared.lock().expect("leftovers"));
    for o in rest {
        sum = sum.wrapping_add(o.finish());
    }
    sum
}
