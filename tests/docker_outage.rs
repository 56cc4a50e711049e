//! The real `xtm-composer` binary through a Docker Engine outage (issue 3): a
//! second dockerd of its own (socket, data-root, exec-root) is stopped while
//! the composer deploys, the platform changes meanwhile, and the daemon comes
//! back. The shared dockerd is never stopped. Needs what `docker_e2e` needs.

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::composer::{
    Cleanup, DEFAULT_SOCKET, Dockerd, Engine, Forwarder, REGISTRY, Setup, env_map, existing_name,
    scratch, vectors,
};
use common::fake_opencti::{FakeOpenCti, connector};
use serde_json::{Value, json};

const CONVERGE: Duration = Duration::from_secs(120);
const TOKEN: &str = "tok-outage-Zq8";

fn manager() -> String {
    format!("xtm-outage-{}", std::process::id())
}

fn ticker(m: &str, i: usize, hash: &str, requested: &str) -> Value {
    let image = format!("{REGISTRY}/xtm-test/ticker:1");
    let config = vec![("PLAIN", hash, false)];
    connector(
        &format!("c{i}"),
        &format!("{m} C{i}"),
        &image,
        hash,
        requested,
        config,
    )
}

/// Connectors `0..n` with `change` applied, keeping the statuses the composer reported.
fn publish(fake: &FakeOpenCti, m: &str, n: usize, change: impl Fn(usize, Value) -> Option<Value>) {
    let list = (0..n)
        .filter_map(|i| {
            let mut c = change(i, ticker(m, i, "h1", "starting"))?;
            c["manager_current_status"] = json!(fake.current_status(&format!("c{i}")));
            Some(c)
        })
        .collect();
    fake.set_connectors(list);
}

fn errors_about_the_engine(log: &str) -> usize {
    log.lines()
        .filter(|l| l.contains("\"ERROR\"") && l.contains("cycle skipped"))
        .count()
}

fn listings(fake: &FakeOpenCti) -> usize {
    fake.requests()
        .iter()
        .filter(|r| r.operation == "GetConnectors")
        .count()
}

