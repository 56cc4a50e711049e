//! The property checks of the fuzz targets of `fuzz/`, one function per
//! target: the fuzz targets call them (`scripts/fuzz.sh`), and a unit test
//! replays every committed corpus and regression input through them, so both
//! share one copy. Compiled only for fuzzing (`--cfg fuzzing`) and tests.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Value, json};

use crate::crypto::{Decryptor, Key};
use crate::orchestrator::kubernetes::Source;
use crate::orchestrator::kubernetes::connect::Connection;
use crate::orchestrator::kubernetes::manifest::{self, Shape};
use crate::orchestrator::{EnvValue, EnvVar, Spec};
use crate::platform::PlatformKind;
use crate::secret::Secret;

/// The fuzz targets: each has `fuzz/fuzz_targets/<name>.rs` calling the
/// function of the same name here, a corpus in `fuzz/corpus/<name>/`, and
/// maybe regression inputs in `fuzz/regressions/<name>/`.
pub const TARGETS: [&str; 10] = [
    "rfc3339",
    "log_stream",
    "pull_progress",
    "listings",
    "decrypt",
    "no_proxy",
    "names",
    "kubeconfig",
    "config_env",
    "base_deployment",
];

/// The check of fuzz target `target` on one input.
///
/// # Errors
/// The property that does not hold, or an unknown target.
pub fn check(target: &str, data: &[u8]) -> Result<(), String> {
    match target {
        "rfc3339" => rfc3339(data),
        "log_stream" => log_stream(data),
        "pull_progress" => pull_progress(data),
        "listings" => listings(data),
        "decrypt" => decrypt(data),
        "no_proxy" => no_proxy(data),
        "names" => names(data),
        "kubeconfig" => kubeconfig(data),
        "config_env" => config_env(data),
        "base_deployment" => base_deployment(data),
        _ => Err(format!("no fuzz target {target:?}")),
    }
}

/// `Err(message)` unless `cond` holds.
macro_rules! ensure {
    ($cond:expr, $($msg:tt)+) => {
        if !$cond {
            return Err(format!($($msg)+));
        }
    };
}

/// `time::parse_rfc3339` (timestamps from the engine and the API server):
/// an instant it parses prints back (`format_rfc3339`) as text that parses
/// to the same instant, to the millisecond.
///
/// # Errors
/// The property that does not hold.
pub fn rfc3339(data: &[u8]) -> Result<(), String> {
    use crate::time::{format_rfc3339, parse_rfc3339};
    let Ok(text) = std::str::from_utf8(data) else {
        return Ok(());
    };
    let Some(t) = parse_rfc3339(text) else {
        return Ok(());
    };
    let since = t
        .duration_since(UNIX_EPOCH)
        .map_err(|_| format!("{text:?} parsed as an instant before 1970"))?;
    let millis =
        u64::try_from(since.as_millis()).map_err(|_| format!("{text:?} parsed out of range"))?;
    let printed = format_rfc3339(t);
    ensure!(
        parse_rfc3339(&printed) == Some(UNIX_EPOCH + Duration::from_millis(millis)),
        "{text:?} printed as {printed}, which does not parse back to the same instant"
    );
    Ok(())
}

/// The Docker log stream reader (multiplexed frames, or raw with a TTY; the
/// first byte: TTY bit and how many lines to keep): at most `keep` lines,
/// none holding a line break.
///
/// # Errors
/// The property that does not hold.
pub fn log_stream(data: &[u8]) -> Result<(), String> {
    let Some((&flags, stream)) = data.split_first() else {
        return Ok(());
    };
    let tty = flags & 0x80 != 0;
    let keep = usize::from(flags & 0x7f);
    if let Ok(lines) = crate::orchestrator::docker::stream::read_log_lines(stream, tty, keep) {
        ensure!(lines.len() <= keep, "{} lines kept of {keep}", lines.len());
        ensure!(
            lines.iter().all(|l| !l.contains('\n')),
            "a line break in {lines:?}"
        );
    }
    Ok(())
}

