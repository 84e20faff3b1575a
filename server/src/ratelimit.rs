//! Request-rate limits for public endpoints (sign-up): per client IP and for the
//! whole server, over fixed windows.
//!
//! In memory, per server process: good enough to stop a script from flooding one
//! server with sign-ups (each costs a database and a provisioning job). Several
//! servers each apply their own limit; a shared limit would live in the database.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A count within a window that started at `start`.
#[derive(Debug, Clone, Copy)]
struct Window {
    start: Instant,
    count: u32,
}

impl Window {
    /// Counts one hit; false when the window's budget is spent.
    fn hit(&mut self, now: Instant, len: Duration, max: u32) -> bool {
        if now.duration_since(self.start) >= len {
            *self = Window { start: now, count: 0 };
        }
        if self.count >= max {
            return false;
        }
        self.count += 1;
        true
    }
}

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// This client sent too many.
    PerClient,
    /// The server as a whole is taking too many.
    Global,
}

/// Limits per client IP and globally.
#[derive(Debug)]
pub struct Limiter {
    per_ip_max: u32,
    per_ip_window: Duration,
    global_max: u32,
    global_window: Duration,
    per_ip: Mutex<HashMap<IpAddr, Window>>,
    global: Mutex<Window>,
}

impl Limiter {
    /// At most `per_ip_max` per `per_ip_window` from one IP, and `global_max` per
    /// `global_window` in all.
    pub fn new(per_ip_max: u32, per_ip_window: Duration, global_max: u32, global_window: Duration) -> Self {
        Self {
            per_ip_max,
            per_ip_window,
            global_max,
            global_window,
            per_ip: Mutex::default(),
            global: Mutex::new(Window { start: Instant::now(), count: 0 }),
        }
    }

    /// Counts a request from `ip` (unknown: only the global limit applies).
    ///
    /// # Errors
    /// Which limit refused it.
    pub fn check(&self, ip: Option<IpAddr>) -> Result<(), Refused> {
        let now = Instant::now();
        if let Some(ip) = ip {
            let mut map = self.per_ip.lock().unwrap_or_else(|p| p.into_inner());
            if map.len() > 100_000 {
                // Forget windows that have ended, so the map cannot grow without bound.
                let len = self.per_ip_window;
                map.retain(|_, w| now.duration_since(w.start) < len);
            }
            let w = map.entry(ip).or_insert(Window { start: now, count: 0 });
            if !w.hit(now, self.per_ip_window, self.per_ip_max) {
                return Err(Refused::PerClient);
            }
        }
        let mut g = self.global.lock().unwrap_or_else(|p| p.into_inner());
        if !g.hit(now, self.global_window, self.global_max) { Err(Refused::Global) } else { Ok(()) }
    }
}

impl Refused {
    /// The answer for a refused sign-up, as the domain's rate-limit error.
    pub fn signup_error(self) -> backoffice::Error {
        backoffice::Error::RateLimited(
            match self {
                Refused::PerClient => "too many sign-ups from your address; try again later",
                Refused::Global => "we are taking too many sign-ups right now; try again in a minute",
            }
            .to_owned(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_client_then_global() {
        let l = Limiter::new(2, Duration::from_secs(60), 3, Duration::from_secs(60));
        let a: IpAddr = [10, 0, 0, 1].into();
        let b: IpAddr = [10, 0, 0, 2].into();
        assert_eq!(l.check(Some(a)), Ok(()));
        assert_eq!(l.check(Some(a)), Ok(()));
        assert_eq!(l.check(Some(a)), Err(Refused::PerClient));
        assert_eq!(l.check(Some(b)), Ok(()));
        assert_eq!(l.check(Some(b)), Err(Refused::Global));
    }

    #[test]
    fn windows_reset() {
        let l = Limiter::new(1, Duration::from_millis(30), 100, Duration::from_secs(60));
        let a: IpAddr = [10, 0, 0, 1].into();
        assert_eq!(l.check(Some(a)), Ok(()));
        assert_eq!(l.check(Some(a)), Err(Refused::PerClient));
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(l.check(Some(a)), Ok(()));
    }
}
