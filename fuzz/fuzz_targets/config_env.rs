//! Configuration from environment text (`config::load`, env `A__B__C`
//! coerced to typed values): never panics; a loaded configuration holds
//! exactly the whole number given for `MANAGER__EXECUTE_SCHEDULE` and the
//! boolean given for `MANAGER__DEBUG__SHOW_ENV_VARS`, and refuses the rest.
//! Input: `KEY=value` lines.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

fn dir() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("xtm-fuzz-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        std::fs::write(
            dir.join("default.yaml"),
            include_str!("../../config/default.yaml"),
        )
        .expect("default.yaml");
        dir
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let env: Vec<(String, String)> = text
        .lines()
        .filter_map(|l| l.split_once('='))
        .filter(|(k, _)| *k != "COMPOSER_ENV")
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let last = |key: &str| {
        env.iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.trim())
    };
    let Ok(loaded) = xtm_composer::config::load(Some(dir()), &env) else {
        return;
    };
    let m = &loaded.settings.manager;
    if let Some(v) = last("MANAGER__EXECUTE_SCHEDULE") {
        assert_eq!(v.parse::<u64>().ok(), Some(m.execute_schedule), "{v:?}");
    }
    if let Some(v) = last("MANAGER__DEBUG__SHOW_ENV_VARS") {
        let want = match v.to_ascii_lowercase().as_str() {
            "true" => Some(true),
            "false" => Some(false),
            _ => None,
        };
        assert_eq!(want, Some(m.debug.show_env_vars), "{v:?}");
    }
});
