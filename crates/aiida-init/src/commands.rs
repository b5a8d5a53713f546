//! The `/command/*` names: what s6-overlay's scripts call, answered by aiida-init itself.
//!
//! `aiida-init install-commands /command` links every name below to the aiida-init binary; the
//! binary then acts on the name it was called by (multi-call). The execline programs
//! (`foreground`, `if`, `importas`, ...) and `execlineb` go to [`super::execline`]; the s6 helpers
//! are here:
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
//!   (10 ms initial sleep, 1000 ms between attempts, 7 attempts);
//! * `s6-svc -u|-d|-r|-o|-O|-k|-t|-h|-i|-q|-1|-2|-a|-p|-c SERVICEDIR...`: control a longrun of the
//!   running instance (by the directory's name);
//! * `halt`, `poweroff`, `reboot`: start the ordered shutdown of the running instance.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use super::execline::{die, option_value};
use super::runtime;

/// Every name installed by `install-commands`.
pub const MULTI_CALL_NAMES: &[&str] = &[
    "execlineb",
    "with-contenv",
    "printcontenv",
    "s6-envdir",
    "s6-notifyoncheck",
    "s6-setuidgid",
    "s6-svc",
    "s6-echo",
    "halt",
    "poweroff",
    "reboot",
    "foreground",
    "background",
    "if",
    "importas",
    "redirfd",
    "fdmove",
    "export",
    "unexport",
    "cd",
    "execline-cd",
    "exit",
    "emptyenv",
];

/// Run the multi-call command `name` with `args` (argv without argv[0]). Never returns.
pub fn multi_call(name: &str, args: &[String]) -> ! {
    reset_sigpipe();
    if name == "execlineb" {
        super::execline::execlineb_main(args);
    }
    let mut argv = vec![name.to_string()];
    argv.extend_from_slice(args);
    super::execline::run(argv)
}

/// Restore SIGPIPE's default (Rust ignores it at start; exec'd programs must not inherit that).
pub fn reset_sigpipe() {
    // SAFETY: setting a signal disposition.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
}

/// The s6 helpers that run inside the interpreter. Chain helpers return the command line to
/// continue with; terminal ones exit. None: not one of ours.
pub fn run_chain_builtin(argv: &[String]) -> Option<Vec<String>> {
    let name = argv[0].as_str();
    let args = &argv[1..];
    match name {
        "with-contenv" => Some(with_contenv(args)),
        "s6-envdir" => Some(s6_envdir(args)),
        "s6-setuidgid" => Some(s6_setuidgid(args)),
        "s6-notifyoncheck" => Some(s6_notifyoncheck(args)),
        "printcontenv" => printcontenv(args),
        "s6-svc" => s6_svc(args),
        "halt" | "poweroff" | "reboot" => halt(name),
        _ => None,
    }
}

fn set_env(k: &str, v: &str) {
    // SAFETY: these helpers are single-threaded.
    unsafe { std::env::set_var(k, v) }
}

fn keep_env() -> bool {
    std::env::var("S6_KEEP_ENV").is_ok_and(|v| !v.is_empty() && v.trim() != "0")
}

