//! devcontainer collections: the Features in `features/src` and Templates in
//! `devcontainer-templates/src`, validated, packaged and published (`aiida-devc features|templates`).
use clap::Subcommand;

/// `aiida-devc features ...` and `aiida-devc templates ...`
#[derive(Debug, Subcommand)]
pub enum CollectionCommand {}

impl CollectionCommand {
    pub fn run(self, _kind: CollectionKind, _host: &crate::host::HostOptions) -> anyhow::Result<()> {
        match self {}
    }
}

/// Which collection a command works on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CollectionKind {
    Features,
    Templates,
}
