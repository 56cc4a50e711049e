//! What the composer writes into the cluster: the Deployment of a connector
//! (CONTRACT §6.3 body, merged into `base_deployment`), its refresh patch, and the
//! bodies of the three Secrets (registry pull secret, proxy CA, connector env).
//! Pure: no I/O. Invariant: a sensitive env value appears only in the env
//! Secret, never in a Deployment, unless `plain_env` asks for it (D23).

use std::collections::BTreeMap;

use base64::Engine as _;
use serde_json::{Map, Value, json};

use super::wire;
use crate::names::MAX_NAME;
use crate::orchestrator::{
    EnvValue, Error, HASH_MARKER, LABEL_CONNECTOR, LABEL_MANAGER, LABEL_PLATFORM, Spec,
};
use crate::secret::Secret;

/// Volume and mount of the proxy CA bundle (§5.5.2, kept exactly).
pub(crate) const PROXY_CA_VOLUME: &str = "proxy-ca-cert";
pub(crate) const PROXY_CA_KEY: &str = "ca.crt";

/// The per-platform choices that shape every Deployment.
#[derive(Debug, Clone)]
pub(crate) struct Shape {
    pub manager_id: String,
    /// `Always` | `IfNotPresent` | `Never`.
    pub pull_policy: String,
    pub resources: Option<Value>,
    /// A checked `base_deployment` (an object).
    pub base: Option<Value>,
    /// Name of the pull secret, when registry credentials are set.
    pub pull_secret: Option<String>,
    /// A proxy CA bundle is delivered.
    pub proxy_ca: bool,
    /// Decrypted values go into the Deployment env (existing behaviour).
    pub plain_env: bool,
}

/// `{name}-proxy-ca`, cut to 63 characters as the existing composer does, minus
/// a trailing `-` the cut may leave (an invalid name).
pub(crate) fn proxy_ca_secret_name(name: &str) -> String {
    let full = format!("{name}-proxy-ca");
    // Workload names are ASCII, but a cut at a byte offset must still never
    // split a character (issue 12).
    let mut end = full.len().min(MAX_NAME);
    while !full.is_char_boundary(end) {
        end -= 1;
    }
    full[..end].trim_end_matches('-').to_string()
}

/// `{name}-env`: the Secret holding a connector's decrypted values. Secret names
/// may be 253 characters long, so no cut is needed.
pub(crate) fn env_secret_name(name: &str) -> String {
    format!("{name}-env")
}

/// The pull secret's name: the registry server lowercased, every run of other
/// characters than ASCII letters and digits turned into one `-`.
pub(crate) fn pull_secret_name(server: &str) -> String {
    let mut out = String::with_capacity(server.len());
    for c in server.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    let slug = out.trim_matches('-');
    let slug = &slug[..slug.len().min(MAX_NAME)];
    match slug.trim_end_matches('-') {
        "" => "registry".into(),
        s => s.to_string(),
    }
}

/// `{server}/{image}` unless the image already starts with `{server}/` (§5.6).
pub(crate) fn image_ref(server: Option<&str>, image: &str) -> String {
    match server
        .map(|s| s.trim_end_matches('/'))
        .filter(|s| !s.is_empty())
    {
        Some(s) if !image.starts_with(&format!("{s}/")) => format!("{s}/{image}"),
        _ => image.to_string(),
    }
}

/// The Secret key of an env var: its own name when it is a valid key
/// (`[-._a-zA-Z0-9]+`), else one made from its position.
pub(crate) fn secret_key(env_name: &str, index: usize) -> String {
    let valid = !env_name.is_empty()
        && env_name.len() <= 253
        && env_name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'));
    if valid {
        env_name.to_string()
    } else {
        format!("env-{index}")
    }
}

/// The sensitive values of `spec`, by Secret key; empty with `plain_env`.
pub(crate) fn env_secret_data(spec: &Spec, shape: &Shape) -> BTreeMap<String, Secret> {
    if shape.plain_env {
        return BTreeMap::new();
    }
    spec.env
        .iter()
        .enumerate()
        .filter_map(|(i, e)| match &e.value {
            EnvValue::Sensitive(s) => Some((secret_key(&e.key, i), s.clone())),
            EnvValue::Plain(_) => None,
        })
        .collect()
}

