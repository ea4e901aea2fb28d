//! Each backend chosen at run time through `FLISTALLOC_BACKEND`, and bad
//! values of the environment variables. The backend is decided once per
//! process, so every case re-runs this test binary as a child process with
//! the variable set; the child checks `flistalloc::backend()` and runs a
//! workload with checksums.

use flistalloc::Backend;
use std::alloc::Layout;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::mpsc;

#[global_allocator]
static GLOBAL: flistalloc::Flist = flistalloc::Flist::new();

mod common;
use common::{child_ok, is_child, Rng, DONE};

/// Lines of the allocator's own messages.
fn flist_lines(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter(|l| l.contains("flistalloc:"))
        .collect()
}

fn words(line: &str) -> Vec<&str> {
    line.split(|c: char| !c.is_ascii_alphanumeric() && c != '_')
        .filter(|w| !w.is_empty())
        .collect()
}

/// Work per child: a quarter in a debug build (still through every path:
/// 1 MiB of pushes crosses from flist slabs into the fallback).
const SCALE: usize = if cfg!(debug_assertions) { 1 } else { 4 };

/// Collections, threads with cross-thread frees, a 4 MiB Vec, realloc
/// growth and shrinking, zeroed and over-aligned blocks; panics on any wrong
/// byte.
fn workload() {
    // Collections.
    let mut m: HashMap<u64, String> = HashMap::new();
    let mut b: BTreeMap<String, Vec<u32>> = BTreeMap::new();
    let mut q: VecDeque<Box<[u8]>> = VecDeque::new();
    for i in 0..50_000u64 {
        m.insert(i, format!("value-{i}"));
        b.insert(format!("k{i:06}"), (0..(i % 100) as u32).collect());
        q.push_back(vec![i as u8; (i % 700) as usize + 1].into_boxed_slice());
        if q.len() > 1000 {
            let o = q.pop_front().expect("not empty");
            assert!(o.iter().all(|&x| x == o[0]));
        }
    }
    for i in (0..50_000u64).step_by(3) {
        assert_eq!(m.remove(&i).expect("present"), format!("value-{i}"));
    }
    let total: u64 = b
        .values()
        .map(|v| v.iter().map(|&x| x as u64).sum::<u64>())
        .sum();
    let expect: u64 = (0..50_000u64)
        .map(|i| (i % 100) * (i % 100).saturating_sub(1) / 2)
        .sum();
    assert_eq!(total, expect);
    drop((m, b, q));

    // Threads: each makes blocks, sends half to the next thread, which
    // checks and frees them.
    let (txs, rxs): (Vec<_>, Vec<_>) = (0..4).map(|_| mpsc::channel::<Vec<u8>>()).unzip();
    let handles: Vec<_> = rxs
        .into_iter()
        .enumerate()
        .map(|(t, rx)| {
            let next = txs[(t + 1) % 4].clone();
            std::thread::spawn(move || {
                let mut rng = Rng::new(0x243f_6a88_85a3_08d3 ^ t as u64);
                let mut sum = 0u64;
                let mut mine = Vec::new();
                for _ in 0..SCALE * 20_000 / 4 {
                    let r = rng.next_u64();
                    let size = if r.is_multiple_of(100) {
                        (r >> 8) as usize % (512 << 10)
                    } else {
                        (r >> 8) as usize % 2048
                    } + 1;
                    let v = vec![(r >> 40) as u8; size];
                    if r & 1 == 0 {
                        let _ = next.send(v);
                    } else {
                        mine.push(v);
                    }
                    while let Ok(v) = rx.try_recv() {
                        assert!(v.iter().all(|&x| x == v[0]), "corrupted across threads");
                        sum += v.len() as u64;
                    }
                }
                for v in mine {
                    assert!(v.iter().all(|&x| x == v[0]));
                    sum += v.len() as u64;
                }
                sum
            })
        })
        .collect();
    drop(txs);
    let sum: u64 = handles.into_iter().map(|h| h.join().expect("thread")).sum();
    assert!(sum > 0);

    // A 4 MiB Vec.
    let big: Vec<u8> = (0..4usize << 20).map(|i| (i % 251) as u8).collect();
    let check: u64 = big.iter().map(|&x| x as u64).sum();
    let expect: u64 = (0..4usize << 20).map(|i| (i % 251) as u64).sum();
    assert_eq!(check, expect);
    drop(big);

    // realloc growth by push, from a few bytes through the flist sizes into
    // the fallback, then shrinking.
    let mut v: Vec<u32> = Vec::new();
    for i in 0..(SCALE * 250_000) as u32 {
        v.push(i.wrapping_mul(2_654_435_761));
    }
    for (i, &x) in v.iter().enumerate() {
        assert_eq!(x, (i as u32).wrapping_mul(2_654_435_761));
    }
    v.truncate(1000);
    v.shrink_to_fit();
    v.truncate(10);
    v.shrink_to_fit();
    for (i, &x) in v.iter().enumerate() {
        assert_eq!(x, (i as u32).wrapping_mul(2_654_435_761));
    }
    let mut s = String::new();
    for i in 0..100_000 {
        s.push(char::from(b'a' + (i % 26) as u8));
    }
    assert!(s
        .bytes()
        .enumerate()
        .all(|(i, c)| c == b'a' + (i % 26) as u8));

    // Zeroed memory.
    let z = vec![0u64; 1 << 20];
    assert!(z.iter().all(|&x| x == 0));
    let zs = vec![0u8; 1000];
    assert!(zs.iter().all(|&x| x == 0));

    // Over-aligned blocks keep their alignment through realloc.
    for (size, align) in [(100, 64), (5000, 4096), (3000, 8192), (300_000, 1 << 16)] {
        let layout = Layout::from_size_align(size, align).expect("layout");
        // SAFETY: the layout has a non-zero size; the block is written only
        // within its size, reallocated with the same alignment and a valid
        // new size, and freed once with its current layout.
        unsafe {
            let p = std::alloc::alloc(layout);
            assert!(!p.is_null());
            assert_eq!(p as usize % align, 0);
            for i in 0..size {
                *p.add(i) = (i % 253) as u8;
            }
            let new_size = size * 3;
            let q = std::alloc::realloc(p, layout, new_size);
            assert!(!q.is_null());
            assert_eq!(q as usize % align, 0, "realloc lost the alignment");
            for i in 0..size {
                assert_eq!(*q.add(i), (i % 253) as u8);
            }
            std::alloc::dealloc(q, Layout::from_size_align(new_size, align).expect("layout"));
        }
    }
}

