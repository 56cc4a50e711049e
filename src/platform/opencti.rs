//! The OpenCTI client: the seven GraphQL operations of CONTRACT §2.3, sent verbatim to
//! `{url}/graphql`, and the error rules of §2.2 (an `errors` entry or a null root fails
//! the call). Does not decrypt anything: the listing carries ciphertexts, and the
//! connector returned by the status mutation is not even parsed (§2.3e, D22).
//! Wire types live in `opencti_wire`; the agent (TLS, proxy, timeouts) comes from `crate::http`.

use serde::Serialize;
use serde::de::{DeserializeOwned, IgnoredAny};
use serde_json::Value;

use super::opencti_wire::{self as wire, Answer, Envelope, GraphQlError, Input};
use super::{Error, Health, Listing, Platform, PlatformKind, Status};
use crate::config::PlatformSettings;
use crate::http::{self, ClientOptions};
use crate::secret::Secret;

/// One operation: its name, its exact document, and the root field it selects.
struct Op {
    name: &'static str,
    root: &'static str,
    document: &'static str,
}

const GET_VERSION: Op = Op {
    name: "GetVersion",
    root: "about",
    document: r#"query GetVersion {
  about {
    version
  }
}
"#,
};

const REGISTER: Op = Op {
    name: "RegisterConnectorsManager",
    root: "registerConnectorsManager",
    document: r#"mutation RegisterConnectorsManager($input: RegisterConnectorsManagerInput!) {
  registerConnectorsManager(input: $input) {
    id
    about_version
  }
}
"#,
};

const PING: Op = Op {
    name: "UpdateConnectorManagerStatus",
    root: "updateConnectorManagerStatus",
    document: r#"mutation UpdateConnectorManagerStatus($input: UpdateConnectorManagerStatusInput!) {
  updateConnectorManagerStatus(input: $input) {
    id
    about_version
  }
}
"#,
};

const GET_CONNECTORS: Op = Op {
    name: "GetConnectors",
    root: "connectorsForManagers",
    document: r#"query GetConnectors {
  connectorsForManagers {
    id
    name
    manager_contract_hash
    manager_contract_image
    manager_current_status
    manager_requested_status
    manager_contract_configuration {
      key
      value
      encrypted
    }
  }
}
"#,
};

const UPDATE_STATUS: Op = Op {
    name: "UpdateConnectorCurrentStatus",
    root: "updateConnectorCurrentStatus",
    document: r#"mutation UpdateConnectorCurrentStatus($input: CurrentConnectorStatusInput!) {
  updateConnectorCurrentStatus(input: $input) {
    id
    name
    manager_contract_hash
    manager_contract_image
    manager_current_status
    manager_requested_status
    manager_contract_configuration {
      key
      value
      encrypted
    }
  }
}
"#,
};

const REPORT_LOGS: Op = Op {
    name: "ReportConnectorLogs",
    root: "updateConnectorLogs",
    document: r#"mutation ReportConnectorLogs($input: LogsConnectorStatusInput!) {
  updateConnectorLogs(input: $input)
}
"#,
};

const UPDATE_HEALTH: Op = Op {
    name: "UpdateConnectorHealth",
    root: "updateConnectorHealth",
    document: r#"mutation UpdateConnectorHealth($input: HealthConnectorStatusInput!) {
  updateConnectorHealth(input: $input)
}
"#,
};

/// `(operationName, document)` of the seven operations, exactly as sent (§2.3).
pub const DOCUMENTS: [(&str, &str); 7] = [
    (GET_VERSION.name, GET_VERSION.document),
    (REGISTER.name, REGISTER.document),
    (PING.name, PING.document),
    (GET_CONNECTORS.name, GET_CONNECTORS.document),
    (UPDATE_STATUS.name, UPDATE_STATUS.document),
    (REPORT_LOGS.name, REPORT_LOGS.document),
    (UPDATE_HEALTH.name, UPDATE_HEALTH.document),
];

/// How much of a non-GraphQL error body goes into an error message.
const BODY_IN_ERROR: usize = 512;

