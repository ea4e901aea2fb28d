//! Pages from the operating system. Never malloc: the allocator must work
//! while it *is* malloc.
//!
//! Real builds use `mmap`/`munmap`/`madvise`. Under miri, whose `mmap` lacks
//! `madvise`, partial `munmap` and reservations, the same functions are backed
//! by aligned, zeroed allocations so every layer above runs unchanged.

use core::ptr::NonNull;

/// Maps `size` bytes aligned to `align` (a power of two, a multiple of the
/// page), zero-filled, readable and writable. `None` when the OS refuses.
pub(crate) fn map_aligned(size: usize, align: usize) -> Option<NonNull<u8>> {
    imp::map_aligned(size, align)
}

/// Returns a mapping made by [`map_aligned`] with the same `size`/`align`.
///
/// # Safety
/// `ptr`/`size`/`align` describe one live mapping from `map_aligned`; no
/// reference into it is used afterwards.
pub(crate) unsafe fn unmap(ptr: NonNull<u8>, size: usize, align: usize) {
    // SAFETY: the caller passes one whole live mapping from map_aligned,
    // which is what both implementations release.
    unsafe { imp::unmap(ptr, size, align) }
}

/// Gives the physical pages of `[ptr, ptr+size)` back; the range stays
/// mapped and reads as zero afterwards (`MADV_DONTNEED`, not `MADV_FREE`, so
/// RSS really drops).
///
/// # Safety
/// The range is page-aligned, inside one live mapping, and holds no data
/// anyone still needs.
pub(crate) unsafe fn decommit(ptr: NonNull<u8>, size: usize) {
    // SAFETY: the caller passes a page-aligned range inside a live mapping
    // whose contents are dead, which is what both implementations need.
    unsafe { imp::decommit(ptr, size) }
}

#[cfg(not(miri))]
mod imp {
    use core::ptr::{null_mut, NonNull};

    pub(super) fn map_aligned(size: usize, align: usize) -> Option<NonNull<u8>> {
        let over = size.checked_add(align)?;
        // SAFETY: an anonymous private mapping at an address of the kernel's
        // choosing touches no existing memory.
        let raw = unsafe {
            libc::mmap(
                null_mut(),
                over,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if raw == libc::MAP_FAILED {
            return None;
        }
        let start = raw as usize;
        let aligned = (start + align - 1) & !(align - 1);
        let head = aligned - start;
        let tail = over - head - size;
        // SAFETY: head and tail are page-aligned sub-ranges of the mapping
        // just made, outside the part we keep.
        unsafe {
            if head > 0 {
                libc::munmap(raw, head);
            }
            if tail > 0 {
                libc::munmap((aligned + size) as *mut libc::c_void, tail);
            }
        }
        NonNull::new(raw.cast::<u8>().wrapping_add(head))
    }

    pub(super) unsafe fn unmap(ptr: NonNull<u8>, size: usize, _align: usize) {
        // SAFETY: caller passes one whole mapping of ours.
        unsafe { libc::munmap(ptr.as_ptr().cast(), size) };
    }

    pub(super) unsafe fn decommit(ptr: NonNull<u8>, size: usize) {
        // SAFETY: caller passes a page-aligned range inside a mapping of ours
        // whose contents are dead.
        unsafe { libc::madvise(ptr.as_ptr().cast(), size, libc::MADV_DONTNEED) };
    }
}

#[cfg(miri)]
mod imp {
    use core::ptr::NonNull;
    use std::alloc::{alloc_zeroed, dealloc, Layout};

    pub(super) fn map_aligned(size: usize, align: usize) -> Option<NonNull<u8>> {
        let layout = Layout::from_size_align(size, align).ok()?;
        // SAFETY: size is non-zero (callers map whole pages).
        NonNull::new(unsafe { alloc_zeroed(layout) })
    }

    pub(super) unsafe fn unmap(ptr: NonNull<u8>, size: usize, align: usize) {
        // SAFETY: made by map_aligned with this very layout.
        unsafe { dealloc(ptr.as_ptr(), Layout::from_size_align_unchecked(size, align)) }
    }

    pub(super) unsafe fn decommit(ptr: NonNull<u8>, size: usize) {
        // SAFETY: the range is inside a live allocation of ours (contract).
        unsafe { ptr.as_ptr().write_bytes(0, size) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn map_is_aligned_zeroed_and_decommit_zeroes() {
        let align = 1 << 16;
        let size = 4 * 4096;
        let p = map_aligned(size, align).unwrap();
        assert_eq!(p.as_ptr() as usize % align, 0);
        // SAFETY: p maps `size` writable bytes.
        unsafe {
            assert_eq!(*p.as_ptr().add(size - 1), 0);
            p.as_ptr().write_bytes(0xAB, size);
            decommit(p, size);
            assert_eq!(*p.as_ptr().add(100), 0);
            unmap(p, size, align);
        }
    }
}
