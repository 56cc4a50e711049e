//! What an orchestrator has: the `Workload` model, the fully specified `Spec`
//! that `reconcile::plan` computes, and the `Orchestrator` trait that Docker,
//! Portainer, Swarm and Kubernetes implement. One `list()` per cycle returns
//! every workload of this manager (CONTRACT §5, §6; DESIGN principle 2).

pub mod docker;
pub mod kubernetes;
pub(crate) mod lines;
pub mod portainer;
pub mod swarm;

use std::fmt;

use crate::platform::PlatformKind;
use crate::secret::Secret;

/// Label keys every workload carries (§5.2).
pub const LABEL_MANAGER: &str = "opencti-manager";
pub const LABEL_CONNECTOR: &str = "opencti-connector-id";
pub const LABEL_PLATFORM: &str = "opencti-platform";
/// The env var (Docker family) / annotation (Kubernetes) holding the contract hash (§5.3).
pub const HASH_MARKER: &str = "OPENCTI_CONFIG_HASH";

/// An environment value: plain, or sensitive (decrypted secret, proxy URL).
#[derive(Clone, PartialEq, Eq)]
pub enum EnvValue {
    Plain(String),
    Sensitive(Secret),
}

impl EnvValue {
    /// The text to hand to the engine.
    pub fn expose(&self) -> &str {
        match self {
            EnvValue::Plain(s) => s,
            EnvValue::Sensitive(s) => s.expose(),
        }
    }

    /// True for decrypted secrets and proxy URLs.
    pub fn is_sensitive(&self) -> bool {
        matches!(self, EnvValue::Sensitive(_))
    }
}

impl fmt::Debug for EnvValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EnvValue::Plain(s) => write!(f, "{s:?}"),
            EnvValue::Sensitive(_) => f.write_str("***REDACTED***"),
        }
    }
}

/// One `KEY=value` of a connector's environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvVar {
    pub key: String,
    pub value: EnvValue,
}

/// Everything needed to create a connector's workload; nothing is left to choose
/// at execution time. Per-platform settings (registry, engine options, proxy CA)
/// belong to the orchestrator instance, not to the spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spec {
    pub name: String,
    pub connector_id: String,
    pub platform: PlatformKind,
    pub image: String,
    /// The contract hash; also present in `env` as `OPENCTI_CONFIG_HASH`.
    pub hash: String,
    pub env: Vec<EnvVar>,
    /// Started after create (requested status `starting`).
    pub start: bool,
}

impl Spec {
    /// The three ownership labels (§5.2), in a stable order.
    pub fn labels(&self, manager_id: &str) -> [(&'static str, String); 3] {
        [
            (LABEL_MANAGER, manager_id.to_string()),
            (LABEL_CONNECTOR, self.connector_id.clone()),
            (LABEL_PLATFORM, self.platform.as_str().to_string()),
        ]
    }
}

/// What an engine says a workload is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkloadState {
    /// Running (Docker `running`, a running Swarm task, a live Kubernetes container).
    Running,
    /// The engine itself is restarting it (Docker `restarting`): reported as
    /// stopped, but the composer does not start it again.
    Restarting,
    /// Created, exited, dead, paused, no replicas.
    Stopped,
}

/// A workload of this manager, as listed by the orchestrator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workload {
    pub name: String,
    /// Label `opencti-connector-id`; `None` = not ours to touch (warned about).
    pub connector_id: Option<String>,
    /// Label `opencti-platform`; `None` = legacy, treated as OpenCTI.
    pub platform: Option<String>,
    /// `OPENCTI_CONFIG_HASH` marker; `None` = missing, or the deploy did not
    /// finish (e.g. no proxy CA in the container): counts as a mismatch, so the
    /// planner recreates it.
    pub hash: Option<String>,
    pub state: WorkloadState,
    pub restart_count: u32,
    /// RFC 3339 start time of the current (or last) run, when known.
    pub started_at: Option<String>,
    /// Why the workload cannot run (`CrashLoopBackOff`, `ImagePullBackOff`, ...):
    /// flags a reboot loop on engines that back off instead of counting.
    pub waiting_reason: Option<String>,
    /// Why the workload cannot be brought to its spec in place (a Kubernetes
    /// selector the new template would no longer match): the planner removes
    /// and deploys it again instead of refreshing it. The orchestrator only
    /// reports the fact; the decision is the planner's.
    pub defect: Option<String>,
}

/// A workload operation that failed.
#[derive(Debug)]
pub enum Error {
    /// The engine could not be reached or the request timed out.
    Transport { op: &'static str, detail: String },
    /// The engine answered with an error status.
    Api {
        op: &'static str,
        code: u16,
        message: String,
    },
    /// The named workload does not exist.
    NotFound { op: &'static str, name: String },
    /// The image could not be obtained (pull failed and none is present, or policy `never`).
    Image {
        op: &'static str,
        image: String,
        detail: String,
    },
    /// The engine's answer could not be read.
    Decode { op: &'static str, detail: String },
    /// The operation is not possible with this configuration.
    Config { op: &'static str, detail: String },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // The detail names the target (socket, Portainer URL, API server): an API
            // server is no "engine" to the operator reading this (issue 14).
            Error::Transport { op, detail } => write!(f, "{op}: unreachable: {detail}"),
            Error::Api { op, code, message } => write!(f, "{op}: answered {code}: {message}"),
            Error::NotFound { op, name } => write!(f, "{op}: no workload named {name}"),
            Error::Image { op, image, detail } => write!(f, "{op}: image {image}: {detail}"),
            Error::Decode { op, detail } => write!(f, "{op}: unreadable answer: {detail}"),
            Error::Config { op, detail } => write!(f, "{op}: {detail}"),
        }
    }
}

impl std::error::Error for Error {}

/// A container engine. One instance per platform, built from that platform's
/// `daemon` section. Every method is one attempt; the next cycle retries.
pub trait Orchestrator: Send + Sync {
    /// Every workload labelled `opencti-manager=<manager.id>`, in one listing.
    fn list(&self) -> Result<Vec<Workload>, Error>;
    /// Pulls (per policy), creates, and starts when `spec.start`.
    fn deploy(&self, spec: &Spec) -> Result<(), Error>;
    /// Brings an existing workload to `spec` (recreate, or patch on Kubernetes).
    fn refresh(&self, spec: &Spec) -> Result<(), Error>;
    /// Starts a stopped workload.
    fn start(&self, name: &str) -> Result<(), Error>;
    /// Stops a running workload.
    fn stop(&self, name: &str) -> Result<(), Error>;
    /// Removes a workload (and what was created with it).
    fn remove(&self, name: &str) -> Result<(), Error>;
    /// The last `tail` log lines, demultiplexed, without trailing newlines.
    fn logs(&self, name: &str, tail: u32) -> Result<Vec<String>, Error>;
    /// Follows the engine's change stream until `stop` closes, calling `wake`
    /// whenever a workload of this manager may have changed, and after a
    /// reconnect (events of an outage are lost). Returns `false` at once when
    /// the engine offers no stream: polling is then all there is.
    fn follow(&self, wake: &(dyn Fn() + Sync), stop: &crossbeam_channel::Receiver<()>) -> bool {
        let _ = (wake, stop);
        false
    }
}
