//! The dashboard's figures at scale, on both backends: counters that follow
//! every transition (whoever makes it), throughput from the per-second and
//! per-minute rows, and text search through the index with the scan's results.

use std::collections::BTreeMap;
use std::time::Duration;

use database::query;
use jobengine::builtin::{Fail, Noop};
use jobengine::storage::{Completion, Outcome, SearchLimits};
use jobengine::testing::{TestDb, Which, manual_clock};
use jobengine::{JobState, Jobs, ListQuery, ManualClock, Worker, WorkerConfig, registry_with_builtins};

jobengine::on_both!(
    counters_follow_every_transition,
    throughput_counts_every_completion,
    search_finds_what_a_scan_finds,
    search_walks_the_index,
    workers_write_queued_search_rows,
    the_indexer_does_not_wait_behind_a_table_lock,
    inserted_jobs_are_found_and_indexed_once,
    searches_survive_the_upgrade_that_indexes_dead_jobs_apart,
);

const SEC: i64 = 1_000_000;

fn now(c: &ManualClock) -> i64 {
    jobengine::Clock::now(c)
}

/// Jobs per state counted the slow way.
async fn group_by(jobs: &Jobs) -> BTreeMap<String, i64> {
    let rows: Vec<(String, i64)> = query("SELECT state, COUNT(*) FROM jobs GROUP BY state")
        .fetch_all(jobs.store().db().read())
        .await
        .expect("group by");
    rows.into_iter().collect()
}

/// What the counters hold (totals plus pending deltas), zero rows left out.
async fn counters(jobs: &Jobs) -> BTreeMap<String, i64> {
    let rows: Vec<(String, i64)> = query(
        "SELECT state, CAST(SUM(n) AS BIGINT) FROM
           (SELECT state, n FROM job_counts UNION ALL SELECT state, n FROM job_count_deltas) c
         GROUP BY state",
    )
    .fetch_all(jobs.store().db().read())
    .await
    .expect("counters");
    rows.into_iter().filter(|(_, n)| *n != 0).collect()
}

async fn check(jobs: &Jobs, step: &str) {
    let truth = group_by(jobs).await;
    assert_eq!(counters(jobs).await, truth, "the counters after {step}");
    let c = jobs.counts().await.expect("counts");
    let from_api: BTreeMap<String, i64> =
        JobState::ALL.iter().map(|s| (s.to_string(), c.get(*s) as i64)).filter(|(_, n)| *n != 0).collect();
    assert_eq!(from_api, truth, "counts() after {step}");
}

/// Claims up to `n` jobs as worker `w`.
async fn claim(jobs: &Jobs, n: u32, at: i64, lease: i64) -> Vec<(i64, i64)> {
    let rows = jobs.store().fetch("w", &["default".to_owned()], n, at, at + lease).await.expect("claim");
    rows.iter().map(|r| (r.id, r.lease_seq)).collect()
}

async fn complete(jobs: &Jobs, held: &[(i64, i64)], at: i64, outcome: impl Fn(usize) -> Outcome) {
    let batch: Vec<Completion> = held
        .iter()
        .enumerate()
        .map(|(i, (id, seq))| Completion { job_id: *id, lease_seq: *seq, at, outcome: outcome(i) })
        .collect();
    let done = jobs.store().complete(&batch, at).await.expect("complete");
    assert!(done.iter().all(|d| *d), "every completion accepted");
}

