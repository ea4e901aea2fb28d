//! `compare --cmd` (examples/compare/cmd.rs) end to end: the example binary
//! run on small shell commands, checking exit statuses, messages and the
//! JSON it writes. The columns that need `libflistalloc.so` are checked when
//! the library has been built (`cargo build --profile release-c -p
//! flistalloc-c`); the others always.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

/// `<target>/<profile>`, from this test binary's path
/// (`<target>/<profile>/deps/compare_cmd-HASH`).
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("own path");
    exe.parent()
        .and_then(Path::parent)
        .expect("<target>/<profile>/deps")
        .to_path_buf()
}

/// The example binary `name`, built here when `cargo test` was asked for
/// this test alone (then it does not build the examples).
fn example(name: &str) -> PathBuf {
    static BUILT: OnceLock<()> = OnceLock::new();
    let path = profile_dir().join("examples").join(name);
    if !path.is_file() {
        BUILT.get_or_init(|| {
            let mut cmd = Command::new(option_env!("CARGO").unwrap_or("cargo"));
            cmd.args(["build", "--examples"])
                .current_dir(env!("CARGO_MANIFEST_DIR"));
            if !cfg!(debug_assertions) {
                cmd.arg("--release");
            }
            let status = cmd.status().expect("run cargo");
            assert!(status.success(), "cargo build --examples: {status}");
        });
    }
    assert!(path.is_file(), "no {}", path.display());
    path
}

fn compare(args: &[&str]) -> Output {
    Command::new(example("compare"))
        .args(args)
        .output()
        .expect("run compare")
}

fn text(o: &Output) -> String {
    format!(
        "status {}\n--- stdout\n{}--- stderr\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A fresh scratch directory for one test.
fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("flist-compare-cmd-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("scratch dir");
    d
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).expect("json written")).expect("valid json")
}

