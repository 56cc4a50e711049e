//! `time::parse_rfc3339`: a parsed instant prints back as text that parses
//! to the same instant.
//! The property check is `xtm_composer::fuzzing::rfc3339`, which the corpus
//! replay test shares.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Err(broken) = xtm_composer::fuzzing::rfc3339(data) {
        panic!("{broken}");
    }
});
