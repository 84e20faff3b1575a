//! The HTTP front door against the real server: slow and silent connections are
//! closed (slowloris), every answer carries the browser's security headers, an
//! unknown gRPC method answers UNIMPLEMENTED in gRPC, `/metrics` is not public,
//! the session cookie is `Secure` on an https site, and one source network
//! cannot use up the global sign-up budget.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use jobengine::testing::Which;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tonic::Code;

mod common;
use common::*;

/// Waits (at most `limit`) for the server to close `s`; how long it took.
async fn closed_within(mut s: TcpStream, limit: Duration) -> Option<Duration> {
    let t = Instant::now();
    let mut buf = vec![0u8; 4096];
    loop {
        match tokio::time::timeout(limit.saturating_sub(t.elapsed()), s.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0) | Err(_)) => return Some(t.elapsed()),
            Ok(Ok(_)) => {}
        }
    }
}

/// With `HTTP_HEADER_TIMEOUT_SECS=1`: 300 sockets that send nothing, 40 that
/// send a header a few bytes at a time, a kept-alive connection left idle after
/// its answer, and one that stops half-way through HTTP/2's preface are all
/// closed within seconds; a normal client is served meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_silent_connections_are_closed() {
    let srv = start_with(Which::Sqlite, &[("HTTP_HEADER_TIMEOUT_SECS", "1")]).await;
    let limit = Duration::from_secs(6);
    let mut idle = Vec::new();
    for _ in 0..300 {
        let s = TcpStream::connect(srv.addr).await.expect("connect");
        idle.push(tokio::spawn(closed_within(s, limit)));
    }
    let mut slow = Vec::new();
    for _ in 0..40 {
        let mut s = TcpStream::connect(srv.addr).await.expect("connect");
        slow.push(tokio::spawn(async move {
            s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").await.expect("write");
            let t = Instant::now();
            // One header byte every 100 ms, until the server hangs up.
            while t.elapsed() < Duration::from_secs(6) {
                if s.write_all(b"X").await.is_err() || s.flush().await.is_err() {
                    return Some(t.elapsed());
                }
                if let Ok(Ok(0) | Err(_)) =
                    tokio::time::timeout(Duration::from_millis(100), s.read(&mut [0u8; 512])).await
                {
                    return Some(t.elapsed());
                }
            }
            None
        }));
    }
    let mut kept = TcpStream::connect(srv.addr).await.expect("connect");
    kept.write_all(b"GET /favicon.svg HTTP/1.1\r\nHost: x\r\n\r\n").await.expect("write");
    let kept = tokio::spawn(closed_within(kept, limit));
    let mut h2 = TcpStream::connect(srv.addr).await.expect("connect");
    h2.write_all(b"PRI * HTTP/2.0\r\n").await.expect("write");
    let h2 = tokio::spawn(closed_within(h2, limit));

    let ch = channel(srv.addr).await;
    login(&ch, ROOT_EMAIL, ROOT_PASSWORD).await.expect("a normal client is served");

    let mut worst = Duration::ZERO;
    for (what, tasks) in [("idle", idle), ("slowloris", slow)] {
        let n = tasks.len();
        for t in tasks {
            let took = t.await.expect("task").unwrap_or_else(|| panic!("an {what} connection was left open"));
            worst = worst.max(took);
        }
        println!("figure: {n} {what} connections closed, the last after {worst:.1?} (header timeout 1 s)");
    }
    let took = kept.await.expect("task").expect("the idle kept-alive connection was closed");
    println!("figure: an idle kept-alive connection closed after {took:.1?}");
    let took = h2.await.expect("task").expect("the half preface was closed");
    println!("figure: a half HTTP/2 preface closed after {took:.1?}");
}

