-- Preloads records n = :from .. :to into pii_vault.
INSERT INTO vault_ids
SELECT n, vault_store(bench_doc(n, 'user' || n || '@example.com')) FROM generate_series(:from, :to) AS n;
