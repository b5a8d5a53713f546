//! Plugin repositories for the `init`, `up` and `doctor` tests: copies of the sample plugin or of
//! a real plugin's source distribution, the `aiida-devc` binary, and the reference CLI run on
//! them, with the containers and volumes they create removed at the end; and the steps every
//! end-to-end test takes on them (commit, `init`, `doctor`, `up`, `verdi status` all green).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use super::collections::Run;
use super::{Harness, project_root};

/// The sample plugin kept in the repository.
pub fn sample_plugin() -> PathBuf {
    project_root().join("tests/fixtures/aiida-sample-plugin")
}

/// A proxy that refuses at once. `init` reads the published image tags from a registry (Docker
/// Hub by default); through this proxy it cannot, and falls back to the built-in releases and the
/// local images, so that the tests pick the same image on every machine, online or not.
pub const OFFLINE_PROXY: &str = "http://localhost:1";

/// `aiida-devc ARGS` in `cwd`, with `env` added; `init` runs behind [`OFFLINE_PROXY`] unless
/// `env` sets `HTTPS_PROXY`.
pub fn aiida_devc(cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_aiida-devc"));
    if args.contains(&"init") {
        command
            .env("HTTPS_PROXY", OFFLINE_PROXY)
            .env("https_proxy", OFFLINE_PROXY);
    }
    command
        .current_dir(cwd)
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("run aiida-devc")
}

/// Give a tree to `uid:gid`.
pub fn chown_tree(path: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::lchown(path, Some(uid), Some(gid)).unwrap();
    if path.is_dir() && !path.is_symlink() {
        for entry in std::fs::read_dir(path).unwrap() {
            chown_tree(&entry.unwrap().path(), uid, gid);
        }
    }
}

