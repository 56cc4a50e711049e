//! OpenAEV REST wire types (CONTRACT §3.2, §3.3; the `/api/xtm-composer` endpoints of the
//! OpenAEV API): request bodies with their snake_case keys, the register/ping answer and
//! `XtmComposerInstanceOutput`. Only the fields we use. Instance fields are all optional so
//! that one bad instance is skipped with a reason instead of failing the listing (D13).
//! Wire types stop here: `listing` turns the raw array into domain `Connector`s.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::platform::{ConfigEntry, Connector, Requested, Status};

/// `POST /api/xtm-composer/register` body; all three are `@NotBlank` on the platform.
#[derive(Serialize)]
pub(crate) struct XtmComposerRegisterInput<'a> {
    pub id: &'a str,
    pub name: &'a str,
    /// SPKI PEM (`BEGIN PUBLIC KEY`): the platform parses it as X.509 (§4.6).
    pub public_key: &'a str,
}

/// The answer of register and ping.
#[derive(Deserialize, Default)]
#[serde(default)]
pub(crate) struct XtmComposerOutput {
    pub xtm_composer_id: Option<String>,
    /// At ping: the platform version stored at registration time (§3.2).
    pub xtm_composer_version: Option<String>,
}

/// `PUT .../connector-instances/{id}/status` body.
#[derive(Serialize)]
pub(crate) struct ConnectorInstanceStatusInput<'a> {
    /// `started` or `stopped`.
    pub connector_instance_current_status: &'a str,
}

/// `POST .../connector-instances/{id}/logs` body. The platform reads a `Set<String>`.
#[derive(Serialize)]
pub(crate) struct ConnectorInstanceLogsInput<'a> {
    pub connector_instance_logs: &'a [String],
}

/// `PUT .../connector-instances/{id}/health-check` body; the platform reads the
/// instant as a `java.time.Instant`.
#[derive(Serialize)]
pub(crate) struct ConnectorInstanceHealthInput<'a> {
    pub connector_instance_restart_count: u32,
    pub connector_instance_started_at: &'a str,
    pub connector_instance_is_in_reboot_loop: bool,
}

/// `XtmComposerInstanceOutput`, serialised by the platform with `NON_NULL`
/// inclusion: an absent field is a null one.
#[derive(Deserialize, Default)]
#[serde(default)]
struct XtmComposerInstanceOutput {
    connector_instance_id: Option<String>,
    connector_instance_name: Option<String>,
    connector_instance_hash: Option<String>,
    connector_image: Option<String>,
    connector_instance_current_status: Option<String>,
    connector_instance_requested_status: Option<String>,
    connector_instance_configurations: Option<Vec<Option<ConnectorInstanceConfiguration>>>,
}

/// One entry of `connector_instance_configurations`.
#[derive(Deserialize, Default)]
#[serde(default)]
struct ConnectorInstanceConfiguration {
    configuration_key: Option<String>,
    configuration_value: Option<String>,
    configuration_is_encrypted: Option<bool>,
}

