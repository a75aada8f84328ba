-- One share of preloaded record n = :from .. :to in plain PostgreSQL: the
-- same three fields as load_vault_shares.sql, for 12 hours.
INSERT INTO plain_share_ids SELECT n, gen_random_uuid() FROM plain_ids WHERE n BETWEEN :from AND :to;
INSERT INTO plain_shares (id, token, fields, expires_at)
SELECT s.id, i.id, ARRAY['name', 'phone', 'address'], now() + interval '12 hours'
FROM plain_share_ids s JOIN plain_ids i USING (n) WHERE s.n BETWEEN :from AND :to;
