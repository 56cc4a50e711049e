//! The commands behind `main`: start-up (config, logging, key, clients),
//! `run`, `plan` and `check`. Start-up problems print what is wrong, where it
//! came from and what to do, then exit non-zero — never a backtrace (DESIGN 8).

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::thread::JoinHandle;

use std::time::Duration;

use crossbeam_channel::{Receiver, bounded};

use crate::config::{self, Loaded, Selector, Settings};
use crate::crypto::{Decryptor, Key};
use crate::engine::{Decrypt, Engine, Options};
use crate::env;
use crate::liveness::Loops;
use crate::logs::{self, LogJob};
use crate::notify::{self, Notifier};
use crate::orchestrator::Orchestrator;
use crate::orchestrator::docker::Docker;
use crate::orchestrator::kubernetes::Kubernetes;
use crate::orchestrator::portainer::Portainer;
use crate::orchestrator::swarm::Swarm;
use crate::platform::{Platform, PlatformKind, openaev, opencti};
use crate::pool;
use crate::reconcile::Policy;

/// Exit status for configuration and start-up errors.
const EXIT_CONFIG: u8 = 2;
/// Exit status after a panic in any thread (EX_SOFTWARE).
pub const EXIT_PANIC: i32 = 70;

/// Makes a panic in any thread end the process with `EXIT_PANIC` after the
/// usual message (D2): a dead reconcile loop must never hide behind a live
/// ping loop, and a supervisor restarts what exits. Nothing in src/ is meant
/// to panic; this is the net under a bug.
pub fn exit_on_panic() {
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        default_hook(info);
        std::process::exit(EXIT_PANIC);
    }));
}
/// How many log jobs may wait for the shipper before loops skip a schedule.
const LOG_QUEUE: usize = 1024;

fn load(dir: Option<&Path>, env: &[(String, String)]) -> Result<Loaded, ExitCode> {
    config::load(dir, env).map_err(|problems| {
        eprintln!(
            "xtm-composer: the configuration has {} problem(s):",
            problems.len()
        );
        for p in &problems {
            eprintln!("  - {p}");
        }
        ExitCode::from(EXIT_CONFIG)
    })
}

fn load_key(settings: &Settings) -> Result<Key, String> {
    let (key, warnings) = Key::load(&settings.manager).map_err(|e| e.to_string())?;
    for w in warnings {
        log::warn!("{w}");
    }
    Ok(key)
}

fn orchestrator_for(
    settings: &Settings,
    kind: PlatformKind,
) -> Result<Arc<dyn Orchestrator>, String> {
    built_orchestrator(settings, kind).map(|(o, _)| o)
}

/// The orchestrator of `kind` and where it works, for the start line
/// (`docker unix:///var/run/docker.sock`, `kubernetes namespace connectors`).
fn built_orchestrator(
    settings: &Settings,
    kind: PlatformKind,
) -> Result<(Arc<dyn Orchestrator>, String), String> {
    let daemon = &settings.platform(kind).daemon;
    let engine = || crate::http::without_userinfo(settings.engine(kind).as_str());
    let built: Result<(Arc<dyn Orchestrator>, String), _> =
        match daemon.selector {
            Selector::Docker => Docker::new(settings, kind)
                .map(|d| (Arc::new(d) as _, format!("docker {}", engine()))),
            Selector::Portainer => Portainer::new(settings, kind).map(|p| {
                let at = daemon.portainer.as_ref();
                let api = at.and_then(|p| p.api.as_deref()).unwrap_or("-");
                let api = crate::http::without_userinfo(api);
                let env_id = at.and_then(|p| p.env_id.as_deref()).unwrap_or("-");
                (
                    Arc::new(p) as _,
                    format!("portainer {api} environment {env_id}"),
                )
            }),
            Selector::Swarm => Swarm::new(settings, kind)
                .map(|s| (Arc::new(s) as _, format!("swarm {}", engine()))),
            Selector::Kubernetes => Kubernetes::new(settings, kind).map(|k| {
                let at = format!("kubernetes namespace {}", k.namespace());
                (Arc::new(k) as _, at)
            }),
        };
    built.map_err(|e| e.to_string())
}

