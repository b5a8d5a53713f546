//! `aiida-devc up [DIR]`: what "Reopen in Container" does, from a terminal or CI.
//!
//! The workspace is brought up by the reference devcontainer CLI (`devcontainer up`), so the
//! container is exactly the one VS Code would create, lifecycle commands included. Then
//! aiida-devc waits for readiness (`aiida-init wait` in the container), prints the start-up
//! timeline (`aiida-init status --json`: which service took how long) and `verdi status`.
//!
//! Without the CLI (or with `--engine-api`) the container is made through the Docker Engine API
//! instead, the same way for an image-based configuration (see [`super::engine`]).
//!
//! With `--docker-path podman` (VS Code's `dev.containers.dockerPath`), the reference CLI drives
//! that engine CLI instead of `docker`, and aiida-devc runs its own `exec`s through it too (see
//! [`crate::host::podman`] for why the CLI and not Podman's Docker-compatible socket). Under
//! rootless Podman the reference CLI adds `--userns=keep-id` and remaps the container user's UID
//! to the workspace owner's, so the workspace is writable; machine problems that stop rootless
//! Podman (no subordinate IDs, no `newuidmap`, ...) are reported before anything starts.
//!
//! The CLI is looked up as `--devcontainer-cli`, `$DEVCONTAINER_CLI`, `devcontainer` on PATH,
//! then `.tools/devcontainer-cli/node_modules/.bin/devcontainer` below the current folder (where
//! `scripts/bootstrap.sh` installs it).
//!
//! The CA option: when the configuration mounts `${localEnv:AIIDA_DEVC_CA_CERT}` the CLI gets
//! that variable; otherwise a CA bundle in use (see `--ca-cert`) is passed as an extra mount and
//! remote environment of this run only, so nothing machine-specific is written to the repository.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, anyhow, bail};
use serde_json::Value;

use super::config::{self, CA_ENV, CA_TARGET};
use super::engine;
use super::init::config_path;
use super::merge;
use crate::host::Host;
use crate::host::docker::{self, Docker, ExecOutput, exec};
use crate::host::podman::{EngineCli, HostFacts, Pitfalls};

/// Where the container runs: the Docker Engine API, or an engine CLI given with `--docker-path`.
enum Engine {
    Api(Docker),
    Cli(EngineCli),
}

impl Engine {
    async fn has_image(&self, image: &str) -> bool {
        match self {
            Engine::Api(docker) => docker.inspect_image(image).await.is_ok(),
            Engine::Cli(cli) => cli.inspect_image(image).is_some(),
        }
    }

    async fn exec(&self, container: &str, user: &str, cmd: &[&str]) -> anyhow::Result<ExecOutput> {
        match self {
            Engine::Api(docker) => exec(docker, container, user, cmd).await,
            Engine::Cli(cli) => cli.exec(container, user, cmd),
        }
    }
}

/// Stop before anything starts when rootless Podman cannot run a container on this machine.
fn check_podman(cli: &EngineCli) -> anyhow::Result<()> {
    if !cli.is_podman() {
        return Ok(());
    }
    let blocking: Vec<String> = Pitfalls::check(&HostFacts::gather(cli))
        .into_iter()
        .filter(|p| p.blocking)
        .map(|p| format!("  {}: {}\n    fix: {}", p.location, p.problem, p.fix))
        .collect();
    if blocking.is_empty() {
        Ok(())
    } else {
        bail!(
            "rootless Podman cannot start containers on this machine:\n{}\n(`aiida-devc doctor --docker-path {}` checks again)",
            blocking.join("\n"),
            cli.path.display()
        )
    }
}

/// Bring the workspace in DIR up in its dev container (with the reference devcontainer CLI),
/// wait until AiiDA is ready, then print the start-up timeline and `verdi status`.
#[derive(Debug, Clone, clap::Args)]
pub struct UpArgs {
    /// The plugin repository with .devcontainer/devcontainer.json (see `aiida-devc init`).
    #[arg(default_value = ".")]
    pub dir: PathBuf,
    /// The reference devcontainer CLI (`devcontainer`).
    #[arg(long, env = "DEVCONTAINER_CLI", value_name = "PATH")]
    pub devcontainer_cli: Option<PathBuf>,
    /// Bring the container up through the Docker Engine API even when the reference CLI is
    /// there (image-based configurations only).
    #[arg(long)]
    pub engine_api: bool,
    /// The engine CLI the reference CLI drives (`podman`), as its own `--docker-path`; aiida-devc
    /// then talks to that CLI, not to the Docker Engine API.
    #[arg(long, value_name = "PATH")]
    pub docker_path: Option<PathBuf>,
    /// How long to wait for readiness once the container runs, in seconds.
    #[arg(long, default_value_t = config::READY_TIMEOUT_SECS)]
    pub timeout: u32,
}

