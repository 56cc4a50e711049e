//! Builds the ureq agents that reach the platforms (OpenCTI, OpenAEV): TLS roots
//! and insecure mode, proxy choice with `no_proxy`, timeouts (CONTRACT §2.1, §5.5.1, D18);
//! and the Kubernetes API server agent (its own CA, client certificate, kubeconfig proxy).
//! Not here: the Docker unix socket and Portainer, which never use a proxy.
//! Invariant: an agent reads proxy env vars only under `ProxyChoice::FromEnv` (ureq's default
//! config reads them always), and no proxy URL or token reaches a log line or an error.

use std::collections::BTreeSet;
use std::fmt;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

use ureq::tls::{Certificate, PemItem, RootCerts, TlsConfig};

use crate::config::PlatformSettings;
use crate::secret::Secret;

/// The largest platform answer we read. A listing of a few hundred connectors with
/// RSA-4096 ciphertexts stays under a few MiB; the bound only stops a runaway body.
pub const BODY_LIMIT: u64 = 32 * 1024 * 1024;

/// The system CA bundle on Debian-like systems and in our image.
const SYSTEM_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// How a platform client reaches its platform.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Whole request, from connect to the last body byte.
    pub request_timeout: Duration,
    pub connect_timeout: Duration,
    /// Accept any certificate (`unsecured_certificate`).
    pub insecure: bool,
    /// Extra trusted CAs, PEM; each entry holds one or more certificates.
    pub ca_pem: Vec<Vec<u8>>,
    pub proxy: ProxyChoice,
}

/// Which proxy a platform client uses (§5.5.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProxyChoice {
    /// Direct connection, whatever the environment says (`with_proxy: false`).
    None,
    /// `ALL_PROXY`/`HTTPS_PROXY`/`HTTP_PROXY` and `NO_PROXY` from the process env.
    FromEnv,
    /// The configured proxies: `http` for `http://` targets, `https` for `https://`
    /// targets; none when the target host matches `no_proxy`.
    Explicit {
        http: Option<Secret>,
        https: Option<Secret>,
        no_proxy: Option<String>,
    },
}

