//! From a plugin's aiida-core requirement to an image tag.
//!
//! The images are tagged in upstream's scheme: `aiida-X.Y.Z` for the aiida-core release they
//! hold, and `latest`. A pinned `aiida-X.Y.Z` tag is always preferred (`latest` has been known to
//! lag years behind upstream).
//!
//! [`choose_published`]: the newest `aiida-X.Y.Z` tag in the registry's tag list of the image
//! (`--registry HOST[/ORG]`, default [`DEFAULT_REGISTRY`]) that satisfies the requirement. When
//! the registry cannot be read (offline), [`choose`] is the fallback: the aiida-core releases the
//! images are built for ([`RELEASES`]; the profile is set up with `verdi presto`, which exists
//! from aiida-core 2.6 on) and the `aiida-X.Y.Z` tags present in the local engine, one present
//! locally preferred.

use std::str::FromStr;

use pep508_rs::pep440_rs::{Version, VersionSpecifiers};

use crate::image::naming::{ImageKind, ORGANIZATION};

/// The registry and organization `aiida-devc init` reads the published tags from by default.
pub const DEFAULT_REGISTRY: &str = crate::image::naming::PUBLISHED_AT;

/// aiida-core releases the images are built for, newest first.
pub const RELEASES: &[&str] = &[
    "2.9.4", "2.9.3", "2.9.2", "2.9.1", "2.9.0", "2.8.3", "2.8.2", "2.8.1", "2.8.0", "2.7.5",
    "2.7.4", "2.7.3", "2.6.4", "2.6.3", "2.6.2", "2.6.1", "2.6.0",
];

/// Which image family a devcontainer uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Variant {
    /// aiida-core-with-services: PostgreSQL, RabbitMQ and AiiDA in one container (default).
    #[default]
    Services,
    /// aiida-core-base alone: no services, for quick edits and unit tests.
    Lite,
    /// aiida-core-base with PostgreSQL and RabbitMQ in their own containers (Docker Compose).
    Compose,
}

impl Variant {
    /// The image the variant's AiiDA container runs.
    pub fn image_kind(self) -> ImageKind {
        match self {
            Variant::Services => ImageKind::WithServices,
            Variant::Lite | Variant::Compose => ImageKind::Base,
        }
    }

    /// The image's name without registry and organization.
    pub fn image_name(self) -> &'static str {
        self.image_kind().name()
    }

    /// The image repository (without tag) the variant's AiiDA container uses by default.
    pub fn repository(self) -> String {
        format!("{ORGANIZATION}/{}", self.image_name())
    }
}

/// Where the images are published: `--registry HOST[/ORG]` (the organization defaults to
/// aiidateam).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRegistry {
    /// `ghcr.io`, `docker.io`, `localhost:5000`
    pub host: String,
    pub organization: String,
}

impl ImageRegistry {
    pub fn parse(text: &str) -> Result<ImageRegistry, String> {
        let (host, organization) = text.split_once('/').unwrap_or((text, ORGANIZATION));
        let valid_host = !host.is_empty()
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':'));
        let valid_org = !organization.is_empty()
            && organization.split('/').all(|part| {
                !part.is_empty()
                    && part.chars().all(|c| {
                        c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-')
                    })
            });
        if !valid_host || !valid_org {
            return Err(format!(
                "--registry '{text}' is not HOST[/ORGANIZATION] (for example ghcr.io/aiidateam or localhost:5000/aiidateam)"
            ));
        }
        Ok(ImageRegistry {
            host: host.to_owned(),
            organization: organization.to_owned(),
        })
    }

    /// The repository's path in the registry: `aiidateam/aiida-core-base`.
    pub fn path(&self, variant: Variant) -> String {
        format!("{}/{}", self.organization, variant.image_name())
    }

    /// The image name to write: `aiidateam/aiida-core-base` on Docker Hub, else with the host.
    pub fn image(&self, variant: Variant) -> String {
        if self.host == "docker.io" {
            self.path(variant)
        } else {
            format!("{}/{}", self.host, self.path(variant))
        }
    }
}

impl std::fmt::Display for ImageRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.host, self.organization)
    }
}

/// The image aiida-devc picked, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageChoice {
    /// `repository:tag`.
    pub image: String,
    /// The aiida-core release inside, when known.
    pub aiida_core: Option<String>,
    /// Whether the image is already present in the local engine.
    pub present_locally: bool,
}

/// Why no image fits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoImage {
    pub requirement: String,
    pub oldest: String,
    pub newest: String,
}

