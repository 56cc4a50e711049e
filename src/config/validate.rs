//! Rules on configuration values once typed: allowed words, positive periods,
//! URL schemes, what each selector needs (CONTRACT §1, §6, §7.2). Each problem
//! names its key, value, origin and fix; errors stop startup, warnings do not.
//! Typing and layering are `load`'s job; this file reads only `Settings`.

use std::collections::BTreeMap;

use super::error::{ConfigError, Origin};
use super::load::origin_at;
use super::{DockerOptions, KubernetesSettings, Manager, PlatformSettings, Selector, Settings};
use crate::orchestrator::docker::{ApiVersion, PullPolicy, parse_restart_policy};
use crate::platform::PlatformKind;

const LEVELS: [&str; 5] = ["trace", "debug", "info", "warn", "error"];
const FORMATS: [&str; 2] = ["json", "pretty"];
const K8S_PULL: [&str; 3] = ["Always", "IfNotPresent", "Never"];
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

    fn http_url(&mut self, key: &str, value: &str) {
        if !(value.starts_with("http://") || value.starts_with("https://")) {
            self.error(key, Some(value), "must start with http:// or https://");
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
        check_kubernetes(&format!("{name}.daemon.kubernetes"), k8s, f);
    }
    check_shared_sections(s, kind, f);
    if let Some(swarm) = &p.daemon.swarm {
        let key = format!("{name}.daemon.swarm");
        check_pull_policy(
            &format!("{key}.pull_policy"),
            swarm.pull_policy.as_deref(),
            f,
        );
        if let Some(restart) = &swarm.restart_condition {
            f.one_of(&format!("{key}.restart_condition"), restart, &SWARM_RESTART);
        }
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
    if let Some(docker) = s.docker_options(kind) {
        check_docker(&own("docker", p.daemon.docker.is_some()), docker, f);
    }
    if let Some(registry) = s.registry(kind) {
        let set = |v: Option<&str>| v.is_some_and(|v| !v.is_empty());
        let user = set(registry.username.as_deref());
        let password = set(registry.password.as_ref().map(|p| p.expose()));
        if user != password {
            let key = own("registry", p.daemon.registry.is_some());
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
    if let Some(version) = portainer
        .api_version
        .as_deref()
        .filter(|v| !v.trim().is_empty())
        && ApiVersion::parse(version).is_none()
    {
        f.error(
            &format!("{key}.api_version"),
            Some(version),
            "expected an Engine API version such as v1.44",
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

fn check_kubernetes(key: &str, k8s: &KubernetesSettings, f: &mut Findings) {
    if let Some(t) = k8s.request_timeout {
        f.seconds(&format!("{key}.request_timeout"), t, MAX_REQUEST_TIMEOUT);
    }
    if let Some(t) = k8s.connect_timeout {
        f.seconds(&format!("{key}.connect_timeout"), t, MAX_CONNECT_TIMEOUT);
    }
    if let Some(policy) = &k8s.image_pull_policy
        && !K8S_PULL.contains(&policy.as_str())
    {
        f.warn(
            &format!("{key}.image_pull_policy"),
            Some(policy),
            "expected one of Always, IfNotPresent, Never; IfNotPresent is used",
        );
    }
    let Some(json) = &k8s.base_deployment_json else {
        return;
    };
    let json_key = format!("{key}.base_deployment_json");
    if k8s.base_deployment.is_some() {
        f.warn(
            &json_key,
            None,
            "is ignored: base_deployment is set and wins",
        );
        return;
    }
    // The JSON text may carry env values: the problem names the position only.
    match serde_json::from_str::<serde_json::Value>(json) {
        Ok(v) if v.is_object() => {}
        Ok(_) => f.error(&json_key, None, "must be a JSON object (a Deployment)"),
        Err(e) => f.error(&json_key, None, &format!("is not valid JSON: {e}")),
    }
}

/// A pull policy as the orchestrators read it (one parser: `PullPolicy::parse`,
/// which also takes the Kubernetes spellings such as `IfNotPresent`).
fn check_pull_policy(key: &str, policy: Option<&str>, f: &mut Findings) {
    if let Err(value) = PullPolicy::parse(policy) {
        f.error(
            key,
            Some(&value),
            "expected one of always, if-not-present, never",
        );
    }
}

fn check_docker(key: &str, docker: &DockerOptions, f: &mut Findings) {
    check_pull_policy(
        &format!("{key}.pull_policy"),
        docker.pull_policy.as_deref(),
        f,
    );
    // The orchestrator's own parser: what it takes is what passes here.
    if let Some(policy) = &docker.restart_policy
        && parse_restart_policy(Some(policy)).is_none()
    {
        f.error(
            &format!("{key}.restart_policy"),
            Some(policy),
            "expected one of no, on-failure, on-failure:N, unless-stopped, always",
        );
    }
    // The schemes the Docker client takes (`Client::from_host`).
    if let Some(host) = &docker.host
        && !["unix://", "tcp://", "http://"]
            .iter()
            .any(|scheme| host.starts_with(scheme))
    {
        f.error(
            &format!("{key}.host"),
            Some(host),
            "expected unix:///path/to/docker.sock, tcp://host:port or http://host:port",
        );
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
    fn invalid_kubernetes_pull_policy_is_only_a_warning() {
        let mut s = Settings::default();
        s.opencti.daemon.kubernetes = Some(KubernetesSettings {
            image_pull_policy: Some("always".into()),
            ..KubernetesSettings::default()
        });
        assert_eq!(s.validate(&origins()), vec![]);
        let warnings = s.warnings(&origins());
        assert!(keys_of(&warnings).contains(&"opencti.daemon.kubernetes.image_pull_policy"));
    }

    #[test]
    fn base_deployment_json_must_be_a_json_object() {
        let mut s = Settings::default();
        let k8s = |json: &str| KubernetesSettings {
            base_deployment_json: Some(json.into()),
            ..KubernetesSettings::default()
        };
        s.opencti.daemon.kubernetes = Some(k8s("{\"spec\": {}}"));
        assert_eq!(s.validate(&origins()), vec![]);
        s.opencti.daemon.kubernetes = Some(k8s("[1]"));
        assert_eq!(s.validate(&origins()).len(), 1);
        s.opencti.daemon.kubernetes = Some(k8s("{\"env\": \"s3cret\""));
        let errors = s.validate(&origins());
        assert_eq!(errors.len(), 1);
        assert!(!errors[0].to_string().contains("s3cret"));
    }

    #[test]
    fn docker_policies_are_checked() {
        for (pull, restart, bad) in [
            ("always", "on-failure:5", 0),
            ("never", "unless-stopped", 0),
            // The orchestrator's own parser takes the Kubernetes spelling too.
            ("IfNotPresent", "on-failure:", 1),
            ("sometimes", "always", 1),
            ("if-not-present", "sometimes", 1),
        ] {
            let mut s = Settings::default();
            s.opencti.daemon.docker = Some(DockerOptions {
                pull_policy: Some(pull.into()),
                restart_policy: Some(restart.into()),
                ..DockerOptions::default()
            });
            assert_eq!(s.validate(&origins()).len(), bad, "{pull} {restart}");
        }
    }

    #[test]
    fn validation_takes_what_the_orchestrators_take() {
        // The Docker client accepts http:// engine addresses; the swarm pull policy is
        // read by the same parser as docker's, so both are checked here, not at construction.
        let mut s = Settings::default();
        s.opencti.daemon.docker = Some(DockerOptions {
            host: Some("http://127.0.0.1:2375".into()),
            pull_policy: Some("Never".into()),
            ..DockerOptions::default()
        });
        let swarm = |policy: &str| crate::config::SwarmOptions {
            pull_policy: Some(policy.into()),
            ..crate::config::SwarmOptions::default()
        };
        s.opencti.daemon.swarm = Some(swarm("IfNotPresent"));
        assert_eq!(s.validate(&origins()), vec![]);
        s.opencti.daemon.swarm = Some(swarm("sometimes"));
        assert_eq!(
            keys_of(&s.validate(&origins())),
            ["opencti.daemon.swarm.pull_policy"]
        );
    }

    #[test]
    fn a_portainer_api_version_is_checked_with_the_other_values() {
        let mut s = Settings::default();
        s.opencti.daemon.selector = Selector::Portainer;
        s.opencti.daemon.portainer = Some(PortainerSettings {
            api: Some("https://p:9443".into()),
            env_id: Some("3".into()),
            api_version: Some("latest".into()),
            ..PortainerSettings::default()
        });
        s.manager.execute_schedule = 0;
        assert_eq!(
            keys_of(&s.validate(&origins())),
            [
                "manager.execute_schedule",
                "opencti.daemon.portainer.api_version"
            ]
        );
    }

    #[test]
    fn openaev_falls_back_to_the_opencti_docker_section_and_reports_it_once() {
        let mut s = Settings::default();
        s.openaev.enable = true;
        s.opencti.daemon.docker = Some(DockerOptions {
            pull_policy: Some("sometimes".into()),
            ..DockerOptions::default()
        });
        assert_eq!(
            keys_of(&s.validate(&origins())),
            ["opencti.daemon.docker.pull_policy"]
        );
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