fn platform_for(
    settings: &Settings,
    kind: PlatformKind,
    key: &Key,
) -> Result<Arc<dyn Platform>, String> {
    let m = &settings.manager;
    match kind {
        PlatformKind::OpenCti => {
            opencti::Client::new(&settings.opencti, &m.id, &m.name, key.public_pkcs1_pem())
                .map(|c| Arc::new(c) as Arc<dyn Platform>)
                .map_err(|e| format!("opencti client: {e}"))
        }
        PlatformKind::OpenAev => {
            openaev::Client::new(&settings.openaev, &m.id, &m.name, key.public_spki_pem())
                .map(|c| Arc::new(c) as Arc<dyn Platform>)
                .map_err(|e| format!("openaev client: {e}"))
        }
    }
}

fn enabled(settings: &Settings) -> Vec<PlatformKind> {
    [PlatformKind::OpenCti, PlatformKind::OpenAev]
        .into_iter()
        .filter(|k| settings.platform(*k).enable)
        .collect()
}

/// The longest legitimate gap of a platform loop step: one platform call
/// (connect + request timeout) and one engine listing, with room to spare.
fn step_limit(settings: &Settings, kind: PlatformKind) -> Duration {
    let p = settings.platform(kind);
    Duration::from_secs(
        p.connect_timeout
            .saturating_add(p.request_timeout)
            .saturating_add(ENGINE_CALL.as_secs())
            .saturating_add(30),
    )
}

/// The longest the engine may take for one call (Docker's request timeout).
const ENGINE_CALL: Duration = Duration::from_secs(120);
/// The longest one connector's actions may legitimately take: a pull (one
/// hour, the pull timeout) plus create, start and a status report.
const ACTION_LIMIT: Duration = Duration::from_secs(3600 + 300);

/// Builds one engine per enabled platform.
///
/// # Errors
/// The first platform whose client or orchestrator cannot be built.
pub fn engines(
    settings: &Settings,
    decryptor: &Arc<Decryptor>,
    process_env: &[(String, String)],
    logs: Option<crossbeam_channel::Sender<LogJob>>,
) -> Result<Vec<Engine>, String> {
    engines_and_targets(settings, decryptor, process_env, logs).map(|(e, _)| e)
}

/// A platform and where its orchestrator works (`docker unix:///var/run/docker.sock`).
type Target = (PlatformKind, String);

/// As [`engines`], with where each platform's orchestrator works (for the start line).
///
/// # Errors
/// As [`engines`].
fn engines_and_targets(
    settings: &Settings,
    decryptor: &Arc<Decryptor>,
    process_env: &[(String, String)],
    logs: Option<crossbeam_channel::Sender<LogJob>>,
) -> Result<(Vec<Engine>, Vec<Target>), String> {
    let m = &settings.manager;
    let mut out = Vec::new();
    let mut targets = Vec::new();
    for kind in enabled(settings) {
        let p = settings.platform(kind);
        let platform = platform_for(settings, kind, decryptor.key())?;
        let (orchestrator, target) = built_orchestrator(settings, kind)?;
        targets.push((kind, target));
        let orchestrator: Arc<dyn Orchestrator> = Arc::new(crate::observe::counted::Counted {
            inner: orchestrator,
            platform: kind,
        });
        let ca = p.with_proxy && !p.https_proxy_ca.is_empty();
        let options = Options {
            execute_every: Duration::from_secs(m.execute_schedule),
            ping_every: Duration::from_secs(m.ping_alive_schedule),
            logs_every: Duration::from_secs(p.logs_schedule),
            max_parallel: m.max_parallel,
            name_prefix: m.name_prefix.clone(),
            show_env_vars: m.debug.show_env_vars,
            show_sensitive_env_vars: m.debug.show_sensitive_env_vars,
            policy: Policy {
                removal_grace: Duration::from_secs(m.removal_grace),
                crash_loop_stop_after: m.crash_loop.stop_after,
            },
            step_limit: m
                .observability
                .stale_after
                .map_or_else(|| step_limit(settings, kind), Duration::from_secs),
            action_limit: ACTION_LIMIT,
        };
        let ctx = env::Context::new(settings, kind, process_env, ca);
        let decrypt: Arc<dyn Decrypt> = decryptor.clone();
        out.push(Engine::new(
            platform,
            orchestrator,
            decrypt,
            ctx,
            options,
            logs.clone(),
        ));
    }
    Ok((out, targets))
}

