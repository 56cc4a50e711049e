//! Image references and registry credentials for the Docker family: the
//! registry prefix rule, the pull policy, the reference split for
//! `POST /images/create`, and the base64url `X-Registry-Auth` header (CONTRACT
//! §5.6, §6.1, D7, D10). Pure; the pull itself is `Client::pull_image`.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE;

use super::wire::RegistryAuth;
use crate::config::Registry;
use crate::secret::Secret;

/// When to pull before creating a container (`{p}.daemon.docker.pull_policy`,
/// `{p}.daemon.swarm.pull_policy`; Kubernetes' `image_pull_policy` too).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PullPolicy {
    /// Pull every deploy; a failed pull falls back to a local image (D10).
    Always,
    /// Pull only when the image is not present locally (our default).
    #[default]
    IfNotPresent,
    /// Never pull; a missing image is an error.
    Never,
}

impl std::str::FromStr for PullPolicy {
    type Err = String;

    /// Reads `always` | `if-not-present` | `never`; Kubernetes spellings
    /// (`IfNotPresent`) are accepted too.
    fn from_str(raw: &str) -> Result<PullPolicy, String> {
        let folded: String = raw
            .chars()
            .filter(|c| !matches!(c, '-' | '_'))
            .flat_map(char::to_lowercase)
            .collect();
        match folded.as_str() {
            "always" => Ok(PullPolicy::Always),
            "ifnotpresent" => Ok(PullPolicy::IfNotPresent),
            "never" => Ok(PullPolicy::Never),
            _ => Err("expected one of always, if-not-present, never".into()),
        }
    }
}

impl PullPolicy {
    /// Reads the exact Kubernetes spellings `Always` | `IfNotPresent` | `Never`.
    pub fn from_kubernetes(text: &str) -> Option<PullPolicy> {
        match text {
            "Always" => Some(PullPolicy::Always),
            "IfNotPresent" => Some(PullPolicy::IfNotPresent),
            "Never" => Some(PullPolicy::Never),
            _ => None,
        }
    }

    /// The Kubernetes spelling (`imagePullPolicy`).
    pub fn kubernetes_name(self) -> &'static str {
        match self {
            PullPolicy::Always => "Always",
            PullPolicy::IfNotPresent => "IfNotPresent",
            PullPolicy::Never => "Never",
        }
    }
}

impl std::fmt::Display for PullPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.kubernetes_name())
    }
}

/// Registry settings reduced to what a pull needs.
#[derive(Debug, Clone, Default)]
pub(crate) struct RegistryAccess {
    /// Host[:port][/path] without scheme or trailing `/`.
    pub server: Option<String>,
    /// Set only when both username and password are (§5.6).
    pub credentials: Option<(String, Secret)>,
    pub email: Option<String>,
}

impl RegistryAccess {
    /// From `{p}.daemon.registry` (already resolved with its `opencti` fallback).
    pub(crate) fn from_settings(registry: Option<&Registry>) -> Self {
        let Some(r) = registry else {
            return RegistryAccess::default();
        };
        let server = r
            .server
            .as_deref()
            .map(|s| {
                let s = s.trim();
                let s = s
                    .strip_prefix("https://")
                    .or(s.strip_prefix("http://"))
                    .unwrap_or(s);
                s.trim_end_matches('/').to_string()
            })
            .filter(|s| !s.is_empty());
        let credentials = match (&r.username, &r.password) {
            (Some(u), Some(p)) if !u.is_empty() && !p.is_empty() => Some((u.clone(), p.clone())),
            _ => None,
        };
        RegistryAccess {
            server,
            credentials,
            email: r.email.clone().filter(|e| !e.is_empty()),
        }
    }

    /// The image as pulled and created: `{server}/{image}`, unless it already
    /// starts with `{server}/` (the existing composer prefixed twice, D7).
    pub(crate) fn qualify(&self, image: &str) -> String {
        match &self.server {
            Some(server) if !image.starts_with(&format!("{server}/")) => {
                format!("{server}/{image}")
            }
            _ => image.to_string(),
        }
    }

