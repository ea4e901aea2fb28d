//! flistalloc: a free-list slab allocator.
//!
//! * [`Flist`]: a `#[global_allocator]` with a flist core per thread.
//! * [`Arena`]: an explicit, single-threaded, capacity-bounded heap that is
//!   released in one go, usable with `allocator_api2` collections.
//! * Slabs: [`slabs`], [`suitable_slab`].
//!
//! ```
//! use flistalloc::Arena;
//! use allocator_api2::vec::Vec;
//!
//! let arena = Arena::new(16 << 20);
//! let mut v = Vec::new_in(&arena);
//! v.extend(0..1000u32);
//! assert_eq!(v.iter().sum::<u32>(), 499_500);
//! ```
//!
//! # Layers
//!
//! The source is layered, bottom to top, after snmalloc's
//! `src/snmalloc/README.md`: **a file uses only layers below its own** (code
//! paths `crate::x` and `super::x`; doc links are not dependencies), and the
//! two modules of layer 9 do not use each other. `tests/layering.rs` checks this from
//! the sources, so a path across the rule fails CI.
//!
//! | layer | file | owns |
//! |---|---|---|
//! | 0 | `sync.rs` | the atomics (core's, or loom's under `--cfg loom`) |
//! | 0 | `list.rs` | the one intrusive list type (list, queue, stack) |
//! | 0 | `msg.rs` | one-line stderr messages and the misuse abort, without allocating |
//! | 0 | `stats.rs` | `Info`, `SlabUse`, `Stats` and the process-wide counters |
//! | 1 | `os.rs` | pages from the OS: map, unmap, decommit (miri: aligned allocations) |
//! | 2 | `size_class.rs` | the slab table, size to slab, the size limits |
//! | 2 | `chunk_set.rs` | the live chunks of an `Arena` over malloc/jemalloc (address to size) |
//! | 3 | `segment_map.rs` | which 4 MiB granules are flist segments, and whose |
//! | 4 | `pool.rs` | a pool header: free lists, the one pop and push, remote frees, the queue of pools to collect |
//! | 4 | `large.rs` | the C library's large blocks: one mapping each, header, in the segment map |
//! | 5 | `segment.rs` | a segment: header, page map, pool slots |
//! | 6 | `backend.rs` | `Backend`; malloc and jemalloc behind one interface |
//! | 7 | `config.rs` | every setting, read once from the environment |
//! | 7 | `error.rs` | `Error`, the explicit `Arena`'s errors (one names a `Backend`) |
//! | 8 | `flist_core.rs` | the single-threaded core `Core<P: Policy>` |
//! | 9 | `arena.rs`, `arena/` | the explicit `Arena` (arena policy, builder, `Allocator` impl, malloc/jemalloc backing) |
//! | 9 | `global.rs`, `global/` | `Flist`: thread cores, remote frees, thread exit, routing; `global/clib.rs`: the C allocator (`malloc` and family) |
//! | 10 | `raw.rs` | the low-level interface for the C library (`flistalloc::raw`) |
//!
//! `lib.rs` itself only declares the modules and re-exports the public API.
#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]

#[cfg(not(all(target_pointer_width = "64", unix)))]
compile_error!(
    "flistalloc supports 64-bit Unix targets only (developed on x86_64 and aarch64 Linux)"
);

// The layers are in the table above (rustfmt keeps these sorted).
mod arena;
mod backend;
mod chunk_set;
mod config;
mod error;
mod flist_core;
mod global;
mod large;
mod list;
mod msg;
mod os;
mod pool;
pub mod raw;
mod segment;
mod segment_map;
mod size_class;
mod stats;
mod sync;

pub use arena::{Arena, ArenaBuilder};
pub use backend::Backend;
pub use config::parse_capacity;
pub use error::Error;
pub use global::{backend, stats, trim, Flist};
pub use size_class::{slabs, suitable_slab, LARGEST_FLIST_SIZE, MAX_ARENA_SIZE};
pub use stats::Stats;
pub use stats::{Info, SlabUse};
