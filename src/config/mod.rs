//! Settings: the typed configuration of CONTRACT §7 (keys, types, defaults).
//! Loading and layering (default.yaml → $COMPOSER_ENV.yaml → env `A__B__C`) live
//! in `files`, `keys` and `load`; single values with a grammar (engine address,
//! policies, API version) are parsed by `values`, the rules across values are in
//! `validate`; this file is only the shape. Orchestrators take the values as
//! parsed: their constructors fail only on I/O (CA files, kubeconfig).
//! Keys added beyond the existing composer are optional and marked "ours".

mod error;
mod files;
mod keys;
mod load;
mod named_files;
mod validate;
mod values;

pub use error::{ConfigError, Origin, is_secret_key};
pub use load::{Loaded, load};
pub use values::{DEFAULT_ENGINE, Endpoint, EngineAddress, RestartPolicy};

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::orchestrator::docker::{ApiVersion, PullPolicy};
use crate::platform::PlatformKind;
use crate::secret::Secret;

/// The whole configuration.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct Settings {
    pub manager: Manager,
    pub opencti: PlatformSettings,
    pub openaev: PlatformSettings,
    /// `DOCKER_HOST` from the environment the loader was given, parsed: the
    /// engine address where `{p}.daemon.docker.host` is unset. Not a key.
    #[serde(skip)]
    pub docker_host: Option<EngineAddress>,
}

impl Default for Settings {
    fn default() -> Self {
        let opencti = PlatformSettings {
            enable: true,
            ..PlatformSettings::default()
        };
        Settings {
            manager: Manager::default(),
            opencti,
            openaev: PlatformSettings::default(),
            docker_host: None,
        }
    }
}

impl Settings {
    /// The section of one platform.
    pub fn platform(&self, kind: PlatformKind) -> &PlatformSettings {
        match kind {
            PlatformKind::OpenCti => &self.opencti,
            PlatformKind::OpenAev => &self.openaev,
        }
    }

    /// Registry settings for a platform: its own section, else `opencti`'s (§5.6).
    pub fn registry(&self, kind: PlatformKind) -> Option<&Registry> {
        self.platform(kind)
            .daemon
            .registry
            .as_ref()
            .or(self.opencti.daemon.registry.as_ref())
    }

    /// Docker host options for a platform: its own section, else `opencti`'s (§6.1).
    pub fn docker_options(&self, kind: PlatformKind) -> Option<&DockerOptions> {
        self.platform(kind)
            .daemon
            .docker
            .as_ref()
            .or(self.opencti.daemon.docker.as_ref())
    }

    /// The Docker engine of a platform (Docker, Swarm): `{p}.daemon.docker.host`
    /// (with the `opencti` fallback), else `DOCKER_HOST`, else the default socket.
    pub fn engine(&self, kind: PlatformKind) -> EngineAddress {
        self.docker_options(kind)
            .and_then(|o| o.host.clone())
            .or_else(|| self.docker_host.clone())
            .unwrap_or_default()
    }
}

/// `manager.*`
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct Manager {
    pub id: String,
    pub name: String,
    /// Reconcile period, seconds.
    pub execute_schedule: u64,
    /// Ping period and version-retry period, seconds.
    pub ping_alive_schedule: u64,
    /// Inline PKCS#8 PEM.
    pub credentials_key: Option<Secret>,
    /// PEM file; wins over `credentials_key`.
    pub credentials_key_filepath: Option<String>,
    pub logger: Logger,
    pub debug: DebugSettings,
    /// Ours: at most this many connectors are worked on at once in a cycle.
    pub max_parallel: usize,
    /// Ours: optional prefix for workload names (§5.1, §11). Default none.
    pub name_prefix: Option<String>,
    /// Ours: seconds a connector must be missing from complete listings before
    /// its workload is removed (default 60).
    pub removal_grace: u64,
    /// Ours: `manager.crash_loop.*`.
    pub crash_loop: CrashLoop,
    /// Ours: `manager.observability.*`.
    pub observability: Observability,
}

/// `manager.observability.*` (ours): the read-only HTTP listener.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct Observability {
    /// `host:port` of `/healthz`, `/readyz`, `/metrics`, `/status`; unset = no listener.
    pub listen: Option<String>,
    /// Seconds a loop may stay silent before `/healthz` names it stuck;
    /// unset = the platform's connect + request timeout + 150 s.
    pub stale_after: Option<u64>,
}

/// `manager.crash_loop.*` (ours): what to do with a workload in a reboot loop.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct CrashLoop {
    /// Stop a workload in a reboot loop once it restarted this many times;
    /// unset = leave it to the engine's restart policy.
    pub stop_after: Option<u32>,
}

