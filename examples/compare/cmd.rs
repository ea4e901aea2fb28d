//! `compare --cmd 'PROGRAM ARGS...'` (or `compare [OPTIONS] -- PROGRAM
//! ARGS...`): any existing program, run under each backend, timed and
//! tabulated like the built-in workloads.
//!
//! # Columns
//!
//! For an ordinary dynamically linked program (C, C++, Python, git...):
//!
//! | column        | environment of the program                                           |
//! |---------------|----------------------------------------------------------------------|
//! | `flist`       | `LD_PRELOAD=<target>/release-c/libflistalloc.so FLISTALLOC_BACKEND=flist` |
//! | `malloc`      | the same library, `FLISTALLOC_BACKEND=malloc` (glibc behind it)      |
//! | `jemalloc`    | the same library, `FLISTALLOC_BACKEND=jemalloc`                      |
//! | `libjemalloc` | `LD_PRELOAD` of the system's `libjemalloc.so.2`, when installed      |
//! | `libmimalloc` | `LD_PRELOAD` of the system's `libmimalloc.so(.2)`, when installed    |
//! | `system`      | nothing preloaded: the program's own malloc (glibc)                  |
//!
//! The library is built with `cargo build --profile release-c -p flistalloc-c`
//! when it is missing (`--lib PATH` names another). A Rust program whose
//! `#[global_allocator]` is `flistalloc::Flist` is recognised by a string
//! only Flist's configuration reader puts in a binary ([`FLIST_MARKER`]);
//! its `flist`, `malloc` and `jemalloc` columns then set
//! `FLISTALLOC_BACKEND` alone, with nothing preloaded, its `libjemalloc` and
//! `libmimalloc` columns preload those with `FLISTALLOC_BACKEND=malloc` (so
//! Flist hands every request to `malloc`, which is then theirs), and it has
//! no `system` column by default (glibc is its `malloc` column).
//! `--columns` picks a subset.
//!
//! # Measuring
//!
//! Every run is a fresh process, started with fork + exec (a no-op
//! `pre_exec` hook keeps std from using `posix_spawn`, which shares
//! compare's memory until exec, and then the kernel gives compare's RSS
//! high-water mark to the child's `ru_maxrss`): wall time from `spawn` to
//! `wait4`'s return, peak RSS from `wait4`'s `ru_maxrss` (the largest RSS of
//! the program, or of any of its children it waited for), and the exit
//! status. Its floor is what a freshly forked compare has resident, about
//! 1.5 MiB (`true` measures 1.5 MiB here where `/usr/bin/time` says
//! 1.0 MB; `cat` of a 56 MB file 1.5 MiB, `/usr/bin/time` 1.7 MB; before, with `posix_spawn` and the outputs held in memory,
//! its three runs read 3.6, 115.6 and 131.5 MiB).
//! The program's stdout and stderr go to unlinked temporary files, never
//! into compare's memory: stdout is hashed (and compared across every run
//! with `--check-output`), the end of stderr shown when a run fails. Its
//! stdin is `/dev/null`, or with `--stdin PATH` that file (`-`: compare's own
//! stdin, copied once to a temporary file), read from its start in each run.
//!
//! First come `--warmup N` untimed rounds (default 1: every column once,
//! so no column pays for a cold page cache), then `--runs` timed rounds.
//! Rounds are outermost, so drift spreads over all columns, and round `r`
//! runs the columns rotated by `r`, so no column is always first. The table
//! keeps the `--columns` order.
//!
//! # Which backend served the run
//!
//! Reading `/proc/PID/maps` of a running child is racy (a short program is
//! gone before the parent looks), and `LD_DEBUG` changes what the program
//! prints and how long it takes. So each column is proven once, before its
//! runs, by two checks that together cover what the runs rely on:
//!
//! 1. *The environment serves the backend*: this binary is re-executed as
//!    `compare --probe` with exactly the column's environment; it looks up
//!    the `malloc` the process resolves (`dlsym(RTLD_DEFAULT)` + `dladdr`)
//!    and, when the library exports it, calls `flistalloc_backend()`. The
//!    `malloc` must come from the preloaded file (from libc for `system`),
//!    and the backend must be the one asked for.
//! 2. *The program loads it*: for a dynamically linked ELF program the
//!    dynamic loader lists what it would map into that very program
//!    (`ld.so --list PROGRAM` under the column's `LD_PRELOAD`); the
//!    preloaded file must be in that list. A script is checked through its
//!    `#!` interpreter (`#!/usr/bin/env NAME` is followed on `PATH`). A
//!    statically linked program cannot be preloaded: an error, unless only
//!    the `system` column is asked for.
//!
//! Through `env [NAME=VALUE...] PROG ...` the program checked is PROG
//! (what runs); `env` with options, or setting `LD_PRELOAD` or
//! `FLISTALLOC_BACKEND`, is refused.
//!
//! A program that links an allocator library itself (`ld.so --list` with
//! nothing preloaded shows `libjemalloc`, `libmimalloc`, `libtcmalloc`,
//! `libsnmalloc` or `libflistalloc`) is measured, but with a loud warning
//! in the table: its own library may serve its `malloc` in every column,
//! every column's proof is marked as not holding, and the targets are not
//! evaluated.
//!
//! Every run of a column uses the same executable and environment as its
//! proof. What this cannot see: a program that defines `malloc` in its own
//! code (then its own definition wins over any preload), or one that execs
//! a different program with a cleared environment. For a Flist program the
//! proof is the marker (checked once; the backend is what Flist reads from
//! `FLISTALLOC_BACKEND`), plus check 1 for its preloaded columns.

use serde_json::{json, Value};
use std::ffi::CStr;
use std::io::Read as _;
use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::process::{CommandExt as _, ExitStatusExt as _};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, ExitStatus, Stdio};
use std::time::Instant;
use support::child::Sample;
use support::report::{Column, Matrix, Meta, Peak, Row, TableStyle};
use support::rss::mib;

