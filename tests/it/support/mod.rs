//! Support for the integration tests: the real Docker engine, the base image, the CA bundle and
//! the reference devcontainer CLI, with everything a test creates removed when it ends, also when
//! it fails.
//!
//! Tiers: a test that needs a Docker engine or a host tool starts with
//! `if support::skip_without(&[Need::Docker]) { return; }`. Where it is missing, the test
//! prints one line saying it did not run and why, and passes, so that `cargo test` on a laptop
//! runs the unit, snapshot and property tests; with `AIIDA_DEVC_REQUIRE_PREREQUISITES=1` (which
//! `scripts/test.sh` sets) or `CI=true`, it fails instead, so CI never skips silently. Any other
//! missing prerequisite (a base image, a registry binary) fails the test with a message that
//! says how to get it (`bash scripts/bootstrap.sh`).
//!
//! ```ignore
//! mod support;
//! let h = support::Harness::new();
//! let out = h.run(support::base_image(), &["echo", "hi"], support::RunOptions::default());
//! assert_eq!(out.stdout, "hi\n");
//! ```
#![allow(dead_code)] // each test binary uses a different part of this module

pub mod collections;
// The decision what a missing prerequisite does, shared with aiida-init's tests.
pub mod compose;
pub mod images;
pub mod plugin_workspace;
pub mod podman;
#[path = "../../../crates/aiida-init/tests/it/support/prerequisites.rs"]
pub mod prerequisites;
pub mod registry;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use bollard::Docker;
use bollard::models::{ContainerCreateBody, HostConfig};
use bollard::query_parameters::{
    CreateContainerOptions, ListContainersOptions, LogsOptions, RemoveContainerOptions,
    RemoveImageOptions, RemoveVolumeOptions, WaitContainerOptions,
};
use futures_util::StreamExt;

/// The reference CLI builds Feature images through one fixed tag
/// (`dev_container_feature_content_temp`), so two of its builds at once break each other ("COPY
/// failed: stat tmp/build-features/<feature>_0"): every test that makes it build Features
/// (`devcontainer up` or `features test` of a config with Features) holds this turn meanwhile.
pub fn feature_builds() -> std::sync::MutexGuard<'static, ()> {
    static FEATURE_BUILDS: std::sync::Mutex<()> = std::sync::Mutex::new(());
    FEATURE_BUILDS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The project's root (where Cargo.toml is).
pub fn project_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The image every test container starts from, unless a test needs one of ours.
pub fn base_image() -> String {
    std::env::var("AIIDA_DEVC_BASE_IMAGE").unwrap_or_else(|_| "debian:bookworm".into())
}

/// The CA bundle the tool would use (same rule as `--ca-cert`, from `AIIDA_DEVC_CA_CERT`).
pub fn ca_bundle() -> Option<aiida_devc::host::ca::CaBundle> {
    let option = std::env::var_os("AIIDA_DEVC_CA_CERT").map(PathBuf::from);
    aiida_devc::host::ca::Ca::resolve(option.as_deref())
        .expect("the CA bundle option is invalid")
        .bundle()
        .cloned()
}

/// The reference devcontainer CLI installed by the bootstrap (or `DEVCONTAINER_CLI`).
pub fn devcontainer_cli() -> PathBuf {
    let path = devcontainer_cli_path();
    require(
        path.is_file(),
        &format!("the reference devcontainer CLI at {}", path.display()),
    );
    path
}

fn devcontainer_cli_path() -> PathBuf {
    std::env::var_os("DEVCONTAINER_CLI").map_or_else(
        || project_root().join(".tools/devcontainer-cli/node_modules/.bin/devcontainer"),
        PathBuf::from,
    )
}

/// Copy a folder tree (files keep their modes).
pub fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// Run the reference CLI on a workspace folder:
/// `devcontainer <subcommand> --workspace-folder <workspace> <rest>`, with `env` added.
pub fn devcontainer_in(
    workspace: &Path,
    args: &[&str],
    env: &[(&str, &str)],
) -> std::process::Output {
    let (subcommand, rest) = args.split_first().expect("a devcontainer subcommand");
    Command::new(devcontainer_cli())
        .arg(subcommand)
        .arg("--workspace-folder")
        .arg(workspace)
        .args(rest)
        .envs(env.iter().copied())
        .output()
        .expect("run the reference devcontainer CLI")
}

