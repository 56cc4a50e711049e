//! Loading: finds the config folder, reads `default.*` then `{COMPOSER_ENV}.*`,
//! applies environment variables (`OPENCTI__DAEMON__SELECTOR`), types every
//! value by its key, and returns `Settings` with the origin of each value.
//! Every problem is collected and returned together, never only the first
//! (CONTRACT §7.1, D25). Values with a grammar go through their parser in
//! `values`; the rules across values live in `validate`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use super::error::{ConfigError, Origin};
use super::files;
use super::keys::{self, Kind};
use super::{EngineAddress, Selector, Settings};
use crate::platform::PlatformKind;

/// A loaded configuration.
#[derive(Debug)]
pub struct Loaded {
    pub settings: Settings,
    /// Dotted key → where its value came from. Keys set by no file and no
    /// environment variable are absent: they hold the built-in default.
    pub origins: BTreeMap<String, Origin>,
    /// Problems that do not stop the composer, as display lines.
    pub warnings: Vec<String>,
    /// The folder the files were read from.
    pub dir: PathBuf,
}

impl Loaded {
    /// Where the value of `key` came from (`Origin::Default` when nothing set it).
    pub fn origin(&self, key: &str) -> Origin {
        origin_at(&self.origins, key)
    }
}

/// Loads the configuration from `dir` (else the searched folders) and `env`
/// (`std::env::vars()` in production, a fixed list in tests).
///
/// # Errors
/// Every problem found: missing folder, unreadable or unparseable file, value
/// of the wrong type, rule broken (see `Settings::validate`).
pub fn load(dir: Option<&Path>, env: &[(String, String)]) -> Result<Loaded, Vec<ConfigError>> {
    let dir = match dir {
        Some(dir) => files::given_dir(dir)?,
        None => files::searched_dir(&files::SEARCHED.map(PathBuf::from))?,
    };
    load_from(dir, env)
}

fn load_from(dir: PathBuf, env: &[(String, String)]) -> Result<Loaded, Vec<ConfigError>> {
    let Assembled {
        settings,
        origins,
        mut errors,
        mut warnings,
    } = assemble(&dir, env);
    let Some(mut settings) = settings else {
        return Err(errors);
    };
    match docker_host(&settings, env) {
        Ok(address) => settings.docker_host = address,
        Err(e) => errors.push(e),
    }
    errors.extend(settings.validate(&origins));
    errors.extend(settings.file_problems(&origins));
    warnings.extend(settings.warnings(&origins).iter().map(|w| w.to_string()));
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(Loaded {
        settings,
        origins,
        warnings,
        dir,
    })
}

/// Files and env merged and typed, before the rules of `validate`.
struct Assembled {
    /// `None` only when the merged tree does not fit `Settings` (a key-table bug).
    settings: Option<Settings>,
    origins: BTreeMap<String, Origin>,
    errors: Vec<ConfigError>,
    warnings: Vec<String>,
}

fn assemble(dir: &Path, env: &[(String, String)]) -> Assembled {
    let mut layers = Layers::default();
    let profile = env_var(env, "COMPOSER_ENV")
        .filter(|v| !v.trim().is_empty())
        .unwrap_or("production");
    layers.read_layer(dir, "default", true);
    if profile != "default" {
        layers.read_layer(dir, profile, false);
    }
    layers.merge_env(env);
    layers.coerce();
    layers.check_selectors();
    layers.warn_missing_required();
    default_opencti_enable(&mut layers.tree);
    let Layers {
        tree,
        origins,
        mut errors,
        warnings,
        ..
    } = layers;
    let settings = match serde_json::from_value::<Settings>(Value::Object(tree)) {
        Ok(settings) => Some(settings),
        Err(_) => {
            // Coercion gives every known key the type Settings expects, so this
            // is a key-table bug. serde's text may quote a value: keep it out.
            errors.push(ConfigError::general(
                Origin::Default,
                "internal: the merged configuration does not fit the settings (key table mismatch)",
            ));
            None
        }
    };
    Assembled {
        settings,
        origins,
        errors,
        warnings,
    }
}

/// The last value of `name` in `env`.
fn env_var<'a>(env: &'a [(String, String)], name: &str) -> Option<&'a str> {
    env.iter()
        .rev()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// Dotted `a.b` from a prefix and a name.
fn join(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}.{name}")
    }
}

