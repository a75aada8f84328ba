-- Stores records n = :from .. :to in pii_vault, each expiring 1 s after
-- it is stored (bench/run.sh --life-cycle's purge; n far from the preloaded
-- records', whose phones the vault indexes, and from bench_store_n's).
SET pii_vault.max_reads_per_statement = 0;
SET pii_vault.max_writes_per_statement = 0;
SELECT count(vault_store(bench_doc(n, 'expiring' || n || '@example.com'), clock_timestamp() + interval '1 s'))
FROM generate_series(:from, :to) AS n;
