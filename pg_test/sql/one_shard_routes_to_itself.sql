-- A vault not split (pii_vault.shards = 1, the default, as every 0.4.0
-- vault updated in place is) behaves as before: every token, share and
-- session id is shard 0's, every identifier is owned by shard 0, and no
-- store is refused for its email. vault_route refuses a shard past the
-- count and an operation it does not know (22023), and charges the caller
-- as the routed call's shard would: a proxy's statement that routes more
-- reads than the per-statement budget is refused there (54000), a store
-- is a write and one read per lookup value it sets; every route is
-- audited (route, naming the operation and the token).
\set ECHO none
\ir common/setup.sql
\set ECHO all
-- A role of its own: the per-minute budgets are per role, across suites.
CREATE ROLE shard_router LOGIN IN ROLE pii_vault_writer;
SHOW pii_vault.shards;
SHOW pii_vault.shard;
SHOW pii_vault.shard_key;

\c - shard_router
SELECT vault_store('{"email": "one@shard.example", "phone": "+1 415 555 2699"}') AS one \gset
SELECT vault_share(:'one', ARRAY['email'], '1 hour') AS share \gset
SELECT vault_session_store('{"cart": 1}', '1 hour', :'one') AS session \gset
SELECT vault_shard_of(:'one') AS record_shard, vault_shard_of(:'share') AS share_shard,
       vault_shard_of(:'session') AS session_shard;
SELECT count(*) FILTER (WHERE vault_shard_of(gen_random_uuid()) <> 0) AS tokens_elsewhere
FROM generate_series(1, 1000);
SELECT vault_shard_for('email', ' ONE@Shard.Example') AS email_shard, vault_shard_for('phone', '+14155552699') AS phone_shard,
       vault_shard_for('token', :'one') AS token_shard;
-- A value that does not normalize is refused as a store would refuse it.
SELECT try_sql($$SELECT vault_shard_for('email', 'not an email')$$) AS bad_email;
SELECT try_sql($$SELECT vault_shard_for('ssn', '123')$$) AS bad_kind;

-- vault_route: every shard, one shard, or a refusal.
SELECT array_agg(s) AS all_shards FROM vault_route(NULL, 'audit_read') s;
SELECT array_agg(s) AS shard_zero FROM vault_route(0, 'get', :'one') s;
SELECT try_sql($$SELECT vault_route(1, 'get')$$) AS past_the_count;
SELECT try_sql($$SELECT vault_route(-1, 'get')$$) AS negative;
SELECT try_sql($$SELECT vault_route(0, 'everything')$$) AS unknown_operation;
SELECT try_sql($$SELECT vault_route(0, 'route')$$) AS route_itself;
SELECT try_sql($$SELECT vault_route(0, NULL)$$) AS null_operation;

-- Routed reads are charged to the statement, as vault calls are: the
-- 101st in one statement is refused.
SELECT try_sql($$SELECT count(*) FROM generate_series(1, 101) n, LATERAL vault_route(n * 0, 'get') s$$) AS routed_101_gets;
SELECT count(*) AS routed_100_gets FROM generate_series(1, 100) n, LATERAL vault_route(n * 0, 'get') s;
SELECT count(*) AS routed_200_audit_reads FROM generate_series(1, 200) n, LATERAL vault_route(n * 0, 'audit_read') s;
-- A store setting an email, a phone and a login is three reads more: 34
-- of them are 102 reads (and 34 writes); 20 are 60.
SELECT try_sql($$SELECT count(*) FROM generate_series(1, 34) n,
    LATERAL vault_route(n * 0, 'store', NULL, '{"email": "x@y.example", "phone": "+14155552671", "login": "x", "n": 1}') s$$) AS routed_34_stores;
SELECT count(*) AS routed_20_stores FROM generate_series(1, 20) n,
    LATERAL vault_route(n * 0, 'store', NULL, '{"email": "x@y.example", "phone": "+14155552671", "login": "x", "n": 1}') s;

\c - postgres
SELECT pii_vault.audit_wait();
-- Every route is audited, naming the role, the routed operation and the
-- token it was given; refusals and bad arguments too.
SELECT outcome, session_role, fields, count(*) AS events, count(token) AS naming_a_token
FROM pii_vault.audit_log WHERE operation = 'route' GROUP BY 1, 2, 3 ORDER BY 1, 3;
SELECT count(*) AS the_get_routed FROM pii_vault.audit_log WHERE operation = 'route' AND token = :'one' AND fields = '{get}';

-- Leave the cluster as common/setup.sql left it.
DROP ROLE shard_router;
