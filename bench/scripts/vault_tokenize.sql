SELECT vault_tokenize('DE44' || lpad(nextval('bench_value_n')::text, 18, '0'));
