//! The per-connector Secrets (`{name}-env`, `{name}-proxy-ca`) and the rule
//! that keeps the composer off every Secret it did not create (issue 12):
//! Secrets are created with `POST` only (a 409 means the name is taken by
//! someone else: a name collision), carry an `ownerReference` to their
//! Deployment (the garbage collector deletes them with it), and are replaced or
//! deleted only under the UID recorded on that Deployment when they were made.
//! No Secret is ever read: the Role grants no `get` on them. One exception,
//! for a swap: a Deployment of this manager that records no Secret at all was
//! made by the existing composer (or an early build), and a Secret its pod
//! template refers to by one of our names is that composer's Secret for that
//! very Deployment: it is adopted (replaced, then recorded) and removed with it.

use std::collections::{BTreeMap, BTreeSet};

use super::{Kubernetes, manifest, wire};
use crate::orchestrator::{Error, Spec};
use crate::secret::Secret;

/// A Secret a connector needs, by name, with its data.
pub(super) struct Wanted {
    pub name: String,
    pub data: BTreeMap<String, Secret>,
}

/// What the last listing says about one of our Deployments.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Listed {
    pub uid: String,
    /// It carries its contract hash: a deploy that made Secrets finished.
    pub finished: bool,
    /// Secrets made for it: name → UID.
    pub secrets: BTreeMap<String, String>,
    /// Secrets its pod template refers to (env `secretKeyRef`, `secret` volumes).
    pub referenced: BTreeSet<String>,
}

impl Listed {
    pub(super) fn of(d: &wire::Deployment) -> Listed {
        let a = &d.metadata.annotations;
        Listed {
            uid: d.metadata.uid.clone(),
            finished: a.contains_key(crate::orchestrator::HASH_MARKER),
            secrets: a
                .get(manifest::SECRETS_ANNOTATION)
                .map(|t| manifest::parse_secrets_record(t))
                .unwrap_or_default(),
            referenced: referenced(d),
        }
    }

    /// A Secret by this name is the previous composer's, made for this
    /// Deployment: nothing is recorded on it, and its template uses that name.
    pub(super) fn legacy(&self, name: &str) -> bool {
        self.secrets.is_empty() && self.referenced.contains(name)
    }
}

fn referenced(d: &wire::Deployment) -> BTreeSet<String> {
    let spec = &d.spec.template.spec;
    let volumes = spec.volumes.iter().filter_map(|v| v.secret.as_ref());
    let env = spec
        .containers
        .iter()
        .flat_map(|c| &c.env)
        .filter_map(|e| e.value_from.as_ref()?.secret_key_ref.as_ref());
    volumes
        .map(|v| v.secret_name.clone())
        .chain(env.map(|r| r.name.clone()))
        .collect()
}

/// The error for a Secret name held by an object the composer did not make.
fn collision(op: &'static str, name: &str, namespace: &str) -> Error {
    Error::Api {
        op,
        code: 409,
        message: format!(
            "name collision: Secret {name} in namespace {namespace} was not created by this \
             composer for this Deployment; it is left untouched. Rename the connector, or \
             delete that Secret if it is a leftover"
        ),
    }
}

impl Kubernetes {
    /// The Secrets `spec` needs: the proxy CA bundle and the sensitive env values.
    pub(super) fn wanted(&self, spec: &Spec) -> Vec<Wanted> {
        let mut out = Vec::new();
        if let Some(bundle) = &self.proxy_ca {
            out.push(Wanted {
                name: manifest::proxy_ca_secret_name(&spec.name),
                data: BTreeMap::from([(
                    manifest::PROXY_CA_KEY.to_string(),
                    Secret::new(bundle.clone()),
                )]),
            });
        }
        let values = manifest::env_secret_data(spec, &self.shape);
        if !values.is_empty() {
            out.push(Wanted {
                name: manifest::env_secret_name(&spec.name),
                data: values,
            });
        }
        out
    }

