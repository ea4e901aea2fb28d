//! [`Flist`], the `#[global_allocator]`: per-thread flist heaps, frees from
//! other threads, thread exit, and the malloc/jemalloc backends.
//!
//! # How it works
//! * **Per-thread heaps.** Each thread allocates from its own [`Core`] (the
//!   same core as [`Arena`](crate::Arena)), found through a `thread_local!`
//!   `Cell` with `const` initialisation and no destructor: a plain TLS read,
//!   which std guarantees never calls the global allocator (since Rust 1.93).
//!   Thread exit is caught with a `pthread` key destructor (glibc's
//!   `pthread_setspecific` does not allocate for the first 32 keys), which
//!   runs after Rust's own TLS destructors, so those can still allocate.
//! * **Routing by address.** A pointer is flist memory iff the segment map
//!   says so; everything else came from the fallback backend. So a block is
//!   always freed by the allocator that made it, even one allocated after its
//!   thread's heap was torn down (such late allocations go to the fallback).
//! * **Remote frees.** A thread freeing a chunk of a segment it does not own
//!   pushes the chunk onto the pool's atomic `remote` list (a lock-free
//!   Treiber push, Release CAS) and, when the list was empty, raises the
//!   owner heap's `remote_flag`. The owner collects a pool's list (Acquire
//!   swap) when that pool runs dry, and scans its pools for remote chunks
//!   when the flag is up before it maps a new pool. Sound because: the
//!   pusher holds a live chunk, so the pool (hence its segment) cannot be
//!   released before the push completes (the owner only releases pools whose
//!   `used` count, which still counts that chunk, is 0); only the owner pops,
//!   and it pops the whole list at once, so there is no ABA; after the push
//!   the pusher touches only the owner heap, and heaps are never unmapped
//!   (idle ones are reused by new threads), so a late flag store is harmless.
//! * **Thread exit.** The exiting heap collects its remote lists, returns
//!   empty pools and segments to the OS, and puts segments that still hold
//!   live chunks on a global *abandoned* list, owner null. Ownership moves to
//!   or from null only under the abandoned-list spin lock (never held across
//!   an allocation; `pthread_atfork` handlers take it around `fork`). A
//!   thread adopts an abandoned segment when it needs a new pool, and a
//!   thread freeing into an abandoned segment adopts it first, so a segment
//!   whose last chunk is freed after its thread exited is returned too.
//! * **Memory held.** A heap keeps up to 512 empty pools and 8 MiB in them
//!   (`EMPTY_RESERVE`, `EMPTY_RESERVE_BYTES` in `heap.rs`) for reuse, then
//!   hands the oldest back (`MADV_DONTNEED`, so RSS drops; a segment left
//!   with no pool is unmapped): hysteresis, so a slab oscillating around a
//!   pool boundary does not map and unmap at every step. Over the budget the
//!   reserve is given back before an allocation fails. [`trim`] does it at
//!   once.

mod heap;

use crate::arena::{pool_in, segment_of, Core};
use crate::backend::{self, Backend, FALLBACK};
use crate::segment::Segment;
use crate::segment_map::{self, GLOBAL_TAG, TAG_MASK};
use crate::size_class::{self, PAGE};
use crate::stats::{self, Stats};
use crate::MAX_ARENA_SIZE;
use core::alloc::{GlobalAlloc, Layout};
use core::cell::Cell;
use core::ptr::{null_mut, NonNull};
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU8, AtomicUsize, Ordering};

/// Requests above this size (and alignments above the page) go to the
/// fallback backend. 256 KiB: the largest pool size, so every flist slab has
/// at least one chunk per pool. See the README for the measurement.
pub const LARGEST_FLIST_SIZE: usize = 256 << 10;

/// The global allocator. One line makes a program use it:
///
/// ```
/// #[global_allocator]
/// static GLOBAL: flistalloc::Flist = flistalloc::Flist::new();
///
/// fn main() {
///     let v: Vec<u64> = (0..1000).collect();
///     assert_eq!(v.iter().sum::<u64>(), 499_500);
/// }
/// ```
///
/// The backend is chosen once per process, at the first allocation: by
/// `FLISTALLOC_BACKEND=flist|malloc|jemalloc` (default `flist`) for
/// [`Flist::new`], or fixed by [`Flist::with_backend`]. `FLISTALLOC_CAPACITY`
/// (bytes, or with a K/M/G/T suffix; default and maximum 1 TiB) caps the
/// memory it uses; past it, allocation returns null.
pub struct Flist {
    fixed: u8,
}

/// # Safety
/// `pool` is a live pool of `heap`, this thread's heap, just freed into.
#[cold]
#[inline(never)]
unsafe fn free_fixup(heap: *mut Core, pool: *mut crate::pool::Pool) {
    // SAFETY: contract.
    unsafe {
        let p = &mut *pool;
        if !p.in_avail {
            crate::arena::link_pool((*heap).slabs.add(p.slab as usize - (*heap).lo), pool);
        }
        if p.used == 0 && (*heap).global.shared {
            (*heap).pool_emptied(pool);
        }
    }
}

