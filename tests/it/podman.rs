//! Rootless Podman, as a non-root user of this machine (made by `scripts/bootstrap.sh`): both
//! images under plain `podman run` (ready, services as `aiida`, `verdi status` all green,
//! `podman stop` clean); `aiida-devc up --docker-path podman` on the sample plugin through
//! the reference CLI (ready, the workspace writable by `aiida`, stop clean); and `doctor
//! --docker-path podman` naming the engine and reporting Podman's pitfalls with their fixes (a
//! user without subordinate IDs, a short image name Podman does not have, runArgs that defeat
//! keep-id), which also stop `up` before anything starts.
//!
//! The images come from the Docker engine (`docker save | podman load` into the user's storage).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::support::images::{base_image, with_services_image};
use crate::support::plugin_workspace::{
    CaEnv, assert_verdi_all_green, chown_tree, sample_plugin, text,
};
use crate::support::podman::{PodmanUser, USER, USER_WITHOUT_SUBIDS};
use crate::support::{Need, copy_tree, devcontainer_cli, skip_without};

/// `podman stop` of a ready container: exit 0 within Podman's 10 s; aiida-init got the SIGTERM
/// and stopped the daemon and the services itself, nothing was killed.
fn assert_stops_cleanly(user: &PodmanUser, container: &str, with_services: bool) {
    let started = Instant::now();
    user.podman_ok(&["stop", container]);
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(9),
        "podman stop took {took:?} (Podman kills at 10 s)"
    );
    let code = user.podman_ok(&["inspect", "--format", "{{.State.ExitCode}}", container]);
    assert_eq!(code.trim(), "0", "unclean exit");
    // Both streams through one pipe, so that their lines keep their order.
    let out = user
        .command("sh", Path::new(&user.home))
        .args(["-c", "podman logs \"$1\" 2>&1", "sh", container])
        .output()
        .expect("run podman logs");
    let logs = text(&out.stdout);
    let (_, stop) = logs
        .rsplit_once("received SIGTERM: shutting down")
        .unwrap_or_else(|| panic!("aiida-init did not get podman stop's SIGTERM:\n{logs}"));
    let daemon = [
        "stopping aiida-daemon",
        "aiida-daemon: stopped as requested",
    ];
    let services = [
        "stopping rabbitmq",
        "stopping postgresql",
        "database system is shut down",
    ];
    let expected = daemon
        .iter()
        .chain(services.iter().filter(|_| with_services));
    for expected in expected {
        assert!(
            stop.contains(expected),
            "no `{expected}` in the stop:\n{stop}"
        );
    }
    for bad in ["SIGKILL", "connection_forced"] {
        assert!(!stop.contains(bad), "`{bad}` in the stop:\n{stop}");
    }
}

/// Every process in the container runs as `aiida`, PID 1 (aiida-init) included.
fn assert_all_processes_are_aiidas(user: &PodmanUser, container: &str) {
    let users = user.podman_ok(&["exec", container, "ps", "-eo", "user=,pid=,args="]);
    assert!(
        users.lines().all(|l| l.trim_start().starts_with("aiida ")),
        "a process runs as another user than aiida:\n{users}"
    );
    assert!(
        users
            .lines()
            .any(|l| l.split_whitespace().nth(1) == Some("1") && l.contains("/init")),
        "aiida-init is not PID 1:\n{users}"
    );
}

/// A container of this user's Podman, removed (with its anonymous volumes) at the end.
struct PodmanContainer<'u> {
    user: &'u PodmanUser,
    name: String,
}

impl Drop for PodmanContainer<'_> {
    fn drop(&mut self) {
        let _ = self.user.podman(&["rm", "-f", "-v", "-t", "0", &self.name]);
    }
}

#[test]
fn the_with_services_image_runs_under_rootless_podman_and_stops_cleanly() {
    if skip_without(&[Need::Docker, Need::Podman]) {
        return;
    }
    runs_under_podman(&with_services_image(), true);
}

#[test]
fn the_base_image_runs_under_rootless_podman_and_stops_cleanly() {
    if skip_without(&[Need::Docker, Need::Podman]) {
        return;
    }
    runs_under_podman(&base_image(), false);
}