#[test]
fn arguments_with_spaces_and_stdin_reach_the_program() {
    let dir = scratch("args");
    let input = dir.join("in.txt");
    std::fs::write(&input, "hello\nworld\n").unwrap();
    let json = dir.join("out.json");
    // The program checks its own arguments and stdin: it fails (and so
    // compare does) if a space was lost or stdin not replayed in each run.
    let check = r#"test "$1" = "a b" && test "$2" = "c  d" && test "$(cat)" = "$(printf 'hello\nworld')" && echo fine"#;
    let o = compare(&[
        "--runs",
        "2",
        "--columns",
        "system",
        "--check-output",
        "--stdin",
        input.to_str().unwrap(),
        "--json",
        json.to_str().unwrap(),
        "--",
        "sh",
        "-c",
        check,
        "sh",
        "a b",
        "c  d",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("output: stdout identical in all 2 runs (5 bytes)"),
        "{out}"
    );
    assert!(out.contains("exit 0 in 2/2 runs"), "{out}");
    let j = read_json(&json);
    assert_eq!(j["cmd"]["argv"][4], "a b");
    assert_eq!(j["cmd"]["kind"], "dynamic-elf");
    assert_eq!(j["cmd"]["output_check"], "same");
    assert_eq!(j["allocators"], serde_json::json!(["system"]));
    let sys = &j["workloads"][0]["results"]["system"];
    assert_eq!(sys["times_ms"].as_array().map(Vec::len), Some(2));
    assert!(sys["peak_rss_kib"].as_u64().unwrap() > 0, "{sys}");
    let proof = j["cmd"]["columns"][0]["proof"].as_str().unwrap();
    assert!(proof.contains("libc.so"), "{proof}");

    // The same through --cmd's shell-like splitting.
    let o = compare(&[
        "--runs",
        "1",
        "--columns",
        "system",
        "--cmd",
        r#"sh -c 'test "$1" = "a b" && test "$2" = "c  d"' sh 'a b' "c  d""#,
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn failures_are_reported_with_exit_status_1() {
    let o = compare(&["--cmd", "no-such-program-xyz --flag"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(
            r#"program "no-such-program-xyz" not found: no executable file of that name on PATH"#
        ),
        "{err}"
    );
    let o = compare(&["--cmd", "./no/such/file"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));

    let o = compare(&[
        "--runs",
        "1",
        "--columns",
        "system",
        "--",
        "sh",
        "-c",
        "echo oops >&2; exit 3",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("the program failed in 1 of 1 runs"), "{err}");
    assert!(
        err.contains("system run 1: exit 3") && err.contains("oops"),
        "{err}"
    );
    // The table is still printed, with the failure.
    assert!(String::from_utf8_lossy(&o.stdout).contains("FAILED: exit 3"));

    // Output that changes between runs (the pid), with --check-output.
    let o = compare(&[
        "--runs",
        "2",
        "--columns",
        "system",
        "--check-output",
        "--",
        "sh",
        "-c",
        "echo $$",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr)
            .contains("the output differs: system run 2 against system run 1"),
        "{}",
        text(&o)
    );
    // Without --check-output the same program is fine.
    let o = compare(&[
        "--runs",
        "2",
        "--columns",
        "system",
        "--",
        "sh",
        "-c",
        "echo $$",
    ]);
    assert!(o.status.success(), "{}", text(&o));
}

#[test]
fn bad_arguments_exit_2() {
    for args in [
        &["--check-output"][..],
        &["--cmd", "true", "--", "false"],
        &["--cmd", "true", "--quick"],
        &["--cmd", "echo 'open"],
        &["--cmd", ""],
        &["--"],
        &["--cmd", "true", "--columns", "bogus"],
        &["--cmd", "true", "--columns", "system,system"],
        &["--cmd", "true", "--warmup", "x"],
    ] {
        let o = compare(args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", text(&o));
        assert!(
            String::from_utf8_lossy(&o.stderr).contains("usage: compare"),
            "{args:?}"
        );
    }
}

#[test]
fn a_flist_program_is_switched_by_the_environment_alone() {
    // The `swap` example uses Flist as its global allocator and prints
    // "backend: NAME" first: the outputs must differ, by exactly that line.
    let swap = example("swap");
    let dir = scratch("flist");
    let json = dir.join("out.json");
    let o = compare(&[
        "--runs",
        "1",
        "--columns",
        "flist,malloc,jemalloc",
        // No warm-up round: the first timed round runs the columns in
        // their order, so flist's output is the reference.
        "--warmup",
        "0",
        "--check-output",
        "--json",
        json.to_str().unwrap(),
        "--",
        swap.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr)
            .contains(r#"the output differs: malloc run 1 against flist run 1, line 1: "backend: flist" vs "backend: malloc""#),
        "{}",
        text(&o)
    );
    let j = read_json(&json);
    assert_eq!(j["cmd"]["kind"], "flist-rust");
    for (i, b) in ["flist", "malloc", "jemalloc"].into_iter().enumerate() {
        let c = &j["cmd"]["columns"][i];
        assert_eq!(c["ld_preload"], Value::Null, "{c}");
        assert_eq!(c["flistalloc_backend"], b, "{c}");
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn preloaded_columns_are_proven() {
    // The system's jemalloc and mimalloc, when installed.
    for (column, file) in [
        ("libjemalloc", "libjemalloc"),
        ("libmimalloc", "libmimalloc"),
    ] {
        let o = compare(&[
            "--runs",
            "1",
            "--columns",
            column,
            "--check-output",
            "--",
            "sh",
            "-c",
            "echo hi",
        ]);
        let err = String::from_utf8_lossy(&o.stderr);
        if err.contains("is not installed") {
            eprintln!("note: {column} not installed: not checked");
            continue;
        }
        assert!(o.status.success(), "{}", text(&o));
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(
            out.contains("malloc() from /") && out.contains(file),
            "{out}"
        );
        assert!(out.contains("the loader maps it into /"), "{out}");
    }
    // libflistalloc.so with each backend, once it is built.
    let lib = profile_dir()
        .parent()
        .expect("<target>")
        .join("release-c/libflistalloc.so");
    if !lib.is_file() {
        eprintln!(
            "note: no {}: the flist/malloc/jemalloc columns are not checked",
            lib.display()
        );
        return;
    }
    let o = compare(&[
        "--runs",
        "1",
        "--columns",
        "flist,malloc,jemalloc,system",
        "--check-output",
        "--",
        "sh",
        "-c",
        "echo hi",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    for b in ["flist", "malloc", "jemalloc"] {
        assert!(out.contains(&format!("FLISTALLOC_BACKEND={b}")), "{out}");
        assert!(
            out.contains(&format!(
                "libflistalloc.so, flistalloc_backend() = \"{b}\"; the loader maps it into /"
            )),
            "{out}"
        );
    }
}

#[test]
fn a_static_program_cannot_be_preloaded() {
    let dir = scratch("static");
    let src = dir.join("s.c");
    std::fs::write(&src, "int main(void) { return 0; }\n").unwrap();
    let bin = dir.join("s");
    let built = Command::new("cc")
        .args(["-static", "-o"])
        .arg(&bin)
        .arg(&src)
        .status();
    if !built.is_ok_and(|s| s.success()) {
        eprintln!("note: cannot link a static C program here (cc -static): not checked");
        return;
    }
    let bin = bin.to_str().unwrap();
    let o = compare(&[
        "--runs",
        "1",
        "--columns",
        "libjemalloc,libmimalloc,system",
        "--",
        bin,
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    if !err.contains("is not installed") {
        assert_eq!(o.status.code(), Some(1), "{}", text(&o));
        assert!(
            err.contains("is statically linked: LD_PRELOAD cannot replace its malloc"),
            "{err}"
        );
    }
    let o = compare(&["--runs", "1", "--columns", "system", "--", bin]);
    assert!(o.status.success(), "{}", text(&o));
    let _ = std::fs::remove_dir_all(dir);
}

/// The libflistalloc.so the columns preload, when it has been built.
fn flist_lib() -> Option<PathBuf> {
    let lib = profile_dir()
        .parent()
        .expect("<target>")
        .join("release-c/libflistalloc.so");
    lib.is_file().then_some(lib)
}

/// The `peak_rss_kib_per_run` of every column in a `--json` file.
fn peaks(json: &Value) -> Vec<(String, Vec<u64>)> {
    json["cmd"]["columns"]
        .as_array()
        .expect("columns")
        .iter()
        .map(|c| {
            let runs = c["peak_rss_kib_per_run"]
                .as_array()
                .expect("peaks")
                .iter()
                .map(|v| v.as_u64().expect("kB"))
                .collect();
            (c["name"].as_str().expect("name").to_owned(), runs)
        })
        .collect()
}

#[test]
fn peak_rss_is_the_programs_not_compares() {
    // `cat` of a 64 MiB file, from --stdin and as an argument, several
    // runs: compare must not hold the outputs (or the input) while it
    // launches, nor hand its own peak to the child (posix_spawn does, at
    // exec). cat itself needs a couple of MiB.
    let dir = scratch("rss");
    let big = dir.join("big.txt");
    let line = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde\n";
    std::fs::write(&big, line.repeat((64 << 20) / line.len())).unwrap();
    let json = dir.join("out.json");
    let big_s = big.to_str().unwrap();
    for args in [
        vec!["--cmd", "cat"],
        vec!["--cmd", "true"],
        vec!["--", "cat", big_s],
    ] {
        let mut all = vec![
            "--runs",
            "3",
            "--columns",
            "system",
            "--check-output",
            "--stdin",
            big_s,
            "--json",
            json.to_str().unwrap(),
        ];
        all.extend(&args);
        let o = compare(&all);
        assert!(o.status.success(), "{args:?}: {}", text(&o));
        for (col, runs) in peaks(&read_json(&json)) {
            assert_eq!(runs.len(), 3, "{col}");
            for kb in runs {
                // At most 16 MiB: a quarter of the file.
                assert!(kb < 16 << 10, "{args:?} {col}: peak {kb} kB\n{}", text(&o));
            }
        }
        if args[1] == "cat" {
            assert!(
                String::from_utf8_lossy(&o.stdout).contains(&format!(
                    "stdout identical in all 3 runs ({} bytes)",
                    (64 << 20) / line.len() * line.len()
                )),
                "{}",
                text(&o)
            );
        }
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn warm_up_then_the_column_order_rotates() {
    let Some(_) = flist_lib() else {
        eprintln!("note: no libflistalloc.so: not checked");
        return;
    };
    let o = compare(&[
        "--runs",
        "2",
        "--columns",
        "system,flist,malloc",
        "--",
        "true",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    // The columns of the progress lines, in order.
    let order: Vec<&str> = err
        .lines()
        .filter(|l| l.starts_with('['))
        .map(|l| {
            l.split_whitespace()
                .nth(if l.starts_with("[warm-up]") { 1 } else { 2 })
                .unwrap_or("")
        })
        .collect();
    assert_eq!(
        order,
        ["system", "flist", "malloc", "flist", "malloc", "system", "malloc", "system", "flist"],
        "{err}"
    );
    assert_eq!(
        err.lines().filter(|l| l.starts_with("[warm-up]")).count(),
        3,
        "{err}"
    );
    // The table keeps the --columns order.
    let out = String::from_utf8_lossy(&o.stdout);
    let at = |n: &str| {
        out.find(&format!("\ntrue     {n}"))
            .or_else(|| out.find(&format!(" {n} ")))
    };
    let (s, f, m) = (at("system"), at("flist"), at("malloc"));
    assert!(s.is_some() && s < f && f < m, "{out}");
}

#[test]
fn targets_only_when_every_run_succeeded() {
    if flist_lib().is_none() {
        eprintln!("note: no libflistalloc.so: not checked");
        return;
    }
    let o = compare(&["--runs", "1", "--columns", "flist,system", "--", "false"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(!out.contains(" met") && !out.contains("MISSED"), "{out}");
    assert!(
        out.contains("not evaluated: a run of flist or glibc failed"),
        "{out}"
    );
    let o = compare(&["--runs", "1", "--columns", "flist,system", "--", "true"]);
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("(target <= 1.00x: "), "{out}");
}

#[test]
fn a_closed_stdout_ends_compare_like_a_unix_tool() {
    let mut child = Command::new(example("compare"))
        .args(["--runs", "1", "--columns", "system", "--", "true"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run compare");
    drop(child.stdout.take());
    let o = child.wait_with_output().expect("wait");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!err.contains("panicked"), "{err}");
    // Killed by SIGPIPE (13) at its first write.
    use std::os::unix::process::ExitStatusExt as _;
    assert_eq!(o.status.signal(), Some(13), "{err}");
}

#[test]
fn messages_about_the_command_line() {
    // No shell: a NAME=VALUE prefix is a program name, and the message says so.
    let o = compare(&["--cmd", "FOO=1 true"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("env FOO=1 PROGRAM"),
        "{}",
        text(&o)
    );
    // Through env, the program env runs is what is checked.
    let o = compare(&[
        "--runs",
        "1",
        "--columns",
        "system",
        "--cmd",
        "env FOO=1 true",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("runs /"),
        "{}",
        text(&o)
    );
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("true via /"),
        "{}",
        text(&o)
    );
    // --help lists every workload --only accepts.
    let help = compare(&["--help"]);
    let help = String::from_utf8_lossy(&help.stdout);
    let bad = compare(&["--only", "bogus"]);
    let bad = String::from_utf8_lossy(&bad.stderr);
    let known = bad
        .split("(known: ")
        .nth(1)
        .and_then(|r| r.split(')').next())
        .expect("the known workloads");
    assert!(help.contains(known), "{known}\n{help}");
}

#[test]
fn a_program_that_links_an_allocator_is_flagged() {
    let Some(jemalloc) = [
        "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2",
        "/usr/lib/aarch64-linux-gnu/libjemalloc.so.2",
    ]
    .into_iter()
    .find(|p| Path::new(p).is_file()) else {
        eprintln!("note: no libjemalloc.so.2: not checked");
        return;
    };
    let dir = scratch("own");
    let src = dir.join("j.c");
    std::fs::write(
        &src,
        "#include <stdlib.h>\nint main(void) { free(malloc(10)); return 0; }\n",
    )
    .unwrap();
    let bin = dir.join("j");
    let built = Command::new("cc")
        .arg("-o")
        .arg(&bin)
        .arg(&src)
        .arg("-Wl,--no-as-needed")
        .arg(jemalloc)
        .status();
    if !built.is_ok_and(|s| s.success()) {
        eprintln!("note: cannot link a C program with jemalloc here: not checked");
        return;
    }
    let o = compare(&[
        "--runs",
        "1",
        "--columns",
        "system",
        "--",
        bin.to_str().unwrap(),
    ]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("WARNING: ") && out.contains("links its own allocator (libjemalloc.so.2)"),
        "{}",
        text(&o)
    );
    assert!(out.contains("DOES NOT HOLD"), "{out}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn direct_columns_run_the_allocators_installed_directly() {
    // Each child checks it runs on the allocator asked for (exit 3
    // otherwise), so a wrong switch fails here.
    let o = compare(&["--quick", "--runs", "1", "--only", "json", "--direct"]);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    for col in ["jemalloc-direct", "malloc-direct"] {
        assert!(
            t.contains(&format!("             {col}")),
            "no {col} row: {t}"
        );
    }
    assert!(
        t.contains("jemalloc through Flist / jemalloc-direct")
            && t.contains("malloc through Flist / malloc-direct"),
        "{t}"
    );
    // Not for --cmd.
    let o = compare(&["--direct", "--cmd", "true"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("--direct is for the built-in workloads"));
}
