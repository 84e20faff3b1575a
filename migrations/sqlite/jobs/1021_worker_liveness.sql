-- How a worker can be known dead before its lease expires (see jobengine's
-- liveness module): 'proc:<boot id>:<pid namespace>:<start time>' for a process
-- whose id and start time a rescuer on the same host can check. NULL (older
-- workers, systems without /proc) leaves its jobs to the lease.
ALTER TABLE job_workers ADD COLUMN liveness TEXT;
