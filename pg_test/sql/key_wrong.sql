-- The server was restarted with a different key: it runs, and every vault
-- function refuses with 55000 and says why, instead of writing data that
-- could never be read back.
SELECT 1 AS server_is_up;
SELECT try_sql($$SELECT vault_get('00000000-0000-4000-8000-000000000000')$$);
SELECT try_sql($$SELECT vault_store('{"name": "x"}')$$);
SELECT try_sql($$SELECT vault_lookup('email', 'a@b.example')$$);
SELECT count(*) > 0 AS records_still_there FROM pii_vault.records;
