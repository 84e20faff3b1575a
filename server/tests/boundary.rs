//! The request boundary: who is calling is resolved once for every transport, and
//! errors answer from one table. Field errors travel as `BadRequest` details; the
//! JSON facade takes bearer tokens only; a database outage is `UNAVAILABLE` / 503
//! everywhere (the session check, the job service, its streams, the pages), never
//! `INTERNAL` and never "signed out".

use std::time::Duration;

use clap::Parser;
use jobengine::testing::{PgCluster, Which};
use proto::jobs::v1 as pb;
use proto::jobs::v1::job_service_client::JobServiceClient;
use proto::tenants::v1 as tpb;
use proto::tenants::v1::tenant_service_client::TenantServiceClient;
use server::config::Config;
use tokio_util::sync::CancellationToken;
use tonic::Code;
use tonic_types::StatusExt;

mod common;
use common::*;

jobengine::on_both!(field_errors_travel_as_bad_request_details, json_facade_takes_bearer_tokens_only);

/// A real call with two bad fields: the status keeps the human message, and the
/// details name each field for clients that show errors beside inputs.
async fn field_errors_travel_as_bad_request_details(which: Which) {
    let srv = start(which).await;
    let ch = channel(srv.addr).await;
    let root = login(&ch, ROOT_EMAIL, ROOT_PASSWORD).await.expect("login");
    let mut tenants = TenantServiceClient::new(ch.clone());
    let err = tenants
        .create_tenant(bearer(tpb::CreateTenantRequest { name: String::new(), admin_email: "nope".into() }, &root))
        .await
        .expect_err("two bad fields");
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().starts_with("name: ") && err.message().contains("; admin_email: "), "{}", err.message());
    let details = err.get_details_bad_request().expect("a BadRequest detail");
    let fields: Vec<_> = details.field_violations.iter().map(|v| v.field.as_str()).collect();
    assert_eq!(fields, ["name", "admin_email"]);
    assert!(details.field_violations.iter().all(|v| !v.description.is_empty()), "{details:?}");
    assert_eq!(
        err.message(),
        details
            .field_violations
            .iter()
            .map(|v| format!("{}: {}", v.field, v.description))
            .collect::<Vec<_>>()
            .join("; "),
        "the message says the same as the details"
    );

    // A name taken is about a field too.
    let ok = tpb::CreateTenantRequest { name: "Initech".into(), admin_email: "bill@initech.test".into() };
    tenants.create_tenant(bearer(ok.clone(), &root)).await.expect("create");
    let dup = tenants.create_tenant(bearer(ok, &root)).await.expect_err("taken");
    assert_eq!(dup.code(), Code::AlreadyExists);
    let details = dup.get_details_bad_request().expect("a BadRequest detail");
    assert_eq!(details.field_violations.first().map(|v| v.field.as_str()), Some("name"));
}

/// The JSON facade never accepts the browser's cookie (CSRF), even a live one,
/// and says how to authenticate; a bearer token works, on the same request.
async fn json_facade_takes_bearer_tokens_only(which: Which) {
    let srv = start(which).await;
    let ch = channel(srv.addr).await;
    let root = login(&ch, ROOT_EMAIL, ROOT_PASSWORD).await.expect("login");
    let path = "/api/tenants/00000000-0000-0000-0000-000000000000";
    let cookie = format!("session={root}");
    let (code, head, body) = http(srv.addr, "GET", path, &[("Cookie", &cookie)], b"").await;
    assert_eq!(code, 401, "{body}");
    assert!(head.contains("www-authenticate: bearer"), "{head}");
    assert_eq!(json_body(&body)["error"], "send Authorization: Bearer <token> from Login");
    let auth = format!("Bearer {root}");
    let (code, _, body) = http(srv.addr, "GET", path, &[("Cookie", &cookie), ("Authorization", &auth)], b"").await;
    assert_eq!(code, 404, "{body}");
    let (code, _, body) = http(srv.addr, "GET", path, &[("Authorization", "Bearer not-a-session")], b"").await;
    assert_eq!((code, json_body(&body)["error"].as_str()), (401, Some("your session has ended; sign in again")));
    // The same cookie is a session for gRPC and pages (browsers send it there).
    let (code, _, _) = http(srv.addr, "GET", "/admin/tenants", &[("Cookie", &cookie)], b"").await;
    assert_eq!(code, 200);
    let (code, head, _) = http(srv.addr, "GET", "/admin/tenants?x=1&y=2", &[], b"").await;
    assert_eq!(code, 303);
    // (headers come lower-cased)
    assert!(head.contains("location: /login?next=/admin/tenants%3fx%3d1%26y%3d2"), "{head}");
}

/// `ListJobs` of dead jobs (a state is required).
fn dead() -> pb::ListJobsRequest {
    pb::ListJobsRequest { state: pb::JobState::Dead.into(), ..Default::default() }
}

