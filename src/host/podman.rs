//! A container engine reached through its command line (`--docker-path podman`), and what
//! rootless Podman needs from the machine.
//!
//! `aiida-devc up` and `doctor` talk to Podman through its CLI, as VS Code
//! (`dev.containers.dockerPath`) and the reference devcontainer CLI (`--docker-path`) do, not
//! through the Docker-compatible socket of `podman system service`: the CLI needs no long-running
//! service (which, without a systemd user session, nothing starts), and it is the same
//! program, storage and user namespace as the container the reference CLI creates.
//!
//! [`EngineCli`] runs the few engine commands the two need (inspect an image, exec, run once,
//! `podman info`). [`Pitfalls::check`] turns the facts of a machine ([`HostFacts`], gathered by
//! [`HostFacts::gather`]) into problems, each with its fix: no subordinate UID/GID range for the
//! user, no `newuidmap`/`newgidmap`, no usable `/dev/net/tun` for slirp4netns and pasta, the
//! systemd cgroup manager without a systemd user session, no `XDG_RUNTIME_DIR`, the `vfs`
//! storage driver, and `podman info` failing for any other reason.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, bail};
use serde_json::Value;

use super::docker::ExecOutput;

/// A Docker-compatible engine CLI (`podman`, or `docker` itself), found as given or on PATH.
#[derive(Debug, Clone)]
pub struct EngineCli {
    pub path: PathBuf,
}

impl EngineCli {
    pub fn new(path: &Path) -> EngineCli {
        EngineCli {
            path: path.to_owned(),
        }
    }

    fn command(&self) -> Command {
        let mut command = Command::new(&self.path);
        command.stdin(Stdio::null());
        command
    }

