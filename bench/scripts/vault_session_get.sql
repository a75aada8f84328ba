\set n random(1, :records)
SELECT vault_session_get((SELECT id FROM vault_session_ids WHERE n = :n));
