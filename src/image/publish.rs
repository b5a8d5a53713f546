//! `--push`: publish the images of every built platform as one OCI image index per tag.
//!
//! The order makes a failed run harmless, since no tag ever points at a partial set:
//! 1. the release gate: [`super::smoke`] for every platform's with-services image; if one fails,
//!    nothing is pushed;
//! 2. every platform's image is read from the engine (`docker save`) and pushed under a
//!    per-platform tag `aiida-X.Y.Z-<arch>`, its layers compressed smaller than `docker push`
//!    would ([`super::layers`]), and its manifest is read back by digest;
//! 3. last, for each tag, an OCI image index listing exactly those manifests (by digest, in the
//!    same repository) is written ([OCI image index], [distribution spec: pushing manifests]).
//!
//! Tags: `aiida-X.Y.Z`, `python-X.Y`, `postgresql-N` (with-services), every `--tag`, and
//! `latest` only when X.Y.Z is a final release at least as high as every final `aiida-*` release
//! already in that repository (so an older aiida-core never moves it). The same sources give the
//! same image IDs through the layer cache, so the same manifests and the same index digests:
//! republishing changes no digest.
//!
//! Credentials are those of `features publish` ([`crate::oci::auth`]); a refused or unreachable
//! registry is an error naming the registry and where the credential came from, never the
//! credential.
//!
//! [OCI image index]: https://github.com/opencontainers/image-spec/blob/main/image-index.md
//! [distribution spec: pushing manifests]: https://github.com/opencontainers/distribution-spec/blob/main/spec.md#pushing-manifests

use std::collections::BTreeMap;
use std::str::FromStr;

use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressStyle};
use oci_client::manifest::{
    ImageIndexEntry, OCI_IMAGE_INDEX_MEDIA_TYPE, OciImageIndex, Platform as OciPlatform,
};
use pep508_rs::pep440_rs::Version;
use serde::Serialize;

use super::digests::{Digests, Pushed};
use super::layers::Layers;
use super::naming::{self, ImageKind, Repository};
use super::{ImageSelection, PublishOptions, driver, smoke};
use crate::host::docker::Docker;
use crate::oci::auth::AuthEnv;
use crate::oci::registry::Registry;
use crate::platform::Platform;

/// What to publish, resolved from the command line before any work is done.
#[derive(Clone)]
pub struct Plan {
    registry: String,
    repo: Repository,
    /// Where the local images are named (`repo`, also when pushing to a mirror).
    local: Repository,
    /// With `--push-by-digest`: more registries to push the same images to.
    mirrors: Vec<String>,
    platforms: Vec<Platform>,
    kinds: Vec<ImageKind>,
    aiida_version: String,
    extra_tags: Vec<String>,
    json: bool,
}

/// What one run published, printed with `--json`.
#[derive(Debug, Serialize)]
pub struct Published {
    pub registry: String,
    pub images: Vec<PublishedImage>,
}

#[derive(Debug, Serialize)]
pub struct PublishedImage {
    /// `registry/organization/image`
    pub repository: String,
    /// The digest every tag below points at (the OCI image index).
    pub index_digest: String,
    pub tags: Vec<String>,
    pub platforms: Vec<PublishedPlatform>,
}

#[derive(Debug, Serialize)]
pub struct PublishedPlatform {
    /// `linux/amd64`, `linux/arm64/v8`
    pub platform: String,
    pub digest: String,
}

impl Plan {
    /// What publishing `selection` with `options` pushes; an error for options that make no
    /// sense together.
    pub fn new(selection: &ImageSelection, options: &PublishOptions) -> anyhow::Result<Plan> {
        let repo = selection.repository()?;
        let Some(registry) = repo.registry.clone() else {
            bail!("--push needs --registry HOST (e.g. ghcr.io or localhost:5000)");
        };
        for tag in &options.tags {
            check_tag(tag)?;
        }
        Ok(Plan {
            registry,
            local: repo.clone(),
            repo,
            mirrors: Vec::new(),
            platforms: selection.platforms()?,
            kinds: selection.kinds(),
            aiida_version: selection.aiida_version.clone(),
            extra_tags: options.tags.clone(),
            json: options.json,
        })
    }

    /// Also push to these registries (`--push-by-digest --also-registry`), after checking them.
    pub fn with_mirrors(mut self, mirrors: &[String]) -> anyhow::Result<Plan> {
        for mirror in mirrors {
            let repo = Repository::new(Some(mirror), &self.repo.organization)?;
            if repo.registry.as_deref() == Some(self.registry.as_str()) {
                bail!("--also-registry {mirror} is --registry already");
            }
        }
        self.mirrors = mirrors.to_vec();
        Ok(self)
    }

