//! Docker Engine API request and response bodies, hand-written, holding only
//! the fields we use (Engine API 1.41, https://docs.docker.com/engine/api/v1.41/).
//! Responses tolerate missing and `null` fields and unknown keys; request types
//! that carry env values or registry passwords do not derive `Debug`.
//! The mapping of `{p}.daemon.docker.*` to `HostConfig` lives here (CONTRACT §6.1).

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};

use crate::config::DockerOptions;

/// Reads `null` as the type's default (the engine sends `"Labels": null`).
pub(crate) fn null_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// `GET /version`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct SystemVersion {
    #[serde(rename = "ApiVersion", deserialize_with = "null_default")]
    pub api_version: String,
}

/// The body of every engine error status.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct ErrorResponse {
    #[serde(deserialize_with = "null_default")]
    pub message: String,
}

/// One entry of `GET /containers/json`.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub(crate) struct ContainerSummary {
    #[serde(deserialize_with = "null_default")]
    pub id: String,
    #[serde(deserialize_with = "null_default")]
    pub names: Vec<String>,
    #[serde(deserialize_with = "null_default")]
    pub labels: BTreeMap<String, String>,
    /// `created`, `running`, `restarting`, `exited`, `paused`, `dead`, `removing`.
    #[serde(deserialize_with = "null_default")]
    pub state: String,
    /// Human text: `Up 5 seconds`, `Restarting (1) 2 seconds ago`, `Exited (3) …`.
    #[serde(deserialize_with = "null_default")]
    pub status: String,
}

/// `GET /containers/{id}/json`.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub(crate) struct ContainerInspect {
    #[serde(deserialize_with = "null_default")]
    pub id: String,
    #[serde(deserialize_with = "null_default")]
    pub name: String,
    pub restart_count: i64,
    #[serde(deserialize_with = "null_default")]
    pub state: ContainerState,
    #[serde(deserialize_with = "null_default")]
    pub config: ContainerConfig,
}

/// `ContainerInspect.State`.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub(crate) struct ContainerState {
    #[serde(deserialize_with = "null_default")]
    pub status: String,
    /// RFC 3339; `0001-01-01T00:00:00Z` when never started.
    #[serde(deserialize_with = "null_default")]
    pub started_at: String,
}

/// `ContainerInspect.Config`.
#[derive(Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub(crate) struct ContainerConfig {
    /// `KEY=value` entries; values may be decrypted secrets.
    #[serde(deserialize_with = "null_default")]
    pub env: Vec<String>,
    #[serde(deserialize_with = "null_default")]
    pub labels: BTreeMap<String, String>,
    pub tty: bool,
}

impl std::fmt::Debug for ContainerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ContainerConfig")
            .field("env", &format_args!("[{} entries]", self.env.len()))
            .field("labels", &self.labels)
            .field("tty", &self.tty)
            .finish()
    }
}

/// `POST /containers/create` body. Holds exposed env values: no `Debug`.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct CreateContainer<'a> {
    pub image: &'a str,
    pub env: Vec<String>,
    pub labels: BTreeMap<&'a str, &'a str>,
    pub host_config: HostConfig<'a>,
}

/// `POST /containers/create` answer.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub(crate) struct CreateResponse {
    #[serde(deserialize_with = "null_default")]
    pub id: String,
    #[serde(deserialize_with = "null_default")]
    pub warnings: Vec<String>,
}

/// `CreateContainer.HostConfig`: only configured fields are sent.
#[derive(Debug, Default, Serialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct HostConfig<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network_mode: Option<&'a str>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    pub extra_hosts: &'a [String],
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    pub dns: &'a [String],
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    pub dns_search: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    pub privileged: Option<bool>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    pub cap_add: &'a [String],
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    pub cap_drop: &'a [String],
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    pub security_opt: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    pub userns_mode: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid_mode: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ipc_mode: Option<&'a str>,
    #[serde(rename = "UTSMode", skip_serializing_if = "Option::is_none")]
    pub uts_mode: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runtime: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shm_size: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sysctls: Option<&'a BTreeMap<String, String>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ulimits: Vec<Ulimit<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nano_cpus: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restart_policy: Option<RestartPolicy>,
}

/// `HostConfig.Ulimits[]`.
#[derive(Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct Ulimit<'a> {
    pub name: &'a str,
    pub soft: i64,
    pub hard: i64,
}

/// The configured ulimits as the engine takes them (`HostConfig.Ulimits`,
/// Swarm's `ContainerSpec.Ulimits`): entries missing one of name, soft, hard
/// are dropped (§6.1).
pub(crate) fn ulimits(configured: &[crate::config::Ulimit]) -> Vec<Ulimit<'_>> {
    configured
        .iter()
        .filter_map(|u| {
            Some(Ulimit {
                name: u.name.as_deref()?,
                soft: u.soft?,
                hard: u.hard?,
            })
        })
        .collect()
}

