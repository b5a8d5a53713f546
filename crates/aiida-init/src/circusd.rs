//! `aiida-init circusd`: an arbiter for one watcher that speaks circus's controller protocol, so
//! that aiida-core's `DaemonClient` (and so `verdi daemon status`, `incr`, `decr`, `stop`) and any
//! circus client drive it as they drive circus, without a Python interpreter on the start-up path.
//!
//! ```text
//! aiida-init circusd --name NAME --controller SOCKET --log-file FILE [--pid-file FILE]
//!                    [--workers N] [--stop-timeout SECS] [--notify-fd FD] [--quit-fd FD]
//!                    -- CMD [ARG...]
//! ```
//!
//! It binds the controller socket (ZMTP over a Unix socket, [`super::zmtp`]), writes the PID
//! file, starts N processes of CMD (stdin /dev/null, stdout and stderr appended to FILE, the
//! environment inherited) and, once all of that is done, writes a newline to FD (s6's readiness
//! notification). A process that ends is started again (at once if it ran a second or more, else
//! a second later, so that a command that fails at once does not spin). SIGTERM, SIGINT, SIGQUIT
//! or the `quit` command stop the processes (SIGTERM, then SIGKILL after the stop timeout), remove
//! the PID file and the socket, and end it with 0. `quit` is answered once the processes have
//! stopped (circus's `waiting`), and with `--quit-fd` only after a handshake on that descriptor
//! (a socket): `quit` and a newline are written to it, and the answer waits for a line back (or
//! its end, at most QUIT_HANDSHAKE_TIMEOUT). A supervisor that runs circusd learns there that a
//! client stopped the daemon, and can act on it before the client hears so (aiida-core's
//! `verdi daemon restart` starts the daemon again as soon as `quit` is answered).
//!
//! Commands, answered as circus answers them (the `status`, `time` and `id` fields of each reply
//! included): `status`, `numprocesses`, `stats` (per-process `pid`, `mem`, `cpu`, `create_time`,
//! ... from /proc, `cpu` being the average since the process started), `dstats`, `incr`, `decr`,
//! `start`, `stop`, `restart`, `list`, `quit`. Any other command gets circus's "unknown command"
//! error. The word `circusd` in its command line is how aiida-core recognises a daemon's PID file.

use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::os::fd::{AsFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use nix::sys::signal::{SigSet, SigmaskHow, Signal, kill, sigprocmask};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;
use serde_json::{Map, Value, json};

use super::zmtp::Router;

/// A process that ran at least this long is started again at once when it ends.
const RESPAWN_AFTER: Duration = Duration::from_secs(1);
/// How often a stop checks whether the processes it signalled have ended.
const STOP_CHECK_INTERVAL: Duration = Duration::from_millis(10);
/// How long a `quit` waits for the answer to its handshake on `--quit-fd`.
const QUIT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

// circus's error numbers (circus.commands.errors).
const INVALID_JSON: u8 = 1;
const UNKNOWN_COMMAND: u8 = 2;
const MESSAGE_ERROR: u8 = 3;

/// What the command line asks for.
#[derive(Debug, PartialEq)]
pub struct Options {
    pub name: String,
    pub controller: PathBuf,
    pub log_file: PathBuf,
    pub pid_file: Option<PathBuf>,
    pub workers: usize,
    pub stop_timeout: Duration,
    pub notify_fd: Option<i32>,
    pub quit_fd: Option<i32>,
    pub command: Vec<String>,
}

const USAGE: &str = "usage: aiida-init circusd --name NAME --controller SOCKET --log-file FILE \
                     [--pid-file FILE] [--workers N] [--stop-timeout SECS] [--notify-fd FD] [--quit-fd FD] \
                     -- CMD [ARG...]";

/// Parse the arguments after `circusd`; the error names the option at fault.
pub fn parse_options(args: &[String]) -> Result<Options, String> {
    let (mut name, mut controller, mut log_file, mut pid_file) = (None, None, None, None);
    let (mut workers, mut stop_timeout) = (1, Duration::from_secs(30));
    let (mut notify_fd, mut quit_fd) = (None, None);
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        if arg == "--" {
            let command: Vec<String> = rest.cloned().collect();
            if command.is_empty() {
                return Err(format!("no command after `--`; {USAGE}"));
            }
            let name: String = name.ok_or(format!("--name is missing; {USAGE}"))?;
            return Ok(Options {
                name: name.to_lowercase(),
                controller: controller.ok_or(format!("--controller is missing; {USAGE}"))?,
                log_file: log_file.ok_or(format!("--log-file is missing; {USAGE}"))?,
                pid_file,
                workers,
                stop_timeout,
                notify_fd,
                quit_fd,
                command,
            });
        }
        const OPTIONS: [&str; 8] = [
            "--name",
            "--controller",
            "--log-file",
            "--pid-file",
            "--workers",
            "--stop-timeout",
            "--notify-fd",
            "--quit-fd",
        ];
        if !OPTIONS.contains(&arg.as_str()) {
            return Err(format!(
                "unknown option {arg:?} (the command goes after `--`); {USAGE}"
            ));
        }
        let value = rest.next().ok_or(format!("{arg} needs a value; {USAGE}"))?;
        let number = || {
            value
                .parse::<u32>()
                .map_err(|_| format!("{arg} {value:?}: not a whole number"))
        };
        match arg.as_str() {
            "--name" if !value.is_empty() => name = Some(value.clone()),
            "--controller" => controller = Some(PathBuf::from(value)),
            "--log-file" => log_file = Some(PathBuf::from(value)),
            "--pid-file" => pid_file = Some(PathBuf::from(value)),
            "--workers" => workers = usize::try_from(number()?).map_err(|e| e.to_string())?,
            "--stop-timeout" => stop_timeout = Duration::from_secs(u64::from(number()?)),
            "--notify-fd" => notify_fd = Some(i32::try_from(number()?).map_err(|e| e.to_string())?),
            "--quit-fd" => quit_fd = Some(i32::try_from(number()?).map_err(|e| e.to_string())?),
            _ => return Err("--name must not be empty".into()),
        }
    }
    Err(format!("no `-- CMD`; {USAGE}"))
}