    /// The same plan aimed at the registry `host`, with the same local images.
    fn for_registry(&self, host: &str) -> anyhow::Result<Plan> {
        Ok(Plan {
            registry: host.to_owned(),
            repo: Repository::new(Some(host), &self.repo.organization)?,
            mirrors: Vec::new(),
            ..self.clone()
        })
    }

    /// The local image of `kind` for `platform` (as `images build` named it).
    fn local_image(&self, kind: ImageKind, platform: Platform) -> String {
        self.local.image(kind).with_tag(&naming::local_tag(
            &format!("aiida-{}", self.aiida_version),
            platform,
        ))
    }

    /// The per-platform tag every platform's image is pushed under.
    fn platform_tag(&self, platform: Platform) -> String {
        format!("aiida-{}-{}", self.aiida_version, platform.architecture())
    }

    /// Gate, push, index; prints progress on stderr and, with `--json`, the result on stdout.
    pub async fn run(
        &self,
        docker: &Docker,
        host: &crate::host::Host,
    ) -> anyhow::Result<Published> {
        let steps = Steps::new();
        // 1. The release gate.
        let versions = self.check_and_gate(docker, &steps).await?;
        let registry = self.connect(host)?;

        // 2. Every platform's image, by digest.
        let mut layers = Layers::new()?;
        let manifests = self
            .push_platform_images(docker, &registry, &mut layers, &steps)
            .await?;

        // 3. One index per tag, last.
        let mut published = Vec::new();
        for &kind in &self.kinds {
            published.push(
                self.write_indexes(&registry, kind, &versions[&kind], &manifests[&kind], &steps)
                    .await?,
            );
        }
        self.report(published)
    }

    /// `--push-by-digest`: gate, then push every platform's image to the registry and each mirror
    /// under its per-platform tag only, and write what was pushed to `out` (the input of
    /// `images merge`). No index is written and no user-facing tag moves.
    pub async fn run_by_digest(
        &self,
        docker: &Docker,
        host: &crate::host::Host,
        out: Option<&std::path::Path>,
    ) -> anyhow::Result<Digests> {
        let steps = Steps::new();
        let versions = self.check_and_gate(docker, &steps).await?;
        let mut images = Vec::new();
        let mut targets = vec![self.clone()];
        for mirror in &self.mirrors {
            targets.push(self.for_registry(mirror)?);
        }
        let mut layers = Layers::new()?;
        for target in targets {
            let registry = target.connect(host)?;
            let manifests = target
                .push_platform_images(docker, &registry, &mut layers, &steps)
                .await?;
            for (kind, entries) in manifests {
                for (platform, descriptor) in entries {
                    images.push(Pushed {
                        registry: target.registry.clone(),
                        image: kind.name().to_owned(),
                        platform: oci_platform_name(platform),
                        repository: target.repo.image(kind).0,
                        tag: target.platform_tag(platform),
                        digest: descriptor.digest,
                        versions: versions[&kind].clone(),
                    });
                }
            }
        }
        let digests = Digests {
            organization: self.repo.organization.clone(),
            aiida_version: self.aiida_version.clone(),
            images,
        };
        if let Some(out) = out {
            digests.write(out)?;
        }
        if self.json {
            println!("{}", serde_json::to_string_pretty(&digests)?);
        } else {
            for pushed in &digests.images {
                println!(
                    "{}:{} ({}) {}",
                    pushed.repository, pushed.tag, pushed.platform, pushed.digest
                );
            }
        }
        Ok(digests)
    }

    /// `images merge`: one index per tag of every image in the digests files, for exactly the
    /// platforms of `self`. Everything is checked (every platform there, every manifest in the
    /// registry) before the first index is written.
    pub async fn merge(
        &self,
        files: &[(std::path::PathBuf, Digests)],
        host: &crate::host::Host,
    ) -> anyhow::Result<Published> {
        let (_, merged) = super::digests::plan_merge(
            files,
            &self.registry,
            &self.repo.organization,
            &self.platforms,
        )?;
        let steps = Steps::new();
        let registry = self.connect(host)?;
        let mut entries = BTreeMap::new();
        for (&kind, to_merge) in &merged {
            let repository = repository_path(&self.repo.image(kind).0, &self.registry);
            let mut list = Vec::new();
            for (&platform, pushed) in &to_merge.platforms {
                let descriptor = registry
                    .descriptor(&repository, &pushed.digest)
                    .await?
                    .with_context(|| {
                        format!(
                            "{}@{} ({platform}) is not in the registry: re-run the {platform} job. No index was written.",
                            pushed.repository, pushed.digest
                        )
                    })?;
                list.push((platform, descriptor));
            }
            entries.insert(kind, list);
        }
        let mut published = Vec::new();
        for (kind, list) in &entries {
            published.push(
                self.write_indexes(&registry, *kind, &merged[kind].versions, list, &steps)
                    .await?,
            );
        }
        self.report(published)
    }

