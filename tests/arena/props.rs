//! Property test: random sequences of alloc / free / grow / shrink / trim on
//! an `Arena`, checked against a shadow model of the live blocks, through the
//! public API only.
//!
//! After every operation:
//! * no two live blocks overlap (as chunk ranges `[ptr, ptr + chunk_size)`);
//! * every block is aligned as asked and sits in the slab the public contract
//!   gives (the smallest slab `>= size` whose chunks are aligned enough);
//! * `info().allocated` is the model's sum of slab sizes, `info().heap` stays
//!   within capacity, `utilization()` agrees with the model slab by slab;
//! * contents survive: a pattern is written on alloc and checked before free,
//!   after grow / shrink, after trim and at the end;
//! * failures are exactly the predicted ones: a size outside the chunk range,
//!   or no free chunk in the slab and no room left for a page-rounded chunk.
//!
//! The same sequences run on an `Arena` over each backend (flist, malloc,
//! jemalloc); the flist-exact predictions (the slab, when a pool is mapped)
//! apply to flist only. On malloc and jemalloc a block's length is its usable
//! size (`chunk_size`, at least the request), a refusal for capacity must be
//! one the figures explain, and an immediate double free is reported as a
//! foreign pointer.
//!
//! Scaled down under miri (`cargo +nightly miri test -p flistalloc --test arena`).

use crate::{expected_slab, round_pages, PAGE};
use allocator_api2::alloc::Allocator;
use flistalloc::{Arena, Backend, Error};
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use std::alloc::Layout;
use std::collections::BTreeMap;
use std::ptr::NonNull;

/// Largest request the test makes.
const MAX_SIZE: usize = if cfg!(miri) { 64 << 10 } else { 1 << 20 };
const CASES: u32 = if cfg!(miri) { 4 } else { 64 };
const MAX_OPS: usize = if cfg!(miri) { 24 } else { 200 };

#[derive(Debug, Clone, Copy)]
enum How {
    /// `Arena::try_alloc(size)` (alignment 8 promised).
    Plain,
    /// `Arena::try_alloc_layout`.
    Layout,
    /// `Allocator::allocate`.
    Allocator,
}

#[derive(Debug, Clone)]
enum Op {
    Alloc {
        size: usize,
        align: usize,
        how: How,
    },
    /// Free the `pick`-th live block (modulo); with `again`, free it a second
    /// time at once, which must be reported as a double free.
    Free {
        pick: usize,
        via_allocator: bool,
        again: bool,
    },
    Grow {
        pick: usize,
        extra: usize,
        align: Option<usize>,
        zeroed: bool,
    },
    /// Shrink to `len * keep / u16::MAX`.
    Shrink {
        pick: usize,
        keep: u16,
        align: Option<usize>,
    },
    /// `try_free` of a pointer inside a live chunk: must be foreign.
    Interior {
        pick: usize,
        offset: usize,
    },
    Trim,
}

#[derive(Debug, Clone, Copy)]
struct Block {
    /// The chunk (kept as a pointer so no address is cast back to one).
    ptr: NonNull<u8>,
    /// Requested size: the bytes carrying the pattern.
    len: usize,
    align: usize,
    pat: u8,
    /// The chunk's length: its slab (flist) or usable size.
    slab: usize,
}

struct Model<'a> {
    arena: &'a Arena,
    /// Whether the flist-exact predictions apply.
    flist: bool,
    capacity: usize,
    min: usize,
    max: usize,
    live: BTreeMap<usize, Block>,
    next_pat: u8,
}

/// Whether the `len` bytes at `p` all equal `pat`.
fn bytes_are(p: *const u8, len: usize, pat: u8) -> bool {
    // SAFETY: callers pass `len` live, initialised bytes of a chunk.
    let s = unsafe { std::slice::from_raw_parts(p, len) };
    let reference = [pat; 4096];
    s.chunks(4096).all(|c| c == &reference[..c.len()])
}

