//! `no_proxy` matching: `*`, empty list, a host matching itself, host case.
//! The property check is `xtm_composer::fuzzing::no_proxy`, which the corpus
//! replay test shares.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Err(broken) = xtm_composer::fuzzing::no_proxy(data) {
        panic!("{broken}");
    }
});