    /// The `X-Registry-Auth` value for pulling `image` (as qualified): `None`
    /// without credentials, and `None` when `image` lives on another registry
    /// than the configured one (Docker Hub when no server is set), since the
    /// engine hands the header to whichever registry the image names (issue 12).
    pub(crate) fn auth_header_for(&self, image: &str) -> Option<Secret> {
        let configured = self
            .server
            .as_deref()
            .map_or(DOCKER_HUB, |s| s.split('/').next().unwrap_or(s));
        registry_of(image)
            .eq_ignore_ascii_case(configured)
            .then(|| self.auth_header())
            .flatten()
    }

    /// The `X-Registry-Auth` value, or `None` without credentials: base64url
    /// (RFC 4648 §5, padded) JSON — standard base64 is silently ignored by the
    /// engine when it contains `+` or `/` (moby/moby#33434).
    fn auth_header(&self) -> Option<Secret> {
        let (username, password) = self.credentials.as_ref()?;
        let auth = RegistryAuth {
            username,
            password: password.expose(),
            email: self.email.as_deref(),
            serveraddress: self.server.as_deref().unwrap_or_default(),
        };
        // Serializing plain strings cannot fail; an empty header would only mean no auth.
        let json = serde_json::to_vec(&auth).unwrap_or_default();
        Some(Secret::new(URL_SAFE.encode(json)))
    }
}

/// The registry an unqualified reference resolves to.
const DOCKER_HUB: &str = "docker.io";

/// The registry host of a reference, as the engine reads it: the first path
/// component when it looks like a host (`.` or `:` in it, or `localhost`),
/// else Docker Hub.
pub(crate) fn registry_of(image: &str) -> &str {
    match image.split_once('/') {
        Some((first, _)) if first.contains(['.', ':']) || first == "localhost" => match first {
            "index.docker.io" | "registry-1.docker.io" => DOCKER_HUB,
            host => host,
        },
        _ => DOCKER_HUB,
    }
}

