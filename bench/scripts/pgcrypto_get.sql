\set n random(1, :records)
SELECT crypto_get((SELECT id FROM crypto_ids WHERE n = :n));
