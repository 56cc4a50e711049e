//! `Docker`: the Docker Engine orchestrator. Owns the policy around the engine
//! calls of `Client`: one labelled listing per cycle with an inspect cache, the
//! pull policy, create with labels / env / HostConfig / restart policy, and the
//! proxy CA delivered by archive upload before start (CONTRACT §5, §6.1, D5–D10, D20).
//! Invariant: only a 404 means "missing"; no env value or password reaches an error.
//! Portainer and Swarm reuse `Client` (and Portainer this type, through `with_client`).

pub mod client;
pub(crate) mod events;
pub mod image;
pub(crate) mod stream;
mod transport;
pub(crate) mod wire;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

pub use client::{ApiVersion, Client};
pub use image::PullPolicy;

use self::image::RegistryAccess;
use self::wire::{ContainerInspect, CreateContainer, HostConfig, RestartPolicy};
use crate::config::{DockerOptions, PlatformSettings, Settings};
use crate::orchestrator::{
    Error, HASH_MARKER, LABEL_CONNECTOR, LABEL_MANAGER, LABEL_PLATFORM, Orchestrator, Spec,
    Workload, WorkloadState,
};
use crate::platform::PlatformKind;

/// Where connectors find the proxy CA bundle (§5.4, §5.5.2).
pub const PROXY_CA_PATH: &str = "/etc/ssl/certs/xtm-proxy-ca.crt";
/// The composer host's root bundle, appended so direct (`NO_PROXY`) TLS still verifies (D8).
const SYSTEM_ROOTS: &str = "/etc/ssl/certs/ca-certificates.crt";

/// What `list()` needs from an inspect and cannot get from the listing.
#[derive(Debug, Clone)]
struct Details {
    name: String,
    hash: Option<String>,
    restart_count: u32,
    started_at: Option<String>,
    tty: bool,
}

/// An inspect result, valid while the listing shows the same `State` and `Status`.
#[derive(Debug)]
struct Cached {
    state: String,
    status: String,
    details: Details,
    at: Instant,
}

/// Turns engine events into wake-ups of the platform loop (and, for Docker,
/// into cache invalidations).
pub(crate) struct Waker<'a> {
    pub docker: Option<&'a Docker>,
    pub wake: &'a dyn Fn(),
}

impl events::Listener for Waker<'_> {
    fn connected(&self, after_outage: bool) {
        if let Some(d) = self.docker {
            if after_outage {
                d.cache.lock().unwrap_or_else(|p| p.into_inner()).clear();
            }
            d.events_live.store(true, Ordering::Relaxed);
        }
        if after_outage {
            (self.wake)();
        }
    }

    fn event(&self, id: &str, action: &str) {
        log::debug!("engine event {action} on {id}");
        if let Some(d) = self.docker {
            d.forget(id);
        }
        (self.wake)();
    }

    fn lost(&self) {
        if let Some(d) = self.docker {
            d.events_live.store(false, Ordering::Relaxed);
        }
    }
}

/// The Docker Engine orchestrator of one platform.
pub struct Docker {
    client: Client,
    manager_id: String,
    options: DockerOptions,
    registry: RegistryAccess,
    pull_policy: PullPolicy,
    restart_policy: RestartPolicy,
    /// The tar holding the proxy CA bundle, when the platform uses a proxy with a CA.
    ca_archive: Option<Vec<u8>>,
    /// Added to the three ownership labels (Portainer's compose project).
    extra_labels: Vec<(String, String)>,
    /// Inspect results by container id.
    cache: Mutex<HashMap<String, Cached>>,
    /// The engine's event stream is open: a cached inspect stays valid until an
    /// event names its container (or `CACHE_TRUST` passes), whatever the uptime text says.
    events_live: AtomicBool,
    /// Containers known to hold their proxy CA bundle (uploaded by this
    /// process, or seen there once), so `list()` looks at most once per container.
    with_ca: Mutex<HashSet<String>>,
}

/// How long a cached inspect is trusted while events flow: the safety net for
/// an event the engine never sent.
const CACHE_TRUST: Duration = Duration::from_secs(300);

