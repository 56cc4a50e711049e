//! The real `xtm-composer` binary end to end (issue 3): the in-process fake
//! OpenCTI, the real dockerd and the authenticated registry of `scripts/`.
//! Each test writes its own config folder, uses its own manager id and names,
//! polls with deadlines, and removes its containers. Docker state is read with
//! curl, independently of the composer's client. Start the engine first:
//! `scripts/start-dockerd.sh && scripts/start-registry.sh && scripts/make-test-images.sh`.

mod common;

use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use common::composer::{
    Cleanup, Composer, DEFAULT_SOCKET, Engine, Forwarder, REGISTRY, Setup, env_map, epoch_secs,
    existing_name, scratch, vectors,
};
use common::engine::assert_clean_ticker_lines;
use common::fake_opencti::{FakeOpenCti, connector};
use serde_json::{Value, json};

const TICKER: &str = "xtm-test/ticker:1";
const CRASHER: &str = "xtm-test/crasher:1";
/// Generous: five agents share two cores on the CI machine.
const CONVERGE: Duration = Duration::from_secs(90);

/// The two registry tests untag and pull the same image: one at a time.
fn registry_lock() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

/// A token that appears nowhere else, to grep for.
fn token(test: &str) -> String {
    format!("tok-{test}-{}-Zq8", std::process::id())
}

fn manager(test: &str) -> String {
    format!("xtm-e2e-{test}-{}", std::process::id())
}

/// The 10 ticker connectors of one key size: a plain value, a v1 and a v2 secret.
fn tickers(manager: &str, keys: &Value, image: &str, hash: &str) -> Vec<Value> {
    (0..10)
        .map(|i| ticker(manager, keys, image, i, hash, &format!("plain-{i}")))
        .collect()
}

fn ticker(manager: &str, keys: &Value, image: &str, i: usize, hash: &str, plain: &str) -> Value {
    let config = vec![
        ("PLAIN", plain, false),
        ("SECRET_V1", keys["v1_pkcs1v15"].as_str().unwrap(), true),
        ("SECRET_V2", keys["v2_oaep_sha256"].as_str().unwrap(), true),
    ];
    let name = format!("{manager} C{i}");
    connector(&format!("c{i}"), &name, image, hash, "starting", config)
}

fn container_name(manager: &str, i: usize) -> String {
    existing_name(&format!("{manager} C{i}"))
}

fn ids(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("c{i}")).collect()
}

fn all_reported(fake: &FakeOpenCti, ids: &[String], status: &str) -> Option<()> {
    ids.iter()
        .all(|id| fake.current_status(id).as_deref() == Some(status))
        .then_some(())
}

/// What a container was, to prove it was not recreated or restarted.
fn identity(c: &Value) -> (String, String, i64) {
    (
        c["Id"].as_str().unwrap().to_string(),
        c["State"]["StartedAt"].as_str().unwrap().to_string(),
        c["RestartCount"].as_i64().unwrap(),
    )
}

/// No decrypted value and no token anywhere in the composer's output (trace level).
fn assert_no_secrets(composer: &Composer, secrets: &[&str]) {
    let out = composer.output();
    assert!(
        out.contains("deployed") || out.contains("adopt") || out.len() > 1000,
        "suspiciously short log: {out}"
    );
    for s in secrets {
        assert!(
            !out.contains(s),
            "{s:?} appears in {}",
            composer.log.display()
        );
    }
}

