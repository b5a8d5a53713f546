//! The supervisor engine: runs a validated [`Plan`] of services, the container command and the
//! ordered shutdown, reacting to the [`Event`]s of the core loop ([`super::pid1`]). Each
//! service's own life is the state machine of [`super::lifecycle`]: the engine turns the core
//! loop's events into its events, and carries out its effects (start a process, signal it, log,
//! add to the timeline). [`Engine::tick`] runs the named steps of the current phase.
//!
//! Life of an instance:
//!
//! 1. **Start.** Every wanted service whose dependencies are satisfied starts, so independent
//!    services start in parallel along the graph. A oneshot is satisfied when `up` exited 0; a
//!    longrun when spawned, or, with `notification-fd`, when it wrote its newline (ready).
//!    A failed dependency fails its dependents. `timeout-up` bounds both.
//! 2. **Stage 2 done** when every wanted service is settled. With failures,
//!    `S6_BEHAVIOUR_IF_STAGE2_FAILS` decides: 0 go on, 1 go on with a warning, 2 stop with the
//!    failing code. `S6_CMD_WAIT_FOR_SERVICES_MAXTIME` bounds this stage. Then the command runs.
//! 3. **Running.** A longrun that exits runs `finish` (bounded by `timeout-finish`) and is
//!    restarted at least 1 s after its previous start, unless `finish` exited 125.
//! 4. **Shutdown** (SIGTERM, the command exiting, `halt`): the command gets SIGTERM (and KILL
//!    after `S6_KILL_GRACETIME`), then services stop in reverse dependency order (a service
//!    stops once all its dependents, and the services that name it in `stops-before.d/`, are
//!    down): oneshots run `down` (bounded by `timeout-down`), longruns get `down-signal` +
//!    SIGCONT and SIGKILL after `timeout-kill` (else after `S6_SERVICES_GRACETIME`). Then
//!    whatever is left gets TERM, and KILL after `S6_KILL_GRACETIME`; the loop returns as soon
//!    as nothing is left, never sleeping a fixed time.
//!
//! The exit code is the command's (128+N for signal N), else what the exit code file says
//! (s6-overlay's `s6-linux-init-container-results/exitcode`), else 0. The state of everything is
//! written to `state.json` in the runtime directory ([`super::state`]) for `status`, `wait` and
//! `restart`: at once while starting and running, at most every 100 ms while stopping, and
//! within a second when only the services' last lines of output changed.

use std::collections::{BTreeMap, VecDeque};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::graph::Plan;
use super::lifecycle::{self, Effect, Level, Machine, Proc};
use super::model::{Action, Kind, Service, ServiceTree};
use super::pid1::{Event, Exit, Reactor, Role, Session};
use super::runtime::Runtime;
use super::settings::Settings;
use super::state::{self as wire, ServiceStatus};

