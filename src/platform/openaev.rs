//! The OpenAEV client: the seven REST calls of CONTRACT §3.2 under `{url}/api`, or under
//! `/api/tenants/{tenant_id}/xtm-composer` when `openaev.tenant_id` is set (§3.1). Any 2xx
//! is success; a 400 `Invalid xtm-composer identifier` is `Error::NotRegistered`, which the
//! engine answers with a registration and one retry. Does not decrypt anything, and never
//! parses the instance that the status and health calls send back (D22).
//! Wire types live in `openaev_wire`; the agent (TLS, proxy, timeouts) comes from `crate::http`.

use serde::Serialize;
use serde_json::Value;

use super::openaev_wire as wire;
use super::{Error, Health, Listing, Platform, PlatformKind, Status};
use crate::config::PlatformSettings;
use crate::http::{self, ClientOptions, percent_encode as segment};
use crate::secret::Secret;

/// Operation names, as errors and logs show them.
const VERSION: &str = "get version";
const REGISTER: &str = "register";
const PING: &str = "ping";
const LIST: &str = "list connector instances";
const STATUS: &str = "report status";
const LOGS: &str = "report logs";
const HEALTH: &str = "report health";

/// OpenAEV's 400 answer when `{managerId}` is not the registered composer (§3.1).
const INVALID_ID: &str = "Invalid xtm-composer identifier";

/// How much of an error body goes into an error message.
const BODY_IN_ERROR: usize = 512;

#[derive(Clone, Copy)]
enum Method {
    Get,
    Post,
    Put,
}

impl Method {
    fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Put => "PUT",
        }
    }
}

/// A client for one OpenAEV instance, as one XTM composer.
pub struct Client {
    agent: ureq::Agent,
    /// The URL and timeouts named in transport errors.
    remote: http::Remote,
    /// `openaev.url` without its trailing slashes; paths start with `/api`.
    base: String,
    /// `openaev.tenant_id`, percent-encoded; `None` selects the plain paths.
    tenant: Option<String>,
    token: Secret,
    manager_id: String,
    manager_name: String,
    public_key: String,
}

impl Client {
    /// A client for `settings.url` with `settings`' TLS, proxy, timeouts and
    /// tenant. `public_key_spki_pem` is sent at registration (§4.6): OpenAEV
    /// needs SPKI and does not refuse anything else until it encrypts a value.
    ///
    /// # Errors
    /// A CA entry, proxy or URL in `settings` that cannot be used.
    pub fn new(
        settings: &PlatformSettings,
        manager_id: &str,
        manager_name: &str,
        public_key_spki_pem: String,
    ) -> Result<Client, http::Error> {
        let options = ClientOptions::for_platform("openaev", settings)?;
        let agent = http::agent(&options, &settings.url)?;
        let tenant = settings
            .tenant_id
            .as_deref()
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(segment);
        Ok(Client {
            agent,
            remote: http::Remote::platform("openaev", settings),
            base: settings.url.trim_end_matches('/').to_string(),
            tenant,
            token: settings.token.clone(),
            manager_id: manager_id.to_string(),
            manager_name: manager_name.to_string(),
            public_key: public_key_spki_pem,
        })
    }

    /// `/api/xtm-composer{rest}`, or its tenant form.
    fn composer_path(&self, rest: &str) -> String {
        match &self.tenant {
            Some(t) => format!("/api/tenants/{t}/xtm-composer{rest}"),
            None => format!("/api/xtm-composer{rest}"),
        }
    }

    fn register_path(&self) -> String {
        self.composer_path("/register")
    }

    fn ping_path(&self) -> String {
        let id = segment(&self.manager_id);
        self.composer_path(&format!("/{id}/refresh-connectivity"))
    }

    fn instances_path(&self) -> String {
        let id = segment(&self.manager_id);
        self.composer_path(&format!("/{id}/connector-instances"))
    }

    /// `.../connector-instances/{instanceId}/{leaf}`.
    fn instance_path(&self, instance: &str, leaf: &str) -> String {
        format!("{}/{}/{leaf}", self.instances_path(), segment(instance))
    }

