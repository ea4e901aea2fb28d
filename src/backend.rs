//! The fallback backends: the system `malloc` (through `libc`) and jemalloc
//! (`tikv-jemalloc-sys`, cargo feature `jemalloc`). They serve what flist
//! does not (sizes above the largest flist slab, alignments above the page)
//! and, as whole-process backends, everything.

use core::alloc::Layout;
use core::ffi::c_void;
use core::sync::atomic::{AtomicPtr, Ordering};

/// The C allocator functions the `malloc` backend calls.
///
/// By default they are the C library's (`libc::malloc` and friends). A
/// program in which flistalloc *is* the C allocator (the `LD_PRELOAD`
/// library) cannot call those: they resolve to its own exports. It hands in
/// glibc's own functions instead (found with `dlsym(RTLD_NEXT, ...)`) through
/// [`set_system`](crate::raw::set_system).
///
/// ```
/// // The functions the default table holds:
/// let fns = flistalloc::raw::SystemFns::LIBC;
/// // SAFETY: plain C allocator calls with valid arguments.
/// unsafe {
///     let p = (fns.malloc)(32);
///     assert!(!p.is_null());
///     (fns.free)(p);
/// }
/// ```
#[derive(Clone, Copy, Debug)]
pub struct SystemFns {
    /// `malloc(size)`.
    pub malloc: unsafe extern "C" fn(usize) -> *mut c_void,
    /// `calloc(count, size)`.
    pub calloc: unsafe extern "C" fn(usize, usize) -> *mut c_void,
    /// `realloc(ptr, size)`.
    pub realloc: unsafe extern "C" fn(*mut c_void, usize) -> *mut c_void,
    /// `free(ptr)`.
    pub free: unsafe extern "C" fn(*mut c_void),
    /// `posix_memalign(out, align, size)`.
    pub posix_memalign: unsafe extern "C" fn(*mut *mut c_void, usize, usize) -> libc::c_int,
    /// `malloc_usable_size(ptr)`.
    pub malloc_usable_size: unsafe extern "C" fn(*mut c_void) -> usize,
}

impl SystemFns {
    /// The C library's functions, as linked.
    pub const LIBC: SystemFns = SystemFns {
        malloc: libc::malloc,
        calloc: libc::calloc,
        realloc: libc::realloc,
        free: libc::free,
        posix_memalign: libc::posix_memalign,
        malloc_usable_size: libc::malloc_usable_size,
    };
}

static LIBC_FNS: SystemFns = SystemFns::LIBC;

/// The table in use. Invariant: points to a `'static` table of functions
/// that behave as the C allocator functions of the same names; every block
/// the malloc backend handed out came from the table in use then, so it is
/// replaced only before the first allocation.
static SYSTEM: AtomicPtr<SystemFns> =
    AtomicPtr::new(&LIBC_FNS as *const SystemFns as *mut SystemFns);

/// Replaces the table of C allocator functions (see [`SystemFns`]).
///
/// # Safety
/// The functions behave as the C allocator functions of the same names, and
/// no block has been allocated from the malloc backend yet (a block must be
/// freed by the allocator that made it).
pub(crate) unsafe fn set_system(fns: &'static SystemFns) {
    SYSTEM.store(fns as *const SystemFns as *mut SystemFns, Ordering::Release);
}

#[inline(always)]
fn sys() -> &'static SystemFns {
    // SAFETY: SYSTEM always points to a 'static table (its invariant).
    unsafe { &*SYSTEM.load(Ordering::Acquire) }
}

/// Which allocator serves the process.
///
/// ```
/// use flistalloc::Backend;
/// assert_eq!(Backend::parse(b"jemalloc"), Some(Backend::Jemalloc));
/// assert_eq!(Backend::parse(b"tcmalloc"), None);
/// assert_eq!(Backend::Flist.name(), "flist");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Backend {
    /// Per-thread flist arenas; large or over-aligned blocks go to jemalloc
    /// (or malloc, in a build without the `jemalloc` feature).
    Flist = 1,
    /// The system allocator (glibc `malloc`) for everything.
    Malloc = 2,
    /// jemalloc for everything (needs the `jemalloc` feature).
    Jemalloc = 3,
}