async fn counters_follow_every_transition(which: Which) {
    let db = TestDb::new(which).await;
    let clock = manual_clock();
    let jobs = db.jobs_with_clock(clock.clone()).await;
    check(&jobs, "nothing").await;
    let batch: Vec<_> = (0..40).map(|_| jobs.new_job(&Noop {}, None).expect("job")).collect();
    jobs.enqueue_many(&batch).await.expect("bulk enqueue");
    let later = jobs.new_job(&Noop {}, Some(now(&clock) + 3600 * SEC)).expect("job");
    jobs.enqueue_many(&[later.clone(), later]).await.expect("scheduled");
    jobs.enqueue(&Fail { message: "x".into(), permanent: true }).await.expect("enqueue");
    check(&jobs, "enqueues").await;

    let held = claim(&jobs, 30, now(&clock), 10 * SEC).await;
    check(&jobs, "a claim").await;
    let t = now(&clock);
    complete(&jobs, &held, t, |i| match i % 6 {
        0 => Outcome::Retry { at: t + SEC, errors: vec!["retry me".into()] },
        1 => Outcome::Dead { errors: vec!["dead".into()] },
        _ => Outcome::Succeeded,
    })
    .await;
    check(&jobs, "completions (succeeded, retried, dead)").await;

    // A lease that runs out: the rescuer takes the jobs back.
    let held = claim(&jobs, 5, now(&clock), SEC).await;
    assert_eq!(held.len(), 5);
    clock.advance(Duration::from_secs(5));
    let rescued = jobs.store().rescue(now(&clock), 3).await.expect("rescue");
    assert_eq!(rescued.requeued, 5);
    check(&jobs, "a rescue").await;

    // Admin operations.
    let dead = jobs
        .list(&ListQuery { state: JobState::Dead, kind: None, before_id: None, limit: 10, text: None })
        .await
        .expect("list");
    jobs.requeue(dead[0].id, "admin").await.expect("requeue");
    let ok = jobs
        .list(&ListQuery { state: JobState::Succeeded, kind: None, before_id: None, limit: 10, text: None })
        .await
        .expect("list");
    jobs.delete(ok[0].id, "admin").await.expect("delete");
    let waiting = jobs
        .list(&ListQuery { state: JobState::Enqueued, kind: None, before_id: None, limit: 1, text: None })
        .await
        .expect("list");
    jobs.delete(waiting[0].id, "admin").await.expect("delete");
    check(&jobs, "requeue and deletes").await;

    // Retention, in batches smaller than what it removes.
    clock.advance(Duration::from_secs(60));
    let removed = jobs.store().remove_ended(JobState::Succeeded, now(&clock), 3).await.expect("retention");
    assert!(removed > 3, "removed {removed}");
    jobs.store().remove_ended(JobState::Deleted, now(&clock), 3).await.expect("retention");
    check(&jobs, "retention").await;

    // And a plain DELETE, as an operator might run.
    query("DELETE FROM jobs WHERE state = 'dead'").execute(jobs.store().db().write()).await.expect("delete");
    check(&jobs, "a hand-written delete").await;
    jobs.store().fold_stats(now(&clock)).await.expect("fold");
    check(&jobs, "a fold").await;
}

/// Completions per bucket of `width` µs, from the history (every transition is
/// written there): what throughput must report.
async fn from_history(jobs: &Jobs, width: i64) -> Vec<(i64, u64, u64)> {
    let rows: Vec<(String, i64)> =
        query("SELECT state, at FROM job_history WHERE state IN ('succeeded', 'dead') ORDER BY at")
            .fetch_all(jobs.store().db().read())
            .await
            .expect("history");
    let mut b: BTreeMap<i64, (u64, u64)> = BTreeMap::new();
    for (state, at) in rows {
        let e = b.entry(at - at.rem_euclid(width)).or_default();
        if state == "succeeded" { e.0 += 1 } else { e.1 += 1 }
    }
    b.into_iter().map(|(at, (ok, dead))| (at, ok, dead)).collect()
}

async fn throughput_counts_every_completion(which: Which) {
    let db = TestDb::new(which).await;
    let clock = manual_clock();
    let jobs = db.jobs_with_clock(clock.clone()).await;
    let start = now(&clock);
    let batch: Vec<_> = (0..30).map(|_| jobs.new_job(&Noop {}, None).expect("job")).collect();
    jobs.enqueue_many(&batch).await.expect("enqueue");
    // Completions spread over three minutes, a few per second.
    for round in 0..10 {
        let held = claim(&jobs, 3, now(&clock), 600 * SEC).await;
        let t = now(&clock);
        complete(&jobs, &held, t, |i| {
            if i == 0 && round % 3 == 0 { Outcome::Dead { errors: vec!["x".into()] } } else { Outcome::Succeeded }
        })
        .await;
        clock.advance(Duration::from_millis(17_300));
    }
    // A job that succeeded is run again and succeeds again: two completions. A
    // deleted one still happened.
    let ok = jobs
        .list(&ListQuery { state: JobState::Succeeded, kind: None, before_id: None, limit: 2, text: None })
        .await
        .expect("list");
    jobs.requeue(ok[0].id, "admin").await.expect("requeue");
    let held = claim(&jobs, 1, now(&clock), 600 * SEC).await;
    complete(&jobs, &held, now(&clock), |_| Outcome::Succeeded).await;
    jobs.delete(ok[1].id, "admin").await.expect("delete");

    let since = start - start.rem_euclid(60 * SEC);
    for width in [SEC, 5 * SEC, 60 * SEC, 120 * SEC] {
        let got = jobs.throughput(since, width).await.expect("throughput");
        assert_eq!(got, from_history(&jobs, width).await, "buckets of {width} µs");
    }
}

