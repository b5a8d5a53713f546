//! `aiida-init status [--json]`, `aiida-init wait [--timeout SECS] [SERVICE...]`,
//! `aiida-init restart SERVICE [--timeout SECS]` and `aiida-init start SERVICE [--timeout SECS]`.
//!
//! Both run as separate processes (typically `docker exec CONTAINER aiida-init status`) and
//! read `state.json` of the running instance, found by [`runtime::locate`] whatever the
//! environment or user of the exec'd process.
//!
//! `wait` blocks until the `user` bundle (or the named services and bundles) are ready: a
//! oneshot whose `up` succeeded, a longrun that is up, or ready when it notifies readiness. It
//! exits 0 then; 1 when one of them failed, is a longrun that stopped and is not restarted
//! (`s6-svc -d` or `-O`: nothing brings it back but `aiida-init start`), or the instance is
//! stopping; 2 on timeout, printing which service is at fault and its last log lines.

use std::fmt::Write as _;
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};

use super::runtime;
use super::state::{InstanceState, Phase, ServiceKind, ServiceState, ServiceStatus};

fn read_state() -> Option<InstanceState> {
    let rt = runtime::locate()?;
    InstanceState::read(&rt.state_file()).ok()
}

fn fmt_ms(ms: Option<u64>) -> String {
    ms.map_or_else(
        || "-".into(),
        |ms| format!("{}.{:03}s", ms / 1000, ms % 1000),
    )
}

