-- Preloads records n = :from .. :to into pii_vault (as a superuser, who
-- may lift the per-statement budgets: each store is a write, and each
-- email or phone it sets a read).
SET pii_vault.max_reads_per_statement = 0;
SET pii_vault.max_writes_per_statement = 0;
INSERT INTO vault_ids
SELECT n, vault_store(bench_doc(n, 'user' || n || '@example.com')) FROM generate_series(:from, :to) AS n;
