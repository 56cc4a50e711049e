//! The engine's change stream (`GET /events`) for Docker, Portainer and Swarm:
//! followed in windows (`since`/`until`), so every read is bounded by a timeout
//! and nothing is missed between two windows. An event about a workload of
//! this manager wakes its platform loop; a reconnect after an outage wakes it
//! too (events of the outage are lost with it, so the loop relists).

use std::io::{BufRead, BufReader, Read};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crossbeam_channel::{Receiver, after, select};
use ureq::http::Method;

use super::client::{Client, Payload, encode, expect_success};
use super::wire;
use crate::orchestrator::Error;

/// One window of the stream; the engine closes it at `until`.
pub(crate) const WINDOW: Duration = Duration::from_secs(30);
/// An event line longer than this is not an event: the stream is dropped.
const MAX_LINE: u64 = 64 * 1024;
/// Reconnect delays: 1 s, 2 s, 4 s … up to 30 s.
pub(crate) const RETRY_FIRST: Duration = Duration::from_secs(1);
pub(crate) const RETRY_CAP: Duration = Duration::from_secs(30);

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// What a follower does with what it hears.
pub(crate) trait Listener {
    /// The stream is (again) connected; `after_outage` = events may have been missed.
    fn connected(&self, after_outage: bool);
    /// An event about the object `id` (container or service).
    fn event(&self, id: &str, action: &str);
    /// The stream is down; polling is all there is until it is back.
    fn lost(&self);
}

/// Reads one window of events of `kind` labelled `label`, from `since` to `until`.
#[allow(clippy::too_many_arguments)]
fn window(
    client: &Client,
    kind: &str,
    label: Option<&str>,
    since: u64,
    until: u64,
    listener: &dyn Listener,
    after_outage: bool,
    live: &AtomicBool,
) -> Result<(), Error> {
    const OP: &str = "follow events";
    let filters = match label {
        Some(l) => serde_json::json!({"type": [kind], "label": [l]}),
        None => serde_json::json!({"type": [kind]}),
    }
    .to_string();
    let path = format!(
        "/events?since={since}&until={until}&filters={}",
        encode(&filters)
    );
    let timeout = Duration::from_secs(until.saturating_sub(now_secs())) + Duration::from_secs(15);
    let resp = client.call(OP, Method::GET, &path, Payload::Empty, None, Some(timeout))?;
    let body = expect_success(OP, "/events", resp)?.into_body();
    live.store(true, Ordering::Relaxed);
    listener.connected(after_outage);
    let mut reader = BufReader::new(body.into_reader());
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = (&mut reader)
            .take(MAX_LINE)
            .read_until(b'\n', &mut line)
            .map_err(|e| Error::Transport {
                op: OP,
                detail: e.to_string(),
            })?;
        if n == 0 {
            return Ok(());
        }
        if line.last() != Some(&b'\n') && n as u64 >= MAX_LINE {
            return Err(Error::Decode {
                op: OP,
                detail: format!("an event line longer than {MAX_LINE} bytes"),
            });
        }
        let text = String::from_utf8_lossy(&line);
        if text.trim().is_empty() {
            continue;
        }
        match serde_json::from_slice::<wire::Event>(text.trim().as_bytes()) {
            Ok(e) if !e.actor.id.is_empty() => listener.event(&e.actor.id, &e.action),
            Ok(_) => {}
            Err(e) => log::debug!("unreadable engine event skipped: {e}"),
        }
    }
}

/// Follows the stream until `stop` closes; reconnects with backoff. `live` is
/// true while a window is open (callers trust their caches only then). The
/// engine matches `label` against the object's attributes: container events
/// carry the container's labels, service events do not (only the name), so
/// Swarm follows every service event and relists on each.
pub(crate) fn follow(
    client: &Client,
    kind: &str,
    label: Option<&str>,
    listener: &dyn Listener,
    live: &AtomicBool,
    stop: &Receiver<()>,
) {
    let mut since = now_secs();
    let mut failures = 0u32;
    loop {
        if matches!(
            stop.try_recv(),
            Err(crossbeam_channel::TryRecvError::Disconnected)
        ) {
            return;
        }
        let until = now_secs() + WINDOW.as_secs();
        match window(
            client,
            kind,
            label,
            since,
            until,
            listener,
            failures > 0,
            live,
        ) {
            Ok(()) => {
                if failures > 0 {
                    log::info!("engine events: following again after {failures} failed attempt(s)");
                }
                failures = 0;
                since = until;
            }
            Err(e) => {
                live.store(false, Ordering::Relaxed);
                listener.lost();
                failures = failures.saturating_add(1);
                let delay = crate::time::doubling(RETRY_FIRST, failures, RETRY_CAP);
                if failures == 1 {
                    log::warn!(
                        "engine events unavailable ({e}); polling only, retrying in {} s",
                        delay.as_secs()
                    );
                } else {
                    log::debug!("engine events still unavailable ({e})");
                }
                since = now_secs();
                select! {
                    recv(stop) -> _ => return,
                    recv(after(delay)) -> _ => {}
                }
            }
        }
    }
}
