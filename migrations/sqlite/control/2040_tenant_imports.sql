-- Bulk tenant creation (ImportTenants): the tenants of one import are one job
-- batch. Their provisioning does not toast per tenant; the batch's completion job
-- sends one notice counting them.
ALTER TABLE tenants ADD COLUMN import_batch_id INTEGER;
CREATE INDEX IF NOT EXISTS tenants_by_import ON tenants (import_batch_id) WHERE import_batch_id IS NOT NULL;
