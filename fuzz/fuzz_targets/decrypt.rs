//! Decryption of platform values (version byte, RSA block of the key's size,
//! AES-256-GCM): never panics, and only a genuine value opens, to its exact
//! plaintext; an empty plaintext comes only from the genuine encryption of
//! "" (D3: a failure never becomes a blank). The first byte picks the form: the rest as base64
//! text, or the rest as the decoded bytes (then base64-encoded here, so the
//! fuzzer works on the structure: version, block, lengths, tag).
#![no_main]

use std::sync::OnceLock;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use xtm_composer::crypto::{Decryptor, Key};

struct Known {
    decryptor: Decryptor,
    plaintext: String,
    /// The decoded bytes of the genuine encryption of "".
    empty: Vec<u8>,
}

fn known() -> &'static Known {
    static KNOWN: OnceLock<Known> = OnceLock::new();
    KNOWN.get_or_init(|| {
        let vectors: Value =
            serde_json::from_str(include_str!("../../tests/fixtures/crypto-vectors.json"))
                .expect("vectors");
        let set = &vectors["rsa2048"];
        let pem = set["private_key_pkcs8_pem"].as_str().expect("pem");
        let empty = set["v2_empty_plaintext"].as_str().expect("empty vector");
        Known {
            decryptor: Decryptor::new(Key::from_pem(pem).expect("key")),
            plaintext: set["plaintext"].as_str().expect("plaintext").to_string(),
            empty: BASE64.decode(empty).expect("base64"),
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&form, rest)) = data.split_first() else {
        return;
    };
    let value = if form & 1 == 0 {
        String::from_utf8_lossy(rest).into_owned()
    } else {
        BASE64.encode(rest)
    };
    let k = known();
    if let Ok(plaintext) = k.decryptor.decrypt(&value) {
        let p = plaintext.expose();
        if p.is_empty() {
            assert_eq!(
                BASE64.decode(&value).ok(),
                Some(k.empty.clone()),
                "a blank from a forged value"
            );
        } else {
            assert_eq!(p, k.plaintext, "a forged value opened");
        }
    }
});