    /// One request. POST and PUT always carry `Content-Type: application/json`,
    /// the bodiless ping included (§3.1). With `read` false a 2xx body is not
    /// read at all (the status and health answers echo the whole instance).
    ///
    /// # Errors
    /// Transport failures, and non-2xx answers mapped by `refused`.
    fn request(
        &self,
        op: &'static str,
        method: Method,
        path: &str,
        body: &[u8],
        read: bool,
    ) -> Result<String, Error> {
        let url = format!("{}{path}", self.base);
        log::debug!("{} {path}", method.as_str());
        let auth = format!("Bearer {}", self.token.expose());
        let json = "application/json";
        let sent = match method {
            Method::Get => self.agent.get(&url).header("Authorization", &auth).call(),
            Method::Post => (self.agent.post(&url).header("Authorization", &auth))
                .content_type(json)
                .send(body),
            Method::Put => (self.agent.put(&url).header("Authorization", &auth))
                .content_type(json)
                .send(body),
        };
        let mut response = sent.map_err(|e| transport(op, &self.remote, &e))?;
        let status = response.status().as_u16();
        let success = (200..300).contains(&status);
        if success && !read {
            return Ok(String::new());
        }
        let text = match http::read_text(&mut response) {
            Ok(text) => text,
            Err(e) if !success => format!("(body unreadable: {e})"),
            Err(e) => return Err(read_error(op, &self.remote, e)),
        };
        log::trace!("{op} answered {status}, {} bytes", text.len());
        if success {
            Ok(text)
        } else {
            Err(self.refused(op, status, &text))
        }
    }

    /// A POST or PUT with a compact JSON body (ureq's `send_json` pretty-prints).
    fn send<B: Serialize>(
        &self,
        op: &'static str,
        method: Method,
        path: &str,
        body: &B,
        read: bool,
    ) -> Result<String, Error> {
        let json = serde_json::to_vec(body).map_err(|e| Error::Decode {
            op,
            detail: format!("encode request: {e}"),
        })?;
        self.request(op, method, path, &json, read)
    }

    /// Maps a non-2xx answer: the unknown-manager 400 becomes `NotRegistered`,
    /// 401 and 403 say which setting to check, anything else keeps its body.
    /// A 400 to the listing or the ping, which send no body a 400 could be
    /// about, is read as an unknown manager even without the message: the error
    /// body's wording is not verified (§3.1), and a wrong guess costs one
    /// registration, while a missed one costs the cycle.
    fn refused(&self, op: &'static str, code: u16, body: &str) -> Error {
        let known = body.contains(INVALID_ID);
        if code == 400 && (known || op == LIST || op == PING) {
            let why = if known {
                INVALID_ID.to_string()
            } else {
                format!("HTTP 400 to a request without a body: {}", cut(body))
            };
            return Error::NotRegistered {
                op,
                detail: format!(
                    "OpenAEV does not know manager.id `{}` ({why})",
                    self.manager_id
                ),
            };
        }
        let hint = match code {
            401 => "the platform refused openaev.token (unknown, expired or revoked token)",
            403 => {
                "the user of openaev.token lacks a permission: READ/WRITE on CATALOG \
                 (xtm-composer endpoints) and READ on PLATFORM_SETTING (version)"
            }
            _ => "",
        };
        let body = cut(body);
        let body = match (hint, body.is_empty()) {
            ("", _) => body,
            (hint, true) => hint.to_string(),
            (hint, false) => format!("{hint}; body: {body}"),
        };
        Error::Status { op, code, body }
    }
}

fn transport(op: &'static str, remote: &http::Remote, e: &ureq::Error) -> Error {
    Error::Transport {
        op,
        detail: remote.explain(e),
    }
}

fn read_error(op: &'static str, remote: &http::Remote, e: ureq::Error) -> Error {
    match e {
        ureq::Error::BodyExceedsLimit(limit) => Error::Decode {
            op,
            detail: format!("answer larger than {limit} bytes"),
        },
        other => transport(op, remote, &other),
    }
}

/// The body trimmed and cut to `BODY_IN_ERROR` characters.
fn cut(body: &str) -> String {
    let body = body.trim();
    match body.char_indices().nth(BODY_IN_ERROR) {
        Some((at, _)) => format!("{}…", &body[..at]),
        None => body.to_string(),
    }
}

