//! `aiida-devc doctor [DIR]`: the settings that silently break AiiDA in a dev container.
//!
//! None of these make `devcontainer up` fail; each leaves a container without services, without
//! data after a rebuild, or unable to write to the workspace. Every finding says where it comes
//! from and how to fix it:
//!
//! * `override-command`: `overrideCommand: true` (or unset, on an image that does not ask for
//!   `false` in its `devcontainer.metadata` label) replaces the image's `/init` with a sleep loop:
//!   no PostgreSQL, no RabbitMQ, no daemon, and `docker stop` kills everything;
//! * `daemon`: a lifecycle command runs `verdi daemon start` or `restart` on an image whose /init
//!   supervises the daemon: the daemon is replaced by one outside the supervisor;
//! * `architecture`: an image built for another architecture than the host's runs under
//!   emulation (several times slower) or not at all;
//! * `home-volume`: no named volume on the home: the database and the file repository are lost
//!   with the container (a bind mount is not filled from the image, so it breaks the profile);
//! * `aiida-core`: the plugin's aiida-core requirement matches no image, or not the one in use;
//! * `uid`: the workspace belongs to a UID that the image user does not have, and the CLI will not
//!   remap it (`updateRemoteUserUID: false`, a numeric `remoteUser`, or another user of the image
//!   already has that UID, such as root): the container cannot write to the workspace;
//! * `ca-bundle`: https from this machine goes through a TLS-intercepting proxy (the CA bundle
//!   option resolves to a bundle: `--ca-cert`, `AIIDA_DEVC_CA_CERT`, or a host bundle with
//!   certificates beyond Debian's stock set) but the configuration passes no CA bundle to the
//!   container, so the plugin install fails with CERTIFICATE_VERIFY_FAILED under "Reopen in
//!   Container" and `devcontainer up`; or it mounts `${localEnv:AIIDA_DEVC_CA_CERT}` while that
//!   variable is not set here, so the container cannot be created.
//!
//! With `--docker-path podman`, the engine is that CLI (see [`crate::host::podman`]), and doctor
//! also reports what breaks rootless Podman on this machine (`podman-subids`, `podman-newuidmap`,
//! `podman-tun`, `podman-runtime-dir`, `podman-cgroups`, `podman-storage`, `podman-info`) and in
//! the configuration: `podman-short-name` (an image named without its registry that Podman does
//! not have: it resolves short names through registries.conf, and refuses ambiguous ones without
//! a terminal), `podman-keep-id` (`runArgs` that keep the reference CLI from adding
//! `--userns=keep-id`: the workspace then belongs to root in the container) and `podman-owner`
//! (a workspace that belongs to another UID than the one running Podman appears as `nobody`).
//!
//! Checks that need the image (its label, architecture and users) use the local engine when the
//! image is there and say so when it is not; an image that is not local but named with a
//! registry host (`ghcr.io/...`, `localhost:5000/...`) has its architecture checked against the
//! registry's image index.
//!
//! A Compose configuration (`dockerComposeFile`, as `init --variant compose` writes) is checked
//! on the service it names in `service`: its image, its volume on the home, and an `entrypoint`
//! that would replace /init. Compose leaves the image's entry point alone by default
//! (overrideCommand defaults to false there).

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde_json::Value;

use super::compose::{self, ComposeService};
use super::config::{CA_ENV, DAEMON_SERVICE, HOME, USER};
use super::init::config_path;
use super::merge;
use crate::host::Host;
use crate::host::ca::CaBundle;
use crate::host::docker::{ContainerCreateBody, Docker, run_to_end};
use crate::host::podman::{self, EngineCli, HostFacts, Pitfalls};
use crate::plugin::{self, Location, images};

/// Check the dev container configuration of the plugin in DIR for settings that silently break
/// AiiDA's services, and say how to fix each.
#[derive(Debug, Clone, clap::Args)]
pub struct DoctorArgs {
    /// The plugin repository with .devcontainer/devcontainer.json.
    #[arg(default_value = ".")]
    pub dir: PathBuf,
    /// The engine CLI to check and use (`podman`), as the reference CLI's `--docker-path`.
    #[arg(long, value_name = "PATH")]
    pub docker_path: Option<PathBuf>,
}

