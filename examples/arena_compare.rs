//! Compare flistalloc's explicit `Arena` (through `allocator_api2`
//! collections) over each of its backends, `flist`, `malloc` and `jemalloc`,
//! side by side, and plain libc `malloc` without an arena, on single-threaded
//! allocation workloads: time, peak memory and their ratios, in one table
//! (and, on request, JSON and an SVG chart, as `compare` writes them). A
//! storage program can so choose its arena backend by measurement, as the
//! seed intends.
//!
//! This is about the `Arena` API. For the global allocator `Flist` against
//! malloc, jemalloc and mimalloc on multi-threaded workloads, see
//! `examples/compare.rs` (`cargo run --release --example compare`).
//!
//! ```text
//! cargo run --release --example arena_compare                # full sizes, median of 3 runs
//! cargo run --release --example arena_compare -- --quick     # small sizes, a smoke test
//! cargo run --release --example arena_compare -- --only tree,strings --runs 5
//! cargo run --release --example arena_compare -- --json out.json --svg out.svg
//! ```
//!
//! Every (workload, backend, run) executes in a fresh child process (this
//! same binary, re-executed with `--child WORKLOAD BACKEND SCALE`), so each
//! child's peak RSS (`VmHWM` in `/proc/self/status`) belongs to that workload
//! and backend alone. The child prints one `result ...` line on stdout; the
//! parent prints progress on stderr and the final table on stdout.
//!
//! Workloads are written once, generically over
//! `A: allocator_api2::alloc::Allocator + Copy`, and each returns a checksum
//! that must be the same for every backend (the run fails otherwise). The
//! columns: `flist`, `malloc` and `jemalloc` are a `&flistalloc::Arena` built
//! over that backend (`Arena::builder(..).backend(..)`, one arena per child,
//! created and released inside the timed region); `system` is
//! `std::alloc::System` with no arena (which `allocator_api2` makes an
//! allocator: on Linux it calls `malloc`/`realloc`/`posix_memalign`/`free`;
//! this binary keeps `System` as its global allocator), so `malloc` against
//! `system` is what the arena's bookkeeping (its set of live chunks, the
//! capacity, foreign-pointer checks) costs. Workloads run on one thread,
//! because an `Arena` is not `Sync`.
//!
//! Note: `&Arena` is a one-word allocator handle, so an arena-backed
//! `Box`/`Vec` is one word larger than a malloc-backed one (whose `System`
//! handle is zero-sized). That is part of what is measured: it is what a
//! user of the `Arena` API gets.
//!
//! Exit status: 0 on success, 1 when a child fails or checksums disagree,
//! 2 on bad arguments.

use allocator_api2::alloc::Allocator;
use allocator_api2::boxed::Box;
use allocator_api2::vec::Vec;
use flistalloc::Arena;
use std::alloc::System;
use std::process::ExitCode;
use std::time::Instant;
use support::checksum::fnv;
use support::child::{self, Progress, Sample};
use support::cli::{self, Arg, Parser};
use support::report::{Column, Matrix, Meta, Peak, Row, TableStyle};
use support::rng::Rng;
use support::rss::mib;
use support::scale::Scale;

const USAGE: &str = "\
usage: arena_compare [--quick] [--runs N] [--only NAME[,NAME...]] [--json PATH] [--svg PATH]

Runs allocation workloads on flistalloc's Arena over each backend (flist,
malloc, jemalloc) and on plain libc malloc, each in a fresh child process,
and prints median time, peak RSS and ratios.

  --quick        small sizes (a smoke test, a few seconds)
  --runs N       runs per (workload, backend); the median time is shown (default 3)
  --only NAMES   only these workloads (comma-separated): sliding, tree, strings
  --json PATH    also write the results as JSON to PATH
  --svg PATH     also write a bar chart (time and peak RSS ratios) to PATH
  -h, --help     this message";

/// The chart's title.
const SVG_TITLE: &str =
    "flistalloc arena_compare: Arena over each backend, time and peak RSS relative to the best (lower is better)";

/// Capacity of the arena a child uses: only a bound, pools are mapped
/// lazily.
const ARENA_CAPACITY: usize = 8 << 30;

// ---------------------------------------------------------------------------
// Backends

