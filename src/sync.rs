//! The atomics the allocator uses, from one place: `core`'s in normal
//! builds, loom's under `--cfg loom`, so the loom models in this crate drive
//! the real remote-free and adoption code.
//!
//! loom's atomics cannot be built in a `const` context, live in a `static`,
//! or be read from zero-filled memory, so code under loom builds its shared
//! state as values (see the `loom` test modules).

#[cfg(not(loom))]
pub(crate) use core::sync::atomic::{AtomicPtr, Ordering};
#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicPtr, Ordering};
