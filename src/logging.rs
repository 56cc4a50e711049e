//! The logger: stderr (journald and container runtimes collect it), JSON lines
//! or pretty text, at `manager.logger.level`. HTTP and TLS libraries are capped:
//! their TRACE output dumps wire bytes unredacted (tokens included).

use std::io::Write;

use log::LevelFilter;

use crate::config::Settings;

/// Crates whose logs are capped, and at what level.
pub const CAPPED: &[(&str, LevelFilter)] = &[
    ("ureq", LevelFilter::Info),
    ("ureq_proto", LevelFilter::Info),
    ("rustls", LevelFilter::Warn),
];

/// Whether a record of `target` at `level` passes under `max` and the caps.
pub fn is_allowed(target: &str, level: log::Level, max: LevelFilter) -> bool {
    let cap = CAPPED
        .iter()
        .find(|(prefix, _)| target == *prefix || target.starts_with(&format!("{prefix}::")))
        .map_or(max, |(_, cap)| max.min(*cap));
    level <= cap
}

/// The configured level; anything unknown (rejected by validation) is INFO.
pub fn level(settings: &Settings) -> LevelFilter {
    if !settings.manager.logger.console {
        return LevelFilter::Off;
    }
    match settings.manager.logger.level.as_str() {
        "trace" => LevelFilter::Trace,
        "debug" => LevelFilter::Debug,
        "warn" => LevelFilter::Warn,
        "error" => LevelFilter::Error,
        _ => LevelFilter::Info,
    }
}

/// Installs the logger. A second call keeps the first logger.
pub fn init(settings: &Settings) {
    let max = level(settings);
    let json = settings.manager.logger.format != "pretty";
    let mut b = env_logger::Builder::new();
    b.filter_level(max).target(env_logger::Target::Stderr);
    for (prefix, cap) in CAPPED {
        b.filter_module(prefix, max.min(*cap));
    }
    b.format(move |f, r| {
        let ts = crate::time::format_rfc3339(std::time::SystemTime::now());
        if json {
            let line = serde_json::json!({
                "timestamp": ts, "level": r.level().as_str(), "target": r.target(),
                "message": r.args().to_string(),
            });
            writeln!(f, "{line}")
        } else {
            writeln!(f, "{ts} {:<5} {}", r.level(), r.args())
        }
    });
    let _ = b.try_init();
}

#[cfg(test)]
mod tests {
    use super::*;
    use log::Level;

    #[test]
    fn http_libraries_never_log_below_their_cap() {
        assert!(!is_allowed(
            "ureq_proto::util",
            Level::Trace,
            LevelFilter::Trace
        ));
        assert!(!is_allowed(
            "ureq::unversioned",
            Level::Debug,
            LevelFilter::Trace
        ));
        assert!(is_allowed("ureq", Level::Info, LevelFilter::Trace));
        assert!(!is_allowed(
            "rustls::client",
            Level::Info,
            LevelFilter::Trace
        ));
        assert!(is_allowed(
            "xtm_composer::engine",
            Level::Trace,
            LevelFilter::Trace
        ));
        assert!(!is_allowed(
            "xtm_composer::engine",
            Level::Debug,
            LevelFilter::Info
        ));
        assert!(is_allowed("ureqx", Level::Trace, LevelFilter::Trace));
    }
}