/// A client that could not be built.
#[derive(Debug)]
pub enum Error {
    /// A CA file could not be read.
    ReadCa {
        /// The key that named it (`opencti.ca_file`).
        setting: String,
        path: String,
        source: std::io::Error,
    },
    /// A CA entry is not PEM or holds no certificate.
    BadCa { origin: String, detail: String },
    /// A proxy setting is not a usable proxy URL. The URL itself is never shown.
    BadProxy { setting: &'static str },
    /// The target URL cannot be parsed.
    BadUrl { url: String, detail: String },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::ReadCa {
                setting,
                path,
                source,
            } => write!(f, "{setting}: read CA file {path}: {source}"),
            Error::BadCa { origin, detail } => write!(f, "load CA {origin}: {detail}"),
            Error::BadProxy { setting } => {
                write!(f, "configure proxy: {setting} is not a valid proxy URL")
            }
            Error::BadUrl { url, detail } => write!(f, "parse platform url {url}: {detail}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::ReadCa { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// A remote a client talks to, named as the configuration names it, so that a
/// failed request says which URL and which setting decided the outcome (issue 14).
#[derive(Debug, Clone)]
pub struct Remote {
    /// The URL or engine address, without any `user:password@`.
    url: String,
    /// The configuration section holding its timeouts (`opencti`,
    /// `opencti.daemon.kubernetes`); none when they are not configurable.
    section: Option<String>,
    request_timeout: Duration,
    connect_timeout: Duration,
}

impl Remote {
    /// `url` reached with the timeouts of `section`.
    pub fn new(
        url: &str,
        section: Option<&str>,
        request_timeout: Duration,
        connect_timeout: Duration,
    ) -> Remote {
        Remote {
            url: without_userinfo(url),
            section: section.map(str::to_string),
            request_timeout,
            connect_timeout,
        }
    }

    /// A platform section's URL and timeouts (`name` is `opencti` or `openaev`).
    pub fn platform(name: &str, p: &PlatformSettings) -> Remote {
        Remote::new(
            &p.url,
            Some(name),
            Duration::from_secs(p.request_timeout),
            Duration::from_secs(p.connect_timeout),
        )
    }

    /// The same remote, its timeouts read from `section`.
    pub fn in_section(mut self, section: &str) -> Remote {
        self.section = Some(section.to_string());
        self
    }

    /// The URL as shown in messages.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// `within 30 s (opencti.request_timeout)`.
    fn within(&self, timeout: Duration, key: &str) -> String {
        match &self.section {
            Some(section) => format!("within {} s ({section}.{key})", timeout.as_secs()),
            // Engine calls each have their own timeout (a pull, a listing).
            None => "before the call's timeout".to_string(),
        }
    }

    /// One failed request, told with its target and, for a timeout, the setting
    /// that set it: "no answer from https://o:8080 within 30 s (opencti.request_timeout)".
    pub fn explain(&self, e: &ureq::Error) -> String {
        use std::io::ErrorKind;
        let url = &self.url;
        match e {
            ureq::Error::Timeout(ureq::Timeout::Connect | ureq::Timeout::Resolve) => format!(
                "no connection to {url} {}",
                self.within(self.connect_timeout, "connect_timeout")
            ),
            ureq::Error::Timeout(_) => format!(
                "no answer from {url} {}",
                self.within(self.request_timeout, "request_timeout")
            ),
            ureq::Error::HostNotFound => format!("host of {url} not found (DNS)"),
            ureq::Error::Io(io) => match io.kind() {
                ErrorKind::ConnectionRefused => {
                    format!("connection refused by {url} (is anything listening there?)")
                }
                // Only a unix socket path gives these two.
                ErrorKind::PermissionDenied => format!(
                    "permission denied on {url}: this user needs the socket's group \
                     (docker, which is root-equivalent) or its owner"
                ),
                ErrorKind::NotFound => {
                    format!("no such socket {url} (is the engine running there?)")
                }
                _ => format!("{url}: {io}"),
            },
            ureq::Error::Tls(_) | ureq::Error::Rustls(_) | ureq::Error::Pem(_) => {
                format!("TLS with {url}: {e}")
            }
            other => format!("{url}: {other}"),
        }
    }
}

impl ClientOptions {
    /// Options for a platform section: timeouts, `unsecured_certificate`, `ca_file`,
    /// and, when `with_proxy` is on, the proxy settings and the `https_proxy_ca` bundle.
    ///
    /// # Errors
    /// A CA entry that cannot be read or holds no certificate.
    pub fn for_platform(name: &str, p: &PlatformSettings) -> Result<ClientOptions, Error> {
        let mut ca_pem = Vec::new();
        if let Some(entry) = p.ca_file.as_deref().filter(|e| !e.trim().is_empty()) {
            ca_pem.push(read_ca_entry(&format!("{name}.ca_file"), entry)?);
        }
        // §5.4: the proxy CA reaches connectors only with `with_proxy`; trust it on
        // the same condition so both sides of the proxy see the same CAs (D18).
        if p.with_proxy {
            for entry in p.https_proxy_ca.iter().filter(|e| !e.trim().is_empty()) {
                ca_pem.push(read_ca_entry(&format!("{name}.https_proxy_ca"), entry)?);
            }
        }
        Ok(ClientOptions {
            request_timeout: Duration::from_secs(p.request_timeout),
            connect_timeout: Duration::from_secs(p.connect_timeout),
            insecure: p.unsecured_certificate,
            ca_pem,
            proxy: proxy_choice(p),
        })
    }

    /// Options for an engine API behind HTTPS (Portainer): never a proxy (§5.5.1),
    /// TLS verified unless `insecure`, trusting `ca_entry` (a file path or inline
    /// PEM, named `setting` in errors) besides the system roots.
    ///
    /// # Errors
    /// A CA entry that cannot be read or holds no certificate.
    pub fn for_engine(
        setting: &str,
        ca_entry: Option<&str>,
        insecure: bool,
        request_timeout: Duration,
        connect_timeout: Duration,
    ) -> Result<ClientOptions, Error> {
        let ca_pem = match ca_entry.filter(|e| !e.trim().is_empty()) {
            Some(entry) => vec![read_ca_entry(setting, entry)?],
            None => Vec::new(),
        };
        Ok(ClientOptions {
            request_timeout,
            connect_timeout,
            insecure,
            ca_pem,
            proxy: ProxyChoice::None,
        })
    }
}

fn proxy_choice(p: &PlatformSettings) -> ProxyChoice {
    let given = |s: &Option<Secret>| s.clone().filter(|s| !s.expose().trim().is_empty());
    let (http, https) = (given(&p.http_proxy), given(&p.https_proxy));
    match (p.with_proxy, http.is_some() || https.is_some()) {
        (false, _) => ProxyChoice::None,
        (true, false) => ProxyChoice::FromEnv,
        (true, true) => ProxyChoice::Explicit {
            http,
            https,
            no_proxy: p.no_proxy.clone(),
        },
    }
}

/// One `ca_file` / `https_proxy_ca` entry: inline PEM when it starts with
/// `-----BEGIN`, a file path otherwise (§5.5.2). Checked to hold a certificate.
fn read_ca_entry(setting: &str, entry: &str) -> Result<Vec<u8>, Error> {
    let trimmed = entry.trim_start();
    let (origin, pem) = if trimmed.starts_with("-----BEGIN") {
        (
            format!("{setting} (inline PEM)"),
            trimmed.as_bytes().to_vec(),
        )
    } else {
        let pem = std::fs::read(entry).map_err(|source| Error::ReadCa {
            setting: setting.to_string(),
            path: entry.to_string(),
            source,
        })?;
        (format!("{setting} {entry}"), pem)
    };
    certificates(&origin, &pem)?;
    Ok(pem)
}

fn certificates(origin: &str, pem: &[u8]) -> Result<Vec<Certificate<'static>>, Error> {
    let mut certs = Vec::new();
    for item in ureq::tls::parse_pem(pem) {
        match item {
            Ok(PemItem::Certificate(c)) => certs.push(c),
            Ok(_) => {}
            Err(e) => {
                return Err(Error::BadCa {
                    origin: origin.to_string(),
                    detail: e.to_string(),
                });
            }
        }
    }
    if certs.is_empty() {
        return Err(Error::BadCa {
            origin: origin.to_string(),
            detail: "no certificate found".into(),
        });
    }
    Ok(certs)
}

/// Builds the agent for one platform URL. Built once per client: the proxy
/// decision (`no_proxy`) is taken here for `target_url`'s host.
///
/// # Errors
/// An unparsable target URL, CA entry or proxy URL.
pub fn agent(opts: &ClientOptions, target_url: &str) -> Result<ureq::Agent, Error> {
    agent_with(opts, target_url, PLATFORM_REDIRECTS)
}

/// As [`agent`], for an engine API (Portainer): follows no redirect, so its
/// `X-API-KEY` and `X-Registry-Auth` headers never reach another host; a 3xx
/// is an answer like any other (issue 12).
///
/// # Errors
/// As [`agent`].
pub fn engine_agent(opts: &ClientOptions, target_url: &str) -> Result<ureq::Agent, Error> {
    agent_with(opts, target_url, 0)
}

/// ureq's default; platforms behind a reverse proxy may redirect, and ureq
/// drops `Authorization` when one does.
const PLATFORM_REDIRECTS: u32 = 10;

fn agent_with(
    opts: &ClientOptions,
    target_url: &str,
    redirects: u32,
) -> Result<ureq::Agent, Error> {
    let target = Target::parse(target_url)?;
    Ok(build(
        proxy(&opts.proxy, &target)?,
        tls(opts, &target)?,
        (opts.connect_timeout, opts.request_timeout),
        redirects,
    ))
}

/// The settings every agent shares: status codes are answers, not errors; both
/// timeouts; our user agent.
fn build(
    proxy: Option<ureq::Proxy>,
    tls: TlsConfig,
    (connect_timeout, request_timeout): (Duration, Duration),
    redirects: u32,
) -> ureq::Agent {
    ureq::Agent::config_builder()
        .proxy(proxy)
        .tls_config(tls)
        .http_status_as_error(false)
        .max_redirects(redirects)
        .timeout_connect(Some(connect_timeout))
        .timeout_global(Some(request_timeout))
        .user_agent(concat!("xtm-composer/", env!("CARGO_PKG_VERSION")))
        .build()
        .new_agent()
}

/// How a Kubernetes API server is reached (from a kubeconfig or the service account).
pub struct ApiServerTls<'a> {
    /// PEM CA(s) to trust instead of the compiled-in roots, as kubectl does.
    pub ca_pem: Option<&'a [u8]>,
    /// PEM client certificate chain and its parsed key.
    pub client_cert: Option<(&'a [u8], ureq::tls::PrivateKey<'static>)>,
    /// `insecure-skip-tls-verify`.
    pub insecure: bool,
    /// Kubeconfig `proxy-url`; none otherwise (§5.5.1 proxies are for platform clients).
    pub proxy_url: Option<&'a str>,
}

/// The agent for a Kubernetes API server (`orchestrator::kubernetes`).
///
/// # Errors
/// A CA or client certificate PEM without a certificate; an invalid proxy URL.
pub fn kubernetes_agent(
    a: ApiServerTls<'_>,
    connect_timeout: Duration,
    request_timeout: Duration,
) -> Result<ureq::Agent, Error> {
    let mut tls = TlsConfig::builder().disable_verification(a.insecure);
    if let Some(pem) = a.ca_pem {
        let roots = certificates("kubernetes certificate-authority", pem)?;
        tls = tls.root_certs(RootCerts::new_with_certs(&roots));
    }
    if let Some((chain, key)) = a.client_cert {
        let chain = certificates("kubernetes client-certificate", chain)?;
        tls = tls.client_cert(Some(ureq::tls::ClientCert::new_with_certs(&chain, key)));
    }
    let proxy = match a.proxy_url {
        Some(url) => Some(ureq::Proxy::new(url).map_err(|_| Error::BadProxy {
            setting: "kubeconfig proxy-url",
        })?),
        None => None,
    };
    // An API server never redirects a client; following one would carry the
    // bearer token or client certificate session elsewhere.
    Ok(build(
        proxy,
        tls.build(),
        (connect_timeout, request_timeout),
        0,
    ))
}

/// Scheme, host and port of the one URL an agent talks to.
struct Target {
    https: bool,
    host: String,
    port: u16,
}

/// Why `url` cannot be the target of an agent (an `http`/`https` scheme and a
/// host are needed), if it cannot: the configuration checks its URLs with this.
pub fn url_problem(url: &str) -> Option<String> {
    match Target::parse(url) {
        Ok(_) => None,
        Err(Error::BadUrl { detail, .. }) => Some(detail),
        Err(other) => Some(other.to_string()),
    }
}

impl Target {
    fn parse(url: &str) -> Result<Target, Error> {
        let bad = |detail: &str| Error::BadUrl {
            url: without_userinfo(url),
            detail: detail.to_string(),
        };
        let uri: ureq::http::Uri = url.parse().map_err(|e| bad(&format!("{e}")))?;
        let https = match uri.scheme_str() {
            Some(s) if s.eq_ignore_ascii_case("https") => true,
            Some(s) if s.eq_ignore_ascii_case("http") => false,
            _ => return Err(bad("scheme must be http or https")),
        };
        let host = uri.host().ok_or_else(|| bad("no host"))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        Ok(Target {
            https,
            host: host.to_ascii_lowercase(),
            port,
        })
    }
}

/// The URL with any `user:password@` replaced by `***@`, for messages and log lines.
pub fn without_userinfo(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) if scheme.is_empty() => format!("***@{}", &rest[at + 1..]),
        Some(at) => format!("{scheme}://***@{}", &rest[at + 1..]),
        None => url.to_string(),
    }
}

