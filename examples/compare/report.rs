//! compare's output: the shared table, JSON and chart of the support crate,
//! with compare's header, the fragmentation figures and the targets.

use crate::allocators::Alloc;
use crate::workloads::Workload;
use serde_json::{json, Value};
use support::report::{Matrix, Meta, TableStyle};
use support::rss::mib;

/// The chart's title.
pub const SVG_TITLE: &str =
    "flistalloc compare: time and peak RSS relative to the best allocator (lower is better)";

/// Prints the results on stdout.
pub fn print_table(r: &Matrix, workloads: &[&Workload], meta: &Meta) {
    println!(
        "flistalloc compare: {} sizes, median time of {} run(s) per cell; peak RSS = VmHWM of each child process",
        meta.scale, meta.runs
    );
    println!("{}, {} cores, {}", meta.cpu, meta.cores, meta.date);
    println!("command: {}", meta.command);
    println!(
        "All four allocators run from one binary behind the same dispatching #[global_allocator]\n\
         (one predictable branch per call: mimalloc, or Flist with FLISTALLOC_BACKEND=flist|malloc|jemalloc),\n\
         so the dispatch costs every column alike. \"x best\" = ratio to the best allocator on that row (1.00x = best)."
    );
    println!();
    // The `--direct` columns have longer names.
    let width = r
        .columns
        .iter()
        .map(|c| c.name.len())
        .max()
        .unwrap_or(9)
        .max(9);
    r.print_table(&TableStyle {
        label_width: 12,
        column_width: width,
        column_header: "allocator",
        ratio_header: "x best",
        rule: 55 + width,
    });
    // Fragmentation: memory held against memory live.
    if let Some(wi) = r.row("frag") {
        println!();
        println!("(f) frag at its end (before teardown): RSS against the bytes the program holds");
        println!(
            "{:<width$} {:>10} {:>12} {:>9} {:>10} {:>9}",
            "allocator", "live MiB", "final RSS", "x live", "peak MiB", "x live"
        );
        for (ai, a) in r.columns.iter().enumerate() {
            let c = &r.cells[wi][ai];
            let live = c.last(|s| s.live_bytes).unwrap_or(0) as f64 / (1 << 20) as f64;
            let fin = mib(c.last(|s| s.final_rss_kb).unwrap_or(0));
            let peak = mib(c.hwm_kb);
            println!(
                "{:<width$} {:>10.1} {:>12.1} {:>8.2}x {:>10.1} {:>8.2}x",
                a.name,
                live,
                fin,
                fin / live.max(1e-9),
                peak,
                peak / live.max(1e-9)
            );
        }
    }
    println!();
    for w in workloads {
        println!("  ({}) {:<8} {}", w.letter, w.name, w.about);
    }
    println!(
        "  (a child holds about {:.1} MiB RSS before its workload starts)",
        mib(r.base_kb())
    );
    // Issue 10's targets.
    println!();
    println!("targets (issue 10):");
    let verdict = |ok: bool| if ok { "met" } else { "MISSED" };
    let target = |what: &str, value: f64, limit: f64| {
        println!(
            "  {what:<58} {value:>5.2}x  (target <= {limit:.2}x: {})",
            verdict(value <= limit)
        );
    };
    let flist = Alloc::Flist.name();
    let others = [Alloc::Jemalloc.name(), Alloc::Mimalloc.name()];
    if let Some(per_row) = r.time_vs_fastest(flist, &others) {
        let worst = per_row
            .iter()
            .zip(&r.rows)
            .max_by(|x, y| x.0.total_cmp(y.0));
        if let Some((w, row)) = worst {
            target(
                &format!(
                    "worst workload time / faster of jemalloc, mimalloc ({})",
                    row.name
                ),
                *w,
                1.1,
            );
        }
        target(
            "geo mean of time / faster of jemalloc, mimalloc",
            support::stats::geo_mean(per_row.iter().copied()),
            0.9,
        );
    }
    if let Some(m) = r.rss_vs(flist, Alloc::Jemalloc.name()) {
        target("geo mean of peak RSS / jemalloc's", m, 1.0);
    }
    // `--direct`: what the malloc and jemalloc columns pay for going through
    // Flist's backend dispatch, against the same allocators installed
    // directly (behind the same switch).
    for (via, direct) in [
        (Alloc::Jemalloc, Alloc::JemallocDirect),
        (Alloc::Malloc, Alloc::MallocDirect),
    ] {
        if let Some(t) = r.time_vs(via.name(), direct.name()) {
            target(
                &format!(
                    "geo mean of time, {} through Flist / {}",
                    via.name(),
                    direct.name()
                ),
                t,
                1.03,
            );
        }
    }
    if let Some(fi) = r.column(flist) {
        let worst = r
            .cells
            .iter()
            .zip(&r.rows)
            .map(|(row, w)| (row[fi].rss_ratio, w))
            .max_by(|x, y| x.0.total_cmp(&y.0));
        if let Some((m, row)) = worst {
            target(
                &format!("worst workload peak RSS / the smallest ({})", row.name),
                m,
                1.3,
            );
        }
    }
}

/// The results as JSON, with flist's ratios to the others.
pub fn to_json(r: &Matrix, meta: &Meta) -> Value {
    let flist = Alloc::Flist.name();
    let flist_vs = json!({
        "jemalloc_time": r.time_vs(flist, Alloc::Jemalloc.name()),
        "mimalloc_time": r.time_vs(flist, Alloc::Mimalloc.name()),
        "malloc_time": r.time_vs(flist, Alloc::Malloc.name()),
        "jemalloc_frag_peak_rss": r.row_rss_vs("frag", flist, Alloc::Jemalloc.name()),
        "jemalloc_peak_rss": r.rss_vs(flist, Alloc::Jemalloc.name()),
        "fastest_of_jemalloc_mimalloc_time": r
            .time_vs_fastest(flist, &[Alloc::Jemalloc.name(), Alloc::Mimalloc.name()])
            .map(support::stats::geo_mean),
    });
    r.to_json(
        "flistalloc examples/compare",
        meta,
        vec![("flist_vs", flist_vs)],
    )
}
