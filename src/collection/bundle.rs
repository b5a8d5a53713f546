//! What a Feature carries in its package besides its own folder's files.
//!
//! The `aiida-services` Feature installs `aiida-init`, the project's init and supervisor, on
//! linux/amd64 and linux/arm64. Its package carries one static binary per platform, named by
//! what `uname -m` prints there (`aiida-init-x86_64`, `aiida-init-aarch64`); install.sh copies the
//! one for the container's machine. It also carries the services' definitions and scripts that
//! the aiida-core-with-services image uses, from `Dockerfiles/services/` (one source for both; see
//! Dockerfiles/README.md), as its `services/` folder. These files must be in the Feature's folder
//! before it is packaged or tested (git ignores them). [`prepare`] puts them there: the binaries
//! from `--aiida-init FILE` (repeatable; each file's platform is read from its ELF header) and,
//! for every platform not given, built from this workspace by
//! [`crate::host::aiida_init::build_static`], the same build the images use; the services folder
//! copied from the checkout this aiida-devc was built from. And it carries the images' AiiDA
//! daemon service ([`DAEMON_FILES`] of `Dockerfiles/aiida-core-base/`, as its `daemon/` folder),
//! which it runs, supervised, for the aiida-core Feature's profile.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

use super::package::Source;
use crate::host::aiida_init;
use crate::platform::Platform;

/// The Features that run services under aiida-init: each carries aiida-init and the shared
/// services folder (a later one, such as a Slurm Feature, is added here).
pub const FEATURES: &[&str] = &["aiida-services"];

/// The folder of each of [`FEATURES`] that holds a copy of `Dockerfiles/services/`.
pub const SERVICES: &str = "services";

/// The folder of each of [`FEATURES`] that holds the images' daemon service.
pub const DAEMON: &str = "daemon";

/// The daemon service's files, below `Dockerfiles/aiida-core-base/`, and so below [`DAEMON`]: the
/// service itself, its compatibility module and broker probe, the verdi that hands `verdi daemon
/// start|restart` to aiida-init, and the service definition's files that do not name image paths.
pub const DAEMON_FILES: &[&str] = &[
    "init/aiida-daemon",
    "init/aiida_daemon_compat.py",
    "init/aiida-zmq-broker",
    "init/aiida-daemon-worker",
    "init/amqp_probe.py",
    "init/verdi",
    "s6-rc.d/aiida-daemon/type",
    "s6-rc.d/aiida-daemon/notification-fd",
    "s6-rc.d/aiida-daemon/down-signal",
    "s6-rc.d/aiida-daemon/timeout-kill",
    "s6-rc.d/aiida-daemon/finish",
];

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

