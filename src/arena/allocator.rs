//! `&Arena` as an `allocator_api2` allocator, so arena-backed collections
//! (`allocator_api2::vec::Vec::new_in(&arena)`) work on stable Rust.

use super::Arena;
use crate::size_class;
use allocator_api2::alloc::{AllocError, Allocator};
use core::alloc::Layout;
use core::ptr::NonNull;

impl Arena {
    /// The slab index a block of `layout` sits in (the same one it was
    /// allocated in, since the block's size lies between the requested size
    /// and its slab).
    fn slab_of(layout: Layout) -> Option<usize> {
        size_class::slab_index_aligned(layout.size(), layout.align())
    }

    /// # Safety
    /// `ptr` is a live block of this arena fitting `old`.
    unsafe fn resize(
        &self,
        ptr: NonNull<u8>,
        old: Layout,
        new: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        let old_idx = Self::slab_of(old).ok_or(AllocError)?;
        let new_idx = Self::slab_of(new).ok_or(AllocError)?;
        let core = self.core();
        if old_idx == new_idx && new.size() >= core.min_size && new.size() <= core.max_size {
            // Same slab: its chunks are aligned to `new.align()` too.
            let len = size_class::slab_size(old_idx);
            return Ok(NonNull::slice_from_raw_parts(ptr, len));
        }
        let (fresh, idx) = core.alloc_layout(new).map_err(|_| AllocError)?;
        // SAFETY: both blocks are live and distinct; we copy the bytes the
        // caller may rely on (the smaller of the two sizes), then free the
        // old block, which the caller hands over to us.
        unsafe {
            core::ptr::copy_nonoverlapping(
                ptr.as_ptr(),
                fresh.as_ptr(),
                old.size().min(new.size()),
            );
            self.free(ptr.as_ptr());
        }
        Ok(NonNull::slice_from_raw_parts(
            fresh,
            size_class::slab_size(idx),
        ))
    }
}

// SAFETY: blocks are chunks that stay valid until freed or until the arena is
// dropped, which the `&Arena` lifetime forbids while the allocator is in use;
// `resize` keeps contents; a block's slab is derived from any layout that fits
// it, so `deallocate`/`grow`/`shrink` find the right chunk.
unsafe impl Allocator for &Arena {
    fn allocate(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        let (p, idx) = self.core().alloc_layout(layout).map_err(|_| AllocError)?;
        Ok(NonNull::slice_from_raw_parts(p, size_class::slab_size(idx)))
    }

    unsafe fn deallocate(&self, ptr: NonNull<u8>, _layout: Layout) {
        // SAFETY: the caller hands over a live block of this arena.
        unsafe { self.free(ptr.as_ptr()) }
    }

    unsafe fn grow(
        &self,
        ptr: NonNull<u8>,
        old: Layout,
        new: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        // SAFETY: forwarded caller contract.
        unsafe { self.resize(ptr, old, new) }
    }

    unsafe fn grow_zeroed(
        &self,
        ptr: NonNull<u8>,
        old: Layout,
        new: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        // SAFETY: forwarded caller contract.
        let block = unsafe { self.resize(ptr, old, new)? };
        // SAFETY: the block holds at least `new.size()` bytes.
        unsafe {
            block
                .cast::<u8>()
                .as_ptr()
                .add(old.size())
                .write_bytes(0, new.size() - old.size())
        };
        Ok(block)
    }

    unsafe fn shrink(
        &self,
        ptr: NonNull<u8>,
        old: Layout,
        new: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        // SAFETY: forwarded caller contract.
        unsafe { self.resize(ptr, old, new) }
    }
}
