//! Intrusive, index-linked circular lists of tasks.
//!
//! Every task is in at most one *scheduling* list (a ready list, the delayed list or the zombie
//! list) and at most one *wait* list (the tasks blocked on a kernel object). The links live in
//! arrays owned by the kernel, indexed by task slot, so a list head is two bytes, no pointer is
//! stored anywhere, and the lists can be unit-tested on the host. The head of a ready list is the
//! task that runs at that priority; rotating the head is how round-robin works, in O(1).
//!
//! Slot arrays ([`Slots`]) have a power-of-two length and are indexed with the slot masked to
//! it: an index is always in bounds, so the scheduler's hot paths carry neither a bounds check
//! nor a panic path, and no index, however wrong, reaches outside the array. Debug builds (the
//! host tests) still assert that every index names a real slot.

use crate::config::MAX_TASKS;
use core::ops::{Index, IndexMut};

/// A task slot index. [`NIL`] means "no task".
pub(crate) type Idx = u8;
/// The absent index.
pub(crate) const NIL: Idx = u8::MAX;

/// Length of the per-slot arrays: [`MAX_TASKS`] rounded up to a power of two.
pub(crate) const SLOTS: usize = MAX_TASKS.next_power_of_two();

/// One `T` per task slot, indexed by [`Idx`].
#[derive(Clone, Copy, Debug)]
#[repr(transparent)]
pub(crate) struct Slots<T>(pub [T; SLOTS]);

impl<T> Slots<T> {
    #[inline(always)]
    fn at(i: Idx) -> usize {
        debug_assert!((i as usize) < MAX_TASKS, "task slot {i} out of range");
        i as usize & (SLOTS - 1)
    }
}

impl<T> Index<Idx> for Slots<T> {
    type Output = T;
    #[inline(always)]
    fn index(&self, i: Idx) -> &T {
        &self.0[Self::at(i)]
    }
}

impl<T> IndexMut<Idx> for Slots<T> {
    #[inline(always)]
    fn index_mut(&mut self, i: Idx) -> &mut T {
        &mut self.0[Self::at(i)]
    }
}

/// Forward and backward links of one task in one kind of list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub(crate) struct Link {
    pub next: Idx,
    pub prev: Idx,
}

impl Link {
    pub const UNLINKED: Link = Link {
        next: NIL,
        prev: NIL,
    };
}

/// The links of every slot in one kind of list.
pub(crate) type Links = Slots<Link>;

impl Links {
    pub const fn new() -> Links {
        Slots([Link::UNLINKED; SLOTS])
    }
}

/// A circular doubly-linked list of task slots.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct List {
    head: Idx,
    len: u8,
}

impl Default for List {
    fn default() -> Self {
        Self::EMPTY
    }
}

