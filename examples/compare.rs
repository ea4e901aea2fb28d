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
//! Six workloads, (a) to (f), each run with four allocators: `flist`,
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
//! The `#[global_allocator]` here is [`Switch`], a few lines that forward
//! every call either to `mimalloc::MiMalloc` or to a
//! `static FLIST: flistalloc::Flist = flistalloc::Flist::new()`, which reads
//! `FLISTALLOC_BACKEND` itself. Which one is decided once, at the first
//! allocation, from `COMPARE_ALLOC` (read with `libc::getenv`, which does not
//! allocate). The dispatch is one well-predicted branch on a static per call,
//! paid by all four columns alike.
//!
//! (The explicit `Arena` API against malloc, single-threaded:
//! `examples/arena_compare.rs`.)

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::alloc::{GlobalAlloc, Layout};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt::Write as _;
use std::process::{Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------
// The global allocator: Flist (three backends) or mimalloc, chosen at start.

static FLIST: flistalloc::Flist = flistalloc::Flist::new();

/// 0: not decided yet; [`MODE_FLIST`]; [`MODE_MIMALLOC`].
static MODE: AtomicU8 = AtomicU8::new(0);
const MODE_FLIST: u8 = 1;
const MODE_MIMALLOC: u8 = 2;

/// Forwards every call to `mimalloc` when `COMPARE_ALLOC=mimalloc`, else to
/// [`FLIST`].
struct Switch;

#[global_allocator]
static GLOBAL: Switch = Switch;

#[inline(always)]
fn use_mimalloc() -> bool {
    match MODE.load(Ordering::Relaxed) {
        0 => decide_mode(),
        m => m == MODE_MIMALLOC,
    }
}

/// Reads `COMPARE_ALLOC` without allocating. Threads racing here compute the
/// same answer (the environment does not change), so a plain store is enough.
#[cold]
#[inline(never)]
fn decide_mode() -> bool {
    // SAFETY: the name is NUL-terminated; getenv returns null or a pointer to
    // a NUL-terminated value in the environment block, which nobody modifies
    // (this program never calls setenv).
    let mimalloc = unsafe {
        let v = libc::getenv(c"COMPARE_ALLOC".as_ptr());
        !v.is_null() && std::ffi::CStr::from_ptr(v).to_bytes() == b"mimalloc"
    };
    let mode = if mimalloc { MODE_MIMALLOC } else { MODE_FLIST };
    MODE.store(mode, Ordering::Relaxed);
    mimalloc
}

// SAFETY: every call goes to one of two sound global allocators, and always
// to the same one: the mode is decided before the first allocation and never
// changes, so each block is freed (or resized) by the allocator that made it.
unsafe impl GlobalAlloc for Switch {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if use_mimalloc() {
            // SAFETY: forwarded GlobalAlloc contract.
            unsafe { mimalloc::MiMalloc.alloc(layout) }
        } else {
            // SAFETY: forwarded GlobalAlloc contract.
            unsafe { FLIST.alloc(layout) }
        }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if use_mimalloc() {
            // SAFETY: forwarded GlobalAlloc contract.
            unsafe { mimalloc::MiMalloc.alloc_zeroed(layout) }
        } else {
            // SAFETY: forwarded GlobalAlloc contract.
            unsafe { FLIST.alloc_zeroed(layout) }
        }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if use_mimalloc() {
            // SAFETY: forwarded contract; the block came from mimalloc (the
            // mode never changes).
            unsafe { mimalloc::MiMalloc.dealloc(ptr, layout) }
        } else {
            // SAFETY: forwarded contract; the block came from FLIST.
            unsafe { FLIST.dealloc(ptr, layout) }
        }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if use_mimalloc() {
            // SAFETY: forwarded contract; the block came from mimalloc.
            unsafe { mimalloc::MiMalloc.realloc(ptr, layout, new_size) }
        } else {
            // SAFETY: forwarded contract; the block came from FLIST.
            unsafe { FLIST.realloc(ptr, layout, new_size) }
        }
    }
}

// ---------------------------------------------------------------------------
// Usage and options

const USAGE: &str = "\
usage: compare [--quick] [--runs N] [--only NAME[,NAME...]] [--json PATH] [--svg PATH]

Runs six allocation workloads with flist, glibc malloc, jemalloc and mimalloc,
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

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scale {
    Full,
    Quick,
}

impl Scale {
    fn pick(self, full: usize, quick: usize) -> usize {
        match self {
            Scale::Full => full,
            Scale::Quick => quick,
        }
    }
    fn name(self) -> &'static str {
        match self {
            Scale::Full => "full",
            Scale::Quick => "quick",
        }
    }
}

struct Options {
    scale: Scale,
    runs: usize,
    only: Option<Vec<String>>,
    json: Option<String>,
    svg: Option<String>,
}

