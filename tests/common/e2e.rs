//! The whole engine (real OpenCTI client, reconcile, executor) between the fake
//! OpenCTI and a real orchestrator: five ticker connectors go through deploy,
//! start, stop, refresh and removal, and the platform receives their statuses,
//! health and clean log lines; a crash-looping one is reported as a reboot
//! loop. Shared by the Portainer and Swarm tests.

use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender, bounded};
use serde_json::Value;
use xtm_composer::config::Settings;
use xtm_composer::crypto::{Decryptor, Key};
use xtm_composer::engine::{Decrypt, Engine, Options};
use xtm_composer::env::Context;
use xtm_composer::orchestrator::{
    EnvValue, EnvVar, HASH_MARKER, Orchestrator, Spec, Workload, WorkloadState,
};
use xtm_composer::platform::{Platform, PlatformKind, opencti};
use xtm_composer::secret::Secret;

use super::engine::{CRASHER, TICKER, assert_clean_ticker_lines, eventually};
use super::fake_opencti::{FakeOpenCti, connector};

const TOKEN: &str = "e2e-orchestrator-token";
const LIMIT: Duration = Duration::from_secs(90);

struct World {
    fake: FakeOpenCti,
    engine: Engine,
    stop: Receiver<()>,
    _stop_tx: Sender<()>,
}

impl World {
    /// Runs one cycle; every action of it must succeed.
    fn cycle(&mut self) {
        let report = self.engine.cycle(&self.stop);
        assert!(report.ran, "{report:?}");
        assert_eq!(report.failures, 0, "{report:?}");
    }

    /// Runs cycles until `check` answers (a cycle between tries).
    fn until<T>(&mut self, what: &str, mut check: impl FnMut(&FakeOpenCti) -> Option<T>) -> T {
        eventually(LIMIT, what, || {
            self.cycle();
            check(&self.fake)
        })
    }
}

