//! Kubeconfig loading: a loaded connection has an http(s) server and a namespace.
//! The property check is `xtm_composer::fuzzing::kubeconfig`, which the corpus
//! replay test shares.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Err(broken) = xtm_composer::fuzzing::kubeconfig(data) {
        panic!("{broken}");
    }
});
