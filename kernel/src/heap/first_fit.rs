//! First-fit heap with coalescing, over one or more regions.
//!
//! Free blocks form a singly linked list in address order. Each block, free or allocated,
//! starts with a header: the link (free blocks) and the block size, headers included. An
//! allocation takes the first block big enough and splits off the rest when the rest can hold
//! a header and some payload; a free re-inserts the block by address and merges it with an
//! adjacent neighbour on either side. Requests aligned beyond the header alignment are served
//! from a larger block, with a small forwarding header just before the aligned pointer.

use super::HeapStats;
use crate::arch::critical;
use core::alloc::{GlobalAlloc, Layout};
use core::cell::UnsafeCell;
use core::ptr::null_mut;

#[repr(C)]
struct Header {
    /// Next free block (free blocks); block start (forwarding headers).
    next: *mut Header,
    /// Block size in bytes, headers included; `FORWARD` marks a forwarding header.
    size: usize,
}

const ALIGN: usize = 8;
const HEADER: usize = core::mem::size_of::<Header>().next_multiple_of(ALIGN);
/// A split leaves a free block only if it can hold a header and this much.
const MIN_SPLIT: usize = HEADER + ALIGN;
const FORWARD: usize = usize::MAX;

struct State {
    free: *mut Header,
    stats: HeapStats,
}

/// The first-fit heap (FreeRTOS heap_4/heap_5 class).
pub struct FirstFit {
    s: UnsafeCell<State>,
}

// SAFETY: the state is only touched inside a kernel critical section.
unsafe impl Sync for FirstFit {}

impl Default for FirstFit {
    fn default() -> Self {
        Self::new()
    }
}

impl FirstFit {
    pub const fn new() -> Self {
        FirstFit {
            s: UnsafeCell::new(State {
                free: null_mut(),
                stats: HeapStats::EMPTY,
            }),
        }
    }

    /// Adds a region of memory to the heap. Regions may be added at any time, in any order.
    ///
    /// # Safety
    /// `start..start + len` must be unused memory, valid for the program's life, and not
    /// overlap another region.
    pub unsafe fn add_region(&self, start: *mut u8, len: usize) {
        // SAFETY: the caller's contract; inside the critical section.
        critical(|| unsafe { (*self.s.get()).add_region(start, len) })
    }

    pub fn stats(&self) -> HeapStats {
        critical(|| {
            // SAFETY: inside the critical section.
            let s = unsafe { &*self.s.get() };
            let mut st = s.stats;
            st.largest_free_block = 0;
            st.free_blocks = 0;
            let mut b = s.free;
            while !b.is_null() {
                // SAFETY: free-list headers are valid.
                let h = unsafe { &*b };
                st.largest_free_block = st.largest_free_block.max(h.size);
                st.free_blocks += 1;
                b = h.next;
            }
            st
        })
    }
}

impl State {
    unsafe fn add_region(&mut self, start: *mut u8, len: usize) {
        let lo = (start as usize).next_multiple_of(ALIGN);
        let hi = (start as usize + len) & !(ALIGN - 1);
        assert!(hi > lo && hi - lo >= MIN_SPLIT, "heap region too small");
        let b = lo as *mut Header;
        // SAFETY: the region is ours (caller's contract) and aligned.
        unsafe {
            b.write(Header {
                next: null_mut(),
                size: hi - lo,
            })
        };
        self.stats.total_bytes += hi - lo;
        self.stats.regions += 1;
        self.stats.largest_region = self.stats.largest_region.max(hi - lo);
        self.stats.free_bytes += hi - lo;
        self.stats.min_free_bytes += hi - lo;
        // SAFETY: `b` is a valid free block not yet in the list.
        unsafe { self.insert(b) };
    }

