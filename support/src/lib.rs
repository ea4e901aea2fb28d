//! Code shared by flistalloc's examples and benches (not published).
//!
//! * [`rss`]: this process's current and peak RSS, from `/proc/self/status`.
//! * [`child`]: one measured run in a child process: the child's side
//!   ([`child::measure`], the `result ...` line) and the parent's
//!   ([`child::run`], [`child::sweep`]).
//! * [`stats`]: median and geometric mean.
//! * [`scale`]: full or quick workload sizes.
//! * [`rng`]: the seeded generators (the same sequence for every allocator).
//! * [`checksum`]: FNV-1a and the cheap buffer digests the workloads sum.
//! * [`cli`]: argument helpers over `lexopt` for the options the examples
//!   share.
//! * [`mod@env`]: an environment lookup that does not allocate, for a
//!   `#[global_allocator]` deciding something at its first call.
//! * [`report`]: the results of a (workload x allocator) sweep, summarised,
//!   printed as a table, and written as JSON and as an SVG bar chart.
//!
//! Nothing here depends on flistalloc: the examples pass plain values.

pub mod checksum;
pub mod child;
pub mod cli;
pub mod env;
pub mod report;
pub mod rng;
pub mod rss;
pub mod scale;
pub mod stats;
mod svg;