/// Pops a chunk of slab `idx` from the head pool's free list of `heap`, or
/// null (the caller takes the slow path). The whole fast path of alloc.
///
/// # Safety
/// `heap` is this thread's live heap; `idx` is a slab index it serves.
#[inline(always)]
unsafe fn pop_fast(heap: *mut Core, idx: usize) -> *mut u8 {
    // SAFETY: contract; avail-list pools are live pools of this heap whose
    // free lists hold free chunks with a link in their first word.
    unsafe {
        let pool = (*(*heap).slabs.add(idx - (*heap).lo)).avail;
        if !pool.is_null() {
            let c = (*pool).free;
            if !c.is_null() {
                (*pool).free = (*c).next;
                (*pool).used += 1;
                return c.cast();
            }
        }
    }
    null_mut()
}

/// The fast path of dealloc: `addr` lies in `heap`'s hot segment (the
/// normal segment it freed into last, confirmed ours through the segment map
/// then and reset whenever the heap stops owning it), so the map lookup and
/// the owner check can be skipped. Same misuse checks as the slow path;
/// false sends the pointer there (which reports misuse).
///
/// # Safety
/// `heap` is this thread's live heap.
#[inline(always)]
unsafe fn free_hot(heap: *mut Core, addr: usize) -> bool {
    let base = addr & !(crate::segment_map::SEGMENT_SIZE - 1);
    // SAFETY: contract; hot_seg is NO_HOT_SEGMENT or a live normal segment this heap owns,
    // so its page map and pools are ours to read and write; `addr` is a
    // chunk start of the pool (checked) which the caller hands back.
    unsafe {
        if base != (*heap).global.hot_seg {
            return false;
        }
        let seg = Segment::from_addr(base);
        let slot = (*seg).pool_at((addr - base) / PAGE);
        if slot == crate::segment::NO_POOL {
            return false;
        }
        let pool = Segment::pool_ptr(seg, slot as usize);
        let p = &mut *pool;
        let c = p.start.with_addr(addr).cast::<crate::pool::FreeChunk>();
        // The page map puts addr at or above p.start; `fresh` bounds it.
        if addr >= p.fresh as usize
            || !p.div.divides(addr - p.start as usize)
            || c == p.free
            || p.used == 0
        {
            return false;
        }
        (*c).next = p.free;
        p.free = c;
        p.used -= 1;
        if !p.in_avail || (p.used == 0 && !p.in_empty) {
            free_fixup(heap, pool);
        }
        true
    }
}

impl Flist {
    /// A global allocator whose backend comes from `FLISTALLOC_BACKEND`.
    ///
    /// ```
    /// static A: flistalloc::Flist = flistalloc::Flist::new();
    /// ```
    pub const fn new() -> Flist {
        Flist { fixed: 0 }
    }

    /// A global allocator with the backend fixed at compile time
    /// (`FLISTALLOC_BACKEND` is ignored; `FLISTALLOC_CAPACITY` still applies).
    ///
    /// ```
    /// use flistalloc::{Backend, Flist};
    /// static A: Flist = Flist::with_backend(Backend::Malloc);
    /// ```
    pub const fn with_backend(backend: Backend) -> Flist {
        Flist {
            fixed: backend as u8,
        }
    }
}

impl Default for Flist {
    fn default() -> Self {
        Self::new()
    }
}

// ---------------------------------------------------------------- backend choice

/// 0 until decided, then a `Backend` as u8.
static BACKEND: AtomicU8 = AtomicU8::new(0);
static INIT: AtomicU8 = AtomicU8::new(0);
/// Whether every allocation is counted against the budget (whole-process
/// backends with `FLISTALLOC_CAPACITY` set).
static COUNT_ALL: AtomicBool = AtomicBool::new(false);
static BUDGET_LIMIT: AtomicUsize = AtomicUsize::new(MAX_ARENA_SIZE);
static BUDGET_USED: AtomicUsize = AtomicUsize::new(0);
static THREAD_KEY: AtomicUsize = AtomicUsize::new(usize::MAX);

/// The backend serving this process (deciding it now if nothing has been
/// allocated yet).
///
/// ```
/// // Under `FLISTALLOC_BACKEND=malloc` this says Malloc; by default Flist,
/// // when Flist is the global allocator.
/// let _b: flistalloc::Backend = flistalloc::backend();
/// ```
pub fn backend() -> Backend {
    Backend::from_u8(decided(0))
}

#[inline(always)]
fn decided(fixed: u8) -> u8 {
    let b = BACKEND.load(Ordering::Acquire);
    if b != 0 {
        b
    } else {
        decide(fixed)
    }
}