/// The image pull progress reader: a stream without an error object passes;
/// a failure always says something.
///
/// # Errors
/// The property that does not hold.
pub fn pull_progress(data: &[u8]) -> Result<(), String> {
    if let Err(message) = crate::orchestrator::docker::client::pull_progress(data) {
        ensure!(
            data.windows(6).any(|w| w == b"\"error"),
            "failed without an error object: {message}"
        );
        ensure!(!message.trim().is_empty(), "a failure with no message");
    }
    Ok(())
}

/// The OpenCTI and OpenAEV listing parsers (the first byte picks one): every
/// entry is a connector or one explained skip; a connector has a non-empty
/// id, name and image, and non-empty configuration keys.
///
/// # Errors
/// The property that does not hold.
pub fn listings(data: &[u8]) -> Result<(), String> {
    let Some((&which, json)) = data.split_first() else {
        return Ok(());
    };
    let Ok(Value::Array(entries)) = serde_json::from_slice::<Value>(json) else {
        return Ok(());
    };
    let count = entries.len();
    let (connectors, problems) = if which & 1 == 0 {
        crate::platform::opencti_wire::listing(entries)
    } else {
        crate::platform::openaev_wire::listing(entries)
    };
    ensure!(
        connectors.len() + problems.len() == count,
        "{count} entries gave {} connectors and {problems:?}",
        connectors.len()
    );
    ensure!(
        problems.iter().all(|p| p.contains("skipped: ")),
        "unexplained problems: {problems:?}"
    );
    for c in &connectors {
        ensure!(
            !c.id.is_empty() && !c.name.is_empty() && !c.image.is_empty(),
            "a connector without id, name or image: {:?} {:?} {:?}",
            c.id,
            c.name,
            c.image
        );
        ensure!(
            c.config.iter().all(|e| !e.key.is_empty()),
            "an empty configuration key in {:?}",
            c.name
        );
    }
    Ok(())
}

/// The RSA 2048 test key and what its genuine values open to.
struct Known {
    decryptor: Decryptor,
    plaintext: String,
    /// The decoded bytes of the genuine encryption of "".
    empty: Vec<u8>,
}

