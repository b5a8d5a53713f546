//! Plugin repositories for the `init`, `up` and `doctor` tests: copies of the sample plugin or of
//! a real plugin's source distribution, the `aiida-devc` binary, and the reference CLI run on
//! them, with the containers and volumes they create removed at the end.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

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
        let out = self.devcontainer(&args, env);
        let stdout = text(&out.stdout);
        assert!(
            out.status.success(),
            "{cmd:?} failed:\n{stdout}\n{}",
            text(&out.stderr)
        );
        stdout
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
