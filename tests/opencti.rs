//! The OpenCTI client against the fake OpenCTI on a real loopback socket: the
//! seven operations, the error rules of CONTRACT §2.2, D13 listing tolerance,
//! D26 manager identity, and the agent's TLS and proxy choices (§5.5.1, D18).

mod common;

use std::net::TcpListener;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use xtm_composer::config::PlatformSettings;
use xtm_composer::http::{self, ClientOptions, ProxyChoice};
use xtm_composer::platform::opencti::{Client, DOCUMENTS};
use xtm_composer::platform::{Error, Health, Platform, Requested, Status};
use xtm_composer::secret::Secret;

use common::fake_opencti::{Failure, FakeOpenCti, connector};
use common::proxy::ConnectProxy;
use common::tls::TestCa;

const TOKEN: &str = "a3c2e1f0-token";
const MANAGER: &str = "manager-1";

/// The `public_key_pkcs1_pem` of the shared rsa2048 test vector.
const PUBLIC_KEY: &str = "-----BEGIN RSA PUBLIC KEY-----
MIIBCgKCAQEAt3RtMoSQPuwe7rwpPkCMdNE725NpEqSMLe5XbWtuSlUEcQA/1Mpv
uHC9lQS/5UDSAD1H6aJvNJYwLzXaVc5/M8QgrgeFTtHN/MB40Vx1OrR23zhCYFkM
TP/drStFZsnt+8C8/bjuUvmhQ9XmDmrdC1aRK5zV4Oe2BbFykvJr4GnhldDtIpbH
Q5j7rCYHT+O/oa8bNQX1URc0rZwGJs7qydEdUiN4rMpQiYoHZJIwBBjgKPLrHrlP
KkYGHyd7ff2kqEPxoX/aa+3VvpaWtdOBwC2+0WNKjZ1d6gxH+jVh8G8zC5SKt6+a
GL3aZjy4IdqeAnYLJYjK5qisWRU3R5uKswIDAQAB
-----END RSA PUBLIC KEY-----
";

fn settings(url: &str) -> PlatformSettings {
    PlatformSettings {
        enable: true,
        url: url.to_string(),
        token: Secret::new(TOKEN),
        request_timeout: 10,
        connect_timeout: 5,
        ..PlatformSettings::default()
    }
}

fn client_for(settings: &PlatformSettings, manager_id: &str) -> Client {
    Client::new(settings, manager_id, "Test manager", PUBLIC_KEY.to_string()).unwrap()
}

fn client(fake: &FakeOpenCti) -> Client {
    client_for(&settings(&fake.url()), MANAGER)
}

fn document(operation: &str) -> &'static str {
    DOCUMENTS.iter().find(|(n, _)| *n == operation).unwrap().1
}

fn misp(id: &str) -> Value {
    connector(
        id,
        &format!("misp-{id}"),
        "opencti/connector-misp:6.8.0",
        "hash-1",
        "starting",
        vec![
            ("MISP_URL", "http://misp", false),
            ("MISP_KEY", "AAECAw==", true),
        ],
    )
}

#[test]
fn registers_with_the_pkcs1_public_key() {
    let fake = FakeOpenCti::start(TOKEN);
    client(&fake).register().unwrap();

    let key = fake.registered_key().unwrap();
    assert!(key.starts_with("-----BEGIN RSA PUBLIC KEY-----\n"), "{key}");
    assert_eq!(key, PUBLIC_KEY);
    assert_eq!(fake.registered_manager().as_deref(), Some(MANAGER));
    let sent = &fake.requests()[0];
    assert_eq!(sent.operation, "RegisterConnectorsManager");
    assert_eq!(sent.query, document("RegisterConnectorsManager"));
    assert_eq!(
        sent.variables,
        json!({"input": {"id": MANAGER, "name": "Test manager", "public_key": PUBLIC_KEY}})
    );
}