#[test]
fn a_docker_outage_mid_cycle_is_logged_and_the_state_converges_when_docker_is_back() {
    Engine::shared(); // the registry and the test images exist
    let m = manager();
    let dockerd = Dockerd::new(&PathBuf::from(format!("/tmp/xo-{}", std::process::id())));
    dockerd.start();
    let engine = Engine::at(&dockerd.socket);
    engine.pull(&format!("{REGISTRY}/xtm-test/ticker"), "1");

    let fake = FakeOpenCti::start(TOKEN);
    publish(&fake, &m, 4, |_, c| Some(c));
    let vectors = vectors();
    let dir = scratch("outage");
    let setup = Setup::new(&dir, &fake.url(), TOKEN, &m, &dockerd.socket)
        .key(
            vectors["rsa2048"]["private_key_pkcs8_pem"]
                .as_str()
                .unwrap(),
        )
        .registry()
        // One deploy at a time: the outage then always lands with deploys still
        // queued, however fast the engine is (dockerd stops within milliseconds
        // of the first new deploy; one create and start takes longer).
        .var("MANAGER__MAX_PARALLEL", "1");
    let mut composer = setup.spawn("run");
    let name = |i: usize| existing_name(&format!("{m} C{i}"));
    let running = |engine: &Engine, i: usize| {
        engine
            .inspect(&name(i))
            .is_some_and(|c| c["State"]["Running"] == true)
    };
    composer.wait_until(CONVERGE, "4 connectors running", || {
        (0..4).all(|i| running(&engine, i)).then_some(())
    });

    // Eight more connectors; dockerd stops as soon as the first of them is
    // deployed, while the rest of that cycle's deploys are queued or in flight.
    publish(&fake, &m, 12, |_, c| Some(c));
    let deployed = |log: &str| (4..12).any(|i| log.contains(&format!("connector c{i}: deployed")));
    let deadline = Instant::now() + CONVERGE;
    while !deployed(&composer.output()) {
        assert!(
            Instant::now() < deadline && composer.is_running(),
            "no new deploy:\n{}",
            composer.tail(30)
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    let t = Instant::now();
    dockerd.stop();
    let at_stop = composer
        .output()
        .lines()
        .filter(|l| l.contains(": deployed") && !l.contains("failed"))
        .count();
    println!(
        "dockerd stopped in {:?} with {at_stop} of 12 deploys logged",
        t.elapsed()
    );
    assert!(at_stop < 12, "the outage began after the cycle ended");

    // While the engine is down: one contract changes, one is stopped, one deleted.
    publish(&fake, &m, 12, |i, c| match i {
        1 => Some(ticker(&m, 1, "h2", "starting")),
        2 => Some(ticker(&m, 2, "h1", "stopping")),
        3 => None,
        _ => Some(c),
    });
    let (errors, listed) = (errors_about_the_engine(&composer.output()), listings(&fake));
    let log = composer.log.clone();
    composer.wait_until(CONVERGE, "3 more cycles failing on the engine", || {
        let now = errors_about_the_engine(&std::fs::read_to_string(&log).unwrap());
        (now >= errors + 3 && listings(&fake) >= listed + 3).then_some(())
    });
    assert!(composer.is_running());
    println!(
        "{}",
        composer
            .output()
            .lines()
            .rfind(|l| l.contains("cycle skipped"))
            .unwrap()
    );

    dockerd.start();
    let t = Instant::now();
    composer.wait_until(CONVERGE, "the new state on the engine", || {
        let ok = [0, 4, 5, 6, 7, 8, 9, 10, 11]
            .iter()
            .all(|&i| running(&engine, i))
            && engine.inspect(&name(1)).is_some_and(|c| {
                c["State"]["Running"] == true && env_map(&c)["OPENCTI_CONFIG_HASH"] == "h2"
            })
            && engine
                .inspect(&name(2))
                .is_some_and(|c| c["State"]["Running"] == false)
            && engine.inspect(&name(3)).is_none();
        ok.then_some(())
    });
    composer.wait_until(CONVERGE, "every status reported", || {
        (0..12)
            .filter(|i| *i != 3)
            .all(|i| {
                let want = if i == 2 { "stopped" } else { "started" };
                fake.current_status(&format!("c{i}")).as_deref() == Some(want)
            })
            .then_some(())
    });
    println!("converged {:?} after dockerd came back", t.elapsed());
    let all = engine.containers(&m);
    assert_eq!(
        all.len(),
        11,
        "one container per connector, no duplicate: {all:?}"
    );
    assert_eq!(env_map(&engine.inspect(&name(1)).unwrap())["PLAIN"], "h2");

    composer.terminate_ok();
    assert!(!composer.output().contains(TOKEN));
}

/// What such an outage can leave behind (seen in the test above with docker.io
/// 20.10): the engine keeps a stale runtime task under a container's id and
/// answers every start of it with 500 "task <id>: already exists". Injected
/// here at the socket, in front of the shared engine, for every start by name
/// (deploys start the new container by its id), so it happens every run.
#[test]
fn a_container_the_engine_cannot_start_under_its_id_is_deployed_again() {
    let engine = Engine::shared();
    let m = format!("xtm-stale-{}", std::process::id());
    let _cleanup = Cleanup {
        engine: engine.clone(),
        managers: vec![m.clone()],
    };
    let fake = FakeOpenCti::start(TOKEN);
    let config = vec![("PLAIN", "1", false)];
    fake.set_connectors(vec![connector(
        "c0",
        &format!("{m} C0"),
        "xtm-test/ticker:1",
        "h1",
        "stopping",
        config,
    )]);
    let vectors = vectors();
    let dir = scratch("stale");
    let forwarder = Forwarder::start(&dir.join("engine.sock"), DEFAULT_SOCKET);
    let setup = Setup::new(&dir, &fake.url(), TOKEN, &m, DEFAULT_SOCKET)
        .key(
            vectors["rsa2048"]["private_key_pkcs8_pem"]
                .as_str()
                .unwrap(),
        )
        .var("OPENCTI__DAEMON__DOCKER__HOST", &forwarder.host());
    let mut composer = setup.spawn("run");
    let name = existing_name(&format!("{m} C0"));
    let old = composer.wait_until(CONVERGE, "c0 created, not started", || {
        engine
            .inspect(&name)
            .map(|c| c["Id"].as_str().unwrap().to_string())
    });

    forwarder.answer_instead(
        "POST",
        &format!("/containers/{name}/start"),
        500,
        &format!("task {old}: already exists"),
    );
    fake.set_requested("c0", "starting");
    composer.wait_until(CONVERGE, "c0 running in a new container", || {
        engine
            .inspect(&name)
            .filter(|c| c["Id"] != old.as_str() && c["State"]["Running"] == true)
            .map(drop)
    });
    composer.wait_until(CONVERGE, "c0 reported started", || {
        (fake.current_status("c0").as_deref() == Some("started")).then_some(())
    });
    assert!(
        composer
            .output()
            .contains("container removed, deployed again next cycle")
    );
    assert_eq!(engine.containers(&m).len(), 1);
    composer.terminate_ok();
}

/// Issue 12 (fix 4): the composer killed (SIGKILL) between the container's
/// create and its proxy CA upload left a container whose env points at a
/// missing file; the next run saw the right hash and just started it. Now the
/// listing sees the missing CA, and the connector runs with its CA.
#[test]
fn a_deploy_killed_between_create_and_ca_upload_is_recreated_with_its_ca() {
    let engine = Engine::shared();
    let m = format!("xtm-halfca-{}", std::process::id());
    let _cleanup = Cleanup {
        engine: engine.clone(),
        managers: vec![m.clone()],
    };
    let fake = FakeOpenCti::start(TOKEN);
    let config = vec![("PLAIN", "1", false)];
    fake.set_connectors(vec![connector(
        "c0",
        &format!("{m} C0"),
        "xtm-test/ticker:1",
        "h1",
        "starting",
        config,
    )]);
    let dir = scratch("halfca");
    let ca = common::tls::TestCa::new();
    let ca_file = dir.join("proxy-ca.pem");
    std::fs::write(&ca_file, &ca.ca_pem).unwrap();
    let forwarder = Forwarder::start(&dir.join("engine.sock"), DEFAULT_SOCKET);
    let setup = Setup::new(&dir, &fake.url(), TOKEN, &m, DEFAULT_SOCKET)
        .key(
            vectors()["rsa2048"]["private_key_pkcs8_pem"]
                .as_str()
                .unwrap(),
        )
        .var("OPENCTI__WITH_PROXY", "true")
        .var("OPENCTI__HTTPS_PROXY_CA", ca_file.to_str().unwrap())
        .var("OPENCTI__DAEMON__DOCKER__HOST", &forwarder.host());
    let upload = "/archive?path=%2F";
    forwarder.hold("PUT", upload);
    let mut composer = setup.spawn("first");
    composer.wait_until(CONVERGE, "the CA upload in flight", || {
        forwarder
            .seen()
            .iter()
            .any(|r| r.method == "PUT" && r.path.ends_with(upload))
            .then_some(())
    });
    composer.kill9();
    forwarder.release();
    let name = existing_name(&format!("{m} C0"));
    let cut = engine.inspect(&name).expect("the container was created");
    assert_eq!(cut["State"]["Status"], "created");
    let bundle_path = env_map(&cut)["SSL_CERT_FILE"].clone();
    assert!(engine.read_file(&name, &bundle_path).is_none());

    let mut composer = setup.spawn("second");
    let old = cut["Id"].as_str().unwrap().to_string();
    composer.wait_until(CONVERGE, "c0 running again in a new container", || {
        engine
            .inspect(&name)
            .filter(|c| c["Id"] != old.as_str() && c["State"]["Running"] == true)
            .map(drop)
    });
    let bundle = engine
        .read_file(&name, &bundle_path)
        .expect("the CA bundle is in the container");
    assert!(bundle.starts_with(ca.ca_pem.as_bytes()));
    assert_eq!(engine.containers(&m).len(), 1);
    composer.terminate_ok();
}
