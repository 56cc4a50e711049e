//! systemd's notify protocol end to end: the real binary started as a `Type=notify` service
//! would be (a listening unix datagram socket in `NOTIFY_SOCKET`, `WATCHDOG_USEC` set) sends
//! READY=1, then WATCHDOG=1 from its loop, then STOPPING=1 on SIGTERM, and exits 0.

mod common;

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::fake_opencti::FakeOpenCti;

const BIN: &str = env!("CARGO_BIN_EXE_xtm-composer");
const TOKEN: &str = "notify-test-token";

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("xtm-notify-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn key_file(dir: &std::path::Path) -> PathBuf {
    let v: serde_json::Value =
        serde_json::from_str(include_str!("fixtures/crypto-vectors.json")).unwrap();
    let path = dir.join("private.pem");
    std::fs::write(
        &path,
        v["rsa2048"]["private_key_pkcs8_pem"].as_str().unwrap(),
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

/// Kills the child if the test fails half-way, so no composer outlives the test.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The child's stderr, line by line, from a reader thread (so a wait can time out).
fn stderr_lines(stderr: std::process::ChildStderr) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line + "\n").is_err() {
                break;
            }
        }
    });
    rx
}

/// The next datagram, or a failure naming what was awaited (the socket has a read timeout).
fn next(socket: &UnixDatagram, awaited: &str) -> String {
    let mut buf = [0u8; 1024];
    match socket.recv(&mut buf) {
        Ok(n) => String::from_utf8_lossy(&buf[..n]).into_owned(),
        Err(e) => panic!("no datagram while waiting for {awaited}: {e}"),
    }
}

