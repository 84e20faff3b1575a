-- What `identity.prune` removes once it is a month old (backoffice::maintenance):
-- emails sent and notifications seen. These indexes find them without reading
-- the whole table on every pass.
CREATE INDEX IF NOT EXISTS outbox_sent ON outbox (sent_at) WHERE sent_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS notifications_acked ON notifications (acked_at) WHERE acked_at IS NOT NULL;
