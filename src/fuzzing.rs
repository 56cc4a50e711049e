//! Entry points for the fuzz targets of `fuzz/` (CI: `scripts/fuzz.sh`): the
//! crate-private parsers of outside data, called as the composer calls them.
//! Compiled only with `--cfg fuzzing`, which `cargo fuzz` sets; never part of
//! the shipped binary.

use serde_json::Value;

use crate::orchestrator::kubernetes::manifest::{self, Shape};
use crate::orchestrator::{EnvValue, EnvVar, Spec};
use crate::platform::{Connector, PlatformKind};
use crate::secret::Secret;

/// The Docker log stream reader (multiplexed, or raw when `tty`).
///
/// # Errors
/// A broken stream.
pub fn read_log_lines(data: &[u8], tty: bool, keep: usize) -> std::io::Result<Vec<String>> {
    crate::orchestrator::docker::stream::read_log_lines(data, tty, keep)
}

/// The image pull progress reader.
///
/// # Errors
/// The first error object, or an overlong line.
pub fn pull_progress(data: &[u8]) -> Result<(), String> {
    crate::orchestrator::docker::client::pull_progress(data)
}

/// `fromImage` and `tag` of an image reference.
pub fn split_reference(image: &str) -> (&str, &str) {
    crate::orchestrator::docker::image::split_reference(image)
}

/// The OpenCTI listing parser: connectors, and one line per skipped entry.
pub fn opencti_listing(entries: Vec<Value>) -> (Vec<Connector>, Vec<String>) {
    crate::platform::opencti_wire::listing(entries)
}

/// The OpenAEV listing parser: connectors, and one line per skipped entry.
pub fn openaev_listing(entries: Vec<Value>) -> (Vec<Connector>, Vec<String>) {
    crate::platform::openaev_wire::listing(entries)
}

/// The spec `base_deployment` merges into: one plain and one sensitive value.
pub fn sample_spec(sensitive: &str) -> Spec {
    Spec {
        name: "fuzz-connector".into(),
        connector_id: "c1".into(),
        platform: PlatformKind::OpenCti,
        image: "opencti/connector-fuzz:1".into(),
        hash: "h1".into(),
        env: vec![
            EnvVar {
                key: "PLAIN".into(),
                value: EnvValue::Plain("visible".into()),
            },
            EnvVar {
                key: "API_KEY".into(),
                value: EnvValue::Sensitive(Secret::new(sensitive)),
            },
        ],
        start: true,
    }
}

/// The Deployment of `spec` merged into `base`, as the Kubernetes
/// orchestrator makes it; `Err` when the base is refused at start-up.
///
/// # Errors
/// The start-up check's reason, or the build error.
pub fn deployment_with_base(spec: &Spec, base: Value) -> Result<Value, String> {
    manifest::check_base(&base)?;
    let shape = Shape {
        manager_id: "fuzz-manager".into(),
        pull_policy: "IfNotPresent".into(),
        resources: None,
        base: Some(base),
        pull_secret: Some("registry".into()),
        proxy_ca: true,
        plain_env: false,
    };
    manifest::deployment(spec, &shape, &spec.image).map_err(|e| e.to_string())
}
