//! One measured run in a fresh child process, so that the child's peak RSS
//! (`VmHWM`) belongs to one workload on one allocator.
//!
//! The protocol: the parent re-executes its own binary with arguments of its
//! choosing ([`own_command`]); the child runs the work once under
//! [`measure`] and prints one line (see [`Sample::line`]):
//!
//! ```text
//! result [alloc=NAME] time_ns=N checksum=0x%016x hwm_kb=N base_kb=N [final_rss_kb=N live_bytes=N]
//! ```
//!
//! The parent reads it back with [`run`]; [`sweep`] runs every
//! (workload, allocator) pair `runs` times, prints progress and checks that
//! checksums agree.

use crate::report::{Column, Row};
use crate::rss;
use std::fmt::Write as _;
use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use wait_timeout::ChildExt as _;

/// What a workload may report besides its checksum.
#[derive(Clone, Copy, Debug, Default)]
pub struct Extra {
    /// `VmRSS` at the end of the workload, before teardown (kB).
    pub final_rss_kb: Option<u64>,
    /// Bytes the workload holds at that moment.
    pub live_bytes: Option<u64>,
}

/// What one child reported.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sample {
    pub nanos: u64,
    pub checksum: u64,
    /// Peak RSS (`VmHWM`), kB.
    pub hwm_kb: u64,
    /// RSS before the work started, kB.
    pub base_kb: u64,
    pub final_rss_kb: Option<u64>,
    pub live_bytes: Option<u64>,
}

/// The child's side: reads `VmRSS`, runs `work` once and times it, then
/// reads `VmHWM`. `work` returns its checksum.
pub fn measure(work: impl FnOnce(&mut Extra) -> u64) -> Sample {
    let base_kb = rss::current_kb().unwrap_or(0);
    let mut extra = Extra::default();
    let start = Instant::now();
    let checksum = work(&mut extra);
    let nanos = start.elapsed().as_nanos() as u64;
    // VmHWM is read from lazily synced counters; never report a peak below
    // an RSS the workload saw itself.
    let hwm_kb = rss::peak_kb()
        .unwrap_or(0)
        .max(extra.final_rss_kb.unwrap_or(0));
    Sample {
        nanos,
        checksum,
        hwm_kb,
        base_kb,
        final_rss_kb: extra.final_rss_kb,
        live_bytes: extra.live_bytes,
    }
}

impl Sample {
    /// The `result ...` line a child prints (without a newline); `alloc`
    /// names the allocator the child found itself running on.
    pub fn line(&self, alloc: Option<&str>) -> String {
        let mut line = String::from("result ");
        if let Some(a) = alloc {
            let _ = write!(line, "alloc={a} ");
        }
        let _ = write!(
            line,
            "time_ns={} checksum={:#018x} hwm_kb={} base_kb={}",
            self.nanos, self.checksum, self.hwm_kb, self.base_kb
        );
        if let (Some(rss), Some(live)) = (self.final_rss_kb, self.live_bytes) {
            let _ = write!(line, " final_rss_kb={rss} live_bytes={live}");
        }
        line
    }

    /// Reads the `result ...` line out of a child's stdout.
    pub fn parse(stdout: &str) -> Option<Sample> {
        let line = stdout.lines().find_map(|l| l.strip_prefix("result "))?;
        let field = |name: &str| {
            line.split_whitespace()
                .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
        };
        Some(Sample {
            nanos: field("time_ns")?.parse().ok()?,
            checksum: u64::from_str_radix(field("checksum")?.strip_prefix("0x")?, 16).ok()?,
            hwm_kb: field("hwm_kb")?.parse().ok()?,
            base_kb: field("base_kb")?.parse().ok()?,
            final_rss_kb: field("final_rss_kb").and_then(|v| v.parse().ok()),
            live_bytes: field("live_bytes").and_then(|v| v.parse().ok()),
        })
    }
}

/// A command that runs this same executable again.
pub fn own_command() -> Result<Command, String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find own executable: {e}"))?;
    Ok(Command::new(exe))
}

