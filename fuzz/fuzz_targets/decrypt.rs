//! Decryption of platform values: only a genuine value opens, to its plaintext.
//! The property check is `xtm_composer::fuzzing::decrypt`, which the corpus
//! replay test shares.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Err(broken) = xtm_composer::fuzzing::decrypt(data) {
        panic!("{broken}");
    }
});
