//! Configuration values with a grammar of their own — engine address, restart
//! and pull policies, API version, base deployment JSON — parsed once, at load,
//! by the parser of their type: a refused value is a problem of its key in the
//! one list (CONTRACT §6, §7.2), and an orchestrator gets the parsed value.
//! Where a key applies (selector, enabled platform) is `load`'s business.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer};
use serde_json::Value;

use crate::orchestrator::docker::{ApiVersion, PullPolicy};

/// `DOCKER_HOST`'s default.
pub const DEFAULT_ENGINE: &str = "unix:///var/run/docker.sock";

/// A Docker Engine address (`{p}.daemon.docker.host`, `DOCKER_HOST`): a unix
/// socket, or plain HTTP to `host:port` (TLS engine endpoints are not supported).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineAddress {
    /// As written, to name the engine in messages.
    text: String,
    endpoint: Endpoint,
}

/// Where an `EngineAddress` leads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// A unix socket path.
    Unix(String),
    /// `host:port` reached over plain HTTP (`tcp://` or `http://`).
    Tcp(String),
}

impl EngineAddress {
    /// Where the address leads.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// The address as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl Default for EngineAddress {
    fn default() -> Self {
        EngineAddress {
            text: DEFAULT_ENGINE.into(),
            endpoint: Endpoint::Unix("/var/run/docker.sock".into()),
        }
    }
}

impl FromStr for EngineAddress {
    type Err = String;

    /// `unix:///path`, `tcp://host:port` or `http://host:port` (a trailing `/` is fine).
    fn from_str(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let endpoint = if let Some(path) = text.strip_prefix("unix://") {
            Some(Endpoint::Unix(path.to_string()))
        } else {
            text.strip_prefix("tcp://")
                .or_else(|| text.strip_prefix("http://"))
                .map(|rest| rest.trim_end_matches('/'))
                .filter(|rest| !rest.is_empty() && !rest.contains('/'))
                .map(|authority| Endpoint::Tcp(authority.to_string()))
        };
        match endpoint {
            Some(endpoint) => Ok(EngineAddress {
                text: text.to_string(),
                endpoint,
            }),
            None => Err(
                "expected unix:///path/to/docker.sock, tcp://host:port or http://host:port".into(),
            ),
        }
    }
}

impl fmt::Display for EngineAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// `{p}.daemon.docker.restart_policy`: what the engine does when a container exits.
///
/// Why a restart policy at all (D5): the existing composer sets none and
/// restarts exited containers itself, so `RestartCount` stays 0 and reboot
/// loops are invisible. With the engine restarting, `RestartCount` is the real
/// figure and the composer never restarts a crashing container; `unless-stopped`
/// (not `always`) keeps a container stopped by the composer stopped when the
/// daemon restarts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RestartPolicy {
    No,
    Always,
    #[default]
    UnlessStopped,
    /// Restart after a non-zero exit, at most this many times (0: no limit).
    OnFailure(i64),
}

impl FromStr for RestartPolicy {
    type Err = String;

    /// `no` | `on-failure[:N]` | `unless-stopped` | `always`; empty is the default.
    fn from_str(text: &str) -> Result<Self, String> {
        let refused = || "expected one of no, on-failure, on-failure:N, unless-stopped, always";
        match text.trim() {
            "" | "unless-stopped" => Ok(RestartPolicy::UnlessStopped),
            "no" => Ok(RestartPolicy::No),
            "always" => Ok(RestartPolicy::Always),
            "on-failure" => Ok(RestartPolicy::OnFailure(0)),
            other => other
                .strip_prefix("on-failure:")
                .and_then(|n| n.parse::<i64>().ok())
                .filter(|n| *n >= 0)
                .map(RestartPolicy::OnFailure)
                .ok_or_else(|| refused().to_string()),
        }
    }
}

impl fmt::Display for RestartPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RestartPolicy::No => f.write_str("no"),
            RestartPolicy::Always => f.write_str("always"),
            RestartPolicy::UnlessStopped => f.write_str("unless-stopped"),
            RestartPolicy::OnFailure(n) => write!(f, "on-failure:{n}"),
        }
    }
}

