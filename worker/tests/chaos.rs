//! Chaos, with real processes, on both backends: workers are `kill -9`ed at random
//! moments while tenants provision and their welcome emails go out through a
//! real SMTP server. Afterwards every tenant is active with one database and one
//! seed, every sign-up got exactly one welcome email (a resend after a kill past
//! the server's acceptance carries the same Message-ID and is counted apart), and
//! no job is lost or dead.
//!
//! `CHAOS_TENANTS` (default 6) and `CHAOS_KILLS` (default 10) size it; the long
//! run is `CHAOS_TENANTS=20 CHAOS_KILLS=100 cargo test -p worker --test chaos`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use backoffice::tenants::{TenantStatus, Tenants};
use backoffice::testing::SmtpSink;
use jobengine::testing::{TestDb, Which};
use nix::sys::signal::Signal;
use rand::Rng;

mod common;
use common::WorkerProc;

jobengine::on_both!(random_kill_9_during_provisioning);

fn env_num(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

async fn random_kill_9_during_provisioning(which: Which) {
    let (tenants_n, kills) = (env_num("CHAOS_TENANTS", 6), env_num("CHAOS_KILLS", 10));
    let db = TestDb::new(which).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (jobs, env) = common::open_control_plane(&db.url, dir.path()).await;
    let tenants = Tenants::new(jobs.clone(), env.mail.letters.clone());
    let mut ids = Vec::new();
    for i in 0..tenants_n {
        let c = tenants.sign_up(&format!("Chaos Co {i}"), &format!("owner{i}@chaos.test")).await.expect("sign up");
        ids.push(c.expect("created").tenant.id);
    }
    let sink = SmtpSink::start();
    // No welcome reminders: they are due 48 h later, and this test waits for
    // every job to end.
    let settings = [
        ("PROVISION_FAULT", "slow:300"),
        ("SMTP_URL", sink.url.as_str()),
        ("WORKER_CONCURRENCY", "2"),
        ("WELCOME_REMINDER_AFTER_SECS", "0"),
    ];
    let mut rng = rand::rng();
    let started = Instant::now();
    for k in 0..kills {
        let mut w = WorkerProc::start_with(&db.url, dir.path(), &format!("w{k}"), 1000, &settings);
        std::thread::sleep(Duration::from_millis(rng.random_range(50..700)));
        w.signal(Signal::SIGKILL);
        w.wait_exit(Duration::from_secs(5));
    }
    let _last = WorkerProc::start_with(&db.url, dir.path(), "final", 1000, &settings);
    for id in &ids {
        loop {
            let t = tenants.get(id).await.expect("tenant");
            if t.status() == TenantStatus::Active {
                break;
            }
            assert_ne!(t.status(), TenantStatus::Failed, "{t:?}");
            assert!(started.elapsed() < Duration::from_secs(180), "never active: {t:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    // Every email out, none dead.
    let db = jobs.db().clone();
    let counts = loop {
        let c = jobs.counts().await.expect("counts");
        if c.enqueued + c.processing + c.scheduled == 0 {
            break c;
        }
        assert!(started.elapsed() < Duration::from_secs(180), "jobs never finished: {c:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(counts.dead, 0, "no job dead: {counts:?}");
    assert_eq!(counts.succeeded as usize, 2 * tenants_n, "one provisioning and one email job per tenant: {counts:?}");
    for id in &ids {
        let t = tenants.get(id).await.expect("tenant");
        assert!(env.tenant_dbs.exists(&t.db_name).await.expect("exists"), "database of {id}");
        let home = env.tenant_dbs.read_home(&t.db_name).await.expect("read tenant db");
        assert_eq!((home.roles.len(), home.settings.len()), (3, 2), "one seed in {id}");
    }
    let welcome: i64 =
        database::query("SELECT COUNT(*) FROM outbox WHERE kind = 'welcome'").scalar(db.read()).await.expect("outbox");
    assert_eq!(welcome as usize, tenants_n, "one welcome email composed per tenant");

    // What the SMTP server got: one Message-ID per sign-up, each to its owner.
    std::thread::sleep(Duration::from_millis(500));
    let mut by_id: HashMap<String, (String, usize)> = HashMap::new();
    for m in sink.messages() {
        let header =
            |name: &str| m.lines().find_map(|l| l.strip_prefix(name)).map(|v| v.trim().to_owned()).unwrap_or_default();
        let e = by_id.entry(header("Message-ID:")).or_insert((header("X-Envelope-To:"), 0));
        e.1 += 1;
    }
    let mut recipients: Vec<&str> = by_id.values().map(|(to, _)| to.as_str()).collect();
    recipients.sort_unstable();
    let mut expected: Vec<String> = (0..tenants_n).map(|i| format!("owner{i}@chaos.test")).collect();
    expected.sort();
    assert_eq!(recipients, expected, "exactly one distinct welcome email per sign-up");
    let resent: usize = by_id.values().map(|(_, n)| n - 1).sum();
    // The kills did hit running work.
    let interrupted: i64 = database::query("SELECT COUNT(*) FROM job_history WHERE reason LIKE '%interrupted%'")
        .scalar(db.read())
        .await
        .expect("history");
    assert!(interrupted > 0, "no kill interrupted a job: the test proved nothing");
    println!(
        "figure: {which:?}: {kills} kills, {interrupted} attempts interrupted, {tenants_n} tenants active in {:.1} s; \
         {resent} resend(s) with the same Message-ID",
        started.elapsed().as_secs_f64()
    );
}
