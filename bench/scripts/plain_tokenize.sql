INSERT INTO plain_values (id, value) VALUES (gen_random_uuid(), 'DE44' || lpad(nextval('bench_value_n')::text, 18, '0')) RETURNING id;
