//! When a failed job runs again: exponential backoff with jitter, capped.
//!
//! Attempt `n` (1-based) that fails waits `base * 2^(n-1)`, scaled by a random
//! factor in `[1 - jitter, 1 + jitter]` so a burst of jobs that failed together
//! does not retry together, and never more than `cap`. With the defaults (1 s base,
//! 1 h cap, 10 attempts) the nine waits add up to about 8.5 minutes.

use std::time::Duration;

use rand::Rng;

/// The retry schedule.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    /// The wait after the first failed attempt.
    pub base: Duration,
    /// The longest wait, whatever the attempt.
    pub cap: Duration,
    /// Relative spread of the random factor, in `0.0..=1.0`.
    pub jitter: f64,
}

impl Default for Backoff {
    fn default() -> Self {
        Self { base: Duration::from_secs(1), cap: Duration::from_secs(3600), jitter: 0.25 }
    }
}

impl Backoff {
    /// The wait before the attempt after failed attempt `attempt` (1-based), with
    /// the random factor drawn from `rng`.
    pub fn delay(&self, attempt: u32, rng: &mut impl Rng) -> Duration {
        let exp = attempt.saturating_sub(1).min(40);
        let raw = self.base.as_secs_f64() * 2f64.powi(exp as i32);
        let jitter = self.jitter.clamp(0.0, 1.0);
        let factor = if jitter > 0.0 { rng.random_range(1.0 - jitter..=1.0 + jitter) } else { 1.0 };
        Duration::from_secs_f64((raw * factor).min(self.cap.as_secs_f64()))
    }

    /// The shortest and longest wait `delay` can give after `attempt`.
    pub fn bounds(&self, attempt: u32) -> (Duration, Duration) {
        let exp = attempt.saturating_sub(1).min(40);
        let raw = self.base.as_secs_f64() * 2f64.powi(exp as i32);
        let j = self.jitter.clamp(0.0, 1.0);
        let cap = self.cap.as_secs_f64();
        (Duration::from_secs_f64((raw * (1.0 - j)).min(cap)), Duration::from_secs_f64((raw * (1.0 + j)).min(cap)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_exponentially_within_jitter_and_cap() {
        let b = Backoff::default();
        let mut rng = rand::rng();
        for attempt in 1..=20 {
            let (lo, hi) = b.bounds(attempt);
            for _ in 0..50 {
                let d = b.delay(attempt, &mut rng);
                assert!(d >= lo && d <= hi, "attempt {attempt}: {d:?} not in {lo:?}..={hi:?}");
                assert!(d <= b.cap);
            }
        }
        assert_eq!(b.bounds(1), (Duration::from_millis(750), Duration::from_millis(1250)));
        assert_eq!(b.bounds(4).0, Duration::from_secs(6));
        assert_eq!(b.bounds(30), (b.cap, b.cap));
    }
}
