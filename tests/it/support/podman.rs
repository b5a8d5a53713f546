//! Rootless Podman for the tests: the non-root users `scripts/bootstrap.sh` makes
//! (`aiida-devc-podman`, with subordinate IDs; `aiida-devc-nosubids`, without), commands run as
//! them (`runuser`, with their own `XDG_RUNTIME_DIR` and home, as a login would give), the images
//! copied from the Docker engine into their Podman storage (`docker save | podman load`), and
//! what a test made there removed when it ends.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::Mutex;

use super::plugin_workspace::text;

/// The user with subordinate UID/GID ranges that the Podman tests run as.
pub const USER: &str = "aiida-devc-podman";
/// A user without them: rootless Podman cannot work for it, and doctor must say why.
pub const USER_WITHOUT_SUBIDS: &str = "aiida-devc-nosubids";

/// Why these tests cannot run here, if they cannot: not root (`runuser`), no podman, no users.
pub fn missing() -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("the Podman tests run podman as other users, which needs root".into());
    }
    if Command::new("podman").arg("--version").output().is_err() {
        return Some("no podman on PATH (scripts/bootstrap.sh installs it)".into());
    }
    for user in [USER, USER_WITHOUT_SUBIDS] {
        if PodmanUser::lookup(user).is_none() {
            return Some(format!("no user {user} (scripts/bootstrap.sh makes it)"));
        }
    }
    None
}

/// A non-root user on this machine, and its rootless Podman.
pub struct PodmanUser {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: String,
}

impl PodmanUser {
    pub fn lookup(name: &str) -> Option<PodmanUser> {
        let out = Command::new("getent")
            .args(["passwd", name])
            .output()
            .ok()?;
        let line = text(&out.stdout);
        let fields: Vec<&str> = line.trim().split(':').collect();
        (fields.len() >= 6).then(|| PodmanUser {
            name: name.to_owned(),
            uid: fields[2].parse().unwrap(),
            gid: fields[3].parse().unwrap(),
            home: fields[5].to_owned(),
        })
    }

    /// The user, with its runtime folder made (as a login would: /run is emptied at boot).
    pub fn get(name: &str) -> PodmanUser {
        let user = PodmanUser::lookup(name)
            .unwrap_or_else(|| panic!("no user {name}: run `bash scripts/bootstrap.sh` first"));
        let runtime = user.runtime_dir();
        if !Path::new(&runtime).is_dir() {
            std::fs::create_dir_all(&runtime).unwrap();
            std::os::unix::fs::chown(&runtime, Some(user.uid), Some(user.gid)).unwrap();
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&runtime, std::fs::Permissions::from_mode(0o700)).unwrap();
        }
        user
    }

    pub fn runtime_dir(&self) -> String {
        format!("/run/user/{}", self.uid)
    }

    /// `program ARGS` as this user, in `cwd`, with a login's environment and `env` added.
    pub fn command_with(&self, program: &str, cwd: &Path, env: &[(&str, &str)]) -> Command {
        let mut command = Command::new("runuser");
        command
            .args(["-u", &self.name, "--", "env", "-i"])
            .arg(format!("HOME={}", self.home))
            .arg(format!("USER={}", self.name))
            .arg(format!("XDG_RUNTIME_DIR={}", self.runtime_dir()))
            .arg("PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin")
            .args(env.iter().map(|(k, v)| format!("{k}={v}")))
            .arg(program)
            .current_dir(cwd)
            .stdin(Stdio::null());
        command
    }

    /// `program ARGS` as this user, in `cwd`, with a login's environment.
    pub fn command(&self, program: &str, cwd: &Path) -> Command {
        self.command_with(program, cwd, &[])
    }

    /// `podman ARGS` as this user.
    pub fn podman(&self, args: &[&str]) -> Output {
        self.command("podman", Path::new(&self.home))
            .args(args)
            .output()
            .expect("run podman through runuser")
    }

    /// `podman ARGS` as this user, which must succeed; its stdout.
    pub fn podman_ok(&self, args: &[&str]) -> String {
        let out = self.podman(args);
        assert!(
            out.status.success(),
            "podman {args:?} as {} failed: {}{}",
            self.name,
            text(&out.stdout),
            text(&out.stderr)
        );
        text(&out.stdout)
    }

    /// Make this user's Podman have `image` as the Docker engine has it (read-only there): load
    /// it with `docker save | podman load` unless Podman has that image ID under that name.
    pub fn load_from_docker(&self, image: &str) {
        static LOADING: Mutex<()> = Mutex::new(());
        let _one_at_a_time = LOADING
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let docker_id = Command::new("docker")
            .args(["image", "inspect", "--format", "{{.Id}}", image])
            .output()
            .expect("run docker");
        crate::support::require(
            docker_id.status.success(),
            &format!(
                "the image {image} in the Docker engine (`cargo run -- images build`, which scripts/test.sh runs)"
            ),
        );
        let docker_id = text(&docker_id.stdout);
        let docker_id = docker_id.trim().trim_start_matches("sha256:");
        let podman_id = self.podman(&["image", "inspect", "--format", "{{.Id}}", image]);
        if podman_id.status.success() && text(&podman_id.stdout).trim() == docker_id {
            return;
        }
        let script = format!(
            "docker save '{image}' | runuser -u '{user}' -- env HOME='{home}' XDG_RUNTIME_DIR='{run}' podman load",
            user = self.name,
            home = self.home,
            run = self.runtime_dir()
        );
        let out = Command::new("bash")
            .args(["-o", "pipefail", "-c", &script])
            .current_dir(&self.home)
            .output()
            .expect("run docker save | podman load");
        assert!(
            out.status.success(),
            "{script}: {}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        let loaded = self.podman_ok(&["image", "inspect", "--format", "{{.Id}}", image]);
        assert_eq!(loaded.trim(), docker_id, "podman load gave another image");
        // The image this one replaced, now without a name, would pile up run after run.
        let _ = self.podman(&["image", "prune", "--force"]);
    }

    /// Remove what the reference CLI made for the workspace `dir` in this user's Podman: its
    /// containers, their named volumes and the `vsc-...` images built for them.
    pub fn remove_dev_containers(&self, dir: &Path) {
        let label = format!("label=devcontainer.local_folder={}", dir.display());
        let ids = text(&self.podman(&["ps", "-aq", "--filter", &label]).stdout);
        for id in ids.split_whitespace() {
            let inspect = self.podman(&[
                "inspect",
                "--format",
                "{{.ImageName}}{{range .Mounts}} {{.Name}}{{end}}",
                id,
            ]);
            let _ = self.podman(&["rm", "-f", "-t", "0", id]);
            let inspect = text(&inspect.stdout);
            let mut words = inspect.split_whitespace();
            let image = words.next().unwrap_or_default().to_owned();
            for volume in words {
                let _ = self.podman(&["volume", "rm", "-f", volume]);
            }
            if image.contains("/vsc-") {
                let _ = self.podman(&["rmi", "-f", &image]);
            }
        }
    }
}