/// One problem found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// A short stable id (`override-command`, `daemon`, `architecture`, `home-volume`, `aiida-core`,
    /// `uid`).
    pub check: &'static str,
    /// Where it comes from (`file:line:column`), or the image.
    pub location: String,
    pub problem: String,
    pub fix: String,
}

/// What the checks learned about the image from the engine.
#[derive(Debug, Clone, Default)]
pub struct ImageFacts {
    pub architecture: Option<String>,
    pub entrypoint: Vec<String>,
    /// The `devcontainer.metadata` label, parsed.
    pub metadata: Vec<Value>,
    /// The UID of the image user that `remoteUser` names.
    pub remote_uid: Option<u32>,
    /// The user of the image that already has the workspace owner's UID, if any.
    pub user_with_host_uid: Option<String>,
}

impl ImageFacts {
    /// The items of a `devcontainer.metadata` label (one object or an array of them).
    fn metadata_items(label: Option<&str>) -> Vec<Value> {
        label
            .and_then(|m| serde_json::from_str::<Value>(m).ok())
            .map(|v| match v {
                Value::Array(items) => items,
                other => vec![other],
            })
            .unwrap_or_default()
    }

    /// The script that prints the UID of `remote_user` and the user with the workspace owner's
    /// UID, run in the image when it is for this machine's architecture (no emulation).
    fn users_script(&self, remote_user: &str, owner_uid: Option<u32>) -> Option<String> {
        (self.architecture.as_deref() == Some(host_architecture())).then(|| {
            let owner = owner_uid.map(|u| u.to_string()).unwrap_or_default();
            format!("id -u {remote_user}; getent passwd {owner} | cut -d: -f1")
        })
    }

    /// Read what [`Self::users_script`] printed.
    fn read_users(&mut self, out: &str) {
        let mut lines = out.lines();
        self.remote_uid = lines.next().and_then(|l| l.trim().parse().ok());
        self.user_with_host_uid = lines
            .next()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned);
    }
}

/// The host architecture in Docker's words.
pub fn host_architecture() -> &'static str {
    crate::platform::Platform::host().architecture()
}

impl DoctorArgs {
    pub fn run(&self, host: &Host) -> anyhow::Result<()> {
        let cli = self.docker_path.as_deref().map(EngineCli::new);
        let mut findings = Vec::new();
        match &cli {
            None => {
                println!("Docker engine: {}", crate::host::docker::endpoint());
                if std::env::var("DOCKER_HOST").is_ok_and(|h| h.contains("podman")) {
                    println!(
                        "note: DOCKER_HOST names Podman's Docker-compatible socket, which answers only while \
                         `podman system service` runs; `--docker-path podman` uses the podman CLI instead \
                         (as VS Code's dev.containers.dockerPath does) and needs no service"
                    );
                }
            }
            Some(cli) if cli.is_podman() => {
                let facts = HostFacts::gather(cli);
                match &facts.info {
                    Ok(info) => println!("Container engine: {}", podman::describe(cli, info)),
                    Err(_) => println!(
                        "Container engine: {} (podman info fails)",
                        cli.path.display()
                    ),
                }
                // What does not stop a container is a note, not a problem.
                for p in Pitfalls::check(&facts) {
                    if p.blocking {
                        findings.push(Finding {
                            check: p.check,
                            location: p.location,
                            problem: p.problem,
                            fix: p.fix,
                        });
                    } else {
                        println!(
                            "note: [{}] {}\n    at {}\n    fix: {}",
                            p.check, p.problem, p.location, p.fix
                        );
                    }
                }
            }
            Some(cli) => println!(
                "Container engine: {} ({})",
                cli.version().unwrap_or_else(|| "no answer".into()),
                cli.path.display()
            ),
        }
        findings.extend(self.diagnose(host.ca.bundle())?);
        let path = config_path(&self.dir);
        if let Ok(text) = std::fs::read_to_string(&path) {
            let proxy = host.ca.bundle().is_some();
            let env_set = std::env::var_os(CA_ENV).is_some_and(|v| !v.is_empty());
            findings.extend(ca_finding(&path, &text, proxy, env_set));
        }
        if let Some(image) = std::fs::read_to_string(&path)
            .ok()
            .and_then(|t| merge::to_value(&path, &t).ok())
            .and_then(|v| {
                self.compose_service(&v)
                    .ok()
                    .and_then(|s| configured_image(&v, s.as_ref()))
            })
        {
            if image_facts(&image, USER, None, cli.as_ref())?.is_none() {
                match registry_platforms(&image, host.ca.bundle()) {
                    Some(platforms) => println!(
                        "note: {image} is not in the local engine; its registry serves it for {}: \
                         its label and users were not checked",
                        platforms.join(", ")
                    ),
                    None => println!(
                        "note: {image} is not in the local engine (or no engine answers): its label, \
                         architecture and users were not checked"
                    ),
                }
            }
        }
        print!("{}", format_findings(&findings));
        if findings.is_empty() {
            Ok(())
        } else {
            anyhow::bail!("{} problem(s) found", findings.len())
        }
    }

