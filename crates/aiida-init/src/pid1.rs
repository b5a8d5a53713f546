//! The core loop: signals, reaping, child bookkeeping and the file descriptors PID 1 watches.
//!
//! Everything that touches process-wide state lives here, in one place:
//!
//! * at start, every catchable signal except the synchronous ones (SEGV, BUS, ILL, FPE, ABRT,
//!   TRAP, SYS) is blocked and read from a `signalfd`, so the loop never runs code in a signal
//!   handler and TTIN/TTOU/TSTP never stop PID 1; when not PID 1 we become a child subreaper;
//! * [`Reactor::spawn`] starts a child: services get their own session, no terminal and
//!   `/dev/null` as stdin, with stdout and stderr on pipes that the loop copies to the
//!   container's log, one line at a time, prefixed with the service name, and every signal at
//!   its default disposition; the command gets its own process group which becomes the
//!   terminal's foreground group (tini's way), inherits stdio and the dispositions we were
//!   given (a signal ignored when we started is ignored again for it, although we take it
//!   back to its default for ourselves: see [`Ignored`]); every child gets the original signal
//!   mask back before `exec`;
//! * [`Reactor::wait`] polls the signalfd, the output pipes, readiness pipes and the control
//!   FIFO until something happens or the engine's next deadline, reaps every exited child
//!   (`waitpid(-1, WNOHANG)` until nothing is left, orphans included) and returns [`Event`]s;
//! * the crate's entry point drives the engine with those events until it says it is done.

use std::collections::HashMap;
use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::Instant;

use nix::sys::signal::{SigSet, SigmaskHow, Signal, sigprocmask};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

/// Who a child process is, for the engine.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Role {
    /// A longrun's `run`.
    Run(usize),
    /// A longrun's `finish`.
    Finish(usize),
    /// A oneshot's `up`.
    Up(usize),
    /// A oneshot's `down`.
    Down(usize),
    /// The container command.
    Command,
}

/// How a child ended.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Exit {
    Code(i32),
    Signal(i32),
}

impl Exit {
    /// The shell convention: the exit code, or 128+N for signal N.
    pub fn code(self) -> i32 {
        match self {
            Exit::Code(c) => c,
            Exit::Signal(s) => 128 + s,
        }
    }
    pub fn describe(self) -> String {
        match self {
            Exit::Code(c) => format!("exited {c}"),
            Exit::Signal(s) => format!(
                "killed by {}",
                Signal::try_from(s).map_or("signal", Signal::as_str)
            ),
        }
    }
}

#[derive(Debug)]
pub enum Event {
    Exited {
        pid: i32,
        role: Option<Role>,
        exit: Exit,
    },
    Signal(i32),
    /// A service's readiness pipe got its newline.
    Ready(usize),
    /// A line of a service's output (already printed to the log).
    Line(usize, String),
    /// A line from the control FIFO.
    Control(String),
}

enum WatchKind {
    Output {
        service: Option<usize>,
        label: String,
        to_stderr: bool,
        partial: Vec<u8>,
    },
    Notify(usize),
    Control,
}

struct Watch {
    fd: OwnedFd,
    kind: WatchKind,
}

/// How a spawned child relates to the terminal.
pub enum Session {
    /// A service: new session, no terminal, stdin from /dev/null, output to the log.
    Service {
        label: String,
        service: Option<usize>,
    },
    /// The container command: own process group, foreground on the terminal, inherited stdio.
    Foreground,
}

pub struct Reactor {
    signals: SignalFd,
    original_mask: SigSet,
    /// The signals that were ignored when we started, handed back to the command.
    ignored_at_start: Ignored,
    children: HashMap<i32, Role>,
    watches: Vec<Watch>,
    /// The terminal on stdin, if any.
    tty: Option<RawFd>,
    pub is_pid1: bool,
}

/// The signals that were ignored (SIG_IGN) when aiida-init started: bit N for signal N.
///
/// Linux never discards a blocked signal, ignored or not, so our signalfd hears them all; but an
/// ignored SIGCHLD makes the kernel reap our children itself, and their exit status is lost
/// (the command's exit would never be seen). [`Ignored::take_back`] sets each ignored signal
/// to its default for us (it is blocked, so that does not kill us) and [`Ignored::restore`]
/// ignores them again in the command before `exec`, which then sees the dispositions it would
/// have seen without us (nohup's HUP, a background job's INT and QUIT, an ignored SIGCHLD).
/// SIGPIPE is left alone: Rust's runtime ignores it before `main`, so what we were given is
/// unknown, and it resets SIGPIPE to its default in every child it spawns.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Ignored(u64);

