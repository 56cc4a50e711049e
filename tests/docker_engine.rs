//! The Docker orchestrator against a real dockerd (API 1.41 here) and a real
//! authenticated registry on 127.0.0.1:5000. Start them first:
//! `scripts/start-dockerd.sh && scripts/start-registry.sh && scripts/make-test-images.sh`.
//! Every test fails loudly when the engine does not answer (never skips), uses
//! its own manager id and container names, and removes what it made. Checks go
//! through curl, independently of the client under test.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use serde_json::Value;
use xtm_composer::config::{DockerOptions, Registry, Settings};
use xtm_composer::orchestrator::docker::{ApiVersion, Docker, PullPolicy, client::MAX_API_VERSION};
use xtm_composer::orchestrator::{
    EnvValue, EnvVar, Error, HASH_MARKER, Orchestrator, Spec, Workload, WorkloadState,
};
use xtm_composer::platform::PlatformKind;
use xtm_composer::secret::Secret;

mod common;

use common::engine::{CRASHER, REGISTRY, SETUP, TICKER, query};

/// The engine's unix socket: `DOCKER_HOST` (unix://) or the default.
fn socket() -> String {
    match std::env::var("DOCKER_HOST") {
        Ok(h) if h.starts_with("unix://") => h["unix://".len()..].to_string(),
        Ok(h) if !h.is_empty() => {
            panic!("these tests drive the engine through a unix socket; DOCKER_HOST={h}")
        }
        _ => "/var/run/docker.sock".to_string(),
    }
}

/// One engine call through curl: (status, body).
fn api(method: &str, path: &str, body: Option<&str>) -> (u16, Vec<u8>) {
    common::engine::call(&socket(), method, path, body, &[], 60)
}

fn api_json(path: &str) -> Value {
    let (code, body) = api("GET", path, None);
    assert_eq!(code, 200, "GET {path}: {}", String::from_utf8_lossy(&body));
    serde_json::from_slice(&body).unwrap()
}

/// Panics with the setup instructions unless dockerd, the images and the registry answer.
fn require_engine() {
    let (code, body) = api("GET", "/_ping", None);
    assert!(
        code == 200 && body == b"OK",
        "the Docker engine at {} does not answer (status {code}): {SETUP}",
        socket()
    );
    for image in [TICKER, CRASHER, "local/busybox:1"] {
        let (code, _) = api("GET", &format!("/images/{image}/json"), None);
        assert_eq!(code, 200, "test image {image} is missing: {SETUP}");
    }
    common::engine::require_registry();
}

/// Removes every container of a manager id when the test ends, even on panic.
struct Cleanup(Vec<String>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        for manager in &self.0 {
            let filters = format!("{{\"label\":[\"opencti-manager={manager}\"]}}");
            let path = format!("/containers/json?all=true&filters={}", query(&filters));
            let (_, body) = api("GET", &path, None);
            let list: Vec<Value> = serde_json::from_slice(&body).unwrap_or_default();
            for c in list {
                if let Some(id) = c["Id"].as_str() {
                    api(
                        "DELETE",
                        &format!("/containers/{id}?force=true&v=true"),
                        None,
                    );
                }
            }
        }
    }
}

/// A unique manager id and name stem for one test.
fn unique(test: &str) -> String {
    format!("xtm-it-{test}-{}", std::process::id())
}

fn settings(manager: &str, options: DockerOptions) -> Settings {
    let mut s = Settings::default();
    s.manager.id = manager.to_string();
    s.opencti.daemon.docker = Some(DockerOptions {
        // No bridge on this machine: containers get loopback only.
        network_mode: Some("none".into()),
        ..options
    });
    // As `config::load` reads it from the environment.
    s.docker_host = std::env::var("DOCKER_HOST")
        .ok()
        .map(|h| h.parse().unwrap());
    s
}

fn env(pairs: &[(&str, &str)]) -> Vec<EnvVar> {
    pairs
        .iter()
        .map(|(k, v)| EnvVar {
            key: k.to_string(),
            value: EnvValue::Plain(v.to_string()),
        })
        .collect()
}

fn spec(
    name: &str,
    connector_id: &str,
    image: &str,
    hash: &str,
    mut env: Vec<EnvVar>,
    start: bool,
) -> Spec {
    env.push(EnvVar {
        key: HASH_MARKER.into(),
        value: EnvValue::Plain(hash.into()),
    });
    Spec {
        name: name.into(),
        connector_id: connector_id.into(),
        platform: PlatformKind::OpenCti,
        image: image.into(),
        hash: hash.into(),
        env,
        start,
    }
}

