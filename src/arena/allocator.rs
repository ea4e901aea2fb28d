//! `&Arena` as an `allocator_api2` allocator, so arena-backed collections
//! (`allocator_api2::vec::Vec::new_in(&arena)`) work on stable Rust.
//!
//! Rules of this impl, on top of the `Allocator` contract:
//!
//! * **Zero size never touches the arena.** `allocate` and `allocate_zeroed`
//!   of a size-0 layout return a dangling pointer whose address is
//!   `layout.align()`, with length 0, whatever the arena's chunk range;
//!   `deallocate` of a size-0 layout does nothing; `grow` / `grow_zeroed` from
//!   size 0 only allocate (the old pointer is neither read nor freed);
//!   `shrink` to size 0 frees the block and returns such a dangling pointer.
//!   `allocator_api2`'s `Box` deallocates the dangling pointer of a zero-size
//!   value (`Box<()>`, an empty boxed slice), which [`Arena::free`] would
//!   reject as foreign. A size-0 layout therefore fits only a block this impl
//!   returned for size 0: a chunk from [`Arena::alloc(0)`](Arena::alloc),
//!   which stays a real chunk, goes back through [`Arena::free`].
//! * **Returned length.** A non-empty block is a whole chunk: the returned
//!   slice is as long as its slab ([`Arena::chunk_size`]), which may exceed
//!   the requested size, and the caller may use all of it. So
//!   `allocate_zeroed` zeroes the whole slice, and `grow_zeroed` zeroes from
//!   `old.size()` to the end of the returned slice (an in-place grow keeps
//!   the bytes the block held past `old.size()`, a move lands on a reused
//!   chunk). `grow` and `shrink` keep the first `min(old.size(), new.size())`
//!   bytes, all a caller may rely on; they stay in place when the new layout
//!   maps to the block's slab and is in the chunk range.
//! * **Other backends.** On an arena over malloc or jemalloc a chunk is as
//!   long as its usable size ([`Arena::chunk_size`]); `grow` and `shrink`
//!   stay in place when the new layout fits that size, its alignment and
//!   the chunk range, and move otherwise. The zero-size rules are the same.
//!
//! The borrow of the arena that a collection holds keeps it alive: it cannot
//! be released while a `Vec<_, &Arena>` lives, on any backend.
//!
//! ```compile_fail
//! use allocator_api2::vec::Vec;
//! use flistalloc::{Arena, Backend};
//! let arena = Arena::builder(1 << 20).backend(Backend::Malloc).build();
//! let mut v = Vec::new_in(&arena);
//! v.push(1u32);
//! arena.release(); // error[E0505]: cannot move out of `arena` while borrowed
//! v.push(2);
//! ```
//!
//! The same program without the release compiles and runs:
//!
//! ```
//! use allocator_api2::vec::Vec;
//! use flistalloc::{Arena, Backend};
//! let arena = Arena::builder(1 << 20).backend(Backend::Malloc).build();
//! let mut v = Vec::new_in(&arena);
//! v.push(1u32);
//! v.push(2);
//! drop(v);
//! arena.release();
//! ```

use super::Arena;
use crate::size_class;
use allocator_api2::alloc::{AllocError, Allocator};
use core::alloc::Layout;
use core::num::NonZeroUsize;
use core::ptr::NonNull;

/// The block of a zero-size `layout`: address `layout.align()` (non-null and
/// aligned), no provenance, length 0. It is never read, written or freed.
fn dangling(layout: Layout) -> NonNull<[u8]> {
    let addr = NonZeroUsize::new(layout.align()).expect("a Layout's alignment is nonzero");
    NonNull::slice_from_raw_parts(NonNull::without_provenance(addr), 0)
}

impl Arena {
    /// The slab index a block of `layout` sits in (the same one it was
    /// allocated in, since the block's size lies between the requested size
    /// and its slab).
    fn slab_of(layout: Layout) -> Option<usize> {
        size_class::slab_index_aligned(layout.size(), layout.align())
    }

