//! The planner: what the platform wants + what the orchestrator has + memory +
//! now → an ordered list of fully specified actions (CONTRACT §8.3, §8.4).
//! Pure: no clock, no I/O, no logging; problems come back as `Note`s for the
//! shell to log. Memory carries per-connector timers, backoff after failures,
//! the crash-loop stops and the evidence needed before a removal.

use std::collections::{HashMap, HashSet};
use std::fmt;
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
/// First retry delay after a failed attempt; doubled per attempt …
pub const BACKOFF_FIRST: Duration = Duration::from_secs(10);
/// … up to this.
pub const BACKOFF_CAP: Duration = Duration::from_secs(300);
/// Consecutive complete listings that must agree before more than half of a
/// platform's workloads are removed at once.
pub const MASS_REMOVAL_LISTINGS: u32 = 3;
/// Marks the lines the composer adds to a connector's logs.
pub const NOTICE_PREFIX: &str = "[xtm-composer]";

/// A connector and its resolved environment. `env` is `Err(reason)` when a
/// value could not be decrypted: the connector is then not deployable this
/// cycle (§4.4 step 8); the reason names the key, never the value.
#[derive(Debug, Clone)]
pub struct Desired {
    pub connector: Connector,
    pub env: Result<Vec<EnvVar>, String>,
}

/// Operator choices the planner applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// A workload is removed only after its connector was absent from complete
    /// listings spanning this long (`manager.removal_grace`).
    pub removal_grace: Duration,
    /// A workload in a reboot loop with at least this many restarts is stopped
    /// (`manager.crash_loop.stop_after`); `None` = never.
    pub crash_loop_stop_after: Option<u32>,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            removal_grace: Duration::from_secs(60),
            crash_loop_stop_after: None,
        }
    }
}

/// Everything `plan` looks at besides memory and time.
#[derive(Debug, Clone, Copy)]
pub struct Input<'a> {
    pub platform: PlatformKind,
    pub name_prefix: Option<&'a str>,
    /// False when the listing had invalid entries or errors: no orphan removal then (D13).
    pub listing_complete: bool,
    pub desired: &'a [Desired],
    /// Every workload of this manager, all platforms.
    pub workloads: &'a [Workload],
    /// `{p}.logs_schedule`.
    pub logs_every: Duration,
    /// Connectors with actions still running: left out of this plan entirely.
    pub in_flight: &'a HashSet<String>,
    pub policy: Policy,
}

/// The kind of an action, for backoff, logs and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ActionKind {
    Deploy,
    Refresh,
    Start,
    Stop,
    Remove,
    Report,
    Health,
    ShipLogs,
    Explain,
}

impl ActionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ActionKind::Deploy => "deploy",
            ActionKind::Refresh => "refresh",
            ActionKind::Start => "start",
            ActionKind::Stop => "stop",
            ActionKind::Remove => "remove",
            ActionKind::Report => "report",
            ActionKind::Health => "health",
            ActionKind::ShipLogs => "logs",
            ActionKind::Explain => "explain",
        }
    }

    /// The verb for a done action's log line.
    pub fn past(self) -> &'static str {
        match self {
            ActionKind::Deploy => "deployed",
            ActionKind::Refresh => "refreshed",
            ActionKind::Start => "started",
            ActionKind::Stop => "stopped",
            ActionKind::Remove => "removed",
            ActionKind::Report => "reported",
            ActionKind::Health => "sent health of",
            ActionKind::ShipLogs => "shipped logs of",
            ActionKind::Explain => "explained",
        }
    }

    /// Actions that change a workload: their failures back off.
    pub fn changes_workload(self) -> bool {
        matches!(
            self,
            ActionKind::Deploy
                | ActionKind::Refresh
                | ActionKind::Start
                | ActionKind::Stop
                | ActionKind::Remove
        )
    }
}