fn find<'a>(list: &'a [Workload], name: &str) -> &'a Workload {
    list.iter()
        .find(|w| w.name == name)
        .unwrap_or_else(|| panic!("{name} not listed in {list:?}"))
}

fn inspect(name: &str) -> Value {
    api_json(&format!("/containers/{name}/json"))
}

fn env_of(inspect: &Value) -> Vec<String> {
    inspect["Config"]["Env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect()
}

/// Untags `image` locally so that a deploy must pull it (the layers stay, shared with the local tag).
fn untag(image: &str) {
    let (code, body) = api("DELETE", &format!("/images/{image}?noprune=true"), None);
    assert!(
        code == 200 || code == 404,
        "untag {image}: {code} {}",
        String::from_utf8_lossy(&body)
    );
}

/// Polls `check` every 200 ms until it gives a value or `limit` passes.
fn wait_for<T>(limit: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn deploy_pulls_from_the_authenticated_registry_and_labels_the_container() {
    require_engine();
    let manager = unique("pull");
    let _cleanup = Cleanup(vec![manager.clone()]);
    let pulled = format!("{REGISTRY}/{TICKER}");
    untag(&pulled);
    let mut s = settings(&manager, DockerOptions::default());
    s.opencti.daemon.registry = Some(Registry {
        server: Some(REGISTRY.into()),
        username: Some("ci".into()),
        password: Some(Secret::new("ci-pass")),
        email: None,
    });
    let docker = Docker::new(&s, PlatformKind::OpenCti).unwrap();
    let mut vars = env(&[
        ("CONNECTOR_NAME", "My Connector"),
        ("URL", "http://x/?a=b=c"),
    ]);
    vars.push(EnvVar {
        key: "OPENCTI_TOKEN".into(),
        value: EnvValue::Sensitive(Secret::new("decrypted=secret")),
    });
    let name = format!("{manager}-a");
    docker
        .deploy(&spec(&name, "conn-a", TICKER, "hash-1", vars, true))
        .unwrap();

    assert_eq!(
        api("GET", &format!("/images/{pulled}/json"), None).0,
        200,
        "the image was pulled"
    );
    let c = inspect(&name);
    assert_eq!(c["Config"]["Image"], pulled.as_str());
    let labels = &c["Config"]["Labels"];
    assert_eq!(labels["opencti-manager"], manager.as_str());
    assert_eq!(labels["opencti-connector-id"], "conn-a");
    assert_eq!(labels["opencti-platform"], "opencti");
    let vars = env_of(&c);
    for want in [
        "CONNECTOR_NAME=My Connector",
        "URL=http://x/?a=b=c",
        "OPENCTI_TOKEN=decrypted=secret",
        "OPENCTI_CONFIG_HASH=hash-1",
    ] {
        assert!(
            vars.iter().any(|v| v == want),
            "{want} missing from {vars:?}"
        );
    }
    assert_eq!(c["HostConfig"]["RestartPolicy"]["Name"], "unless-stopped");
    assert_eq!(c["HostConfig"]["NetworkMode"], "none");
    assert_eq!(c["State"]["Running"], true);

    let list = docker.list().unwrap();
    let w = find(&list, &name);
    assert_eq!(w.connector_id.as_deref(), Some("conn-a"));
    assert_eq!(w.platform.as_deref(), Some("opencti"));
    assert_eq!(w.hash.as_deref(), Some("hash-1"));
    assert_eq!(w.state, WorkloadState::Running);
    assert_eq!(w.restart_count, 0);
    assert!(
        w.started_at.as_deref().is_some_and(|t| t.starts_with("20")),
        "{w:?}"
    );

    // Idle cycles: the figure is printed, not asserted (the Status text ages).
    let before = docker.client().request_count();
    let cycles = 5;
    for _ in 0..cycles {
        docker.list().unwrap();
    }
    let calls = docker.client().request_count() - before;
    println!(
        "engine calls per idle list(): {:.1} ({calls} calls over {cycles} cycles, 1 container)",
        calls as f64 / cycles as f64
    );

    docker.remove(&name).unwrap();
    assert!(docker.list().unwrap().is_empty());
    assert!(matches!(docker.remove(&name), Err(Error::NotFound { .. })));
}

#[test]
fn a_wrong_registry_password_is_an_image_error_without_the_password() {
    require_engine();
    let manager = unique("badauth");
    let _cleanup = Cleanup(vec![manager.clone()]);
    untag(&format!("{REGISTRY}/{CRASHER}"));
    let mut s = settings(
        &manager,
        DockerOptions {
            pull_policy: PullPolicy::Always,
            ..DockerOptions::default()
        },
    );
    s.opencti.daemon.registry = Some(Registry {
        server: Some(REGISTRY.into()),
        username: Some("ci".into()),
        password: Some(Secret::new("wrong-pass-1234")),
        email: None,
    });
    let docker = Docker::new(&s, PlatformKind::OpenCti).unwrap();
    let err = docker
        .deploy(&spec(
            &format!("{manager}-a"),
            "c",
            CRASHER,
            "h",
            vec![],
            true,
        ))
        .unwrap_err();
    assert!(matches!(err, Error::Image { .. }), "{err}");
    assert!(!err.to_string().contains("wrong-pass-1234"), "{err}");
    println!("wrong password: {err}");
    assert!(docker.list().unwrap().is_empty(), "no container is created");
}

#[test]
fn stop_start_and_refresh_follow_the_spec() {
    require_engine();
    let manager = unique("lifecycle");
    let _cleanup = Cleanup(vec![manager.clone()]);
    let docker = Docker::new(
        &settings(&manager, DockerOptions::default()),
        PlatformKind::OpenCti,
    )
    .unwrap();
    let name = format!("{manager}-a");
    let first = spec(
        &name,
        "conn-a",
        TICKER,
        "h1",
        env(&[("LEVEL", "info")]),
        true,
    );
    docker.deploy(&first).unwrap();
    let first_id = inspect(&name)["Id"].clone();

    let t = Instant::now();
    docker.stop(&name).unwrap();
    println!("stop took {:?}", t.elapsed());
    assert_eq!(
        find(&docker.list().unwrap(), &name).state,
        WorkloadState::Stopped
    );
    docker.stop(&name).unwrap(); // 304: already stopped
    docker.start(&name).unwrap();
    assert_eq!(
        find(&docker.list().unwrap(), &name).state,
        WorkloadState::Running
    );
    docker.start(&name).unwrap(); // 304: already running

    let second = spec(
        &name,
        "conn-a",
        TICKER,
        "h2",
        env(&[("LEVEL", "debug")]),
        true,
    );
    docker.refresh(&second).unwrap();
    let c = inspect(&name);
    assert_ne!(c["Id"], first_id, "refresh recreates the container");
    let vars = env_of(&c);
    assert!(vars.contains(&"LEVEL=debug".to_string()), "{vars:?}");
    assert!(
        vars.contains(&"OPENCTI_CONFIG_HASH=h2".to_string()),
        "{vars:?}"
    );
    let w = docker.list().unwrap();
    assert_eq!(w.len(), 1);
    assert_eq!(w[0].hash.as_deref(), Some("h2"));
    assert_eq!(w[0].state, WorkloadState::Running);

    // A refresh asked to stay stopped creates without starting.
    let third = spec(&name, "conn-a", TICKER, "h3", vec![], false);
    docker.refresh(&third).unwrap();
    let w = docker.list().unwrap();
    assert_eq!(
        (w[0].hash.as_deref(), w[0].state),
        (Some("h3"), WorkloadState::Stopped)
    );
    assert_eq!(w[0].started_at, None, "never started");
    docker.remove(&name).unwrap();
}

#[test]
fn logs_come_from_both_streams_without_frame_headers() {
    require_engine();
    let manager = unique("logs");
    let _cleanup = Cleanup(vec![manager.clone()]);
    let docker = Docker::new(
        &settings(&manager, DockerOptions::default()),
        PlatformKind::OpenCti,
    )
    .unwrap();
    let name = format!("{manager}-a");
    docker
        .deploy(&spec(&name, "c", TICKER, "h", vec![], true))
        .unwrap();
    let lines = wait_for(Duration::from_secs(20), "4 log lines", || {
        let lines = docker.logs(&name, 100).unwrap();
        (lines.len() >= 4).then_some(lines)
    });
    println!("logs: {lines:?}");
    assert!(lines.iter().any(|l| l == "tick 1 out"), "{lines:?}");
    assert!(lines.iter().any(|l| l == "tick 1 err"), "{lines:?}");
    for line in &lines {
        assert!(
            line.starts_with("tick ") && (line.ends_with(" out") || line.ends_with(" err")),
            "unexpected bytes in {line:?}"
        );
        assert!(!line.chars().any(char::is_control), "{line:?}");
    }
    assert_eq!(docker.logs(&name, 2).unwrap().len(), 2);
    docker.remove(&name).unwrap();
}

#[test]
fn a_crashing_container_is_restarted_by_the_engine_and_counted() {
    require_engine();
    let manager = unique("crash");
    let _cleanup = Cleanup(vec![manager.clone()]);
    let docker = Docker::new(
        &settings(&manager, DockerOptions::default()),
        PlatformKind::OpenCti,
    )
    .unwrap();
    let name = format!("{manager}-a");
    let t = Instant::now();
    docker
        .deploy(&spec(&name, "c", CRASHER, "h", vec![], true))
        .unwrap();
    let mut states = Vec::new();
    let w = wait_for(Duration::from_secs(60), "RestartCount > 3", || {
        let list = docker.list().unwrap();
        let w = find(&list, &name).clone();
        states.push(w.state);
        (w.restart_count > 3).then_some(w)
    });
    println!(
        "crasher: RestartCount {} after {:?}; states seen {:?}",
        w.restart_count,
        t.elapsed(),
        states
    );
    assert!(w.started_at.is_some(), "{w:?}");
    assert_eq!(
        inspect(&name)["HostConfig"]["RestartPolicy"]["Name"],
        "unless-stopped"
    );
    let lines = docker.logs(&name, 100).unwrap();
    assert!(
        lines.iter().filter(|l| *l == "crasher failing").count() > 3,
        "{lines:?}"
    );
    docker.remove(&name).unwrap();
}

#[test]
fn pull_policy_never_with_a_missing_image_is_an_image_error() {
    require_engine();
    let manager = unique("never");
    let _cleanup = Cleanup(vec![manager.clone()]);
    let options = DockerOptions {
        pull_policy: PullPolicy::Never,
        ..DockerOptions::default()
    };
    let docker = Docker::new(&settings(&manager, options), PlatformKind::OpenCti).unwrap();
    let missing = spec(
        &format!("{manager}-a"),
        "c",
        "xtm-test/absent:1",
        "h",
        vec![],
        true,
    );
    let err = docker.deploy(&missing).unwrap_err();
    assert!(matches!(err, Error::Image { .. }), "{err}");
    assert!(docker.list().unwrap().is_empty());
    // A present image deploys under the same policy.
    let present = spec(&format!("{manager}-b"), "c", TICKER, "h", vec![], false);
    docker.deploy(&present).unwrap();
    assert_eq!(docker.list().unwrap().len(), 1);
}

#[test]
fn a_local_image_deploys_when_the_registry_is_unreachable() {
    require_engine();
    let manager = unique("offline");
    let _cleanup = Cleanup(vec![manager.clone()]);
    // A registry "on" a closed loopback port, with the image already present locally.
    let dead = "127.0.0.1:9";
    let (code, body) = api(
        "POST",
        &format!("/images/{TICKER}/tag?repo={dead}/xtm-test/ticker&tag=1"),
        None,
    );
    assert_eq!(code, 201, "{}", String::from_utf8_lossy(&body));
    for (policy, suffix) in [("if-not-present", "a"), ("always", "b")] {
        let mut s = settings(
            &manager,
            DockerOptions {
                pull_policy: policy.parse().unwrap(),
                ..DockerOptions::default()
            },
        );
        s.opencti.daemon.registry = Some(Registry {
            server: Some(dead.into()),
            ..Registry::default()
        });
        let docker = Docker::new(&s, PlatformKind::OpenCti).unwrap();
        let name = format!("{manager}-{suffix}");
        docker
            .deploy(&spec(&name, suffix, TICKER, "h", vec![], true))
            .unwrap();
        assert_eq!(
            inspect(&name)["Config"]["Image"],
            format!("{dead}/{TICKER}"),
            "{policy}"
        );
        // Nothing local to fall back to: the failed pull is the answer.
        let err = docker
            .deploy(&spec(
                &format!("{name}-x"),
                "x",
                "xtm-test/absent:1",
                "h",
                vec![],
                true,
            ))
            .unwrap_err();
        assert!(matches!(err, Error::Image { .. }), "{policy}: {err}");
        println!("{policy}, registry down, no local image: {err}");
    }
    drop(_cleanup);
    untag(&format!("{dead}/{TICKER}"));
}

#[test]
fn containers_of_another_manager_are_not_listed() {
    require_engine();
    let (mine, theirs) = (unique("mine"), unique("theirs"));
    let _cleanup = Cleanup(vec![mine.clone(), theirs.clone()]);
    let docker = Docker::new(
        &settings(&mine, DockerOptions::default()),
        PlatformKind::OpenCti,
    )
    .unwrap();
    let other = Docker::new(
        &settings(&theirs, DockerOptions::default()),
        PlatformKind::OpenCti,
    )
    .unwrap();
    docker
        .deploy(&spec(&format!("{mine}-a"), "a", TICKER, "h", vec![], false))
        .unwrap();
    other
        .deploy(&spec(
            &format!("{theirs}-b"),
            "b",
            TICKER,
            "h",
            vec![],
            false,
        ))
        .unwrap();
    // Ours by label but without a connector id: listed as such, never inspected.
    let body = format!(
        r#"{{"Image":"{TICKER}","Labels":{{"opencti-manager":"{mine}"}},"HostConfig":{{"NetworkMode":"none"}}}}"#
    );
    let (code, _) = api(
        "POST",
        &format!("/containers/create?name={mine}-stray"),
        Some(&body),
    );
    assert_eq!(code, 201);

    let list = docker.list().unwrap();
    let mut names: Vec<&str> = list.iter().map(|w| w.name.as_str()).collect();
    names.sort();
    assert_eq!(names, [format!("{mine}-a"), format!("{mine}-stray")]);
    let stray = find(&list, &format!("{mine}-stray"));
    assert_eq!(
        (stray.connector_id.as_ref(), stray.hash.as_ref()),
        (None, None)
    );
    assert_eq!(other.list().unwrap().len(), 1);
}

/// Reads the single file of a tar answer: (mode, content).
fn tar_file(tar: &[u8]) -> (u32, Vec<u8>) {
    let field = |r: std::ops::Range<usize>| {
        let text = String::from_utf8_lossy(&tar[r])
            .trim_matches(|c| c == '\0' || c == ' ')
            .to_string();
        u64::from_str_radix(&text, 8).unwrap()
    };
    let size = field(124..136) as usize;
    (field(100..108) as u32, tar[512..512 + size].to_vec())
}

#[test]
fn the_proxy_ca_bundle_is_in_the_container_after_deploy() {
    require_engine();
    let manager = unique("ca");
    let _cleanup = Cleanup(vec![manager.clone()]);
    let dir = std::env::temp_dir().join(&manager);
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("proxy-ca.pem");
    std::fs::write(
        &file,
        "-----BEGIN CERTIFICATE-----\nFROMFILE\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let mut s = settings(&manager, DockerOptions::default());
    s.opencti.with_proxy = true;
    s.opencti.https_proxy_ca = vec![
        "-----BEGIN CERTIFICATE-----\nINLINE\n-----END CERTIFICATE-----".into(),
        file.display().to_string(),
    ];
    let docker = Docker::new(&s, PlatformKind::OpenCti).unwrap();
    let name = format!("{manager}-a");
    docker
        .deploy(&spec(&name, "c", TICKER, "h", vec![], true))
        .unwrap();

    let (code, tar) = api(
        "GET",
        &format!("/containers/{name}/archive?path=/etc/ssl/certs/xtm-proxy-ca.crt"),
        None,
    );
    assert_eq!(code, 200, "the CA file is in the container");
    let (mode, content) = tar_file(&tar);
    assert_eq!(mode & 0o777, 0o444);
    let want = "-----BEGIN CERTIFICATE-----\nINLINE\n-----END CERTIFICATE-----\n\
                -----BEGIN CERTIFICATE-----\nFROMFILE\n-----END CERTIFICATE-----\n";
    let text = String::from_utf8(content).unwrap();
    assert!(text.starts_with(want), "{}", &text[..text.len().min(300)]);
    let roots = std::fs::read_to_string("/etc/ssl/certs/ca-certificates.crt").unwrap_or_default();
    assert_eq!(
        text.len(),
        want.len() + roots.len(),
        "proxy CAs, then the system roots"
    );
    assert_eq!(
        find(&docker.list().unwrap(), &name).state,
        WorkloadState::Running
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn operations_on_a_missing_container_are_not_found() {
    require_engine();
    let manager = unique("missing");
    let docker = Docker::new(
        &settings(&manager, DockerOptions::default()),
        PlatformKind::OpenCti,
    )
    .unwrap();
    let name = format!("{manager}-nothing");
    for (op, result) in [
        ("start", docker.start(&name)),
        ("stop", docker.stop(&name)),
        ("remove", docker.remove(&name)),
        ("logs", docker.logs(&name, 10).map(drop)),
    ] {
        assert!(
            matches!(result, Err(Error::NotFound { .. })),
            "{op}: {result:?}"
        );
    }
    // A taken name is an API error, not "missing".
    let _cleanup = Cleanup(vec![manager.clone()]);
    let taken = spec(&format!("{manager}-dup"), "c", TICKER, "h", vec![], false);
    docker.deploy(&taken).unwrap();
    let err = docker.deploy(&taken).unwrap_err();
    assert!(matches!(err, Error::Api { code: 409, .. }), "{err}");
}

#[test]
fn the_api_version_is_negotiated_down_to_the_engine() {
    require_engine();
    let docker = Docker::new(
        &settings(&unique("version"), DockerOptions::default()),
        PlatformKind::OpenCti,
    )
    .unwrap();
    let (_, body) = api("GET", "/version", None);
    let engine: Value = serde_json::from_slice(&body).unwrap();
    let engine = ApiVersion::parse(engine["ApiVersion"].as_str().unwrap()).unwrap();
    let used = docker.client().api_version().unwrap();
    assert_eq!(used, engine.min(MAX_API_VERSION));
    println!("engine API {engine}, used {used}");
    assert_eq!(docker.client().request_count(), 1);
    docker.client().api_version().unwrap();
    assert_eq!(docker.client().request_count(), 1, "negotiated once");
}

/// Forwards loopback TCP connections to the engine socket, so `tcp://` is
/// exercised against the real engine (dockerd here listens on the socket only).
fn tcp_forwarder() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for tcp in listener.incoming().flatten() {
            let Ok(unix) = UnixStream::connect(socket()) else {
                continue;
            };
            let (mut tcp_r, mut unix_w) = (tcp.try_clone().unwrap(), unix.try_clone().unwrap());
            std::thread::spawn(move || pipe(&mut tcp_r, &mut unix_w));
            let (mut unix_r, mut tcp_w) = (unix, tcp);
            std::thread::spawn(move || pipe(&mut unix_r, &mut tcp_w));
        }
    });
    port
}

fn pipe(from: &mut impl Read, to: &mut impl Write) {
    let _ = std::io::copy(from, to);
}

#[test]
fn a_tcp_engine_address_is_honoured() {
    require_engine();
    let manager = unique("tcp");
    let _cleanup = Cleanup(vec![manager.clone()]);
    let port = tcp_forwarder();
    let options = DockerOptions {
        host: Some(format!("tcp://127.0.0.1:{port}").parse().unwrap()),
        ..DockerOptions::default()
    };
    let docker = Docker::new(&settings(&manager, options), PlatformKind::OpenCti).unwrap();
    let name = format!("{manager}-a");
    docker
        .deploy(&spec(&name, "c", TICKER, "h", vec![], true))
        .unwrap();
    assert_eq!(
        find(&docker.list().unwrap(), &name).state,
        WorkloadState::Running
    );
    docker.remove(&name).unwrap();
    assert!(docker.list().unwrap().is_empty());
}

#[test]
fn an_unreachable_engine_is_a_transport_error() {
    let options = DockerOptions {
        host: Some("unix:///nonexistent/docker.sock".parse().unwrap()),
        ..DockerOptions::default()
    };
    let docker = Docker::new(&settings("unreachable", options), PlatformKind::OpenCti).unwrap();
    assert!(matches!(docker.list(), Err(Error::Transport { .. })));
    let err = docker
        .deploy(&spec("x", "c", TICKER, "h", vec![], true))
        .unwrap_err();
    assert!(matches!(err, Error::Transport { .. }), "{err}");
}
