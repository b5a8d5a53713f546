//! `verdi daemon ...` typed in a ready container: whatever the user runs, the daemon stays the
//! image's supervised `aiida-daemon` service. After each command (or sequence), the daemon is
//! ready in `aiida-init status`, is the only circus and a child of aiida-init, has the expected
//! workers, recovers from a SIGKILLed PostgreSQL and runs a calculation submitted afterwards,
//! and `docker stop` is clean (exit 0, nothing killed, no `connection_forced` in RabbitMQ's log).
//! The lite variant (aiida-core-base: SQLite and the ZeroMQ broker) gets the same, without the
//! PostgreSQL fault.

use crate::support::{Need, skip_without};
use std::time::{Duration, Instant};

use crate::support::images::{
    Container, Start, await_sum_within, base_image, submit_add, with_services_image,
};
use crate::support::{Harness, poll_until};

/// Ceiling for anything the daemon does on a busy machine (a worker restart, a calculation).
const CEILING: Duration = Duration::from_secs(180);

/// A container of `image`, ready, that ran each of `commands` (each must succeed).
fn ready_after<'h>(h: &'h Harness, image: &str, commands: &[&str]) -> Container<'h> {
    let c = Container::start(h, image, Start::default());
    c.wait_ready();
    for command in commands {
        c.sh(command);
    }
    c
}

/// The daemon is the supervised service: ready, the PID in circus's PID file, a child of
/// aiida-init, the only circus (and no circusd-stats), with `workers` workers.
fn assert_supervised(c: &Container, workers: usize, rabbitmq: bool) {
    c.wait_ready();
    let row = c.service("aiida-daemon");
    assert_eq!(row["state"], "ready", "aiida-daemon is not ready: {row}");
    let pid = row["pid"]
        .as_i64()
        .expect("a running aiida-daemon has a PID");
    let pid_file = c.sh("cat ~/.aiida/daemon/circus-default.pid");
    assert_eq!(
        pid_file.trim(),
        pid.to_string(),
        "circus's PID file names another process than the service"
    );
    let parent = c.sh(&format!("ps -o ppid= -p {pid}"));
    assert_eq!(parent.trim(), "1", "the daemon is not aiida-init's child");
    assert_eq!(c.processes("[s]tart-circus"), 1, "not exactly one circus");
    assert_eq!(c.processes("[c]ircusd-stats"), 0, "circusd-stats runs");
    assert!(
        poll_until(CEILING, Duration::from_millis(250), || c.daemon_workers()
            == workers),
        "not {workers} workers: {}",
        c.sh("ps -eo pid,ppid,args")
    );
    c.assert_verdi_ready(rabbitmq);
}

/// PostgreSQL SIGKILLed and restarted by its supervisor: the daemon restarts its workers, and a
/// calculation submitted afterwards finishes.
fn assert_recovers_from_a_postgresql_kill(c: &Container, workers: usize) {
    let restarts = |c: &Container| c.logs().matches("PostgreSQL restarted").count();
    let before = restarts(c);
    c.sh("kill -9 $(head -1 ~/.postgresql/postmaster.pid)");
    assert!(
        poll_until(CEILING, Duration::from_millis(500), || restarts(c) > before),
        "the daemon did not restart its workers after PostgreSQL restarted:\n{}",
        c.logs()
    );
    assert_supervised(c, workers, true);
    let pk = submit_add(c, 4, 5, None);
    assert_eq!(await_sum_within(c, &pk, CEILING.as_secs()), 9);
}