/// OpenCTI's message when a second manager id registers (§2.4).
const ONE_MANAGER: &str = "Only one connector manager is supported per instance";
/// OpenCTI's message when an unknown manager id pings (§2.4).
const UNKNOWN_MANAGER: &str = "Cant find element to update";

/// A client for one OpenCTI instance, as one connector manager.
pub struct Client {
    agent: ureq::Agent,
    /// The URL and timeouts named in transport errors.
    remote: http::Remote,
    endpoint: String,
    token: Secret,
    manager_id: String,
    manager_name: String,
    public_key: String,
}

impl Client {
    /// A client for `settings.url` with `settings`' TLS, proxy and timeouts.
    /// `public_key_pkcs1_pem` is sent at registration (§4.6).
    ///
    /// # Errors
    /// A CA entry, proxy or URL in `settings` that cannot be used.
    pub fn new(
        settings: &PlatformSettings,
        manager_id: &str,
        manager_name: &str,
        public_key_pkcs1_pem: String,
    ) -> Result<Client, http::Error> {
        let options = ClientOptions::for_platform("opencti", settings)?;
        let agent = http::agent(&options, &settings.url)?;
        Ok(Client {
            agent,
            remote: http::Remote::platform("opencti", settings),
            endpoint: endpoint(&settings.url),
            token: settings.token.clone(),
            manager_id: manager_id.to_string(),
            manager_name: manager_name.to_string(),
            public_key: public_key_pkcs1_pem,
        })
    }

    /// One operation whose root field must be non-null and error-free.
    fn call<V: Serialize, T: DeserializeOwned>(
        &self,
        op: &Op,
        variables: Option<V>,
    ) -> Result<T, Error> {
        let answer = self.exchange(op, variables)?;
        if !answer.errors.is_empty() {
            return Err(self.api_error(op, answer.errors));
        }
        answer.root.ok_or_else(|| null_root(op))
    }

    /// Sends one operation and reads its answer (§2.2 except the errors rule,
    /// which callers apply).
    fn exchange<V: Serialize, T: DeserializeOwned>(
        &self,
        op: &Op,
        variables: Option<V>,
    ) -> Result<Answer<T>, Error> {
        let body = wire::Request {
            query: op.document,
            variables,
            operation_name: op.name,
        };
        // Compact, as the existing composer sends it (ureq's send_json pretty-prints).
        let json = serde_json::to_vec(&body).map_err(|e| Error::Decode {
            op: op.name,
            detail: format!("encode request: {e}"),
        })?;
        log::debug!("POST /graphql {}", op.name);
        let mut response = self
            .agent
            .post(&self.endpoint)
            .header("Authorization", format!("Bearer {}", self.token.expose()))
            .content_type("application/json")
            .send(&json[..])
            .map_err(|e| transport(op, &self.remote, &e))?;
        let status = response.status().as_u16();
        let text = http::read_text(&mut response).map_err(|e| match e {
            ureq::Error::BodyExceedsLimit(limit) => Error::Decode {
                op: op.name,
                detail: format!("answer larger than {limit} bytes"),
            },
            other => transport(op, &self.remote, &other),
        })?;
        log::trace!("{} answered {status}, {} bytes", op.name, text.len());
        answer(op, status, &text)
    }

    /// Maps GraphQL errors, turning the two manager-identity messages into
    /// errors an operator can act on (D26).
    fn api_error(&self, op: &Op, errors: Vec<GraphQlError>) -> Error {
        let id = &self.manager_id;
        if errors.iter().any(|e| e.message.contains(ONE_MANAGER)) {
            let advice = format!(
                "OpenCTI already has another connector manager registered and accepts only one: \
                 manager.id `{id}` differs from it. Set manager.id to the registered manager's id \
                 (secrets are encrypted with the first manager's key), or remove the other manager \
                 from OpenCTI"
            );
            return Error::Api {
                op: op.name,
                messages: std::iter::once(advice).chain(messages(&errors)).collect(),
            };
        }
        if op.name == PING.name && errors.iter().any(|e| e.message.contains(UNKNOWN_MANAGER)) {
            return Error::NotRegistered {
                op: op.name,
                detail: format!("OpenCTI does not know manager.id `{id}` ({UNKNOWN_MANAGER})"),
            };
        }
        Error::Api {
            op: op.name,
            messages: messages(&errors),
        }
    }
}

