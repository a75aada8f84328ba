//! `#[pg_test]`s: the vault inside a live backend, run by
//! `cargo pgrx test pg15 --runas postgres --pgdata DIR`. The test cluster is
//! started with `shared_preload_libraries = 'pii_vault'` and a random key
//! from `pii_vault.key_command` (see `crate::pg_test`).

use pgrx::prelude::*;

#[pg_schema]
mod tests {
    use pgrx::prelude::*;
    use pgrx::JsonB;
    use serde_json::json;

    use crate::api::jsonb::JsonbDatum;

    fn store(record: &str) -> pgrx::Uuid {
        Spi::get_one_with_args::<pgrx::Uuid>("SELECT vault_store($1::jsonb)", &[record.into()])
            .expect("vault_store ran")
            .expect("vault_store returned a token")
    }

    fn audit_rows() -> i64 {
        // The audit writer commits asynchronously: wait for it first.
        assert_eq!(Spi::get_one::<bool>("SELECT pii_vault.audit_wait()"), Ok(Some(true)));
        Spi::get_one::<i64>("SELECT count(*) FROM pii_vault.audit_log").unwrap().unwrap()
    }

    /// Every row of vault_health() as (check, ok, detail).
    fn health() -> Vec<(String, bool, String)> {
        Spi::connect(|client| {
            let rows = client.select("SELECT check_name, ok, detail FROM vault_health()", None, &[])?;
            let mut out = Vec::new();
            for row in rows {
                out.push((row.get(1)?.unwrap(), row.get(2)?.unwrap(), row.get(3)?.unwrap()));
            }
            Ok::<_, pgrx::spi::SpiError>(out)
        })
        .unwrap()
    }

    #[pg_test]
    fn a_health_check_whose_query_fails_fails_and_the_others_run() {
        let names: Vec<String> = health().into_iter().map(|(name, _, _)| name).collect();
        assert!(names.len() >= 20, "{names:?}");
        // Each check in turn runs a query that fails in its place: its row
        // fails and names the error; every other row is still there, and
        // the statement (and the transaction) go on.
        for name in &names {
            let name: &'static str = Box::leak(name.clone().into_boxed_str());
            crate::api::health::FAIL.set(Some(name));
            let rows = health();
            crate::api::health::FAIL.set(None);
            assert_eq!(rows.len(), names.len(), "{name}: every check ran");
            let (_, ok, detail) = rows.iter().find(|(n, _, _)| n == name).unwrap();
            assert!(!ok, "{name} vouched for what it could not see");
            assert!(detail.contains("the check's own query failed (22012 division by zero)"), "{name}: {detail}");
            for (other, _, detail) in rows.iter().filter(|(n, _, _)| n != name) {
                assert!(!detail.contains("own query failed"), "{other} failed beside {name}: {detail}");
            }
        }
        assert_eq!(Spi::get_one::<i32>("SELECT 1"), Ok(Some(1)), "the transaction goes on");
    }