fn proxy(choice: &ProxyChoice, target: &Target) -> Result<Option<ureq::Proxy>, Error> {
    match choice {
        ProxyChoice::None => Ok(None),
        ProxyChoice::FromEnv => Ok(ureq::Proxy::try_from_env()),
        ProxyChoice::Explicit {
            http,
            https,
            no_proxy,
        } => {
            let (setting, url) = if target.https {
                ("https_proxy", https)
            } else {
                ("http_proxy", http)
            };
            let bypass = no_proxy
                .as_deref()
                .is_some_and(|list| matches_no_proxy(list, &target.host, target.port));
            match url {
                Some(url) if !bypass => ureq::Proxy::new(url.expose().trim())
                    .map(Some)
                    .map_err(|_| Error::BadProxy { setting }),
                _ => Ok(None),
            }
        }
    }
}

/// True when `host:port` matches a `no_proxy` list: comma or space separated
/// entries, `*` for all, domain suffixes (`example.com`, `.example.com`,
/// `*.example.com` all cover subdomains, as curl does), `host:port`, IP addresses
/// and CIDR ranges.
pub fn matches_no_proxy(list: &str, host: &str, port: u16) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    list.split([',', ' ', '\t', '\n'])
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .any(|entry| entry_matches(entry, host, port))
}

