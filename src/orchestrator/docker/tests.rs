//! Unit tests of the orchestrator's pure parts: env and inspect reading, state
//! mapping, restart policy, CA bundle, redaction, construction from settings.

use super::*;
use crate::orchestrator::{EnvValue, EnvVar};
use crate::secret::Secret;

const INSPECT: &str = include_str!("../../../tests/fixtures/docker/container-inspect.json");

#[test]
fn env_entries_split_at_the_first_equals_sign() {
    let env: Vec<String> = ["A=1", "HASH=h1=2", "EMPTY=", "NOEQ", "URL=http://x/?a=b"]
        .map(String::from)
        .into();
    assert_eq!(env_value(&env, "HASH"), Some("h1=2"));
    assert_eq!(env_value(&env, "EMPTY"), Some(""));
    assert_eq!(env_value(&env, "NOEQ"), None);
    assert_eq!(env_value(&env, "URL"), Some("http://x/?a=b"));
    assert_eq!(env_value(&env, "MISSING"), None);
}

#[test]
fn inspect_details_come_from_a_real_answer() {
    let d = details_of(serde_json::from_str(INSPECT).unwrap());
    assert_eq!(d.name, "fixture-ticker");
    assert_eq!(d.hash.as_deref(), Some("h1=2"));
    assert_eq!(d.restart_count, 0);
    assert!(d.started_at.as_deref().unwrap().ends_with('Z'));
    assert!(!d.tty);
}

#[test]
fn the_zero_start_time_and_odd_counts_are_read_safely() {
    let json = r#"{"Name":"/x","RestartCount":-1,"State":{"StartedAt":"0001-01-01T00:00:00Z"},"Config":{}}"#;
    let d = details_of(serde_json::from_str(json).unwrap());
    assert_eq!(d.started_at, None);
    assert_eq!(d.restart_count, 0);
    assert_eq!(d.hash, None);
    let big = r#"{"RestartCount":99999999999}"#;
    assert_eq!(
        details_of(serde_json::from_str(big).unwrap()).restart_count,
        u32::MAX
    );
}

#[test]
fn engine_states_map_to_workload_states() {
    assert_eq!(state_of("running"), WorkloadState::Running);
    assert_eq!(state_of("restarting"), WorkloadState::Restarting);
    for s in ["created", "exited", "paused", "dead", "removing", ""] {
        assert_eq!(state_of(s), WorkloadState::Stopped, "{s}");
    }
}

#[test]
fn restart_policies_become_the_engine_names() {
    use crate::config::RestartPolicy as Configured;
    let p = |name, maximum_retry_count| RestartPolicy {
        name,
        maximum_retry_count,
    };
    let wire = |c: Configured| RestartPolicy::from(c);
    assert_eq!(wire(Configured::default()), p("unless-stopped", 0));
    assert_eq!(wire(Configured::No), p("no", 0));
    assert_eq!(wire(Configured::Always), p("always", 0));
    assert_eq!(wire(Configured::OnFailure(5)), p("on-failure", 5));
}

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("xtm-docker-unit-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn the_ca_bundle_joins_inline_and_file_entries_then_system_roots() {
    let dir = temp_dir("bundle");
    let file = dir.join("proxy.pem");
    std::fs::write(
        &file,
        "-----BEGIN CERTIFICATE-----\nFILE\n-----END CERTIFICATE-----",
    )
    .unwrap();
    let roots = dir.join("roots.crt");
    std::fs::write(&roots, "ROOTS\n").unwrap();
    let entries = vec![
        "-----BEGIN CERTIFICATE-----\nINLINE\n-----END CERTIFICATE-----\n".to_string(),
        file.display().to_string(),
    ];
    let bundle = proxy_ca_bundle(&entries, &roots).unwrap().unwrap();
    assert_eq!(
        String::from_utf8(bundle).unwrap(),
        "-----BEGIN CERTIFICATE-----\nINLINE\n-----END CERTIFICATE-----\n\
         -----BEGIN CERTIFICATE-----\nFILE\n-----END CERTIFICATE-----\nROOTS\n"
    );
    // Missing system roots leave the proxy CA alone.
    let only = proxy_ca_bundle(&entries[..1], &dir.join("none"))
        .unwrap()
        .unwrap();
    assert!(only.ends_with(b"-----END CERTIFICATE-----\n"));
    assert_eq!(proxy_ca_bundle(&[], &roots).unwrap(), None);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn an_unreadable_ca_file_is_a_config_error_naming_it() {
    let err = proxy_ca_bundle(&["/nonexistent/ca.pem".into()], Path::new("/x")).unwrap_err();
    assert!(matches!(err, Error::Config { .. }));
    assert!(err.to_string().contains("/nonexistent/ca.pem"), "{err}");
}

fn spec(env: Vec<EnvVar>) -> Spec {
    Spec {
        name: "c".into(),
        connector_id: "id".into(),
        platform: PlatformKind::OpenCti,
        image: "i".into(),
        hash: "h".into(),
        env,
        start: true,
    }
}

#[test]
fn engine_messages_lose_sensitive_values() {
    let s = spec(vec![
        EnvVar {
            key: "TOKEN".into(),
            value: EnvValue::Sensitive(Secret::new("hunter2")),
        },
        EnvVar {
            key: "NAME".into(),
            value: EnvValue::Plain("visible".into()),
        },
    ]);
    let err = Error::Api {
        op: "create container",
        code: 400,
        message: "bad env TOKEN=hunter2 NAME=visible".into(),
    };
    assert_eq!(
        redact(err, &s).to_string(),
        "create container: answered 400: bad env TOKEN=*** NAME=visible"
    );
}

#[test]
fn settings_choose_the_policies_and_the_ca_archive() {
    let mut settings = Settings::default();
    settings.manager.id = "m-1".into();
    settings.opencti.daemon.docker = Some(DockerOptions {
        pull_policy: PullPolicy::Always,
        restart_policy: crate::config::RestartPolicy::OnFailure(2),
        host: Some("tcp://127.0.0.1:9".parse().unwrap()),
        ..DockerOptions::default()
    });
    settings.opencti.with_proxy = true;
    settings.opencti.https_proxy_ca =
        vec!["-----BEGIN CERTIFICATE-----\nX\n-----END CERTIFICATE-----".into()];
    // OpenAEV falls back to the opencti docker section but has no proxy of its own.
    let cti = Docker::new(&settings, PlatformKind::OpenCti).unwrap();
    let aev = Docker::new(&settings, PlatformKind::OpenAev).unwrap();
    assert_eq!(cti.manager_id, "m-1");
    assert_eq!(cti.pull_policy, PullPolicy::Always);
    assert_eq!(aev.pull_policy, PullPolicy::Always);
    assert_eq!(
        cti.restart_policy,
        RestartPolicy {
            name: "on-failure",
            maximum_retry_count: 2
        }
    );
    assert!(format!("{:?}", aev.client).contains("http://127.0.0.1:9"));
    let tar = cti.ca_archive.as_deref().unwrap();
    assert!(tar.starts_with(b"etc/ssl/certs/xtm-proxy-ca.crt\0"));
    assert!(aev.ca_archive.is_none());
}

#[test]
fn an_unreadable_proxy_ca_file_is_the_one_error_left_to_the_constructor() {
    let mut settings = Settings::default();
    settings.opencti.with_proxy = true;
    settings.opencti.https_proxy_ca = vec!["/nonexistent/proxy-ca.pem".into()];
    let err = Docker::new(&settings, PlatformKind::OpenCti).unwrap_err();
    assert!(
        err.to_string().contains("/nonexistent/proxy-ca.pem"),
        "{err}"
    );
}
