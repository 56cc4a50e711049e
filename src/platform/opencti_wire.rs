//! OpenCTI GraphQL wire types (CONTRACT §2.1–2.3; schema in tests/fixtures/opencti.graphql):
//! the request body, the operations' inputs, the response envelope and `ManagedConnector`.
//! Only the fields we use. Response fields are all optional so that one bad connector is
//! skipped with a reason instead of failing the listing (D13). Wire types stop here:
//! `listing` turns the raw `connectorsForManagers` entries into domain `Connector`s.

use std::collections::HashMap;
use std::fmt;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::platform::{ConfigEntry, Connector, Requested, Status};

/// The POST body: `{"query", "variables", "operationName"}`; `variables` is
/// serialized as `null` when absent, as the existing composer does (§2.1).
#[derive(Serialize)]
pub(crate) struct Request<'a, V> {
    pub query: &'a str,
    pub variables: Option<V>,
    #[serde(rename = "operationName")]
    pub operation_name: &'a str,
}

/// `{"input": ...}`, the only variable of every mutation.
#[derive(Serialize)]
pub(crate) struct Input<T> {
    pub input: T,
}

/// `RegisterConnectorsManagerInput`.
#[derive(Serialize)]
pub(crate) struct RegisterConnectorsManagerInput<'a> {
    pub id: &'a str,
    pub name: &'a str,
    pub public_key: &'a str,
}

/// `UpdateConnectorManagerStatusInput`.
#[derive(Serialize)]
pub(crate) struct UpdateConnectorManagerStatusInput<'a> {
    pub id: &'a str,
}

/// `CurrentConnectorStatusInput`; `status` is a `ConnectorCurrentStatus` value.
#[derive(Serialize)]
pub(crate) struct CurrentConnectorStatusInput<'a> {
    pub id: &'a str,
    pub status: &'a str,
}

/// `LogsConnectorStatusInput`.
#[derive(Serialize)]
pub(crate) struct LogsConnectorStatusInput<'a> {
    pub id: &'a str,
    pub logs: &'a [String],
}

/// `HealthConnectorStatusInput` (snake_case fields, `started_at: String!`).
#[derive(Serialize)]
pub(crate) struct HealthConnectorStatusInput<'a> {
    pub id: &'a str,
    pub restart_count: u32,
    pub started_at: &'a str,
    pub is_in_reboot_loop: bool,
}

/// `{"data": {<root>: T | null} | null, "errors": [...]}`.
#[derive(Deserialize)]
pub(crate) struct Envelope<T> {
    #[serde(default = "none")]
    data: Option<HashMap<String, Option<T>>>,
    #[serde(default)]
    errors: Option<Vec<GraphQlError>>,
}

fn none<T>() -> Option<T> {
    None
}

/// What a GraphQL answer carried for one root field.
pub(crate) struct Answer<T> {
    pub root: Option<T>,
    pub errors: Vec<GraphQlError>,
}

impl<T: DeserializeOwned> Envelope<T> {
    /// True when the body looks like a GraphQL response at all.
    pub fn is_graphql(&self) -> bool {
        self.data.is_some() || self.errors.as_ref().is_some_and(|e| !e.is_empty())
    }

    /// The value of `root` and the errors.
    pub fn into_answer(self, root: &str) -> Answer<T> {
        Answer {
            root: self.data.and_then(|mut d| d.remove(root)).flatten(),
            errors: self.errors.unwrap_or_default(),
        }
    }
}

/// One entry of `errors`.
#[derive(Debug, Deserialize, Default)]
#[serde(default)]
pub(crate) struct GraphQlError {
    pub message: String,
    pub path: Option<Vec<Value>>,
    pub extensions: Option<Extensions>,
}

/// `errors[].extensions`: only the code is used.
#[derive(Debug, Deserialize, Default)]
#[serde(default)]
pub(crate) struct Extensions {
    pub code: Option<String>,
}

