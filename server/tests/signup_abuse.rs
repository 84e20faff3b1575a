//! Abuse of the public sign-up through the real server (issue 11: items 1, 6, 8,
//! 10): one email makes one account even under a race, a taken name answers like
//! any sign-up, our emails carry no attacker text and are capped per recipient,
//! and names that only look alike are one name. On SQLite and PostgreSQL, with a
//! real SMTP server.

use std::time::Duration;

use backoffice::testing::{SmtpSink, plain_text};
use jobengine::testing::Which;
use proto::tenants::v1 as tpb;
use proto::tenants::v1::tenant_service_client::TenantServiceClient;
use tonic::Code;
use tonic::transport::Channel;

mod common;
use common::*;

jobengine::on_both!(
    concurrent_sign_ups_with_one_email_make_one_account,
    create_then_sign_up_with_one_email,
    a_permanent_conflict_fails_at_once_and_a_failed_tenant_frees_its_name_and_email,
    a_taken_name_answers_like_any_sign_up,
    notices_carry_no_visitor_text_and_are_capped_per_recipient,
    names_that_only_look_alike_are_one_name,
);

/// How many sign-ups race in [`concurrent_sign_ups_with_one_email_make_one_account`].
const RACERS: usize = 20;

async fn root_session(ch: &Channel) -> String {
    login(ch, ROOT_EMAIL, ROOT_PASSWORD).await.expect("login")
}

async fn all_tenants(ch: &Channel, root: &str) -> Vec<tpb::Tenant> {
    TenantServiceClient::new(ch.clone())
        .list_tenants(bearer(tpb::ListTenantsRequest { page_size: 200, ..Default::default() }, root))
        .await
        .expect("list")
        .into_inner()
        .tenants
}