impl Model<'_> {
    fn pat(&mut self) -> u8 {
        self.next_pat = self.next_pat.wrapping_add(1).max(1);
        self.next_pat
    }

    fn pick(&self, pick: usize) -> Option<(usize, Block)> {
        if self.live.is_empty() {
            return None;
        }
        let (&a, &b) = self.live.iter().nth(pick % self.live.len())?;
        Some((a, b))
    }

    /// Whether the arena holds a free chunk of `slab` (so serving it must not
    /// map a pool).
    fn has_free_chunk(&self, slab: usize) -> bool {
        self.arena
            .utilization()
            .iter()
            .any(|u| u.slab == slab && u.in_use < u.held)
    }

    /// The outcome the contract dictates for a request of `size`/`align`:
    /// the slab, or the error. On malloc and jemalloc the capacity outcome
    /// depends on the usable size, known only after: `Ok(0)` stands for
    /// "in range, capacity permitting" (see `capacity_refusal_is_explained`).
    fn predict(&self, size: usize, align: usize) -> Result<usize, Error> {
        if size < self.min || size > self.max {
            return Err(Error::SizeOutOfRange {
                size,
                min: self.min,
                max: self.max,
            });
        }
        if !self.flist {
            return Ok(0);
        }
        let slab = expected_slab(size, align);
        let heap = self.arena.info().heap;
        if !self.has_free_chunk(slab) && round_pages(slab) > self.capacity - heap {
            return Err(Error::OutOfCapacity {
                needed: round_pages(slab),
                heap,
                capacity: self.capacity,
            });
        }
        Ok(slab)
    }

    fn check_block(&self, addr: usize, b: &Block) {
        assert!(
            bytes_are(b.ptr.as_ptr(), b.len, b.pat),
            "contents of {addr:#x} {b:?} changed"
        );
    }

    /// On malloc and jemalloc: whether an `OutOfCapacity` for a request of
    /// `size`/`align` is one the figures explain: the room left is below
    /// what any usable size for it can be (the request itself, at most 25%
    /// and a page more: glibc's and jemalloc's size classes).
    fn capacity_refusal_is_explained(&self, size: usize, align: usize) -> bool {
        let room = self.capacity - self.arena.info().heap;
        let bound = size.max(align).max(1) * 5 / 4 + PAGE;
        room < bound
    }

    /// Records a new block after checking it overlaps no live one.
    fn insert(&mut self, addr: usize, b: Block) {
        assert_eq!(addr % b.align, 0, "{addr:#x} not aligned for {b:?}");
        assert_eq!(addr % 8, 0);
        assert!(b.slab >= b.len.max(1), "{addr:#x} {b:?}");
        assert_eq!(
            self.arena.chunk_size(b.ptr.as_ptr()),
            b.slab,
            "{addr:#x} {b:?}"
        );
        if let Some((&pa, pb)) = self.live.range(..=addr).next_back() {
            assert!(
                pa + pb.slab <= addr,
                "{addr:#x} {b:?} overlaps {pa:#x} {pb:?}"
            );
        }
        if let Some((&na, nb)) = self.live.range(addr..).next() {
            assert!(
                addr + b.slab <= na,
                "{addr:#x} {b:?} overlaps {na:#x} {nb:?}"
            );
        }
        self.live.insert(addr, b);
    }

    fn alloc(&mut self, size: usize, align: usize, how: How) {
        let align = match how {
            How::Plain => 1,
            _ => align,
        };
        let expect = self.predict(size, align);
        let heap_before = self.arena.info().heap;
        let could_reuse = expect.as_ref().is_ok_and(|&s| self.has_free_chunk(s));
        let lay = Layout::from_size_align(size, align).unwrap();
        if matches!(how, How::Allocator) && size == 0 {
            // Zero size never touches the arena: a dangling block at the
            // alignment, length 0, nothing to track.
            let before = self.arena.info();
            let block = self.arena.allocate(lay).expect("zero-size allocate");
            assert_eq!(block.len(), 0);
            assert_eq!(block.cast::<u8>().as_ptr() as usize, align);
            assert_eq!(self.arena.info(), before);
            // SAFETY: a zero-size block of this allocator, with its layout.
            unsafe { self.arena.deallocate(block.cast(), lay) };
            assert_eq!(self.arena.info(), before);
            return;
        }
        let got = match how {
            How::Plain => self.arena.try_alloc(size),
            How::Layout => self.arena.try_alloc_layout(lay),
            How::Allocator => match self.arena.allocate(lay) {
                Ok(block) => {
                    let len = self.arena.chunk_size(block.cast::<u8>().as_ptr());
                    assert_eq!(block.len(), len, "allocate's block length is the chunk's");
                    if let (true, Ok(slab)) = (self.flist, &expect) {
                        assert_eq!(block.len(), *slab, "allocate's block length is the slab");
                    }
                    Ok(block.cast::<u8>())
                }
                Err(_) if !self.flist && expect.is_ok() => Err(Error::OutOfCapacity {
                    needed: 0,
                    heap: heap_before,
                    capacity: self.capacity,
                }),
                Err(_) => Err(expect.expect_err("allocate failed where it should succeed")),
            },
        };
        let expect = match (expect, &got) {
            // Not flist: the chunk's length is what the backend says.
            (Ok(0), Ok(p)) if !self.flist => Ok(self.arena.chunk_size(p.as_ptr())),
            (Ok(0), Err(e @ Error::OutOfCapacity { .. })) if !self.flist => {
                assert!(
                    self.capacity_refusal_is_explained(size, align),
                    "size {size} align {align}: {e:?} with {:?}",
                    self.arena.info()
                );
                Err(*e)
            }
            (e, _) => e,
        };
        match (expect, got) {
            (Ok(slab), Ok(p)) => {
                if could_reuse {
                    assert_eq!(
                        self.arena.info().heap,
                        heap_before,
                        "mapped a pool while a chunk was free"
                    );
                }
                let pat = self.pat();
                // SAFETY: the chunk holds at least `size` bytes.
                unsafe { p.as_ptr().write_bytes(pat, size) };
                let b = Block {
                    ptr: p,
                    len: size,
                    align,
                    pat,
                    slab,
                };
                self.insert(p.as_ptr() as usize, b);
            }
            (Err(e), Err(g)) => {
                assert_eq!(g, e, "size {size} align {align}");
                assert_eq!(self.arena.info().heap, heap_before);
            }
            (e, g) => panic!("size {size} align {align} {how:?}: expected {e:?}, got {g:?}"),
        }
    }

    fn free(&mut self, pick: usize, via_allocator: bool, again: bool) {
        let Some((addr, b)) = self.pick(pick) else {
            return;
        };
        self.check_block(addr, &b);
        let p = b.ptr;
        // A zero-size layout fits only the Allocator's dangling blocks: a
        // real chunk asked with size 0 goes back through `free`.
        if via_allocator && b.len != 0 {
            let lay = Layout::from_size_align(b.len, b.align).unwrap();
            // SAFETY: p is a live block of this arena fitting `lay`.
            unsafe { self.arena.deallocate(p, lay) };
        } else {
            // SAFETY: p is a live chunk of this arena, freed once.
            assert_eq!(unsafe { self.arena.try_free(p.as_ptr()) }, Ok(()));
        }
        self.live.remove(&addr);
        if again {
            // SAFETY: any pointer may be passed; p was freed just now, so it
            // heads its pool's free list (flist), or is no longer in the
            // arena's set of live chunks (malloc, jemalloc): it is caught.
            let r = unsafe { self.arena.try_free(p.as_ptr()) };
            if self.flist {
                assert_eq!(r, Err(Error::DoubleFree { addr }));
            } else {
                assert_eq!(r, Err(Error::ForeignPointer { addr }));
            }
        }
    }

    fn resize(&mut self, pick: usize, new_len: usize, new_align: Option<usize>, zeroed: bool) {
        let Some((addr, b)) = self.pick(pick) else {
            return;
        };
        if b.len == 0 {
            // A real chunk asked with size 0 does not fit a zero-size
            // Allocator layout (those are the Allocator's dangling blocks).
            return;
        }
        let new_align = new_align.unwrap_or(b.align);
        let grow = new_len >= b.len;
        let old = Layout::from_size_align(b.len, b.align).unwrap();
        let new = Layout::from_size_align(new_len, new_align).unwrap();
        let in_range = new_len >= self.min && new_len <= self.max;
        let (new_slab, in_place) = if self.flist {
            let s = expected_slab(new_len, new_align);
            (s, in_range && s == b.slab)
        } else {
            // Stays when the new layout fits the chunk's usable size and
            // uses at least half of it (below that a shrink moves).
            let fits = new_len <= b.slab && new_len >= b.slab / 2 && addr.is_multiple_of(new_align);
            (0, in_range && fits)
        };
        let expect_ok = in_place || (in_range && self.predict(new_len, new_align).is_ok());
        // Not flist: a move may still be refused for capacity.
        let may_fail = !self.flist && !in_place && in_range;
        let p = b.ptr;
        // SAFETY: p is a live block of this arena fitting `old` (its size lies
        // between the requested size and the slab, its alignment is the one
        // it was allocated with); `new` is at least (grow) / at most (shrink)
        // as large as `old`.
        let r = unsafe {
            if grow && zeroed {
                self.arena.grow_zeroed(p, old, new)
            } else if grow {
                self.arena.grow(p, old, new)
            } else {
                self.arena.shrink(p, old, new)
            }
        };
        match r {
            Ok(block) if new_len == 0 => {
                // Shrink to zero frees the chunk and returns a dangling block.
                assert_eq!(block.len(), 0, "{old:?} -> {new:?}");
                assert_eq!(block.cast::<u8>().as_ptr() as usize, new_align);
                self.live.remove(&addr);
            }
            Ok(block) => {
                assert!(expect_ok, "{old:?} -> {new:?} succeeded, expected an error");
                let q = block.cast::<u8>();
                let qa = q.as_ptr() as usize;
                let new_slab = if self.flist {
                    new_slab
                } else {
                    self.arena.chunk_size(q.as_ptr())
                };
                assert_eq!(block.len(), new_slab, "{old:?} -> {new:?}");
                if in_place {
                    assert_eq!(
                        qa, addr,
                        "{old:?} -> {new:?} in the same slab must stay in place"
                    );
                }
                let kept = b.len.min(new_len);
                assert!(
                    bytes_are(q.as_ptr(), kept, b.pat),
                    "{old:?} -> {new:?} lost contents"
                );
                if grow {
                    if zeroed {
                        // The whole returned slice past the old size is zero.
                        // SAFETY: the block holds block.len() bytes.
                        let tail = unsafe { q.as_ptr().add(b.len) };
                        assert!(
                            bytes_are(tail, block.len() - b.len, 0),
                            "grow_zeroed left dirt"
                        );
                    }
                    // SAFETY: the block holds new_len bytes.
                    unsafe { q.as_ptr().add(b.len).write_bytes(b.pat, new_len - b.len) };
                }
                self.live.remove(&addr);
                let nb = Block {
                    ptr: q,
                    len: new_len,
                    align: new_align,
                    pat: b.pat,
                    slab: new_slab,
                };
                self.insert(qa, nb);
            }
            Err(_) => {
                assert!(
                    !expect_ok
                        || (may_fail && self.capacity_refusal_is_explained(new_len, new_align)),
                    "{old:?} -> {new:?} failed, expected success"
                );
                // The block is untouched.
                self.check_block(addr, &b);
                assert_eq!(self.arena.chunk_size(p.as_ptr()), b.slab);
            }
        }
    }

    fn interior(&mut self, pick: usize, offset: usize) {
        let Some((_, b)) = self.pick(pick) else {
            return;
        };
        if b.slab < 2 {
            return;
        }
        let inner = b.ptr.as_ptr().wrapping_add(1 + offset % (b.slab - 1));
        let before = self.arena.info();
        // SAFETY: any pointer may be passed; one inside a chunk is reported.
        let r = unsafe { self.arena.try_free(inner) };
        assert_eq!(
            r,
            Err(Error::ForeignPointer {
                addr: inner as usize
            })
        );
        assert_eq!(self.arena.info(), before);
    }

    fn trim(&mut self) {
        let before = self.arena.info();
        let released = self.arena.trim();
        let after = self.arena.info();
        assert_eq!(released % PAGE, 0);
        assert_eq!(after.heap, before.heap - released);
        assert_eq!(after.allocated, before.allocated);
        // No empty slab is left holding pools.
        assert!(self.arena.utilization().iter().all(|u| u.in_use > 0));
        for (a, b) in &self.live {
            self.check_block(*a, b);
        }
    }

    fn check_figures(&self) {
        let info = self.arena.info();
        let model_sum: usize = self.live.values().map(|b| b.slab).sum();
        assert_eq!(info.allocated, model_sum);
        assert_eq!(info.capacity, self.capacity);
        assert!(info.heap <= self.capacity, "{info:?}");
        if self.flist {
            assert_eq!(info.heap % PAGE, 0);
        } else {
            assert_eq!(info.heap, info.allocated);
        }
        assert!(info.allocated <= info.heap);
        assert!(info.overhead > 0 && info.overhead.is_multiple_of(PAGE));

        // Grouped by the flist slab table: the smallest slab holding the
        // chunk (on flist, the chunk's own slab).
        let mut per_slab: BTreeMap<usize, usize> = BTreeMap::new();
        for b in self.live.values() {
            *per_slab.entry(expected_slab(b.slab, 1)).or_default() += 1;
        }
        let util = self.arena.utilization();
        assert!(util.windows(2).all(|w| w[0].slab < w[1].slab));
        let mut held_bytes = 0;
        for u in &util {
            assert!(u.in_use <= u.held && u.held > 0, "{u:?}");
            assert_eq!(u.ratio, u.in_use as f64 / u.held as f64);
            held_bytes += u.held * u.slab;
        }
        if self.flist {
            assert!(held_bytes <= info.heap);
        }
        let in_use: BTreeMap<usize, usize> = util
            .iter()
            .filter(|u| u.in_use > 0)
            .map(|u| (u.slab, u.in_use))
            .collect();
        assert_eq!(in_use, per_slab);
    }

    fn finish(mut self) {
        let mut prev_end = 0;
        for (a, b) in &self.live {
            assert!(prev_end <= *a, "overlap at {a:#x}");
            prev_end = a + b.slab;
            self.check_block(*a, b);
        }
        while let Some((addr, _)) = self.pick(0) {
            self.free(0, addr % 3 == 0, false);
        }
        self.check_figures();
        let heap = self.arena.info().heap;
        assert_eq!(self.arena.info().allocated, 0);
        assert_eq!(self.arena.trim(), heap);
        assert_eq!(self.arena.info().heap, 0);
        assert!(self.arena.utilization().is_empty());
    }
}

