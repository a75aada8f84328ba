//! RFC 6902 JSON Patch of a record, with RFC 6901 JSON Pointers.
//!
//! The patch is applied to a parsed copy of the record and the copy is
//! returned only when every operation succeeded, so a patch is atomic.
//! A record is a JSON object before and after: an operation that would
//! make the root anything else is refused at once (`NotAnObject`).
//!
//! Numbers compare exactly by value in `test` (see `numbers_equal`):
//! with `arbitrary_precision` serde_json keeps a number's text, so `1` and
//! `1.0` differ as `Value`s but are one number here. Nothing is rounded
//! through `f64`, so two 20-digit identifiers differing in the last digit
//! never test equal.
//!
//! An op object with a member name twice (RFC 6902 section 4 allows the
//! refusal, and serde_json would silently keep the last) is refused.
//!
//! Limits, so that no patch can exhaust the backend: at most `MAX_OPS`
//! operations; no nesting past serde_json's parse limit (`TooDeep`); and
//! all `copy` ops together may add no more bytes than the record and
//! the patch have bytes (the op past it is a `BadOperation`), since each
//! copy can otherwise double the record: 15 copies of a 100 kB array onto
//! its own end would ask for 3 GB.
//!
//! Errors name an operation's index, never a path, member name or value:
//! both the record and the patch carry personal data.

use std::collections::BTreeSet;

use serde_json::value::RawValue;
use serde_json::Value;

/// The most operations one patch may hold; op number `MAX_OPS` (counting
/// from 0) and beyond are refused as `BadOperation(MAX_OPS)`.
pub const MAX_OPS: usize = 1000;

/// serde_json parses at most this many nested arrays and objects (its
/// recursion limit is 128, and it refuses at the 128th level). A patch may
/// not nest the record deeper: the result must parse again next time, and
/// a bounded depth keeps the recursive drop and serialization of the tree
/// off the end of the stack whatever the number of ops.
const MAX_NESTING: usize = 127;

/// Why a patch was refused. Messages never contain a value from the
/// record or the patch (personal data): they may name an operation index
/// and the op name, never a path or value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatchError {
    /// The ops are not a JSON array of objects, or an op lacks/mistypes a required member
    /// ("op", "path", "from", "value"), or has an unknown "op". usize = index of the op.
    /// Also: 0 when the ops are no array, `MAX_OPS` when there are more, and
    /// the `copy` that overdraws the copy budget (module doc).
    #[error("pii_vault: JSON Patch operation {0} is malformed or exceeds a limit")]
    BadOperation(usize),
    /// A path or from is not a valid JSON Pointer (RFC 6901), or points where it may not
    /// (a missing member for remove/replace/move/copy-from/test, an array index out of range,
    /// "-" where not allowed, a leading-zero index, move into its own child). usize = op index.
    #[error("pii_vault: JSON Patch operation {0} has a path or from that is invalid or points nowhere")]
    BadPath(usize),
    /// A `test` op did not match. usize = op index.
    #[error("pii_vault: JSON Patch operation {0} failed its test")]
    TestFailed(usize),
    /// The result (or the root path being replaced) is not a JSON object: a record must stay an object.
    #[error("pii_vault: a JSON Patch must leave the record a JSON object")]
    NotAnObject,
    /// Input is not valid JSON.
    #[error("pii_vault: the record or the JSON Patch is not valid JSON")]
    MalformedJson,
    /// Nesting deeper than the limit (serde_json's recursion limit, 128), in
    /// the input or in the record an op would make.
    #[error("pii_vault: the record or the JSON Patch nests arrays and objects deeper than 127 levels")]
    TooDeep,
}

fn parse_tree(text: &str) -> Result<Value, PatchError> {
    serde_json::from_str(text).map_err(|e| {
        if e.to_string().starts_with("recursion limit exceeded") {
            PatchError::TooDeep
        } else {
            PatchError::MalformedJson
        }
    })
}