#[cold]
fn decide(fixed: u8) -> u8 {
    if INIT
        .compare_exchange(0, 1, Ordering::AcqRel, Ordering::Acquire)
        .is_ok()
    {
        let chosen = if fixed != 0 {
            Backend::from_u8(fixed)
        } else {
            backend_from_env()
        };
        if let Some(limit) = capacity_from_env() {
            BUDGET_LIMIT.store(limit, Ordering::Relaxed);
            COUNT_ALL.store(true, Ordering::Relaxed);
        }
        // SAFETY: plain libc calls; the key destructor and fork handlers are
        // `extern "C"` functions of this module that never unwind.
        unsafe {
            let mut key: libc::pthread_key_t = 0;
            if libc::pthread_key_create(&mut key, Some(thread_exit)) == 0 {
                THREAD_KEY.store(key as usize, Ordering::Relaxed);
            }
            libc::pthread_atfork(Some(fork_prepare), Some(fork_parent), Some(fork_child));
        }
        BACKEND.store(chosen as u8, Ordering::Release);
        INIT.store(2, Ordering::Release);
    } else {
        while INIT.load(Ordering::Acquire) != 2 {
            core::hint::spin_loop();
        }
    }
    BACKEND.load(Ordering::Acquire)
}

/// Reads an environment variable without allocating.
fn env(name: &core::ffi::CStr) -> Option<&'static [u8]> {
    // SAFETY: getenv takes a NUL-terminated name and returns null or a
    // pointer to a NUL-terminated value in the environment block, which lives
    // as long as nobody calls setenv for it (the usual getenv contract).
    unsafe {
        let v = libc::getenv(name.as_ptr());
        if v.is_null() {
            None
        } else {
            Some(core::ffi::CStr::from_ptr(v).to_bytes())
        }
    }
}

fn backend_from_env() -> Backend {
    let Some(value) = env(c"FLISTALLOC_BACKEND") else {
        return Backend::Flist;
    };
    match Backend::parse(value) {
        Some(b) if b.available() => b,
        Some(_) => {
            warn(b"FLISTALLOC_BACKEND=jemalloc, but this build has no jemalloc (cargo feature `jemalloc`); using flist", b"");
            Backend::Flist
        }
        None => {
            warn3(
                b"unknown FLISTALLOC_BACKEND=",
                value,
                b" (valid values: flist, malloc, jemalloc); using flist",
            );
            Backend::Flist
        }
    }
}

/// Parses a capacity: decimal bytes with an optional K/M/G/T suffix (powers
/// of 1024, upper or lower case). `None` if malformed or above 1 TiB.
///
/// ```
/// assert_eq!(flistalloc::parse_capacity(b"1G"), Some(1 << 30));
/// assert_eq!(flistalloc::parse_capacity(b"512k"), Some(512 << 10));
/// assert_eq!(flistalloc::parse_capacity(b"2T"), None);
/// assert_eq!(flistalloc::parse_capacity(b"lots"), None);
/// ```
pub fn parse_capacity(s: &[u8]) -> Option<usize> {
    let (digits, shift) = match s.last()? {
        b'k' | b'K' => (&s[..s.len() - 1], 10),
        b'm' | b'M' => (&s[..s.len() - 1], 20),
        b'g' | b'G' => (&s[..s.len() - 1], 30),
        b't' | b'T' => (&s[..s.len() - 1], 40),
        _ => (s, 0),
    };
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut n: usize = 0;
    for d in digits {
        n = n.checked_mul(10)?.checked_add((d - b'0') as usize)?;
    }
    let bytes = n.checked_mul(1usize << shift)?;
    (bytes <= MAX_ARENA_SIZE).then_some(bytes)
}

fn capacity_from_env() -> Option<usize> {
    let value = env(c"FLISTALLOC_CAPACITY")?;
    match parse_capacity(value) {
        Some(n) => Some(n),
        None => {
            warn3(
                b"bad FLISTALLOC_CAPACITY=",
                value,
                b" (expected bytes with an optional K/M/G/T suffix, at most 1T); using the default, 1 TiB",
            );
            None
        }
    }
}

// ---------------------------------------------------------------- messages

/// Writes `flistalloc: <a><b>\n` to stderr without allocating.
fn warn(a: &[u8], b: &[u8]) {
    warn3(a, b, b"")
}

/// Writes `flistalloc: <a><b><c>\n` to stderr without allocating.
fn warn3(a: &[u8], b: &[u8], c: &[u8]) {
    let mut buf = [0u8; 320];
    let mut n = 0;
    for part in [b"flistalloc: ".as_slice(), a, b, c, b"\n"] {
        for &c in part {
            if n < buf.len() - 1 {
                buf[n] = c;
                n += 1;
            }
        }
    }
    if buf[n - 1] != b'\n' {
        buf[n] = b'\n';
        n += 1;
    }
    // SAFETY: writes n initialised bytes of a stack buffer to fd 2.
    unsafe { libc::write(2, buf.as_ptr().cast(), n) };
}

/// Reports misuse on one line of stderr, without allocating, and aborts:
/// going on could corrupt memory.
#[cold]
#[inline(never)]
fn die(what: &[u8], addr: usize) -> ! {
    let mut hex = [0u8; 18];
    hex[0] = b'0';
    hex[1] = b'x';
    for i in 0..16 {
        let nib = (addr >> ((15 - i) * 4)) & 0xf;
        hex[2 + i] = b"0123456789abcdef"[nib];
    }
    warn(what, &hex);
    // SAFETY: abort never returns and needs no invariant.
    unsafe { libc::abort() }
}