fn parse_args(args: &[String]) -> Result<Options, String> {
    let mut opts = Options {
        scale: Scale::Full,
        runs: 3,
        only: None,
        json: None,
        svg: None,
    };
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = |what: &str| {
            it.next()
                .filter(|v| !v.starts_with("--"))
                .cloned()
                .ok_or_else(|| format!("{arg} needs {what}"))
        };
        match arg.as_str() {
            "--quick" => opts.scale = Scale::Quick,
            "--runs" => {
                let v = value("a number")?;
                opts.runs = match v.parse() {
                    Ok(n) if n >= 1 => n,
                    _ => return Err(format!("--runs: not a positive number: {v:?}")),
                };
            }
            "--only" => {
                let v = value("workload names")?;
                let names: Vec<String> = v.split(',').map(|s| s.trim().to_owned()).collect();
                for n in &names {
                    if !WORKLOADS.iter().any(|w| w.name == n) {
                        return Err(format!(
                            "--only: unknown workload {n:?} (known: {})",
                            WORKLOADS
                                .iter()
                                .map(|w| w.name)
                                .collect::<Vec<_>>()
                                .join(", ")
                        ));
                    }
                }
                opts.only = Some(names);
            }
            "--json" => opts.json = Some(value("a file path")?),
            "--svg" => opts.svg = Some(value("a file path")?),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(opts)
}

// ---------------------------------------------------------------------------
// Allocators

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Alloc {
    Flist,
    Malloc,
    Jemalloc,
    Mimalloc,
}

impl Alloc {
    const ALL: [Alloc; 4] = [
        Alloc::Flist,
        Alloc::Malloc,
        Alloc::Jemalloc,
        Alloc::Mimalloc,
    ];

    fn name(self) -> &'static str {
        match self {
            Alloc::Flist => "flist",
            Alloc::Malloc => "malloc",
            Alloc::Jemalloc => "jemalloc",
            Alloc::Mimalloc => "mimalloc",
        }
    }

    fn color(self) -> &'static str {
        match self {
            Alloc::Flist => "#1f6fb4",
            Alloc::Malloc => "#8c8c8c",
            Alloc::Jemalloc => "#e8871e",
            Alloc::Mimalloc => "#2f9e44",
        }
    }

    /// The environment a child needs to run on this allocator.
    fn configure(self, cmd: &mut Command) {
        match self {
            Alloc::Mimalloc => {
                cmd.env("COMPARE_ALLOC", "mimalloc")
                    .env_remove("FLISTALLOC_BACKEND");
            }
            b => {
                cmd.env("FLISTALLOC_BACKEND", b.name())
                    .env_remove("COMPARE_ALLOC");
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Helpers for the workloads

/// splitmix64: seeded, the same sequence for every allocator.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x2545_f491_4f6c_dd1d) ^ 0x1234_5678)
    }
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// In `0..n` (n > 0).
    fn below(&mut self, n: usize) -> usize {
        (((self.next() >> 32) * n as u64) >> 32) as usize
    }
    /// In `lo..=hi`.
    fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + self.below(hi - lo + 1)
    }
    /// True with probability `pct` percent.
    fn pct(&mut self, pct: usize) -> bool {
        self.below(100) < pct
    }
}

fn mix(x: u64) -> u64 {
    let x = (x ^ (x >> 33)).wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^ (x >> 29)
}

/// FNV-1a over every byte: for short strings.
fn fnv(bytes: &[u8]) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for &b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x100_0000_01b3);
    }
    h
}

/// A hash of a buffer's length, its ends and one byte per 256: checks that
/// buffers kept their contents without making the workload about hashing.
fn sample_hash(bytes: &[u8]) -> u64 {
    let mut h = bytes.len() as u64;
    for i in (0..bytes.len()).step_by(256) {
        h = mix(h ^ bytes[i] as u64);
    }
    if let Some(&last) = bytes.last() {
        h = mix(h ^ ((last as u64) << 8));
    }
    h
}

const WORDS: [&str; 32] = [
    "alpha",
    "bravo",
    "charlie",
    "delta",
    "echo",
    "foxtrot",
    "golf",
    "hotel",
    "india",
    "juliet",
    "kilo",
    "lima",
    "mike",
    "november",
    "oscar",
    "papa",
    "quebec",
    "romeo",
    "sierra",
    "tango",
    "uniform",
    "victor",
    "whiskey",
    "xray",
    "yankee",
    "zulu",
    "storage",
    "engine",
    "allocator",
    "segment",
    "pool",
    "chunk",
];

/// A string of `lo..=hi` random words, built by appending (as text code does).
fn sentence(rng: &mut Rng, lo: usize, hi: usize) -> String {
    let words = rng.range(lo, hi);
    let mut s = String::new();
    for i in 0..words {
        if i > 0 {
            s.push(' ');
        }
        s.push_str(WORDS[rng.below(WORDS.len())]);
    }
    s
}

/// What a workload reports besides its checksum.
#[derive(Default)]
struct Extra {
    /// `VmRSS` at the end of the workload, before teardown (kB).
    final_rss_kb: Option<u64>,
    /// Bytes the workload holds at that moment.
    live_bytes: Option<u64>,
}

struct Workload {
    name: &'static str,
    letter: char,
    about: &'static str,
    run: fn(Scale, &mut Extra) -> u64,
}

const WORKLOADS: &[Workload] = &[
    Workload {
        name: "json",
        letter: 'a',
        about: "many small short-lived objects: serde_json parse / build / serialize loop (2 threads)",
        run: json_workload,
    },
    Workload {
        name: "maps",
        letter: 'b',
        about: "a large BTreeMap and HashMap of owned strings built, queried, torn down (1 thread)",
        run: maps_workload,
    },
    Workload {
        name: "prodcons",
        letter: 'c',
        about: "producer / consumer: messages made on one thread, freed on another (2 + 2 threads)",
        run: prodcons_workload,
    },
    Workload {
        name: "server",
        letter: 'd',
        about: "server loop: per-request buffers of mixed sizes, shared cache with eviction (4 workers)",
        run: server_workload,
    },
    Workload {
        name: "churn",
        letter: 'e',
        about: "thread churn: short-lived threads leave objects behind for later ones (4 at a time)",
        run: churn_workload,
    },
    Workload {
        name: "frag",
        letter: 'f',
        about: "fragmentation: allocate a lot, free 90% at random, allocate other sizes (1 thread)",
        run: frag_workload,
    },
];

// ---------------------------------------------------------------------------
// (a) json: many small short-lived objects