/// Jobs whose text is made to trip a naive search: wildcards, quotes, case.
async fn searchable(jobs: &Jobs) {
    let args = [
        r#"{"email":"Alice@Example.com"}"#,
        r#"{"email":"bob@example.org","note":"100% sure"}"#,
        r#"{"path":"C:\\tmp\\a_b"}"#,
        r#"{"quote":"say \"hi\""}"#,
        r#"{"n":42}"#,
        r#"{"word":"ÉCOLE"}"#,
    ];
    let mut batch = Vec::new();
    for a in args {
        let mut j = jobs.new_job(&Noop {}, None).expect("job");
        j.args = serde_json::from_str(a).expect("json");
        batch.push(j);
    }
    jobs.enqueue_many(&batch).await.expect("enqueue");
    jobs.enqueue(&Fail { message: "SMTP refused".into(), permanent: true }).await.expect("enqueue");
    // One of them fails, so its error is searchable.
    let held = claim(jobs, 1, jobengine::Clock::now(jobs.clock().as_ref()), 600 * SEC).await;
    complete(jobs, &held, jobengine::Clock::now(jobs.clock().as_ref()), |_| Outcome::Dead {
        errors: vec!["Connection Refused".into(), "by mx.example.net".into()],
    })
    .await;
}

/// Every job's id, state and searchable text, newest first.
async fn scan(jobs: &Jobs) -> Vec<(i64, String, String)> {
    query("SELECT id, state, kind || ' ' || args || ' ' || coalesce(last_error, '') FROM jobs ORDER BY id DESC")
        .fetch_all(jobs.store().db().read())
        .await
        .expect("all")
}

/// Each way a search can go below its first step, forced, then the default
/// choice (see `Store::list`).
fn ways() -> [(&'static str, SearchLimits); 7] {
    let default = SearchLimits::default();
    let walk = SearchLimits { walk_states_up_to: u64::MAX, exclude_others_up_to: 0, walk_step: 97, ..default };
    let index = SearchLimits { walk_states_up_to: 0, exclude_others_up_to: 0, ..default };
    let index_less_others = SearchLimits { walk_states_up_to: 0, exclude_others_up_to: u64::MAX, ..default };
    // A first step of 5 jobs: the later steps answer for the small states too
    // (dead jobs, searched through their own index after the first step
    // whatever the limits, and the few enqueued).
    let short = |limits: SearchLimits| SearchLimits { first_step: 5, ..limits };
    [
        // Steps of 97 jobs: many steps after the first 2,000.
        ("walk", walk),
        ("index", index),
        ("index less others", index_less_others),
        ("default", default),
        ("walk after 5", short(walk)),
        ("index after 5", short(index)),
        ("index less others after 5", short(index_less_others)),
    ]
}

/// Asserts that a search for each term in each state lists what a scan finds,
/// whichever way the search goes.
async fn searches_match_a_scan(jobs: &Jobs, terms: &[&str], step: &str) {
    for (way, limits) in ways() {
        jobs.store().set_search_limits(limits);
        searches_match_a_scan_one_way(jobs, terms, &format!("{step}, {way}")).await;
    }
}

async fn searches_match_a_scan_one_way(jobs: &Jobs, terms: &[&str], step: &str) {
    let all = scan(jobs).await;
    for term in terms {
        for state in [JobState::Enqueued, JobState::Dead, JobState::Succeeded] {
            let got: Vec<i64> = jobs
                .list(&ListQuery { state, kind: None, before_id: None, limit: 50, text: Some((*term).to_owned()) })
                .await
                .expect("search")
                .iter()
                .map(|j| j.id)
                .collect();
            let want: Vec<i64> = all
                .iter()
                .filter(|(_, s, text)| {
                    *s == state.as_str() && text.to_ascii_lowercase().contains(&term.to_ascii_lowercase())
                })
                .map(|(id, _, _)| *id)
                .take(50)
                .collect();
            assert_eq!(got, want, "{step}: {term:?} in {state}");
        }
    }
}

/// Each job has one search row, in the dead jobs' index if it is dead and in
/// the others' if not (after the queue is written, on PostgreSQL).
async fn search_rows_follow_jobs(jobs: &Jobs, which: Which, step: &str) {
    let rows = match which {
        Which::Sqlite => "SELECT (SELECT COUNT(*) FROM job_search), (SELECT COUNT(*) FROM job_search_dead)",
        Which::Postgres => "SELECT COUNT(*) FILTER (WHERE NOT dead), COUNT(*) FILTER (WHERE dead) FROM job_search",
    };
    let rows: (i64, i64) = query(rows).fetch_one(jobs.store().db().read()).await.expect("search rows");
    let counted: (i64, i64) = query(
        "SELECT COUNT(CASE WHEN state <> 'dead' THEN 1 END), COUNT(CASE WHEN state = 'dead' THEN 1 END) FROM jobs",
    )
    .fetch_one(jobs.store().db().read())
    .await
    .expect("jobs");
    assert_eq!(rows, counted, "{step}: search rows (others', dead jobs') follow the jobs");
}

/// Search rows still queued for the index (PostgreSQL; SQLite has no queue):
/// the jobs queued, an id range counting its ids.
async fn queued_search_rows(jobs: &Jobs, which: Which) -> i64 {
    if which == Which::Sqlite {
        return 0;
    }
    // Jobs queued one by one, and the ids of the ranges inserts queue.
    query(
        "SELECT CAST((SELECT COUNT(*) FROM job_search_pending)
                     + (SELECT COALESCE(SUM(hi - lo + 1), 0) FROM job_search_pending_ranges) AS BIGINT)",
    )
    .scalar(jobs.store().db().read())
    .await
    .expect("queued")
}

