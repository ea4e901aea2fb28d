//! The explicit `Arena`'s integration tests, through the public API only:
//! one test binary with a module per concern (after bumpalo's `tests/all`),
//! so they build and link once and miri runs them with one command:
//!
//! ```text
//! MIRIFLAGS="-Zmiri-disable-isolation" cargo +nightly miri test -p flistalloc --test arena
//! ```
//!
//! * [`api`]: the panic rules and their `try_` errors, `info()` /
//!   `utilization()` / `trim()` figures, collections, trait facts;
//! * [`props`]: random operation sequences against a shadow model
//!   (proptest);
//! * [`allocator`]: `&Arena` as an `allocator_api2` `Allocator`: returned
//!   lengths, zeroing, zero-size layouts;
//! * [`backends`]: the contract on every backend (flist, malloc, jemalloc),
//!   one body per test run on each, and release by each backend's statistics.
//!
//! The helpers below are the public contract's arithmetic the modules share.

mod allocator;
mod api;
mod backends;
#[path = "../common/mod.rs"]
mod common;
mod props;

use flistalloc::slabs;
use std::alloc::Layout;

const KIB: usize = 1 << 10;
const MIB: usize = 1 << 20;
const PAGE: usize = 4096;

fn layout(size: usize, align: usize) -> Layout {
    Layout::from_size_align(size, align).unwrap()
}

fn round_pages(n: usize) -> usize {
    n.div_ceil(PAGE) * PAGE
}

/// The slab a request must get, from the public contract alone: the smallest
/// slab `>= size` (size 0 counts as 1) whose chunks are aligned to `align`, a
/// chunk of slab `s` being aligned to the largest power of two dividing `s`,
/// capped at the page.
fn expected_slab(size: usize, align: usize) -> usize {
    let from = slabs().partition_point(|&s| s < size.max(1));
    slabs()[from..]
        .iter()
        .copied()
        .find(|&s| (1usize << s.trailing_zeros()).min(PAGE) >= align)
        .expect("a slab exists for every size up to 1 TiB")
}