/// `{url}/graphql` without a doubled slash (§2.1).
fn endpoint(url: &str) -> String {
    format!("{}/graphql", url.trim_end_matches('/'))
}

fn messages(errors: &[GraphQlError]) -> Vec<String> {
    errors.iter().map(ToString::to_string).collect()
}

fn transport(op: &Op, remote: &http::Remote, e: &ureq::Error) -> Error {
    Error::Transport {
        op: op.name,
        detail: remote.explain(e),
    }
}

fn null_root(op: &Op) -> Error {
    Error::Api {
        op: op.name,
        messages: vec![format!(
            "the platform returned no `{}` (backend does not support this operation?)",
            op.root
        )],
    }
}

/// Reads a body as a GraphQL answer; a non-2xx body that is not one becomes
/// `server returned <status>: <body>`, with the body cut to `BODY_IN_ERROR`.
fn answer<T: DeserializeOwned>(op: &Op, status: u16, body: &str) -> Result<Answer<T>, Error> {
    let success = (200..300).contains(&status);
    let typed = serde_json::from_slice::<Envelope<T>>(body.as_bytes());
    match typed {
        Ok(envelope) if success || envelope.is_graphql() => Ok(envelope.into_answer(op.root)),
        Ok(_) => Err(status_error(op, status, body)),
        Err(e) => {
            // The root may be what failed to parse: keep the errors if there are any.
            let loose = serde_json::from_slice::<Envelope<IgnoredAny>>(body.as_bytes())
                .map(|envelope| envelope.into_answer(op.root).errors);
            match loose {
                Ok(errors) if !errors.is_empty() => Err(Error::Api {
                    op: op.name,
                    messages: messages(&errors),
                }),
                _ if !success => Err(status_error(op, status, body)),
                _ => Err(Error::Decode {
                    op: op.name,
                    detail: e.to_string(),
                }),
            }
        }
    }
}

fn status_error(op: &Op, code: u16, body: &str) -> Error {
    let body = body.trim();
    let cut = match body.char_indices().nth(BODY_IN_ERROR) {
        Some((at, _)) => format!("{}…", &body[..at]),
        None => body.to_string(),
    };
    Error::Status {
        op: op.name,
        code,
        body: cut,
    }
}

impl Platform for Client {
    fn kind(&self) -> PlatformKind {
        PlatformKind::OpenCti
    }

    fn version(&self) -> Result<String, Error> {
        let about: wire::AppInfo = self.call(&GET_VERSION, None::<()>)?;
        Ok(about.version)
    }

    fn register(&self) -> Result<(), Error> {
        let input = wire::RegisterConnectorsManagerInput {
            id: &self.manager_id,
            name: &self.manager_name,
            public_key: &self.public_key,
        };
        let manager: wire::ConnectorManager = self.call(&REGISTER, Some(Input { input }))?;
        log::info!(
            "registered on OpenCTI as connector manager {}",
            manager.id.as_deref().unwrap_or(&self.manager_id)
        );
        Ok(())
    }

    fn ping(&self) -> Result<String, Error> {
        let input = wire::UpdateConnectorManagerStatusInput {
            id: &self.manager_id,
        };
        let manager: wire::ConnectorManager = self.call(&PING, Some(Input { input }))?;
        manager.about_version.ok_or_else(|| Error::Decode {
            op: PING.name,
            detail: "no about_version in the answer".into(),
        })
    }

