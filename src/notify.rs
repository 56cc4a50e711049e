//! systemd's notify protocol (sd_notify, `Type=notify`): `READY=1` once the
//! platform threads run, `STOPPING=1` on shutdown, `WATCHDOG=1` from the loops'
//! beat when `WatchdogSec=` is set. One datagram per message to
//! `$NOTIFY_SOCKET` (a path or an `@abstract` name) with std's `UnixDatagram`.
//! Outside systemd (no `NOTIFY_SOCKET`) every call is a no-op.

use std::fmt;
use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// A notify datagram could not be sent.
#[derive(Debug)]
pub struct Error {
    /// The message's first assignment (`READY=1`, ...).
    what: &'static str,
    /// `$NOTIFY_SOCKET` as given.
    socket: String,
    source: io::Error,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "sd_notify {} to {}: {}",
            self.what, self.socket, self.source
        )
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// The manager's socket, as parsed from `$NOTIFY_SOCKET`.
struct Target {
    name: String,
    addr: SocketAddr,
}

/// Sends notify messages; shared by `run` and every loop's beat.
pub struct Notifier {
    target: Option<Target>,
    /// Half of `WATCHDOG_USEC`: the shortest gap between two `WATCHDOG=1`.
    watchdog_gap: Option<Duration>,
    last_watchdog: Mutex<Option<Instant>>,
    /// Set once READY=1 went out: a loop's beat may come first, and systemd should
    /// hear READY=1 before any WATCHDOG=1.
    ready: AtomicBool,
}

fn var<'a>(env: &'a [(String, String)], name: &str) -> Option<&'a str> {
    env.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

fn parse_target(value: &str) -> Result<SocketAddr, String> {
    let addr = if let Some(name) = value.strip_prefix('@') {
        SocketAddr::from_abstract_name(name.as_bytes())
    } else if value.starts_with('/') {
        SocketAddr::from_pathname(value)
    } else {
        // systemd ≥ 254 can also hand out `vsock:` addresses (VMs); not for a host daemon.
        return Err(format!(
            "NOTIFY_SOCKET={value}: only a path or an @abstract name is supported"
        ));
    };
    addr.map_err(|e| format!("NOTIFY_SOCKET={value}: {e}"))
}

/// `WATCHDOG_USEC`, unless `WATCHDOG_PID` says it is meant for another process
/// (a wrapper that execs us keeps its pid; a child we started would not).
fn watchdog_interval(env: &[(String, String)]) -> Option<Duration> {
    if let Some(pid) = var(env, "WATCHDOG_PID")
        && pid.trim().parse::<u32>().ok() != Some(std::process::id())
    {
        return None;
    }
    let usec = var(env, "WATCHDOG_USEC")?.trim().parse::<u64>().ok()?;
    (usec > 0).then(|| Duration::from_micros(usec))
}

impl Notifier {
    /// Reads `NOTIFY_SOCKET`, `WATCHDOG_USEC` and `WATCHDOG_PID` from `env`.
    /// An unusable `NOTIFY_SOCKET` is logged and leaves the notifier disabled.
    pub fn from_env(env: &[(String, String)]) -> Notifier {
        let target = var(env, "NOTIFY_SOCKET")
            .filter(|v| !v.is_empty())
            .and_then(|v| match parse_target(v) {
                Ok(addr) => Some(Target {
                    name: v.to_string(),
                    addr,
                }),
                Err(e) => {
                    log::warn!("{e}; systemd will not hear READY=1 or WATCHDOG=1");
                    None
                }
            });
        let watchdog_gap = target
            .as_ref()
            .and(watchdog_interval(env))
            .map(|interval| interval / 2);
        Notifier {
            target,
            watchdog_gap,
            last_watchdog: Mutex::new(None),
            ready: AtomicBool::new(false),
        }
    }

    /// True when started by a service manager that listens.
    pub fn is_enabled(&self) -> bool {
        self.target.is_some()
    }

    /// The watchdog interval systemd asked for (`WatchdogSec=`), if any.
    pub fn watchdog_interval(&self) -> Option<Duration> {
        self.watchdog_gap.map(|gap| gap * 2)
    }

