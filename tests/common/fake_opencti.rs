//! An in-process fake OpenCTI that follows CONTRACT §2.4: Bearer token check (401
//! otherwise), one connector manager per instance, the connector list, status,
//! logs (a replaced snapshot) and health per connector. It records every request and
//! answers like a GraphQL server: bad input is a GraphQL error, never a panic, so a
//! wrong client makes the test fail on the client side rather than hang.

use std::collections::{HashMap, VecDeque};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use super::http1;
use super::tls::TestCa;

/// One request as the fake received it.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// `operationName` (empty when the body was not a GraphQL request).
    pub operation: String,
    pub query: String,
    pub variables: Value,
    pub authorization: Option<String>,
    /// The request path, e.g. `/graphql`.
    pub path: String,
    /// The raw request body (shows `"variables":null` versus an absent key).
    pub body: String,
}

/// An injected failure for the next request of one operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// HTTP 200 with an `errors` entry and a null root.
    GraphQlError,
    /// HTTP 200 with a body that is not JSON.
    Garbled,
    /// HTTP 500 with a plain-text body.
    Http500,
    /// The normal answer plus an `errors` entry (a partial GraphQL result).
    ErrorsWithData,
}

struct Manager {
    id: String,
    public_key: String,
}

struct State {
    token: String,
    version: String,
    manager: Option<Manager>,
    connectors: Vec<Value>,
    logs: HashMap<String, Vec<String>>,
    health: HashMap<String, Value>,
    health_reports: HashMap<String, usize>,
    requests: Vec<Recorded>,
    failures: HashMap<String, VecDeque<Failure>>,
}

/// A running fake; stops listening when dropped.
pub struct FakeOpenCti {
    addr: SocketAddr,
    scheme: &'static str,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
}

impl FakeOpenCti {
    /// Starts a plain-HTTP fake that accepts `Bearer {token}`.
    pub fn start(token: &str) -> FakeOpenCti {
        Self::launch(token, None)
    }

    /// Starts an HTTPS fake presenting a certificate signed by `ca`.
    pub fn start_tls(token: &str, ca: &TestCa) -> FakeOpenCti {
        Self::launch(token, Some(Arc::clone(&ca.server)))
    }

