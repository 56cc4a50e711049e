//! The engine with the real OpenAEV client against the fake OpenAEV, the in-memory
//! orchestrator and the real decryptor (rsa2048 test key): no lost first cycle on a
//! fresh platform, registration and retry on `Invalid xtm-composer identifier`,
//! re-registration on a version change (§8.2), v1 and v2 secrets in the env, and
//! `OPENAEV_URL` injected (§5.4, D24). No secret or token reaches a log line.

mod common;

use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use common::fake_openaev::{FakeOpenAev, instance};
use common::memory::MemoryOrchestrator;
use crossbeam_channel::{Receiver, Sender, bounded};
use serde_json::Value;
use xtm_composer::config::Settings;
use xtm_composer::crypto::{Decryptor, Key};
use xtm_composer::engine::{Decrypt, Engine, Options};
use xtm_composer::env::Context;
use xtm_composer::orchestrator::{Workload, WorkloadState};
use xtm_composer::platform::{Platform, PlatformKind, openaev};
use xtm_composer::secret::Secret;

const TOKEN: &str = "aev-e2e-token";
const MANAGER: &str = "aev-composer";

/// Every log record of this test binary, at TRACE.
static LINES: OnceLock<Mutex<Vec<String>>> = OnceLock::new();

struct Capture;

