//! The eight workloads, (a) to (h), one per file. Each is a function of the
//! [`Scale`] that returns a checksum: a sum over the work done (never over
//! orders, addresses, thread schedules or hash seeds), so every allocator must
//! give the same one. Their random choices come from [`Rng`], seeded the same
//! for every allocator.

mod churn;
mod frag;
mod json;
mod maps;
mod prodcons;
mod randfree;
mod server;
mod threads;

pub use support::child::Extra;
pub use support::rng::Rng;
pub use support::scale::Scale;

/// Words for generated text.
pub const WORDS: [&str; 32] = [
    "alpha",
    "bravo",
    "charlie",
    "delta",
    "echo",
    "foxtrot",
    "golf",
    "hotel",
    "india",
    "juliet",
    "kilo",
    "lima",
    "mike",
    "november",
    "oscar",
    "papa",
    "quebec",
    "romeo",
    "sierra",
    "tango",
    "uniform",
    "victor",
    "whiskey",
    "xray",
    "yankee",
    "zulu",
    "storage",
    "engine",
    "allocator",
    "segment",
    "pool",
    "chunk",
];

/// A string of `lo..=hi` random words, built by appending (as text code does).
pub fn sentence(rng: &mut Rng, lo: usize, hi: usize) -> String {
    let words = rng.range(lo, hi);
    let mut s = String::new();
    for i in 0..words {
        if i > 0 {
            s.push(' ');
        }
        s.push_str(WORDS[rng.below(WORDS.len())]);
    }
    s
}

/// A workload: its name and letter in the table, what it does, and its body
/// (which returns a checksum and may report [`Extra`] figures).
pub struct Workload {
    pub name: &'static str,
    pub letter: char,
    pub about: &'static str,
    pub run: fn(Scale, &mut Extra) -> u64,
}

/// All of them, in table order.
pub const WORKLOADS: &[Workload] = &[
    Workload {
        name: "json",
        letter: 'a',
        about: "many small short-lived objects: serde_json parse / build / serialize loop (2 threads)",
        run: json::run,
    },
    Workload {
        name: "maps",
        letter: 'b',
        about: "a large BTreeMap and HashMap of owned strings built, queried, torn down (1 thread)",
        run: maps::run,
    },
    Workload {
        name: "prodcons",
        letter: 'c',
        about: "producer / consumer: messages made on one thread, freed on another (2 + 2 threads)",
        run: prodcons::run,
    },
    Workload {
        name: "server",
        letter: 'd',
        about: "server loop: per-request buffers of mixed sizes, shared cache with eviction (4 workers)",
        run: server::run,
    },
    Workload {
        name: "churn",
        letter: 'e',
        about: "thread churn: short-lived threads leave objects behind for later ones (4 at a time)",
        run: churn::run,
    },
    Workload {
        name: "frag",
        letter: 'f',
        about: "fragmentation: allocate a lot, free 90% at random, allocate other sizes (1 thread)",
        run: frag::run,
    },
    Workload {
        name: "threads",
        letter: 'g',
        about: "short-lived threads: thousands, each allocates a few hundred 64 B - 4 KiB blocks, hands a few to main",
        run: threads::run,
    },
    Workload {
        name: "randfree",
        letter: 'h',
        about: "random free: millions of small blocks freed in random order, refilled with other sizes (1 thread)",
        run: randfree::run,
    },
];
