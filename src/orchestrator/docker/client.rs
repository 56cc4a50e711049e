//! `Client`: the one Docker Engine API client, parameterised by agent, base URL
//! and extra headers so that Docker (unix socket / tcp), Portainer (HTTPS base
//! plus `X-API-KEY`) and Swarm (the same daemon) share every call (DESIGN 5).
//! One function per endpoint; paths and queries are built and percent-encoded
//! here. It does not decide policy (pull or not, what to create): see `Docker`.
//! The API version is negotiated once with `GET /version` and capped (CONTRACT §6.1, D9).

use std::fmt;
use std::io::{BufRead, BufReader, Read};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::de::DeserializeOwned;
use ureq::http::{Method, Request, Response};
use ureq::{Agent, Body};

use super::{image, stream, transport, wire};
use crate::config::{Endpoint, EngineAddress};
use crate::orchestrator::Error;
use crate::secret::Secret;

/// The newest Engine API we speak; newer engines are addressed at this version.
pub const MAX_API_VERSION: ApiVersion = ApiVersion {
    major: 1,
    minor: 45,
};
/// A pull is a stream that lasts as long as the download; it only blocks its
/// own connector's thread (D22).
const PULL_TIMEOUT: Duration = Duration::from_secs(3600);
const JSON_LIMIT: u64 = 32 * 1024 * 1024;
const ERROR_BODY_LIMIT: u64 = 64 * 1024;
const MESSAGE_CHARS: usize = 512;

/// An Engine API version such as `1.41`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ApiVersion {
    pub major: u32,
    pub minor: u32,
}

impl ApiVersion {
    /// Reads `1.41` (a leading `v`, as Portainer's `api_version` has, is accepted).
    pub fn parse(text: &str) -> Option<ApiVersion> {
        let text = text.trim();
        let text = text.strip_prefix('v').unwrap_or(text);
        let (major, minor) = text.split_once('.')?;
        Some(ApiVersion {
            major: major.parse().ok()?,
            minor: minor.parse().ok()?,
        })
    }

    /// The version to use with an engine that speaks at most `server`.
    pub fn negotiate(server: ApiVersion) -> ApiVersion {
        server.min(MAX_API_VERSION)
    }
}

impl std::str::FromStr for ApiVersion {
    type Err = String;

    fn from_str(text: &str) -> Result<ApiVersion, String> {
        ApiVersion::parse(text).ok_or_else(|| format!("not an API version: {text:?}"))
    }
}

impl fmt::Display for ApiVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// An engine address for messages; its timeouts are per call, not configured.
fn engine_remote(address: &str) -> crate::http::Remote {
    let timeout = transport::REQUEST_TIMEOUT;
    crate::http::Remote::new(address, None, timeout, timeout)
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
pub(crate) use crate::http::percent_encode as encode;

/// The engine host of a `tcp://` or `http://` address when it is not a
/// loopback address, for the start-up warning: decrypted env values and
/// registry credentials then cross the network unencrypted (issue 12).
pub(crate) fn remote_plain_tcp(host: &str) -> Option<&str> {
    let authority = host
        .strip_prefix("tcp://")
        .or_else(|| host.strip_prefix("http://"))?
        .trim_end_matches('/');
    let name = match authority.strip_prefix('[') {
        Some(rest) => rest.split_once(']').map_or(rest, |(h, _)| h),
        None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
    };
    let loopback = name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    (!loopback).then_some(name)
}

/// The `filters` query value selecting one label (`key=value`).
pub(crate) fn label_filter(label: &str) -> String {
    encode(&serde_json::json!({ "label": [label] }).to_string())
}

/// A request body and its content type.
pub(crate) enum Payload<'a> {
    Empty,
    Json(Vec<u8>),
    Tar(&'a [u8]),
}

/// A Docker Engine API client.
pub struct Client {
    agent: Agent,
    /// Scheme, host and path prefix, without trailing `/` (`http://docker`,
    /// `https://portainer:9443/api/endpoints/1/docker`).
    base: String,
    /// The engine as the operator configured it (`unix:///var/run/docker.sock`,
    /// the Portainer URL), named in transport errors.
    remote: crate::http::Remote,
    /// Sent on every request (e.g. `X-API-KEY`).
    headers: Vec<(String, Secret)>,
    version: OnceLock<ApiVersion>,
    /// The highest version negotiation may pick (ours, or Portainer's `api_version`).
    cap: ApiVersion,
    /// Requests sent, for the calls-per-cycle figure.
    requests: AtomicU64,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.headers.iter().map(|(k, _)| k.as_str()).collect();
        f.debug_struct("Client")
            .field("base", &self.base)
            .field("headers", &names)
            .field("version", &self.version.get())
            .finish()
    }
}

