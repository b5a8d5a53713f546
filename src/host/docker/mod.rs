//! The Docker engine, and the one module of the CLI that talks to it through bollard: finding
//! the engine ([`endpoint`]), connecting, running a command in a container ([`exec`]), running
//! a throw-away container to its end ([`run_to_end`]), and the Engine API types the rest of the
//! crate uses (re-exported here, so that no other module names bollard).

pub mod endpoint;

use anyhow::{Context, anyhow, bail};
use futures_util::StreamExt;

pub use bollard::Docker;
pub use bollard::auth::DockerCredentials;
pub use bollard::body_full;
pub use bollard::errors::Error;
pub use bollard::models::{
    ContainerCreateBody, ContainerSummary, ContainerSummaryStateEnum, HostConfig, Mount, MountType,
};
pub use bollard::query_parameters::{
    BuildImageOptions, CreateContainerOptions, DownloadFromContainerOptions,
    InspectContainerOptions, ListContainersOptions, ListImagesOptions, LogsOptions,
    PushImageOptions, RemoveContainerOptions, StartContainerOptions, StopContainerOptions,
    TagImageOptions, WaitContainerOptions,
};

/// The oldest Engine API this project is tested against (Debian 12's docker.io 20.10).
pub const MIN_API_VERSION: &str = "1.41";

/// Connect to the engine [`endpoint::resolve`] finds and check that it answers.
pub async fn connect() -> anyhow::Result<Docker> {
    let found = endpoint();
    let docker = client_for(&found)
        .with_context(|| format!("cannot set up a Docker engine client for {found}"))?;
    let docker = docker
        .negotiate_version()
        .await
        .map_err(|e| no_engine(&found, &e))?;
    docker.ping().await.map_err(|e| no_engine(&found, &e))?;
    Ok(docker)
}

/// The engine this process talks to, and why (`aiida-devc doctor` prints it).
pub fn endpoint() -> endpoint::Endpoint {
    endpoint::resolve(&endpoint::Environment::from_process())
}

/// A client for the engine [`endpoint::resolve`] finds, not connected yet (the first request
/// fails when none answers).
pub fn local_client() -> Result<Docker, Error> {
    client_for(&endpoint())
}

/// A client for `found` (not connected yet). `DOCKER_HOST` goes through bollard's own reading
/// of the environment, which also honours `DOCKER_TLS_VERIFY` and `DOCKER_CERT_PATH`.
fn client_for(found: &endpoint::Endpoint) -> Result<Docker, Error> {
    const TIMEOUT_S: u64 = 120;
    if found.source == endpoint::Source::DockerHost {
        return Docker::connect_with_defaults();
    }
    #[cfg(unix)]
    if let Some(path) = found.address.strip_prefix("unix://") {
        return Docker::connect_with_unix(path, TIMEOUT_S, bollard::API_DEFAULT_VERSION);
    }
    #[cfg(windows)]
    if found.address.starts_with("npipe://") {
        return Docker::connect_with_named_pipe(
            &found.address,
            TIMEOUT_S,
            bollard::API_DEFAULT_VERSION,
        );
    }
    Docker::connect_with_http(&found.address, TIMEOUT_S, bollard::API_DEFAULT_VERSION)
}

fn no_engine(found: &endpoint::Endpoint, err: &Error) -> anyhow::Error {
    let target = &found.address;
    anyhow!(
        "no Docker engine answers at {target} ({err}).\n\
         Start one (`dockerd &`, or `bash scripts/bootstrap.sh` as root installs and starts it), \
         or point DOCKER_HOST at a running engine."
    )
}

/// What [`exec`] runs: a command, as a user, optionally in a folder and with more environment.
#[derive(Debug, Clone, Default)]
pub struct ExecSpec<'a> {
    pub cmd: Vec<String>,
    pub user: &'a str,
    pub working_dir: Option<&'a str>,
    pub env: Vec<String>,
}

/// One piece of output of [`exec`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// What an [`exec`] that collected its output left.
#[derive(Debug, Clone)]
pub struct ExecOutput {
    pub exit_code: i64,
    pub stdout: String,
    pub stderr: String,
}