impl Default for Manager {
    fn default() -> Self {
        Manager {
            id: "default-manager-id".into(),
            name: "Filigran connector manager".into(),
            execute_schedule: 10,
            ping_alive_schedule: 60,
            credentials_key: None,
            credentials_key_filepath: None,
            logger: Logger::default(),
            debug: DebugSettings::default(),
            max_parallel: 4,
            name_prefix: None,
            removal_grace: 60,
            crash_loop: CrashLoop::default(),
            observability: Observability::default(),
        }
    }
}

/// `manager.logger.*`
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct Logger {
    pub level: String,
    /// `json` or `pretty`.
    pub format: String,
    /// File logging on/off: writes to `file` when that is set.
    pub directory: bool,
    /// Console (stderr) logging on/off.
    pub console: bool,
    /// Ours: the log file (JSON lines, appended; rotate it with logrotate
    /// `copytruncate`). Unset: no file, whatever `directory` says, since the
    /// existing composer's default never wrote one either (D11).
    pub file: Option<String>,
}

impl Default for Logger {
    fn default() -> Self {
        Logger {
            level: "info".into(),
            format: "json".into(),
            directory: true,
            console: true,
            file: None,
        }
    }
}

/// `manager.debug.*`
#[derive(Debug, Clone, PartialEq, Deserialize, Default)]
#[serde(default)]
pub struct DebugSettings {
    pub show_env_vars: bool,
    pub show_sensitive_env_vars: bool,
}

/// `opencti.*` / `openaev.*`
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct PlatformSettings {
    pub enable: bool,
    pub url: String,
    /// Ours (D24): the URL injected into connectors when they reach the platform
    /// by another address than the composer does. Default: `url`.
    pub connector_url: Option<String>,
    pub token: Secret,
    pub unsecured_certificate: bool,
    /// Ours (D18): a PEM CA bundle to trust for the platform URL.
    pub ca_file: Option<String>,
    pub with_proxy: bool,
    pub http_proxy: Option<Secret>,
    pub https_proxy: Option<Secret>,
    pub no_proxy: Option<String>,
    /// File paths or inline PEM entries.
    pub https_proxy_ca: Vec<String>,
    pub https_proxy_reject_unauthorized: bool,
    /// Log shipping period per connector, seconds.
    pub logs_schedule: u64,
    pub request_timeout: u64,
    pub connect_timeout: u64,
    /// Ours, OpenAEV only: selects `/api/tenants/{id}/xtm-composer/...` paths.
    pub tenant_id: Option<String>,
    pub daemon: Daemon,
}

impl Default for PlatformSettings {
    fn default() -> Self {
        PlatformSettings {
            enable: false,
            url: "http://host.docker.internal:4000".into(),
            connector_url: None,
            token: Secret::new("ChangeMe"),
            unsecured_certificate: false,
            ca_file: None,
            with_proxy: false,
            http_proxy: None,
            https_proxy: None,
            no_proxy: None,
            https_proxy_ca: Vec::new(),
            https_proxy_reject_unauthorized: true,
            logs_schedule: 10,
            request_timeout: 30,
            connect_timeout: 10,
            tenant_id: None,
            daemon: Daemon::default(),
        }
    }
}

/// Which orchestrator runs a platform's connectors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Selector {
    Docker,
    Portainer,
    #[default]
    Kubernetes,
    Swarm,
}

/// `{p}.daemon.*`
#[derive(Debug, Clone, PartialEq, Deserialize, Default)]
#[serde(default)]
pub struct Daemon {
    pub selector: Selector,
    pub registry: Option<Registry>,
    pub kubernetes: Option<KubernetesSettings>,
    pub portainer: Option<PortainerSettings>,
    pub docker: Option<DockerOptions>,
    /// Typed at load like every other section: a value of the wrong type is in
    /// the one list of problems, not an error of the Swarm orchestrator later.
    pub swarm: Option<SwarmOptions>,
}

/// `{p}.daemon.registry.*`
#[derive(Debug, Clone, PartialEq, Deserialize, Default)]
#[serde(default)]
pub struct Registry {
    pub server: Option<String>,
    pub username: Option<String>,
    pub password: Option<Secret>,
    pub email: Option<String>,
}

/// `{p}.daemon.kubernetes.*`
#[derive(Debug, Clone, PartialEq, Deserialize, Default)]
#[serde(default)]
pub struct KubernetesSettings {
    /// `Always` | `IfNotPresent` | `Never` (another spelling: a warning at load).
    #[serde(deserialize_with = "values::parsed")]
    pub image_pull_policy: PullPolicy,
    pub base_deployment: Option<serde_json::Value>,
    /// The JSON text parsed at load (an object).
    pub base_deployment_json: Option<serde_json::Value>,
    pub image_resources: Option<serde_json::Value>,
    /// Ours: overrides the kubeconfig / in-cluster namespace.
    pub namespace: Option<String>,
    /// Ours (D23): `true` puts decrypted values in the Deployment env as the
    /// existing composer does, instead of a per-connector Secret. Default false.
    pub plain_env: bool,
    /// Ours: API server call timeout, seconds (default 30).
    pub request_timeout: Option<u64>,
    /// Ours: API server connect timeout, seconds (default 10).
    pub connect_timeout: Option<u64>,
}

