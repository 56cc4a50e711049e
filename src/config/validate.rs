//! Rules on configuration values once typed: allowed words, positive periods,
//! URL schemes, what each selector needs (CONTRACT §1, §6, §7.2). Each problem
//! names its key, value, origin and fix; errors stop startup, warnings do not.
//! Typing, layering and the grammar of single values (`values`) are `load`'s
//! job; this file reads only `Settings`.

use std::collections::BTreeMap;

use super::error::{ConfigError, Origin};
use super::load::origin_at;
use super::{KubernetesSettings, Manager, PlatformSettings, Selector, Settings};
use crate::orchestrator::kubernetes::manifest;
use crate::platform::PlatformKind;

const LEVELS: [&str; 5] = ["trace", "debug", "info", "warn", "error"];
const FORMATS: [&str; 2] = ["json", "pretty"];
const SWARM_RESTART: [&str; 3] = ["none", "on-failure", "any"];
/// OpenCTI marks a manager inactive after 5 minutes without a ping (§8.2).
const PING_LIMIT: u64 = 300;
/// Upper bounds (issue 12 item 7): far above any sensible value, low enough
/// that no `Instant + Duration` or thread count built from them can overflow.
const MAX_PERIOD: u64 = 86_400;
const MAX_REQUEST_TIMEOUT: u64 = 3_600;
const MAX_CONNECT_TIMEOUT: u64 = 600;
/// Each unit of `max_parallel` is a worker thread.
const MAX_PARALLEL: usize = 64;
const PLACEHOLDER: &str = "ChangeMe";

impl Settings {
    /// Every rule this configuration breaks. Empty when it can run.
    pub fn validate(&self, origins: &BTreeMap<String, Origin>) -> Vec<ConfigError> {
        self.findings(origins).errors
    }

    /// What is suspicious but does not stop the composer (placeholder token,
    /// half-set registry credentials, ...).
    pub fn warnings(&self, origins: &BTreeMap<String, Origin>) -> Vec<ConfigError> {
        self.findings(origins).warnings
    }

    fn findings<'a>(&self, origins: &'a BTreeMap<String, Origin>) -> Findings<'a> {
        let mut f = Findings {
            origins,
            errors: Vec::new(),
            warnings: Vec::new(),
        };
        check_manager(&self.manager, &mut f);
        for kind in [PlatformKind::OpenCti, PlatformKind::OpenAev] {
            if self.platform(kind).enable {
                check_platform(self, kind, &mut f);
            }
        }
        if !self.opencti.enable && !self.openaev.enable {
            f.error(
                "opencti.enable",
                Some("false"),
                "no platform is enabled, so there is nothing to do: \
                 set opencti.enable or openaev.enable to true",
            );
        }
        f
    }
}

/// Problems found so far; one entry per problem even when two platforms
/// share a section (the `opencti` registry and docker fallback).
struct Findings<'a> {
    origins: &'a BTreeMap<String, Origin>,
    errors: Vec<ConfigError>,
    warnings: Vec<ConfigError>,
}

impl Findings<'_> {
    fn problem(&self, key: &str, value: Option<&str>, problem: &str) -> ConfigError {
        let origin = origin_at(self.origins, key);
        ConfigError::new(key, value.map(str::to_string), origin, problem)
    }

    fn error(&mut self, key: &str, value: Option<&str>, problem: &str) {
        let e = self.problem(key, value, problem);
        if !self.errors.contains(&e) {
            self.errors.push(e);
        }
    }

    fn warn(&mut self, key: &str, value: Option<&str>, problem: &str) {
        let w = self.problem(key, value, problem);
        if !self.warnings.contains(&w) {
            self.warnings.push(w);
        }
    }

    /// `value` must be one of `allowed`.
    fn one_of(&mut self, key: &str, value: &str, allowed: &[&str]) {
        if !allowed.contains(&value) {
            self.error(
                key,
                Some(value),
                &format!("expected one of {}", allowed.join(", ")),
            );
        }
    }

    /// A period or timeout in seconds must be at least 1.
    fn positive(&mut self, key: &str, value: u64) {
        if value == 0 {
            self.error(key, Some("0"), "must be at least 1 (seconds)");
        }
    }

    /// A period or timeout in seconds, from 1 to `max`.
    fn seconds(&mut self, key: &str, value: u64, max: u64) {
        self.positive(key, value);
        if value > max {
            self.error(
                key,
                Some(&value.to_string()),
                &format!("must be at most {max} (seconds)"),
            );
        }
    }

    /// A URL the HTTP clients can reach, by their own parser.
    fn http_url(&mut self, key: &str, value: &str) {
        if !(value.starts_with("http://") || value.starts_with("https://")) {
            self.error(key, Some(value), "must start with http:// or https://");
        } else if let Some(problem) = crate::http::url_problem(value) {
            let shown = crate::http::without_userinfo(value);
            self.error(
                key,
                Some(&shown),
                &format!("is not a usable URL: {problem}"),
            );
        }
    }
}

