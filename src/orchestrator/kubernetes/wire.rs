//! Hand-written Kubernetes API v1.32 types (apps/v1 Deployment, core/v1 Pod,
//! Secret, meta/v1 Status), holding only the fields the composer reads or sends.
//! Reference: <https://kubernetes.io/docs/reference/kubernetes-api/>.
//! Responses tolerate missing fields (`#[serde(default)]`); requests borrow and
//! skip empty options. Types holding secret values do not derive `Debug`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// `ObjectMeta`, as read back.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub(crate) struct ObjectMeta {
    pub name: String,
    pub uid: String,
    pub resource_version: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub creation_timestamp: Option<String>,
    pub deletion_timestamp: Option<String>,
}

/// `ListMeta`: where a watch of the list starts.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub(crate) struct ListMeta {
    pub resource_version: String,
}

/// `DeploymentList`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct DeploymentList {
    pub metadata: ListMeta,
    pub items: Vec<Deployment>,
}

/// `Deployment` (apps/v1), as read back.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub(crate) struct Deployment {
    pub metadata: ObjectMeta,
    pub spec: DeploymentSpec,
}

/// `DeploymentSpec`: replicas, selector and the container names.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub(crate) struct DeploymentSpec {
    /// Absent means the API default, 1.
    pub replicas: Option<i32>,
    pub selector: LabelSelector,
    pub template: PodTemplateSpec,
}

/// `LabelSelector` (only `matchLabels`; ours never sets expressions).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub(crate) struct LabelSelector {
    pub match_labels: BTreeMap<String, String>,
}

/// `PodTemplateSpec`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub(crate) struct PodTemplateSpec {
    pub spec: PodSpec,
}

/// `PodSpec`: the containers and the Secret volumes.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub(crate) struct PodSpec {
    pub containers: Vec<Container>,
    pub volumes: Vec<VolumeRef>,
}

/// `Container`: its name and the Secrets its env refers to.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub(crate) struct Container {
    pub name: String,
    pub env: Vec<EnvRef>,
}

/// `EnvVar`, as read back: only a `valueFrom.secretKeyRef`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub(crate) struct EnvRef {
    pub value_from: Option<EnvSourceRef>,
}

/// `EnvVarSource`, as read back.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub(crate) struct EnvSourceRef {
    pub secret_key_ref: Option<SecretName>,
}

/// `{"name": …}` of a `secretKeyRef`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub(crate) struct SecretName {
    pub name: String,
}

/// `Volume`, as read back: only a `secret` source.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub(crate) struct VolumeRef {
    pub secret: Option<SecretVolume>,
}

/// `SecretVolumeSource`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub(crate) struct SecretVolume {
    pub secret_name: String,
}

/// `PodList`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct PodList {
    pub metadata: ListMeta,
    pub items: Vec<Pod>,
}

/// One line of a watch stream (`WatchEvent`): `ADDED`, `MODIFIED`, `DELETED`
/// with the object; `BOOKMARK` with only its resourceVersion; `ERROR` with a
/// `Status` (410 when the resourceVersion is too old to resume from).
#[derive(Debug, Deserialize)]
pub(crate) struct WatchEvent<T> {
    #[serde(rename = "type")]
    pub kind: String,
    pub object: T,
}

/// What every watch event's object has: its resourceVersion, or a `Status` code.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct EventHead {
    pub metadata: ObjectMeta,
    pub code: u16,
    pub message: String,
}

/// `Pod` (core/v1), as read back.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub(crate) struct Pod {
    pub metadata: ObjectMeta,
    pub status: PodStatus,
}

/// `PodStatus`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub(crate) struct PodStatus {
    pub container_statuses: Vec<ContainerStatus>,
}

/// `ContainerStatus`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub(crate) struct ContainerStatus {
    pub name: String,
    pub restart_count: u32,
    pub state: ContainerState,
    pub last_state: ContainerState,
}

/// `ContainerState`: at most one of the three is set.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub(crate) struct ContainerState {
    pub running: Option<StateRunning>,
    pub waiting: Option<StateWaiting>,
    pub terminated: Option<StateTerminated>,
}

