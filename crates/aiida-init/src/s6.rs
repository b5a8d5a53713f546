//! The s6 and s6-overlay helpers that service scripts call, run in-process by the interpreter:
//!
//! * `with-contenv PROG...`: run PROG in the container environment (the envdir of the running
//!   instance), keeping PATH; a no-op with `S6_KEEP_ENV=1`;
//! * `printcontenv VAR`: print one container variable (exit 1 when it is not set);
//! * `s6-envdir [-f] DIR PROG...`: set variables from an envdir, then run PROG;
//! * `s6-setuidgid ACCOUNT PROG...`: a no-op for the current user; switching to another user
//!   needs root, otherwise it fails (never a setuid helper);
//! * `s6-notifyoncheck [-3 fd] [-s ms] [-T ms] [-t ms] [-w ms] [-n n] [-c cmdline] PROG...`:
//!   polls `./data/check` (or the execline command line of `-c`) in the background and writes
//!   the readiness newline to the notification fd when it succeeds, with s6's defaults
//!   (10 ms initial sleep, 1000 ms between attempts, 7 attempts); as s6's, the poller ends when
//!   the service's process does (the next start of the service polls anew);
//! * `s6-svc -abqhkti12pcyroduDUxO SERVICEDIR...`: control a longrun of the running instance (by
//!   the directory's name); an unknown letter is a usage error;
//! * `halt`, `poweroff`, `reboot`: start the ordered shutdown of the running instance.

use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use super::getopt::{SYSTEM, USAGE, die};
use super::program::{Context, Invocation, Next};
use super::runtime;

fn set_env(k: &str, v: &str) {
    // SAFETY: these helpers are single-threaded.
    unsafe { std::env::set_var(k, v) }
}

fn keep_env() -> bool {
    std::env::var("S6_KEEP_ENV").is_ok_and(|v| !v.is_empty() && v.trim() != "0")
}

/// `with-contenv PROG...`.
pub fn with_contenv(inv: &Invocation) -> Next {
    Next::Chain(load_contenv(inv.args))
}

fn load_contenv(args: &[String]) -> Vec<String> {
    if keep_env() {
        return args.to_vec();
    }
    let rt =
        runtime::for_helpers().unwrap_or_else(|e| die("with-contenv", SYSTEM, &format!("{e:#}")));
    let vars = runtime::read_envdir(&rt.container_environment())
        .unwrap_or_else(|e| die("with-contenv", SYSTEM, &format!("{e:#}")));
    let explicit = std::env::var(runtime::ENV_RUNTIME_DIR).ok();
    for (k, _) in std::env::vars_os() {
        if k != "PATH" {
            // SAFETY: single-threaded.
            unsafe { std::env::remove_var(&k) };
        }
    }
    for (k, v) in vars {
        set_env(&k, &v);
    }
    if let Some(dir) = explicit {
        if std::env::var_os(runtime::ENV_RUNTIME_DIR).is_none() {
            set_env(runtime::ENV_RUNTIME_DIR, &dir);
        }
    }
    args.to_vec()
}

/// `s6-envdir [-f] DIR PROG...`.
pub fn s6_envdir(inv: &Invocation) -> Next {
    let whole = inv.options.has('f');
    let Some(dir) = inv.args.first() else {
        die(inv.name, USAGE, "usage: s6-envdir [-f] dir prog...")
    };
    let entries = std::fs::read_dir(dir)
        .unwrap_or_else(|e| die(inv.name, SYSTEM, &format!("unable to read {dir}: {e}")));
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        let content = std::fs::read(e.path()).unwrap_or_default();
        if content.is_empty() {
            // SAFETY: single-threaded.
            unsafe { std::env::remove_var(&name) };
            continue;
        }
        let text = String::from_utf8_lossy(&content);
        let value = if whole {
            text.strip_suffix('\n').unwrap_or(&text).to_string()
        } else {
            text.lines().next().unwrap_or("").trim_end().to_string()
        };
        set_env(&name, &value.replace('\0', "\n"));
    }
    Next::Chain(inv.args[1..].to_vec())
}

