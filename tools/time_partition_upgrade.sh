#!/bin/bash
# Times migration 1100 (jobs partitioned by id) on an installation at 1092 with
# JOBS (default 10,000,000) jobs, each with a search row, as the upgrade runs it:
# one transaction. Needs psql and a PostgreSQL server it may create a database
# on: PGURL (default postgres://postgres@127.0.0.1:5432/postgres).
#   tools/time_partition_upgrade.sh
set -euo pipefail
cd "$(dirname "$0")/.."
url=${PGURL:-postgres://postgres@127.0.0.1:5432/postgres}
jobs=${JOBS:-10000000}
db=partition_upgrade_$$
base=${url%/*}
psql -q "$url" -c "CREATE DATABASE $db"
trap 'psql -q "$url" -c "DROP DATABASE IF EXISTS $db"' EXIT
P=(psql -q -v ON_ERROR_STOP=1 "$base/$db")
for f in migrations/postgres/jobs/*.sql; do
    v=$(basename "$f" | cut -d_ -f1)
    if [ "$v" -lt 1100 ]; then "${P[@]}" -1 -f "$f" 2>&1 | grep -v NOTICE || true; fi
done
"${P[@]}" -c "INSERT INTO jobs (kind, queue, args, state, attempt, max_attempts, run_at, created_at, updated_at,
                                 finished_at, unique_key)
  SELECT 'mail.welcome', 'default', '{\"tenant\":\"t' || (g % 5000) || '\",\"seq\":' || g || '}',
         CASE WHEN g % 1000 = 0 THEN 'enqueued' ELSE 'succeeded' END, 1, 3, g, g, g, g,
         CASE WHEN g % 1000 = 0 THEN 'k' || g END
  FROM generate_series(1, $jobs) g"
"${P[@]}" -c "INSERT INTO job_search (job_id, body) SELECT id, lower(kind || ' ' || args) FROM jobs"
"${P[@]}" -c "VACUUM ANALYZE"
"${P[@]}" -At -c "SELECT 'jobs ' || pg_size_pretty(pg_total_relation_size('jobs'))
                      || ', job_search ' || pg_size_pretty(pg_total_relation_size('job_search'))
                      || '; fsync=' || current_setting('fsync')"
start=$(date +%s.%N)
"${P[@]}" -1 -f migrations/postgres/jobs/1100_partitions.sql > /dev/null
end=$(date +%s.%N)
echo "migration 1100 on $jobs jobs: $(echo "$end - $start" | bc) s"
