SELECT vault_store(bench_doc(nextval('bench_store_n'), 'new-' || gen_random_uuid() || '@example.com'));
