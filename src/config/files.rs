//! Configuration files: which folder (`--config DIR`, else `config/` in the
//! working directory, else `/etc/xtm-composer`), which files in it
//! (`{stem}.yaml|yml|json`; TOML refused), and reading one into a JSON tree.
//! Merging and typing the values is `load`'s job (CONTRACT §7.1, D25).

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use super::error::{ConfigError, Origin};
use super::keys;

/// Folders searched when no `--config DIR` is given: `config/` relative to
/// the working directory (`/opt/xtm-composer` in the image), then the packaged path.
pub(crate) const SEARCHED: [&str; 2] = ["config", "/etc/xtm-composer"];

/// Extensions read, in order of preference.
const EXTENSIONS: [&str; 3] = ["yaml", "yml", "json"];

/// The file chosen for one layer, and what was noticed on the way.
#[derive(Default)]
pub(crate) struct Picked {
    pub path: Option<PathBuf>,
    pub errors: Vec<ConfigError>,
    pub warnings: Vec<String>,
}

/// True when `dir` holds a `default.*` file (TOML counts: it gets its own error).
fn has_default(dir: &Path) -> bool {
    EXTENSIONS
        .iter()
        .chain(&["toml"])
        .any(|ext| dir.join(format!("default.{ext}")).is_file())
}

/// Why `dir` cannot be listed, when the reason is permissions: a folder that
/// exists but is closed to this user must not read as "holds no default.yaml".
fn closed_folder(dir: &Path) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let denied = |e: &std::io::Error| e.kind() == std::io::ErrorKind::PermissionDenied;
    let running_as = running_uid().map_or(String::new(), |uid| {
        format!("; this process runs as uid {uid}")
    });
    match std::fs::metadata(dir) {
        Err(e) if denied(&e) => Some(format!(
            "cannot be reached: permission denied on a parent folder{running_as}"
        )),
        Err(_) => None,
        Ok(meta) => match std::fs::read_dir(dir) {
            Err(e) if denied(&e) => Some(format!(
                "cannot be read: permission denied (owner uid {}, mode {:o}{running_as}); \
                 run as its owner (the image's user is 10001) or open it to this user",
                meta.uid(),
                meta.mode() & 0o7777
            )),
            _ => None,
        },
    }
}

/// The real uid of this process, from `/proc/self/status` (no libc call needed).
pub(crate) fn running_uid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The folder given with `--config DIR`.
///
/// # Errors
/// The folder is missing, closed to this user, or holds no `default.*` file.
pub(crate) fn given_dir(dir: &Path) -> Result<PathBuf, Vec<ConfigError>> {
    if has_default(dir) {
        return Ok(dir.to_path_buf());
    }
    let what = match closed_folder(dir) {
        Some(denied) => denied,
        None if dir.is_dir() => "holds no default.yaml, default.yml or default.json".to_string(),
        None => "does not exist".to_string(),
    };
    Err(vec![ConfigError::general(
        Origin::Default,
        format!(
            "config folder {} {what}; copy the shipped config/default.yaml there, \
             or pass the folder that holds it with --config DIR",
            dir.display()
        ),
    )])
}

/// The first of `candidates` that holds a `default.*` file.
///
/// # Errors
/// None does; the message lists them all.
pub(crate) fn searched_dir(candidates: &[PathBuf]) -> Result<PathBuf, Vec<ConfigError>> {
    if let Some(dir) = candidates.iter().find(|d| has_default(d)) {
        return Ok(dir.clone());
    }
    let cwd = std::env::current_dir()
        .map(|d| d.display().to_string())
        .unwrap_or_else(|_| "?".into());
    let searched: Vec<String> = candidates
        .iter()
        .map(|d| match closed_folder(d) {
            Some(denied) => format!("{} (which {denied})", d.display()),
            None => d.display().to_string(),
        })
        .collect();
    Err(vec![ConfigError::general(
        Origin::Default,
        format!(
            "no configuration found: searched {} (working directory {cwd}) for default.yaml, \
             default.yml or default.json; run from the folder that holds config/, \
             or pass the folder with --config DIR",
            searched.join(" and ")
        ),
    )])
}

