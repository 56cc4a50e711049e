//! The real binary's command line: version, help, `check` on good and broken
//! configurations, start-up errors that explain themselves (DESIGN 8).

use std::path::PathBuf;
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_xtm-composer");

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("xtm-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Runs the binary with a clean environment (only PATH), plus `env`.
fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(BIN);
    c.args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn version_and_help_print_and_exit_zero() {
    let o = run(&["--version"], &[]);
    assert!(o.status.success());
    // The version, the commit built from and the target (build.rs).
    let line = String::from_utf8_lossy(&o.stdout).trim().to_string();
    let commit = std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .unwrap();
    let commit = String::from_utf8_lossy(&commit.stdout).trim().to_string();
    assert_eq!(
        line,
        format!(
            "xtm-composer {} (commit {commit}, {}-unknown-linux-gnu)",
            env!("CARGO_PKG_VERSION"),
            std::env::consts::ARCH
        )
    );
    let o = run(&["--help"], &[]);
    assert!(o.status.success());
    for word in ["run", "plan", "check", "--config"] {
        assert!(text(&o).contains(word));
    }
}

#[test]
fn unknown_argument_is_an_error_not_a_panic() {
    let o = run(&["frobnicate"], &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).contains("unknown argument"));
    assert!(!text(&o).contains("panicked"));
}

#[test]
fn check_on_a_broken_config_lists_every_problem_and_fails() {
    let dir = temp_dir("broken");
    std::fs::copy("config/default.yaml", dir.join("default.yaml")).unwrap();
    let env = [
        ("OPENCTI__DAEMON__SELECTOR", "dokcer"),
        ("MANAGER__LOGGER__LEVEL", "loud"),
        ("MANAGER__EXECUTE_SCHEDULE", "0"),
    ];
    let o = run(&["check", "--config", dir.to_str().unwrap()], &env);
    assert!(!o.status.success());
    let t = text(&o);
    assert!(t.contains("✘"), "{t}");
    assert!(
        t.contains("opencti.daemon.selector") && t.contains("OPENCTI__DAEMON__SELECTOR"),
        "{t}"
    );
    assert!(t.contains("manager.logger.level"), "{t}");
    assert!(t.contains("manager.execute_schedule"), "{t}");
    assert!(!t.contains("panicked"));
}

#[test]
fn the_existing_composers_config_loads_unchanged_and_check_names_the_missing_key() {
    let dir = temp_dir("existing");
    std::fs::copy(
        "tests/fixtures/config/existing/default.yaml",
        dir.join("default.yaml"),
    )
    .unwrap();
    let o = run(&["check", "--config", dir.to_str().unwrap()], &[]);
    let t = text(&o);
    assert!(t.contains("✔ configuration"), "{t}");
    assert!(t.contains("✘ private key"), "{t}");
    assert!(t.contains("MANAGER__CREDENTIALS_KEY_FILEPATH"), "{t}");
    assert!(!o.status.success());
}

#[test]
fn run_without_a_key_exits_with_an_explanation() {
    let dir = temp_dir("nokey");
    std::fs::copy("config/default.yaml", dir.join("default.yaml")).unwrap();
    let o = run(
        &["--config", dir.to_str().unwrap()],
        &[("OPENCTI__DAEMON__SELECTOR", "docker")],
    );
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("credentials_key"), "{}", text(&o));
}