    fn launch(token: &str, tls: Option<Arc<rustls::ServerConfig>>) -> FakeOpenCti {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(State {
            token: token.to_string(),
            version: "6.8.0".to_string(),
            manager: None,
            connectors: Vec::new(),
            logs: HashMap::new(),
            health: HashMap::new(),
            health_reports: HashMap::new(),
            requests: Vec::new(),
            failures: HashMap::new(),
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let scheme = if tls.is_some() { "https" } else { "http" };
        let (st, sp) = (Arc::clone(&state), Arc::clone(&stop));
        thread::spawn(move || accept(listener, st, sp, tls));
        FakeOpenCti {
            addr,
            scheme,
            state,
            stop,
        }
    }

    /// `http://127.0.0.1:PORT` (or `https://`).
    pub fn url(&self) -> String {
        format!("{}://{}", self.scheme, self.addr)
    }

    pub fn set_version(&self, v: &str) {
        self.state.lock().unwrap().version = v.to_string();
    }

    /// Replaces the connector list with raw `ManagedConnector` objects.
    pub fn set_connectors(&self, connectors: Vec<Value>) {
        self.state.lock().unwrap().connectors = connectors;
    }

    /// Sets `manager_requested_status` (`starting` / `stopping`).
    pub fn set_requested(&self, id: &str, requested: &str) {
        self.edit(id, |c| c["manager_requested_status"] = json!(requested));
    }

    pub fn set_hash(&self, id: &str, hash: &str) {
        self.edit(id, |c| c["manager_contract_hash"] = json!(hash));
    }

    pub fn remove_connector(&self, id: &str) {
        let mut s = self.state.lock().unwrap();
        s.connectors.retain(|c| c["id"] != json!(id));
    }

    fn edit(&self, id: &str, f: impl Fn(&mut Value)) {
        let mut s = self.state.lock().unwrap();
        s.connectors
            .iter_mut()
            .filter(|c| c["id"] == json!(id))
            .for_each(f);
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.state.lock().unwrap().requests.clone()
    }

    /// `manager_current_status` of a connector (`None` when unknown or null).
    pub fn current_status(&self, id: &str) -> Option<String> {
        let s = self.state.lock().unwrap();
        let c = s.connectors.iter().find(|c| c["id"] == json!(id))?;
        c["manager_current_status"].as_str().map(String::from)
    }

    /// The last log snapshot reported for a connector.
    pub fn logs(&self, id: &str) -> Option<Vec<String>> {
        self.state.lock().unwrap().logs.get(id).cloned()
    }

    /// The last health reported for a connector, with its `last_update`.
    pub fn health(&self, id: &str) -> Option<Value> {
        self.state.lock().unwrap().health.get(id).cloned()
    }

    /// How many health reports a connector got.
    pub fn health_reports(&self, id: &str) -> usize {
        let s = self.state.lock().unwrap();
        s.health_reports.get(id).copied().unwrap_or(0)
    }

    /// The public key of the registered manager.
    pub fn registered_key(&self) -> Option<String> {
        let s = self.state.lock().unwrap();
        s.manager.as_ref().map(|m| m.public_key.clone())
    }

    /// The id of the registered manager.
    pub fn registered_manager(&self) -> Option<String> {
        let s = self.state.lock().unwrap();
        s.manager.as_ref().map(|m| m.id.clone())
    }

    /// Makes the next request of `operation` fail as given (queued, one per call).
    pub fn fail_next(&self, operation: &str, failure: Failure) {
        let mut s = self.state.lock().unwrap();
        s.failures
            .entry(operation.to_string())
            .or_default()
            .push_back(failure);
    }
}

impl Drop for FakeOpenCti {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop so it sees the flag.
        let _ = TcpStream::connect(self.addr);
    }
}

/// Builds a `ManagedConnector` object as `connectorsForManagers` returns it;
/// `config` entries are `(key, value, encrypted)`.
pub fn connector(
    id: &str,
    name: &str,
    image: &str,
    hash: &str,
    requested: &str,
    config: Vec<(&str, &str, bool)>,
) -> Value {
    let config: Vec<Value> = config
        .into_iter()
        .map(|(key, value, encrypted)| json!({"key": key, "value": value, "encrypted": encrypted}))
        .collect();
    json!({
        "id": id,
        "name": name,
        "manager_contract_hash": hash,
        "manager_contract_image": image,
        "manager_current_status": null,
        "manager_requested_status": requested,
        "manager_contract_configuration": config,
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

fn error(message: &str, code: &str, root: Option<&str>) -> Value {
    let mut e = json!({"message": message, "extensions": {"code": code}});
    if let Some(root) = root {
        e["path"] = json!([root]);
    }
    e
}

fn respond(req: &http1::Request, state: &Mutex<State>) -> Reply {
    let body: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
    let text = |k: &str| body[k].as_str().unwrap_or_default().to_string();
    let recorded = Recorded {
        operation: text("operationName"),
        query: text("query"),
        variables: body["variables"].clone(),
        authorization: req.header("authorization").map(String::from),
        path: req.target.clone(),
        body: String::from_utf8_lossy(&req.body).into_owned(),
    };
    let mut s = state.lock().unwrap();
    s.requests.push(recorded.clone());
    if req.target != "/graphql" {
        return (404, "text/plain", b"Not Found".to_vec());
    }
    if req.method != "POST" {
        return (405, "text/plain", b"Method Not Allowed".to_vec());
    }
    if recorded.authorization != Some(format!("Bearer {}", s.token)) {
        let e = error("You must be logged in to do this.", "AUTH_REQUIRED", None);
        return json_reply(401, json!({"errors": [e]}));
    }
    if !body.is_object() || recorded.query.is_empty() {
        let e = error("POST body missing or invalid", "BAD_REQUEST", None);
        return json_reply(400, json!({"errors": [e]}));
    }
    let failure = s
        .failures
        .get_mut(&recorded.operation)
        .and_then(VecDeque::pop_front);
    match failure {
        Some(Failure::Garbled) => (200, "application/json", b"{\"data\": {\"abo".to_vec()),
        Some(Failure::Http500) => (500, "text/plain", b"Internal Server Error".to_vec()),
        Some(Failure::GraphQlError) => {
            let root = root_field(&recorded.operation).unwrap_or("unknown");
            let e = error("Injected failure", "INTERNAL_SERVER_ERROR", Some(root));
            json_reply(200, json!({"errors": [e], "data": {root: null}}))
        }
        Some(Failure::ErrorsWithData) => {
            let mut answer = graphql(&mut s, &recorded);
            let root = root_field(&recorded.operation).unwrap_or("unknown");
            let e = error(
                "Injected partial failure",
                "INTERNAL_SERVER_ERROR",
                Some(root),
            );
            answer["errors"] = json!([e]);
            json_reply(200, answer)
        }
        None => json_reply(200, graphql(&mut s, &recorded)),
    }
}

/// The root field each known operation selects.
fn root_field(operation: &str) -> Option<&'static str> {
    Some(match operation {
        "GetVersion" => "about",
        "RegisterConnectorsManager" => "registerConnectorsManager",
        "UpdateConnectorManagerStatus" => "updateConnectorManagerStatus",
        "GetConnectors" => "connectorsForManagers",
        "UpdateConnectorCurrentStatus" => "updateConnectorCurrentStatus",
        "ReportConnectorLogs" => "updateConnectorLogs",
        "UpdateConnectorHealth" => "updateConnectorHealth",
        _ => return None,
    })
}

/// Executes one operation: `{"data": ...}` or `{"errors": [...], "data": ...}`.
fn graphql(s: &mut State, r: &Recorded) -> Value {
    let Some(root) = root_field(&r.operation) else {
        let e = error("Unknown operation", "GRAPHQL_VALIDATION_FAILED", None);
        return json!({"errors": [e]});
    };
    let declared = [
        format!("query {} ", r.operation),
        format!("mutation {}(", r.operation),
    ];
    if !declared.iter().any(|d| r.query.starts_with(d.as_str())) || !r.query.contains(root) {
        let e = error(
            "Query does not match operationName",
            "GRAPHQL_VALIDATION_FAILED",
            None,
        );
        return json!({"errors": [e]});
    }
    match execute(s, &r.operation, &r.variables["input"]) {
        Ok(value) => json!({"data": {root: value}}),
        Err((message, code)) => {
            json!({"errors": [error(&message, code, Some(root))], "data": {root: null}})
        }
    }
}

type Outcome = Result<Value, (String, &'static str)>;

fn bad_input(field: &str) -> (String, &'static str) {
    (
        format!("Variable \"$input\" got invalid value at \"input.{field}\""),
        "BAD_USER_INPUT",
    )
}

fn string(input: &Value, field: &str) -> Result<String, (String, &'static str)> {
    input[field]
        .as_str()
        .map(String::from)
        .ok_or_else(|| bad_input(field))
}

fn execute(s: &mut State, operation: &str, input: &Value) -> Outcome {
    match operation {
        "GetVersion" => Ok(json!({"version": s.version})),
        "GetConnectors" => Ok(Value::Array(s.connectors.clone())),
        "RegisterConnectorsManager" => register(s, input),
        "UpdateConnectorManagerStatus" => {
            let id = string(input, "id")?;
            match &s.manager {
                Some(m) if m.id == id => Ok(json!({"id": id, "about_version": s.version})),
                _ => Err(("Cant find element to update".into(), "FUNCTIONAL_ERROR")),
            }
        }
        "UpdateConnectorCurrentStatus" => update_status(s, input),
        "ReportConnectorLogs" => {
            let id = string(input, "id")?;
            let logs = input["logs"].as_array().ok_or_else(|| bad_input("logs"))?;
            let lines: Option<Vec<String>> =
                logs.iter().map(|l| l.as_str().map(String::from)).collect();
            s.logs
                .insert(id.clone(), lines.ok_or_else(|| bad_input("logs"))?);
            Ok(json!(id))
        }
        "UpdateConnectorHealth" => health(s, input),
        _ => Err(("Unknown operation".into(), "GRAPHQL_VALIDATION_FAILED")),
    }
}

fn register(s: &mut State, input: &Value) -> Outcome {
    let (id, _name) = (string(input, "id")?, string(input, "name")?);
    let public_key = string(input, "public_key")?;
    if s.manager.as_ref().is_some_and(|m| m.id != id) {
        let message = "Only one connector manager is supported per instance";
        return Err((message.into(), "UNSUPPORTED_ERROR"));
    }
    s.manager = Some(Manager {
        id: id.clone(),
        public_key,
    });
    Ok(json!({"id": id, "about_version": s.version}))
}

fn update_status(s: &mut State, input: &Value) -> Outcome {
    let id = string(input, "id")?;
    let status = string(input, "status")?;
    if status != "started" && status != "stopped" {
        let message =
            format!("Value \"{status}\" does not exist in \"ConnectorCurrentStatus\" enum.");
        return Err((message, "BAD_USER_INPUT"));
    }
    let connector = s.connectors.iter_mut().find(|c| c["id"] == json!(id));
    let Some(connector) = connector else {
        return Err(("Cant find element to update".into(), "FUNCTIONAL_ERROR"));
    };
    connector["manager_current_status"] = json!(status);
    Ok(connector.clone())
}

fn health(s: &mut State, input: &Value) -> Outcome {
    let id = string(input, "id")?;
    let restart_count = input["restart_count"]
        .as_i64()
        .ok_or_else(|| bad_input("restart_count"))?;
    let started_at = string(input, "started_at")?;
    let reboot_loop = input["is_in_reboot_loop"]
        .as_bool()
        .ok_or_else(|| bad_input("is_in_reboot_loop"))?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    let value = json!({"restart_count": restart_count, "started_at": started_at,
        "is_in_reboot_loop": reboot_loop, "last_update": now});
    s.health.insert(id.clone(), value);
    *s.health_reports.entry(id.clone()).or_insert(0) += 1;
    Ok(json!(id))
}
