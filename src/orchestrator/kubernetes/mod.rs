//! The Kubernetes orchestrator (CONTRACT §6.3, §5, D4, D6, D7, D16, D23): one
//! Deployment per connector, listed with its pods in two calls per cycle; status
//! from the connector container of the newest live pod; start/stop by merge patch
//! of `spec.replicas`; refresh by merge patch without `spec.selector`. Secrets: the
//! registry pull secret is written before each deploy/refresh/start; the proxy CA
//! and the decrypted values (`{name}-proxy-ca`, `{name}-env`; `plain_env` restores
//! plain env) are owned by their Deployment and never written over a Secret the
//! composer did not make (`secrets`, issue 12). A deploy that makes Secrets creates
//! the Deployment stopped and without its hash, then the Secrets, then patches
//! both in: a cut in between is seen and repaired. `list()` only reads: from the
//! watched copy (`watch`) while `follow` keeps it in sync, else two listings.
//! Connecting is lazy: building one never calls the API server.
//!
//! `base_deployment` merge rule: see `manifest::merge_into_base` (containers
//! without an image configure the connector container; with an image they stay
//! as sidecars; the selector is exactly the three labels, never patched).
//!
//! RBAC used, and nothing more (packaging/kubernetes/role.yaml): deployments
//! `list, watch, create, patch, delete`; pods `list, watch`; pods/log `get`;
//! secrets `create, update, delete` (no `get`).

mod client;
pub mod connect;
pub(crate) mod manifest;
mod secrets;
mod watch;
mod wire;

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, SystemTime};

pub use connect::Source;

use client::{Client, Timeouts};
use connect::Connection;
use manifest::Shape;

use crate::config::{PlatformSettings, Settings};
use crate::orchestrator::docker;
use crate::orchestrator::{
    Error, HASH_MARKER, LABEL_CONNECTOR, LABEL_MANAGER, LABEL_PLATFORM, Orchestrator, Spec,
    Workload, WorkloadState,
};
use crate::platform::PlatformKind;
use crate::secret::Secret;

/// Waiting reasons that mean the container cannot run without a change (§8.4):
/// reported as `waiting_reason`, which flags a reboot loop.
const STUCK_REASONS: [&str; 8] = [
    "CrashLoopBackOff",
    "ImagePullBackOff",
    "ErrImagePull",
    "Error",
    "CreateContainerConfigError",
    "CreateContainerError",
    "InvalidImageName",
    "RunContainerError",
];

/// Registry credentials, written as a `kubernetes.io/dockerconfigjson` Secret.
struct PullSecret {
    name: String,
    server: String,
    username: String,
    password: Secret,
    email: Option<String>,
}

/// Where a workload's logs are, as seen by the last `list()`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Located {
    pod: Option<String>,
    container: String,
}

/// The Kubernetes orchestrator of one platform.
pub struct Kubernetes {
    client: Client,
    shape: Shape,
    registry_server: Option<String>,
    pull: Option<PullSecret>,
    proxy_ca: Option<String>,
    located: Mutex<BTreeMap<String, Located>>,
    /// Ownership facts of each Deployment, as seen by the last `list()`.
    listed: Mutex<BTreeMap<String, secrets::Listed>>,
    /// What the watches know (in sync only while `follow` runs).
    cache: watch::Cache,
}

impl Kubernetes {
    /// The orchestrator for `platform`, connected as `Source::detect` finds
    /// (kubeconfig, else in-cluster). No API call is made.
    ///
    /// # Errors
    /// No usable connection, or an unreadable proxy CA file (values were parsed at load).
    pub fn new(settings: &Settings, platform: PlatformKind) -> Result<Kubernetes, Error> {
        Kubernetes::with_source(settings, platform, &Source::detect()?)
    }

