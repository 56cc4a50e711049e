//! Where the API server is and who we are to it: a kubeconfig (`KUBECONFIG`, else
//! `~/.kube/config`: current context, cluster, user token / tokenFile / client
//! certificate / `exec` plugin) or the in-cluster service account (CONTRACT §6.3).
//! Out of scope: HTTP (see `client.rs`). Invariant: reading a connection never
//! touches the network, and no token or key reaches an error message.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use base64::Engine as _;
use serde::Deserialize;

use crate::orchestrator::Error;
use crate::secret::Secret;

/// The service-account directory mounted into every pod.
pub const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
/// A credential plugin that has not answered by then is killed.
const EXEC_TIMEOUT: Duration = Duration::from_secs(60);
/// A plugin token is renewed this long before it expires.
const EXPIRY_MARGIN: Duration = Duration::from_secs(10);
/// Bound on what a plugin may print.
const EXEC_OUTPUT_LIMIT: u64 = 1024 * 1024;

/// Where the connection comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// Kubeconfig files, merged in order (first definition of a name wins).
    Kubeconfig(Vec<PathBuf>),
    /// The pod's service account: `https://{host}:{port}` and the files in `dir`.
    InCluster {
        host: String,
        port: String,
        dir: PathBuf,
    },
}

impl Source {
    /// `KUBECONFIG` (colon-separated), else `~/.kube/config` when it exists, else the
    /// in-cluster service account when `KUBERNETES_SERVICE_HOST` is set (§6.3).
    ///
    /// # Errors
    /// None of the three is available.
    pub fn detect() -> Result<Source, Error> {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        if let Some(list) = var("KUBECONFIG") {
            let paths = std::env::split_paths(&list)
                .filter(|p| !p.as_os_str().is_empty())
                .collect();
            return Ok(Source::Kubeconfig(paths));
        }
        if let Some(home) = var("HOME") {
            let path = Path::new(&home).join(".kube").join("config");
            if path.is_file() {
                return Ok(Source::Kubeconfig(vec![path]));
            }
        }
        match (
            var("KUBERNETES_SERVICE_HOST"),
            var("KUBERNETES_SERVICE_PORT"),
        ) {
            (Some(host), port) => Ok(Source::InCluster {
                host,
                port: port.unwrap_or_else(|| "443".into()),
                dir: PathBuf::from(SERVICE_ACCOUNT_DIR),
            }),
            (None, _) => Err(config(
                "no kubeconfig (KUBECONFIG, ~/.kube/config) and not in a cluster \
                 (KUBERNETES_SERVICE_HOST unset)",
            )),
        }
    }
}

/// Everything needed to reach the API server.
pub struct Connection {
    /// Base URL, without a trailing `/`.
    pub server: String,
    pub namespace: String,
    /// PEM of the CA(s) to trust; `None` = the built-in roots.
    pub ca_pem: Option<Vec<u8>>,
    /// PEM client certificate chain and key.
    pub client_cert: Option<(Vec<u8>, Secret)>,
    pub insecure: bool,
    /// Kubeconfig `proxy-url`; Kubernetes clients use no proxy otherwise.
    pub proxy_url: Option<String>,
    pub auth: Auth,
    /// Where this came from, for messages (`kubeconfig /x (context y)`, `in-cluster`).
    pub origin: String,
}

impl Connection {
    /// Reads the connection described by `source` (files only, no network).
    ///
    /// # Errors
    /// A missing or unreadable file, an unknown context, cluster or user, an
    /// unsupported authentication method.
    pub fn open(source: &Source) -> Result<Connection, Error> {
        match source {
            Source::Kubeconfig(paths) => from_kubeconfig(paths),
            Source::InCluster { host, port, dir } => Ok(in_cluster(host, port, dir)),
        }
    }
}

fn config(detail: impl Into<String>) -> Error {
    Error::Config {
        op: "connect to kubernetes",
        detail: detail.into(),
    }
}

fn in_cluster(host: &str, port: &str, dir: &Path) -> Connection {
    let host = if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_string()
    };
    let namespace = std::fs::read_to_string(dir.join("namespace"))
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "default".into());
    Connection {
        server: format!("https://{host}:{port}"),
        namespace,
        ca_pem: std::fs::read(dir.join("ca.crt")).ok(),
        client_cert: None,
        insecure: false,
        proxy_url: None,
        auth: Auth::File(TokenFile::new(dir.join("token"))),
        origin: format!("in-cluster service account {}", dir.display()),
    }
}