/// `printcontenv VAR`.
pub fn printcontenv(inv: &Invocation) -> Next {
    let Some(var) = inv.args.first() else {
        die(inv.name, USAGE, "usage: printcontenv VAR")
    };
    let value = if keep_env() {
        std::env::var(var).ok()
    } else {
        let rt =
            runtime::for_helpers().unwrap_or_else(|e| die(inv.name, SYSTEM, &format!("{e:#}")));
        std::fs::read_to_string(rt.container_environment().join(var)).ok()
    };
    match value {
        Some(v) => {
            println!("{v}");
            Next::Exit(0)
        }
        None => Next::Exit(1),
    }
}

/// `s6-setuidgid ACCOUNT PROG...`.
pub fn s6_setuidgid(inv: &Invocation) -> Next {
    Next::Chain(setuidgid(inv.args))
}

fn setuidgid(args: &[String]) -> Vec<String> {
    let Some(account) = args.first() else {
        die("s6-setuidgid", USAGE, "usage: s6-setuidgid account prog...")
    };
    let rest = args[1..].to_vec();
    if account.is_empty() {
        return rest;
    }
    let (uid, gid, name) = if let Some((u, g)) = account.split_once(':') {
        match (u.parse::<u32>(), g.parse::<u32>()) {
            (Ok(u), Ok(g)) => (u, g, None),
            _ => die(
                "s6-setuidgid",
                USAGE,
                &format!("invalid account: {account}"),
            ),
        }
    } else {
        match nix::unistd::User::from_name(account) {
            Ok(Some(u)) => (u.uid.as_raw(), u.gid.as_raw(), Some(u.name)),
            _ => die("s6-setuidgid", 1, &format!("unknown account: {account}")),
        }
    };
    let me = nix::unistd::geteuid().as_raw();
    if uid == me && nix::unistd::getegid().as_raw() == gid {
        return rest;
    }
    if me != 0 {
        die(
            "s6-setuidgid",
            SYSTEM,
            &format!(
                "cannot switch to {account} (uid {uid}): aiida-init is not running as root, and uses no setuid helper; run the service as the current user instead"
            ),
        );
    }
    let g = nix::unistd::Gid::from_raw(gid);
    if let Some(n) = name {
        let c = std::ffi::CString::new(n).unwrap();
        if let Err(e) = nix::unistd::initgroups(&c, g) {
            die(
                "s6-setuidgid",
                SYSTEM,
                &format!("unable to set the groups of {account}: {e}"),
            );
        }
    } else if let Err(e) = nix::unistd::setgroups(&[g]) {
        die(
            "s6-setuidgid",
            SYSTEM,
            &format!("unable to set groups: {e}"),
        );
    }
    if let Err(e) =
        nix::unistd::setgid(g).and_then(|()| nix::unistd::setuid(nix::unistd::Uid::from_raw(uid)))
    {
        die(
            "s6-setuidgid",
            SYSTEM,
            &format!("unable to switch to {account}: {e}"),
        );
    }
    rest
}

fn parse_ms(v: &str, opt: char) -> u64 {
    v.parse().unwrap_or_else(|_| {
        die(
            "s6-notifyoncheck",
            USAGE,
            &format!("invalid value for -{opt}: {v}"),
        )
    })
}

/// How `s6-notifyoncheck` polls.
struct Poll {
    initial: u64,
    global: u64,
    local: u64,
    waiting: u64,
    tries: u64,
    check: Option<String>,
}