/// `git ARGS` in `dir`, with a committer identity; panics when it fails.
pub fn git(dir: &Path, args: &[&str]) {
    let out = Command::new("git")
        .current_dir(dir)
        .args([
            "-c",
            "user.name=aiida-devc test",
            "-c",
            "user.email=test@aiida-devc.invalid",
        ])
        .args(args)
        .output()
        .expect("run git");
    assert!(out.status.success(), "git {args:?}: {}", text(&out.stderr));
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The CA option as a developer passes it: `AIIDA_DEVC_CA_CERT` naming the bundle in use, when
/// there is one (behind a TLS-intercepting proxy).
pub struct CaEnv(Option<String>);

impl CaEnv {
    pub fn of_host() -> CaEnv {
        CaEnv(super::ca_bundle().map(|b| b.path.to_string_lossy().into_owned()))
    }

    /// The variables to add to a command's environment.
    pub fn vars(&self) -> Vec<(&str, &str)> {
        self.0
            .iter()
            .map(|p| ("AIIDA_DEVC_CA_CERT", p.as_str()))
            .collect()
    }
}

/// Every line of `verdi status` that reports a component is a ✔, and each of `components`
/// (`storage`, `broker`, `daemon`) is one of them.
pub fn assert_verdi_all_green(status: &str, components: &[&str]) {
    let lines: Vec<&str> = status
        .lines()
        .filter(|l| l.contains('✔') || l.contains('✘') || l.contains('⏺'))
        .collect();
    assert!(lines.len() >= 5, "verdi status is incomplete:\n{status}");
    assert!(
        lines.iter().all(|l| l.trim_start().starts_with('✔')),
        "verdi status is not all green:\n{status}"
    );
    for component in components {
        assert!(
            lines.iter().any(|l| l.contains(component)),
            "no {component} line:\n{status}"
        );
    }
}

/// A plugin repository in a temporary folder, brought up with the reference CLI. On drop the
/// containers the CLI made for it, their home volumes and the images the CLI tagged for it are
/// removed.
pub struct PluginWorkspace {
    pub dir: tempfile::TempDir,
    pub harness: Harness,
}

impl PluginWorkspace {
    pub fn new() -> PluginWorkspace {
        let dir = tempfile::Builder::new()
            .prefix("aiida-devc-plugin-")
            .tempdir()
            .unwrap();
        PluginWorkspace {
            dir,
            harness: Harness::new(),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `devcontainer SUBCOMMAND --workspace-folder DIR REST...` with `env` added.
    pub fn devcontainer(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        super::devcontainer_in(self.path(), args, env)
    }

    /// `devcontainer exec CMD` and its stdout; panics with both streams when it fails.
    pub fn exec(&self, cmd: &[&str], env: &[(&str, &str)]) -> String {
        let mut args = vec!["exec"];
        args.extend_from_slice(cmd);
        Run::from(self.devcontainer(&args, env))
            .ok(&format!("{cmd:?}"))
            .stdout
    }

    /// The container the CLI made for this workspace.
    pub fn container(&self) -> String {
        let label = format!("devcontainer.local_folder={}", self.path().display());
        let ids = self.harness.containers_with_label(&label);
        assert_eq!(
            ids.len(),
            1,
            "expected one container for {}: {ids:?}",
            self.path().display()
        );
        ids[0].clone()
    }

    /// Give the tree to `uid:gid`, as a developer's own checkout would be.
    pub fn chown(&self, uid: u32, gid: u32) {
        chown_tree(self.path(), uid, gid);
    }

    /// Commit the tree in a fresh git repository and give it to the image user's UID, as a
    /// developer's own checkout would be.
    pub fn commit_as_checkout(&self, message: &str) {
        git(self.path(), &["init", "--quiet"]);
        git(self.path(), &["add", "--all"]);
        git(self.path(), &["commit", "--quiet", "--message", message]);
        self.chown(1000, 100);
    }

    /// `aiida-devc init . ARGS` with `env` added, and what it printed; panics when it fails.
    pub fn init(&self, args: &[&str], env: &[(&str, &str)]) -> String {
        let mut all = vec!["init", "."];
        all.extend_from_slice(args);
        Run::from(aiida_devc(self.path(), &all, env))
            .ok("init")
            .stdout
    }

    /// `aiida-devc doctor .` finds no problem.
    pub fn assert_doctor_finds_nothing(&self, env: &[(&str, &str)]) {
        let doctor = aiida_devc(self.path(), &["doctor", "."], env);
        assert!(
            doctor.status.success(),
            "doctor finds problems in init's output:\n{}",
            text(&doctor.stdout)
        );
    }

    /// `devcontainer up`; panics when it fails, and prints how long it took (`what` says what
    /// it did).
    pub fn up(&self, env: &[(&str, &str)], what: &str) {
        let started = std::time::Instant::now();
        let up = self.devcontainer(&["up"], env);
        assert!(
            up.status.success(),
            "devcontainer up failed:\n{}\n{}",
            text(&up.stdout),
            text(&up.stderr)
        );
        eprintln!(
            "devcontainer up ({what}): {:.1} s",
            started.elapsed().as_secs_f64()
        );
    }
}

impl Drop for PluginWorkspace {
    fn drop(&mut self) {
        let label = format!("devcontainer.local_folder={}", self.path().display());
        for id in self.harness.containers_with_label(&label) {
            if let Ok(inspect) = self
                .harness
                .block_on(self.harness.docker().inspect_container(
                    &id,
                    None::<bollard::query_parameters::InspectContainerOptions>,
                ))
            {
                for mount in inspect.mounts.unwrap_or_default() {
                    if mount.typ.as_deref() == Some("volume") {
                        if let Some(name) = mount.name {
                            self.harness.track_volume(&name);
                        }
                    }
                }
            }
            self.harness.track_container(&id);
        }
        // The CLI tags a `vsc-<folder>-<hash>-uid` image per workspace (it shares the layers of
        // the image the config names, which stays).
        let prefix = format!(
            "vsc-{}-",
            self.path()
                .file_name()
                .unwrap()
                .to_string_lossy()
                .to_lowercase()
        );
        let images = self
            .harness
            .block_on(
                self.harness
                    .docker()
                    .list_images(None::<bollard::query_parameters::ListImagesOptions>),
            )
            .unwrap_or_default();
        for tag in images
            .into_iter()
            .flat_map(|i| i.repo_tags)
            .filter(|t| t.starts_with(&prefix))
        {
            self.harness.track_image(&tag);
        }
    }
}