/// Deploys the 10 tickers of `keys` from the authenticated registry (untagged
/// locally first) and checks labels, hash marker and decrypted env.
fn deploy_ten(
    engine: &Engine,
    fake: &FakeOpenCti,
    manager: &str,
    keys: &Value,
    setup: &Setup,
) -> Composer {
    let remote = format!("{REGISTRY}/{TICKER}");
    engine.untag(&remote);
    assert!(!engine.has_image(&remote));
    fake.set_connectors(tickers(manager, keys, &remote, "h1"));
    let t = Instant::now();
    let mut composer = setup.spawn("run1");
    let names: Vec<String> = (0..10).map(|i| container_name(manager, i)).collect();
    composer.wait_until(CONVERGE, "10 containers running", || {
        engine.all_in_state(&names, true)
    });
    composer.wait_until(CONVERGE, "10 reported started", || {
        all_reported(fake, &ids(10), "started")
    });
    println!(
        "10 connectors deployed, running and reported started in {:?}",
        t.elapsed()
    );
    assert!(
        engine.has_image(&remote),
        "the image was pulled from the registry"
    );

    let plaintext = keys["plaintext"].as_str().unwrap();
    for (i, name) in names.iter().enumerate() {
        let c = engine.inspect(name).unwrap();
        assert_eq!(c["Config"]["Image"], remote.as_str());
        let labels = &c["Config"]["Labels"];
        assert_eq!(labels["opencti-manager"], manager);
        assert_eq!(labels["opencti-connector-id"], format!("c{i}").as_str());
        assert_eq!(labels["opencti-platform"], "opencti");
        let env = env_map(&c);
        assert_eq!(env["OPENCTI_CONFIG_HASH"], "h1");
        assert_eq!(env["PLAIN"], format!("plain-{i}"));
        assert_eq!(env["SECRET_V1"], plaintext, "v1 decrypted");
        assert_eq!(env["SECRET_V2"], plaintext, "v2 decrypted");
        assert_eq!(env["OPENCTI_URL"], fake.url());
    }
    composer
}

/// Every connector gets a log snapshot of plain lines from both streams.
fn assert_logs_shipped(composer: &mut Composer, fake: &FakeOpenCti, ids: &[String]) {
    composer.wait_until(
        CONVERGE,
        "log lines from stdout and stderr of every connector",
        || {
            ids.iter()
                .all(|id| {
                    fake.logs(id).is_some_and(|l| {
                        l.iter().any(|x| x.ends_with(" out"))
                            && l.iter().any(|x| x.ends_with(" err"))
                    })
                })
                .then_some(())
        },
    );
    for id in ids {
        assert_clean_ticker_lines(&fake.logs(id).unwrap());
    }
}

/// Replaces connector `i` with a new hash and value, keeping the others and
/// the statuses the composer reported.
fn change_contract(fake: &FakeOpenCti, all: &mut [Value], i: usize, changed: Value) {
    all[i] = changed;
    for c in all.iter_mut() {
        let id = c["id"].as_str().unwrap().to_string();
        c["manager_current_status"] = json!(fake.current_status(&id));
    }
    fake.set_connectors(all.to_vec());
}