impl std::fmt::Debug for Docker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Docker")
            .field("client", &self.client)
            .field("manager_id", &self.manager_id)
            .field("pull_policy", &self.pull_policy)
            .field("restart_policy", &self.restart_policy)
            .field("proxy_ca", &self.ca_archive.is_some())
            .finish_non_exhaustive()
    }
}

impl Docker {
    /// The orchestrator for `platform`'s connectors, from `{p}.daemon.docker`
    /// (engine address: `host`, else `DOCKER_HOST`, else the default socket),
    /// `{p}.daemon.registry` and the platform's proxy CA. No engine call is made.
    ///
    /// # Errors
    /// `Error::Config` for an unreadable `https_proxy_ca` file (values were
    /// parsed at load).
    pub fn new(settings: &Settings, platform: PlatformKind) -> Result<Docker, Error> {
        Docker::with_client(engine_client(settings, platform), settings, platform)
    }

    /// As `new`, over an already built client (Portainer's HTTPS base and API key).
    ///
    /// # Errors
    /// As `new`.
    pub fn with_client(
        client: Client,
        settings: &Settings,
        platform: PlatformKind,
    ) -> Result<Docker, Error> {
        let options = settings
            .docker_options(platform)
            .cloned()
            .unwrap_or_default();
        let ca_archive = proxy_ca(settings, platform)?.and_then(|bundle| {
            stream::tar_one_file(PROXY_CA_PATH.trim_start_matches('/'), 0o444, &bundle)
        });
        Ok(Docker {
            client,
            manager_id: settings.manager.id.clone(),
            registry: RegistryAccess::from_settings(settings.registry(platform)),
            pull_policy: options.pull_policy,
            restart_policy: options.restart_policy.into(),
            options,
            ca_archive,
            extra_labels: Vec::new(),
            cache: Mutex::new(HashMap::new()),
            events_live: AtomicBool::new(false),
            with_ca: Mutex::new(HashSet::new()),
        })
    }

    /// Adds a label to every container created (e.g. `com.docker.compose.project`).
    pub fn with_label(mut self, key: impl Into<String>, value: impl Into<String>) -> Docker {
        self.extra_labels.push((key.into(), value.into()));
        self
    }

    /// Sets `HostConfig.NetworkMode` (Portainer's `network_mode`), over `{p}.daemon.docker`'s.
    pub fn with_network_mode(mut self, mode: impl Into<String>) -> Docker {
        self.options.network_mode = Some(mode.into());
        self
    }

    /// The engine client (request count, API version).
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Create, upload the proxy CA, start when asked.
    ///
    /// # Guarantees
    /// A container whose CA upload failed is removed, so no later cycle starts
    /// it without its CA.
    fn create_and_start(&self, spec: &Spec, image: &str) -> Result<(), Error> {
        let own = spec.labels(&self.manager_id);
        let mut labels: BTreeMap<&str, &str> = own.iter().map(|(k, v)| (*k, v.as_str())).collect();
        for (k, v) in &self.extra_labels {
            labels.insert(k, v);
        }
        let body = CreateContainer {
            image,
            env: spec
                .env
                .iter()
                .map(|e| format!("{}={}", e.key, e.value.expose()))
                .collect(),
            labels,
            host_config: HostConfig::from_options(&self.options, self.restart_policy.clone()),
        };
        let id = self
            .client
            .create_container(&spec.name, &body)
            .map_err(|e| redact(e, spec))?;
        if let Some(tar) = &self.ca_archive
            && let Err(e) = self.client.put_archive(&id, "/", tar)
        {
            if let Err(cleanup) = self.client.remove_container(&id) {
                log::warn!("{cleanup}");
            }
            return Err(e);
        }
        if self.ca_archive.is_some() {
            lock(&self.with_ca).insert(id.clone());
        }
        if spec.start {
            self.client.start_container(&id)?;
        }
        Ok(())
    }

    /// The cached details of container `id` when its listing line is unchanged.
    fn cached(&self, id: &str, state: &str, status: &str) -> Option<Details> {
        let live = self.events_live.load(Ordering::Relaxed);
        let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache
            .get(id)
            .filter(|c| c.state == state)
            // Without events, the listing's status text is the only sign of a
            // restart between two cycles (it carries the uptime).
            .filter(|c| {
                if live {
                    c.at.elapsed() < CACHE_TRUST
                } else {
                    c.status == status
                }
            })
            .map(|c| c.details.clone())
    }

