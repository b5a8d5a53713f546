//! `aiida-devc init --ci`: the plugin's tests on GitHub Actions, in its dev container.
//!
//! Two files, beside what `init` writes for the dev container:
//!
//! | file | what | an existing one |
//! | --- | --- | --- |
//! | `.github/workflows/tests.yml` | [`WORKFLOW`]: devcontainers/ci brings the dev container up (the pinned image, aiida-init as PID 1, the services running) and runs `aiida-init wait` and pytest in it, on `ubuntu-24.04` and `ubuntu-24.04-arm` | left alone when it says the same, refused otherwise (`--force` replaces it) |
//! | `.github/dependabot.yml` | [`dependabot_entries`]: weekly version updates of the dev container's Features (`devcontainers`), and of the images where Dependabot can read them: the compose file (`docker-compose`), Dockerfiles in `.devcontainer` (`docker`) | merged: the entries are appended to `updates` unless one for the same ecosystem and folder is there; the rest of the file, comments included, is kept byte for byte |
//!
//! Dependabot's `docker` ecosystem reads Dockerfiles and Kubernetes manifests only: pointed at a
//! folder with neither (an image-based devcontainer.json), every one of its runs fails with "No
//! Dockerfiles nor Kubernetes YAML found". So that entry is added only where there is a Dockerfile
//! to read, and a compose file gets the `docker-compose` ecosystem.
//!
//! The merge edits the text (serde_yaml_ng keeps no comments) and checks its own work: the result
//! must parse, and its `updates` must be the old ones followed by exactly the entries added.

use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow, bail};
use serde_yaml_ng::Value;

use crate::plugin::Location;
use crate::plugin::images::Variant;

/// The workflow `init --ci` writes.
pub const WORKFLOW: &str = include_str!("tests-workflow.yml");

/// One Dependabot entry `init --ci` wants: an ecosystem, the folder it reads, and the comment
/// written above it.
pub struct DependabotEntry {
    pub ecosystem: &'static str,
    pub directory: &'static str,
    pub comment: &'static str,
}

/// The Dependabot entries `init --ci` adds for the repository at `dir`, in order: the Features
/// always, the compose file's images with the compose variant (or a compose file in
/// `.devcontainer`), the Dockerfiles' base images when `.devcontainer` holds a Dockerfile.
pub fn dependabot_entries(dir: &Path, variant: Variant) -> Vec<DependabotEntry> {
    let names: Vec<String> = std::fs::read_dir(dir.join(".devcontainer"))
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect();
    let has = |matches: fn(&str) -> bool| names.iter().any(|n| matches(n));
    let mut entries = vec![DependabotEntry {
        ecosystem: "devcontainers",
        directory: "/",
        comment: "The dev container's Features (devcontainer.json), added by `aiida-devc init --ci`.",
    }];
    let compose_file =
        |n: &str| (n.ends_with(".yml") || n.ends_with(".yaml")) && n.contains("compose");
    if variant == Variant::Compose || has(compose_file) {
        entries.push(DependabotEntry {
            ecosystem: "docker-compose",
            directory: "/.devcontainer",
            comment: "The images of the compose file in .devcontainer, added by `aiida-devc init --ci`.",
        });
    }
    let dockerfile = |n: &str| {
        n == "Dockerfile"
            || n == "Containerfile"
            || n.starts_with("Dockerfile.")
            || n.to_ascii_lowercase().ends_with(".dockerfile")
    };
    if has(dockerfile) {
        entries.push(DependabotEntry {
            ecosystem: "docker",
            directory: "/.devcontainer",
            comment: "The base images of the Dockerfiles in .devcontainer, added by `aiida-devc init --ci`.",
        });
    }
    entries
}

/// The workflow of a repository.
pub fn workflow_path(dir: &Path) -> PathBuf {
    dir.join(".github").join("workflows").join("tests.yml")
}

/// The Dependabot configuration of a repository.
pub fn dependabot_path(dir: &Path) -> PathBuf {
    dir.join(".github").join("dependabot.yml")
}

/// The first lines of a Dependabot configuration that `init --ci` creates.
const DEPENDABOT_HEADER: &str = "# Dependabot version updates, written by `aiida-devc init --ci`. Running it again adds\n\
# its entries when they are missing and keeps yours.\n\
version: 2\n";