/// `ContainerStateRunning`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub(crate) struct StateRunning {
    pub started_at: Option<String>,
}

/// `ContainerStateWaiting`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub(crate) struct StateWaiting {
    pub reason: Option<String>,
}

/// `ContainerStateTerminated`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub(crate) struct StateTerminated {
    pub started_at: Option<String>,
    pub reason: Option<String>,
}

/// `Status` (meta/v1): the body of every API error.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct Status {
    pub message: String,
    pub reason: String,
}

/// `Secret` (core/v1) as sent: `stringData` may hold registry passwords and
/// decrypted connector values, hence no `Debug`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Secret<'a> {
    pub api_version: &'static str,
    pub kind: &'static str,
    pub metadata: NewMeta<'a>,
    #[serde(rename = "type")]
    pub type_: &'static str,
    pub string_data: BTreeMap<String, &'a str>,
}

/// `ObjectMeta` as sent: name and labels; on an update, the `uid` the object
/// must still have (the API answers 409 otherwise); the owner whose deletion
/// deletes it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct NewMeta<'a> {
    pub name: &'a str,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<&'static str, &'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uid: Option<&'a str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub owner_references: Vec<OwnerReference<'a>>,
}

/// `OwnerReference`: a Secret of a connector points at its Deployment, so the
/// garbage collector deletes it with the Deployment.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct OwnerReference<'a> {
    pub api_version: &'static str,
    pub kind: &'static str,
    pub name: &'a str,
    pub uid: &'a str,
}

/// `DeleteOptions` with a UID precondition: the API deletes only the object
/// that still has this UID (409 otherwise).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct DeleteOptions<'a> {
    pub api_version: &'static str,
    pub kind: &'static str,
    pub preconditions: Preconditions<'a>,
}

/// `Preconditions`.
#[derive(Debug, Serialize)]
pub(crate) struct Preconditions<'a> {
    pub uid: &'a str,
}

/// What a create or update answers: the object's metadata.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct Created {
    pub metadata: ObjectMeta,
}

/// The merge patch of `spec.replicas` (start / stop).
#[derive(Debug, Serialize)]
pub(crate) struct ScalePatch {
    pub spec: Replicas,
}

/// `{"replicas": n}`.
#[derive(Debug, Serialize)]
pub(crate) struct Replicas {
    pub replicas: i32,
}

/// The generated Deployment (§6.3 body), before the `base_deployment` merge.
/// Plain env values may be decrypted secrets when `plain_env` is on: no `Debug`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct NewDeployment<'a> {
    pub api_version: &'static str,
    pub kind: &'static str,
    pub metadata: NewDeploymentMeta<'a>,
    pub spec: NewDeploymentSpec<'a>,
}

/// Deployment metadata as sent.
#[derive(Serialize)]
pub(crate) struct NewDeploymentMeta<'a> {
    pub annotations: BTreeMap<&'static str, &'a str>,
    pub labels: BTreeMap<&'static str, &'a str>,
    pub name: &'a str,
}

/// `DeploymentSpec` as sent.
#[derive(Serialize)]
pub(crate) struct NewDeploymentSpec<'a> {
    pub replicas: i32,
    pub selector: NewSelector<'a>,
    pub template: NewTemplate<'a>,
}

/// `LabelSelector` as sent.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct NewSelector<'a> {
    pub match_labels: BTreeMap<&'static str, &'a str>,
}

/// `PodTemplateSpec` as sent.
#[derive(Serialize)]
pub(crate) struct NewTemplate<'a> {
    pub metadata: NewTemplateMeta<'a>,
    pub spec: NewPodSpec<'a>,
}

/// Pod template metadata: the three labels.
#[derive(Serialize)]
pub(crate) struct NewTemplateMeta<'a> {
    pub labels: BTreeMap<&'static str, &'a str>,
}

/// `PodSpec` as sent.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct NewPodSpec<'a> {
    pub containers: Vec<NewContainer<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub image_pull_secrets: Vec<NameRef<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<Volume<'a>>,
}