/// The version text: trimmed, and unquoted should a platform ever answer a
/// JSON string instead of `text/plain` (§3.2). `None` when nothing is left.
fn version_text(body: &str) -> Option<String> {
    let trimmed = body.trim();
    let unquoted = match serde_json::from_slice::<Value>(trimmed.as_bytes()) {
        Ok(Value::String(s)) => s.trim().to_string(),
        _ => trimmed.to_string(),
    };
    (!unquoted.is_empty()).then_some(unquoted)
}

/// `started_at` as OpenAEV's `Instant` reads it: RFC 3339 in UTC with `Z`.
/// Already in that form it is sent as is (nanoseconds kept); an offset form is
/// converted (milliseconds kept); anything else is `None`.
fn instant(started_at: &str) -> Option<String> {
    let s = started_at.trim();
    let parsed = crate::time::parse_rfc3339(s)?;
    if s.ends_with('Z') && s.as_bytes().get(10) == Some(&b'T') {
        Some(s.to_string())
    } else {
        Some(crate::time::format_rfc3339(parsed))
    }
}

impl Platform for Client {
    fn kind(&self) -> PlatformKind {
        PlatformKind::OpenAev
    }

    fn ping_reports_current_version(&self) -> bool {
        false
    }

    fn version(&self) -> Result<String, Error> {
        let text = self.request(VERSION, Method::Get, "/api/settings/version", &[], true)?;
        version_text(&text).ok_or(Error::Decode {
            op: VERSION,
            detail: "empty version".into(),
        })
    }

    fn register(&self) -> Result<(), Error> {
        let body = wire::XtmComposerRegisterInput {
            id: &self.manager_id,
            name: &self.manager_name,
            public_key: &self.public_key,
        };
        let text = self.send(REGISTER, Method::Post, &self.register_path(), &body, true)?;
        // Any 2xx is success (§3.1); the answer only feeds the log line.
        let answer =
            serde_json::from_slice::<wire::XtmComposerOutput>(text.as_bytes()).unwrap_or_default();
        log::info!(
            "registered on OpenAEV as XTM composer {} (platform version {})",
            answer
                .xtm_composer_id
                .as_deref()
                .unwrap_or(&self.manager_id),
            answer
                .xtm_composer_version
                .as_deref()
                .unwrap_or("not given")
        );
        Ok(())
    }

    fn ping(&self) -> Result<String, Error> {
        let text = self.request(PING, Method::Put, &self.ping_path(), &[], true)?;
        let answer: wire::XtmComposerOutput =
            serde_json::from_slice(text.as_bytes()).map_err(|e| Error::Decode {
                op: PING,
                detail: e.to_string(),
            })?;
        answer
            .xtm_composer_version
            .as_deref()
            .and_then(version_text)
            .ok_or(Error::Decode {
                op: PING,
                detail: "no xtm_composer_version in the answer".into(),
            })
    }

    fn list(&self) -> Result<Listing, Error> {
        let text = self.request(LIST, Method::Get, &self.instances_path(), &[], true)?;
        let entries: Vec<Value> =
            serde_json::from_slice(text.as_bytes()).map_err(|e| Error::Decode {
                op: LIST,
                detail: format!("expected a JSON array of instances: {e}"),
            })?;
        let (connectors, problems) = wire::listing(entries);
        Ok(Listing {
            complete: problems.is_empty(),
            connectors,
            problems,
        })
    }

    fn report_status(&self, id: &str, status: Status) -> Result<(), Error> {
        let body = wire::ConnectorInstanceStatusInput {
            connector_instance_current_status: status.as_str(),
        };
        let path = self.instance_path(id, "status");
        self.send(STATUS, Method::Put, &path, &body, false)
            .map(drop)
    }

    fn report_logs(&self, id: &str, lines: &[String]) -> Result<(), Error> {
        let body = wire::ConnectorInstanceLogsInput {
            connector_instance_logs: lines,
        };
        // The platform answers `void`: an empty or non-JSON 2xx body is success.
        let path = self.instance_path(id, "logs");
        self.send(LOGS, Method::Post, &path, &body, false).map(drop)
    }