    #[pg_test]
    fn store_then_get_returns_the_record() {
        let token = store(r#"{"name": "Ada", "email": "ada@example.org", "nested": {"a": [1, 2, {"b": null}]}}"#);
        let got = Spi::get_one_with_args::<JsonB>("SELECT vault_get($1)", &[token.into()]).unwrap().unwrap();
        assert_eq!(got.0, json!({"name": "Ada", "email": "ada@example.org", "nested": {"a": [1, 2, {"b": null}]}}));
    }

    #[pg_test]
    fn numbers_and_unicode_come_back_unchanged() {
        // The vault encrypts the jsonb datum's own bytes: 1.50 stays 1.50
        // (no float round trip), text stays exactly as stored.
        let token = store(r#"{"k": 1.50, "s": "zoë", "z": [true, false]}"#);
        let same = Spi::get_one_with_args::<bool>(
            "SELECT vault_get($1)::text = '{\"k\": 1.50, \"s\": \"zoë\", \"z\": [true, false]}'::jsonb::text",
            &[token.into()],
        );
        assert_eq!(same, Ok(Some(true)));
    }

    #[pg_test]
    fn jsonb_datum_payload_round_trip() {
        let text = r#"{"a": {"b": [1, "two", null]}, "c": 3.25}"#;
        let original = JsonbDatum::from_text(text).unwrap();
        let (copy, ()) =
            JsonbDatum::filled_by(original.payload().len(), |bytes| bytes.copy_from_slice(original.payload()));
        assert_eq!(copy.payload(), original.payload());
        let reparsed: serde_json::Value = serde_json::from_str(&copy.to_text().unwrap()).unwrap();
        assert_eq!(reparsed, json!({"a": {"b": [1, "two", null]}, "c": 3.25}));
    }

    #[pg_test]
    fn top_level_fields_are_read_from_the_binary_jsonb() {
        use crate::api::jsonb::TopLevelField::{self as Field, Absent, Null, Other};
        let record =
            JsonbDatum::from_text(r#"{"login": "a\"b\u00e9", "phone": null, "n": 1, "o": {"login": "x"}, "a": ["x"]}"#)
                .unwrap();
        let field = |name: &str| record.top_level_field(name).unwrap();
        assert_eq!(field("login"), Field::String("a\"bé"), "stored unescaped");
        assert_eq!(field("phone"), Null);
        assert_eq!(field("email"), Absent, "nested fields are not top-level");
        assert_eq!((field("n"), field("o"), field("a")), (Other, Other, Other));
        for text in ["[]", "[{\"login\": \"x\"}]", "1", "\"s\"", "null", "true"] {
            let value = JsonbDatum::from_text(text).unwrap();
            assert_eq!(value.top_level_field("login"), Err(crate::error::VaultError::NotAnObject), "{text}");
        }
        // A small value read from a table keeps its 1-byte header (unaligned
        // payload): it is read through an aligned copy.
        Spi::run(r#"CREATE TEMP TABLE small_jsonb AS SELECT '{"email": "é@b.example"}'::jsonb AS j"#).unwrap();
        Spi::connect(|client| {
            let packed: JsonbDatum = client.select("SELECT j FROM small_jsonb", None, &[])?.first().get(1)?.unwrap();
            assert!(packed.payload().len() < 127);
            assert_eq!(packed.top_level_field("email").unwrap(), Field::String("é@b.example"));
            Ok::<_, pgrx::spi::SpiError>(())
        })
        .unwrap();
    }

    #[pg_test]
    fn lookup_normalizes_like_store() {
        let token = store(r#"{"email": "Grace.Hopper@Navy.MIL", "phone": "+1 (202) 555-0143", "login": " GHopper "}"#);
        for (kind, value) in [("email", " grace.hopper@navy.mil"), ("phone", "202-555-0143"), ("login", "ghopper")] {
            let found =
                Spi::get_one_with_args::<pgrx::Uuid>("SELECT vault_lookup($1, $2)", &[kind.into(), value.into()]);
            assert_eq!(found, Ok(Some(token)), "{kind}");
        }
    }

    #[pg_test]
    fn storage_holds_no_plaintext_and_fixed_overhead() {
        let token = store(r#"{"note": "pg-test-canary-value"}"#);
        let leaked = Spi::get_one_with_args::<bool>(
            "SELECT position('pg-test-canary-value' IN encode(envelope, 'escape')) > 0 FROM pii_vault.records WHERE token = $1",
            &[token.into()],
        );
        assert_eq!(leaked, Ok(Some(false)));
        let overhead = Spi::get_one_with_args::<i32>(
            "SELECT length(envelope) - (pg_column_size(vault_get($1)) - 4) FROM pii_vault.records WHERE token = $1",
            &[token.into()],
        );
        // envelope = jsonb payload (datum size minus its 4-byte header) + overhead.
        assert_eq!(overhead, Ok(Some(crate::crypto::envelope::OVERHEAD as i32)));
    }

    #[pg_test]
    fn key_check_value_matches_the_loaded_key() {
        // Stored by the first call, not by CREATE EXTENSION, under an
        // advisory lock a call does not wait for (store::KEY_CHECK_LOCK):
        // the tests run in parallel transactions that never commit, so
        // this one takes the lock first (waiting for the others to end).
        Spi::run("SELECT pg_advisory_xact_lock(1885956470, 1)").unwrap();
        store(r#"{"login": "first call"}"#);
        let stored = Spi::get_one::<Vec<u8>>("SELECT check_value FROM pii_vault.key_check WHERE key_version = 1")
            .unwrap()
            .unwrap();
        let keys = crate::keys::key_set().expect("key loaded at preload");
        assert!(keys.version(1).expect("a bare key is version 1").matches_check_value(&stored));
    }

    #[pg_test]
    fn every_call_writes_one_audit_row() {
        // Counted for this token only: tests run in parallel sessions of
        // one server, and their calls are audited too.
        let token = store(r#"{"login": "audited"}"#);
        Spi::run_with_args("SELECT vault_get($1)", &[token.into()]).unwrap();
        Spi::run("SELECT vault_lookup('login', 'AUDITED')").unwrap();
        Spi::run_with_args("SELECT vault_update($1, '{\"x\": 1}')", &[token.into()]).unwrap();
        Spi::run_with_args("SELECT vault_delete($1)", &[token.into()]).unwrap();
        Spi::run_with_args("SELECT vault_get($1)", &[token.into()]).unwrap();
        audit_rows();
        let rows =
            Spi::get_one_with_args::<i64>("SELECT count(*) FROM pii_vault.audit_log WHERE token = $1", &[token.into()]);
        assert_eq!(rows, Ok(Some(6)));
        let last = Spi::get_one_with_args::<String>(
            "SELECT operation || ':' || outcome FROM pii_vault.audit_log WHERE token = $1 ORDER BY id DESC LIMIT 1",
            &[token.into()],
        );
        assert_eq!(last, Ok(Some("get:not_found".to_string())));
    }

    #[pg_test(error = "pii_vault: a record with this email already exists")]
    fn duplicate_email_is_refused() {
        store(r#"{"email": "dup@example.org"}"#);
        store(r#"{"email": "DUP@example.org "}"#);
    }

    #[pg_test(error = "pii_vault: the record must be a JSON object")]
    fn array_record_is_refused() {
        store("[1, 2, 3]");
    }

    #[pg_test(error = "pii_vault: unknown lookup kind")]
    fn unknown_kind_is_refused() {
        Spi::run("SELECT vault_lookup('passport', 'X123')").unwrap();
    }

    #[pg_test]
    fn update_reindexes_and_merges() {
        let token = store(r#"{"email": "old@example.org", "profile": {"a": 1, "b": 2}}"#);
        let updated = Spi::get_one_with_args::<bool>(
            r#"SELECT vault_update($1, '{"email": "new@example.org", "profile": {"b": null, "c": 3}}')"#,
            &[token.into()],
        );
        assert_eq!(updated, Ok(Some(true)));
        let got = Spi::get_one_with_args::<JsonB>("SELECT vault_get($1)", &[token.into()]).unwrap().unwrap();
        assert_eq!(got.0, json!({"email": "new@example.org", "profile": {"a": 1, "c": 3}}));
        let old = Spi::get_one::<pgrx::Uuid>("SELECT vault_lookup('email', 'old@example.org')");
        assert_eq!(old, Ok(None));
    }

    /// A record stored as releases before 0.3.1 indexed it: its email and
    /// login folded by NFC and lowercase only (and a value that mixes
    /// scripts accepted), written straight to the table as they did.
    fn store_as_before(record: serde_json::Value) -> pgrx::Uuid {
        use crate::crypto::blind_index::blind_index;
        use crate::crypto::envelope::{seal, PayloadEncoding};
        use crate::normalize::{normalize_as, parse_region, Fold, IndexedKind};
        let keys = crate::keys::key_set().expect("key loaded at preload");
        let region = parse_region("US").unwrap();
        let mut hashes = crate::store::IndexHashes::default();
        for kind in [IndexedKind::Email, IndexedKind::Login] {
            if let Some(value) = record.get(kind.as_str()).and_then(|v| v.as_str()) {
                let before = normalize_as(kind, value, region, Fold::Legacy).expect("valid before 0.3.1");
                hashes.set(kind, blind_index(keys.active(), kind, &before));
            }
        }
        let token = crate::crypto::random_token().unwrap();
        let jsonb = JsonbDatum::from_text(&record.to_string()).unwrap();
        let sealed = seal(keys.active(), &token, PayloadEncoding::JsonbBinary, jsonb.payload()).unwrap();
        crate::store::insert_record(&token, &sealed, &hashes, None).expect("no duplicate");
        pgrx::Uuid::from_bytes(token)
    }

    fn lookup(kind: &str, value: &str) -> Option<pgrx::Uuid> {
        Spi::get_one_with_args::<pgrx::Uuid>("SELECT vault_lookup($1, $2)", &[kind.into(), value.into()]).unwrap()
    }

    #[pg_test]
    fn the_upgrade_refolds_what_earlier_releases_indexed() {
        let admin = store_as_before(json!({"login": "ＡＤＭＩＮ", "email": "ａｌｉｃｅ@b.example"}));
        let carol = store(r#"{"login": "carol"}"#);
        let carol_too = store_as_before(json!({"login": "ｃａｒｏｌ"}));
        let mixed = store_as_before(json!({"login": "b\u{043E}b", "name": "mixed"}));
        let plain = store_as_before(json!({"login": "Plain", "email": "Plain@B.example"}));
        assert_eq!(lookup("login", "admin"), None, "indexed as it was before 0.3.1");
        assert_eq!(lookup("login", "plain"), Some(plain), "ASCII folds alike in both");

        let refolded = Spi::get_one::<i64>("SELECT pii_vault.refold_lookup_values()");
        assert_eq!(refolded, Ok(Some(1)), "the admin only: carol's look-alike and the mixed login are kept");
        assert_eq!(lookup("login", "admin"), Some(admin));
        assert_eq!(lookup("login", "ａｄｍｉｎ"), Some(admin));
        assert_eq!(lookup("email", "alice@b.example"), Some(admin));
        assert_eq!(lookup("login", "carol"), Some(carol), "the record that held the identity keeps it");
        assert_eq!(lookup("login", "plain"), Some(plain));
        // Kept records still read; their old index entries stay in place.
        for (token, column) in [(carol_too, "login_index"), (mixed, "login_index")] {
            let indexed = Spi::get_one_with_args::<bool>(
                &format!("SELECT {column} IS NOT NULL FROM pii_vault.records WHERE token = $1"),
                &[token.into()],
            );
            assert_eq!(indexed, Ok(Some(true)));
        }
        let name = Spi::get_one_with_args::<String>("SELECT vault_get($1)->>'name'", &[mixed.into()]);
        assert_eq!(name, Ok(Some("mixed".to_string())));
        // A second pass finds nothing more to do; each pass is audited.
        assert_eq!(Spi::get_one::<i64>("SELECT pii_vault.refold_lookup_values()"), Ok(Some(0)));
        audit_rows();
        let passes = Spi::get_one::<i64>("SELECT count(*) FROM pii_vault.audit_log WHERE operation = 'reindex'");
        assert!(passes.unwrap().unwrap() >= 2);
    }
}
