\set n random(1, :records)
SELECT value FROM plain_values WHERE id = (SELECT id FROM plain_value_ids WHERE n = :n);