impl KubernetesSettings {
    /// The Deployment the generated one merges into: `base_deployment`, else
    /// `base_deployment_json` (§6.3), checked at load.
    pub fn base(&self) -> Option<&serde_json::Value> {
        self.base_deployment
            .as_ref()
            .filter(|v| !v.is_null())
            .or(self.base_deployment_json.as_ref())
    }
}

/// `{p}.daemon.portainer.*`
#[derive(Debug, Clone, PartialEq, Deserialize, Default)]
#[serde(default)]
pub struct PortainerSettings {
    pub api: Option<String>,
    pub api_key: Option<Secret>,
    pub env_id: Option<String>,
    pub env_type: Option<String>,
    /// The highest Engine API version used through the proxy (`v1.44`).
    #[serde(deserialize_with = "values::parsed_opt")]
    pub api_version: Option<ApiVersion>,
    pub stack: Option<String>,
    pub network_mode: Option<String>,
    /// Ours: a PEM CA bundle (file path or inline PEM) trusted for `api`,
    /// besides the system roots.
    pub ca_file: Option<String>,
    /// Ours: accept any certificate from Portainer (warned about at startup).
    /// Default false: verified, unlike the existing composer (issue 6, D17).
    pub unsecured_certificate: bool,
}

/// One `ulimits` entry.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct Ulimit {
    pub name: Option<String>,
    pub soft: Option<i64>,
    pub hard: Option<i64>,
}

/// `{p}.daemon.docker.*`: HostConfig options (§6.1) plus ours.
#[derive(Debug, Clone, PartialEq, Deserialize, Default)]
#[serde(default)]
pub struct DockerOptions {
    pub network_mode: Option<String>,
    pub extra_hosts: Vec<String>,
    pub dns: Vec<String>,
    pub dns_search: Vec<String>,
    pub privileged: Option<bool>,
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    pub security_opt: Vec<String>,
    pub userns_mode: Option<String>,
    pub pid_mode: Option<String>,
    pub ipc_mode: Option<String>,
    pub uts_mode: Option<String>,
    pub runtime: Option<String>,
    pub shm_size: Option<i64>,
    pub sysctls: BTreeMap<String, String>,
    pub ulimits: Vec<Ulimit>,
    /// Ours: memory limit in bytes.
    pub memory: Option<i64>,
    /// Ours: CPU limit in nano-CPUs.
    pub nano_cpus: Option<i64>,
    /// Ours: `always` | `if-not-present` | `never`.
    #[serde(deserialize_with = "values::parsed")]
    pub pull_policy: PullPolicy,
    /// Ours: `no` | `on-failure[:N]` | `unless-stopped` | `always`.
    #[serde(deserialize_with = "values::parsed")]
    pub restart_policy: RestartPolicy,
    /// Ours: engine address (`unix:///path` or `tcp://host:port`); default
    /// `DOCKER_HOST`, else `unix:///var/run/docker.sock` (see `Settings::engine`).
    #[serde(deserialize_with = "values::parsed_opt")]
    pub host: Option<EngineAddress>,
}

/// `{p}.daemon.swarm.*`: ServiceSpec options (§6.4). Durations are
/// nanoseconds, CPUs nano-CPUs, memory bytes, as the engine takes them.
#[derive(Debug, Clone, PartialEq, Deserialize, Default)]
#[serde(default)]
pub struct SwarmOptions {
    /// `TaskTemplate.Networks[].Target`; none by default.
    pub network: Option<String>,
    pub extra_hosts: Vec<String>,
    pub dns: Vec<String>,
    pub dns_search: Vec<String>,
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    pub sysctls: BTreeMap<String, String>,
    pub ulimits: Vec<Ulimit>,
    pub hostname: Option<String>,
    pub user: Option<String>,
    pub read_only: Option<bool>,
    pub init: Option<bool>,
    pub stop_grace_period: Option<i64>,
    pub resources: SwarmResources,
    pub placement_constraints: Vec<String>,
    /// Spread descriptors (`node.labels.zone`).
    pub placement_preferences: Vec<String>,
    /// `none` | `on-failure` | `any`.
    pub restart_condition: Option<String>,
    pub restart_delay: Option<i64>,
    pub restart_max_attempts: Option<i64>,
    /// Ours: the manager-side pull before create, as `daemon.docker.pull_policy`.
    #[serde(deserialize_with = "values::parsed")]
    pub pull_policy: PullPolicy,
}

/// `{p}.daemon.swarm.resources.*`
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Default)]
#[serde(default)]
pub struct SwarmResources {
    pub cpu_limit: Option<i64>,
    pub memory_limit: Option<i64>,
    pub cpu_reservation: Option<i64>,
    pub memory_reservation: Option<i64>,
}
