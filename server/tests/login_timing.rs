//! Login enumeration by timing, and the stored password hash's parameters.
//!
//! Alone in its own test binary: cargo runs test binaries one after another, so
//! no other test's load lands on one side of the comparison.

use std::time::Instant;

use jobengine::testing::Which;

mod common;
use common::*;

/// Login answers an unknown email and a wrong password alike, in the same time
/// (trimmed means within 20 % over `ENUM_SAMPLES` each, 200 by default, 1,000 in
/// the long run); and passwords are stored as argon2id with m=9216, t=4, p=1.
///
/// The two kinds are measured in pairs, back to back, taking turns at going
/// first, so drift in the machine's load and any cost of going first or second
/// fall on both alike.
#[tokio::test]
async fn login_does_not_reveal_accounts_by_timing() {
    // No embedded worker: this test's server shares the test's one-thread
    // runtime, and a worker there reacts to every commit (SQLite's file events),
    // noise that lands on whichever login comes next.
    let srv = start_with(Which::Sqlite, &[("WORKER", "off")]).await;
    let samples: usize = std::env::var("ENUM_SAMPLES").ok().and_then(|v| v.parse().ok()).unwrap_or(200);
    // Sign-in throttling allows 5 failures per account and 30 per client address
    // before it makes a client wait: each pair of samples comes from an address
    // of its own (127.0.0.0/8 is all loopback), spread over a few real accounts.
    let accounts = samples.div_ceil(4);
    for i in 0..accounts {
        srv.identity
            .seed_super_admin(&format!("known{i}@timing.test"), Some("the right password"))
            .await
            .expect("seed");
    }
    let mut clients = Vec::new();
    for i in 0..samples + 5 {
        let local = std::net::Ipv4Addr::new(127, 10, (i / 250) as u8, (i % 250 + 1) as u8);
        clients.push(proto::auth::v1::auth_service_client::AuthServiceClient::new(
            channel_from(srv.addr, local.into()).await,
        ));
    }
    let time = |i: usize, email: String| {
        let mut auth = clients[i].clone();
        async move {
            let t = Instant::now();
            let r = auth.login(proto::auth::v1::LoginRequest { email, password: "a wrong password".into() }).await;
            let e = r.expect_err("wrong credentials");
            (t.elapsed().as_secs_f64() * 1000.0, e.code(), e.message().to_owned())
        }
    };
    // Warm up both paths (connection, statement caches, blocking threads).
    for i in 0..5 {
        time(samples + i, format!("known{}@timing.test", i % accounts)).await;
        time(samples + i, format!("warmup{i}@timing.test")).await;
    }
    let mut known = Vec::new();
    let mut unknown = Vec::new();
    for i in 0..samples {
        let k = format!("known{}@timing.test", i % accounts);
        let u = format!("nobody{i}@timing.test");
        let ((a, ca, ma), (b, cb, mb)) = if i % 2 == 0 {
            let a = time(i, k).await;
            (a, time(i, u).await)
        } else {
            let b = time(i, u).await;
            (time(i, k).await, b)
        };
        assert_eq!((ca, &ma), (cb, &mb), "the same answer");
        assert_eq!(ca, tonic::Code::Unauthenticated, "answered, not throttled: {ma}");
        known.push(a);
        unknown.push(b);
    }
    // Sign-in latency here is bimodal (an argon2 hash lands on a warm or a cold
    // blocking thread, and the two cores are shared), so a median can sit in
    // either mode and differ between two samples of the same distribution. A
    // trimmed mean (the middle 80 %) weighs both modes as they occur: the same
    // path gives the same figure, and a real difference between the two paths
    // still shows.
    let trimmed = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        let cut = v.len() / 10;
        let mid = &v[cut..v.len() - cut];
        mid.iter().sum::<f64>() / mid.len() as f64
    };
    let quartiles = |v: &[f64]| format!("{:.1}/{:.1}/{:.1}", v[v.len() / 4], v[v.len() / 2], v[v.len() * 3 / 4]);
    let (mk, mu) = (trimmed(&mut known), trimmed(&mut unknown));
    println!(
        "figure: login trimmed mean {mk:.1} ms (known email, wrong password; quartiles {}) vs {mu:.1} ms (unknown \
         email; {}), {samples} each",
        quartiles(&known),
        quartiles(&unknown)
    );
    assert!((mk - mu).abs() / mk.max(mu) < 0.2, "timing reveals accounts: {mk:.1} vs {mu:.1} ms");

    let hash: String = {
        let db = database::Db::connect(&srv.db.url).await.expect("database");
        database::query("SELECT password_hash FROM users WHERE email = $1")
            .bind(ROOT_EMAIL)
            .scalar(db.read())
            .await
            .expect("hash")
    };
    assert!(hash.starts_with("$argon2id$v=19$m=9216,t=4,p=1$"), "{hash}");
}
