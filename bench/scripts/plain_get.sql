\set n random(1, :records)
SELECT doc FROM plain_customers WHERE id = (SELECT id FROM plain_ids WHERE n = :n);