fn size() -> impl Strategy<Value = usize> {
    prop_oneof![
        10 => 0usize..=256,
        5 => 257usize..=4096,
        2 => 4097usize..=(64 << 10).min(MAX_SIZE),
        1 => (MAX_SIZE / 16)..=MAX_SIZE,
    ]
}

fn align() -> impl Strategy<Value = usize> {
    prop_oneof![
        3 => (0u32..=3).prop_map(|s| 1usize << s),
        1 => (4u32..=12).prop_map(|s| 1usize << s),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (size(), align(), prop_oneof![Just(How::Plain), Just(How::Layout), Just(How::Allocator)])
            .prop_map(|(size, align, how)| Op::Alloc { size, align, how }),
        4 => (any::<usize>(), any::<bool>(), prop::bool::weighted(0.2))
            .prop_map(|(pick, via_allocator, again)| Op::Free { pick, via_allocator, again }),
        2 => (
            any::<usize>(),
            prop_oneof![2 => 0usize..=16, 1 => size()],
            prop::option::weighted(0.3, align()),
            any::<bool>(),
        )
            .prop_map(|(pick, extra, align, zeroed)| Op::Grow { pick, extra, align, zeroed }),
        2 => (any::<usize>(), prop_oneof![1 => 60000u16..=u16::MAX, 1 => any::<u16>()], prop::option::weighted(0.3, align()))
            .prop_map(|(pick, keep, align)| Op::Shrink { pick, keep, align }),
        1 => (any::<usize>(), any::<usize>()).prop_map(|(pick, offset)| Op::Interior { pick, offset }),
        1 => Just(Op::Trim),
    ]
}