    /// Check the local images, run the release gate, and read what each kind holds.
    async fn check_and_gate(
        &self,
        docker: &Docker,
        steps: &Steps,
    ) -> anyhow::Result<BTreeMap<ImageKind, naming::Versions>> {
        // Everything local is checked before anything leaves the machine.
        self.check_local_images(docker).await?;
        self.release_gate(docker, steps).await?;
        self.versions(docker).await
    }

    /// A client for the registry, with the credential found for it.
    fn connect(&self, host: &crate::host::Host) -> anyhow::Result<Registry> {
        let credential = crate::oci::auth::lookup(&self.registry, &AuthEnv::from_process())?;
        let ca = host.ca.bundle().cloned();
        Registry::with_credential(&self.registry, credential, ca.as_ref())
    }

    /// Every local image to publish is there, and built for its platform.
    async fn check_local_images(&self, docker: &Docker) -> anyhow::Result<()> {
        for &kind in &self.kinds {
            for &platform in &self.platforms {
                let image = self.local_image(kind, platform);
                let inspect = docker.inspect_image(&image).await.with_context(|| {
                    format!(
                        "{image} is missing: build it first (aiida-devc images build --platform {platform} \
                         --registry {} --organization {})",
                        self.registry, self.repo.organization
                    )
                })?;
                let architecture = inspect.architecture.unwrap_or_default();
                if architecture != platform.architecture() {
                    bail!("{image} is an image for {architecture}, not {platform}");
                }
            }
        }
        Ok(())
    }

    /// The smoke test of every platform's with-services image; the first failure stops all.
    async fn release_gate(&self, docker: &Docker, steps: &Steps) -> anyhow::Result<()> {
        for &platform in &self.platforms {
            let image = self.local_image(ImageKind::WithServices, platform);
            let step = steps.start(format!("smoke test {platform}: {image}"));
            match smoke::smoke_test(docker, &image, platform).await {
                Ok(ready) => step.done(&format!("ready in {ready:.0?}, calculation finished")),
                Err(e) => {
                    step.fail();
                    return Err(e.context(format!(
                        "the release gate failed for {platform}: nothing was pushed"
                    )));
                }
            }
        }
        Ok(())
    }

    /// The versions each kind of image holds, which the tags come from (every platform must
    /// agree).
    async fn versions(
        &self,
        docker: &Docker,
    ) -> anyhow::Result<BTreeMap<ImageKind, naming::Versions>> {
        let mut versions = BTreeMap::new();
        for &kind in &self.kinds {
            let mut found: Option<naming::Versions> = None;
            for &platform in &self.platforms {
                let image = self.local_image(kind, platform);
                let v = driver::probe_versions(docker, &image, &self.aiida_version).await?;
                if let Some(first) = &found {
                    if first != &v {
                        bail!(
                            "{image} holds {v:?} but the {} image holds {first:?}: the platforms must agree",
                            self.platforms[0]
                        );
                    }
                } else {
                    found = Some(v);
                }
            }
            versions.insert(kind, found.expect("at least one platform"));
        }
        Ok(versions)
    }

    /// Push every platform's image under its per-platform tag, its layers compressed by
    /// [`Layers`]; the manifest the registry serves for each, per kind.
    async fn push_platform_images(
        &self,
        docker: &Docker,
        registry: &Registry,
        layers: &mut Layers,
        steps: &Steps,
    ) -> anyhow::Result<BTreeMap<ImageKind, Vec<(Platform, crate::oci::registry::Descriptor)>>>
    {
        let mut manifests: BTreeMap<ImageKind, Vec<(Platform, crate::oci::registry::Descriptor)>> =
            BTreeMap::new();
        for &kind in &self.kinds {
            let name = self.repo.image(kind);
            let repository = repository_path(&name.0, &self.registry);
            for &platform in &self.platforms {
                let local = self.local_image(kind, platform);
                let tag = self.platform_tag(platform);
                let step = steps.start(format!("push {}:{tag}", name.0));
                // The same image there already (its config digest is the local image ID): a
                // re-run pushes nothing.
                let id = docker.inspect_image(&local).await?.id.unwrap_or_default();
                let there = registry.descriptor(&repository, &tag).await?;
                if there.as_ref().and_then(config_digest).as_deref() != Some(id.as_str()) {
                    if let Err(e) = layers
                        .push(docker, &local, registry, &repository, &tag)
                        .await
                    {
                        step.fail();
                        return Err(e.context(format!("pushing {local} to {}:{tag}", name.0)));
                    }
                }
                let descriptor =
                    registry
                        .descriptor(&repository, &tag)
                        .await?
                        .with_context(|| {
                            format!(
                                "{}:{tag} was pushed but the registry does not serve it",
                                name.0
                            )
                        })?;
                step.done(&descriptor.digest);
                manifests
                    .entry(kind)
                    .or_default()
                    .push((platform, descriptor));
            }
        }
        Ok(manifests)
    }

