//! Crash recovery with real processes, on both backends: `kill -9` a worker that
//! holds a job and the job runs again elsewhere; SIGSTOP a worker past its lease and
//! its late result is refused when it wakes.

use std::time::{Duration, Instant};

use jobengine::builtin::Sleep;
use jobengine::testing::{TestDb, Which};
use jobengine::{JobDetail, JobState, Jobs};
use nix::sys::signal::Signal;

mod common;
use common::WorkerProc;

jobengine::on_both!(
    kill_9_job_runs_again,
    kill_9_prefetched_job_runs_again,
    kill_9_is_noticed_long_before_the_lease_expires,
    stale_worker_cannot_complete,
    sigterm_releases_running_job,
    kill_9_at_every_provisioning_step,
    kill_9_on_the_last_allowed_attempt_fails_the_tenant,
);

async fn wait_until(jobs: &Jobs, id: i64, within: Duration, what: &str, ok: impl Fn(&JobDetail) -> bool) -> JobDetail {
    let start = Instant::now();
    loop {
        let d = jobs.get(id).await.expect("get job");
        if ok(&d) {
            return d;
        }
        assert!(start.elapsed() < within, "timed out waiting for {what}; job: {:?}\nhistory: {:#?}", d.job, d.history);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn kill_9_job_runs_again(which: Which) {
    let db = TestDb::new(which).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let jobs = db.jobs().await;
    let e = jobs.enqueue(&Sleep { ms: 1500 }).await.expect("enqueue");
    let mut a = WorkerProc::start(&db.url, dir.path(), "a", 2000);
    wait_until(&jobs, e.id, Duration::from_secs(30), "worker A to take the job", |d| {
        d.job.state == JobState::Processing && a.owns(d.job.worker_id.as_deref())
    })
    .await;
    a.signal(Signal::SIGKILL);
    a.wait_exit(Duration::from_secs(5));
    let b = WorkerProc::start(&db.url, dir.path(), "b", 2000);
    let d = wait_until(&jobs, e.id, Duration::from_secs(30), "the job to succeed on worker B", |d| {
        d.job.state == JobState::Succeeded
    })
    .await;
    let seen: Vec<_> = d.history.iter().map(|h| h.state).collect();
    use JobState::*;
    assert_eq!(seen, [Enqueued, Processing, Enqueued, Processing, Succeeded], "{:#?}", d.history);
    assert!(a.owns(d.history[1].worker_id.as_deref()));
    let interrupted = &d.history[2];
    assert!(a.owns(interrupted.worker_id.as_deref()), "the interrupted attempt names worker A");
    assert!(interrupted.reason.as_deref().is_some_and(|r| r.starts_with("attempt 1 interrupted")), "{interrupted:?}");
    assert!(b.owns(d.history[3].worker_id.as_deref()) && b.owns(d.history[4].worker_id.as_deref()));
    assert_eq!(d.job.attempt, 1, "the interrupted attempt is not counted");
}

/// A job a killed worker had claimed ahead (waiting for its only slot, in its
/// prefetch buffer) is rescued and runs elsewhere like a running one.
async fn kill_9_prefetched_job_runs_again(which: Which) {
    let db = TestDb::new(which).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let jobs = db.jobs().await;
    let slow = jobs.enqueue(&Sleep { ms: 60_000 }).await.expect("enqueue");
    let e = jobs.enqueue(&Sleep { ms: 10 }).await.expect("enqueue");
    let mut a = WorkerProc::start_with(&db.url, dir.path(), "a", 2000, &[("WORKER_CONCURRENCY", "1")]);
    wait_until(&jobs, slow.id, Duration::from_secs(30), "worker A to run the slow job", |d| {
        d.job.state == JobState::Processing
    })
    .await;
    wait_until(&jobs, e.id, Duration::from_secs(30), "worker A to claim the second job ahead", |d| {
        d.job.state == JobState::Processing && a.owns(d.job.worker_id.as_deref())
    })
    .await;
    a.signal(Signal::SIGKILL);
    a.wait_exit(Duration::from_secs(5));
    let b = WorkerProc::start(&db.url, dir.path(), "b", 2000);
    let d = wait_until(&jobs, e.id, Duration::from_secs(30), "the job to succeed on worker B", |d| {
        d.job.state == JobState::Succeeded
    })
    .await;
    let seen: Vec<_> = d.history.iter().map(|h| h.state).collect();
    use JobState::*;
    assert_eq!(seen, [Enqueued, Processing, Enqueued, Processing, Succeeded], "{:#?}", d.history);
    assert!(a.owns(d.history[2].worker_id.as_deref()), "the interrupted claim names worker A");
    assert!(b.owns(d.history[4].worker_id.as_deref()));
    assert_eq!(d.job.attempt, 1, "the interrupted claim is not counted");
}

/// With a lease of a minute, a killed worker's job still runs again on the other
/// worker within seconds: the killed process's advisory lock (PostgreSQL) or pid
/// (SQLite) is gone, and the other worker's rescuer sees it on its next pass.
async fn kill_9_is_noticed_long_before_the_lease_expires(which: Which) {
    let db = TestDb::new(which).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let jobs = db.jobs().await;
    let lease_ms = 60_000;
    // One after the other: two processes migrating a fresh SQLite file at once
    // can make one fail (`UNIQUE constraint failed: _sqlx_migrations.version`:
    // sqlx's SQLite migrator takes no lock).
    let a = WorkerProc::start(&db.url, dir.path(), "a", lease_ms);
    wait_started(&a).await;
    let b = WorkerProc::start(&db.url, dir.path(), "b", lease_ms);
    wait_started(&b).await;
    let e = jobs.enqueue(&Sleep { ms: 30_000 }).await.expect("enqueue");
    let d = wait_until(&jobs, e.id, Duration::from_secs(30), "a worker to take the job", |d| {
        d.job.state == JobState::Processing
    })
    .await;
    let (mut first, second) = if a.owns(d.job.worker_id.as_deref()) { (a, b) } else { (b, a) };
    first.signal(Signal::SIGKILL);
    let killed = Instant::now();
    first.wait_exit(Duration::from_secs(5));
    // Far below the lease: an expired lease cannot be what brought it back. (The
    // benchmark measures the figure: p99 under 2 s.)
    let d = loop {
        let d = jobs.get(e.id).await.expect("get job");
        if d.job.state == JobState::Processing && second.owns(d.job.worker_id.as_deref()) {
            break d;
        }
        assert!(
            killed.elapsed() < Duration::from_secs(10),
            "the job did not run again on the other worker: {:?}\n{:#?}\nthe other worker's log:\n{}",
            d.job,
            d.history,
            second.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let after = killed.elapsed();
    let interrupted = &d.history[d.history.len() - 2];
    assert!(first.owns(interrupted.worker_id.as_deref()), "{:#?}", d.history);
    assert!(
        interrupted.reason.as_deref().is_some_and(|r| r.contains("is gone, found dead before its lease expired")),
        "{interrupted:?}"
    );
    assert_eq!(d.job.attempt, 1, "the interrupted attempt is not counted");
    println!(
        "figure: {which:?}: kill -9 to running again on the other worker: {:.0} ms (lease {lease_ms} ms)",
        after.as_secs_f64() * 1000.0
    );
}

async fn wait_started(w: &WorkerProc) {
    let start = Instant::now();
    while !w.log().contains("worker started") {
        assert!(start.elapsed() < Duration::from_secs(30), "the worker did not start; its log:\n{}", w.log());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn stale_worker_cannot_complete(which: Which) {
    let db = TestDb::new(which).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let jobs = db.jobs().await;
    let lease_ms = 1500;
    let e = jobs.enqueue(&Sleep { ms: 2500 }).await.expect("enqueue");
    let a = WorkerProc::start(&db.url, dir.path(), "a", lease_ms);
    wait_until(&jobs, e.id, Duration::from_secs(30), "worker A to take the job", |d| {
        d.job.state == JobState::Processing && a.owns(d.job.worker_id.as_deref())
    })
    .await;
    let taken_at = Instant::now();
    a.signal(Signal::SIGSTOP);
    let b = WorkerProc::start(&db.url, dir.path(), "b", lease_ms);
    wait_until(&jobs, e.id, Duration::from_secs(30), "worker B to take the job over", |d| {
        d.job.state == JobState::Processing && b.owns(d.job.worker_id.as_deref())
    })
    .await;
    // Wake A only once its own sleep is over, so it tries to report success while
    // B's attempt is still running.
    let a_done = Duration::from_millis(2700);
    if let Some(rest) = a_done.checked_sub(taken_at.elapsed()) {
        tokio::time::sleep(rest).await;
    }
    a.signal(Signal::SIGCONT);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mid = jobs.get(e.id).await.expect("get");
    assert_eq!(
        mid.job.state,
        JobState::Processing,
        "A's late result must not complete B's attempt: {:#?}",
        mid.history
    );
    assert!(b.owns(mid.job.worker_id.as_deref()));
    let d =
        wait_until(&jobs, e.id, Duration::from_secs(30), "B to finish", |d| d.job.state == JobState::Succeeded).await;
    let successes: Vec<_> = d.history.iter().filter(|h| h.state == JobState::Succeeded).collect();
    assert_eq!(successes.len(), 1);
    assert!(b.owns(successes[0].worker_id.as_deref()), "only B's attempt completed: {:#?}", d.history);
    assert_eq!(successes[0].attempt, 1);
    let log = a.log();
    assert!(
        log.contains("stale completion refused") || log.contains("lease lost"),
        "worker A noticed it no longer held the job; its log:\n{log}"
    );
}

async fn sigterm_releases_running_job(which: Which) {
    let db = TestDb::new(which).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let jobs = db.jobs().await;
    let e = jobs.enqueue(&Sleep { ms: 60_000 }).await.expect("enqueue");
    let mut a = WorkerProc::start(&db.url, dir.path(), "a", 10_000);
    wait_until(&jobs, e.id, Duration::from_secs(30), "worker A to take the job", |d| {
        d.job.state == JobState::Processing
    })
    .await;
    a.signal(Signal::SIGTERM);
    let status = a.wait_exit(Duration::from_secs(10));
    assert!(status.success(), "clean exit on SIGTERM: {status:?}; log:\n{}", a.log());
    let d = jobs.get(e.id).await.expect("get");
    assert_eq!(d.job.state, JobState::Enqueued, "released to the queue at once, not left to the rescuer");
    assert_eq!(d.job.attempt, 0);
    assert!(jobs.workers(60_000_000).await.expect("workers").is_empty(), "deregistered");
}

/// Kill the worker while provisioning is at each step in turn; the tenant still
/// ends active with one database and one seed, and every interruption is on record.
async fn kill_9_at_every_provisioning_step(which: Which) {
    use backoffice::jobs::provision::STEPS;
    use backoffice::tenants::{TenantStatus, Tenants};

    let db = TestDb::new(which).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (jobs, env) = common::open_control_plane(&db.url, dir.path()).await;
    let tenants = Tenants::new(jobs.clone(), env.mail.letters.clone());
    let created = tenants.sign_up("Phoenix Ltd", "owner@phoenix.test").await.expect("sign up").expect("created");
    let id = created.tenant.id.clone();
    let sink = backoffice::testing::SmtpSink::start();
    let smtp = ("SMTP_URL", sink.url.as_str());
    let slow = [("PROVISION_FAULT", "slow:1500"), smtp];
    for (i, step) in STEPS.iter().enumerate() {
        let mut w = WorkerProc::start_with(&db.url, dir.path(), &format!("w{i}"), 1500, &slow);
        let start = Instant::now();
        loop {
            let t = tenants.get(&id).await.expect("tenant");
            // Running in this worker: the job is still `processing` for a while
            // after the previous worker's death, and on a loaded machine that
            // worker may have reached this step before its kill landed.
            let job = jobs.get(created.job_id).await.expect("job").job;
            if t.step.as_deref() == Some(*step) && job.state == JobState::Processing && w.owns(job.worker_id.as_deref())
            {
                break;
            }
            assert!(start.elapsed() < Duration::from_secs(60), "never reached {step:?}: {t:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        w.signal(Signal::SIGKILL);
        w.wait_exit(Duration::from_secs(5));
    }
    let _last = WorkerProc::start_with(&db.url, dir.path(), "final", 1500, &[smtp]);
    let start = Instant::now();
    // The tenant turns active inside the job's last step; the job's completion
    // is written just after the handler returns: wait for both.
    let (t, job) = loop {
        let t = tenants.get(&id).await.expect("tenant");
        let job = jobs.get(created.job_id).await.expect("job");
        if t.status() == TenantStatus::Active && job.job.state != JobState::Processing {
            break (t, job);
        }
        assert!(start.elapsed() < Duration::from_secs(60), "never became active: {t:?}, job {:?}", job.job.state);
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let interrupted =
        job.history.iter().filter(|h| h.reason.as_deref().is_some_and(|r| r.contains("interrupted"))).count();
    assert_eq!(interrupted, STEPS.len(), "{:#?}", job.history);
    assert_eq!(job.job.state, JobState::Succeeded);
    assert_eq!(job.job.attempt, 1, "interrupted attempts do not count");
    // One database, one seed.
    assert!(env.tenant_dbs.exists(&t.db_name).await.expect("exists"));
    let tenant_db = env.tenant_dbs.open(&t.db_name).await.expect("open tenant db");
    let roles: i64 = database::query("SELECT COUNT(*) FROM roles").scalar(tenant_db.read()).await.expect("roles");
    let users: i64 = database::query("SELECT COUNT(*) FROM users").scalar(tenant_db.read()).await.expect("users");
    assert_eq!((roles, users), (3, 1));
    if which == Which::Sqlite {
        let files = std::fs::read_dir(dir.path().join("tenants"))
            .expect("tenants dir")
            .filter(|e| e.as_ref().is_ok_and(|e| e.path().extension().is_some_and(|x| x == "db")))
            .count();
        assert_eq!(files, 1, "one tenant database file");
    }
    // One welcome email, received by the SMTP server, for the tenant's admin.
    let mails = sink.wait_for(1, Duration::from_secs(20));
    std::thread::sleep(Duration::from_secs(1));
    let mails = if mails.len() == 1 { sink.messages() } else { mails };
    assert_eq!(mails.len(), 1, "exactly one welcome email: {mails:#?}");
    assert!(mails[0].contains("X-Envelope-To: owner@phoenix.test"), "{}", mails[0]);
    assert!(backoffice::testing::link_token(&mails[0]).is_some(), "{}", mails[0]);
}

/// The worker dies during the last attempt a provisioning job is allowed (one
/// interruption allowed here): another worker's rescuer dead-letters the job, and
/// the job's end hook, in that same transaction, marks the tenant failed and
/// tells the super admin who created it. No sweep exists to do it instead.
async fn kill_9_on_the_last_allowed_attempt_fails_the_tenant(which: Which) {
    use backoffice::identity::Identity;
    use backoffice::notify::Notifications;
    use backoffice::password::Hasher;
    use backoffice::tenants::{TenantStatus, Tenants};

    let db = TestDb::new(which).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (jobs, env) = common::open_control_plane(&db.url, dir.path()).await;
    let identity = Identity::new(jobs.db().clone(), Hasher::new(1).expect("hasher"), jobs.clock().clone());
    identity.seed_super_admin("root@lastgasp.test", Some("a long enough password")).await.expect("seed");
    let admin = identity.login("root@lastgasp.test", "a long enough password").await.expect("login").user;
    let tenants = Tenants::new(jobs.clone(), env.mail.letters.clone());
    let created = tenants.create_by_admin(&admin, "Lastgasp Ltd", "owner@lastgasp.test").await.expect("create");

    let last = [("JOB_MAX_INTERRUPTIONS", "1"), ("PROVISION_FAULT", "slow:5000")];
    let mut first = WorkerProc::start_with(&db.url, dir.path(), "first", 1500, &last);
    wait_until(&jobs, created.job_id, Duration::from_secs(30), "the first worker to run it", |d| {
        d.job.state == JobState::Processing && first.owns(d.job.worker_id.as_deref())
    })
    .await;
    first.signal(Signal::SIGKILL);
    first.wait_exit(Duration::from_secs(5));

    let _rescuer = WorkerProc::start_with(&db.url, dir.path(), "rescuer", 1500, &last[..1]);
    let start = Instant::now();
    let t = loop {
        let t = tenants.get(&created.tenant.id).await.expect("tenant");
        if t.status() != TenantStatus::Provisioning {
            break t;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "still provisioning: {t:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(t.status(), TenantStatus::Failed, "{t:?}");
    // Found dead by its lock or pid, or by its lease if that expired first.
    assert!(
        t.last_error.as_deref().is_some_and(|e| e.contains("stopped renewing its lease") || e.contains("is gone")),
        "{t:?}"
    );
    assert_eq!(jobs.get(created.job_id).await.expect("job").job.state, JobState::Dead);
    let notes = Notifications::new(jobs.db().clone()).pending(&admin.id, 0).await.expect("notifications");
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert_eq!(notes[0].kind, "error");
    assert!(notes[0].body.contains("Lastgasp Ltd"), "{notes:?}");
}
