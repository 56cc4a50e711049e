//! The Portainer orchestrator through a Portainer stand-in (TLS with a test CA,
//! API-key check, Docker proxy) in front of the real dockerd and the real
//! authenticated registry. Start them first:
//! `scripts/start-dockerd.sh && scripts/start-registry.sh && scripts/make-test-images.sh`.
//! Never skips; each test has its own manager id and removes what it made.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use std::time::SystemTime;

use common::engine::{
    CRASHER, REGISTRY, TICKER, assert_clean_ticker_lines, check_output, deploy_five, engine,
    engine_json, eventually, manager_filter, named, require_engine, socket_path, spec,
    test_registry, unique, vars,
};
use common::portainer::{ENV_ID, StandIn};
use common::tls::TestCa;
use serde_json::Value;
use xtm_composer::config::{DockerOptions, PortainerSettings, Selector, Settings};
use xtm_composer::orchestrator::docker::{ApiVersion, PullPolicy};
use xtm_composer::orchestrator::portainer::{COMPOSE_PROJECT, Portainer};
use xtm_composer::orchestrator::{Error, Orchestrator, WorkloadState};
use xtm_composer::platform::PlatformKind;
use xtm_composer::reconcile::is_in_reboot_loop;
use xtm_composer::secret::Secret;

const KEY: &str = "ptr_stand-in-key";

/// One test's manager id and stand-in, with its CA in a file; removes the
/// manager's containers and the file when the test ends, even on panic.
struct Fixture {
    manager: String,
    stand_in: StandIn,
    ca_path: PathBuf,
}

impl Fixture {
    fn new(test: &str) -> Fixture {
        require_engine();
        let manager = unique(test);
        let ca = TestCa::new();
        let stand_in = StandIn::start(&ca, KEY, &socket_path());
        let ca_path = std::env::temp_dir().join(format!("{manager}-portainer-ca.pem"));
        std::fs::write(&ca_path, &ca.ca_pem).unwrap();
        Fixture {
            manager,
            stand_in,
            ca_path,
        }
    }

    /// Settings for the stand-in, trusting its CA, then `edit`ed.
    fn settings(&self, edit: impl FnOnce(&mut PortainerSettings)) -> Settings {
        let mut s = Settings::default();
        s.manager.id = self.manager.clone();
        s.opencti.daemon.selector = Selector::Portainer;
        let mut p = PortainerSettings {
            api: Some(self.stand_in.url.clone()),
            api_key: Some(Secret::new(KEY)),
            env_id: Some(ENV_ID.into()),
            env_type: Some("docker".into()),
            api_version: ApiVersion::parse("v1.44"),
            ca_file: Some(self.ca_path.display().to_string()),
            // No bridge on this machine: containers get loopback only.
            network_mode: Some("none".into()),
            ..PortainerSettings::default()
        };
        edit(&mut p);
        s.opencti.daemon.portainer = Some(p);
        s
    }

    fn portainer(&self, edit: impl FnOnce(&mut PortainerSettings)) -> Portainer {
        Portainer::new(&self.settings(edit), PlatformKind::OpenCti).unwrap()
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let filter = manager_filter(&self.manager);
        let (_, body) = engine(
            "GET",
            &format!("/containers/json?all=true&filters={filter}"),
            None,
        );
        let list: Vec<Value> = serde_json::from_slice(&body).unwrap_or_default();
        for id in list.iter().filter_map(|c| c["Id"].as_str()) {
            engine(
                "DELETE",
                &format!("/containers/{id}?force=true&v=true"),
                None,
            );
        }
        let _ = std::fs::remove_file(&self.ca_path);
    }
}

fn inspect(name: &str) -> Value {
    engine_json(&format!("/containers/{name}/json"))
}

