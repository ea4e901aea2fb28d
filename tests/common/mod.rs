//! The code the integration tests share (each test binary includes it with
//! `mod common;`):
//!
//! * child processes: settings such as `FLISTALLOC_BACKEND` are read once
//!   per process, so a case re-runs its test binary as a child with the
//!   variable set ([`run_child`], [`child_ok`], [`child_aborts`]);
//! * [`rss`], the resident set size of this process;
//! * [`Rng`], a small deterministic xorshift generator.
#![allow(dead_code)] // each test file uses its own subset

use std::os::unix::process::ExitStatusExt;
use std::process::{Command, ExitStatus};

/// Set in the child: the test body does the child's work.
pub const CHILD: &str = "FLIST_CHILD";
/// Printed by a child that got to the end of its work.
pub const DONE: &str = "flist-child-done";

pub fn is_child() -> bool {
    std::env::var_os(CHILD).is_some()
}

/// Re-runs test `name` of this binary as a child with `env` set (and no
/// other `FLISTALLOC_*` variable); returns its status and stderr.
pub fn run_child(name: &str, env: &[(&str, &str)]) -> (ExitStatus, String) {
    let mut child = Command::new(std::env::current_exe().expect("test binary"));
    child
        .args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env(CHILD, "1");
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("FLISTALLOC_") {
            child.env_remove(key);
        }
    }
    let out = child
        .envs(env.iter().copied())
        .output()
        .expect("spawn the test binary");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out.status, stderr)
}

/// Runs the child and checks it finished its work and exited 0.
pub fn child_ok(name: &str, env: &[(&str, &str)]) -> String {
    let (status, stderr) = run_child(name, env);
    assert!(
        status.success() && stderr.contains(DONE),
        "child {name} {env:?} failed: {status}\n--- stderr ---\n{stderr}"
    );
    stderr
}

/// [`child_ok`], then echoes the child's stderr lines that contain `tag`
/// (its figures) on this test's stderr, prefixed `child: `.
pub fn child_ok_echo(name: &str, env: &[(&str, &str)], tag: &str) -> String {
    let stderr = child_ok(name, env);
    for line in stderr.lines().filter(|l| l.contains(tag)) {
        eprintln!("child: {line}");
    }
    stderr
}

/// Runs the child and checks it aborted (SIGABRT); returns its stderr.
pub fn child_aborts(name: &str, env: &[(&str, &str)]) -> String {
    let (status, stderr) = run_child(name, env);
    assert_eq!(
        status.signal(),
        Some(libc::SIGABRT),
        "child {name} {env:?}: {status}, expected SIGABRT\n--- stderr ---\n{stderr}"
    );
    stderr
}

/// Resident set size of this process now, in bytes (`/proc/self/statm`).
pub fn rss() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("read /proc/self/statm");
    let resident: usize = statm
        .split_whitespace()
        .nth(1)
        .expect("statm has a resident field")
        .parse()
        .expect("resident pages are a number");
    // SAFETY: sysconf has no preconditions; _SC_PAGESIZE is always defined.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    resident * page as usize
}

/// A small deterministic xorshift generator: tests need repeatable streams,
/// not statistical quality.
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed` (any value; 0 is mapped to a fixed odd seed).
    pub fn new(seed: u64) -> Rng {
        Rng(if seed == 0 {
            0x9e37_79b9_7f4a_7c15
        } else {
            seed
        })
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// A value in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}