fn startup(
    dir: Option<&Path>,
    env: &[(String, String)],
) -> Result<(Settings, Arc<Decryptor>), ExitCode> {
    let loaded = load(dir, env)?;
    if let Err(e) = crate::logging::init(&loaded.settings) {
        eprintln!("xtm-composer: {e}");
        return Err(ExitCode::from(EXIT_CONFIG));
    }
    let console = loaded.settings.manager.logger.console;
    log::info!("configuration from {}", loaded.dir.display());
    for w in &loaded.warnings {
        log::warn!("{w}");
        if !console {
            // The log may go nowhere (that is one of the warnings): say it where it is seen.
            eprintln!("xtm-composer: warning: {w}");
        }
    }
    let key = load_key(&loaded.settings).map_err(|e| {
        fatal(&loaded.settings, &format!("private key: {e}"));
        ExitCode::from(EXIT_CONFIG)
    })?;
    Ok((loaded.settings, Arc::new(Decryptor::new(key))))
}

/// A start-up error, printed once: as a log line when the log reaches
/// stderr, else as plain text there (and in the log file, if any).
fn fatal(settings: &Settings, message: &str) {
    log::error!("{message}");
    if !settings.manager.logger.console {
        eprintln!("xtm-composer: {message}");
    }
}

/// The start line: version, manager, and per platform its URL, orchestrator and
/// where that works, so the operator sees at once what this composer talks to.
fn started_line(settings: &Settings, targets: &[Target]) -> String {
    let platforms: Vec<String> = targets
        .iter()
        .map(|(kind, at)| {
            let url = crate::http::without_userinfo(&settings.platform(*kind).url);
            format!("{kind} {url} -> {at}")
        })
        .collect();
    format!(
        "xtm-composer {} started, manager {}, {} worker(s): {}",
        crate::VERSION,
        settings.manager.id,
        settings.manager.max_parallel,
        platforms.join("; ")
    )
}

fn spawn(name: String, f: impl FnOnce() + Send + 'static) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name(name)
        .stack_size(crate::engine::LOOP_STACK)
        .spawn(f)
}

