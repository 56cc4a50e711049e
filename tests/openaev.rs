//! The OpenAEV client against the fake OpenAEV on a real loopback socket: the seven
//! REST calls of CONTRACT §3.2 with their exact bodies and headers, the SPKI key of
//! §4.6, tenant paths, D13 listing tolerance, and the error mapping the engine relies
//! on (`Invalid xtm-composer identifier` → `NotRegistered`).

mod common;

use std::collections::BTreeSet;

use rsa::PublicKey as RsaPublicKey;
use rsa::pkcs1::DecodeRsaPublicKey;
use rsa::pkcs8::DecodePublicKey;
use serde_json::{Value, json};
use xtm_composer::config::PlatformSettings;
use xtm_composer::crypto::Key;
use xtm_composer::platform::openaev::Client;
use xtm_composer::platform::{Error, Health, Platform, PlatformKind, Requested, Status};
use xtm_composer::secret::Secret;

use common::fake_openaev::{Failure, FakeOpenAev, instance, is_instant};
use common::tls::TestCa;

const TOKEN: &str = "f00d-openaev-token";
const MANAGER: &str = "composer-1";

fn vectors() -> Value {
    serde_json::from_str(include_str!("fixtures/crypto-vectors.json")).unwrap()
}

/// The SPKI PEM our crypto module derives from the rsa2048 test key.
fn spki() -> String {
    let v = vectors();
    let key = Key::from_pem(v["rsa2048"]["private_key_pkcs8_pem"].as_str().unwrap()).unwrap();
    key.public_spki_pem()
}

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

fn client_for(settings: &PlatformSettings, manager: &str) -> Client {
    Client::new(settings, manager, "Test composer", spki()).unwrap()
}

fn client(fake: &FakeOpenAev) -> Client {
    client_for(&settings(&fake.url()), MANAGER)
}

/// A fake with this client registered, and the client.
fn registered() -> (FakeOpenAev, Client) {
    let fake = FakeOpenAev::start(TOKEN);
    let c = client(&fake);
    c.register().unwrap();
    (fake, c)
}

fn nmap(id: &str) -> Value {
    instance(
        id,
        &format!("Nmap {id}"),
        "openaev/injector-nmap:2.4.0",
        "hash-1",
        "starting",
        vec![
            ("OPENAEV_TOKEN", "clear-token", false),
            ("INJECTOR_ID", "0b7c8d1e", false),
            ("NMAP_KEY", "AQIDBA==", true),
            ("NMAP_MODE", "fast", false),
        ],
    )
}

fn health() -> Health {
    Health {
        restart_count: 4,
        started_at: "2025-01-19T16:27:31.123456789Z".into(),
        is_in_reboot_loop: true,
    }
}

#[test]
fn registers_with_an_spki_public_key() {
    let fake = FakeOpenAev::start(TOKEN);
    client(&fake).register().unwrap();

    let r = fake.registration().unwrap();
    assert_eq!((r.id.as_str(), r.name.as_str()), (MANAGER, "Test composer"));
    assert_eq!(r.version, "2.4.0");
    // The PEM label, then the DER itself, must be SubjectPublicKeyInfo: the
    // platform would store a PKCS#1 key without complaint (§3.2).
    assert!(r.public_key.starts_with("-----BEGIN PUBLIC KEY-----\n"));
    assert!(r.public_key.ends_with("-----END PUBLIC KEY-----\n"));
    assert!(!r.public_key.contains('\r'));
    assert!(r.public_key.lines().all(|l| l.len() <= 64));
    let parsed = RsaPublicKey::from_public_key_pem(&r.public_key).unwrap();
    let v = vectors();
    let pkcs1 = v["rsa2048"]["public_key_pkcs1_pem"].as_str().unwrap();
    assert_eq!(parsed, RsaPublicKey::from_pkcs1_pem(pkcs1).unwrap());
    assert!(RsaPublicKey::from_public_key_pem(pkcs1).is_err());
    assert_eq!(
        r.public_key,
        v["rsa2048"]["public_key_spki_pem"].as_str().unwrap()
    );

    let sent = &fake.requests()[0];
    assert_eq!(
        (sent.method.as_str(), sent.path.as_str()),
        ("POST", "/api/xtm-composer/register")
    );
    assert_eq!(sent.content_type.as_deref(), Some("application/json"));
    assert_eq!(sent.authorization, Some(format!("Bearer {TOKEN}")));
    let body = json!({"id": MANAGER, "name": "Test composer", "public_key": r.public_key});
    assert_eq!(
        sent.body,
        body.to_string(),
        "compact JSON, contract keys only"
    );
}

