//! `time::parse_rfc3339` (timestamps from the engine and the API server):
//! never panics, and an instant it parses prints back (`format_rfc3339`) as
//! text that parses to the same instant, to the millisecond.
#![no_main]

use std::time::{Duration, UNIX_EPOCH};

use libfuzzer_sys::fuzz_target;
use xtm_composer::time::{format_rfc3339, parse_rfc3339};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Some(t) = parse_rfc3339(text) else { return };
    let since = t.duration_since(UNIX_EPOCH).expect("never before 1970");
    let millis = UNIX_EPOCH + Duration::from_millis(since.as_millis() as u64);
    let printed = format_rfc3339(t);
    assert_eq!(
        parse_rfc3339(&printed),
        Some(millis),
        "{text:?} printed as {printed}"
    );
});
