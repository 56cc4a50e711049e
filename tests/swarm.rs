//! The Swarm orchestrator against a real single-node swarm on the test dockerd
//! (`scripts/swarm.sh init`, run here when the node is not in a swarm yet) and
//! the real authenticated registry. Start them first:
//! `scripts/start-dockerd.sh && scripts/start-registry.sh && scripts/make-test-images.sh`.
//! Services use the `host` network (no overlay here). Never skips; each test has
//! its own manager id and removes its services and configs.

mod common;

use std::sync::Once;
use std::time::{Duration, SystemTime};

use common::engine::{
    CRASHER, REGISTRY, TICKER, assert_clean_ticker_lines, check_output, deploy_five, engine,
    engine_json, eventually, manager_filter, named, query, require_engine, socket_path, spec,
    test_registry, unique, vars,
};
use common::portainer::{ENV_ID, StandIn};
use common::tls::TestCa;
use serde_json::{Value, json};
use xtm_composer::config::{Selector, Settings};
use xtm_composer::http::{self, ClientOptions};
use xtm_composer::orchestrator::docker::{Client, Docker};
use xtm_composer::orchestrator::swarm::Swarm;
use xtm_composer::orchestrator::{Error, Orchestrator, Workload, WorkloadState};
use xtm_composer::platform::PlatformKind;
use xtm_composer::reconcile::is_in_reboot_loop;
use xtm_composer::secret::Secret;

const LIMIT: Duration = Duration::from_secs(60);