/// The three ownership labels.
fn labels<'a>(spec: &'a Spec, manager_id: &'a str) -> BTreeMap<&'static str, &'a str> {
    BTreeMap::from([
        (LABEL_CONNECTOR, spec.connector_id.as_str()),
        (LABEL_MANAGER, manager_id),
        (LABEL_PLATFORM, spec.platform.as_str()),
    ])
}

/// The pod template labels a Deployment of this connector gets: the base's
/// template labels, then the three ownership labels over them.
pub(crate) fn template_labels(
    shape: &Shape,
    connector_id: &str,
    platform: &str,
) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> = shape
        .base
        .as_ref()
        .and_then(|b| b.pointer("/spec/template/metadata/labels"))
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string())))
                .collect()
        })
        .unwrap_or_default();
    out.insert(LABEL_CONNECTOR.into(), connector_id.into());
    out.insert(LABEL_MANAGER.into(), shape.manager_id.clone());
    out.insert(LABEL_PLATFORM.into(), platform.into());
    out
}

/// The Deployment of `spec`, as the §6.3 body, merged into the base when one is set.
///
/// # Errors
/// The body cannot be turned into JSON (does not happen with these types).
pub(crate) fn deployment(spec: &Spec, shape: &Shape, image: &str) -> Result<Value, Error> {
    let secret_name = env_secret_name(&spec.name);
    let env = spec
        .env
        .iter()
        .enumerate()
        .map(|(i, e)| match &e.value {
            EnvValue::Sensitive(_) if !shape.plain_env => wire::EnvVar {
                name: &e.key,
                value: None,
                value_from: Some(wire::EnvVarSource {
                    secret_key_ref: wire::SecretKeySelector {
                        name: secret_name.clone(),
                        key: secret_key(&e.key, i),
                    },
                }),
            },
            v => wire::EnvVar {
                name: &e.key,
                value: Some(v.expose()),
                value_from: None,
            },
        })
        .collect();
    let ca_secret = proxy_ca_secret_name(&spec.name);
    let (mounts, volumes) = if shape.proxy_ca {
        let mount = wire::VolumeMount {
            mount_path: crate::env::PROXY_CA_PATH,
            name: PROXY_CA_VOLUME,
            read_only: true,
            sub_path: PROXY_CA_KEY,
        };
        let volume = wire::Volume {
            name: PROXY_CA_VOLUME,
            secret: wire::SecretVolumeSource {
                secret_name: &ca_secret,
            },
        };
        (vec![mount], vec![volume])
    } else {
        (Vec::new(), Vec::new())
    };
    let body = wire::NewDeployment {
        api_version: "apps/v1",
        kind: "Deployment",
        metadata: wire::NewDeploymentMeta {
            annotations: BTreeMap::from([(HASH_MARKER, spec.hash.as_str())]),
            labels: labels(spec, &shape.manager_id),
            name: &spec.name,
        },
        spec: wire::NewDeploymentSpec {
            replicas: i32::from(spec.start),
            selector: wire::NewSelector {
                match_labels: labels(spec, &shape.manager_id),
            },
            template: wire::NewTemplate {
                metadata: wire::NewTemplateMeta {
                    labels: labels(spec, &shape.manager_id),
                },
                spec: wire::NewPodSpec {
                    containers: vec![wire::NewContainer {
                        env,
                        image,
                        image_pull_policy: &shape.pull_policy,
                        name: &spec.name,
                        resources: shape.resources.as_ref(),
                        volume_mounts: mounts,
                    }],
                    image_pull_secrets: shape
                        .pull_secret
                        .iter()
                        .map(|n| wire::NameRef { name: n })
                        .collect(),
                    volumes,
                },
            },
        },
    };
    let generated = serde_json::to_value(&body).map_err(|e| Error::Decode {
        op: "build deployment",
        detail: e.to_string(),
    })?;
    Ok(match &shape.base {
        Some(base) => merge_into_base(base.clone(), generated, spec, &shape.manager_id),
        None => generated,
    })
}

/// The refresh merge patch: the whole Deployment without `spec.selector` (never
/// patched, §6.3), and `null` for the pod-spec lists we own but no longer use,
/// since a merge patch keeps what it does not mention.
pub(crate) fn refresh_patch(mut full: Value) -> Value {
    if let Some(spec) = full.get_mut("spec").and_then(Value::as_object_mut) {
        spec.remove("selector");
    }
    if let Some(pod) = full
        .pointer_mut("/spec/template/spec")
        .and_then(Value::as_object_mut)
    {
        for key in ["imagePullSecrets", "volumes"] {
            pod.entry(key).or_insert(Value::Null);
        }
    }
    full
}