    fn list(&self) -> Result<Listing, Error> {
        let answer: Answer<Vec<Value>> = self.exchange(&GET_CONNECTORS, None::<()>)?;
        let Some(entries) = answer.root else {
            return Err(if answer.errors.is_empty() {
                null_root(&GET_CONNECTORS)
            } else {
                self.api_error(&GET_CONNECTORS, answer.errors)
            });
        };
        // D13: a list that came with errors is still served, but marked incomplete.
        let (connectors, mut problems) = wire::listing(entries);
        problems.extend(answer.errors.iter().map(|e| format!("platform error: {e}")));
        Ok(Listing {
            complete: problems.is_empty(),
            connectors,
            problems,
        })
    }

    fn report_status(&self, id: &str, status: Status) -> Result<(), Error> {
        let input = wire::CurrentConnectorStatusInput {
            id,
            status: status.as_str(),
        };
        // The returned connector is skipped unparsed: nothing of it is used.
        let _: IgnoredAny = self.call(&UPDATE_STATUS, Some(Input { input }))?;
        Ok(())
    }

    fn report_logs(&self, id: &str, lines: &[String]) -> Result<(), Error> {
        let input = wire::LogsConnectorStatusInput { id, logs: lines };
        let _: IgnoredAny = self.call(&REPORT_LOGS, Some(Input { input }))?;
        Ok(())
    }

    fn report_health(&self, id: &str, health: &Health) -> Result<(), Error> {
        let input = wire::HealthConnectorStatusInput {
            id,
            restart_count: health.restart_count,
            started_at: &health.started_at,
            is_in_reboot_loop: health.is_in_reboot_loop,
        };
        let _: IgnoredAny = self.call(&UPDATE_HEALTH, Some(Input { input }))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_never_doubles_the_slash() {
        assert_eq!(endpoint("http://o:4000"), "http://o:4000/graphql");
        assert_eq!(endpoint("http://o:4000/"), "http://o:4000/graphql");
        assert_eq!(endpoint("https://o/base//"), "https://o/base/graphql");
    }

    #[test]
    fn documents_end_with_one_newline_and_use_two_space_indent() {
        for (name, doc) in DOCUMENTS {
            assert!(doc.ends_with("}\n") && !doc.ends_with("\n\n"), "{name}");
            assert!(doc.contains(&format!(" {name}")), "{name}");
            for line in doc.lines() {
                let indent = line.len() - line.trim_start().len();
                assert_eq!(indent % 2, 0, "{name}: {line:?}");
                assert!(
                    !line.contains('\t') && !line.ends_with(' '),
                    "{name}: {line:?}"
                );
            }
        }
    }

    #[test]
    fn a_non_graphql_error_body_is_cut_in_the_message() {
        let long = "x".repeat(4000);
        let Err(Error::Status { code, body, .. }) = answer::<IgnoredAny>(&PING, 502, &long) else {
            panic!("expected a status error");
        };
        assert_eq!(code, 502);
        assert_eq!(body.chars().count(), BODY_IN_ERROR + 1);
        let err = answer::<IgnoredAny>(&PING, 500, "Internal Server Error").err();
        assert_eq!(
            err.map(|e| e.to_string()).as_deref(),
            Some("UpdateConnectorManagerStatus: server returned 500: Internal Server Error")
        );
    }

    #[test]
    fn a_graphql_body_on_a_non_2xx_status_is_read_as_graphql() {
        let body = r#"{"errors":[{"message":"You must be logged in"}],"data":null}"#;
        let a = answer::<IgnoredAny>(&GET_VERSION, 401, body).unwrap();
        assert_eq!(a.errors[0].message, "You must be logged in");
        assert!(a.root.is_none());
    }

    #[test]
    fn a_root_of_the_wrong_shape_keeps_its_errors() {
        let body = r#"{"errors":[{"message":"boom"}],"data":{"about":{"version":5}}}"#;
        let err = answer::<wire::AppInfo>(&GET_VERSION, 200, body).err();
        assert_eq!(
            err.map(|e| e.to_string()).as_deref(),
            Some("GetVersion: boom")
        );
        let err = answer::<wire::AppInfo>(&GET_VERSION, 200, r#"{"data":{"about":{"version":5}}}"#);
        assert!(matches!(err, Err(Error::Decode { .. })));
    }
}
