//! The engine end to end: the real OpenCTI client against the fake OpenCTI,
//! the in-memory orchestrator, the real decryptor with the shared test keys.
//! 20 connectors deploy, start, stop, refresh, get removed, report health and
//! logs each; failures affect one cycle or one connector; no secret is logged.

mod common;

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use common::fake_opencti::{Failure, FakeOpenCti, connector};
use common::memory::MemoryOrchestrator;
use crossbeam_channel::{Receiver, bounded};
use xtm_composer::config::Settings;
use xtm_composer::crypto::{Decryptor, Key};
use xtm_composer::engine::{Decrypt, Engine, Options};
use xtm_composer::env::Context;
use xtm_composer::platform::{Platform, PlatformKind, opencti};

const TOKEN: &str = "e2e-token";

/// Every log record of this test binary, at TRACE.
static LINES: OnceLock<Mutex<Vec<String>>> = OnceLock::new();

struct Capture;

impl log::Log for Capture {
    fn enabled(&self, _: &log::Metadata) -> bool {
        true
    }
    fn log(&self, r: &log::Record) {
        // The same caps as the binary's logger, at its most verbose level.
        if !xtm_composer::logging::is_allowed(r.target(), r.level(), log::LevelFilter::Trace) {
            return;
        }
        let line = format!("{} {} {}", r.level(), r.target(), r.args());
        LINES
            .get_or_init(Default::default)
            .lock()
            .unwrap()
            .push(line);
    }
    fn flush(&self) {}
}

fn capture_logs() {
    static INIT: OnceLock<()> = OnceLock::new();
    INIT.get_or_init(|| {
        log::set_boxed_logger(Box::new(Capture)).unwrap();
        log::set_max_level(log::LevelFilter::Trace);
    });
}

fn logged() -> Vec<String> {
    LINES.get_or_init(Default::default).lock().unwrap().clone()
}

fn vectors() -> serde_json::Value {
    serde_json::from_str(include_str!("fixtures/crypto-vectors.json")).unwrap()
}

struct World {
    fake: FakeOpenCti,
    memory: Arc<MemoryOrchestrator>,
    engine: Engine,
    decryptor: Arc<Decryptor>,
    stop: Receiver<()>,
    _stop_tx: crossbeam_channel::Sender<()>,
}

fn world(connectors: Vec<serde_json::Value>) -> World {
    capture_logs();
    let v = vectors();
    let key = Key::from_pem(v["rsa4096"]["private_key_pkcs8_pem"].as_str().unwrap()).unwrap();
    let pkcs1 = key.public_pkcs1_pem();
    let decryptor = Arc::new(Decryptor::new(key));
    let fake = FakeOpenCti::start(TOKEN);
    fake.set_version("6.8.0");
    fake.set_connectors(connectors);
    let mut settings = Settings::default();
    settings.opencti.url = fake.url();
    settings.opencti.token = xtm_composer::secret::Secret::new(TOKEN);
    settings.opencti.request_timeout = 5;
    let client = opencti::Client::new(&settings.opencti, "e2e-manager", "E2E", pkcs1).unwrap();
    let memory = Arc::new(MemoryOrchestrator::new());
    let options = Options {
        execute_every: Duration::from_secs(10),
        ping_every: Duration::from_secs(60),
        logs_every: Duration::from_secs(10),
        max_parallel: 4,
        name_prefix: None,
        show_env_vars: true,
        show_sensitive_env_vars: false,
        // Cycles are driven back to back here: removals need no wait.
        policy: xtm_composer::reconcile::Policy {
            removal_grace: Duration::ZERO,
            crash_loop_stop_after: None,
        },
        ..Options::default()
    };
    let ctx = Context::new(&settings, PlatformKind::OpenCti, &[], false);
    let decrypt: Arc<dyn Decrypt> = decryptor.clone();
    let platform: Arc<dyn Platform> = Arc::new(client);
    let engine = Engine::new(platform, memory.clone(), decrypt, ctx, options, None);
    let (tx, stop) = bounded(0);
    World {
        fake,
        memory,
        engine,
        decryptor,
        stop,
        _stop_tx: tx,
    }
}