    /// The same, with an explicit connection source (tests, tools).
    ///
    /// # Errors
    /// As [`Kubernetes::new`].
    pub fn with_source(
        settings: &Settings,
        platform: PlatformKind,
        source: &Source,
    ) -> Result<Kubernetes, Error> {
        let p = settings.platform(platform);
        let ks = p.daemon.kubernetes.clone().unwrap_or_default();
        let mut conn = Connection::open(source)?;
        if let Some(ns) = ks.namespace.as_deref().filter(|n| !n.is_empty()) {
            conn.namespace = ns.to_string();
        }
        let timeouts = Timeouts {
            connect: Duration::from_secs(ks.connect_timeout.unwrap_or(10)),
            request: Duration::from_secs(ks.request_timeout.unwrap_or(30)),
        };
        let registry = settings.registry(platform);
        let registry_server = registry
            .and_then(|r| r.server.clone())
            .filter(|s| !s.is_empty());
        let pull = pull_secret(registry);
        let shape = Shape {
            manager_id: settings.manager.id.clone(),
            pull_policy: ks.image_pull_policy.kubernetes_name().into(),
            resources: ks.image_resources.clone().filter(|r| !r.is_null()),
            base: ks.base().cloned(),
            pull_secret: pull.as_ref().map(|s| s.name.clone()),
            proxy_ca: false,
            plain_env: ks.plain_env,
        };
        let proxy_ca = proxy_ca_bundle(p)?;
        let section = format!("{}.daemon.kubernetes", platform.as_str());
        let client = Client::new(conn, timeouts)?.in_section(&section);
        Ok(Kubernetes {
            client,
            shape: Shape {
                proxy_ca: proxy_ca.is_some(),
                ..shape
            },
            registry_server,
            pull,
            proxy_ca,
            located: Mutex::new(BTreeMap::new()),
            listed: Mutex::new(BTreeMap::new()),
            cache: watch::Cache::default(),
        })
    }

    /// The namespace the workloads live in.
    pub fn namespace(&self) -> &str {
        self.client.namespace()
    }

    fn manager_selector(&self) -> String {
        format!("{LABEL_MANAGER}={}", self.shape.manager_id)
    }

    /// What the last listing said about Deployment `name` (listing again
    /// when it was not in the last one).
    ///
    /// # Errors
    /// `NotFound` when there is no such Deployment of ours; listing errors.
    fn listed(&self, op: &'static str, name: &str) -> Result<secrets::Listed, Error> {
        let cached = || {
            let cache = self.listed.lock().unwrap_or_else(PoisonError::into_inner);
            cache.get(name).cloned()
        };
        if let Some(l) = cached() {
            return Ok(l);
        }
        self.list()?;
        cached().ok_or_else(|| Error::NotFound {
            op,
            name: name.to_string(),
        })
    }

    /// Remembers what a deploy or refresh made, until the next listing.
    fn remember(&self, name: &str, uid: String, secrets: BTreeMap<String, String>) {
        let mut cache = self.listed.lock().unwrap_or_else(PoisonError::into_inner);
        let listed = secrets::Listed {
            uid,
            finished: true,
            secrets,
            referenced: std::collections::BTreeSet::new(),
        };
        cache.insert(name.to_string(), listed);
    }

    /// Creates or replaces the registry pull secret, when credentials are set.
    /// Written before every call that makes pods (deploy, refresh, start), so a
    /// Secret deleted or edited behind our back, or credentials changed in the
    /// configuration, are current whenever a pod of ours needs them (D7). Never
    /// from `list()`: `plan` and `check` must change nothing.
    fn write_pull_secret(&self) -> Result<(), Error> {
        let Some(p) = &self.pull else { return Ok(()) };
        let doc =
            manifest::docker_config_json(&p.server, &p.username, &p.password, p.email.as_deref());
        let labels = BTreeMap::from([(LABEL_MANAGER, self.shape.manager_id.as_str())]);
        let data = BTreeMap::from([(".dockerconfigjson".to_string(), doc.expose())]);
        let body = manifest::secret_body(&p.name, "kubernetes.io/dockerconfigjson", labels, data);
        self.client.upsert_secret(&p.name, &body)
    }

    fn image(&self, spec: &Spec) -> String {
        manifest::image_ref(self.registry_server.as_deref(), &spec.image)
    }

    fn scale(&self, op: &'static str, name: &str, replicas: i32) -> Result<(), Error> {
        let patch = wire::ScalePatch {
            spec: wire::Replicas { replicas },
        };
        self.cache.writing(name);
        self.client.patch_deployment(op, name, &patch)
    }

    /// The newest live pod of `name`, from the watched pods or a fresh listing.
    fn locate(&self, name: &str) -> Result<Option<String>, Error> {
        let pods = match self.cache.pods(|p| is_pod_of(name, &p.metadata.name)) {
            Some(pods) => pods,
            None => self.client.list_pods(&self.manager_selector())?.items,
        };
        Ok(newest_pod(name, &BTreeMap::new(), &pods).map(|p| p.metadata.name.clone()))
    }

