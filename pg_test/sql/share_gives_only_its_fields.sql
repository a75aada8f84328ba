-- A share is handed to a partner for some fields of one record (say, the
-- name for a delivery). Whoever holds the share id must get those
-- top-level fields and nothing else: not the email or phone beside them,
-- not fields the record gains later, not a nested value reached through a
-- dotted or path-like name. A share cannot be made for longer than
-- pii_vault.max_share_ttl, nor for no field at all, and reading through
-- shares is throttled like any read (pii_vault.max_reads_per_statement).
-- Checked by the JSON each read returns.
\set ECHO none
\ir common/setup.sql
\set ECHO all
CREATE ROLE share_partner LOGIN IN ROLE pii_vault_share_reader;

\c - app_writer
SELECT vault_store('{"name": "Ada Lovelace", "email": "ada@share-fields.example", "phone": "+44 20 7946 0961", "login": "ada-share-fields", "ssn": "078-05-1120", "city": "London", "address": {"city": "Marylebone", "email": "nested@example.org", "name": "nested name"}}') AS ada \gset

-- 1. A share of the name gives the name, and only it.
SELECT vault_share(:'ada', ARRAY['name'], '1 hour') AS name_share \gset
SELECT vault_share(:'ada', ARRAY['name', 'nickname'], '1 hour') AS name_nick_share \gset
SELECT vault_get_shared(:'name_share') AS name_share_reads;
SELECT vault_get_shared(:'name_share') = '{"name": "Ada Lovelace"}' AS exactly_the_name,
       vault_get_shared(:'name_share') ?| ARRAY['email', 'phone', 'login', 'ssn', 'city', 'address'] AS reveals_other_fields;
-- A field the record lacks is skipped.
SELECT vault_get_shared(:'name_nick_share') AS name_nick_share_reads;

-- 2. The record changes later: it gains fields, its name changes. The
-- share reads the current name and still only the name; a field it
-- named that the record now has appears; none other does.
SELECT vault_update(:'ada', '{"name": "Augusta Ada King", "dob": "1815-12-10", "nickname": "Ada", "secret": "analytical engine", "phone": null}') AS updated;
SELECT vault_get_shared(:'name_share') AS name_share_after_update;
SELECT vault_get_shared(:'name_share') ?| ARRAY['email', 'phone', 'login', 'ssn', 'dob', 'secret', 'nickname', 'address'] AS reveals_other_fields_after_update;
SELECT vault_get_shared(:'name_nick_share') AS name_nick_share_after_update;
-- The same through the partner's own role.
\c - share_partner
SELECT vault_get_shared(:'name_share') AS partner_reads_name_share;
SELECT vault_get_shared(:'name_nick_share') AS partner_reads_name_nick_share;

-- 3. Nested names: a share names top-level fields only. 'city' gives the
-- top-level city, never address.city; a dotted or path-like name gives
-- nothing; the whole address is given only when 'address' is named.
\c - app_writer
SELECT vault_share(:'ada', ARRAY['city'], '1 hour') AS city_share \gset
SELECT vault_share(:'ada', ARRAY['address.city', 'address.email', '{address,email}', 'address->email', 'address/email', '$.address.email', '*', ''], '1 hour') AS path_share \gset
SELECT vault_share(:'ada', ARRAY['address'], '1 hour') AS address_share \gset
SELECT vault_get_shared(:'city_share') AS city_share_reads;
SELECT vault_get_shared(:'path_share') AS path_share_reads;
SELECT vault_get_shared(:'address_share') AS address_share_reads;
-- A record whose only name is nested: a share of 'name' finds nothing.
SELECT vault_store('{"profile": {"name": "Nested Only", "email": "nested-only@example.org"}}') AS nested_only \gset
SELECT vault_share(:'nested_only', ARRAY['name', 'email'], '1 hour') AS nested_only_share \gset
SELECT vault_get_shared(:'nested_only_share') AS nested_only_share_reads;

-- 4. The time-to-live: positive and at most pii_vault.max_share_ttl
-- (1 day by default), else 22023; the writer cannot raise the maximum.
SHOW pii_vault.max_share_ttl;
SELECT try_sql(format('SELECT vault_share(%L, ARRAY[''name''], ''1 day'')', :'ada')) AS one_day_accepted;
SELECT try_sql(format('SELECT vault_share(%L, ARRAY[''name''], ''1 day 1 second'')', :'ada'));
SELECT try_sql(format('SELECT vault_share(%L, ARRAY[''name''], ''2 days'')', :'ada'));
SELECT try_sql(format('SELECT vault_share(%L, ARRAY[''name''], ''1 mon'')', :'ada'));
SELECT try_sql(format('SELECT vault_share(%L, ARRAY[''name''], ''100 years'')', :'ada'));
SELECT try_sql(format('SELECT vault_share(%L, ARRAY[''name''], ''0'')', :'ada'));
SELECT try_sql(format('SELECT vault_share(%L, ARRAY[''name''], ''-1 hour'')', :'ada'));
-- 1 day minus 24 hours is no time at all.
SELECT try_sql(format('SELECT vault_share(%L, ARRAY[''name''], ''1 day -24 hours'')', :'ada'));
SELECT try_sql('SET pii_vault.max_share_ttl = ''30d''');
SELECT try_sql($$SELECT set_config('pii_vault.max_share_ttl', '30d', false)$$);

