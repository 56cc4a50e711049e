//! Configuration problems: `Origin` (where a value came from) and `ConfigError`
//! (one problem with its key, value, origin and fix). Owns the rule that secret
//! values never reach an error message: they print as `***` (CONTRACT §7, DESIGN 8).
//! Collecting and ordering problems is the loader's job, not this file's.

use std::fmt;
use std::path::PathBuf;

/// Where a configuration value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// The built-in default (no file or environment variable set it).
    Default,
    /// A configuration file.
    File(PathBuf),
    /// An environment variable, by its name as set.
    Env(String),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Default => f.write_str("built-in default"),
            Origin::File(path) => write!(f, "file {}", path.display()),
            Origin::Env(name) => write!(f, "env {name}"),
        }
    }
}

/// Key names whose values are secrets (tokens, passwords, keys, proxy URLs
/// that may carry credentials, §5.4): never shown in a message.
const SECRET_NAMES: [&str; 6] = [
    "token",
    "password",
    "credentials_key",
    "api_key",
    "http_proxy",
    "https_proxy",
];

/// True when the value under `key` must never be printed. Any segment counts,
/// so `opencti.https_proxy.0`-style sub-keys stay hidden too.
pub fn is_secret_key(key: &str) -> bool {
    key.split('.')
        .any(|segment| SECRET_NAMES.contains(&segment))
}

/// Longest value shown in a message; configuration values can be whole PEM
/// files or JSON documents.
const MAX_SHOWN: usize = 120;

/// One configuration problem. `Display`:
/// `opencti.daemon.selector = "dokcer" (from env OPENCTI__DAEMON__SELECTOR): expected one of …`.
#[derive(Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Dotted key (`opencti.daemon.selector`); empty for file-level problems.
    pub key: String,
    /// The offending value as text, when there is one to show.
    pub value: Option<String>,
    pub origin: Origin,
    /// What is wrong and how to fix it, in lowercase.
    pub problem: String,
}

impl ConfigError {
    /// A problem with `key`. The value of a secret key is replaced by `***`
    /// right here, so neither `Display` nor `Debug` can leak it.
    pub fn new(
        key: impl Into<String>,
        value: Option<String>,
        origin: Origin,
        problem: impl Into<String>,
    ) -> Self {
        let key = key.into();
        let value = value.map(|v| shown_value(&key, &v));
        ConfigError {
            key,
            value,
            origin,
            problem: problem.into(),
        }
    }

    /// A problem that is not about one key (a file that does not parse, a
    /// missing folder).
    pub fn general(origin: Origin, problem: impl Into<String>) -> Self {
        ConfigError::new(String::new(), None, origin, problem)
    }
}

/// The value as it may appear in a message: `***` for secrets, shortened when long.
fn shown_value(key: &str, value: &str) -> String {
    if is_secret_key(key) {
        return "***".into();
    }
    if value.chars().count() <= MAX_SHOWN {
        return value.to_string();
    }
    let mut short: String = value.chars().take(MAX_SHOWN).collect();
    short.push('…');
    short
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            return match self.origin {
                Origin::Default => f.write_str(&self.problem),
                _ => write!(f, "{}: {}", self.origin, self.problem),
            };
        }
        f.write_str(&self.key)?;
        if let Some(value) = &self.value {
            // Re-masked here too: the fields are public and may be built by hand.
            write!(f, " = {:?}", shown_value(&self.key, value))?;
        }
        write!(f, " (from {}): {}", self.origin, self.problem)
    }
}

impl fmt::Debug for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConfigError")
            .field("key", &self.key)
            .field(
                "value",
                &self.value.as_deref().map(|v| shown_value(&self.key, v)),
            )
            .field("origin", &self.origin)
            .field("problem", &self.problem)
            .finish()
    }
}

impl std::error::Error for ConfigError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_key_value_origin_and_problem() {
        let e = ConfigError::new(
            "opencti.daemon.selector",
            Some("dokcer".into()),
            Origin::Env("OPENCTI__DAEMON__SELECTOR".into()),
            "expected one of docker, portainer, kubernetes, swarm",
        );
        assert_eq!(
            e.to_string(),
            "opencti.daemon.selector = \"dokcer\" (from env OPENCTI__DAEMON__SELECTOR): \
             expected one of docker, portainer, kubernetes, swarm"
        );
    }

    #[test]
    fn secret_values_print_as_stars_even_when_built_by_hand() {
        for key in [
            "opencti.token",
            "opencti.daemon.registry.password",
            "manager.credentials_key",
            "openaev.daemon.portainer.api_key",
            "opencti.http_proxy",
            "openaev.https_proxy",
        ] {
            let by_hand = ConfigError {
                key: key.into(),
                value: Some("hunter2".into()),
                origin: Origin::Default,
                problem: "bad".into(),
            };
            let built = ConfigError::new(key, Some("hunter2".into()), Origin::Default, "bad");
            for text in [
                by_hand.to_string(),
                format!("{by_hand:?}"),
                built.to_string(),
                format!("{built:?}"),
            ] {
                assert!(!text.contains("hunter2"), "{key}: {text}");
                assert!(text.contains("***"), "{key}: {text}");
            }
        }
    }

    #[test]
    fn file_level_problems_name_the_file() {
        let e = ConfigError::general(
            Origin::File("config/default.yaml".into()),
            "invalid YAML at line 3",
        );
        assert_eq!(
            e.to_string(),
            "file config/default.yaml: invalid YAML at line 3"
        );
    }

    #[test]
    fn long_values_are_shortened() {
        let e = ConfigError::new("manager.name", Some("x".repeat(500)), Origin::Default, "p");
        assert!(e.to_string().len() < 200);
    }
}
