-- Work per call is bounded by pii_vault.max_record_bytes: a small record
-- whose JSON text is huge (numbers written 1e131071 are a few bytes of
-- jsonb each and 131 072 digits of text) is refused by the functions that
-- print a record (field selection, merge patch), at once, instead of
-- taking seconds and gigabytes. The size error names the limit, never
-- the record's size.
\set ECHO none
\ir common/setup.sql
\set ECHO all
-- (A safety net only: the refusals below come from the bound, not a timer.)
SET statement_timeout = '30s';
SELECT vault_store(jsonb_build_object('name', 'bomb', 'n',
    (SELECT jsonb_agg('1e131071'::numeric) FROM generate_series(1, 2400)))) AS bomb \gset
SELECT pg_column_size(vault_get(:'bomb')) < 100000 AS stored_small;
SELECT try_sql($$SELECT vault_update('$$ || :'bomb' || $$', '{"x": 1}')$$) AS update_refused;
SELECT try_sql($$SELECT vault_get('$$ || :'bomb' || $$', ARRAY['name'])$$) AS fields_refused;
-- A patch carrying such numbers is refused before it is printed.
SELECT vault_store('{"name": "plain"}') AS plain \gset
SELECT try_sql($$SELECT vault_update('$$ || :'plain' || $$', jsonb_build_object('n',
    (SELECT jsonb_agg('1e131071'::numeric) FROM generate_series(1, 2400))))$$) AS patch_refused;
-- Ordinary numbers, strings with escapes, and records near the limit still merge.
SELECT vault_update(:'plain', '{"n": [1.5, -2e3, 12345678901234567890], "s": "tab\tquote\"backslash\\"}') AS merged;
SELECT vault_get(:'plain', ARRAY['n', 's']) AS fields;
SELECT vault_update(:'plain', jsonb_build_object('blob', repeat('x', 900000))) AS near_limit_merges;
RESET statement_timeout;
