//! The configuration, in one place: every setting with its environment
//! variable, its compiled-in default and its parser, read once at the first
//! allocation without allocating (after mimalloc's options table).
//!
//! | variable | meaning | default |
//! |---|---|---|
//! | `FLISTALLOC_BACKEND` | `flist`, `malloc` or `jemalloc` | `flist` |
//! | `FLISTALLOC_CAPACITY` | process budget in bytes (K/M/G/T suffixes), at most 1 TiB | 1 TiB, uncounted |
//! | `FLISTALLOC_RESERVE_POOLS` | empty pools a thread keeps for reuse | 512 |
//! | `FLISTALLOC_RESERVE_BYTES` | bytes of empty pools a thread keeps (suffixes) | 2 MiB |
//! | `FLISTALLOC_PURGE_DELAY` | milliseconds a reserve pool stays warm before slow paths decommit it, at most 3600000 (0: at once) | 10 |
//!
//! A bad value prints one line on stderr naming it and the valid values, and
//! the default is used.

use crate::backend::Backend;
use crate::msg::warn;
use crate::size_class::MAX_ARENA_SIZE;

/// Empty pools a thread heap keeps for reuse before it hands the oldest back
/// to the OS, by default: the hysteresis that stops a slab oscillating around
/// a pool boundary (or a `Vec` growing through many slabs) from mapping and
/// unmapping at every step.
pub(crate) const DEFAULT_RESERVE_POOLS: usize = 512;
/// Bytes of empty pools a thread heap keeps, by default. 2 MiB: with 8 MiB
/// the four workers of `compare`'s (d) server kept 17 to 20 MiB of empty
/// pools at its peak (RSS 71 to 73 MiB against glibc's 55 to 56); with
/// 2 MiB, 68 to 69.5 MiB. The price, measured on a quiet machine (medians
/// of 4): (d) server faults 29,000 pages instead of 20,000 and its time
/// moved +2.6% (within the run-to-run noise); (b), (c), (e), (g) and the
/// json workload fault and run as with 8 MiB (within 5% and the noise).
pub(crate) const DEFAULT_RESERVE_BYTES: usize = 2 << 20;
/// Milliseconds a reserve pool stays warm before a slow path (of any
/// thread) decommits it, by default: mimalloc 2's `purge_delay` default
/// (mimalloc 3 uses 1 s, jemalloc's dirty decay 10 s). It was 250 ms until
/// measured: the server example's peak RSS 55.0 -> 51.9 MiB (jemalloc
/// 50.4 - 50.9), `compare`'s (d) server and (e) churn about 1 MiB lower, and
/// the time of (a) json, (c) prodcons, (d) server, (e) churn and (g)
/// threads unchanged within the noise (3 alternating runs of each child on
/// a quiet machine).
pub(crate) const DEFAULT_PURGE_DELAY_MS: u32 = 10;
/// The largest purge delay accepted: one hour.
const MAX_PURGE_DELAY_MS: usize = 3_600_000;

/// Idle thread heaps that keep their memory (pools, reserve, segments) for
/// the next new thread: an exiting thread's heap goes onto the idle stack
/// warm, and a new thread takes the warm heap on top first, so thread churn
/// does not fault pages in again. An exiting heap first hands its oldest
/// reserve pools back until its reserve holds at most `WARM_IDLE_BYTES`;
/// then, while more than `WARM_IDLE_HEAPS` heaps are warm, the exiting
/// thread abandons the oldest warm heap's segments (as thread exit did
/// before warm heaps), leaving it cold on the stack; and while the warm
/// heaps' reserves hold more than `WARM_IDLE_BYTES` committed bytes
/// together, it decommits the reserves of the oldest warm heaps. So idle
/// heaps hold at most 8 MiB of empty pools together (what the
/// 10,000-thread churn test's 16 MiB RSS bound leaves room for), plus up to
/// 1 MiB each of pools emptied by frees collected for them while idle
/// (`threads::IDLE_COLLECT_FLOOR`), plus the
/// pools that still hold live chunks (whose pages abandoning would not
/// give back either; the next thread of the heap fills them first).
pub(crate) const WARM_IDLE_HEAPS: usize = 8;
/// Committed bytes of empty pools all warm idle heaps' reserves hold
/// together, at most.
pub(crate) const WARM_IDLE_BYTES: usize = 8 << 20;

/// Every setting of the global allocator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Config {
    /// The backend serving the process.
    pub backend: Backend,
    /// The process budget in bytes, when `FLISTALLOC_CAPACITY` is set.
    pub capacity: Option<usize>,
    /// Empty pools one thread heap keeps for reuse.
    pub reserve_pools: usize,
    /// Bytes of empty pools one thread heap keeps for reuse.
    pub reserve_bytes: usize,
    /// Milliseconds a reserve pool stays warm before slow paths decommit it.
    pub purge_delay_ms: u32,
}

impl Config {
    /// The defaults, with `backend` (the backend of `Flist::with_backend`,
    /// or `Flist` when the environment decides).
    pub const fn defaults(backend: Backend) -> Config {
        Config {
            backend,
            capacity: None,
            reserve_pools: DEFAULT_RESERVE_POOLS,
            reserve_bytes: DEFAULT_RESERVE_BYTES,
            purge_delay_ms: DEFAULT_PURGE_DELAY_MS,
        }
    }

