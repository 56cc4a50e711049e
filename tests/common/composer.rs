//! Drives the real `xtm-composer` binary for the end-to-end tests and the
//! benchmark: a config folder plus `A__B__C` variables, the child process with
//! stderr captured to a file, signals through `kill`, polling with deadlines,
//! a Docker Engine API helper over `curl --unix-socket` (independent of the
//! client under test), a second dockerd, and a request-counting unix-socket forwarder.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use super::engine::query;

/// The binary under test; `XTM_COMPOSER_BIN` overrides it (the benchmark's release build).
pub fn binary() -> PathBuf {
    std::env::var_os("XTM_COMPOSER_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_xtm-composer")))
}

/// The engine every test and helper shares.
pub const DEFAULT_SOCKET: &str = "/var/run/docker.sock";
/// The authenticated registry of `scripts/start-registry.sh`.
pub const REGISTRY: &str = "127.0.0.1:5000";
pub const REGISTRY_USER: &str = "ci";
pub const REGISTRY_PASSWORD: &str = "ci-pass";
pub const SETUP: &str = "run scripts/start-dockerd.sh, scripts/start-registry.sh and scripts/make-test-images.sh (as root)";

/// A fresh folder `/tmp/xtm-e2e-{name}-{pid}`, removed when dropped unless
/// the test is failing (its logs are then kept for reading).
pub fn scratch(name: &str) -> Scratch {
    let d = std::env::temp_dir().join(format!("xtm-e2e-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    Scratch(d)
}

pub struct Scratch(pub PathBuf);

impl std::ops::Deref for Scratch {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if thread::panicking() {
            eprintln!("test files kept in {}", self.0.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// The workload name rule of the existing composer (CONTRACT §5.1): every
/// non-alphanumeric character becomes `-`, then lowercase. Written here from
/// the contract, independently of `src/names.rs`.
pub fn existing_name(connector_name: &str) -> String {
    connector_name
        .chars()
        .map(|c| if c.is_alphanumeric() { c } else { '-' })
        .collect::<String>()
        .to_lowercase()
}

/// Seconds since the epoch, as the engine's `since`/`until` take them.
pub fn epoch_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// The shared crypto test vectors (CONTRACT §4.8).
pub fn vectors() -> Value {
    serde_json::from_str(include_str!("../fixtures/crypto-vectors.json")).unwrap()
}

/// A config folder and the variables of one composer run.
#[derive(Clone)]
pub struct Setup {
    pub dir: PathBuf,
    pub env: Vec<(String, String)>,
}

impl Setup {
    /// `dir/config/default.yaml` (a copy of the shipped one) and the variables
    /// that point the composer at `fake_url` and the Docker engine at `socket`.
    pub fn new(dir: &Path, fake_url: &str, token: &str, manager: &str, socket: &str) -> Setup {
        let config = dir.join("config");
        std::fs::create_dir_all(&config).unwrap();
        let shipped = concat!(env!("CARGO_MANIFEST_DIR"), "/config/default.yaml");
        std::fs::copy(shipped, config.join("default.yaml")).unwrap();
        let setup = Setup {
            dir: dir.to_path_buf(),
            env: Vec::new(),
        };
        setup
            .var("OPENCTI__URL", fake_url)
            .var("OPENCTI__TOKEN", token)
            .var("OPENCTI__DAEMON__SELECTOR", "docker")
            .var("OPENCTI__DAEMON__DOCKER__HOST", &format!("unix://{socket}"))
            // No bridge on this machine (start-dockerd.sh): loopback only.
            .var("OPENCTI__DAEMON__DOCKER__NETWORK_MODE", "none")
            .var("MANAGER__ID", manager)
            .var("MANAGER__EXECUTE_SCHEDULE", "1")
            .var("MANAGER__PING_ALIVE_SCHEDULE", "2")
            // Short, so removals are seen within the tests' deadlines, yet
            // never zero: the grace path runs in every end-to-end test.
            .var("MANAGER__REMOVAL_GRACE", "3")
            .var("OPENCTI__LOGS_SCHEDULE", "2")
            .var("MANAGER__LOGGER__LEVEL", "trace")
    }

    /// Sets (or replaces) one variable.
    pub fn var(mut self, key: &str, value: &str) -> Setup {
        self.env.retain(|(k, _)| k != key);
        self.env.push((key.to_string(), value.to_string()));
        self
    }

    /// Writes `pem` to `dir/key.pem` (0600) and points the composer at it.
    pub fn key(self, pem: &str) -> Setup {
        let path = self.dir.join("key.pem");
        std::fs::write(&path, pem).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let path = path.to_str().unwrap().to_string();
        self.var("MANAGER__CREDENTIALS_KEY_FILEPATH", &path)
    }

    /// The authenticated local registry as `opencti.daemon.registry`.
    pub fn registry(self) -> Setup {
        self.var("OPENCTI__DAEMON__REGISTRY__SERVER", REGISTRY)
            .var("OPENCTI__DAEMON__REGISTRY__USERNAME", REGISTRY_USER)
            .var("OPENCTI__DAEMON__REGISTRY__PASSWORD", REGISTRY_PASSWORD)
    }

    /// Enables OpenAEV beside OpenCTI: `fake_url`, `token`, the Docker engine
    /// at `socket` (its own `openaev.daemon.docker` section) and a 2 s log schedule.
    pub fn openaev(self, fake_url: &str, token: &str, socket: &str) -> Setup {
        self.var("OPENAEV__ENABLE", "true")
            .var("OPENAEV__URL", fake_url)
            .var("OPENAEV__TOKEN", token)
            .var("OPENAEV__DAEMON__SELECTOR", "docker")
            .var("OPENAEV__DAEMON__DOCKER__HOST", &format!("unix://{socket}"))
            .var("OPENAEV__DAEMON__DOCKER__NETWORK_MODE", "none")
            .var("OPENAEV__LOGS_SCHEDULE", "2")
    }

    /// Starts `xtm-composer run --config dir/config` with only these variables
    /// (and PATH); stderr goes to `dir/{label}.log`.
    pub fn spawn(&self, label: &str) -> Composer {
        let log = self.dir.join(format!("{label}.log"));
        let file = std::fs::File::create(&log).unwrap();
        let mut cmd = Command::new(binary());
        cmd.arg("run")
            .arg("--config")
            .arg(self.dir.join("config"))
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary().display()));
        Composer {
            child,
            log,
            exit: None,
        }
    }
}

/// A running composer; killed with SIGKILL if still running when dropped.
pub struct Composer {
    child: Child,
    /// Its stdout and stderr.
    pub log: PathBuf,
    exit: Option<ExitStatus>,
}

impl Composer {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything it wrote so far.
    pub fn output(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.log).unwrap_or_default()).into_owned()
    }

    /// The last `n` lines it wrote, for failure messages.
    pub fn tail(&self, n: usize) -> String {
        let text = self.output();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// True until the process has exited.
    pub fn is_running(&mut self) -> bool {
        if self.exit.is_none() {
            self.exit = self.child.try_wait().unwrap();
        }
        self.exit.is_none()
    }

    /// Sends `signal` (`TERM`, `KILL`, ...) with the `kill` command.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args(["-s", signal, &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -s {signal} {}", self.pid());
    }

    /// SIGTERM: exit status 0 within 2 s (CONTRACT §8.7, DESIGN 7); returns how long it took.
    pub fn terminate_ok(&mut self) -> Duration {
        let (status, took) = self.terminate(Duration::from_secs(2));
        let tail = self.tail(20);
        let status =
            status.unwrap_or_else(|| panic!("still running {took:?} after SIGTERM:\n{tail}"));
        assert_eq!(status.code(), Some(0), "exit after SIGTERM:\n{tail}");
        took
    }

    /// Waits at most `limit` for the exit; `None` if it still runs.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        while self.is_running() && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(20));
        }
        self.exit
    }

    /// SIGTERM, then the exit status and how long the exit took (`None`: not within `limit`).
    pub fn terminate(&mut self, limit: Duration) -> (Option<ExitStatus>, Duration) {
        let t = Instant::now();
        self.signal("TERM");
        let status = self.wait_exit(limit);
        (status, t.elapsed())
    }

    /// SIGKILL and reap.
    pub fn kill9(&mut self) {
        if self.is_running() {
            self.signal("KILL");
            self.exit = Some(self.child.wait().unwrap());
        }
    }

    /// `wait_until`, with the composer's last lines in the failure message.
    pub fn wait_until<T>(
        &mut self,
        limit: Duration,
        what: &str,
        mut check: impl FnMut() -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(v) = check() {
                return v;
            }
            let alive = self.is_running();
            if !alive || Instant::now() >= deadline {
                panic!(
                    "{} waiting for {what}; composer {}; its last lines:\n{}",
                    if alive { "timed out" } else { "gave up" },
                    if alive {
                        "running".to_string()
                    } else {
                        format!("exited with {:?}", self.exit)
                    },
                    self.tail(40)
                );
            }
            thread::sleep(Duration::from_millis(200));
        }
    }

    /// `(utime + stime)` in clock ticks and `VmRSS`, `VmHWM` in KiB, from /proc.
    pub fn usage(&self) -> Option<(u64, u64, u64)> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).ok()?;
        // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
        let rest = &stat[stat.rfind(')')? + 2..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ticks = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).ok()?;
        let kib = |key: &str| {
            status
                .lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
        };
        Some((ticks, kib("VmRSS:")?, kib("VmHWM:")?))
    }
}