/// Joins the engine to a single-node swarm once per test binary, unless it is in one.
fn require_swarm() {
    static INIT: Once = Once::new();
    require_engine();
    INIT.call_once(|| {
        let state = || engine_json("/info")["Swarm"]["LocalNodeState"].clone();
        if state() != "active" {
            let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/swarm.sh");
            let out = std::process::Command::new("bash")
                .args([script, "init"])
                .env("DOCKERD_SOCK", socket_path())
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "swarm.sh init: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        assert_eq!(state(), "active", "the engine is not a swarm manager");
    });
}

/// Removes the services and configs of a manager when the test ends, even on panic.
struct Cleanup(String);

impl Drop for Cleanup {
    fn drop(&mut self) {
        for kind in ["services", "configs"] {
            let (_, body) = engine(
                "GET",
                &format!("/{kind}?filters={}", manager_filter(&self.0)),
                None,
            );
            let list: Vec<Value> = serde_json::from_slice(&body).unwrap_or_default();
            for id in list.iter().filter_map(|o| o["ID"].as_str()) {
                // A config is freed a moment after its last service.
                for _ in 0..40 {
                    if matches!(
                        engine("DELETE", &format!("/{kind}/{id}"), None).0,
                        200 | 204 | 404
                    ) {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(250));
                }
            }
        }
    }
}

fn settings(manager: &str, swarm: Value) -> Settings {
    let mut s = Settings::default();
    s.manager.id = manager.to_string();
    s.opencti.daemon.selector = Selector::Swarm;
    s.opencti.daemon.swarm = Some(serde_json::from_value(swarm).unwrap());
    // As `config::load` reads it from the environment.
    s.docker_host = std::env::var("DOCKER_HOST")
        .ok()
        .map(|h| h.parse().unwrap());
    s
}

/// A Swarm orchestrator whose tasks restart one second after a failure
/// instead of the engine's five, so a crash loop shows quickly.
fn quick_restarts(manager: &str) -> Swarm {
    let options = json!({"network": "host", "restart_delay": 1_000_000_000_i64});
    Swarm::new(&settings(manager, options), PlatformKind::OpenCti).unwrap()
}

fn with_registry(mut s: Settings) -> Settings {
    s.opencti.daemon.registry = Some(test_registry());
    s
}

fn service(name: &str) -> Value {
    engine_json(&format!("/services/{name}"))
}

/// Waits until `name` is listed in `state`; returns that listing entry.
fn listed_as(swarm: &Swarm, name: &str, state: WorkloadState) -> Workload {
    eventually(LIMIT, &format!("{name} {state:?}"), || {
        let list = swarm.list().unwrap();
        let w = named(&list, name).clone();
        (w.state == state).then_some(w)
    })
}

#[test]
fn five_connectors_run_as_services_through_their_whole_life() {
    require_swarm();
    let manager = unique("swarm");
    let _cleanup = Cleanup(manager.clone());
    let s = with_registry(settings(&manager, json!({"network": "host", "init": true})));
    let swarm = Swarm::new(&s, PlatformKind::OpenCti).unwrap();
    let names = deploy_five(&swarm, &manager);
    for (i, name) in names.iter().enumerate() {
        let want = if i < 3 {
            WorkloadState::Running
        } else {
            WorkloadState::Stopped
        };
        let w = listed_as(&swarm, name, want);
        assert_eq!(w.hash.as_deref(), Some("h1"));
        assert_eq!(
            w.connector_id.as_deref(),
            Some(format!("id-{name}").as_str())
        );
        assert_eq!(w.platform.as_deref(), Some("opencti"));
        assert_eq!(w.restart_count, 0);
        assert_eq!(w.started_at.is_some(), i < 3, "{w:?}");
    }
    let a = service(&names[0]);
    assert_eq!(a["Spec"]["Labels"]["opencti-manager"], manager.as_str());
    assert_eq!(a["Spec"]["Mode"]["Replicated"]["Replicas"], 1);
    let container = &a["Spec"]["TaskTemplate"]["ContainerSpec"];
    assert_eq!(container["Image"], format!("{REGISTRY}/{TICKER}"));
    let env: Vec<String> = serde_json::from_value(container["Env"].clone()).unwrap();
    assert!(
        env.contains(&"URL=http://x/?a=b=c".to_string())
            && env.contains(&"OPENCTI_CONFIG_HASH=h1".to_string()),
        "{env:?}"
    );
    assert_eq!(
        service(&names[3])["Spec"]["Mode"]["Replicated"]["Replicas"],
        0
    );

    let lines = eventually(LIMIT, "4 log lines", || {
        let lines = swarm.logs(&names[0], 100).unwrap();
        (lines.len() >= 4).then_some(lines)
    });
    assert_clean_ticker_lines(&lines);
    assert_eq!(swarm.logs(&names[0], 2).unwrap().len(), 2);

    swarm.stop(&names[0]).unwrap();
    assert_eq!(
        service(&names[0])["Spec"]["Mode"]["Replicated"]["Replicas"],
        0
    );
    listed_as(&swarm, &names[0], WorkloadState::Stopped);
    swarm.stop(&names[0]).unwrap(); // already stopped: nothing sent
    swarm.start(&names[3]).unwrap();
    listed_as(&swarm, &names[3], WorkloadState::Running);

    let id_before = service(&names[1])["ID"].clone();
    swarm
        .refresh(&spec(
            &names[1],
            TICKER,
            "h2",
            vars(&[("LEVEL", "debug")]),
            true,
        ))
        .unwrap();
    let b = service(&names[1]);
    assert_eq!(b["ID"], id_before, "updated in place");
    let env: Vec<String> =
        serde_json::from_value(b["Spec"]["TaskTemplate"]["ContainerSpec"]["Env"].clone()).unwrap();
    assert!(
        env.contains(&"LEVEL=debug".to_string())
            && env.contains(&"OPENCTI_CONFIG_HASH=h2".to_string()),
        "{env:?}"
    );
    let b = eventually(LIMIT, "the refreshed task running", || {
        let list = swarm.list().unwrap();
        let w = named(&list, &names[1]).clone();
        (w.hash.as_deref() == Some("h2") && w.state == WorkloadState::Running).then_some(w)
    });
    assert_eq!(b.restart_count, 0, "a replaced task is not a failure");

    // An idle cycle: one services call and one tasks call, whatever the count.
    let before = swarm.client().request_count();
    for _ in 0..5 {
        assert_eq!(swarm.list().unwrap().len(), 5);
    }
    let calls = swarm.client().request_count() - before;
    println!(
        "swarm calls per idle list(): {:.1} (5 services)",
        calls as f64 / 5.0
    );
    assert_eq!(calls, 10);

    for name in &names {
        swarm.remove(name).unwrap();
    }
    assert!(swarm.list().unwrap().is_empty());
    assert_eq!(
        swarm.client().request_count() - before - 10,
        6,
        "5 removals, 1 listing"
    );
}

#[test]
fn a_crashing_service_is_reported_as_a_reboot_loop() {
    require_swarm();
    let manager = unique("swarm-crash");
    let _cleanup = Cleanup(manager.clone());
    let swarm = quick_restarts(&manager);
    let name = format!("{manager}-a");
    swarm
        .deploy(&spec(&name, CRASHER, "h", vec![], true))
        .unwrap();
    let mut states = Vec::new();
    let w = eventually(LIMIT, "more than 3 failed tasks", || {
        let list = swarm.list().unwrap();
        let w = named(&list, &name).clone();
        states.push(w.state);
        (w.restart_count > 3).then_some(w)
    });
    println!(
        "crasher: {} failed tasks; states seen {states:?}",
        w.restart_count
    );
    assert!(states.contains(&WorkloadState::Restarting), "{states:?}");
    assert!(is_in_reboot_loop(&w, SystemTime::now()), "{w:?}");
    let lines = swarm.logs(&name, 100).unwrap();
    assert!(
        lines.iter().filter(|l| *l == "crasher failing").count() >= 2,
        "{lines:?}"
    );
    swarm.remove(&name).unwrap();
}

#[test]
fn every_swarm_option_reaches_the_service_spec() {
    require_swarm();
    let manager = unique("swarm-options");
    let _cleanup = Cleanup(manager.clone());
    let options = json!({
        "network": "host",
        "extra_hosts": ["opencti:127.0.0.1"],
        "dns": ["127.0.0.53"],
        "dns_search": ["corp"],
        "cap_add": ["NET_ADMIN"],
        "cap_drop": ["MKNOD"],
        "sysctls": {"net.core.somaxconn": "1024"},
        "ulimits": [{"name": "nofile", "soft": 1024, "hard": 2048}],
        "hostname": "conn",
        "user": "1000:1000",
        "read_only": true,
        "init": true,
        "stop_grace_period": 10_000_000_000_i64,
        "resources": {"cpu_limit": 1_000_000_000, "memory_limit": 536_870_912, "cpu_reservation": 100_000_000, "memory_reservation": 8_388_608},
        "placement_constraints": ["node.role==manager"],
        "placement_preferences": ["node.labels.zone"],
        "restart_condition": "on-failure",
        "restart_delay": 5_000_000_000_i64,
        "restart_max_attempts": 3
    });
    let swarm = Swarm::new(&settings(&manager, options), PlatformKind::OpenCti).unwrap();
    let name = format!("{manager}-a");
    swarm
        .deploy(&spec(&name, TICKER, "h", vec![], false))
        .unwrap();
    let t = &service(&name)["Spec"]["TaskTemplate"];
    let c = &t["ContainerSpec"];
    assert_eq!(c["Hosts"], json!(["opencti:127.0.0.1"]));
    assert_eq!(
        c["DNSConfig"],
        json!({"Nameservers": ["127.0.0.53"], "Search": ["corp"]})
    );
    assert_eq!(c["CapabilityAdd"], json!(["NET_ADMIN"]));
    assert_eq!(c["CapabilityDrop"], json!(["MKNOD"]));
    assert_eq!(c["Sysctls"], json!({"net.core.somaxconn": "1024"}));
    assert_eq!(
        c["Ulimits"],
        json!([{"Name": "nofile", "Soft": 1024, "Hard": 2048}])
    );
    assert_eq!(
        (&c["Hostname"], &c["User"]),
        (&json!("conn"), &json!("1000:1000"))
    );
    assert_eq!((&c["ReadOnly"], &c["Init"]), (&json!(true), &json!(true)));
    assert_eq!(c["StopGracePeriod"], 10_000_000_000_i64);
    assert_eq!(
        t["Resources"]["Limits"],
        json!({"NanoCPUs": 1_000_000_000, "MemoryBytes": 536_870_912})
    );
    assert_eq!(
        t["Resources"]["Reservations"],
        json!({"NanoCPUs": 100_000_000, "MemoryBytes": 8_388_608})
    );
    assert_eq!(t["Placement"]["Constraints"], json!(["node.role==manager"]));
    assert_eq!(
        t["Placement"]["Preferences"],
        json!([{"Spread": {"SpreadDescriptor": "node.labels.zone"}}])
    );
    assert_eq!(
        t["RestartPolicy"],
        json!({"Condition": "on-failure", "Delay": 5_000_000_000_i64, "MaxAttempts": 3})
    );
    let network = t["Networks"][0]["Target"].as_str().unwrap();
    assert_eq!(engine_json(&format!("/networks/{network}"))["Name"], "host");
    // The options survive a stop/start: the spec goes back to the engine whole.
    swarm.start(&name).unwrap();
    let after = service(&name);
    assert_eq!(&after["Spec"]["TaskTemplate"], t);
    assert_eq!(after["Spec"]["Mode"]["Replicated"]["Replicas"], 1);
    swarm.remove(&name).unwrap();
}

#[test]
fn the_proxy_ca_reaches_the_task_as_a_docker_config() {
    require_swarm();
    let manager = unique("swarm-ca");
    let _cleanup = Cleanup(manager.clone());
    let pem = format!("-----BEGIN CERTIFICATE-----\n{manager}\n-----END CERTIFICATE-----");
    let mut s = settings(&manager, json!({"network": "host"}));
    s.opencti.with_proxy = true;
    s.opencti.https_proxy_ca = vec![pem.clone()];
    let swarm = Swarm::new(&s, PlatformKind::OpenCti).unwrap();
    let names = [format!("{manager}-a"), format!("{manager}-b")];
    for name in &names {
        swarm
            .deploy(&spec(name, TICKER, "h", vec![], true))
            .unwrap();
    }
    let configs = engine_json(&format!("/configs?filters={}", manager_filter(&manager)));
    assert_eq!(
        configs.as_array().unwrap().len(),
        1,
        "one config for one bundle: {configs}"
    );
    let refs = &service(&names[0])["Spec"]["TaskTemplate"]["ContainerSpec"]["Configs"];
    assert_eq!(refs[0]["File"]["Name"], "/etc/ssl/certs/xtm-proxy-ca.crt");
    assert_eq!(refs[0]["ConfigID"], configs[0]["ID"]);

    listed_as(&swarm, &names[0], WorkloadState::Running);
    let tasks = engine_json(&format!("/tasks?filters={}", manager_filter(&manager)));
    let task = tasks
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["Status"]["State"] == "running")
        .unwrap();
    let container = task["Status"]["ContainerStatus"]["ContainerID"]
        .as_str()
        .unwrap();
    // A config is a mount: the archive API shows the empty mount point, so read it inside.
    let content = exec_output(container, &["cat", "/etc/ssl/certs/xtm-proxy-ca.crt"]);
    let text = String::from_utf8_lossy(&content);
    assert!(
        text.contains(&pem),
        "the proxy CA is in the file: {text:.300}"
    );
    let roots = std::fs::read_to_string("/etc/ssl/certs/ca-certificates.crt").unwrap_or_default();
    assert!(text.len() > roots.len(), "the system roots follow it");
    for name in &names {
        swarm.remove(name).unwrap();
    }
}

