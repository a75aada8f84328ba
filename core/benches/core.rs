//! Micro-benchmark of the vault's core, without PostgreSQL:
//!   cargo bench --bench core
//! Per 1 KB record: seal (data key + AES-256-GCM + wrap) plus three blind
//! index HMACs, and open (unwrap + decrypt), next to raw AES-256-GCM of the
//! same bytes under a ready key, straight from ring, the crate the vault's
//! AES-256-GCM comes from (the floor).

use std::hint::black_box;
use std::time::{Duration, Instant};

use pii_vault_core::crypto::blind_index::blind_index;
use pii_vault_core::crypto::envelope::{open_into, seal, PayloadEncoding};
use pii_vault_core::crypto::KeySet;
use pii_vault_core::normalize::{normalize, parse_region, IndexedKind};
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};

fn time_per_op(mut f: impl FnMut()) -> Duration {
    // Warm up, then take the best of 5 batches (least disturbed by noise).
    for _ in 0..2_000 {
        f();
    }
    let iterations = 20_000u32;
    (0..5)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..iterations {
                f();
            }
            start.elapsed() / iterations
        })
        .min()
        .unwrap()
}

fn main() {
    let set = KeySet::new([(1, &[42u8; 32])], None).expect("one version");
    let keys = set.active();
    let token = [7u8; 16];
    let record = vec![b'x'; 1024];

    let raw = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &[1u8; 32]).unwrap());
    let mut buf = record.clone();
    let raw_encrypt = time_per_op(|| {
        buf.copy_from_slice(&record);
        let nonce = Nonce::assume_unique_for_key([0u8; 12]);
        let _tag = black_box(raw.seal_in_place_separate_tag(nonce, Aad::empty(), &mut buf).unwrap());
    });

    // The floor for a key per record: the same encryption, with the key
    // schedule (AES round keys and GHASH key) set up each time.
    let raw_encrypt_new_key = time_per_op(|| {
        let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, black_box(&[1u8; 32])).unwrap());
        buf.copy_from_slice(&record);
        let nonce = Nonce::assume_unique_for_key([0u8; 12]);
        let _tag = black_box(key.seal_in_place_separate_tag(nonce, Aad::empty(), &mut buf).unwrap());
    });

    let store = time_per_op(|| {
        let sealed = seal(keys, &token, PayloadEncoding::JsonbBinary, black_box(&record)).unwrap();
        black_box(sealed);
        for (kind, value) in [
            (IndexedKind::Email, "customer.number.12345@example.com"),
            (IndexedKind::Phone, "+14152012345"),
            (IndexedKind::Login, "customer12345"),
        ] {
            black_box(blind_index(keys, kind, value));
        }
    });
    let seal_only = time_per_op(|| {
        black_box(seal(keys, &token, PayloadEncoding::JsonbBinary, black_box(&record)).unwrap());
    });

    let sealed = seal(keys, &token, PayloadEncoding::JsonbBinary, &record).unwrap();
    // Into memory the caller owns, as vault_get decrypts straight into the
    // datum it returns.
    let mut out = vec![0u8; record.len()];
    let get = time_per_op(|| {
        black_box(open_into(&set, &token, black_box(&sealed), &mut out).unwrap());
    });
    assert_eq!(out, record);

    // Normalizing the indexed values of a store, as vault_store does before
    // hashing them (not part of the 2x target: no AES-GCM counterpart).
    let region = parse_region("US").unwrap();
    let normalize_email = time_per_op(|| {
        black_box(normalize(IndexedKind::Email, black_box(" Customer.Number.12345@Example.com "), region).unwrap());
    });
    // Non-ASCII takes the whole fold (NFKC, case fold, NFKC) and the
    // script check; ASCII its lowercase shortcut.
    let normalize_email_unicode = time_per_op(|| {
        black_box(normalize(IndexedKind::Email, black_box(" Ｊosé.Müller.12345@Example.com "), region).unwrap());
    });
    let normalize_login_unicode = time_per_op(|| {
        black_box(normalize(IndexedKind::Login, black_box("Ｓtraße-Müller"), region).unwrap());
    });
    let normalize_phone_e164 = time_per_op(|| {
        black_box(normalize(IndexedKind::Phone, black_box("+14152012345"), region).unwrap());
    });
    let normalize_phone_spaced = time_per_op(|| {
        black_box(normalize(IndexedKind::Phone, black_box("+1 415 2012345"), region).unwrap());
    });

    let us = |d: Duration| d.as_nanos() as f64 / 1000.0;
    println!("| 1 KB record | µs per op | × raw AES-256-GCM | × raw with its key schedule |");
    println!("| --- | --- | --- | --- |");
    let row = |name: &str, d: Duration| {
        println!("| {name} | {:.2} | {:.2} | {:.2} |", us(d), us(d) / us(raw_encrypt), us(d) / us(raw_encrypt_new_key));
    };
    row("raw AES-256-GCM encrypt (ready key, the floor)", raw_encrypt);
    row("raw AES-256-GCM encrypt, key schedule set up first", raw_encrypt_new_key);
    row("seal: new data key, encrypt, wrap", seal_only);
    row("store: seal + 3 blind-index HMACs", store);
    row("get: unwrap + decrypt", get);
    println!();
    println!("| normalizing a lookup value | µs per op |");
    println!("| --- | --- |");
    println!("| email | {:.2} |", us(normalize_email));
    println!("| email, non-ASCII local part | {:.2} |", us(normalize_email_unicode));
    println!("| login, non-ASCII | {:.2} |", us(normalize_login_unicode));
    println!("| phone, already E.164 | {:.2} |", us(normalize_phone_e164));
    println!("| phone, with spaces | {:.2} |", us(normalize_phone_spaced));
}
