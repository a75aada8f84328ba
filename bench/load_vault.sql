-- Preloads records n = :from .. :to into pii_vault (as a superuser, who
-- may lift the per-statement budget: each store of an email counts as a
-- read).
SET pii_vault.max_reads_per_statement = 0;
INSERT INTO vault_ids
SELECT n, vault_store(bench_doc(n, 'user' || n || '@example.com')) FROM generate_series(:from, :to) AS n;
