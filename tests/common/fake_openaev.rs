//! An in-process fake OpenAEV that follows CONTRACT §3: Bearer token (401), the seven
//! REST calls with their exact snake_case bodies, one registered composer (id, name, key,
//! version at registration), `Invalid xtm-composer identifier` for any other managerId,
//! instances whose configuration comes back shuffled on every listing, logs kept as a set,
//! health and status per instance. Stricter than the platform on one point: an unknown
//! JSON field is a 400, so a misspelt key fails the test instead of being ignored.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value, json};

use super::http1;
use super::tls::TestCa;

/// One request as the fake received it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    /// The request target, e.g. `/api/xtm-composer/register`.
    pub path: String,
    pub authorization: Option<String>,
    pub content_type: Option<String>,
    /// The raw body (compact JSON, or empty for the ping).
    pub body: String,
}

/// An injected failure for the next request of one operation (`version`,
/// `register`, `ping`, `list`, `status`, `logs`, `health`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// HTTP 500 with a plain-text body.
    Http500,
    /// HTTP 200 with a body that is not JSON.
    Garbled,
    /// HTTP 200 `text/plain` `OK`, as a proxy or an older platform might answer.
    PlainOk,
}

/// The registered composer, as the platform stores it (§3.4).
#[derive(Debug, Clone)]
pub struct Registration {
    pub id: String,
    pub name: String,
    pub public_key: String,
    /// The platform version at registration time: what ping answers.
    pub version: String,
}

struct State {
    token: String,
    version: String,
    tenant: Option<String>,
    registration: Option<Registration>,
    registrations: usize,
    instances: Vec<Value>,
    listings: u64,
    last_listing: Option<Value>,
    logs: HashMap<String, BTreeSet<String>>,
    health: HashMap<String, Value>,
    health_reports: HashMap<String, usize>,
    requests: Vec<Recorded>,
    failures: HashMap<String, VecDeque<Failure>>,
}

/// The accept thread of a running fake.
struct Server {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

/// A running fake; stops listening when dropped. Its store outlives `stop()`.
pub struct FakeOpenAev {
    addr: SocketAddr,
    tls: Option<Arc<rustls::ServerConfig>>,
    state: Arc<Mutex<State>>,
    server: Mutex<Option<Server>>,
}

impl FakeOpenAev {
    /// Starts a plain-HTTP fake that accepts `Bearer {token}`.
    pub fn start(token: &str) -> FakeOpenAev {
        Self::launch(token, None)
    }

    /// Starts an HTTPS fake presenting a certificate signed by `ca`.
    pub fn start_tls(token: &str, ca: &TestCa) -> FakeOpenAev {
        Self::launch(token, Some(Arc::clone(&ca.server)))
    }

    fn launch(token: &str, tls: Option<Arc<rustls::ServerConfig>>) -> FakeOpenAev {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let state = Arc::new(Mutex::new(State {
            token: token.to_string(),
            version: "2.4.0".to_string(),
            tenant: None,
            registration: None,
            registrations: 0,
            instances: Vec::new(),
            listings: 0,
            last_listing: None,
            logs: HashMap::new(),
            health: HashMap::new(),
            health_reports: HashMap::new(),
            requests: Vec::new(),
            failures: HashMap::new(),
        }));
        let fake = FakeOpenAev {
            addr: listener.local_addr().unwrap(),
            tls,
            state,
            server: Mutex::new(None),
        };
        fake.serve_on(listener);
        fake
    }

    fn serve_on(&self, listener: TcpListener) {
        let stop = Arc::new(AtomicBool::new(false));
        let (st, sp, tls) = (Arc::clone(&self.state), Arc::clone(&stop), self.tls.clone());
        let thread = thread::spawn(move || accept(listener, st, sp, tls));
        *self.server.lock().unwrap() = Some(Server { stop, thread });
    }

    /// `http://127.0.0.1:PORT` (or `https://`).
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// Closes the listening socket: the platform is down (connections refused).
    /// Everything stored is kept for `restart`.
    pub fn stop(&self) {
        let Some(server) = self.server.lock().unwrap().take() else {
            return;
        };
        server.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
        server.thread.join().unwrap();
    }

    /// Listens again on the same address, with the same store.
    pub fn restart(&self) {
        if self.server.lock().unwrap().is_some() {
            return;
        }
        self.serve_on(TcpListener::bind(self.addr).unwrap());
    }

