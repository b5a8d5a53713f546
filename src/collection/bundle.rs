//! Binaries built from this project that a Feature carries in its package.
//!
//! The `aiida-services` Feature installs `aiida-init`, the project's init and supervisor. Its
//! install.sh copies the file `aiida-init` from the Feature's folder, so that file must be there
//! before the folder is packaged or tested (git ignores it). [`prepare`] puts it there: from
//! `--aiida-init FILE` when given, else by building it from this project's sources:
//!
//! ```text
//! RUSTFLAGS='-C target-feature=+crt-static' \
//!   cargo build --release --locked --no-default-features --bin aiida-init --target <host triple>
//! ```
//!
//! A static binary runs on any Linux image of the same architecture, whatever its libc. It is the
//! same command and output (`target/<triple>/release/aiida-init`) as the images build uses, so one
//! compile serves both.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

use super::package::Source;

/// Feature id -> the file it needs in its folder, built from this project's binary of that name.
pub const BUNDLED_BINARIES: &[(&str, &str)] = &[("aiida-services", "aiida-init")];

/// Make sure every bundled binary of `source` is in its folder. `given` is `--aiida-init`.
pub fn prepare(source: &Source, given: Option<&Path>, verbose: bool) -> anyhow::Result<()> {
    for (feature, binary) in BUNDLED_BINARIES {
        if source.id() != *feature {
            continue;
        }
        let destination = source.dir.join(binary);
        let built = match given {
            Some(path) => {
                if !path.is_file() {
                    bail!("--aiida-init {} is not a file", path.display());
                }
                path.to_owned()
            }
            None => build_static(binary, verbose)?,
        };
        let bytes = std::fs::read(&built).with_context(|| format!("cannot read {}", built.display()))?;
        // Leave an identical file alone, so its mtime (and the package's bytes) stay the same.
        if std::fs::read(&destination).ok().as_deref() != Some(bytes.as_slice()) {
            let partial = destination.with_extension("partial");
            std::fs::write(&partial, &bytes).with_context(|| format!("cannot write {}", partial.display()))?;
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&partial, std::fs::Permissions::from_mode(0o755))?;
            std::fs::rename(&partial, &destination).with_context(|| format!("cannot write {}", destination.display()))?;
        }
    }
    Ok(())
}

/// The project's sources, when this binary was built from a checkout that is still there.
pub fn project_root() -> Option<PathBuf> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    root.join("Cargo.toml").is_file().then_some(root)
}

/// Build `binary` statically (see the module documentation) and return its path.
pub fn build_static(binary: &str, verbose: bool) -> anyhow::Result<PathBuf> {
    let Some(root) = project_root() else {
        bail!("{binary} must be bundled into its Feature, but this aiida-devc was not built from a checkout it can find; pass --{binary} FILE");
    };
    let triple = host_triple()?;
    let target_dir = std::env::var_os("CARGO_TARGET_DIR").map(|d| root.join(d)).unwrap_or_else(|| root.join("target"));
    if verbose {
        eprintln!("building a static {binary} for {triple} (cargo build --release --no-default-features)");
    }
    let output = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .current_dir(&root)
        .env("RUSTFLAGS", "-C target-feature=+crt-static")
        .args(["build", "--release", "--locked", "--no-default-features", "--bin", binary, "--target", &triple])
        .output()
        .with_context(|| format!("cannot run cargo to build {binary}"))?;
    if !output.status.success() {
        bail!("building {binary} failed:\n{}", String::from_utf8_lossy(&output.stderr));
    }
    let path = target_dir.join(&triple).join("release").join(binary);
    if !path.is_file() {
        bail!("cargo built {binary} but {} is missing", path.display());
    }
    Ok(path)
}

fn host_triple() -> anyhow::Result<String> {
    let output = Command::new("rustc").arg("-vV").output().context("cannot run rustc -vV")?;
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("host: ").map(str::to_owned))
        .context("rustc -vV printed no host triple")
}
