//! XTM Composer: runs the connectors of OpenCTI and the collectors and injectors
//! of OpenAEV as containers, and keeps them aligned with what each platform asks.
//! `main.rs` is the CLI; this crate root only wires the modules together.

#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

/// The version line: package version, commit and target (`build.rs`).
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("XTM_COMMIT"),
    ", ",
    env!("XTM_TARGET"),
    ")"
);

pub mod alive;
pub mod cli;
pub mod config;
pub mod crypto;
pub mod engine;
pub mod env;
pub mod executor;
#[cfg(any(fuzzing, test))]
pub mod fuzzing;
pub mod http;
pub mod liveness;
pub mod logging;
pub mod logs;
pub mod names;
pub mod notify;
pub mod observe;
pub mod orchestrator;
pub mod platform;
pub mod pool;
pub mod reconcile;
pub mod secret;
pub mod signals;
pub mod time;
