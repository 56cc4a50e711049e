//! Test support shared by the integration tests: an in-process fake OpenCTI
//! (`fake_opencti`), a private test CA (`tls`) and a recording CONNECT proxy (`proxy`).
//! Everything listens on 127.0.0.1 only.

// Each test binary declares `mod common;` and uses only part of it.
#![allow(dead_code)]

pub mod composer;
pub mod fake_openaev;
pub mod fake_opencti;
pub mod http1;
pub mod memory;
pub mod proxy;
pub mod tls;