// ---------------------------------------------------------------- budget

pub(crate) fn budget_room() -> usize {
    BUDGET_LIMIT
        .load(Ordering::Relaxed)
        .saturating_sub(BUDGET_USED.load(Ordering::Relaxed))
}

pub(crate) fn budget_take(bytes: usize) -> bool {
    let limit = BUDGET_LIMIT.load(Ordering::Relaxed);
    let mut used = BUDGET_USED.load(Ordering::Relaxed);
    loop {
        let Some(next) = used.checked_add(bytes).filter(|&n| n <= limit) else {
            return false;
        };
        match BUDGET_USED.compare_exchange_weak(used, next, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return true,
            Err(now) => used = now,
        }
    }
}

pub(crate) fn budget_give(bytes: usize) {
    BUDGET_USED.fetch_sub(bytes, Ordering::Relaxed);
}

// ---------------------------------------------------------------- locks

/// A tiny spin lock for the abandoned and idle lists: held for a few list
/// operations, never across an allocation; `fork` handlers take it.
struct SpinLock(AtomicBool);

impl SpinLock {
    fn lock(&self) {
        let mut spins = 0u32;
        while self
            .0
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            spins += 1;
            if spins < 64 {
                core::hint::spin_loop();
            } else {
                // SAFETY: sched_yield has no preconditions.
                unsafe { libc::sched_yield() };
            }
        }
    }
    fn unlock(&self) {
        self.0.store(false, Ordering::Release);
    }
}

/// Segments whose thread exited while they held live chunks.
pub(crate) struct Abandoned {
    head: *mut Segment,
}

static ABANDONED_LOCK: SpinLock = SpinLock(AtomicBool::new(false));
static ABANDONED_HEAD: AtomicPtr<Segment> = AtomicPtr::new(null_mut());

/// The abandoned list, locked until the guard drops.
pub(crate) struct AbandonedGuard(Abandoned);

impl core::ops::Deref for AbandonedGuard {
    type Target = Abandoned;
    fn deref(&self) -> &Abandoned {
        &self.0
    }
}
impl core::ops::DerefMut for AbandonedGuard {
    fn deref_mut(&mut self) -> &mut Abandoned {
        &mut self.0
    }
}
impl Drop for AbandonedGuard {
    fn drop(&mut self) {
        ABANDONED_HEAD.store(self.0.head, Ordering::Relaxed);
        ABANDONED_LOCK.unlock();
    }
}

pub(crate) fn lock_abandoned() -> AbandonedGuard {
    ABANDONED_LOCK.lock();
    AbandonedGuard(Abandoned {
        head: ABANDONED_HEAD.load(Ordering::Relaxed),
    })
}

/// Heaps of exited threads, kept for reuse (heaps are never unmapped).
static IDLE_LOCK: SpinLock = SpinLock(AtomicBool::new(false));
static IDLE_HEAD: AtomicPtr<Core> = AtomicPtr::new(null_mut());

/// Held while dead heaps are looked for and reclaimed (one reaper at a
/// time); taken before `IDLE_LOCK` and `ABANDONED_LOCK`.
static REAP_LOCK: SpinLock = SpinLock(AtomicBool::new(false));
/// Every thread heap ever made, linked through `next_all` (push only: heaps
/// are never unmapped).
static ALL_HEAPS: AtomicPtr<Core> = AtomicPtr::new(null_mut());

extern "C" fn fork_prepare() {
    REAP_LOCK.lock();
    IDLE_LOCK.lock();
    ABANDONED_LOCK.lock();
}
extern "C" fn fork_parent() {
    ABANDONED_LOCK.unlock();
    IDLE_LOCK.unlock();
    REAP_LOCK.unlock();
}
extern "C" fn fork_child() {
    ABANDONED_LOCK.unlock();
    IDLE_LOCK.unlock();
    REAP_LOCK.unlock();
    // glibc gives the child an empty robust-mutex list: the forking thread's
    // heap lock is still marked as held by its parent-side thread id. Make a
    // fresh one and hold it again. (Heaps of the other threads, which do not
    // exist in the child, stay marked as held and are never reclaimed.)
    let heap = current_heap();
    if heap as usize > DEAD {
        // SAFETY: this thread's live heap; no other thread exists yet in
        // the child, so nothing else touches its lock.
        unsafe {
            init_owner_lock(heap);
            lock_owner(heap);
        }
    }
}

/// Makes `heap`'s `owner_lock` a fresh, unlocked robust mutex.
///
/// # Safety
/// `heap` is a live thread heap whose lock nobody holds or waits on.
unsafe fn init_owner_lock(heap: *mut Core) {
    // SAFETY: the attribute object lives on this stack frame and is
    // initialised before use; the mutex memory is the heap's own field,
    // which nobody else uses now (contract). None of these calls allocates.
    unsafe {
        let mut attr: libc::pthread_mutexattr_t = core::mem::zeroed();
        libc::pthread_mutexattr_init(&mut attr);
        libc::pthread_mutexattr_setrobust(&mut attr, libc::PTHREAD_MUTEX_ROBUST);
        libc::pthread_mutex_init(core::ptr::addr_of_mut!((*heap).global.owner_lock), &attr);
        libc::pthread_mutexattr_destroy(&mut attr);
    }
}

