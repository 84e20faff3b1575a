//! The welcome reminder and "send me a new link", on both backends, with the
//! engine's manual clock standing in for the 48 hours: one reminder with a fresh
//! link when the welcome link was not used, none when it was, none more when the
//! reminder job runs again; new links only for active accounts, the same answer
//! for every address, capped per address.

use std::sync::Arc;
use std::time::Duration;

use backoffice::Error;
use backoffice::env::Env;
use backoffice::identity::Identity;
use backoffice::mail::{Letters, Mail, Transport};
use backoffice::password::Hasher;
use backoffice::password_link::PasswordLinks;
use backoffice::registry;
use backoffice::tenant_db::TenantDbs;
use backoffice::tenants::{TenantStatus, Tenants};
use backoffice::testing::{link_token, plain_text};
use database::query;
use jobengine::testing::{TestDb, Which, manual_clock};
use jobengine::{JobState, Jobs, ManualClock, Worker, WorkerConfig};
use tokio_util::sync::CancellationToken;

jobengine::on_both!(
    an_unused_link_gets_one_reminder_with_a_fresh_link,
    a_used_link_gets_no_reminder,
    a_new_link_goes_only_to_active_accounts_and_is_capped,
);

/// The reminder delay these tests set (the default is 48 h; the clock jumps it).
const AFTER: Duration = Duration::from_secs(48 * 3600);

struct Bundle {
    _db: TestDb,
    jobs: Jobs,
    clock: ManualClock,
    identity: Identity,
    tenants: Tenants,
    links: PasswordLinks,
    env: Arc<Env>,
    dir: tempfile::TempDir,
}

async fn setup(which: Which) -> Bundle {
    let db = TestDb::new(which).await;
    let clock = manual_clock();
    let jobs = db.jobs_with_clock(clock.clone()).await.with_default_max_attempts(2);
    jobs.db().migrate(backoffice::db::migrations()).await.expect("control-plane migrations");
    let identity = Identity::new(jobs.db().clone(), Hasher::new(4).expect("hasher"), jobs.clock().clone());
    let dir = tempfile::tempdir().expect("tempdir");
    let dbs = TenantDbs::new(jobs.db(), dir.path().to_path_buf());
    let letters = Letters::new("Back Office <no-reply@backoffice.test>", "http://bo.test")
        .expect("letters")
        .with_per_recipient_per_hour(3)
        .with_welcome_reminder_after(AFTER);
    let mail = Mail { letters: letters.clone(), transport: Transport::Files(dir.path().join("mail")) };
    let env = Arc::new(Env { jobs: jobs.clone(), db: jobs.db().clone(), tenant_dbs: dbs, fault: None, mail });
    jobs.install_end_hooks(&registry(), env.clone());
    Bundle {
        tenants: Tenants::new(jobs.clone(), letters.clone()),
        links: PasswordLinks::new(jobs.clone(), letters),
        _db: db,
        jobs,
        clock,
        identity,
        env,
        dir,
    }
}

fn start_worker(b: &Bundle) -> (CancellationToken, tokio::task::JoinHandle<()>) {
    let mut cfg = WorkerConfig { poll: Duration::from_millis(20), ..WorkerConfig::default() };
    cfg.backoff.base = Duration::from_millis(50);
    let w = Worker::new(&b.jobs, registry(), b.env.clone(), cfg);
    let stop = CancellationToken::new();
    let s = stop.clone();
    (stop, tokio::spawn(async move { w.run(s).await.expect("worker") }))
}

