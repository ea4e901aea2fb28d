//! What a thread heap does beyond an `Arena`'s core: collecting chunks other
//! threads freed, giving empty pools back past a small reserve, abandoning its
//! segments when its thread exits, and adopting abandoned ones.

use super::{lock_abandoned, Abandoned};
use crate::arena::{link_pool, Core, NO_HOT_SEGMENT};
use crate::pool::Pool;
use crate::segment::{Segment, POOLS_PER_SEGMENT};
use crate::segment_map::SEGMENT_SIZE;
use crate::stats;
use core::ptr::null_mut;
use core::sync::atomic::Ordering;

/// Empty pools a heap keeps for reuse before it hands the oldest back to the
/// OS: the hysteresis that stops a slab oscillating around a pool boundary
/// (or a `Vec` growing through many slabs) from mapping and unmapping at
/// every step. At most this many pools, and at most
/// [`EMPTY_RESERVE_BYTES`] in them, per thread.
pub(crate) const EMPTY_RESERVE: usize = 512;
/// Byte cap of the empty-pool reserve of one thread.
pub(crate) const EMPTY_RESERVE_BYTES: usize = 8 << 20;

impl Core {
    /// Called when a local free leaves `pool` with no live chunk.
    ///
    /// # Safety
    /// `pool` is a live pool of this heap.
    pub(crate) unsafe fn pool_emptied(&mut self, pool: *mut Pool) {
        // SAFETY: contract; queue members are live pools of this heap.
        unsafe {
            if (*pool).in_empty {
                return;
            }
            (*pool).in_empty = true;
            (*pool).empty_next = null_mut();
            let g = &mut self.global;
            if g.empty_tail.is_null() {
                g.empty_head = pool;
            } else {
                (*g.empty_tail).empty_next = pool;
            }
            g.empty_tail = pool;
            g.empty_len += 1;
            g.empty_bytes += (*pool).bytes();
            stats::RESERVE_BYTES.fetch_add((*pool).bytes() as isize, Ordering::Relaxed);
            // Pop oldest first until both bounds hold again: one pool out per
            // pool in is not enough once the oldest pools are smaller than
            // the newest. A popped pool that was reused since it was queued
            // is just dropped from the queue (it is not empty any more).
            while self.global.empty_len > EMPTY_RESERVE
                || self.global.empty_bytes > EMPTY_RESERVE_BYTES
            {
                let p = self.pop_empty();
                if (*p).used == 0 && (*p).remote.load(Ordering::Relaxed).is_null() {
                    self.release_and_maybe_unmap(p);
                }
            }
        }
    }

    /// # Safety
    /// The queue is not empty.
    unsafe fn pop_empty(&mut self) -> *mut Pool {
        let g = &mut self.global;
        let p = g.empty_head;
        // SAFETY: contract; queue members are live pools.
        unsafe {
            g.empty_head = (*p).empty_next;
            (*p).empty_next = null_mut();
            (*p).in_empty = false;
            g.empty_bytes -= (*p).bytes();
            stats::RESERVE_BYTES.fetch_sub((*p).bytes() as isize, Ordering::Relaxed);
        }
        if g.empty_head.is_null() {
            g.empty_tail = null_mut();
        }
        g.empty_len -= 1;
        p
    }

    /// Returns every pool of the empty reserve to the OS now; true if any
    /// was released.
    pub(crate) fn purge_empty(&mut self) -> bool {
        let mut released = false;
        while !self.global.empty_head.is_null() {
            // SAFETY: the queue is not empty; its members are live pools of
            // ours; a popped pool that is still empty may be released.
            unsafe {
                let p = self.pop_empty();
                if (*p).used == 0 && (*p).remote.load(Ordering::Relaxed).is_null() {
                    self.release_and_maybe_unmap(p);
                    released = true;
                }
            }
        }
        released
    }

    pub(crate) fn clear_empty_queue(&mut self) {
        while !self.global.empty_head.is_null() {
            // SAFETY: the queue is not empty.
            unsafe { self.pop_empty() };
        }
    }