/// Pages, the JSON facade and gRPC answers carry CSP (with `frame-ancestors
/// 'none'`), `X-Frame-Options`, `nosniff` and `Referrer-Policy`. No answer
/// allows inline scripts at large: a page's policy names a nonce of its own,
/// which each of its inline scripts carries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_carry_security_headers() {
    let srv = start(Which::Sqlite).await;
    for (method, path) in [("GET", "/login"), ("GET", "/no/such/page"), ("POST", "/api/signup")] {
        let (status, head, _) = http(srv.addr, method, path, &[], b"").await;
        assert!(status > 0, "{path}");
        for needle in [
            "content-security-policy: default-src 'self'; script-src 'self'",
            "frame-ancestors 'none'",
            "x-frame-options: deny",
            "x-content-type-options: nosniff",
            "referrer-policy: no-referrer",
        ] {
            assert!(head.contains(needle), "{method} {path} lacks {needle:?}:\n{head}");
        }
        assert!(!head.contains("unsafe-inline"), "{method} {path}:\n{head}");
    }
    let mut seen = Vec::new();
    // Pages, and a form posted without JavaScript rendered again with its errors.
    let form: &[(&str, &str)] =
        &[("Sec-Fetch-Site", "same-origin"), ("Content-Type", "application/x-www-form-urlencoded")];
    for (method, path, headers, sent) in [
        ("GET", "/login", &[][..], &b""[..]),
        ("GET", "/login", &[], b""),
        ("GET", "/no/such/page", &[], b""),
        ("POST", "/signup", form, b"company_name=&email=bad"),
    ] {
        let (_, head, body) = http(srv.addr, method, path, headers, sent).await;
        let nonce = head
            .split("'nonce-")
            .nth(1)
            .and_then(|rest| rest.split('\'').next())
            .unwrap_or_else(|| panic!("{path}: no nonce in the policy:\n{head}"));
        let scripts: Vec<&str> = body.split("<script").skip(1).map(|s| s.split('>').next().unwrap_or("")).collect();
        assert!(!scripts.is_empty(), "{path} has inline scripts to allow");
        // (`http` gives the head in lower case.)
        for s in &scripts {
            let s = s.to_lowercase();
            assert!(s.contains(&format!("nonce=\"{nonce}\"")), "{path}: a script without the page's nonce: {s}");
        }
        assert!(!seen.contains(&nonce.to_owned()), "{path}: a nonce used twice: {nonce}");
        seen.push(nonce.to_owned());
    }
    let (_, head, _) = http(srv.addr, "POST", "/api/signup", &[], b"").await;
    assert!(!head.contains("'nonce-"), "only pages name a nonce:\n{head}");
}

/// A gRPC call to a service the server does not have answers UNIMPLEMENTED
/// with `grpc-status` (plain gRPC and gRPC-web), not an HTML page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_grpc_methods_answer_unimplemented() {
    let srv = start(Which::Sqlite).await;
    let ch = channel(srv.addr).await;
    let mut grpc = tonic::client::Grpc::new(ch);
    let codec = proto::codec::ProtoCodec::<proto::auth::v1::MeRequest, proto::auth::v1::User>::default();
    for path in ["/nope.v1.Nope/Call", "/auth.v1.AuthService/NoSuchMethod"] {
        grpc.ready().await.expect("ready");
        let e = grpc
            .unary(tonic::Request::new(proto::auth::v1::MeRequest {}), path.parse().expect("path"), codec.clone())
            .await
            .expect_err("no such method");
        assert_eq!(e.code(), Code::Unimplemented, "{path}: {e:?}");
    }
    let (status, head, body) =
        http(srv.addr, "POST", "/nope.v1.Nope/Call", &[("Content-Type", "application/grpc-web+proto")], b"").await;
    assert_eq!(status, 200, "{head}");
    assert!(head.contains("grpc-status: 12"), "{head}");
    assert!(head.contains("content-type: application/grpc-web+proto"), "{head}");
    assert!(!body.contains("<html"), "{body}");
}