/// The parser a key's text goes through at load (`keys::Kind::Parsed`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Parser {
    /// `EngineAddress`; blank is unset.
    Engine,
    /// `RestartPolicy`.
    Restart,
    /// `PullPolicy` in the Docker spellings (and the Kubernetes ones).
    Pull,
    /// `PullPolicy` as Kubernetes spells it; anything else is only a warning
    /// and `IfNotPresent` is used (§6.3).
    KubernetesPull,
    /// `ApiVersion` (`v1.44`); blank is unset.
    ApiVersion,
    /// A JSON object in a string (`base_deployment_json`). Its text may carry
    /// env values, so a problem names the position only.
    JsonObject,
}

/// Why a parser refused a value.
pub(crate) struct Refusal {
    pub problem: String,
    /// The value may be shown in the message.
    pub shown: bool,
    /// A warning only: the default stands in.
    pub warning: bool,
}

impl Refusal {
    fn error(problem: impl Into<String>) -> Self {
        Refusal {
            problem: problem.into(),
            shown: true,
            warning: false,
        }
    }
}

impl Parser {
    /// `text` checked by the parser of its type, as the value the settings
    /// deserialize (`Value::Null`: unset, the default stands in).
    pub(crate) fn read(self, text: &str) -> Result<Value, Refusal> {
        let blank = text.trim().is_empty();
        let shown = |v: &dyn fmt::Display| Value::String(v.to_string());
        match self {
            Parser::Engine if blank => Ok(Value::Null),
            Parser::Engine => text
                .parse::<EngineAddress>()
                .map(|_| Value::String(text.trim().to_string()))
                .map_err(Refusal::error),
            Parser::Restart => text
                .parse::<RestartPolicy>()
                .map(|p| shown(&p))
                .map_err(Refusal::error),
            Parser::Pull => text
                .parse::<PullPolicy>()
                .map(|p| shown(&p))
                .map_err(Refusal::error),
            Parser::KubernetesPull => {
                PullPolicy::from_kubernetes(text)
                    .map(|p| shown(&p))
                    .ok_or(Refusal {
                        problem:
                            "expected one of Always, IfNotPresent, Never; IfNotPresent is used"
                                .into(),
                        shown: true,
                        warning: true,
                    })
            }
            Parser::ApiVersion if blank => Ok(Value::Null),
            Parser::ApiVersion => ApiVersion::parse(text)
                .map(|v| shown(&v))
                .ok_or_else(|| Refusal::error("expected an Engine API version such as v1.44")),
            Parser::JsonObject => {
                let hidden = |problem: String| Refusal {
                    problem,
                    shown: false,
                    warning: false,
                };
                match serde_json::from_str::<Value>(text) {
                    Ok(v) if v.is_object() => Ok(v),
                    Ok(_) => Err(hidden("must be a JSON object (a Deployment)".into())),
                    Err(e) => Err(hidden(format!("is not valid JSON: {e}"))),
                }
            }
        }
    }
}

/// Deserializes a key held as the text its parser accepted (see `Parser::read`).
pub(crate) fn parsed<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: FromStr,
    T::Err: fmt::Display,
{
    let text = String::deserialize(d)?;
    text.parse().map_err(serde::de::Error::custom)
}

