//! Benchmark of the real binary on the real Docker engine (issues 3, 10, 15). Prints
//! figures, asserts nothing on speed. N connectors (`BENCH_CONNECTORS`, default 50, each
//! with a plain value, a v1 and a v2 secret under the 4096-bit key) served by the
//! in-process fake OpenCTI, phases in this order:
//!
//! 1. the engine floor: the bench itself creates and starts N containers of the same
//!    image with direct engine calls, `max_parallel` at a time, then stops and starts
//!    them again (the floor of a platform flip);
//! 2. the composer's baseline RSS with no connector;
//! 3. start -> all N deployed, started and reported, with the composer's CPU;
//! 4. an idle window (`BENCH_IDLE_SECS`): engine calls, CPU and RSS per idle cycle,
//!    once while the containers are in their first minute and once after it;
//! 5. `docker kill` of one container -> `stopped` reported (engine events, issue 11),
//!    then running and reported `started` again;
//! 6. one more connector -> started and reported;
//! 7. a platform flip: all N requested `stopping`, then `starting`; time to all started
//!    and reported;
//! 8. the same flip with one more connector whose image pull stalls: its registry is a
//!    local proxy in front of 127.0.0.1:5000 that holds every manifest request.
//!
//! Run as in docs/benchmarks.md, "How to rerun". Needs the engine and images of
//! `scripts/` (see tests/docker_e2e.rs).

#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::net::{Shutdown, TcpListener, TcpStream};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use base64::Engine as _;
use common::composer::{
    Cleanup, Composer, DEFAULT_SOCKET, Engine, Forwarder, REGISTRY, REGISTRY_PASSWORD,
    REGISTRY_USER, Seen, Setup, binary, scratch, vectors,
};
use common::engine::{eventually, query};
use common::fake_opencti::{FakeOpenCti, connector};
use common::http1;
use serde_json::{Value, json};

const TOKEN: &str = "bench-token";
/// The default connector image: busybox waiting for SIGTERM, doing nothing else, so
/// the engine and the composer are measured, not the image (the ticker's `sleep 1`
/// and two log lines a second per container loaded a 2-core machine to a load of 90
/// with 500 of them). Built from `local/busybox:1` when missing.
const IDLE_IMAGE: &str = "xtm-bench/idle:1";

fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn enabled(phase: &str) -> bool {
    let phases = std::env::var("BENCH_PHASES").unwrap_or_else(|_| "all".into());
    phases == "all" || phases.split(',').any(|p| p.trim() == phase)
}

