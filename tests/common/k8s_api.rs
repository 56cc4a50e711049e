//! A Kubernetes API server for tests: loopback HTTPS with a CA made at start,
//! bearer tokens and a client certificate; the endpoints the composer and kubectl
//! use (discovery, deployments + scale, pods + log, secrets) with resourceVersions
//! and `Status` errors (401/403/404/409/415/422); a controller making one pod per
//! Deployment with replicas > 0 (running, crash-looping or failing to pull); the
//! Role of `packaging/kubernetes/role.yaml` enforced on the composer's identity
//! (403 otherwise); every object written validated against the official v1.32 JSON
//! schemas in `tests/fixtures/k8s-schemas/`. Watches of Deployments and pods stream
//! every change as chunked JSON events, with bookmarks and `410 Gone` for a
//! resourceVersion that history no longer holds; a controller thread ages pods
//! (terminating pods go, crash loops restart) so watchers see change without
//! listing. Checked by the real `kubectl`, lists and watches alike.
#![allow(dead_code)] // each test binary uses a different part of it

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use base64::Engine as _;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::{Value, json};

/// The composer's ServiceAccount, as the Role binds it.
pub const COMPOSER_USER: &str = "xtm-composer";

/// What the controller makes the connector container of a Deployment's pod do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PodMode {
    Running,
    /// Waiting in `CrashLoopBackOff`; the restart count grows at every pod read.
    CrashLoop,
    /// Waiting in `ImagePullBackOff`, phase Pending.
    ImagePullBackOff,
}

/// A fault injected into resource calls (discovery stays up).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    None,
    /// Answer every resource call with this status.
    Status(u16),
    /// Hold every resource call this long before answering 503.
    Hang(Duration),
}

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    /// The RBAC verb the server took it for (`list`, `watch`, `create` …; empty
    /// for discovery).
    pub verb: &'static str,
    pub method: String,
    pub path: String,
    pub query: String,
    pub user: String,
    pub content_type: String,
    pub body: String,
    pub status: u16,
}

struct PodRec {
    obj: Value,
    owner: String,
    template_hash: String,
    /// Set when terminating: how many more pod listings still show it.
    lists_left: Option<u32>,
    /// When it started terminating: the controller removes it a moment later.
    deleted_at: Option<Instant>,
    /// When a crash-looping container last restarted (the controller's clock).
    restarted_at: Instant,
}

/// One change of a Deployment or pod, as watchers receive it.
struct WatchEvent {
    rv: u64,
    resource: &'static str,
    kind: &'static str,
    obj: Value,
}

/// A watch request, streamed by `serve_connection` after the handler ran.
#[derive(Debug, Clone)]
struct WatchReq {
    resource: &'static str,
    selector: String,
    /// `None`: start with the current objects as ADDED events.
    from: Option<u64>,
    timeout: Duration,
    bookmarks: bool,
}

struct State {
    rv: u64,
    seq: u64,
    deployments: BTreeMap<String, Value>,
    secrets: BTreeMap<String, Value>,
    pods: BTreeMap<String, PodRec>,
    modes: BTreeMap<String, PodMode>,
    composer_tokens: Vec<String>,
    fault: Fault,
    log_lines: usize,
    seen: Vec<Seen>,
    schema_errors: Vec<String>,
    forbidden: Vec<String>,
    /// Watch history, in resourceVersion order.
    events: Vec<WatchEvent>,
    /// The resourceVersion of the last event.
    emitted: u64,
    /// What watchers last saw of each Deployment and pod (`publish` diffs against it).
    published: BTreeMap<(&'static str, String), Value>,
    /// A watch from a resourceVersion below this gets `410 Gone` (its events are gone).
    compacted: u64,
    /// Bumped by `expire_watches`: open streams end with a 410 ERROR event.
    epoch: u64,
    /// How often a watch that asked for bookmarks gets one.
    bookmark_every: Duration,
    /// How long a crash-looping container waits between restarts.
    crash_every: Duration,
}

struct Rule {
    groups: Vec<String>,
    resources: Vec<String>,
    verbs: Vec<String>,
}

struct Shared {
    namespace: String,
    admin_token: String,
    composer_cert_der: Vec<u8>,
    role: Vec<Rule>,
    deployment_schema: jsonschema::Validator,
    secret_schema: jsonschema::Validator,
    state: Mutex<State>,
    stop: AtomicBool,
    streams: Mutex<Vec<TcpStream>>,
    /// Set by `deny_watch`: the composer's Role as it was before it had `watch`.
    deny_watch: AtomicBool,
}

/// The running server. Dropping it stops it.
pub struct K8sApi {
    pub url: String,
    pub port: u16,
    pub namespace: String,
    pub ca_pem: String,
    pub admin_token: String,
    /// The composer's client certificate and key (PEM), as the Role binds it.
    pub client_cert_pem: String,
    pub client_key_pem: String,
    shared: Arc<Shared>,
    addr: SocketAddr,
    accept: Option<JoinHandle<()>>,
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn load_schema(file: &str) -> jsonschema::Validator {
    let path = repo().join("tests/fixtures/k8s-schemas").join(file);
    let schema: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    jsonschema::validator_for(&schema).unwrap()
}

/// The Role's rules, read from the shipped manifest.
fn load_role() -> Vec<Rule> {
    let text = std::fs::read_to_string(repo().join("packaging/kubernetes/role.yaml")).unwrap();
    let role: Value = serde_norway::from_str(&text).unwrap();
    assert_eq!(role["kind"], "Role");
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    };
    role["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| Rule {
            groups: strings(&r["apiGroups"]),
            resources: strings(&r["resources"]),
            verbs: strings(&r["verbs"]),
        })
        .collect()
}

struct Pki {
    ca_pem: String,
    ca_der: CertificateDer<'static>,
    server_chain: Vec<CertificateDer<'static>>,
    server_key: PrivateKeyDer<'static>,
    client_cert_pem: String,
    client_cert_der: Vec<u8>,
    client_key_pem: String,
}

fn make_pki() -> Pki {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "test-kubernetes-ca");
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let server_key = KeyPair::generate().unwrap();
    let mut sp =
        CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
    sp.distinguished_name
        .push(DnType::CommonName, "kube-apiserver");
    let server_cert = sp.signed_by(&server_key, &issuer).unwrap();
    let client_key = KeyPair::generate().unwrap();
    let mut cp = CertificateParams::new(Vec::<String>::new()).unwrap();
    cp.distinguished_name
        .push(DnType::CommonName, COMPOSER_USER);
    let client_cert = cp.signed_by(&client_key, &issuer).unwrap();
    Pki {
        ca_pem: ca_cert.pem(),
        ca_der: ca_cert.der().clone(),
        server_chain: vec![server_cert.der().clone()],
        server_key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(server_key.serialize_der())),
        client_cert_pem: client_cert.pem(),
        client_cert_der: client_cert.der().to_vec(),
        client_key_pem: client_key.serialize_pem(),
    }
}

fn tls_config(pki: &Pki) -> Arc<rustls::ServerConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(pki.ca_der.clone()).unwrap();
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .allow_unauthenticated()
    .build()
    .unwrap();
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(pki.server_chain.clone(), pki.server_key.clone_key())
        .unwrap();
    // kubectl would pick HTTP/2 if offered; HTTP/1.1 is all this server speaks.
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(cfg)
}

impl K8sApi {
    /// Starts a server for namespace `connectors`.
    pub fn start() -> K8sApi {
        K8sApi::start_in("connectors")
    }

