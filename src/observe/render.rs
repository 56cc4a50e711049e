//! The answers of the listener, from a `Snapshot`: Prometheus text exposition
//! 0.0.4 (`xtm_composer_` prefix, plus the standard `process_*`), the
//! `/status` JSON, and the health and readiness verdicts. Pure but for the
//! clock and `/proc` read by the caller. Labels carry ids, names and fixed
//! words only: never an env value.

use std::fmt::Write;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use super::process::Process;
use super::{ACTION_BUCKETS, Snapshot};
use crate::liveness::Loops;
use crate::platform::{Requested, Status};

/// The commit the binary was built from (`build.rs`).
pub const COMMIT: &str = env!("XTM_COMMIT");

/// An escaped label value (backslash, double quote, newline).
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn epoch(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
}

struct Text(String);

impl Text {
    fn head(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}");
        let _ = writeln!(self.0, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.0.push_str(name);
        if !labels.is_empty() {
            let ls: Vec<String> = labels
                .iter()
                .map(|(k, v)| format!("{k}=\"{}\"", label(v)))
                .collect();
            let _ = write!(self.0, "{{{}}}", ls.join(","));
        }
        let _ = writeln!(self.0, " {value}");
    }
}

fn requested(r: Requested) -> &'static str {
    match r {
        Requested::Starting => "starting",
        Requested::Stopping => "stopping",
    }
}

/// `/metrics`.
pub fn metrics(s: &Snapshot, proc: Option<&Process>) -> String {
    let mut t = Text(String::new());
    t.head(
        "xtm_composer_build_info",
        "gauge",
        "Version and commit of the running binary.",
    );
    let version = env!("CARGO_PKG_VERSION");
    t.sample(
        "xtm_composer_build_info",
        &[("version", version), ("commit", COMMIT)],
        1.0,
    );
    platforms(&mut t, s);
    connectors(&mut t, s);
    actions(&mut t, s);
    t.head(
        "xtm_composer_engine_requests_total",
        "counter",
        "Engine (Docker, Portainer, Swarm, Kubernetes) requests by operation and outcome.",
    );
    for ((p, op, outcome), n) in &s.requests {
        let labels = [("platform", *p), ("operation", *op), ("outcome", *outcome)];
        t.sample("xtm_composer_engine_requests_total", &labels, *n as f64);
    }
    t.head(
        "xtm_composer_decryptions_total",
        "counter",
        "Connector secret decryptions (RSA) by outcome.",
    );
    t.sample(
        "xtm_composer_decryptions_total",
        &[("outcome", "ok")],
        s.decrypt_ok as f64,
    );
    t.sample(
        "xtm_composer_decryptions_total",
        &[("outcome", "error")],
        s.decrypt_failed as f64,
    );
    t.head(
        "xtm_composer_decryption_cache_hits_total",
        "counter",
        "Decryptions served from the cache.",
    );
    t.sample(
        "xtm_composer_decryption_cache_hits_total",
        &[],
        s.decrypt_cache_hits as f64,
    );
    t.head(
        "xtm_composer_log_lines_shipped_total",
        "counter",
        "Connector log lines shipped to the platforms.",
    );
    t.sample(
        "xtm_composer_log_lines_shipped_total",
        &[],
        s.log_lines_shipped as f64,
    );
    if let Some(p) = proc {
        process(&mut t, p);
    }
    t.0
}

/// A per-platform gauge: name, help, value.
type Gauge = (
    &'static str,
    &'static str,
    fn(&super::PlatformView) -> Option<f64>,
);

fn platforms(t: &mut Text, s: &Snapshot) {
    let gauges: [Gauge; 4] = [
        (
            "xtm_composer_platform_up",
            "1 when the last connector listing and workload list succeeded.",
            |p| Some(f64::from(u8::from(p.listing_ok == Some(true)))),
        ),
        (
            "xtm_composer_platform_registered",
            "1 while the manager is registered with the platform.",
            |p| Some(f64::from(u8::from(p.registered()))),
        ),
        (
            "xtm_composer_last_listing_timestamp_seconds",
            "Time of the last successful listing, seconds since the epoch.",
            |p| p.last_listing.map(epoch),
        ),
        (
            "xtm_composer_cycle_duration_seconds",
            "Observe and plan time of the last reconcile cycle.",
            |p| p.cycle.map(|d| d.as_secs_f64()),
        ),
    ];
    for (name, help, value) in gauges {
        t.head(name, "gauge", help);
        for (kind, p) in &s.platforms {
            if let Some(v) = value(p) {
                t.sample(name, &[("platform", kind)], v);
            }
        }
    }
    t.head(
        "xtm_composer_cycles_total",
        "counter",
        "Reconcile cycles that observed and planned.",
    );
    for (kind, p) in &s.platforms {
        t.sample(
            "xtm_composer_cycles_total",
            &[("platform", kind)],
            p.cycles as f64,
        );
    }
}

