//! One rule of CONTRACT §8.3/§8.4 per test, plus convergence (plan → apply to
//! an in-memory world → plan again changes nothing).

use super::*;
use crate::orchestrator::{EnvValue, HASH_MARKER};
use crate::platform::ConfigEntry;
use std::time::UNIX_EPOCH;

const T0: u64 = 1_800_000_000;

fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(T0 + secs)
}

fn rfc(secs: u64) -> String {
    crate::time::format_rfc3339(at(secs))
}

fn conn(id: &str) -> Connector {
    Connector {
        id: id.into(),
        name: format!("Conn {id}"),
        image: "opencti/connector-x:6.8.0".into(),
        contract_hash: "h1".into(),
        current_status: Some(Status::Stopped),
        requested: Requested::Starting,
        config: vec![ConfigEntry {
            key: "A".into(),
            value: Some("1".into()),
            encrypted: false,
        }],
    }
}

trait ConnExt {
    fn hash(self, h: &str) -> Self;
    fn shows(self, s: Status) -> Self;
    fn wants(self, r: Requested) -> Self;
    fn named(self, n: &str) -> Self;
}

impl ConnExt for Connector {
    fn hash(mut self, h: &str) -> Self {
        self.contract_hash = h.into();
        self
    }
    fn shows(mut self, s: Status) -> Self {
        self.current_status = Some(s);
        self
    }
    fn wants(mut self, r: Requested) -> Self {
        self.requested = r;
        self
    }
    fn named(mut self, n: &str) -> Self {
        self.name = n.into();
        self
    }
}

fn desired(c: Connector) -> Desired {
    let env = vec![
        EnvVar {
            key: "A".into(),
            value: EnvValue::Plain("1".into()),
        },
        EnvVar {
            key: HASH_MARKER.into(),
            value: EnvValue::Plain(c.contract_hash.clone()),
        },
    ];
    Desired {
        connector: c,
        env: Ok(env),
    }
}

fn undeployable(c: Connector) -> Desired {
    Desired {
        connector: c,
        env: Err("key TOKEN: authentication failed".into()),
    }
}

/// The workload the composer would have made for `c`, running since `T0`.
fn workload_of(c: &Connector) -> Workload {
    Workload {
        name: expected_name(None, c),
        connector_id: Some(c.id.clone()),
        platform: Some("opencti".into()),
        hash: Some(c.contract_hash.clone()),
        state: WorkloadState::Running,
        restart_count: 0,
        started_at: Some(rfc(0)),
        waiting_reason: None,
        defect: None,
    }
}

fn stopped(mut w: Workload) -> Workload {
    w.state = WorkloadState::Stopped;
    w
}

fn run(desired: &[Desired], workloads: &[Workload], memory: &Memory, now: SystemTime) -> Plan {
    run_as(PlatformKind::OpenCti, true, desired, workloads, memory, now)
}

fn run_with(
    desired: &[Desired],
    workloads: &[Workload],
    in_flight: &[&str],
    policy: Policy,
    memory: &Memory,
    now: SystemTime,
) -> Plan {
    let in_flight: HashSet<String> = in_flight.iter().map(|s| s.to_string()).collect();
    let input = Input {
        platform: PlatformKind::OpenCti,
        name_prefix: None,
        listing_complete: true,
        desired,
        workloads,
        logs_every: Duration::from_secs(10),
        in_flight: &in_flight,
        policy,
    };
    plan(&input, memory, now)
}

fn run_as(
    platform: PlatformKind,
    complete: bool,
    desired: &[Desired],
    workloads: &[Workload],
    memory: &Memory,
    now: SystemTime,
) -> Plan {
    let input = Input {
        platform,
        name_prefix: None,
        listing_complete: complete,
        desired,
        workloads,
        logs_every: Duration::from_secs(10),
        in_flight: &HashSet::new(),
        policy: Policy::default(),
    };
    plan(&input, memory, now)
}

/// The actions that change or report something (not the timers).
fn changes(p: &Plan) -> Vec<&Action> {
    p.actions
        .iter()
        .filter(|a| {
            !matches!(
                a,
                Action::Health { .. } | Action::ShipLogs { .. } | Action::Explain { .. }
            )
        })
        .collect()
}

