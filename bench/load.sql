-- Preloads :records records (n = :from .. :to) into the three systems.
INSERT INTO plain_ids
SELECT n, gen_random_uuid() FROM generate_series(:from, :to) AS n;
INSERT INTO plain_customers
SELECT i.id, 'user' || i.n || '@example.com', bench_doc(i.n, 'user' || i.n || '@example.com')
FROM plain_ids i WHERE i.n BETWEEN :from AND :to;

INSERT INTO crypto_ids
SELECT n, crypto_store(bench_doc(n, 'user' || n || '@example.com')) FROM generate_series(:from, :to) AS n;

INSERT INTO vault_ids
SELECT n, vault_store(bench_doc(n, 'user' || n || '@example.com')) FROM generate_series(:from, :to) AS n;