/// A string that `flistalloc::Flist`'s configuration reader (and nothing
/// else) puts in a binary: its warning for a bad `FLISTALLOC_BACKEND`.
/// Only an ELF file that contains it is treated as a Flist program.
pub const FLIST_MARKER: &[u8] = b"unknown FLISTALLOC_BACKEND=";

/// The system's other allocators, looked up in these directories.
const LIB_DIRS: [&str; 5] = [
    "/usr/lib/x86_64-linux-gnu",
    "/usr/lib/aarch64-linux-gnu",
    "/usr/lib64",
    "/usr/lib",
    "/usr/local/lib",
];
const JEMALLOC_NAMES: [&str; 2] = ["libjemalloc.so.2", "libjemalloc.so"];
const MIMALLOC_NAMES: [&str; 3] = ["libmimalloc.so", "libmimalloc.so.2", "libmimalloc.so.2.0"];

/// The dynamic loaders `ld.so --list` is asked through.
const LOADERS: [&str; 3] = [
    "/lib64/ld-linux-x86-64.so.2",
    "/lib/ld-linux-aarch64.so.1",
    "/lib/ld-linux.so.2",
];

/// Every column name, in table order.
pub const COLUMN_NAMES: [&str; 6] = [
    "flist",
    "malloc",
    "jemalloc",
    "libjemalloc",
    "libmimalloc",
    "system",
];

/// What `--cmd` was asked to do.
pub struct CmdOptions {
    /// The program and its arguments, exactly as they are passed.
    pub argv: Vec<String>,
    pub runs: usize,
    pub json: Option<String>,
    pub svg: Option<String>,
    pub check_output: bool,
    /// `--lib PATH`: the `libflistalloc.so` to preload.
    pub lib: Option<String>,
    /// `--columns`: a subset of [`COLUMN_NAMES`].
    pub columns: Option<Vec<String>>,
    /// `--stdin PATH` (`-` for compare's own stdin).
    pub stdin: Option<String>,
    /// `--warmup N`: untimed rounds (every column once) before the runs.
    pub warmup: usize,
}

// ---------------------------------------------------------------------------
// The probe: `compare --probe`, run with a column's environment.

/// The probe's side: prints `probe malloc=FILE backend=NAME` (`backend=-`
/// when no `flistalloc_backend` is loaded) and exits 0.
pub fn probe() -> ExitCode {
    let malloc = symbol_file(c"malloc").unwrap_or_else(|| "?".to_owned());
    let backend = flistalloc_backend().unwrap_or_else(|| "-".to_owned());
    println!("probe malloc={malloc} backend={backend}");
    ExitCode::SUCCESS
}

/// The file of the loaded object that defines the `name` this process
/// resolves (what the program's own calls bind to).
fn symbol_file(name: &CStr) -> Option<String> {
    // SAFETY: RTLD_DEFAULT with a NUL-terminated name is dlsym's documented
    // global lookup; it only reads the loader's tables.
    let addr = unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) };
    if addr.is_null() {
        return None;
    }
    // SAFETY: Dl_info is plain data (pointers and integers), for which all
    // zeroes is a valid value; dladdr overwrites it.
    let mut info: libc::Dl_info = unsafe { std::mem::zeroed() };
    // SAFETY: `addr` is a symbol address from dlsym and `info` is a valid,
    // writable Dl_info.
    let found = unsafe { libc::dladdr(addr, &mut info) };
    if found == 0 || info.dli_fname.is_null() {
        return None;
    }
    // SAFETY: dladdr set dli_fname to the object's NUL-terminated file name,
    // which lives as long as the object stays loaded (for the process).
    let file = unsafe { CStr::from_ptr(info.dli_fname) };
    Some(file.to_string_lossy().into_owned())
}

/// `flistalloc_backend()` of a loaded `libflistalloc.so`, if there is one.
fn flistalloc_backend() -> Option<String> {
    // SAFETY: as in `symbol_file`: a global lookup by NUL-terminated name.
    let f = unsafe { libc::dlsym(libc::RTLD_DEFAULT, c"flistalloc_backend".as_ptr()) };
    if f.is_null() {
        return None;
    }
    // SAFETY: the C interface of libflistalloc.so declares
    // `const char *flistalloc_backend(void)`; a non-null result is a static
    // NUL-terminated string.
    let name = unsafe {
        let f: extern "C" fn() -> *const libc::c_char = std::mem::transmute(f);
        let p = f();
        if p.is_null() {
            return None;
        }
        CStr::from_ptr(p)
    };
    Some(name.to_string_lossy().into_owned())
}

// ---------------------------------------------------------------------------
// The program

/// What kind of file the program is.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Kind {
    /// A dynamically linked ELF program: `LD_PRELOAD` applies.
    Dynamic,
    /// A Rust program whose global allocator is `flistalloc::Flist`.
    Flist,
    /// A statically linked ELF program (or one the loader refuses).
    Static,
    /// A `#!` script run by this (dynamically linked) interpreter.
    Script(PathBuf),
    /// A `#!` script whose interpreter could not be checked, or not ELF.
    Unknown(String),
}

impl Kind {
    fn describe(&self) -> String {
        match self {
            Kind::Dynamic => "a dynamically linked ELF program".to_owned(),
            Kind::Flist => {
                "a Rust program with flistalloc::Flist as its global allocator (switched by FLISTALLOC_BACKEND alone)".to_owned()
            }
            Kind::Static => "a statically linked ELF program".to_owned(),
            Kind::Script(i) => format!("a script run by {}", i.display()),
            Kind::Unknown(why) => why.clone(),
        }
    }

