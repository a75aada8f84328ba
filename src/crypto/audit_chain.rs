//! Tamper evidence for the audit: each row carries
//! `mac_i = HMAC(audit key, mac_{i-1} ‖ encode(row_i))`, with an all-zero
//! `mac_0`. Without the key nobody can write a row whose MAC verifies, and
//! because each MAC covers its predecessor, an edited, deleted, inserted or
//! reordered row breaks the chain from that row on.

use hmac::Mac;

use super::keyring::{HmacSha256, KeyRing};

pub const GENESIS: [u8; 32] = [0u8; 32];

/// One audit row, as stored (the MAC input).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    pub id: i64,
    /// Microseconds since 2000-01-01 UTC (PostgreSQL's timestamptz).
    pub at: i64,
    pub session_role: String,
    pub acting_role: String,
    pub application_name: String,
    pub operation: String,
    pub token: Option<[u8; 16]>,
    pub fields: Option<Vec<String>>,
    pub outcome: String,
}

fn put_bytes(mac: &mut HmacSha256, bytes: &[u8]) {
    mac.update(&(bytes.len() as u64).to_be_bytes());
    mac.update(bytes);
}

/// The MAC of `row` following a row whose MAC was `previous`. Every field
/// is length-prefixed, so no two different rows encode alike.
pub fn chain_mac(ring: &KeyRing, previous: &[u8; 32], row: &AuditRecord) -> [u8; 32] {
    let mut mac: HmacSha256 = ring.audit_mac.clone();
    mac.update(b"pii_vault audit v1");
    mac.update(previous);
    mac.update(&row.id.to_be_bytes());
    mac.update(&row.at.to_be_bytes());
    put_bytes(&mut mac, row.session_role.as_bytes());
    put_bytes(&mut mac, row.acting_role.as_bytes());
    put_bytes(&mut mac, row.application_name.as_bytes());
    put_bytes(&mut mac, row.operation.as_bytes());
    match &row.token {
        Some(t) => put_bytes(&mut mac, t),
        None => mac.update(&u64::MAX.to_be_bytes()),
    }
    match &row.fields {
        Some(fields) => {
            mac.update(&(fields.len() as u64).to_be_bytes());
            for f in fields {
                put_bytes(&mut mac, f.as_bytes());
            }
        }
        None => mac.update(&u64::MAX.to_be_bytes()),
    }
    put_bytes(&mut mac, row.outcome.as_bytes());
    mac.finalize().into_bytes().into()
}

/// Result of checking a chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub ok: bool,
    pub rows_checked: i64,
    /// The id of the first row whose MAC does not verify (for a chain that
    /// was cut short, the id the next row should have had).
    pub first_bad_id: Option<i64>,
}

