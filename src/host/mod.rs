//! What every command needs from the machine it runs on: the Docker engine ([`docker`]), the
//! CA bundle that builds and containers must trust ([`ca`]), aiida-init built from this
//! workspace ([`aiida_init`]), an engine reached through its CLI such as rootless Podman
//! ([`podman`]), and the options that select them.

pub mod aiida_init;
pub mod ca;
pub mod docker;
pub mod podman;

use std::path::PathBuf;

/// Options shared by every subcommand (see `aiida-devc --help`).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct HostOptions {
    /// PEM bundle of CA certificates that image builds and containers trust for https (pip,
    /// cargo, git). Needed behind TLS-intercepting proxies. Defaults to the host's bundle when it
    /// holds certificates beyond Debian's stock set; `--ca-cert none` turns it off.
    #[arg(long, global = true, env = "AIIDA_DEVC_CA_CERT", value_name = "FILE")]
    pub ca_cert: Option<PathBuf>,
}

impl HostOptions {
    /// Resolve the options once, before a command does any work.
    pub fn resolve(&self) -> anyhow::Result<Host> {
        Ok(Host {
            ca: ca::Ca::resolve(self.ca_cert.as_deref())?,
        })
    }
}

/// [`HostOptions`], resolved: what the commands are given.
#[derive(Debug, Clone, Default)]
pub struct Host {
    pub ca: ca::Ca,
}