    fn json_name(&self) -> &'static str {
        match self {
            Kind::Dynamic => "dynamic-elf",
            Kind::Flist => "flist-rust",
            Kind::Static => "static-elf",
            Kind::Script(_) => "script",
            Kind::Unknown(_) => "unknown",
        }
    }
}

/// `prog` as a path: itself when it has a `/`, else the first executable
/// file of that name on `PATH`.
fn resolve(prog: &str) -> Result<PathBuf, String> {
    let executable = |p: &Path| {
        p.metadata()
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if prog.contains('/') {
        let p = PathBuf::from(prog);
        return if !p.exists() {
            Err(format!("program {prog:?} not found: no such file"))
        } else if !executable(&p) {
            Err(format!(
                "program {prog:?} is not an executable file (a directory, or no x permission)"
            ))
        } else {
            Ok(p)
        };
    }
    let path = std::env::var("PATH").unwrap_or_default();
    path.split(':')
        .filter(|d| !d.is_empty())
        .map(|d| Path::new(d).join(prog))
        .find(|p| executable(p))
        .ok_or_else(|| {
            let mut m = format!(
                "program {prog:?} not found: no executable file of that name on PATH ({path})"
            );
            if prog.contains('=') {
                m.push_str(&format!(
                    "; --cmd runs the program itself, with no shell: to set a variable, \
                     write `--cmd 'env {prog} PROGRAM ...'` (or `sh -c '...'` for shell syntax)"
                ));
            }
            m
        })
}

/// The program that really runs: `program` itself, or when it is `env`
/// given only `NAME=VALUE` assignments before a program, that program
/// (`true` as the second value then). `env` with options (`-i`, `-u`...) or
/// an assignment to `LD_PRELOAD` / `FLISTALLOC_BACKEND` would undo the
/// columns: an error.
fn env_target(program: &Path, argv: &[String]) -> Result<(PathBuf, bool), String> {
    if program.file_name().is_none_or(|n| n != "env") {
        return Ok((program.to_path_buf(), false));
    }
    for a in &argv[1..] {
        if a.starts_with('-') {
            return Err(format!(
                "env option {a:?}: compare cannot tell what env would run with it; \
                 set the variables in compare's own environment instead \
                 (`NAME=VALUE cargo run ... --cmd 'PROGRAM ...'`)"
            ));
        }
        match a.split_once('=') {
            Some((name, _)) if name == "LD_PRELOAD" || name == "FLISTALLOC_BACKEND" => {
                return Err(format!(
                    "env {a}: that variable is what the columns set; leave it out"
                ))
            }
            Some(_) => {}
            None => return Ok((resolve(a)?, true)),
        }
    }
    // `env NAME=VALUE...` alone prints the environment: env itself runs.
    Ok((program.to_path_buf(), false))
}

/// The variables of compare's environment that the program inherits and
/// that change how it allocates (`PYTHONMALLOC`, `MALLOC_*`,
/// `GLIBC_TUNABLES`, `MIMALLOC_*`, `FLISTALLOC_*` but the backend), as
/// `NAME=VALUE ` words to put before the command line in the report.
fn allocator_env() -> String {
    let mut vars: Vec<(String, String)> = std::env::vars()
        .filter(|(k, _)| {
            k == "PYTHONMALLOC"
                || k == "GLIBC_TUNABLES"
                || k.starts_with("MALLOC_")
                || k.starts_with("MIMALLOC_")
                || (k.starts_with("FLISTALLOC_") && k != "FLISTALLOC_BACKEND")
        })
        .collect();
    vars.sort();
    vars.iter()
        .map(|(k, v)| {
            let plain = v
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.,:/=+".contains(c));
            if plain {
                format!("{k}={v} ")
            } else {
                format!("{k}='{}' ", v.replace('\'', r"'\''"))
            }
        })
        .collect()
}

/// Allocator libraries that, linked into a program, serve its malloc
/// before any preloaded one can... or, being preloaded too, fight it.
const OWN_ALLOCATORS: [&str; 5] = [
    "libjemalloc",
    "libmimalloc",
    "libtcmalloc",
    "libflistalloc",
    "libsnmalloc",
];

/// When the program (or a script's interpreter) links an allocator
/// library itself (seen in `ld.so --list` with nothing preloaded), the
/// warning to print: the columns cannot replace it.
fn own_allocator(program: &Path, kind: &Kind) -> Option<String> {
    let elf = match kind {
        Kind::Dynamic => program.to_path_buf(),
        Kind::Script(i) => i.clone(),
        _ => return None,
    };
    let out = Command::new(loader()?)
        .arg("--list")
        .arg(&elf)
        .env_remove("LD_PRELOAD")
        .env_remove("FLISTALLOC_BACKEND")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    let listed = String::from_utf8_lossy(&out.stdout);
    let found: Vec<&str> = listed
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|lib| OWN_ALLOCATORS.iter().any(|a| lib.starts_with(a)))
        .collect();
    (!found.is_empty()).then(|| {
        format!(
            "{} links its own allocator ({}): the columns' LD_PRELOAD cannot replace it \
             (its malloc may be served by that library in every column), so the table does \
             NOT compare allocators and the proofs do not hold",
            elf.display(),
            found.join(", ")
        )
    })
}

fn loader() -> Option<&'static str> {
    LOADERS.into_iter().find(|l| Path::new(l).exists())
}