/// An allocator the workloads can run on: an `Arena` over one of its
/// backends, or plain `System`. New ones get a variant here and an arm in
/// [`Backend::run`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Backend {
    /// An `Arena` over this backend.
    Arena(flistalloc::Backend),
    /// `std::alloc::System`, no arena.
    System,
}

impl Backend {
    const ALL: [Backend; 4] = [
        Backend::Arena(flistalloc::Backend::Flist),
        Backend::Arena(flistalloc::Backend::Malloc),
        Backend::Arena(flistalloc::Backend::Jemalloc),
        Backend::System,
    ];

    /// The columns this build can run (jemalloc needs its feature).
    fn available() -> std::vec::Vec<Backend> {
        Backend::ALL
            .into_iter()
            .filter(|b| match b {
                Backend::Arena(a) => a.available(),
                Backend::System => true,
            })
            .collect()
    }

    fn name(self) -> &'static str {
        match self {
            Backend::Arena(b) => b.name(),
            Backend::System => "system",
        }
    }

    /// The bar colour of the chart (`compare`'s colours for the same
    /// allocators).
    fn color(self) -> &'static str {
        match self {
            Backend::Arena(flistalloc::Backend::Flist) => "#1f6fb4",
            Backend::Arena(flistalloc::Backend::Malloc) => "#b0b0b0",
            Backend::Arena(flistalloc::Backend::Jemalloc) => "#e8871e",
            Backend::System => "#6c6c6c",
        }
    }

    fn parse(s: &str) -> Option<Backend> {
        Backend::ALL.into_iter().find(|b| b.name() == s)
    }

    /// Runs workload `W` on this backend; returns its checksum. Everything
    /// the backend sets up and tears down (the arena) happens in here, so
    /// the caller's timer covers it.
    fn run<W: Workload>(self, scale: Scale) -> u64 {
        match self {
            Backend::Arena(b) => {
                let arena = Arena::builder(ARENA_CAPACITY).backend(b).build();
                let sum = W::run(&arena, scale);
                arena.release();
                sum
            }
            Backend::System => W::run(System, scale),
        }
    }
}

// ---------------------------------------------------------------------------
// Workloads

/// A workload, written once for every allocator.
trait Workload {
    const NAME: &'static str;
    const ABOUT: &'static str;
    /// Runs the workload on `a`; returns a checksum that does not depend on
    /// the allocator (no addresses, no allocator-dependent order).
    fn run<A: Allocator + Copy>(a: A, scale: Scale) -> u64;
}

/// A registered workload: name, description, and the runner for a backend.
struct Entry {
    name: &'static str,
    about: &'static str,
    run: fn(Backend, Scale) -> u64,
}

const fn entry<W: Workload>() -> Entry {
    Entry {
        name: W::NAME,
        about: W::ABOUT,
        run: Backend::run::<W>,
    }
}

const WORKLOADS: &[Entry] = &[entry::<Sliding>(), entry::<Tree>(), entry::<Strings>()];

/// (a) Many small objects of mixed sizes, a window of live ones.
///
/// Each step allocates an object of a mixed size (70% 8-64 B, 27% 72-512 B,
/// 3% 520-2048 B), fills it, and puts it in a random slot of a window of
/// `W` live objects, dropping the object it replaces (so lifetimes are
/// random, mean `W` steps); each step also uses a short-lived scratch buffer.
struct Sliding;

impl Sliding {
    fn object_words(rng: &mut Rng) -> usize {
        let r = rng.below(100);
        if r < 70 {
            1 + rng.below(8)
        } else if r < 97 {
            9 + rng.below(56)
        } else {
            65 + rng.below(192)
        }
    }

    fn consume<A: Allocator>(obj: &Vec<u64, A>) -> u64 {
        obj[0].wrapping_mul(31).wrapping_add(obj[obj.len() - 1])
    }
}

impl Workload for Sliding {
    const NAME: &'static str = "sliding";
    const ABOUT: &'static str =
        "small objects of mixed sizes, random lifetimes in a window of live ones";

