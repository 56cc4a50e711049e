//! Benchmark of the real binary on the real Docker engine (issue 3): N
//! connectors (`BENCH_CONNECTORS`, default 50, each with a v1 and a v2 secret
//! under the 4096-bit key) served by the in-process fake OpenCTI. Prints the
//! time from start to all deployed and reported started, the Engine API calls
//! per idle cycle (counted by a unix-socket forwarder in front of dockerd),
//! the composer's CPU seconds and RSS over an idle window (`BENCH_IDLE_SECS`,
//! default 60, after `BENCH_SETTLE_SECS`, default 0), the span of an idle cycle,
//! the latency of one more connector, and the binary size. Asserts nothing on speed.
//!
//! `cargo bench --bench docker` measures the bench-profile (release) binary.
//! Quicker, as in docs/benchmarks.md: `cargo build --release --bin xtm-composer
//! && XTM_COMPOSER_BIN=target/release/xtm-composer cargo bench --profile dev
//! --bench docker` (only the measured binary needs the release profile). Needs
//! the engine and images of `scripts/` (see tests/docker_e2e.rs).

#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use common::composer::{
    Cleanup, Composer, DEFAULT_SOCKET, Engine, Forwarder, Seen, Setup, binary, scratch, vectors,
};
use common::engine::eventually;
use common::fake_opencti::{FakeOpenCti, connector};
use serde_json::Value;

const TOKEN: &str = "bench-token";

fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn clock_ticks() -> f64 {
    let out = Command::new("getconf").arg("CLK_TCK").output().ok();
    out.and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

/// What kind of Engine API call a request line is.
fn kind(s: &Seen) -> String {
    let path = s.path.split('?').next().unwrap_or_default();
    let path = path.splitn(3, '/').nth(2).map_or(path, |p| p); // drop `/v1.41`
    match (s.method.as_str(), path) {
        ("GET", "containers/json") => "list containers".into(),
        ("GET", p) if p.starts_with("containers/") && p.ends_with("/json") => {
            "inspect container".into()
        }
        ("GET", p) if p.ends_with("/logs") => "container logs".into(),
        (m, p) => format!("{m} {}", p.split('/').take(2).collect::<Vec<_>>().join("/")),
    }
}

fn running(engine: &Engine, manager: &str) -> usize {
    let all = engine.containers(manager);
    all.iter().filter(|c| c["State"] == "running").count()
}

/// Connectors `c0..c{n-1}`, each with a plain value, a v1 and a v2 secret.
fn connectors(manager: &str, keys: &Value, n: usize) -> Vec<Value> {
    (0..n)
        .map(|i| {
            let config = vec![
                ("PLAIN", "bench", false),
                ("SECRET_V1", keys["v1_pkcs1v15"].as_str().unwrap(), true),
                ("SECRET_V2", keys["v2_oaep_sha256"].as_str().unwrap(), true),
            ];
            let name = format!("{manager} C{i}");
            connector(
                &format!("c{i}"),
                &name,
                "xtm-test/ticker:1",
                "h1",
                "starting",
                config,
            )
        })
        .collect()
}

fn main() {
    let n = setting("BENCH_CONNECTORS", 50) as usize;
    let idle = Duration::from_secs(setting("BENCH_IDLE_SECS", 60));
    let execute = setting("BENCH_EXECUTE_SCHEDULE", 10);
    let engine = Engine::shared();
    let manager = format!("xtm-bench-{}", std::process::id());
    let _cleanup = Cleanup {
        engine: engine.clone(),
        managers: vec![manager.clone()],
    };
    let vectors = vectors();
    let keys = &vectors["rsa4096"];
    let fake = FakeOpenCti::start(TOKEN);
    fake.set_connectors(connectors(&manager, keys, n));
    let dir = scratch("bench");
    let forwarder = Forwarder::start(&dir.join("engine.sock"), DEFAULT_SOCKET);
    let setup = Setup::new(&dir, &fake.url(), TOKEN, &manager, DEFAULT_SOCKET)
        .key(keys["private_key_pkcs8_pem"].as_str().unwrap())
        .var("OPENCTI__DAEMON__DOCKER__HOST", &forwarder.host())
        .var("MANAGER__EXECUTE_SCHEDULE", &execute.to_string())
        .var("MANAGER__PING_ALIVE_SCHEDULE", "60")
        .var("OPENCTI__LOGS_SCHEDULE", "10")
        .var("MANAGER__LOGGER__LEVEL", "info");
    let bin = binary();
    let size = std::fs::metadata(&bin).map(|m| m.len()).unwrap_or(0);

    let t0 = Instant::now();
    let mut composer = setup.spawn("bench");
    let limit = Duration::from_secs(600);
    composer.wait_until(limit, "all containers running", || {
        (running(&engine, &manager) == n).then_some(())
    });
    let t_running = t0.elapsed();
    composer.wait_until(limit, "all reported started", || {
        (0..n)
            .all(|i| fake.current_status(&format!("c{i}")).as_deref() == Some("started"))
            .then_some(())
    });
    let t_reported = t0.elapsed();
    let (deploy_ticks, _, _) = composer.usage().unwrap();

    // Docker's `Status` text ("Up 5 seconds", "Up 2 minutes") changes with uptime and
    // invalidates the orchestrator's inspect cache; BENCH_SETTLE_SECS lets it age first.
    std::thread::sleep(Duration::from_secs(setting("BENCH_SETTLE_SECS", 0)));
    // The idle window starts at the first listing after everything is reported.
    let listings = |f: &Forwarder| {
        f.seen()
            .into_iter()
            .filter(|s| kind(s) == "list containers")
            .count()
    };
    let before = listings(&forwarder);
    eventually(
        Duration::from_secs(execute * 3),
        "a listing after deploy",
        || (listings(&forwarder) > before).then_some(()),
    );
    let first = forwarder.count() - 1;
    let (ticks0, _, _) = composer.usage().unwrap();
    let start = Instant::now();
    let mut max_rss = 0;
    while start.elapsed() < idle {
        std::thread::sleep(Duration::from_secs(1));
        max_rss = max_rss.max(composer.usage().unwrap().1);
    }
    let (ticks1, rss, hwm) = composer.usage().unwrap();
    let window: Vec<Seen> = forwarder.seen().split_off(first);

    // One more connector while idle: from its appearance on the platform to running and reported.
    let mut all = connectors(&manager, keys, n + 1);
    for c in &mut all {
        let id = c["id"].as_str().unwrap().to_string();
        c["manager_current_status"] = serde_json::json!(fake.current_status(&id));
    }
    let t_new = Instant::now();
    fake.set_connectors(all);
    let new_id = format!("c{n}");
    composer.wait_until(limit, "the new connector reported started", || {
        (fake.current_status(&new_id).as_deref() == Some("started")).then_some(())
    });
    let t_one = t_new.elapsed();
    report(&Figures {
        n,
        execute,
        idle,
        size,
        bin: bin.display().to_string(),
        t_running,
        t_reported,
        deploy_cpu: deploy_ticks as f64 / clock_ticks(),
        idle_cpu: (ticks1 - ticks0) as f64 / clock_ticks(),
        rss,
        max_rss,
        hwm,
        window,
        t_one,
    });
    stop(&mut composer);
}

struct Figures {
    n: usize,
    execute: u64,
    idle: Duration,
    size: u64,
    bin: String,
    t_running: Duration,
    t_reported: Duration,
    deploy_cpu: f64,
    idle_cpu: f64,
    rss: u64,
    max_rss: u64,
    hwm: u64,
    window: Vec<Seen>,
    t_one: Duration,
}

fn report(f: &Figures) {
    let mut by_kind: BTreeMap<String, usize> = BTreeMap::new();
    for s in &f.window {
        *by_kind.entry(kind(s)).or_default() += 1;
    }
    let cycles = by_kind.get("list containers").copied().unwrap_or(0).max(1);
    let mut spans = cycle_spans(&f.window);
    spans.sort();
    println!(
        "xtm-composer docker benchmark: {} connectors, execute_schedule {} s, logs_schedule 10 s",
        f.n, f.execute
    );
    println!(
        "  binary                         {} ({:.2} MB)",
        f.bin,
        f.size as f64 / 1e6
    );
    println!(
        "  start -> all containers running  {:.2} s",
        f.t_running.as_secs_f64()
    );
    println!(
        "  start -> all reported started    {:.2} s",
        f.t_reported.as_secs_f64()
    );
    println!("  CPU until then                   {:.2} s", f.deploy_cpu);
    println!(
        "  idle window                      {:.0} s, {cycles} cycles",
        f.idle.as_secs_f64()
    );
    println!(
        "  engine calls per idle cycle      {:.1} ({} calls)",
        f.window.len() as f64 / cycles as f64,
        f.window.len()
    );
    for (k, count) in &by_kind {
        println!("    {k:<30} {:.1} per cycle", *count as f64 / cycles as f64);
    }
    if let (Some(median), Some(max)) = (spans.get(spans.len() / 2), spans.last()) {
        println!(
            "  idle cycle span (list -> last call) median {:.0} ms, max {:.0} ms",
            median.as_secs_f64() * 1000.0,
            max.as_secs_f64() * 1000.0
        );
    }
    println!("  CPU over the idle window         {:.2} s", f.idle_cpu);
    println!(
        "  RSS now / max sampled / VmHWM    {} / {} / {} KiB",
        f.rss, f.max_rss, f.hwm
    );
    println!(
        "  one more connector -> reported   {:.2} s (latency bound: execute_schedule)",
        f.t_one.as_secs_f64()
    );
}

/// For each complete cycle in `window`: from its listing to its last engine
/// call (log fetches run on the shipper thread and are left out).
fn cycle_spans(window: &[Seen]) -> Vec<Duration> {
    let mut spans = Vec::new();
    let mut current: Option<(Instant, Instant)> = None;
    for s in window.iter().filter(|s| kind(s) != "container logs") {
        if kind(s) == "list containers" {
            if let Some((start, last)) = current {
                spans.push(last - start);
            }
            current = Some((s.at, s.at));
        } else if let Some((_, last)) = current.as_mut() {
            *last = s.at;
        }
    }
    spans
}

fn stop(composer: &mut Composer) {
    let (status, took) = composer.terminate(Duration::from_secs(10));
    println!(
        "  SIGTERM -> {status:?} in {:.0} ms",
        took.as_secs_f64() * 1000.0
    );
}
