//! Child-process helpers shared by the global-allocator tests: settings such
//! as `FLISTALLOC_BACKEND` are read once per process, so a case re-runs this
//! test binary as a child with the variable set.
#![allow(dead_code)] // each test file uses its own subset

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
    let out = Command::new(std::env::current_exe().expect("test binary"))
        .args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env(CHILD, "1")
        .env_remove("FLISTALLOC_BACKEND")
        .env_remove("FLISTALLOC_CAPACITY")
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