/// Checks `condition` every `every` until it holds (true) or `ceiling` has passed (false): for
/// waits on real state, with a ceiling far above what a quiet machine needs.
pub fn poll_until(ceiling: Duration, every: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + ceiling;
    loop {
        if condition() {
            return true;
        }
        if std::time::Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(every);
    }
}

/// What a test needs from the machine, beyond Rust and the Debian tools every test uses.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Need {
    /// A Docker engine that answers (`DOCKER_HOST` or the local socket).
    Docker,
    /// The reference devcontainer CLI ([`devcontainer_cli`]).
    DevcontainerCli,
    /// actionlint, installed by the bootstrap.
    Actionlint,
    /// ruff (.tools/ruff) and shellcheck (on PATH), installed by the bootstrap.
    ScriptLinters,
    /// Rootless Podman and the bootstrap's users for it, driven as root ([`podman`]).
    Podman,
}

/// Why `need` is missing on this machine, if it is.
fn missing(need: Need) -> Option<String> {
    match need {
        Need::Docker => {
            static ENGINE: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
            ENGINE
                .get_or_init(|| {
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .unwrap();
                    rt.block_on(aiida_devc::host::docker::connect())
                        .err()
                        .map(|_| "no Docker engine answers".to_owned())
                })
                .clone()
        }
        Need::DevcontainerCli => {
            let path = devcontainer_cli_path();
            (!path.is_file()).then(|| format!("no devcontainer CLI at {}", path.display()))
        }
        Need::Actionlint => {
            let path = project_root().join(".tools/actionlint/bin/actionlint");
            (!path.is_file()).then(|| format!("no actionlint at {}", path.display()))
        }
        Need::Podman => podman::missing(),
        Need::ScriptLinters => {
            let ruff = project_root().join(".tools/ruff/bin/ruff");
            if !ruff.is_file() {
                Some(format!("no ruff at {}", ruff.display()))
            } else if Command::new("shellcheck")
                .arg("--version")
                .output()
                .is_err()
            {
                Some("no shellcheck on PATH".to_owned())
            } else {
                None
            }
        }
    }
}

/// True when the test must not run because something in `needs` is missing: it then prints one
/// line saying so (the caller returns). With [`prerequisites::required`], it fails the test
/// instead.
#[must_use]
pub fn skip_without(needs: &[Need]) -> bool {
    let Some(why) = needs.iter().find_map(|&need| missing(need)) else {
        return false;
    };
    prerequisites::skip(&why);
    true
}

/// Fail the test when a prerequisite is missing (only [`skip_without`] skips).
pub fn require(present: bool, what: &str) {
    assert!(
        present,
        "missing prerequisite: {what}. Run `bash scripts/bootstrap.sh` (as root) first."
    );
}

/// A name no other test (or test run) uses: `aiida-devc-test-<what>-<pid>-<n>`.
pub fn unique_name(what: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("aiida-devc-test-{what}-{}-{n}", std::process::id())
}

/// Options for [`Harness::run`].
#[derive(Debug, Default, Clone)]
pub struct RunOptions {
    /// `host:container[:ro]` bind mounts.
    pub binds: Vec<String>,
    /// `KEY=VALUE` environment.
    pub env: Vec<String>,
    /// User to run as (`uid[:gid]` or a name).
    pub user: Option<String>,
}

/// What a finished container left.
#[derive(Debug)]
pub struct RunOutput {
    pub exit_code: i64,
    pub stdout: String,
    pub stderr: String,
}

/// One test's connection to the engine, and the things it created.
///
/// Everything registered with [`Harness::track_container`], [`Harness::track_volume`] or
/// [`Harness::track_image`] (and every container [`Harness::run`] makes) is removed on drop.
pub struct Harness {
    rt: tokio::runtime::Runtime,
    docker: Docker,
    containers: Mutex<Vec<String>>,
    volumes: Mutex<Vec<String>>,
    networks: Mutex<Vec<String>>,
    images: Mutex<Vec<String>>,
}