/// The origin of `key`, else of its closest parent, else the built-in default.
pub(crate) fn origin_at(origins: &BTreeMap<String, Origin>, key: &str) -> Origin {
    let mut at = key;
    loop {
        if let Some(origin) = origins.get(at) {
            return origin.clone();
        }
        match at.rsplit_once('.') {
            Some((parent, _)) => at = parent,
            None => return Origin::Default,
        }
    }
}

/// Where the values of one layer come from.
enum Source<'a> {
    File(&'a Path),
    /// Env origins by dotted key: one variable may set a whole key or one part.
    Env(&'a BTreeMap<String, Origin>),
}

impl Source<'_> {
    fn origin(&self, key: &str) -> Origin {
        match self {
            Source::File(path) => Origin::File(path.to_path_buf()),
            Source::Env(origins) => {
                if let Some(origin) = origins.get(key) {
                    return origin.clone();
                }
                // Set by parts (`KEY__0`, ...): name the first part's variable.
                let parts = format!("{key}.");
                origins
                    .range(parts.clone()..)
                    .find(|(k, _)| k.starts_with(&parts))
                    .map(|(_, o)| o.clone())
                    .unwrap_or(Origin::Default)
            }
        }
    }

    /// Origins of the parts of `key` set by this layer (env indexed entries).
    fn part_origins(&self, key: &str) -> Vec<(String, Origin)> {
        let Source::Env(origins) = self else {
            return Vec::new();
        };
        let parts = format!("{key}.");
        origins
            .range(parts.clone()..)
            .take_while(|(k, _)| k.starts_with(&parts))
            .map(|(k, o)| (k.clone(), o.clone()))
            .collect()
    }
}

/// The merge in progress: the value tree, who set what, and what went wrong.
#[derive(Default)]
struct Layers {
    tree: Map<String, Value>,
    origins: BTreeMap<String, Origin>,
    errors: Vec<ConfigError>,
    warnings: Vec<String>,
    /// Values their parser refused, judged once the whole tree is typed
    /// (whether the key is used decides error or warning).
    refused: Vec<keys::Bad>,
}

impl Layers {
    fn error(
        &mut self,
        key: &str,
        value: Option<String>,
        origin: Origin,
        problem: impl Into<String>,
    ) {
        self.errors
            .push(ConfigError::new(key, value, origin, problem));
    }

    fn warn(
        &mut self,
        key: &str,
        value: Option<String>,
        origin: Origin,
        problem: impl Into<String>,
    ) {
        let line = ConfigError::new(key, value, origin, problem).to_string();
        self.warnings.push(line);
    }

    /// Reads the layer `stem` (`default`, `production`) from `dir` when present.
    fn read_layer(&mut self, dir: &Path, stem: &str, required: bool) {
        let picked = files::pick(dir, stem, required);
        self.errors.extend(picked.errors);
        self.warnings.extend(picked.warnings);
        if let Some(path) = picked.path {
            self.merge_file(&path);
        }
    }

    fn merge_file(&mut self, path: &Path) {
        match files::read(path) {
            Ok(map) => {
                let mut tree = std::mem::take(&mut self.tree);
                self.merge_map(&mut tree, map, "", &Source::File(path));
                self.tree = tree;
            }
            Err(e) => self.errors.push(e),
        }
    }

    fn merge_env(&mut self, env: &[(String, String)]) {
        let (map, origins) = self.env_layer(env);
        let mut tree = std::mem::take(&mut self.tree);
        self.merge_map(&mut tree, map, "", &Source::Env(&origins));
        self.tree = tree;
    }

    /// Builds one tree from every env variable under `manager`, `opencti` or
    /// `openaev`: `__` nests, names are lowercased, values stay text until coercion.
    fn env_layer(
        &mut self,
        env: &[(String, String)],
    ) -> (Map<String, Value>, BTreeMap<String, Origin>) {
        let mut vars: Vec<&(String, String)> = env.iter().collect();
        // Sorted so `KEY` comes before `KEY__0` and conflicts are reported the same way every run.
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        let mut tree = Map::new();
        let mut origins = BTreeMap::new();
        for (name, value) in vars {
            let segments: Vec<String> = name.split("__").map(str::to_lowercase).collect();
            if segments.len() < 2 || !keys::TOP.contains(&segments[0].as_str()) {
                self.warn_single_underscore(name);
                continue;
            }
            let origin = Origin::Env(name.clone());
            let key = segments.join(".");
            if segments.iter().any(String::is_empty) {
                self.warn(
                    &key,
                    None,
                    origin,
                    "ignored: empty segment (doubled or trailing __)",
                );
                continue;
            }
            // Names are matched without case, so `X__Y` and `x__y` set one key:
            // refused, not decided silently by sort order (found by fuzzing).
            if let Some(Origin::Env(first)) = origins.get(&key)
                && first != name
            {
                let problem =
                    format!("also set by {first} (names are matched in lower case); keep one");
                self.error(&key, None, origin, problem);
                continue;
            }
            if place(&mut tree, &segments, Value::String(value.clone())) {
                origins.insert(key, origin);
            } else {
                self.error(
                    &key,
                    None,
                    origin,
                    "conflicts with another variable that sets this key \
                     as a whole or by parts; keep only one form",
                );
            }
        }
        (tree, origins)
    }