fn secret_connectors(n: usize) -> Vec<serde_json::Value> {
    let v = vectors();
    let k = &v["rsa4096"];
    (0..n)
        .map(|i| {
            let id = format!("c{i:02}");
            let config = vec![
                ("PLAIN", "visible", false),
                ("SECRET_V1", k["v1_pkcs1v15"].as_str().unwrap(), true),
                ("SECRET_V2", k["v2_oaep_sha256"].as_str().unwrap(), true),
            ];
            connector(
                &id,
                &format!("Connector {i}"),
                "opencti/connector-x:6.8.0",
                "h1",
                "starting",
                config,
            )
        })
        .collect()
}

fn env_of(m: &MemoryOrchestrator, name: &str) -> Vec<String> {
    m.get(name).map(|e| e.env).unwrap_or_default()
}

#[test]
fn twenty_connectors_deploy_start_stop_refresh_and_get_removed() {
    let n = 20;
    let mut w = world(secret_connectors(n));
    let plaintext = vectors()["rsa4096"]["plaintext"]
        .as_str()
        .unwrap()
        .to_string();

    w.engine.alive_tick();
    assert!(w.engine.is_registered());
    let key = w.fake.registered_key().unwrap();
    assert!(key.starts_with("-----BEGIN RSA PUBLIC KEY-----\n"), "{key}");

    // Cycle 1: everything deployed, started, reported.
    let r = w.engine.cycle(&w.stop);
    assert_eq!(r.failures, 0);
    assert_eq!(w.memory.count("deploy "), n);
    for i in 0..n {
        let id = format!("c{i:02}");
        let env = env_of(&w.memory, &format!("connector-{i}"));
        assert!(
            env.contains(&format!("SECRET_V1={plaintext}")),
            "{id}: {env:?}"
        );
        assert!(env.contains(&format!("SECRET_V2={plaintext}")));
        assert!(env.contains(&"OPENCTI_CONFIG_HASH=h1".to_string()));
        assert!(env.contains(&format!("OPENCTI_URL={}", w.fake.url())));
        assert_eq!(w.fake.current_status(&id).as_deref(), Some("started"));
    }
    // Two distinct ciphertexts, each RSA-decrypted once for 20 connectors.
    assert_eq!(w.decryptor.rsa_operations(), 2);

    // Cycle 2: nothing to change; health and logs for every connector.
    w.engine.cycle(&w.stop);
    assert_eq!(w.memory.count("deploy "), n);
    for i in 0..n {
        let id = format!("c{i:02}");
        assert_eq!(w.fake.health_reports(&id), 1, "{id}");
        let h = w.fake.health(&id).unwrap();
        assert_eq!(h["is_in_reboot_loop"], false);
        let lines = w.fake.logs(&id).unwrap();
        assert_eq!(lines[0], format!("connector-{i} line 1"));
    }

    // Stop five, change the contract of one, delete one.
    for i in 0..5 {
        w.fake.set_requested(&format!("c{i:02}"), "stopping");
    }
    w.fake.set_hash("c05", "h2");
    w.fake.remove_connector("c06");
    w.engine.cycle(&w.stop);
    for i in 0..5 {
        assert_eq!(
            w.fake.current_status(&format!("c{i:02}")).as_deref(),
            Some("stopped")
        );
        let state = w
            .memory
            .get(&format!("connector-{i}"))
            .unwrap()
            .workload
            .state;
        assert_eq!(state, xtm_composer::orchestrator::WorkloadState::Stopped);
    }
    assert!(env_of(&w.memory, "connector-5").contains(&"OPENCTI_CONFIG_HASH=h2".to_string()));
    assert_eq!(w.memory.count("refresh connector-5"), 1);
    assert!(w.memory.get("connector-6").is_none());
    assert_eq!(w.memory.count("remove "), 1);

    // A converged world stays still.
    let before = w.memory.calls.lock().unwrap().len();
    w.engine.cycle(&w.stop);
    let calls: Vec<String> = w.memory.calls.lock().unwrap()[before..].to_vec();
    assert!(
        calls.iter().all(|c| c == "list" || c.starts_with("logs ")),
        "{calls:?}"
    );

    // An empty listing that would remove everything is believed only the
    // third time in a row (the removal grace is zero in this world).
    w.fake.set_connectors(vec![]);
    for _ in 0..2 {
        w.engine.cycle(&w.stop);
        assert_eq!(w.memory.entries.lock().unwrap().len(), n - 1);
    }
    w.engine.cycle(&w.stop);
    assert_eq!(w.memory.entries.lock().unwrap().len(), 0);

    for line in logged() {
        assert!(!line.contains(&plaintext), "secret in log: {line}");
        assert!(!line.contains(TOKEN), "token in log: {line}");
    }
}

