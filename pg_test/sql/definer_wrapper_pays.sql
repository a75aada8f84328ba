-- The attack: the application's role owns a SECURITY DEFINER function
-- that calls the vault, and grants it to PUBLIC (or an injection creates
-- one). Any role could then read through the application's grants while
-- the budget and the audit named only that role. Now every call is
-- charged to the login role and to the role whose rights called the
-- vault (the wrapper's owner), refused when either is over budget, and
-- the audit names both.
\set ECHO none
\ir common/setup.sql
\set ECHO all
-- 10 reads a minute: 6 s a read, a burst of 1, so 2 pass at once.
ALTER SYSTEM SET pii_vault.max_reads_per_minute = 10;
SELECT pg_reload_conf();
SELECT pg_sleep(0.2);
CREATE ROLE wrapper_owner LOGIN IN ROLE pii_vault_reader;
CREATE ROLE outsider_one LOGIN;
CREATE ROLE outsider_two LOGIN;
CREATE ROLE outsider_three LOGIN;
CREATE SCHEMA wrap AUTHORIZATION wrapper_owner;
CREATE TABLE wrapped_victims AS SELECT n, vault_store(jsonb_build_object('name', 'wrapped-' || n)) AS tok
FROM generate_series(1, 10) AS n;
GRANT SELECT ON wrapped_victims TO wrapper_owner, outsider_one, outsider_two, outsider_three;
SET ROLE wrapper_owner;
CREATE FUNCTION wrap.read(t uuid) RETURNS jsonb LANGUAGE plpgsql SECURITY DEFINER
AS $$ BEGIN RETURN vault_get(t); END $$;
GRANT USAGE ON SCHEMA wrap TO PUBLIC;
GRANT EXECUTE ON FUNCTION wrap.read(uuid) TO PUBLIC;
RESET ROLE;

-- An outsider has no grant on the vault, yet reads through the wrapper:
-- two reads pass at once, charged to it and to the wrapper's owner.
SET SESSION AUTHORIZATION outsider_one;
SELECT try_sql('SELECT vault_get(tok) FROM wrapped_victims LIMIT 1') AS direct_call;
SELECT n, try_sql(format('SELECT wrap.read(%L)', tok)) AS through_wrapper FROM wrapped_victims WHERE n <= 2 ORDER BY n;
RESET SESSION AUTHORIZATION;
-- A second outsider, whose own budget is untouched, is refused at once:
-- the wrapper's owner has spent its burst.
SET SESSION AUTHORIZATION outsider_two;
SELECT n, try_sql(format('SELECT wrap.read(%L)', tok)) AS through_wrapper FROM wrapped_victims WHERE n IN (5, 6) ORDER BY n;
RESET SESSION AUTHORIZATION;
-- And so is the wrapper's owner itself, calling the vault directly.
SET SESSION AUTHORIZATION wrapper_owner;
SELECT try_sql(format('SELECT vault_get(%L)', tok)) AS owner_direct FROM wrapped_victims WHERE n = 7;
RESET SESSION AUTHORIZATION;

-- A wrapper owned by a superuser does not exempt its callers: the login
-- role still pays.
CREATE FUNCTION wrap.read_as_superuser(t uuid) RETURNS jsonb LANGUAGE plpgsql SECURITY DEFINER
AS $$ BEGIN RETURN vault_get(t); END $$;
GRANT EXECUTE ON FUNCTION wrap.read_as_superuser(uuid) TO PUBLIC;
SET SESSION AUTHORIZATION outsider_three;
SELECT n, try_sql(format('SELECT wrap.read_as_superuser(%L)', tok)) AS superuser_wrapper
FROM wrapped_victims WHERE n <= 3 ORDER BY n;
RESET SESSION AUTHORIZATION;

-- A cursor opened by a wrapper and fetched after it returned runs its
-- vault calls with nobody's rights but the fetching session's: the
-- outsider, who may not execute the vault, is refused.
CREATE FUNCTION wrap.open_stolen(c refcursor) RETURNS refcursor LANGUAGE plpgsql SECURITY DEFINER
AS $$ BEGIN OPEN c FOR SELECT vault_get(tok) FROM public.wrapped_victims; RETURN c; END $$;
ALTER FUNCTION wrap.open_stolen(refcursor) OWNER TO wrapper_owner;
GRANT EXECUTE ON FUNCTION wrap.open_stolen(refcursor) TO PUBLIC;
SET SESSION AUTHORIZATION outsider_one;
BEGIN;
SELECT wrap.open_stolen('stolen');
FETCH 2 FROM stolen;
ROLLBACK;
RESET SESSION AUTHORIZATION;

-- The audit names both roles of every call.
SELECT pii_vault.audit_wait();
SELECT session_role, acting_role, calling_role, outcome, count(*) AS events
FROM pii_vault.audit_log WHERE operation = 'get' AND session_role IN ('outsider_one', 'outsider_two', 'outsider_three', 'wrapper_owner')
GROUP BY 1, 2, 3, 4 ORDER BY 1, 4;
-- vault_audit shows the calling role too.
SELECT session_role, "current_role", calling_role, outcome
FROM vault_audit((SELECT tok FROM wrapped_victims WHERE n = 1)) WHERE operation = 'get';

ALTER SYSTEM RESET pii_vault.max_reads_per_minute;
SELECT pg_reload_conf();
DROP SCHEMA wrap CASCADE;
DROP TABLE wrapped_victims;
DROP ROLE wrapper_owner;
DROP ROLE outsider_one;
DROP ROLE outsider_two;
DROP ROLE outsider_three;