/// `Container` as sent.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct NewContainer<'a> {
    pub env: Vec<EnvVar<'a>>,
    pub image: &'a str,
    pub image_pull_policy: &'a str,
    pub name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resources: Option<&'a serde_json::Value>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub volume_mounts: Vec<VolumeMount<'a>>,
}

/// `EnvVar`: a literal value or a reference to a Secret key.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct EnvVar<'a> {
    pub name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value_from: Option<EnvVarSource>,
}

/// `EnvVarSource` with `secretKeyRef`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct EnvVarSource {
    pub secret_key_ref: SecretKeySelector,
}

/// `SecretKeySelector`.
#[derive(Debug, Serialize)]
pub(crate) struct SecretKeySelector {
    pub name: String,
    pub key: String,
}

/// `LocalObjectReference` (`imagePullSecrets` entries).
#[derive(Debug, Serialize)]
pub(crate) struct NameRef<'a> {
    pub name: &'a str,
}

/// `VolumeMount`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct VolumeMount<'a> {
    pub mount_path: &'a str,
    pub name: &'a str,
    pub read_only: bool,
    pub sub_path: &'a str,
}

/// `Volume` backed by a Secret.
#[derive(Debug, Serialize)]
pub(crate) struct Volume<'a> {
    pub name: &'a str,
    pub secret: SecretVolumeSource<'a>,
}

/// `SecretVolumeSource`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SecretVolumeSource<'a> {
    pub secret_name: &'a str,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pod_in_back_off_reads_its_waiting_reason_and_last_start() {
        let pod: Pod = serde_json::from_str(
            r#"{"metadata":{"name":"otx-5d9c-abcde","labels":{"opencti-manager":"m"},
               "creationTimestamp":"2025-01-19T16:27:31Z"},
               "status":{"phase":"Running","containerStatuses":[{"name":"otx","restartCount":5,
               "ready":false,"image":"x","imageID":"","started":false,
               "state":{"waiting":{"reason":"CrashLoopBackOff","message":"back-off 40s"}},
               "lastState":{"terminated":{"exitCode":1,"reason":"Error",
               "startedAt":"2025-01-19T16:27:31Z","finishedAt":"2025-01-19T16:27:32Z"}}}]}}"#,
        )
        .unwrap();
        let c = &pod.status.container_statuses[0];
        assert_eq!(c.restart_count, 5);
        assert_eq!(
            c.state.waiting.as_ref().unwrap().reason.as_deref(),
            Some("CrashLoopBackOff")
        );
        let last = c.last_state.terminated.as_ref().unwrap();
        assert_eq!(last.started_at.as_deref(), Some("2025-01-19T16:27:31Z"));
    }

    #[test]
    fn a_pending_pod_without_statuses_reads_as_empty() {
        let pod: Pod =
            serde_json::from_str(r#"{"metadata":{"name":"p"},"status":{"phase":"Pending"}}"#)
                .unwrap();
        assert!(pod.status.container_statuses.is_empty());
    }

    #[test]
    fn a_status_error_keeps_reason_and_message() {
        let s: Status = serde_json::from_str(
            r#"{"kind":"Status","apiVersion":"v1","status":"Failure","message":"deployments.apps \"x\" not found","reason":"NotFound","details":{"name":"x"},"code":404}"#,
        )
        .unwrap();
        assert_eq!(s.reason, "NotFound");
        assert!(s.message.contains("not found"));
    }

    #[test]
    fn the_scale_patch_is_only_replicas() {
        let p = ScalePatch {
            spec: Replicas { replicas: 0 },
        };
        assert_eq!(
            serde_json::to_string(&p).unwrap(),
            r#"{"spec":{"replicas":0}}"#
        );
    }

    #[test]
    fn a_secret_env_var_is_a_key_reference() {
        let e = EnvVar {
            name: "TOKEN",
            value: None,
            value_from: Some(EnvVarSource {
                secret_key_ref: SecretKeySelector {
                    name: "otx-env".into(),
                    key: "TOKEN".into(),
                },
            }),
        };
        assert_eq!(
            serde_json::to_string(&e).unwrap(),
            r#"{"name":"TOKEN","valueFrom":{"secretKeyRef":{"name":"otx-env","key":"TOKEN"}}}"#
        );
    }
}
