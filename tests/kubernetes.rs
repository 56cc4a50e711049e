//! The Kubernetes orchestrator driven through the `Orchestrator` trait against
//! the test API server (tests/common/k8s_api.rs), which enforces the shipped Role
//! and validates every write against the official v1.32 schemas; the real
//! `kubectl` reads what the composer made (CONTRACT §6.3, D4, D6, D7, D16, D23).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::k8s_api::{COMPOSER_USER, Fault, K8sApi, PodMode};
use serde_json::{Value, json};
use xtm_composer::config::{KubernetesSettings, Registry, Settings};
use xtm_composer::orchestrator::docker::PullPolicy;
use xtm_composer::orchestrator::kubernetes::{Kubernetes, Source};
use xtm_composer::orchestrator::{EnvValue, EnvVar, Orchestrator, Spec, Workload, WorkloadState};
use xtm_composer::platform::PlatformKind;
use xtm_composer::secret::Secret;

const MANAGER: &str = "test-manager";
const SECRET_VALUE: &str = "decrypted-otx-api-key-7f3a";

fn tempdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("xtm-k8s-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn settings_with(ks: KubernetesSettings) -> Settings {
    let mut s = Settings::default();
    s.manager.id = MANAGER.into();
    s.opencti.daemon.kubernetes = Some(KubernetesSettings {
        request_timeout: Some(2),
        connect_timeout: Some(2),
        ..ks
    });
    s
}

fn settings() -> Settings {
    settings_with(KubernetesSettings::default())
}

fn orchestrator(server: &K8sApi, tag: &str, s: &Settings) -> Kubernetes {
    let dir = tempdir(tag);
    let kc = server.kubeconfig_token(&dir);
    Kubernetes::with_source(s, PlatformKind::OpenCti, &Source::Kubeconfig(vec![kc])).unwrap()
}

fn spec(name: &str, hash: &str, start: bool) -> Spec {
    Spec {
        name: name.into(),
        connector_id: format!("id-{name}"),
        platform: PlatformKind::OpenCti,
        image: format!("opencti/connector-{name}:6.4.0"),
        hash: hash.into(),
        env: vec![
            EnvVar {
                key: "OPENCTI_URL".into(),
                value: EnvValue::Plain("http://opencti:8080".into()),
            },
            EnvVar {
                key: "CONNECTOR_API_KEY".into(),
                value: EnvValue::Sensitive(Secret::new(SECRET_VALUE)),
            },
            EnvVar {
                key: "OPENCTI_CONFIG_HASH".into(),
                value: EnvValue::Plain(hash.into()),
            },
        ],
        start,
    }
}

fn find<'a>(ws: &'a [Workload], name: &str) -> &'a Workload {
    ws.iter()
        .find(|w| w.name == name)
        .unwrap_or_else(|| panic!("no workload {name} in {ws:?}"))
}

fn kubectl(kubeconfig: &Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .env_remove("KUBECONFIG")
        .output()
        .expect("kubectl is installed (v1.32)");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn deploy_creates_a_valid_deployment_that_kubectl_reads() {
    let server = K8sApi::start();
    let k = orchestrator(&server, "deploy", &settings());
    k.deploy(&spec("otx", "h1", true)).unwrap();
    k.deploy(&spec("cve", "h1", false)).unwrap();
    let ws = k.list().unwrap();
    assert_eq!(ws.len(), 2);
    let otx = find(&ws, "otx");
    assert_eq!(otx.state, WorkloadState::Running);
    assert_eq!(otx.connector_id.as_deref(), Some("id-otx"));
    assert_eq!(otx.platform.as_deref(), Some("opencti"));
    assert_eq!(otx.hash.as_deref(), Some("h1"));
    assert!(otx.started_at.is_some());
    assert_eq!(find(&ws, "cve").state, WorkloadState::Stopped);

    let dir = tempdir("deploy-kubectl");
    let admin = server.kubeconfig_admin(&dir);
    let selector = format!("opencti-manager={MANAGER}");
    let (ok, out, err) = kubectl(
        &admin,
        &["get", "deploy,pods", "-l", &selector, "-o", "json"],
    );
    assert!(ok, "kubectl get failed: {err}");
    let list: Value = serde_json::from_str(&out).unwrap();
    let kinds: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["kind"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        kinds.iter().filter(|k| **k == "Deployment").count(),
        2,
        "{kinds:?}"
    );
    assert_eq!(
        kinds.iter().filter(|k| **k == "Pod").count(),
        1,
        "{kinds:?}"
    );
    assert!(
        !out.contains(SECRET_VALUE),
        "kubectl shows a decrypted secret"
    );
    server.assert_clean();
}

fn deployment_bodies(server: &K8sApi) -> Vec<String> {
    server
        .seen()
        .into_iter()
        .filter(|r| r.path.contains("/deployments") && !r.body.is_empty())
        .map(|r| r.body)
        .collect()
}

#[test]
fn d23_decrypted_values_live_in_the_env_secret_never_in_a_deployment_body() {
    let server = K8sApi::start();
    let k = orchestrator(&server, "d23", &settings());
    k.deploy(&spec("otx", "h1", true)).unwrap();
    k.refresh(&spec("otx", "h2", true)).unwrap();
    k.stop("otx").unwrap();
    k.start("otx").unwrap();
    let bodies = deployment_bodies(&server);
    // create (stopped, no hash), finish, refresh, stop, start
    assert_eq!(bodies.len(), 5);
    assert!(
        bodies.iter().all(|b| !b.contains(SECRET_VALUE)),
        "a Deployment body carries the secret"
    );
    assert_eq!(
        server
            .secret_value("otx-env", "CONNECTOR_API_KEY")
            .as_deref(),
        Some(SECRET_VALUE)
    );
    let d = server.deployment("otx").unwrap();
    let env = &d["spec"]["template"]["spec"]["containers"][0]["env"];
    assert_eq!(
        env[1],
        json!({"name": "CONNECTOR_API_KEY", "valueFrom": {"secretKeyRef": {"name": "otx-env", "key": "CONNECTOR_API_KEY"}}})
    );
    // The pod starts: the Secret was written before the Deployment (else CreateContainerConfigError).
    let w = k.list().unwrap();
    assert_eq!(find(&w, "otx").state, WorkloadState::Running);
    assert_eq!(find(&w, "otx").waiting_reason, None);
    server.assert_clean();
}

#[test]
fn plain_env_puts_values_in_the_deployment_as_the_existing_composer_does() {
    let server = K8sApi::start();
    let s = settings_with(KubernetesSettings {
        plain_env: true,
        ..Default::default()
    });
    let k = orchestrator(&server, "plain", &s);
    k.deploy(&spec("otx", "h1", true)).unwrap();
    assert!(server.secret("otx-env").is_none());
    let d = server.deployment("otx").unwrap();
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"][0]["env"][1],
        json!({"name": "CONNECTOR_API_KEY", "value": SECRET_VALUE})
    );
    server.assert_clean();
}