impl fmt::Display for ActionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a connector looked like when an attempt was planned: a backoff or a
/// crash-loop stop holds only while the platform still asks the same.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stamp {
    pub hash: String,
    pub requested: Requested,
}

impl Stamp {
    pub fn of(c: &Connector) -> Stamp {
        Stamp {
            hash: c.contract_hash.clone(),
            requested: c.requested,
        }
    }
}

/// Failed attempts of one connector's change, and when to try again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backoff {
    pub kind: ActionKind,
    pub attempts: u32,
    pub next_at: SystemTime,
    pub stamp: Stamp,
    /// The last error, naming no secret; also shipped to the connector's logs.
    pub error: String,
}

/// The delay after `attempts` failures: 10 s, 20 s, 40 s … 300 s.
pub fn backoff_delay(attempts: u32) -> Duration {
    crate::time::doubling(BACKOFF_FIRST, attempts, BACKOFF_CAP)
}

/// What the planner remembers between cycles: per-connector timers (D1),
/// backoff, crash-loop stops, and removal evidence (D14).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Memory {
    last_health: HashMap<String, SystemTime>,
    /// The restart count and start time each connector's health last carried:
    /// a change is sent at once (a crash behind the composer's back).
    health_sent: HashMap<String, (u32, String)>,
    last_logs: HashMap<String, SystemTime>,
    backoff: HashMap<String, Backoff>,
    /// Connectors stopped by the crash-loop policy, with what the platform asked then.
    crash_stopped: HashMap<String, Stamp>,
    /// Workload name → first complete listing its connector was missing from.
    absent_since: HashMap<String, SystemTime>,
    /// Consecutive complete listings that would remove more than half the workloads.
    mass_removal_listings: u32,
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

    /// Records a failed change: returns the attempt number and the retry time.
    pub fn change_failed(
        &mut self,
        id: &str,
        kind: ActionKind,
        stamp: Stamp,
        error: String,
        now: SystemTime,
    ) -> &Backoff {
        let attempts = match self.backoff.get(id) {
            Some(b) if b.stamp == stamp && b.kind == kind => b.attempts.saturating_add(1),
            _ => 1,
        };
        let b = Backoff {
            kind,
            attempts,
            next_at: now + backoff_delay(attempts),
            stamp,
            error,
        };
        self.backoff.insert(id.to_string(), b);
        &self.backoff[id]
    }

    /// A change of this connector succeeded: its backoff is over.
    pub fn change_succeeded(&mut self, id: &str) {
        self.backoff.remove(id);
    }

    /// The connector's current backoff, if any.
    pub fn backoff(&self, id: &str) -> Option<&Backoff> {
        self.backoff.get(id)
    }

    /// Every connector currently backing off.
    pub fn backoffs(&self) -> impl Iterator<Item = (&String, &Backoff)> {
        self.backoff.iter()
    }
}

/// Why a workload is removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemoveReason {
    /// Its connector is no longer in the listing.
    Orphan,
    /// Its connector now maps to another name.
    Renamed,
    /// The orchestrator reported it cannot be brought to its spec in place;
    /// it is deployed again right after.
    Defective,
}

