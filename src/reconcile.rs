//! The planner: what the platform wants + what the orchestrator has + memory +
//! now → an ordered list of fully specified actions (CONTRACT §8.3, §8.4).
//! Pure: no clock, no I/O, no logging; problems come back as `Note`s for the
//! shell to log. The executor (`engine`) makes one attempt per action.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, SystemTime};

use crate::names::workload_name;
use crate::orchestrator::{EnvVar, Spec, Workload, WorkloadState};
use crate::platform::{Connector, Health, PlatformKind, Requested, Status};

/// Health is re-sent this often per running connector; OpenCTI drops it after 300 s.
pub const HEALTH_EVERY: Duration = Duration::from_secs(30);
/// §8.4: more than this many restarts …
pub const REBOOT_LOOP_RESTARTS: u32 = 3;
/// … within this time of the last start is a reboot loop.
pub const REBOOT_LOOP_WINDOW: Duration = Duration::from_secs(300);
/// Log lines shipped per snapshot (§8.5).
pub const LOG_TAIL: u32 = 100;

/// A connector and its resolved environment. `env` is `Err(reason)` when a
/// value could not be decrypted: the connector is then not deployable this
/// cycle (§4.4 step 8); the reason names the key, never the value.
#[derive(Debug, Clone)]
pub struct Desired {
    pub connector: Connector,
    pub env: Result<Vec<EnvVar>, String>,
}

/// Everything `plan` looks at besides memory and time.
#[derive(Debug, Clone, Copy)]
pub struct Input<'a> {
    pub platform: PlatformKind,
    pub name_prefix: Option<&'a str>,
    /// False when the listing had invalid entries or errors: no removal then (D13).
    pub listing_complete: bool,
    pub desired: &'a [Desired],
    /// Every workload of this manager, all platforms.
    pub workloads: &'a [Workload],
    /// `{p}.logs_schedule`.
    pub logs_every: Duration,
}

/// What the planner remembers between cycles: per-connector timers (D1) and
/// the empty-listing streak (D14).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Memory {
    last_health: HashMap<String, SystemTime>,
    last_logs: HashMap<String, SystemTime>,
    empty_listings: u32,
}

impl Memory {
    /// Forgets that health was sent, so the next cycle sends it again
    /// (called by the executor when the report failed).
    pub fn health_failed(&mut self, id: &str) {
        self.last_health.remove(id);
    }

    /// Forgets that logs were shipped, so the next cycle ships them again.
    pub fn logs_failed(&mut self, id: &str) {
        self.last_logs.remove(id);
    }
}

/// Why a workload is removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemoveReason {
    /// Its connector is no longer in the listing.
    Orphan,
    /// Its connector now maps to another name.
    Renamed,
}

/// One thing to do. Actions that change a workload carry the status to report
/// once they succeed (`None` when the platform already shows it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Deploy {
        spec: Spec,
        report: Option<Status>,
    },
    Refresh {
        spec: Spec,
        report: Option<Status>,
    },
    Start {
        id: String,
        name: String,
        report: Option<Status>,
    },
    Stop {
        id: String,
        name: String,
        report: Option<Status>,
    },
    Remove {
        name: String,
        id: String,
        why: RemoveReason,
    },
    Report {
        id: String,
        status: Status,
    },
    Health {
        id: String,
        health: Health,
    },
    ShipLogs {
        id: String,
        name: String,
    },
}

impl Action {
    /// The connector the action is about.
    pub fn connector_id(&self) -> &str {
        match self {
            Action::Deploy { spec, .. } | Action::Refresh { spec, .. } => &spec.connector_id,
            Action::Start { id, .. }
            | Action::Stop { id, .. }
            | Action::Remove { id, .. }
            | Action::Report { id, .. }
            | Action::Health { id, .. }
            | Action::ShipLogs { id, .. } => id,
        }
    }
}

/// How loud a note is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Error,
    Warn,
    Info,
}

/// Something the operator should hear about that is not an action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    pub level: Level,
    pub connector: Option<String>,
    pub text: String,
}

/// The planner's output: actions in order, notes, and the memory for next cycle
/// (as if every action succeeds; the executor corrects failed reports).
#[derive(Debug, Clone, Default)]
pub struct Plan {
    pub actions: Vec<Action>,
    pub notes: Vec<Note>,
    pub memory: Memory,
}

impl Plan {
    fn note(&mut self, level: Level, connector: Option<&str>, text: String) {
        self.notes.push(Note {
            level,
            connector: connector.map(str::to_string),
            text,
        });
    }
}

/// The composer status a workload shows (§5.7).
pub fn workload_status(w: &Workload) -> Status {
    match w.state {
        WorkloadState::Running => Status::Started,
        WorkloadState::Restarting | WorkloadState::Stopped => Status::Stopped,
    }
}