/// The file to read for `stem` (`default`, `production`): the first of
/// `.yaml`, `.yml`, `.json`. A `.toml` is refused: we carry no TOML parser.
pub(crate) fn pick(dir: &Path, stem: &str, required: bool) -> Picked {
    let mut picked = Picked::default();
    let toml = dir.join(format!("{stem}.toml"));
    if toml.is_file() {
        picked.errors.push(ConfigError::general(
            Origin::File(toml.clone()),
            "TOML configuration is not supported by this composer; \
             convert it to YAML (same keys and nesting) and save it as .yaml",
        ));
    }
    let mut found = EXTENSIONS
        .iter()
        .map(|ext| dir.join(format!("{stem}.{ext}")))
        .filter(|p| p.is_file());
    let chosen = found.next();
    for ignored in found {
        let used = chosen.as_deref().unwrap_or(dir).display().to_string();
        picked.warnings.push(
            ConfigError::general(
                Origin::File(ignored),
                format!("ignored: {used} is read instead"),
            )
            .to_string(),
        );
    }
    if chosen.is_none() && required && !toml.is_file() {
        picked.errors.push(ConfigError::general(
            Origin::Default,
            format!(
                "no {stem}.yaml, {stem}.yml or {stem}.json in {}",
                dir.display()
            ),
        ));
    }
    picked.path = chosen;
    picked
}

/// Reads one file into a tree of sections.
///
/// # Errors
/// Unreadable file, syntax error (with its line), top level not a mapping.
pub(crate) fn read(path: &Path) -> Result<Map<String, Value>, ConfigError> {
    let origin = || Origin::File(path.to_path_buf());
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::general(origin(), format!("cannot read: {e}")))?;
    let is_json = path.extension().is_some_and(|e| e == "json");
    let value = if is_json {
        serde_json::from_str(&text)
            .map_err(|e| ConfigError::general(origin(), format!("invalid JSON: {e}")))?
    } else {
        yaml_to_json(&text).map_err(|problem| ConfigError::general(origin(), problem))?
    };
    match value {
        Value::Object(map) => Ok(map),
        // An empty file, or one with everything commented out.
        Value::Null => Ok(Map::new()),
        _ => Err(ConfigError::general(
            origin(),
            "the top level must be a mapping of sections (manager, opencti, openaev)",
        )),
    }
}

/// YAML text to a JSON value. The parser's message carries the line and column.
fn yaml_to_json(text: &str) -> Result<Value, String> {
    let mut yaml: serde_norway::Value =
        serde_norway::from_str(text).map_err(|e| format!("invalid YAML: {e}"))?;
    yaml.apply_merge()
        .map_err(|e| format!("invalid YAML merge key (<<): {e}"))?;
    Ok(convert(yaml))
}

fn convert(yaml: serde_norway::Value) -> Value {
    use serde_norway::Value as Y;
    match yaml {
        Y::Null => Value::Null,
        Y::Bool(b) => Value::Bool(b),
        Y::Number(n) => {
            if let Some(u) = n.as_u64() {
                Value::from(u)
            } else if let Some(i) = n.as_i64() {
                Value::from(i)
            } else {
                // NaN and infinities have no JSON form; text keeps them visible.
                n.as_f64()
                    .and_then(serde_json::Number::from_f64)
                    .map_or_else(|| Value::String(n.to_string()), Value::Number)
            }
        }
        Y::String(s) => Value::String(s),
        Y::Sequence(items) => Value::Array(items.into_iter().map(convert).collect()),
        Y::Mapping(map) => Value::Object(
            map.into_iter()
                .filter_map(|(k, v)| keys::text_of(&convert(k)).map(|k| (k, convert(v))))
                .collect(),
        ),
        Y::Tagged(tagged) => convert(tagged.value),
    }
}

#[cfg(test)]
pub(crate) mod test_support {
    use std::path::{Path, PathBuf};

    use crate::config::{Loaded, load};

    pub(crate) fn fixture(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/config")
            .join(name)
    }