/// `/metrics` with `METRICS_TOKEN` set wants it as a bearer token; without it,
/// only a direct loopback client may read it, not one a proxy forwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_not_public() {
    let srv = start_with(Which::Sqlite, &[("METRICS_TOKEN", "a metrics secret")]).await;
    let (status, head, _) = http(srv.addr, "GET", "/metrics", &[], b"").await;
    assert_eq!(status, 401, "{head}");
    let (status, _, _) = http(srv.addr, "GET", "/metrics", &[("Authorization", "Bearer wrong")], b"").await;
    assert_eq!(status, 401);
    let (status, _, body) =
        http(srv.addr, "GET", "/metrics", &[("Authorization", "Bearer a metrics secret")], b"").await;
    assert_eq!(status, 200);
    assert!(body.contains("jobs_workers_live"), "{body}");

    let srv = start(Which::Sqlite).await;
    let (status, _, _) = http(srv.addr, "GET", "/metrics", &[], b"").await;
    assert_eq!(status, 200, "loopback, no token set");
    let (status, _, body) = http(srv.addr, "GET", "/metrics", &[("X-Forwarded-For", "198.51.100.7")], b"").await;
    assert_eq!(status, 404, "forwarded by a proxy: {body}");
}

/// With an https `PUBLIC_URL`, the session cookie is `Secure` even though the
/// request reached the server over plain HTTP (TLS ends at a proxy).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_session_cookie_is_secure_on_an_https_site() {
    let srv = start_with(Which::Sqlite, &[("PUBLIC_URL", "https://bo.example.test")]).await;
    let ch = channel(srv.addr).await;
    let resp = proto::auth::v1::auth_service_client::AuthServiceClient::new(ch)
        .login(proto::auth::v1::LoginRequest { email: ROOT_EMAIL.into(), password: ROOT_PASSWORD.into() })
        .await
        .expect("login");
    let cookie = resp.metadata().get("set-cookie").and_then(|v| v.to_str().ok()).unwrap_or_default();
    assert!(cookie.contains("; Secure"), "{cookie}");
}