    fn run<A: Allocator + Copy>(a: A, scale: Scale) -> u64 {
        let steps = scale.pick(3_000_000, 1_000_000);
        let window = scale.pick(200_000, 50_000);
        let mut rng = Rng::new(0x511d);
        let mut live: Vec<Option<Vec<u64, A>>, A> = Vec::with_capacity_in(window, a);
        live.resize_with(window, || None);
        let mut sum = 0u64;
        for i in 0..steps as u64 {
            let words = Self::object_words(&mut rng);
            let mut obj = Vec::with_capacity_in(words, a);
            obj.resize(words, i);
            obj[words - 1] = i ^ words as u64;
            // A scratch buffer, gone at the end of the step.
            let mut scratch: Vec<u8, A> = Vec::with_capacity_in(16 + rng.below(240), a);
            scratch.extend_from_slice(&i.to_le_bytes());
            sum = sum.wrapping_add(scratch[(i % 8) as usize] as u64);
            drop(scratch);
            let slot = rng.below(window);
            if let Some(old) = live[slot].replace(obj) {
                sum = sum.wrapping_add(Self::consume(&old));
            }
        }
        for obj in live.iter().flatten() {
            sum = sum.wrapping_add(Self::consume(obj));
        }
        sum
    }
}

/// (b) Binary search trees of boxed nodes, each holding a small payload.
///
/// Per round: insert `M` random keys, delete every other one, insert `M/4`
/// more, look up `M` keys, sum the tree, drop it.
struct Tree;

type Link<A> = Option<Box<Node<A>, A>>;

struct Node<A: Allocator> {
    key: u64,
    left: Link<A>,
    right: Link<A>,
    payload: Vec<u8, A>,
}

impl Tree {
    fn insert<A: Allocator + Copy>(root: &mut Link<A>, key: u64, a: A) -> bool {
        let mut cur = root;
        while let Some(node) = cur {
            cur = match key.cmp(&node.key) {
                std::cmp::Ordering::Less => &mut node.left,
                std::cmp::Ordering::Greater => &mut node.right,
                std::cmp::Ordering::Equal => return false,
            };
        }
        let len = 8 + (key % 41) as usize;
        let mut payload = Vec::with_capacity_in(len, a);
        payload.resize(len, key as u8);
        *cur = Some(Box::new_in(
            Node {
                key,
                left: None,
                right: None,
                payload,
            },
            a,
        ));
        true
    }

    fn contains<A: Allocator>(mut cur: &Link<A>, key: u64) -> bool {
        while let Some(node) = cur {
            cur = match key.cmp(&node.key) {
                std::cmp::Ordering::Less => &node.left,
                std::cmp::Ordering::Greater => &node.right,
                std::cmp::Ordering::Equal => return true,
            };
        }
        false
    }

    /// Removes the node with `key`; returns its payload checksum.
    fn remove<A: Allocator>(root: &mut Link<A>, key: u64) -> Option<u64> {
        let mut cur = root;
        loop {
            let node = cur.as_mut()?;
            match key.cmp(&node.key) {
                std::cmp::Ordering::Less => cur = &mut cur.as_mut()?.left,
                std::cmp::Ordering::Greater => cur = &mut cur.as_mut()?.right,
                std::cmp::Ordering::Equal => break,
            }
        }
        let mut node = cur.take()?;
        *cur = match (node.left.take(), node.right.take()) {
            (None, r) => r,
            (l, None) => l,
            (Some(l), Some(r)) => {
                let mut r = Some(r);
                let mut min = Self::take_min(&mut r);
                min.left = Some(l);
                min.right = r;
                Some(min)
            }
        };
        Some(Self::node_sum(&node))
    }

    /// Unlinks the smallest node of a non-empty tree.
    fn take_min<A: Allocator>(link: &mut Link<A>) -> Box<Node<A>, A> {
        let mut cur = link;
        while cur.as_ref().is_some_and(|n| n.left.is_some()) {
            cur = &mut cur.as_mut().expect("checked above").left;
        }
        let mut min = cur.take().expect("non-empty tree");
        *cur = min.right.take();
        min
    }

    fn node_sum<A: Allocator>(node: &Node<A>) -> u64 {
        node.key ^ ((node.payload.len() as u64) << 56) ^ node.payload[node.payload.len() - 1] as u64
    }

    fn tree_sum<A: Allocator + Copy>(root: &Link<A>, a: A) -> u64 {
        let mut sum = 0u64;
        let mut stack: Vec<&Node<A>, A> = Vec::new_in(a);
        stack.extend(root.as_deref());
        while let Some(n) = stack.pop() {
            sum = sum.wrapping_add(Self::node_sum(n));
            stack.extend(n.left.as_deref());
            stack.extend(n.right.as_deref());
        }
        sum
    }
}