async fn search_finds_what_a_scan_finds(which: Which) {
    let db = TestDb::new(which).await;
    let jobs = db.jobs().await;
    // More jobs in one state than a search first tests one by one, so both of
    // its steps run (see Store::list).
    jobs.store().seed(3000, now(&manual_clock()), |_| {}).await.expect("seed");
    assert_eq!(queued_search_rows(&jobs, which).await, 0, "seeding writes its search rows");
    if which == Which::Postgres {
        // And folds the deltas its inserts appended, as a running system would.
        let deltas: (i64, i64) =
            query("SELECT (SELECT COUNT(*) FROM job_count_deltas), (SELECT COUNT(*) FROM job_throughput_deltas)")
                .fetch_one(jobs.store().db().read())
                .await
                .expect("deltas");
        assert_eq!(deltas, (0, 0), "seeding folds the counters' and throughput's deltas");
    }
    searchable(&jobs).await;
    let terms = [
        "example",
        "EXAMPLE.COM",
        "100%",
        "% s",
        "a_b",
        "\\tmp",
        "\"hi",
        "say \\\"",
        "42",
        "4",
        "diag.noop",
        "refused: by",
        "connection refused",
        "mx.example",
        "nothing like it",
        "ÉCO",
        "ab",
        "\"\"",
        "c:",
        "\"t42\"",
        "t4242",
        "refused",
        "mail.welcome",
        "mx3",
        "\"seq\":7",
    ];
    // The new jobs' search rows may still be queued (PostgreSQL): found anyway.
    searches_match_a_scan(&jobs, &terms, "queued").await;
    jobs.store().index_search(u64::MAX).await.expect("index");
    assert_eq!(queued_search_rows(&jobs, which).await, 0, "every queued row written");
    searches_match_a_scan(&jobs, &terms, "indexed").await;
    // Texts changed after their rows were written, on a succeeded job older than
    // the newest ones a search tests one by one (so the index step answers): the
    // old text no longer finds the job, the new one does, while the change waits
    // to be written and after.
    let old: i64 = query("SELECT MIN(id) FROM jobs WHERE state = 'succeeded'")
        .scalar(jobs.store().db().read())
        .await
        .expect("an old succeeded job");
    let set_error = |text: &'static str| {
        let jobs = jobs.clone();
        async move {
            query("UPDATE jobs SET last_error = $1 WHERE id = $2")
                .bind(text)
                .bind(old)
                .execute(jobs.store().db().write())
                .await
                .expect("change its text");
        }
    };
    let changed = ["zebra crossing", "quota exceeded", "mx9", "zebra"];
    set_error("zebra crossing").await;
    searches_match_a_scan(&jobs, &changed, "first text, queued").await;
    jobs.store().index_search(u64::MAX).await.expect("index");
    set_error("quota exceeded at mx9").await;
    searches_match_a_scan(&jobs, &changed, "second text, queued").await;
    jobs.store().index_search(u64::MAX).await.expect("index");
    searches_match_a_scan(&jobs, &changed, "second text, indexed").await;
    // A job entering `dead` and one leaving it, by their state alone, older than
    // the newest ones a search tests one by one: dead jobs' search rows are
    // indexed apart, and each job is found in its new state, not its old one,
    // while the move waits to be written (PostgreSQL) and after.
    let read = || jobs.store().db().read();
    let dying: i64 = query("SELECT MIN(id) FROM jobs WHERE state = 'succeeded' AND id > $1")
        .bind(old)
        .scalar(read())
        .await
        .expect("another old succeeded job");
    let reviving: i64 =
        query("SELECT MIN(id) FROM jobs WHERE state = 'dead'").scalar(read()).await.expect("a dead job");
    let mut moved = Vec::new();
    for id in [dying, reviving] {
        let args: String = query("SELECT args FROM jobs WHERE id = $1").bind(id).scalar(read()).await.expect("args");
        moved.push(args);
    }
    for (id, state) in [(dying, "dead"), (reviving, "enqueued")] {
        query("UPDATE jobs SET state = $1 WHERE id = $2")
            .bind(state)
            .bind(id)
            .execute(jobs.store().db().write())
            .await
            .expect("move the job");
    }
    let moved: Vec<&str> = moved.iter().map(String::as_str).chain(["refused", "t4242"]).collect();
    searches_match_a_scan(&jobs, &moved, "moved, queued").await;
    jobs.store().index_search(u64::MAX).await.expect("index");
    searches_match_a_scan(&jobs, &moved, "moved, indexed").await;
    search_rows_follow_jobs(&jobs, which, "moved").await;
    // Deleted jobs (a dead one, a succeeded one) leave their index.
    query("DELETE FROM jobs WHERE id IN ($1, $2)")
        .bind(dying)
        .bind(old)
        .execute(jobs.store().db().write())
        .await
        .expect("delete");
    jobs.store().index_search(u64::MAX).await.expect("index");
    search_rows_follow_jobs(&jobs, which, "deleted").await;
    searches_match_a_scan(&jobs, &moved, "deleted").await;
    // Paging through every match, across both steps.
    let all = scan(&jobs).await;
    let q = |before_id, limit| ListQuery {
        state: JobState::Succeeded,
        kind: None,
        before_id,
        limit,
        text: Some("\"t2".into()),
    };
    let whole: Vec<i64> =
        all.iter().filter(|(_, s, text)| s == "succeeded" && text.contains("\"t2")).map(|(id, _, _)| *id).collect();
    assert!(whole.len() > 300, "many succeeded jobs name a tenant t2…: {}", whole.len());
    for (way, limits) in ways() {
        jobs.store().set_search_limits(limits);
        let mut paged: Vec<i64> = Vec::new();
        loop {
            let page = jobs.list(&q(paged.last().copied(), 37)).await.expect("page");
            if page.is_empty() {
                break;
            }
            paged.extend(page.iter().map(|j| j.id));
        }
        assert_eq!(paged, whole, "paging, {way}");
    }
}

