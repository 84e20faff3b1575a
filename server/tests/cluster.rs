//! Scale-out on one PostgreSQL, with real processes: a `worker` process and two
//! `server` processes (`WORKER=off`) on a PostgreSQL cluster of the test's own.
//! The admin's streams on either server get the toast published by the worker;
//! then PostgreSQL is restarted (`-m immediate`) under the open streams, and a
//! notification written right after it comes back still reaches both. And
//! sign-ups keep being submitted while PostgreSQL restarts: every accepted one has
//! exactly one tenant and one job, and processing resumes by itself.

use std::path::Path;
use std::time::{Duration, Instant};

use jobengine::testing::PgCluster;
use proto::auth::v1::LoginRequest;
use proto::auth::v1::auth_service_client::AuthServiceClient;
use proto::notifications::v1 as npb;
use proto::notifications::v1::notification_service_client::NotificationServiceClient;
use proto::tenants::v1 as tpb;
use proto::tenants::v1::tenant_service_client::TenantServiceClient;
use tonic::Streaming;
use tonic::transport::Channel;

mod common;
use common::{Binary, bearer, server_bin, spawn_binary, worker_bin};

const EMAIL: &str = "root@cluster.test";
const PASSWORD: &str = "cluster test password";

/// Starts `bin` on the cluster with the settings every process here shares
/// (servers without their embedded worker).
fn spawn(bin: &Path, db: &str, data: &Path, log: &str, extra: &[(&str, &str)]) -> Binary {
    let mut env = vec![("WORKER", "off"), ("SUPERADMIN_EMAIL", EMAIL), ("SUPERADMIN_PASSWORD", PASSWORD)];
    env.extend_from_slice(extra);
    spawn_binary(bin, db, data, log, &env)
}

async fn connect(url: &str) -> Channel {
    Channel::from_shared(url.to_owned()).expect("uri").connect().await.expect("connect")
}

async fn next_note(s: &mut Streaming<npb::SubscribeResponse>, within: Duration) -> npb::Notification {
    tokio::time::timeout(within, async {
        loop {
            match s.message().await.expect("stream").expect("open") {
                npb::SubscribeResponse { event: Some(npb::subscribe_response::Event::Notification(n)) } => return n,
                _ => continue,
            }
        }
    })
    .await
    .expect("a notification in time")
}

