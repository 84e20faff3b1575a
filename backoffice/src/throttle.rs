//! Sign-in throttling: growing delays per (account, client) and per client,
//! never a lock of an account for every address.
//!
//! A limit that locks an *account* after N failures lets anyone lock its owner
//! out, and the super admin's address is documented (`admin@backoffice.local`).
//! Following OWASP's Authentication Cheat Sheet ("Login Throttling"), failures
//! instead make the *source* wait: past a free allowance, each failure doubles
//! the pause before that source's next attempt (1 s, 2 s, 4 s, ... capped at
//! 15 minutes). Two keys are counted for every attempt:
//! - the account tried from this client ([`PER_ACCOUNT`], 5 free): one source
//!   guessing one password;
//! - the client alone ([`PER_CLIENT`], 30 free, for offices behind one NAT): one
//!   source spraying many accounts or unknown emails. It is checked before any
//!   password hashing, so a flood stops costing argon2 work once it is throttled.
//!
//! The owner signing in from another address meets neither key. A distributed
//! guess at one account (many addresses) is slowed per address only; that is
//! the price of never locking the owner out, and what long passwords are for.
//!
//! A client is its IP address, an IPv6 one by its /64 (one subscriber's
//! allocation: a host can pick any address inside it). The server passes the
//! client's address: the TCP peer, or behind a trusted reverse proxy the
//! address it forwarded (the server's `client` module).
//!
//! Exact under concurrency: an attempt is admitted and counted in one write
//! transaction holding a lock on each key (PostgreSQL advisory locks; SQLite's
//! one writer), so parallel attempts see each other's counts. It is counted
//! *before* the password is checked, and a success takes the count back
//! ([`forgive`]), so a burst cannot slip in while hashes run. A refused attempt
//! writes nothing and is not counted (a throttled source cannot lengthen its
//! own pause, nor grow the table).
//!
//! Storage is one row per key, not per failure; a row idle for [`FORGET_AFTER`]
//! counts as absent and is pruned ([`crate::maintenance`]).

use std::net::IpAddr;

use database::{Db, DbError, query};
use jobengine::Micros;

const SECOND: Micros = 1_000_000;

/// How one key is throttled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    /// Failures allowed with no pause.
    pub free: i64,
    /// The pause after the first failure past `free`; it doubles with each further one.
    pub first_delay: Micros,
    /// The longest pause.
    pub max_delay: Micros,
}

impl Rule {
    /// The pause before the next attempt once `failures` have been counted.
    pub fn delay_after(&self, failures: i64) -> Micros {
        if failures <= self.free {
            return 0;
        }
        let doublings = (failures - self.free - 1).min(40) as u32;
        self.first_delay.saturating_mul(1i64 << doublings).min(self.max_delay)
    }
}

/// One account tried from one client.
pub const PER_ACCOUNT: Rule = Rule { free: 5, first_delay: SECOND, max_delay: 15 * 60 * SECOND };
/// One client, whatever the accounts (unknown emails included).
pub const PER_CLIENT: Rule = Rule { free: 30, first_delay: SECOND, max_delay: 15 * 60 * SECOND };
/// A key with no failure for this long starts afresh (and its row may be pruned).
pub const FORGET_AFTER: Micros = 3600 * SECOND;

/// Lock class of the per-key advisory locks (see [`database::Tx::lock`]).
const LOCK_CLASS: i32 = 0x6c6f_6731; // "log1"

/// The key a client address counts under: IPv4 as it is (an IPv4-mapped IPv6
/// address as its IPv4 one), IPv6 by its /64.
pub fn client_network(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
    }
}

/// The keys one sign-in attempt counts under. `client` is `None` only for
/// calls that did not come over the network (a client of its own then).
pub fn keys(client: Option<IpAddr>, account: &str) -> [(String, Rule); 2] {
    let client = client.map_or_else(|| "local".to_owned(), |ip| client_network(ip).to_string());
    [(format!("a:{client}|{account}"), PER_ACCOUNT), (format!("c:{client}"), PER_CLIENT)]
}

#[derive(sqlx::FromRow)]
struct Row {
    failures: i64,
    last_at: Micros,
    next_at: Micros,
}

impl Row {
    /// Failures that still count at `now`.
    fn live_failures(&self, now: Micros) -> i64 {
        if now - self.last_at > FORGET_AFTER { 0 } else { self.failures }
    }
}

const SELECT: &str = "SELECT failures, last_at, next_at FROM login_throttle WHERE key = $1";

/// How long the source must still wait, if any of its keys is paused at `now`.
fn pause(rows: &[Option<Row>], now: Micros) -> Option<Micros> {
    rows.iter().flatten().filter(|r| r.next_at > now).map(|r| r.next_at - now).max()
}

