//! The local copy of this manager's Deployments and pods, kept by watching
//! (issue 11): per resource, one listing, then `?watch=1` from the listing's
//! resourceVersion (bookmarks move it on), a relist after `410 Gone`, after a
//! broken stream and every `RESYNC`. `list()` reads the copy while both
//! resources are in sync, so an idle cycle asks the API server nothing.

use std::collections::BTreeMap;
use std::io::BufReader;
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, TryRecvError, after, select};
use serde::de::DeserializeOwned;

use super::client::Client;
use super::wire;
use crate::orchestrator::Error;
use crate::orchestrator::lines::Lines;

/// How long one watch request stays open; the next resumes where it ended.
pub(crate) const WINDOW: Duration = Duration::from_secs(60);
/// A full relist at least this often, whatever the watches say.
pub(crate) const RESYNC: Duration = Duration::from_secs(5 * 60);
/// How long `snapshot` waits for the echo of the composer's own write.
pub(crate) const ECHO_WAIT: Duration = Duration::from_secs(1);
/// A watch line longer than this is not an event: the stream is dropped.
const MAX_EVENT: u64 = 4 * 1024 * 1024;
const RETRY_FIRST: Duration = Duration::from_secs(1);
const RETRY_CAP: Duration = Duration::from_secs(30);

/// An object kind the composer watches.
pub(crate) trait Watched: DeserializeOwned + Clone {
    /// The path segment: `deployments`, `pods`.
    const RESOURCE: &'static str;
    /// The composer writes this kind, so its events settle `Inner::pending`.
    const WRITTEN: bool;
    fn meta(&self) -> &wire::ObjectMeta;
    /// Lists the kind: objects and the list's resourceVersion.
    ///
    /// # Errors
    /// As the client's listing.
    fn list(client: &Client, selector: &str) -> Result<(Vec<Self>, String), Error>;
    fn store(inner: &mut Inner) -> &mut Store<Self>;
}

impl Watched for wire::Deployment {
    const RESOURCE: &'static str = "deployments";
    const WRITTEN: bool = true;
    fn meta(&self) -> &wire::ObjectMeta {
        &self.metadata
    }
    fn list(client: &Client, selector: &str) -> Result<(Vec<Self>, String), Error> {
        let l = client.list_deployments(selector)?;
        Ok((l.items, l.metadata.resource_version))
    }
    fn store(inner: &mut Inner) -> &mut Store<Self> {
        &mut inner.deployments
    }
}

impl Watched for wire::Pod {
    const RESOURCE: &'static str = "pods";
    const WRITTEN: bool = false;
    fn meta(&self) -> &wire::ObjectMeta {
        &self.metadata
    }
    fn list(client: &Client, selector: &str) -> Result<(Vec<Self>, String), Error> {
        let l = client.list_pods(selector)?;
        Ok((l.items, l.metadata.resource_version))
    }
    fn store(inner: &mut Inner) -> &mut Store<Self> {
        &mut inner.pods
    }
}

/// The copy of one resource; `synced` while its watch is current, `listed`
/// once a listing filled it.
pub(crate) struct Store<T> {
    items: BTreeMap<String, T>,
    synced: bool,
    listed: bool,
}

impl<T> Default for Store<T> {
    fn default() -> Self {
        Store {
            items: BTreeMap::new(),
            synced: false,
            listed: false,
        }
    }
}

#[derive(Default)]
pub(crate) struct Inner {
    deployments: Store<wire::Deployment>,
    pods: Store<wire::Pod>,
    /// Deployments the composer wrote whose watch event has not come back:
    /// until it does, the copy is older than what the composer knows.
    pending: BTreeMap<String, Instant>,
}

/// What the watches know, shared by the events thread (writer) and the
/// reconcile loop and workers (readers).
#[derive(Default)]
pub(crate) struct Cache {
    inner: Mutex<Inner>,
    echoed: Condvar,
}