/// `aiida-init status [--json]`.
pub fn status(args: &[String]) -> i32 {
    let json = args.iter().any(|a| a == "--json");
    if let Some(bad) = args.iter().find(|a| *a != "--json") {
        eprintln_whole!(
            "aiida-init status: unknown argument `{bad}` (usage: aiida-init status [--json])"
        );
        return 100;
    }
    let Some(state) = read_state() else {
        eprintln_whole!(
            "aiida-init status: no running aiida-init found (searched {})",
            runtime::candidates()
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
        return 1;
    };
    if json {
        println!("{}", state.to_json());
    } else {
        print!("{}", render(&state));
    }
    0
}

/// What `aiida-init status` prints: the phase, a table of the services (without s6-overlay's
/// built-ins that did nothing), the command and the timeline.
pub fn render(state: &InstanceState) -> String {
    let mut out = String::new();
    let up = state
        .services_up_ms
        .map(|ms| format!(", services up after {}", fmt_ms(Some(ms))))
        .unwrap_or_default();
    let _ = writeln!(
        out,
        "aiida-init pid {}: {}{up}",
        state.pid,
        state.phase.as_str()
    );
    let _ = writeln!(
        out,
        "{:<24} {:<8} {:<9} {:>8} {:>9} {:>9}  NOTE",
        "SERVICE", "TYPE", "STATE", "PID", "READY AT", "TOOK"
    );
    for s in state.services.iter().filter(|s| !s.is_empty_builtin()) {
        let mut note = s.reason.clone().unwrap_or_else(|| {
            if s.restarts > 0 {
                format!(
                    "restarted {}x, last {}",
                    s.restarts,
                    s.last_exit.as_deref().unwrap_or("?")
                )
            } else {
                String::new()
            }
        });
        // A longrun that keeps failing (a full disk, a bad setting), or that stopped for good:
        // its last words say why.
        let troubled =
            s.restarts > 0 && !matches!(s.state, ServiceStatus::Ready | ServiceStatus::Up);
        if troubled || s.is_stopped_for_good() {
            if let Some(last) = s.last_lines.iter().rev().find(|l| !l.trim().is_empty()) {
                let _ = write!(note, ": {}", last.trim());
            }
        }
        let line = format!(
            "{:<24} {:<8} {:<9} {:>8} {:>9} {:>9}  {note}",
            s.name,
            s.kind.as_str(),
            s.state.as_str(),
            s.pid.map_or_else(|| "-".into(), |p| p.to_string()),
            fmt_ms(s.ready_ms),
            fmt_ms(s.took_ms),
        );
        let _ = writeln!(out, "{}", line.trim_end());
    }
    let command = &state.command;
    if !command.argv.is_empty() {
        let pid = command
            .pid
            .map_or_else(|| "not running".into(), |p| format!("pid {p}"));
        let exit = command
            .exit
            .map(|c| format!(", exit {c}"))
            .unwrap_or_default();
        let _ = writeln!(out, "command: {} ({pid}{exit})", command.argv.join(" "));
    }
    let _ = writeln!(out, "timeline:");
    for e in &state.timeline {
        let line = format!("  {:>9}  {:<24} {}", fmt_ms(Some(e.ms)), e.service, e.event);
        let _ = writeln!(out, "{}", line.trim_end());
    }
    out
}

/// Why `s` is at fault, with its last lines of output (`command` is `wait` or `restart`).
fn failure(command: &str, s: &ServiceState, what: &str) -> String {
    let mut out = format!("aiida-init {command}: {} {what}", s.name);
    if let Some(r) = &s.reason {
        let _ = write!(out, ": {r}");
    }
    out.push('\n');
    if !s.last_lines.is_empty() {
        let _ = writeln!(out, "last lines of {}:", s.name);
        for l in &s.last_lines {
            let _ = writeln!(out, "  {l}");
        }
    }
    out
}

fn parse_timeout(v: &str) -> Option<Duration> {
    let secs: f64 = v.parse().ok()?;
    // Durations beyond what a Duration holds (or infinite) mean: no limit.
    Some(Duration::try_from_secs_f64(secs).unwrap_or(Duration::MAX)).filter(|_| secs >= 0.0)
}

/// `[--timeout SECS] NAME...` of `wait` and `restart`; the error is the message to print.
fn parse_timeout_and_names(
    command: &str,
    usage: &str,
    args: &[String],
) -> Result<(Option<Duration>, Vec<String>), String> {
    let mut timeout: Option<Duration> = None;
    let mut names = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let value = match args[i].as_str() {
            "--timeout" | "-t" => {
                i += 1;
                Some(args.get(i).map(String::as_str))
            }
            a if a.starts_with("--timeout=") => Some(Some(&a["--timeout=".len()..])),
            a if a.starts_with('-') => {
                return Err(format!(
                    "aiida-init {command}: unknown option `{a}` ({usage})"
                ));
            }
            a => {
                names.push(a.to_string());
                None
            }
        };
        if let Some(v) = value {
            let Some(t) = v.and_then(parse_timeout) else {
                return Err(format!(
                    "aiida-init {command}: --timeout needs a number of seconds ({usage})"
                ));
            };
            timeout = Some(t);
        }
        i += 1;
    }
    Ok((timeout, names))
}

/// `aiida-init wait [--timeout SECS] [SERVICE...]`.
pub fn wait(args: &[String]) -> i32 {
    const USAGE: &str = "usage: aiida-init wait [--timeout SECS] [SERVICE...]";
    let (timeout, names) = match parse_timeout_and_names("wait", USAGE, args) {
        Ok(parsed) => parsed,
        Err(message) => {
            eprintln_whole!("{message}");
            return 100;
        }
    };
    let (code, message) = wait_for(&names, timeout);
    eprint!("{message}");
    code
}

/// Wait until `names` are ready; returns the exit code and what to print on stderr.
fn wait_for(names: &[String], timeout: Option<Duration>) -> (i32, String) {
    let start = Instant::now();
    let mut last: Option<InstanceState> = None;
    let mut changes = StateChanges::new();
    loop {
        if let Some(state) = read_state() {
            match check(&state, names) {
                Check::Ready => return (0, String::new()),
                Check::Failed(message) => return (1, message),
                Check::Pending => {}
            }
            last = Some(state);
        }
        if let Some(t) = timeout.filter(|t| start.elapsed() >= *t) {
            return (2, timed_out(last.as_ref(), names, t));
        }
        changes.wait(POLL_INTERVAL);
    }
}