/// What `cmd` prints in a running container (frame headers included).
fn exec_output(container: &str, cmd: &[&str]) -> Vec<u8> {
    let body = json!({"Cmd": cmd, "AttachStdout": true, "AttachStderr": true});
    let (code, created) = engine(
        "POST",
        &format!("/containers/{container}/exec"),
        Some(&body),
    );
    assert_eq!(code, 201, "{}", String::from_utf8_lossy(&created));
    let id = serde_json::from_slice::<Value>(&created).unwrap()["Id"].clone();
    let id = id.as_str().unwrap();
    let (code, out) = engine(
        "POST",
        &format!("/exec/{id}/start"),
        Some(&json!({"Detach": false})),
    );
    assert_eq!(code, 200);
    out
}

/// A Swarm client through the Portainer stand-in, which records the headers.
fn recorded_swarm(manager: &str, stand_in: &StandIn, ca: &TestCa) -> Swarm {
    let options = ClientOptions::for_engine("ca", Some(&ca.ca_pem), false, LIMIT, LIMIT).unwrap();
    let agent = http::agent(&options, &stand_in.url).unwrap();
    let base = format!("{}/api/endpoints/{ENV_ID}/docker", stand_in.url);
    let client = Client::new(agent, base, vec![("X-API-KEY".into(), Secret::new("k"))]);
    let s = with_registry(settings(manager, json!({"network": "host"})));
    Swarm::with_client(client, &s, PlatformKind::OpenCti).unwrap()
}

