//! `Portainer`: the Docker orchestrator reached through Portainer's Docker proxy
//! (`{api}/api/endpoints/{env_id}/docker/…`, header `X-API-KEY`). It builds that
//! HTTPS client and the `stack` / `network_mode` options, then hands every call
//! to `Docker`; its own job is to name the setting behind a refusal (CONTRACT §6.2, D17).
//! Invariant: TLS is verified unless `unsecured_certificate` is set (warned at startup);
//! every call has a timeout; the API key reaches no log line or error.

use std::time::Duration;

use super::docker::client::encode;
use super::docker::{Client, Docker};
use super::{Error, Orchestrator, Spec, Workload};
use crate::config::{PortainerSettings, Settings};
use crate::http::{self, ClientOptions};
use crate::platform::PlatformKind;
use crate::secret::Secret;

/// The label Portainer (and compose) groups containers by (§5.2).
pub const COMPOSE_PROJECT: &str = "com.docker.compose.project";
/// As for a local engine (§6.1); pulls get their own longer limit from `Client`.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The Docker orchestrator behind one Portainer environment.
#[derive(Debug)]
pub struct Portainer {
    docker: Docker,
    /// `{p}.daemon.portainer`: the prefix of the settings errors name.
    section: String,
}

impl Portainer {
    /// The orchestrator for `platform`'s connectors from `{p}.daemon.portainer`
    /// (plus `{p}.daemon.docker` and `{p}.daemon.registry`, as for Docker). The
    /// engine API version is negotiated through the proxy on first use, capped
    /// by `api_version`. No call is made here.
    ///
    /// # Errors
    /// `Error::Config` for an unreadable `ca_file` or proxy CA file. Values were
    /// checked at load, which requires `api` and `env_id` with selector portainer;
    /// settings built otherwise without them are refused as "not set".
    pub fn new(settings: &Settings, platform: PlatformKind) -> Result<Portainer, Error> {
        let section = format!("{platform}.daemon.portainer");
        let unset = |key: &str| Error::Config {
            op: "portainer settings",
            detail: format!("{section}.{key} is not set"),
        };
        let p = settings
            .platform(platform)
            .daemon
            .portainer
            .clone()
            .unwrap_or_default();
        let api = given(&p.api).ok_or_else(|| unset("api"))?;
        let env_id = given(&p.env_id).ok_or_else(|| unset("env_id"))?;
        let client = client(&section, &p, api.trim_end_matches('/'), env_id)?;
        let mut docker = Docker::with_client(client, settings, platform)?;
        if let Some(stack) = given(&p.stack) {
            docker = docker.with_label(COMPOSE_PROJECT, stack);
        }
        if let Some(mode) = given(&p.network_mode) {
            docker = docker.with_network_mode(mode);
        }
        Ok(Portainer { docker, section })
    }

    /// The engine client behind the proxy (request count, API version).
    pub fn client(&self) -> &Client {
        self.docker.client()
    }

    /// Names the setting to fix when Portainer, not the engine, refuses a call.
    fn explain(&self, error: Error) -> Error {
        let s = &self.section;
        match error {
            Error::Api { op, code: 401, .. } => Error::Config {
                op,
                detail: format!(
                    "Portainer refused the API key (401 Unauthorized): check {s}.api_key"
                ),
            },
            Error::Api {
                op,
                code: 403,
                message,
            } => Error::Config {
                op,
                detail: format!(
                    "Portainer denied access (403: {message}): the user of {s}.api_key needs access to environment {s}.env_id"
                ),
            },
            // Only the first call of a client (the version) can meet a missing environment.
            Error::NotFound {
                op: op @ "negotiate api version",
                ..
            } => Error::Config {
                op,
                detail: format!("Portainer has no such environment: check {s}.env_id"),
            },
            Error::Transport { op, detail } if detail.to_lowercase().contains("certificate") => {
                Error::Transport {
                    op,
                    detail: format!(
                        "{detail}: trust Portainer's CA with {s}.ca_file, or set {s}.unsecured_certificate: true"
                    ),
                }
            }
            other => other,
        }
    }
}

/// A trimmed, non-empty setting.
fn given(value: &Option<String>) -> Option<&str> {
    value.as_deref().map(str::trim).filter(|v| !v.is_empty())
}

/// The HTTPS engine client for `{api}/api/endpoints/{env_id}/docker`.
///
/// # Errors
/// `Error::Config` for an unreadable `ca_file` or an unusable `api` URL.
fn client(section: &str, p: &PortainerSettings, api: &str, env_id: &str) -> Result<Client, Error> {
    let config = |detail: String| Error::Config {
        op: "portainer settings",
        detail,
    };
    let options = ClientOptions::for_engine(
        &format!("{section}.ca_file"),
        p.ca_file.as_deref(),
        p.unsecured_certificate,
        REQUEST_TIMEOUT,
        CONNECT_TIMEOUT,
    )
    .map_err(|e| config(e.to_string()))?;
    let agent =
        http::engine_agent(&options, api).map_err(|e| config(format!("{section}.api: {e}")))?;
    let headers: Vec<(String, Secret)> = p
        .api_key
        .iter()
        .filter(|k| !k.is_empty())
        .map(|k| ("X-API-KEY".to_string(), k.clone()))
        .collect();
    let base = format!("{api}/api/endpoints/{}/docker", encode(env_id));
    let client = Client::new(agent, base, headers);
    Ok(match p.api_version {
        Some(cap) => client.with_max_api_version(cap),
        None => client,
    })
}