    /// Starts a server whose composer Role is bound in `namespace`.
    pub fn start_in(namespace: &str) -> K8sApi {
        let pki = make_pki();
        let tls = tls_config(&pki);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let admin_token = format!("admin-token-{}", std::process::id());
        let shared = Arc::new(Shared {
            namespace: namespace.to_string(),
            admin_token: admin_token.clone(),
            composer_cert_der: pki.client_cert_der.clone(),
            role: load_role(),
            deployment_schema: load_schema("deployment-apps-v1.json"),
            secret_schema: load_schema("secret-v1.json"),
            state: Mutex::new(State {
                rv: 1000,
                seq: 0,
                deployments: BTreeMap::new(),
                secrets: BTreeMap::new(),
                pods: BTreeMap::new(),
                modes: BTreeMap::new(),
                composer_tokens: vec!["composer-token-1".into()],
                fault: Fault::None,
                log_lines: 150,
                seen: Vec::new(),
                schema_errors: Vec::new(),
                forbidden: Vec::new(),
                events: Vec::new(),
                emitted: 1000,
                published: BTreeMap::new(),
                compacted: 0,
                epoch: 0,
                bookmark_every: Duration::from_secs(1),
                crash_every: Duration::from_secs(3),
            }),
            stop: AtomicBool::new(false),
            streams: Mutex::new(Vec::new()),
            deny_watch: AtomicBool::new(false),
        });
        let s = Arc::clone(&shared);
        let accept = std::thread::spawn(move || accept_loop(listener, tls, s));
        let s = Arc::clone(&shared);
        std::thread::spawn(move || controller(&s));
        K8sApi {
            url: format!("https://127.0.0.1:{}", addr.port()),
            port: addr.port(),
            namespace: namespace.to_string(),
            ca_pem: pki.ca_pem,
            admin_token,
            client_cert_pem: pki.client_cert_pem,
            client_key_pem: pki.client_key_pem,
            shared,
            addr,
            accept: Some(accept),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.shared.state.lock().unwrap()
    }

    /// The composer's current bearer token.
    pub fn composer_token(&self) -> String {
        self.state().composer_tokens.last().cloned().unwrap()
    }

    /// Replaces the composer token: the old one is refused from now on.
    pub fn rotate_composer_token(&self) -> String {
        let mut st = self.state();
        let next = format!("composer-token-{}", st.composer_tokens.len() + 1);
        st.composer_tokens = vec![next.clone()];
        next
    }

    pub fn set_fault(&self, f: Fault) {
        self.state().fault = f;
    }

    /// Sets what the pods of Deployment `name` do, now and from then on.
    pub fn set_mode(&self, name: &str, mode: PodMode) {
        let mut st = self.state();
        st.modes.insert(name.to_string(), mode);
        let rv = bump(&mut st);
        for p in st
            .pods
            .values_mut()
            .filter(|p| p.owner == name && p.lists_left.is_none())
        {
            let containers = p.obj["spec"]["containers"].clone();
            p.obj["status"] = pod_status(name, &containers, mode, &p.obj["status"]);
            p.obj["metadata"]["resourceVersion"] = json!(rv);
        }
    }

    pub fn set_log_lines(&self, n: usize) {
        self.state().log_lines = n;
    }

    /// Deletes a pod as an admin would (`kubectl delete pod`): it terminates and
    /// its ReplicaSet makes a new one at once.
    pub fn delete_pod(&self, name: &str) -> bool {
        let mut st = self.state();
        let ns = self.namespace.clone();
        let deleted = delete_pod(&mut st, &ns, name);
        publish(&mut st);
        deleted
    }

    /// Takes `watch` out of the composer's Role (a cluster with an older manifest).
    pub fn deny_watch(&self) {
        self.shared.deny_watch.store(true, Ordering::SeqCst);
    }

    /// Compacts the watch history and ends every open watch with `410 Gone`,
    /// as an API server does when its watch cache moves past a watcher.
    pub fn expire_watches(&self) {
        let mut st = self.state();
        publish(&mut st);
        // A watch from before the last event misses events: too old. From the
        // last one on, nothing is missing.
        st.compacted = st.emitted;
        st.events.clear();
        st.epoch += 1;
    }

    /// Watch events so far (`(type, resource, name)`), oldest first.
    pub fn watch_events(&self) -> Vec<(String, String, String)> {
        let st = self.state();
        st.events
            .iter()
            .map(|e| {
                let name = e.obj["metadata"]["name"].as_str().unwrap_or("").to_string();
                (e.kind.to_string(), e.resource.to_string(), name)
            })
            .collect()
    }

    /// Deployment and pod listings so far.
    pub fn lists(&self) -> (usize, usize) {
        (
            self.count("list", "deployments"),
            self.count("list", "pods"),
        )
    }

    /// Requests of `verb` (`list`, `watch`, `create` …) on `resource` so far.
    pub fn count(&self, verb: &str, resource: &str) -> usize {
        self.seen()
            .iter()
            .filter(|s| s.verb == verb && s.path.ends_with(&format!("/{resource}")))
            .count()
    }

    /// Every request so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.state().seen.clone()
    }

    pub fn clear_seen(&self) {
        self.state().seen.clear();
    }

    /// Schema violations of written objects (must stay empty).
    pub fn schema_errors(&self) -> Vec<String> {
        self.state().schema_errors.clone()
    }

    /// Requests refused by the Role (must stay empty for the composer).
    pub fn forbidden(&self) -> Vec<String> {
        self.state().forbidden.clone()
    }

    /// Forgets the refused requests a test provoked on purpose.
    pub fn clear_forbidden(&self) {
        self.state().forbidden.clear();
    }

    /// The checks every test ends with: nothing outside the Role, nothing off-schema.
    pub fn assert_clean(&self) {
        assert_eq!(
            self.forbidden(),
            Vec::<String>::new(),
            "requests outside the Role"
        );
        assert_eq!(
            self.schema_errors(),
            Vec::<String>::new(),
            "objects off the v1.32 schemas"
        );
    }

    pub fn deployment(&self, name: &str) -> Option<Value> {
        self.state().deployments.get(name).cloned()
    }

    pub fn deployment_names(&self) -> Vec<String> {
        self.state().deployments.keys().cloned().collect()
    }

    /// A Secret as stored (`data` base64, as the API keeps it).
    pub fn secret(&self, name: &str) -> Option<Value> {
        self.state().secrets.get(name).cloned()
    }

    /// A decoded Secret value.
    pub fn secret_value(&self, name: &str, key: &str) -> Option<String> {
        let s = self.secret(name)?;
        let b = base64::engine::general_purpose::STANDARD
            .decode(s["data"][key].as_str()?)
            .ok()?;
        String::from_utf8(b).ok()
    }

    /// Deletes a Secret behind the composer's back.
    pub fn remove_secret(&self, name: &str) -> bool {
        self.state().secrets.remove(name).is_some()
    }

    pub fn pods(&self) -> Vec<Value> {
        self.state().pods.values().map(|p| p.obj.clone()).collect()
    }

    /// Stores an object as another client would (admin, no Role, no validation
    /// of the selector), e.g. a Deployment made by the existing composer.
    pub fn insert_deployment(&self, mut body: Value) {
        let mut st = self.state();
        let name = body["metadata"]["name"].as_str().unwrap().to_string();
        fill_meta(&mut st, &mut body, &self.namespace, None);
        body["metadata"]["generation"] = json!(1);
        st.deployments.insert(name.clone(), body);
        reconcile(&mut st, &self.namespace, &name);
    }

    /// Stores a Secret as another user of the namespace would (`stringData` or `data`).
    pub fn insert_secret(&self, mut body: Value) {
        let mut st = self.state();
        let name = body["metadata"]["name"].as_str().unwrap().to_string();
        normalize_secret(&mut body, None).unwrap();
        fill_meta(&mut st, &mut body, &self.namespace, None);
        st.secrets.insert(name, body);
    }

    /// A kubeconfig for the admin (kubectl), CA inline.
    pub fn kubeconfig_admin(&self, dir: &Path) -> PathBuf {
        let user = format!("{{token: {}}}", self.admin_token);
        self.kubeconfig(dir, "admin.kubeconfig", &user, &self.ca_data_line())
    }

    /// A kubeconfig for the composer with its client certificate (files) and CA file.
    pub fn kubeconfig_client_cert(&self, dir: &Path) -> PathBuf {
        std::fs::write(dir.join("ca.crt"), &self.ca_pem).unwrap();
        std::fs::write(dir.join("composer.crt"), &self.client_cert_pem).unwrap();
        std::fs::write(dir.join("composer.key"), &self.client_key_pem).unwrap();
        let user = "{client-certificate: composer.crt, client-key: composer.key}";
        self.kubeconfig(
            dir,
            "cert.kubeconfig",
            user,
            "certificate-authority: ca.crt",
        )
    }

    /// A kubeconfig for the composer with a bearer token.
    pub fn kubeconfig_token(&self, dir: &Path) -> PathBuf {
        let user = format!("{{token: {}}}", self.composer_token());
        self.kubeconfig(dir, "token.kubeconfig", &user, &self.ca_data_line())
    }

    /// A kubeconfig whose user runs `command` (an exec credential plugin) with
    /// `XTM_TEST_TOKEN` set to the composer token and `XTM_TEST_RUNS` to a file
    /// the plugin appends to at each run.
    pub fn kubeconfig_exec(&self, dir: &Path, command: &Path) -> PathBuf {
        let user = format!(
            "{{exec: {{apiVersion: client.authentication.k8s.io/v1, command: '{}', interactiveMode: Never, \
             env: [{{name: XTM_TEST_TOKEN, value: '{}'}}, {{name: XTM_TEST_RUNS, value: '{}'}}]}}}}",
            command.display(),
            self.composer_token(),
            dir.join("exec-runs").display()
        );
        self.kubeconfig(dir, "exec.kubeconfig", &user, &self.ca_data_line())
    }

    fn ca_data_line(&self) -> String {
        let b64 = base64::engine::general_purpose::STANDARD.encode(&self.ca_pem);
        format!("certificate-authority-data: {b64}")
    }

