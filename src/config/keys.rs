//! The table of known configuration keys and their types (CONTRACT §7.2), and
//! the coercion of one merged value to its key's type: env text `"30"` becomes
//! the number 30, a list key accepts a list, a JSON array string or an indexed
//! map. Pure: no files, no env. A key absent from the table is unknown.

use serde_json::{Map, Number, Value};

use super::values::Parser;

/// The type of a configuration key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A mapping of further keys (`manager`, `opencti.daemon`, ...).
    Section,
    /// Text, kept verbatim (D25).
    Str,
    /// A word from a fixed list, compared without case: stored trimmed and
    /// lowercased (`LEVEL=DEBUG` worked with the existing composer).
    Word,
    Bool,
    /// Whole number ≥ 0 (seconds, counts).
    UInt,
    /// Whole number, may be negative (bytes, nano-CPUs, nanoseconds).
    Int,
    /// List of text (`https_proxy_ca`, `dns`, `cap_add`, ...).
    StrList,
    /// List of `{name, soft, hard}`.
    UlimitList,
    /// Mapping of text to text (`sysctls`).
    StrMap,
    /// Free-form mapping passed through as is (Kubernetes objects).
    Object,
    /// Text read by the parser of its type (pull policy, engine address, ...).
    Parsed(Parser),
    /// Documented by the existing composer but not implemented: accepted, ignored.
    Ignored,
}

use Kind::*;

/// One known key, relative to its top-level section.
pub(crate) struct Key {
    pub name: &'static str,
    pub kind: Kind,
    /// Required in §7.2: a warning names it when no file or env sets it.
    pub required: bool,
}

const fn key(name: &'static str, kind: Kind) -> Key {
    Key {
        name,
        kind,
        required: false,
    }
}

const fn req(name: &'static str, kind: Kind) -> Key {
    Key {
        name,
        kind,
        required: true,
    }
}

/// Top-level sections; environment variables apply only under these.
pub(crate) const TOP: [&str; 3] = ["manager", "opencti", "openaev"];

/// Platform sections (`{p}` in the contract).
pub(crate) const PLATFORMS: [&str; 2] = ["opencti", "openaev"];

/// `manager.*`
pub(crate) const MANAGER: &[Key] = &[
    req("id", Str),
    req("name", Str),
    req("execute_schedule", UInt),
    req("ping_alive_schedule", UInt),
    key("credentials_key", Str),
    key("credentials_key_filepath", Str),
    req("logger.level", Word),
    key("logger.format", Word),
    req("logger.directory", Bool),
    req("logger.console", Bool),
    key("logger.file", Str),
    key("debug.show_env_vars", Bool),
    key("debug.show_sensitive_env_vars", Bool),
    key("max_parallel", UInt),
    key("name_prefix", Str),
    key("removal_grace", UInt),
    key("crash_loop.stop_after", UInt),
    key("observability.listen", Str),
    key("observability.stale_after", UInt),
];