    /// Run the CLI with `args`, collecting its output; an error only when it cannot be started.
    pub fn output(&self, args: &[&str]) -> anyhow::Result<ExecOutput> {
        let out = self.command().args(args).output().with_context(|| {
            format!(
                "cannot run {} (the --docker-path engine CLI)",
                self.path.display()
            )
        })?;
        Ok(ExecOutput {
            exit_code: out.status.code().map_or(-1, i64::from),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }

    /// Whether the CLI is Podman's (its `--version` says so).
    pub fn is_podman(&self) -> bool {
        self.output(&["--version"])
            .is_ok_and(|o| o.stdout.to_ascii_lowercase().starts_with("podman"))
    }

    /// The first line of `--version` (`podman version 4.3.1`).
    pub fn version(&self) -> Option<String> {
        let out = self.output(&["--version"]).ok()?;
        (out.exit_code == 0).then(|| out.stdout.lines().next().unwrap_or_default().to_owned())
    }

    /// The engine's view of `image` (`image inspect`), `None` when it does not have it.
    pub fn inspect_image(&self, image: &str) -> Option<Value> {
        let out = self.output(&["image", "inspect", image]).ok()?;
        if out.exit_code != 0 {
            return None;
        }
        match serde_json::from_str::<Value>(&out.stdout).ok()? {
            Value::Array(mut items) if !items.is_empty() => Some(items.swap_remove(0)),
            _ => None,
        }
    }

    /// Run `cmd` in the running `container` as `user`.
    pub fn exec(&self, container: &str, user: &str, cmd: &[&str]) -> anyhow::Result<ExecOutput> {
        let mut args = vec!["exec", "--user", user, container];
        args.extend_from_slice(cmd);
        self.output(&args)
    }

    /// `sh -c script` in a throw-away container of `image`, as root; its stdout.
    pub fn run_once(&self, image: &str, script: &str) -> anyhow::Result<String> {
        let out = self.output(&[
            "run",
            "--rm",
            "--user",
            "0",
            "--network",
            "none",
            "--entrypoint",
            "sh",
            image,
            "-c",
            script,
        ])?;
        if out.exit_code != 0 {
            bail!("{} run {image} failed: {}", self.path.display(), out.stderr);
        }
        Ok(out.stdout)
    }

    /// `podman info` as JSON, or what it printed when it failed.
    pub fn info(&self) -> Result<Value, String> {
        let out = self
            .output(&["info", "--format", "json"])
            .map_err(|e| format!("{e:#}"))?;
        if out.exit_code != 0 {
            return Err(out.stderr.trim().to_owned());
        }
        serde_json::from_str(&out.stdout).map_err(|e| format!("unreadable `podman info`: {e}"))
    }
}

/// One line naming the engine: `podman version 4.3.1, rootless, cgroup v1 (cgroupfs), storage
/// overlay, network slirp4netns`.
pub fn describe(cli: &EngineCli, info: &Value) -> String {
    let host = &info["host"];
    let text = |v: &Value| v.as_str().unwrap_or("?").to_owned();
    let rootless = if host["security"]["rootless"].as_bool() == Some(true) {
        "rootless"
    } else {
        "rootful"
    };
    format!(
        "{} ({}), {rootless}, cgroup {} ({}), storage {}",
        cli.version().unwrap_or_else(|| "podman".into()),
        cli.path.display(),
        text(&host["cgroupVersion"]),
        text(&host["cgroupManager"]),
        text(&info["store"]["graphDriverName"]),
    )
}

/// What [`Pitfalls::check`] looks at, gathered from the machine by [`HostFacts::gather`] (or
/// written by a test).
#[derive(Debug, Clone)]
pub struct HostFacts {
    pub user: String,
    pub uid: u32,
    /// The text of /etc/subuid and /etc/subgid (empty when missing).
    pub subuid: String,
    pub subgid: String,
    /// Where `newuidmap` and `newgidmap` are, if on PATH (or in /usr/bin, /usr/sbin).
    pub newuidmap: Option<PathBuf>,
    pub newgidmap: Option<PathBuf>,
    /// `/dev/net/tun` can be opened for reading and writing by this user.
    pub tun_usable: bool,
    /// `$XDG_RUNTIME_DIR`, when set.
    pub runtime_dir: Option<PathBuf>,
    /// A systemd user session answers (`$XDG_RUNTIME_DIR/bus` or `$DBUS_SESSION_BUS_ADDRESS`).
    pub user_bus: bool,
    /// `podman info` as JSON, or its error.
    pub info: Result<Value, String>,
}

impl HostFacts {
    /// The facts of this machine and user, with `cli` for `podman info`.
    pub fn gather(cli: &EngineCli) -> HostFacts {
        let uid = current_uid();
        let user = std::fs::read_to_string("/etc/passwd")
            .ok()
            .and_then(|passwd| {
                passwd.lines().find_map(|l| {
                    let fields: Vec<&str> = l.split(':').collect();
                    (fields.get(2) == Some(&uid.to_string().as_str())).then(|| fields[0].to_owned())
                })
            })
            .or_else(|| std::env::var("USER").ok())
            .unwrap_or_default();
        let runtime_dir = std::env::var_os("XDG_RUNTIME_DIR")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from);
        let user_bus = std::env::var_os("DBUS_SESSION_BUS_ADDRESS").is_some()
            || runtime_dir.as_ref().is_some_and(|d| d.join("bus").exists());
        HostFacts {
            user,
            uid,
            subuid: std::fs::read_to_string("/etc/subuid").unwrap_or_default(),
            subgid: std::fs::read_to_string("/etc/subgid").unwrap_or_default(),
            newuidmap: find_program("newuidmap"),
            newgidmap: find_program("newgidmap"),
            tun_usable: std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open("/dev/net/tun")
                .is_ok(),
            runtime_dir,
            user_bus,
            info: cli.info(),
        }
    }

    /// Rootless: not root, or `podman info` says so.
    fn rootless(&self) -> bool {
        match &self.info {
            Ok(info) => info["host"]["security"]["rootless"].as_bool() == Some(true),
            Err(_) => self.uid != 0,
        }
    }

    /// 65536 subordinate IDs after every range /etc/subuid and /etc/subgid give (`START-END`),
    /// from 100000 on.
    fn free_range(&self) -> String {
        let end = format!("{}\n{}", self.subuid, self.subgid)
            .lines()
            .filter_map(|line| {
                let mut fields = line.trim().split(':').skip(1);
                let start: u64 = fields.next()?.parse().ok()?;
                let count: u64 = fields.next()?.trim().parse().ok()?;
                Some(start + count)
            })
            .fold(100_000, u64::max);
        format!("{end}-{}", end + 65535)
    }

    /// Whether `file` (/etc/subuid's text) gives this user a range of at least 65536 IDs.
    fn has_range(&self, file: &str) -> bool {
        file.lines().any(|line| {
            let mut fields = line.trim().split(':');
            let (Some(who), Some(_start), Some(count)) =
                (fields.next(), fields.next(), fields.next())
            else {
                return false;
            };
            (who == self.user || who == self.uid.to_string())
                && count.trim().parse::<u64>().is_ok_and(|c| c >= 65536)
        })
    }
}

/// The real UID of this process (Linux: /proc/self/status), where rootless Podman runs.
#[cfg(target_os = "linux")]
pub fn current_uid() -> u32 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|l| l.split_whitespace().next().and_then(|u| u.parse().ok()))
        })
        .unwrap_or(0)
}