/// Checks a `base_deployment` at startup: an object whose containers, if any,
/// form a list of objects.
///
/// # Errors
/// What is wrong, for the configuration error message.
pub(crate) fn check_base(base: &Value) -> Result<(), String> {
    if !base.is_object() {
        return Err("base deployment is not an object".into());
    }
    match base.pointer("/spec/template/spec/containers") {
        None => Ok(()),
        Some(Value::Array(items)) if items.iter().all(Value::is_object) => Ok(()),
        Some(_) => Err("spec.template.spec.containers is not a list of objects".into()),
    }
}

/// Merges the generated Deployment into the base (the rule, CONTRACT §6.3 "Ours"):
/// - objects merge key by key; for a scalar or an unnamed list the generated value wins,
///   and the base's stays where the generated object has none (`nodeSelector`,
///   `tolerations`, `affinity`, ...);
/// - named lists merge by key (`name`; `mountPath` for `volumeMounts`): a generated item
///   replaces the base item of the same key whole (a base `value` never joins our
///   `valueFrom`), base items with other keys are kept, ours are appended;
/// - containers: base entries **without** an `image` are merged, in order, into the
///   connector container (they configure it: resources, securityContext, extra env),
///   entries **with** an image are kept as sidecars after it (D16); never an image-less
///   second container;
/// - `spec.selector` is exactly the three labels; server-owned base fields (`status`,
///   `metadata.namespace/uid/resourceVersion/...`) are dropped so a `kubectl get -o yaml`
///   output can serve as a base.
fn merge_into_base(mut base: Value, generated: Value, spec: &Spec, manager_id: &str) -> Value {
    if let Some(obj) = base.as_object_mut() {
        obj.remove("status");
    }
    if let Some(meta) = base.get_mut("metadata").and_then(Value::as_object_mut) {
        for k in [
            "namespace",
            "uid",
            "resourceVersion",
            "generation",
            "creationTimestamp",
            "managedFields",
            "selfLink",
        ] {
            meta.remove(k);
        }
    }
    merge(&mut base, generated, "");
    if let Some(s) = base.get_mut("spec").and_then(Value::as_object_mut) {
        s.insert(
            "selector".into(),
            json!({"matchLabels": labels(spec, manager_id)}),
        );
    }
    base
}

/// The merge key of the list found under `field`, if it is a named list.
fn list_key(field: &str) -> Option<&'static str> {
    match field {
        "containers" | "initContainers" | "env" | "volumes" | "imagePullSecrets" | "ports" => {
            Some("name")
        }
        "volumeMounts" => Some("mountPath"),
        _ => None,
    }
}

fn merge(base: &mut Value, generated: Value, field: &str) {
    match (base, generated) {
        (Value::Object(b), Value::Object(g)) => {
            for (k, gv) in g {
                match b.get_mut(&k) {
                    Some(bv) => merge(bv, gv, &k),
                    None => {
                        b.insert(k, gv);
                    }
                }
            }
        }
        (Value::Array(b), Value::Array(g)) if field == "containers" => {
            *b = merge_containers(std::mem::take(b), g);
        }
        (Value::Array(b), Value::Array(g)) if list_key(field).is_some() => {
            let key = list_key(field).unwrap_or("name");
            for item in g {
                let id = item.get(key).cloned();
                match b
                    .iter_mut()
                    .find(|x| id.is_some() && x.get(key) == id.as_ref())
                {
                    Some(slot) => *slot = item,
                    None => b.push(item),
                }
            }
        }
        (b, g) => *b = g,
    }
}

/// Base containers without an image fold into ours (in order); with an image they
/// stay as sidecars, after ours. A sidecar named like ours is ours.
fn merge_containers(base: Vec<Value>, generated: Vec<Value>) -> Vec<Value> {
    let mut ours = generated.into_iter();
    let Some(gen_c) = ours.next() else {
        return base;
    };
    let our_name = gen_c.get("name").cloned();
    let mut connector = Value::Object(Map::new());
    let mut sidecars = Vec::new();
    for c in base {
        let has_image = c
            .get("image")
            .and_then(Value::as_str)
            .is_some_and(|s| !s.is_empty());
        if has_image && c.get("name") != our_name.as_ref() {
            sidecars.push(c);
        } else {
            merge(&mut connector, c, "");
        }
    }
    merge(&mut connector, gen_c, "");
    let mut out = vec![connector];
    out.extend(sidecars);
    out.extend(ours);
    out
}