/// Applies RFC 6902 `ops_text` (a JSON array) to `record_text` (a JSON object) and returns
/// the new record's JSON text, and the sorted, deduplicated top-level member names of the
/// record that any op touched (for a path "/a/b/0", "a"; for move, both from's and path's
/// first segment; for a test op, nothing; for an op on the root path "", every top-level name
/// in the old and the new record). Atomic: on any error, nothing is returned but the error.
///
/// "Old and new" for a root op are the document just before and just after that op.
pub fn apply_text(record_text: &str, ops_text: &str) -> Result<(String, Vec<String>), PatchError> {
    let doc = parse_tree(record_text)?;
    if !doc.is_object() {
        return Err(PatchError::NotAnObject);
    }
    // Only the array is parsed here; each op is raw text until its turn, so
    // its members can be counted (duplicates) and its depth limited.
    let ops: Vec<&RawValue> = serde_json::from_str(ops_text).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => PatchError::BadOperation(0),
        _ => PatchError::MalformedJson,
    })?;
    if ops.len() > MAX_OPS {
        return Err(PatchError::BadOperation(MAX_OPS));
    }
    let mut work = Work { doc, touched: BTreeSet::new(), copy_budget: record_text.len() + ops_text.len() };
    for (i, raw) in ops.iter().enumerate() {
        work.apply(Op::parse(i, raw.get())?, i)?;
    }
    let text = serde_json::to_string(&work.doc).map_err(|_| PatchError::MalformedJson)?;
    Ok((text, work.touched.into_iter().collect()))
}

/// One operation; its pointers are valid RFC 6901 text.
struct Op {
    kind: Kind,
    path: String,
    from: String,
    value: Value,
}

enum Kind {
    Add,
    Remove,
    Replace,
    Move,
    Copy,
    Test,
}

impl Op {
    fn parse(i: usize, text: &str) -> Result<Self, PatchError> {
        let Value::Object(mut fields) = parse_tree(text)? else { return Err(PatchError::BadOperation(i)) };
        if member_count(text) != fields.len() {
            return Err(PatchError::BadOperation(i));
        }
        let kind = match fields.get("op").and_then(Value::as_str) {
            Some("add") => Kind::Add,
            Some("remove") => Kind::Remove,
            Some("replace") => Kind::Replace,
            Some("move") => Kind::Move,
            Some("copy") => Kind::Copy,
            Some("test") => Kind::Test,
            _ => return Err(PatchError::BadOperation(i)),
        };
        let mut pointer = |name: &str| match fields.remove(name) {
            Some(Value::String(s)) if valid_pointer(&s) => Ok(s),
            Some(Value::String(_)) => Err(PatchError::BadPath(i)),
            _ => Err(PatchError::BadOperation(i)),
        };
        let path = pointer("path")?;
        let from = if matches!(kind, Kind::Move | Kind::Copy) { pointer("from")? } else { String::new() };
        let value = match kind {
            Kind::Add | Kind::Replace | Kind::Test => fields.remove("value").ok_or(PatchError::BadOperation(i))?,
            _ => Value::Null,
        };
        Ok(Op { kind, path, from, value })
    }
}

/// The number of members of the object whose (valid JSON) text this is:
/// the colons outside strings at its top level. Below the parsed map's
/// length exactly when a member name repeats (after unescaping).
fn member_count(object_text: &str) -> usize {
    let (mut depth, mut in_string, mut escaped, mut count) = (0usize, false, false, 0);
    for b in object_text.bytes() {
        match b {
            _ if escaped => escaped = false,
            b'\\' if in_string => escaped = true,
            b'"' => in_string = !in_string,
            _ if in_string => {}
            b'{' | b'[' => depth += 1,
            b'}' | b']' => depth -= 1,
            b':' if depth == 1 => count += 1,
            _ => {}
        }
    }
    count
}

/// RFC 6901: "" (the root) or "/"-separated reference tokens in which
/// every "~" is "~0" or "~1". (serde_json's `pointer` decodes the rest the
/// same way: "~1" to "/", then "~0" to "~", so "~01" is "~1"; and it takes
/// an array index only as "0" or digits without a leading zero.)
fn valid_pointer(text: &str) -> bool {
    (text.is_empty() || text.starts_with('/')) && text.split('~').skip(1).all(|s| s.starts_with(['0', '1']))
}