    fn read_log(&self, pod: &str, container: &str, tail: u32) -> Result<Vec<String>, Error> {
        let text = self.client.pod_log(pod, container, tail)?;
        let lines: Vec<String> = text.lines().map(str::to_string).collect();
        let skip = lines.len().saturating_sub(tail as usize);
        Ok(lines.into_iter().skip(skip).collect())
    }
}

impl Orchestrator for Kubernetes {
    fn list(&self) -> Result<Vec<Workload>, Error> {
        let (deployments, pods) = match self.cache.snapshot(watch::ECHO_WAIT) {
            Some(copy) => copy,
            None => {
                let selector = self.manager_selector();
                let deployments = self.client.list_deployments(&selector)?.items;
                (deployments, self.client.list_pods(&selector)?.items)
            }
        };
        let (workloads, located) = observe(&deployments, &pods, &self.shape);
        if let Ok(mut cache) = self.located.lock() {
            *cache = located;
        }
        let listed = deployments
            .iter()
            .map(|d| (d.metadata.name.clone(), secrets::Listed::of(d)))
            .collect();
        *self.listed.lock().unwrap_or_else(PoisonError::into_inner) = listed;
        Ok(workloads)
    }

    /// # Guarantees
    /// With Secrets to make: a Secret name taken by another object leaves it
    /// untouched, deletes the Deployment just made and is a name-collision error.
    fn deploy(&self, spec: &Spec) -> Result<(), Error> {
        self.write_pull_secret()?;
        let body = manifest::deployment(spec, &self.shape, &self.image(spec))?;
        let wanted = self.wanted(spec);
        self.cache.writing(&spec.name);
        if wanted.is_empty() {
            return self.client.create_deployment(&body).map(drop);
        }
        let uid = self.client.create_deployment(&manifest::unfinished(body))?;
        let mut owned = BTreeMap::new();
        for w in &wanted {
            match self.create_owned(spec, w, &uid) {
                Ok(secret_uid) => {
                    owned.insert(w.name.clone(), secret_uid);
                }
                Err(e) => {
                    // Ours, made a moment ago; the Secrets made so far go with it.
                    if let Err(cleanup) = self.client.delete_deployment(&spec.name, false) {
                        log::warn!("{cleanup}");
                    }
                    return Err(e);
                }
            }
        }
        let finish = manifest::finish_patch(spec, &owned);
        self.cache.writing(&spec.name);
        self.client
            .patch_deployment("finish deployment", &spec.name, &finish)?;
        self.remember(&spec.name, uid, owned);
        Ok(())
    }

    /// # Guarantees
    /// A Deployment left unfinished by a cut deploy (no contract hash) is
    /// deleted with its Secrets (foreground) and deployed again next cycle.
    fn refresh(&self, spec: &Spec) -> Result<(), Error> {
        self.write_pull_secret()?;
        let listed = self.listed("refresh deployment", &spec.name)?;
        if !listed.finished {
            log::warn!(
                "deployment {} was left half-deployed; deleted with its Secrets, deployed again next cycle",
                spec.name
            );
            self.cache.writing(&spec.name);
            return self.client.delete_deployment(&spec.name, true).map(drop);
        }
        let owned = self.write_owned(spec, &listed)?;
        let full = manifest::deployment(spec, &self.shape, &self.image(spec))?;
        let patch = manifest::with_secrets_record(manifest::refresh_patch(full), &owned);
        self.cache.writing(&spec.name);
        let patched = self
            .client
            .patch_deployment("refresh deployment", &spec.name, &patch);
        if patched.is_ok() {
            self.remember(&spec.name, listed.uid, owned);
        }
        match patched {
            // Reported on the listed workload as a defect from now on, so the
            // planner replaces it; this attempt fails and backs off.
            Err(Error::Api {
                code: 422, message, ..
            }) if is_selector_conflict(&message) => Err(Error::Config {
                op: "refresh deployment",
                detail: format!(
                    "{}: its selector cannot take the new template labels ({message}); it is replaced",
                    spec.name
                ),
            }),
            r => r,
        }
    }

    fn start(&self, name: &str) -> Result<(), Error> {
        self.write_pull_secret()?;
        self.scale("start deployment", name, 1)
    }

    fn stop(&self, name: &str) -> Result<(), Error> {
        self.scale("stop deployment", name, 0)
    }