#[test]
fn a_failed_listing_skips_one_cycle_and_the_next_recovers() {
    let mut w = world(secret_connectors(3));
    w.engine.alive_tick();
    for failure in [Failure::GraphQlError, Failure::Garbled, Failure::Http500] {
        w.fake.fail_next("GetConnectors", failure);
        let r = w.engine.cycle(&w.stop);
        assert!(!r.ran);
        assert_eq!(w.memory.count("deploy "), 0);
    }
    w.engine.cycle(&w.stop);
    assert_eq!(w.memory.count("deploy "), 3);
}

#[test]
fn an_undecryptable_connector_is_skipped_and_named_while_the_others_deploy() {
    let v = vectors();
    let mut cs = secret_connectors(2);
    let wrong_key_value = v["rsa2048"]["v2_oaep_sha256"].as_str().unwrap();
    cs.push(connector(
        "bad",
        "Bad One",
        "img:1",
        "h1",
        "starting",
        vec![("API_PASSWORD", wrong_key_value, true)],
    ));
    let mut w = world(cs);
    w.engine.alive_tick();
    w.engine.cycle(&w.stop);
    assert_eq!(w.memory.count("deploy "), 2);
    assert!(w.memory.get("bad-one").is_none());
    let lines = logged();
    assert!(
        lines
            .iter()
            .any(|l| l.contains("connector bad") && l.contains("API_PASSWORD")),
        "{lines:?}"
    );
    assert!(lines.iter().all(|l| !l.contains(wrong_key_value)));
}

#[test]
fn an_engine_outage_is_logged_and_the_state_converges_after_it() {
    let mut w = world(secret_connectors(4));
    w.engine.alive_tick();
    w.memory
        .down
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let r = w.engine.cycle(&w.stop);
    assert!(!r.ran);
    w.memory
        .down
        .store(false, std::sync::atomic::Ordering::SeqCst);
    w.engine.cycle(&w.stop);
    assert_eq!(w.memory.entries.lock().unwrap().len(), 4);
}

#[test]
fn a_workload_made_by_the_existing_composer_is_adopted_not_recreated() {
    let mut w = world(secret_connectors(1));
    w.memory.insert(
        xtm_composer::orchestrator::Workload {
            name: "connector-0".into(),
            connector_id: Some("c00".into()),
            platform: None, // older composers set no platform label
            hash: Some("h1".into()),
            state: xtm_composer::orchestrator::WorkloadState::Running,
            restart_count: 0,
            started_at: Some("2026-11-28T10:00:00Z".into()),
            waiting_reason: None,
            defect: None,
        },
        vec!["OPENCTI_CONFIG_HASH=h1".into()],
    );
    w.engine.alive_tick();
    w.engine.cycle(&w.stop);
    assert_eq!(w.memory.count("deploy "), 0);
    assert_eq!(w.memory.count("refresh "), 0);
    assert_eq!(w.memory.count("start "), 0);
    assert_eq!(w.fake.current_status("c00").as_deref(), Some("started"));
}

#[test]
fn reconciliation_waits_for_registration() {
    let mut w = world(secret_connectors(2));
    w.fake
        .fail_next("RegisterConnectorsManager", Failure::GraphQlError);
    w.engine.alive_tick();
    assert!(!w.engine.is_registered());
    let r = w.engine.cycle(&w.stop);
    assert!(!r.ran);
    assert_eq!(w.memory.count("deploy "), 0);
    // Next alive tick pings, finds the manager unknown, registers.
    w.engine.alive_tick();
    assert!(w.engine.is_registered());
    w.engine.cycle(&w.stop);
    assert_eq!(w.memory.count("deploy "), 2);
}

#[test]
fn a_platform_version_change_triggers_registration_again() {
    let mut w = world(secret_connectors(1));
    w.engine.alive_tick();
    let registrations = |f: &FakeOpenCti| {
        f.requests()
            .iter()
            .filter(|r| r.operation == "RegisterConnectorsManager")
            .count()
    };
    assert_eq!(registrations(&w.fake), 1);
    w.engine.alive_tick();
    assert_eq!(registrations(&w.fake), 1);
    w.fake.set_version("6.9.0");
    w.engine.alive_tick();
    assert_eq!(registrations(&w.fake), 2);
}
