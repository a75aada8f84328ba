-- One IBAN-like value of preloaded n = :from .. :to in the clear.
INSERT INTO plain_value_ids SELECT n, gen_random_uuid() FROM generate_series(:from, :to) AS n;
INSERT INTO plain_values SELECT id, 'DE89' || lpad(n::text, 18, '0') FROM plain_value_ids WHERE n BETWEEN :from AND :to;