    /// The Deployment, and the Secrets recorded on it (the garbage collector
    /// deletes them too, through their owner reference); never a Secret of
    /// that name that the composer did not make.
    fn remove(&self, name: &str) -> Result<(), Error> {
        let listed = match self.listed("remove deployment", name) {
            Ok(l) => l,
            Err(Error::NotFound { .. }) => secrets::Listed::default(),
            Err(e) => return Err(e),
        };
        self.cache.writing(name);
        self.client.delete_deployment(name, false)?;
        (self.listed.lock().unwrap_or_else(PoisonError::into_inner)).remove(name);
        for (secret, uid) in &listed.secrets {
            self.client.delete_secret_with_uid(secret, uid)?;
        }
        // The previous composer's own Secrets for it: ours by the same rule as on refresh.
        for secret in [
            manifest::proxy_ca_secret_name(name),
            manifest::env_secret_name(name),
        ] {
            if listed.legacy(&secret) {
                self.client.delete_secret(&secret)?;
            }
        }
        Ok(())
    }

    fn logs(&self, name: &str, tail: u32) -> Result<Vec<String>, Error> {
        let cached = self.located.lock().ok().and_then(|c| c.get(name).cloned());
        let container = cached
            .as_ref()
            .map_or(name, |l| l.container.as_str())
            .to_string();
        if let Some(pod) = cached.and_then(|l| l.pod) {
            match self.read_log(&pod, &container, tail) {
                // The pod went away since the listing: look for its successor.
                Err(Error::Api { code: 404, .. }) => {}
                r => return r,
            }
        }
        match self.locate(name)? {
            Some(pod) => self.read_log(&pod, &container, tail),
            None => Ok(Vec::new()),
        }
    }

    /// Watches Deployments (on this thread) and pods (on a second one) into
    /// the copy `list()` reads, waking the loop at every change.
    fn follow(&self, wake: &(dyn Fn() + Sync), stop: &crossbeam_channel::Receiver<()>) -> bool {
        let selector = self.manager_selector();
        std::thread::scope(|s| {
            let pods = std::thread::Builder::new()
                .name("pod-watch".into())
                .stack_size(crate::engine::LOOP_STACK)
                .spawn_scoped(s, || {
                    watch::reflect::<wire::Pod>(&self.client, &selector, &self.cache, wake, stop);
                });
            if let Err(e) = pods {
                log::warn!("kubernetes: cannot start the pod watch ({e}); listing every cycle");
                return;
            }
            watch::reflect::<wire::Deployment>(&self.client, &selector, &self.cache, wake, stop);
        });
        true
    }
}

/// A 422 saying the selector cannot follow the template (§6.3 self-heal).
fn is_selector_conflict(message: &str) -> bool {
    message.contains("selector")
        && (message.contains("does not match template") || message.contains("field is immutable"))
}

/// Workloads and log locations from one Deployment listing and one pod listing.
fn observe(
    deployments: &[wire::Deployment],
    pods: &[wire::Pod],
    shape: &manifest::Shape,
) -> (Vec<Workload>, BTreeMap<String, Located>) {
    let mut located = BTreeMap::new();
    let workloads = deployments
        .iter()
        .map(|d| {
            let name = d.metadata.name.clone();
            let container = connector_container(d);
            let pod = newest_pod(&name, &d.spec.selector.match_labels, pods);
            let status = pod.and_then(|p| {
                let s = &p.status.container_statuses;
                s.iter().find(|c| c.name == container).or(s.first())
            });
            located.insert(
                name.clone(),
                Located {
                    pod: pod.map(|p| p.metadata.name.clone()),
                    container,
                },
            );
            let mut w = workload(d, status);
            w.defect = selector_defect(d, shape);
            w
        })
        .collect();
    (workloads, located)
}

/// A selector label the template made from this configuration would not carry
/// with the same value: the API server refuses such a Deployment's refresh
/// (the selector is immutable), so it has to be replaced (§6.3 self-heal).
fn selector_defect(d: &wire::Deployment, shape: &manifest::Shape) -> Option<String> {
    let labels = &d.metadata.labels;
    let template = manifest::template_labels(
        shape,
        labels.get(LABEL_CONNECTOR)?,
        labels.get(LABEL_PLATFORM).map_or("opencti", String::as_str),
    );
    let wrong: Vec<String> = d
        .spec
        .selector
        .match_labels
        .iter()
        .filter(|(k, v)| template.get(k.as_str()) != Some(v))
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    (!wrong.is_empty()).then(|| {
        format!(
            "its selector has {} that the new template would not carry",
            wrong.join(", ")
        )
    })
}