fn known() -> Result<&'static Known, String> {
    static KNOWN: OnceLock<Result<Known, String>> = OnceLock::new();
    KNOWN
        .get_or_init(|| {
            let vectors: Value =
                serde_json::from_str(include_str!("../tests/fixtures/crypto-vectors.json"))
                    .map_err(|e| format!("crypto vectors: {e}"))?;
            let set = &vectors["rsa2048"];
            let field = |name: &str| {
                set[name]
                    .as_str()
                    .ok_or_else(|| format!("crypto vectors: no rsa2048.{name}"))
            };
            let key = Key::from_pem(field("private_key_pkcs8_pem")?)
                .map_err(|e| format!("crypto vectors: {e}"))?;
            Ok(Known {
                decryptor: Decryptor::new(key),
                plaintext: field("plaintext")?.to_string(),
                empty: BASE64
                    .decode(field("v2_empty_plaintext")?)
                    .map_err(|e| format!("crypto vectors: {e}"))?,
            })
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// Decryption of platform values (version byte, RSA block of the key's size,
/// AES-256-GCM): only a genuine value opens, to its exact plaintext; an empty
/// plaintext comes only from the genuine encryption of "" (D3: a failure never
/// becomes a blank). The first byte picks the form: the rest as base64 text,
/// or the rest as the decoded bytes (then base64-encoded here, so the fuzzer
/// works on the structure: version, block, lengths, tag).
///
/// # Errors
/// The property that does not hold.
pub fn decrypt(data: &[u8]) -> Result<(), String> {
    let Some((&form, rest)) = data.split_first() else {
        return Ok(());
    };
    let value = if form & 1 == 0 {
        String::from_utf8_lossy(rest).into_owned()
    } else {
        BASE64.encode(rest)
    };
    let k = known()?;
    if let Ok(plaintext) = k.decryptor.decrypt(&value) {
        let p = plaintext.expose();
        if p.is_empty() {
            ensure!(
                BASE64.decode(&value).ok().as_ref() == Some(&k.empty),
                "a blank from a forged value {value:?}"
            );
        } else {
            ensure!(p == k.plaintext, "a forged value opened: {value:?}");
        }
    }
    Ok(())
}

/// `no_proxy` matching (`http::matches_no_proxy`). Input: list, NUL, host,
/// NUL, port bytes. `*` matches everything; an empty list matches nothing; a
/// host is matched by itself; host case does not matter.
///
/// # Errors
/// The property that does not hold.
pub fn no_proxy(data: &[u8]) -> Result<(), String> {
    use crate::http::matches_no_proxy;
    let Ok(text) = std::str::from_utf8(data) else {
        return Ok(());
    };
    let mut parts = text.splitn(3, '\0');
    let (Some(list), Some(host)) = (parts.next(), parts.next()) else {
        return Ok(());
    };
    let port = parts.next().map_or(443, |p| {
        p.bytes()
            .fold(0u16, |a, b| a.wrapping_mul(31).wrapping_add(u16::from(b)))
    });
    let matched = matches_no_proxy(list, host, port);
    ensure!(
        matches_no_proxy("*", host, port),
        "* does not match {host:?}"
    );
    ensure!(
        !matches_no_proxy("", host, port),
        "an empty list matches {host:?}"
    );
    ensure!(
        matched == matches_no_proxy(list, &host.to_ascii_uppercase(), port),
        "case of {host:?} changed the answer for {list:?}"
    );
    let plain = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        && !host.starts_with('.')
        && !host.ends_with('.');
    if plain {
        ensure!(
            matches_no_proxy(host, host, port),
            "{host:?} does not match itself"
        );
        let extended = format!("{list},{host}");
        ensure!(
            matches_no_proxy(&extended, host, port),
            "{extended:?} does not match {host:?}"
        );
    }
    Ok(())
}

/// Workload names from connector names, and image reference splitting.
/// Input: prefix, NUL, name-or-image. A workload name is always a valid
/// Kubernetes DNS-1123 label and Docker container name, and naming it again
/// keeps it; `split_reference` gives back the reference it was given.
///
/// # Errors
/// The property that does not hold.
pub fn names(data: &[u8]) -> Result<(), String> {
    use crate::names::{MAX_NAME, workload_name};
    let Ok(text) = std::str::from_utf8(data) else {
        return Ok(());
    };
    let (prefix, name) = match text.split_once('\0') {
        Some((p, n)) => (Some(p), n),
        None => (None, text),
    };
    if let Some(w) = workload_name(prefix, name) {
        let is_label = (1..=MAX_NAME).contains(&w.len())
            && w.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !w.starts_with('-')
            && !w.ends_with('-');
        ensure!(is_label, "{w:?} from {prefix:?} {name:?} is not a label");
        ensure!(
            workload_name(None, &w).as_deref() == Some(w.as_str()),
            "{w:?} is not kept when named again"
        );
    }
    let (repo, tag) = crate::orchestrator::docker::image::split_reference(name);
    let rebuilt = if name.contains('@') {
        format!("{repo}@{tag}")
    } else if repo == name {
        ensure!(tag == "latest", "{name:?} without a tag got tag {tag:?}");
        name.to_string()
    } else {
        format!("{repo}:{tag}")
    };
    ensure!(rebuilt == name, "{name:?} split into {repo:?} and {tag:?}");
    Ok(())
}

/// A directory of this process for the files the checks read back; the
/// replay test removes it.
fn scratch() -> Result<&'static Path, String> {
    static DIR: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("xtm-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        std::fs::write(
            dir.join("default.yaml"),
            include_str!("../config/default.yaml"),
        )
        .map_err(|e| format!("{}: {e}", dir.display()))?;
        Ok(dir)
    })
    .as_deref()
    .map_err(Clone::clone)
}

