//! Binaries built from this project that a Feature carries in its package.
//!
//! The `aiida-services` Feature installs `aiida-init`, the project's init and supervisor, on
//! linux/amd64 and linux/arm64. Its package carries one static binary per platform, named by
//! what `uname -m` prints there (`aiida-init-x86_64`, `aiida-init-aarch64`); install.sh copies the
//! one for the container's machine. The files must be in the Feature's folder before it is
//! packaged or tested (git ignores them). [`prepare`] puts them there: from `--aiida-init FILE`
//! (repeatable; each file's platform is read from its ELF header) and, for every platform not
//! given, built from this workspace by [`crate::host::aiida_init::build_static`], the same build
//! the images use.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

use super::package::Source;
use crate::host::aiida_init;
use crate::platform::Platform;

/// The Feature that carries aiida-init.
pub const FEATURE: &str = "aiida-services";

/// The file name of the binary for `platform` in the Feature's folder.
pub fn file_name(platform: Platform) -> String {
    format!("aiida-init-{}", platform.uname_machine())
}

/// The platform an ELF executable is for (its `e_machine`), if it is one we support.
pub fn elf_platform(bytes: &[u8]) -> Option<Platform> {
    const EM_X86_64: u16 = 62;
    const EM_AARCH64: u16 = 183;
    if bytes.len() < 20 || &bytes[..4] != b"\x7fELF" || bytes[5] != 1 {
        return None; // not ELF, or not little-endian
    }
    match u16::from_le_bytes([bytes[18], bytes[19]]) {
        EM_X86_64 => Some(Platform::Amd64),
        EM_AARCH64 => Some(Platform::Arm64),
        _ => None,
    }
}

/// Make sure the aiida-init binaries of every platform are in `source`'s folder, when it is the
/// aiida-services Feature. `given` are the `--aiida-init` files.
pub fn prepare(source: &Source, given: &[PathBuf], verbose: bool) -> anyhow::Result<()> {
    if source.id() != FEATURE {
        return Ok(());
    }
    let mut binaries: BTreeMap<Platform, Vec<u8>> = BTreeMap::new();
    for path in given {
        let bytes = std::fs::read(path)
            .with_context(|| format!("--aiida-init {}: cannot read it", path.display()))?;
        let Some(platform) = elf_platform(&bytes) else {
            bail!(
                "--aiida-init {} is not an executable for linux/amd64 or linux/arm64 (an x86_64 or aarch64 ELF file)",
                path.display()
            );
        };
        if binaries.insert(platform, bytes).is_some() {
            bail!("--aiida-init was given twice for {platform}");
        }
    }
    for platform in Platform::ALL {
        if binaries.contains_key(&platform) {
            continue;
        }
        let root = aiida_init::checkout(
            None,
            &format!("bundling aiida-init for {platform} into the {FEATURE} Feature"),
            "pass --aiida-init FILE for each platform",
        )?;
        let built = aiida_init::build_static(&root, platform, verbose)?;
        let bytes =
            std::fs::read(&built).with_context(|| format!("cannot read {}", built.display()))?;
        binaries.insert(platform, bytes);
    }
    // A single binary of an older package layout would be packaged too: remove it.
    let old = source.dir.join("aiida-init");
    if old.is_file() {
        std::fs::remove_file(&old).with_context(|| format!("cannot remove {}", old.display()))?;
    }
    for (platform, bytes) in binaries {
        write_executable(&source.dir.join(file_name(platform)), &bytes)?;
    }
    Ok(())
}

/// Write `bytes` as an executable file, leaving an identical one alone (so that its mtime, and the
/// package's bytes, stay the same).
fn write_executable(destination: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    if std::fs::read(destination).ok().as_deref() == Some(bytes) {
        return Ok(());
    }
    let partial = destination.with_extension("partial");
    std::fs::write(&partial, bytes)
        .with_context(|| format!("cannot write {}", partial.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&partial, std::fs::Permissions::from_mode(0o755))?;
    }
    std::fs::rename(&partial, destination)
        .with_context(|| format!("cannot write {}", destination.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_platform_is_read_from_the_elf_header() {
        let own = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        assert_eq!(elf_platform(&own), Some(Platform::host()));
        let mut arm = own[..64].to_vec();
        arm[18..20].copy_from_slice(&183u16.to_le_bytes());
        assert_eq!(elf_platform(&arm), Some(Platform::Arm64));
        arm[18..20].copy_from_slice(&40u16.to_le_bytes()); // 32-bit ARM
        assert_eq!(elf_platform(&arm), None);
        assert_eq!(elf_platform(b"#!/bin/sh\necho hi\n"), None);
    }

    #[test]
    fn file_names_are_what_uname_prints() {
        assert_eq!(file_name(Platform::Amd64), "aiida-init-x86_64");
        assert_eq!(file_name(Platform::Arm64), "aiida-init-aarch64");
    }
}