/// The connector container: the one named like the Deployment (ours and the
/// existing composer's), else the first.
fn connector_container(d: &wire::Deployment) -> String {
    let containers = &d.spec.template.spec.containers;
    containers
        .iter()
        .find(|c| c.name == d.metadata.name)
        .or(containers.first())
        .map_or_else(|| d.metadata.name.clone(), |c| c.name.clone())
}

/// Pod names of a Deployment are `{deployment}-{template hash}-{suffix}`.
fn is_pod_of(deployment: &str, pod: &str) -> bool {
    pod.strip_prefix(deployment)
        .and_then(|rest| rest.strip_prefix('-'))
        .is_some_and(|rest| {
            rest.matches('-').count() == 1 && !rest.starts_with('-') && !rest.ends_with('-')
        })
}

/// The newest pod of a Deployment that is not terminating (§6.3 "get", D16).
/// With a selector, the pod must carry its labels too.
fn newest_pod<'a>(
    name: &str,
    selector: &BTreeMap<String, String>,
    pods: &'a [wire::Pod],
) -> Option<&'a wire::Pod> {
    let created = |p: &wire::Pod| {
        p.metadata
            .creation_timestamp
            .as_deref()
            .and_then(crate::time::parse_rfc3339)
            .unwrap_or(SystemTime::UNIX_EPOCH)
    };
    pods.iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| is_pod_of(name, &p.metadata.name))
        .filter(|p| {
            selector
                .iter()
                .all(|(k, v)| p.metadata.labels.get(k) == Some(v))
        })
        .max_by_key(|p| created(p))
}

/// §5.7 (ours): Running when replicas > 0 and the connector container runs or
/// waits (back-off is started-but-unhealthy, D4); Restarting when replicas > 0
/// but no container is up (the cluster brings it up: no start is needed);
/// Stopped with zero replicas.
fn workload(d: &wire::Deployment, status: Option<&wire::ContainerStatus>) -> Workload {
    let labels = &d.metadata.labels;
    let replicas = d.spec.replicas.unwrap_or(1);
    let state = match status {
        _ if replicas <= 0 => WorkloadState::Stopped,
        Some(s) if s.state.running.is_some() || s.state.waiting.is_some() => WorkloadState::Running,
        _ => WorkloadState::Restarting,
    };
    let started_at = status.and_then(|s| {
        let current = s.state.running.as_ref().and_then(|r| r.started_at.clone());
        let ended = s
            .state
            .terminated
            .as_ref()
            .and_then(|t| t.started_at.clone());
        let last = s
            .last_state
            .terminated
            .as_ref()
            .and_then(|t| t.started_at.clone());
        current.or(ended).or(last)
    });
    let waiting_reason = status
        .and_then(|s| {
            let waiting = s.state.waiting.as_ref().and_then(|w| w.reason.clone());
            let ended = s.state.terminated.as_ref().and_then(|t| t.reason.clone());
            waiting.or(ended)
        })
        .filter(|r| replicas > 0 && STUCK_REASONS.contains(&r.as_str()));
    Workload {
        name: d.metadata.name.clone(),
        connector_id: labels.get(LABEL_CONNECTOR).cloned(),
        platform: labels.get(LABEL_PLATFORM).cloned(),
        hash: d.metadata.annotations.get(HASH_MARKER).cloned(),
        state,
        restart_count: status.map_or(0, |s| s.restart_count),
        started_at,
        waiting_reason,
        defect: None,
    }
}

/// The registry pull secret, when username, password and server are set (the
/// loader refuses credentials without a server for Kubernetes).
fn pull_secret(registry: Option<&crate::config::Registry>) -> Option<PullSecret> {
    let r = registry?;
    let user = r.username.as_deref().filter(|u| !u.is_empty())?;
    let password = r.password.as_ref().filter(|p| !p.is_empty())?;
    let server = r.server.as_deref().filter(|s| !s.is_empty())?;
    Some(PullSecret {
        name: manifest::pull_secret_name(server),
        server: server.to_string(),
        username: user.to_string(),
        password: password.clone(),
        email: r.email.clone().filter(|e| !e.is_empty()),
    })
}

/// The CA bundle delivered to connectors in a Secret: the same bundle as the
/// Docker orchestrators copy into containers (§5.5.2, D8).
fn proxy_ca_bundle(p: &PlatformSettings) -> Result<Option<String>, Error> {
    Ok(docker::platform_proxy_ca(p)?.map(|b| String::from_utf8_lossy(&b).into_owned()))
}

#[cfg(test)]
mod tests;
