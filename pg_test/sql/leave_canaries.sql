-- Stores the canary values that the harness then looks for, byte by byte,
-- in every file of PGDATA (heap, TOAST, WAL) after a CHECKPOINT: they must
-- be nowhere in plaintext. A large field forces the envelope into TOAST.
\set ECHO none
\ir common/setup.sql
\set ECHO all
SELECT vault_store(jsonb_build_object(
    'name', 'canary-3b1f9e-name',
    'email', 'canary-3b1f9e@mail.example',
    'login', 'canary-3b1f9e-login',
    'note', 'canary-3b1f9e-secret-note',
    'padding', repeat('canary-3b1f9e-secret-note ', 4000))) AS canary \gset
SELECT vault_update(:'canary', '{"name": "canary-3b1f9e-name", "more": "canary-3b1f9e-secret-note"}') AS updated;
SELECT vault_get(:'canary') ->> 'note' AS note;
SELECT vault_lookup('login', 'CANARY-3B1F9E-LOGIN') = :'canary' AS found;
-- The envelope went to TOAST (so TOAST is covered by the scan).
SELECT pg_relation_size(reltoastrelid) > 0 AS toast_used
FROM pg_class WHERE oid = 'pii_vault.records'::regclass;
-- Field tokens: their values are canaries too (a text, a card number, an
-- email deduplicated, so its keyed hash is stored as well).
SELECT vault_tokenize('canary-3b1f9e-field-text') AS field_text \gset
SELECT vault_tokenize('4000 0566 5566 5556', 'card') AS field_card \gset
SELECT vault_tokenize('canary-3b1f9e-field@mail.example', 'email', dedup => true) AS field_email \gset
SELECT vault_detokenize(:'field_text') = 'canary-3b1f9e-field-text' AS text_reads,
       vault_detokenize(:'field_card') = '4000056655665556' AS card_reads,
       vault_detokenize(:'field_email') = 'canary-3b1f9e-field@mail.example' AS email_reads;
