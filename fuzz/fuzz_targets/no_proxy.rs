//! `no_proxy` matching (`http::matches_no_proxy`). Input: list, NUL, host,
//! NUL, two port bytes. Never panics; `*` matches everything; an empty list
//! matches nothing; a host is matched by itself; host case does not matter.
#![no_main]

use libfuzzer_sys::fuzz_target;
use xtm_composer::http::matches_no_proxy;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut parts = text.splitn(3, '\0');
    let (Some(list), Some(host)) = (parts.next(), parts.next()) else {
        return;
    };
    let port = parts
        .next()
        .map(|p| {
            p.bytes()
                .fold(0u16, |a, b| a.wrapping_mul(31).wrapping_add(u16::from(b)))
        })
        .unwrap_or(443);
    let matched = matches_no_proxy(list, host, port);
    assert!(matches_no_proxy("*", host, port));
    assert!(!matches_no_proxy("", host, port));
    assert_eq!(
        matched,
        matches_no_proxy(list, &host.to_ascii_uppercase(), port),
        "case of {host:?} changed the answer for {list:?}"
    );
    let plain = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        && !host.starts_with('.')
        && !host.ends_with('.');
    if plain {
        assert!(
            matches_no_proxy(host, host, port),
            "{host:?} does not match itself"
        );
        let extended = format!("{list},{host}");
        assert!(
            matches_no_proxy(&extended, host, port),
            "{extended:?} vs {host:?}"
        );
    }
});