/// Waits (up to 30 s) until no tenant is `provisioning`; returns them all
/// (the callers' assertions report what did not settle).
async fn settled(ch: &Channel) -> Vec<tpb::Tenant> {
    let root = root_session(ch).await;
    let end = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let all = all_tenants(ch, &root).await;
        if all.iter().all(|t| t.status != tpb::TenantStatus::Provisioning as i32) || std::time::Instant::now() > end {
            return all;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// How many of `tenants`' databases exist (SQLite files, or PostgreSQL databases).
async fn databases(srv: &TestServer, which: Which, tenants: &[tpb::Tenant]) -> usize {
    match which {
        Which::Sqlite => std::fs::read_dir(srv.dir.path().join("tenants"))
            .map(|rd| rd.flatten().filter(|e| e.path().extension().is_some_and(|x| x == "db")).count())
            .unwrap_or(0),
        Which::Postgres => {
            let db = database::Db::connect(&srv.db.url).await.expect("connect");
            let mut n = 0;
            for t in tenants {
                let name = format!("t_{}", t.id.replace('-', ""));
                let found: i64 = database::query("SELECT COUNT(*) FROM pg_database WHERE datname = $1")
                    .bind(name)
                    .scalar(db.read())
                    .await
                    .expect("count");
                n += usize::try_from(found).unwrap_or(0);
            }
            db.close().await;
            n
        }
    }
}

/// Item 1: twenty visitors sign up with one address at once (different company
/// names). One tenant, one database, one welcome email; every other caller gets
/// the same public answer and the address's owner a "you already have an account"
/// notice. Before the fix: 20 tenants, 20 databases, 19 of them failing after ten
/// retries.
async fn concurrent_sign_ups_with_one_email_make_one_account(which: Which) {
    let sink = SmtpSink::start();
    let srv = start_with(
        which,
        &[
            ("SMTP_URL", &sink.url),
            ("SIGNUP_PER_IP_PER_HOUR", "1000"),
            ("SIGNUP_PER_MINUTE", "1000"),
            ("MAIL_PER_RECIPIENT_PER_HOUR", "100"),
        ],
    )
    .await;
    let ch = channel(srv.addr).await;
    let calls = (0..RACERS).map(|i| {
        let mut c = TenantServiceClient::new(ch.clone());
        async move {
            c.sign_up(tpb::SignUpRequest { company_name: format!("Racer {i} Ltd"), email: "same@race.test".into() })
                .await
                .map(|r| r.into_inner().message)
        }
    });
    let answers = futures::future::join_all(calls).await;
    let first = answers[0].clone().expect("sign up");
    for a in &answers {
        assert_eq!(a.as_ref().expect("every caller gets the public answer"), &first);
    }
    let tenants = settled(&ch).await;
    let dbs = databases(&srv, which, &tenants).await;
    // Notices and the welcome email: wait for what should arrive, then a little
    // longer for anything that should not.
    let mails = mails_within(&sink, RACERS, Duration::from_secs(30));
    let welcome = mails.iter().filter(|m| plain_text(m).contains("is ready")).count();
    let notices = mails.iter().filter(|m| plain_text(m).contains("already have an account")).count();
    println!(
        "FIGURE {which:?}: {RACERS} concurrent sign-ups, one email -> {} tenants ({} active), {dbs} databases, \
         {welcome} welcome emails, {notices} already-have-an-account notices",
        tenants.len(),
        tenants.iter().filter(|t| t.status == tpb::TenantStatus::Active as i32).count(),
    );
    assert_eq!(tenants.len(), 1, "{tenants:?}");
    assert_eq!(tenants[0].status, tpb::TenantStatus::Active as i32, "{tenants:?}");
    assert_eq!(dbs, 1);
    assert_eq!((welcome, notices), (1, RACERS - 1));
    assert_eq!(outbox_count(&srv, "same@race.test").await, RACERS as i64, "nothing more is queued");
}

/// The messages the sink has once `n` arrived or `within` passed.
fn mails_within(sink: &SmtpSink, n: usize, within: Duration) -> Vec<String> {
    let end = std::time::Instant::now() + within;
    loop {
        let m = sink.messages();
        if m.len() >= n || std::time::Instant::now() > end {
            return m;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Emails queued for `to` (sent or not): the outbox is what the cap counts.
async fn outbox_count(srv: &TestServer, to: &str) -> i64 {
    let db = database::Db::connect(&srv.db.url).await.expect("connect");
    let n = database::query("SELECT COUNT(*) FROM outbox WHERE recipient = $1")
        .bind(to)
        .scalar(db.read())
        .await
        .expect("count");
    db.close().await;
    n
}

fn sign_up(company_name: &str, email: &str) -> tpb::SignUpRequest {
    tpb::SignUpRequest { company_name: company_name.into(), email: email.into() }
}

fn create(name: &str, admin_email: &str, root: &str) -> tonic::Request<tpb::CreateTenantRequest> {
    bearer(tpb::CreateTenantRequest { name: name.into(), admin_email: admin_email.into() }, root)
}

/// Item 1: a super admin's tenant reserves its admin email at once, before its
/// provisioning (slowed here) has made the account: a sign-up with that email
/// gets the public answer and the owner a notice; the other way round, the
/// super admin is told the email is taken.
async fn create_then_sign_up_with_one_email(which: Which) {
    let sink = SmtpSink::start();
    let srv = start_with(which, &[("SMTP_URL", &sink.url), ("PROVISION_FAULT", "slow:300")]).await;
    let ch = channel(srv.addr).await;
    let root = root_session(&ch).await;
    let mut tenants = TenantServiceClient::new(ch.clone());
    tenants.create_tenant(create("Alpha Works", "ann@alpha.test", &root)).await.expect("create");
    let answer = tenants.sign_up(sign_up("Beta Works", "ann@alpha.test")).await.expect("sign up").into_inner();
    assert_eq!(answer.message, "Thanks for signing up! Check your email shortly for your login details.");

    tenants.sign_up(sign_up("Gamma Works", "gil@gamma.test")).await.expect("sign up");
    let taken = tenants.create_tenant(create("Delta Works", "gil@gamma.test", &root)).await.expect_err("taken");
    assert_eq!(taken.code(), Code::AlreadyExists, "{taken:?}");
    assert_eq!(taken.message(), "admin_email: already has an account");

    let all = settled(&ch).await;
    let mut names: Vec<_> = all.iter().map(|t| (t.name.as_str(), t.status)).collect();
    names.sort_unstable();
    let active = tpb::TenantStatus::Active as i32;
    assert_eq!(names, [("Alpha Works", active), ("Gamma Works", active)]);
    let mails = mails_within(&sink, 3, Duration::from_secs(30));
    let to_ann: Vec<String> =
        mails.iter().filter(|m| m.contains("X-Envelope-To: ann@alpha.test")).map(|m| plain_text(m)).collect();
    assert_eq!(to_ann.len(), 2, "a welcome and a notice: {to_ann:?}");
    assert_eq!(to_ann.iter().filter(|m| m.contains("You already have an account")).count(), 1, "{to_ann:?}");
    assert_eq!(outbox_count(&srv, "ann@alpha.test").await, 2);
}

/// Item 1: a conflict retrying cannot mend (the admin email became another
/// account's while provisioning ran) fails the tenant on the first attempt, not
/// after ten; and a failed tenant holds neither its name nor its email.
async fn a_permanent_conflict_fails_at_once_and_a_failed_tenant_frees_its_name_and_email(which: Which) {
    let srv = start_with(which, &[("PROVISION_FAULT", "slow:300")]).await;
    let ch = channel(srv.addr).await;
    let root = root_session(&ch).await;
    let mut tenants = TenantServiceClient::new(ch.clone());
    let clash =
        tenants.create_tenant(create("Clash Co", "clash@clash.test", &root)).await.expect("create").into_inner();
    srv.identity.seed_super_admin("clash@clash.test", None).await.expect("another account takes the address");
    let end = std::time::Instant::now() + Duration::from_secs(15);
    let failed = loop {
        let t = all_tenants(&ch, &root).await.into_iter().find(|t| t.name == "Clash Co").expect("listed");
        if t.status == tpb::TenantStatus::Failed as i32 {
            break t;
        }
        assert!(std::time::Instant::now() < end, "not failed within 15 s (retried?): {t:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(failed.last_error.contains("already has an account elsewhere"), "{failed:?}");
    let job = client(srv.addr)
        .await
        .get_job(proto::jobs::v1::GetJobRequest { id: clash.job_id })
        .await
        .expect("job")
        .into_inner()
        .job
        .expect("job");
    assert_eq!(job.attempt, 1, "a permanent conflict is not retried: {job:?}");

    // The failed tenant's name is free again (its email is a super admin's now).
    tenants.create_tenant(create("Clash Co", "other@clash.test", &root)).await.expect("the name is free again");
    // Requeuing the failed tenant's job by hand does not bring it back: its name
    // is someone else's now.
    let mut jobs = client(srv.addr).await;
    jobs.requeue_job(proto::jobs::v1::JobIdRequest { id: clash.job_id }).await.expect("requeue");
    let end = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let j = jobs.get_job(proto::jobs::v1::GetJobRequest { id: clash.job_id }).await.expect("job").into_inner();
        let j = j.job.expect("job");
        if j.state == proto::jobs::v1::JobState::Dead as i32 && j.last_error.contains("has failed") {
            break;
        }
        assert!(std::time::Instant::now() < end, "the requeued job did not end: {j:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let failed_again = tenants
        .get_tenant(bearer(tpb::GetTenantRequest { id: failed.id.clone() }, &root))
        .await
        .expect("get")
        .into_inner();
    assert_eq!(failed_again.status, tpb::TenantStatus::Failed as i32, "{failed_again:?}");

    // A tenant that fails for another reason frees its email too.
    drop(srv);
    let srv = start_with(which, &[("PROVISION_FAULT", "fail:Doomed"), ("JOB_BACKOFF_BASE_MS", "1")]).await;
    let ch = channel(srv.addr).await;
    let root = root_session(&ch).await;
    let mut tenants = TenantServiceClient::new(ch.clone());
    tenants.create_tenant(create("Doomed Co", "dee@doomed.test", &root)).await.expect("create");
    let all = settled(&ch).await;
    assert_eq!(all[0].status, tpb::TenantStatus::Failed as i32, "{all:?}");
    tenants.create_tenant(create("Phoenix Co", "dee@doomed.test", &root)).await.expect("the email is free again");
    tenants.create_tenant(create("Doomed Co", "dan@doomed.test", &root)).await.expect("the name is free again");
}

/// Item 10: a public sign-up with a customer's company name is answered like any
/// other (no ALREADY_EXISTS naming the field), creates nothing, and the person
/// at the address is told privately, without the name repeated.
async fn a_taken_name_answers_like_any_sign_up(which: Which) {
    let sink = SmtpSink::start();
    let srv = start_with(which, &[("SMTP_URL", &sink.url)]).await;
    let ch = channel(srv.addr).await;
    let mut tenants = TenantServiceClient::new(ch.clone());
    let first = tenants.sign_up(sign_up("Umbrella", "alice@umbrella.test")).await.expect("sign up").into_inner();
    let again = tenants
        .sign_up(sign_up("UMBRELLA", "mallory@probe.test"))
        .await
        .expect("a taken name gets the public answer")
        .into_inner();
    assert_eq!(again.message, first.message);
    // The JSON facade says the same.
    let (code, _, body) =
        http(srv.addr, "POST", "/api/signup", &[JSON], br#"{"company_name": "umbrella", "email": "eve@probe.test"}"#)
            .await;
    assert_eq!(code, 202, "{body}");
    let names: Vec<_> = settled(&ch).await.into_iter().map(|t| t.name).collect();
    assert_eq!(names, ["Umbrella"]);
    let mails = mails_within(&sink, 3, Duration::from_secs(30));
    let to_mallory: Vec<String> =
        mails.iter().filter(|m| m.contains("X-Envelope-To: mallory@probe.test")).map(|m| plain_text(m)).collect();
    assert_eq!(to_mallory.len(), 1, "{mails:?}");
    assert!(to_mallory[0].contains("already used by another workspace"), "{}", to_mallory[0]);
    assert!(!to_mallory[0].to_lowercase().contains("umbrella"), "{}", to_mallory[0]);
}

/// Item 6: a visitor's text never reaches an account owner's inbox as ours: not
/// in the "you already have an account" notice, not in any subject, and in a
/// welcome email only as a labelled, shortened value; and one address gets at
/// most `MAIL_PER_RECIPIENT_PER_HOUR` emails an hour, counted in the database.
async fn notices_carry_no_visitor_text_and_are_capped_per_recipient(which: Which) {
    let sink = SmtpSink::start();
    let srv = start_with(which, &[("SMTP_URL", &sink.url), ("MAIL_PER_RECIPIENT_PER_HOUR", "2")]).await;
    let ch = channel(srv.addr).await;
    let mut tenants = TenantServiceClient::new(ch.clone());
    let hostile = "Acme. URGENT: your account is locked, verify at http://evil.test/login now or lose data";
    tenants.sign_up(sign_up(hostile, "victim@victim.test")).await.expect("sign up");
    let welcome = mails_within(&sink, 1, Duration::from_secs(30));
    assert_eq!(welcome.len(), 1);
    let subject = welcome[0].lines().find(|l| l.starts_with("Subject:")).expect("a subject");
    assert_eq!(subject.trim_end(), "Subject: Your Back Office workspace is ready", "no visitor text in the subject");
    let text = plain_text(&welcome[0]);
    assert!(text.contains("Workspace name (as entered at sign-up): \"Acme. URGENT"), "{text}");
    assert!(!text.contains("evil.test/login now"), "the name is shortened: {text}");

    // The address has an account now: three more sign-ups with attacker text.
    for i in 0..3 {
        let again = format!("Acme {i}. URGENT: verify at http://evil.test/{i}");
        tenants.sign_up(sign_up(&again, "victim@victim.test")).await.expect("same public answer");
    }
    assert_eq!(outbox_count(&srv, "victim@victim.test").await, 2, "a welcome and one notice, then the cap");
    let mails = mails_within(&sink, 2, Duration::from_secs(30));
    assert_eq!(mails.len(), 2);
    let notice = plain_text(&mails[1]);
    assert!(notice.contains("You already have an account"), "{notice}");
    for bad in ["URGENT", "evil", "Acme"] {
        assert!(!mails[1].contains(bad), "{bad} in the notice: {}", mails[1]);
    }
}

/// Item 8: names that only look like a tenant's are that tenant's name; bidi
/// overrides and byte-order marks are refused, naming the field.
async fn names_that_only_look_alike_are_one_name(which: Which) {
    let srv = start(which).await;
    let ch = channel(srv.addr).await;
    let root = root_session(&ch).await;
    let mut tenants = TenantServiceClient::new(ch.clone());
    tenants.create_tenant(create("Acme", "a0@acme.test", &root)).await.expect("create");
    tenants.create_tenant(create("\u{e9}cole", "e0@ecole.test", &root)).await.expect("create (NFC)");
    let lookalikes = [
        "Ac\u{200b}me",
        "Acme\u{200d}",
        "\u{ff21}\u{ff43}\u{ff4d}\u{ff45}",
        "\u{410}cme",
        "ACME",
        "Acrne",
        "e\u{301}cole",
    ];
    for (i, name) in lookalikes.iter().enumerate() {
        let e = tenants.create_tenant(create(name, &format!("a{}@acme.test", i + 1), &root)).await.expect_err(name);
        assert_eq!((e.code(), e.message().split(':').next()), (Code::AlreadyExists, Some("name")), "{name:?}: {e:?}");
    }
    for name in ["Acme\u{202e}gnp", "\u{feff}Initech", "Glo\u{2066}bex"] {
        let e = tenants.create_tenant(create(name, "b@bidi.test", &root)).await.expect_err(name);
        assert_eq!(e.code(), Code::InvalidArgument, "{name:?}: {e:?}");
        assert!(e.message().starts_with("name: must not contain U+"), "{name:?}: {}", e.message());
    }
    // A full-width name is stored in its plain form.
    tenants.create_tenant(create("\u{ff27}lobex", "g@globex.test", &root)).await.expect("create");
    let names: Vec<_> = all_tenants(&ch, &root).await.into_iter().map(|t| t.name).collect();
    assert!(names.contains(&"Globex".to_owned()), "{names:?}");
    assert_eq!(names.len(), 3, "nothing else was written: {names:?}");
}
