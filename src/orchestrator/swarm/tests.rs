//! Unit tests of the Swarm orchestrator's pure parts: services and tasks
//! (answers captured from dockerd 20.10, API 1.41, trimmed) read as workloads,
//! and the ServiceSpec built from `{p}.daemon.swarm`.

use serde_json::json;

use super::wire::{ConfigFile, ContainerSpec, Mode, Replicated, ServiceSpec, TaskTemplate};
use super::*;
use crate::config::{SwarmResources, Ulimit};

/// `GET /services?filters=…`: one running connector, one crash-looping, one stopped.
const SERVICES: &str = r#"[
  {"ID": "svc-run", "Version": {"Index": 14},
   "Spec": {"Name": "ticker-a", "Labels": {"opencti-connector-id": "a", "opencti-manager": "m", "opencti-platform": "opencti"},
            "TaskTemplate": {"ContainerSpec": {"Image": "xtm-test/ticker:1", "Env": ["URL=http://x/?a=b", "OPENCTI_CONFIG_HASH=h=1"], "Isolation": "default"},
                             "Networks": [{"Target": "pnwy1c1vwuk9voyef80ij2270"}], "ForceUpdate": 0, "Runtime": "container"},
            "Mode": {"Replicated": {"Replicas": 1}}},
   "Endpoint": {"Spec": {}}},
  {"ID": "svc-crash", "Version": {"Index": 30},
   "Spec": {"Name": "crasher-b", "Labels": {"opencti-connector-id": "b", "opencti-manager": "m"},
            "TaskTemplate": {"ContainerSpec": {"Image": "xtm-test/crasher:1", "Env": null}},
            "Mode": {"Replicated": {"Replicas": 1}}}},
  {"ID": "svc-stopped", "Version": {"Index": 40},
   "Spec": {"Name": "ticker-c", "Labels": {"opencti-manager": "m"},
            "TaskTemplate": {"ContainerSpec": {"Image": "xtm-test/ticker:1", "Env": ["OPENCTI_CONFIG_HASH=h3"]}},
            "Mode": {"Replicated": {"Replicas": 0}}}},
  {"ID": "", "Spec": {"Name": "broken"}}
]"#;

/// `GET /tasks?filters=…` for the services above.
const TASKS: &str = r#"[
  {"ID": "t1", "ServiceID": "svc-run", "Slot": 1, "Labels": {},
   "Status": {"Timestamp": "2026-11-28T14:54:07.879683178Z", "State": "running", "Message": "started",
              "ContainerStatus": {"ContainerID": "f5cb", "PID": 14100, "ExitCode": 0}, "PortStatus": {}},
   "DesiredState": "running"},
  {"ID": "t0", "ServiceID": "svc-run", "Slot": 1,
   "Status": {"Timestamp": "2026-11-28T14:50:01Z", "State": "failed", "Err": "task: non-zero exit (3)"},
   "DesiredState": "shutdown"},
  {"ID": "c1", "ServiceID": "svc-crash", "Status": {"Timestamp": "2026-11-28T14:54:36.574572968Z", "State": "failed", "Err": "task: non-zero exit (3)"}, "DesiredState": "shutdown"},
  {"ID": "c2", "ServiceID": "svc-crash", "Status": {"Timestamp": "2026-11-28T14:54:39.058603605Z", "State": "failed"}, "DesiredState": "shutdown"},
  {"ID": "c4", "ServiceID": "svc-crash", "Status": {"Timestamp": "2026-11-28T14:54:44.196303274Z", "State": "failed"}, "DesiredState": "shutdown"},
  {"ID": "c3", "ServiceID": "svc-crash", "Status": {"Timestamp": "2026-11-28T14:54:41.583363324Z", "State": "failed"}, "DesiredState": "shutdown"},
  {"ID": "c5", "ServiceID": "svc-crash", "Status": {"Timestamp": "2026-11-28T14:54:44.422976572Z", "State": "ready"}, "DesiredState": "ready"},
  {"ID": "s1", "ServiceID": "svc-stopped", "Status": {"Timestamp": "2026-11-28T15:00:00.5Z", "State": "shutdown"}, "DesiredState": "shutdown"}
]"#;

fn workloads() -> Vec<Workload> {
    let services: Vec<wire::Service> = serde_json::from_str(SERVICES).unwrap();
    let tasks: Vec<wire::Task> = serde_json::from_str(TASKS).unwrap();
    services
        .into_iter()
        .filter_map(|s| workload_of(s, &tasks))
        .collect()
}

#[test]
fn a_service_with_a_running_task_is_running_since_that_task_started() {
    let w = &workloads()[0];
    assert_eq!(w.name, "ticker-a");
    assert_eq!(w.connector_id.as_deref(), Some("a"));
    assert_eq!(w.platform.as_deref(), Some("opencti"));
    assert_eq!(w.hash.as_deref(), Some("h=1"), "split at the first '='");
    assert_eq!(w.state, WorkloadState::Running);
    assert_eq!(w.restart_count, 1, "the failed task of its history");
    assert_eq!(
        w.started_at.as_deref(),
        Some("2026-11-28T14:54:07.879683178Z")
    );
}

#[test]
fn d19_a_crash_looping_service_counts_its_failed_tasks() {
    let w = &workloads()[1];
    assert_eq!(
        w.state,
        WorkloadState::Restarting,
        "replicas asked, none running"
    );
    assert_eq!(w.restart_count, 4);
    assert_eq!(w.hash, None, "no env: a missing marker");
    assert_eq!(w.platform, None, "legacy: no platform label");
    // The newest ended run, by time rather than by list order.
    assert_eq!(
        w.started_at.as_deref(),
        Some("2026-11-28T14:54:44.196303274Z")
    );
    let now = crate::time::parse_rfc3339("2026-11-28T14:55:00Z").unwrap();
    assert!(crate::reconcile::is_in_reboot_loop(w, now));
}