    /// Forgets what was inspected of container `id` (an event named it).
    fn forget(&self, id: &str) {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache.remove(id);
    }

    /// Follows the container events of this manager (shared with Portainer).
    pub(crate) fn follow_events(&self, wake: &dyn Fn(), stop: &crossbeam_channel::Receiver<()>) {
        let label = format!("{LABEL_MANAGER}={}", self.manager_id);
        let listener = Waker {
            docker: Some(self),
            wake,
        };
        events::follow(&self.client, "container", Some(&label), &listener, stop);
    }

    /// Inspects `id` and caches the result against the listing's `state` and `status`.
    fn inspect(&self, id: &str, state: &str, status: &str) -> Result<Details, Error> {
        let details = details_of(self.client.inspect_container(id)?);
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache.insert(
            id.to_string(),
            Cached {
                state: state.to_string(),
                status: status.to_string(),
                details: details.clone(),
                at: Instant::now(),
            },
        );
        Ok(details)
    }

    /// Whether a never-started container lacks the proxy CA bundle it was
    /// created for: a deploy cut between create and upload (kill -9, power
    /// loss) leaves it so, and starting it would give a connector whose env
    /// points at a missing file (issue 12). One `HEAD` per such container.
    ///
    /// # Errors
    /// The engine could not answer.
    fn lacks_proxy_ca(&self, id: &str, state: &str) -> Result<bool, Error> {
        if self.ca_archive.is_none() || state != "created" || lock(&self.with_ca).contains(id) {
            return Ok(false);
        }
        let present = self.client.has_path(id, PROXY_CA_PATH)?;
        if present {
            lock(&self.with_ca).insert(id.to_string());
        }
        Ok(!present)
    }

    /// Whether `name`'s logs are raw (TTY), from the cache or one inspect.
    fn is_tty(&self, name: &str) -> Result<bool, Error> {
        {
            let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(c) = cache.values().find(|c| c.details.name == name) {
                return Ok(c.details.tty);
            }
        }
        Ok(self.client.inspect_container(name)?.config.tty)
    }
}

impl Orchestrator for Docker {
    /// One `GET /containers/json`, plus one inspect per container whose listing
    /// line changed since the last cycle (the `Status` text changes on every
    /// restart: `Restarting (1) …`, `Up 1 second`), so an idle cycle costs one call.
    fn list(&self) -> Result<Vec<Workload>, Error> {
        let summaries = self
            .client
            .list_containers(&format!("{LABEL_MANAGER}={}", self.manager_id))?;
        let mut seen = HashSet::new();
        let mut workloads = Vec::with_capacity(summaries.len());
        for s in summaries {
            let Some(name) = s
                .names
                .first()
                .map(|n| n.trim_start_matches('/').to_string())
            else {
                log::warn!("container {} has no name; skipped", s.id);
                continue;
            };
            if s.id.is_empty() {
                log::warn!("container {name} has no id; skipped");
                continue;
            }
            seen.insert(s.id.clone());
            let connector_id = s.labels.get(LABEL_CONNECTOR).cloned();
            // A workload without connector id is never touched: no need to inspect it.
            let details = match (&connector_id, self.cached(&s.id, &s.state, &s.status)) {
                (None, _) => None,
                (Some(_), Some(d)) => Some(d),
                (Some(_), None) => match self.inspect(&s.id, &s.state, &s.status) {
                    Ok(d) => Some(d),
                    // Removed between the listing and the inspect.
                    Err(Error::NotFound { .. }) => continue,
                    Err(e) => return Err(e),
                },
            };
            // No hash for a half-deployed container: the planner recreates it.
            let complete = details.is_none() || !self.lacks_proxy_ca(&s.id, &s.state)?;
            workloads.push(Workload {
                name,
                connector_id,
                platform: s.labels.get(LABEL_PLATFORM).cloned(),
                hash: details
                    .as_ref()
                    .and_then(|d| d.hash.clone())
                    .filter(|_| complete),
                state: state_of(&s.state),
                restart_count: details.as_ref().map_or(0, |d| d.restart_count),
                started_at: details.and_then(|d| d.started_at),
                waiting_reason: None,
                defect: None,
            });
        }
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache.retain(|id, _| seen.contains(id));
        lock(&self.with_ca).retain(|id| seen.contains(id));
        Ok(workloads)
    }

