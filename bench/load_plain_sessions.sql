-- One session of preloaded record n = :from .. :to in plain PostgreSQL:
-- the same document as load_vault_sessions.sql, for 12 hours.
INSERT INTO plain_session_ids SELECT n, gen_random_uuid() FROM plain_ids WHERE n BETWEEN :from AND :to;
INSERT INTO plain_sessions (id, token, data, expires_at)
SELECT s.id, i.id, jsonb_build_object('cart', jsonb_build_array(s.n, s.n + 1, s.n + 2), 'step', 'checkout',
                                      'locale', 'en-GB', 'csrf', md5(s.n::text)),
       now() + interval '12 hours'
FROM plain_session_ids s JOIN plain_ids i USING (n) WHERE s.n BETWEEN :from AND :to;