impl std::fmt::Display for NoImage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "no image satisfies {}: images exist for aiida-core {} to {}",
            self.requirement, self.oldest, self.newest
        )
    }
}

/// The aiida-core version a tag names (`aiida-2.9.4` → `2.9.4`).
pub fn tag_version(tag: &str) -> Option<Version> {
    tag.strip_prefix("aiida-")
        .and_then(|v| Version::from_str(v).ok())
}

/// No published tag satisfies the requirement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoPublishedImage {
    pub requirement: String,
    /// `host/org/name`
    pub repository: String,
    /// The newest `aiida-X.Y.Z` tags that exist, newest first (at most five).
    pub newest: Vec<String>,
}

impl std::fmt::Display for NoPublishedImage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.newest.is_empty() {
            write!(
                f,
                "no published image satisfies {}: {} has no aiida-X.Y.Z tags",
                self.requirement, self.repository
            )
        } else {
            write!(
                f,
                "no published image satisfies {}: the newest tags of {} are {}",
                self.requirement,
                self.repository,
                self.newest.join(", ")
            )
        }
    }
}

fn requirement_text(requirement: Option<&VersionSpecifiers>) -> String {
    match requirement {
        Some(spec) => format!("aiida-core{spec}"),
        None => "aiida-core".into(),
    }
}

/// Pick the newest `aiida-X.Y.Z` tag among `published` (the registry's tag list) that satisfies
/// `requirement`. `local_tags` only say whether that image is present in the local engine.
pub fn choose_published(
    variant: Variant,
    registry: &ImageRegistry,
    requirement: Option<&VersionSpecifiers>,
    published: &[String],
    local_tags: &[String],
) -> Result<ImageChoice, NoPublishedImage> {
    let mut versions: Vec<Version> = published.iter().filter_map(|t| tag_version(t)).collect();
    versions.sort_by(|a, b| b.cmp(a));
    versions.dedup();
    let fits = |v: &&Version| requirement.is_none_or(|spec| spec.contains(v));
    match versions.iter().find(fits) {
        Some(version) => {
            let tag = format!("aiida-{version}");
            Ok(ImageChoice {
                image: format!("{}:{tag}", registry.image(variant)),
                aiida_core: Some(version.to_string()),
                present_locally: local_tags.contains(&tag),
            })
        }
        None => Err(NoPublishedImage {
            requirement: requirement_text(requirement),
            repository: format!("{}/{}", registry.host, registry.path(variant)),
            newest: versions
                .iter()
                .take(5)
                .map(|v| format!("aiida-{v}"))
                .collect(),
        }),
    }
}

/// What the registry said about an image's tags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublishedTags {
    /// The registry's tag list.
    Read(Vec<String>),
    /// The registry could not be read: why.
    Unavailable(String),
}

/// How long reading a tag list may take before `init` falls back to [`RELEASES`].
const TAG_LIST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(20);

/// Read the tags of `variant`'s image from `registry` (anonymously unless a credential is
/// configured, see [`crate::oci::auth`]).
pub fn published_tags(
    registry: &ImageRegistry,
    variant: Variant,
    ca: Option<&crate::host::ca::CaBundle>,
) -> PublishedTags {
    let read = || -> anyhow::Result<Vec<String>> {
        let client = crate::oci::Registry::connect(
            &registry.host,
            &crate::oci::auth::AuthEnv::from_process(),
            ca,
        )?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let path = registry.path(variant);
        let tags = runtime.block_on(async {
            tokio::time::timeout(TAG_LIST_TIMEOUT, client.list_tags(&path)).await
        });
        match tags {
            Ok(result) => Ok(result?),
            Err(_) => anyhow::bail!(
                "no answer from {} within {} s",
                registry.host,
                TAG_LIST_TIMEOUT.as_secs()
            ),
        }
    };
    match read() {
        Ok(tags) => PublishedTags::Read(tags),
        Err(e) => PublishedTags::Unavailable(e.to_string()),
    }
}

/// The offline fallback: pick the image for `requirement` from [`RELEASES`] and the local tags
/// (see the module documentation). `local_tags` are the tags of `repository` present in the
/// local engine.
pub fn choose(
    variant: Variant,
    requirement: Option<&VersionSpecifiers>,
    local_tags: &[String],
) -> Result<ImageChoice, NoImage> {
    choose_from(&variant.repository(), requirement, local_tags)
}