fn decode(token: &str) -> String {
    token.replace("~1", "/").replace("~0", "~")
}

/// The top-level member a (non-root) pointer starts at.
fn first_name(path: &str) -> Option<String> {
    path.split('/').nth(1).map(decode)
}

/// An array index token: "0" or digits without a leading zero ("-" is `None`).
fn array_index(token: &str) -> Option<usize> {
    let canonical = token.bytes().all(|b| b.is_ascii_digit()) && (token == "0" || !token.starts_with('0'));
    token.parse().ok().filter(|_| canonical)
}

/// Array and object levels of a value (0 for a scalar, 1 for `[]`), and
/// how many values it holds (itself included).
fn shape(value: &Value) -> (usize, usize) {
    let children: Box<dyn Iterator<Item = &Value>> = match value {
        Value::Array(items) => Box::new(items.iter()),
        Value::Object(map) => Box::new(map.values()),
        _ => return (0, 1),
    };
    children.map(shape).fold((1, 1), |(levels, values), (l, v)| (levels.max(l + 1), values + v))
}

/// About how many bytes `value` takes as JSON text (strings and names
/// without their escapes), or None once that passes `limit`: a copy's
/// cost, counted without walking more of the value than the budget left.
fn weight(value: &Value, limit: usize) -> Option<usize> {
    let mut total = 0usize;
    let mut stack = vec![value];
    while let Some(v) = stack.pop() {
        total += match v {
            Value::Null | Value::Bool(_) => 5,
            Value::Number(n) => n.as_str().len(),
            Value::String(s) => s.len() + 2,
            Value::Array(items) => {
                stack.extend(items);
                items.len().saturating_sub(1) + 2
            }
            Value::Object(map) => {
                stack.extend(map.values());
                map.keys().map(|k| k.len() + 3).sum::<usize>() + map.len().saturating_sub(1) + 2
            }
        };
        if total > limit {
            return None;
        }
    }
    Some(total)
}

/// The record being patched, the names touched so far, and how many more
/// bytes `copy` may still add.
struct Work {
    doc: Value,
    touched: BTreeSet<String>,
    copy_budget: usize,
}

impl Work {
    fn touch(&mut self, path: &str) {
        match (first_name(path), &self.doc) {
            (Some(name), _) => drop(self.touched.insert(name)),
            (None, Value::Object(map)) => self.touched.extend(map.keys().cloned()),
            (None, _) => {}
        }
    }

    /// RFC 6902 4.1: an array index inserts ("-" appends), an object member is set;
    /// the root path replaces the whole record, which must stay an object.
    fn add(&mut self, path: &str, value: Value, i: usize) -> Result<(), PatchError> {
        self.touch(path);
        let Some((parent, last)) = path.rsplit_once('/') else {
            if !value.is_object() {
                return Err(PatchError::NotAnObject);
            }
            self.doc = value;
            self.touch(path);
            return Ok(());
        };
        // The value sits inside as many containers as the path has tokens.
        if path.matches('/').count() + shape(&value).0 > MAX_NESTING {
            return Err(PatchError::TooDeep);
        }
        match self.doc.pointer_mut(parent).ok_or(PatchError::BadPath(i))? {
            Value::Object(map) => drop(map.insert(decode(last), value)),
            Value::Array(items) if last == "-" => items.push(value),
            Value::Array(items) => match array_index(last) {
                Some(at) if at <= items.len() => items.insert(at, value),
                _ => return Err(PatchError::BadPath(i)),
            },
            _ => return Err(PatchError::BadPath(i)),
        }
        Ok(())
    }

    /// RFC 6902 4.2: the target must exist; the root cannot go (no record would be left).
    fn remove(&mut self, path: &str, i: usize) -> Result<Value, PatchError> {
        let Some((parent, last)) = path.rsplit_once('/') else { return Err(PatchError::NotAnObject) };
        self.touch(path);
        let removed = match self.doc.pointer_mut(parent) {
            Some(Value::Object(map)) => map.remove(&decode(last)),
            Some(Value::Array(items)) => array_index(last).filter(|&at| at < items.len()).map(|at| items.remove(at)),
            _ => None,
        };
        removed.ok_or(PatchError::BadPath(i))
    }

