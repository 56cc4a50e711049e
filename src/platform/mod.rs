//! What a platform wants: the `Connector` model, the `Platform` trait both
//! clients implement (OpenCTI GraphQL, OpenAEV REST), and their shared error.
//! Wire types stay in each client; this module only holds domain types
//! (CONTRACT §2, §3, §8.1).

pub mod openaev;
pub(crate) mod openaev_wire;
pub mod opencti;
pub(crate) mod opencti_wire;

use std::fmt;

/// Which platform a connector or workload belongs to (label `opencti-platform`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PlatformKind {
    OpenCti,
    OpenAev,
}

impl PlatformKind {
    /// The value of the `opencti-platform` label and the config section name.
    pub fn as_str(self) -> &'static str {
        match self {
            PlatformKind::OpenCti => "opencti",
            PlatformKind::OpenAev => "openaev",
        }
    }
}

impl fmt::Display for PlatformKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A connector's (or a workload's) run status, as reported to platforms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    Started,
    Stopped,
}

impl Status {
    /// Reads a platform current-status string (§8.1): `started`, `healthy`,
    /// `running` are Started; null or empty is `None` (never reported, so always
    /// reported, §8.3); anything else is Stopped.
    pub fn parse(s: Option<&str>) -> Option<Status> {
        match s.map(str::trim) {
            None | Some("") => None,
            Some("started" | "healthy" | "running") => Some(Status::Started),
            Some(_) => Some(Status::Stopped),
        }
    }

    /// The wire value: `started` or `stopped`.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Started => "started",
            Status::Stopped => "stopped",
        }
    }
}

/// What the platform asks for: `starting`, or anything else (= stopping).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Requested {
    Starting,
    Stopping,
}

impl Requested {
    /// §8.1: `starting` is Starting; anything else is Stopping.
    pub fn parse(s: &str) -> Requested {
        if s == "starting" {
            Requested::Starting
        } else {
            Requested::Stopping
        }
    }
}

/// One configuration entry of a connector, as the platform sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigEntry {
    pub key: String,
    /// Ciphertext when `encrypted`; `None` when the platform sent null.
    pub value: Option<String>,
    pub encrypted: bool,
}

/// A connector as the platform wants it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connector {
    pub id: String,
    pub name: String,
    pub image: String,
    /// `manager_contract_hash` / `connector_instance_hash`: the refresh marker.
    pub contract_hash: String,
    /// The status the platform last recorded (`None` = never reported).
    pub current_status: Option<Status>,
    pub requested: Requested,
    pub config: Vec<ConfigEntry>,
}

/// A connector listing. `complete` is false when some entries were invalid or
/// the platform answered with errors: such a listing is served but never used
/// to remove workloads (D13).
#[derive(Debug, Clone, Default)]
pub struct Listing {
    pub connectors: Vec<Connector>,
    pub complete: bool,
    /// One line per skipped or faulty entry, for the log.
    pub problems: Vec<String>,
}

/// Health figures for one connector (§8.4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    pub restart_count: u32,
    /// RFC 3339 UTC.
    pub started_at: String,
    pub is_in_reboot_loop: bool,
}

/// A platform client. Implementations hold their URL, token and manager
/// identity; every call is one request with timeouts.
pub trait Platform: Send + Sync {
    /// Which platform this is.
    fn kind(&self) -> PlatformKind;
    /// The platform version (GetVersion / `GET /api/settings/version`).
    fn version(&self) -> Result<String, Error>;
    /// Registers this manager with its public key.
    fn register(&self) -> Result<(), Error>;
    /// Pings; returns the version the platform reports.
    fn ping(&self) -> Result<String, Error>;
    /// Whether `ping` answers the platform's current version. OpenAEV answers
    /// the version stored at registration, so an upgrade between two pings is
    /// only seen by asking `version()` again.
    fn ping_reports_current_version(&self) -> bool {
        true
    }
    /// Lists the connectors to run.
    fn list(&self) -> Result<Listing, Error>;
    /// Reports a connector's current status.
    fn report_status(&self, id: &str, status: Status) -> Result<(), Error>;
    /// Ships a snapshot of a connector's last log lines.
    fn report_logs(&self, id: &str, lines: &[String]) -> Result<(), Error>;
    /// Reports a connector's health.
    fn report_health(&self, id: &str, health: &Health) -> Result<(), Error>;
}

/// A failed platform call.
#[derive(Debug)]
pub enum Error {
    /// The request did not complete (connection, TLS, timeout).
    Transport { op: &'static str, detail: String },
    /// A non-2xx answer that carried no usable GraphQL body.
    Status {
        op: &'static str,
        code: u16,
        body: String,
    },
    /// A GraphQL `errors` array, or a null result (§2.2).
    Api {
        op: &'static str,
        messages: Vec<String>,
    },
    /// The body could not be decoded.
    Decode { op: &'static str, detail: String },
    /// The platform does not know this manager (OpenAEV 400 `Invalid
    /// xtm-composer identifier`, OpenCTI `Cant find element to update`).
    NotRegistered { op: &'static str, detail: String },
}

impl Error {
    /// The operation that failed.
    pub fn op(&self) -> &'static str {
        match self {
            Error::Transport { op, .. }
            | Error::Status { op, .. }
            | Error::Api { op, .. }
            | Error::Decode { op, .. }
            | Error::NotRegistered { op, .. } => op,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Transport { op, detail } => write!(f, "{op}: request failed: {detail}"),
            Error::Status { op, code, body } => write!(f, "{op}: server returned {code}: {body}"),
            Error::Api { op, messages } => write!(f, "{op}: {}", messages.join("; ")),
            Error::Decode { op, detail } => write!(f, "{op}: unreadable answer: {detail}"),
            Error::NotRegistered { op, detail } => {
                write!(f, "{op}: manager not registered: {detail}")
            }
        }
    }
}

impl std::error::Error for Error {}