#[derive(Serialize, Deserialize)]
struct Order {
    id: u64,
    customer: String,
    email: String,
    status: String,
    items: Vec<Item>,
    tags: Vec<String>,
    note: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct Item {
    sku: String,
    name: String,
    qty: u32,
    price_cents: u64,
    attrs: BTreeMap<String, String>,
}

fn make_orders(rng: &mut Rng, iter: u64) -> Vec<Order> {
    const STATUS: [&str; 4] = ["new", "paid", "shipped", "returned"];
    (0..rng.range(1, 8))
        .map(|k| {
            let customer = sentence(rng, 2, 2);
            let email = format!("{}.{}@example.com", customer.replace(' ', "."), iter % 1000);
            let items = (0..rng.range(1, 6))
                .map(|_| {
                    let mut attrs = BTreeMap::new();
                    for _ in 0..rng.below(4) {
                        attrs.insert(
                            WORDS[rng.below(WORDS.len())].to_owned(),
                            sentence(rng, 1, 3),
                        );
                    }
                    Item {
                        sku: format!("SKU-{:06}", rng.below(1_000_000)),
                        name: sentence(rng, 1, 5),
                        qty: rng.range(1, 20) as u32,
                        price_cents: rng.range(99, 99_999) as u64,
                        attrs,
                    }
                })
                .collect();
            Order {
                id: iter * 16 + k as u64,
                customer,
                email,
                status: STATUS[rng.below(4)].to_owned(),
                items,
                tags: (0..rng.below(5)).map(|_| sentence(rng, 1, 1)).collect(),
                note: rng.pct(30).then(|| sentence(rng, 3, 12)),
            }
        })
        .collect()
}

/// An order-independent digest of a JSON value.
fn walk(v: &Value) -> u64 {
    match v {
        Value::Null => 1,
        Value::Bool(b) => 2 + *b as u64,
        Value::Number(n) => n.as_u64().unwrap_or(3),
        Value::String(s) => fnv(s.as_bytes()),
        Value::Array(a) => a.iter().fold(5, |acc, x| acc.wrapping_add(walk(x))),
        Value::Object(m) => m.iter().fold(7, |acc, (k, x)| {
            acc.wrapping_add(fnv(k.as_bytes()) ^ walk(x))
        }),
    }
}

fn json_iteration(iter: u64) -> u64 {
    let mut rng = Rng::new(iter);
    let orders = make_orders(&mut rng, iter);
    // Serialize, parse untyped, walk, build a response, serialize it.
    let text = if iter.is_multiple_of(8) {
        serde_json::to_string_pretty(&orders)
    } else {
        serde_json::to_string(&orders)
    }
    .expect("serialize");
    drop(orders);
    let doc: Value = serde_json::from_str(&text).expect("parse");
    let mut sum = walk(&doc).wrapping_add(text.len() as u64);
    let mut index = serde_json::Map::new();
    let mut customers = Vec::new();
    let mut total = 0u64;
    for order in doc.as_array().expect("array") {
        customers.push(order["customer"].clone());
        for item in order["items"].as_array().expect("items") {
            let qty = item["qty"].as_u64().expect("qty");
            total += qty * item["price_cents"].as_u64().expect("price");
            index.insert(
                item["sku"].as_str().expect("sku").to_owned(),
                json!({ "qty": qty, "order": order["id"], "name": item["name"] }),
            );
        }
    }
    let response = json!({
        "ok": true,
        "orders": customers.len(),
        "customers": customers,
        "total_cents": total,
        "index": index,
    });
    let out = serde_json::to_vec(&response).expect("serialize");
    sum = sum.wrapping_add(fnv(&out));
    // Parse typed, as a handler with a request struct does.
    let typed: Vec<Order> = serde_json::from_str(&text).expect("parse typed");
    for o in &typed {
        sum = sum.wrapping_add(o.id ^ o.items.iter().map(|i| i.price_cents).sum::<u64>());
        sum = sum.wrapping_add(o.note.as_deref().map_or(0, |n| n.len() as u64));
    }
    sum
}

fn json_workload(scale: Scale, _: &mut Extra) -> u64 {
    const THREADS: u64 = 2;
    let iters = scale.pick(40_000, 2_000) as u64;
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                s.spawn(move || {
                    (t..iters)
                        .step_by(THREADS as usize)
                        .fold(0u64, |acc, i| acc.wrapping_add(json_iteration(i)))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("json thread"))
            .fold(0, u64::wrapping_add)
    })
}

// ---------------------------------------------------------------------------
// (b) maps: a large BTreeMap and HashMap of owned strings

fn user_key(id: usize) -> String {
    format!("user:{:08x}:{}", mix(id as u64) as u32, id % 97)
}

fn maps_workload(scale: Scale, _: &mut Extra) -> u64 {
    let n = scale.pick(700_000, 40_000);
    let mut rng = Rng::new(0xb7ee);
    let mut sum = 0u64;
    // Build: key -> profile text, and path -> owner name, sorted.
    let mut by_user: HashMap<String, String> = HashMap::new();
    let mut by_path: BTreeMap<String, String> = BTreeMap::new();
    for id in 0..n {
        by_user.insert(user_key(id), sentence(&mut rng, 2, 14));
        let path = format!(
            "/{}/{}/{:06}",
            WORDS[id % WORDS.len()],
            WORDS[(id / 7) % WORDS.len()],
            mix(id as u64 ^ 0x55) % 1_000_000
        );
        by_path.insert(path, WORDS[rng.below(WORDS.len())].to_owned());
    }
    // Query: point lookups with temporary keys, and range scans.
    for _ in 0..n {
        let id = rng.below(n + n / 8);
        if let Some(v) = by_user.get(&user_key(id)) {
            sum = sum.wrapping_add(v.len() as u64 ^ fnv(&v.as_bytes()[..4.min(v.len())]));
        }
    }
    for q in 0..n / 8 {
        let from = format!(
            "/{}/{}",
            WORDS[q % WORDS.len()],
            WORDS[rng.below(WORDS.len())]
        );
        for (k, v) in by_path.range(from..).take(8) {
            sum = sum.wrapping_add(k.len() as u64 * 31 + v.len() as u64);
        }
    }
    // Update a quarter of the values in place (they grow), remove a third.
    for id in (0..n).step_by(4) {
        if let Some(v) = by_user.get_mut(&user_key(id)) {
            v.push_str(" (edited by ");
            v.push_str(WORDS[id % WORDS.len()]);
            v.push(')');
        }
    }
    for id in (0..n).step_by(3) {
        if let Some(v) = by_user.remove(&user_key(id)) {
            sum = sum.wrapping_add(fnv(v.as_bytes()));
        }
    }
    let doomed: Vec<String> = by_path.keys().step_by(3).cloned().collect();
    for k in &doomed {
        sum = sum.wrapping_add(by_path.remove(k).map_or(0, |v| v.len() as u64));
    }
    drop(doomed);
    // What is left, in an order-independent sum; then tear down.
    for (k, v) in &by_user {
        sum = sum.wrapping_add(fnv(k.as_bytes()) ^ v.len() as u64);
    }
    for (k, v) in &by_path {
        sum = sum.wrapping_add(k.len() as u64 ^ fnv(v.as_bytes()));
    }
    sum.wrapping_add((by_user.len() + by_path.len()) as u64)
}

// ---------------------------------------------------------------------------
// (c) prodcons: objects made on one thread and freed on another

struct Message {
    id: u64,
    topic: String,
    payload: Vec<u8>,
    fields: Vec<(String, u64)>,
}

