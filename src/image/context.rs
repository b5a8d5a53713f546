//! The build context sent to the engine: one `Dockerfiles/<image>/` folder as a tar archive, plus
//! generated files under `build/` (the aiida-init binary, the CA bundle).
//!
//! Entries get fixed owners and times, so the engine's cache sees only content and mode changes.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

/// A file that is not in the Dockerfiles folder but generated for the build.
pub struct Generated {
    /// Path inside the context, e.g. `build/aiida-init`.
    pub path: String,
    pub contents: Vec<u8>,
    pub mode: u32,
}

/// Tar `dir` (without a `build/` folder that may be lying there) plus the generated files.
pub fn archive(dir: &Path, generated: &[Generated]) -> anyhow::Result<Vec<u8>> {
    if !dir.join("Dockerfile").is_file() {
        bail!("{} has no Dockerfile", dir.display());
    }
    let mut builder = tar::Builder::new(Vec::new());
    builder.mode(tar::HeaderMode::Deterministic);
    let mut files = Vec::new();
    collect(dir, dir, &mut files)?;
    files.sort();
    for relative in files {
        let path = dir.join(&relative);
        let name = relative.to_string_lossy().replace('\\', "/");
        let meta = fs::symlink_metadata(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let mut header = tar::Header::new_gnu();
        header.set_metadata_in_mode(&meta, tar::HeaderMode::Deterministic);
        if meta.file_type().is_symlink() {
            let target = fs::read_link(&path)?;
            builder.append_link(&mut header, &name, target)?;
        } else if meta.is_dir() {
            builder.append_data(&mut header, &name, std::io::empty())?;
        } else {
            let data =
                fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
            builder.append_data(&mut header, &name, data.as_slice())?;
        }
    }
    for file in generated {
        let mut header = tar::Header::new_gnu();
        header.set_size(file.contents.len() as u64);
        header.set_mode(file.mode);
        header.set_mtime(0);
        header.set_entry_type(tar::EntryType::Regular);
        builder.append_data(&mut header, &file.path, file.contents.as_slice())?;
    }
    Ok(builder.into_inner()?)
}

fn collect(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    for entry in fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))? {
        let entry = entry?;
        let path = entry.path();
        let relative = path.strip_prefix(root).unwrap().to_owned();
        if dir == root && relative.as_os_str() == "build" {
            continue; // generated files only
        }
        out.push(relative);
        if entry.file_type()?.is_dir() {
            collect(root, &path, out)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn the_archive_holds_the_folder_and_the_generated_files_with_modes() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("Dockerfile"), "FROM scratch\n").unwrap();
        fs::create_dir_all(dir.path().join("init")).unwrap();
        fs::write(dir.path().join("init/run"), "#!/bin/sh\n").unwrap();
        fs::set_permissions(
            dir.path().join("init/run"),
            fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        fs::create_dir_all(dir.path().join("build")).unwrap();
        fs::write(dir.path().join("build/stale"), "x").unwrap();
        let generated = [Generated {
            path: "build/aiida-init".into(),
            contents: b"ELF".to_vec(),
            mode: 0o755,
        }];
        let tarball = archive(dir.path(), &generated).unwrap();
        let mut archive = tar::Archive::new(tarball.as_slice());
        let mut seen = Vec::new();
        for entry in archive.entries().unwrap() {
            let entry = entry.unwrap();
            seen.push((
                entry.path().unwrap().to_string_lossy().to_string(),
                entry.header().mode().unwrap() & 0o777,
            ));
        }
        assert!(seen.contains(&("Dockerfile".into(), 0o644)), "{seen:?}");
        assert!(seen.contains(&("init/run".into(), 0o755)), "{seen:?}");
        assert!(
            seen.contains(&("build/aiida-init".into(), 0o755)),
            "{seen:?}"
        );
        assert!(!seen.iter().any(|(p, _)| p == "build/stale"), "{seen:?}");
    }

    #[test]
    fn a_folder_without_dockerfile_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let err = archive(dir.path(), &[]).unwrap_err().to_string();
        assert!(
            err.contains("has no Dockerfile") && err.contains(&dir.path().display().to_string()),
            "{err}"
        );
    }
}
