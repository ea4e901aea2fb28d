//! A multi-threaded TCP key-value server on flistalloc, with a built-in
//! client: the server kind of program flistalloc is made for (many threads,
//! buffers freed on a thread other than the one that made them, threads that
//! come and go).
//!
//! ```text
//! cargo run --release --example server
//! FLISTALLOC_BACKEND=jemalloc cargo run --release --example server
//! FLISTALLOC_BACKEND=malloc   cargo run --release --example server -- --connections 16 --requests 20000
//! ```
//!
//! The server listens on 127.0.0.1 at a port the OS picks (loopback only),
//! and serves each connection on its own thread from a sharded map. The
//! client opens `--connections` connections (default 8), each on its own
//! thread, sends `--requests` requests on each (default 40,000; a quarter
//! `SET`s of values from 16 B to 64 KiB, the rest `GET`s), pipelined 32 at
//! a time, checks every reply, and closes. Then the server is stopped and
//! the program prints requests per second, the peak RSS (`VmHWM`) and a few
//! allocator figures. Then it waits 2 s with the map still alive and prints
//! the RSS against the map's own bytes (keys, values, tables): what the
//! allocator holds once the load is gone. A run takes a few seconds; a stuck
//! socket times out.
//!
//! Protocol, one request per line:
//! `SET key len\n<len bytes>` → `OK\n`; `GET key\n` → `VALUE len\n<len bytes>`
//! or `MISSING\n`.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use support::checksum::fnv;
use support::cli::{self, Arg, Parser};
use support::rng::XorShift64Star;
use support::rss::{self, mib};

#[global_allocator]
static GLOBAL: flistalloc::Flist = flistalloc::Flist::new();

const USAGE: &str = "\
usage: server [--connections N] [--requests N]

  --connections N   client connections, each served by its own server thread (default 8, at most 256)
  --requests N      requests per connection (default 40000, at most 10000000)";

const SHARDS: usize = 16;
const KEYS: u64 = 20_000;
const PIPELINE: usize = 32;
const IO_TIMEOUT: Duration = Duration::from_secs(20);

type Store = Arc<Vec<Mutex<HashMap<String, Vec<u8>>>>>;

// ---------------------------------------------------------------------------
// Server

fn shard_of(key: &str) -> usize {
    (fnv(key.as_bytes()) % SHARDS as u64) as usize
}

/// Serves one connection until the client closes it.
fn handle(stream: TcpStream, store: Store) -> std::io::Result<u64> {
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_nodelay(true)?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut writer = BufWriter::new(stream);
    let mut served = 0;
    loop {
        // A fresh line buffer per request, as many servers do.
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            writer.flush()?;
            return Ok(served);
        }
        let mut parts = line.split_ascii_whitespace();
        match (parts.next(), parts.next(), parts.next()) {
            (Some("SET"), Some(key), Some(len)) => {
                let len: usize = len
                    .parse()
                    .map_err(|_| std::io::Error::other("bad SET length"))?;
                let mut value = vec![0u8; len];
                reader.read_exact(&mut value)?;
                let old = store[shard_of(key)]
                    .lock()
                    .expect("shard")
                    .insert(key.to_owned(), value);
                drop(old); // freed here, maybe made by another thread
                writer.write_all(b"OK\n")?;
            }
            (Some("GET"), Some(key), None) => {
                // Copy out under the lock, reply outside it.
                let value = store[shard_of(key)]
                    .lock()
                    .expect("shard")
                    .get(key)
                    .cloned();
                match value {
                    Some(v) => {
                        writer.write_all(format!("VALUE {}\n", v.len()).as_bytes())?;
                        writer.write_all(&v)?;
                    }
                    None => writer.write_all(b"MISSING\n")?,
                }
            }
            _ => return Err(std::io::Error::other(format!("bad request {line:?}"))),
        }
        served += 1;
        if reader.buffer().is_empty() {
            writer.flush()?;
        }
    }
}

struct Server {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    acceptor: JoinHandle<Vec<JoinHandle<std::io::Result<u64>>>>,
    /// The map, kept after the server stops so its bytes can be weighed
    /// against the RSS.
    store: Store,
}

