//! The port's heap: statistics, coalescing, failure hook, several regions.

use crate::util::Counter;
use alloc::boxed::Box;
use alloc::vec::Vec;
use fqp_kernel::heap::HeapStats;
use fqp_kernel::hooks;
use fqp_testkit::{check, check_eq, group, Failure, TestResult};

group!(pub HEAP, "heap", [
    statistics_follow_allocations,
    freeing_coalesces_neighbours,
    failure_calls_the_hook,
    minimum_ever_free_remembers_the_peak,
    every_region_is_used,
]);

fn stats() -> Result<HeapStats, Failure> {
    match fqp_testkit::heap_stats() {
        Some(s) => Ok(s),
        None => Err(Failure::skipped(
            file!(),
            line!(),
            format_args!("the port has no heap"),
        )),
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
    let mut blocks: Vec<Option<Box<[u8; 256]>>> =
        (0..8).map(|_| Some(Box::new([0u8; 256]))).collect();
    for b in blocks.iter_mut().step_by(2) {
        *b = None;
    }
    let holes = stats()?;
    check!(
        holes.free_blocks > before.free_blocks,
        "freeing every other block leaves holes"
    );
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
    let size = (stats()?.largest_free_block / 2).min(100_000);
    let v: Vec<u8> = Vec::with_capacity(size);
    let peak_free = stats()?.free_bytes;
    drop(v);
    let after = stats()?;
    check!(after.min_free_bytes <= peak_free);
    check!(after.free_bytes > after.min_free_bytes);
    Ok(())
}

fn every_region_is_used() -> TestResult {
    let s = stats()?;
    check!(
        s.regions >= 2,
        "the port declares heap-regions, but its heap has {} region",
        s.regions
    );
    // Allocate until the heap is exhausted; more than the largest region can hold proves the
    // others serve requests too.
    let chunk = 16 * 1024;
    let mut held: Vec<Vec<u8>> = Vec::with_capacity(s.total_bytes / chunk + 1);
    while let Ok(()) = {
        let mut v = Vec::new();
        v.try_reserve_exact(chunk).map(|()| held.push(v))
    } {
        if held.len() == held.capacity() {
            break;
        }
    }
    let got = held.len() * chunk;
    drop(held);
    check!(
        got > s.largest_region,
        "allocated {} bytes, no more than the largest region ({})",
        got,
        s.largest_region
    );
    check_eq!(stats()?.free_bytes, s.free_bytes);
    Ok(())
}