impl Workload for Tree {
    const NAME: &'static str = "tree";
    const ABOUT: &'static str =
        "binary search trees of boxed nodes with payloads: insert, delete, look up, drop";

    fn run<A: Allocator + Copy>(a: A, scale: Scale) -> u64 {
        let rounds = scale.pick(20, 10);
        let m = scale.pick(50_000, 30_000);
        let mut rng = Rng::new(0x7eee);
        let mut sum = 0u64;
        for _ in 0..rounds {
            let mut root: Link<A> = None;
            let mut keys: Vec<u64, A> = Vec::with_capacity_in(m, a);
            for _ in 0..m {
                let k = rng.next_u64() >> 16;
                if Self::insert(&mut root, k, a) {
                    keys.push(k);
                }
            }
            for &k in keys.iter().step_by(2) {
                let s = Self::remove(&mut root, k).expect("inserted key");
                sum = sum.wrapping_add(s);
            }
            for _ in 0..m / 4 {
                Self::insert(&mut root, rng.next_u64() >> 16, a);
            }
            for i in 0..m {
                let k = if i.is_multiple_of(2) {
                    keys[i % keys.len()]
                } else {
                    rng.next_u64() >> 16
                };
                sum = sum.wrapping_add(Self::contains(&root, k) as u64);
            }
            sum = sum.wrapping_add(Self::tree_sum(&root, a));
        }
        sum
    }
}

/// (c) A string table: many small owned strings in a vector and in a hash
/// map (open addressing, owned keys), built, edited, partly removed, dropped.
struct Strings;

/// A minimal hash map from owned byte strings to counters: linear probing,
/// power-of-two table, backward-shift deletion. Hashed with FNV-1a: a fixed
/// hash, so probe sequences (and hence the allocation pattern) are the same
/// for every backend.
struct StrMap<A: Allocator + Copy> {
    slots: Vec<Option<Slot<A>>, A>,
    len: usize,
    a: A,
}

struct Slot<A: Allocator> {
    hash: u64,
    count: u64,
    key: Vec<u8, A>,
}

impl<A: Allocator + Copy> StrMap<A> {
    fn new_in(a: A) -> Self {
        let mut slots = Vec::with_capacity_in(16, a);
        slots.resize_with(16, || None);
        StrMap { slots, len: 0, a }
    }

    fn mask(&self) -> usize {
        self.slots.len() - 1
    }

    /// The slot holding `key`, or the empty slot where it would go.
    fn find(&self, key: &[u8], hash: u64) -> usize {
        let mask = self.mask();
        let mut i = hash as usize & mask;
        loop {
            match &self.slots[i] {
                None => return i,
                Some(s) if s.hash == hash && s.key[..] == *key => return i,
                Some(_) => i = (i + 1) & mask,
            }
        }
    }

    /// Adds `by` to the counter of `key`, inserting an owned copy if new.
    fn add(&mut self, key: &[u8], by: u64) {
        if (self.len + 1) * 4 > self.slots.len() * 3 {
            self.grow();
        }
        let hash = fnv(key);
        let i = self.find(key, hash);
        match &mut self.slots[i] {
            Some(s) => s.count += by,
            empty => {
                let mut owned = Vec::with_capacity_in(key.len(), self.a);
                owned.extend_from_slice(key);
                *empty = Some(Slot {
                    hash,
                    count: by,
                    key: owned,
                });
                self.len += 1;
            }
        }
    }

    fn grow(&mut self) {
        let n = self.slots.len() * 2;
        let mut slots = Vec::with_capacity_in(n, self.a);
        slots.resize_with(n, || None);
        let old = std::mem::replace(&mut self.slots, slots);
        for s in old.into_iter().flatten() {
            let i = self.find(&s.key, s.hash);
            self.slots[i] = Some(s);
        }
    }

    fn remove(&mut self, key: &[u8]) -> Option<u64> {
        let mask = self.mask();
        let mut hole = self.find(key, fnv(key));
        let removed = self.slots[hole].take()?;
        self.len -= 1;
        let mut j = hole;
        loop {
            j = (j + 1) & mask;
            let Some(s) = &self.slots[j] else { break };
            let home = s.hash as usize & mask;
            // Move `s` back into the hole unless its home lies in (hole, j].
            if (j.wrapping_sub(home) & mask) >= (j.wrapping_sub(hole) & mask) {
                self.slots[hole] = self.slots[j].take();
                hole = j;
            }
        }
        Some(removed.count)
    }