async fn search_walks_the_index(which: Which) {
    let db = TestDb::new(which).await;
    let jobs = db.jobs().await;
    jobs.store().seed(20_000, now(&manual_clock()), |_| {}).await.expect("seed");
    if which == Which::Postgres {
        query("ANALYZE").execute(jobs.store().db().write()).await.expect("analyze");
    }
    let q = ListQuery {
        state: JobState::Succeeded,
        kind: None,
        before_id: None,
        limit: 50,
        text: Some("\"seq\":12345}".into()),
    };
    // Dead jobs' rows have an index of their own (migration 1090).
    for (state, seq, live, dead) in [(JobState::Succeeded, 12345, true, false), (JobState::Dead, 12302, false, true)] {
        let q = ListQuery { state, text: Some(format!("\"seq\":{seq}}}")), ..q.clone() };
        let plan = jobs.store().explain_list(&q).await.expect("explain");
        let (pattern, others) = match which {
            Which::Postgres => ("Bitmap Index Scan on {} ", "job_search_live"),
            Which::Sqlite => ("SCAN {} VIRTUAL TABLE INDEX", "job_search"),
        };
        let walks = |index: &str| plan.contains(&pattern.replace("{}", index));
        assert_eq!(
            (walks(others), walks("job_search_dead")),
            (live, dead),
            "a search of {state} walks its index:\n{plan}"
        );
        let found = jobs.list(&q).await.expect("search");
        assert_eq!(found.len(), 1, "one job has seq {seq}");
        assert!(found[0].args.contains(&format!("\"seq\":{seq}}}")));
    }
}

