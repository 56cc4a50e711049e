//! The image pull progress reader: never panics; a stream without an error
//! object passes; a failure always says something.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let result = xtm_composer::fuzzing::pull_progress(data);
    let mentions_error = data.windows(6).any(|w| w == b"\"error");
    match result {
        Ok(()) => {}
        Err(message) => {
            assert!(mentions_error, "failed without an error object: {message}");
            assert!(!message.trim().is_empty(), "a failure with no message");
        }
    }
});
