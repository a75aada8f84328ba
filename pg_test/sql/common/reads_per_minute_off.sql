-- (common/reads_per_minute_off.sql) The per-role read budget off for
-- every session: a SIGHUP setting, so ALTER SYSTEM (which no function or
-- procedure may run), a reload, and a moment for it to arrive.
ALTER SYSTEM SET pii_vault.max_reads_per_minute = 0;
SELECT pg_reload_conf();
SELECT pg_sleep(0.2);