/// Walks rows in id order, checking each MAC and that ids run without gaps.
/// `expected_head`, when known, is the (id, mac) of a row the writer
/// committed (read before the rows): a chain that ends before it, or holds
/// another MAC at that id, lost rows at its end.
pub fn verify<'a>(
    ring: &KeyRing,
    rows: impl IntoIterator<Item = (&'a AuditRecord, &'a [u8])>,
    expected_head: Option<(i64, [u8; 32])>,
) -> Verdict {
    let mut previous = GENESIS;
    let mut last_id = 0i64;
    let mut checked = 0i64;
    for (row, stored_mac) in rows {
        checked += 1;
        let expected = chain_mac(ring, &previous, row);
        let head_differs = matches!(expected_head, Some((id, mac)) if id == row.id && mac != expected);
        if row.id != last_id + 1 || stored_mac != expected.as_slice() || head_differs {
            return Verdict { ok: false, rows_checked: checked, first_bad_id: Some(row.id.min(last_id + 1)) };
        }
        previous = expected;
        last_id = row.id;
    }
    if let Some((head_id, _)) = expected_head {
        if head_id > last_id {
            return Verdict { ok: false, rows_checked: checked, first_bad_id: Some(last_id + 1) };
        }
    }
    Verdict { ok: true, rows_checked: checked, first_bad_id: None }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ring() -> KeyRing {
        KeyRing::derive(&[5u8; 32])
    }

    fn row(id: i64) -> AuditRecord {
        AuditRecord {
            id,
            at: 1_000 + id,
            session_role: "app".into(),
            acting_role: "app".into(),
            application_name: "psql".into(),
            operation: "get".into(),
            token: Some([id as u8; 16]),
            fields: if id % 2 == 0 { Some(vec!["name".into()]) } else { None },
            outcome: "ok".into(),
        }
    }

    fn chain(ring: &KeyRing, n: i64) -> Vec<(AuditRecord, Vec<u8>)> {
        let mut prev = GENESIS;
        (1..=n)
            .map(|id| {
                let r = row(id);
                prev = chain_mac(ring, &prev, &r);
                (r, prev.to_vec())
            })
            .collect()
    }

    fn check(ring: &KeyRing, rows: &[(AuditRecord, Vec<u8>)], head: Option<(i64, [u8; 32])>) -> Verdict {
        verify(ring, rows.iter().map(|(r, m)| (r, m.as_slice())), head)
    }

    fn head(rows: &[(AuditRecord, Vec<u8>)]) -> Option<(i64, [u8; 32])> {
        rows.last().map(|(r, m)| (r.id, m.as_slice().try_into().unwrap()))
    }

    #[test]
    fn intact_chain_verifies() {
        let r = ring();
        let rows = chain(&r, 10);
        assert_eq!(check(&r, &rows, head(&rows)), Verdict { ok: true, rows_checked: 10, first_bad_id: None });
        assert!(check(&r, &[], None).ok);
    }

    #[test]
    fn edited_row_is_found() {
        let r = ring();
        let mut rows = chain(&r, 10);
        rows[4].0.outcome = "not_found".into();
        assert_eq!(check(&r, &rows, None).first_bad_id, Some(5));
    }

    #[test]
    fn deleted_row_is_found() {
        let r = ring();
        let mut rows = chain(&r, 10);
        rows.remove(3);
        assert_eq!(check(&r, &rows, None).first_bad_id, Some(4));
    }

    #[test]
    fn deleted_tail_is_found_with_the_head() {
        let r = ring();
        let mut rows = chain(&r, 10);
        let h = head(&rows);
        rows.truncate(7);
        assert!(check(&r, &rows, None).ok, "without the head, a cut tail looks like a short chain");
        assert_eq!(check(&r, &rows, h).first_bad_id, Some(8));
    }

    #[test]
    fn rows_after_the_known_head_are_fine() {
        let r = ring();
        let rows = chain(&r, 10);
        let h = head(&rows[..6]);
        assert!(check(&r, &rows, h).ok);
    }

    #[test]
    fn a_replaced_tail_differs_from_the_head() {
        // Delete the last rows and re-chain forged ones without the key: the
        // MACs fail anyway; with the key they would still differ at the head.
        let r = ring();
        let rows = chain(&r, 5);
        let h = head(&rows);
        let mut other = chain(&r, 5);
        other[4].0.outcome = "error".into();
        other[4].1 = chain_mac(&r, &other[3].1.as_slice().try_into().unwrap(), &other[4].0).to_vec();
        assert_eq!(check(&r, &other, h).first_bad_id, Some(5));
    }

    #[test]
    fn inserted_and_reordered_rows_are_found() {
        let r = ring();
        let mut rows = chain(&r, 10);
        rows.swap(2, 3);
        assert!(!check(&r, &rows, None).ok);
        let mut rows = chain(&r, 10);
        let mut forged = row(4);
        forged.operation = "delete".into();
        rows.insert(3, (forged, vec![0u8; 32]));
        assert_eq!(check(&r, &rows, None).first_bad_id, Some(4));
    }

    #[test]
    fn another_key_cannot_forge() {
        let rows = chain(&KeyRing::derive(&[6u8; 32]), 3);
        assert_eq!(check(&ring(), &rows, None).first_bad_id, Some(1));
    }

    proptest! {
        #[test]
        fn any_single_field_edit_is_found(n in 1i64..20, victim in any::<prop::sample::Index>(), field in 0usize..6) {
            let r = ring();
            let mut rows = chain(&r, n);
            let i = victim.index(rows.len());
            let target = &mut rows[i].0;
            match field {
                0 => target.at += 1,
                1 => target.session_role.push('x'),
                2 => target.acting_role = "postgres".into(),
                3 => target.token = None,
                4 => target.fields = Some(vec!["email".into()]),
                _ => target.application_name.clear(),
            }
            if rows[i].0 != row(i as i64 + 1) {
                prop_assert_eq!(check(&r, &rows, None).first_bad_id, Some(i as i64 + 1));
            }
        }
    }
}
