//! PostgreSQL's `jobs` partitioned by id ranges (migration 1100; see the
//! engine's `storage/partitions.rs`): new ids always find a partition, each job
//! lives in the partition of its id, retention's emptied partitions go, and an
//! installation upgraded from 1092 keeps every job, key and reference. SQLite
//! has no partitions.

use std::time::Duration;

use database::query;
use jobengine::builtin::Noop;
use jobengine::testing::{TestDb, Watchdog, Which, manual_clock};
use jobengine::{JobState, Jobs, NewJob};

/// Partitions this narrow from the next id on: the ones ahead (empty) are
/// dropped and made again at `width` ids each.
async fn narrow_partitions(jobs: &Jobs, width: i64) {
    query("UPDATE job_partitioning SET width = $1").bind(width).execute(jobs.db().write()).await.expect("width");
    query(
        "DO $$ DECLARE p regclass; BEGIN
             FOR p IN SELECT inhrelid::regclass FROM pg_inherits WHERE inhparent = 'jobs'::regclass
                      AND jobs_partition_start(inhrelid) >= jobs_next_id() LOOP
                 EXECUTE format('ALTER TABLE jobs DETACH PARTITION %s', p);
                 EXECUTE format('DROP TABLE %s', p);
             END LOOP;
         END $$",
    )
    .execute(jobs.db().write())
    .await
    .expect("drop the partitions ahead");
    jobs.store().reserve_ids(0).await.expect("partitions");
}

/// `(name, first id, end)` of each partition, in id order.
async fn partitions(jobs: &Jobs) -> Vec<(String, Option<i64>, i64)> {
    query(
        "SELECT inhrelid::regclass::text, jobs_partition_start(inhrelid), jobs_partition_end(inhrelid)
         FROM pg_inherits WHERE inhparent = 'jobs'::regclass ORDER BY 3",
    )
    .fetch_all(jobs.db().read())
    .await
    .expect("partitions")
}

async fn next_id(jobs: &Jobs) -> i64 {
    query("SELECT jobs_next_id()").scalar(jobs.db().read()).await.expect("next id")
}

/// Each job is in the partition named for the first id of its range.
async fn assert_each_job_in_its_partition(jobs: &Jobs) {
    let parts = partitions(jobs).await;
    let rows: Vec<(i64, String)> =
        query("SELECT id, tableoid::regclass::text FROM jobs").fetch_all(jobs.db().read()).await.expect("rows");
    for (id, part) in rows {
        let (name, ..) = parts
            .iter()
            .find(|(_, start, end)| start.is_none_or(|s| s <= id) && id < *end)
            .unwrap_or_else(|| panic!("no partition covers job {id}: {parts:?}"));
        assert_eq!(&part, name, "job {id}");
    }
}

/// A whole partition of ids is ready beyond the next id, however fast ids go:
/// inserts past the last partition's first id add the next one without being
/// asked, in the background.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_inserts_keep_a_partition_ahead() {
    let _dog = Watchdog::new("postgres_inserts_keep_a_partition_ahead");
    let db = TestDb::new(Which::Postgres).await;
    let jobs = db.jobs().await;
    narrow_partitions(&jobs, 100).await;
    let batch: Vec<NewJob> = (0..30).map(|_| jobs.new_job(&Noop {}, None).expect("job")).collect();
    for round in 0..20 {
        jobs.enqueue_many(&batch).await.unwrap_or_else(|e| panic!("round {round}: {e}"));
        // One in a caller's transaction too: no retry is possible there, so
        // the partition must already be there.
        let mut tx = jobs.begin().await.expect("begin");
        jobs.enqueue_in(&mut tx, &Noop {}).await.unwrap_or_else(|e| panic!("round {round}, in a transaction: {e}"));
        tx.commit().await.expect("commit");
        // The top-up runs beside the inserts; give it its moment.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(jobs.counts().await.expect("counts").enqueued, 20 * 31);
    let next = next_id(&jobs).await;
    let parts = partitions(&jobs).await;
    let end = parts.last().expect("a partition").2;
    assert!(end >= next + 100, "a whole partition ahead of id {next}: {parts:?}");
    assert!(parts.len() >= 8, "620 ids in partitions of 100: {parts:?}");
    assert_each_job_in_its_partition(&jobs).await;
}