impl Backend {
    /// Parses a backend name as `FLISTALLOC_BACKEND` spells it.
    ///
    /// ```
    /// assert_eq!(flistalloc::Backend::parse(b"malloc"), Some(flistalloc::Backend::Malloc));
    /// ```
    pub fn parse(name: &[u8]) -> Option<Backend> {
        match name {
            b"flist" => Some(Backend::Flist),
            b"malloc" => Some(Backend::Malloc),
            b"jemalloc" => Some(Backend::Jemalloc),
            _ => None,
        }
    }

    /// The name `FLISTALLOC_BACKEND` uses for it.
    ///
    /// ```
    /// assert_eq!(flistalloc::Backend::Malloc.name(), "malloc");
    /// ```
    pub fn name(self) -> &'static str {
        match self {
            Backend::Flist => "flist",
            Backend::Malloc => "malloc",
            Backend::Jemalloc => "jemalloc",
        }
    }

    /// Whether this build can use it (jemalloc needs the `jemalloc` feature).
    ///
    /// ```
    /// assert!(flistalloc::Backend::Malloc.available());
    /// ```
    pub fn available(self) -> bool {
        self != Backend::Jemalloc || cfg!(feature = "jemalloc")
    }

    pub(crate) fn from_u8(v: u8) -> Backend {
        match v {
            2 => Backend::Malloc,
            3 => Backend::Jemalloc,
            _ => Backend::Flist,
        }
    }
}

/// The allocator that backs large blocks: jemalloc when built in, else malloc.
pub(crate) const FALLBACK: Backend = if cfg!(feature = "jemalloc") {
    Backend::Jemalloc
} else {
    Backend::Malloc
};

/// Alignment malloc guarantees on 64-bit Linux.
const MALLOC_ALIGN: usize = 16;

pub(crate) mod malloc {
    use super::*;

    #[inline]
    pub fn alloc(layout: Layout) -> *mut u8 {
        if layout.align() <= MALLOC_ALIGN && layout.align() <= layout.size() {
            // SAFETY: a C `malloc` (the table's invariant) with any size.
            unsafe { (sys().malloc)(layout.size()).cast() }
        } else {
            let mut out = core::ptr::null_mut();
            let align = layout.align().max(core::mem::size_of::<usize>());
            // SAFETY: a C `posix_memalign` (the table's invariant); `align` is
            // a power of two and a multiple of the pointer size; `out` is a
            // valid out-pointer.
            let rc = unsafe { (sys().posix_memalign)(&mut out, align, layout.size()) };
            if rc == 0 {
                out.cast()
            } else {
                core::ptr::null_mut()
            }
        }
    }

    #[inline]
    pub fn alloc_zeroed(layout: Layout) -> *mut u8 {
        if layout.align() <= MALLOC_ALIGN && layout.align() <= layout.size() {
            // SAFETY: a C `calloc` (the table's invariant) with any size.
            unsafe { (sys().calloc)(1, layout.size()).cast() }
        } else {
            let p = alloc(layout);
            if !p.is_null() {
                // SAFETY: p holds layout.size() bytes.
                unsafe { p.write_bytes(0, layout.size()) };
            }
            p
        }
    }

    /// # Safety
    /// `ptr` came from this module's `alloc`/`alloc_zeroed`/`realloc`.
    #[inline]
    pub unsafe fn free(ptr: *mut u8) {
        // SAFETY: `ptr` came from this module (contract), so from the
        // table's malloc/calloc/realloc/posix_memalign, which the table's
        // `free` takes back (the table is not replaced after the first
        // allocation).
        unsafe { (sys().free)(ptr.cast()) }
    }

    /// The usable size of a block of this module: at least what was asked,
    /// all of it writable (glibc's `malloc_usable_size`). Under miri, which
    /// has no such function, the size asked (`asked`).
    ///
    /// # Safety
    /// `ptr` is a live block of this module, allocated for `asked` bytes.
    #[inline]
    pub unsafe fn usable_size(ptr: *mut u8, asked: usize) -> usize {
        #[cfg(not(miri))]
        {
            let _ = asked;
            // SAFETY: a live block of the C allocator (contract); glibc's
            // malloc_usable_size reads its chunk header.
            unsafe { libc::malloc_usable_size(ptr.cast()) }
        }
        #[cfg(miri)]
        {
            let _ = ptr;
            asked
        }
    }

