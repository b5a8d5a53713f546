//! A healthy start reads as healthy. The sample plugin's first creation, a work chain run by the
//! daemon, a `verdi daemon restart` and a reopen (`docker stop`, then `aiida-devc up` again), all through the reference
//! devcontainer CLI as `scripts/demo.sh` does, print no traceback, no warning (Python's, RabbitMQ's,
//! aiida-init's) and no line with "error", "fatal" or "panic": neither in the output of `up` and
//! of the command nor in `docker logs` of the container. Users read such lines as failures.
//!
//! The same scan still finds real problems: a failing start-up step, a refused RabbitMQ login and
//! a RabbitMQ client that vanishes mid-connection all show in `docker logs` (RabbitMQ's log levels
//! are unchanged; only our own probes close their connections properly now). A full home volume
//! and a proxy without a CA bundle are reported by the tests of `faults` and of `doctor`/`init`.

use std::process::Command;
use std::time::Duration;

use crate::support::images::{Container, Start, docker, text as output_text, with_services_image};
use crate::support::plugin_workspace::{
    PluginWorkspace, aiida_devc, assert_verdi_all_green, sample_plugin, text,
};
use crate::support::{Harness, Need, copy_tree, devcontainer_cli, poll_until, skip_without};

/// Words a user reads as a failure, matched case-insensitively anywhere in a line: `warn` covers
/// `[warning]`, `UserWarning`, `warnings.warn` and `aiida-init: warning:`; `error` covers
/// RabbitMQ's `[error]`, pip's `ERROR:` and Python's exception names; `fatal` PostgreSQL's `FATAL:`.
const ALARMS: &[&str] = &["traceback", "warn", "error", "fatal", "panic"];

/// The lines of `output` that hold one of [`ALARMS`].
pub fn alarming_lines(output: &str) -> Vec<&str> {
    output
        .lines()
        .filter(|line| {
            let line = line.to_lowercase();
            ALARMS.iter().any(|alarm| line.contains(alarm))
        })
        .collect()
}

/// What a healthy step printed (`what`, `output`), for the report of [`assert_quiet`].
struct Step {
    what: String,
    output: String,
}

/// Every step's output is free of [`ALARMS`]; otherwise one message lists each offending line
/// under the step that printed it, then the whole output of those steps.
fn assert_quiet(steps: &[Step]) {
    let mut report = String::new();
    let mut whole = String::new();
    for step in steps {
        let lines = alarming_lines(&step.output);
        if lines.is_empty() {
            continue;
        }
        report.push_str(&format!("\n{} ({} lines):\n", step.what, lines.len()));
        for line in lines {
            report.push_str(&format!("    {line}\n"));
        }
        whole.push_str(&format!("\n--- {} ---\n{}\n", step.what, step.output));
    }
    assert!(
        report.is_empty(),
        "a healthy start printed lines that read as failures ({}):\n{report}{whole}",
        ALARMS.join(", ")
    );
}

/// `aiida-devc up .` through the reference CLI; panics when it fails; returns stdout and stderr.
fn up(ws: &PluginWorkspace, what: &str) -> String {
    let cli = devcontainer_cli();
    let started = std::time::Instant::now();
    let out = aiida_devc(
        ws.path(),
        &["up", ".", "--devcontainer-cli", cli.to_str().unwrap()],
        &[],
    );
    let output = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(
        out.status.success(),
        "aiida-devc up ({what}) failed:\n{output}"
    );
    assert!(
        text(&out.stderr).contains(&format!("with {}", cli.display())),
        "aiida-devc up ({what}) did not use the reference CLI:\n{output}"
    );
    eprintln!(
        "aiida-devc up ({what}): {:.1} s",
        started.elapsed().as_secs_f64()
    );
    output
}

/// `docker logs` of `container`, both streams as one pipe.
fn docker_logs(container: &str) -> String {
    let out = Command::new("sh")
        .args(["-c", "docker logs \"$1\" 2>&1", "sh", container])
        .output()
        .expect("run the docker command line");
    text(&out.stdout)
}

