INSERT INTO plain_customers (id, email, doc)
SELECT gen_random_uuid(), e, bench_doc(nextval('bench_store_n'), e)
FROM (SELECT 'new-' || gen_random_uuid() || '@example.com' AS e) AS s;
