-- Every error the API raises on purpose: its SQLSTATE and a message that
-- names the problem, never a value. Hostile inputs: a clear error or a
-- correct result, never a crash.
\set ECHO none
\ir common/setup.sql
\set ECHO all
SELECT vault_store('{"email": "taken@example.com", "login": "taken", "phone": "+44 20 7946 0958"}') AS taken \gset
SELECT vault_store('{"name": "other"}') AS other \gset

-- 22023: not a JSON object, every JSON type at the top level
SELECT try_sql($$SELECT vault_store('[1, 2]')$$);
SELECT try_sql($$SELECT vault_store('"a string"')$$);
SELECT try_sql($$SELECT vault_store('42')$$);
SELECT try_sql($$SELECT vault_store('true')$$);
SELECT try_sql($$SELECT vault_store('null')$$);
SELECT try_sql($$SELECT vault_update('$$ || :'other' || $$', '[1]')$$);
SELECT try_sql($$SELECT vault_update('$$ || :'other' || $$', 'null')$$);

-- 22023: unknown lookup kind
SELECT try_sql($$SELECT vault_lookup('ssn', '123-45-6789')$$);
SELECT try_sql($$SELECT vault_lookup('EMAIL', 'a@b.example')$$);
SELECT try_sql($$SELECT vault_lookup('', '')$$);

-- 22023: values that do not normalize are refused, at store, update and lookup
SELECT try_sql($$SELECT vault_store('{"email": "not-an-email"}')$$);
SELECT try_sql($$SELECT vault_store('{"email": "a@localhost"}')$$);
SELECT try_sql($$SELECT vault_store('{"email": "a@b@c.example"}')$$);
SELECT try_sql($$SELECT vault_store('{"email": 42}')$$);
SELECT try_sql($$SELECT vault_store('{"phone": "call me maybe"}')$$);
SELECT try_sql($$SELECT vault_store('{"phone": {"n": "+1 415 555 2671"}}')$$);
SELECT try_sql($$SELECT vault_store('{"login": "   "}')$$);
SELECT try_sql($$SELECT vault_update('$$ || :'other' || $$', '{"email": "broken"}')$$);
SELECT try_sql($$SELECT vault_lookup('email', 'broken')$$);
SELECT try_sql($$SELECT vault_lookup('token', 'not-a-uuid')$$);
SELECT try_sql($$SELECT vault_get('$$ || :'other' || $$', ARRAY['name', NULL])$$);

-- control characters, bidi marks and zero-width characters in lookup values
SELECT try_sql($$SELECT vault_store('{"email": "a\u0000b@c.example"}')$$);
SELECT try_sql($$SELECT vault_store('{"email": "ab@c\u0007.example"}')$$);
SELECT try_sql($$SELECT vault_store('{"email": "ab@c.example\u200f"}')$$);
SELECT try_sql($$SELECT vault_store('{"login": "ad\u200dmin"}')$$);
SELECT try_sql($$SELECT vault_store('{"phone": "+1 415\u202e555 2671"}')$$);
-- a homoglyph domain (Cyrillic а) is a different address, not a duplicate
SELECT vault_store('{"email": "taken@ex\u0430mple.com"}') IS NOT NULL AS homoglyph_is_distinct;

-- 23505: duplicates, by kind, at store and at update; the message names the kind only
SELECT count(*) AS records_before FROM pii_vault.records \gset
SELECT try_sql($$SELECT vault_store('{"email": "TAKEN@example.com"}')$$);
SELECT try_sql($$SELECT vault_store('{"login": " Taken"}')$$);
SELECT try_sql($$SELECT vault_store('{"phone": "+442079460958"}')$$);
SELECT try_sql($$SELECT vault_update('$$ || :'other' || $$', '{"email": "taken@EXAMPLE.com"}')$$);
-- a failed store leaves nothing behind
SELECT count(*) - :records_before AS records_added FROM pii_vault.records;
-- updating a record with its own values is not a duplicate
SELECT vault_update(:'taken', '{"email": "Taken@Example.com"}') AS self_update_ok;