/// Takes `heap`'s `owner_lock` for the calling thread until it exits.
///
/// # Safety
/// `heap` is a live thread heap with an initialised `owner_lock` that no
/// thread holds for long (a reaper holds it for a check at most).
unsafe fn lock_owner(heap: *mut Core) {
    // SAFETY: an initialised robust mutex in a heap that is never unmapped.
    unsafe {
        let m = core::ptr::addr_of_mut!((*heap).global.owner_lock);
        if libc::pthread_mutex_lock(m) == libc::EOWNERDEAD {
            // Only a reaper could have died holding it, while checking an
            // idle heap: the heap's state is whole.
            libc::pthread_mutex_consistent(m);
        }
        (*heap).global.attached = true;
    }
}

/// Finds thread heaps whose thread exited without detaching them (its first
/// allocation came in the last round of pthread key destructors, after ours
/// had run) and gives their memory back as a thread exit does: the kernel
/// marks such a heap's robust `owner_lock` owner-dead, so `trylock` proves the
/// thread is gone. Returns how many heaps were reclaimed. Called when no idle
/// heap is left for a new thread, and by [`trim`].
fn reap_dead_heaps() -> usize {
    let mut reaped = 0;
    REAP_LOCK.lock();
    let mut h = ALL_HEAPS.load(Ordering::Acquire);
    while !h.is_null() {
        // SAFETY: heaps on ALL_HEAPS are live (never unmapped) and their lock
        // was initialised before they were published. A heap whose lock we
        // take with EOWNERDEAD belongs to a thread that no longer exists, so
        // its private state is ours to tear down while we hold the lock.
        unsafe {
            let m = core::ptr::addr_of_mut!((*h).global.owner_lock);
            match libc::pthread_mutex_trylock(m) {
                libc::EOWNERDEAD => {
                    libc::pthread_mutex_consistent(m);
                    let was_attached = (*h).global.attached;
                    if was_attached {
                        (*h).abandon();
                        (*h).global.attached = false;
                    }
                    libc::pthread_mutex_unlock(m);
                    if was_attached {
                        push_idle(h);
                        stats::THREADS.fetch_sub(1, Ordering::Relaxed);
                        reaped += 1;
                    }
                }
                0 => {
                    // Idle: attach and exit both change `attached` only
                    // while holding the lock, so an idle heap is unlocked.
                    debug_assert!(!(*h).global.attached);
                    libc::pthread_mutex_unlock(m);
                }
                _ => {} // held by a live thread (or a thread of the parent, after fork)
            }
            h = (*h).global.next_all;
        }
    }
    REAP_LOCK.unlock();
    reaped
}

/// Puts a detached heap on the idle stack for the next new thread.
///
/// # Safety
/// `heap` is a live thread heap that no thread uses and that is not on the
/// idle stack.
unsafe fn push_idle(heap: *mut Core) {
    IDLE_LOCK.lock();
    // SAFETY: contract; we hold IDLE_LOCK, which guards the stack's links.
    unsafe { (*heap).global.next_idle = IDLE_HEAD.load(Ordering::Relaxed) };
    IDLE_HEAD.store(heap, Ordering::Relaxed);
    IDLE_LOCK.unlock();
}

// ---------------------------------------------------------------- thread heaps

/// Sentinel for "this thread's heap was torn down".
const DEAD: usize = 1;

thread_local! {
    static HEAP: Cell<*mut Core> = const { Cell::new(null_mut()) };
}

#[inline(always)]
fn current_heap() -> *mut Core {
    HEAP.with(|h| h.get())
}

/// The calling thread's heap, made on first use; null after teardown or if
/// the OS refuses the few pages a heap needs.
#[cold]
#[inline(never)]
fn heap_slow() -> *mut Core {
    let h = current_heap();
    if h as usize == DEAD {
        return null_mut();
    }
    if !h.is_null() {
        return h;
    }
    let mut idle = pop_idle();
    if idle.is_null() && reap_dead_heaps() > 0 {
        idle = pop_idle();
    }
    let heap = match NonNull::new(idle) {
        Some(h) => h.as_ptr(),
        None => match Core::create(MAX_ARENA_SIZE, 0, LARGEST_FLIST_SIZE, GLOBAL_TAG) {
            Ok(c) => {
                let h = c.as_ptr();
                // SAFETY: a fresh heap, not yet published: its lock is ours
                // to initialise, and its `next_all` link ours to set before
                // the Release CAS publishes it.
                unsafe {
                    init_owner_lock(h);
                    let mut head = ALL_HEAPS.load(Ordering::Relaxed);
                    loop {
                        (*h).global.next_all = head;
                        match ALL_HEAPS.compare_exchange_weak(
                            head,
                            h,
                            Ordering::Release,
                            Ordering::Relaxed,
                        ) {
                            Ok(_) => break,
                            Err(now) => head = now,
                        }
                    }
                }
                h
            }
            Err(_) => return null_mut(),
        },
    };
    // SAFETY: a live heap no thread uses (fresh, or popped off the idle
    // stack); its lock was initialised when it was made.
    unsafe { lock_owner(heap) };
    let key = THREAD_KEY.load(Ordering::Relaxed);
    if key != usize::MAX {
        // SAFETY: a key made by pthread_key_create; the value is our heap.
        unsafe { libc::pthread_setspecific(key as libc::pthread_key_t, heap.cast()) };
    }
    stats::THREADS.fetch_add(1, Ordering::Relaxed);
    HEAP.with(|c| c.set(heap));
    heap
}

