//! The atomics the allocator's cross-thread protocols use, from one place:
//! `core`'s in normal builds, loom's under `--cfg loom`, so the loom models
//! in this crate (`loom_tests` modules of `pool.rs`,
//! `global/abandoned.rs` and `global/thread_core.rs`) drive the real
//! remote-free, adoption and idle hand-off code.
//!
//! loom's atomics cannot be built in a `const` context, live in a `static`,
//! or be read from zero-filled memory. So under loom: a pool slot is built
//! with `Pool::empty` (no `const`), a segment header writes its pool slots
//! instead of trusting the zeroed mapping, and the statics keep `core`'s
//! atomics (the abandoned list's lock is generic over its lock word) while
//! the models build their shared state as values.
//!
//! Run the models with
//! `RUSTFLAGS="--cfg loom" cargo test --release -p flistalloc --lib loom`.

#[cfg(not(loom))]
pub(crate) use core::sync::atomic::{fence, AtomicBool, AtomicPtr, AtomicUsize, Ordering};
#[cfg(loom)]
pub(crate) use loom::sync::atomic::{fence, AtomicBool, AtomicPtr, AtomicUsize, Ordering};