impl Harness {
    /// Connect to the engine; fails the test when none answers.
    pub fn new() -> Harness {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let docker = rt
            .block_on(aiida_devc::host::docker::connect())
            .unwrap_or_else(|e| panic!("missing prerequisite: {e:#}"));
        Harness {
            rt,
            docker,
            containers: Mutex::default(),
            volumes: Mutex::default(),
            networks: Mutex::default(),
            images: Mutex::default(),
        }
    }

    pub fn docker(&self) -> &Docker {
        &self.docker
    }

    /// Run a future on this harness's runtime.
    pub fn block_on<F: std::future::Future>(&self, future: F) -> F::Output {
        self.rt.block_on(future)
    }

    pub fn track_container(&self, name: &str) {
        self.containers.lock().unwrap().push(name.to_owned());
    }

    pub fn track_volume(&self, name: &str) {
        self.volumes.lock().unwrap().push(name.to_owned());
    }

    pub fn track_network(&self, name: &str) {
        self.networks.lock().unwrap().push(name.to_owned());
    }

    pub fn track_image(&self, name: &str) {
        self.images.lock().unwrap().push(name.to_owned());
    }

    /// Fail the test unless `image` is present in the engine.
    pub fn require_image(&self, image: &str) {
        let present = self.block_on(self.docker.inspect_image(image)).is_ok();
        let how = if image.starts_with("aiidateam/") {
            "Build the images first: `cargo run -- images build` (scripts/test.sh does it once per run)"
        } else {
            "Run `bash scripts/bootstrap.sh` (as root) first"
        };
        assert!(present, "missing prerequisite: the image {image}. {how}.");
    }

    /// `docker run` (not detached): create, start, wait, collect the logs. The container is
    /// removed when the harness is dropped.
    pub fn run(&self, image: &str, cmd: &[&str], opts: RunOptions) -> RunOutput {
        self.require_image(image);
        let name = unique_name("run");
        self.track_container(&name);
        self.block_on(async {
            let body = ContainerCreateBody {
                image: Some(image.to_owned()),
                cmd: Some(cmd.iter().map(std::string::ToString::to_string).collect()),
                env: Some(opts.env),
                user: opts.user,
                host_config: Some(HostConfig {
                    binds: Some(opts.binds),
                    ..Default::default()
                }),
                ..Default::default()
            };
            let create = CreateContainerOptions {
                name: Some(name.clone()),
                ..Default::default()
            };
            self.docker
                .create_container(Some(create), body)
                .await
                .expect("create container");
            self.docker
                .start_container(
                    &name,
                    None::<bollard::query_parameters::StartContainerOptions>,
                )
                .await
                .expect("start container");
            let mut wait = self
                .docker
                .wait_container(&name, None::<WaitContainerOptions>);
            let exit_code = match wait.next().await {
                Some(Ok(status)) => status.status_code,
                // bollard reports a non-zero exit as an error carrying the code.
                Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. })) => code,
                other => panic!("waiting for container {name}: {other:?}"),
            };
            let logs = LogsOptions {
                stdout: true,
                stderr: true,
                ..Default::default()
            };
            let mut stream = self.docker.logs(&name, Some(logs));
            let (mut stdout, mut stderr) = (String::new(), String::new());
            while let Some(chunk) = stream.next().await {
                match chunk.expect("read container logs") {
                    bollard::container::LogOutput::StdOut { message } => {
                        stdout.push_str(&String::from_utf8_lossy(&message));
                    }
                    bollard::container::LogOutput::StdErr { message } => {
                        stderr.push_str(&String::from_utf8_lossy(&message));
                    }
                    _ => {}
                }
            }
            RunOutput {
                exit_code,
                stdout,
                stderr,
            }
        })
    }

    /// Every image tag in the engine.
    pub fn image_tags(&self) -> std::collections::BTreeSet<String> {
        self.block_on(
            self.docker
                .list_images(None::<bollard::query_parameters::ListImagesOptions>),
        )
        .expect("list images")
        .into_iter()
        .flat_map(|i| i.repo_tags)
        .collect()
    }

    /// Names of the containers (running or not) that carry `label` (`key` or `key=value`).
    pub fn containers_with_label(&self, label: &str) -> Vec<String> {
        let filters = [("label".to_string(), vec![label.to_string()])]
            .into_iter()
            .collect();
        let opts = ListContainersOptions {
            all: true,
            filters: Some(filters),
            ..Default::default()
        };
        self.block_on(self.docker.list_containers(Some(opts)))
            .expect("list containers")
            .into_iter()
            .filter_map(|c| c.id)
            .collect()
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        let containers = std::mem::take(&mut *self.containers.lock().unwrap());
        let volumes = std::mem::take(&mut *self.volumes.lock().unwrap());
        let networks = std::mem::take(&mut *self.networks.lock().unwrap());
        let images = std::mem::take(&mut *self.images.lock().unwrap());
        let docker = self.docker.clone();
        self.rt.block_on(async move {
            for name in containers {
                let opts = RemoveContainerOptions {
                    force: true,
                    v: true,
                    ..Default::default()
                };
                let _ = docker.remove_container(&name, Some(opts)).await;
            }
            for name in volumes {
                let _ = docker
                    .remove_volume(&name, Some(RemoveVolumeOptions { force: true }))
                    .await;
            }
            for name in networks {
                let _ = docker.remove_network(&name).await;
            }
            // Without pruning the untagged images under each one: those are the legacy builder's
            // cache, which a build that runs meanwhile in another test may have just taken a step
            // from ("Using cache"); removed under it, that build fails ("failed to set parent
            // ...: unknown parent image ID"). Left in place, they are the next run's cache.
            for name in images {
                let opts = RemoveImageOptions {
                    force: true,
                    noprune: true,
                    ..Default::default()
                };
                let _ = docker.remove_image(&name, Some(opts), None).await;
            }
        });
    }
}