#[test]
fn five_connectors_live_their_whole_life_through_portainer() {
    let f = Fixture::new("portainer");
    let manager = &f.manager;
    let mut s = f.settings(|p| p.stack = Some(format!("{manager}-stack")));
    // Every deploy pulls from the authenticated registry, through the proxy.
    s.opencti.daemon.registry = Some(test_registry());
    s.opencti.daemon.docker = Some(DockerOptions {
        pull_policy: PullPolicy::Always,
        ..DockerOptions::default()
    });
    let portainer = Portainer::new(&s, PlatformKind::OpenCti).unwrap();
    let names = deploy_five(&portainer, manager);
    let list = portainer.list().unwrap();
    assert_eq!(list.len(), 5, "{list:?}");
    for (i, name) in names.iter().enumerate() {
        let w = named(&list, name);
        let running = i < 3;
        assert_eq!(w.state == WorkloadState::Running, running, "{w:?}");
        assert_eq!(w.hash.as_deref(), Some("h1"));
        assert_eq!(w.connector_id, Some(format!("id-{name}")));
        assert_eq!(
            (w.started_at.is_some(), w.restart_count),
            (running, 0),
            "{w:?}"
        );
        assert!(!is_in_reboot_loop(w, SystemTime::now()), "healthy: {w:?}");
    }
    let c = inspect(&names[0]);
    assert_eq!(c["Config"]["Image"], format!("{REGISTRY}/{TICKER}"));
    assert_eq!(
        c["Config"]["Labels"][COMPOSE_PROJECT],
        format!("{manager}-stack")
    );
    assert_eq!(c["Config"]["Labels"]["opencti-platform"], "opencti");
    assert_eq!(c["HostConfig"]["NetworkMode"], "none");

    // Logs: demultiplexed, one clean line each (the existing composer kept frame headers).
    let lines = eventually(Duration::from_secs(20), "4 log lines", || {
        let lines = portainer.logs(&names[0], 100).unwrap();
        (lines.len() >= 4).then_some(lines)
    });
    assert_clean_ticker_lines(&lines);
    assert_eq!(portainer.logs(&names[0], 2).unwrap().len(), 2);

    // Stop a running one, start a stopped one, refresh one.
    portainer.stop(&names[0]).unwrap();
    portainer.start(&names[3]).unwrap();
    let refreshed = spec(&names[1], TICKER, "h2", vars(&[("LEVEL", "debug")]), true);
    portainer.refresh(&refreshed).unwrap();
    let list = portainer.list().unwrap();
    assert_eq!(named(&list, &names[0]).state, WorkloadState::Stopped);
    assert_eq!(named(&list, &names[3]).state, WorkloadState::Running);
    let b = named(&list, &names[1]);
    assert_eq!(
        (b.hash.as_deref(), b.state),
        (Some("h2"), WorkloadState::Running)
    );
    let env = inspect(&names[1])["Config"]["Env"].clone();
    assert!(
        env.as_array().unwrap().contains(&"LEVEL=debug".into()),
        "{env}"
    );

    // An idle cycle: one listing call (inspects are cached while nothing changes).
    let before = portainer.client().request_count();
    for _ in 0..5 {
        portainer.list().unwrap();
    }
    let calls = portainer.client().request_count() - before;
    println!(
        "portainer calls per idle list(): {:.1} (5 containers)",
        calls as f64 / 5.0
    );

    for name in &names {
        portainer.remove(name).unwrap();
    }
    assert!(portainer.list().unwrap().is_empty());

    let seen = f.stand_in.seen();
    assert!(seen.iter().all(|r| r.key_ok), "every call carries the key");
    let version = format!("/api/endpoints/{ENV_ID}/docker/version");
    let prefix = format!("/api/endpoints/{ENV_ID}/docker/v1.41/");
    let off: Vec<_> = seen
        .iter()
        .filter(|r| r.target != version && !r.target.starts_with(&prefix))
        .collect();
    assert!(
        off.is_empty(),
        "the engine's 1.41, below the configured v1.44: {off:?}"
    );
    let pulls: Vec<_> = seen
        .iter()
        .filter(|r| r.target.contains("/images/create?"))
        .collect();
    assert!(
        pulls.len() >= 6 && pulls.iter().all(|r| r.registry_auth),
        "{pulls:?}"
    );
}