    /// Our Secret `w` for `spec`'s Deployment `owner_uid`: labelled, owned.
    fn secret_body<'a>(
        &'a self,
        spec: &'a Spec,
        w: &'a Wanted,
        owner_uid: &'a str,
    ) -> wire::Secret<'a> {
        let mut body = manifest::secret_body(
            &w.name,
            "Opaque",
            manifest::secret_labels(spec, &self.shape.manager_id),
            w.data
                .iter()
                .map(|(k, v)| (k.clone(), v.expose()))
                .collect(),
        );
        body.metadata.owner_references = vec![wire::OwnerReference {
            api_version: "apps/v1",
            kind: "Deployment",
            name: &spec.name,
            uid: owner_uid,
        }];
        body
    }

    fn send_secret(
        &self,
        spec: &Spec,
        w: &Wanted,
        owner_uid: &str,
        uid: Option<&str>,
    ) -> Result<Option<String>, Error> {
        let mut body = self.secret_body(spec, w, owner_uid);
        body.metadata.uid = uid;
        match uid {
            None => self.client.create_secret(&body).map(Some),
            Some(_) => self.client.replace_secret(&w.name, &body).map(|_| None),
        }
    }

    /// Replaces the previous composer's Secret `w` (no UID to check: see
    /// `Listed::legacy`) with ours, owned by the Deployment; returns its UID.
    /// Gone in the meantime: made anew.
    fn adopt(&self, spec: &Spec, w: &Wanted, owner_uid: &str) -> Result<String, Error> {
        let body = self.secret_body(spec, w, owner_uid);
        match self.client.replace_secret(&w.name, &body) {
            Ok(uid) => {
                log::info!(
                    "Secret {} of Deployment {}, made by the previous composer, adopted",
                    w.name,
                    spec.name
                );
                Ok(uid)
            }
            Err(Error::Api { code: 404, .. }) => self.create_owned(spec, w, owner_uid),
            Err(e) => Err(e),
        }
    }

    /// Creates `w` for the Deployment `owner_uid`; returns its UID.
    ///
    /// # Errors
    /// A name collision (409), or the API's error.
    pub(super) fn create_owned(
        &self,
        spec: &Spec,
        w: &Wanted,
        owner_uid: &str,
    ) -> Result<String, Error> {
        match self.send_secret(spec, w, owner_uid, None) {
            Ok(uid) => Ok(uid.unwrap_or_default()),
            Err(Error::Api { code: 409, op, .. }) => {
                Err(collision(op, &w.name, self.client.namespace()))
            }
            Err(e) => Err(e),
        }
    }

    /// Brings the Secrets of an existing Deployment to `spec`: replaces those
    /// recorded on it (under their UID), creates the others, deletes recorded
    /// ones no longer needed. Returns the new record.
    ///
    /// # Errors
    /// A name collision (the name is held by an object we did not make), or the API's error.
    pub(super) fn write_owned(
        &self,
        spec: &Spec,
        listed: &Listed,
    ) -> Result<BTreeMap<String, String>, Error> {
        let mut owned = BTreeMap::new();
        for w in self.wanted(spec) {
            let uid = match listed.secrets.get(&w.name) {
                Some(uid) => match self.send_secret(spec, &w, &listed.uid, Some(uid)) {
                    Ok(_) => uid.clone(),
                    // Deleted behind our back: made again.
                    Err(Error::Api { code: 404, .. }) => {
                        self.create_owned(spec, &w, &listed.uid)?
                    }
                    // The name now belongs to another object.
                    Err(Error::Api { code: 409, op, .. }) => {
                        return Err(collision(op, &w.name, self.client.namespace()));
                    }
                    Err(e) => return Err(e),
                },
                None if listed.legacy(&w.name) => self.adopt(spec, &w, &listed.uid)?,
                None => self.create_owned(spec, &w, &listed.uid)?,
            };
            owned.insert(w.name, uid);
        }
        for (name, uid) in &listed.secrets {
            if !owned.contains_key(name) {
                self.client.delete_secret_with_uid(name, uid)?;
            }
        }
        Ok(owned)
    }
}