impl Client {
    /// A client over `agent` (which must not turn statuses into errors) for
    /// `base`, adding `headers` to every request; the version is negotiated lazily.
    pub fn new(agent: Agent, base: impl Into<String>, headers: Vec<(String, Secret)>) -> Client {
        let base = base.into().trim_end_matches('/').to_string();
        Client {
            agent,
            remote: engine_remote(&base),
            base,
            headers,
            version: OnceLock::new(),
            cap: MAX_API_VERSION,
            requests: AtomicU64::new(0),
        }
    }

    /// A client for an engine address (`{p}.daemon.docker.host`, `DOCKER_HOST`),
    /// named by it in transport errors; no request is made.
    pub fn for_engine(address: &EngineAddress) -> Client {
        let client = match address.endpoint() {
            Endpoint::Unix(path) => {
                Client::new(transport::unix_agent(path), "http://docker", Vec::new())
            }
            Endpoint::Tcp(authority) => Client::new(
                transport::tcp_agent(),
                format!("http://{authority}"),
                Vec::new(),
            ),
        };
        client.named(address.as_str())
    }

    /// Names the engine `address` (as configured) in transport errors.
    pub fn named(mut self, address: &str) -> Client {
        self.remote = engine_remote(address);
        self
    }

    /// How many requests this client has sent (negotiation included).
    pub fn request_count(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// Uses `version` instead of negotiating (Portainer's configured `api_version`).
    pub fn with_api_version(self, version: ApiVersion) -> Client {
        let _ = self.version.set(version);
        self
    }

    /// Negotiates no higher than `cap` (Portainer's configured `api_version`):
    /// the engine behind the proxy may be older than the configured version.
    pub fn with_max_api_version(mut self, cap: ApiVersion) -> Client {
        self.cap = cap.min(MAX_API_VERSION);
        self
    }

    /// The version in use: negotiated on first use with `GET /version`, then kept.
    ///
    /// # Errors
    /// The engine is unreachable or its answer has no readable `ApiVersion`.
    pub fn api_version(&self) -> Result<ApiVersion, Error> {
        if let Some(v) = self.version.get() {
            return Ok(*v);
        }
        const OP: &str = "negotiate api version";
        let url = format!("{}/version", self.base);
        let resp = self.send(OP, Method::GET, url, Payload::Empty, None, None)?;
        if !resp.status().is_success() {
            return Err(failure(OP, "/version", resp));
        }
        let answer: wire::SystemVersion = read_json(OP, resp)?;
        let server = ApiVersion::parse(&answer.api_version).ok_or_else(|| Error::Decode {
            op: OP,
            detail: format!("ApiVersion {:?}", answer.api_version),
        })?;
        let version = ApiVersion::negotiate(server).min(self.cap);
        Ok(*self.version.get_or_init(|| version))
    }

    /// Sends one request to `/v{version}{path}` (Swarm's service endpoints
    /// build on this too). Any status is returned: see `expect_success`.
    ///
    /// # Errors
    /// `Error::Transport` when the engine cannot be reached or times out.
    pub(crate) fn call(
        &self,
        op: &'static str,
        method: Method,
        path: &str,
        payload: Payload<'_>,
        registry_auth: Option<&Secret>,
        timeout: Option<Duration>,
    ) -> Result<Response<Body>, Error> {
        let url = format!("{}/v{}{path}", self.base, self.api_version()?);
        self.send(op, method, url, payload, registry_auth, timeout)
    }

    /// `GET path`, answered with JSON (`target` names the object in errors).
    ///
    /// # Errors
    /// As `call`, then `expect_success` and `read_json`.
    pub(crate) fn get_json<T: DeserializeOwned>(
        &self,
        op: &'static str,
        path: &str,
        target: &str,
    ) -> Result<T, Error> {
        let resp = self.call(op, Method::GET, path, Payload::Empty, None, None)?;
        expect_success(op, target, resp).and_then(|r| read_json(op, r))
    }

    /// `GET path` of a log endpoint (containers, Swarm services): the last
    /// `tail` lines, split from the raw stream when `tty`, else demultiplexed.
    ///
    /// # Errors
    /// As `call`, then `expect_success`; `Error::Decode` for a broken stream.
    pub(crate) fn get_logs(
        &self,
        op: &'static str,
        path: &str,
        target: &str,
        tail: u32,
        tty: bool,
    ) -> Result<Vec<String>, Error> {
        let resp = self.call(op, Method::GET, path, Payload::Empty, None, None)?;
        let body = expect_success(op, target, resp)?.into_body();
        let keep = usize::try_from(tail).unwrap_or(usize::MAX);
        stream::read_log_lines(body.into_reader(), tty, keep).map_err(|e| Error::Decode {
            op,
            detail: e.to_string(),
        })
    }

    /// A request without body whose answer only has to be a success.
    ///
    /// # Errors
    /// As `call`, then `expect_success`.
    pub(crate) fn act(
        &self,
        op: &'static str,
        method: Method,
        path: &str,
        target: &str,
    ) -> Result<(), Error> {
        let resp = self.call(op, method, path, Payload::Empty, None, None)?;
        expect_success(op, target, resp).map(drop)
    }

    fn send(
        &self,
        op: &'static str,
        method: Method,
        url: String,
        payload: Payload<'_>,
        registry_auth: Option<&Secret>,
        timeout: Option<Duration>,
    ) -> Result<Response<Body>, Error> {
        let mut builder = Request::builder().method(method).uri(url);
        for (name, value) in &self.headers {
            builder = builder.header(name.as_str(), value.expose());
        }
        if let Some(auth) = registry_auth {
            builder = builder.header("X-Registry-Auth", auth.expose());
        }
        let (content_type, bytes): (Option<&str>, &[u8]) = match &payload {
            Payload::Empty => (None, &[]),
            Payload::Json(b) => (Some("application/json"), b),
            Payload::Tar(b) => (Some("application/x-tar"), b),
        };
        if let Some(ct) = content_type {
            builder = builder.header("Content-Type", ct);
        }
        // Header values are never echoed: they may hold the API key or registry password.
        let request = builder.body(bytes).map_err(|_| Error::Config {
            op,
            detail: "invalid request url or header".into(),
        })?;
        let request = match timeout {
            Some(t) => self
                .agent
                .configure_request(request)
                .timeout_global(Some(t))
                .build(),
            None => request,
        };
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.agent.run(request).map_err(|e| Error::Transport {
            op,
            detail: self.remote.explain(&e),
        })
    }

    /// `GET /containers/json?all=true` for containers carrying `label` (`key=value`).
    pub(crate) fn list_containers(
        &self,
        label: &str,
    ) -> Result<Vec<wire::ContainerSummary>, Error> {
        const OP: &str = "list containers";
        let path = format!(
            "/containers/json?all=true&size=false&filters={}",
            label_filter(label)
        );
        self.get_json(OP, &path, label)
    }

    /// `GET /containers/{id}/json`.
    pub(crate) fn inspect_container(&self, id: &str) -> Result<wire::ContainerInspect, Error> {
        const OP: &str = "inspect container";
        let path = format!("/containers/{}/json?size=false", encode(id));
        self.get_json(OP, &path, id)
    }

    /// `GET /images/{name}/json`; `None` when the image is not present.
    pub(crate) fn inspect_image(&self, image: &str) -> Result<Option<wire::ImageInspect>, Error> {
        const OP: &str = "inspect image";
        let path = format!("/images/{}/json", encode(image));
        let resp = self.call(OP, Method::GET, &path, Payload::Empty, None, None)?;
        match expect_success(OP, image, resp) {
            Ok(r) => read_json(OP, r).map(Some),
            Err(Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `POST /images/create`: pulls `image` (`:latest` when untagged), consuming
    /// the progress stream to its end.
    ///
    /// # Errors
    /// `Error::Image` for an error status or an error object inside the 200 stream.
    pub(crate) fn pull_image(&self, image: &str, auth: Option<&Secret>) -> Result<(), Error> {
        const OP: &str = "pull image";
        let (repo, tag) = image::split_reference(image);
        let path = format!(
            "/images/create?fromImage={}&tag={}",
            encode(repo),
            encode(tag)
        );
        let failed = |detail: String| Error::Image {
            op: OP,
            image: image.to_string(),
            detail,
        };
        let resp = self.call(
            OP,
            Method::POST,
            &path,
            Payload::Empty,
            auth,
            Some(PULL_TIMEOUT),
        )?;
        if !resp.status().is_success() {
            let code = resp.status().as_u16();
            return Err(failed(format!(
                "engine returned {code}: {}",
                error_message(resp)
            )));
        }
        pull_progress(BufReader::new(resp.into_body().into_reader())).map_err(failed)
    }

    /// `POST /containers/create?name=`; returns the new container's id.
    ///
    /// # Errors
    /// `Error::Image` when the image is missing (404), `Error::Api` otherwise
    /// (409: the name is taken).
    pub(crate) fn create_container(
        &self,
        name: &str,
        body: &wire::CreateContainer<'_>,
    ) -> Result<String, Error> {
        const OP: &str = "create container";
        let json = serde_json::to_vec(body).map_err(|e| Error::Decode {
            op: OP,
            detail: e.to_string(),
        })?;
        let path = format!("/containers/create?name={}", encode(name));
        let resp = self.call(OP, Method::POST, &path, Payload::Json(json), None, None)?;
        match expect_success(OP, name, resp) {
            Ok(r) => read_json::<wire::CreateResponse>(OP, r).map(|c| c.id),
            Err(Error::NotFound { .. }) => Err(Error::Image {
                op: OP,
                image: body.image.to_string(),
                detail: "not present".into(),
            }),
            Err(e) => Err(e),
        }
    }

    /// `POST /containers/{id}/start`; 304 (already running) is success.
    pub(crate) fn start_container(&self, id: &str) -> Result<(), Error> {
        const OP: &str = "start container";
        let path = format!("/containers/{}/start", encode(id));
        self.act(OP, Method::POST, &path, id)
    }

    /// `POST /containers/{id}/stop` with the daemon's default timeout; 304 is success.
    pub(crate) fn stop_container(&self, id: &str) -> Result<(), Error> {
        const OP: &str = "stop container";
        let path = format!("/containers/{}/stop", encode(id));
        self.act(OP, Method::POST, &path, id)
    }

    /// `DELETE /containers/{id}?force=true&v=true`: also kills it and drops its anonymous volumes.
    pub(crate) fn remove_container(&self, id: &str) -> Result<(), Error> {
        const OP: &str = "remove container";
        let path = format!("/containers/{}?v=true&force=true&link=false", encode(id));
        self.act(OP, Method::DELETE, &path, id)
    }

    /// `GET /containers/{id}/logs`: the last `tail` lines of stdout and stderr;
    /// `tty` says whether the answer is raw or multiplexed (API 1.41 sends no
    /// Content-Type to tell).
    pub(crate) fn container_logs(
        &self,
        id: &str,
        tail: u32,
        tty: bool,
    ) -> Result<Vec<String>, Error> {
        const OP: &str = "container logs";
        let path = format!(
            "/containers/{}/logs?follow=false&stdout=true&stderr=true&since=0&until=0&timestamps=false&tail={tail}",
            encode(id)
        );
        self.get_logs(OP, &path, id, tail, tty)
    }

    /// `PUT /containers/{id}/archive?path=`: extracts `tar` under `path`.
    pub(crate) fn put_archive(&self, id: &str, path: &str, tar: &[u8]) -> Result<(), Error> {
        const OP: &str = "upload archive";
        let url_path = format!("/containers/{}/archive?path={}", encode(id), encode(path));
        let resp = self.call(OP, Method::PUT, &url_path, Payload::Tar(tar), None, None)?;
        expect_success(OP, id, resp).map(drop)
    }

    /// `HEAD /containers/{id}/archive?path=`: whether `path` exists in the
    /// container's filesystem (false too when the container is gone).
    ///
    /// # Errors
    /// As `call`, then any status other than 2xx and 404.
    pub(crate) fn has_path(&self, id: &str, path: &str) -> Result<bool, Error> {
        const OP: &str = "look for a file in a container";
        let url_path = format!("/containers/{}/archive?path={}", encode(id), encode(path));
        let resp = self.call(OP, Method::HEAD, &url_path, Payload::Empty, None, None)?;
        match expect_success(OP, id, resp) {
            Ok(_) => Ok(true),
            Err(Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }
}

/// Longest pull progress line read. The engine's lines are a few hundred
/// bytes; without a bound, a newline-free answer grows memory until the pull
/// timeout (issue 12).
const PROGRESS_LINE_LIMIT: usize = 64 * 1024;

/// Reads a pull progress stream to its end; the first error object fails it,
/// and so does a line longer than `PROGRESS_LINE_LIMIT`.
pub(crate) fn pull_progress(mut reader: impl BufRead) -> Result<(), String> {
    let mut line = Vec::new();
    loop {
        line.clear();
        let read = (&mut reader)
            .take(PROGRESS_LINE_LIMIT as u64 + 1)
            .read_until(b'\n', &mut line)
            .map_err(|e| format!("progress stream broken: {e}"))?;
        if read == 0 {
            return Ok(());
        }
        if line.len() > PROGRESS_LINE_LIMIT {
            return Err(format!(
                "progress stream broken: a line longer than {PROGRESS_LINE_LIMIT} bytes"
            ));
        }
        let text = String::from_utf8_lossy(&line);
        if !text.contains("\"error") {
            continue;
        }
        let msg: wire::ProgressMessage =
            serde_json::from_slice(text.as_bytes()).unwrap_or_default();
        if msg.error.is_none() && msg.error_detail.is_none() {
            continue;
        }
        // An empty `error` still means a failure, and must still say something
        // (found by fuzzing: `{"error":""}` failed the pull with no message).
        let said = |m: &Option<String>| m.clone().filter(|m| !m.trim().is_empty());
        let detail = said(&msg.error)
            .or_else(|| msg.error_detail.and_then(|d| said(&d.message)))
            .unwrap_or_else(|| "the engine reported a failure without a message".into());
        return Err(shorten(&detail));
    }
}

/// 2xx and 304 (start/stop: nothing to do) pass; anything else is an error.
pub(crate) fn expect_success(
    op: &'static str,
    target: &str,
    resp: Response<Body>,
) -> Result<Response<Body>, Error> {
    let status = resp.status();
    if status.is_success() || status.as_u16() == 304 {
        Ok(resp)
    } else {
        Err(failure(op, target, resp))
    }
}

/// Only 404 means "missing" (D20); other statuses keep their code and message.
fn failure(op: &'static str, target: &str, resp: Response<Body>) -> Error {
    let code = resp.status().as_u16();
    if code == 404 {
        return Error::NotFound {
            op,
            name: target.to_string(),
        };
    }
    Error::Api {
        op,
        code,
        message: error_message(resp),
    }
}

/// The engine's `{"message": …}`, else the body text, shortened.
fn error_message(mut resp: Response<Body>) -> String {
    let text = resp
        .body_mut()
        .with_config()
        .limit(ERROR_BODY_LIMIT)
        .lossy_utf8(true)
        .read_to_string()
        .unwrap_or_default();
    let message = serde_json::from_slice::<wire::ErrorResponse>(text.as_bytes())
        .map(|e| e.message)
        .unwrap_or_default();
    let message = if message.trim().is_empty() {
        text
    } else {
        message
    };
    shorten(message.trim())
}

fn shorten(text: &str) -> String {
    match text.char_indices().nth(MESSAGE_CHARS) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}

/// Decodes a JSON answer, reading at most `JSON_LIMIT` bytes.
pub(crate) fn read_json<T: DeserializeOwned>(
    op: &'static str,
    mut resp: Response<Body>,
) -> Result<T, Error> {
    crate::http::read_json(&mut resp, JSON_LIMIT).map_err(|e| Error::Decode {
        op,
        detail: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_filters_are_url_encoded_json() {
        assert_eq!(
            label_filter("opencti-manager=a b&c"),
            "%7B%22label%22%3A%5B%22opencti-manager%3Da%20b%26c%22%5D%7D"
        );
    }

    #[test]
    fn encoding_keeps_only_unreserved_characters() {
        assert_eq!(encode("AZaz09-._~"), "AZaz09-._~");
        assert_eq!(encode("127.0.0.1:5000/x:1"), "127.0.0.1%3A5000%2Fx%3A1");
        assert_eq!(encode("é"), "%C3%A9");
    }

    #[test]
    fn the_version_is_capped_at_ours() {
        let v = |s| ApiVersion::parse(s).unwrap();
        assert_eq!(ApiVersion::negotiate(v("1.41")), v("1.41"));
        assert_eq!(ApiVersion::negotiate(v("1.53")), MAX_API_VERSION);
        assert_eq!(ApiVersion::negotiate(v("2.0")), MAX_API_VERSION);
        // Numeric, not textual, comparison: 1.9 < 1.41.
        assert_eq!(ApiVersion::negotiate(v("1.9")), v("1.9"));
        assert_eq!(v("v1.44").to_string(), "1.44");
        assert_eq!(ApiVersion::parse("1"), None);
        assert_eq!(ApiVersion::parse("x.41"), None);
    }

    #[test]
    fn unix_and_plain_tcp_engines_get_their_base() {
        let base = |s: &str| Client::for_engine(&s.parse().unwrap()).base;
        assert_eq!(base("unix:///var/run/docker.sock"), "http://docker");
        assert_eq!(base("tcp://127.0.0.1:2375"), "http://127.0.0.1:2375");
        assert_eq!(base("http://127.0.0.1:2375/"), "http://127.0.0.1:2375");
    }

    #[test]
    fn plain_tcp_to_a_non_loopback_host_is_flagged() {
        for (host, remote) in [
            ("unix:///var/run/docker.sock", None),
            ("tcp://127.0.0.1:2375", None),
            ("tcp://localhost:2375", None),
            ("http://[::1]:2375", None),
            ("tcp://127.9.9.9:2375/", None),
            ("tcp://10.0.0.5:2375", Some("10.0.0.5")),
            ("tcp://docker.internal:2375", Some("docker.internal")),
            ("http://[fd00::1]:2375", Some("fd00::1")),
            ("tcp://0.0.0.0:2375", Some("0.0.0.0")),
        ] {
            assert_eq!(remote_plain_tcp(host), remote, "{host}");
        }
    }

    /// Issue 12: a redirect carried `X-Registry-Auth` to any host.
    #[test]
    fn an_engine_redirect_is_an_answer_not_followed() {
        let other = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let location = format!("http://{}/elsewhere", other.local_addr().unwrap());
        let followed =
            crate::http::serve_fixed(other, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n".into());
        let engine = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = engine.local_addr().unwrap().port();
        crate::http::serve_fixed(
            engine,
            format!(
                "HTTP/1.1 307 Temporary Redirect\r\nLocation: {location}\r\nContent-Length: 0\r\n\r\n"
            ),
        );
        let c = Client::for_engine(&format!("tcp://127.0.0.1:{port}").parse().unwrap())
            .with_api_version(ApiVersion::parse("1.41").unwrap());
        let err = c
            .pull_image("busybox:1", Some(&Secret::new("registry-auth")))
            .unwrap_err();
        assert!(err.to_string().contains("307"), "{err}");
        assert_eq!(followed.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn a_fixed_version_skips_negotiation() {
        let v = ApiVersion::parse("v1.44").unwrap();
        // Port 9 is closed: any request would fail, so this proves no call is made.
        let c = Client::for_engine(&"tcp://127.0.0.1:9".parse().unwrap()).with_api_version(v);
        assert_eq!(c.api_version().unwrap(), v);
    }

    #[test]
    fn an_unreachable_engine_is_a_transport_error() {
        let c = Client::for_engine(&"unix:///nonexistent/docker.sock".parse().unwrap());
        let err = c.list_containers("opencti-manager=x").unwrap_err();
        assert!(
            matches!(
                err,
                Error::Transport {
                    op: "negotiate api version",
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn an_error_inside_a_pull_stream_fails_the_pull() {
        let ok = include_str!("../../../tests/fixtures/docker/pull-ok.jsonl");
        assert_eq!(pull_progress(ok.as_bytes()), Ok(()));
        let failed = include_str!("../../../tests/fixtures/docker/pull-error.jsonl");
        assert_eq!(
            pull_progress(failed.as_bytes()),
            Err("unexpected EOF while reading layer".to_string())
        );
        let detail_only = r#"{"errorDetail":{"message":"denied"}}"#;
        assert_eq!(
            pull_progress(detail_only.as_bytes()),
            Err("denied".to_string())
        );
        // Fuzzing (fuzz/fuzz_targets/pull_progress.rs): an empty error failed
        // with an empty message; it falls back to the detail, then to a text.
        let empty = r#"{"errorDetail":{"message":"EOF"},"error":""}"#;
        assert_eq!(pull_progress(empty.as_bytes()), Err("EOF".to_string()));
        let bare = pull_progress(&br#"{"error":" "}"#[..]).unwrap_err();
        assert!(bare.contains("without a message"), "{bare}");
    }

    /// Issue 12: a newline-free answer was read whole, growing memory until
    /// the pull timeout.
    #[test]
    fn a_newline_free_progress_stream_fails_after_the_line_limit() {
        let endless = std::io::repeat(b'x');
        let err = pull_progress(BufReader::new(endless)).unwrap_err();
        assert!(err.contains("longer than"), "{err}");
        let just_fits = format!("{}\n", "x".repeat(PROGRESS_LINE_LIMIT - 1));
        assert_eq!(pull_progress(just_fits.as_bytes()), Ok(()));
        assert_eq!(pull_progress(&[0xff, 0xfe, b'\n'][..]), Ok(()));
    }

    #[test]
    fn long_messages_are_shortened_on_a_char_boundary() {
        let long = "é".repeat(MESSAGE_CHARS + 5);
        let short = shorten(&long);
        assert_eq!(short.chars().count(), MESSAGE_CHARS + 1);
        assert!(short.ends_with('…'));
        assert_eq!(shorten("ok"), "ok");
    }
}