fn start_server() -> std::io::Result<Server> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let stop = Arc::new(AtomicBool::new(false));
    let store: Store = Arc::new((0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect());
    let stop2 = Arc::clone(&stop);
    let store2 = Arc::clone(&store);
    let acceptor = std::thread::spawn(move || {
        let mut handlers = Vec::new();
        for conn in listener.incoming() {
            if stop2.load(Ordering::Acquire) {
                break;
            }
            match conn {
                Ok(stream) => {
                    let store = Arc::clone(&store2);
                    handlers.push(std::thread::spawn(move || handle(stream, store)));
                }
                Err(e) => eprintln!("server: accept: {e}"),
            }
        }
        handlers
    });
    Ok(Server {
        addr,
        stop,
        acceptor,
        store,
    })
}

impl Server {
    /// Stops accepting (a last connection wakes the acceptor), waits for the
    /// connection threads; returns the requests they served and the map.
    fn stop(self) -> Result<(u64, Store), String> {
        self.stop.store(true, Ordering::Release);
        let _ = TcpStream::connect(self.addr);
        let handlers = self.acceptor.join().map_err(|_| "acceptor panicked")?;
        let mut served = 0;
        for h in handlers {
            served += h
                .join()
                .map_err(|_| "connection thread panicked")?
                .map_err(|e| format!("connection failed: {e}"))?;
        }
        Ok((served, self.store))
    }
}

// ---------------------------------------------------------------------------
// Client

/// A value that carries its own check: `key:stamp:` then filler derived
/// from the stamp.
fn make_value(key: u64, stamp: u64, len: usize) -> Vec<u8> {
    let mut v = format!("{key}:{stamp}:").into_bytes();
    let fill = b'a' + (stamp % 26) as u8;
    v.resize(len.max(v.len()), fill);
    v
}

fn check_value(key: u64, v: &[u8]) -> bool {
    let text = String::from_utf8_lossy(&v[..v.len().min(48)]);
    let mut it = text.splitn(3, ':');
    let (Some(k), Some(stamp)) = (it.next(), it.next()) else {
        return false;
    };
    let (Ok(k), Ok(stamp)) = (k.parse::<u64>(), stamp.parse::<u64>()) else {
        return false;
    };
    let head = k.to_string().len() + stamp.to_string().len() + 2;
    let fill = b'a' + (stamp % 26) as u8;
    k == key && v[head..].iter().all(|&b| b == fill)
}

fn value_len(rng: &mut XorShift64Star) -> usize {
    match rng.below(100) {
        0..=59 => 16 + rng.below(240) as usize,
        60..=97 => 256 + rng.below(3840) as usize,
        _ => 4096 + rng.below(60 << 10) as usize,
    }
}

fn client(addr: SocketAddr, conn: u64, requests: usize, stamps: &AtomicU64) -> Result<(), String> {
    let io = |e: std::io::Error| format!("connection {conn}: {e}");
    let stream = TcpStream::connect(addr).map_err(io)?;
    stream.set_read_timeout(Some(IO_TIMEOUT)).map_err(io)?;
    stream.set_nodelay(true).map_err(io)?;
    let mut reader = BufReader::new(stream.try_clone().map_err(io)?);
    let mut writer = BufWriter::new(stream);
    // xorshift64*: each connection's own request stream.
    let mut rng =
        XorShift64Star(0x9e37_79b9_7f4a_7c15 ^ (conn + 1).wrapping_mul(0xff51_afd7_ed55_8ccd));
    let mut sent = 0;
    let mut line = String::new();
    while sent < requests {
        let batch = PIPELINE.min(requests - sent);
        let mut expect = Vec::with_capacity(batch);
        for _ in 0..batch {
            let key = rng.below(KEYS);
            if rng.below(4) == 0 {
                let stamp = stamps.fetch_add(1, Ordering::Relaxed);
                let value = make_value(key, stamp, value_len(&mut rng));
                writeln!(writer, "SET k{key} {}", value.len()).map_err(io)?;
                writer.write_all(&value).map_err(io)?;
                expect.push(None);
            } else {
                writeln!(writer, "GET k{key}").map_err(io)?;
                expect.push(Some(key));
            }
        }
        writer.flush().map_err(io)?;
        for e in expect {
            line.clear();
            reader.read_line(&mut line).map_err(io)?;
            match (e, line.trim_end().split_once(' ')) {
                (None, _) if line == "OK\n" => {}
                (Some(_), _) if line == "MISSING\n" => {}
                (Some(key), Some(("VALUE", len))) => {
                    let len: usize = len.parse().map_err(|_| format!("bad reply {line:?}"))?;
                    let mut v = vec![0u8; len];
                    reader.read_exact(&mut v).map_err(io)?;
                    if !check_value(key, &v) {
                        return Err(format!("connection {conn}: corrupt value for key {key}"));
                    }
                }
                _ => return Err(format!("connection {conn}: unexpected reply {line:?}")),
            }
        }
        sent += batch;
    }
    Ok(())
}