/// Why a workload is stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// The platform asks for it.
    Requested,
    /// The crash-loop policy: `restarts` ≥ `limit` in a reboot loop.
    CrashLoop { restarts: u32, limit: u32 },
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
        why: StopReason,
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
    /// Ship the workload's last lines, after `notice` (the composer's own word
    /// about this connector, when it has one).
    ShipLogs {
        id: String,
        name: String,
        notice: Option<String>,
    },
    /// Tell the platform, through the connector's logs, why it does not run.
    Explain {
        id: String,
        text: String,
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
            | Action::ShipLogs { id, .. }
            | Action::Explain { id, .. } => id,
        }
    }

    pub fn kind(&self) -> ActionKind {
        match self {
            Action::Deploy { .. } => ActionKind::Deploy,
            Action::Refresh { .. } => ActionKind::Refresh,
            Action::Start { .. } => ActionKind::Start,
            Action::Stop { .. } => ActionKind::Stop,
            Action::Remove { .. } => ActionKind::Remove,
            Action::Report { .. } => ActionKind::Report,
            Action::Health { .. } => ActionKind::Health,
            Action::ShipLogs { .. } => ActionKind::ShipLogs,
            Action::Explain { .. } => ActionKind::Explain,
        }
    }

    /// Why the planner chose it, for the log line of its outcome.
    pub fn reason(&self) -> String {
        match self {
            Action::Deploy { .. } => "no workload".into(),
            Action::Refresh { .. } => "contract hash changed".into(),
            Action::Start { .. } => "requested starting".into(),
            Action::Stop {
                why: StopReason::Requested,
                ..
            } => "requested stopping".into(),
            Action::Stop {
                why: StopReason::CrashLoop { restarts, limit },
                ..
            } => format!("reboot loop: {restarts} restarts, crash_loop.stop_after is {limit}"),
            Action::Remove {
                why: RemoveReason::Orphan,
                ..
            } => "connector no longer listed".into(),
            Action::Remove {
                why: RemoveReason::Renamed,
                ..
            } => "connector renamed".into(),
            Action::Remove {
                why: RemoveReason::Defective,
                ..
            } => "cannot be refreshed in place; deployed again".into(),
            Action::Report { .. } => "platform shows another status".into(),
            Action::Health { .. } => "health due".into(),
            Action::ShipLogs { .. } => "logs due".into(),
            Action::Explain { .. } => "connector cannot run".into(),
        }
    }

    /// The workload the action is about, when there is one.
    pub fn workload(&self) -> Option<&str> {
        match self {
            Action::Deploy { spec, .. } | Action::Refresh { spec, .. } => Some(&spec.name),
            Action::Start { name, .. }
            | Action::Stop { name, .. }
            | Action::Remove { name, .. }
            | Action::ShipLogs { name, .. } => Some(name),
            Action::Report { .. } | Action::Health { .. } | Action::Explain { .. } => None,
        }
    }
}

/// How loud a note is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Error,
    Warn,
    Info,
    /// Repeats of something already said (a connector waiting out its backoff).
    Debug,
}

impl Level {
    /// The logger's level for it.
    pub fn log_level(self) -> log::Level {
        match self {
            Level::Error => log::Level::Error,
            Level::Warn => log::Level::Warn,
            Level::Info => log::Level::Info,
            Level::Debug => log::Level::Debug,
        }
    }
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

/// The line shipped to a connector's logs while a change of it keeps failing.
pub fn backoff_notice(b: &Backoff, now: SystemTime) -> String {
    let wait = b.next_at.duration_since(now).unwrap_or(Duration::ZERO);
    format!(
        "{NOTICE_PREFIX} {} failed (attempt {}, next try in {} s): {}",
        b.kind,
        b.attempts,
        wait.as_secs(),
        b.error
    )
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
        forget_outdated(&mut plan.memory, c);
        if input.in_flight.contains(&c.id) {
            claimed.entry(name).or_insert(&c.id);
            continue;
        }
        if let Some(first) = claimed.get(&name) {
            let text = format!(
                "name collision: connectors {first} and {} both map to workload {name}; {} is skipped",
                c.id, c.id
            );
            cannot_run(&mut plan, c, text, now);
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
                cannot_run(&mut plan, c, text, now);
            }
            Some(w) => {
                claimed.insert(name.clone(), &c.id);
                plan_existing(&mut plan, input, d, w, now);
            }
            None => {
                claimed.insert(name.clone(), &c.id);
                plan_missing(&mut plan, input, d, name, now);
            }
        }
    }
    plan_cleanup(&mut plan, input, &expected, now);
    let live: HashSet<&str> = input
        .desired
        .iter()
        .map(|d| d.connector.id.as_str())
        .collect();
    let m = &mut plan.memory;
    m.last_health.retain(|id, _| live.contains(id.as_str()));
    m.health_sent.retain(|id, _| live.contains(id.as_str()));
    m.last_logs.retain(|id, _| live.contains(id.as_str()));
    m.backoff.retain(|id, _| live.contains(id.as_str()));
    m.crash_stopped.retain(|id, _| live.contains(id.as_str()));
    plan
}