    fn kubeconfig(&self, dir: &Path, file: &str, user: &str, ca: &str) -> PathBuf {
        let text = format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: test\n\
             clusters:\n- name: test\n  cluster:\n    server: {}\n    {ca}\n\
             contexts:\n- name: test\n  context: {{cluster: test, user: u, namespace: {}}}\n\
             users:\n- name: u\n  user: {user}\n",
            self.url, self.namespace
        );
        let path = dir.join(file);
        std::fs::write(&path, text).unwrap();
        path
    }

    /// Writes a service-account directory (token, ca.crt, namespace) into `dir`.
    pub fn service_account_dir(&self, dir: &Path) {
        std::fs::write(dir.join("token"), self.composer_token()).unwrap();
        std::fs::write(dir.join("ca.crt"), &self.ca_pem).unwrap();
        std::fs::write(dir.join("namespace"), &self.namespace).unwrap();
    }
}

impl Drop for K8sApi {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
        if let Some(h) = self.accept.take() {
            let _ = h.join();
        }
        for s in self.shared.streams.lock().unwrap().drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}

fn accept_loop(listener: TcpListener, tls: Arc<rustls::ServerConfig>, shared: Arc<Shared>) {
    for conn in listener.incoming() {
        if shared.stop.load(Ordering::SeqCst) {
            break;
        }
        let Ok(tcp) = conn else { continue };
        if let Ok(c) = tcp.try_clone() {
            shared.streams.lock().unwrap().push(c);
        }
        let (tls, shared) = (Arc::clone(&tls), Arc::clone(&shared));
        std::thread::spawn(move || serve_connection(tcp, tls, shared));
    }
}

/// A parsed HTTP/1.1 request.
struct HttpRequest {
    method: String,
    path: String,
    query: BTreeMap<String, String>,
    raw_query: String,
    headers: BTreeMap<String, String>,
    body: Vec<u8>,
}

struct HttpResponse {
    code: u16,
    content_type: &'static str,
    body: Vec<u8>,
    /// A watch to stream instead of `body`.
    watch: Option<Box<WatchReq>>,
}

fn serve_connection(tcp: TcpStream, tls: Arc<rustls::ServerConfig>, shared: Arc<Shared>) {
    let Ok(conn) = rustls::ServerConnection::new(tls) else {
        return;
    };
    let mut stream = rustls::StreamOwned::new(conn, tcp);
    // Finish the handshake first: the client certificate decides the identity.
    while stream.conn.is_handshaking() {
        if stream.conn.complete_io(&mut stream.sock).is_err() {
            return;
        }
    }
    let cert_user = stream
        .conn
        .peer_certificates()
        .and_then(|c| c.first())
        .filter(|c| c.as_ref() == shared.composer_cert_der.as_slice())
        .map(|_| COMPOSER_USER.to_string());
    let mut reader = BufReader::new(stream);
    loop {
        let Some(req) = read_request(&mut reader) else {
            return;
        };
        let close = req
            .headers
            .get("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"));
        let resp = handle(&shared, &req, cert_user.as_deref());
        if let Some(w) = &resp.watch {
            // A watch ends its connection (the client reconnects for the next one).
            let _ = stream_watch(reader.get_mut(), &shared, w);
            return;
        }
        let reason = reason_phrase(resp.code);
        let head = format!(
            "HTTP/1.1 {} {reason}\r\nContent-Type: {}\r\nContent-Length: {}\r\nAudit-Id: test\r\n\r\n",
            resp.code,
            resp.content_type,
            resp.body.len()
        );
        let w = reader.get_mut();
        if w.write_all(head.as_bytes())
            .and_then(|_| w.write_all(&resp.body))
            .and_then(|_| w.flush())
            .is_err()
        {
            return;
        }
        if close {
            return;
        }
    }
}

fn read_request(r: &mut impl BufRead) -> Option<HttpRequest> {
    let mut line = String::new();
    if r.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_string();
    let target = parts.next()?.to_string();
    let mut headers = BTreeMap::new();
    loop {
        let mut h = String::new();
        r.read_line(&mut h).ok()?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':')?;
        headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
    }
    let len: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; len];
    r.read_exact(&mut body).ok()?;
    let (path, raw_query) = target.split_once('?').unwrap_or((&target, ""));
    let query = raw_query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect();
    Some(HttpRequest {
        method,
        path: decode_with(path, false),
        query,
        raw_query: raw_query.to_string(),
        headers,
        body,
    })
}

/// Percent-decoding; `+` is a space only in queries (Go's `url.QueryEscape`).
fn decode_with(s: &str, plus_is_space: bool) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = b
            .get(i + 1..i + 3)
            .and_then(|h| u8::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok());
        match (b[i], hex) {
            (b'%', Some(v)) => {
                out.push(v);
                i += 3;
                continue;
            }
            (b'+', _) if plus_is_space => out.push(b' '),
            (c, _) => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn decode(s: &str) -> String {
    decode_with(s, true)
}

fn reason_phrase(code: u16) -> &'static str {
    match code {
        200 => "OK",
        201 => "Created",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        415 => "Unsupported Media Type",
        422 => "Unprocessable Entity",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

fn json_resp(code: u16, v: &Value) -> HttpResponse {
    HttpResponse {
        code,
        content_type: "application/json",
        body: serde_json::to_vec(v).unwrap(),
        watch: None,
    }
}

/// A `Status` error body, as the API server sends it.
fn status(code: u16, reason: &str, message: &str, name: &str, kind: &str) -> HttpResponse {
    let group = if kind == "deployments" { "apps" } else { "" };
    json_resp(
        code,
        &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason,
            "details": {"name": name, "group": group, "kind": kind}, "code": code}),
    )
}

/// What a resource request is about.
struct Target {
    group: &'static str,
    resource: &'static str,
    namespace: String,
    name: Option<String>,
    sub: Option<String>,
}

fn parse_target(path: &str) -> Option<Target> {
    let seg: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, rest) = match seg.as_slice() {
        ["api", "v1", "namespaces", rest @ ..] => ("", rest),
        ["apis", "apps", "v1", "namespaces", rest @ ..] => ("apps", rest),
        _ => return None,
    };
    let (ns, resource, name, sub) = match rest {
        [ns, r] => (ns, r, None, None),
        [ns, r, n] => (ns, r, Some(n.to_string()), None),
        [ns, r, n, s] => (ns, r, Some(n.to_string()), Some(s.to_string())),
        _ => return None,
    };
    let resource = match (group, *resource) {
        ("", "pods") => "pods",
        ("", "secrets") => "secrets",
        ("apps", "deployments") => "deployments",
        _ => return None,
    };
    Some(Target {
        group,
        resource,
        namespace: ns.to_string(),
        name,
        sub,
    })
}

fn verb(method: &str, t: &Target, query: &BTreeMap<String, String>) -> &'static str {
    match (method, t.name.is_some()) {
        ("GET", _) if query.get("watch").is_some_and(|w| w == "true" || w == "1") => "watch",
        ("GET", true) => "get",
        ("GET", false) => "list",
        ("POST", _) => "create",
        ("PUT", _) => "update",
        ("PATCH", _) => "patch",
        ("DELETE", true) => "delete",
        ("DELETE", false) => "deletecollection",
        _ => "unknown",
    }
}

fn allowed(shared: &Shared, t: &Target, verb: &str) -> bool {
    let resource = match &t.sub {
        Some(s) => format!("{}/{s}", t.resource),
        None => t.resource.to_string(),
    };
    if verb == "watch" && shared.deny_watch.load(Ordering::SeqCst) {
        return false;
    }
    t.namespace == shared.namespace
        && shared.role.iter().any(|r| {
            r.groups.iter().any(|g| g == t.group || g == "*")
                && r.resources.iter().any(|x| *x == resource || x == "*")
                && r.verbs.iter().any(|v| v == verb || v == "*")
        })
}

fn authenticate(shared: &Shared, req: &HttpRequest, cert_user: Option<&str>) -> Option<String> {
    match req
        .headers
        .get("authorization")
        .and_then(|h| h.strip_prefix("Bearer "))
    {
        Some(t) if t == shared.admin_token => Some("admin".into()),
        Some(t)
            if shared
                .state
                .lock()
                .unwrap()
                .composer_tokens
                .iter()
                .any(|c| c == t) =>
        {
            Some(COMPOSER_USER.into())
        }
        Some(_) => None,
        None => cert_user.map(String::from),
    }
}

fn handle(shared: &Shared, req: &HttpRequest, cert_user: Option<&str>) -> HttpResponse {
    let user = authenticate(shared, req, cert_user);
    let resp = route(shared, req, user.as_deref());
    let mut st = shared.state.lock().unwrap();
    publish(&mut st);
    st.seen.push(Seen {
        verb: parse_target(&req.path).map_or("", |t| verb(&req.method, &t, &req.query)),
        method: req.method.clone(),
        path: req.path.clone(),
        query: req.raw_query.clone(),
        user: user.unwrap_or_else(|| "anonymous".into()),
        content_type: req.headers.get("content-type").cloned().unwrap_or_default(),
        body: String::from_utf8_lossy(&req.body).into_owned(),
        status: resp.code,
    });
    resp
}