#[test]
fn api_version_caps_the_negotiated_version() {
    let f = Fixture::new("portainer-cap");
    let portainer = f.portainer(|p| p.api_version = ApiVersion::parse("v1.40"));
    assert!(portainer.list().unwrap().is_empty());
    let targets: Vec<String> = f.stand_in.seen().into_iter().map(|r| r.target).collect();
    assert_eq!(targets.len(), 2, "{targets:?}");
    assert_eq!(targets[0], "/api/endpoints/1/docker/version");
    assert!(
        targets[1].starts_with("/api/endpoints/1/docker/v1.40/containers/json?"),
        "{targets:?}"
    );
}

#[test]
fn a_wrong_api_key_is_an_error_naming_the_setting() {
    let f = Fixture::new("portainer-key");
    let portainer = f.portainer(|p| p.api_key = Some(Secret::new("ptr_wrong-key-4242")));
    let err = portainer.list().unwrap_err();
    println!("wrong key: {err}");
    assert!(matches!(err, Error::Config { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("opencti.daemon.portainer.api_key"), "{text}");
    assert!(text.contains("401"), "{text}");
    assert!(!text.contains("wrong-key-4242"), "{text}");
    let err = portainer
        .deploy(&spec(
            &format!("{}-a", f.manager),
            TICKER,
            "h",
            vec![],
            true,
        ))
        .unwrap_err();
    assert!(err.to_string().contains("api_key"), "{err}");
    assert!(f.stand_in.seen().iter().all(|r| !r.key_ok));
}

#[test]
fn an_unknown_environment_is_an_error_naming_env_id() {
    let f = Fixture::new("portainer-env");
    let err = f
        .portainer(|p| p.env_id = Some("9".into()))
        .list()
        .unwrap_err();
    println!("unknown environment: {err}");
    assert!(
        err.to_string().contains("opencti.daemon.portainer.env_id"),
        "{err}"
    );
}

#[test]
fn an_unknown_ca_is_refused_unless_unsecured_certificate_is_set() {
    let f = Fixture::new("portainer-tls");
    // Verified by default: without ca_file, the stand-in's CA is in no trust store.
    let err = f.portainer(|p| p.ca_file = None).list().unwrap_err();
    println!("unknown CA: {err}");
    assert!(matches!(err, Error::Transport { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("certificate"), "{text}");
    assert!(text.contains("opencti.daemon.portainer.ca_file"), "{text}");
    assert!(
        f.stand_in.seen().is_empty(),
        "no request passed the handshake"
    );

    // Another CA in ca_file does not help either.
    let other = Fixture::new("portainer-tls-other");
    let other_ca = other.ca_path.display().to_string();
    assert!(f.portainer(|p| p.ca_file = Some(other_ca)).list().is_err());
    assert!(f.stand_in.seen().is_empty());

    let lax = f.portainer(|p| {
        p.ca_file = None;
        p.unsecured_certificate = true;
    });
    assert!(lax.list().unwrap().is_empty());
    assert_eq!(f.stand_in.seen().len(), 2, "version, then the listing");
}

#[test]
fn a_crashing_container_through_portainer_is_reported_as_a_reboot_loop() {
    let f = Fixture::new("portainer-crash");
    let portainer = f.portainer(|_| {});
    let name = format!("{}-a", f.manager);
    portainer
        .deploy(&spec(&name, CRASHER, "h", vec![], true))
        .unwrap();
    let w = eventually(Duration::from_secs(60), "more than 3 restarts", || {
        let list = portainer.list().unwrap();
        let w = named(&list, &name).clone();
        (w.restart_count > 3).then_some(w)
    });
    println!("crasher through Portainer: {} restarts", w.restart_count);
    assert!(is_in_reboot_loop(&w, SystemTime::now()), "{w:?}");
    let lines = portainer.logs(&name, 100).unwrap();
    assert!(
        lines.iter().filter(|l| *l == "crasher failing").count() > 3,
        "{lines:?}"
    );
    portainer.remove(&name).unwrap();
}

#[test]
fn check_with_selector_portainer_lists_through_the_stand_in() {
    let f = Fixture::new("portainer-check");
    let ca = f.ca_path.display().to_string();
    let env = |key: &'static str| {
        [
            ("MANAGER__ID", f.manager.as_str()),
            ("OPENCTI__DAEMON__SELECTOR", "portainer"),
            ("OPENCTI__DAEMON__PORTAINER__API", f.stand_in.url.as_str()),
            ("OPENCTI__DAEMON__PORTAINER__API_KEY", key),
            ("OPENCTI__DAEMON__PORTAINER__ENV_ID", ENV_ID),
            ("OPENCTI__DAEMON__PORTAINER__CA_FILE", ca.as_str()),
        ]
    };
    let out = check_output("portainer-check", &env(KEY));
    assert!(
        out.contains("✔ opencti orchestrator: reachable, 0 workload(s) of this manager"),
        "{out}"
    );
    assert!(f.stand_in.seen().iter().all(|r| r.key_ok));
    let out = check_output("portainer-check", &env("ptr_not-the-key-77"));
    let line = out
        .lines()
        .find(|l| l.starts_with("✘ opencti orchestrator"))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(
        line.contains("check opencti.daemon.portainer.api_key"),
        "{out}"
    );
    assert!(!out.contains("not-the-key-77"), "{out}");
}

#[test]
fn the_engine_runs_five_connectors_through_portainer() {
    let f = Fixture::new("portainer-e2e");
    let mut s = f.settings(|_| {});
    s.opencti.daemon.registry = Some(test_registry());
    let portainer = Portainer::new(&s, PlatformKind::OpenCti).unwrap();
    common::e2e::five_connectors_through_the_engine(std::sync::Arc::new(portainer), &f.manager);
    assert!(f.stand_in.seen().iter().all(|r| r.key_ok));
}

#[test]
fn the_engine_reports_a_crash_loop_through_portainer() {
    let f = Fixture::new("portainer-e2e-crash");
    let portainer = f.portainer(|_| {});
    let id = format!("{}-crasher", f.manager);
    common::e2e::a_crash_loop_reaches_the_platform(std::sync::Arc::new(portainer), &id);
}

/// Portainer proxies the engine's `/events`: a container killed behind the
/// composer's back wakes the follower through the stand-in, with the API key.
#[test]
fn engine_events_reach_the_follower_through_portainer() {
    let f = Fixture::new("portainer-events");
    let s = f.settings(|_| {});
    let portainer = std::sync::Arc::new(Portainer::new(&s, PlatformKind::OpenCti).unwrap());
    let name = format!("{}-ev", f.manager);
    portainer
        .deploy(&spec(&name, TICKER, "h1", vec![], true))
        .unwrap();
    let (wake_tx, wake_rx) = crossbeam_channel::unbounded::<()>();
    let (stop_tx, stop_rx) = crossbeam_channel::bounded::<()>(0);
    let follower = {
        let p = std::sync::Arc::clone(&portainer);
        std::thread::spawn(move || {
            p.follow(
                &|| {
                    let _ = wake_tx.send(());
                },
                &stop_rx,
            )
        })
    };
    // The stream is open once the stand-in has seen the request.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !f
        .stand_in
        .seen()
        .iter()
        .any(|r| r.target.contains("/events?"))
    {
        assert!(std::time::Instant::now() < deadline, "no /events request");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));
    while wake_rx.try_recv().is_ok() {}
    let (code, _) = engine("POST", &format!("/containers/{name}/kill"), None);
    assert_eq!(code, 204);
    wake_rx
        .recv_timeout(Duration::from_secs(20))
        .expect("no wake-up from the kill's events");
    let events: Vec<_> = f
        .stand_in
        .seen()
        .into_iter()
        .filter(|r| r.target.contains("/events?"))
        .collect();
    assert!(events.iter().all(|r| r.key_ok), "{events:?}");
    drop(stop_tx);
    portainer.remove(&name).unwrap();
    drop(follower);
}