/// `aiida-init circusd ARGS`: run until stopped; 0 when stopped, 100 on bad arguments, 111 when
/// it cannot start (the socket, the log or the PID file).
pub fn main(args: &[String]) -> i32 {
    let options = match parse_options(args) {
        Ok(o) => o,
        Err(e) => {
            eprintln_whole!("aiida-init circusd: {e}");
            return 100;
        }
    };
    match run(&options) {
        Ok(()) => 0,
        Err(e) => {
            eprintln_whole!("aiida-init circusd: {e:#}");
            111
        }
    }
}

fn run(options: &Options) -> Result<()> {
    for (option, fd) in [
        ("--notify-fd", options.notify_fd),
        ("--quit-fd", options.quit_fd),
    ] {
        if let Some(fd) = fd {
            if !super::s6::fd_is_open(fd) {
                bail!("{option} {fd} is not an open file descriptor");
            }
        }
    }
    // SAFETY: the descriptor was handed to us for this one use (--quit-fd); we own it now.
    let quit_handshake = options
        .quit_fd
        .map(|fd| File::from(unsafe { OwnedFd::from_raw_fd(fd) }));
    if let Some(socket) = &quit_handshake {
        // Not inherited by the processes it starts.
        use nix::fcntl::{F_SETFD, FdFlag, fcntl};
        fcntl(socket, F_SETFD(FdFlag::FD_CLOEXEC))?;
    }
    let mut mask = SigSet::empty();
    for signal in [
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGQUIT,
        Signal::SIGCHLD,
        Signal::SIGHUP,
    ] {
        mask.add(signal);
    }
    let mut child_mask = SigSet::empty();
    sigprocmask(SigmaskHow::SIG_BLOCK, Some(&mask), Some(&mut child_mask))?;
    let signals = SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)?;
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&options.log_file)
        .with_context(|| format!("cannot open the log file {}", options.log_file.display()))?;
    let mut router = Router::bind(&options.controller).with_context(|| {
        format!(
            "cannot bind the controller socket {}",
            options.controller.display()
        )
    })?;
    let _pid_file = options
        .pid_file
        .as_deref()
        .map(PidFile::write)
        .transpose()?;
    let mut watcher = Watcher {
        name: options.name.clone(),
        command: options.command.clone(),
        log,
        target: options.workers,
        active: true,
        processes: Vec::new(),
        stop_timeout: options.stop_timeout,
        child_mask,
        respawn_at: None,
    };
    watcher.spawn_missing();
    if let Some(fd) = options.notify_fd {
        notify_ready(fd);
    }
    loop {
        let timeout = crate::pid1::poll_timeout(watcher.respawn_at);
        let polled = router.poll(signals.as_fd(), timeout)?;
        if polled.extra_ready {
            while let Some(info) = signals.read_signal()? {
                if info.ssi_signo == Signal::SIGCHLD as u32 {
                    watcher.reap();
                } else if info.ssi_signo != Signal::SIGHUP as u32 {
                    watcher.stop();
                    return Ok(());
                }
            }
        }
        for request in &polled.requests {
            let (reply, quit) = execute(&mut watcher, &request.body);
            if quit {
                // Answered once the processes are down and the supervisor has heard of it.
                watcher.stop();
                if let Some(handshake) = &quit_handshake {
                    quit_handshake_with(handshake);
                }
            }
            if let Some(reply) = reply {
                router.reply(request, reply.to_string().as_bytes());
            }
            if quit {
                return Ok(());
            }
        }
        if watcher.respawn_at.is_some_and(|at| at <= Instant::now()) {
            watcher.respawn_at = None;
            watcher.spawn_missing();
        }
    }
}

