//! The main job: is flistalloc better than what I use now, for which kind of
//! program, by how much, in time and in memory held?
//!
//! ```text
//! cargo run --release --example compare                      # full sizes, median of 3 runs
//! cargo run --release --example compare -- --quick           # small sizes, a smoke test (< 20 s)
//! cargo run --release --example compare -- --only json,frag --runs 5
//! cargo run --release --example compare -- --json out.json --svg out.svg
//! cargo run --release --example compare -- --cmd 'python3 script.py' --runs 5
//! cargo run --release --example compare -- --check-output -- git log --oneline
//! ```
//!
//! With `--cmd` (or a command after `--`) it compares the backends on any
//! existing program instead: see `cmd.rs`.
//!
//! Eight workloads, (a) to (h), each run with four allocators: `flist`,
//! `malloc` (glibc) and `jemalloc` (the three run-time backends of
//! [`flistalloc::Flist`], chosen by `FLISTALLOC_BACKEND`) and `mimalloc`.
//!
//! Every (workload, backend, run) executes in a fresh child process: this
//! same binary re-executed as `compare --child WORKLOAD [--quick]` with
//! `FLISTALLOC_BACKEND=flist|malloc|jemalloc` or `COMPARE_ALLOC=mimalloc` in
//! its environment, so each child's peak RSS (`VmHWM` of
//! `/proc/self/status`) belongs to one workload on one allocator. The child
//! checks that it got the allocator it was asked for, runs the workload once,
//! and prints one `result ...` line (time, checksum, peak RSS; for `frag` also
//! the final RSS and the live bytes). The parent prints a progress line per
//! run on stderr and the table on stdout.
//!
//! Checksums are sums over the work done (never orders, addresses, thread
//! schedules or hash seeds), so every allocator must give the same one for a
//! workload. A mismatch, a crashed child or a child that got the wrong
//! allocator is an error: it is printed and the exit status is 1. Bad
//! arguments: usage on stderr, exit status 2.
//!
//! # One binary, four allocators
//!
//! The `#[global_allocator]` here is `Switch` (in `allocators.rs`), a few
//! lines that forward every call either to `mimalloc::MiMalloc` or to a
//! `static FLIST: flistalloc::Flist = flistalloc::Flist::new()`, which reads
//! `FLISTALLOC_BACKEND` itself. Which one is decided once, at the first
//! allocation, from `COMPARE_ALLOC` (read with `getenv`, which does not
//! allocate). The dispatch is one well-predicted branch on a static per call,
//! paid by all four columns alike.
//!
//! # Files
//!
//! * `main.rs`: the command line, the parent (runs the children, checks
//!   checksums) and the child (one workload, one result line).
//! * `allocators.rs`: the allocator switch and the four columns.
//! * `workloads/`: the eight workloads, one file each.
//! * `report.rs`: the table, JSON and chart (mostly in the support crate).
//! * `cmd.rs`: `--cmd`, any program under each backend (`LD_PRELOAD` of
//!   `libflistalloc.so`, the system's jemalloc and mimalloc, or
//!   `FLISTALLOC_BACKEND` alone for a Rust program that uses `Flist`).
//!
//! (The explicit `Arena` API against malloc, single-threaded:
//! `examples/arena_compare.rs`.)

mod allocators;
mod cmd;
mod report;
mod workloads;

use allocators::{direct_name, Alloc};
use std::process::ExitCode;
use std::time::{Duration, Instant};
use support::child::{self, Progress, Sample};
use support::cli::{self, Arg, Parser};
use support::report::{Column, Matrix, Meta, Peak, Row};
use support::scale::Scale;
use workloads::{Workload, WORKLOADS};

// ---------------------------------------------------------------------------
// Usage and options

/// The usage text; `{WORKLOADS}` is replaced by the workload names, from
/// the workload table.
const USAGE: &str = "\
usage: compare [--quick] [--runs N] [--only NAME[,NAME...]] [--direct] [--json PATH] [--svg PATH]
       compare --cmd 'PROGRAM ARGS...' [--runs N] [--check-output] [--stdin PATH]
               [--columns NAME[,NAME...]] [--lib PATH] [--json PATH] [--svg PATH]
       compare [OPTIONS] -- PROGRAM ARGS...