fn clock_ticks() -> f64 {
    let out = Command::new("getconf").arg("CLK_TCK").output().ok();
    out.and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
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

fn count_running(engine: &Engine, manager: &str) -> usize {
    let all = engine.containers(manager);
    all.iter().filter(|c| c["State"] == "running").count()
}

/// Connector `c{i}` with a plain value, a v1 and a v2 secret.
fn bench_connector(manager: &str, keys: &Value, i: usize, image: &str, requested: &str) -> Value {
    let config = vec![
        ("PLAIN", "bench", false),
        ("SECRET_V1", keys["v1_pkcs1v15"].as_str().unwrap(), true),
        ("SECRET_V2", keys["v2_oaep_sha256"].as_str().unwrap(), true),
    ];
    let name = format!("{manager} C{i}");
    connector(&format!("c{i}"), &name, image, "h1", requested, config)
}

struct Config {
    n: usize,
    max_parallel: usize,
    execute: u64,
    idle: Duration,
    image: String,
    limit: Duration,
    stall_limit: Duration,
}

fn main() {
    let cfg = Config {
        n: setting("BENCH_CONNECTORS", 50) as usize,
        max_parallel: setting("BENCH_MAX_PARALLEL", 4) as usize,
        execute: setting("BENCH_EXECUTE_SCHEDULE", 10),
        idle: Duration::from_secs(setting("BENCH_IDLE_SECS", 60)),
        image: std::env::var("BENCH_IMAGE").unwrap_or_else(|_| IDLE_IMAGE.into()),
        limit: Duration::from_secs(setting("BENCH_LIMIT_SECS", 1800)),
        stall_limit: Duration::from_secs(setting("BENCH_STALL_LIMIT_SECS", 120)),
    };
    let engine = Engine::shared();
    if cfg.image == IDLE_IMAGE && !engine.has_image(IDLE_IMAGE) {
        build_idle_image();
    }
    let pid = std::process::id();
    let manager = format!("xtm-bench-{pid}");
    let floor_manager = format!("xtm-bench-floor-{pid}");
    let _cleanup = Cleanup {
        engine: engine.clone(),
        managers: vec![manager.clone(), floor_manager.clone()],
    };
    let bin = binary();
    let size = std::fs::metadata(&bin).map(|m| m.len()).unwrap_or(0);
    println!(
        "xtm-composer docker benchmark: {} connectors of {}, max_parallel {}, execute_schedule {} s, logs_schedule 10 s",
        cfg.n, cfg.image, cfg.max_parallel, cfg.execute
    );
    println!(
        "  binary                           {} ({:.2} MB)",
        bin.display(),
        size as f64 / 1e6
    );
    println!("  load average at start            {}", load_average());

    if enabled("floor") {
        floor(&engine, &floor_manager, &cfg);
        engine.remove_all(&floor_manager);
    }
    let vectors = vectors();
    let keys = &vectors["rsa4096"];
    let dir = scratch("bench");
    let setup = |fake: &FakeOpenCti, forwarder: &Forwarder| {
        Setup::new(&dir, &fake.url(), TOKEN, &manager, DEFAULT_SOCKET)
            .key(keys["private_key_pkcs8_pem"].as_str().unwrap())
            .var("OPENCTI__DAEMON__DOCKER__HOST", &forwarder.host())
            .var("MANAGER__EXECUTE_SCHEDULE", &cfg.execute.to_string())
            .var("MANAGER__MAX_PARALLEL", &cfg.max_parallel.to_string())
            .var("MANAGER__PING_ALIVE_SCHEDULE", "60")
            .var("OPENCTI__LOGS_SCHEDULE", "10")
            .var("MANAGER__LOGGER__LEVEL", "info")
    };
    let fake = FakeOpenCti::start(TOKEN);
    let forwarder = Forwarder::start(&dir.join("engine.sock"), DEFAULT_SOCKET);

    // 2. Baseline: the same composer with no connector, after two listings.
    let base_rss = enabled("baseline").then(|| {
        let mut composer = setup(&fake, &forwarder).spawn("baseline");
        wait_listings(&forwarder, 2, Duration::from_secs(cfg.execute * 4));
        let (_, rss, hwm) = composer.usage().unwrap();
        println!("  no connector: RSS / VmHWM        {rss} / {hwm} KiB");
        composer.terminate(Duration::from_secs(10));
        rss
    });

    // 3. Deploy.
    let all: Vec<Value> = (0..cfg.n)
        .map(|i| bench_connector(&manager, keys, i, &cfg.image, "starting"))
        .collect();
    fake.set_connectors(all);
    let t0 = Instant::now();
    let mut composer = setup(&fake, &forwarder).spawn("bench");
    let ids: Vec<String> = (0..cfg.n).map(|i| format!("c{i}")).collect();
    composer.wait_until(cfg.limit, "all containers running", || {
        (count_running(&engine, &manager) == cfg.n).then_some(())
    });
    let t_running = t0.elapsed();
    composer.wait_until(cfg.limit, "all reported started", || {
        all_reported(&fake, &ids, "started").then_some(())
    });
    let t_reported = t0.elapsed();
    let (deploy_ticks, deploy_rss, _) = composer.usage().unwrap();
    let deploy_cpu = deploy_ticks as f64 / clock_ticks();
    println!("  start -> all containers running  {}", secs(t_running));
    println!("  start -> all reported started    {}", secs(t_reported));
    println!(
        "  CPU until then                   {deploy_cpu:.2} s ({:.1} ms per connector), RSS {deploy_rss} KiB",
        deploy_cpu * 1000.0 / cfg.n as f64
    );

    // 4. Idle window, from the first listing after everything is reported. Docker's
    // `Status` text ("Up 5 seconds", "Up 2 minutes") changes with uptime and invalidates
    // the orchestrator's inspect cache; BENCH_SETTLE_SECS lets it age first.
    thread::sleep(Duration::from_secs(setting("BENCH_SETTLE_SECS", 0)));
    if enabled("idle") {
        println!("  -- idle, containers in their first minute");
        idle(&composer, &forwarder, &cfg, base_rss);
        // Uptime texts ("Up 5 seconds") moved every cycle of that first minute;
        // they move once a minute from now on.
        let young = Duration::from_secs(70).saturating_sub(t0.elapsed() - t_running);
        thread::sleep(young);
        println!("  -- idle, containers older than a minute");
        idle(&composer, &forwarder, &cfg, base_rss);
    }

    // 5. docker kill behind the composer's back.
    if enabled("kill") {
        kill(&fake, &engine, &mut composer, &manager, &cfg);
    }

    // 6. One more connector while idle: from its appearance to running and reported.
    let mut n = cfg.n;
    if enabled("one-more") {
        let mut all = current(&fake, &manager, keys, n, &cfg.image);
        all.push(bench_connector(&manager, keys, n, &cfg.image, "starting"));
        let t = Instant::now();
        fake.set_connectors(all);
        let id = format!("c{n}");
        composer.wait_until(cfg.limit, "the new connector reported started", || {
            (fake.current_status(&id).as_deref() == Some("started")).then_some(())
        });
        n += 1;
        println!(
            "  one more connector -> reported   {} (latency bound: execute_schedule)",
            secs(t.elapsed())
        );
    }

    // 7. Platform flip: everything stopped and reported, then requested `starting`.
    let ids: Vec<String> = (0..n).map(|i| format!("c{i}")).collect();
    if enabled("flip") {
        stop_all(&fake, &engine, &mut composer, &manager, &ids, cfg.limit);
        let t = Instant::now();
        for id in &ids {
            fake.set_requested(id, "starting");
        }
        composer.wait_until(cfg.limit, "all started after the flip", || {
            (count_running(&engine, &manager) == n).then_some(())
        });
        let t_running = t.elapsed();
        composer.wait_until(cfg.limit, "all reported started after the flip", || {
            all_reported(&fake, &ids, "started").then_some(())
        });
        println!(
            "  flip -> all {n} running / reported {} / {}",
            secs(t_running),
            secs(t.elapsed())
        );
    }

    // 8. The same flip with one more connector whose pull stalls.
    if enabled("stall") {
        stall(&fake, &engine, &mut composer, &manager, keys, &ids, &cfg);
    }
    stop(&mut composer);
}

/// `IDLE_IMAGE` from `local/busybox:1` (scripts/make-test-images.sh), through the
/// Engine API's build endpoint with a one-file context (tar and curl, as the scripts do).
fn build_idle_image() {
    let dir = scratch("bench-image");
    std::fs::write(
        dir.join("Dockerfile"),
        "FROM local/busybox:1\nCMD [\"/bin/sh\", \"-c\", \"trap 'exit 0' TERM INT; sleep 2147483647 & wait\"]\n",
    )
    .unwrap();
    let tar = dir.join("context.tar");
    let ok = Command::new("tar")
        .arg("-cf")
        .arg(&tar)
        .arg("-C")
        .arg(&*dir)
        .arg("Dockerfile")
        .status()
        .unwrap();
    assert!(ok.success(), "tar of the idle image's context failed");
    let out = Command::new("curl")
        .args(["-sS", "--unix-socket", DEFAULT_SOCKET, "-X", "POST"])
        .args(["-H", "Content-Type: application/x-tar", "--data-binary"])
        .arg(format!("@{}", tar.display()))
        .arg(format!(
            "http://docker/v1.41/build?t={}&rm=1&forcerm=1",
            query(IDLE_IMAGE)
        ))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && !text.contains("\"error"),
        "building {IDLE_IMAGE}: {text}"
    );
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn all_reported(fake: &FakeOpenCti, ids: &[String], status: &str) -> bool {
    ids.iter()
        .all(|id| fake.current_status(id).as_deref() == Some(status))
}

/// The fake's connectors `c0..c{n-1}` as they are now (current status included).
fn current(fake: &FakeOpenCti, manager: &str, keys: &Value, n: usize, image: &str) -> Vec<Value> {
    (0..n)
        .map(|i| {
            let id = format!("c{i}");
            let mut c = bench_connector(manager, keys, i, image, "starting");
            c["manager_current_status"] = json!(fake.current_status(&id));
            c
        })
        .collect()
}

fn wait_listings(forwarder: &Forwarder, more: usize, limit: Duration) {
    let listings = |f: &Forwarder| {
        f.seen()
            .iter()
            .filter(|s| kind(s) == "list containers")
            .count()
    };
    let before = listings(forwarder);
    eventually(limit, "listings", || {
        (listings(forwarder) >= before + more).then_some(())
    });
}

/// Phase 1: N containers created and started by direct engine calls, `max_parallel`
/// threads each taking the next index; then stopped, and started again.
fn floor(engine: &Engine, manager: &str, cfg: &Config) {
    let names: Vec<String> = (0..cfg.n).map(|i| format!("{manager}-{i}")).collect();
    let on_all = |op: &(dyn Fn(&str) + Sync)| {
        let next = Mutex::new(0usize);
        let t = Instant::now();
        thread::scope(|s| {
            for _ in 0..cfg.max_parallel {
                s.spawn(|| {
                    loop {
                        let i = {
                            let mut n = next.lock().unwrap();
                            *n += 1;
                            *n - 1
                        };
                        let Some(name) = names.get(i) else { return };
                        op(name);
                    }
                });
            }
        });
        t.elapsed()
    };
    let labels = json!({ "opencti-manager": manager });
    let image = cfg.image.clone();
    let created = on_all(&|name| {
        engine.create_and_start(name, &image, labels.clone(), &[]);
    });
    let call = |method: &str, path: String, ok: u16| {
        let (code, body) = engine.api(method, &path, None, &[]);
        assert!(
            code == ok || code == 304,
            "{method} {path}: {code} {}",
            String::from_utf8_lossy(&body)
        );
    };
    on_all(&|name| {
        call(
            "POST",
            format!("/containers/{}/stop?t=10", query(name)),
            204,
        )
    });
    let started = on_all(&|name| call("POST", format!("/containers/{}/start", query(name)), 204));
    println!(
        "  engine floor: create+start {} / start {} ({} containers, {} at a time, curl per call)",
        secs(created),
        secs(started),
        cfg.n,
        cfg.max_parallel
    );
}

/// Phase 4: engine calls, CPU and RSS over the idle window.
fn idle(composer: &Composer, forwarder: &Forwarder, cfg: &Config, base_rss: Option<u64>) {
    wait_listings(forwarder, 1, Duration::from_secs(cfg.execute * 3));
    let first = forwarder.count() - 1;
    let (ticks0, _, _) = composer.usage().unwrap();
    let start = Instant::now();
    let mut max_rss = 0;
    while start.elapsed() < cfg.idle {
        thread::sleep(Duration::from_secs(1));
        max_rss = max_rss.max(composer.usage().unwrap().1);
    }
    let (ticks1, rss, hwm) = composer.usage().unwrap();
    let window: Vec<Seen> = forwarder.seen().split_off(first);
    let idle_cpu = (ticks1 - ticks0) as f64 / clock_ticks();
    let mut by_kind: BTreeMap<String, usize> = BTreeMap::new();
    for s in &window {
        *by_kind.entry(kind(s)).or_default() += 1;
    }
    let cycles = by_kind.get("list containers").copied().unwrap_or(0).max(1);
    let mut spans = cycle_spans(&window);
    spans.sort();
    println!(
        "  idle window                      {:.0} s, {cycles} cycles",
        cfg.idle.as_secs_f64()
    );
    println!(
        "  engine calls per idle cycle      {:.1} ({} calls)",
        window.len() as f64 / cycles as f64,
        window.len()
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
    println!(
        "  CPU over the idle window         {idle_cpu:.2} s ({:.1} ms per cycle)",
        idle_cpu * 1000.0 / cycles as f64
    );
    println!("  RSS now / max sampled / VmHWM    {rss} / {max_rss} / {hwm} KiB");
    if let Some(base) = base_rss {
        println!(
            "  RSS per connector                {:.1} KiB ((RSS now - no-connector RSS) / N)",
            rss.saturating_sub(base) as f64 / cfg.n as f64
        );
    }
}

/// `docker kill` of one running container of `manager`: the time until the platform
/// hears `stopped`, then until it runs and is reported `started` again (the
/// composer starts what the platform asks to run).
fn kill(fake: &FakeOpenCti, engine: &Engine, composer: &mut Composer, manager: &str, cfg: &Config) {
    let Some(victim) = engine
        .containers(manager)
        .into_iter()
        .find(|c| c["State"] == "running")
    else {
        println!("  docker kill: no running container");
        return;
    };
    let id = victim["Labels"]["opencti-connector-id"]
        .as_str()
        .unwrap_or("")
        .to_string();
    let container = victim["Id"].as_str().unwrap_or("").to_string();
    let status_reports = |status: &str| {
        fake.requests()
            .iter()
            .filter(|q| q.operation == "UpdateConnectorCurrentStatus")
            .filter(|q| {
                let v = q.variables.to_string();
                v.contains(&format!("\"{id}\"")) && v.contains(status)
            })
            .count()
    };
    let (stopped, started) = (status_reports("stopped"), status_reports("started"));
    let t = Instant::now();
    let (code, _) = engine.api("POST", &format!("/containers/{container}/kill"), None, &[]);
    if code != 204 {
        println!("  docker kill: the engine answered {code}");
        return;
    }
    composer.wait_until(cfg.limit, "the killed container reported stopped", || {
        (status_reports("stopped") > stopped).then_some(())
    });
    let t_stopped = t.elapsed();
    composer.wait_until(
        cfg.limit,
        "the killed container reported started again",
        || (status_reports("started") > started).then_some(()),
    );
    println!(
        "  docker kill -> stopped / started again reported {} / {} (poll every {} s)",
        secs(t_stopped),
        secs(t.elapsed()),
        cfg.execute
    );
}

/// All `ids` requested `stopping`; waits until none runs and all are reported `stopped`.
fn stop_all(
    fake: &FakeOpenCti,
    engine: &Engine,
    composer: &mut Composer,
    manager: &str,
    ids: &[String],
    limit: Duration,
) {
    for id in ids {
        fake.set_requested(id, "stopping");
    }
    composer.wait_until(limit, "all stopped before the flip", || {
        (count_running(engine, manager) == 0 && all_reported(fake, ids, "stopped")).then_some(())
    });
}

/// Phase 7: a flip with one more connector whose image sits behind a registry proxy
/// that holds its manifest request.
fn stall(
    fake: &FakeOpenCti,
    engine: &Engine,
    composer: &mut Composer,
    manager: &str,
    keys: &Value,
    ids: &[String],
    cfg: &Config,
) {
    stop_all(fake, engine, composer, manager, ids, cfg.limit);
    let proxy = StallProxy::start();
    let stalled_image = format!("{}/xtm-test/ticker:1", proxy.addr);
    let mut all = current(fake, manager, keys, ids.len(), &cfg.image);
    for c in &mut all {
        c["manager_requested_status"] = json!("starting");
    }
    let mut stalled = bench_connector(manager, keys, ids.len(), &stalled_image, "starting");
    stalled["id"] = json!("cstall");
    all.push(stalled);
    let t = Instant::now();
    fake.set_connectors(all);
    let n = ids.len();
    let reached = wait_for(cfg.stall_limit, || {
        count_running(engine, manager) >= n && all_reported(fake, ids, "started")
    });
    let held = proxy.held();
    match reached {
        true => println!(
            "  flip with a stalled pull -> all other {n} running and reported {}",
            secs(t.elapsed())
        ),
        false => println!(
            "  flip with a stalled pull -> all other {n} NOT running and reported within {} ({} running, {} reported started)",
            secs(cfg.stall_limit),
            count_running(engine, manager),
            ids.iter()
                .filter(|id| fake.current_status(id).as_deref() == Some("started"))
                .count()
        ),
    }
    println!(
        "    stalling registry proxy held {held} manifest request(s) (0 means the stall did not happen)"
    );
    if held == 0 {
        println!("    requests it saw: {:?}", proxy.seen.lock().unwrap());
    }
}

fn wait_for(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let t = Instant::now();
    while t.elapsed() < limit {
        if done() {
            return true;
        }
        thread::sleep(Duration::from_millis(200));
    }
    done()
}

/// A registry front on 127.0.0.1: forwards every request to the test registry with the
/// registry's credentials added (the engine has none for this address, and without them
/// it gives up before asking for the manifest), except manifest requests, which it
/// reads and never answers (the connection stays open, so the engine's pull waits). The
/// engine fetches blobs only after the manifest, so a held manifest stalls the pull
/// whatever the engine already has.
struct StallProxy {
    addr: String,
    held: Arc<Mutex<Vec<TcpStream>>>,
    /// `METHOD target` of every request read, held ones included.
    seen: Arc<Mutex<Vec<String>>>,
}

impl StallProxy {
    fn start() -> StallProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let held = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (keep, record) = (Arc::clone(&held), Arc::clone(&seen));
        thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let (keep, record) = (Arc::clone(&keep), Arc::clone(&record));
                thread::spawn(move || {
                    let _ = relay_or_hold(client, &keep, &record);
                });
            }
        });
        StallProxy { addr, held, seen }
    }

    fn held(&self) -> usize {
        self.held.lock().unwrap().len()
    }
}

