\set n random(1, :records)
SELECT (SELECT jsonb_object_agg(f.key, f.value) FROM jsonb_each(c.doc) AS f WHERE f.key = ANY (s.fields))
FROM plain_shares s JOIN plain_customers c ON c.id = s.token
WHERE s.id = (SELECT id FROM plain_share_ids WHERE n = :n) AND s.expires_at > now();
