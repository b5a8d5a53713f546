//! Releases built on one runner per platform: the digests file between `images build
//! --push-by-digest` and `images merge`.
//!
//! Each platform job builds and gates its own platform, pushes its images under the per-platform
//! tag `aiida-X.Y.Z-<arch>` only (no index, so no user-facing tag moves), and writes what it
//! pushed to a digests file (`--digests FILE`). One merge job then reads every platform's file
//! and writes one OCI image index per tag ([`super::publish`]), with the same tag rules as
//! `--push`. The merge refuses, before it writes anything, unless every platform it must list
//! (`--platform`, default all) was pushed: a failed or missing platform job never yields an index
//! that lacks it.
//!
//! The file is JSON, written atomically:
//!
//! ```json
//! {"organization": "aiidateam", "aiida_version": "2.9.4", "images": [
//!   {"registry": "ghcr.io", "image": "aiida-core-base", "platform": "linux/arm64/v8",
//!    "repository": "ghcr.io/aiidateam/aiida-core-base", "tag": "aiida-2.9.4-arm64",
//!    "digest": "sha256:...", "versions": {"aiida": "2.9.4", "python": "3.11", "postgresql": null}}]}
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

use super::naming::{ImageKind, Versions};
use crate::platform::Platform;

/// What one `--push-by-digest` run pushed (one platform job, every registry it pushed to).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Digests {
    pub organization: String,
    pub aiida_version: String,
    pub images: Vec<Pushed>,
}

/// One platform's image of one kind, as pushed to one registry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pushed {
    /// The registry host (`ghcr.io`).
    pub registry: String,
    /// `aiida-core-base` or `aiida-core-with-services`.
    pub image: String,
    /// `linux/amd64`, `linux/arm64/v8`.
    pub platform: String,
    /// `registry/organization/image`.
    pub repository: String,
    /// The per-platform tag it was pushed under (`aiida-2.9.4-arm64`).
    pub tag: String,
    pub digest: String,
    /// What the image holds, which the merged tags come from.
    pub versions: Versions,
}

impl Digests {
    /// Write the file atomically (a partial file is never left under `path`), making its folder.
    pub fn write(&self, path: &Path) -> anyhow::Result<()> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("--digests: cannot create {}", dir.display()))?;
        }
        let partial = path.with_extension("partial");
        std::fs::write(&partial, serde_json::to_string_pretty(self)? + "\n")
            .with_context(|| format!("--digests: cannot write {}", partial.display()))?;
        std::fs::rename(&partial, path)
            .with_context(|| format!("--digests: cannot write {}", path.display()))
    }

    pub fn read(path: &Path) -> anyhow::Result<Digests> {
        let text = std::fs::read_to_string(path).with_context(|| {
            format!(
                "--digests {}: cannot read it (is the platform job's artifact there?)",
                path.display()
            )
        })?;
        serde_json::from_str(&text).with_context(|| {
            format!(
                "--digests {}: not a digests file of `images build --push-by-digest`",
                path.display()
            )
        })
    }
}

/// One image kind, ready to be merged: what it holds and its manifest for each platform.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KindToMerge {
    pub versions: Versions,
    pub platforms: BTreeMap<Platform, Pushed>,
}

