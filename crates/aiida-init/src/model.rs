//! The service tree: s6-rc source directories read into a plain data model.
//!
//! Nothing here starts a process. [`load`] reads, in s6-overlay's layout:
//!
//! * `s6-rc.d/<name>/` (see [`super::settings`] for the root): `type` (`oneshot`, `longrun` or
//!   `bundle`), `dependencies.d/` (or the old `dependencies` list), `contents.d/` (or
//!   `contents`), oneshot `up`/`down`/`timeout-up`/`timeout-down`, longrun `run`, `finish`,
//!   `notification-fd`, `down-signal`, `timeout-kill`, `timeout-finish`, `flag-timeout-killpg`;
//!   and one extension of aiida-init's (s6-rc ignores the folder): `stops-before.d/` (or a
//!   `stops-before` list), services that stop only once this one is down, without waiting for it
//!   at start (an order for the shutdown alone, where a dependency would order both);
//! * the `user` and `user2` bundles from `user-bundles.d/` and from the old `s6-rc.d/user`
//!   location (merged; the old one gets a deprecation warning; nothing is written to `/etc`);
//! * the legacy directories `cont-init.d` (run in order by the `legacy-cont-init` oneshot, whose
//!   down runs `cont-finish.d`) and `services.d/<name>/` (longruns started after `user`, before
//!   `user2`), and the built-in `fix-attrs`, `base`, `legacy-services` and `top` names that
//!   s6-overlay defines, so service trees written for it resolve unchanged; `S6_STAGE2_HOOK`
//!   becomes the `stage2-hook` oneshot that `base` waits for.
//!
//! Every error names the service directory and the file at fault.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Result, bail};

use super::execline;
use super::settings::{Paths, Settings};

#[derive(Debug, Clone)]
pub struct Service {
    pub name: String,
    /// The definition directory (the working directory of a longrun).
    pub dir: PathBuf,
    pub kind: Kind,
    /// Direct dependencies as declared (names of services or bundles).
    pub dependencies: Vec<String>,
    /// Services (or bundles) that stop only after this one, as declared in `stops-before.d/`.
    pub stops_before: Vec<String>,
    pub timeout_up: Option<Duration>,
    pub timeout_down: Option<Duration>,
}

#[derive(Debug, Clone)]
pub enum Kind {
    Oneshot { up: Action, down: Action },
    Longrun(Longrun),
    Bundle { contents: Vec<String> },
}

impl Kind {
    pub fn type_name(&self) -> &'static str {
        match self {
            Kind::Oneshot { .. } => "oneshot",
            Kind::Longrun(_) => "longrun",
            Kind::Bundle { .. } => "bundle",
        }
    }
}

/// What a oneshot transition runs.
#[derive(Debug, Clone)]
pub enum Action {
    /// Nothing: succeeds at once.
    Nothing,
    /// An execline command line (already validated), from this file.
    Execline(PathBuf),
    /// Every executable file of a directory, in name order, one after the other.
    RunParts {
        dir: PathBuf,
        per_script_limit: Option<Duration>,
    },
    /// A shell snippet (`S6_STAGE2_HOOK`), run with `/bin/sh -c`.
    Shell(String),
}

#[derive(Debug, Clone)]
pub struct Longrun {
    pub run: PathBuf,
    pub finish: Option<PathBuf>,
    pub notification_fd: Option<i32>,
    pub down_signal: i32,
    pub timeout_kill: Option<Duration>,
    /// None: no limit.
    pub timeout_finish: Option<Duration>,
    pub kill_process_group: bool,
    /// Dependents wait for readiness (a notification), not just the spawn.
    pub wait_ready: bool,
}

/// The whole tree, by name, before validation of the graph (see [`super::graph`]).
#[derive(Debug, Default)]
pub struct ServiceTree {
    pub services: BTreeMap<String, Service>,
    pub warnings: Vec<String>,
}

/// Names s6-overlay defines itself.
pub const BUILTIN_NAMES: &[&str] = &[
    "stage2-hook",
    "fix-attrs",
    "legacy-cont-init",
    "base",
    "legacy-services",
    "top",
];

fn read_trimmed(path: &Path) -> Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(s) => Ok(Some(s.trim().to_string())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => bail!("{}: cannot read: {e}", path.display()),
    }
}

fn read_millis(dir: &Path, file: &str) -> Result<Option<Duration>> {
    let path = dir.join(file);
    match read_trimmed(&path)? {
        None => Ok(None),
        Some(s) => match s.parse::<u64>() {
            Ok(0) => Ok(None),
            Ok(ms) => Ok(Some(Duration::from_millis(ms))),
            Err(_) => bail!("{}: `{s}` is not a number of milliseconds", path.display()),
        },
    }
}

