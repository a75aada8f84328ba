\set n random(1, :records - 49)
SELECT count(record) FROM vault_get_many(ARRAY(SELECT id FROM vault_ids WHERE n BETWEEN :n AND :n + 49));
