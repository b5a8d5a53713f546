//! `aiida-devc`: the developer CLI. See `aiida_devc::cli`.
use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = aiida_devc::cli::Cli::parse();
    match cli.run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
