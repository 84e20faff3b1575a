-- One row per account that was sent its welcome reminder (backoffice::jobs::welcome_reminder):
-- written in the transaction that puts the reminder into the outbox, so a retried or
-- re-run reminder job finds it and sends nothing more (one reminder per account, ever).
CREATE TABLE IF NOT EXISTS welcome_reminders (
    user_id        TEXT    PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    outbox_id      TEXT    NOT NULL,                 -- the reminder email
    created_at     INTEGER NOT NULL
);

