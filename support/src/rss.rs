//! This process's memory figures, from `/proc/self/status`.
//!
//! Written by hand rather than with `procfs`: that crate brings `rustix` and
//! more, and parses every field into owned values, while the `frag` workload
//! of `compare` reads `VmRSS` inside its timed region, on the allocator being
//! measured; one small string read keeps that cost what it always was.

/// A field of `/proc/self/status` (`"VmRSS:"`, `"VmHWM:"`...), in kB.
pub fn status_kb(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line[field.len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// Resident set size now (`VmRSS`), in kB.
pub fn current_kb() -> Option<u64> {
    status_kb("VmRSS:")
}

/// Peak resident set size so far (`VmHWM`), in kB.
pub fn peak_kb() -> Option<u64> {
    status_kb("VmHWM:")
}

/// kB to MiB.
pub fn mib(kb: u64) -> f64 {
    kb as f64 / 1024.0
}

#[cfg(test)]
mod tests {
    #[test]
    #[cfg_attr(miri, ignore)] // no /proc under miri
    fn reads_rss_and_peak() {
        let now = super::current_kb().expect("VmRSS");
        let peak = super::peak_kb().expect("VmHWM");
        assert!(
            now > 0 && peak >= now / 2,
            "VmRSS {now} kB, VmHWM {peak} kB"
        );
        assert_eq!(super::status_kb("NoSuchField:"), None);
    }
}
