-- Benchmark schema: the same ~1 KB customer profile stored three ways.
-- :records is set by bench/run.sh.
CREATE EXTENSION IF NOT EXISTS pgcrypto;
CREATE EXTENSION IF NOT EXISTS pii_vault;

-- A realistic customer profile (~1 KB of JSON), varied by n.
CREATE FUNCTION bench_doc(n bigint, email text) RETURNS jsonb LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
SELECT jsonb_build_object(
    'name', jsonb_build_object('given', 'Customer', 'family', 'Number ' || n, 'display', 'Customer Number ' || n),
    'email', email,
    'phone', '+1 415 ' || (2000000 + n % 7000000)::text,
    'date_of_birth', (date '1950-01-01' + (n % 20000)::int)::text,
    'address', jsonb_build_object(
        'street', (n % 9000 + 1)::text || ' Market Street, Apartment ' || (n % 400)::text,
        'city', 'San Francisco', 'region', 'CA', 'postal_code', lpad((n % 99999)::text, 5, '0'), 'country', 'US'),
    'preferences', jsonb_build_object('language', 'en-US', 'newsletter', n % 2 = 0, 'channels', jsonb_build_array('email', 'sms')),
    'kyc', jsonb_build_object('status', 'verified', 'checked_at', '2026-01-15T10:20:30Z', 'document', 'passport', 'document_number', md5(n::text)),
    'notes', 'Prefers afternoon deliveries; leave parcels with the concierge. Account opened in branch ' || (n % 97)::text
        || '. Loyalty tier gold since 2021, referred by customer ' || ((n * 7919) % 1000003)::text || '.',
    'tags', jsonb_build_array('retail', 'loyalty', 'west-coast', md5((n + 1)::text)))
$$;

-- plain: the same JSON in the clear.
CREATE TABLE plain_customers (id uuid PRIMARY KEY, email text UNIQUE, doc jsonb);

-- pgcrypto: what a team writes by hand (keys inside the functions, so they
-- at least stay out of the statements).
CREATE TABLE crypto_customers (id uuid PRIMARY KEY, email_hmac bytea UNIQUE, doc bytea);
CREATE FUNCTION crypto_store(doc jsonb) RETURNS uuid LANGUAGE sql AS $$
    INSERT INTO crypto_customers (id, email_hmac, doc)
    VALUES (gen_random_uuid(),
            hmac(lower(trim(doc ->> 'email')), 'bench-index-key-0123456789abcdef', 'sha256'),
            pgp_sym_encrypt(doc::text, 'bench-data-key-0123456789abcdef', 'cipher-algo=aes256'))
    RETURNING id
$$;
CREATE FUNCTION crypto_get(token uuid) RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT pgp_sym_decrypt(doc, 'bench-data-key-0123456789abcdef')::jsonb FROM crypto_customers WHERE id = token
$$;
CREATE FUNCTION crypto_lookup(email text) RETURNS uuid LANGUAGE sql STABLE AS $$
    SELECT id FROM crypto_customers
    WHERE email_hmac = hmac(lower(trim(email)), 'bench-index-key-0123456789abcdef', 'sha256')
$$;

-- n → id of each preloaded record, for the get scripts (the same kind of
-- int-key probe in all three systems).
CREATE TABLE plain_ids (n int PRIMARY KEY, id uuid NOT NULL);
CREATE TABLE crypto_ids (n int PRIMARY KEY, id uuid NOT NULL);
CREATE TABLE vault_ids (n int PRIMARY KEY, id uuid NOT NULL);

-- Record numbers for the store runs, far from the preloaded ones (the
-- vault indexes phones, which bench_doc derives from n).
CREATE SEQUENCE bench_store_n START 3000000;

-- Shares (bench/run.sh --life-cycle): plain PostgreSQL's equivalent of
-- vault_share (bench/scripts/plain_get_shared.sql reads it), and n → share
-- id of record n's share in each system (the get scripts' int-key probe).
CREATE TABLE plain_shares (id uuid PRIMARY KEY, token uuid NOT NULL REFERENCES plain_customers (id) ON DELETE CASCADE,
    fields text[] NOT NULL, expires_at timestamptz NOT NULL);
CREATE TABLE plain_share_ids (n int PRIMARY KEY, id uuid NOT NULL);
CREATE TABLE vault_share_ids (n int PRIMARY KEY, id uuid NOT NULL);

-- Sessions (bench/run.sh --life-cycle): plain PostgreSQL's equivalent of
-- vault_session_store (an indexed table of documents with an expiry, of a
-- customer), and n → session id of record n's session in each system.
CREATE TABLE plain_sessions (id uuid PRIMARY KEY, token uuid REFERENCES plain_customers (id) ON DELETE CASCADE,
    data jsonb NOT NULL, expires_at timestamptz NOT NULL, created_at timestamptz NOT NULL DEFAULT now());
CREATE INDEX plain_sessions_token ON plain_sessions (token) WHERE token IS NOT NULL;
CREATE INDEX plain_sessions_expires_at ON plain_sessions (expires_at);
CREATE TABLE plain_session_ids (n int PRIMARY KEY, id uuid NOT NULL);
CREATE TABLE vault_session_ids (n int PRIMARY KEY, id uuid NOT NULL);

-- Field tokens (bench/run.sh --fields): one IBAN-like value per preloaded
-- n, in the clear and tokenized; and the table vault_migrate moves in.
CREATE TABLE plain_values (id uuid PRIMARY KEY, value text NOT NULL);
CREATE TABLE plain_value_ids (n int PRIMARY KEY, id uuid NOT NULL);
CREATE TABLE vault_field_ids (n int PRIMARY KEY, token text NOT NULL);
CREATE SEQUENCE bench_value_n;
