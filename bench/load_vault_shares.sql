-- One share of preloaded record n = :from .. :to in pii_vault: three of
-- the profile's nine top-level fields (what a courier needs), for 12 hours
-- (pii_vault.max_share_ttl is a day). Each vault_share counts as a write
-- against the per-statement budget, which a superuser may lift.
SET pii_vault.max_writes_per_statement = 0;
INSERT INTO vault_share_ids
SELECT n, vault_share(id, ARRAY['name', 'phone', 'address'], interval '12 hours') FROM vault_ids WHERE n BETWEEN :from AND :to;
