//! The Docker log stream reader: at most `keep` lines, none with a line break.
//! The property check is `xtm_composer::fuzzing::log_stream`, which the corpus
//! replay test shares.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Err(broken) = xtm_composer::fuzzing::log_stream(data) {
        panic!("{broken}");
    }
});
