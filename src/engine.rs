//! One platform's reconcile loop, as a controller: observe (listing + workload
//! list) → plan (pure, `reconcile`) → dispatch each connector's actions to the
//! worker pool, never waiting for them. Completions come back on a channel and
//! feed the planner's memory (backoff, notices). The alive state machine runs
//! on its own thread (`alive`); `alive_tick` and `cycle` drive both inline for
//! tests and one-shot commands.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender, after, bounded, select, unbounded};

use crate::alive::{self, Answer, Schedule};
use crate::env;
use crate::executor::{Executor, Outcome};
use crate::liveness::{Beat, Loops};
use crate::logs::LogJob;
use crate::orchestrator::{Orchestrator, Workload};
use crate::platform::{self, Listing, Platform};
use crate::pool;
use crate::reconcile::{self, Action, ActionKind, Desired, Level, Memory, Plan, Policy, Stamp};
use crate::secret::Secret;

/// Decrypts a platform ciphertext; implemented by `crypto::Decryptor`.
pub trait Decrypt: Send + Sync {
    /// The plaintext, or a reason that names no secret.
    fn decrypt(&self, value: &str) -> Result<Secret, String>;
}

impl Decrypt for crate::crypto::Decryptor {
    fn decrypt(&self, value: &str) -> Result<Secret, String> {
        crate::crypto::Decryptor::decrypt(self, value).map_err(|e| e.to_string())
    }
}

/// Timings and switches of one platform loop.
#[derive(Debug, Clone)]
pub struct Options {
    pub execute_every: Duration,
    pub ping_every: Duration,
    pub logs_every: Duration,
    pub max_parallel: usize,
    pub name_prefix: Option<String>,
    pub show_env_vars: bool,
    pub show_sensitive_env_vars: bool,
    pub policy: Policy,
    /// The longest one loop step may legitimately take (watchdog).
    pub step_limit: Duration,
    /// The longest one connector's actions may legitimately take (a pull).
    pub action_limit: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            execute_every: Duration::from_secs(10),
            ping_every: Duration::from_secs(60),
            logs_every: Duration::from_secs(10),
            max_parallel: 4,
            name_prefix: None,
            show_env_vars: false,
            show_sensitive_env_vars: false,
            policy: Policy::default(),
            step_limit: Duration::from_secs(300),
            action_limit: Duration::from_secs(3900),
        }
    }
}

/// The observe step failed: nothing may be planned on it.
#[derive(Debug)]
pub enum ObserveError {
    /// The platform listing failed.
    Listing(platform::Error),
    /// The orchestrator's workload list failed.
    Workloads(crate::orchestrator::Error),
}

impl std::fmt::Display for ObserveError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ObserveError::Listing(e) => write!(f, "{e}"),
            ObserveError::Workloads(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for ObserveError {}

/// Everything one platform's reconcile loop owns.
pub struct Engine {
    pub platform: Arc<dyn Platform>,
    pub orchestrator: Arc<dyn Orchestrator>,
    pub decrypt: Arc<dyn Decrypt>,
    pub env: env::Context,
    pub options: Options,
    executor: Arc<Executor>,
    /// Registration as the alive side last saw it.
    shared: Arc<alive::Shared>,
    /// Inline alive state (`alive_tick`), unused once the alive thread runs.
    alive: (alive::State, alive::Next),
    /// Tells the alive thread a listing was refused as "not registered".
    refused: Option<Sender<()>>,
    memory: Memory,
    in_flight: HashMap<String, Stamp>,
    done_tx: Sender<Outcome>,
    done_rx: Receiver<Outcome>,
    /// Whether "waiting for registration" was said since the last change.
    waiting_said: bool,
    /// Inline only: the listing was refused and registration then succeeded.
    relist: bool,
}

/// What one cycle did, for logs, tests and the benchmark.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CycleReport {
    pub ran: bool,
    pub actions: usize,
    pub failures: usize,
}

