//! A Codespaces prebuild, simulated with the reference CLI: `aiida-devc init` on a copy of the
//! sample plugin, `devcontainer up --prebuild` (onCreateCommand and updateContentCommand only,
//! as a prebuild runs them), then `docker commit` of that container. New containers from the
//! committed image are started as a codespace would be (the image's entry point, the workspace
//! mounted where it was, then postStartCommand `aiida-init wait`):
//! * with a copy of the prebuild's home volume (a codespace gets the whole snapshot, volumes
//!   included): ready, the plugin importable and run by the daemon, nothing reinstalled, and its
//!   own Erlang cookie and database password (the profile still works with it);
//! * with a new, empty home volume (as a new `${devcontainerId}` would get): ready, with the
//!   plugin installed in the committed image.
//!
//! Needs the images (`aiida-devc images build`; `AIIDA_DEVC_IMAGE_PREFIX` for another
//! organization), the reference CLI, and PyPI for the plugin's test extra (through the CA option
//! behind a TLS-intercepting proxy).

use std::time::Instant;

use crate::support::images::{Container, Start, docker, text as docker_text, with_services_image};
use crate::support::plugin_workspace::{
    CaEnv, PluginWorkspace, assert_verdi_all_green, sample_plugin, text,
};
use crate::support::{Need, copy_tree, skip_without, unique_name};

/// The container's secrets, each read where it lives.
#[derive(Debug, PartialEq, Eq)]
struct Secrets {
    erlang_cookie: String,
    /// The password stored in the profile.
    profile_password: String,
    /// The role's password hash in PostgreSQL.
    role_password: String,
}

const READ_SECRETS: &str = r#"set -e
cat ~/.erlang.cookie; echo
python -c 'import json; c = json.load(open("/home/aiida/.aiida/config.json")); print(c["profiles"]["default"]["storage"]["config"]["database_password"])'
psql -X -q -A -t -c "SELECT rolpassword FROM pg_authid WHERE rolname = 'aiida-default'"
"#;

fn secrets_of(container: &str) -> Secrets {
    let out = docker(&["exec", container, "bash", "-c", READ_SECRETS]);
    assert!(
        out.status.success(),
        "reading the secrets of {container}: {}",
        docker_text(&out)
    );
    let stdout = text(&out.stdout);
    let lines: Vec<&str> = stdout.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 3, "{stdout}");
    Secrets {
        erlang_cookie: lines[0].into(),
        profile_password: lines[1].into(),
        role_password: lines[2].into(),
    }
}

/// The sample plugin's work chain, submitted to the daemon; waits (120 s at most).
const SUBMIT_AND_WAIT: &str = r#"
import time
from aiida import load_profile, orm
from aiida.engine import submit
from aiida.plugins import WorkflowFactory
load_profile()
node = submit(WorkflowFactory("sample.multiply_add"), x=orm.Int(2), y=orm.Int(3), z=orm.Int(4))
deadline = time.time() + 120
while not node.is_terminated and time.time() < deadline:
    time.sleep(0.5)
result = node.outputs.result.value if node.is_finished_ok else node.process_state
print(f"finished_ok={node.is_finished_ok} result={result}")
"#;

/// The PID of the daemon service in `container` (none when it is down).
fn daemon_pid(container: &str) -> Option<i64> {
    let out = docker(&["exec", container, "aiida-init", "status", "--json"]);
    assert!(out.status.success(), "{}", docker_text(&out));
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).expect("status as JSON");
    status["services"]
        .as_array()
        .expect("a list of services")
        .iter()
        .find(|s| s["name"] == "aiida-daemon")
        .expect("an aiida-daemon service")["pid"]
        .as_i64()
}

