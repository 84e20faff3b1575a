-- Sign-in throttling (backoffice::throttle): one row per key, a client
-- ("c:<address>") or an account tried from a client ("a:<address>|<email>"),
-- instead of one row per failure. `next_at` is when that key may try again.
-- Rows idle for an hour mean nothing and are pruned (backoffice::maintenance),
-- as are old `login_failures` rows, which this release no longer writes (the
-- table stays until no running code reads it: see migrations/README.md).
CREATE TABLE IF NOT EXISTS login_throttle (
    key            TEXT    PRIMARY KEY,
    failures       INTEGER NOT NULL,
    last_at        INTEGER NOT NULL,
    next_at        INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS login_throttle_by_last_at ON login_throttle (last_at);

-- Pruning finds expired sessions and set-password tokens without a full scan.
CREATE INDEX IF NOT EXISTS sessions_by_expires_at ON sessions (expires_at);
CREATE INDEX IF NOT EXISTS password_tokens_by_expires_at ON password_tokens (expires_at);
CREATE INDEX IF NOT EXISTS login_failures_by_at ON login_failures (at);
