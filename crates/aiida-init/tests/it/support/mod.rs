//! Support for the aiida-init tests: service trees made of small scripts in a temporary
//! directory, and the real `aiida-init` binary started as PID 1 of a new PID namespace, under
//! tini, as a plain child, or as an unprivileged user, with a watchdog so a hung init fails the
//! test instead of hanging it.
#![allow(dead_code)]

pub mod prerequisites;

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_aiida-init"))
}

/// The binary at a path every user can execute (the checkout may be under a private home):
/// a copy in /tmp, keyed by size and modification time so that runs reuse it.
pub fn bin_for_any_user() -> PathBuf {
    static COPY: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    COPY.get_or_init(|| {
        let src = bin();
        let meta = std::fs::metadata(&src).unwrap();
        let mtime = meta
            .modified()
            .unwrap()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let dir = PathBuf::from("/tmp/aiida-init-test-bin").join(format!("{}-{mtime}", meta.len()));
        let dst = dir.join("aiida-init");
        if !dst.exists() {
            // Copies of earlier builds are not needed any more.
            if let Ok(old) = std::fs::read_dir(dir.parent().unwrap()) {
                for e in old.flatten() {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
            std::fs::create_dir_all(&dir).unwrap();
            for d in [dir.parent().unwrap(), dir.as_path()] {
                std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
            }
            let tmp = dir.join(format!("aiida-init.{}", std::process::id()));
            std::fs::copy(&src, &tmp).unwrap();
            std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755)).unwrap();
            std::fs::rename(&tmp, &dst).unwrap();
        }
        dst
    })
    .clone()
}

/// Start `c` with the signal dispositions a test expects, whoever started the suite (`nohup`
/// and a background job hand us HUP, INT and QUIT ignored): no signal blocked, every classic
/// signal at its default except those in `ignored`, which are ignored. Applied between fork and
/// exec, so the test runner's own dispositions do not matter.
pub fn set_dispositions(c: &mut Command, ignored: &[i32]) {
    use std::os::unix::process::CommandExt;
    let ignored = ignored.to_vec();
    // SAFETY: signal(2), sigemptyset(3) and sigprocmask(2) are async-signal-safe; `ignored` is
    // only read.
    unsafe {
        c.pre_exec(move || {
            for sig in 1..32 {
                if sig == libc::SIGKILL || sig == libc::SIGSTOP {
                    continue;
                }
                let disposition = if ignored.contains(&sig) {
                    libc::SIG_IGN
                } else {
                    libc::SIG_DFL
                };
                libc::signal(sig, disposition);
            }
            let mut none: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&raw mut none);
            libc::sigprocmask(libc::SIG_SETMASK, &raw const none, std::ptr::null_mut());
            Ok(())
        });
    }
}

/// A child's pid as `kill` takes it.
pub fn pid(child: &std::process::Child) -> i32 {
    i32::try_from(child.id()).expect("a pid fits in pid_t")
}

/// Fail the test (never skip) when a host tool is missing.
pub fn require_tool(tool: &str) {
    let found = std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()));
    assert!(
        found,
        "missing prerequisite: `{tool}`. Run `bash scripts/bootstrap.sh` (as root) first."
    );
}

/// How aiida-init is started.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Mode {
    /// PID 1 of a new PID namespace (`unshare --pid --fork --mount-proc`).
    Pid1,
    /// PID 2 under tini as PID 1 (as with `docker run --init`).
    UnderTini,
    /// A plain child process of the test (a subreaper, not PID 1).
    Child,
    /// PID 1 as user `nobody`, with /run not writable (runtime dir: $XDG_RUNTIME_DIR).
    NonRootPid1,
}

pub const ALL_MODES: [Mode; 4] = [Mode::Pid1, Mode::UnderTini, Mode::Child, Mode::NonRootPid1];

/// A service tree under construction, in a temporary directory.
pub struct Tree {
    pub dir: tempfile::TempDir,
}