/// One kubeconfig file, as much of it as we use.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "kebab-case")]
struct Kubeconfig {
    current_context: Option<String>,
    clusters: Vec<Named<ClusterEntry>>,
    users: Vec<Named<UserEntry>>,
    contexts: Vec<Named<ContextEntry>>,
}

#[derive(Debug, Deserialize)]
struct Named<T> {
    name: String,
    #[serde(alias = "cluster", alias = "user", alias = "context")]
    item: T,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "kebab-case")]
struct ClusterEntry {
    server: String,
    certificate_authority: Option<String>,
    certificate_authority_data: Option<String>,
    insecure_skip_tls_verify: bool,
    proxy_url: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "kebab-case")]
struct UserEntry {
    token: Option<Secret>,
    #[serde(rename = "tokenFile")]
    token_file: Option<String>,
    client_certificate: Option<String>,
    client_certificate_data: Option<String>,
    client_key: Option<String>,
    client_key_data: Option<Secret>,
    exec: Option<ExecConfig>,
    auth_provider: Option<serde_json::Value>,
    username: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct ExecConfig {
    api_version: Option<String>,
    command: String,
    args: Vec<String>,
    env: Option<Vec<ExecEnv>>,
    provide_cluster_info: bool,
    interactive_mode: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
struct ExecEnv {
    name: String,
    value: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
struct ContextEntry {
    cluster: String,
    user: String,
    namespace: Option<String>,
}

/// Kubeconfig entries merged over several files; each entry keeps the directory
/// of the file that defined it, against which its relative paths resolve.
#[derive(Default)]
struct Merged {
    current: Option<String>,
    clusters: BTreeMap<String, (ClusterEntry, PathBuf)>,
    users: BTreeMap<String, (UserEntry, PathBuf)>,
    contexts: BTreeMap<String, ContextEntry>,
}

fn merge_files(paths: &[PathBuf]) -> Result<Merged, Error> {
    let mut m = Merged::default();
    for path in paths {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            // kubectl skips missing files of a KUBECONFIG list.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && paths.len() > 1 => continue,
            Err(e) => return Err(config(format!("read kubeconfig {}: {e}", path.display()))),
        };
        let file: Kubeconfig = serde_norway::from_str(&text)
            .map_err(|e| config(format!("parse kubeconfig {}: {e}", path.display())))?;
        let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        if m.current.is_none() {
            m.current = file.current_context.filter(|c| !c.is_empty());
        }
        for c in file.clusters {
            m.clusters.entry(c.name).or_insert((c.item, dir.clone()));
        }
        for u in file.users {
            m.users.entry(u.name).or_insert((u.item, dir.clone()));
        }
        for c in file.contexts {
            m.contexts.entry(c.name).or_insert(c.item);
        }
    }
    Ok(m)
}

fn from_kubeconfig(paths: &[PathBuf]) -> Result<Connection, Error> {
    let shown = paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(":");
    let m = merge_files(paths)?;
    let name = m
        .current
        .clone()
        .ok_or_else(|| config(format!("kubeconfig {shown}: no current-context")))?;
    let ctx = m
        .contexts
        .get(&name)
        .ok_or_else(|| config(format!("kubeconfig {shown}: context {name} not found")))?;
    let (cluster, cdir) = m.clusters.get(&ctx.cluster).ok_or_else(|| {
        config(format!(
            "kubeconfig {shown}: cluster {} not found",
            ctx.cluster
        ))
    })?;
    let user = match m.users.get(&ctx.user) {
        Some((u, dir)) => Some((u.clone(), dir.clone())),
        None if ctx.user.is_empty() => None,
        None => {
            return Err(config(format!(
                "kubeconfig {shown}: user {} not found",
                ctx.user
            )));
        }
    };
    // As client-go does: a server without a scheme is https.
    let server = match cluster.server.as_str() {
        s if s.is_empty() || s.contains("://") => s.trim_end_matches('/').to_string(),
        s => format!("https://{}", s.trim_end_matches('/')),
    };
    if server.is_empty() {
        return Err(config(format!(
            "kubeconfig {shown}: cluster {} has no server",
            ctx.cluster
        )));
    }
    // Found by fuzzing: `httpu://…` was taken as a server, to fail on each call.
    let is_url = server.parse::<ureq::http::Uri>().is_ok_and(|u| {
        matches!(u.scheme_str(), Some("https" | "http")) && u.host().is_some_and(|h| !h.is_empty())
    });
    if !is_url {
        return Err(config(format!(
            "kubeconfig {shown}: cluster {} server {server:?} is not an https:// URL",
            ctx.cluster
        )));
    }
    let ca_pem = pem_of(
        cluster.certificate_authority_data.as_deref(),
        cluster.certificate_authority.as_deref(),
        cdir,
        "certificate-authority",
    )?;
    let (client_cert, auth) = match &user {
        Some((u, dir)) => user_credentials(u, dir, cluster)?,
        None => (None, Auth::None),
    };
    Ok(Connection {
        server,
        namespace: ctx
            .namespace
            .clone()
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| "default".into()),
        ca_pem,
        client_cert,
        insecure: cluster.insecure_skip_tls_verify,
        proxy_url: cluster.proxy_url.clone().filter(|p| !p.is_empty()),
        auth,
        origin: format!("kubeconfig {shown} (context {name})"),
    })
}

type Credentials = (Option<(Vec<u8>, Secret)>, Auth);

fn user_credentials(
    u: &UserEntry,
    dir: &Path,
    cluster: &ClusterEntry,
) -> Result<Credentials, Error> {
    if u.auth_provider.is_some() {
        return Err(config(
            "kubeconfig user uses auth-provider, removed from kubectl; use an exec plugin",
        ));
    }
    if u.username.is_some() && u.token.is_none() && u.exec.is_none() {
        return Err(config(
            "kubeconfig user uses basic auth, which is not supported",
        ));
    }
    let cert = pem_of(
        u.client_certificate_data.as_deref(),
        u.client_certificate.as_deref(),
        dir,
        "client-certificate",
    )?;
    let key_data = u.client_key_data.as_ref().map(|k| k.expose().to_string());
    let key = pem_of(
        key_data.as_deref(),
        u.client_key.as_deref(),
        dir,
        "client-key",
    )?;
    let client_cert = match (cert, key) {
        (Some(c), Some(k)) => Some((c, Secret::new(String::from_utf8_lossy(&k).into_owned()))),
        (None, None) => None,
        _ => {
            return Err(config(
                "kubeconfig user has a client certificate without its key, or the reverse",
            ));
        }
    };
    let auth = if let Some(t) = u.token.as_ref().filter(|t| !t.is_empty()) {
        Auth::Static(t.clone())
    } else if let Some(f) = u.token_file.as_deref().filter(|f| !f.is_empty()) {
        Auth::File(TokenFile::new(dir.join(f)))
    } else if let Some(e) = &u.exec {
        Auth::Exec(ExecPlugin::new(e, dir, cluster)?)
    } else {
        Auth::None
    };
    Ok((client_cert, auth))
}

/// `*-data` (base64 PEM) wins over the file path, as in kubectl.
fn pem_of(
    data: Option<&str>,
    file: Option<&str>,
    dir: &Path,
    key: &str,
) -> Result<Option<Vec<u8>>, Error> {
    if let Some(d) = data.filter(|d| !d.is_empty()) {
        let compact: String = d.split_whitespace().collect();
        return base64::engine::general_purpose::STANDARD
            .decode(compact)
            .map(Some)
            .map_err(|e| config(format!("kubeconfig {key}-data is not base64: {e}")));
    }
    match file.filter(|f| !f.is_empty()) {
        Some(f) => {
            let path = dir.join(f);
            std::fs::read(&path)
                .map(Some)
                .map_err(|e| config(format!("read kubeconfig {key} {}: {e}", path.display())))
        }
        None => Ok(None),
    }
}

/// How requests authenticate (besides a client certificate).
pub enum Auth {
    None,
    Static(Secret),
    /// A token file re-read whenever it changes (service-account rotation, `tokenFile`).
    File(TokenFile),
    /// A credential plugin, its token cached until it expires.
    Exec(ExecPlugin),
}

impl Auth {
    /// The bearer token to send, if any.
    ///
    /// # Errors
    /// The token file cannot be read; the plugin fails or prints no token.
    pub fn bearer(&self) -> Result<Option<Secret>, Error> {
        match self {
            Auth::None => Ok(None),
            Auth::Static(t) => Ok(Some(t.clone())),
            Auth::File(f) => f.token().map(Some),
            Auth::Exec(e) => e.token().map(Some),
        }
    }