impl log::Log for Capture {
    fn enabled(&self, _: &log::Metadata) -> bool {
        true
    }
    fn log(&self, r: &log::Record) {
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

/// The captured lines, except ureq-proto's TRACE hex dump of raw requests, which
/// carries the Authorization header whatever we do: the process logger must
/// cap that target below TRACE (reported to the CLI owner).
fn logged() -> Vec<String> {
    let lines = LINES.get_or_init(Default::default).lock().unwrap();
    lines
        .iter()
        .filter(|l| !l.starts_with("TRACE ureq_proto"))
        .cloned()
        .collect()
}

fn vectors() -> Value {
    serde_json::from_str(include_str!("fixtures/crypto-vectors.json")).unwrap()
}

/// The engine's decryption seam over the real decryptor.
struct Decrypting(Decryptor);

impl Decrypt for Decrypting {
    fn decrypt(&self, value: &str) -> Result<Secret, String> {
        self.0.decrypt(value).map_err(|e| e.to_string())
    }
}

struct World {
    fake: FakeOpenAev,
    memory: Arc<MemoryOrchestrator>,
    engine: Engine,
    stop: Receiver<()>,
    _stop_tx: Sender<()>,
}

fn settings(fake: &FakeOpenAev) -> Settings {
    let mut settings = Settings::default();
    settings.openaev.enable = true;
    settings.openaev.url = fake.url();
    settings.openaev.token = Secret::new(TOKEN);
    settings.openaev.request_timeout = 5;
    settings
}

fn engine_for(settings: &Settings, memory: Arc<MemoryOrchestrator>) -> Engine {
    let v = vectors();
    let key = Key::from_pem(v["rsa2048"]["private_key_pkcs8_pem"].as_str().unwrap()).unwrap();
    let client =
        openaev::Client::new(&settings.openaev, MANAGER, "AEV E2E", key.public_spki_pem()).unwrap();
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
    let ctx = Context::new(settings, PlatformKind::OpenAev, &[], false);
    let decrypt: Arc<dyn Decrypt> = Arc::new(Decrypting(Decryptor::new(key)));
    let platform: Arc<dyn Platform> = Arc::new(client);
    Engine::new(platform, memory, decrypt, ctx, options, None)
}

fn world(instances: Vec<Value>) -> World {
    capture_logs();
    let fake = FakeOpenAev::start(TOKEN);
    fake.set_instances(instances);
    let memory = Arc::new(MemoryOrchestrator::new());
    let engine = engine_for(&settings(&fake), memory.clone());
    let (tx, stop) = bounded(0);
    World {
        fake,
        memory,
        engine,
        stop,
        _stop_tx: tx,
    }
}

/// `n` collectors, each with a clear `OPENAEV_TOKEN`, a random `COLLECTOR_ID`
/// and one secret encrypted as OpenAEV does (version 1).
fn collectors(n: usize) -> Vec<Value> {
    let v = vectors();
    let secret = v["rsa2048"]["v1_pkcs1v15"].as_str().unwrap().to_string();
    (0..n)
        .map(|i| {
            let config = vec![
                ("OPENAEV_TOKEN", "platform-side-token", false),
                ("COLLECTOR_ID", "5f1c0a4e", false),
                ("COLLECTOR_API_KEY", secret.as_str(), true),
                ("COLLECTOR_PERIOD", "60", false),
            ];
            let id = format!("aev-{i}");
            instance(
                &id,
                &format!("Collector {i}"),
                "openaev/collector-x:2.4.0",
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

/// The operation of each request the fake received, from its method and path.
fn ops(fake: &FakeOpenAev) -> Vec<&'static str> {
    fake.requests()
        .iter()
        .map(
            |r| match (r.method.as_str(), r.path.rsplit('/').next().unwrap_or("")) {
                (_, "version") => "version",
                (_, "register") => "register",
                (_, "refresh-connectivity") => "ping",
                ("GET", "connector-instances") => "list",
                (_, "status") => "status",
                (_, "logs") => "logs",
                (_, "health-check") => "health",
                _ => "other",
            },
        )
        .collect()
}

#[test]
fn a_fresh_platform_deploys_in_the_first_cycle_after_the_first_alive_tick() {
    let mut w = world(collectors(3));
    w.engine.alive_tick();
    assert!(w.engine.is_registered());
    let r = w.engine.cycle(&w.stop);
    assert!(r.ran);
    assert_eq!(r.failures, 0);
    assert_eq!(w.memory.count("deploy "), 3);
    // One listing, after the registration, and no refused one before it.
    assert_eq!(
        &ops(&w.fake)[..4],
        ["version", "register", "list", "status"]
    );
    assert_eq!(ops(&w.fake).iter().filter(|o| **o == "list").count(), 1);
    for i in 0..3 {
        assert_eq!(
            w.fake.current_status(&format!("aev-{i}")).as_deref(),
            Some("started")
        );
    }
}

#[test]
fn the_running_loop_deploys_in_its_very_first_cycle() {
    capture_logs();
    let fake = FakeOpenAev::start(TOKEN);
    fake.set_instances(collectors(2));
    let memory = Arc::new(MemoryOrchestrator::new());
    let engine = engine_for(&settings(&fake), memory.clone());
    let (tx, rx) = bounded::<()>(0);
    let loops = xtm_composer::liveness::Loops::default();
    let pool = xtm_composer::pool::Pool::new(4, 16, &loops).unwrap();
    let threads = engine.spawn(pool.handle(), &rx, &loops).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while memory.count("deploy ") < 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(tx);
    for t in threads.into_iter().chain(pool.close()) {
        t.join().unwrap();
    }
    assert_eq!(memory.count("deploy "), 2);
    // Both deploys came from the first cycle: one workload listing, one platform listing.
    assert_eq!(
        memory.list_calls.load(std::sync::atomic::Ordering::SeqCst),
        1
    );
    assert_eq!(&ops(&fake)[..3], ["version", "register", "list"]);
}

#[test]
fn a_listing_refused_for_an_unknown_manager_registers_and_retries_in_the_same_cycle() {
    let mut w = world(collectors(2));
    w.engine.alive_tick();
    // The platform lost the registration (restored backup, another composer).
    w.fake.forget_registration();
    let before = ops(&w.fake).len();
    let r = w.engine.cycle(&w.stop);
    assert!(r.ran, "the cycle is not lost");
    assert_eq!(w.memory.count("deploy "), 2);
    assert_eq!(
        &ops(&w.fake)[before..before + 3],
        ["list", "register", "list"]
    );
    assert_eq!(w.fake.registrations(), 2);
    assert!(w.engine.is_registered());
}

#[test]
fn a_version_change_on_openaev_registers_again() {
    let mut w = world(vec![]);
    w.engine.alive_tick();
    assert_eq!(w.fake.registrations(), 1);

    // Ping answers the version stored at registration, so the composer asks
    // `settings/version` after each ping: a rolling upgrade between two pings
    // is seen at the next alive tick.
    w.fake.set_version("2.5.0");
    w.engine.alive_tick();
    assert_eq!(w.fake.registrations(), 2);
    assert_eq!(w.fake.registration().unwrap().version, "2.5.0");
    w.engine.alive_tick();
    assert_eq!(w.fake.registrations(), 2, "steady once the versions agree");

    // A restart with an upgrade: the failed ping sends the loop back to
    // version + register.
    w.fake.set_version("2.5.1");
    w.fake.stop();
    w.engine.alive_tick();
    w.fake.restart();
    w.engine.alive_tick();
    assert_eq!(w.fake.registrations(), 3);
    assert_eq!(w.fake.registration().unwrap().version, "2.5.1");

    // A registration stored at another version (another replica registered
    // after an upgrade): ping reports it, and the composer registers again.
    w.fake.set_version("2.6.0");
    let s = settings(&w.fake);
    let other = engine_for(&s, Arc::new(MemoryOrchestrator::new()));
    other.platform.register().unwrap();
    assert_eq!(w.fake.registrations(), 4);
    w.engine.alive_tick();
    assert_eq!(w.fake.registrations(), 5);
    assert_eq!(ops(&w.fake).last(), Some(&"register"));
}

#[test]
fn values_encrypted_v1_and_v2_both_reach_the_env_with_openaev_url() {
    let v = vectors();
    let k = &v["rsa2048"];
    let plaintext = k["plaintext"].as_str().unwrap().to_string();
    let config = vec![
        ("OPENAEV_TOKEN", "platform-side-token", false),
        ("INJECTOR_ID", "0b7c8d1e", false),
        ("SECRET_V1", k["v1_pkcs1v15"].as_str().unwrap(), true),
        ("SECRET_V2", k["v2_oaep_sha256"].as_str().unwrap(), true),
        ("EMPTY_V2", k["v2_empty_plaintext"].as_str().unwrap(), true),
    ];
    let inj = instance(
        "inj-1",
        "Nmap Injector",
        "openaev/injector-nmap:2.4.0",
        "hash-9",
        "starting",
        config,
    );
    let mut w = world(vec![inj]);
    w.engine.alive_tick();
    assert!(w.engine.cycle(&w.stop).ran);

    let entry = w.memory.get("nmap-injector").unwrap();
    assert_eq!(entry.workload.platform.as_deref(), Some("openaev"));
    assert_eq!(entry.image, "openaev/injector-nmap:2.4.0");
    let env = env_of(&w.memory, "nmap-injector");
    for want in [
        format!("SECRET_V1={plaintext}"),
        format!("SECRET_V2={plaintext}"),
        "EMPTY_V2=".to_string(),
        "OPENAEV_TOKEN=platform-side-token".to_string(),
        format!("OPENAEV_URL={}", w.fake.url()),
        "OPENCTI_CONFIG_HASH=hash-9".to_string(),
    ] {
        assert!(env.contains(&want), "{want} missing from {env:?}");
    }
    assert!(
        !env.iter().any(|e| e.starts_with("OPENCTI_URL=")),
        "{env:?}"
    );
    for line in logged() {
        assert!(!line.contains(&plaintext), "secret in log: {line}");
        assert!(!line.contains(TOKEN), "token in log: {line}");
    }
}

#[test]
fn openaev_url_is_the_connector_url_when_one_is_set() {
    capture_logs();
    let fake = FakeOpenAev::start(TOKEN);
    fake.set_instances(collectors(1));
    let mut s = settings(&fake);
    s.openaev.connector_url = Some("http://openaev.internal:8080".into());
    let memory = Arc::new(MemoryOrchestrator::new());
    let mut engine = engine_for(&s, memory.clone());
    let (_tx, stop) = bounded::<()>(0);
    engine.alive_tick();
    engine.cycle(&stop);
    let env = env_of(&memory, "collector-0");
    assert!(
        env.contains(&"OPENAEV_URL=http://openaev.internal:8080".to_string()),
        "{env:?}"
    );
}

#[test]
fn a_shuffled_configuration_refreshes_nothing_and_a_new_hash_does() {
    let mut w = world(collectors(2));
    w.engine.alive_tick();
    for _ in 0..4 {
        w.engine.cycle(&w.stop);
    }
    assert_eq!(w.memory.count("deploy "), 2);
    assert_eq!(w.memory.count("refresh "), 0);
    w.fake.set_hash("aev-1", "h2");
    w.engine.cycle(&w.stop);
    assert_eq!(w.memory.count("refresh collector-1"), 1);
    assert!(env_of(&w.memory, "collector-1").contains(&"OPENCTI_CONFIG_HASH=h2".to_string()));
}

#[test]
fn status_health_and_logs_reach_openaev() {
    let mut w = world(collectors(2));
    w.engine.alive_tick();
    w.engine.cycle(&w.stop);
    w.engine.cycle(&w.stop);
    for i in 0..2 {
        let id = format!("aev-{i}");
        assert_eq!(w.fake.health_reports(&id), 1, "{id}");
        let h = w.fake.health(&id).unwrap();
        assert_eq!(h["is_in_reboot_loop"], false);
        assert!(h["started_at"].as_str().unwrap().ends_with('Z'));
        let lines = w.fake.logs(&id).unwrap();
        assert!(
            lines.contains(&format!("collector-{i} line 1")),
            "{lines:?}"
        );
    }
    w.fake.set_requested("aev-0", "stopping");
    w.engine.cycle(&w.stop);
    assert_eq!(w.fake.current_status("aev-0").as_deref(), Some("stopped"));
    let state = w.memory.get("collector-0").unwrap().workload.state;
    assert_eq!(state, WorkloadState::Stopped);
    assert_eq!(w.fake.current_status("aev-1").as_deref(), Some("started"));
}

fn orphan(name: &str, id: &str) -> Workload {
    Workload {
        name: name.into(),
        connector_id: Some(id.into()),
        platform: Some("openaev".into()),
        hash: Some("h0".into()),
        state: WorkloadState::Running,
        restart_count: 0,
        started_at: None,
        waiting_reason: None,
        defect: None,
    }
}

#[test]
fn d13_a_malformed_instance_postpones_cleanup_but_not_the_others() {
    let mut bad = collectors(1).remove(0);
    bad["connector_instance_id"] = Value::from("aev-bad");
    bad.as_object_mut().unwrap().remove("connector_image");
    let mut list = collectors(1);
    list.push(bad);
    let mut w = world(list);
    w.memory.insert(orphan("old-collector", "aev-old"), vec![]);
    w.engine.alive_tick();
    w.engine.cycle(&w.stop);
    assert_eq!(w.memory.count("deploy collector-0"), 1);
    assert!(
        w.memory.get("old-collector").is_some(),
        "no cleanup on a partial listing"
    );

    w.fake.remove_instance("aev-bad");
    w.engine.cycle(&w.stop);
    assert!(w.memory.get("old-collector").is_none());
    assert!(w.memory.get("collector-0").is_some());
}

#[test]
fn a_stopped_platform_skips_cycles_without_removing_anything_and_recovers() {
    let mut w = world(collectors(2));
    w.engine.alive_tick();
    w.engine.cycle(&w.stop);
    w.fake.stop();
    let r = w.engine.cycle(&w.stop);
    assert!(!r.ran);
    w.engine.alive_tick();
    assert_eq!(w.memory.entries.lock().unwrap().len(), 2);
    assert_eq!(w.memory.count("remove "), 0);

    w.fake.restart();
    w.fake.set_requested("aev-1", "stopping");
    w.engine.alive_tick();
    assert!(w.engine.cycle(&w.stop).ran);
    assert_eq!(w.fake.current_status("aev-1").as_deref(), Some("stopped"));
}

/// `xtm-composer plan` plans with `observe_and_plan`: an OpenAEV that does not
/// know the manager refuses the listing, and the plan fails without
/// registering (the command stays read-only on the platform too).
#[test]
fn planning_for_an_unknown_manager_fails_without_registering() {
    let w = world(collectors(2));
    let err = w
        .engine
        .observe_and_plan()
        .expect_err("the listing is refused");
    assert!(err.to_string().contains("not registered"), "{err}");
    assert_eq!(ops(&w.fake), ["list"]);
    assert_eq!(w.fake.registrations(), 0);
    assert_eq!(w.memory.count("deploy "), 0);
}