/// Issue 12: a 1024-bit key (generated here by openssl) is refused by `check`
/// and by `run`, saying how big the key is and what is required.
#[test]
fn a_1024_bit_key_is_refused_by_check_and_run() {
    let dir = temp_dir("rsa1024");
    std::fs::copy("config/default.yaml", dir.join("default.yaml")).unwrap();
    let key = dir.join("key.pem");
    let made = Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:1024",
            "-out",
        ])
        .arg(&key)
        .output()
        .expect("openssl is needed to make the test key");
    assert!(made.status.success(), "{}", text(&made));
    let env = [
        ("MANAGER__CREDENTIALS_KEY_FILEPATH", key.to_str().unwrap()),
        ("OPENCTI__URL", "http://127.0.0.1:9"),
    ];
    let config = dir.to_str().unwrap();
    let check = run(&["check", "--config", config], &env);
    let t = text(&check);
    assert!(!check.status.success(), "{t}");
    assert!(t.contains("✘ private key"), "{t}");
    assert!(t.contains("1024 bits, fewer than the 2048 required"), "{t}");
    let started = run(&["run", "--config", config], &env);
    let t = text(&started);
    assert_eq!(started.status.code(), Some(2), "{t}");
    assert!(t.contains("1024 bits, fewer than the 2048 required"), "{t}");
    assert!(!t.contains("panicked"), "{t}");
}

#[test]
fn a_missing_config_folder_says_where_it_looked() {
    let o = run(&["check", "--config", "/nonexistent/xtm"], &[]);
    assert!(!o.status.success());
    assert!(text(&o).contains("/nonexistent/xtm"), "{}", text(&o));
}

#[test]
fn a_portainer_env_type_other_than_docker_stops_startup_naming_the_key() {
    let dir = temp_dir("env-type");
    std::fs::copy("config/default.yaml", dir.join("default.yaml")).unwrap();
    let vectors: serde_json::Value =
        serde_json::from_str(include_str!("fixtures/crypto-vectors.json")).unwrap();
    let key = vectors["rsa2048"]["private_key_pkcs8_pem"]
        .as_str()
        .unwrap();
    let mut child = Command::new(BIN)
        .args(["--config", dir.to_str().unwrap()])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("MANAGER__CREDENTIALS_KEY", key)
        .env("OPENCTI__DAEMON__SELECTOR", "portainer")
        .env("OPENCTI__DAEMON__PORTAINER__ENV_TYPE", "kubernetes")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // A build that accepted the setting would start its loops and run on.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            child.kill().unwrap();
            panic!("still running: env_type was accepted");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let o = child.wait_with_output().unwrap();
    let t = text(&o);
    assert_eq!(o.status.code(), Some(2), "{t}");
    // Named with where it came from, so the operator knows what to change.
    assert!(
        t.contains("opencti.daemon.portainer.env_type = \"kubernetes\"")
            && t.contains("OPENCTI__DAEMON__PORTAINER__ENV_TYPE")
            && t.contains("only docker environments are supported"),
        "{t}"
    );
    assert!(!t.contains("panicked"), "{t}");
}

/// Runs the binary with the shipped configuration, the test key and `env`
/// until it logs that it started (at most 30 s), then stops it: its log lines.
fn startup_lines(name: &str, env: &[(&str, &str)]) -> Vec<String> {
    use std::io::BufRead;
    let dir = temp_dir(name);
    std::fs::copy("config/default.yaml", dir.join("default.yaml")).unwrap();
    let vectors: serde_json::Value =
        serde_json::from_str(include_str!("fixtures/crypto-vectors.json")).unwrap();
    let key = vectors["rsa2048"]["private_key_pkcs8_pem"]
        .as_str()
        .unwrap();
    let mut child = Command::new(BIN)
        .args(["--config", dir.to_str().unwrap()])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("MANAGER__CREDENTIALS_KEY", key)
        // Nothing listens there: the loops only wait for the platform.
        .env("OPENCTI__URL", "http://127.0.0.1:9")
        .env("MANAGER__LOGGER__FORMAT", "pretty")
        .envs(env.iter().copied())
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            let started = line.contains("xtm-composer") && line.contains("started");
            let _ = tx.send(line);
            if started {
                break;
            }
        }
    });
    let mut lines = Vec::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while let Ok(line) =
        rx.recv_timeout(deadline.saturating_duration_since(std::time::Instant::now()))
    {
        lines.push(line);
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        lines.iter().any(|l| l.contains("started, manager")),
        "did not start: {lines:?}"
    );
    lines
}