/// Arena shape: capacity (page multiples; see the ignored test in
/// tests/arena/api.rs for other capacities) and an optional chunk range.
fn shape() -> impl Strategy<Value = (usize, Option<(usize, usize)>)> {
    let capacity = if cfg!(miri) {
        prop_oneof![Just(256usize << 10), Just(8usize << 20)].boxed()
    } else {
        prop_oneof![
            Just(256usize << 10),
            Just(1usize << 20),
            Just(4usize << 20),
            Just(64usize << 20),
            Just(1usize << 30)
        ]
        .boxed()
    };
    let range = prop::option::weighted(0.25, (0usize..=300, 0usize..=MAX_SIZE))
        .prop_map(|r| r.map(|(a, b)| (a.min(b), a.max(b))));
    (capacity, range)
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: CASES,
        // Miri's isolation forbids the file system.
        failure_persistence: if cfg!(miri) {
            None
        } else {
            Some(Box::new(FileFailurePersistence::default()))
        },
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn random_ops_match_the_model_flist(
        (capacity, range) in shape(),
        ops in prop::collection::vec(op(), 0..=MAX_OPS),
    ) {
        run(Backend::Flist, capacity, range, ops);
    }

    #[test]
    fn random_ops_match_the_model_malloc(
        (capacity, range) in shape(),
        ops in prop::collection::vec(op(), 0..=MAX_OPS),
    ) {
        run(Backend::Malloc, capacity, range, ops);
    }

    #[test]
    #[cfg(all(feature = "jemalloc", not(miri)))]
    fn random_ops_match_the_model_jemalloc(
        (capacity, range) in shape(),
        ops in prop::collection::vec(op(), 0..=MAX_OPS),
    ) {
        run(Backend::Jemalloc, capacity, range, ops);
    }
}

