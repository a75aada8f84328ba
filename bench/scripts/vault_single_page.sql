\set n random(1, :records - 49)
SELECT count(vault_get(id)) FROM vault_ids WHERE n BETWEEN :n AND :n + 49;
