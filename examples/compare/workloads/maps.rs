//! (b) maps: a large BTreeMap and HashMap of owned strings.

use super::{sentence, Extra, Rng, Scale, WORDS};
use std::collections::{BTreeMap, HashMap};
use support::checksum::{fnv, mix};

fn user_key(id: usize) -> String {
    format!("user:{:08x}:{}", mix(id as u64) as u32, id % 97)
}

/// The workload; returns its checksum.
pub fn run(scale: Scale, _: &mut Extra) -> u64 {
    let n = scale.pick(700_000, 40_000);
    let mut rng = Rng::new_spread(0xb7ee);
    let mut sum = 0u64;
    // Build: key -> profile text, and path -> owner name, sorted.
    let mut by_user: HashMap<String, String> = HashMap::new();
    let mut by_path: BTreeMap<String, String> = BTreeMap::new();
    for id in 0..n {
        by_user.insert(user_key(id), sentence(&mut rng, 2, 14));
        let path = format!(
            "/{}/{}/{:06}",
            WORDS[id % WORDS.len()],
            WORDS[(id / 7) % WORDS.len()],
            mix(id as u64 ^ 0x55) % 1_000_000
        );
        by_path.insert(path, WORDS[rng.below(WORDS.len())].to_owned());
    }
    // Query: point lookups with temporary keys, and range scans.
    for _ in 0..n {
        let id = rng.below(n + n / 8);
        if let Some(v) = by_user.get(&user_key(id)) {
            sum = sum.wrapping_add(v.len() as u64 ^ fnv(&v.as_bytes()[..4.min(v.len())]));
        }
    }
    for q in 0..n / 8 {
        let from = format!(
            "/{}/{}",
            WORDS[q % WORDS.len()],
            WORDS[rng.below(WORDS.len())]
        );
        for (k, v) in by_path.range(from..).take(8) {
            sum = sum.wrapping_add(k.len() as u64 * 31 + v.len() as u64);
        }
    }
    // Update a quarter of the values in place (they grow), remove a third.
    for id in (0..n).step_by(4) {
        if let Some(v) = by_user.get_mut(&user_key(id)) {
            v.push_str(" (edited by ");
            v.push_str(WORDS[id % WORDS.len()]);
            v.push(')');
        }
    }
    for id in (0..n).step_by(3) {
        if let Some(v) = by_user.remove(&user_key(id)) {
            sum = sum.wrapping_add(fnv(v.as_bytes()));
        }
    }
    let doomed: Vec<String> = by_path.keys().step_by(3).cloned().collect();
    for k in &doomed {
        sum = sum.wrapping_add(by_path.remove(k).map_or(0, |v| v.len() as u64));
    }
    drop(doomed);
    // What is left, in an order-independent sum; then tear down.
    for (k, v) in &by_user {
        sum = sum.wrapping_add(fnv(k.as_bytes()) ^ v.len() as u64);
    }
    for (k, v) in &by_path {
        sum = sum.wrapping_add(k.len() as u64 ^ fnv(v.as_bytes()));
    }
    sum.wrapping_add((by_user.len() + by_path.len()) as u64)
}