/// The longest `wait` goes without reading the state file again.
const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// Wakes `wait` as soon as the running instance rewrites its state file (inotify on the state
/// folder: the file is swapped in by a rename or an exchange), so that a service's readiness is
/// seen at once rather than up to [`POLL_INTERVAL`] later. Without an instance yet, or where
/// inotify is not available, it only sleeps.
struct StateChanges {
    inotify: Option<Inotify>,
}

impl StateChanges {
    /// For the instance that runs (looked for again at each wait until one is found).
    fn new() -> StateChanges {
        StateChanges {
            inotify: watch_running(),
        }
    }

    /// For the instance of `rt`.
    fn of(rt: &runtime::Runtime) -> StateChanges {
        StateChanges {
            inotify: watch(&rt.state_dir()),
        }
    }

    /// Sleep until the state file changes, at most `max`.
    fn wait(&mut self, max: Duration) {
        if self.inotify.is_none() {
            self.inotify = watch_running();
        }
        let Some(inotify) = &self.inotify else {
            std::thread::sleep(max);
            return;
        };
        let mut fds = [PollFd::new(inotify.as_fd(), PollFlags::POLLIN)];
        let timeout = PollTimeout::try_from(max).unwrap_or(PollTimeout::MAX);
        if nix::poll::poll(&mut fds, timeout).is_err() {
            std::thread::sleep(max);
        }
        // Drain what woke it (non-blocking: nothing there is no error worth handling).
        while inotify.read_events().is_ok_and(|events| !events.is_empty()) {}
    }
}

/// A watch on the state folder of the running instance, if one is found.
fn watch_running() -> Option<Inotify> {
    runtime::locate().and_then(|rt| watch(&rt.state_dir()))
}

/// An inotify watch for files renamed into or written in `dir`.
fn watch(dir: &std::path::Path) -> Option<Inotify> {
    let inotify = Inotify::init(InitFlags::IN_CLOEXEC | InitFlags::IN_NONBLOCK).ok()?;
    inotify
        .add_watch(
            dir,
            AddWatchFlags::IN_MOVED_TO | AddWatchFlags::IN_CLOSE_WRITE,
        )
        .ok()?;
    Some(inotify)
}

fn timed_out(state: Option<&InstanceState>, names: &[String], timeout: Duration) -> String {
    let secs = timeout.as_secs_f64();
    let Some(state) = state else {
        return format!("aiida-init wait: timed out after {secs}s: no running aiida-init found\n");
    };
    let targets = state.targets(names).unwrap_or_default();
    state
        .services
        .iter()
        .filter(|s| targets.contains(&s.name) && !s.is_ready())
        .map(|s| {
            failure(
                "wait",
                s,
                &format!("not ready after {secs}s (state {})", s.state.as_str()),
            )
        })
        .collect()
}

enum Check {
    Ready,
    Pending,
    /// With the message to print.
    Failed(String),
}

fn check(state: &InstanceState, names: &[String]) -> Check {
    let targets = match state.targets(names) {
        Ok(t) => t,
        Err(n) => {
            return Check::Failed(format!(
                "aiida-init wait: no service or bundle named `{n}` in the running instance\n"
            ));
        }
    };
    let mut all_ready = true;
    for s in state.services.iter().filter(|s| targets.contains(&s.name)) {
        if s.state == ServiceStatus::Failed {
            return Check::Failed(failure("wait", s, "failed"));
        }
        if s.is_stopped_for_good() {
            let what = format!(
                "is down and not restarted (`aiida-init start {}` starts it)",
                s.name
            );
            return Check::Failed(failure("wait", s, &what));
        }
        all_ready &= s.is_ready();
    }
    if all_ready {
        return Check::Ready;
    }
    if matches!(state.phase, Phase::Stopping | Phase::Finished) {
        return Check::Failed("aiida-init wait: the instance is shutting down\n".into());
    }
    Check::Pending
}

/// How long `restart` and `start` wait without `--timeout`.
const RESTART_TIMEOUT: Duration = Duration::from_secs(120);