/// The parent's side: runs `cmd` (no stdin, output captured) and reads its
/// result line. A child that fails, prints no result line, or is still
/// running after `limit` (then killed) is an error naming it as `what`.
pub fn run(cmd: &mut Command, limit: Option<Duration>, what: &str) -> Result<Sample, String> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start child: {e}"))?;
    // Drain both pipes while waiting, so a chatty child never blocks.
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut buf);
            }
            buf
        })
    };
    let out = drain(child.stdout.take().map(|p| Box::new(p) as _));
    let err = drain(child.stderr.take().map(|p| Box::new(p) as _));
    let waited = match limit {
        Some(limit) => child.wait_timeout(limit),
        None => child.wait().map(Some),
    };
    let status = match waited {
        Ok(Some(status)) => status,
        Ok(None) => {
            let _ = child.kill();
            let _ = child.wait();
            let _ = (out.join(), err.join());
            return Err(format!(
                "child {what} did not finish within {} s (killed)",
                limit.map_or(0, |l| l.as_secs())
            ));
        }
        Err(e) => return Err(format!("waiting for child: {e}")),
    };
    let stdout = out.join().unwrap_or_default();
    let stderr = err.join().unwrap_or_default();
    let stdout = String::from_utf8_lossy(&stdout);
    if !status.success() {
        return Err(format!(
            "child {what} failed ({status}):\n--- stdout\n{stdout}--- stderr\n{}",
            String::from_utf8_lossy(&stderr)
        ));
    }
    Sample::parse(&stdout).ok_or_else(|| format!("child {what}: no result line in {stdout:?}"))
}

/// The samples of a sweep: `[row][column][run]`.
pub type Samples = Vec<Vec<Vec<Sample>>>;

/// The widths of a sweep's progress lines, one per run on stderr:
///
/// ```text
/// [  3/72] json     jemalloc run 1/3:     123.4 ms  peak     4.1 MiB  checksum 0x...
/// ```
#[derive(Clone, Copy, Debug)]
pub struct Progress {
    /// Of the count of runs done.
    pub count_width: usize,
    /// Of the column (allocator) name.
    pub column_width: usize,
    /// Of the time in ms.
    pub ms_width: usize,
}

impl Progress {
    /// The line for run `run` of `runs` of (`row`, `column`), the `done`th
    /// run of `total`.
    #[allow(clippy::too_many_arguments)] // one line's fields, named at the call
    pub fn line(
        &self,
        done: usize,
        total: usize,
        row: &str,
        column: &str,
        run: usize,
        runs: usize,
        s: &Sample,
    ) -> String {
        let (cw, colw, msw) = (self.count_width, self.column_width, self.ms_width);
        format!(
            "[{done:>cw$}/{total}] {row:<8} {column:<colw$} run {run}/{runs}: {:>msw$.1} ms  peak {:>7.1} MiB  checksum {:#018x}",
            s.nanos as f64 / 1e6,
            rss::mib(s.hwm_kb),
            s.checksum
        )
    }
}

