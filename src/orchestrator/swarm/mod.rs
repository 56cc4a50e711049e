//! `Swarm`: connectors as Docker Swarm services on the same Docker client as
//! `Docker`: one replicated service per connector (3 labels, env hash marker),
//! `Replicas` 1/0 for start/stop, status and restart count from tasks, logs
//! from every node, proxy CA as a Docker config (CONTRACT §5.5.2, §6.4, D8, D19).
//! Invariant: `list()` costs one services call and one tasks call, whatever
//! the number of connectors; no env value or password reaches an error.

mod api;
pub(crate) mod wire;

use std::collections::BTreeMap;
use std::time::SystemTime;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use sha2::{Digest, Sha256};

use self::wire::{
    ConfigFile, ConfigSpec, ContainerSpec, Mode, Replicated, ServiceSpec, TaskTemplate,
};
use super::docker::image::RegistryAccess;
use super::docker::{self, Client, PROXY_CA_PATH, PullPolicy};
use super::{
    Error, HASH_MARKER, LABEL_CONNECTOR, LABEL_MANAGER, LABEL_PLATFORM, Orchestrator, Spec,
    Workload, WorkloadState,
};
use crate::config::{Settings, SwarmOptions};
use crate::platform::PlatformKind;

/// The Swarm orchestrator of one platform.
pub struct Swarm {
    client: Client,
    manager_id: String,
    options: SwarmOptions,
    registry: RegistryAccess,
    pull_policy: PullPolicy,
    /// The proxy CA bundle, when the platform uses a proxy with a CA.
    proxy_ca: Option<Vec<u8>>,
}

impl std::fmt::Debug for Swarm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Swarm")
            .field("client", &self.client)
            .field("manager_id", &self.manager_id)
            .field("pull_policy", &self.pull_policy)
            .field("proxy_ca", &self.proxy_ca.is_some())
            .finish_non_exhaustive()
    }
}

impl Swarm {
    /// The orchestrator for `platform`'s connectors, from `{p}.daemon.swarm`
    /// (absent: all defaults; no fallback to `opencti`'s, §6.4), the engine
    /// address of `{p}.daemon.docker.host` / `DOCKER_HOST`, `{p}.daemon.registry`
    /// and the platform's proxy CA. No engine call is made.
    ///
    /// # Errors
    /// `Error::Config` for an unreadable proxy CA file (values were parsed at load).
    pub fn new(settings: &Settings, platform: PlatformKind) -> Result<Swarm, Error> {
        Swarm::with_client(
            docker::engine_client(settings, platform),
            settings,
            platform,
        )
    }

    /// As `new`, over an already built client.
    ///
    /// # Errors
    /// As `new`.
    pub fn with_client(
        client: Client,
        settings: &Settings,
        platform: PlatformKind,
    ) -> Result<Swarm, Error> {
        // An absent section is all defaults (the existing composer panicked).
        let options = settings
            .platform(platform)
            .daemon
            .swarm
            .clone()
            .unwrap_or_default();
        Ok(Swarm {
            client,
            manager_id: settings.manager.id.clone(),
            registry: RegistryAccess::from_settings(settings.registry(platform)),
            pull_policy: options.pull_policy,
            options,
            proxy_ca: docker::proxy_ca(settings, platform)?,
        })
    }

    /// The engine client (request count, API version).
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The Docker config holding the proxy CA bundle, found or created:
    /// `(id, name)`. Its name carries the bundle's hash, because configs are
    /// immutable; it is shared by the services that use the same bundle and
    /// kept when they are removed.
    ///
    /// # Errors
    /// Engine errors as they come.
    fn ca_config(&self) -> Result<Option<(String, String)>, Error> {
        let Some(bundle) = &self.proxy_ca else {
            return Ok(None);
        };
        let digest = Sha256::digest(bundle);
        let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
        let name = format!("xtm-proxy-ca-{hex}");
        let id = match self.client.inspect_config(&name) {
            Ok(id) => id,
            Err(Error::NotFound { .. }) => self.client.create_config(&ConfigSpec {
                name: &name,
                labels: [(LABEL_MANAGER, self.manager_id.as_str())].into(),
                data: STANDARD.encode(bundle),
            })?,
            Err(e) => return Err(e),
        };
        Ok(Some((id, name)))
    }

