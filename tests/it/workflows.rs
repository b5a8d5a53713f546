//! The GitHub Actions workflows in `.github/workflows`: actionlint accepts every one, each
//! command they run is an `aiida-devc` command that parses with the current CLI (or the README's
//! test and set-up commands), and the release keeps its order and least privileges.

use crate::support::{Need, skip_without};
use std::collections::BTreeMap;
use std::path::PathBuf;

use clap::Parser;
use serde_yaml_ng::Value;

use crate::support::project_root;

fn workflows() -> Vec<PathBuf> {
    let dir = project_root().join(".github/workflows");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yml" || e == "yaml"))
        .collect();
    files.sort();
    let names: Vec<String> = files
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    for expected in ["ci.yml", "release.yml"] {
        assert!(
            names.contains(&expected.to_owned()),
            "{expected} in {names:?}"
        );
    }
    files
}

fn load(name: &str) -> Value {
    let path = project_root().join(".github/workflows").join(name);
    serde_yaml_ng::from_str(&std::fs::read_to_string(&path).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn actionlint_accepts_every_workflow() {
    if skip_without(&[Need::Actionlint]) {
        return;
    }
    let actionlint = project_root().join(".tools/actionlint/bin/actionlint");
    crate::support::require(
        actionlint.is_file(),
        &format!(
            "actionlint at {} (`bash scripts/bootstrap.sh` installs it)",
            actionlint.display()
        ),
    );
    let out = std::process::Command::new(&actionlint)
        .arg("-config-file")
        .arg(project_root().join(".github/actionlint.yaml"))
        .args(workflows())
        .current_dir(project_root())
        .output()
        .expect("run actionlint");
    assert!(
        out.status.success(),
        "actionlint found problems:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Words of one shell command, with quotes removed (enough for the workflows' plain commands).
fn words(command: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    for c in command.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => word.push(c),
            (None, '"' | '\'') => {
                quote = Some(c);
                in_word = true;
            }
            (None, c) if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            (None, c) => {
                word.push(c);
                in_word = true;
            }
        }
    }
    assert!(quote.is_none(), "unbalanced quotes in: {command}");
    if in_word {
        words.push(word);
    }
    words
}

/// Every command of every `run:` step: (workflow, job, command words), variables substituted
/// from the workflow's `env` and GitHub's own (`$GITHUB_REF_NAME` as a release tag).
fn commands() -> Vec<(String, String, Vec<String>)> {
    let mut all = Vec::new();
    for path in workflows() {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let workflow = load(&name);
        let mut vars: BTreeMap<String, String> = BTreeMap::from([
            ("GITHUB_REF_NAME".into(), "v1.2.3".into()),
            ("RUNNER_TEMP".into(), "/tmp/runner".into()),
            ("GITHUB_PATH".into(), "/tmp/runner/path".into()),
        ]);
        if let Some(env) = workflow["env"].as_mapping() {
            for (k, v) in env {
                vars.insert(
                    k.as_str().unwrap().to_owned(),
                    v.as_str().unwrap().to_owned(),
                );
            }
        }
        for (job, body) in workflow["jobs"].as_mapping().expect("jobs") {
            let job = job.as_str().unwrap().to_owned();
            for step in body["steps"].as_sequence().expect("steps") {
                let Some(script) = step["run"].as_str() else {
                    continue;
                };
                assert!(
                    !script.contains("${{"),
                    "{name} {job}: pass expressions through env, not into run: {script}"
                );
                let joined = script.replace("\\\n", " ");
                for line in joined.lines() {
                    for command in line.split("&&").map(str::trim).filter(|c| !c.is_empty()) {
                        let mut command = command.to_owned();
                        for (var, value) in &vars {
                            command = command.replace(&format!("${var}"), value);
                        }
                        all.push((name.clone(), job.clone(), words(&command)));
                    }
                }
            }
        }
    }
    all
}

#[test]
fn every_command_is_aiida_devc_or_a_readme_command_and_parses() {
    let mut invocations = Vec::new();
    for (workflow, job, words) in commands() {
        let line = words.join(" ");
        match words.first().map(String::as_str) {
            Some("aiida-devc") => {
                if let Err(e) = aiida_devc::cli::Cli::try_parse_from(&words) {
                    panic!("{workflow} {job}: `{line}` does not parse with this aiida-devc:\n{e}");
                }
                invocations.push((workflow, job, line));
            }
            // The wheel script (wheels.yml builds and checks the PyPI package with it).
            Some("bash") if line.starts_with("bash scripts/wheels.sh ") => {}
            // The README's test command and machine set-up.
            Some("bash") => assert!(
                line == "bash scripts/test.sh" || line == "bash scripts/bootstrap.sh --arm64",
                "{workflow} {job}: `{line}` is not a README command"
            ),
            // The README's install command, into the runner's temporary folder and onto PATH.
            Some("cargo") => assert_eq!(
                line, "cargo install --locked --path . --root /tmp/runner/aiida-devc",
                "{workflow} {job}"
            ),
            Some("echo") => assert_eq!(
                line, "echo /tmp/runner/aiida-devc/bin >> /tmp/runner/path",
                "{workflow} {job}"
            ),
            _ => panic!("{workflow} {job}: `{line}` is neither aiida-devc nor a README command"),
        }
    }
    let release = |job: &str, start: &str| {
        invocations
            .iter()
            .any(|(w, j, l)| w == "release.yml" && j == job && l.starts_with(start))
    };
    for registry in ["ghcr.io", "docker.io"] {
        assert!(
            release(
                "images",
                &format!(
                    "aiida-devc images build --platform linux/amd64,linux/arm64 --push --registry {registry} --organization aiidateam --tag v1.2.3 --json"
                )
            ),
            "release.yml builds and pushes both platforms to {registry}: {invocations:#?}"
        );
    }
    assert!(release(
        "features",
        "aiida-devc features publish features/src --registry ghcr.io --namespace aiidateam/devcontainer-features"
    ));
    assert!(release(
        "templates",
        "aiida-devc templates publish devcontainer-templates/src --registry ghcr.io --namespace aiidateam/devcontainer-templates"
    ));
}

#[test]
fn the_release_runs_in_order_with_least_privileges_and_never_twice_at_once() {
    let release = load("release.yml");
    assert_eq!(
        release["on"]["push"]["tags"][0].as_str(),
        Some("v[0-9]+.[0-9]+.[0-9]+")
    );
    assert!(
        release["on"]
            .as_mapping()
            .unwrap()
            .contains_key("workflow_dispatch")
    );
    assert_eq!(
        release["permissions"]
            .as_mapping()
            .map(serde_yaml_ng::Mapping::len),
        Some(0),
        "no permissions by default"
    );
    assert_eq!(release["concurrency"]["group"].as_str(), Some("release"));
    assert_eq!(
        release["concurrency"]["cancel-in-progress"].as_bool(),
        Some(false)
    );
    let jobs = release["jobs"].as_mapping().unwrap();
    let needs = |job: &str| release["jobs"][job]["needs"].as_str().map(str::to_owned);
    assert_eq!(needs("images").as_deref(), Some("test"));
    assert_eq!(needs("features").as_deref(), Some("images"));
    assert_eq!(needs("templates").as_deref(), Some("features"));
    for (job, body) in jobs {
        let job = job.as_str().unwrap();
        let packages = body["permissions"]["packages"].as_str();
        let pushes = job != "test";
        assert_eq!(
            packages,
            pushes.then_some("write"),
            "{job}: packages: write exactly where something is pushed"
        );
        assert_eq!(
            body["permissions"]["contents"].as_str(),
            Some("read"),
            "{job}"
        );
    }

    let ci = load("ci.yml");
    let on = ci["on"].as_mapping().unwrap();
    assert!(on.contains_key("push") && on.contains_key("pull_request"));
    assert_eq!(ci["permissions"]["contents"].as_str(), Some("read"));
}