#[test]
fn an_unsecured_portainer_certificate_is_warned_about_at_startup() {
    let portainer = [
        ("OPENCTI__DAEMON__SELECTOR", "portainer"),
        ("OPENCTI__DAEMON__PORTAINER__API", "https://127.0.0.1:9"),
    ];
    let warning = "TLS certificate verification is disabled for 127.0.0.1";
    let verified = startup_lines("portainer-verified", &portainer);
    assert!(
        !verified.iter().any(|l| l.contains(warning)),
        "{verified:?}"
    );
    let mut env = portainer.to_vec();
    env.push(("OPENCTI__DAEMON__PORTAINER__UNSECURED_CERTIFICATE", "true"));
    let unsecured = startup_lines("portainer-unsecured", &env);
    let line = unsecured
        .iter()
        .find(|l| l.contains(warning))
        .unwrap_or_else(|| panic!("{unsecured:?}"));
    assert!(line.contains("WARN"), "{line}");
}

// ---- Issue 14: the operator's path (swap, errors that name their target, one pass) ----

/// The test key (PKCS#8 PEM, 2048 bits).
fn test_key() -> String {
    let vectors: serde_json::Value =
        serde_json::from_str(include_str!("fixtures/crypto-vectors.json")).unwrap();
    vectors["rsa2048"]["private_key_pkcs8_pem"]
        .as_str()
        .unwrap()
        .to_string()
}

/// A folder holding the shipped default.yaml, open to every user (for `as_user`).
fn shipped_config(name: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let dir = temp_dir(name);
    std::fs::copy("config/default.yaml", dir.join("default.yaml")).unwrap();
    for p in [dir.clone(), dir.join("default.yaml")] {
        let mode = if p.is_dir() { 0o755 } else { 0o644 };
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    dir
}

/// `check` on the shipped configuration plus `env`: exit code and all output.
fn check_with(name: &str, env: &[(&str, &str)]) -> (Option<i32>, String) {
    let dir = shipped_config(name);
    let o = run(&["check", "--config", dir.to_str().unwrap()], env);
    (o.status.code(), text(&o))
}

/// Runs the binary as uid/gid 65534 (nobody), so file permissions apply even
/// though the tests run as root.
fn as_nobody(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new("setpriv");
    c.args(["--reuid=65534", "--regid=65534", "--clear-groups", BIN])
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

#[test]
fn the_existing_composers_spellings_of_levels_and_booleans_load() {
    let dir = temp_dir("spellings");
    std::fs::write(
        dir.join("default.yaml"),
        "manager:\n  logger:\n    level: INFO\n    console: yes\n    directory: Off\n\
         opencti:\n  enable: on\n  unsecured_certificate: no\n  with_proxy: 0\n",
    )
    .unwrap();
    let env = [
        ("MANAGER__LOGGER__LEVEL", "DEBUG"),
        ("MANAGER__LOGGER__FORMAT", "Pretty"),
        ("MANAGER__DEBUG__SHOW_ENV_VARS", "1"),
        ("OPENAEV__ENABLE", "NO"),
        ("OPENCTI__HTTPS_PROXY_REJECT_UNAUTHORIZED", "True"),
    ];
    let o = run(&["check", "--config", dir.to_str().unwrap()], &env);
    let t = text(&o);
    assert!(t.contains("✔ configuration"), "{t}");
    assert!(!t.contains("expected"), "{t}");
    // And `run` applies the level as given: WARN lines, no INFO line.
    let t = run_for(
        "spellings-run",
        std::time::Duration::from_secs(2),
        &[
            ("MANAGER__LOGGER__LEVEL", "Warn"),
            ("MANAGER__LOGGER__FORMAT", "PRETTY"),
        ],
    );
    assert!(t.contains(" WARN ") && !t.contains(" INFO "), "{t}");
}

/// Runs `run` on the shipped configuration with the test key, a docker selector
/// on a missing socket and `env` for `time`, then kills it: its stderr.
fn run_for(name: &str, time: std::time::Duration, env: &[(&str, &str)]) -> String {
    let dir = shipped_config(name);
    let mut child = Command::new(BIN)
        .args(["--config", dir.to_str().unwrap()])
        .env_clear()
        .env("MANAGER__CREDENTIALS_KEY", test_key())
        .env("OPENCTI__URL", "http://127.0.0.1:9")
        .env("OPENCTI__DAEMON__SELECTOR", "docker")
        .env(
            "OPENCTI__DAEMON__DOCKER__HOST",
            "unix:///nonexistent/xtm.sock",
        )
        .envs(env.iter().copied())
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(time);
    child.kill().unwrap();
    let o = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn a_refused_platform_is_named_by_its_url() {
    let key = test_key();
    let (_, t) = check_with(
        "refused",
        &[
            ("MANAGER__CREDENTIALS_KEY", &key),
            ("OPENCTI__URL", "http://127.0.0.1:9"),
        ],
    );
    assert!(
        t.contains("✘ opencti platform") && t.contains("connection refused by http://127.0.0.1:9"),
        "{t}"
    );
}

#[test]
fn a_silent_platform_is_named_with_its_timeout_and_the_setting() {
    // Accepts and never answers.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in listener.incoming().flatten() {
            held.push(s);
        }
    });
    let url = format!("http://127.0.0.1:{port}");
    let key = test_key();
    let (_, t) = check_with(
        "silent",
        &[
            ("MANAGER__CREDENTIALS_KEY", &key),
            ("OPENCTI__URL", &url),
            ("OPENCTI__REQUEST_TIMEOUT", "1"),
        ],
    );
    let want = format!("no answer from {url} within 1 s (opencti.request_timeout)");
    assert!(t.contains(&want), "{want:?} not in\n{t}");
}