impl Drop for Composer {
    fn drop(&mut self) {
        if self.is_running() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The Docker Engine API at one unix socket, through curl.
#[derive(Clone)]
pub struct Engine {
    pub socket: String,
}

impl Engine {
    pub fn at(socket: &str) -> Engine {
        Engine {
            socket: socket.to_string(),
        }
    }

    /// The shared engine; panics with the setup steps unless it, the test
    /// images and the registry answer.
    pub fn shared() -> Engine {
        let e = Engine::at(DEFAULT_SOCKET);
        assert!(
            e.ping(),
            "the Docker engine at {DEFAULT_SOCKET} does not answer: {SETUP}"
        );
        for image in ["xtm-test/ticker:1", "xtm-test/crasher:1"] {
            let (code, _) = e.api("GET", &format!("/images/{image}/json"), None, &[]);
            assert_eq!(code, 200, "test image {image} is missing: {SETUP}");
        }
        super::engine::require_registry();
        e
    }

    /// One call: (status, body); status 0 when the engine cannot be reached.
    pub fn api(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
        headers: &[(&str, &str)],
    ) -> (u16, Vec<u8>) {
        super::engine::call(&self.socket, method, path, body, headers, 120)
    }

    /// GET `path`, expecting 200 and JSON.
    pub fn json(&self, path: &str) -> Value {
        let (code, body) = self.api("GET", path, None, &[]);
        assert_eq!(code, 200, "GET {path}: {}", String::from_utf8_lossy(&body));
        serde_json::from_slice(&body).unwrap()
    }

    pub fn ping(&self) -> bool {
        self.api("GET", "/_ping", None, &[]) == (200, b"OK".to_vec())
    }

    /// `Some(())` when every `names` container runs (or, with `running = false`, has exited).
    pub fn all_in_state(&self, names: &[String], running: bool) -> Option<()> {
        names
            .iter()
            .all(|n| {
                self.inspect(n)
                    .is_some_and(|c| c["State"]["Running"] == running)
            })
            .then_some(())
    }

    /// `docker inspect`, `None` on 404.
    pub fn inspect(&self, name: &str) -> Option<Value> {
        let (code, body) = self.api("GET", &format!("/containers/{name}/json"), None, &[]);
        match code {
            200 => Some(serde_json::from_slice(&body).unwrap()),
            404 => None,
            other => panic!("inspect {name}: {other} {}", String::from_utf8_lossy(&body)),
        }
    }

    /// Every container (running or not) labelled `opencti-manager={manager}`.
    pub fn containers(&self, manager: &str) -> Vec<Value> {
        let filters = json!({"label": [format!("opencti-manager={manager}")]}).to_string();
        let v = self.json(&format!(
            "/containers/json?all=true&filters={}",
            query(&filters)
        ));
        v.as_array().cloned().unwrap_or_default()
    }

    /// Force-removes every container of `manager`.
    pub fn remove_all(&self, manager: &str) {
        for c in self.containers(manager) {
            if let Some(id) = c["Id"].as_str() {
                self.api(
                    "DELETE",
                    &format!("/containers/{id}?force=true&v=true"),
                    None,
                    &[],
                );
            }
        }
    }

    /// Untags `image` locally (the layers stay), so a deploy must pull it.
    pub fn untag(&self, image: &str) {
        let (code, body) = self.api(
            "DELETE",
            &format!("/images/{image}?noprune=true"),
            None,
            &[],
        );
        assert!(
            code == 200 || code == 404,
            "untag {image}: {code} {}",
            String::from_utf8_lossy(&body)
        );
    }

    /// Tags the local `image` as `repo:tag` too.
    pub fn tag(&self, image: &str, repo: &str, tag: &str) {
        let path = format!("/images/{image}/tag?repo={}&tag={tag}", query(repo));
        let (code, body) = self.api("POST", &path, None, &[]);
        assert_eq!(
            code,
            201,
            "tag {image} as {repo}:{tag}: {}",
            String::from_utf8_lossy(&body)
        );
    }

    /// The content of the single file `path` in container `name`, read with
    /// `GET /containers/{name}/archive` (a tar with one entry); `None` on 404.
    pub fn read_file(&self, name: &str, path: &str) -> Option<Vec<u8>> {
        let query = format!("/containers/{name}/archive?path={}", query(path));
        let (code, tar) = self.api("GET", &query, None, &[]);
        if code == 404 {
            return None;
        }
        assert_eq!(
            code,
            200,
            "archive {name}:{path}: {}",
            String::from_utf8_lossy(&tar)
        );
        // ustar: the size is an octal field at offset 124 of the 512-byte header.
        let size = std::str::from_utf8(&tar[124..136])
            .unwrap()
            .trim_matches(|c: char| c == '\0' || c == ' ');
        let size = usize::from_str_radix(size, 8).unwrap();
        Some(tar[512..512 + size].to_vec())
    }

    pub fn has_image(&self, image: &str) -> bool {
        self.api("GET", &format!("/images/{image}/json"), None, &[])
            .0
            == 200
    }

    /// Pulls `repo:tag` from the local registry with its credentials.
    pub fn pull(&self, repo: &str, tag: &str) {
        let auth = json!({"username": REGISTRY_USER, "password": REGISTRY_PASSWORD, "serveraddress": REGISTRY});
        let auth = base64url(auth.to_string().as_bytes());
        let path = format!("/images/create?fromImage={}&tag={tag}", query(repo));
        let (code, body) = self.api("POST", &path, None, &[("X-Registry-Auth", &auth)]);
        let text = String::from_utf8_lossy(&body);
        assert!(
            code == 200 && !text.contains("\"error"),
            "pull {repo}:{tag}: {code} {text}"
        );
    }

    /// Creates a container as the existing composer would (name, labels, env)
    /// and starts it; returns its id.
    pub fn create_and_start(
        &self,
        name: &str,
        image: &str,
        labels: Value,
        env: &[String],
    ) -> String {
        let body = json!({
            "Image": image, "Env": env, "Labels": labels,
            "HostConfig": {"NetworkMode": "none"},
        });
        let path = format!("/containers/create?name={}", query(name));
        let (code, out) = self.api("POST", &path, Some(&body.to_string()), &[]);
        assert_eq!(
            code,
            201,
            "create {name}: {}",
            String::from_utf8_lossy(&out)
        );
        let id = serde_json::from_slice::<Value>(&out).unwrap()["Id"]
            .as_str()
            .unwrap()
            .to_string();
        let (code, out) = self.api("POST", &format!("/containers/{id}/start"), None, &[]);
        assert_eq!(code, 204, "start {name}: {}", String::from_utf8_lossy(&out));
        id
    }

    /// Container events of `manager`'s containers between two epoch times, as `(action, name)`.
    pub fn events(&self, manager: &str, since: f64, until: f64) -> Vec<(String, String)> {
        let filters =
            json!({"type": ["container"], "label": [format!("opencti-manager={manager}")]});
        let path = format!(
            "/events?since={since:.3}&until={until:.3}&filters={}",
            query(&filters.to_string())
        );
        let (code, body) = self.api("GET", &path, None, &[]);
        assert_eq!(code, 200, "events: {}", String::from_utf8_lossy(&body));
        serde_json::Deserializer::from_slice(&body)
            .into_iter::<Value>()
            .map(|e| e.unwrap())
            .map(|e| {
                let action = e["Action"].as_str().unwrap_or_default().to_string();
                let name = e["Actor"]["Attributes"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                (action, name)
            })
            .collect()
    }
}

/// Removes every container of these managers when dropped, even on panic.
pub struct Cleanup {
    pub engine: Engine,
    pub managers: Vec<String>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if self.engine.ping() {
            for m in &self.managers {
                self.engine.remove_all(m);
            }
        }
    }
}

/// `KEY=value` entries of an inspect's `Config.Env` as a map (split at the first `=`).
pub fn env_map(inspect: &Value) -> HashMap<String, String> {
    inspect["Config"]["Env"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_str()?.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn base64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i)) as usize & 63]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A second dockerd (own socket, data-root, exec-root, state) started and
/// stopped through `scripts/start-dockerd.sh`; removed with its data when dropped.
pub struct Dockerd {
    pub root: PathBuf,
    pub socket: String,
}

impl Dockerd {
    /// Paths under `root` (keep it short: containerd's socket path is limited).
    pub fn new(root: &Path) -> Dockerd {
        Dockerd {
            root: root.to_path_buf(),
            socket: root.join("docker.sock").to_str().unwrap().to_string(),
        }
    }