#[test]
fn a_healthy_creation_restart_and_reopen_print_no_traceback_warning_or_error() {
    if skip_without(&[Need::Docker, Need::DevcontainerCli]) {
        return;
    }
    let ws = PluginWorkspace::new();
    let image = with_services_image();
    ws.harness.require_image(&image);
    copy_tree(&sample_plugin(), ws.path());
    // The sample names the published image; the test runs the images under test.
    let config = ws.path().join(".devcontainer/devcontainer.json");
    let pinned = "aiidateam/aiida-core-with-services:aiida-2.9.4";
    let json = std::fs::read_to_string(&config).unwrap();
    assert!(json.contains(pinned), "{json}");
    std::fs::write(&config, json.replace(pinned, &image)).unwrap();
    ws.chown(1000, 100);

    let mut steps = Vec::new();
    let created = up(&ws, "first creation");
    let container = ws.container();
    steps.push(Step {
        what: "aiida-devc up (first creation)".into(),
        output: created,
    });

    // The daemon runs the plugin's work chain: the lifecycle commands installed the plugin, the
    // daemon loaded it, and its worker is up and connected to RabbitMQ. (A worker stopped while it
    // still starts can exit without closing its connection, which RabbitMQ reports as a warning:
    // a restart right after a start is not what this test is about.)
    let submitted = ws.exec(
        &["python", "-c", crate::workspace_e2e::SUBMIT_AND_WAIT],
        &[],
    );
    assert!(
        submitted.trim_end().ends_with("finished_ok=True result=10"),
        "{submitted}"
    );
    steps.push(Step {
        what: "the plugin's work chain through the daemon".into(),
        output: submitted,
    });
    // What a user does after editing the plugin: the daemon stops and starts under aiida-init.
    let restart = ws.devcontainer(&["exec", "verdi", "daemon", "restart"], &[]);
    let restarted = format!("{}{}", text(&restart.stdout), text(&restart.stderr));
    assert!(
        restart.status.success(),
        "verdi daemon restart:\n{restarted}"
    );
    steps.push(Step {
        what: "verdi daemon restart".into(),
        output: restarted,
    });
    assert_verdi_all_green(&ws.exec(&["verdi", "status"], &[]), &["daemon"]);
    steps.push(Step {
        what: "docker logs (after the creation and the restart)".into(),
        output: docker_logs(&container),
    });

    let stop = docker(&["stop", "-t", "30", &container]);
    assert!(stop.status.success(), "docker stop: {}", output_text(&stop));
    let reopened = up(&ws, "reopen");
    assert_eq!(ws.container(), container, "the reopen made a new container");
    assert_verdi_all_green(
        reopened
            .split("verdi status:")
            .nth(1)
            .expect("verdi status in the output"),
        &["daemon"],
    );
    steps.push(Step {
        what: "aiida-devc up (reopen)".into(),
        output: reopened,
    });
    // The whole log: both starts and the stop between them.
    let logs = docker_logs(&container);
    assert!(
        logs.matches("services up in").count() >= 2,
        "the log does not hold both starts:\n{logs}"
    );
    steps.push(Step {
        what: "docker logs (after the reopen)".into(),
        output: logs,
    });
    assert_quiet(&steps);
}