#[test]
fn the_binary_sends_ready_watchdog_and_stopping_to_notify_socket() {
    let dir = temp_dir("run");
    std::fs::copy("config/default.yaml", dir.join("default.yaml")).unwrap();
    let key = key_file(&dir);
    let socket_path = dir.join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    // Generous: a bound on a hang, not a speed assertion.
    socket
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let fake = FakeOpenCti::start(TOKEN);

    let child = Command::new(BIN)
        .args(["run", "--config", dir.to_str().unwrap()])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("NOTIFY_SOCKET", &socket_path)
        .env("WATCHDOG_USEC", "2000000")
        .env("MANAGER__ID", format!("notify-test-{}", std::process::id()))
        .env("MANAGER__CREDENTIALS_KEY_FILEPATH", &key)
        .env("OPENCTI__URL", fake.url())
        .env("OPENCTI__TOKEN", TOKEN)
        .env("OPENCTI__DAEMON__SELECTOR", "docker")
        // No engine is needed to beat: the loop reports the engine error and goes on.
        .env(
            "OPENCTI__DAEMON__DOCKER__HOST",
            format!("unix://{}/no-docker.sock", dir.display()),
        )
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut running = Running(child);
    let lines = stderr_lines(running.0.stderr.take().unwrap());

    let ready = next(&socket, "READY=1");
    assert_eq!(ready, "READY=1\nSTATUS=1 platform loop(s) running\n");
    let watchdog = next(&socket, "WATCHDOG=1");
    assert_eq!(watchdog, "WATCHDOG=1\n");

    let pid = running.0.id().to_string();
    let killed = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(killed.success());
    // WATCHDOG=1 may still arrive before the loop sees the signal; STOPPING=1 must follow.
    let mut seen = Vec::new();
    loop {
        let m = next(&socket, "STOPPING=1");
        seen.push(m.clone());
        if m.starts_with("STOPPING=1") {
            break;
        }
        assert_eq!(m, "WATCHDOG=1\n", "unexpected message; so far {seen:?}");
    }
    assert_eq!(seen.last().unwrap(), "STOPPING=1\nSTATUS=shutting down\n");
    let status = running.0.wait().unwrap();
    let stderr: String = lines.iter().collect();
    assert!(status.success(), "exit {status:?}; stderr:\n{stderr}");
    assert!(stderr.contains("systemd watchdog: 2 s"), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn without_notify_socket_the_binary_runs_as_before() {
    // `check` never notifies, and `run` outside systemd must not fail on the missing socket:
    // an unusable NOTIFY_SOCKET is a warning, not a start-up error.
    let dir = temp_dir("bad-socket");
    std::fs::copy("config/default.yaml", dir.join("default.yaml")).unwrap();
    let key = key_file(&dir);
    let fake = FakeOpenCti::start(TOKEN);
    let child = Command::new(BIN)
        .args(["run", "--config", dir.to_str().unwrap()])
        .env_clear()
        .env("NOTIFY_SOCKET", dir.join("nobody-listens.sock"))
        .env("MANAGER__ID", format!("notify-none-{}", std::process::id()))
        .env("MANAGER__CREDENTIALS_KEY_FILEPATH", &key)
        .env("MANAGER__LOGGER__FORMAT", "pretty")
        .env("OPENCTI__URL", fake.url())
        .env("OPENCTI__TOKEN", TOKEN)
        .env("OPENCTI__DAEMON__SELECTOR", "docker")
        .env(
            "OPENCTI__DAEMON__DOCKER__HOST",
            format!("unix://{}/no-docker.sock", dir.display()),
        )
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut running = Running(child);
    let lines = stderr_lines(running.0.stderr.take().unwrap());
    // Wait until the READY attempt was logged as failed, then stop the composer.
    let mut log = String::new();
    while !log.contains("sd_notify READY=1") {
        match lines.recv_timeout(Duration::from_secs(60)) {
            Ok(line) => log.push_str(&line),
            Err(e) => panic!("no READY warning ({e}); log so far:\n{log}"),
        }
    }
    let pid = running.0.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = running.0.wait().unwrap();
    assert!(status.success(), "exit {status:?}:\n{log}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Counts `WATCHDOG=1` datagrams arriving within `window` (those queued
/// before are dropped first).
fn watchdogs_within(socket: &UnixDatagram, window: Duration) -> usize {
    let mut buf = [0u8; 1024];
    socket.set_nonblocking(true).unwrap();
    while socket.recv(&mut buf).is_ok() {}
    socket.set_nonblocking(false).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let deadline = std::time::Instant::now() + window;
    let mut n = 0;
    while std::time::Instant::now() < deadline {
        if let Ok(len) = socket.recv(&mut buf)
            && &buf[..len] == b"WATCHDOG=1\n"
        {
            n += 1;
        }
    }
    n
}

/// Runs the binary against `url` with a 3 s watchdog; returns the child, its
/// stderr and the socket once READY=1 came.
fn run_with_watchdog(
    name: &str,
    url: &str,
) -> (Running, mpsc::Receiver<String>, UnixDatagram, PathBuf) {
    let dir = temp_dir(name);
    std::fs::copy("config/default.yaml", dir.join("default.yaml")).unwrap();
    let key = key_file(&dir);
    let socket_path = dir.join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let child = Command::new(BIN)
        .args(["run", "--config", dir.to_str().unwrap()])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("NOTIFY_SOCKET", &socket_path)
        .env("WATCHDOG_USEC", "3000000")
        .env(
            "MANAGER__ID",
            format!("notify-{name}-{}", std::process::id()),
        )
        .env("MANAGER__CREDENTIALS_KEY_FILEPATH", &key)
        .env("MANAGER__PING_ALIVE_SCHEDULE", "1")
        .env("OPENCTI__URL", url)
        .env("OPENCTI__TOKEN", TOKEN)
        // The hang must outlast the watchdog: the call's own timeout is longer.
        .env("OPENCTI__REQUEST_TIMEOUT", "60")
        .env("OPENCTI__DAEMON__SELECTOR", "docker")
        .env(
            "OPENCTI__DAEMON__DOCKER__HOST",
            format!("unix://{}/no-docker.sock", dir.display()),
        )
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut running = Running(child);
    let lines = stderr_lines(running.0.stderr.take().unwrap());
    let ready = next(&socket, "READY=1");
    assert!(ready.starts_with("READY=1"), "{ready}");
    (running, lines, socket, dir)
}

#[test]
fn a_hung_platform_loop_stops_the_watchdog_while_a_healthy_run_keeps_feeding_it() {
    // A platform that accepts connections and never answers.
    let hung = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", hung.local_addr().unwrap());
    let held = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let keep = std::sync::Arc::clone(&held);
    std::thread::spawn(move || {
        for s in hung.incoming().flatten() {
            keep.lock().unwrap().push(s);
        }
    });
    let (mut stuck, lines, socket, dir) = run_with_watchdog("hung", &url);
    // Past the 3 s watchdog, the alive loop's call still hangs (60 s timeout).
    std::thread::sleep(Duration::from_secs(5));
    let fed = watchdogs_within(&socket, Duration::from_secs(6));
    assert!(!held.lock().unwrap().is_empty(), "the platform saw no call");
    let _ = stuck.0.kill();
    let _ = stuck.0.wait();
    let stderr: String = lines.try_iter().collect();
    assert_eq!(
        fed, 0,
        "WATCHDOG=1 sent while a loop hung; stderr:\n{stderr}"
    );
    assert!(stderr.contains("stuck: opencti-alive"), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);

    let fake = FakeOpenCti::start(TOKEN);
    let (mut healthy, _lines, socket, dir) = run_with_watchdog("healthy", &fake.url());
    std::thread::sleep(Duration::from_secs(5));
    let fed = watchdogs_within(&socket, Duration::from_secs(6));
    let _ = healthy.0.kill();
    let _ = healthy.0.wait();
    // Half the interval is 1.5 s: about four in six seconds.
    assert!(fed >= 2, "only {fed} WATCHDOG=1 in 6 s from a healthy run");
    let _ = std::fs::remove_dir_all(&dir);
}