    /// A whole chunk for a non-zero-size `layout`, as long as its slab (on
    /// malloc and jemalloc: its usable size).
    fn allocate_chunk(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        debug_assert!(layout.size() != 0);
        let (p, len) = self.alloc_with_len(layout).map_err(|_| AllocError)?;
        Ok(NonNull::slice_from_raw_parts(p, len))
    }

    /// Moves or keeps a chunk for `new`; the result is as long as its slab
    /// and starts with the first `min(old.size(), new.size())` bytes of the
    /// block. On error the block is unchanged and still the caller's.
    ///
    /// # Safety
    /// `ptr` is a live chunk of this arena that `old` fits (`old.size()`
    /// between the size it was last requested with and its slab,
    /// `old.align()` the alignment it was requested with), and is not used
    /// after an `Ok`; `old.size()` and `new.size()` are both non-zero.
    unsafe fn resize(
        &self,
        ptr: NonNull<u8>,
        old: Layout,
        new: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        debug_assert!(old.size() != 0 && new.size() != 0);
        // The core's borrow ends before `alloc_with_len` and `self.free`
        // below take it again.
        {
            let core = self.core();
            match &core.policy.backed {
                None => {
                    let old_idx = Self::slab_of(old).ok_or(AllocError)?;
                    let new_idx = Self::slab_of(new).ok_or(AllocError)?;
                    if old_idx == new_idx
                        && new.size() >= core.min_size()
                        && new.size() <= core.max_size()
                    {
                        // Same slab: its chunks are aligned to `new.align()`
                        // too, and the block is a whole chunk of that slab.
                        let len = size_class::slab_size(old_idx);
                        return Ok(NonNull::slice_from_raw_parts(ptr, len));
                    }
                }
                Some(b) => {
                    // The set knows the block's usable size: it stays when
                    // the new layout fits it and the chunk range, unless it
                    // would use less than half of it (then a shrink moves
                    // to a smaller block, so `shrink_to_fit` gives memory
                    // and capacity back, as on flist).
                    let len = b.chunk_size(ptr.as_ptr()).map_err(|_| AllocError)?;
                    if new.size() <= len
                        && new.size() >= len / 2
                        && (ptr.as_ptr() as usize).is_multiple_of(new.align())
                        && new.size() >= b.min()
                        && new.size() <= b.max()
                    {
                        return Ok(NonNull::slice_from_raw_parts(ptr, len));
                    }
                }
            }
        }
        let (fresh, len) = self.alloc_with_len(new).map_err(|_| AllocError)?;
        // SAFETY: `ptr` is a live chunk holding at least `old.size()` bytes
        // (`old` fits it) and `fresh` a chunk just taken holding at least
        // `new.size()`, so both are valid for the smaller of the two; they
        // are distinct chunks, so the ranges do not overlap. `ptr` is then
        // freed: a chunk of this arena, live until now, and the caller hands
        // it over on success.
        unsafe {
            core::ptr::copy_nonoverlapping(
                ptr.as_ptr(),
                fresh.as_ptr(),
                old.size().min(new.size()),
            );
            self.free(ptr.as_ptr());
        }
        Ok(NonNull::slice_from_raw_parts(fresh, len))
    }
}

/// Zeroes `block[from..]` (nothing when `from >= block.len()`).
///
/// # Safety
/// `block` is valid for writes of `block.len()` bytes.
unsafe fn zero_from(block: NonNull<[u8]>, from: usize) {
    let from = from.min(block.len());
    // SAFETY: `from <= block.len()`, so `from..block.len()` lies inside the
    // writable block (caller); a count of 0 writes nothing.
    unsafe {
        block
            .cast::<u8>()
            .as_ptr()
            .add(from)
            .write_bytes(0, block.len() - from)
    }
}

