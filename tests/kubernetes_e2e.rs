//! The real `xtm-composer` binary with `selector: kubernetes`, against the fake
//! OpenCTI and the test Kubernetes API server (Role enforced, v1.32 schemas): ten
//! connectors deploy, start, stop, refresh in place, get removed; a crash-looping pod
//! is reported as a reboot loop; a selector that cannot follow is deleted and made
//! again; an existing composer's Deployment is adopted; 500s and hangs of the API
//! server cost cycles, not the process, and it converges afterwards (issue 4).

mod common;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::fake_opencti::{FakeOpenCti, connector};
use common::k8s_api::{Fault, K8sApi};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_xtm-composer");
const TOKEN: &str = "k8s-e2e-token";
/// A bound on convergence, not a speed claim: cycles run every second.
const PATIENCE: Duration = Duration::from_secs(60);

fn tempdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("xtm-k8s-e2e-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn vectors() -> Value {
    serde_json::from_str(include_str!("fixtures/crypto-vectors.json")).unwrap()
}

/// The binary, its output collected; killed if the test ends early.
struct Composer {
    child: Child,
    output: Arc<Mutex<String>>,
}

impl Composer {
    fn start(config: &Path, env: &[(String, String)]) -> Composer {
        let mut child = Command::new(BIN)
            .args(["run", "--config", config.to_str().unwrap()])
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let output = Arc::new(Mutex::new(String::new()));
        for stream in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let out = Arc::clone(&output);
            std::thread::spawn(move || {
                let mut stream = stream;
                let mut buf = [0u8; 4096];
                while let Ok(n) = stream.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    out.lock()
                        .unwrap()
                        .push_str(&String::from_utf8_lossy(&buf[..n]));
                }
            });
        }
        Composer { child, output }
    }

    fn output(&self) -> String {
        self.output.lock().unwrap().clone()
    }

    fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// SIGTERM, then the exit status.
    fn stop(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        assert!(
            Command::new("kill")
                .args(["-TERM", &pid])
                .status()
                .unwrap()
                .success()
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            assert!(Instant::now() < deadline, "no exit after SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Composer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What the cluster and the platform hold, for failure messages.
fn world(server: &K8sApi, fake: &FakeOpenCti) -> String {
    let deployments: Vec<String> = server
        .deployment_names()
        .iter()
        .map(|n| {
            let h = annotation(server, n).unwrap_or_default();
            format!("{n}:{h}:{}", replicas(server, n).unwrap_or(-1))
        })
        .collect();
    let statuses: Vec<String> = (0..10)
        .map(|i| format!("c{i}:{:?}", fake.current_status(&format!("c{i}"))))
        .collect();
    format!("deployments {deployments:?}, statuses {statuses:?}")
}

/// Polls `check` until it holds; on timeout fails with `what`, the state of the
/// world and the binary's output.
fn wait_for(
    composer: &mut Composer,
    (server, fake): (&K8sApi, &FakeOpenCti),
    what: &str,
    mut check: impl FnMut() -> bool,
) {
    let deadline = Instant::now() + PATIENCE;
    while !check() {
        assert!(
            composer.is_running(),
            "the composer exited while waiting for {what}:\n{}",
            composer.output()
        );
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; {}; composer output:\n{}",
            world(server, fake),
            composer.output()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn connectors() -> Vec<Value> {
    let v = vectors();
    let secret = v["rsa4096"]["v2_oaep_sha256"].as_str().unwrap();
    (0..10)
        .map(|i| {
            let image = if i == 3 {
                "opencti/connector-crash:6.4.0".to_string()
            } else {
                format!("opencti/connector-x{i}:6.4.0")
            };
            let requested = if i == 2 { "stopping" } else { "starting" };
            // connector-8 is adopted from the existing composer, which made it at h0.
            let hash = "h1";
            connector(
                &format!("c{i}"),
                &format!("Connector {i}"),
                &image,
                hash,
                requested,
                vec![("PLAIN", "visible", false), ("API_KEY", secret, true)],
            )
        })
        .collect()
}

fn labels(id: &str, manager: &str) -> Value {
    json!({"opencti-connector-id": id, "opencti-manager": manager, "opencti-platform": "opencti"})
}

/// The Deployment the existing composer makes (CONTRACT §6.3): plain env secret.
fn existing_composer_deployment(name: &str, id: &str, manager: &str, hash: &str) -> Value {
    let l = labels(id, manager);
    json!({"apiVersion": "apps/v1", "kind": "Deployment",
      "metadata": {"annotations": {"OPENCTI_CONFIG_HASH": hash}, "labels": l, "name": name},
      "spec": {"replicas": 1, "selector": {"matchLabels": l},
        "template": {"metadata": {"labels": l}, "spec": {
          "containers": [{"env": [{"name": "API_KEY", "value": "old-plain-secret"},
                                  {"name": "OPENCTI_CONFIG_HASH", "value": hash}],
            "image": "opencti/connector-x8:6.3.0", "imagePullPolicy": "IfNotPresent", "name": name}]}}}})
}

/// Successful `method` calls on Deployment `name` (a create names it in its body).
fn deployment_requests(server: &K8sApi, method: &str, name: &str) -> usize {
    let named = |r: &common::k8s_api::Seen| match method {
        "POST" => {
            r.path.ends_with("/deployments")
                && serde_json::from_str::<Value>(&r.body)
                    .is_ok_and(|b| b["metadata"]["name"] == name)
        }
        _ => r.path.ends_with(&format!("/deployments/{name}")),
    };
    server
        .seen()
        .iter()
        .filter(|r| r.method == method && named(r) && (200..300).contains(&r.status))
        .count()
}

fn annotation(server: &K8sApi, name: &str) -> Option<String> {
    server.deployment(name)?["metadata"]["annotations"]["OPENCTI_CONFIG_HASH"]
        .as_str()
        .map(String::from)
}

fn replicas(server: &K8sApi, name: &str) -> Option<i64> {
    server.deployment(name)?["spec"]["replicas"].as_i64()
}

/// A configuration folder and the environment of a composer with
/// `selector: kubernetes` for `fake`, reaching the API server through `kubeconfig`.
fn composer_config(
    dir: &Path,
    kubeconfig: Option<&Path>,
    opencti_url: &str,
    manager: &str,
) -> (PathBuf, Vec<(String, String)>) {
    let config = dir.join("config");
    std::fs::create_dir_all(&config).unwrap();
    std::fs::copy("config/default.yaml", config.join("default.yaml")).unwrap();
    let key = dir.join("key.pem");
    let pem = vectors()["rsa4096"]["private_key_pkcs8_pem"].clone();
    std::fs::write(&key, pem.as_str().unwrap()).unwrap();
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let mut env: Vec<(String, String)> = [
        ("HOME", dir.to_str().unwrap()),
        ("MANAGER__ID", manager),
        ("MANAGER__CREDENTIALS_KEY_FILEPATH", key.to_str().unwrap()),
        ("MANAGER__EXECUTE_SCHEDULE", "1"),
        ("MANAGER__REMOVAL_GRACE", "3"),
        ("MANAGER__LOGGER__DIRECTORY", "false"),
        ("MANAGER__LOGGER__FORMAT", "pretty"),
        ("OPENCTI__URL", opencti_url),
        ("OPENCTI__TOKEN", TOKEN),
        ("OPENCTI__LOGS_SCHEDULE", "1"),
        ("OPENCTI__REQUEST_TIMEOUT", "5"),
        ("OPENCTI__DAEMON__SELECTOR", "kubernetes"),
        (
            "OPENCTI__DAEMON__KUBERNETES__BASE_DEPLOYMENT_JSON",
            r#"{"spec": {"template": {"metadata": {"labels": {"team": "new"}}}}}"#,
        ),
        ("OPENCTI__DAEMON__KUBERNETES__REQUEST_TIMEOUT", "2"),
        ("OPENCTI__DAEMON__KUBERNETES__CONNECT_TIMEOUT", "2"),
        ("OPENAEV__ENABLE", "false"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    if let Some(k) = kubeconfig {
        env.push(("KUBECONFIG".into(), k.to_str().unwrap().into()));
    }
    (config, env)
}

/// Runs a one-shot command of the binary (`check`, `plan`).
fn run_once(command: &str, config: &Path, env: &[(String, String)]) -> (Option<i32>, String) {
    let out = Command::new(BIN)
        .args([command, "--config", config.to_str().unwrap()])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text)
}

#[test]
fn check_and_plan_reach_the_api_server_and_change_nothing() {
    let manager = format!("k8s-plan-{}", std::process::id());
    let dir = tempdir("plan");
    let server = K8sApi::start();
    let fake = FakeOpenCti::start(TOKEN);
    fake.set_connectors(connectors());
    server.insert_deployment(existing_composer_deployment(
        "connector-8",
        "c8",
        &manager,
        "h0",
    ));
    let kubeconfig = server.kubeconfig_token(&dir);
    let (config, mut env) = composer_config(&dir, Some(&kubeconfig), &fake.url(), &manager);
    // Registry credentials too: even the pull secret is not written by a listing.
    for (k, v) in [
        ("OPENCTI__DAEMON__REGISTRY__SERVER", "registry.example:5000"),
        ("OPENCTI__DAEMON__REGISTRY__USERNAME", "puller"),
        ("OPENCTI__DAEMON__REGISTRY__PASSWORD", "registry-pass"),
    ] {
        env.push((k.into(), v.into()));
    }

    let (code, text) = run_once("check", &config, &env);
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains("✔ opencti orchestrator: reachable, 1 workload(s) of this manager"),
        "{text}"
    );
    // A namespace the Role is not bound in: refused, and the fix names the setting.
    let mut elsewhere = env.clone();
    elsewhere.push((
        "OPENCTI__DAEMON__KUBERNETES__NAMESPACE".into(),
        "elsewhere".into(),
    ));
    let (code, text) = run_once("check", &config, &elsewhere);
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains("✘ opencti orchestrator") && text.contains("Forbidden"),
        "{text}"
    );
    assert!(
        text.contains("OPENCTI__DAEMON__KUBERNETES__NAMESPACE"),
        "{text}"
    );
    assert_eq!(
        server.forbidden(),
        vec!["list deployments in elsewhere".to_string()]
    );
    server.clear_forbidden();
    let (code, text) = run_once("plan", &config, &env);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("deploy connector-0 (connector c0)"), "{text}");
    assert!(
        text.contains("refresh connector-8 (connector c8) to hash h1"),
        "{text}"
    );
    // Only listings: nothing was written.
    let seen = server.seen();
    assert!(seen.iter().all(|r| r.method == "GET"), "{seen:?}");
    assert_eq!(server.deployment_names(), vec!["connector-8".to_string()]);
    server.assert_clean();
}

#[test]
fn without_any_cluster_connection_run_exits_with_an_explanation() {
    let dir = tempdir("nocluster");
    let fake = FakeOpenCti::start(TOKEN);
    let (config, env) = composer_config(&dir, None, &fake.url(), "k8s-none");
    let (code, text) = run_once("run", &config, &env);
    assert_eq!(code, Some(2), "{text}");
    assert!(text.contains("no kubeconfig"), "{text}");
    assert!(text.contains("KUBERNETES_SERVICE_HOST"), "{text}");
    assert!(!text.contains("panicked"), "{text}");
}

#[test]
fn the_binary_runs_ten_connectors_on_kubernetes_and_survives_api_server_faults() {
    let manager = format!("k8s-e2e-{}", std::process::id());
    let plaintext = vectors()["rsa4096"]["plaintext"]
        .as_str()
        .unwrap()
        .to_string();
    let dir = tempdir("run");
    let server = K8sApi::start();
    let fake = FakeOpenCti::start(TOKEN);
    fake.set_version("6.8.0");
    fake.set_connectors(connectors());

    // What the cluster holds before the composer starts: an existing composer's
    // Deployment (adopted), one whose selector cannot follow the new template
    // labels (self-heal), and an orphan of a connector OpenCTI no longer has.
    server.insert_deployment(existing_composer_deployment(
        "connector-8",
        "c8",
        &manager,
        "h0",
    ));
    let mut stuck = existing_composer_deployment("connector-7", "c7", &manager, "h0");
    let mut old = labels("c7", &manager);
    old["team"] = json!("old");
    stuck["metadata"]["labels"] = old.clone();
    stuck["spec"]["selector"]["matchLabels"] = old.clone();
    stuck["spec"]["template"]["metadata"]["labels"] = old;
    server.insert_deployment(stuck);
    server.insert_deployment(existing_composer_deployment(
        "connector-gone",
        "gone",
        &manager,
        "h0",
    ));
    let stuck_selector = server.deployment("connector-7").unwrap()["spec"]["selector"].clone();

    let kubeconfig = server.kubeconfig_token(&dir);
    let (config, env) = composer_config(&dir, Some(&kubeconfig), &fake.url(), &manager);
    let mut composer = Composer::start(&config, &env);
    let log = Arc::clone(&composer.output);
    let logged = |text: &str| log.lock().unwrap().contains(text);

    // Everything converges: 10 Deployments, the orphan gone, statuses reported.
    wait_for(
        &mut composer,
        (&server, &fake),
        "ten connectors deployed and reported",
        || {
            let names = server.deployment_names();
            names.len() == 10
                && (0..10).all(|i| names.contains(&format!("connector-{i}")))
                && (0..10).all(|i| {
                    // c2 is asked to stay stopped: deployed with no replica and reported
                    // `stopped` right away (its null status was never "already reported").
                    let want = if i == 2 {
                        Some("stopped")
                    } else {
                        Some("started")
                    };
                    fake.current_status(&format!("c{i}")).as_deref() == want
                })
        },
    );
    assert_eq!(replicas(&server, "connector-2"), Some(0));
    // Adopted: patched in place at the new hash, never created or deleted.
    wait_for(
        &mut composer,
        (&server, &fake),
        "connector-8 refreshed in place",
        || annotation(&server, "connector-8").as_deref() == Some("h1"),
    );
    assert_eq!(deployment_requests(&server, "POST", "connector-8"), 0);
    assert_eq!(deployment_requests(&server, "DELETE", "connector-8"), 0);
    let d8 = server.deployment("connector-8").unwrap().to_string();
    assert!(
        !d8.contains("old-plain-secret"),
        "the plain secret stayed: {d8}"
    );
    assert!(d8.contains("secretKeyRef"), "{d8}");
    // Self-heal: the listing showed the selector cannot follow the new template,
    // so the planner replaced the Deployment (never a refresh doomed to a 422)
    // with the three-label selector.
    let d7 = server.deployment("connector-7").unwrap();
    assert_ne!(d7["spec"]["selector"], stuck_selector);
    assert_eq!(
        d7["spec"]["selector"]["matchLabels"],
        labels("c7", &manager)
    );
    assert_eq!(d7["spec"]["template"]["metadata"]["labels"]["team"], "new");
    assert!(
        !server.seen().iter().any(|r| r.method == "PATCH"
            && r.path.ends_with("/deployments/connector-7")
            && r.status == 422),
        "a refresh of connector-7 was tried and refused"
    );
    assert_eq!(deployment_requests(&server, "DELETE", "connector-7"), 1);
    assert_eq!(deployment_requests(&server, "POST", "connector-7"), 1);
    assert_eq!(deployment_requests(&server, "POST", "connector-0"), 1);
    assert_eq!(deployment_requests(&server, "DELETE", "connector-gone"), 1);

    // Health from pods; the crash-looping one is a reboot loop, named in the log.
    wait_for(
        &mut composer,
        (&server, &fake),
        "health of every running connector",
        || {
            (0..10)
                .filter(|i| *i != 2)
                .all(|i| fake.health(&format!("c{i}")).is_some())
        },
    );
    let crash = fake.health("c3").unwrap();
    assert_eq!(crash["is_in_reboot_loop"], true, "{crash}");
    assert!(crash["restart_count"].as_u64().unwrap() > 0, "{crash}");
    assert_eq!(fake.health("c0").unwrap()["is_in_reboot_loop"], false);
    wait_for(
        &mut composer,
        (&server, &fake),
        "the reboot loop in the log",
        || logged("connector-3 is in a reboot loop"),
    );
    assert!(logged("CrashLoopBackOff"));

    // Logs: the last 100 lines of the current pod, per connector.
    wait_for(
        &mut composer,
        (&server, &fake),
        "logs of every connector with a pod",
        || {
            (0..10)
                .filter(|i| *i != 2)
                .all(|i| fake.logs(&format!("c{i}")).is_some_and(|l| l.len() == 100))
        },
    );
    // The test server's pods have 150 lines; each shipped snapshot is its own pod's tail.
    for i in (0..10).filter(|i| *i != 2) {
        let lines = fake.logs(&format!("c{i}")).unwrap();
        let own = format!("/connector-{i} log line ");
        assert!(lines[0].ends_with(&format!("{own}51")), "{}", lines[0]);
        assert!(lines[99].ends_with(&format!("{own}150")), "{}", lines[99]);
    }
    let none = fake.logs("c2").unwrap_or_default();
    assert!(
        none.is_empty(),
        "logs of a Deployment without a pod: {none:?}"
    );
    let lines = fake.logs("c0").unwrap();
    assert!(lines[0].starts_with("connector-0-"), "{}", lines[0]);

    // Stop one, start one, change a contract, delete a connector.
    fake.set_requested("c1", "stopping");
    fake.set_requested("c2", "starting");
    fake.set_hash("c4", "h2");
    let selector4 = server.deployment("connector-4").unwrap()["spec"]["selector"].clone();
    fake.remove_connector("c5");
    wait_for(
        &mut composer,
        (&server, &fake),
        "stop, start, refresh and removal",
        || {
            replicas(&server, "connector-1") == Some(0)
                && fake.current_status("c1").as_deref() == Some("stopped")
                && replicas(&server, "connector-2") == Some(1)
                && fake.current_status("c2").as_deref() == Some("started")
                && annotation(&server, "connector-4").as_deref() == Some("h2")
                && server.deployment("connector-5").is_none()
        },
    );
    assert_eq!(
        server.deployment("connector-4").unwrap()["spec"]["selector"],
        selector4
    );
    assert_eq!(deployment_requests(&server, "DELETE", "connector-4"), 0);
    assert!(
        server.secret("connector-5-env").is_none(),
        "the env Secret outlived its connector"
    );

    // The API server fails: 500s, then hangs. The process goes on, changes wait.
    server.set_fault(Fault::Status(500));
    fake.set_hash("c6", "h3");
    wait_for(
        &mut composer,
        (&server, &fake),
        "a cycle error logged",
        || logged("answered 500"),
    );
    assert!(!logged(": unreachable: "));
    server.set_fault(Fault::Hang(Duration::from_secs(4)));
    wait_for(
        &mut composer,
        (&server, &fake),
        "a timed-out call logged",
        || logged(": unreachable: no answer from https://127.0.0.1"),
    );
    assert!(composer.is_running(), "{}", composer.output());
    assert_eq!(annotation(&server, "connector-6").as_deref(), Some("h1"));
    server.set_fault(Fault::None);
    wait_for(
        &mut composer,
        (&server, &fake),
        "convergence after recovery",
        || annotation(&server, "connector-6").as_deref() == Some("h3"),
    );

    let status = composer.stop();
    assert!(status.success(), "{status}");

    // No decrypted value in any Deployment body, nor in the log.
    let bodies: Vec<String> = server
        .seen()
        .into_iter()
        .filter(|r| r.path.contains("/deployments") && !r.body.is_empty())
        .map(|r| r.body)
        .collect();
    assert!(bodies.len() >= 12, "{}", bodies.len());
    assert!(bodies.iter().all(|b| !b.contains(&plaintext)));
    assert_eq!(
        server.secret_value("connector-0-env", "API_KEY").as_deref(),
        Some(plaintext.as_str())
    );
    assert!(
        !log.lock().unwrap().contains(&plaintext),
        "a decrypted value was logged"
    );
    server.assert_clean();
}

/// Every request that writes a Deployment.
fn writes(server: &K8sApi) -> Vec<String> {
    server
        .seen()
        .iter()
        .filter(|r| r.path.contains("/deployments") && r.method != "GET")
        .map(|r| format!("{} {}", r.method, r.path))
        .collect()
}

#[test]
fn watched_idle_cycles_list_nothing_a_deleted_pod_is_reported_within_2_s_and_410_relists_once() {
    let manager = format!("k8s-watch-{}", std::process::id());
    let dir = tempdir("watch");
    let server = K8sApi::start();
    let fake = FakeOpenCti::start(TOKEN);
    fake.set_version("6.8.0");
    fake.set_connectors(connectors().into_iter().take(3).collect());
    let kubeconfig = server.kubeconfig_token(&dir);
    let (config, env) = composer_config(&dir, Some(&kubeconfig), &fake.url(), &manager);
    let mut composer = Composer::start(&config, &env);
    wait_for(
        &mut composer,
        (&server, &fake),
        "3 connectors reported",
        || {
            fake.current_status("c0").as_deref() == Some("started")
                && fake.current_status("c1").as_deref() == Some("started")
                && fake.current_status("c2").as_deref() == Some("stopped")
                && server.count("watch", "deployments") > 0
                && server.count("watch", "pods") > 0
        },
    );

    // Idle: cycles every second, logs shipped, and no listing at all.
    std::thread::sleep(Duration::from_secs(2));
    server.clear_seen();
    std::thread::sleep(Duration::from_secs(10));
    let (lists, logs) = (
        server.lists(),
        server
            .seen()
            .iter()
            .filter(|r| r.path.ends_with("/log"))
            .count(),
    );
    assert_eq!(
        lists,
        (0, 0),
        "lists in 10 idle cycles: {:?}",
        server.seen()
    );
    assert!(logs >= 10, "logs keep being shipped: {logs} reads");
    assert_eq!(writes(&server), Vec::<String>::new());

    // A pod deleted behind the composer's back: its successor's start is reported.
    let reports = fake.health_reports("c0");
    let pod = server
        .pods()
        .iter()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .filter_map(|p| p["metadata"]["name"].as_str().map(String::from))
        .find(|n| n.starts_with("connector-0-"))
        .expect("connector-0 has a live pod");
    let t = Instant::now();
    assert!(server.delete_pod(&pod));
    while fake.health_reports("c0") == reports {
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "the new pod of connector-0 was not reported within 2 s:\n{}",
            composer.output()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    eprintln!("pod deleted → health reported: {:?}", t.elapsed());
    let health = fake.health("c0").unwrap();
    assert_eq!(health["restart_count"], json!(0), "{health}");

    // 410 Gone: one relist of each resource, and no action repeated.
    server.clear_seen();
    server.expire_watches();
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(server.lists(), (1, 1), "{:?}", server.seen());
    assert_eq!(writes(&server), Vec::<String>::new());
    assert_eq!(fake.current_status("c0").as_deref(), Some("started"));
    server.assert_clean();
    assert!(composer.stop().success());
}