/// Names listed by a `<what>.d/` directory (one empty file per name) or a `<what>` list file.
fn read_names(dir: &Path, what: &str) -> Result<Vec<String>> {
    let mut names = Vec::new();
    let d = dir.join(format!("{what}.d"));
    if d.is_dir() {
        let entries = std::fs::read_dir(&d)
            .map_err(|e| anyhow::anyhow!("{}: cannot read: {e}", d.display()))?;
        for e in entries.flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            if !n.starts_with('.') {
                names.push(n);
            }
        }
    }
    if let Some(list) = read_trimmed(&dir.join(what))? {
        for line in list.lines() {
            let n = line.split('#').next().unwrap_or("").trim();
            if !n.is_empty() {
                names.push(n.to_string());
            }
        }
    }
    names.sort();
    names.dedup();
    Ok(names)
}

fn has_shebang(path: &Path) -> bool {
    use std::io::Read;
    let mut start = [0u8; 2];
    std::fs::File::open(path).is_ok_and(|mut f| f.read_exact(&mut start).is_ok() && &start == b"#!")
}

fn is_executable(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// What s6 runs with `execve`: a `data/check` must be executable.
fn require_executable(path: &Path) -> Result<()> {
    require_runnable(path)?;
    if !is_executable(path) {
        bail!("{}: not executable (chmod +x it)", path.display());
    }
    Ok(())
}

/// A longrun's `run` or `finish`. s6-rc-compile copies them with mode 0755 whatever their mode
/// in the source tree, so one without the exec bit is accepted and runs through its `#!`
/// interpreter ([`super::builtins::script_command`]); without the bit it needs that line.
fn require_runnable(path: &Path) -> Result<()> {
    if !path.exists() {
        bail!("{}: missing", path.display());
    }
    if !path.is_file() {
        bail!("{}: not a file", path.display());
    }
    if !is_executable(path) && !has_shebang(path) {
        bail!(
            "{}: neither executable nor a script with a #! line (chmod +x it, or start it with #!/bin/sh)",
            path.display()
        );
    }
    // A script run by our execlineb is checked against the subset now, not when it runs.
    if execline::has_execline_shebang(path) {
        execline::load_file(path)?;
    }
    Ok(())
}

/// Parse a signal name (`SIGINT`, `INT`) or number.
pub fn parse_signal(s: &str) -> Option<i32> {
    if let Ok(n) = s.parse::<i32>() {
        return (1..65).contains(&n).then_some(n);
    }
    let upper = s.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    name.parse::<nix::sys::signal::Signal>()
        .ok()
        .map(|s| s as i32)
}

fn parse_longrun(dir: &Path, wait_ready_default: Option<bool>) -> Result<Longrun> {
    for pipe in ["producer-for", "consumer-for", "pipeline-name"] {
        let path = dir.join(pipe);
        if path.exists() {
            bail!(
                "{}: logging pipelines are not supported; aiida-init sends every service's output to the container log, prefixed with its name, so remove the logger service",
                path.display()
            );
        }
    }
    let run = dir.join("run");
    require_runnable(&run)?;
    let finish = dir.join("finish");
    let finish = if finish.exists() {
        require_runnable(&finish)?;
        Some(finish)
    } else {
        None
    };
    let check = dir.join("data/check");
    if check.exists() {
        require_executable(&check)?;
    }
    let nf_path = dir.join("notification-fd");
    let notification_fd = match read_trimmed(&nf_path)? {
        None => None,
        Some(s) => match s.parse::<i32>() {
            Ok(n) if n >= 3 => Some(n),
            _ => bail!(
                "{}: `{s}` is not a file descriptor number of 3 or more",
                nf_path.display()
            ),
        },
    };
    let ds_path = dir.join("down-signal");
    let down_signal = match read_trimmed(&ds_path)? {
        None => libc::SIGTERM,
        Some(s) => parse_signal(&s).ok_or_else(|| {
            anyhow::anyhow!(
                "{}: `{s}` is not a signal name or number",
                ds_path.display()
            )
        })?,
    };
    let timeout_finish = match read_trimmed(&dir.join("timeout-finish"))? {
        None => Some(Duration::from_millis(5000)),
        Some(_) => read_millis(dir, "timeout-finish")?,
    };
    Ok(Longrun {
        run,
        finish,
        notification_fd,
        down_signal,
        timeout_kill: read_millis(dir, "timeout-kill")?,
        timeout_finish,
        kill_process_group: dir.join("flag-timeout-killpg").exists(),
        wait_ready: wait_ready_default.unwrap_or(notification_fd.is_some())
            && notification_fd.is_some(),
    })
}

fn parse_service(name: &str, dir: &Path) -> Result<Service> {
    let type_path = dir.join("type");
    let Some(kind_name) = read_trimmed(&type_path)? else {
        bail!(
            "{}: missing (every service needs a `type`: oneshot, longrun or bundle)",
            type_path.display()
        );
    };
    let kind = match kind_name.as_str() {
        "oneshot" => {
            let up = dir.join("up");
            if !up.is_file() {
                bail!(
                    "{}: missing (a oneshot needs an `up` command line)",
                    up.display()
                );
            }
            execline::load_file(&up)?;
            let down = dir.join("down");
            let down = if down.is_file() {
                execline::load_file(&down)?;
                Action::Execline(down)
            } else {
                Action::Nothing
            };
            Kind::Oneshot {
                up: Action::Execline(up),
                down,
            }
        }
        "longrun" => Kind::Longrun(parse_longrun(dir, None)?),
        "bundle" => Kind::Bundle {
            contents: read_names(dir, "contents")?,
        },
        other => bail!(
            "{}: unknown type `{other}` (expected oneshot, longrun or bundle)",
            type_path.display()
        ),
    };
    let (dependencies, stops_before) = if matches!(kind, Kind::Bundle { .. }) {
        (Vec::new(), Vec::new())
    } else {
        (
            read_names(dir, "dependencies")?,
            read_names(dir, "stops-before")?,
        )
    };
    Ok(Service {
        name: name.to_string(),
        dir: dir.to_path_buf(),
        kind,
        dependencies,
        stops_before,
        timeout_up: read_millis(dir, "timeout-up")?,
        timeout_down: read_millis(dir, "timeout-down")?,
    })
}

fn subdirs(dir: &Path) -> Result<Vec<(String, PathBuf)>> {
    if !dir.is_dir() {
        return Ok(Vec::new());
    }
    let entries = std::fs::read_dir(dir)
        .map_err(|e| anyhow::anyhow!("{}: cannot read: {e}", dir.display()))?;
    let mut out: Vec<(String, PathBuf)> = entries
        .flatten()
        .filter(|e| e.path().is_dir())
        .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
        .filter(|(n, _)| !n.starts_with('.'))
        .collect();
    out.sort();
    Ok(out)
}

fn builtin(name: &str, kind: Kind, dependencies: Vec<String>) -> Service {
    Service {
        name: name.into(),
        dir: PathBuf::from("/"),
        kind,
        dependencies,
        stops_before: vec![],
        timeout_up: None,
        timeout_down: None,
    }
}

/// The `user` and `user2` bundles' contents, gathered from both their locations.
type UserBundles = BTreeMap<&'static str, Vec<String>>;

/// Read the whole service tree described by `settings`.
pub fn load(settings: &Settings) -> Result<ServiceTree> {
    let mut tree = ServiceTree::default();
    let mut user: UserBundles = BTreeMap::from([("user", Vec::new()), ("user2", Vec::new())]);
    read_s6_rc_dir(&settings.paths, &mut tree, &mut user)?;
    read_bundle_dir(&settings.paths, &mut tree, &mut user)?;
    add_overlay_builtins(settings, &mut tree);
    add_legacy_services(settings, &mut tree)?;
    let paths = &settings.paths;
    for (name, contents) in user {
        let dir = paths.bundle_dir.join(name);
        let mut contents = contents;
        contents.sort();
        contents.dedup();
        tree.services.insert(
            name.into(),
            Service {
                name: name.into(),
                dir,
                kind: Kind::Bundle { contents },
                dependencies: vec![],
                stops_before: vec![],
                timeout_up: None,
                timeout_down: None,
            },
        );
    }
    tree.services.insert(
        "top".into(),
        builtin(
            "top",
            Kind::Bundle {
                contents: vec![
                    "base".into(),
                    "user".into(),
                    "legacy-services".into(),
                    "user2".into(),
                ],
            },
            vec![],
        ),
    );
    Ok(tree)
}

/// `s6-rc.d/*`: the services, and the `user` bundles at their old location.
fn read_s6_rc_dir(paths: &Paths, tree: &mut ServiceTree, user: &mut UserBundles) -> Result<()> {
    for (name, dir) in subdirs(&paths.s6_rc_dir)? {
        if name == "user" || name == "user2" {
            tree.warnings.push(format!(
                "{}: the `{name}` bundle in s6-rc.d is the old location; move it to {}/{name}",
                dir.display(),
                paths.bundle_dir.display()
            ));
            user.get_mut(name.as_str())
                .unwrap()
                .extend(read_names(&dir, "contents")?);
            continue;
        }
        if BUILTIN_NAMES.contains(&name.as_str())
            || name.starts_with("s6rc-")
            || name.starts_with("s6-rc-")
        {
            bail!(
                "{}: `{name}` is a reserved name (s6-overlay defines it)",
                dir.display()
            );
        }
        tree.services
            .insert(name.clone(), parse_service(&name, &dir)?);
    }
    Ok(())
}

/// `user-bundles.d/user` and `user2`.
fn read_bundle_dir(paths: &Paths, tree: &mut ServiceTree, user: &mut UserBundles) -> Result<()> {
    for (name, dir) in subdirs(&paths.bundle_dir)? {
        if let Some(contents) = user.get_mut(name.as_str()) {
            let type_path = dir.join("type");
            if let Some(t) = read_trimmed(&type_path)? {
                if t != "bundle" {
                    bail!(
                        "{}: `{t}`, but `{name}` must be a bundle",
                        type_path.display()
                    );
                }
            }
            contents.extend(read_names(&dir, "contents")?);
        } else {
            tree.warnings.push(format!(
                "{}: ignored (only `user` and `user2` are read from {})",
                dir.display(),
                paths.bundle_dir.display()
            ));
        }
    }

    Ok(())
}

/// s6-overlay's own names: `stage2-hook` (S6_STAGE2_HOOK, first), `fix-attrs`,
/// `legacy-cont-init` (cont-init.d up, cont-finish.d down) and the `base` bundle.
fn add_overlay_builtins(settings: &Settings, tree: &mut ServiceTree) {
    let paths = &settings.paths;
    let hook = settings
        .stage2_hook
        .clone()
        .map_or(Action::Nothing, Action::Shell);
    tree.services.insert(
        "stage2-hook".into(),
        builtin(
            "stage2-hook",
            Kind::Oneshot {
                up: hook,
                down: Action::Nothing,
            },
            vec![],
        ),
    );
    tree.services.insert(
        "fix-attrs".into(),
        builtin(
            "fix-attrs",
            Kind::Oneshot {
                up: Action::Nothing,
                down: Action::Nothing,
            },
            vec!["stage2-hook".into()],
        ),
    );
    let up = if paths.cont_init_dir.is_dir() {
        Action::RunParts {
            dir: paths.cont_init_dir.clone(),
            per_script_limit: None,
        }
    } else {
        Action::Nothing
    };
    let down = if paths.cont_finish_dir.is_dir() {
        Action::RunParts {
            dir: paths.cont_finish_dir.clone(),
            per_script_limit: settings.kill_finish_maxtime,
        }
    } else {
        Action::Nothing
    };
    tree.services.insert(
        "legacy-cont-init".into(),
        builtin(
            "legacy-cont-init",
            Kind::Oneshot { up, down },
            vec!["fix-attrs".into()],
        ),
    );
    tree.services.insert(
        "base".into(),
        builtin(
            "base",
            Kind::Bundle {
                contents: vec!["fix-attrs".into(), "legacy-cont-init".into()],
            },
            vec![],
        ),
    );
}

/// `services.d/*` as longruns after `base` and `user`, and the `legacy-services` oneshot after
/// them all.
fn add_legacy_services(settings: &Settings, tree: &mut ServiceTree) -> Result<()> {
    let paths = &settings.paths;
    let mut legacy_deps = vec!["base".to_string(), "user".to_string()];
    for (name, dir) in subdirs(&paths.services_dir)? {
        if tree.services.contains_key(&name) || name == "user" || name == "user2" {
            bail!(
                "{}: a service named `{name}` is already defined in {}",
                dir.display(),
                paths.s6_rc_dir.display()
            );
        }
        let mut longrun = parse_longrun(&dir, Some(settings.cmd_wait_for_services))?;
        longrun.timeout_kill = longrun.timeout_kill.or(Some(settings.services_gracetime));
        tree.services.insert(
            name.clone(),
            Service {
                name: name.clone(),
                dir: dir.clone(),
                kind: Kind::Longrun(longrun),
                dependencies: vec!["base".into(), "user".into()],
                stops_before: vec![],
                timeout_up: None,
                timeout_down: None,
            },
        );
        legacy_deps.push(name);
    }
    tree.services.insert(
        "legacy-services".into(),
        builtin(
            "legacy-services",
            Kind::Oneshot {
                up: Action::Nothing,
                down: Action::Nothing,
            },
            legacy_deps,
        ),
    );
    Ok(())
}