/// Splits a reference into `fromImage` and `tag` for `POST /images/create`:
/// a digest goes in `tag`; no tag means `latest`, because an empty tag pulls
/// every tag of the repository (§6.1).
pub(crate) fn split_reference(image: &str) -> (&str, &str) {
    if let Some((repo, digest)) = image.split_once('@') {
        return (repo, digest);
    }
    let name_start = image.rfind('/').map_or(0, |i| i + 1);
    match image[name_start..].rfind(':') {
        Some(i) => (&image[..name_start + i], &image[name_start + i + 1..]),
        None => (image, "latest"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn access(server: &str, user: Option<&str>, password: Option<&str>) -> RegistryAccess {
        RegistryAccess::from_settings(Some(&Registry {
            server: Some(server.into()),
            username: user.map(Into::into),
            password: password.map(Secret::new),
            email: None,
        }))
    }

    #[test]
    fn images_get_the_registry_prefix_once() {
        let r = access("registry.example.com:5000", None, None);
        assert_eq!(
            r.qualify("opencti/connector-x:6.1"),
            "registry.example.com:5000/opencti/connector-x:6.1"
        );
        assert_eq!(
            r.qualify("registry.example.com:5000/opencti/connector-x:6.1"),
            "registry.example.com:5000/opencti/connector-x:6.1"
        );
        // A longer host that merely starts with the server name is still prefixed.
        assert_eq!(
            r.qualify("registry.example.com:50001/x"),
            "registry.example.com:5000/registry.example.com:50001/x"
        );
        assert_eq!(
            RegistryAccess::default().qualify("opencti/x:1"),
            "opencti/x:1"
        );
    }

    #[test]
    fn server_scheme_and_trailing_slash_are_dropped() {
        let r = access("https://127.0.0.1:5000/", None, None);
        assert_eq!(r.server.as_deref(), Some("127.0.0.1:5000"));
        assert_eq!(r.qualify("a/b:1"), "127.0.0.1:5000/a/b:1");
        assert_eq!(access("  ", None, None).server, None);
    }

    #[test]
    fn credentials_need_both_username_and_password() {
        assert!(access("r", Some("u"), None).auth_header().is_none());
        assert!(access("r", None, Some("p")).auth_header().is_none());
        assert!(access("r", Some("u"), Some("")).auth_header().is_none());
        assert!(access("r", Some("u"), Some("p")).auth_header().is_some());
    }

    #[test]
    fn auth_header_is_padded_base64url_json() {
        let r = access("127.0.0.1:5000", Some("ci"), Some("??>??/~~~"));
        let header = r.auth_header().unwrap();
        let text = header.expose();
        let raw = URL_SAFE.decode(text).unwrap();
        let json: serde_json::Value = serde_json::from_slice(&raw).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"username": "ci", "password": "??>??/~~~", "serveraddress": "127.0.0.1:5000"})
        );
        // The same bytes in standard base64 hold '+' or '/': the alphabet matters here.
        let standard = base64::engine::general_purpose::STANDARD.encode(&raw);
        assert!(
            standard.contains('+') || standard.contains('/'),
            "{standard}"
        );
        assert!(!text.contains('+') && !text.contains('/'), "{text}");
        assert_eq!(text.len() % 4, 0, "padded");
        assert_eq!(format!("{header:?}"), "***");
    }

    /// Issue 12: registry credentials go only to the configured registry.
    #[test]
    fn credentials_reach_only_the_configured_registry() {
        let r = access("127.0.0.1:5000", Some("u"), Some("p"));
        assert!(r.auth_header_for(&r.qualify("a/b:1")).is_some());
        assert!(r.auth_header_for("127.0.0.1:5000/a/b:1").is_some());
        assert!(r.auth_header_for("evil.example/a/b:1").is_none());
        assert!(r.auth_header_for("a/b:1").is_none());
        let with_path = access("registry.example/team", Some("u"), Some("p"));
        assert!(
            with_path
                .auth_header_for(&with_path.qualify("x:1"))
                .is_some()
        );
        let hub = RegistryAccess {
            credentials: Some(("u".into(), Secret::new("p"))),
            ..RegistryAccess::default()
        };
        assert!(hub.auth_header_for("opencti/connector-x:6").is_some());
        assert!(hub.auth_header_for("docker.io/opencti/x:6").is_some());
        assert!(hub.auth_header_for("ghcr.io/opencti/x:6").is_none());
        assert!(hub.auth_header_for("localhost/x:6").is_none());
        assert_eq!(registry_of("localhost:5000/x"), "localhost:5000");
        assert_eq!(registry_of("busybox"), "docker.io");
    }

    #[test]
    fn references_split_into_repository_and_tag() {
        assert_eq!(split_reference("busybox"), ("busybox", "latest"));
        assert_eq!(split_reference("opencti/x:6.1.0"), ("opencti/x", "6.1.0"));
        assert_eq!(
            split_reference("127.0.0.1:5000/a/b"),
            ("127.0.0.1:5000/a/b", "latest")
        );
        assert_eq!(
            split_reference("127.0.0.1:5000/a/b:1"),
            ("127.0.0.1:5000/a/b", "1")
        );
        assert_eq!(
            split_reference("r:5000/a@sha256:0123"),
            ("r:5000/a", "sha256:0123")
        );
    }

    #[test]
    fn pull_policies_parse_in_both_spellings() {
        let p = |s: &str| s.parse::<PullPolicy>();
        assert_eq!(PullPolicy::default(), PullPolicy::IfNotPresent);
        assert_eq!(p("always"), Ok(PullPolicy::Always));
        assert_eq!(p("if-not-present"), Ok(PullPolicy::IfNotPresent));
        assert_eq!(p("IfNotPresent"), Ok(PullPolicy::IfNotPresent));
        assert_eq!(p("Never"), Ok(PullPolicy::Never));
        assert!(p("sometimes").is_err());
        assert!(p("").is_err());
        // Kubernetes takes its own spellings only.
        assert_eq!(
            PullPolicy::from_kubernetes("Never"),
            Some(PullPolicy::Never)
        );
        assert_eq!(PullPolicy::from_kubernetes("never"), None);
        for p in [
            PullPolicy::Always,
            PullPolicy::IfNotPresent,
            PullPolicy::Never,
        ] {
            assert_eq!(PullPolicy::from_kubernetes(p.kubernetes_name()), Some(p));
        }
    }
}