    fn find(&self, path: &str, i: usize) -> Result<&Value, PatchError> {
        self.doc.pointer(path).ok_or(PatchError::BadPath(i))
    }

    fn apply(&mut self, op: Op, i: usize) -> Result<(), PatchError> {
        match op.kind {
            Kind::Add => self.add(&op.path, op.value, i),
            Kind::Remove => self.remove(&op.path, i).map(drop),
            Kind::Replace if op.path.is_empty() => self.add(&op.path, op.value, i),
            Kind::Replace => {
                self.remove(&op.path, i)?;
                self.add(&op.path, op.value, i)
            }
            // RFC 6902 4.4: `from` may not be a proper prefix of `path`; onto itself it is a no-op.
            Kind::Move if op.path.strip_prefix(op.from.as_str()).is_some_and(|rest| rest.starts_with('/')) => {
                Err(PatchError::BadPath(i))
            }
            Kind::Move if op.from == op.path => {
                self.find(&op.from, i)?;
                self.touch(&op.path);
                Ok(())
            }
            Kind::Move => {
                let value = self.remove(&op.from, i)?;
                self.add(&op.path, value, i)
            }
            // Each copy can double the record: all copies together may add
            // no more bytes than the record and the patch have (weighed
            // before the copy is made, so the refused one is never built).
            Kind::Copy => {
                let source = self.find(&op.from, i)?;
                let cost = weight(source, self.copy_budget).ok_or(PatchError::BadOperation(i))?;
                let value = source.clone();
                self.copy_budget -= cost;
                self.add(&op.path, value, i)
            }
            Kind::Test if json_equal(self.find(&op.path, i)?, &op.value) => Ok(()),
            Kind::Test => Err(PatchError::TestFailed(i)),
        }
    }
}

/// RFC 6902 4.6 equality: same type; numbers by value; arrays item by
/// item in order; objects by member name whatever the order.
fn json_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => numbers_equal(x.as_str(), y.as_str()),
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(x, y)| json_equal(x, y)),
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| json_equal(v, w)))
        }
        _ => a == b,
    }
}

/// Two JSON number texts denote the same number, decided exactly: each is
/// reduced to sign, significant digits without leading or trailing zeros,
/// and a decimal exponent (so `1`, `1.0`, `10e-1` and `0.1E1` are one
/// number, and `-0` is `0`). An exponent beyond `i64` falls back to
/// comparing the texts.
fn numbers_equal(a: &str, b: &str) -> bool {
    match (decimal(a), decimal(b)) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}

