//! The life of one service as a pure state machine: [`step`] takes a [`Machine`] and an
//! [`Event`] and returns the new machine and the [`Effect`]s to carry out (start a process,
//! send a signal, log, add to the timeline). It runs nothing and reads no clock: the engine
//! ([`super::engine`]) feeds it events, carries out the effects, and feeds back how a start
//! went ([`Event::Spawned`] or [`Event::SpawnFailed`]).
//!
//! A oneshot goes `down` -> `starting` (its `up` runs) -> `up`, or `failed`; at shutdown `up`
//! -> `stopping` (its `down` runs) -> `down`. A longrun goes `down` -> `starting` (until it
//! notifies readiness) -> `ready`, or straight to `up` without `notification-fd`; when its
//! process exits, `finish` runs, and it starts again at least 1 s after its previous start,
//! unless it was stopped, runs once (`s6-svc -o`), or `finish` exited 125.

use std::time::{Duration, Instant};

use super::pid1::Exit;
use super::state::ServiceStatus;

/// What a service is, as far as its life goes.
#[derive(Debug, Clone)]
pub struct Config {
    pub name: String,
    pub longrun: bool,
    /// A longrun with `notification-fd`: `starting` until its newline.
    pub notifies: bool,
    /// Dependents wait for readiness, not just the start.
    pub wait_ready: bool,
    /// A longrun with a `finish` script.
    pub has_finish: bool,
    /// A oneshot whose `up` (`down`) does something.
    pub has_up: bool,
    pub has_down: bool,
    pub timeout_up: Option<Duration>,
    pub timeout_down: Option<Duration>,
    pub timeout_finish: Option<Duration>,
    /// From the stop signal of a longrun to SIGKILL (`timeout-kill`, else `S6_SERVICES_GRACETIME`).
    pub longrun_grace: Duration,
    /// From SIGTERM to SIGKILL for an `up` or `down` still running at a stop.
    pub kill_gracetime: Duration,
    /// `flag-timeout-killpg`: SIGKILL the process group of the longrun.
    pub kill_process_group: bool,
}

/// The process a service has in flight (at most one at a time).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proc {
    /// A longrun's `run`.
    Run,
    /// A longrun's `finish`.
    Finish,
    /// A oneshot's `up`.
    Up,
    /// A oneshot's `down`.
    Down,
}

/// What a timer is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timer {
    /// `timeout-up`: `up` still running, or no readiness yet.
    UpTimeout,
    /// `timeout-down`: `down` still running.
    DownTimeout,
    /// The grace time after the stop signal is over.
    Kill,
    /// `timeout-finish`.
    FinishKill,
    /// Time to start the longrun again.
    Restart,
}

/// The state of one service.
#[derive(Debug, Clone, PartialEq)]
pub struct Machine {
    pub status: ServiceStatus,
    pub running: Option<Proc>,
    pub timer: Option<(Instant, Timer)>,
    /// Cleared by a stop (`s6-svc -d`, shutdown): do not (re)start.
    pub want_up: bool,
    /// `s6-svc -o`: run once, do not restart.
    pub once: bool,
    pub started_at: Option<Instant>,
    pub ready_at: Option<Instant>,
    pub last_spawn: Option<Instant>,
    pub last_exit: Option<Exit>,
    pub restarts: u32,
    pub reason: Option<String>,
    /// The exit code a failure stands for (never 0).
    pub failure_code: i32,
    /// Failed only because a dependency failed.
    pub failed_by_dependency: bool,
}

impl Default for Machine {
    fn default() -> Machine {
        Machine {
            status: ServiceStatus::Down,
            running: None,
            timer: None,
            want_up: true,
            once: false,
            started_at: None,
            ready_at: None,
            last_spawn: None,
            last_exit: None,
            restarts: 0,
            reason: None,
            failure_code: 0,
            failed_by_dependency: false,
        }
    }
}

/// What happens to a service.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// Its dependencies are satisfied: start it.
    Start,
    /// `s6-svc -u` (`once`: `-o`): want it up, and start it if nothing runs.
    WantUp { once: bool },
    /// `s6-svc -O`: do not restart it.
    Once,
    /// The process of the last [`Effect::Spawn`] runs.
    Spawned,
    /// It could not be started (the reason names what).
    SpawnFailed(String),
    /// A longrun wrote its readiness newline.
    Ready,
    /// The process in flight ended.
    Exited(Exit),
    /// Its timer is due.
    TimerDue(Timer),
    /// Stop it (shutdown, `s6-svc -d`).
    Stop,
    /// A dependency failed: it will not start.
    DependencyFailed { dependency: String, code: i32 },
}