impl fmt::Display for GraphQlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if let Some(path) = self.path.as_ref().filter(|p| !p.is_empty()) {
            let parts: Vec<String> = path
                .iter()
                .map(|p| match p {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect();
            write!(f, " (at {})", parts.join("."))?;
        }
        if let Some(code) = self.extensions.as_ref().and_then(|e| e.code.as_deref()) {
            write!(f, " [{code}]")?;
        }
        Ok(())
    }
}

/// `{"about": {"version"}}`.
#[derive(Deserialize)]
pub(crate) struct AppInfo {
    pub version: String,
}

/// The `ConnectorManager` fields the register and ping mutations select.
#[derive(Deserialize)]
pub(crate) struct ConnectorManager {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub about_version: Option<String>,
}

/// `ManagedConnector`, every field optional so a bad entry can be named and skipped.
#[derive(Deserialize, Default)]
#[serde(default)]
struct ManagedConnector {
    id: Option<String>,
    name: Option<String>,
    manager_contract_hash: Option<String>,
    manager_contract_image: Option<String>,
    manager_current_status: Option<String>,
    manager_requested_status: Option<String>,
    manager_contract_configuration: Option<Vec<Option<ConnectorContractConfiguration>>>,
}

/// `ConnectorContractConfiguration`.
#[derive(Deserialize, Default)]
#[serde(default)]
struct ConnectorContractConfiguration {
    key: Option<String>,
    value: Option<String>,
    encrypted: Option<bool>,
}

/// Turns raw `connectorsForManagers` entries into connectors, one by one. Each
/// entry that cannot be used is skipped with a line naming its position, its id
/// when it has one, and the field at fault.
pub(crate) fn listing(entries: Vec<Value>) -> (Vec<Connector>, Vec<String>) {
    let mut connectors = Vec::with_capacity(entries.len());
    let mut problems = Vec::new();
    for (index, raw) in entries.into_iter().enumerate() {
        let label = match raw.get("id").and_then(Value::as_str) {
            Some(id) => format!("connector {index} (id {id})"),
            None => format!("connector {index}"),
        };
        let parsed = serde_json::from_value::<Option<ManagedConnector>>(raw)
            .map_err(|e| format!("unreadable: {e}"))
            .and_then(|c| c.ok_or_else(|| "null entry".to_string()))
            .and_then(connector);
        match parsed {
            Ok(c) => connectors.push(c),
            Err(why) => problems.push(format!("{label} skipped: {why}")),
        }
    }
    (connectors, problems)
}