#[test]
fn the_deployment_follows_the_contract_body() {
    let server = K8sApi::start();
    let s = settings_with(KubernetesSettings {
        image_pull_policy: PullPolicy::Always,
        image_resources: Some(
            json!({"limits": {"memory": "256Mi", "cpu": "500m"}, "requests": {"cpu": "50m"}}),
        ),
        ..Default::default()
    });
    let k = orchestrator(&server, "body", &s);
    // No Secret to make: the Deployment is created whole, in one call.
    let mut plain = spec("otx", "h1", true);
    plain.env.retain(|e| !e.value.is_sensitive());
    k.deploy(&plain).unwrap();
    let post = server
        .seen()
        .into_iter()
        .find(|r| r.method == "POST" && r.path.ends_with("/deployments"))
        .unwrap();
    assert_eq!(post.user, COMPOSER_USER);
    assert_eq!(
        post.path,
        format!("/apis/apps/v1/namespaces/{}/deployments", server.namespace)
    );
    let body: Value = serde_json::from_str(&post.body).unwrap();
    let labels = json!({"opencti-connector-id": "id-otx", "opencti-manager": MANAGER, "opencti-platform": "opencti"});
    assert_eq!(body["metadata"]["labels"], labels);
    assert_eq!(
        body["metadata"]["annotations"],
        json!({"OPENCTI_CONFIG_HASH": "h1"})
    );
    assert_eq!(body["spec"]["selector"], json!({"matchLabels": labels}));
    assert_eq!(body["spec"]["template"]["metadata"]["labels"], labels);
    assert_eq!(body["spec"]["replicas"], 1);
    let c = &body["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(c["name"], "otx");
    assert_eq!(c["image"], "opencti/connector-otx:6.4.0");
    assert_eq!(c["imagePullPolicy"], "Always");
    assert_eq!(c["resources"]["limits"]["memory"], "256Mi");
    assert!(body["spec"]["template"]["spec"].get("volumes").is_none());
    assert!(
        body["spec"]["template"]["spec"]
            .get("imagePullSecrets")
            .is_none()
    );
    server.assert_clean();
}

#[test]
fn start_and_stop_are_merge_patches_of_replicas() {
    let server = K8sApi::start();
    let k = orchestrator(&server, "startstop", &settings());
    k.deploy(&spec("otx", "h1", true)).unwrap();
    server.clear_seen();
    k.stop("otx").unwrap();
    assert_eq!(
        find(&k.list().unwrap(), "otx").state,
        WorkloadState::Stopped
    );
    k.start("otx").unwrap();
    let w = k.list().unwrap();
    assert_eq!(find(&w, "otx").state, WorkloadState::Running);
    let patches: Vec<_> = server
        .seen()
        .into_iter()
        .filter(|r| r.method == "PATCH")
        .collect();
    assert_eq!(patches.len(), 2);
    assert_eq!(patches[0].content_type, "application/merge-patch+json");
    assert_eq!(patches[0].body, r#"{"spec":{"replicas":0}}"#);
    assert_eq!(patches[1].body, r#"{"spec":{"replicas":1}}"#);
    let e = k.start("nope").unwrap_err();
    assert!(e.to_string().contains("nope"), "{e}");
    server.assert_clean();
}

#[test]
fn refresh_patches_without_the_selector_and_rolls_the_pod() {
    let server = K8sApi::start();
    let k = orchestrator(&server, "refresh", &settings());
    k.deploy(&spec("otx", "h1", true)).unwrap();
    k.list().unwrap();
    let first_pod = server.pods()[0]["metadata"]["name"]
        .as_str()
        .unwrap()
        .to_string();
    let selector_before = server.deployment("otx").unwrap()["spec"]["selector"].clone();
    let mut next = spec("otx", "h2", true);
    next.image = "opencti/connector-otx:6.5.0".into();
    k.refresh(&next).unwrap();
    let patch = server
        .seen()
        .into_iter()
        .rfind(|r| r.method == "PATCH")
        .unwrap();
    let body: Value = serde_json::from_str(&patch.body).unwrap();
    assert!(
        body["spec"].get("selector").is_none(),
        "refresh patched the selector"
    );
    assert_eq!(
        server.deployment("otx").unwrap()["spec"]["selector"],
        selector_before
    );
    let ws = k.list().unwrap();
    let w = find(&ws, "otx");
    assert_eq!(w.hash.as_deref(), Some("h2"));
    assert_eq!(w.state, WorkloadState::Running);
    // The old pod was still listed, terminating; the workload follows the new one.
    let pods = server.pods();
    let old = pods
        .iter()
        .find(|p| p["metadata"]["name"] == first_pod.as_str())
        .unwrap();
    assert!(old["metadata"]["deletionTimestamp"].is_string());
    assert_eq!(pods.len(), 2);
    let lines = k.logs("otx", 3).unwrap();
    assert!(!lines[0].contains(&first_pod), "{lines:?}");
    server.assert_clean();
}

#[test]
fn a_selector_that_cannot_follow_the_template_is_listed_as_a_defect_and_never_deleted_by_refresh() {
    let server = K8sApi::start();
    // An old Deployment whose selector carries a label our template no longer has
    // the same value for (a base label that changed).
    let old_labels = json!({"opencti-connector-id": "id-otx", "opencti-manager": MANAGER,
        "opencti-platform": "opencti", "team": "old"});
    server.insert_deployment(json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "otx", "labels": old_labels, "annotations": {"OPENCTI_CONFIG_HASH": "h0"}},
        "spec": {"replicas": 1, "selector": {"matchLabels": old_labels},
            "template": {"metadata": {"labels": old_labels},
                "spec": {"containers": [{"name": "otx", "image": "opencti/connector-otx:6.3.0"}]}}}}));
    let s = settings_with(KubernetesSettings {
        base_deployment: Some(
            json!({"spec": {"template": {"metadata": {"labels": {"team": "new"}}}}}),
        ),
        ..Default::default()
    });
    let k = orchestrator(&server, "selfheal", &s);
    let all = k.list().unwrap();
    let listed = find(&all, "otx");
    assert_eq!(listed.hash.as_deref(), Some("h0"));
    // The listing says so; the planner decides (remove, then deploy).
    assert!(
        listed
            .defect
            .as_deref()
            .is_some_and(|d| d.contains("team=old")),
        "{listed:?}"
    );
    // A refresh tried anyway fails and deletes nothing behind the planner's back.
    let err = k.refresh(&spec("otx", "h1", true)).unwrap_err();
    assert!(err.to_string().contains("selector"), "{err}");
    let patch = server
        .seen()
        .into_iter()
        .rfind(|r| r.method == "PATCH")
        .unwrap();
    assert_eq!(patch.status, 422);
    assert!(server.deployment("otx").is_some(), "refresh deleted it");
    k.remove("otx").unwrap();
    k.deploy(&spec("otx", "h1", true)).unwrap();
    let d = server.deployment("otx").unwrap();
    assert_eq!(
        d["spec"]["selector"]["matchLabels"]
            .as_object()
            .unwrap()
            .len(),
        3
    );
    assert_eq!(d["spec"]["template"]["metadata"]["labels"]["team"], "new");
    assert_eq!(
        find(&k.list().unwrap(), "otx").state,
        WorkloadState::Running
    );
    server.assert_clean();
}

fn proxy_settings() -> Settings {
    let mut s = settings();
    s.opencti.with_proxy = true;
    s.opencti.https_proxy_ca =
        vec!["-----BEGIN CERTIFICATE-----\nTESTPROXYCA\n-----END CERTIFICATE-----".into()];
    s.opencti.daemon.registry = Some(Registry {
        server: Some("registry.example:5000".into()),
        username: Some("puller".into()),
        password: Some(Secret::new("registry-pass")),
        email: None,
    });
    s
}

#[test]
fn remove_deletes_the_deployment_and_its_secrets() {
    let server = K8sApi::start();
    let k = orchestrator(&server, "remove", &proxy_settings());
    k.deploy(&spec("otx", "h1", true)).unwrap();
    assert!(server.secret("otx-env").is_some());
    assert!(server.secret("otx-proxy-ca").is_some());
    k.remove("otx").unwrap();
    assert!(server.deployment("otx").is_none());
    assert!(server.secret("otx-env").is_none());
    assert!(server.secret("otx-proxy-ca").is_none());
    // The pull secret serves every connector: it stays.
    assert!(server.secret("registry-example-5000").is_some());
    assert!(k.list().unwrap().is_empty());
    // Removing what is gone is done already.
    k.remove("otx").unwrap();
    server.assert_clean();
}