/// Run `spec` in the running `container`, giving each piece of its output to `output` as it
/// comes; returns the exit code (-1 when the engine does not say).
pub async fn exec_streaming(
    docker: &Docker,
    container: &str,
    spec: ExecSpec<'_>,
    mut output: impl FnMut(Stream, &str),
) -> anyhow::Result<i64> {
    use bollard::container::LogOutput;
    use bollard::exec::{CreateExecOptions, StartExecResults};
    let created = docker
        .create_exec(
            container,
            CreateExecOptions {
                cmd: Some(spec.cmd),
                user: Some(spec.user.to_owned()),
                working_dir: spec.working_dir.map(str::to_owned),
                env: (!spec.env.is_empty()).then_some(spec.env),
                attach_stdout: Some(true),
                attach_stderr: Some(true),
                ..Default::default()
            },
        )
        .await?;
    if let StartExecResults::Attached {
        output: mut chunks, ..
    } = docker.start_exec(&created.id, None).await?
    {
        while let Some(chunk) = chunks.next().await {
            match chunk? {
                LogOutput::StdOut { message } => {
                    output(Stream::Stdout, &String::from_utf8_lossy(&message));
                }
                LogOutput::StdErr { message } => {
                    output(Stream::Stderr, &String::from_utf8_lossy(&message));
                }
                _ => {}
            }
        }
    }
    Ok(docker
        .inspect_exec(&created.id)
        .await?
        .exit_code
        .unwrap_or(-1))
}

/// Run `cmd` in the running `container` as `user` and collect its output.
pub async fn exec(
    docker: &Docker,
    container: &str,
    user: &str,
    cmd: &[&str],
) -> anyhow::Result<ExecOutput> {
    let (mut stdout, mut stderr) = (String::new(), String::new());
    let spec = ExecSpec {
        cmd: cmd.iter().map(ToString::to_string).collect(),
        user,
        ..ExecSpec::default()
    };
    let exit_code = exec_streaming(docker, container, spec, |stream, text| match stream {
        Stream::Stdout => stdout.push_str(text),
        Stream::Stderr => stderr.push_str(text),
    })
    .await
    .with_context(|| format!("cannot exec {cmd:?} in container {container}"))?;
    Ok(ExecOutput {
        exit_code,
        stdout,
        stderr,
    })
}

/// How a container of [`run_to_end`] ended, and what it wrote.
#[derive(Debug, Clone)]
pub struct Finished {
    pub exit_code: i64,
    /// Its stdout (and stderr, when asked for), in order.
    pub output: String,
}

/// Create the container `body` (named `name`, or by the engine), start it, wait for its end and
/// collect its output (`stderr` too if asked); the container is removed either way. Errors
/// say "cannot create a container from IMAGE" when the engine refuses it.
pub async fn run_to_end(
    docker: &Docker,
    name: Option<&str>,
    body: ContainerCreateBody,
    stderr: bool,
) -> anyhow::Result<Finished> {
    let image = body.image.clone().unwrap_or_default();
    let create = name.map(|name| CreateContainerOptions {
        name: Some(name.to_owned()),
        ..Default::default()
    });
    let created = docker
        .create_container(create, body)
        .await
        .with_context(|| format!("cannot create a container from {image}"))?;
    let id = created.id;
    let result = async {
        docker
            .start_container(&id, None::<StartContainerOptions>)
            .await?;
        let mut wait = docker.wait_container(&id, None::<WaitContainerOptions>);
        let exit_code = match wait.next().await {
            Some(Ok(status)) => status.status_code,
            // bollard reports a non-zero exit as an error carrying the code.
            Some(Err(Error::DockerContainerWaitError { code, .. })) => code,
            other => bail!("waiting for the container from {image}: {other:?}"),
        };
        let mut logs = docker.logs(
            &id,
            Some(LogsOptions {
                stdout: true,
                stderr,
                ..Default::default()
            }),
        );
        let mut output = String::new();
        while let Some(chunk) = logs.next().await {
            output.push_str(&chunk?.to_string());
        }
        Ok(Finished { exit_code, output })
    }
    .await;
    remove(docker, &id).await;
    result
}

/// A file copied out of an image by [`copy_out`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopiedFile {
    /// Its path below the folder that was copied, e.g. `usr/lib/x`.
    pub path: String,
    pub contents: Vec<u8>,
    pub mode: u32,
}

