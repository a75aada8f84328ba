\set n random(1, :records)
SELECT crypto_lookup('user' || :n || '@example.com');