/// `run`: until SIGTERM/SIGINT. `beat` is called whenever every loop is fresh.
pub fn run(
    dir: Option<&Path>,
    env: &[(String, String)],
    beat: Arc<dyn Fn() + Send + Sync>,
) -> ExitCode {
    let (settings, decryptor) = match startup(dir, env) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let notifier = Arc::new(Notifier::from_env(env));
    let (stop_tx, stop_rx) = bounded::<()>(0);
    let (log_tx, log_rx) = bounded::<LogJob>(LOG_QUEUE);
    let (mut engines, targets) = match engines_and_targets(&settings, &decryptor, env, Some(log_tx))
    {
        Ok(built) => built,
        Err(e) => {
            fatal(&settings, &e);
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    // With systemd's watchdog, a loop silent for longer than its interval is stuck.
    let watchdog = notifier.watchdog_interval();
    if let Some(interval) = watchdog {
        log::info!("systemd watchdog: {} s", interval.as_secs());
        for e in &mut engines {
            if e.options.step_limit > interval {
                log::warn!(
                    "{}: WatchdogSec ({} s) is shorter than the longest legitimate call ({} s): a slow platform or engine may get the process restarted",
                    e.platform.kind(),
                    interval.as_secs(),
                    e.options.step_limit.as_secs()
                );
            }
            e.options.step_limit = interval;
        }
    }
    let shipper_limit = engines
        .iter()
        .map(|e| e.options.step_limit)
        .max()
        .unwrap_or(ENGINE_CALL);
    let loops = Loops::default();
    let mut threads = Vec::new();
    let listener = match settings.manager.observability.listen.as_deref() {
        Some(addr) => match crate::observe::server::bind(addr) {
            Ok(l) => Some(l),
            Err(e) => {
                log::error!("{e}");
                eprintln!("xtm-composer: {e}");
                return ExitCode::from(EXIT_CONFIG);
            }
        },
        None => None,
    };
    let mut platforms = 0;
    let mut pool = None;
    let started = crate::signals::spawn(stop_tx).and_then(|_| {
        let (jobs, stop) = (log_rx, stop_rx.clone());
        let shipper_beat = loops.register("log-shipper", shipper_limit);
        threads.push(spawn("log-shipper".into(), move || {
            logs::run(&jobs, &stop, &shipper_beat, shipper_limit)
        })?);
        let p = pool::Pool::new(settings.manager.max_parallel, POOL_QUEUE, &loops)?;
        for e in engines {
            platforms += 1;
            threads.extend(e.spawn(p.handle(), &stop_rx, &loops)?);
        }
        pool = Some(p);
        if let Some(l) = listener {
            if let Ok(addr) = l.local_addr() {
                log::info!(
                    "observability listener on http://{addr} (/healthz /readyz /metrics /status)"
                );
            }
            threads.push(crate::observe::server::spawn(
                l,
                loops.clone(),
                stop_rx.clone(),
            )?);
        }
        let (stop, l, n) = (stop_rx.clone(), loops.clone(), Arc::clone(&notifier));
        threads.push(spawn("watchdog".into(), move || {
            supervise(&l, &n, &*beat, watchdog, &stop)
        })?);
        Ok(())
    });
    if let Err(e) = started {
        eprintln!("xtm-composer: cannot start threads: {e}");
        return ExitCode::FAILURE;
    }
    log::info!("{}", started_line(&settings, &targets));
    warn_on(notifier.ready(&format!("{platforms} platform loop(s) running")));
    // Every loop ends on its own; main only waits for the broadcast.
    let _ = stop_rx.recv();
    warn_on(notifier.stopping());
    if let Some(p) = pool {
        threads.extend(p.close());
    }
    wait_for(threads, SHUTDOWN_GRACE)
}

/// Jobs that may wait for a free worker; beyond that a connector waits a cycle.
const POOL_QUEUE: usize = 1024;

/// Sends `WATCHDOG=1` (and calls `beat`) only while every loop is fresh; says
/// once which loop went stale and once when all are fresh again.
fn supervise(
    loops: &Loops,
    notifier: &Notifier,
    beat: &(dyn Fn() + Send + Sync),
    watchdog: Option<Duration>,
    shutdown: &Receiver<()>,
) {
    let tick = watchdog
        .map(|w| (w / 4).max(Duration::from_millis(200)))
        .unwrap_or(Duration::from_secs(5));
    let mut was_stale = false;
    loop {
        let stale = loops.stale(std::time::Instant::now());
        if stale.is_empty() {
            if was_stale {
                log::info!("every loop makes progress again");
                was_stale = false;
            }
            beat();
            warn_on(notifier.watchdog());
        } else if !was_stale {
            let names: Vec<String> = stale
                .iter()
                .map(|s| format!("{} ({} s overdue)", s.name, s.overdue.as_secs()))
                .collect();
            log::error!(
                "stuck: {}; the systemd watchdog is no longer fed",
                names.join(", ")
            );
            was_stale = true;
        }
        crossbeam_channel::select! {
            recv(shutdown) -> _ => break,
            recv(crossbeam_channel::after(tick)) -> _ => {}
        }
    }
}

/// A lost notify datagram is worth a warning, never an exit: systemd acts on it itself.
fn warn_on(sent: Result<bool, notify::Error>) {
    if let Err(e) = sent {
        log::warn!("{e}");
    }
}

/// How long loops get to finish the call in flight after SIGTERM. A call still
/// running then (an image pull, a hung engine) is abandoned: the engine finishes
/// it on its side, and workloads are never touched by stopping.
const SHUTDOWN_GRACE: Duration = Duration::from_millis(1500);

fn wait_for(threads: Vec<JoinHandle<()>>, grace: Duration) -> ExitCode {
    let deadline = std::time::Instant::now() + grace;
    while std::time::Instant::now() < deadline && !threads.iter().all(|t| t.is_finished()) {
        std::thread::sleep(Duration::from_millis(10));
    }
    let busy = threads.iter().filter(|t| !t.is_finished()).count();
    if busy > 0 {
        log::warn!("stopped with {busy} thread(s) still in a call; workloads left running");
    } else {
        log::info!("stopped; workloads left running");
    }
    ExitCode::SUCCESS
}

/// How `plan` reports.
#[derive(Debug, Clone, Copy, Default)]
pub struct PlanOutput {
    /// One JSON document on stdout instead of text.
    pub json: bool,
    /// Exit 0 when nothing is to change, 2 when changes are planned, 1 on error.
    pub detailed_exitcode: bool,
}

/// `plan`: one listing and one workload list per platform, actions printed,
/// nothing changed — neither the workloads nor the platform (no registration).
/// Undeployable connectors and skipped listing entries are listed too.
pub fn plan(dir: Option<&Path>, env: &[(String, String)], out: PlanOutput) -> ExitCode {
    use crate::observe::report;
    // With --detailed-exitcode, 2 means "changes": any error is 1.
    let error = |code: ExitCode| {
        if out.detailed_exitcode {
            ExitCode::FAILURE
        } else {
            code
        }
    };
    let (settings, decryptor) = match startup(dir, env) {
        Ok(s) => s,
        Err(code) => return error(code),
    };
    let engines = match engines(&settings, &decryptor, env, None) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("xtm-composer: {e}");
            return error(ExitCode::from(EXIT_CONFIG));
        }
    };
    let (mut failed, mut changes, mut docs) = (false, 0, Vec::new());
    for e in engines {
        let kind = e.platform.kind();
        match e.observe_and_plan() {
            Ok((p, desired)) => {
                changes += report::changes(&p);
                if out.json {
                    docs.push(report::plan_json(kind.as_str(), &p, &desired, describe));
                    continue;
                }
                println!("{kind}: {} action(s)", p.actions.len());
                for a in &p.actions {
                    println!("  {}", describe(a));
                }
                for d in desired.iter().filter(|d| d.env.is_err()) {
                    let why = d.env.as_ref().err().map_or("", String::as_str);
                    println!(
                        "  not deployable {} ({}): {why}",
                        d.connector.id, d.connector.name
                    );
                }
                for n in &p.notes {
                    println!(
                        "  note ({:?}) {}: {}",
                        n.level,
                        n.connector.as_deref().unwrap_or("-"),
                        n.text
                    );
                }
            }
            Err(err) => {
                failed = true;
                if out.json {
                    let doc = serde_json::json!({"platform": kind.as_str(), "ok": false, "error": err.to_string()});
                    docs.push(doc);
                } else {
                    println!("{kind}: cannot plan: {err}");
                }
            }
        }
    }
    if out.json {
        let doc = serde_json::json!({"ok": !failed, "changes": changes, "platforms": docs});
        println!("{doc:#}");
    }
    match (failed, out.detailed_exitcode && changes > 0) {
        (true, _) => ExitCode::FAILURE,
        (false, true) => ExitCode::from(2),
        (false, false) => ExitCode::SUCCESS,
    }
}