/// A start-up hook that fails (a failed service), a refused RabbitMQ login and a client that
/// closes its socket right after the protocol header: each is reported in `docker logs`, and the
/// scan of the healthy test finds it.
#[test]
fn a_failed_service_and_real_rabbitmq_problems_still_show_in_the_log() {
    if skip_without(&[Need::Docker]) {
        return;
    }
    let h = Harness::new();
    let dir = tempfile::tempdir().unwrap();
    let hook = dir.path().join("50-fails");
    std::fs::write(
        &hook,
        "#!/bin/sh\necho 'the plugin data set is not there' >&2\nexit 3\n",
    )
    .unwrap();
    std::fs::set_permissions(&hook, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let c = Container::start(
        &h,
        &with_services_image(),
        Start {
            volumes: vec![format!(
                "{}:/etc/init/run-before-daemon-start/50-fails:ro",
                hook.display()
            )],
            ..Start::default()
        },
    );
    // `aiida-init wait` answers once the container's init runs (a moment after `docker run`).
    let ready = poll_until(Duration::from_secs(180), Duration::from_millis(500), || {
        c.exec(&["aiida-init", "wait", "--timeout", "180", "rabbitmq"])
            .0
            == 0
    });
    assert!(ready, "RabbitMQ did not become ready:\n{}", c.logs());
    let (code, out) = c.exec(&[
        "aiida-init",
        "wait",
        "--timeout",
        "180",
        "run-before-daemon-start",
    ]);
    assert_ne!(code, 0, "the failing hook did not fail the start:\n{out}");

    c.sh(
        "python3 -c \"import sys; sys.path.insert(0, '/etc/init'); import amqp_probe; \
          assert amqp_probe.answers('127.0.0.1', 5672, password='not-the-password')\"",
    );
    c.sh(
        "python3 -c \"import socket; s = socket.create_connection(('127.0.0.1', 5672)); \
          s.sendall(b'AMQP\\x00\\x00\\x09\\x01'); assert s.recv(1) == b'\\x01'; s.close()\"",
    );

    let reported = |logs: &str| {
        let lines = alarming_lines(logs);
        let has = |all: &[&str]| lines.iter().any(|l| all.iter().all(|w| l.contains(w)));
        has(&["run-before-daemon-start"])
            && has(&["[error]", "PLAIN login refused"])
            && has(&["[warning]", "client unexpectedly closed TCP connection"])
    };
    let shown = poll_until(Duration::from_secs(60), Duration::from_millis(500), || {
        reported(&c.logs())
    });
    let logs = c.logs();
    assert!(
        shown,
        "not every problem is in the log, or the scan misses it; the scan found:\n{}\n--- docker logs ---\n{logs}",
        alarming_lines(&logs).join("\n")
    );
    // The one vanished client is the test's own: RabbitMQ's readiness probe left no such warning.
    assert_eq!(
        logs.matches("client unexpectedly closed TCP connection")
            .count(),
        1,
        "{logs}"
    );
}

/// RabbitMQ can keep listing a connection that has ended (it tracks connections in processes it
/// spawns per event, which can run out of order for a short-lived one such as a probe); its stop
/// then warns that it was "asked to close connection ... Was it already closed?". Seen once in a
/// healthy reopen's log. Such an entry is made here by hand, through RabbitMQ's own tracking
/// functions, for a process that has ended: the stop (aiida_rabbitmq_stop) drops it first, so
/// `docker stop` exits 0 and RabbitMQ logs no such warning. (An image without that step logs
/// the warning in this test.)
#[test]
fn a_connection_rabbitmq_still_lists_after_it_ended_leaves_no_warning_at_the_stop() {
    if skip_without(&[Need::Docker]) {
        return;
    }
    let h = Harness::new();
    let c = Container::ready_with_services_on_a_new_home(&h);
    let listed = c.sh(r#"rabbitmqctl eval '
Ended = spawn(fun() -> ok end),
timer:sleep(100),
false = is_process_alive(Ended),
Name = <<"127.0.0.1:1 -> 127.0.0.1:5672">>,
Details = [{type, network}, {pid, Ended}, {name, Name}, {node, node()}, {vhost, <<"/">>},
           {user, <<"guest">>}, {protocol, {0,9,1}}, {peer_host, {127,0,0,1}}, {peer_port, 1},
           {connected_at, os:system_time(millisecond)}],
ok = rabbit_connection_tracking:register_tracked(
         rabbit_connection_tracking:tracked_connection_from_connection_created(Details)),
io:format("ended listed ~p (listed ~b, open ~b)~n",
          [rabbit_connection_tracking:lookup(Name) =/= not_found,
           rabbit_connection_tracking:count(), length(rabbit_networking:connections())]).'"#);
    // Looked up by its name: a readiness probe's short connection may be listed after its end
    // too (what this test is about), so the counts alone say nothing about this entry.
    assert!(
        listed.contains("ended listed true"),
        "the ended connection is not listed: {listed}"
    );
    c.stop();
    assert_eq!(c.inspect("{{.State.ExitCode}}"), "0", "{}", c.logs());
    let logs = c.logs();
    assert!(
        logs.contains("[rabbitmq]") && logs.contains("stopping rabbitmq"),
        "{logs}"
    );
    // Only this warning is looked for: the daemon's worker, stopped here right after the start,
    // may still be starting and close its connection without the protocol's close, which
    // RabbitMQ reports as a warning of its own (see the healthy test above).
    let stale: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("Was it already closed"))
        .collect();
    assert!(
        stale.is_empty(),
        "RabbitMQ's stop warned of a connection it still listed:\n{}\n--- docker logs ---\n{logs}",
        stale.join("\n")
    );
}
