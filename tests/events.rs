//! Engine events instead of polling (issue 11), with the real binary, the fake
//! OpenCTI and the real dockerd: a container killed or removed behind the
//! composer's back is reported (and recreated) long before the next poll; an
//! idle cycle costs one engine call. The poll period is set to a minute, so
//! only an event can explain a report within seconds; the latencies are
//! printed, not asserted to the millisecond.

mod common;

use std::thread;
use std::time::{Duration, Instant};

use common::composer::{
    Cleanup, DEFAULT_SOCKET, Engine, Forwarder, Setup, existing_name, scratch, vectors,
};
use common::fake_opencti::{FakeOpenCti, connector};

const TICKER: &str = "xtm-test/ticker:1";
const CONVERGE: Duration = Duration::from_secs(90);
/// Far below the one-minute poll period: only an engine event explains it.
const EVENT_BOUND: Duration = Duration::from_secs(20);

fn manager(test: &str) -> String {
    format!("xtm-ev-{test}-{}", std::process::id())
}

fn key() -> String {
    vectors()["rsa2048"]["private_key_pkcs8_pem"]
        .as_str()
        .unwrap()
        .to_string()
}

fn ticker(id: &str, m: &str) -> serde_json::Value {
    connector(
        id,
        &format!("{m} {id}"),
        TICKER,
        "h1",
        "starting",
        vec![("A", "1", false)],
    )
}

#[test]
fn a_killed_or_removed_container_is_reported_and_recreated_without_waiting_for_a_poll() {
    let engine = Engine::shared();
    let m = manager("kill");
    let _cleanup = Cleanup {
        engine: engine.clone(),
        managers: vec![m.clone()],
    };
    let token = format!("tok-ev-kill-{}", std::process::id());
    let fake = FakeOpenCti::start(&token);
    let dir = scratch("ev-kill");
    let setup = Setup::new(&dir, &fake.url(), &token, &m, DEFAULT_SOCKET)
        .key(&key())
        .var("MANAGER__EXECUTE_SCHEDULE", "60")
        .var("OPENCTI__LOGS_SCHEDULE", "3600");
    fake.set_connectors(vec![ticker("k", &m), ticker("r", &m)]);
    let mut composer = setup.spawn("run");
    let (k, r) = (
        existing_name(&format!("{m} k")),
        existing_name(&format!("{m} r")),
    );
    composer.wait_until(CONVERGE, "both running and reported started", || {
        (engine.all_in_state(&[k.clone(), r.clone()], true).is_some()
            && ["k", "r"]
                .iter()
                .all(|id| fake.current_status(id).as_deref() == Some("started")))
        .then_some(())
    });
    // Let the first cycle's window pass, so the next poll is a minute away.
    thread::sleep(Duration::from_secs(2));
    let reports_before = fake
        .requests()
        .iter()
        .filter(|q| q.operation == "UpdateConnectorCurrentStatus")
        .count();

    // docker kill: the platform hears `stopped` (then `started` again: the
    // composer starts what the platform asks to run).
    let (code, _) = engine.api("POST", &format!("/containers/{k}/kill"), None, &[]);
    assert_eq!(code, 204);
    let t = Instant::now();
    composer.wait_until(EVENT_BOUND, "k reported stopped after the kill", || {
        fake.requests()
            .iter()
            .filter(|q| q.operation == "UpdateConnectorCurrentStatus")
            .skip(reports_before)
            .any(|q| q.variables.to_string().contains("stopped"))
            .then_some(())
    });
    println!("docker kill -> stopped reported in {:?}", t.elapsed());
    composer.wait_until(EVENT_BOUND, "k running again", || {
        engine.all_in_state(std::slice::from_ref(&k), true)
    });

    // docker rm -f: recreated and reported.
    let id_before = engine.inspect(&r).unwrap()["Id"].clone();
    let (code, _) = engine.api("DELETE", &format!("/containers/{r}?force=true"), None, &[]);
    assert_eq!(code, 204);
    let t = Instant::now();
    composer.wait_until(EVENT_BOUND, "r recreated and running", || {
        engine
            .inspect(&r)
            .filter(|c| c["Id"] != id_before && c["State"]["Running"] == true)
            .map(|_| ())
    });
    println!("docker rm -f -> recreated in {:?}", t.elapsed());
    composer.wait_until(EVENT_BOUND, "r reported started", || {
        (fake.current_status("r").as_deref() == Some("started")).then_some(())
    });
    let log = std::fs::read_to_string(dir.join("run.log")).unwrap_or_default();
    assert!(
        log.contains("connector r: deployed"),
        "r was not deployed again:\n{log}"
    );
    composer.terminate_ok();
}