    /// # Safety
    /// As `free`; `layout` is the block's layout.
    #[inline]
    pub unsafe fn realloc(ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if layout.align() <= MALLOC_ALIGN && layout.align() <= new_size {
            // SAFETY: contract; realloc keeps malloc's default alignment,
            // which covers layout.align().
            unsafe { (sys().realloc)(ptr.cast(), new_size).cast() }
        } else {
            // SAFETY: contract; the layout with the new size is valid (the
            // caller of GlobalAlloc::realloc guarantees it).
            unsafe { super::realloc_by_copy(ptr, layout, new_size, alloc, |p| free(p)) }
        }
    }
}

#[cfg(feature = "jemalloc")]
pub(crate) mod jemalloc {
    use super::*;
    use tikv_jemalloc_sys as je;

    #[inline]
    fn flags(layout: Layout) -> libc::c_int {
        if layout.align() <= MALLOC_ALIGN && layout.align() <= layout.size() {
            0
        } else {
            layout.align().trailing_zeros() as libc::c_int // MALLOCX_LG_ALIGN
        }
    }

    /// `malloc` when the default alignment covers the layout (jemalloc's
    /// `malloc` has a fast path that `mallocx` lacks: 25 instructions
    /// against 83 measured with callgrind for 64 bytes), else `mallocx`.
    #[inline]
    pub fn alloc(layout: Layout) -> *mut u8 {
        match flags(layout) {
            // SAFETY: jemalloc's malloc takes any size.
            0 => unsafe { je::malloc(layout.size()).cast() },
            // SAFETY: mallocx requires size != 0, hence the max(1); the
            // flags name a power-of-two alignment.
            f => unsafe { je::mallocx(layout.size().max(1), f).cast() },
        }
    }

    /// As [`alloc`], with `calloc` and `MALLOCX_ZERO` (0x40).
    #[inline]
    pub fn alloc_zeroed(layout: Layout) -> *mut u8 {
        match flags(layout) {
            // SAFETY: jemalloc's calloc takes any size.
            0 => unsafe { je::calloc(1, layout.size()).cast() },
            // SAFETY: as alloc.
            f => unsafe { je::mallocx(layout.size().max(1), f | 0x40).cast() },
        }
    }

    /// # Safety
    /// `ptr` came from this module with `layout`.
    #[inline]
    pub unsafe fn free(ptr: *mut u8, layout: Layout) {
        // SAFETY: contract; sdallocx takes the size it was allocated with.
        unsafe { je::sdallocx(ptr.cast(), layout.size().max(1), flags(layout)) }
    }

    /// # Safety
    /// As `free`.
    #[inline]
    pub unsafe fn realloc(ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let new = Layout::from_size_align(new_size.max(1), layout.align()).unwrap_or(layout);
        // SAFETY: contract; rallocx keeps the alignment asked in flags.
        unsafe { je::rallocx(ptr.cast(), new.size(), flags(new)).cast() }
    }
}

/// The C library's calls into a whole-process backend (`b` is `Malloc` or
/// `Jemalloc`), or into glibc for a foreign pointer (`Malloc`): the C
/// functions of the same names, with C's arguments and results.
pub(crate) mod c {
    use super::*;
    #[cfg(feature = "jemalloc")]
    use tikv_jemalloc_sys as je;

    /// The smallest request passed to jemalloc: its 8-byte size class is
    /// only 8-aligned, and C wants every block aligned for `max_align_t`
    /// (16 bytes); jemalloc's classes from 16 bytes up are multiples of 16
    /// and 16-aligned.
    #[cfg(feature = "jemalloc")]
    const JE_MIN: usize = 16;

    /// `malloc(size)`.
    pub fn malloc(b: Backend, size: usize) -> *mut u8 {
        match b {
            #[cfg(feature = "jemalloc")]
            // SAFETY: jemalloc's malloc takes any size.
            Backend::Jemalloc => unsafe { je::malloc(size.max(JE_MIN)).cast() },
            // SAFETY: a C malloc (the table's invariant) takes any size.
            _ => unsafe { (sys().malloc)(size).cast() },
        }
    }

    /// `calloc(1, size)`.
    pub fn calloc(b: Backend, size: usize) -> *mut u8 {
        match b {
            #[cfg(feature = "jemalloc")]
            // SAFETY: jemalloc's calloc takes any sizes.
            Backend::Jemalloc => unsafe { je::calloc(1, size.max(JE_MIN)).cast() },
            // SAFETY: a C calloc (the table's invariant) takes any sizes.
            _ => unsafe { (sys().calloc)(1, size).cast() },
        }
    }