#[test]
fn engine_errors_name_the_socket_and_tell_permission_from_absence() {
    use std::os::unix::fs::PermissionsExt;
    let key = test_key();
    let missing = "unix:///nonexistent/xtm/docker.sock";
    let (_, t) = check_with(
        "no-socket",
        &[
            ("MANAGER__CREDENTIALS_KEY", &key),
            ("OPENCTI__URL", "http://127.0.0.1:9"),
            ("OPENCTI__DAEMON__SELECTOR", "docker"),
            ("OPENCTI__DAEMON__DOCKER__HOST", missing),
        ],
    );
    assert!(t.contains(&format!("no such socket {missing}")), "{t}");
    assert!(t.contains("OPENCTI__DAEMON__DOCKER__HOST"), "{t}");

    // A socket only root may use, reached as nobody: permission denied, not "no such file".
    let dir = temp_dir("closed-socket");
    let path = dir.join("docker.sock");
    let _listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let config = shipped_config("closed-socket-config");
    let host = format!("unix://{}", path.display());
    let o = as_nobody(
        &["check", "--config", config.to_str().unwrap()],
        &[
            ("MANAGER__CREDENTIALS_KEY", &key),
            ("OPENCTI__URL", "http://127.0.0.1:9"),
            ("OPENCTI__DAEMON__SELECTOR", "docker"),
            ("OPENCTI__DAEMON__DOCKER__HOST", &host),
        ],
    );
    let t = text(&o);
    assert!(
        t.contains(&format!("permission denied on {host}")) && t.contains("group"),
        "{t}"
    );
}