/// `s6-notifyoncheck [-d] [-3 fd] [-s ms] [-T ms] [-t ms] [-w ms] [-n n] [-c cmdline] PROG...`.
pub fn s6_notifyoncheck(inv: &Invocation) -> Next {
    let prog = inv.name;
    let o = &inv.options;
    let value = |c: char, default: u64| o.value(c).map_or(default, |v| parse_ms(v, c));
    let poll = Poll {
        initial: value('s', 10),
        global: value('T', 0),
        local: value('t', 0),
        waiting: value('w', 1000),
        tries: value('n', 7),
        check: o.value('c').map(String::from),
    };
    if inv.args.is_empty() {
        die(
            prog,
            USAGE,
            "usage: s6-notifyoncheck [-3 fd] [-s ms] [-T ms] [-t ms] [-w ms] [-n n] [-c checkprog] prog...",
        );
    }
    let fd: i32 = match o.value('3') {
        Some(v) => v
            .parse()
            .unwrap_or_else(|_| die(prog, USAGE, &format!("invalid value for -3: {v}"))),
        None => {
            let text = std::fs::read_to_string("notification-fd").unwrap_or_else(|e| {
                die(
                    prog,
                    USAGE,
                    &format!("no -3 option and cannot read ./notification-fd: {e}"),
                )
            });
            text.trim()
                .parse()
                .unwrap_or_else(|_| die(prog, USAGE, "./notification-fd does not contain a number"))
        }
    };
    if !fd_is_open(fd) {
        die(
            prog,
            USAGE,
            &format!("the notification fd {fd} is not open"),
        );
    }
    // Double fork: the poller is reparented to the supervisor, which reaps it.
    // SAFETY: single-threaded at this point.
    match unsafe { nix::unistd::fork() } {
        Ok(nix::unistd::ForkResult::Child) => {
            // The parent, which becomes the service's program, waits for this child: it is alive.
            let service = ServiceProcess::parent();
            // SAFETY: as above.
            match unsafe { nix::unistd::fork() } {
                Ok(nix::unistd::ForkResult::Child) => poll_check(fd, &poll, inv.context, &service),
                _ => std::process::exit(0),
            }
        }
        Ok(nix::unistd::ForkResult::Parent { child }) => {
            let _ = nix::sys::wait::waitpid(child, None);
            // SAFETY: the poller has its own copy; the program must not hold the fd.
            unsafe { libc::close(fd) };
            Next::Chain(inv.args.to_vec())
        }
        Err(e) => die(prog, SYSTEM, &format!("unable to fork: {e}")),
    }
}

/// The service's process, which the poller outlives otherwise: a service that exits and is
/// started again would leave one poller more at each start, each polling until its tries run out
/// (`-n 0`: forever). s6's poller ends on the service's down event; this one watches the process
/// itself, by a pidfd (Linux 5.3), else by its start time in /proc (none once it is a zombie).
struct ServiceProcess {
    pidfd: Option<OwnedFd>,
    proc_dir: PathBuf,
    start_ticks: Option<u64>,
}

impl ServiceProcess {
    fn parent() -> Self {
        let pid = nix::unistd::getppid().as_raw();
        let proc_dir = PathBuf::from(format!("/proc/{pid}"));
        Self {
            pidfd: pidfd_open(pid),
            start_ticks: runtime::start_ticks(&proc_dir),
            proc_dir,
        }
    }

    /// Waits up to `timeout`; true as soon as the process has ended.
    fn ended_within(&self, timeout: Duration) -> bool {
        match &self.pidfd {
            Some(pidfd) => {
                let deadline = Instant::now() + timeout;
                loop {
                    if pidfd_ended(pidfd, None, Some(deadline)) {
                        return true;
                    }
                    if Instant::now() >= deadline {
                        return false;
                    }
                }
            }
            None => {
                std::thread::sleep(timeout);
                runtime::start_ticks(&self.proc_dir) != self.start_ticks
            }
        }
    }

    /// Waits while the check `check` runs: until it ends, this process ends (true), or
    /// `deadline`. With a pidfd on both, in one `poll` that wakes only for one of these; else
    /// (Linux before 5.3) it looks every 5 ms.
    fn ended_while_checking(&self, check: Option<&OwnedFd>, deadline: Option<Instant>) -> bool {
        match (&self.pidfd, check) {
            (Some(pidfd), Some(check)) => pidfd_ended(pidfd, Some(check), deadline),
            _ => self.ended_within(Duration::from_millis(5)),
        }
    }
}

/// One `poll` until `deadline` (none: no limit) on `pidfd`, and on `also` if given: true when
/// `pidfd`'s process has ended (any event on it); false when the time is up, `also` is readable,
/// or a signal came.
fn pidfd_ended(pidfd: &OwnedFd, also: Option<&OwnedFd>, deadline: Option<Instant>) -> bool {
    use nix::poll::{PollFd, PollFlags};
    use std::os::fd::AsFd;
    let mut fds: Vec<PollFd> = std::iter::once(pidfd)
        .chain(also)
        .map(|fd| PollFd::new(fd.as_fd(), PollFlags::POLLIN))
        .collect();
    let _ = nix::poll::poll(&mut fds, crate::pid1::poll_timeout(deadline));
    fds[0].revents().is_some_and(|r| !r.is_empty())
}

