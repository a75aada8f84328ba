-- Restarted with: not preloaded. The server runs; every vault function fails
-- with 55000 and a message that says which problem it is.
\set ECHO none
\ir common/setup.sql
\set ECHO all
SELECT 1 AS server_is_up;
SELECT try_sql($$SELECT vault_get('00000000-0000-4000-8000-000000000000')$$);
SELECT try_sql($$SELECT vault_store('{"name": "x"}')$$);
SELECT try_sql($$SELECT vault_lookup('email', 'a@b.example')$$);
SELECT try_sql($$SELECT vault_delete('00000000-0000-4000-8000-000000000000')$$);
