//! What the composer shows about itself: the board the loops publish to
//! (per-platform pictures, counters), read by the HTTP listener (`server`) for
//! `/healthz`, `/readyz`, `/metrics` and `/status`. Publishing is a short
//! lock or an atomic add; the listener copies under the lock and formats
//! outside it, so a reader never holds a loop. Nothing here holds a secret:
//! connector ids, names, image-free states and error texts that name no value.

pub mod counted;
pub mod process;
pub mod render;
pub mod report;
pub mod server;
pub mod table;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, SystemTime};

use crate::alive;
use crate::executor::ActionError;
use crate::orchestrator::{Workload, WorkloadState};
use crate::platform::{PlatformKind, Requested, Status};
use crate::reconcile::{self, ActionKind, Desired, Memory};

/// Upper bounds (seconds) of the action duration histogram.
pub const ACTION_BUCKETS: [f64; 10] = [0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0];

/// Counts and sums of one action kind and outcome.
#[derive(Debug, Clone, Default)]
pub struct Histogram {
    /// Per bucket of `ACTION_BUCKETS`, not cumulative.
    pub buckets: [u64; ACTION_BUCKETS.len()],
    pub count: u64,
    pub sum: f64,
}

impl Histogram {
    fn observe(&mut self, seconds: f64) {
        if let Some(i) = ACTION_BUCKETS.iter().position(|b| seconds <= *b) {
            self.buckets[i] += 1;
        }
        self.count += 1;
        self.sum += seconds;
    }
}

/// The last action done for a connector.
#[derive(Debug, Clone)]
pub struct LastAction {
    pub kind: ActionKind,
    pub ok: bool,
    pub at: SystemTime,
    /// The failure, naming no secret.
    pub error: Option<String>,
}

/// One connector as the platform loop last saw it.
#[derive(Debug, Clone)]
pub struct ConnectorView {
    pub id: String,
    pub name: String,
    /// The expected workload name.
    pub workload: String,
    pub requested: Requested,
    /// What the platform shows (`None`: never reported).
    pub platform_status: Option<Status>,
    /// `running`, `stopped`, `restarting` or `missing` (no workload).
    pub actual: &'static str,
    pub restart_count: u32,
    /// Not deployable (a value could not be decrypted): the reason.
    pub problem: Option<String>,
    /// Failed change: kind, attempts, next try, error.
    pub backoff: Option<reconcile::Backoff>,
}

/// One platform's picture.
#[derive(Debug, Clone, Default)]
pub struct PlatformView {
    /// Shared with the alive thread (registration).
    pub alive: Option<Arc<alive::Shared>>,
    /// The last listing (and workload list) succeeded.
    pub listing_ok: Option<bool>,
    pub last_listing: Option<SystemTime>,
    /// Observe + plan of the last cycle.
    pub cycle: Option<Duration>,
    pub cycles: u64,
    pub connectors: Vec<ConnectorView>,
    /// Workloads of this platform by state.
    pub workloads: BTreeMap<&'static str, u64>,
    pub last_actions: HashMap<String, LastAction>,
    /// The last summary said, without its timings.
    said: String,
}

impl PlatformView {
    pub fn registered(&self) -> bool {
        self.alive.as_ref().is_some_and(|a| a.registered())
    }
}

/// Counters keyed by (platform, kind or operation, outcome).
type Key3 = (&'static str, &'static str, &'static str);

#[derive(Debug, Default)]
struct Inner {
    platforms: BTreeMap<&'static str, PlatformView>,
    actions: BTreeMap<Key3, Histogram>,
    requests: BTreeMap<Key3, u64>,
}

/// Everything published. One per process (`board()`): counters are
/// process-wide, like the `/proc` figures beside them.
#[derive(Debug, Default)]
pub struct Board {
    inner: Mutex<Inner>,
    pub decrypt_ok: AtomicU64,
    pub decrypt_failed: AtomicU64,
    pub decrypt_cache_hits: AtomicU64,
    pub log_lines_shipped: AtomicU64,
}

/// The process's board.
pub fn board() -> &'static Board {
    static BOARD: OnceLock<Board> = OnceLock::new();
    BOARD.get_or_init(Board::default)
}

