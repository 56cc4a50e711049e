//! The real binary's command line: version, help, `check` on good and broken
//! configurations, start-up errors that explain themselves (DESIGN 8).

use std::path::PathBuf;
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_xtm-composer");

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("xtm-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Runs the binary with a clean environment (only PATH), plus `env`.
fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(BIN);
    c.args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn version_and_help_print_and_exit_zero() {
    let o = run(&["--version"], &[]);
    assert!(o.status.success());
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        format!("xtm-composer {}", env!("CARGO_PKG_VERSION"))
    );
    let o = run(&["--help"], &[]);
    assert!(o.status.success());
    for word in ["run", "plan", "check", "--config"] {
        assert!(text(&o).contains(word));
    }
}

#[test]
fn unknown_argument_is_an_error_not_a_panic() {
    let o = run(&["frobnicate"], &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).contains("unknown argument"));
    assert!(!text(&o).contains("panicked"));
}

#[test]
fn check_on_a_broken_config_lists_every_problem_and_fails() {
    let dir = temp_dir("broken");
    std::fs::copy("config/default.yaml", dir.join("default.yaml")).unwrap();
    let env = [
        ("OPENCTI__DAEMON__SELECTOR", "dokcer"),
        ("MANAGER__LOGGER__LEVEL", "loud"),
        ("MANAGER__EXECUTE_SCHEDULE", "0"),
    ];
    let o = run(&["check", "--config", dir.to_str().unwrap()], &env);
    assert!(!o.status.success());
    let t = text(&o);
    assert!(t.contains("✘"), "{t}");
    assert!(
        t.contains("opencti.daemon.selector") && t.contains("OPENCTI__DAEMON__SELECTOR"),
        "{t}"
    );
    assert!(t.contains("manager.logger.level"), "{t}");
    assert!(t.contains("manager.execute_schedule"), "{t}");
    assert!(!t.contains("panicked"));
}

#[test]
fn the_existing_composers_config_loads_unchanged_and_check_names_the_missing_key() {
    let dir = temp_dir("existing");
    std::fs::copy(
        "tests/fixtures/config/existing/default.yaml",
        dir.join("default.yaml"),
    )
    .unwrap();
    let o = run(&["check", "--config", dir.to_str().unwrap()], &[]);
    let t = text(&o);
    assert!(t.contains("✔ configuration"), "{t}");
    assert!(t.contains("✘ private key"), "{t}");
    assert!(t.contains("MANAGER__CREDENTIALS_KEY_FILEPATH"), "{t}");
    assert!(!o.status.success());
}

#[test]
fn run_without_a_key_exits_with_an_explanation() {
    let dir = temp_dir("nokey");
    std::fs::copy("config/default.yaml", dir.join("default.yaml")).unwrap();
    let o = run(
        &["--config", dir.to_str().unwrap()],
        &[("OPENCTI__DAEMON__SELECTOR", "docker")],
    );
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("credentials_key"), "{}", text(&o));
}

#[test]
fn a_missing_config_folder_says_where_it_looked() {
    let o = run(&["check", "--config", "/nonexistent/xtm"], &[]);
    assert!(!o.status.success());
    assert!(text(&o).contains("/nonexistent/xtm"), "{}", text(&o));
}