fn make_message(rng: &mut Rng, id: u64) -> Box<Message> {
    let size = match rng.below(100) {
        0..=59 => rng.range(8, 128),
        60..=94 => rng.range(129, 2048),
        _ => rng.range(2049, 16384),
    };
    let mut payload = vec![id as u8; size];
    payload[size - 1] = (id >> 8) as u8;
    Box::new(Message {
        id,
        topic: format!("topic/{}/{}", WORDS[(id % 32) as usize], id % 50),
        payload,
        fields: (0..rng.below(5))
            .map(|k| (WORDS[rng.below(WORDS.len())].to_owned(), id + k as u64))
            .collect(),
    })
}

fn consume_message(m: &Message) -> u64 {
    let f = m
        .fields
        .iter()
        .fold(0u64, |a, (k, v)| a.wrapping_add(k.len() as u64 ^ *v));
    m.id ^ fnv(m.topic.as_bytes()) ^ sample_hash(&m.payload) ^ f
}

fn prodcons_workload(scale: Scale, _: &mut Extra) -> u64 {
    const PAIRS: u64 = 2;
    const BATCH: usize = 64;
    let per_producer = scale.pick(900_000, 50_000) as u64;
    std::thread::scope(|s| {
        let mut consumers = Vec::new();
        for p in 0..PAIRS {
            let (tx, rx) = mpsc::sync_channel::<Vec<Box<Message>>>(16);
            s.spawn(move || {
                let mut rng = Rng::new(0xc0de + p);
                let mut batch = Vec::with_capacity(BATCH);
                for i in 0..per_producer {
                    batch.push(make_message(&mut rng, p << 40 | i));
                    if batch.len() == BATCH {
                        let full = std::mem::replace(&mut batch, Vec::with_capacity(BATCH));
                        tx.send(full).expect("consumer alive");
                    }
                }
                if !batch.is_empty() {
                    tx.send(batch).expect("consumer alive");
                }
            });
            consumers.push(s.spawn(move || {
                let mut sum = 0u64;
                for batch in rx {
                    for m in batch {
                        sum = sum.wrapping_add(consume_message(&m));
                    }
                }
                sum
            }));
        }
        consumers
            .into_iter()
            .map(|h| h.join().expect("consumer"))
            .fold(0, u64::wrapping_add)
    })
}

// ---------------------------------------------------------------------------
// (d) server: workers, per-request buffers, a shared cache with eviction

const CACHE_SHARDS: usize = 16;
const CACHE_SHARD_BYTES: usize = 2 << 20;

#[derive(Default)]
struct Shard {
    map: HashMap<u64, Arc<Vec<u8>>>,
    order: VecDeque<u64>,
    bytes: usize,
}

/// The response body for `key`: depends on the key only, so cache hits and
/// misses give the same response.
fn render_body(key: u64) -> Vec<u8> {
    let mut rng = Rng::new(key ^ 0xb0d1);
    let size = match rng.below(100) {
        0..=69 => rng.range(64, 1024),
        70..=97 => rng.range(1025, 16 << 10),
        _ => rng.range((16 << 10) + 1, 320 << 10),
    };
    let mut body = Vec::new();
    let mut line = 0u64;
    while body.len() < size {
        let _ = writeln!(
            Bytes(&mut body),
            "{} {} {}",
            key,
            line,
            WORDS[((key + line) % 32) as usize]
        );
        line += 1;
        if body.len() > 2048 {
            // Bulk of larger bodies: a fill, as when copying a file.
            body.resize(size, b'a' + (key % 26) as u8);
        }
    }
    body.truncate(size);
    body
}

/// `fmt::Write` into a byte vector.
struct Bytes<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for Bytes<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

fn serve(request: u64, cache: &[Mutex<Shard>], log: &mut VecDeque<String>) -> u64 {
    let mut rng = Rng::new(request);
    let key = if rng.pct(60) {
        rng.below(1_000) as u64
    } else {
        rng.below(100_000) as u64
    };
    // The request as it arrives: a text buffer, then parsed into owned parts.
    let mut raw = format!(
        "GET /items/{key}?user={}&session={:x} HTTP/1.1\r\n",
        rng.below(50_000),
        rng.next()
    );
    for h in 0..rng.range(3, 10) {
        let _ = write!(
            raw,
            "X-{}-{h}: {}\r\n",
            WORDS[rng.below(32)],
            sentence(&mut rng, 2, 2)
        );
    }
    let mut upload = Vec::new();
    if rng.pct(10) {
        // A request with a body (mixed sizes, a few above 256 KiB).
        let n = if rng.pct(10) {
            rng.range(1 << 10, 400 << 10)
        } else {
            rng.range(64, 4 << 10)
        };
        upload.resize(n, request as u8);
    }
    let mut lines = raw.split("\r\n").filter(|l| !l.is_empty());
    let start: Vec<String> = lines
        .next()
        .expect("request line")
        .split(' ')
        .map(str::to_owned)
        .collect();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(": "))
        .map(|(k, v)| (k.to_ascii_lowercase(), v.to_owned()))
        .collect();
    drop(raw);
    // The body: from the cache, or rendered and cached (evicting the oldest).
    let shard = &cache[(mix(key) as usize) % CACHE_SHARDS];
    let cached = shard.lock().expect("cache").map.get(&key).cloned();
    let body = match cached {
        Some(b) => b,
        None => {
            let body = Arc::new(render_body(key));
            let mut guard = shard.lock().expect("cache");
            let sh = &mut *guard;
            if let std::collections::hash_map::Entry::Vacant(e) = sh.map.entry(key) {
                e.insert(Arc::clone(&body));
                sh.order.push_back(key);
                sh.bytes += body.len();
                while sh.bytes > CACHE_SHARD_BYTES {
                    let Some(old) = sh.order.pop_front() else {
                        break;
                    };
                    if let Some(b) = sh.map.remove(&old) {
                        sh.bytes -= b.len();
                    }
                }
            }
            body
        }
    };
    // The response: a header block and a copy of the body in one buffer.
    let mut response = Vec::with_capacity(256);
    let _ = write!(
        Bytes(&mut response),
        "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nx-path: {}\r\n",
        body.len(),
        start[1]
    );
    for (k, v) in headers.iter().take(3) {
        let _ = write!(Bytes(&mut response), "x-echo-{k}: {}\r\n", v.len());
    }
    response.extend_from_slice(b"\r\n");
    response.extend_from_slice(&body);
    let sum = sample_hash(&response) ^ sample_hash(&upload).rotate_left(17);
    // An access log line, kept for a while.
    if log.len() == 1024 {
        log.pop_front();
    }
    log.push_back(format!(
        "{} {} {} {}",
        start[0],
        start[1],
        response.len(),
        headers.len()
    ));
    sum
}

