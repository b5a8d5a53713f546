//! aiida-init: an s6-overlay-compatible container init and supervisor.
//!
//! It runs s6-rc service trees (`/etc/s6-overlay/s6-rc.d`, the `user`/`user2` bundles and the
//! legacy `cont-init.d`/`services.d`/`cont-finish.d`) unchanged, as PID 1 or not, as root or as
//! any user, and then the container command. The pieces, in the order data flows:
//!
//! * [`settings`]: the `S6_*` and `AIIDA_INIT_*` environment variables;
//! * [`model`]: service directories read into a plain data model (nothing runs);
//! * [`execline`]: the execline subset: lexer, validation, and `execlineb`;
//! * [`builtins`]: the one table of the commands aiida-init answers itself (execline's own
//!   programs in [`execline_programs`], the s6 helpers in [`s6`], their common types in
//!   [`program`], their options parsed by [`getopt`]) and the interpreter that dispatches on it;
//! * [`graph`]: bundles flattened, dependencies and cycles checked, an order chosen;
//! * [`lifecycle`]: one service's life as a pure state machine (state, event) -> (state, effects);
//! * [`pid1`]: the core loop (signals, reaping, children, watched fds);
//! * [`engine`]: the supervisor that brings the plan up and down, feeding each service's state
//!   machine and carrying out its effects;
//! * [`runtime`]: the runtime directory and how other processes find it;
//! * [`state`]: the typed schema of `state.json`, shared by the engine and its readers (the
//!   crate `aiida-init-state`, re-exported);
//! * [`status`]: `aiida-init status`, `aiida-init wait`, `aiida-init restart` and `start`;
//! * [`commands`]: the multi-call entry, `install-commands` and `run-parts`;
//! * [`circusd`]: `aiida-init circusd`, an arbiter that circus's clients (aiida-core's daemon
//!   client) drive over [`zmtp`], ZeroMQ's wire protocol on a Unix socket.
//!
//! Modules form layers: none imports another that imports it back (a test checks it).
//!
//! Usage (`aiida-init help` prints it):
//!
//! ```text
//! /init [CMD...]                   run the services, then CMD (as s6-overlay's /init)
//! aiida-init [--] [CMD...]         the same
//! aiida-init status [--json]       services, states, timings of the running instance
//! aiida-init wait [--timeout SECS] [SERVICE...]
//! aiida-init restart SERVICE [--timeout SECS]
//! aiida-init start SERVICE [--timeout SECS]
//! aiida-init check                 validate the service tree, print the start order
//! aiida-init install-commands DIR  link execlineb, with-contenv, s6-svc, ... in DIR
//! aiida-init circusd ... -- CMD    CMD's processes under a circus-compatible controller
//! aiida-init NAME ARGS...          run one of the multi-call names (e.g. execlineb)
//! ```

/// `eprintln!` that writes the line whole, in one `write` (Rust's `eprintln!` writes a
/// formatted line in pieces, which log collectors that time-stamp each read split in two).
macro_rules! eprintln_whole {
    ($($arg:tt)*) => {
        $crate::write_stderr_line(format_args!($($arg)*))
    };
}

pub mod builtins;
pub mod circusd;
pub mod commands;
pub mod engine;
pub mod execline;
pub mod execline_programs;
pub mod getopt;
pub mod graph;
pub mod lifecycle;
pub mod model;
pub mod pid1;
pub mod program;
pub mod runtime;
pub mod s6;
pub mod settings;
pub mod status;
pub mod zmtp;

/// The typed schema of `state.json` (its own crate, which the CLI reads on every platform).
pub use aiida_init_state as state;

use anyhow::Result;