/// Whether the dynamic loader accepts `elf` as a dynamically linked program
/// (`ld.so --verify`, what `ldd` asks first).
fn is_dynamic(elf: &Path) -> bool {
    let Some(ld) = loader() else {
        return false;
    };
    Command::new(ld)
        .arg("--verify")
        .arg(elf)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Reads what kind of program `path` is.
fn inspect(path: &Path) -> Result<Kind, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if bytes.starts_with(b"\x7fELF") {
        if bytes.windows(FLIST_MARKER.len()).any(|w| w == FLIST_MARKER) {
            return Ok(Kind::Flist);
        }
        return Ok(if is_dynamic(path) {
            Kind::Dynamic
        } else {
            Kind::Static
        });
    }
    let Some(line) = bytes.strip_prefix(b"#!") else {
        return Ok(Kind::Unknown(
            "neither ELF nor a #! script: cannot check that the preload reaches it".to_owned(),
        ));
    };
    let line = String::from_utf8_lossy(line.split(|&b| b == b'\n').next().unwrap_or(b""));
    let mut words = line.split_whitespace();
    let mut interp = words.next().unwrap_or("").to_owned();
    if Path::new(&interp).file_name().is_some_and(|n| n == "env") {
        // `#!/usr/bin/env [-S] NAME`: env finds NAME on PATH.
        match words.find(|w| !w.starts_with('-')) {
            Some(name) => interp = name.to_owned(),
            None => return Ok(Kind::Unknown(format!("a script run by {line:?}"))),
        }
    }
    let Ok(interp) = resolve(&interp) else {
        return Ok(Kind::Unknown(format!(
            "a script whose interpreter ({line:?}) was not found"
        )));
    };
    let ibytes = std::fs::read(&interp).unwrap_or_default();
    if ibytes.starts_with(b"\x7fELF") && is_dynamic(&interp) {
        Ok(Kind::Script(interp))
    } else {
        Ok(Kind::Unknown(format!(
            "a script run by {} (not a dynamically linked ELF program: not checked)",
            interp.display()
        )))
    }
}

// ---------------------------------------------------------------------------
// Columns

/// One column: how its runs are configured, and what its proof expects.
#[derive(Clone, Debug)]
struct Col {
    name: &'static str,
    color: &'static str,
    /// `LD_PRELOAD` (nothing preloaded for `None`).
    preload: Option<PathBuf>,
    /// `FLISTALLOC_BACKEND` (removed for `None`).
    backend: Option<&'static str>,
}

impl Col {
    fn configure(&self, cmd: &mut Command) {
        cmd.env_remove("LD_PRELOAD")
            .env_remove("FLISTALLOC_BACKEND");
        if let Some(p) = &self.preload {
            cmd.env("LD_PRELOAD", p);
        }
        if let Some(b) = self.backend {
            cmd.env("FLISTALLOC_BACKEND", b);
        }
    }

    /// `LD_PRELOAD=... FLISTALLOC_BACKEND=...`, or `(nothing preloaded)`.
    fn env_text(&self) -> String {
        let mut parts = Vec::new();
        if let Some(p) = &self.preload {
            parts.push(format!("LD_PRELOAD={}", p.display()));
        }
        if let Some(b) = self.backend {
            parts.push(format!("FLISTALLOC_BACKEND={b}"));
        }
        if parts.is_empty() {
            "(nothing preloaded, FLISTALLOC_BACKEND unset)".to_owned()
        } else {
            parts.join(" ")
        }
    }
}

fn color(name: &str) -> &'static str {
    match name {
        "flist" => "#1f6fb4",
        "malloc" => "#8c8c8c",
        "jemalloc" => "#e8871e",
        "libjemalloc" => "#f5c48a",
        "libmimalloc" => "#2f9e44",
        _ => "#444444",
    }
}

fn find_lib(names: &[&str]) -> Option<PathBuf> {
    LIB_DIRS
        .iter()
        .flat_map(|d| names.iter().map(move |n| Path::new(d).join(n)))
        .find(|p| p.is_file())
}

/// The target directory this binary was built in (`<target>/release/examples/compare`).
fn target_dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("CARGO_TARGET_DIR") {
        return Some(PathBuf::from(d));
    }
    let exe = std::env::current_exe().ok()?;
    Some(exe.parent()?.parent()?.parent()?.to_path_buf())
}

