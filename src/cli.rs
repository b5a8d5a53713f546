//! The `aiida-devc` command line: one subcommand per piece of the product.

use clap::{Parser, Subcommand};

use crate::collection::{CollectionCommand, CollectionKind};
use crate::devcontainer::{DoctorArgs, InitArgs, UpArgs};
use crate::host::HostOptions;
use crate::image::ImagesCommand;

/// Open an AiiDA plugin in a container: images, devcontainer features and templates, and the
/// devcontainer.json that brings a plugin repository up with a running AiiDA.
#[derive(Debug, Parser)]
#[command(name = "aiida-devc", version, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub host: HostOptions,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Build the aiida-core-base and aiida-core-with-services images.
    #[command(subcommand)]
    Images(ImagesCommand),
    /// Validate, package and publish the devcontainer Features in features/src.
    #[command(subcommand)]
    Features(CollectionCommand),
    /// Validate, package and publish the devcontainer Templates in devcontainer-templates/src.
    #[command(subcommand)]
    Templates(CollectionCommand),
    /// Write or update .devcontainer/devcontainer.json for the AiiDA plugin in a repository.
    Init(InitArgs),
    /// Bring a plugin workspace up in its dev container and wait until AiiDA is ready.
    Up(UpArgs),
    /// Find devcontainer settings that silently break AiiDA's services, and say how to fix them.
    Doctor(DoctorArgs),
}

impl Cli {
    pub fn run(self) -> anyhow::Result<()> {
        let host = self.host.resolve()?;
        match self.command {
            Command::Images(cmd) => cmd.run(&host),
            Command::Features(cmd) => cmd.run(CollectionKind::Features, &host),
            Command::Templates(cmd) => cmd.run(CollectionKind::Templates, &host),
            Command::Init(args) => args.run(&host),
            Command::Up(args) => args.run(&host),
            Command::Doctor(args) => args.run(&host),
        }
    }
}
