\set n random(1, :records)
SELECT s.data FROM plain_sessions s
WHERE s.id = (SELECT id FROM plain_session_ids WHERE n = :n) AND s.expires_at > now();