fn check_manager(m: &Manager, f: &mut Findings) {
    if m.id.trim().is_empty() {
        f.error(
            "manager.id",
            Some(&m.id),
            "must not be empty: set a stable id for this composer",
        );
    }
    if m.name.trim().is_empty() {
        f.error("manager.name", Some(&m.name), "must not be empty");
    }
    f.seconds("manager.execute_schedule", m.execute_schedule, MAX_PERIOD);
    f.positive("manager.ping_alive_schedule", m.ping_alive_schedule);
    if m.ping_alive_schedule >= PING_LIMIT {
        f.error(
            "manager.ping_alive_schedule",
            Some(&m.ping_alive_schedule.to_string()),
            "must be below 300: OpenCTI marks a manager inactive after 5 minutes without a ping",
        );
    }
    if m.crash_loop.stop_after == Some(0) {
        f.error(
            "manager.crash_loop.stop_after",
            Some("0"),
            "must be at least 1 (leave it unset to never stop a crash-looping workload)",
        );
    }
    if m.max_parallel == 0 || m.max_parallel > MAX_PARALLEL {
        f.error(
            "manager.max_parallel",
            Some(&m.max_parallel.to_string()),
            &format!("must be from 1 to {MAX_PARALLEL} (one worker thread each)"),
        );
    }
    if let Some(listen) = &m.observability.listen
        && listen.parse::<std::net::SocketAddr>().is_err()
    {
        let why = "must be an IP address and port, e.g. 127.0.0.1:9464";
        f.error("manager.observability.listen", Some(listen), why);
    }
    if m.observability.stale_after == Some(0) {
        f.error(
            "manager.observability.stale_after",
            Some("0"),
            "must be at least 1 (seconds)",
        );
    }
    f.one_of("manager.logger.level", &m.logger.level, &LEVELS);
    f.one_of("manager.logger.format", &m.logger.format, &FORMATS);
    check_logger(m, f);
    if let (Some(_), Some(path)) = (&m.credentials_key, &m.credentials_key_filepath) {
        f.warn(
            "manager.credentials_key_filepath",
            Some(path),
            "is set together with manager.credentials_key: the file wins, the inline key is unused",
        );
    }
    if m.debug.show_env_vars && m.debug.show_sensitive_env_vars {
        f.warn(
            "manager.debug.show_sensitive_env_vars",
            Some("true"),
            "decrypted connector secrets will be written to the log; turn it off after debugging",
        );
    }
}

/// Where the log goes: a setting that silently produces no output is named.
fn check_logger(m: &Manager, f: &mut Findings) {
    let l = &m.logger;
    let file = l.file.as_deref().is_some_and(|p| !p.trim().is_empty());
    if file && !l.directory {
        f.warn(
            "manager.logger.directory",
            Some("false"),
            "turns the log file off, so manager.logger.file is not written: \
             set directory: true to write it",
        );
    }
    let writes_file = file && l.directory;
    if !l.console && !writes_file {
        f.warn(
            "manager.logger.console",
            Some("false"),
            "and no log file is written (manager.logger.file unset or directory false): \
             the composer logs nothing; set console: true, or name a file",
        );
    }
}

fn check_platform(s: &Settings, kind: PlatformKind, f: &mut Findings) {
    let name = kind.as_str();
    let p = s.platform(kind);
    f.http_url(&format!("{name}.url"), &p.url);
    if let Some(url) = &p.connector_url {
        f.http_url(&format!("{name}.connector_url"), url);
    }
    f.seconds(
        &format!("{name}.logs_schedule"),
        p.logs_schedule,
        MAX_PERIOD,
    );
    let request = (p.request_timeout, MAX_REQUEST_TIMEOUT);
    f.seconds(&format!("{name}.request_timeout"), request.0, request.1);
    let connect = (p.connect_timeout, MAX_CONNECT_TIMEOUT);
    f.seconds(&format!("{name}.connect_timeout"), connect.0, connect.1);
    check_token(name, p, f);
    if kind == PlatformKind::OpenCti && p.tenant_id.is_some() {
        f.warn(
            "opencti.tenant_id",
            None,
            "is used by OpenAEV only; ignored for OpenCTI",
        );
    }
    if p.daemon.selector == Selector::Portainer {
        check_portainer(name, p, f);
    }
    if let Some(k8s) = &p.daemon.kubernetes {
        let used = p.daemon.selector == Selector::Kubernetes;
        check_kubernetes(&format!("{name}.daemon.kubernetes"), k8s, used, f);
    }
    check_shared_sections(s, kind, f);
    if let Some(restart) = p
        .daemon
        .swarm
        .as_ref()
        .and_then(|s| s.restart_condition.as_ref())
    {
        let key = format!("{name}.daemon.swarm.restart_condition");
        f.one_of(&key, restart, &SWARM_RESTART);
    }
}