#[test]
fn missing_workload_is_deployed_started_and_reported() {
    let c = conn("a");
    let p = run(&[desired(c)], &[], &Memory::default(), at(5));
    match &p.actions[..] {
        [Action::Deploy { spec, report }] => {
            assert_eq!(spec.name, "conn-a");
            assert!(spec.start);
            assert_eq!(spec.hash, "h1");
            assert_eq!(spec.platform, PlatformKind::OpenCti);
            assert_eq!(*report, Some(Status::Started));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn d21_deploy_of_a_stopping_connector_reports_nothing_new() {
    let c = conn("a").wants(Requested::Stopping);
    let p = run(&[desired(c)], &[], &Memory::default(), at(5));
    assert!(matches!(&p.actions[..], [Action::Deploy { spec, report: None }] if !spec.start));
}

#[test]
fn d03_undeployable_connector_is_not_deployed_and_says_why() {
    let p = run(&[undeployable(conn("a"))], &[], &Memory::default(), at(5));
    assert!(
        matches!(&p.actions[..], [Action::Explain { id, text }] if id == "a" && text.contains("not deployable"))
    );
    assert_eq!(p.notes.len(), 1);
    assert!(p.notes[0].text.contains("not deployable"));
    assert_eq!(p.notes[0].connector.as_deref(), Some("a"));
}

#[test]
fn stopped_workload_of_a_starting_connector_is_started() {
    let c = conn("a");
    let w = stopped(workload_of(&c));
    let p = run(&[desired(c)], &[w], &Memory::default(), at(5));
    assert_eq!(
        changes(&p),
        vec![&Action::Start {
            id: "a".into(),
            name: "conn-a".into(),
            report: Some(Status::Started)
        }]
    );
}

#[test]
fn running_workload_of_a_stopping_connector_is_stopped() {
    let c = conn("a").wants(Requested::Stopping).shows(Status::Started);
    let w = workload_of(&c);
    let p = run(&[desired(c)], &[w], &Memory::default(), at(5));
    assert_eq!(
        changes(&p),
        vec![&Action::Stop {
            id: "a".into(),
            name: "conn-a".into(),
            report: Some(Status::Stopped),
            why: StopReason::Requested,
        }]
    );
}

#[test]
fn status_that_differs_from_the_platform_is_reported() {
    let c = conn("a").shows(Status::Stopped);
    let w = workload_of(&c); // running, and wanted running
    let p = run(&[desired(c)], &[w], &Memory::default(), at(5));
    assert_eq!(
        changes(&p),
        vec![&Action::Report {
            id: "a".into(),
            status: Status::Started
        }]
    );
}

#[test]
fn aligned_connector_needs_no_change() {
    let c = conn("a").shows(Status::Started);
    let w = workload_of(&c);
    let p = run(&[desired(c)], &[w], &Memory::default(), at(5));
    assert!(changes(&p).is_empty(), "{:?}", p.actions);
}

#[test]
fn restarting_workload_is_not_started_again() {
    // D5: the engine's restart policy owns restarts; the composer must not
    // restart a crashing container itself every cycle.
    let c = conn("a").shows(Status::Stopped);
    let mut w = workload_of(&c);
    w.state = WorkloadState::Restarting;
    let p = run(&[desired(c)], &[w], &Memory::default(), at(5));
    assert!(changes(&p).is_empty(), "{:?}", p.actions);
}

#[test]
fn hash_change_refreshes_and_skips_start_stop() {
    let c = conn("a").hash("h2").shows(Status::Started);
    let w = stopped(workload_of(&conn("a"))); // has h1, stopped
    let p = run(&[desired(c)], &[w], &Memory::default(), at(5));
    match &changes(&p)[..] {
        [Action::Refresh { spec, report: None }] => {
            assert_eq!(spec.hash, "h2");
            assert_eq!(spec.name, "conn-a");
            assert!(spec.start);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn missing_hash_marker_counts_as_a_change() {
    let c = conn("a").shows(Status::Started);
    let mut w = workload_of(&c);
    w.hash = None;
    let p = run(&[desired(c)], &[w], &Memory::default(), at(5));
    assert!(matches!(changes(&p)[..], [Action::Refresh { .. }]));
}

#[test]
fn undecryptable_change_neither_refreshes_nor_starts_the_old_workload() {
    let c = conn("a").hash("h2");
    let w = stopped(workload_of(&conn("a")));
    let p = run(&[undeployable(c)], &[w], &Memory::default(), at(5));
    assert!(changes(&p).is_empty(), "{:?}", p.actions);
    assert!(p.notes.iter().any(|n| n.text.contains("not refreshable")));
    // … but its logs are still shipped.
    assert!(
        p.actions
            .iter()
            .any(|a| matches!(a, Action::ShipLogs { .. }))
    );
}

#[test]
fn undecryptable_connector_with_a_current_workload_can_still_be_stopped() {
    let c = conn("a").wants(Requested::Stopping).shows(Status::Started);
    let w = workload_of(&c);
    let p = run(&[undeployable(c)], &[w], &Memory::default(), at(5));
    assert!(matches!(changes(&p)[..], [Action::Stop { .. }]));
}

#[test]
fn orphan_workload_is_removed_once_absent_for_the_grace_period() {
    let gone = workload_of(&conn("gone"));
    let c = conn("a").shows(Status::Started);
    let ws = [workload_of(&c), gone];
    let first = run(&[desired(c.clone())], &ws, &Memory::default(), at(5));
    assert!(changes(&first).is_empty(), "{:?}", first.actions);
    let early = run(&[desired(c.clone())], &ws, &first.memory, at(64));
    assert!(changes(&early).is_empty(), "{:?}", early.actions);
    let p = run(&[desired(c.clone())], &ws, &early.memory, at(65));
    assert_eq!(
        changes(&p),
        vec![&Action::Remove {
            name: "conn-gone".into(),
            id: "gone".into(),
            why: RemoveReason::Orphan
        }]
    );
}

#[test]
fn renamed_connector_gets_a_new_workload_and_the_old_one_is_removed() {
    let old = workload_of(&conn("a"));
    let c = conn("a").named("New Name").shows(Status::Started);
    let p = run(&[desired(c)], &[old], &Memory::default(), at(5));
    let ch = changes(&p);
    assert!(matches!(ch[0], Action::Deploy { spec, .. } if spec.name == "new-name"));
    assert_eq!(
        ch[1],
        &Action::Remove {
            name: "conn-a".into(),
            id: "a".into(),
            why: RemoveReason::Renamed
        }
    );
}

#[test]
fn d13_incomplete_listing_removes_nothing() {
    let gone = workload_of(&conn("gone"));
    let c = conn("a").shows(Status::Started);
    let p = run_as(
        PlatformKind::OpenCti,
        false,
        &[desired(c.clone())],
        &[workload_of(&c), gone],
        &Memory::default(),
        at(5),
    );
    assert!(changes(&p).is_empty(), "{:?}", p.actions);
    assert!(p.notes.iter().any(|n| n.text.contains("postponed")));
}

#[test]
fn d14_empty_listings_remove_only_after_the_grace_and_three_agreeing_listings() {
    let ws = [workload_of(&conn("a")), workload_of(&conn("b"))];
    // Two of two is more than half but not more than two: grace alone.
    let mut m = Memory::default();
    for t in (5..60).step_by(10) {
        let p = run(&[], &ws, &m, at(t));
        assert!(p.actions.is_empty(), "at {t}: {:?}", p.actions);
        m = p.memory;
    }
    let p = run(&[], &ws, &m, at(65));
    assert_eq!(p.actions.len(), 2, "{:?}", p.actions);
    assert!(p.actions.iter().all(|a| matches!(
        a,
        Action::Remove {
            why: RemoveReason::Orphan,
            ..
        }
    )));
}

#[test]
fn d14_a_mass_removal_waits_for_three_agreeing_listings_after_the_grace() {
    let ws: Vec<Workload> = (0..4)
        .map(|i| workload_of(&conn(&format!("c{i}"))))
        .collect();
    let mut m = run(&[], &ws, &Memory::default(), at(0)).memory;
    for (i, t) in [60, 70].into_iter().enumerate() {
        let p = run(&[], &ws, &m, at(t));
        assert!(p.actions.is_empty(), "listing {i}: {:?}", p.actions);
        assert!(
            p.notes.iter().any(|n| n.text.contains("agree")),
            "{:?}",
            p.notes
        );
        m = p.memory;
    }
    let p = run(&[], &ws, &m, at(80));
    assert_eq!(p.actions.len(), 4, "{:?}", p.actions);
}

#[test]
fn d14_a_listing_with_the_connector_in_between_resets_the_grace() {
    let ws = [workload_of(&conn("a"))];
    let first = run(&[], &ws, &Memory::default(), at(5));
    let c = conn("a").shows(Status::Started);
    let back = run(&[desired(c)], &ws, &first.memory, at(40));
    let again = run(&[], &ws, &back.memory, at(70));
    assert!(again.actions.is_empty(), "{:?}", again.actions);
    let later = run(&[], &ws, &again.memory, at(130));
    assert_eq!(later.actions.len(), 1);
}

#[test]
fn a_listing_omitting_three_of_ten_connectors_for_one_cycle_removes_nothing() {
    let cs: Vec<Connector> = (0..10)
        .map(|i| conn(&format!("c{i}")).shows(Status::Started))
        .collect();
    let ws: Vec<Workload> = cs.iter().map(workload_of).collect();
    let all: Vec<Desired> = cs.iter().cloned().map(desired).collect();
    let m = run(&all, &ws, &Memory::default(), at(0)).memory;
    let some: Vec<Desired> = cs[3..].iter().cloned().map(desired).collect();
    let p = run(&some, &ws, &m, at(10));
    assert!(changes(&p).is_empty(), "{:?}", p.actions);
    let p = run(&all, &ws, &p.memory, at(20));
    assert!(changes(&p).is_empty(), "{:?}", p.actions);
    let p = run(&some, &ws, &p.memory, at(90));
    assert!(
        changes(&p).is_empty(),
        "the grace restarts: {:?}",
        p.actions
    );
}

#[test]
fn a_rename_removes_the_old_workload_even_from_an_incomplete_listing() {
    let old = workload_of(&conn("a"));
    let c = conn("a").named("New Name").shows(Status::Started);
    let p = run_as(
        PlatformKind::OpenCti,
        false,
        &[desired(c)],
        &[old],
        &Memory::default(),
        at(5),
    );
    assert!(p.actions.iter().any(|a| matches!(
        a,
        Action::Remove {
            why: RemoveReason::Renamed,
            ..
        }
    )));
}

#[test]
fn workloads_of_the_other_platform_are_never_touched() {
    let mut aev = workload_of(&conn("x"));
    aev.platform = Some("openaev".into());
    let p = run(
        &[desired(conn("a"))],
        &[aev.clone()],
        &Memory::default(),
        at(5),
    );
    assert!(p.actions.iter().all(|a| a.connector_id() == "a"));
    // … and the OpenAEV loop leaves OpenCTI and legacy label-less workloads alone.
    let mut legacy = workload_of(&conn("y"));
    legacy.platform = None;
    let cti = workload_of(&conn("z"));
    let p = run_as(
        PlatformKind::OpenAev,
        true,
        &[],
        &[legacy.clone(), cti],
        &Memory::default(),
        at(5),
    );
    let p = run_as(
        PlatformKind::OpenAev,
        true,
        &[],
        &[legacy, workload_of(&conn("z"))],
        &p.memory,
        at(15),
    );
    assert!(p.actions.is_empty(), "{:?}", p.actions);
}

#[test]
fn legacy_workload_without_platform_label_is_adopted_by_opencti() {
    let c = conn("a").shows(Status::Started);
    let mut w = workload_of(&c);
    w.platform = None;
    let p = run(&[desired(c)], &[w], &Memory::default(), at(5));
    assert!(changes(&p).is_empty(), "{:?}", p.actions);
}

#[test]
fn workload_without_connector_label_is_ignored_with_a_warning() {
    let mut w = workload_of(&conn("a"));
    w.connector_id = None;
    w.name = "stray".into();
    let p = run(&[desired(conn("b"))], &[w], &Memory::default(), at(5));
    assert!(
        p.actions
            .iter()
            .all(|a| !matches!(a, Action::Remove { .. }))
    );
    assert!(
        p.notes
            .iter()
            .any(|n| n.level == Level::Warn && n.text.contains("stray"))
    );
}

#[test]
fn d15_two_connectors_with_one_name_deploy_once_and_report_a_collision() {
    let a = conn("a").named("Same");
    let b = conn("b").named("same");
    let p = run(&[desired(a), desired(b)], &[], &Memory::default(), at(5));
    assert_eq!(p.actions.len(), 2);
    assert!(matches!(&p.actions[0], Action::Deploy { spec, .. } if spec.connector_id == "a"));
    assert!(
        matches!(&p.actions[1], Action::Explain { id, text } if id == "b" && text.contains("collision"))
    );
    assert!(
        p.notes
            .iter()
            .any(|n| n.level == Level::Error && n.text.contains("collision"))
    );
}

#[test]
fn d15_workload_owned_by_another_connector_is_not_operated_on() {
    let owner = workload_of(&conn("a").named("Same"));
    let b = conn("b").named("Same").hash("other");
    let p = run(&[desired(b)], &[owner], &Memory::default(), at(5));
    // "a" is not in the listing, so its workload is an orphan; nothing acts on it as "b".
    assert!(p.actions.iter().all(|a| !matches!(
        a,
        Action::Refresh { .. } | Action::Start { .. } | Action::Stop { .. }
    )));
    assert!(
        p.notes
            .iter()
            .any(|n| n.text.contains("belongs to connector a"))
    );
}

#[test]
fn d01_health_is_sent_for_every_running_connector_every_30_seconds() {
    let cs: Vec<Connector> = (0..20)
        .map(|i| conn(&format!("c{i}")).shows(Status::Started))
        .collect();
    let ws: Vec<Workload> = cs.iter().map(workload_of).collect();
    let ds: Vec<Desired> = cs.into_iter().map(desired).collect();
    let health = |p: &Plan| {
        p.actions
            .iter()
            .filter(|a| matches!(a, Action::Health { .. }))
            .count()
    };
    let p1 = run(&ds, &ws, &Memory::default(), at(5));
    assert_eq!(health(&p1), 20);
    let p2 = run(&ds, &ws, &p1.memory, at(15));
    assert_eq!(health(&p2), 0);
    let p3 = run(&ds, &ws, &p2.memory, at(35));
    assert_eq!(health(&p3), 20);
}

#[test]
fn d01_logs_are_shipped_for_every_connector_every_logs_schedule() {
    let cs: Vec<Connector> = (0..20)
        .map(|i| conn(&format!("c{i}")).shows(Status::Started))
        .collect();
    let mut ws: Vec<Workload> = cs.iter().map(workload_of).collect();
    ws[3].state = WorkloadState::Stopped; // stopped workloads still have logs worth shipping
    let ds: Vec<Desired> = cs
        .into_iter()
        .map(|c| desired(c.wants(Requested::Starting)))
        .collect();
    let logs = |p: &Plan| {
        p.actions
            .iter()
            .filter(|a| matches!(a, Action::ShipLogs { .. }))
            .count()
    };
    let p1 = run(&ds, &ws, &Memory::default(), at(5));
    assert_eq!(logs(&p1), 20);
    let p2 = run(&ds, &ws, &p1.memory, at(10));
    assert_eq!(logs(&p2), 0);
    let p3 = run(&ds, &ws, &p2.memory, at(15));
    assert_eq!(logs(&p3), 20);
}

#[test]
fn failed_health_report_is_retried_next_cycle() {
    let c = conn("a").shows(Status::Started);
    let ws = [workload_of(&c)];
    let ds = [desired(c)];
    let mut p1 = run(&ds, &ws, &Memory::default(), at(5));
    p1.memory.health_failed("a");
    let p2 = run(&ds, &ws, &p1.memory, at(15));
    assert!(
        p2.actions
            .iter()
            .any(|a| matches!(a, Action::Health { .. }))
    );
}

#[test]
fn just_started_workload_reports_health_at_once() {
    let c = conn("a").shows(Status::Started);
    let ws = [workload_of(&c)];
    let p1 = run(&[desired(c.clone())], &ws, &Memory::default(), at(5));
    // The platform forgot (e.g. it was restarted) and shows stopped: just started again.
    let c2 = c.shows(Status::Stopped);
    let p2 = run(&[desired(c2)], &ws, &p1.memory, at(10));
    assert!(
        p2.actions
            .iter()
            .any(|a| matches!(a, Action::Health { .. }))
    );
}

#[test]
fn stopped_workload_sends_no_health_and_unknown_start_time_sends_none() {
    let c = conn("a").wants(Requested::Stopping);
    let p = run(
        &[desired(c.clone())],
        &[stopped(workload_of(&c))],
        &Memory::default(),
        at(5),
    );
    assert!(!p.actions.iter().any(|a| matches!(a, Action::Health { .. })));
    let mut w = workload_of(&c.clone().wants(Requested::Starting));
    w.started_at = Some("0001-01-01T00:00:00Z".into());
    let p = run(
        &[desired(c.wants(Requested::Starting))],
        &[w],
        &Memory::default(),
        at(5),
    );
    assert!(!p.actions.iter().any(|a| matches!(a, Action::Health { .. })));
}

#[test]
fn d05_reboot_loop_needs_more_than_three_restarts_within_five_minutes() {
    let c = conn("a").shows(Status::Started);
    let mut w = workload_of(&c);
    let flag = |w: &Workload, now| is_in_reboot_loop(w, now);
    w.restart_count = 3;
    assert!(!flag(&w, at(10)));
    w.restart_count = 4;
    assert!(flag(&w, at(10)));
    assert!(!flag(&w, at(301)));
    w.started_at = None;
    assert!(!flag(&w, at(10)));
    w.restart_count = 0;
    w.waiting_reason = Some("CrashLoopBackOff".into());
    assert!(flag(&w, at(10)));
}

#[test]
fn d05_restarting_workload_reports_health_with_the_reboot_loop_flag() {
    let c = conn("a").shows(Status::Started);
    let mut w = workload_of(&c);
    w.state = WorkloadState::Restarting;
    w.restart_count = 7;
    w.started_at = Some(rfc(100));
    let p = run(&[desired(c)], &[w], &Memory::default(), at(110));
    let h = p.actions.iter().find_map(|a| match a {
        Action::Health { health, .. } => Some(health.clone()),
        _ => None,
    });
    assert_eq!(
        h,
        Some(Health {
            restart_count: 7,
            started_at: rfc(100),
            is_in_reboot_loop: true
        })
    );
    assert!(p.notes.iter().any(|n| n.text.contains("reboot loop")));
}

#[test]
fn timers_of_removed_connectors_are_forgotten() {
    let c = conn("a").shows(Status::Started);
    let p1 = run(
        &[desired(c)],
        &[workload_of(&conn("a"))],
        &Memory::default(),
        at(5),
    );
    assert!(!p1.memory.last_health.is_empty());
    let p2 = run(&[desired(conn("b"))], &[], &p1.memory, at(10));
    assert!(!p2.memory.last_health.contains_key("a"));
    assert!(!p2.memory.last_logs.contains_key("a"));
}

/// Applies a plan's actions to an in-memory world, as a perfect engine and
/// platform would.
fn apply(world: &mut Vec<Workload>, cs: &mut [Connector], plan: &Plan, now: SystemTime) {
    for a in &plan.actions {
        let report = |cs: &mut [Connector], id: &str, s: Status| {
            if let Some(c) = cs.iter_mut().find(|c| c.id == id) {
                c.current_status = Some(s);
            }
        };
        match a {
            Action::Deploy { spec, report: r } | Action::Refresh { spec, report: r } => {
                world.retain(|w| w.name != spec.name);
                world.push(Workload {
                    name: spec.name.clone(),
                    connector_id: Some(spec.connector_id.clone()),
                    platform: Some(spec.platform.as_str().into()),
                    hash: Some(spec.hash.clone()),
                    state: if spec.start {
                        WorkloadState::Running
                    } else {
                        WorkloadState::Stopped
                    },
                    restart_count: 0,
                    started_at: Some(crate::time::format_rfc3339(now)),
                    waiting_reason: None,
                    defect: None,
                });
                if let Some(s) = r {
                    report(cs, &spec.connector_id, *s);
                }
            }
            Action::Start {
                id,
                name,
                report: r,
            }
            | Action::Stop {
                id,
                name,
                report: r,
                ..
            } => {
                let run = matches!(a, Action::Start { .. });
                if let Some(w) = world.iter_mut().find(|w| &w.name == name) {
                    w.state = if run {
                        WorkloadState::Running
                    } else {
                        WorkloadState::Stopped
                    };
                }
                if let Some(s) = r {
                    report(cs, id, *s);
                }
            }
            Action::Remove { name, .. } => world.retain(|w| &w.name != name),
            Action::Report { id, status } => report(cs, id, *status),
            Action::Health { .. } | Action::ShipLogs { .. } | Action::Explain { .. } => {}
        }
    }
}

#[test]
fn plan_converges_and_a_second_plan_repeats_nothing() {
    let mut cs: Vec<Connector> = (0..6).map(|i| conn(&format!("c{i}"))).collect();
    cs[1].requested = Requested::Stopping;
    cs[2].contract_hash = "h9".into();
    let mut world = vec![
        workload_of(&conn("c2")),
        workload_of(&conn("orphan")),
        stopped(workload_of(&conn("c3"))),
    ];
    let mut memory = Memory::default();
    // The orphan goes once the removal grace has passed.
    for (round, now) in [at(5), at(70), at(80)].into_iter().enumerate() {
        let ds: Vec<Desired> = cs.iter().cloned().map(desired).collect();
        let p = run(&ds, &world, &memory, now);
        if round == 2 {
            assert!(
                changes(&p).is_empty(),
                "second plan repeated work: {:?}",
                changes(&p)
            );
        }
        apply(&mut world, &mut cs, &p, now);
        memory = p.memory;
    }
    assert_eq!(world.len(), 6);
    assert!(
        world
            .iter()
            .all(|w| w.connector_id.as_deref() != Some("orphan"))
    );
    for c in &cs {
        let w = world
            .iter()
            .find(|w| w.connector_id.as_deref() == Some(c.id.as_str()))
            .unwrap();
        assert_eq!(w.hash.as_deref(), Some(c.contract_hash.as_str()));
        assert_eq!(workload_status(w), requested_status(c));
        assert_eq!(c.current_status, Some(requested_status(c)));
    }
}

#[test]
fn a_connector_with_an_action_in_flight_is_left_out_of_the_plan() {
    let busy = conn("busy")
        .wants(Requested::Stopping)
        .shows(Status::Started);
    let other = conn("other");
    let ws = [workload_of(&busy)];
    let ds = [desired(busy), desired(other)];
    let p = run_with(
        &ds,
        &ws,
        &["busy"],
        Policy::default(),
        &Memory::default(),
        at(5),
    );
    assert!(
        p.actions.iter().all(|a| a.connector_id() == "other"),
        "{:?}",
        p.actions
    );
    assert!(matches!(&p.actions[..], [Action::Deploy { .. }]));
    // Its workload is not an orphan either, whatever the listing says.
    let p = run_with(
        &[],
        &ws,
        &["busy"],
        Policy::default(),
        &Memory::default(),
        at(500),
    );
    let p = run_with(&[], &ws, &["busy"], Policy::default(), &p.memory, at(1000));
    assert!(p.actions.is_empty(), "{:?}", p.actions);
}

#[test]
fn a_connector_shown_as_null_is_reported_at_once() {
    let mut c = conn("a");
    c.current_status = None;
    let p = run(
        &[desired(c.clone())],
        &[stopped(workload_of(&c))],
        &Memory::default(),
        at(5),
    );
    assert!(p.actions.contains(&Action::Start {
        id: "a".into(),
        name: "conn-a".into(),
        report: Some(Status::Started)
    }));
    let c = c.wants(Requested::Stopping);
    let p = run(
        &[desired(c.clone())],
        &[stopped(workload_of(&c))],
        &Memory::default(),
        at(5),
    );
    assert_eq!(
        changes(&p),
        vec![&Action::Report {
            id: "a".into(),
            status: Status::Stopped
        }]
    );
}

#[test]
fn every_deploy_reports_when_the_platform_shows_null() {
    let mut c = conn("a").wants(Requested::Stopping);
    c.current_status = None;
    let p = run(&[desired(c)], &[], &Memory::default(), at(5));
    assert!(matches!(
        &p.actions[..],
        [Action::Deploy { spec, report: Some(Status::Stopped) }] if !spec.start
    ));
}

#[test]
fn backoff_doubles_from_ten_seconds_up_to_five_minutes() {
    let delays: Vec<u64> = (1..=8).map(|a| backoff_delay(a).as_secs()).collect();
    assert_eq!(delays, [10, 20, 40, 80, 160, 300, 300, 300]);
    assert_eq!(backoff_delay(u32::MAX), BACKOFF_CAP);
}

#[test]
fn a_failed_deploy_is_retried_after_its_backoff_only() {
    let c = conn("a");
    let ds = [desired(c.clone())];
    let mut m = Memory::default();
    let b = m.change_failed(
        "a",
        ActionKind::Deploy,
        Stamp::of(&c),
        "pull failed".into(),
        at(0),
    );
    assert_eq!((b.attempts, b.next_at), (1, at(10)));
    let p = run(&ds, &[], &m, at(5));
    assert!(p.actions.is_empty(), "{:?}", p.actions);
    assert!(p.notes.iter().any(|n| {
        n.level == Level::Debug
            && n.text
                .contains("deploy of a: attempt 1 failed, next in 5 s")
    }));
    let p = run(&ds, &[], &m, at(10));
    assert!(matches!(&p.actions[..], [Action::Deploy { .. }]));
    // A second failure doubles the delay.
    let b = m.change_failed(
        "a",
        ActionKind::Deploy,
        Stamp::of(&c),
        "pull failed".into(),
        at(10),
    );
    assert_eq!((b.attempts, b.next_at), (2, at(30)));
    assert!(run(&ds, &[], &m, at(29)).actions.is_empty());
    // A success ends it.
    m.change_succeeded("a");
    assert!(!run(&ds, &[], &m, at(11)).actions.is_empty());
}

#[test]
fn a_new_hash_or_a_new_requested_status_ends_the_backoff() {
    let c = conn("a");
    let mut m = Memory::default();
    m.change_failed("a", ActionKind::Deploy, Stamp::of(&c), "x".into(), at(0));
    let p = run(&[desired(c.clone().hash("h2"))], &[], &m, at(1));
    assert!(matches!(&p.actions[..], [Action::Deploy { .. }]));
    assert!(p.memory.backoff("a").is_none());
    let p = run(&[desired(c.wants(Requested::Stopping))], &[], &m, at(1));
    assert!(matches!(&p.actions[..], [Action::Deploy { .. }]));
}

#[test]
fn an_undeployable_connector_is_explained_once_per_attempt() {
    let ds = [undeployable(conn("a"))];
    let p1 = run(&ds, &[], &Memory::default(), at(0));
    assert_eq!(p1.notes[0].level, Level::Error);
    assert!(
        p1.notes[0].text.contains("attempt 1, next try in 10 s"),
        "{:?}",
        p1.notes
    );
    let explained = |p: &Plan| {
        p.actions
            .iter()
            .filter(|a| matches!(a, Action::Explain { .. }))
            .count()
    };
    assert_eq!(explained(&p1), 1);
    let p2 = run(&ds, &[], &p1.memory, at(5));
    assert_eq!(explained(&p2), 0);
    assert!(
        p2.notes.iter().all(|n| n.level == Level::Debug),
        "{:?}",
        p2.notes
    );
    let p3 = run(&ds, &[], &p2.memory, at(10));
    assert_eq!(explained(&p3), 1);
    assert!(
        p3.notes[0].text.contains("attempt 2, next try in 20 s"),
        "{:?}",
        p3.notes
    );
    match &p3.actions[0] {
        Action::Explain { text, .. } => {
            assert!(text.starts_with(NOTICE_PREFIX), "{text}");
            assert!(text.contains("key TOKEN"), "{text}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_log_snapshot_of_a_backing_off_connector_carries_the_notice() {
    let c = conn("a").shows(Status::Stopped);
    let w = stopped(workload_of(&c));
    let mut m = Memory::default();
    m.change_failed(
        "a",
        ActionKind::Start,
        Stamp::of(&c),
        "engine said no".into(),
        at(0),
    );
    let p = run(&[desired(c)], &[w], &m, at(4));
    assert!(changes(&p).is_empty(), "{:?}", p.actions);
    let notice = p.actions.iter().find_map(|a| match a {
        Action::ShipLogs { notice, .. } => notice.clone(),
        _ => None,
    });
    let notice = notice.unwrap();
    assert!(
        notice.contains("start failed (attempt 1, next try in 6 s): engine said no"),
        "{notice}"
    );
}

fn crashing(c: &Connector, restarts: u32) -> Workload {
    let mut w = workload_of(c);
    w.state = WorkloadState::Restarting;
    w.restart_count = restarts;
    w.started_at = Some(rfc(100));
    w
}

#[test]
fn the_crash_loop_policy_stops_a_looping_workload_once_and_keeps_it_stopped() {
    let c = conn("a").shows(Status::Started);
    let policy = Policy {
        crash_loop_stop_after: Some(5),
        ..Policy::default()
    };
    // Four restarts: a reboot loop, but under the limit.
    let p = run_with(
        &[desired(c.clone())],
        &[crashing(&c, 4)],
        &[],
        policy,
        &Memory::default(),
        at(110),
    );
    assert!(
        !p.actions.iter().any(|a| matches!(a, Action::Stop { .. })),
        "{:?}",
        p.actions
    );
    let p = run_with(
        &[desired(c.clone())],
        &[crashing(&c, 5)],
        &[],
        policy,
        &Memory::default(),
        at(110),
    );
    assert!(
        p.actions.contains(&Action::Stop {
            id: "a".into(),
            name: "conn-a".into(),
            report: Some(Status::Stopped),
            why: StopReason::CrashLoop {
                restarts: 5,
                limit: 5
            },
        }),
        "{:?}",
        p.actions
    );
    assert!(
        p.actions
            .iter()
            .any(|a| matches!(a, Action::Explain { text, .. } if text.contains("reboot loop")))
    );
    // Stopped now, still requested starting: not started again.
    let c = c.shows(Status::Stopped);
    let mut w = crashing(&c, 5);
    w.state = WorkloadState::Stopped;
    let p2 = run_with(
        &[desired(c.clone())],
        &[w.clone()],
        &[],
        policy,
        &p.memory,
        at(120),
    );
    assert!(changes(&p2).is_empty(), "{:?}", p2.actions);
    // The platform asks again (stop, then start): it starts.
    let p3 = run_with(
        &[desired(c.clone().wants(Requested::Stopping))],
        &[w.clone()],
        &[],
        policy,
        &p2.memory,
        at(130),
    );
    let p4 = run_with(
        &[desired(c.clone())],
        &[w.clone()],
        &[],
        policy,
        &p3.memory,
        at(140),
    );
    assert!(
        matches!(changes(&p4)[..], [Action::Start { .. }]),
        "{:?}",
        p4.actions
    );
    // A new contract refreshes it too.
    let p5 = run_with(
        &[desired(c.hash("h2"))],
        &[w],
        &[],
        policy,
        &p2.memory,
        at(140),
    );
    assert!(
        matches!(changes(&p5)[..], [Action::Refresh { .. }]),
        "{:?}",
        p5.actions
    );
}

#[test]
fn without_the_crash_loop_policy_a_looping_workload_is_left_to_its_engine() {
    let c = conn("a").shows(Status::Stopped);
    let p = run(
        &[desired(c.clone())],
        &[crashing(&c, 50)],
        &Memory::default(),
        at(110),
    );
    assert!(changes(&p).is_empty(), "{:?}", p.actions);
}

#[test]
fn every_action_says_why() {
    let c = conn("a");
    let stop = Action::Stop {
        id: "a".into(),
        name: "conn-a".into(),
        report: None,
        why: StopReason::CrashLoop {
            restarts: 7,
            limit: 5,
        },
    };
    assert_eq!(
        stop.reason(),
        "reboot loop: 7 restarts, crash_loop.stop_after is 5"
    );
    let p = run(&[desired(c)], &[], &Memory::default(), at(5));
    assert_eq!(p.actions[0].reason(), "no workload");
    assert_eq!(p.actions[0].kind(), ActionKind::Deploy);
}

#[test]
fn a_defective_workload_is_removed_and_deployed_again_not_refreshed() {
    let c = conn("a").hash("h2").shows(Status::Started);
    let mut w = workload_of(&conn("a"));
    w.defect = Some("its selector has team=old that the new template would not carry".into());
    let p = run(&[desired(c)], &[w], &Memory::default(), at(5));
    match &changes(&p)[..] {
        [
            Action::Remove {
                name,
                why: RemoveReason::Defective,
                ..
            },
            Action::Deploy { spec, report: None },
        ] => {
            assert_eq!((name.as_str(), spec.name.as_str()), ("conn-a", "conn-a"));
            assert_eq!(spec.hash, "h2");
        }
        other => panic!("{other:?}"),
    }
    assert!(p.notes.iter().any(|n| n.text.contains("team=old")));
}

#[test]
fn a_workload_that_died_behind_our_back_is_reported_stopped_then_started() {
    let c = conn("a").shows(Status::Started);
    let w = stopped(workload_of(&c));
    let p = run(&[desired(c)], &[w], &Memory::default(), at(5));
    assert_eq!(
        changes(&p),
        vec![
            &Action::Report {
                id: "a".into(),
                status: Status::Stopped
            },
            &Action::Start {
                id: "a".into(),
                name: "conn-a".into(),
                report: Some(Status::Started)
            }
        ]
    );
}

#[test]
fn health_is_sent_at_once_when_the_restart_count_or_start_time_moves() {
    let c = conn("a").shows(Status::Started);
    let w = workload_of(&c);
    let health = |p: &Plan| {
        p.actions
            .iter()
            .filter(|a| matches!(a, Action::Health { .. }))
            .count()
    };
    let p1 = run(
        &[desired(c.clone())],
        std::slice::from_ref(&w),
        &Memory::default(),
        at(5),
    );
    assert_eq!(health(&p1), 1);
    let p2 = run(
        &[desired(c.clone())],
        std::slice::from_ref(&w),
        &p1.memory,
        at(7),
    );
    assert_eq!(health(&p2), 0, "not due, nothing moved");
    let mut restarted = w;
    restarted.restart_count = 1;
    restarted.started_at = Some(rfc(6));
    let p3 = run(&[desired(c)], &[restarted], &p2.memory, at(8));
    assert_eq!(health(&p3), 1, "{:?}", p3.actions);
}
