//! The Docker engine: one connection, with an error that says what to do when there is none.

use anyhow::{Context, anyhow};
use bollard::Docker;

/// The oldest Engine API this project is tested against (Debian 12's docker.io 20.10).
pub const MIN_API_VERSION: &str = "1.41";

/// Connect to the engine named by `DOCKER_HOST`, or the local socket, and check that it answers.
pub async fn connect() -> anyhow::Result<Docker> {
    let docker = Docker::connect_with_defaults()
        .context("cannot set up a Docker engine client (check DOCKER_HOST)")?;
    let docker = docker
        .negotiate_version()
        .await
        .map_err(|e| no_engine(&e))?;
    docker.ping().await.map_err(|e| no_engine(&e))?;
    Ok(docker)
}

fn no_engine(err: &bollard::errors::Error) -> anyhow::Error {
    let target =
        std::env::var("DOCKER_HOST").unwrap_or_else(|_| "unix:///var/run/docker.sock".into());
    anyhow!(
        "no Docker engine answers at {target} ({err}).\n\
         Start one (`dockerd &`, or `bash scripts/bootstrap.sh` as root installs and starts it), \
         or point DOCKER_HOST at a running engine."
    )
}
