//! The OpenCTI and OpenAEV listing parsers (the first byte picks one): never
//! panic; every entry is a connector or one explained skip; a connector has
//! a non-empty id, name and image, and non-empty configuration keys.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use xtm_composer::fuzzing::{openaev_listing, opencti_listing};

fuzz_target!(|data: &[u8]| {
    let Some((&which, json)) = data.split_first() else {
        return;
    };
    let Ok(Value::Array(entries)) = serde_json::from_slice::<Value>(json) else {
        return;
    };
    let count = entries.len();
    let (connectors, problems) = if which & 1 == 0 {
        opencti_listing(entries)
    } else {
        openaev_listing(entries)
    };
    assert_eq!(connectors.len() + problems.len(), count, "{problems:?}");
    assert!(
        problems.iter().all(|p| p.contains("skipped: ")),
        "{problems:?}"
    );
    for c in &connectors {
        assert!(!c.id.is_empty() && !c.name.is_empty() && !c.image.is_empty());
        assert!(c.config.iter().all(|e| !e.key.is_empty()));
    }
});
