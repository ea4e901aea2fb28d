//! The one-line swap: this program's every allocation goes through
//! flistalloc, by the two lines marked below. Nothing else changes.
//!
//! ```text
//! cargo run --release --example swap
//! FLISTALLOC_BACKEND=jemalloc cargo run --release --example swap
//! FLISTALLOC_BACKEND=malloc   cargo run --release --example swap
//! ```
//!
//! It does some ordinary work (strings, a map, a few threads), then prints
//! the backend in use and a few of the allocator's figures.

use std::collections::HashMap;

// The swap: these two lines.
#[global_allocator]
static GLOBAL: flistalloc::Flist = flistalloc::Flist::new();

fn mib(bytes: usize) -> String {
    format!("{:.2} MiB", bytes as f64 / (1 << 20) as f64)
}

fn print_stats(when: &str) {
    let s = flistalloc::stats();
    println!("{when}:");
    println!("  mapped from the OS        {}", mib(s.mapped));
    println!("  in flist pools            {}", mib(s.flist_pool_bytes));
    println!("  in the fallback (large)   {}", mib(s.fallback_live));
    println!(
        "  pools in use / abandoned / returned so far   {} / {} / {}",
        s.pools_in_use, s.pools_abandoned, s.pools_returned
    );
    println!("  threads with a flist heap {}", s.threads);
}

fn main() {
    println!("backend: {}", flistalloc::backend().name());

    // Ordinary work: a word count over generated text, on four threads,
    // each thread's map merged into one.
    let words = ["alloc", "free", "pool", "slab", "chunk", "segment", "heap"];
    let text: Vec<String> = (0..200_000)
        .map(|i| format!("{} {}", words[i % words.len()], i % 1000))
        .collect();
    let counts: HashMap<String, usize> = std::thread::scope(|s| {
        let parts: Vec<_> = text
            .chunks(text.len() / 4)
            .map(|part| {
                s.spawn(move || {
                    let mut m: HashMap<String, usize> = HashMap::new();
                    for line in part {
                        for w in line.split(' ') {
                            *m.entry(w.to_owned()).or_default() += 1;
                        }
                    }
                    m
                })
            })
            .collect();
        let mut all = HashMap::new();
        for p in parts {
            for (k, v) in p.join().expect("worker") {
                *all.entry(k).or_default() += v;
            }
        }
        all
    });
    let big = vec![0u8; 8 << 20]; // above the largest slab: the fallback serves it
    println!(
        "counted {} distinct words in {} lines; \"pool\" {} times; a {} buffer",
        counts.len(),
        text.len(),
        counts["pool"],
        mib(big.len())
    );
    println!();
    print_stats("while the data is live");

    drop((text, counts, big));
    let given_back = flistalloc::trim();
    println!();
    print_stats(&format!(
        "after dropping it and flistalloc::trim() (gave back {})",
        mib(given_back)
    ));
    if flistalloc::backend() != flistalloc::Backend::Flist {
        println!();
        println!(
            "(under FLISTALLOC_BACKEND={} every allocation goes to that allocator, so the flist figures stay at zero)",
            flistalloc::backend().name()
        );
    }
}
