//! The domain on both backends: identity, tenant creation, provisioning (success,
//! idempotent re-run, failure), bad input.

use std::sync::Arc;
use std::time::Duration;

use backoffice::Error;
use backoffice::env::{Env, Fault};
use backoffice::identity::{Identity, Role};
use backoffice::mail::{Letters, Mail, Transport};
use backoffice::notify::Notifications;
use backoffice::password::Hasher;
use backoffice::registry;
use backoffice::tenant_db::TenantDbs;
use backoffice::tenants::{TenantStatus, Tenants};
use backoffice::testing::{Mood, SmtpSink, link_token, plain_text};
use database::query;
use jobengine::testing::{TestDb, Which};
use jobengine::{JobState, Jobs, Worker, WorkerConfig};
use tokio_util::sync::CancellationToken;

jobengine::on_both!(
    login_and_sessions,
    an_older_hash_is_stored_again_at_sign_in,
    admin_creates_tenant_and_it_provisions,
    bad_input_writes_nothing,
    provisioning_failure_marks_tenant_failed,
    worker_dying_on_the_last_attempt_fails_the_tenant,
    sign_up_with_a_known_email_creates_nothing_and_tells_the_owner,
    deleting_a_running_provisioning_cancels_it,
    pruning_removes_only_expired_sign_in_rows,
);

async fn sign_up_with_a_known_email_creates_nothing_and_tells_the_owner(which: Which) {
    let b = setup(which).await;
    b.identity.seed_super_admin("root@example.com", Some("a long enough password")).await.expect("seed");
    let answer = b.tenants.sign_up("Shadow Corp", "ROOT@example.com").await.expect("sign up");
    assert!(answer.is_none(), "nothing created");
    let (stop, handle) = start_worker(&b, None);
    let mails = wait_mail(&b, 1).await;
    stop.cancel();
    handle.await.expect("worker");
    assert_eq!(mails.len(), 1);
    assert!(mails[0].contains("You already have an account"), "{}", mails[0]);
    assert!(!mails[0].contains("set-password"), "no link to take over the account: {}", mails[0]);
    assert!(b.tenants.list(None, None, 10).await.expect("list").is_empty(), "no tenant");
}

struct Bundle {
    /// Keeps the test database alive.
    _db: TestDb,
    jobs: Jobs,
    identity: Identity,
    tenants: Tenants,
    dbs: TenantDbs,
    mail: Mail,
    dir: tempfile::TempDir,
}

async fn setup(which: Which) -> Bundle {
    let db = TestDb::new(which).await;
    let jobs = db.jobs().await.with_default_max_attempts(2);
    jobs.db().migrate(backoffice::db::migrations()).await.expect("control-plane migrations");
    let identity = Identity::new(jobs.db().clone(), Hasher::new(4).expect("hasher"), jobs.clock().clone());
    let dir = tempfile::tempdir().expect("tempdir");
    let dbs = TenantDbs::new(jobs.db(), dir.path().to_path_buf());
    let letters = Letters::new("Back Office <no-reply@backoffice.test>", "http://bo.test").expect("letters");
    let mail = Mail { letters: letters.clone(), transport: Transport::Files(dir.path().join("mail")) };
    // As `backoffice::open` does: the end hooks see every job that ends, with or
    // without a worker running.
    let env =
        Env { jobs: jobs.clone(), db: jobs.db().clone(), tenant_dbs: dbs.clone(), fault: None, mail: mail.clone() };
    jobs.install_end_hooks(&registry(), Arc::new(env));
    Bundle { tenants: Tenants::new(jobs.clone(), letters), _db: db, jobs, identity, dbs, mail, dir }
}

