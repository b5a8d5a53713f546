//! Publishing: which tags a version gets, and pushing packages and the collection.
//!
//! Tags follow the reference CLI: a new version `X.Y.Z` is pushed as `X.Y.Z`, and as `X.Y`, `X`
//! and `latest` only when it is newer than every published version in that range, so floating
//! tags only move forward. A version that is already published is skipped (nothing is pushed).

use semver::Version;

/// The tags to push for `version` given the tags already in the repository, or `None` when the
/// version is already published.
pub fn tags_to_push(version: &Version, published: &[String]) -> Option<Vec<String>> {
    let exact = version.to_string();
    if published.contains(&exact) {
        return None;
    }
    let versions: Vec<Version> = published
        .iter()
        .filter_map(|t| Version::parse(t).ok())
        .collect();
    let newest_in =
        |matches: &dyn Fn(&Version) -> bool| versions.iter().filter(|v| matches(v)).max().cloned();
    let moves = |newest: Option<Version>| newest.is_none_or(|n| *version > n);
    let mut tags = Vec::new();
    if moves(newest_in(&|v| v.major == version.major && v.pre.is_empty())) {
        tags.push(version.major.to_string());
    }
    if moves(newest_in(&|v| {
        v.major == version.major && v.minor == version.minor && v.pre.is_empty()
    })) {
        tags.push(format!("{}.{}", version.major, version.minor));
    }
    tags.push(exact);
    if moves(newest_in(&|v| v.pre.is_empty())) {
        tags.push("latest".to_owned());
    }
    Some(tags)
}

/// Check a namespace like the reference CLI's reference parser: lowercase path segments.
pub fn check_namespace(namespace: &str) -> Result<(), String> {
    let segment_ok = |s: &str| {
        !s.is_empty()
            && s.split(['.', '_', '-']).all(|part| {
                !part.is_empty()
                    && part
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
            })
    };
    if namespace.split('/').all(segment_ok) {
        Ok(())
    } else {
        Err(format!(
            "namespace '{namespace}' is not valid: use lowercase letters and digits in '/'-separated parts, \
             joined by single '.', '_' or '-' (for example aiidateam/devcontainer-features)"
        ))
    }
}

/// Check a registry host (`name[:port]`, no scheme, no path).
pub fn check_registry(registry: &str) -> Result<(), String> {
    let (host, port) = match registry.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (registry, None),
    };
    let host_ok = !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-');
    let port_ok = port.is_none_or(|p| p.parse::<u16>().is_ok());
    if host_ok && port_ok {
        Ok(())
    } else {
        Err(format!(
            "registry '{registry}' is not a host name with an optional port (for example ghcr.io or localhost:5000; no scheme, no path)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(version: &str, published: &[&str]) -> Option<Vec<String>> {
        let published: Vec<String> = published
            .iter()
            .map(std::string::ToString::to_string)
            .collect();
        tags_to_push(&Version::parse(version).unwrap(), &published)
    }

    #[test]
    fn the_first_version_gets_every_tag() {
        assert_eq!(tags("1.2.3", &[]).unwrap(), ["1", "1.2", "1.2.3", "latest"]);
    }

    #[test]
    fn floating_tags_only_move_forward() {
        let published = ["1", "1.2", "1.2.3", "1.3", "1.3.0", "latest"];
        assert_eq!(tags("1.2.5", &published).unwrap(), ["1.2", "1.2.5"]);
        assert_eq!(
            tags("1.3.1", &published).unwrap(),
            ["1", "1.3", "1.3.1", "latest"]
        );
        assert_eq!(tags("0.9.0", &published).unwrap(), ["0", "0.9", "0.9.0"]);
        assert_eq!(
            tags("2.0.0", &published).unwrap(),
            ["2", "2.0", "2.0.0", "latest"]
        );
    }

    #[test]
    fn an_existing_version_is_skipped() {
        assert!(tags("1.2.3", &["1.2.3", "latest"]).is_none());
    }

    #[test]
    fn namespaces_and_registries_are_checked() {
        assert!(check_namespace("aiidateam/devcontainer-features").is_ok());
        assert!(check_namespace("AiiDA/x").is_err());
        assert!(check_namespace("a//b").is_err());
        assert!(check_namespace("a/b-").is_err());
        assert!(check_registry("localhost:5000").is_ok());
        assert!(check_registry("ghcr.io").is_ok());
        assert!(check_registry("https://ghcr.io").is_err());
        assert!(check_registry("ghcr.io/x").is_err());
    }
}