/// `libflistalloc.so`: `--lib PATH`, or `<target>/release-c/libflistalloc.so`,
/// built with cargo when it is missing.
fn flist_lib(opts: &CmdOptions) -> Result<PathBuf, String> {
    if let Some(l) = &opts.lib {
        let p = PathBuf::from(l);
        return if p.is_file() {
            Ok(std::fs::canonicalize(&p).unwrap_or(p))
        } else {
            Err(format!("--lib {l}: no such file"))
        };
    }
    let target = target_dir().ok_or("cannot find the cargo target directory")?;
    let lib = target.join("release-c").join("libflistalloc.so");
    if !lib.is_file() {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        eprintln!(
            "compare: {} is missing; building it: cargo build --profile release-c -p flistalloc-c",
            lib.display()
        );
        let status = Command::new(&cargo)
            .args(["build", "--profile", "release-c", "-p", "flistalloc-c"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env("CARGO_TARGET_DIR", &target)
            .stdin(Stdio::null())
            .status()
            .map_err(|e| format!("cannot run cargo to build libflistalloc.so: {e}"))?;
        if !status.success() || !lib.is_file() {
            return Err(format!(
                "building libflistalloc.so failed ({status}); build it by hand with \
                 `cargo build --profile release-c -p flistalloc-c`, or pass --lib PATH, or leave out \
                 the flist/malloc/jemalloc columns (--columns libjemalloc,libmimalloc,system)"
            ));
        }
    }
    Ok(std::fs::canonicalize(&lib).unwrap_or(lib))
}

/// The columns for a program of `kind`.
fn columns(opts: &CmdOptions, kind: &Kind) -> Result<Vec<Col>, String> {
    let flist_prog = *kind == Kind::Flist;
    let asked = |n: &str| {
        opts.columns
            .as_ref()
            .is_none_or(|c| c.iter().any(|x| x == n))
    };
    let explicit = |n: &str| {
        opts.columns
            .as_ref()
            .is_some_and(|c| c.iter().any(|x| x == n))
    };
    let mut cols = Vec::new();
    let backends = [
        ("flist", "flist"),
        ("malloc", "malloc"),
        ("jemalloc", "jemalloc"),
    ];
    if backends.iter().any(|(n, _)| asked(n)) {
        let lib = if flist_prog {
            None
        } else {
            Some(flist_lib(opts)?)
        };
        for (name, backend) in backends {
            if asked(name) {
                cols.push(Col {
                    name,
                    color: color(name),
                    preload: lib.clone(),
                    backend: Some(backend),
                });
            }
        }
    }
    for (name, names, pkg) in [
        ("libjemalloc", &JEMALLOC_NAMES[..], "libjemalloc2"),
        ("libmimalloc", &MIMALLOC_NAMES[..], "libmimalloc2.0"),
    ] {
        if !asked(name) {
            continue;
        }
        match find_lib(names) {
            Some(p) => cols.push(Col {
                name,
                color: color(name),
                preload: Some(p),
                // A Flist program hands every request to malloc, which is
                // then the preloaded library's.
                backend: flist_prog.then_some("malloc"),
            }),
            None if explicit(name) => {
                return Err(format!(
                    "--columns {name}: {} is not installed in {} (Debian: apt-get install {pkg})",
                    names.join(" or "),
                    LIB_DIRS.join(", ")
                ))
            }
            None => eprintln!(
                "compare: note: no {} installed (Debian: apt-get install {pkg}); no {name} column",
                names[0]
            ),
        }
    }
    if explicit("system") || (asked("system") && !flist_prog) {
        cols.push(Col {
            name: "system",
            color: color("system"),
            preload: None,
            backend: None,
        });
    }
    if cols.is_empty() {
        return Err("no column to run".to_owned());
    }
    // The table follows the --columns order.
    if let Some(order) = &opts.columns {
        cols.sort_by_key(|c| order.iter().position(|n| n == c.name));
    }
    Ok(cols)
}

/// Checks that `col`'s environment gives the program the allocator it
/// names (see the module's documentation); returns the proof as text.
fn prove(col: &Col, program: &Path, kind: &Kind) -> Result<String, String> {
    let flist_text = |backend: Option<&str>| {
        format!(
            "Flist program (its binary holds Flist's configuration reader); FLISTALLOC_BACKEND={}",
            backend.unwrap_or("flist (its default)")
        )
    };
    if *kind == Kind::Flist && col.preload.is_none() {
        return Ok(flist_text(col.backend));
    }
    // 1. The environment: who serves malloc, and which flistalloc backend.
    let mut cmd = support::child::own_command()?;
    cmd.arg("--probe");
    col.configure(&mut cmd);
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run the probe: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("probe "))
        .ok_or_else(|| {
            format!(
                "column {}: the probe ({}) failed ({}): {}{}",
                col.name,
                col.env_text(),
                out.status,
                text,
                String::from_utf8_lossy(&out.stderr)
            )
        })?;
    let field = |name: &str| {
        line.split(' ')
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
            .unwrap_or("?")
            .to_owned()
    };
    let (malloc, backend) = (field("malloc"), field("backend"));
    let same_file =
        |a: &str, b: &Path| std::fs::canonicalize(a).ok() == std::fs::canonicalize(b).ok();
    match &col.preload {
        Some(p) if !same_file(&malloc, p) => {
            return Err(format!(
                "column {}: with {} malloc is served by {malloc}, not by {}",
                col.name,
                col.env_text(),
                p.display()
            ))
        }
        None if !Path::new(&malloc)
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("libc.so")) =>
        {
            return Err(format!(
                "column {}: with nothing preloaded malloc is served by {malloc}, not by libc",
                col.name
            ))
        }
        _ => {}
    }
    let mut proof = format!("malloc() from {malloc}");
    // (In a Flist program FLISTALLOC_BACKEND is Flist's, not a library's.)
    if let Some(b) = col.backend.filter(|_| *kind != Kind::Flist) {
        if backend != b {
            return Err(format!(
                "column {}: with {} flistalloc_backend() says {backend:?}, not {b:?}",
                col.name,
                col.env_text()
            ));
        }
        proof.push_str(&format!(", flistalloc_backend() = {backend:?}"));
    }
    // 2. The program: does the loader map the preloaded file into it?
    let Some(lib) = &col.preload else {
        return Ok(proof);
    };
    if *kind == Kind::Flist {
        // Flist's malloc backend calls malloc, which is the preloaded one's.
        return Ok(format!("{}; {proof}", flist_text(col.backend)));
    }
    let elf = match kind {
        Kind::Dynamic => program.to_path_buf(),
        Kind::Script(i) => i.clone(),
        Kind::Static => {
            return Err(format!(
                "{} is statically linked: LD_PRELOAD cannot replace its malloc \
                 (only --columns system can measure it)",
                program.display()
            ))
        }
        Kind::Unknown(why) => {
            proof.push_str(&format!("; the program is {why}"));
            return Ok(proof);
        }
        Kind::Flist => return Ok(proof),
    };
    let ld = loader().ok_or("no dynamic loader found to check the program with")?;
    let list = Command::new(ld)
        .arg("--list")
        .arg(&elf)
        .env_remove("FLISTALLOC_BACKEND")
        .env("LD_PRELOAD", lib)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {ld} --list: {e}"))?;
    let listed = String::from_utf8_lossy(&list.stdout);
    let lib_text = lib.to_string_lossy();
    if !listed.lines().any(|l| l.contains(lib_text.as_ref())) {
        return Err(format!(
            "column {}: the loader does not map {lib_text} into {} ({ld} --list said: {listed})",
            col.name,
            elf.display()
        ));
    }
    proof.push_str(&format!("; the loader maps it into {}", elf.display()));
    Ok(proof)
}

