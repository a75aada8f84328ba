//! Record-level JSON work that needs no PostgreSQL: the top-level field
//! names, keeping only some fields, and RFC 7386 merge patch. (The indexed
//! fields are read from the binary jsonb, `api::jsonb`.)
//!
//! Input is JSON text as PostgreSQL's `jsonb_out` writes it. Only the top
//! level is parsed into a map of raw (unparsed) values: serde_json skips raw
//! values iteratively, so a record nested 10 000 levels deep is handled
//! without recursion. Merge patch needs full trees and is depth-limited.

use std::collections::{BTreeMap, HashSet};

use serde_json::value::RawValue;
use serde_json::Value;

use crate::error::{VaultError, VaultResult};

/// serde_json's own recursion limit; patches deeper than this are refused.
pub const MAX_PATCH_DEPTH: usize = 128;

type TopLevel<'a> = BTreeMap<String, &'a RawValue>;

fn is_object_text(text: &str) -> bool {
    text.trim_start().starts_with('{')
}

fn parse_top_level(text: &str, not_object: VaultError) -> VaultResult<TopLevel<'_>> {
    if !is_object_text(text) {
        return Err(not_object);
    }
    serde_json::from_str(text).map_err(|_| VaultError::MalformedJson)
}

/// The record with only the named top-level fields (absent ones are skipped).
pub fn project(record_text: &str, fields: &[String]) -> VaultResult<String> {
    let wanted: HashSet<&str> = fields.iter().map(String::as_str).collect();
    let mut top = parse_top_level(record_text, VaultError::NotAnObject)?;
    top.retain(|name, _| wanted.contains(name.as_str()));
    serde_json::to_string(&top).map_err(|_| VaultError::MalformedJson)
}

/// The top-level field names of a JSON object (for the audit: names only).
pub fn top_level_names(text: &str) -> VaultResult<Vec<String>> {
    Ok(parse_top_level(text, VaultError::PatchNotAnObject)?.into_keys().collect())
}

fn parse_tree(text: &str) -> VaultResult<Value> {
    serde_json::from_str(text).map_err(|e| {
        if e.to_string().starts_with("recursion limit exceeded") {
            VaultError::TooDeep { limit: MAX_PATCH_DEPTH }
        } else {
            VaultError::MalformedJson
        }
    })
}

/// Applies an RFC 7386 merge patch (an object) to a record (an object) and
/// returns the new record's JSON text.
pub fn merge_patch_text(record_text: &str, patch_text: &str) -> VaultResult<String> {
    if !is_object_text(patch_text) {
        return Err(VaultError::PatchNotAnObject);
    }
    if !is_object_text(record_text) {
        return Err(VaultError::NotAnObject);
    }
    let mut record = parse_tree(record_text)?;
    let patch = parse_tree(patch_text)?;
    merge_patch(&mut record, &patch);
    serde_json::to_string(&record).map_err(|_| VaultError::MalformedJson)
}