/// The regular files below `folder` in `image`, read through a container that is created (never
/// started) and removed again. Fails when the folder is missing or holds no file.
pub async fn copy_out(
    docker: &Docker,
    image: &str,
    folder: &str,
) -> anyhow::Result<Vec<CopiedFile>> {
    let created = docker
        .create_container(
            None::<CreateContainerOptions>,
            ContainerCreateBody {
                image: Some(image.to_owned()),
                entrypoint: Some(vec!["/nonexistent".to_owned()]),
                ..Default::default()
            },
        )
        .await
        .with_context(|| format!("cannot create a container from {image}"))?;
    let result = async {
        let mut stream = docker.download_from_container(
            &created.id,
            Some(DownloadFromContainerOptions {
                path: folder.to_owned(),
            }),
        );
        let mut archive = Vec::new();
        while let Some(chunk) = stream.next().await {
            archive.extend_from_slice(
                &chunk.with_context(|| format!("cannot copy {folder} out of {image}"))?,
            );
        }
        files_below(&archive, folder)
    }
    .await;
    remove(docker, &created.id).await;
    let files = result?;
    if files.is_empty() {
        bail!("{folder} in {image} holds no file");
    }
    Ok(files)
}

/// The regular files of the engine's archive of `folder` (whose entries start with the folder's
/// last component), with paths below it.
fn files_below(archive: &[u8], folder: &str) -> anyhow::Result<Vec<CopiedFile>> {
    let top = folder
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or_default();
    let mut files = Vec::new();
    for entry in tar::Archive::new(archive).entries()? {
        let mut entry = entry?;
        if entry.header().entry_type() != tar::EntryType::Regular {
            continue;
        }
        let path = entry.path()?.to_string_lossy().into_owned();
        let Some(below) = path.strip_prefix(top).and_then(|p| p.strip_prefix('/')) else {
            bail!("the engine's archive of {folder} holds {path}, outside it");
        };
        let below = below.to_owned();
        let mode = entry.header().mode()?;
        let mut contents = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut contents)?;
        files.push(CopiedFile {
            path: below,
            contents,
            mode,
        });
    }
    Ok(files)
}

/// Remove a container (and its anonymous volumes), running or not; errors are ignored.
pub async fn remove(docker: &Docker, container: &str) {
    let options = RemoveContainerOptions {
        force: true,
        v: true,
        ..Default::default()
    };
    let _ = docker.remove_container(container, Some(options)).await;
}

/// The last `lines` lines of a container's output (stdout and stderr); empty when unreadable.
pub async fn log_tail(docker: &Docker, container: &str, lines: usize) -> String {
    let mut logs = docker.logs(
        container,
        Some(LogsOptions {
            stdout: true,
            stderr: true,
            tail: lines.to_string(),
            ..Default::default()
        }),
    );
    let mut text = String::new();
    while let Some(Ok(chunk)) = logs.next().await {
        text.push_str(&chunk.to_string());
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn archive(entries: &[(&str, &[u8], u32)]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        builder
            .append_dir("out", std::env::temp_dir())
            .expect("a folder entry");
        for (path, contents, mode) in entries {
            let mut header = tar::Header::new_gnu();
            header.set_size(contents.len() as u64);
            header.set_mode(*mode);
            header.set_entry_type(tar::EntryType::Regular);
            builder
                .append_data(&mut header, path, *contents)
                .expect("a file entry");
        }
        builder.into_inner().expect("an archive")
    }

    #[test]
    fn files_below_the_copied_folder_keep_their_paths_and_modes_without_folders() {
        let tar = archive(&[
            ("out/erlang-version", b"1:25.2.3\n", 0o644),
            (
                "out/usr/lib/erlang/erts-13.1.5/bin/beam.emu",
                b"\x7fELF",
                0o755,
            ),
        ]);
        let files = files_below(&tar, "/out").expect("the archive reads");
        assert_eq!(
            files,
            vec![
                CopiedFile {
                    path: "erlang-version".into(),
                    contents: b"1:25.2.3\n".to_vec(),
                    mode: 0o644,
                },
                CopiedFile {
                    path: "usr/lib/erlang/erts-13.1.5/bin/beam.emu".into(),
                    contents: b"\x7fELF".to_vec(),
                    mode: 0o755,
                },
            ]
        );
    }

    #[test]
    fn a_file_outside_the_copied_folder_is_refused() {
        let tar = archive(&[("elsewhere/file", b"x", 0o644)]);
        let error = files_below(&tar, "/out").unwrap_err().to_string();
        assert!(error.contains("elsewhere/file"), "{error}");
    }
}