    /// The compose service the configuration runs in, when it is a Compose configuration.
    fn compose_service(&self, config: &Value) -> anyhow::Result<Option<ComposeService>> {
        let files = compose::compose_files(&self.dir.join(".devcontainer"), config);
        match config.get("service").and_then(Value::as_str) {
            Some(name) if !files.is_empty() => compose::read_service(&files, name),
            _ => Ok(None),
        }
    }

    /// Run every check; `ca` is the bundle a registry is reached with.
    pub fn diagnose(&self, ca: Option<&CaBundle>) -> anyhow::Result<Vec<Finding>> {
        let path = config_path(&self.dir);
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!(
                "{}: cannot read it; `aiida-devc init` writes one",
                path.display()
            )
        })?;
        let subject = self.examine(&path, &text)?;
        let mut findings = Vec::new();
        subject.check_override_command(&mut findings);
        subject.check_daemon_hooks(&mut findings);
        subject.check_architecture(ca, &mut findings);
        subject.check_home_volume(&mut findings);
        subject.check_aiida_core(&mut findings);
        subject.check_uid(&mut findings);
        if let Some(cli) = self.docker_path.as_deref().map(EngineCli::new) {
            if cli.is_podman() {
                subject.check_podman(&mut findings);
            }
        }
        Ok(findings)
    }

    /// Read the configuration at `path` (whose text is `text`), its compose service and what the
    /// local engine knows about its image.
    fn examine<'a>(&'a self, path: &'a Path, text: &'a str) -> anyhow::Result<Subject<'a>> {
        let config = merge::to_value(path, text)?;
        let service = self.compose_service(&config)?;
        let is_compose = config.get("dockerComposeFile").is_some();
        if let (true, None) = (is_compose, &service) {
            let name = config
                .get("service")
                .and_then(Value::as_str)
                .unwrap_or_default();
            anyhow::bail!(
                "{}: no compose file named by dockerComposeFile defines the service {name:?}",
                Location::of(path, text, "\"service\"")
            );
        }
        let image = configured_image(&config, service.as_ref());
        let remote_user = config
            .get("remoteUser")
            .or_else(|| config.get("containerUser"))
            .and_then(Value::as_str)
            .unwrap_or(USER)
            .to_owned();
        let owner_uid = owner_uid(&self.dir);
        let facts = match &image {
            Some(image) => image_facts(
                image,
                &remote_user,
                owner_uid,
                self.docker_path.as_deref().map(EngineCli::new).as_ref(),
            )?,
            None => None,
        };
        let needs_init = facts.as_ref().map_or_else(
            || {
                image
                    .as_deref()
                    .is_some_and(|i| i.starts_with(crate::image::naming::ORGANIZATION))
            },
            |f| f.entrypoint.first().is_some_and(|e| e.ends_with("/init")),
        );
        Ok(Subject {
            dir: &self.dir,
            path,
            text,
            config,
            service,
            is_compose,
            image,
            remote_user,
            owner_uid,
            facts,
            needs_init,
        })
    }
}