fn route(shared: &Shared, req: &HttpRequest, user: Option<&str>) -> HttpResponse {
    let Some(user) = user else {
        return status(401, "Unauthorized", "Unauthorized", "", "");
    };
    if let Some(doc) = discovery(&req.path) {
        return json_resp(200, &doc);
    }
    let Some(t) = parse_target(&req.path) else {
        return status(
            404,
            "NotFound",
            "the server could not find the requested resource",
            "",
            "",
        );
    };
    let verb = verb(&req.method, &t, &req.query);
    if user == COMPOSER_USER && !allowed(shared, &t, verb) {
        let res = t
            .sub
            .as_ref()
            .map_or(t.resource.to_string(), |s| format!("{}/{s}", t.resource));
        let msg = format!(
            "{res} is forbidden: User \"system:serviceaccount:{}:{COMPOSER_USER}\" cannot {verb} resource \"{res}\" \
             in API group \"{}\" in the namespace \"{}\"",
            shared.namespace, t.group, t.namespace
        );
        shared
            .state
            .lock()
            .unwrap()
            .forbidden
            .push(format!("{verb} {res} in {}", t.namespace));
        return status(
            403,
            "Forbidden",
            &msg,
            t.name.as_deref().unwrap_or(""),
            t.resource,
        );
    }
    let fault = shared.state.lock().unwrap().fault;
    match fault {
        Fault::None => {}
        Fault::Status(code) => {
            return status(code, "InternalError", "injected fault", "", t.resource);
        }
        Fault::Hang(d) => {
            let start = Instant::now();
            while start.elapsed() < d && !shared.stop.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(20));
            }
            return status(503, "ServiceUnavailable", "injected hang", "", t.resource);
        }
    }
    if verb == "watch" {
        return watch_request(shared, req, &t);
    }
    let mut st = shared.state.lock().unwrap();
    match t.resource {
        "deployments" => deployments(shared, &mut st, req, &t, verb),
        "secrets" => secrets(shared, &mut st, req, &t, verb),
        _ => pods(&mut st, req, &t, verb),
    }
}

fn discovery(path: &str) -> Option<Value> {
    let r = |name: &str, kind: &str, short: &[&str], verbs: &[&str]| {
        json!({"name": name, "singularName": if name.contains('/') { "" } else { &name[..name.len() - 1] },
            "namespaced": true, "kind": kind, "verbs": verbs, "shortNames": short})
    };
    let all = ["create", "delete", "get", "list", "patch", "update"];
    Some(match path.trim_end_matches('/') {
        "/version" => {
            json!({"major": "1", "minor": "32", "gitVersion": "v1.32.0", "gitCommit": "test",
            "gitTreeState": "clean", "buildDate": "2025-01-01T00:00:00Z", "goVersion": "go1.23",
            "compiler": "gc", "platform": "linux/amd64"})
        }
        "/api" => json!({"kind": "APIVersions", "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}]}),
        "/apis" => json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": [
            {"name": "apps", "versions": [{"groupVersion": "apps/v1", "version": "v1"}],
             "preferredVersion": {"groupVersion": "apps/v1", "version": "v1"}}]}),
        "/api/v1" => json!({"kind": "APIResourceList", "groupVersion": "v1", "resources": [
            r("pods", "Pod", &["po"], &all), r("pods/log", "Pod", &[], &["get"]),
            r("secrets", "Secret", &[], &all)]}),
        "/apis/apps/v1" => {
            let mut scale = r(
                "deployments/scale",
                "Scale",
                &[],
                &["get", "patch", "update"],
            );
            scale["group"] = json!("autoscaling");
            scale["version"] = json!("v1");
            json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "apps/v1", "resources": [
                r("deployments", "Deployment", &["deploy"], &all), scale]})
        }
        _ => return None,
    })
}

fn bump(st: &mut State) -> String {
    st.rv += 1;
    st.rv.to_string()
}

fn now() -> String {
    let t = xtm_composer::time::format_rfc3339(SystemTime::now());
    format!("{}Z", &t[..19])
}

/// Server-owned metadata on a new or updated object.
fn fill_meta(st: &mut State, obj: &mut Value, ns: &str, old: Option<&Value>) {
    let rv = bump(st);
    let m = &mut obj["metadata"];
    m["namespace"] = json!(ns);
    m["resourceVersion"] = json!(rv);
    match old {
        Some(o) => {
            m["uid"] = o["metadata"]["uid"].clone();
            m["creationTimestamp"] = o["metadata"]["creationTimestamp"].clone();
        }
        None => {
            st.seq += 1;
            m["uid"] = json!(format!("00000000-0000-4000-8000-{:012}", st.seq));
            m["creationTimestamp"] = json!(now());
        }
    }
}

/// RFC 7386 JSON merge patch.
fn merge_patch(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(p) => {
            if !target.is_object() {
                *target = json!({});
            }
            let t = target.as_object_mut().unwrap();
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        _ => *target = patch.clone(),
    }
}

/// Validates against the official schema; a violation is recorded and answered
/// 422 with one `cause` per error, as the API server does.
fn check_schema(shared: &Shared, st: &mut State, kind: &str, obj: &Value) -> Option<HttpResponse> {
    let v = if kind == "deployments" {
        &shared.deployment_schema
    } else {
        &shared.secret_schema
    };
    let causes: Vec<(String, String)> = v
        .iter_errors(obj)
        .map(|e| (e.instance_path().to_string(), e.to_string()))
        .collect();
    if causes.is_empty() {
        return None;
    }
    let name = obj["metadata"]["name"].as_str().unwrap_or("?");
    let text: Vec<String> = causes.iter().map(|(f, m)| format!("{f}: {m}")).collect();
    let (kind_name, group) = if kind == "deployments" {
        ("Deployment", "apps")
    } else {
        ("Secret", "")
    };
    let message = format!("{kind_name} \"{name}\" is invalid: [{}]", text.join(", "));
    st.schema_errors.push(message.clone());
    let causes: Vec<Value> = causes
        .iter()
        .map(|(f, m)| json!({"reason": "FieldValueInvalid", "message": m, "field": f}))
        .collect();
    Some(json_resp(
        422,
        &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message,
            "reason": "Invalid", "details": {"name": name, "group": group, "kind": kind_name, "causes": causes}, "code": 422}),
    ))
}