-- 5. A share names at least one field, and no NULL one.
SELECT try_sql(format('SELECT vault_share(%L, ARRAY[]::text[], ''1 hour'')', :'ada'));
SELECT try_sql(format('SELECT vault_share(%L, ''{}'', ''1 hour'')', :'ada'));
SELECT try_sql(format('SELECT vault_share(%L, ARRAY[NULL]::text[], ''1 hour'')', :'ada'));
SELECT try_sql(format('SELECT vault_share(%L, ARRAY[''name'', NULL], ''1 hour'')', :'ada'));
-- None of the refused calls left a share behind (counted below).
-- A share of a record that does not exist: NULL.
SELECT vault_share('00000000-0000-4000-8000-000000000000', ARRAY['name'], '1 hour') IS NULL AS share_of_unknown_is_null;

-- 6. Reads through shares are reads: throttled per statement. Ten shares
-- handed out; the budget lowered to 5 reads per statement.
\c - postgres
SELECT count(*) AS ada_share_rows FROM pii_vault.shares WHERE token = :'ada';
-- A share lives as long as asked, never longer: with the maximum raised
-- to 7 days, a share of 1 day expires within a day.
SET pii_vault.max_share_ttl = '7d';
SELECT vault_share(:'ada', ARRAY['name'], '1 day') IS NOT NULL AS one_day_share_made;
RESET pii_vault.max_share_ttl;
SELECT count(*) FILTER (WHERE expires_at > clock_timestamp() + interval '1 day') AS shares_living_past_their_ttl,
       count(*) FILTER (WHERE expires_at > clock_timestamp() + interval '23 hours') AS one_day_shares
FROM pii_vault.shares WHERE token = :'ada';
SELECT date_trunc('minute', max(expires_at - created_at)) AS longest_share_lifetime
FROM pii_vault.shares WHERE token = :'ada';
CREATE TABLE handed_out AS
SELECT n, vault_share(:'ada', ARRAY['name'], '1 hour') AS share FROM generate_series(1, 10) AS n;
GRANT SELECT ON handed_out TO app_reader, share_partner;
ALTER SYSTEM SET pii_vault.max_reads_per_statement = 5;
SELECT pg_reload_conf();
SELECT pg_sleep(0.2);
\c - share_partner
SHOW pii_vault.max_reads_per_statement;
SELECT count(vault_get_shared(share)) AS five_reads FROM handed_out WHERE n <= 5;
SELECT try_sql('SELECT count(vault_get_shared(share)) FROM handed_out');
\c - app_reader
SELECT try_sql('SELECT count(vault_get_shared(share)) FROM handed_out');
-- Shared reads and plain reads draw on one budget: 3 + 3 is over 5.
SELECT try_sql(format('SELECT count(vault_get_shared(share)), count(vault_get(%L)) FROM handed_out WHERE n <= 3', :'ada'));
-- The next statement starts afresh.
SELECT vault_get_shared(share) AS next_statement_reads FROM handed_out WHERE n = 1;

\c - postgres
SELECT pii_vault.audit_wait() AS audit_written;
SELECT session_role, operation, outcome, count(*) FROM pii_vault.audit_log
WHERE session_role IN ('share_partner', 'app_reader') AND application_name = current_setting('application_name')
GROUP BY 1, 2, 3 ORDER BY 1, 2, 3;
-- The audit names the fields each share read gave.
SELECT DISTINCT fields FROM pii_vault.audit_log
WHERE operation = 'get_shared' AND outcome = 'ok' AND token IN (:'ada', :'nested_only') ORDER BY fields;
SELECT operation, outcome, count(*) FROM pii_vault.audit_log
WHERE session_role = 'app_writer' AND operation = 'share' AND application_name = current_setting('application_name')
GROUP BY 1, 2 ORDER BY 1, 2;
ALTER SYSTEM RESET pii_vault.max_reads_per_statement;
SELECT pg_reload_conf();

-- Leave the cluster as common/setup.sql left it (the vault's records stay).
DROP TABLE handed_out;
DROP ROLE share_partner;
