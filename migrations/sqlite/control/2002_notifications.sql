-- Notifications for signed-in users (the admin app's toasts). Written by the
-- worker in the same transaction as the event they report; `dedupe_key` makes
-- publishing idempotent (a re-run does not notify twice). Servers fan them out to
-- the user's open streams.
CREATE TABLE IF NOT EXISTS notifications (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id        TEXT    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    kind           TEXT    NOT NULL CHECK (kind IN ('success', 'error', 'info')),
    title          TEXT    NOT NULL,
    body           TEXT    NOT NULL,
    link           TEXT    NOT NULL DEFAULT '',
    dedupe_key     TEXT    UNIQUE,
    created_at     INTEGER NOT NULL,
    acked_at       INTEGER
);
CREATE INDEX IF NOT EXISTS notifications_by_user ON notifications (user_id, id);

-- Servers poll for sessions revoked since their last look, to end their streams.
CREATE INDEX IF NOT EXISTS sessions_by_revoked_at ON sessions (revoked_at);