// SAFETY: a non-empty block is a chunk that stays valid until freed or until
// the arena is dropped, which the `&Arena` lifetime forbids while the
// allocator is in use, and is as long as the returned slice (its slab); a
// zero-size block is a dangling aligned pointer with length 0, never handed
// to `Arena::free`. A non-zero size fits only chunks and size 0 only dangling
// blocks, so `deallocate`/`grow`/`shrink` tell them apart by `size() == 0`.
// A block's slab follows from any layout that fits it, so `resize` finds the
// right chunk; it keeps the first `min(old, new)` bytes. `&Arena` is a
// reference: copies and clones use the same arena.
unsafe impl Allocator for &Arena {
    /// Size 0: a dangling pointer at `layout.align()`, length 0, without
    /// touching the arena. Otherwise a whole chunk, as long as its slab.
    fn allocate(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        if layout.size() == 0 {
            return Ok(dangling(layout));
        }
        self.allocate_chunk(layout)
    }

    /// As [`allocate`](Allocator::allocate), with the whole returned slice
    /// zeroed (not only `layout.size()` bytes).
    fn allocate_zeroed(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        if layout.size() == 0 {
            return Ok(dangling(layout));
        }
        let block = self.allocate_chunk(layout)?;
        // SAFETY: `block` is a chunk just taken, `block.len()` bytes (its
        // slab) long and ours to write.
        unsafe { zero_from(block, 0) };
        Ok(block)
    }

    /// Size 0 is a no-op (the block is dangling); otherwise frees the chunk.
    unsafe fn deallocate(&self, ptr: NonNull<u8>, layout: Layout) {
        if layout.size() == 0 {
            return;
        }
        // SAFETY: `layout` fits the block (caller) and is not size 0, so the
        // block is a live chunk of this arena (only size-0 blocks are
        // dangling), which the caller gives up.
        unsafe { self.free(ptr.as_ptr()) }
    }

    /// From size 0: a plain allocation (the dangling old pointer is neither
    /// read nor freed). Otherwise in place within the slab, or moved.
    unsafe fn grow(
        &self,
        ptr: NonNull<u8>,
        old: Layout,
        new: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        debug_assert!(new.size() >= old.size());
        if old.size() == 0 {
            return self.allocate(new);
        }
        // SAFETY: `old` fits the block (caller) and is not size 0, so `ptr`
        // is a live chunk of this arena; `new.size() >= old.size() > 0`
        // (grow's precondition); the caller gives `ptr` up on success.
        unsafe { self.resize(ptr, old, new) }
    }

    /// As [`grow`](Allocator::grow), then zeroes the returned slice from
    /// `old.size()` to its end: up to the returned length, not `new.size()`.
    unsafe fn grow_zeroed(
        &self,
        ptr: NonNull<u8>,
        old: Layout,
        new: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        debug_assert!(new.size() >= old.size());
        if old.size() == 0 {
            return self.allocate_zeroed(new);
        }
        // SAFETY: as in `grow`: `ptr` is a live chunk that `old` fits, both
        // sizes are non-zero, and the caller gives `ptr` up on success.
        let block = unsafe { self.resize(ptr, old, new)? };
        // SAFETY: `block` is the chunk `resize` returned, `block.len()` bytes
        // long and now the caller's, i.e. ours to write.
        unsafe { zero_from(block, old.size()) };
        Ok(block)
    }

    /// To size 0: frees the block (if it is a chunk) and returns a dangling
    /// pointer. Otherwise in place within the slab, or moved.
    unsafe fn shrink(
        &self,
        ptr: NonNull<u8>,
        old: Layout,
        new: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        debug_assert!(new.size() <= old.size());
        if new.size() == 0 {
            // SAFETY: `old` fits the block and the caller gives it up;
            // `deallocate` frees it if it is a chunk (`old.size() > 0`) and
            // does nothing for a dangling size-0 block.
            unsafe { self.deallocate(ptr, old) };
            return Ok(dangling(new));
        }
        // SAFETY: `old.size() >= new.size() > 0` (shrink's precondition), so
        // `old`, which fits the block, makes `ptr` a live chunk of this
        // arena; the caller gives `ptr` up on success.
        unsafe { self.resize(ptr, old, new) }
    }
}