/// The configuration under check and what is known about the container it makes: read once by
/// [`DoctorArgs::diagnose`], looked at by each check.
struct Subject<'a> {
    /// The plugin repository.
    dir: &'a Path,
    /// devcontainer.json and its text.
    path: &'a Path,
    text: &'a str,
    config: Value,
    /// The compose service the configuration runs in, for a Compose configuration.
    service: Option<ComposeService>,
    is_compose: bool,
    image: Option<String>,
    remote_user: String,
    /// The UID that owns the workspace.
    owner_uid: Option<u32>,
    /// What the local engine knows about the image (`None` when it is not there).
    facts: Option<ImageFacts>,
    /// Whether the image's /init must stay its entry point.
    needs_init: bool,
}

impl Subject<'_> {
    /// Where `needle` first appears in devcontainer.json.
    fn at(&self, needle: &str) -> String {
        Location::of(self.path, self.text, needle).to_string()
    }

    /// `override-command`: nothing replaces the image's /init.
    fn check_override_command(&self, findings: &mut Vec<Finding>) {
        let needs_init = self.needs_init;
        let label_says_false = self.facts.as_ref().is_some_and(|f| {
            f.metadata
                .iter()
                .any(|m| m.get("overrideCommand") == Some(&Value::Bool(false)))
        });
        // A compose service that replaces the image's entry point bypasses /init as surely.
        if let Some((service, entrypoint)) = self
            .service
            .as_ref()
            .and_then(|s| s.entrypoint.as_ref().map(|e| (s, e)))
        {
            if needs_init && !entrypoint.contains("/init") {
                findings.push(Finding {
                    check: "override-command",
                    location: Location::of(&service.file, &service.text, "entrypoint:").to_string(),
                    problem: format!(
                        "the compose service sets `entrypoint: {entrypoint}`: the image's /init never runs, so \
                         the profile, the daemon and a clean `docker stop` are missing"
                    ),
                    fix: "remove `entrypoint` from the service (use `command` to pass arguments to /init)".into(),
                });
            }
        }
        match self.config.get("overrideCommand") {
            Some(Value::Bool(true)) if needs_init => findings.push(Finding {
                check: "override-command",
                location: self.at("\"overrideCommand\""),
                problem: "overrideCommand is true: the image's /init is replaced by a sleep loop, so \
                          PostgreSQL, RabbitMQ and the daemon never start and `docker stop` kills everything"
                    .into(),
                fix: "set \"overrideCommand\": false (or run `aiida-devc init`)".into(),
            }),
            None if self.facts.is_some() && needs_init && !label_says_false && !self.is_compose => findings.push(Finding {
                check: "override-command",
                location: self.at("{"),
                problem: "overrideCommand is not set and the image's devcontainer.metadata label does not \
                          set it to false: the default (true) replaces the image's /init"
                    .into(),
                fix: "add \"overrideCommand\": false".into(),
            }),
            _ => {}
        }
    }

    /// `daemon`: no lifecycle command starts a daemon beside the supervised one.
    fn check_daemon_hooks(&self, findings: &mut Vec<Finding>) {
        if !self.needs_init {
            return;
        }
        for hook in [
            "onCreateCommand",
            "updateContentCommand",
            "postCreateCommand",
            "postStartCommand",
            "postAttachCommand",
        ] {
            let command = self
                .config
                .get(hook)
                .map(std::string::ToString::to_string)
                .unwrap_or_default();
            if command.contains("verdi daemon start") || command.contains("verdi daemon restart") {
                findings.push(Finding {
                    check: "daemon",
                    location: self.at(&format!("\"{hook}\"")),
                    problem: format!(
                        "{hook} runs `verdi daemon start/restart`, but the image's /init already runs the daemon \
                         under its supervisor: it is replaced by an unsupervised daemon, which the supervisor \
                         neither restarts after a crash nor stops in order on `docker stop`"
                    ),
                    fix: format!(
                        "restart the supervised daemon instead: `aiida-init restart {DAEMON_SERVICE}` (what \
                         `aiida-devc init` writes)"
                    ),
                });
            }
        }
    }

    /// `architecture`: the local image, or else the registry's index, is for the host's.
    fn check_architecture(&self, ca: Option<&CaBundle>, findings: &mut Vec<Finding>) {
        let Some(image) = &self.image else {
            return;
        };
        if let Some(facts) = &self.facts {
            if let Some(arch) = &facts.architecture {
                if arch != host_architecture() {
                    findings.push(Finding {
                        check: "architecture",
                        location: self.at(image),
                        problem: format!(
                            "the image {image} is built for {arch}, this host is {}: it runs under emulation, \
                             several times slower, or not at all",
                            host_architecture()
                        ),
                        fix: format!("rebuild the image on this host (`aiida-devc images build`) or pull its {} variant", host_architecture()),
                    });
                }
            }
            return;
        }
        // An image that is not local: the registry's index must list the host's.
        if let Some(platforms) = registry_platforms(image, ca) {
            let host = crate::platform::Platform::host();
            if !platforms.iter().any(|p| p.starts_with(host.docker())) {
                findings.push(Finding {
                    check: "architecture",
                    location: self.at(image),
                    problem: format!(
                        "the registry's {image} is published for {} only, this host is {}: it runs under \
                         emulation, several times slower, or not at all",
                        platforms.join(", "),
                        host.docker()
                    ),
                    fix: format!(
                        "publish it for {host} too (`aiida-devc images build --platform linux/amd64,linux/arm64 --push ...`) \
                         or choose an image whose index lists {host}"
                    ),
                });
            }
        }
    }

    /// `home-volume`: a named volume on the home, in devcontainer.json or the compose service.
    fn check_home_volume(&self, findings: &mut Vec<Finding>) {
        let config = &self.config;
        let mounts = config
            .get("mounts")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let home_mount = mounts
            .iter()
            .find(|m| merge::identity(m) == format!("target={HOME}"));
        let mut is_volume = home_mount.is_some_and(|m| match m {
            Value::Object(o) => o.get("type").and_then(Value::as_str) == Some("volume"),
            Value::String(s) => s.contains("type=volume"),
            _ => false,
        });
        if let (None, Some(service)) = (home_mount, &self.service) {
            let home = service
                .volumes
                .iter()
                .find(|v| v.target.trim_end_matches('/') == HOME);
            is_volume = home.is_some_and(|v| v.named);
            if !is_volume {
                let name = config
                    .get("service")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                let problem = match home {
                    Some(v) => format!(
                        "{HOME} of the service {name:?} is bind-mounted from {}: a bind mount is not filled from the image, so the profile and pip's user site are missing",
                        v.source
                    ),
                    None => format!(
                        "no volume on {HOME} in the service {name:?}: the file repository and the profile are lost whenever the container is rebuilt"
                    ),
                };
                findings.push(Finding {
                    check: "home-volume",
                    location: Location::of(&service.file, &service.text, &format!("{name}:")).to_string(),
                    problem,
                    fix: format!("add `- aiida-home:{HOME}` to the service's volumes (and `aiida-home:` under the top-level volumes)"),
                });
            }
        }
        if !is_volume && self.service.is_none() {
            let problem = match home_mount {
                Some(_) => format!(
                    "{HOME} is bind-mounted: a bind mount is not filled from the image, so the profile and the services' data directories are missing"
                ),
                None => format!(
                    "no volume on {HOME}: the database and the file repository are lost whenever the container is rebuilt"
                ),
            };
            findings.push(Finding {
                check: "home-volume",
                location: if config.get("mounts").is_some() { self.at("\"mounts\"") } else { self.at("{") },
                problem,
                fix: format!(
                    "add {{ \"source\": \"aiida-home-${{devcontainerId}}\", \"target\": \"{HOME}\", \"type\": \"volume\" }} to \"mounts\""
                ),
            });
        }
    }

    /// `aiida-core`: the plugin's requirement matches an image, and the image in use.
    fn check_aiida_core(&self, findings: &mut Vec<Finding>) {
        let Ok(meta) = plugin::read(self.dir) else {
            return;
        };
        let image = &self.image;
        let source = meta.source.display().to_string();
        match images::choose(images::Variant::Services, meta.aiida_core.as_ref(), &[]) {
            Err(no_image) => findings.push(Finding {
                check: "aiida-core",
                location: Location::of(&meta.source, &std::fs::read_to_string(&meta.source).unwrap_or_default(), "aiida-core").to_string(),
                problem: no_image.to_string(),
                fix: format!("relax the aiida-core requirement in {source}, or build an image for a release it accepts"),
            }),
            Ok(_) => {
                let tagged = image.as_deref().and_then(|i| i.rsplit_once(':')).and_then(|(_, t)| images::tag_version(t));
                if let (Some(version), Some(spec)) = (tagged, &meta.aiida_core) {
                    if !spec.contains(&version) {
                        findings.push(Finding {
                            check: "aiida-core",
                            location: self.at(image.as_deref().unwrap_or("image")),
                            problem: format!("the image holds aiida-core {version}, the plugin requires {}", meta.aiida_core_display()),
                            fix: "run `aiida-devc init` to pick an image that satisfies it".into(),
                        });
                    }
                }
            }
        }
    }

    /// `uid`: the container's user can write to the workspace, or the CLI will remap it.
    fn check_uid(&self, findings: &mut Vec<Finding>) {
        let (Some(facts), Some(owner)) = (&self.facts, self.owner_uid) else {
            return;
        };
        let Some(uid) = facts.remote_uid else {
            return;
        };
        let remote_user = &self.remote_user;
        let update_off = self.config.get("updateRemoteUserUID") == Some(&Value::Bool(false));
        let numeric = remote_user.chars().all(|c| c.is_ascii_digit());
        let taken = facts.user_with_host_uid.clone();
        if owner != uid && cfg!(target_os = "linux") && (update_off || numeric || taken.is_some()) {
            let why = if update_off {
                "updateRemoteUserUID is false".to_string()
            } else if numeric {
                format!("remoteUser {remote_user} is numeric, which the CLI never remaps")
            } else {
                format!(
                    "the image's user {} already has UID {owner}",
                    taken.unwrap_or_default()
                )
            };
            findings.push(Finding {
                check: "uid",
                location: self.dir.display().to_string(),
                problem: format!(
                    "the workspace belongs to UID {owner} but {remote_user} in the container is UID {uid}, \
                     and the CLI will not remap it ({why}): the container cannot write to the workspace \
                     (setuptools editable installs, pytest caches, git commits)"
                ),
                fix: if owner == 0 {
                    "open the folder as a regular user, not root (or `chown -R 1000 DIR`)".into()
                } else {
                    "remove \"updateRemoteUserUID\": false and use the user's name, not a number, as remoteUser".into()
                },
            });
        }
    }
}

