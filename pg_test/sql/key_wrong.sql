-- The server was restarted with a different key: it runs, and every vault
-- function refuses with 55000 and says why, instead of writing data that
-- could never be read back.
\set ECHO none
\ir common/setup.sql
\set ECHO all
SELECT 1 AS server_is_up;
SELECT try_sql($$SELECT vault_get('00000000-0000-4000-8000-000000000000')$$);
SELECT try_sql($$SELECT vault_store('{"name": "x"}')$$);
SELECT try_sql($$SELECT vault_lookup('email', 'a@b.example')$$);
SELECT count(*) > 0 AS records_still_there FROM pii_vault.records;
-- The refused calls are queued for the audit, but the writer does not MAC
-- them under a key whose check value does not match (which would make
-- vault_audit_verify() false forever once the right key is back); health
-- says so.
DO $$
BEGIN
    FOR i IN 1..50 LOOP
        EXIT WHEN (SELECT detail LIKE '%refuses to write%' FROM vault_health() WHERE check_name = 'audit_writer');
        PERFORM pg_sleep(0.1);
    END LOOP;
END $$;
SELECT ok, detail FROM vault_health() WHERE check_name = 'audit_writer';
