//! Workload names are DNS-1123 labels; image references split and rebuild.
//! The property check is `xtm_composer::fuzzing::names`, which the corpus
//! replay test shares.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Err(broken) = xtm_composer::fuzzing::names(data) {
        panic!("{broken}");
    }
});