/// `quit` and a newline written to the `--quit-fd` socket, then a line (or its end) read back, for
/// at most QUIT_HANDSHAKE_TIMEOUT. A supervisor that is gone or never answers only delays the
/// answer to `quit`.
fn quit_handshake_with(mut socket: &File) {
    use nix::poll::{PollFd, PollFlags, poll};
    use std::io::Read as _;

    if socket.write_all(b"quit\n").is_err() {
        return;
    }
    let deadline = Instant::now() + QUIT_HANDSHAKE_TIMEOUT;
    let mut byte = [0u8; 1];
    loop {
        if Instant::now() >= deadline {
            return;
        }
        let mut fds = [PollFd::new(socket.as_fd(), PollFlags::POLLIN)];
        let timeout = crate::pid1::poll_timeout(Some(deadline));
        match poll(&mut fds, timeout) {
            Ok(0) => continue,
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return,
        }
        match socket.read(&mut byte) {
            Ok(0) => return,
            Ok(_) if byte[0] == b'\n' => return,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}

/// s6's readiness notification: a newline on the descriptor, which is then closed.
fn notify_ready(fd: i32) {
    // SAFETY: the descriptor was handed to us for this one use (--notify-fd); we own it now.
    let mut file = File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    let _ = file.write_all(b"\n");
}

/// The PID file: written (atomically) at start, removed at the end if it still names us.
struct PidFile(PathBuf);

impl PidFile {
    fn write(path: &Path) -> Result<PidFile> {
        super::runtime::write_atomic(path, std::process::id().to_string().as_bytes())
            .with_context(|| format!("cannot write the PID file {}", path.display()))?;
        Ok(PidFile(path.to_path_buf()))
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        let ours = std::fs::read_to_string(&self.0)
            .is_ok_and(|s| s.trim() == std::process::id().to_string());
        if ours {
            let _ = std::fs::remove_file(&self.0);
        }
    }
}

struct Process {
    pid: Pid,
    started: Instant,
}

/// The one watcher: its processes, how many it should have, whether it is started.
struct Watcher {
    name: String,
    command: Vec<String>,
    log: File,
    target: usize,
    active: bool,
    processes: Vec<Process>,
    stop_timeout: Duration,
    /// The signal mask to give the processes (ours blocks what the signalfd reads).
    child_mask: SigSet,
    respawn_at: Option<Instant>,
}

impl Watcher {
    fn spawn_missing(&mut self) {
        while self.active && self.processes.len() < self.target {
            match self.spawn() {
                Ok(process) => self.processes.push(process),
                Err(e) => {
                    eprintln_whole!("aiida-init circusd: cannot start {}: {e}", self.command[0]);
                    self.respawn_at = Some(Instant::now() + RESPAWN_AFTER);
                    return;
                }
            }
        }
    }

    fn spawn(&self) -> std::io::Result<Process> {
        let mut command = Command::new(&self.command[0]);
        command
            .args(&self.command[1..])
            .stdin(Stdio::null())
            .stdout(Stdio::from(self.log.try_clone()?))
            .stderr(Stdio::from(self.log.try_clone()?));
        let mask = self.child_mask;
        // SAFETY: between fork and exec, only sigprocmask (async-signal-safe) runs.
        unsafe {
            command.pre_exec(move || {
                sigprocmask(SigmaskHow::SIG_SETMASK, Some(&mask), None)
                    .map_err(std::io::Error::from)
            });
        }
        let child = command.spawn()?;
        let pid =
            i32::try_from(child.id()).map_err(|_| std::io::Error::other("pid out of range"))?;
        Ok(Process {
            pid: Pid::from_raw(pid),
            started: Instant::now(),
        })
    }

    /// Collect every process that ended; start again those the watcher still wants.
    fn reap(&mut self) {
        loop {
            match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, _) | WaitStatus::Signaled(pid, _, _)) => {
                    let Some(i) = self.processes.iter().position(|p| p.pid == pid) else {
                        continue;
                    };
                    let ended = self.processes.swap_remove(i);
                    if ended.started.elapsed() >= RESPAWN_AFTER {
                        self.spawn_missing();
                    } else if self.respawn_at.is_none() {
                        self.respawn_at = Some(Instant::now() + RESPAWN_AFTER);
                    }
                }
                Ok(WaitStatus::StillAlive) | Err(_) => return,
                Ok(_) => {}
            }
        }
    }

    /// Stop `victims`: SIGTERM, then SIGKILL for those still there after the stop timeout.
    fn stop_processes(&self, mut victims: Vec<Process>) {
        for p in &victims {
            let _ = kill(p.pid, Signal::SIGTERM);
        }
        let deadline = Instant::now() + self.stop_timeout;
        let mut killed = false;
        while !victims.is_empty() {
            victims.retain(|p| {
                matches!(
                    waitpid(p.pid, Some(WaitPidFlag::WNOHANG)),
                    Ok(WaitStatus::StillAlive)
                )
            });
            if victims.is_empty() {
                break;
            }
            if !killed && Instant::now() >= deadline {
                for p in &victims {
                    let _ = kill(p.pid, Signal::SIGKILL);
                }
                killed = true;
            }
            std::thread::sleep(STOP_CHECK_INTERVAL);
        }
    }

    fn stop(&mut self) {
        self.active = false;
        self.respawn_at = None;
        let all = std::mem::take(&mut self.processes);
        self.stop_processes(all);
    }

    fn start(&mut self) {
        self.active = true;
        self.spawn_missing();
    }

    fn incr(&mut self, nb: usize) -> usize {
        self.target += nb;
        self.spawn_missing();
        self.target
    }

    fn decr(&mut self, nb: usize) -> usize {
        self.target = self.target.saturating_sub(nb);
        // The newest go first, as with circus.
        self.processes.sort_by_key(|p| p.started);
        let keep = self.target.min(self.processes.len());
        let extra = self.processes.split_off(keep);
        self.stop_processes(extra);
        self.target
    }

    fn status(&self) -> &'static str {
        if self.active { "active" } else { "stopped" }
    }

    /// Each process's figures by PID (null for one that could not be read).
    fn info(&self, host: Option<&Host>) -> Map<String, Value> {
        self.processes
            .iter()
            .map(|p| {
                let info = host.and_then(|h| h.process_info(p.pid.as_raw()));
                (p.pid.to_string(), info.unwrap_or(Value::Null))
            })
            .collect()
    }
}