    fn deploy(&self, spec: &Spec) -> Result<(), Error> {
        let image = ensure_image(&self.client, &self.registry, self.pull_policy, &spec.image)?;
        self.create_and_start(spec, &image)
    }

    /// Remove and create again. The image is obtained first, so a failed pull
    /// leaves the old container running.
    fn refresh(&self, spec: &Spec) -> Result<(), Error> {
        let image = ensure_image(&self.client, &self.registry, self.pull_policy, &spec.image)?;
        match self.client.remove_container(&spec.name) {
            Ok(()) | Err(Error::NotFound { .. }) => {}
            Err(e) => return Err(e),
        }
        self.create_and_start(spec, &image)
    }

    /// # Guarantees
    /// A container the engine can no longer start under its id is removed, so
    /// the next cycle deploys it afresh instead of failing forever.
    fn start(&self, name: &str) -> Result<(), Error> {
        match self.client.start_container(name) {
            // An engine stopped while it was starting this container can keep a
            // stale runtime task under the container's id; every later start then
            // answers 500 "task <id>: already exists" (seen with docker.io 20.10,
            // tests/docker_outage.rs; moby/moby#50040). Only a new id runs again.
            Err(Error::Api {
                op,
                code: 500,
                message,
            }) if message.contains("already exists") => {
                let removed = match self.client.remove_container(name) {
                    Ok(()) => "container removed, deployed again next cycle",
                    Err(_) => "container could not be removed",
                };
                Err(Error::Api {
                    op,
                    code: 500,
                    message: format!("{message} ({removed})"),
                })
            }
            other => other,
        }
    }

    fn stop(&self, name: &str) -> Result<(), Error> {
        self.client.stop_container(name)
    }

    fn remove(&self, name: &str) -> Result<(), Error> {
        self.client.remove_container(name)
    }

    fn follow(&self, wake: &(dyn Fn() + Sync), stop: &crossbeam_channel::Receiver<()>) -> bool {
        self.follow_events(wake, stop);
        true
    }

    fn logs(&self, name: &str, tail: u32) -> Result<Vec<String>, Error> {
        let tty = self.is_tty(name)?;
        self.client.container_logs(name, tail, tty)
    }
}

/// The image as the engine will run it (registry prefix applied), after
/// pulling per `policy`; Swarm's manager-side pull uses it too.
///
/// # Errors
/// `Error::Image` when no usable image results; engine errors as they come.
pub(crate) fn ensure_image(
    client: &Client,
    registry: &RegistryAccess,
    policy: PullPolicy,
    requested: &str,
) -> Result<String, Error> {
    let image = registry.qualify(requested);
    let present = || client.inspect_image(&image).map(|i| i.is_some());
    let auth = registry.auth_header_for(&image);
    match policy {
        PullPolicy::Never if present()? => Ok(image),
        PullPolicy::Never => Err(Error::Image {
            op: "deploy",
            image,
            detail: "not present locally and pull policy is never".into(),
        }),
        PullPolicy::IfNotPresent if present()? => Ok(image),
        PullPolicy::IfNotPresent => client.pull_image(&image, auth.as_ref()).map(|()| image),
        PullPolicy::Always => match client.pull_image(&image, auth.as_ref()) {
            Ok(()) => Ok(image),
            Err(pull_error) => match present() {
                Ok(true) => {
                    log::warn!("{pull_error}; deploying the local image instead");
                    Ok(image)
                }
                _ => Err(pull_error),
            },
        },
    }
}

/// A set whose every state is valid, even after a panic elsewhere.
fn lock(set: &Mutex<HashSet<String>>) -> std::sync::MutexGuard<'_, HashSet<String>> {
    set.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn state_of(state: &str) -> WorkloadState {
    match state {
        "running" => WorkloadState::Running,
        "restarting" => WorkloadState::Restarting,
        _ => WorkloadState::Stopped,
    }
}

