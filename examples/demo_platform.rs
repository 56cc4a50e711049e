//! A local demo platform for `scripts/run.sh`'s first run (issue 14): an OpenCTI stand-in
//! (the tests' fake, `tests/common/fake_opencti.rs`) serving three connectors, each with
//! a setting encrypted with the key the composer registers, as OpenCTI does. It prints what
//! the platform sees: registration, each connector's status, the first log lines shipped.
//! Not part of the shipped binary; loopback only; development use only.
//!
//! Usage: demo_platform URL_FILE [TOKEN]   (writes its URL to URL_FILE once listening)

#[allow(dead_code)]
#[path = "../tests/common/fake_opencti.rs"]
mod fake_opencti;
#[allow(dead_code)]
#[path = "../tests/common/http1.rs"]
mod http1;
#[allow(dead_code)]
#[path = "../tests/common/tls.rs"]
mod tls;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use aes_gcm::aead::Aead;
use aes_gcm::{Aes256Gcm, KeyInit, Nonce};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use rsa::Generate;
use rsa::pkcs1::DecodeRsaPublicKey;
use sha2::Sha256;

use fake_opencti::{FakeOpenCti, connector};

/// The demo connectors: the local ticker image logs a line a second on stdout and stderr.
const CONNECTORS: [(&str, &str); 3] = [
    ("a1b2c3d4-0000-4000-8000-000000000001", "demo-feed-alpha"),
    ("a1b2c3d4-0000-4000-8000-000000000002", "demo-feed-beta"),
    ("a1b2c3d4-0000-4000-8000-000000000003", "demo-enrichment"),
];
const IMAGE: &str = "xtm-test/ticker:1";

fn say(line: &str) {
    println!("demo: {line}");
}

/// OpenCTI's hybrid encryption (version 2: RSA-OAEP SHA-256 around an AES-256-GCM key
/// and IV), with the manager's registered public key.
fn encrypt(public_pkcs1_pem: &str, plaintext: &str) -> Result<String, String> {
    let public = rsa::PublicKey::from_pkcs1_pem(public_pkcs1_pem).map_err(|e| e.to_string())?;
    let aes_key = <[u8; 32]>::generate();
    let iv = <[u8; 12]>::generate();
    let sealed = Aes256Gcm::new_from_slice(&aes_key)
        .map_err(|e| e.to_string())?
        .encrypt(&Nonce::from(iv), plaintext.as_bytes())
        .map_err(|e| e.to_string())?;
    let wrapped = public
        .oaep_encrypt::<Sha256>(&[&aes_key[..], &iv[..]].concat())
        .map_err(|e| e.to_string())?;
    Ok(BASE64.encode([&[2u8][..], &wrapped, &sealed].concat()))
}

fn main() -> Result<(), String> {
    let mut args = std::env::args().skip(1);
    let url_file = args.next().ok_or("usage: demo_platform URL_FILE [TOKEN]")?;
    let token = args.next().unwrap_or_else(|| "demo-token".into());
    let platform = FakeOpenCti::start(&token);
    std::fs::write(&url_file, platform.url()).map_err(|e| format!("{url_file}: {e}"))?;
    say(&format!(
        "OpenCTI stand-in at {} (token {token}); waiting for the composer to register",
        platform.url()
    ));
    let key = loop {
        if let Some(key) = platform.registered_key() {
            break key;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let manager = platform.registered_manager().unwrap_or_default();
    let mut list = Vec::new();
    for (id, name) in CONNECTORS {
        let secret = encrypt(&key, &format!("demo-api-key-for-{name}"))?;
        let config = vec![
            ("CONNECTOR_NAME", name, false),
            ("CONNECTOR_LOG_LEVEL", "info", false),
            ("DEMO_API_KEY", secret.as_str(), true),
        ];
        list.push(connector(
            id,
            name,
            IMAGE,
            "demo-hash-1",
            "starting",
            config,
        ));
    }
    platform.set_connectors(list);
    say(&format!(
        "manager {manager} registered; serving {} connectors (image {IMAGE}), each with \
         DEMO_API_KEY encrypted with the key it registered",
        CONNECTORS.len()
    ));
    watch(&platform);
    Ok(())
}

/// Prints each change the composer reports, until killed.
fn watch(platform: &FakeOpenCti) {
    let started = Instant::now();
    let mut seen: BTreeMap<&str, (Option<String>, bool, bool)> = BTreeMap::new();
    let mut all_started = false;
    loop {
        for (id, name) in CONNECTORS {
            let entry = seen.entry(name).or_insert((None, false, false));
            let status = platform.current_status(id);
            if status != entry.0 {
                if let Some(s) = &status {
                    say(&format!("connector {name}: {s}"));
                }
                entry.0 = status;
            }
            if let Some(lines) = platform.logs(id).filter(|l| !l.is_empty())
                && !entry.1
            {
                entry.1 = true;
                let last = lines.last().map(String::as_str).unwrap_or_default();
                say(&format!(
                    "connector {name}: logs shipped ({} lines, last: {last:?})",
                    lines.len()
                ));
            }
            if platform.health(id).is_some() && !entry.2 {
                entry.2 = true;
                say(&format!("connector {name}: health reported"));
            }
        }
        let running = seen
            .values()
            .filter(|(s, ..)| s.as_deref() == Some("started"));
        if !all_started && running.count() == CONNECTORS.len() {
            all_started = true;
            say(&format!(
                "{} connectors started after {} s. They are containers on the local engine \
                 (docker ps); DEMO_API_KEY was decrypted by the composer.",
                CONNECTORS.len(),
                started.elapsed().as_secs()
            ));
            say(
                "for a real platform: OPENCTI__URL=https://opencti.example.com \
                 OPENCTI__TOKEN=<token> scripts/run.sh",
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}