/// What `restart` and `start` do to a longrun that runs.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Bring {
    /// Down first (with its down-signal), then up: a new process.
    Restart,
    /// Leave a process that runs (starting or ready) as it is; only wait for it.
    Start,
}

impl Bring {
    fn command(self) -> &'static str {
        match self {
            Bring::Restart => "restart",
            Bring::Start => "start",
        }
    }
}

/// `aiida-init restart SERVICE [--timeout SECS]`: restart a longrun (down with its down-signal,
/// then up, whatever its `finish` says; one that is down is started) and return once it is ready
/// again: 0 then, 1 when it failed, is not a longrun or the instance is stopping, 2 when
/// `--timeout` (default 120 s) ran out. A oneshot is refused: its `up` ran once at start-up
/// and there is no process to restart.
pub fn restart(args: &[String]) -> i32 {
    bring_up_command(Bring::Restart, args)
}

/// `aiida-init start SERVICE [--timeout SECS]`: bring a longrun that is down (stopped, or kept
/// down by `s6-svc -O`, as the AiiDA daemon is after `verdi daemon stop`) up again, or leave
/// one that runs as it is, and return once it is ready; exit codes as `restart`.
pub fn start(args: &[String]) -> i32 {
    bring_up_command(Bring::Start, args)
}

fn bring_up_command(bring: Bring, args: &[String]) -> i32 {
    let command = bring.command();
    let usage = format!("usage: aiida-init {command} SERVICE [--timeout SECS]");
    let (timeout, names) = match parse_timeout_and_names(command, &usage, args) {
        Ok((timeout, names)) if names.len() == 1 => (timeout.unwrap_or(RESTART_TIMEOUT), names),
        Ok(_) => {
            eprintln_whole!("aiida-init {command}: name one service ({usage})");
            return 100;
        }
        Err(message) => {
            eprintln_whole!("{message}");
            return 100;
        }
    };
    let (code, out, err) = bring_up(bring, &names[0], timeout);
    print!("{out}");
    eprint!("{err}");
    code
}

/// Restart or start `name`; returns the exit code, stdout and stderr.
fn bring_up(bring: Bring, name: &str, timeout: Duration) -> (i32, String, String) {
    let command = bring.command();
    let Some(rt) = runtime::locate() else {
        let searched: Vec<String> = runtime::candidates()
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        let message = format!(
            "aiida-init {command}: no running aiida-init found (searched {})\n",
            searched.join(", ")
        );
        return (1, String::new(), message);
    };
    let state = match InstanceState::read(&rt.state_file()) {
        Ok(state) => state,
        Err(e) => return (1, String::new(), format!("aiida-init {command}: {e:#}\n")),
    };
    let before = match restartable(&state, name) {
        Ok(s) => s.clone(),
        Err(message) => {
            return (
                1,
                String::new(),
                format!("aiida-init {command}: {message}\n"),
            );
        }
    };
    let start = Instant::now();
    let runs = before.pid.is_some()
        && matches!(
            before.state,
            ServiceStatus::Starting | ServiceStatus::Up | ServiceStatus::Ready
        );
    if bring == Bring::Start && runs {
        return wait_until_ready(bring, &rt, name, &before, None, start, timeout);
    }
    // Down, then up (not s6-svc -r): a `finish` that keeps its service down after a stop it
    // takes for the user's own (`s6-svc -O`, as the daemon's does after `verdi daemon stop`)
    // must not keep it down here.
    if before.pid.is_some() {
        let mut changes = StateChanges::of(&rt);
        if let Err(e) = runtime::send_control(&rt, &format!("svc -d {name}")) {
            return (1, String::new(), format!("aiida-init {command}: {e:#}\n"));
        }
        loop {
            let state = InstanceState::read(&rt.state_file()).ok();
            let service = state.as_ref().and_then(|state| state.service(name));
            if service.is_some_and(|s| s.pid.is_none()) {
                break;
            }
            if start.elapsed() >= timeout {
                let what = format!("still not down after {}s", timeout.as_secs_f64());
                return (
                    2,
                    String::new(),
                    failure(command, service.unwrap_or(&before), &what),
                );
            }
            changes.wait(POLL_INTERVAL);
        }
    }
    if let Err(e) = runtime::send_control(&rt, &format!("svc -u {name}")) {
        return (1, String::new(), format!("aiida-init {command}: {e:#}\n"));
    }
    wait_until_ready(bring, &rt, name, &before, before.pid, start, timeout)
}