struct Svc {
    def: Service,
    cfg: lifecycle::Config,
    machine: Machine,
    /// The process in flight (`run`, `finish`, `up` or `down`).
    pid: Option<i32>,
    /// The pid of the `run` that exited last (an argument of `finish`).
    dead_pid: i32,
    lines: VecDeque<String>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Phase {
    Starting,
    Running,
    StoppingCommand,
    StoppingServices,
    FinalSweep { killed: bool },
    Done,
}

pub struct Engine {
    settings: Settings,
    runtime: Runtime,
    svcs: Vec<Svc>,
    index: BTreeMap<String, usize>,
    deps: Vec<Vec<usize>>,
    dependents: Vec<Vec<usize>>,
    wanted: Vec<bool>,
    bundles: BTreeMap<String, Vec<String>>,
    command: Vec<String>,
    command_dir: PathBuf,
    command_pid: Option<i32>,
    command_exit: Option<Exit>,
    phase: Phase,
    phase_deadline: Option<Instant>,
    stage2_deadline: Option<Instant>,
    boot: Instant,
    boot_wall: SystemTime,
    /// This process's start time and PID namespace, recorded in the state file (see
    /// `runtime::locate`).
    identity: (Option<u64>, Option<String>),
    stage2_done_at: Option<Instant>,
    timeline: Vec<(Duration, String, String)>,
    exit_code: i32,
    /// Whether the exit code file could be written at boot (else it is not trusted at the end).
    exitcode_file_ok: bool,
    /// The shutdown was asked for with `halt`: the exit code file decides the exit code.
    halted: bool,
    self_exe: PathBuf,
    child_env: Vec<(String, String)>,
    dirty: bool,
    /// Only the services' last lines changed: written at most once a second
    /// (`LINES_THROTTLE`), so that a chatty service does not rewrite the file for each line.
    lines_dirty: bool,
    last_state_write: Instant,
    /// When the shutdown began: the first state write while stopping waits `STATE_THROTTLE`
    /// after it, so a shutdown that is over sooner writes the state file once, at the end.
    stopping_since: Option<Instant>,
}

const KEEP_LINES: usize = 20;
const STATE_THROTTLE: Duration = Duration::from_millis(100);
const LINES_THROTTLE: Duration = Duration::from_secs(1);

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl Engine {
    pub fn new(
        settings: Settings,
        runtime: Runtime,
        tree: ServiceTree,
        plan: &Plan,
        command: Vec<String>,
    ) -> Engine {
        let mut svcs = Vec::new();
        let mut index = BTreeMap::new();
        let mut tree = tree;
        for name in &plan.order {
            let def = tree.services.remove(name).expect("planned service exists");
            index.insert(name.clone(), svcs.len());
            let cfg = lifecycle_config(&def, &settings);
            svcs.push(Svc {
                def,
                cfg,
                machine: Machine::default(),
                pid: None,
                dead_pid: 0,
                lines: VecDeque::new(),
            });
        }
        let deps = plan
            .order
            .iter()
            .map(|n| plan.dependencies[n].iter().map(|d| index[d]).collect())
            .collect();
        let dependents = plan
            .order
            .iter()
            .map(|n| plan.dependents[n].iter().map(|d| index[d]).collect())
            .collect();
        let wanted = plan.order.iter().map(|n| plan.wanted.contains(n)).collect();
        let bundles = plan
            .bundles
            .iter()
            .map(|(k, v)| (k.clone(), v.iter().cloned().collect()))
            .collect();
        // Services and the command get the minimal environment (PATH), or everything with
        // S6_KEEP_ENV; plus where the runtime directory is, for with-contenv, s6-svc and halt.
        let mut child_env: Vec<(String, String)> = if settings.keep_env {
            std::env::vars()
                .filter(|(k, _)| k != super::runtime::ENV_RUNTIME_DIR)
                .collect()
        } else {
            vec![("PATH".to_string(), container_path())]
        };
        child_env.push((
            super::runtime::ENV_RUNTIME_DIR.to_string(),
            runtime.base.display().to_string(),
        ));
        let mut command = command;
        if !command.is_empty() && !settings.cmd_arg0.is_empty() {
            let mut c = settings.cmd_arg0.clone();
            c.extend(command);
            command = c;
        }
        Engine {
            settings,
            runtime,
            svcs,
            index,
            deps,
            dependents,
            wanted,
            bundles,
            command,
            command_dir: std::env::current_dir().unwrap_or_else(|_| "/".into()),
            command_pid: None,
            command_exit: None,
            phase: Phase::Starting,
            phase_deadline: None,
            stage2_deadline: None,
            boot: Instant::now(),
            boot_wall: SystemTime::now(),
            identity: super::runtime::own_identity(),
            stage2_done_at: None,
            timeline: Vec::new(),
            exit_code: 0,
            exitcode_file_ok: false,
            halted: false,
            self_exe: std::env::current_exe().unwrap_or_else(|_| "/proc/self/exe".into()),
            child_env,
            dirty: true,
            lines_dirty: false,
            last_state_write: Instant::now(),
            stopping_since: None,
        }
    }

    fn info(&self, msg: &str) {
        if self.settings.verbosity >= 2 {
            eprintln_whole!("aiida-init: info: {msg}");
        }
    }
    fn warn(&self, msg: &str) {
        if self.settings.verbosity >= 1 {
            eprintln_whole!("aiida-init: warning: {msg}");
        }
    }
    fn error(&self, msg: &str) {
        eprintln_whole!("aiida-init: error: {msg}");
    }

    fn event(&mut self, i: usize, what: &str) {
        let name = self.svcs[i].def.name.clone();
        self.note(&name, what);
    }

    /// Add a line to the timeline (`who` is a service, or `(command)` / `(init)`).
    fn note(&mut self, who: &str, what: &str) {
        self.timeline
            .push((self.boot.elapsed(), who.to_string(), what.to_string()));
        self.dirty = true;
    }

    /// Prepare the runtime directory and the control FIFO.
    pub fn boot(&mut self, reactor: &mut Reactor) {
        let env: Vec<(String, String)> = std::env::vars().collect();
        if let Err(e) = super::runtime::write_envdir(&self.runtime.container_environment(), &env) {
            self.warn(&format!("{e:#}"));
        }
        let exitcode = self.runtime.exitcode_file();
        let _ = std::fs::create_dir_all(exitcode.parent().unwrap());
        self.exitcode_file_ok = std::fs::write(&exitcode, "0\n").is_ok();
        if !self.exitcode_file_ok {
            self.warn(&format!(
                "{}: cannot be written; the exit code comes from the command only",
                exitcode.display()
            ));
        }
        let halt = self.runtime.halt_link();
        let _ = std::fs::create_dir_all(halt.parent().unwrap());
        let _ = std::fs::remove_file(&halt);
        let _ = std::os::unix::fs::symlink(&self.self_exe, &halt);
        let _ = std::fs::create_dir_all(self.runtime.state_dir());
        match super::pid1::open_control_fifo(&self.runtime.control_fifo()) {
            Ok(fd) => reactor.watch_control(fd),
            Err(e) => self.warn(&format!(
                "{}: cannot create the control FIFO ({e}); s6-svc and halt will not work",
                self.runtime.control_fifo().display()
            )),
        }
        self.stage2_deadline = self
            .settings
            .cmd_wait_for_services_maxtime
            .map(|d| self.boot + d);
        if !reactor.is_pid1 {
            self.info(&format!(
                "not PID 1 (pid {}): running as a child subreaper",
                std::process::id()
            ));
        }
        self.write_state();
    }

    fn command_for(&self, path: &std::path::Path, args: &[String]) -> Command {
        let mut cmd = super::builtins::script_command(path);
        cmd.args(args);
        cmd.env_clear();
        cmd.envs(self.child_env.iter().map(|(k, v)| (k, v)));
        cmd
    }

    fn action_command(&self, action: &Action, dir: &std::path::Path) -> Option<Command> {
        let mut cmd = match action {
            Action::Nothing => return None,
            Action::Execline(file) => {
                let mut c = Command::new(&self.self_exe);
                c.arg0("execlineb").arg("-P").arg(file);
                c
            }
            Action::Shell(snippet) => {
                let mut c = Command::new("/bin/sh");
                c.arg("-c").arg(snippet);
                c
            }
            Action::RunParts {
                dir,
                per_script_limit,
            } => {
                let mut c = Command::new(&self.self_exe);
                c.arg0("aiida-init").arg("run-parts").arg(dir);
                c.arg(per_script_limit.map_or(0, ms).to_string());
                c.arg(self.settings.behaviour_if_stage2_fails.to_string());
                c
            }
        };
        cmd.current_dir(if dir.is_dir() {
            dir
        } else {
            std::path::Path::new("/")
        });
        cmd.env_clear();
        cmd.envs(self.child_env.iter().map(|(k, v)| (k, v)));
        if self.settings.keep_env {
            cmd.env("S6_KEEP_ENV", "1");
        }
        Some(cmd)
    }

    /// Feed `event` to service `i`'s state machine and carry out what it says.
    fn apply(&mut self, i: usize, event: lifecycle::Event, reactor: &mut Reactor) {
        let phase = if matches!(self.phase, Phase::Starting | Phase::Running) {
            lifecycle::Phase::Supervising
        } else {
            lifecycle::Phase::ShuttingDown
        };
        let svc = &self.svcs[i];
        let (machine, effects) =
            lifecycle::step(&svc.machine, &svc.cfg, event, Instant::now(), phase);
        self.svcs[i].machine = machine;
        self.dirty = true;
        for effect in effects {
            match effect {
                Effect::Spawn(process) => {
                    let answer = match self.spawn(i, process, reactor) {
                        Ok(pid) => {
                            self.svcs[i].pid = Some(pid);
                            lifecycle::Event::Spawned
                        }
                        Err(reason) => lifecycle::Event::SpawnFailed(reason),
                    };
                    self.apply(i, answer, reactor);
                }
                Effect::Signal(signal) => self.signal(i, signal),
                Effect::Log(Level::Info, message) => self.info(&message),
                Effect::Log(Level::Warning, message) => self.warn(&message),
                Effect::Log(Level::Error, message) => self.error(&message),
                Effect::Note(what) => self.event(i, &what),
            }
        }
    }

    /// Start one of service `i`'s processes; the error says what could not run.
    fn spawn(&mut self, i: usize, process: Proc, reactor: &mut Reactor) -> Result<i32, String> {
        let svc = &self.svcs[i];
        let dir = svc.def.dir.clone();
        let session = Session::Service {
            label: svc.def.name.clone(),
            service: Some(i),
        };
        match (&svc.def.kind, process) {
            (Kind::Longrun(l), Proc::Run) => {
                let mut cmd = self.command_for(&l.run, &[]);
                cmd.current_dir(&dir);
                let mut notify = None;
                let mut notify_read = None;
                if let Some(n) = l.notification_fd {
                    match super::pid1::readiness_pipe() {
                        Ok((r, w)) => {
                            notify = Some((n, w));
                            notify_read = Some(r);
                        }
                        Err(e) => self.warn(&format!(
                            "{}: cannot create the readiness pipe: {e}",
                            svc.def.name
                        )),
                    }
                }
                let run = l.run.display().to_string();
                let pid = reactor
                    .spawn(cmd, Role::Run(i), &session, notify)
                    .map_err(|e| format!("cannot run {run}: {e}"))?;
                if let Some(r) = notify_read {
                    reactor.watch_notify(r, i);
                }
                Ok(pid)
            }
            (Kind::Longrun(l), Proc::Finish) => {
                let finish = l.finish.as_ref().ok_or("no finish script")?;
                let (code, sig) = match svc.machine.last_exit {
                    Some(Exit::Signal(s)) => (256, s),
                    Some(Exit::Code(c)) => (c, 0),
                    None => (0, 0),
                };
                let args = [
                    code.to_string(),
                    sig.to_string(),
                    svc.def.name.clone(),
                    svc.dead_pid.to_string(),
                ];
                let mut cmd = self.command_for(finish, &args);
                cmd.current_dir(&dir);
                reactor
                    .spawn(cmd, Role::Finish(i), &session, None)
                    .map_err(|e| format!("cannot run finish: {e}"))
            }
            (Kind::Oneshot { up, down }, Proc::Up | Proc::Down) => {
                let (action, role, what) = if process == Proc::Up {
                    (up, Role::Up(i), "up")
                } else {
                    (down, Role::Down(i), "down")
                };
                let cmd = self
                    .action_command(action, &dir)
                    .ok_or_else(|| format!("{what} does nothing"))?;
                reactor
                    .spawn(cmd, role, &session, None)
                    .map_err(|e| format!("cannot run {what}: {e}"))
            }
            _ => Err(format!("{} has no such process", svc.def.name)),
        }
    }

    /// Send a signal to service `i`'s process in flight.
    fn signal(&self, i: usize, signal: lifecycle::Signal) {
        let Some(pid) = self.svcs[i].pid else {
            return;
        };
        match signal {
            lifecycle::Signal::Down => {
                let down = match &self.svcs[i].def.kind {
                    Kind::Longrun(l) => Signal::try_from(l.down_signal).unwrap_or(Signal::SIGTERM),
                    _ => Signal::SIGTERM,
                };
                let _ = kill(Pid::from_raw(pid), down);
                let _ = kill(Pid::from_raw(pid), Signal::SIGCONT);
            }
            lifecycle::Signal::TermGroup => {
                let _ = kill(Pid::from_raw(-pid), Signal::SIGTERM);
            }
            lifecycle::Signal::Kill => {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
            lifecycle::Signal::KillGroup => sigkill_with_its_group(pid),
        }
    }

    pub fn handle(&mut self, ev: Event, reactor: &mut Reactor) {
        match ev {
            Event::Exited { pid, role, exit } => self.on_exit(pid, role, exit, reactor),
            Event::Signal(sig) => self.on_signal(sig, reactor),
            Event::Ready(i) => self.apply(i, lifecycle::Event::Ready, reactor),
            Event::Line(i, line) => {
                let s = &mut self.svcs[i];
                s.lines.push_back(line);
                while s.lines.len() > KEEP_LINES {
                    s.lines.pop_front();
                }
                self.lines_dirty = true;
            }
            Event::Control(line) => self.on_control(&line, reactor),
        }
    }

    fn on_exit(&mut self, dead_pid: i32, role: Option<Role>, exit: Exit, reactor: &mut Reactor) {
        let i = match role {
            None => return,
            Some(Role::Command) => {
                self.command_pid = None;
                self.command_exit = Some(exit);
                self.exit_code = exit.code();
                if !self.halted {
                    let _ =
                        std::fs::write(self.runtime.exitcode_file(), format!("{}\n", exit.code()));
                }
                self.info(&format!("the command {}", exit.describe()));
                self.note("(command)", &exit.describe());
                self.begin_shutdown(reactor);
                return;
            }
            Some(Role::Run(i)) => {
                self.svcs[i].dead_pid = dead_pid;
                i
            }
            Some(Role::Up(i) | Role::Down(i) | Role::Finish(i)) => i,
        };
        self.svcs[i].pid = None;
        self.apply(i, lifecycle::Event::Exited(exit), reactor);
    }

    fn on_signal(&mut self, sig: i32, reactor: &mut Reactor) {
        let Ok(signal) = Signal::try_from(sig) else {
            return;
        };
        let command = self.command_pid;
        match signal_decision(signal, command.is_some(), self.settings.cmd_receive_signals) {
            SignalDecision::Ignore => {}
            SignalDecision::Forward => {
                if let Some(pid) = command {
                    let _ = kill(Pid::from_raw(pid), signal);
                }
            }
            SignalDecision::ShutDown => {
                self.info(&format!("received {}: shutting down", signal.as_str()));
                self.begin_shutdown(reactor);
            }
        }
    }

    fn on_control(&mut self, line: &str, reactor: &mut Reactor) {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["halt"] => {
                self.info("halt requested");
                self.halted = true;
                self.begin_shutdown(reactor);
            }
            ["svc", opts, name] => {
                let Some(&i) = self.index.get(*name) else {
                    self.warn(&format!("s6-svc: no service named {name}"));
                    return;
                };
                let Kind::Longrun(l) = self.svcs[i].def.kind.clone() else {
                    self.warn(&format!("s6-svc: {name} is not a longrun"));
                    return;
                };
                for c in opts.trim_start_matches('-').chars() {
                    // Signals are for `run`, not for a `finish` in flight.
                    let svc = &self.svcs[i];
                    let pid = svc.pid.filter(|_| svc.machine.running == Some(Proc::Run));
                    let send = |s: Signal| {
                        if let Some(p) = pid {
                            let _ = kill(Pid::from_raw(p), s);
                        }
                    };
                    match c {
                        // `u`: up, and restarted when it dies; `o`: up once.
                        'u' | 'U' | 'o' => {
                            let once = c == 'o';
                            // A longrun outside the bundles brought up at start (one started on
                            // request) is wanted from now on, as s6-rc's `-u change` makes it.
                            self.wanted[i] = true;
                            self.apply(i, lifecycle::Event::WantUp { once }, reactor);
                        }
                        'O' => self.apply(i, lifecycle::Event::Once, reactor),
                        'd' | 'D' => self.apply(i, lifecycle::Event::Stop, reactor),
                        'r' => send(Signal::try_from(l.down_signal).unwrap_or(Signal::SIGTERM)),
                        'k' => send(Signal::SIGKILL),
                        't' => send(Signal::SIGTERM),
                        'h' => send(Signal::SIGHUP),
                        'i' => send(Signal::SIGINT),
                        'q' => send(Signal::SIGQUIT),
                        'a' => send(Signal::SIGALRM),
                        '1' => send(Signal::SIGUSR1),
                        '2' => send(Signal::SIGUSR2),
                        'p' => send(Signal::SIGSTOP),
                        'c' => send(Signal::SIGCONT),
                        'y' => send(Signal::SIGWINCH),
                        _ => {}
                    }
                }
                self.dirty = true;
            }
            _ => self.warn(&format!("control: unknown request `{line}`")),
        }
    }

    fn begin_shutdown(&mut self, reactor: &mut Reactor) {
        if !may_begin_shutdown(self.phase) {
            return;
        }
        self.note("(init)", "shutting down");
        self.stopping_since = Some(Instant::now());
        if let Some(pid) = self.command_pid {
            let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
            let _ = kill(Pid::from_raw(pid), Signal::SIGCONT);
            self.phase = Phase::StoppingCommand;
            self.phase_deadline = Some(Instant::now() + self.settings.kill_gracetime);
        } else {
            self.phase = Phase::StoppingServices;
            self.phase_deadline = None;
        }
        self.dirty = true;
        let _ = reactor;
    }

    fn finish_stage2(&mut self, reactor: &mut Reactor, timed_out: bool) {
        self.stage2_done_at = Some(Instant::now());
        let failed: Vec<usize> = (0..self.svcs.len())
            .filter(|&i| {
                let m = &self.svcs[i].machine;
                self.wanted[i] && m.status == ServiceStatus::Failed && !m.failed_by_dependency
            })
            .collect();
        let mut code = failed
            .first()
            .map_or(0, |&i| self.svcs[i].machine.failure_code);
        if timed_out {
            let pending: Vec<String> = (0..self.svcs.len())
                .filter(|&i| self.wanted[i] && !self.settled(i))
                .map(|i| self.svcs[i].def.name.clone())
                .collect();
            self.error(&format!(
                "services not up within S6_CMD_WAIT_FOR_SERVICES_MAXTIME: {}",
                pending.join(", ")
            ));
            if code == 0 {
                code = 111;
            }
        }
        if !failed.is_empty() || timed_out {
            let names: Vec<String> = failed
                .iter()
                .map(|&i| self.svcs[i].def.name.clone())
                .collect();
            match self.settings.behaviour_if_stage2_fails {
                0 => {}
                1 => self.warn(&format!(
                    "some services failed to start ({}); continuing",
                    names.join(", ")
                )),
                _ => {
                    self.error(&format!("some services failed to start ({}); stopping the container (S6_BEHAVIOUR_IF_STAGE2_FAILS=2)", names.join(", ")));
                    self.exit_code = code;
                    let _ = std::fs::write(self.runtime.exitcode_file(), format!("{code}\n"));
                    self.phase = Phase::Running;
                    self.begin_shutdown(reactor);
                    return;
                }
            }
        }
        self.phase = Phase::Running;
        self.info(&format!("services up in {} ms", ms(self.boot.elapsed())));
        self.note("(init)", "services up");
        if !self.command.is_empty() {
            let mut cmd = Command::new(&self.command[0]);
            cmd.args(&self.command[1..]);
            cmd.env_clear();
            cmd.envs(self.child_env.iter().map(|(k, v)| (k, v)));
            cmd.current_dir(&self.command_dir);
            match reactor.spawn(cmd, Role::Command, &Session::Foreground, None) {
                Ok(pid) => {
                    self.command_pid = Some(pid);
                    self.note("(command)", "started");
                }
                Err(e) => {
                    let code = if e.kind() == std::io::ErrorKind::NotFound {
                        127
                    } else {
                        126
                    };
                    self.error(&format!("cannot run the command {}: {e}", self.command[0]));
                    self.exit_code = code;
                    self.command_exit = Some(Exit::Code(code));
                    let _ = std::fs::write(self.runtime.exitcode_file(), format!("{code}\n"));
                    self.begin_shutdown(reactor);
                }
            }
        }
        self.dirty = true;
    }

    fn settled(&self, i: usize) -> bool {
        self.svcs[i].machine.settled(&self.svcs[i].cfg)
    }

    /// Advance: timers, then the step of the current phase, then the state file.
    pub fn tick(&mut self, reactor: &mut Reactor) {
        self.fire_due_timers(reactor);
        if matches!(self.phase, Phase::Starting | Phase::Running) {
            self.start_what_can_start(reactor);
        }
        if self.phase == Phase::Starting {
            self.end_stage2_when_settled(reactor);
        }
        if self.phase == Phase::StoppingCommand {
            self.stop_the_command();
        }
        if self.phase == Phase::StoppingServices {
            self.stop_services_in_reverse_order(reactor);
        }
        if let Phase::FinalSweep { killed } = self.phase {
            self.sweep_what_is_left(reactor, killed);
        }
        let lines_due =
            self.lines_dirty && self.last_state_write + LINES_THROTTLE <= Instant::now();
        if (self.dirty || lines_due) && self.state_write_due() {
            self.write_state();
        }
    }

    /// Each service whose timer is due gets it.
    fn fire_due_timers(&mut self, reactor: &mut Reactor) {
        let now = Instant::now();
        for i in 0..self.svcs.len() {
            if let Some((when, timer)) = self.svcs[i].machine.timer {
                if when <= now {
                    self.apply(i, lifecycle::Event::TimerDue(timer), reactor);
                }
            }
        }
    }

    /// Start each wanted service that has not started and whose dependencies are satisfied;
    /// fail those with a failed dependency.
    fn start_what_can_start(&mut self, reactor: &mut Reactor) {
        for i in 0..self.svcs.len() {
            let deps: Vec<(&Machine, &lifecycle::Config)> = self.deps[i]
                .iter()
                .map(|&d| (&self.svcs[d].machine, &self.svcs[d].cfg))
                .collect();
            match start_decision(self.wanted[i], &self.svcs[i].machine, &deps) {
                StartDecision::Wait => {}
                StartDecision::DependencyFailed(k) => {
                    let d = self.deps[i][k];
                    let dependency = self.svcs[d].def.name.clone();
                    let code = self.svcs[d].machine.failure_code;
                    self.apply(
                        i,
                        lifecycle::Event::DependencyFailed { dependency, code },
                        reactor,
                    );
                }
                StartDecision::Start => self.apply(i, lifecycle::Event::Start, reactor),
            }
        }
    }

    /// Stage 2 is over when every wanted service has settled, or at
    /// `S6_CMD_WAIT_FOR_SERVICES_MAXTIME`.
    fn end_stage2_when_settled(&mut self, reactor: &mut Reactor) {
        let all_settled = (0..self.svcs.len()).all(|i| !self.wanted[i] || self.settled(i));
        let timed_out = self.stage2_deadline.is_some_and(|d| d <= Instant::now());
        if all_settled || timed_out {
            self.finish_stage2(reactor, timed_out && !all_settled);
        }
    }

    /// The command got SIGTERM: on to the services once it is gone, SIGKILL it after
    /// `S6_KILL_GRACETIME`.
    fn stop_the_command(&mut self) {
        if self.command_pid.is_none() {
            self.phase = Phase::StoppingServices;
            self.phase_deadline = None;
        } else if self.phase_deadline.is_some_and(|d| d <= Instant::now()) {
            if let Some(pid) = self.command_pid {
                self.warn("the command did not stop after SIGTERM: sending SIGKILL");
                sigkill_with_its_group(pid);
            }
            self.phase_deadline = None;
        }
    }

    /// Stop each service whose dependents are all down; once none is active, TERM whatever is
    /// left.
    fn stop_services_in_reverse_order(&mut self, reactor: &mut Reactor) {
        let active = |svcs: &[Svc], i: usize| svcs[i].machine.active();
        for i in (0..self.svcs.len()).rev() {
            let stoppable =
                active(&self.svcs, i) && self.svcs[i].machine.status != ServiceStatus::Stopping;
            if stoppable && self.dependents[i].iter().all(|&d| !active(&self.svcs, d)) {
                self.apply(i, lifecycle::Event::Stop, reactor);
            }
        }
        if (0..self.svcs.len()).all(|i| !active(&self.svcs, i)) {
            self.phase = Phase::FinalSweep { killed: false };
            self.phase_deadline = Some(Instant::now() + self.settings.kill_gracetime);
            let mut events = Vec::new();
            if !reactor.nothing_left(&mut events) {
                self.info("sending SIGTERM to the remaining processes");
                reactor.signal_everything(Signal::SIGTERM);
                reactor.signal_everything(Signal::SIGCONT);
            }
            self.dirty = true;
        }
    }

    /// Done when no process is left; SIGKILL them after `S6_KILL_GRACETIME`, and give up 2 s
    /// after that.
    fn sweep_what_is_left(&mut self, reactor: &mut Reactor, killed: bool) {
        let mut events = Vec::new();
        let due = self.phase_deadline.is_some_and(|d| d <= Instant::now());
        if reactor.nothing_left(&mut events) {
            self.phase = Phase::Done;
        } else if !killed && due {
            self.warn("processes left after S6_KILL_GRACETIME: sending SIGKILL");
            reactor.signal_everything(Signal::SIGKILL);
            self.phase = Phase::FinalSweep { killed: true };
            self.phase_deadline = Some(Instant::now() + Duration::from_secs(2));
        } else if killed && due {
            self.phase = Phase::Done;
        }
    }

    /// While stopping, the state file is rewritten at most every 100 ms, and first 100 ms after
    /// the shutdown began: a shutdown must not wait on the file system for every service that
    /// goes down, and one that is over within 100 ms writes only its final state.
    fn stopping_state_write_at(&self) -> Option<Instant> {
        let stopping = matches!(
            self.phase,
            Phase::StoppingCommand | Phase::StoppingServices | Phase::FinalSweep { .. }
        );
        stopping.then(|| {
            let since = self.stopping_since.unwrap_or(self.last_state_write);
            self.last_state_write.max(since) + STATE_THROTTLE
        })
    }

    fn state_write_due(&self) -> bool {
        self.stopping_state_write_at()
            .is_none_or(|at| at <= Instant::now())
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        let mut next: Option<Instant> = None;
        let mut consider = |t: Instant| next = Some(next.map_or(t, |n: Instant| n.min(t)));
        for s in &self.svcs {
            if let Some((t, _)) = s.machine.timer {
                consider(t);
            }
        }
        if let Some(t) = self.phase_deadline {
            consider(t);
        }
        if self.dirty {
            if let Some(at) = self.stopping_state_write_at() {
                consider(at);
            }
        }
        if self.lines_dirty {
            consider(self.last_state_write + LINES_THROTTLE);
        }
        if self.phase == Phase::Starting {
            if let Some(t) = self.stage2_deadline {
                consider(t);
            }
        }
        next
    }

    /// The exit code once everything is over.
    pub fn finished(&mut self, reactor: &mut Reactor) -> Option<i32> {
        if self.phase != Phase::Done {
            return None;
        }
        let code = std::fs::read_to_string(self.runtime.exitcode_file())
            .ok()
            .filter(|_| self.exitcode_file_ok)
            .and_then(|s| s.trim().parse::<i32>().ok())
            .unwrap_or(self.exit_code);
        if !reactor.is_pid1 {
            // As PID 1 the whole container goes away with us: nobody is left to read it.
            self.write_state_with_phase(wire::Phase::Finished);
        }
        Some(code & 0xff)
    }

    fn wire_phase(&self) -> wire::Phase {
        match self.phase {
            Phase::Starting => wire::Phase::Starting,
            Phase::Running => wire::Phase::Running,
            Phase::StoppingCommand | Phase::StoppingServices | Phase::FinalSweep { .. } => {
                wire::Phase::Stopping
            }
            Phase::Done => wire::Phase::Finished,
        }
    }

    fn write_state(&mut self) {
        let phase = self.wire_phase();
        self.write_state_with_phase(phase);
    }

    fn write_state_with_phase(&mut self, phase: wire::Phase) {
        self.dirty = false;
        self.lines_dirty = false;
        self.last_state_write = Instant::now();
        let path = self.runtime.state_file();
        if let Err(e) =
            super::runtime::write_atomic(&path, self.snapshot(phase).to_json().as_bytes())
        {
            if self.settings.verbosity >= 3 {
                eprintln_whole!("aiida-init: warning: {}: {e}", path.display());
            }
        }
    }

    /// The state file's contents now.
    fn snapshot(&self, phase: wire::Phase) -> wire::InstanceState {
        let boot_unix_ms = self
            .boot_wall
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, ms);
        let rel = |t: Option<Instant>| t.map(|t| ms(t.saturating_duration_since(self.boot)));
        let services = self
            .svcs
            .iter()
            .enumerate()
            .filter(|(i, s)| listed(self.wanted[*i], &s.def.kind, s.machine.status))
            .map(|(i, s)| {
                let (kind, notifies_readiness) = match &s.def.kind {
                    Kind::Longrun(l) => (wire::ServiceKind::Longrun, l.wait_ready),
                    _ => (wire::ServiceKind::Oneshot, false),
                };
                wire::ServiceState {
                    name: s.def.name.clone(),
                    kind,
                    state: s.machine.status,
                    pid: s.pid.filter(|_| s.machine.running != Some(Proc::Finish)),
                    notifies_readiness,
                    dependencies: self.deps[i]
                        .iter()
                        .map(|&d| self.svcs[d].def.name.clone())
                        .collect(),
                    started_ms: rel(s.machine.started_at),
                    ready_ms: rel(s.machine.ready_at),
                    took_ms: s
                        .machine
                        .started_at
                        .zip(s.machine.ready_at)
                        .map(|(a, b)| ms(b.saturating_duration_since(a))),
                    restarts: s.machine.restarts,
                    last_exit: s.machine.last_exit.map(Exit::describe),
                    reason: s.machine.reason.clone(),
                    last_lines: s.lines.iter().cloned().collect(),
                }
            })
            .collect();
        wire::InstanceState {
            pid: std::process::id(),
            pid_start_ticks: self.identity.0,
            pid_namespace: self.identity.1.clone(),
            phase,
            boot_unix_ms,
            services_up_ms: rel(self.stage2_done_at),
            command: wire::CommandState {
                argv: self.command.clone(),
                pid: self.command_pid,
                exit: self.command_exit.map(Exit::code),
            },
            bundles: self.bundles.clone(),
            services,
            timeline: self
                .timeline
                .iter()
                .map(|(t, service, event)| wire::TimelineEvent {
                    ms: ms(*t),
                    service: service.clone(),
                    event: event.clone(),
                })
                .collect(),
        }
    }
}

