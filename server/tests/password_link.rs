//! "Send me a new link" through the real server, on both backends, with a real
//! SMTP server: `auth.v1.RequestPasswordLink` and the no-JavaScript form answer
//! the same for an address with an account and one without (only the mailbox
//! learns the difference), the link that arrives works, bad input is refused by
//! field, a client address is limited, and an account's emails are capped.

use std::time::Duration;

use backoffice::testing::{SmtpSink, link_token, plain_text};
use jobengine::testing::Which;
use proto::auth::v1 as pb;
use proto::auth::v1::auth_service_client::AuthServiceClient;
use proto::tenants::v1 as tpb;
use proto::tenants::v1::tenant_service_client::TenantServiceClient;
use tonic::Code;
use tonic::transport::Channel;
use tonic_types::StatusExt;

mod common;
use common::*;

jobengine::on_both!(
    a_new_link_answers_alike_for_every_address_and_works,
    bad_input_is_refused_by_field,
    new_links_are_limited_per_address_and_per_account,
    the_form_works_without_javascript,
);

const OWNER: &str = "owner@lost.test";

async fn ask(ch: &Channel, email: &str) -> Result<String, tonic::Status> {
    AuthServiceClient::new(ch.clone())
        .request_password_link(pb::RequestPasswordLinkRequest { email: email.into() })
        .await
        .map(|r| r.into_inner().message)
}

/// A server sending through `sink`, with an active tenant whose admin is
/// [`OWNER`] and whose welcome email has arrived.
async fn with_tenant(which: Which, sink: &SmtpSink, extra: &[(&str, &str)]) -> TestServer {
    let mut settings = vec![("SMTP_URL", sink.url.as_str())];
    settings.extend_from_slice(extra);
    let srv = start_with(which, &settings).await;
    let ch = channel(srv.addr).await;
    let root = login(&ch, ROOT_EMAIL, ROOT_PASSWORD).await.expect("login");
    TenantServiceClient::new(ch)
        .create_tenant(bearer(tpb::CreateTenantRequest { name: "Lost Co".into(), admin_email: OWNER.into() }, &root))
        .await
        .expect("create");
    let welcome = sink.wait_for(1, Duration::from_secs(30));
    assert!(plain_text(&welcome[0]).contains("workspace is ready"));
    srv
}

/// `password_link` emails queued for `to` (the outbox, sent or not).
async fn links_queued(srv: &TestServer, to: &str) -> i64 {
    let db = database::Db::connect(&srv.db.url).await.expect("connect");
    let n = database::query("SELECT COUNT(*) FROM outbox WHERE recipient = $1 AND kind = 'password_link'")
        .bind(to)
        .scalar(db.read())
        .await
        .expect("count");
    db.close().await;
    n
}

async fn a_new_link_answers_alike_for_every_address_and_works(which: Which) {
    let sink = SmtpSink::start();
    let srv = with_tenant(which, &sink, &[]).await;
    let ch = channel(srv.addr).await;
    let known = ask(&ch, OWNER).await.expect("known address");
    let unknown = ask(&ch, "stranger@lost.test").await.expect("unknown address");
    let root = ask(&ch, ROOT_EMAIL).await.expect("the super admin's address");
    assert_eq!(known, unknown, "no account enumeration");
    assert_eq!(known, root);
    assert!(known.contains("If this address belongs to an account"), "{known}");

    let mails = sink.wait_for(2, Duration::from_secs(30));
    let link = plain_text(&mails[1]);
    assert!(link.contains("asked for a new link"), "{link}");
    assert!(mails[1].contains(&format!("To: {OWNER}")), "{}", mails[1]);
    assert_eq!(links_queued(&srv, "stranger@lost.test").await + links_queued(&srv, ROOT_EMAIL).await, 0);

    // The new link sets the password; the welcome link was ended by it.
    let welcome = link_token(&mails[0]).expect("welcome link");
    let fresh = link_token(&mails[1]).expect("new link");
    let mut auth = AuthServiceClient::new(ch.clone());
    let old = auth.set_password(pb::SetPasswordRequest { token: welcome, password: "a new password!".into() }).await;
    assert_eq!(old.expect_err("the old link is ended").code(), Code::InvalidArgument);
    auth.set_password(pb::SetPasswordRequest { token: fresh, password: "a new password!".into() })
        .await
        .expect("the new link works");
    login(&ch, OWNER, "a new password!").await.expect("signs in");
}