fn connectors(t: &mut Text, s: &Snapshot) {
    t.head(
        "xtm_composer_connectors",
        "gauge",
        "Connectors listed by the platform, by requested and actual status.",
    );
    for (kind, p) in &s.platforms {
        let mut counts: std::collections::BTreeMap<(&str, &str), u64> = Default::default();
        for c in &p.connectors {
            *counts
                .entry((requested(c.requested), c.actual))
                .or_insert(0) += 1;
        }
        for ((req, actual), n) in counts {
            let labels = [("platform", *kind), ("requested", req), ("actual", actual)];
            t.sample("xtm_composer_connectors", &labels, n as f64);
        }
    }
    t.head(
        "xtm_composer_connector_restarts",
        "gauge",
        "Restart count of a connector's workload, as the engine reports it.",
    );
    for (kind, p) in &s.platforms {
        for c in p.connectors.iter().filter(|c| c.actual != "missing") {
            let labels = [("platform", *kind), ("connector", c.id.as_str())];
            t.sample(
                "xtm_composer_connector_restarts",
                &labels,
                f64::from(c.restart_count),
            );
        }
    }
    t.head(
        "xtm_composer_connector_failed_attempts",
        "gauge",
        "Consecutive failed attempts of a connector's change while it backs off.",
    );
    for (kind, p) in &s.platforms {
        for c in &p.connectors {
            if let Some(b) = &c.backoff {
                let labels = [
                    ("platform", *kind),
                    ("connector", c.id.as_str()),
                    ("action", b.kind.as_str()),
                ];
                t.sample(
                    "xtm_composer_connector_failed_attempts",
                    &labels,
                    f64::from(b.attempts),
                );
            }
        }
    }
    t.head(
        "xtm_composer_workloads",
        "gauge",
        "Workloads of this manager by state.",
    );
    for (kind, p) in &s.platforms {
        for (state, n) in &p.workloads {
            t.sample(
                "xtm_composer_workloads",
                &[("platform", kind), ("state", state)],
                *n as f64,
            );
        }
    }
    t.head(
        "xtm_composer_connectors_in_backoff",
        "gauge",
        "Connectors whose last change failed and waits for its retry.",
    );
    for (kind, p) in &s.platforms {
        let n = p.connectors.iter().filter(|c| c.backoff.is_some()).count();
        t.sample(
            "xtm_composer_connectors_in_backoff",
            &[("platform", kind)],
            n as f64,
        );
    }
}

fn actions(t: &mut Text, s: &Snapshot) {
    t.head(
        "xtm_composer_actions_total",
        "counter",
        "Actions done, by kind and outcome.",
    );
    for ((p, kind, outcome), h) in &s.actions {
        let labels = [("platform", *p), ("kind", *kind), ("outcome", *outcome)];
        t.sample("xtm_composer_actions_total", &labels, h.count as f64);
    }
    let name = "xtm_composer_action_duration_seconds";
    t.head(
        name,
        "histogram",
        "Time an action took, by kind and outcome.",
    );
    for ((p, kind, outcome), h) in &s.actions {
        let mut cumulative = 0;
        for (i, le) in ACTION_BUCKETS.iter().enumerate() {
            cumulative += h.buckets[i];
            let le = le.to_string();
            let labels = [
                ("platform", *p),
                ("kind", *kind),
                ("outcome", *outcome),
                ("le", &le),
            ];
            t.sample(&format!("{name}_bucket"), &labels, cumulative as f64);
        }
        let labels = [
            ("platform", *p),
            ("kind", *kind),
            ("outcome", *outcome),
            ("le", "+Inf"),
        ];
        t.sample(&format!("{name}_bucket"), &labels, h.count as f64);
        let labels = [("platform", *p), ("kind", *kind), ("outcome", *outcome)];
        t.sample(&format!("{name}_sum"), &labels, h.sum);
        t.sample(&format!("{name}_count"), &labels, h.count as f64);
    }
}

