//! Compile-time kernel configuration (the `FreeRTOSConfig.h` of this kernel).
//!
//! Every value has a default and can be overridden when the firmware is built, through an
//! environment variable of the same name with the `FQP_` prefix (for example
//! `FQP_MAX_TASKS=16`). The port manifest's `[kernel]` table sets these for a port; the harness
//! passes them to the build. Values are checked at compile time.

const fn parse(value: Option<&str>, default: u32) -> u32 {
    let Some(s) = value else { return default };
    let b = s.as_bytes();
    assert!(!b.is_empty(), "empty FQP_* kernel configuration value");
    let mut i = 0;
    let mut n: u32 = 0;
    while i < b.len() {
        assert!(
            b[i].is_ascii_digit(),
            "FQP_* kernel configuration values are decimal numbers"
        );
        n = n * 10 + (b[i] - b'0') as u32;
        i += 1;
    }
    n
}

const fn flag(value: Option<&str>, default: bool) -> bool {
    parse(value, default as u32) != 0
}

/// Most tasks that can exist at once, idle and timer service tasks included (at most 254).
pub const MAX_TASKS: usize = parse(option_env!("FQP_MAX_TASKS"), 32) as usize;
/// Number of priority levels; 0 is the idle priority, `PRIORITIES - 1` the highest (at most 32).
pub const PRIORITIES: usize = parse(option_env!("FQP_PRIORITIES"), 32) as usize;
/// Kernel tick rate in hertz.
pub const TICK_HZ: u32 = parse(option_env!("FQP_TICK_HZ"), 1000);
/// Round-robin time slicing among ready tasks of equal priority, one tick each.
pub const TIME_SLICING: bool = flag(option_env!("FQP_TIME_SLICING"), true);
/// Per-task CPU time accounting at every context switch ([`crate::task::TaskInfo::run_cycles`]).
/// It reads the tick timer at each switch: about a score of instructions on Cortex-M3.
pub const RUN_TIME_STATS: bool = flag(option_env!("FQP_RUN_TIME_STATS"), true);
/// At every context switch, check that the task switched out has its stack pointer above its
/// stack's guard words and the guard words intact (else the stack-overflow hook runs).
pub const STACK_CHECK: bool = flag(option_env!("FQP_STACK_CHECK"), true);
/// Direct-to-task notification slots per task.
pub const NOTIFY_INDEXES: usize = parse(option_env!("FQP_NOTIFY_INDEXES"), 3) as usize;
/// Stack of the idle task, in 32-bit words.
pub const IDLE_STACK_WORDS: usize = parse(option_env!("FQP_IDLE_STACK_WORDS"), 256) as usize;
/// Stack of the timer service task, in 32-bit words.
pub const TIMER_STACK_WORDS: usize = parse(option_env!("FQP_TIMER_STACK_WORDS"), 512) as usize;
/// Priority of the timer service task.
pub const TIMER_PRIORITY: u8 = parse(option_env!("FQP_TIMER_PRIORITY"), 30) as u8;

const _: () = assert!(
    MAX_TASKS >= 2 && MAX_TASKS <= 254,
    "FQP_MAX_TASKS must be 2..=254"
);
const _: () = assert!(
    PRIORITIES >= 2 && PRIORITIES <= 32,
    "FQP_PRIORITIES must be 2..=32"
);
const _: () = assert!(
    TICK_HZ > 0 && TICK_HZ <= 100_000,
    "FQP_TICK_HZ must be 1..=100000"
);
const _: () = assert!(NOTIFY_INDEXES >= 1, "FQP_NOTIFY_INDEXES must be at least 1");
const _: () = assert!(
    (TIMER_PRIORITY as usize) < PRIORITIES,
    "FQP_TIMER_PRIORITY too high"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_decimal_and_defaults() {
        assert_eq!(parse(None, 7), 7);
        assert_eq!(parse(Some("123"), 7), 123);
        assert!(flag(Some("1"), false));
        assert!(!flag(Some("0"), true));
    }

    #[test]
    #[should_panic(expected = "decimal")]
    fn rejects_non_digits() {
        parse(Some("12a"), 0);
    }
}