impl Orchestrator for Portainer {
    fn list(&self) -> Result<Vec<Workload>, Error> {
        self.docker.list().map_err(|e| self.explain(e))
    }

    fn deploy(&self, spec: &Spec) -> Result<(), Error> {
        self.docker.deploy(spec).map_err(|e| self.explain(e))
    }

    fn refresh(&self, spec: &Spec) -> Result<(), Error> {
        self.docker.refresh(spec).map_err(|e| self.explain(e))
    }

    fn start(&self, name: &str) -> Result<(), Error> {
        self.docker.start(name).map_err(|e| self.explain(e))
    }

    fn stop(&self, name: &str) -> Result<(), Error> {
        self.docker.stop(name).map_err(|e| self.explain(e))
    }

    fn remove(&self, name: &str) -> Result<(), Error> {
        self.docker.remove(name).map_err(|e| self.explain(e))
    }

    fn logs(&self, name: &str, tail: u32) -> Result<Vec<String>, Error> {
        self.docker.logs(name, tail).map_err(|e| self.explain(e))
    }

    /// Portainer proxies the engine's `/events` like every other endpoint.
    fn follow(&self, wake: &(dyn Fn() + Sync), stop: &crossbeam_channel::Receiver<()>) -> bool {
        self.docker.follow(wake, stop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(edit: impl FnOnce(&mut PortainerSettings)) -> Settings {
        let mut s = Settings::default();
        let mut p = PortainerSettings {
            api: Some("https://127.0.0.1:9443/".into()),
            api_key: Some(Secret::new("ptr_key")),
            env_id: Some("3".into()),
            env_type: Some("docker".into()),
            api_version: super::super::docker::ApiVersion::parse("v1.44"),
            ..PortainerSettings::default()
        };
        edit(&mut p);
        s.opencti.daemon.portainer = Some(p);
        s
    }

    fn config_error(s: &Settings) -> String {
        match Portainer::new(s, PlatformKind::OpenCti) {
            Err(Error::Config { detail, .. }) => detail,
            other => panic!("expected a configuration error, got {other:?}"),
        }
    }

    #[test]
    fn the_base_url_is_the_environment_docker_proxy() {
        let p = Portainer::new(&settings(|_| {}), PlatformKind::OpenCti).unwrap();
        let debug = format!("{:?}", p.client());
        assert!(
            debug.contains("https://127.0.0.1:9443/api/endpoints/3/docker"),
            "{debug}"
        );
        assert!(
            debug.contains("X-API-KEY") && !debug.contains("ptr_key"),
            "{debug}"
        );
    }

    #[test]
    fn values_checked_at_load_are_not_checked_again() {
        // `env_type` (docker only) is the loader's rule, in one place.
        let s = settings(|p| p.env_type = Some("kubernetes".into()));
        assert!(Portainer::new(&s, PlatformKind::OpenCti).is_ok());
    }

    #[test]
    fn what_only_io_can_break_is_named() {
        let detail = config_error(&settings(|p| {
            p.ca_file = Some("/nonexistent/ca.pem".into())
        }));
        assert!(detail.contains("/nonexistent/ca.pem"), "{detail}");
        // Settings not built by the loader: what it would have required is named.
        let mut none = Settings::default();
        none.opencti.daemon.portainer = None;
        assert_eq!(
            config_error(&none),
            "opencti.daemon.portainer.api is not set"
        );
        assert!(config_error(&settings(|p| p.env_id = None)).ends_with(".env_id is not set"));
        let detail = config_error(&settings(|p| p.api = Some("https://".into())));
        assert!(
            detail.starts_with("opencti.daemon.portainer.api: "),
            "{detail}"
        );
    }

    #[test]
    fn refusals_name_the_setting_to_fix() {
        let p = Portainer::new(&settings(|_| {}), PlatformKind::OpenCti).unwrap();
        let unauthorized = p.explain(Error::Api {
            op: "list containers",
            code: 401,
            message: "Unauthorized".into(),
        });
        assert_eq!(
            unauthorized.to_string(),
            "list containers: Portainer refused the API key (401 Unauthorized): check opencti.daemon.portainer.api_key"
        );
        let missing = p.explain(Error::NotFound {
            op: "negotiate api version",
            name: "/version".into(),
        });
        assert!(
            missing
                .to_string()
                .contains("check opencti.daemon.portainer.env_id")
        );
        let tls = p.explain(Error::Transport {
            op: "list containers",
            detail: "invalid peer certificate: UnknownIssuer".into(),
        });
        assert!(
            tls.to_string().contains("unsecured_certificate: true"),
            "{tls}"
        );
        // A missing container stays "missing".
        let gone = p.explain(Error::NotFound {
            op: "start container",
            name: "x".into(),
        });
        assert!(matches!(gone, Error::NotFound { .. }));
    }
}