    /// Releases an empty pool, and its segment if that is now empty.
    ///
    /// # Safety
    /// `p` is a live, empty pool of this heap, not in the empty queue.
    unsafe fn release_and_maybe_unmap(&mut self, p: *mut Pool) {
        // SAFETY: contract. A pool's chunks start inside its segment's first
        // granule for normal segments, and right after the header of a huge
        // one, so masking the start finds the header.
        unsafe {
            let base = (*p).start as usize & !(SEGMENT_SIZE - 1);
            let seg = Segment::from_addr(base);
            let slot =
                (p as usize - Segment::pool_ptr(seg, 0) as usize) / core::mem::size_of::<Pool>();
            self.release_pool(seg, slot);
            if (*seg).live_pools == 0 {
                self.drop_segment(seg);
            }
        }
    }

    /// Looks for chunks freed by other threads, then for an abandoned segment
    /// to adopt. True when something was found.
    pub(crate) fn global_refill(&mut self) -> bool {
        if self.global.remote_flag.load(Ordering::Relaxed)
            && self.global.remote_flag.swap(false, Ordering::Acquire)
        {
            let mut found = false;
            let mut emptied = [null_mut::<Pool>(); 64];
            let mut n_empty = 0;
            let mut seg = self.segments;
            while !seg.is_null() {
                // SAFETY: live segments and pools of ours; nothing is released
                // during the walk (empties are queued after it).
                unsafe {
                    for slot in 0..POOLS_PER_SEGMENT {
                        let p = Segment::pool_ptr(seg, slot);
                        if (*p).live && (*p).collect_remote() > 0 {
                            found = true;
                            if !(*p).in_avail {
                                link_pool(self.slabs.add((*p).slab as usize - self.lo), p);
                            }
                            if (*p).used == 0 && !(*p).in_empty && n_empty < emptied.len() {
                                emptied[n_empty] = p;
                                n_empty += 1;
                            }
                        }
                    }
                    seg = (*seg).next;
                }
            }
            // SAFETY: each is a live pool of ours: queueing releases only
            // pools already in the queue, and never unmaps a segment that
            // still has a live pool, such as the ones listed here.
            unsafe { self.queue_empties(&emptied[..n_empty]) };
            if found {
                return true;
            }
        }
        let me = self as *mut Core;
        let seg = lock_abandoned().pop_to(me);
        match seg {
            Some(seg) => {
                // SAFETY: popped from the abandoned list with us as owner.
                unsafe { self.adopt(seg) };
                true
            }
            None => false,
        }
    }

    /// Queues pools found empty during a walk.
    ///
    /// # Safety
    /// Each pool is a live pool of this heap that was not in the queue when
    /// listed. Queueing pops (and may release) only pools already queued, so
    /// the listed ones stay live, and so do their segments.
    unsafe fn queue_empties(&mut self, pools: &[*mut Pool]) {
        for &p in pools {
            // SAFETY: contract.
            unsafe {
                debug_assert!((*p).live && !(*p).in_empty);
                if (*p).used == 0 {
                    self.pool_emptied(p);
                }
            }
        }
    }

    /// Takes a segment that was abandoned (its owner already set to us under
    /// the lock): collect what other threads freed into it, link its pools.
    ///
    /// # Safety
    /// `seg` was removed from the abandoned list with its owner set to `self`.
    pub(crate) unsafe fn adopt(&mut self, seg: *mut Segment) {
        // SAFETY: the segment is now ours alone (contract).
        unsafe {
            self.push_segment(seg);
            let mut pools = 0;
            let mut emptied = [null_mut::<Pool>(); POOLS_PER_SEGMENT];
            let mut n_empty = 0;
            for slot in 0..POOLS_PER_SEGMENT {
                let p = Segment::pool_ptr(seg, slot);
                if !(*p).live {
                    continue;
                }
                pools += 1;
                (*p).collect_remote();
                (*self.slabs.add((*p).slab as usize - self.lo)).held += 1;
                self.heap += (*p).bytes();
                if (*p).free.is_null() && (*p).fresh >= (*p).end {
                    continue;
                }
                link_pool(self.slabs.add((*p).slab as usize - self.lo), p);
                if (*p).used == 0 {
                    emptied[n_empty] = p;
                    n_empty += 1;
                }
            }
            stats::POOLS_ABANDONED.fetch_sub(pools, Ordering::Relaxed);
            // Queue empties after the walk: queueing may release pools.
            self.queue_empties(&emptied[..n_empty]);
        }
    }