/// RFC 7386 section 2, applied in place.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch_fields) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(serde_json::Map::new());
    }
    let target_fields = target.as_object_mut().expect("made an object above");
    for (name, value) in patch_fields {
        if value.is_null() {
            target_fields.remove(name);
        } else {
            merge_patch(target_fields.entry(name.clone()).or_insert(Value::Null), value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    #[test]
    fn every_non_object_is_refused() {
        for text in ["[]", "1", "\"s\"", "null", "true", "[{}]"] {
            assert_eq!(project(text, &[]).unwrap_err(), VaultError::NotAnObject, "{text}");
        }
    }

    #[test]
    fn very_deep_record_needs_no_recursion() {
        let depth = 10_000;
        let text = format!(r#"{{"email":"a@b.example","deep":{}{}}}"#, "[".repeat(depth), "]".repeat(depth));
        assert_eq!(top_level_names(&text).unwrap(), ["deep", "email"]);
        let projected = project(&text, &["deep".to_string()]).unwrap();
        assert!(projected.starts_with(r#"{"deep":[[["#));
        assert_eq!(merge_patch_text(&text, r#"{"x":1}"#).unwrap_err(), VaultError::TooDeep { limit: MAX_PATCH_DEPTH });
    }

    #[test]
    fn projection_keeps_only_named_fields() {
        let text = r#"{"a": 1, "b": {"c": [1, 2]}, "d": "x"}"#;
        let out = project(text, &["b".into(), "zz".into(), "d".into()]).unwrap();
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v, json!({"b": {"c": [1, 2]}, "d": "x"}));
        assert_eq!(project(text, &[]).unwrap(), "{}");
    }

    #[test]
    fn big_numbers_survive_a_patch_exactly() {
        let out = merge_patch_text(r#"{"n": 123456789012345678901234567890.5}"#, r#"{"m": 1}"#).unwrap();
        assert!(out.contains("123456789012345678901234567890.5"), "{out}");
    }

    // The examples of RFC 7386 appendix A.
    #[test]
    fn rfc7386_examples() {
        let cases = [
            (json!({"a":"b"}), json!({"a":"c"}), json!({"a":"c"})),
            (json!({"a":"b"}), json!({"b":"c"}), json!({"a":"b","b":"c"})),
            (json!({"a":"b"}), json!({"a":null}), json!({})),
            (json!({"a":"b","b":"c"}), json!({"a":null}), json!({"b":"c"})),
            (json!({"a":["b"]}), json!({"a":"c"}), json!({"a":"c"})),
            (json!({"a":"c"}), json!({"a":["b"]}), json!({"a":["b"]})),
            (json!({"a":{"b":"c"}}), json!({"a":{"b":"d","c":null}}), json!({"a":{"b":"d"}})),
            (json!({"a":[{"b":"c"}]}), json!({"a":[1]}), json!({"a":[1]})),
            (json!(["a", "b"]), json!(["c", "d"]), json!(["c", "d"])),
            (json!({"a":"b"}), json!(["c"]), json!(["c"])),
            (json!({"a":"foo"}), json!(null), json!(null)),
            (json!({"a":"foo"}), json!("bar"), json!("bar")),
            (json!({"e":null}), json!({"a":1}), json!({"e":null,"a":1})),
            (json!([1, 2]), json!({"a":"b","c":null}), json!({"a":"b"})),
            (json!({}), json!({"a":{"bb":{"ccc":null}}}), json!({"a":{"bb":{}}})),
        ];
        for (target, patch, expected) in cases {
            let mut t = target.clone();
            merge_patch(&mut t, &patch);
            assert_eq!(t, expected, "{target} + {patch}");
        }
    }

    #[test]
    fn patch_must_be_an_object() {
        assert_eq!(merge_patch_text("{}", "[1]").unwrap_err(), VaultError::PatchNotAnObject);
        assert_eq!(merge_patch_text("{}", "null").unwrap_err(), VaultError::PatchNotAnObject);
    }

    fn json_leaf() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i32>().prop_map(|n| json!(n)),
            "[a-z]{0,6}".prop_map(Value::String),
        ]
    }

    fn json_value() -> impl Strategy<Value = Value> {
        json_leaf().prop_recursive(4, 32, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map("[a-c]", inner, 0..4).prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        // Applying the same patch twice changes nothing the second time.
        #[test]
        fn merge_patch_is_idempotent(target in json_value(), patch in json_value()) {
            let mut once = target.clone();
            merge_patch(&mut once, &patch);
            let mut twice = once.clone();
            merge_patch(&mut twice, &patch);
            prop_assert_eq!(once, twice);
        }

        // An object patch never leaves a null member in the fields it touched.
        #[test]
        fn merge_patch_removes_nulled_fields(target in json_value(), name in "[a-c]") {
            let patch = json!({ name.clone(): null });
            let mut t = target.clone();
            merge_patch(&mut t, &patch);
            prop_assert!(t.get(&name).is_none());
        }

        #[test]
        fn record_json_never_panics(s in "\\PC{0,64}") {
            let _ = top_level_names(&s);
            let _ = project(&s, &["a".to_string()]);
            let _ = merge_patch_text(&s, &s);
        }
    }
}