/// What the state machine needs to know of a service.
fn lifecycle_config(def: &Service, settings: &Settings) -> lifecycle::Config {
    let does_something = |a: &Action| !matches!(a, Action::Nothing);
    let base = lifecycle::Config {
        name: def.name.clone(),
        longrun: false,
        notifies: false,
        wait_ready: false,
        has_finish: false,
        has_up: false,
        has_down: false,
        timeout_up: def.timeout_up,
        timeout_down: def.timeout_down,
        timeout_finish: None,
        longrun_grace: settings.services_gracetime,
        kill_gracetime: settings.kill_gracetime,
        kill_process_group: false,
    };
    match &def.kind {
        Kind::Longrun(l) => lifecycle::Config {
            longrun: true,
            notifies: l.notification_fd.is_some(),
            wait_ready: l.wait_ready,
            has_finish: l.finish.is_some(),
            timeout_finish: l.timeout_finish,
            longrun_grace: l.timeout_kill.unwrap_or(settings.services_gracetime),
            kill_process_group: l.kill_process_group,
            ..base
        },
        Kind::Oneshot { up, down } => lifecycle::Config {
            has_up: does_something(up),
            has_down: does_something(down),
            ..base
        },
        Kind::Bundle { .. } => base,
    }
}

/// PATH for services and the command: ours, with `/command`, `/usr/bin` and `/bin` added when
/// missing (as s6-overlay's `/init` does).
pub fn container_path() -> String {
    let mut parts: Vec<String> = std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .filter(|p| !p.is_empty())
        .map(String::from)
        .collect();
    for p in ["/command", "/usr/bin", "/bin"] {
        if !parts.iter().any(|x| x == p) {
            parts.push(p.to_string());
        }
    }
    parts.join(":")
}

