//! Test helpers shared by the integration tests.

pub mod k8s_api;