// ---------------------------------------------------------------------------
// Runs

/// How one run ended. Its stdout and stderr are in files (unlinked
/// temporary files, rewound), not in compare's memory: compare stays small
/// while it launches, so its forked children start small too.
struct Outcome {
    nanos: u64,
    /// `ru_maxrss` from `wait4`, kB.
    maxrss_kb: u64,
    status: ExitStatus,
    stdout: std::fs::File,
    stderr: std::fs::File,
}

/// A fresh unlinked temporary file, open for reading and writing.
fn temp_file() -> Result<std::fs::File, String> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let path = std::env::temp_dir().join(format!(
        "flistalloc-compare-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(|e| format!("cannot create a temporary file {}: {e}", path.display()))?;
    let _ = std::fs::remove_file(&path);
    Ok(f)
}

/// FNV-1a of a whole file from its start, and its length; the file is
/// left rewound.
fn hash_file(f: &mut std::fs::File) -> Result<(u64, u64), String> {
    use std::io::Seek as _;
    let err = |e: std::io::Error| format!("temporary file: {e}");
    f.rewind().map_err(err)?;
    let r = support::checksum::fnv_reader(&mut *f).map_err(err)?;
    f.rewind().map_err(err)?;
    Ok(r)
}

fn status_text(s: &ExitStatus) -> String {
    match (s.code(), s.signal()) {
        (Some(c), _) => format!("exit {c}"),
        (None, Some(sig)) => format!(
            "killed by signal {sig}{}",
            if s.core_dumped() {
                " (core dumped)"
            } else {
                ""
            }
        ),
        _ => format!("{s}"),
    }
}

/// Runs the program once with `col`'s environment, its stdin from `stdin`
/// (a file, read from its start) or `/dev/null`.
///
/// It is started with fork + exec, never `posix_spawn`: std's `Command`
/// uses `posix_spawn` (a `vfork`-like clone sharing compare's memory) unless
/// a `pre_exec` hook is set, and then the kernel hands compare's RSS
/// high-water mark to the child's `ru_maxrss` at exec. After a real fork the
/// child starts from compare's *current* resident pages (a few MiB), which
/// exec then drops.
fn run_once(
    program: &Path,
    argv: &[String],
    col: &Col,
    stdin: Option<&std::fs::File>,
) -> Result<Outcome, String> {
    let mut cmd = Command::new(program);
    cmd.arg0(&argv[0]).args(&argv[1..]);
    col.configure(&mut cmd);
    let stdin = match stdin {
        Some(f) => {
            let mut f = f
                .try_clone()
                .map_err(|e| format!("--stdin: cannot reopen it: {e}"))?;
            std::io::Seek::rewind(&mut f).map_err(|e| format!("--stdin: {e}"))?;
            Stdio::from(f)
        }
        None => Stdio::null(),
    };
    let (stdout, stderr) = (temp_file()?, temp_file()?);
    let clone = |f: &std::fs::File| {
        f.try_clone()
            .map(Stdio::from)
            .map_err(|e| format!("temporary file: {e}"))
    };
    cmd.stdin(stdin)
        .stdout(clone(&stdout)?)
        .stderr(clone(&stderr)?);
    // SAFETY: the hook does nothing (it touches no memory, takes no lock
    // and allocates nothing), so it is trivially async-signal-safe in the
    // forked child; it is there only so that std forks instead of using
    // posix_spawn (see above).
    unsafe {
        cmd.pre_exec(|| Ok(()));
    }
    let start = Instant::now();
    let child = cmd
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", program.display()))?;
    // Our copies of the child's ends: closed, so nothing but the child holds them.
    drop(cmd);
    let pid = child.id() as libc::pid_t;
    let mut status: libc::c_int = 0;
    // SAFETY: rusage is plain integers and timevals: all zeroes is valid.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: `pid` is our own child, not reaped yet (std's `Child` is
        // never waited on: it is dropped below without `wait`); `status`
        // and `usage` are valid, writable locals.
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if r == pid {
            break;
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(format!("wait4 for {}: {e}", program.display()));
        }
    }
    let nanos = start.elapsed().as_nanos() as u64;
    drop(child);
    Ok(Outcome {
        nanos,
        // Linux gives ru_maxrss in kilobytes.
        maxrss_kb: usage.ru_maxrss.max(0) as u64,
        status: ExitStatus::from_raw(status),
        stdout,
        stderr,
    })
}

/// The first line where files `a` and `b` differ (both read from their
/// start, a line at a time), for the error message.
fn first_difference(a: &std::fs::File, b: &std::fs::File) -> String {
    use std::io::{BufRead as _, BufReader, Seek as _};
    let open = |f: &std::fs::File| {
        let mut f = f.try_clone().ok()?;
        f.rewind().ok()?;
        Some(BufReader::new(f))
    };
    let (Some(mut ra), Some(mut rb)) = (open(a), open(b)) else {
        return "(cannot reread the outputs)".to_owned();
    };
    let show = |l: &[u8]| {
        if l.is_empty() {
            "(no such line)".to_owned()
        } else {
            format!(
                "{:?}",
                String::from_utf8_lossy(l.strip_suffix(b"\n").unwrap_or(l))
            )
        }
    };
    let (mut la, mut lb) = (Vec::new(), Vec::new());
    for i in 1.. {
        la.clear();
        lb.clear();
        let na = ra.read_until(b'\n', &mut la).unwrap_or(0);
        let nb = rb.read_until(b'\n', &mut lb).unwrap_or(0);
        if la != lb {
            return format!("line {i}: {} vs {}", show(&la), show(&lb));
        }
        if na == 0 && nb == 0 {
            break;
        }
    }
    "(same lines)".to_owned()
}

