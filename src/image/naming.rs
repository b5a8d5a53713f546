//! Image names and tags in upstream's scheme.
//!
//! A name is `[REGISTRY/]ORGANIZATION/IMAGE` (`aiidateam/aiida-core-base` by default, like
//! upstream's `${REGISTRY}${ORGANIZATION}/${image}`). Every build is tagged `aiida-X.Y.Z` and
//! `python-X.Y`, the with-services image also `postgresql-N`, and `latest` unless turned off.
//!
//! One engine keeps the images of several platforms side by side: the host's platform gets the
//! tags above, any other platform the same tags with its architecture as a suffix
//! (`aiida-2.9.4-arm64`, `latest-arm64`; base image `debian:bookworm-arm64`). In a registry, one
//! OCI image index per tag lists every platform's manifest ([`crate::image::publish`]).

use std::fmt;

use crate::platform::Platform;

/// The organization (namespace) the images are named under unless `--organization` says otherwise.
pub const ORGANIZATION: &str = "aiidateam";

/// Where `aiida-devc init` reads the published tags from by default: Docker Hub, under the
/// names users know (`aiidateam/aiida-core-base`).
pub const PUBLISHED_AT: &str = "docker.io/aiidateam";

/// The images this project builds, in build order (each is `FROM` the one before).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
pub enum ImageKind {
    /// aiida-core for the `aiida` user, services external (or SQLite and ZeroMQ).
    Base,
    /// The base plus PostgreSQL and RabbitMQ inside the container.
    WithServices,
}

impl ImageKind {
    pub const ALL: [ImageKind; 2] = [ImageKind::Base, ImageKind::WithServices];

    /// The image (and Dockerfiles/ folder) name.
    pub fn name(self) -> &'static str {
        match self {
            ImageKind::Base => "aiida-core-base",
            ImageKind::WithServices => "aiida-core-with-services",
        }
    }

    /// The kind whose [`ImageKind::name`] is `name`.
    pub fn from_name(name: &str) -> Option<ImageKind> {
        ImageKind::ALL.into_iter().find(|k| k.name() == name)
    }

    pub fn description(self) -> &'static str {
        match self {
            ImageKind::Base => {
                "aiida-core for the non-root user aiida, started by aiida-init; uses external \
                 PostgreSQL and RabbitMQ when configured, else SQLite and ZeroMQ"
            }
            ImageKind::WithServices => {
                "aiida-core-base with PostgreSQL and RabbitMQ in the container, supervised by aiida-init"
            }
        }
    }
}

/// Where the images are named: `[registry/]organization`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repository {
    pub registry: Option<String>,
    pub organization: String,
}

impl Repository {
    pub fn new(registry: Option<&str>, organization: &str) -> anyhow::Result<Repository> {
        let registry = registry
            .map(|r| r.trim_end_matches('/').to_owned())
            .filter(|r| !r.is_empty());
        if let Some(r) = &registry {
            anyhow::ensure!(
                !r.contains("://") && !r.contains(char::is_whitespace),
                "--registry {r:?} is not a registry host (write it as HOST[:PORT], e.g. ghcr.io or localhost:5000)"
            );
        }
        anyhow::ensure!(
            !organization.is_empty()
                && organization
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-/".contains(c)),
            "--organization {organization:?} must be lowercase letters, digits and . _ - /"
        );
        Ok(Repository {
            registry,
            organization: organization.to_owned(),
        })
    }

    /// The full name of one image, without a tag.
    pub fn image(&self, kind: ImageKind) -> ImageName {
        let path = format!("{}/{}", self.organization, kind.name());
        ImageName(match &self.registry {
            Some(registry) => format!("{registry}/{path}"),
            None => path,
        })
    }
}

/// `[registry/]organization/image`, without a tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageName(pub String);

impl ImageName {
    pub fn with_tag(&self, tag: &str) -> String {
        format!("{}:{tag}", self.0)
    }
}

impl fmt::Display for ImageName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The local tag of `tag` for `platform`: unchanged for the host's platform, `TAG-ARCH` otherwise.
pub fn local_tag(tag: &str, platform: Platform) -> String {
    if platform == Platform::host() {
        tag.to_owned()
    } else {
        format!("{tag}-{}", platform.architecture())
    }
}