    /// `MANAGER_ID`, `OPENCTI_URL`: ignored here as by the existing composer (its
    /// own development manifest sets them so), but almost surely meant as `MANAGER__ID`.
    fn warn_single_underscore(&mut self, name: &str) {
        let lower = name.to_lowercase();
        let Some((top, rest)) = lower.split_once('_') else {
            return;
        };
        let key = format!("{top}.{rest}");
        if name.contains("__") || !keys::TOP.contains(&top) || keys::kind_of(&key).is_none() {
            return;
        }
        let meant = format!("{}__{}", &name[..top.len()], &name[top.len() + 1..]);
        self.warn(
            &key,
            None,
            Origin::Env(name.to_string()),
            format!("ignored: one underscore; the composer reads {meant} (two underscores)"),
        );
    }

    fn merge_map(
        &mut self,
        dst: &mut Map<String, Value>,
        src: Map<String, Value>,
        prefix: &str,
        from: &Source,
    ) {
        for (name, value) in src {
            let key = join(prefix, &name);
            match keys::kind_of(&key) {
                None => self.warn(
                    &key,
                    None,
                    from.origin(&key),
                    "unknown key, ignored (check its spelling)",
                ),
                Some(Kind::Ignored) => {}
                Some(Kind::Section) => self.merge_section(dst, name, value, &key, from),
                Some(kind) => self.merge_leaf(dst, name, value, kind, &key, from),
            }
        }
    }

    fn merge_section(
        &mut self,
        dst: &mut Map<String, Value>,
        name: String,
        value: Value,
        key: &str,
        from: &Source,
    ) {
        match value {
            // `daemon:` with everything under it commented out: nothing to merge.
            Value::Null => {}
            Value::Object(src) => {
                let slot = dst.entry(name).or_insert_with(|| Value::Object(Map::new()));
                if !slot.is_object() {
                    *slot = Value::Object(Map::new());
                }
                if let Value::Object(section) = slot {
                    self.merge_map(section, src, key, from);
                }
            }
            other => self.error(
                key,
                keys::text_of(&other),
                from.origin(key),
                "is a section, not a value: set the keys under it instead",
            ),
        }
    }

    /// A later layer wins per key; mappings under `base_deployment`,
    /// `image_resources` and `sysctls` merge deep. Null unsets the key.
    fn merge_leaf(
        &mut self,
        dst: &mut Map<String, Value>,
        name: String,
        value: Value,
        kind: Kind,
        key: &str,
        from: &Source,
    ) {
        let parts = format!("{key}.");
        self.origins
            .retain(|k, _| k != key && !k.starts_with(&parts));
        if value.is_null() {
            dst.remove(&name);
            return;
        }
        let merged = match (dst.remove(&name), value, kind) {
            (Some(Value::Object(mut old)), Value::Object(new), Kind::Object | Kind::StrMap) => {
                deep_merge(&mut old, new);
                Value::Object(old)
            }
            (_, new, _) => new,
        };
        dst.insert(name, merged);
        self.origins.insert(key.to_string(), from.origin(key));
        self.origins.extend(from.part_origins(key));
    }

    /// Types every known key; a value that does not fit is reported and
    /// dropped, so the built-in default stands in and later checks still run.
    fn coerce(&mut self) {
        let mut tree = std::mem::take(&mut self.tree);
        self.coerce_map(&mut tree, "");
        self.tree = tree;
        for b in std::mem::take(&mut self.refused) {
            let origin = origin_at(&self.origins, &b.key);
            match unused(&self.tree, &b.key) {
                Some(why) => {
                    let problem = format!("{} ({why}, ignored)", b.problem);
                    self.warn(&b.key, b.value, origin, problem);
                }
                None if b.warning => self.warn(&b.key, b.value, origin, b.problem),
                None => self.error(&b.key, b.value, origin, b.problem),
            }
        }
    }