/// Elsewhere (macOS, Windows) Podman runs its containers in a Linux VM: 0, which leaves out the
/// checks of the user's own IDs.
#[cfg(not(target_os = "linux"))]
pub fn current_uid() -> u32 {
    0
}

/// Where `podman` is, when it is installed: a hint for machines without a Docker engine.
pub fn installed() -> Option<PathBuf> {
    find_program("podman")
}

fn find_program(name: &str) -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    dirs.extend([PathBuf::from("/usr/bin"), PathBuf::from("/usr/sbin")]);
    dirs.into_iter().map(|d| d.join(name)).find(|p| p.is_file())
}

/// One thing on this machine that breaks rootless Podman, and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pitfall {
    /// A short stable id (`podman-subuid`, `podman-newuidmap`, ...).
    pub check: &'static str,
    /// What is at fault (a file or program).
    pub location: String,
    pub problem: String,
    pub fix: String,
    /// Whether containers cannot start at all (`up` stops on these).
    pub blocking: bool,
}

/// The pitfalls of a machine.
pub struct Pitfalls;

impl Pitfalls {
    /// Every pitfall `facts` show, in the order a user would fix them.
    pub fn check(facts: &HostFacts) -> Vec<Pitfall> {
        let mut found = Vec::new();
        if !facts.rootless() {
            return found;
        }
        let user = if facts.user.is_empty() {
            facts.uid.to_string()
        } else {
            facts.user.clone()
        };
        Pitfalls::user_namespace(facts, &user, &mut found);
        Pitfalls::session(facts, &user, &mut found);
        Pitfalls::engine(facts, &user, &mut found);
        found
    }

    /// Subordinate IDs, the setuid helpers, and /dev/net/tun.
    fn user_namespace(facts: &HostFacts, user: &str, found: &mut Vec<Pitfall>) {
        for (file, text, flag) in [
            ("/etc/subuid", &facts.subuid, "--add-subuids"),
            ("/etc/subgid", &facts.subgid, "--add-subgids"),
        ] {
            if !facts.has_range(text) {
                found.push(Pitfall {
                    check: "podman-subids",
                    location: file.into(),
                    problem: format!(
                        "{file} gives {user} no range of subordinate IDs (65536 or more): rootless Podman \
                         cannot map the image's users (aiida, postgres) into its user namespace"
                    ),
                    fix: format!(
                        "as root: `usermod {flag} {} {user}` (a range no other user has), then \
                         `podman system migrate` as {user}",
                        facts.free_range()
                    ),
                    blocking: true,
                });
            }
        }
        for (name, path) in [
            ("newuidmap", &facts.newuidmap),
            ("newgidmap", &facts.newgidmap),
        ] {
            if path.is_none() {
                found.push(Pitfall {
                    check: "podman-newuidmap",
                    location: name.into(),
                    problem: format!(
                        "{name} is not installed: rootless Podman needs it to set up the user namespace"
                    ),
                    fix: "install it: `apt-get install uidmap` (Debian, Ubuntu), `dnf install shadow-utils` \
                          (Fedora, RHEL)"
                        .into(),
                    blocking: true,
                });
            }
        }
        if !facts.tun_usable {
            found.push(Pitfall {
                check: "podman-tun",
                location: "/dev/net/tun".into(),
                problem: format!(
                    "{user} cannot open /dev/net/tun: slirp4netns and pasta (rootless networking) fail \
                     with `open(\"/dev/net/tun\"): Permission denied`"
                ),
                fix: "as root: `modprobe tun; chmod 0666 /dev/net/tun` (the mode udev gives it on a \
                      standard system)"
                    .into(),
                blocking: true,
            });
        }
    }

    /// The login session: `XDG_RUNTIME_DIR`.
    fn session(facts: &HostFacts, user: &str, found: &mut Vec<Pitfall>) {
        match &facts.runtime_dir {
            None => found.push(Pitfall {
                check: "podman-runtime-dir",
                location: "XDG_RUNTIME_DIR".into(),
                problem: "XDG_RUNTIME_DIR is not set (no login session, e.g. after `su` or `sudo -u`): \
                          Podman falls back to /tmp, and containers do not survive between sessions"
                    .into(),
                fix: format!(
                    "log in as {user} (ssh, or `machinectl shell {user}@`), or as root `mkdir -m 700 \
                     /run/user/{uid} && chown {user} /run/user/{uid}` and `export XDG_RUNTIME_DIR=/run/user/{uid}`",
                    uid = facts.uid
                ),
                blocking: false,
            }),
            Some(dir) if !dir.is_dir() => found.push(Pitfall {
                check: "podman-runtime-dir",
                location: dir.display().to_string(),
                problem: format!("XDG_RUNTIME_DIR is {} but no such folder exists", dir.display()),
                fix: format!(
                    "as root: `mkdir -m 700 {d} && chown {user} {d}`, or log in again",
                    d = dir.display()
                ),
                blocking: true,
            }),
            Some(_) => {}
        }
    }