    /// Forgets a cached token after the server refused it (401), so the next
    /// call reads the file or runs the plugin again.
    pub fn invalidate(&self) {
        let cleared = match self {
            Auth::File(f) => f.cache.lock().map(|mut c| *c = None).is_ok(),
            Auth::Exec(e) => e.cache.lock().map(|mut c| *c = None).is_ok(),
            Auth::None | Auth::Static(_) => true,
        };
        if !cleared {
            log::warn!("kubernetes token cache lock poisoned");
        }
    }
}

/// What identifies a version of a file without reading it.
type Stamp = (Option<SystemTime>, u64);

/// A token file; kubelet rotates projected service-account tokens by swapping a
/// symlink, so a changed modification time or length means a new token.
pub struct TokenFile {
    path: PathBuf,
    cache: Mutex<Option<(Stamp, Secret)>>,
}

impl TokenFile {
    /// A token file at `path`; nothing is read yet.
    pub fn new(path: PathBuf) -> TokenFile {
        TokenFile {
            path,
            cache: Mutex::new(None),
        }
    }

    fn token(&self) -> Result<Secret, Error> {
        let meta = std::fs::metadata(&self.path)
            .map_err(|e| config(format!("read token file {}: {e}", self.path.display())))?;
        let stamp = (meta.modified().ok(), meta.len());
        let mut cache = self
            .cache
            .lock()
            .map_err(|_| config("token cache lock poisoned"))?;
        if let Some((s, t)) = cache.as_ref()
            && *s == stamp
        {
            return Ok(t.clone());
        }
        let text = std::fs::read_to_string(&self.path)
            .map_err(|e| config(format!("read token file {}: {e}", self.path.display())))?;
        let token = Secret::new(text.trim());
        *cache = Some((stamp, token.clone()));
        Ok(token)
    }
}

/// A kubeconfig `exec` credential plugin (client.authentication.k8s.io).
pub struct ExecPlugin {
    command: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
    exec_info: String,
    cache: Mutex<Option<(Secret, Option<SystemTime>)>>,
}

/// The plugin's answer: an `ExecCredential`.
#[derive(Deserialize)]
struct ExecCredential {
    #[serde(default)]
    status: Option<ExecStatus>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ExecStatus {
    #[serde(default)]
    token: Option<Secret>,
    #[serde(default)]
    expiration_timestamp: Option<String>,
}

impl ExecPlugin {
    fn new(e: &ExecConfig, dir: &Path, cluster: &ClusterEntry) -> Result<ExecPlugin, Error> {
        if e.command.is_empty() {
            return Err(config("kubeconfig exec plugin has no command"));
        }
        if e.interactive_mode.as_deref() == Some("Always") {
            return Err(config(
                "kubeconfig exec plugin needs a terminal (interactiveMode: Always)",
            ));
        }
        // A command with a path separator is relative to the kubeconfig, else found on PATH.
        let command = if e.command.contains('/') {
            dir.join(&e.command)
        } else {
            PathBuf::from(&e.command)
        };
        let api_version = e
            .api_version
            .clone()
            .unwrap_or_else(|| "client.authentication.k8s.io/v1".into());
        let mut spec = serde_json::json!({"interactive": false});
        if e.provide_cluster_info {
            spec["cluster"] = serde_json::json!({
                "server": cluster.server,
                "insecure-skip-tls-verify": cluster.insecure_skip_tls_verify,
                "certificate-authority-data": cluster.certificate_authority_data,
            });
        }
        let info =
            serde_json::json!({"apiVersion": api_version, "kind": "ExecCredential", "spec": spec});
        Ok(ExecPlugin {
            command,
            args: e.args.clone(),
            env: e
                .env
                .iter()
                .flatten()
                .map(|v| (v.name.clone(), v.value.clone()))
                .collect(),
            exec_info: info.to_string(),
            cache: Mutex::new(None),
        })
    }