    /// `posix_memalign` for `align`, a power of two and a multiple of the
    /// pointer size; null on failure.
    pub fn memalign(b: Backend, align: usize, size: usize) -> *mut u8 {
        let mut out = core::ptr::null_mut();
        let rc = match b {
            #[cfg(feature = "jemalloc")]
            // SAFETY: a valid out-pointer and alignment (contract).
            Backend::Jemalloc => unsafe { je::posix_memalign(&mut out, align, size) },
            // SAFETY: a C posix_memalign (the table's invariant), a valid
            // out-pointer and alignment (contract).
            _ => unsafe { (sys().posix_memalign)(&mut out, align, size) },
        };
        if rc == 0 {
            out.cast()
        } else {
            core::ptr::null_mut()
        }
    }

    /// `free(ptr)`.
    ///
    /// # Safety
    /// `ptr` is a live block of backend `b` (for `Malloc`: of the functions
    /// in the table).
    pub unsafe fn free(b: Backend, ptr: *mut u8) {
        match b {
            #[cfg(feature = "jemalloc")]
            // SAFETY: a live jemalloc block (contract).
            Backend::Jemalloc => unsafe { je::free(ptr.cast()) },
            // SAFETY: a live block of the table's allocator (contract).
            _ => unsafe { (sys().free)(ptr.cast()) },
        }
    }

    /// `realloc(ptr, size)`.
    ///
    /// # Safety
    /// As [`free`].
    pub unsafe fn realloc(b: Backend, ptr: *mut u8, size: usize) -> *mut u8 {
        match b {
            #[cfg(feature = "jemalloc")]
            // SAFETY: a live jemalloc block (contract).
            Backend::Jemalloc => unsafe { je::realloc(ptr.cast(), size.max(JE_MIN)).cast() },
            // SAFETY: a live block of the table's allocator (contract).
            _ => unsafe { (sys().realloc)(ptr.cast(), size).cast() },
        }
    }

    /// `malloc_usable_size(ptr)`.
    ///
    /// # Safety
    /// As [`free`].
    pub unsafe fn usable_size(b: Backend, ptr: *mut u8) -> usize {
        match b {
            #[cfg(feature = "jemalloc")]
            // SAFETY: a live jemalloc block (contract).
            Backend::Jemalloc => unsafe { je::malloc_usable_size(ptr.cast()) },
            // SAFETY: a live block of the table's allocator (contract).
            _ => unsafe { (sys().malloc_usable_size)(ptr.cast()) },
        }
    }
}

/// A dedicated jemalloc arena with its own explicit tcache, for an `Arena`
/// over the jemalloc backend: everything it allocates comes from this arena
/// and goes back through this tcache, and [`destroy`](JeArena::destroy)
/// discards it all at once.
///
/// An explicit tcache is tied to no thread (jemalloc's `tcache.create`), so
/// the handle may move between threads; it must not be used by two at once,
/// which the `Arena` (not `Sync`) guarantees.
#[cfg(feature = "jemalloc")]
pub(crate) struct JeArena {
    /// Index from `arenas.create`. Invariant: a live arena that only this
    /// handle allocates from.
    arena: u32,
    /// Identifier from `tcache.create`, live until `destroy`.
    tcache: u32,
}

/// A mallctl that yields one `unsigned` (`arenas.create`, `tcache.create`);
/// `None` when jemalloc refuses.
#[cfg(feature = "jemalloc")]
fn ctl_read_u32(name: &core::ffi::CStr) -> Option<u32> {
    let mut v: u32 = 0;
    let mut len = core::mem::size_of::<u32>();
    // SAFETY: the name is NUL-terminated; jemalloc writes at most `len`
    // bytes (one `unsigned`) into `v`, and reads no new value (null, 0).
    let rc = unsafe {
        tikv_jemalloc_sys::mallctl(
            name.as_ptr(),
            (&mut v as *mut u32).cast(),
            &mut len,
            core::ptr::null_mut(),
            0,
        )
    };
    (rc == 0).then_some(v)
}

/// A mallctl that takes one `unsigned` and yields nothing (`tcache.flush`,
/// `tcache.destroy`); true on success.
#[cfg(feature = "jemalloc")]
fn ctl_write_u32(name: &core::ffi::CStr, mut v: u32) -> bool {
    // SAFETY: the name is NUL-terminated; jemalloc reads one `unsigned` of
    // `size_of::<u32>()` bytes from `v` and writes nothing back (null old
    // value and length).
    unsafe {
        tikv_jemalloc_sys::mallctl(
            name.as_ptr(),
            core::ptr::null_mut(),
            core::ptr::null_mut(),
            (&mut v as *mut u32).cast(),
            core::mem::size_of::<u32>(),
        ) == 0
    }
}