    fn coerce_map(&mut self, map: &mut Map<String, Value>, prefix: &str) {
        let names: Vec<String> = map.keys().cloned().collect();
        for name in names {
            let key = join(prefix, &name);
            let kind = keys::kind_of(&key);
            let Some(value) = map.remove(&name) else {
                continue;
            };
            match (kind, value) {
                (Some(Kind::Section), Value::Object(mut section)) => {
                    self.coerce_map(&mut section, &key);
                    map.insert(name, Value::Object(section));
                }
                (Some(kind), value) if kind != Kind::Section && kind != Kind::Ignored => {
                    match keys::coerce(kind, &key, value) {
                        // Blank where blank means unset (an engine address, ...).
                        Ok(Value::Null) => {}
                        Ok(value) => {
                            map.insert(name, value);
                        }
                        Err(bad) if matches!(kind, Kind::Parsed(_)) => self.refused.extend(bad),
                        Err(bad) => {
                            for b in bad {
                                let origin = origin_at(&self.origins, &b.key);
                                self.error(&b.key, b.value, origin, b.problem);
                            }
                        }
                    }
                }
                _ => {}
            }
        }
    }

    /// `Settings` holds the selector as an enum, so a typo must be caught here.
    /// A disabled platform's typo is only a warning: nothing will run there.
    fn check_selectors(&mut self) {
        for platform in keys::PLATFORMS {
            let key = format!("{platform}.daemon.selector");
            let Some(Value::String(selector)) = lookup(&self.tree, &key).cloned() else {
                continue;
            };
            if SELECTORS.contains(&selector.as_str()) {
                continue;
            }
            let origin = origin_at(&self.origins, &key);
            let problem = format!("expected one of {}", SELECTORS.join(", "));
            if is_enabled(&self.tree, platform) {
                self.error(&key, Some(selector), origin, problem);
            } else {
                self.warn(
                    &key,
                    Some(selector),
                    origin,
                    format!("{problem} (platform disabled, ignored)"),
                );
            }
            if let Some(Value::Object(daemon)) =
                lookup_mut(&mut self.tree, &format!("{platform}.daemon"))
            {
                daemon.remove("selector");
            }
        }
    }

    /// §7.1 calls these keys required; a file that omits them still loads
    /// (the built-in default is the shipped one), but the operator is told.
    fn warn_missing_required(&mut self) {
        for (key, _, required) in keys::all() {
            let platform = key.split('.').next().unwrap_or_default().to_string();
            let in_scope = platform == "manager" || is_enabled(&self.tree, &platform);
            if required && in_scope && !self.origins.contains_key(&key) {
                self.warn(
                    &key,
                    None,
                    Origin::Default,
                    "not set in any file or env; the built-in default is used",
                );
            }
        }
    }
}

/// Why a key of a parsed type goes unused, if it does: a value its parser
/// refuses is then only a warning, as before those keys were typed (a disabled
/// platform, a Portainer section under another selector, a JSON text that
/// `base_deployment` overrides). The `opencti` docker section also serves an
/// `openaev` that has none (§6.1).
fn unused(tree: &Map<String, Value>, key: &str) -> Option<&'static str> {
    let (platform, rest) = key.split_once('.')?;
    if !keys::PLATFORMS.contains(&platform) {
        return None;
    }
    let serves_openaev = platform == "opencti"
        && rest.starts_with("daemon.docker.")
        && is_enabled(tree, "openaev")
        && lookup(tree, "openaev.daemon.docker").is_none();
    if !is_enabled(tree, platform) && !serves_openaev {
        return Some("platform disabled");
    }
    let selector = lookup(tree, &format!("{platform}.daemon.selector"));
    if rest.starts_with("daemon.portainer.") && selector != Some(&Value::from("portainer")) {
        return Some("the selector is not portainer");
    }
    let base = lookup(
        tree,
        &format!("{platform}.daemon.kubernetes.base_deployment"),
    );
    if rest == "daemon.kubernetes.base_deployment_json" && base.is_some_and(|b| !b.is_null()) {
        return Some("base_deployment is set and wins");
    }
    None
}