/// SIGKILL a process we started and the process group it leads (what it started in turn).
fn sigkill_with_its_group(pid: i32) {
    let _ = kill(Pid::from_raw(-pid), Signal::SIGKILL);
    let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
}

/// What a signal received by aiida-init does (tini's and s6-overlay's rules).
#[derive(Debug, Clone, Copy, PartialEq)]
enum SignalDecision {
    /// Job-control stops (TTIN, TTOU, TSTP) never stop PID 1.
    Ignore,
    /// To the command, which decides (Ctrl-C in an interactive shell, a HUP to reload).
    Forward,
    /// Stop the command, then the services (TERM from `docker stop`, INT, USR1, USR2, PWR).
    ShutDown,
}

/// The decision for `signal` while a command runs (or not). TERM goes to the command only with
/// `S6_CMD_RECEIVE_SIGNALS=1`; otherwise it shuts everything down, the command first. Any other
/// signal is the command's while it runs; without one, the shutdown signals shut down and the
/// rest are ignored.
fn signal_decision(
    signal: Signal,
    command_running: bool,
    cmd_receive_signals: bool,
) -> SignalDecision {
    if matches!(signal, Signal::SIGTTIN | Signal::SIGTTOU | Signal::SIGTSTP) {
        return SignalDecision::Ignore;
    }
    if command_running && (signal != Signal::SIGTERM || cmd_receive_signals) {
        return SignalDecision::Forward;
    }
    let shutdown_signal = matches!(
        signal,
        Signal::SIGTERM | Signal::SIGINT | Signal::SIGUSR1 | Signal::SIGUSR2 | Signal::SIGPWR
    );
    if shutdown_signal {
        SignalDecision::ShutDown
    } else {
        SignalDecision::Ignore
    }
}