/// The last `lines` lines of a file (its last 64 KiB at most).
fn tail_file(f: &std::fs::File, lines: usize) -> String {
    use std::io::{Seek as _, SeekFrom};
    let Ok(mut f) = f.try_clone() else {
        return String::new();
    };
    let len = f.seek(SeekFrom::End(0)).unwrap_or(0);
    let _ = f.seek(SeekFrom::Start(len.saturating_sub(64 << 10)));
    let mut buf = Vec::new();
    let _ = f.read_to_end(&mut buf);
    tail(&buf, lines)
}

fn tail(bytes: &[u8], lines: usize) -> String {
    let text = String::from_utf8_lossy(bytes);
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

// ---------------------------------------------------------------------------
// The whole `--cmd` job

pub fn compare_cmd(opts: &CmdOptions, args: &[String]) -> Result<(), String> {
    let program = resolve(&opts.argv[0])?;
    // What runs: the program, or through `env [NAME=VALUE...] PROG`, PROG.
    let (runs_what, through_env) = env_target(&program, &opts.argv)?;
    let kind = inspect(&runs_what)?;
    // Compare's own stdin, read once into a temporary file: every run reads
    // that file from its start (a --stdin file is opened directly).
    let stdin: Option<std::fs::File> = match opts.stdin.as_deref() {
        None => None,
        Some("-") => {
            let mut f = temp_file()?;
            std::io::copy(&mut std::io::stdin().lock(), &mut f)
                .map_err(|e| format!("cannot read stdin: {e}"))?;
            Some(f)
        }
        Some(p) => Some(std::fs::File::open(p).map_err(|e| format!("--stdin {p}: {e}"))?),
    };
    let cols = columns(opts, &kind)?;
    if through_env {
        eprintln!(
            "compare: {} runs {}, which is {}",
            program.display(),
            runs_what.display(),
            kind.describe()
        );
    } else {
        eprintln!("compare: {} is {}", program.display(), kind.describe());
    }
    let own = own_allocator(&runs_what, &kind);
    if let Some(a) = &own {
        eprintln!("compare: WARNING: {a}");
    }
    let mut proofs = Vec::new();
    for c in &cols {
        let mut p = prove(c, &runs_what, &kind)?;
        if own.is_some() {
            p = format!("DOES NOT HOLD: the program links its own allocator; {p}");
        }
        eprintln!("compare: {:<11} {}: {p}", c.name, c.env_text());
        proofs.push(p);
    }

    // Rounds outermost, columns inside; first `warmup` untimed rounds. Round
    // r runs the columns rotated by r, so no column is always first.
    let n = cols.len();
    let total = n * opts.runs;
    let mut samples: Vec<Vec<Sample>> = vec![Vec::new(); n];
    let mut statuses: Vec<Vec<ExitStatus>> = vec![Vec::new(); n];
    let mut failures = Vec::new();
    // The first timed run's stdout (kept as a file), its hash and length.
    let mut reference: Option<(String, std::fs::File, u64, u64)> = None;
    let mut output_diff = None;
    let started = Instant::now();
    let mut done = 0;
    for round in 0..opts.warmup + opts.runs {
        let warm = round < opts.warmup;
        for k in 0..n {
            let ci = (k + round) % n;
            let c = &cols[ci];
            let mut o = run_once(&program, &opts.argv, c, stdin.as_ref())?;
            let (hash, len) = hash_file(&mut o.stdout)?;
            let run = round + 1 - opts.warmup.min(round + 1);
            let what = if warm {
                format!(
                    "[warm-up] {:<11} round {}/{}",
                    c.name,
                    round + 1,
                    opts.warmup
                )
            } else {
                done += 1;
                format!("[{done:>3}/{total}] {:<11} run {run}/{}", c.name, opts.runs)
            };
            eprintln!(
                "{what}: {:>10.1} ms  peak {:>8.1} MiB  {}",
                o.nanos as f64 / 1e6,
                mib(o.maxrss_kb),
                status_text(&o.status)
            );
            let who = if warm {
                format!("{} warm-up {}", c.name, round + 1)
            } else {
                format!("{} run {run}", c.name)
            };
            if !o.status.success() {
                failures.push(format!(
                    "{who}: {}\n--- last lines of its stderr:\n{}",
                    status_text(&o.status),
                    tail_file(&o.stderr, 15)
                ));
            }
            if warm {
                continue;
            }
            match &reference {
                None => reference = Some((who, o.stdout, hash, len)),
                Some((first, out, h, _))
                    if opts.check_output && output_diff.is_none() && *h != hash =>
                {
                    output_diff = Some(format!(
                        "the output differs: {who} against {first}, {}",
                        first_difference(out, &o.stdout)
                    ));
                }
                _ => {}
            }
            samples[ci].push(Sample {
                nanos: o.nanos,
                checksum: hash,
                hwm_kb: o.maxrss_kb,
                base_kb: 0,
                final_rss_kb: None,
                live_bytes: None,
            });
            statuses[ci].push(o.status);
        }
    }

    // The row's label: the program's name; through `env [NAME=VALUE...]`,
    // the name of the program env runs.
    let label: &'static str = Box::leak(
        runs_what
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "program".to_owned())
            .into_boxed_str(),
    );
    let rows = vec![Row {
        name: label,
        letter: None,
        about: "",
    }];
    let columns: Vec<Column> = cols
        .iter()
        .map(|c| Column {
            name: c.name,
            color: c.color,
        })
        .collect();
    let results = Matrix::new(rows, columns, vec![samples], Peak::Median);
    let meta = Meta::now(
        format!(
            "{}{}",
            allocator_env(),
            support::report::command_line("cargo run --release --example compare", args)
        ),
        "as given",
        opts.runs,
    );

    // The table.
    println!(
        "flistalloc compare --cmd: median wall time of {} run(s) per column; peak RSS = ru_maxrss from wait4",
        opts.runs
    );
    println!("{}, {} cores, {}", meta.cpu, meta.cores, meta.date);
    println!("command: {}", meta.command);
    if through_env {
        println!(
            "program: {} via {} ({})",
            runs_what.display(),
            program.display(),
            kind.describe()
        );
    } else {
        println!("program: {} ({})", program.display(), kind.describe());
    }
    if let Some(a) = &own {
        println!("WARNING: {a}");
    }
    println!("argv:    {:?}", opts.argv);
    println!();
    results.print_table(&TableStyle {
        label_width: label.len().clamp(8, 16),
        column_width: 11,
        column_header: "allocator",
        ratio_header: "x best",
        rule: 66,
    });
    println!();
    println!("exit status and proof of the allocator, per column:");
    for (ci, c) in cols.iter().enumerate() {
        let ok = statuses[ci].iter().filter(|s| s.success()).count();
        let st = if ok == statuses[ci].len() {
            format!("exit 0 in {ok}/{} runs", statuses[ci].len())
        } else {
            let all: Vec<String> = statuses[ci].iter().map(status_text).collect();
            format!("FAILED: {}", all.join(", "))
        };
        println!("  {:<11} {st}", c.name);
        println!("  {:<11} {}", "", c.env_text());
        println!("  {:<11} {}", "", proofs[ci]);
    }
    let glibc = ["system", "malloc"]
        .into_iter()
        .find(|n| results.column(n).is_some());
    if let (Some(_), Some(g)) = (results.column("flist"), glibc) {
        let fi = results.column("flist").unwrap_or(0);
        let cells = &results.cells[0];
        let t = results.time_vs("flist", g).unwrap_or(f64::NAN);
        let smallest_other = cells
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != fi)
            .map(|(_, c)| c.hwm_kb)
            .min();
        // A target is evaluated only when every run of the columns it
        // involves succeeded (and the columns are what they say they are).
        let all_ok = |i: usize| statuses[i].iter().all(|s| s.success());
        let gi = results.column(g).unwrap_or(0);
        println!();
        println!("targets:");
        let verdict = |ok: bool| if ok { "met" } else { "MISSED" };
        let line = |what: String, v: f64| {
            println!(
                "  {what:<46} {v:>5.2}x  (target <= 1.00x: {})",
                verdict(v <= 1.0)
            );
        };
        let skip = |what: &str, why: &str| println!("  {what:<46} not evaluated: {why}");
        let time_what = format!("flist time / glibc ({g})");
        let rss_what = "flist peak RSS / the smallest of the others";
        if own.is_some() {
            let why = "the program links its own allocator";
            skip(&time_what, why);
            skip(rss_what, why);
        } else {
            if all_ok(fi) && all_ok(gi) {
                line(time_what, t);
            } else {
                skip(&time_what, "a run of flist or glibc failed");
            }
            if let Some(m) = smallest_other {
                if (0..cols.len()).all(all_ok) {
                    let r = cells[fi].hwm_kb as f64 / m.max(1) as f64;
                    line(rss_what.to_owned(), r);
                } else {
                    skip(rss_what, "a run failed");
                }
            }
        }
    }
    if opts.check_output {
        println!();
        match &output_diff {
            None => println!(
                "output: stdout identical in all {total} runs ({} bytes)",
                reference.as_ref().map_or(0, |r| r.3)
            ),
            Some(d) => println!("output: DIFFERS: {d}"),
        }
    }
    eprintln!(
        "compare: {total} runs in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    if let Some(path) = &opts.json {
        let per: Vec<Value> = cols
            .iter()
            .enumerate()
            .map(|(ci, c)| {
                json!({
                    "name": c.name,
                    "ld_preload": c.preload.as_ref().map(|p| p.display().to_string()),
                    "flistalloc_backend": c.backend,
                    "proof": proofs[ci],
                    "exit_statuses": statuses[ci].iter().map(status_text).collect::<Vec<_>>(),
                    "peak_rss_kib_per_run": results.cells[0][ci].samples.iter().map(|s| s.hwm_kb).collect::<Vec<_>>(),
                })
            })
            .collect();
        let cmd = json!({
            "argv": opts.argv,
            "program": program.display().to_string(),
            "kind": kind.json_name(),
            "columns": per,
            "output_check": if opts.check_output {
                json!(output_diff.clone().unwrap_or_else(|| "same".to_owned()))
            } else {
                Value::Null
            },
            "failures": failures.len(),
            "warmup_rounds": opts.warmup,
            "runs_program": runs_what.display().to_string(),
            "own_allocator": own,
        });
        let j = results.to_json(
            "flistalloc examples/compare --cmd",
            &meta,
            vec![("cmd", cmd)],
        );
        support::report::write_file(path, &j.to_string())?;
        eprintln!("compare: wrote {path}");
    }
    if let Some(path) = &opts.svg {
        let title = format!(
            "flistalloc compare --cmd {}: time and peak RSS relative to the best (lower is better)",
            opts.argv.join(" ")
        );
        support::report::write_file(path, &results.to_svg(&title, &meta))?;
        eprintln!("compare: wrote {path}");
    }

    let mut errors = Vec::new();
    if !failures.is_empty() {
        let warm = failures.iter().filter(|f| f.contains(" warm-up ")).count();
        let warm_text = if warm > 0 {
            format!(" (and in {warm} of {} warm-up runs)", n * opts.warmup)
        } else {
            String::new()
        };
        errors.push(format!(
            "the program failed in {} of {total} runs{warm_text}:\n{}",
            failures.len() - warm,
            failures.join("\n")
        ));
    }
    if let Some(d) = output_diff {
        errors.push(d);
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors.join("\n"))
    }
}
