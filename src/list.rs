//! The one intrusive list type: a doubly-linked list threaded through a
//! [`Link`] field of its nodes, used as a list (remove from the middle), a
//! FIFO queue (`push_back` + `pop_front`) or a stack (`push_front` +
//! `pop_front`). It serves every list of the allocator: a slab's pools with
//! room, a core's segments, the abandoned segments, a thread heap's queue of
//! empty pools and the idle thread heaps.
//!
//! Each list uses its own link field of the node, named by an [`Adapter`],
//! so no list borrows another's links and a node can be on several lists
//! (one per field) at once. Nodes are raw pointers into allocator metadata
//! (segment headers, heap mappings) that the list never owns or frees.
//! After snmalloc's `ds_aal/seqset.h`: the same small type everywhere, with a
//! debug-build [`List::invariant`] check.
//!
//! ```text
//! head -> [node | Link{next,prev}] <-> [node | Link] <-> ... <- tail
//! ```

use core::marker::PhantomData;
use core::ptr::null_mut;

/// The links of one list inside a node: 16 bytes, all-zero when unlinked
/// (so zero-filled metadata needs no initialisation).
///
/// Invariant: `prev` is null iff the node is not on the list this field
/// serves; on it, `prev` is [`FIRST`] for the first node and the previous
/// node otherwise, and `next` is the next node or null for the last.
#[repr(C)]
pub(crate) struct Link<T> {
    next: *mut T,
    prev: *mut T,
}

/// `prev` of the first node of a list: not null (so "linked"), never a node.
const FIRST: usize = 1;

impl<T> Link<T> {
    /// An unlinked link (also what an all-zero link means).
    pub(crate) const NEW: Link<T> = Link {
        next: null_mut(),
        prev: null_mut(),
    };

    /// Whether the node is on the list this link serves.
    #[inline(always)]
    pub(crate) fn is_linked(&self) -> bool {
        !self.prev.is_null()
    }
}

fn first<T>() -> *mut T {
    core::ptr::without_provenance_mut(FIRST)
}

/// Names the link field of `Node` that one kind of list uses.
///
/// # Safety
/// `link` returns a pointer to a `Link<Node>` field inside `*node`, derived
/// from `node` without creating a reference (so raw-pointer provenance is
/// kept), and always the same field for the same node.
pub(crate) unsafe trait Adapter {
    type Node;
    /// The link field of `node`.
    ///
    /// # Safety
    /// `node` points to a live node.
    unsafe fn link(node: *mut Self::Node) -> *mut Link<Self::Node>;
}

/// An intrusive doubly-linked list of `A::Node`s through `A`'s link field.
///
/// Invariants: `head` is null iff `tail` is null iff `len == 0`; following
/// `next` from `head` visits exactly `len` live nodes and ends at `tail`;
/// each node's `prev` is the node before it (`FIRST` for the head), so every
/// member reads as linked. Every method that changes the list keeps them; the unsafe methods
/// rely on their callers for the membership preconditions they state.
#[repr(C)]
pub(crate) struct List<A: Adapter> {
    /// First node, or null. First field, so a fast path reads it in one load.
    head: *mut A::Node,
    tail: *mut A::Node,
    len: usize,
    _adapter: PhantomData<A>,
}

impl<A: Adapter> List<A> {
    /// An empty list (also what an all-zero list means).
    pub(crate) const NEW: List<A> = List {
        head: null_mut(),
        tail: null_mut(),
        len: 0,
        _adapter: PhantomData,
    };

    /// The first node, or null.
    #[inline(always)]
    pub(crate) fn head(&self) -> *mut A::Node {
        self.head
    }

    /// The last node, or null.
    pub(crate) fn tail(&self) -> *mut A::Node {
        self.tail
    }