    pub(crate) fn env(vars: &[(&str, &str)]) -> Vec<(String, String)> {
        vars.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    pub(crate) fn load_ok(dir: &Path, vars: &[(&str, &str)]) -> Loaded {
        match load(Some(dir), &env(vars)) {
            Ok(loaded) => loaded,
            Err(errors) => panic!("{errors:#?}"),
        }
    }

    pub(crate) fn load_err(dir: &Path, vars: &[(&str, &str)]) -> Vec<String> {
        match load(Some(dir), &env(vars)) {
            Ok(loaded) => panic!("loaded: {:?}", loaded.settings),
            Err(errors) => errors.iter().map(ToString::to_string).collect(),
        }
    }

    /// A scratch folder of this test process, removed on drop.
    pub(crate) struct Scratch(pub(crate) PathBuf);

    impl Scratch {
        pub(crate) fn new(name: &str) -> Scratch {
            let dir =
                std::env::temp_dir().join(format!("xtm-config-{}-{name}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            Scratch(dir)
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::{Scratch, fixture, load_err, load_ok};
    use super::*;
    use crate::config::Selector;

    #[test]
    fn yaml_syntax_error_names_the_file_and_the_line() {
        let dir = fixture("syntax");
        let got = load_err(&dir, &[]);
        assert_eq!(got.len(), 1, "{got:?}");
        let prefix = format!(
            "file {}: invalid YAML: ",
            dir.join("default.yaml").display()
        );
        assert!(got[0].starts_with(&prefix), "{}", got[0]);
        assert!(got[0].contains("line 6"), "{}", got[0]);
    }

    #[test]
    fn missing_folder_says_what_to_do() {
        let dir = fixture("does-not-exist");
        let got = load_err(&dir, &[]);
        assert_eq!(got.len(), 1);
        assert!(
            got[0].contains(&dir.display().to_string()) && got[0].contains("does not exist"),
            "{}",
            got[0]
        );
        assert!(got[0].contains("--config DIR"), "{}", got[0]);
    }

    #[test]
    fn folders_are_searched_in_order_and_the_error_lists_them() {
        let empty = Scratch::new("empty");
        let full = Scratch::new("full");
        std::fs::write(full.0.join("default.yml"), "manager:\n  id: from-yml\n").unwrap();
        let found = searched_dir(&[empty.0.clone(), full.0.clone()]).unwrap();
        assert_eq!(found, full.0);
        let err = searched_dir(&[empty.0.clone(), PathBuf::from("/nonexistent-xtm")]).unwrap_err();
        let text = err[0].to_string();
        assert!(
            text.contains(&format!("{} and /nonexistent-xtm", empty.0.display())),
            "{text}"
        );
        assert!(text.contains("--config DIR"), "{text}");
        assert_eq!(load_ok(&full.0, &[]).settings.manager.id, "from-yml");
    }

    #[test]
    fn toml_is_refused_with_a_clear_message() {
        let dir = fixture("toml");
        let got = load_err(&dir, &[]);
        assert_eq!(got.len(), 1, "{got:?}");
        assert!(
            got[0].contains("default.toml") && got[0].contains("convert it to YAML"),
            "{}",
            got[0]
        );
    }

    #[test]
    fn json_default_and_yml_profile_are_read() {
        let loaded = load_ok(&fixture("json"), &[]);
        let s = &loaded.settings;
        assert_eq!(
            (s.manager.id.as_str(), s.manager.execute_schedule),
            ("json-id", 20)
        );
        assert_eq!(s.opencti.daemon.selector, Selector::Swarm);
        assert_eq!(
            s.opencti
                .daemon
                .portainer
                .as_ref()
                .unwrap()
                .env_id
                .as_deref(),
            Some("007")
        );
        let swarm = s.opencti.daemon.swarm.as_ref().unwrap();
        assert_eq!(
            (swarm.restart_delay, swarm.dns.as_slice()),
            (Some(5_000_000_000), &["8.8.8.8".to_string()][..])
        );
    }

    #[test]
    fn a_second_default_file_is_ignored_with_a_warning() {
        let dir = Scratch::new("two-defaults");
        std::fs::write(dir.0.join("default.yaml"), "manager:\n  id: yaml\n").unwrap();
        std::fs::write(
            dir.0.join("default.json"),
            "{\"manager\": {\"id\": \"json\"}}",
        )
        .unwrap();
        let loaded = load_ok(&dir.0, &[]);
        assert_eq!(loaded.settings.manager.id, "yaml");
        assert!(
            loaded
                .warnings
                .iter()
                .any(|w| w.contains("default.json") && w.contains("ignored"))
        );
    }

    #[test]
    fn yaml_anchors_and_merge_keys_are_resolved() {
        let text = "base: &base\n  url: http://a\n  enable: true\nopencti:\n  <<: *base\n  url: http://b\n";
        let tree = yaml_to_json(text).unwrap();
        assert_eq!(
            tree["opencti"],
            serde_json::json!({"url": "http://b", "enable": true})
        );
    }
}
