//! Per-loop progress for the watchdog (and later `/healthz`): every long-lived
//! loop holds a `Beat` and says, before each step or wait, until when it is
//! allowed to stay silent. One stuck loop makes the whole process stale, so a
//! live loop can never hide a dead one.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One loop's promise: "you will hear from me before `deadline`".
#[derive(Debug)]
pub struct Beat {
    name: String,
    origin: Instant,
    /// Milliseconds after `origin`; `u64::MAX` = idle until woken (a pool worker
    /// waiting for a job cannot be stuck).
    deadline_ms: AtomicU64,
}

impl Beat {
    fn ms(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.origin).as_millis()).unwrap_or(u64::MAX)
    }

    /// The loop starts a step that may legitimately last `limit`.
    pub fn working(&self, limit: Duration) {
        let d = self.ms(Instant::now()).saturating_add(ms_of(limit));
        self.deadline_ms.store(d, Ordering::Relaxed);
    }

    /// The loop sleeps until `until`, then needs at most `limit` to beat again.
    pub fn waiting(&self, until: Instant, limit: Duration) {
        let d = self.ms(until).saturating_add(ms_of(limit));
        self.deadline_ms.store(d, Ordering::Relaxed);
    }

    /// The loop waits for work that may never come: never stale while so.
    pub fn idle(&self) {
        self.deadline_ms.store(u64::MAX, Ordering::Relaxed);
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// How far past its promise the loop is at `now`, if it is.
    fn overdue(&self, now: Instant) -> Option<Duration> {
        let deadline = self.deadline_ms.load(Ordering::Relaxed);
        let now = self.ms(now);
        (now > deadline).then(|| Duration::from_millis(now - deadline))
    }
}

fn ms_of(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Every loop's beat, for whoever judges liveness.
#[derive(Debug, Clone)]
pub struct Loops {
    origin: Instant,
    beats: Arc<Mutex<Vec<Arc<Beat>>>>,
}

impl Default for Loops {
    fn default() -> Self {
        Loops {
            origin: Instant::now(),
            beats: Arc::default(),
        }
    }
}

/// A loop that broke its promise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stale {
    pub name: String,
    pub overdue: Duration,
}

impl Loops {
    /// A new loop, fresh for `limit` from now.
    pub fn register(&self, name: &str, limit: Duration) -> Arc<Beat> {
        let beat = Arc::new(Beat {
            name: name.to_string(),
            origin: self.origin,
            deadline_ms: AtomicU64::new(0),
        });
        beat.working(limit);
        if let Ok(mut v) = self.beats.lock() {
            v.push(Arc::clone(&beat));
        }
        beat
    }

    /// The loops past their promise at `now`; empty = all fresh.
    pub fn stale(&self, now: Instant) -> Vec<Stale> {
        let Ok(beats) = self.beats.lock() else {
            return vec![Stale {
                name: "liveness registry".into(),
                overdue: Duration::ZERO,
            }];
        };
        beats
            .iter()
            .filter_map(|b| {
                b.overdue(now).map(|overdue| Stale {
                    name: b.name.clone(),
                    overdue,
                })
            })
            .collect()
    }

    pub fn names(&self) -> Vec<String> {
        self.beats
            .lock()
            .map(|v| v.iter().map(|b| b.name.clone()).collect())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_loop_is_fresh_until_its_promise_and_stale_after() {
        let loops = Loops::default();
        let a = loops.register("a", Duration::from_secs(5));
        let b = loops.register("b", Duration::from_secs(5));
        let now = Instant::now();
        assert!(loops.stale(now).is_empty());
        b.waiting(now + Duration::from_secs(60), Duration::from_secs(5));
        let later = now + Duration::from_secs(30);
        let stale = loops.stale(later);
        assert_eq!(stale.len(), 1);
        assert_eq!(stale[0].name, "a");
        assert!(stale[0].overdue >= Duration::from_secs(24));
        a.working(Duration::from_secs(100));
        assert!(loops.stale(later).is_empty());
        assert_eq!(loops.stale(now + Duration::from_secs(70)).len(), 1);
    }

    #[test]
    fn an_idle_loop_is_never_stale() {
        let loops = Loops::default();
        let w = loops.register("worker-0", Duration::ZERO);
        w.idle();
        assert!(
            loops
                .stale(Instant::now() + Duration::from_secs(86_400))
                .is_empty()
        );
        w.working(Duration::from_secs(1));
        assert_eq!(
            loops.stale(Instant::now() + Duration::from_secs(10))[0].name,
            "worker-0"
        );
        assert_eq!(loops.names(), ["worker-0"]);
    }
}
