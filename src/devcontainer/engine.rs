//! `aiida-devc up` without the reference CLI: the same container through the Docker Engine API.
//!
//! Covers what an image-based configuration written by `aiida-devc init` uses, the way the
//! reference CLI does it:
//!
//! * the container carries the CLI's identifying labels (`devcontainer.local_folder`,
//!   `devcontainer.config_file`), so the CLI and this path find each other's containers, and
//!   `${devcontainerId}` is computed from them with the CLI's formula (so both use the same
//!   home volume);
//! * the workspace is bind-mounted at `/workspaces/<folder name>`; `mounts`, `containerEnv`,
//!   `containerUser`, `overrideCommand` (false: the image's entry point runs; otherwise a sleep
//!   loop) are honoured, with `${localEnv:VAR[:default]}`, `${localWorkspaceFolder}`,
//!   `${localWorkspaceFolderBasename}`, `${containerWorkspaceFolder}` and `${devcontainerId}`
//!   substituted;
//! * once per container, login shells are given the container's environment as the CLI does
//!   (`/etc/environment`, a PATH-preserving `/etc/profile`, with the CLI's marker files);
//! * `onCreateCommand`, `updateContentCommand` and `postCreateCommand` run once, when the
//!   container is created, and `postStartCommand` at each start, as `remoteUser` in the workspace folder with `remoteEnv` (string: `/bin/sh -c`,
//!   array: run as is).
//!
//! Features, Dockerfiles and Compose are the reference CLI's job: such a configuration is refused
//! with a message that says to install it.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use anyhow::{Context, anyhow, bail};
use serde_json::Value;

use crate::host::docker::{
    ContainerCreateBody, ContainerSummary, ContainerSummaryStateEnum, CreateContainerOptions,
    Docker, ExecSpec, HostConfig, InspectContainerOptions, ListContainersOptions, Mount, MountType,
    StartContainerOptions, exec_streaming,
};

/// The labels that identify a workspace's container, as the reference CLI sets them.
pub fn id_labels(workspace: &Path, config_file: &Path) -> BTreeMap<String, String> {
    BTreeMap::from([
        (
            "devcontainer.local_folder".to_string(),
            workspace.display().to_string(),
        ),
        (
            "devcontainer.config_file".to_string(),
            config_file.display().to_string(),
        ),
    ])
}

/// `${devcontainerId}`: the SHA-256 of the labels as sorted JSON, written in base 32 (digits
/// `0-9a-v`) and padded to 52 characters, as the reference CLI computes it.
pub fn devcontainer_id(labels: &BTreeMap<String, String>) -> String {
    use sha2::Digest;
    let json = serde_json::to_string(labels).expect("labels serialise");
    let mut number: Vec<u8> = sha2::Sha256::digest(json.as_bytes()).to_vec();
    let mut digits = Vec::new();
    while number.iter().any(|b| *b != 0) {
        let mut remainder = 0u32;
        for byte in &mut number {
            let value = (remainder << 8) | u32::from(*byte);
            *byte = u8::try_from(value / 32).expect("remainder < 32, so value / 32 < 256");
            remainder = value % 32;
        }
        digits.push(std::char::from_digit(remainder, 32).unwrap());
    }
    let id: String = digits.iter().rev().collect();
    format!("{id:0>52}")
}

/// Substitute the variables of the module documentation in `text`.
pub fn substitute(text: &str, vars: &HashMap<&str, String>) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let Some(end) = rest[start..].find('}') else {
            out.push_str(&rest[start..]);
            return out;
        };
        let name = &rest[start + 2..start + end];
        let value = if let Some(local) = name
            .strip_prefix("localEnv:")
            .or_else(|| name.strip_prefix("env:"))
        {
            let (var, default) = local.split_once(':').unwrap_or((local, ""));
            match vars.get(format!("localEnv:{var}").as_str()) {
                Some(value) => value.clone(),
                None => std::env::var(var).unwrap_or_else(|_| default.to_owned()),
            }
        } else if let Some(value) = vars.get(name) {
            value.clone()
        } else {
            rest[start..=(start + end)].to_owned()
        };
        out.push_str(&value);
        rest = &rest[start + end + 1..];
    }
    out.push_str(rest);
    out
}

