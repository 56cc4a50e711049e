//! The real dockerd, seen from the Portainer and Swarm tests: raw engine calls
//! through curl (independent of the client under test), the readiness check,
//! spec builders and polling. Start the engine first:
//! `scripts/start-dockerd.sh && scripts/start-registry.sh && scripts/make-test-images.sh`.

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use xtm_composer::config::Registry;
use xtm_composer::orchestrator::{EnvValue, EnvVar, HASH_MARKER, Orchestrator, Spec, Workload};
use xtm_composer::platform::PlatformKind;
use xtm_composer::secret::Secret;

pub const TICKER: &str = "xtm-test/ticker:1";
pub const CRASHER: &str = "xtm-test/crasher:1";
pub const REGISTRY: &str = "127.0.0.1:5000";
pub const SETUP: &str = "run scripts/start-dockerd.sh, scripts/start-registry.sh and \
                         scripts/make-test-images.sh (as root)";

/// The engine's unix socket path (`DOCKER_HOST=unix://…`, else the default).
pub fn socket_path() -> String {
    std::env::var("DOCKER_HOST")
        .ok()
        .and_then(|h| h.strip_prefix("unix://").map(str::to_string))
        .unwrap_or_else(|| "/var/run/docker.sock".into())
}

/// `method path` on the engine (API 1.41), optional JSON body: status and body bytes.
pub fn engine(method: &str, path: &str, json: Option<&Value>) -> (u16, Vec<u8>) {
    let body = json.map(Value::to_string);
    call(&socket_path(), method, path, body.as_deref(), &[], 60)
}

/// One call on the engine at `socket` (API 1.41) through curl, independent of
/// the client under test: status (0 when unreachable) and body bytes.
pub fn call(
    socket: &str,
    method: &str,
    path: &str,
    body: Option<&str>,
    headers: &[(&str, &str)],
    max_secs: u32,
) -> (u16, Vec<u8>) {
    let mut cmd = Command::new("curl");
    cmd.args([
        "-sS",
        "--max-time",
        &max_secs.to_string(),
        "--unix-socket",
        socket,
    ])
    .args(["-X", method, "-o", "-", "-w", "\n%{http_code}"]);
    for (k, v) in headers {
        cmd.args(["-H", &format!("{k}: {v}")]);
    }
    if let Some(b) = body {
        cmd.args(["-H", "Content-Type: application/json", "--data-binary", b]);
    }
    let out = cmd
        .arg(format!("http://docker/v1.41{path}"))
        .output()
        .unwrap_or_else(|e| panic!("curl cannot run ({e}): {SETUP}"));
    let mut bytes = out.stdout;
    let split = bytes.iter().rposition(|b| *b == b'\n').unwrap_or(0);
    let code = String::from_utf8_lossy(&bytes[split..])
        .trim()
        .parse()
        .unwrap_or(0);
    bytes.truncate(split);
    (code, bytes)
}

/// Fails with the setup instructions unless the authenticated test registry
/// answers (401 without credentials).
pub fn require_registry() {
    let out = Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "5",
        ])
        .arg(format!("http://{REGISTRY}/v2/"))
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).to_string())
        .unwrap_or_default();
    assert_eq!(
        out, "401",
        "the authenticated registry on {REGISTRY} does not answer: {SETUP}"
    );
}

/// A `GET` that must answer 200 with JSON.
pub fn engine_json(path: &str) -> Value {
    let (code, body) = engine("GET", path, None);
    assert_eq!(code, 200, "GET {path}: {}", String::from_utf8_lossy(&body));
    serde_json::from_slice(&body).unwrap()
}

/// Fails with the setup instructions unless the engine answers and has the test images.
pub fn require_engine() {
    let (code, body) = engine("GET", "/_ping", None);
    assert!(
        code == 200 && body == b"OK",
        "no Docker engine on {} (status {code}): {SETUP}",
        socket_path()
    );
    for image in [TICKER, CRASHER] {
        let (code, _) = engine("GET", &format!("/images/{image}/json"), None);
        assert_eq!(code, 200, "test image {image} is missing: {SETUP}");
    }
}