#[test]
fn d19_create_and_update_carry_the_registry_auth() {
    require_swarm();
    let manager = unique("swarm-auth");
    let _cleanup = Cleanup(manager.clone());
    let ca = TestCa::new();
    let stand_in = StandIn::start(&ca, "k", &socket_path());
    let swarm = recorded_swarm(&manager, &stand_in, &ca);
    let name = format!("{manager}-a");
    swarm
        .deploy(&spec(&name, TICKER, "h1", vec![], false))
        .unwrap();
    swarm.start(&name).unwrap();
    swarm
        .refresh(&spec(&name, TICKER, "h2", vec![], true))
        .unwrap();
    swarm.stop(&name).unwrap();
    let writes: Vec<_> = stand_in
        .seen()
        .into_iter()
        .filter(|r| r.method == "POST" && r.target.contains("/services/"))
        .collect();
    // Four writes, more if the engine's own version bump made one read again.
    assert!(
        writes.len() >= 4,
        "create, start, refresh, stop: {writes:?}"
    );
    assert!(writes[0].target.ends_with("/services/create"), "{writes:?}");
    assert!(writes.iter().all(|r| r.registry_auth), "{writes:?}");
    assert!(writes[1].target.contains("/update?version="), "{writes:?}");
    swarm.remove(&name).unwrap();
}