/// `docker stop`: exit 0 within Docker's 10 s; aiida-init stops the daemon itself (its circus
/// stops its workers), nothing is killed, and no worker's connection is forced closed by
/// RabbitMQ. Before the stop: whatever the commands ran compiled no bytecode at run time.
fn assert_stops_cleanly(c: &Container, daemon_runs: bool) {
    c.assert_no_bytecode_compiled();
    let took = c.stop();
    assert!(
        took < Duration::from_secs(9),
        "docker stop took {took:?} (Docker kills at 10 s)"
    );
    assert_eq!(c.inspect("{{.State.ExitCode}}"), "0", "unclean exit");
    let logs = c.logs();
    let (_, stop) = logs
        .rsplit_once("received SIGTERM: shutting down")
        .unwrap_or_else(|| panic!("aiida-init did not get docker stop's SIGTERM:\n{logs}"));
    // aiida-init stopped the service, and its circus exited 0 (`finish` says so); a daemon that
    // was stopped already has nothing to stop.
    let expected: &[&str] = if daemon_runs {
        &[
            "stopping aiida-daemon",
            "aiida-daemon: stopped as requested",
        ]
    } else {
        &[]
    };
    for expected in expected {
        assert!(
            stop.contains(expected),
            "no `{expected}` in the stop:\n{stop}"
        );
    }
    for bad in ["SIGKILL", "connection_forced"] {
        assert!(!stop.contains(bad), "`{bad}` in the stop:\n{stop}");
    }
    assert!(
        !logs.contains("connection_forced"),
        "RabbitMQ forced a connection closed:\n{logs}"
    );
}

/// The whole check after `commands` on with-services.
fn with_services_after(commands: &[&str], workers: usize) {
    let h = Harness::new();
    let c = ready_after(&h, &with_services_image(), commands);
    assert_supervised(&c, workers, true);
    assert_recovers_from_a_postgresql_kill(&c, workers);
    assert_stops_cleanly(&c, true);
}

#[test]
fn daemon_start_while_it_runs_keeps_the_service() {
    if skip_without(&[Need::Docker]) {
        return;
    }
    with_services_after(&["verdi daemon start"], 1);
}

#[test]
fn daemon_start_after_stop_brings_the_service_back() {
    if skip_without(&[Need::Docker]) {
        return;
    }
    with_services_after(&["verdi daemon stop", "verdi daemon start"], 1);
}

#[test]
fn daemon_start_with_a_number_of_workers_after_stop() {
    if skip_without(&[Need::Docker]) {
        return;
    }
    with_services_after(&["verdi daemon stop", "verdi daemon start 2"], 2);
}

#[test]
fn daemon_restart_restarts_the_service() {
    if skip_without(&[Need::Docker]) {
        return;
    }
    with_services_after(&["verdi daemon restart"], 1);
}

#[test]
fn daemon_restart_reset_restarts_the_service() {
    if skip_without(&[Need::Docker]) {
        return;
    }
    with_services_after(&["verdi daemon restart --reset"], 1);
}

#[test]
fn daemon_restart_starts_the_default_number_of_workers() {
    if skip_without(&[Need::Docker]) {
        return;
    }
    // aiida-core's restart starts `daemon.default_workers`: the service does the same.
    with_services_after(
        &[
            "verdi config set daemon.default_workers 2",
            "verdi daemon restart",
        ],
        2,
    );
}

#[test]
fn daemon_incr_and_decr_change_the_service_workers() {
    if skip_without(&[Need::Docker]) {
        return;
    }
    with_services_after(&["verdi daemon incr 2", "verdi daemon decr 1"], 2);
}

#[test]
fn daemon_status_answers_from_the_service() {
    if skip_without(&[Need::Docker]) {
        return;
    }
    with_services_after(&["verdi daemon status"], 1);
}

