//! `Client`: the Kubernetes REST calls the composer makes, one function per
//! endpoint (paths and percent-encoded label selectors built here), over one ureq
//! agent with the connection's TLS material and bearer token (CONTRACT §6.3).
//! Out of scope: what to send (`manifest.rs`) and when (`mod.rs`). Invariant: one
//! attempt per call; every body read is bounded; API errors keep reason and code.

use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use ureq::http::Response;
use ureq::tls::PrivateKey;
use ureq::{Agent, Body};

use super::connect::{Auth, Connection};
use super::wire;
use crate::http::percent_encode;
use crate::orchestrator::Error;

/// Bound on a listing or object answer.
const LIST_LIMIT: u64 = 32 * 1024 * 1024;
/// Bound on a log answer; `tailLines` keeps real answers far below it.
const LOG_LIMIT: u64 = 4 * 1024 * 1024;
/// Bound on an error answer.
const ERROR_LIMIT: u64 = 64 * 1024;

/// Timeouts of API server calls.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timeouts {
    pub connect: Duration,
    pub request: Duration,
}

/// A namespaced API server client.
pub(crate) struct Client {
    agent: Agent,
    server: String,
    namespace: String,
    auth: Auth,
    /// The API server and its timeouts, named in transport errors.
    remote: crate::http::Remote,
    /// Where the connection came from (`kubeconfig … (context dev)`, the service account).
    origin: String,
    request_timeout: Duration,
}

/// The agent for an API server (built by `http::kubernetes_agent`): the
/// connection's CA, client certificate, `insecure-skip-tls-verify`, `proxy-url`.
///
/// # Errors
/// A CA, certificate or key that is not usable PEM; an invalid `proxy-url`.
pub(crate) fn agent(conn: &Connection, t: Timeouts) -> Result<Agent, Error> {
    let bad = |detail: String| Error::Config {
        op: "connect to kubernetes",
        detail: format!("{}: {detail}", conn.origin),
    };
    let client_cert = match &conn.client_cert {
        Some((chain, key)) => {
            // ureq's message names the PEM problem, never the key text.
            let key = PrivateKey::from_pem(key.expose().as_bytes())
                .map_err(|e| bad(format!("client key: {e}")))?;
            Some((chain.as_slice(), key))
        }
        None => None,
    };
    if conn.insecure {
        log::warn!(
            "TLS certificate verification is disabled for the Kubernetes API ({})",
            conn.origin
        );
    }
    let tls = crate::http::ApiServerTls {
        ca_pem: conn.ca_pem.as_deref(),
        client_cert,
        insecure: conn.insecure,
        proxy_url: conn.proxy_url.as_deref(),
    };
    crate::http::kubernetes_agent(tls, t.connect, t.request).map_err(|e| bad(e.to_string()))
}