#[test]
fn ten_connectors_with_a_4096_bit_key_deploy_follow_the_platform_and_leave_others_alone() {
    let _lock = registry_lock();
    let engine = Engine::shared();
    let (m, other) = (manager("k4096"), manager("k4096-other"));
    let _cleanup = Cleanup {
        engine: engine.clone(),
        managers: vec![m.clone(), other.clone()],
    };
    let keys = &vectors()["rsa4096"];
    let token = token("k4096");
    let fake = FakeOpenCti::start(&token);
    let dir = scratch("k4096");
    let setup = Setup::new(&dir, &fake.url(), &token, &m, "/var/run/docker.sock")
        .key(keys["private_key_pkcs8_pem"].as_str().unwrap())
        .registry();

    // Not ours: another manager's container for the same connector id, and this
    // manager's container of the other platform for an id OpenCTI does not list.
    let hash = |h: &str| vec![format!("OPENCTI_CONFIG_HASH={h}")];
    let foreign = [
        engine.create_and_start(
            &format!("{other}-c0"),
            TICKER,
            json!({"opencti-manager": other, "opencti-connector-id": "c0", "opencti-platform": "opencti"}),
            &hash("x"),
        ),
        engine.create_and_start(
            &format!("{m}-aev"),
            TICKER,
            json!({"opencti-manager": m, "opencti-connector-id": "aev-1", "opencti-platform": "openaev"}),
            &hash("x"),
        ),
    ];
    let foreign: Vec<_> = foreign
        .iter()
        .map(|id| identity(&engine.inspect(id).unwrap()))
        .collect();

    let mut composer = deploy_ten(&engine, &fake, &m, keys, &setup);
    let names: Vec<String> = (0..10).map(|i| container_name(&m, i)).collect();
    assert_logs_shipped(&mut composer, &fake, &ids(10));

    // Requested stopping -> all stopped and reported; starting -> all running again.
    let t = Instant::now();
    for id in ids(10) {
        fake.set_requested(&id, "stopping");
    }
    composer.wait_until(CONVERGE, "10 containers stopped", || {
        engine.all_in_state(&names, false)
    });
    composer.wait_until(CONVERGE, "10 reported stopped", || {
        all_reported(&fake, &ids(10), "stopped")
    });
    for id in ids(10) {
        fake.set_requested(&id, "starting");
    }
    composer.wait_until(CONVERGE, "10 containers running again", || {
        engine.all_in_state(&names, true)
    });
    composer.wait_until(CONVERGE, "10 reported started again", || {
        all_reported(&fake, &ids(10), "started")
    });
    println!("stop and start of 10 connectors in {:?}", t.elapsed());

    // Contract hash change -> a new container with the new env.
    let before = engine.inspect(&names[3]).unwrap();
    let mut all = tickers(&m, keys, &format!("{REGISTRY}/{TICKER}"), "h1");
    let changed = ticker(
        &m,
        keys,
        &format!("{REGISTRY}/{TICKER}"),
        3,
        "h2",
        "changed-3",
    );
    change_contract(&fake, &mut all, 3, changed);
    let after = composer.wait_until(CONVERGE, "c3 recreated with hash h2", || {
        engine
            .inspect(&names[3])
            .filter(|c| c["Id"] != before["Id"] && c["State"]["Running"] == true)
    });
    let env = env_map(&after);
    assert_eq!(env["OPENCTI_CONFIG_HASH"], "h2");
    assert_eq!(env["PLAIN"], "changed-3");
    assert_eq!(env["SECRET_V2"], keys["plaintext"].as_str().unwrap());

    // Connector deleted on the platform -> its container removed.
    fake.remove_connector("c9");
    composer.wait_until(CONVERGE, "c9's container removed", || {
        engine.inspect(&names[9]).is_none().then_some(())
    });

    for (was, id) in foreign
        .iter()
        .zip([format!("{other}-c0"), format!("{m}-aev")])
    {
        let now = engine
            .inspect(&id)
            .unwrap_or_else(|| panic!("{id} was removed"));
        assert_eq!(&identity(&now), was, "{id} was touched");
        assert_eq!(now["State"]["Running"], true, "{id}");
    }

    println!("SIGTERM -> exit 0 in {:?}", composer.terminate_ok());
    engine
        .all_in_state(&names[..9], true)
        .expect("containers keep running after SIGTERM");
    assert_no_secrets(
        &composer,
        &[
            keys["plaintext"].as_str().unwrap(),
            "opencti-token-0123456789",
            &token,
        ],
    );
}