    fn token(&self) -> Result<Secret, Error> {
        let mut cache = self
            .cache
            .lock()
            .map_err(|_| config("exec token cache lock poisoned"))?;
        if let Some((token, expires)) = cache.as_ref() {
            let fresh = expires.is_none_or(|t| SystemTime::now() + EXPIRY_MARGIN < t);
            if fresh {
                return Ok(token.clone());
            }
        }
        let out = self.run()?;
        let cred: ExecCredential = serde_json::from_slice(&out)
            .map_err(|e| self.failed(format!("printed no ExecCredential JSON: {e}")))?;
        let status = cred
            .status
            .ok_or_else(|| self.failed("ExecCredential has no status"))?;
        let token = status
            .token
            .filter(|t| !t.is_empty())
            .ok_or_else(|| self.failed("ExecCredential has no status.token (client certificates from plugins are not supported)"))?;
        let expires = status
            .expiration_timestamp
            .as_deref()
            .and_then(crate::time::parse_rfc3339);
        *cache = Some((token.clone(), expires));
        Ok(token)
    }

    fn failed(&self, why: impl std::fmt::Display) -> Error {
        config(format!("exec plugin {}: {why}", self.command.display()))
    }

    /// Runs the plugin with a deadline; returns its standard output.
    fn run(&self) -> Result<Vec<u8>, Error> {
        let mut child = Command::new(&self.command)
            .args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .env("KUBERNETES_EXEC_INFO", &self.exec_info)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| self.failed(format!("cannot start: {e}")))?;
        let stdout = child
            .stdout
            .take()
            .map(|s| std::thread::spawn(move || drain(s)));
        let stderr = child
            .stderr
            .take()
            .map(|s| std::thread::spawn(move || drain(s)));
        let started = Instant::now();
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if started.elapsed() < EXEC_TIMEOUT => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Ok(None) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(
                        self.failed(format!("no answer within {}s", EXEC_TIMEOUT.as_secs()))
                    );
                }
                Err(e) => return Err(self.failed(e)),
            }
        };
        let out = stdout.and_then(|h| h.join().ok()).unwrap_or_default();
        let err = stderr.and_then(|h| h.join().ok()).unwrap_or_default();
        if !status.success() {
            let text = String::from_utf8_lossy(&err);
            let first = text
                .lines()
                .next()
                .unwrap_or("")
                .chars()
                .take(200)
                .collect::<String>();
            return Err(self.failed(format!("{status}: {first}")));
        }
        Ok(out)
    }
}

