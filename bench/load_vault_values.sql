-- The same values tokenized (each a write: the budget lifted to load).
SET pii_vault.max_writes_per_statement = 0;
INSERT INTO vault_field_ids SELECT n, vault_tokenize('DE89' || lpad(n::text, 18, '0')) FROM generate_series(:from, :to) AS n;