    /// What `podman info` says: cgroups, storage, or its error.
    fn engine(facts: &HostFacts, user: &str, found: &mut Vec<Pitfall>) {
        match &facts.info {
            Ok(info) => {
                let host = &info["host"];
                if host["cgroupManager"] == "systemd" && !facts.user_bus {
                    found.push(Pitfall {
                        check: "podman-cgroups",
                        location: "containers.conf".into(),
                        problem: "Podman uses the systemd cgroup manager but no systemd user session \
                                  answers: containers fail with `sd-bus call` or `Interactive authentication \
                                  required`"
                            .into(),
                        fix: format!(
                            "as root: `loginctl enable-linger {user}` and log in again; or without systemd, \
                             put `[engine]` and `cgroup_manager = \"cgroupfs\"` in ~/.config/containers/containers.conf"
                        ),
                        blocking: true,
                    });
                }
                if host["cgroupVersion"] == "v1" {
                    found.push(Pitfall {
                        check: "podman-cgroups",
                        location: "/sys/fs/cgroup".into(),
                        problem: "the machine runs cgroup v1: rootless Podman cannot limit a container's \
                                  CPU or memory (`runArgs` such as --cpus, --memory fail or are ignored)"
                            .into(),
                        fix: "nothing is needed for aiida-devc; for limits, boot with cgroup v2 \
                              (`systemd.unified_cgroup_hierarchy=1`)"
                            .into(),
                        blocking: false,
                    });
                }
                if info["store"]["graphDriverName"] == "vfs" {
                    found.push(Pitfall {
                        check: "podman-storage",
                        location: "~/.config/containers/storage.conf".into(),
                        problem: "Podman stores images with the vfs driver: each container copies its whole \
                                  image (hundreds of MB, slow to start)"
                            .into(),
                        fix: "with kernel 5.13 or newer: `[storage]` and `driver = \"overlay\"` in \
                              ~/.config/containers/storage.conf (or install fuse-overlayfs), then \
                              `podman system reset` (removes this user's images and containers)"
                            .into(),
                        blocking: false,
                    });
                }
            }
            Err(error) => found.push(Pitfall {
                check: "podman-info",
                location: "podman info".into(),
                problem: format!("`podman info` fails: {error}"),
                fix: "fix what the message says (often one of the problems above), then run \
                      `podman system migrate`"
                    .into(),
                blocking: true,
            }),
        }
    }
}

/// Whether `image` names no registry (`aiidateam/aiida-core-with-services:tag`): Podman then
/// resolves it through `unqualified-search-registries` in registries.conf, and without a
/// terminal refuses a name that more than one registry could serve.
pub fn is_short_name(image: &str) -> bool {
    match image.split_once('/') {
        None => true,
        Some((first, _)) => !(first.contains('.') || first.contains(':') || first == "localhost"),
    }
}