/// What one `exec` in a container printed.
/// The reference CLI to use (see the module documentation).
pub fn find_cli(explicit: Option<&Path>) -> Option<PathBuf> {
    if let Some(path) = explicit {
        return Some(path.to_owned());
    }
    if let Some(paths) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&paths) {
            let candidate = dir.join("devcontainer");
            if candidate.is_file() {
                return Some(candidate);
            }
        }
    }
    let local = PathBuf::from(".tools/devcontainer-cli/node_modules/.bin/devcontainer");
    local
        .is_file()
        .then(|| std::fs::canonicalize(&local).unwrap_or(local))
}

/// One service of the start-up timeline.
#[derive(Debug, Clone, PartialEq)]
pub struct TimelineRow {
    pub name: String,
    pub state: String,
    /// Milliseconds from the start of aiida-init.
    pub started_ms: Option<u64>,
    pub ready_ms: Option<u64>,
    /// From started to ready.
    pub took_ms: Option<u64>,
}

/// The start-up timeline: when all services were up, and each service.
#[derive(Debug, Clone, PartialEq)]
pub struct Timeline {
    pub services_up_ms: Option<u64>,
    pub rows: Vec<TimelineRow>,
}

/// Read `aiida-init status --json` (aiida-init's state file): when all services were up and,
/// sorted by start, each service but s6-overlay's built-ins that did nothing.
pub fn parse_timeline(json: &str) -> anyhow::Result<Timeline> {
    let state = aiida_init_state::InstanceState::from_json(json)
        .context("aiida-init status --json printed no state")?;
    let mut rows: Vec<TimelineRow> = state
        .services
        .iter()
        .filter(|s| !s.is_empty_builtin())
        .map(|s| TimelineRow {
            name: s.name.clone(),
            state: s.state.as_str().to_owned(),
            started_ms: s.started_ms,
            ready_ms: s.ready_ms,
            took_ms: s.took_ms,
        })
        .collect();
    rows.sort_by_key(|r| {
        (
            r.started_ms.unwrap_or(u64::MAX),
            r.ready_ms.unwrap_or(u64::MAX),
        )
    });
    Ok(Timeline {
        services_up_ms: state.services_up_ms,
        rows,
    })
}

fn seconds(ms: Option<u64>) -> String {
    ms.map_or_else(|| "-".into(), |ms| format!("{:.2} s", ms as f64 / 1000.0))
}

/// The timeline as an aligned table, one service per line in start order.
pub fn format_timeline(timeline: &Timeline) -> String {
    let width = timeline
        .rows
        .iter()
        .map(|r| r.name.len())
        .max()
        .unwrap_or(7)
        .max(7);
    let mut out = format!(
        "{:width$}  {:8}  {:>9}  {:>9}  {:>9}\n",
        "service", "state", "started", "ready", "took"
    );
    for row in &timeline.rows {
        out.push_str(&format!(
            "{:width$}  {:8}  {:>9}  {:>9}  {:>9}\n",
            row.name,
            row.state,
            seconds(row.started_ms),
            seconds(row.ready_ms),
            seconds(row.took_ms)
        ));
    }
    if timeline.services_up_ms.is_some() {
        out.push_str(&format!(
            "all services up after {}\n",
            seconds(timeline.services_up_ms)
        ));
    }
    out
}

