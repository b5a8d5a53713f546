//! The supervisor engine: runs a validated [`Plan`] of services, the container command and the
//! ordered shutdown, reacting to the [`Event`]s of the core loop ([`super::pid1`]).
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
//!    stops once all its dependents are down): oneshots run `down` (bounded by `timeout-down`),
//!    longruns get `down-signal` + SIGCONT and SIGKILL after `timeout-kill` (else after
//!    `S6_SERVICES_GRACETIME`). Then whatever is left gets TERM, and KILL after
//!    `S6_KILL_GRACETIME`; the loop returns as soon as nothing is left, never sleeping a fixed
//!    time.
//!
//! The exit code is the command's (128+N for signal N), else what the exit code file says
//! (s6-overlay's `s6-linux-init-container-results/exitcode`), else 0. The state of everything is
//! written to `state.json` in the runtime directory for `status` and `wait`.

use std::collections::{BTreeMap, VecDeque};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::graph::Plan;
use super::model::{Action, Kind, Service, ServiceTree};
use super::pid1::{Event, Exit, Reactor, Role, Session};
use super::runtime::Runtime;
use super::settings::Settings;
use super::state::{self as wire, ServiceStatus};

/// Which of a oneshot's scripts runs.
#[derive(Clone, Copy)]
enum OneshotScript {
    Up,
    Down,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Deadline {
    UpTimeout,
    DownTimeout,
    Kill,
    FinishKill,
    Restart,
}

struct Svc {
    def: Service,
    state: ServiceStatus,
    pid: Option<i32>,
    finish_pid: Option<i32>,
    deadline: Option<(Instant, Deadline)>,
    started_at: Option<Instant>,
    ready_at: Option<Instant>,
    last_spawn: Option<Instant>,
    last_exit: Option<Exit>,
    restarts: u32,
    reason: Option<String>,
    /// Cleared by `s6-svc -d` and at shutdown: do not (re)start.
    want_up: bool,
    /// `s6-svc -o`: run once, do not restart.
    once: bool,
    lines: VecDeque<String>,
    failure_code: i32,
    /// Failed only because a dependency failed.
    failed_by_dependency: bool,
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
    last_state_write: Instant,
    /// When the shutdown began: the first state write while stopping waits `STATE_THROTTLE`
    /// after it, so a shutdown that is over sooner writes the state file once, at the end.
    stopping_since: Option<Instant>,
}

const KEEP_LINES: usize = 20;
const STATE_THROTTLE: Duration = Duration::from_millis(100);

fn ms(d: Duration) -> u64 {
    d.as_millis() as u64
}

impl Engine {
    pub fn new(
        settings: Settings,
        runtime: Runtime,
        tree: ServiceTree,
        plan: Plan,
        command: Vec<String>,
    ) -> Engine {
        let mut svcs = Vec::new();
        let mut index = BTreeMap::new();
        let mut tree = tree;
        for name in &plan.order {
            let def = tree.services.remove(name).expect("planned service exists");
            index.insert(name.clone(), svcs.len());
            svcs.push(Svc {
                def,
                state: ServiceStatus::Down,
                pid: None,
                finish_pid: None,
                deadline: None,
                started_at: None,
                ready_at: None,
                last_spawn: None,
                last_exit: None,
                restarts: 0,
                reason: None,
                want_up: true,
                once: false,
                lines: VecDeque::new(),
                failure_code: 0,
                failed_by_dependency: false,
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
            stage2_done_at: None,
            timeline: Vec::new(),
            exit_code: 0,
            exitcode_file_ok: false,
            halted: false,
            self_exe: std::env::current_exe().unwrap_or_else(|_| "/proc/self/exe".into()),
            child_env,
            dirty: true,
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

    fn satisfied(&self, i: usize) -> bool {
        let s = &self.svcs[i];
        match s.state {
            ServiceStatus::Up | ServiceStatus::Ready => true,
            ServiceStatus::Starting => {
                matches!(&s.def.kind, Kind::Longrun(l) if !l.wait_ready) && s.pid.is_some()
            }
            _ => false,
        }
    }

    /// Whether the service still has a process or a transition in flight.
    fn active(&self, i: usize) -> bool {
        let s = &self.svcs[i];
        s.pid.is_some()
            || s.finish_pid.is_some()
            || matches!(
                s.state,
                ServiceStatus::Starting
                    | ServiceStatus::Up
                    | ServiceStatus::Ready
                    | ServiceStatus::Stopping
            )
    }

    fn settled(&self, i: usize) -> bool {
        self.satisfied(i) || self.svcs[i].state == ServiceStatus::Failed
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
                c.arg(per_script_limit.map(ms).unwrap_or(0).to_string());
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

    fn start(&mut self, i: usize, reactor: &mut Reactor) {
        let now = Instant::now();
        let name = self.svcs[i].def.name.clone();
        if self.svcs[i].started_at.is_none() {
            self.svcs[i].started_at = Some(now);
        }
        self.svcs[i].reason = None;
        match self.svcs[i].def.kind.clone() {
            Kind::Bundle { .. } => {}
            Kind::Oneshot { up, .. } => {
                let Some(cmd) = self.action_command(&up, &self.svcs[i].def.dir.clone()) else {
                    self.svcs[i].state = ServiceStatus::Up;
                    self.svcs[i].ready_at = Some(now);
                    self.event(i, "up");
                    return;
                };
                if let Err(e) = self.run_oneshot_script(i, cmd, OneshotScript::Up, now, reactor) {
                    self.fail(i, format!("cannot run up: {e}"), 111);
                }
            }
            Kind::Longrun(l) => {
                let mut cmd = self.command_for(&l.run, &[]);
                cmd.current_dir(&self.svcs[i].def.dir);
                let mut notify = None;
                let mut notify_read = None;
                if let Some(n) = l.notification_fd {
                    match super::pid1::readiness_pipe() {
                        Ok((r, w)) => {
                            notify = Some((n, w));
                            notify_read = Some(r);
                        }
                        Err(e) => {
                            self.warn(&format!("{name}: cannot create the readiness pipe: {e}"))
                        }
                    }
                }
                if self.svcs[i].restarts == 0 && self.svcs[i].last_spawn.is_none() {
                    self.info(&format!("starting {name}"));
                }
                match self.spawn_service_process(i, cmd, Role::Run(i), notify, reactor) {
                    Ok(pid) => {
                        if let Some(r) = notify_read {
                            reactor.watch_notify(r, i);
                        }
                        let s = &mut self.svcs[i];
                        s.pid = Some(pid);
                        s.last_spawn = Some(now);
                        if l.notification_fd.is_some() {
                            s.state = ServiceStatus::Starting;
                            s.deadline = s.def.timeout_up.map(|t| (now + t, Deadline::UpTimeout));
                            self.event(i, "started");
                        } else {
                            s.state = ServiceStatus::Up;
                            s.deadline = None;
                            if s.ready_at.is_none() {
                                s.ready_at = Some(now);
                            }
                            self.event(i, "up");
                        }
                    }
                    Err(e) => self.fail(i, format!("cannot run {}: {e}", l.run.display()), 111),
                }
            }
        }
    }

    /// Start one of service `i`'s processes in a session labelled with the service's name.
    fn spawn_service_process(
        &self,
        i: usize,
        cmd: Command,
        role: Role,
        notify: Option<(i32, std::os::fd::OwnedFd)>,
        reactor: &mut Reactor,
    ) -> std::io::Result<i32> {
        let session = Session::Service {
            label: self.svcs[i].def.name.clone(),
            service: Some(i),
        };
        reactor.spawn(cmd, role, session, notify)
    }

    /// Run a oneshot's `up` or `down` script: while it runs the service is `Starting` or
    /// `Stopping`, until that script's timeout.
    fn run_oneshot_script(
        &mut self,
        i: usize,
        cmd: Command,
        script: OneshotScript,
        now: Instant,
        reactor: &mut Reactor,
    ) -> std::io::Result<()> {
        let (role, state, timeout, deadline, what) = match script {
            OneshotScript::Up => (
                Role::Up(i),
                ServiceStatus::Starting,
                self.svcs[i].def.timeout_up,
                Deadline::UpTimeout,
                "starting",
            ),
            OneshotScript::Down => (
                Role::Down(i),
                ServiceStatus::Stopping,
                self.svcs[i].def.timeout_down,
                Deadline::DownTimeout,
                "stopping",
            ),
        };
        self.info(&format!("{what} {}", self.svcs[i].def.name));
        let pid = self.spawn_service_process(i, cmd, role, None, reactor)?;
        let s = &mut self.svcs[i];
        s.pid = Some(pid);
        s.state = state;
        s.deadline = timeout.map(|t| (now + t, deadline));
        self.event(i, what);
        Ok(())
    }

    fn fail(&mut self, i: usize, reason: String, code: i32) {
        let name = self.svcs[i].def.name.clone();
        self.error(&format!("{name}: {reason}"));
        let s = &mut self.svcs[i];
        s.state = ServiceStatus::Failed;
        s.reason = Some(reason.clone());
        s.failure_code = if code == 0 { 1 } else { code };
        s.deadline = None;
        self.event(i, &format!("failed: {reason}"));
    }

    fn stop(&mut self, i: usize, reactor: &mut Reactor) {
        let now = Instant::now();
        let name = self.svcs[i].def.name.clone();
        self.svcs[i].want_up = false;
        match self.svcs[i].def.kind.clone() {
            Kind::Bundle { .. } => {}
            Kind::Oneshot { down, .. } => {
                if let Some(pid) = self.svcs[i].pid {
                    // `up` (or `down`) still running: stop it.
                    let _ = kill(Pid::from_raw(-pid), Signal::SIGTERM);
                    self.svcs[i].state = ServiceStatus::Stopping;
                    self.svcs[i].deadline =
                        Some((now + self.settings.kill_gracetime, Deadline::Kill));
                    return;
                }
                if !matches!(self.svcs[i].state, ServiceStatus::Up | ServiceStatus::Ready) {
                    self.svcs[i].state = if self.svcs[i].state == ServiceStatus::Failed {
                        ServiceStatus::Failed
                    } else {
                        ServiceStatus::Down
                    };
                    return;
                }
                let Some(cmd) = self.action_command(&down, &self.svcs[i].def.dir.clone()) else {
                    self.svcs[i].state = ServiceStatus::Down;
                    self.event(i, "down");
                    return;
                };
                if let Err(e) = self.run_oneshot_script(i, cmd, OneshotScript::Down, now, reactor) {
                    self.error(&format!("{name}: cannot run down: {e}"));
                    self.svcs[i].state = ServiceStatus::Down;
                }
            }
            Kind::Longrun(l) => {
                if let Some(pid) = self.svcs[i].pid {
                    self.info(&format!("stopping {name}"));
                    let sig = Signal::try_from(l.down_signal).unwrap_or(Signal::SIGTERM);
                    let _ = kill(Pid::from_raw(pid), sig);
                    let _ = kill(Pid::from_raw(pid), Signal::SIGCONT);
                    let grace = l.timeout_kill.unwrap_or(self.settings.services_gracetime);
                    let s = &mut self.svcs[i];
                    s.state = ServiceStatus::Stopping;
                    s.deadline = Some((now + grace, Deadline::Kill));
                    self.event(i, "stopping");
                } else if self.svcs[i].finish_pid.is_some() {
                    self.svcs[i].state = ServiceStatus::Stopping;
                } else {
                    let s = &mut self.svcs[i];
                    if s.state != ServiceStatus::Failed || s.deadline.is_some() {
                        s.state = ServiceStatus::Down;
                    }
                    s.deadline = None;
                    self.event(i, "down");
                }
            }
        }
    }

    fn after_longrun_death(&mut self, i: usize, finish_code: Option<i32>) {
        let now = Instant::now();
        let s = &mut self.svcs[i];
        s.finish_pid = None;
        s.deadline = None;
        let stopping = !s.want_up
            || s.state == ServiceStatus::Stopping
            || !matches!(self.phase, Phase::Starting | Phase::Running);
        if stopping {
            if s.state != ServiceStatus::Failed {
                s.state = ServiceStatus::Down;
            }
            self.event(i, "down");
            return;
        }
        if finish_code == Some(125) {
            self.fail(i, "finish exited 125: not restarted".into(), 125);
            return;
        }
        if s.once {
            s.state = ServiceStatus::Down;
            self.event(i, "down");
            return;
        }
        let earliest = s
            .last_spawn
            .map(|t| t + Duration::from_secs(1))
            .unwrap_or(now);
        s.state = if s.state == ServiceStatus::Failed {
            ServiceStatus::Failed
        } else {
            ServiceStatus::Starting
        };
        s.deadline = Some((earliest.max(now), Deadline::Restart));
        self.dirty = true;
    }

    pub fn handle(&mut self, ev: Event, reactor: &mut Reactor) {
        match ev {
            Event::Exited { pid, role, exit } => self.on_exit(pid, role, exit, reactor),
            Event::Signal(sig) => self.on_signal(sig, reactor),
            Event::Ready(i) => {
                let s = &mut self.svcs[i];
                if s.state == ServiceStatus::Starting
                    || (s.state == ServiceStatus::Failed && s.pid.is_some())
                {
                    s.state = ServiceStatus::Ready;
                    s.reason = None;
                    s.deadline = None;
                    let now = Instant::now();
                    if s.ready_at.is_none() {
                        s.ready_at = Some(now);
                    }
                    self.info(&format!("{} is ready", self.svcs[i].def.name));
                    self.event(i, "ready");
                }
            }
            Event::Line(i, line) => {
                let s = &mut self.svcs[i];
                s.lines.push_back(line);
                while s.lines.len() > KEEP_LINES {
                    s.lines.pop_front();
                }
            }
            Event::Control(line) => self.on_control(&line, reactor),
        }
    }

    fn on_exit(&mut self, dead_pid: i32, role: Option<Role>, exit: Exit, reactor: &mut Reactor) {
        match role {
            None => {}
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
            }
            Some(Role::Up(i)) => {
                self.svcs[i].pid = None;
                let name = self.svcs[i].def.name.clone();
                match self.svcs[i].state {
                    ServiceStatus::Starting => {
                        self.svcs[i].deadline = None;
                        if exit == Exit::Code(0) {
                            self.svcs[i].state = ServiceStatus::Up;
                            self.svcs[i].ready_at = Some(Instant::now());
                            self.info(&format!("{name} is up"));
                            self.event(i, "up");
                        } else {
                            self.fail(i, format!("up {}", exit.describe()), exit.code());
                        }
                    }
                    ServiceStatus::Stopping => {
                        self.svcs[i].state = ServiceStatus::Down;
                        self.svcs[i].deadline = None;
                        self.event(i, "down");
                    }
                    _ => {}
                }
            }
            Some(Role::Down(i)) => {
                self.svcs[i].pid = None;
                self.svcs[i].deadline = None;
                if exit != Exit::Code(0) {
                    self.warn(&format!(
                        "{}: down {}",
                        self.svcs[i].def.name,
                        exit.describe()
                    ));
                }
                self.svcs[i].state = ServiceStatus::Down;
                self.event(i, "down");
            }
            Some(Role::Run(i)) => {
                let name = self.svcs[i].def.name.clone();
                self.svcs[i].pid = None;
                self.svcs[i].last_exit = Some(exit);
                let Kind::Longrun(l) = self.svcs[i].def.kind.clone() else {
                    return;
                };
                let running =
                    matches!(self.phase, Phase::Starting | Phase::Running) && self.svcs[i].want_up;
                if running {
                    self.warn(&format!("{name}: {}", exit.describe()));
                }
                self.event(i, &format!("exited ({})", exit.describe()));
                if let Some(finish) = &l.finish {
                    let (code, sig) = match exit {
                        Exit::Code(c) => (c, 0),
                        Exit::Signal(s) => (256, s),
                    };
                    let args = [
                        code.to_string(),
                        sig.to_string(),
                        name.clone(),
                        dead_pid.to_string(),
                    ];
                    let mut cmd = self.command_for(finish, &args);
                    cmd.current_dir(&self.svcs[i].def.dir);
                    match self.spawn_service_process(i, cmd, Role::Finish(i), None, reactor) {
                        Ok(pid) => {
                            self.svcs[i].finish_pid = Some(pid);
                            self.svcs[i].deadline = l
                                .timeout_finish
                                .map(|t| (Instant::now() + t, Deadline::FinishKill));
                            return;
                        }
                        Err(e) => self.warn(&format!("{name}: cannot run finish: {e}")),
                    }
                }
                self.after_longrun_death(i, None);
            }
            Some(Role::Finish(i)) => {
                let code = match exit {
                    Exit::Code(c) => Some(c),
                    Exit::Signal(_) => None,
                };
                self.after_longrun_death(i, code);
            }
        }
    }

    fn on_signal(&mut self, sig: i32, reactor: &mut Reactor) {
        let Ok(signal) = Signal::try_from(sig) else {
            return;
        };
        if matches!(signal, Signal::SIGTTIN | Signal::SIGTTOU | Signal::SIGTSTP) {
            return;
        }
        let shutdown_signal = matches!(
            signal,
            Signal::SIGTERM | Signal::SIGINT | Signal::SIGUSR1 | Signal::SIGUSR2 | Signal::SIGPWR
        );
        if let Some(pid) = self.command_pid {
            if signal != Signal::SIGTERM || self.settings.cmd_receive_signals {
                let _ = kill(Pid::from_raw(pid), signal);
                return;
            }
        }
        if shutdown_signal {
            self.info(&format!("received {}: shutting down", signal.as_str()));
            self.begin_shutdown(reactor);
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
                    let pid = self.svcs[i].pid;
                    let send = |s: Signal| {
                        if let Some(p) = pid {
                            let _ = kill(Pid::from_raw(p), s);
                        }
                    };
                    match c {
                        // `u`: up, and restarted when it dies; `o`: up once.
                        'u' | 'U' | 'o' => {
                            self.svcs[i].want_up = true;
                            self.svcs[i].once = c == 'o';
                            if pid.is_none()
                                && self.svcs[i].finish_pid.is_none()
                                && matches!(self.phase, Phase::Running | Phase::Starting)
                            {
                                self.start(i, reactor);
                            }
                        }
                        'O' => self.svcs[i].once = true,
                        'd' | 'D' => self.stop(i, reactor),
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
        if !matches!(self.phase, Phase::Starting | Phase::Running) {
            return;
        }
        self.note("(init)", "shutting down");
        self.stopping_since = Some(Instant::now());
        for s in &mut self.svcs {
            s.want_up = false;
        }
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
                self.wanted[i]
                    && self.svcs[i].state == ServiceStatus::Failed
                    && !self.svcs[i].failed_by_dependency
            })
            .collect();
        let mut code = failed
            .first()
            .map(|&i| self.svcs[i].failure_code)
            .unwrap_or(0);
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
            match reactor.spawn(cmd, Role::Command, Session::Foreground, None) {
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

    /// Advance: start what can start, stop what can stop, handle deadlines.
    pub fn tick(&mut self, reactor: &mut Reactor) {
        let now = Instant::now();
        // Per-service deadlines.
        for i in 0..self.svcs.len() {
            let Some((when, what)) = self.svcs[i].deadline else {
                continue;
            };
            if when > now {
                continue;
            }
            self.svcs[i].deadline = None;
            let name = self.svcs[i].def.name.clone();
            match what {
                Deadline::UpTimeout => {
                    let t = self.svcs[i].def.timeout_up.map(ms).unwrap_or(0);
                    if matches!(self.svcs[i].def.kind, Kind::Oneshot { .. }) {
                        if let Some(pid) = self.svcs[i].pid {
                            sigkill_with_its_group(pid);
                        }
                        self.fail(i, format!("up timed out after {t} ms (timeout-up)"), 111);
                    } else {
                        self.fail(i, format!("not ready within {t} ms (timeout-up)"), 111);
                    }
                }
                Deadline::DownTimeout => {
                    if let Some(pid) = self.svcs[i].pid {
                        self.warn(&format!(
                            "{name}: down timed out (timeout-down): killing it"
                        ));
                        sigkill_with_its_group(pid);
                    }
                }
                Deadline::Kill => {
                    if let Some(pid) = self.svcs[i].pid {
                        self.warn(&format!(
                            "{name}: still running after its grace time: sending SIGKILL"
                        ));
                        let killpg = matches!(&self.svcs[i].def.kind, Kind::Longrun(l) if l.kill_process_group)
                            || matches!(self.svcs[i].def.kind, Kind::Oneshot { .. });
                        if killpg {
                            sigkill_with_its_group(pid);
                        } else {
                            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
                        }
                    }
                }
                Deadline::FinishKill => {
                    if let Some(pid) = self.svcs[i].finish_pid {
                        self.warn(&format!(
                            "{name}: finish took longer than timeout-finish: killing it"
                        ));
                        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
                    }
                }
                Deadline::Restart => {
                    if self.svcs[i].want_up
                        && matches!(self.phase, Phase::Starting | Phase::Running)
                    {
                        self.svcs[i].restarts += 1;
                        self.info(&format!("restarting {name}"));
                        self.start(i, reactor);
                    }
                }
            }
        }

        match self.phase {
            Phase::Starting | Phase::Running => {
                for i in 0..self.svcs.len() {
                    if !self.wanted[i]
                        || self.svcs[i].state != ServiceStatus::Down
                        || !self.svcs[i].want_up
                        || self.svcs[i].started_at.is_some()
                    {
                        continue;
                    }
                    if let Some(&d) = self.deps[i]
                        .iter()
                        .find(|&&d| self.svcs[d].state == ServiceStatus::Failed)
                    {
                        let dep = self.svcs[d].def.name.clone();
                        let code = self.svcs[d].failure_code;
                        self.fail(i, format!("not started: its dependency {dep} failed"), code);
                        self.svcs[i].failed_by_dependency = true;
                        continue;
                    }
                    if self.deps[i].iter().all(|&d| self.satisfied(d)) {
                        self.start(i, reactor);
                    }
                }
                if self.phase == Phase::Starting {
                    let all_settled =
                        (0..self.svcs.len()).all(|i| !self.wanted[i] || self.settled(i));
                    let timed_out = self.stage2_deadline.is_some_and(|d| d <= now);
                    if all_settled || timed_out {
                        self.finish_stage2(reactor, timed_out && !all_settled);
                    }
                }
            }
            Phase::StoppingCommand => {
                if self.command_pid.is_none() {
                    self.phase = Phase::StoppingServices;
                    self.phase_deadline = None;
                } else if self.phase_deadline.is_some_and(|d| d <= now) {
                    if let Some(pid) = self.command_pid {
                        self.warn("the command did not stop after SIGTERM: sending SIGKILL");
                        sigkill_with_its_group(pid);
                    }
                    self.phase_deadline = None;
                }
            }
            _ => {}
        }
        if self.phase == Phase::StoppingServices {
            for i in (0..self.svcs.len()).rev() {
                let s = &self.svcs[i];
                let stoppable = self.active(i) && s.state != ServiceStatus::Stopping;
                if stoppable && self.dependents[i].iter().all(|&d| !self.active(d)) {
                    self.stop(i, reactor);
                }
            }
            if (0..self.svcs.len()).all(|i| !self.active(i)) {
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
        if let Phase::FinalSweep { killed } = self.phase {
            let mut events = Vec::new();
            if reactor.nothing_left(&mut events) {
                self.phase = Phase::Done;
            } else if !killed && self.phase_deadline.is_some_and(|d| d <= Instant::now()) {
                self.warn("processes left after S6_KILL_GRACETIME: sending SIGKILL");
                reactor.signal_everything(Signal::SIGKILL);
                self.phase = Phase::FinalSweep { killed: true };
                self.phase_deadline = Some(Instant::now() + Duration::from_secs(2));
            } else if killed && self.phase_deadline.is_some_and(|d| d <= Instant::now()) {
                self.phase = Phase::Done;
            }
        }
        if self.dirty && self.state_write_due() {
            self.write_state();
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
            if let Some((t, _)) = s.deadline {
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
            .map(ms)
            .unwrap_or(0);
        let rel = |t: Option<Instant>| t.map(|t| ms(t.saturating_duration_since(self.boot)));
        let services = self
            .svcs
            .iter()
            .enumerate()
            .filter(|(i, s)| self.wanted[*i] || s.state != ServiceStatus::Down)
            .map(|(i, s)| {
                let (kind, notifies_readiness) = match &s.def.kind {
                    Kind::Longrun(l) => (wire::ServiceKind::Longrun, l.wait_ready),
                    _ => (wire::ServiceKind::Oneshot, false),
                };
                wire::ServiceState {
                    name: s.def.name.clone(),
                    kind,
                    state: s.state,
                    pid: s.pid,
                    notifies_readiness,
                    dependencies: self.deps[i]
                        .iter()
                        .map(|&d| self.svcs[d].def.name.clone())
                        .collect(),
                    started_ms: rel(s.started_at),
                    ready_ms: rel(s.ready_at),
                    took_ms: s
                        .started_at
                        .zip(s.ready_at)
                        .map(|(a, b)| ms(b.saturating_duration_since(a))),
                    restarts: s.restarts,
                    last_exit: s.last_exit.map(Exit::describe),
                    reason: s.reason.clone(),
                    last_lines: s.lines.iter().cloned().collect(),
                }
            })
            .collect();
        wire::InstanceState {
            pid: std::process::id(),
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
