\set n random(1, :records)
SELECT vault_get((SELECT id FROM vault_ids WHERE n = :n));
