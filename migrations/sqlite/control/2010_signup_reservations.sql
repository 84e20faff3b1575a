-- One email, one account; names that only look alike are one name (issue 11).
--
-- A tenant that is not `failed` reserves its admin email and the confusable
-- skeleton of its name (Unicode TR39, lower-cased; computed in Rust,
-- `validate::TenantName::skeleton`) through unique indexes, so two concurrent
-- sign-ups cannot both win, on either backend. A failed tenant releases both:
-- the partial indexes skip it, and its `name_key` (a full UNIQUE column) is set to
-- ' failed <id>', a key no trimmed name can produce.
ALTER TABLE tenants ADD COLUMN name_skeleton TEXT;

-- Tenants written before this migration that race-duplicated an email: the one
-- that is active (or else the oldest) keeps it; the rest were going to fail at
-- seeding anyway, and now fail at once.
UPDATE tenants
SET status = 'failed',
    last_error = 'another tenant was created first with this admin email',
    name_key = ' failed ' || id
WHERE status <> 'failed'
  AND EXISTS (
      SELECT 1 FROM tenants o
      WHERE o.admin_email = tenants.admin_email AND o.id <> tenants.id AND o.status <> 'failed'
        AND ((o.status = 'active' AND tenants.status <> 'active')
             OR ((o.status = 'active') = (tenants.status = 'active')
                 AND (o.created_at < tenants.created_at
                      OR (o.created_at = tenants.created_at AND o.id < tenants.id)))));

UPDATE tenants SET name_key = ' failed ' || id WHERE status = 'failed';

CREATE UNIQUE INDEX IF NOT EXISTS tenants_admin_email_reserved ON tenants (admin_email) WHERE status <> 'failed';
CREATE UNIQUE INDEX IF NOT EXISTS tenants_name_skeleton_reserved ON tenants (name_skeleton) WHERE status <> 'failed';

-- Emails sent to one address in the last hour are counted here (the cap holds
-- across processes).
CREATE INDEX IF NOT EXISTS outbox_by_recipient ON outbox (recipient, created_at);