/// Pops a heap off the idle stack, or null.
fn pop_idle() -> *mut Core {
    IDLE_LOCK.lock();
    let h = IDLE_HEAD.load(Ordering::Relaxed);
    if !h.is_null() {
        // SAFETY: idle heaps are live cores linked through next_idle; we hold
        // IDLE_LOCK.
        IDLE_HEAD.store(unsafe { (*h).global.next_idle }, Ordering::Relaxed);
    }
    IDLE_LOCK.unlock();
    h
}

/// pthread key destructor: the thread is exiting.
extern "C" fn thread_exit(value: *mut libc::c_void) {
    let heap = value.cast::<Core>();
    if heap.is_null() {
        return;
    }
    HEAP.with(|c| c.set(DEAD as *mut Core));
    // SAFETY: the heap belongs to this (exiting) thread, which holds its
    // `owner_lock`, so neither another thread nor a reaper touches its
    // private state; once detached and unlocked it is no thread's, and goes
    // on the idle stack.
    unsafe {
        (*heap).abandon();
        (*heap).global.attached = false;
        libc::pthread_mutex_unlock(core::ptr::addr_of_mut!((*heap).global.owner_lock));
        push_idle(heap);
    }
    stats::THREADS.fetch_sub(1, Ordering::Relaxed);
}

// ---------------------------------------------------------------- alloc / free

#[inline(always)]
fn is_flist_layout(layout: &Layout) -> bool {
    layout.size() <= LARGEST_FLIST_SIZE && layout.align() <= PAGE
}

/// Allocates from the fallback, counted in the budget.
#[inline(never)]
fn fallback_alloc(layout: Layout, zeroed: bool) -> *mut u8 {
    if !budget_take(layout.size()) {
        // Over the budget: give back this thread's empty reserve, retry once.
        let heap = current_heap();
        if (heap as usize) <= DEAD {
            return null_mut();
        }
        // SAFETY: this thread's live heap, not otherwise borrowed here.
        let released = unsafe { (*heap).purge_empty() };
        if !released || !budget_take(layout.size()) {
            return null_mut();
        }
    }
    let p = backend::alloc(FALLBACK, layout, zeroed);
    if p.is_null() {
        budget_give(layout.size());
    } else {
        stats::FALLBACK_LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
    }
    p
}

/// # Safety
/// `ptr` is a live fallback block of `layout`.
#[inline(never)]
unsafe fn fallback_free(ptr: *mut u8, layout: Layout) {
    // SAFETY: contract.
    unsafe { backend::free(FALLBACK, ptr, layout) };
    budget_give(layout.size());
    stats::FALLBACK_LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
}

/// Whole-process backends: everything goes to malloc or jemalloc, counted in
/// the budget only when `FLISTALLOC_CAPACITY` is set.
#[inline(never)]
fn whole_alloc(b: u8, layout: Layout, zeroed: bool) -> *mut u8 {
    let count = COUNT_ALL.load(Ordering::Relaxed);
    if count && !budget_take(layout.size()) {
        return null_mut();
    }
    let p = backend::alloc(Backend::from_u8(b), layout, zeroed);
    if p.is_null() && count {
        budget_give(layout.size());
    }
    p
}

#[inline(always)]
fn flist_alloc(layout: Layout, zeroed: bool) -> *mut u8 {
    let Some(idx) = size_class::slab_index_aligned(layout.size(), layout.align()) else {
        return fallback_alloc(layout, zeroed);
    };
    let heap = current_heap();
    if (heap as usize) > DEAD {
        // SAFETY: this thread's live heap; idx is a slab it serves (layouts
        // here are at most LARGEST_FLIST_SIZE with align <= PAGE).
        let p = unsafe { pop_fast(heap, idx) };
        if !p.is_null() {
            if zeroed {
                // SAFETY: the chunk holds at least layout.size() bytes.
                unsafe { p.write_bytes(0, layout.size()) };
            }
            return p;
        }
    }
    flist_alloc_slow(layout, zeroed, idx)
}

#[inline(never)]
fn flist_alloc_slow(layout: Layout, zeroed: bool, idx: usize) -> *mut u8 {
    let mut heap = current_heap();
    if (heap as usize) <= DEAD {
        heap = heap_slow();
        if heap.is_null() {
            return fallback_alloc(layout, zeroed);
        }
    }
    // SAFETY: `heap` is this thread's live heap; no other reference to it
    // exists (the allocator does not re-enter itself).
    match unsafe { (*heap).alloc_index_z(idx) } {
        Ok((p, fresh)) => {
            if zeroed && !fresh {
                // SAFETY: the chunk holds at least layout.size() bytes.
                unsafe { p.as_ptr().write_bytes(0, layout.size()) };
            }
            p.as_ptr()
        }
        Err(_) => null_mut(),
    }
}

