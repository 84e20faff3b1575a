//! Request-rate limits for public endpoints (sign-up): per client, per source
//! network and for the whole server, with `governor` (GCRA).
//!
//! - A *client* is an IPv4 address or an IPv6 /64 (one subscriber's allocation:
//!   keyed on the whole IPv6 address, a host could pick a fresh one per request
//!   from its 2^64).
//! - A *source* is the network around it: an IPv4 /24 or an IPv6 /48 (a site's
//!   usual allocation). No source may take more than [`SOURCE_SHARE`] of the
//!   global budget, so one source cannot shut genuine visitors out; only
//!   requests a source's share admits count against the global limit.
//!
//! A limit of `n` per window allows a burst of `n` and then one more every
//! `window / n`: unlike the fixed windows this replaced, a client cannot spend two
//! budgets back to back across a window's edge.
//!
//! In memory, per server process: good enough to stop a script from flooding one
//! server with sign-ups (each costs a database and a provisioning job). Several
//! servers each apply their own limit; a shared limit would live in the database.
//!
//! Memory is bounded: each IP seen costs one small entry, and entries whose
//! budget has fully refilled (indistinguishable from never seen) are dropped by
//! [`Limiter::retain_recent`], which [`Limiter::forget_idle_every`] runs
//! periodically.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::middleware::NoOpMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};
use tokio_util::sync::CancellationToken;

/// Which limit refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// This client sent too many.
    PerClient,
    /// This client's network has used its share of the global budget.
    Source,
    /// The server as a whole is taking too many.
    Global,
}

/// A refused request: which limit, and how long until that limit would admit it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused {
    /// The limit that refused it.
    pub by: Limit,
    /// Until the limit has room again (GCRA knows it exactly).
    pub wait: Duration,
}

/// The fraction of the global budget one source may use (1 / this).
pub const SOURCE_SHARE: u32 = 4;

/// The client an address counts as: IPv4 as it is, IPv6 by its /64.
pub fn client_of(ip: IpAddr) -> IpAddr {
    backoffice::throttle::client_network(ip)
}

/// The source network an address belongs to: an IPv4 /24, an IPv6 /48.
pub fn source_of(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            IpAddr::V4(std::net::Ipv4Addr::new(a, b, c, 0))
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], 0, 0, 0, 0, 0))
        }
    }
}

/// `max` per `window`, as a burst of `max` refilled evenly over `window`.
/// `max` 0 is read as 1 (settings are checked positive before they get here).
fn quota(max: u32, window: Duration) -> Quota {
    let burst = NonZeroU32::new(max).unwrap_or(NonZeroU32::MIN);
    // A window so short that one cell's share rounds to zero ns: as fast as
    // governor can count.
    let period = (window / burst.get()).max(Duration::from_nanos(1));
    Quota::with_period(period).unwrap_or_else(|| Quota::per_second(burst)).allow_burst(burst)
}

/// Limits per client, per source and globally.
pub struct Limiter<C: Clock = DefaultClock> {
    /// One GCRA state per client (IPv4 address, IPv6 /64).
    per_ip: RateLimiter<IpAddr, DefaultKeyedStateStore<IpAddr>, C, NoOpMiddleware<C::Instant>>,
    /// One GCRA state per source (IPv4 /24, IPv6 /48): its share of the global budget.
    per_source: RateLimiter<IpAddr, DefaultKeyedStateStore<IpAddr>, C, NoOpMiddleware<C::Instant>>,
    /// One GCRA state for the whole server.
    global: RateLimiter<NotKeyed, InMemoryState, C, NoOpMiddleware<C::Instant>>,
    /// The limiters' clock, to turn a refusal's "not until" into a wait.
    clock: C,
}

impl<C: Clock> std::fmt::Debug for Limiter<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limiter").field("clients", &self.per_ip.len()).finish_non_exhaustive()
    }
}

impl Limiter {
    /// At most `per_ip_max` per `per_ip_window` from one IP, and `global_max` per
    /// `global_window` in all.
    pub fn new(per_ip_max: u32, per_ip_window: Duration, global_max: u32, global_window: Duration) -> Self {
        Self::with_clock(per_ip_max, per_ip_window, global_max, global_window, &DefaultClock::default())
    }
}

impl<C: Clock + Clone> Limiter<C> {
    /// As [`Limiter::new`], on `clock` (tests move a fake one).
    pub fn with_clock(
        per_ip_max: u32,
        per_ip_window: Duration,
        global_max: u32,
        global_window: Duration,
        clock: &C,
    ) -> Self {
        Self {
            per_ip: RateLimiter::dashmap_with_clock(quota(per_ip_max, per_ip_window), clock.clone()),
            per_source: RateLimiter::dashmap_with_clock(
                quota((global_max / SOURCE_SHARE).max(1), global_window),
                clock.clone(),
            ),
            global: RateLimiter::direct_with_clock(quota(global_max, global_window), clock.clone()),
            clock: clock.clone(),
        }
    }

    /// Counts a request from `ip` (unknown: only the global limit applies).
    ///
    /// # Errors
    /// Which limit refused it. A request one limit refuses does not count
    /// against the ones after it (client, then source, then global).
    pub fn check(&self, ip: Option<IpAddr>) -> Result<(), Refused> {
        let refused =
            |by| move |no: governor::NotUntil<C::Instant>| Refused { by, wait: no.wait_time_from(self.clock.now()) };
        if let Some(ip) = ip {
            self.per_ip.check_key(&client_of(ip)).map_err(refused(Limit::PerClient))?;
            self.per_source.check_key(&source_of(ip)).map_err(refused(Limit::Source))?;
        }
        self.global.check().map_err(refused(Limit::Global))
    }