fn start_worker(b: &Bundle, fault: Option<Fault>) -> (CancellationToken, tokio::task::JoinHandle<()>) {
    let env =
        Env { jobs: b.jobs.clone(), db: b.jobs.db().clone(), tenant_dbs: b.dbs.clone(), fault, mail: b.mail.clone() };
    let mut cfg = WorkerConfig { poll: Duration::from_millis(20), ..WorkerConfig::default() };
    cfg.backoff.base = Duration::from_millis(50);
    let w = Worker::new(&b.jobs, registry(), Arc::new(env), cfg);
    let stop = CancellationToken::new();
    let s = stop.clone();
    (stop, tokio::spawn(async move { w.run(s).await.expect("worker") }))
}

/// Waits up to 10 s for job `id` to reach `want` (its outcome is recorded a
/// moment after the tenant's own status changes).
async fn wait_job(jobs: &Jobs, id: i64, want: JobState) {
    let mut state = None;
    for _ in 0..500 {
        let s = jobs.get(id).await.expect("job").job.state;
        if s == want {
            return;
        }
        state = Some(s);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("job {id} is {state:?} after 10 s, not {want:?}");
}

/// The `.eml` files written so far, once there are at least `n` (or after 10 s).
async fn wait_mail(b: &Bundle, n: usize) -> Vec<String> {
    let dir = b.dir.path().join("mail");
    for _ in 0..500 {
        let mut found = Vec::new();
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for e in entries.flatten() {
                if e.path().extension().is_some_and(|x| x == "eml") {
                    found.push(plain_text(&std::fs::read_to_string(e.path()).expect("read eml")));
                }
            }
        }
        if found.len() >= n {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("fewer than {n} emails in {} after 10 s", dir.display());
}

async fn wait_status(t: &Tenants, id: &str, want: TenantStatus) -> backoffice::tenants::Tenant {
    for _ in 0..1000 {
        let got = t.get(id).await.expect("get tenant");
        if got.status() == want {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("tenant {id} never became {want:?}: {:?}", t.get(id).await.expect("get"));
}

async fn login_and_sessions(which: Which) {
    let b = setup(which).await;
    let generated = b.identity.seed_super_admin("Root@Example.com", None).await.expect("seed");
    let password = generated.expect("a password is generated when none is given");
    assert!(password.len() >= 20);
    assert_eq!(b.identity.seed_super_admin("root@example.com", Some("another password")).await.expect("seed"), None);

    let s = b.identity.login(" ROOT@example.com ", &password).await.expect("login");
    assert_eq!(s.user.role, Role::SuperAdmin);
    assert_eq!(
        b.identity.authenticate(&s.token).await.expect("auth").map(|u| u.email),
        Some("root@example.com".into())
    );
    assert!(matches!(b.identity.login("root@example.com", "wrong password!").await, Err(Error::BadCredentials)));
    assert!(matches!(b.identity.login("nobody@example.com", &password).await, Err(Error::BadCredentials)));
    b.identity.logout(&s.token).await.expect("logout");
    assert_eq!(b.identity.authenticate(&s.token).await.expect("auth"), None, "revoked server-side");

    // Brute force: past five failures this source must wait, even with the right
    // password (the rest, per address and under concurrency, in `throttle.rs`).
    for _ in 0..7 {
        let _ = b.identity.login("root@example.com", "guess guess guess").await;
    }
    assert!(matches!(b.identity.login("root@example.com", &password).await, Err(Error::RateLimited { .. })));
}

/// A password stored at an earlier hash setting still signs in, and that sign-in
/// stores it at the current one; a wrong password changes nothing.
async fn an_older_hash_is_stored_again_at_sign_in(which: Which) {
    use argon2::password_hash::{PasswordHasher, SaltString, rand_core::OsRng};
    let b = setup(which).await;
    let password = "a long enough password";
    b.identity.seed_super_admin("root@example.com", Some(password)).await.expect("seed");
    let earlier = argon2::Argon2::new(
        argon2::Algorithm::Argon2id,
        argon2::Version::V0x13,
        argon2::Params::new(19_456, 2, 1, None).expect("params"),
    )
    .hash_password(password.as_bytes(), &SaltString::generate(&mut OsRng))
    .expect("hash")
    .to_string();
    let db = b.jobs.db();
    query("UPDATE users SET password_hash = $1").bind(&earlier).execute(db.write()).await.expect("store");
    let stored = || async { query("SELECT password_hash FROM users").scalar::<String>(db.read()).await.expect("hash") };

    assert!(matches!(b.identity.login("root@example.com", "wrong password!").await, Err(Error::BadCredentials)));
    assert_eq!(stored().await, earlier, "a failed sign-in stores nothing");
    b.identity.login("root@example.com", password).await.expect("the earlier setting signs in");
    let now = stored().await;
    assert_ne!(now, earlier);
    assert!(Hasher::is_current(&now), "{now}");
    b.identity.login("root@example.com", password).await.expect("and so does the new hash");
    assert_eq!(stored().await, now, "a current hash is left alone");
}

async fn admin_creates_tenant_and_it_provisions(which: Which) {
    let b = setup(which).await;
    b.identity.seed_super_admin("root@example.com", Some("a long enough password")).await.expect("seed");
    let admin = b.identity.login("root@example.com", "a long enough password").await.expect("login").user;
    let started = std::time::Instant::now();
    let created = b.tenants.create_by_admin(&admin, "Acme Corp", "Owner@Acme.test").await.expect("create");
    assert!(started.elapsed() < Duration::from_millis(500), "returns at once: {:?}", started.elapsed());
    assert_eq!(created.tenant.status(), TenantStatus::Provisioning);
    assert_eq!(created.tenant.admin_email, "owner@acme.test");
    assert_eq!(created.tenant.initiated_by.as_deref(), Some(admin.id.as_str()));
    let dup = b.tenants.create_by_admin(&admin, "  ACME   corp ", "x@acme.test").await;
    assert!(matches!(dup, Err(Error::AlreadyExists { field: "name", .. })), "{dup:?}");

    let (stop, handle) = start_worker(&b, None);
    let t = wait_status(&b.tenants, &created.tenant.id, TenantStatus::Active).await;
    assert_eq!(t.step.as_deref(), Some("done"));
    assert!(b.dbs.exists(&t.db_name).await.expect("exists"));
    wait_job(&b.jobs, created.job_id, JobState::Succeeded).await;

    // Re-running the job (as after a crash past activation) changes nothing.
    b.jobs.requeue(created.job_id, "test").await.expect("requeue");
    wait_job(&b.jobs, created.job_id, JobState::Succeeded).await;
    let mails = wait_mail(&b, 1).await;
    stop.cancel();
    handle.await.expect("worker");
    let notes = Notifications::new(b.jobs.db().clone()).pending(&admin.id, 0).await.expect("pending");
    assert_eq!(notes.len(), 1, "one toast despite the re-run: {notes:?}");
    assert_eq!(notes[0].body, "Tenant Acme Corp has been successfully provisioned.");
    assert_eq!(notes[0].link, format!("/admin/tenants/{}", t.id));

    // One welcome email (the re-run sent none), whose link sets the password.
    assert_eq!(mails.len(), 1, "{mails:?}");
    let mail = &mails[0];
    assert!(mail.contains("Username:   owner@acme.test"), "{mail}");
    assert!(mail.contains("Sign in at: http://bo.test/login"), "{mail}");
    let token = link_token(mail).expect("a set-password link");
    assert!(token.len() >= 32, "at least 128 bits: {token}");
    let user = b.identity.set_password(&token, "owner's new password").await.expect("set password");
    assert_eq!((user.role, user.tenant_id.as_deref()), (Role::TenantAdmin, Some(t.id.as_str())));
    assert!(matches!(b.identity.set_password(&token, "another password!").await, Err(Error::BadToken)), "single use");
    b.identity.login("owner@acme.test", "owner's new password").await.expect("tenant admin logs in");

    let tenant_db = b.dbs.open(&t.db_name).await.expect("open tenant db");
    let counts = |q: &'static str| {
        let tenant_db = &tenant_db;
        async move { query(q).scalar::<i64>(tenant_db.read()).await.expect("count") }
    };
    assert_eq!(counts("SELECT COUNT(*) FROM roles").await, 3);
    assert_eq!(counts("SELECT COUNT(*) FROM settings").await, 2);
    assert_eq!(counts("SELECT COUNT(*) FROM users WHERE email = 'owner@acme.test' AND role = 'admin'").await, 1);
    let n: i64 = query(
        "SELECT COUNT(*) FROM users WHERE email = 'owner@acme.test' AND role = 'tenant_admin' AND tenant_id = $1",
    )
    .bind(&t.id)
    .scalar(b.jobs.db().read())
    .await
    .expect("count");
    assert_eq!(n, 1, "one tenant admin in the control plane");
}

async fn bad_input_writes_nothing(which: Which) {
    let b = setup(which).await;
    b.identity.seed_super_admin("root@example.com", Some("a long enough password")).await.expect("seed");
    let admin = b.identity.login("root@example.com", "a long enough password").await.expect("login").user;
    let long = "x".repeat(10_000);
    let cases: [(&str, &str, &[&str]); 6] = [
        ("", "", &["name", "admin_email"]),
        (&long, "a@b.co", &["name"]),
        ("Acme", &long, &["admin_email"]),
        ("Acme", "not-an-email", &["admin_email"]),
        ("\u{7}bell", "a@b.co", &["name"]),
        ("!!", "a@b.co", &["name"]),
    ];
    for (name, email, fields) in cases {
        match b.tenants.create_by_admin(&admin, name, email).await {
            Err(Error::Invalid(errs)) => {
                let got: Vec<_> = errs.0.iter().map(|e| e.field).collect();
                assert_eq!(got, fields, "{name:?} / {email:?}");
            }
            other => panic!("{name:?} / {email:?}: expected field errors, got {other:?}"),
        }
    }
    // The super admin's own address cannot become a tenant admin.
    let taken = b.tenants.create_by_admin(&admin, "Acme", "root@example.com").await;
    assert!(matches!(taken, Err(Error::AlreadyExists { field: "admin_email", .. })));
    // SQL and HTML are just text.
    let odd = b.tenants.create_by_admin(&admin, "<img src=x onerror=alert(1)>", "x@odd.test").await.expect("text");
    assert_eq!(odd.tenant.name, "<img src=x onerror=alert(1)>");
    assert_eq!(b.tenants.list(None, None, 50).await.expect("list").len(), 1, "only the valid one was written");
    assert_eq!(b.jobs.counts().await.expect("counts").enqueued, 1, "only its job");
    // Sign-up with an address that has an account: same answer, nothing written.
    assert!(b.tenants.sign_up("Another Co", "root@example.com").await.expect("same answer").is_none());
    assert_eq!(b.tenants.list(None, None, 50).await.expect("list").len(), 1);
}

async fn provisioning_failure_marks_tenant_failed(which: Which) {
    let b = setup(which).await;
    let admin = seeded_admin(&b).await;
    let created = b.tenants.create_by_admin(&admin, "Doomed Ltd", "owner@doomed.test").await.expect("create");
    let (stop, handle) = start_worker(&b, Some(Fault::Fail));
    let t = wait_status(&b.tenants, &created.tenant.id, TenantStatus::Failed).await;
    assert!(t.last_error.as_deref().is_some_and(|e| e.contains("PROVISION_FAULT=fail")), "{t:?}");
    let mut job = b.jobs.get(created.job_id).await.expect("job");
    for _ in 0..200 {
        if job.job.state == JobState::Dead {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        job = b.jobs.get(created.job_id).await.expect("job");
    }
    assert_eq!(job.job.state, JobState::Dead);
    assert_eq!(job.job.attempt, 2);
    let errors = job.history.last().expect("history").errors();
    assert_eq!(errors[0], "migrating the tenant database", "{errors:?}");
    stop.cancel();
    handle.await.expect("worker");
    let notes = Notifications::new(b.jobs.db().clone()).pending(&admin.id, 0).await.expect("pending");
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert_eq!(notes[0].kind, "error");
    assert!(notes[0].body.starts_with("Tenant Doomed Ltd could not be provisioned: "), "{notes:?}");
}

async fn seeded_admin(b: &Bundle) -> backoffice::identity::User {
    b.identity.seed_super_admin("root@example.com", Some("a long enough password")).await.expect("seed");
    b.identity.login("root@example.com", "a long enough password").await.expect("login").user
}

async fn worker_dying_on_the_last_attempt_fails_the_tenant(which: Which) {
    let b = setup(which).await;
    let b = Bundle { jobs: b.jobs.clone().with_default_max_attempts(1), ..b };
    let tenants = Tenants::new(b.jobs.clone(), b.mail.letters.clone());
    let admin = seeded_admin(&b).await;
    let created = tenants.create_by_admin(&admin, "Crashy Inc", "owner@crashy.test").await.expect("create");
    // A worker claims the job with a 1 ms lease and "dies" (never renews).
    let store = b.jobs.store().clone();
    let now = jobengine::Clock::now(b.jobs.clock().as_ref());
    let claimed = store.fetch("doomed-worker", &["default".into()], 1, now, now + 1_000).await.expect("fetch");
    assert_eq!(claimed.len(), 1);
    // Its last allowed interruption (a cap of 1 here): the rescuer dead-letters
    // the job, and the job's end hook fails the tenant in the same transaction.
    // No sweep runs in this test.
    let r = store.rescue(now + 2_000, 1).await.expect("rescue");
    assert_eq!(r.dead, 1, "its only allowed interruption");
    let t = tenants.get(&created.tenant.id).await.expect("get");
    assert_eq!(t.status(), TenantStatus::Failed);
    assert!(t.last_error.as_deref().is_some_and(|e| e.contains("doomed-worker stopped renewing its lease")), "{t:?}");
    assert_eq!(store.rescue(now + 4_000, 1).await.expect("rescue").dead, 0, "nothing left to rescue");
    let notes = Notifications::new(b.jobs.db().clone()).pending(&admin.id, 0).await.expect("pending");
    assert_eq!(notes.iter().map(|n| n.kind.as_str()).collect::<Vec<_>>(), ["error"], "notified once");
}

/// A SQLite bundle sending through `sink`, with 10 attempts per job so SMTP
/// failures have room to be retried.
async fn setup_smtp(sink: &SmtpSink) -> Bundle {
    let mut b = setup(Which::Sqlite).await;
    b.jobs = b.jobs.clone().with_default_max_attempts(10);
    b.tenants = Tenants::new(b.jobs.clone(), b.mail.letters.clone());
    b.mail.transport = Transport::smtp(&sink.url).expect("smtp transport");
    b
}

/// The real SMTP client against a real SMTP server: a 4xx answer and a refused
/// connection are retried until the message goes through, once; a 5xx answer
/// dead-letters the job at once with the server's words in its error.
#[tokio::test]
async fn smtp_transient_failures_retry_and_permanent_ones_go_dead() {
    let mut sink = SmtpSink::start();
    let b = setup_smtp(&sink).await;
    b.identity.seed_super_admin("root@example.com", Some("a long enough password")).await.expect("seed");
    let db = b.jobs.db().clone();
    let mail_jobs = || async {
        let rows: Vec<(i64, String, i64, Option<String>)> =
            query("SELECT id, state, attempt, last_error FROM jobs WHERE kind = 'mail.send' ORDER BY id")
                .fetch_all(db.read())
                .await
                .expect("mail jobs");
        rows
    };

    // 451, then connection refused, then accepted: delivered once.
    sink.set_mood(Mood::TempFail);
    b.tenants.sign_up("Retry Corp", "root@example.com").await.expect("sign up");
    let (stop, handle) = start_worker(&b, None);
    let (job, _, _, error) = loop {
        if let Some(j) = mail_jobs().await.into_iter().find(|j| j.2 >= 2) {
            break j;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(error.as_deref().unwrap_or("").contains("451"), "{error:?}");
    sink.stop();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let sink = sink.restart();
    sink.set_mood(Mood::Accept);
    wait_job(&b.jobs, job, JobState::Succeeded).await;
    assert_eq!(sink.messages().len(), 1);
    let delivered_on = b.jobs.get(job).await.expect("job").job.attempt;

    // 554: dead at once, not retried.
    sink.set_mood(Mood::Reject);
    b.tenants.sign_up("Refused Corp", "root@example.com").await.expect("sign up");
    let (_, _, attempts, error) = loop {
        if let Some(j) = mail_jobs().await.into_iter().find(|j| j.0 != job && j.1 == "dead") {
            break j;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    stop.cancel();
    handle.await.expect("worker");
    assert_eq!(attempts, 1, "a permanent refusal is not retried");
    assert!(error.as_deref().unwrap_or("").contains("554"), "{error:?}");
    assert_eq!(sink.messages().len(), 1, "nothing more delivered");
    println!(
        "figure: SMTP answering 451, then down: delivered once, on attempt {delivered_on}; answering 554: dead after {attempts} attempt, error kept"
    );
}

/// The SMTP server stores a message and dies before it answers: the sender
/// cannot know the message went through, so it sends it again once the server is
/// back, and the copy carries the same `Message-ID` (mail clients show one).
/// Nothing is lost; this is the one duplicate an outbox cannot avoid.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smtp_killed_after_accepting_resends_the_same_message() {
    let mut sink = SmtpSink::start();
    let b = setup_smtp(&sink).await;
    sink.set_mood(Mood::CrashAfterAccept);
    b.tenants.sign_up("Crash Corp", "owner@crash.test").await.expect("sign up");
    let (stop, handle) = start_worker(&b, None);
    // (The sink's waits block a thread; the worker runs on the other.)
    assert!(sink.wait_exit(Duration::from_secs(60)), "the SMTP server died after accepting");
    assert_eq!(sink.messages().len(), 1, "stored before it died");
    sink.set_mood(Mood::Accept);
    let sink = sink.restart();
    sink.wait_for(2, Duration::from_secs(60));
    let job: (String, i64, Option<String>) = loop {
        let j: (String, i64, Option<String>) =
            query("SELECT state, attempt, last_error FROM jobs WHERE kind = 'mail.send'")
                .fetch_one(b.jobs.db().read())
                .await
                .expect("the mail job");
        if j.0 == "succeeded" {
            break j;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.cancel();
    handle.await.expect("worker");
    let messages = sink.messages();
    assert_eq!(messages.len(), 2, "sent again once, not more");
    let message_id = |m: &str| {
        m.lines().find_map(|l| {
            l.get(..11).filter(|h| h.eq_ignore_ascii_case("message-id:")).map(|_| l[11..].trim().to_owned())
        })
    };
    let first = message_id(&messages[0]).expect("a Message-ID");
    assert_eq!(Some(&first), message_id(&messages[1]).as_ref(), "the same message, not a new one");
    assert_eq!(plain_text(&messages[0]), plain_text(&messages[1]), "the same bytes");
    assert!(job.1 >= 2, "delivered on a later attempt: {job:?}");
    assert!(job.2.is_some(), "the failed attempt's error is kept: {job:?}");
    println!(
        "figure: SMTP server killed after accepting: 2 copies, same Message-ID {first}, delivered on attempt {}",
        job.1
    );
}

/// PostgreSQL: a stream reads a user's notifications after the last id it sent,
/// so one user's notifications must become visible in id order. Two
/// transactions publish for the same user; while the first (lower id) is open,
/// the second must not be visible either, or a stream would send it, move past
/// the first and never send that one.
#[tokio::test]
async fn one_users_notifications_commit_in_id_order() {
    use backoffice::notify::{Kind, NewNotification, publish_in};
    let b = setup(Which::Postgres).await;
    let admin = seeded_admin(&b).await;
    let note = |key: &str| NewNotification {
        user_id: admin.id.clone(),
        kind: Kind::Info,
        title: "t".into(),
        body: key.into(),
        link: String::new(),
        dedupe_key: key.into(),
    };
    let now = jobengine::Clock::now(b.jobs.clock().as_ref());
    let mut first = b.jobs.begin().await.expect("begin");
    let first_id = publish_in(&mut first, &note("first"), now).await.expect("publish").expect("new");
    let jobs = b.jobs.clone();
    let second_note = note("second");
    let second = tokio::spawn(async move {
        let mut tx = jobs.begin().await.expect("begin");
        let id = publish_in(&mut tx, &second_note, now).await.expect("publish").expect("new");
        tx.commit().await.expect("commit");
        id
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let notes = Notifications::new(b.jobs.db().clone());
    let visible = notes.pending(&admin.id, 0).await.expect("pending");
    assert!(visible.is_empty(), "visible while an earlier one is uncommitted: {visible:?}");
    first.commit().await.expect("commit");
    let second_id = second.await.expect("second");
    assert!(second_id > first_id);
    let ids: Vec<i64> = notes.pending(&admin.id, 0).await.expect("pending").iter().map(|n| n.id).collect();
    assert_eq!(ids, [first_id, second_id]);
}

async fn deleting_a_running_provisioning_cancels_it(which: Which) {
    let b = setup(which).await;
    let admin = seeded_admin(&b).await;
    let created = b.tenants.create_by_admin(&admin, "Cancelled Co", "owner@cancelled.test").await.expect("create");
    // One slot, each step 60 s long, and the engine's default heartbeat (3.3 s):
    // the slot frees within a second only if the attempt stops on cancellation.
    let env = Env {
        jobs: b.jobs.clone(),
        db: b.jobs.db().clone(),
        tenant_dbs: b.dbs.clone(),
        fault: Some(Fault::Slow(Duration::from_secs(60))),
        mail: b.mail.clone(),
    };
    let cfg = WorkerConfig { concurrency: 1, poll: Duration::from_millis(20), ..WorkerConfig::default() };
    let w = Worker::new(&b.jobs, registry(), Arc::new(env), cfg);
    let stop = CancellationToken::new();
    let handle = tokio::spawn({
        let s = stop.clone();
        async move { w.run(s).await.expect("worker") }
    });
    for _ in 0..500 {
        if b.tenants.get(&created.tenant.id).await.expect("get").step.as_deref() == Some("creating database") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    wait_job(&b.jobs, created.job_id, JobState::Processing).await;
    let next = b.jobs.enqueue(&jobengine::builtin::Noop {}).await.expect("enqueue");

    b.jobs.delete(created.job_id, "root@example.com").await.expect("delete the running job");
    // The tenant is failed by the job's end hook, in the delete's transaction.
    let t = b.tenants.get(&created.tenant.id).await.expect("get");
    assert_eq!(t.status(), TenantStatus::Failed);
    assert_eq!(t.last_error.as_deref(), Some("provisioning cancelled by root@example.com"));
    // The attempt stops: within a second the worker's only slot runs the next job.
    let deadline = std::time::Instant::now() + Duration::from_secs(1);
    while b.jobs.get(next.id).await.expect("job").job.state != JobState::Succeeded {
        assert!(std::time::Instant::now() < deadline, "the cancelled attempt still holds the slot after 1 s");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let t = b.tenants.get(&created.tenant.id).await.expect("get");
    assert_eq!(t.step.as_deref(), Some("creating database"), "no step after the cancellation");
    let job = b.jobs.get(created.job_id).await.expect("job");
    assert_eq!(job.job.state, JobState::Deleted, "the attempt's end did not resurrect it");
    stop.cancel();
    handle.await.expect("worker");
    // One red toast for the super admin who created it.
    let notes = Notifications::new(b.jobs.db().clone()).pending(&admin.id, 0).await.expect("pending");
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert_eq!(notes[0].kind, "error");
    assert_eq!(
        notes[0].body,
        "Tenant Cancelled Co could not be provisioned: provisioning cancelled by root@example.com"
    );
}

async fn pruning_removes_only_expired_sign_in_rows(which: Which) {
    let b = setup(which).await;
    let admin = seeded_admin(&b).await; // one live session, from a real sign-in
    let _ = b.identity.login("root@example.com", "a wrong password").await.expect_err("a real failure, now");
    let now = jobengine::Clock::now(b.jobs.clock().as_ref());
    let (hour, day) = (3_600_000_000_i64, 86_400_000_000_i64);
    let db = b.jobs.db().clone();
    for (hash, expires, revoked) in [
        ("expired", now - 1, None),
        ("revoked-long-ago", now + hour, Some(now - 2 * day)),
        ("revoked-recently", now + hour, Some(now - hour)),
    ] {
        query("INSERT INTO sessions (token_hash, user_id, created_at, expires_at, revoked_at) VALUES ($1, $2, $3, $4, $5)")
            .bind(hash)
            .bind(&admin.id)
            .bind(now - 3 * day)
            .bind(expires)
            .bind(revoked)
            .execute(db.write())
            .await
            .expect("session row");
    }
    for (hash, expires) in [("tok-old", now - 8 * day), ("tok-recent", now - 6 * day), ("tok-live", now + day)] {
        query("INSERT INTO password_tokens (token_hash, user_id, created_at, expires_at) VALUES ($1, $2, $3, $4)")
            .bind(hash)
            .bind(&admin.id)
            .bind(expires - day)
            .bind(expires)
            .execute(db.write())
            .await
            .expect("token row");
    }
    query("INSERT INTO login_failures (account, at) VALUES ('old@example.com', $1)")
        .bind(now - 2 * day)
        .execute(db.write())
        .await
        .expect("failure row");
    let sessions_before: i64 = query("SELECT COUNT(*) FROM sessions").scalar(db.read()).await.expect("count");

    // As the recurring schedule fires it: a job, run by a worker.
    assert!(backoffice::recurring().iter().any(|r| r.kind == "identity.prune"));
    let id = b.jobs.enqueue(&backoffice::jobs::prune::PruneIdentity {}).await.expect("enqueue").id;
    let (stop, handle) = start_worker(&b, None);
    wait_job(&b.jobs, id, JobState::Succeeded).await;
    stop.cancel();
    handle.await.expect("worker");

    let hashes = |sql: &'static str| {
        let db = db.clone();
        async move {
            let mut v: Vec<String> = query(sql).scalars(db.read()).await.expect("rows");
            v.sort();
            v
        }
    };
    let sessions = hashes("SELECT token_hash FROM sessions").await;
    assert_eq!(sessions.len() as i64, sessions_before - 2, "the expired and the long-revoked went: {sessions:?}");
    assert!(sessions.contains(&"revoked-recently".to_owned()) && !sessions.contains(&"expired".to_owned()));
    assert_eq!(hashes("SELECT token_hash FROM password_tokens").await, ["tok-live", "tok-recent"]);
    assert!(hashes("SELECT account FROM login_failures").await.is_empty(), "the old per-failure table empties");
    // The live session still signs in.
    assert!(b.identity.login("root@example.com", "a long enough password").await.is_ok());
}