/// Requests that touched Secret `name` (by path; a create names it in its body).
fn secret_writes(server: &K8sApi, name: &str) -> Vec<String> {
    server
        .seen()
        .into_iter()
        .filter(|r| {
            r.path.ends_with(&format!("/secrets/{name}"))
                || (r.method == "POST"
                    && r.path.ends_with("/secrets")
                    && r.body.contains(&format!("\"name\":\"{name}\"")))
        })
        .map(|r| format!("{} {} {}", r.method, r.path, r.status))
        .collect()
}

/// A Secret another application of the namespace made.
fn foreign_secret(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": name, "labels": {"app": "billing", "opencti-manager": "someone-else"}},
        "type": "Opaque", "stringData": {"DB_PASSWORD": "not-yours"}})
}

/// Issue 12: `{name}-env` and `{name}-proxy-ca` were PUT unconditionally, over
/// whatever held the name. A foreign Secret stays byte-for-byte as it was, the
/// Deployment made for the deploy is deleted again, and the error says why.
#[test]
fn a_foreign_secret_with_the_env_secret_name_is_untouched_and_a_name_collision() {
    let server = K8sApi::start();
    server.insert_secret(foreign_secret("otx-env"));
    let before = server.secret("otx-env").unwrap().to_string();
    let k = orchestrator(&server, "collision", &proxy_settings());
    let err = k.deploy(&spec("otx", "h1", true)).unwrap_err();
    assert!(err.to_string().contains("name collision"), "{err}");
    assert!(err.to_string().contains("otx-env"), "{err}");
    assert_eq!(server.secret("otx-env").unwrap().to_string(), before);
    let writes = secret_writes(&server, "otx-env");
    assert!(
        writes
            .iter()
            .all(|w| w.starts_with("POST ") && w.ends_with(" 409")),
        "{writes:?}"
    );
    assert!(
        server.deployment("otx").is_none(),
        "a half-made Deployment stays"
    );
    assert!(
        server.secret("otx-proxy-ca").is_none(),
        "its CA Secret stays"
    );
    assert!(k.list().unwrap().is_empty());
    // The next cycle tries again, and leaves it alone again.
    assert!(k.deploy(&spec("otx", "h1", true)).is_err());
    assert_eq!(server.secret("otx-env").unwrap().to_string(), before);
    server.assert_clean();
}

/// Issue 12: a Secret of ours replaced by someone else's of the same name is
/// not written over by a refresh, nor deleted by a removal.
#[test]
fn a_secret_replaced_by_someone_else_is_not_written_over_nor_deleted() {
    let server = K8sApi::start();
    let k = orchestrator(&server, "replaced", &proxy_settings());
    k.deploy(&spec("otx", "h1", true)).unwrap();
    let d = server.deployment("otx").unwrap();
    let owner = json!([{"apiVersion": "apps/v1", "kind": "Deployment", "name": "otx",
        "uid": d["metadata"]["uid"]}]);
    assert_eq!(
        server.secret("otx-env").unwrap()["metadata"]["ownerReferences"],
        owner
    );
    assert_eq!(
        server.secret("otx-proxy-ca").unwrap()["metadata"]["ownerReferences"],
        owner
    );
    assert!(server.remove_secret("otx-proxy-ca"));
    server.insert_secret(foreign_secret("otx-proxy-ca"));
    let before = server.secret("otx-proxy-ca").unwrap().to_string();
    k.list().unwrap();
    let err = k.refresh(&spec("otx", "h2", true)).unwrap_err();
    assert!(err.to_string().contains("name collision"), "{err}");
    assert_eq!(server.secret("otx-proxy-ca").unwrap().to_string(), before);
    k.remove("otx").unwrap();
    assert_eq!(server.secret("otx-proxy-ca").unwrap().to_string(), before);
    assert!(
        server.secret("otx-env").is_none(),
        "ours goes with its Deployment"
    );
    server.assert_clean();
}

/// Issue 12 (fix 4): a deploy cut after the Deployment was made and before its
/// Secrets were (kill -9) leaves it stopped and without its hash; the listing
/// shows no hash, the refresh deletes it with what it owns, the next deploy
/// makes it whole.
#[test]
fn a_deployment_left_half_deployed_is_deleted_and_made_again() {
    let server = K8sApi::start();
    let k = orchestrator(&server, "halfway", &proxy_settings());
    k.deploy(&spec("otx", "h1", true)).unwrap();
    let made = server.deployment("otx").unwrap();
    let mut cut = made.clone();
    cut["metadata"]["annotations"] = json!({});
    cut["spec"]["replicas"] = json!(0);
    k.remove("otx").unwrap();
    server.insert_deployment(cut);
    let uid = server.deployment("otx").unwrap()["metadata"]["uid"].clone();
    let mut orphan = foreign_secret("otx-proxy-ca");
    orphan["metadata"]["ownerReferences"] =
        json!([{"apiVersion": "apps/v1", "kind": "Deployment", "name": "otx", "uid": uid}]);
    server.insert_secret(orphan);
    let w = find(&k.list().unwrap(), "otx").clone();
    assert_eq!(w.hash, None, "an unfinished deploy must look stale");
    k.refresh(&spec("otx", "h1", true)).unwrap();
    assert!(server.deployment("otx").is_none());
    assert!(
        server.secret("otx-proxy-ca").is_none(),
        "owned by the deleted Deployment"
    );
    assert!(k.list().unwrap().is_empty());
    k.deploy(&spec("otx", "h1", true)).unwrap();
    let w = find(&k.list().unwrap(), "otx").clone();
    assert_eq!(w.hash.as_deref(), Some("h1"));
    assert_eq!(w.state, WorkloadState::Running);
    assert_eq!(w.waiting_reason, None);
    server.assert_clean();
}

/// Issue 12 (fix 3): platform tokens sent unencrypted are kept out of every
/// Deployment body, through the env the engine builds.
#[test]
fn platform_tokens_sent_in_clear_never_reach_a_deployment_body() {
    use xtm_composer::platform::{ConfigEntry, Connector, Requested, Status};
    const TOKEN: &str = "aev-token-3c1d9e";
    let server = K8sApi::start();
    let k = orchestrator(&server, "token", &settings());
    let connector = Connector {
        id: "c1".into(),
        name: "Collector".into(),
        image: "openaev/collector-x:1.0".into(),
        contract_hash: "h1".into(),
        current_status: Some(Status::Stopped),
        requested: Requested::Starting,
        config: vec![ConfigEntry {
            key: "OPENAEV_TOKEN".into(),
            value: Some(TOKEN.into()),
            encrypted: false,
        }],
    };
    let ctx = xtm_composer::env::Context {
        platform: PlatformKind::OpenAev,
        platform_url: "http://openaev:8080".into(),
        proxy: None,
    };
    let env = xtm_composer::env::connector_env(&connector, &ctx, |_| Err("none".into())).unwrap();
    let mut s = spec("collector", "h1", true);
    s.env = env;
    k.deploy(&s).unwrap();
    s.hash = "h2".into();
    k.refresh(&s).unwrap();
    let bodies = deployment_bodies(&server);
    assert!(bodies.len() >= 3);
    assert!(bodies.iter().all(|b| !b.contains(TOKEN)), "{bodies:?}");
    assert_eq!(
        server
            .secret_value("collector-env", "OPENAEV_TOKEN")
            .as_deref(),
        Some(TOKEN)
    );
    server.assert_clean();
}