fn mount_from(value: &Value, vars: &HashMap<&str, String>) -> anyhow::Result<Mount> {
    let fields: BTreeMap<String, String> = match value {
        Value::Object(map) => map
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    v.as_str().map_or_else(|| v.to_string(), str::to_owned),
                )
            })
            .collect(),
        Value::String(s) => s
            .split(',')
            .filter_map(|part| {
                part.split_once('=')
                    .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
            })
            .collect(),
        other => bail!("a mount must be an object or a string, not {other}"),
    };
    let get = |keys: &[&str]| {
        keys.iter()
            .find_map(|k| fields.get(*k))
            .map(|v| substitute(v, vars))
    };
    let typ = match get(&["type"]).as_deref() {
        Some("bind") => MountType::BIND,
        Some("volume") | None => MountType::VOLUME,
        Some(other) => bail!("mount type {other:?} is not supported (bind or volume)"),
    };
    Ok(Mount {
        typ: Some(typ),
        source: get(&["source", "src"]),
        target: Some(
            get(&["target", "dst", "destination"])
                .ok_or_else(|| anyhow!("a mount without a target: {value}"))?,
        ),
        read_only: fields.contains_key("readonly").then_some(true),
        ..Default::default()
    })
}

fn string_map(value: Option<&Value>, vars: &HashMap<&str, String>) -> Vec<String> {
    value
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_str().map(|v| format!("{k}={}", substitute(v, vars))))
                .collect()
        })
        .unwrap_or_default()
}

/// Extra settings of this run only (the CA option).
#[derive(Debug, Default, Clone)]
pub struct Extra {
    pub mounts: Vec<Mount>,
    pub remote_env: Vec<String>,
}