#[cfg(feature = "jemalloc")]
impl JeArena {
    /// Creates the arena and its tcache; `None` when jemalloc refuses.
    pub fn create() -> Option<JeArena> {
        let arena = ctl_read_u32(c"arenas.create")?;
        let Some(tcache) = ctl_read_u32(c"tcache.create") else {
            let h = JeArena {
                arena,
                tcache: u32::MAX,
            };
            h.ctl_arena(c"arena.0.destroy");
            return None;
        };
        Some(JeArena { arena, tcache })
    }

    /// The jemalloc arena index (for `stats.arenas.<i>.*`).
    pub fn index(&self) -> u32 {
        self.arena
    }

    #[inline]
    fn flags(&self, align: usize) -> libc::c_int {
        let base = tikv_jemalloc_sys::MALLOCX_ARENA(self.arena as usize)
            | tikv_jemalloc_sys::MALLOCX_TCACHE(self.tcache as usize);
        // jemalloc aligns every size class to at least 8 and to its
        // largest power-of-two divisor up to the page: ask only above 8.
        if align > 8 {
            base | align.trailing_zeros() as libc::c_int
        } else {
            base
        }
    }

    /// The usable size a block of `size` (at least 1) and `align` gets, or
    /// 0 when jemalloc cannot serve it.
    #[inline]
    pub fn usable_size(&self, size: usize, align: usize) -> usize {
        // SAFETY: nallocx only computes; size >= 1 (contract).
        unsafe { tikv_jemalloc_sys::nallocx(size, self.flags(align)) }
    }

    /// A block of `size` (at least 1) aligned to `align`, from this arena
    /// through its tcache; null on failure.
    #[inline]
    pub fn alloc(&self, size: usize, align: usize) -> *mut u8 {
        // SAFETY: size >= 1 (contract); the arena and tcache are live
        // (invariants) and used by one thread at a time.
        unsafe { tikv_jemalloc_sys::mallocx(size, self.flags(align)).cast() }
    }

    /// # Safety
    /// `ptr` is a live block of this handle whose usable size is `usable`.
    #[inline]
    pub unsafe fn free(&self, ptr: *mut u8, usable: usize) {
        // SAFETY: contract; sdallocx takes any size between the asked and
        // the usable one, and the usable size is a size class of its own, so
        // no alignment flag is needed to name it.
        unsafe {
            tikv_jemalloc_sys::sdallocx(
                ptr.cast(),
                usable,
                tikv_jemalloc_sys::MALLOCX_TCACHE(self.tcache as usize),
            )
        }
    }

    /// Returns the arena's unused dirty pages to the OS (`arena.<i>.purge`).
    pub fn purge(&self) {
        self.ctl_arena(c"arena.0.purge");
    }

    /// A write-nothing mallctl `arena.<i>.<op>` for this arena; `name` is
    /// spelled with index 0, replaced through the MIB. True on success.
    fn ctl_arena(&self, name: &core::ffi::CStr) -> bool {
        use tikv_jemalloc_sys as je;
        let mut mib = [0usize; 3];
        let mut len = mib.len();
        // SAFETY: the name is NUL-terminated and `mib` holds `len` entries;
        // the by-MIB call reads and writes nothing else.
        unsafe {
            if je::mallctlnametomib(name.as_ptr(), mib.as_mut_ptr(), &mut len) != 0 {
                return false;
            }
            mib[1] = self.arena as usize;
            je::mallctlbymib(
                mib.as_ptr(),
                len,
                core::ptr::null_mut(),
                core::ptr::null_mut(),
                core::ptr::null_mut(),
                0,
            ) == 0
        }
    }

    /// Flushes and destroys the tcache, then destroys the arena: every
    /// block of this handle is discarded at once, whatever thread made it.
    ///
    /// # Safety
    /// No block of this handle is used afterwards.
    pub unsafe fn destroy(self) {
        // Our live tcache id: the arena is destroyed only after its cached
        // blocks were flushed back to it, as `arena.<i>.destroy` requires.
        ctl_write_u32(c"tcache.flush", self.tcache);
        ctl_write_u32(c"tcache.destroy", self.tcache);
        if !self.ctl_arena(c"arena.0.destroy") {
            crate::msg::warn(&[
                b"jemalloc refused arena.<i>.destroy; the arena's memory stays with jemalloc",
            ]);
        }
    }
}

