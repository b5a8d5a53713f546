//! aiida-init for the image, compiled on the host.
//!
//! The image needs a Linux binary for its platform. Compiling it on the host (static glibc,
//! `+crt-static`, so any base image runs it) reuses the host's cargo cache and takes seconds; a
//! compiler stage in the Dockerfile would fetch crates and compile in every fresh CI build, and
//! leave the image build depending on crates.io. The platform is a parameter: other platforms
//! need their Rust target installed on the host (`rustup target add`, or Debian's
//! `libstd-rust-web-dev:<arch>` with a cross linker), or a prebuilt binary via `--init-binary`.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

/// The Rust target triple for a Docker platform (`linux/amd64`, `linux/arm64`).
pub fn rust_target(platform: &str) -> anyhow::Result<&'static str> {
    Ok(match platform {
        "linux/amd64" | "linux/x86_64" => "x86_64-unknown-linux-gnu",
        "linux/arm64" | "linux/arm64/v8" | "linux/aarch64" => "aarch64-unknown-linux-gnu",
        other => bail!("--platform {other}: no known Rust target (use linux/amd64 or linux/arm64)"),
    })
}

/// The Docker platform of this machine.
pub fn host_platform() -> &'static str {
    match std::env::consts::ARCH {
        "aarch64" => "linux/arm64",
        _ => "linux/amd64",
    }
}

/// Compile `aiida-init` from the crate at `source` for `platform`; returns the binary's path.
pub fn compile(source: &Path, platform: &str) -> anyhow::Result<PathBuf> {
    if !source.join("Cargo.toml").is_file() {
        bail!(
            "cannot compile aiida-init: {} is not the aiida-devc source tree (no Cargo.toml). \
             Run from a checkout, pass --source DIR, or give a binary with --init-binary FILE",
            source.display()
        );
    }
    let target = rust_target(platform)?;
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(&cargo)
        .current_dir(source)
        .args([
            "build",
            "--release",
            "--locked",
            "--no-default-features",
            "--bin",
            "aiida-init",
            "--target",
            target,
        ])
        // With --target, these flags reach only the binary's crates, not build scripts.
        .env("RUSTFLAGS", "-C target-feature=+crt-static")
        .status()
        .with_context(|| format!("cannot run {}", cargo.to_string_lossy()))?;
    if !status.success() {
        bail!("compiling aiida-init for {platform} ({target}) failed (see cargo's output above)");
    }
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| source.join("target"));
    let binary = source.join(target_dir).join(target).join("release/aiida-init");
    if !binary.is_file() {
        bail!("cargo succeeded but {} is missing", binary.display());
    }
    Ok(binary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platforms_map_to_targets() {
        assert_eq!(rust_target("linux/amd64").unwrap(), "x86_64-unknown-linux-gnu");
        assert_eq!(rust_target("linux/arm64").unwrap(), "aarch64-unknown-linux-gnu");
        let err = rust_target("windows/amd64").unwrap_err().to_string();
        assert!(err.contains("windows/amd64"), "{err}");
    }
}
