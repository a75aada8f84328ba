-- (common/purge_worker_away.sql) The purge worker comes by once a day: a
-- SIGHUP setting, so ALTER SYSTEM (which no function or procedure may
-- run), a reload, and a moment for it to arrive.
ALTER SYSTEM SET pii_vault.purge_interval = '1d';
SELECT pg_reload_conf();
SELECT pg_sleep(0.2);
