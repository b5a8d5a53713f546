//! `aiida-devc init` reads the image tags from a registry: a real `docker-registry` on localhost
//! holding a few `aiida-X.Y.Z` tags (small images: the base image, retagged and pushed), checked
//! for several aiida-core requirements, one that no tag satisfies, and the fallback to the
//! built-in releases when no registry answers.

use crate::support::{Need, skip_without};
use std::path::Path;
use std::process::Command;

use crate::support::copy_tree;
use crate::support::plugin_workspace::{aiida_devc, sample_plugin, text};
use crate::support::registry::Registry;
use crate::support::{Harness, base_image, unique_name};

/// Push the base image to `registry` as `<org>/<name>:<tag>` for each tag, leaving no local tag.
fn publish(harness: &Harness, registry: &Registry, org: &str, name: &str, tags: &[&str]) {
    harness.require_image(&base_image());
    for tag in tags {
        let image = format!("{}/{org}/{name}:{tag}", registry.host);
        let docker = |args: &[&str]| {
            let out = Command::new("docker").args(args).output().unwrap();
            assert!(
                out.status.success(),
                "docker {args:?}: {}",
                text(&out.stderr)
            );
        };
        docker(&["tag", &base_image(), &image]);
        harness.track_image(&image);
        docker(&["push", &image]);
        docker(&["rmi", &image]);
    }
}

/// The sample plugin with `requirement` as its aiida-core dependency.
fn plugin_requiring(requirement: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    copy_tree(&sample_plugin(), dir.path());
    std::fs::remove_dir_all(dir.path().join(".devcontainer")).unwrap();
    let pyproject = dir.path().join("pyproject.toml");
    let text = std::fs::read_to_string(&pyproject).unwrap();
    assert!(
        text.contains("\"aiida-core>=2.6,<3\""),
        "the sample plugin requires aiida-core>=2.6,<3"
    );
    let changed = text.replace(
        "\"aiida-core>=2.6,<3\"",
        &format!("\"aiida-core{requirement}\""),
    );
    std::fs::write(&pyproject, changed).unwrap();
    dir
}

/// `init --dry-run` against `registry`: success, stdout, stderr.
fn init(dir: &Path, registry: &str, args: &[&str]) -> (bool, String, String) {
    let mut all = vec!["--ca-cert", "none", "init", ".", "--dry-run"];
    all.extend_from_slice(args);
    let out = aiida_devc(dir, &all, &[("AIIDA_DEVC_REGISTRY", registry)]);
    (out.status.success(), text(&out.stdout), text(&out.stderr))
}

fn image_line(stdout: &str) -> &str {
    stdout
        .lines()
        .find(|l| l.starts_with("image: "))
        .unwrap_or_else(|| panic!("no image line in:\n{stdout}"))
}

#[test]
fn init_picks_the_newest_published_tag_that_satisfies_the_requirement() {
    if skip_without(&[Need::Docker]) {
        return;
    }
    let harness = Harness::new();
    let registry = Registry::shared();
    let org = format!("org-{}", unique_name("tags").rsplit('-').next().unwrap());
    publish(
        &harness,
        registry,
        &org,
        "aiida-core-with-services",
        &[
            "aiida-2.6.2",
            "aiida-2.7.1",
            "aiida-2.9.0",
            "latest",
            "python-3.11",
        ],
    );
    publish(
        &harness,
        registry,
        &org,
        "aiida-core-base",
        &["aiida-2.7.1"],
    );
    let at = format!("{}/{org}", registry.host);

    for (requirement, variant, expected) in [
        // Not 2.9.4 (the newest built-in release): what the registry holds decides.
        (
            ">=2.6,<3",
            "services",
            "aiida-core-with-services:aiida-2.9.0",
        ),
        (
            "~=2.7.0",
            "services",
            "aiida-core-with-services:aiida-2.7.1",
        ),
        ("<2.7", "services", "aiida-core-with-services:aiida-2.6.2"),
        (">=2.6,<3", "lite", "aiida-core-base:aiida-2.7.1"),
    ] {
        let plugin = plugin_requiring(requirement);
        let (ok, stdout, stderr) = init(plugin.path(), &at, &["--variant", variant]);
        assert!(ok, "{requirement} ({variant}): {stderr}");
        let expected = format!("image: {at}/{expected} (");
        assert!(
            image_line(&stdout).starts_with(&expected),
            "{requirement} ({variant}): expected {expected}...\n{stdout}"
        );
        assert!(
            stdout.contains(&format!(
                "\"image\": \"{}",
                &expected[7..expected.len() - 2]
            )),
            "{requirement}: the file names the image:\n{stdout}"
        );
        assert!(!stderr.contains("built-in list"), "{stderr}");
    }

    // None satisfied: the error names the requirement and the newest tags; nothing is written.
    let plugin = plugin_requiring(">=3");
    let out = aiida_devc(
        plugin.path(),
        &["--ca-cert", "none", "init", "."],
        &[("AIIDA_DEVC_REGISTRY", &at)],
    );
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "no published image satisfies aiida-core>=3: the newest tags of {at}/aiida-core-with-services are aiida-2.9.0, aiida-2.7.1, aiida-2.6.2"
        )),
        "{stderr}"
    );
    assert!(!plugin.path().join(".devcontainer").exists(), "init wrote");

    // A repository without any aiida-X.Y.Z tag says so.
    let (ok, _, stderr) = init(
        plugin_requiring(">=2.6").path(),
        &format!("{}/{org}-empty", registry.host),
        &[],
    );
    assert!(!ok);
    assert!(stderr.contains("has no aiida-X.Y.Z tags"), "{stderr}");
}

#[test]
fn without_a_registry_init_falls_back_to_the_built_in_releases_and_says_so() {
    let plugin = plugin_requiring("~=2.8.0");
    // The default registry (Docker Hub), behind the tests' refusing proxy.
    let out = aiida_devc(
        plugin.path(),
        &["--ca-cert", "none", "init", ".", "--dry-run"],
        &[],
    );
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains(
            "note: cannot read the published tags of docker.io/aiidateam/aiida-core-with-services: registry docker.io is unreachable"
        ) && stderr.contains("built-in list of aiida-core releases"),
        "{stderr}"
    );
    // The newest 2.8 release of the built-in list (or a newer local 2.8 image, were there one).
    assert!(
        image_line(&stdout).starts_with("image: aiidateam/aiida-core-with-services:aiida-2.8."),
        "{stdout}"
    );
}
