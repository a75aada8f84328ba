-- Preloads records n = :from .. :to into plain PostgreSQL.
INSERT INTO plain_ids SELECT n, gen_random_uuid() FROM generate_series(:from, :to) AS n;
INSERT INTO plain_customers
SELECT i.id, 'user' || i.n || '@example.com', bench_doc(i.n, 'user' || i.n || '@example.com')
FROM plain_ids i WHERE i.n BETWEEN :from AND :to;