/// A request body: content type and bytes.
type Payload = (&'static str, Vec<u8>);

impl Client {
    /// A client for `conn`; no request is made.
    ///
    /// # Errors
    /// See [`agent`].
    pub(crate) fn new(conn: Connection, t: Timeouts) -> Result<Client, Error> {
        let agent = agent(&conn, t)?;
        let remote = crate::http::Remote::new(&conn.server, None, t.request, t.connect);
        Ok(Client {
            agent,
            server: conn.server,
            namespace: conn.namespace,
            auth: conn.auth,
            remote,
            origin: conn.origin,
            request_timeout: t.request,
        })
    }

    /// Names `section` (`opencti.daemon.kubernetes`) as where the timeouts are set.
    pub(crate) fn in_section(mut self, section: &str) -> Client {
        self.remote = self.remote.in_section(section);
        self
    }

    /// `kubeconfig /root/.kube/config (context dev), namespace connectors`.
    fn context(&self) -> String {
        format!("{}, namespace {}", self.origin, self.namespace)
    }

    /// The namespace every call works in.
    pub(crate) fn namespace(&self) -> &str {
        &self.namespace
    }

    fn deployments(&self) -> String {
        format!(
            "{}/apis/apps/v1/namespaces/{}/deployments",
            self.server, self.namespace
        )
    }

    fn core(&self, kind: &str) -> String {
        format!(
            "{}/api/v1/namespaces/{}/{kind}",
            self.server, self.namespace
        )
    }

    /// One call: bearer token, optional body; 2xx answers are returned, others
    /// become `Error::Api` / `Error::NotFound` with the Status reason and message.
    fn send(
        &self,
        op: &'static str,
        method: &str,
        url: &str,
        body: Option<Payload>,
    ) -> Result<Response<Body>, Error> {
        self.send_within(op, method, url, body, None)
    }

    /// [`Client::send`] with its own overall timeout instead of `request_timeout`
    /// (a watch stays open for its whole window).
    fn send_within(
        &self,
        op: &'static str,
        method: &str,
        url: &str,
        body: Option<Payload>,
        timeout: Option<Duration>,
    ) -> Result<Response<Body>, Error> {
        let token = self.auth.bearer()?;
        let mut req = ureq::http::Request::builder()
            .method(method)
            .uri(url)
            .header("Accept", "application/json");
        if let Some(t) = &token {
            req = req.header("Authorization", format!("Bearer {}", t.expose()));
        }
        let sent = match body {
            Some((ctype, bytes)) => {
                let r = req.header("Content-Type", ctype).body(bytes).map_err(|e| {
                    Error::Transport {
                        op,
                        detail: e.to_string(),
                    }
                })?;
                self.agent.run(self.timed(r, timeout))
            }
            None => {
                let r = req.body(()).map_err(|e| Error::Transport {
                    op,
                    detail: e.to_string(),
                })?;
                self.agent.run(self.timed(r, timeout))
            }
        };
        let mut resp = sent.map_err(|e| Error::Transport {
            op,
            detail: format!("{} ({})", self.remote.explain(&e), self.context()),
        })?;
        let code = resp.status().as_u16();
        if (200..300).contains(&code) {
            return Ok(resp);
        }
        if code == 401 {
            self.auth.invalidate();
        }
        let text = resp
            .body_mut()
            .with_config()
            .limit(ERROR_LIMIT)
            .lossy_utf8(true)
            .read_to_string()
            .unwrap_or_default();
        let status: wire::Status = serde_json::from_slice(text.as_bytes()).unwrap_or_default();
        let message = match (status.reason.is_empty(), status.message.is_empty()) {
            (_, true) => text.chars().take(300).collect(),
            (true, false) => status.message,
            (false, false) => format!("{}: {}", status.reason, status.message),
        };
        let message = match code {
            // Who was refused, and where: the fix is in that kubeconfig or Role.
            401 | 403 => format!("{message} (API server {}, {})", self.server, self.context()),
            _ => message,
        };
        Err(Error::Api { op, code, message })
    }

    /// `r` with its own overall timeout, when one is given.
    fn timed<B: ureq::AsSendBody>(
        &self,
        r: ureq::http::Request<B>,
        timeout: Option<Duration>,
    ) -> ureq::http::Request<B> {
        match timeout {
            Some(t) => self
                .agent
                .configure_request(r)
                .timeout_global(Some(t))
                .build(),
            None => r,
        }
    }

    fn json<T: DeserializeOwned>(op: &'static str, mut resp: Response<Body>) -> Result<T, Error> {
        crate::http::read_json(&mut resp, LIST_LIMIT).map_err(|e| Error::Decode {
            op,
            detail: e.to_string(),
        })
    }

    fn body(
        op: &'static str,
        value: &impl Serialize,
        ctype: &'static str,
    ) -> Result<Payload, Error> {
        serde_json::to_vec(value)
            .map(|b| (ctype, b))
            .map_err(|e| Error::Decode {
                op,
                detail: e.to_string(),
            })
    }

    /// `GET deployments?labelSelector=…`
    ///
    /// # Errors
    /// Transport, API or decode errors.
    pub(crate) fn list_deployments(&self, selector: &str) -> Result<wire::DeploymentList, Error> {
        let url = format!(
            "{}?labelSelector={}",
            self.deployments(),
            percent_encode(selector)
        );
        let op = "list deployments";
        Self::json(op, self.send(op, "GET", &url, None)?)
    }

    /// `GET pods?labelSelector=…`
    ///
    /// # Errors
    /// Transport, API or decode errors.
    pub(crate) fn list_pods(&self, selector: &str) -> Result<wire::PodList, Error> {
        let url = format!(
            "{}?labelSelector={}",
            self.core("pods"),
            percent_encode(selector)
        );
        let op = "list pods";
        Self::json(op, self.send(op, "GET", &url, None)?)
    }

    /// `GET {resource}?labelSelector=…&watch=1&resourceVersion=…`: a stream of
    /// `WatchEvent` lines that the server ends after `window`. `resource` is
    /// `deployments` or `pods`.
    ///
    /// # Errors
    /// Transport or API errors (403 without the Role's `watch`).
    pub(crate) fn watch(
        &self,
        resource: &str,
        selector: &str,
        resource_version: &str,
        window: Duration,
    ) -> Result<Response<Body>, Error> {
        let base = match resource {
            "deployments" => self.deployments(),
            _ => self.core(resource),
        };
        let url = format!(
            "{base}?labelSelector={}&watch=1&resourceVersion={}&allowWatchBookmarks=true&timeoutSeconds={}",
            percent_encode(selector),
            percent_encode(resource_version),
            window.as_secs()
        );
        // The server ends the window; the request timeout covers a silent one.
        let limit = window + self.request_timeout;
        self.send_within("watch", "GET", &url, None, Some(limit))
    }

    /// `POST deployments`; returns the new Deployment's UID.
    ///
    /// # Errors
    /// Transport or API errors (409 when it exists).
    pub(crate) fn create_deployment(&self, body: &serde_json::Value) -> Result<String, Error> {
        let op = "create deployment";
        let payload = Self::body(op, body, "application/json")?;
        let resp = self.send(op, "POST", &self.deployments(), Some(payload))?;
        Self::json::<wire::Created>(op, resp).map(|c| c.metadata.uid)
    }

    /// `PATCH deployments/{name}` with a JSON merge patch.
    ///
    /// # Errors
    /// Transport or API errors; `NotFound` when there is no such Deployment.
    pub(crate) fn patch_deployment(
        &self,
        op: &'static str,
        name: &str,
        patch: &impl Serialize,
    ) -> Result<(), Error> {
        let payload = Self::body(op, patch, "application/merge-patch+json")?;
        let url = format!("{}/{name}", self.deployments());
        self.send(op, "PATCH", &url, Some(payload))
            .map(drop)
            .map_err(|e| not_found(e, name))
    }

    /// `DELETE deployments/{name}`; `Ok(false)` when it was already gone. With
    /// `foreground`, the Deployment stays listed until the garbage collector has
    /// deleted what it owns (its Secrets).
    ///
    /// # Errors
    /// Transport or API errors other than 404.
    pub(crate) fn delete_deployment(&self, name: &str, foreground: bool) -> Result<bool, Error> {
        let policy = if foreground {
            "Foreground"
        } else {
            "Background"
        };
        let url = format!("{}/{name}?propagationPolicy={policy}", self.deployments());
        gone_is_fine(self.send("delete deployment", "DELETE", &url, None))
    }

    /// `POST secrets`: creates a Secret, never replaces one; returns its UID.
    ///
    /// # Errors
    /// Transport or API errors: 409 when a Secret of that name exists.
    pub(crate) fn create_secret(&self, body: &wire::Secret<'_>) -> Result<String, Error> {
        let op = "create secret";
        let payload = Self::body(op, body, "application/json")?;
        let resp = self.send(op, "POST", &self.core("secrets"), Some(payload))?;
        Self::json::<wire::Created>(op, resp).map(|c| c.metadata.uid)
    }

    /// `PUT secrets/{name}`: replaces the Secret — with `metadata.uid` in the
    /// body, only while it is the one with that UID. Returns its UID.
    ///
    /// # Errors
    /// Transport or API errors: 404 when it is gone, 409 when the name now
    /// belongs to another object.
    pub(crate) fn replace_secret(
        &self,
        name: &str,
        body: &wire::Secret<'_>,
    ) -> Result<String, Error> {
        let op = "replace secret";
        let payload = Self::body(op, body, "application/json")?;
        let url = format!("{}/{name}", self.core("secrets"));
        let resp = self.send(op, "PUT", &url, Some(payload))?;
        Self::json::<wire::Created>(op, resp).map(|c| c.metadata.uid)
    }

    /// `DELETE secrets/{name}` with no precondition; gone is fine. Only for a
    /// Secret the previous composer made for a Deployment of ours (`Listed::legacy`).
    ///
    /// # Errors
    /// Transport or other API errors.
    pub(crate) fn delete_secret(&self, name: &str) -> Result<(), Error> {
        let url = format!("{}/{name}", self.core("secrets"));
        gone_is_fine(self.send("delete secret", "DELETE", &url, None)).map(drop)
    }

    /// `DELETE secrets/{name}` with a UID precondition; gone or replaced by
    /// another object (404, 409) is fine: either way ours no longer exists.
    ///
    /// # Errors
    /// Transport or other API errors.
    pub(crate) fn delete_secret_with_uid(&self, name: &str, uid: &str) -> Result<(), Error> {
        let op = "delete secret";
        let options = wire::DeleteOptions {
            api_version: "v1",
            kind: "DeleteOptions",
            preconditions: wire::Preconditions { uid },
        };
        let payload = Self::body(op, &options, "application/json")?;
        let url = format!("{}/{name}", self.core("secrets"));
        match self.send(op, "DELETE", &url, Some(payload)) {
            Ok(_)
            | Err(Error::Api {
                code: 404 | 409, ..
            }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Creates or replaces a Secret: `PUT secrets/{name}`, then `POST secrets` when
    /// it does not exist yet. `PUT` without a resourceVersion is an unconditional
    /// update, which the API allows for Secrets. Used for the registry pull
    /// secret only, which all connectors of the manager share.
    ///
    /// # Errors
    /// Transport or API errors.
    pub(crate) fn upsert_secret(&self, name: &str, body: &wire::Secret<'_>) -> Result<(), Error> {
        let op = "write secret";
        let payload = Self::body(op, body, "application/json")?;
        let url = format!("{}/{name}", self.core("secrets"));
        match self.send(op, "PUT", &url, Some(payload.clone())) {
            Err(Error::Api { code: 404, .. }) => self
                .send(op, "POST", &self.core("secrets"), Some(payload))
                .map(drop),
            r => r.map(drop),
        }
    }

    /// `GET pods/{pod}/log?container=…&tailLines=…`
    ///
    /// # Errors
    /// Transport or API errors (400 while the container waits to start).
    pub(crate) fn pod_log(&self, pod: &str, container: &str, tail: u32) -> Result<String, Error> {
        let url = format!(
            "{}/{pod}/log?container={}&tailLines={tail}",
            self.core("pods"),
            percent_encode(container)
        );
        let op = "read logs";
        let mut resp = self.send(op, "GET", &url, None)?;
        resp.body_mut()
            .with_config()
            .limit(LOG_LIMIT)
            .lossy_utf8(true)
            .read_to_string()
            .map_err(|e| Error::Decode {
                op,
                detail: e.to_string(),
            })
    }
}

fn not_found(e: Error, name: &str) -> Error {
    match e {
        Error::Api { op, code: 404, .. } => Error::NotFound {
            op,
            name: name.to_string(),
        },
        e => e,
    }
}

fn gone_is_fine(r: Result<Response<Body>, Error>) -> Result<bool, Error> {
    match r {
        Ok(_) => Ok(true),
        Err(Error::Api { code: 404, .. }) => Ok(false),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_selectors_are_percent_encoded() {
        assert_eq!(
            percent_encode("opencti-manager=m 1,a/b"),
            "opencti-manager%3Dm%201%2Ca%2Fb"
        );
    }
}