fn server_workload(scale: Scale, _: &mut Extra) -> u64 {
    const WORKERS: usize = 4;
    let requests = scale.pick(250_000, 12_000);
    let next = AtomicUsize::new(0);
    let cache: Vec<Mutex<Shard>> = (0..CACHE_SHARDS)
        .map(|_| Mutex::new(Shard::default()))
        .collect();
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..WORKERS)
            .map(|_| {
                s.spawn(|| {
                    let mut log = VecDeque::with_capacity(1024);
                    let mut sum = 0u64;
                    loop {
                        let r = next.fetch_add(1, Ordering::Relaxed);
                        if r >= requests {
                            break;
                        }
                        sum = sum.wrapping_add(serve(r as u64, &cache, &mut log));
                    }
                    sum
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("worker"))
            .fold(0, u64::wrapping_add)
    })
}

// ---------------------------------------------------------------------------
// (e) churn: short-lived threads that leave objects behind

enum Leftover {
    Bytes(Box<[u8]>),
    Text(String),
    Words(Vec<u64>),
}

impl Leftover {
    fn make(rng: &mut Rng, id: u64) -> Leftover {
        match rng.below(10) {
            0..=4 => {
                let n = if rng.pct(2) {
                    rng.range(4 << 10, 64 << 10)
                } else {
                    rng.range(8, 512)
                };
                let mut b = vec![id as u8; n].into_boxed_slice();
                b[n - 1] = (id >> 8) as u8;
                Leftover::Bytes(b)
            }
            5..=7 => Leftover::Text(format!("{id}:{}", sentence(rng, 1, 6))),
            _ => Leftover::Words((0..rng.range(1, 40) as u64).map(|k| id ^ k).collect()),
        }
    }

    /// Consumes the object: its digest, then it is freed (here, by whichever
    /// thread holds it).
    fn finish(self) -> u64 {
        match self {
            Leftover::Bytes(b) => sample_hash(&b),
            Leftover::Text(s) => fnv(s.as_bytes()),
            Leftover::Words(w) => w.iter().fold(w.len() as u64, |a, &x| a.wrapping_add(x)),
        }
    }
}

