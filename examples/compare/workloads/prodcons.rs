//! (c) prodcons: objects made on one thread and freed on another.

use super::{Extra, Rng, Scale, WORDS};
use std::sync::mpsc;
use support::checksum::{fnv, sample_hash};

struct Message {
    id: u64,
    topic: String,
    payload: Vec<u8>,
    fields: Vec<(String, u64)>,
}

fn make_message(rng: &mut Rng, id: u64) -> Box<Message> {
    let size = match rng.below(100) {
        0..=59 => rng.range(8, 128),
        60..=94 => rng.range(129, 2048),
        _ => rng.range(2049, 16384),
    };
    let mut payload = vec![id as u8; size];
    payload[size - 1] = (id >> 8) as u8;
    Box::new(Message {
        id,
        topic: format!("topic/{}/{}", WORDS[(id % 32) as usize], id % 50),
        payload,
        fields: (0..rng.below(5))
            .map(|k| (WORDS[rng.below(WORDS.len())].to_owned(), id + k as u64))
            .collect(),
    })
}

fn consume_message(m: &Message) -> u64 {
    let f = m
        .fields
        .iter()
        .fold(0u64, |a, (k, v)| a.wrapping_add(k.len() as u64 ^ *v));
    m.id ^ fnv(m.topic.as_bytes()) ^ sample_hash(&m.payload) ^ f
}

/// The workload; returns its checksum.
pub fn run(scale: Scale, _: &mut Extra) -> u64 {
    const PAIRS: u64 = 2;
    const BATCH: usize = 64;
    let per_producer = scale.pick(900_000, 50_000) as u64;
    std::thread::scope(|s| {
        let mut consumers = Vec::new();
        for p in 0..PAIRS {
            let (tx, rx) = mpsc::sync_channel::<Vec<Box<Message>>>(16);
            s.spawn(move || {
                let mut rng = Rng::new_spread(0xc0de + p);
                let mut batch = Vec::with_capacity(BATCH);
                for i in 0..per_producer {
                    batch.push(make_message(&mut rng, p << 40 | i));
                    if batch.len() == BATCH {
                        let full = std::mem::replace(&mut batch, Vec::with_capacity(BATCH));
                        tx.send(full).expect("consumer alive");
                    }
                }
                if !batch.is_empty() {
                    tx.send(batch).expect("consumer alive");
                }
            });
            consumers.push(s.spawn(move || {
                let mut sum = 0u64;
                for batch in rx {
                    for m in batch {
                        sum = sum.wrapping_add(consume_message(&m));
                    }
                }
                sum
            }));
        }
        consumers
            .into_iter()
            .map(|h| h.join().expect("consumer"))
            .fold(0, u64::wrapping_add)
    })
}
