//! The log shipper: takes log snapshots off the reconcile path. Platform loops
//! queue a job per connector when its log timer elapses (D1); this thread
//! fetches the last lines from the orchestrator and ships them (CONTRACT §8.5).

use std::sync::Arc;

use crossbeam_channel::{Receiver, select};

use crate::orchestrator::Orchestrator;
use crate::platform::Platform;
use crate::reconcile::LOG_TAIL;

/// One connector's log snapshot to fetch and ship.
pub struct LogJob {
    pub platform: Arc<dyn Platform>,
    pub orchestrator: Arc<dyn Orchestrator>,
    pub connector_id: String,
    pub workload: String,
}

impl LogJob {
    /// Fetches the tail and ships it.
    ///
    /// # Errors
    /// Either call failed; the message names which.
    pub fn run(&self) -> Result<usize, String> {
        let lines = self
            .orchestrator
            .logs(&self.workload, LOG_TAIL)
            .map_err(|e| format!("logs of {}: {e}", self.workload))?;
        self.platform
            .report_logs(&self.connector_id, &lines)
            .map_err(|e| format!("shipping logs: {e}"))?;
        Ok(lines.len())
    }
}

/// Runs jobs until `shutdown` closes (jobs still queued then are dropped: the
/// next process ships fresh snapshots).
pub fn run(jobs: &Receiver<LogJob>, shutdown: &Receiver<()>) {
    loop {
        select! {
            recv(shutdown) -> _ => break,
            recv(jobs) -> job => match job {
                Ok(job) => match job.run() {
                    Ok(n) => log::debug!("{}: connector {}: shipped {n} log lines", job.platform.kind(), job.connector_id),
                    Err(e) => log::warn!("{}: connector {}: {e}", job.platform.kind(), job.connector_id),
                },
                Err(_) => break,
            }
        }
    }
    log::info!("log shipper stopped");
}