fn labels_of(v: &Value) -> BTreeMap<String, String> {
    v.as_object()
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

/// `k=v`, `k==v`, `k!=v`, `k`, `!k`, comma-separated.
fn selector_matches(selector: &str, labels: &BTreeMap<String, String>) -> bool {
    selector
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .all(|term| {
            if let Some((k, v)) = term.split_once("!=") {
                labels.get(k.trim()).map(String::as_str) != Some(v.trim())
            } else if let Some((k, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
                labels.get(k.trim()).map(String::as_str) == Some(v.trim())
            } else if let Some(k) = term.strip_prefix('!') {
                !labels.contains_key(k)
            } else {
                labels.contains_key(term)
            }
        })
}

fn list_of(kind: &str, api: &str, rv: &str, items: Vec<Value>) -> HttpResponse {
    json_resp(
        200,
        &json!({"kind": kind, "apiVersion": api, "metadata": {"resourceVersion": rv}, "items": items}),
    )
}

fn go_map(m: &BTreeMap<String, String>) -> String {
    let inner: Vec<String> = m.iter().map(|(k, v)| format!("\"{k}\":\"{v}\"")).collect();
    format!("map[string]string{{{}}}", inner.join(", "))
}

/// API validation beyond the schema: selector/template agreement, images, names.
fn validate_deployment(d: &Value, old: Option<&Value>) -> Result<(), String> {
    let name = d["metadata"]["name"].as_str().unwrap_or("");
    let prefix = format!("Deployment.apps \"{name}\" is invalid");
    let sel = labels_of(&d["spec"]["selector"]["matchLabels"]);
    if let Some(o) = old
        && o["spec"]["selector"] != d["spec"]["selector"]
    {
        return Err(format!(
            "{prefix}: spec.selector: Invalid value: v1.LabelSelector{{MatchLabels:{}}}: field is immutable",
            go_map(&sel)
        ));
    }
    if sel.is_empty() {
        return Err(format!("{prefix}: spec.selector: Required value"));
    }
    let tl = labels_of(&d["spec"]["template"]["metadata"]["labels"]);
    if sel.iter().any(|(k, v)| tl.get(k) != Some(v)) {
        return Err(format!(
            "{prefix}: spec.template.metadata.labels: Invalid value: {}: `selector` does not match template `labels`",
            go_map(&tl)
        ));
    }
    let containers = d["spec"]["template"]["spec"]["containers"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if containers.is_empty() {
        return Err(format!(
            "{prefix}: spec.template.spec.containers: Required value"
        ));
    }
    for (i, c) in containers.iter().enumerate() {
        if c["image"].as_str().is_none_or(str::is_empty) {
            return Err(format!(
                "{prefix}: spec.template.spec.containers[{i}].image: Required value"
            ));
        }
    }
    let dns = |s: &str| {
        !s.is_empty()
            && s.len() <= 63
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !s.starts_with('-')
            && !s.ends_with('-')
    };
    if !dns(name) {
        return Err(format!(
            "{prefix}: metadata.name: Invalid value: \"{name}\": a lowercase RFC 1123 label"
        ));
    }
    Ok(())
}

fn body_json(req: &HttpRequest) -> Result<Value, HttpResponse> {
    serde_json::from_slice(&req.body)
        .map_err(|e| status(400, "BadRequest", &format!("invalid JSON: {e}"), "", ""))
}

fn patched(req: &HttpRequest, current: &Value) -> Result<Value, HttpResponse> {
    let ctype = req
        .headers
        .get("content-type")
        .map(String::as_str)
        .unwrap_or("");
    // Strategic merge patch is served as a merge patch: enough for kubectl's uses here.
    if !ctype.starts_with("application/merge-patch+json")
        && !ctype.starts_with("application/strategic-merge-patch+json")
    {
        return Err(status(
            415,
            "UnsupportedMediaType",
            &format!(
                "the body of the request was in an unknown format - accepted media types include: application/merge-patch+json, application/strategic-merge-patch+json (got {ctype})"
            ),
            "",
            "",
        ));
    }
    let patch = body_json(req)?;
    let mut out = current.clone();
    merge_patch(&mut out, &patch);
    Ok(out)
}

fn deployments(
    shared: &Shared,
    st: &mut State,
    req: &HttpRequest,
    t: &Target,
    verb: &str,
) -> HttpResponse {
    let ns = &t.namespace;
    if *ns != shared.namespace && verb != "list" {
        return status(
            404,
            "NotFound",
            &format!("namespaces \"{ns}\" not found"),
            ns,
            "namespaces",
        );
    }
    if t.sub.as_deref() == Some("scale") {
        return scale(shared, st, req, t, verb);
    }
    let name = t.name.clone().unwrap_or_default();
    let not_found = || {
        status(
            404,
            "NotFound",
            &format!("deployments.apps \"{name}\" not found"),
            &name,
            "deployments",
        )
    };
    match verb {
        "list" => {
            let sel = req.query.get("labelSelector").cloned().unwrap_or_default();
            let items = if *ns == shared.namespace {
                st.deployments
                    .values()
                    .filter(|d| selector_matches(&sel, &labels_of(&d["metadata"]["labels"])))
                    .cloned()
                    .collect()
            } else {
                Vec::new()
            };
            let rv = st.rv.to_string();
            list_of("DeploymentList", "apps/v1", &rv, items)
        }
        "get" => st
            .deployments
            .get(&name)
            .map_or_else(not_found, |d| json_resp(200, d)),
        "create" => {
            let mut d = match body_json(req) {
                Ok(d) => d,
                Err(r) => return r,
            };
            let name = d["metadata"]["name"].as_str().unwrap_or("").to_string();
            if let Some(r) = check_schema(shared, st, "deployments", &d) {
                return r;
            }
            if let Err(msg) = validate_deployment(&d, None) {
                return status(422, "Invalid", &msg, &name, "deployments");
            }
            if st.deployments.contains_key(&name) {
                let msg = format!("deployments.apps \"{name}\" already exists");
                return status(409, "AlreadyExists", &msg, &name, "deployments");
            }
            fill_meta(st, &mut d, ns, None);
            d["metadata"]["generation"] = json!(1);
            d["spec"]
                .as_object_mut()
                .unwrap()
                .entry("replicas")
                .or_insert(json!(1));
            st.deployments.insert(name.clone(), d);
            reconcile(st, ns, &name);
            json_resp(201, &st.deployments[&name])
        }
        "update" | "patch" => {
            let Some(old) = st.deployments.get(&name).cloned() else {
                return not_found();
            };
            let new = if verb == "patch" {
                patched(req, &old)
            } else {
                body_json(req)
            };
            let mut d = match new {
                Ok(d) => d,
                Err(r) => return r,
            };
            if verb == "update" {
                let sent = d["metadata"]["resourceVersion"].as_str().map(String::from);
                if sent.is_some_and(|rv| {
                    Some(rv.as_str()) != old["metadata"]["resourceVersion"].as_str()
                }) {
                    let msg = format!(
                        "Operation cannot be fulfilled on deployments.apps \"{name}\": the object has been modified; please apply your changes to the latest version and try again"
                    );
                    return status(409, "Conflict", &msg, &name, "deployments");
                }
            }
            if let Some(r) = check_schema(shared, st, "deployments", &d) {
                return r;
            }
            if let Err(msg) = validate_deployment(&d, Some(&old)) {
                return status(422, "Invalid", &msg, &name, "deployments");
            }
            let spec_changed = d["spec"] != old["spec"];
            fill_meta(st, &mut d, ns, Some(&old));
            let generation =
                old["metadata"]["generation"].as_i64().unwrap_or(1) + i64::from(spec_changed);
            d["metadata"]["generation"] = json!(generation);
            d["status"] = old["status"].clone();
            st.deployments.insert(name.clone(), d);
            reconcile(st, ns, &name);
            json_resp(200, &st.deployments[&name])
        }
        "delete" => match st.deployments.remove(&name) {
            None => not_found(),
            Some(d) => {
                collect_garbage(st, &d["metadata"]["uid"]);
                reconcile(st, ns, &name);
                json_resp(
                    200,
                    &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                    "details": {"name": name, "group": "apps", "kind": "deployments", "uid": d["metadata"]["uid"]}}),
                )
            }
        },
        _ => status(
            405,
            "MethodNotAllowed",
            "method not allowed",
            &name,
            "deployments",
        ),
    }
}

/// The `deployments/{name}/scale` subresource (autoscaling/v1 Scale).
fn scale(
    shared: &Shared,
    st: &mut State,
    req: &HttpRequest,
    t: &Target,
    verb: &str,
) -> HttpResponse {
    let name = t.name.clone().unwrap_or_default();
    let Some(d) = st.deployments.get(&name).cloned() else {
        return status(
            404,
            "NotFound",
            &format!("deployments.apps \"{name}\" not found"),
            &name,
            "deployments",
        );
    };
    let sel: Vec<String> = labels_of(&d["spec"]["selector"]["matchLabels"])
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let as_scale = |d: &Value| {
        json!({"kind": "Scale", "apiVersion": "autoscaling/v1",
            "metadata": {"name": name, "namespace": t.namespace, "uid": d["metadata"]["uid"],
                "resourceVersion": d["metadata"]["resourceVersion"], "creationTimestamp": d["metadata"]["creationTimestamp"]},
            "spec": {"replicas": d["spec"]["replicas"]},
            "status": {"replicas": d["status"]["replicas"].as_i64().unwrap_or(0), "selector": sel.join(",")}})
    };
    let next = match verb {
        "get" => return json_resp(200, &as_scale(&d)),
        "patch" => patched(req, &as_scale(&d)),
        "update" => body_json(req),
        _ => {
            return status(
                405,
                "MethodNotAllowed",
                "method not allowed",
                &name,
                "deployments",
            );
        }
    };
    let s = match next {
        Ok(s) => s,
        Err(r) => return r,
    };
    let Some(replicas) = s["spec"]["replicas"].as_i64() else {
        return status(
            422,
            "Invalid",
            "Scale.autoscaling \"x\" is invalid: spec.replicas: Required value",
            &name,
            "deployments",
        );
    };
    let mut d2 = d.clone();
    d2["spec"]["replicas"] = json!(replicas);
    let _ = check_schema(shared, st, "deployments", &d2);
    fill_meta(st, &mut d2, &t.namespace, Some(&d));
    d2["metadata"]["generation"] = json!(d["metadata"]["generation"].as_i64().unwrap_or(1) + 1);
    st.deployments.insert(name.clone(), d2);
    reconcile(st, &t.namespace, &name);
    json_resp(200, &as_scale(&st.deployments[&name]))
}

fn secrets(
    shared: &Shared,
    st: &mut State,
    req: &HttpRequest,
    t: &Target,
    verb: &str,
) -> HttpResponse {
    let name = t.name.clone().unwrap_or_default();
    let not_found = || {
        status(
            404,
            "NotFound",
            &format!("secrets \"{name}\" not found"),
            &name,
            "secrets",
        )
    };
    match verb {
        "list" => {
            let sel = req.query.get("labelSelector").cloned().unwrap_or_default();
            let items = st
                .secrets
                .values()
                .filter(|s| selector_matches(&sel, &labels_of(&s["metadata"]["labels"])))
                .cloned()
                .collect();
            let rv = st.rv.to_string();
            list_of("SecretList", "v1", &rv, items)
        }
        "get" => st
            .secrets
            .get(&name)
            .map_or_else(not_found, |s| json_resp(200, s)),
        "create" | "update" => {
            let mut s = match body_json(req) {
                Ok(s) => s,
                Err(r) => return r,
            };
            let sname = s["metadata"]["name"].as_str().unwrap_or("").to_string();
            if let Some(r) = check_schema(shared, st, "secrets", &s) {
                return r;
            }
            let old = st.secrets.get(&sname).cloned();
            match (verb, &old) {
                ("create", Some(_)) => {
                    return status(
                        409,
                        "AlreadyExists",
                        &format!("secrets \"{sname}\" already exists"),
                        &sname,
                        "secrets",
                    );
                }
                ("update", None) => return not_found(),
                // `metadata.uid` in an update is a precondition (apiserver
                // `defaultUpdatedObjectInfo.Preconditions`): 409 when it differs.
                ("update", Some(o))
                    if s["metadata"]["uid"].is_string()
                        && s["metadata"]["uid"] != o["metadata"]["uid"] =>
                {
                    let msg = format!(
                        "Precondition failed: UID in precondition: {}, UID in object meta: {}",
                        s["metadata"]["uid"].as_str().unwrap_or(""),
                        o["metadata"]["uid"].as_str().unwrap_or("")
                    );
                    return status(409, "Conflict", &msg, &sname, "secrets");
                }
                ("update", _) if sname != name => {
                    return status(
                        400,
                        "BadRequest",
                        "the name of the object does not match the name on the URL",
                        &name,
                        "secrets",
                    );
                }
                _ => {}
            }
            if let Err(msg) = normalize_secret(&mut s, old.as_ref()) {
                return status(
                    422,
                    "Invalid",
                    &format!("Secret \"{sname}\" is invalid: {msg}"),
                    &sname,
                    "secrets",
                );
            }
            fill_meta(st, &mut s, &t.namespace, old.as_ref());
            let _ = check_schema(shared, st, "secrets", &s);
            st.secrets.insert(sname.clone(), s);
            json_resp(
                if verb == "create" { 201 } else { 200 },
                &st.secrets[&sname],
            )
        }
        "delete" => match st.secrets.get(&name) {
            None => not_found(),
            Some(old) if precondition_fails(req, old) => {
                let msg = format!(
                    "Precondition failed: UID in precondition: {}, UID in object meta: {}",
                    delete_uid(req).unwrap_or_default(),
                    old["metadata"]["uid"].as_str().unwrap_or("")
                );
                status(409, "Conflict", &msg, &name, "secrets")
            }
            Some(_) => {
                st.secrets.remove(&name);
                json_resp(
                    200,
                    &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"}),
                )
            }
        },
        _ => status(
            405,
            "MethodNotAllowed",
            "method not allowed",
            &name,
            "secrets",
        ),
    }
}

/// The UID precondition of a DELETE's `DeleteOptions` body, if any.
fn delete_uid(req: &HttpRequest) -> Option<String> {
    let body: Value = serde_json::from_slice(&req.body).ok()?;
    body["preconditions"]["uid"].as_str().map(String::from)
}

fn precondition_fails(req: &HttpRequest, current: &Value) -> bool {
    delete_uid(req).is_some_and(|uid| current["metadata"]["uid"].as_str() != Some(uid.as_str()))
}

/// The garbage collector: deleting an object deletes the Secrets whose
/// `ownerReferences` name its UID.
fn collect_garbage(st: &mut State, owner_uid: &Value) {
    st.secrets.retain(|_, s| {
        !s["metadata"]["ownerReferences"]
            .as_array()
            .is_some_and(|refs| refs.iter().any(|r| r["uid"] == *owner_uid))
    });
}

/// `stringData` into base64 `data`; type checks as the API does.
fn normalize_secret(s: &mut Value, old: Option<&Value>) -> Result<(), String> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let type_ = s["type"].as_str().unwrap_or("Opaque").to_string();
    s["type"] = json!(type_);
    if let Some(o) = old
        && o["type"] != s["type"]
    {
        return Err("type: Invalid value: field is immutable".into());
    }
    let mut data = s["data"].as_object().cloned().unwrap_or_default();
    if let Some(sd) = s
        .as_object_mut()
        .unwrap()
        .remove("stringData")
        .and_then(|v| v.as_object().cloned())
    {
        for (k, v) in sd {
            data.insert(k, json!(b64.encode(v.as_str().unwrap_or(""))));
        }
    }
    for k in data.keys() {
        if k.is_empty()
            || !k
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-._".contains(c))
        {
            return Err(format!("data[{k}]: Invalid value: a valid config key"));
        }
    }
    if type_ == "kubernetes.io/dockerconfigjson" {
        let doc = data
            .get(".dockerconfigjson")
            .and_then(|v| b64.decode(v.as_str()?).ok());
        if doc
            .and_then(|d| serde_json::from_slice::<Value>(&d).ok())
            .is_none()
        {
            return Err("data[.dockerconfigjson]: Invalid value: invalid JSON".into());
        }
    }
    s["data"] = Value::Object(data);
    Ok(())
}