#[test]
fn operations_on_a_missing_service_are_not_found() {
    require_swarm();
    let manager = unique("swarm-missing");
    let swarm = Swarm::new(&settings(&manager, json!({})), PlatformKind::OpenCti).unwrap();
    let name = format!("{manager}-nothing");
    for (op, result) in [
        ("start", swarm.start(&name)),
        ("stop", swarm.stop(&name)),
        ("remove", swarm.remove(&name)),
        ("logs", swarm.logs(&name, 10).map(drop)),
        (
            "refresh",
            swarm.refresh(&spec(&name, TICKER, "h", vec![], true)),
        ),
    ] {
        assert!(
            matches!(result, Err(Error::NotFound { .. })),
            "{op}: {result:?}"
        );
    }
    assert!(swarm.list().unwrap().is_empty());
}

#[test]
fn check_with_selector_swarm_lists_the_services() {
    require_swarm();
    let manager = unique("swarm-check");
    let _cleanup = Cleanup(manager.clone());
    let swarm = Swarm::new(
        &settings(&manager, json!({"network": "host"})),
        PlatformKind::OpenCti,
    )
    .unwrap();
    swarm
        .deploy(&spec(&format!("{manager}-a"), TICKER, "h", vec![], false))
        .unwrap();
    let out = check_output(
        "swarm-check",
        &[
            ("MANAGER__ID", manager.as_str()),
            ("OPENCTI__DAEMON__SELECTOR", "swarm"),
        ],
    );
    assert!(
        out.contains("✔ opencti orchestrator: reachable, 1 workload(s) of this manager"),
        "{out}"
    );
}

#[test]
fn task_containers_are_not_listed_as_docker_containers_of_the_manager() {
    require_swarm();
    let manager = unique("swarm-docker");
    let _cleanup = Cleanup(manager.clone());
    let s = settings(&manager, json!({"network": "host"}));
    let swarm = Swarm::new(&s, PlatformKind::OpenCti).unwrap();
    let name = format!("{manager}-a");
    swarm
        .deploy(&spec(&name, TICKER, "h", vec![], true))
        .unwrap();
    listed_as(&swarm, &name, WorkloadState::Running);
    // The task's container exists on this engine, under the swarm's own labels ...
    let filter = query(&format!(
        "{{\"label\":[\"com.docker.swarm.service.name={name}\"]}}"
    ));
    let tasks = engine_json(&format!("/containers/json?filters={filter}"));
    let tasks = tasks.as_array().unwrap();
    assert_eq!(tasks.len(), 1, "{tasks:?}");
    assert!(
        tasks[0]["Labels"].get("opencti-manager").is_none(),
        "{tasks:?}"
    );
    // ... so the Docker orchestrator of the same manager id does not take it for its own.
    let docker = Docker::new(&s, PlatformKind::OpenCti).unwrap();
    assert!(docker.list().unwrap().is_empty());
    swarm.remove(&name).unwrap();
}

#[test]
fn the_engine_runs_five_connectors_as_services() {
    require_swarm();
    let manager = unique("swarm-e2e");
    let _cleanup = Cleanup(manager.clone());
    let s = with_registry(settings(&manager, json!({"network": "host"})));
    let swarm = Swarm::new(&s, PlatformKind::OpenCti).unwrap();
    common::e2e::five_connectors_through_the_engine(std::sync::Arc::new(swarm), &manager);
}

#[test]
fn the_engine_reports_a_crashing_service_as_a_reboot_loop() {
    require_swarm();
    let manager = unique("swarm-e2e-crash");
    let _cleanup = Cleanup(manager.clone());
    let swarm = quick_restarts(&manager);
    let id = format!("{manager}-crasher");
    common::e2e::a_crash_loop_reaches_the_platform(std::sync::Arc::new(swarm), &id);
}