    fn script(&self, arg: &str) -> std::process::Output {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/start-dockerd.sh");
        Command::new("bash")
            .arg(script)
            .arg(arg)
            .env("DOCKERD_SOCK", &self.socket)
            .env("DOCKERD_DATA_ROOT", self.root.join("data"))
            .env("DOCKERD_EXEC_ROOT", self.root.join("exec"))
            .env("DOCKERD_STATE", self.root.join("state"))
            .output()
            .unwrap()
    }

    /// Starts it and waits until it answers.
    pub fn start(&self) {
        let out = self.script("start");
        assert!(
            out.status.success(),
            "second dockerd did not start: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Stops it (SIGTERM; the script waits for the exit).
    pub fn stop(&self) {
        let out = self.script("stop");
        assert!(
            out.status.success(),
            "stop dockerd: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        let engine = Engine::at(&self.socket);
        if engine.ping() {
            for c in engine
                .json("/containers/json?all=true")
                .as_array()
                .cloned()
                .unwrap_or_default()
            {
                if let Some(id) = c["Id"].as_str() {
                    engine.api("DELETE", &format!("/containers/{id}?force=true"), None, &[]);
                }
            }
        }
        let _ = self.script("stop");
        // Shims of tasks the engine lost track of while stopping outlive it.
        for pid in shims_under(&self.root) {
            let _ = Command::new("kill").args(["-s", "KILL", &pid]).status();
        }
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// Process ids of containerd shims whose command line names a path under `root`.
fn shims_under(root: &Path) -> Vec<String> {
    let root = root.to_string_lossy().into_owned();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok())
        .filter_map(|e| {
            let pid = e.file_name().to_string_lossy().into_owned();
            let cmd = std::fs::read(e.path().join("cmdline")).ok()?;
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            (cmd.contains("containerd-shim") && cmd.contains(&root)).then_some(pid)
        })
        .collect()
}

/// One request seen by the forwarder.
#[derive(Debug, Clone)]
pub struct Seen {
    pub at: Instant,
    pub method: String,
    pub path: String,
}

/// An answer the forwarder gives itself instead of the engine's.
struct Injected {
    method: String,
    path_end: String,
    status: u16,
    body: String,
}

#[derive(Default)]
struct Traffic {
    seen: Vec<Seen>,
    injected: Vec<Injected>,
    /// `(method, path_end)` of requests held unanswered until `release`.
    held: Vec<(String, String)>,
}

impl Traffic {
    /// The injected answer for this request, if any.
    fn answer(&self, method: &str, path: &str) -> Option<(u16, String)> {
        self.injected
            .iter()
            .find(|i| i.method == method && path.ends_with(&i.path_end))
            .map(|i| (i.status, i.body.clone()))
    }
}

/// A unix-socket forwarder that records each HTTP request line on its way to
/// the engine, and can answer a chosen request itself (the composer's Docker
/// client speaks HTTP/1.1 with `Content-Length` bodies and no pipelining,
/// which is all this parses).
pub struct Forwarder {
    pub path: PathBuf,
    traffic: Arc<Mutex<Traffic>>,
    stop: Arc<AtomicBool>,
}

impl Forwarder {
    pub fn start(path: &Path, upstream: &str) -> Forwarder {
        let _ = std::fs::remove_file(path);
        let listener = UnixListener::bind(path).unwrap();
        let traffic = Arc::new(Mutex::new(Traffic::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let (t, st, up) = (
            Arc::clone(&traffic),
            Arc::clone(&stop),
            upstream.to_string(),
        );
        thread::spawn(move || {
            for client in listener.incoming() {
                if st.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(client) = client else { continue };
                let (t, up) = (Arc::clone(&t), up.clone());
                thread::spawn(move || {
                    if let Ok(engine) = UnixStream::connect(&up) {
                        let _ = relay(client, engine, &t);
                    }
                });
            }
        });
        Forwarder {
            path: path.to_path_buf(),
            traffic,
            stop,
        }
    }

    /// `unix://path`, for `OPENCTI__DAEMON__DOCKER__HOST`.
    pub fn host(&self) -> String {
        format!("unix://{}", self.path.display())
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.traffic.lock().unwrap().seen.clone()
    }

    pub fn count(&self) -> usize {
        self.traffic.lock().unwrap().seen.len()
    }

    /// From now on, every `method` request whose path ends with `path_end`
    /// gets `status` and the JSON `{"message": message}` instead of reaching the engine.
    pub fn answer_instead(&self, method: &str, path_end: &str, status: u16, message: &str) {
        self.traffic.lock().unwrap().injected.push(Injected {
            method: method.to_string(),
            path_end: path_end.to_string(),
            status,
            body: json!({ "message": message }).to_string(),
        });
    }
}

impl Forwarder {
    /// From now on, every `method` request whose path ends with `path_end`
    /// is neither forwarded nor answered until `release` (a hung engine call,
    /// for killing the composer in the middle of one).
    pub fn hold(&self, method: &str, path_end: &str) {
        let mut t = self.traffic.lock().unwrap();
        t.held.push((method.to_string(), path_end.to_string()));
    }

    /// Ends every `hold`: held requests get their connection closed.
    pub fn release(&self) {
        self.traffic.lock().unwrap().held.clear();
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = UnixStream::connect(&self.path);
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Copies the engine's answers back as they come, and the client's requests
/// one at a time, recording each request line. An injected answer is written
/// by this thread: the client sends its next request only after it has read
/// the previous answer, so the answer thread is idle then.
fn relay(client: UnixStream, engine: UnixStream, traffic: &Mutex<Traffic>) -> std::io::Result<()> {
    let (mut back_from, mut back_to) = (engine.try_clone()?, client.try_clone()?);
    let mut direct = client.try_clone()?;
    let answers = thread::spawn(move || {
        let _ = std::io::copy(&mut back_from, &mut back_to);
        let _ = back_to.shutdown(std::net::Shutdown::Both);
    });
    let mut reader = BufReader::new(client);
    let mut to_engine = engine;
    loop {
        let mut head = Vec::new();
        loop {
            let mut line = Vec::new();
            if reader.read_until(b'\n', &mut line)? == 0 {
                let _ = to_engine.shutdown(std::net::Shutdown::Write);
                let _ = answers.join();
                return Ok(());
            }
            let end = line == b"\r\n";
            head.extend_from_slice(&line);
            if end {
                break;
            }
        }
        let text = String::from_utf8_lossy(&head).into_owned();
        let mut parts = text.lines().next().unwrap_or_default().split(' ');
        let (method, path) = (
            parts.next().unwrap_or_default(),
            parts.next().unwrap_or_default(),
        );
        let injected = {
            let mut t = traffic.lock().unwrap();
            t.seen.push(Seen {
                at: Instant::now(),
                method: method.to_string(),
                path: path.to_string(),
            });
            t.answer(method, path)
        };
        let length = text
            .lines()
            .filter_map(|l| l.split_once(':'))
            .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
            .and_then(|(_, v)| v.trim().parse::<u64>().ok())
            .unwrap_or(0);
        let is_held = |t: &Traffic| {
            t.held
                .iter()
                .any(|(m, end)| m == method && path.ends_with(end.as_str()))
        };
        if is_held(&traffic.lock().unwrap()) {
            while is_held(&traffic.lock().unwrap()) {
                thread::sleep(Duration::from_millis(50));
            }
            return Ok(());
        }
        match injected {
            None => {
                to_engine.write_all(&head)?;
                std::io::copy(&mut (&mut reader).take(length), &mut to_engine)?;
            }
            Some((status, body)) => {
                std::io::copy(&mut (&mut reader).take(length), &mut std::io::sink())?;
                let answer = format!(
                    "HTTP/1.1 {status} Injected\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len(),
                );
                direct.write_all(answer.as_bytes())?;
            }
        }
    }
}