/// The child's side of a backend test.
fn child_backend(expected: Backend) {
    assert_eq!(flistalloc::backend(), expected);
    workload();
    assert_eq!(flistalloc::backend(), expected);
    let s = flistalloc::stats();
    if expected == Backend::Flist {
        assert!(s.mapped > 0, "flist mapped nothing: {s:?}");
    } else {
        // A whole-process backend serves everything: flist maps nothing.
        assert_eq!(s.mapped, 0, "flist used under {expected:?}: {s:?}");
        assert_eq!(flistalloc::trim(), 0);
    }
    eprintln!("{DONE}");
}

#[test]
fn backend_flist() {
    if is_child() {
        return child_backend(Backend::Flist);
    }
    let stderr = child_ok("backend_flist", &[("FLISTALLOC_BACKEND", "flist")]);
    assert!(flist_lines(&stderr).is_empty(), "{stderr}");
}

#[test]
fn backend_default_is_flist() {
    if is_child() {
        return child_backend(Backend::Flist);
    }
    let stderr = child_ok("backend_default_is_flist", &[]);
    assert!(flist_lines(&stderr).is_empty(), "{stderr}");
}

#[test]
fn backend_malloc() {
    if is_child() {
        return child_backend(Backend::Malloc);
    }
    let stderr = child_ok("backend_malloc", &[("FLISTALLOC_BACKEND", "malloc")]);
    assert!(flist_lines(&stderr).is_empty(), "{stderr}");
}

#[test]
fn backend_jemalloc() {
    // Without the `jemalloc` feature the default is used, with a warning.
    let expected = if Backend::Jemalloc.available() {
        Backend::Jemalloc
    } else {
        Backend::Flist
    };
    if is_child() {
        return child_backend(expected);
    }
    let stderr = child_ok("backend_jemalloc", &[("FLISTALLOC_BACKEND", "jemalloc")]);
    let lines = flist_lines(&stderr);
    if expected == Backend::Jemalloc {
        assert!(lines.is_empty(), "{stderr}");
    } else {
        assert_eq!(lines.len(), 1, "{stderr}");
        assert!(lines[0].contains("jemalloc"), "{stderr}");
    }
}