#[test]
fn ten_connectors_with_a_2048_bit_key_are_adopted_after_kill_9() {
    let _lock = registry_lock();
    let engine = Engine::shared();
    let m = manager("k2048");
    let _cleanup = Cleanup {
        engine: engine.clone(),
        managers: vec![m.clone()],
    };
    let keys = &vectors()["rsa2048"];
    let token = token("k2048");
    let fake = FakeOpenCti::start(&token);
    let dir = scratch("k2048");
    let setup = Setup::new(&dir, &fake.url(), &token, &m, "/var/run/docker.sock")
        .key(keys["private_key_pkcs8_pem"].as_str().unwrap())
        .registry();
    let mut first = deploy_ten(&engine, &fake, &m, keys, &setup);
    let names: Vec<String> = (0..10).map(|i| container_name(&m, i)).collect();
    let before: Vec<_> = names
        .iter()
        .map(|n| identity(&engine.inspect(n).unwrap()))
        .collect();

    first.kill9();
    let since = epoch_secs();
    let forwarder = Forwarder::start(&dir.join("engine.sock"), "/var/run/docker.sock");
    let mut second = setup
        .clone()
        .var("OPENCTI__DAEMON__DOCKER__HOST", &forwarder.host())
        .spawn("run2");
    // Three full cycles of the new process (one listing each).
    second.wait_until(CONVERGE, "3 cycles of the restarted composer", || {
        let lists = forwarder
            .seen()
            .iter()
            .filter(|s| s.path.contains("/containers/json"))
            .count();
        (lists >= 3).then_some(())
    });
    second.wait_until(CONVERGE, "logs shipped again", || {
        let logs = forwarder
            .seen()
            .iter()
            .filter(|s| s.path.contains("/logs"))
            .count();
        (logs >= 10).then_some(())
    });
    let changes: Vec<String> = forwarder
        .seen()
        .iter()
        .filter(|s| s.method != "GET")
        .map(|s| format!("{} {}", s.method, s.path))
        .collect();
    assert!(
        changes.is_empty(),
        "the restarted composer changed containers: {changes:?}"
    );
    let after: Vec<_> = names
        .iter()
        .map(|n| identity(&engine.inspect(n).unwrap()))
        .collect();
    assert_eq!(after, before, "same ids, same StartedAt, no restart");
    let events = engine.events(&m, since, epoch_secs());
    assert!(
        !events
            .iter()
            .any(|(a, _)| ["create", "start", "die", "destroy"].contains(&a.as_str())),
        "{events:?}"
    );
    assert_eq!(engine.containers(&m).len(), 10, "no duplicate");
    println!(
        "adopted 10 containers after kill -9; {} engine requests, none changing",
        forwarder.count()
    );

    println!("SIGTERM -> exit 0 in {:?}", second.terminate_ok());
    engine
        .all_in_state(&names, true)
        .expect("containers keep running after SIGTERM");
    let secrets = [
        keys["plaintext"].as_str().unwrap(),
        "opencti-token-0123456789",
        &token,
    ];
    assert_no_secrets(&first, &secrets);
    assert_no_secrets(&second, &secrets);
}

