//! The port's heap: statistics, coalescing, failure hook, several regions.

use crate::util::Counter;
use alloc::boxed::Box;
use alloc::vec::Vec;
use fqp_kernel::heap::HeapStats;
use fqp_kernel::hooks;
use fqp_testkit::{check, check_eq, group, skip, Failure, TestResult};

group!(pub HEAP, "heap", [
    statistics_follow_allocations,
    freeing_coalesces_neighbours,
    failure_calls_the_hook,
    minimum_ever_free_remembers_the_peak,
    another_region_serves_when_the_largest_block_is_taken,
]);

fn stats() -> Result<HeapStats, Failure> {
    match fqp_testkit::heap_stats() {
        Some(s) => Ok(s),
        None => Err(Failure::skipped(file!(), line!(), format_args!("the port has no heap"))),
    }
}

fn statistics_follow_allocations() -> TestResult {
    let before = stats()?;
    let v: Vec<u8> = Vec::with_capacity(1000);
    let during = stats()?;
    check!(before.free_bytes - during.free_bytes >= 1000);
    check_eq!(during.allocations, before.allocations + 1);
    drop(v);
    let after = stats()?;
    check_eq!(after.free_bytes, before.free_bytes);
    check_eq!(after.frees, before.frees + 1);
    Ok(())
}

fn freeing_coalesces_neighbours() -> TestResult {
    let before = stats()?;
    let mut blocks: Vec<Option<Box<[u8; 256]>>> = (0..8).map(|_| Some(Box::new([0u8; 256]))).collect();
    for b in blocks.iter_mut().step_by(2) {
        *b = None;
    }
    let holes = stats()?;
    check!(holes.free_blocks > before.free_blocks, "freeing every other block leaves holes");
    drop(blocks);
    let after = stats()?;
    check_eq!(after.free_blocks, before.free_blocks);
    check_eq!(after.largest_free_block, before.largest_free_block);
    Ok(())
}

static FAILED_SIZE: Counter = Counter::new();

fn failure_calls_the_hook() -> TestResult {
    let before = stats()?;
    FAILED_SIZE.set(0);
    hooks::set_alloc_failed_hook(Some(|n| FAILED_SIZE.set(n as u32)));
    let huge = 64 << 20;
    let r = Vec::<u8>::new().try_reserve_exact(huge);
    hooks::set_alloc_failed_hook(None);
    check!(r.is_err());
    check_eq!(FAILED_SIZE.get(), huge as u32);
    check_eq!(stats()?.failures, before.failures + 1);
    Ok(())
}

fn minimum_ever_free_remembers_the_peak() -> TestResult {
    let v: Vec<u8> = Vec::with_capacity(100_000);
    let peak_free = stats()?.free_bytes;
    drop(v);
    let after = stats()?;
    check!(after.min_free_bytes <= peak_free);
    check!(after.free_bytes > after.min_free_bytes);
    Ok(())
}

fn another_region_serves_when_the_largest_block_is_taken() -> TestResult {
    let s = stats()?;
    if s.free_blocks < 2 {
        skip!("the port's heap has a single free region");
    }
    // Take the largest block whole, then ask for more: it must come from elsewhere.
    let big: Vec<u8> = Vec::with_capacity(s.largest_free_block - 64);
    let rest = stats()?;
    let want = (rest.largest_free_block / 2).min(64 * 1024);
    check!(want > 0, "no other free block");
    let small: Vec<u8> = Vec::with_capacity(want);
    let (b0, b1) = (big.as_ptr() as usize, big.as_ptr() as usize + big.capacity());
    let p = small.as_ptr() as usize;
    check!(p + want <= b0 || p >= b1, "the second block overlaps the first");
    Ok(())
}