    /// Order-independent: the same for any table layout.
    fn checksum(&self) -> u64 {
        self.slots.iter().flatten().fold(self.len as u64, |acc, s| {
            acc.wrapping_add(s.hash.rotate_left(7) ^ s.count)
        })
    }
}

impl Strings {
    fn push_num<A: Allocator>(s: &mut Vec<u8, A>, mut n: u64) {
        let mut digits = [0u8; 20];
        let mut k = digits.len();
        loop {
            k -= 1;
            digits[k] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        // Byte by byte, as string building code does: exercises growth.
        for &d in &digits[k..] {
            s.push(d);
        }
    }

    fn make<A: Allocator + Copy>(rng: &mut Rng, distinct: usize, a: A) -> Vec<u8, A> {
        const PREFIXES: [&[u8]; 4] = [b"user/", b"session:", b"k", b"/api/v2/items/"];
        let mut s = Vec::new_in(a);
        let id = rng.below(distinct) as u64;
        for &b in PREFIXES[(id % 4) as usize] {
            s.push(b);
        }
        Self::push_num(&mut s, id);
        if id.is_multiple_of(3) {
            s.extend_from_slice(b"/profile");
        }
        s
    }
}

impl Workload for Strings {
    const NAME: &'static str = "strings";
    const ABOUT: &'static str = "a string table: small owned strings in a vector and a hash map";