/// Bring the workspace up; returns the container id and the remote user.
pub async fn up(
    docker: &Docker,
    local_env: &HashMap<&'static str, String>,
    workspace: &Path,
    config_file: &Path,
    config: &Value,
    extra: &Extra,
) -> anyhow::Result<(String, String)> {
    refuse_what_needs_the_cli(config_file, config)?;
    let image = config
        .get("image")
        .and_then(Value::as_str)
        .ok_or_else(|| anyhow!("{}: no `image`", config_file.display()))?;
    let target = Target::new(local_env, workspace, config_file);
    let remote_user = config
        .get("remoteUser")
        .or_else(|| config.get("containerUser"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    let mut remote_env = string_map(config.get("remoteEnv"), &target.vars);
    remote_env.extend(extra.remote_env.iter().cloned());

    let user = remote_user.clone().unwrap_or_else(|| "root".into());
    let (container, created) = match find_container(docker, &target.labels).await? {
        Some(summary) => {
            let container = summary.id.context("a container without an id")?;
            let running = summary.state == Some(ContainerSummaryStateEnum::RUNNING);
            if running {
                return Ok((container, user));
            }
            (container, false)
        }
        None => {
            let id = create_container(docker, &target, config_file, config, image, extra).await?;
            (id, true)
        }
    };
    docker
        .start_container(&container, None::<StartContainerOptions>)
        .await?;
    if created {
        patch_login_environment(docker, &container).await?;
    }
    // As the reference CLI: onCreateCommand, updateContentCommand and postCreateCommand once,
    // when the container is created, then postStartCommand on every start.
    let hooks: &[&str] = if created {
        &[
            "onCreateCommand",
            "updateContentCommand",
            "postCreateCommand",
            "postStartCommand",
        ]
    } else {
        &["postStartCommand"]
    };
    for &hook in hooks {
        if let Some(command) = config.get(hook) {
            lifecycle(
                docker,
                &container,
                &user,
                &target.container_folder,
                &remote_env,
                hook,
                command,
            )
            .await?;
        }
    }
    Ok((container, user))
}

/// Refuse a configuration that builds an image, runs Compose or installs Features.
fn refuse_what_needs_the_cli(config_file: &Path, config: &Value) -> anyhow::Result<()> {
    for key in ["build", "dockerFile", "dockerComposeFile", "features"] {
        if config
            .get(key)
            .is_some_and(|v| !v.is_null() && v != &Value::Object(Default::default()))
        {
            bail!(
                "{}: `{key}` needs the reference devcontainer CLI (`npm install -g @devcontainers/cli`); \
                 without it aiida-devc handles image-based configurations only",
                config_file.display()
            );
        }
    }
    Ok(())
}

/// The dev container of one workspace and configuration: its identifying labels, where the
/// workspace goes in it, and the variables substituted in its settings.
struct Target {
    labels: BTreeMap<String, String>,
    /// The workspace on the host, and where it is bind-mounted in the container.
    local_folder: String,
    container_folder: String,
    vars: HashMap<&'static str, String>,
}

impl Target {
    fn new(
        local_env: &HashMap<&'static str, String>,
        workspace: &Path,
        config_file: &Path,
    ) -> Target {
        let labels = id_labels(workspace, config_file);
        let id = devcontainer_id(&labels);
        let basename = workspace
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let container_folder = format!("/workspaces/{basename}");
        let mut vars: HashMap<&'static str, String> =
            local_env.iter().map(|(k, v)| (*k, v.clone())).collect();
        vars.extend([
            ("devcontainerId", id),
            ("localWorkspaceFolder", workspace.display().to_string()),
            ("localWorkspaceFolderBasename", basename),
            ("containerWorkspaceFolder", container_folder.clone()),
        ]);
        Target {
            labels,
            local_folder: workspace.display().to_string(),
            container_folder,
            vars,
        }
    }
}

/// The container that carries `labels`, running or not.
async fn find_container(
    docker: &Docker,
    labels: &BTreeMap<String, String>,
) -> anyhow::Result<Option<ContainerSummary>> {
    let filters = HashMap::from([(
        "label".to_string(),
        labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>(),
    )]);
    Ok(docker
        .list_containers(Some(ListContainersOptions {
            all: true,
            filters: Some(filters),
            ..Default::default()
        }))
        .await?
        .into_iter()
        .next())
}

/// Create (not start) the container of `target` from `image`; returns its id.
async fn create_container(
    docker: &Docker,
    target: &Target,
    config_file: &Path,
    config: &Value,
    image: &str,
    extra: &Extra,
) -> anyhow::Result<String> {
    let vars = &target.vars;
    let mut mounts = vec![Mount {
        typ: Some(MountType::BIND),
        source: Some(target.local_folder.clone()),
        target: Some(target.container_folder.clone()),
        ..Default::default()
    }];
    for mount in config
        .get("mounts")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        mounts.push(
            mount_from(mount, vars)
                .with_context(|| format!("{}: mounts", config_file.display()))?,
        );
    }
    mounts.extend(extra.mounts.iter().cloned());
    let keep_entrypoint = keeps_entry_point(docker, config, image).await?;
    let mut all_labels: HashMap<String, String> = target.labels.clone().into_iter().collect();
    all_labels.insert("dev.aiida-devc.engine-api".into(), "true".into());
    let body = ContainerCreateBody {
        image: Some(image.to_owned()),
        env: Some(string_map(config.get("containerEnv"), vars)),
        user: config
            .get("containerUser")
            .and_then(Value::as_str)
            .map(str::to_owned),
        labels: Some(all_labels),
        entrypoint: (!keep_entrypoint).then(|| vec!["/bin/sh".into()]),
        cmd: (!keep_entrypoint).then(|| {
            vec![
                "-c".into(),
                "trap 'exit 0' TERM; while sleep 1 & wait $!; do :; done".into(),
            ]
        }),
        host_config: Some(HostConfig {
            mounts: Some(mounts),
            ..Default::default()
        }),
        ..Default::default()
    };
    let created = docker
        .create_container(None::<CreateContainerOptions>, body)
        .await?;
    Ok(created.id)
}

/// Whether the image's entry point runs: `overrideCommand: false`, or unset and the image's
/// `devcontainer.metadata` label sets it to false.
async fn keeps_entry_point(docker: &Docker, config: &Value, image: &str) -> anyhow::Result<bool> {
    let override_command = config.get("overrideCommand").and_then(Value::as_bool);
    let inspect = docker
        .inspect_image(image)
        .await
        .with_context(|| format!("the image {image}"))?;
    let label_false = inspect
        .config
        .as_ref()
        .and_then(|c| c.labels.as_ref())
        .and_then(|l| l.get("devcontainer.metadata"))
        .is_some_and(|m| {
            m.contains("\"overrideCommand\":false") || m.contains("\"overrideCommand\": false")
        });
    Ok(override_command == Some(false) || (override_command.is_none() && label_false))
}

/// Where the reference CLI keeps its once-per-container markers.
const SYSTEM_DATA_FOLDER: &str = "/var/devcontainer";

/// What the reference CLI does once in every container it creates, so that login shells (VS
/// Code's terminals, the CLI's environment probe) see the container's environment: append it to
/// `/etc/environment`, and make `/etc/profile` keep an inherited PATH (`PATH=${PATH:-…}`). The
/// CLI's marker files are used, so neither side does it twice.
async fn patch_login_environment(docker: &Docker, container: &str) -> anyhow::Result<()> {
    let inspect = docker
        .inspect_container(container, None::<InspectContainerOptions>)
        .await?;
    let env = inspect.config.and_then(|c| c.env).unwrap_or_default();
    let lines: String = env
        .iter()
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| format!("{k}=\"{v}\"\n"))
        .collect();
    let script = format!(
        "set -e\n\
         marker={SYSTEM_DATA_FOLDER}/.patchEtcEnvironmentMarker\n\
         if [ ! -f \"$marker\" ]; then mkdir -p {SYSTEM_DATA_FOLDER}; : > \"$marker\"\n\
         cat >> /etc/environment <<'AIIDA_DEVC_EOF'\n{lines}AIIDA_DEVC_EOF\nfi\n\
         marker={SYSTEM_DATA_FOLDER}/.patchEtcProfileMarker\n\
         if [ ! -f \"$marker\" ]; then : > \"$marker\"\n\
         sed -i -E 's/((^|\\s)PATH=)([^\\$]*)$/\\1${{PATH:-\\3}}/g' /etc/profile || true\nfi\n"
    );
    let spec = ExecSpec {
        cmd: vec!["/bin/sh".to_string(), "-c".to_string(), script],
        user: "root",
        ..ExecSpec::default()
    };
    let mut output_text = String::new();
    let code = exec_streaming(docker, container, spec, |_, text| {
        output_text.push_str(text);
    })
    .await?;
    if code != 0 {
        bail!(
            "patching /etc/environment and /etc/profile in the container failed ({code}): {output_text}"
        );
    }
    Ok(())
}