/// [`choose`] for the images named `repository`.
pub fn choose_from(
    repository: &str,
    requirement: Option<&VersionSpecifiers>,
    local_tags: &[String],
) -> Result<ImageChoice, NoImage> {
    let fits = |v: &Version| requirement.is_none_or(|spec| spec.contains(v));
    let local = local_tags
        .iter()
        .filter_map(|t| tag_version(t))
        .filter(|v| fits(v))
        .max();
    if let Some(version) = local {
        return Ok(ImageChoice {
            image: format!("{repository}:aiida-{version}"),
            aiida_core: Some(version.to_string()),
            present_locally: true,
        });
    }
    let release = RELEASES
        .iter()
        .map(|r| Version::from_str(r).unwrap())
        .filter(|v| fits(v))
        .max();
    match release {
        Some(version) => Ok(ImageChoice {
            image: format!("{repository}:aiida-{version}"),
            aiida_core: Some(version.to_string()),
            present_locally: false,
        }),
        None => Err(NoImage {
            requirement: requirement_text(requirement),
            oldest: RELEASES.last().unwrap().to_string(),
            newest: RELEASES[0].to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(s: &str) -> VersionSpecifiers {
        VersionSpecifiers::from_str(s).unwrap()
    }

    #[test]
    fn the_newest_release_that_fits_is_chosen() {
        let c = choose(Variant::Services, Some(&spec(">=2.0,<3")), &[]).unwrap();
        assert_eq!(c.image, "aiidateam/aiida-core-with-services:aiida-2.9.4");
        let c = choose(Variant::Services, Some(&spec("~=2.7.0")), &[]).unwrap();
        assert_eq!(c.image, "aiidateam/aiida-core-with-services:aiida-2.7.5");
        let c = choose(Variant::Lite, Some(&spec("==2.6.*")), &[]).unwrap();
        assert_eq!(c.image, "aiidateam/aiida-core-base:aiida-2.6.4");
        assert!(!c.present_locally);
    }

    #[test]
    fn a_local_tag_that_fits_wins() {
        let local = vec![
            "latest".to_string(),
            "aiida-2.8.1".into(),
            "python-3.11".into(),
        ];
        let c = choose(Variant::Services, Some(&spec(">=2.6")), &local).unwrap();
        assert_eq!(c.image, "aiidateam/aiida-core-with-services:aiida-2.8.1");
        assert!(c.present_locally);
    }

    fn tags(list: &[&str]) -> Vec<String> {
        list.iter().map(std::string::ToString::to_string).collect()
    }

    #[test]
    fn the_newest_published_tag_that_fits_is_chosen() {
        let registry = ImageRegistry::parse("localhost:5000/org").unwrap();
        let published = tags(&[
            "latest",
            "aiida-2.7.1",
            "aiida-2.10.0",
            "python-3.11",
            "aiida-2.9.0",
        ]);
        let c = choose_published(
            Variant::Lite,
            &registry,
            Some(&spec("<2.10")),
            &published,
            &tags(&["aiida-2.9.0"]),
        )
        .unwrap();
        assert_eq!(c.image, "localhost:5000/org/aiida-core-base:aiida-2.9.0");
        assert!(c.present_locally);
        let c = choose_published(Variant::Services, &registry, None, &published, &[]).unwrap();
        assert_eq!(
            c.image,
            "localhost:5000/org/aiida-core-with-services:aiida-2.10.0"
        );
        assert!(!c.present_locally);
        let err = choose_published(
            Variant::Services,
            &registry,
            Some(&spec(">=3")),
            &published,
            &[],
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "no published image satisfies aiida-core>=3: the newest tags of localhost:5000/org/aiida-core-with-services are aiida-2.10.0, aiida-2.9.0, aiida-2.7.1"
        );
    }

    #[test]
    fn registries_name_their_images() {
        let hub = ImageRegistry::parse(DEFAULT_REGISTRY).unwrap();
        assert_eq!(
            hub.image(Variant::Services),
            "aiidateam/aiida-core-with-services"
        );
        let ghcr = ImageRegistry::parse("ghcr.io").unwrap();
        assert_eq!(
            ghcr.image(Variant::Compose),
            "ghcr.io/aiidateam/aiida-core-base"
        );
        for bad in ["", "ghcr.io/", "ghcr.io/Org", "a b/c"] {
            assert!(ImageRegistry::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn an_unsatisfiable_requirement_says_which_releases_exist() {
        let err = choose(Variant::Services, Some(&spec(">=1.6,<2")), &[]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "no image satisfies aiida-core>=1.6, <2: images exist for aiida-core 2.6.0 to 2.9.4"
        );
    }
}