/// Runs every (row, column) pair `runs` times with `run_one(row, column)`,
/// runs outermost (so slow drift, heat or other load, spreads over all
/// pairs), and prints a [`Progress`] line after each run. Every run of a row
/// must give the row's first checksum: a mismatch, or a failed child, stops
/// the sweep with an error message.
pub fn sweep(
    rows: &[Row],
    columns: &[Column],
    runs: usize,
    progress: &Progress,
    mut run_one: impl FnMut(usize, usize) -> Result<Sample, String>,
) -> Result<Samples, String> {
    let mut samples: Samples = vec![vec![Vec::new(); columns.len()]; rows.len()];
    let total = rows.len() * columns.len() * runs;
    let mut done = 0;
    for run in 1..=runs {
        for (row, cells) in samples.iter_mut().enumerate() {
            for (column, c) in columns.iter().enumerate() {
                let (row_name, name) = (rows[row].name, c.name);
                done += 1;
                let s = run_one(row, column)?;
                eprintln!(
                    "{}",
                    progress.line(done, total, row_name, name, run, runs, &s)
                );
                let expected = cells.iter().flatten().next().map(|f| f.checksum);
                if let Some(expected) = expected.filter(|&e| e != s.checksum) {
                    return Err(format!(
                        "checksum mismatch on workload {row_name}: {name} gave {:#018x}, earlier runs gave {expected:#018x}",
                        s.checksum
                    ));
                }
                cells[column].push(s);
            }
        }
    }
    Ok(samples)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(checksum: u64) -> Sample {
        Sample {
            nanos: 1_234_567,
            checksum,
            hwm_kb: 4096,
            base_kb: 2048,
            final_rss_kb: None,
            live_bytes: None,
        }
    }

    #[test]
    fn result_lines_round_trip() {
        let s = sample(0xabc);
        assert_eq!(
            s.line(None),
            "result time_ns=1234567 checksum=0x0000000000000abc hwm_kb=4096 base_kb=2048"
        );
        assert_eq!(
            Sample::parse(&format!("noise\n{}\n", s.line(None))),
            Some(s)
        );
        let f = Sample {
            final_rss_kb: Some(3000),
            live_bytes: Some(99),
            ..s
        };
        assert_eq!(
            f.line(Some("flist")),
            "result alloc=flist time_ns=1234567 checksum=0x0000000000000abc hwm_kb=4096 base_kb=2048 final_rss_kb=3000 live_bytes=99"
        );
        assert_eq!(Sample::parse(&f.line(Some("flist"))), Some(f));
        assert_eq!(Sample::parse("result time_ns=1"), None);
    }

    #[test]
    fn sweep_runs_every_pair_and_checks_checksums() {
        let progress = Progress {
            count_width: 3,
            column_width: 8,
            ms_width: 9,
        };
        let mut order = Vec::new();
        let row = |name| Row {
            name,
            letter: None,
            about: "",
        };
        let column = |name| Column { name, color: "" };
        let (rows, columns) = (
            [row("a"), row("b")],
            [column("x"), column("y"), column("z")],
        );
        let samples = sweep(&rows, &columns, 2, &progress, |r, c| {
            order.push((r, c));
            Ok(sample(r as u64))
        })
        .expect("checksums agree");
        assert_eq!(order.len(), 12);
        assert_eq!(order[..3], [(0, 0), (0, 1), (0, 2)]);
        assert!(samples.iter().all(|row| row.iter().all(|c| c.len() == 2)));

        let (json, flist) = ([row("json")], [column("flist"), column("malloc")]);
        let bad = sweep(&json, &flist, 1, &progress, |_, c| Ok(sample(c as u64)));
        assert_eq!(
            bad.unwrap_err(),
            "checksum mismatch on workload json: malloc gave 0x0000000000000001, earlier runs gave 0x0000000000000000"
        );
        let failed = sweep(&json, &flist, 1, &progress, |_, _| Err("boom".into()));
        assert_eq!(failed.unwrap_err(), "boom");
    }

    #[test]
    fn progress_lines() {
        let s = sample(0xabc);
        let compare = Progress {
            count_width: 3,
            column_width: 8,
            ms_width: 9,
        };
        assert_eq!(
            compare.line(7, 72, "json", "malloc", 1, 3, &s),
            "[  7/72] json     malloc   run 1/3:       1.2 ms  peak     4.0 MiB  checksum 0x0000000000000abc"
        );
        let arena = Progress {
            count_width: 2,
            column_width: 7,
            ms_width: 8,
        };
        assert_eq!(
            arena.line(1, 18, "tree", "flist", 1, 3, &s),
            "[ 1/18] tree     flist   run 1/3:      1.2 ms  peak     4.0 MiB  checksum 0x0000000000000abc"
        );
    }

    #[test]
    #[cfg_attr(miri, ignore)] // no processes under miri
    fn runs_a_child() {
        let mut ok = Command::new("sh");
        ok.args([
            "-c",
            "echo 'result time_ns=5 checksum=0x0000000000000001 hwm_kb=3 base_kb=2'",
        ]);
        assert_eq!(run(&mut ok, None, "sh").map(|s| s.nanos), Ok(5));

        let mut fails = Command::new("sh");
        fails.args(["-c", "echo out; echo err >&2; exit 3"]);
        let e = run(&mut fails, Some(Duration::from_secs(30)), "sh / fail").unwrap_err();
        assert!(
            e.starts_with("child sh / fail failed (exit status: 3)"),
            "{e}"
        );
        assert!(e.ends_with("--- stdout\nout\n--- stderr\nerr\n"), "{e}");

        let mut slow = Command::new("sleep");
        slow.arg("30");
        let e = run(&mut slow, Some(Duration::from_millis(200)), "sleep").unwrap_err();
        assert_eq!(e, "child sleep did not finish within 0 s (killed)");
    }
}