/// Run one lifecycle command, its output streamed to stderr; an error when it fails.
async fn lifecycle(
    docker: &Docker,
    container: &str,
    user: &str,
    folder: &str,
    env: &[String],
    hook: &str,
    command: &Value,
) -> anyhow::Result<()> {
    let cmd: Vec<String> = match command {
        Value::String(s) => vec!["/bin/sh".into(), "-c".into(), s.clone()],
        Value::Array(items) => items
            .iter()
            .filter_map(|i| i.as_str().map(str::to_owned))
            .collect(),
        other => bail!("{hook}: only a string or an array is supported here, not {other}"),
    };
    eprintln!("aiida-devc: running the {hook}: {}", cmd.join(" "));
    let spec = ExecSpec {
        cmd,
        user,
        working_dir: Some(folder),
        env: env.to_vec(),
    };
    let code = exec_streaming(docker, container, spec, |_, text| eprint!("{text}")).await?;
    if code != 0 {
        bail!("the {hook} failed with exit code {code}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_id_is_base32_of_the_sorted_labels_hash_padded_to_52() {
        let labels = id_labels(
            Path::new("/tmp/ws"),
            Path::new("/tmp/ws/.devcontainer/devcontainer.json"),
        );
        let id = devcontainer_id(&labels);
        assert_eq!(id.len(), 52);
        assert!(
            id.chars()
                .all(|c| c.is_ascii_digit() || ('a'..='v').contains(&c)),
            "{id}"
        );
    }

    #[test]
    fn variables_are_substituted_and_unknown_ones_kept() {
        let vars = HashMap::from([("devcontainerId", "abc".to_string())]);
        assert_eq!(
            substitute("home-${devcontainerId}-${unknown}", &vars),
            "home-abc-${unknown}"
        );
        assert_eq!(
            substitute("${localEnv:AIIDA_DEVC_SURELY_UNSET:/x}", &vars),
            "/x"
        );
    }
}