fn decimal(text: &str) -> Option<(bool, String, i64)> {
    let (negative, unsigned) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (mantissa, exponent) = match unsigned.find(['e', 'E']) {
        Some(at) => (&unsigned[..at], unsigned[at + 1..].parse::<i64>().ok()?),
        None => (unsigned, 0),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let joined = format!("{int}{frac}");
    let digits = joined.trim_start_matches('0');
    let significant = digits.trim_end_matches('0');
    if significant.is_empty() {
        return Some((false, String::new(), 0));
    }
    let exponent = exponent.checked_sub(frac.len() as i64)?.checked_add((digits.len() - significant.len()) as i64)?;
    Some((negative, significant.to_string(), exponent))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::{json, Map};
    use PatchError::*;

    fn check(record: &str, ops: &str, expected: Result<&str, PatchError>) {
        let got = apply_text(record, ops).map(|(text, _)| serde_json::from_str::<Value>(&text).unwrap());
        assert_eq!(got, expected.map(|e| serde_json::from_str::<Value>(e).unwrap()), "{record} + {ops}");
    }

    fn touched(record: &str, ops: &str) -> Vec<String> {
        apply_text(record, ops).unwrap().1
    }

    // RFC 6902 appendix A, A.1 to A.16, each document an object.
    #[test]
    fn rfc6902_appendix_a() {
        check(r#"{"foo":"bar"}"#, r#"[{"op":"add","path":"/baz","value":"qux"}]"#, Ok(r#"{"baz":"qux","foo":"bar"}"#));
        check(
            r#"{"foo":["bar","baz"]}"#,
            r#"[{"op":"add","path":"/foo/1","value":"qux"}]"#,
            Ok(r#"{"foo":["bar","qux","baz"]}"#),
        );
        check(r#"{"baz":"qux","foo":"bar"}"#, r#"[{"op":"remove","path":"/baz"}]"#, Ok(r#"{"foo":"bar"}"#));
        check(r#"{"foo":["bar","qux","baz"]}"#, r#"[{"op":"remove","path":"/foo/1"}]"#, Ok(r#"{"foo":["bar","baz"]}"#));
        check(
            r#"{"baz":"qux","foo":"bar"}"#,
            r#"[{"op":"replace","path":"/baz","value":"boo"}]"#,
            Ok(r#"{"baz":"boo","foo":"bar"}"#),
        );
        let a6 = r#"{"foo":{"bar":"baz","waldo":"fred"},"qux":{"corge":"grault"}}"#;
        let a6_out = r#"{"foo":{"bar":"baz"},"qux":{"corge":"grault","thud":"fred"}}"#;
        check(a6, r#"[{"op":"move","from":"/foo/waldo","path":"/qux/thud"}]"#, Ok(a6_out));
        let a7 = r#"{"foo":["all","grass","cows","eat"]}"#;
        check(a7, r#"[{"op":"move","from":"/foo/1","path":"/foo/3"}]"#, Ok(r#"{"foo":["all","cows","eat","grass"]}"#));
        let a8 = r#"{"baz":"qux","foo":["a",2,"c"]}"#;
        check(a8, r#"[{"op":"test","path":"/baz","value":"qux"},{"op":"test","path":"/foo/1","value":2}]"#, Ok(a8));
        check(r#"{"baz":"qux"}"#, r#"[{"op":"test","path":"/baz","value":"bar"}]"#, Err(TestFailed(0)));
        let a10_out = r#"{"foo":"bar","child":{"grandchild":{}}}"#;
        check(r#"{"foo":"bar"}"#, r#"[{"op":"add","path":"/child","value":{"grandchild":{}}}]"#, Ok(a10_out));
        let a11 = r#"[{"op":"add","path":"/baz","value":"qux","xyz":123}]"#;
        check(r#"{"foo":"bar"}"#, a11, Ok(r#"{"foo":"bar","baz":"qux"}"#));
        check(r#"{"foo":"bar"}"#, r#"[{"op":"add","path":"/baz/bat","value":"qux"}]"#, Err(BadPath(0)));
        let a13 = r#"[{ "op": "add", "path": "/baz", "value": "qux", "op": "remove" }]"#;
        check(r#"{"baz":1}"#, a13, Err(BadOperation(0)));
        check(r#"{"/":9,"~1":10}"#, r#"[{"op":"test","path":"/~01","value":10}]"#, Ok(r#"{"/":9,"~1":10}"#));
        check(r#"{"/":9,"~1":10}"#, r#"[{"op":"test","path":"/~01","value":"10"}]"#, Err(TestFailed(0)));
        let a16 = r#"[{"op":"add","path":"/foo/-","value":["abc","def"]}]"#;
        check(r#"{"foo":["bar"]}"#, a16, Ok(r#"{"foo":["bar",["abc","def"]]}"#));
    }

    #[test]
    fn a_failing_op_leaves_no_partial_result() {
        let ops = r#"[{"op":"add","path":"/b","value":2},{"op":"remove","path":"/a"},{"op":"replace","path":"/c","value":3}]"#;
        check(r#"{"a":1}"#, ops, Err(BadPath(2)));
    }

    #[test]
    fn touched_names() {
        let record = r#"{"a": {"b": [1]}, "c": 1, "d/e": 2}"#;
        assert_eq!(touched(record, r#"[{"op": "add", "path": "/a/b/0", "value": 0}]"#), ["a"]);
        assert_eq!(touched(record, r#"[{"op": "move", "from": "/c", "path": "/a/x"}]"#), ["a", "c"]);
        let copy_remove = r#"[{"op": "copy", "from": "/c", "path": "/z"}, {"op": "remove", "path": "/d~1e"}]"#;
        assert_eq!(touched(record, copy_remove), ["d/e", "z"]);
        assert!(touched(record, r#"[{"op": "test", "path": "/c", "value": 1}]"#).is_empty());
        assert_eq!(touched(record, r#"[{"op": "replace", "path": "", "value": {"n": 1}}]"#), ["a", "c", "d/e", "n"]);
        assert!(touched(record, "[]").is_empty());
    }

    #[test]
    fn the_record_stays_an_object() {
        check("{}", r#"[{"op": "replace", "path": "", "value": [1]}]"#, Err(NotAnObject));
        check("{}", r#"[{"op": "add", "path": "", "value": null}]"#, Err(NotAnObject));
        check("{}", r#"[{"op": "remove", "path": ""}]"#, Err(NotAnObject));
        check(r#"{"a": [1]}"#, r#"[{"op": "move", "from": "/a", "path": ""}]"#, Err(NotAnObject));
        check(r#"{"a": {"b": 1}}"#, r#"[{"op": "move", "from": "/a", "path": ""}]"#, Ok(r#"{"b": 1}"#));
        for record in ["[]", "1", "null", "\"s\""] {
            assert_eq!(apply_text(record, "[]"), Err(NotAnObject), "{record}");
        }
    }

    #[test]
    fn pointers() {
        let record = r#"{"a": [10, 20], "": 1, "~": 2, "-": 3, "01": 4}"#;
        for path in ["/a/0", "/a/1", "/", "/~0", "/-", "/01"] {
            let ops = format!(r#"[{{"op": "test", "path": "{path}", "value": 0}}]"#);
            assert_eq!(apply_text(record, &ops), Err(TestFailed(0)), "{path}");
        }
        for path in
            ["a", "/a/01", "/a/-", "/a/2", "/a/-1", "/a/+1", "/a/0/x", "/~2", "/~", "/b", "/a/99999999999999999999999"]
        {
            let ops = format!(r#"[{{"op": "remove", "path": "{path}"}}]"#);
            assert_eq!(apply_text(record, &ops), Err(BadPath(0)), "{path}");
        }
        check(r#"{"a": [1]}"#, r#"[{"op": "add", "path": "/a/1", "value": 2}]"#, Ok(r#"{"a": [1, 2]}"#));
        check(r#"{"a": [1]}"#, r#"[{"op": "add", "path": "/a/2", "value": 2}]"#, Err(BadPath(0)));
        check("{}", r#"[{"op": "add", "path": "/~01~10", "value": 1}]"#, Ok(r#"{"~1/0": 1}"#));
    }

    #[test]
    fn move_and_copy() {
        let record = r#"{"a": {"b": {}}}"#;
        check(record, r#"[{"op": "move", "from": "/a", "path": "/a/b/c"}]"#, Err(BadPath(0)));
        check(record, r#"[{"op": "move", "from": "/a", "path": "/a"}]"#, Ok(record));
        check(record, r#"[{"op": "move", "from": "/x", "path": "/x"}]"#, Err(BadPath(0)));
        check(record, r#"[{"op": "move", "from": "/a/b", "path": "/ab"}]"#, Ok(r#"{"a": {}, "ab": {}}"#));
        check(record, r#"[{"op": "copy", "from": "/a", "path": "/a/b/c"}]"#, Ok(r#"{"a": {"b": {"c": {"b": {}}}}}"#));
        check(record, r#"[{"op": "copy", "from": "/z", "path": "/y"}]"#, Err(BadPath(0)));
        // Each copy doubles the record: refused once the copies outgrow the input.
        let doubling = format!("[{}]", [r#"{"op": "copy", "from": "/a", "path": "/a/-"}"#; 100].join(","));
        assert!(matches!(apply_text(r#"{"a": [1]}"#, &doubling), Err(BadOperation(i)) if (5..20).contains(&i)));
        // Counted in bytes, not values: one 100 kB string doubled 15 times
        // would be 3 GB; the second copy already passes the record's size.
        let big = format!(r#"{{"a": ["{}"]}}"#, "B".repeat(100_000));
        let fifteen = format!("[{}]", [r#"{"op": "copy", "from": "/a", "path": "/a/-"}"#; 15].join(","));
        assert_eq!(apply_text(&big, &fifteen), Err(BadOperation(1)));
        assert!(apply_text(&big, r#"[{"op": "copy", "from": "/a", "path": "/a/-"}]"#).is_ok());
    }

    #[test]
    fn malformed_operations() {
        let bad = [
            r#"{"a": 1}"#,
            "1",
            r#"[{"op": "add", "path": "/x"}]"#,
            r#"[{"op": "nope", "path": "/x"}]"#,
            r#"[{"op": "remove", "path": 1}]"#,
            r#"[{"op": "copy", "path": "/x"}]"#,
            r#"[{"path": "/x"}]"#,
            r#"[{"op": "remove", "path": "/x", "p\u0061th": "/y"}]"#,
        ];
        for ops in bad {
            assert_eq!(apply_text(r#"{"x": 1}"#, ops), Err(BadOperation(0)), "{ops}");
        }
        check(r#"{"x": 1}"#, r#"[{"op": "test", "path": "/x", "value": 1}, "remove"]"#, Err(BadOperation(1)));
        // Only the op's own members count as duplicates.
        let nested = r#"[{"op": "add", "path": "/y", "value": {"k": 1, "k": 2}, "z": [{"q": ":"}]}]"#;
        check(r#"{"x": 1}"#, nested, Ok(r#"{"x": 1, "y": {"k": 2}}"#));
        assert_eq!(apply_text(r#"{"x": 1"#, "[]"), Err(MalformedJson));
        assert_eq!(apply_text("{}", "[{]"), Err(MalformedJson));
    }

    #[test]
    fn at_most_max_ops() {
        let ops = |n: usize| format!("[{}]", vec![r#"{"op": "test", "path": "/x", "value": 1}"#; n].join(","));
        assert!(apply_text(r#"{"x": 1}"#, &ops(MAX_OPS)).is_ok());
        assert_eq!(apply_text(r#"{"x": 1}"#, &ops(MAX_OPS + 1)), Err(BadOperation(MAX_OPS)));
    }

    #[test]
    fn depth_is_limited() {
        let nested = |levels: usize| format!("{}{}", "[".repeat(levels), "]".repeat(levels));
        let record = |levels: usize| format!(r#"{{"a":{}}}"#, nested(levels - 1));
        assert!(apply_text(&record(MAX_NESTING), "[]").is_ok());
        assert_eq!(apply_text(&record(MAX_NESTING + 1), "[]"), Err(TooDeep));
        let add = |levels: usize| format!(r#"[{{"op": "add", "path": "/a/0", "value": {}}}]"#, nested(levels));
        assert!(apply_text(&record(2), &add(MAX_NESTING - 2)).is_ok());
        assert_eq!(apply_text(&record(2), &add(MAX_NESTING - 1)), Err(TooDeep));
        assert_eq!(apply_text("{}", &add(10_000)), Err(TooDeep));
        let copy = r#"[{"op": "copy", "from": "/a", "path": "/a/0"}]"#;
        assert!(apply_text(&record(MAX_NESTING - 1), copy).is_ok());
        assert_eq!(apply_text(&record(MAX_NESTING), copy), Err(TooDeep));
    }

    #[test]
    fn numbers_compare_by_value() {
        for (a, b) in
            [("1", "1.0"), ("100", "1e2"), ("0.1E1", "10e-1"), ("-0", "0.0"), ("1.50", "15e-1"), ("-2", "-2.000")]
        {
            assert!(numbers_equal(a, b), "{a} {b}");
        }
        for (a, b) in
            [("1", "-1"), ("12345678901234567890123", "12345678901234567890124"), ("1e2", "1e3"), ("0.1", "0.01")]
        {
            assert!(!numbers_equal(a, b), "{a} {b}");
        }
        let record = r#"{"n": 1.0, "o": {"x": [1, 2.5], "y": null}}"#;
        check(record, r#"[{"op": "test", "path": "/n", "value": 1}]"#, Ok(record));
        check(record, r#"[{"op": "test", "path": "/o", "value": {"y": null, "x": [1.0, 25e-1]}}]"#, Ok(record));
        check(record, r#"[{"op": "test", "path": "/o", "value": {"x": [2.5, 1], "y": null}}]"#, Err(TestFailed(0)));
        let (out, _) =
            apply_text(r#"{"n": 123456789012345678901234567890.5}"#, r#"[{"op": "add", "path": "/m", "value": 1}]"#)
                .unwrap();
        assert!(out.contains("123456789012345678901234567890.5"), "{out}");
    }

    #[test]
    fn messages_never_carry_the_record_or_the_patch() {
        let record = r#"{"s3cr3t-value": "s3cr3t-value", "a": ["s3cr3t-value"]}"#;
        let patches = [
            r#"[{"op": "test", "path": "/s3cr3t-value", "value": "s3cr3t-value!"}]"#,
            r#"[{"op": "remove", "path": "/a/s3cr3t-value"}]"#,
            r#"[{"op": "s3cr3t-value", "path": "/a"}]"#,
            r#"[{"op": "replace", "path": "", "value": ["s3cr3t-value"]}]"#,
            r#"[{"op": "add", "path": "/s3cr3t-value", "value": "s3cr3t-value"]"#,
            r#"{"s3cr3t-value": 1}"#,
        ];
        let (open, close) = ("[".repeat(200), "]".repeat(200));
        let deep = format!(r#"[{{"op": "add", "path": "/b", "value": {open}"s3cr3t-value"{close}}}]"#);
        for ops in patches.iter().copied().chain([deep.as_str()]) {
            let err = apply_text(record, ops).unwrap_err();
            assert!(!err.to_string().contains("s3cr3t-value") && !format!("{err:?}").contains("s3cr3t-value"), "{err}");
        }
        assert_eq!(TestFailed(2).to_string(), "pii_vault: JSON Patch operation 2 failed its test");
    }

    // Small objects, two levels deep at most, with names that need escaping.
    fn small_object() -> impl Strategy<Value = Map<String, Value>> {
        let scalar = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(Value::from),
            "[a-z~/]{0,6}".prop_map(Value::String)
        ];
        let value = scalar.prop_recursive(2, 16, 4, |inner| {
            let object = prop::collection::btree_map("[a-c~/]{0,2}", inner.clone(), 0..4);
            prop_oneof![
                prop::collection::vec(inner, 0..4).prop_map(Value::Array),
                object.prop_map(|m| Value::Object(m.into_iter().collect()))
            ]
        });
        prop::collection::btree_map("[a-d~/]{0,3}", value, 0..5).prop_map(|m| m.into_iter().collect())
    }

    fn pointer_to(name: &str) -> String {
        format!("/{}", name.replace('~', "~0").replace('/', "~1"))
    }

    proptest! {
        #[test]
        fn add_then_remove_of_a_fresh_member_is_the_original(record in small_object(), value in any::<i32>()) {
            let fresh = (0..).map(|n| format!("fresh{n}")).find(|name| !record.contains_key(name)).unwrap();
            let ops = json!([{"op": "add", "path": pointer_to(&fresh), "value": value}, {"op": "remove", "path": pointer_to(&fresh)}]);
            let (out, names) = apply_text(&Value::Object(record.clone()).to_string(), &ops.to_string()).unwrap();
            prop_assert_eq!(serde_json::from_str::<Value>(&out).unwrap(), Value::Object(record));
            prop_assert_eq!(names, vec![fresh]);
        }

        #[test]
        fn every_member_tests_equal_to_itself(record in small_object()) {
            let text = Value::Object(record.clone()).to_string();
            for (name, value) in &record {
                let ops = json!([{"op": "test", "path": pointer_to(name), "value": value}]);
                let (out, names) = apply_text(&text, &ops.to_string()).unwrap();
                prop_assert_eq!(&out, &text);
                prop_assert!(names.is_empty());
            }
        }

        #[test]
        fn json_patch_never_panics(record in "\\PC{0,48}", ops in "\\PC{0,64}") {
            let _ = apply_text(&record, &ops);
            let _ = apply_text("{}", &ops);
        }
    }
}