/// §8.4: more than 3 restarts and started less than 5 minutes ago, or an engine
/// that says it is backing off (Kubernetes `CrashLoopBackOff` and friends).
pub fn is_in_reboot_loop(w: &Workload, now: SystemTime) -> bool {
    if w.waiting_reason.is_some() {
        return true;
    }
    let recent = w
        .started_at
        .as_deref()
        .and_then(crate::time::parse_rfc3339)
        .is_some_and(|t| now.duration_since(t).unwrap_or(Duration::ZERO) < REBOOT_LOOP_WINDOW);
    w.restart_count > REBOOT_LOOP_RESTARTS && recent
}

/// Whether a workload belongs to this platform's loop. Workloads without a
/// platform label predate it and are OpenCTI's (§5.2).
fn is_ours(w: &Workload, platform: PlatformKind) -> bool {
    match w.platform.as_deref() {
        Some(p) => p == platform.as_str(),
        None => platform == PlatformKind::OpenCti,
    }
}

/// The expected workload name of a connector; a name of only symbols falls back
/// to one made from its id, so it still deploys.
pub fn expected_name(prefix: Option<&str>, c: &Connector) -> String {
    workload_name(prefix, &c.name)
        .or_else(|| workload_name(prefix, &format!("connector-{}", c.id)))
        .unwrap_or_else(|| "connector".to_string())
}

/// Plans one cycle. See the module doc; each rule is a test below.
pub fn plan(input: &Input, memory: &Memory, now: SystemTime) -> Plan {
    let mut plan = Plan {
        memory: memory.clone(),
        ..Plan::default()
    };
    let by_name: HashMap<&str, &Workload> = input
        .workloads
        .iter()
        .map(|w| (w.name.as_str(), w))
        .collect();
    let mut claimed: HashMap<String, &str> = HashMap::new();
    let mut expected: HashMap<&str, String> = HashMap::new();

    for d in input.desired {
        let c = &d.connector;
        let name = expected_name(input.name_prefix, c);
        expected.insert(c.id.as_str(), name.clone());
        if let Some(first) = claimed.get(&name) {
            let text = format!(
                "name collision: connectors {first} and {} both map to workload {name}; {} is skipped",
                c.id, c.id
            );
            plan.note(Level::Error, Some(&c.id), text);
            continue;
        }
        match by_name.get(name.as_str()) {
            Some(w) if w.connector_id.as_deref() != Some(&c.id) || !is_ours(w, input.platform) => {
                let owner = w.connector_id.as_deref().unwrap_or("(none)");
                let text = format!(
                    "name collision: workload {name} belongs to connector {owner} ({}), not to {}; left untouched",
                    w.platform.as_deref().unwrap_or("opencti"),
                    c.id
                );
                plan.note(Level::Error, Some(&c.id), text);
            }
            Some(w) => {
                claimed.insert(name.clone(), &c.id);
                plan_existing(&mut plan, input, d, w, now);
            }
            None => {
                claimed.insert(name.clone(), &c.id);
                plan_missing(&mut plan, input, d, name);
            }
        }
    }
    plan_cleanup(&mut plan, input, &expected);
    let live: HashSet<&str> = input
        .desired
        .iter()
        .map(|d| d.connector.id.as_str())
        .collect();
    plan.memory
        .last_health
        .retain(|id, _| live.contains(id.as_str()));
    plan.memory
        .last_logs
        .retain(|id, _| live.contains(id.as_str()));
    plan
}

fn spec_for(platform: PlatformKind, d: &Desired, env: &[EnvVar], name: String) -> Spec {
    let c = &d.connector;
    Spec {
        name,
        connector_id: c.id.clone(),
        platform,
        image: c.image.clone(),
        hash: c.contract_hash.clone(),
        env: env.to_vec(),
        start: c.requested == Requested::Starting,
    }
}

fn report_if_changed(platform_status: Status, now: Status) -> Option<Status> {
    (platform_status != now).then_some(now)
}

fn requested_status(c: &Connector) -> Status {
    match c.requested {
        Requested::Starting => Status::Started,
        Requested::Stopping => Status::Stopped,
    }
}

fn plan_missing(plan: &mut Plan, input: &Input, d: &Desired, name: String) {
    let c = &d.connector;
    match &d.env {
        Err(why) => plan.note(
            Level::Error,
            Some(&c.id),
            format!("not deployable this cycle: {why}"),
        ),
        Ok(env) => {
            let report = report_if_changed(c.current_status, requested_status(c));
            let spec = spec_for(input.platform, d, env, name);
            plan.actions.push(Action::Deploy { spec, report });
        }
    }
}

