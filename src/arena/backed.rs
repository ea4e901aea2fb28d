//! An [`Arena`](super::Arena) over the `malloc` or `jemalloc` backend: the
//! chunks come from the C allocator (glibc `malloc`, or a jemalloc arena of
//! its own), and a [`ChunkSet`] of the live ones, in OS memory, gives the
//! seed's contract: the capacity bounds the sum of their usable sizes, a
//! pointer not in the set is foreign (reported, never handed to the C
//! allocator), and release frees what is left.
//!
//! The arena's flist core is closed (serves no size, owns no segment), so the
//! `Arena`'s fast paths miss on their existing error branch and come here:
//! the flist arena pays nothing for the choice.

use crate::backend::{self, Backend};
use crate::chunk_set::ChunkSet;
use crate::error::Error;
use crate::size_class::{slabs, PAGE};
use crate::stats::SlabUse;
use core::alloc::Layout;
use core::ptr::NonNull;

/// Where the chunks come from.
enum Source {
    /// The C library's `malloc` (the table of `backend::malloc`).
    Malloc,
    /// A dedicated jemalloc arena with its own tcache.
    #[cfg(feature = "jemalloc")]
    Jemalloc(backend::JeArena),
}

/// The state of an arena over a C allocator.
pub(crate) struct Backed {
    source: Source,
    /// The most usable bytes the live chunks may sum to.
    capacity: usize,
    /// Requested sizes served: `min..=max`.
    min: usize,
    max: usize,
    /// The live chunks and their usable sizes. Invariant: exactly the
    /// chunks handed out and not freed; `live.bytes() <= capacity`.
    live: ChunkSet,
}

impl Backed {
    /// # Errors
    /// `BackendUnavailable` for jemalloc in a build without it;
    /// `BackendRefused` when jemalloc refuses a new arena (too many alive).
    pub fn new(backend: Backend, capacity: usize, min: usize, max: usize) -> Result<Backed, Error> {
        let source = match backend {
            Backend::Malloc => Source::Malloc,
            #[cfg(feature = "jemalloc")]
            Backend::Jemalloc => Source::Jemalloc(
                backend::JeArena::create().ok_or(Error::BackendRefused { backend })?,
            ),
            _ => return Err(Error::BackendUnavailable { backend }),
        };
        Ok(Backed {
            source,
            capacity,
            min,
            max,
            live: ChunkSet::new(),
        })
    }

    pub fn backend(&self) -> Backend {
        match self.source {
            Source::Malloc => Backend::Malloc,
            #[cfg(feature = "jemalloc")]
            Source::Jemalloc(_) => Backend::Jemalloc,
        }
    }

    pub fn min(&self) -> usize {
        self.min
    }

    pub fn max(&self) -> usize {
        self.max
    }

    /// The jemalloc arena index, for a jemalloc-backed arena.
    pub fn jemalloc_arena(&self) -> Option<u32> {
        match &self.source {
            Source::Malloc => None,
            #[cfg(feature = "jemalloc")]
            Source::Jemalloc(j) => Some(j.index()),
        }
    }

    /// A chunk for `size` bytes aligned to `align` (1 promises 8, as flist
    /// does); returns it with its usable size.
    pub fn alloc(&mut self, size: usize, align: usize) -> Result<(NonNull<u8>, usize), Error> {
        if size < self.min || size > self.max {
            return Err(Error::SizeOutOfRange {
                size,
                min: self.min,
                max: self.max,
            });
        }
        if align > PAGE {
            return Err(Error::UnsupportedAlignment { align });
        }
        self.live
            .reserve_one()
            .map_err(|bytes| Error::OutOfMemory { bytes })?;
        // Size 0 is a real, unique chunk, as on flist.
        let asked = size.max(1);
        let heap = self.live.bytes();
        let over = |usable: usize| Error::OutOfCapacity {
            needed: usable,
            heap,
            capacity: self.capacity,
        };
        if asked > self.capacity - heap {
            // Before asking malloc: the usable size is at least `asked`.
            return Err(over(asked));
        }
        let (p, usable) = match &self.source {
            Source::Malloc => {
                // C's malloc aligns a block of n bytes for any type of up
                // to n bytes (glibc: always to 16), so up to 16 asking for
                // at least `align` and 8 bytes is enough (8: the alignment
                // `alloc` promises); above, posix_memalign.
                let layout = if align <= 16 {
                    Layout::from_size_align(asked.max(align).max(8), 1)
                } else {
                    Layout::from_size_align(asked, align)
                }
                .map_err(|_| Error::OutOfMemory { bytes: asked })?;
                let p = NonNull::new(backend::malloc::alloc(layout))
                    .ok_or(Error::OutOfMemory { bytes: asked })?;
                // SAFETY: a live block just allocated for `layout.size()`.
                let usable = unsafe { backend::malloc::usable_size(p.as_ptr(), layout.size()) };
                if usable > self.capacity - heap {
                    // SAFETY: the block just allocated, never handed out.
                    unsafe { backend::malloc::free(p.as_ptr()) };
                    return Err(over(usable));
                }
                (p, usable)
            }
            #[cfg(feature = "jemalloc")]
            Source::Jemalloc(j) => {
                let usable = j.usable_size(asked, align);
                if usable == 0 {
                    return Err(Error::OutOfMemory { bytes: asked });
                }
                if usable > self.capacity - heap {
                    return Err(over(usable));
                }
                let p = NonNull::new(j.alloc(asked, align))
                    .ok_or(Error::OutOfMemory { bytes: asked })?;
                (p, usable)
            }
        };
        self.live.insert_new(p.as_ptr(), usable);
        Ok((p, usable))
    }