    /// Inserts a free block by address, merging with neighbours.
    unsafe fn insert(&mut self, b: *mut Header) {
        // SAFETY: every pointer walked is a valid free-list header or `b`.
        unsafe {
            let mut prev: *mut Header = null_mut();
            let mut next = self.free;
            while !next.is_null() && (next as usize) < (b as usize) {
                prev = next;
                next = (*next).next;
            }
            (*b).next = next;
            if !next.is_null() && b as usize + (*b).size == next as usize {
                (*b).size += (*next).size;
                (*b).next = (*next).next;
            }
            if prev.is_null() {
                self.free = b;
            } else if prev as usize + (*prev).size == b as usize {
                (*prev).size += (*b).size;
                (*prev).next = (*b).next;
            } else {
                (*prev).next = b;
            }
        }
    }

    fn alloc(&mut self, layout: Layout) -> *mut u8 {
        let extra = if layout.align() > ALIGN {
            layout.align()
        } else {
            0
        };
        let Some(need) = layout
            .size()
            .max(1)
            .checked_add(HEADER + extra)
            .map(|n| n.next_multiple_of(ALIGN))
        else {
            return null_mut();
        };
        // SAFETY: walks and edits valid free-list headers only.
        unsafe {
            let mut prev: *mut Header = null_mut();
            let mut b = self.free;
            while !b.is_null() && (*b).size < need {
                prev = b;
                b = (*b).next;
            }
            if b.is_null() {
                self.stats.failures += 1;
                return null_mut();
            }
            let rest = (*b).next;
            let after = if (*b).size - need >= MIN_SPLIT {
                let tail = (b as usize + need) as *mut Header;
                tail.write(Header {
                    next: rest,
                    size: (*b).size - need,
                });
                (*b).size = need;
                tail
            } else {
                rest
            };
            if prev.is_null() {
                self.free = after;
            } else {
                (*prev).next = after;
            }
            (*b).next = null_mut();
            self.stats.free_bytes -= (*b).size;
            self.stats.min_free_bytes = self.stats.min_free_bytes.min(self.stats.free_bytes);
            self.stats.allocations += 1;
            let payload = b as usize + HEADER;
            if extra == 0 {
                return payload as *mut u8;
            }
            // Over-aligned: place the payload at the next aligned address that leaves room
            // for a forwarding header after the block's own.
            let p = (payload + HEADER).next_multiple_of(layout.align());
            ((p - HEADER) as *mut Header).write(Header {
                next: b,
                size: FORWARD,
            });
            p as *mut u8
        }
    }

    /// # Safety
    /// `p` came from `alloc` on this heap and is not yet freed.
    unsafe fn dealloc(&mut self, p: *mut u8) {
        // SAFETY: the header precedes every pointer `alloc` returns.
        unsafe {
            let mut h = (p as usize - HEADER) as *mut Header;
            if (*h).size == FORWARD {
                h = (*h).next;
            }
            self.stats.free_bytes += (*h).size;
            self.stats.frees += 1;
            self.insert(h);
        }
    }
}