const USAGE: &str = "\
usage:
  aiida-init [--] [CMD...]              run the service tree, then CMD (installed as /init)
  aiida-init status [--json]            services, states and timings of the running instance
  aiida-init wait [--timeout SECS] [SERVICE...]
                                        wait until the user bundle (or SERVICEs) are ready
  aiida-init restart SERVICE [--timeout SECS]
                                        restart a longrun and wait until it is ready again
                                        (default timeout 120 s; a oneshot is refused)
  aiida-init start SERVICE [--timeout SECS]
                                        bring a longrun that is down up again (one that
                                        runs is left as it is) and wait until it is ready
  aiida-init check                      validate the service tree and print the start order
  aiida-init install-commands DIR       link the s6-overlay command names in DIR (e.g. /command)
  aiida-init circusd --name NAME --controller SOCKET --log-file FILE [--pid-file FILE]
                     [--workers N] [--stop-timeout SECS] [--notify-fd FD] -- CMD [ARG...]
                                        run N processes of CMD under a circus-compatible
                                        controller (the AiiDA daemon's arbiter)
  aiida-init NAME ARGS...               run a multi-call command (execlineb, with-contenv, ...)

service tree: $AIIDA_INIT_S6_RC_DIR (default /etc/s6-overlay/s6-rc.d), bundles in
$S6_RUNTIME_BUNDLEDIR (default /etc/s6-overlay/user-bundles.d), $AIIDA_INIT_ROOT prefixes /etc.
runtime directory: $AIIDA_INIT_RUNTIME_DIR, else /run, $XDG_RUNTIME_DIR, /tmp/aiida-init-UID.
";

/// Write one line to stderr with one `write` (see `eprintln_whole!`).
#[doc(hidden)]
pub fn write_stderr_line(args: std::fmt::Arguments) {
    use std::io::Write as _;
    let mut line = std::fmt::format(args);
    line.push('\n');
    let _ = std::io::stderr().write_all(line.as_bytes());
}

/// Entry point of the `aiida-init` binary: dispatch on the name it was called by.
pub fn main() -> ! {
    let args: Vec<String> = std::env::args().collect();
    let called_as = args.first().map_or_else(
        || "aiida-init".into(),
        |a| a.rsplit('/').next().unwrap_or(a).to_string(),
    );
    let rest = if args.is_empty() {
        Vec::new()
    } else {
        args[1..].to_vec()
    };
    if builtins::is_multi_call_name(&called_as) {
        commands::multi_call(&called_as, &rest);
    }
    if called_as != "aiida-init" {
        // Installed as /init (or any other name): every argument belongs to the command (a
        // leading `--` is dropped).
        let command = if rest.first().is_some_and(|a| a == "--") {
            rest[1..].to_vec()
        } else {
            rest
        };
        std::process::exit(run_init(command));
    }
    let code = match rest.first().map(String::as_str) {
        Some("status") => status::status(&rest[1..]),
        Some("wait") => status::wait(&rest[1..]),
        Some("restart") => status::restart(&rest[1..]),
        Some("start") => status::start(&rest[1..]),
        Some("check") => check(),
        Some("circusd") => circusd::main(&rest[1..]),
        Some("install-commands") => commands::install_commands(&rest[1..]),
        Some("run-parts") => commands::run_parts(&rest[1..]),
        Some("help" | "--help" | "-h") => {
            print!("{USAGE}");
            0
        }
        Some("--version" | "version") => {
            println!("aiida-init {}", env!("CARGO_PKG_VERSION"));
            0
        }
        Some("--") => run_init(rest[1..].to_vec()),
        Some(name) if builtins::is_multi_call_name(name) => commands::multi_call(name, &rest[1..]),
        _ => run_init(rest),
    };
    std::process::exit(code)
}

/// Read and validate the service tree; the error names the directory and file at fault.
fn load() -> Result<(settings::Settings, model::ServiceTree, graph::Plan)> {
    let settings = settings::Settings::from_env();
    let tree = model::load(&settings)?;
    let plan = graph::plan(&tree)?;
    Ok((settings, tree, plan))
}

fn check() -> i32 {
    match load() {
        Ok((settings, tree, plan)) => {
            for w in &tree.warnings {
                eprintln_whole!("aiida-init: warning: {w}");
            }
            println!(
                "service tree {} is valid; start order:",
                settings.paths.s6_rc_dir.display()
            );
            for name in plan.order.iter().filter(|n| plan.wanted.contains(*n)) {
                let deps: Vec<&str> = plan.dependencies[name].iter().map(String::as_str).collect();
                let kind = tree.services[name].kind.type_name();
                if deps.is_empty() {
                    println!("  {name} ({kind})");
                } else {
                    println!("  {name} ({kind}) after {}", deps.join(", "));
                }
            }
            0
        }
        Err(e) => {
            eprintln_whole!("aiida-init: error: {e:#}");
            100
        }
    }
}

fn run_init(command: Vec<String>) -> i32 {
    let (settings, tree, plan) = match load() {
        Ok(v) => v,
        Err(e) => {
            eprintln_whole!("aiida-init: fatal: invalid service tree, nothing started: {e:#}");
            return 100;
        }
    };
    if settings.verbosity >= 1 {
        for w in &tree.warnings {
            eprintln_whole!("aiida-init: warning: {w}");
        }
    }
    let runtime = match runtime::choose() {
        Ok(r) => r,
        Err(e) => {
            eprintln_whole!("aiida-init: fatal: {e:#}");
            return 100;
        }
    };
    if let Some(pid) = runtime::running_instance(&runtime) {
        eprintln_whole!(
            "aiida-init: fatal: another aiida-init (pid {pid}) already runs the services of {}: \
             nothing started, since a second instance would start every service again. To run \
             `{}` here, run it directly; aiida-init's own commands are status, wait, start, \
             restart and check (aiida-init --help)",
            runtime.base.display(),
            command.join(" ")
        );
        return 100;
    }
    let mut reactor = match pid1::Reactor::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln_whole!("aiida-init: fatal: cannot set up signal handling: {e}");
            return 111;
        }
    };
    let mut engine = engine::Engine::new(settings, runtime, tree, &plan, command);
    supervise(&mut engine, &mut reactor)
}

/// Drive the engine with the core loop's events until it is done; returns the exit code.
fn supervise(engine: &mut engine::Engine, reactor: &mut pid1::Reactor) -> i32 {
    engine.boot(reactor);
    loop {
        engine.tick(reactor);
        if let Some(code) = engine.finished(reactor) {
            return code;
        }
        let events = reactor.wait(engine.next_deadline());
        for ev in events {
            engine.handle(ev, reactor);
        }
    }
}