#[test]
fn a_service_without_replicas_is_stopped_and_one_without_id_is_skipped() {
    let all = workloads();
    assert_eq!(all.len(), 3, "{all:?}");
    let w = &all[2];
    assert_eq!(w.state, WorkloadState::Stopped);
    assert_eq!(w.connector_id, None);
    assert_eq!(w.restart_count, 0);
}

fn options() -> SwarmOptions {
    SwarmOptions {
        network: Some("host".into()),
        extra_hosts: vec!["opencti:127.0.0.1".into()],
        dns: vec!["127.0.0.53".into()],
        dns_search: vec!["corp".into()],
        cap_add: vec!["NET_ADMIN".into()],
        cap_drop: vec!["MKNOD".into()],
        sysctls: [("net.core.somaxconn".to_string(), "1024".to_string())].into(),
        ulimits: vec![
            Ulimit {
                name: Some("nofile".into()),
                soft: Some(1024),
                hard: Some(2048),
            },
            Ulimit {
                name: Some("nproc".into()),
                soft: None,
                hard: Some(1),
            },
        ],
        hostname: Some("conn".into()),
        user: Some("1000:1000".into()),
        read_only: Some(true),
        init: Some(true),
        stop_grace_period: Some(10_000_000_000),
        resources: SwarmResources {
            cpu_limit: Some(1_000_000_000),
            memory_limit: Some(536_870_912),
            cpu_reservation: None,
            memory_reservation: Some(268_435_456),
        },
        placement_constraints: vec!["node.role==manager".into()],
        placement_preferences: vec!["node.labels.zone".into()],
        restart_condition: Some("on-failure".into()),
        restart_delay: Some(5_000_000_000),
        restart_max_attempts: Some(3),
        pull_policy: PullPolicy::IfNotPresent,
    }
}

fn body(opts: &SwarmOptions, ca: Option<&ConfigFile<'_>>) -> serde_json::Value {
    let spec = ServiceSpec {
        name: "conn-a",
        labels: [("opencti-manager", "m")].into(),
        task_template: TaskTemplate::from_options(
            opts,
            ContainerSpec::from_options(opts, "img:1", vec!["A=1".into()], ca),
        ),
        mode: Mode {
            replicated: Replicated { replicas: 0 },
        },
    };
    serde_json::to_value(&spec).unwrap()
}

#[test]
fn without_options_the_spec_has_only_image_env_labels_and_replicas() {
    assert_eq!(
        body(&SwarmOptions::default(), None),
        json!({
            "Name": "conn-a",
            "Labels": {"opencti-manager": "m"},
            "TaskTemplate": {"ContainerSpec": {"Image": "img:1", "Env": ["A=1"]}},
            "Mode": {"Replicated": {"Replicas": 0}}
        })
    );
}

#[test]
fn every_swarm_option_maps_to_its_service_spec_field() {
    let ca = ConfigFile {
        id: "cfg-id",
        name: "xtm-proxy-ca-0011",
        target: PROXY_CA_PATH,
    };
    assert_eq!(
        body(&options(), Some(&ca))["TaskTemplate"],
        json!({
            "ContainerSpec": {
                "Image": "img:1",
                "Env": ["A=1"],
                "Hosts": ["opencti:127.0.0.1"],
                "DNSConfig": {"Nameservers": ["127.0.0.53"], "Search": ["corp"]},
                "CapabilityAdd": ["NET_ADMIN"],
                "CapabilityDrop": ["MKNOD"],
                "Sysctls": {"net.core.somaxconn": "1024"},
                "Ulimits": [{"Name": "nofile", "Soft": 1024, "Hard": 2048}],
                "Hostname": "conn",
                "User": "1000:1000",
                "ReadOnly": true,
                "Init": true,
                "StopGracePeriod": 10_000_000_000_i64,
                "Configs": [{
                    "File": {"Name": "/etc/ssl/certs/xtm-proxy-ca.crt", "UID": "0", "GID": "0", "Mode": 292},
                    "ConfigID": "cfg-id",
                    "ConfigName": "xtm-proxy-ca-0011"
                }]
            },
            "Networks": [{"Target": "host"}],
            "Resources": {
                "Limits": {"NanoCPUs": 1_000_000_000, "MemoryBytes": 536_870_912},
                "Reservations": {"MemoryBytes": 268_435_456}
            },
            "Placement": {
                "Constraints": ["node.role==manager"],
                "Preferences": [{"Spread": {"SpreadDescriptor": "node.labels.zone"}}]
            },
            "RestartPolicy": {"Condition": "on-failure", "Delay": 5_000_000_000_i64, "MaxAttempts": 3}
        })
    );
}

#[test]
fn the_swarm_section_is_read_from_the_loaded_value() {
    let mut s = Settings::default();
    s.opencti.daemon.swarm = Some(
        serde_json::from_value(json!({
            "network": "host",
            "resources": {"memory_limit": 1024},
            "pull_policy": "never"
        }))
        .unwrap(),
    );
    let swarm = Swarm::new(&s, PlatformKind::OpenCti).unwrap();
    assert_eq!(swarm.options.network.as_deref(), Some("host"));
    assert_eq!(swarm.options.resources.memory_limit, Some(1024));
    assert_eq!(swarm.pull_policy, PullPolicy::Never);
    // Absent: all defaults (the existing composer panicked).
    s.opencti.daemon.swarm = None;
    let swarm = Swarm::new(&s, PlatformKind::OpenCti).unwrap();
    assert_eq!(swarm.options, SwarmOptions::default());
}