/// `podman run` of `image`: ready, every process `aiida`'s, `verdi status` all green (RabbitMQ
/// and PostgreSQL `with_services`, else SQLite and ZeroMQ), `podman stop` clean.
fn runs_under_podman(image: &str, with_services: bool) {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let user = PodmanUser::get(USER);
    user.load_from_docker(image);
    let c = PodmanContainer {
        user: &user,
        name: format!(
            "aiida-devc-test-podman-run-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ),
    };
    user.podman_ok(&["run", "-d", "--name", &c.name, image]);
    let started = Instant::now();
    let wait = user.podman(&["exec", &c.name, "aiida-init", "wait", "--timeout", "300"]);
    assert!(
        wait.status.success(),
        "not ready under podman: {}{}",
        text(&wait.stdout),
        text(&wait.stderr)
    );
    eprintln!(
        "ready under rootless podman {:?} after the exec began",
        started.elapsed()
    );
    assert_all_processes_are_aiidas(&user, &c.name);
    let status = user.podman_ok(&["exec", &c.name, "verdi", "status"]);
    let components: &[&str] = if with_services {
        &["storage", "broker", "daemon"]
    } else {
        &["storage", "daemon"]
    };
    assert_verdi_all_green(&status, components);
    assert_stops_cleanly(&user, &c.name, with_services);
}

/// A copy of the sample plugin owned by `user`, running `image`; what the reference CLI made for
/// it in the user's Podman is removed at the end.
struct Workspace<'u> {
    user: &'u PodmanUser,
    dir: tempfile::TempDir,
}

impl<'u> Workspace<'u> {
    fn new(user: &'u PodmanUser, image: &str) -> Workspace<'u> {
        let dir = tempfile::Builder::new()
            .prefix("aiida-devc-podman-")
            .tempdir()
            .unwrap();
        copy_tree(&sample_plugin(), dir.path());
        let config = dir.path().join(".devcontainer/devcontainer.json");
        let text = std::fs::read_to_string(&config).unwrap();
        let text = text.replace("aiidateam/aiida-core-with-services:aiida-2.9.4", image);
        std::fs::write(&config, text).unwrap();
        chown_tree(dir.path(), user.uid, user.gid);
        Workspace { user, dir }
    }

    fn path(&self) -> PathBuf {
        self.dir.path().to_owned()
    }

    /// `aiida-devc ARGS` as the user, in the workspace.
    fn aiida_devc(&self, args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
        self.user
            .command_with(env!("CARGO_BIN_EXE_aiida-devc"), self.dir.path(), env)
            .args(args)
            .output()
            .expect("run aiida-devc as the Podman user")
    }
}

impl Drop for Workspace<'_> {
    fn drop(&mut self) {
        self.user.remove_dev_containers(self.dir.path());
    }
}

#[test]
fn up_with_docker_path_podman_brings_the_sample_plugin_up_with_a_writable_workspace() {
    if skip_without(&[Need::Docker, Need::Podman, Need::DevcontainerCli]) {
        return;
    }
    let user = PodmanUser::get(USER);
    let image = with_services_image();
    user.load_from_docker(&image);
    let ws = Workspace::new(&user, &image);
    let cli = devcontainer_cli();
    let ca = CaEnv::of_host();

    let doctor = ws.aiida_devc(&["doctor", "--docker-path", "podman"], &ca.vars());
    let report = text(&doctor.stdout) + &text(&doctor.stderr);
    assert!(
        report.contains("Container engine: podman version") && report.contains("rootless"),
        "doctor does not name rootless Podman:\n{report}"
    );
    assert!(
        !report.contains("✘ [podman-"),
        "doctor finds a Podman problem on a machine where it works:\n{report}"
    );

    let started = Instant::now();
    let up = ws.aiida_devc(
        &[
            "up",
            "--docker-path",
            "podman",
            "--devcontainer-cli",
            cli.to_str().unwrap(),
        ],
        &ca.vars(),
    );
    let stdout = text(&up.stdout);
    assert!(
        up.status.success(),
        "aiida-devc up --docker-path podman failed:\n{stdout}{}",
        text(&up.stderr)
    );
    eprintln!(
        "aiida-devc up --docker-path podman: {:?}",
        started.elapsed()
    );
    assert_verdi_all_green(&stdout, &["storage", "broker", "daemon"]);

    let label = format!("label=devcontainer.local_folder={}", ws.path().display());
    let container = user.podman_ok(&["ps", "-q", "--filter", &label]);
    let container = container.trim();
    assert_eq!(container.lines().count(), 1, "not one dev container");
    assert_all_processes_are_aiidas(&user, container);
    // The workspace is writable by aiida, and what aiida writes belongs to the user on the host.
    let folder = format!(
        "/workspaces/{}",
        ws.path().file_name().unwrap().to_str().unwrap()
    );
    let written = user.podman_ok(&[
        "exec",
        "--user",
        "aiida",
        "--workdir",
        &folder,
        container,
        "sh",
        "-c",
        "id -un && touch written-by-aiida && mkdir -p .pytest_cache/v && echo ok",
    ]);
    assert_eq!(written, "aiida\nok\n");
    let meta = std::fs::metadata(ws.path().join("written-by-aiida")).unwrap();
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        meta.uid(),
        user.uid,
        "a file aiida wrote does not belong to the workspace's owner on the host"
    );
    // The plugin is installed in editable mode from the workspace.
    let module = user.podman_ok(&[
        "exec",
        "--user",
        "aiida",
        container,
        "python",
        "-c",
        "import aiida_sample_plugin; print(aiida_sample_plugin.__file__)",
    ]);
    assert!(
        module.starts_with(&format!("{folder}/")),
        "the plugin is not imported from the workspace: {module}"
    );
    assert_stops_cleanly(&user, container, true);
}