    /// Obtains the image and the CA config, then creates the service
    /// (`update` false) or replaces the spec of the existing one.
    fn apply(&self, spec: &Spec, update: bool) -> Result<(), Error> {
        let image =
            docker::ensure_image(&self.client, &self.registry, self.pull_policy, &spec.image)?;
        let ca = self.ca_config()?;
        let ca_file = ca.as_ref().map(|(id, name)| ConfigFile {
            id,
            name,
            target: PROXY_CA_PATH,
        });
        let own = spec.labels(&self.manager_id);
        let env = spec
            .env
            .iter()
            .map(|e| format!("{}={}", e.key, e.value.expose()))
            .collect();
        let body = ServiceSpec {
            name: &spec.name,
            labels: own.iter().map(|(k, v)| (*k, v.as_str())).collect(),
            task_template: TaskTemplate::from_options(
                &self.options,
                ContainerSpec::from_options(&self.options, &image, env, ca_file.as_ref()),
            ),
            mode: Mode {
                replicated: Replicated {
                    replicas: u64::from(spec.start),
                },
            },
        };
        let auth = self.registry.auth_header_for(&image);
        let result = if update {
            self.update(&spec.name, |current| {
                let (id, version) = (&current.id, current.version.index);
                self.client
                    .update_service(id, version, &body, auth.as_ref())
            })
        } else {
            let warnings = self.client.create_service(&spec.name, &body, auth.as_ref());
            warnings.map(|w| {
                w.iter()
                    .for_each(|w| log::warn!("create service {}: {w}", spec.name))
            })
        };
        result.map_err(|e| docker::redact(e, spec))
    }

    /// Reads the service and hands it to `send`, which updates it at the
    /// version read. The engine bumps that version on its own while it rolls a
    /// previous update out (`UpdateStatus`), so "update out of sequence" can
    /// follow a read made a moment ago: that answer alone gets one fresh read
    /// (optimistic locking, not an error retry).
    fn update(
        &self,
        name: &str,
        send: impl Fn(wire::ServiceInspect) -> Result<(), Error>,
    ) -> Result<(), Error> {
        match send(self.client.inspect_service(name)?) {
            Err(Error::Api { message, .. }) if message.contains("update out of sequence") => {
                log::debug!("service {name} changed while being updated; reading it again");
                send(self.client.inspect_service(name)?)
            }
            other => other,
        }
    }

    /// Sets `Mode.Replicated.Replicas` on the service's current spec, leaving
    /// every other field as the engine has it; nothing is sent when it is already so.
    fn scale(&self, name: &str, replicas: u64) -> Result<(), Error> {
        self.update(name, |mut current| {
            let image = current
                .spec
                .pointer("/TaskTemplate/ContainerSpec/Image")
                .and_then(|i| i.as_str())
                .unwrap_or_default();
            let auth = self.registry.auth_header_for(image);
            let Some(slot) = current
                .spec
                .pointer_mut("/Mode/Replicated")
                .and_then(|v| v.as_object_mut())
            else {
                return Err(Error::Config {
                    op: "scale service",
                    detail: format!("service {name} is not replicated"),
                });
            };
            if slot.get("Replicas").and_then(|r| r.as_u64()) == Some(replicas) {
                return Ok(());
            }
            slot.insert("Replicas".into(), replicas.into());
            let (id, version) = (&current.id, current.version.index);
            self.client
                .update_service(id, version, &current.spec, auth.as_ref())
        })
    }
}

impl Orchestrator for Swarm {
    /// `GET /services` and `GET /tasks`, both by the manager label: two calls
    /// per cycle, one when there is no service.
    fn list(&self) -> Result<Vec<Workload>, Error> {
        let label = format!("{LABEL_MANAGER}={}", self.manager_id);
        let services = self.client.list_services(&label)?;
        if services.is_empty() {
            return Ok(Vec::new());
        }
        let tasks = self.client.list_tasks(&label)?;
        Ok(services
            .into_iter()
            .filter_map(|s| workload_of(s, &tasks))
            .collect())
    }