/// A signal for the process in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// The longrun's `down-signal`, then SIGCONT.
    Down,
    /// SIGTERM to the process group.
    TermGroup,
    /// SIGKILL to the process.
    Kill,
    /// SIGKILL to the process and its group.
    KillGroup,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Info,
    Warning,
    Error,
}

/// What the engine carries out.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Start this process; answer with [`Event::Spawned`] or [`Event::SpawnFailed`].
    Spawn(Proc),
    Signal(Signal),
    Log(Level, String),
    /// A line of the timeline.
    Note(String),
}

/// Whether the instance is starting or running (not shutting down).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Supervising,
    ShuttingDown,
}

fn ms(d: Option<Duration>) -> u128 {
    d.map_or(0, |d| d.as_millis())
}

impl Machine {
    /// Its dependents may start.
    pub fn satisfied(&self, cfg: &Config) -> bool {
        match self.status {
            ServiceStatus::Up | ServiceStatus::Ready => true,
            ServiceStatus::Starting => {
                cfg.longrun && !cfg.wait_ready && self.running == Some(Proc::Run)
            }
            _ => false,
        }
    }

    /// A process or a transition is in flight.
    pub fn active(&self) -> bool {
        self.running.is_some()
            || matches!(
                self.status,
                ServiceStatus::Starting
                    | ServiceStatus::Up
                    | ServiceStatus::Ready
                    | ServiceStatus::Stopping
            )
    }

    /// Start-up is over for it, one way or the other.
    pub fn settled(&self, cfg: &Config) -> bool {
        self.satisfied(cfg) || self.status == ServiceStatus::Failed
    }
}

/// The transition function: the machine after `event`, and what to do.
pub fn step(
    machine: &Machine,
    cfg: &Config,
    event: Event,
    now: Instant,
    phase: Phase,
) -> (Machine, Vec<Effect>) {
    let mut t = Transition {
        m: machine.clone(),
        cfg,
        now,
        supervising: phase == Phase::Supervising,
        effects: Vec::new(),
    };
    t.on(event);
    (t.m, t.effects)
}

struct Transition<'a> {
    m: Machine,
    cfg: &'a Config,
    now: Instant,
    supervising: bool,
    effects: Vec<Effect>,
}