/// alloc + copy + free, for alignments a backend's realloc does not keep.
///
/// # Safety
/// `ptr` is a live block of `layout` from the allocator `free` returns to.
unsafe fn realloc_by_copy(
    ptr: *mut u8,
    layout: Layout,
    new_size: usize,
    alloc: fn(Layout) -> *mut u8,
    free: impl FnOnce(*mut u8),
) -> *mut u8 {
    // SAFETY: GlobalAlloc::realloc's caller guarantees the new layout is valid.
    let new = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
    let fresh = alloc(new);
    if !fresh.is_null() {
        // SAFETY: both blocks are live, distinct, and hold the copied bytes.
        unsafe { core::ptr::copy_nonoverlapping(ptr, fresh, layout.size().min(new_size)) };
        free(ptr);
    }
    fresh
}

/// Allocates from backend `b` (Malloc or Jemalloc).
#[inline]
pub(crate) fn alloc(b: Backend, layout: Layout, zeroed: bool) -> *mut u8 {
    match (b, zeroed) {
        #[cfg(feature = "jemalloc")]
        (Backend::Jemalloc, false) => jemalloc::alloc(layout),
        #[cfg(feature = "jemalloc")]
        (Backend::Jemalloc, true) => jemalloc::alloc_zeroed(layout),
        (_, false) => malloc::alloc(layout),
        (_, true) => malloc::alloc_zeroed(layout),
    }
}

/// # Safety
/// `ptr` is a live block of backend `b` with `layout`.
#[inline]
pub(crate) unsafe fn free(b: Backend, ptr: *mut u8, layout: Layout) {
    match b {
        #[cfg(feature = "jemalloc")]
        // SAFETY: `ptr` is a live jemalloc block of `layout` (precondition
        // with b == Jemalloc), as jemalloc::free needs.
        Backend::Jemalloc => unsafe { jemalloc::free(ptr, layout) },
        _ => {
            let _ = layout;
            // SAFETY: `ptr` is a live block of the malloc backend
            // (precondition), as malloc::free needs.
            unsafe { malloc::free(ptr) }
        }
    }
}

/// # Safety
/// As `free`; `new_size` with `layout.align()` is a valid layout.
#[inline]
pub(crate) unsafe fn realloc(b: Backend, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
    match b {
        #[cfg(feature = "jemalloc")]
        // SAFETY: a live jemalloc block of `layout` and a valid new layout
        // (precondition), as jemalloc::realloc needs.
        Backend::Jemalloc => unsafe { jemalloc::realloc(ptr, layout, new_size) },
        // SAFETY: a live malloc-backend block of `layout` and a valid new
        // layout (precondition), as malloc::realloc needs.
        _ => unsafe { malloc::realloc(ptr, layout, new_size) },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::sync::atomic::AtomicUsize;

    static CALLS: AtomicUsize = AtomicUsize::new(0);

    unsafe extern "C" fn counting_malloc(n: usize) -> *mut c_void {
        CALLS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwards the caller's valid arguments to the C malloc.
        unsafe { libc::malloc(n) }
    }

    unsafe extern "C" fn counting_free(p: *mut c_void) {
        CALLS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: `p` came from counting_malloc, i.e. from the C malloc.
        unsafe { libc::free(p) }
    }

    static COUNTING: SystemFns = SystemFns {
        malloc: counting_malloc,
        free: counting_free,
        ..SystemFns::LIBC
    };

    #[test]
    fn injected_functions_serve_the_malloc_backend() {
        // SAFETY: COUNTING forwards to the C library, and no other test of
        // this binary allocates through the malloc backend.
        unsafe { set_system(&COUNTING) };
        let layout = Layout::from_size_align(100, 8).unwrap();
        let p = malloc::alloc(layout);
        assert!(!p.is_null());
        // SAFETY: a block of this module, freed once.
        unsafe { malloc::free(p) };
        // SAFETY: back to the C library's table; nothing is live.
        unsafe { set_system(&LIBC_FNS) };
        assert_eq!(CALLS.load(Ordering::Relaxed), 2);
    }
}