    /// Frees `ptr` if it is a live chunk of ours; otherwise reports it (a
    /// double free shows as a foreign pointer: the address is no longer
    /// ours) and changes nothing.
    ///
    /// # Safety
    /// If `ptr` is a live chunk of this arena, it is not used afterwards.
    pub unsafe fn free(&mut self, ptr: *mut u8) -> Result<(), Error> {
        let Some(usable) = self.live.remove(ptr as usize) else {
            return Err(Error::ForeignPointer { addr: ptr as usize });
        };
        // SAFETY: `ptr` was a live chunk of ours (it was in the set), made
        // by this source, with this usable size; the caller gives it up.
        unsafe { self.release_chunk(ptr, usable) };
        Ok(())
    }

    /// # Safety
    /// `ptr` is a chunk of this source with usable size `usable`, no longer
    /// in the set and not used afterwards.
    unsafe fn release_chunk(&self, ptr: *mut u8, usable: usize) {
        match &self.source {
            // SAFETY: a block of `backend::malloc` (contract).
            Source::Malloc => unsafe { backend::malloc::free(ptr) },
            #[cfg(feature = "jemalloc")]
            // SAFETY: a block of this jemalloc arena of that usable size.
            Source::Jemalloc(j) => unsafe { j.free(ptr, usable) },
        }
        let _ = usable;
    }

    /// The usable size of a live chunk of ours.
    pub fn chunk_size(&self, ptr: *const u8) -> Result<usize, Error> {
        self.live
            .get(ptr as usize)
            .ok_or(Error::ForeignPointer { addr: ptr as usize })
    }

    /// Sum of the usable sizes of the live chunks.
    pub fn held(&self) -> usize {
        self.live.bytes()
    }

    /// Bytes of the chunk set's table.
    pub fn bookkeeping(&self) -> usize {
        self.live.table_bytes()
    }

    /// The live chunks grouped by the flist slab their usable size falls in.
    pub fn utilization(&self) -> Vec<SlabUse> {
        let table = slabs();
        let mut counts: std::collections::BTreeMap<usize, usize> = Default::default();
        for (_, usable) in self.live.iter() {
            let i = table.partition_point(|&s| s < usable).min(table.len() - 1);
            *counts.entry(table[i]).or_default() += 1;
        }
        counts
            .into_iter()
            .map(|(slab, n)| SlabUse {
                slab,
                in_use: n,
                held: n,
                ratio: 1.0,
            })
            .collect()
    }

    /// What `trim` can do: jemalloc purges the arena's unused dirty pages;
    /// glibc's heap is the whole process's, so nothing. The arena holds no
    /// empty chunk, so `heap` does not change.
    pub fn trim(&self) {
        match &self.source {
            Source::Malloc => {}
            #[cfg(feature = "jemalloc")]
            Source::Jemalloc(j) => j.purge(),
        }
    }
}

impl Drop for Backed {
    /// The release: malloc frees every live chunk (a walk of the set);
    /// jemalloc destroys the arena, discarding them all at once.
    fn drop(&mut self) {
        match core::mem::replace(&mut self.source, Source::Malloc) {
            Source::Malloc => {
                for (p, _) in self.live.iter() {
                    // SAFETY: every chunk in the set is a live block of
                    // `backend::malloc`, unusable once the arena is gone.
                    unsafe { backend::malloc::free(p) };
                }
            }
            #[cfg(feature = "jemalloc")]
            // SAFETY: the arena is being dropped, so no chunk of it is used
            // afterwards (the borrow checker ties users to its lifetime).
            Source::Jemalloc(j) => unsafe { j.destroy() },
        }
    }
}