    pub fn set_version(&self, v: &str) {
        self.state.lock().unwrap().version = v.to_string();
    }

    /// Serves only `/api/tenants/{tenant}/xtm-composer/...` (or, with `None`,
    /// only the plain `/api/xtm-composer/...` paths).
    pub fn set_tenant(&self, tenant: Option<&str>) {
        self.state.lock().unwrap().tenant = tenant.map(String::from);
    }

    /// Replaces the instances with raw `XtmComposerInstanceOutput` objects.
    pub fn set_instances(&self, instances: Vec<Value>) {
        self.state.lock().unwrap().instances = instances;
    }

    /// Sets `connector_instance_requested_status` (`starting` / `stopping`).
    pub fn set_requested(&self, id: &str, requested: &str) {
        self.edit(id, |i| {
            i["connector_instance_requested_status"] = json!(requested)
        });
    }

    pub fn set_hash(&self, id: &str, hash: &str) {
        self.edit(id, |i| i["connector_instance_hash"] = json!(hash));
    }

    pub fn remove_instance(&self, id: &str) {
        let mut s = self.state.lock().unwrap();
        s.instances
            .retain(|i| i["connector_instance_id"] != json!(id));
    }

    fn edit(&self, id: &str, f: impl Fn(&mut Value)) {
        let mut s = self.state.lock().unwrap();
        s.instances
            .iter_mut()
            .filter(|i| i["connector_instance_id"] == json!(id))
            .for_each(f);
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.state.lock().unwrap().requests.clone()
    }

    /// `connector_instance_current_status` of an instance (`None` when absent).
    pub fn current_status(&self, id: &str) -> Option<String> {
        let s = self.state.lock().unwrap();
        let i = s
            .instances
            .iter()
            .find(|i| i["connector_instance_id"] == json!(id))?;
        i["connector_instance_current_status"]
            .as_str()
            .map(String::from)
    }

    /// The lines of the last non-empty log report, as the platform's `Set<String>`.
    pub fn logs(&self, id: &str) -> Option<BTreeSet<String>> {
        self.state.lock().unwrap().logs.get(id).cloned()
    }

    /// The last health reported for an instance, with its `last_update`.
    pub fn health(&self, id: &str) -> Option<Value> {
        self.state.lock().unwrap().health.get(id).cloned()
    }

    /// How many health reports an instance got.
    pub fn health_reports(&self, id: &str) -> usize {
        let s = self.state.lock().unwrap();
        s.health_reports.get(id).copied().unwrap_or(0)
    }

    /// The registered composer, if any.
    pub fn registration(&self) -> Option<Registration> {
        self.state.lock().unwrap().registration.clone()
    }

    /// The public key of the registered composer.
    pub fn registered_key(&self) -> Option<String> {
        self.registration().map(|r| r.public_key)
    }

    /// How many registrations succeeded.
    pub fn registrations(&self) -> usize {
        self.state.lock().unwrap().registrations
    }

    /// Drops the registration, as a platform restored from an old backup would.
    pub fn forget_registration(&self) {
        self.state.lock().unwrap().registration = None;
    }

    /// The last listing body served (with its shuffled configurations).
    pub fn last_listing(&self) -> Option<Value> {
        self.state.lock().unwrap().last_listing.clone()
    }

    /// Makes the next request of `op` fail as given (queued, one per call).
    pub fn fail_next(&self, op: &str, failure: Failure) {
        let mut s = self.state.lock().unwrap();
        s.failures
            .entry(op.to_string())
            .or_default()
            .push_back(failure);
    }
}

impl Drop for FakeOpenAev {
    fn drop(&mut self) {
        if let Some(server) = self.server.get_mut().ok().and_then(Option::take) {
            server.stop.store(true, Ordering::SeqCst);
            let _ = TcpStream::connect(self.addr);
        }
    }
}

/// Builds an instance as the listing returns it (`NON_NULL`: no null fields);
/// `config` entries are `(key, value, encrypted)`. Created instances are `stopped`.
pub fn instance(
    id: &str,
    name: &str,
    image: &str,
    hash: &str,
    requested: &str,
    config: Vec<(&str, &str, bool)>,
) -> Value {
    let config: Vec<Value> = config
        .into_iter()
        .map(|(key, value, encrypted)| {
            json!({"configuration_key": key, "configuration_value": value,
                "configuration_is_encrypted": encrypted})
        })
        .collect();
    json!({
        "connector_instance_id": id,
        "connector_instance_name": name,
        "connector_instance_hash": hash,
        "connector_image": image,
        "connector_instance_current_status": "stopped",
        "connector_instance_requested_status": requested,
        "connector_instance_configurations": config,
    })
}

fn accept(
    listener: TcpListener,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    tls: Option<Arc<rustls::ServerConfig>>,
) {
    for stream in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok(stream) = stream else { continue };
        let (state, tls) = (Arc::clone(&state), tls.clone());
        thread::spawn(move || {
            let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
            let _ = match tls {
                Some(config) => serve_tls(stream, config, &state),
                None => serve(&mut { stream }, &state),
            };
        });
    }
}