/// Kubeconfig loading (`kubernetes::Source::Kubeconfig`, from a file): a
/// loaded connection names an http(s) server and a namespace.
///
/// # Errors
/// The property that does not hold.
pub fn kubeconfig(data: &[u8]) -> Result<(), String> {
    // One kubeconfig file per process: checks on several threads take turns.
    static FILE: Mutex<()> = Mutex::new(());
    let _turn = FILE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let path = scratch()?.join("kubeconfig");
    std::fs::write(&path, data).map_err(|e| format!("{}: {e}", path.display()))?;
    if let Ok(c) = Connection::open(&Source::Kubeconfig(vec![path])) {
        ensure!(
            c.server.starts_with("https://") || c.server.starts_with("http://"),
            "server {:?} is not an http(s) URL",
            c.server
        );
        ensure!(
            !c.server.ends_with('/'),
            "server {:?} ends with /",
            c.server
        );
        ensure!(!c.namespace.is_empty(), "an empty namespace");
    }
    Ok(())
}

/// Configuration from environment text (`config::load`, env `A__B__C`
/// coerced to typed values): a loaded configuration holds exactly the whole
/// number given for `MANAGER__EXECUTE_SCHEDULE` and the boolean given for
/// `MANAGER__DEBUG__SHOW_ENV_VARS` (names in any case; `true`/`yes`/`on`/`1`
/// and their opposites, in any case, as docs/configuration.md says), and
/// refuses the rest. Input: `KEY=value` lines.
///
/// # Errors
/// The property that does not hold.
pub fn config_env(data: &[u8]) -> Result<(), String> {
    let Ok(text) = std::str::from_utf8(data) else {
        return Ok(());
    };
    let env: Vec<(String, String)> = text
        .lines()
        .filter_map(|l| l.split_once('='))
        .filter(|(k, _)| *k != "COMPOSER_ENV")
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let last = |key: &str| {
        env.iter()
            .rev()
            .find(|(k, _)| k.to_lowercase() == key.to_lowercase())
            .map(|(_, v)| v.trim())
    };
    let Ok(loaded) = crate::config::load(Some(scratch()?), &env) else {
        return Ok(());
    };
    let m = &loaded.settings.manager;
    if let Some(v) = last("MANAGER__EXECUTE_SCHEDULE") {
        ensure!(
            v.parse::<u64>().ok() == Some(m.execute_schedule),
            "{v:?} loaded as execute_schedule {}",
            m.execute_schedule
        );
    }
    if let Some(v) = last("MANAGER__DEBUG__SHOW_ENV_VARS") {
        let want = match v.to_ascii_lowercase().as_str() {
            "true" | "yes" | "on" | "1" => Some(true),
            "false" | "no" | "off" | "0" => Some(false),
            _ => None,
        };
        ensure!(
            want == Some(m.debug.show_env_vars),
            "{v:?} loaded as show_env_vars {}",
            m.debug.show_env_vars
        );
    }
    Ok(())
}

