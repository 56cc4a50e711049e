//! Observability end to end, with the real binary, the fake OpenCTI and the
//! real dockerd: a real Prometheus (Debian's `prometheus`) scrapes `/metrics`
//! and sees what the fake platform shows; `promtool check metrics` accepts the
//! exposition; `/healthz` names a hung loop and recovers; `/readyz` waits for
//! registration; the listener survives hostile clients without slowing the
//! loops; no secret reaches `/metrics`, `/status` or the trace-level log;
//! `xtm-composer status` prints the connectors.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use common::composer::{
    Cleanup, Composer, DEFAULT_SOCKET, Engine, Setup, binary, scratch, vectors,
};
use common::fake_opencti::{FakeOpenCti, connector};
use serde_json::Value;

const TICKER: &str = "xtm-test/ticker:1";
const CONVERGE: Duration = Duration::from_secs(90);

fn manager(test: &str) -> String {
    format!("xtm-obs-{test}-{}", std::process::id())
}

fn token(test: &str) -> String {
    format!("tok-obs-{test}-{}-Zq9", std::process::id())
}

/// A port free a moment ago on loopback.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Sends `raw` to `127.0.0.1:port`; the status code and body of the answer
/// (`None` when no answer came within 15 s).
fn http(port: u16, raw: &[u8]) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    s.write_all(raw).ok()?;
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = text.split_once("\r\n\r\n")?;
    let code = head.split(' ').nth(1)?.parse().ok()?;
    Some((code, body.to_string()))
}

fn get(port: u16, path: &str) -> Option<(u16, String)> {
    http(
        port,
        format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
    )
}

/// The value of the sample `name{labels}` (labels as written in the exposition).
fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// A Prometheus server on loopback with its own storage, scraping one target every second.
struct Prometheus {
    child: Child,
    port: u16,
}

