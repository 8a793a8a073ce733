//! Heap allocators for the kernel and the application, selectable per port like FreeRTOS's
//! heap schemes, each a [`core::alloc::GlobalAlloc`]:
//!
//! - [`Bump`]: allocate only, never free (FreeRTOS heap_1): smallest, deterministic, for
//!   systems that create everything at start-up.
//! - [`FirstFit`]: first fit over an address-ordered free list, with neighbouring free blocks
//!   merged on free (heap_4), over one or several non-contiguous regions (heap_5).
//!
//! Both call the allocation-failed hook when they cannot satisfy a request and keep
//! [`HeapStats`]. A system with no heap at all simply registers no global allocator and builds
//! the kernel without its `alloc` feature.

mod bump;
mod first_fit;

pub use bump::Bump;
pub use first_fit::FirstFit;

/// Allocation statistics of a heap.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HeapStats {
    /// Bytes of all regions given to the heap.
    pub total_bytes: usize,
    /// Number of regions given to the heap.
    pub regions: usize,
    /// Size of the largest region.
    pub largest_region: usize,
    /// Bytes free now.
    pub free_bytes: usize,
    /// The fewest bytes ever free.
    pub min_free_bytes: usize,
    /// Largest single free block (what one allocation can get at most, headers included).
    pub largest_free_block: usize,
    /// Number of free blocks (fragmentation).
    pub free_blocks: usize,
    pub allocations: usize,
    pub frees: usize,
    pub failures: usize,
}

impl HeapStats {
    /// A heap with no memory yet.
    pub const EMPTY: HeapStats = HeapStats {
        total_bytes: 0,
        regions: 0,
        largest_region: 0,
        free_bytes: 0,
        min_free_bytes: 0,
        largest_free_block: 0,
        free_blocks: 0,
        allocations: 0,
        frees: 0,
        failures: 0,
    };
}

// The heaps run their bookkeeping inside a kernel critical section (`arch::critical`), so
// interrupt handlers may allocate too.