#[test]
fn unknown_backend_warns_once_and_uses_flist() {
    if is_child() {
        assert_eq!(flistalloc::backend(), Backend::Flist);
        let v: Vec<String> = (0..10_000).map(|i| i.to_string()).collect();
        assert_eq!(v[9999], "9999");
        eprintln!("{DONE}");
        return;
    }
    let stderr = child_ok(
        "unknown_backend_warns_once_and_uses_flist",
        &[("FLISTALLOC_BACKEND", "tcmalloc")],
    );
    // One line, naming the bad value and every valid one.
    let lines = flist_lines(&stderr);
    assert_eq!(
        lines.len(),
        1,
        "expected one line from flistalloc:\n{stderr}"
    );
    let line = lines[0];
    assert!(line.starts_with("flistalloc: "), "{line:?}");
    let w = words(line);
    for name in ["tcmalloc", "flist", "malloc", "jemalloc"] {
        assert!(w.contains(&name), "{name} not named in {line:?}");
    }
}

/// The child's side of a bad-capacity test: the default (1 TiB) is used, so
/// a 2 GiB reservation (address space only, never touched) succeeds.
fn child_default_capacity() {
    assert_eq!(flistalloc::backend(), Backend::Flist);
    let mut v: Vec<u8> = Vec::new();
    assert!(v.try_reserve(2 << 30).is_ok(), "default capacity not used");
    drop(v);
    let w: Vec<u64> = (0..100_000).collect();
    assert_eq!(w.iter().sum::<u64>(), 4_999_950_000);
    eprintln!("{DONE}");
}

fn check_capacity_warning(stderr: &str, value: &str) {
    let lines = flist_lines(stderr);
    assert!(
        lines.iter().any(|l| l.starts_with("flistalloc: ")
            && l.contains("FLISTALLOC_CAPACITY")
            && l.contains(value)),
        "no warning naming FLISTALLOC_CAPACITY={value}:\n{stderr}"
    );
}

#[test]
fn malformed_capacity_warns_and_uses_default() {
    if is_child() {
        return child_default_capacity();
    }
    let stderr = child_ok(
        "malformed_capacity_warns_and_uses_default",
        &[("FLISTALLOC_CAPACITY", "lots")],
    );
    check_capacity_warning(&stderr, "lots");
}

#[test]
fn too_large_capacity_warns_and_uses_default() {
    if is_child() {
        return child_default_capacity();
    }
    let stderr = child_ok(
        "too_large_capacity_warns_and_uses_default",
        &[("FLISTALLOC_CAPACITY", "2T")],
    );
    check_capacity_warning(&stderr, "2T");
}

#[test]
fn zero_capacity_warns_and_uses_default() {
    if is_child() {
        return child_default_capacity();
    }
    let stderr = child_ok(
        "zero_capacity_warns_and_uses_default",
        &[("FLISTALLOC_CAPACITY", "0")],
    );
    check_capacity_warning(&stderr, "=0 ");
}

#[test]
fn parse_capacity_cases() {
    use flistalloc::parse_capacity as p;
    assert_eq!(p(b"0"), Some(0));
    assert_eq!(p(b"1"), Some(1));
    assert_eq!(p(b"4096"), Some(4096));
    assert_eq!(p(b"1k"), Some(1 << 10));
    assert_eq!(p(b"1K"), Some(1 << 10));
    assert_eq!(p(b"64m"), Some(64 << 20));
    assert_eq!(p(b"64M"), Some(64 << 20));
    assert_eq!(p(b"1g"), Some(1 << 30));
    assert_eq!(p(b"3G"), Some(3 << 30));
    assert_eq!(p(b"1T"), Some(1 << 40));
    assert_eq!(p(b"1t"), Some(1 << 40));
    assert_eq!(p(b"1024G"), Some(1 << 40));
    assert_eq!(p(b"1099511627776"), Some(1 << 40));
    // Above 1 TiB.
    assert_eq!(p(b"1099511627777"), None);
    assert_eq!(p(b"1025G"), None);
    assert_eq!(p(b"2T"), None);
    // Overflow.
    assert_eq!(p(b"18446744073709551616"), None);
    assert_eq!(p(b"99999999999999999999T"), None);
    assert_eq!(p(b"17179869184T"), None);
    // Malformed.
    for bad in [
        "", "lots", "G", "k", "-1", "+1", "1.5G", " 1G", "1G ", "1GB", "1 G", "0x10", "1P", "1e9",
        "١",
    ] {
        assert_eq!(p(bad.as_bytes()), None, "{bad:?}");
    }
}
