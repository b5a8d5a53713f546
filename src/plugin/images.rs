//! From a plugin's aiida-core requirement to an image tag.
//!
//! The images are tagged in upstream's scheme: `aiida-X.Y.Z` for the aiida-core release they
//! hold, and `latest`. A pinned `aiida-X.Y.Z` tag is always preferred (`latest` has been known to
//! lag years behind upstream). The candidates are
//!
//! * the aiida-core releases the images can be built for ([`RELEASES`]: the profile is set up
//!   with `verdi presto`, which exists from aiida-core 2.6 on), and
//! * whatever `aiida-X.Y.Z` tags of the image are present in the local engine.
//!
//! The newest candidate that satisfies the requirement wins; one present locally is preferred to
//! one that still has to be built or pulled.

use std::str::FromStr;

use pep508_rs::pep440_rs::{Version, VersionSpecifiers};

/// Where the images live by default.
pub const ORGANISATION: &str = "aiidateam";

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
    /// The image repository (without tag) the variant's AiiDA container uses.
    pub fn repository(self) -> String {
        match self {
            Variant::Services => format!("{ORGANISATION}/aiida-core-with-services"),
            Variant::Lite | Variant::Compose => format!("{ORGANISATION}/aiida-core-base"),
        }
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

/// Pick the image for `requirement` (see the module documentation). `local_tags` are the tags of
/// `repository` present in the local engine.
pub fn choose(
    variant: Variant,
    requirement: Option<&VersionSpecifiers>,
    local_tags: &[String],
) -> Result<ImageChoice, NoImage> {
    let repository = variant.repository();
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
            requirement: match requirement {
                Some(spec) => format!("aiida-core{spec}"),
                None => "aiida-core".into(),
            },
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

    #[test]
    fn an_unsatisfiable_requirement_says_which_releases_exist() {
        let err = choose(Variant::Services, Some(&spec(">=1.6,<2")), &[]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "no image satisfies aiida-core>=1.6, <2: images exist for aiida-core 2.6.0 to 2.9.4"
        );
    }
}