/// `{p}.*`, the same for `opencti` and `openaev`.
pub(crate) const PLATFORM: &[Key] = &[
    req("enable", Bool),
    req("url", Str),
    key("connector_url", Str),
    req("token", Str),
    req("unsecured_certificate", Bool),
    key("ca_file", Str),
    req("with_proxy", Bool),
    key("http_proxy", Str),
    key("https_proxy", Str),
    key("no_proxy", Str),
    key("https_proxy_ca", StrList),
    key("https_proxy_reject_unauthorized", Bool),
    req("logs_schedule", UInt),
    req("request_timeout", UInt),
    req("connect_timeout", UInt),
    key("tenant_id", Str),
    req("daemon.selector", Str),
    key("daemon.registry.server", Str),
    key("daemon.registry.username", Str),
    key("daemon.registry.password", Str),
    key("daemon.registry.email", Str),
    key("daemon.registry.token_ttl", Ignored),
    key("daemon.registry.retry_attempts", Ignored),
    key("daemon.registry.retry_delay", Ignored),
    key(
        "daemon.kubernetes.image_pull_policy",
        Parsed(Parser::KubernetesPull),
    ),
    key("daemon.kubernetes.base_deployment", Object),
    key(
        "daemon.kubernetes.base_deployment_json",
        Parsed(Parser::JsonObject),
    ),
    key("daemon.kubernetes.image_resources", Object),
    key("daemon.kubernetes.namespace", Str),
    key("daemon.kubernetes.plain_env", Bool),
    key("daemon.kubernetes.request_timeout", UInt),
    key("daemon.kubernetes.connect_timeout", UInt),
    key("daemon.portainer.api", Str),
    key("daemon.portainer.api_key", Str),
    key("daemon.portainer.env_id", Str),
    key("daemon.portainer.env_type", Str),
    key("daemon.portainer.api_version", Parsed(Parser::ApiVersion)),
    key("daemon.portainer.stack", Str),
    key("daemon.portainer.network_mode", Str),
    key("daemon.portainer.ca_file", Str),
    key("daemon.portainer.unsecured_certificate", Bool),
    key("daemon.docker.network_mode", Str),
    key("daemon.docker.extra_hosts", StrList),
    key("daemon.docker.dns", StrList),
    key("daemon.docker.dns_search", StrList),
    key("daemon.docker.privileged", Bool),
    key("daemon.docker.cap_add", StrList),
    key("daemon.docker.cap_drop", StrList),
    key("daemon.docker.security_opt", StrList),
    key("daemon.docker.userns_mode", Str),
    key("daemon.docker.pid_mode", Str),
    key("daemon.docker.ipc_mode", Str),
    key("daemon.docker.uts_mode", Str),
    key("daemon.docker.runtime", Str),
    key("daemon.docker.shm_size", Int),
    key("daemon.docker.sysctls", StrMap),
    key("daemon.docker.ulimits", UlimitList),
    key("daemon.docker.memory", Int),
    key("daemon.docker.nano_cpus", Int),
    key("daemon.docker.pull_policy", Parsed(Parser::Pull)),
    key("daemon.docker.restart_policy", Parsed(Parser::Restart)),
    key("daemon.docker.host", Parsed(Parser::Engine)),
    key("daemon.swarm.network", Str),
    key("daemon.swarm.extra_hosts", StrList),
    key("daemon.swarm.dns", StrList),
    key("daemon.swarm.dns_search", StrList),
    key("daemon.swarm.cap_add", StrList),
    key("daemon.swarm.cap_drop", StrList),
    key("daemon.swarm.sysctls", StrMap),
    key("daemon.swarm.ulimits", UlimitList),
    key("daemon.swarm.hostname", Str),
    key("daemon.swarm.user", Str),
    key("daemon.swarm.read_only", Bool),
    key("daemon.swarm.init", Bool),
    key("daemon.swarm.stop_grace_period", Int),
    key("daemon.swarm.resources.cpu_limit", Int),
    key("daemon.swarm.resources.memory_limit", Int),
    key("daemon.swarm.resources.cpu_reservation", Int),
    key("daemon.swarm.resources.memory_reservation", Int),
    key("daemon.swarm.placement_constraints", StrList),
    key("daemon.swarm.placement_preferences", StrList),
    key("daemon.swarm.restart_condition", Str),
    key("daemon.swarm.restart_delay", Int),
    key("daemon.swarm.restart_max_attempts", Int),
    key("daemon.swarm.pull_policy", Parsed(Parser::Pull)),
];

/// The table a dotted key belongs to, and the key relative to it.
fn table_of(path: &str) -> Option<(&'static [Key], &str)> {
    let (top, rest) = path.split_once('.')?;
    if top == "manager" {
        Some((MANAGER, rest))
    } else if PLATFORMS.contains(&top) {
        Some((PLATFORM, rest))
    } else {
        None
    }
}