impl List {
    pub const EMPTY: List = List { head: NIL, len: 0 };
    /// Byte offset of the head in a list (for a port's hand-written switch path).
    #[cfg_attr(
        not(any(fqp_cpu = "armv7m", fqp_cpu = "armv8m_main")),
        allow(dead_code)
    )]
    pub(crate) const HEAD_OFFSET: usize = core::mem::offset_of!(List, head);

    pub(crate) fn head(&self) -> Idx {
        self.head
    }

    pub(crate) fn len(&self) -> usize {
        self.len as usize
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.head == NIL
    }

    /// Appends `i` at the tail (just before the head).
    pub(crate) fn push_back(&mut self, links: &mut Links, i: Idx) {
        self.push_back_inline(links, i)
    }

    /// [`List::push_back`], inlined (for the ready lists, whose updates are the hot path).
    #[inline(always)]
    pub(crate) fn push_back_inline(&mut self, links: &mut Links, i: Idx) {
        debug_assert_eq!(links[i], Link::UNLINKED, "task already in a list");
        if self.head == NIL {
            links[i] = Link { next: i, prev: i };
            self.head = i;
        } else {
            let head = self.head;
            let tail = links[head].prev;
            links[i] = Link {
                next: head,
                prev: tail,
            };
            links[tail].next = i;
            links[head].prev = i;
        }
        self.len += 1;
    }

    /// Inserts `i` just before `pos` (which must be in this list); if `pos` is the head, `i`
    /// becomes the new head.
    fn insert_before(&mut self, links: &mut Links, pos: Idx, i: Idx) {
        let prev = links[pos].prev;
        links[i] = Link { next: pos, prev };
        links[prev].next = i;
        links[pos].prev = i;
        if pos == self.head {
            self.head = i;
        }
        self.len += 1;
    }

    /// Inserts `i` before the first element whose key is greater than `key(i)`: the list stays
    /// sorted by key, and elements of equal key keep their arrival order.
    pub(crate) fn insert_sorted<K: Ord>(
        &mut self,
        links: &mut Links,
        i: Idx,
        key: impl Fn(Idx) -> K,
    ) {
        let k = key(i);
        let mut pos = self.head;
        for _ in 0..self.len {
            if key(pos) > k {
                self.insert_before(links, pos, i);
                return;
            }
            pos = links[pos].next;
        }
        self.push_back(links, i);
    }

    /// Unlinks `i`, which must be in this list.
    pub(crate) fn remove(&mut self, links: &mut Links, i: Idx) {
        self.remove_inline(links, i)
    }

    /// [`List::remove`], inlined (for the ready lists).
    #[inline(always)]
    pub(crate) fn remove_inline(&mut self, links: &mut Links, i: Idx) {
        let Link { next, prev } = links[i];
        debug_assert!(next != NIL, "task not in a list");
        if next == i {
            self.head = NIL;
        } else {
            links[prev].next = next;
            links[next].prev = prev;
            if self.head == i {
                self.head = next;
            }
        }
        links[i] = Link::UNLINKED;
        self.len -= 1;
    }

    /// Removes and returns the head.
    pub(crate) fn pop_front(&mut self, links: &mut Links) -> Option<Idx> {
        let h = self.head;
        if h == NIL {
            return None;
        }
        self.remove(links, h);
        Some(h)
    }

    /// Moves the head to the tail: the next element becomes the head.
    pub(crate) fn rotate(&mut self, links: &Links) {
        if self.head != NIL {
            self.head = links[self.head].next;
        }
    }

    /// Makes `i`, which must be in this list, its head (a rotation to it).
    #[inline(always)]
    pub(crate) fn set_head(&mut self, i: Idx) {
        self.head = i;
    }

    /// The elements from head to tail.
    pub(crate) fn iter<'a>(&self, links: &'a Links) -> impl Iterator<Item = Idx> + 'a {
        let mut cur = self.head;
        let mut left = self.len;
        core::iter::from_fn(move || {
            if left == 0 {
                return None;
            }
            let i = cur;
            cur = links[i].next;
            left -= 1;
            Some(i)
        })
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::vec::Vec;

    fn links() -> Links {
        Links::new()
    }

    fn items(l: &List, links: &Links) -> Vec<Idx> {
        l.iter(links).collect()
    }

    #[test]
    fn push_remove_rotate() {
        let mut ln = links();
        let mut l = List::EMPTY;
        assert!(l.is_empty());
        for i in [3, 1, 5] {
            l.push_back(&mut ln, i);
        }
        assert_eq!(items(&l, &ln), [3, 1, 5]);
        l.rotate(&ln);
        assert_eq!(items(&l, &ln), [1, 5, 3]);
        l.remove(&mut ln, 5);
        assert_eq!(items(&l, &ln), [1, 3]);
        assert_eq!(ln[5], Link::UNLINKED);
        l.remove(&mut ln, 1);
        assert_eq!(l.head(), 3);
        assert_eq!(l.pop_front(&mut ln), Some(3));
        assert!(l.is_empty());
        assert_eq!(l.pop_front(&mut ln), None);
        assert_eq!(l.len(), 0);
    }

    #[test]
    fn sorted_insert_is_stable() {
        let mut ln = links();
        let mut l = List::EMPTY;
        let keys = [5u8, 2, 5, 1, 9, 2, 0, 5];
        for i in 0..8u8 {
            l.insert_sorted(&mut ln, i, |j| keys[j as usize]);
        }
        // Sorted by key; equal keys (2: tasks 1,5; 5: tasks 0,2,7) in insertion order.
        assert_eq!(items(&l, &ln), [6, 3, 1, 5, 0, 2, 7, 4]);
        // Backward links are consistent with forward links.
        for i in l.iter(&ln) {
            assert_eq!(ln[ln[i].next].prev, i);
        }
    }

    #[test]
    fn insert_before_head_becomes_head() {
        let mut ln = links();
        let mut l = List::EMPTY;
        l.insert_sorted(&mut ln, 0, |_| 5);
        l.insert_sorted(&mut ln, 1, |i| if i == 1 { 1 } else { 5 });
        assert_eq!(l.head(), 1);
        assert_eq!(items(&l, &ln), [1, 0]);
    }
}