fn churn_workload(scale: Scale, _: &mut Extra) -> u64 {
    const AT_ONCE: usize = 4;
    const OBJECTS: usize = 1_200;
    let threads = scale.pick(4_000, 300);
    let shared: Mutex<Vec<Leftover>> = Mutex::new(Vec::new());
    let mut sum = 0u64;
    for wave in 0..threads / AT_ONCE {
        let wave_sum = std::thread::scope(|s| {
            let handles: Vec<_> = (0..AT_ONCE)
                .map(|k| {
                    let shared = &shared;
                    s.spawn(move || {
                        let id = (wave * AT_ONCE + k) as u64;
                        let mut rng = Rng::new(id ^ 0xc4c4);
                        let mut sum = 0u64;
                        // Free what earlier (now gone) threads left behind.
                        let inherited: Vec<Leftover> = {
                            let mut list = shared.lock().expect("leftovers");
                            let n = list.len().min(OBJECTS / 3);
                            let at = list.len() - n;
                            list.split_off(at)
                        };
                        for o in inherited {
                            sum = sum.wrapping_add(o.finish());
                        }
                        // Work: make objects, free half of them at random.
                        let mut mine: Vec<Option<Leftover>> = (0..OBJECTS)
                            .map(|i| Some(Leftover::make(&mut rng, id << 20 | i as u64)))
                            .collect();
                        for _ in 0..OBJECTS / 2 {
                            if let Some(o) = mine[rng.below(OBJECTS)].take() {
                                sum = sum.wrapping_add(o.finish());
                            }
                        }
                        // Leave about a quarter behind for later threads; the
                        // rest is freed as the thread ends.
                        let mut leave = Vec::with_capacity(OBJECTS / 4);
                        for slot in mine.iter_mut().step_by(2) {
                            if let Some(o) = slot.take() {
                                leave.push(o);
                            }
                        }
                        shared.lock().expect("leftovers").append(&mut leave);
                        for o in mine.into_iter().flatten() {
                            sum = sum.wrapping_add(o.finish());
                        }
                        sum
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("churn thread"))
                .fold(0, u64::wrapping_add)
        });
        sum = sum.wrapping_add(wave_sum);
    }
    let rest = std::mem::take(&mut *shared.lock().expect("leftovers"));
    for o in rest {
        sum = sum.wrapping_add(o.finish());
    }
    sum
}

// ---------------------------------------------------------------------------
// (f) frag: allocate a lot, free most at random, allocate other sizes

fn frag_workload(scale: Scale, extra: &mut Extra) -> u64 {
    let n = scale.pick(3_600_000, 150_000);
    let mut rng = Rng::new(0xf7a6);
    let mut sum = 0u64;
    // Phase 1: many small objects (16 B - 1 KiB, mostly small), all touched.
    let mut objs: Vec<Option<Box<[u8]>>> = (0..n)
        .map(|i| {
            let size = match rng.below(10) {
                0..=5 => rng.range(16, 64),
                6..=8 => rng.range(65, 256),
                _ => rng.range(257, 1024),
            };
            Some(vec![i as u8; size].into_boxed_slice())
        })
        .collect();
    // Phase 2: free 90% of them, in random order.
    let mut order: Vec<u32> = (0..n as u32).collect();
    for i in (1..n).rev() {
        order.swap(i, rng.below(i + 1));
    }
    for &i in &order[..n / 10 * 9] {
        let o = objs[i as usize].take().expect("freed once");
        sum = sum.wrapping_add(o.len() as u64 ^ o[o.len() - 1] as u64);
    }
    drop(order);
    // Phase 3: other sizes (1.1 - 6 KiB), half the bytes that were freed.
    let small_live: u64 = objs.iter().flatten().map(|o| o.len() as u64).sum();
    let target = scale.pick(216 << 20, 12 << 20) as u64;
    let mut big: Vec<Box<[u8]>> = Vec::new();
    let mut big_bytes = 0u64;
    while big_bytes < target {
        let size = rng.range(1100, 6 << 10);
        let mut b = vec![(big.len() % 251) as u8; size].into_boxed_slice();
        b[0] = 7;
        big_bytes += size as u64;
        big.push(b);
    }
    // The state at the end: RSS against the bytes the program holds.
    let book = (objs.capacity() * std::mem::size_of::<Option<Box<[u8]>>>()
        + big.capacity() * std::mem::size_of::<Box<[u8]>>()) as u64;
    extra.live_bytes = Some(small_live + big_bytes + book);
    extra.final_rss_kb = status_kb("VmRSS:");
    for o in objs.iter().flatten() {
        sum = sum.wrapping_add(sample_hash(o));
    }
    for b in &big {
        sum = sum.wrapping_add(sample_hash(b));
    }
    sum
}

// ---------------------------------------------------------------------------
// Child: one workload on one allocator, one result line.

/// A field of `/proc/self/status`, in kB.
fn status_kb(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line[field.len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

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
    let base_kb = status_kb("VmRSS:").unwrap_or(0);
    let mut extra = Extra::default();
    let start = Instant::now();
    let checksum = (w.run)(scale, &mut extra);
    let nanos = start.elapsed().as_nanos();
    // VmHWM is read from lazily synced counters; never report a peak below
    // an RSS the workload saw itself.
    let hwm_kb = status_kb("VmHWM:")
        .unwrap_or(0)
        .max(extra.final_rss_kb.unwrap_or(0));
    let mut line = format!(
        "result alloc={got} time_ns={nanos} checksum={checksum:#018x} hwm_kb={hwm_kb} base_kb={base_kb}"
    );
    if let (Some(rss), Some(live)) = (extra.final_rss_kb, extra.live_bytes) {
        let _ = write!(line, " final_rss_kb={rss} live_bytes={live}");
    }
    println!("{line}");
    ExitCode::SUCCESS
}

// ---------------------------------------------------------------------------
// Parent: run the children, check, tabulate.

/// What one child reported.
#[derive(Clone, Copy, Debug)]
struct Sample {
    nanos: u64,
    checksum: u64,
    hwm_kb: u64,
    base_kb: u64,
    final_rss_kb: Option<u64>,
    live_bytes: Option<u64>,
}

fn parse_result(stdout: &str) -> Option<Sample> {
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

fn run_child(w: &Workload, a: Alloc, scale: Scale) -> Result<Sample, String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find own executable: {e}"))?;
    let mut cmd = Command::new(exe);
    cmd.arg("--child").arg(w.name);
    if scale == Scale::Quick {
        cmd.arg("--quick");
    }
    a.configure(&mut cmd);
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start child: {e}"))?;
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let limit = Duration::from_secs(match scale {
        Scale::Full => 300,
        Scale::Quick => 60,
    });
    let out = match rx.recv_timeout(limit) {
        Ok(r) => r.map_err(|e| format!("waiting for child: {e}"))?,
        Err(_) => {
            // SAFETY: kill(2) on the pid of our own child, not yet reaped (the
            // waiting thread has not returned).
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
            let _ = rx.recv();
            return Err(format!(
                "child {} / {} did not finish within {} s (killed)",
                w.name,
                a.name(),
                limit.as_secs()
            ));
        }
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(format!(
            "child {} / {} failed ({}):\n--- stdout\n{}--- stderr\n{}",
            w.name,
            a.name(),
            out.status,
            stdout,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    parse_result(&stdout).ok_or_else(|| {
        format!(
            "child {} / {}: no result line in {stdout:?}",
            w.name,
            a.name()
        )
    })
}

fn median(xs: &mut [u64]) -> u64 {
    xs.sort_unstable();
    let n = xs.len();
    if n % 2 == 1 {
        xs[n / 2]
    } else {
        (xs[n / 2 - 1] + xs[n / 2]) / 2
    }
}

/// One workload on one allocator, summarised over its runs.
#[derive(Clone)]
struct Cell {
    samples: Vec<Sample>,
    time_ns: u64,
    hwm_kb: u64,
    time_ratio: f64,
    rss_ratio: f64,
}

impl Cell {
    fn summarise(samples: Vec<Sample>) -> Cell {
        let mut t: Vec<u64> = samples.iter().map(|s| s.nanos).collect();
        let mut m: Vec<u64> = samples.iter().map(|s| s.hwm_kb).collect();
        Cell {
            time_ns: median(&mut t),
            hwm_kb: median(&mut m),
            samples,
            time_ratio: 1.0,
            rss_ratio: 1.0,
        }
    }
    fn last<T>(&self, f: impl Fn(&Sample) -> Option<T>) -> Option<T> {
        self.samples.iter().rev().find_map(f)
    }
}

struct Results {
    workloads: Vec<&'static Workload>,
    allocs: Vec<Alloc>,
    /// cells[workload][alloc]
    cells: Vec<Vec<Cell>>,
    /// Per allocator: geometric mean of the time and RSS ratios.
    geo_time: Vec<f64>,
    geo_rss: Vec<f64>,
    date: String,
    cpu: String,
    cores: usize,
    scale: Scale,
    runs: usize,
    command: String,
}

impl Results {
    fn index(&self, a: Alloc) -> Option<usize> {
        self.allocs.iter().position(|&x| x == a)
    }

    /// Geometric mean over workloads of `a`'s time divided by `b`'s.
    fn time_vs(&self, a: Alloc, b: Alloc) -> Option<f64> {
        let (ia, ib) = (self.index(a)?, self.index(b)?);
        let n = self.cells.len().max(1) as f64;
        let s: f64 = self
            .cells
            .iter()
            .map(|row| (row[ia].time_ns as f64 / row[ib].time_ns.max(1) as f64).ln())
            .sum();
        Some((s / n).exp())
    }

    fn frag_rss_vs(&self, a: Alloc, b: Alloc) -> Option<f64> {
        let wi = self.workloads.iter().position(|w| w.name == "frag")?;
        let (ia, ib) = (self.index(a)?, self.index(b)?);
        let row = &self.cells[wi];
        Some(row[ia].hwm_kb as f64 / row[ib].hwm_kb.max(1) as f64)
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--child") {
        return child(&args[1..]);
    }
    if args.iter().any(|a| a == "-h" || a == "--help") {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    let opts = match parse_args(&args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("compare: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    if cfg!(debug_assertions) {
        eprintln!("compare: warning: a debug build; timings mean little (use --release)");
    }
    match compare(&opts, &args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("compare: error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn compare(opts: &Options, args: &[String]) -> Result<(), String> {
    let workloads: Vec<&'static Workload> = WORKLOADS
        .iter()
        .filter(|w| {
            opts.only
                .as_ref()
                .is_none_or(|o| o.iter().any(|n| n == w.name))
        })
        .collect();
    let allocs = Alloc::ALL.to_vec();
    let mut samples: Vec<Vec<Vec<Sample>>> = vec![vec![Vec::new(); allocs.len()]; workloads.len()];
    let total = workloads.len() * allocs.len() * opts.runs;
    let started = Instant::now();
    let mut done = 0;
    // Runs outermost, so slow drift (heat, other load) spreads over all.
    for run in 1..=opts.runs {
        for (wi, w) in workloads.iter().enumerate() {
            for (ai, &a) in allocs.iter().enumerate() {
                done += 1;
                let s = run_child(w, a, opts.scale)?;
                eprintln!(
                    "[{done:>3}/{total}] {:<8} {:<8} run {run}/{}: {:>9.1} ms  peak {:>7.1} MiB  checksum {:#018x}",
                    w.name,
                    a.name(),
                    opts.runs,
                    s.nanos as f64 / 1e6,
                    s.hwm_kb as f64 / 1024.0,
                    s.checksum
                );
                let expected = samples[wi].iter().flatten().next().map(|f| f.checksum);
                if let Some(expected) = expected.filter(|&e| e != s.checksum) {
                    return Err(format!(
                        "checksum mismatch on workload {}: {} gave {:#018x}, earlier runs gave {expected:#018x}",
                        w.name,
                        a.name(),
                        s.checksum
                    ));
                }
                samples[wi][ai].push(s);
            }
        }
    }
    let results = tabulate(opts, args, workloads, allocs, samples);
    print_table(&results);
    eprintln!(
        "compare: {total} runs in {:.1} s, checksums agree",
        started.elapsed().as_secs_f64()
    );
    if let Some(path) = &opts.json {
        write_file(path, &to_json(&results).to_string())?;
        eprintln!("compare: wrote {path}");
    }
    if let Some(path) = &opts.svg {
        write_file(path, &to_svg(&results))?;
        eprintln!("compare: wrote {path}");
    }
    Ok(())
}

fn write_file(path: &str, text: &str) -> Result<(), String> {
    let p = std::path::Path::new(path);
    if let Some(dir) = p.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    std::fs::write(p, text).map_err(|e| format!("cannot write {path}: {e}"))
}

fn tabulate(
    opts: &Options,
    args: &[String],
    workloads: Vec<&'static Workload>,
    allocs: Vec<Alloc>,
    samples: Vec<Vec<Vec<Sample>>>,
) -> Results {
    let mut cells: Vec<Vec<Cell>> = samples
        .into_iter()
        .map(|row| row.into_iter().map(Cell::summarise).collect())
        .collect();
    let mut log_t = vec![0.0; allocs.len()];
    let mut log_m = vec![0.0; allocs.len()];
    for row in &mut cells {
        let best_t = row.iter().map(|c| c.time_ns).min().unwrap_or(1).max(1) as f64;
        let best_m = row.iter().map(|c| c.hwm_kb).min().unwrap_or(1).max(1) as f64;
        for (ai, c) in row.iter_mut().enumerate() {
            c.time_ratio = c.time_ns as f64 / best_t;
            c.rss_ratio = c.hwm_kb as f64 / best_m;
            log_t[ai] += c.time_ratio.ln();
            log_m[ai] += c.rss_ratio.ln();
        }
    }
    let n = cells.len().max(1) as f64;
    let mut command = String::from("cargo run --release --example compare");
    if !args.is_empty() {
        command.push_str(" --");
        for a in args {
            command.push(' ');
            command.push_str(a);
        }
    }
    Results {
        workloads,
        allocs,
        cells,
        geo_time: log_t.iter().map(|l| (l / n).exp()).collect(),
        geo_rss: log_m.iter().map(|l| (l / n).exp()).collect(),
        date: utc_now(),
        cpu: cpu_model(),
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        scale: opts.scale,
        runs: opts.runs,
        command,
    }
}

/// `YYYY-MM-DD HH:MM UTC`, from the system clock (civil-from-days).
fn utc_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs()) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60
    )
}

fn cpu_model() -> String {
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

fn mib(kb: u64) -> f64 {
    kb as f64 / 1024.0
}

fn print_table(r: &Results) {
    println!(
        "flistalloc compare: {} sizes, median time of {} run(s) per cell; peak RSS = VmHWM of each child process",
        r.scale.name(),
        r.runs
    );
    println!("{}, {} cores, {}", r.cpu, r.cores, r.date);
    println!("command: {}", r.command);
    println!(
        "All four allocators run from one binary behind the same dispatching #[global_allocator]\n\
         (one predictable branch per call: mimalloc, or Flist with FLISTALLOC_BACKEND=flist|malloc|jemalloc),\n\
         so the dispatch costs every column alike. \"x best\" = ratio to the best allocator on that row (1.00x = best)."
    );
    println!();
    let rule = "-".repeat(64);
    println!(
        "{:<12} {:<9} {:>10} {:>8} {:>10} {:>8}",
        "workload", "allocator", "time ms", "x best", "peak MiB", "x best"
    );
    println!("{rule}");
    for (wi, w) in r.workloads.iter().enumerate() {
        for (ai, a) in r.allocs.iter().enumerate() {
            let c = &r.cells[wi][ai];
            let label = format!("({}) {}", w.letter, w.name);
            println!(
                "{:<12} {:<9} {:>10.1} {:>7.2}x {:>10.1} {:>7.2}x",
                if ai == 0 { label.as_str() } else { "" },
                a.name(),
                c.time_ns as f64 / 1e6,
                c.time_ratio,
                mib(c.hwm_kb),
                c.rss_ratio
            );
        }
    }
    println!("{rule}");
    for (ai, a) in r.allocs.iter().enumerate() {
        println!(
            "{:<12} {:<9} {:>10} {:>7.2}x {:>10} {:>7.2}x",
            if ai == 0 { "geo mean" } else { "" },
            a.name(),
            "",
            r.geo_time[ai],
            "",
            r.geo_rss[ai]
        );
    }
    // Fragmentation: memory held against memory live.
    if let Some(wi) = r.workloads.iter().position(|w| w.name == "frag") {
        println!();
        println!("(f) frag at its end (before teardown): RSS against the bytes the program holds");
        println!(
            "{:<9} {:>10} {:>12} {:>9} {:>10} {:>9}",
            "allocator", "live MiB", "final RSS", "x live", "peak MiB", "x live"
        );
        for (ai, a) in r.allocs.iter().enumerate() {
            let c = &r.cells[wi][ai];
            let live = c.last(|s| s.live_bytes).unwrap_or(0) as f64 / (1 << 20) as f64;
            let fin = mib(c.last(|s| s.final_rss_kb).unwrap_or(0));
            let peak = mib(c.hwm_kb);
            println!(
                "{:<9} {:>10.1} {:>12.1} {:>8.2}x {:>10.1} {:>8.2}x",
                a.name(),
                live,
                fin,
                fin / live.max(1e-9),
                peak,
                peak / live.max(1e-9)
            );
        }
    }
    println!();
    for w in &r.workloads {
        println!("  ({}) {:<8} {}", w.letter, w.name, w.about);
    }
    let base = r
        .cells
        .iter()
        .flatten()
        .flat_map(|c| &c.samples)
        .map(|s| s.base_kb)
        .min()
        .unwrap_or(0);
    println!(
        "  (a child holds about {:.1} MiB RSS before its workload starts)",
        mib(base)
    );
    // The issue's targets.
    println!();
    println!("targets (geometric means over the workloads above):");
    let verdict = |ok: bool| if ok { "met" } else { "MISSED" };
    let target = |what: String, value: f64, limit: f64| {
        println!(
            "  {what:<56} {value:>5.2}x  (target <= {limit:.2}x: {})",
            verdict(value <= limit)
        );
    };
    let best_other = [Alloc::Jemalloc, Alloc::Mimalloc]
        .into_iter()
        .filter_map(|b| Some((b, r.time_vs(Alloc::Flist, b)?)))
        .max_by(|x, y| x.1.total_cmp(&y.1));
    if let Some((b, t)) = best_other {
        target(
            format!(
                "flist time / the faster of jemalloc, mimalloc ({})",
                b.name()
            ),
            t,
            1.0,
        );
    }
    if let Some(t) = r.time_vs(Alloc::Flist, Alloc::Malloc) {
        target("flist time / glibc malloc".to_owned(), t, 0.7);
    }
    if let Some(m) = r.frag_rss_vs(Alloc::Flist, Alloc::Jemalloc) {
        target("flist peak RSS / jemalloc on (f) frag".to_owned(), m, 1.0);
    }
}

fn to_json(r: &Results) -> Value {
    let workloads: Vec<Value> = r
        .workloads
        .iter()
        .enumerate()
        .map(|(wi, w)| {
            let mut per = serde_json::Map::new();
            for (ai, a) in r.allocs.iter().enumerate() {
                let c = &r.cells[wi][ai];
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
                per.insert(a.name().to_owned(), o);
            }
            json!({
                "name": w.name,
                "letter": w.letter.to_string(),
                "about": w.about,
                "results": per,
            })
        })
        .collect();
    let mut geo = serde_json::Map::new();
    for (ai, a) in r.allocs.iter().enumerate() {
        geo.insert(
            a.name().to_owned(),
            json!({ "time_ratio_to_best": r.geo_time[ai], "rss_ratio_to_best": r.geo_rss[ai] }),
        );
    }
    json!({
        "tool": "flistalloc examples/compare",
        "command": r.command,
        "date": r.date,
        "cpu": r.cpu,
        "cores": r.cores,
        "scale": r.scale.name(),
        "runs": r.runs,
        "allocators": r.allocs.iter().map(|a| a.name()).collect::<Vec<_>>(),
        "workloads": workloads,
        "geometric_mean": geo,
        "flist_vs": {
            "jemalloc_time": r.time_vs(Alloc::Flist, Alloc::Jemalloc),
            "mimalloc_time": r.time_vs(Alloc::Flist, Alloc::Mimalloc),
            "malloc_time": r.time_vs(Alloc::Flist, Alloc::Malloc),
            "jemalloc_frag_peak_rss": r.frag_rss_vs(Alloc::Flist, Alloc::Jemalloc),
        },
    })
}

// ---------------------------------------------------------------------------
// SVG bar chart, written by hand.

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn to_svg(r: &Results) -> String {
    let groups: Vec<String> = r
        .workloads
        .iter()
        .map(|w| format!("({}) {}", w.letter, w.name))
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

    let bars_w = 26.0 * r.allocs.len() as f64;
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
<text x="{left}" y="26" font-size="17" font-weight="bold">flistalloc compare: time and peak RSS relative to the best allocator (lower is better)</text>
<text x="{left}" y="46" font-size="12" fill="#444">{} sizes, median of {} run(s); {}, {} cores; {}</text>
<text x="{left}" y="62" font-size="12" fill="#444">{}</text>"##,
        r.scale.name(),
        r.runs,
        xml_escape(&r.cpu),
        r.cores,
        r.date,
        xml_escape(&r.command)
    );
    // Legend.
    for (ai, a) in r.allocs.iter().enumerate() {
        let x = left + ai as f64 * 110.0;
        let _ = writeln!(
            s,
            r#"<rect x="{x}" y="78" width="14" height="14" fill="{}"/><text x="{}" y="90" font-size="13">{}</text>"#,
            a.color(),
            x + 19.0,
            a.name()
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
            for (ai, a) in r.allocs.iter().enumerate() {
                let v = data[gi][ai];
                let x = gx + ai as f64 * 26.0;
                let y = y_of(v);
                let tip = abs
                    .and_then(|t| t.get(gi))
                    .map_or(String::new(), |row| format!(", {}", row[ai]));
                let _ = writeln!(
                    s,
                    r#"<rect x="{x:.1}" y="{y:.1}" width="22" height="{:.1}" fill="{}"><title>{} {}: {v:.2}x{tip}</title></rect>"#,
                    base_y - y,
                    a.color(),
                    xml_escape(name),
                    a.name()
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
