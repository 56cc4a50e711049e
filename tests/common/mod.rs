//! Test support shared by the integration tests: an in-process fake OpenCTI
//! (`fake_opencti`), a test Kubernetes API server (`k8s_api`), a private test CA (`tls`),
//! a recording CONNECT proxy (`proxy`), a Portainer stand-in in front of the real dockerd
//! (`portainer`), raw engine calls (`engine`), the engine driven against a real
//! orchestrator (`e2e`) and the real binary driven end to end (`composer`).
//! Everything listens on 127.0.0.1 only.

// Each test binary declares `mod common;` and uses only part of it.
#![allow(dead_code)]

pub mod composer;
pub mod e2e;
pub mod engine;
pub mod fake_openaev;
pub mod fake_opencti;
pub mod http1;
pub mod k8s_api;
pub mod memory;
pub mod portainer;
pub mod proxy;
pub mod tls;
