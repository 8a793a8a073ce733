//! Allocate-only heap.

use super::HeapStats;
use crate::arch::critical;
use core::alloc::{GlobalAlloc, Layout};
use core::cell::UnsafeCell;

struct State {
    next: usize,
    end: usize,
    stats: HeapStats,
}

/// Hands out memory from one region and never takes it back.
pub struct Bump {
    s: UnsafeCell<State>,
}

// SAFETY: the state is only touched inside a kernel critical section.
unsafe impl Sync for Bump {}

impl Default for Bump {
    fn default() -> Self {
        Self::new()
    }
}

impl Bump {
    pub const fn new() -> Self {
        Bump {
            s: UnsafeCell::new(State {
                next: 0,
                end: 0,
                stats: HeapStats::EMPTY,
            }),
        }
    }

    /// Gives the heap its memory (once).
    ///
    /// # Safety
    /// `start..start + len` must be unused memory, valid for the program's life.
    pub unsafe fn init(&self, start: *mut u8, len: usize) {
        critical(|| {
            // SAFETY: inside the critical section.
            let s = unsafe { &mut *self.s.get() };
            assert!(s.end == 0, "bump heap initialised twice");
            s.next = start as usize;
            s.end = start as usize + len;
            s.stats.total_bytes = len;
            s.stats.regions = 1;
            s.stats.largest_region = len;
            s.stats.regions = 1;
            s.stats.largest_region = len;
            s.stats.free_bytes = len;
            s.stats.min_free_bytes = len;
            s.stats.largest_free_block = len;
            s.stats.free_blocks = 1;
        })
    }

    pub fn stats(&self) -> HeapStats {
        // SAFETY: inside the critical section.
        critical(|| unsafe { (*self.s.get()).stats })
    }

    fn take(s: &mut State, layout: Layout) -> *mut u8 {
        let start = s.next.next_multiple_of(layout.align());
        match start.checked_add(layout.size()) {
            Some(end) if end <= s.end => {
                s.next = end;
                let free = s.end - end;
                s.stats.free_bytes = free;
                s.stats.min_free_bytes = free;
                s.stats.largest_free_block = free;
                s.stats.allocations += 1;
                start as *mut u8
            }
            _ => {
                s.stats.failures += 1;
                core::ptr::null_mut()
            }
        }
    }
}

// SAFETY: blocks never overlap (the cursor only moves forward) and are aligned as asked.
unsafe impl GlobalAlloc for Bump {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: inside the critical section.
        let p = critical(|| Self::take(unsafe { &mut *self.s.get() }, layout));
        if p.is_null() {
            crate::hooks::alloc_failed(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, _: *mut u8, _: Layout) {
        // By design: a bump heap never reuses memory.
        // SAFETY: inside the critical section.
        critical(|| unsafe { (*self.s.get()).stats.frees += 1 });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocates_aligned_until_full() {
        static mut MEM: [u64; 8] = [0; 8];
        let h = Bump::new();
        // SAFETY: MEM is used by this test only.
        unsafe { h.init(core::ptr::addr_of_mut!(MEM) as *mut u8, 64) };
        // SAFETY: valid layouts.
        unsafe {
            let a = h.alloc(Layout::from_size_align(3, 1).unwrap());
            let b = h.alloc(Layout::from_size_align(8, 8).unwrap());
            assert!((b as usize).is_multiple_of(8));
            assert!(b as usize >= a as usize + 3);
            assert!(h.alloc(Layout::from_size_align(64, 8).unwrap()).is_null());
        }
        let s = h.stats();
        assert_eq!((s.allocations, s.failures), (2, 1));
        assert_eq!((s.regions, s.largest_region), (1, 64));
        assert_eq!(s.free_bytes, 64 - 16);
    }
}