/// One line per action for `plan`; no env values (they may be secrets).
pub fn describe(a: &crate::reconcile::Action) -> String {
    use crate::reconcile::Action as A;
    let what = match a {
        A::Deploy { spec, .. } => format!(
            "deploy {} (connector {}) image {} start={}",
            spec.name, spec.connector_id, spec.image, spec.start
        ),
        A::Refresh { spec, .. } => format!(
            "refresh {} (connector {}) to hash {}",
            spec.name, spec.connector_id, spec.hash
        ),
        A::Start { id, name, .. } => format!("start {name} (connector {id})"),
        A::Stop { id, name, .. } => format!("stop {name} (connector {id})"),
        A::Remove { name, id, .. } => format!("remove {name} (connector {id})"),
        A::Report { id, status } => format!("report connector {id} {}", status.as_str()),
        A::Health { id, health } => format!(
            "health connector {id}: restarts {} since {} reboot-loop {}",
            health.restart_count, health.started_at, health.is_in_reboot_loop
        ),
        A::ShipLogs { id, name, .. } => format!("ship logs of {name} (connector {id})"),
        A::Explain { id, text } => format!("explain to connector {id}: {text}"),
    };
    format!("{what}: {}", a.reason())
}

struct Checks {
    failed: bool,
    /// `check --json`: the checks, collected instead of printed.
    json: Option<Vec<serde_json::Value>>,
}