impl Ignored {
    /// The signals this applies to: the classic ones we block and can catch.
    fn candidates() -> impl Iterator<Item = i32> {
        (1..32).filter(|&sig| {
            ![libc::SIGKILL, libc::SIGSTOP, libc::SIGPIPE].contains(&sig)
                && !SYNCHRONOUS.iter().any(|s| *s as i32 == sig)
        })
    }

    fn bit(sig: i32) -> u64 {
        u32::try_from(sig).map_or(0, |n| 1u64 << n)
    }

    pub fn contains(self, sig: i32) -> bool {
        self.0 & Self::bit(sig) != 0
    }

    /// Which candidates are ignored now; each of them is set back to its default.
    fn take_back() -> Ignored {
        let mut found = Ignored::default();
        for sig in Self::candidates() {
            // SAFETY: sigaction with a null new action only reads the current one.
            let ignored = unsafe {
                let mut old: libc::sigaction = std::mem::zeroed();
                libc::sigaction(sig, std::ptr::null(), &raw mut old) == 0
                    && old.sa_sigaction == libc::SIG_IGN
            };
            if ignored {
                found.0 |= Self::bit(sig);
                // SAFETY: setting a default disposition; the signal is blocked.
                unsafe { libc::signal(sig, libc::SIG_DFL) };
            }
        }
        found
    }

    /// Ignore them again (between fork and exec: async-signal-safe calls only).
    fn restore(self) {
        for sig in 1..32 {
            if self.contains(sig) {
                // SAFETY: signal(2) is async-signal-safe.
                unsafe { libc::signal(sig, libc::SIG_IGN) };
            }
        }
    }
}

/// Signals that stay unblocked: raised by the CPU or abort(), they must kill us as usual.
const SYNCHRONOUS: &[Signal] = &[
    Signal::SIGSEGV,
    Signal::SIGBUS,
    Signal::SIGILL,
    Signal::SIGFPE,
    Signal::SIGABRT,
    Signal::SIGTRAP,
    Signal::SIGSYS,
];

