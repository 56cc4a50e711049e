//! An in-memory orchestrator for engine tests: a map of workloads that
//! behaves like a perfect engine, counts its calls, and can be told to fail.

#![allow(dead_code)] // each test binary uses a different part of it

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use xtm_composer::orchestrator::{Error, Orchestrator, Spec, Workload, WorkloadState};

#[derive(Debug, Clone)]
pub struct Entry {
    pub workload: Workload,
    /// `KEY=value` as the engine would hold it (plaintext, like `docker inspect`).
    pub env: Vec<String>,
    pub image: String,
    pub created: usize,
}

#[derive(Default)]
pub struct MemoryOrchestrator {
    pub entries: Mutex<BTreeMap<String, Entry>>,
    pub calls: Mutex<Vec<String>>,
    pub list_calls: AtomicUsize,
    /// When set, every call fails as if the engine were down.
    pub down: std::sync::atomic::AtomicBool,
    created: AtomicUsize,
}

impl MemoryOrchestrator {
    pub fn new() -> Self {
        Self::default()
    }

    fn call(&self, what: String) -> Result<(), Error> {
        self.calls.lock().unwrap().push(what);
        if self.down.load(Ordering::SeqCst) {
            return Err(Error::Transport {
                op: "memory",
                detail: "engine down".into(),
            });
        }
        Ok(())
    }

    /// Inserts a workload as another tool (or the existing composer) made it.
    pub fn insert(&self, workload: Workload, env: Vec<String>) {
        let name = workload.name.clone();
        let e = Entry {
            workload,
            env,
            image: "img".into(),
            created: 0,
        };
        self.entries.lock().unwrap().insert(name, e);
    }

    pub fn get(&self, name: &str) -> Option<Entry> {
        self.entries.lock().unwrap().get(name).cloned()
    }

    pub fn by_connector(&self, id: &str) -> Vec<Entry> {
        let m = self.entries.lock().unwrap();
        m.values()
            .filter(|e| e.workload.connector_id.as_deref() == Some(id))
            .cloned()
            .collect()
    }

    pub fn count(&self, prefix: &str) -> usize {
        self.calls
            .lock()
            .unwrap()
            .iter()
            .filter(|c| c.starts_with(prefix))
            .count()
    }

    fn make(&self, spec: &Spec) -> Entry {
        let n = self.created.fetch_add(1, Ordering::SeqCst) + 1;
        Entry {
            workload: Workload {
                name: spec.name.clone(),
                connector_id: Some(spec.connector_id.clone()),
                platform: Some(spec.platform.as_str().to_string()),
                hash: Some(spec.hash.clone()),
                state: if spec.start {
                    WorkloadState::Running
                } else {
                    WorkloadState::Stopped
                },
                restart_count: 0,
                started_at: Some(xtm_composer::time::format_rfc3339(
                    std::time::SystemTime::now(),
                )),
                waiting_reason: None,
                defect: None,
            },
            env: spec
                .env
                .iter()
                .map(|e| format!("{}={}", e.key, e.value.expose()))
                .collect(),
            image: spec.image.clone(),
            created: n,
        }
    }

    fn set_state(&self, name: &str, state: WorkloadState) -> Result<(), Error> {
        let mut m = self.entries.lock().unwrap();
        let e = m.get_mut(name).ok_or(Error::NotFound {
            op: "memory",
            name: name.into(),
        })?;
        e.workload.state = state;
        Ok(())
    }
}

impl Orchestrator for MemoryOrchestrator {
    fn list(&self) -> Result<Vec<Workload>, Error> {
        self.list_calls.fetch_add(1, Ordering::SeqCst);
        self.call("list".into())?;
        Ok(self
            .entries
            .lock()
            .unwrap()
            .values()
            .map(|e| e.workload.clone())
            .collect())
    }

    fn deploy(&self, spec: &Spec) -> Result<(), Error> {
        self.call(format!("deploy {}", spec.name))?;
        let e = self.make(spec);
        let mut m = self.entries.lock().unwrap();
        if m.contains_key(&spec.name) {
            return Err(Error::Api {
                op: "create",
                code: 409,
                message: "name in use".into(),
            });
        }
        m.insert(spec.name.clone(), e);
        Ok(())
    }

    fn refresh(&self, spec: &Spec) -> Result<(), Error> {
        self.call(format!("refresh {}", spec.name))?;
        let e = self.make(spec);
        self.entries.lock().unwrap().insert(spec.name.clone(), e);
        Ok(())
    }

    fn start(&self, name: &str) -> Result<(), Error> {
        self.call(format!("start {name}"))?;
        self.set_state(name, WorkloadState::Running)
    }

    fn stop(&self, name: &str) -> Result<(), Error> {
        self.call(format!("stop {name}"))?;
        self.set_state(name, WorkloadState::Stopped)
    }

    fn remove(&self, name: &str) -> Result<(), Error> {
        self.call(format!("remove {name}"))?;
        self.entries.lock().unwrap().remove(name);
        Ok(())
    }

    fn logs(&self, name: &str, tail: u32) -> Result<Vec<String>, Error> {
        self.call(format!("logs {name}"))?;
        let n = tail.min(3);
        Ok((1..=n).map(|i| format!("{name} line {i}")).collect())
    }
}
