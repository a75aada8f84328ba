\set n random(1, :records)
SELECT vault_session_store(jsonb_build_object('cart', jsonb_build_array(:n::int, :n::int + 1, :n::int + 2), 'step', 'checkout',
                                              'locale', 'en-GB', 'csrf', md5(:n::int::text)),
                           interval '1 hour', (SELECT id FROM vault_ids WHERE n = :n));