fn with_contenv(args: &[String]) -> Vec<String> {
    if keep_env() {
        return args.to_vec();
    }
    let rt = runtime::for_helpers().unwrap_or_else(|e| die("with-contenv", 111, &format!("{e:#}")));
    let vars = runtime::read_envdir(&rt.container_environment())
        .unwrap_or_else(|e| die("with-contenv", 111, &format!("{e:#}")));
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

fn s6_envdir(args: &[String]) -> Vec<String> {
    let mut i = 0;
    let mut whole = false;
    while let Some(a) = args.get(i) {
        if a == "--" {
            i += 1;
            break;
        }
        if !a.starts_with('-') {
            break;
        }
        whole |= a.contains('f');
        i += 1;
    }
    let Some(dir) = args.get(i) else {
        die("s6-envdir", 100, "usage: s6-envdir [-f] dir prog...")
    };
    let entries = std::fs::read_dir(dir)
        .unwrap_or_else(|e| die("s6-envdir", 111, &format!("unable to read {dir}: {e}")));
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
    args[i + 1..].to_vec()
}

fn printcontenv(args: &[String]) -> Option<Vec<String>> {
    let Some(var) = args.first() else {
        die("printcontenv", 100, "usage: printcontenv VAR")
    };
    let value = if keep_env() {
        std::env::var(var).ok()
    } else {
        let rt =
            runtime::for_helpers().unwrap_or_else(|e| die("printcontenv", 111, &format!("{e:#}")));
        std::fs::read_to_string(rt.container_environment().join(var)).ok()
    };
    match value {
        Some(v) => {
            println!("{v}");
            std::process::exit(0)
        }
        None => std::process::exit(1),
    }
}

fn s6_setuidgid(args: &[String]) -> Vec<String> {
    let Some(account) = args.first() else {
        die("s6-setuidgid", 100, "usage: s6-setuidgid account prog...")
    };
    let rest = args[1..].to_vec();
    if account.is_empty() {
        return rest;
    }
    let (uid, gid, name) = if let Some((u, g)) = account.split_once(':') {
        match (u.parse::<u32>(), g.parse::<u32>()) {
            (Ok(u), Ok(g)) => (u, g, None),
            _ => die("s6-setuidgid", 100, &format!("invalid account: {account}")),
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
            111,
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
                111,
                &format!("unable to set the groups of {account}: {e}"),
            );
        }
    } else if let Err(e) = nix::unistd::setgroups(&[g]) {
        die("s6-setuidgid", 111, &format!("unable to set groups: {e}"));
    }
    if let Err(e) =
        nix::unistd::setgid(g).and_then(|_| nix::unistd::setuid(nix::unistd::Uid::from_raw(uid)))
    {
        die(
            "s6-setuidgid",
            111,
            &format!("unable to switch to {account}: {e}"),
        );
    }
    rest
}

/// If `path` starts with `#!/command/NAME ARG` where NAME is one of ours, return NAME and the
/// shebang argument: the script then runs through this binary even where `/command` is not
/// installed.
pub fn shebang_handled_by_us(path: &Path) -> Option<(String, Vec<String>)> {
    let mut buf = [0u8; 256];
    let n = {
        use std::io::Read;
        std::fs::File::open(path).ok()?.read(&mut buf).ok()?
    };
    let first = buf[..n].split(|b| *b == b'\n').next()?;
    let line = std::str::from_utf8(first).ok()?.strip_prefix("#!")?.trim();
    let (interp, arg) = match line.split_once([' ', '\t']) {
        Some((i, a)) => (i, a.trim()),
        None => (line, ""),
    };
    let name = interp.strip_prefix("/command/")?;
    if !MULTI_CALL_NAMES.contains(&name) {
        return None;
    }
    let args = if arg.is_empty() {
        vec![]
    } else {
        vec![arg.to_string()]
    };
    Some((name.to_string(), args))
}

/// A command that runs `path` (through this binary when its shebang is one of ours).
pub fn script_command(path: &Path) -> Command {
    match shebang_handled_by_us(path) {
        Some((name, mut args)) => {
            let mut c =
                Command::new(std::env::current_exe().unwrap_or_else(|_| "/proc/self/exe".into()));
            c.arg0(name);
            args.push(path.display().to_string());
            c.args(args);
            c
        }
        None => Command::new(path),
    }
}

fn parse_ms(v: &str, opt: char) -> u64 {
    v.parse().unwrap_or_else(|_| {
        die(
            "s6-notifyoncheck",
            100,
            &format!("invalid value for -{opt}: {v}"),
        )
    })
}