fn pods(st: &mut State, req: &HttpRequest, t: &Target, verb: &str) -> HttpResponse {
    let name = t.name.clone().unwrap_or_default();
    let not_found = || {
        status(
            404,
            "NotFound",
            &format!("pods \"{name}\" not found"),
            &name,
            "pods",
        )
    };
    match (verb, t.sub.as_deref()) {
        ("list", None) => {
            age_pods(st);
            let sel = req.query.get("labelSelector").cloned().unwrap_or_default();
            let items = st
                .pods
                .values()
                .filter(|p| selector_matches(&sel, &labels_of(&p.obj["metadata"]["labels"])))
                .map(|p| p.obj.clone())
                .collect();
            let rv = st.rv.to_string();
            list_of("PodList", "v1", &rv, items)
        }
        ("get", None) => st
            .pods
            .get(&name)
            .map_or_else(not_found, |p| json_resp(200, &p.obj)),
        ("get", Some("log")) => pod_log(st, req, &name),
        ("delete", None) => match st.pods.get(&name).map(|p| p.obj.clone()) {
            Some(obj) => {
                delete_pod(st, &t.namespace, &name);
                json_resp(200, &obj)
            }
            None => not_found(),
        },
        _ => status(405, "MethodNotAllowed", "method not allowed", &name, "pods"),
    }
}

fn pod_log(st: &State, req: &HttpRequest, name: &str) -> HttpResponse {
    let Some(p) = st.pods.get(name) else {
        return status(
            404,
            "NotFound",
            &format!("pods \"{name}\" not found"),
            name,
            "pods",
        );
    };
    let names: Vec<String> = p.obj["spec"]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["name"].as_str().map(String::from))
        .collect();
    let container = match req.query.get("container") {
        Some(c) => c.clone(),
        None if names.len() == 1 => names[0].clone(),
        None => {
            let msg = format!(
                "a container name must be specified for pod {name}, choose one of: [{}]",
                names.join(" ")
            );
            return status(400, "BadRequest", &msg, name, "pods");
        }
    };
    if !names.contains(&container) {
        return status(
            400,
            "BadRequest",
            &format!("container {container} is not valid for pod {name}"),
            name,
            "pods",
        );
    }
    let waiting = p.obj["status"]["containerStatuses"]
        .as_array()
        .and_then(|s| {
            s.iter()
                .find(|c| c["name"] == container.as_str())
                .and_then(|c| c["state"]["waiting"]["reason"].as_str().map(String::from))
        });
    if waiting.as_deref() == Some("ImagePullBackOff") {
        let msg = format!(
            "container \"{container}\" in pod \"{name}\" is waiting to start: trying and failing to pull image"
        );
        return status(400, "BadRequest", &msg, name, "pods");
    }
    let tail: usize = req
        .query
        .get("tailLines")
        .and_then(|t| t.parse().ok())
        .unwrap_or(usize::MAX);
    let total = st.log_lines;
    let text: String = (1..=total)
        .skip(total.saturating_sub(tail))
        .map(|i| format!("{name}/{container} log line {i}\n"))
        .collect();
    HttpResponse {
        code: 200,
        content_type: "text/plain",
        body: text.into_bytes(),
        watch: None,
    }
}