/// A workspace folder for the reference devcontainer CLI. On drop, every container the CLI
/// started for it (label `devcontainer.local_folder`) and every image it built for it is removed,
/// then the folder.
pub struct Workspace {
    pub dir: tempfile::TempDir,
    harness: Harness,
}

impl Workspace {
    /// A temporary folder with `.devcontainer/devcontainer.json` holding `config`.
    pub fn with_config(config: &str) -> Workspace {
        let dir = tempfile::Builder::new()
            .prefix("aiida-devc-ws-")
            .tempdir()
            .unwrap();
        std::fs::create_dir_all(dir.path().join(".devcontainer")).unwrap();
        std::fs::write(dir.path().join(".devcontainer/devcontainer.json"), config).unwrap();
        Workspace {
            dir,
            harness: Harness::new(),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn harness(&self) -> &Harness {
        &self.harness
    }

    /// Run the reference CLI: `devcontainer <subcommand> --workspace-folder <this folder> <rest>`.
    pub fn devcontainer(&self, args: &[&str]) -> std::process::Output {
        devcontainer_in(self.path(), args, &[])
    }
}

impl Drop for Workspace {
    fn drop(&mut self) {
        let label = format!("devcontainer.local_folder={}", self.path().display());
        for id in self.harness.containers_with_label(&label) {
            self.harness.track_container(&id);
        }
        // Images the CLI built for this workspace (feature layers, UID updates) are tagged
        // vsc-<folder name>-<hash>[-features|-uid]; the images the config names are left alone.
        let folder = self
            .path()
            .file_name()
            .unwrap()
            .to_string_lossy()
            .to_lowercase();
        let prefix = format!("vsc-{folder}-");
        // Children before parents: the -uid image is built on the -features one.
        let mut tags: Vec<String> = self
            .harness
            .image_tags()
            .into_iter()
            .filter(|t| t.starts_with(&prefix))
            .collect();
        tags.sort_by_key(|t| std::cmp::Reverse(t.ends_with("-uid")));
        for tag in tags {
            self.harness.track_image(&tag);
        }
    }
}