/// The variables that make pip, OpenSSL and requests trust the CA bundle.
const CA_VARS: [&str; 3] = ["PIP_CERT", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE"];

/// How a CA bundle reaches the container (see the module documentation).
#[derive(Debug, Default)]
struct CaPassing {
    /// The bundle to name in `AIIDA_DEVC_CA_CERT`, which the configuration mounts.
    env: Option<PathBuf>,
    /// The bundle to mount, with its environment, for this run only.
    run: Option<PathBuf>,
}

impl CaPassing {
    /// The variable the configuration (at `path`, read as `value`) names when it mounts one,
    /// or else the bundle in use (`bundle`) for this run only.
    fn resolve(
        path: &Path,
        value: &Value,
        bundle: Option<&crate::host::ca::CaBundle>,
    ) -> anyhow::Result<CaPassing> {
        let config_mounts_ca = value
            .get("mounts")
            .and_then(Value::as_array)
            .is_some_and(|m| {
                m.iter()
                    .any(|i| merge::identity(i) == format!("target={CA_TARGET}"))
            });
        let mut passing = CaPassing::default();
        if config_mounts_ca {
            if std::env::var_os(CA_ENV).is_none() {
                let bundle = bundle.ok_or_else(|| {
                    anyhow!(
                        "{}: the configuration mounts ${{localEnv:{CA_ENV}}}; set {CA_ENV} to a CA bundle",
                        path.display()
                    )
                })?;
                passing.env = Some(bundle.path.clone());
            }
        } else if let Some(bundle) = bundle {
            passing.run = Some(bundle.path.clone());
        }
        Ok(passing)
    }
}

impl UpArgs {
    pub fn run(&self, host: &Host) -> anyhow::Result<()> {
        let started = Instant::now();
        let dir = std::fs::canonicalize(&self.dir)
            .with_context(|| format!("cannot open the workspace folder {}", self.dir.display()))?;
        let path = config_path(&dir);
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!(
                "{}: cannot read it; run `aiida-devc init {}` first",
                path.display(),
                self.dir.display()
            )
        })?;
        let value = merge::to_value(&path, &text)?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let engine = match &self.docker_path {
            Some(path) => {
                if self.engine_api {
                    bail!(
                        "--engine-api and --docker-path exclude each other: --docker-path {} is driven through \
                         the reference devcontainer CLI",
                        path.display()
                    );
                }
                let cli = EngineCli::new(path);
                check_podman(&cli)?;
                Engine::Cli(cli)
            }
            None => Engine::Api(
                rt.block_on(crate::host::docker::connect())
                    .map_err(|e| match crate::host::podman::installed() {
                        Some(podman) => e.context(format!(
                            "no Docker engine answers, but Podman is installed: `aiida-devc up --docker-path {}`",
                            podman.display()
                        )),
                        None => e,
                    })?,
            ),
        };
        if let Some(image) = value.get("image").and_then(Value::as_str) {
            if !rt.block_on(engine.has_image(image)) {
                let how = match &self.docker_path {
                    Some(path) => format!(
                        "Load it into {p}'s storage (`docker save {image} | {p} load`, or `{p} pull`)",
                        p = path.display()
                    ),
                    None => "Build it with `aiida-devc images build` (or pull it)".into(),
                };
                bail!(
                    "{}: the image {image} is not in the local engine. {how}, then run `aiida-devc up` again",
                    plugin_location(&path, &text, image)
                );
            }
        }
        let ca = CaPassing::resolve(&path, &value, host.ca.bundle())?;

        let cli = if self.engine_api {
            None
        } else {
            find_cli(self.devcontainer_cli.as_deref())
        };
        let (container, user) = match (cli, &engine) {
            (Some(cli), _) => up_with_cli(&cli, &dir, &ca, self.docker_path.as_deref())?,
            (None, Engine::Cli(engine_cli)) => bail!(
                "--docker-path {} needs the reference devcontainer CLI (`npm install -g @devcontainers/cli`, \
                 or --devcontainer-cli PATH)",
                engine_cli.path.display()
            ),
            (None, Engine::Api(docker)) => {
                eprintln!(
                    "aiida-devc: bringing up {} through the Docker Engine API{}",
                    dir.display(),
                    if self.engine_api {
                        ""
                    } else {
                        " (no reference devcontainer CLI found)"
                    }
                );
                rt.block_on(up_with_engine_api(docker, &dir, &path, &value, &ca))?
            }
        };
        let up_secs = started.elapsed().as_secs_f64();
        rt.block_on(self.report_readiness(&engine, &container, &user, started, up_secs))
    }

    /// Wait for AiiDA in the container, print the timeline and `verdi status`; an error when
    /// AiiDA did not become ready or `verdi status` reports a problem.
    async fn report_readiness(
        &self,
        engine: &Engine,
        container: &str,
        user: &str,
        started: Instant,
        up_secs: f64,
    ) -> anyhow::Result<()> {
        let timeout = self.timeout.to_string();
        let wait = engine
            .exec(
                container,
                user,
                &["aiida-init", "wait", "--timeout", &timeout],
            )
            .await?;
        let ready_secs = started.elapsed().as_secs_f64();
        let status = engine
            .exec(container, user, &["aiida-init", "status", "--json"])
            .await?;
        println!(
            "container {} is up after {up_secs:.1} s; AiiDA ready after {ready_secs:.1} s",
            &container[..12.min(container.len())]
        );
        match parse_timeline(&status.stdout) {
            Ok(timeline) => print!(
                "\nstart-up timeline (aiida-init status):\n{}",
                format_timeline(&timeline)
            ),
            Err(e) => println!(
                "\nstart-up timeline unavailable: {e:#}\n{}{}",
                status.stdout, status.stderr
            ),
        }
        let verdi = engine.exec(container, user, &["verdi", "status"]).await?;
        print!("\nverdi status:\n{}{}", verdi.stdout, verdi.stderr);
        if wait.exit_code != 0 {
            bail!(
                "AiiDA did not become ready (aiida-init wait exited {}):\n{}{}",
                wait.exit_code,
                wait.stdout,
                wait.stderr
            );
        }
        if verdi.exit_code != 0 {
            bail!(
                "`verdi status` reports a problem (exit code {})",
                verdi.exit_code
            );
        }
        Ok(())
    }
}