/// Turns the raw array of instances into connectors, one by one (D13). Each
/// entry that cannot be used is skipped with a line naming its position, its id
/// when it has one, and the field at fault. Configuration entries keep the order
/// they came in: that order is not stable between listings (§3.3), so nothing
/// downstream may compare it by position; the instance hash is the marker.
pub(crate) fn listing(entries: Vec<Value>) -> (Vec<Connector>, Vec<String>) {
    let mut connectors = Vec::with_capacity(entries.len());
    let mut problems = Vec::new();
    for (index, raw) in entries.into_iter().enumerate() {
        let label = match raw.get("connector_instance_id").and_then(Value::as_str) {
            Some(id) => format!("instance {index} (id {id})"),
            None => format!("instance {index}"),
        };
        let parsed = serde_json::from_value::<Option<XtmComposerInstanceOutput>>(raw)
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

fn required(value: Option<String>, field: &str) -> Result<String, String> {
    match value {
        Some(s) if !s.trim().is_empty() => Ok(s),
        Some(_) => Err(format!("{field} is empty")),
        None => Err(format!("{field} is missing or null")),
    }
}

fn connector(w: XtmComposerInstanceOutput) -> Result<Connector, String> {
    let id = required(w.connector_instance_id, "connector_instance_id")?;
    let name = required(w.connector_instance_name, "connector_instance_name")?;
    let contract_hash = required(w.connector_instance_hash, "connector_instance_hash")?;
    let image = required(w.connector_image, "connector_image")?;
    let requested = required(
        w.connector_instance_requested_status,
        "connector_instance_requested_status",
    )?;
    // NON_NULL inclusion: an instance without configuration omits the list.
    let entries = w.connector_instance_configurations.unwrap_or_default();
    let mut config = Vec::with_capacity(entries.len());
    for (i, entry) in entries.into_iter().enumerate() {
        let field = format!("connector_instance_configurations[{i}]");
        let entry = entry.ok_or(format!("{field} is null"))?;
        let key = entry
            .configuration_key
            .filter(|k| !k.is_empty())
            .ok_or(format!("{field}.configuration_key is missing"))?;
        config.push(ConfigEntry {
            key,
            value: entry.configuration_value,
            encrypted: entry.configuration_is_encrypted.unwrap_or(false),
        });
    }
    Ok(Connector {
        id,
        name,
        image,
        contract_hash,
        // Absent in old data: read as stopped (§3.3, §8.1).
        current_status: Status::parse(w.connector_instance_current_status.as_deref()),
        requested: Requested::parse(&requested),
        config,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn instance(id: &str) -> Value {
        json!({
            "connector_instance_id": id,
            "connector_instance_name": "Nmap",
            "connector_instance_hash": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
            "connector_image": "openaev/injector-nmap:2.4.0",
            "connector_instance_current_status": "started",
            "connector_instance_requested_status": "starting",
            "connector_instance_configurations": [
                {"configuration_key": "OPENAEV_TOKEN", "configuration_value": "clear",
                 "configuration_is_encrypted": false},
                {"configuration_key": "SECRET", "configuration_value": "AQID",
                 "configuration_is_encrypted": true},
                {"configuration_key": "NO_VALUE", "configuration_is_encrypted": false},
                {"configuration_key": "NULL_VALUE", "configuration_value": null},
            ]
        })
    }

    #[test]
    fn a_full_instance_becomes_a_connector() {
        let (connectors, problems) = listing(vec![instance("i1")]);
        assert!(problems.is_empty(), "{problems:?}");
        let c = &connectors[0];
        assert_eq!((c.id.as_str(), c.name.as_str()), ("i1", "Nmap"));
        assert_eq!(c.image, "openaev/injector-nmap:2.4.0");
        assert!(c.contract_hash.starts_with("9f86d0"));
        assert_eq!(c.current_status, Some(Status::Started));
        assert_eq!(c.requested, Requested::Starting);
        let keys: Vec<_> = c.config.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(keys, ["OPENAEV_TOKEN", "SECRET", "NO_VALUE", "NULL_VALUE"]);
        let flags: Vec<_> = c.config.iter().map(|e| e.encrypted).collect();
        assert_eq!(flags, [false, true, false, false]);
        assert_eq!(c.config[0].value.as_deref(), Some("clear"));
        assert_eq!((&c.config[2].value, &c.config[3].value), (&None, &None));
    }

    #[test]
    fn absent_current_status_and_configurations_are_unreported_and_empty() {
        let mut i = instance("i1");
        let o = i.as_object_mut().unwrap();
        o.remove("connector_instance_current_status");
        o.remove("connector_instance_configurations");
        let (connectors, problems) = listing(vec![i]);
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(connectors[0].current_status, None);
        assert!(connectors[0].config.is_empty());
    }

    #[test]
    fn each_bad_instance_is_skipped_with_its_id_and_field() {
        let without = |id: &str, field: &str| {
            let mut i = instance(id);
            i.as_object_mut().unwrap().remove(field);
            i
        };
        let mut blank_name = instance("i7");
        blank_name["connector_instance_name"] = json!(" ");
        let mut bad_key = instance("i8");
        bad_key["connector_instance_configurations"][1]["configuration_key"] = Value::Null;
        let mut wrong_type = instance("i9");
        wrong_type["connector_instance_configurations"][0]["configuration_value"] = json!(5);
        let entries = vec![
            instance("i1"),
            without("i2", "connector_image"),
            without("i3", "connector_instance_hash"),
            without("i4", "connector_instance_requested_status"),
            without("i5", "connector_instance_name"),
            without("i6", "connector_instance_id"),
            blank_name,
            bad_key,
            wrong_type,
            Value::Null,
            json!("text"),
        ];
        let (connectors, problems) = listing(entries);
        assert_eq!(connectors.len(), 1);
        assert_eq!(
            problems[..8],
            [
                "instance 1 (id i2) skipped: connector_image is missing or null",
                "instance 2 (id i3) skipped: connector_instance_hash is missing or null",
                "instance 3 (id i4) skipped: connector_instance_requested_status is missing or null",
                "instance 4 (id i5) skipped: connector_instance_name is missing or null",
                "instance 5 skipped: connector_instance_id is missing or null",
                "instance 6 (id i7) skipped: connector_instance_name is empty",
                "instance 7 (id i8) skipped: connector_instance_configurations[1].configuration_key is missing",
                "instance 8 (id i9) skipped: unreadable: invalid type: integer `5`, expected a string",
            ]
        );
        assert_eq!(problems[8], "instance 9 skipped: null entry");
        assert!(problems[9].starts_with("instance 10 skipped: unreadable: "));
    }

    #[test]
    fn request_bodies_use_the_contract_keys() {
        let register = XtmComposerRegisterInput {
            id: "m1",
            name: "Composer",
            public_key: "-----BEGIN PUBLIC KEY-----\n",
        };
        assert_eq!(
            serde_json::to_string(&register).unwrap(),
            r#"{"id":"m1","name":"Composer","public_key":"-----BEGIN PUBLIC KEY-----\n"}"#
        );
        let status = ConnectorInstanceStatusInput {
            connector_instance_current_status: "started",
        };
        assert_eq!(
            serde_json::to_string(&status).unwrap(),
            r#"{"connector_instance_current_status":"started"}"#
        );
        let lines = vec!["a".to_string(), "b".to_string()];
        let logs = ConnectorInstanceLogsInput {
            connector_instance_logs: &lines,
        };
        assert_eq!(
            serde_json::to_string(&logs).unwrap(),
            r#"{"connector_instance_logs":["a","b"]}"#
        );
        let health = ConnectorInstanceHealthInput {
            connector_instance_restart_count: 4,
            connector_instance_started_at: "2025-01-19T16:27:31.123456789Z",
            connector_instance_is_in_reboot_loop: true,
        };
        assert_eq!(
            serde_json::to_string(&health).unwrap(),
            r#"{"connector_instance_restart_count":4,"connector_instance_started_at":"2025-01-19T16:27:31.123456789Z","connector_instance_is_in_reboot_loop":true}"#
        );
    }

    #[test]
    fn the_register_answer_tolerates_missing_fields() {
        let full: XtmComposerOutput = serde_json::from_str(
            r#"{"xtm_composer_id":"m1","xtm_composer_version":"2.4.0","other":1}"#,
        )
        .unwrap();
        assert_eq!(full.xtm_composer_id.as_deref(), Some("m1"));
        assert_eq!(full.xtm_composer_version.as_deref(), Some("2.4.0"));
        let empty: XtmComposerOutput = serde_json::from_str("{}").unwrap();
        assert!(empty.xtm_composer_version.is_none());
    }
}
