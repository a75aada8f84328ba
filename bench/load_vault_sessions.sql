-- One session of preloaded record n = :from .. :to in pii_vault: a small
-- document (a cart, a step, a CSRF token) for 12 hours
-- (pii_vault.max_session_ttl is a day). Each vault_session_store counts as
-- a write against the per-statement budget, which a superuser may lift.
SET pii_vault.max_writes_per_statement = 0;
INSERT INTO vault_session_ids
SELECT n, vault_session_store(jsonb_build_object('cart', jsonb_build_array(n, n + 1, n + 2), 'step', 'checkout',
                                                 'locale', 'en-GB', 'csrf', md5(n::text)),
                              interval '12 hours', id)
FROM vault_ids WHERE n BETWEEN :from AND :to;