    fn send(&self, what: &'static str, message: &str) -> Result<bool, Error> {
        let Some(target) = &self.target else {
            return Ok(false);
        };
        let error = |source| Error {
            what,
            socket: target.name.clone(),
            source,
        };
        let socket = UnixDatagram::unbound().map_err(error)?;
        socket
            .send_to_addr(message.as_bytes(), &target.addr)
            .map_err(error)?;
        Ok(true)
    }

    /// `READY=1` with a `STATUS=` line. Ok(false): not under systemd.
    ///
    /// # Errors
    /// The datagram could not be sent (socket gone, permission).
    pub fn ready(&self, status: &str) -> Result<bool, Error> {
        let status = status.replace('\n', " ");
        let sent = self.send("READY=1", &format!("READY=1\nSTATUS={status}\n"));
        self.ready.store(true, Ordering::Release);
        sent
    }

    /// `STOPPING=1`: systemd then waits for the exit instead of calling it a crash.
    ///
    /// # Errors
    /// The datagram could not be sent.
    pub fn stopping(&self) -> Result<bool, Error> {
        self.send("STOPPING=1", "STOPPING=1\nSTATUS=shutting down\n")
    }

    /// `WATCHDOG=1`, at most once per half interval and only after `ready`;
    /// Ok(false) when skipped or no watchdog is set. Loops wake often; systemd needs one per interval.
    ///
    /// # Errors
    /// The datagram could not be sent.
    pub fn watchdog(&self) -> Result<bool, Error> {
        self.watchdog_at(Instant::now())
    }