fn connector(w: ManagedConnector) -> Result<Connector, String> {
    let required = |v: Option<String>, field: &str| match v {
        Some(s) if !s.is_empty() => Ok(s),
        Some(_) => Err(format!("{field} is empty")),
        None => Err(format!("{field} is missing or null")),
    };
    let id = required(w.id, "id")?;
    let name = required(w.name, "name")?;
    let image = required(w.manager_contract_image, "manager_contract_image")?;
    let contract_hash = w
        .manager_contract_hash
        .ok_or("manager_contract_hash is missing or null")?;
    let requested = w
        .manager_requested_status
        .ok_or("manager_requested_status is missing or null")?;
    let entries = w
        .manager_contract_configuration
        .ok_or("manager_contract_configuration is missing or null")?;
    let mut config = Vec::with_capacity(entries.len());
    for (i, entry) in entries.into_iter().enumerate() {
        let entry = entry.ok_or(format!("manager_contract_configuration[{i}] is null"))?;
        let key = entry.key.filter(|k| !k.is_empty()).ok_or(format!(
            "manager_contract_configuration[{i}].key is missing"
        ))?;
        config.push(ConfigEntry {
            key,
            value: entry.value,
            encrypted: entry.encrypted.unwrap_or(false),
        });
    }
    Ok(Connector {
        id,
        name,
        image,
        contract_hash,
        current_status: Status::parse(w.manager_current_status.as_deref()),
        requested: Requested::parse(&requested),
        config,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn entry(id: &str) -> Value {
        json!({
            "id": id, "name": "misp", "manager_contract_hash": "h1",
            "manager_contract_image": "opencti/connector-misp:6.8.0",
            "manager_current_status": null, "manager_requested_status": "starting",
            "manager_contract_configuration": [
                {"key": "MISP_URL", "value": "http://misp", "encrypted": null},
                {"key": "MISP_KEY", "value": "AAAA", "encrypted": true},
                {"key": "EMPTY", "value": null, "encrypted": false}
            ]
        })
    }

    #[test]
    fn a_full_entry_becomes_a_connector() {
        let (connectors, problems) = listing(vec![entry("c1")]);
        assert!(problems.is_empty(), "{problems:?}");
        let c = &connectors[0];
        assert_eq!((c.id.as_str(), c.name.as_str()), ("c1", "misp"));
        assert_eq!(c.image, "opencti/connector-misp:6.8.0");
        assert_eq!(c.contract_hash, "h1");
        assert_eq!(c.current_status, None);
        assert_eq!(c.requested, Requested::Starting);
        let flags: Vec<_> = c.config.iter().map(|e| e.encrypted).collect();
        assert_eq!(flags, [false, true, false]);
        assert_eq!(c.config[2].value, None);
    }

    #[test]
    fn each_bad_entry_is_skipped_with_its_id_and_field() {
        let mut no_image = entry("c2");
        no_image
            .as_object_mut()
            .unwrap()
            .remove("manager_contract_image");
        let mut null_name = entry("c3");
        null_name["name"] = Value::Null;
        let mut bad_key = entry("c4");
        bad_key["manager_contract_configuration"][1]["key"] = Value::Null;
        let mut wrong_type = entry("c5");
        wrong_type["manager_requested_status"] = json!(5);
        let entries = vec![
            entry("c1"),
            no_image,
            null_name,
            bad_key,
            wrong_type,
            Value::Null,
            json!({"name": "x"}),
        ];
        let (connectors, problems) = listing(entries);
        assert_eq!(connectors.len(), 1);
        assert_eq!(
            problems[..4],
            [
                "connector 1 (id c2) skipped: manager_contract_image is missing or null",
                "connector 2 (id c3) skipped: name is missing or null",
                "connector 3 (id c4) skipped: manager_contract_configuration[1].key is missing",
                "connector 4 (id c5) skipped: unreadable: invalid type: integer `5`, expected a string",
            ]
        );
        assert_eq!(problems[4], "connector 5 skipped: null entry");
        assert_eq!(problems[5], "connector 6 skipped: id is missing or null");
    }

    #[test]
    fn graphql_errors_show_path_and_code() {
        let e: GraphQlError = serde_json::from_value(json!({
            "message": "Cannot return null", "path": ["connectorsForManagers", 3, "name"],
            "extensions": {"code": "INTERNAL_SERVER_ERROR"}
        }))
        .unwrap();
        assert_eq!(
            e.to_string(),
            "Cannot return null (at connectorsForManagers.3.name) [INTERNAL_SERVER_ERROR]"
        );
    }

    #[test]
    fn requests_serialize_as_the_contract_says() {
        let body = Request::<()> {
            query: "query GetVersion {\n  about {\n    version\n  }\n}\n",
            variables: None,
            operation_name: "GetVersion",
        };
        assert_eq!(
            serde_json::to_string(&body).unwrap(),
            r#"{"query":"query GetVersion {\n  about {\n    version\n  }\n}\n","variables":null,"operationName":"GetVersion"}"#
        );
        let health = Input {
            input: HealthConnectorStatusInput {
                id: "c1",
                restart_count: 2,
                started_at: "2026-01-02T03:04:05Z",
                is_in_reboot_loop: false,
            },
        };
        assert_eq!(
            serde_json::to_value(&health).unwrap(),
            json!({"input": {"id": "c1", "restart_count": 2,
                "started_at": "2026-01-02T03:04:05Z", "is_in_reboot_loop": false}})
        );
    }
}
