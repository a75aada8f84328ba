-- Authenticated encryption bound to the token: a ciphertext moved to
-- another row, or altered by one bit, fails loudly (XX001).
\set ECHO none
\ir common/setup.sql
\set ECHO all
SELECT vault_store('{"name": "first"}') AS t1 \gset
SELECT vault_store('{"name": "second"}') AS t2 \gset

-- Move the envelope of t1 onto t2's row.
UPDATE pii_vault.records SET envelope = (SELECT envelope FROM pii_vault.records WHERE token = :'t1')
WHERE token = :'t2';
SELECT try_sql($$SELECT vault_get('$$ || :'t2' || $$')$$);
SELECT try_sql($$SELECT vault_get('$$ || :'t2' || $$', ARRAY['name'])$$);
SELECT try_sql($$SELECT vault_update('$$ || :'t2' || $$', '{"x": 1}')$$);
-- t1 itself is untouched.
SELECT vault_get(:'t1');

-- Flip one bit of the ciphertext of t1.
UPDATE pii_vault.records
SET envelope = set_byte(envelope, length(envelope) - 20, get_byte(envelope, length(envelope) - 20) # 1)
WHERE token = :'t1';
SELECT try_sql($$SELECT vault_get('$$ || :'t1' || $$')$$);

-- Truncate an envelope.
UPDATE pii_vault.records SET envelope = substring(envelope FROM 1 FOR 10) WHERE token = :'t1';
SELECT try_sql($$SELECT vault_get('$$ || :'t1' || $$')$$);

-- An envelope that claims a key version that is not loaded.
SELECT vault_store('{"name": "third"}') AS t3 \gset
UPDATE pii_vault.records SET envelope = overlay(envelope PLACING '\x00000009'::bytea FROM 3 FOR 4) WHERE token = :'t3';
SELECT try_sql($$SELECT vault_get('$$ || :'t3' || $$')$$);

-- Clean up so later suites see only intact records.
SELECT vault_erase(:'t1'), vault_erase(:'t2'), vault_erase(:'t3');
