//! Sign-in throttling and pruning on both backends, on a manual clock (so
//! "within the pause" and "after it" are exact, not raced against a machine's
//! speed): no lock-out of the owner from another address, exact counts under
//! concurrency, unknown emails throttled per address, hostile emails refused
//! before anything is stored, and what ages out pruned (sign-in leftovers, sent
//! emails and seen notifications).

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use backoffice::Error;
use backoffice::identity::{Identity, SESSION_TTL, insert_password_token};
use backoffice::maintenance::{KEEP_SENT, Pruned, TOKEN_GRACE, prune};
use backoffice::password::Hasher;
use backoffice::throttle::{FORGET_AFTER, PER_ACCOUNT, PER_CLIENT};
use database::{Db, query};
use jobengine::testing::{TestDb, Which, manual_clock};
use jobengine::{Clock, ManualClock};

jobengine::on_both!(
    another_address_signs_in_while_one_is_throttled,
    concurrent_failures_are_counted_exactly,
    unknown_emails_are_throttled_per_address,
    a_success_past_the_free_failures_sets_no_pause,
    hostile_emails_are_refused_before_anything_is_stored,
    prune_removes_what_aged_out,
    prune_removes_month_old_sent_mail_and_seen_notifications,
);

const OWNER: &str = "admin@backoffice.local";
const PASSWORD: &str = "the owner's long password";

struct Bundle {
    _db: TestDb,
    db: Db,
    clock: ManualClock,
    identity: Identity,
}

async fn setup(which: Which) -> Bundle {
    let tdb = TestDb::new(which).await;
    let clock = manual_clock();
    let jobs = tdb.jobs_with_clock(clock.clone()).await;
    let db = jobs.db().clone();
    db.migrate(backoffice::db::migrations()).await.expect("control-plane migrations");
    let identity = Identity::new(db.clone(), Hasher::new(4).expect("hasher"), Arc::new(clock.clone()));
    identity.seed_super_admin(OWNER, Some(PASSWORD)).await.expect("seed");
    Bundle { _db: tdb, db, clock, identity }
}

fn ip(s: &str) -> Option<IpAddr> {
    Some(s.parse().expect("ip"))
}

async fn rows(db: &Db, table: &str) -> i64 {
    query(format!("SELECT COUNT(*) FROM {table}")).scalar(db.read()).await.expect("count")
}