    fn watchdog_at(&self, now: Instant) -> Result<bool, Error> {
        let Some(gap) = self.watchdog_gap else {
            return Ok(false);
        };
        if !self.ready.load(Ordering::Acquire) {
            return Ok(false);
        }
        {
            // A poisoned lock only means another beat panicked; the instant is still valid.
            let mut last = self.last_watchdog.lock().unwrap_or_else(|p| p.into_inner());
            if last.is_some_and(|t| now.saturating_duration_since(t) < gap) {
                return Ok(false);
            }
            *last = Some(now);
        }
        self.send("WATCHDOG=1", "WATCHDOG=1\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    static N: AtomicUsize = AtomicUsize::new(0);

    fn unique(tag: &str) -> String {
        let n = N.fetch_add(1, Ordering::Relaxed);
        format!("xtm-notify-{tag}-{}-{n}", std::process::id())
    }

    /// A listening socket at a fresh path, as systemd binds it.
    fn path_listener() -> (UnixDatagram, String, tempdir::Dir) {
        let dir = tempdir::Dir::new(&unique("dir"));
        let path = format!("{}/notify", dir.path);
        let l = UnixDatagram::bind(&path).unwrap();
        l.set_nonblocking(true).unwrap();
        (l, path, dir)
    }

    mod tempdir {
        pub struct Dir {
            pub path: String,
        }
        impl Dir {
            pub fn new(name: &str) -> Dir {
                let path = std::env::temp_dir().join(name);
                std::fs::create_dir_all(&path).unwrap();
                Dir {
                    path: path.to_string_lossy().into_owned(),
                }
            }
        }
        impl Drop for Dir {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.path);
            }
        }
    }

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// Every datagram waiting on `l`, without blocking.
    fn received(l: &UnixDatagram) -> Vec<String> {
        let mut out = Vec::new();
        let mut buf = [0u8; 512];
        while let Ok(n) = l.recv(&mut buf) {
            out.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
        out
    }

    #[test]
    fn ready_and_stopping_reach_a_path_socket() {
        let (l, path, _dir) = path_listener();
        let n = Notifier::from_env(&env(&[("NOTIFY_SOCKET", &path)]));
        assert!(n.is_enabled());
        assert!(n.ready("2 platform loop(s)").unwrap());
        assert!(n.stopping().unwrap());
        assert_eq!(
            received(&l),
            [
                "READY=1\nSTATUS=2 platform loop(s)\n",
                "STOPPING=1\nSTATUS=shutting down\n"
            ]
        );
    }

    #[test]
    fn ready_reaches_an_abstract_socket() {
        let name = unique("abstract");
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let l = UnixDatagram::bind_addr(&addr).unwrap();
        l.set_nonblocking(true).unwrap();
        let n = Notifier::from_env(&env(&[("NOTIFY_SOCKET", &format!("@{name}"))]));
        assert!(n.ready("up").unwrap());
        assert_eq!(received(&l), ["READY=1\nSTATUS=up\n"]);
    }

    #[test]
    fn a_status_with_a_newline_stays_one_assignment() {
        let (l, path, _dir) = path_listener();
        let n = Notifier::from_env(&env(&[("NOTIFY_SOCKET", &path)]));
        n.ready("a\nWATCHDOG=trigger").unwrap();
        assert_eq!(received(&l), ["READY=1\nSTATUS=a WATCHDOG=trigger\n"]);
    }

    #[test]
    fn without_notify_socket_nothing_is_sent_and_nothing_fails() {
        let n = Notifier::from_env(&env(&[("WATCHDOG_USEC", "1000000")]));
        assert!(!n.is_enabled());
        assert!(!n.ready("up").unwrap());
        assert!(!n.stopping().unwrap());
        assert!(!n.watchdog().unwrap());
        assert_eq!(n.watchdog_interval(), None);
    }

    #[test]
    fn watchdog_is_sent_at_most_once_per_half_interval() {
        let (l, path, _dir) = path_listener();
        let n = Notifier::from_env(&env(&[
            ("NOTIFY_SOCKET", &path),
            ("WATCHDOG_USEC", "60000000"),
        ]));
        assert_eq!(n.watchdog_interval(), Some(Duration::from_secs(60)));
        let t0 = Instant::now();
        // Before READY=1 no beat is sent: systemd hears READY=1 first.
        assert!(!n.watchdog_at(t0).unwrap());
        assert!(n.ready("up").unwrap());
        assert!(n.watchdog_at(t0).unwrap());
        assert!(!n.watchdog_at(t0 + Duration::from_secs(29)).unwrap());
        assert!(n.watchdog_at(t0 + Duration::from_secs(30)).unwrap());
        assert!(!n.watchdog_at(t0 + Duration::from_secs(31)).unwrap());
        assert_eq!(
            received(&l),
            ["READY=1\nSTATUS=up\n", "WATCHDOG=1\n", "WATCHDOG=1\n"]
        );
    }

    #[test]
    fn watchdog_is_off_without_watchdog_usec_or_for_another_pid() {
        let (l, path, _dir) = path_listener();
        let other = (std::process::id() + 1).to_string();
        let ours = std::process::id().to_string();
        for vars in [
            vec![("NOTIFY_SOCKET", path.as_str())],
            vec![("NOTIFY_SOCKET", &path), ("WATCHDOG_USEC", "0")],
            vec![("NOTIFY_SOCKET", &path), ("WATCHDOG_USEC", "soon")],
            vec![
                ("NOTIFY_SOCKET", &path),
                ("WATCHDOG_USEC", "1000000"),
                ("WATCHDOG_PID", &other),
            ],
        ] {
            let n = Notifier::from_env(&env(&vars));
            n.ready("up").unwrap();
            assert!(!n.watchdog().unwrap(), "{vars:?}");
        }
        let n = Notifier::from_env(&env(&[
            ("NOTIFY_SOCKET", &path),
            ("WATCHDOG_USEC", "1000000"),
            ("WATCHDOG_PID", &ours),
        ]));
        n.ready("up").unwrap();
        assert!(n.watchdog().unwrap());
        let got = received(&l);
        assert_eq!(
            got.iter().filter(|m| *m == "READY=1\nSTATUS=up\n").count(),
            5
        );
        assert_eq!(got.last().map(String::as_str), Some("WATCHDOG=1\n"));
        assert_eq!(got.iter().filter(|m| *m == "WATCHDOG=1\n").count(), 1);
    }

    #[test]
    fn an_unsupported_address_disables_the_notifier() {
        let n = Notifier::from_env(&env(&[("NOTIFY_SOCKET", "vsock:2:1234")]));
        assert!(!n.is_enabled());
        assert!(!n.ready("up").unwrap());
    }

    #[test]
    fn a_missing_socket_is_an_error_naming_message_and_socket() {
        let dir = tempdir::Dir::new(&unique("gone"));
        let path = format!("{}/nobody-listens", dir.path);
        let n = Notifier::from_env(&env(&[("NOTIFY_SOCKET", &path)]));
        let e = n.ready("up").unwrap_err().to_string();
        assert!(
            e.starts_with(&format!("sd_notify READY=1 to {path}: ")),
            "{e}"
        );
    }
}
