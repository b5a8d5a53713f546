//! Image builds: `aiida-devc images build` drives Dockerfiles/ through the Docker Engine API.
use clap::Subcommand;

/// `aiida-devc images ...`
#[derive(Debug, Subcommand)]
pub enum ImagesCommand {}

impl ImagesCommand {
    pub fn run(self, _host: &crate::host::HostOptions) -> anyhow::Result<()> {
        match self {}
    }
}