impl Cache {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Both resources as the watches have them, or `None` when either is not
    /// in sync or a write of ours has not come back within `wait` (the caller
    /// then lists for real, which also settles those writes).
    pub(crate) fn snapshot(
        &self,
        wait: Duration,
    ) -> Option<(Vec<wire::Deployment>, Vec<wire::Pod>)> {
        let deadline = Instant::now() + wait;
        let mut inner = self.lock();
        loop {
            if !(inner.deployments.synced && inner.pods.synced) {
                inner.pending.clear();
                return None;
            }
            if inner.pending.is_empty() {
                let d = inner.deployments.items.values().cloned().collect();
                let p = inner.pods.items.values().cloned().collect();
                return Some((d, p));
            }
            let now = Instant::now();
            if now >= deadline {
                inner.pending.clear();
                return None;
            }
            inner = self
                .echoed
                .wait_timeout(inner, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// The pods that `keep` selects, once a listing filled the copy. Only to
    /// find a pod whose logs to read: a copy a relist away from current names a
    /// pod at worst gone, which costs that cycle's logs, not a listing per
    /// connector while a watch reconnects.
    pub(crate) fn pods(&self, keep: impl Fn(&wire::Pod) -> bool) -> Option<Vec<wire::Pod>> {
        let inner = self.lock();
        let store = &inner.pods;
        store
            .listed
            .then(|| store.items.values().filter(|p| keep(p)).cloned().collect())
    }

    /// The composer is about to change Deployment `name`: the copy is stale
    /// until an event about it comes back. Said before the call, so an echo
    /// that outruns the call's answer is not missed.
    pub(crate) fn writing(&self, name: &str) {
        let mut inner = self.lock();
        if inner.deployments.synced {
            inner.pending.insert(name.to_string(), Instant::now());
        }
    }

    /// A fresh listing of `T`; trusted once its watch is established (`live`).
    fn replace<T: Watched>(&self, items: Vec<T>) {
        let mut inner = self.lock();
        let store = T::store(&mut inner);
        store.items = items
            .into_iter()
            .map(|o| (o.meta().name.clone(), o))
            .collect();
        store.synced = false;
        store.listed = true;
        if T::WRITTEN {
            inner.pending.clear();
        }
    }

    /// The watch of `T` is streaming: the copy is current from now on.
    fn live<T: Watched>(&self) {
        let mut inner = self.lock();
        T::store(&mut inner).synced = true;
        self.echoed.notify_all();
    }

    fn apply<T: Watched>(&self, kind: &str, object: T) {
        let mut inner = self.lock();
        let name = object.meta().name.clone();
        if T::WRITTEN {
            inner.pending.remove(&name);
        }
        let store = T::store(&mut inner);
        if kind == "DELETED" {
            store.items.remove(&name);
        } else {
            store.items.insert(name, object);
        }
        self.echoed.notify_all();
    }

    fn lost<T: Watched>(&self) {
        let mut inner = self.lock();
        T::store(&mut inner).synced = false;
        self.echoed.notify_all();
    }
}

/// How a watch request ended.
enum Ended {
    /// The window closed; resume from this resourceVersion.
    Window(String),
    /// `410 Gone`: the resourceVersion is too old; relist.
    Gone,
}

fn stopped(stop: &Receiver<()>) -> bool {
    matches!(stop.try_recv(), Err(TryRecvError::Disconnected))
}

/// Keeps `T` in `cache` until `stop` closes: list, watch, relist on `410`,
/// on a broken stream (events may be lost) and every `RESYNC`.
pub(crate) fn reflect<T: Watched>(
    client: &Client,
    selector: &str,
    cache: &Cache,
    wake: &dyn Fn(),
    stop: &Receiver<()>,
) {
    let mut failures = 0u32;
    let mut resume: Option<(String, Instant)> = None;
    while !stopped(stop) {
        let outcome = match resume.take() {
            Some((rv, listed)) if listed.elapsed() < RESYNC => {
                watch::<T>(client, selector, &rv, cache, wake).map(|e| (e, listed))
            }
            _ => T::list(client, selector).map(|(items, rv)| {
                cache.replace(items);
                wake();
                (Ended::Window(rv), Instant::now())
            }),
        };
        match outcome {
            Ok((Ended::Window(rv), listed)) => {
                if failures > 0 {
                    log::info!(
                        "kubernetes {}: watching again after {failures} failed attempt(s)",
                        T::RESOURCE
                    );
                }
                failures = 0;
                resume = Some((rv, listed));
            }
            Ok((Ended::Gone, _)) => {
                log::debug!(
                    "kubernetes {}: watch expired (410 Gone); relisting",
                    T::RESOURCE
                );
                cache.lost::<T>();
            }
            Err(e) => {
                cache.lost::<T>();
                failures = failures.saturating_add(1);
                let delay = crate::time::doubling(RETRY_FIRST, failures, RETRY_CAP);
                if failures == 1 {
                    log::warn!(
                        "kubernetes {} watch unavailable ({e}); listing every cycle, retrying in {} s",
                        T::RESOURCE,
                        delay.as_secs()
                    );
                } else {
                    log::debug!("kubernetes {} watch still unavailable ({e})", T::RESOURCE);
                }
                select! {
                    recv(stop) -> _ => return,
                    recv(after(delay)) -> _ => {}
                }
            }
        }
    }
}

/// One watch request from `rv`: events applied to `cache` as they come.
fn watch<T: Watched>(
    client: &Client,
    selector: &str,
    rv: &str,
    cache: &Cache,
    wake: &dyn Fn(),
) -> Result<Ended, Error> {
    const OP: &str = "watch";
    let resp = client.watch(T::RESOURCE, selector, rv, WINDOW)?;
    cache.live::<T>();
    let mut lines = Lines::new(
        BufReader::new(resp.into_body().into_reader()),
        MAX_EVENT,
        OP,
    );
    let mut rv = rv.to_string();
    while let Some(line) = lines.next_line()? {
        match event::<T>(line)? {
            Event::Object(kind, object) => {
                rv.clone_from(&object.meta().resource_version);
                cache.apply(&kind, object);
                wake();
            }
            Event::Bookmark(at) => rv = at,
            Event::Gone => return Ok(Ended::Gone),
        }
    }
    Ok(Ended::Window(rv))
}

/// One watch line, read.
enum Event<T> {
    Object(String, T),
    Bookmark(String),
    Gone,
}

/// Reads one watch line: an object event, a bookmark, or `410 Gone`.
///
/// # Errors
/// An unreadable line, an `ERROR` other than 410, an unknown event type.
fn event<T: Watched>(line: &[u8]) -> Result<Event<T>, Error> {
    const OP: &str = "watch";
    let bad = |detail: String| Error::Decode { op: OP, detail };
    let head: wire::WatchEvent<wire::EventHead> =
        serde_json::from_slice(line).map_err(|e| bad(format!("unreadable watch event: {e}")))?;
    match head.kind.as_str() {
        "ADDED" | "MODIFIED" | "DELETED" => {
            let full: wire::WatchEvent<T> = serde_json::from_slice(line)
                .map_err(|e| bad(format!("unreadable {} event: {e}", T::RESOURCE)))?;
            Ok(Event::Object(full.kind, full.object))
        }
        "BOOKMARK" => Ok(Event::Bookmark(head.object.metadata.resource_version)),
        "ERROR" if head.object.code == 410 => Ok(Event::Gone),
        "ERROR" => Err(Error::Api {
            op: OP,
            code: head.object.code,
            message: head.object.message,
        }),
        other => Err(bad(format!("unknown watch event type {other:?}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployment(name: &str, rv: &str) -> String {
        format!(
            r#"{{"type":"ADDED","object":{{"kind":"Deployment","metadata":{{"name":"{name}","resourceVersion":"{rv}"}},"spec":{{"replicas":1}}}}}}"#
        )
    }

    #[test]
    fn events_are_read_by_type() {
        let e = event::<wire::Deployment>(deployment("otx", "12").as_bytes()).unwrap();
        assert!(
            matches!(e, Event::Object(k, d) if k == "ADDED" && d.metadata.name == "otx" && d.metadata.resource_version == "12")
        );
        let b = br#"{"type":"BOOKMARK","object":{"kind":"Pod","apiVersion":"v1","metadata":{"resourceVersion":"40"}}}"#;
        assert!(matches!(event::<wire::Pod>(b).unwrap(), Event::Bookmark(rv) if rv == "40"));
        let gone = br#"{"type":"ERROR","object":{"kind":"Status","status":"Failure","message":"too old resource version: 1 (5)","reason":"Expired","code":410}}"#;
        assert!(matches!(event::<wire::Pod>(gone).unwrap(), Event::Gone));
        let other =
            br#"{"type":"ERROR","object":{"kind":"Status","message":"internal","code":500}}"#;
        assert!(matches!(
            event::<wire::Pod>(other),
            Err(Error::Api { code: 500, .. })
        ));
        assert!(event::<wire::Pod>(b"{\"type\":\"SURPRISE\",\"object\":{}}").is_err());
        assert!(event::<wire::Pod>(b"not json").is_err());
    }

    #[test]
    fn the_copy_serves_only_while_synced_and_echoed() {
        let cache = Cache::default();
        assert!(
            cache.snapshot(Duration::ZERO).is_none(),
            "nothing synced yet"
        );
        cache.replace::<wire::Deployment>(Vec::new());
        cache.replace::<wire::Pod>(Vec::new());
        assert!(
            cache.snapshot(Duration::ZERO).is_none(),
            "listed, not yet watched"
        );
        cache.live::<wire::Deployment>();
        assert!(cache.snapshot(Duration::ZERO).is_none(), "pods not watched");
        cache.live::<wire::Pod>();
        let (d, p) = cache.snapshot(Duration::ZERO).unwrap();
        assert!(d.is_empty() && p.is_empty());

        // A write of ours not yet echoed: the copy is stale, the caller lists.
        cache.writing("otx");
        let t = Instant::now();
        assert!(cache.snapshot(Duration::from_millis(50)).is_none());
        assert!(t.elapsed() >= Duration::from_millis(50));
        // Listing for real settled it; the next write is echoed by its event.
        cache.writing("otx");
        let d: wire::WatchEvent<wire::Deployment> =
            serde_json::from_str(&deployment("otx", "13")).unwrap();
        cache.apply("ADDED", d.object);
        let (d, _) = cache.snapshot(Duration::ZERO).unwrap();
        assert_eq!(d.len(), 1);
        cache.apply("DELETED", d[0].clone());
        assert!(cache.snapshot(Duration::ZERO).unwrap().0.is_empty());

        cache.lost::<wire::Pod>();
        assert!(cache.snapshot(Duration::ZERO).is_none(), "pods lost");
    }
}
