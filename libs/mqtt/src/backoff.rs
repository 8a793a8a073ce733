//! Reconnection spacing: exponential backoff with full jitter, so a fleet of devices that lost
//! the broker together does not come back together.

/// Delays between connection attempts.
#[derive(Debug, Clone)]
pub struct Backoff {
    base_ms: u32,
    max_ms: u32,
    attempt: u32,
    /// xorshift32 state, seeded from the device's entropy.
    state: u32,
}

impl Backoff {
    /// Delays grow from `base_ms` (doubling per attempt) up to `max_ms`; `seed` (nonzero
    /// entropy) spreads them.
    pub fn new(base_ms: u32, max_ms: u32, seed: u32) -> Self {
        Backoff {
            base_ms: base_ms.max(1),
            max_ms: max_ms.max(base_ms.max(1)),
            attempt: 0,
            state: seed | 1,
        }
    }

    fn random(&mut self) -> u32 {
        let mut x = self.state;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.state = x;
        x
    }

    /// The delay before the next attempt: uniform in `[ceiling/2, ceiling]`, where the ceiling
    /// doubles per attempt up to the maximum.
    pub fn next_delay_ms(&mut self) -> u32 {
        let ceiling = self
            .base_ms
            .saturating_mul(1u32.checked_shl(self.attempt.min(31)).unwrap_or(u32::MAX))
            .min(self.max_ms);
        self.attempt = self.attempt.saturating_add(1);
        let half = ceiling / 2;
        half + self.random() % (ceiling - half + 1)
    }

    /// Call after a successful connection.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_to_the_cap_with_jitter() {
        let mut b = Backoff::new(100, 5_000, 0xDEAD_BEEF);
        let d: [u32; 10] = core::array::from_fn(|_| b.next_delay_ms());
        for (i, &x) in d.iter().enumerate() {
            let ceiling = (100u32 << i).min(5_000);
            assert!(
                x >= ceiling / 2 && x <= ceiling,
                "attempt {i}: {x} not in [{}, {ceiling}]",
                ceiling / 2
            );
        }
        assert!(d[9] >= 2_500, "capped at 5 s, never below half of it");
        // Two devices with different seeds do not retry in lockstep.
        let mut other = Backoff::new(100, 5_000, 12345);
        let e: [u32; 10] = core::array::from_fn(|_| other.next_delay_ms());
        assert_ne!(d, e);
        b.reset();
        assert!(b.next_delay_ms() <= 100);
    }
}