pub fn write(path: &Path, content: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, content).unwrap();
}

pub fn write_exec(path: &Path, content: &str) {
    write(path, content);
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// `command.output()` for a program this test has just written (`write_exec`): while another
/// test thread forks, its child holds a copy of the file's write descriptor until it execs, and
/// running the file then fails with ETXTBSY ("Text file busy"). Tried again for up to 5 s.
pub fn output_of_new_program(command: &mut std::process::Command) -> std::process::Output {
    let start = std::time::Instant::now();
    loop {
        match command.output() {
            Err(e)
                if e.kind() == std::io::ErrorKind::ExecutableFileBusy
                    && start.elapsed() < std::time::Duration::from_secs(5) =>
            {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            result => return result.unwrap(),
        }
    }
}

impl Tree {
    pub fn new() -> Tree {
        let dir = tempfile::Builder::new()
            .prefix("ainit-test")
            .tempdir()
            .unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        std::fs::create_dir_all(dir.path().join("root/etc/s6-overlay/s6-rc.d")).unwrap();
        std::fs::create_dir_all(dir.path().join("rt")).unwrap();
        std::fs::create_dir_all(dir.path().join("out")).unwrap();
        std::fs::set_permissions(
            dir.path().join("rt"),
            std::fs::Permissions::from_mode(0o777),
        )
        .unwrap();
        std::fs::set_permissions(
            dir.path().join("out"),
            std::fs::Permissions::from_mode(0o777),
        )
        .unwrap();
        Tree { dir }
    }
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
    pub fn rc(&self) -> PathBuf {
        self.path().join("root/etc/s6-overlay/s6-rc.d")
    }
    /// A directory every mode (including `nobody`) can write: for markers and logs.
    pub fn out(&self) -> PathBuf {
        self.path().join("out")
    }
    pub fn svc(&self, name: &str) -> PathBuf {
        self.rc().join(name)
    }
    pub fn file(&self, svc: &str, file: &str, content: &str) -> &Tree {
        write(&self.svc(svc).join(file), content);
        self
    }
    pub fn exec(&self, svc: &str, file: &str, content: &str) -> &Tree {
        write_exec(&self.svc(svc).join(file), content);
        self
    }
    fn deps(&self, name: &str, deps: &[&str]) {
        for d in deps {
            write(&self.svc(name).join("dependencies.d").join(d), "");
        }
    }
    pub fn oneshot(&self, name: &str, up: &str, down: Option<&str>, deps: &[&str]) -> &Tree {
        self.file(name, "type", "oneshot\n").file(name, "up", up);
        if let Some(d) = down {
            self.file(name, "down", d);
        }
        self.deps(name, deps);
        self.user(name)
    }
    /// A oneshot whose `up` (and `down`) run the given /bin/sh script bodies.
    pub fn oneshot_sh(
        &self,
        name: &str,
        up_sh: &str,
        down_sh: Option<&str>,
        deps: &[&str],
    ) -> &Tree {
        let dir = self.svc(name);
        write_exec(&dir.join("up.sh"), &format!("#!/bin/sh\n{up_sh}\n"));
        let down = down_sh.map(|d| {
            write_exec(&dir.join("down.sh"), &format!("#!/bin/sh\n{d}\n"));
            format!("{}\n", dir.join("down.sh").display())
        });
        self.oneshot(
            name,
            &format!("{}\n", dir.join("up.sh").display()),
            down.as_deref(),
            deps,
        )
    }
    /// A longrun whose `run` is the given /bin/sh script body.
    pub fn longrun(&self, name: &str, run_sh: &str, deps: &[&str]) -> &Tree {
        self.file(name, "type", "longrun\n")
            .exec(name, "run", &format!("#!/bin/sh\n{run_sh}\n"));
        self.deps(name, deps);
        self.user(name)
    }
    /// Put `name` in the user bundle (new location).
    pub fn user(&self, name: &str) -> &Tree {
        write(
            &self
                .path()
                .join("root/etc/s6-overlay/user-bundles.d/user/contents.d")
                .join(name),
            "",
        );
        self
    }
    pub fn out_file(&self, name: &str) -> PathBuf {
        self.out().join(name)
    }
    pub fn read_out(&self, name: &str) -> String {
        std::fs::read_to_string(self.out_file(name)).unwrap_or_default()
    }
    /// A shell snippet that appends "<ms since epoch> <what>" to out/events.
    pub fn log_event(&self, what: &str) -> String {
        format!(
            "echo \"$(date +%s%3N) {what}\" >> {}",
            self.out_file("events").display()
        )
    }
    /// The events logged with [`Tree::log_event`], in order: (ms, what).
    pub fn events(&self) -> Vec<(u64, String)> {
        self.read_out("events")
            .lines()
            .filter_map(|l| {
                l.split_once(' ')
                    .map(|(t, w)| (t.parse().unwrap_or(0), w.to_string()))
            })
            .collect()
    }
    /// What the logged events say, in order, without their times.
    pub fn event_names(&self) -> Vec<String> {
        self.events().into_iter().map(|(_, w)| w).collect()
    }
    /// Assert that event `later` was logged no earlier than event `earlier`.
    pub fn assert_not_before(&self, later: &str, earlier: &str) {
        assert!(
            self.event_time(later) >= self.event_time(earlier),
            "`{later}` came before `{earlier}`: {:?}",
            self.events()
        );
    }
    pub fn event_time(&self, what: &str) -> u64 {
        self.events()
            .iter()
            .find(|(_, w)| w == what)
            .unwrap_or_else(|| panic!("no event `{what}` in {:?}", self.events()))
            .0
    }

    /// The command line that starts aiida-init in `mode` with `cmd` as the container command.
    pub fn command(&self, mode: Mode, cmd: &[&str]) -> Command {
        let mut c = match mode {
            Mode::Pid1 => {
                let mut c = Command::new("unshare");
                c.args(["--pid", "--fork", "--mount-proc"]).arg(bin());
                c
            }
            Mode::UnderTini => {
                let mut c = Command::new("unshare");
                c.args(["--pid", "--fork", "--mount-proc", "tini", "--"])
                    .arg(bin());
                c
            }
            Mode::Child => Command::new(bin()),
            Mode::NonRootPid1 => {
                let mut c = Command::new("unshare");
                c.args([
                    "--pid",
                    "--fork",
                    "--mount-proc",
                    "setpriv",
                    "--reuid=65534",
                    "--regid=65534",
                    "--clear-groups",
                    "--",
                ])
                .arg(bin_for_any_user());
                c
            }
        };
        c.args(cmd);
        set_dispositions(&mut c, &[]);
        c.env("AIIDA_INIT_ROOT", self.path().join("root"));
        c.env("S6_KILL_GRACETIME", "2000");
        c.env_remove("AIIDA_INIT_RUNTIME_DIR");
        if mode == Mode::NonRootPid1 {
            // /run is not writable for nobody: the runtime directory must fall back.
            let rt = self.path().join("rt-nobody");
            std::fs::create_dir_all(&rt).unwrap();
            std::os::unix::fs::chown(&rt, Some(65534), Some(65534)).unwrap();
            c.env("XDG_RUNTIME_DIR", rt);
        } else {
            c.env("AIIDA_INIT_RUNTIME_DIR", self.path().join("rt"));
        }
        c.current_dir(self.path());
        c
    }

    /// Start aiida-init in `mode`.
    pub fn spawn(&self, mode: Mode, cmd: &[&str], env: &[(&str, &str)]) -> Running {
        let mut c = self.command(mode, cmd);
        for (k, v) in env {
            c.env(k, v);
        }
        self.spawn_command(mode, c)
    }

    /// Start `c`, made by [`Tree::command`] for `mode` (and then adjusted by the test).
    pub fn spawn_command(&self, mode: Mode, mut c: Command) -> Running {
        c.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let child = c.spawn().expect("start aiida-init");
        let runtime = self.path().join(if mode == Mode::NonRootPid1 {
            "rt-nobody"
        } else {
            "rt"
        });
        Running::new(child, mode, runtime)
    }

    /// Run aiida-init in `mode` to the end (with a watchdog of `limit`).
    pub fn run(&self, mode: Mode, cmd: &[&str], env: &[(&str, &str)], limit: Duration) -> Finished {
        self.spawn(mode, cmd, env).finish(limit)
    }
}

/// A started aiida-init.
pub struct Running {
    child: Option<Child>,
    pub mode: Mode,
    pub runtime: PathBuf,
    started: Instant,
}

#[derive(Debug)]
pub struct Finished {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl Running {
    fn new(child: Child, mode: Mode, runtime: PathBuf) -> Running {
        Running {
            child: Some(child),
            mode,
            runtime,
            started: Instant::now(),
        }
    }

    /// The pid of the container's "PID 1" as seen from the host (what `docker kill` signals):
    /// the child of `unshare`, or aiida-init itself when it is a plain child.
    pub fn top_pid(&self) -> i32 {
        let me = pid(self.child.as_ref().unwrap());
        if self.mode == Mode::Child {
            return me;
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(p) = children_of(me).into_iter().next() {
                return p;
            }
            assert!(Instant::now() < deadline, "unshare did not start its child");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Send `sig` to the container's PID 1.
    pub fn signal(&self, sig: i32) {
        let pid = self.top_pid();
        // SAFETY: plain kill(2).
        unsafe { libc::kill(pid, sig) };
    }

    /// Wait (with `aiida-init wait`) until the named services are ready.
    pub fn wait_ready(&self, services: &[&str]) {
        let mut args = vec!["wait", "--timeout", "15"];
        args.extend_from_slice(services);
        let out = aiida_init(&args, &[("AIIDA_INIT_RUNTIME_DIR", self.runtime.as_path())]);
        assert!(
            out.status.success(),
            "aiida-init wait {services:?}: {out:?}"
        );
    }

    /// Wait until `path` exists (a marker written by the command or a service).
    pub fn wait_for_file(&self, path: &Path, limit: Duration) {
        let deadline = Instant::now() + limit;
        while !path.exists() {
            assert!(
                Instant::now() < deadline,
                "{} did not appear within {limit:?}",
                path.display()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Send SIGTERM (what `docker stop` sends) and wait for the end, as [`Running::finish`];
    /// also returns how long the shutdown took.
    pub fn shut_down(self, limit: Duration) -> (Finished, Duration) {
        let t = Instant::now();
        self.signal(libc::SIGTERM);
        let out = self.finish(limit);
        (out, t.elapsed())
    }

    /// Wait for the process to end (killing everything after `limit`).
    pub fn finish(mut self, limit: Duration) -> Finished {
        let mut child = self.child.take().unwrap();
        let mut out = child.stdout.take().unwrap();
        let mut err = child.stderr.take().unwrap();
        let t_out = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = out.read_to_string(&mut s);
            s
        });
        let t_err = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = err.read_to_string(&mut s);
            s
        });
        let deadline = Instant::now() + limit;
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break Some(s);
            }
            if Instant::now() >= deadline {
                kill_tree(pid(&child));
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        let elapsed = self.started.elapsed();
        // The output pipes may be held by leftovers in Child mode: do not wait forever.
        let stdout = join_with_limit(t_out);
        let stderr = join_with_limit(t_err);
        let Some(status) = status else {
            panic!(
                "aiida-init did not finish within {limit:?}\nstdout:\n{stdout}\nstderr:\n{stderr}"
            );
        };
        use std::os::unix::process::ExitStatusExt;
        let code = status
            .code()
            .unwrap_or_else(|| 128 + status.signal().unwrap_or(0));
        Finished {
            code,
            stdout,
            stderr,
            elapsed,
        }
    }
}

fn join_with_limit(t: std::thread::JoinHandle<String>) -> String {
    let deadline = Instant::now() + Duration::from_secs(3);
    while !t.is_finished() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    if t.is_finished() {
        t.join().unwrap()
    } else {
        "<output still open>".into()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            kill_tree(pid(&c));
            let _ = c.wait();
        }
    }
}

/// Direct children of `pid`, from /proc.
pub fn children_of(pid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(p) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) else {
            continue;
        };
        let Some((_, after)) = stat.rsplit_once(')') else {
            continue;
        };
        let ppid: i32 = after
            .split_whitespace()
            .nth(1)
            .and_then(|x| x.parse().ok())
            .unwrap_or(0);
        if ppid == pid {
            out.push(p);
        }
    }
    out
}

/// SIGKILL a process and all its descendants.
pub fn kill_tree(pid: i32) {
    for c in children_of(pid) {
        kill_tree(c);
    }
    // SAFETY: plain kill(2).
    unsafe { libc::kill(pid, libc::SIGKILL) };
}

/// Run `aiida-init ARGS` (status, wait, check, ...) with the given environment.
pub fn aiida_init(args: &[&str], env: &[(&str, &Path)]) -> std::process::Output {
    let mut c = Command::new(bin());
    c.args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("run aiida-init")
}

/// The containers one Docker test made, removed (with their anonymous volumes) when it ends,
/// also when it fails. Driven through the `docker` command line: aiida-init's tests use no
/// Docker client library.
pub struct Containers {
    names: std::sync::Mutex<Vec<String>>,
}

impl Containers {
    /// `None` (after one line saying the test did not run) when no Docker engine answers; with
    /// `AIIDA_DEVC_REQUIRE_PREREQUISITES=1` or `CI=true` (as `scripts/test.sh` sets) that fails
    /// the test instead. Fails the test when the base image is missing.
    pub fn new() -> Option<Containers> {
        let info = Command::new("docker")
            .args(["version", "--format", "{{.Server.Version}}"])
            .output();
        let answers = info.as_ref().is_ok_and(|o| o.status.success());
        if !answers && !prerequisites::required() {
            prerequisites::skip("no Docker engine answers");
            return None;
        }
        assert!(
            answers,
            "missing prerequisite: a Docker engine that answers ({}). Run `bash scripts/bootstrap.sh` (as root) first.",
            info.map_or_else(
                |e| e.to_string(),
                |o| String::from_utf8_lossy(&o.stderr).trim().to_string()
            )
        );
        let image = base_image();
        let present = Command::new("docker")
            .args(["image", "inspect", &image])
            .output()
            .is_ok_and(|o| o.status.success());
        assert!(
            present,
            "missing prerequisite: the image {image}. Run `bash scripts/bootstrap.sh` (as root) first."
        );
        Some(Containers {
            names: std::sync::Mutex::new(Vec::new()),
        })
    }

    /// A new container name, removed when `self` drops.
    pub fn new_name(&self, what: &str) -> String {
        static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("aiida-init-test-{what}-{}-{n}", std::process::id());
        self.names.lock().unwrap().push(name.clone());
        name
    }
}

impl Drop for Containers {
    fn drop(&mut self) {
        for name in self.names.lock().unwrap().drain(..) {
            let _ = Command::new("docker")
                .args(["rm", "-f", "-v", &name])
                .output();
        }
    }
}

/// The image the Docker tests start from (`AIIDA_DEVC_BASE_IMAGE`, default `debian:bookworm`).
pub fn base_image() -> String {
    std::env::var("AIIDA_DEVC_BASE_IMAGE").unwrap_or_else(|_| "debian:bookworm".into())
}
