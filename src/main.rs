//! `xtm-composer`: the command line. `run` (default) starts one thread per
//! enabled platform, the log shipper and the signal thread; `plan` prints what
//! one cycle would do; `check` tests config, key, platform and engine.
//!
//! Logging contract (stderr, `manager.logger.format` json|pretty):
//! - ERROR: a cycle or a connector failed and needs an operator.
//! - WARN: a configuration problem or a degraded mode.
//! - INFO: one line per applied action, with the connector id and the reason.
//! - DEBUG: plans, pings, log shipping counts.
//! - TRACE: nothing more from HTTP libraries (their wire dumps are not redacted,
//!   so they are capped at INFO). No level ever prints a secret.

#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use xtm_composer::cli;

const HELP: &str = "\
xtm-composer — runs OpenCTI connectors and OpenAEV collectors/injectors as containers

USAGE:
    xtm-composer [COMMAND] [--config DIR]

COMMANDS:
    run        reconcile continuously (default)
    plan       list connectors and workloads once, print the actions a cycle would take, change nothing
    check      validate the configuration, load the key, reach each platform and engine; non-zero exit on failure
    status     ask the running composer (manager.observability.listen) what it does; non-zero when unreachable or unhealthy
    version    print the version, commit and target

OPTIONS:
    --config DIR    configuration folder (default: ./config if it exists, else /etc/xtm-composer)
    --json          plan, check: one JSON document on stdout
    --detailed-exitcode  plan: exit 0 when nothing is to change, 2 when changes are planned, 1 on error
    -h, --help      this text
    -V, --version   the version, commit and target

Configuration: DIR/default.yaml, then DIR/$COMPOSER_ENV.yaml (COMPOSER_ENV defaults to production),
then environment variables A__B__C (e.g. OPENCTI__TOKEN, MANAGER__CREDENTIALS_KEY_FILEPATH).
";

enum Command {
    Run,
    Plan,
    Check,
    Status,
    Version,
    Help,
}

/// Output switches of `plan` and `check`.
#[derive(Default)]
struct Flags {
    json: bool,
    detailed_exitcode: bool,
}

type Parsed = (Command, Option<PathBuf>, Flags);

fn parse_args(args: impl Iterator<Item = String>) -> Result<Parsed, String> {
    let mut command = None;
    let mut dir = None;
    let mut flags = Flags::default();
    let mut args = args.peekable();
    while let Some(a) = args.next() {
        let next = match a.as_str() {
            "--json" => {
                flags.json = true;
                continue;
            }
            "--detailed-exitcode" => {
                flags.detailed_exitcode = true;
                continue;
            }
            "run" => Command::Run,
            "plan" => Command::Plan,
            "check" => Command::Check,
            "status" => Command::Status,
            "version" | "-V" | "--version" => Command::Version,
            "help" | "-h" | "--help" => Command::Help,
            "--config" => {
                dir = Some(PathBuf::from(args.next().ok_or("--config needs a folder")?));
                continue;
            }
            s if s.starts_with("--config=") => {
                dir = Some(PathBuf::from(&s["--config=".len()..]));
                continue;
            }
            other => return Err(format!("unknown argument {other:?}; see --help")),
        };
        if command.replace(next).is_some() {
            return Err("more than one command given; see --help".into());
        }
    }
    let command = command.unwrap_or(Command::Run);
    let plan = matches!(command, Command::Plan);
    if flags.json && !(plan || matches!(command, Command::Check)) {
        return Err("--json goes with plan or check; see --help".into());
    }
    if flags.detailed_exitcode && !plan {
        return Err("--detailed-exitcode goes with plan; see --help".into());
    }
    Ok((command, dir, flags))
}

fn main() -> ExitCode {
    cli::exit_on_panic();
    let (command, dir, flags) = match parse_args(std::env::args().skip(1)) {
        Ok(parsed) => parsed,
        Err(e) => {
            eprintln!("xtm-composer: {e}");
            return ExitCode::from(2);
        }
    };
    let env: Vec<(String, String)> = std::env::vars().collect();
    match command {
        Command::Help => {
            print!("{HELP}");
            ExitCode::SUCCESS
        }
        Command::Version => {
            println!("xtm-composer {}", xtm_composer::VERSION);
            ExitCode::SUCCESS
        }
        Command::Check => cli::check(dir.as_deref(), &env, flags.json),
        Command::Plan => {
            let out = cli::PlanOutput {
                json: flags.json,
                detailed_exitcode: flags.detailed_exitcode,
            };
            cli::plan(dir.as_deref(), &env, out)
        }
        Command::Status => cli::status(dir.as_deref(), &env),
        Command::Run => cli::run(dir.as_deref(), &env, Arc::new(|| {})),
    }
}