    /// Reads the environment over the defaults, without allocating;
    /// `fixed` is a backend set at compile time (the environment's is then
    /// ignored). Bad values are reported on stderr and ignored.
    pub fn from_env(fixed: Option<Backend>) -> Config {
        let mut c = Config::defaults(fixed.unwrap_or(Backend::Flist));
        if fixed.is_none() {
            if let Some(v) = env(c"FLISTALLOC_BACKEND") {
                c.backend = parse_backend(v);
            }
        }
        if let Some(v) = env(c"FLISTALLOC_CAPACITY") {
            c.capacity = parse_or_warn(
                b"FLISTALLOC_CAPACITY=",
                v,
                parse_capacity(v).filter(|&n| n > 0),
                b" (expected bytes, more than 0, with an optional K/M/G/T suffix, at most 1T); using the default, 1 TiB",
            );
        }
        if let Some(v) = env(c"FLISTALLOC_RESERVE_POOLS") {
            c.reserve_pools = parse_or_warn(
                b"FLISTALLOC_RESERVE_POOLS=",
                v,
                parse_capacity(v).filter(|&n| n <= 1 << 20),
                b" (expected a number of pools, at most 1M); using the default, 512",
            )
            .unwrap_or(DEFAULT_RESERVE_POOLS);
        }
        if let Some(v) = env(c"FLISTALLOC_RESERVE_BYTES") {
            c.reserve_bytes = parse_or_warn(
                b"FLISTALLOC_RESERVE_BYTES=",
                v,
                parse_capacity(v),
                b" (expected bytes with an optional K/M/G/T suffix, at most 1T); using the default, 2M",
            )
            .unwrap_or(DEFAULT_RESERVE_BYTES);
        }
        if let Some(v) = env(c"FLISTALLOC_PURGE_DELAY") {
            c.purge_delay_ms = parse_or_warn(
                b"FLISTALLOC_PURGE_DELAY=",
                v,
                parse_decimal(v).filter(|&n| n <= MAX_PURGE_DELAY_MS),
                b" (expected milliseconds, 0 to 3600000); using the default, 250",
            )
            .map_or(DEFAULT_PURGE_DELAY_MS, |n| n as u32);
        }
        c
    }
}

fn parse_or_warn(name: &[u8], value: &[u8], parsed: Option<usize>, valid: &[u8]) -> Option<usize> {
    if parsed.is_none() {
        warn(&[b"bad ", name, value, valid]);
    }
    parsed
}

fn parse_backend(value: &[u8]) -> Backend {
    match Backend::parse(value) {
        Some(b) if b.available() => b,
        Some(_) => {
            warn(&[b"FLISTALLOC_BACKEND=jemalloc, but this build has no jemalloc (cargo feature `jemalloc`); using flist"]);
            Backend::Flist
        }
        None => {
            warn(&[
                b"unknown FLISTALLOC_BACKEND=",
                value,
                b" (valid values: flist, malloc, jemalloc); using flist",
            ]);
            Backend::Flist
        }
    }
}

/// Reads an environment variable without allocating.
fn env(name: &core::ffi::CStr) -> Option<&'static [u8]> {
    // SAFETY: getenv takes a NUL-terminated name and returns null or a
    // pointer to a NUL-terminated value in the environment block, which
    // lives as long as nobody calls setenv for it (the usual getenv
    // contract; the configuration is read once, at the first allocation).
    unsafe {
        let v = libc::getenv(name.as_ptr());
        if v.is_null() {
            None
        } else {
            Some(core::ffi::CStr::from_ptr(v).to_bytes())
        }
    }
}

/// Parses plain decimal digits (no suffix); `None` if malformed or too large.
fn parse_decimal(s: &[u8]) -> Option<usize> {
    if s.is_empty() || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    s.iter().try_fold(0usize, |n, d| {
        n.checked_mul(10)?.checked_add((d - b'0') as usize)
    })
}

/// Parses a capacity: decimal bytes with an optional K/M/G/T suffix (powers
/// of 1024, upper or lower case). `None` if malformed or above 1 TiB.
///
/// ```
/// assert_eq!(flistalloc::parse_capacity(b"1G"), Some(1 << 30));
/// assert_eq!(flistalloc::parse_capacity(b"512k"), Some(512 << 10));
/// assert_eq!(flistalloc::parse_capacity(b"2T"), None);
/// assert_eq!(flistalloc::parse_capacity(b"lots"), None);
/// ```
pub fn parse_capacity(s: &[u8]) -> Option<usize> {
    let (digits, shift) = match s.last()? {
        b'k' | b'K' => (&s[..s.len() - 1], 10),
        b'm' | b'M' => (&s[..s.len() - 1], 20),
        b'g' | b'G' => (&s[..s.len() - 1], 30),
        b't' | b'T' => (&s[..s.len() - 1], 40),
        _ => (s, 0),
    };
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut n: usize = 0;
    for d in digits {
        n = n.checked_mul(10)?.checked_add((d - b'0') as usize)?;
    }
    let bytes = n.checked_mul(1usize << shift)?;
    (bytes <= MAX_ARENA_SIZE).then_some(bytes)
}
