//! The results of a sweep over (workload x allocator): medians, ratios to
//! the best allocator of each row, geometric means, and their output as a
//! text table, as JSON (`serde_json`) and as an SVG bar chart.

use crate::child::{Sample, Samples};
use crate::rss::mib;
use crate::stats::{geo_mean, median};
use serde_json::{json, Value};

/// A workload: a row of the results.
#[derive(Clone, Copy, Debug)]
pub struct Row {
    pub name: &'static str,
    /// Shown as `(a) name` when there is one.
    pub letter: Option<char>,
    pub about: &'static str,
}

impl Row {
    /// `(a) json`, or the bare name without a letter.
    pub fn label(&self) -> String {
        match self.letter {
            Some(l) => format!("({l}) {}", self.name),
            None => self.name.to_owned(),
        }
    }
}

/// An allocator: a column of the results.
#[derive(Clone, Copy, Debug)]
pub struct Column {
    pub name: &'static str,
    /// Its bars' fill in the chart.
    pub color: &'static str,
}

/// How a cell's peak RSS is summarised over its runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Peak {
    Median,
    /// The largest (peaks barely vary between runs).
    Max,
}

/// One workload on one allocator, summarised over its runs.
#[derive(Clone, Debug)]
pub struct Cell {
    pub samples: Vec<Sample>,
    /// Median time.
    pub time_ns: u64,
    /// Peak RSS, kB, as [`Peak`] says.
    pub hwm_kb: u64,
    /// Time over the row's best time (1.0 = the fastest).
    pub time_ratio: f64,
    /// Peak RSS over the row's smallest (1.0 = the smallest).
    pub rss_ratio: f64,
}

impl Cell {
    fn summarise(samples: Vec<Sample>, peak: Peak) -> Cell {
        let t: Vec<u64> = samples.iter().map(|s| s.nanos).collect();
        let m: Vec<u64> = samples.iter().map(|s| s.hwm_kb).collect();
        Cell {
            time_ns: median(&t),
            hwm_kb: match peak {
                Peak::Median => median(&m),
                Peak::Max => m.iter().copied().max().unwrap_or(0),
            },
            samples,
            time_ratio: 1.0,
            rss_ratio: 1.0,
        }
    }

    /// The last run's value of an optional figure.
    pub fn last<T>(&self, f: impl Fn(&Sample) -> Option<T>) -> Option<T> {
        self.samples.iter().rev().find_map(f)
    }
}

/// The results: `cells[row][column]`.
pub struct Matrix {
    pub rows: Vec<Row>,
    pub columns: Vec<Column>,
    pub cells: Vec<Vec<Cell>>,
    /// Per column: geometric mean over the rows of the time ratios.
    pub geo_time: Vec<f64>,
    /// Per column: geometric mean over the rows of the peak RSS ratios.
    pub geo_rss: Vec<f64>,
}

/// The widths and words of [`Matrix::print_table`].
#[derive(Clone, Copy, Debug)]
pub struct TableStyle {
    pub label_width: usize,
    pub column_width: usize,
    /// `allocator`, `backend`...
    pub column_header: &'static str,
    /// `x best`, `vs best`...
    pub ratio_header: &'static str,
    /// Length of the `----` rules.
    pub rule: usize,
}

impl Matrix {
    /// Summarises `samples[row][column]` and works out the ratios.
    pub fn new(rows: Vec<Row>, columns: Vec<Column>, samples: Samples, peak: Peak) -> Matrix {
        let mut cells: Vec<Vec<Cell>> = samples
            .into_iter()
            .map(|row| row.into_iter().map(|s| Cell::summarise(s, peak)).collect())
            .collect();
        for row in &mut cells {
            let best_t = row.iter().map(|c| c.time_ns).min().unwrap_or(1).max(1) as f64;
            let best_m = row.iter().map(|c| c.hwm_kb).min().unwrap_or(1).max(1) as f64;
            for c in row.iter_mut() {
                c.time_ratio = c.time_ns as f64 / best_t;
                c.rss_ratio = c.hwm_kb as f64 / best_m;
            }
        }
        let geo = |f: fn(&Cell) -> f64| -> Vec<f64> {
            (0..columns.len())
                .map(|ci| geo_mean(cells.iter().map(|row| f(&row[ci]))))
                .collect()
        };
        let geo_time = geo(|c| c.time_ratio);
        let geo_rss = geo(|c| c.rss_ratio);
        Matrix {
            rows,
            columns,
            cells,
            geo_time,
            geo_rss,
        }
    }