/// Kubelet's side of a pod listing: crash loops restart once more, and
/// terminating pods disappear after being listed once.
fn age_pods(st: &mut State) {
    let rv = bump(st);
    st.pods.retain(|_, p| p.lists_left != Some(0));
    for p in st.pods.values_mut() {
        match p.lists_left.as_mut() {
            Some(n) => *n -= 1,
            None => {
                let mut changed = false;
                let statuses = p.obj["status"]["containerStatuses"].as_array_mut();
                for c in statuses.into_iter().flatten() {
                    if c["state"]["waiting"]["reason"] == "CrashLoopBackOff" {
                        c["restartCount"] = json!(c["restartCount"].as_u64().unwrap_or(0) + 1);
                        c["lastState"]["terminated"]["startedAt"] = json!(now());
                        c["lastState"]["terminated"]["finishedAt"] = json!(now());
                        changed = true;
                    }
                }
                if changed {
                    p.obj["metadata"]["resourceVersion"] = json!(rv);
                }
            }
        }
    }
}

fn template_hash(template: &Value) -> String {
    // FNV-1a, rendered with the alphabet Kubernetes uses for pod-template-hash.
    let mut h: u64 = 0xcbf29ce484222325;
    for b in template.to_string().bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x100000001b3);
    }
    let alphabet = b"bcdfghjklmnpqrstvwxz2456789";
    (0..10)
        .map(|i| char::from(alphabet[((h >> (i * 6)) % 27) as usize]))
        .collect()
}

fn mode_for(st: &State, name: &str, image: &str) -> PodMode {
    st.modes
        .get(name)
        .copied()
        .unwrap_or(if image.contains("crash") {
            PodMode::CrashLoop
        } else if image.contains("missing") {
            PodMode::ImagePullBackOff
        } else {
            PodMode::Running
        })
}

/// The Deployment controller and kubelet: one live pod per Deployment with
/// replicas > 0 and the current template; others terminate.
fn reconcile(st: &mut State, ns: &str, name: &str) {
    let d = st.deployments.get(name).cloned();
    let want = d.as_ref().map(|d| {
        (
            d["spec"]["replicas"].as_i64().unwrap_or(1) > 0,
            template_hash(&d["spec"]["template"]),
        )
    });
    let now = now();
    let mut live = false;
    for p in st
        .pods
        .values_mut()
        .filter(|p| p.owner == name && p.lists_left.is_none())
    {
        match &want {
            Some((true, h)) if *h == p.template_hash => live = true,
            _ => terminate(p, &now),
        }
    }
    let (Some(d), Some((true, hash))) = (d, want) else {
        update_status(st, name);
        return;
    };
    if !live {
        st.seq += 1;
        let alphabet = b"bcdfghjklmnpqrstvwxz2456789";
        let suffix: String = (0..5)
            .map(|i| char::from(alphabet[(st.seq / 27u64.pow(i) % 27) as usize]))
            .collect();
        let pod_name = format!("{name}-{hash}-{suffix}");
        let containers = d["spec"]["template"]["spec"]["containers"].clone();
        let image = containers[0]["image"].as_str().unwrap_or("").to_string();
        let mut mode = mode_for(st, name, &image);
        if !secret_refs_resolve(st, &containers) {
            mode = PodMode::Running;
        }
        let mut labels = d["spec"]["template"]["metadata"]["labels"].clone();
        labels["pod-template-hash"] = json!(hash);
        let mut pod = json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": pod_name, "labels": labels,
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": format!("{name}-{hash}"),
                    "uid": "00000000-0000-4000-8000-rs0000000000", "controller": true, "blockOwnerDeletion": true}]},
            "spec": d["spec"]["template"]["spec"].clone(),
            "status": Value::Null});
        pod["spec"]["nodeName"] = json!("node-1");
        pod["spec"]["restartPolicy"] = json!("Always");
        pod["status"] = pod_status(name, &containers, mode, &Value::Null);
        if !secret_refs_resolve(st, &containers) {
            set_waiting(&mut pod["status"], name, "CreateContainerConfigError");
        }
        fill_meta(st, &mut pod, ns, None);
        st.pods.insert(
            pod_name.clone(),
            PodRec {
                obj: pod,
                owner: name.to_string(),
                template_hash: hash,
                lists_left: None,
                deleted_at: None,
                restarted_at: Instant::now(),
            },
        );
    }
    update_status(st, name);
}

/// Every `secretKeyRef` names an existing Secret and key (else the kubelet
/// reports `CreateContainerConfigError`).
fn secret_refs_resolve(st: &State, containers: &Value) -> bool {
    containers
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|c| c["env"].as_array().cloned().unwrap_or_default())
        .all(|e| {
            let r = &e["valueFrom"]["secretKeyRef"];
            match (r["name"].as_str(), r["key"].as_str()) {
                (Some(n), Some(k)) => st
                    .secrets
                    .get(n)
                    .is_some_and(|s| s["data"].get(k).is_some()),
                _ => true,
            }
        })
}

fn set_waiting(status: &mut Value, name: &str, reason: &str) {
    for c in status["containerStatuses"]
        .as_array_mut()
        .into_iter()
        .flatten()
    {
        if c["name"] == name {
            c["state"] = json!({"waiting": {"reason": reason, "message": "test"}});
            c["ready"] = json!(false);
            c["started"] = json!(false);
        }
    }
    status["phase"] = json!("Pending");
}

fn pod_status(name: &str, containers: &Value, mode: PodMode, previous: &Value) -> Value {
    let t = now();
    let statuses: Vec<Value> = containers
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
        .map(|(i, c)| {
            let cname = c["name"].as_str().unwrap_or("");
            let ours = cname == name || (i == 0 && !containers.as_array().unwrap().iter().any(|c| c["name"] == name));
            let restarts = previous["containerStatuses"].as_array().and_then(|s| s.iter().find(|x| x["name"] == cname)).and_then(|x| x["restartCount"].as_u64()).unwrap_or(0);
            let base = json!({"name": cname, "image": c["image"], "imageID": "", "containerID": format!("containerd://{cname}"), "restartCount": restarts});
            let mut s = base;
            match (ours, mode) {
                (true, PodMode::CrashLoop) => {
                    s["restartCount"] = json!(restarts.max(4));
                    s["ready"] = json!(false);
                    s["started"] = json!(false);
                    s["state"] = json!({"waiting": {"reason": "CrashLoopBackOff", "message": format!("back-off 40s restarting failed container={cname}")}});
                    s["lastState"] = json!({"terminated": {"exitCode": 1, "reason": "Error", "startedAt": t, "finishedAt": t}});
                }
                (true, PodMode::ImagePullBackOff) => {
                    s["ready"] = json!(false);
                    s["started"] = json!(false);
                    s["state"] = json!({"waiting": {"reason": "ImagePullBackOff", "message": format!("Back-off pulling image \"{}\"", c["image"].as_str().unwrap_or(""))}});
                }
                _ => {
                    s["ready"] = json!(true);
                    s["started"] = json!(true);
                    s["state"] = json!({"running": {"startedAt": t}});
                }
            }
            s
        })
        .collect();
    let phase = if mode == PodMode::ImagePullBackOff {
        "Pending"
    } else {
        "Running"
    };
    json!({"phase": phase, "hostIP": "127.0.0.1", "podIP": "127.0.0.2", "startTime": t, "qosClass": "BestEffort",
        "conditions": [{"type": "PodScheduled", "status": "True", "lastTransitionTime": t}],
        "containerStatuses": statuses})
}

fn update_status(st: &mut State, name: &str) {
    let live: Vec<bool> = st
        .pods
        .values()
        .filter(|p| p.owner == name && p.lists_left.is_none())
        .map(|p| {
            p.obj["status"]["containerStatuses"]
                .as_array()
                .is_some_and(|s| s.iter().all(|c| c["ready"] == true))
        })
        .collect();
    let Some(d) = st.deployments.get_mut(name) else {
        return;
    };
    let ready = live.iter().filter(|r| **r).count();
    let total = live.len();
    let mut status = json!({"observedGeneration": d["metadata"]["generation"], "replicas": total, "updatedReplicas": total});
    if ready > 0 {
        status["readyReplicas"] = json!(ready);
        status["availableReplicas"] = json!(ready);
    }
    if total > ready {
        status["unavailableReplicas"] = json!(total - ready);
    }
    d["status"] = status;
}

/// Marks a pod terminating: listed once more, removed by the controller soon after.
fn terminate(p: &mut PodRec, now: &str) {
    p.lists_left = Some(1);
    p.deleted_at = Some(Instant::now());
    p.obj["metadata"]["deletionTimestamp"] = json!(now);
    p.obj["metadata"]["deletionGracePeriodSeconds"] = json!(30);
}

/// A pod deleted by someone: it terminates and its owner gets a new one.
fn delete_pod(st: &mut State, ns: &str, name: &str) -> bool {
    let now = now();
    let Some(p) = st.pods.get_mut(name) else {
        return false;
    };
    if p.lists_left.is_none() {
        terminate(p, &now);
    }
    let owner = p.owner.clone();
    reconcile(st, ns, &owner);
    true
}