/// Make sure the aiida-init binaries of every platform and the shared services folder are in
/// `source`'s folder, when it is one of [`FEATURES`]. `given` are the `--aiida-init` files.
pub fn prepare(source: &Source, given: &[PathBuf], verbose: bool) -> anyhow::Result<()> {
    let feature = source.id();
    if !FEATURES.contains(&feature) {
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
    let root = aiida_init::checkout(
        None,
        &format!(
            "the {feature} Feature, which bundles aiida-init and Dockerfiles/{},",
            crate::image::context::SHARED_SERVICES
        ),
        "clone it first",
    )?;
    let shared = root
        .join("Dockerfiles")
        .join(crate::image::context::SHARED_SERVICES);
    mirror(&shared, &source.dir.join(SERVICES)).with_context(|| {
        format!(
            "cannot copy {} into the {feature} Feature",
            shared.display()
        )
    })?;
    copy_daemon(
        &root.join("Dockerfiles").join("aiida-core-base"),
        &source.dir.join(DAEMON),
    )
    .with_context(|| format!("cannot copy the daemon service into the {feature} Feature"))?;
    for platform in Platform::ALL {
        if binaries.contains_key(&platform) {
            continue;
        }
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

/// Make `to` hold exactly [`DAEMON_FILES`] of `base` (the folder of the aiida-core-base image).
fn copy_daemon(base: &Path, to: &Path) -> anyhow::Result<()> {
    let staging = tempfile::tempdir()?;
    for file in DAEMON_FILES {
        let (from, target) = (base.join(file), staging.path().join(file));
        std::fs::create_dir_all(target.parent().expect("a file below the staging folder"))?;
        std::fs::copy(&from, &target).with_context(|| format!("cannot copy {}", from.display()))?;
    }
    mirror(staging.path(), to)
}

/// Make `to` a copy of the folder `from` (files and their modes): files that differ are written,
/// files and folders that `from` lacks are removed, identical files are left alone (so that their
/// mtimes, and the package's bytes, stay the same).
pub fn mirror(from: &Path, to: &Path) -> anyhow::Result<()> {
    if !from.is_dir() {
        bail!("{} is not a folder", from.display());
    }
    if to.is_file() || to.is_symlink() {
        std::fs::remove_file(to)?;
    }
    std::fs::create_dir_all(to)?;
    let mut wanted = std::collections::BTreeSet::new();
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let name = entry.file_name();
        let (source, target) = (entry.path(), to.join(&name));
        wanted.insert(name);
        let meta = std::fs::symlink_metadata(&source)?;
        if meta.is_dir() {
            mirror(&source, &target)?;
            continue;
        }
        if !meta.is_file() {
            bail!("{} is not a regular file or folder", source.display());
        }
        if target.is_dir() {
            std::fs::remove_dir_all(&target)?;
        }
        let bytes = std::fs::read(&source)?;
        let mode = mode_of(&meta);
        let same = std::fs::symlink_metadata(&target)
            .is_ok_and(|t| t.is_file() && mode_of(&t) == mode)
            && std::fs::read(&target).ok().as_deref() == Some(bytes.as_slice());
        if !same {
            std::fs::write(&target, &bytes)
                .with_context(|| format!("cannot write {}", target.display()))?;
            set_mode(&target, mode)?;
        }
    }
    for entry in std::fs::read_dir(to)? {
        let entry = entry?;
        if !wanted.contains(&entry.file_name()) {
            if entry.file_type()?.is_dir() {
                std::fs::remove_dir_all(entry.path())?;
            } else {
                std::fs::remove_file(entry.path())?;
            }
        }
    }
    Ok(())
}

/// A file's permission bits. Windows has none: there, files are copied without them.
#[cfg(unix)]
fn mode_of(meta: &std::fs::Metadata) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    meta.permissions().mode() & 0o777
}

#[cfg(not(unix))]
fn mode_of(_meta: &std::fs::Metadata) -> u32 {
    0
}

#[cfg(unix)]
fn set_mode(path: &Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

#[cfg(not(unix))]
fn set_mode(_path: &Path, _mode: u32) -> std::io::Result<()> {
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
    set_mode(&partial, 0o755)?;
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
    fn mirror_copies_files_and_modes_and_drops_what_the_source_lacks() {
        use std::os::unix::fs::PermissionsExt;
        let from = tempfile::tempdir().unwrap();
        let to = tempfile::tempdir().unwrap();
        let to = to.path().join("services");
        std::fs::create_dir_all(from.path().join("etc/init")).unwrap();
        std::fs::write(from.path().join("etc/init/run"), "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(
            from.path().join("etc/init/run"),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        std::fs::write(from.path().join("conf"), "a\n").unwrap();
        std::fs::create_dir_all(to.join("stale/deep")).unwrap();
        std::fs::write(to.join("stale/deep/x"), "old").unwrap();
        std::fs::write(to.join("conf"), "changed\n").unwrap();
        mirror(from.path(), &to).unwrap();
        assert_eq!(std::fs::read_to_string(to.join("conf")).unwrap(), "a\n");
        let mode = std::fs::metadata(to.join("etc/init/run"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o755);
        assert!(!to.join("stale").exists());
        // Identical files are left alone: packaging twice gives the same bytes.
        let mtime = |p: &Path| std::fs::metadata(p).unwrap().modified().unwrap();
        let before = mtime(&to.join("conf"));
        std::thread::sleep(std::time::Duration::from_millis(20));
        mirror(from.path(), &to).unwrap();
        assert_eq!(mtime(&to.join("conf")), before);
    }

    #[test]
    fn file_names_are_what_uname_prints() {
        assert_eq!(file_name(Platform::Amd64), "aiida-init-x86_64");
        assert_eq!(file_name(Platform::Arm64), "aiida-init-aarch64");
    }
}
