//! Binaries built from this project that a Feature carries in its package.
//!
//! The `aiida-services` Feature installs `aiida-init`, the project's init and supervisor. Its
//! install.sh copies the file `aiida-init` from the Feature's folder, so that file must be there
//! before the folder is packaged or tested (git ignores it). [`prepare`] puts it there: from
//! `--aiida-init FILE` when given, else built from this workspace by
//! [`crate::host::aiida_init::build_static`], the same build the images use.

use std::path::Path;

use anyhow::{Context, bail};

use super::package::Source;
use crate::host::aiida_init;
use crate::platform::Platform;

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
            None => {
                let Some(root) = aiida_init::project_root() else {
                    bail!(
                        "{binary} must be bundled into its Feature, but this aiida-devc was not built from a checkout it can find; pass --{binary} FILE"
                    );
                };
                aiida_init::build_static(&root, Platform::host(), verbose)?
            }
        };
        let bytes =
            std::fs::read(&built).with_context(|| format!("cannot read {}", built.display()))?;
        // Leave an identical file alone, so its mtime (and the package's bytes) stay the same.
        if std::fs::read(&destination).ok().as_deref() != Some(bytes.as_slice()) {
            let partial = destination.with_extension("partial");
            std::fs::write(&partial, &bytes)
                .with_context(|| format!("cannot write {}", partial.display()))?;
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&partial, std::fs::Permissions::from_mode(0o755))?;
            std::fs::rename(&partial, &destination)
                .with_context(|| format!("cannot write {}", destination.display()))?;
        }
    }
    Ok(())
}
