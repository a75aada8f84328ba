-- vault_patch applies an RFC 6902 JSON Patch as one change: every
-- operation or none (a failed test, a missing path: 22023, the record as
-- it was). Its lookup values are probed and charged as vault_update's
-- (a patch cannot take another record's email, nor probe for one beyond
-- the read budget), and its audit names the fields it touched, never a
-- value; errors name the operation, never a path or value.
\set ECHO none
\ir common/setup.sql
\set ECHO all
\ir common/reads_per_minute_off.sql
-- Only the statement's budgets count here: the per-role write budget off.
ALTER SYSTEM SET pii_vault.max_writes_per_minute = 0;
SELECT pg_reload_conf();
SELECT pg_sleep(0.2);
CREATE ROLE patcher LOGIN IN ROLE pii_vault_writer;
CREATE TABLE people AS
    SELECT vault_store('{"email": "pat@patch.example", "name": "Pat", "tags": ["a", "b"], "address": {"city": "Oslo"}}') AS pat,
           vault_store('{"email": "sam@patch.example", "name": "Sam"}') AS sam;
GRANT SELECT ON people TO patcher;
SET ROLE patcher;
SELECT vault_patch(pat, '[{"op": "test", "path": "/name", "value": "Pat"},
                          {"op": "replace", "path": "/address/city", "value": "Bergen"},
                          {"op": "add", "path": "/tags/-", "value": "c"},
                          {"op": "remove", "path": "/tags/0"},
                          {"op": "copy", "from": "/name", "path": "/nickname"},
                          {"op": "move", "from": "/nickname", "path": "/alias"}]') FROM people;
RESET ROLE;
SELECT vault_get(pat) FROM people;
SET ROLE patcher;
-- A failed test: nothing changes, 22023 naming the operation.
SELECT try_sql(format($$SELECT vault_patch(%L, '[{"op": "replace", "path": "/name", "value": "Canary"}, {"op": "test", "path": "/name", "value": "Pat"}, {"op": "test", "path": "/name", "value": "nope"}]')$$, pat)) FROM people;
SELECT try_sql(format($$SELECT vault_patch(%L, '[{"op": "remove", "path": "/canary_field"}]')$$, pat)) FROM people;
SELECT try_sql(format($$SELECT vault_patch(%L, '[{"op": "shuffle", "path": "/name"}]')$$, pat)) FROM people;
SELECT try_sql(format($$SELECT vault_patch(%L, '[{"op": "replace", "path": "", "value": [1]}]')$$, pat)) FROM people;
SELECT try_sql(format($$SELECT vault_patch(%L, '{"op": "add"}')$$, pat)) FROM people;
-- Another record's email: 23505, nothing changes.
SELECT try_sql(format($$SELECT vault_patch(%L, '[{"op": "replace", "path": "/email", "value": "SAM@patch.example"}]')$$, pat)) FROM people;
-- An email that does not normalize: 22023.
SELECT try_sql(format($$SELECT vault_patch(%L, '[{"op": "add", "path": "/phone", "value": "canary"}]')$$, pat)) FROM people;
-- Copies that double the record: 15 of a 100 kB array onto its own end
-- would ask for 3 GB; the copies may add no more bytes than the record
-- and the patch have, so the second is refused and the server stays up.
SELECT vault_store(jsonb_build_object('name', 'big', 'a', jsonb_build_array(repeat('B', 100000)))) AS big \gset
SELECT try_sql(format('SELECT vault_patch(%L, %L)', :'big',
    (SELECT jsonb_agg(jsonb_build_object('op', 'copy', 'from', '/a', 'path', '/a/-')) FROM generate_series(1, 15))));
SELECT jsonb_array_length(vault_get(:'big') -> 'a') AS still_one;
RESET ROLE;
SELECT vault_get(pat) ->> 'name' AS name, vault_get(pat) ->> 'email' AS email, vault_get(pat) ? 'phone' AS has_phone FROM people;
SET ROLE patcher;
-- A new email is indexed: the lookup finds it, the old one is free.
SELECT vault_patch(pat, '[{"op": "replace", "path": "/email", "value": "Pat.New@patch.example"}]') FROM people;
SELECT vault_lookup('email', 'pat.new@patch.example') = pat AS new_found, vault_lookup('email', 'pat@patch.example') IS NULL AS old_free FROM people;
-- An unknown token: false.
SELECT vault_patch('00000000-0000-4000-8000-000000000000', '[]') AS unknown;
-- Probing emails by patch costs reads: 60 patches that each set an email
-- and 50 gets are 110 reads in one statement, refused; 60 patches that
-- set another field and the same 50 gets pass.
SELECT try_sql(format($$SELECT (SELECT count(vault_patch(%L, jsonb_build_array(jsonb_build_object('op', 'replace', 'path', '/email', 'value', 'probe' || n || '@patch.example')))) FROM generate_series(1, 60) AS n)
                             + (SELECT count(vault_get(%L)) FROM generate_series(1, 50))$$, pat, sam)) FROM people;
SELECT pat, sam FROM people \gset
SELECT (SELECT count(vault_patch(:'pat', jsonb_build_array(jsonb_build_object('op', 'replace', 'path', '/name', 'value', 'Pat ' || n)))) FROM generate_series(1, 60) AS n)
     + (SELECT count(vault_get(:'sam')) FROM generate_series(1, 50)) AS other_fields_pass;
RESET ROLE;
SELECT pii_vault.audit_wait();
SELECT operation, fields, outcome FROM pii_vault.audit_log
WHERE operation = 'patch' AND acting_role = 'patcher' AND calls = 1 ORDER BY id LIMIT 12;
SELECT count(*) AS events_with_a_value FROM pii_vault.audit_log AS e
WHERE operation = 'patch' AND (e::text ILIKE '%canary%' OR e::text ILIKE '%bergen%');
ALTER SYSTEM RESET pii_vault.max_writes_per_minute;
SELECT pg_reload_conf();
DROP TABLE people;
DROP OWNED BY patcher;
DROP ROLE patcher;
