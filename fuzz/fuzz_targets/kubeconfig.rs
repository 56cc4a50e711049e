//! Kubeconfig loading (`kubernetes::Source::Kubeconfig`): never panics; a
//! loaded connection names an http(s) server and a namespace.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use xtm_composer::orchestrator::kubernetes::Source;
use xtm_composer::orchestrator::kubernetes::connect::Connection;

fn path() -> &'static PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("xtm-fuzz-kubeconfig-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        dir.join("config")
    })
}

fuzz_target!(|data: &[u8]| {
    std::fs::write(path(), data).expect("write kubeconfig");
    if let Ok(c) = Connection::open(&Source::Kubeconfig(vec![path().clone()])) {
        assert!(
            c.server.starts_with("https://") || c.server.starts_with("http://"),
            "{:?}",
            c.server
        );
        assert!(!c.server.ends_with('/'), "{:?}", c.server);
        assert!(!c.namespace.is_empty());
    }
});