#[test]
fn version_is_the_trimmed_text_body() {
    let fake = FakeOpenAev::start(TOKEN);
    fake.set_version("2.5.1");
    let c = client(&fake);
    assert_eq!(c.kind(), PlatformKind::OpenAev);
    assert_eq!(c.version().unwrap(), "2.5.1");
    let sent = &fake.requests()[0];
    assert_eq!(
        (sent.method.as_str(), sent.path.as_str()),
        ("GET", "/api/settings/version")
    );
    assert_eq!(sent.authorization, Some(format!("Bearer {TOKEN}")));
}

#[test]
fn ping_is_a_bodiless_json_put_answering_the_version_at_registration() {
    let (fake, c) = registered();
    fake.set_version("2.5.0");
    assert_eq!(c.ping().unwrap(), "2.4.0");
    c.register().unwrap();
    assert_eq!(c.ping().unwrap(), "2.5.0");

    let ping = &fake.requests()[1];
    assert_eq!(ping.method, "PUT");
    assert_eq!(
        ping.path,
        format!("/api/xtm-composer/{MANAGER}/refresh-connectivity")
    );
    assert_eq!(ping.content_type.as_deref(), Some("application/json"));
    assert_eq!(ping.body, "");
}

#[test]
fn listing_maps_every_field_of_an_instance() {
    let (fake, c) = registered();
    let mut old = nmap("i2");
    old.as_object_mut()
        .unwrap()
        .remove("connector_instance_current_status");
    let mut started = nmap("i1");
    started["connector_instance_current_status"] = json!("started");
    started["connector_instance_configurations"][3]
        .as_object_mut()
        .unwrap()
        .remove("configuration_value");
    fake.set_instances(vec![started, old]);

    let listing = c.list().unwrap();
    assert!(listing.complete, "{:?}", listing.problems);
    let sent = fake.requests().pop().unwrap();
    assert_eq!(
        (sent.method.as_str(), sent.authorization.is_some()),
        ("GET", true)
    );
    assert_eq!(
        sent.path,
        format!("/api/xtm-composer/{MANAGER}/connector-instances")
    );
    let [a, b] = &listing.connectors[..] else {
        panic!("two instances expected")
    };
    assert_eq!((a.id.as_str(), a.name.as_str()), ("i1", "Nmap i1"));
    assert_eq!(a.image, "openaev/injector-nmap:2.4.0");
    assert_eq!(a.contract_hash, "hash-1");
    assert_eq!(a.current_status, Some(Status::Started));
    assert_eq!(a.requested, Requested::Starting);
    assert_eq!(
        b.current_status, None,
        "an absent status was never reported"
    );
    let mode = a.config.iter().find(|e| e.key == "NMAP_MODE").unwrap();
    assert_eq!(mode.value, None, "absent configuration_value");
    let key = a.config.iter().find(|e| e.key == "NMAP_KEY").unwrap();
    assert!(key.encrypted);
    let token = a.config.iter().find(|e| e.key == "OPENAEV_TOKEN").unwrap();
    assert_eq!(
        (token.encrypted, token.value.as_deref()),
        (false, Some("clear-token"))
    );
}

#[test]
fn configuration_is_kept_in_the_order_each_listing_sent() {
    let (fake, c) = registered();
    fake.set_instances(vec![nmap("i1")]);
    let mut orders = BTreeSet::new();
    for _ in 0..4 {
        let listing = c.list().unwrap();
        let served = fake.last_listing().unwrap();
        let sent: Vec<&str> = served[0]["connector_instance_configurations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["configuration_key"].as_str().unwrap())
            .collect();
        let got: Vec<&str> = listing.connectors[0]
            .config
            .iter()
            .map(|e| e.key.as_str())
            .collect();
        assert_eq!(got, sent);
        orders.insert(sent.join(","));
    }
    assert!(orders.len() > 1, "the fake must shuffle: {orders:?}");
}

#[test]
fn d13_a_malformed_instance_is_skipped_and_the_others_served() {
    let (fake, c) = registered();
    let mut no_image = nmap("i2");
    no_image.as_object_mut().unwrap().remove("connector_image");
    let mut no_id = nmap("i3");
    no_id
        .as_object_mut()
        .unwrap()
        .remove("connector_instance_id");
    fake.set_instances(vec![nmap("i1"), no_image, no_id, nmap("i4")]);

    let listing = c.list().unwrap();
    let ids: Vec<&str> = listing.connectors.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids, ["i1", "i4"]);
    assert!(!listing.complete);
    assert_eq!(
        listing.problems,
        [
            "instance 1 (id i2) skipped: connector_image is missing or null",
            "instance 2 skipped: connector_instance_id is missing or null",
        ]
    );
}