/// The local name of the base image `image` (`NAME[:TAG]`) for `platform`, in the same scheme.
pub fn local_base_image(image: &str, platform: Platform) -> String {
    if platform == Platform::host() {
        return image.to_owned();
    }
    // A ':' after the last '/' starts the tag (a registry port comes before a '/').
    let name_start = image.rfind('/').map_or(0, |i| i + 1);
    match image[name_start..].find(':') {
        Some(colon) => {
            let (name, tag) = image.split_at(name_start + colon);
            format!("{name}:{}", local_tag(&tag[1..], platform))
        }
        None => format!("{image}:{}", local_tag("latest", platform)),
    }
}

/// What a built image holds, as found in it after the build.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Versions {
    pub aiida: String,
    /// `X.Y`
    pub python: String,
    /// The PostgreSQL major version, for the with-services image.
    pub postgresql: Option<String>,
}

/// The tags of one image, in upstream's scheme.
pub fn tags(versions: &Versions, latest: bool) -> Vec<String> {
    let mut tags = vec![
        format!("aiida-{}", versions.aiida),
        format!("python-{}", versions.python),
    ];
    if let Some(pg) = &versions.postgresql {
        tags.push(format!("postgresql-{pg}"));
    }
    if latest {
        tags.push("latest".into());
    }
    tags
}

/// Check an aiida-core version given on the command line: a PEP 440 release such as 2.9.4.
pub fn check_aiida_version(version: &str) -> anyhow::Result<()> {
    let ok = !version.is_empty()
        && version
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.')
        && version.starts_with(|c: char| c.is_ascii_digit());
    anyhow::ensure!(
        ok,
        "--aiida-version {version:?} is not a release number such as 2.9.4"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_names_are_upstreams() {
        let repo = Repository::new(None, "aiidateam").unwrap();
        assert_eq!(repo.image(ImageKind::Base).0, "aiidateam/aiida-core-base");
        assert_eq!(
            repo.image(ImageKind::WithServices).with_tag("latest"),
            "aiidateam/aiida-core-with-services:latest"
        );
    }

    #[test]
    fn a_registry_prefixes_the_name() {
        let repo = Repository::new(Some("localhost:5000/"), "acme").unwrap();
        assert_eq!(
            repo.image(ImageKind::Base).0,
            "localhost:5000/acme/aiida-core-base"
        );
    }

    #[test]
    fn bad_registry_and_organization_are_named() {
        let err = Repository::new(Some("https://ghcr.io"), "x")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("--registry") && err.contains("ghcr.io"),
            "{err}"
        );
        let err = Repository::new(None, "AiiDA Team").unwrap_err().to_string();
        assert!(err.contains("--organization"), "{err}");
    }

    #[test]
    fn tags_follow_upstream() {
        let v = Versions {
            aiida: "2.9.4".into(),
            python: "3.11".into(),
            postgresql: Some("15".into()),
        };
        assert_eq!(
            tags(&v, true),
            ["aiida-2.9.4", "python-3.11", "postgresql-15", "latest"]
        );
        let v = Versions {
            postgresql: None,
            ..v
        };
        assert_eq!(tags(&v, false), ["aiida-2.9.4", "python-3.11"]);
    }

    #[test]
    fn the_other_platform_gets_an_architecture_suffix() {
        let other = match Platform::host() {
            Platform::Amd64 => Platform::Arm64,
            Platform::Arm64 => Platform::Amd64,
        };
        let arch = other.architecture();
        assert_eq!(local_tag("aiida-2.9.4", Platform::host()), "aiida-2.9.4");
        assert_eq!(
            local_tag("aiida-2.9.4", other),
            format!("aiida-2.9.4-{arch}")
        );
        assert_eq!(
            local_base_image("debian:bookworm", other),
            format!("debian:bookworm-{arch}")
        );
        assert_eq!(
            local_base_image("localhost:5000/acme/base", other),
            format!("localhost:5000/acme/base:latest-{arch}")
        );
        assert_eq!(
            local_base_image("debian:bookworm", Platform::host()),
            "debian:bookworm"
        );
    }

    #[test]
    fn aiida_versions_are_checked() {
        assert!(check_aiida_version("2.9.4").is_ok());
        assert!(check_aiida_version("2.10.0rc1").is_ok());
        assert!(check_aiida_version("latest").is_err());
        assert!(check_aiida_version("2.9; rm -rf /").is_err());
    }
}