fn process(t: &mut Text, p: &Process) {
    let rows: [(&str, &str, &str, Option<f64>); 6] = [
        (
            "process_cpu_seconds_total",
            "counter",
            "Total user and system CPU time spent in seconds.",
            p.cpu_seconds,
        ),
        (
            "process_resident_memory_bytes",
            "gauge",
            "Resident memory size in bytes.",
            p.resident_bytes,
        ),
        (
            "process_start_time_seconds",
            "gauge",
            "Start time of the process since unix epoch in seconds.",
            p.start_time,
        ),
        (
            "process_open_fds",
            "gauge",
            "Number of open file descriptors.",
            p.open_fds,
        ),
        (
            "process_max_fds",
            "gauge",
            "Maximum number of open file descriptors.",
            p.max_fds,
        ),
        (
            "process_threads",
            "gauge",
            "Number of OS threads in the process.",
            p.threads,
        ),
    ];
    for (name, kind, help, value) in rows {
        if let Some(v) = value {
            t.head(name, kind, help);
            t.sample(name, &[], v);
        }
    }
}

fn rfc3339(t: SystemTime) -> String {
    crate::time::format_rfc3339(t)
}

/// `/status`: every connector of every platform.
pub fn status(s: &Snapshot, now: SystemTime) -> Value {
    let mut connectors = Vec::new();
    let mut platforms = serde_json::Map::new();
    for (kind, p) in &s.platforms {
        platforms.insert(
            kind.to_string(),
            json!({
                "registered": p.registered(),
                "listing_ok": p.listing_ok,
                "last_listing": p.last_listing.map(rfc3339),
                "connectors": p.connectors.len(),
            }),
        );
        for c in &p.connectors {
            let last = p.last_actions.get(&c.id);
            let last_error = c
                .backoff
                .as_ref()
                .map(|b| b.error.clone())
                .or_else(|| last.and_then(|l| l.error.clone()))
                .or_else(|| c.problem.clone());
            let next = c.backoff.as_ref().map(|b| b.next_at);
            connectors.push(json!({
                "platform": kind,
                "id": c.id,
                "name": c.name,
                "workload": c.workload,
                "requested": requested(c.requested),
                "platform_status": c.platform_status.map(Status::as_str),
                "actual": c.actual,
                "restart_count": c.restart_count,
                "last_action": last.map(|l| l.kind.as_str()),
                "last_outcome": last.map(|l| if l.ok { "ok" } else { "error" }),
                "last_action_at": last.map(|l| rfc3339(l.at)),
                "last_error": last_error,
                "attempts": c.backoff.as_ref().map(|b| b.attempts),
                "next_retry": next.map(rfc3339),
                "next_retry_in_s": next.map(|n| n.duration_since(now).unwrap_or_default().as_secs()),
            }));
        }
    }
    json!({
        "version": env!("CARGO_PKG_VERSION"),
        "platforms": platforms,
        "connectors": connectors,
    })
}

/// `/healthz`: `Ok` while every loop keeps its promise, else the stale ones.
pub fn health(loops: &Loops, now: Instant) -> Result<String, String> {
    let stale = loops.stale(now);
    if stale.is_empty() {
        return Ok(format!(
            "ok: {} loop(s) making progress\n",
            loops.names().len()
        ));
    }
    let names: Vec<String> = stale
        .iter()
        .map(|s| format!("{} ({} s overdue)", s.name, s.overdue.as_secs()))
        .collect();
    Err(format!("stale: {}\n", names.join(", ")))
}

/// `/readyz`: `Ok` once every started platform is registered and its last
/// listing succeeded.
pub fn ready(s: &Snapshot) -> Result<String, String> {
    if s.platforms.values().all(|p| p.alive.is_none()) {
        return Err("not ready: no platform loop started\n".into());
    }
    let waiting: Vec<String> = s
        .platforms
        .iter()
        .filter(|(_, p)| p.alive.is_some())
        .filter_map(|(kind, p)| match (p.registered(), p.listing_ok) {
            (true, Some(true)) => None,
            (false, _) => Some(format!("{kind}: not registered")),
            (true, Some(false)) => Some(format!("{kind}: last listing failed")),
            (true, None) => Some(format!("{kind}: no listing yet")),
        })
        .collect();
    if waiting.is_empty() {
        Ok("ready\n".into())
    } else {
        Err(format!("not ready: {}\n", waiting.join(", ")))
    }
}