    /// Forgets clients whose budget has fully refilled (they would be treated
    /// the same if seen again), so the table holds only recent clients.
    pub fn retain_recent(&self) {
        self.per_ip.retain_recent();
        self.per_ip.shrink_to_fit();
        self.per_source.retain_recent();
        self.per_source.shrink_to_fit();
    }

    /// Client IPs currently remembered.
    pub fn clients(&self) -> usize {
        self.per_ip.len()
    }
}

impl<C: Clock + Clone + Send + Sync + 'static> Limiter<C>
where
    C::Instant: Send + Sync,
{
    /// Runs [`Limiter::retain_recent`] every `every` until `shutdown` fires.
    pub async fn forget_idle_every(self: Arc<Self>, every: Duration, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => self.retain_recent(),
            }
        }
    }
}

impl Refused {
    /// The answer for a refused sign-up, as the domain's rate-limit error.
    pub fn signup_error(self) -> backoffice::Error {
        let what = match self.by {
            Limit::PerClient => "too many sign-ups from your address",
            Limit::Source => "too many sign-ups from your network",
            Limit::Global => "we are taking too many sign-ups right now",
        };
        backoffice::Error::rate_limited(what, self.wait)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use governor::clock::FakeRelativeClock;

    /// Which limit refused, if any.
    fn by(r: Result<(), Refused>) -> Result<(), Limit> {
        r.map_err(|r| r.by)
    }

    #[test]
    fn per_client_then_source_then_global() {
        let l = Limiter::new(2, Duration::from_secs(60), 12, Duration::from_secs(60));
        let a: IpAddr = [10, 0, 0, 1].into();
        let b: IpAddr = [10, 0, 0, 2].into();
        assert_eq!(by(l.check(Some(a))), Ok(()));
        assert_eq!(by(l.check(Some(a))), Ok(()));
        assert_eq!(by(l.check(Some(a))), Err(Limit::PerClient));
        assert_eq!(by(l.check(Some(b))), Ok(()));
        assert_eq!(by(l.check(Some(b))), Err(Limit::Source), "10.0.0.0/24 has used its quarter (3 of 12)");
        // Three more sources fill the global budget (3 + 3 × 3 = 12); a fifth is refused.
        for net in 1..=4u8 {
            for host in 1..=3u8 {
                let r = by(l.check(Some([10, 0, net, host].into())));
                assert_eq!(r, if net == 4 { Err(Limit::Global) } else { Ok(()) }, "{net}.{host}");
            }
        }
    }

    #[test]
    fn ipv6_clients_are_their_64_and_sources_their_48() {
        let l = Limiter::new(1, Duration::from_secs(3600), 400, Duration::from_secs(60));
        let ip = |s: &str| Some(s.parse::<IpAddr>().expect("ip"));
        assert_eq!(by(l.check(ip("2001:db8:1:1::1"))), Ok(()));
        assert_eq!(by(l.check(ip("2001:db8:1:1:ffff::2"))), Err(Limit::PerClient), "same /64");
        // 100 /64s of one /48 share one quarter of the budget.
        let admitted = (2..200).filter(|n| l.check(ip(&format!("2001:db8:1:{n:x}::1"))).is_ok()).count();
        assert_eq!(admitted, 99, "{admitted}");
        assert_eq!(by(l.check(ip("2001:db8:2::1"))), Ok(()), "another /48 still gets in");
        assert_eq!(by(l.check(ip("::ffff:10.0.0.1"))), Ok(()));
        assert_eq!(by(l.check(ip("10.0.0.1"))), Err(Limit::PerClient), "an IPv4-mapped address is its IPv4 one");
    }

    #[test]
    fn budgets_refill() {
        let clock = FakeRelativeClock::default();
        let l = Limiter::with_clock(1, Duration::from_millis(30), 100, Duration::from_secs(60), &clock);
        let a: IpAddr = [10, 0, 0, 1].into();
        assert_eq!(by(l.check(Some(a))), Ok(()));
        let refused = l.check(Some(a)).expect_err("the second within 30 ms");
        assert_eq!(refused, Refused { by: Limit::PerClient, wait: Duration::from_millis(30) }, "GCRA knows the wait");
        clock.advance(Duration::from_millis(20));
        assert_eq!(l.check(Some(a)).map_err(|r| r.wait), Err(Duration::from_millis(10)));
        clock.advance(Duration::from_millis(20));
        assert_eq!(by(l.check(Some(a))), Ok(()));
    }

    #[test]
    fn idle_clients_are_forgotten() {
        let clock = FakeRelativeClock::default();
        let l = Limiter::with_clock(10, Duration::from_secs(3600), 1000, Duration::from_secs(60), &clock);
        for i in 0..50u8 {
            assert_eq!(by(l.check(Some([10, 0, 0, i].into()))), Ok(()));
        }
        assert_eq!(l.clients(), 50);
        l.retain_recent();
        assert_eq!(l.clients(), 50, "still within their window");
        clock.advance(Duration::from_secs(3600));
        l.retain_recent();
        assert_eq!(l.clients(), 0);
    }

    #[test]
    fn extreme_settings_do_not_panic() {
        let l = Limiter::new(u32::MAX, Duration::from_secs(3600), u32::MAX, Duration::from_secs(60));
        assert_eq!(by(l.check(Some([10, 0, 0, 1].into()))), Ok(()));
        let l = Limiter::new(0, Duration::from_secs(3600), 1, Duration::from_secs(60));
        assert_eq!(by(l.check(None)), Ok(()));
        assert_eq!(by(l.check(None)), Err(Limit::Global));
        let l = Limiter::new(5, Duration::from_secs(3600), 2, Duration::from_secs(60));
        assert_eq!(by(l.check(Some([10, 0, 0, 1].into()))), Ok(()), "a share rounds up to one");
    }
}