/// The text of one entry, its lines indented by `indent` spaces.
fn entry_text(entry: &DependabotEntry, indent: usize) -> String {
    let pad = " ".repeat(indent);
    format!(
        "{pad}# {comment}\n\
         {pad}- package-ecosystem: {ecosystem}\n\
         {pad}  directory: {directory}\n\
         {pad}  schedule:\n\
         {pad}    interval: weekly\n",
        comment = entry.comment,
        ecosystem = entry.ecosystem,
        directory = entry.directory,
    )
}

/// `text`, the content of `path`, parsed; errors name `path:line:column`.
fn parse(path: &Path, text: &str) -> anyhow::Result<Value> {
    serde_yaml_ng::from_str(text).map_err(|e| match e.location() {
        Some(at) => anyhow!(
            "{}:{}:{}: invalid YAML: {e}",
            path.display(),
            at.line(),
            at.column()
        ),
        None => anyhow!("{}: invalid YAML: {e}", path.display()),
    })
}

/// Whether `existing` (an item of `updates`) already covers `entry`: the same ecosystem, and the
/// same folder in `directory` or `directories` (leading and trailing slashes aside).
fn covers(existing: &Value, entry: &DependabotEntry) -> bool {
    let norm = |d: &str| d.trim_matches('/').to_owned();
    if existing.get("package-ecosystem").and_then(Value::as_str) != Some(entry.ecosystem) {
        return false;
    }
    let want = norm(entry.directory);
    let mut folders: Vec<String> = existing
        .get("directory")
        .and_then(Value::as_str)
        .map(norm)
        .into_iter()
        .collect();
    if let Some(list) = existing.get("directories").and_then(Value::as_sequence) {
        folders.extend(list.iter().filter_map(Value::as_str).map(norm));
    }
    folders.contains(&want)
}

/// The Dependabot configuration with `entries`: a new file when `before` is `None`, else `before`
/// with the missing entries appended to its `updates`. Returns the text and the ecosystems added
/// (empty: nothing to change). Errors name `path:line:column`.
pub fn merge_dependabot(
    path: &Path,
    before: Option<&str>,
    entries: &[DependabotEntry],
) -> anyhow::Result<(String, Vec<&'static str>)> {
    let Some(before) = before else {
        let mut text = format!("{DEPENDABOT_HEADER}updates:\n");
        for entry in entries {
            text.push_str(&entry_text(entry, 2));
        }
        return Ok((text, entries.iter().map(|e| e.ecosystem).collect()));
    };
    let value = parse(path, before)?;
    if !value.is_mapping() && !value.is_null() {
        bail!(
            "{}: not a Dependabot configuration (a mapping with `version` and `updates`)",
            path.display()
        );
    }
    let old_updates = match value.get("updates") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Sequence(items)) => items.clone(),
        Some(_) => {
            let at = Location::of(path, before, "updates");
            bail!("{at}: `updates` is not a list of entries, as Dependabot wants");
        }
    };
    let missing: Vec<&DependabotEntry> = entries
        .iter()
        .filter(|entry| !old_updates.iter().any(|u| covers(u, entry)))
        .collect();
    if missing.is_empty() {
        return Ok((before.to_owned(), Vec::new()));
    }
    let after = insert_entries(path, before, &missing)?;
    check_merge(path, &after, &old_updates, &missing)?;
    Ok((after, missing.iter().map(|e| e.ecosystem).collect()))
}