#[test]
fn d7_pull_secret_and_proxy_ca_are_written_before_each_deploy_and_refresh() {
    let server = K8sApi::start();
    let k = orchestrator(&server, "registry", &proxy_settings());
    k.deploy(&spec("otx", "h1", true)).unwrap();
    let doc: Value = serde_json::from_str(
        &server
            .secret_value("registry-example-5000", ".dockerconfigjson")
            .unwrap(),
    )
    .unwrap();
    let auth = &doc["auths"]["registry.example:5000"];
    assert_eq!(auth["username"], "puller");
    assert_eq!(auth["auth"], "cHVsbGVyOnJlZ2lzdHJ5LXBhc3M=");
    assert_eq!(
        server.secret("registry-example-5000").unwrap()["type"],
        "kubernetes.io/dockerconfigjson"
    );
    let ca = server.secret_value("otx-proxy-ca", "ca.crt").unwrap();
    assert!(
        ca.starts_with("-----BEGIN CERTIFICATE-----\nTESTPROXYCA\n"),
        "{}",
        &ca[..60]
    );
    let d = server.deployment("otx").unwrap();
    let pod = &d["spec"]["template"]["spec"];
    assert_eq!(
        pod["containers"][0]["image"],
        "registry.example:5000/opencti/connector-otx:6.4.0"
    );
    assert_eq!(
        pod["imagePullSecrets"],
        json!([{"name": "registry-example-5000"}])
    );
    assert_eq!(
        pod["volumes"],
        json!([{"name": "proxy-ca-cert", "secret": {"secretName": "otx-proxy-ca"}}])
    );
    assert_eq!(
        pod["containers"][0]["volumeMounts"],
        json!([{"mountPath": "/etc/ssl/certs/xtm-proxy-ca.crt", "name": "proxy-ca-cert", "readOnly": true, "subPath": "ca.crt"}])
    );
    // Someone deletes the pull secret: the next refresh puts it back (D7).
    assert!(server.remove_secret("registry-example-5000"));
    k.refresh(&spec("otx", "h2", true)).unwrap();
    assert!(server.secret("registry-example-5000").is_some());
    server.assert_clean();
}

#[test]
fn d6_logs_come_from_the_current_pod_with_tail_lines() {
    let server = K8sApi::start();
    server.set_log_lines(150);
    let k = orchestrator(&server, "logs", &settings());
    k.deploy(&spec("otx", "h1", true)).unwrap();
    k.list().unwrap();
    let lines = k.logs("otx", 100).unwrap();
    assert_eq!(lines.len(), 100);
    assert!(lines[99].ends_with("otx log line 150"), "{}", lines[99]);
    assert!(
        lines
            .iter()
            .all(|l| !l.ends_with('\n') && !l.ends_with('\r'))
    );
    let req = server
        .seen()
        .into_iter()
        .rfind(|r| r.path.ends_with("/log"))
        .unwrap();
    assert_eq!(req.query, "container=otx&tailLines=100");
    // Without a listing first, the pod is found by a pod listing.
    let fresh = orchestrator(&server, "logs-fresh", &settings());
    assert_eq!(fresh.logs("otx", 5).unwrap().len(), 5);
    // A workload with no pod has no logs, and that is not an error.
    k.stop("otx").unwrap();
    k.list().unwrap();
    k.list().unwrap();
    assert_eq!(k.logs("otx", 5).unwrap(), Vec::<String>::new());
    server.assert_clean();
}

#[test]
fn d4_a_crash_loop_is_reported_with_its_reason_and_a_growing_restart_count() {
    let server = K8sApi::start();
    let k = orchestrator(&server, "crash", &settings());
    k.deploy(&spec("otx", "h1", true)).unwrap();
    server.set_mode("otx", PodMode::CrashLoop);
    let first = find(&k.list().unwrap(), "otx").clone();
    let second = find(&k.list().unwrap(), "otx").clone();
    assert_eq!(first.state, WorkloadState::Running);
    assert_eq!(first.waiting_reason.as_deref(), Some("CrashLoopBackOff"));
    assert!(second.restart_count > first.restart_count);
    assert!(first.restart_count > 3);
    assert!(
        first.started_at.is_some(),
        "lastState.terminated.startedAt is the start time"
    );
    assert!(xtm_composer::reconcile::is_in_reboot_loop(
        &second,
        std::time::SystemTime::now()
    ));
    // Logs of the last run are still readable.
    assert!(!k.logs("otx", 10).unwrap().is_empty());
    server.assert_clean();
}

#[test]
fn an_image_that_cannot_be_pulled_is_reported_and_its_logs_are_an_error() {
    let server = K8sApi::start();
    let k = orchestrator(&server, "pull", &settings());
    let mut s = spec("otx", "h1", true);
    s.image = "opencti/connector-missing:0.0.0".into();
    k.deploy(&s).unwrap();
    let w = find(&k.list().unwrap(), "otx").clone();
    assert_eq!(w.waiting_reason.as_deref(), Some("ImagePullBackOff"));
    assert_eq!(w.restart_count, 0);
    let e = k.logs("otx", 10).unwrap_err();
    assert!(e.to_string().contains("waiting to start"), "{e}");
    server.assert_clean();
}

/// The Deployment the existing composer makes (CONTRACT §6.3 body, verified),
/// decrypted secret in plain env, with pull secret and proxy CA.
fn existing_composer_deployment(name: &str) -> Value {
    let labels = json!({"opencti-connector-id": format!("id-{name}"), "opencti-manager": MANAGER, "opencti-platform": "opencti"});
    json!({
      "apiVersion": "apps/v1", "kind": "Deployment",
      "metadata": {"annotations": {"OPENCTI_CONFIG_HASH": "h0"}, "labels": labels, "name": name},
      "spec": {"replicas": 1, "selector": {"matchLabels": labels},
        "template": {"metadata": {"labels": labels}, "spec": {
          "containers": [{"env": [{"name": "CONNECTOR_API_KEY", "value": SECRET_VALUE}, {"name": "OPENCTI_CONFIG_HASH", "value": "h0"}],
            "image": format!("registry.example:5000/opencti/connector-{name}:6.3.0"), "imagePullPolicy": "IfNotPresent", "name": name,
            "volumeMounts": [{"mountPath": "/etc/ssl/certs/xtm-proxy-ca.crt", "name": "proxy-ca-cert", "readOnly": true, "subPath": "ca.crt"}]}],
          "imagePullSecrets": [{"name": "registry-example-5000"}],
          "volumes": [{"name": "proxy-ca-cert", "secret": {"secretName": format!("{name}-proxy-ca")}}]}}}
    })
}

#[test]
fn a_deployment_made_by_the_existing_composer_is_adopted_and_refreshed_in_place() {
    let server = K8sApi::start();
    server.insert_deployment(existing_composer_deployment("otx"));
    let k = orchestrator(&server, "adopt", &settings());
    let ws = k.list().unwrap();
    let w = find(&ws, "otx");
    assert_eq!(w.connector_id.as_deref(), Some("id-otx"));
    assert_eq!(w.platform.as_deref(), Some("opencti"));
    assert_eq!(w.hash.as_deref(), Some("h0"));
    assert_eq!(w.state, WorkloadState::Running);
    k.stop("otx").unwrap();
    assert_eq!(
        find(&k.list().unwrap(), "otx").state,
        WorkloadState::Stopped
    );
    let selector = server.deployment("otx").unwrap()["spec"]["selector"].clone();
    k.refresh(&spec("otx", "h1", true)).unwrap();
    let d = server.deployment("otx").unwrap();
    assert_eq!(d["spec"]["selector"], selector);
    let pod = &d["spec"]["template"]["spec"];
    // No registry or proxy here: what the old Deployment had is cleared, and the
    // plain secret is replaced by a reference.
    assert!(
        pod.get("volumes").is_none() && pod.get("imagePullSecrets").is_none(),
        "{pod}"
    );
    assert!(pod["containers"][0].get("volumeMounts").is_none());
    assert!(!d.to_string().contains(SECRET_VALUE));
    assert_eq!(find(&k.list().unwrap(), "otx").hash.as_deref(), Some("h1"));
    server.assert_clean();
}