/// Answer one request: the reply (none for a `cast`), and whether it was `quit`.
fn execute(watcher: &mut Watcher, body: &[u8]) -> (Option<Value>, bool) {
    let Ok(Value::Object(message)) = serde_json::from_slice::<Value>(body) else {
        return (
            Some(error(&Value::Null, "json invalid", INVALID_JSON)),
            false,
        );
    };
    let id = message.get("id").cloned().unwrap_or(Value::Null);
    let command = message
        .get("command")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_lowercase();
    let empty = Map::new();
    let props = message
        .get("properties")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let cast = message.get("msg_type").and_then(Value::as_str) == Some("cast");
    let reply = match answer(watcher, &command, props) {
        Ok(fields) => {
            let mut reply = Map::new();
            reply.insert("status".into(), "ok".into());
            reply.insert("time".into(), now().into());
            reply.extend(fields);
            reply.insert("id".into(), id);
            Value::Object(reply)
        }
        Err((reason, errno)) => error(&id, &reason, errno),
    };
    (if cast { None } else { Some(reply) }, command == "quit")
}

fn error(id: &Value, reason: &str, errno: u8) -> Value {
    json!({"status": "error", "reason": reason, "tb": null, "time": now(), "errno": errno, "id": id})
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

type Answer = Result<Map<String, Value>, (String, u8)>;

fn fields(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

/// The fields of a command's reply, or circus's error for it.
fn answer(watcher: &mut Watcher, command: &str, props: &Map<String, Value>) -> Answer {
    let named = match props.get("name") {
        None => false,
        Some(name)
            if name
                .as_str()
                .is_some_and(|n| n.to_lowercase() == watcher.name) =>
        {
            true
        }
        Some(name) => {
            let shown = name
                .as_str()
                .map_or_else(|| name.to_string(), str::to_string);
            return Err((format!("program {shown} not found"), MESSAGE_ERROR));
        }
    };
    let nb = props.get("nb").and_then(Value::as_u64).unwrap_or(1);
    let nb = usize::try_from(nb).unwrap_or(usize::MAX);
    let waited = if props.get("waiting").and_then(Value::as_bool) == Some(true) {
        json!({"info": null})
    } else {
        json!({})
    };
    let name = watcher.name.clone();
    Ok(fields(match command {
        "status" if named => json!({"status": watcher.status()}),
        "status" => json!({"statuses": {name: watcher.status()}}),
        "numprocesses" if named => {
            json!({"numprocesses": watcher.processes.len(), "watcher_name": name})
        }
        "numprocesses" => json!({"numprocesses": watcher.processes.len()}),
        "stats" if named => json!({"name": name, "info": watcher.info(Host::read().as_ref())}),
        "stats" => json!({"infos": {name: watcher.info(Host::read().as_ref())}}),
        "dstats" => json!({"info": daemon_info(watcher)}),
        "incr" => json!({"numprocesses": watcher.incr(nb)}),
        "decr" => json!({"numprocesses": watcher.decr(nb)}),
        "start" => {
            watcher.start();
            waited
        }
        "stop" => {
            watcher.stop();
            waited
        }
        "restart" => {
            watcher.stop();
            watcher.start();
            waited
        }
        "list" if named => {
            json!({"pids": watcher.processes.iter().map(|p| p.pid.as_raw()).collect::<Vec<_>>()})
        }
        "list" => json!({"watchers": [name]}),
        "quit" => json!({}),
        _ => return Err((format!("unknown command: {command:?}"), UNKNOWN_COMMAND)),
    }))
}

/// `dstats`: this process's information, with its processes as children.
fn daemon_info(watcher: &Watcher) -> Value {
    let host = Host::read();
    let own = host
        .as_ref()
        .and_then(|h| h.process_info(nix::unistd::getpid().as_raw()));
    let mut info = own.unwrap_or_else(|| json!({}));
    let children: Vec<Value> = watcher.info(host.as_ref()).into_values().collect();
    info["children"] = Value::Array(children);
    info
}

/// What every process's figures are computed with, read once per reply.
struct Host {
    /// When the machine booted (seconds since the epoch).
    boot_time: f64,
    memory_total: f64,
    clock_ticks: f64,
    page_size: u64,
}

impl Host {
    fn read() -> Option<Host> {
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        let boot_time = stat.lines().find_map(|l| l.strip_prefix("btime "))?;
        let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
        let total = meminfo.lines().find_map(|l| l.strip_prefix("MemTotal:"))?;
        let kib: u64 = total.split_whitespace().next()?.parse().ok()?;
        let sysconf = |var| {
            nix::unistd::sysconf(var)
                .ok()
                .flatten()
                .and_then(|v| u64::try_from(v).ok())
        };
        Some(Host {
            boot_time: u64_to_f64(boot_time.trim().parse().ok()?),
            memory_total: u64_to_f64(kib * 1024),
            clock_ticks: u64_to_f64(sysconf(nix::unistd::SysconfVar::CLK_TCK).unwrap_or(100)),
            page_size: sysconf(nix::unistd::SysconfVar::PAGE_SIZE).unwrap_or(4096),
        })
    }

    /// What circus reports of a process (psutil's fields, from /proc): `None` if it is gone.
    fn process_info(&self, pid: i32) -> Option<Value> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // Fields after the command name, which may hold spaces and parentheses: field 3 on.
        let fields: Vec<&str> = stat
            .get(stat.rfind(')')? + 2..)?
            .split_whitespace()
            .collect();
        let field = |n: usize| fields.get(n - 3).and_then(|v| v.parse::<u64>().ok());
        let cpu_seconds = u64_to_f64(field(14)? + field(15)?) / self.clock_ticks;
        let nice: i64 = fields.get(19 - 3)?.parse().ok()?;
        let create_time = self.boot_time + u64_to_f64(field(22)?) / self.clock_ticks;
        let age = (now() - create_time).max(0.0);
        let rss = field(24)? * self.page_size;
        let vms = field(23)?;
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        let cmdline: Vec<String> = cmdline
            .split(|&b| b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        let cpu = if age > 0.0 {
            100.0 * cpu_seconds / age
        } else {
            0.0
        };
        Some(json!({
            "pid": pid,
            "username": owner(pid),
            "nice": nice,
            "mem_info1": human_bytes(rss),
            "mem_info2": human_bytes(vms),
            "cpu": round1(cpu),
            "mem": round1(100.0 * u64_to_f64(rss) / self.memory_total),
            "ctime": format!("{}:{:05.2}", (cpu_seconds / 60.0).floor(), cpu_seconds % 60.0),
            "create_time": create_time,
            "age": age,
            "cmdline": cmdline.join(" "),
            "children": [],
        }))
    }
}

/// A u64 as f64 (sizes and tick counts: far below 2^53, where f64 stays exact).
#[allow(clippy::cast_precision_loss)]
fn u64_to_f64(value: u64) -> f64 {
    value as f64
}

fn round1(value: f64) -> f64 {
    (value * 10.0).round() / 10.0
}

fn owner(pid: i32) -> Value {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let uid = status
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|u| u.parse::<u32>().ok());
    uid.and_then(|uid| nix::unistd::User::from_uid(uid.into()).ok().flatten())
        .map_or(Value::Null, |user| Value::String(user.name))
}

/// psutil's bytes2human, as circus shows memory: 1024-based, one decimal, a suffix letter.
fn human_bytes(bytes: u64) -> String {
    const SUFFIXES: [&str; 8] = ["K", "M", "G", "T", "P", "E", "Z", "Y"];
    let (mut value, mut suffix) = (u64_to_f64(bytes), None);
    for next in SUFFIXES {
        if value < 1024.0 {
            break;
        }
        value /= 1024.0;
        suffix = Some(next);
    }
    suffix.map_or_else(|| format!("{bytes}B"), |s| format!("{value:.1}{s}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(words: &str) -> Vec<String> {
        words.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn options_are_parsed_and_each_mistake_is_named() {
        let parsed = parse_options(&args(
            "--name AiiDA-default --controller /s/c.sock --log-file /l --pid-file /p --workers 2 \
             --stop-timeout 4 --notify-fd 3 --quit-fd 5 -- worker -p default",
        ))
        .unwrap();
        assert_eq!(parsed.quit_fd, Some(5));
        assert_eq!(
            parsed.name, "aiida-default",
            "names are lower case, as circus's"
        );
        assert_eq!(
            (parsed.workers, parsed.stop_timeout, parsed.notify_fd),
            (2, Duration::from_secs(4), Some(3))
        );
        assert_eq!(parsed.command, args("worker -p default"));
        for (bad, named) in [
            ("--controller /c --log-file /l -- w", "--name is missing"),
            ("--name n --log-file /l -- w", "--controller is missing"),
            ("--name n --controller /c --log-file /l --", "no command"),
            (
                "--name n --controller /c --log-file /l --workers many -- w",
                "--workers \"many\"",
            ),
            (
                "--name n --controller /c --log-file /l --colour red -- w",
                "unknown option \"--colour\"",
            ),
            (
                "--name n --controller /c --log-file",
                "--log-file needs a value",
            ),
            (
                "--name n --controller /c --log-file /l w",
                "unknown option \"w\" (the command goes after `--`)",
            ),
            ("--name n --controller /c --log-file /l", "no `-- CMD`"),
            (
                "--name n --controller /c --log-file /l --quit-fd -1 -- w",
                "--quit-fd \"-1\": not a whole number",
            ),
        ] {
            let error = parse_options(&args(bad)).unwrap_err();
            assert!(error.contains(named), "{bad}: {error}");
        }
    }

    /// A watcher of `sleep` processes, logging to a file in `dir`.
    fn watcher(dir: &std::path::Path, target: usize) -> Watcher {
        let mut current = SigSet::empty();
        sigprocmask(SigmaskHow::SIG_BLOCK, None, Some(&mut current)).unwrap();
        let mut w = Watcher {
            name: "aiida-test".into(),
            command: args("sleep 60"),
            log: OpenOptions::new()
                .create(true)
                .append(true)
                .open(dir.join("log"))
                .unwrap(),
            target,
            active: true,
            processes: Vec::new(),
            stop_timeout: Duration::from_secs(5),
            child_mask: current,
            respawn_at: None,
        };
        w.spawn_missing();
        w
    }

    fn call(w: &mut Watcher, request: &str) -> Value {
        execute(w, request.as_bytes()).0.expect("a reply")
    }

    fn alive(pid: i32) -> bool {
        // A stopped process is reaped by the watcher, so its PID no longer exists.
        std::path::Path::new(&format!("/proc/{pid}")).exists()
    }

    #[test]
    fn aiida_cores_calls_get_circuss_answers() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = watcher(dir.path(), 1);
        let status = call(
            &mut w,
            r#"{"id": "a1", "command": "status", "properties": {"name": "aiida-test"}}"#,
        );
        assert_eq!(
            (status["status"].as_str(), status["id"].as_str()),
            (Some("active"), Some("a1"))
        );
        assert!(status["time"].as_f64().unwrap() > 1.0e9);

        let incr = call(
            &mut w,
            r#"{"command": "incr", "properties": {"name": "aiida-test", "nb": 2}}"#,
        );
        assert_eq!(incr["numprocesses"], 3);
        let pids: Vec<i32> = w.processes.iter().map(|p| p.pid.as_raw()).collect();
        assert_eq!(pids.len(), 3);
        let stats = call(
            &mut w,
            r#"{"command": "stats", "properties": {"name": "aiida-test"}}"#,
        );
        for pid in &pids {
            let info = &stats["info"][pid.to_string()];
            assert_eq!(info["pid"], *pid);
            assert_eq!(info["cmdline"], "sleep 60");
            assert!(info["mem"].is_f64() && info["cpu"].is_f64(), "{info}");
            assert!(
                info["create_time"].as_f64().unwrap() <= now() + 1.0,
                "{info}"
            );
        }
        let dstats = call(&mut w, r#"{"command": "dstats", "properties": {}}"#);
        assert_eq!(dstats["info"]["pid"], nix::unistd::getpid().as_raw());
        assert_eq!(dstats["info"]["children"].as_array().unwrap().len(), 3);

        let decr = call(
            &mut w,
            r#"{"command": "decr", "properties": {"name": "aiida-test", "nb": 2, "waiting": true}}"#,
        );
        assert_eq!(decr["numprocesses"], 1);
        assert_eq!(w.processes[0].pid.as_raw(), pids[0], "the oldest stays");
        assert!(!alive(pids[1]) && !alive(pids[2]));
        let count = call(
            &mut w,
            r#"{"command": "numprocesses", "properties": {"name": "aiida-test"}}"#,
        );
        assert_eq!(count["numprocesses"], 1);
        let listed = call(
            &mut w,
            r#"{"command": "list", "properties": {"name": "aiida-test"}}"#,
        );
        assert_eq!(listed["pids"], json!([pids[0]]));

        let stopped = call(
            &mut w,
            r#"{"command": "stop", "properties": {"name": "aiida-test", "waiting": true}}"#,
        );
        assert_eq!(
            (stopped["status"].as_str(), &stopped["info"]),
            (Some("ok"), &Value::Null)
        );
        assert!(!alive(pids[0]) && w.processes.is_empty());
        let status = call(&mut w, r#"{"command": "status", "properties": {}}"#);
        assert_eq!(status["statuses"]["aiida-test"], "stopped");
        call(
            &mut w,
            r#"{"command": "start", "properties": {"name": "aiida-test"}}"#,
        );
        assert_eq!(w.processes.len(), 1);
        let (reply, quit) = execute(
            &mut w,
            br#"{"command": "quit", "properties": {"waiting": true}}"#,
        );
        assert!(quit && reply.unwrap()["status"] == "ok");
        w.stop();
    }

    #[test]
    fn bad_requests_get_circuss_errors_and_casts_no_reply() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = watcher(dir.path(), 0);
        let invalid = call(&mut w, "{not json");
        assert_eq!(
            (invalid["status"].as_str(), invalid["errno"].as_u64()),
            (Some("error"), Some(1))
        );
        let unknown = call(&mut w, r#"{"id": "x", "command": "reloadconfig"}"#);
        assert_eq!(unknown["errno"], 2);
        assert_eq!(unknown["reason"], "unknown command: \"reloadconfig\"");
        let other = call(
            &mut w,
            r#"{"command": "status", "properties": {"name": "aiida-other"}}"#,
        );
        assert_eq!(
            (other["errno"].as_u64(), other["reason"].as_str()),
            (Some(3), Some("program aiida-other not found"))
        );
        let (reply, quit) = execute(
            &mut w,
            br#"{"command": "incr", "msg_type": "cast", "properties": {}}"#,
        );
        assert!(reply.is_none() && !quit);
        assert_eq!(w.target, 1, "a cast is still carried out");
        w.stop();
    }

    #[test]
    fn the_quit_handshake_waits_for_the_supervisors_line_or_its_end() {
        use std::io::{Read as _, Write as _};
        use std::os::unix::net::UnixStream;

        let (ours, theirs) = UnixStream::pair().unwrap();
        let supervisor = std::thread::spawn(move || {
            let mut theirs = theirs;
            let mut heard = [0u8; 5];
            theirs.read_exact(&mut heard).unwrap();
            std::thread::sleep(Duration::from_millis(200));
            theirs.write_all(b"\n").unwrap();
            heard
        });
        let started = Instant::now();
        quit_handshake_with(&File::from(OwnedFd::from(ours)));
        assert!(
            started.elapsed() >= Duration::from_millis(200),
            "did not wait for the answer"
        );
        assert_eq!(&supervisor.join().unwrap(), b"quit\n");

        // A supervisor that closes its end without a word: no wait for the timeout.
        let (ours, theirs) = UnixStream::pair().unwrap();
        drop(theirs);
        let started = Instant::now();
        quit_handshake_with(&File::from(OwnedFd::from(ours)));
        assert!(started.elapsed() < QUIT_HANDSHAKE_TIMEOUT);
    }

    #[test]
    fn a_process_that_ends_is_started_again() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = watcher(dir.path(), 1);
        let first = w.processes[0].pid;
        kill(first, Signal::SIGKILL).unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while w.processes.first().is_some_and(|p| p.pid == first) || w.respawn_at.is_some() {
            assert!(Instant::now() < deadline, "not started again");
            std::thread::sleep(Duration::from_millis(20));
            w.reap();
            if w.respawn_at.is_some_and(|at| at <= Instant::now()) {
                w.respawn_at = None;
                w.spawn_missing();
            }
        }
        assert_eq!(w.processes.len(), 1);
        assert_ne!(w.processes[0].pid, first);
        w.stop();
    }

    #[test]
    fn a_notify_fd_that_is_not_open_is_refused_before_anything_is_made() {
        let dir = tempfile::tempdir().unwrap();
        let controller = dir.path().join("c.sock");
        let options = parse_options(&args(&format!(
            "--name n --controller {} --log-file {} --notify-fd 987 -- true",
            controller.display(),
            dir.path().join("log").display()
        )))
        .unwrap();
        let error = run(&options).unwrap_err().to_string();
        assert_eq!(error, "--notify-fd 987 is not an open file descriptor");
        assert!(!controller.exists() && !dir.path().join("log").exists());
    }

    #[test]
    fn memory_is_shown_as_psutil_shows_it() {
        assert_eq!(human_bytes(512), "512B");
        assert_eq!(human_bytes(1536), "1.5K");
        assert_eq!(human_bytes(35 * 1024 * 1024), "35.0M");
    }
}