#[tokio::test]
async fn toasts_cross_processes_and_survive_a_postgres_restart() {
    let pg = PgCluster::start(false).expect("a PostgreSQL cluster of our own");
    let data = tempfile::tempdir().expect("tempdir");
    let server = &server_bin();
    let a = spawn(server, &pg.url, data.path(), "a.log", &[]);
    let b = spawn(server, &pg.url, data.path(), "b.log", &[]);
    let _worker = spawn(&worker_bin(), &pg.url, data.path(), "worker.log", &[("JOB_POLL_MS", "100")]);
    let (ca, cb) = (connect(a.url()).await, connect(b.url()).await);
    let token = AuthServiceClient::new(ca.clone())
        .login(LoginRequest { email: EMAIL.into(), password: PASSWORD.into() })
        .await
        .expect("login")
        .into_inner()
        .token;
    let subscribe = |ch: Channel| {
        let token = token.clone();
        async move {
            NotificationServiceClient::new(ch)
                .subscribe(bearer(npb::SubscribeRequest { resume_after: 0 }, &token))
                .await
                .expect("subscribe")
                .into_inner()
        }
    };
    let (mut on_a, mut on_b) = (subscribe(ca.clone()).await, subscribe(cb.clone()).await);

    // Created through server B, provisioned by the worker process.
    TenantServiceClient::new(cb.clone())
        .create_tenant(bearer(
            tpb::CreateTenantRequest { name: "Globex".into(), admin_email: "hank@globex.test".into() },
            &token,
        ))
        .await
        .expect("create");
    let want = "Tenant Globex has been successfully provisioned.";
    assert_eq!(next_note(&mut on_a, Duration::from_secs(30)).await.body, want);
    assert_eq!(next_note(&mut on_b, Duration::from_secs(5)).await.body, want);

    // PostgreSQL crashes and comes back under the open streams.
    pg.stop_immediate().expect("stop PostgreSQL");
    tokio::time::sleep(Duration::from_secs(1)).await;
    pg.start_again().expect("start PostgreSQL");
    let started = Instant::now();
    let db = loop {
        match sqlx::PgPool::connect(&pg.url).await {
            Ok(p) => break p,
            Err(_) if started.elapsed() < Duration::from_secs(20) => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            Err(e) => panic!("PostgreSQL did not come back: {e}"),
        }
    };
    let user: String =
        sqlx::query_scalar("SELECT id FROM users WHERE email = $1").bind(EMAIL).fetch_one(&db).await.expect("user");
    // Written at once, likely before the servers' listeners have reconnected: the
    // catch-up after their reconnect must deliver it.
    sqlx::query(
        "INSERT INTO notifications (user_id, kind, title, body, link, created_at) VALUES ($1, 'info', 't', $2, '', 0)",
    )
    .bind(&user)
    .bind("after the restart")
    .execute(&db)
    .await
    .expect("insert");
    assert_eq!(next_note(&mut on_a, Duration::from_secs(15)).await.body, "after the restart");
    assert_eq!(next_note(&mut on_b, Duration::from_secs(15)).await.body, "after the restart");

    // And the whole path works again: a new tenant, provisioned, toasted on both.
    let mut tenants = TenantServiceClient::new(ca.clone());
    let created = loop {
        let r = tenants
            .create_tenant(bearer(
                tpb::CreateTenantRequest { name: "Initech".into(), admin_email: "bill@initech.test".into() },
                &token,
            ))
            .await;
        match r {
            Ok(r) => break r,
            Err(e) if started.elapsed() < Duration::from_secs(30) => {
                eprintln!("create after restart: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("the server did not recover from the restart: {e}"),
        }
    };
    assert!(created.into_inner().tenant.is_some());
    let want = "Tenant Initech has been successfully provisioned.";
    assert_eq!(next_note(&mut on_a, Duration::from_secs(30)).await.body, want);
    assert_eq!(next_note(&mut on_b, Duration::from_secs(5)).await.body, want);
}

/// At least `CHAOS_SIGNUPS` (default 200; the long run 1,000) sign-ups from 20
/// concurrent callers; PostgreSQL is restarted (`-m immediate`) a third of the way
/// through, while sign-ups wait on a lock the test holds, and the callers go on
/// until it is back. So sign-ups are always in flight when it goes (without the
/// lock, the stop could fall between two short transactions and the refusals
/// this test is about would not happen).
#[tokio::test]
async fn signups_survive_a_postgres_restart() {
    let total: usize = std::env::var("CHAOS_SIGNUPS").ok().and_then(|v| v.parse().ok()).unwrap_or(200);
    let pg = PgCluster::start(false).expect("a PostgreSQL cluster of our own");
    let data = tempfile::tempdir().expect("tempdir");
    let limits = [("SIGNUP_PER_IP_PER_HOUR", "1000000"), ("SIGNUP_PER_MINUTE", "1000000")];
    let srv = spawn(&server_bin(), &pg.url, data.path(), "server.log", &limits);
    let mut worker = spawn(&worker_bin(), &pg.url, data.path(), "worker.log", &[("JOB_POLL_MS", "100")]);
    // The restart is meant to meet a running worker (one that starts during an
    // outage is the engine suite's case).
    worker.process.wait_for_log_line("worker started", Duration::from_secs(60)).unwrap_or_else(|e| panic!("{e:#}"));
    let ch = connect(srv.url()).await;
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let restarted = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut callers = Vec::new();
    for _ in 0..20 {
        let (ch, next, restarted) = (ch.clone(), next.clone(), restarted.clone());
        callers.push(tokio::spawn(async move {
            let mut c = TenantServiceClient::new(ch);
            let (mut ok, mut refused) = (Vec::new(), Vec::new());
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= total && restarted.load(std::sync::atomic::Ordering::Relaxed) {
                    return (ok, refused);
                }
                let req =
                    tpb::SignUpRequest { company_name: format!("Restart Co {i}"), email: format!("r{i}@restart.test") };
                match c.sign_up(req).await {
                    Ok(_) => ok.push(i),
                    Err(e) => refused.push((i, e.code())),
                }
            }
        }));
    }
    while next.load(std::sync::atomic::Ordering::Relaxed) < total / 3 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Hold the tenants table so sign-ups queue inside PostgreSQL, and stop it
    // only once one waits there: without this, the stop could fall between two
    // short transactions and no sign-up would be in flight.
    let locker = sqlx::PgPool::connect(&pg.url).await.expect("connect");
    let mut hold = locker.begin().await.expect("begin");
    sqlx::query("LOCK TABLE tenants IN SHARE ROW EXCLUSIVE MODE").execute(&mut *hold).await.expect("lock");
    let waiting = Instant::now();
    loop {
        let blocked: i64 =
            sqlx::query_scalar(
                "SELECT COUNT(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE 'INSERT INTO tenants%'",
            )
                .fetch_one(&locker)
                .await
                .expect("blocked");
        if blocked > 0 {
            break;
        }
        assert!(waiting.elapsed() < Duration::from_secs(10), "no sign-up reached the locked tenants table");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    pg.stop_immediate().expect("stop PostgreSQL");
    drop(hold);
    locker.close().await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    pg.start_again().expect("start PostgreSQL");
    restarted.store(true, std::sync::atomic::Ordering::Relaxed);
    let back = Instant::now();
    let (mut accepted, mut refused) = (Vec::new(), Vec::new());
    for c in callers {
        let (ok, no) = c.await.expect("caller");
        accepted.extend(ok);
        refused.extend(no);
    }
    let db = sqlx::PgPool::connect(&pg.url).await.expect("connect");
    for i in &accepted {
        let (tenants, jobs): (i64, i64) = sqlx::query_as(
            "SELECT COUNT(*), COUNT(j.id) FROM tenants t LEFT JOIN jobs j ON j.id = t.job_id WHERE t.name = $1",
        )
        .bind(format!("Restart Co {i}"))
        .fetch_one(&db)
        .await
        .expect("count");
        assert_eq!((tenants, jobs), (1, 1), "accepted sign-up {i}: one tenant, one job");
    }
    let dupes: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM (SELECT name_key FROM tenants GROUP BY name_key HAVING COUNT(*) > 1) d",
    )
    .fetch_one(&db)
    .await
    .expect("dupes");
    assert_eq!(dupes, 0);
    // Refused while the database was away (the ones in flight when it went):
    // UNAVAILABLE (retry), never INTERNAL.
    assert!(!refused.is_empty(), "sign-ups were in flight when PostgreSQL stopped, and were refused");
    assert!(refused.iter().all(|(_, c)| *c == tonic::Code::Unavailable), "{refused:?}");
    assert!(
        accepted.len() > total / 3,
        "most sign-ups went through: {} of {}",
        accepted.len(),
        accepted.len() + refused.len()
    );
    // Processing resumes by itself: a provisioning finishes after the restart
    // within 10 s of PostgreSQL being back.
    let resumed = loop {
        let done: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM tenants WHERE status = 'active' AND activated_at > $1")
                .bind(
                    (std::time::SystemTime::now() - back.elapsed())
                        .duration_since(std::time::UNIX_EPOCH)
                        .map(|d| d.as_micros() as i64)
                        .unwrap_or(0),
                )
                .fetch_one(&db)
                .await
                .expect("active");
        if done > 0 {
            break back.elapsed();
        }
        if back.elapsed() > Duration::from_secs(10) {
            panic!(
                "no provisioning finished within 10 s of the restart\n--- worker log ---\n{}\n--- server log ---\n{}",
                worker.log_tail(60),
                srv.log_tail(30)
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    println!(
        "figure: {} sign-ups across a PostgreSQL restart: {} accepted (each one tenant and one job), {} refused \
         while it was down, 0 duplicated; provisioning resumed {:.1} s after it was back",
        accepted.len() + refused.len(),
        accepted.len(),
        refused.len(),
        resumed.as_secs_f64()
    );
}