impl Engine {
    /// An engine that has not yet talked to its platform.
    pub fn new(
        platform: Arc<dyn Platform>,
        orchestrator: Arc<dyn Orchestrator>,
        decrypt: Arc<dyn Decrypt>,
        env: env::Context,
        options: Options,
        logs: Option<Sender<LogJob>>,
    ) -> Engine {
        let executor = Arc::new(Executor {
            platform: Arc::clone(&platform),
            orchestrator: Arc::clone(&orchestrator),
            logs,
            show_env_vars: options.show_env_vars,
            show_sensitive_env_vars: options.show_sensitive_env_vars,
        });
        let (done_tx, done_rx) = unbounded();
        Engine {
            platform,
            orchestrator,
            decrypt,
            env,
            options,
            executor,
            shared: Arc::default(),
            alive: (alive::State::default(), alive::start()),
            refused: None,
            memory: Memory::default(),
            in_flight: HashMap::new(),
            done_tx,
            done_rx,
            waiting_said: false,
            relist: false,
        }
    }

    fn name(&self) -> &'static str {
        self.platform.kind().as_str()
    }

    fn schedule(&self) -> Schedule {
        Schedule {
            ping_every: self.options.ping_every,
            ping_reports_current_version: self.platform.ping_reports_current_version(),
        }
    }

    /// Inline alive steps until the state machine wants to wait (tests, one-shot).
    pub fn alive_tick(&mut self) {
        self.alive_answer(None);
    }

    fn alive_answer(&mut self, first: Option<Answer>) {
        let schedule = self.schedule();
        let mut answer = first;
        // version → register → ping at most, then a wait.
        for _ in 0..4 {
            let a = match answer.take() {
                Some(a) => a,
                None => alive::perform(&*self.platform, self.alive.1.call),
            };
            let (s, n) = alive::step(&self.alive.0, a, schedule);
            alive::say(self.name(), n.say.clone());
            self.shared.set_registered(s.registered);
            let wait = n.after > Duration::ZERO;
            self.alive = (s, n);
            if wait {
                break;
            }
        }
    }

    /// True once registration succeeded (the reconcile loop waits for it: D26,
    /// and OpenAEV refuses listings from an unknown manager).
    pub fn is_registered(&self) -> bool {
        self.shared.registered()
    }

    /// The planner's memory (for `plan` and tests).
    pub fn memory(&self) -> &Memory {
        &self.memory
    }

    /// Observes both sides and plans, without acting and without registering:
    /// `plan` stays read-only on the platform too.
    ///
    /// # Errors
    /// The listing or the workload list failed.
    pub fn observe_and_plan(&self) -> Result<(Plan, Vec<Desired>), ObserveError> {
        let (started, board) = (Instant::now(), crate::observe::board());
        let kind = self.platform.kind();
        let failed = |e| {
            board.listing_failed(kind);
            e
        };
        let listing: Listing = self
            .platform
            .list()
            .map_err(|e| failed(ObserveError::Listing(e)))?;
        let workloads: Vec<Workload> =
            (self.orchestrator.list()).map_err(|e| failed(ObserveError::Workloads(e)))?;
        let desired: Vec<Desired> = listing
            .connectors
            .into_iter()
            .map(|c| {
                let env = env::connector_env(&c, &self.env, |v| self.decrypt.decrypt(v));
                Desired { connector: c, env }
            })
            .collect();
        let in_flight: HashSet<String> = self.in_flight.keys().cloned().collect();
        let input = reconcile::Input {
            platform: self.platform.kind(),
            name_prefix: self.options.name_prefix.as_deref(),
            listing_complete: listing.complete,
            desired: &desired,
            workloads: &workloads,
            logs_every: self.options.logs_every,
            in_flight: &in_flight,
            policy: self.options.policy,
        };
        let mut plan = reconcile::plan(&input, &self.memory, SystemTime::now());
        // Skipped entries are the plan's to show (`plan`), logged with its notes.
        plan.notes
            .extend(listing.problems.iter().map(|p| reconcile::Note {
                level: Level::Warn,
                connector: None,
                text: format!("listing: {p}"),
            }));
        let seen = crate::observe::Seen {
            desired: &desired,
            workloads: &workloads,
            memory: &plan.memory,
            name_prefix: self.options.name_prefix.as_deref(),
        };
        board.seen(kind, seen, started.elapsed());
        Ok((plan, desired))
    }

    /// Observes and plans; on success the plan's memory is kept, and each
    /// connector's stamp returned for its outcome's backoff. Logs why not.
    fn observe(&mut self) -> Option<(Plan, HashMap<String, Stamp>)> {
        if !self.shared.registered() {
            if !self.waiting_said {
                log::info!(
                    "{}: waiting for registration before reconciling",
                    self.name()
                );
                self.waiting_said = true;
            }
            return None;
        }
        if self.waiting_said {
            log::info!("{}: registered: reconciling", self.name());
            self.waiting_said = false;
        }
        match self.observe_and_plan() {
            Ok((plan, desired)) => {
                for n in &plan.notes {
                    let id = n.connector.as_deref().unwrap_or("-");
                    let name = self.name();
                    log::log!(n.level.log_level(), platform = name, connector = id; "{name}: connector {id}: {}", n.text);
                }
                self.memory = plan.memory.clone();
                let stamps = desired
                    .iter()
                    .map(|d| (d.connector.id.clone(), Stamp::of(&d.connector)))
                    .collect();
                Some((plan, stamps))
            }
            Err(ObserveError::Listing(platform::Error::NotRegistered { detail, .. })) => {
                log::warn!("{}: listing refused ({detail}); cycle skipped", self.name());
                self.shared.set_registered(false);
                match &self.refused {
                    Some(tx) => {
                        let _ = tx.try_send(());
                    }
                    None => {
                        self.alive_answer(Some(Answer::ListingRefused));
                        self.relist = self.shared.registered();
                    }
                }
                None
            }
            Err(e) => {
                log::error!("{}: cycle skipped: {e}", self.name());
                None
            }
        }
    }

    /// The plan's actions, one group per connector, in plan order.
    fn groups(actions: Vec<Action>) -> Vec<(String, Vec<Action>)> {
        let mut groups: Vec<(String, Vec<Action>)> = Vec::new();
        let mut index: HashMap<String, usize> = HashMap::new();
        for a in actions {
            let id = a.connector_id().to_string();
            match index.get(&id) {
                Some(&i) => groups[i].1.push(a),
                None => {
                    index.insert(id.clone(), groups.len());
                    groups.push((id, vec![a]));
                }
            }
        }
        groups
    }

    /// The stamp of `id` in this cycle's listing (an orphan has none).
    fn stamp(stamps: &HashMap<String, Stamp>, id: &str) -> Stamp {
        stamps.get(id).cloned().unwrap_or(Stamp {
            hash: String::new(),
            requested: platform::Requested::Stopping,
        })
    }

    /// One reconcile cycle, inline: plan, run every action, apply the outcomes.
    /// For tests and one-shot use; `run` never waits like this.
    pub fn cycle(&mut self, shutdown: &Receiver<()>) -> CycleReport {
        self.relist = false;
        let observed = match self.observe() {
            // Refused as unknown and registered again inline: list once more.
            None if self.relist => self.observe(),
            other => other,
        };
        let Some((plan, stamps)) = observed else {
            return CycleReport::default();
        };
        let actions = plan.actions.len();
        let mut failures = 0;
        for (id, group) in Self::groups(plan.actions) {
            if matches!(
                shutdown.try_recv(),
                Err(crossbeam_channel::TryRecvError::Disconnected)
            ) {
                break;
            }
            self.in_flight.insert(id.clone(), Self::stamp(&stamps, &id));
            let outcome = self.executor.run(&id, group);
            failures += outcome.failures();
            self.complete(outcome);
        }
        CycleReport {
            ran: true,
            actions,
            failures,
        }
    }

    /// Applies a finished connector's outcome: memory, logs, notices.
    fn complete(&mut self, outcome: Outcome) {
        let id = outcome.connector_id.clone();
        let stamp = self.in_flight.remove(&id);
        let name = self.name();
        let now = SystemTime::now();
        for d in outcome.done {
            let kind = self.platform.kind();
            crate::observe::board().action(kind, &id, d.kind, &d.result, d.elapsed);
            let w = d.workload.as_deref().unwrap_or("-");
            match d.result {
                Ok(()) => {
                    if d.kind.changes_workload() {
                        self.memory.change_succeeded(&id);
                        log::info!(
                            platform = name, connector = id.as_str(), workload = w,
                            action = d.kind.as_str(), outcome = "ok";
                            "{name}: connector {id}: {} {w} ({}) in {:.1} s",
                            d.kind.past(),
                            d.reason,
                            d.elapsed.as_secs_f64()
                        );
                    } else if d.kind == ActionKind::Report {
                        log::info!(
                            platform = name, connector = id.as_str(), action = "report", outcome = "ok";
                            "{name}: connector {id}: reported {}", d.reason
                        );
                    }
                }
                Err(e) if d.kind.changes_workload() => {
                    let stamp = stamp.clone().unwrap_or(Stamp {
                        hash: String::new(),
                        requested: platform::Requested::Stopping,
                    });
                    let b = self
                        .memory
                        .change_failed(&id, d.kind, stamp, e.to_string(), now)
                        .clone();
                    let wait = b.next_at.duration_since(now).unwrap_or_default();
                    log::error!(
                        platform = name, connector = id.as_str(), workload = w,
                        action = d.kind.as_str(), outcome = "error", attempt = b.attempts;
                        "{name}: connector {id}: {} {w} failed (attempt {}, next try in {} s): {e}",
                        d.kind,
                        b.attempts,
                        wait.as_secs()
                    );
                    let notice = reconcile::backoff_notice(&b, now);
                    if let Err(e) = self.executor.ship(&id, None, Some(notice)) {
                        log::warn!("{name}: connector {id}: notice not shipped: {e}");
                    }
                }
                Err(e) => {
                    match d.kind {
                        ActionKind::Health => self.memory.health_failed(&id),
                        ActionKind::ShipLogs => self.memory.logs_failed(&id),
                        _ => {}
                    }
                    log::warn!(
                        platform = name, connector = id.as_str(), action = d.kind.as_str(), outcome = "error";
                        "{name}: connector {id}: {} failed: {e}", d.kind
                    );
                }
            }
        }
    }

    /// Plans and hands each connector's actions to the pool; returns at once.
    fn dispatch(&mut self, pool: &pool::Handle) -> CycleReport {
        while let Ok(o) = self.done_rx.try_recv() {
            self.complete(o);
        }
        let Some((plan, stamps)) = self.observe() else {
            return CycleReport::default();
        };
        let actions = plan.actions.len();
        for (id, group) in Self::groups(plan.actions) {
            let stamp = Self::stamp(&stamps, &id);
            let kinds: Vec<ActionKind> = group.iter().map(Action::kind).collect();
            let executor = Arc::clone(&self.executor);
            let done = self.done_tx.clone();
            let job_id = id.clone();
            let job = pool::Job {
                limit: self.options.action_limit,
                work: Box::new(move || {
                    let outcome = executor.run(&job_id, group);
                    let _ = done.send(outcome);
                }),
            };
            match pool.submit(job) {
                Ok(()) => {
                    self.in_flight.insert(id, stamp);
                }
                Err(refused) => {
                    log::debug!(
                        "{}: connector {id}: worker pool {refused:?}; planned again next cycle",
                        self.name()
                    );
                    if kinds.contains(&ActionKind::Health) {
                        self.memory.health_failed(&id);
                    }
                    if kinds.contains(&ActionKind::ShipLogs) {
                        self.memory.logs_failed(&id);
                    }
                }
            }
        }
        CycleReport {
            ran: true,
            actions,
            failures: 0,
        }
    }

    /// Runs the reconcile loop until `shutdown` closes: a cycle every
    /// `execute_every` (first at once; a slow cycle is followed by a full
    /// period, never by catch-up cycles), completions applied as they come.
    fn run(
        mut self,
        pool: &pool::Handle,
        shutdown: &Receiver<()>,
        refused: Sender<()>,
        shared: Arc<alive::Shared>,
        beat: &Beat,
        wake: &Receiver<()>,
    ) {
        self.refused = Some(refused);
        self.shared = shared;
        let mut wake = wake.clone();
        let mut next_cycle = Instant::now();
        loop {
            beat.waiting(next_cycle, self.options.step_limit);
            let wait = next_cycle.saturating_duration_since(Instant::now());
            select! {
                recv(shutdown) -> _ => break,
                recv(self.done_rx) -> o => if let Ok(o) = o {
                    self.complete(o);
                },
                // An engine event: observe again soon, once a burst has settled.
                recv(wake) -> w => match w {
                    Ok(()) => {
                        // While our own actions run, their events are most of the
                        // stream: gather them, or a mass deploy relists all every 200 ms.
                        let settle = if self.in_flight.is_empty() {
                            EVENT_DEBOUNCE
                        } else {
                            BUSY_DEBOUNCE
                        };
                        next_cycle = next_cycle.min(Instant::now() + settle);
                    }
                    // No stream (or it ended): polling only.
                    Err(_) => wake = crossbeam_channel::never(),
                },
                recv(after(wait)) -> _ => {
                    beat.working(self.options.step_limit);
                    let start = Instant::now();
                    self.dispatch(pool);
                    next_cycle = (start + self.options.execute_every)
                        .max(Instant::now() + Duration::from_millis(200));
                    // Registration is the alive thread's: look again soon, not a
                    // whole period later, so the first cycle follows it closely.
                    if !self.shared.registered() {
                        next_cycle = next_cycle.min(Instant::now() + REGISTRATION_POLL);
                    }
                }
            }
        }
        log::info!("{}: reconcile loop stopped", self.name());
    }

    /// Starts this platform's two threads: alive (version → register → ping)
    /// and reconcile (observe → plan → dispatch to `pool`), with their beats
    /// registered in `loops`. Both end when `shutdown` closes.
    ///
    /// # Errors
    /// A thread could not be spawned.
    pub fn spawn(
        self,
        pool: pool::Handle,
        shutdown: &Receiver<()>,
        loops: &Loops,
    ) -> std::io::Result<Vec<JoinHandle<()>>> {
        let kind = self.platform.kind();
        let (platform, schedule) = (Arc::clone(&self.platform), self.schedule());
        let shared = Arc::new(alive::Shared::default());
        crate::observe::board().attach(kind, Arc::clone(&shared));
        let (refused_tx, refused_rx) = bounded::<()>(1);
        let limit = self.options.step_limit;
        let alive_beat = loops.register(&format!("{kind}-alive"), limit);
        let loop_beat = loops.register(&format!("{kind}-reconcile"), limit);
        let (stop, alive_shared) = (shutdown.clone(), Arc::clone(&shared));
        let alive = std::thread::Builder::new()
            .name(format!("{kind}-alive"))
            .stack_size(LOOP_STACK)
            .spawn(move || {
                alive::run(
                    platform,
                    alive_shared,
                    schedule,
                    refused_rx,
                    stop,
                    alive_beat,
                    limit,
                )
            })?;
        // Engine events wake the reconcile loop; bursts collapse into one wake.
        let (wake_tx, wake_rx) = bounded::<()>(1);
        let (orchestrator, stop) = (Arc::clone(&self.orchestrator), shutdown.clone());
        let events = std::thread::Builder::new()
            .name(format!("{kind}-events"))
            .stack_size(LOOP_STACK)
            .spawn(move || {
                let wake = || {
                    let _ = wake_tx.try_send(());
                };
                if !orchestrator.follow(&wake, &stop) {
                    log::debug!("{kind}: the engine offers no event stream; polling only");
                }
            })?;
        let stop = shutdown.clone();
        let reconcile = std::thread::Builder::new()
            .name(format!("{kind}-reconcile"))
            .stack_size(LOOP_STACK)
            .spawn(move || self.run(&pool, &stop, refused_tx, shared, &loop_beat, &wake_rx))?;
        Ok(vec![alive, events, reconcile])
    }
}

/// How often the reconcile loop looks for a registration it waits for.
const REGISTRATION_POLL: Duration = Duration::from_millis(250);

/// How long after an engine event the loop observes again: a burst (die,
/// kill, stop, start) becomes one cycle.
pub const EVENT_DEBOUNCE: Duration = Duration::from_millis(200);

/// The same while actions of this loop are in flight: at most one event-driven
/// cycle a second (1,000 connectors deploying: 5 times fewer full listings).
pub const BUSY_DEBOUNCE: Duration = Duration::from_secs(1);

/// Stack of the loop threads: HTTP calls, JSON bodies, RSA decryption.
pub const LOOP_STACK: usize = 512 * 1024;