/// `DOCKER_HOST` from `env`, parsed. A value the parser refuses is an error
/// only where it would be used: an enabled platform that reaches a Docker
/// engine (selector docker or swarm) without its own `{p}.daemon.docker.host`.
fn docker_host(
    settings: &Settings,
    env: &[(String, String)],
) -> Result<Option<EngineAddress>, ConfigError> {
    let Some(text) = env_var(env, "DOCKER_HOST").filter(|h| !h.trim().is_empty()) else {
        return Ok(None);
    };
    let problem = match text.parse::<EngineAddress>() {
        Ok(address) => return Ok(Some(address)),
        Err(problem) => problem,
    };
    let user = [PlatformKind::OpenCti, PlatformKind::OpenAev]
        .into_iter()
        .find(|kind| {
            let p = settings.platform(*kind);
            p.enable
                && matches!(p.daemon.selector, Selector::Docker | Selector::Swarm)
                && settings
                    .docker_options(*kind)
                    .is_none_or(|o| o.host.is_none())
        });
    match user {
        Some(kind) => Err(ConfigError::new(
            format!("{kind}.daemon.docker.host"),
            Some(crate::http::without_userinfo(text)),
            Origin::Env("DOCKER_HOST".into()),
            format!("{problem} (DOCKER_HOST stands in for this unset key)"),
        )),
        None => Ok(None),
    }
}

/// Accepted `{p}.daemon.selector` values.
pub(crate) const SELECTORS: [&str; 4] = ["docker", "portainer", "kubernetes", "swarm"];

/// `PlatformSettings::default()` is off, which is right for `openaev` but
/// not for an `opencti` section that omits `enable` (§1: default `true`).
fn default_opencti_enable(tree: &mut Map<String, Value>) {
    if let Some(Value::Object(opencti)) = tree.get_mut("opencti") {
        opencti.entry("enable").or_insert(Value::Bool(true));
    }
}

/// `{p}.enable` as merged, else its default (only OpenCTI is on by default).
fn is_enabled(tree: &Map<String, Value>, platform: &str) -> bool {
    match lookup(tree, &format!("{platform}.enable")) {
        Some(Value::Bool(b)) => *b,
        _ => platform == "opencti",
    }
}

fn lookup<'a>(tree: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    let (first, rest) = key.split_once('.').unwrap_or((key, ""));
    let mut at = tree.get(first)?;
    for segment in rest.split('.').filter(|s| !s.is_empty()) {
        at = at.get(segment)?;
    }
    Some(at)
}

fn lookup_mut<'a>(tree: &'a mut Map<String, Value>, key: &str) -> Option<&'a mut Value> {
    let (first, rest) = key.split_once('.').unwrap_or((key, ""));
    let mut at = tree.get_mut(first)?;
    for segment in rest.split('.').filter(|s| !s.is_empty()) {
        at = at.get_mut(segment)?;
    }
    Some(at)
}

/// Puts `value` at `path`, creating mappings on the way. False when the path
/// crosses a value already set (`KEY=[..]` and `KEY__0=..` together).
fn place(tree: &mut Map<String, Value>, path: &[String], value: Value) -> bool {
    let Some((last, parents)) = path.split_last() else {
        return false;
    };
    let mut at = tree;
    for segment in parents {
        let slot = at
            .entry(segment.clone())
            .or_insert_with(|| Value::Object(Map::new()));
        match slot {
            Value::Object(map) => at = map,
            _ => return false,
        }
    }
    if at.get(last).is_some_and(Value::is_object) {
        return false;
    }
    at.insert(last.clone(), value);
    true
}

