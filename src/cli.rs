//! The `aiida-devc` command line: one subcommand per piece of the product.

use clap::{CommandFactory, Parser, Subcommand};

use crate::collection::{CollectionCommand, CollectionKind};
use crate::devcontainer::{DoctorArgs, InitArgs, UpArgs};
use crate::host::HostOptions;
use crate::image::ImagesCommand;

/// `aiida-devc --version`: the package version and the git commit it was built from (`unknown`
/// when built from an sdist or a crate without `AIIDA_DEVC_GIT_COMMIT`; see build.rs).
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("AIIDA_DEVC_GIT_COMMIT"),
    ")"
);

/// Open an AiiDA plugin in a container: images, devcontainer features and templates, and the
/// devcontainer.json that brings a plugin repository up with a running AiiDA.
#[derive(Debug, Parser)]
#[command(name = "aiida-devc", version = VERSION, propagate_version = true)]
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
    /// Print a completion script for a shell, e.g. `aiida-devc completions bash >
    /// ~/.local/share/bash-completion/completions/aiida-devc`.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

impl Cli {
    pub fn run(self) -> anyhow::Result<()> {
        if let Command::Completions { shell } = self.command {
            // Nothing of the machine is needed (not even the CA option resolved).
            completions(shell, &mut std::io::stdout());
            return Ok(());
        }
        let host = self.host.resolve()?;
        match self.command {
            Command::Images(cmd) => cmd.run(&host),
            Command::Features(cmd) => cmd.run(CollectionKind::Features, &host),
            Command::Templates(cmd) => cmd.run(CollectionKind::Templates, &host),
            Command::Init(args) => args.run(&host),
            Command::Up(args) => args.run(&host),
            Command::Doctor(args) => args.run(&host),
            Command::Completions { .. } => unreachable!("handled above"),
        }
    }
}

/// The completion script of `aiida-devc` for `shell`.
pub fn completions(shell: clap_complete::Shell, out: &mut dyn std::io::Write) {
    clap_complete::generate(shell, &mut Cli::command(), "aiida-devc", out);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shell_gets_a_completion_script_that_knows_the_subcommands() {
        use clap_complete::Shell;
        for shell in [Shell::Bash, Shell::Zsh, Shell::Fish, Shell::PowerShell] {
            let cli = Cli::try_parse_from(["aiida-devc", "completions", &shell.to_string()])
                .unwrap_or_else(|e| panic!("{shell}: {e}"));
            assert!(matches!(cli.command, Command::Completions { shell: s } if s == shell));
            let mut script = Vec::new();
            completions(shell, &mut script);
            let script = String::from_utf8(script).unwrap();
            assert!(!script.is_empty(), "{shell}");
            for word in ["init", "doctor", "aiida-devc"] {
                assert!(script.contains(word), "{shell}: no {word} in\n{script}");
            }
        }
    }

    #[test]
    fn the_version_names_the_commit() {
        assert!(VERSION.starts_with(env!("CARGO_PKG_VERSION")), "{VERSION}");
        let commit = VERSION
            .split("(commit ")
            .nth(1)
            .unwrap()
            .trim_end_matches(')');
        assert!(
            commit == "unknown"
                || (commit.len() == 12 && commit.chars().all(|c| c.is_ascii_hexdigit())),
            "{VERSION}"
        );
    }
}