#[test]
fn a_listing_that_is_not_an_array_or_fails_is_an_error() {
    let (fake, c) = registered();
    fake.fail_next("list", Failure::Garbled);
    let err = c.list().unwrap_err();
    assert!(matches!(err, Error::Decode { .. }), "{err:?}");
    assert!(
        err.to_string()
            .starts_with("list connector instances: unreadable answer: ")
    );
    fake.fail_next("list", Failure::Http500);
    let err = c.list().unwrap_err();
    assert_eq!(
        err.to_string(),
        "list connector instances: server returned 500: Internal Server Error"
    );
    assert!(c.list().unwrap().complete);
}

#[test]
fn status_logs_and_health_send_exactly_the_contract_bodies() {
    let (fake, c) = registered();
    fake.set_instances(vec![nmap("i1")]);
    c.report_status("i1", Status::Started).unwrap();
    let lines: Vec<String> = ["b", "a", "b"].map(String::from).to_vec();
    c.report_logs("i1", &lines).unwrap();
    c.report_health("i1", &health()).unwrap();

    let sent = fake.requests();
    let base = format!("/api/xtm-composer/{MANAGER}/connector-instances/i1");
    let rows = [
        (
            "PUT",
            "status",
            r#"{"connector_instance_current_status":"started"}"#,
        ),
        (
            "POST",
            "logs",
            r#"{"connector_instance_logs":["b","a","b"]}"#,
        ),
        (
            "PUT",
            "health-check",
            r#"{"connector_instance_restart_count":4,"connector_instance_started_at":"2025-01-19T16:27:31.123456789Z","connector_instance_is_in_reboot_loop":true}"#,
        ),
    ];
    for (r, (method, leaf, body)) in sent[1..].iter().zip(rows) {
        assert_eq!(r.method, method);
        assert_eq!(r.path, format!("{base}/{leaf}"));
        assert_eq!(r.body, body);
        assert_eq!(r.content_type.as_deref(), Some("application/json"));
        assert_eq!(r.authorization, Some(format!("Bearer {TOKEN}")));
    }
    assert_eq!(fake.current_status("i1").as_deref(), Some("started"));
    let set: BTreeSet<String> = ["a", "b"].map(String::from).into();
    assert_eq!(fake.logs("i1"), Some(set), "the platform keeps a set");
    let h = fake.health("i1").unwrap();
    assert_eq!(h["restart_count"], 4);
    assert_eq!(h["is_in_reboot_loop"], true);
    assert_eq!(fake.health_reports("i1"), 1);

    c.report_status("i1", Status::Stopped).unwrap();
    assert_eq!(fake.current_status("i1").as_deref(), Some("stopped"));
}

#[test]
fn an_empty_or_non_json_logs_answer_is_success() {
    let (fake, c) = registered();
    fake.set_instances(vec![nmap("i1")]);
    // The fake answers `void`: 200, `application/json`, no body at all.
    c.report_logs("i1", &["x".to_string()]).unwrap();
    fake.fail_next("logs", Failure::PlainOk);
    c.report_logs("i1", &["y".to_string()]).unwrap();
    // An empty list is accepted even for an instance the platform does not know.
    c.report_logs("gone", &[]).unwrap();
    assert_eq!(
        fake.requests().last().unwrap().body,
        r#"{"connector_instance_logs":[]}"#
    );
    fake.fail_next("logs", Failure::Http500);
    assert!(matches!(
        c.report_logs("i1", &["z".to_string()]),
        Err(Error::Status { code: 500, .. })
    ));
}