fn details_of(inspect: ContainerInspect) -> Details {
    let started = inspect.state.started_at;
    Details {
        name: inspect.name.trim_start_matches('/').to_string(),
        hash: env_value(&inspect.config.env, HASH_MARKER).map(str::to_string),
        restart_count: u32::try_from(inspect.restart_count.max(0)).unwrap_or(u32::MAX),
        // The engine's zero time means "never started".
        started_at: Some(started).filter(|s| !s.is_empty() && !s.starts_with("0001-01-01")),
        tty: inspect.config.tty,
    }
}

/// The value of `key` in `KEY=value` entries, split at the first `=` (D20).
pub(crate) fn env_value<'a>(env: &'a [String], key: &str) -> Option<&'a str> {
    env.iter()
        .filter_map(|e| e.split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v)
}

/// The client of `platform`'s engine (`Settings::engine`; Swarm's manager too).
pub(crate) fn engine_client(settings: &Settings, platform: PlatformKind) -> Client {
    let address = settings.engine(platform);
    if let Some(remote) = client::remote_plain_tcp(address.as_str()) {
        log::warn!(
            "{platform}: the Docker engine at {remote} is reached over plain TCP: decrypted \
             connector env values and registry credentials cross the network unencrypted; \
             use a unix socket, or reach a remote engine through an SSH or TLS tunnel"
        );
    }
    Client::for_engine(&address)
}

/// The platform's proxy CA bundle for connectors, when it uses a proxy with a CA (§5.5.2).
///
/// # Errors
/// `Error::Config` naming an entry file that cannot be read.
pub(crate) fn proxy_ca(
    settings: &Settings,
    platform: PlatformKind,
) -> Result<Option<Vec<u8>>, Error> {
    platform_proxy_ca(settings.platform(platform))
}

/// As [`proxy_ca`], from the platform's section (the Kubernetes Secret uses it too).
///
/// # Errors
/// `Error::Config` naming an entry file that cannot be read.
pub(crate) fn platform_proxy_ca(p: &PlatformSettings) -> Result<Option<Vec<u8>>, Error> {
    if !p.with_proxy {
        return Ok(None);
    }
    proxy_ca_bundle(&p.https_proxy_ca, Path::new(SYSTEM_ROOTS))
}

/// The proxy CA entries (inline PEM, else file paths), each ending with a
/// newline, followed by the system roots when `roots` exists. `None` without entries.
///
/// # Errors
/// `Error::Config` naming an entry file that cannot be read.
fn proxy_ca_bundle(entries: &[String], roots: &Path) -> Result<Option<Vec<u8>>, Error> {
    let mut bundle = Vec::new();
    for entry in entries.iter().map(|e| e.trim()).filter(|e| !e.is_empty()) {
        if entry.starts_with("-----BEGIN") {
            bundle.extend_from_slice(entry.as_bytes());
        } else {
            let pem = std::fs::read(entry).map_err(|e| Error::Config {
                op: "read https_proxy_ca",
                detail: format!("{entry}: {e}"),
            })?;
            bundle.extend_from_slice(&pem);
        }
        if bundle.last() != Some(&b'\n') {
            bundle.push(b'\n');
        }
    }
    if bundle.is_empty() {
        return Ok(None);
    }
    // Missing roots only weaken direct TLS in the connector; the proxy CA still works.
    if let Ok(system) = std::fs::read(roots) {
        bundle.extend_from_slice(&system);
    }
    Ok(Some(bundle))
}

/// Removes sensitive env values from an engine message about this spec
/// (Swarm's service create and update use it too).
pub(crate) fn redact(error: Error, spec: &Spec) -> Error {
    match error {
        Error::Api {
            op,
            code,
            mut message,
        } => {
            for e in spec.env.iter().filter(|e| e.value.is_sensitive()) {
                let value = e.value.expose();
                if !value.is_empty() {
                    message = message.replace(value, "***");
                }
            }
            Error::Api { op, code, message }
        }
        other => other,
    }
}

#[cfg(test)]
mod tests;