#[test]
fn an_unreachable_api_server_is_named_with_its_context_and_namespace() {
    let dir = temp_dir("kubeconfig");
    let kubeconfig = dir.join("config");
    std::fs::write(
        &kubeconfig,
        "apiVersion: v1\nkind: Config\ncurrent-context: ctx-op14\n\
         clusters:\n- name: c\n  cluster:\n    server: https://127.0.0.1:9\n\
         contexts:\n- name: ctx-op14\n  context:\n    cluster: c\n    user: u\n    namespace: ns-op14\n\
         users:\n- name: u\n  user:\n    token: t0k3n\n",
    )
    .unwrap();
    let key = test_key();
    let (_, t) = check_with(
        "k8s-refused",
        &[
            ("MANAGER__CREDENTIALS_KEY", &key),
            ("OPENCTI__URL", "http://127.0.0.1:9"),
            ("KUBECONFIG", kubeconfig.to_str().unwrap()),
        ],
    );
    let line = t
        .lines()
        .find(|l| l.contains("opencti orchestrator"))
        .unwrap_or_else(|| panic!("{t}"));
    for part in [
        "connection refused by https://127.0.0.1:9",
        "context ctx-op14",
        "namespace ns-op14",
    ] {
        assert!(line.contains(part), "{part:?} not in {line}");
    }
    assert!(!t.contains("t0k3n"), "{t}");
}

#[test]
fn portainer_hints_name_portainer_settings_not_the_docker_host() {
    let key = test_key();
    let (_, t) = check_with(
        "portainer-hint",
        &[
            ("MANAGER__CREDENTIALS_KEY", &key),
            ("OPENCTI__URL", "http://127.0.0.1:9"),
            ("OPENCTI__DAEMON__SELECTOR", "portainer"),
            ("OPENCTI__DAEMON__PORTAINER__API", "https://127.0.0.1:9"),
        ],
    );
    assert!(
        t.contains("connection refused by https://127.0.0.1:9"),
        "{t}"
    );
    assert!(t.contains("opencti.daemon.portainer.api"), "{t}");
    assert!(!t.contains("DOCKER__HOST"), "{t}");
}

#[test]
fn file_errors_name_their_key_and_tell_denied_from_missing_and_der_from_pem() {
    use std::os::unix::fs::PermissionsExt;
    let dir = temp_dir("files");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let closed = dir.join("closed.pem");
    std::fs::write(&closed, test_key()).unwrap();
    std::fs::set_permissions(&closed, std::fs::Permissions::from_mode(0o600)).unwrap();
    let der = dir.join("key.der");
    std::fs::write(&der, [0x30, 0x82, 0x04, 0xbd, 0x02, 0x01, 0x00, 0xff]).unwrap();
    std::fs::set_permissions(&der, std::fs::Permissions::from_mode(0o644)).unwrap();
    let config = shipped_config("files-config");
    let dir_arg = config.to_str().unwrap();

    let o = as_nobody(
        &["check", "--config", dir_arg],
        &[
            (
                "MANAGER__CREDENTIALS_KEY_FILEPATH",
                closed.to_str().unwrap(),
            ),
            ("OPENCTI__CA_FILE", "/nonexistent/xtm/ca.pem"),
        ],
    );
    let t = text(&o);
    assert_eq!(o.status.code(), Some(2), "{t}");
    assert!(
        t.contains(&format!(
            "manager.credentials_key_filepath = \"{}\" (from env MANAGER__CREDENTIALS_KEY_FILEPATH): permission denied",
            closed.display()
        )),
        "{t}"
    );
    assert!(
        t.contains(
            "opencti.ca_file = \"/nonexistent/xtm/ca.pem\" (from env OPENCTI__CA_FILE): no such file"
        ),
        "{t}"
    );

    let (code, t) = check_with(
        "der",
        &[("MANAGER__CREDENTIALS_KEY_FILEPATH", der.to_str().unwrap())],
    );
    assert_eq!(code, Some(2), "{t}");
    assert!(
        t.contains("DER") && t.contains("openssl pkey -inform DER"),
        "{t}"
    );
    assert!(!t.contains("UTF-8"), "{t}");
}