fn plan_existing(plan: &mut Plan, input: &Input, d: &Desired, w: &Workload, now: SystemTime) {
    let c = &d.connector;
    let shown = workload_status(w);
    let stale = w.hash.as_deref() != Some(c.contract_hash.as_str());
    match (&d.env, stale) {
        (Ok(env), true) => {
            let report = report_if_changed(c.current_status, requested_status(c));
            let spec = spec_for(input.platform, d, env, w.name.clone());
            plan.actions.push(Action::Refresh { spec, report });
            // Start/stop would act on the workload that was just replaced (existing
            // composer decides from the state read before the refresh).
            plan_logs(plan, input, c, w, now);
            return;
        }
        (Err(why), true) => {
            let text = format!("configuration changed but not refreshable this cycle: {why}");
            plan.note(Level::Error, Some(&c.id), text);
        }
        _ => {}
    }
    let (id, name) = (c.id.clone(), w.name.clone());
    match (c.requested, w.state) {
        // A pending refresh that cannot be done must not start the outdated workload.
        (Requested::Starting, WorkloadState::Stopped) if !stale => {
            let report = report_if_changed(c.current_status, Status::Started);
            plan.actions.push(Action::Start { id, name, report });
        }
        (Requested::Stopping, WorkloadState::Running | WorkloadState::Restarting) => {
            let report = report_if_changed(c.current_status, Status::Stopped);
            plan.actions.push(Action::Stop { id, name, report });
        }
        _ if shown != c.current_status => plan.actions.push(Action::Report { id, status: shown }),
        _ => {}
    }
    plan_health(plan, c, w, now);
    plan_logs(plan, input, c, w, now);
}

fn plan_health(plan: &mut Plan, c: &Connector, w: &Workload, now: SystemTime) {
    let active = w.state != WorkloadState::Stopped || w.waiting_reason.is_some();
    let Some(started_at) = w.started_at.clone() else {
        return;
    };
    if !active || crate::time::parse_rfc3339(&started_at).is_none() {
        return;
    }
    let just_started = workload_status(w) == Status::Started && c.current_status == Status::Stopped;
    let due = plan
        .memory
        .last_health
        .get(&c.id)
        .is_none_or(|t| now.duration_since(*t).unwrap_or(Duration::ZERO) >= HEALTH_EVERY);
    if just_started || due {
        let health = Health {
            restart_count: w.restart_count,
            started_at,
            is_in_reboot_loop: is_in_reboot_loop(w, now),
        };
        if health.is_in_reboot_loop {
            let why = w.waiting_reason.as_deref().unwrap_or("restarting");
            let text = format!(
                "workload {} is in a reboot loop ({} restarts, {why})",
                w.name, w.restart_count
            );
            plan.note(Level::Warn, Some(&c.id), text);
        }
        plan.memory.last_health.insert(c.id.clone(), now);
        plan.actions.push(Action::Health {
            id: c.id.clone(),
            health,
        });
    }
}

fn plan_logs(plan: &mut Plan, input: &Input, c: &Connector, w: &Workload, now: SystemTime) {
    let due = plan
        .memory
        .last_logs
        .get(&c.id)
        .is_none_or(|t| now.duration_since(*t).unwrap_or(Duration::ZERO) >= input.logs_every);
    if due {
        plan.memory.last_logs.insert(c.id.clone(), now);
        plan.actions.push(Action::ShipLogs {
            id: c.id.clone(),
            name: w.name.clone(),
        });
    }
}

fn plan_cleanup(plan: &mut Plan, input: &Input, expected: &HashMap<&str, String>) {
    let mut removals = Vec::new();
    for w in input.workloads {
        let Some(id) = w.connector_id.as_deref() else {
            let text = format!(
                "workload {} has no opencti-connector-id label; ignored",
                w.name
            );
            plan.note(Level::Warn, None, text);
            continue;
        };
        if !is_ours(w, input.platform) {
            continue;
        }
        let why = match expected.get(id) {
            None => RemoveReason::Orphan,
            Some(name) if *name != w.name => RemoveReason::Renamed,
            Some(_) => continue,
        };
        removals.push(Action::Remove {
            name: w.name.clone(),
            id: id.to_string(),
            why,
        });
    }
    if !input.listing_complete {
        plan.memory.empty_listings = 0;
        if !removals.is_empty() {
            let text = format!(
                "listing incomplete: {} removal(s) postponed",
                removals.len()
            );
            plan.note(Level::Warn, None, text);
        }
        return;
    }
    if !input.desired.is_empty() {
        plan.memory.empty_listings = 0;
    } else if !removals.is_empty() {
        plan.memory.empty_listings = plan.memory.empty_listings.saturating_add(1);
        // D14: one empty answer (platform restarting, permissions changing) must
        // not wipe every connector; a second consecutive one is believed.
        if plan.memory.empty_listings < 2 {
            let text = format!(
                "listing is empty while {} workload(s) exist: removal waits for a second empty listing",
                removals.len()
            );
            plan.note(Level::Warn, None, text);
            return;
        }
    }
    plan.actions.extend(removals);
}

#[cfg(test)]
mod tests;