/// `HostConfig.RestartPolicy`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct RestartPolicy {
    /// `no`, `on-failure`, `unless-stopped`, `always`.
    pub name: &'static str,
    pub maximum_retry_count: i64,
}

impl From<crate::config::RestartPolicy> for RestartPolicy {
    fn from(policy: crate::config::RestartPolicy) -> Self {
        use crate::config::RestartPolicy as Configured;
        let (name, maximum_retry_count) = match policy {
            Configured::No => ("no", 0),
            Configured::Always => ("always", 0),
            Configured::UnlessStopped => ("unless-stopped", 0),
            Configured::OnFailure(n) => ("on-failure", n),
        };
        RestartPolicy {
            name,
            maximum_retry_count,
        }
    }
}

impl<'a> HostConfig<'a> {
    /// The §6.1 options (plus ours: memory, nano_cpus) that are set, and the restart policy.
    pub(crate) fn from_options(opts: &'a DockerOptions, restart: RestartPolicy) -> Self {
        HostConfig {
            network_mode: opts.network_mode.as_deref(),
            extra_hosts: &opts.extra_hosts,
            dns: &opts.dns,
            dns_search: &opts.dns_search,
            privileged: opts.privileged,
            cap_add: &opts.cap_add,
            cap_drop: &opts.cap_drop,
            security_opt: &opts.security_opt,
            userns_mode: opts.userns_mode.as_deref(),
            pid_mode: opts.pid_mode.as_deref(),
            ipc_mode: opts.ipc_mode.as_deref(),
            uts_mode: opts.uts_mode.as_deref(),
            runtime: opts.runtime.as_deref(),
            shm_size: opts.shm_size,
            sysctls: Some(&opts.sysctls).filter(|m| !m.is_empty()),
            ulimits: ulimits(&opts.ulimits),
            memory: opts.memory,
            nano_cpus: opts.nano_cpus,
            restart_policy: Some(restart),
        }
    }
}

/// One JSON line of a pull progress stream; an `error` inside a 200 stream is a failure.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct ProgressMessage {
    pub error: Option<String>,
    #[serde(rename = "errorDetail")]
    pub error_detail: Option<ErrorDetail>,
}

/// `ProgressMessage.errorDetail`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct ErrorDetail {
    pub message: Option<String>,
}

/// `GET /images/{name}/json`: only whether it exists matters.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub(crate) struct ImageInspect {
    #[serde(deserialize_with = "null_default")]
    pub id: String,
}