    /// The index of the column named `name`.
    pub fn column(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c.name == name)
    }

    /// The index of the row named `name`.
    pub fn row(&self, name: &str) -> Option<usize> {
        self.rows.iter().position(|r| r.name == name)
    }

    /// Geometric mean over the rows of column `a`'s time over column `b`'s.
    pub fn time_vs(&self, a: &str, b: &str) -> Option<f64> {
        let (ia, ib) = (self.column(a)?, self.column(b)?);
        Some(geo_mean(self.cells.iter().map(|row| {
            row[ia].time_ns as f64 / row[ib].time_ns.max(1) as f64
        })))
    }

    /// Geometric mean over the rows of column `a`'s peak RSS over `b`'s.
    pub fn rss_vs(&self, a: &str, b: &str) -> Option<f64> {
        let (ia, ib) = (self.column(a)?, self.column(b)?);
        Some(geo_mean(self.cells.iter().map(|row| {
            row[ia].hwm_kb as f64 / row[ib].hwm_kb.max(1) as f64
        })))
    }

    /// Per row, column `a`'s time over the fastest of the columns `others`
    /// on that row (rows where none of `others` ran are skipped).
    pub fn time_vs_fastest(&self, a: &str, others: &[&str]) -> Option<Vec<f64>> {
        let ia = self.column(a)?;
        let ib: Vec<usize> = others.iter().filter_map(|o| self.column(o)).collect();
        if ib.is_empty() {
            return None;
        }
        Some(
            self.cells
                .iter()
                .map(|row| {
                    let best = ib.iter().map(|&i| row[i].time_ns).min().unwrap_or(1);
                    row[ia].time_ns as f64 / best.max(1) as f64
                })
                .collect(),
        )
    }

    /// Column `a`'s peak RSS over `b`'s on row `row`.
    pub fn row_rss_vs(&self, row: &str, a: &str, b: &str) -> Option<f64> {
        let cells = &self.cells[self.row(row)?];
        let (ia, ib) = (self.column(a)?, self.column(b)?);
        Some(cells[ia].hwm_kb as f64 / cells[ib].hwm_kb.max(1) as f64)
    }

    /// The smallest RSS a child had before its work started (kB).
    pub fn base_kb(&self) -> u64 {
        self.cells
            .iter()
            .flatten()
            .flat_map(|c| &c.samples)
            .map(|s| s.base_kb)
            .min()
            .unwrap_or(0)
    }

    /// Prints the table: time, peak RSS and their ratios to the best, per
    /// row and column, then the geometric means.
    pub fn print_table(&self, style: &TableStyle) {
        let (lw, cw) = (style.label_width, style.column_width);
        let rule = "-".repeat(style.rule);
        println!(
            "{:<lw$} {:<cw$} {:>10} {:>8} {:>10} {:>8}",
            "workload",
            style.column_header,
            "time ms",
            style.ratio_header,
            "peak MiB",
            style.ratio_header
        );
        println!("{rule}");
        for (ri, r) in self.rows.iter().enumerate() {
            let label = r.label();
            for (ci, col) in self.columns.iter().enumerate() {
                let c = &self.cells[ri][ci];
                println!(
                    "{:<lw$} {:<cw$} {:>10.1} {:>7.2}x {:>10.1} {:>7.2}x",
                    if ci == 0 { label.as_str() } else { "" },
                    col.name,
                    c.time_ns as f64 / 1e6,
                    c.time_ratio,
                    mib(c.hwm_kb),
                    c.rss_ratio
                );
            }
        }
        println!("{rule}");
        for (ci, col) in self.columns.iter().enumerate() {
            println!(
                "{:<lw$} {:<cw$} {:>10} {:>7.2}x {:>10} {:>7.2}x",
                if ci == 0 { "geo mean" } else { "" },
                col.name,
                "",
                self.geo_time[ci],
                "",
                self.geo_rss[ci]
            );
        }
    }

    /// The results as JSON: `tool`, the run's [`Meta`], per workload the
    /// figures of every allocator, the geometric means, then `extra`.
    pub fn to_json(&self, tool: &str, meta: &Meta, extra: Vec<(&str, Value)>) -> Value {
        let workloads: Vec<Value> = self
            .rows
            .iter()
            .enumerate()
            .map(|(ri, r)| {
                let mut per = serde_json::Map::new();
                for (ci, col) in self.columns.iter().enumerate() {
                    let c = &self.cells[ri][ci];
                    let mut o = json!({
                        "median_time_ms": c.time_ns as f64 / 1e6,
                        "times_ms": c.samples.iter().map(|s| s.nanos as f64 / 1e6).collect::<Vec<_>>(),
                        "peak_rss_kib": c.hwm_kb,
                        "time_ratio_to_best": c.time_ratio,
                        "rss_ratio_to_best": c.rss_ratio,
                        "checksum": format!("{:#018x}", c.samples[0].checksum),
                    });
                    if let Some(live) = c.last(|s| s.live_bytes) {
                        o["live_bytes"] = json!(live);
                    }
                    if let Some(rss) = c.last(|s| s.final_rss_kb) {
                        o["final_rss_kib"] = json!(rss);
                    }
                    per.insert(col.name.to_owned(), o);
                }
                json!({
                    "name": r.name,
                    "letter": r.letter.map(|l| l.to_string()),
                    "about": r.about,
                    "results": per,
                })
            })
            .collect();
        let mut geo = serde_json::Map::new();
        for (ci, col) in self.columns.iter().enumerate() {
            geo.insert(
                col.name.to_owned(),
                json!({ "time_ratio_to_best": self.geo_time[ci], "rss_ratio_to_best": self.geo_rss[ci] }),
            );
        }
        let mut out = json!({
            "tool": tool,
            "command": meta.command,
            "date": meta.date,
            "cpu": meta.cpu,
            "cores": meta.cores,
            "scale": meta.scale,
            "runs": meta.runs,
            "allocators": self.columns.iter().map(|c| c.name).collect::<Vec<_>>(),
            "workloads": workloads,
            "geometric_mean": geo,
        });
        for (k, v) in extra {
            out[k] = v;
        }
        out
    }

    /// The chart: time and peak RSS ratios, one bar per allocator, grouped
    /// by workload, plus the geometric means. See the `svg` module.
    pub fn to_svg(&self, title: &str, meta: &Meta) -> String {
        crate::svg::chart(self, title, meta)
    }
}