/// `devcontainer up` with the reference CLI; the container id and remote user it reports.
fn up_with_cli(
    cli: &Path,
    dir: &Path,
    ca: &CaPassing,
    docker_path: Option<&Path>,
) -> anyhow::Result<(String, String)> {
    let mut command = Command::new(cli);
    command.arg("up").arg("--workspace-folder").arg(dir);
    if let Some(path) = docker_path {
        command.arg("--docker-path").arg(path);
    }
    if let Some(ca) = &ca.env {
        command.env(CA_ENV, ca);
    }
    if let Some(ca) = &ca.run {
        command.arg("--mount").arg(format!(
            "type=bind,source={},target={CA_TARGET}",
            ca.display()
        ));
        for var in CA_VARS {
            command
                .arg("--remote-env")
                .arg(format!("{var}={CA_TARGET}"));
        }
    }
    eprintln!(
        "aiida-devc: bringing up {} with {}",
        dir.display(),
        cli.display()
    );
    let output = command
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("cannot run {}", cli.display()))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let result: Value = stdout
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .ok_or_else(|| {
            anyhow!(
                "`devcontainer up` failed ({}) and printed no result:\n{stdout}",
                output.status
            )
        })?;
    if result["outcome"] != "success" {
        bail!("`devcontainer up` failed: {result}");
    }
    let container = result["containerId"]
        .as_str()
        .context("`devcontainer up` gave no containerId")?
        .to_owned();
    let user = result["remoteUser"]
        .as_str()
        .unwrap_or(config::USER)
        .to_owned();
    Ok((container, user))
}

/// The same container through the Docker Engine API ([`engine::up`]); its id and remote user.
async fn up_with_engine_api(
    docker: &Docker,
    dir: &Path,
    path: &Path,
    value: &Value,
    ca: &CaPassing,
) -> anyhow::Result<(String, String)> {
    let mut local_env = std::collections::HashMap::new();
    if let Some(ca) = &ca.env {
        local_env.insert(CA_ENV, ca.display().to_string());
    }
    let mut extra = engine::Extra::default();
    if let Some(ca) = &ca.run {
        extra.mounts.push(docker::Mount {
            typ: Some(docker::MountType::BIND),
            source: Some(ca.display().to_string()),
            target: Some(CA_TARGET.into()),
            read_only: Some(true),
            ..Default::default()
        });
        extra.remote_env = CA_VARS.iter().map(|v| format!("{v}={CA_TARGET}")).collect();
    }
    engine::up(docker, &local_env, dir, path, value, &extra).await
}

fn plugin_location(path: &Path, text: &str, needle: &str) -> crate::plugin::Location {
    crate::plugin::Location::of(path, text, needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_timeline_is_read_from_the_status_json_sorted_and_aligned() {
        let json = r#"{"pid": 1, "services_up_ms": 7100, "services": [
            {"name": "aiida-daemon", "state": "ready", "pid": 40, "started_ms": 3100, "ready_ms": 7100, "took_ms": 4000},
            {"name": "fix-attrs", "state": "up", "started_ms": 0, "ready_ms": 0, "took_ms": 0},
            {"name": "postgresql", "state": "ready", "pid": 12, "started_ms": 5, "ready_ms": 812, "took_ms": 807}]}"#;
        let timeline = parse_timeline(json).unwrap();
        assert_eq!(timeline.rows.len(), 2);
        assert_eq!(
            format_timeline(&timeline),
            "service       state       started      ready       took\n\
             postgresql    ready        0.01 s     0.81 s     0.81 s\n\
             aiida-daemon  ready        3.10 s     7.10 s     4.00 s\n\
             all services up after 7.10 s\n"
        );
    }

    #[test]
    fn the_timeline_reads_well() {
        let row = |name: &str, state: &str, started, ready, took| TimelineRow {
            name: name.into(),
            state: state.into(),
            started_ms: started,
            ready_ms: ready,
            took_ms: took,
        };
        let timeline = Timeline {
            services_up_ms: Some(12_345),
            rows: vec![
                row("postgresql", "ready", Some(5), Some(812), Some(807)),
                row("rabbitmq", "ready", Some(6), Some(6_204), Some(6_198)),
                row("aiida-prepare", "up", Some(6_210), Some(9_100), Some(2_890)),
                row(
                    "aiida-daemon",
                    "ready",
                    Some(9_105),
                    Some(12_345),
                    Some(3_240),
                ),
                row("aiida-hook-late", "failed", Some(12_400), None, None),
            ],
        };
        insta::assert_snapshot!(format_timeline(&timeline));
    }

    #[test]
    fn status_output_that_is_not_json_is_an_error() {
        assert!(parse_timeline("no such command").is_err());
    }
}
