//! The SVG bar chart of a [`Matrix`]: two panels (time, peak RSS), each
//! with one group of bars per workload plus the geometric means, every bar a
//! ratio to the row's best.
//!
//! Written by hand, not with `plotters` (svg backend only): plotters'
//! drawing backends have no way to attach a `<title>` to a bar, and those
//! hover tooltips (ratio plus absolute value) are how the chart is read; the
//! cut-off marks for bars above the axis limit, the value labels and the
//! shaded geometric-mean group would still be placed by hand, so the
//! plotters version was no shorter. This one is ~150 lines of `write!`,
//! with no dependency, and gives the same file as before (docs/compare.svg
//! can be regenerated and diffed).

use crate::report::{Matrix, Meta};
use crate::rss::mib;
use std::fmt::Write as _;

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

pub(crate) fn chart(r: &Matrix, title: &str, meta: &Meta) -> String {
    let groups: Vec<String> = r
        .rows
        .iter()
        .map(|w| w.label())
        .chain(std::iter::once("geo mean".to_owned()))
        .collect();
    let time: Vec<Vec<f64>> = r
        .cells
        .iter()
        .map(|row| row.iter().map(|c| c.time_ratio).collect())
        .chain(std::iter::once(r.geo_time.clone()))
        .collect();
    let rss: Vec<Vec<f64>> = r
        .cells
        .iter()
        .map(|row| row.iter().map(|c| c.rss_ratio).collect())
        .chain(std::iter::once(r.geo_rss.clone()))
        .collect();
    let time_abs: Vec<Vec<String>> = r
        .cells
        .iter()
        .map(|row| {
            row.iter()
                .map(|c| format!("{:.1} ms", c.time_ns as f64 / 1e6))
                .collect()
        })
        .collect();
    let rss_abs: Vec<Vec<String>> = r
        .cells
        .iter()
        .map(|row| {
            row.iter()
                .map(|c| format!("{:.1} MiB peak", mib(c.hwm_kb)))
                .collect()
        })
        .collect();

    let bars_w = 26.0 * r.columns.len() as f64;
    let left = 64.0;
    let width = (left + (bars_w + 44.0) * groups.len() as f64 + 24.0).max(960.0);
    let group_w = (width - left - 24.0) / groups.len() as f64;
    let panel_h = 250.0;
    let top = 124.0;
    let gap = 86.0;
    let height = top + 2.0 * panel_h + gap + 60.0;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0}" height="{height:.0}" viewBox="0 0 {width:.0} {height:.0}" font-family="Helvetica, Arial, sans-serif">"#
    );
    let _ = writeln!(
        s,
        r##"<rect width="100%" height="100%" fill="white"/>
<text x="{left}" y="26" font-size="17" font-weight="bold">{}</text>
<text x="{left}" y="46" font-size="12" fill="#444">{} sizes, median of {} run(s); {}, {} cores; {}</text>
<text x="{left}" y="62" font-size="12" fill="#444">{}</text>"##,
        xml_escape(title),
        meta.scale,
        meta.runs,
        xml_escape(&meta.cpu),
        meta.cores,
        meta.date,
        xml_escape(&meta.command)
    );
    // Legend.
    for (ci, col) in r.columns.iter().enumerate() {
        let x = left + ci as f64 * 110.0;
        let _ = writeln!(
            s,
            r#"<rect x="{x}" y="78" width="14" height="14" fill="{}"/><text x="{}" y="90" font-size="13">{}</text>"#,
            col.color,
            x + 19.0,
            col.name
        );
    }
    let panels = [
        ("time / fastest", &time, Some(&time_abs)),
        ("peak RSS / smallest", &rss, Some(&rss_abs)),
    ];
    for (pi, (title, data, abs)) in panels.into_iter().enumerate() {
        let y0 = top + pi as f64 * (panel_h + gap);
        let base_y = y0 + panel_h;
        let max = data.iter().flatten().copied().fold(1.0f64, f64::max);
        let ymax = ((max.min(4.0) * 2.0).ceil() / 2.0).max(1.5);
        let y_of = |v: f64| base_y - (v.min(ymax) / ymax) * (panel_h - 14.0);
        let _ = writeln!(
            s,
            r##"<text x="{left}" y="{}" font-size="14" font-weight="bold">{title}</text>"##,
            y0 - 6.0
        );
        // Grid every 0.5.
        let mut g = 0.0;
        while g <= ymax + 1e-9 {
            let y = y_of(g);
            let (stroke, dash) = if (g - 1.0).abs() < 1e-9 {
                ("#333", r#" stroke-dasharray="5,3""#)
            } else {
                ("#ddd", "")
            };
            let _ = writeln!(
                s,
                r##"<line x1="{left}" x2="{:.1}" y1="{y:.1}" y2="{y:.1}" stroke="{stroke}"{dash}/><text x="{:.1}" y="{:.1}" font-size="11" text-anchor="end" fill="#444">{g:.1}x</text>"##,
                width - 16.0,
                left - 6.0,
                y + 4.0
            );
            g += 0.5;
        }
        for (gi, name) in groups.iter().enumerate() {
            let gx = left + gi as f64 * group_w + (group_w - bars_w) / 2.0;
            if gi + 1 == groups.len() {
                let _ = writeln!(
                    s,
                    r##"<rect x="{:.1}" y="{y0:.1}" width="{:.1}" height="{panel_h}" fill="#f3f3f3"/>"##,
                    gx - 12.0,
                    bars_w + 20.0
                );
            }
            for (ci, col) in r.columns.iter().enumerate() {
                let v = data[gi][ci];
                let x = gx + ci as f64 * 26.0;
                let y = y_of(v);
                let tip = abs
                    .and_then(|t| t.get(gi))
                    .map_or(String::new(), |row| format!(", {}", row[ci]));
                let _ = writeln!(
                    s,
                    r#"<rect x="{x:.1}" y="{y:.1}" width="22" height="{:.1}" fill="{}"><title>{} {}: {v:.2}x{tip}</title></rect>"#,
                    base_y - y,
                    col.color,
                    xml_escape(name),
                    col.name
                );
                let clipped = if v > ymax { "\u{25b2}" } else { "" };
                let _ = writeln!(
                    s,
                    r#"<text x="{:.1}" y="{:.1}" font-size="9.5" text-anchor="middle">{clipped}{v:.2}</text>"#,
                    x + 11.0,
                    y - 3.0
                );
            }
            let _ = writeln!(
                s,
                r#"<text x="{:.1}" y="{:.1}" font-size="12" text-anchor="middle">{}</text>"#,
                gx + bars_w / 2.0 - 2.0,
                base_y + 17.0,
                xml_escape(name)
            );
        }
        let _ = writeln!(
            s,
            r##"<line x1="{left}" x2="{:.1}" y1="{base_y}" y2="{base_y}" stroke="#000"/>"##,
            width - 16.0
        );
    }
    let _ = writeln!(
        s,
        r##"<text x="{left}" y="{:.1}" font-size="11" fill="#444">Bars above the axis limit are cut and marked with a triangle; hover a bar for its absolute value. Dashed line: 1.0x (the best).</text>"##,
        height - 14.0
    );
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use crate::report::{tests::matrix, Meta, Peak};

    #[test]
    fn chart_has_every_bar_with_its_tooltip() {
        let meta = Meta {
            command: "cargo run -- --svg a&b.svg".into(),
            date: "2026-01-01 00:00 UTC".into(),
            cpu: "cpu".into(),
            cores: 2,
            scale: "quick",
            runs: 2,
        };
        let svg = matrix(Peak::Median).to_svg("a <title>", &meta);
        assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"960\""));
        assert!(svg.ends_with("</svg>\n"));
        assert!(svg.contains(">a &lt;title&gt;</text>"));
        assert!(svg.contains("cargo run -- --svg a&amp;b.svg"));
        // 2 panels x (2 workloads + geo mean) x 2 allocators.
        assert_eq!(svg.matches("<title>").count(), 12);
        assert!(svg.contains("<title>(a) json flist: 1.00x, 200.0 ms</title>"));
        assert!(svg.contains("<title>(f) frag malloc: 2.00x, 20.0 MiB peak</title>"));
        assert!(svg.contains("<title>geo mean malloc: "));
    }
}
