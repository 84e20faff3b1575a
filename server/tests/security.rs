//! Security checks against the real server: who may call which RPC (every
//! super-admin RPC, anonymous and as a tenant admin), the real decoders fed
//! random and malformed bytes on every method. Login timing and the stored
//! password hash are checked in `login_timing.rs`, alone in their process so
//! no other test's load skews the clock.

use std::time::{Duration, Instant};

use bytes::{Buf, BufMut};
use jobengine::testing::Which;
use rand::{Rng, SeedableRng};
use tonic::Code;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::transport::Channel;

mod common;
use common::*;

jobengine::on_both!(super_admin_rpcs_refuse_everyone_else, decoders_survive_garbage,);

/// Sends and receives raw message bytes, so any method can be called with any body.
#[derive(Debug, Clone, Default)]
struct Raw;

impl Codec for Raw {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = Raw;
    type Decoder = Raw;
    fn encoder(&mut self) -> Raw {
        Raw
    }
    fn decoder(&mut self) -> Raw {
        Raw
    }
}

impl Encoder for Raw {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for Raw {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, tonic::Status> {
        let mut v = vec![0; src.remaining()];
        src.copy_to_slice(&mut v);
        Ok(Some(v))
    }
}

/// Every RPC: (path, server-streaming, needs a super admin).
const RPCS: &[(&str, bool, bool)] = &[
    ("/auth.v1.AuthService/Login", false, false),
    ("/auth.v1.AuthService/Me", false, false),
    ("/auth.v1.AuthService/SetPassword", false, false),
    ("/jobs.v1.JobService/GetCounts", false, true),
    ("/jobs.v1.JobService/WatchCounts", true, true),
    ("/jobs.v1.JobService/ListJobs", false, true),
    ("/jobs.v1.JobService/GetJob", false, true),
    ("/jobs.v1.JobService/RequeueJob", false, true),
    ("/jobs.v1.JobService/DeleteJob", false, true),
    ("/jobs.v1.JobService/TriggerJob", false, true),
    ("/jobs.v1.JobService/ListWorkers", false, true),
    ("/jobs.v1.JobService/GetThroughput", false, true),
    ("/jobs.v1.JobService/EnqueueDiagnostic", false, true),
    ("/notifications.v1.NotificationService/Subscribe", true, false),
    ("/notifications.v1.NotificationService/Ack", false, false),
    ("/tenants.v1.TenantService/CreateTenant", false, true),
    ("/tenants.v1.TenantService/SignUp", false, false),
    ("/tenants.v1.TenantService/GetTenant", false, true),
    ("/tenants.v1.TenantService/ListTenants", false, true),
    ("/tenants.v1.TenantService/WatchTenant", true, true),
    ("/tenants.v1.TenantService/GetMyTenant", false, false),
    ("/auth.v1.AuthService/Logout", false, false),
    ("/auth.v1.AuthService/RequestPasswordLink", false, false),
];

/// Calls `path` with `body` (and a bearer token if given); the status code.
async fn call(ch: &Channel, path: &'static str, streaming: bool, body: Vec<u8>, token: Option<&str>) -> Code {
    let mut grpc = tonic::client::Grpc::new(ch.clone());
    if grpc.ready().await.is_err() {
        return Code::Unavailable;
    }
    let mut req = tonic::Request::new(body);
    if let Some(t) = token {
        req.metadata_mut().insert("authorization", format!("Bearer {t}").parse().expect("header"));
    }
    let path = tonic::codegen::http::uri::PathAndQuery::from_static(path);
    if streaming {
        match grpc.server_streaming(req, path, Raw).await {
            Ok(mut s) => match tokio::time::timeout(Duration::from_millis(500), s.get_mut().message()).await {
                Ok(Err(e)) => e.code(),
                _ => Code::Ok,
            },
            Err(e) => e.code(),
        }
    } else {
        match grpc.unary(req, path, Raw).await {
            Ok(_) => Code::Ok,
            Err(e) => e.code(),
        }
    }
}

/// A tenant admin's session: created by the super admin, password set by token.
async fn tenant_admin(srv: &TestServer, ch: &Channel, root: &str) -> String {
    use proto::tenants::v1 as tpb;
    let mut t = proto::tenants::v1::tenant_service_client::TenantServiceClient::new(ch.clone());
    t.create_tenant(bearer(
        tpb::CreateTenantRequest { name: "Umbrella".into(), admin_email: "ta@umbrella.test".into() },
        root,
    ))
    .await
    .expect("create");
    let start = Instant::now();
    let token = loop {
        match srv.identity.issue_password_token_for_email("ta@umbrella.test").await {
            Ok(t) => break t,
            Err(_) if start.elapsed() < Duration::from_secs(20) => tokio::time::sleep(Duration::from_millis(50)).await,
            Err(e) => panic!("the tenant admin never appeared: {e}"),
        }
    };
    srv.identity.set_password(&token, "tenant admin password").await.expect("set password");
    login(ch, "ta@umbrella.test", "tenant admin password").await.expect("tenant admin login")
}

/// Every super-admin RPC refuses anonymous callers (UNAUTHENTICATED) and tenant
/// admins (PERMISSION_DENIED); the super admin gets through.
async fn super_admin_rpcs_refuse_everyone_else(which: Which) {
    let srv = start(which).await;
    let ch = channel(srv.addr).await;
    let root = login(&ch, ROOT_EMAIL, ROOT_PASSWORD).await.expect("login");
    let ta = tenant_admin(&srv, &ch, &root).await;
    let mut checked = 0;
    for &(path, streaming, _) in RPCS.iter().filter(|r| r.2) {
        assert_eq!(call(&ch, path, streaming, Vec::new(), None).await, Code::Unauthenticated, "anonymous {path}");
        assert_eq!(
            call(&ch, path, streaming, Vec::new(), Some(&ta)).await,
            Code::PermissionDenied,
            "tenant admin {path}"
        );
        let as_root = call(&ch, path, streaming, Vec::new(), Some(&root)).await;
        assert!(
            !matches!(as_root, Code::Unauthenticated | Code::PermissionDenied),
            "super admin refused on {path}: {as_root:?}"
        );
        checked += 1;
    }
    assert_eq!(checked, 14);
}

/// Random bytes, truncated and oversized messages on every method: a clear
/// status, never INTERNAL/UNKNOWN, and the server keeps serving.
async fn decoders_survive_garbage(which: Which) {
    let srv =
        start_with(which, &[("WORKER", "off"), ("SIGNUP_PER_IP_PER_HOUR", "100000"), ("SIGNUP_PER_MINUTE", "100000")])
            .await;
    let ch = channel(srv.addr).await;
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed);
    let samples: usize = std::env::var("FUZZ_SAMPLES").ok().and_then(|v| v.parse().ok()).unwrap_or(60);
    let mut calls = 0;
    for &(path, streaming, _) in RPCS.iter().filter(|r| !r.0.ends_with("/Logout")) {
        let mut bodies: Vec<Vec<u8>> = vec![
            vec![0x0a],                   // a length-delimited field with no length
            vec![0x0a, 0xff, 0xff, 0xff], // a length past the end
            vec![0x08, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01], // varint too long
            vec![0x0a, 0x02, 0xc3, 0x28], // invalid UTF-8 in a string field
            vec![0x7a; 70 * 1024],        // past the 64 KiB limit
        ];
        for _ in 0..samples {
            let n = rng.random_range(0..512);
            bodies.push((0..n).map(|_| rng.random()).collect());
        }
        for body in bodies {
            let code = call(&ch, path, streaming, body.clone(), None).await;
            assert!(
                !matches!(code, Code::Internal | Code::Unknown | Code::Unavailable),
                "{path} answered {code:?} to {:?}",
                &body[..body.len().min(32)]
            );
            calls += 1;
        }
    }
    // Still serving.
    login(&ch, ROOT_EMAIL, ROOT_PASSWORD).await.expect("the server still answers");
    assert!(calls > 21 * samples);
    println!(
        "figure: {which:?}: {calls} malformed, random and oversized messages to {} methods: none answered INTERNAL, UNKNOWN or UNAVAILABLE; the server kept serving",
        RPCS.iter().filter(|r| !r.0.ends_with("/Logout")).count()
    );
}