#[test]
fn pull_policy_never_fails_one_connector_a_crasher_loops_and_existing_containers_are_adopted() {
    let engine = Engine::shared();
    let m = manager("local");
    let _cleanup = Cleanup {
        engine: engine.clone(),
        managers: vec![m.clone()],
    };
    let keys = &vectors()["rsa4096"];
    let token = token("local");
    let fake = FakeOpenCti::start(&token);
    let dir = scratch("local");
    let setup = Setup::new(&dir, &fake.url(), &token, &m, "/var/run/docker.sock")
        .key(keys["private_key_pkcs8_pem"].as_str().unwrap())
        .var("OPENCTI__DAEMON__DOCKER__PULL_POLICY", "never");
    let missing = format!("xtm-test/absent-{}:1", std::process::id());
    let connectors = vec![
        connector(
            "ok",
            &format!("{m} Ok"),
            TICKER,
            "h1",
            "starting",
            vec![("A", "1", false)],
        ),
        connector(
            "absent",
            &format!("{m} Absent"),
            &missing,
            "h1",
            "starting",
            vec![],
        ),
        connector(
            "crash",
            &format!("{m} Crash"),
            CRASHER,
            "h1",
            "starting",
            vec![],
        ),
        connector(
            "legacy",
            &format!("{m} Legacy"),
            TICKER,
            "h1",
            "starting",
            vec![("A", "1", false)],
        ),
        connector(
            "bare",
            &format!("{m} Bare Legacy"),
            TICKER,
            "h1",
            "starting",
            vec![("A", "1", false)],
        ),
    ];
    fake.set_connectors(connectors);

    // Containers as the existing composer makes them: its name rule, the labels
    // (one without the platform label, as older versions did), the hash env.
    let env = vec![
        "A=1".to_string(),
        format!("OPENCTI_URL={}", fake.url()),
        "OPENCTI_CONFIG_HASH=h1".to_string(),
    ];
    let legacy = existing_name(&format!("{m} Legacy"));
    let bare = existing_name(&format!("{m} Bare Legacy"));
    engine.create_and_start(
        &legacy,
        TICKER,
        json!({"opencti-manager": m, "opencti-connector-id": "legacy", "opencti-platform": "opencti"}),
        &env,
    );
    engine.create_and_start(
        &bare,
        TICKER,
        json!({"opencti-manager": m, "opencti-connector-id": "bare"}),
        &env,
    );
    let before = [&legacy, &bare].map(|n| identity(&engine.inspect(n).unwrap()));
    let since = epoch_secs();

    let mut composer = setup.spawn("run");
    let ok = existing_name(&format!("{m} Ok"));
    composer.wait_until(CONVERGE, "ok running", || {
        engine.all_in_state(std::slice::from_ref(&ok), true)
    });
    let ids = ["ok", "legacy", "bare"].map(String::from);
    composer.wait_until(CONVERGE, "ok, legacy and bare reported started", || {
        all_reported(&fake, &ids, "started")
    });
    composer.wait_until(CONVERGE, "an error for the missing image", || {
        composer_line(&composer_text(&dir), "absent", &missing)
    });
    assert!(
        engine
            .inspect(&existing_name(&format!("{m} Absent")))
            .is_none()
    );
    assert!(!engine.has_image(&missing), "never pulled");

    // The engine restarts the crasher (restart policy); health says reboot loop.
    let health = composer.wait_until(CONVERGE, "health with is_in_reboot_loop", || {
        fake.health("crash")
            .filter(|h| h["is_in_reboot_loop"] == true)
    });
    let crasher = engine
        .inspect(&existing_name(&format!("{m} Crash")))
        .unwrap();
    assert!(crasher["RestartCount"].as_i64().unwrap() > 3, "{crasher}");
    assert!(health["restart_count"].as_i64().unwrap() > 3, "{health}");
    println!("crasher health: {health}");

    let after = [&legacy, &bare].map(|n| identity(&engine.inspect(n).unwrap()));
    assert_eq!(
        after, before,
        "existing containers adopted, not recreated or restarted"
    );
    let events = engine.events(&m, since, epoch_secs());
    let touched: Vec<_> = events
        .iter()
        .filter(|(a, n)| (n == &legacy || n == &bare) && a != "exec_create")
        .collect();
    assert!(touched.is_empty(), "{touched:?}");

    println!("SIGTERM -> exit 0 in {:?}", composer.terminate_ok());
    assert_no_secrets(&composer, &[keys["plaintext"].as_str().unwrap(), &token]);
}

fn composer_text(dir: &std::path::Path) -> String {
    std::fs::read_to_string(dir.join("run.log")).unwrap_or_default()
}

/// `Some(())` when an ERROR line names connector `id` and `image`.
fn composer_line(text: &str, id: &str, image: &str) -> Option<()> {
    text.lines()
        .any(|l| {
            l.contains("ERROR") && l.contains(&format!("connector {id}:")) && l.contains(image)
        })
        .then_some(())
}

