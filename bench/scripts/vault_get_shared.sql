\set n random(1, :records)
SELECT vault_get_shared((SELECT id FROM vault_share_ids WHERE n = :n));