fn s6_notifyoncheck(args: &[String]) -> Vec<String> {
    let prog = "s6-notifyoncheck";
    let mut fd: Option<i32> = None;
    let mut initial = 10u64;
    let mut global = 0u64;
    let mut local = 0u64;
    let mut waiting = 1000u64;
    let mut tries = 7u64;
    let mut check: Option<String> = None;
    let mut i = 0;
    while let Some(a) = args.get(i) {
        if a == "--" {
            i += 1;
            break;
        }
        if !a.starts_with('-') || a.len() < 2 {
            break;
        }
        i += 1;
        let letters: Vec<char> = a[1..].chars().collect();
        let mut k = 0;
        while k < letters.len() {
            let l = letters[k];
            if "3stTwnc".contains(l) {
                let v = option_value(&letters, k, args, &mut i)
                    .unwrap_or_else(|| die(prog, 100, &format!("-{l} needs a value")));
                match l {
                    '3' => fd = Some(parse_ms(&v, l) as i32),
                    's' => initial = parse_ms(&v, l),
                    't' => local = parse_ms(&v, l),
                    'T' => global = parse_ms(&v, l),
                    'w' => waiting = parse_ms(&v, l),
                    'n' => tries = parse_ms(&v, l),
                    'c' => check = Some(v),
                    _ => {}
                }
                break;
            }
            k += 1; // -d and unknown flags: nothing to do
        }
    }
    let rest = args[i..].to_vec();
    if rest.is_empty() {
        die(
            prog,
            100,
            "usage: s6-notifyoncheck [-3 fd] [-s ms] [-T ms] [-t ms] [-w ms] [-n n] [-c checkprog] prog...",
        );
    }
    let fd = fd.unwrap_or_else(|| {
        let text = std::fs::read_to_string("notification-fd").unwrap_or_else(|e| {
            die(
                prog,
                100,
                &format!("no -3 option and cannot read ./notification-fd: {e}"),
            )
        });
        text.trim()
            .parse()
            .unwrap_or_else(|_| die(prog, 100, "./notification-fd does not contain a number"))
    });
    // SAFETY: fcntl to check the fd is open.
    if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
        die(prog, 100, &format!("the notification fd {fd} is not open"));
    }
    // Double fork: the poller is reparented to the supervisor, which reaps it.
    // SAFETY: single-threaded at this point.
    match unsafe { nix::unistd::fork() } {
        Ok(nix::unistd::ForkResult::Child) => {
            // SAFETY: as above.
            match unsafe { nix::unistd::fork() } {
                Ok(nix::unistd::ForkResult::Child) => {
                    poll_check(fd, initial, global, local, waiting, tries, check)
                }
                _ => std::process::exit(0),
            }
        }
        Ok(nix::unistd::ForkResult::Parent { child }) => {
            let _ = nix::sys::wait::waitpid(child, None);
            // SAFETY: the poller has its own copy; the program must not hold the fd.
            unsafe { libc::close(fd) };
            rest
        }
        Err(e) => die(prog, 111, &format!("unable to fork: {e}")),
    }
}

fn poll_check(
    fd: i32,
    initial: u64,
    global: u64,
    local: u64,
    waiting: u64,
    tries: u64,
    check: Option<String>,
) -> ! {
    let start = Instant::now();
    std::thread::sleep(Duration::from_millis(initial));
    let mut attempt = 0u64;
    loop {
        attempt += 1;
        let mut cmd = match &check {
            Some(cmdline) => {
                let mut c = Command::new(
                    std::env::current_exe().unwrap_or_else(|_| "/proc/self/exe".into()),
                );
                c.arg0("execlineb").arg("-Pc").arg(cmdline);
                c
            }
            None => script_command(Path::new("./data/check")),
        };
        // SAFETY: fd is ours; the check must not inherit the notification fd.
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
        let ok = match cmd.spawn() {
            Ok(mut child) => {
                let deadline = (local > 0).then(|| Instant::now() + Duration::from_millis(local));
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
                    std::thread::sleep(Duration::from_millis(5));
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
            eprintln!(
                "s6-notifyoncheck: fatal: the check failed {attempt} times: giving up (the service stays up, not ready)"
            );
            std::process::exit(1);
        }
        if global > 0 && start.elapsed() >= Duration::from_millis(global) {
            eprintln!("s6-notifyoncheck: fatal: timed out");
            std::process::exit(99);
        }
        std::thread::sleep(Duration::from_millis(waiting));
    }
}

fn send_control(prog: &str, line: &str) {
    let rt = runtime::for_helpers().unwrap_or_else(|e| die(prog, 111, &format!("{e:#}")));
    let fifo = rt.control_fifo();
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&fifo)
        .unwrap_or_else(|e| {
            die(
                prog,
                111,
                &format!("unable to open {}: {e}", fifo.display()),
            )
        });
    if let Err(e) = f.write_all(format!("{line}\n").as_bytes()) {
        die(
            prog,
            111,
            &format!("unable to write to {}: {e}", fifo.display()),
        );
    }
}

use std::os::unix::fs::OpenOptionsExt;

