//! aiida-init as PID 1 on a pseudo-terminal, as `docker run -it IMAGE bash` puts it: the
//! command owns the terminal (job control in an interactive bash) and Ctrl-C reaches the
//! command, not PID 1, giving 130.

use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{Tree, require_tool};

struct Terminal {
    master: OwnedFd,
    child: std::process::Child,
    seen: String,
}

impl Terminal {
    /// Start `unshare --pid --fork --mount-proc aiida-init ARGS` with a new pty as its
    /// controlling terminal and stdio.
    fn start(tree: &Tree, args: &[&str]) -> Terminal {
        require_tool("unshare");
        let pty = nix::pty::openpty(None, None).expect("openpty");
        let mut cmd: Command = tree.command(crate::support::Mode::Pid1, args);
        let slave = pty.slave;
        cmd.stdin(Stdio::from(slave.try_clone().unwrap()))
            .stdout(Stdio::from(slave.try_clone().unwrap()))
            .stderr(Stdio::from(slave));
        // SAFETY: setsid and ioctl between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                libc::setsid();
                if libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().expect("start aiida-init on a pty");
        drop(cmd);
        Terminal {
            master: pty.master,
            child,
            seen: String::new(),
        }
    }

    fn send(&self, text: &str) {
        nix::unistd::write(&self.master, text.as_bytes()).expect("write to the pty");
    }

    /// Read until `found` returns true for what was seen, or fail after `limit`.
    fn expect(&mut self, what: &str, found: impl Fn(&str) -> bool, limit: Duration) {
        let deadline = Instant::now() + limit;
        while !found(&self.seen) {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "timed out waiting for {what}; the terminal showed:\n{}",
                self.seen
            );
            let mut pfd = libc::pollfd {
                fd: self.master.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd.
            let n = unsafe { libc::poll(&mut pfd, 1, left.as_millis().min(200) as i32) };
            if n > 0 {
                let mut buf = [0u8; 4096];
                match nix::unistd::read(&self.master, &mut buf) {
                    Ok(0) | Err(_) => std::thread::sleep(Duration::from_millis(20)),
                    Ok(k) => self.seen.push_str(&String::from_utf8_lossy(&buf[..k])),
                }
            }
        }
    }

    /// Wait for aiida-init to exit, reading (and discarding) the terminal meanwhile.
    fn exit_code(mut self, limit: Duration) -> i32 {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code().unwrap_or(-1);
            }
            assert!(
                Instant::now() < deadline,
                "aiida-init did not exit; the terminal showed:\n{}",
                self.seen
            );
            let mut buf = [0u8; 4096];
            let mut pfd = libc::pollfd {
                fd: self.master.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd.
            if unsafe { libc::poll(&mut pfd, 1, 50) } > 0 {
                if let Ok(k) = nix::unistd::read(&self.master, &mut buf) {
                    self.seen.push_str(&String::from_utf8_lossy(&buf[..k]));
                }
            }
        }
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        crate::support::kill_tree(crate::support::pid(&self.child));
        let _ = self.child.wait();
    }
}

const LIMIT: Duration = Duration::from_secs(15);

/// Whether a process named `comm` runs below `pid`.
fn has_descendant(pid: i32, comm: &str) -> bool {
    crate::support::children_of(pid).into_iter().any(|child| {
        std::fs::read_to_string(format!("/proc/{child}/comm")).is_ok_and(|c| c.trim() == comm)
            || has_descendant(child, comm)
    })
}

#[test]
fn interactive_bash_has_job_control_and_ctrl_c_gives_130() {
    require_tool("bash");
    let tree = Tree::new();
    tree.longrun("background-service", "exec sleep 100", &[]);
    let mut term = Terminal::start(&tree, &["bash", "--norc", "--noprofile", "-i"]);
    term.send("echo flags=$-\n");
    term.expect(
        "bash's flags",
        |s| {
            s.lines()
                .any(|l| l.starts_with("flags=") && !l.contains('$'))
        },
        LIMIT,
    );
    let flags = term
        .seen
        .lines()
        .find(|l| l.starts_with("flags=") && !l.contains('$'))
        .unwrap()
        .to_string();
    assert!(
        flags.contains('m'),
        "no job control in bash: {flags}\n{}",
        term.seen
    );
    assert!(!term.seen.contains("no job control"), "{}", term.seen);
    term.send("sleep 100\n");
    std::thread::sleep(Duration::from_millis(300));
    term.send("\x03");
    term.send("echo rc=$?\n");
    term.expect(
        "the exit status of the interrupted sleep",
        |s| s.contains("rc=130"),
        LIMIT,
    );
    term.send("exit 7\n");
    assert_eq!(term.exit_code(LIMIT), 7);
}

#[test]
fn ctrl_c_interrupts_a_foreground_command_and_gives_130() {
    let tree = Tree::new();
    let marker = tree.out_file("started");
    let script = format!("touch {}; exec sleep 100", marker.display());
    let mut term = Terminal::start(&tree, &["sh", "-c", &script]);
    // Ctrl-C once the command is `sleep`: a shell that gets SIGINT while its `touch` exits
    // normally may go on (as dash and bash do), which is not what this test is about.
    let deadline = Instant::now() + LIMIT;
    while !marker.exists() || !has_descendant(crate::support::pid(&term.child), "sleep") {
        assert!(Instant::now() < deadline, "the command did not start");
        std::thread::sleep(Duration::from_millis(10));
    }
    term.expect("nothing in particular", |_| true, LIMIT);
    term.send("\x03");
    assert_eq!(term.exit_code(LIMIT), 130);
}
