//! Rules on configuration values once typed: allowed words, positive periods,
//! URL schemes, what each selector needs (CONTRACT §1, §6, §7.2). Each problem
//! names its key, value, origin and fix; errors stop startup, warnings do not.
//! Typing and layering are `load`'s job; this file reads only `Settings`.

use std::collections::BTreeMap;

use super::error::{ConfigError, Origin};
use super::load::origin_at;
use super::{DockerOptions, KubernetesSettings, Manager, PlatformSettings, Selector, Settings};
use crate::platform::PlatformKind;

const LEVELS: [&str; 5] = ["trace", "debug", "info", "warn", "error"];
const FORMATS: [&str; 2] = ["json", "pretty"];
const K8S_PULL: [&str; 3] = ["Always", "IfNotPresent", "Never"];
const DOCKER_PULL: [&str; 3] = ["always", "if-not-present", "never"];
const SWARM_RESTART: [&str; 3] = ["none", "on-failure", "any"];
/// OpenCTI marks a manager inactive after 5 minutes without a ping (§8.2).
const PING_LIMIT: u64 = 300;
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
    f.positive("manager.execute_schedule", m.execute_schedule);
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
    if m.max_parallel == 0 {
        f.error("manager.max_parallel", Some("0"), "must be at least 1");
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
    if !m.logger.directory && !m.logger.console {
        f.warn(
            "manager.logger.console",
            Some("false"),
            "and manager.logger.directory is false too: the composer logs nothing",
        );
    }
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

fn check_platform(s: &Settings, kind: PlatformKind, f: &mut Findings) {
    let name = kind.as_str();
    let p = s.platform(kind);
    f.http_url(&format!("{name}.url"), &p.url);
    if let Some(url) = &p.connector_url {
        f.http_url(&format!("{name}.connector_url"), url);
    }
    f.positive(&format!("{name}.logs_schedule"), p.logs_schedule);
    f.positive(&format!("{name}.request_timeout"), p.request_timeout);
    f.positive(&format!("{name}.connect_timeout"), p.connect_timeout);
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
    if let Some(restart) = p
        .daemon
        .swarm
        .as_ref()
        .and_then(|s| s.get("restart_condition"))
    {
        let text = restart.as_str().unwrap_or_default();
        f.one_of(
            &format!("{name}.daemon.swarm.restart_condition"),
            text,
            &SWARM_RESTART,
        );
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

fn check_docker(key: &str, docker: &DockerOptions, f: &mut Findings) {
    if let Some(policy) = &docker.pull_policy {
        f.one_of(&format!("{key}.pull_policy"), policy, &DOCKER_PULL);
    }
    if let Some(policy) = &docker.restart_policy
        && !is_restart_policy(policy)
    {
        f.error(
            &format!("{key}.restart_policy"),
            Some(policy),
            "expected one of no, on-failure, on-failure:N, unless-stopped, always",
        );
    }
    if let Some(host) = &docker.host
        && !(host.starts_with("unix://") || host.starts_with("tcp://"))
    {
        f.error(
            &format!("{key}.host"),
            Some(host),
            "expected unix:///path/to/docker.sock or tcp://host:port",
        );
    }
}

fn is_restart_policy(policy: &str) -> bool {
    match policy.strip_prefix("on-failure:") {
        Some(n) => !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()),
        None => matches!(policy, "no" | "on-failure" | "unless-stopped" | "always"),
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
            ("IfNotPresent", "on-failure:", 2),
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