#[test]
fn health_in_an_offset_form_is_sent_in_utc_and_garbage_is_not_sent() {
    let (fake, c) = registered();
    fake.set_instances(vec![nmap("i1")]);
    let mut h = health();
    h.started_at = "2025-01-19T18:27:31.5+02:00".into();
    c.report_health("i1", &h).unwrap();
    let sent = fake.health("i1").unwrap();
    assert_eq!(sent["started_at"], "2025-01-19T16:27:31.500Z");

    let before = fake.requests().len();
    h.started_at = "0001-01-01T00:00:00Z".into();
    let err = c.report_health("i1", &h).unwrap_err();
    assert!(err.to_string().contains("not an RFC 3339 instant"), "{err}");
    assert_eq!(fake.requests().len(), before, "nothing sent");
}

#[test]
fn reports_for_an_unknown_instance_fail() {
    let (fake, c) = registered();
    fake.set_instances(vec![nmap("i1")]);
    let err = c.report_status("nope", Status::Started).unwrap_err();
    assert!(matches!(err, Error::Status { code: 404, .. }), "{err:?}");
    let err = c.report_health("nope", &health()).unwrap_err();
    assert!(matches!(err, Error::Status { code: 404, .. }), "{err:?}");
}

#[test]
fn tenant_id_selects_the_tenant_paths_for_every_composer_call() {
    let fake = FakeOpenAev::start(TOKEN);
    fake.set_tenant(Some("tenant 7"));
    fake.set_instances(vec![nmap("i1")]);
    let mut s = settings(&fake.url());
    s.tenant_id = Some("tenant 7".into());
    let c = client_for(&s, MANAGER);
    c.version().unwrap();
    c.register().unwrap();
    c.ping().unwrap();
    assert_eq!(c.list().unwrap().connectors.len(), 1);
    c.report_status("i1", Status::Started).unwrap();
    c.report_logs("i1", &["l".to_string()]).unwrap();
    c.report_health("i1", &health()).unwrap();

    let paths: Vec<String> = fake.requests().into_iter().map(|r| r.path).collect();
    let prefix = "/api/tenants/tenant%207/xtm-composer";
    assert_eq!(paths[0], "/api/settings/version");
    assert_eq!(paths[1], format!("{prefix}/register"));
    assert_eq!(paths[2], format!("{prefix}/{MANAGER}/refresh-connectivity"));
    assert_eq!(paths[3], format!("{prefix}/{MANAGER}/connector-instances"));
    assert_eq!(
        paths[6],
        format!("{prefix}/{MANAGER}/connector-instances/i1/health-check")
    );

    // And a client without the setting finds nothing there.
    let plain = client(&fake);
    assert!(matches!(
        plain.register(),
        Err(Error::Status { code: 404, .. })
    ));
}

#[test]
fn an_unknown_manager_is_not_registered_on_every_manager_call() {
    let fake = FakeOpenAev::start(TOKEN);
    fake.set_instances(vec![nmap("i1")]);
    client_for(&settings(&fake.url()), "another-composer")
        .register()
        .unwrap();
    let c = client(&fake);
    let results = [
        c.ping().map(drop),
        c.list().map(drop),
        c.report_status("i1", Status::Started),
        c.report_logs("i1", &["l".to_string()]),
        c.report_health("i1", &health()),
    ];
    for r in results {
        let err = r.unwrap_err();
        assert!(matches!(err, Error::NotRegistered { .. }), "{err:?}");
        assert!(err.to_string().contains("manager.id `composer-1`"), "{err}");
    }
    c.register().unwrap();
    assert!(c.list().is_ok(), "registering replaces the other composer");
}

#[test]
fn a_fresh_platform_refuses_the_listing_as_not_registered() {
    let fake = FakeOpenAev::start(TOKEN);
    let err = client(&fake).list().unwrap_err();
    assert!(matches!(
        err,
        Error::NotRegistered {
            op: "list connector instances",
            ..
        }
    ));
}

/// Decision: a 500 on ping is not read as "not registered". The engine goes back
/// to version + register on any ping failure anyway, while a transient 500 read
/// as NotRegistered would suspend reconciliation until a registration succeeds.
#[test]
fn ping_before_any_registration_is_a_server_error() {
    let fake = FakeOpenAev::start(TOKEN);
    let err = client(&fake).ping().unwrap_err();
    assert!(matches!(err, Error::Status { code: 500, .. }), "{err:?}");
}