/// The air-gapped case: `if-not-present` with the registry unreachable (a
/// closed loopback port) deploys what the engine already has and never pulls;
/// a connector whose image is missing logs an error and the others deploy.
#[test]
fn if_not_present_deploys_local_images_while_the_registry_is_unreachable() {
    let engine = Engine::shared();
    let m = manager("offline");
    let _cleanup = Cleanup {
        engine: engine.clone(),
        managers: vec![m.clone()],
    };
    // Port 9 (discard) is closed on this machine: every pull from it fails at once.
    let unreachable = "127.0.0.1:9";
    engine.tag(TICKER, &format!("{unreachable}/xtm-test/ticker"), "1");
    let keys = &vectors()["rsa2048"];
    let token = token("offline");
    let fake = FakeOpenCti::start(&token);
    let dir = scratch("offline");
    let setup = Setup::new(&dir, &fake.url(), &token, &m, DEFAULT_SOCKET)
        .key(keys["private_key_pkcs8_pem"].as_str().unwrap())
        .var("OPENCTI__DAEMON__DOCKER__PULL_POLICY", "if-not-present")
        .var("OPENCTI__DAEMON__REGISTRY__SERVER", unreachable);
    let missing = format!("xtm-test/absent-{}:1", std::process::id());
    let config = || vec![("A", "1", false)];
    fake.set_connectors(vec![
        connector("l0", &format!("{m} L0"), TICKER, "h1", "starting", config()),
        connector("l1", &format!("{m} L1"), TICKER, "h1", "starting", config()),
        connector(
            "gone",
            &format!("{m} Gone"),
            &missing,
            "h1",
            "starting",
            config(),
        ),
    ]);
    let mut composer = setup.spawn("run");
    let names = [
        existing_name(&format!("{m} L0")),
        existing_name(&format!("{m} L1")),
    ];
    composer.wait_until(CONVERGE, "l0 and l1 running", || {
        engine.all_in_state(&names, true)
    });
    let ids = ["l0", "l1"].map(String::from);
    composer.wait_until(CONVERGE, "l0 and l1 reported started", || {
        all_reported(&fake, &ids, "started")
    });
    for n in &names {
        let c = engine.inspect(n).unwrap();
        assert_eq!(
            c["Config"]["Image"],
            format!("{unreachable}/{TICKER}").as_str()
        );
    }
    let qualified = format!("{unreachable}/{missing}");
    let log = composer.log.clone();
    composer.wait_until(CONVERGE, "an error for the missing image", || {
        composer_line(
            &std::fs::read_to_string(&log).unwrap_or_default(),
            "gone",
            &qualified,
        )
    });
    assert!(
        engine
            .inspect(&existing_name(&format!("{m} Gone")))
            .is_none()
    );
    assert_eq!(fake.current_status("gone"), None, "nothing reported for it");
    println!("SIGTERM -> exit 0 in {:?}", composer.terminate_ok());
}