/// A new contract or a new requested status ends a backoff and a crash-loop stop.
fn forget_outdated(m: &mut Memory, c: &Connector) {
    let stamp = Stamp::of(c);
    if m.backoff.get(&c.id).is_some_and(|b| b.stamp != stamp) {
        m.backoff.remove(&c.id);
    }
    if m.crash_stopped.get(&c.id).is_some_and(|s| *s != stamp) {
        m.crash_stopped.remove(&c.id);
    }
}

/// True while `c`'s last `kind` change failed and its retry time has not
/// come: that change is not planned, and a debug note says when it will be.
/// Other changes go on (a connector whose start fails can still be stopped).
fn backing_off(plan: &mut Plan, c: &Connector, kind: ActionKind, now: SystemTime) -> bool {
    let Some(b) = plan.memory.backoff.get(&c.id) else {
        return false;
    };
    if now >= b.next_at || b.kind != kind {
        return false;
    }
    let wait = b.next_at.duration_since(now).unwrap_or(Duration::ZERO);
    let text = format!(
        "{} of {}: attempt {} failed, next in {} s",
        b.kind,
        c.id,
        b.attempts,
        wait.as_secs()
    );
    plan.note(Level::Debug, Some(&c.id), text);
    true
}

/// A connector the planner itself cannot run (not decryptable, name
/// collision): said once per attempt — logged and shipped to its logs — and
/// then backed off like a failed deploy.
fn cannot_run(plan: &mut Plan, c: &Connector, text: String, now: SystemTime) {
    if backing_off(plan, c, ActionKind::Deploy, now) {
        return;
    }
    let b = plan
        .memory
        .change_failed(&c.id, ActionKind::Deploy, Stamp::of(c), text, now)
        .clone();
    let text = format!(
        "{} (attempt {}, next try in {} s)",
        b.error,
        b.attempts,
        backoff_delay(b.attempts).as_secs()
    );
    plan.note(Level::Error, Some(&c.id), text);
    plan.actions.push(Action::Explain {
        id: c.id.clone(),
        text: backoff_notice(&b, now),
    });
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

/// `now`, unless the platform already shows it. A `None` current status was
/// never reported, so it is always reported (§8.3).
fn report_if_changed(platform_status: Option<Status>, now: Status) -> Option<Status> {
    (platform_status != Some(now)).then_some(now)
}

fn requested_status(c: &Connector) -> Status {
    match c.requested {
        Requested::Starting => Status::Started,
        Requested::Stopping => Status::Stopped,
    }
}

fn plan_missing(plan: &mut Plan, input: &Input, d: &Desired, name: String, now: SystemTime) {
    let c = &d.connector;
    match &d.env {
        Err(why) => cannot_run(plan, c, format!("not deployable: {why}"), now),
        Ok(_) if backing_off(plan, c, ActionKind::Deploy, now) => {}
        Ok(env) => {
            let report = report_if_changed(c.current_status, requested_status(c));
            let spec = spec_for(input.platform, d, env, name);
            plan.actions.push(Action::Deploy { spec, report });
        }
    }
}

fn plan_existing(plan: &mut Plan, input: &Input, d: &Desired, w: &Workload, now: SystemTime) {
    let c = &d.connector;
    if let (Some(defect), Ok(env)) = (&w.defect, &d.env) {
        if !backing_off(plan, c, ActionKind::Deploy, now) {
            let text = format!("workload {}: {defect}: removed and deployed again", w.name);
            plan.note(Level::Warn, Some(&c.id), text);
            plan.actions.push(Action::Remove {
                name: w.name.clone(),
                id: c.id.clone(),
                why: RemoveReason::Defective,
            });
            let report = report_if_changed(c.current_status, requested_status(c));
            let spec = spec_for(input.platform, d, env, w.name.clone());
            plan.actions.push(Action::Deploy { spec, report });
        }
        return;
    }
    let shown = workload_status(w);
    let stale = w.hash.as_deref() != Some(c.contract_hash.as_str());
    match (&d.env, stale) {
        (Ok(env), true) if !backing_off(plan, c, ActionKind::Refresh, now) => {
            let report = report_if_changed(c.current_status, requested_status(c));
            let spec = spec_for(input.platform, d, env, w.name.clone());
            plan.actions.push(Action::Refresh { spec, report });
            // Start/stop would act on the workload that was just replaced (existing
            // composer decides from the state read before the refresh).
            plan_logs(plan, input, c, w, now);
            return;
        }
        (Err(why), true) => {
            let text = format!("configuration changed but not refreshable: {why}");
            cannot_run(plan, c, text, now);
        }
        _ => {}
    }
    let (id, name) = (c.id.clone(), w.name.clone());
    let crash_limit = input
        .policy
        .crash_loop_stop_after
        .filter(|limit| w.state != WorkloadState::Stopped && w.restart_count >= *limit);
    match (c.requested, w.state) {
        (Requested::Starting, _) if crash_limit.is_some() && is_in_reboot_loop(w, now) => {
            let limit = crash_limit.unwrap_or_default();
            let why = StopReason::CrashLoop {
                restarts: w.restart_count,
                limit,
            };
            let text = format!(
                "workload {name} stopped: reboot loop with {} restarts (crash_loop.stop_after {limit}); it starts again when the platform asks again or the configuration changes",
                w.restart_count
            );
            plan.note(Level::Warn, Some(&id), text.clone());
            plan.memory.crash_stopped.insert(id.clone(), Stamp::of(c));
            let report = report_if_changed(c.current_status, Status::Stopped);
            plan.actions.push(Action::Stop {
                id: id.clone(),
                name,
                report,
                why,
            });
            plan.actions.push(Action::Explain {
                id,
                text: format!("{NOTICE_PREFIX} {text}"),
            });
            return;
        }
        // A pending refresh that cannot be done must not start the outdated workload.
        (Requested::Starting, WorkloadState::Stopped)
            if !stale
                && !plan.memory.crash_stopped.contains_key(&id)
                && !backing_off(plan, c, ActionKind::Start, now) =>
        {
            // It ran and stopped behind the composer's back (killed, crashed out):
            // the platform hears that before it hears it runs again.
            let died = c.current_status == Some(Status::Started);
            if died {
                plan.actions.push(Action::Report {
                    id: id.clone(),
                    status: Status::Stopped,
                });
            }
            plan.actions.push(Action::Start {
                id,
                name,
                report: Some(Status::Started),
            });
        }
        (Requested::Stopping, WorkloadState::Running | WorkloadState::Restarting)
            if !backing_off(plan, c, ActionKind::Stop, now) =>
        {
            let report = report_if_changed(c.current_status, Status::Stopped);
            plan.actions.push(Action::Stop {
                id,
                name,
                report,
                why: StopReason::Requested,
            });
        }
        _ if Some(shown) != c.current_status => {
            plan.actions.push(Action::Report { id, status: shown })
        }
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
    let just_started =
        workload_status(w) == Status::Started && c.current_status != Some(Status::Started);
    let due = plan
        .memory
        .last_health
        .get(&c.id)
        .is_none_or(|t| now.duration_since(*t).unwrap_or(Duration::ZERO) >= HEALTH_EVERY);
    let changed = plan
        .memory
        .health_sent
        .get(&c.id)
        .is_some_and(|(restarts, at)| *restarts != w.restart_count || *at != started_at);
    if just_started || due || changed {
        plan.memory
            .health_sent
            .insert(c.id.clone(), (w.restart_count, started_at.clone()));
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
        // The composer's word stays at the top of the snapshot while it holds:
        // OpenCTI replaces the stored lines with every snapshot (§8.5).
        let notice = match (
            plan.memory.backoff.get(&c.id),
            plan.memory.crash_stopped.get(&c.id),
        ) {
            (Some(b), _) => Some(backoff_notice(b, now)),
            (None, Some(_)) => Some(format!(
                "{NOTICE_PREFIX} stopped by the composer: reboot loop (crash_loop.stop_after); start it again from the platform"
            )),
            (None, None) => None,
        };
        plan.memory.last_logs.insert(c.id.clone(), now);
        plan.actions.push(Action::ShipLogs {
            id: c.id.clone(),
            name: w.name.clone(),
            notice,
        });
    }
}

fn plan_cleanup(plan: &mut Plan, input: &Input, expected: &HashMap<&str, String>, now: SystemTime) {
    let mut orphans = Vec::new();
    let mut ours = 0usize;
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
        ours += 1;
        if input.in_flight.contains(id) {
            continue;
        }
        match expected.get(id) {
            // A rename's old workload goes at once: its connector is listed, so
            // the evidence is complete, and the connector must not run twice.
            Some(name) if *name != w.name => plan.actions.push(Action::Remove {
                name: w.name.clone(),
                id: id.to_string(),
                why: RemoveReason::Renamed,
            }),
            Some(_) => {}
            None => orphans.push((w.name.clone(), id.to_string())),
        }
    }
    if !input.listing_complete {
        // D13: an incomplete listing proves nothing either way.
        if !orphans.is_empty() {
            let text = format!("listing incomplete: {} removal(s) postponed", orphans.len());
            plan.note(Level::Warn, None, text);
        }
        return;
    }
    let mut notes = Vec::new();
    let m = &mut plan.memory;
    let missing: HashSet<&str> = orphans.iter().map(|(n, _)| n.as_str()).collect();
    m.absent_since
        .retain(|name, _| missing.contains(name.as_str()));
    let mut due = Vec::new();
    for (name, id) in orphans {
        let since = *m.absent_since.entry(name.clone()).or_insert(now);
        let absent = now.duration_since(since).unwrap_or(Duration::ZERO);
        if absent >= input.policy.removal_grace {
            due.push((name, id));
        } else {
            let left = input.policy.removal_grace.saturating_sub(absent).as_secs();
            let text = format!(
                "workload {name}: connector {id} not listed since {} s; removed if still missing in {left} s",
                absent.as_secs()
            );
            notes.push((Level::Debug, Some(id), text));
        }
    }
    // D14: one wrong answer (a platform restarting, a permission change) must
    // not wipe most connectors; several listings in a row must agree.
    if due.len() > 2 && due.len() * 2 > ours {
        m.mass_removal_listings = m.mass_removal_listings.saturating_add(1);
        if m.mass_removal_listings < MASS_REMOVAL_LISTINGS {
            let text = format!(
                "{} of {ours} workloads would be removed: waiting for {} more listing(s) that agree",
                due.len(),
                MASS_REMOVAL_LISTINGS - m.mass_removal_listings
            );
            notes.push((Level::Warn, None, text));
            due.clear();
        }
    } else {
        m.mass_removal_listings = 0;
    }
    for (name, id) in due {
        m.absent_since.remove(&name);
        plan.actions.push(Action::Remove {
            name,
            id,
            why: RemoveReason::Orphan,
        });
    }
    for (level, id, text) in notes {
        plan.note(level, id.as_deref(), text);
    }
}

#[cfg(test)]
mod tests;