    /// How many nodes are on the list.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Whether the list has no node.
    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.head.is_null()
    }

    /// The node after `node` on this list, or null.
    ///
    /// # Safety
    /// `node` is live and on this list.
    #[inline(always)]
    pub(crate) unsafe fn next(node: *mut A::Node) -> *mut A::Node {
        // SAFETY: `node` is live (contract), so its link field can be read.
        unsafe { (*A::link(node)).next }
    }

    /// The node before `node` on this list, or null.
    ///
    /// # Safety
    /// `node` is live and on this list.
    pub(crate) unsafe fn prev(node: *mut A::Node) -> *mut A::Node {
        // SAFETY: `node` is live (contract), so its link field can be read.
        let prev = unsafe { (*A::link(node)).prev };
        if prev == first() {
            null_mut()
        } else {
            prev
        }
    }

    /// Puts `node` first.
    ///
    /// # Safety
    /// `node` is live and not on this list (its link is unlinked).
    pub(crate) unsafe fn push_front(&mut self, node: *mut A::Node) {
        // SAFETY: `node` is live and unlinked (contract); the old head is a
        // live member (list invariant), so both links can be written.
        unsafe {
            let l = A::link(node);
            debug_assert!(!(*l).is_linked(), "flistalloc: node pushed on a list twice");
            (*l).next = self.head;
            (*l).prev = first();
            if self.head.is_null() {
                self.tail = node;
            } else {
                (*A::link(self.head)).prev = node;
            }
        }
        self.head = node;
        self.len += 1;
    }

    /// Puts `node` last.
    ///
    /// # Safety
    /// As [`push_front`](List::push_front).
    pub(crate) unsafe fn push_back(&mut self, node: *mut A::Node) {
        // SAFETY: as in push_front, with the old tail.
        unsafe {
            let l = A::link(node);
            debug_assert!(!(*l).is_linked(), "flistalloc: node pushed on a list twice");
            (*l).next = null_mut();
            if self.tail.is_null() {
                (*l).prev = first();
                self.head = node;
            } else {
                (*l).prev = self.tail;
                (*A::link(self.tail)).next = node;
            }
        }
        self.tail = node;
        self.len += 1;
    }

    /// Takes the first node off, or returns null.
    ///
    /// # Safety
    /// The list's nodes are live (true of every list in this crate while its
    /// owner holds it: nodes are unlinked before they are unmapped).
    pub(crate) unsafe fn pop_front(&mut self) -> *mut A::Node {
        let node = self.head;
        if !node.is_null() {
            // SAFETY: the head is a live member (contract and invariant).
            unsafe { self.remove(node) };
        }
        node
    }

    /// Takes `node` off the list.
    ///
    /// # Safety
    /// `node` is live and on this list.
    pub(crate) unsafe fn remove(&mut self, node: *mut A::Node) {
        // SAFETY: `node` is a live member (contract), so are its neighbours
        // (invariant); all three links can be written.
        unsafe {
            let l = A::link(node);
            debug_assert!(
                (*l).is_linked(),
                "flistalloc: removing a node not on the list"
            );
            let (prev, next) = ((*l).prev, (*l).next);
            let prev_node = if prev == first() { null_mut() } else { prev };
            if prev_node.is_null() {
                self.head = next;
            } else {
                (*A::link(prev_node)).next = next;
            }
            if next.is_null() {
                self.tail = prev_node;
            } else {
                (*A::link(next)).prev = prev;
            }
            *l = Link::NEW;
        }
        self.len -= 1;
    }

    /// Moves every node to a new list, returned (their links unchanged), and
    /// leaves this one empty: the caller can then walk them while the old
    /// list's owner relinks others.
    pub(crate) fn take(&mut self) -> List<A> {
        core::mem::replace(self, List::NEW)
    }

    /// Checks the invariants (debug builds; a no-op in release): panics
    /// naming the broken one.
    ///
    /// # Safety
    /// The list's nodes are live.
    pub(crate) unsafe fn invariant(&self) {
        #[cfg(debug_assertions)]
        // SAFETY: the nodes are live (contract).
        unsafe {
            let mut n = 0;
            let mut prev: *mut A::Node = null_mut();
            let mut node = self.head;
            while !node.is_null() {
                let l = A::link(node);
                let expected = if prev.is_null() { first() } else { prev };
                assert!((*l).prev == expected, "flistalloc list: prev link broken");
                n += 1;
                assert!(n <= self.len, "flistalloc list: longer than its length");
                prev = node;
                node = (*l).next;
            }
            assert!(
                self.tail == prev,
                "flistalloc list: tail is not the last node"
            );
            assert!(n == self.len, "flistalloc list: shorter than its length");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Node {
        value: u32,
        a: Link<Node>,
        b: Link<Node>,
    }
    struct ByA;
    struct ByB;
    // SAFETY: returns the `a` field through the raw pointer.
    unsafe impl Adapter for ByA {
        type Node = Node;
        unsafe fn link(node: *mut Node) -> *mut Link<Node> {
            // SAFETY: `node` is live (contract).
            unsafe { core::ptr::addr_of_mut!((*node).a) }
        }
    }
    // SAFETY: returns the `b` field through the raw pointer.
    unsafe impl Adapter for ByB {
        type Node = Node;
        unsafe fn link(node: *mut Node) -> *mut Link<Node> {
            // SAFETY: `node` is live (contract).
            unsafe { core::ptr::addr_of_mut!((*node).b) }
        }
    }

    fn values<A: Adapter<Node = Node>>(list: &List<A>) -> Vec<u32> {
        let mut out = Vec::new();
        let mut n = list.head();
        while !n.is_null() {
            // SAFETY: the test's nodes outlive the lists.
            unsafe {
                out.push((*n).value);
                n = List::<A>::next(n);
            }
        }
        out
    }

    #[test]
    fn queue_stack_list_and_two_links() {
        let mut nodes: Vec<Node> = (0..5)
            .map(|value| Node {
                value,
                a: Link::NEW,
                b: Link::NEW,
            })
            .collect();
        let p: Vec<*mut Node> = nodes.iter_mut().map(|n| n as *mut Node).collect();
        let mut queue = List::<ByA>::NEW;
        let mut stack = List::<ByB>::NEW;
        // SAFETY: the nodes live in `nodes` for the whole test and each is
        // pushed once per list.
        unsafe {
            for &n in &p {
                queue.push_back(n);
                stack.push_front(n);
            }
            queue.invariant();
            stack.invariant();
            assert_eq!(values(&queue), [0, 1, 2, 3, 4]);
            assert_eq!(values(&stack), [4, 3, 2, 1, 0]);
            queue.remove(p[2]);
            assert!(!(*p[2]).a.is_linked() && (*p[2]).b.is_linked());
            assert_eq!(values(&queue), [0, 1, 3, 4]);
            assert_eq!((*queue.pop_front()).value, 0);
            queue.remove(p[4]);
            queue.invariant();
            assert_eq!(values(&queue), [1, 3]);
            assert_eq!(queue.len(), 2);
            let taken = stack.take();
            assert!(stack.is_empty());
            assert_eq!(values(&taken), [4, 3, 2, 1, 0]);
        }
    }
}