#[test]
fn d16_base_deployment_configures_the_connector_container_and_keeps_sidecars() {
    let server = K8sApi::start();
    let base = json!({
        "metadata": {"labels": {"team": "cti"}},
        "spec": {"template": {"spec": {
            "nodeSelector": {"pool": "connectors"},
            "containers": [
                {"name": "settings", "resources": {"limits": {"memory": "1Gi"}},
                 "securityContext": {"runAsNonRoot": true}, "env": [{"name": "EXTRA", "value": "1"}]},
                {"name": "proxy", "image": "envoyproxy/envoy:v1.31"}
            ]}}}
    });
    let s = settings_with(KubernetesSettings {
        base_deployment_json: Some(base),
        ..Default::default()
    });
    let k = orchestrator(&server, "base", &s);
    k.deploy(&spec("otx", "h1", true)).unwrap();
    let d = server.deployment("otx").unwrap();
    let containers = d["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap();
    assert_eq!(containers.len(), 2);
    assert!(
        containers.iter().all(|c| c["image"].is_string()),
        "an image-less container"
    );
    assert_eq!(containers[0]["name"], "otx");
    assert_eq!(containers[0]["securityContext"]["runAsNonRoot"], true);
    assert_eq!(containers[0]["resources"]["limits"]["memory"], "1Gi");
    assert_eq!(containers[1]["name"], "proxy");
    assert_eq!(d["metadata"]["labels"]["team"], "cti");
    let w = find(&k.list().unwrap(), "otx").clone();
    assert_eq!(w.state, WorkloadState::Running);
    assert_eq!(
        k.logs("otx", 2).unwrap().len(),
        2,
        "logs pick the connector container"
    );
    server.assert_clean();
}

#[test]
fn a_second_deploy_of_the_same_name_is_a_conflict_error() {
    let server = K8sApi::start();
    let k = orchestrator(&server, "conflict", &settings());
    k.deploy(&spec("otx", "h1", true)).unwrap();
    match k.deploy(&spec("otx", "h1", true)) {
        Err(xtm_composer::orchestrator::Error::Api {
            code: 409, message, ..
        }) => {
            assert!(message.starts_with("AlreadyExists"), "{message}")
        }
        other => panic!("expected a 409, got {other:?}"),
    }
    server.assert_clean();
}

#[test]
fn an_idle_cycle_costs_two_calls_whatever_the_number_of_connectors() {
    let server = K8sApi::start();
    let k = orchestrator(&server, "idle", &settings());
    for i in 0..10 {
        k.deploy(&spec(&format!("c{i}"), "h1", true)).unwrap();
    }
    server.clear_seen();
    let ws = k.list().unwrap();
    assert_eq!(ws.len(), 10);
    let seen = server.seen();
    let calls: Vec<String> = seen
        .iter()
        .map(|r| format!("{} {}?{}", r.method, r.path, r.query))
        .collect();
    assert_eq!(
        calls,
        vec![
            format!(
                "GET /apis/apps/v1/namespaces/connectors/deployments?labelSelector=opencti-manager%3D{MANAGER}"
            ),
            format!(
                "GET /api/v1/namespaces/connectors/pods?labelSelector=opencti-manager%3D{MANAGER}"
            ),
        ]
    );
    server.assert_clean();
}

#[test]
fn server_errors_and_hangs_are_errors_and_the_next_call_recovers() {
    let server = K8sApi::start();
    let k = orchestrator(&server, "faults", &settings());
    k.deploy(&spec("otx", "h1", true)).unwrap();
    server.set_fault(Fault::Status(500));
    match k.list() {
        Err(xtm_composer::orchestrator::Error::Api { code: 500, .. }) => {}
        other => panic!("expected a 500, got {other:?}"),
    }
    assert!(k.deploy(&spec("cve", "h1", true)).is_err());
    assert!(k.logs("otx", 5).is_err());
    server.set_fault(Fault::Hang(Duration::from_secs(10)));
    let started = Instant::now();
    match k.list() {
        Err(xtm_composer::orchestrator::Error::Transport { .. }) => {}
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert!(
        started.elapsed() < Duration::from_secs(9),
        "the request timeout did not apply"
    );
    server.set_fault(Fault::None);
    assert_eq!(k.list().unwrap().len(), 1);
    k.deploy(&spec("cve", "h1", true)).unwrap();
    assert_eq!(k.list().unwrap().len(), 2);
    server.assert_clean();
}

#[test]
fn an_unreachable_server_does_not_prevent_construction() {
    let dir = tempdir("unreachable");
    let kc = dir.join("config");
    std::fs::write(
        &kc,
        "current-context: x\ncontexts: [{name: x, context: {cluster: c, user: u}}]\n\
         clusters: [{name: c, cluster: {server: 'https://127.0.0.1:9'}}]\nusers: [{name: u, user: {token: t}}]\n",
    )
    .unwrap();
    let k = Kubernetes::with_source(
        &settings(),
        PlatformKind::OpenCti,
        &Source::Kubeconfig(vec![kc]),
    )
    .unwrap();
    assert_eq!(k.namespace(), "default");
    assert!(matches!(
        k.list(),
        Err(xtm_composer::orchestrator::Error::Transport { .. })
    ));
}

#[test]
fn in_cluster_service_account_works_and_a_rotated_token_is_reread() {
    let server = K8sApi::start();
    let dir = tempdir("incluster");
    server.service_account_dir(&dir);
    let src = Source::InCluster {
        host: "127.0.0.1".into(),
        port: server.port.to_string(),
        dir: dir.clone(),
    };
    let k = Kubernetes::with_source(&settings(), PlatformKind::OpenCti, &src).unwrap();
    assert_eq!(k.namespace(), "connectors");
    k.deploy(&spec("otx", "h1", true)).unwrap();
    assert_eq!(k.list().unwrap().len(), 1);
    let next = server.rotate_composer_token();
    assert!(matches!(
        k.list(),
        Err(xtm_composer::orchestrator::Error::Api { code: 401, .. })
    ));
    std::fs::write(dir.join("token"), next).unwrap();
    assert_eq!(k.list().unwrap().len(), 1);
    server.assert_clean();
}

#[test]
fn a_kubeconfig_with_a_client_certificate_authenticates_without_a_token() {
    let server = K8sApi::start();
    let dir = tempdir("clientcert");
    let kc = server.kubeconfig_client_cert(&dir);
    let k = Kubernetes::with_source(
        &settings(),
        PlatformKind::OpenCti,
        &Source::Kubeconfig(vec![kc]),
    )
    .unwrap();
    k.deploy(&spec("otx", "h1", true)).unwrap();
    assert_eq!(k.list().unwrap().len(), 1);
    assert!(server.seen().iter().all(|r| r.user == COMPOSER_USER));
    server.assert_clean();
}

fn exec_plugin() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/k8s-exec/credential.sh")
}

#[test]
fn an_exec_plugin_token_is_used_and_cached() {
    let server = K8sApi::start();
    let dir = tempdir("exec");
    let kc = server.kubeconfig_exec(&dir, &exec_plugin());
    let k = Kubernetes::with_source(
        &settings(),
        PlatformKind::OpenCti,
        &Source::Kubeconfig(vec![kc.clone()]),
    )
    .unwrap();
    k.deploy(&spec("otx", "h1", true)).unwrap();
    assert_eq!(k.list().unwrap().len(), 1);
    assert_eq!(k.list().unwrap().len(), 1);
    let runs = std::fs::read_to_string(dir.join("exec-runs")).unwrap();
    assert_eq!(runs.lines().count(), 1, "the token was not cached");
    assert!(server.seen().iter().all(|r| r.user == COMPOSER_USER));
    // The real kubectl accepts the same plugin and kubeconfig.
    let (ok, out, err) = kubectl(&kc, &["get", "deployments", "-o", "json"]);
    assert!(ok, "kubectl with the exec plugin: {err}");
    assert!(out.contains("\"otx\""));
    server.assert_clean();
}

#[test]
fn the_namespace_setting_overrides_the_context_and_the_role_refuses_other_namespaces() {
    let server = K8sApi::start();
    let s = settings_with(KubernetesSettings {
        namespace: Some("elsewhere".into()),
        ..Default::default()
    });
    let k = orchestrator(&server, "ns", &s);
    assert_eq!(k.namespace(), "elsewhere");
    match k.list() {
        Err(xtm_composer::orchestrator::Error::Api {
            code: 403, message, ..
        }) => {
            assert!(message.starts_with("Forbidden"), "{message}")
        }
        other => panic!("expected a 403, got {other:?}"),
    }
    assert_eq!(
        server.forbidden(),
        vec!["list deployments in elsewhere".to_string()]
    );
}

#[test]
fn the_role_grants_nothing_beyond_what_the_composer_uses() {
    let server = K8sApi::start();
    let k = orchestrator(&server, "role", &settings());
    k.deploy(&spec("otx", "h1", true)).unwrap();
    let dir = tempdir("role-kubectl");
    let composer = server.kubeconfig_token(&dir);
    // `get` of one object, reading Secrets and scaling are not granted.
    for args in [
        &["get", "deployment", "otx", "-o", "json"][..],
        &["get", "secrets", "-o", "json"][..],
        &["scale", "deployment", "otx", "--replicas=0"][..],
    ] {
        let (ok, _, err) = kubectl(&composer, args);
        assert!(!ok, "kubectl {args:?} was allowed");
        assert!(err.contains("forbidden"), "kubectl {args:?}: {err}");
    }
    assert_eq!(server.forbidden().len(), 3, "{:?}", server.forbidden());
    assert_eq!(server.schema_errors(), Vec::<String>::new());
}

#[test]
fn kubectl_reads_logs_and_scales_what_the_composer_made() {
    let server = K8sApi::start();
    let k = orchestrator(&server, "kubectl", &settings());
    k.deploy(&spec("otx", "h1", true)).unwrap();
    let dir = tempdir("kubectl-admin");
    let admin = server.kubeconfig_admin(&dir);
    let (ok, out, err) = kubectl(
        &admin,
        &[
            "get",
            "pods",
            "-l",
            "opencti-connector-id=id-otx",
            "-o",
            "json",
        ],
    );
    assert!(ok, "{err}");
    let pods: Value = serde_json::from_str(&out).unwrap();
    let pod = pods["items"][0]["metadata"]["name"]
        .as_str()
        .unwrap()
        .to_string();
    let (ok, out, err) = kubectl(&admin, &["logs", &pod, "-c", "otx", "--tail=5"]);
    assert!(ok, "kubectl logs: {err}");
    assert_eq!(out.lines().count(), 5, "{out}");
    let (ok, _, err) = kubectl(&admin, &["scale", "deployment/otx", "--replicas=0"]);
    assert!(ok, "kubectl scale: {err}");
    assert_eq!(
        find(&k.list().unwrap(), "otx").state,
        WorkloadState::Stopped
    );
    let (ok, out, err) = kubectl(
        &admin,
        &["get", "deploy", "otx", "-o", "jsonpath={.spec.replicas}"],
    );
    assert!(ok, "{err}");
    assert_eq!(out, "0");
    server.assert_clean();
}

#[test]
fn the_server_rejects_an_object_off_the_official_schema() {
    // The schema check is real: a typo in a field is refused and recorded.
    let server = K8sApi::start();
    let dir = tempdir("schema");
    let admin = server.kubeconfig_admin(&dir);
    let manifest = dir.join("bad.json");
    let mut d = existing_composer_deployment("bad");
    d["spec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = json!("Always");
    std::fs::write(&manifest, d.to_string()).unwrap();
    let (ok, _, err) = kubectl(
        &admin,
        &[
            "create",
            "--validate=false",
            "-f",
            manifest.to_str().unwrap(),
        ],
    );
    assert!(!ok, "an off-schema Deployment was accepted");
    assert!(err.contains("imagePullPolicyy"), "{err}");
    assert_eq!(server.schema_errors().len(), 1);
    // The same object without the typo is accepted.
    d["spec"]["template"]["spec"]["containers"][0]
        .as_object_mut()
        .unwrap()
        .remove("imagePullPolicyy");
    std::fs::write(&manifest, d.to_string()).unwrap();
    let (ok, _, err) = kubectl(
        &admin,
        &[
            "create",
            "--validate=false",
            "-f",
            manifest.to_str().unwrap(),
        ],
    );
    assert!(ok, "{err}");
}

#[test]
fn d7_the_pull_secret_is_rewritten_before_a_start_and_follows_changed_credentials() {
    let server = K8sApi::start();
    let k = orchestrator(&server, "pull-sync", &proxy_settings());
    let password = |server: &K8sApi| {
        let doc: Value = serde_json::from_str(
            &server
                .secret_value("registry-example-5000", ".dockerconfigjson")
                .unwrap(),
        )
        .unwrap();
        doc["auths"]["registry.example:5000"]["password"].clone()
    };
    k.deploy(&spec("otx", "h1", false)).unwrap();
    assert_eq!(password(&server), "registry-pass");
    // Listings only read, so that `plan` and `check` change nothing.
    assert!(server.remove_secret("registry-example-5000"));
    server.clear_seen();
    k.list().unwrap();
    assert!(server.seen().iter().all(|r| r.method == "GET"));
    assert!(server.secret("registry-example-5000").is_none());
    // A start makes a pod: the Secret is back first.
    k.start("otx").unwrap();
    assert_eq!(password(&server), "registry-pass");
    // The password changed in the configuration: the restarted composer's first
    // start replaces the Secret, though the Deployment is not refreshed.
    k.stop("otx").unwrap();
    let mut changed = proxy_settings();
    changed.opencti.daemon.registry.as_mut().unwrap().password = Some(Secret::new("rotated-pass"));
    let k2 = orchestrator(&server, "pull-sync-2", &changed);
    k2.start("otx").unwrap();
    assert_eq!(password(&server), "rotated-pass");
    let writes: Vec<String> = server
        .seen()
        .into_iter()
        .filter(|r| r.method != "GET")
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    assert_eq!(
        writes,
        [
            "PUT /api/v1/namespaces/connectors/secrets/registry-example-5000",
            "POST /api/v1/namespaces/connectors/secrets",
            "PATCH /apis/apps/v1/namespaces/connectors/deployments/otx",
            "PATCH /apis/apps/v1/namespaces/connectors/deployments/otx",
            "PUT /api/v1/namespaces/connectors/secrets/registry-example-5000",
            "PATCH /apis/apps/v1/namespaces/connectors/deployments/otx",
        ]
    );
    server.assert_clean();
}

/// Runs the PyPI `kubernetes-validate` (the official schemas, strict) on files.
fn kubernetes_validate(files: &[PathBuf]) -> (bool, String) {
    let out = Command::new("kubernetes-validate")
        .args(["--kubernetes-version", "1.32.0", "--strict", "--no-warn"])
        .args(files)
        .output()
        .expect(
            "kubernetes-validate is installed (pip install kubernetes-validate, scripts/test.sh)",
        );
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn what_the_composer_writes_passes_the_official_kubernetes_validate() {
    let server = K8sApi::start();
    let base = json!({"metadata": {"labels": {"team": "cti"}},
        "spec": {"template": {"spec": {"tolerations": [{"key": "k", "operator": "Exists"}],
            "containers": [{"name": "settings", "securityContext": {"runAsNonRoot": true}},
                           {"name": "proxy", "image": "envoyproxy/envoy:v1.31"}]}}}});
    let mut s = proxy_settings();
    s.opencti.daemon.kubernetes = Some(KubernetesSettings {
        base_deployment: Some(base),
        image_resources: Some(json!({"limits": {"memory": "256Mi"}})),
        image_pull_policy: PullPolicy::Always,
        ..s.opencti.daemon.kubernetes.clone().unwrap()
    });
    let k = orchestrator(&server, "validate", &s);
    k.deploy(&spec("otx", "h1", true)).unwrap();
    k.refresh(&spec("otx", "h2", false)).unwrap();
    // Every full object the composer sent, and what the refresh patch made.
    let dir = tempdir("validate-files");
    let mut files = Vec::new();
    for (i, r) in server.seen().iter().enumerate() {
        if matches!(r.method.as_str(), "POST" | "PUT") {
            let f = dir.join(format!("sent-{i}.json"));
            std::fs::write(&f, &r.body).unwrap();
            files.push(f);
        }
    }
    let f = dir.join("refreshed.json");
    std::fs::write(&f, server.deployment("otx").unwrap().to_string()).unwrap();
    files.push(f);
    assert!(files.len() >= 5, "{files:?}");
    let (ok, text) = kubernetes_validate(&files);
    assert!(ok, "{text}");
    // The check is real: a misspelt field is refused.
    let mut bad = server.deployment("otx").unwrap();
    bad["spec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = json!("Always");
    let f = dir.join("bad.json");
    std::fs::write(&f, bad.to_string()).unwrap();
    let (ok, text) = kubernetes_validate(&[f]);
    assert!(!ok, "a misspelt field passed: {text}");
    server.assert_clean();
}

#[test]
fn the_shipped_manifests_pass_the_official_schemas_and_kubectl() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("packaging/kubernetes");
    let files: Vec<PathBuf> = [
        "serviceaccount.yaml",
        "role.yaml",
        "rolebinding.yaml",
        "deployment.yaml",
        "service.yaml",
        "secret.example.yaml",
    ]
    .iter()
    .map(|f| root.join(f))
    .collect();
    let (ok, text) = kubernetes_validate(&files);
    assert!(ok, "{text}");
    assert_eq!(text.matches("passed").count(), files.len(), "{text}");
    // kubectl builds the kustomization offline: every listed file exists and parses.
    let out = Command::new("kubectl")
        .args(["kustomize"])
        .arg(&root)
        .env_remove("KUBECONFIG")
        .output()
        .expect("kubectl is installed (v1.32)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for kind in [
        "ServiceAccount",
        "Role",
        "RoleBinding",
        "Deployment",
        "Service",
    ] {
        assert!(
            text.contains(&format!("kind: {kind}\n")),
            "{kind} missing:\n{text}"
        );
    }
}

#[test]
fn the_schema_fixtures_are_those_of_the_pypi_package() {
    // tests/fixtures/k8s-schemas/ are copies; this proves they are still exact.
    let script =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/k8s-schemas/extract.py");
    let out = Command::new("python3")
        .arg(&script)
        .arg("--check")
        .output()
        .expect("python3 is installed");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `k.follow` on its own thread, counting wakes; stops when dropped.
struct Following {
    wakes: Arc<AtomicUsize>,
    _stop: crossbeam_channel::Sender<()>,
}

fn follow(k: &Arc<Kubernetes>, server: &K8sApi) -> Following {
    let (stop_tx, stop_rx) = crossbeam_channel::bounded::<()>(0);
    let wakes = Arc::new(AtomicUsize::new(0));
    let (k, w) = (Arc::clone(k), Arc::clone(&wakes));
    std::thread::spawn(move || {
        let wake = move || {
            w.fetch_add(1, Ordering::SeqCst);
        };
        assert!(
            k.follow(&wake, &stop_rx),
            "Kubernetes offers a change stream"
        );
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.count("watch", "deployments") == 0 || server.count("watch", "pods") == 0 {
        assert!(
            Instant::now() < deadline,
            "no watch after 10 s: {:?}",
            server.seen()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // The watch request is recorded as it starts streaming; its first read follows.
    std::thread::sleep(Duration::from_millis(200));
    Following {
        wakes,
        _stop: stop_tx,
    }
}

/// Requests other than the watches themselves.
fn requests_besides_watches(server: &K8sApi) -> Vec<String> {
    server
        .seen()
        .iter()
        .filter(|r| !r.query.contains("watch=1"))
        .map(|r| format!("{} {}?{}", r.method, r.path, r.query))
        .collect()
}

/// Polls `check` every 20 ms for up to `limit`; returns how long it took.
fn within(limit: Duration, what: &str, mut check: impl FnMut() -> bool) -> Duration {
    let t = Instant::now();
    while !check() {
        assert!(t.elapsed() < limit, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
    t.elapsed()
}

#[test]
fn watched_an_idle_list_asks_nothing_and_a_pod_deleted_or_crashing_shows_at_once() {
    let server = K8sApi::start();
    let k = Arc::new(orchestrator(&server, "watch-idle", &settings()));
    let unwatched = orchestrator(&server, "watch-truth", &settings());
    for name in ["c1", "c2", "c3"] {
        k.deploy(&spec(name, "h1", true)).unwrap();
    }
    k.stop("c3").unwrap();
    let following = follow(&k, &server);

    server.clear_seen();
    for _ in 0..10 {
        let copy = k.list().unwrap();
        assert_eq!(
            copy,
            unwatched.list().unwrap(),
            "the copy is what a listing says"
        );
    }
    let asked = requests_besides_watches(&server);
    assert_eq!(
        asked.len(),
        20,
        "only the unwatched orchestrator listed: {asked:?}"
    );
    server.clear_seen();
    assert_eq!(k.list().unwrap().len(), 3);
    assert_eq!(requests_besides_watches(&server), Vec::<String>::new());

    // A crash behind the composer's back: seen through the pod watch, no listing.
    let wakes = following.wakes.load(Ordering::SeqCst);
    server.set_mode("c1", PodMode::CrashLoop);
    within(Duration::from_secs(2), "a wake for the crash", || {
        following.wakes.load(Ordering::SeqCst) > wakes
    });
    within(Duration::from_secs(2), "the crash in the copy", || {
        let w = k.list().unwrap();
        find(&w, "c1").waiting_reason.as_deref() == Some("CrashLoopBackOff")
    });

    // A pod deleted: its successor (a later start) is in the copy at once.
    std::thread::sleep(Duration::from_millis(1100)); // start times have 1 s resolution
    let before = find(&k.list().unwrap(), "c2").started_at.clone();
    let pod = server
        .pods()
        .iter()
        .filter_map(|p| p["metadata"]["name"].as_str().map(String::from))
        .find(|n| n.starts_with("c2-"))
        .unwrap();
    assert!(server.delete_pod(&pod));
    let took = within(Duration::from_secs(2), "the new pod in the copy", || {
        find(&k.list().unwrap(), "c2").started_at != before
    });
    eprintln!("pod deleted → new pod in the copy: {took:?}");
    // (A listing ages crash loops in the test server, so compare the others.)
    let (copy, truth) = (k.list().unwrap(), unwatched.list().unwrap());
    assert_eq!(find(&copy, "c2"), find(&truth, "c2"));
    assert_eq!(find(&copy, "c3"), find(&truth, "c3"));
    server.clear_seen();
    k.list().unwrap();
    assert_eq!(requests_besides_watches(&server), Vec::<String>::new());
    server.assert_clean();
}

#[test]
fn a_410_gone_on_a_watch_relists_each_resource_once() {
    let server = K8sApi::start();
    let k = Arc::new(orchestrator(&server, "watch-410", &settings()));
    k.deploy(&spec("otx", "h1", true)).unwrap();
    let following = follow(&k, &server);
    server.clear_seen();
    let wakes = following.wakes.load(Ordering::SeqCst);
    server.expire_watches();
    within(Duration::from_secs(3), "a relist of both", || {
        server.lists() == (1, 1)
    });
    within(Duration::from_secs(2), "watches resumed", || {
        server.count("watch", "deployments") == 1 && server.count("watch", "pods") == 1
    });
    assert!(
        following.wakes.load(Ordering::SeqCst) > wakes,
        "a relist wakes the loop"
    );
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        server.lists(),
        (1, 1),
        "one relist each: {:?}",
        requests_besides_watches(&server)
    );
    // The copy serves again, and a change after the relist arrives by watch.
    server.clear_seen();
    k.stop("otx").unwrap();
    within(Duration::from_secs(2), "the stop in the copy", || {
        find(&k.list().unwrap(), "otx").state == WorkloadState::Stopped
    });
    assert_eq!(
        server.lists(),
        (0, 0),
        "{:?}",
        requests_besides_watches(&server)
    );
    server.assert_clean();
}

#[test]
fn without_the_watch_verb_the_copy_is_never_trusted_and_cycles_list() {
    // A Role without `watch` (an older manifest): every watch is refused, and
    // lists keep working as before.
    let server = K8sApi::start();
    server.deny_watch();
    let k = Arc::new(orchestrator(&server, "watch-denied", &settings()));
    k.deploy(&spec("otx", "h1", true)).unwrap();
    let (stop_tx, stop_rx) = crossbeam_channel::bounded::<()>(0);
    let k2 = Arc::clone(&k);
    std::thread::spawn(move || k2.follow(&|| {}, &stop_rx));
    within(Duration::from_secs(5), "a refused watch", || {
        !server.forbidden().is_empty()
    });
    server.clear_seen();
    for _ in 0..3 {
        assert_eq!(k.list().unwrap().len(), 1);
    }
    // Each call listed (the follower may have relisted once more meanwhile).
    assert!(
        server.count("list", "deployments") >= 3,
        "{:?}",
        server.seen()
    );
    assert!(server.count("list", "pods") >= 3);
    drop(stop_tx);
}

/// `kubectl get <resource> --watch -o json --output-watch-events` as the admin;
/// `kubectl_events` stops it and reads what it printed.
fn kubectl_watch(kc: &Path, resource: &str) -> std::process::Child {
    Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(kc)
        .args([
            "get",
            resource,
            "--watch",
            "-o",
            "json",
            "--output-watch-events",
        ])
        .env_remove("KUBECONFIG")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("kubectl is installed (v1.32)")
}

fn kubectl_events(mut child: std::process::Child) -> Vec<(String, String, String)> {
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::Deserializer::from_str(&text)
        .into_iter::<Value>()
        .map(|v| {
            let v = v.unwrap_or_else(|e| panic!("kubectl printed {text}: {e}"));
            (
                v["type"].as_str().unwrap_or("").to_string(),
                v["object"]["metadata"]["name"]
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
                v["object"]["metadata"]["resourceVersion"]
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
            )
        })
        .collect()
}

#[test]
fn the_real_kubectl_follows_the_watch_streams_of_deployments_and_pods() {
    let server = K8sApi::start();
    let k = orchestrator(&server, "watch-kubectl", &settings());
    k.deploy(&spec("otx", "h1", true)).unwrap();
    let dir = tempdir("watch-kubectl");
    let admin = server.kubeconfig_admin(&dir);
    let deployments = kubectl_watch(&admin, "deployments");
    let pods = kubectl_watch(&admin, "pods");
    within(Duration::from_secs(10), "kubectl watching", || {
        server.count("watch", "deployments") == 1 && server.count("watch", "pods") == 1
    });
    let from = server.watch_events().len();
    k.stop("otx").unwrap(); // replicas 0: the pod terminates and goes
    std::thread::sleep(Duration::from_millis(1500));
    k.start("otx").unwrap(); // a new pod
    let (ok, _, err) = kubectl(
        &admin,
        &["delete", "pod", "--wait=false", &{
            let p = server.pods();
            p.iter()
                .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
                .find_map(|p| p["metadata"]["name"].as_str().map(String::from))
                .unwrap()
        }],
    );
    assert!(ok, "kubectl delete pod: {err}");
    std::thread::sleep(Duration::from_millis(1500));
    let served: Vec<(String, String, String)> = server.watch_events()[from..].to_vec();
    let printed_d = kubectl_events(deployments);
    let printed_p = kubectl_events(pods);

    // kubectl prints the listing first (ADDED), then every event the server sent,
    // in order, each with its resourceVersion.
    for (resource, printed) in [("deployments", &printed_d), ("pods", &printed_p)] {
        let expected: Vec<(String, String)> = served
            .iter()
            .filter(|(_, r, _)| r == resource)
            .map(|(t, _, n)| (t.clone(), n.clone()))
            .collect();
        let got: Vec<(String, String)> = printed
            .iter()
            .map(|(t, n, _)| (t.clone(), n.clone()))
            .collect();
        assert!(!expected.is_empty(), "the server sent {resource} events");
        assert!(
            got.ends_with(&expected),
            "kubectl printed {printed:?} for {resource}; the server sent {expected:?}"
        );
        assert!(printed.iter().all(|(_, _, rv)| !rv.is_empty()));
    }
    let kinds: Vec<&str> = printed_p.iter().map(|(t, _, _)| t.as_str()).collect();
    for kind in ["ADDED", "MODIFIED", "DELETED"] {
        assert!(
            kinds.contains(&kind),
            "no {kind} pod event in {printed_p:?}"
        );
    }
    assert!(
        printed_d
            .iter()
            .any(|(t, n, _)| t == "MODIFIED" && n == "otx"),
        "{printed_d:?}"
    );
    server.assert_clean();
}

/// The existing composer's `{name}-proxy-ca` Secret: no labels, no owner.
fn existing_composer_ca_secret(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": format!("{name}-proxy-ca")},
        "type": "Opaque", "stringData": {"ca.crt": "the previous composer's bundle"}})
}

#[test]
fn the_previous_composers_proxy_ca_secret_is_adopted_by_a_refresh_then_owned() {
    let server = K8sApi::start();
    server.insert_deployment(existing_composer_deployment("otx"));
    server.insert_secret(existing_composer_ca_secret("otx"));
    let k = orchestrator(&server, "adopt-ca", &proxy_settings());
    k.list().unwrap();
    k.refresh(&spec("otx", "h1", true)).unwrap();
    let s = server.secret("otx-proxy-ca").unwrap();
    assert_eq!(s["metadata"]["labels"]["opencti-manager"], MANAGER, "{s}");
    assert_eq!(s["metadata"]["ownerReferences"][0]["name"], "otx", "{s}");
    assert!(
        server
            .secret_value("otx-proxy-ca", "ca.crt")
            .unwrap()
            .contains("TESTPROXYCA")
    );
    let record =
        server.deployment("otx").unwrap()["metadata"]["annotations"]["xtm-composer/secrets"]
            .to_string();
    assert!(
        record.contains("otx-proxy-ca") && record.contains(s["metadata"]["uid"].as_str().unwrap()),
        "{record}"
    );
    // From now on it is ours like any other: replaced under its UID, deleted with it.
    k.list().unwrap();
    k.refresh(&spec("otx", "h2", true)).unwrap();
    k.list().unwrap();
    k.remove("otx").unwrap();
    assert!(server.secret("otx-proxy-ca").is_none());
    server.assert_clean();
}

#[test]
fn removing_a_previous_composers_deployment_removes_its_secret_and_nothing_foreign() {
    let server = K8sApi::start();
    server.insert_deployment(existing_composer_deployment("otx"));
    server.insert_secret(existing_composer_ca_secret("otx"));
    // Someone else's Secret with our env-Secret name, not used by the Deployment.
    server.insert_secret(foreign_secret("otx-env"));
    let before = server.secret("otx-env").unwrap();
    let k = orchestrator(&server, "adopt-remove", &settings());
    k.list().unwrap();
    k.remove("otx").unwrap();
    assert!(server.deployment("otx").is_none());
    assert!(
        server.secret("otx-proxy-ca").is_none(),
        "the previous composer's CA Secret"
    );
    assert_eq!(
        server.secret("otx-env"),
        Some(before),
        "a foreign Secret stays as it was"
    );
    server.assert_clean();
}
