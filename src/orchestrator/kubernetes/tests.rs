//! Unit tests of the pure parts of the Kubernetes orchestrator: workloads from
//! listings (D4), pod selection (D16), settings checks.

use serde_json::json;

use super::*;

fn deployment(name: &str, replicas: i32) -> wire::Deployment {
    serde_json::from_value(json!({
        "metadata": {"name": name,
            "labels": {"opencti-manager": "m", "opencti-connector-id": format!("id-{name}"), "opencti-platform": "opencti"},
            "annotations": {"OPENCTI_CONFIG_HASH": "h"}},
        "spec": {"replicas": replicas,
            "selector": {"matchLabels": {"opencti-manager": "m", "opencti-connector-id": format!("id-{name}")}},
            "template": {"spec": {"containers": [{"name": "sidecar"}, {"name": name}]}}}
    }))
    .unwrap()
}

fn shape(base: Option<serde_json::Value>) -> manifest::Shape {
    manifest::Shape {
        manager_id: "m".into(),
        pull_policy: "IfNotPresent".into(),
        resources: None,
        base,
        pull_secret: None,
        proxy_ca: false,
        plain_env: false,
    }
}

fn pod(name: &str, owner: &str, created: &str, state: serde_json::Value) -> wire::Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name, "creationTimestamp": created,
            "labels": {"opencti-manager": "m", "opencti-connector-id": format!("id-{owner}")}},
        "status": {"containerStatuses": [
            {"name": "sidecar", "restartCount": 99, "state": {"running": {"startedAt": "2020-01-01T00:00:00Z"}}},
            state]}
    }))
    .unwrap()
}

fn running(name: &str, restarts: u32, at: &str) -> serde_json::Value {
    json!({"name": name, "restartCount": restarts, "state": {"running": {"startedAt": at}}})
}

#[test]
fn d4_state_and_health_come_from_the_connector_container_of_the_newest_live_pod() {
    let mut old = pod(
        "otx-aaa-11111",
        "otx",
        "2025-01-01T00:00:00Z",
        running("otx", 1, "2025-01-01T00:00:05Z"),
    );
    old.metadata.deletion_timestamp = None;
    let mut terminating = pod(
        "otx-ccc-33333",
        "otx",
        "2025-01-03T00:00:00Z",
        running("otx", 7, "2025-01-03T00:00:05Z"),
    );
    terminating.metadata.deletion_timestamp = Some("2025-01-03T00:01:00Z".into());
    let newest = pod(
        "otx-bbb-22222",
        "otx",
        "2025-01-02T00:00:00Z",
        running("otx", 2, "2025-01-02T00:00:05Z"),
    );
    let (w, located) = observe(
        &[deployment("otx", 1)],
        &[old, terminating, newest],
        &shape(None),
    );
    assert_eq!(w.len(), 1);
    assert_eq!(w[0].state, WorkloadState::Running);
    assert_eq!(w[0].restart_count, 2);
    assert_eq!(w[0].started_at.as_deref(), Some("2025-01-02T00:00:05Z"));
    assert_eq!(w[0].connector_id.as_deref(), Some("id-otx"));
    assert_eq!(w[0].hash.as_deref(), Some("h"));
    assert_eq!(
        located["otx"],
        Located {
            pod: Some("otx-bbb-22222".into()),
            container: "otx".into()
        }
    );
}

#[test]
fn d4_crash_loop_is_running_with_a_waiting_reason_and_the_last_start() {
    let state = json!({"name": "otx", "restartCount": 6, "state": {"waiting": {"reason": "CrashLoopBackOff"}},
        "lastState": {"terminated": {"startedAt": "2025-01-02T00:00:09Z", "reason": "Error", "exitCode": 1}}});
    let (w, _) = observe(
        &[deployment("otx", 1)],
        &[pod("otx-b-22222", "otx", "2025-01-02T00:00:00Z", state)],
        &shape(None),
    );
    assert_eq!(w[0].state, WorkloadState::Running);
    assert_eq!(w[0].waiting_reason.as_deref(), Some("CrashLoopBackOff"));
    assert_eq!(w[0].restart_count, 6);
    assert_eq!(w[0].started_at.as_deref(), Some("2025-01-02T00:00:09Z"));
}

#[test]
fn ordinary_waits_are_not_reboot_loops() {
    let state = json!({"name": "otx", "restartCount": 0, "state": {"waiting": {"reason": "ContainerCreating"}}});
    let (w, _) = observe(
        &[deployment("otx", 1)],
        &[pod("otx-b-22222", "otx", "2025-01-02T00:00:00Z", state)],
        &shape(None),
    );
    assert_eq!(w[0].state, WorkloadState::Running);
    assert_eq!(w[0].waiting_reason, None);
    assert_eq!(w[0].started_at, None);
}

#[test]
fn zero_replicas_is_stopped_and_no_pod_with_replicas_is_restarting() {
    let (w, _) = observe(
        &[deployment("otx", 0), deployment("cve", 1)],
        &[],
        &shape(None),
    );
    assert_eq!(w[0].state, WorkloadState::Stopped);
    assert_eq!(w[1].state, WorkloadState::Restarting);
    assert_eq!(w[1].restart_count, 0);
}

#[test]
fn a_terminated_container_restarts_and_keeps_its_start_time() {
    let state = json!({"name": "otx", "restartCount": 1,
        "state": {"terminated": {"startedAt": "2025-01-02T00:00:09Z", "reason": "Error", "exitCode": 2}}});
    let (w, _) = observe(
        &[deployment("otx", 1)],
        &[pod("otx-b-22222", "otx", "2025-01-02T00:00:00Z", state)],
        &shape(None),
    );
    assert_eq!(w[0].state, WorkloadState::Restarting);
    assert_eq!(w[0].waiting_reason.as_deref(), Some("Error"));
    assert_eq!(w[0].started_at.as_deref(), Some("2025-01-02T00:00:09Z"));
}

