//! The logger: stderr (journald and container runtimes collect it) as JSON
//! lines or pretty text, plus an optional JSON-lines file (`manager.logger.file`
//! with `directory: true`). HTTP and TLS libraries are capped: their TRACE
//! output dumps wire bytes unredacted (tokens included).

use std::fs::File;
use std::io::Write;
use std::sync::Mutex;

use log::{Level, LevelFilter, Log, Metadata, Record};

use crate::config::Settings;

/// Crates whose logs are capped, and at what level.
pub const CAPPED: &[(&str, LevelFilter)] = &[
    ("ureq", LevelFilter::Info),
    ("ureq_proto", LevelFilter::Info),
    ("rustls", LevelFilter::Warn),
];

/// Whether a record of `target` at `level` passes under `max` and the caps.
pub fn is_allowed(target: &str, level: Level, max: LevelFilter) -> bool {
    let cap = CAPPED
        .iter()
        .find(|(prefix, _)| target == *prefix || target.starts_with(&format!("{prefix}::")))
        .map_or(max, |(_, cap)| max.min(*cap));
    level <= cap
}

/// The configured level; anything unknown (rejected by validation) is INFO.
pub fn level(settings: &Settings) -> LevelFilter {
    match settings.manager.logger.level.as_str() {
        "trace" => LevelFilter::Trace,
        "debug" => LevelFilter::Debug,
        "warn" => LevelFilter::Warn,
        "error" => LevelFilter::Error,
        _ => LevelFilter::Info,
    }
}

struct Logger {
    max: LevelFilter,
    console: bool,
    pretty: bool,
    file: Option<Mutex<File>>,
}

/// Structured fields a record may carry (`log::info!(platform = p; "...")`);
/// anything else is dropped, so a field can never smuggle a value in.
pub const FIELDS: &[&str] = &[
    "platform",
    "connector",
    "workload",
    "action",
    "outcome",
    "attempt",
];

/// Collects a record's known fields as JSON values.
struct Fields(serde_json::Map<String, serde_json::Value>);

impl<'kvs> log::kv::VisitSource<'kvs> for Fields {
    fn visit_pair(
        &mut self,
        key: log::kv::Key<'kvs>,
        value: log::kv::Value<'kvs>,
    ) -> Result<(), log::kv::Error> {
        if let Some(name) = FIELDS.iter().find(|f| **f == key.as_str()) {
            let v = match value.to_u64() {
                Some(n) => serde_json::Value::from(n),
                None => serde_json::Value::from(value.to_string()),
            };
            self.0.insert((*name).to_string(), v);
        }
        Ok(())
    }
}

fn json_line(r: &Record, ts: &str) -> String {
    let mut fields = Fields(serde_json::Map::new());
    let _ = r.key_values().visit(&mut fields);
    let mut line = fields.0;
    line.insert("timestamp".into(), ts.into());
    line.insert("level".into(), r.level().as_str().into());
    line.insert("target".into(), r.target().into());
    line.insert("message".into(), r.args().to_string().into());
    serde_json::Value::Object(line).to_string()
}

impl Log for Logger {
    fn enabled(&self, m: &Metadata) -> bool {
        is_allowed(m.target(), m.level(), self.max)
    }

    fn log(&self, r: &Record) {
        if !self.enabled(r.metadata()) {
            return;
        }
        let ts = crate::time::format_rfc3339(std::time::SystemTime::now());
        let json = json_line(r, &ts);
        if self.console {
            let text = if self.pretty {
                format!("{ts} {:<5} {}", r.level(), r.args())
            } else {
                json.clone()
            };
            // A closed stderr must not take the process down.
            let _ = writeln!(std::io::stderr().lock(), "{text}");
        }
        if let Some(Ok(mut f)) = self.file.as_ref().map(Mutex::lock) {
            let _ = writeln!(f, "{json}");
        }
    }

    fn flush(&self) {
        if let Some(Ok(mut f)) = self.file.as_ref().map(Mutex::lock) {
            let _ = f.flush();
        }
    }
}

/// Installs the logger. A second call keeps the first one.
///
/// # Errors
/// The log file cannot be opened for appending (the message names it).
pub fn init(settings: &Settings) -> Result<(), String> {
    let l = &settings.manager.logger;
    let file = match (&l.file, l.directory) {
        (Some(path), true) => {
            let f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path);
            Some(Mutex::new(f.map_err(|e| {
                format!("manager.logger.file = {path}: cannot open for appending: {e}")
            })?))
        }
        _ => None,
    };
    let logger = Logger {
        max: level(settings),
        console: l.console,
        pretty: l.format == "pretty",
        file,
    };
    let max = if logger.console || logger.file.is_some() {
        logger.max
    } else {
        LevelFilter::Off
    };
    if log::set_boxed_logger(Box::new(logger)).is_ok() {
        log::set_max_level(max);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn json_lines_escape_the_message() {
        let args = format_args!("a \"quoted\"\nline");
        let r = Record::builder()
            .args(args)
            .level(Level::Warn)
            .target("t")
            .build();
        let line = json_line(&r, "2026-01-01T00:00:00.000Z");
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["message"], "a \"quoted\"\nline");
        assert_eq!(v["level"], "WARN");
        assert!(!line.contains('\n'));
    }

    #[test]
    fn known_fields_become_json_fields_and_others_are_dropped() {
        let kvs: [(&str, log::kv::Value); 4] = [
            ("platform", "opencti".into()),
            ("attempt", 3u32.into()),
            ("outcome", "error".into()),
            ("token", "s3cret".into()),
        ];
        let args = format_args!("opencti: connector c1: deploy failed");
        let r = Record::builder()
            .args(args)
            .level(Level::Error)
            .target("t")
            .key_values(&kvs)
            .build();
        let line = json_line(&r, "2026-01-01T00:00:00.000Z");
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["platform"], "opencti");
        assert_eq!(v["attempt"], 3);
        assert_eq!(v["outcome"], "error");
        assert!(!line.contains("s3cret"), "{line}");
        assert_eq!(v["message"], "opencti: connector c1: deploy failed");
    }
}