/// The registry and docker sections fall back to `opencti`'s (§5.6, §6.1):
/// check the section this platform will really use, under its owner's key.
fn check_shared_sections(s: &Settings, kind: PlatformKind, f: &mut Findings) {
    let p = s.platform(kind);
    let own = |section: &str, has_own: bool| {
        let owner = if has_own { kind.as_str() } else { "opencti" };
        format!("{owner}.daemon.{section}")
    };
    if let Some(registry) = s.registry(kind) {
        let set = |v: Option<&str>| v.is_some_and(|v| !v.is_empty());
        let user = set(registry.username.as_deref());
        let password = set(registry.password.as_ref().map(|p| p.expose()));
        let key = own("registry", p.daemon.registry.is_some());
        // Kubernetes names the pull secret after the server (§6.3).
        if user
            && password
            && !set(registry.server.as_deref())
            && p.daemon.selector == Selector::Kubernetes
        {
            f.error(
                &format!("{key}.server"),
                None,
                "is required with selector kubernetes when username and password are set: \
                 the image pull secret is made for this registry",
            );
        }
        if user != password {
            let missing = if user { "password" } else { "username" };
            f.warn(
                &format!("{key}.{missing}"),
                None,
                "is not set: registry credentials are sent only when username and password are both set",
            );
        }
    }
}

fn check_token(name: &str, p: &PlatformSettings, f: &mut Findings) {
    let key = format!("{name}.token");
    if p.token.is_empty() {
        f.error(
            &key,
            None,
            "must not be empty: set the platform token of the composer's user",
        );
    } else if p.token.expose() == PLACEHOLDER {
        f.warn(
            &key,
            None,
            &format!(
                "is still the placeholder {PLACEHOLDER}: set {}__TOKEN",
                name.to_uppercase()
            ),
        );
    }
    if !p.with_proxy && (p.http_proxy.is_some() || p.https_proxy.is_some()) {
        f.warn(
            &format!("{name}.with_proxy"),
            Some("false"),
            "but http_proxy/https_proxy are set: they are ignored until with_proxy is true",
        );
    }
}

fn check_portainer(name: &str, p: &PlatformSettings, f: &mut Findings) {
    let key = format!("{name}.daemon.portainer");
    let Some(portainer) = &p.daemon.portainer else {
        f.error(
            &format!("{key}.api"),
            None,
            "is required with selector portainer: set the Portainer URL (https://host:9443)",
        );
        return;
    };
    match &portainer.api {
        Some(api) => f.http_url(&format!("{key}.api"), api),
        None => f.error(
            &format!("{key}.api"),
            None,
            "is required with selector portainer",
        ),
    }
    if let Some(env_type) = &portainer.env_type
        && env_type != "docker"
    {
        f.error(
            &format!("{key}.env_type"),
            Some(env_type),
            "only docker environments are supported",
        );
    }
    if portainer
        .env_id
        .as_deref()
        .is_none_or(|id| id.trim().is_empty())
    {
        f.error(
            &format!("{key}.env_id"),
            None,
            "is required with selector portainer: the Portainer environment (endpoint) id",
        );
    }
    if portainer
        .api_key
        .as_ref()
        .is_none_or(|k| k.is_empty() || k.expose() == PLACEHOLDER)
    {
        f.warn(
            &format!("{key}.api_key"),
            None,
            "is not set (or still ChangeMe): Portainer will refuse the calls",
        );
    }
}