/// The kind of a dotted key (`opencti.daemon.selector`), `None` when unknown.
pub(crate) fn kind_of(path: &str) -> Option<Kind> {
    if TOP.contains(&path) {
        return Some(Section);
    }
    let (table, rest) = table_of(path)?;
    if let Some(k) = table.iter().find(|k| k.name == rest) {
        return Some(k.kind);
    }
    let is_section = table.iter().any(|k| {
        k.name
            .strip_prefix(rest)
            .is_some_and(|tail| tail.starts_with('.'))
    });
    is_section.then_some(Section)
}

/// Every known key as `(dotted key, kind, required)`, platforms expanded.
pub(crate) fn all() -> impl Iterator<Item = (String, Kind, bool)> {
    let manager = MANAGER
        .iter()
        .map(|k| (format!("manager.{}", k.name), k.kind, k.required));
    let platforms = PLATFORMS.iter().flat_map(|p| {
        PLATFORM
            .iter()
            .map(move |k| (format!("{p}.{}", k.name), k.kind, k.required))
    });
    manager.chain(platforms)
}

/// One value that does not fit its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Bad {
    /// The key, or the list item / sub-key at fault (`...ulimits.1.soft`).
    pub key: String,
    pub value: Option<String>,
    pub problem: String,
    /// Only a warning: the value is dropped and the default stands in.
    pub warning: bool,
}

impl Bad {
    fn new(key: &str, value: &Value, problem: impl Into<String>) -> Self {
        Bad {
            key: key.to_string(),
            value: text_of(value),
            problem: problem.into(),
            warning: false,
        }
    }
}

/// A scalar as text, for messages; lists and mappings have none.
pub(crate) fn text_of(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Null | Value::Array(_) | Value::Object(_) => None,
    }
}

