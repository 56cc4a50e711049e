//! One platform's thread: the alive state machine (version → register → ping,
//! re-register on a version change, CONTRACT §8.2) and the reconcile tick
//! (list → plan → execute, §8.3). The executor makes one attempt per action,
//! fans out per connector up to `max_parallel`, and never stops on an error.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{Receiver, Sender, TryRecvError, after, select};

use crate::env;
use crate::logs::LogJob;
use crate::orchestrator::{Orchestrator, Workload};
use crate::platform::{self, Listing, Platform};
use crate::reconcile::{self, Action, Desired, Level, Memory, Plan, RemoveReason};
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
}

/// Where the alive state machine stands.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Alive {
    /// The platform version last seen; `None` = ask for it (step 1).
    version: Option<String>,
    /// Registration succeeded and the platform has not since said otherwise.
    registered: bool,
}

/// Everything one platform thread owns.
pub struct Engine {
    pub platform: Arc<dyn Platform>,
    pub orchestrator: Arc<dyn Orchestrator>,
    pub decrypt: Arc<dyn Decrypt>,
    pub env: env::Context,
    pub options: Options,
    /// The log shipper's queue; `None` ships inline (CLI, tests).
    pub logs: Option<Sender<LogJob>>,
    alive: Alive,
    memory: Memory,
}

/// What one cycle did, for logs, tests and the benchmark.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CycleReport {
    pub ran: bool,
    pub actions: usize,
    pub failures: usize,
}

