//! The build context sent to the engine: one `Dockerfiles/<image>/` folder as a tar archive, plus
//! the service definitions shared with the Features (`Dockerfiles/services/`, as `services/`) and
//! generated files under `build/` (the aiida-init binary, the CA bundle).
//!
//! Entries get fixed owners and times, so the engine's cache sees only content and mode changes.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

/// The folder of `Dockerfiles/` that holds the services' definitions and scripts shared by the
/// images and the aiida-services Feature (see Dockerfiles/README.md), and its name in every
/// image's build context (`COPY services/etc/... /etc/...`).
pub const SHARED_SERVICES: &str = "services";

/// A file that is not in the Dockerfiles folder but generated for the build.
pub struct Generated {
    /// Path inside the context, e.g. `build/aiida-init`.
    pub path: String,
    pub contents: Vec<u8>,
    pub mode: u32,
}

/// The build context of the image `Dockerfiles/<name>/`: its folder, the shared services folder
/// as `services/`, and the generated files.
pub fn image_archive(
    dockerfiles: &Path,
    name: &str,
    generated: &[Generated],
) -> anyhow::Result<Vec<u8>> {
    let dir = dockerfiles.join(name);
    if dir.join(SHARED_SERVICES).exists() {
        bail!(
            "{} must not exist: the build context gets {SHARED_SERVICES}/ from {}",
            dir.join(SHARED_SERVICES).display(),
            dockerfiles.join(SHARED_SERVICES).display()
        );
    }
    archive(
        &dir,
        &[(&dockerfiles.join(SHARED_SERVICES), SHARED_SERVICES)],
        generated,
    )
}

/// Tar `dir` (without a `build/` folder that may be lying there), each `(folder, name)` of
/// `included` as the folder `name/`, and the generated files.
pub fn archive(
    dir: &Path,
    included: &[(&Path, &str)],
    generated: &[Generated],
) -> anyhow::Result<Vec<u8>> {
    if !dir.join("Dockerfile").is_file() {
        bail!("{} has no Dockerfile", dir.display());
    }
    let mut builder = tar::Builder::new(Vec::new());
    builder.mode(tar::HeaderMode::Deterministic);
    append_folder(&mut builder, dir, None)?;
    for (folder, name) in included {
        if !folder.is_dir() {
            bail!(
                "{} is missing (it goes into the build context as {name}/)",
                folder.display()
            );
        }
        append_folder(&mut builder, folder, Some(name))?;
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

/// Append the files of `dir` in sorted order, below `prefix/` when given.
fn append_folder(
    builder: &mut tar::Builder<Vec<u8>>,
    dir: &Path,
    prefix: Option<&str>,
) -> anyhow::Result<()> {
    let mut files = Vec::new();
    collect(dir, dir, &mut files)?;
    files.sort();
    for relative in files {
        let path = dir.join(&relative);
        let mut name = relative.to_string_lossy().replace('\\', "/");
        if let Some(prefix) = prefix {
            name = format!("{prefix}/{name}");
        }
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
    Ok(())
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
        let tarball = archive(dir.path(), &[], &generated).unwrap();
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
    fn every_image_context_gets_the_shared_services_folder() {
        let dockerfiles = tempfile::tempdir().unwrap();
        let image = dockerfiles.path().join("image");
        fs::create_dir_all(&image).unwrap();
        fs::write(image.join("Dockerfile"), "FROM scratch\n").unwrap();
        let shared = dockerfiles.path().join(SHARED_SERVICES).join("etc/init");
        fs::create_dir_all(&shared).unwrap();
        fs::write(shared.join("postgresql-run"), "#!/bin/sh\n").unwrap();
        let tarball = image_archive(dockerfiles.path(), "image", &[]).unwrap();
        let names: Vec<String> = tar::Archive::new(tarball.as_slice())
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            [
                "Dockerfile",
                "services/etc",
                "services/etc/init",
                "services/etc/init/postgresql-run"
            ]
        );
        // A folder of the image's own by that name would be shadowed: refused.
        fs::create_dir_all(image.join(SHARED_SERVICES)).unwrap();
        let err = image_archive(dockerfiles.path(), "image", &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("must not exist"), "{err}");
    }

    #[test]
    fn a_folder_without_dockerfile_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let err = archive(dir.path(), &[], &[]).unwrap_err().to_string();
        assert!(
            err.contains("has no Dockerfile") && err.contains(&dir.path().display().to_string()),
            "{err}"
        );
    }
}
