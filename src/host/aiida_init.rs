//! aiida-init built from this workspace for a platform: the one binary that the images (as
//! `/init`) and the aiida-services Feature carry.
//!
//! ```text
//! RUSTFLAGS='-C target-feature=+crt-static' \
//!   cargo build -p aiida-init --release --locked --target <triple>
//! ```
//!
//! Static glibc, so it runs on any Linux image of its architecture whatever its libc. Compiling
//! on the host reuses the host's cargo cache and keeps Rust and crates.io out of image builds.
//!
//! For another architecture than the host's, the Rust toolchain on PATH needs that target's
//! standard library. When it has none (rustup cannot download one on these machines), Debian's
//! `rustc` with `libstd-rust-web-dev:<arch>` and the cross linker `<arch>-linux-gnu-gcc` are used
//! instead, in a target directory of their own (`target/debian-rustc`) so that the two
//! toolchains do not invalidate each other's builds. `scripts/bootstrap.sh --arm64` installs them.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

use crate::platform::Platform;

/// Debian's rustc, which ships the standard library of other architectures as packages.
const DEBIAN_RUSTC: &str = "/usr/bin/rustc";

/// What a checkout of aiida-devc has and an installed binary (a wheel, `cargo install`) lacks.
const CHECKOUT_MARKERS: [&str; 2] = ["crates/aiida-init/Cargo.toml", "Dockerfiles"];

fn is_checkout(dir: &Path) -> bool {
    CHECKOUT_MARKERS.iter().all(|m| dir.join(m).exists())
}

/// The workspace this aiida-devc was built from, when it is still there.
pub fn project_root() -> Option<PathBuf> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    is_checkout(&root).then_some(root)
}

/// The checkout of aiida-devc that a maintainers' command (`images build`, `features package`)
/// works in: `given` (`--source DIR`), else the workspace this binary was built from when it is
/// still there, else the current directory or one of its parents. `init`, `up` and `doctor` need
/// none; a binary installed from a wheel has none of its own, and the error names what is missing.
/// `otherwise` ends the error: what else the user can do.
pub fn checkout(given: Option<&Path>, what: &str, otherwise: &str) -> anyhow::Result<PathBuf> {
    let candidate = match given {
        Some(dir) => Some(dir.to_owned()),
        None => project_root().or_else(|| {
            let cwd = std::env::current_dir().ok()?;
            cwd.ancestors().find(|d| is_checkout(d)).map(Path::to_owned)
        }),
    };
    let dir = candidate
        .or_else(|| std::env::current_dir().ok())
        .unwrap_or_else(|| PathBuf::from("."));
    if let Some(missing) = CHECKOUT_MARKERS.iter().find(|m| !dir.join(m).exists()) {
        bail!(
            "{what} needs a checkout of aiida-devc ({}): {} is missing. \
             This aiida-devc has none of its own (installed from a wheel or with cargo install): \
             run it in a checkout, or {otherwise}",
            env!("CARGO_PKG_REPOSITORY"),
            dir.join(missing).display()
        );
    }
    Ok(dir)
}

/// Build aiida-init from the workspace at `source` for `platform`; returns the binary's path.
pub fn build_static(source: &Path, platform: Platform, verbose: bool) -> anyhow::Result<PathBuf> {
    let source = &checkout(
        Some(source),
        "building aiida-init",
        "give a prebuilt binary",
    )?;
    let triple = platform.rust_target();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(&cargo);
    command
        .current_dir(source)
        .args([
            "build",
            "-p",
            "aiida-init",
            "--release",
            "--locked",
            "--target",
            triple,
        ])
        // With --target, these flags reach only the target's crates, not build scripts.
        .env("RUSTFLAGS", "-C target-feature=+crt-static");
    let mut target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| source.join("target"), |d| source.join(d));
    if platform != Platform::host() && !toolchain_has_std(None, triple) {
        if !toolchain_has_std(Some(Path::new(DEBIAN_RUSTC)), triple) {
            bail!(
                "cannot build aiida-init for {platform}: neither the Rust toolchain on PATH nor Debian's \
                 {DEBIAN_RUSTC} has the standard library for {triple}. Install the cross toolchain \
                 (`bash scripts/bootstrap.sh --arm64`, as root), or `rustup target add {triple}`"
            );
        }
        target_dir = target_dir.join("debian-rustc");
        let linker_var = format!(
            "CARGO_TARGET_{}_LINKER",
            triple.to_uppercase().replace('-', "_")
        );
        command
            .env("RUSTC", DEBIAN_RUSTC)
            .env("CARGO_TARGET_DIR", &target_dir)
            .env(
                linker_var,
                format!("{}-linux-gnu-gcc", platform.uname_machine()),
            );
    }
    if verbose {
        eprintln!("aiida-init: building a static binary for {platform} ({triple})");
    }
    let output = command
        .output()
        .with_context(|| format!("cannot run {}", cargo.to_string_lossy()))?;
    if !output.status.success() {
        bail!(
            "building aiida-init for {platform} ({triple}) failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let binary = target_dir.join(triple).join("release/aiida-init");
    if !binary.is_file() {
        bail!("cargo built aiida-init but {} is missing", binary.display());
    }
    Ok(binary)
}

/// Whether `rustc` (the one on PATH when `None`) has the standard library for `triple`.
fn toolchain_has_std(rustc: Option<&Path>, triple: &str) -> bool {
    let rustc = rustc
        .map(|p| p.as_os_str().to_owned())
        .or_else(|| std::env::var_os("RUSTC"))
        .unwrap_or_else(|| "rustc".into());
    let Ok(output) = Command::new(&rustc).args(["--print", "sysroot"]).output() else {
        return false;
    };
    if !output.status.success() {
        return false;
    }
    let sysroot = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
    sysroot
        .join("lib/rustlib")
        .join(triple)
        .join("lib")
        .is_dir()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_folder_without_the_workspace_is_refused_naming_what_is_missing() {
        let dir = tempfile::tempdir().unwrap();
        let err = checkout(
            Some(dir.path()),
            "`aiida-devc images build`",
            "pass --source DIR",
        )
        .unwrap_err()
        .to_string();
        let missing = dir.path().join("crates/aiida-init/Cargo.toml");
        assert!(err.contains(&missing.display().to_string()), "{err}");
        assert!(
            err.starts_with("`aiida-devc images build` needs a checkout"),
            "{err}"
        );
        assert!(err.ends_with("or pass --source DIR"), "{err}");
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        assert_eq!(checkout(Some(&root), "x", "y").unwrap(), root);
        assert_eq!(project_root(), Some(root));
    }
}
