//! The `base_deployment` merge: the connector container, selector and Secret
//! reference survive any accepted base.
//! The property check is `xtm_composer::fuzzing::base_deployment`, which the corpus
//! replay test shares.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Err(broken) = xtm_composer::fuzzing::base_deployment(data) {
        panic!("{broken}");
    }
});
