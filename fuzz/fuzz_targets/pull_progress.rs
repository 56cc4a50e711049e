//! The image pull progress reader: only an error object fails it, with a message.
//! The property check is `xtm_composer::fuzzing::pull_progress`, which the corpus
//! replay test shares.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Err(broken) = xtm_composer::fuzzing::pull_progress(data) {
        panic!("{broken}");
    }
});
