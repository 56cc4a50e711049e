//! Issue 14: the first command shows the composer working. `scripts/run.sh` with no
//! platform configured starts the demo platform (examples/demo_platform.rs), uses the
//! running engine, and the connectors reach "started" within 2 minutes. Needs dockerd
//! (scripts/test.sh starts it); cleans up its containers by manager label.

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Removes the demo's containers and stops run.sh's process group, pass or fail.
struct Cleanup {
    child: std::process::Child,
    manager: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill").args(["-TERM", "--", &group]).status();
        std::thread::sleep(Duration::from_secs(2));
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.child.wait();
        let ids = Command::new("docker")
            .args(["ps", "-aq", "--filter"])
            .arg(format!("label=opencti-manager={}", self.manager))
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        for id in ids.split_whitespace() {
            let _ = Command::new("docker").args(["rm", "-f", id]).output();
        }
    }
}

#[test]
fn run_sh_with_no_platform_reaches_connectors_started_on_the_demo_platform() {
    let bin = Path::new(env!("CARGO_BIN_EXE_xtm-composer"));
    let target_dir = bin.parent().unwrap().parent().unwrap();
    let demo = target_dir.join("debug/examples/demo_platform");
    assert!(
        demo.exists(),
        "{} missing: cargo build --all-targets",
        demo.display()
    );
    assert!(
        Path::new("/var/run/docker.sock").exists(),
        "dockerd is not running: bash scripts/start-dockerd.sh"
    );
    let manager = format!("demo-test-{}", std::process::id());
    let mut child = Command::new("bash")
        .arg("scripts/run.sh")
        .env_remove("OPENCTI__URL")
        .env("COMPOSER_ENV", format!("demo-test-{}", std::process::id()))
        .env("CARGO_TARGET_DIR", target_dir)
        .env("XTM_RUN_PROFILE", "debug")
        .env("XTM_RUN_BUILT", "1")
        .env("MANAGER__ID", &manager)
        .env("MANAGER__NAME_PREFIX", format!("t{}-", std::process::id()))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .unwrap();
    let outputs = [
        Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
        Box::new(child.stderr.take().unwrap()),
    ];
    let _cleanup = Cleanup {
        child,
        manager: manager.clone(),
    };
    let (tx, rx) = mpsc::channel();
    for out in outputs {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
    }
    let started = Instant::now();
    let deadline = started + Duration::from_secs(120);
    let mut seen = Vec::new();
    let mut done = false;
    while let Ok(line) = rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
        let hit = line.starts_with("demo: ") && line.contains("connectors started");
        seen.push(line);
        if hit {
            done = true;
            break;
        }
    }
    let took = started.elapsed();
    println!(
        "run.sh reached \"connectors started\" in {} s",
        took.as_secs()
    );
    assert!(
        done,
        "no \"connectors started\" within 120 s:\n{}",
        seen.join("\n")
    );
    let all = seen.join("\n");
    for part in [
        "no platform configured",
        &format!("started, manager {manager}"),
        "DEMO_API_KEY encrypted",
        "OPENCTI__URL=",
    ] {
        assert!(all.contains(part), "{part:?} not in\n{all}");
    }
    // The connectors are real containers of this manager, running.
    let running = Command::new("docker")
        .args(["ps", "-q", "--filter"])
        .arg(format!("label=opencti-manager={manager}"))
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&running.stdout).lines().count(),
        3,
        "{all}"
    );
}