/// A pidfd on process `pid` (pidfd_open(2), Linux 5.3), or none where the kernel has no such call.
fn pidfd_open(pid: i32) -> Option<OwnedFd> {
    // SAFETY: pidfd_open(2) with flags 0; a non-negative result is a new fd that we own.
    let raw = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    i32::try_from(raw)
        .ok()
        .filter(|fd| *fd >= 0)
        // SAFETY: as above.
        .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) })
}

fn poll_check(fd: i32, poll: &Poll, context: &Context, service: &ServiceProcess) -> ! {
    let Poll {
        initial,
        global,
        local,
        waiting,
        tries,
        ref check,
    } = *poll;
    let start = Instant::now();
    if service.ended_within(Duration::from_millis(initial)) {
        std::process::exit(2);
    }
    let mut attempt = 0u64;
    loop {
        attempt += 1;
        let mut cmd = match check {
            Some(cmdline) => {
                let mut c = Command::new(
                    std::env::current_exe().unwrap_or_else(|_| "/proc/self/exe".into()),
                );
                c.arg0("execlineb").arg("-Pc").arg(cmdline);
                c
            }
            None => (context.script_command)(Path::new("./data/check")),
        };
        // SAFETY: fd is ours; the check must not inherit the notification fd.
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
        let ok = match cmd.spawn() {
            Ok(mut child) => {
                let deadline = (local > 0).then(|| Instant::now() + Duration::from_millis(local));
                let check = i32::try_from(child.id()).ok().and_then(pidfd_open);
                loop {
                    match child.try_wait() {
                        Ok(Some(status)) => break status.success(),
                        Ok(None) => {}
                        Err(_) => break false,
                    }
                    if deadline.is_some_and(|d| Instant::now() >= d) {
                        let _ = child.kill();
                        let _ = child.wait();
                        break false;
                    }
                    if service.ended_while_checking(check.as_ref(), deadline) {
                        let _ = child.kill();
                        let _ = child.wait();
                        std::process::exit(2);
                    }
                }
            }
            Err(_) => false,
        };
        if ok {
            // SAFETY: writing one byte to our fd.
            unsafe { libc::write(fd, b"\n".as_ptr().cast(), 1) };
            std::process::exit(0);
        }
        if tries > 0 && attempt >= tries {
            eprintln_whole!(
                "s6-notifyoncheck: fatal: the check failed {attempt} times: giving up (the service stays up, not ready)"
            );
            std::process::exit(1);
        }
        if global > 0 && start.elapsed() >= Duration::from_millis(global) {
            eprintln_whole!("s6-notifyoncheck: fatal: timed out");
            std::process::exit(99);
        }
        if service.ended_within(Duration::from_millis(waiting)) {
            std::process::exit(2);
        }
    }
}

fn send_control(prog: &str, line: &str) {
    let sent = runtime::for_helpers().and_then(|rt| runtime::send_control(&rt, line));
    if let Err(e) = sent {
        die(prog, SYSTEM, &format!("{e:#}"));
    }
}

/// The letters of `s6-svc` that aiida-init acts on (see the engine's control requests).
pub const SVC_LETTERS: &str = "abqhkti12pcyroduDUxO";

/// `s6-svc [-wX] [-T ms] -LETTERS SERVICEDIR...`.
pub fn s6_svc(inv: &Invocation) -> Next {
    let letters: String = inv
        .options
        .options
        .iter()
        .map(|(c, _)| *c)
        .filter(|c| SVC_LETTERS.contains(*c))
        .collect();
    if inv.args.is_empty() || letters.is_empty() {
        die(
            inv.name,
            USAGE,
            "usage: s6-svc [-wu|-wU|-wd|-wD|-wr|-wR] [-T timeout] -abqhkti12pcyroduDUxO servicedir...",
        );
    }
    for d in inv.args {
        let path = std::fs::canonicalize(d).unwrap_or_else(|_| PathBuf::from(d));
        let name = path
            .file_name()
            .map_or_else(|| d.clone(), |n| n.to_string_lossy().into_owned());
        send_control(inv.name, &format!("svc -{letters} {name}"));
    }
    Next::Exit(0)
}

/// `halt`, `poweroff`, `reboot`.
pub fn halt(inv: &Invocation) -> Next {
    send_control(inv.name, "halt");
    Next::Exit(0)
}

/// True when `fd` is an open descriptor of this process (a readiness fd handed to a service).
pub fn fd_is_open(fd: i32) -> bool {
    // SAFETY: F_GETFD only reads the descriptor's flags.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
    flags >= 0
}
