-- The attack: fill the disk through the audit. Every refused call is
-- audited, and a loop that catches each refusal made 800 000 events
-- (about 500 MB) in 14 s from four sessions, which an admin may not prune
-- for 30 days. Now the failed calls of a session (throttled, refused, in
-- error, but never a duplicate, which answers a probe) past the 30th in
-- a second are folded: one event per operation, outcome and roles, whose
-- `calls` counts them.
-- Every call that returned something stays an event of its own, so what
-- was exposed is audited exactly. Measured by the events actually written.
\set ECHO none
\ir common/setup.sql
\set ECHO all
\ir common/reads_per_minute_off.sql
CREATE ROLE flooder LOGIN IN ROLE pii_vault_reader;
CREATE TABLE flood_victims AS SELECT vault_store('{"name": "flood victim"}') AS tok;
GRANT SELECT ON flood_victims TO flooder;
CREATE TABLE flood_timing (started timestamptz, ended timestamptz);
GRANT INSERT ON flood_timing TO flooder;

\c - flooder
-- 20 000 reads of one record in one statement, each refusal caught: 100
-- are served (the statement's budget), 19 900 refused.
DO $$
DECLARE
    t uuid := (SELECT tok FROM flood_victims);
    started timestamptz := clock_timestamp();
BEGIN
    FOR i IN 1..20000 LOOP
        BEGIN
            PERFORM vault_get(t);
        EXCEPTION WHEN program_limit_exceeded THEN
            NULL;
        END;
    END LOOP;
    INSERT INTO flood_timing VALUES (started, clock_timestamp());
END
$$;
-- An error flood: an unknown lookup kind, 5 000 times.
DO $$
BEGIN
    FOR i IN 1..5000 LOOP
        BEGIN
            PERFORM vault_lookup('shoe_size', '42');
        EXCEPTION WHEN invalid_parameter_value THEN
            NULL;
        END;
    END LOOP;
END
$$;
-- A new session: the session that flooded has exited, and with it the
-- last folded counts went to the audit.
\c - postgres
SELECT pii_vault.audit_wait() AS audit_written;
SELECT operation, outcome, sum(calls) AS calls
FROM pii_vault.audit_log WHERE session_role = 'flooder' GROUP BY 1, 2 ORDER BY 1, 2;
-- At most 30 events a second, and one more for each kind of failure,
-- however many calls.
SELECT count(*) FILTER (WHERE outcome = 'throttled')
           <= 31 * (SELECT 1 + extract(epoch FROM date_trunc('second', ended))
                         - extract(epoch FROM date_trunc('second', started)) FROM flood_timing) AS throttled_events_bounded,
       count(*) FILTER (WHERE outcome = 'ok') AS served_events,
       count(*) FILTER (WHERE outcome = 'error') < 100 AS error_events_bounded
FROM pii_vault.audit_log WHERE session_role = 'flooder';
-- A duplicate answers a probe: never folded, one event per call.
SET application_name = 'flood_duplicates';
SELECT vault_store('{"email": "flood@example.com"}') IS NOT NULL AS stored;
DO $$
BEGIN
    FOR i IN 1..5 LOOP
        BEGIN
            PERFORM vault_store('{"email": "FLOOD@example.com"}');
        EXCEPTION WHEN unique_violation THEN
            NULL;
        END;
    END LOOP;
END
$$;
SELECT pii_vault.audit_wait() AS audit_written;
SELECT count(*) AS duplicate_events, sum(calls) AS duplicate_calls
FROM pii_vault.audit_log
WHERE application_name = 'flood_duplicates' AND operation = 'store' AND outcome = 'error';
RESET application_name;
ALTER SYSTEM RESET pii_vault.max_reads_per_minute;
SELECT pg_reload_conf();
DROP TABLE flood_victims, flood_timing;
DROP ROLE flooder;