/// As [`parsed`], for an optional key.
pub(crate) fn parsed_opt<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: FromStr,
    T::Err: fmt::Display,
{
    match Option::<String>::deserialize(d)? {
        Some(text) => text.parse().map(Some).map_err(serde::de::Error::custom),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_addresses_are_unix_sockets_or_plain_tcp() {
        let at = |s: &str| s.parse::<EngineAddress>().map(|a| a.endpoint().clone());
        assert_eq!(
            at("unix:///var/run/docker.sock"),
            Ok(Endpoint::Unix("/var/run/docker.sock".into()))
        );
        assert_eq!(
            at("tcp://127.0.0.1:2375"),
            Ok(Endpoint::Tcp("127.0.0.1:2375".into()))
        );
        assert_eq!(
            at("http://127.0.0.1:2375/"),
            Ok(Endpoint::Tcp("127.0.0.1:2375".into()))
        );
        for bad in [
            "https://h:2376",
            "ssh://me@h",
            "tcp://",
            "tcp://h:1/x",
            "/var/run/docker.sock",
        ] {
            assert!(at(bad).is_err(), "{bad}");
        }
        assert_eq!(
            EngineAddress::default(),
            DEFAULT_ENGINE.parse::<EngineAddress>().unwrap()
        );
    }

    #[test]
    fn restart_policies_parse_with_unless_stopped_by_default() {
        let p = |s: &str| s.parse::<RestartPolicy>();
        assert_eq!(p(""), Ok(RestartPolicy::UnlessStopped));
        assert_eq!(p("no"), Ok(RestartPolicy::No));
        assert_eq!(p("always"), Ok(RestartPolicy::Always));
        assert_eq!(p("on-failure"), Ok(RestartPolicy::OnFailure(0)));
        assert_eq!(p(" on-failure:5 "), Ok(RestartPolicy::OnFailure(5)));
        for bad in [
            "on-failure:-1",
            "on-failure:x",
            "on-failure:",
            "sometimes",
            "unless-stopped:3",
        ] {
            assert!(p(bad).is_err(), "{bad}");
        }
        // What the loader keeps reads back the same.
        for s in [
            "no",
            "always",
            "unless-stopped",
            "on-failure:0",
            "on-failure:7",
        ] {
            assert_eq!(p(s).unwrap().to_string(), s);
        }
    }

    #[test]
    fn the_loader_keeps_what_deserializes_back() {
        for (parser, text) in [
            (Parser::Pull, "IfNotPresent"),
            (Parser::KubernetesPull, "Never"),
            (Parser::Restart, "on-failure:3"),
            (Parser::ApiVersion, "v1.44"),
            (Parser::Engine, " tcp://127.0.0.1:2375 "),
        ] {
            let Ok(Value::String(kept)) = parser.read(text) else {
                panic!("{parser:?} refused {text:?}");
            };
            let ok = match parser {
                Parser::Pull | Parser::KubernetesPull => kept.parse::<PullPolicy>().is_ok(),
                Parser::Restart => kept.parse::<RestartPolicy>().is_ok(),
                Parser::ApiVersion => kept.parse::<ApiVersion>().is_ok(),
                Parser::Engine => kept.parse::<EngineAddress>().is_ok(),
                Parser::JsonObject => false,
            };
            assert!(ok, "{parser:?}: {kept:?}");
        }
        assert_eq!(Parser::Engine.read(" ").ok(), Some(Value::Null));
        assert_eq!(Parser::ApiVersion.read("").ok(), Some(Value::Null));
    }

    #[test]
    fn a_kubernetes_pull_policy_in_another_spelling_is_only_a_warning() {
        assert!(Parser::KubernetesPull.read("Always").is_ok());
        let refused = Parser::KubernetesPull.read("always").err().unwrap();
        assert!(refused.warning && refused.problem.ends_with("IfNotPresent is used"));
        assert!(!Parser::Pull.read("sometimes").err().unwrap().warning);
    }

    #[test]
    fn a_refused_json_text_is_never_shown() {
        for text in ["{\"env\": \"s3cret\"", "[\"s3cret\"]"] {
            let refused = Parser::JsonObject.read(text).err().unwrap();
            assert!(!refused.shown && !refused.problem.contains("s3cret"));
        }
    }

    /// Through the loader: where each parsed key lands, in the one list.
    mod at_load {
        use crate::config::files::test_support::{fixture, load_err, load_ok};
        use crate::config::{EngineAddress, RestartPolicy};
        use crate::orchestrator::docker::{ApiVersion, PullPolicy};

        #[test]
        fn every_refused_value_is_in_the_one_list_with_its_origin() {
            let mut got = load_err(
                &fixture("minimal"),
                &[
                    ("OPENCTI__DAEMON__SELECTOR", "portainer"),
                    ("OPENCTI__DAEMON__PORTAINER__API", "https://p:9443"),
                    ("OPENCTI__DAEMON__PORTAINER__ENV_ID", "3"),
                    ("OPENCTI__DAEMON__PORTAINER__API_VERSION", "latest"),
                    ("OPENCTI__DAEMON__DOCKER__PULL_POLICY", "sometimes"),
                    ("OPENCTI__DAEMON__DOCKER__RESTART_POLICY", "on-failure:"),
                    ("OPENCTI__DAEMON__DOCKER__HOST", "tcp://"),
                    ("OPENCTI__DAEMON__SWARM__PULL_POLICY", "later"),
                    ("MANAGER__EXECUTE_SCHEDULE", "0"),
                ],
            );
            got.sort();
            let env = |k: &str| format!("(from env {k})");
            assert_eq!(
                got,
                [
                    format!(
                        "manager.execute_schedule = \"0\" {}: must be at least 1 (seconds)",
                        env("MANAGER__EXECUTE_SCHEDULE")
                    ),
                    format!(
                        "opencti.daemon.docker.host = \"tcp://\" {}: expected unix:///path/to/docker.sock, tcp://host:port or http://host:port",
                        env("OPENCTI__DAEMON__DOCKER__HOST")
                    ),
                    format!(
                        "opencti.daemon.docker.pull_policy = \"sometimes\" {}: expected one of always, if-not-present, never",
                        env("OPENCTI__DAEMON__DOCKER__PULL_POLICY")
                    ),
                    format!(
                        "opencti.daemon.docker.restart_policy = \"on-failure:\" {}: expected one of no, on-failure, on-failure:N, unless-stopped, always",
                        env("OPENCTI__DAEMON__DOCKER__RESTART_POLICY")
                    ),
                    format!(
                        "opencti.daemon.portainer.api_version = \"latest\" {}: expected an Engine API version such as v1.44",
                        env("OPENCTI__DAEMON__PORTAINER__API_VERSION")
                    ),
                    format!(
                        "opencti.daemon.swarm.pull_policy = \"later\" {}: expected one of always, if-not-present, never",
                        env("OPENCTI__DAEMON__SWARM__PULL_POLICY")
                    ),
                ]
            );
        }

        #[test]
        fn accepted_values_arrive_parsed() {
            let s = load_ok(
                &fixture("minimal"),
                &[
                    ("OPENCTI__DAEMON__DOCKER__PULL_POLICY", "IfNotPresent"),
                    ("OPENCTI__DAEMON__DOCKER__RESTART_POLICY", "on-failure:5"),
                    ("OPENCTI__DAEMON__DOCKER__HOST", "http://127.0.0.1:2375"),
                    ("OPENCTI__DAEMON__SWARM__PULL_POLICY", "Never"),
                    ("OPENCTI__DAEMON__PORTAINER__API_VERSION", "v1.41"),
                    ("OPENCTI__DAEMON__KUBERNETES__IMAGE_PULL_POLICY", "Always"),
                    (
                        "OPENCTI__DAEMON__KUBERNETES__BASE_DEPLOYMENT_JSON",
                        "{\"spec\": {}}",
                    ),
                ],
            )
            .settings;
            let d = s.opencti.daemon.docker.as_ref().unwrap();
            assert_eq!(d.pull_policy, PullPolicy::IfNotPresent);
            assert_eq!(d.restart_policy, RestartPolicy::OnFailure(5));
            assert_eq!(
                d.host,
                Some("http://127.0.0.1:2375".parse::<EngineAddress>().unwrap())
            );
            let swarm = s.opencti.daemon.swarm.as_ref().unwrap();
            assert_eq!(swarm.pull_policy, PullPolicy::Never);
            let portainer = s.opencti.daemon.portainer.as_ref().unwrap();
            assert_eq!(portainer.api_version, ApiVersion::parse("1.41"));
            let k8s = s.opencti.daemon.kubernetes.as_ref().unwrap();
            assert_eq!(k8s.image_pull_policy, PullPolicy::Always);
            assert_eq!(k8s.base(), Some(&serde_json::json!({"spec": {}})));
            // Blank engine address and API version are unset.
            let s = load_ok(
                &fixture("minimal"),
                &[
                    ("OPENCTI__DAEMON__DOCKER__HOST", " "),
                    ("OPENCTI__DAEMON__PORTAINER__API_VERSION", ""),
                ],
            )
            .settings;
            assert_eq!(s.opencti.daemon.docker.unwrap().host, None);
            assert_eq!(s.opencti.daemon.portainer.unwrap().api_version, None);
        }

        #[test]
        fn a_value_nothing_uses_is_only_a_warning() {
            let loaded = load_ok(
                &fixture("minimal"),
                &[
                    // The selector is kubernetes: the Portainer section is not read.
                    ("OPENCTI__DAEMON__PORTAINER__API_VERSION", "latest"),
                    // OpenAEV is disabled.
                    ("OPENAEV__DAEMON__DOCKER__PULL_POLICY", "sometimes"),
                    // Not a Kubernetes spelling: IfNotPresent is used, as §6.3 says.
                    ("OPENCTI__DAEMON__KUBERNETES__IMAGE_PULL_POLICY", "always"),
                ],
            );
            let warned = |start: &str| loaded.warnings.iter().find(|w| w.starts_with(start));
            let portainer = warned("opencti.daemon.portainer.api_version = \"latest\"");
            assert!(
                portainer.is_some_and(|w| w.ends_with("(the selector is not portainer, ignored)")),
                "{:?}",
                loaded.warnings
            );
            let aev = warned("openaev.daemon.docker.pull_policy = \"sometimes\"");
            assert!(aev.is_some_and(|w| w.ends_with("(platform disabled, ignored)")));
            let k8s = warned("opencti.daemon.kubernetes.image_pull_policy = \"always\"");
            assert!(k8s.is_some_and(|w| w.ends_with("IfNotPresent is used")));
            let k8s = loaded.settings.opencti.daemon.kubernetes.as_ref().unwrap();
            assert_eq!(k8s.image_pull_policy, PullPolicy::IfNotPresent);
        }

        #[test]
        fn the_opencti_docker_section_is_checked_for_an_openaev_that_uses_it() {
            let vars = [
                ("OPENCTI__ENABLE", "false"),
                ("OPENAEV__ENABLE", "true"),
                ("OPENCTI__DAEMON__DOCKER__PULL_POLICY", "sometimes"),
            ];
            let got = load_err(&fixture("minimal"), &vars);
            assert_eq!(got.len(), 1, "{got:?}");
            assert!(got[0].starts_with("opencti.daemon.docker.pull_policy = \"sometimes\""));
            // With a docker section of its own, OpenAEV does not use opencti's.
            let own = [&vars[..], &[("OPENAEV__DAEMON__DOCKER__DNS", "[]")]].concat();
            assert!(load_ok(&fixture("minimal"), &own).warnings.iter().any(|w| {
                w.starts_with("opencti.daemon.docker.pull_policy")
                    && w.contains("platform disabled")
            }));
        }

        #[test]
        fn a_base_deployment_json_is_parsed_at_load_and_never_echoed() {
            let key = "OPENCTI__DAEMON__KUBERNETES__BASE_DEPLOYMENT_JSON";
            for bad in ["[1]", "{\"env\": \"s3cret\""] {
                let got = load_err(&fixture("minimal"), &[(key, bad)]);
                assert_eq!(got.len(), 1, "{got:?}");
                assert!(
                    got[0].starts_with("opencti.daemon.kubernetes.base_deployment_json (from env")
                );
                assert!(!got[0].contains("s3cret"));
            }
            // A structure the merge cannot use is refused too, once parsed.
            let containers = "{\"spec\": {\"template\": {\"spec\": {\"containers\": 1}}}}";
            let got = load_err(&fixture("minimal"), &[(key, containers)]);
            assert!(
                got[0].contains("containers is not a list of objects"),
                "{got:?}"
            );
        }

        #[test]
        fn docker_host_is_parsed_at_load_where_it_is_used() {
            let docker = ("OPENCTI__DAEMON__SELECTOR", "docker");
            let loaded = load_ok(
                &fixture("minimal"),
                &[docker, ("DOCKER_HOST", "tcp://127.0.0.1:2375")],
            );
            assert_eq!(
                loaded
                    .settings
                    .engine(crate::platform::PlatformKind::OpenCti)
                    .as_str(),
                "tcp://127.0.0.1:2375"
            );
            let got = load_err(
                &fixture("minimal"),
                &[docker, ("DOCKER_HOST", "ssh://me@h")],
            );
            assert_eq!(
                got,
                [
                    "opencti.daemon.docker.host = \"ssh://***@h\" (from env DOCKER_HOST): \
                  expected unix:///path/to/docker.sock, tcp://host:port or http://host:port \
                  (DOCKER_HOST stands in for this unset key)"
                ]
            );
            // Not used: Kubernetes, or an engine address of its own.
            load_ok(&fixture("minimal"), &[("DOCKER_HOST", "ssh://me@h")]);
            load_ok(
                &fixture("minimal"),
                &[
                    docker,
                    ("DOCKER_HOST", "ssh://me@h"),
                    ("OPENCTI__DAEMON__DOCKER__HOST", "unix:///run/docker.sock"),
                ],
            );
        }
    }
}
