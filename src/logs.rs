//! The log shipper: takes log snapshots off the reconcile path. Platform loops
//! queue a job per connector when its log timer elapses (D1); this thread
//! fetches the last lines from the orchestrator and ships them (CONTRACT §8.5).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, select};

use crate::liveness::Beat;
use crate::orchestrator::Orchestrator;
use crate::platform::{self, Platform, PlatformKind};
use crate::reconcile::LOG_TAIL;

/// How long a platform's log jobs are dropped after one could not reach it.
/// Both platforms share this thread: without the pause, every queued job for a
/// hung platform would hold the other platform's logs for a whole request
/// timeout. Dropped snapshots are taken again at the connector's next log timer.
pub const UNREACHABLE_PAUSE: Duration = Duration::from_secs(60);

/// One connector's log snapshot to fetch and ship: the composer's notice
/// about it (when it has one) followed by the workload's last lines (when it
/// has a workload).
pub struct LogJob {
    pub platform: Arc<dyn Platform>,
    pub orchestrator: Arc<dyn Orchestrator>,
    pub connector_id: String,
    pub workload: Option<String>,
    pub notice: Option<String>,
}

/// A job that did not ship.
struct Failure {
    message: String,
    /// The platform could not be reached (connection, TLS, timeout).
    unreachable: bool,
}

impl LogJob {
    /// Fetches the tail and ships it.
    ///
    /// # Errors
    /// Either call failed; the message names which.
    pub fn run(&self) -> Result<usize, String> {
        self.attempt().map_err(|f| f.message)
    }

    fn attempt(&self) -> Result<usize, Failure> {
        let mut lines: Vec<String> = self.notice.iter().cloned().collect();
        if let Some(w) = &self.workload {
            let tail = self.orchestrator.logs(w, LOG_TAIL).map_err(|e| Failure {
                message: format!("logs of {w}: {e}"),
                unreachable: false,
            })?;
            lines.extend(tail);
        }
        self.platform
            .report_logs(&self.connector_id, &lines)
            .map_err(|e| Failure {
                unreachable: matches!(e, platform::Error::Transport { .. }),
                message: format!("shipping logs: {e}"),
            })?;
        crate::observe::board().shipped(lines.len());
        Ok(lines.len())
    }
}

/// Runs jobs until `shutdown` closes (jobs still queued then are dropped: the
/// next process ships fresh snapshots). `limit` bounds one job (two calls).
pub fn run(jobs: &Receiver<LogJob>, shutdown: &Receiver<()>, beat: &Beat, limit: Duration) {
    let mut paused = HashMap::new();
    loop {
        beat.idle();
        select! {
            recv(shutdown) -> _ => break,
            recv(jobs) -> job => match job {
                Ok(job) => {
                    beat.working(limit);
                    ship(&job, &mut paused, Instant::now());
                }
                Err(_) => break,
            }
        }
    }
    log::info!("log shipper stopped");
}