/// Frees a chunk of a global segment (`entry` is its segment-map entry).
///
/// # Safety
/// `ptr` is a live block this allocator handed out, or misuse to report.
#[inline(always)]
unsafe fn flist_free(entry: usize, ptr: *mut u8) {
    let addr = ptr as usize;
    if entry & TAG_MASK != GLOBAL_TAG {
        die(
            b"dealloc of memory owned by an explicit flistalloc::Arena, at ",
            addr,
        );
    }
    let seg = segment_of(entry, addr);
    let heap = current_heap();
    // SAFETY: the map says `seg` is a live global segment covering addr.
    let owner = unsafe { (*seg).owner.load(Ordering::Relaxed) };
    if owner == heap.cast() && !owner.is_null() {
        // SAFETY: the segment is ours (only we set or clear our ownership),
        // so its page map and pools are ours to read and write.
        unsafe {
            let pool = match pool_in(seg, entry, addr) {
                Ok(p) if (*p).is_chunk_start(addr) => p,
                _ => die(
                    b"dealloc of a pointer flist did not hand out (inside a segment) ",
                    addr,
                ),
            };
            if (*heap).free_in_pool(pool, addr).is_err() {
                die(b"double free of ", addr);
            }
            if entry & crate::segment_map::HUGE_FLAG == 0 {
                (*heap).global.hot_seg = seg as usize;
            }
        }
    } else {
        // SAFETY: forwarded contract.
        unsafe { remote_free(seg, entry, addr) }
    }
}

/// Frees a chunk of a segment this thread does not own.
///
/// # Safety
/// As `flist_free`.
#[inline(never)]
unsafe fn remote_free(seg: *mut Segment, entry: usize, addr: usize) {
    // SAFETY: the caller holds a live chunk of `seg`, so the segment and the
    // chunk's pool stay live until the chunk is handed back below.
    unsafe {
        let mut owner = (*seg).owner();
        if owner.is_null() {
            // Abandoned: adopt it, then free locally.
            let heap = heap_slow();
            if !heap.is_null() {
                let mut list = lock_abandoned();
                if (*seg).owner.load(Ordering::Relaxed).is_null() {
                    list.remove(seg);
                    (*seg).owner.store(heap.cast(), Ordering::Release);
                    drop(list);
                    (*heap).adopt(seg);
                    return flist_free(entry, Segment::base(seg).with_addr(addr));
                }
                drop(list);
                owner = (*seg).owner();
            }
        }
        let pool = match pool_in(seg, entry, addr) {
            Ok(p) if (*p).is_chunk_start_remote(addr) => p,
            _ => die(
                b"dealloc of a pointer flist did not hand out (inside a segment) ",
                addr,
            ),
        };
        let chunk = (*pool)
            .start
            .with_addr(addr)
            .cast::<crate::pool::FreeChunk>();
        let mut old = (*pool).remote.load(Ordering::Relaxed);
        loop {
            (*chunk).next = old;
            match (*pool).remote.compare_exchange_weak(
                old,
                chunk,
                Ordering::Release,
                Ordering::Relaxed,
            ) {
                Ok(_) => break,
                Err(now) => old = now,
            }
        }
        // From here the chunk may be collected and the segment released; only
        // the owner heap (never unmapped) is touched.
        if old.is_null() && !owner.is_null() {
            (*owner.cast::<Core>())
                .global
                .remote_flag
                .store(true, Ordering::Release);
        }
    }
}

impl Flist {
    #[inline(never)]
    unsafe fn alloc_slow(&self, layout: Layout) -> *mut u8 {
        let b = decided(self.fixed);
        if b != Backend::Flist as u8 {
            return whole_alloc(b, layout, false);
        }
        if is_flist_layout(&layout) {
            flist_alloc(layout, false)
        } else {
            fallback_alloc(layout, false)
        }
    }

    #[inline(never)]
    unsafe fn dealloc_slow(&self, ptr: *mut u8, layout: Layout) {
        let b = BACKEND.load(Ordering::Relaxed);
        if b != Backend::Flist as u8 {
            // SAFETY: under a whole-process backend every block is its own.
            unsafe { backend::free(Backend::from_u8(b), ptr, layout) };
            if COUNT_ALL.load(Ordering::Relaxed) {
                budget_give(layout.size());
            }
            return;
        }
        let entry = segment_map::lookup(ptr as usize);
        if entry == 0 {
            // SAFETY: not flist memory, so a fallback block (GlobalAlloc contract).
            unsafe { fallback_free(ptr, layout) }
        } else {
            // SAFETY: GlobalAlloc contract: a live block of ours.
            unsafe { flist_free(entry, ptr) }
        }
    }
}

