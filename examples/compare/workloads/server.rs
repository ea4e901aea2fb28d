//! (d) server: workers, per-request buffers, a shared cache with eviction.

use super::{sentence, Extra, Rng, Scale, WORDS};
use std::collections::{HashMap, VecDeque};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use support::checksum::{mix, sample_hash};

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

/// The workload; returns its checksum.
pub fn run(scale: Scale, _: &mut Extra) -> u64 {
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
