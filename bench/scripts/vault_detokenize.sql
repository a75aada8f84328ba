\set n random(1, :records)
SELECT vault_detokenize((SELECT token FROM vault_field_ids WHERE n = :n));
