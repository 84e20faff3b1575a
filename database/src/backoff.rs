//! One backoff for every loop that waits for the database to come back: the
//! `LISTEN` reconnect, a worker's fetch after a failure, the completer's retries,
//! the notification poller's start. Exponential from a first delay, with jitter
//! so many processes that lost the same server do not come back in lockstep, and
//! never longer than [`MAX_DELAY`] (jitter included): a restarted database is
//! noticed within that. Built on `backon`; restart it (call again) after a
//! success.

use std::time::Duration;

use backon::BackoffBuilder;

/// The longest wait between two tries.
pub const MAX_DELAY: Duration = Duration::from_secs(5);

/// Delays to wait between tries, the first about `first`, doubling up to
/// [`MAX_DELAY`], never running out.
pub fn retry_delays(first: Duration) -> impl Iterator<Item = Duration> + Send {
    let delays = backon::ExponentialBuilder::default()
        .with_min_delay(first)
        .with_max_delay(MAX_DELAY)
        .with_jitter()
        .without_max_times()
        .build();
    delays.chain(std::iter::repeat(MAX_DELAY)).map(|d| d.min(MAX_DELAY))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_to_the_cap_and_never_ends() {
        let d: Vec<Duration> = retry_delays(Duration::from_millis(100)).take(20).collect();
        assert_eq!(d.len(), 20);
        assert!(d[0] >= Duration::from_millis(100) && d[0] <= Duration::from_millis(200), "{d:?}");
        assert!(d.iter().all(|x| *x <= MAX_DELAY), "never past the cap, jitter included: {d:?}");
        assert_eq!(d[19], MAX_DELAY, "{d:?}");
    }
}
