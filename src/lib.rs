//! flistalloc: a free-list slab allocator.
//!
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
#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]

#[cfg(not(all(target_pointer_width = "64", unix)))]
compile_error!(
    "flistalloc supports 64-bit Unix targets only (developed on x86_64 and aarch64 Linux)"
);

// Layer 0: leaf helpers any layer may use.
mod error;
mod list;
mod msg;
mod stats;
mod sync;
// Layer 1..4: OS pages, size classes, the segment map, pools and segments.
mod os;
mod pool;
mod segment;
mod segment_map;
mod size_class;
// Layer 5: backends and configuration.
mod backend;
mod config;
// Layer 6: the single-threaded core, generic over a policy.
mod flist_core;
// Layer 7: side by side, the explicit Arena and the global allocator.
mod arena;
mod global;

pub use arena::Arena;
pub use backend::Backend;
pub use config::parse_capacity;
pub use error::Error;
pub use global::{backend, stats, trim, Flist};
pub use size_class::{slabs, suitable_slab, LARGEST_FLIST_SIZE, MAX_ARENA_SIZE};
pub use stats::Stats;
pub use stats::{Info, SlabUse};
