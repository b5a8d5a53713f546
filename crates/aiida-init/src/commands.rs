//! The multi-call entry and the `aiida-init` subcommands that run scripts or install names:
//!
//! * [`multi_call`]: the binary called as one of the names of [`super::builtins`] (through a
//!   link that `install-commands` made, or a `#!/command/NAME` shebang): `execlineb` runs a
//!   script ([`super::execline`]), any other name the interpreter ([`super::builtins::run`]);
//! * `aiida-init install-commands DIR`: link every multi-call name in DIR to this binary;
//! * `aiida-init run-parts DIR MAXTIME_MS BEHAVIOUR`: the legacy `cont-init.d`/`cont-finish.d`.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::builtins::{self, script_command};

/// Run the multi-call command `name` with `args` (argv without `argv[0]`). Never returns.
pub fn multi_call(name: &str, args: &[String]) -> ! {
    reset_sigpipe();
    if name == builtins::EXECLINEB {
        super::execline::execlineb_main(args);
    }
    let mut argv = vec![name.to_string()];
    argv.extend_from_slice(args);
    builtins::run(argv)
}

/// Restore SIGPIPE's default (Rust ignores it at start; exec'd programs must not inherit that).
pub fn reset_sigpipe() {
    // SAFETY: setting a signal disposition.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
}

/// `aiida-init run-parts DIR MAXTIME_MS BEHAVIOUR`: run every executable of DIR in name order,
/// one at a time (the legacy cont-init.d and cont-finish.d). Exits with the first failure's
/// code when BEHAVIOUR is 2, else 0.
pub fn run_parts(args: &[String]) -> i32 {
    let Some(dir) = args.first() else {
        eprintln_whole!("aiida-init: usage: run-parts DIR [MAXTIME_MS] [BEHAVIOUR]");
        return 100;
    };
    let maxtime: u64 = args.get(1).and_then(|v| v.parse().ok()).unwrap_or(0);
    let behaviour: u8 = args.get(2).and_then(|v| v.parse().ok()).unwrap_or(0);
    let mut entries: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(e) => e.flatten().map(|e| e.path()).collect(),
        Err(e) => {
            eprintln_whole!("aiida-init: {dir}: cannot read: {e}");
            return 111;
        }
    };
    entries.sort();
    for path in entries {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with('.') || !path.is_file() {
            continue;
        }
        if std::fs::metadata(&path).map_or(true, |m| m.permissions().mode() & 0o111 == 0) {
            eprintln_whole!(
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
                    eprintln_whole!(
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
                eprintln_whole!("aiida-init: {}: cannot run: {e}", path.display());
                126
            }
        };
        if code != 0 {
            if behaviour >= 1 {
                eprintln_whole!("aiida-init: warning: {} exited {code}", path.display());
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
        eprintln_whole!("aiida-init: usage: install-commands DIR");
        return 100;
    };
    let dir = Path::new(dir);
    let exe = match std::env::current_exe().and_then(std::fs::canonicalize) {
        Ok(e) => e,
        Err(e) => {
            eprintln_whole!("aiida-init: cannot find this binary's path: {e}");
            return 111;
        }
    };
    if let Err(e) = std::fs::create_dir_all(dir) {
        eprintln_whole!("aiida-init: {}: cannot create: {e}", dir.display());
        return 111;
    }
    let mut count = 0;
    for name in builtins::multi_call_names() {
        count += 1;
        let link = dir.join(name);
        let _ = std::fs::remove_file(&link);
        if let Err(e) = std::os::unix::fs::symlink(&exe, &link) {
            eprintln_whole!(
                "aiida-init: {}: cannot create the link: {e}",
                link.display()
            );
            return 111;
        }
    }
    println!(
        "aiida-init: linked {} commands in {} to {}",
        count,
        dir.display(),
        exe.display()
    );
    0
}
