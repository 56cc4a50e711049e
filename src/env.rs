//! A connector's container environment (CONTRACT §5.4): its configuration
//! entries (decrypted where flagged), the platform URL, the hash marker and the
//! proxy variables, de-duplicated last-wins. Decryption goes through a closure
//! so this stays testable; a value that fails makes the whole env an error.

use crate::config::Settings;
use crate::orchestrator::{EnvValue, EnvVar, HASH_MARKER};
use crate::platform::{Connector, PlatformKind};
use crate::secret::Secret;

/// Where connectors find the CA bundle the orchestrator delivers (§5.5.2).
pub const PROXY_CA_PATH: &str = "/etc/ssl/certs/xtm-proxy-ca.crt";

/// Proxy variables injected into a platform's connectors.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProxyEnv {
    pub http: Option<Secret>,
    pub https: Option<Secret>,
    pub no_proxy: Option<String>,
    /// A CA bundle is delivered into the container.
    pub ca_bundle: bool,
    pub reject_unauthorized: bool,
}

/// What the composer adds to every connector of one platform.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Context {
    pub platform: PlatformKind,
    /// `OPENCTI_URL` or `OPENAEV_URL`, by the connector's platform (D24).
    pub platform_url: String,
    pub proxy: Option<ProxyEnv>,
}

impl Context {
    /// Builds the context of one platform. `process_env` is the composer's own
    /// environment (proxy fallbacks); `ca_bundle` says whether a CA resolves.
    pub fn new(
        settings: &Settings,
        platform: PlatformKind,
        process_env: &[(String, String)],
        ca_bundle: bool,
    ) -> Self {
        let p = settings.platform(platform);
        let lookup = |name: &str| -> Option<String> {
            let upper = process_env.iter().find(|(k, _)| k == name);
            let lower = process_env.iter().find(|(k, _)| *k == name.to_lowercase());
            upper
                .or(lower)
                .map(|(_, v)| v.clone())
                .filter(|v| !v.is_empty())
        };
        let proxy = p.with_proxy.then(|| ProxyEnv {
            http: p
                .http_proxy
                .clone()
                .or_else(|| lookup("HTTP_PROXY").map(Secret::new)),
            https: p
                .https_proxy
                .clone()
                .or_else(|| lookup("HTTPS_PROXY").map(Secret::new)),
            no_proxy: p.no_proxy.clone().or_else(|| lookup("NO_PROXY")),
            ca_bundle,
            reject_unauthorized: p.https_proxy_reject_unauthorized,
        });
        let platform_url = p.connector_url.clone().unwrap_or_else(|| p.url.clone());
        Context {
            platform,
            platform_url,
            proxy,
        }
    }
}

/// The environment of `c`, in order, last occurrence of a key winning at the
/// position of its first. `decrypt` turns a ciphertext into its plaintext.
///
/// # Errors
/// The first entry that fails to decrypt: `key NAME: <reason>` (never the value).
pub fn connector_env<F>(c: &Connector, ctx: &Context, decrypt: F) -> Result<Vec<EnvVar>, String>
where
    F: Fn(&str) -> Result<Secret, String>,
{
    let mut out: Vec<EnvVar> = Vec::with_capacity(c.config.len() + 12);
    for e in &c.config {
        let value = match (&e.value, e.encrypted) {
            (Some(v), true) => {
                EnvValue::Sensitive(decrypt(v).map_err(|why| format!("key {}: {why}", e.key))?)
            }
            (None, true) => return Err(format!("key {}: encrypted value is null", e.key)),
            (v, false) if is_platform_token(&e.key) => {
                EnvValue::Sensitive(Secret::new(v.clone().unwrap_or_default()))
            }
            (v, false) => EnvValue::Plain(v.clone().unwrap_or_default()),
        };
        push(&mut out, &e.key, value);
    }
    let url_key = match ctx.platform {
        PlatformKind::OpenCti => "OPENCTI_URL",
        PlatformKind::OpenAev => "OPENAEV_URL",
    };
    push(&mut out, url_key, EnvValue::Plain(ctx.platform_url.clone()));
    push(
        &mut out,
        HASH_MARKER,
        EnvValue::Plain(c.contract_hash.clone()),
    );
    if let Some(p) = &ctx.proxy {
        push_proxy(&mut out, p);
    }
    Ok(out)
}

/// The platform token variables of both platforms. OpenAEV always sends its
/// token unencrypted, and older OpenCTI sends `OPENCTI_TOKEN` so: they are
/// secrets whatever the flag says (redacted in logs, kept out of a Kubernetes
/// Deployment body; issue 12).
const PLATFORM_TOKENS: [&str; 2] = ["OPENCTI_TOKEN", "OPENAEV_TOKEN"];