/// Admits one sign-in attempt under `keys` at `now` and counts it as a
/// failure (see the module docs); `Ok(Err(wait))` when the source must wait
/// `wait` microseconds first (nothing is written then).
///
/// # Errors
/// A database failure.
pub async fn admit(db: &Db, keys: &[(String, Rule)], now: Micros) -> Result<Result<(), Micros>, DbError> {
    // A throttled source is refused on a read, without taking the write lock:
    // a flood costs one read per attempt. (A stale read can only be stricter:
    // pauses end by time, and only `forgive` shortens one.)
    let mut rows = Vec::with_capacity(keys.len());
    for (key, _) in keys {
        rows.push(query(SELECT).bind(key).fetch_optional(db.read()).await?);
    }
    if let Some(wait) = pause(&rows, now) {
        return Ok(Err(wait));
    }
    let mut sorted: Vec<&(String, Rule)> = keys.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0)); // one lock order: no deadlock between attempts
    let mut tx = db.begin().await?;
    let mut rows = Vec::with_capacity(keys.len());
    for (key, _) in &sorted {
        tx.lock(LOCK_CLASS, key).await?;
        rows.push(query(SELECT).bind(key).fetch_optional(&mut tx).await?);
    }
    if let Some(wait) = pause(&rows, now) {
        tx.rollback().await?;
        return Ok(Err(wait));
    }
    for ((key, rule), row) in sorted.iter().zip(&rows) {
        let failures = row.as_ref().map_or(0, |r| r.live_failures(now)) + 1;
        query(
            "INSERT INTO login_throttle (key, failures, last_at, next_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (key) DO UPDATE SET
                failures = excluded.failures, last_at = excluded.last_at, next_at = excluded.next_at",
        )
        .bind(key)
        .bind(failures)
        .bind(now)
        .bind(now + rule.delay_after(failures))
        .execute(&mut tx)
        .await?;
    }
    tx.commit().await?;
    Ok(Ok(()))
}

/// Takes back the count of an attempt admitted at `admitted_at` that
/// succeeded: the account's key starts afresh, the client's loses one failure
/// and its pause goes back to what it was before the attempt (over, since the
/// attempt was admitted), or, when another attempt was admitted since, to what
/// that one's count calls for. (Admission sets the pause for one failure more;
/// kept, it made a client past its free failures wait after each of its
/// *successful* sign-ins.)
///
/// # Errors
/// A database failure.
pub async fn forgive(db: &Db, keys: &[(String, Rule)], admitted_at: Micros) -> Result<(), DbError> {
    let mut sorted: Vec<&(String, Rule)> = keys.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0)); // `admit`'s lock order
    let mut tx = db.begin().await?;
    for (key, rule) in sorted {
        tx.lock(LOCK_CLASS, key).await?;
        if *rule == PER_ACCOUNT {
            query("DELETE FROM login_throttle WHERE key = $1").bind(key).execute(&mut tx).await?;
            continue;
        }
        let row: Option<Row> = query(SELECT).bind(key).fetch_optional(&mut tx).await?;
        if let Some(row) = row.filter(|r| r.failures > 0) {
            let failures = row.failures - 1;
            let next_at =
                if row.last_at == admitted_at { admitted_at } else { row.last_at + rule.delay_after(failures) };
            query("UPDATE login_throttle SET failures = $2, next_at = $3 WHERE key = $1")
                .bind(key)
                .bind(failures)
                .bind(next_at)
                .execute(&mut tx)
                .await?;
        }
    }
    tx.commit().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_and_are_capped() {
        let r = PER_ACCOUNT;
        assert_eq!((0..=5).map(|n| r.delay_after(n)).max(), Some(0));
        assert_eq!(r.delay_after(6), SECOND);
        assert_eq!(r.delay_after(7), 2 * SECOND);
        assert_eq!(r.delay_after(10), 16 * SECOND);
        assert_eq!(r.delay_after(1000), 15 * 60 * SECOND);
        assert_eq!(r.delay_after(i64::MAX), 15 * 60 * SECOND);
    }

    #[test]
    fn ipv6_counts_by_its_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().expect("ip");
        let b: IpAddr = "2001:db8:1:2:ffff:1:2:3".parse().expect("ip");
        let c: IpAddr = "2001:db8:1:3::1".parse().expect("ip");
        assert_eq!(client_network(a), client_network(b));
        assert_ne!(client_network(a), client_network(c));
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().expect("ip");
        assert_eq!(client_network(mapped), "192.0.2.7".parse::<IpAddr>().expect("ip"));
        assert_eq!(keys(Some(a), "x@y.z")[1].0, "c:2001:db8:1:2::");
    }
}
