-- pii_vault behind PL/Proxy: the cluster definition, in the proxy
-- database (README, "Shards"). Run as a superuser with one connection
-- string per shard, in shard order (partition k is pii_vault.shard = k):
--
--   psql -d proxy -v shard0='host=10.0.0.1 dbname=vault' \
--                 -v shard1='host=10.0.0.2 dbname=vault' -f cluster.sql
--
-- More shards: add p2, p3, … below. modular_mapping makes partition k
-- the one RUN ON k reaches for any number of shards (without it PL/Proxy
-- wants a power of two). No user= in the strings: PL/Proxy connects as
-- the client's current role, so every shard sees, charges and audits the
-- client's own role. How it authenticates is the shards' pg_hba.conf
-- (README: from the proxy's address only).

CREATE EXTENSION IF NOT EXISTS plproxy;
CREATE SERVER vault_shards FOREIGN DATA WRAPPER plproxy
    OPTIONS (modular_mapping '1', connection_lifetime '1800', p0 :'shard0', p1 :'shard1');
CREATE USER MAPPING FOR PUBLIC SERVER vault_shards;
GRANT USAGE ON FOREIGN SERVER vault_shards
    TO pii_vault_share_reader, pii_vault_reader, pii_vault_writer, pii_vault_auditor, pii_vault_admin;