// SAFETY: alloc returns null or a block of at least `layout.size()` bytes
// aligned to `layout.align()` (slabs guarantee alignment up to the page;
// larger goes to the fallback); blocks stay valid until dealloc; dealloc
// routes each pointer by address to the allocator that made it; nothing here
// unwinds (misuse aborts) or calls the global allocator.
unsafe impl GlobalAlloc for Flist {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if BACKEND.load(Ordering::Acquire) == Backend::Flist as u8
            && layout.size() <= 1024
            && layout.align() <= 8
        {
            let heap = current_heap();
            if (heap as usize) > DEAD {
                // SAFETY: this thread's live heap; sizes <= 1 KiB with
                // align <= 8 map to slabs every heap serves.
                let p = unsafe { pop_fast(heap, size_class::slab_index(layout.size())) };
                if !p.is_null() {
                    return p;
                }
            }
        }
        // SAFETY: forwarded.
        unsafe { self.alloc_slow(layout) }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let b = decided(self.fixed);
        if b != Backend::Flist as u8 {
            return whole_alloc(b, layout, true);
        }
        if is_flist_layout(&layout) {
            flist_alloc(layout, true)
        } else {
            fallback_alloc(layout, true)
        }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        let addr = ptr as usize;
        let heap = current_heap();
        if BACKEND.load(Ordering::Relaxed) == Backend::Flist as u8 && heap as usize > DEAD {
            // SAFETY: this thread's live heap (checked just before).
            if unsafe { free_hot(heap, addr) } {
                return;
            }
        }
        // SAFETY: forwarded.
        unsafe { self.dealloc_slow(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let b = BACKEND.load(Ordering::Relaxed);
        if b != Backend::Flist as u8 {
            let count = COUNT_ALL.load(Ordering::Relaxed);
            if count && new_size > layout.size() && !budget_take(new_size - layout.size()) {
                return null_mut();
            }
            // SAFETY: GlobalAlloc contract.
            let p = unsafe { backend::realloc(Backend::from_u8(b), ptr, layout, new_size) };
            if count {
                if p.is_null() {
                    budget_give(new_size.saturating_sub(layout.size()));
                } else if new_size < layout.size() {
                    budget_give(layout.size() - new_size);
                }
            }
            return p;
        }
        // SAFETY: GlobalAlloc contract: new_size with layout.align() is valid.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        let entry = segment_map::lookup(ptr as usize);
        if entry == 0 {
            if !is_flist_layout(&new_layout) {
                // Fallback to fallback: the backend's own realloc.
                if new_size > layout.size() && !budget_take(new_size - layout.size()) {
                    return null_mut();
                }
                // SAFETY: a live fallback block (GlobalAlloc contract).
                let p = unsafe { backend::realloc(FALLBACK, ptr, layout, new_size) };
                if p.is_null() {
                    budget_give(new_size.saturating_sub(layout.size()));
                } else {
                    if new_size < layout.size() {
                        budget_give(layout.size() - new_size);
                    }
                    stats::FALLBACK_LIVE.fetch_add(
                        new_size as isize - layout.size() as isize,
                        Ordering::Relaxed,
                    );
                }
                return p;
            }
        } else if is_flist_layout(&new_layout) && entry & TAG_MASK == GLOBAL_TAG {
            // Stay in place when the new size maps to the same slab.
            let seg = segment_of(entry, ptr as usize);
            // SAFETY: a live chunk of ours: its pool header is stable.
            let same = unsafe {
                match pool_in(seg, entry, ptr as usize) {
                    Ok(pool) => {
                        size_class::slab_index_aligned(new_size, layout.align())
                            == Some((*pool).slab as usize)
                    }
                    Err(_) => false,
                }
            };
            if same {
                return ptr;
            }
        }
        // SAFETY: GlobalAlloc contract for alloc and dealloc.
        unsafe {
            let fresh = self.alloc(new_layout);
            if !fresh.is_null() {
                core::ptr::copy_nonoverlapping(ptr, fresh, layout.size().min(new_size));
                self.dealloc(ptr, layout);
            }
            fresh
        }
    }
}

/// Hands the calling thread's empty pools back to the OS at once, adopting
/// and trimming abandoned segments too; returns the bytes of pools given
/// back.
///
/// ```
/// let _given_back: usize = flistalloc::trim();
/// ```
pub fn trim() -> usize {
    if BACKEND.load(Ordering::Relaxed) != Backend::Flist as u8 {
        return 0;
    }
    reap_dead_heaps();
    let heap = heap_slow();
    if heap.is_null() {
        return 0;
    }
    // SAFETY: this thread's heap, used by no one else.
    unsafe {
        loop {
            let seg = lock_abandoned().pop_to(heap);
            match seg {
                Some(seg) => (*heap).adopt(seg),
                None => break,
            }
        }
        (*heap).trim()
    }
}

/// Process-wide figures of the global allocator (see [`Stats`]).
///
/// ```
/// let s = flistalloc::stats();
/// println!("{} bytes mapped, {} threads", s.mapped, s.threads);
/// ```
pub fn stats() -> Stats {
    stats::snapshot()
}
