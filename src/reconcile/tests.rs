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
        current_status: Status::Stopped,
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
        self.current_status = s;
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
    }
}

fn stopped(mut w: Workload) -> Workload {
    w.state = WorkloadState::Stopped;
    w
}

fn run(desired: &[Desired], workloads: &[Workload], memory: &Memory, now: SystemTime) -> Plan {
    run_as(PlatformKind::OpenCti, true, desired, workloads, memory, now)
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
    };
    plan(&input, memory, now)
}

/// The actions that change or report something (not the timers).
fn changes(p: &Plan) -> Vec<&Action> {
    p.actions
        .iter()
        .filter(|a| !matches!(a, Action::Health { .. } | Action::ShipLogs { .. }))
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
    assert!(p.actions.is_empty());
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
            report: Some(Status::Stopped)
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
fn orphan_workload_is_removed() {
    let gone = workload_of(&conn("gone"));
    let c = conn("a").shows(Status::Started);
    let p = run(
        &[desired(c.clone())],
        &[workload_of(&c), gone],
        &Memory::default(),
        at(5),
    );
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
fn d14_empty_listing_removes_nothing_until_confirmed_by_a_second_one() {
    let ws = [workload_of(&conn("a")), workload_of(&conn("b"))];
    let first = run(&[], &ws, &Memory::default(), at(5));
    assert!(first.actions.is_empty());
    assert!(
        first
            .notes
            .iter()
            .any(|n| n.text.contains("second empty listing"))
    );
    let second = run(&[], &ws, &first.memory, at(15));
    assert_eq!(second.actions.len(), 2);
    assert!(second.actions.iter().all(|a| matches!(
        a,
        Action::Remove {
            why: RemoveReason::Orphan,
            ..
        }
    )));
}

#[test]
fn d14_a_non_empty_listing_in_between_resets_the_confirmation() {
    let ws = [workload_of(&conn("a"))];
    let first = run(&[], &ws, &Memory::default(), at(5));
    let c = conn("a").shows(Status::Started);
    let back = run(&[desired(c)], &ws, &first.memory, at(15));
    let again = run(&[], &ws, &back.memory, at(25));
    assert!(again.actions.is_empty());
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
    assert_eq!(p.actions.len(), 1);
    assert!(matches!(&p.actions[0], Action::Deploy { spec, .. } if spec.connector_id == "a"));
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
                c.current_status = s;
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
            Action::Health { .. } | Action::ShipLogs { .. } => {}
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
    for (round, now) in [at(5), at(15)].into_iter().enumerate() {
        let ds: Vec<Desired> = cs.iter().cloned().map(desired).collect();
        let p = run(&ds, &world, &memory, now);
        if round == 1 {
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
        assert_eq!(c.current_status, requested_status(c));
    }
}