impl Reactor {
    /// Take over signals (and become a subreaper when not PID 1).
    pub fn new() -> std::io::Result<Reactor> {
        let mut mask = SigSet::all();
        for s in SYNCHRONOUS {
            mask.remove(*s);
        }
        let mut original_mask = SigSet::empty();
        sigprocmask(SigmaskHow::SIG_BLOCK, Some(&mask), Some(&mut original_mask))?;
        let ignored_at_start = Ignored::take_back();
        let signals = SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)?;
        let is_pid1 = std::process::id() == 1;
        if !is_pid1 {
            // SAFETY: plain prctl.
            unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
        }
        close_inherited_fds_on_exec();
        // SAFETY: isatty on fd 0.
        let tty = (unsafe { libc::isatty(0) } == 1).then_some(0);
        Ok(Reactor {
            signals,
            original_mask,
            ignored_at_start,
            children: HashMap::new(),
            watches: Vec::new(),
            tty,
            is_pid1,
        })
    }

    pub fn has_tty(&self) -> bool {
        self.tty.is_some()
    }

    /// Number of children we spawned that are still running.
    pub fn tracked_children(&self) -> usize {
        self.children.len()
    }

    /// Watch a readiness pipe for service `service`.
    pub fn watch_notify(&mut self, fd: OwnedFd, service: usize) {
        set_nonblocking(fd.as_raw_fd());
        self.watches.push(Watch {
            fd,
            kind: WatchKind::Notify(service),
        });
    }

    /// Watch the control FIFO.
    pub fn watch_control(&mut self, fd: OwnedFd) {
        self.watches.push(Watch {
            fd,
            kind: WatchKind::Control,
        });
    }

    /// Start a child. `notify` = (fd number the child sees, write end of the readiness pipe).
    pub fn spawn(
        &mut self,
        mut cmd: Command,
        role: Role,
        session: &Session,
        notify: Option<(i32, OwnedFd)>,
    ) -> std::io::Result<i32> {
        let original_mask = self.original_mask;
        let ignored_at_start = self.ignored_at_start;
        let notify_raw = notify.as_ref().map(|(n, fd)| (*n, fd.as_raw_fd()));
        let tty = self.tty;
        let mut outputs = Vec::new();
        match session {
            Session::Service { label, service } => {
                cmd.stdin(Stdio::null());
                let (out_r, out_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
                let (err_r, err_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
                cmd.stdout(Stdio::from(out_w));
                cmd.stderr(Stdio::from(err_w));
                outputs.push((out_r, false, label.clone(), *service));
                outputs.push((err_r, true, label.clone(), *service));
                // SAFETY: only async-signal-safe calls between fork and exec.
                unsafe {
                    cmd.pre_exec(move || {
                        libc::setsid();
                        // A service starts with every signal at its default, whatever we
                        // inherited (a background job starts with INT and QUIT ignored), so
                        // that its down-signal always reaches it.
                        for sig in 1..32 {
                            if sig != libc::SIGKILL && sig != libc::SIGSTOP {
                                libc::signal(sig, libc::SIG_DFL);
                            }
                        }
                        if let Some((target, fd)) = notify_raw {
                            if fd == target {
                                libc::fcntl(fd, libc::F_SETFD, 0);
                            } else if libc::dup2(fd, target) < 0 {
                                return Err(std::io::Error::last_os_error());
                            }
                        }
                        sigprocmask(SigmaskHow::SIG_SETMASK, Some(&original_mask), None)
                            .map_err(std::io::Error::from)?;
                        Ok(())
                    });
                }
            }
            Session::Foreground => {
                // SAFETY: only async-signal-safe calls between fork and exec.
                unsafe {
                    cmd.pre_exec(move || {
                        ignored_at_start.restore();
                        libc::setpgid(0, 0);
                        if let Some(fd) = tty {
                            let mut block = SigSet::empty();
                            block.add(Signal::SIGTTOU);
                            let _ = sigprocmask(SigmaskHow::SIG_BLOCK, Some(&block), None);
                            libc::tcsetpgrp(fd, libc::getpid());
                        }
                        sigprocmask(SigmaskHow::SIG_SETMASK, Some(&original_mask), None)
                            .map_err(std::io::Error::from)?;
                        Ok(())
                    });
                }
            }
        }
        let child = cmd.spawn();
        drop(cmd); // closes our copies of the pipes' write ends
        drop(notify);
        let child = child?;
        let pid = pid_i32(child.id());
        // The pid is reaped by our own loop, never through `Child`.
        std::mem::forget(child);
        self.children.insert(pid, role);
        for (fd, to_stderr, label, service) in outputs {
            set_nonblocking(fd.as_raw_fd());
            self.watches.push(Watch {
                fd,
                kind: WatchKind::Output {
                    service,
                    label,
                    to_stderr,
                    partial: Vec::new(),
                },
            });
        }
        Ok(pid)
    }

    /// Wait for events until `deadline` (None: until something happens).
    pub fn wait(&mut self, deadline: Option<Instant>) -> Vec<Event> {
        let timeout_ms = poll_timeout_ms(deadline, Instant::now());
        let mut fds = vec![libc::pollfd {
            fd: self.signals.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        }];
        for w in &self.watches {
            fds.push(libc::pollfd {
                fd: w.fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            });
        }
        // SAFETY: fds is a valid array of pollfd.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) };
        let mut events = Vec::new();
        if n <= 0 {
            return events;
        }
        if fds[0].revents != 0 {
            self.read_signals(&mut events);
        }
        let mut closed = Vec::new();
        for (k, pfd) in fds[1..].iter().enumerate() {
            if pfd.revents != 0 && self.read_watch(k, &mut events) {
                closed.push(k);
            }
        }
        for k in closed.into_iter().rev() {
            self.watches.remove(k);
        }
        events
    }

    fn read_signals(&mut self, events: &mut Vec<Event>) {
        let mut reap = false;
        while let Ok(Some(info)) = self.signals.read_signal() {
            let sig = i32::try_from(info.ssi_signo).unwrap_or(0);
            if sig == libc::SIGCHLD {
                reap = true;
            } else {
                events.push(Event::Signal(sig));
            }
        }
        if reap {
            self.reap(events);
        }
    }

    /// Reap every child that has exited, tracked or not.
    pub fn reap(&mut self, events: &mut Vec<Event>) {
        loop {
            match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) => {
                    let role = self.children.remove(&pid.as_raw());
                    events.push(Event::Exited {
                        pid: pid.as_raw(),
                        role,
                        exit: Exit::Code(code),
                    });
                }
                Ok(WaitStatus::Signaled(pid, sig, _)) => {
                    let role = self.children.remove(&pid.as_raw());
                    events.push(Event::Exited {
                        pid: pid.as_raw(),
                        role,
                        exit: Exit::Signal(sig as i32),
                    });
                }
                Ok(WaitStatus::StillAlive) | Err(_) => break,
                Ok(_) => {}
            }
        }
    }

    /// Read one watched fd; returns true when it is finished (EOF or done).
    fn read_watch(&mut self, k: usize, events: &mut Vec<Event>) -> bool {
        let mut buf = [0u8; 16384];
        let w = &mut self.watches[k];
        let n = nix::unistd::read(&w.fd, &mut buf);
        let data: &[u8] = match n {
            Ok(0) => &[],
            Ok(n) => &buf[..n],
            Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EINTR) => return false,
            Err(_) => &[],
        };
        let eof = data.is_empty();
        match &mut w.kind {
            WatchKind::Output {
                service,
                label,
                to_stderr,
                partial,
            } => {
                partial.extend_from_slice(data);
                let mut lines = Vec::new();
                while let Some(pos) = partial.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = partial.drain(..=pos).collect();
                    lines.push(String::from_utf8_lossy(&line[..line.len() - 1]).into_owned());
                }
                // A very long line without a newline is passed on in pieces.
                if partial.len() > 64 * 1024 || (eof && !partial.is_empty()) {
                    lines.push(String::from_utf8_lossy(partial).into_owned());
                    partial.clear();
                }
                if !lines.is_empty() {
                    let mut text = String::new();
                    for l in &lines {
                        text.push_str(&format!("[{label}] {l}\n"));
                    }
                    if *to_stderr {
                        let _ = std::io::stderr().write_all(text.as_bytes());
                    } else {
                        let mut out = std::io::stdout().lock();
                        let _ = out.write_all(text.as_bytes());
                        let _ = out.flush();
                    }
                    if let Some(s) = service {
                        events.extend(lines.into_iter().map(|l| Event::Line(*s, l)));
                    }
                }
                eof
            }
            WatchKind::Notify(service) => {
                if data.contains(&b'\n') {
                    events.push(Event::Ready(*service));
                    return true;
                }
                eof
            }
            WatchKind::Control => {
                for line in String::from_utf8_lossy(data).lines() {
                    if !line.trim().is_empty() {
                        events.push(Event::Control(line.trim().to_string()));
                    }
                }
                false
            }
        }
    }

    /// Send `sig` to every process we are responsible for (all but ourselves when PID 1, else
    /// our descendants).
    pub fn signal_everything(&self, sig: Signal) {
        if self.is_pid1 {
            let _ = nix::sys::signal::kill(Pid::from_raw(-1), sig);
        } else {
            for pid in descendants() {
                let _ = nix::sys::signal::kill(Pid::from_raw(pid), sig);
            }
        }
    }

    /// True when no process other than us is left. As PID 1 or as a subreaper, every
    /// descendant whose parent died is reparented to us, so none left means no child left.
    pub fn nothing_left(&mut self, events: &mut Vec<Event>) -> bool {
        self.reap(events);
        matches!(
            waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)),
            Err(nix::errno::Errno::ECHILD)
        )
    }
}