/// Runs `job` unless its platform was unreachable less than
/// `UNREACHABLE_PAUSE` before `now`; records a new pause when it is.
fn ship(job: &LogJob, paused: &mut HashMap<PlatformKind, Instant>, now: Instant) {
    let kind = job.platform.kind();
    let id = &job.connector_id;
    if paused.get(&kind).is_some_and(|until| now < *until) {
        log::debug!("{kind}: connector {id}: platform unreachable, log snapshot dropped");
        return;
    }
    match job.attempt() {
        Ok(n) => {
            paused.remove(&kind);
            log::debug!("{kind}: connector {id}: shipped {n} log lines");
        }
        Err(f) if f.unreachable => {
            // From the end of the failed call: it may have taken a whole timeout.
            paused.insert(kind, Instant::now() + UNREACHABLE_PAUSE);
            log::warn!(
                platform = kind.as_str(), connector = id.as_str(), action = "logs", outcome = "error";
                "{kind}: connector {id}: {}; log snapshots for {kind} are dropped for {} s",
                f.message,
                UNREACHABLE_PAUSE.as_secs()
            );
        }
        Err(f) => log::warn!(
            platform = kind.as_str(), connector = id.as_str(), action = "logs", outcome = "error";
            "{kind}: connector {id}: {}", f.message
        ),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::orchestrator::{self, Spec, Workload};
    use crate::platform::{Health, Listing, Status};

    /// Answers `report_logs` with `answer` and records the connector ids.
    struct Plat {
        kind: PlatformKind,
        answer: fn() -> Result<(), platform::Error>,
        shipped: Mutex<Vec<String>>,
    }

    impl Platform for Plat {
        fn kind(&self) -> PlatformKind {
            self.kind
        }
        fn version(&self) -> Result<String, platform::Error> {
            Ok("7.0.0".into())
        }
        fn register(&self) -> Result<(), platform::Error> {
            Ok(())
        }
        fn ping(&self) -> Result<String, platform::Error> {
            Ok("7.0.0".into())
        }
        fn list(&self) -> Result<Listing, platform::Error> {
            Ok(Listing {
                connectors: Vec::new(),
                complete: true,
                problems: Vec::new(),
            })
        }
        fn report_status(&self, _: &str, _: Status) -> Result<(), platform::Error> {
            Ok(())
        }
        fn report_logs(&self, id: &str, _: &[String]) -> Result<(), platform::Error> {
            self.shipped.lock().unwrap().push(id.to_string());
            (self.answer)()
        }
        fn report_health(&self, _: &str, _: &Health) -> Result<(), platform::Error> {
            Ok(())
        }
    }

    struct Engine;

    impl Orchestrator for Engine {
        fn list(&self) -> Result<Vec<Workload>, orchestrator::Error> {
            Ok(Vec::new())
        }
        fn deploy(&self, _: &Spec) -> Result<(), orchestrator::Error> {
            Ok(())
        }
        fn refresh(&self, _: &Spec) -> Result<(), orchestrator::Error> {
            Ok(())
        }
        fn start(&self, _: &str) -> Result<(), orchestrator::Error> {
            Ok(())
        }
        fn stop(&self, _: &str) -> Result<(), orchestrator::Error> {
            Ok(())
        }
        fn remove(&self, _: &str) -> Result<(), orchestrator::Error> {
            Ok(())
        }
        fn logs(&self, _: &str, _: u32) -> Result<Vec<String>, orchestrator::Error> {
            Ok(vec!["a line".into()])
        }
    }

    fn platform(kind: PlatformKind, answer: fn() -> Result<(), platform::Error>) -> Arc<Plat> {
        Arc::new(Plat {
            kind,
            answer,
            shipped: Mutex::new(Vec::new()),
        })
    }

    fn job(p: &Arc<Plat>, id: &str) -> LogJob {
        LogJob {
            platform: Arc::clone(p) as Arc<dyn Platform>,
            orchestrator: Arc::new(Engine),
            connector_id: id.into(),
            workload: Some(format!("w-{id}")),
            notice: None,
        }
    }

    fn shipped(p: &Plat) -> Vec<String> {
        p.shipped.lock().unwrap().clone()
    }

    fn unreachable() -> Result<(), platform::Error> {
        Err(platform::Error::Transport {
            op: "logs",
            detail: "timed out".into(),
        })
    }

    #[test]
    fn an_unreachable_platform_costs_one_call_per_pause_and_never_holds_the_other() {
        let down = platform(PlatformKind::OpenCti, unreachable);
        let up = platform(PlatformKind::OpenAev, || Ok(()));
        let mut paused = HashMap::new();
        let now = Instant::now();
        for id in ["c1", "c2", "c3"] {
            ship(&job(&down, id), &mut paused, now);
            ship(&job(&up, &format!("a-{id}")), &mut paused, now);
        }
        assert_eq!(
            shipped(&down),
            ["c1"],
            "only the first job tried the hung platform"
        );
        assert_eq!(shipped(&up), ["a-c1", "a-c2", "a-c3"]);

        // After the pause the platform is tried again.
        ship(
            &job(&down, "c4"),
            &mut paused,
            now + UNREACHABLE_PAUSE + Duration::from_secs(1),
        );
        assert_eq!(shipped(&down), ["c1", "c4"]);
    }

    #[test]
    fn a_refused_report_pauses_nothing() {
        let refusing = platform(PlatformKind::OpenAev, || {
            Err(platform::Error::Status {
                op: "logs",
                code: 404,
                body: "no such connector".into(),
            })
        });
        let mut paused = HashMap::new();
        let now = Instant::now();
        ship(&job(&refusing, "a1"), &mut paused, now);
        ship(&job(&refusing, "a2"), &mut paused, now);
        assert_eq!(shipped(&refusing), ["a1", "a2"]);
        assert!(paused.is_empty());
    }

    #[test]
    fn a_success_lifts_the_pause() {
        let p = platform(PlatformKind::OpenCti, || Ok(()));
        let mut paused = HashMap::from([(PlatformKind::OpenCti, Instant::now())]);
        ship(
            &job(&p, "c1"),
            &mut paused,
            Instant::now() + Duration::from_millis(1),
        );
        assert_eq!(shipped(&p), ["c1"]);
        assert!(paused.is_empty());
    }
}
