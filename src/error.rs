//! Errors of the explicit [`Arena`](crate::Arena) API.

use core::fmt;

/// Why an [`Arena`](crate::Arena) operation failed. Each variant names one
/// cause; `Display` gives a one-line message (the panicking twins panic with
/// it).
///
/// ```
/// let arena = flistalloc::Arena::with_chunk_range(1 << 20, 16, 1024);
/// let err = arena.try_alloc(4096).unwrap_err();
/// assert!(matches!(err, flistalloc::Error::SizeOutOfRange { size: 4096, .. }));
/// assert!(err.to_string().contains("outside this arena's chunk range"));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The requested capacity is above [`MAX_ARENA_SIZE`](crate::MAX_ARENA_SIZE).
    CapacityTooLarge { capacity: usize },
    /// `min > max`, or `max` above [`MAX_ARENA_SIZE`](crate::MAX_ARENA_SIZE).
    InvalidChunkRange { min: usize, max: usize },
    /// The requested size lies outside the arena's chunk range.
    SizeOutOfRange { size: usize, min: usize, max: usize },
    /// The alignment is above the page size (4096), which slabs cannot promise.
    UnsupportedAlignment { align: usize },
    /// A new pool (flist), or the new chunk's usable size (malloc, jemalloc),
    /// `needed` bytes, would take the arena's `heap` over its `capacity`.
    OutOfCapacity {
        needed: usize,
        heap: usize,
        capacity: usize,
    },
    /// The operating system refused to map memory.
    OutOfMemory { bytes: usize },
    /// `free` of a null pointer.
    NullPointer,
    /// A pointer this arena did not hand out (another arena's, the heap's,
    /// the stack's, or the inside of a chunk).
    ForeignPointer { addr: usize },
    /// A chunk freed while already free (caught cheaply: see `Arena::free`).
    DoubleFree { addr: usize },
    /// The backend asked of [`ArenaBuilder::backend`](crate::ArenaBuilder::backend)
    /// is not in this build: `Jemalloc` needs the cargo feature `jemalloc`.
    BackendUnavailable { backend: crate::Backend },
    /// The backend refused to set up the arena: jemalloc's `arenas.create`
    /// failed (it allows about 4,000 arenas alive at once; drop some
    /// `Arena`s over jemalloc and build again).
    BackendRefused { backend: crate::Backend },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Error::CapacityTooLarge { capacity } => write!(
                f,
                "capacity {capacity} exceeds MAX_ARENA_SIZE ({} bytes, 1 TiB)",
                crate::MAX_ARENA_SIZE
            ),
            Error::InvalidChunkRange { min, max } => write!(
                f,
                "invalid chunk range {min}..={max}: need min <= max <= MAX_ARENA_SIZE (1 TiB)"
            ),
            Error::SizeOutOfRange { size, min, max } => write!(
                f,
                "size {size} is outside this arena's chunk range {min}..={max}"
            ),
            Error::UnsupportedAlignment { align } => {
                write!(f, "alignment {align} is above the page size (4096)")
            }
            Error::OutOfCapacity {
                needed,
                heap,
                capacity,
            } => write!(
                f,
                "arena out of capacity: {needed} more bytes do not fit ({heap} of {capacity} bytes used)"
            ),
            Error::OutOfMemory { bytes } => {
                write!(f, "out of memory: the OS refused to map {bytes} bytes")
            }
            Error::NullPointer => write!(f, "free of a null pointer"),
            Error::ForeignPointer { addr } => {
                write!(f, "pointer {addr:#x} was not handed out by this arena")
            }
            Error::DoubleFree { addr } => write!(f, "double free of chunk {addr:#x}"),
            Error::BackendUnavailable { backend } => write!(
                f,
                "backend {} is not in this build (it needs the cargo feature `jemalloc`)",
                backend.name()
            ),
            Error::BackendRefused { backend } => write!(
                f,
                "backend {} refused to set up this arena (jemalloc: too many arenas alive at once)",
                backend.name()
            ),
        }
    }
}

impl std::error::Error for Error {}