impl Subject<'_> {
    /// `podman-short-name`, `podman-keep-id`, `podman-owner` (see the module documentation).
    fn check_podman(&self, findings: &mut Vec<Finding>) {
        if let (Some(image), None) = (&self.image, &self.facts) {
            if podman::is_short_name(image) {
                findings.push(Finding {
                    check: "podman-short-name",
                    location: self.at(image),
                    problem: format!(
                        "{image} names no registry and Podman does not have it: Podman resolves short names \
                         through `unqualified-search-registries` in registries.conf, and without a terminal \
                         refuses a name that several registries could serve (or finds none)"
                    ),
                    fix: format!(
                        "write the full name, docker.io/{image}, or load the image into Podman \
                         (`docker save {image} | podman load`), or set `unqualified-search-registries = \
                         [\"docker.io\"]` in ~/.config/containers/registries.conf"
                    ),
                });
            }
        }
        let run_args: Vec<&str> = self
            .config
            .get("runArgs")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        if let Some(arg) = podman::run_args_defeat_keep_id(&run_args) {
            findings.push(Finding {
                check: "podman-keep-id",
                location: self.at(&arg),
                problem: format!(
                    "runArgs has {arg}, so the reference CLI does not add --userns=keep-id: rootless Podman \
                     maps you to root in the container, and {} cannot write to the workspace",
                    self.remote_user
                ),
                fix: format!("remove {arg} from runArgs (or use --userns=keep-id)"),
            });
        }
        let me = podman::current_uid();
        if let Some(owner) = self.owner_uid.filter(|&o| o != me && me != 0) {
            findings.push(Finding {
                check: "podman-owner",
                location: self.dir.display().to_string(),
                problem: format!(
                    "the workspace belongs to UID {owner} but rootless Podman runs as UID {me}: in the \
                     container its files belong to nobody and cannot be written"
                ),
                fix: format!(
                    "run Podman as the workspace's owner, or take the workspace: `chown -R {me} {}`",
                    self.dir.display()
                ),
            });
        }
    }
}