fn world(orchestrator: Arc<dyn Orchestrator>, connectors: Vec<Value>) -> World {
    let vectors: Value =
        serde_json::from_str(include_str!("../fixtures/crypto-vectors.json")).unwrap();
    let key = Key::from_pem(
        vectors["rsa2048"]["private_key_pkcs8_pem"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    let pkcs1 = key.public_pkcs1_pem();
    let fake = FakeOpenCti::start(TOKEN);
    fake.set_version("6.8.0");
    fake.set_connectors(connectors);
    let mut settings = Settings::default();
    settings.opencti.url = fake.url();
    settings.opencti.token = Secret::new(TOKEN);
    settings.opencti.request_timeout = 10;
    let client = opencti::Client::new(&settings.opencti, "e2e-manager", "E2E", pkcs1).unwrap();
    let options = Options {
        execute_every: Duration::from_secs(10),
        ping_every: Duration::from_secs(60),
        // Logs every cycle: the test drives cycles itself.
        logs_every: Duration::ZERO,
        max_parallel: 4,
        name_prefix: None,
        show_env_vars: false,
        show_sensitive_env_vars: false,
        // Cycles are driven back to back here: removals need no wait.
        policy: xtm_composer::reconcile::Policy {
            removal_grace: Duration::ZERO,
            crash_loop_stop_after: None,
        },
        ..Options::default()
    };
    let ctx = Context::new(&settings, PlatformKind::OpenCti, &[], false);
    let decrypt: Arc<dyn Decrypt> = Arc::new(Decryptor::new(key));
    let platform: Arc<dyn Platform> = Arc::new(client);
    let engine = Engine::new(platform, orchestrator, decrypt, ctx, options, None);
    let (tx, stop) = bounded(0);
    World {
        fake,
        engine,
        stop,
        _stop_tx: tx,
    }
}

/// The workload `name` as the orchestrator lists it, if any.
fn listed(orchestrator: &dyn Orchestrator, name: &str) -> Option<Workload> {
    orchestrator
        .list()
        .unwrap()
        .into_iter()
        .find(|w| w.name == name)
}

/// Five connectors `{prefix}-0` … `-4` of image `TICKER` (three asked to run)
/// through their whole life, driven by the engine against `orchestrator`, whose
/// manager id must be unique to the test. Leaves nothing behind when it passes.
pub fn five_connectors_through_the_engine(orchestrator: Arc<dyn Orchestrator>, prefix: &str) {
    let ids: Vec<String> = (0..5).map(|i| format!("{prefix}-{i}")).collect();
    let connectors = ids
        .iter()
        .enumerate()
        .map(|(i, id)| {
            let requested = if i < 3 { "starting" } else { "stopping" };
            let config = vec![("CONNECTOR_LOG_LEVEL", "info", false)];
            // The name is the id, so the workload is named after it too.
            connector(id, id, TICKER, "h1", requested, config)
        })
        .collect();
    let mut w = world(Arc::clone(&orchestrator), connectors);
    w.engine.alive_tick();
    assert!(w.engine.is_registered());

    // Deploy: the running ones reported started right away; the others were
    // never reported started (a null status already reads as stopped).
    w.cycle();
    for (i, id) in ids.iter().enumerate() {
        let status = w.fake.current_status(id);
        if i < 3 {
            assert_eq!(status.as_deref(), Some("started"), "{id}");
        } else {
            assert_ne!(status.as_deref(), Some("started"), "{id}");
        }
        assert!(listed(&*orchestrator, id).is_some(), "{id} deployed");
    }

    // Health and clean logs for the running ones.
    w.until("health and logs of the running connectors", |fake| {
        let ready = ids[..3]
            .iter()
            .all(|id| fake.health(id).is_some() && fake.logs(id).is_some_and(|l| l.len() >= 2));
        ready.then_some(())
    });
    for id in &ids[..3] {
        let health = w.fake.health(id).unwrap();
        assert_eq!(health["is_in_reboot_loop"], false, "{id}: {health}");
        assert_eq!(health["restart_count"], 0, "{id}: {health}");
        assert_clean_ticker_lines(&w.fake.logs(id).unwrap());
    }
    for id in &ids[3..] {
        assert!(
            w.fake.health(id).is_none(),
            "a stopped connector has no health"
        );
    }

    // Stop one, start one, refresh one, delete one.
    w.fake.set_requested(&ids[0], "stopping");
    w.fake.set_requested(&ids[3], "starting");
    w.fake.set_hash(&ids[1], "h2");
    w.fake.remove_connector(&ids[4]);
    w.until("stop, start, refresh and removal applied", |fake| {
        let o = &*orchestrator;
        let state = |id: &str| listed(o, id).map(|w| w.state);
        let done = state(&ids[0]) == Some(WorkloadState::Stopped)
            && state(&ids[3]) == Some(WorkloadState::Running)
            && listed(o, &ids[1]).is_some_and(|w| {
                w.hash.as_deref() == Some("h2") && w.state == WorkloadState::Running
            })
            && listed(o, &ids[4]).is_none();
        (done
            && fake.current_status(&ids[0]).as_deref() == Some("stopped")
            && fake.current_status(&ids[3]).as_deref() == Some("started"))
        .then_some(())
    });

    // The platform forgets every connector: removing them all needs three
    // listings that agree (the removal grace is zero in this world).
    let before = orchestrator.list().unwrap().len();
    assert!(before > 2, "{before} workloads left: not a mass removal");
    w.fake.set_connectors(vec![]);
    w.cycle();
    w.cycle();
    assert_eq!(
        orchestrator.list().unwrap().len(),
        before,
        "removed too early"
    );
    w.cycle();
    assert!(orchestrator.list().unwrap().is_empty());
}

/// A connector whose container keeps crashing (image `CRASHER`, already
/// restarted more than 3 times when the engine first sees it) reaches the
/// platform as a reboot loop; the engine adopts the workload, does not replace it.
pub fn a_crash_loop_reaches_the_platform(orchestrator: Arc<dyn Orchestrator>, id: &str) {
    let spec = Spec {
        name: id.into(),
        connector_id: id.into(),
        platform: PlatformKind::OpenCti,
        image: CRASHER.into(),
        hash: "h1".into(),
        env: vec![EnvVar {
            key: HASH_MARKER.into(),
            value: EnvValue::Plain("h1".into()),
        }],
        start: true,
    };
    orchestrator.deploy(&spec).unwrap();
    eventually(LIMIT, "more than 3 restarts", || {
        listed(&*orchestrator, id).filter(|w| w.restart_count > 3)
    });
    let mut w = world(
        Arc::clone(&orchestrator),
        vec![connector(id, id, CRASHER, "h1", "starting", vec![])],
    );
    w.engine.alive_tick();
    let health = w.until("a health report", |fake| fake.health(id));
    println!("{id}: health reported {health}");
    assert_eq!(health["is_in_reboot_loop"], true, "{health}");
    assert!(health["restart_count"].as_i64().unwrap() > 3, "{health}");
    w.fake.set_connectors(vec![]);
    w.cycle();
    assert!(listed(&*orchestrator, id).is_none());
}
