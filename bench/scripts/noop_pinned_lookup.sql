\set n random(1, :records)
SELECT bench_noop_pinned('email', 'user' || :n || '@example.com');
