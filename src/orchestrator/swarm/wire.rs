//! Docker Engine API Swarm bodies (services, tasks, configs), hand-written,
//! holding only the fields we use (Engine API 1.41,
//! https://docs.docker.com/engine/api/v1.41/#tag/Service). Responses tolerate
//! missing, `null` and unknown fields; types holding env values have no `Debug`
//! that prints them. The mapping of `{p}.daemon.swarm.*` to `ServiceSpec` lives
//! here (CONTRACT §6.4).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::config::SwarmOptions;
use crate::orchestrator::docker::wire::{Ulimit, null_default, ulimits};

/// One entry of `GET /services`.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub(crate) struct Service {
    #[serde(rename = "ID", deserialize_with = "null_default")]
    pub id: String,
    #[serde(deserialize_with = "null_default")]
    pub spec: ServiceSpecView,
}

/// `Service.Spec`, the part `list()` reads.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub(crate) struct ServiceSpecView {
    #[serde(deserialize_with = "null_default")]
    pub name: String,
    #[serde(deserialize_with = "null_default")]
    pub labels: BTreeMap<String, String>,
    #[serde(deserialize_with = "null_default")]
    pub mode: ServiceMode,
    #[serde(deserialize_with = "null_default")]
    pub task_template: TaskTemplateView,
}

/// `ServiceSpec.Mode`: `Replicated`, else global (not ours).
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub(crate) struct ServiceMode {
    pub replicated: Option<Replicated>,
}

/// `ServiceMode.Replicated` (also sent).
#[derive(Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(default, rename_all = "PascalCase")]
pub(crate) struct Replicated {
    pub replicas: u64,
}

/// `ServiceSpec.TaskTemplate`, the part `list()` reads.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub(crate) struct TaskTemplateView {
    #[serde(deserialize_with = "null_default")]
    pub container_spec: ContainerSpecView,
}

/// `TaskTemplate.ContainerSpec`, the part `list()` reads.
#[derive(Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub(crate) struct ContainerSpecView {
    /// `KEY=value` entries; values may be decrypted secrets.
    #[serde(deserialize_with = "null_default")]
    pub env: Vec<String>,
}

impl std::fmt::Debug for ContainerSpecView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ContainerSpec {{ env: [{} entries] }}", self.env.len())
    }
}

/// `GET /services/{id}`: the spec is kept whole, so that an update sends back
/// every field, including those we do not model. Holds env values: no `Debug`.
#[derive(Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub(crate) struct ServiceInspect {
    #[serde(rename = "ID", deserialize_with = "null_default")]
    pub id: String,
    #[serde(deserialize_with = "null_default")]
    pub version: ObjectVersion,
    pub spec: serde_json::Value,
}

/// `Version` of a swarm object: updates name the one they replace.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub(crate) struct ObjectVersion {
    pub index: u64,
}

/// One entry of `GET /tasks`.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub(crate) struct Task {
    #[serde(rename = "ServiceID", deserialize_with = "null_default")]
    pub service_id: String,
    #[serde(deserialize_with = "null_default")]
    pub status: TaskStatus,
}

/// `Task.Status`.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub(crate) struct TaskStatus {
    /// RFC 3339 time of the last state change.
    #[serde(deserialize_with = "null_default")]
    pub timestamp: String,
    /// `new` … `running`, `complete`, `shutdown`, `failed`, `rejected`, `orphaned`, …
    #[serde(deserialize_with = "null_default")]
    pub state: String,
}

/// `POST /services/create` and `POST /configs/create` answers; `GET /configs/{id}`.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub(crate) struct IdResponse {
    #[serde(rename = "ID", deserialize_with = "null_default")]
    pub id: String,
    #[serde(deserialize_with = "null_default")]
    pub warnings: Vec<String>,
}

/// `POST /configs/create` body.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct ConfigSpec<'a> {
    pub name: &'a str,
    pub labels: BTreeMap<&'a str, &'a str>,
    /// Base64 of the content.
    pub data: String,
}

/// A Docker config mounted as a file in the task's container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ConfigFile<'a> {
    pub id: &'a str,
    pub name: &'a str,
    /// Absolute path in the container.
    pub target: &'a str,
}

/// `POST /services/create` / `update` body. Holds exposed env values: no `Debug`.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct ServiceSpec<'a> {
    pub name: &'a str,
    pub labels: BTreeMap<&'a str, &'a str>,
    pub task_template: TaskTemplate<'a>,
    pub mode: Mode,
}

/// `ServiceSpec.Mode` as sent.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct Mode {
    pub replicated: Replicated,
}

/// `ServiceSpec.TaskTemplate` as sent: only configured fields.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct TaskTemplate<'a> {
    pub container_spec: ContainerSpec<'a>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub networks: Vec<NetworkAttachment<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resources: Option<Resources>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub placement: Option<Placement<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restart_policy: Option<RestartPolicy<'a>>,
}