#[test]
fn pods_of_a_longer_named_deployment_are_not_mistaken_for_ours() {
    let other = pod(
        "otx-2-bbb-22222",
        "otx",
        "2025-01-02T00:00:00Z",
        running("otx", 3, "2025-01-02T00:00:05Z"),
    );
    let (w, located) = observe(&[deployment("otx", 1)], &[other], &shape(None));
    assert_eq!(w[0].state, WorkloadState::Restarting);
    assert_eq!(located["otx"].pod, None);
    assert!(is_pod_of("otx-2", "otx-2-bbb-22222"));
    assert!(!is_pod_of("otx", "otx-2-bbb-22222"));
    assert!(!is_pod_of("otx", "otx-bbb"));
}

#[test]
fn pods_without_the_deployment_selector_labels_are_ignored() {
    let mut p = pod(
        "otx-b-22222",
        "otx",
        "2025-01-02T00:00:00Z",
        running("otx", 3, "2025-01-02T00:00:05Z"),
    );
    p.metadata.labels.remove(LABEL_CONNECTOR);
    let (w, _) = observe(&[deployment("otx", 1)], &[p], &shape(None));
    assert_eq!(w[0].state, WorkloadState::Restarting);
}

#[test]
fn a_deployment_without_connector_label_is_listed_without_id() {
    let mut d = deployment("manual", 1);
    d.metadata.labels.remove(LABEL_CONNECTOR);
    d.metadata.annotations.clear();
    let (w, _) = observe(&[d], &[], &shape(None));
    assert_eq!(w[0].connector_id, None);
    assert_eq!(w[0].hash, None);
}

#[test]
fn selector_conflicts_are_recognised_from_the_api_message() {
    assert!(is_selector_conflict(
        "Invalid: Deployment.apps \"x\" is invalid: spec.selector: Invalid value: v1.LabelSelector{}: field is immutable"
    ));
    assert!(is_selector_conflict(
        "Invalid: spec.template.metadata.labels: Invalid value: map[string]string{}: `selector` does not match template `labels`"
    ));
    assert!(!is_selector_conflict(
        "Invalid: spec.template.spec.containers[0].image: Required value"
    ));
}

#[test]
fn a_pull_secret_needs_credentials_and_a_server() {
    let r = crate::config::Registry {
        server: None,
        username: Some("u".into()),
        password: Some(Secret::new("p")),
        email: None,
    };
    assert!(pull_secret(Some(&r)).is_none());
    let r = crate::config::Registry {
        server: Some("reg.example:5000".into()),
        ..r
    };
    assert_eq!(pull_secret(Some(&r)).unwrap().name, "reg-example-5000");
}

#[test]
fn the_proxy_ca_bundle_joins_inline_and_file_entries_only_with_the_proxy() {
    let file = std::env::temp_dir().join(format!("xtm-k8s-ca-{}.pem", std::process::id()));
    std::fs::write(
        &file,
        "-----BEGIN CERTIFICATE-----\nFILE\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let mut p = PlatformSettings {
        https_proxy_ca: vec![
            "-----BEGIN CERTIFICATE-----\nINLINE\n-----END CERTIFICATE-----".into(),
            file.display().to_string(),
        ],
        ..Default::default()
    };
    assert_eq!(proxy_ca_bundle(&p).unwrap(), None);
    p.with_proxy = true;
    let b = proxy_ca_bundle(&p).unwrap().unwrap();
    let (i, f) = (b.find("INLINE").unwrap(), b.find("FILE").unwrap());
    assert!(i < f);
    p.https_proxy_ca.push("/nonexistent/ca.pem".into());
    assert!(proxy_ca_bundle(&p).is_err());
}

#[test]
fn a_selector_the_new_template_would_not_match_is_reported_as_a_defect() {
    let mut old: serde_json::Value = json!({
        "metadata": {"name": "otx",
            "labels": {"opencti-manager": "m", "opencti-connector-id": "id-otx", "opencti-platform": "opencti"}},
        "spec": {"replicas": 1,
            "selector": {"matchLabels": {"opencti-manager": "m", "opencti-connector-id": "id-otx", "team": "old"}},
            "template": {"spec": {"containers": [{"name": "otx"}]}}}
    });
    let d: wire::Deployment = serde_json::from_value(old.clone()).unwrap();
    let base = json!({"spec": {"template": {"metadata": {"labels": {"team": "new"}}}}});
    let (w, _) = observe(std::slice::from_ref(&d), &[], &shape(Some(base)));
    let defect = w[0].defect.as_deref().unwrap();
    assert!(defect.contains("team=old"), "{defect}");
    // The same selector with a base that keeps team=old: refreshable.
    let base = json!({"spec": {"template": {"metadata": {"labels": {"team": "old"}}}}});
    let (w, _) = observe(std::slice::from_ref(&d), &[], &shape(Some(base)));
    assert_eq!(w[0].defect, None);
    // The existing composer's two-label selector is a subset: refreshable.
    old["spec"]["selector"]["matchLabels"] =
        json!({"opencti-manager": "m", "opencti-connector-id": "id-otx"});
    let d: wire::Deployment = serde_json::from_value(old).unwrap();
    let (w, _) = observe(&[d], &[], &shape(None));
    assert_eq!(w[0].defect, None);
}