/// Later values win per leaf; mappings merge key by key.
fn deep_merge(old: &mut Map<String, Value>, new: Map<String, Value>) {
    for (name, value) in new {
        match (old.get_mut(&name), value) {
            (Some(Value::Object(o)), Value::Object(n)) => deep_merge(o, n),
            (_, value) => {
                old.insert(name, value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::files::test_support::{Scratch, env, fixture, load_err, load_ok};
    use crate::config::{PlatformSettings, Selector};
    use crate::orchestrator::docker::{ApiVersion, PullPolicy};
    use crate::secret::Secret;

    #[test]
    fn existing_composer_default_loads_unchanged() {
        let dir = fixture("existing");
        let loaded = load_ok(&dir, &[]);
        let s = &loaded.settings;
        assert_eq!(s.manager.id, "default-manager-id");
        assert_eq!(s.manager.name, "Filigran connector manager");
        assert_eq!(
            (s.manager.execute_schedule, s.manager.ping_alive_schedule),
            (10, 60)
        );
        assert_eq!(
            (
                s.manager.logger.level.as_str(),
                s.manager.logger.format.as_str()
            ),
            ("info", "json")
        );
        assert!(s.manager.logger.directory && s.manager.logger.console);
        assert_eq!(s.manager.credentials_key, None);
        for (p, enable, api) in [
            (&s.opencti, true, "https://host.docker.internal:9443"),
            (&s.openaev, false, "https://localhost:9443"),
        ] {
            assert_eq!(p.enable, enable);
            assert_eq!(p.url, "http://host.docker.internal:4000");
            assert_eq!(p.token, Secret::new("ChangeMe"));
            assert!(!p.unsecured_certificate && !p.with_proxy && p.https_proxy_reject_unauthorized);
            assert_eq!(
                (p.logs_schedule, p.request_timeout, p.connect_timeout),
                (10, 30, 10)
            );
            assert_eq!(p.daemon.selector, Selector::Kubernetes);
            let k8s = p.daemon.kubernetes.as_ref().unwrap();
            assert_eq!(k8s.image_pull_policy, PullPolicy::IfNotPresent);
            assert_eq!(k8s.base_deployment, None);
            let portainer = p.daemon.portainer.as_ref().unwrap();
            assert_eq!(portainer.api.as_deref(), Some(api));
            assert_eq!(portainer.api_key, Some(Secret::new("ChangeMe")));
            assert_eq!(portainer.env_id.as_deref(), Some("3"));
            assert_eq!(portainer.env_type.as_deref(), Some("docker"));
            assert_eq!(portainer.api_version, ApiVersion::parse("v1.44"));
            assert!(
                p.daemon.registry.is_none()
                    && p.daemon.docker.is_none()
                    && p.daemon.swarm.is_none()
            );
        }
        let leftovers = s.openaev.daemon.portainer.as_ref().unwrap();
        assert_eq!(leftovers.stack.as_deref(), Some("opencti-dev"));
        assert_eq!(
            leftovers.network_mode.as_deref(),
            Some("opencti-dev_default")
        );
        assert_eq!(
            loaded.origin("manager.id"),
            Origin::File(dir.join("default.yaml"))
        );
        assert_eq!(loaded.origin("manager.max_parallel"), Origin::Default);
        assert!(
            !loaded.warnings.iter().any(|w| w.contains("unknown key")),
            "{:?}",
            loaded.warnings
        );
    }

    #[test]
    fn shipped_default_equals_the_existing_defaults_without_the_dev_leftovers() {
        let ours = load_ok(&Path::new(env!("CARGO_MANIFEST_DIR")).join("config"), &[]);
        let mut existing = load_ok(&fixture("existing"), &[]).settings;
        if let Some(portainer) = existing.openaev.daemon.portainer.as_mut() {
            portainer.stack = None;
            portainer.network_mode = None;
        }
        assert_eq!(ours.settings, existing);
        assert!(
            !ours.warnings.iter().any(|w| w.contains("unknown key")),
            "{:?}",
            ours.warnings
        );
        // Every required key is written out in the shipped file.
        assert!(
            !ours
                .warnings
                .iter()
                .any(|w| w.contains("not set in any file")),
            "{:?}",
            ours.warnings
        );
    }

    #[test]
    fn profile_file_overrides_default_leaf_by_leaf() {
        let dir = fixture("layered");
        let loaded = load_ok(&dir, &[("COMPOSER_ENV", "staging")]);
        let s = &loaded.settings;
        assert_eq!(s.manager.id, "base-id");
        assert_eq!(s.manager.name, "Staging name");
        assert_eq!(s.manager.logger.level, "debug");
        assert_eq!(s.manager.logger.format, "json");
        assert_eq!(s.opencti.url, "https://opencti.staging:8443");
        let docker = s.opencti.daemon.docker.as_ref().unwrap();
        let sysctls: Vec<_> = docker
            .sysctls
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        assert_eq!(
            sysctls,
            ["net.core.somaxconn=1024", "net.ipv4.ip_forward=1"]
        );
        let resources = s
            .opencti
            .daemon
            .kubernetes
            .as_ref()
            .and_then(|k| k.image_resources.clone());
        assert_eq!(
            resources,
            Some(serde_json::json!({"limits": {"cpu": "1", "memory": "1Gi"}}))
        );
        assert_eq!(
            loaded.origin("manager.id"),
            Origin::File(dir.join("default.yaml"))
        );
        assert_eq!(
            loaded.origin("manager.name"),
            Origin::File(dir.join("staging.yaml"))
        );
        assert_eq!(loaded.dir, dir);
    }

    #[test]
    fn missing_profile_file_is_fine() {
        let loaded = load_ok(&fixture("layered"), &[]);
        assert_eq!(loaded.settings.manager.name, "Base name");
    }

    #[test]
    fn env_overrides_both_files_and_is_recorded_as_the_origin() {
        let loaded = load_ok(
            &fixture("layered"),
            &[
                ("COMPOSER_ENV", "staging"),
                ("OPENCTI__URL", "http://from-env:4000"),
                ("MANAGER__EXECUTE_SCHEDULE", "30"),
                ("manager__logger__level", "warn"),
                ("OPENAEV__ENABLE", "true"),
                (
                    "OPENCTI__DAEMON__KUBERNETES__IMAGE_RESOURCES__LIMITS__CPU",
                    "2",
                ),
                ("PATH", "/usr/bin"),
                ("OPENCTI_URL", "http://ignored"),
            ],
        );
        let s = &loaded.settings;
        assert_eq!(s.opencti.url, "http://from-env:4000");
        assert_eq!(s.manager.execute_schedule, 30);
        assert_eq!(s.manager.logger.level, "warn");
        assert!(s.openaev.enable);
        let resources = s
            .opencti
            .daemon
            .kubernetes
            .as_ref()
            .and_then(|k| k.image_resources.clone());
        assert_eq!(
            resources,
            Some(serde_json::json!({"limits": {"cpu": "2", "memory": "1Gi"}}))
        );
        assert_eq!(
            loaded.origin("opencti.url"),
            Origin::Env("OPENCTI__URL".into())
        );
        assert_eq!(
            loaded.origin("manager.execute_schedule"),
            Origin::Env("MANAGER__EXECUTE_SCHEDULE".into())
        );
        assert_eq!(
            loaded.origin("manager.logger.level"),
            Origin::Env("manager__logger__level".into())
        );
    }

    #[test]
    fn broken_config_reports_every_problem_at_once() {
        let dir = fixture("broken");
        let file = dir.join("default.yaml");
        let from = format!("(from file {})", file.display());
        let mut got = load_err(&dir, &[]);
        got.sort();
        let mut want = vec![
            format!("manager.execute_schedule = \"0\" {from}: must be at least 1 (seconds)"),
            format!(
                "manager.logger.console = \"sometimes\" {from}: expected true or false (also yes/no, on/off, 1/0)"
            ),
            format!(
                "manager.logger.level = \"infos\" {from}: expected one of trace, debug, info, warn, error"
            ),
            format!(
                "opencti.daemon.selector = \"dokcer\" {from}: expected one of docker, portainer, kubernetes, swarm"
            ),
            format!("opencti.url = \"opencti:8080\" {from}: must start with http:// or https://"),
        ];
        want.sort();
        assert_eq!(got, want);
        assert!(!got.concat().contains("s3cret-token"));
    }

    #[test]
    fn env_typo_names_the_variable() {
        let got = load_err(
            &fixture("layered"),
            &[("OPENCTI__DAEMON__SELECTOR", "dokcer")],
        );
        assert_eq!(
            got,
            [
                "opencti.daemon.selector = \"dokcer\" (from env OPENCTI__DAEMON__SELECTOR): \
              expected one of docker, portainer, kubernetes, swarm"
            ]
        );
    }

    #[test]
    fn a_disabled_platform_selector_typo_is_only_a_warning() {
        let loaded = load_ok(
            &fixture("layered"),
            &[("OPENAEV__DAEMON__SELECTOR", "dokcer")],
        );
        assert_eq!(
            loaded.settings.openaev.daemon.selector,
            Selector::Kubernetes
        );
        assert!(
            loaded
                .warnings
                .iter()
                .any(|w| w.starts_with("openaev.daemon.selector = \"dokcer\""))
        );
    }

    /// Found by fuzzing (fuzz/fuzz_targets/config_env.rs): two names for one key
    /// that differ only in case loaded the byte-greater one's value silently.
    #[test]
    fn one_key_set_by_two_names_differing_in_case_is_refused() {
        let got = load_err(
            &fixture("layered"),
            &[
                ("MANAGER__EXECUTE_SCHEDULE", "10"),
                ("MANAGER__EXECUTE_SCHEdULE", "49"),
            ],
        );
        assert_eq!(
            got,
            [
                "manager.execute_schedule (from env MANAGER__EXECUTE_SCHEdULE): also set by \
                 MANAGER__EXECUTE_SCHEDULE (names are matched in lower case); keep one"
            ]
        );
    }

    #[test]
    fn file_and_env_problems_come_back_together() {
        let dir = fixture("syntax");
        let got = load_err(
            &dir,
            &[
                ("MANAGER__EXECUTE_SCHEDULE", "soon"),
                ("OPENCTI__ENABLE", "maybe"),
            ],
        );
        assert_eq!(got.len(), 3, "{got:?}");
        assert!(got.iter().all(|e| !e.contains("no platform is enabled")));
    }

    #[test]
    fn null_in_a_later_layer_unsets_the_key() {
        let dir = Scratch::new("null");
        std::fs::write(dir.0.join("default.yaml"), "manager:\n  name_prefix: xtm\n").unwrap();
        std::fs::write(dir.0.join("production.yaml"), "manager:\n  name_prefix:\n").unwrap();
        assert_eq!(load_ok(&dir.0, &[]).settings.manager.name_prefix, None);
    }

    #[test]
    fn single_underscore_names_of_known_keys_are_ignored_with_a_hint() {
        let loaded = load_ok(
            &fixture("layered"),
            &[
                ("MANAGER_ID", "x"),
                ("OPENCTI_URL", "http://x"),
                ("OPENCTI_HOSTNAME", "x"),
                ("PATH", "/bin"),
            ],
        );
        assert_eq!(loaded.settings.manager.id, "base-id");
        let hints: Vec<_> = loaded
            .warnings
            .iter()
            .filter(|w| w.contains("one underscore"))
            .collect();
        assert_eq!(hints.len(), 2, "{hints:?}");
        assert!(hints[0].contains("MANAGER__ID"), "{hints:?}");
        assert!(hints[1].contains("OPENCTI__URL"), "{hints:?}");
    }

    #[test]
    fn unknown_keys_are_ignored_with_a_warning() {
        let loaded = load_ok(
            &fixture("layered"),
            &[
                ("OPENCTI__DAEMON__SELCTOR", "docker"),
                ("OPENCTI__DAEMON__REGISTRY__TOKEN_TTL", "5"),
            ],
        );
        let unknown: Vec<_> = loaded
            .warnings
            .iter()
            .filter(|w| w.contains("unknown key"))
            .collect();
        assert_eq!(unknown.len(), 1, "{unknown:?}");
        assert!(unknown[0].contains("OPENCTI__DAEMON__SELCTOR"));
    }

    #[test]
    fn secret_values_never_appear_in_problems() {
        let dir = fixture("layered");
        let vars = [
            ("OPENCTI__TOKEN__0", "hunter2"),
            ("OPENCTI__HTTPS_PROXY", "[\"http://u:hunter2@proxy\""),
            ("OPENAEV__DAEMON__REGISTRY__PASSWORD", "hunter2"),
            ("OPENAEV__DAEMON__REGISTRY__PASSWORD__0", "hunter2"),
            ("MANAGER__CREDENTIALS_KEY", "hunter2"),
            ("MANAGER__CREDENTIALS_KEY__X", "hunter2"),
            ("OPENAEV__DAEMON__PORTAINER__API_KEY", "hunter2"),
            (
                "OPENCTI__DAEMON__KUBERNETES__BASE_DEPLOYMENT_JSON",
                "{\"env\": \"hunter2\"",
            ),
        ];
        let errors = load(Some(&dir), &env(&vars)).unwrap_err();
        assert!(errors.len() >= 4, "{errors:#?}");
        for e in &errors {
            assert!(!e.to_string().contains("hunter2"), "{e}");
            assert!(!format!("{e:?}").contains("hunter2"), "{e:?}");
        }
    }

    #[test]
    fn an_opencti_section_without_enable_stays_enabled() {
        let dir = Scratch::new("no-enable");
        std::fs::write(
            dir.0.join("default.yaml"),
            "opencti:\n  url: http://o:8080\n",
        )
        .unwrap();
        assert!(load_ok(&dir.0, &[]).settings.opencti.enable);
    }

    #[test]
    fn required_keys_missing_from_every_layer_are_named() {
        let loaded = load_ok(&fixture("minimal"), &[]);
        assert!(
            loaded
                .warnings
                .iter()
                .any(|w| w.starts_with("manager.name (from built-in default)"))
        );
        assert!(loaded.warnings.iter().any(|w| w.starts_with("opencti.url")));
        assert!(!loaded.warnings.iter().any(|w| w.starts_with("openaev.url")));
        assert_eq!(
            loaded.settings.opencti,
            PlatformSettings {
                enable: true,
                ..PlatformSettings::default()
            }
        );
    }
}