impl Prometheus {
    fn start(dir: &Path, target: u16) -> Prometheus {
        let port = free_port();
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: xtm-composer\n    static_configs:\n      - targets: ['127.0.0.1:{target}']\n"
            ),
        )
        .unwrap();
        let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start prometheus (scripts/test.sh installs Debian's package): {e}")
            });
        Prometheus { child, port }
    }

    /// An instant query: each series' labels and value.
    fn query(&self, promql: &str) -> Vec<(Value, f64)> {
        let q: String = promql
            .bytes()
            .map(|b| match b {
                b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'.' => (b as char).to_string(),
                _ => format!("%{b:02X}"),
            })
            .collect();
        let Some((200, body)) = get(self.port, &format!("/api/v1/query?query={q}")) else {
            return Vec::new();
        };
        let v: Value = serde_json::from_str(&body).unwrap_or_default();
        v["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .map(|r| {
                let value = r["value"][1]
                    .as_str()
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(f64::NAN);
                (r["metric"].clone(), value)
            })
            .collect()
    }

    /// The single value of `promql`, once Prometheus has one.
    fn value(&self, promql: &str) -> Option<f64> {
        match self.query(promql).as_slice() {
            [(_, v)] => Some(*v),
            _ => None,
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn key_pem() -> String {
    vectors()["rsa2048"]["private_key_pkcs8_pem"]
        .as_str()
        .unwrap()
        .to_string()
}

/// A composer with the listener on a free port, against `fake` and the shared dockerd.
fn composer(dir: &Path, fake: &FakeOpenCti, token: &str, m: &str) -> (Setup, u16) {
    let port = free_port();
    let setup = Setup::new(dir, &fake.url(), token, m, DEFAULT_SOCKET)
        .key(&key_pem())
        .registry()
        .var(
            "MANAGER__OBSERVABILITY__LISTEN",
            &format!("127.0.0.1:{port}"),
        );
    (setup, port)
}

/// `xtm-composer status` with the setup's configuration and variables.
fn status_command(setup: &Setup) -> (Option<i32>, String) {
    let (code, out, err) = command(setup, &["status"]);
    (code, format!("{out}{err}"))
}

/// `xtm-composer {args} --config …` with the setup's variables: exit code, stdout, stderr.
fn command(setup: &Setup, args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(binary())
        .args(args)
        .arg("--config")
        .arg(setup.dir.join("config"))
        .env_clear()
        .envs(setup.env.iter().map(|(k, v)| (k, v)))
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_real_prometheus_scrapes_the_composer_and_sees_what_the_platform_shows() {
    let engine = Engine::shared();
    let m = manager("prom");
    let _cleanup = Cleanup {
        engine: engine.clone(),
        managers: vec![m.clone()],
    };
    let dir = scratch("obs-prom");
    let token = token("prom");
    let fake = FakeOpenCti::start(&token);
    let v = &vectors()["rsa2048"];
    let secret = v["plaintext"].as_str().unwrap().to_string();
    let cipher = v["v2_oaep_sha256"].as_str().unwrap();
    let conn = |id: &str, requested: &str| {
        let config = vec![("SECRET_KEY", cipher, true), ("PLAIN", "1", false)];
        connector(id, &format!("{m} {id}"), TICKER, "h1", requested, config)
    };
    let absent = format!("xtm-test/absent-{}:1", std::process::id());
    let gone = connector(
        "gone",
        &format!("{m} gone"),
        &absent,
        "h1",
        "starting",
        vec![],
    );
    fake.set_connectors(vec![
        conn("run1", "starting"),
        conn("run2", "starting"),
        conn("held", "stopping"),
        gone,
    ]);
    let (setup, port) = composer(&dir, &fake, &token, &m);
    let t0 = Instant::now();
    let mut c = setup.spawn("run");
    c.wait_until(
        CONVERGE,
        "two started and one stopped on the platform",
        || {
            let st = |id| fake.current_status(id);
            (st("run1").as_deref() == Some("started")
                && st("run2").as_deref() == Some("started")
                && st("held").as_deref() == Some("stopped"))
            .then_some(())
        },
    );
    // One more cycle so the picture shows the reported statuses.
    let metrics = c.wait_until(CONVERGE, "/metrics with 2 running, 1 in backoff", || {
        let (code, body) = get(port, "/metrics")?;
        let running = "xtm_composer_connectors{platform=\"opencti\",requested=\"starting\",actual=\"running\"}";
        let backoff = "xtm_composer_connectors_in_backoff{platform=\"opencti\"}";
        (code == 200 && sample(&body, running) == Some(2.0) && sample(&body, backoff) == Some(1.0))
            .then_some(body)
    });

    println!("converged after {:?}", t0.elapsed());
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (scripts/test.sh installs Debian's prometheus)");
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(metrics.as_bytes())
        .unwrap();
    let checked = promtool.wait_with_output().unwrap();
    assert!(
        checked.status.success(),
        "promtool check metrics: {}{}\n{metrics}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );

    let prom = Prometheus::start(&dir, port);
    let deadline = Instant::now() + Duration::from_secs(60);
    while prom.value("up{job=\"xtm-composer\"}") != Some(1.0) {
        assert!(
            Instant::now() < deadline,
            "Prometheus never saw up == 1: {:?}",
            prom.query("up")
        );
        thread::sleep(Duration::from_millis(500));
    }
    println!("prometheus saw up == 1 after {:?}", t0.elapsed());
    let q = |promql: &str| prom.value(promql);
    let wanted_starting = 3.0;
    assert_eq!(
        q("sum(xtm_composer_connectors{platform=\"opencti\",requested=\"starting\"})"),
        Some(wanted_starting)
    );
    assert_eq!(
        q("sum(xtm_composer_connectors{platform=\"opencti\",requested=\"stopping\"})"),
        Some(1.0)
    );
    // The platform shows 2 started and 1 stopped; so does the composer's gauge.
    let started_on_platform = ["run1", "run2", "held", "gone"]
        .iter()
        .filter(|id| fake.current_status(id).as_deref() == Some("started"))
        .count() as f64;
    assert_eq!(
        q("sum(xtm_composer_connectors{actual=\"running\"})"),
        Some(started_on_platform)
    );
    assert_eq!(
        q("sum(xtm_composer_connectors{actual=\"stopped\"})"),
        Some(1.0)
    );
    assert_eq!(
        q("xtm_composer_workloads{platform=\"opencti\",state=\"running\"}"),
        Some(2.0)
    );
    assert_eq!(
        q("xtm_composer_platform_up{platform=\"opencti\"}"),
        Some(1.0)
    );
    assert_eq!(
        q("xtm_composer_platform_registered{platform=\"opencti\"}"),
        Some(1.0)
    );
    assert_eq!(
        q("xtm_composer_connectors_in_backoff{platform=\"opencti\"}"),
        Some(1.0)
    );
    assert_eq!(
        q("sum(xtm_composer_connectors{actual=\"missing\"})"),
        Some(1.0)
    );
    assert!(
        q("xtm_composer_connector_failed_attempts{connector=\"gone\",action=\"deploy\"}").unwrap()
            >= 1.0
    );
    assert_eq!(
        q("xtm_composer_connector_restarts{connector=\"run1\"}"),
        Some(0.0)
    );
    assert!(
        q("sum(xtm_composer_actions_total{kind=\"deploy\",outcome=\"error\"})").unwrap() >= 1.0
    );
    assert_eq!(
        q("sum(xtm_composer_actions_total{kind=\"deploy\",outcome=\"ok\"})"),
        Some(3.0)
    );
    assert!(
        q("sum(xtm_composer_engine_requests_total{operation=\"list\",outcome=\"ok\"})").unwrap()
            >= 1.0
    );
    assert!(q("xtm_composer_decryptions_total{outcome=\"ok\"}").unwrap() >= 1.0);
    assert!(q("xtm_composer_decryption_cache_hits_total").unwrap() >= 1.0);
    assert!(q("process_resident_memory_bytes{job=\"xtm-composer\"}").unwrap() > 1e5);
    assert_eq!(
        q(&format!(
            "count(xtm_composer_build_info{{version=\"{}\"}})",
            env!("CARGO_PKG_VERSION")
        )),
        Some(1.0),
        "{metrics}"
    );

    // `status` prints every connector of the platform.
    let (code, table) = status_command(&setup);
    assert_eq!(code, Some(0), "{table}");
    for id in ["run1", "run2", "held"] {
        let line = table
            .lines()
            .find(|l| l.contains(&format!(" {id} ")))
            .unwrap_or_else(|| panic!("no line for {id}:\n{table}"));
        assert!(line.contains(&format!("{m} {id}")), "{line}");
        let actual = if id == "held" { "stopped" } else { "running" };
        assert!(line.contains(actual), "{line}");
    }
    assert!(table.contains("health: ok"), "{table}");
    let line = table.lines().find(|l| l.contains(" gone ")).unwrap();
    assert!(
        line.contains("missing") && line.contains("deploy (error)"),
        "{line}"
    );
    assert!(
        table.contains("opencti gone: ") && table.contains(&absent),
        "{table}"
    );

    // No secret anywhere: /metrics, /status, the trace-level log.
    let (_, status) = get(port, "/status").unwrap();
    let log = c.output();
    assert!(
        log.contains("\"TRACE\"") || log.contains("\"DEBUG\""),
        "the log is not at trace level"
    );
    for (what, text) in [
        ("/metrics", &metrics),
        ("/status", &status),
        ("the log", &log),
    ] {
        for s in [
            secret.as_str(),
            token.as_str(),
            common::composer::REGISTRY_PASSWORD,
        ] {
            assert!(!text.contains(s), "{what} holds a secret value {s:?}");
        }
    }
    // Structured fields on the JSON lines.
    let summary = log
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|l| {
            l["message"].as_str().is_some_and(|m| {
                m.starts_with(
                    "opencti: 4 connectors: 2 running, 1 stopped, 1 failing (deploy, next try in ",
                )
            })
        })
        .unwrap_or_else(|| panic!("no summary line:\n{}", c.tail(40)));
    assert_eq!(summary["platform"], "opencti");
    let line = |connector: &str, outcome: &str| {
        log.lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|l| {
                l["connector"] == connector && l["action"] == "deploy" && l["outcome"] == outcome
            })
            .unwrap_or_else(|| panic!("no deploy {outcome} line of {connector}:\n{}", c.tail(40)))
    };
    let ok = line("run1", "ok");
    assert_eq!(ok["platform"], "opencti");
    assert_eq!(
        ok["workload"],
        common::composer::existing_name(&format!("{m} run1"))
    );
    let failed = line("gone", "error");
    assert_eq!(failed["attempt"], 1);
    assert_eq!(failed["level"], "ERROR");
    let st: Value = serde_json::from_str(&status).unwrap();
    let g = st["connectors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == "gone")
        .unwrap();
    assert!(g["last_error"].as_str().unwrap().contains(&absent), "{g}");
    assert!(
        g["next_retry"].is_string() && g["attempts"].as_u64() >= Some(1),
        "{g}"
    );
    c.terminate_ok();
    let (code, text) = status_command(&setup);
    assert_eq!(code, Some(1), "status of a stopped composer: {text}");
    assert!(text.contains("cannot reach"), "{text}");
}

/// A TCP relay in front of the fake platform that can hold every byte
/// going to the platform (the composer's calls then hang) and release them.
struct Gate {
    port: u16,
    closed: Arc<AtomicBool>,
}

impl Gate {
    fn start(upstream: &str, closed: bool) -> Gate {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let closed = Arc::new(AtomicBool::new(closed));
        let (c, up) = (
            Arc::clone(&closed),
            upstream.trim_start_matches("http://").to_string(),
        );
        thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let (c, up) = (Arc::clone(&c), up.clone());
                thread::spawn(move || {
                    let Ok(upstream) = TcpStream::connect(&up) else {
                        return;
                    };
                    let (mut from_up, mut to_client) =
                        (upstream.try_clone().unwrap(), client.try_clone().unwrap());
                    thread::spawn(move || {
                        let _ = std::io::copy(&mut from_up, &mut to_client);
                        let _ = to_client.shutdown(std::net::Shutdown::Both);
                    });
                    let (mut from_client, mut to_up) = (client, upstream);
                    let mut buf = [0u8; 16 * 1024];
                    loop {
                        let n = match from_client.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        while c.load(Ordering::SeqCst) {
                            thread::sleep(Duration::from_millis(50));
                        }
                        if to_up.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                    let _ = to_up.shutdown(std::net::Shutdown::Write);
                });
            }
        });
        Gate { port, closed }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn set_closed(&self, closed: bool) {
        self.closed.store(closed, Ordering::SeqCst);
    }
}

fn wait_for(c: &mut Composer, port: u16, path: &str, code: u16, what: &str) -> String {
    c.wait_until(Duration::from_secs(60), what, || {
        get(port, path)
            .filter(|(got, _)| *got == code)
            .map(|(_, body)| body)
    })
}

#[test]
fn readyz_waits_for_registration_and_healthz_names_a_hung_loop_then_recovers() {
    let engine = Engine::shared();
    let m = manager("hang");
    let _cleanup = Cleanup {
        engine: engine.clone(),
        managers: vec![m.clone()],
    };
    let dir = scratch("obs-hang");
    let token = token("hang");
    let fake = FakeOpenCti::start(&token);
    let gate = Gate::start(&fake.url(), true);
    let (setup, port) = composer(&dir, &fake, &token, &m);
    let setup = setup
        .var("OPENCTI__URL", &gate.url())
        // The held call outlasts the loops' promise: a hang, not a timeout.
        .var("OPENCTI__REQUEST_TIMEOUT", "120")
        .var("MANAGER__OBSERVABILITY__STALE_AFTER", "4");
    let mut c = setup.spawn("run");
    let body = wait_for(
        &mut c,
        port,
        "/readyz",
        503,
        "/readyz 503 before registration",
    );
    assert!(body.contains("opencti: not registered"), "{body}");
    assert!(fake.registered_manager().is_none());

    gate.set_closed(false);
    wait_for(
        &mut c,
        port,
        "/readyz",
        200,
        "/readyz 200 after registration",
    );
    assert_eq!(fake.registered_manager().as_deref(), Some(m.as_str()));
    wait_for(&mut c, port, "/healthz", 200, "/healthz 200 while healthy");

    gate.set_closed(true);
    let body = wait_for(
        &mut c,
        port,
        "/healthz",
        503,
        "/healthz 503 during the hang",
    );
    assert!(body.contains("stale: opencti-"), "{body}");
    // Long enough for the supervisor (a 5 s tick) to say it too.
    thread::sleep(Duration::from_secs(6));
    gate.set_closed(false);
    let body = wait_for(&mut c, port, "/healthz", 200, "/healthz 200 after the hang");
    assert!(body.starts_with("ok"), "{body}");
    let log = c.output();
    assert!(log.contains("stuck: opencti-"), "{}", c.tail(30));
    c.terminate_ok();
}

/// Cycles done in `window`, read from the composer's own counter.
fn cycles_within(port: u16, window: Duration, during: impl FnOnce()) -> f64 {
    let read = || {
        let (_, body) = get(port, "/metrics").unwrap();
        sample(&body, "xtm_composer_cycles_total{platform=\"opencti\"}").unwrap()
    };
    let before = read();
    let start = Instant::now();
    during();
    thread::sleep(window.saturating_sub(start.elapsed()));
    read() - before
}

#[test]
fn the_listener_survives_hostile_clients_and_the_loops_keep_their_pace() {
    let engine = Engine::shared();
    let m = manager("hostile");
    let _cleanup = Cleanup {
        engine: engine.clone(),
        managers: vec![m.clone()],
    };
    let dir = scratch("obs-hostile");
    let token = token("hostile");
    let fake = FakeOpenCti::start(&token);
    let (setup, port) = composer(&dir, &fake, &token, &m);
    let mut c = setup.spawn("run");
    wait_for(&mut c, port, "/readyz", 200, "ready");

    for (raw, code) in [
        (
            &b"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n"[..],
            405,
        ),
        (b"DELETE /status HTTP/1.1\r\n\r\n", 405),
        (b"HEAD /healthz HTTP/1.1\r\n\r\n", 405),
        (b"GET /nothing HTTP/1.1\r\n\r\n", 404),
        (b"garbage\r\n\r\n", 400),
    ] {
        let got = http(port, raw).map(|(c, _)| c);
        assert_eq!(got, Some(code), "{}", String::from_utf8_lossy(raw));
    }
    let (code, _) = http(port, &[b'A'; 64 * 1024]).expect("an answer to an oversized request");
    assert_eq!(code, 431);

    let quiet = cycles_within(port, Duration::from_secs(8), || {});
    let mut answers = Vec::new();
    let loud = cycles_within(port, Duration::from_secs(8), || {
        // Slowloris: a byte a second, never finishing the head.
        let slow: Vec<_> = (0..10)
            .map(|_| {
                thread::spawn(move || {
                    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
                    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
                    let mut w = s.try_clone().unwrap();
                    let start = Instant::now();
                    thread::spawn(move || {
                        for b in b"GET /metrics HTTP/1.1\r\nX: " {
                            if w.write_all(&[*b]).is_err() {
                                break;
                            }
                            thread::sleep(Duration::from_secs(1));
                        }
                    });
                    let mut out = Vec::new();
                    let _ = s.read_to_end(&mut out);
                    (start.elapsed(), String::from_utf8_lossy(&out).into_owned())
                })
            })
            .collect();
        // 200 at once.
        let many: Vec<_> = (0..200)
            .map(|_| {
                thread::spawn(move || {
                    let t = Instant::now();
                    (get(port, "/metrics").map(|(c, _)| c), t.elapsed())
                })
            })
            .collect();
        for h in many {
            answers.push(h.join().unwrap());
        }
        for h in slow {
            let (took, out) = h.join().unwrap();
            assert!(
                out.starts_with("HTTP/1.1 408") || out.starts_with("HTTP/1.1 503"),
                "slowloris got {out:?}"
            );
            assert!(
                took < Duration::from_secs(10),
                "slowloris held for {took:?}"
            );
        }
    });
    let ok = answers.iter().filter(|a| a.0 == Some(200)).count();
    let busy = answers.iter().filter(|a| a.0 == Some(503)).count();
    let slowest = answers.iter().map(|a| a.1).max().unwrap();
    println!(
        "200 concurrent: {ok} answered 200, {busy} 503, slowest {slowest:?}; cycles {quiet} quiet, {loud} under load"
    );
    // Over the cap a client gets 503 at once (or, if its request was still
    // arriving, a reset): never a wait.
    assert!(ok + busy >= 190, "answered {ok} + {busy}: {answers:?}");
    assert!(
        slowest < Duration::from_secs(10),
        "a client waited {slowest:?}"
    );
    assert!(ok >= 32, "only {ok} served");
    assert!(quiet >= 4.0, "{quiet} cycles in 8 s with a 1 s schedule");
    assert!(
        loud >= quiet - 2.0,
        "{loud} cycles under load vs {quiet} quiet"
    );
    let (code, body) = get(port, "/healthz").unwrap();
    assert_eq!(code, 200, "{body}");
    c.terminate_ok();
}

#[test]
fn plan_detailed_exitcode_says_0_nothing_2_changes_1_error_and_json_lists_every_connector() {
    let engine = Engine::shared();
    let m = manager("plan");
    let _cleanup = Cleanup {
        engine: engine.clone(),
        managers: vec![m.clone()],
    };
    let dir = scratch("obs-plan");
    let token = token("plan");
    let fake = FakeOpenCti::start(&token);
    let (setup, _) = composer(&dir, &fake, &token, &m);
    let plan = ["plan", "--detailed-exitcode", "--json"];

    let (code, out, err) = command(&setup, &plan);
    assert_eq!(code, Some(0), "{out}{err}");
    let doc: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (doc["ok"].clone(), doc["changes"].clone()),
        (true.into(), 0.into())
    );

    let bad = ("SECRET_KEY", "bm90LWEtY2lwaGVydGV4dA==", true);
    fake.set_connectors(vec![
        connector("new", &format!("{m} new"), TICKER, "h1", "starting", vec![]),
        connector(
            "broken",
            &format!("{m} broken"),
            TICKER,
            "h1",
            "starting",
            vec![bad],
        ),
    ]);
    let (code, out, err) = command(&setup, &plan);
    assert_eq!(code, Some(2), "{out}{err}");
    let doc: Value = serde_json::from_str(&out).unwrap();
    let p = &doc["platforms"][0];
    assert_eq!(p["platform"], "opencti");
    assert_eq!(p["changes"], 1, "{doc:#}");
    let deploy = &p["actions"][0];
    assert_eq!(
        (deploy["kind"].as_str(), deploy["connector"].as_str()),
        (Some("deploy"), Some("new"))
    );
    let broken = p["connectors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == "broken")
        .unwrap_or_else(|| panic!("{doc:#}"));
    assert_eq!(broken["deployable"], false);
    assert!(
        broken["problem"].as_str().unwrap().contains("SECRET_KEY"),
        "{broken}"
    );
    // The text form lists it too.
    let (code, out, _) = command(&setup, &["plan"]);
    assert_eq!(code, Some(0));
    assert!(out.contains("not deployable broken"), "{out}");
    // plan never registers.
    assert!(fake.registered_manager().is_none());

    let down = setup
        .clone()
        .var("OPENCTI__URL", &format!("http://127.0.0.1:{}", free_port()));
    let (code, out, err) = command(&down, &plan);
    assert_eq!(code, Some(1), "{out}{err}");
    let doc: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(doc["platforms"][0]["ok"], false);

    let (code, out, err) = command(&setup, &["check", "--json"]);
    assert_eq!(code, Some(0), "{out}{err}");
    let doc: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(doc["ok"], true);
    let names: Vec<&str> = doc["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["check"].as_str())
        .collect();
    assert_eq!(
        names,
        [
            "configuration",
            "private key",
            "opencti platform",
            "opencti orchestrator"
        ]
    );
    let (code, out, _) = command(&down, &["check", "--json"]);
    assert_eq!(code, Some(1));
    let doc: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(doc["ok"], false);
    assert!(
        doc["checks"][2]["fix"]
            .as_str()
            .unwrap()
            .contains("OPENCTI__URL"),
        "{doc:#}"
    );
}

#[test]
fn the_documented_alert_rules_pass_promtool() {
    let doc = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/docs/observability.md"
    ))
    .unwrap();
    let after = doc
        .split("### Example alerts")
        .nth(1)
        .expect("the alerts section");
    let rules = after
        .split("```yaml\n")
        .nth(1)
        .and_then(|r| r.split("```").next())
        .expect("a yaml block of rules");
    let dir = scratch("obs-rules");
    let file = dir.join("rules.yml");
    std::fs::write(&file, rules).unwrap();
    let out = Command::new("promtool")
        .args(["check", "rules"])
        .arg(&file)
        .output()
        .expect("promtool (scripts/test.sh installs Debian's prometheus)");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // Every metric the rules use is one the composer exposes (or Prometheus's `up`).
    let metrics = [
        "up",
        "xtm_composer_platform_registered",
        "xtm_composer_platform_up",
        "xtm_composer_last_listing_timestamp_seconds",
        "xtm_composer_connector_failed_attempts",
        "xtm_composer_connector_restarts",
        "xtm_composer_engine_requests_total",
    ];
    for line in rules
        .lines()
        .filter(|l| l.trim_start().starts_with("expr:"))
    {
        assert!(metrics.iter().any(|m| line.contains(m)), "{line}");
    }
}
