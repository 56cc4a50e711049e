//! The `base_deployment` merge (any JSON the operator may give): never
//! panics; when the base passes the start-up check, the Deployment keeps the
//! connector container first with its name and image, a selector of exactly
//! the three labels (also on the pod template), and the sensitive value only
//! as a Secret reference.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::{Value, json};
use xtm_composer::fuzzing::{deployment_with_base, sample_spec};

fuzz_target!(|data: &[u8]| {
    let Ok(base) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let spec = sample_spec("sensitive-value");
    let Ok(d) = deployment_with_base(&spec, base) else {
        return;
    };
    let labels = json!({"opencti-connector-id": "c1", "opencti-manager": "fuzz-manager",
        "opencti-platform": "opencti"});
    assert_eq!(d["spec"]["selector"], json!({"matchLabels": labels}), "{d}");
    for (k, v) in labels.as_object().expect("labels") {
        assert_eq!(&d["spec"]["template"]["metadata"]["labels"][k], v, "{d}");
    }
    let first = &d["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(first["name"], spec.name, "{d}");
    assert_eq!(first["image"], spec.image, "{d}");
    let env = first["env"].as_array().expect("env");
    let key = env
        .iter()
        .find(|e| e["name"] == "API_KEY")
        .expect("API_KEY in env");
    assert!(key.get("value").is_none(), "{key}");
    assert_eq!(
        key["valueFrom"]["secretKeyRef"]["name"],
        "fuzz-connector-env"
    );
});
