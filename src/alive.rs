//! The alive state machine (CONTRACT §8.2): version → register → ping, again
//! on a version change or when the platform forgets the manager. `step` is pure
//! — (state, answer) → (state, next call, delay, what to say) — and `run` is
//! its thread, which never waits for reconciliation or actions.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, after, select};

use crate::liveness::Beat;
use crate::platform::{self, Platform};

/// First retry delay while the platform is unreachable; doubled up to the ping period.
pub const RETRY_FIRST: Duration = Duration::from_secs(2);

/// The next request to make.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Call {
    Version,
    Register,
    Ping,
}

/// What the platform answered to the last call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    Version(Result<String, Failure>),
    Register(Result<(), Failure>),
    Ping(Result<String, Failure>),
    /// The reconcile side was told "not registered" by a listing.
    ListingRefused,
}

/// A failed call, as far as the state machine cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The platform does not know this manager.
    NotRegistered(String),
    /// Anything else: unreachable, refused, unreadable.
    Other(String),
}

impl Failure {
    pub fn of(e: &platform::Error) -> Failure {
        match e {
            platform::Error::NotRegistered { detail, .. } => Failure::NotRegistered(detail.clone()),
            other => Failure::Other(other.to_string()),
        }
    }

    fn text(&self) -> &str {
        match self {
            Failure::NotRegistered(s) | Failure::Other(s) => s,
        }
    }
}

/// Where the state machine stands.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct State {
    /// The platform version last seen.
    pub version: Option<String>,
    /// Registration succeeded and the platform has not since said otherwise.
    pub registered: bool,
    /// Consecutive failed calls (for the retry delay, and to log a change once).
    pub failures: u32,
}

/// Timings and the platform's quirk.
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    pub ping_every: Duration,
    /// OpenAEV's ping answers the registered version: ask `version()` after it.
    pub ping_reports_current_version: bool,
}

/// How loud a message is: the planner's note levels.
pub use crate::reconcile::Level;

/// The step's decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Next {
    pub call: Call,
    pub after: Duration,
    pub say: Option<(Level, String)>,
}

/// The delay before retry number `failures` (≥ 1): 2 s, 4 s, 8 s … up to the ping period.
pub fn retry_delay(failures: u32, ping_every: Duration) -> Duration {
    crate::time::doubling(RETRY_FIRST, failures, ping_every.max(RETRY_FIRST))
}

/// The first call of a fresh state machine.
pub fn start() -> Next {
    Next {
        call: Call::Version,
        after: Duration::ZERO,
        say: None,
    }
}