#[test]
fn version_and_ping_return_the_platform_version() {
    let fake = FakeOpenCti::start(TOKEN);
    fake.set_version("6.9.4");
    let c = client(&fake);
    assert_eq!(c.version().unwrap(), "6.9.4");
    c.register().unwrap();
    fake.set_version("6.9.5");
    assert_eq!(c.ping().unwrap(), "6.9.5");

    let sent = fake.requests();
    // The body of the §2.1 example, byte for byte.
    assert_eq!(
        sent[0].body,
        r#"{"query":"query GetVersion {\n  about {\n    version\n  }\n}\n","variables":null,"operationName":"GetVersion"}"#
    );
    assert_eq!(sent[2].operation, "UpdateConnectorManagerStatus");
    assert_eq!(sent[2].variables, json!({"input": {"id": MANAGER}}));
}

#[test]
fn ping_of_an_unknown_manager_is_not_registered() {
    let fake = FakeOpenCti::start(TOKEN);
    let err = client(&fake).ping().unwrap_err();
    assert!(matches!(err, Error::NotRegistered { .. }), "{err:?}");
    assert!(err.to_string().contains("manager.id `manager-1`"), "{err}");
}

#[test]
fn d26_a_second_manager_id_is_refused_with_advice() {
    // D26: "a `manager.id` change (registration refused ...) is reported clearly".
    let fake = FakeOpenCti::start(TOKEN);
    client(&fake).register().unwrap();
    let other = client_for(&settings(&fake.url()), "manager-2");
    let err = other.register().unwrap_err();
    assert!(matches!(err, Error::Api { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("manager.id `manager-2` differs"), "{text}");
    assert!(
        text.contains("Only one connector manager is supported per instance"),
        "{text}"
    );
    assert_eq!(fake.registered_manager().as_deref(), Some(MANAGER));
}

#[test]
fn listing_parses_every_connector() {
    let fake = FakeOpenCti::start(TOKEN);
    let mut stopped = misp("c2");
    stopped["manager_requested_status"] = json!("stopping");
    stopped["manager_current_status"] = json!("started");
    stopped["manager_contract_configuration"][0]["encrypted"] = Value::Null;
    fake.set_connectors(vec![misp("c1"), stopped]);

    let listing = client(&fake).list().unwrap();
    assert!(listing.complete, "{:?}", listing.problems);
    assert!(listing.problems.is_empty());
    let [c1, c2] = &listing.connectors[..] else {
        panic!("{:?}", listing.connectors);
    };
    assert_eq!((c1.id.as_str(), c1.name.as_str()), ("c1", "misp-c1"));
    assert_eq!(c1.image, "opencti/connector-misp:6.8.0");
    assert_eq!(c1.contract_hash, "hash-1");
    assert_eq!(
        (c1.requested, c1.current_status),
        (Requested::Starting, None)
    );
    assert_eq!(
        (c2.requested, c2.current_status),
        (Requested::Stopping, Some(Status::Started))
    );
    assert_eq!(c1.config[1].key, "MISP_KEY");
    assert_eq!(c1.config[1].value.as_deref(), Some("AAECAw=="));
    assert!(c1.config[1].encrypted && !c1.config[0].encrypted);
    assert!(!c2.config[0].encrypted, "encrypted null reads as false");
    assert!(fake.requests()[0].body.contains(r#""variables":null"#));
    assert_eq!(fake.requests()[0].query, document("GetConnectors"));
}

#[test]
fn d13_a_malformed_connector_is_skipped_and_the_others_served() {
    let fake = FakeOpenCti::start(TOKEN);
    let mut no_image = misp("bad-image");
    no_image
        .as_object_mut()
        .unwrap()
        .remove("manager_contract_image");
    let mut null_name = misp("bad-name");
    null_name["name"] = Value::Null;
    fake.set_connectors(vec![misp("c1"), no_image, null_name, misp("c4")]);

    let listing = client(&fake).list().unwrap();
    let ids: Vec<_> = listing.connectors.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids, ["c1", "c4"]);
    assert!(!listing.complete);
    assert_eq!(listing.problems.len(), 2, "{:?}", listing.problems);
    assert!(
        listing.problems[0].contains("bad-image")
            && listing.problems[0].contains("manager_contract_image")
    );
    assert!(listing.problems[1].contains("bad-name") && listing.problems[1].contains("name"));
}

#[test]
fn d13_a_listing_that_came_with_errors_is_served_incomplete() {
    let fake = FakeOpenCti::start(TOKEN);
    fake.set_connectors(vec![misp("c1")]);
    fake.fail_next("GetConnectors", Failure::ErrorsWithData);
    let listing = client(&fake).list().unwrap();
    assert_eq!(listing.connectors.len(), 1);
    assert!(!listing.complete);
    assert_eq!(
        listing.problems,
        [
            "platform error: Injected partial failure (at connectorsForManagers) [INTERNAL_SERVER_ERROR]"
        ]
    );
}

#[test]
fn a_listing_with_a_null_list_is_an_error() {
    let fake = FakeOpenCti::start(TOKEN);
    fake.set_connectors(vec![misp("c1")]);
    fake.fail_next("GetConnectors", Failure::GraphQlError);
    let err = client(&fake).list().unwrap_err();
    assert!(
        err.to_string().contains("(at connectorsForManagers)"),
        "{err}"
    );
    assert_eq!(client(&fake).list().unwrap().connectors.len(), 1);
}

#[test]
fn each_failure_fails_only_its_own_call() {
    let fake = FakeOpenCti::start(TOKEN);
    let c = client(&fake);
    fake.fail_next("GetVersion", Failure::GraphQlError);
    fake.fail_next("GetVersion", Failure::Garbled);
    fake.fail_next("GetVersion", Failure::Http500);

    let err = c.version().unwrap_err();
    assert!(matches!(err, Error::Api { .. }), "{err:?}");
    assert!(err.to_string().contains("Injected failure"), "{err}");
    let err = c.version().unwrap_err();
    assert!(matches!(err, Error::Decode { .. }), "{err:?}");
    let err = c.version().unwrap_err();
    assert_eq!(
        err.to_string(),
        "GetVersion: server returned 500: Internal Server Error"
    );
    assert_eq!(c.version().unwrap(), "6.8.0");
}

#[test]
fn errors_fail_a_mutation_even_with_data() {
    let fake = FakeOpenCti::start(TOKEN);
    fake.set_connectors(vec![misp("c1")]);
    fake.fail_next("UpdateConnectorCurrentStatus", Failure::ErrorsWithData);
    let c = client(&fake);
    assert!(c.report_status("c1", Status::Started).is_err());
    c.report_status("c1", Status::Stopped).unwrap();
    assert_eq!(fake.current_status("c1").as_deref(), Some("stopped"));
}

#[test]
fn the_bearer_token_is_sent_and_a_trailing_slash_is_not_doubled() {
    let fake = FakeOpenCti::start(TOKEN);
    let c = client_for(&settings(&format!("{}/", fake.url())), MANAGER);
    c.version().unwrap();
    let sent = &fake.requests()[0];
    assert_eq!(sent.path, "/graphql");
    assert_eq!(sent.authorization.as_deref(), Some("Bearer a3c2e1f0-token"));
}

#[test]
fn status_logs_and_health_send_exactly_the_contract_variables() {
    let fake = FakeOpenCti::start(TOKEN);
    fake.set_connectors(vec![misp("c1")]);
    let c = client(&fake);
    c.report_status("c1", Status::Started).unwrap();
    let lines = vec![
        "first line".to_string(),
        "second \"quoted\" line".to_string(),
    ];
    c.report_logs("c1", &lines).unwrap();
    c.report_logs("c1", &lines[1..]).unwrap();
    let health = Health {
        restart_count: 3,
        started_at: "2026-11-28T10:00:00Z".into(),
        is_in_reboot_loop: true,
    };
    c.report_health("c1", &health).unwrap();

    let sent = fake.requests();
    let ops: Vec<_> = sent.iter().map(|r| r.operation.as_str()).collect();
    assert_eq!(
        ops,
        [
            "UpdateConnectorCurrentStatus",
            "ReportConnectorLogs",
            "ReportConnectorLogs",
            "UpdateConnectorHealth"
        ]
    );
    for r in &sent {
        assert_eq!(r.query, document(&r.operation));
    }
    assert_eq!(
        sent[0].variables,
        json!({"input": {"id": "c1", "status": "started"}})
    );
    assert_eq!(
        sent[1].variables,
        json!({"input": {"id": "c1", "logs": ["first line", "second \"quoted\" line"]}})
    );
    assert_eq!(
        sent[3].variables,
        json!({"input": {"id": "c1", "restart_count": 3,
            "started_at": "2026-11-28T10:00:00Z", "is_in_reboot_loop": true}})
    );
    assert_eq!(fake.current_status("c1").as_deref(), Some("started"));
    assert_eq!(
        fake.logs("c1"),
        Some(vec!["second \"quoted\" line".to_string()])
    );
    assert_eq!(
        fake.health("c1").unwrap()["started_at"],
        "2026-11-28T10:00:00Z"
    );
    assert_eq!(fake.health_reports("c1"), 1);
}

#[test]
fn a_wrong_token_is_a_clear_error() {
    let fake = FakeOpenCti::start(TOKEN);
    let mut s = settings(&fake.url());
    s.token = Secret::new("wrong-token");
    let err = client_for(&s, MANAGER).version().unwrap_err();
    let text = err.to_string();
    assert_eq!(
        text,
        "GetVersion: You must be logged in to do this. [AUTH_REQUIRED]"
    );
    assert!(!text.contains("wrong-token"));
}

#[test]
fn a_server_that_never_answers_times_out() {
    // The kernel completes the handshake from the backlog; nobody ever reads or answers.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut s = settings(&format!("http://{}", silent.local_addr().unwrap()));
    s.request_timeout = 1;
    let started = Instant::now();
    let err = client_for(&s, MANAGER).version().unwrap_err();
    assert!(matches!(err, Error::Transport { .. }), "{err:?}");
    // Names the URL, the time waited and the setting to change (issue 14).
    let want = format!(
        "no answer from http://{} within 1 s (opencti.request_timeout)",
        silent.local_addr().unwrap()
    );
    assert!(err.to_string().ends_with(&want), "{err}");
    // Far above the 1 s timeout: only shows the 30 s default did not apply.
    assert!(started.elapsed() < Duration::from_secs(20));
}

// --- TLS (D18) ---

#[test]
fn ca_file_trusts_a_private_ca_as_a_path_or_inline() {
    let ca = TestCa::new();
    let fake = FakeOpenCti::start_tls(TOKEN, &ca);
    let path = std::env::temp_dir().join(format!("xtm-test-ca-{}.pem", std::process::id()));
    std::fs::write(&path, &ca.ca_pem).unwrap();

    let mut s = settings(&fake.url());
    s.ca_file = Some(path.display().to_string());
    let by_path = client_for(&s, MANAGER).version();
    s.ca_file = Some(ca.ca_pem.clone());
    let inline = client_for(&s, MANAGER).version();
    let _ = std::fs::remove_file(&path);
    assert_eq!(by_path.unwrap(), "6.8.0");
    assert_eq!(inline.unwrap(), "6.8.0");
}

#[test]
fn without_the_ca_the_certificate_is_rejected() {
    let ca = TestCa::new();
    let fake = FakeOpenCti::start_tls(TOKEN, &ca);
    let err = client(&fake).version().unwrap_err();
    assert!(matches!(err, Error::Transport { .. }), "{err:?}");
    assert!(err.to_string().contains("certificate"), "{err}");
    assert!(fake.requests().is_empty());
}

#[test]
fn unsecured_certificate_accepts_an_unknown_ca() {
    let ca = TestCa::new();
    let fake = FakeOpenCti::start_tls(TOKEN, &ca);
    let mut s = settings(&fake.url());
    s.unsecured_certificate = true;
    assert_eq!(client_for(&s, MANAGER).version().unwrap(), "6.8.0");
}

#[test]
fn a_ca_file_without_a_certificate_is_refused_at_construction() {
    let mut s = settings("https://127.0.0.1:1");
    s.ca_file = Some("-----BEGIN GARBAGE-----\nAAAA\n-----END GARBAGE-----\n".into());
    let err = Client::new(&s, MANAGER, "m", PUBLIC_KEY.into())
        .err()
        .unwrap();
    assert!(
        err.to_string().starts_with("load CA opencti.ca_file"),
        "{err}"
    );
}

// --- Proxy (§5.5.1, D18) ---

/// A loopback port with nothing listening on it.
fn closed_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn options(proxy: ProxyChoice) -> ClientOptions {
    ClientOptions {
        request_timeout: Duration::from_secs(10),
        connect_timeout: Duration::from_secs(5),
        insecure: false,
        ca_pem: Vec::new(),
        proxy,
    }
}

/// One GetVersion through a bare agent; the status code or the error text.
fn post_through(opts: &ClientOptions, url: &str) -> Result<u16, String> {
    let agent = http::agent(opts, url).map_err(|e| e.to_string())?;
    let body =
        json!({"query": document("GetVersion"), "variables": null, "operationName": "GetVersion"});
    agent
        .post(format!("{url}/graphql"))
        .header("Authorization", format!("Bearer {TOKEN}"))
        .send_json(&body)
        .map(|r| r.status().as_u16())
        .map_err(|e| e.to_string())
}

#[test]
fn proxy_choice_none_and_no_proxy_bypass_a_dead_proxy() {
    let fake = FakeOpenCti::start(TOKEN);
    let dead = Secret::new(format!("http://127.0.0.1:{}", closed_port()));
    let explicit = |no_proxy: Option<&str>| ProxyChoice::Explicit {
        http: Some(dead.clone()),
        https: None,
        no_proxy: no_proxy.map(String::from),
    };
    assert!(post_through(&options(explicit(None)), &fake.url()).is_err());
    assert_eq!(
        post_through(&options(ProxyChoice::None), &fake.url()),
        Ok(200)
    );
    let bypass = explicit(Some("localhost, 127.0.0.1"));
    assert_eq!(post_through(&options(bypass), &fake.url()), Ok(200));
    assert_eq!(fake.requests().len(), 2);
}

#[test]
fn with_proxy_false_ignores_the_configured_proxy() {
    let fake = FakeOpenCti::start(TOKEN);
    let mut s = settings(&fake.url());
    s.http_proxy = Some(Secret::new(format!("http://127.0.0.1:{}", closed_port())));
    s.with_proxy = false;
    assert_eq!(client_for(&s, MANAGER).version().unwrap(), "6.8.0");
    s.with_proxy = true;
    let err = client_for(&s, MANAGER).version().unwrap_err();
    assert!(matches!(err, Error::Transport { .. }), "{err:?}");
}

#[test]
fn an_explicit_proxy_carries_the_traffic_and_its_credentials_stay_out_of_errors() {
    let fake = FakeOpenCti::start(TOKEN);
    let proxy = ConnectProxy::start();
    let mut s = settings(&fake.url());
    s.with_proxy = true;
    s.http_proxy = Some(Secret::new(proxy.url(Some("user:s3cret"))));
    assert_eq!(client_for(&s, MANAGER).version().unwrap(), "6.8.0");
    let tunnels = proxy.tunnels();
    assert_eq!(tunnels.len(), 1);
    assert_eq!(tunnels[0].target, fake.url().trim_start_matches("http://"));
    assert!(
        tunnels[0]
            .proxy_authorization
            .as_deref()
            .unwrap_or("")
            .starts_with("Basic ")
    );

    s.http_proxy = Some(Secret::new("ftp://user:s3cret@127.0.0.1:1"));
    let err = Client::new(&s, MANAGER, "m", PUBLIC_KEY.into())
        .err()
        .unwrap();
    assert_eq!(
        err.to_string(),
        "configure proxy: http_proxy is not a valid proxy URL"
    );
}

#[test]
fn https_proxy_ca_is_trusted_through_the_proxy() {
    let ca = TestCa::new();
    let fake = FakeOpenCti::start_tls(TOKEN, &ca);
    let proxy = ConnectProxy::start();
    let mut s = settings(&fake.url());
    s.with_proxy = true;
    s.https_proxy = Some(Secret::new(proxy.url(None)));
    s.https_proxy_ca = vec![ca.ca_pem.clone()];
    assert_eq!(client_for(&s, MANAGER).version().unwrap(), "6.8.0");
    assert_eq!(proxy.tunnels().len(), 1);

    s.with_proxy = false;
    let err = client_for(&s, MANAGER).version().unwrap_err();
    assert!(err.to_string().contains("certificate"), "{err}");
    assert_eq!(proxy.tunnels().len(), 1);
}
