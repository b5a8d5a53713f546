//! `aiida-init circusd`, the circus-compatible arbiter in aiida-init, driven by the real clients:
//! aiida-core's `DaemonClient` through `verdi`, in a container of the lite image (aiida-core-base:
//! SQLite and the ZeroMQ broker). The image's own daemon service is stopped (`verdi daemon
//! stop`), then `aiida-init circusd` runs the profile's worker under the files aiida-core looks
//! for (the PID file, the sockets file naming its socket folder). verdi must see a running daemon
//! with its workers, `incr` and `decr` must change them, a killed worker must come back, a
//! calculation submitted must run, and `verdi daemon stop` must end it cleanly.

use std::time::Duration;

use crate::support::images::{Container, Start, await_sum_within, base_image, submit_add};
use crate::support::{Harness, Need, poll_until, skip_without};

/// Ceiling for anything on a busy machine (a worker's start, a calculation).
const CEILING: Duration = Duration::from_secs(180);

/// Starts `aiida-init circusd` in the background as the image's user, with aiida-core's file
/// layout for profile `default`; waits for its readiness notification.
const START_CIRCUSD: &str = r#"
set -e
dir=$(mktemp -d)
printf %s "$dir" > ~/.aiida/daemon/circus-default.sockets
setsid aiida-init circusd --name aiida-default --controller "$dir/circus.c.sock" \
    --log-file ~/.aiida/daemon/log/aiida-default.log --pid-file ~/.aiida/daemon/circus-default.pid \
    --stop-timeout 10 --notify-fd 9 -- /etc/init/aiida-daemon-worker -p default daemon worker \
    9>/tmp/circusd.ready </dev/null >/tmp/circusd.out 2>&1 &
for _ in $(seq 1800); do [ -s /tmp/circusd.ready ] && exit 0; sleep 0.1; done
echo "circusd did not report ready:"; cat /tmp/circusd.out; exit 1
"#;

/// The workers' PIDs (Python running the worker script; circusd's own command line names it too).
fn workers(c: &Container) -> Vec<String> {
    c.sh("pgrep -f '^[^ ]*python[0-9.]* [^ ]*aiida-daemon-worker ' || true")
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

fn until_workers(c: &Container, n: usize) {
    assert!(
        poll_until(CEILING, Duration::from_millis(250), || workers(c).len()
            == n),
        "not {n} workers: {}",
        c.sh("ps -eo pid,ppid,args")
    );
}

#[test]
fn aiida_cores_daemon_client_drives_aiida_init_circusd() {
    if skip_without(&[Need::Docker]) {
        return;
    }
    let h = Harness::new();
    let c = Container::start(&h, &base_image(), Start::default());
    c.wait_ready();
    c.sh("verdi daemon stop");
    c.sh(START_CIRCUSD);
    let arbiter = c
        .sh("cat ~/.aiida/daemon/circus-default.pid")
        .trim()
        .to_owned();
    assert_eq!(
        c.sh(&format!("ps -o args= -p {arbiter}"))
            .split_whitespace()
            .nth(1),
        Some("circusd"),
        "the PID file names another process"
    );

    let status = c.sh("verdi status 2>&1");
    assert!(
        status.contains(&format!("Daemon is running with PID {arbiter}")) && !status.contains('✘'),
        "verdi status:\n{status}"
    );
    until_workers(&c, 1);
    let daemon = c.sh("verdi daemon status 2>&1");
    assert!(
        daemon.contains(&format!("Daemon is running as PID {arbiter}"))
            && daemon.contains("Active workers [1]")
            && daemon.contains(&workers(&c)[0]),
        "verdi daemon status:\n{daemon}"
    );

    c.sh("verdi daemon incr 2");
    until_workers(&c, 3);
    assert!(
        c.sh("verdi daemon status 2>&1")
            .contains("Active workers [3]")
    );
    c.sh("verdi daemon decr 1");
    until_workers(&c, 2);
    let killed = workers(&c)[0].clone();
    c.sh(&format!("kill -9 {killed}"));
    assert!(
        poll_until(CEILING, Duration::from_millis(250), || {
            let now = workers(&c);
            now.len() == 2 && !now.contains(&killed)
        }),
        "the killed worker was not replaced: {}",
        c.sh("ps -eo pid,ppid,args")
    );

    let pk = submit_add(&c, 4, 5, None);
    assert_eq!(await_sum_within(&c, &pk, CEILING.as_secs()), 9);

    let stop = c.sh("verdi daemon stop 2>&1");
    assert!(stop.contains("OK"), "verdi daemon stop:\n{stop}");
    assert!(
        poll_until(CEILING, Duration::from_millis(250), || c
            .processes("[c]ircusd")
            == 0
            && workers(&c).is_empty()),
        "circusd or a worker still runs: {}",
        c.sh("ps -eo pid,ppid,args")
    );
    assert_eq!(
        c.sh("ls ~/.aiida/daemon/circus-default.pid 2>/dev/null || true"),
        ""
    );
    assert_eq!(
        c.sh("cat /tmp/circusd.out"),
        "",
        "circusd wrote to its output"
    );
}