/// One transition. Failures are said at the first of a run (WARN/ERROR) and
/// then at DEBUG, so an unreachable platform is one line, not one per retry.
pub fn step(state: &State, answer: Answer, s: Schedule) -> (State, Next) {
    let mut st = state.clone();
    let now = |call| Next {
        call,
        after: Duration::ZERO,
        say: None,
    };
    let failed = |st: &mut State, call: Call, what: &str, f: &Failure| {
        st.failures = st.failures.saturating_add(1);
        let after = retry_delay(st.failures, s.ping_every);
        let level = if st.failures == 1 {
            Level::Warn
        } else {
            Level::Debug
        };
        let text = format!(
            "{what}: {}; retrying in {} s{}",
            f.text(),
            after.as_secs(),
            if st.failures == 1 {
                " (further failures logged at debug level until it recovers)"
            } else {
                ""
            }
        );
        Next {
            call,
            after,
            say: Some((level, text)),
        }
    };
    let recovered = |st: &mut State| -> Option<(Level, String)> {
        let was = std::mem::take(&mut st.failures);
        (was > 1).then(|| {
            (
                Level::Info,
                format!("platform reachable again after {was} failed calls"),
            )
        })
    };
    let next = match answer {
        Answer::Version(Ok(v)) => {
            let say = recovered(&mut st);
            let changed = st.version.as_deref().map(str::trim) != Some(v.trim());
            let first = st.version.is_none();
            st.version = Some(v.clone());
            if changed || !st.registered {
                let text = if first {
                    format!("platform version {v}")
                } else {
                    format!("platform version changed to {v}: registering again")
                };
                Next {
                    call: Call::Register,
                    after: Duration::ZERO,
                    say: Some((Level::Info, text)).or(say),
                }
            } else {
                Next {
                    call: Call::Ping,
                    after: s.ping_every,
                    say: say.or(Some((Level::Debug, "ping ok".into()))),
                }
            }
        }
        Answer::Version(Err(f)) => failed(&mut st, Call::Version, "platform not reachable", &f),
        Answer::Register(Ok(())) => {
            st.registered = true;
            st.failures = 0;
            Next {
                call: Call::Ping,
                after: s.ping_every,
                say: Some((Level::Info, "manager registered".into())),
            }
        }
        Answer::Register(Err(f)) => {
            st.registered = false;
            let mut n = failed(&mut st, Call::Register, "registration failed", &f);
            if let Some((level, _)) = &mut n.say
                && *level == Level::Warn
            {
                *level = Level::Error;
            }
            n
        }
        Answer::Ping(Ok(v)) => {
            let say = recovered(&mut st);
            if !s.ping_reports_current_version {
                let mut n = now(Call::Version);
                n.say = say;
                n
            } else if st.version.as_deref().map(str::trim) != Some(v.trim()) {
                let known = st.version.replace(v.clone()).unwrap_or_default();
                Next {
                    call: Call::Register,
                    after: Duration::ZERO,
                    say: Some((
                        Level::Info,
                        format!("platform version changed {known} -> {v}: registering again"),
                    )),
                }
            } else if !st.registered {
                let mut n = now(Call::Register);
                n.say = say;
                n
            } else {
                Next {
                    call: Call::Ping,
                    after: s.ping_every,
                    say: say.or(Some((Level::Debug, "ping ok".into()))),
                }
            }
        }
        Answer::Ping(Err(Failure::NotRegistered(d))) => {
            st.registered = false;
            Next {
                call: Call::Register,
                after: Duration::ZERO,
                say: Some((
                    Level::Error,
                    format!("platform does not know manager ({d}): registering again"),
                )),
            }
        }
        Answer::Ping(Err(f)) => {
            // Back to step 1; reconciliation goes on meanwhile (§1: a transient
            // alive failure does not stop it).
            failed(&mut st, Call::Version, "ping failed", &f)
        }
        Answer::ListingRefused => {
            st.registered = false;
            Next {
                call: Call::Register,
                after: Duration::ZERO,
                say: Some((
                    Level::Warn,
                    "listing refused: manager not registered; registering again".into(),
                )),
            }
        }
    };
    (st, next)
}

/// Makes `call` against the platform.
pub fn perform(platform: &dyn Platform, call: Call) -> Answer {
    match call {
        Call::Version => Answer::Version(platform.version().map_err(|e| Failure::of(&e))),
        Call::Register => Answer::Register(platform.register().map_err(|e| Failure::of(&e))),
        Call::Ping => Answer::Ping(platform.ping().map_err(|e| Failure::of(&e))),
    }
}

/// What the alive thread shares with the reconcile side.
#[derive(Debug, Default)]
pub struct Shared {
    registered: AtomicBool,
}

impl Shared {
    pub fn registered(&self) -> bool {
        self.registered.load(Ordering::Relaxed)
    }

    pub fn set_registered(&self, v: bool) {
        self.registered.store(v, Ordering::Relaxed);
    }
}

/// Logs a step's message under the platform's name.
pub fn say(platform: &str, said: Option<(Level, String)>) {
    if let Some((level, t)) = said {
        log::log!(level.log_level(), "{platform}: {t}");
    }
}