/// The `base_deployment` merge (any JSON the operator may give): when the
/// base passes the start-up check, the Deployment keeps the connector
/// container first with its name and image, a selector of exactly the three
/// labels (also on the pod template), and the sensitive value only as a
/// Secret reference.
///
/// # Errors
/// The property that does not hold.
pub fn base_deployment(data: &[u8]) -> Result<(), String> {
    let Ok(base) = serde_json::from_slice::<Value>(data) else {
        return Ok(());
    };
    let spec = Spec {
        name: "fuzz-connector".into(),
        connector_id: "c1".into(),
        platform: PlatformKind::OpenCti,
        image: "opencti/connector-fuzz:1".into(),
        hash: "h1".into(),
        env: vec![
            EnvVar {
                key: "PLAIN".into(),
                value: EnvValue::Plain("visible".into()),
            },
            EnvVar {
                key: "API_KEY".into(),
                value: EnvValue::Sensitive(Secret::new("sensitive-value")),
            },
        ],
        start: true,
    };
    if manifest::check_base(&base).is_err() {
        return Ok(());
    }
    let shape = Shape {
        manager_id: "fuzz-manager".into(),
        pull_policy: "IfNotPresent".into(),
        resources: None,
        base: Some(base),
        pull_secret: Some("registry".into()),
        proxy_ca: true,
        plain_env: false,
    };
    let Ok(d) = manifest::deployment(&spec, &shape, &spec.image) else {
        return Ok(());
    };
    let labels = [
        ("opencti-connector-id", "c1"),
        ("opencti-manager", "fuzz-manager"),
        ("opencti-platform", "opencti"),
    ];
    let want: serde_json::Map<String, Value> = labels
        .iter()
        .map(|(k, v)| ((*k).to_string(), json!(v)))
        .collect();
    ensure!(
        d["spec"]["selector"] == json!({"matchLabels": want}),
        "selector {} in {d}",
        d["spec"]["selector"]
    );
    for (k, v) in labels {
        ensure!(
            d["spec"]["template"]["metadata"]["labels"][k] == v,
            "pod label {k} is not {v:?} in {d}"
        );
    }
    let first = &d["spec"]["template"]["spec"]["containers"][0];
    ensure!(
        first["name"] == spec.name.as_str() && first["image"] == spec.image.as_str(),
        "the first container is not the connector's: {first}"
    );
    let key = first["env"]
        .as_array()
        .and_then(|env| env.iter().find(|e| e["name"] == "API_KEY"))
        .ok_or_else(|| format!("no API_KEY in the env of {first}"))?;
    ensure!(
        key.get("value").is_none()
            && key["valueFrom"]["secretKeyRef"]["name"] == "fuzz-connector-env",
        "API_KEY is not a reference to the env Secret: {key}"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fuzz_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
    }

    /// The files of `fuzz/<kind>/<target>/`, sorted; none when it is missing.
    fn inputs(kind: &str, target: &str) -> Vec<PathBuf> {
        let dir = fuzz_dir().join(kind).join(target);
        let mut files: Vec<PathBuf> = match std::fs::read_dir(&dir) {
            Ok(entries) => entries.map(|e| e.unwrap().path()).collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => panic!("{}: {e}", dir.display()),
        };
        files.sort();
        files
    }

    /// Issue 12: every committed corpus and regression input keeps the
    /// properties its fuzz target checks (the same functions), so plain
    /// `cargo test` catches a regression without a nightly toolchain.
    #[test]
    fn every_committed_fuzz_input_keeps_its_properties() {
        let mut failures = Vec::new();
        let mut replayed = 0;
        for target in TARGETS {
            let corpus = inputs("corpus", target);
            assert!(!corpus.is_empty(), "fuzz/corpus/{target}/ is empty");
            for path in corpus.iter().chain(&inputs("regressions", target)) {
                let data = std::fs::read(path).unwrap();
                if let Err(e) = check(target, &data) {
                    failures.push(format!("{target}: {}: {e}", path.display()));
                }
                replayed += 1;
            }
        }
        if let Ok(dir) = scratch() {
            let _ = std::fs::remove_dir_all(dir);
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
        eprintln!("{replayed} fuzz inputs replayed");
    }

    /// The fuzz crate's targets, the corpora and the checks here name the
    /// same ten targets (a new target cannot miss its replay).
    #[test]
    fn every_fuzz_target_has_a_check_and_a_corpus() {
        let mut files: Vec<String> = std::fs::read_dir(fuzz_dir().join("fuzz_targets"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        files.sort();
        let mut want: Vec<String> = TARGETS.iter().map(|t| format!("{t}.rs")).collect();
        want.sort();
        assert_eq!(files, want);
        for target in TARGETS {
            let source = std::fs::read_to_string(
                fuzz_dir().join("fuzz_targets").join(format!("{target}.rs")),
            )
            .unwrap();
            assert!(
                source.contains(&format!("fuzzing::{target}(")),
                "fuzz/fuzz_targets/{target}.rs does not call fuzzing::{target}"
            );
        }
        for kind in ["corpus", "regressions"] {
            for entry in std::fs::read_dir(fuzz_dir().join(kind)).unwrap() {
                let name = entry.unwrap().file_name().to_string_lossy().into_owned();
                assert!(TARGETS.contains(&name.as_str()), "fuzz/{kind}/{name}/");
            }
        }
        assert!(check("no-such-target", b"").is_err());
    }
}