    fn run<A: Allocator + Copy>(a: A, scale: Scale) -> u64 {
        let n = scale.pick(1_000_000, 300_000);
        let distinct = n / 2;
        let mut rng = Rng::new(0x5791);
        let mut table: Vec<Vec<u8, A>, A> = Vec::new_in(a);
        let mut map = StrMap::new_in(a);
        for _ in 0..n {
            let s = Self::make(&mut rng, distinct, a);
            map.add(&s, 1);
            table.push(s);
        }
        // Edit a third of the strings in place (grow), shrink a fifth.
        for (i, s) in table.iter_mut().enumerate() {
            if i.is_multiple_of(3) {
                s.extend_from_slice(b"#edited");
                map.add(s, 2);
            } else if i.is_multiple_of(5) {
                s.truncate(s.len() / 2);
                s.shrink_to_fit();
            }
        }
        // Remove some keys, drop every fourth string.
        let mut sum = 0u64;
        for i in (0..table.len()).step_by(7) {
            sum = sum.wrapping_add(map.remove(&table[i]).unwrap_or(0));
        }
        let mut kept: Vec<Vec<u8, A>, A> = Vec::new_in(a);
        for (i, s) in table.into_iter().enumerate() {
            if !i.is_multiple_of(4) {
                kept.push(s);
            }
        }
        sum = sum.wrapping_add(map.checksum());
        for s in &kept {
            sum = sum.wrapping_add(fnv(s) ^ s.len() as u64);
        }
        sum
    }
}

// ---------------------------------------------------------------------------
// Child: run one workload on one backend, report one line.

fn child(workload: &str, backend: &str, scale: &str) -> ExitCode {
    let (Some(w), Some(b), Some(scale)) = (
        WORKLOADS.iter().find(|w| w.name == workload),
        Backend::parse(backend),
        Scale::parse(scale),
    ) else {
        eprintln!(
            "arena_compare --child: unknown workload, backend or scale: {workload} {backend} {scale}"
        );
        return ExitCode::from(2);
    };
    let sample = child::measure(|_| (w.run)(b, scale));
    println!("{}", sample.line(None));
    ExitCode::SUCCESS
}

/// The widths of the progress lines on stderr.
const PROGRESS: Progress = Progress {
    count_width: 2,
    column_width: 7,
    ms_width: 8,
};

fn run_child(w: &Entry, b: Backend, scale: Scale) -> Result<Sample, String> {
    let mut cmd = child::own_command()?;
    cmd.args(["--child", w.name, b.name(), scale.name()]);
    child::run(&mut cmd, None, &format!("{} / {}", w.name, b.name()))
}

// ---------------------------------------------------------------------------
// Parent: run everything, check checksums, print the table.

struct Options {
    scale: Scale,
    runs: usize,
    only: Option<std::vec::Vec<String>>,
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
    let known: std::vec::Vec<&str> = WORKLOADS.iter().map(|w| w.name).collect();
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

fn main() -> ExitCode {
    let args: std::vec::Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--child") {
        if args.len() != 4 {
            eprintln!("arena_compare: --child needs WORKLOAD BACKEND SCALE");
            return ExitCode::from(2);
        }
        return child(&args[1], &args[2], &args[3]);
    }
    let opts = match cli::or_usage("arena_compare", USAGE, parse_args(&args)) {
        Ok(o) => o,
        Err(exit) => return exit,
    };
    let workloads: std::vec::Vec<&Entry> = WORKLOADS
        .iter()
        .filter(|w| cli::selected(&opts.only, w.name))
        .collect();
    cli::exit_status("arena_compare", compare(&workloads, &opts, &args))
}

fn compare(workloads: &[&Entry], opts: &Options, args: &[String]) -> Result<(), String> {
    let backends = Backend::available();
    let started = Instant::now();
    let rows: std::vec::Vec<Row> = workloads
        .iter()
        .map(|w| Row {
            name: w.name,
            letter: None,
            about: w.about,
        })
        .collect();
    let columns: std::vec::Vec<Column> = backends
        .iter()
        .map(|b| Column {
            name: b.name(),
            color: b.color(),
        })
        .collect();
    let samples = child::sweep(&rows, &columns, opts.runs, &PROGRESS, |wi, bi| {
        run_child(workloads[wi], backends[bi], opts.scale)
    })?;
    let total = workloads.len() * backends.len() * opts.runs;
    let results = Matrix::new(rows, columns, samples, Peak::Max);
    let meta = Meta::now(
        support::report::command_line("cargo run --release --example arena_compare", args),
        opts.scale.name(),
        opts.runs,
    );
    print_table(&results, &meta);
    eprintln!(
        "arena_compare: {total} runs in {:.1} s, checksums agree",
        started.elapsed().as_secs_f64()
    );
    if let Some(path) = &opts.json {
        let flist = Backend::Arena(flistalloc::Backend::Flist).name();
        let vs = |other: &str| {
            serde_json::json!({
                "time": results.time_vs(flist, other),
                "peak_rss": results.rss_vs(flist, other),
            })
        };
        let flist_vs = serde_json::json!({
            "malloc": vs("malloc"),
            "jemalloc": vs("jemalloc"),
            "system": vs("system"),
        });
        let json = results.to_json(
            "flistalloc examples/arena_compare",
            &meta,
            vec![("flist_vs", flist_vs)],
        );
        support::report::write_file(path, &json.to_string())?;
        eprintln!("arena_compare: wrote {path}");
    }
    if let Some(path) = &opts.svg {
        support::report::write_file(path, &results.to_svg(SVG_TITLE, &meta))?;
        eprintln!("arena_compare: wrote {path}");
    }
    Ok(())
}

fn print_table(r: &Matrix, meta: &Meta) {
    println!(
        "flistalloc arena_compare (Arena over flist, malloc, jemalloc; system = malloc without an arena): {} sizes, median time of {} run(s), peak RSS = VmHWM of each child process",
        meta.scale, meta.runs
    );
    println!("{}, {} cores, {}", meta.cpu, meta.cores, meta.date);
    println!("command: {}", meta.command);
    println!();
    r.print_table(&TableStyle {
        label_width: 9,
        column_width: 8,
        column_header: "backend",
        ratio_header: "vs best",
        rule: 58,
    });
    println!();
    for w in &r.rows {
        println!("  {:<8} {}", w.name, w.about);
    }
    println!(
        "  (each child starts at about {:.1} MiB RSS before its workload runs)",
        mib(r.base_kb())
    );
    // The flist arena against each other column (geometric means).
    let flist = Backend::Arena(flistalloc::Backend::Flist).name();
    println!();
    for other in Backend::available().into_iter().skip(1) {
        let other = other.name();
        if let (Some(t), Some(m)) = (r.time_vs(flist, other), r.rss_vs(flist, other)) {
            println!(
                "flist / {other:<8} (geometric mean over workloads): time {t:.2}x ({:.2}x {}), peak RSS {m:.2}x",
                if t <= 1.0 { 1.0 / t } else { t },
                if t <= 1.0 { "faster" } else { "slower" }
            );
        }
    }
}