fn is_platform_token(key: &str) -> bool {
    PLATFORM_TOKENS.iter().any(|t| t.eq_ignore_ascii_case(key))
}

fn push_proxy(out: &mut Vec<EnvVar>, p: &ProxyEnv) {
    // Proxy URLs may carry credentials: both are sensitive (§5.4).
    if let Some(v) = &p.http {
        push(out, "HTTP_PROXY", EnvValue::Sensitive(v.clone()));
    }
    if let Some(v) = &p.https {
        push(out, "HTTPS_PROXY", EnvValue::Sensitive(v.clone()));
    }
    if let Some(v) = &p.no_proxy {
        push(out, "NO_PROXY", EnvValue::Plain(v.clone()));
    }
    if p.ca_bundle {
        for k in [
            "SSL_CERT_FILE",
            "REQUESTS_CA_BUNDLE",
            "NODE_EXTRA_CA_CERTS",
            "CURL_CA_BUNDLE",
        ] {
            push(out, k, EnvValue::Plain(PROXY_CA_PATH.to_string()));
        }
    }
    if !p.reject_unauthorized {
        push(
            out,
            "NODE_TLS_REJECT_UNAUTHORIZED",
            EnvValue::Plain("0".into()),
        );
    }
}

fn push(out: &mut Vec<EnvVar>, key: &str, value: EnvValue) {
    match out.iter_mut().find(|e| e.key == key) {
        Some(existing) => existing.value = value,
        None => out.push(EnvVar {
            key: key.to_string(),
            value,
        }),
    }
}