fn entry_matches(entry: &str, host: &str, port: u16) -> bool {
    if entry == "*" {
        return true;
    }
    if let Some((net, len)) = entry.split_once('/') {
        return cidr_contains(net, len, host);
    }
    let (name, entry_port) = split_port(entry);
    if entry_port.is_some_and(|p| p != port) {
        return false;
    }
    let name = name
        .trim_start_matches('*')
        .trim_start_matches('.')
        .trim_end_matches('.')
        .to_ascii_lowercase();
    if name.is_empty() {
        return false;
    }
    let host = host.to_ascii_lowercase();
    host == name
        || (host.parse::<IpAddr>().is_err()
            && host.ends_with(&name)
            && host[..host.len() - name.len()].ends_with('.'))
}

/// Splits `host:port` and `[v6]:port`; a bare IPv6 address has no port.
fn split_port(entry: &str) -> (&str, Option<u16>) {
    if let Some(rest) = entry.strip_prefix('[') {
        return match rest.split_once(']') {
            Some((addr, tail)) => (addr, tail.strip_prefix(':').and_then(|p| p.parse().ok())),
            None => (rest, None),
        };
    }
    match entry.rsplit_once(':') {
        Some((name, p)) if !name.contains(':') => (name, p.parse().ok()),
        _ => (entry, None),
    }
}

