//! The OpenCTI and OpenAEV listing parsers: a connector or an explained skip
//! per entry.
//! The property check is `xtm_composer::fuzzing::listings`, which the corpus
//! replay test shares.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Err(broken) = xtm_composer::fuzzing::listings(data) {
        panic!("{broken}");
    }
});