/// Polls `check` every 20 ms for up to 10 s (a worker on another task does the
/// work; there is no event to await across it).
async fn eventually<T>(what: &str, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    for _ in 0..500 {
        if let Some(v) = check().await {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{what}: not within 10 s");
}

async fn wait_job(jobs: &Jobs, id: i64, want: JobState) {
    eventually(&format!("job {id} {want:?}"), async || {
        (jobs.get(id).await.expect("job").job.state == want).then_some(())
    })
    .await;
}

/// The `.eml` files delivered so far, decoded, oldest first by outbox time.
fn mails(b: &Bundle) -> Vec<String> {
    let mut found: Vec<(std::time::SystemTime, String)> = std::fs::read_dir(b.dir.path().join("mail"))
        .map(|rd| {
            rd.flatten()
                .filter(|e| e.path().extension().is_some_and(|x| x == "eml"))
                .map(|e| {
                    let t = e.metadata().and_then(|m| m.modified()).expect("mtime");
                    (t, plain_text(&std::fs::read_to_string(e.path()).expect("read eml")))
                })
                .collect()
        })
        .unwrap_or_default();
    found.sort_by_key(|(t, _)| *t);
    found.into_iter().map(|(_, m)| m).collect()
}

async fn wait_mails(b: &Bundle, n: usize) -> Vec<String> {
    eventually(&format!("{n} emails"), async || Some(mails(b)).filter(|m| m.len() >= n)).await
}

/// Outbox rows of `kind`.
async fn outbox(b: &Bundle, kind: &str) -> i64 {
    query("SELECT COUNT(*) FROM outbox WHERE kind = $1").bind(kind).scalar(b.jobs.db().read()).await.expect("count")
}

/// The reminder job (there is at most one per account: its unique key).
async fn reminder_job(b: &Bundle) -> jobengine::JobRow {
    let id: i64 = query("SELECT id FROM jobs WHERE kind = 'mail.welcome_reminder'")
        .scalar(b.jobs.db().read())
        .await
        .expect("one reminder job is scheduled");
    b.jobs.get(id).await.expect("job").job
}

/// A tenant created by a super admin and provisioned by a worker that keeps
/// running; returns the welcome email.
async fn provisioned(
    b: &Bundle,
    name: &str,
    email: &str,
) -> (String, (CancellationToken, tokio::task::JoinHandle<()>)) {
    b.identity.seed_super_admin("root@example.com", Some("a long enough password")).await.expect("seed");
    let admin = b.identity.login("root@example.com", "a long enough password").await.expect("login").user;
    let created = b.tenants.create_by_admin(&admin, name, email).await.expect("create");
    let worker = start_worker(b);
    eventually("tenant active", async || {
        (b.tenants.get(&created.tenant.id).await.expect("get").status() == TenantStatus::Active).then_some(())
    })
    .await;
    let welcome = wait_mails(b, 1).await.remove(0);
    assert!(welcome.contains("Your new Back Office workspace is ready"), "{welcome}");
    (welcome, worker)
}

async fn an_unused_link_gets_one_reminder_with_a_fresh_link(which: Which) {
    let b = setup(which).await;
    let (welcome, (stop, handle)) = provisioned(&b, "Sleepy Co", "owner@sleepy.test").await;
    let old = link_token(&welcome).expect("welcome link");

    // Scheduled in the activation's transaction, due 48 h after it.
    let job = reminder_job(&b).await;
    assert_eq!(job.state, JobState::Scheduled);
    let sent_at: i64 = query("SELECT created_at FROM outbox WHERE kind = 'welcome'")
        .scalar(b.jobs.db().read())
        .await
        .expect("welcome row");
    assert_eq!(job.run_at, sent_at + AFTER.as_micros() as i64);

    // 48 h pass: one reminder, with a link that is not the first one.
    b.clock.advance(AFTER + Duration::from_secs(1));
    wait_job(&b.jobs, job.id, JobState::Succeeded).await;
    let all = wait_mails(&b, 2).await;
    let reminder = &all[1];
    assert!(reminder.contains("Reminder") || reminder.contains("not chosen a password yet"), "{reminder}");
    assert!(reminder.contains("Username:   owner@sleepy.test"), "{reminder}");
    let fresh = link_token(reminder).expect("a fresh link");
    assert_ne!(fresh, old);

    // Run again (a retry, or a worker killed after its commit): nothing more,
    // and the fresh link keeps working.
    b.jobs.requeue(job.id, "test").await.expect("requeue");
    wait_job(&b.jobs, job.id, JobState::Succeeded).await;
    assert_eq!(outbox(&b, "welcome_reminder").await, 1, "one reminder, ever");
    let deliveries: i64 =
        query("SELECT COUNT(*) FROM jobs WHERE kind = 'mail.send'").scalar(b.jobs.db().read()).await.expect("count");
    assert_eq!(deliveries, 2, "welcome + one reminder");

    // The first link was ended by the fresh one; the fresh one sets the password.
    assert!(matches!(b.identity.set_password(&old, "a brand new password").await, Err(Error::BadToken)));
    b.identity.set_password(&fresh, "a brand new password").await.expect("the reminder's link works");
    b.identity.login("owner@sleepy.test", "a brand new password").await.expect("signs in");
    stop.cancel();
    handle.await.expect("worker");
    assert_eq!(mails(&b).len(), 2, "welcome and one reminder");
}

async fn a_used_link_gets_no_reminder(which: Which) {
    let b = setup(which).await;
    let (welcome, (stop, handle)) = provisioned(&b, "Eager Co", "owner@eager.test").await;
    let token = link_token(&welcome).expect("welcome link");
    b.identity.set_password(&token, "chosen at once!").await.expect("set password");

    let job = reminder_job(&b).await;
    b.clock.advance(AFTER + Duration::from_secs(1));
    wait_job(&b.jobs, job.id, JobState::Succeeded).await;
    stop.cancel();
    handle.await.expect("worker");
    assert_eq!(outbox(&b, "welcome_reminder").await, 0);
    assert_eq!(mails(&b).len(), 1, "only the welcome email");
    b.identity.login("owner@eager.test", "chosen at once!").await.expect("the password still works");
}

async fn a_new_link_goes_only_to_active_accounts_and_is_capped(which: Which) {
    let b = setup(which).await;
    let (welcome, (stop, handle)) = provisioned(&b, "Lost Co", "owner@lost.test").await;
    let old = link_token(&welcome).expect("welcome link");

    // Bad input names the field; unknown and super-admin addresses get the same
    // answer as a real one, and no email.
    let bad = b.links.request("not an address").await;
    assert!(matches!(&bad, Err(Error::Invalid(f)) if f.0[0].field == "email"), "{bad:?}");
    b.links.request("nobody@lost.test").await.expect("same answer");
    b.links.request("root@example.com").await.expect("same answer");
    assert_eq!(outbox(&b, "password_link").await, 0);

    // A real one: a fresh link (the welcome link's time ran out), which works.
    b.clock.advance(Duration::from_secs(25 * 3600));
    assert!(matches!(b.identity.set_password(&old, "too late for this").await, Err(Error::BadToken)));
    b.links.request(" Owner@Lost.test ").await.expect("asked");
    let second = wait_mails(&b, 2).await.remove(1);
    assert!(second.contains("asked for a new link"), "{second}");
    assert_ne!(link_token(&second).expect("link"), old);

    // Asking again ends that link; past the cap (3 an hour here) nothing is sent.
    for _ in 0..4 {
        b.links.request("owner@lost.test").await.expect("same answer under the cap and over it");
    }
    assert_eq!(outbox(&b, "password_link").await, 3, "three an hour");
    let links: Vec<String> = wait_mails(&b, 4)
        .await
        .iter()
        .filter(|m| m.contains("asked for a new link"))
        .filter_map(|m| link_token(m))
        .collect();
    assert_eq!(links.len(), 3);
    // One live link per account: of the three, only the newest sets the password.
    let mut worked = 0;
    for t in &links {
        match b.identity.set_password(t, "a brand new password").await {
            Ok(_) => worked += 1,
            Err(Error::BadToken) => {}
            Err(e) => panic!("{e:?}"),
        }
    }
    assert_eq!(worked, 1, "earlier links were ended");
    stop.cancel();
    handle.await.expect("worker");

    // A failed tenant's admin gets nothing.
    query("UPDATE tenants SET status = 'failed'").execute(b.jobs.db().write()).await.expect("fail it");
    b.clock.advance(Duration::from_secs(2 * 3600));
    b.links.request("owner@lost.test").await.expect("same answer");
    assert_eq!(outbox(&b, "password_link").await, 3, "nothing for a failed tenant");
}