/// `verdi daemon stop` keeps the daemon down until it is started again, and says so: `status`
/// shows it down (not failed) with the reason, `wait` fails at once naming it, nothing brings it
/// back behind the user's back, and the container still stops cleanly.
#[test]
fn daemon_stop_keeps_the_service_down_until_started() {
    if skip_without(&[Need::Docker]) {
        return;
    }
    let h = Harness::new();
    let c = ready_after(&h, &with_services_image(), &["verdi daemon stop"]);
    let row = c.service("aiida-daemon");
    assert_eq!(row["state"], "down", "after verdi daemon stop: {row}");
    let (code, status) = c.exec(&["aiida-init", "status"]);
    assert_eq!(code, 0, "{status}");
    let line = status
        .lines()
        .find(|l| l.starts_with("aiida-daemon "))
        .expect("a row for aiida-daemon");
    assert!(
        line.contains("verdi daemon start"),
        "the status row does not say how to start it again: {line}"
    );
    let started = Instant::now();
    let (code, out) = c.exec(&["aiida-init", "wait", "--timeout", "60"]);
    assert_eq!(code, 1, "aiida-init wait did not fail:\n{out}");
    assert!(
        out.contains("aiida-daemon is down and not restarted") && started.elapsed() < CEILING,
        "{out}"
    );
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(c.processes("[s]tart-circus"), 0, "a daemon came back");
    let (code, out) = c.exec(&["verdi", "daemon", "status"]);
    assert_ne!(code, 0, "verdi daemon status says it runs:\n{out}");
    assert_stops_cleanly(&c, false);
}

/// The lite variant (aiida-core-base alone: SQLite, the ZeroMQ broker as its own service): restart,
/// stop then start with workers, incr; still supervised, a calculation runs, a clean stop.
#[test]
fn lite_daemon_commands_keep_the_service() {
    if skip_without(&[Need::Docker]) {
        return;
    }
    let h = Harness::new();
    let c = ready_after(
        &h,
        &base_image(),
        &[
            "verdi daemon restart",
            "verdi daemon stop",
            "verdi daemon start 2",
            "verdi daemon incr 1",
        ],
    );
    assert_supervised(&c, 3, false);
    let pk = submit_add(&c, 2, 3, None);
    assert_eq!(await_sum_within(&c, &pk, CEILING.as_secs()), 5);
    assert_stops_cleanly(&c, true);
}

/// The package versions `verdi daemon status` compares with the installed ones: written for the
/// daemon's own start once it is ready, and a previous start's file (here one naming another
/// aiida-core) never survives a restart, so the status warns of nothing.
#[test]
fn the_daemons_version_file_is_its_own_starts() {
    if skip_without(&[Need::Docker]) {
        return;
    }
    const FILE: &str = "~/.aiida/daemon/aiida-default-env-info.json";
    let h = Harness::new();
    let c = ready_after(&h, &base_image(), &[]);
    let written = |c: &Container| {
        poll_until(CEILING, Duration::from_millis(100), || {
            c.exec(&[
                "bash",
                "-c",
                &format!("grep -q /opt/aiida/bin/python {FILE}"),
            ])
            .0 == 0
        })
    };
    assert!(written(&c), "no version file after the start: {}", c.logs());
    let installed = c.sh(&format!("cat {FILE}"));
    assert!(
        installed.contains(r#""aiida-core": {"version": "#),
        "the version file names no aiida-core: {installed}"
    );
    let stale = r#"{"packages": {"aiida-core": {"version": "0.0.1"}}, "python_binary": "/opt/aiida/bin/python"}"#;
    c.sh(&format!("printf '%s' '{stale}' > {FILE}"));
    let (_, out) = c.exec(&["verdi", "daemon", "status"]);
    assert!(
        out.contains("different package versions"),
        "a file naming another aiida-core gave no warning, so this test proves nothing:\n{out}"
    );
    c.stop();
    c.start_again();
    c.wait_ready();
    assert!(
        written(&c),
        "no version file after the restart: {}",
        c.logs()
    );
    assert_eq!(
        c.sh(&format!("cat {FILE}")),
        installed,
        "the restart did not write its own versions"
    );
    let (code, out) = c.exec(&["verdi", "daemon", "status"]);
    assert_eq!(code, 0, "{out}");
    assert!(!out.contains("different package versions"), "{out}");
}