impl Transition<'_> {
    fn log(&mut self, level: Level, message: String) {
        self.effects.push(Effect::Log(level, message));
    }
    fn note(&mut self, what: &str) {
        self.effects.push(Effect::Note(what.to_string()));
    }
    fn arm(&mut self, after: Option<Duration>, timer: Timer) {
        self.m.timer = after.map(|d| (self.now + d, timer));
    }

    fn on(&mut self, event: Event) {
        match event {
            Event::Start => self.start(),
            Event::WantUp { once } => {
                self.m.want_up = true;
                self.m.once = once;
                if self.m.running.is_none() && self.supervising {
                    self.start();
                }
            }
            Event::Once => self.m.once = true,
            Event::Spawned => self.spawned(),
            Event::SpawnFailed(reason) => self.spawn_failed(reason),
            Event::Ready => self.ready(),
            Event::Exited(exit) => self.exited(exit),
            Event::TimerDue(timer) => {
                self.m.timer = None;
                self.timer_due(timer);
            }
            Event::Stop => self.stop(),
            Event::DependencyFailed { dependency, code } => {
                self.fail(
                    format!("not started: its dependency {dependency} failed"),
                    code,
                );
                self.m.failed_by_dependency = true;
            }
        }
    }

    fn start(&mut self) {
        self.m.started_at.get_or_insert(self.now);
        self.m.reason = None;
        if self.cfg.longrun {
            if self.m.restarts == 0 && self.m.last_spawn.is_none() {
                self.log(Level::Info, format!("starting {}", self.cfg.name));
            }
            self.m.running = Some(Proc::Run);
            self.effects.push(Effect::Spawn(Proc::Run));
        } else if self.cfg.has_up {
            self.m.running = Some(Proc::Up);
            self.effects.push(Effect::Spawn(Proc::Up));
        } else {
            self.m.status = ServiceStatus::Up;
            self.m.ready_at = Some(self.now);
            self.note("up");
        }
    }

    fn spawned(&mut self) {
        match self.m.running {
            Some(Proc::Up) => {
                self.log(Level::Info, format!("starting {}", self.cfg.name));
                self.m.status = ServiceStatus::Starting;
                self.arm(self.cfg.timeout_up, Timer::UpTimeout);
                self.note("starting");
            }
            Some(Proc::Down) => {
                self.log(Level::Info, format!("stopping {}", self.cfg.name));
                self.m.status = ServiceStatus::Stopping;
                self.arm(self.cfg.timeout_down, Timer::DownTimeout);
                self.note("stopping");
            }
            Some(Proc::Run) => {
                self.m.last_spawn = Some(self.now);
                if self.cfg.notifies {
                    self.m.status = ServiceStatus::Starting;
                    self.arm(self.cfg.timeout_up, Timer::UpTimeout);
                    self.note("started");
                } else {
                    self.m.status = ServiceStatus::Up;
                    self.m.timer = None;
                    self.m.ready_at.get_or_insert(self.now);
                    self.note("up");
                }
            }
            Some(Proc::Finish) => self.arm(self.cfg.timeout_finish, Timer::FinishKill),
            None => {}
        }
    }

    fn spawn_failed(&mut self, reason: String) {
        let running = self.m.running.take();
        match running {
            Some(Proc::Up | Proc::Run) => self.fail(reason, 111),
            Some(Proc::Down) => {
                self.log(Level::Error, format!("{}: {reason}", self.cfg.name));
                self.m.status = ServiceStatus::Down;
            }
            Some(Proc::Finish) => {
                self.log(Level::Warning, format!("{}: {reason}", self.cfg.name));
                self.after_longrun_death(None);
            }
            None => {}
        }
    }

    fn ready(&mut self) {
        let failed_but_running =
            self.m.status == ServiceStatus::Failed && self.m.running == Some(Proc::Run);
        if self.m.status == ServiceStatus::Starting || failed_but_running {
            self.m.status = ServiceStatus::Ready;
            self.m.reason = None;
            self.m.timer = None;
            self.m.ready_at.get_or_insert(self.now);
            self.log(Level::Info, format!("{} is ready", self.cfg.name));
            self.note("ready");
        }
    }

    fn exited(&mut self, exit: Exit) {
        match self.m.running.take() {
            Some(Proc::Up) => match self.m.status {
                ServiceStatus::Starting => {
                    self.m.timer = None;
                    if exit == Exit::Code(0) {
                        self.m.status = ServiceStatus::Up;
                        self.m.ready_at = Some(self.now);
                        self.log(Level::Info, format!("{} is up", self.cfg.name));
                        self.note("up");
                    } else {
                        self.fail(format!("up {}", exit.describe()), exit.code());
                    }
                }
                ServiceStatus::Stopping => {
                    self.m.status = ServiceStatus::Down;
                    self.m.timer = None;
                    self.note("down");
                }
                _ => {}
            },
            Some(Proc::Down) => {
                self.m.timer = None;
                if exit != Exit::Code(0) {
                    let message = format!("{}: down {}", self.cfg.name, exit.describe());
                    self.log(Level::Warning, message);
                }
                self.m.status = ServiceStatus::Down;
                self.note("down");
            }
            Some(Proc::Run) => {
                self.m.last_exit = Some(exit);
                // Not for a longrun that stops on its user's request (it sent `s6-svc -O`).
                if self.supervising && self.m.want_up && !self.m.once {
                    let message = format!("{}: {}", self.cfg.name, exit.describe());
                    self.log(Level::Warning, message);
                }
                self.note(&format!("exited ({})", exit.describe()));
                if self.cfg.has_finish {
                    self.m.running = Some(Proc::Finish);
                    self.effects.push(Effect::Spawn(Proc::Finish));
                } else {
                    self.after_longrun_death(None);
                }
            }
            Some(Proc::Finish) => {
                let code = match exit {
                    Exit::Code(c) => Some(c),
                    Exit::Signal(_) => None,
                };
                self.after_longrun_death(code);
            }
            None => {}
        }
    }

    /// `run` and `finish` are over: down, failed, or restarted (at least 1 s after its last
    /// start).
    fn after_longrun_death(&mut self, finish_code: Option<i32>) {
        self.m.timer = None;
        // As s6-supervise: a longrun wanted up again (`s6-svc -u`) while its stop was under way
        // is started again once its processes are over.
        let stopping = !self.m.want_up || !self.supervising;
        if stopping {
            if self.m.status != ServiceStatus::Failed {
                self.m.status = ServiceStatus::Down;
            }
            self.note("down");
            return;
        }
        if finish_code == Some(125) {
            self.fail("finish exited 125: not restarted".into(), 125);
            return;
        }
        if self.m.once {
            self.m.status = ServiceStatus::Down;
            self.note("down");
            return;
        }
        let earliest = self
            .m
            .last_spawn
            .map_or(self.now, |t| t + Duration::from_secs(1));
        if self.m.status != ServiceStatus::Failed {
            self.m.status = ServiceStatus::Starting;
        }
        self.m.timer = Some((earliest.max(self.now), Timer::Restart));
    }

    fn timer_due(&mut self, timer: Timer) {
        let name = self.cfg.name.clone();
        match timer {
            Timer::UpTimeout => {
                let t = ms(self.cfg.timeout_up);
                if self.cfg.longrun {
                    self.fail(format!("not ready within {t} ms (timeout-up)"), 111);
                } else {
                    if self.m.running.is_some() {
                        self.effects.push(Effect::Signal(Signal::KillGroup));
                    }
                    self.fail(format!("up timed out after {t} ms (timeout-up)"), 111);
                }
            }
            Timer::DownTimeout => {
                if self.m.running.is_some() {
                    let message = format!("{name}: down timed out (timeout-down): killing it");
                    self.log(Level::Warning, message);
                    self.effects.push(Effect::Signal(Signal::KillGroup));
                }
            }
            Timer::Kill => {
                if matches!(self.m.running, Some(Proc::Run | Proc::Up | Proc::Down)) {
                    let message =
                        format!("{name}: still running after its grace time: sending SIGKILL");
                    self.log(Level::Warning, message);
                    let group = self.cfg.kill_process_group || !self.cfg.longrun;
                    let signal = if group {
                        Signal::KillGroup
                    } else {
                        Signal::Kill
                    };
                    self.effects.push(Effect::Signal(signal));
                }
            }
            Timer::FinishKill => {
                if self.m.running == Some(Proc::Finish) {
                    let message =
                        format!("{name}: finish took longer than timeout-finish: killing it");
                    self.log(Level::Warning, message);
                    self.effects.push(Effect::Signal(Signal::Kill));
                }
            }
            Timer::Restart => {
                // `s6-svc -O` may arrive while `finish` runs (a service that stops itself for
                // good sends it from there): it still keeps the service down.
                if self.m.once {
                    self.m.status = ServiceStatus::Down;
                    self.note("down");
                } else if self.m.want_up && self.supervising {
                    self.m.restarts += 1;
                    self.log(Level::Info, format!("restarting {name}"));
                    self.start();
                }
            }
        }
    }

    fn stop(&mut self) {
        self.m.want_up = false;
        if self.cfg.longrun {
            match self.m.running {
                Some(Proc::Run) => {
                    self.log(Level::Info, format!("stopping {}", self.cfg.name));
                    self.effects.push(Effect::Signal(Signal::Down));
                    self.m.status = ServiceStatus::Stopping;
                    self.m.timer = Some((self.now + self.cfg.longrun_grace, Timer::Kill));
                    self.note("stopping");
                }
                Some(_) => self.m.status = ServiceStatus::Stopping,
                None => {
                    if self.m.status != ServiceStatus::Failed || self.m.timer.is_some() {
                        self.m.status = ServiceStatus::Down;
                    }
                    self.m.timer = None;
                    self.note("down");
                }
            }
            return;
        }
        if self.m.running.is_some() {
            // `up` (or `down`) still running: stop it.
            self.effects.push(Effect::Signal(Signal::TermGroup));
            self.m.status = ServiceStatus::Stopping;
            self.m.timer = Some((self.now + self.cfg.kill_gracetime, Timer::Kill));
            return;
        }
        match self.m.status {
            ServiceStatus::Up | ServiceStatus::Ready if self.cfg.has_down => {
                self.m.running = Some(Proc::Down);
                self.effects.push(Effect::Spawn(Proc::Down));
            }
            ServiceStatus::Up | ServiceStatus::Ready => {
                self.m.status = ServiceStatus::Down;
                self.note("down");
            }
            ServiceStatus::Failed => {}
            _ => self.m.status = ServiceStatus::Down,
        }
    }

    fn fail(&mut self, reason: String, code: i32) {
        self.log(Level::Error, format!("{}: {reason}", self.cfg.name));
        self.note(&format!("failed: {reason}"));
        self.m.status = ServiceStatus::Failed;
        self.m.reason = Some(reason);
        self.m.failure_code = if code == 0 { 1 } else { code };
        self.m.timer = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ServiceStatus as S;

    const GRACE: Duration = Duration::from_secs(3);

    fn longrun() -> Config {
        Config {
            name: "svc".into(),
            longrun: true,
            notifies: false,
            wait_ready: false,
            has_finish: false,
            has_up: false,
            has_down: false,
            timeout_up: None,
            timeout_down: None,
            timeout_finish: None,
            longrun_grace: GRACE,
            kill_gracetime: GRACE,
            kill_process_group: false,
        }
    }

    fn notifying() -> Config {
        Config {
            notifies: true,
            wait_ready: true,
            timeout_up: Some(Duration::from_millis(500)),
            ..longrun()
        }
    }

    fn oneshot() -> Config {
        Config {
            longrun: false,
            has_up: true,
            has_down: true,
            timeout_up: Some(Duration::from_millis(200)),
            ..longrun()
        }
    }

    struct Run {
        cfg: Config,
        m: Machine,
        now: Instant,
        phase: Phase,
    }

    impl Run {
        fn new(cfg: Config) -> Run {
            Run {
                cfg,
                m: Machine::default(),
                now: Instant::now(),
                phase: Phase::Supervising,
            }
        }
        fn on(&mut self, event: Event) -> Vec<Effect> {
            let (m, effects) = step(&self.m, &self.cfg, event, self.now, self.phase);
            self.m = m;
            effects
        }
        fn later(&mut self, d: Duration) {
            self.now += d;
        }
    }

    fn notes(effects: &[Effect]) -> Vec<&str> {
        effects
            .iter()
            .filter_map(|e| match e {
                Effect::Note(n) => Some(n.as_str()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_longrun_without_notification_is_up_once_spawned() {
        let mut r = Run::new(longrun());
        let effects = r.on(Event::Start);
        assert_eq!(
            effects,
            vec![
                Effect::Log(Level::Info, "starting svc".into()),
                Effect::Spawn(Proc::Run)
            ]
        );
        assert_eq!((r.m.status, r.m.running), (S::Down, Some(Proc::Run)));
        assert!(!r.m.satisfied(&r.cfg));
        let effects = r.on(Event::Spawned);
        assert_eq!(notes(&effects), ["up"]);
        assert_eq!(r.m.status, S::Up);
        assert_eq!(r.m.ready_at, Some(r.now));
        assert!(r.m.satisfied(&r.cfg) && r.m.active());
    }

    #[test]
    fn a_notifying_longrun_is_starting_until_ready_and_fails_at_timeout_up() {
        let mut r = Run::new(notifying());
        r.on(Event::Start);
        assert_eq!(notes(&r.on(Event::Spawned)), ["started"]);
        assert_eq!(r.m.status, S::Starting);
        assert_eq!(
            r.m.timer,
            Some((r.now + Duration::from_millis(500), Timer::UpTimeout))
        );
        assert!(!r.m.satisfied(&r.cfg) && !r.m.settled(&r.cfg));
        let mut ready = Run::new(notifying());
        ready.on(Event::Start);
        ready.on(Event::Spawned);
        assert_eq!(notes(&ready.on(Event::Ready)), ["ready"]);
        assert_eq!((ready.m.status, ready.m.timer), (S::Ready, None));
        let effects = r.on(Event::TimerDue(Timer::UpTimeout));
        assert_eq!(r.m.status, S::Failed);
        assert_eq!(
            r.m.reason.as_deref(),
            Some("not ready within 500 ms (timeout-up)")
        );
        assert_eq!((r.m.failure_code, r.m.running), (111, Some(Proc::Run)));
        assert!(effects.contains(&Effect::Log(
            Level::Error,
            "svc: not ready within 500 ms (timeout-up)".into()
        )));
        // Readiness that comes late still counts.
        r.on(Event::Ready);
        assert_eq!((r.m.status, r.m.reason.clone()), (S::Ready, None));
    }

    #[test]
    fn a_dependent_of_a_non_waiting_longrun_starts_at_the_spawn() {
        let mut r = Run::new(Config {
            wait_ready: false,
            ..notifying()
        });
        r.on(Event::Start);
        r.on(Event::Spawned);
        assert_eq!(r.m.status, S::Starting);
        assert!(r.m.satisfied(&r.cfg));
    }

    #[test]
    fn a_longrun_that_cannot_be_spawned_fails() {
        let mut r = Run::new(longrun());
        r.on(Event::Start);
        r.on(Event::SpawnFailed("cannot run ./run: denied".into()));
        assert_eq!((r.m.status, r.m.running), (S::Failed, None));
        assert_eq!(r.m.failure_code, 111);
    }

    #[test]
    fn a_longrun_that_exits_is_restarted_a_second_after_its_start() {
        let mut r = Run::new(longrun());
        r.on(Event::Start);
        r.on(Event::Spawned);
        let started = r.now;
        r.later(Duration::from_millis(200));
        let effects = r.on(Event::Exited(Exit::Code(2)));
        assert_eq!(notes(&effects), ["exited (exited 2)"]);
        assert!(effects.contains(&Effect::Log(Level::Warning, "svc: exited 2".into())));
        assert_eq!(r.m.status, S::Starting);
        assert_eq!(
            r.m.timer,
            Some((started + Duration::from_secs(1), Timer::Restart))
        );
        assert_eq!(r.m.last_exit, Some(Exit::Code(2)));
        r.later(Duration::from_secs(1));
        let effects = r.on(Event::TimerDue(Timer::Restart));
        assert_eq!(
            effects,
            vec![
                Effect::Log(Level::Info, "restarting svc".into()),
                Effect::Spawn(Proc::Run)
            ]
        );
        assert_eq!(r.m.restarts, 1);
        // A restart long after the previous start is immediate.
        r.on(Event::Spawned);
        r.later(Duration::from_secs(5));
        r.on(Event::Exited(Exit::Signal(9)));
        assert_eq!(r.m.timer, Some((r.now, Timer::Restart)));
    }

    #[test]
    fn finish_runs_after_run_and_125_stops_the_restarts() {
        let mut r = Run::new(Config {
            has_finish: true,
            timeout_finish: Some(Duration::from_secs(2)),
            ..longrun()
        });
        r.on(Event::Start);
        r.on(Event::Spawned);
        let effects = r.on(Event::Exited(Exit::Code(1)));
        assert!(effects.contains(&Effect::Spawn(Proc::Finish)));
        assert_eq!(r.m.running, Some(Proc::Finish));
        r.on(Event::Spawned);
        assert_eq!(
            r.m.timer,
            Some((r.now + Duration::from_secs(2), Timer::FinishKill))
        );
        let effects = r.on(Event::TimerDue(Timer::FinishKill));
        assert!(effects.contains(&Effect::Signal(Signal::Kill)));
        r.on(Event::Exited(Exit::Code(125)));
        assert_eq!((r.m.status, r.m.failure_code), (S::Failed, 125));
        assert_eq!(r.m.timer, None);
        // A finish that cannot run: the longrun is restarted all the same.
        let mut r = Run::new(Config {
            has_finish: true,
            ..longrun()
        });
        r.on(Event::Start);
        r.on(Event::Spawned);
        r.on(Event::Exited(Exit::Code(1)));
        r.on(Event::SpawnFailed("cannot run finish".into()));
        assert_eq!(r.m.timer.map(|t| t.1), Some(Timer::Restart));
    }

    #[test]
    fn s6_svc_o_runs_once_and_u_starts_again() {
        let mut r = Run::new(longrun());
        r.on(Event::Start);
        r.on(Event::Spawned);
        r.on(Event::Once);
        r.on(Event::Exited(Exit::Code(0)));
        assert_eq!((r.m.status, r.m.timer), (S::Down, None));
        let effects = r.on(Event::WantUp { once: false });
        assert!(effects.contains(&Effect::Spawn(Proc::Run)));
        assert!(!r.m.once && r.m.want_up);
        // While a process runs, -u only sets the wish.
        r.on(Event::Spawned);
        assert!(r.on(Event::WantUp { once: true }).is_empty());
        assert!(r.m.once);
    }

    #[test]
    fn a_longrun_wanted_up_again_during_its_stop_is_started_once_it_is_over() {
        let mut r = Run::new(Config {
            has_finish: true,
            ..longrun()
        });
        r.on(Event::Start);
        r.on(Event::Spawned);
        r.later(Duration::from_secs(5));
        // `s6-svc -d`, then `-u` while `finish` runs (what `aiida-init restart` sends).
        r.on(Event::Stop);
        r.on(Event::Exited(Exit::Code(0)));
        r.on(Event::Spawned);
        r.on(Event::WantUp { once: false });
        let effects = r.on(Event::Exited(Exit::Code(0)));
        assert!(!notes(&effects).contains(&"down"), "{effects:?}");
        assert_eq!(r.m.timer, Some((r.now, Timer::Restart)));
        let effects = r.on(Event::TimerDue(Timer::Restart));
        assert!(effects.contains(&Effect::Spawn(Proc::Run)));
    }

    #[test]
    fn once_sent_while_finish_runs_keeps_the_longrun_down_until_wanted_up() {
        let mut r = Run::new(Config {
            has_finish: true,
            ..longrun()
        });
        r.on(Event::Start);
        r.on(Event::Spawned);
        r.later(Duration::from_secs(5));
        r.on(Event::Exited(Exit::Code(0)));
        r.on(Event::Spawned);
        // `finish` exits and its `s6-svc -O` is read before the restart timer fires.
        r.on(Event::Exited(Exit::Code(0)));
        assert_eq!(r.m.timer, Some((r.now, Timer::Restart)));
        r.on(Event::Once);
        let effects = r.on(Event::TimerDue(Timer::Restart));
        assert_eq!(notes(&effects), ["down"]);
        assert!(!effects.contains(&Effect::Spawn(Proc::Run)));
        assert_eq!((r.m.status, r.m.restarts), (S::Down, 0));
        // `s6-svc -u` (what `aiida-init start` sends) brings it back, restarted when it dies.
        let effects = r.on(Event::WantUp { once: false });
        assert!(effects.contains(&Effect::Spawn(Proc::Run)));
        assert!(!r.m.once && r.m.want_up);
    }

    #[test]
    fn stopping_a_longrun_sends_its_down_signal_then_kill_after_the_grace_time() {
        let mut r = Run::new(Config {
            kill_process_group: true,
            ..longrun()
        });
        r.on(Event::Start);
        r.on(Event::Spawned);
        r.phase = Phase::ShuttingDown;
        let effects = r.on(Event::Stop);
        assert!(effects.contains(&Effect::Signal(Signal::Down)));
        assert_eq!(notes(&effects), ["stopping"]);
        assert_eq!(r.m.status, S::Stopping);
        assert_eq!(r.m.timer, Some((r.now + GRACE, Timer::Kill)));
        assert!(!r.m.want_up);
        let effects = r.on(Event::TimerDue(Timer::Kill));
        assert!(effects.contains(&Effect::Signal(Signal::KillGroup)));
        let effects = r.on(Event::Exited(Exit::Signal(9)));
        assert_eq!(notes(&effects), ["exited (killed by SIGKILL)", "down"]);
        assert_eq!((r.m.status, r.m.timer), (S::Down, None));
        assert!(!r.m.active());
    }

    #[test]
    fn stopping_a_longrun_that_waits_for_its_restart_or_runs_finish() {
        let mut r = Run::new(Config {
            has_finish: true,
            ..longrun()
        });
        r.on(Event::Start);
        r.on(Event::Spawned);
        r.on(Event::Exited(Exit::Code(1)));
        r.on(Event::Spawned);
        r.on(Event::Stop);
        assert_eq!(r.m.status, S::Stopping);
        r.on(Event::Exited(Exit::Code(0)));
        assert_eq!(r.m.status, S::Down);
        let mut r = Run::new(longrun());
        r.on(Event::Start);
        r.on(Event::Spawned);
        r.on(Event::Exited(Exit::Code(1)));
        assert_eq!(r.m.timer.map(|t| t.1), Some(Timer::Restart));
        assert_eq!(notes(&r.on(Event::Stop)), ["down"]);
        assert_eq!((r.m.status, r.m.timer), (S::Down, None));
        // A restart that comes due after the stop does nothing.
        assert!(r.on(Event::TimerDue(Timer::Restart)).is_empty());
    }

    #[test]
    fn a_oneshot_runs_up_then_down() {
        let mut r = Run::new(oneshot());
        assert_eq!(r.on(Event::Start), vec![Effect::Spawn(Proc::Up)]);
        let effects = r.on(Event::Spawned);
        assert_eq!(notes(&effects), ["starting"]);
        assert_eq!(r.m.status, S::Starting);
        assert_eq!(
            r.m.timer,
            Some((r.now + Duration::from_millis(200), Timer::UpTimeout))
        );
        assert_eq!(notes(&r.on(Event::Exited(Exit::Code(0)))), ["up"]);
        assert_eq!((r.m.status, r.m.timer), (S::Up, None));
        assert!(r.m.satisfied(&r.cfg));
        r.phase = Phase::ShuttingDown;
        assert_eq!(r.on(Event::Stop), vec![Effect::Spawn(Proc::Down)]);
        assert_eq!(notes(&r.on(Event::Spawned)), ["stopping"]);
        assert_eq!(r.m.status, S::Stopping);
        let effects = r.on(Event::Exited(Exit::Code(3)));
        assert!(effects.contains(&Effect::Log(Level::Warning, "svc: down exited 3".into())));
        assert_eq!(r.m.status, S::Down);
    }

    #[test]
    fn a_oneshot_without_scripts_is_up_and_down_at_once() {
        let mut r = Run::new(Config {
            has_up: false,
            has_down: false,
            ..oneshot()
        });
        assert_eq!(notes(&r.on(Event::Start)), ["up"]);
        assert_eq!(r.m.status, S::Up);
        assert_eq!(notes(&r.on(Event::Stop)), ["down"]);
        assert_eq!(r.m.status, S::Down);
    }

    #[test]
    fn a_oneshot_that_fails_or_times_out() {
        let mut r = Run::new(oneshot());
        r.on(Event::Start);
        r.on(Event::Spawned);
        r.on(Event::Exited(Exit::Code(4)));
        assert_eq!(r.m.status, S::Failed);
        assert_eq!(r.m.reason.as_deref(), Some("up exited 4"));
        assert_eq!(r.m.failure_code, 4);
        assert!(r.m.settled(&r.cfg) && !r.m.satisfied(&r.cfg));
        // A failed oneshot stays failed at the stop.
        r.on(Event::Stop);
        assert_eq!(r.m.status, S::Failed);

        let mut r = Run::new(oneshot());
        r.on(Event::Start);
        r.on(Event::Spawned);
        let effects = r.on(Event::TimerDue(Timer::UpTimeout));
        assert!(effects.contains(&Effect::Signal(Signal::KillGroup)));
        assert_eq!(
            r.m.reason.as_deref(),
            Some("up timed out after 200 ms (timeout-up)")
        );
        // The killed `up` exits: the failure stands.
        r.on(Event::Exited(Exit::Signal(9)));
        assert_eq!((r.m.status, r.m.running), (S::Failed, None));

        let mut r = Run::new(oneshot());
        r.on(Event::Start);
        r.on(Event::SpawnFailed("cannot run up: no /bin/sh".into()));
        assert_eq!((r.m.status, r.m.failure_code), (S::Failed, 111));
    }

    #[test]
    fn stopping_a_oneshot_whose_up_runs_terminates_it() {
        let mut r = Run::new(oneshot());
        r.on(Event::Start);
        r.on(Event::Spawned);
        r.phase = Phase::ShuttingDown;
        assert_eq!(r.on(Event::Stop), vec![Effect::Signal(Signal::TermGroup)]);
        assert_eq!(r.m.status, S::Stopping);
        assert_eq!(r.m.timer, Some((r.now + GRACE, Timer::Kill)));
        assert!(
            r.on(Event::TimerDue(Timer::Kill))
                .contains(&Effect::Signal(Signal::KillGroup))
        );
        assert_eq!(notes(&r.on(Event::Exited(Exit::Signal(9)))), ["down"]);
        assert_eq!(r.m.status, S::Down);
    }

    #[test]
    fn down_that_cannot_run_or_times_out() {
        let mut r = Run::new(Config {
            timeout_down: Some(Duration::from_millis(100)),
            ..oneshot()
        });
        r.on(Event::Start);
        r.on(Event::Spawned);
        r.on(Event::Exited(Exit::Code(0)));
        r.on(Event::Stop);
        r.on(Event::Spawned);
        assert_eq!(
            r.m.timer,
            Some((r.now + Duration::from_millis(100), Timer::DownTimeout))
        );
        assert!(
            r.on(Event::TimerDue(Timer::DownTimeout))
                .contains(&Effect::Signal(Signal::KillGroup))
        );
        let mut r = Run::new(oneshot());
        r.on(Event::Start);
        r.on(Event::Spawned);
        r.on(Event::Exited(Exit::Code(0)));
        r.on(Event::Stop);
        let effects = r.on(Event::SpawnFailed("cannot run down: gone".into()));
        assert!(effects.contains(&Effect::Log(
            Level::Error,
            "svc: cannot run down: gone".into()
        )));
        assert_eq!(r.m.status, S::Down);
    }

    #[test]
    fn a_failed_dependency_fails_the_dependent_with_its_code() {
        let mut r = Run::new(oneshot());
        let effects = r.on(Event::DependencyFailed {
            dependency: "db".into(),
            code: 0,
        });
        assert_eq!(
            notes(&effects),
            ["failed: not started: its dependency db failed"]
        );
        assert_eq!(r.m.status, S::Failed);
        assert!(r.m.failed_by_dependency);
        assert_eq!(r.m.failure_code, 1);
    }

    #[test]
    fn a_longrun_dying_during_shutdown_is_not_restarted() {
        let mut r = Run::new(longrun());
        r.on(Event::Start);
        r.on(Event::Spawned);
        r.phase = Phase::ShuttingDown;
        let effects = r.on(Event::Exited(Exit::Code(0)));
        assert!(
            !effects
                .iter()
                .any(|e| matches!(e, Effect::Log(Level::Warning, _)))
        );
        assert_eq!((r.m.status, r.m.timer), (S::Down, None));
        assert!(r.on(Event::WantUp { once: false }).is_empty());
    }
}