/// What `images merge` writes an index for, checked from the digests `files` before anything is
/// written: the images pushed to `registry` under `organization`, each for exactly `required`.
pub fn plan_merge(
    files: &[(PathBuf, Digests)],
    registry: &str,
    organization: &str,
    required: &[Platform],
) -> anyhow::Result<(String, BTreeMap<ImageKind, KindToMerge>)> {
    let (aiida_version, found) = collect(files, registry, organization, required)?;
    // Every platform of every image, or nothing: name what is missing and what to do.
    for &platform in required {
        let missing: Vec<&str> = ImageKind::ALL
            .iter()
            .filter(|kind| found.get(kind).is_some_and(|p| !p.contains_key(&platform)))
            .map(|kind| kind.name())
            .collect();
        if !missing.is_empty() {
            bail!(
                "{platform} is missing: no --digests file lists {} for {platform} on {registry}. \
                 Its platform job did not push (its release gate failed, or it did not run): re-run it, \
                 then merge again. No index was written.",
                missing.join(" and ")
            );
        }
    }
    let mut merged = BTreeMap::new();
    for (kind, by_platform) in found {
        let mut versions: Option<(Platform, &Versions)> = None;
        for (&platform, pushed) in &by_platform {
            match versions {
                Some((first, v)) if v != &pushed.versions => bail!(
                    "{} holds {:?} for {platform} but {v:?} for {first}: the platforms must agree",
                    kind.name(),
                    pushed.versions
                ),
                _ => versions = Some((platform, &pushed.versions)),
            }
        }
        let versions = versions.expect("every kind has a platform").1.clone();
        let platforms = by_platform
            .into_iter()
            .map(|(platform, pushed)| (platform, pushed.clone()))
            .collect();
        merged.insert(
            kind,
            KindToMerge {
                versions,
                platforms,
            },
        );
    }
    Ok((aiida_version, merged))
}