fn drain(r: impl Read) -> Vec<u8> {
    let mut buf = Vec::new();
    let _ = r.take(EXEC_OUTPUT_LIMIT).read_to_end(&mut buf);
    buf
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    fn tempdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("xtm-k8s-connect-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    const CFG: &str = r#"
apiVersion: v1
kind: Config
current-context: dev
contexts:
- name: dev
  context: {cluster: c1, user: u1, namespace: connectors}
- name: other
  context: {cluster: c1, user: u2}
clusters:
- name: c1
  cluster:
    server: https://127.0.0.1:6443/
    certificate-authority-data: LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCg==
users:
- name: u1
  user: {token: abc}
- name: u2
  user: {tokenFile: tok}
"#;

    #[test]
    fn kubeconfig_current_context_gives_server_namespace_ca_and_token() {
        let d = tempdir("basic");
        let p = write(&d, "config", CFG);
        let c = Connection::open(&Source::Kubeconfig(vec![p])).unwrap();
        assert_eq!(c.server, "https://127.0.0.1:6443");
        assert_eq!(c.namespace, "connectors");
        assert_eq!(
            c.ca_pem.as_deref(),
            Some(&b"-----BEGIN CERTIFICATE-----\n"[..])
        );
        assert_eq!(c.auth.bearer().unwrap().unwrap().expose(), "abc");
        assert!(c.origin.contains("context dev"));
    }

    #[test]
    fn token_file_is_relative_to_the_kubeconfig_and_reread_when_it_changes() {
        let d = tempdir("tokfile");
        let p = write(
            &d,
            "config",
            &CFG.replace("current-context: dev", "current-context: other"),
        );
        write(&d, "tok", "first\n");
        let c = Connection::open(&Source::Kubeconfig(vec![p])).unwrap();
        assert_eq!(c.namespace, "default");
        assert_eq!(c.auth.bearer().unwrap().unwrap().expose(), "first");
        write(&d, "tok", "second-token\n");
        assert_eq!(c.auth.bearer().unwrap().unwrap().expose(), "second-token");
    }

    #[test]
    fn first_file_of_a_list_wins_and_missing_files_are_skipped() {
        let d = tempdir("merge");
        let a = write(
            &d,
            "a",
            "current-context: other\nusers:\n- name: u2\n  user: {token: from-a}\n",
        );
        let b = write(&d, "b", CFG);
        let c = Connection::open(&Source::Kubeconfig(vec![d.join("missing"), a, b])).unwrap();
        assert_eq!(c.auth.bearer().unwrap().unwrap().expose(), "from-a");
    }

    #[test]
    fn unknown_context_and_missing_key_are_explained() {
        let d = tempdir("bad");
        let p = write(
            &d,
            "config",
            &CFG.replace("current-context: dev", "current-context: nope"),
        );
        let e = Connection::open(&Source::Kubeconfig(vec![p]))
            .err()
            .unwrap();
        assert!(e.to_string().contains("context nope not found"), "{e}");
        let p = write(
            &d,
            "config2",
            &CFG.replace(
                "user: {token: abc}",
                "user: {client-certificate-data: QQ==}",
            ),
        );
        let e = Connection::open(&Source::Kubeconfig(vec![p]))
            .err()
            .unwrap();
        assert!(e.to_string().contains("without its key"), "{e}");
        // Found by fuzzing (fuzz/fuzz_targets/kubeconfig.rs).
        for server in ["httpu://127.0.0.1:6443", "https://", "https://:6443"] {
            let text = CFG.replace("https://127.0.0.1:6443/", server);
            let p = write(&d, "config3", &text);
            let e = Connection::open(&Source::Kubeconfig(vec![p]))
                .err()
                .unwrap();
            assert!(e.to_string().contains("is not an https:// URL"), "{e}");
        }
        let p = write(
            &d,
            "config4",
            &CFG.replace("https://127.0.0.1:6443/", "127.0.0.1:6443"),
        );
        let c = Connection::open(&Source::Kubeconfig(vec![p])).unwrap();
        assert_eq!(c.server, "https://127.0.0.1:6443");
    }

    #[test]
    fn in_cluster_reads_namespace_ca_and_a_rotating_token() {
        let d = tempdir("sa");
        write(&d, "namespace", "xtm\n");
        write(&d, "ca.crt", "CA");
        write(&d, "token", "t1");
        let src = Source::InCluster {
            host: "fd00::1".into(),
            port: "443".into(),
            dir: d.clone(),
        };
        let c = Connection::open(&src).unwrap();
        assert_eq!(c.server, "https://[fd00::1]:443");
        assert_eq!(c.namespace, "xtm");
        assert_eq!(c.ca_pem.as_deref(), Some(&b"CA"[..]));
        assert_eq!(c.auth.bearer().unwrap().unwrap().expose(), "t1");
        write(&d, "token", "t2-rotated");
        assert_eq!(c.auth.bearer().unwrap().unwrap().expose(), "t2-rotated");
    }

    #[test]
    fn exec_plugin_token_is_cached_until_it_expires() {
        let d = tempdir("exec");
        let script = write(
            &d,
            "plugin.sh",
            "#!/bin/sh\necho run >> \"$(dirname \"$0\")/runs\"\n\
             printf '{\"apiVersion\":\"client.authentication.k8s.io/v1\",\"kind\":\"ExecCredential\",\
             \"status\":{\"token\":\"tok-%s\",\"expirationTimestamp\":\"%s\"}}' \"$1\" \"$EXP\"\n",
        );
        std::process::Command::new("chmod")
            .arg("+x")
            .arg(&script)
            .status()
            .unwrap();
        let cfg = |exp: &str| {
            CFG.replace(
                "user: {token: abc}",
                &format!(
                    "user: {{exec: {{apiVersion: client.authentication.k8s.io/v1, command: ./plugin.sh, \
                     args: [x], env: [{{name: EXP, value: '{exp}'}}]}}}}"
                ),
            )
        };
        let p = write(&d, "config", &cfg("2999-01-01T00:00:00Z"));
        let c = Connection::open(&Source::Kubeconfig(vec![p])).unwrap();
        assert_eq!(c.auth.bearer().unwrap().unwrap().expose(), "tok-x");
        assert_eq!(c.auth.bearer().unwrap().unwrap().expose(), "tok-x");
        let runs = || {
            std::fs::read_to_string(d.join("runs"))
                .unwrap()
                .lines()
                .count()
        };
        assert_eq!(runs(), 1);
        c.auth.invalidate();
        c.auth.bearer().unwrap();
        assert_eq!(runs(), 2);
        let p = write(&d, "config-expired", &cfg("2000-01-01T00:00:00Z"));
        let c = Connection::open(&Source::Kubeconfig(vec![p])).unwrap();
        c.auth.bearer().unwrap();
        c.auth.bearer().unwrap();
        assert_eq!(runs(), 4);
    }

    #[test]
    fn a_failing_exec_plugin_is_an_error_naming_the_command() {
        let d = tempdir("exec-fail");
        let p = write(
            &d,
            "config",
            &CFG.replace("user: {token: abc}", "user: {exec: {command: /bin/false}}"),
        );
        let c = Connection::open(&Source::Kubeconfig(vec![p])).unwrap();
        let e = c.auth.bearer().err().unwrap();
        assert!(e.to_string().contains("/bin/false"), "{e}");
    }
}