/// Kubelet and garbage collector on a clock, for watchers that never list:
/// terminating pods go after a second, crash loops restart every `crash_every`.
fn controller(shared: &Shared) {
    while !shared.stop.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(100));
        let mut st = shared.state.lock().unwrap();
        st.pods.retain(|_, p| {
            p.deleted_at
                .is_none_or(|t| t.elapsed() < Duration::from_secs(1))
        });
        let every = st.crash_every;
        for p in st.pods.values_mut() {
            if p.lists_left.is_some() || p.restarted_at.elapsed() < every {
                continue;
            }
            for c in p.obj["status"]["containerStatuses"]
                .as_array_mut()
                .into_iter()
                .flatten()
            {
                if c["state"]["waiting"]["reason"] == "CrashLoopBackOff" {
                    c["restartCount"] = json!(c["restartCount"].as_u64().unwrap_or(0) + 1);
                    c["lastState"]["terminated"]["startedAt"] = json!(now());
                    c["lastState"]["terminated"]["finishedAt"] = json!(now());
                }
            }
            p.restarted_at = Instant::now();
        }
        publish(&mut st);
    }
}

/// Turns what changed since the last call into watch events: every Deployment
/// and pod that differs from what watchers last saw (a changed object keeps the
/// resourceVersion its write gave it, or gets a new one), and every one gone.
fn publish(st: &mut State) {
    let mut current: BTreeMap<(&'static str, String), Value> = BTreeMap::new();
    for (n, d) in &st.deployments {
        current.insert(("deployments", n.clone()), d.clone());
    }
    for (n, p) in &st.pods {
        current.insert(("pods", n.clone()), p.obj.clone());
    }
    let mut out: Vec<WatchEvent> = Vec::new();
    for (key, obj) in &current {
        let old = st.published.get(key);
        if old == Some(obj) {
            continue;
        }
        let own: u64 = obj["metadata"]["resourceVersion"]
            .as_str()
            .and_then(|r| r.parse().ok())
            .unwrap_or(0);
        let same_rv = old.is_some_and(|o| {
            o["metadata"]["resourceVersion"] == obj["metadata"]["resourceVersion"]
        });
        let rv = if own <= st.emitted || same_rv {
            st.rv += 1;
            st.rv
        } else {
            own
        };
        let kind = if old.is_some() { "MODIFIED" } else { "ADDED" };
        out.push(WatchEvent {
            rv,
            resource: key.0,
            kind,
            obj: obj.clone(),
        });
    }
    for (key, old) in &st.published {
        if !current.contains_key(key) {
            st.rv += 1;
            out.push(WatchEvent {
                rv: st.rv,
                resource: key.0,
                kind: "DELETED",
                obj: old.clone(),
            });
        }
    }
    out.sort_by_key(|e| e.rv);
    for e in &mut out {
        let rv = json!(e.rv.to_string());
        e.obj["metadata"]["resourceVersion"] = rv.clone();
        let name = e.obj["metadata"]["name"].as_str().unwrap_or("").to_string();
        let stored = match e.resource {
            "deployments" => st.deployments.get_mut(&name),
            _ => st.pods.get_mut(&name).map(|p| &mut p.obj),
        };
        if let Some(o) = stored {
            o["metadata"]["resourceVersion"] = rv;
        }
        if e.kind != "DELETED" {
            current.insert((e.resource, name), e.obj.clone());
        }
    }
    if let Some(last) = out.last() {
        st.emitted = last.rv;
    }
    st.events.extend(out);
    // A bounded history, as an API server's watch cache.
    if st.events.len() > 20_000 {
        let cut = st.events.len() - 10_000;
        st.compacted = st.events[cut - 1].rv;
        st.events.drain(..cut);
    }
    st.published = current;
}

/// `?watch=1`: checked like a list, answered by streaming.
fn watch_request(shared: &Shared, req: &HttpRequest, t: &Target) -> HttpResponse {
    if t.namespace != shared.namespace || t.name.is_some() || t.resource == "secrets" {
        return status(
            405,
            "MethodNotAllowed",
            "watch not served here",
            "",
            t.resource,
        );
    }
    let from = match req.query.get("resourceVersion").map(String::as_str) {
        None | Some("" | "0") => None,
        Some(rv) => match rv.parse() {
            Ok(rv) => Some(rv),
            Err(_) => {
                return status(
                    400,
                    "BadRequest",
                    &format!("invalid resource version: {rv}"),
                    "",
                    t.resource,
                );
            }
        },
    };
    let timeout = req
        .query
        .get("timeoutSeconds")
        .and_then(|s| s.parse().ok())
        .map_or(Duration::from_secs(1800), Duration::from_secs);
    HttpResponse {
        code: 200,
        content_type: "application/json",
        body: Vec::new(),
        watch: Some(Box::new(WatchReq {
            resource: t.resource,
            selector: req.query.get("labelSelector").cloned().unwrap_or_default(),
            from,
            timeout,
            bookmarks: req
                .query
                .get("allowWatchBookmarks")
                .is_some_and(|b| b == "true" || b == "1"),
        })),
    }
}

fn chunk(w: &mut impl Write, line: &Value) -> std::io::Result<()> {
    let mut data = serde_json::to_vec(line).unwrap();
    data.push(b'\n');
    write!(w, "{:x}\r\n", data.len())?;
    w.write_all(&data)?;
    w.write_all(b"\r\n")
}

fn gone(from: u64, oldest: u64) -> Value {
    json!({"type": "ERROR", "object": {"kind": "Status", "apiVersion": "v1", "metadata": {},
        "status": "Failure", "message": format!("too old resource version: {from} ({oldest})"),
        "reason": "Expired", "code": 410}})
}

/// Streams a watch as the API server does: `Transfer-Encoding: chunked`, one
/// JSON event per line, until `timeoutSeconds`, the server stopping, or an
/// expiry (a `410 Gone` ERROR event).
fn stream_watch(w: &mut impl Write, shared: &Shared, req: &WatchReq) -> std::io::Result<()> {
    let (api, kind) = match req.resource {
        "deployments" => ("apps/v1", "Deployment"),
        _ => ("v1", "Pod"),
    };
    w.write_all(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nAudit-Id: test\r\n\r\n",
    )?;
    let matches =
        |obj: &Value| selector_matches(&req.selector, &labels_of(&obj["metadata"]["labels"]));
    let start = Instant::now();
    let (mut cursor, epoch) = {
        let mut st = shared.state.lock().unwrap();
        publish(&mut st);
        match req.from {
            Some(rv) if rv < st.compacted => {
                let oldest = st.compacted;
                drop(st);
                chunk(w, &gone(rv, oldest))?;
                w.write_all(b"0\r\n\r\n")?;
                return w.flush();
            }
            Some(rv) => (rv, st.epoch),
            None => {
                let initial: Vec<Value> = st
                    .published
                    .iter()
                    .filter(|((r, _), o)| *r == req.resource && matches(o))
                    .map(|(_, o)| json!({"type": "ADDED", "object": o}))
                    .collect();
                let at = (st.emitted, st.epoch);
                drop(st);
                for e in &initial {
                    chunk(w, e)?;
                }
                at
            }
        }
    };
    w.flush()?;
    let mut last_bookmark = Instant::now();
    while !shared.stop.load(Ordering::SeqCst) && start.elapsed() < req.timeout {
        let (batch, expired, bookmark) = {
            let st = shared.state.lock().unwrap();
            let expired = (st.epoch != epoch).then_some((cursor, st.compacted));
            let first = st.events.partition_point(|e| e.rv <= cursor);
            let batch: Vec<Value> = st.events[first..]
                .iter()
                .filter(|e| e.resource == req.resource && matches(&e.obj))
                .map(|e| json!({"type": e.kind, "object": e.obj}))
                .collect();
            if let Some(e) = st.events.last() {
                cursor = cursor.max(e.rv);
            }
            let bookmark =
                (req.bookmarks && last_bookmark.elapsed() >= st.bookmark_every).then(|| {
                    json!({"type": "BOOKMARK", "object": {"kind": kind, "apiVersion": api,
                    "metadata": {"resourceVersion": st.emitted.max(cursor).to_string()}}})
                });
            (batch, expired, bookmark)
        };
        if let Some((from, oldest)) = expired {
            chunk(w, &gone(from, oldest))?;
            break;
        }
        for e in &batch {
            chunk(w, e)?;
        }
        if let Some(b) = bookmark {
            chunk(w, &b)?;
            last_bookmark = Instant::now();
        }
        w.flush()?;
        std::thread::sleep(Duration::from_millis(50));
    }
    w.write_all(b"0\r\n\r\n")?;
    w.flush()
}
