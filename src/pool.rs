//! The worker pool: `manager.max_parallel` threads, created once, that run
//! jobs (one connector's actions each) off the platform loops. Submitting
//! never blocks: a full queue is an answer, and the connector is planned
//! again next cycle. Each worker has a liveness beat bounded by its job's limit.

use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Sender, TrySendError, bounded};

use crate::liveness::Loops;

/// A unit of work and the longest it may legitimately take.
pub struct Job {
    pub limit: Duration,
    pub work: Box<dyn FnOnce() + Send>,
}

/// The job was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Every worker is busy and the queue is full.
    Full,
    /// The pool is shutting down.
    Closed,
}

/// A fixed set of worker threads. Dropping the pool closes its queue; workers
/// finish the job in hand and end.
pub struct Pool {
    queue: Sender<Job>,
    workers: Vec<JoinHandle<()>>,
}

/// Stack of a worker thread: an action is a few HTTP calls and JSON bodies.
const WORKER_STACK: usize = 256 * 1024;

impl Pool {
    /// Starts `size` workers (at least one) with room for `queue` waiting jobs.
    ///
    /// # Errors
    /// A thread could not be spawned.
    pub fn new(size: usize, queue: usize, loops: &Loops) -> std::io::Result<Pool> {
        let (tx, rx) = bounded::<Job>(queue.max(1));
        let mut workers = Vec::new();
        for i in 0..size.max(1) {
            let rx = rx.clone();
            let beat = loops.register(&format!("worker-{i}"), Duration::ZERO);
            beat.idle();
            let handle = std::thread::Builder::new()
                .name(format!("worker-{i}"))
                .stack_size(WORKER_STACK)
                .spawn(move || {
                    for job in rx.iter() {
                        beat.working(job.limit);
                        (job.work)();
                        beat.idle();
                    }
                })?;
            workers.push(handle);
        }
        Ok(Pool { queue: tx, workers })
    }

    /// A handle that submits to this pool (for each platform loop).
    pub fn handle(&self) -> Handle {
        Handle {
            queue: self.queue.clone(),
        }
    }

    /// Closes the queue and returns the workers to join (jobs still queued are
    /// dropped with it: the next process plans them again).
    pub fn close(self) -> Vec<JoinHandle<()>> {
        drop(self.queue);
        self.workers
    }
}

/// Submits to a pool from another thread.
#[derive(Clone)]
pub struct Handle {
    queue: Sender<Job>,
}

impl Handle {
    /// Queues `job` without waiting.
    ///
    /// # Errors
    /// The queue is full or closed; the job is dropped.
    pub fn submit(&self, job: Job) -> Result<(), Refused> {
        self.queue.try_send(job).map_err(|e| match e {
            TrySendError::Full(_) => Refused::Full,
            TrySendError::Disconnected(_) => Refused::Closed,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Instant;

    #[test]
    fn jobs_run_on_at_most_size_threads_and_submitting_never_waits() {
        let loops = Loops::default();
        let pool = Pool::new(2, 1, &loops).unwrap();
        let (gate_tx, gate) = bounded::<()>(0);
        let running = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let job = |gate: crossbeam_channel::Receiver<()>| {
            let (running, peak) = (Arc::clone(&running), Arc::clone(&peak));
            Job {
                limit: Duration::from_secs(60),
                work: Box::new(move || {
                    let n = running.fetch_add(1, Ordering::SeqCst) + 1;
                    peak.fetch_max(n, Ordering::SeqCst);
                    let _ = gate.recv();
                    running.fetch_sub(1, Ordering::SeqCst);
                }),
            }
        };
        let wait_for = |n: usize| {
            let t = Instant::now();
            while running.load(Ordering::SeqCst) < n && t.elapsed() < Duration::from_secs(5) {
                std::thread::sleep(Duration::from_millis(5));
            }
        };
        pool.handle().submit(job(gate.clone())).unwrap();
        wait_for(1);
        pool.handle().submit(job(gate.clone())).unwrap();
        // Both workers now hold a job; then the queue's one place is taken.
        wait_for(2);
        pool.handle().submit(job(gate.clone())).unwrap();
        let t = Instant::now();
        assert_eq!(pool.handle().submit(job(gate.clone())), Err(Refused::Full));
        assert!(t.elapsed() < Duration::from_secs(1));
        // Busy workers are within their limit: fresh.
        assert!(loops.stale(Instant::now()).is_empty());
        assert_eq!(
            loops.stale(Instant::now() + Duration::from_secs(120)).len(),
            2
        );
        drop(gate);
        drop(gate_tx);
        for w in pool.close() {
            w.join().unwrap();
        }
        assert_eq!(peak.load(Ordering::SeqCst), 2);
        assert!(
            loops
                .stale(Instant::now() + Duration::from_secs(3600))
                .is_empty()
        );
    }
}