/// The image the dev container runs: `image`, or the image of the compose service.
/// The uid that owns the workspace folder (what a Linux bind mount shows inside the container).
/// None on Windows, which has no uids; `check_uid` reports only on Linux, where it matters.
#[cfg(unix)]
fn owner_uid(dir: &Path) -> Option<u32> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(dir).map(|m| m.uid()).ok()
}

#[cfg(not(unix))]
fn owner_uid(_dir: &Path) -> Option<u32> {
    None
}

fn configured_image(config: &Value, service: Option<&ComposeService>) -> Option<String> {
    config
        .get("image")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .or_else(|| service.and_then(|s| s.image.clone()))
}

/// The findings for humans.
pub fn format_findings(findings: &[Finding]) -> String {
    if findings.is_empty() {
        return "✔ no problems found (override-command, daemon, architecture, home-volume, aiida-core, uid, ca-bundle)\n".into();
    }
    let mut out = String::new();
    for f in findings {
        out.push_str(&format!(
            "✘ [{}] {}\n    at {}\n    fix: {}\n",
            f.check, f.problem, f.location, f.fix
        ));
    }
    out
}

/// The `ca-bundle` check (see the module documentation): `proxy` when the CA bundle option
/// resolves to a bundle on this machine, `env_set` when the variable the configuration mounts is
/// set in this environment.
pub fn ca_finding(
    path: &std::path::Path,
    text: &str,
    proxy: bool,
    env_set: bool,
) -> Option<Finding> {
    let mounted = format!("${{localEnv:{CA_ENV}}}");
    let passes_bundle = text.contains(&mounted)
        || ["PIP_CERT", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE"]
            .iter()
            .any(|v| text.contains(&format!("\"{v}\"")));
    if text.contains(&mounted) && !env_set {
        return Some(Finding {
            check: "ca-bundle",
            location: Location::of(path, text, &mounted).to_string(),
            problem: format!(
                "the configuration mounts ${CA_ENV}, which is not set here: the devcontainer CLI \
                 and VS Code cannot create the container (a bind mount with an empty source)"
            ),
            fix: format!(
                "export {CA_ENV}=/path/to/ca-bundle.pem wherever the container is opened (the shell \
                 or the environment VS Code starts from)"
            ),
        });
    }
    if !proxy || passes_bundle {
        return None;
    }
    let install = ["updateContentCommand", "postCreateCommand"]
        .iter()
        .map(|hook| format!("\"{hook}\""))
        .find(|key| text.contains(key.as_str()))
        .map_or_else(
            || Location::of(path, text, "{").to_string(),
            |key| Location::of(path, text, &key).to_string(),
        );
    Some(Finding {
        check: "ca-bundle",
        location: install,
        problem: "https from this machine goes through a TLS-intercepting proxy (its CA bundle trusts \
                  certificates beyond Debian's stock set), but the configuration passes no CA bundle to \
                  the container: `pip install` fails there with CERTIFICATE_VERIFY_FAILED under \
                  \"Reopen in Container\" and `devcontainer up` (`aiida-devc up` passes one for its own run only)"
            .into(),
        fix: format!(
            "export {CA_ENV}=/etc/ssl/certs/ca-certificates.crt (or the proxy's bundle), run `aiida-devc init` \
             again (it mounts ${{localEnv:{CA_ENV}}} and points PIP_CERT, SSL_CERT_FILE and \
             REQUESTS_CA_BUNDLE at it), and keep the variable exported where VS Code starts"
        ),
    })
}

/// Inspect `image` in the local engine, and ask a throwaway container of it for the UIDs the
/// UID check needs. `None` when no engine answers or the image is not there.
fn image_facts(
    image: &str,
    remote_user: &str,
    owner_uid: Option<u32>,
    cli: Option<&EngineCli>,
) -> anyhow::Result<Option<ImageFacts>> {
    if let Some(cli) = cli {
        return Ok(image_facts_from_cli(cli, image, remote_user, owner_uid));
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let Ok(docker) = crate::host::docker::connect().await else {
            return Ok(None);
        };
        let Ok(inspect) = docker.inspect_image(image).await else {
            return Ok(None);
        };
        let config = inspect.config.unwrap_or_default();
        let metadata = ImageFacts::metadata_items(
            config
                .labels
                .as_ref()
                .and_then(|l| l.get("devcontainer.metadata"))
                .map(String::as_str),
        );
        let mut facts = ImageFacts {
            architecture: inspect.architecture,
            entrypoint: config.entrypoint.unwrap_or_default(),
            metadata,
            ..Default::default()
        };
        if let Some(script) = facts.users_script(remote_user, owner_uid) {
            if let Ok(out) = run_once(&docker, image, &script).await {
                facts.read_users(&out);
            }
        }
        Ok(Some(facts))
    })
}