fn cidr_contains(net: &str, len: &str, host: &str) -> bool {
    let (Ok(net), Ok(len), Ok(addr)) = (
        net.trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>(),
        len.parse::<u32>(),
        host.parse::<IpAddr>(),
    ) else {
        return false;
    };
    let prefix = |bits: u128, width: u32| {
        if len == 0 {
            0
        } else {
            bits >> (width - len.min(width))
        }
    };
    match (net, addr) {
        (IpAddr::V4(n), IpAddr::V4(a)) if len <= 32 => {
            prefix(u32::from(n).into(), 32) == prefix(u32::from(a).into(), 32)
        }
        (IpAddr::V6(n), IpAddr::V6(a)) if len <= 128 => {
            prefix(u128::from(n), 128) == prefix(u128::from(a), 128)
        }
        _ => false,
    }
}

fn tls(opts: &ClientOptions, target: &Target) -> Result<TlsConfig, Error> {
    let builder = TlsConfig::builder();
    if opts.insecure {
        warn_insecure(&target.host);
        return Ok(builder.disable_verification(true).build());
    }
    if opts.ca_pem.is_empty() {
        // ureq's default: the compiled-in Mozilla roots, the same on every host.
        return Ok(builder.root_certs(RootCerts::WebPki).build());
    }
    Ok(builder.root_certs(extended_roots(&opts.ca_pem)?).build())
}

