\set n random(1, :records)
SELECT vault_lookup('email', 'user' || :n || '@example.com');