/// `text` with `entries` appended to its block `updates` (added at the end when it has none).
fn insert_entries(path: &Path, text: &str, entries: &[&DependabotEntry]) -> anyhow::Result<String> {
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let key = lines.iter().position(|l| {
        let l = l.trim_end();
        l == "updates:" || l.starts_with("updates:") && l[8..].starts_with([' ', '\t'])
    });
    let Some(key) = key else {
        // No `updates` yet: a new block at the end.
        let mut after = text.to_owned();
        if !after.is_empty() && !after.ends_with('\n') {
            after.push('\n');
        }
        after.push_str("updates:\n");
        for entry in entries {
            after.push_str(&entry_text(entry, 2));
        }
        return Ok(after);
    };
    let rest = lines[key].trim_end()["updates:".len()..].trim_start();
    let empty_flow = rest.starts_with("[]");
    if !(rest.is_empty() || rest.starts_with('#') || empty_flow) {
        let at = Location::at_offset(path, text, lines[..key].concat().len());
        bail!(
            "{at}: `updates` is written in flow style; `aiida-devc init --ci` adds its entries to a \
             block list (one `- package-ecosystem:` per entry). Rewrite it as a block list, or add \
             the {} entries by hand. Nothing was written",
            entries
                .iter()
                .map(|e| e.ecosystem)
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    // The block: the lines after the key up to the next top-level key.
    let block_end = (key + 1..lines.len())
        .find(|&i| {
            let l = lines[i];
            !(l.trim().is_empty() || l.starts_with([' ', '\t', '#', '-']))
        })
        .unwrap_or(lines.len());
    let indent = lines[key + 1..block_end]
        .iter()
        .find(|l| l.trim_start().starts_with("- "))
        .map_or(2, |l| l.len() - l.trim_start().len());
    // After the block's last line of content (its trailing blank and top-level comment lines
    // stay where they are).
    let insert_at = (key + 1..block_end)
        .rev()
        .find(|&i| !(lines[i].trim().is_empty() || lines[i].starts_with('#')))
        .map_or(key + 1, |i| i + 1);
    let mut after = String::new();
    for (i, line) in lines.iter().enumerate() {
        if i == insert_at {
            for entry in entries {
                after.push_str(&entry_text(entry, indent));
            }
        }
        if i == key && empty_flow {
            after.push_str("updates:\n");
        } else {
            after.push_str(line);
            if i + 1 == insert_at && !line.ends_with('\n') {
                after.push('\n');
            }
        }
    }
    if insert_at == lines.len() {
        for entry in entries {
            after.push_str(&entry_text(entry, indent));
        }
    }
    Ok(after)
}

/// The merged text parses, and its `updates` are `old` followed by exactly `added`.
fn check_merge(
    path: &Path,
    after: &str,
    old: &[Value],
    added: &[&DependabotEntry],
) -> anyhow::Result<()> {
    let merged = parse(path, after)
        .with_context(|| format!("{}: the merge broke the file", path.display()))?;
    let updates = merged
        .get("updates")
        .and_then(Value::as_sequence)
        .cloned()
        .unwrap_or_default();
    let ok = updates.len() == old.len() + added.len()
        && updates[..old.len()] == *old
        && updates[old.len()..]
            .iter()
            .zip(added)
            .all(|(u, e)| covers(u, e));
    if !ok {
        bail!(
            "{}: could not add the {} entries to this file's `updates` without \
             changing its meaning; add them by hand. Nothing was written",
            path.display(),
            added
                .iter()
                .map(|e| e.ecosystem)
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path() -> PathBuf {
        PathBuf::from(".github/dependabot.yml")
    }

    /// The entries for a repository with nothing in `.devcontainer` yet.
    fn entries(variant: Variant) -> Vec<DependabotEntry> {
        let dir = tempfile::tempdir().unwrap();
        dependabot_entries(dir.path(), variant)
    }

    /// The compose variant's entries merged into `before`.
    fn merge(before: Option<&str>) -> anyhow::Result<(String, Vec<&'static str>)> {
        merge_dependabot(&path(), before, &entries(Variant::Compose))
    }

    #[test]
    fn the_image_ecosystems_are_there_only_where_dependabot_can_read_images() {
        let names = |entries: Vec<DependabotEntry>| -> Vec<&str> {
            entries.iter().map(|e| e.ecosystem).collect()
        };
        assert_eq!(names(entries(Variant::Services)), ["devcontainers"]);
        assert_eq!(names(entries(Variant::Lite)), ["devcontainers"]);
        assert_eq!(
            names(entries(Variant::Compose)),
            ["devcontainers", "docker-compose"]
        );
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join(".devcontainer")).unwrap();
        std::fs::write(dir.path().join(".devcontainer/Dockerfile"), "FROM x:1\n").unwrap();
        assert_eq!(
            names(dependabot_entries(dir.path(), Variant::Services)),
            ["devcontainers", "docker"]
        );
    }

    #[test]
    fn the_workflow_runs_pytest_in_the_dev_container_on_both_platforms() {
        let yaml: Value = serde_yaml_ng::from_str(WORKFLOW).unwrap();
        let job = &yaml["jobs"]["tests"];
        let runners: Vec<&str> = job["strategy"]["matrix"]["runner"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|r| r.as_str().unwrap())
            .collect();
        assert_eq!(runners, ["ubuntu-24.04", "ubuntu-24.04-arm"]);
        assert!(
            job.get("container").is_none(),
            "a job container replaces /init"
        );
        let step = job["steps"]
            .as_sequence()
            .unwrap()
            .iter()
            .find(|s| {
                s["uses"]
                    .as_str()
                    .is_some_and(|u| u.starts_with("devcontainers/ci@"))
            })
            .expect("a devcontainers/ci step");
        let run = step["with"]["runCmd"].as_str().unwrap();
        let wait = format!(
            "aiida-init wait --timeout {}",
            super::super::config::READY_TIMEOUT_SECS
        );
        let lines: Vec<&str> = run.lines().collect();
        assert_eq!(lines, ["set -eu", wait.as_str(), "python -m pytest"]);
        assert_eq!(step["with"]["push"].as_str(), Some("never"));
    }

    #[test]
    fn a_new_dependabot_file_has_the_entries_and_a_second_merge_changes_nothing() {
        let (text, added) = merge(None).unwrap();
        assert_eq!(added, ["devcontainers", "docker-compose"]);
        insta::assert_snapshot!("ci_dependabot_new", text);
        let yaml: Value = serde_yaml_ng::from_str(&text).unwrap();
        assert_eq!(yaml["version"].as_u64(), Some(2));
        let (again, added) = merge(Some(&text)).unwrap();
        assert!(added.is_empty());
        assert_eq!(again, text);
    }

    const USER_FILE: &str = r"# Our bots.
version: 2
updates:
# Python dependencies, monthly (the team's choice)
- package-ecosystem: pip
  directory: /
  schedule:
    interval: monthly   # not weekly!

# - package-ecosystem: npm   (disabled)

registries: {}
";

    #[test]
    fn entries_are_appended_to_the_users_list_at_its_indent_keeping_every_comment() {
        let (text, added) = merge(Some(USER_FILE)).unwrap();
        assert_eq!(added, ["devcontainers", "docker-compose"]);
        insta::assert_snapshot!("ci_dependabot_merged", text);
        for line in USER_FILE.lines() {
            assert!(text.contains(line), "lost {line:?}:\n{text}");
        }
        let (again, added) = merge(Some(&text)).unwrap();
        assert!(added.is_empty());
        assert_eq!(again, text);
    }

    #[test]
    fn an_entry_for_the_same_ecosystem_and_folder_is_kept_as_the_user_wrote_it() {
        let user = "version: 2\nupdates:\n  - package-ecosystem: \"devcontainers\"\n    directories: [\"/\"]\n    schedule: {interval: daily}\n";
        let (text, added) = merge(Some(user)).unwrap();
        assert_eq!(added, ["docker-compose"]);
        assert!(text.starts_with(user), "{text}");
        assert!(
            text.ends_with("  - package-ecosystem: docker-compose\n    directory: /.devcontainer\n    schedule:\n      interval: weekly\n"),
            "{text}"
        );
    }

    #[test]
    fn an_empty_or_missing_updates_gets_a_block_list() {
        for user in [
            "version: 2\nupdates: []\n",
            "version: 2\n",
            "version: 2\nupdates:\n",
        ] {
            let (text, added) = merge(Some(user)).unwrap();
            assert_eq!(added.len(), 2, "{user}");
            let yaml: Value = serde_yaml_ng::from_str(&text).unwrap();
            assert_eq!(yaml["updates"].as_sequence().unwrap().len(), 2, "{text}");
        }
    }

    #[test]
    fn a_flow_list_and_invalid_yaml_are_refused_with_their_location() {
        let flow = "version: 2\nupdates: [{package-ecosystem: pip, directory: /, schedule: {interval: weekly}}]\n";
        let err = merge(Some(flow)).unwrap_err().to_string();
        assert!(
            err.starts_with(".github/dependabot.yml:2:1: `updates` is written in flow style"),
            "{err}"
        );
        let broken = "version: 2\nupdates:\n  - package-ecosystem: pip\n   directory: /\n";
        let err = merge(Some(broken)).unwrap_err().to_string();
        assert!(err.starts_with(".github/dependabot.yml:4:"), "{err}");
        assert!(err.contains("invalid YAML"), "{err}");
    }
}