/// One client connection: requests one at a time (the engine does not pipeline).
/// The engine tries HTTPS first even on a loopback registry: a TLS hello is
/// answered by closing, so it falls back to plain HTTP at once.
fn relay_or_hold(
    mut client: TcpStream,
    held: &Mutex<Vec<TcpStream>>,
    seen: &Mutex<Vec<String>>,
) -> std::io::Result<()> {
    let mut first = [0u8; 1];
    if client.peek(&mut first)? == 1 && first[0] == 0x16 {
        seen.lock().unwrap().push("TLS hello (closed)".into());
        return Ok(());
    }
    let upstream = TcpStream::connect(REGISTRY)?;
    let (mut from, mut to) = (upstream.try_clone()?, client.try_clone()?);
    thread::spawn(move || {
        let _ = std::io::copy(&mut from, &mut to);
        let _ = to.shutdown(Shutdown::Both);
    });
    let mut upstream = upstream;
    loop {
        let req = http1::read_request(&mut client)?;
        seen.lock()
            .unwrap()
            .push(format!("{} {}", req.method, req.target));
        if req.target.contains("/manifests/") {
            held.lock().unwrap().push(client);
            return Ok(());
        }
        let mut head = format!("{} {} HTTP/1.1\r\n", req.method, req.target);
        for (name, value) in &req.headers {
            if !["content-length", "transfer-encoding", "authorization"]
                .iter()
                .any(|h| name.eq_ignore_ascii_case(h))
            {
                head.push_str(&format!("{name}: {value}\r\n"));
            }
        }
        let credentials = format!("{REGISTRY_USER}:{REGISTRY_PASSWORD}");
        head.push_str(&format!(
            "Authorization: Basic {}\r\n",
            base64::engine::general_purpose::STANDARD.encode(credentials)
        ));
        if !req.body.is_empty() {
            head.push_str(&format!("Content-Length: {}\r\n", req.body.len()));
        }
        head.push_str("\r\n");
        upstream.write_all(head.as_bytes())?;
        upstream.write_all(&req.body)?;
    }
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