/// Idle: with nothing changing and logs not due, every cycle costs exactly one
/// engine call (the listing): no inspect because an uptime text moved. The
/// event stream's own long-poll requests are not cycle calls and are counted apart.
#[test]
fn an_idle_cycle_costs_one_engine_call() {
    let engine = Engine::shared();
    let m = manager("idle");
    let _cleanup = Cleanup {
        engine: engine.clone(),
        managers: vec![m.clone()],
    };
    let dir = scratch("ev-idle");
    let forwarder = Forwarder::start(&dir.join("engine.sock"), DEFAULT_SOCKET);
    let token = format!("tok-ev-idle-{}", std::process::id());
    let fake = FakeOpenCti::start(&token);
    let setup = Setup::new(&dir, &fake.url(), &token, &m, DEFAULT_SOCKET)
        .key(&key())
        .var("OPENCTI__DAEMON__DOCKER__HOST", &forwarder.host())
        .var("OPENCTI__LOGS_SCHEDULE", "3600");
    let ids = ["i0", "i1", "i2"];
    fake.set_connectors(ids.iter().map(|id| ticker(id, &m)).collect());
    let mut composer = setup.spawn("run");
    let names: Vec<String> = ids
        .iter()
        .map(|id| existing_name(&format!("{m} {id}")))
        .collect();
    composer.wait_until(CONVERGE, "three running and reported", || {
        (engine.all_in_state(&names, true).is_some()
            && ids
                .iter()
                .all(|id| fake.current_status(id).as_deref() == Some("started")))
        .then_some(())
    });
    // Settle: the first health reports and log shipments are done.
    thread::sleep(Duration::from_secs(4));
    let from = forwarder.count();
    // Ten one-second cycles; uptime texts move from "Up 5 seconds" to "Up 15 seconds".
    thread::sleep(Duration::from_secs(10));
    let seen = forwarder.seen();
    let cycle_calls: Vec<String> = seen[from..]
        .iter()
        .filter(|s| !s.path.contains("/events"))
        .map(|s| format!("{} {}", s.method, s.path))
        .collect();
    let listings = cycle_calls
        .iter()
        .filter(|c| c.contains("/containers/json"))
        .count();
    println!(
        "idle: {} engine calls in 10 s, {listings} of them listings",
        cycle_calls.len()
    );
    assert!(
        (8..=12).contains(&listings),
        "{listings} listings in ten 1-s cycles"
    );
    assert_eq!(
        cycle_calls.len(),
        listings,
        "more than the listing: {cycle_calls:?}"
    );
    composer.terminate_ok();
}

/// Removes the services of a manager when the test ends, even on panic.
struct Services(String);

impl Drop for Services {
    fn drop(&mut self) {
        let filter = common::engine::manager_filter(&self.0);
        let (_, body) = common::engine::engine("GET", &format!("/services?filters={filter}"), None);
        let list: Vec<serde_json::Value> = serde_json::from_slice(&body).unwrap_or_default();
        for id in list.iter().filter_map(|o| o["ID"].as_str()) {
            let _ = common::engine::engine("DELETE", &format!("/services/{id}"), None);
        }
    }
}