/// Percent-encodes a query value.
pub fn query(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// `?filters=` selecting one manager's objects.
pub fn manager_filter(manager: &str) -> String {
    query(&format!("{{\"label\":[\"opencti-manager={manager}\"]}}"))
}

/// A manager id no other test (or concurrent test binary) uses.
pub fn unique(test: &str) -> String {
    format!("xtm-it-{test}-{}", std::process::id())
}

fn plain(key: &str, value: &str) -> EnvVar {
    EnvVar {
        key: key.into(),
        value: EnvValue::Plain(value.into()),
    }
}

/// Plain env entries.
pub fn vars(pairs: &[(&str, &str)]) -> Vec<EnvVar> {
    pairs.iter().map(|(k, v)| plain(k, v)).collect()
}

/// An OpenCTI connector spec; the hash marker is appended to `env` as the composer does.
pub fn spec(name: &str, image: &str, hash: &str, mut env: Vec<EnvVar>, start: bool) -> Spec {
    env.push(plain(HASH_MARKER, hash));
    Spec {
        name: name.into(),
        connector_id: format!("id-{name}"),
        platform: PlatformKind::OpenCti,
        image: image.into(),
        hash: hash.into(),
        env,
        start,
    }
}

/// The test registry and its credentials (`CIREG_AUTH=1 scripts/start-registry.sh`).
pub fn test_registry() -> Registry {
    Registry {
        server: Some(REGISTRY.into()),
        username: Some("ci".into()),
        password: Some(Secret::new("ci-pass")),
        email: None,
    }
}

/// Deploys five ticker connectors `{manager}-a` … `-e` with hash `h1`: the
/// first three asked to run, the last two to stay stopped. Returns their names.
pub fn deploy_five(orchestrator: &dyn Orchestrator, manager: &str) -> Vec<String> {
    let names: Vec<String> = ["a", "b", "c", "d", "e"]
        .iter()
        .map(|n| format!("{manager}-{n}"))
        .collect();
    for (i, name) in names.iter().enumerate() {
        let env = vars(&[("CONNECTOR_NAME", name), ("URL", "http://x/?a=b=c")]);
        orchestrator
            .deploy(&spec(name, TICKER, "h1", env, i < 3))
            .unwrap();
    }
    names
}

/// The workload named `name` in a listing.
pub fn named<'a>(list: &'a [Workload], name: &str) -> &'a Workload {
    list.iter()
        .find(|w| w.name == name)
        .unwrap_or_else(|| panic!("{name} is not in {list:?}"))
}

/// Asks `check` every 250 ms until it answers, failing after `limit`.
pub fn eventually<T>(limit: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(found) = check() {
            return found;
        }
        assert!(start.elapsed() < limit, "{what}: not seen within {limit:?}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Ticker output as the engine logs it: `tick N out` / `tick N err`, nothing else.
pub fn assert_clean_ticker_lines(lines: &[String]) {
    assert!(lines.iter().any(|l| l.ends_with(" out")), "{lines:?}");
    assert!(lines.iter().any(|l| l.ends_with(" err")), "{lines:?}");
    for line in lines {
        let words: Vec<&str> = line.split(' ').collect();
        assert!(
            words.len() == 3
                && words[0] == "tick"
                && words[1].parse::<u64>().is_ok()
                && matches!(words[2], "out" | "err"),
            "not a clean log line: {line:?}"
        );
    }
}

/// What `xtm-composer check` prints with the shipped `config/default.yaml`,
/// a clean environment and `env` (the engine's `DOCKER_HOST` passed on).
pub fn check_output(test: &str, env: &[(&str, &str)]) -> String {
    let dir = std::env::temp_dir().join(format!("{}-config", unique(test)));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy("config/default.yaml", dir.join("default.yaml")).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_xtm-composer"));
    cmd.args(["check", "--config", dir.to_str().unwrap()])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    if let Ok(host) = std::env::var("DOCKER_HOST") {
        cmd.env("DOCKER_HOST", host);
    }
    let out = cmd.envs(env.iter().copied()).output().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}
