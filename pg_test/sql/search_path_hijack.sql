-- A caller plants look-alike functions and operators in a schema of its
-- own, first in its search_path, and calls every vault function: the
-- vault's pinned search_path means the planted objects never run.
\set ECHO none
\ir common/setup.sql
\set ECHO all
DO $$ BEGIN EXECUTE format('GRANT CREATE ON DATABASE %I TO app_writer', current_database()); END $$;

\c - app_writer
CREATE SCHEMA evil;
CREATE TABLE evil.fired (what text);
CREATE FUNCTION evil.fire(what text) RETURNS void LANGUAGE sql AS $$ INSERT INTO evil.fired VALUES (what) $$;

CREATE FUNCTION evil.lower(t text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN PERFORM evil.fire('lower'); RETURN pg_catalog.lower(t); END $$;
CREATE FUNCTION evil.jsonb_typeof(j jsonb) RETURNS text LANGUAGE plpgsql AS $$
BEGIN PERFORM evil.fire('jsonb_typeof'); RETURN pg_catalog.jsonb_typeof(j); END $$;
CREATE FUNCTION evil.now() RETURNS timestamptz LANGUAGE plpgsql AS $$
BEGIN PERFORM evil.fire('now'); RETURN pg_catalog.now(); END $$;
CREATE FUNCTION evil.current_setting(t text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN PERFORM evil.fire('current_setting'); RETURN pg_catalog.current_setting(t); END $$;
CREATE FUNCTION evil.text_eq(a text, b text) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN PERFORM evil.fire('= text'); RETURN pg_catalog.texteq(a, b); END $$;
CREATE FUNCTION evil.jsonb_eq(a jsonb, b jsonb) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN PERFORM evil.fire('= jsonb'); RETURN pg_catalog.jsonb_eq(a, b); END $$;
CREATE FUNCTION evil.uuid_eq(a uuid, b uuid) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN PERFORM evil.fire('= uuid'); RETURN pg_catalog.uuid_eq(a, b); END $$;
CREATE FUNCTION evil.bytea_eq(a bytea, b bytea) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN PERFORM evil.fire('= bytea'); RETURN pg_catalog.byteaeq(a, b); END $$;
CREATE OPERATOR evil.= (LEFTARG = text, RIGHTARG = text, FUNCTION = evil.text_eq);
CREATE OPERATOR evil.= (LEFTARG = jsonb, RIGHTARG = jsonb, FUNCTION = evil.jsonb_eq);
CREATE OPERATOR evil.= (LEFTARG = uuid, RIGHTARG = uuid, FUNCTION = evil.uuid_eq);
CREATE OPERATOR evil.= (LEFTARG = bytea, RIGHTARG = bytea, FUNCTION = evil.bytea_eq);

SET search_path = evil, pg_catalog, public;

-- Control: the planted objects do run for ordinary SQL in this session.
SELECT lower('X'), jsonb_typeof('{}'), 'a'::text = 'a'::text AS eq, now() IS NOT NULL AS now_ok;
SELECT what, count(*) FROM evil.fired GROUP BY what ORDER BY what;
TRUNCATE evil.fired;

-- Every vault function, under the hostile search_path. Results go into
-- psql variables and are compared only after the search_path is reset, so
-- that this test's own comparisons do not fire the planted `=`.
SELECT vault_store('{"email": "Hijack@Example.com", "phone": "+1 212 555 0100", "login": "Hijacker"}') AS tok \gset
SELECT vault_get(:'tok') ->> 'login' AS got_login;
SELECT vault_get(:'tok', ARRAY['email']) AS got_fields;
SELECT vault_lookup('email', 'hijack@example.com') AS by_email,
       vault_lookup('phone', '+12125550100') AS by_phone,
       vault_lookup('login', 'hijacker') AS by_login,
       vault_lookup('token', :'tok') AS by_token \gset
SELECT vault_update(:'tok', '{"login": "hijacker2"}') AS updated;
SELECT try_sql($$SELECT vault_store('{"email": "hijack@example.com"}')$$);
SELECT vault_delete(:'tok') AS deleted;

-- None of the planted objects ran inside the vault.
SELECT count(*) AS planted_objects_fired FROM evil.fired;
SELECT what FROM evil.fired;

RESET search_path;
SELECT :'by_email' = :'tok' AS found_by_email, :'by_phone' = :'tok' AS found_by_phone,
       :'by_login' = :'tok' AS found_by_login, :'by_token' = :'tok' AS found_by_token;
\c - postgres
SET client_min_messages = warning;
DROP SCHEMA evil CASCADE;

-- Leave the cluster as common/setup.sql left it (the vault's records stay).
DO $$ BEGIN EXECUTE format('REVOKE CREATE ON DATABASE %I FROM app_writer', current_database()); END $$;