/// [`image_facts`] through an engine CLI (`podman image inspect`, `podman run`).
fn image_facts_from_cli(
    cli: &EngineCli,
    image: &str,
    remote_user: &str,
    owner_uid: Option<u32>,
) -> Option<ImageFacts> {
    let inspect = cli.inspect_image(image)?;
    let config = &inspect["Config"];
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    };
    let metadata = ImageFacts::metadata_items(config["Labels"]["devcontainer.metadata"].as_str());
    let mut facts = ImageFacts {
        architecture: inspect["Architecture"].as_str().map(str::to_owned),
        entrypoint: strings(&config["Entrypoint"]),
        metadata,
        ..Default::default()
    };
    if let Some(script) = facts.users_script(remote_user, owner_uid) {
        if let Ok(out) = cli.run_once(image, &script) {
            facts.read_users(&out);
        }
    }
    Some(facts)
}

/// The platforms (`linux/arm64/v8`) a registry serves `image` for: those of its image index, or
/// of its single manifest's config. `None` when the reference names no registry host (Docker
/// Hub is not asked), or the registry does not answer or has no such image.
pub fn registry_platforms(image: &str, ca: Option<&CaBundle>) -> Option<Vec<String>> {
    let (host, rest) = image.split_once('/')?;
    if !(host.contains('.') || host.contains(':') || host == "localhost") {
        return None;
    }
    let (repository, reference) = match rest.rsplit_once('@') {
        Some((repo, digest)) => (repo, digest),
        None => match rest.rsplit_once(':') {
            Some((repo, tag)) if !tag.contains('/') => (repo, tag),
            _ => (rest, "latest"),
        },
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .ok()?;
    rt.block_on(async {
        let registry =
            crate::oci::Registry::connect(host, &crate::oci::auth::AuthEnv::from_process(), ca)
                .ok()?;
        let descriptor = registry.descriptor(repository, reference).await.ok()??;
        let manifest: Value = serde_json::from_slice(&descriptor.bytes).ok()?;
        let name = |p: &Value| -> Option<String> {
            let os = p["os"].as_str()?;
            let arch = p["architecture"].as_str()?;
            Some(match p["variant"].as_str() {
                Some(v) => format!("{os}/{arch}/{v}"),
                None => format!("{os}/{arch}"),
            })
        };
        if let Some(entries) = manifest["manifests"].as_array() {
            return Some(
                entries
                    .iter()
                    .filter_map(|e| name(&e["platform"]))
                    .filter(|p| p != "unknown/unknown")
                    .collect(),
            );
        }
        let config_digest = manifest["config"]["digest"].as_str()?;
        let config = registry.blob(repository, config_digest).await.ok()?;
        let config: Value = serde_json::from_slice(&config).ok()?;
        Some(vec![name(&config)?])
    })
}

/// `sh -c script` in a new container of `image` (its entry point bypassed), removed afterwards.
async fn run_once(docker: &Docker, image: &str, script: &str) -> anyhow::Result<String> {
    let body = ContainerCreateBody {
        image: Some(image.to_owned()),
        entrypoint: Some(vec!["/bin/sh".into()]),
        cmd: Some(vec!["-c".into(), script.into()]),
        user: Some("0".into()),
        ..Default::default()
    };
    Ok(run_to_end(docker, None, body, false).await?.output)
}