/// The `-v` arguments of the prebuild container's bind mounts (the workspace, the CA bundle), as
/// the new container must have them.
fn bind_mounts(container: &str) -> Vec<String> {
    let out = docker(&[
        "inspect",
        "-f",
        "{{range .Mounts}}{{if eq .Type \"bind\"}}{{.Source}}:{{.Destination}}\n{{end}}{{end}}",
        container,
    ]);
    assert!(out.status.success(), "{}", docker_text(&out));
    text(&out.stdout)
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The environment the CLI gave the container beyond the image's (the CA variables), as `-e`.
fn container_env(container: &str, image: &str) -> Vec<String> {
    let of = |what: &str, format: &str| {
        let out = docker(&["inspect", "-f", format, what]);
        assert!(out.status.success(), "{}", docker_text(&out));
        text(&out.stdout)
            .lines()
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    let image_env = of(image, "{{range .Config.Env}}{{println .}}{{end}}");
    of(container, "{{range .Config.Env}}{{println .}}{{end}}")
        .into_iter()
        .filter(|e| !e.is_empty() && !image_env.contains(e))
        .collect()
}

/// A container of the committed `snapshot`, started as a codespace is: its entry point, the
/// prebuild's bind mounts and environment, `home` on /home/aiida; then postStartCommand.
fn start_from_snapshot<'h>(
    ws: &'h PluginWorkspace,
    snapshot: &str,
    prebuild: &str,
    home: &str,
) -> (Container<'h>, f64) {
    let mut start = Start::with_home(home);
    start.volumes.extend(bind_mounts(prebuild));
    start.env = container_env(prebuild, &with_services_image());
    let started = Instant::now();
    let c = Container::start(&ws.harness, snapshot, start);
    c.wait_ready();
    (c, started.elapsed().as_secs_f64())
}

/// Ready, verdi all green, the plugin importable, registered and run by the daemon, and no
/// install in the container's log.
fn assert_ready_with_the_plugin(c: &Container) {
    assert_verdi_all_green(&c.sh("verdi status 2>&1"), &["storage", "broker", "daemon"]);
    let plugins = c.sh("verdi plugin list aiida.workflows");
    assert!(plugins.contains("sample.multiply_add"), "{plugins}");
    c.sh("python -c 'import aiida_sample_plugin'");
    let (code, submitted) = c.exec(&["python", "-c", SUBMIT_AND_WAIT]);
    assert_eq!(code, 0, "{submitted}");
    assert!(
        submitted.trim_end().ends_with("finished_ok=True result=10"),
        "{submitted}"
    );
    let logs = c.logs();
    for install in [
        "pip install",
        "uv pip",
        "Successfully installed",
        "Installed ",
    ] {
        assert!(
            !logs.contains(install),
            "the new container installed again ({install:?}):\n{logs}"
        );
    }
}

/// What Codespaces keeps of a prebuild: the stopped `container` committed to an image, and its
/// home volume copied into a new one. Returns both names (removed when the test ends).
fn take_snapshot(ws: &PluginWorkspace, container: &str, image: &str) -> (String, String) {
    let stop = docker(&["stop", "-t", "30", container]);
    assert!(stop.status.success(), "{}", docker_text(&stop));
    let snapshot = format!("{}:snapshot", unique_name("prebuild"));
    ws.harness.track_image(&snapshot);
    let commit = docker(&["commit", container, &snapshot]);
    assert!(commit.status.success(), "{}", docker_text(&commit));
    let prebuild_home = docker(&[
        "inspect",
        "-f",
        "{{range .Mounts}}{{if eq .Destination \"/home/aiida\"}}{{.Name}}{{end}}{{end}}",
        container,
    ]);
    let prebuild_home = text(&prebuild_home.stdout).trim().to_owned();
    assert!(
        !prebuild_home.is_empty(),
        "no home volume on the prebuild container"
    );
    let home = unique_name("prebuild-home");
    ws.harness.track_volume(&home);
    let copy = docker(&[
        "run",
        "--rm",
        "--user",
        "0",
        "--entrypoint",
        "cp",
        "-v",
        &format!("{prebuild_home}:/from:ro"),
        "-v",
        &format!("{home}:/to"),
        image,
        "-a",
        "/from/.",
        "/to/",
    ]);
    assert!(copy.status.success(), "{}", docker_text(&copy));
    (snapshot, home)
}

#[test]
fn a_prebuild_snapshot_starts_ready_with_the_plugin_and_its_own_secrets() {
    if skip_without(&[Need::Docker, Need::DevcontainerCli]) {
        return;
    }
    let image = with_services_image();
    let ws = PluginWorkspace::new();
    ws.harness.require_image(&image);
    copy_tree(&sample_plugin(), ws.path());
    ws.commit_as_checkout("the sample plugin");
    let ca = CaEnv::of_host();
    let env = ca.vars();
    ws.init(&["--image", &image], &env);
    let config =
        std::fs::read_to_string(ws.path().join(".devcontainer/devcontainer.json")).unwrap();
    assert!(config.contains("\"updateContentCommand\""), "{config}");
    assert!(!config.contains("\"postCreateCommand\""), "{config}");
    assert!(config.contains("\"onAutoForward\": \"ignore\""), "{config}");

    // The prebuild: what Codespaces runs before it snapshots the container.
    let started = Instant::now();
    let prebuild = ws.devcontainer(&["up", "--prebuild"], &env);
    let log = text(&prebuild.stdout) + &text(&prebuild.stderr);
    assert!(
        prebuild.status.success(),
        "devcontainer up --prebuild:\n{log}"
    );
    let container = ws.container();
    let waited = docker(&["exec", &container, "aiida-init", "wait", "--timeout", "300"]);
    assert!(waited.status.success(), "{}", docker_text(&waited));
    eprintln!(
        "prebuild (create, install in updateContentCommand, ready): {:.1} s",
        started.elapsed().as_secs_f64()
    );
    // A content update (the prebuild run again) with the daemon running: the install is redone
    // and the daemon restarted, so it loads the plugin as installed now, without a traceback.
    let before = daemon_pid(&container).expect("the daemon runs");
    let again = ws.devcontainer(&["up", "--prebuild"], &env);
    let again_log = text(&again.stdout) + &text(&again.stderr);
    assert!(
        again.status.success(),
        "devcontainer up --prebuild, again:\n{again_log}"
    );
    assert!(again_log.contains("updateContentCommand"), "{again_log}");
    assert!(!again_log.contains("Traceback"), "{again_log}");
    let after = daemon_pid(&container);
    assert!(
        after.is_some_and(|pid| pid != before),
        "the daemon was not restarted ({before} before, {after:?} after):\n{again_log}"
    );
    let snapshot_secrets = secrets_of(&container);
    // No image layer holds an SSH host key (the images run no SSH server).
    let keys = docker(&[
        "exec",
        &container,
        "bash",
        "-c",
        "ls /etc/ssh/ssh_host_* 2>/dev/null | wc -l",
    ]);
    assert_eq!(text(&keys.stdout).trim(), "0", "SSH host keys in the image");

    // The snapshot: the stopped container committed, its home volume copied.
    let (snapshot, home) = take_snapshot(&ws, &container, &image);

    // A codespace from the snapshot: the prebuild's home, its own secrets.
    let (codespace, took) = start_from_snapshot(&ws, &snapshot, &container, &home);
    eprintln!("a container from the snapshot (its home copied), ready in {took:.1} s");
    assert_ready_with_the_plugin(&codespace);
    let secrets = secrets_of(&codespace.name);
    assert_ne!(
        secrets.erlang_cookie, snapshot_secrets.erlang_cookie,
        "the Erlang cookie is shared"
    );
    assert_ne!(
        secrets.profile_password, snapshot_secrets.profile_password,
        "the database password is shared"
    );
    assert_ne!(
        secrets.role_password, snapshot_secrets.role_password,
        "the database role kept the snapshot's password"
    );
    // A restart of the same container keeps its secrets.
    codespace.stop();
    codespace.start_again();
    codespace.wait_ready();
    assert_eq!(
        secrets_of(&codespace.name),
        secrets,
        "a restart changed the secrets"
    );

    // A container from the snapshot with a new, empty home: the plugin is in the image.
    let fresh = unique_name("prebuild-fresh-home");
    let (fresh_codespace, took) = start_from_snapshot(&ws, &snapshot, &container, &fresh);
    eprintln!("a container from the snapshot (a new home volume), ready in {took:.1} s");
    assert_ready_with_the_plugin(&fresh_codespace);
    let fresh_secrets = secrets_of(&fresh_codespace.name);
    assert_ne!(fresh_secrets.erlang_cookie, snapshot_secrets.erlang_cookie);
    assert_ne!(
        fresh_secrets.profile_password,
        snapshot_secrets.profile_password
    );
}