Runs {COUNT} allocation workloads with flist, glibc malloc, jemalloc and mimalloc,
each (workload, allocator, run) in a fresh child process, checks that all give
the same checksum, and prints median time, peak RSS and ratios to the best.

  --quick        small sizes: a smoke test, the whole run takes 10-25 seconds
  --runs N       runs per (workload, allocator), N >= 1; the table shows the
                 median time (default 3)
  --only NAMES   only these workloads, comma-separated:
                 {WORKLOADS}
  --json PATH    also write the results as JSON to PATH
  --svg PATH     also write a bar chart (time and peak RSS ratios) to PATH
  --direct       two more columns: jemalloc (tikv-jemallocator) and glibc
                 (std's System) installed directly, to measure what the
                 malloc and jemalloc columns pay for going through Flist
  -h, --help     this message

Any existing program instead of the workloads:
  --cmd 'PROGRAM ARGS...'  split into words like a shell would (quotes,
                 backslashes), but there is no shell: no variables ($X,
                 NAME=VALUE prefixes), globs, pipes or redirections. Use
                 `env NAME=VALUE PROGRAM ...` or `sh -c '...'` (then sh is
                 what the proof checks). Or put the program and its
                 arguments, verbatim, after `--`.
                 Columns: flist, malloc, jemalloc (LD_PRELOAD of
                 libflistalloc.so with FLISTALLOC_BACKEND; built if missing),
                 libjemalloc and libmimalloc (the system's, when installed),
                 system (nothing preloaded). A Rust program using
                 flistalloc::Flist is switched by FLISTALLOC_BACKEND alone.
  --check-output the program's stdout must be the same in every run
  --warmup N     untimed rounds before the timed runs, each running every
                 column once (default 1); the column order rotates by one
                 each round, so no column always goes first
  --stdin PATH   feed this file to every run (`-`: compare's own stdin, read
                 once); without it the program's stdin is /dev/null
  --columns NAMES  only these columns, in this table order, each once:
                 flist, malloc, jemalloc, libjemalloc, libmimalloc, system
  --lib PATH     the libflistalloc.so to preload (default:
                 <target>/release-c/libflistalloc.so)

Exit status: 0 on success, 1 if a child fails or checksums disagree (with
--cmd: the program fails in a run, --check-output finds different output, a
column cannot be proven, or the program is not found), 2 on bad arguments.";

struct Options {
    scale: Scale,
    runs: usize,
    only: Option<Vec<String>>,
    json: Option<String>,
    svg: Option<String>,
    /// `--direct`: two more columns, jemalloc and glibc installed directly.
    direct: bool,
    /// `--cmd` (or `-- PROGRAM ARGS...`) and its options.
    cmd: Option<cmd::CmdOptions>,
}

/// Parses the command line (lexopt); `None` for `-h` / `--help`. Everything
/// after the first `--` is the program to run and its arguments, verbatim.
fn parse_args(args: &[String]) -> Result<Option<Options>, String> {
    let mut opts = Options {
        scale: Scale::Full,
        runs: 3,
        only: None,
        json: None,
        svg: None,
        direct: false,
        cmd: None,
    };
    let (mine, after) = match args.iter().position(|a| a == "--") {
        Some(i) => (&args[..i], Some(&args[i + 1..])),
        None => (args, None),
    };
    let known: Vec<&str> = WORKLOADS.iter().map(|w| w.name).collect();
    let mut argv: Option<Vec<String>> = None;
    let (mut check_output, mut lib, mut columns, mut stdin) = (false, None, None, None);
    let mut warmup: Option<usize> = None;
    let mut quick_or_only = None;
    let mut p = Parser::from_args(mine);
    while let Some(arg) = cli::next(&mut p)? {
        match arg {
            Arg::Short('h') | Arg::Long("help") => return Ok(None),
            Arg::Long("quick") => {
                opts.scale = Scale::Quick;
                quick_or_only = Some("--quick");
            }
            Arg::Long("runs") => opts.runs = cli::runs(&mut p)?,
            Arg::Long("only") => {
                opts.only = Some(cli::only(&mut p, &known)?);
                quick_or_only = Some("--only");
            }
            Arg::Long("json") => opts.json = Some(cli::value(&mut p, "--json", "a file path")?),
            Arg::Long("svg") => opts.svg = Some(cli::value(&mut p, "--svg", "a file path")?),
            Arg::Long("direct") => {
                opts.direct = true;
                quick_or_only = Some("--direct");
            }
            Arg::Long("cmd") => {
                let line = cli::value(&mut p, "--cmd", "a program to run")?;
                argv = Some(cli::split_command(&line)?);
            }
            Arg::Long("check-output") => check_output = true,
            Arg::Long("warmup") => {
                let v = cli::value(&mut p, "--warmup", "a number of rounds")?;
                warmup =
                    Some(v.parse().map_err(|_| {
                        format!("--warmup: expected a whole number >= 0, got {v:?}")
                    })?);
            }
            Arg::Long("lib") => lib = Some(cli::value(&mut p, "--lib", "a file path")?),
            Arg::Long("stdin") => stdin = Some(cli::value(&mut p, "--stdin", "a file path or -")?),
            Arg::Long("columns") => {
                let v = cli::value(&mut p, "--columns", "column names")?;
                let names: Vec<String> = v.split(',').map(|s| s.trim().to_owned()).collect();
                if let Some(bad) = names
                    .iter()
                    .find(|n| !cmd::COLUMN_NAMES.contains(&n.as_str()))
                {
                    return Err(format!(
                        "--columns: unknown column {bad:?} (known: {})",
                        cmd::COLUMN_NAMES.join(", ")
                    ));
                }
                if let Some((_, dup)) = names
                    .iter()
                    .enumerate()
                    .find(|(i, n)| names[..*i].contains(n))
                {
                    return Err(format!(
                        "--columns: column {dup:?} is given twice (each column once)"
                    ));
                }
                columns = Some(names);
            }
            arg => return Err(cli::unknown(arg)),
        }
    }
    if let Some(after) = after {
        if argv.is_some() {
            return Err("give the program either with --cmd or after --, not both".to_owned());
        }
        if after.is_empty() {
            return Err("-- needs a program to run after it".to_owned());
        }
        argv = Some(after.to_vec());
    }
    match argv {
        Some(argv) => {
            if let Some(o) = quick_or_only {
                return Err(format!("{o} is for the built-in workloads, not for --cmd"));
            }
            opts.cmd = Some(cmd::CmdOptions {
                argv,
                runs: opts.runs,
                json: opts.json.clone(),
                svg: opts.svg.clone(),
                check_output,
                lib,
                columns,
                stdin,
                warmup: warmup.unwrap_or(1),
            });
        }
        None => {
            let given = [
                (check_output, "--check-output"),
                (lib.is_some(), "--lib"),
                (columns.is_some(), "--columns"),
                (stdin.is_some(), "--stdin"),
                (warmup.is_some(), "--warmup"),
            ];
            if let Some((_, o)) = given.iter().find(|(g, _)| *g) {
                return Err(format!("{o} needs --cmd (a program to run)"));
            }
        }
    }
    Ok(Some(opts))
}

// ---------------------------------------------------------------------------
// Child: one workload on one allocator, one result line.

fn child(args: &[String]) -> ExitCode {
    let (name, scale) = match args {
        [name] => (name, Scale::Full),
        [name, q] if q == "--quick" => (name, Scale::Quick),
        _ => {
            eprintln!("compare --child: expected WORKLOAD [--quick], got {args:?}");
            return ExitCode::from(2);
        }
    };
    let Some(w) = WORKLOADS.iter().find(|w| w.name == name) else {
        eprintln!("compare --child: unknown workload {name:?}");
        return ExitCode::from(2);
    };
    // Did we get the allocator the parent asked for?
    let got = direct_name().unwrap_or_else(|| flistalloc::backend().name());
    let asked = match std::env::var("COMPARE_ALLOC") {
        Ok(a) => a,
        Err(_) => std::env::var("FLISTALLOC_BACKEND").unwrap_or_else(|_| "flist".to_owned()),
    };
    if got != asked {
        eprintln!("compare --child: asked for allocator {asked:?} but running on {got:?}");
        return ExitCode::from(3);
    }
    let sample = child::measure(|extra| (w.run)(scale, extra));
    println!("{}", sample.line(Some(got)));
    ExitCode::SUCCESS
}

// ---------------------------------------------------------------------------
// Parent: run the children, check, tabulate.

/// The widths of the progress lines on stderr.
const PROGRESS: Progress = Progress {
    count_width: 3,
    column_width: 8,
    ms_width: 9,
};

fn run_child(w: &Workload, a: Alloc, scale: Scale) -> Result<Sample, String> {
    let mut cmd = child::own_command()?;
    cmd.arg("--child").arg(w.name);
    if scale == Scale::Quick {
        cmd.arg("--quick");
    }
    a.configure(&mut cmd);
    let limit = Duration::from_secs(match scale {
        Scale::Full => 300,
        Scale::Quick => 60,
    });
    child::run(&mut cmd, Some(limit), &format!("{} / {}", w.name, a.name()))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--child") {
        return child(&args[1..]);
    }
    if args.first().map(String::as_str) == Some("--probe") {
        return cmd::probe();
    }
    // A Unix tool: killed quietly by SIGPIPE when its stdout is closed
    // (`compare ... | head -1`), not a panic on the failed write. Rust sets
    // SIGPIPE to ignored before main; the programs compare starts get the
    // default back from std anyway.
    // SAFETY: restoring a signal's default disposition at the start of
    // main, before any thread is started; no handler is installed.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let names: Vec<&str> = WORKLOADS.iter().map(|w| w.name).collect();
    let usage = USAGE
        .replace("{WORKLOADS}", &names.join(", "))
        .replace("{COUNT}", &names.len().to_string());
    let opts = match cli::or_usage("compare", &usage, parse_args(&args)) {
        Ok(o) => o,
        Err(exit) => return exit,
    };
    if cfg!(debug_assertions) {
        eprintln!("compare: warning: a debug build; timings mean little (use --release)");
    }
    if let Some(c) = &opts.cmd {
        return cli::exit_status("compare", cmd::compare_cmd(c, &args));
    }
    cli::exit_status("compare", compare(&opts, &args))
}

fn compare(opts: &Options, args: &[String]) -> Result<(), String> {
    let workloads: Vec<&'static Workload> = WORKLOADS
        .iter()
        .filter(|w| cli::selected(&opts.only, w.name))
        .collect();
    let allocs: Vec<Alloc> = if opts.direct {
        Alloc::ALL.iter().chain(&Alloc::DIRECT).copied().collect()
    } else {
        Alloc::ALL.to_vec()
    };
    let started = Instant::now();
    let rows: Vec<Row> = workloads
        .iter()
        .map(|w| Row {
            name: w.name,
            letter: Some(w.letter),
            about: w.about,
        })
        .collect();
    let columns: Vec<Column> = allocs
        .iter()
        .map(|a| Column {
            name: a.name(),
            color: a.color(),
        })
        .collect();
    let samples = child::sweep(&rows, &columns, opts.runs, &PROGRESS, |wi, ai| {
        run_child(workloads[wi], allocs[ai], opts.scale)
    })?;
    let total = workloads.len() * allocs.len() * opts.runs;
    let results = Matrix::new(rows, columns, samples, Peak::Median);
    let meta = Meta::now(
        support::report::command_line("cargo run --release --example compare", args),
        opts.scale.name(),
        opts.runs,
    );
    report::print_table(&results, &workloads, &meta);
    eprintln!(
        "compare: {total} runs in {:.1} s, checksums agree",
        started.elapsed().as_secs_f64()
    );
    if let Some(path) = &opts.json {
        support::report::write_file(path, &report::to_json(&results, &meta).to_string())?;
        eprintln!("compare: wrote {path}");
    }
    if let Some(path) = &opts.svg {
        support::report::write_file(path, &results.to_svg(report::SVG_TITLE, &meta))?;
        eprintln!("compare: wrote {path}");
    }
    Ok(())
}
