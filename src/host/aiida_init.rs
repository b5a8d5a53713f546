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
    let linker_var = format!(
        "CARGO_TARGET_{}_LINKER",
        triple.to_uppercase().replace('-', "_")
    );
    let cross_linker = format!("{}-linux-gnu-gcc", platform.uname_machine());
    let toolchain = choose_toolchain(platform, Platform::host(), |rustc| {
        toolchain_has_std(rustc.then_some(Path::new(DEBIAN_RUSTC)), triple)
    });
    match toolchain {
        Toolchain::Native => {}
        Toolchain::Cross => {
            // rustup's std for the target (e.g. a hosted runner with `rustup target add`): only
            // the linker is the cross one, unless the environment names another.
            if std::env::var_os(&linker_var).is_none() {
                command.env(&linker_var, &cross_linker);
            }
        }
        Toolchain::DebianCross => {
            target_dir = target_dir.join("debian-rustc");
            command
                .env("RUSTC", DEBIAN_RUSTC)
                .env("CARGO_TARGET_DIR", &target_dir)
                .env(&linker_var, &cross_linker);
        }
        Toolchain::Missing => bail!(
            "cannot build aiida-init for {platform}: neither the Rust toolchain on PATH nor Debian's \
             {DEBIAN_RUSTC} has the standard library for {triple}. Install the cross toolchain \
             (`bash scripts/bootstrap.sh --arm64`, as root), or `rustup target add {triple}` and \
             {cross_linker}; or build on a {platform} machine, where no cross toolchain is needed"
        ),
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

/// How aiida-init is compiled for a platform.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Toolchain {
    /// The target is the host's platform (an arm64 runner building for linux/arm64): the
    /// toolchain on PATH, no cross linker, no emulation.
    Native,
    /// Another platform, whose standard library the toolchain on PATH has (rustup's): the
    /// cross linker `<arch>-linux-gnu-gcc`.
    Cross,
    /// Another platform, through Debian's rustc and its `libstd-rust-web-dev:<arch>`.
    DebianCross,
    /// Another platform, and no toolchain has its standard library.
    Missing,
}

/// The toolchain for building for `target` on `host`; `has_std(debian)` says whether the
/// toolchain on PATH (`false`) or Debian's rustc (`true`) has the target's standard library.
/// Only asked when cross-compiling.
pub fn choose_toolchain(
    target: Platform,
    host: Platform,
    has_std: impl Fn(bool) -> bool,
) -> Toolchain {
    if target == host {
        Toolchain::Native
    } else if has_std(false) {
        Toolchain::Cross
    } else if has_std(true) {
        Toolchain::DebianCross
    } else {
        Toolchain::Missing
    }
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

    #[test]
    fn the_hosts_own_platform_is_built_natively_without_asking_for_a_cross_toolchain() {
        for platform in Platform::ALL {
            let asked = std::cell::Cell::new(false);
            let toolchain = choose_toolchain(platform, platform, |_| {
                asked.set(true);
                false
            });
            assert_eq!(toolchain, Toolchain::Native, "{platform}");
            assert!(!asked.get(), "{platform}: looked for a cross toolchain");
        }
    }

    #[test]
    fn another_platform_is_cross_compiled_with_the_first_toolchain_that_has_its_std() {
        let (x86, arm) = (Platform::Amd64, Platform::Arm64);
        // This project's machines: Debian's rustc has the aarch64 std, rustup's has not.
        assert_eq!(
            choose_toolchain(arm, x86, |debian| debian),
            Toolchain::DebianCross
        );
        // A hosted runner after `rustup target add`.
        assert_eq!(choose_toolchain(arm, x86, |_| true), Toolchain::Cross);
        assert_eq!(
            choose_toolchain(x86, arm, |debian| !debian),
            Toolchain::Cross
        );
        assert_eq!(choose_toolchain(arm, x86, |_| false), Toolchain::Missing);
    }
}