/// `TaskTemplate.ContainerSpec` as sent.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct ContainerSpec<'a> {
    pub image: &'a str,
    pub env: Vec<String>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    pub hosts: &'a [String],
    #[serde(rename = "DNSConfig", skip_serializing_if = "Option::is_none")]
    pub dns_config: Option<DnsConfig<'a>>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    pub capability_add: &'a [String],
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    pub capability_drop: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sysctls: Option<&'a BTreeMap<String, String>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ulimits: Vec<Ulimit<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hostname: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub read_only: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub init: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop_grace_period: Option<i64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub configs: Vec<ConfigReference<'a>>,
}

/// `ContainerSpec.DNSConfig`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct DnsConfig<'a> {
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    pub nameservers: &'a [String],
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    pub search: &'a [String],
}

/// `ContainerSpec.Configs[]`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct ConfigReference<'a> {
    pub file: ConfigTarget<'a>,
    #[serde(rename = "ConfigID")]
    pub config_id: &'a str,
    pub config_name: &'a str,
}

/// `ConfigReference.File`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct ConfigTarget<'a> {
    pub name: &'a str,
    #[serde(rename = "UID")]
    pub uid: &'a str,
    #[serde(rename = "GID")]
    pub gid: &'a str,
    pub mode: u32,
}

/// `TaskTemplate.Networks[]`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct NetworkAttachment<'a> {
    pub target: &'a str,
}

/// `TaskTemplate.Resources`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct Resources {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limits: Option<ResourceAmount>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reservations: Option<ResourceAmount>,
}

/// `Resources.Limits` / `Resources.Reservations`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct ResourceAmount {
    #[serde(rename = "NanoCPUs", skip_serializing_if = "Option::is_none")]
    pub nano_cpus: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_bytes: Option<i64>,
}

impl ResourceAmount {
    fn of(nano_cpus: Option<i64>, memory_bytes: Option<i64>) -> Option<ResourceAmount> {
        (nano_cpus.is_some() || memory_bytes.is_some()).then_some(ResourceAmount {
            nano_cpus,
            memory_bytes,
        })
    }
}

/// `TaskTemplate.Placement`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct Placement<'a> {
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    pub constraints: &'a [String],
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub preferences: Vec<PlacementPreference<'a>>,
}

/// `Placement.Preferences[]`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct PlacementPreference<'a> {
    pub spread: Spread<'a>,
}

/// `PlacementPreference.Spread`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct Spread<'a> {
    pub spread_descriptor: &'a str,
}

/// `TaskTemplate.RestartPolicy`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct RestartPolicy<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub condition: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delay: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<i64>,
}

impl<'a> TaskTemplate<'a> {
    /// The §6.4 options that are set, around `container`.
    pub(crate) fn from_options(opts: &'a SwarmOptions, container: ContainerSpec<'a>) -> Self {
        let r = &opts.resources;
        let limits = ResourceAmount::of(r.cpu_limit, r.memory_limit);
        let reservations = ResourceAmount::of(r.cpu_reservation, r.memory_reservation);
        let preferences: Vec<PlacementPreference<'a>> = opts
            .placement_preferences
            .iter()
            .map(|d| PlacementPreference {
                spread: Spread {
                    spread_descriptor: d,
                },
            })
            .collect();
        let restart = (opts.restart_condition.is_some()
            || opts.restart_delay.is_some()
            || opts.restart_max_attempts.is_some())
        .then_some(RestartPolicy {
            condition: opts.restart_condition.as_deref(),
            delay: opts.restart_delay,
            max_attempts: opts.restart_max_attempts,
        });
        TaskTemplate {
            container_spec: container,
            networks: opts
                .network
                .as_deref()
                .map(|target| NetworkAttachment { target })
                .into_iter()
                .collect(),
            resources: (limits.is_some() || reservations.is_some()).then_some(Resources {
                limits,
                reservations,
            }),
            placement: (!opts.placement_constraints.is_empty() || !preferences.is_empty())
                .then_some(Placement {
                    constraints: &opts.placement_constraints,
                    preferences,
                }),
            restart_policy: restart,
        }
    }
}

impl<'a> ContainerSpec<'a> {
    /// `image` and `env` with the §6.4 container options that are set, and
    /// the proxy CA config when there is one (§5.5.2).
    pub(crate) fn from_options(
        opts: &'a SwarmOptions,
        image: &'a str,
        env: Vec<String>,
        ca: Option<&ConfigFile<'a>>,
    ) -> Self {
        let dns = !opts.dns.is_empty() || !opts.dns_search.is_empty();
        ContainerSpec {
            image,
            env,
            hosts: &opts.extra_hosts,
            dns_config: dns.then_some(DnsConfig {
                nameservers: &opts.dns,
                search: &opts.dns_search,
            }),
            capability_add: &opts.cap_add,
            capability_drop: &opts.cap_drop,
            sysctls: Some(&opts.sysctls).filter(|m| !m.is_empty()),
            ulimits: ulimits(&opts.ulimits),
            hostname: opts.hostname.as_deref(),
            user: opts.user.as_deref(),
            read_only: opts.read_only,
            init: opts.init,
            stop_grace_period: opts.stop_grace_period,
            configs: ca
                .map(|c| ConfigReference {
                    file: ConfigTarget {
                        name: c.target,
                        uid: "0",
                        gid: "0",
                        mode: 0o444,
                    },
                    config_id: c.id,
                    config_name: c.name,
                })
                .into_iter()
                .collect(),
        }
    }
}