impl Checks {
    fn line(&mut self, ok: bool, what: &str, detail: &str, hint: &str) {
        if let Some(items) = &mut self.json {
            self.failed |= !ok;
            let fix = (!hint.is_empty()).then_some(hint);
            items.push(serde_json::json!({"check": what, "ok": ok, "detail": detail, "fix": fix}));
            return;
        }
        if ok {
            println!("✔ {what}: {detail}");
        } else {
            self.failed = true;
            println!("✘ {what}: {detail}");
            if !hint.is_empty() {
                println!("    fix: {hint}");
            }
        }
    }

    /// A warning line (`!`), or a JSON item with `"warning"`.
    fn warn(&mut self, w: &str) {
        match &mut self.json {
            Some(items) => items.push(serde_json::json!({"warning": w})),
            None => println!("! {w}"),
        }
    }

    /// With `--json`: prints the one document.
    fn finish(&self) {
        if let Some(items) = &self.json {
            let doc = serde_json::json!({"ok": !self.failed, "checks": items});
            println!("{doc:#}");
        }
    }
}

/// `check`: a line per check with ✔/✘ and a fix hint; non-zero on any ✘.
/// `json`: one JSON document (`{"ok", "checks": [{check, ok, detail, fix}]}`).
pub fn check(dir: Option<&Path>, env: &[(String, String)], json: bool) -> ExitCode {
    let mut c = Checks {
        failed: false,
        json: json.then(Vec::new),
    };
    let code = check_all(&mut c, dir, env);
    c.finish();
    code
}

