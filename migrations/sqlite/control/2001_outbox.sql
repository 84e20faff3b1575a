-- The email outbox. A message is rendered once, in the transaction that decides to
-- send it, and stored whole (headers, fixed Message-ID, body); a `mail.send` job
-- delivers exactly these bytes, so a retry after a crash sends the same message.
-- The body holds a set-password link until it is sent, then it is cleared.
CREATE TABLE IF NOT EXISTS outbox (
    id             TEXT    PRIMARY KEY,              -- UUID; also the Message-ID's left part
    kind           TEXT    NOT NULL,                 -- welcome | account_exists
    tenant_id      TEXT,                             -- the tenant it concerns, if any
    sender         TEXT    NOT NULL,                 -- envelope MAIL FROM
    recipient      TEXT    NOT NULL,                 -- envelope RCPT TO
    subject        TEXT    NOT NULL,
    message        TEXT,                             -- the RFC 5322 message; NULL once sent
    created_at     INTEGER NOT NULL,
    sent_at        INTEGER
);
CREATE INDEX IF NOT EXISTS outbox_by_tenant ON outbox (tenant_id);
