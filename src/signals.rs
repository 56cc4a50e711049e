//! The signal thread: SIGTERM and SIGINT close the shutdown channel, which
//! every loop selects on (DESIGN principle 7, D12); a second one exits at once
//! with status 1 in case shutdown hangs. SIGHUP is logged and ignored (no reload).

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use crossbeam_channel::Sender;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::flag;
use signal_hook::iterator::Signals;

/// Installs the handlers and starts the thread. Dropping `shutdown` (the only
/// sender) is the broadcast: every receiver sees the channel disconnected.
///
/// # Errors
/// The handlers could not be installed.
pub fn spawn(shutdown: Sender<()>) -> std::io::Result<std::thread::JoinHandle<()>> {
    let armed = Arc::new(AtomicBool::new(false));
    for s in [SIGTERM, SIGINT] {
        // Registered first, so it sees the flag before the second handler sets it.
        flag::register_conditional_shutdown(s, 1, Arc::clone(&armed))?;
        flag::register(s, Arc::clone(&armed))?;
    }
    let mut signals = Signals::new([SIGTERM, SIGINT, SIGHUP])?;
    // It waits and logs one line: 4 KiB of its stack were touched in the benchmark
    // (docs/benchmarks.md, "Memory"); 64 KiB instead of Rust's 2 MiB default.
    std::thread::Builder::new()
        .name("signals".into())
        .stack_size(64 * 1024)
        .spawn(move || {
            for s in signals.forever() {
                if s == SIGHUP {
                    log::info!("SIGHUP received: configuration is read at start only; restart to apply changes");
                    continue;
                }
                log::info!("signal {s} received: shutting down (workloads keep running)");
                break;
            }
            drop(shutdown);
        })
}