fn described(value: &Value) -> &'static str {
    match value {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "text",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

/// Converts a merged value to the type of its key, reporting every item at fault.
pub(crate) fn coerce(kind: Kind, key: &str, value: Value) -> Result<Value, Vec<Bad>> {
    let one = |r: Result<Value, Bad>| r.map_err(|b| vec![b]);
    match kind {
        Str => one(to_str(key, &value).map(Value::String)),
        Word => one(to_str(key, &value).map(|s| Value::String(s.trim().to_ascii_lowercase()))),
        Bool => one(to_bool(key, &value).map(Value::Bool)),
        UInt => one(to_uint(key, &value).map(|n| Value::Number(n.into()))),
        Int => one(to_int(key, &value).map(|n| Value::Number(n.into()))),
        StrList => to_str_list(key, value),
        UlimitList => to_ulimit_list(key, value),
        StrMap => to_str_map(key, value),
        Object => one(to_object(key, value)),
        Parsed(parser) => one(to_parsed(parser, key, &value)),
        Section | Ignored => Ok(value),
    }
}

/// The text of `value` through `parser`: what the settings deserialize.
fn to_parsed(parser: Parser, key: &str, value: &Value) -> Result<Value, Bad> {
    let text = to_str(key, value)?;
    parser.read(&text).map_err(|refused| Bad {
        key: key.to_string(),
        value: refused.shown.then_some(text),
        problem: refused.problem,
        warning: refused.warning,
    })
}

fn to_str(key: &str, value: &Value) -> Result<String, Bad> {
    match value {
        Value::String(s) => Ok(s.clone()),
        // YAML `env_id: 3` is a number to the parser but text to us.
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        other => Err(Bad::new(
            key,
            other,
            format!("expected a text value, got {}", described(other)),
        )),
    }
}

/// The existing composer's config library took `yes`/`no`, `on`/`off` and
/// `1`/`0` as booleans, in any case; a swap must not turn them into errors.
fn to_bool(key: &str, value: &Value) -> Result<bool, Bad> {
    let text = match value {
        Value::Bool(b) => return Ok(*b),
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.trim().to_ascii_lowercase(),
        _ => String::new(),
    };
    match text.as_str() {
        "true" | "yes" | "on" | "1" => Ok(true),
        "false" | "no" | "off" | "0" => Ok(false),
        _ => Err(Bad::new(
            key,
            value,
            "expected true or false (also yes/no, on/off, 1/0)",
        )),
    }
}

fn to_uint(key: &str, value: &Value) -> Result<u64, Bad> {
    let parsed = match value {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    };
    parsed.ok_or_else(|| Bad::new(key, value, "expected a whole number (0 or more)"))
}

fn to_int(key: &str, value: &Value) -> Result<i64, Bad> {
    let parsed = match value {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    };
    parsed.ok_or_else(|| Bad::new(key, value, "expected a whole number"))
}

/// Text that opens like JSON (`[`/`{`) is parsed as JSON; env can only give text.
fn parse_json_text(key: &str, text: &str, what: &str) -> Result<Value, Bad> {
    serde_json::from_str(text).map_err(|e| Bad {
        key: key.to_string(),
        value: None,
        problem: format!("looks like JSON but is not a valid JSON {what}: {e}"),
        warning: false,
    })
}

/// The items of a list key: a list, a JSON array string, an indexed map
/// (`KEY__0`, `KEY__1`, from env), or a single text (one entry; §5.5.2 allows
/// it for `https_proxy_ca`, we allow it for every list).
fn list_items(key: &str, value: Value) -> Result<Vec<Value>, Bad> {
    match value {
        Value::Array(items) => Ok(items),
        Value::String(s) if s.trim_start().starts_with('[') => {
            match parse_json_text(key, &s, "array")? {
                Value::Array(items) => Ok(items),
                _ => Err(Bad::new(key, &Value::String(s), "expected a JSON array")),
            }
        }
        Value::String(s) if s.trim().is_empty() => Ok(Vec::new()),
        Value::String(s) => Ok(vec![Value::String(s)]),
        Value::Object(map) => indexed(key, map),
        other => Err(Bad::new(
            key,
            &other,
            format!("expected a list, got {}", described(&other)),
        )),
    }
}

/// `{"0": a, "1": b}` → `[a, b]`, ordered by index.
fn indexed(key: &str, map: Map<String, Value>) -> Result<Vec<Value>, Bad> {
    let mut items = Vec::with_capacity(map.len());
    for (index, item) in map {
        let Ok(n) = index.parse::<usize>() else {
            return Err(Bad {
                key: format!("{key}.{index}"),
                value: None,
                problem:
                    "expected a list; indexed entries need numeric indexes (KEY__0, KEY__1, ...)"
                        .into(),
                warning: false,
            });
        };
        items.push((n, item));
    }
    items.sort_by_key(|(n, _)| *n);
    Ok(items.into_iter().map(|(_, item)| item).collect())
}

fn to_str_list(key: &str, value: Value) -> Result<Value, Vec<Bad>> {
    let items = list_items(key, value).map_err(|b| vec![b])?;
    let mut out = Vec::with_capacity(items.len());
    let mut bad = Vec::new();
    for (i, item) in items.iter().enumerate() {
        match to_str(&format!("{key}.{i}"), item) {
            Ok(s) => out.push(Value::String(s)),
            Err(b) => bad.push(b),
        }
    }
    if bad.is_empty() {
        Ok(Value::Array(out))
    } else {
        Err(bad)
    }
}

fn to_ulimit_list(key: &str, value: Value) -> Result<Value, Vec<Bad>> {
    let items = list_items(key, value).map_err(|b| vec![b])?;
    let mut out = Vec::with_capacity(items.len());
    let mut bad = Vec::new();
    for (i, item) in items.into_iter().enumerate() {
        let at = format!("{key}.{i}");
        let Value::Object(fields) = item else {
            bad.push(Bad::new(
                &at,
                &item,
                "expected a mapping {name, soft, hard}",
            ));
            continue;
        };
        let mut ulimit = Map::new();
        for (field, v) in fields {
            let sub = format!("{at}.{field}");
            let coerced = match field.as_str() {
                "name" => to_str(&sub, &v).map(Value::String),
                "soft" | "hard" => to_int(&sub, &v).map(|n| Value::Number(Number::from(n))),
                _ => continue,
            };
            match coerced {
                Ok(v) => {
                    ulimit.insert(field, v);
                }
                Err(b) => bad.push(b),
            }
        }
        out.push(Value::Object(ulimit));
    }
    if bad.is_empty() {
        Ok(Value::Array(out))
    } else {
        Err(bad)
    }
}

fn to_str_map(key: &str, value: Value) -> Result<Value, Vec<Bad>> {
    let map = match to_object(key, value).map_err(|b| vec![b])? {
        Value::Object(map) => map,
        _ => Map::new(),
    };
    let mut out = Map::new();
    let mut bad = Vec::new();
    for (name, v) in map {
        if v.is_null() {
            continue;
        }
        match to_str(&format!("{key}.{name}"), &v) {
            Ok(s) => {
                out.insert(name, Value::String(s));
            }
            Err(b) => bad.push(b),
        }
    }
    if bad.is_empty() {
        Ok(Value::Object(out))
    } else {
        Err(bad)
    }
}

fn to_object(key: &str, value: Value) -> Result<Value, Bad> {
    match value {
        Value::Object(map) => Ok(Value::Object(map)),
        Value::String(s) if s.trim_start().starts_with('{') => parse_json_text(key, &s, "object"),
        other => Err(Bad {
            key: key.to_string(),
            value: None,
            problem: format!(
                "expected a mapping (or a JSON object string), got {}",
                described(&other)
            ),
            warning: false,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Origin;
    use crate::config::files::test_support::{fixture, load_ok};
    use serde_json::json;

    #[test]
    fn known_keys_sections_and_unknown_keys_are_told_apart() {
        assert_eq!(kind_of("manager"), Some(Section));
        assert_eq!(kind_of("opencti.daemon"), Some(Section));
        assert_eq!(kind_of("openaev.daemon.swarm.resources"), Some(Section));
        assert_eq!(kind_of("opencti.daemon.selector"), Some(Str));
        assert_eq!(kind_of("openaev.https_proxy_ca"), Some(StrList));
        assert_eq!(kind_of("opencti.daemon.selctor"), None);
        assert_eq!(kind_of("opencti.dae"), None);
        assert_eq!(kind_of("other.url"), None);
    }

    #[test]
    fn string_keys_keep_text_verbatim() {
        assert_eq!(coerce(Str, "k", json!("0123")), Ok(json!("0123")));
        assert_eq!(coerce(Str, "k", json!(3)), Ok(json!("3")));
    }

    #[test]
    fn env_text_becomes_numbers_and_booleans() {
        assert_eq!(coerce(UInt, "k", json!("30")), Ok(json!(30)));
        assert_eq!(coerce(Int, "k", json!("-1")), Ok(json!(-1)));
        assert_eq!(coerce(Bool, "k", json!("TRUE")), Ok(json!(true)));
        assert_eq!(coerce(Bool, "k", json!("false")), Ok(json!(false)));
    }

    #[test]
    fn the_existing_composers_boolean_spellings_are_accepted_in_any_case() {
        for (text, want) in [
            ("yes", true),
            ("No", false),
            ("ON", true),
            ("off", false),
            ("1", true),
            (" 0 ", false),
            ("True", true),
        ] {
            assert_eq!(coerce(Bool, "k", json!(text)), Ok(json!(want)), "{text}");
        }
        assert_eq!(coerce(Bool, "k", json!(1)), Ok(json!(true)));
        assert_eq!(coerce(Bool, "k", json!(0)), Ok(json!(false)));
    }

    #[test]
    fn other_words_are_not_booleans() {
        for bad in [json!("maybe"), json!("y"), json!(2), json!("")] {
            let err = coerce(Bool, "opencti.enable", bad.clone()).unwrap_err();
            assert!(
                err[0].problem.starts_with("expected true or false"),
                "{bad}"
            );
        }
    }

    #[test]
    fn words_are_lowercased() {
        assert_eq!(coerce(Word, "k", json!("DEBUG")), Ok(json!("debug")));
        assert_eq!(coerce(Word, "k", json!(" Pretty ")), Ok(json!("pretty")));
    }

    #[test]
    fn negative_seconds_are_rejected() {
        assert!(coerce(UInt, "k", json!(-5)).is_err());
        assert!(coerce(UInt, "k", json!("ten")).is_err());
    }

    #[test]
    fn lists_accept_json_text_indexed_maps_and_single_text() {
        let want = json!(["/a.pem", "/b.pem"]);
        assert_eq!(
            coerce(StrList, "k", json!("[\"/a.pem\",\"/b.pem\"]")),
            Ok(want.clone())
        );
        assert_eq!(
            coerce(StrList, "k", json!({"1": "/b.pem", "0": "/a.pem"})),
            Ok(want.clone())
        );
        assert_eq!(coerce(StrList, "k", json!("/a.pem")), Ok(json!(["/a.pem"])));
        assert_eq!(coerce(StrList, "k", json!("")), Ok(json!([])));
        assert_eq!(coerce(StrList, "k", want.clone()), Ok(want));
    }

    #[test]
    fn indexed_maps_order_numerically() {
        let m = json!({"10": "c", "2": "b", "0": "a"});
        assert_eq!(coerce(StrList, "k", m), Ok(json!(["a", "b", "c"])));
    }

    #[test]
    fn broken_json_list_is_an_error() {
        let err = coerce(StrList, "k", json!("[\"/a.pem\"")).unwrap_err();
        assert!(err[0].problem.contains("JSON array"), "{err:?}");
    }

    #[test]
    fn ulimits_are_typed_and_every_bad_item_is_reported() {
        let v = json!({"0": {"name": "nofile", "soft": "65536", "hard": "65536"},
                       "1": {"name": "nproc", "soft": "many", "hard": "x"}});
        let err = coerce(UlimitList, "d.ulimits", v).unwrap_err();
        let keys: Vec<_> = err.iter().map(|b| b.key.as_str()).collect();
        assert_eq!(keys, ["d.ulimits.1.hard", "d.ulimits.1.soft"]);
        let ok = coerce(
            UlimitList,
            "d.ulimits",
            json!("[{\"name\":\"nofile\",\"soft\":1,\"hard\":2}]"),
        );
        assert_eq!(ok, Ok(json!([{"name": "nofile", "soft": 1, "hard": 2}])));
    }

    #[test]
    fn objects_accept_json_text_but_not_plain_text() {
        assert_eq!(
            coerce(Object, "k", json!("{\"a\": 1}")),
            Ok(json!({"a": 1}))
        );
        assert!(coerce(Object, "k", json!("a: 1")).is_err());
    }

    #[test]
    fn every_known_key_is_listed_once() {
        let mut keys: Vec<String> = all().map(|(k, _, _)| k).collect();
        let n = keys.len();
        keys.sort();
        keys.dedup();
        assert_eq!(keys.len(), n);
    }

    #[test]
    fn d25_numeric_looking_strings_stay_verbatim() {
        // D25: "string values never normalized" (existing: `0123` → `123`).
        let loaded = load_ok(
            &fixture("layered"),
            &[
                ("MANAGER__ID", "0123"),
                ("OPENCTI__DAEMON__PORTAINER__ENV_ID", "007"),
                ("OPENCTI__TOKEN", "1e3"),
            ],
        );
        let s = &loaded.settings;
        assert_eq!(s.manager.id, "0123");
        assert_eq!(
            s.opencti
                .daemon
                .portainer
                .as_ref()
                .unwrap()
                .env_id
                .as_deref(),
            Some("007")
        );
        assert_eq!(s.opencti.token.expose(), "1e3");
    }

    #[test]
    fn yaml_numbers_on_string_keys_become_text() {
        let loaded = load_ok(&fixture("layered"), &[]);
        let portainer = loaded.settings.opencti.daemon.portainer.unwrap();
        assert_eq!(portainer.env_id.as_deref(), Some("3"));
    }

    #[test]
    fn d25_list_keys_accept_a_json_array_from_env() {
        let loaded = load_ok(
            &fixture("layered"),
            &[
                ("OPENCTI__HTTPS_PROXY_CA", r#"["/a.pem","/b.pem"]"#),
                ("OPENCTI__DAEMON__DOCKER__CAP_ADD", r#"["NET_ADMIN"]"#),
                (
                    "OPENCTI__DAEMON__DOCKER__ULIMITS",
                    r#"[{"name":"nofile","soft":1024,"hard":2048}]"#,
                ),
            ],
        );
        let p = &loaded.settings.opencti;
        assert_eq!(p.https_proxy_ca, ["/a.pem", "/b.pem"]);
        let docker = p.daemon.docker.as_ref().unwrap();
        assert_eq!(docker.cap_add, ["NET_ADMIN"]);
        assert_eq!(docker.ulimits[0].hard, Some(2048));
        assert_eq!(docker.dns, ["1.1.1.1"]);
    }

    #[test]
    fn d25_list_keys_accept_indexed_variables_from_env() {
        let loaded = load_ok(
            &fixture("layered"),
            &[
                ("OPENCTI__HTTPS_PROXY_CA__1", "/b.pem"),
                ("OPENCTI__HTTPS_PROXY_CA__0", "/a.pem"),
                ("OPENCTI__DAEMON__DOCKER__DNS__0", "9.9.9.9"),
                ("OPENCTI__DAEMON__DOCKER__ULIMITS__0__NAME", "nofile"),
                ("OPENCTI__DAEMON__DOCKER__ULIMITS__0__SOFT", "1024"),
                ("OPENCTI__DAEMON__DOCKER__ULIMITS__0__HARD", "2048"),
                (
                    "OPENAEV__DAEMON__SWARM__PLACEMENT_CONSTRAINTS__0",
                    "node.role==worker",
                ),
            ],
        );
        let s = &loaded.settings;
        assert_eq!(s.opencti.https_proxy_ca, ["/a.pem", "/b.pem"]);
        let docker = s.opencti.daemon.docker.as_ref().unwrap();
        assert_eq!(docker.dns, ["9.9.9.9"]);
        let ulimit = &docker.ulimits[0];
        assert_eq!(
            (ulimit.name.as_deref(), ulimit.soft, ulimit.hard),
            (Some("nofile"), Some(1024), Some(2048))
        );
        let swarm = s.openaev.daemon.swarm.as_ref().unwrap();
        assert_eq!(swarm.placement_constraints, ["node.role==worker"]);
        assert_eq!(
            loaded.origin("opencti.https_proxy_ca.1"),
            Origin::Env("OPENCTI__HTTPS_PROXY_CA__1".into())
        );
    }

    #[test]
    fn https_proxy_ca_accepts_a_single_string_in_yaml() {
        let loaded = load_ok(&fixture("layered"), &[]);
        assert_eq!(
            loaded.settings.opencti.https_proxy_ca,
            ["/etc/ssl/base-ca.pem"]
        );
    }

    /// Two different values for `key`, both valid.
    fn samples(key: &str, kind: Kind) -> [&'static str; 2] {
        let last = key.rsplit('.').next().unwrap_or_default();
        match (kind, last) {
            (Str, "selector") => ["swarm", "docker"],
            (Word, "level") => ["debug", "warn"],
            (Word, "format") => ["pretty", "json"],
            (Str, "url" | "connector_url" | "api") => ["https://a.test", "http://b.test"],
            (Parsed(Parser::KubernetesPull), _) => ["Never", "Always"],
            (Parsed(Parser::Pull), _) => ["never", "always"],
            (Parsed(Parser::Restart), _) => ["on-failure:3", "always"],
            (Parsed(Parser::Engine), _) => ["tcp://127.0.0.1:2375", "unix:///run/docker.sock"],
            (Parsed(Parser::ApiVersion), _) => ["v1.44", "1.41"],
            (Parsed(Parser::JsonObject), _) => ["{\"a\": 1}", "{\"a\": 2}"],
            (Str, "restart_condition") => ["any", "none"],
            (Str, "listen") => ["127.0.0.1:9464", "[::1]:9465"],
            // Named files are checked at load: PEM that exists (inline for CAs).
            (Str, "ca_file") => [
                "-----BEGIN CERTIFICATE-----\nA\n-----END CERTIFICATE-----\n",
                "-----BEGIN CERTIFICATE-----\nB\n-----END CERTIFICATE-----\n",
            ],
            (Str, "credentials_key_filepath") => pem_files(),
            (Str | Word, _) => ["0123", "0124"],
            (Bool, _) => ["true", "false"],
            (UInt | Int, _) => ["7", "8"],
            (StrList, _) => ["[\"a\"]", "[\"b\"]"],
            (UlimitList, _) => [
                "[{\"name\":\"n\",\"soft\":1}]",
                "[{\"name\":\"n\",\"soft\":2}]",
            ],
            (StrMap, _) => ["{\"a\":\"b\"}", "{\"a\":\"c\"}"],
            (Object, _) => ["{\"a\":1}", "{\"a\":2}"],
            (Section | Ignored, _) => ["x", "y"],
        }
    }

    /// The keys documented in docs/configuration.md: the first cell of each table
    /// row, where a bare name (`retry_attempts`) is a sibling of the key before it.
    fn documented_keys() -> std::collections::BTreeSet<String> {
        let docs = include_str!("../../docs/configuration.md");
        let mut keys = std::collections::BTreeSet::new();
        for row in docs.lines().filter(|l| l.starts_with("| `")) {
            let first = row.split('|').nth(1).unwrap_or_default();
            let mut last = String::new();
            for token in first.split('`').skip(1).step_by(2) {
                let token = token
                    .replacen("opencti.", "{p}.", 1)
                    .replacen("openaev.", "{p}.", 1);
                let key = if token.starts_with("manager.") || token.starts_with("{p}.") {
                    token
                } else if let Some((parent, _)) = last.rsplit_once('.') {
                    format!("{parent}.{token}")
                } else {
                    continue;
                };
                last.clone_from(&key);
                keys.insert(key);
            }
        }
        keys
    }

    /// docs/configuration.md is a copy of the key table: it must name every key,
    /// and no key the table does not know (issue 14, "Structure").
    #[test]
    fn the_configuration_reference_documents_exactly_the_known_keys() {
        let known: std::collections::BTreeSet<String> = MANAGER
            .iter()
            .map(|k| format!("manager.{}", k.name))
            .chain(PLATFORM.iter().map(|k| format!("{{p}}.{}", k.name)))
            .collect();
        let documented = documented_keys();
        let undocumented: Vec<_> = known.difference(&documented).collect();
        let unknown: Vec<_> = documented.difference(&known).collect();
        assert!(
            undocumented.is_empty() && unknown.is_empty(),
            "not in docs/configuration.md: {undocumented:?}; documented but not known: {unknown:?}"
        );
    }

    /// Two PEM-looking key files, written once per test run.
    fn pem_files() -> [&'static str; 2] {
        ["a", "b"].map(|n| {
            let path =
                std::env::temp_dir().join(format!("xtm-keys-{}-{n}.pem", std::process::id()));
            std::fs::write(&path, "-----BEGIN PRIVATE KEY-----\n").unwrap();
            &*Box::leak(path.display().to_string().into_boxed_str())
        })
    }

    /// Guards the table against `Settings`: a key spelled differently in one
    /// of them would be silently dropped by serde (no `deny_unknown_fields`).
    #[test]
    fn every_known_key_reaches_its_settings_field_from_env() {
        // OpenAEV on, so that turning OpenCTI off still leaves a valid configuration.
        let dir = fixture("minimal");
        let on = ("OPENAEV__ENABLE", "true");
        for (key, kind, _) in all().filter(|(_, kind, _)| *kind != Ignored) {
            let name = key.replace('.', "__").to_uppercase();
            let [a, b] = samples(&key, kind).map(|v| load_ok(&dir, &[on, (&name, v)]));
            assert_ne!(
                a.settings, b.settings,
                "{key} from {name} did not reach Settings"
            );
            assert_eq!(a.origin(&key), Origin::Env(name.clone()));
        }
    }
}