/// The system bundle plus the given CAs. The system bundle, not the compiled-in
/// roots, because ureq cannot merge its WebPki roots with extra certificates;
/// without a system bundle only the given CAs are trusted.
fn extended_roots(ca_pem: &[Vec<u8>]) -> Result<RootCerts, Error> {
    let mut roots = Vec::new();
    match std::fs::read(SYSTEM_BUNDLE) {
        Ok(pem) => roots.extend(certificates(SYSTEM_BUNDLE, &pem).unwrap_or_default()),
        Err(e) => log::debug!(
            "no system CA bundle at {SYSTEM_BUNDLE} ({e}); trusting only the configured CAs"
        ),
    }
    for (i, pem) in ca_pem.iter().enumerate() {
        roots.extend(certificates(&format!("entry {}", i + 1), pem)?);
    }
    Ok(RootCerts::new_with_certs(&roots))
}

/// Logs the insecure-mode warning once per host for the life of the process.
fn warn_insecure(host: &str) {
    static WARNED: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());
    let first = match WARNED.lock() {
        Ok(mut set) => set.insert(host.to_string()),
        Err(_) => true,
    };
    if first {
        log::warn!(
            "TLS certificate verification is disabled for {host} (unsecured_certificate: true)"
        );
    }
}

/// Percent-encodes a path segment or query value: everything but RFC 3986
/// unreserved characters.
pub fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Reads a response body as text, at most `BODY_LIMIT` bytes.
///
/// # Errors
/// The body is too large, not UTF-8, or the connection failed while reading it.
pub fn read_text(response: &mut ureq::http::Response<ureq::Body>) -> Result<String, ureq::Error> {
    response
        .body_mut()
        .with_config()
        .limit(BODY_LIMIT)
        .read_to_string()
}

/// Reads a JSON answer of at most `limit` bytes and decodes it as `T`; a body that
/// is not `T` is `ureq::Error::Json` ("json: …", as ureq's own `read_json` says).
///
/// Every JSON answer is decoded here, from a byte slice: serde compiles a decoder per
/// type *and* per input kind (`&str`, `&[u8]`, `io::Read`, `Value`), and ureq's own
/// `read_json` alone uses two of them, so one input kind keeps one copy of each
/// (issue 15, docs/benchmarks.md "Binary size"). Parse text already read with
/// `serde_json::from_slice(text.as_bytes())` for the same reason.
///
/// # Errors
/// The body is larger than `limit`, the connection failed while reading it, or it is
/// not `T`.
pub fn read_json<T: serde::de::DeserializeOwned>(
    response: &mut ureq::http::Response<ureq::Body>,
    limit: u64,
) -> Result<T, ureq::Error> {
    let body = response
        .body_mut()
        .with_config()
        .limit(limit)
        .read_to_vec()?;
    serde_json::from_slice(&body).map_err(ureq::Error::Json)
}