async fn bad_input_is_refused_by_field(which: Which) {
    let srv = start(which).await;
    let ch = channel(srv.addr).await;
    let long = format!("{}@example.com", "a".repeat(3000));
    for bad in ["", "not an address", "nul\0@example.com", long.as_str()] {
        let err = ask(&ch, bad).await.expect_err(bad);
        assert_eq!(err.code(), Code::InvalidArgument, "{bad:?}: {err:?}");
        let details = err.get_details_bad_request().expect("a BadRequest detail");
        let fields: Vec<_> = details.field_violations.iter().map(|v| v.field.as_str()).collect();
        assert_eq!(fields, ["email"], "{bad:?}");
    }
}

async fn new_links_are_limited_per_address_and_per_account(which: Which) {
    let sink = SmtpSink::start();
    let srv = with_tenant(which, &sink, &[("MAIL_PER_RECIPIENT_PER_HOUR", "3")]).await;
    let ch = channel(srv.addr).await;
    // Per account: past its hourly cap nothing more is sent, and the answer
    // does not change (it would reveal the account).
    let first = ask(&ch, OWNER).await.expect("asked");
    for _ in 0..4 {
        assert_eq!(ask(&ch, OWNER).await.expect("same answer"), first);
    }
    // The welcome email counts towards the cap: 1 + 2 links = 3 this hour.
    assert_eq!(links_queued(&srv, OWNER).await, 2);

    // Per client address: ten an hour (five asked above), then RESOURCE_EXHAUSTED
    // whatever the address asked for; another client address is not affected.
    let mut codes = Vec::new();
    for i in 0..6 {
        codes.push(ask(&ch, &format!("someone{i}@lost.test")).await.map(drop).map_err(|s| s.code()));
    }
    assert_eq!(codes[..5], [Ok(()); 5], "{codes:?}");
    assert_eq!(codes[5], Err(Code::ResourceExhausted), "{codes:?}");
    let refused = ask(&ch, "someone.else@lost.test").await.expect_err("still over");
    let after = server::boundary::retry_after(&refused).expect("a RetryInfo detail");
    assert!((300..=360).contains(&after.as_secs()), "ten an hour refill one every 6 min: {after:?}");
    let elsewhere = channel_from(srv.addr, [127, 0, 0, 2].into()).await;
    assert_eq!(ask(&elsewhere, "someone@lost.test").await.expect("another address"), first);
}

async fn the_form_works_without_javascript(which: Which) {
    let sink = SmtpSink::start();
    let srv = with_tenant(which, &sink, &[]).await;
    let post = |body: &'static str| {
        http(
            srv.addr,
            "POST",
            "/set-password/new-link",
            &[("Sec-Fetch-Site", "same-origin"), ("Content-Type", "application/x-www-form-urlencoded")],
            body.as_bytes(),
        )
    };
    let (known, head_known, _) = post("email=owner%40lost.test").await;
    let (unknown, head_unknown, _) = post("email=nobody%40lost.test").await;
    assert_eq!((known, unknown), (303, 303));
    let location = |h: &str| h.lines().find(|l| l.starts_with("location:")).map(str::to_owned);
    assert_eq!(location(&head_known), location(&head_unknown), "the same answer");
    assert_eq!(location(&head_known).as_deref(), Some("location: /set-password/new-link?sent=1"));
    let (status, _, page) = http(srv.addr, "GET", "/set-password/new-link?sent=1", &[], b"").await;
    assert_eq!(status, 200);
    assert!(page.contains("If this address belongs to an account"), "{page}");

    let (status, _, page) = post("email=not+an+address").await;
    assert_eq!(status, 422);
    assert!(page.contains("is not an email address"), "{page}");
    assert!(page.contains("aria-invalid=\"true\""), "{page}");

    // Past the address's ten an hour (two asked above), the form comes back
    // with the wait in words, and the answer carries it as `Retry-After`.
    for _ in 0..8 {
        assert_eq!(post("email=nobody%40lost.test").await.0, 303);
    }
    let (status, head, page) = post("email=nobody%40lost.test").await;
    assert_eq!(status, 429, "{head}");
    assert!(page.contains("try again in 6 min"), "{page}");
    let after: u64 = head
        .lines()
        .find_map(|l| l.strip_prefix("retry-after: "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no Retry-After:\n{head}"));
    assert!((300..=360).contains(&after), "{after}");

    let mails = sink.wait_for(2, Duration::from_secs(30));
    assert!(plain_text(&mails[1]).contains("asked for a new link"));
}
