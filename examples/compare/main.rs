//! The main job: is flistalloc better than what I use now, for which kind of
//! program, by how much, in time and in memory held?
//!
//! ```text
//! cargo run --release --example compare                      # full sizes, median of 3 runs
//! cargo run --release --example compare -- --quick           # small sizes, a smoke test (< 20 s)
//! cargo run --release --example compare -- --only json,frag --runs 5
//! cargo run --release --example compare -- --json out.json --svg out.svg
//! ```
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
//!
//! (The explicit `Arena` API against malloc, single-threaded:
//! `examples/arena_compare.rs`.)

mod allocators;
mod report;
mod workloads;

use allocators::{use_mimalloc, Alloc};
use std::process::ExitCode;
use std::time::{Duration, Instant};
use support::child::{self, Progress, Sample};
use support::cli::{self, Arg, Parser};
use support::report::{Column, Matrix, Meta, Peak, Row};
use support::scale::Scale;
use workloads::{Workload, WORKLOADS};

// ---------------------------------------------------------------------------
// Usage and options

const USAGE: &str = "\
usage: compare [--quick] [--runs N] [--only NAME[,NAME...]] [--json PATH] [--svg PATH]

Runs eight allocation workloads with flist, glibc malloc, jemalloc and mimalloc,
each (workload, allocator, run) in a fresh child process, checks that all give
the same checksum, and prints median time, peak RSS and ratios to the best.

  --quick        small sizes: a smoke test, the whole run takes a few seconds
  --runs N       runs per (workload, allocator), N >= 1; the table shows the
                 median time (default 3)
  --only NAMES   only these workloads, comma-separated:
                 json, maps, prodcons, server, churn, frag
  --json PATH    also write the results as JSON to PATH
  --svg PATH     also write a bar chart (time and peak RSS ratios) to PATH
  -h, --help     this message

Exit status: 0 on success, 1 if a child fails or checksums disagree, 2 on bad
arguments.";

struct Options {
    scale: Scale,
    runs: usize,
    only: Option<Vec<String>>,
    json: Option<String>,
    svg: Option<String>,
}

/// Parses the command line (lexopt); `None` for `-h` / `--help`.
fn parse_args(args: &[String]) -> Result<Option<Options>, String> {
    let mut opts = Options {
        scale: Scale::Full,
        runs: 3,
        only: None,
        json: None,
        svg: None,
    };
    let known: Vec<&str> = WORKLOADS.iter().map(|w| w.name).collect();
    let mut p = Parser::from_args(args);
    while let Some(arg) = cli::next(&mut p)? {
        match arg {
            Arg::Short('h') | Arg::Long("help") => return Ok(None),
            Arg::Long("quick") => opts.scale = Scale::Quick,
            Arg::Long("runs") => opts.runs = cli::runs(&mut p)?,
            Arg::Long("only") => opts.only = Some(cli::only(&mut p, &known)?),
            Arg::Long("json") => opts.json = Some(cli::value(&mut p, "--json", "a file path")?),
            Arg::Long("svg") => opts.svg = Some(cli::value(&mut p, "--svg", "a file path")?),
            arg => return Err(cli::unknown(arg)),
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
    let got = if use_mimalloc() {
        "mimalloc"
    } else {
        flistalloc::backend().name()
    };
    let asked = if std::env::var("COMPARE_ALLOC").as_deref() == Ok("mimalloc") {
        "mimalloc".to_owned()
    } else {
        std::env::var("FLISTALLOC_BACKEND").unwrap_or_else(|_| "flist".to_owned())
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
    let opts = match cli::or_usage("compare", USAGE, parse_args(&args)) {
        Ok(o) => o,
        Err(exit) => return exit,
    };
    if cfg!(debug_assertions) {
        eprintln!("compare: warning: a debug build; timings mean little (use --release)");
    }
    cli::exit_status("compare", compare(&opts, &args))
}

fn compare(opts: &Options, args: &[String]) -> Result<(), String> {
    let workloads: Vec<&'static Workload> = WORKLOADS
        .iter()
        .filter(|w| cli::selected(&opts.only, w.name))
        .collect();
    let allocs = Alloc::ALL;
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