/// A pid as the kernel's `pid_t` (pids never exceed `i32::MAX`, `/proc/sys/kernel/pid_max`).
pub fn pid_i32(pid: u32) -> i32 {
    i32::try_from(pid).unwrap_or(i32::MAX)
}

/// Live (non-zombie) descendants of this process, from /proc.
pub fn descendants() -> Vec<i32> {
    let me = pid_i32(std::process::id());
    let mut parent_of: Vec<(i32, i32)> = Vec::new();
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for e in entries.flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                continue;
            };
            let Some(after) = stat
                .rsplit_once(')')
                .map(|(_, a)| a.trim_start().to_string())
            else {
                continue;
            };
            let mut fields = after.split_whitespace();
            let state = fields.next().unwrap_or("");
            let ppid: i32 = fields.next().and_then(|p| p.parse().ok()).unwrap_or(0);
            if state != "Z" && state != "X" {
                parent_of.push((pid, ppid));
            }
        }
    }
    let mut found = vec![me];
    let mut k = 0;
    while k < found.len() {
        let p = found[k];
        for (pid, ppid) in &parent_of {
            if *ppid == p && !found.contains(pid) {
                found.push(*pid);
            }
        }
        k += 1;
    }
    found.remove(0);
    found
}

/// `poll`'s timeout for `deadline`: -1 (none) without one, 0 when it has passed, else the
/// milliseconds until it, rounded up so the wake-up is never early, and at most `i32::MAX`
/// (24.8 days; a later deadline wakes the loop then, which looks again).
pub fn poll_timeout_ms(deadline: Option<Instant>, now: Instant) -> i32 {
    let Some(deadline) = deadline else {
        return -1;
    };
    let left = deadline.saturating_duration_since(now);
    let ms = left.as_millis() + u128::from(left.subsec_nanos() % 1_000_000 != 0);
    i32::try_from(ms).unwrap_or(i32::MAX)
}