/// The alive thread: runs until `shutdown` closes. `refused` carries the
/// reconcile side's "listing refused: not registered" (re-register now).
/// `call_limit` is the longest one call may take (its request timeout + slack).
pub fn run(
    platform: Arc<dyn Platform>,
    shared: Arc<Shared>,
    schedule: Schedule,
    refused: Receiver<()>,
    shutdown: Receiver<()>,
    beat: Arc<Beat>,
    call_limit: Duration,
) {
    let name = platform.kind().as_str();
    let mut state = State::default();
    let mut next = start();
    loop {
        let until = Instant::now() + next.after;
        beat.waiting(until, call_limit);
        let answer = select! {
            recv(shutdown) -> _ => break,
            recv(refused) -> r => match r {
                Ok(()) => Answer::ListingRefused,
                Err(_) => break,
            },
            recv(after(next.after)) -> _ => {
                beat.working(call_limit);
                perform(&*platform, next.call)
            }
        };
        let (s, n) = step(&state, answer, schedule);
        say(name, n.say.clone());
        shared.set_registered(s.registered);
        state = s;
        next = n;
    }
    log::info!("{name}: alive loop stopped");
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Schedule = Schedule {
        ping_every: Duration::from_secs(60),
        ping_reports_current_version: true,
    };

    fn other(s: &str) -> Failure {
        Failure::Other(s.into())
    }

    fn alive() -> State {
        State {
            version: Some("6.8.0".into()),
            registered: true,
            failures: 0,
        }
    }

    #[test]
    fn version_then_register_then_ping_on_schedule() {
        let (s, n) = step(&State::default(), Answer::Version(Ok("6.8.0".into())), S);
        assert_eq!((n.call, n.after), (Call::Register, Duration::ZERO));
        let (s, n) = step(&s, Answer::Register(Ok(())), S);
        assert!(s.registered);
        assert_eq!((n.call, n.after), (Call::Ping, S.ping_every));
        let (s2, n) = step(&s, Answer::Ping(Ok("6.8.0".into())), S);
        assert_eq!(s2, s);
        assert_eq!((n.call, n.after), (Call::Ping, S.ping_every));
    }

    #[test]
    fn an_unreachable_platform_is_retried_with_backoff_and_said_once() {
        let mut s = State::default();
        let mut delays = Vec::new();
        let mut loud = 0;
        for _ in 0..7 {
            let (s2, n) = step(&s, Answer::Version(Err(other("refused"))), S);
            assert_eq!(n.call, Call::Version);
            delays.push(n.after.as_secs());
            if matches!(n.say, Some((Level::Warn, _))) {
                loud += 1;
            }
            s = s2;
        }
        assert_eq!(delays, [2, 4, 8, 16, 32, 60, 60]);
        assert_eq!(loud, 1);
        let (s, n) = step(&s, Answer::Version(Ok("6.8.0".into())), S);
        assert_eq!(s.failures, 0);
        assert_eq!(n.call, Call::Register);
    }

    #[test]
    fn a_version_change_seen_by_ping_registers_again() {
        let (s, n) = step(&alive(), Answer::Ping(Ok("6.9.0".into())), S);
        assert_eq!(s.version.as_deref(), Some("6.9.0"));
        assert_eq!(n.call, Call::Register);
    }

    #[test]
    fn openaev_asks_the_version_after_each_ping() {
        let s = Schedule {
            ping_reports_current_version: false,
            ..S
        };
        let (st, n) = step(&alive(), Answer::Ping(Ok("1.0".into())), s);
        assert_eq!((n.call, n.after), (Call::Version, Duration::ZERO));
        let (_, n) = step(&st, Answer::Version(Ok("6.8.0".into())), s);
        assert_eq!((n.call, n.after), (Call::Ping, S.ping_every));
        let (_, n) = step(&st, Answer::Version(Ok("7.0.0".into())), s);
        assert_eq!(n.call, Call::Register);
    }

    #[test]
    fn a_forgotten_manager_registers_again_at_once() {
        let (s, n) = step(
            &alive(),
            Answer::Ping(Err(Failure::NotRegistered("unknown".into()))),
            S,
        );
        assert!(!s.registered);
        assert_eq!((n.call, n.after), (Call::Register, Duration::ZERO));
        let (s, n) = step(&alive(), Answer::ListingRefused, S);
        assert!(!s.registered);
        assert_eq!(n.call, Call::Register);
    }

    #[test]
    fn a_failed_ping_goes_back_to_the_version_and_keeps_the_registration() {
        let (s, n) = step(&alive(), Answer::Ping(Err(other("timeout"))), S);
        assert!(s.registered, "reconciliation goes on meanwhile");
        assert_eq!((n.call, n.after), (Call::Version, RETRY_FIRST));
        let (s, n) = step(&s, Answer::Version(Ok("6.8.0".into())), S);
        assert_eq!((n.call, n.after), (Call::Ping, S.ping_every));
        assert_eq!(s.failures, 0);
    }

    #[test]
    fn a_failed_registration_is_retried_with_backoff() {
        let s = State {
            version: Some("6.8.0".into()),
            ..State::default()
        };
        let (s, n) = step(&s, Answer::Register(Err(other("500"))), S);
        assert_eq!((n.call, n.after), (Call::Register, RETRY_FIRST));
        assert!(matches!(n.say, Some((Level::Error, _))));
        let (_, n) = step(&s, Answer::Register(Err(other("500"))), S);
        assert_eq!(n.after, Duration::from_secs(4));
        assert!(matches!(n.say, Some((Level::Debug, _))));
    }
}