#[test]
fn doctor_under_podman_reports_its_pitfalls_and_up_stops_before_starting() {
    if skip_without(&[Need::Podman]) {
        return;
    }
    // A user with subordinate IDs, an image Podman does not have under a short name, and runArgs
    // that keep the reference CLI from adding --userns=keep-id.
    let user = PodmanUser::get(USER);
    let ws = Workspace::new(&user, "aiidateam/aiida-devc-never-loaded:1");
    let config = ws.path().join(".devcontainer/devcontainer.json");
    let text_before = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text_before.replace(
            "\"overrideCommand\": false,",
            "\"overrideCommand\": false,\n  \"runArgs\": [\"--userns=auto\"],",
        ),
    )
    .unwrap();
    let doctor = ws.aiida_devc(&["doctor", "--docker-path", "podman"], &[]);
    let report = text(&doctor.stdout) + &text(&doctor.stderr);
    assert!(!doctor.status.success(), "doctor found nothing:\n{report}");
    assert!(
        report.contains("Container engine: podman version"),
        "{report}"
    );
    for expected in [
        "✘ [podman-short-name]",
        "docker.io/aiidateam/aiida-devc-never-loaded:1",
        "✘ [podman-keep-id]",
        "devcontainer.json:",
        "remove --userns=auto from runArgs",
    ] {
        assert!(report.contains(expected), "no `{expected}` in:\n{report}");
    }
    assert!(!report.contains("[podman-subids]"), "{report}");

    // A user without subordinate IDs: doctor says which file and which command, up stops at once.
    let lonely = PodmanUser::get(USER_WITHOUT_SUBIDS);
    let ws = Workspace::new(&lonely, &with_services_image());
    let doctor = ws.aiida_devc(&["doctor", "--docker-path", "podman"], &[]);
    let report = text(&doctor.stdout) + &text(&doctor.stderr);
    assert!(!doctor.status.success(), "doctor found nothing:\n{report}");
    for expected in [
        "✘ [podman-subids] /etc/subuid gives aiida-devc-nosubids no range",
        "`usermod --add-subuids ",
        "-",
        " aiida-devc-nosubids` (a range no other user has)",
        "/etc/subgid gives aiida-devc-nosubids no range",
        "podman system migrate",
    ] {
        assert!(report.contains(expected), "no `{expected}` in:\n{report}");
    }
    let started = Instant::now();
    let up = ws.aiida_devc(&["up", "--docker-path", "podman"], &[]);
    let stderr = text(&up.stderr);
    assert!(!up.status.success(), "up went ahead:\n{stderr}");
    assert!(
        stderr.contains("rootless Podman cannot start containers on this machine")
            && stderr.contains("usermod --add-subuids"),
        "{stderr}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "up did not stop before starting anything"
    );
}