/// The JSON inside `X-Registry-Auth`. Holds the password: no `Debug`.
#[derive(Serialize)]
pub(crate) struct RegistryAuth<'a> {
    pub username: &'a str,
    pub password: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<&'a str>,
    pub serveraddress: &'a str,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Ulimit as UlimitOption;

    const LIST: &str = include_str!("../../../tests/fixtures/docker/containers-list.json");
    const INSPECT: &str = include_str!("../../../tests/fixtures/docker/container-inspect.json");
    const VERSION: &str = include_str!("../../../tests/fixtures/docker/version.json");

    #[test]
    fn a_real_container_listing_deserializes() {
        let list: Vec<ContainerSummary> = serde_json::from_str(LIST).unwrap();
        assert_eq!(list.len(), 2);
        let ticker = list
            .iter()
            .find(|c| c.names == ["/fixture-ticker"])
            .unwrap();
        assert_eq!(ticker.id.len(), 64);
        assert_eq!(ticker.state, "running");
        assert!(ticker.status.starts_with("Up "), "{}", ticker.status);
        assert_eq!(ticker.labels["opencti-connector-id"], "c-1");
        assert_eq!(ticker.labels["opencti-platform"], "opencti");
    }

    #[test]
    fn a_real_container_inspect_deserializes() {
        let c: ContainerInspect = serde_json::from_str(INSPECT).unwrap();
        assert_eq!(c.name, "/fixture-ticker");
        assert_eq!(c.state.status, "running");
        assert!(
            c.state.started_at.starts_with("20"),
            "{}",
            c.state.started_at
        );
        assert_eq!(c.restart_count, 0);
        assert!(!c.config.tty);
        assert!(
            c.config
                .env
                .contains(&"OPENCTI_CONFIG_HASH=h1=2".to_string())
        );
        assert_eq!(c.config.labels["opencti-manager"], "fixture-manager");
        // Env values never show in Debug output.
        assert!(!format!("{c:?}").contains("h1=2"));
    }

    #[test]
    fn the_version_answer_deserializes() {
        let v: SystemVersion = serde_json::from_str(VERSION).unwrap();
        assert_eq!(v.api_version, "1.41");
    }

    #[test]
    fn null_and_missing_fields_read_as_empty() {
        let c: ContainerSummary =
            serde_json::from_str(r#"{"Id":"x","Names":null,"Labels":null,"Extra":{"a":1}}"#)
                .unwrap();
        assert!(c.names.is_empty() && c.labels.is_empty() && c.state.is_empty());
        let i: ContainerInspect =
            serde_json::from_str(r#"{"Id":"x","State":null,"Config":{"Env":null}}"#).unwrap();
        assert!(i.config.env.is_empty() && i.state.started_at.is_empty());
        let e: ErrorResponse = serde_json::from_str(r#"{"message":null}"#).unwrap();
        assert!(e.message.is_empty());
    }

    fn restart() -> RestartPolicy {
        RestartPolicy {
            name: "unless-stopped",
            maximum_retry_count: 0,
        }
    }

    #[test]
    fn unset_options_send_only_the_restart_policy() {
        let opts = DockerOptions::default();
        let json = serde_json::to_value(HostConfig::from_options(&opts, restart())).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"RestartPolicy": {"Name": "unless-stopped", "MaximumRetryCount": 0}})
        );
    }

    #[test]
    fn every_option_maps_to_its_host_config_field() {
        let opts = DockerOptions {
            network_mode: Some("host".into()),
            extra_hosts: vec!["opencti:127.0.0.1".into()],
            dns: vec!["127.0.0.53".into()],
            dns_search: vec!["corp".into()],
            privileged: Some(false),
            cap_add: vec!["NET_ADMIN".into()],
            cap_drop: vec!["ALL".into()],
            security_opt: vec!["no-new-privileges".into()],
            userns_mode: Some("host".into()),
            pid_mode: Some("host".into()),
            ipc_mode: Some("private".into()),
            uts_mode: Some("host".into()),
            runtime: Some("runc".into()),
            shm_size: Some(67108864),
            sysctls: [("net.core.somaxconn".to_string(), "1024".to_string())].into(),
            ulimits: vec![
                UlimitOption {
                    name: Some("nofile".into()),
                    soft: Some(1024),
                    hard: Some(2048),
                },
                UlimitOption {
                    name: Some("nproc".into()),
                    soft: None,
                    hard: Some(10),
                },
            ],
            memory: Some(536870912),
            nano_cpus: Some(500000000),
            pull_policy: crate::orchestrator::docker::PullPolicy::Never,
            restart_policy: crate::config::RestartPolicy::No,
            host: Some("unix:///x".parse().unwrap()),
        };
        let policy = RestartPolicy {
            name: "on-failure",
            maximum_retry_count: 5,
        };
        let json = serde_json::to_value(HostConfig::from_options(&opts, policy)).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "NetworkMode": "host",
                "ExtraHosts": ["opencti:127.0.0.1"],
                "Dns": ["127.0.0.53"],
                "DnsSearch": ["corp"],
                "Privileged": false,
                "CapAdd": ["NET_ADMIN"],
                "CapDrop": ["ALL"],
                "SecurityOpt": ["no-new-privileges"],
                "UsernsMode": "host",
                "PidMode": "host",
                "IpcMode": "private",
                "UTSMode": "host",
                "Runtime": "runc",
                "ShmSize": 67108864,
                "Sysctls": {"net.core.somaxconn": "1024"},
                "Ulimits": [{"Name": "nofile", "Soft": 1024, "Hard": 2048}],
                "Memory": 536870912,
                "NanoCpus": 500000000,
                "RestartPolicy": {"Name": "on-failure", "MaximumRetryCount": 5}
            })
        );
    }

    #[test]
    fn the_create_body_has_the_engine_field_names() {
        let opts = DockerOptions::default();
        let body = CreateContainer {
            image: "xtm-test/ticker:1",
            env: vec!["A=1".into(), "B=x=y".into()],
            labels: [("opencti-manager", "m")].into(),
            host_config: HostConfig::from_options(&opts, restart()),
        };
        assert_eq!(
            serde_json::to_value(&body).unwrap(),
            serde_json::json!({
                "Image": "xtm-test/ticker:1",
                "Env": ["A=1", "B=x=y"],
                "Labels": {"opencti-manager": "m"},
                "HostConfig": {"RestartPolicy": {"Name": "unless-stopped", "MaximumRetryCount": 0}}
            })
        );
    }

    #[test]
    fn the_registry_auth_json_omits_a_missing_email() {
        let auth = RegistryAuth {
            username: "ci",
            password: "p",
            email: None,
            serveraddress: "127.0.0.1:5000",
        };
        assert_eq!(
            serde_json::to_string(&auth).unwrap(),
            r#"{"username":"ci","password":"p","serveraddress":"127.0.0.1:5000"}"#
        );
    }
}

/// One line of `GET /events`: what happened to which object.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct Event {
    #[serde(rename = "Type", deserialize_with = "null_default")]
    pub kind: String,
    #[serde(rename = "Action", deserialize_with = "null_default")]
    pub action: String,
    #[serde(rename = "Actor", deserialize_with = "null_default")]
    pub actor: EventActor,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct EventActor {
    #[serde(rename = "ID", deserialize_with = "null_default")]
    pub id: String,
}