/// A shutdown begins once: while services start or run, not when one is under way.
fn may_begin_shutdown(phase: Phase) -> bool {
    matches!(phase, Phase::Starting | Phase::Running)
}

/// Whether the state file lists a service: every one brought up at start (wanted) or running,
/// and every longrun, since `aiida-init start` (`s6-svc -u`) can bring up one outside the
/// bundles started at start-up. A oneshot outside them never runs, and is left out.
fn listed(wanted: bool, kind: &Kind, status: ServiceStatus) -> bool {
    wanted || status != ServiceStatus::Down || matches!(kind, Kind::Longrun(_))
}

/// What to do now with a service that has not started.
#[derive(Debug, Clone, Copy, PartialEq)]
enum StartDecision {
    /// Not wanted, already started or stopped, or a dependency is not there yet.
    Wait,
    Start,
    /// Its dependency number `k` (an index into its dependencies) failed.
    DependencyFailed(usize),
}

/// Whether service `machine` (wanted or not) starts now, given its dependencies' machines: it
/// starts once each dependency is satisfied (up, ready, or a started longrun nobody waits to be
/// ready for), and fails as soon as one has failed.
fn start_decision(
    wanted: bool,
    machine: &Machine,
    deps: &[(&Machine, &lifecycle::Config)],
) -> StartDecision {
    if !wanted
        || machine.status != ServiceStatus::Down
        || !machine.want_up
        || machine.started_at.is_some()
    {
        return StartDecision::Wait;
    }
    if let Some(k) = deps
        .iter()
        .position(|(m, _)| m.status == ServiceStatus::Failed)
    {
        return StartDecision::DependencyFailed(k);
    }
    if deps.iter().all(|(m, cfg)| m.satisfied(cfg)) {
        StartDecision::Start
    } else {
        StartDecision::Wait
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(longrun: bool, wait_ready: bool) -> lifecycle::Config {
        lifecycle::Config {
            name: "dep".into(),
            longrun,
            notifies: wait_ready,
            wait_ready,
            has_finish: false,
            has_up: !longrun,
            has_down: false,
            timeout_up: None,
            timeout_down: None,
            timeout_finish: None,
            longrun_grace: Duration::from_secs(3),
            kill_gracetime: Duration::from_secs(3),
            kill_process_group: false,
        }
    }

    fn machine(status: ServiceStatus) -> Machine {
        Machine {
            status,
            ..Machine::default()
        }
    }

    #[test]
    fn job_control_stops_are_ignored_in_every_case() {
        for sig in [Signal::SIGTTIN, Signal::SIGTTOU, Signal::SIGTSTP] {
            for (running, receive) in [(false, false), (true, false), (true, true)] {
                assert_eq!(
                    signal_decision(sig, running, receive),
                    SignalDecision::Ignore
                );
            }
        }
    }

    #[test]
    fn term_shuts_down_unless_the_command_asked_for_it() {
        let term = Signal::SIGTERM;
        assert_eq!(signal_decision(term, true, false), SignalDecision::ShutDown);
        assert_eq!(
            signal_decision(term, false, false),
            SignalDecision::ShutDown
        );
        assert_eq!(signal_decision(term, true, true), SignalDecision::Forward);
        // No command to receive it: a shutdown after all.
        assert_eq!(signal_decision(term, false, true), SignalDecision::ShutDown);
    }

    #[test]
    fn other_signals_are_the_commands_while_it_runs() {
        for sig in [
            Signal::SIGINT,
            Signal::SIGHUP,
            Signal::SIGUSR1,
            Signal::SIGWINCH,
        ] {
            assert_eq!(
                signal_decision(sig, true, false),
                SignalDecision::Forward,
                "{sig}"
            );
        }
        // Without a command, the shutdown signals shut down and the rest do nothing.
        for sig in [
            Signal::SIGINT,
            Signal::SIGUSR1,
            Signal::SIGUSR2,
            Signal::SIGPWR,
        ] {
            assert_eq!(
                signal_decision(sig, false, false),
                SignalDecision::ShutDown,
                "{sig}"
            );
        }
        for sig in [Signal::SIGHUP, Signal::SIGWINCH, Signal::SIGQUIT] {
            assert_eq!(
                signal_decision(sig, false, false),
                SignalDecision::Ignore,
                "{sig}"
            );
        }
    }

    #[test]
    fn a_shutdown_begins_only_while_starting_or_running() {
        assert!(may_begin_shutdown(Phase::Starting));
        assert!(may_begin_shutdown(Phase::Running));
        for phase in [
            Phase::StoppingCommand,
            Phase::StoppingServices,
            Phase::FinalSweep { killed: false },
            Phase::Done,
        ] {
            assert!(!may_begin_shutdown(phase), "{phase:?}");
        }
    }

    #[test]
    fn a_service_starts_once_its_dependencies_are_satisfied() {
        let down = machine(ServiceStatus::Down);
        let (up, oneshot) = (machine(ServiceStatus::Up), cfg(false, false));
        assert_eq!(start_decision(true, &down, &[]), StartDecision::Start);
        assert_eq!(
            start_decision(true, &down, &[(&up, &oneshot)]),
            StartDecision::Start
        );
        let starting = machine(ServiceStatus::Starting);
        assert_eq!(
            start_decision(true, &down, &[(&up, &oneshot), (&starting, &oneshot)]),
            StartDecision::Wait
        );
        // A longrun whose `run` is running satisfies its dependents unless they wait for ready.
        let running = Machine {
            running: Some(lifecycle::Proc::Run),
            ..machine(ServiceStatus::Starting)
        };
        assert_eq!(
            start_decision(true, &down, &[(&running, &cfg(true, false))]),
            StartDecision::Start
        );
        assert_eq!(
            start_decision(true, &down, &[(&running, &cfg(true, true))]),
            StartDecision::Wait
        );
    }

    #[test]
    fn a_failed_dependency_fails_the_service_and_says_which() {
        let down = machine(ServiceStatus::Down);
        let (up, failed, c) = (
            machine(ServiceStatus::Up),
            machine(ServiceStatus::Failed),
            cfg(false, false),
        );
        assert_eq!(
            start_decision(true, &down, &[(&up, &c), (&failed, &c)]),
            StartDecision::DependencyFailed(1)
        );
    }

    #[test]
    fn only_a_wanted_service_that_never_started_and_was_not_stopped_starts() {
        let c = cfg(false, false);
        let up = machine(ServiceStatus::Up);
        let down = machine(ServiceStatus::Down);
        assert_eq!(
            start_decision(false, &down, &[(&up, &c)]),
            StartDecision::Wait
        );
        let stopped = Machine {
            want_up: false,
            ..machine(ServiceStatus::Down)
        };
        assert_eq!(start_decision(true, &stopped, &[]), StartDecision::Wait);
        let started_before = Machine {
            started_at: Some(std::time::Instant::now()),
            ..machine(ServiceStatus::Down)
        };
        assert_eq!(
            start_decision(true, &started_before, &[]),
            StartDecision::Wait
        );
        assert_eq!(
            start_decision(true, &machine(ServiceStatus::Up), &[]),
            StartDecision::Wait
        );
    }
}