/// The aiida-core version of `files` and what they pushed to `registry`, by kind and platform,
/// checking that the files belong together.
#[allow(clippy::type_complexity)]
fn collect<'a>(
    files: &'a [(PathBuf, Digests)],
    registry: &str,
    organization: &str,
    required: &[Platform],
) -> anyhow::Result<(String, BTreeMap<ImageKind, BTreeMap<Platform, &'a Pushed>>)> {
    let mut aiida_version: Option<(&Path, &str)> = None;
    let mut found: BTreeMap<ImageKind, BTreeMap<Platform, (&Path, &Pushed)>> = BTreeMap::new();
    for (path, digests) in files {
        if digests.organization != organization {
            bail!(
                "--digests {}: pushed under the organization {}, not {organization}",
                path.display(),
                digests.organization
            );
        }
        match aiida_version {
            Some((first, version)) if version != digests.aiida_version => bail!(
                "--digests {} holds aiida-core {} but {} holds {version}: merge the files of one release",
                path.display(),
                digests.aiida_version,
                first.display()
            ),
            _ => aiida_version = Some((path, &digests.aiida_version)),
        }
        for pushed in digests.images.iter().filter(|p| p.registry == registry) {
            let kind = ImageKind::from_name(&pushed.image).with_context(|| {
                format!(
                    "--digests {}: unknown image {}",
                    path.display(),
                    pushed.image
                )
            })?;
            let platform = Platform::parse(&pushed.platform)
                .with_context(|| format!("--digests {}", path.display()))?;
            if !required.contains(&platform) {
                bail!(
                    "--digests {} lists {} for {platform}, which --platform does not name",
                    path.display(),
                    pushed.image
                );
            }
            let by_platform = found.entry(kind).or_default();
            if let Some((other, earlier)) = by_platform.get(&platform) {
                if earlier.digest != pushed.digest {
                    bail!(
                        "{} for {platform} was pushed twice with different digests ({} in {}, {} in {}): \
                         give the digests of one run per platform",
                        pushed.image,
                        earlier.digest,
                        other.display(),
                        pushed.digest,
                        path.display()
                    );
                }
            }
            by_platform.insert(platform, (path, pushed));
        }
    }
    let Some((_, aiida_version)) = aiida_version else {
        bail!("images merge needs at least one --digests FILE");
    };
    if found.is_empty() {
        bail!("no --digests file lists images pushed to {registry}: nothing to merge");
    }
    let found = found
        .into_iter()
        .map(|(kind, by_platform)| {
            let by_platform = by_platform
                .into_iter()
                .map(|(platform, (_, pushed))| (platform, pushed))
                .collect();
            (kind, by_platform)
        })
        .collect();
    Ok((aiida_version.to_owned(), found))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pushed(registry: &str, image: &str, platform: &str, digest: &str) -> Pushed {
        Pushed {
            registry: registry.into(),
            image: image.into(),
            platform: platform.into(),
            repository: format!("{registry}/acme/{image}"),
            tag: "aiida-2.9.4-x".into(),
            digest: digest.into(),
            versions: Versions {
                aiida: "2.9.4".into(),
                python: "3.11".into(),
                postgresql: None,
            },
        }
    }

    fn file(name: &str, platform: &str, digest: &str) -> (PathBuf, Digests) {
        let images = ["aiida-core-base", "aiida-core-with-services"]
            .into_iter()
            .flat_map(|image| {
                ["ghcr.io", "docker.io"]
                    .map(|registry| pushed(registry, image, platform, &format!("{digest}-{image}")))
            })
            .collect();
        (
            PathBuf::from(name),
            Digests {
                organization: "acme".into(),
                aiida_version: "2.9.4".into(),
                images,
            },
        )
    }

    #[test]
    fn both_platforms_merge_per_registry() {
        let files = [
            file("amd64.json", "linux/amd64", "sha256:a"),
            file("arm64.json", "linux/arm64/v8", "sha256:b"),
        ];
        let (version, merged) =
            plan_merge(&files, "ghcr.io", "acme", &Platform::ALL).expect("merges");
        assert_eq!(version, "2.9.4");
        assert_eq!(merged.len(), 2);
        let base = &merged[&ImageKind::Base].platforms;
        assert_eq!(base[&Platform::Amd64].digest, "sha256:a-aiida-core-base");
        assert_eq!(base[&Platform::Arm64].registry, "ghcr.io");
    }

    #[test]
    fn a_missing_platform_is_named_and_nothing_merges() {
        let files = [file("amd64.json", "linux/amd64", "sha256:a")];
        let err = plan_merge(&files, "ghcr.io", "acme", &Platform::ALL)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("linux/arm64 is missing: no --digests file lists aiida-core-base and aiida-core-with-services for linux/arm64 on ghcr.io"),
            "{err}"
        );
        assert!(err.contains("No index was written"), "{err}");
        // Asked for amd64 only, the same file merges.
        assert!(plan_merge(&files, "ghcr.io", "acme", &[Platform::Amd64]).is_ok());
    }

    #[test]
    fn files_of_another_release_or_registry_are_refused() {
        let mut other = file("arm64.json", "linux/arm64", "sha256:b");
        other.1.aiida_version = "2.9.3".into();
        let files = [file("amd64.json", "linux/amd64", "sha256:a"), other];
        let err = plan_merge(&files, "ghcr.io", "acme", &Platform::ALL)
            .unwrap_err()
            .to_string();
        assert!(err.contains("merge the files of one release"), "{err}");

        let files = [file("amd64.json", "linux/amd64", "sha256:a")];
        let err = plan_merge(&files, "quay.io", "acme", &[Platform::Amd64])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("no --digests file lists images pushed to quay.io"),
            "{err}"
        );
        let err = plan_merge(&files, "ghcr.io", "other", &[Platform::Amd64])
            .unwrap_err()
            .to_string();
        assert!(err.contains("not other"), "{err}");
    }

    #[test]
    fn two_runs_of_one_platform_with_different_digests_are_refused() {
        let files = [
            file("a.json", "linux/amd64", "sha256:a"),
            file("b.json", "linux/amd64", "sha256:c"),
        ];
        let err = plan_merge(&files, "ghcr.io", "acme", &[Platform::Amd64])
            .unwrap_err()
            .to_string();
        assert!(err.contains("pushed twice with different digests"), "{err}");
    }

    #[test]
    fn the_file_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/amd64.json");
        let (_, digests) = file("x", "linux/amd64", "sha256:a");
        digests.write(&path).unwrap();
        assert_eq!(Digests::read(&path).unwrap(), digests);
        let err = Digests::read(&dir.path().join("none.json"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("none.json"), "{err}");
    }
}