#[test]
fn a_config_folder_closed_to_this_user_says_permission_denied() {
    use std::os::unix::fs::PermissionsExt;
    // As the image lays it out: 0750, group 10001; run as another user.
    let dir = shipped_config("closed-folder");
    std::os::unix::fs::chown(&dir, Some(0), Some(10001)).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o750)).unwrap();
    let o = as_nobody(&["check", "--config", dir.to_str().unwrap()], &[]);
    let t = text(&o);
    assert!(!o.status.success(), "{t}");
    assert!(
        t.contains("permission denied") && t.contains("10001"),
        "{t}"
    );
    assert!(!t.contains("holds no default.yaml"), "{t}");
}

#[test]
fn run_and_check_list_a_bad_value_a_missing_key_file_and_a_missing_ca_together() {
    let env = [
        ("MANAGER__EXECUTE_SCHEDULE", "soon"),
        (
            "MANAGER__CREDENTIALS_KEY_FILEPATH",
            "/nonexistent/xtm/key.pem",
        ),
        ("OPENCTI__CA_FILE", "/nonexistent/xtm/ca.pem"),
    ];
    let dir = shipped_config("one-pass");
    for command in ["check", "run"] {
        let o = run(&[command, "--config", dir.to_str().unwrap()], &env);
        let t = text(&o);
        assert_eq!(o.status.code(), Some(2), "{command}: {t}");
        for part in [
            "manager.execute_schedule = \"soon\"",
            "manager.credentials_key_filepath = \"/nonexistent/xtm/key.pem\"",
            "opencti.ca_file = \"/nonexistent/xtm/ca.pem\"",
            "3 problem(s)",
        ] {
            assert!(t.contains(part), "{command}: {part:?} not in\n{t}");
        }
        // Printed once, not as a log line and again as text.
        assert_eq!(
            t.matches("/nonexistent/xtm/ca.pem").count(),
            1,
            "{command}: {t}"
        );
    }
}

#[test]
fn the_start_line_never_shows_credentials_of_a_url() {
    let lines = startup_lines(
        "start-line-userinfo",
        &[
            ("OPENCTI__URL", "http://user:s3cr3t@127.0.0.1:9"),
            ("OPENCTI__DAEMON__SELECTOR", "docker"),
            (
                "OPENCTI__DAEMON__DOCKER__HOST",
                "unix:///nonexistent/xtm.sock",
            ),
        ],
    );
    let all = lines.join("\n");
    assert!(
        all.contains("opencti http://***@127.0.0.1:9 -> docker"),
        "{all}"
    );
    assert!(!all.contains("s3cr3t"), "{all}");
}

#[test]
fn the_start_line_names_platform_url_orchestrator_and_engine() {
    let lines = startup_lines(
        "start-line",
        &[
            ("OPENCTI__DAEMON__SELECTOR", "docker"),
            (
                "OPENCTI__DAEMON__DOCKER__HOST",
                "unix:///nonexistent/xtm.sock",
            ),
        ],
    );
    let started = lines
        .iter()
        .find(|l| l.contains("started, manager"))
        .unwrap();
    assert!(
        started.contains(
            "manager default-manager-id, 4 worker(s): opencti http://127.0.0.1:9 -> docker unix:///nonexistent/xtm.sock"
        ),
        "{started}"
    );
}

#[test]
fn a_start_up_error_is_printed_once() {
    let dir = shipped_config("fatal-once");
    let o = run(
        &["--config", dir.to_str().unwrap()],
        &[("MANAGER__CREDENTIALS_KEY", "not a key")],
    );
    let t = text(&o);
    assert_eq!(o.status.code(), Some(2), "{t}");
    assert_eq!(t.matches("private key:").count(), 1, "{t}");
}

#[test]
fn a_configuration_that_logs_nothing_is_said_on_stderr() {
    let t = run_for(
        "silent-log",
        std::time::Duration::from_secs(2),
        &[("MANAGER__LOGGER__CONSOLE", "false")],
    );
    assert!(
        t.contains("manager.logger.console") && t.contains("logs nothing"),
        "{t}"
    );
}

