//! Runs one connector's planned actions, in order, on a pool worker (or inline
//! for `cycle`). Returns what happened to each as data — the platform loop
//! decides what a failure means (backoff, retry, notice); nothing is logged
//! here except the env dump asked for by `show_env_vars`.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;

use crate::env;
use crate::logs::LogJob;
use crate::orchestrator::{self, Orchestrator};
use crate::platform::{self, Platform, Status};
use crate::reconcile::{Action, ActionKind};

/// Why an action failed.
#[derive(Debug)]
pub enum ActionError {
    /// The engine refused or could not be reached.
    Engine(orchestrator::Error),
    /// The platform refused or could not be reached.
    Platform(platform::Error),
    /// The log shipper's queue is full: the snapshot waits for the next schedule.
    LogQueueFull,
    /// Fetching or shipping logs inline failed.
    Logs(String),
}

impl fmt::Display for ActionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ActionError::Engine(e) => write!(f, "{e}"),
            ActionError::Platform(e) => write!(f, "{e}"),
            ActionError::LogQueueFull => f.write_str("log queue full"),
            ActionError::Logs(e) => f.write_str(e),
        }
    }
}

impl std::error::Error for ActionError {}

/// One action's result.
#[derive(Debug)]
pub struct Done {
    pub kind: ActionKind,
    pub workload: Option<String>,
    pub reason: String,
    pub result: Result<(), ActionError>,
    pub elapsed: Duration,
}

/// One connector's results; a failed change ends its group (what came after
/// it assumed it worked).
#[derive(Debug)]
pub struct Outcome {
    pub connector_id: String,
    pub done: Vec<Done>,
}

impl Outcome {
    pub fn failures(&self) -> usize {
        self.done.iter().filter(|d| d.result.is_err()).count()
    }
}

/// What a worker needs to act for one platform.
pub struct Executor {
    pub platform: Arc<dyn Platform>,
    pub orchestrator: Arc<dyn Orchestrator>,
    /// The log shipper's queue; `None` ships inline.
    pub logs: Option<Sender<LogJob>>,
    pub show_env_vars: bool,
    pub show_sensitive_env_vars: bool,
}

impl Executor {
    /// Runs `actions` (all of one connector) in order.
    pub fn run(&self, connector_id: &str, actions: Vec<Action>) -> Outcome {
        let mut out = Outcome {
            connector_id: connector_id.to_string(),
            done: Vec::new(),
        };
        for a in actions {
            let start = Instant::now();
            let (result, report) = self.apply(&a);
            let failed_change = result.is_err() && a.kind().changes_workload();
            out.done.push(Done {
                kind: a.kind(),
                workload: a.workload().map(str::to_string),
                reason: a.reason(),
                result,
                elapsed: start.elapsed(),
            });
            if failed_change {
                break;
            }
            if let Some(status) = report {
                let start = Instant::now();
                let result = self
                    .platform
                    .report_status(connector_id, status)
                    .map_err(ActionError::Platform);
                out.done.push(Done {
                    kind: ActionKind::Report,
                    workload: None,
                    reason: format!("{} after {}", status.as_str(), a.kind()),
                    result,
                    elapsed: start.elapsed(),
                });
            }
        }
        out
    }

    /// The action, and the status to report when it succeeded.
    fn apply(&self, a: &Action) -> (Result<(), ActionError>, Option<Status>) {
        let engine = |r: Result<(), orchestrator::Error>| r.map_err(ActionError::Engine);
        let id = a.connector_id();
        let (r, report) = match a {
            Action::Deploy { spec, report } | Action::Refresh { spec, report } => {
                if self.show_env_vars {
                    let lines = env::describe(&spec.env, self.show_sensitive_env_vars);
                    log::info!(
                        "{}: connector {id}: env of {}: {}",
                        self.platform.kind(),
                        spec.name,
                        lines.join(" ")
                    );
                }
                let r = if matches!(a, Action::Refresh { .. }) {
                    self.orchestrator.refresh(spec)
                } else {
                    self.orchestrator.deploy(spec)
                };
                (engine(r), *report)
            }
            Action::Start { name, report, .. } => (engine(self.orchestrator.start(name)), *report),
            Action::Stop { name, report, .. } => (engine(self.orchestrator.stop(name)), *report),
            Action::Remove { name, .. } => (engine(self.orchestrator.remove(name)), None),
            Action::Report { status, .. } => (
                self.platform
                    .report_status(id, *status)
                    .map_err(ActionError::Platform),
                None,
            ),
            Action::Health { health, .. } => (
                self.platform
                    .report_health(id, health)
                    .map_err(ActionError::Platform),
                None,
            ),
            Action::ShipLogs { name, notice, .. } => {
                (self.ship(id, Some(name.clone()), notice.clone()), None)
            }
            Action::Explain { text, .. } => (self.ship(id, None, Some(text.clone())), None),
        };
        // A status is reported only for a change that happened.
        let report = if r.is_ok() { report } else { None };
        (r, report)
    }

    /// Queues a log snapshot (or runs it inline without a shipper).
    pub fn ship(
        &self,
        id: &str,
        workload: Option<String>,
        notice: Option<String>,
    ) -> Result<(), ActionError> {
        let job = LogJob {
            platform: Arc::clone(&self.platform),
            orchestrator: Arc::clone(&self.orchestrator),
            connector_id: id.to_string(),
            workload,
            notice,
        };
        match &self.logs {
            Some(tx) => tx.try_send(job).map_err(|_| ActionError::LogQueueFull),
            None => job.run().map(|_| ()).map_err(ActionError::Logs),
        }
    }
}
