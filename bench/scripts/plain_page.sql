\set n random(1, :records - 49)
SELECT count(doc) FROM plain_customers WHERE id = ANY (ARRAY(SELECT id FROM plain_ids WHERE n BETWEEN :n AND :n + 49));