/// `name: value` pairs of a Kubernetes env block; `valueFrom` entries get `secret`.
fn env_block(yaml: &str, secret: &str) -> Vec<(String, String)> {
    let doc: serde_json::Value = serde_norway::from_str(yaml).unwrap();
    let env = doc
        .pointer("/spec/template/spec/containers/0/env")
        .or_else(|| doc.get("env"))
        .and_then(|e| e.as_array())
        .cloned()
        .unwrap_or_else(|| panic!("no env block in\n{yaml}"));
    env.iter()
        .map(|e| {
            let value = match e.get("value") {
                Some(v) => v.as_str().map_or_else(|| v.to_string(), str::to_string),
                None => secret.to_string(),
            };
            (e["name"].as_str().unwrap().to_string(), value)
        })
        .collect()
}

/// Issue 14: the existing composer's own files, as its repository and documentation
/// publish them, load here with no configuration error (docs/migrating.md).
#[test]
fn the_existing_composers_documented_files_load_without_error() {
    use std::os::unix::fs::PermissionsExt;
    let existing = "tests/fixtures/config/existing/default.yaml";
    let swap = std::path::Path::new("tests/fixtures/config/swap");
    let dir = temp_dir("swap-files");
    std::fs::copy(existing, dir.join("default.yaml")).unwrap();
    // The documented key path is a placeholder: a real file stands in for it.
    let key = dir.join("private_key_4096.pem");
    std::fs::write(&key, test_key()).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let key = key.to_str().unwrap().to_string();
    let with_key = |mut env: Vec<(String, String)>| {
        env.retain(|(k, _)| k != "MANAGER__CREDENTIALS_KEY_FILEPATH");
        env.push(("MANAGER__CREDENTIALS_KEY_FILEPATH".into(), key.clone()));
        env
    };
    let check = |label: &str, config: &PathBuf, env: &[(String, String)]| {
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let o = run(&["check", "--config", config.to_str().unwrap()], &env);
        let t = text(&o);
        assert!(t.contains("✔ configuration"), "{label}:\n{t}");
        assert!(t.contains("✔ private key"), "{label}:\n{t}");
        assert!(!t.contains("unknown key"), "{label}:\n{t}");
        t
    };

    // Quick start, option A: config/production.yaml over the shipped default.yaml.
    let with_profile = temp_dir("swap-profile");
    std::fs::copy(existing, with_profile.join("default.yaml")).unwrap();
    std::fs::copy(
        swap.join("production.yaml"),
        with_profile.join("production.yaml"),
    )
    .unwrap();
    check("production.yaml", &with_profile, &with_key(Vec::new()));

    // Quick start, option B: the exported variables.
    let exported: Vec<(String, String)> = std::fs::read_to_string(swap.join("quick-start.env"))
        .unwrap()
        .lines()
        .filter_map(|l| l.strip_prefix("export "))
        .map(|l| {
            let (k, v) = l.split_once('=').unwrap();
            (k.to_string(), v.trim_matches('"').to_string())
        })
        .collect();
    assert_eq!(exported.len(), 6);
    check("quick-start.env", &dir, &with_key(exported));

    // Its Kubernetes manifest's env block: loads, and the one-underscore names are pointed out.
    let block = env_block(
        &std::fs::read_to_string(swap.join("kubernetes-env.yaml")).unwrap(),
        "unused",
    );
    let t = check("kubernetes-env.yaml", &dir, &with_key(block));
    assert!(t.contains("MANAGER_ID") && t.contains("MANAGER__ID"), "{t}");

    // And this project's own manifest's env block, its Secret values standing in.
    let ours = env_block(
        &std::fs::read_to_string("packaging/kubernetes/deployment.yaml").unwrap(),
        "from-the-secret",
    );
    let ours: Vec<(String, String)> = ours
        .into_iter()
        .map(|(k, v)| match k.as_str() {
            "MANAGER__CREDENTIALS_KEY" => (k, test_key()),
            _ => (k, v),
        })
        .collect();
    check("packaging/kubernetes/deployment.yaml", &dir, &ours);
}
