use std::time::{Duration, SystemTime};

use super::*;
use crate::platform::{Connector, Requested};
use crate::reconcile::{Backoff, Stamp};

fn view(id: &str, actual: &'static str, backoff: Option<Backoff>) -> ConnectorView {
    ConnectorView {
        id: id.into(),
        name: format!("Connector {id}"),
        workload: format!("connector-{id}"),
        requested: Requested::Starting,
        platform_status: None,
        actual,
        restart_count: 0,
        problem: None,
        backoff,
    }
}

fn failing(now: SystemTime) -> Backoff {
    Backoff {
        kind: ActionKind::Deploy,
        attempts: 2,
        next_at: now + Duration::from_secs(40),
        stamp: Stamp {
            hash: "h".into(),
            requested: Requested::Starting,
        },
        error: "image missing".into(),
    }
}

#[test]
fn the_summary_counts_states_and_names_the_failing_change() {
    let now = SystemTime::now();
    let cs = vec![
        view("a", "running", None),
        view("b", "running", None),
        view("c", "stopped", None),
        view("d", "missing", Some(failing(now))),
    ];
    let (key, line) = summary(PlatformKind::OpenCti, &cs, now);
    assert_eq!(
        line,
        "opencti: 4 connectors: 2 running, 1 stopped, 1 failing (deploy, next try in 40 s)"
    );
    // The key ignores timings: a later cycle with the same picture says nothing.
    let (later, _) = summary(PlatformKind::OpenCti, &cs, now + Duration::from_secs(5));
    assert_eq!(key, later);
    let (changed, _) = summary(PlatformKind::OpenCti, &cs[..3], now);
    assert_ne!(key, changed);
}

#[test]
fn views_match_workloads_by_expected_name_and_owner() {
    let c = Connector {
        id: "c1".into(),
        name: "My Conn".into(),
        image: "img".into(),
        contract_hash: "h".into(),
        current_status: None,
        requested: Requested::Starting,
        config: Vec::new(),
    };
    let desired = vec![Desired {
        connector: c,
        env: Ok(Vec::new()),
    }];
    let w = Workload {
        name: "my-conn".into(),
        connector_id: Some("c1".into()),
        platform: Some("opencti".into()),
        hash: Some("h".into()),
        state: WorkloadState::Running,
        restart_count: 3,
        started_at: None,
        waiting_reason: None,
        defect: None,
    };
    let memory = Memory::default();
    let seen = Seen {
        desired: &desired,
        workloads: std::slice::from_ref(&w),
        memory: &memory,
        name_prefix: None,
    };
    let v = views(PlatformKind::OpenCti, &seen);
    assert_eq!((v[0].actual, v[0].restart_count), ("running", 3));
    let v = views(PlatformKind::OpenAev, &seen);
    assert_eq!(v[0].actual, "missing");
}

#[test]
fn the_exposition_has_help_and_type_for_every_family_and_escapes_labels() {
    let mut s = Snapshot::default();
    let mut p = PlatformView::default();
    p.connectors.push(view("a\"b", "running", None));
    p.listing_ok = Some(true);
    s.platforms.insert("opencti", p);
    let mut h = Histogram::default();
    h.observe(0.3);
    h.observe(42.0);
    s.actions.insert(("opencti", "deploy", "ok"), h);
    let text = render::metrics(&s, Some(&process::read()));
    for family in [
        "xtm_composer_build_info",
        "xtm_composer_platform_up",
        "xtm_composer_connectors",
        "xtm_composer_actions_total",
        "xtm_composer_action_duration_seconds",
        "process_resident_memory_bytes",
    ] {
        assert!(
            text.contains(&format!("# TYPE {family} ")),
            "{family}:\n{text}"
        );
    }
    assert!(text.contains(
        "xtm_composer_action_duration_seconds_bucket{platform=\"opencti\",kind=\"deploy\",outcome=\"ok\",le=\"0.5\"} 1"
    ));
    assert!(text.contains(
        "xtm_composer_action_duration_seconds_bucket{platform=\"opencti\",kind=\"deploy\",outcome=\"ok\",le=\"+Inf\"} 2"
    ));
    assert!(text.contains(
        "xtm_composer_connectors{platform=\"opencti\",requested=\"starting\",actual=\"running\"} 1"
    ));
    // Escaping, for ids that reach /status (names never reach a label).
    let st = render::status(&s, SystemTime::now());
    assert_eq!(st["connectors"][0]["id"], "a\"b");
}

#[test]
fn readiness_needs_registration_and_a_good_listing_on_every_platform() {
    let mut s = Snapshot::default();
    assert!(render::ready(&s).is_err());
    let alive = Arc::new(alive::Shared::default());
    let p = PlatformView {
        alive: Some(Arc::clone(&alive)),
        ..PlatformView::default()
    };
    s.platforms.insert("opencti", p);
    assert!(
        render::ready(&s)
            .unwrap_err()
            .contains("opencti: not registered")
    );
    alive.set_registered(true);
    assert!(render::ready(&s).unwrap_err().contains("no listing yet"));
    s.platforms.get_mut("opencti").unwrap().listing_ok = Some(true);
    assert!(render::ready(&s).is_ok());
    s.platforms.get_mut("opencti").unwrap().listing_ok = Some(false);
    assert!(
        render::ready(&s)
            .unwrap_err()
            .contains("last listing failed")
    );
}