/// Test helper: answers every connection on `listener` with `reply`, counting them.
#[cfg(test)]
pub(crate) fn serve_fixed(
    listener: std::net::TcpListener,
    reply: String,
) -> std::sync::Arc<std::sync::atomic::AtomicUsize> {
    use std::io::{Read, Write};
    let count = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = std::sync::Arc::clone(&count);
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let mut buf = [0u8; 8192];
            let _ = conn.read(&mut buf);
            let _ = conn.write_all(reply.as_bytes());
        }
    });
    count
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 12: Portainer's agent followed redirects carrying `X-API-KEY`.
    #[test]
    fn engine_agents_follow_no_redirect_platform_agents_do() {
        let other = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let location = format!("http://{}/elsewhere", other.local_addr().unwrap());
        let followed = serve_fixed(other, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n".into());
        let first = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/api", first.local_addr().unwrap());
        serve_fixed(
            first,
            format!("HTTP/1.1 302 Found\r\nLocation: {location}\r\nContent-Length: 0\r\n\r\n"),
        );
        let opts = ClientOptions::for_engine(
            "portainer.ca_file",
            None,
            false,
            Duration::from_secs(5),
            Duration::from_secs(5),
        )
        .unwrap();
        let status = |agent: ureq::Agent| {
            agent
                .get(&url)
                .header("X-API-KEY", "key")
                .call()
                .unwrap()
                .status()
                .as_u16()
        };
        assert_eq!(status(engine_agent(&opts, &url).unwrap()), 302);
        assert_eq!(followed.load(std::sync::atomic::Ordering::SeqCst), 0);
        assert_eq!(status(agent(&opts, &url).unwrap()), 200);
        assert_eq!(followed.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    #[test]
    fn no_proxy_matches_hosts_domains_ports_and_ranges() {
        let rows = [
            ("*", "anything.example", 443, true),
            ("opencti", "opencti", 80, true),
            ("example.com", "opencti.example.com", 443, true),
            ("example.com", "badexample.com", 443, false),
            (".example.com", "example.com", 443, true),
            ("*.example.com", "a.b.example.com", 443, true),
            ("Example.COM", "example.com", 443, true),
            ("opencti:8080", "opencti", 8080, true),
            ("opencti:8080", "opencti", 4000, false),
            ("10.0.0.0/8", "10.2.3.4", 80, true),
            ("10.0.0.0/8", "11.2.3.4", 80, false),
            ("127.0.0.1", "127.0.0.1", 4000, true),
            ("0.0.0.1", "127.0.0.1", 4000, false),
            ("::1", "::1", 80, true),
            ("[::1]:80", "[::1]", 80, true),
            ("fd00::/8", "fd12::1", 80, true),
            ("localhost, 127.0.0.1", "127.0.0.1", 80, true),
            ("", "opencti", 80, false),
        ];
        for (list, host, port, want) in rows {
            assert_eq!(
                matches_no_proxy(list, host, port),
                want,
                "{list} vs {host}:{port}"
            );
        }
    }

    fn explicit(no_proxy: Option<&str>) -> ProxyChoice {
        ProxyChoice::Explicit {
            http: Some(Secret::new("http://user:pw@127.0.0.1:3128")),
            https: None,
            no_proxy: no_proxy.map(String::from),
        }
    }

    #[test]
    fn explicit_proxy_follows_the_target_scheme_and_no_proxy() {
        let http = Target::parse("http://opencti:4000").unwrap();
        let https = Target::parse("https://opencti").unwrap();
        assert!(proxy(&explicit(None), &http).unwrap().is_some());
        assert!(proxy(&explicit(None), &https).unwrap().is_none());
        assert!(proxy(&explicit(Some("opencti")), &http).unwrap().is_none());
        assert!(proxy(&ProxyChoice::None, &http).unwrap().is_none());
    }

    #[test]
    fn bad_proxy_url_names_the_setting_not_the_url() {
        let choice = ProxyChoice::Explicit {
            http: Some(Secret::new("ftp://user:hunter2@proxy")),
            https: None,
            no_proxy: None,
        };
        let target = Target::parse("http://opencti:4000").unwrap();
        let err = proxy(&choice, &target).unwrap_err().to_string();
        assert_eq!(err, "configure proxy: http_proxy is not a valid proxy URL");
    }

    #[test]
    fn with_proxy_false_means_no_proxy_even_with_explicit_values() {
        let p = PlatformSettings {
            with_proxy: false,
            http_proxy: Some(Secret::new("http://127.0.0.1:1")),
            ..PlatformSettings::default()
        };
        assert_eq!(proxy_choice(&p), ProxyChoice::None);
        let p = PlatformSettings {
            with_proxy: true,
            ..p
        };
        assert!(matches!(proxy_choice(&p), ProxyChoice::Explicit { .. }));
        let p = PlatformSettings {
            http_proxy: Some(Secret::new(" ")),
            ..p
        };
        assert_eq!(proxy_choice(&p), ProxyChoice::FromEnv);
    }

    #[test]
    fn ca_entry_without_a_certificate_is_an_error() {
        let err = read_ca_entry(
            "ca_file",
            "-----BEGIN NOTHING-----\n-----END NOTHING-----\n",
        )
        .unwrap_err()
        .to_string();
        assert!(err.starts_with("load CA ca_file (inline PEM): "), "{err}");
        let err = read_ca_entry("opencti.ca_file", "/nonexistent/ca.pem").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("opencti.ca_file: read CA file /nonexistent/ca.pem: "),
            "{err}"
        );
    }

    fn remote() -> Remote {
        let p = PlatformSettings {
            url: "https://user:pw@opencti.test:8443".into(),
            ..PlatformSettings::default()
        };
        Remote::platform("opencti", &p)
    }

    #[test]
    fn a_timeout_names_the_url_the_duration_and_the_setting() {
        let global = ureq::Error::Timeout(ureq::Timeout::Global);
        assert_eq!(
            remote().explain(&global),
            "no answer from https://***@opencti.test:8443 within 30 s (opencti.request_timeout)"
        );
        let connect = ureq::Error::Timeout(ureq::Timeout::Connect);
        assert_eq!(
            remote().explain(&connect),
            "no connection to https://***@opencti.test:8443 within 10 s (opencti.connect_timeout)"
        );
    }

    #[test]
    fn socket_errors_tell_permission_from_absence() {
        let engine = Remote::new(
            "unix:///run/docker.sock",
            None,
            Duration::from_secs(120),
            Duration::from_secs(120),
        );
        let io = |kind| ureq::Error::Io(std::io::Error::from(kind));
        let denied = engine.explain(&io(std::io::ErrorKind::PermissionDenied));
        assert!(
            denied.starts_with("permission denied on unix:///run/docker.sock: ")
                && denied.contains("group"),
            "{denied}"
        );
        let missing = engine.explain(&io(std::io::ErrorKind::NotFound));
        assert!(
            missing.starts_with("no such socket unix:///run/docker.sock"),
            "{missing}"
        );
        let refused = engine.explain(&io(std::io::ErrorKind::ConnectionRefused));
        assert!(
            refused.starts_with("connection refused by unix:///run/docker.sock"),
            "{refused}"
        );
        let slow = engine.explain(&ureq::Error::Timeout(ureq::Timeout::RecvResponse));
        assert_eq!(
            slow,
            "no answer from unix:///run/docker.sock before the call's timeout"
        );
    }

    #[test]
    fn target_url_must_be_http_or_https() {
        assert!(Target::parse("ftp://opencti").is_err());
        assert!(Target::parse("not a url").is_err());
        let err = Target::parse("gopher://user:pw@opencti/x@y").err().unwrap();
        assert_eq!(
            err.to_string(),
            "parse platform url gopher://***@opencti/x@y: scheme must be http or https"
        );
        let t = Target::parse("https://[::1]:8443/base/").unwrap();
        assert_eq!((t.https, t.host.as_str(), t.port), (true, "::1", 8443));
    }

    /// The one JSON reader: decodes within the bound, refuses a larger body
    /// (chunked, so no Content-Length tells it beforehand) and says what is not JSON.
    #[test]
    fn read_json_is_bounded_and_names_bad_json() {
        let fetch = |body: &str, limit: u64| {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let url = format!("http://{}/", listener.local_addr().unwrap());
            serve_fixed(
                listener,
                format!(
                    "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n",
                    body.len()
                ),
            );
            let opts = ClientOptions::for_engine(
                "test",
                None,
                false,
                Duration::from_secs(5),
                Duration::from_secs(5),
            )
            .unwrap();
            let mut resp = agent(&opts, &url).unwrap().get(&url).call().unwrap();
            read_json::<Vec<u32>>(&mut resp, limit)
        };
        assert_eq!(fetch("[1, 2, 3]", 9).unwrap(), [1, 2, 3]);
        assert!(matches!(
            fetch("[1, 2, 3]", 8),
            Err(ureq::Error::BodyExceedsLimit(8))
        ));
        let bad = fetch("[1, \"x\"]", 100).unwrap_err().to_string();
        assert!(bad.starts_with("json: invalid type: string"), "{bad}");
    }
}
