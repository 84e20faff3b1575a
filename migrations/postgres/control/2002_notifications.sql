-- Notifications for signed-in users (the admin app's toasts). Written by the
-- worker in the same transaction as the event they report; `dedupe_key` makes
-- publishing idempotent (a re-run does not notify twice). Servers fan them out to
-- the user's open streams.
CREATE TABLE IF NOT EXISTS notifications (
    id             BIGSERIAL PRIMARY KEY,
    user_id        TEXT    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    kind           TEXT    NOT NULL CHECK (kind IN ('success', 'error', 'info')),
    title          TEXT    NOT NULL,
    body           TEXT    NOT NULL,
    link           TEXT    NOT NULL DEFAULT '',
    dedupe_key     TEXT    UNIQUE,
    created_at     BIGINT NOT NULL,
    acked_at       BIGINT
);
CREATE INDEX IF NOT EXISTS notifications_by_user ON notifications (user_id, id);

-- Wake the servers: payload `<id>:<user_id>`, nothing else.
CREATE OR REPLACE FUNCTION notifications_notify() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('notifications', NEW.id::text || ':' || NEW.user_id);
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

DROP TRIGGER IF EXISTS notifications_notify ON notifications;
CREATE TRIGGER notifications_notify AFTER INSERT ON notifications
    FOR EACH ROW EXECUTE FUNCTION notifications_notify();

-- A revoked session ends its streams on every server: payload the token's hash.
CREATE OR REPLACE FUNCTION sessions_revoked_notify() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('sessions_revoked', NEW.token_hash);
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

DROP TRIGGER IF EXISTS sessions_revoked_notify ON sessions;
CREATE TRIGGER sessions_revoked_notify AFTER UPDATE OF revoked_at ON sessions
    FOR EACH ROW WHEN (OLD.revoked_at IS NULL AND NEW.revoked_at IS NOT NULL)
    EXECUTE FUNCTION sessions_revoked_notify();