/// The `kubernetes.io/dockerconfigjson` document (§6.3), which holds the password.
pub(crate) fn docker_config_json(
    server: &str,
    user: &str,
    password: &Secret,
    email: Option<&str>,
) -> Secret {
    let auth =
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{}", password.expose()));
    let doc = json!({"auths": {server: {
        "username": user,
        "password": password.expose(),
        "email": email,
        "auth": auth,
    }}});
    Secret::new(doc.to_string())
}

/// A Secret body with `stringData`.
pub(crate) fn secret_body<'a>(
    name: &'a str,
    type_: &'static str,
    labels: BTreeMap<&'static str, &'a str>,
    data: BTreeMap<String, &'a str>,
) -> wire::Secret<'a> {
    wire::Secret {
        api_version: "v1",
        kind: "Secret",
        metadata: wire::NewMeta {
            name,
            labels,
            uid: None,
            owner_references: Vec::new(),
        },
        type_,
        string_data: data,
    }
}

/// The annotation on a Deployment listing the Secrets made for it, as
/// `name=uid` pairs joined by `,`: what the composer may replace or delete
/// without reading Secrets (issue 12).
pub(crate) const SECRETS_ANNOTATION: &str = "xtm-composer/secrets";

/// The `SECRETS_ANNOTATION` value of `owned` (name → UID).
pub(crate) fn secrets_record(owned: &BTreeMap<String, String>) -> String {
    owned
        .iter()
        .map(|(name, uid)| format!("{name}={uid}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Reads a `SECRETS_ANNOTATION` value; malformed pairs are left out (their
/// Secrets are then treated as not ours).
pub(crate) fn parse_secrets_record(text: &str) -> BTreeMap<String, String> {
    text.split(',')
        .filter_map(|pair| pair.trim().split_once('='))
        .filter(|(name, uid)| !name.is_empty() && !uid.is_empty())
        .map(|(name, uid)| (name.to_string(), uid.to_string()))
        .collect()
}

/// The create body of a Deployment whose Secrets are made after it (they
/// point at its UID): no replicas and no contract hash yet, so a deploy cut
/// before `finish_patch` is seen as unfinished by the next listing.
pub(crate) fn unfinished(mut body: Value) -> Value {
    if let Some(a) = body
        .pointer_mut("/metadata/annotations")
        .and_then(Value::as_object_mut)
    {
        a.remove(HASH_MARKER);
    }
    if let Some(spec) = body.get_mut("spec").and_then(Value::as_object_mut) {
        spec.insert("replicas".into(), json!(0));
    }
    body
}

/// The merge patch that completes a deploy: the contract hash, the record of
/// the Secrets made for it, and the requested replicas.
pub(crate) fn finish_patch(spec: &Spec, owned: &BTreeMap<String, String>) -> Value {
    json!({
        "metadata": {"annotations": {
            HASH_MARKER: spec.hash,
            SECRETS_ANNOTATION: secrets_record(owned),
        }},
        "spec": {"replicas": i32::from(spec.start)},
    })
}

/// Sets (or, when `owned` is empty, removes) the Secrets record in a refresh patch.
pub(crate) fn with_secrets_record(mut patch: Value, owned: &BTreeMap<String, String>) -> Value {
    let record = if owned.is_empty() {
        Value::Null
    } else {
        json!(secrets_record(owned))
    };
    if let Some(meta) = patch.get_mut("metadata").and_then(Value::as_object_mut) {
        let annotations = meta.entry("annotations").or_insert_with(|| json!({}));
        if let Some(a) = annotations.as_object_mut() {
            a.insert(SECRETS_ANNOTATION.into(), record);
        }
    }
    patch
}

/// Labels of the Secrets made for one connector.
pub(crate) fn secret_labels<'a>(
    spec: &'a Spec,
    manager_id: &'a str,
) -> BTreeMap<&'static str, &'a str> {
    labels(spec, manager_id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::orchestrator::EnvVar;
    use crate::platform::PlatformKind;

    fn spec() -> Spec {
        Spec {
            name: "otx".into(),
            connector_id: "c1".into(),
            platform: PlatformKind::OpenCti,
            image: "opencti/connector-otx:6.4".into(),
            hash: "h1".into(),
            env: vec![
                EnvVar {
                    key: "OPENCTI_URL".into(),
                    value: EnvValue::Plain("http://o".into()),
                },
                EnvVar {
                    key: "OTX_KEY".into(),
                    value: EnvValue::Sensitive(Secret::new("s3cr3t")),
                },
                EnvVar {
                    key: "OPENCTI_CONFIG_HASH".into(),
                    value: EnvValue::Plain("h1".into()),
                },
            ],
            start: true,
        }
    }

    fn shape() -> Shape {
        Shape {
            manager_id: "m1".into(),
            pull_policy: "IfNotPresent".into(),
            resources: None,
            base: None,
            pull_secret: None,
            proxy_ca: false,
            plain_env: true,
        }
    }

    #[test]
    fn plain_env_body_is_the_existing_composer_body() {
        let mut sh = shape();
        sh.pull_secret = Some("registry-io".into());
        sh.proxy_ca = true;
        sh.resources = Some(json!({"limits": {"memory": "512Mi"}}));
        let d = deployment(&spec(), &sh, "registry.io/opencti/connector-otx:6.4").unwrap();
        let labels = json!({"opencti-connector-id": "c1", "opencti-manager": "m1", "opencti-platform": "opencti"});
        let expected = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"annotations": {"OPENCTI_CONFIG_HASH": "h1"}, "labels": labels, "name": "otx"},
            "spec": {"replicas": 1, "selector": {"matchLabels": labels},
              "template": {"metadata": {"labels": labels}, "spec": {
                "containers": [{
                  "env": [{"name": "OPENCTI_URL", "value": "http://o"}, {"name": "OTX_KEY", "value": "s3cr3t"},
                          {"name": "OPENCTI_CONFIG_HASH", "value": "h1"}],
                  "image": "registry.io/opencti/connector-otx:6.4", "imagePullPolicy": "IfNotPresent", "name": "otx",
                  "resources": {"limits": {"memory": "512Mi"}},
                  "volumeMounts": [{"mountPath": "/etc/ssl/certs/xtm-proxy-ca.crt", "name": "proxy-ca-cert",
                                    "readOnly": true, "subPath": "ca.crt"}]}],
                "imagePullSecrets": [{"name": "registry-io"}],
                "volumes": [{"name": "proxy-ca-cert", "secret": {"secretName": "otx-proxy-ca"}}]}}}
        });
        assert_eq!(d, expected);
    }

    #[test]
    fn d23_sensitive_values_become_secret_key_references() {
        let mut sh = shape();
        sh.plain_env = false;
        let d = deployment(&spec(), &sh, "img").unwrap();
        let text = d.to_string();
        assert!(!text.contains("s3cr3t"), "{text}");
        assert_eq!(
            d.pointer("/spec/template/spec/containers/0/env/1").unwrap(),
            &json!({"name": "OTX_KEY", "valueFrom": {"secretKeyRef": {"name": "otx-env", "key": "OTX_KEY"}}})
        );
        let data = env_secret_data(&spec(), &sh);
        assert_eq!(data.len(), 1);
        assert_eq!(data["OTX_KEY"].expose(), "s3cr3t");
        assert!(env_secret_data(&spec(), &shape()).is_empty());
    }

    #[test]
    fn odd_env_names_get_positional_secret_keys() {
        assert_eq!(secret_key("A_B-c.d", 3), "A_B-c.d");
        assert_eq!(secret_key("A B", 3), "env-3");
        assert_eq!(secret_key("", 0), "env-0");
    }

    #[test]
    fn d16_base_containers_without_image_configure_the_connector_container() {
        let mut sh = shape();
        sh.base = Some(json!({
            "metadata": {"labels": {"team": "cti"}, "namespace": "elsewhere", "resourceVersion": "9"},
            "spec": {"selector": {"matchLabels": {"team": "cti"}},
              "template": {"metadata": {"labels": {"team": "cti"}}, "spec": {
                "nodeSelector": {"pool": "connectors"},
                "tolerations": [{"key": "k", "operator": "Exists"}],
                "containers": [
                  {"name": "base", "resources": {"limits": {"cpu": "1"}},
                   "env": [{"name": "OTX_KEY", "value": "base-value"}, {"name": "EXTRA", "value": "x"}]},
                  {"name": "proxy", "image": "envoy:1"}
                ]}}},
            "status": {"replicas": 3}
        }));
        let d = deployment(&spec(), &sh, "img").unwrap();
        let containers = d
            .pointer("/spec/template/spec/containers")
            .unwrap()
            .as_array()
            .unwrap();
        assert_eq!(containers.len(), 2);
        assert_eq!(containers[0]["name"], "otx");
        assert_eq!(containers[0]["image"], "img");
        assert_eq!(containers[0]["resources"], json!({"limits": {"cpu": "1"}}));
        let env = containers[0]["env"].as_array().unwrap();
        assert_eq!(env[0], json!({"name": "OTX_KEY", "value": "s3cr3t"}));
        assert_eq!(env[1], json!({"name": "EXTRA", "value": "x"}));
        assert_eq!(env.len(), 4);
        assert_eq!(containers[1]["name"], "proxy");
        assert_eq!(
            d.pointer("/spec/template/spec/nodeSelector/pool").unwrap(),
            "connectors"
        );
        assert_eq!(d.pointer("/metadata/labels/team").unwrap(), "cti");
        assert_eq!(
            d.pointer("/spec/template/metadata/labels/team").unwrap(),
            "cti"
        );
        assert_eq!(
            d.pointer("/spec/selector").unwrap(),
            &json!({"matchLabels": {"opencti-connector-id": "c1", "opencti-manager": "m1", "opencti-platform": "opencti"}})
        );
        assert!(d.get("status").is_none());
        assert!(d.pointer("/metadata/namespace").is_none());
    }

    #[test]
    fn a_generated_secret_reference_replaces_a_base_literal_whole() {
        let mut sh = shape();
        sh.plain_env = false;
        sh.base = Some(json!({"spec": {"template": {"spec": {"containers": [
            {"name": "x", "env": [{"name": "OTX_KEY", "value": "leak"}]}]}}}}));
        let d = deployment(&spec(), &sh, "img").unwrap();
        let e = d.pointer("/spec/template/spec/containers/0/env/0").unwrap();
        assert!(e.get("value").is_none(), "{e}");
    }

    #[test]
    fn the_refresh_patch_leaves_the_selector_alone_and_clears_dropped_lists() {
        let d = deployment(&spec(), &shape(), "img").unwrap();
        let p = refresh_patch(d);
        assert!(p.pointer("/spec/selector").is_none());
        assert_eq!(p.pointer("/spec/template/spec/volumes"), Some(&Value::Null));
        assert_eq!(
            p.pointer("/spec/template/spec/imagePullSecrets"),
            Some(&Value::Null)
        );
        assert_eq!(p.pointer("/spec/replicas"), Some(&json!(1)));
    }

    #[test]
    fn secret_names_follow_the_contract() {
        assert_eq!(proxy_ca_secret_name("otx"), "otx-proxy-ca");
        let n = "a".repeat(62);
        assert_eq!(proxy_ca_secret_name(&n), "a".repeat(62));
        assert_eq!(proxy_ca_secret_name(&"b".repeat(60)).len(), 63);
        assert_eq!(
            pull_secret_name("Registry.Example.com:5000/"),
            "registry-example-com-5000"
        );
        assert_eq!(pull_secret_name("::"), "registry");
    }

    #[test]
    fn image_is_prefixed_once() {
        assert_eq!(image_ref(Some("reg.io"), "a/b:1"), "reg.io/a/b:1");
        assert_eq!(image_ref(Some("reg.io/"), "reg.io/a/b:1"), "reg.io/a/b:1");
        assert_eq!(image_ref(None, "a/b:1"), "a/b:1");
        assert_eq!(image_ref(Some(""), "a/b:1"), "a/b:1");
    }

    #[test]
    fn docker_config_carries_auth_and_null_email() {
        let doc = docker_config_json("reg.io", "u", &Secret::new("p"), None);
        let v: Value = serde_json::from_str(doc.expose()).unwrap();
        assert_eq!(v["auths"]["reg.io"]["auth"], "dTpw");
        assert_eq!(v["auths"]["reg.io"]["email"], Value::Null);
    }

    #[test]
    fn bases_that_are_not_objects_are_refused() {
        assert!(check_base(&json!([1])).is_err());
        assert!(check_base(&json!({"spec": {"template": {"spec": {"containers": {}}}}})).is_err());
        assert!(check_base(&json!({"spec": {}})).is_ok());
    }
}