fn s6_svc(args: &[String]) -> Option<Vec<String>> {
    let mut opts = String::new();
    let mut dirs = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        if a.starts_with('-') && dirs.is_empty() {
            let mut chars = a[1..].chars().peekable();
            while let Some(c) = chars.next() {
                match c {
                    'w' => {
                        chars.next(); // -wu, -wU, -wd, -wD, -wr, -wR: waiting is not supported; ignored
                    }
                    'T' => {
                        if chars.peek().is_none() {
                            i += 1;
                        }
                        break;
                    }
                    c => opts.push(c),
                }
            }
        } else {
            dirs.push(a.clone());
        }
        i += 1;
    }
    if dirs.is_empty() || opts.is_empty() {
        die(
            "s6-svc",
            100,
            "usage: s6-svc -u|-d|-r|-o|-O|-k|-t|-h|-i|-q|-1|-2|-a|-p|-c servicedir...",
        );
    }
    for d in dirs {
        let path = std::fs::canonicalize(&d).unwrap_or_else(|_| PathBuf::from(&d));
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or(d.clone());
        send_control("s6-svc", &format!("svc -{opts} {name}"));
    }
    std::process::exit(0)
}

fn halt(prog: &str) -> Option<Vec<String>> {
    send_control(prog, "halt");
    std::process::exit(0)
}

/// `aiida-init run-parts DIR MAXTIME_MS BEHAVIOUR`: run every executable of DIR in name order,
/// one at a time (the legacy cont-init.d and cont-finish.d). Exits with the first failure's
/// code when BEHAVIOUR is 2, else 0.
pub fn run_parts(args: &[String]) -> i32 {
    let Some(dir) = args.first() else {
        eprintln!("aiida-init: usage: run-parts DIR [MAXTIME_MS] [BEHAVIOUR]");
        return 100;
    };
    let maxtime: u64 = args.get(1).and_then(|v| v.parse().ok()).unwrap_or(0);
    let behaviour: u8 = args.get(2).and_then(|v| v.parse().ok()).unwrap_or(0);
    let mut entries: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(e) => e.flatten().map(|e| e.path()).collect(),
        Err(e) => {
            eprintln!("aiida-init: {dir}: cannot read: {e}");
            return 111;
        }
    };
    entries.sort();
    for path in entries {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with('.') || !path.is_file() {
            continue;
        }
        if std::fs::metadata(&path)
            .map(|m| m.permissions().mode() & 0o111 == 0)
            .unwrap_or(true)
        {
            eprintln!(
                "aiida-init: warning: {}: not executable, skipped",
                path.display()
            );
            continue;
        }
        let mut cmd = script_command(&path);
        let started = Instant::now();
        let code = match cmd.spawn() {
            Ok(mut child) => loop {
                match child.try_wait() {
                    Ok(Some(status)) => {
                        use std::os::unix::process::ExitStatusExt;
                        break status
                            .code()
                            .unwrap_or_else(|| 128 + status.signal().unwrap_or(0));
                    }
                    Ok(None) => {}
                    Err(_) => break 111,
                }
                if maxtime > 0 && started.elapsed() >= Duration::from_millis(maxtime) {
                    eprintln!(
                        "aiida-init: warning: {}: still running after {maxtime} ms: killed",
                        path.display()
                    );
                    let _ = child.kill();
                    let _ = child.wait();
                    break 137;
                }
                std::thread::sleep(Duration::from_millis(5));
            },
            Err(e) => {
                eprintln!("aiida-init: {}: cannot run: {e}", path.display());
                126
            }
        };
        if code != 0 {
            if behaviour >= 1 {
                eprintln!("aiida-init: warning: {} exited {code}", path.display());
            }
            if behaviour >= 2 {
                return code;
            }
        }
    }
    0
}

/// `aiida-init install-commands DIR`: link every multi-call name in DIR to this binary.
pub fn install_commands(args: &[String]) -> i32 {
    let Some(dir) = args.first() else {
        eprintln!("aiida-init: usage: install-commands DIR");
        return 100;
    };
    let dir = Path::new(dir);
    let exe = match std::env::current_exe().and_then(std::fs::canonicalize) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("aiida-init: cannot find this binary's path: {e}");
            return 111;
        }
    };
    if let Err(e) = std::fs::create_dir_all(dir) {
        eprintln!("aiida-init: {}: cannot create: {e}", dir.display());
        return 111;
    }
    for name in MULTI_CALL_NAMES {
        let link = dir.join(name);
        let _ = std::fs::remove_file(&link);
        if let Err(e) = std::os::unix::fs::symlink(&exe, &link) {
            eprintln!(
                "aiida-init: {}: cannot create the link: {e}",
                link.display()
            );
            return 111;
        }
    }
    println!(
        "aiida-init: linked {} commands in {} to {}",
        MULTI_CALL_NAMES.len(),
        dir.display(),
        exe.display()
    );
    0
}