fn stopping(shutdown: &Receiver<()>) -> bool {
    matches!(shutdown.try_recv(), Err(TryRecvError::Disconnected))
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
        Engine {
            platform,
            orchestrator,
            decrypt,
            env,
            options,
            logs,
            alive: Alive::default(),
            memory: Memory::default(),
        }
    }

    fn name(&self) -> &'static str {
        self.platform.kind().as_str()
    }

    /// Runs both loops until `shutdown` is closed. First ticks are immediate;
    /// a slow cycle is followed by a full period, never by catch-up cycles.
    /// `beat` is called after every wake-up (systemd watchdog).
    pub fn run(&mut self, shutdown: &Receiver<()>, beat: &dyn Fn()) {
        let mut next_ping = Instant::now();
        let mut next_cycle = Instant::now();
        loop {
            if stopping(shutdown) {
                break;
            }
            if Instant::now() >= next_ping {
                self.alive_tick();
                next_ping = Instant::now() + self.options.ping_every;
            }
            if Instant::now() >= next_cycle {
                let start = Instant::now();
                self.cycle(shutdown);
                next_cycle = (start + self.options.execute_every)
                    .max(Instant::now() + Duration::from_millis(200));
                if start.elapsed() > self.options.execute_every {
                    next_cycle = Instant::now() + self.options.execute_every;
                }
            }
            beat();
            let wait = next_ping
                .min(next_cycle)
                .saturating_duration_since(Instant::now());
            select! {
                recv(shutdown) -> _ => break,
                recv(after(wait)) -> _ => {}
            }
        }
        log::info!("{}: loop stopped", self.name());
    }

    fn register(&mut self) -> bool {
        match self.platform.register() {
            Ok(()) => {
                log::info!("{}: manager registered", self.name());
                self.alive.registered = true;
            }
            Err(e) => {
                log::error!("{}: registration failed: {e}", self.name());
                self.alive.registered = false;
            }
        }
        self.alive.registered
    }

    /// One step of the alive state machine (§8.2).
    pub fn alive_tick(&mut self) {
        let Some(known) = self.alive.version.clone() else {
            match self.platform.version() {
                Ok(v) => {
                    log::info!("{}: platform version {v}", self.name());
                    self.alive.version = Some(v);
                    self.register();
                }
                Err(e) => log::warn!("{}: platform not reachable: {e}", self.name()),
            }
            return;
        };
        let pinged = self.platform.ping().and_then(|v| {
            if self.platform.ping_reports_current_version() {
                Ok(v)
            } else {
                self.platform.version()
            }
        });
        match pinged {
            Ok(v) if v.trim() != known.trim() => {
                log::info!(
                    "{}: platform version changed {known} -> {v}: registering again",
                    self.name()
                );
                self.alive.version = Some(v);
                self.register();
            }
            Ok(_) if !self.alive.registered => {
                self.register();
            }
            Ok(_) => log::debug!("{}: ping ok", self.name()),
            Err(platform::Error::NotRegistered { detail, .. }) => {
                log::error!(
                    "{}: platform does not know manager ({detail}): registering again",
                    self.name()
                );
                self.alive.registered = false;
                self.register();
            }
            Err(e) => {
                // Back to step 1; reconciliation goes on meanwhile (§1: a transient
                // alive failure does not stop it).
                log::warn!("{}: ping failed: {e}", self.name());
                self.alive.version = None;
            }
        }
    }

    /// True once registration succeeded (the reconcile tick waits for it: D26,
    /// and OpenAEV refuses listings from an unknown manager).
    pub fn is_registered(&self) -> bool {
        self.alive.registered
    }

    fn list_connectors(&mut self) -> Result<Listing, platform::Error> {
        match self.platform.list() {
            Err(platform::Error::NotRegistered { detail, .. }) => {
                log::warn!(
                    "{}: listing refused ({detail}): registering and retrying",
                    self.name()
                );
                self.alive.registered = false;
                if self.register() {
                    self.platform.list()
                } else {
                    Err(platform::Error::NotRegistered {
                        op: "list connectors",
                        detail,
                    })
                }
            }
            other => other,
        }
    }

    /// Observes both sides and plans, without acting.
    ///
    /// # Errors
    /// The listing or the workload list failed: nothing may be planned on it.
    pub fn observe_and_plan(&mut self) -> Result<(Plan, Vec<Desired>), String> {
        let listing = self.list_connectors().map_err(|e| e.to_string())?;
        for p in &listing.problems {
            log::warn!("{}: listing: {p}", self.name());
        }
        let workloads: Vec<Workload> = self.orchestrator.list().map_err(|e| e.to_string())?;
        let desired: Vec<Desired> = listing
            .connectors
            .into_iter()
            .map(|c| {
                let env = env::connector_env(&c, &self.env, |v| self.decrypt.decrypt(v));
                Desired { connector: c, env }
            })
            .collect();
        let input = reconcile::Input {
            platform: self.platform.kind(),
            name_prefix: self.options.name_prefix.as_deref(),
            listing_complete: listing.complete,
            desired: &desired,
            workloads: &workloads,
            logs_every: self.options.logs_every,
        };
        Ok((
            reconcile::plan(&input, &self.memory, SystemTime::now()),
            desired,
        ))
    }

    /// One reconcile cycle (§8.3). Errors are logged; nothing stops the loop.
    pub fn cycle(&mut self, shutdown: &Receiver<()>) -> CycleReport {
        if !self.alive.registered {
            log::info!(
                "{}: waiting for registration before reconciling",
                self.name()
            );
            return CycleReport::default();
        }
        let (plan, _) = match self.observe_and_plan() {
            Ok(p) => p,
            Err(e) => {
                log::error!("{}: cycle skipped: {e}", self.name());
                return CycleReport::default();
            }
        };
        for n in &plan.notes {
            let id = n.connector.as_deref().unwrap_or("-");
            match n.level {
                Level::Error => log::error!("{}: connector {id}: {}", self.name(), n.text),
                Level::Warn => log::warn!("{}: connector {id}: {}", self.name(), n.text),
                Level::Info => log::info!("{}: connector {id}: {}", self.name(), n.text),
            }
        }
        let actions = plan.actions.len();
        self.memory = plan.memory;
        let failed = self.execute(plan.actions, shutdown);
        for f in &failed {
            match f {
                Failed::Health(id) => self.memory.health_failed(id),
                Failed::Logs(id) => self.memory.logs_failed(id),
                Failed::Other => {}
            }
        }
        CycleReport {
            ran: true,
            actions,
            failures: failed.len(),
        }
    }

    /// Runs the actions, one connector's actions in order, up to `max_parallel`
    /// connectors at once.
    fn execute(&self, actions: Vec<Action>, shutdown: &Receiver<()>) -> Vec<Failed> {
        let mut groups: Vec<(String, Vec<Action>)> = Vec::new();
        for a in actions {
            match groups.iter_mut().find(|(id, _)| id == a.connector_id()) {
                Some((_, g)) => g.push(a),
                None => groups.push((a.connector_id().to_string(), vec![a])),
            }
        }
        let queue = Mutex::new(groups.into_iter().map(|(_, g)| g).collect::<VecDeque<_>>());
        let failed = Mutex::new(Vec::new());
        let workers = self.options.max_parallel.max(1);
        std::thread::scope(|s| {
            for _ in 0..workers {
                s.spawn(|| {
                    loop {
                        if stopping(shutdown) {
                            break;
                        }
                        let next = queue.lock().ok().and_then(|mut q| q.pop_front());
                        let Some(group) = next else { break };
                        for a in &group {
                            if let (Err(f), Ok(mut v)) = (self.apply(a), failed.lock()) {
                                v.push(f);
                            }
                        }
                    }
                });
            }
        });
        failed.into_inner().unwrap_or_default()
    }

    fn report(&self, id: &str, status: Option<platform::Status>) -> Result<(), Failed> {
        let Some(s) = status else { return Ok(()) };
        self.platform.report_status(id, s).map_err(|e| {
            log::error!("{}: connector {id}: status report failed: {e}", self.name());
            Failed::Other
        })
    }

    fn apply(&self, a: &Action) -> Result<(), Failed> {
        let name = self.name();
        let id = a.connector_id();
        let done = |what: String, r: Result<(), crate::orchestrator::Error>| match r {
            Ok(()) => {
                log::info!("{name}: connector {id}: {what}");
                Ok(())
            }
            Err(e) => {
                log::error!("{name}: connector {id}: {what} failed: {e}");
                Err(Failed::Other)
            }
        };
        match a {
            Action::Deploy { spec, report } | Action::Refresh { spec, report } => {
                let refresh = matches!(a, Action::Refresh { .. });
                if self.options.show_env_vars {
                    let lines = env::describe(&spec.env, self.options.show_sensitive_env_vars);
                    log::info!(
                        "{name}: connector {id}: env of {}: {}",
                        spec.name,
                        lines.join(" ")
                    );
                }
                let r = if refresh {
                    self.orchestrator.refresh(spec)
                } else {
                    self.orchestrator.deploy(spec)
                };
                let what = if refresh {
                    "refreshed (contract hash changed)"
                } else {
                    "deployed (no workload)"
                };
                done(
                    format!(
                        "{what} {} image {} started={}",
                        spec.name, spec.image, spec.start
                    ),
                    r,
                )?;
                self.report(id, *report)
            }
            Action::Start {
                name: w, report, ..
            } => {
                done(
                    format!("started {w} (requested starting)"),
                    self.orchestrator.start(w),
                )?;
                self.report(id, *report)
            }
            Action::Stop {
                name: w, report, ..
            } => {
                done(
                    format!("stopped {w} (requested stopping)"),
                    self.orchestrator.stop(w),
                )?;
                self.report(id, *report)
            }
            Action::Remove { name: w, why, .. } => {
                let why = match why {
                    RemoveReason::Orphan => "connector no longer listed",
                    RemoveReason::Renamed => "connector renamed",
                };
                done(format!("removed {w} ({why})"), self.orchestrator.remove(w))
            }
            Action::Report { status, .. } => {
                log::info!(
                    "{name}: connector {id}: reporting status {}",
                    status.as_str()
                );
                self.report(id, Some(*status))
            }
            Action::Health { health, .. } => self.platform.report_health(id, health).map_err(|e| {
                log::warn!("{name}: connector {id}: health report failed: {e}");
                Failed::Health(id.to_string())
            }),
            Action::ShipLogs { name: w, .. } => self.ship_logs(id, w),
        }
    }

    fn ship_logs(&self, id: &str, workload: &str) -> Result<(), Failed> {
        let job = LogJob {
            platform: Arc::clone(&self.platform),
            orchestrator: Arc::clone(&self.orchestrator),
            connector_id: id.to_string(),
            workload: workload.to_string(),
        };
        match &self.logs {
            Some(tx) => tx.try_send(job).map_err(|_| {
                log::warn!(
                    "{}: connector {id}: log queue full; logs wait for the next schedule",
                    self.name()
                );
                Failed::Logs(id.to_string())
            }),
            None => job.run().map(|_| ()).map_err(|e| {
                log::warn!("{}: connector {id}: {e}", self.name());
                Failed::Logs(id.to_string())
            }),
        }
    }
}

/// A failed action, as far as memory is concerned.
#[derive(Debug)]
enum Failed {
    Health(String),
    Logs(String),
    Other,
}