fn check_all(c: &mut Checks, dir: Option<&Path>, env: &[(String, String)]) -> ExitCode {
    let loaded = match config::load(dir, env) {
        Ok(l) => l,
        Err(problems) if c.json.is_some() => {
            for p in &problems {
                c.line(false, "configuration", &p.to_string(), "correct this value");
            }
            return ExitCode::from(EXIT_CONFIG);
        }
        Err(problems) => {
            c.line(
                false,
                "configuration",
                &format!("{} problem(s)", problems.len()),
                "correct the values below",
            );
            for p in &problems {
                println!("    - {p}");
            }
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let s = &loaded.settings;
    c.line(
        true,
        "configuration",
        &format!("loaded from {}", loaded.dir.display()),
        "",
    );
    for w in &loaded.warnings {
        c.warn(&w.to_string());
    }
    let key = match Key::load(&s.manager) {
        Ok((k, warnings)) => {
            c.line(true, "private key", &format!("RSA {} bits", k.bits()), "");
            for w in warnings {
                c.warn(&w.to_string());
            }
            Some(k)
        }
        Err(e) => {
            let hint = "set manager.credentials_key_filepath (MANAGER__CREDENTIALS_KEY_FILEPATH) to a PKCS#8 PEM file";
            c.line(false, "private key", &e.to_string(), hint);
            None
        }
    };
    for kind in enabled(s) {
        check_platform(c, s, kind, key.as_ref());
    }
    if c.failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn check_platform(c: &mut Checks, s: &Settings, kind: PlatformKind, key: Option<&Key>) {
    let p = s.platform(kind);
    let up = kind.as_str().to_uppercase();
    match key.map(|k| platform_for(s, kind, k)) {
        Some(Ok(client)) => match client.version() {
            Ok(v) => c.line(
                true,
                &format!("{kind} platform"),
                &format!("{} answers, version {v}", p.url),
                "",
            ),
            Err(e) => c.line(
                false,
                &format!("{kind} platform"),
                &e.to_string(),
                &format!(
                    "check {kind}.url ({up}__URL), {kind}.token ({up}__TOKEN) and the network path"
                ),
            ),
        },
        Some(Err(e)) => c.line(false, &format!("{kind} platform"), &e, ""),
        None => c.line(false, &format!("{kind} platform"), "not tried (no key)", ""),
    }
    match orchestrator_for(s, kind).and_then(|o| o.list().map_err(|e| e.to_string())) {
        Ok(ws) => c.line(
            true,
            &format!("{kind} orchestrator"),
            &format!("reachable, {} workload(s) of this manager", ws.len()),
            "",
        ),
        Err(e) => c.line(
            false,
            &format!("{kind} orchestrator"),
            &e,
            &orchestrator_hint(p.daemon.selector, kind, &up),
        ),
    }
}

fn orchestrator_hint(selector: Selector, kind: PlatformKind, up: &str) -> String {
    match selector {
        Selector::Kubernetes => format!(
            "check KUBECONFIG (else ~/.kube/config, else the in-cluster service account), \
             {kind}.daemon.kubernetes.namespace ({up}__DAEMON__KUBERNETES__NAMESPACE) and that \
             the Role of packaging/kubernetes/ is bound there"
        ),
        Selector::Portainer => format!(
            "check {kind}.daemon.portainer.api ({up}__DAEMON__PORTAINER__API), its api_key and \
             env_id, and for TLS its ca_file or unsecured_certificate"
        ),
        Selector::Docker | Selector::Swarm => format!(
            "check that the engine runs and this user may use its socket (the socket's group), \
             or set {kind}.daemon.docker.host ({up}__DAEMON__DOCKER__HOST)"
        ),
    }
}

/// `status`: the running daemon's `/status` as a table and its `/healthz`
/// verdict; exit 1 when it cannot be reached or is unhealthy, 2 when no
/// listener is configured.
pub fn status(dir: Option<&Path>, env: &[(String, String)]) -> ExitCode {
    use crate::observe::table;
    let loaded = match load(dir, env) {
        Ok(l) => l,
        Err(code) => return code,
    };
    let Some(listen) = loaded.settings.manager.observability.listen.as_deref() else {
        eprintln!(
            "xtm-composer: status needs manager.observability.listen (MANAGER__OBSERVABILITY__LISTEN)"
        );
        return ExitCode::from(EXIT_CONFIG);
    };
    table::show(listen)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 12: a panic in a thread other than main ends the process non-zero.
    /// The test runs itself again as a child process (this test binary, this
    /// test only); the child installs the hook, panics in a spawned thread and
    /// would otherwise sleep until killed.
    #[test]
    fn a_panic_in_any_thread_exits_the_process_with_70() {
        const CHILD: &str = "XTM_TEST_PANIC_CHILD";
        if std::env::var_os(CHILD).is_some() {
            exit_on_panic();
            let _ = std::thread::spawn(|| panic!("deliberate test panic"));
            std::thread::sleep(std::time::Duration::from_secs(30));
            std::process::exit(0);
        }
        let exe = std::env::current_exe().unwrap();
        let out = std::process::Command::new(exe)
            .args([
                "--exact",
                "cli::tests::a_panic_in_any_thread_exits_the_process_with_70",
                "--nocapture",
            ])
            .env(CHILD, "1")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(EXIT_PANIC), "{stderr}");
        assert!(stderr.contains("deliberate test panic"), "{stderr}");
    }
}