    /// Write the index of `entries` (the platforms' manifests of `kind`) under every tag that
    /// `versions` and the options give; what was published.
    async fn write_indexes(
        &self,
        registry: &Registry,
        kind: ImageKind,
        versions: &naming::Versions,
        entries: &[(Platform, crate::oci::registry::Descriptor)],
        steps: &Steps,
    ) -> anyhow::Result<PublishedImage> {
        let name = self.repo.image(kind);
        let repository = repository_path(&name.0, &self.registry);
        let existing = registry.list_tags(&repository).await?;
        let latest = moves_latest(&self.aiida_version, &existing);
        let mut tags = naming::tags(versions, latest);
        if kind == ImageKind::Base {
            tags.retain(|t| !t.starts_with("postgresql-"));
        }
        for extra in &self.extra_tags {
            if !tags.contains(extra) {
                tags.push(extra.clone());
            }
        }
        let index = image_index(entries);
        let wanted = serde_json::to_value(&index)?;
        let mut index_digest = String::new();
        for tag in &tags {
            let step = steps.start(format!("index {}:{tag}", name.0));
            // An unchanged index is not written again.
            let there = registry.descriptor(&repository, tag).await?;
            let same = there.is_some_and(|d| {
                serde_json::from_slice::<serde_json::Value>(&d.bytes).ok() == Some(wanted.clone())
            });
            if !same {
                registry.push_index(&repository, tag, index.clone()).await?;
            }
            let written = registry
                .descriptor(&repository, tag)
                .await?
                .with_context(|| {
                    format!(
                        "{}:{tag} was written but the registry does not serve it",
                        name.0
                    )
                })?;
            step.done(&written.digest);
            index_digest = written.digest;
        }
        Ok(PublishedImage {
            repository: name.0.clone(),
            index_digest,
            tags,
            platforms: entries
                .iter()
                .map(|(platform, d)| PublishedPlatform {
                    platform: oci_platform_name(*platform),
                    digest: d.digest.clone(),
                })
                .collect(),
        })
    }

    /// What was published, printed ([`Self::print`]) and returned.
    fn report(&self, images: Vec<PublishedImage>) -> anyhow::Result<Published> {
        let published = Published {
            registry: self.registry.clone(),
            images,
        };
        self.print(&published)?;
        Ok(published)
    }

    /// The result on stdout: JSON with `--json`, else one line per image.
    fn print(&self, published: &Published) -> anyhow::Result<()> {
        if self.json {
            println!("{}", serde_json::to_string_pretty(published)?);
        } else {
            for image in &published.images {
                println!(
                    "{}@{} ({}) tags: {}",
                    image.repository,
                    image.index_digest,
                    image
                        .platforms
                        .iter()
                        .map(|p| p.platform.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                    image.tags.join(" ")
                );
            }
        }
        Ok(())
    }
}

/// The config digest an image manifest names (for an image the engine pushed, the image ID).
fn config_digest(manifest: &crate::oci::registry::Descriptor) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(&manifest.bytes).ok()?;
    value["config"]["digest"].as_str().map(str::to_owned)
}

/// `linux/amd64`, `linux/arm64/v8`.
fn oci_platform_name(platform: Platform) -> String {
    match platform.variant() {
        Some(v) => format!("{}/{v}", platform.docker()),
        None => platform.docker().to_owned(),
    }
}

/// The repository path inside the registry (`organization/image`).
fn repository_path(name: &str, registry: &str) -> String {
    name.strip_prefix(registry)
        .map_or(name, |rest| rest.trim_start_matches('/'))
        .to_owned()
}

