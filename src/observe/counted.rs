//! Counts engine requests by operation and outcome: a thin wrapper around a
//! platform's `Orchestrator`, so no engine client has to know about metrics.

use std::sync::Arc;

use super::board;
use crate::orchestrator::{Error, Orchestrator, Spec, Workload};
use crate::platform::PlatformKind;

/// An orchestrator whose every call is counted on the board.
pub struct Counted {
    pub inner: Arc<dyn Orchestrator>,
    pub platform: PlatformKind,
}

/// The outcome label of a result.
fn outcome<T>(r: &Result<T, Error>) -> &'static str {
    match r {
        Ok(_) => "ok",
        Err(Error::Transport { .. }) => "unreachable",
        Err(Error::Api { .. }) => "refused",
        Err(Error::NotFound { .. }) => "not_found",
        Err(Error::Image { .. }) => "image",
        Err(Error::Decode { .. }) => "unreadable",
        Err(Error::Config { .. }) => "config",
    }
}

impl Counted {
    fn count<T>(&self, op: &'static str, r: Result<T, Error>) -> Result<T, Error> {
        board().request(self.platform, op, outcome(&r));
        r
    }
}

impl Orchestrator for Counted {
    fn list(&self) -> Result<Vec<Workload>, Error> {
        self.count("list", self.inner.list())
    }
    fn deploy(&self, spec: &Spec) -> Result<(), Error> {
        self.count("deploy", self.inner.deploy(spec))
    }
    fn refresh(&self, spec: &Spec) -> Result<(), Error> {
        self.count("refresh", self.inner.refresh(spec))
    }
    fn start(&self, name: &str) -> Result<(), Error> {
        self.count("start", self.inner.start(name))
    }
    fn stop(&self, name: &str) -> Result<(), Error> {
        self.count("stop", self.inner.stop(name))
    }
    fn remove(&self, name: &str) -> Result<(), Error> {
        self.count("remove", self.inner.remove(name))
    }
    fn logs(&self, name: &str, tail: u32) -> Result<Vec<String>, Error> {
        self.count("logs", self.inner.logs(name, tail))
    }
    fn follow(&self, wake: &(dyn Fn() + Sync), stop: &crossbeam_channel::Receiver<()>) -> bool {
        self.inner.follow(wake, stop)
    }
}