/// An HTTP/1.0 exchange from the loopback address `local`, with `extra` header
/// lines: (status, body).
async fn http_from(addr: SocketAddr, local: IpAddr, path: &str, body: &str, extra: &str) -> (u16, String) {
    let sock = tokio::net::TcpSocket::new_v4().expect("socket");
    sock.bind(SocketAddr::new(local, 0)).expect("bind");
    let mut s = sock.connect(addr).await.expect("connect");
    let req = format!(
        "POST {path} HTTP/1.0\r\nHost: x\r\n{extra}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.expect("write");
    let mut raw = String::new();
    s.read_to_string(&mut raw).await.expect("read");
    let status = raw.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (status, raw)
}

/// The `Retry-After` of a raw answer, in seconds.
fn retry_after(raw: &str) -> Option<u64> {
    let head = raw.split("\r\n\r\n").next()?;
    head.lines().find_map(|l| l.to_ascii_lowercase().strip_prefix("retry-after: ").and_then(|v| v.trim().parse().ok()))
}

/// Eight addresses of one /24 send ten sign-ups each (their per-address
/// maximum): together they get a quarter of the global minute's budget, and a
/// visitor from another network still signs up. Refused input is not counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_network_cannot_use_up_the_signup_budget() {
    let srv = start_with(Which::Sqlite, &[("WORKER", "off")]).await;
    // Refused input costs the network nothing.
    for _ in 0..3 {
        let (status, raw) = http_from(srv.addr, [127, 0, 0, 9].into(), "/api/signup", r#"{"email": "x"}"#, "").await;
        assert_eq!(status, 422, "{raw}");
    }
    let mut accepted = 0;
    for host in 1..=8u8 {
        for i in 0..10 {
            let body = format!(r#"{{"company_name": "Flood {host} {i}", "email": "f{host}x{i}@flood.test"}}"#);
            let (status, raw) = http_from(srv.addr, [127, 0, 0, host].into(), "/api/signup", &body, "").await;
            match status {
                202 => accepted += 1,
                // A client told how long to wait: the per-address limit of ten
                // an hour refills one every 6 min, the /24's share of 60 a
                // minute one every 4 s.
                429 => {
                    let after = retry_after(&raw).unwrap_or_else(|| panic!("no Retry-After: {raw}"));
                    assert!((1..=360).contains(&after), "{raw}");
                }
                _ => panic!("{raw}"),
            }
        }
    }
    assert_eq!(accepted, 60 / 4, "one /24's share of 60 a minute");
    let body = r#"{"company_name": "Genuine Visitor", "email": "me@genuine.test"}"#;
    let (status, raw) = http_from(srv.addr, [127, 0, 1, 1].into(), "/api/signup", body, "").await;
    assert_eq!(status, 202, "{raw}");
}

/// Behind a proxy named in `TRUSTED_PROXIES` (here 127.0.0.1) each client is
/// counted by the address the proxy appended to `X-Forwarded-For`, not by the
/// proxy's, and not by what the client wrote there itself; a peer that is not
/// a trusted proxy is counted by its own address whatever it sends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trusted_proxy_names_the_client() {
    let srv = start_with(
        Which::Sqlite,
        &[("WORKER", "off"), ("TRUSTED_PROXIES", "127.0.0.1"), ("SIGNUP_PER_IP_PER_HOUR", "2")],
    )
    .await;
    let signup = |local: [u8; 4], forwarded: &'static str, n: u32| {
        let body = format!(r#"{{"company_name": "Proxied {n}", "email": "p{n}@proxied.test"}}"#);
        let extra = format!("X-Forwarded-For: {forwarded}\r\n");
        async move { http_from(srv.addr, local.into(), "/api/signup", &body, &extra).await }
    };
    let proxy = [127, 0, 0, 1];
    // One client through the proxy, lying at the left: its limit of 2.
    let statuses = [
        signup(proxy, "6.6.6.1, 198.51.100.1", 1).await.0,
        signup(proxy, "6.6.6.2, 198.51.100.1", 2).await.0,
        signup(proxy, "6.6.6.3, 198.51.100.1", 3).await.0,
    ];
    assert_eq!(statuses, [202, 202, 429], "one client behind the proxy");
    // Another client through the same proxy has a limit of its own.
    let (status, raw) = signup(proxy, "198.51.100.2", 4).await;
    assert_eq!(status, 202, "another client behind the proxy: {raw}");
    // Not a trusted proxy: its header is not believed.
    let direct = [127, 0, 0, 2];
    let statuses = [
        signup(direct, "198.51.100.3", 5).await.0,
        signup(direct, "198.51.100.4", 6).await.0,
        signup(direct, "198.51.100.5", 7).await.0,
    ];
    assert_eq!(statuses, [202, 202, 429], "an untrusted peer is counted as itself");
}

/// A long answer over HTTP/1.1 (a gRPC-web stream, as browsers hold one) is not
/// cut by the header timeout: the timer only runs while the server waits for a
/// request's head.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_outlive_the_header_timeout() {
    let srv = start_with(Which::Sqlite, &[("HTTP_HEADER_TIMEOUT_SECS", "1")]).await;
    let token = login(&channel(srv.addr).await, ROOT_EMAIL, ROOT_PASSWORD).await.expect("login");
    let mut s = TcpStream::connect(srv.addr).await.expect("connect");
    let frame = [0u8, 0, 0, 0, 0]; // one empty WatchCountsRequest
    let head = format!(
        "POST /jobs.v1.JobService/WatchCounts HTTP/1.1\r\nHost: x\r\nContent-Type: application/grpc-web+proto\r\n\
         X-Grpc-Web: 1\r\nAuthorization: Bearer {token}\r\nContent-Length: {}\r\n\r\n",
        frame.len()
    );
    s.write_all(head.as_bytes()).await.expect("write");
    s.write_all(&frame).await.expect("write");
    let t = Instant::now();
    let mut got = 0;
    while t.elapsed() < Duration::from_secs(3) {
        match tokio::time::timeout(Duration::from_millis(500), s.read(&mut [0u8; 1024])).await {
            Ok(Ok(0) | Err(_)) => panic!("the stream was cut after {:?}", t.elapsed()),
            Ok(Ok(n)) => got += n,
            Err(_) => {}
        }
    }
    assert!(got > 0, "the stream sent its first counts");
}