// ---------------------------------------------------------------------------

/// Parses the command line (lexopt): `(connections, requests)`.
fn parse_args() -> Result<(usize, usize), String> {
    let mut connections = 8;
    let mut requests = 40_000;
    let mut p = Parser::from_env();
    while let Some(arg) = cli::next(&mut p)? {
        let (opt, slot, max) = match arg {
            Arg::Long("connections") => ("--connections", &mut connections, 256),
            Arg::Long("requests") => ("--requests", &mut requests, 10_000_000),
            arg => return Err(cli::unknown(arg)),
        };
        let v = cli::value(&mut p, opt, "a number")?;
        *slot = match v.parse() {
            Ok(n) if (1..=max).contains(&n) => n,
            _ => {
                return Err(format!(
                    "{opt}: expected a number from 1 to {max}, got {v:?}"
                ))
            }
        };
    }
    Ok((connections, requests))
}

fn run(connections: usize, requests: usize) -> Result<(), String> {
    let base_kb = rss::current_kb().unwrap_or(0);
    let server = start_server().map_err(|e| format!("cannot start the server: {e}"))?;
    println!(
        "backend {}: server on {}, {connections} connections x {requests} requests",
        flistalloc::backend().name(),
        server.addr
    );
    let stamps = AtomicU64::new(0);
    let start = Instant::now();
    let results: Vec<Result<(), String>> = std::thread::scope(|s| {
        let clients: Vec<_> = (0..connections as u64)
            .map(|c| {
                let stamps = &stamps;
                let addr = server.addr;
                s.spawn(move || client(addr, c, requests, stamps))
            })
            .collect();
        clients
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err("client panicked".into())))
            .collect()
    });
    let elapsed = start.elapsed();
    let (served, store) = server.stop()?;
    for r in results {
        r?;
    }
    let total = (connections * requests) as u64;
    if served != total {
        return Err(format!(
            "server served {served} requests, clients sent {total}"
        ));
    }
    println!(
        "{total} requests in {:.2} s: {:.0} requests/s; peak RSS {:.1} MiB",
        elapsed.as_secs_f64(),
        total as f64 / elapsed.as_secs_f64(),
        mib(rss::peak_kb().unwrap_or(0))
    );
    // Memory follows live bytes: with the load gone (every connection
    // thread has exited) and the map still alive, what is held 2 s later
    // beyond the map's own bytes is the allocator's.
    std::thread::sleep(Duration::from_secs(2));
    let live: usize = store
        .iter()
        .map(|shard| {
            let map = shard.lock().unwrap_or_else(|e| e.into_inner());
            map.iter()
                .map(|(k, v)| k.capacity() + v.capacity())
                .sum::<usize>()
                + map.capacity() * std::mem::size_of::<(String, Vec<u8>)>()
        })
        .sum();
    let now = rss::current_kb().unwrap_or(0);
    println!(
        "2 s after the load: RSS {:.1} MiB, the map holds {:.1} MiB (keys, values, tables), \
         RSS before the server started {:.1} MiB: {:.1} MiB held beyond them",
        mib(now),
        live as f64 / (1 << 20) as f64,
        mib(base_kb),
        (mib(now) - mib(base_kb) - live as f64 / (1 << 20) as f64).max(0.0)
    );
    drop(store);
    if flistalloc::backend() == flistalloc::Backend::Flist {
        let s = flistalloc::stats();
        println!(
            "flist figures: {:.1} MiB mapped now, {} pools in use, {} pools returned to the OS so far",
            s.mapped as f64 / (1 << 20) as f64,
            s.pools_in_use,
            s.pools_returned,
        );
    }
    Ok(())
}

fn main() -> ExitCode {
    let (connections, requests) = match cli::or_usage("server", USAGE, parse_args().map(Some)) {
        Ok(a) => a,
        Err(exit) => return exit,
    };
    cli::exit_status("server", run(connections, requests))
}