-- 54000: pii_vault.max_record_bytes (default 1 MB)
SHOW pii_vault.max_record_bytes;
SELECT try_sql($$SELECT vault_store(jsonb_build_object('blob', repeat('x', 2 * 1024 * 1024)))$$);
SELECT try_sql($$SELECT vault_store(jsonb_build_object('blob', repeat('y', 20 * 1024 * 1024)))$$);
SELECT try_sql($$SELECT vault_update('$$ || :'other' || $$', jsonb_build_object('blob', repeat('x', 2 * 1024 * 1024)))$$);
SET pii_vault.max_record_bytes = '4MB';
SELECT vault_store(jsonb_build_object('blob', repeat('x', 2 * 1024 * 1024))) IS NOT NULL AS stored_under_raised_limit;
RESET pii_vault.max_record_bytes;

-- failing calls whose values must never reach a message or the server log
-- (the harness greps the log for "leak-canary")
SELECT try_sql($$SELECT vault_store('{"name": "leak-canary-name-1", "email": "leak-canary-2@"}')$$);
SELECT try_sql($$SELECT vault_store('{"phone": "leak-canary-3", "ssn": "leak-canary-4"}')$$);
SELECT try_sql($$SELECT vault_store('{"login": "Taken", "secret": "leak-canary-5"}')$$);
SELECT try_sql($$SELECT vault_update('$$ || :'other' || $$', '{"email": "leak-canary-6", "note": "leak-canary-7"}')$$);
SELECT try_sql($$SELECT vault_lookup('email', 'leak-canary-8')$$);
SELECT try_sql($$SELECT vault_lookup('phone', 'leak-canary-9')$$);
SELECT try_sql($$SELECT vault_lookup('token', 'leak-canary-10')$$);
SELECT try_sql($$SELECT vault_lookup('leak-canary-11', 'x')$$);
SELECT try_sql($$SELECT vault_store('["leak-canary-12"]')$$);
SELECT try_sql($$SELECT vault_store(jsonb_build_object('leak-canary-13', repeat('leak-canary-14 ', 200000)))$$);

-- deep nesting: stored and returned as is; merge patch refuses it by its limit
SELECT try_sql($$SELECT vault_store(('{"deeper": ' || repeat('[', 10000) || repeat(']', 10000) || '}')::jsonb)$$) AS nesting_10000;
SELECT vault_store(('{"deep": ' || repeat('[', 5000) || repeat(']', 5000) || '}')::jsonb) AS deep \gset
SELECT length(vault_get(:'deep')::text) AS deep_length;
SELECT length(vault_get(:'deep', ARRAY['deep'])::text) AS deep_field_length;
SELECT try_sql($$SELECT vault_update('$$ || :'deep' || $$', '{"x": 1}')$$);
SELECT try_sql($$SELECT vault_update('$$ || :'other' || $$', ('{"p": ' || repeat('{"a": ', 200) || '1' || repeat('}', 200) || '}')::jsonb)$$);

-- a field list the audit cannot hold whole is refused (448 bytes of names,
-- one more per name), so no read hides which fields it took
SELECT try_sql($$SELECT vault_get('$$ || :'taken' || $$', (SELECT array_agg('f' || i) FROM generate_series(1, 100000) AS i))$$);
SELECT try_sql($$SELECT vault_update('$$ || :'other' || $$', (SELECT jsonb_object_agg(repeat('k', 60) || i, i) FROM generate_series(1, 10) AS i))$$);
-- up to the cap, every name asked for is in the audit
SELECT vault_get(:'taken', array_agg(lpad(i::text, 13, 'f')) || ARRAY['login']) FROM generate_series(1, 31) AS i;
SELECT pii_vault.audit_wait() AS audit_written;
SELECT cardinality(fields) AS names_audited, fields[32] AS last_name FROM pii_vault.audit_log
WHERE token = :'taken' AND operation = 'get' ORDER BY id DESC LIMIT 1;
