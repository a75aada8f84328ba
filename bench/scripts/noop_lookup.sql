\set n random(1, :records)
SELECT bench_noop('email', 'user' || :n || '@example.com');