/// Where and how the results were measured.
#[derive(Clone, Debug)]
pub struct Meta {
    /// The command that reproduces the run.
    pub command: String,
    /// `YYYY-MM-DD HH:MM UTC`.
    pub date: String,
    pub cpu: String,
    pub cores: usize,
    /// `full` or `quick`.
    pub scale: &'static str,
    pub runs: usize,
}

impl Meta {
    /// This machine, now.
    pub fn now(command: String, scale: &'static str, runs: usize) -> Meta {
        Meta {
            command,
            date: utc_now(),
            cpu: cpu_model(),
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            scale,
            runs,
        }
    }
}

/// `base` followed by ` -- ARGS` when there are arguments, each quoted for
/// a POSIX shell when it needs it (`shlex`), so the line can be pasted back.
pub fn command_line(base: &str, args: &[String]) -> String {
    let mut command = String::from(base);
    if !args.is_empty() {
        command.push_str(" --");
        for a in args {
            command.push(' ');
            match shlex::try_quote(a) {
                Ok(q) => command.push_str(&q),
                // A NUL byte cannot be quoted; show it as it is.
                Err(_) => command.push_str(a),
            }
        }
    }
    command
}

/// `YYYY-MM-DD HH:MM UTC`, from the system clock.
pub fn utc_now() -> String {
    let t = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    // 2026-11-25T16:50:07Z
    format!("{} {} UTC", &t[..10], &t[11..16])
}

/// The CPU's model name from `/proc/cpuinfo`.
pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned())
}