/// A copy of the board for one answer.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub platforms: BTreeMap<&'static str, PlatformView>,
    pub actions: BTreeMap<Key3, Histogram>,
    pub requests: BTreeMap<Key3, u64>,
    pub decrypt_ok: u64,
    pub decrypt_failed: u64,
    pub decrypt_cache_hits: u64,
    pub log_lines_shipped: u64,
}

fn state_name(s: WorkloadState) -> &'static str {
    match s {
        WorkloadState::Running => "running",
        WorkloadState::Restarting => "restarting",
        WorkloadState::Stopped => "stopped",
    }
}

impl Board {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic elsewhere ends the process (main's hook); the data stays usable.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A platform loop starts: readiness waits for it.
    pub fn attach(&self, kind: PlatformKind, alive: Arc<alive::Shared>) {
        self.lock()
            .platforms
            .entry(kind.as_str())
            .or_default()
            .alive = Some(alive);
    }

    /// The listing or the workload list failed.
    pub fn listing_failed(&self, kind: PlatformKind) {
        self.lock()
            .platforms
            .entry(kind.as_str())
            .or_default()
            .listing_ok = Some(false);
    }

    /// A cycle observed and planned: the new picture. Logs one summary line
    /// when the counts changed.
    pub fn seen(&self, kind: PlatformKind, seen: Seen<'_>, took: Duration) {
        let now = SystemTime::now();
        let connectors = views(kind, &seen);
        let mut workloads = BTreeMap::new();
        for w in seen.workloads.iter().filter(|w| is_of(w, kind)) {
            *workloads.entry(state_name(w.state)).or_insert(0) += 1;
        }
        let mut inner = self.lock();
        let p = inner.platforms.entry(kind.as_str()).or_default();
        let live: HashSet<&str> = connectors.iter().map(|c| c.id.as_str()).collect();
        p.last_actions.retain(|id, _| live.contains(id.as_str()));
        p.listing_ok = Some(true);
        p.last_listing = Some(now);
        p.cycle = Some(took);
        p.cycles += 1;
        p.workloads = workloads;
        p.connectors = connectors;
        let (key, line) = summary(kind, &p.connectors, now);
        if key != p.said {
            p.said = key;
            drop(inner);
            log::info!(target: "xtm_composer::summary", platform = kind.as_str(); "{line}");
        }
    }

    /// One action finished.
    pub fn action(
        &self,
        kind: PlatformKind,
        connector: &str,
        action: ActionKind,
        result: &Result<(), ActionError>,
        elapsed: Duration,
    ) {
        let outcome = if result.is_ok() { "ok" } else { "error" };
        let mut inner = self.lock();
        inner
            .actions
            .entry((kind.as_str(), action.as_str(), outcome))
            .or_default()
            .observe(elapsed.as_secs_f64());
        let p = inner.platforms.entry(kind.as_str()).or_default();
        p.last_actions.insert(
            connector.to_string(),
            LastAction {
                kind: action,
                ok: result.is_ok(),
                at: SystemTime::now(),
                error: result.as_ref().err().map(ToString::to_string),
            },
        );
    }

    /// One engine request finished.
    pub fn request(&self, kind: PlatformKind, op: &'static str, outcome: &'static str) {
        *self
            .lock()
            .requests
            .entry((kind.as_str(), op, outcome))
            .or_insert(0) += 1;
    }

    /// Counts a decryption (`hit`: served from the cache).
    pub fn decrypted(&self, ok: bool, hit: bool) {
        let c = match (ok, hit) {
            (_, true) => &self.decrypt_cache_hits,
            (true, false) => &self.decrypt_ok,
            (false, false) => &self.decrypt_failed,
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts log lines shipped to a platform.
    pub fn shipped(&self, lines: usize) {
        let n = u64::try_from(lines).unwrap_or(u64::MAX);
        self.log_lines_shipped.fetch_add(n, Ordering::Relaxed);
    }

    /// A copy of everything, for one answer.
    pub fn snapshot(&self) -> Snapshot {
        let inner = self.lock();
        Snapshot {
            platforms: inner.platforms.clone(),
            actions: inner.actions.clone(),
            requests: inner.requests.clone(),
            decrypt_ok: self.decrypt_ok.load(Ordering::Relaxed),
            decrypt_failed: self.decrypt_failed.load(Ordering::Relaxed),
            decrypt_cache_hits: self.decrypt_cache_hits.load(Ordering::Relaxed),
            log_lines_shipped: self.log_lines_shipped.load(Ordering::Relaxed),
        }
    }
}

/// What one cycle observed and planned.
pub struct Seen<'a> {
    pub desired: &'a [Desired],
    pub workloads: &'a [Workload],
    pub memory: &'a Memory,
    pub name_prefix: Option<&'a str>,
}

fn is_of(w: &Workload, kind: PlatformKind) -> bool {
    match w.platform.as_deref() {
        Some(p) => p == kind.as_str(),
        None => kind == PlatformKind::OpenCti,
    }
}

fn views(kind: PlatformKind, seen: &Seen<'_>) -> Vec<ConnectorView> {
    let by_name: HashMap<&str, &Workload> = seen
        .workloads
        .iter()
        .filter(|w| is_of(w, kind))
        .map(|w| (w.name.as_str(), w))
        .collect();
    seen.desired
        .iter()
        .map(|d| {
            let c = &d.connector;
            let workload = reconcile::expected_name(seen.name_prefix, c);
            let w = by_name
                .get(workload.as_str())
                .filter(|w| w.connector_id.as_deref() == Some(c.id.as_str()));
            ConnectorView {
                id: c.id.clone(),
                name: c.name.clone(),
                requested: c.requested,
                platform_status: c.current_status,
                actual: w.map_or("missing", |w| state_name(w.state)),
                restart_count: w.map_or(0, |w| w.restart_count),
                problem: d.env.as_ref().err().cloned(),
                backoff: seen.memory.backoff(&c.id).cloned(),
                workload,
            }
        })
        .collect()
}

/// `opencti: 50 connectors: 48 running, 1 stopped, 1 failing (deploy, next
/// try in 40 s)`, and the same without timings (to say it only on change).
pub fn summary(kind: PlatformKind, cs: &[ConnectorView], now: SystemTime) -> (String, String) {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    let mut failing = Vec::new();
    for c in cs {
        match &c.backoff {
            Some(b) => failing.push(b),
            None => *counts.entry(c.actual).or_insert(0) += 1,
        }
    }
    let mut parts: Vec<String> = counts.iter().map(|(s, n)| format!("{n} {s}")).collect();
    let mut key = parts.join(", ");
    if !failing.is_empty() {
        let kinds: Vec<&str> = failing.iter().map(|b| b.kind.as_str()).collect();
        key.push_str(&format!(" {} failing {kinds:?}", failing.len()));
        let next = failing.iter().map(|b| b.next_at).min().unwrap_or(now);
        let wait = next.duration_since(now).unwrap_or_default().as_secs();
        let kind0 = kinds.first().copied().unwrap_or("change");
        let more = if kinds.len() > 1 { ", …" } else { "" };
        parts.push(format!(
            "{} failing ({kind0}{more}, next try in {wait} s)",
            failing.len()
        ));
    }
    let line = format!(
        "{kind}: {} connector{}: {}",
        cs.len(),
        if cs.len() == 1 { "" } else { "s" },
        if parts.is_empty() {
            "none".to_string()
        } else {
            parts.join(", ")
        }
    );
    (format!("{} {key}", cs.len()), line)
}

#[cfg(test)]
mod tests;
