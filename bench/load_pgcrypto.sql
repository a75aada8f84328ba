-- Preloads records n = :from .. :to into the hand-written pgcrypto tables.
INSERT INTO crypto_ids
SELECT n, crypto_store(bench_doc(n, 'user' || n || '@example.com')) FROM generate_series(:from, :to) AS n;