#[test]
fn a_wrong_token_is_a_clear_error_that_does_not_show_it() {
    let fake = FakeOpenAev::start("the-right-token");
    let c = client(&fake);
    for err in [
        c.version().unwrap_err(),
        c.register().unwrap_err(),
        c.list().unwrap_err(),
    ] {
        assert!(matches!(err, Error::Status { code: 401, .. }), "{err:?}");
        let text = err.to_string();
        assert!(
            text.contains("server returned 401: the platform refused openaev.token"),
            "{text}"
        );
        assert!(
            !text.contains(TOKEN) && !text.contains("the-right-token"),
            "{text}"
        );
    }
}

#[test]
fn a_stopped_platform_is_a_transport_error_until_it_restarts() {
    let (fake, c) = registered();
    fake.stop();
    let err = c.ping().unwrap_err();
    assert!(
        matches!(err, Error::Transport { op: "ping", .. }),
        "{err:?}"
    );
    fake.restart();
    assert_eq!(c.ping().unwrap(), "2.4.0", "the store survives a restart");
}

#[test]
fn a_trailing_slash_in_the_url_is_not_doubled() {
    let fake = FakeOpenAev::start(TOKEN);
    let c = client_for(&settings(&format!("{}//", fake.url())), MANAGER);
    c.version().unwrap();
    c.register().unwrap();
    let paths: Vec<String> = fake.requests().into_iter().map(|r| r.path).collect();
    assert_eq!(
        paths,
        ["/api/settings/version", "/api/xtm-composer/register"]
    );
}

#[test]
fn an_https_platform_is_reached_with_its_ca_file() {
    let ca = TestCa::new();
    let fake = FakeOpenAev::start_tls(TOKEN, &ca);
    let mut s = settings(&fake.url());
    assert!(
        client_for(&s, MANAGER).version().is_err(),
        "unknown CA refused"
    );
    s.ca_file = Some(ca.ca_pem.clone());
    assert_eq!(client_for(&s, MANAGER).version().unwrap(), "2.4.0");
}

/// The fake is what catches a misspelt key: check that it does.
#[test]
fn the_fake_refuses_unknown_missing_and_mistyped_fields() {
    let fake = FakeOpenAev::start(TOKEN);
    fake.set_instances(vec![nmap("i1")]);
    client(&fake).register().unwrap();
    let agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .new_agent();
    let base = format!(
        "{}/api/xtm-composer/{MANAGER}/connector-instances/i1",
        fake.url()
    );
    let send = |method: &str, leaf: &str, body: &str, content_type: &str| {
        let url = format!("{base}/{leaf}");
        let req = match method {
            "PUT" => agent.put(&url),
            _ => agent.post(&url),
        };
        req.header("Authorization", format!("Bearer {TOKEN}"))
            .content_type(content_type)
            .send(body)
            .unwrap()
            .status()
            .as_u16()
    };
    let json = "application/json";
    let rows = [
        ("POST", "logs", r#"{}"#, json, 500),
        ("POST", "logs", r#"{"logs":["a"]}"#, json, 400),
        (
            "POST",
            "logs",
            r#"{"connector_instance_logs":"a"}"#,
            json,
            400,
        ),
        (
            "POST",
            "logs",
            r#"{"connector_instance_logs":["a"]}"#,
            "text/plain",
            415,
        ),
        ("PUT", "status", r#"{"status":"started"}"#, json, 400),
        (
            "PUT",
            "status",
            r#"{"connector_instance_current_status":"running"}"#,
            json,
            400,
        ),
        (
            "PUT",
            "health-check",
            r#"{"connector_instance_restart_count":1}"#,
            json,
            400,
        ),
        (
            "PUT",
            "health-check",
            r#"{"connector_instance_restart_count":1,"connector_instance_started_at":"2025-01-19T16:27:31+00:00","connector_instance_is_in_reboot_loop":false}"#,
            json,
            400,
        ),
        (
            "POST",
            "status",
            r#"{"connector_instance_current_status":"started"}"#,
            json,
            405,
        ),
        (
            "PUT",
            "status",
            r#"{"connector_instance_current_status":"started"}"#,
            json,
            200,
        ),
    ];
    for (method, leaf, body, content_type, want) in rows {
        assert_eq!(
            send(method, leaf, body, content_type),
            want,
            "{method} {leaf} {body}"
        );
    }
    assert!(is_instant("2025-01-19T16:27:31.123456789Z"));
    assert!(!is_instant("2025-01-19T16:27:31.Z") && !is_instant("2025-01-19 16:27:31Z"));
}
