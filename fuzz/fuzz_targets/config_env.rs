//! Config from env text: typed values are exactly what was given, or refused.
//! The property check is `xtm_composer::fuzzing::config_env`, which the corpus
//! replay test shares.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Err(broken) = xtm_composer::fuzzing::config_env(data) {
        panic!("{broken}");
    }
});
