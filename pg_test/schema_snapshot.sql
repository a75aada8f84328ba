-- Everything the extension leaves in a database, one line per fact, in a
-- stable order: what the upgrade suite compares between an upgraded vault
-- and a fresh install (pg_test/day_two.sh). Run with psql -At.

-- The extension, its version and the tables pg_dump carries.
SELECT 'extension', e.extversion, e.extrelocatable, e.extnamespace::regnamespace,
       pg_get_userbyid(e.extowner), (SELECT array_agg(c::regclass::text ORDER BY c::regclass::text)
                                     FROM unnest(e.extconfig) AS c), e.extcondition
FROM pg_extension e WHERE e.extname = 'pii_vault';

-- Every member object.
SELECT 'member', pg_describe_object(d.classid, d.objid, d.objsubid)
FROM pg_depend d JOIN pg_extension e ON e.oid = d.refobjid AND d.refclassid = 'pg_extension'::regclass
WHERE e.extname = 'pii_vault' AND d.deptype = 'e'
ORDER BY pg_describe_object(d.classid, d.objid, d.objsubid);

-- Functions and procedures: arguments, result, owner, privileges, SECURITY
-- DEFINER, settings, volatility, strictness, parallel safety, language and
-- body (the C symbol, or the SQL/plpgsql source).
SELECT 'function', p.oid::regprocedure, p.prokind, pg_get_function_arguments(p.oid),
       pg_get_function_result(p.oid), pg_get_userbyid(p.proowner), p.proacl, p.prosecdef, p.proconfig,
       p.provolatile, p.proisstrict, p.proparallel, l.lanname, p.prosrc, p.probin
FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang
WHERE p.oid IN (SELECT d.objid FROM pg_depend d JOIN pg_extension e ON e.oid = d.refobjid
                WHERE e.extname = 'pii_vault' AND d.deptype = 'e' AND d.classid = 'pg_proc'::regclass)
ORDER BY p.oid::regprocedure::text;

-- Schemas, relations and their columns, indexes, constraints, triggers,
-- views, privileges and storage settings.
SELECT 'schema', n.nspname, pg_get_userbyid(n.nspowner), n.nspacl
FROM pg_namespace n WHERE n.nspname = 'pii_vault';
SELECT 'relation', c.oid::regclass, c.relkind, pg_get_userbyid(c.relowner), c.relacl, c.reloptions, c.relpersistence
FROM pg_class c WHERE c.relnamespace = 'pii_vault'::regnamespace
ORDER BY c.relname;
SELECT 'column', c.oid::regclass, a.attnum, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
       pg_get_expr(ad.adbin, ad.adrelid), a.attstorage, a.attcompression, a.attacl
FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
LEFT JOIN pg_attrdef ad ON ad.adrelid = c.oid AND ad.adnum = a.attnum
WHERE c.relnamespace = 'pii_vault'::regnamespace
ORDER BY c.relname, a.attname;
SELECT 'index', i.indexrelid::regclass, pg_get_indexdef(i.indexrelid)
FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid
WHERE c.relnamespace = 'pii_vault'::regnamespace
ORDER BY i.indexrelid::regclass::text;
SELECT 'constraint', conrelid::regclass, conname, pg_get_constraintdef(oid)
FROM pg_constraint WHERE connamespace = 'pii_vault'::regnamespace
ORDER BY conrelid::regclass::text, conname;
SELECT 'trigger', tgrelid::regclass, tgname, pg_get_triggerdef(oid), tgenabled
FROM pg_trigger WHERE NOT tgisinternal AND tgrelid IN (SELECT oid FROM pg_class WHERE relnamespace = 'pii_vault'::regnamespace)
ORDER BY tgrelid::regclass::text, tgname;
SELECT 'view', c.oid::regclass, pg_get_viewdef(c.oid)
FROM pg_class c WHERE c.relkind = 'v' AND c.relnamespace = 'pii_vault'::regnamespace
ORDER BY c.relname;