    /// At thread exit: collect remote frees, return empty pools and
    /// segments, abandon the rest to other threads, and reset to idle.
    pub(crate) fn abandon(&mut self) {
        self.global.hot_seg = NO_HOT_SEGMENT;
        self.clear_empty_queue();
        // Empty every slab's list of pools with room first: those lists link
        // pools across segments, so unlinking later (when releasing an empty
        // pool) would write into segments already handed to other threads.
        for i in 0..=(self.hi - self.lo) {
            // SAFETY: the slab table has hi - lo + 1 entries.
            unsafe { (*self.slabs.add(i)).avail = null_mut() };
        }
        let mut s = self.segments;
        while !s.is_null() {
            // SAFETY: live segments of ours, not yet shared.
            unsafe {
                for slot in 0..POOLS_PER_SEGMENT {
                    let p = Segment::pool_ptr(s, slot);
                    (*p).in_avail = false;
                    (*p).next = null_mut();
                    (*p).prev = null_mut();
                }
                s = (*s).next;
            }
        }
        // Detach the whole list first: each segment is then either unmapped
        // or linked into the abandoned list, never both lists at once.
        let mut seg = self.segments;
        self.segments = null_mut();
        self.segment_count = 0;
        while !seg.is_null() {
            // SAFETY: live segments of ours, detached from our list; `next`
            // is read before the segment is unmapped or relinked.
            unsafe {
                let next = (*seg).next;
                for slot in 0..POOLS_PER_SEGMENT {
                    let p = Segment::pool_ptr(seg, slot);
                    if (*p).live {
                        (*p).collect_remote();
                        if (*p).used == 0 {
                            self.release_pool(seg, slot);
                        }
                    }
                }
                if (*seg).live_pools == 0 {
                    Segment::destroy(core::ptr::NonNull::new_unchecked(seg));
                } else {
                    for slot in 0..POOLS_PER_SEGMENT {
                        let p = Segment::pool_ptr(seg, slot);
                        if (*p).live {
                            (*p).in_avail = false;
                            (*p).next = null_mut();
                            (*p).prev = null_mut();
                            self.heap -= (*p).bytes();
                        }
                    }
                    stats::POOLS_ABANDONED.fetch_add((*seg).live_pools as isize, Ordering::Relaxed);
                    let mut list = lock_abandoned();
                    (*seg).owner.store(null_mut(), Ordering::Release);
                    list.push(seg);
                }
                seg = next;
            }
        }
        self.segments = null_mut();
        self.segment_count = 0;
        for i in 0..=(self.hi - self.lo) {
            // SAFETY: the slab table has hi - lo + 1 entries.
            unsafe {
                let st = self.slabs.add(i);
                (*st).avail = null_mut();
                (*st).held = 0;
            }
        }
        debug_assert_eq!(self.heap, 0);
        self.heap = 0;
        self.global.remote_flag.store(false, Ordering::Relaxed);
    }
}

impl Abandoned {
    /// Pops a segment and makes `owner` its owner (under the lock).
    pub(crate) fn pop_to(&mut self, owner: *mut Core) -> Option<*mut Segment> {
        let seg = self.head;
        if seg.is_null() {
            return None;
        }
        self.remove(seg);
        // SAFETY: a live abandoned segment; we hold the lock.
        unsafe { (*seg).owner.store(owner.cast(), Ordering::Release) };
        Some(seg)
    }

    pub(crate) fn push(&mut self, seg: *mut Segment) {
        // SAFETY: `seg` is live and in no other list; we hold the lock.
        unsafe {
            (*seg).prev = null_mut();
            (*seg).next = self.head;
            if !self.head.is_null() {
                (*self.head).prev = seg;
            }
        }
        self.head = seg;
    }

    /// Removes `seg` (which must be in the list).
    pub(crate) fn remove(&mut self, seg: *mut Segment) {
        // SAFETY: `seg` and its neighbours are in this list; we hold the lock.
        unsafe {
            let (prev, next) = ((*seg).prev, (*seg).next);
            if prev.is_null() {
                self.head = next;
            } else {
                (*prev).next = next;
            }
            if !next.is_null() {
                (*next).prev = prev;
            }
            (*seg).next = null_mut();
            (*seg).prev = null_mut();
        }
    }
}