    fn report_health(&self, id: &str, health: &Health) -> Result<(), Error> {
        let Some(started_at) = instant(&health.started_at) else {
            return Err(Error::Api {
                op: HEALTH,
                messages: vec![format!(
                    "started_at `{}` is not an RFC 3339 instant; health not sent",
                    health.started_at
                )],
            });
        };
        let body = wire::ConnectorInstanceHealthInput {
            connector_instance_restart_count: health.restart_count,
            connector_instance_started_at: &started_at,
            connector_instance_is_in_reboot_loop: health.is_in_reboot_loop,
        };
        let path = self.instance_path(id, "health-check");
        self.send(HEALTH, Method::Put, &path, &body, false)
            .map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(url: &str, tenant: Option<&str>, manager: &str) -> Client {
        let settings = PlatformSettings {
            url: url.to_string(),
            tenant_id: tenant.map(String::from),
            ..PlatformSettings::default()
        };
        Client::new(&settings, manager, "Composer", String::new()).unwrap()
    }

    #[test]
    fn paths_follow_the_contract_with_and_without_a_tenant() {
        let c = client("http://aev:8080/", None, "m-1");
        assert_eq!(c.base, "http://aev:8080");
        assert_eq!(c.register_path(), "/api/xtm-composer/register");
        assert_eq!(c.ping_path(), "/api/xtm-composer/m-1/refresh-connectivity");
        assert_eq!(
            c.instances_path(),
            "/api/xtm-composer/m-1/connector-instances"
        );
        assert_eq!(
            c.instance_path("i-9", "health-check"),
            "/api/xtm-composer/m-1/connector-instances/i-9/health-check"
        );
        let t = client("https://aev/base", Some(" t 1 "), "m/1");
        assert_eq!(
            t.register_path(),
            "/api/tenants/t%201/xtm-composer/register"
        );
        assert_eq!(
            t.instance_path("a?b", "status"),
            "/api/tenants/t%201/xtm-composer/m%2F1/connector-instances/a%3Fb/status"
        );
        let blank = client("http://aev", Some("  "), "m");
        assert_eq!(blank.register_path(), "/api/xtm-composer/register");
    }

    #[test]
    fn version_text_is_trimmed_and_unquoted() {
        assert_eq!(version_text("2.4.0\n").as_deref(), Some("2.4.0"));
        assert_eq!(version_text(" \"2.4.1\" ").as_deref(), Some("2.4.1"));
        assert_eq!(version_text("  \n"), None);
        assert_eq!(version_text("\"\""), None);
    }

    #[test]
    fn started_at_is_sent_in_utc_with_z() {
        let rows = [
            (
                "2025-01-19T16:27:31.123456789Z",
                Some("2025-01-19T16:27:31.123456789Z"),
            ),
            ("2025-01-19T16:27:31Z", Some("2025-01-19T16:27:31Z")),
            (
                "2025-01-19T18:27:31.5+02:00",
                Some("2025-01-19T16:27:31.500Z"),
            ),
            ("2025-01-19 16:27:31Z", Some("2025-01-19T16:27:31.000Z")),
            ("0001-01-01T00:00:00Z", None),
            ("yesterday", None),
        ];
        for (given, want) in rows {
            assert_eq!(instant(given).as_deref(), want, "{given}");
        }
    }

    #[test]
    fn refusals_are_mapped_to_actionable_errors() {
        let c = client("http://aev", None, "m-1");
        let body = r#"{"message":"Invalid xtm-composer identifier","status":400}"#;
        let e = c.refused(LIST, 400, body);
        assert!(matches!(e, Error::NotRegistered { .. }), "{e:?}");
        assert_eq!(
            e.to_string(),
            "list connector instances: manager not registered: OpenAEV does not know \
             manager.id `m-1` (Invalid xtm-composer identifier)"
        );
        let e = c.refused(STATUS, 400, "Bad Request");
        assert!(matches!(e, Error::Status { code: 400, .. }), "{e:?}");
        let e = c.refused(LIST, 400, r#"{"status":400,"error":"Bad Request"}"#);
        assert!(
            e.to_string().ends_with(
                r#"(HTTP 400 to a request without a body: {"status":400,"error":"Bad Request"})"#
            ),
            "{e}"
        );
        assert_eq!(
            c.refused(VERSION, 401, "").to_string(),
            "get version: server returned 401: the platform refused openaev.token \
             (unknown, expired or revoked token)"
        );
        let e = c.refused(PING, 500, &"x".repeat(4000));
        let Error::Status { body, .. } = e else {
            panic!("expected a status error");
        };
        assert_eq!(body.chars().count(), BODY_IN_ERROR + 1);
    }
}
