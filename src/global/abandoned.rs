//! The global list of abandoned segments (their thread exited while they
//! held live chunks) and the spin lock that guards it and every move of a
//! segment's ownership to or from null.

use crate::list::List;
use crate::segment::{AbandonedList, Segment};
use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, Ordering};

/// A tiny spin lock: held for a few list operations, never across an
/// allocation; the fork handlers take it.
pub(crate) struct SpinLock(AtomicBool);

impl SpinLock {
    pub(crate) const fn new() -> SpinLock {
        SpinLock(AtomicBool::new(false))
    }

    pub(crate) fn lock(&self) {
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

    pub(crate) fn unlock(&self) {
        self.0.store(false, Ordering::Release);
    }
}

/// A value guarded by a [`SpinLock`].
pub(crate) struct Locked<T> {
    pub(crate) lock: SpinLock,
    value: UnsafeCell<T>,
}

// SAFETY: the value is reached only through `with`, which holds the lock, so
// one thread at a time touches it; the values kept here are lists of raw
// pointers to allocator metadata that any thread may use under the lock.
unsafe impl<T> Sync for Locked<T> {}

impl<T> Locked<T> {
    pub(crate) const fn new(value: T) -> Locked<T> {
        Locked {
            lock: SpinLock::new(),
            value: UnsafeCell::new(value),
        }
    }

    /// Runs `f` on the value with the lock held.
    pub(crate) fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        self.lock.lock();
        // SAFETY: we hold the lock, so no other `&mut` to the value exists.
        let r = f(unsafe { &mut *self.value.get() });
        self.lock.unlock();
        r
    }
}

/// Segments whose thread exited while they held live chunks, owner null.
/// Invariant: a segment is on this list iff its owner is null.
pub(crate) static ABANDONED: Locked<List<AbandonedList>> = Locked::new(List::NEW);

/// Pops an abandoned segment and makes `owner` its owner.
pub(crate) fn pop_to(owner: *mut ()) -> Option<*mut Segment> {
    ABANDONED.with(|list| {
        // SAFETY: abandoned segments are live (only an owner unmaps a
        // segment); we hold the lock, under which owners change.
        unsafe {
            let seg = list.pop_front();
            if seg.is_null() {
                return None;
            }
            (*seg).owner.store(owner, Ordering::Release);
            Some(seg)
        }
    })
}

/// Makes `seg` abandoned: owner null, on the list.
///
/// # Safety
/// `seg` is a live segment its owner gives up, on no owner's list, with its
/// pools on no list.
pub(crate) unsafe fn push(seg: *mut Segment) {
    ABANDONED.with(|list| {
        // SAFETY: contract; we hold the lock.
        unsafe {
            (*seg).owner.store(core::ptr::null_mut(), Ordering::Release);
            list.push_front(seg);
        }
    })
}

/// Adopts `seg` for `owner` if it is still abandoned (a free into it from a
/// thread with a heap); false if someone else took it first.
///
/// # Safety
/// `seg` is a live segment (the caller holds a live chunk of it).
pub(crate) unsafe fn take_if_abandoned(seg: *mut Segment, owner: *mut ()) -> bool {
    ABANDONED.with(|list| {
        // SAFETY: contract; we hold the lock, so the owner and the list
        // agree (the invariant).
        unsafe {
            if !(*seg).owner.load(Ordering::Relaxed).is_null() {
                return false;
            }
            list.remove(seg);
            (*seg).owner.store(owner, Ordering::Release);
            true
        }
    })
}