/// A server in this process on a PostgreSQL cluster of the test's own, so the
/// test can stop the database under it.
async fn start_on(pg: &PgCluster) -> (std::net::SocketAddr, CancellationToken, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let data_dir = dir.path().to_string_lossy().into_owned();
    let url = pg.url.clone();
    let args =
        ["server", "--database-url", &url, "--bind-addr", "127.0.0.1:0", "--data-dir", &data_dir, "--worker", "off"];
    let settings = server::config::Settings::try_parse_from(args).expect("settings");
    let config = Config::from_settings(&settings).expect("config");
    let backend = server::Backend::open(&config).await.expect("open");
    backend.identity.seed_super_admin(ROOT_EMAIL, Some(ROOT_PASSWORD)).await.expect("seed super admin");
    let listener = tokio::net::TcpListener::bind(config.bind_addr).await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let stop = CancellationToken::new();
    let s = stop.clone();
    tokio::spawn(async move { server::run(listener, &config, backend, s).await.expect("server runs") });
    (addr, stop, dir)
}

/// PostgreSQL stops under a running server: every way in answers "unavailable,
/// retry", not INTERNAL and not "sign in": the session check of a gRPC call, the
/// job service's own queries (an open `WatchCounts` stream, whose session was
/// checked before the outage), the JSON facade (503), and a signed-in page (503,
/// not a redirect to the sign-in page). They answer within the outage's grace
/// (not the pool's 30 s acquire timeout), and later requests at once. When
/// PostgreSQL is back, so is service.
#[tokio::test]
async fn a_database_outage_is_unavailable_everywhere() {
    let _dog = jobengine::testing::Watchdog::new("a_database_outage_is_unavailable_everywhere");
    let pg = PgCluster::start(false).expect("a PostgreSQL cluster of our own");
    let (addr, stop, _dir) = start_on(&pg).await;
    let ch = channel(addr).await;
    let root = login(&ch, ROOT_EMAIL, ROOT_PASSWORD).await.expect("login");
    let mut jobs = JobServiceClient::new(ch.clone());
    jobs.list_jobs(bearer(dead(), &root)).await.expect("list while up");
    let mut counts = jobs
        .watch_counts(bearer(pb::WatchCountsRequest { interval_ms: 200 }, &root))
        .await
        .expect("watch")
        .into_inner();
    counts.message().await.expect("first counts").expect("open");

    pg.stop_immediate().expect("stop PostgreSQL");
    let stopped = std::time::Instant::now();
    let cookie = format!("session={root}");
    let auth = format!("Bearer {root}");
    let (json_headers, page_headers) = ([("Authorization", auth.as_str())], [("Cookie", cookie.as_str())]);
    let (streamed, listed, me, json, page) = tokio::join!(
        async {
            // Keep-alive copies may come first; the failure ends the stream.
            loop {
                match counts.message().await {
                    Ok(Some(_)) => continue,
                    Ok(None) => panic!("the stream ended without a status"),
                    Err(s) => break s,
                }
            }
        },
        async { jobs.clone().list_jobs(bearer(dead(), &root)).await.expect_err("down") },
        async {
            proto::auth::v1::auth_service_client::AuthServiceClient::new(ch.clone())
                .me(bearer(proto::auth::v1::MeRequest {}, &root))
                .await
                .expect_err("down")
        },
        http(addr, "GET", "/api/tenants/00000000-0000-0000-0000-000000000000", &json_headers, b""),
        http(addr, "GET", "/admin/tenants", &page_headers, b""),
    );
    assert_eq!(
        (streamed.code(), streamed.message()),
        (Code::Unavailable, server::boundary::UNAVAILABLE),
        "{streamed:?}"
    );
    assert_eq!(listed.code(), Code::Unavailable, "{listed:?}");
    assert_eq!(me.code(), Code::Unavailable, "{me:?}");
    assert_eq!(json.0, 503, "{}", json.2);
    assert_eq!(json_body(&json.2)["error"], server::boundary::UNAVAILABLE);
    assert_eq!(page.0, 503, "{}", page.1);
    // Each says when to try again: a header on HTTP, a RetryInfo detail on gRPC.
    let five = server::boundary::UNAVAILABLE_RETRY;
    for head in [&json.1, &page.1] {
        assert!(head.contains(&format!("retry-after: {}\r\n", five.as_secs())), "{head}");
    }
    for status in [&streamed, &listed, &me] {
        assert_eq!(server::boundary::retry_after(status), Some(five), "{status:?}");
    }
    let answered = stopped.elapsed();
    let most = database::reach::PROBE_AFTER + database::reach::OUTAGE_GRACE + Duration::from_secs(3);
    assert!(answered < most, "the first answers took {answered:?}");
    // Past the grace, at once.
    tokio::time::sleep(database::reach::OUTAGE_GRACE.saturating_sub(answered)).await;
    let asked = std::time::Instant::now();
    let again = jobs.list_jobs(bearer(dead(), &root)).await.expect_err("still down");
    assert_eq!(again.code(), Code::Unavailable, "{again:?}");
    let json = http(addr, "GET", "/api/tenants/00000000-0000-0000-0000-000000000000", &json_headers, b"").await;
    assert_eq!(json.0, 503, "{}", json.2);
    assert!(asked.elapsed() < Duration::from_secs(1), "answered in {:?}", asked.elapsed());

    pg.start_again().expect("start PostgreSQL again");
    let mut back = None;
    for _ in 0..100 {
        match jobs.list_jobs(bearer(dead(), &root)).await {
            Ok(r) => {
                back = Some(r);
                break;
            }
            Err(e) => assert_eq!(e.code(), Code::Unavailable, "{e:?}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(back.is_some(), "service resumes when PostgreSQL is back");
    stop.cancel();
}
