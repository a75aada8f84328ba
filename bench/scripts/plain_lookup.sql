\set n random(1, :records)
SELECT id FROM plain_customers WHERE email = 'user' || :n || '@example.com';