fn serve_tls(
    stream: TcpStream,
    config: Arc<rustls::ServerConfig>,
    state: &Mutex<State>,
) -> io::Result<()> {
    let conn = rustls::ServerConnection::new(config).map_err(io::Error::other)?;
    let mut tls = rustls::StreamOwned::new(conn, stream);
    serve(&mut tls, state)?;
    tls.conn.send_close_notify();
    tls.flush()
}

fn serve<S: Read + Write>(stream: &mut S, state: &Mutex<State>) -> io::Result<()> {
    let req = http1::read_request(stream)?;
    let (status, content_type, body) = respond(&req, state);
    http1::write_response(stream, status, content_type, &body)
}

type Reply = (u16, &'static str, Vec<u8>);

fn json_reply(status: u16, body: Value) -> Reply {
    (status, "application/json", body.to_string().into_bytes())
}

/// An error body shaped like the platform's (`message` carries the reason).
fn error(status: u16, message: &str) -> Reply {
    json_reply(status, json!({"status": status, "message": message}))
}

/// Which call a request is: the operation name and the ids in its path.
struct Route {
    op: &'static str,
    manager: Option<String>,
    instance: Option<String>,
}

fn respond(req: &http1::Request, state: &Mutex<State>) -> Reply {
    let recorded = Recorded {
        method: req.method.clone(),
        path: req.target.clone(),
        authorization: req.header("authorization").map(String::from),
        content_type: req.header("content-type").map(String::from),
        body: String::from_utf8_lossy(&req.body).into_owned(),
    };
    let mut s = state.lock().unwrap();
    s.requests.push(recorded.clone());
    if recorded.authorization != Some(format!("Bearer {}", s.token)) {
        return (401, "application/json", Vec::new());
    }
    let route = match route(&s, &req.method, &req.target) {
        Ok(r) => r,
        Err(reply) => return reply,
    };
    let needs_json = req.method == "POST" || req.method == "PUT";
    let is_json = recorded
        .content_type
        .as_deref()
        .is_some_and(|c| c.starts_with("application/json"));
    if needs_json && !is_json {
        return error(415, "Content-Type 'application/json' required");
    }
    let failure = s.failures.get_mut(route.op).and_then(VecDeque::pop_front);
    match failure {
        Some(Failure::Http500) => (500, "text/plain", b"Internal Server Error".to_vec()),
        Some(Failure::Garbled) => (200, "application/json", b"{\"xtm_comp".to_vec()),
        Some(Failure::PlainOk) => (200, "text/plain", b"OK".to_vec()),
        None => execute(&mut s, &route, &req.body),
    }
}

/// Decodes `%XX` escapes of a path segment.
fn decode(segment: &str) -> String {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = segment.get(i + 1..i + 3);
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn route(s: &State, method: &str, target: &str) -> Result<Route, Reply> {
    let path = target.split('?').next().unwrap_or_default();
    let not_found = || error(404, &format!("No endpoint {method} {path}"));
    let prefix = match &s.tenant {
        Some(t) => format!("/api/tenants/{t}/xtm-composer/"),
        None => "/api/xtm-composer/".to_string(),
    };
    let on = |op, manager: Option<&str>, instance: Option<&str>| Route {
        op,
        manager: manager.map(String::from),
        instance: instance.map(String::from),
    };
    let (want, route) = if path == "/api/settings/version" {
        ("GET", on("version", None, None))
    } else {
        let rest = after_prefix(path, &prefix).ok_or_else(not_found)?;
        let parts: Vec<String> = rest.split('/').map(decode).collect();
        let p: Vec<&str> = parts.iter().map(String::as_str).collect();
        match p[..] {
            ["register"] => ("POST", on("register", None, None)),
            [m, "refresh-connectivity"] => ("PUT", on("ping", Some(m), None)),
            [m, "connector-instances"] => ("GET", on("list", Some(m), None)),
            [m, "connector-instances", i, "status"] => ("PUT", on("status", Some(m), Some(i))),
            [m, "connector-instances", i, "logs"] => ("POST", on("logs", Some(m), Some(i))),
            [m, "connector-instances", i, "health-check"] => {
                ("PUT", on("health", Some(m), Some(i)))
            }
            _ => return Err(not_found()),
        }
    };
    if method != want {
        let message = format!("Request method '{method}' is not supported");
        return Err(error(405, &message));
    }
    Ok(route)
}

/// The part of `path` after `prefix`, the prefix compared once decoded (the
/// client percent-encodes the tenant id).
fn after_prefix<'a>(path: &'a str, prefix: &str) -> Option<&'a str> {
    let slashes = prefix.matches('/').count();
    let (cut, _) = path.match_indices('/').nth(slashes - 1)?;
    (decode(&path[..=cut]) == prefix).then(|| &path[cut + 1..])
}