/// One case: `ops` on an arena of `capacity` (and `range`) over `backend`.
fn run(backend: Backend, capacity: usize, range: Option<(usize, usize)>, ops: Vec<Op>) {
    let builder = Arena::builder(capacity).backend(backend);
    let arena = match range {
        None => builder.build(),
        Some((min, max)) => builder.chunk_range(min, max).build(),
    };
    let (min, max) = range.unwrap_or((0, capacity));
    let mut model = Model {
        arena: &arena,
        flist: backend == Backend::Flist,
        capacity,
        min,
        max,
        live: BTreeMap::new(),
        next_pat: 0,
    };
    for op in ops {
        match op {
            Op::Alloc { size, align, how } => model.alloc(size, align, how),
            Op::Free {
                pick,
                via_allocator,
                again,
            } => model.free(pick, via_allocator, again),
            Op::Grow {
                pick,
                extra,
                align,
                zeroed,
            } => {
                let Some((_, b)) = model.pick(pick) else {
                    continue;
                };
                let new_len = (b.len + extra).min(MAX_SIZE).max(b.len);
                model.resize(pick, new_len, align, zeroed);
            }
            Op::Shrink { pick, keep, align } => {
                let Some((_, b)) = model.pick(pick) else {
                    continue;
                };
                let new_len = (b.len as u64 * keep as u64 / u16::MAX as u64) as usize;
                model.resize(pick, new_len, align, false);
            }
            Op::Interior { pick, offset } => model.interior(pick, offset),
            Op::Trim => model.trim(),
        }
        model.check_figures();
    }
    model.finish();
}
