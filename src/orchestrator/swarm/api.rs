//! The Swarm endpoints of the one Docker Engine client: services, tasks,
//! service logs and configs (`impl Client` continued from `docker::client`, on
//! its `call`). One function per endpoint; paths and label filters are built
//! and percent-encoded here. No policy: see `Swarm` (CONTRACT §6.4, D19).

use ureq::http::Method;

use super::wire::{ConfigSpec, IdResponse, Service, ServiceInspect, Task};
use crate::orchestrator::Error;
use crate::orchestrator::docker::Client;
use crate::orchestrator::docker::client::{
    Payload, encode, expect_success, label_filter, read_json,
};
use crate::secret::Secret;

/// JSON bytes of a request body.
fn json(op: &'static str, body: &impl serde::Serialize) -> Result<Vec<u8>, Error> {
    serde_json::to_vec(body).map_err(|e| Error::Decode {
        op,
        detail: e.to_string(),
    })
}

impl Client {
    /// `GET /services` for services carrying `label` (`key=value`).
    pub(crate) fn list_services(&self, label: &str) -> Result<Vec<Service>, Error> {
        const OP: &str = "list services";
        let path = format!("/services?filters={}", label_filter(label));
        self.get_json(OP, &path, label)
    }

    /// `GET /tasks` for the tasks of services carrying `label`: the engine
    /// matches a task's label filter against its service's labels.
    pub(crate) fn list_tasks(&self, label: &str) -> Result<Vec<Task>, Error> {
        const OP: &str = "list tasks";
        let path = format!("/tasks?filters={}", label_filter(label));
        self.get_json(OP, &path, label)
    }

    /// `GET /services/{id}` (a name works too), with the spec kept whole.
    pub(crate) fn inspect_service(&self, name: &str) -> Result<ServiceInspect, Error> {
        const OP: &str = "inspect service";
        let path = format!("/services/{}", encode(name));
        self.get_json(OP, &path, name)
    }

    /// `POST /services/create`, with `X-Registry-Auth` when given so that
    /// every node pulls with it; returns the engine's warnings.
    ///
    /// # Errors
    /// `Error::Api` (409: the name is taken).
    pub(crate) fn create_service(
        &self,
        name: &str,
        spec: &impl serde::Serialize,
        auth: Option<&Secret>,
    ) -> Result<Vec<String>, Error> {
        const OP: &str = "create service";
        let body = Payload::Json(json(OP, spec)?);
        let resp = self.call(OP, Method::POST, "/services/create", body, auth, None)?;
        let created: IdResponse = expect_success(OP, name, resp).and_then(|r| read_json(OP, r))?;
        Ok(created.warnings)
    }

    /// `POST /services/{id}/update?version=`: replaces the spec of the service
    /// at `version`, with `X-Registry-Auth` when given (not an empty `registryAuthFrom`, D19).
    ///
    /// # Errors
    /// `Error::Api` when the version is outdated (another update came first).
    pub(crate) fn update_service(
        &self,
        id: &str,
        version: u64,
        spec: &impl serde::Serialize,
        auth: Option<&Secret>,
    ) -> Result<(), Error> {
        const OP: &str = "update service";
        let body = Payload::Json(json(OP, spec)?);
        let path = format!("/services/{}/update?version={version}", encode(id));
        let resp = self.call(OP, Method::POST, &path, body, auth, None)?;
        expect_success(OP, id, resp).map(drop)
    }

    /// `DELETE /services/{id}`: its tasks and their containers go with it.
    pub(crate) fn remove_service(&self, name: &str) -> Result<(), Error> {
        const OP: &str = "remove service";
        let path = format!("/services/{}", encode(name));
        self.act(OP, Method::DELETE, &path, name)
    }

    /// `GET /services/{id}/logs`: the last `tail` lines of every task, on any
    /// node, demultiplexed (our services have no TTY).
    pub(crate) fn service_logs(&self, name: &str, tail: u32) -> Result<Vec<String>, Error> {
        const OP: &str = "service logs";
        let path = format!(
            "/services/{}/logs?follow=false&stdout=true&stderr=true&timestamps=false&tail={tail}",
            encode(name)
        );
        self.get_logs(OP, &path, name, tail, false)
    }

    /// `GET /configs/{id}` (a name works too): the config's id.
    pub(crate) fn inspect_config(&self, name: &str) -> Result<String, Error> {
        const OP: &str = "inspect config";
        let path = format!("/configs/{}", encode(name));
        let found: IdResponse = self.get_json(OP, &path, name)?;
        Ok(found.id)
    }

    /// `POST /configs/create`; returns the new config's id.
    ///
    /// # Errors
    /// `Error::Api` (409: the name is taken).
    pub(crate) fn create_config(&self, spec: &ConfigSpec<'_>) -> Result<String, Error> {
        const OP: &str = "create config";
        let body = Payload::Json(json(OP, spec)?);
        let resp = self.call(OP, Method::POST, "/configs/create", body, None, None)?;
        let created: IdResponse =
            expect_success(OP, spec.name, resp).and_then(|r| read_json(OP, r))?;
        Ok(created.id)
    }
}
