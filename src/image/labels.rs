//! Image labels: the OCI annotations and `devcontainer.metadata`.
//!
//! `devcontainer.metadata` makes a devcontainer that names the image (`{"image": ...}`, nothing
//! else) run it the way it is meant to run:
//! * `overrideCommand: false`: the image's `/init` stays PID 1 (otherwise the devcontainer CLI
//!   replaces the command with a sleep loop and `docker stop` SIGKILLs every service);
//! * `containerUser`/`remoteUser` `aiida`, and `updateRemoteUserUID` so the home's files get the
//!   host user's UID;
//! * `postStartCommand: aiida-init wait` with `waitFor: postStartCommand`: VS Code, Codespaces and
//!   the devcontainer CLI run it after every start and hold the session until AiiDA is ready.

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;

use serde_json::json;

use super::naming::ImageKind;

/// Seconds `aiida-init wait` allows for readiness when run by a devcontainer tool.
pub const DEVCONTAINER_WAIT_SECS: u32 = 300;

/// The `devcontainer.metadata` label value.
pub fn devcontainer_metadata() -> String {
    json!([{
        "overrideCommand": false,
        "containerUser": "aiida",
        "remoteUser": "aiida",
        "updateRemoteUserUID": true,
        "postStartCommand": format!("aiida-init wait --timeout {DEVCONTAINER_WAIT_SECS}"),
        "waitFor": "postStartCommand",
    }])
    .to_string()
}

/// Where the sources come from: revision and time, for the OCI labels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceInfo {
    pub revision: String,
    /// RFC 3339.
    pub created: String,
}

impl SourceInfo {
    /// From the git checkout at `dir`: the HEAD commit and its commit time. The time of the commit
    /// (not of the build) keeps rebuilds of the same sources identical, so the engine's layer cache
    /// serves the with-services image too. `SOURCE_DATE_EPOCH` wins when set.
    pub fn from_checkout(dir: &Path) -> SourceInfo {
        let git = |args: &[&str]| -> Option<String> {
            let out = Command::new("git")
                .arg("-C")
                .arg(dir)
                .args(args)
                .output()
                .ok()?;
            out.status
                .success()
                .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
        };
        let revision = git(&["rev-parse", "HEAD"]).unwrap_or_else(|| "unknown".into());
        let created = match std::env::var("SOURCE_DATE_EPOCH")
            .ok()
            .and_then(|s| s.parse::<i64>().ok())
        {
            Some(epoch) => rfc3339(epoch),
            None => git(&["log", "-1", "--format=%ct"])
                .and_then(|s| s.parse::<i64>().ok())
                .map_or_else(|| rfc3339(0), rfc3339),
        };
        SourceInfo { revision, created }
    }
}

/// The labels of one image.
pub fn labels(
    kind: ImageKind,
    aiida_version: &str,
    base_image: &str,
    source: &SourceInfo,
) -> HashMap<String, String> {
    let mut labels = HashMap::new();
    let mut put = |k: &str, v: &str| {
        labels.insert(k.to_owned(), v.to_owned());
    };
    put("org.opencontainers.image.title", kind.name());
    put("org.opencontainers.image.description", kind.description());
    put("org.opencontainers.image.version", aiida_version);
    put("org.opencontainers.image.revision", &source.revision);
    put("org.opencontainers.image.created", &source.created);
    put(
        "org.opencontainers.image.source",
        env!("CARGO_PKG_REPOSITORY"),
    );
    put(
        "org.opencontainers.image.licenses",
        env!("CARGO_PKG_LICENSE"),
    );
    put("org.opencontainers.image.vendor", "AiiDA team");
    put("org.opencontainers.image.base.name", base_image);
    put("devcontainer.metadata", &devcontainer_metadata());
    labels
}

/// Seconds since the epoch as `YYYY-MM-DDTHH:MM:SSZ` (proleptic Gregorian, UTC).
pub fn rfc3339(epoch: i64) -> String {
    let days = epoch.div_euclid(86_400);
    let secs = epoch.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_formats_known_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_795_711_127), "2026-11-26T16:38:47Z");
    }

    #[test]
    fn devcontainer_metadata_keeps_init_and_waits_for_readiness() {
        let v: serde_json::Value = serde_json::from_str(&devcontainer_metadata()).unwrap();
        let entry = &v[0];
        assert_eq!(entry["overrideCommand"], false);
        assert_eq!(entry["remoteUser"], "aiida");
        assert_eq!(entry["containerUser"], "aiida");
        assert_eq!(entry["waitFor"], "postStartCommand");
        assert!(
            entry["postStartCommand"]
                .as_str()
                .unwrap()
                .starts_with("aiida-init wait")
        );
    }

    #[test]
    fn oci_labels_are_complete() {
        let source = SourceInfo {
            revision: "abc".into(),
            created: rfc3339(0),
        };
        let l = labels(
            ImageKind::WithServices,
            "2.9.4",
            "aiidateam/aiida-core-base:aiida-2.9.4",
            &source,
        );
        for key in ["version", "revision", "source", "created"] {
            assert!(
                l.contains_key(&format!("org.opencontainers.image.{key}")),
                "{key}"
            );
        }
        assert_eq!(l["org.opencontainers.image.version"], "2.9.4");
        assert!(l.contains_key("devcontainer.metadata"));
    }
}