/// 110 wrong passwords from one address (the attack that locked the owner out
/// for an hour) throttle that address only: the right password from another
/// address signs in at once, and the attacking address gets in again once its
/// pause is over.
async fn another_address_signs_in_while_one_is_throttled(which: Which) {
    let b = setup(which).await;
    let attacker = ip("127.0.0.1");
    let mut refused = 0;
    for _ in 0..110 {
        match b.identity.login_from(OWNER, "a wrong guess", attacker).await {
            Err(Error::BadCredentials) => {}
            Err(Error::RateLimited { message: m, retry_after }) => {
                assert!(m.contains("try again in"), "{m}");
                assert!(retry_after.as_secs() >= 1, "{retry_after:?}");
                refused += 1;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(refused, 110 - PER_ACCOUNT.free - 1, "past the free failures the attacker waits");
    let s = b.identity.login_from(OWNER, PASSWORD, ip("127.0.0.2")).await.expect("the owner from elsewhere");
    assert_eq!(s.user.email, OWNER);
    let v6 = b.identity.login_from(OWNER, PASSWORD, ip("2001:db8::1")).await;
    assert!(v6.is_ok(), "{v6:?}");
    // The attacking address itself must wait, even with the right password...
    let r = b.identity.login_from(OWNER, PASSWORD, attacker).await;
    assert!(matches!(r, Err(Error::RateLimited { .. })), "{r:?}");
    // ... until its pause is over; a success then starts its count afresh.
    b.clock.advance(Duration::from_secs(2));
    b.identity.login_from(OWNER, PASSWORD, attacker).await.expect("after the pause");
    for _ in 0..PER_ACCOUNT.free {
        let r = b.identity.login_from(OWNER, "a wrong guess", attacker).await;
        assert!(matches!(r, Err(Error::BadCredentials)), "{r:?}");
    }
}

/// 40 wrong passwords at once from one address: exactly the free failures and
/// the one that starts the pause are admitted (and hashed); every other one is
/// refused, and the stored count is exactly what was admitted.
async fn concurrent_failures_are_counted_exactly(which: Which) {
    let b = setup(which).await;
    let calls: Vec<_> = (0..40)
        .map(|_| {
            let id = b.identity.clone();
            tokio::spawn(async move { id.login_from(OWNER, "a wrong guess", ip("10.9.8.7")).await })
        })
        .collect();
    let mut bad = 0;
    let mut limited = 0;
    for c in calls {
        match c.await.expect("task") {
            Err(Error::BadCredentials) => bad += 1,
            Err(Error::RateLimited { .. }) => limited += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!((bad, limited), (PER_ACCOUNT.free + 1, 40 - PER_ACCOUNT.free - 1));
    let stored: i64 = query("SELECT failures FROM login_throttle WHERE key = $1")
        .bind(format!("a:10.9.8.7|{OWNER}"))
        .scalar(b.db.read())
        .await
        .expect("row");
    assert_eq!(stored, bad);
}

/// Unknown emails count against the address too: a spray of made-up accounts
/// from one address is throttled (before any hashing), while an address in
/// another /64 is not.
async fn unknown_emails_are_throttled_per_address(which: Which) {
    let b = setup(which).await;
    let sprayer = ip("2001:db8:aa:1::1");
    for i in 0..=PER_CLIENT.free {
        let r = b.identity.login_from(&format!("nobody{i}@spray.test"), "x", sprayer).await;
        assert!(matches!(r, Err(Error::BadCredentials)), "{i}: {r:?}");
    }
    // Another address in the same /64 is the same client.
    let r = b.identity.login_from("fresh@spray.test", "x", ip("2001:db8:aa:1:ffff::9")).await;
    assert!(matches!(r, Err(Error::RateLimited { .. })), "{r:?}");
    let r = b.identity.login_from(OWNER, PASSWORD, ip("2001:db8:aa:2::1")).await;
    assert!(r.is_ok(), "another /64: {r:?}");
}

/// A client past its free failures (an office behind one NAT, say) that signs in
/// successfully once its pause is over is not made to wait for its next sign-in:
/// the success takes back its own count and the pause that count had set.
async fn a_success_past_the_free_failures_sets_no_pause(which: Which) {
    let b = setup(which).await;
    let office = ip("192.0.2.7");
    for i in 0..=PER_CLIENT.free {
        let r = b.identity.login_from(&format!("typo{i}@office.test"), "x", office).await;
        assert!(matches!(r, Err(Error::BadCredentials)), "{i}: {r:?}");
    }
    b.clock.advance(Duration::from_secs(2));
    for n in 1..=3 {
        let r = b.identity.login_from(OWNER, PASSWORD, office).await;
        assert!(r.is_ok(), "sign-in {n} after the pause: {r:?}");
    }
    // The failures still count: the next one pauses the client again.
    let r = b.identity.login_from("typo@office.test", "x", office).await;
    assert!(matches!(r, Err(Error::BadCredentials)), "{r:?}");
    let r = b.identity.login_from(OWNER, PASSWORD, office).await;
    assert!(matches!(r, Err(Error::RateLimited { .. })), "{r:?}");
}

/// Emails no address can be (too long, NUL, other control characters) are
/// refused as `email` before anything is recorded or queried.
async fn hostile_emails_are_refused_before_anything_is_stored(which: Which) {
    let b = setup(which).await;
    let long = format!("{}@x.test", "a".repeat(60_000));
    let just_too_long = format!("{}@x.test", "a".repeat(255 - 7));
    for bad in [long.as_str(), just_too_long.as_str(), "ro\0ot@x.test", "a\u{1b}[2J@x.test", &"é".repeat(1500)] {
        match b.identity.login_from(bad, "whatever", ip("127.0.0.1")).await {
            Err(Error::Invalid(f)) => assert_eq!(f.0[0].field, "email", "{f}"),
            other => panic!("{:?}: {other:?}", &bad[..bad.len().min(20)]),
        }
    }
    assert_eq!(rows(&b.db, "login_throttle").await, 0, "nothing recorded");
    let ok = format!("{}@x.test", "a".repeat(254 - 7));
    assert!(matches!(b.identity.login_from(&ok, "x", ip("127.0.0.1")).await, Err(Error::BadCredentials)));
}

/// One pass deletes throttle rows idle past the hour, expired sessions and
/// long-expired set-password tokens, and keeps everything still meaningful.
async fn prune_removes_what_aged_out(which: Which) {
    let b = setup(which).await;
    let t0 = b.clock.now();
    let _ = b.identity.login_from(OWNER, "wrong", ip("127.0.0.1")).await;
    let old = b.identity.login_from(OWNER, PASSWORD, ip("127.0.0.1")).await.expect("login");
    let user_id = old.user.id.clone();
    let mut tx = b.db.begin().await.expect("tx");
    insert_password_token(&mut tx, &user_id, t0).await.expect("token");
    tx.commit().await.expect("commit");
    assert_eq!(prune(&b.db, t0).await.expect("prune"), Pruned::default(), "nothing has aged yet");

    b.clock.set(t0 + SESSION_TTL.as_micros() as i64 + 1);
    let _ = b.identity.login_from("someone@else.test", "x", ip("127.0.0.9")).await;
    let fresh = b.identity.login_from(OWNER, PASSWORD, ip("127.0.0.9")).await.expect("login");
    let p = prune(&b.db, b.clock.now()).await.expect("prune");
    assert_eq!((p.throttle, p.sessions, p.password_tokens), (1, 1, 0), "{p:?}");
    assert!(b.identity.authenticate(&fresh.token).await.expect("auth").is_some(), "live session kept");
    assert_eq!(rows(&b.db, "login_throttle").await, 2, "recent rows kept");

    b.clock.set(t0 + 24 * 3_600_000_000 + TOKEN_GRACE + FORGET_AFTER);
    let p = prune(&b.db, b.clock.now()).await.expect("prune");
    assert_eq!((p.throttle, p.sessions, p.password_tokens), (2, 1, 1), "{p:?}");
    for t in ["login_throttle", "sessions", "password_tokens"] {
        assert_eq!(rows(&b.db, t).await, 0, "{t}");
    }
}

/// Sent emails and seen notifications go a month after they were sent or seen,
/// one batch statement each; an email still waiting to be sent and a
/// notification nobody has seen stay however old, and so does anything a
/// microsecond younger.
async fn prune_removes_month_old_sent_mail_and_seen_notifications(which: Which) {
    let b = setup(which).await;
    let t0 = b.clock.now();
    let owner: String =
        query("SELECT id FROM users WHERE email = $1").bind(OWNER).scalar(b.db.read()).await.expect("owner");
    // (outbox id, sent at) and (notification title, seen at).
    let mail = [("sent-old", Some(t0)), ("sent-recent", Some(t0 + 1)), ("unsent-old", None)];
    let toasts = [("seen-old", Some(t0)), ("seen-recent", Some(t0 + 1)), ("unseen-old", None)];
    for (id, sent_at) in mail {
        query(
            "INSERT INTO outbox (id, kind, sender, recipient, subject, message, created_at, sent_at)
             VALUES ($1, 'welcome', 'a@x.test', 'b@x.test', 's', $2, $3, $4)",
        )
        .bind(id)
        .bind(sent_at.is_none().then_some("the message"))
        .bind(t0)
        .bind(sent_at)
        .execute(b.db.write())
        .await
        .expect("outbox row");
    }
    for (title, acked_at) in toasts {
        query(
            "INSERT INTO notifications (user_id, kind, title, body, created_at, acked_at)
             VALUES ($1, 'info', $2, '', $3, $4)",
        )
        .bind(&owner)
        .bind(title)
        .bind(t0)
        .bind(acked_at)
        .execute(b.db.write())
        .await
        .expect("notification");
    }
    b.clock.set(t0 + KEEP_SENT);
    let p = prune(&b.db, b.clock.now()).await.expect("prune");
    assert_eq!((p.outbox, p.notifications), (0, 0), "a month to the microsecond is kept: {p:?}");

    b.clock.set(t0 + KEEP_SENT + 1);
    let p = prune(&b.db, b.clock.now()).await.expect("prune");
    assert_eq!((p.outbox, p.notifications), (1, 1), "{p:?}");
    let left: Vec<String> = query("SELECT id FROM outbox ORDER BY id").scalars(b.db.read()).await.expect("outbox");
    assert_eq!(left, ["sent-recent", "unsent-old"]);
    let left: Vec<String> =
        query("SELECT title FROM notifications ORDER BY title").scalars(b.db.read()).await.expect("notifications");
    assert_eq!(left, ["seen-recent", "unseen-old"]);

    b.clock.set(t0 + 100 * KEEP_SENT);
    let p = prune(&b.db, b.clock.now()).await.expect("prune");
    assert_eq!((p.outbox, p.notifications), (1, 1), "{p:?}");
    assert_eq!(rows(&b.db, "outbox").await, 1, "the unsent email stays");
    assert_eq!(rows(&b.db, "notifications").await, 1, "the unseen notification stays");
}
