\set n random(1, :records)
INSERT INTO plain_sessions (id, token, data, expires_at)
SELECT gen_random_uuid(), (SELECT id FROM plain_ids WHERE n = :n),
       jsonb_build_object('cart', jsonb_build_array(:n::int, :n::int + 1, :n::int + 2), 'step', 'checkout', 'locale', 'en-GB',
                          'csrf', md5(:n::int::text)),
       now() + interval '1 hour'
RETURNING id;