/// [`poll_timeout_ms`] from now, as nix's `poll` takes it: for every loop that polls until a
/// deadline. A timeout rounded down instead (`Duration::as_millis`) wakes such a loop up to 1 ms
/// early, and it then polls with a zero timeout, spinning, until the deadline passes.
pub fn poll_timeout(deadline: Option<Instant>) -> nix::poll::PollTimeout {
    nix::poll::PollTimeout::try_from(poll_timeout_ms(deadline, Instant::now()))
        .unwrap_or(nix::poll::PollTimeout::MAX)
}

fn set_nonblocking(fd: RawFd) {
    // SAFETY: fcntl on an fd we own.
    unsafe {
        let fl = libc::fcntl(fd, libc::F_GETFL);
        libc::fcntl(fd, libc::F_SETFL, fl | libc::O_NONBLOCK);
    }
}

/// Mark every inherited fd >= 3 close-on-exec, so children do not inherit them.
fn close_inherited_fds_on_exec() {
    if let Ok(entries) = std::fs::read_dir("/proc/self/fd") {
        let fds: Vec<i32> = entries
            .flatten()
            .filter_map(|e| e.file_name().to_string_lossy().parse().ok())
            .collect();
        for fd in fds {
            if fd >= 3 {
                // SAFETY: setting FD_CLOEXEC on a possibly stale fd is harmless.
                unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
            }
        }
    }
}

/// A pipe whose read end we watch and whose write end a child gets (close-on-exec both).
pub fn readiness_pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    Ok(nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?)
}

/// Open (creating it if needed) the control FIFO, read-write so it never reports EOF.
pub fn open_control_fifo(path: &std::path::Path) -> std::io::Result<OwnedFd> {
    let _ = std::fs::remove_file(path);
    nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(0o620))?;
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: open on a valid C string.
    let fd = unsafe {
        libc::open(
            c.as_ptr(),
            libc::O_RDWR | libc::O_NONBLOCK | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fd was just opened and is owned here.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn what_is_taken_back_and_handed_on_excludes_pipe_kill_stop_and_the_synchronous_signals() {
        let taken: Vec<i32> = Ignored::candidates().collect();
        for sig in [
            libc::SIGHUP,
            libc::SIGINT,
            libc::SIGQUIT,
            libc::SIGCHLD,
            libc::SIGTERM,
        ] {
            assert!(taken.contains(&sig), "{sig}");
        }
        for sig in [
            libc::SIGPIPE,
            libc::SIGKILL,
            libc::SIGSTOP,
            libc::SIGSEGV,
            libc::SIGABRT,
        ] {
            assert!(!taken.contains(&sig), "{sig}");
        }
        let nohup = Ignored(Ignored::bit(libc::SIGHUP) | Ignored::bit(libc::SIGINT));
        assert!(nohup.contains(libc::SIGHUP) && nohup.contains(libc::SIGINT));
        assert!(!nohup.contains(libc::SIGQUIT) && !nohup.contains(libc::SIGCHLD));
        assert!(!Ignored::default().contains(libc::SIGHUP));
    }

    #[test]
    fn the_poll_timeout_rounds_up_and_never_overflows() {
        let now = Instant::now();
        assert_eq!(poll_timeout_ms(None, now), -1);
        assert_eq!(poll_timeout_ms(Some(now), now), 0);
        assert_eq!(poll_timeout_ms(Some(now), now + Duration::from_secs(1)), 0);
        assert_eq!(
            poll_timeout_ms(Some(now + Duration::from_millis(5)), now),
            5
        );
        assert_eq!(
            poll_timeout_ms(Some(now + Duration::from_micros(5001)), now),
            6
        );
        assert_eq!(poll_timeout_ms(Some(now + Duration::from_nanos(1)), now), 1);
        // 24.8 days and more: the longest wait poll takes, not a negative (infinite) one.
        let limit = Duration::from_millis(i32::MAX as u64);
        assert_eq!(poll_timeout_ms(Some(now + limit), now), i32::MAX);
        let huge = Duration::from_secs(100 * 365 * 24 * 3600);
        assert_eq!(poll_timeout_ms(Some(now + huge), now), i32::MAX);
        assert_eq!(poll_timeout(None), nix::poll::PollTimeout::NONE);
        assert_eq!(
            poll_timeout(Some(Instant::now() - Duration::from_millis(1))),
            nix::poll::PollTimeout::ZERO
        );
        // 4.5 ms left: 5 ms, not 4 (and then a busy loop for the last half millisecond).
        let timeout = poll_timeout(Some(Instant::now() + Duration::from_micros(4500)));
        assert_eq!(i32::from(timeout), 5);
    }
}