/// `used`: the platform runs on Kubernetes, so the base deployment matters.
fn check_kubernetes(key: &str, k8s: &KubernetesSettings, used: bool, f: &mut Findings) {
    if let Some(t) = k8s.request_timeout {
        f.seconds(&format!("{key}.request_timeout"), t, MAX_REQUEST_TIMEOUT);
    }
    if let Some(t) = k8s.connect_timeout {
        f.seconds(&format!("{key}.connect_timeout"), t, MAX_CONNECT_TIMEOUT);
    }
    let from_yaml = k8s.base_deployment.as_ref().is_some_and(|b| !b.is_null());
    if from_yaml && k8s.base_deployment_json.is_some() {
        f.warn(
            &format!("{key}.base_deployment_json"),
            None,
            "is ignored: base_deployment is set and wins",
        );
    }
    // The orchestrator's merge relies on this shape (CONTRACT §6.3 (c)).
    if let Some(base) = k8s.base().filter(|_| used)
        && let Err(problem) = manifest::check_base(base)
    {
        let which = if from_yaml {
            "base_deployment"
        } else {
            "base_deployment_json"
        };
        f.error(&format!("{key}.{which}"), None, &problem);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{PortainerSettings, Registry};
    use crate::secret::Secret;

    fn origins() -> BTreeMap<String, Origin> {
        BTreeMap::new()
    }

    fn keys_of(errors: &[ConfigError]) -> Vec<&str> {
        errors.iter().map(|e| e.key.as_str()).collect()
    }

    #[test]
    fn built_in_defaults_are_valid() {
        assert_eq!(Settings::default().validate(&origins()), vec![]);
    }

    #[test]
    fn ping_period_must_stay_under_the_five_minute_window() {
        let mut s = Settings::default();
        s.manager.ping_alive_schedule = 300;
        let errors = s.validate(&origins());
        assert_eq!(keys_of(&errors), ["manager.ping_alive_schedule"]);
        assert!(errors[0].to_string().contains("5 minutes"));
        s.manager.ping_alive_schedule = 299;
        assert_eq!(s.validate(&origins()), vec![]);
    }

    #[test]
    fn periods_timeouts_and_parallelism_have_upper_bounds() {
        let mut s = Settings::default();
        s.manager.execute_schedule = 86_401;
        s.manager.max_parallel = 65;
        s.opencti.logs_schedule = u64::MAX;
        s.opencti.request_timeout = 3_601;
        s.opencti.connect_timeout = 601;
        s.opencti.daemon.kubernetes = Some(KubernetesSettings {
            request_timeout: Some(0),
            connect_timeout: Some(10_000),
            ..KubernetesSettings::default()
        });
        assert_eq!(
            keys_of(&s.validate(&origins())),
            [
                "manager.execute_schedule",
                "manager.max_parallel",
                "opencti.logs_schedule",
                "opencti.request_timeout",
                "opencti.connect_timeout",
                "opencti.daemon.kubernetes.request_timeout",
                "opencti.daemon.kubernetes.connect_timeout",
            ]
        );
        let mut s = Settings::default();
        s.manager.execute_schedule = 86_400;
        s.manager.max_parallel = 64;
        s.opencti.request_timeout = 3_600;
        assert_eq!(s.validate(&origins()), vec![]);
    }

    #[test]
    fn a_log_setting_that_writes_nothing_is_warned_about() {
        let warned = |s: &Settings| -> Vec<String> {
            s.warnings(&origins())
                .iter()
                .filter(|w| w.key.starts_with("manager.logger"))
                .map(|w| w.key.clone())
                .collect()
        };
        let mut s = Settings::default();
        assert!(warned(&s).is_empty());
        s.manager.logger.file = Some("/var/log/xtm-composer/composer.log".into());
        s.manager.logger.directory = false;
        assert_eq!(warned(&s), ["manager.logger.directory"]);
        s.manager.logger.console = false;
        assert_eq!(
            warned(&s),
            ["manager.logger.directory", "manager.logger.console"]
        );
        s.manager.logger.directory = true;
        assert!(warned(&s).is_empty());
        s.manager.logger.file = None;
        assert_eq!(warned(&s), ["manager.logger.console"]);
    }

    #[test]
    fn urls_are_checked_by_the_clients_own_parser() {
        let mut s = Settings::default();
        s.opencti.url = "https://".into();
        s.opencti.daemon.selector = Selector::Portainer;
        s.opencti.daemon.portainer = Some(PortainerSettings {
            api: Some("https://user:pw@ bad:9443".into()),
            env_id: Some("3".into()),
            ..PortainerSettings::default()
        });
        let errors = s.validate(&origins());
        assert_eq!(
            keys_of(&errors),
            ["opencti.url", "opencti.daemon.portainer.api"]
        );
        assert!(
            errors
                .iter()
                .all(|e| e.problem.starts_with("is not a usable URL"))
        );
        assert!(!errors[1].to_string().contains("pw"), "{}", errors[1]);
    }

    #[test]
    fn nothing_enabled_is_an_error() {
        let mut s = Settings::default();
        s.opencti.enable = false;
        assert_eq!(keys_of(&s.validate(&origins())), ["opencti.enable"]);
    }

    #[test]
    fn disabled_platforms_are_not_checked() {
        let mut s = Settings::default();
        s.openaev.url = "nope".into();
        s.openaev.logs_schedule = 0;
        assert_eq!(s.validate(&origins()), vec![]);
        s.openaev.enable = true;
        assert_eq!(
            keys_of(&s.validate(&origins())),
            ["openaev.url", "openaev.logs_schedule"]
        );
    }

    #[test]
    fn portainer_needs_a_docker_environment_and_an_api_url() {
        let mut s = Settings::default();
        s.opencti.daemon.selector = Selector::Portainer;
        assert_eq!(
            keys_of(&s.validate(&origins())),
            ["opencti.daemon.portainer.api"]
        );
        s.opencti.daemon.portainer = Some(PortainerSettings {
            api: Some("https://p:9443".into()),
            env_id: Some("3".into()),
            env_type: Some("kubernetes".into()),
            ..PortainerSettings::default()
        });
        let errors = s.validate(&origins());
        assert_eq!(keys_of(&errors), ["opencti.daemon.portainer.env_type"]);
        let warnings = s.warnings(&origins());
        assert!(keys_of(&warnings).contains(&"opencti.daemon.portainer.api_key"));
    }

    #[test]
    fn a_base_deployment_the_merge_cannot_use_is_an_error_under_kubernetes() {
        let mut s = Settings::default();
        let k8s = |base: serde_json::Value| KubernetesSettings {
            base_deployment: Some(base),
            ..KubernetesSettings::default()
        };
        s.opencti.daemon.kubernetes = Some(k8s(serde_json::json!({"spec": {}})));
        assert_eq!(s.validate(&origins()), vec![]);
        let bad = serde_json::json!({"spec": {"template": {"spec": {"containers": "x"}}}});
        s.opencti.daemon.kubernetes = Some(k8s(bad));
        let errors = s.validate(&origins());
        assert_eq!(
            keys_of(&errors),
            ["opencti.daemon.kubernetes.base_deployment"]
        );
        assert!(errors[0].problem.contains("containers"), "{errors:?}");
        // Under another selector the section is not used.
        s.opencti.daemon.selector = Selector::Docker;
        assert_eq!(s.validate(&origins()), vec![]);
    }

    #[test]
    fn kubernetes_registry_credentials_need_a_server() {
        let mut s = Settings::default();
        s.opencti.daemon.registry = Some(Registry {
            username: Some("bob".into()),
            password: Some(Secret::new("pw")),
            ..Registry::default()
        });
        assert_eq!(
            keys_of(&s.validate(&origins())),
            ["opencti.daemon.registry.server"]
        );
        // The Docker family pulls from Docker Hub without one.
        s.opencti.daemon.selector = Selector::Docker;
        assert_eq!(s.validate(&origins()), vec![]);
    }

    #[test]
    fn half_set_registry_credentials_are_a_warning() {
        let mut s = Settings::default();
        s.opencti.daemon.registry = Some(Registry {
            username: Some("bob".into()),
            ..Registry::default()
        });
        assert_eq!(s.validate(&origins()), vec![]);
        let warnings = s.warnings(&origins());
        assert!(keys_of(&warnings).contains(&"opencti.daemon.registry.password"));
        s.opencti.daemon.registry = Some(Registry {
            username: Some("bob".into()),
            password: Some(Secret::new("pw")),
            ..Registry::default()
        });
        let warnings = s.warnings(&origins());
        assert!(!keys_of(&warnings).contains(&"opencti.daemon.registry.password"));
    }

    #[test]
    fn placeholder_token_is_a_warning_that_names_the_env_var() {
        let warnings = Settings::default().warnings(&origins());
        let token = warnings.iter().find(|w| w.key == "opencti.token");
        assert!(token.is_some_and(|w| w.to_string().contains("OPENCTI__TOKEN")));
    }

    #[test]
    fn errors_name_the_origin_of_the_value() {
        let mut s = Settings::default();
        s.manager.logger.level = "verbose".into();
        let mut origins = origins();
        origins.insert(
            "manager.logger.level".into(),
            Origin::Env("MANAGER__LOGGER__LEVEL".into()),
        );
        let errors = s.validate(&origins);
        assert_eq!(
            errors[0].to_string(),
            "manager.logger.level = \"verbose\" (from env MANAGER__LOGGER__LEVEL): \
             expected one of trace, debug, info, warn, error"
        );
    }
}