/// Search rows queued by inserts (PostgreSQL) are written by any running
/// worker's rescue pass, with no dashboard open and nothing else to run.
async fn workers_write_queued_search_rows(which: Which) {
    let db = TestDb::new(which).await;
    let jobs = db.jobs().await;
    // In a queue the worker does not take: only its housekeeping touches them.
    let mut batch = Vec::new();
    for i in 0..300 {
        let mut j = jobs.new_job(&Noop {}, None).expect("job");
        j.queue = "parked".into();
        j.args = serde_json::json!({ "order": format!("po-{i:04}") });
        batch.push(j);
    }
    jobs.enqueue_many(&batch).await.expect("enqueue");
    let queued = queued_search_rows(&jobs, which).await;
    if which == Which::Postgres {
        assert_eq!(queued, 300, "an insert queues its search rows");
    }
    let cfg = WorkerConfig { rescue_every: Duration::from_millis(50), ..WorkerConfig::default() };
    let worker = Worker::new(&jobs, registry_with_builtins::<()>(), std::sync::Arc::new(()), cfg);
    let stop = tokio_util::sync::CancellationToken::new();
    let handle = tokio::spawn({
        let stop = stop.clone();
        async move { worker.run(stop).await.expect("worker runs") }
    });
    let mut left = queued;
    for _ in 0..500 {
        left = queued_search_rows(&jobs, which).await;
        if left == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop.cancel();
    handle.await.expect("worker stops");
    assert_eq!(left, 0, "the worker's passes wrote every queued search row");
    let in_index = match which {
        Which::Postgres => "SELECT COUNT(*) FROM job_search WHERE body LIKE '%po-0%'",
        Which::Sqlite => "SELECT COUNT(*) FROM job_search WHERE job_search MATCH '\"po-0\"'",
    };
    let indexed: i64 = query(in_index).scalar(jobs.store().db().read()).await.expect("count");
    assert_eq!(indexed, 300, "each job's text is in the index");
    searches_match_a_scan(&jobs, &["po-0042", "PO-01"], "after the worker").await;
}

/// The indexer does not wait behind a lock on `job_search` (a migration
/// building an index holds one for minutes; the indexer runs in the rescue
/// pass, which must go on): it gives up after a second, and a later pass
/// writes the rows.
async fn the_indexer_does_not_wait_behind_a_table_lock(which: Which) {
    let db = TestDb::new(which).await;
    let jobs = db.jobs().await;
    jobs.enqueue_many(&[jobs.new_job(&Noop {}, None).expect("job")]).await.expect("enqueue");
    if which == Which::Sqlite {
        // Written with the insert: nothing to wait for.
        assert_eq!(jobs.store().index_search(u64::MAX).await.expect("index"), Some(0));
        return;
    }
    let mut lock = jobs.store().db().begin().await.expect("begin");
    query("LOCK TABLE job_search IN SHARE MODE").execute(&mut lock).await.expect("lock");
    let t = std::time::Instant::now();
    let blocked = tokio::time::timeout(Duration::from_secs(10), jobs.store().index_search(u64::MAX))
        .await
        .expect("the indexer gave up, not waiting for the lock");
    assert!(blocked.is_err(), "the indexer gave up: {blocked:?}");
    assert!(t.elapsed() < Duration::from_secs(5), "within about a second: {:?}", t.elapsed());
    assert_eq!(queued_search_rows(&jobs, which).await, 1, "the row stays queued");
    lock.rollback().await.expect("unlock");
    // A later pass writes the row. Passes run every few hundred milliseconds, so
    // one that finds the index lock taken (`None`, seen once in CI straight
    // after the unlock) is simply followed by the next: up to 2 s of them here.
    let mut written = None;
    for _ in 0..20 {
        written = jobs.store().index_search(u64::MAX).await.expect("index");
        if written.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(written, Some(1));
    assert_eq!(queued_search_rows(&jobs, which).await, 0);
}

/// A job of no consequence whose arguments hold `value` (searchable text).
fn tagged(jobs: &Jobs, value: serde_json::Value) -> jobengine::NewJob {
    let mut j = jobs.new_job(&Noop {}, None).expect("job");
    j.args = value;
    j
}

/// Inserts queue their jobs for the indexer as one id range per statement
/// (PostgreSQL, migration 1092). Concurrent batches draw ids between each
/// other's, a rolled-back batch leaves ids without jobs, one batch is larger
/// than an indexer statement takes, and a range may cover jobs another range
/// covers too: searches find every new job before the index has them, and the
/// indexer writes each job's row exactly once and empties the queue.
async fn inserted_jobs_are_found_and_indexed_once(which: Which) {
    let db = TestDb::new(which).await;
    let jobs = db.jobs().await;
    let mut tx = jobs.begin().await.expect("begin");
    let gone: Vec<_> = (0..50).map(|i| tagged(&jobs, serde_json::json!({ "gone": i }))).collect();
    jobs.store().enqueue_many_in(&mut tx, &gone, jobs.clock().now()).await.expect("enqueue");
    tx.rollback().await.expect("roll back");
    let mut writers = Vec::new();
    for w in 0..4 {
        let jobs = jobs.clone();
        writers.push(tokio::spawn(async move {
            for b in 0..3 {
                let batch: Vec<_> = (0..700)
                    .map(|i| tagged(&jobs, serde_json::json!({ "w": format!("zq{w}"), "b": b, "i": i })))
                    .collect();
                jobs.enqueue_many(&batch).await.expect("enqueue");
            }
        }));
    }
    let big: Vec<_> = (0..6000).map(|i| tagged(&jobs, serde_json::json!({ "big": i }))).collect();
    jobs.enqueue_many(&big).await.expect("enqueue");
    for w in writers {
        w.await.expect("writer");
    }
    if which == Which::Postgres {
        let ranges: i64 = query("SELECT COUNT(*) FROM job_search_pending_ranges")
            .scalar(jobs.store().db().read())
            .await
            .expect("ranges");
        assert_eq!(ranges, 13, "one range per insert statement");
        // A range over every job (overlapping all the others) and one past them.
        query(
            "INSERT INTO job_search_pending_ranges (lo, hi)
             SELECT MIN(id), MAX(id) FROM jobs UNION ALL SELECT MAX(id) + 10, MAX(id) + 20 FROM jobs",
        )
        .execute(jobs.store().db().write())
        .await
        .expect("more ranges");
    }
    let terms = ["zq1", "zq3", "\"i\":699}", "\"big\":5999", "gone", "noop"];
    searches_match_a_scan(&jobs, &terms, "queued").await;
    jobs.store().index_search(u64::MAX).await.expect("index");
    assert_eq!(queued_search_rows(&jobs, which).await, 0, "every queued range written");
    search_rows_follow_jobs(&jobs, which, "indexed").await;
    searches_match_a_scan(&jobs, &terms, "indexed").await;
}

/// PostgreSQL only (SQLite writes search rows with the insert: no queue): the
/// indexer reads each queued id range by a walk of `jobs_pkey` bounded by the
/// range (its plan; nothing runs), not a walk of all of `jobs`: joined plainly,
/// the planner preferred walking the whole table in id order to sorting the
/// ranges' jobs, seconds a statement beside 10,000,000 jobs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_indexer_walks_each_queued_range() {
    let db = TestDb::new(Which::Postgres).await;
    let jobs = db.jobs().await;
    jobs.store().seed(60_000, now(&manual_clock()), |_| {}).await.expect("seed");
    let batch: Vec<_> = (0..100).map(|i| tagged(&jobs, serde_json::json!({ "new": i }))).collect();
    jobs.enqueue_many(&batch).await.expect("enqueue");
    // Sorting made dear, as sorting the jobs of ranges estimated at millions is
    // beside 10,000,000 jobs: the plan must still walk each range.
    query("DO $$ BEGIN EXECUTE format('ALTER DATABASE %I SET work_mem = %L', current_database(), '64kB'); END $$")
        .execute(jobs.store().db().write())
        .await
        .expect("work_mem");
    let jobs = db.jobs().await;
    let plan = jobs.store().explain_index_search().await.expect("explain");
    let lines: Vec<&str> = plan.lines().collect();
    // An index scan, or a bitmap scan, of the primary key of the partition of
    // `jobs` holding the jobs (`jobs_p<first id>_pkey`): either way its
    // condition is the range's bounds.
    let walk = lines
        .iter()
        .position(|l| l.contains("_pkey on jobs_p1 "))
        .unwrap_or_else(|| panic!("a walk of jobs_p1_pkey:\n{plan}"));
    let bound = lines.get(walk + 1).copied().unwrap_or_default();
    assert!(
        bound.contains("Index Cond") && bound.contains("t.lo") && bound.contains("t.hi"),
        "the walk is bounded by the range:\n{plan}"
    );
    // Empty partitions (those ahead) may be scanned: nothing to read.
    assert!(
        lines.iter().filter(|l| l.contains("Seq Scan on jobs")).all(|l| l.contains("(cost=0.00..0.00 ")),
        "no scan of a partition of jobs holding jobs:\n{plan}"
    );
}

/// The engine's migrations before `version`, from the repository's files (as an
/// older release ran them).
async fn migrations_before(version: i64) -> (tempfile::TempDir, database::Migrations) {
    let dirs = tempfile::tempdir().expect("tempdir");
    let mut sets = Vec::new();
    for backend in ["sqlite", "postgres"] {
        let from = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../migrations").join(backend).join("jobs");
        let to = dirs.path().join(backend);
        std::fs::create_dir(&to).expect("mkdir");
        for entry in std::fs::read_dir(&from).expect("migrations") {
            let path = entry.expect("entry").path();
            let name = path.file_name().and_then(|n| n.to_str()).expect("name").to_owned();
            let v: i64 = name.split('_').next().and_then(|v| v.parse().ok()).expect("versioned file");
            if v < version {
                std::fs::copy(&path, to.join(&name)).expect("copy");
            }
        }
        sets.push(sqlx::migrate::Migrator::new(to).await.expect("migrator"));
    }
    let postgres = sets.pop().expect("postgres");
    let sqlite = sets.pop().expect("sqlite");
    (dirs, database::Migrations { sqlite, postgres })
}

/// An installation upgraded to migration 1090 (dead jobs' search rows indexed
/// apart) with jobs in place whose search rows the older release wrote: every
/// search still finds what a scan finds, dead jobs through their own index.
async fn searches_survive_the_upgrade_that_indexes_dead_jobs_apart(which: Which) {
    let db = TestDb::new(which).await;
    let older = database::Db::connect(&db.url).await.expect("connect");
    let (_files, before) = migrations_before(1090).await;
    older.migrate(before).await.expect("the older release's migrations");
    for i in 0..300_i64 {
        let (state, error) =
            if i % 10 == 2 { ("dead", Some(format!("smtp: mx{} refused", i % 7))) } else { ("succeeded", None) };
        query(
            "INSERT INTO jobs (kind, queue, args, state, attempt, max_attempts, run_at, created_at, updated_at, last_error)
             VALUES ($1, 'default', $2, $3, 1, 3, 0, 0, 0, $4)",
        )
        .bind(if i % 4 == 0 { "mail.welcome" } else { "report.daily" })
        .bind(format!("{{\"tenant\":\"t{}\",\"seq\":{i}}}", i % 50))
        .bind(state)
        .bind(error)
        .execute(older.write())
        .await
        .expect("a job of the older release");
    }
    if which == Which::Postgres {
        // The older release's indexer: every queued row written, unflagged.
        query(
            "INSERT INTO job_search (job_id, body)
             SELECT id, lower(kind || ' ' || args || ' ' || coalesce(last_error, '')) FROM jobs",
        )
        .execute(older.write())
        .await
        .expect("older search rows");
        query("DELETE FROM job_search_pending").execute(older.write()).await.expect("queue emptied");
    }
    drop(older);
    let jobs = db.jobs().await;
    assert_eq!(queued_search_rows(&jobs, which).await, 0, "the upgrade queues nothing");
    searches_match_a_scan(&jobs, &["refused", "mx3", "welcome", "\"t4\"", "seq\":12}"], "upgraded").await;
}