fn execute(s: &mut State, route: &Route, body: &[u8]) -> Reply {
    if route.op == "version" {
        return (200, "text/plain", format!("{}\n", s.version).into_bytes());
    }
    if route.op == "register" {
        return register(s, body).unwrap_or_else(|e| e);
    }
    // Every `{managerId}` endpoint checks the id first (§3.1). Ping before any
    // registration most likely fails deeper, with a 500 (unverified).
    let manager = route.manager.as_deref().unwrap_or_default();
    match &s.registration {
        None if route.op == "ping" => {
            return (500, "text/plain", b"Internal Server Error".to_vec());
        }
        Some(r) if r.id == manager => {}
        _ => return error(400, "Invalid xtm-composer identifier"),
    }
    let id = route.instance.as_deref().unwrap_or_default();
    let outcome = match route.op {
        "ping" => Ok(ping(s)),
        "list" => Ok(list(s)),
        "status" => update_status(s, id, body),
        "logs" => logs(s, id, body),
        "health" => health(s, id, body),
        _ => Err(error(404, "No endpoint")),
    };
    outcome.unwrap_or_else(|e| e)
}

/// The body as a JSON object holding only `allowed` keys.
fn object(body: &[u8], allowed: &[&str]) -> Result<Map<String, Value>, Reply> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| error(400, &format!("Malformed JSON request: {e}")))?;
    let Value::Object(map) = value else {
        return Err(error(400, "Malformed JSON request: not an object"));
    };
    if let Some(unknown) = map.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(error(400, &format!("Unrecognized field \"{unknown}\"")));
    }
    Ok(map)
}

fn not_blank(map: &Map<String, Value>, field: &str) -> Result<String, Reply> {
    match map.get(field).and_then(Value::as_str) {
        Some(v) if !v.trim().is_empty() => Ok(v.to_string()),
        _ => Err(error(400, &format!("{field}: must not be blank"))),
    }
}

fn register(s: &mut State, body: &[u8]) -> Result<Reply, Reply> {
    let map = object(body, &["id", "name", "public_key"])?;
    let registration = Registration {
        id: not_blank(&map, "id")?,
        name: not_blank(&map, "name")?,
        public_key: not_blank(&map, "public_key")?,
        version: s.version.clone(),
    };
    let answer = json!({"xtm_composer_id": registration.id,
        "xtm_composer_version": registration.version});
    s.registration = Some(registration);
    s.registrations += 1;
    Ok(json_reply(200, answer))
}

fn ping(s: &State) -> Reply {
    let r = s.registration.as_ref();
    json_reply(
        200,
        json!({"xtm_composer_id": r.map(|r| r.id.clone()),
            "xtm_composer_version": r.map(|r| r.version.clone())}),
    )
}