    fn deploy(&self, spec: &Spec) -> Result<(), Error> {
        self.apply(spec, false)
    }

    /// An in-place service update (the engine replaces the task), so a failed
    /// pull or update leaves the running service as it was.
    fn refresh(&self, spec: &Spec) -> Result<(), Error> {
        self.apply(spec, true)
    }

    fn start(&self, name: &str) -> Result<(), Error> {
        self.scale(name, 1)
    }

    fn stop(&self, name: &str) -> Result<(), Error> {
        self.scale(name, 0)
    }

    fn remove(&self, name: &str) -> Result<(), Error> {
        self.client.remove_service(name)
    }

    fn logs(&self, name: &str, tail: u32) -> Result<Vec<String>, Error> {
        self.client.service_logs(name, tail)
    }

    /// Service events (create, update — a scale included —, remove). The engine
    /// cannot filter them by label, so every service's events wake the loop:
    /// one relist (two calls) per burst.
    fn follow(&self, wake: &(dyn Fn() + Sync), stop: &crossbeam_channel::Receiver<()>) -> bool {
        let listener = crate::orchestrator::docker::Waker { docker: None, wake };
        crate::orchestrator::docker::events::follow(&self.client, "service", None, &listener, stop);
        true
    }
}

/// Task states that mean a run ended in failure: the restart count (D19).
const FAILED: [&str; 2] = ["failed", "rejected"];
/// Task states of a run that started and ended.
const ENDED: [&str; 4] = ["failed", "complete", "shutdown", "orphaned"];

/// A service and its tasks as a `Workload`; `None` (warned) without id or name.
///
/// Running when any task runs (§5.7). Otherwise `Restarting` while replicas
/// are asked for (the engine is rescheduling: the composer must not start it
/// again), else `Stopped`. `started_at`: the running task's last state change,
/// else the newest ended run's, so a crash loop keeps a recent time (§8.4).
fn workload_of(service: wire::Service, tasks: &[wire::Task]) -> Option<Workload> {
    let spec = service.spec;
    if service.id.is_empty() || spec.name.is_empty() {
        log::warn!(
            "service {:?} {:?} has no id or name; skipped",
            service.id,
            spec.name
        );
        return None;
    }
    let mine: Vec<&wire::Task> = tasks
        .iter()
        .filter(|t| t.service_id == service.id)
        .collect();
    let newest = |states: &[&str]| {
        mine.iter()
            .filter(|t| states.contains(&t.status.state.as_str()))
            .filter_map(|t| {
                let at = crate::time::parse_rfc3339(&t.status.timestamp)?;
                Some((at, t.status.timestamp.clone()))
            })
            .max_by_key(|(at, _): &(SystemTime, String)| *at)
            .map(|(_, text)| text)
    };
    let running = newest(&["running"]);
    let replicas = spec.mode.replicated.as_ref().map_or(0, |r| r.replicas);
    let state = match (&running, replicas) {
        (Some(_), _) => WorkloadState::Running,
        (None, 0) => WorkloadState::Stopped,
        (None, _) => WorkloadState::Restarting,
    };
    let failed = mine
        .iter()
        .filter(|t| FAILED.contains(&t.status.state.as_str()))
        .count();
    let labels: BTreeMap<String, String> = spec.labels;
    Some(Workload {
        name: spec.name,
        connector_id: labels.get(LABEL_CONNECTOR).cloned(),
        platform: labels.get(LABEL_PLATFORM).cloned(),
        hash: docker::env_value(&spec.task_template.container_spec.env, HASH_MARKER)
            .map(str::to_string),
        state,
        restart_count: u32::try_from(failed).unwrap_or(u32::MAX),
        started_at: running.or_else(|| newest(&ENDED)),
        waiting_reason: None,
        defect: None,
    })
}

#[cfg(test)]
mod tests;