/// Whether `run_args` (devcontainer.json's `runArgs`) keep the reference CLI from adding
/// `--userns=keep-id` (it adds it unless they map IDs themselves), or replace it.
pub fn run_args_defeat_keep_id(run_args: &[&str]) -> Option<String> {
    run_args
        .iter()
        .find(|a| {
            a.starts_with("--uidmap")
                || a.starts_with("--gidmap")
                || (a.starts_with("--userns") && !a.contains("keep-id"))
        })
        .map(|a| (*a).to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn healthy() -> HostFacts {
        HostFacts {
            user: "ada".into(),
            uid: 1001,
            subuid: "root:100000:65536\nada:165536:65536\n".into(),
            subgid: "ada:165536:65536\n".into(),
            newuidmap: Some("/usr/bin/newuidmap".into()),
            newgidmap: Some("/usr/bin/newgidmap".into()),
            tun_usable: true,
            runtime_dir: Some("/".into()),
            user_bus: false,
            info: Ok(
                json!({"host": {"security": {"rootless": true}, "cgroupVersion": "v2",
                "cgroupManager": "cgroupfs"}, "store": {"graphDriverName": "overlay"}}),
            ),
        }
    }

    fn checks(facts: &HostFacts) -> Vec<(&'static str, String)> {
        Pitfalls::check(facts)
            .into_iter()
            .map(|p| (p.check, p.location))
            .collect()
    }

    #[test]
    fn a_healthy_rootless_machine_has_no_pitfall() {
        assert_eq!(checks(&healthy()), vec![]);
    }

    #[test]
    fn a_user_without_subordinate_ids_is_told_how_to_add_them() {
        let facts = HostFacts {
            subuid: "other:100000:65536\n".into(),
            subgid: "ada:165536:1000\n".into(),
            ..healthy()
        };
        let found = Pitfalls::check(&facts);
        assert_eq!(found.len(), 2, "{found:?}");
        assert_eq!(found[0].location, "/etc/subuid");
        // The range proposed starts after every range given (ada's, too small, in /etc/subgid).
        assert!(
            found[0]
                .fix
                .contains("usermod --add-subuids 166536-232071 ada"),
            "{}",
            found[0].fix
        );
        assert!(found[1].fix.contains("--add-subgids"));
        assert!(found.iter().all(|p| p.blocking));
    }

    #[test]
    fn a_range_given_by_uid_counts() {
        let facts = HostFacts {
            subuid: "1001:165536:65536\n".into(),
            subgid: "1001:165536:65536\n".into(),
            ..healthy()
        };
        assert_eq!(checks(&facts), vec![]);
    }

    #[test]
    fn missing_helpers_tun_and_runtime_dir_are_each_reported() {
        let facts = HostFacts {
            newuidmap: None,
            tun_usable: false,
            runtime_dir: None,
            ..healthy()
        };
        assert_eq!(
            checks(&facts),
            vec![
                ("podman-newuidmap", "newuidmap".into()),
                ("podman-tun", "/dev/net/tun".into()),
                ("podman-runtime-dir", "XDG_RUNTIME_DIR".into()),
            ]
        );
    }

    #[test]
    fn systemd_cgroups_without_a_user_session_cgroup_v1_and_vfs() {
        let facts = HostFacts {
            info: Ok(
                json!({"host": {"security": {"rootless": true}, "cgroupVersion": "v1",
                "cgroupManager": "systemd"}, "store": {"graphDriverName": "vfs"}}),
            ),
            ..healthy()
        };
        let found = Pitfalls::check(&facts);
        assert_eq!(
            found.iter().map(|p| p.check).collect::<Vec<_>>(),
            ["podman-cgroups", "podman-cgroups", "podman-storage"]
        );
        assert!(found[0].fix.contains("loginctl enable-linger ada"));
        assert!(found[0].blocking && !found[1].blocking && !found[2].blocking);
        let with_bus = HostFacts {
            user_bus: true,
            ..facts
        };
        assert_eq!(Pitfalls::check(&with_bus).len(), 2);
    }

    #[test]
    fn a_failing_podman_info_is_reported_with_its_message() {
        let facts = HostFacts {
            info: Err("cannot find newuidmap".into()),
            ..healthy()
        };
        let found = Pitfalls::check(&facts);
        assert_eq!(found[0].check, "podman-info");
        assert!(found[0].problem.contains("cannot find newuidmap"));
    }

    #[test]
    fn rootful_podman_has_none_of_these_pitfalls() {
        let facts = HostFacts {
            uid: 0,
            subuid: String::new(),
            tun_usable: false,
            info: Ok(json!({"host": {"security": {"rootless": false}}})),
            ..healthy()
        };
        assert_eq!(checks(&facts), vec![]);
    }

    #[test]
    fn short_names_and_keep_id() {
        assert!(is_short_name(
            "aiidateam/aiida-core-with-services:aiida-2.9.4"
        ));
        assert!(is_short_name("debian"));
        assert!(!is_short_name("docker.io/aiidateam/aiida-core-base:latest"));
        assert!(!is_short_name("localhost:5000/x/y"));
        assert!(!is_short_name("localhost/x"));
        assert_eq!(run_args_defeat_keep_id(&["--cpus=2"]), None);
        assert_eq!(run_args_defeat_keep_id(&["--userns=keep-id"]), None);
        assert_eq!(
            run_args_defeat_keep_id(&["--cpus=2", "--userns=auto"]),
            Some("--userns=auto".into())
        );
        assert_eq!(
            run_args_defeat_keep_id(&["--uidmap=0:1:1000"]),
            Some("--uidmap=0:1:1000".into())
        );
    }
}