/// Wait until `name` runs a process other than `old_pid` and is ready: 0, 1 when it failed
/// anew, 2 after `timeout` (counted from `start`).
fn wait_until_ready(
    bring: Bring,
    rt: &runtime::Runtime,
    name: &str,
    before: &ServiceState,
    old_pid: Option<i32>,
    start: Instant,
    timeout: Duration,
) -> (i32, String, String) {
    let command = bring.command();
    let again = if bring == Bring::Restart {
        " again"
    } else {
        ""
    };
    let mut last = before.clone();
    let mut changes = StateChanges::of(rt);
    loop {
        if let Ok(state) = InstanceState::read(&rt.state_file()) {
            if matches!(state.phase, Phase::Stopping | Phase::Finished) {
                let message = format!("aiida-init {command}: the instance is shutting down\n");
                return (1, String::new(), message);
            }
            if let Some(s) = state.service(name) {
                let new_process = s.pid.is_some() && s.pid != old_pid;
                if (new_process || (old_pid.is_none() && s.pid.is_some())) && s.is_ready() {
                    let pid = s.pid.unwrap_or_default();
                    return (
                        0,
                        format!("{name} is ready{again} (pid {pid})\n"),
                        String::new(),
                    );
                }
                let new_failure = s.restarts != before.restarts || new_process;
                if s.state == ServiceStatus::Failed && new_failure {
                    return (1, String::new(), failure(command, s, "failed"));
                }
                last = s.clone();
            }
        }
        if start.elapsed() >= timeout {
            let what = format!(
                "not ready{again} after {}s (state {})",
                timeout.as_secs_f64(),
                last.state.as_str()
            );
            return (2, String::new(), failure(command, &last, &what));
        }
        changes.wait(POLL_INTERVAL);
    }
}

/// The longrun `name` of the running instance, or why it cannot be restarted.
fn restartable<'a>(state: &'a InstanceState, name: &str) -> Result<&'a ServiceState, String> {
    if matches!(state.phase, Phase::Stopping | Phase::Finished) {
        return Err("the instance is shutting down".into());
    }
    match state.service(name) {
        Some(s) if s.kind == ServiceKind::Longrun => Ok(s),
        Some(_) => Err(format!(
            "{name} is a oneshot: its up ran once at start-up, and there is no process to restart"
        )),
        None if state.bundles.contains_key(name) => Err(format!(
            "{name} is a bundle: restart one of its longruns ({})",
            state.bundles[name].join(", ")
        )),
        None => Err(format!("no service named `{name}` in the running instance")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A state file swapped in wakes the waiter: it does not sleep until its (here very long)
    /// maximum. Both ways the instance writes it are covered: the first write (a rename) and the
    /// next ones (an exchange with the old file).
    #[test]
    fn a_rewritten_state_file_wakes_the_waiter() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state.json");
        for write in ["first", "again"] {
            let mut changes = StateChanges {
                inotify: watch(dir.path()),
            };
            assert!(changes.inotify.is_some(), "inotify works here");
            let writer = {
                let state = state.clone();
                std::thread::spawn(move || {
                    std::thread::sleep(Duration::from_millis(100));
                    runtime::write_atomic(&state, write.as_bytes()).unwrap();
                })
            };
            let start = Instant::now();
            changes.wait(Duration::from_secs(600));
            writer.join().unwrap();
            assert!(
                start.elapsed() < Duration::from_secs(300),
                "the {write} write did not wake the waiter"
            );
        }
    }
}