/// The instances, each configuration list in a new order (§3.3: not stable).
fn list(s: &mut State) -> Reply {
    s.listings += 1;
    let mut seed = s.listings.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut instances = s.instances.clone();
    for i in &mut instances {
        if let Some(Value::Array(config)) = i.get_mut("connector_instance_configurations") {
            let before = config.clone();
            for n in (1..config.len()).rev() {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                config.swap(n, (seed % (n as u64 + 1)) as usize);
            }
            if *config == before {
                config.rotate_left(1);
            }
        }
    }
    let body = Value::Array(instances);
    s.last_listing = Some(body.clone());
    json_reply(200, body)
}

fn find<'a>(s: &'a mut State, id: &str) -> Result<&'a mut Value, Reply> {
    s.instances
        .iter_mut()
        .find(|i| i["connector_instance_id"] == json!(id))
        .ok_or_else(|| error(404, &format!("Connector instance {id} not found")))
}

fn update_status(s: &mut State, id: &str, body: &[u8]) -> Result<Reply, Reply> {
    let map = object(body, &["connector_instance_current_status"])?;
    let status = match map.get("connector_instance_current_status") {
        Some(Value::String(v)) if v == "started" || v == "stopped" => v.clone(),
        other => return Err(error(400, &format!("Invalid current status: {other:?}"))),
    };
    let instance = find(s, id)?;
    instance["connector_instance_current_status"] = json!(status);
    Ok(json_reply(200, instance.clone()))
}

fn logs(s: &mut State, id: &str, body: &[u8]) -> Result<Reply, Reply> {
    let map = object(body, &["connector_instance_logs"])?;
    // §3.2: a missing field is a 500 on the platform (a null set is dereferenced).
    let Some(lines) = map.get("connector_instance_logs") else {
        return Err((500, "text/plain", b"Internal Server Error".to_vec()));
    };
    let Some(lines) = lines.as_array() else {
        return Err(error(400, "connector_instance_logs: expected an array"));
    };
    let set: Option<BTreeSet<String>> =
        lines.iter().map(|l| l.as_str().map(String::from)).collect();
    let set = set.ok_or_else(|| error(400, "connector_instance_logs: expected strings"))?;
    // An empty set is accepted without looking the instance up (§3.2).
    if !set.is_empty() {
        find(s, id)?;
        s.logs.insert(id.to_string(), set);
    }
    Ok((200, "application/json", Vec::new()))
}

/// An `Instant` as Jackson reads it here: `YYYY-MM-DDTHH:MM:SS[.f{1,9}]Z`.
pub fn is_instant(s: &str) -> bool {
    let b = s.as_bytes();
    let digits =
        |r: std::ops::Range<usize>| b.get(r).is_some_and(|d| d.iter().all(u8::is_ascii_digit));
    let head = b.len() >= 20
        && digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && b[10] == b'T'
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19);
    let tail = &s[19.min(s.len())..];
    let frac_ok = match tail.strip_suffix('Z') {
        Some("") => true,
        Some(f) => f
            .strip_prefix('.')
            .is_some_and(|d| (1..=9).contains(&d.len()) && d.bytes().all(|c| c.is_ascii_digit())),
        None => false,
    };
    head && frac_ok
}

fn health(s: &mut State, id: &str, body: &[u8]) -> Result<Reply, Reply> {
    let fields = [
        "connector_instance_restart_count",
        "connector_instance_started_at",
        "connector_instance_is_in_reboot_loop",
    ];
    let map = object(body, &fields)?;
    let restart_count = map.get(fields[0]).and_then(Value::as_u64);
    let started_at = map.get(fields[1]).and_then(Value::as_str);
    let reboot_loop = map.get(fields[2]).and_then(Value::as_bool);
    let (Some(restart_count), Some(started_at), Some(reboot_loop)) =
        (restart_count, started_at, reboot_loop)
    else {
        return Err(error(400, "health: missing or mistyped field"));
    };
    if !is_instant(started_at) {
        return Err(error(
            400,
            &format!("Cannot deserialize Instant from \"{started_at}\""),
        ));
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    let value = json!({"restart_count": restart_count, "started_at": started_at,
        "is_in_reboot_loop": reboot_loop, "last_update": now});
    let instance = find(s, id)?.clone();
    s.health.insert(id.to_string(), value);
    *s.health_reports.entry(id.to_string()).or_insert(0) += 1;
    Ok(json_reply(200, instance))
}