/// An insert that finds no partition (every top-up failed, or someone dropped
/// them) adds one and is tried again when it has no transaction to lose; in a
/// caller's transaction it fails, and the partitions are there for the next.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_an_insert_without_a_partition_adds_it() {
    let _dog = Watchdog::new("postgres_an_insert_without_a_partition_adds_it");
    let db = TestDb::new(Which::Postgres).await;
    let jobs = db.jobs().await;
    narrow_partitions(&jobs, 50).await;
    // Ids run past every partition (as after every top-up failed for a whole
    // partition's worth of inserts).
    let past_the_end = || async {
        query(
            "SELECT setval(pg_get_serial_sequence('jobs', 'id'), MAX(jobs_partition_end(inhrelid)) + 5, false)
             FROM pg_inherits WHERE inhparent = 'jobs'::regclass",
        )
        .execute(jobs.db().write())
        .await
        .expect("setval");
    };
    past_the_end().await;
    let e = jobs.enqueue_many(&[jobs.new_job(&Noop {}, None).expect("job")]).await.expect("tried again");
    assert_eq!(jobs.get(e[0].id).await.expect("get").job.state, JobState::Enqueued);

    past_the_end().await;
    let mut tx = jobs.begin().await.expect("begin");
    let err = jobs.enqueue_in(&mut tx, &Noop {}).await.expect_err("no partition in the caller's transaction");
    assert!(err.to_string().contains("no partition of relation"), "{err}");
    drop(tx);
    let mut tx = jobs.begin().await.expect("begin");
    jobs.enqueue_in(&mut tx, &Noop {}).await.expect("the next one finds it");
    tx.commit().await.expect("commit");
    assert_eq!(jobs.counts().await.expect("counts").enqueued, 2);
    assert_each_job_in_its_partition(&jobs).await;
}

/// The retention sweep drops a partition once retention has emptied it and no
/// new id can reach it, and nothing else: not one still holding a job, not the
/// one new ids go to, not those ahead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_emptied_partitions_are_dropped() {
    let _dog = Watchdog::new("postgres_emptied_partitions_are_dropped");
    let db = TestDb::new(Which::Postgres).await;
    let clock = manual_clock();
    let jobs = db.jobs_with_clock(clock.clone()).await;
    narrow_partitions(&jobs, 100).await;
    jobs.store().reserve_ids(250).await.expect("partitions");
    let batch: Vec<NewJob> = (0..250).map(|_| jobs.new_job(&Noop {}, None).expect("job")).collect();
    let ids: Vec<i64> = jobs.enqueue_many(&batch).await.expect("enqueue").iter().map(|e| e.id).collect();
    // All but the last finished long ago; the last is still waiting.
    let keep = *ids.last().expect("ids");
    query("UPDATE jobs SET state = 'succeeded', updated_at = 1, finished_at = 1 WHERE id <> $1")
        .bind(keep)
        .execute(jobs.db().write())
        .await
        .expect("finish");
    let before = partitions(&jobs).await;
    let removed = jobs.store().remove_ended(JobState::Succeeded, 2, 1000).await.expect("retention");
    assert_eq!(removed, 249);
    let dropped = jobs.store().tidy_partitions().await.expect("tidy");
    let after = partitions(&jobs).await;
    let next = next_id(&jobs).await;
    // Gone: every partition that ends at or below the next id and held only
    // removed jobs (the empty one below the first id among them).
    let expected: Vec<_> = before
        .iter()
        .filter(|(_, start, end)| *end > next || start.is_some_and(|s| s <= keep && keep < *end))
        .cloned()
        .collect();
    assert_eq!(after, expected, "before {before:?}, next id {next}, job {keep} kept");
    assert_eq!(dropped as usize, before.len() - after.len());
    assert!(dropped >= 2, "{before:?} -> {after:?}");
    assert_eq!(jobs.get(keep).await.expect("kept").job.state, JobState::Enqueued);
    // And new jobs still go in.
    jobs.enqueue(&Noop {}).await.expect("enqueue after the drop");
    assert_each_job_in_its_partition(&jobs).await;
}