/// Swarm: a service scaled to 0 behind the composer's back (`docker service
/// scale x=0`) is reported stopped from the service's update event.
#[test]
fn a_service_scaled_to_zero_behind_the_composers_back_is_reported() {
    let state = common::engine::engine_json("/info")["Swarm"]["LocalNodeState"].clone();
    assert_eq!(
        state, "active",
        "run scripts/swarm.sh init first (scripts/test.sh does)"
    );
    let m = manager("swarm");
    let _cleanup = Services(m.clone());
    let token = format!("tok-ev-swarm-{}", std::process::id());
    let fake = FakeOpenCti::start(&token);
    let dir = scratch("ev-swarm");
    let setup = Setup::new(&dir, &fake.url(), &token, &m, DEFAULT_SOCKET)
        .key(&key())
        .registry()
        .var("OPENCTI__DAEMON__SELECTOR", "swarm")
        .var("OPENCTI__DAEMON__SWARM__NETWORK", "host")
        .var("MANAGER__EXECUTE_SCHEDULE", "60")
        .var("OPENCTI__LOGS_SCHEDULE", "3600");
    fake.set_connectors(vec![ticker("s", &m)]);
    let mut composer = setup.spawn("run");
    composer.wait_until(CONVERGE, "s reported started", || {
        (fake.current_status("s").as_deref() == Some("started")).then_some(())
    });
    let name = existing_name(&format!("{m} s"));
    let service = common::engine::engine_json(&format!("/services/{name}"));
    let version = service["Version"]["Index"].as_u64().unwrap();
    let mut spec = service["Spec"].clone();
    spec["Mode"]["Replicated"]["Replicas"] = serde_json::json!(0);
    let (code, body) = common::engine::engine(
        "POST",
        &format!("/services/{name}/update?version={version}"),
        Some(&spec),
    );
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
    let t = Instant::now();
    composer.wait_until(
        EVENT_BOUND,
        "s reported stopped after the scale to 0",
        || {
            fake.requests()
                .iter()
                .filter(|q| q.operation == "UpdateConnectorCurrentStatus")
                .any(|q| q.variables.to_string().contains("stopped"))
                .then_some(())
        },
    );
    println!(
        "service scaled to 0 -> stopped reported in {:?}",
        t.elapsed()
    );
    composer.terminate_ok();
}

/// dockerd restarted under a running composer (its own second dockerd): the
/// stream comes back by itself, the composer relists at once (events of the
/// outage are lost with it) and reports what changed (the engine restarted the
/// containers: a new start time), and events are heard again — all with a
/// one-minute poll.
#[test]
fn the_event_stream_comes_back_after_dockerd_restarts() {
    Engine::shared(); // the registry and the test images exist
    let m = manager("restart");
    let dockerd = common::composer::Dockerd::new(&std::path::PathBuf::from(format!(
        "/tmp/xev-{}",
        std::process::id()
    )));
    dockerd.start();
    let engine = Engine::at(&dockerd.socket);
    engine.pull(
        &format!("{}/xtm-test/ticker", common::composer::REGISTRY),
        "1",
    );
    let token = format!("tok-ev-restart-{}", std::process::id());
    let fake = FakeOpenCti::start(&token);
    let dir = scratch("ev-restart");
    let setup = Setup::new(&dir, &fake.url(), &token, &m, &dockerd.socket)
        .key(&key())
        .registry()
        .var("MANAGER__EXECUTE_SCHEDULE", "60")
        .var("OPENCTI__LOGS_SCHEDULE", "3600");
    fake.set_connectors(vec![ticker("a", &m), ticker("b", &m)]);
    let mut composer = setup.spawn("run");
    let (a, b) = (
        existing_name(&format!("{m} a")),
        existing_name(&format!("{m} b")),
    );
    composer.wait_until(CONVERGE, "both running, reported, with health", || {
        (engine.all_in_state(&[a.clone(), b.clone()], true).is_some()
            && ["a", "b"].iter().all(|id| {
                fake.current_status(id).as_deref() == Some("started") && fake.health(id).is_some()
            }))
        .then_some(())
    });
    let started_before = fake.health("a").unwrap()["started_at"].clone();

    dockerd.stop();
    thread::sleep(Duration::from_secs(2));
    dockerd.start();
    let t = Instant::now();
    // The engine brings `unless-stopped` containers back itself: a new start
    // time, which the composer sends as soon as it has relisted.
    composer.wait_until(EVENT_BOUND, "a's new start time reported", || {
        fake.health("a")
            .filter(|h| h["started_at"] != started_before)
            .map(|_| ())
    });
    println!("dockerd back -> new health reported in {:?}", t.elapsed());
    let log = std::fs::read_to_string(dir.join("run.log")).unwrap_or_default();
    assert!(log.contains("engine events unavailable"), "{log}");

    // And the stream came back by itself: events are heard again after the
    // outage was (the engine's own restarts of the containers).
    composer.wait_until(EVENT_BOUND, "an engine event after the outage", || {
        let log = std::fs::read_to_string(dir.join("run.log")).unwrap_or_default();
        let lost = log.find("engine events unavailable")?;
        log[lost..].contains("engine event start on").then_some(())
    });
    composer.terminate_ok();
}
