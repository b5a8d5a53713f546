//! aiida-init as `/init` inside Docker containers from the base image, with the binary
//! bind-mounted: as root and as an unprivileged user (with /run not writable), `docker exec`
//! of `status`, `wait` and the `/command` names, `docker stop` without any fixed grace sleep,
//! and `docker run --init` (tini as PID 1, aiida-init as PID 2).

use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::Tree;
use crate::support::{Containers, base_image};

fn docker(args: &[&str]) -> std::process::Output {
    Command::new("docker")
        .args(args)
        .output()
        .expect("run the docker CLI")
}

fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A tree with a oneshot and a longrun that notifies readiness through `data/check`.
fn service_tree() -> Tree {
    let tree = Tree::new();
    tree.oneshot("prepare", "#!/command/execlineb -P\nwith-contenv\nforeground { s6-echo preparing }\nsh -c \"echo GREETING=$GREETING > /tmp/prepared\"\n", Some("s6-echo cleaning up\n"), &["base"]);
    tree.file("server", "type", "longrun\n")
        .exec("server", "run", "#!/command/execlineb -P\nfdmove -c 2 1\ns6-notifyoncheck -w 100\nsh -c \"echo serving; sleep 0.3; touch /tmp/listening; exec sleep 1000\"\n")
        .file("server", "notification-fd", "3\n")
        .exec("server", "data/check", "#!/bin/sh\ntest -e /tmp/listening\n")
        .file("server", "dependencies.d/prepare", "")
        .user("server");
    tree
}

/// `docker run -d` with the binary as /init and the tree as /etc/s6-overlay.
fn start(containers: &Containers, tree: &Tree, extra: &[&str], cmd: &[&str]) -> String {
    let name = containers.new_name("docker");
    let bin = crate::support::bin();
    let mut args: Vec<String> = vec!["run".into(), "-d".into(), "--name".into(), name.clone()];
    args.push("-v".into());
    args.push(format!("{}:/init:ro", bin.display()));
    args.push("-v".into());
    args.push(format!("{}:/usr/local/bin/aiida-init:ro", bin.display()));
    args.push("-v".into());
    args.push(format!(
        "{}:/etc/s6-overlay:ro",
        tree.path().join("root/etc/s6-overlay").display()
    ));
    args.extend(["-e".into(), "GREETING=hello".into()]);
    args.extend(extra.iter().map(ToString::to_string));
    args.push(base_image());
    args.push("/init".into());
    args.extend(cmd.iter().map(ToString::to_string));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = docker(&refs);
    assert!(out.status.success(), "docker run: {}", text(&out));
    name
}

/// `docker stop` the container and assert that it exited 0 in under 3 s; returns its logs.
fn stop_cleanly_and_quickly(name: &str) -> String {
    let t = Instant::now();
    let out = docker(&["stop", "-t", "10", name]);
    let took = t.elapsed();
    assert!(out.status.success(), "{}", text(&out));
    let code = docker(&["inspect", "-f", "{{.State.ExitCode}}", name]);
    let code: i32 = String::from_utf8_lossy(&code.stdout)
        .trim()
        .parse()
        .unwrap();
    let logs = text(&docker(&["logs", name]));
    assert_eq!(code, 0, "{logs}");
    assert!(
        took < Duration::from_secs(3),
        "docker stop took {took:?}:\n{logs}"
    );
    logs
}

#[test]
fn in_a_container_as_root_services_come_up_and_docker_stop_is_quick() {
    let Some(h) = Containers::new() else {
        return;
    };
    let tree = service_tree();
    let name = start(&h, &tree, &[], &[]);
    let wait = docker(&["exec", &name, "aiida-init", "wait", "--timeout", "20"]);
    assert!(wait.status.success(), "{}", text(&wait));
    let status = docker(&["exec", &name, "aiida-init", "status"]);
    let s = text(&status);
    assert!(
        s.contains("server") && s.contains("ready") && s.contains("prepare"),
        "{s}"
    );
    let prepared = docker(&["exec", &name, "cat", "/tmp/prepared"]);
    assert_eq!(
        String::from_utf8_lossy(&prepared.stdout),
        "GREETING=hello\n"
    );
    // The /command names, installed in one step, work from `docker exec`.
    let cmds = docker(&[
        "exec",
        &name,
        "sh",
        "-c",
        "aiida-init install-commands /command >/dev/null && /command/s6-echo linked && /command/printcontenv GREETING && /command/with-contenv sh -c 'echo $GREETING'",
    ]);
    assert_eq!(
        String::from_utf8_lossy(&cmds.stdout),
        "linked\nhello\nhello\n",
        "{}",
        text(&cmds)
    );
    let logs = stop_cleanly_and_quickly(&name);
    assert!(
        logs.contains("[prepare] preparing")
            && logs.contains("[server] serving")
            && logs.contains("[prepare] cleaning up"),
        "{logs}"
    );
}

#[test]
fn in_a_container_as_nobody_with_run_not_writable() {
    let Some(h) = Containers::new() else {
        return;
    };
    let tree = service_tree();
    let name = start(&h, &tree, &["--user", "65534:65534"], &[]);
    // `docker exec` as root, with none of the instance's environment, still finds it.
    let wait = docker(&[
        "exec",
        "-u",
        "0",
        &name,
        "aiida-init",
        "wait",
        "--timeout",
        "20",
    ]);
    assert!(wait.status.success(), "{}", text(&wait));
    let state = docker(&[
        "exec",
        "-u",
        "0",
        &name,
        "ls",
        "/tmp/aiida-init-65534/aiida-init/state.json",
    ]);
    assert!(
        state.status.success(),
        "the runtime directory falls back to /tmp/aiida-init-UID: {}",
        text(&state)
    );
    let run_files = docker(&["exec", &name, "sh", "-c", "ls -A /run"]);
    assert!(
        !String::from_utf8_lossy(&run_files.stdout).contains("aiida-init"),
        "{}",
        text(&run_files)
    );
    stop_cleanly_and_quickly(&name);
}

#[test]
fn in_a_container_under_docker_init_and_with_a_command() {
    let Some(h) = Containers::new() else {
        return;
    };
    let tree = service_tree();
    // tini (docker-init) is PID 1, aiida-init PID 2: no "can only run as pid 1".
    let name = start(
        &h,
        &tree,
        &["--init"],
        &["sh", "-c", "cat /tmp/prepared; exit 5"],
    );
    let wait = docker(&["wait", &name]);
    assert_eq!(
        String::from_utf8_lossy(&wait.stdout).trim(),
        "5",
        "{}",
        text(&docker(&["logs", &name]))
    );
    let logs = text(&docker(&["logs", &name]));
    assert!(
        logs.contains("GREETING=hello") && logs.contains("not PID 1"),
        "{logs}"
    );
}