/// `opencti.daemon.docker` host options and limits reach the container's
/// HostConfig; the proxy CA bundle (the configured CA, then the system roots)
/// is inside the container at the path the env names; with the env display
/// on, the log shows plain values and never a secret or the proxy password.
#[test]
fn host_options_proxy_ca_and_env_display_without_secrets() {
    let engine = Engine::shared();
    let m = manager("hostopts");
    let _cleanup = Cleanup {
        engine: engine.clone(),
        managers: vec![m.clone()],
    };
    let keys = &vectors()["rsa2048"];
    let token = token("hostopts");
    let fake = FakeOpenCti::start(&token);
    let dir = scratch("hostopts");
    let ca = common::tls::TestCa::new();
    let ca_file = dir.join("proxy-ca.pem");
    std::fs::write(&ca_file, &ca.ca_pem).unwrap();
    let proxy_password = format!("proxy-pw-{}-Zq8", std::process::id());
    let setup = Setup::new(&dir, &fake.url(), &token, &m, DEFAULT_SOCKET)
        .key(keys["private_key_pkcs8_pem"].as_str().unwrap())
        .var("OPENCTI__WITH_PROXY", "true")
        .var(
            "OPENCTI__HTTPS_PROXY",
            &format!("http://user:{proxy_password}@127.0.0.1:3128"),
        )
        .var("OPENCTI__NO_PROXY", "127.0.0.1,localhost")
        .var("OPENCTI__HTTPS_PROXY_CA", ca_file.to_str().unwrap())
        .var("OPENCTI__DAEMON__DOCKER__PULL_POLICY", "never")
        .var(
            "OPENCTI__DAEMON__DOCKER__EXTRA_HOSTS",
            r#"["platform.example:127.0.0.1"]"#,
        )
        .var("OPENCTI__DAEMON__DOCKER__DNS", r#"["127.0.0.53"]"#)
        .var("OPENCTI__DAEMON__DOCKER__DNS_SEARCH", r#"["example.test"]"#)
        .var("OPENCTI__DAEMON__DOCKER__CAP_ADD", r#"["NET_ADMIN"]"#)
        .var("OPENCTI__DAEMON__DOCKER__CAP_DROP", r#"["MKNOD"]"#)
        .var(
            "OPENCTI__DAEMON__DOCKER__SECURITY_OPT",
            r#"["no-new-privileges"]"#,
        )
        .var("OPENCTI__DAEMON__DOCKER__SHM_SIZE", "33554432")
        .var(
            "OPENCTI__DAEMON__DOCKER__SYSCTLS",
            r#"{"net.core.somaxconn": "512"}"#,
        )
        .var(
            "OPENCTI__DAEMON__DOCKER__ULIMITS",
            r#"[{"name": "nofile", "soft": 1024, "hard": 2048}]"#,
        )
        .var("OPENCTI__DAEMON__DOCKER__MEMORY", "268435456")
        .var("OPENCTI__DAEMON__DOCKER__NANO_CPUS", "500000000")
        .var("OPENCTI__DAEMON__DOCKER__RESTART_POLICY", "on-failure:5")
        .var("MANAGER__DEBUG__SHOW_ENV_VARS", "true");
    let plaintext = keys["plaintext"].as_str().unwrap();
    fake.set_connectors(vec![ticker(&m, keys, TICKER, 0, "h1", "plain-visible")]);
    let mut composer = setup.spawn("run");
    let name = container_name(&m, 0);
    composer.wait_until(CONVERGE, "c0 running", || {
        engine.all_in_state(std::slice::from_ref(&name), true)
    });
    composer.wait_until(CONVERGE, "c0 reported started", || {
        all_reported(&fake, &ids(1), "started")
    });

    let c = engine.inspect(&name).unwrap();
    let host = &c["HostConfig"];
    assert_eq!(host["NetworkMode"], "none");
    assert_eq!(host["ExtraHosts"], json!(["platform.example:127.0.0.1"]));
    assert_eq!(host["Dns"], json!(["127.0.0.53"]));
    assert_eq!(host["DnsSearch"], json!(["example.test"]));
    assert_eq!(host["CapAdd"], json!(["NET_ADMIN"]));
    assert_eq!(host["CapDrop"], json!(["MKNOD"]));
    assert_eq!(host["SecurityOpt"], json!(["no-new-privileges"]));
    assert_eq!(host["ShmSize"], 33554432);
    assert_eq!(host["Sysctls"], json!({"net.core.somaxconn": "512"}));
    assert_eq!(
        host["Ulimits"],
        json!([{"Name": "nofile", "Soft": 1024, "Hard": 2048}])
    );
    assert_eq!(host["Memory"], 268435456);
    assert_eq!(host["NanoCpus"], 500000000);
    assert_eq!(
        host["RestartPolicy"],
        json!({"Name": "on-failure", "MaximumRetryCount": 5})
    );

    let env = env_map(&c);
    assert_eq!(env["SECRET_V1"], plaintext);
    assert_eq!(
        env["HTTPS_PROXY"],
        format!("http://user:{proxy_password}@127.0.0.1:3128")
    );
    assert_eq!(env["NO_PROXY"], "127.0.0.1,localhost");
    let bundle_path = env["SSL_CERT_FILE"].clone();
    for k in [
        "REQUESTS_CA_BUNDLE",
        "NODE_EXTRA_CA_CERTS",
        "CURL_CA_BUNDLE",
    ] {
        assert_eq!(env[k], bundle_path, "{k}");
    }
    let bundle = engine
        .read_file(&name, &bundle_path)
        .expect("the CA bundle is in the container");
    let bundle = String::from_utf8(bundle).unwrap();
    assert!(bundle.starts_with(&ca.ca_pem), "the proxy CA comes first");
    let roots = std::fs::read_to_string("/etc/ssl/certs/ca-certificates.crt").unwrap_or_default();
    assert!(
        bundle.ends_with(&roots),
        "then the system roots ({} bytes)",
        roots.len()
    );
    let log = composer.output();
    assert!(log.contains("PLAIN=plain-visible"), "the env display is on");
    assert!(log.contains("SECRET_V1=***REDACTED***"));
    assert_no_secrets(&composer, &[plaintext, &proxy_password, &token]);
    println!("SIGTERM -> exit 0 in {:?}", composer.terminate_ok());
}