/// An installation at migration 1092 (one plain `jobs` table) upgraded: its
/// jobs stay where they are as the first partition, the ids go on after
/// theirs in a new one, a live job keeps its unique key, and continuations,
/// batches' members and search rows still reference their jobs (deleting a job
/// takes them along).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_the_upgrade_keeps_every_job_key_and_reference() {
    let _dog = Watchdog::new("postgres_the_upgrade_keeps_every_job_key_and_reference");
    let db = TestDb::new(Which::Postgres).await;
    let older = database::Db::connect(&db.url).await.expect("connect");
    let mut m = jobengine::storage::migrations();
    let before: Vec<_> = m.postgres.migrations.iter().filter(|x| x.version < 1100).cloned().collect();
    m.postgres.migrations = before.into();
    older.migrate(m).await.expect("migrate to 1092");
    let insert = |state: &'static str, key: Option<&'static str>| {
        let older = older.clone();
        async move {
            query(
                "INSERT INTO jobs (kind, queue, args, state, max_attempts, run_at, created_at, updated_at, unique_key)
                 VALUES ('diag.noop', 'default', '{}', $1, 3, 0, 0, 0, $2) RETURNING id",
            )
            .bind(state)
            .bind(key)
            .scalar::<i64>(older.write())
            .await
            .expect("insert")
        }
    };
    let live = insert("enqueued", Some("held")).await;
    let done = insert("succeeded", Some("free")).await;
    let parent = insert("enqueued", None).await;
    let child = insert("awaiting", None).await;
    query("INSERT INTO job_waits (child_id, parent_id, on_end) VALUES ($1, $2, 'success')")
        .bind(child)
        .bind(parent)
        .execute(older.write())
        .await
        .expect("wait");
    query("INSERT INTO job_search (job_id, body) VALUES ($1, 'diag.noop {}')")
        .bind(done)
        .execute(older.write())
        .await
        .expect("search row");
    let last_old: i64 = query("SELECT MAX(id) FROM jobs").scalar(older.write()).await.expect("max");

    let jobs = db.jobs().await; // 1100 runs
    let parts = partitions(&jobs).await;
    assert_eq!(parts[0], ("jobs_p0".to_owned(), None, last_old + 1), "{parts:?}");
    let n: i64 = query("SELECT COUNT(*) FROM jobs_p0").scalar(jobs.db().read()).await.expect("count");
    assert_eq!(n, 4, "the old rows, where they were");
    let counts = jobs.counts().await.expect("counts");
    assert_eq!((counts.enqueued, counts.succeeded, counts.awaiting), (2, 1, 1));

    // Keys: the live holder keeps its key; the finished job's is free.
    let held = NewJob { unique_key: Some("held".into()), ..jobs.new_job(&Noop {}, None).expect("job") };
    let free = NewJob { unique_key: Some("free".into()), ..jobs.new_job(&Noop {}, None).expect("job") };
    let e = jobs.enqueue_many(&[held, free]).await.expect("enqueue");
    assert_eq!((e[0].id, e[0].existing), (live, true));
    assert!(!e[1].existing && e[1].id > last_old, "a new id after the old ones: {e:?}");
    assert_each_job_in_its_partition(&jobs).await;

    // References: deleting the parent takes the wait along, and the search
    // row goes with its job.
    query("DELETE FROM jobs WHERE id IN ($1, $2)")
        .bind(parent)
        .bind(done)
        .execute(jobs.db().write())
        .await
        .expect("delete");
    let waits: i64 = query("SELECT COUNT(*) FROM job_waits").scalar(jobs.db().read()).await.expect("waits");
    let search: i64 = query("SELECT COUNT(*) FROM job_search WHERE job_id = $1")
        .bind(done)
        .scalar(jobs.db().read())
        .await
        .expect("search");
    assert_eq!((waits, search), (0, 0));
    // And a reference to a job that does not exist is refused, as before.
    let orphan = query("INSERT INTO job_waits (child_id, parent_id, on_end) VALUES ($1, $2, 'any')")
        .bind(child)
        .bind(last_old + 1_000_000)
        .execute(jobs.db().write())
        .await;
    assert!(orphan.is_err(), "a wait on a missing job was accepted");
}