/// Writes `text` to `path`, creating its directory if needed.
pub fn write_file(path: &str, text: &str) -> Result<(), String> {
    let p = std::path::Path::new(path);
    if let Some(dir) = p.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    std::fs::write(p, text).map_err(|e| format!("cannot write {path}: {e}"))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn sample(nanos: u64, hwm_kb: u64) -> Sample {
        Sample {
            nanos,
            checksum: 7,
            hwm_kb,
            base_kb: 1000,
            final_rss_kb: None,
            live_bytes: None,
        }
    }

    /// Two workloads on two allocators, two runs each.
    pub(crate) fn matrix(peak: Peak) -> Matrix {
        let rows = vec![
            Row {
                name: "json",
                letter: Some('a'),
                about: "parse & build",
            },
            Row {
                name: "frag",
                letter: Some('f'),
                about: "fragmentation",
            },
        ];
        let columns = vec![
            Column {
                name: "flist",
                color: "#1f6fb4",
            },
            Column {
                name: "malloc",
                color: "#8c8c8c",
            },
        ];
        let samples = vec![
            vec![
                vec![sample(100_000_000, 4096), sample(300_000_000, 8192)],
                vec![sample(400_000_000, 2048), sample(400_000_000, 2048)],
            ],
            vec![
                vec![sample(50_000_000, 10240), sample(50_000_000, 10240)],
                vec![sample(25_000_000, 20480), sample(25_000_000, 20480)],
            ],
        ];
        Matrix::new(rows, columns, samples, peak)
    }

    #[test]
    fn ratios_and_means() {
        let m = matrix(Peak::Median);
        // json: flist 200 ms (median of 100, 300) vs malloc 400 ms.
        assert_eq!(m.cells[0][0].time_ns, 200_000_000);
        assert_eq!(m.cells[0][0].hwm_kb, 6144);
        assert_eq!(m.cells[0][1].time_ratio, 2.0);
        assert_eq!(m.cells[0][0].rss_ratio, 3.0);
        // frag: malloc twice as fast, flist half the memory.
        assert_eq!(m.cells[1][0].time_ratio, 2.0);
        assert_eq!(m.cells[1][1].rss_ratio, 2.0);
        assert!((m.geo_time[0] - 2f64.sqrt()).abs() < 1e-12);
        assert!((m.time_vs("flist", "malloc").unwrap() - 1.0).abs() < 1e-12);
        assert_eq!(m.row_rss_vs("frag", "flist", "malloc"), Some(0.5));
        assert_eq!(m.time_vs("flist", "nope"), None);
        assert_eq!(m.base_kb(), 1000);
        assert_eq!(matrix(Peak::Max).cells[0][0].hwm_kb, 8192);
    }

    #[test]
    fn json_has_every_figure() {
        let meta = Meta {
            command: "cmd".into(),
            date: "2026-01-01 00:00 UTC".into(),
            cpu: "cpu".into(),
            cores: 2,
            scale: "quick",
            runs: 2,
        };
        let j = matrix(Peak::Median).to_json("tool", &meta, vec![("extra", json!(1))]);
        assert_eq!(j["tool"], "tool");
        assert_eq!(j["extra"], 1);
        assert_eq!(j["allocators"], json!(["flist", "malloc"]));
        let flist = &j["workloads"][0]["results"]["flist"];
        assert_eq!(flist["median_time_ms"], 200.0);
        assert_eq!(flist["times_ms"], json!([100.0, 300.0]));
        assert_eq!(flist["checksum"], "0x0000000000000007");
        assert_eq!(j["workloads"][1]["letter"], "f");
        // serde_json's map sorts keys: the order the file has always had.
        let text = j.to_string();
        assert!(text.starts_with(r#"{"allocators":["flist","malloc"],"command":"cmd","cores":2,"#));
    }

    #[test]
    fn utc_now_shape() {
        let d = utc_now();
        assert_eq!(d.len(), "2026-11-25 16:50 UTC".len(), "{d}");
        assert!(d.ends_with(" UTC") && d.as_bytes()[4] == b'-' && d.as_bytes()[13] == b':');
        assert_eq!(
            command_line(
                "cargo run",
                &["--quick".into(), "--runs".into(), "1".into()]
            ),
            "cargo run -- --quick --runs 1"
        );
        assert_eq!(command_line("cargo run", &[]), "cargo run");
        assert_eq!(
            command_line("c", &["--cmd".into(), "python3 -c 'print(1)'".into()]),
            r#"c -- --cmd "python3 -c 'print(1)'""#
        );
    }
}
