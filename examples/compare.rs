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
//! allocation, from `COMPARE_ALLOC` (read with `getenv`, which does not
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
use std::process::{Command, ExitCode};
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};
use support::checksum::{fnv, mix, sample_hash};
use support::child::{self, Extra, Sample, SweepError};
use support::report::{self, Column, Matrix, Meta, Peak, Row, TableStyle};
use support::rng::Rng;
use support::rss::{self, mib};
use support::scale::Scale;

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
    let mimalloc = support::env::var_is(c"COMPARE_ALLOC", b"mimalloc");
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
    let mut rng = Rng::new_spread(iter);
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
    let mut rng = Rng::new_spread(0xb7ee);
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
                let mut rng = Rng::new_spread(0xc0de + p);
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
    let mut rng = Rng::new_spread(key ^ 0xb0d1);
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
    let mut rng = Rng::new_spread(request);
    let key = if rng.pct(60) {
        rng.below(1_000) as u64
    } else {
        rng.below(100_000) as u64
    };
    // The request as it arrives: a text buffer, then parsed into owned parts.
    let mut raw = format!(
        "GET /items/{key}?user={}&session={:x} HTTP/1.1\r\n",
        rng.below(50_000),
        rng.next_u64()
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
                        let mut rng = Rng::new_spread(id ^ 0xc4c4);
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
    let mut rng = Rng::new_spread(0xf7a6);
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
    extra.final_rss_kb = rss::current_kb();
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
    let allocs = Alloc::ALL;
    let started = Instant::now();
    let samples = child::sweep(
        workloads.len(),
        allocs.len(),
        opts.runs,
        |wi, ai| run_child(workloads[wi], allocs[ai], opts.scale),
        |at, s| {
            eprintln!(
                "[{:>3}/{}] {:<8} {:<8} run {}/{}: {:>9.1} ms  peak {:>7.1} MiB  checksum {:#018x}",
                at.done,
                at.total,
                workloads[at.row].name,
                allocs[at.column].name(),
                at.run,
                at.runs,
                s.nanos as f64 / 1e6,
                mib(s.hwm_kb),
                s.checksum
            );
        },
    )
    .map_err(|e| match e {
        SweepError::Child(e) => e,
        SweepError::Mismatch {
            row,
            column,
            got,
            expected,
        } => format!(
            "checksum mismatch on workload {}: {} gave {got:#018x}, earlier runs gave {expected:#018x}",
            workloads[row].name,
            allocs[column].name()
        ),
    })?;
    let total = workloads.len() * allocs.len() * opts.runs;
    let rows = workloads
        .iter()
        .map(|w| Row {
            name: w.name,
            letter: Some(w.letter),
            about: w.about,
        })
        .collect();
    let columns = allocs
        .iter()
        .map(|a| Column {
            name: a.name(),
            color: a.color(),
        })
        .collect();
    let results = Matrix::new(rows, columns, samples, Peak::Median);
    let meta = Meta::now(
        report::command_line("cargo run --release --example compare", args),
        opts.scale.name(),
        opts.runs,
    );
    print_table(&results, &workloads, &meta);
    eprintln!(
        "compare: {total} runs in {:.1} s, checksums agree",
        started.elapsed().as_secs_f64()
    );
    if let Some(path) = &opts.json {
        report::write_file(path, &to_json(&results, &meta).to_string())?;
        eprintln!("compare: wrote {path}");
    }
    if let Some(path) = &opts.svg {
        report::write_file(path, &results.to_svg(SVG_TITLE, &meta))?;
        eprintln!("compare: wrote {path}");
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Output: the shared table, JSON and chart, plus what only compare reports.

const SVG_TITLE: &str =
    "flistalloc compare: time and peak RSS relative to the best allocator (lower is better)";

fn print_table(r: &Matrix, workloads: &[&Workload], meta: &Meta) {
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
    r.print_table(&TableStyle {
        label_width: 12,
        column_width: 9,
        column_header: "allocator",
        ratio_header: "x best",
        rule: 64,
    });
    // Fragmentation: memory held against memory live.
    if let Some(wi) = r.row("frag") {
        println!();
        println!("(f) frag at its end (before teardown): RSS against the bytes the program holds");
        println!(
            "{:<9} {:>10} {:>12} {:>9} {:>10} {:>9}",
            "allocator", "live MiB", "final RSS", "x live", "peak MiB", "x live"
        );
        for (ai, a) in r.columns.iter().enumerate() {
            let c = &r.cells[wi][ai];
            let live = c.last(|s| s.live_bytes).unwrap_or(0) as f64 / (1 << 20) as f64;
            let fin = mib(c.last(|s| s.final_rss_kb).unwrap_or(0));
            let peak = mib(c.hwm_kb);
            println!(
                "{:<9} {:>10.1} {:>12.1} {:>8.2}x {:>10.1} {:>8.2}x",
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
    let flist = Alloc::Flist.name();
    let best_other = [Alloc::Jemalloc, Alloc::Mimalloc]
        .into_iter()
        .filter_map(|b| Some((b, r.time_vs(flist, b.name())?)))
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
    if let Some(t) = r.time_vs(flist, Alloc::Malloc.name()) {
        target("flist time / glibc malloc".to_owned(), t, 0.7);
    }
    if let Some(m) = r.row_rss_vs("frag", flist, Alloc::Jemalloc.name()) {
        target("flist peak RSS / jemalloc on (f) frag".to_owned(), m, 1.0);
    }
}

fn to_json(r: &Matrix, meta: &Meta) -> Value {
    let flist = Alloc::Flist.name();
    let flist_vs = json!({
        "jemalloc_time": r.time_vs(flist, Alloc::Jemalloc.name()),
        "mimalloc_time": r.time_vs(flist, Alloc::Mimalloc.name()),
        "malloc_time": r.time_vs(flist, Alloc::Malloc.name()),
        "jemalloc_frag_peak_rss": r.row_rss_vs("frag", flist, Alloc::Jemalloc.name()),
    });
    r.to_json(
        "flistalloc examples/compare",
        meta,
        vec![("flist_vs", flist_vs)],
    )
}
