//! Workload names from connector names, and image reference splitting.
//! Input: prefix, NUL, name-or-image. A workload name is always a valid
//! Kubernetes DNS-1123 label and Docker container name, and naming it again
//! keeps it; `split_reference` gives back the reference it was given.
#![no_main]

use libfuzzer_sys::fuzz_target;
use xtm_composer::fuzzing::split_reference;
use xtm_composer::names::{MAX_NAME, workload_name};

fn is_label(n: &str) -> bool {
    (1..=MAX_NAME).contains(&n.len())
        && n.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !n.starts_with('-')
        && !n.ends_with('-')
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (prefix, name) = match text.split_once('\0') {
        Some((p, n)) => (Some(p), n),
        None => (None, text),
    };
    if let Some(w) = workload_name(prefix, name) {
        assert!(is_label(&w), "{w:?} from {prefix:?} {name:?}");
        assert_eq!(workload_name(None, &w).as_deref(), Some(w.as_str()));
    }
    let (repo, tag) = split_reference(name);
    let rebuilt = if name.contains('@') {
        format!("{repo}@{tag}")
    } else if repo == name {
        assert_eq!(tag, "latest", "{name:?}");
        name.to_string()
    } else {
        format!("{repo}:{tag}")
    };
    assert_eq!(rebuilt, name, "split into {repo:?} and {tag:?}");
});