/// The OCI image index of one image's per-platform manifests, in platform order.
pub fn image_index(entries: &[(Platform, crate::oci::registry::Descriptor)]) -> OciImageIndex {
    OciImageIndex {
        schema_version: 2,
        media_type: Some(OCI_IMAGE_INDEX_MEDIA_TYPE.to_owned()),
        manifests: entries
            .iter()
            .map(|(platform, d)| ImageIndexEntry {
                media_type: d.media_type.clone(),
                digest: d.digest.clone(),
                size: d.size,
                platform: Some(OciPlatform {
                    architecture: platform.architecture().into(),
                    os: "linux".into(),
                    os_version: None,
                    os_features: None,
                    variant: platform.variant().map(str::to_owned),
                    features: None,
                }),
                annotations: None,
                artifact_type: None,
            })
            .collect(),
        artifact_type: None,
        annotations: None,
    }
}

/// Whether publishing aiida-core `version` moves `latest`, given the tags already in the
/// repository: only a final release at least as high as every final `aiida-*` release there.
pub fn moves_latest(version: &str, existing_tags: &[String]) -> bool {
    let Ok(ours) = Version::from_str(version) else {
        return false;
    };
    if ours.any_prerelease() {
        return false;
    }
    existing_tags
        .iter()
        .filter_map(|t| t.strip_prefix("aiida-"))
        .filter_map(|v| Version::from_str(v).ok())
        .filter(|v| !v.any_prerelease())
        .all(|v| v <= ours)
}

/// A tag name as the distribution spec allows it.
fn check_tag(tag: &str) -> anyhow::Result<()> {
    let ok = !tag.is_empty()
        && tag.len() <= 128
        && tag.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
        && tag
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
    anyhow::ensure!(
        ok,
        "--tag {tag:?} is not a valid tag (letters, digits, _ . -, at most 128, not starting with . or -)"
    );
    Ok(())
}

/// Progress: a spinner per step on a terminal, one line per finished step otherwise.
struct Steps;

struct Step {
    bar: ProgressBar,
    what: String,
}

impl Steps {
    fn new() -> Steps {
        Steps
    }

    fn start(&self, what: String) -> Step {
        let bar = ProgressBar::new_spinner();
        bar.set_style(
            ProgressStyle::with_template("{spinner} {elapsed} {msg}").expect("valid template"),
        );
        bar.set_message(what.clone());
        bar.enable_steady_tick(std::time::Duration::from_millis(200));
        Step { bar, what }
    }
}

impl Step {
    fn done(self, result: &str) {
        self.bar.finish_and_clear();
        eprintln!("{}: {result}", self.what);
    }

    fn fail(self) {
        self.bar.finish_and_clear();
        eprintln!("{}: failed", self.what);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(list: &[&str]) -> Vec<String> {
        list.iter().map(std::string::ToString::to_string).collect()
    }

    #[test]
    fn latest_moves_only_forward_and_only_for_final_releases() {
        assert!(moves_latest("2.9.4", &[]));
        assert!(moves_latest(
            "2.9.4",
            &tags(&["aiida-2.9.4", "latest", "python-3.11"])
        ));
        assert!(moves_latest(
            "2.10.0",
            &tags(&["aiida-2.9.4", "aiida-2.11.0rc1"])
        ));
        assert!(!moves_latest("2.6.3", &tags(&["aiida-2.9.4", "latest"])));
        assert!(!moves_latest("2.10.0rc1", &tags(&["aiida-2.9.4"])));
        assert!(!moves_latest("2.10.0rc1", &[]));
    }

    #[test]
    fn an_index_lists_each_platform_by_digest_with_the_oci_media_type() {
        let descriptor = |d: &str| crate::oci::registry::Descriptor {
            media_type: "application/vnd.docker.distribution.manifest.v2+json".into(),
            digest: d.into(),
            size: 1234,
            bytes: Vec::new(),
        };
        let index = image_index(&[
            (Platform::Amd64, descriptor("sha256:aa")),
            (Platform::Arm64, descriptor("sha256:bb")),
        ]);
        let json = serde_json::to_value(&index).unwrap();
        assert_eq!(json["mediaType"], OCI_IMAGE_INDEX_MEDIA_TYPE);
        assert_eq!(json["manifests"][0]["platform"]["architecture"], "amd64");
        assert_eq!(json["manifests"][1]["platform"]["variant"], "v8");
        assert_eq!(json["manifests"][1]["digest"], "sha256:bb");
        assert_eq!(oci_platform_name(Platform::Arm64), "linux/arm64/v8");
    }

    #[test]
    fn tags_are_checked_and_repository_paths_found() {
        assert!(check_tag("pr-123").is_ok());
        assert!(check_tag("-bad").is_err());
        assert!(check_tag("a/b").is_err());
        assert_eq!(
            repository_path("localhost:5000/acme/aiida-core-base", "localhost:5000"),
            "acme/aiida-core-base"
        );
    }
}