// SAFETY: blocks handed out are disjoint parts of the regions, aligned as asked, and only
// returned to the free list by `dealloc`.
unsafe impl GlobalAlloc for FirstFit {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: inside the critical section.
        let p = critical(|| unsafe { (*self.s.get()).alloc(layout) });
        if p.is_null() {
            crate::hooks::alloc_failed(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, p: *mut u8, _: Layout) {
        // SAFETY: the GlobalAlloc contract: `p` came from `alloc` here; inside the section.
        critical(|| unsafe { (*self.s.get()).dealloc(p) })
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::vec::Vec;

    /// A heap over fresh, 8-aligned memory that lives for the test.
    fn heap(regions: &[usize]) -> (FirstFit, Vec<Vec<u64>>) {
        let h = FirstFit::new();
        let mut mems = Vec::new();
        for &len in regions {
            let mut m = std::vec![0u64; len / 8];
            // SAFETY: `m` stays alive (moved into the returned Vec) and is used by nothing else.
            unsafe { h.add_region(m.as_mut_ptr() as *mut u8, len) };
            mems.push(m);
        }
        (h, mems)
    }

    fn l(size: usize, align: usize) -> Layout {
        Layout::from_size_align(size, align).unwrap()
    }

    #[test]
    fn alloc_free_coalesces_back_to_one_block() {
        let (h, _m) = heap(&[1024]);
        // SAFETY: valid layouts; pointers are freed once.
        unsafe {
            let ptrs: Vec<*mut u8> = (0..6).map(|_| h.alloc(l(100, 4))).collect();
            assert!(ptrs
                .iter()
                .all(|p| !p.is_null() && (*p as usize).is_multiple_of(ALIGN)));
            // Disjoint: writing one never touches another.
            for (n, &p) in ptrs.iter().enumerate() {
                core::ptr::write_bytes(p, n as u8, 100);
            }
            for (n, &p) in ptrs.iter().enumerate() {
                assert!((0..100).all(|k| *p.add(k) == n as u8));
            }
            // Free in an order that exercises merging left, right and both.
            for i in [1, 3, 2, 0, 5, 4] {
                h.dealloc(ptrs[i], l(100, 4));
            }
        }
        let s = h.stats();
        assert_eq!(s.free_blocks, 1);
        assert_eq!(s.free_bytes, 1024);
        assert_eq!(s.largest_free_block, 1024);
        assert_eq!((s.allocations, s.frees), (6, 6));
        assert!(s.min_free_bytes <= 1024 - 6 * 100);
    }

    #[test]
    fn first_fit_reuses_the_first_hole() {
        let (h, _m) = heap(&[1024]);
        // SAFETY: valid layouts; pointers freed once.
        unsafe {
            let a = h.alloc(l(64, 8));
            let b = h.alloc(l(64, 8));
            let _c = h.alloc(l(64, 8));
            h.dealloc(a, l(64, 8));
            h.dealloc(b, l(64, 8));
            // a and b merged: a 120-byte request fits where they were.
            let d = h.alloc(l(120, 8));
            assert_eq!(d, a);
        }
    }

    #[test]
    fn exhaustion_fails_and_counts() {
        let (h, _m) = heap(&[256]);
        // SAFETY: valid layouts.
        unsafe {
            assert!(!h.alloc(l(200, 8)).is_null());
            assert!(h.alloc(l(200, 8)).is_null());
        }
        assert_eq!(h.stats().failures, 1);
    }

    #[test]
    fn several_regions_serve_requests_larger_than_any_hole_in_one() {
        let (h, _m) = heap(&[128, 512]);
        assert_eq!(h.stats().total_bytes, 640);
        assert_eq!((h.stats().regions, h.stats().largest_region), (2, 512));
        assert_eq!(h.stats().free_blocks, 2);
        // SAFETY: valid layouts; freed once.
        unsafe {
            let big = h.alloc(l(400, 8));
            assert!(!big.is_null(), "served from the second region");
            let small = h.alloc(l(64, 8));
            assert!(!small.is_null());
            h.dealloc(big, l(400, 8));
            h.dealloc(small, l(64, 8));
        }
        assert_eq!(h.stats().free_bytes, 640);
        assert_eq!(
            h.stats().free_blocks,
            2,
            "regions that do not touch never merge"
        );
    }

    #[test]
    fn over_aligned_requests() {
        let (h, _m) = heap(&[2048]);
        // SAFETY: valid layouts; freed once.
        unsafe {
            let p = h.alloc(l(100, 256));
            assert!((p as usize).is_multiple_of(256));
            core::ptr::write_bytes(p, 0xEE, 100);
            let q = h.alloc(l(8, 8));
            assert!(q as usize + 8 <= p as usize || q as usize >= p as usize + 100);
            h.dealloc(p, l(100, 256));
            h.dealloc(q, l(8, 8));
        }
        assert_eq!(h.stats().free_bytes, 2048);
        assert_eq!(h.stats().free_blocks, 1);
    }
}