/// `KEY=value` lines for the debug log, sensitive values redacted unless `show`.
pub fn describe(env: &[EnvVar], show_sensitive: bool) -> Vec<String> {
    env.iter()
        .map(|e| match (&e.value, show_sensitive) {
            (EnvValue::Sensitive(_), false) => format!("{}=***REDACTED***", e.key),
            (v, _) => format!("{}={}", e.key, v.expose()),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform::{ConfigEntry, Requested, Status};

    fn entry(k: &str, v: Option<&str>, encrypted: bool) -> ConfigEntry {
        ConfigEntry {
            key: k.into(),
            value: v.map(str::to_string),
            encrypted,
        }
    }

    fn connector(config: Vec<ConfigEntry>) -> Connector {
        Connector {
            id: "c1".into(),
            name: "C".into(),
            image: "img:1".into(),
            contract_hash: "hash-1".into(),
            current_status: Some(Status::Stopped),
            requested: Requested::Starting,
            config,
        }
    }

    fn ctx(proxy: Option<ProxyEnv>) -> Context {
        Context {
            platform: PlatformKind::OpenCti,
            platform_url: "http://cti:8080".into(),
            proxy,
        }
    }

    fn fake_decrypt(v: &str) -> Result<Secret, String> {
        v.strip_prefix("enc:")
            .map(Secret::new)
            .ok_or_else(|| "authentication failed".to_string())
    }

    fn pairs(env: &[EnvVar]) -> Vec<(String, String)> {
        env.iter()
            .map(|e| (e.key.clone(), e.value.expose().to_string()))
            .collect()
    }

    #[test]
    fn entries_come_first_then_url_and_hash_marker() {
        let c = connector(vec![
            entry("A", Some("1"), false),
            entry("TOKEN", Some("enc:s3cret"), true),
            entry("N", None, false),
        ]);
        let env = connector_env(&c, &ctx(None), fake_decrypt).unwrap();
        let want: Vec<(String, String)> = [
            ("A", "1"),
            ("TOKEN", "s3cret"),
            ("N", ""),
            ("OPENCTI_URL", "http://cti:8080"),
            (HASH_MARKER, "hash-1"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(pairs(&env), want);
        assert!(env[1].value.is_sensitive());
    }

    #[test]
    fn d03_a_value_that_fails_to_decrypt_fails_the_whole_env_naming_the_key_only() {
        let c = connector(vec![
            entry("A", Some("1"), false),
            entry("PASSWORD", Some("garbage-ciphertext"), true),
        ]);
        let err = connector_env(&c, &ctx(None), fake_decrypt).unwrap_err();
        assert!(err.contains("PASSWORD"));
        assert!(!err.contains("garbage-ciphertext"));
        let c = connector(vec![entry("PASSWORD", None, true)]);
        assert!(connector_env(&c, &ctx(None), fake_decrypt).is_err());
    }

    #[test]
    fn duplicates_keep_the_first_position_and_the_last_value() {
        let c = connector(vec![
            entry("HTTP_PROXY", Some("from-platform"), false),
            entry("B", Some("2"), false),
            entry("B", Some("3"), false),
        ]);
        let proxy = ProxyEnv {
            http: Some(Secret::new("http://p:3128")),
            reject_unauthorized: true,
            ..ProxyEnv::default()
        };
        let env = connector_env(&c, &ctx(Some(proxy)), fake_decrypt).unwrap();
        let p = pairs(&env);
        assert_eq!(p[0], ("HTTP_PROXY".into(), "http://p:3128".into()));
        assert_eq!(p[1], ("B".into(), "3".into()));
        assert_eq!(p.iter().filter(|(k, _)| k == "B").count(), 1);
    }

    #[test]
    fn proxy_ca_and_tls_switch_are_injected_with_the_proxy() {
        let proxy = ProxyEnv {
            no_proxy: Some("localhost".into()),
            ca_bundle: true,
            reject_unauthorized: false,
            ..ProxyEnv::default()
        };
        let env = connector_env(&connector(vec![]), &ctx(Some(proxy)), fake_decrypt).unwrap();
        let keys: Vec<String> = env.iter().map(|e| e.key.clone()).collect();
        for k in [
            "NO_PROXY",
            "SSL_CERT_FILE",
            "REQUESTS_CA_BUNDLE",
            "NODE_EXTRA_CA_CERTS",
            "CURL_CA_BUNDLE",
            "NODE_TLS_REJECT_UNAUTHORIZED",
        ] {
            assert!(keys.contains(&k.to_string()), "{k} missing");
        }
        assert!(!keys.contains(&"HTTP_PROXY".to_string()));
    }

    #[test]
    fn context_takes_explicit_proxies_then_process_env_upper_then_lower() {
        let mut s = Settings::default();
        s.opencti.with_proxy = true;
        s.opencti.https_proxy = Some(Secret::new("http://explicit:1"));
        let penv = vec![
            ("http_proxy".to_string(), "http://lower:2".to_string()),
            ("HTTPS_PROXY".to_string(), "http://upper:3".to_string()),
        ];
        let c = Context::new(&s, PlatformKind::OpenCti, &penv, false);
        let p = c.proxy.unwrap();
        assert_eq!(p.https.unwrap().expose(), "http://explicit:1");
        assert_eq!(p.http.unwrap().expose(), "http://lower:2");
        s.opencti.with_proxy = false;
        assert_eq!(
            Context::new(&s, PlatformKind::OpenCti, &penv, false).proxy,
            None
        );
    }

    #[test]
    fn d24_connector_url_overrides_the_injected_url_per_platform() {
        let mut s = Settings::default();
        s.openaev.url = "http://aev-internal:8080".into();
        s.openaev.connector_url = Some("http://aev.example:8080".into());
        let c = Context::new(&s, PlatformKind::OpenAev, &[], false);
        let env = connector_env(&connector(vec![]), &c, fake_decrypt).unwrap();
        assert_eq!(
            pairs(&env)[0],
            ("OPENAEV_URL".into(), "http://aev.example:8080".into())
        );
        assert!(!env.iter().any(|e| e.key == "OPENCTI_URL"));
    }

    /// Issue 12: OpenAEV sends its token unencrypted, older OpenCTI too; both
    /// were logged by `show_env_vars` and written into the Deployment env.
    #[test]
    fn unencrypted_platform_tokens_are_sensitive() {
        let c = connector(vec![
            entry("OPENAEV_TOKEN", Some("aev-token-value"), false),
            entry("OPENCTI_TOKEN", Some("cti-token-value"), false),
            entry("opencti_token", Some("lower-token-value"), false),
            entry("OPENCTI_TOKEN_FILE", Some("/run/t"), false),
        ]);
        let env = connector_env(&c, &ctx(None), fake_decrypt).unwrap();
        let sensitive: Vec<&str> = env
            .iter()
            .filter(|e| e.value.is_sensitive())
            .map(|e| e.key.as_str())
            .collect();
        assert_eq!(
            sensitive,
            ["OPENAEV_TOKEN", "OPENCTI_TOKEN", "opencti_token"]
        );
        let lines = describe(&env, false).join(" ");
        assert!(!lines.contains("token-value"), "{lines}");
        assert!(lines.contains("OPENCTI_TOKEN_FILE=/run/t"), "{lines}");
    }

    #[test]
    fn describe_redacts_sensitive_values_unless_asked() {
        let c = connector(vec![entry("TOKEN", Some("enc:s3cret"), true)]);
        let env = connector_env(&c, &ctx(None), fake_decrypt).unwrap();
        assert!(describe(&env, false).iter().all(|l| !l.contains("s3cret")));
        assert!(describe(&env, true).iter().any(|l| l == "TOKEN=s3cret"));
    }
}
