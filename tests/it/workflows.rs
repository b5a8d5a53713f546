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

pub fn load(name: &str) -> Value {
    let path = project_root().join(".github/workflows").join(name);
    serde_yaml_ng::from_str(&std::fs::read_to_string(&path).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn actionlint_accepts_every_workflow() {
    if skip_without(&[Need::Actionlint]) {
        return;
    }
    assert_actionlint_clean(&workflows());
}

/// actionlint (the bootstrap's, with the project's configuration) finds nothing in `files`.
pub fn assert_actionlint_clean(files: &[PathBuf]) {
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
        .args(files)
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
pub fn words(command: &str) -> Vec<String> {
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
            // A job that calls a reusable workflow has no steps of its own.
            let Some(steps) = body["steps"].as_sequence() else {
                continue;
            };
            for step in steps {
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
            // The README's test command (on arm64: the image, Feature and reliability tests).
            Some("bash") => assert!(
                line == "bash scripts/test.sh"
                    || line
                        == "bash scripts/test.sh -- images:: features:: reliability:: --skip the_published_services_feature_runs_on_amd64",
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
            // CI only: the other platform's Rust target and linker, for aiida-init.
            Some("rustup" | "sudo") => assert!(
                workflow == "ci.yml"
                    && (line.starts_with("rustup target add ")
                        || line == "sudo apt-get update -qq"
                        || line.starts_with("sudo apt-get install -y -qq gcc-")),
                "{workflow} {job}: `{line}` is not a runner set-up step"
            ),
            _ => panic!("{workflow} {job}: `{line}` is neither aiida-devc nor a README command"),
        }
    }
    let release = |job: &str, start: &str| {
        invocations
            .iter()
            .any(|(w, j, l)| w == "release.yml" && j == job && l.starts_with(start))
    };
    assert!(
        release(
            "images",
            "aiida-devc images build --platform $PLATFORM --push-by-digest --registry ghcr.io --also-registry docker.io --organization aiidateam"
        ),
        "release.yml builds each platform and pushes it by digest: {invocations:#?}"
    );
    for registry in ["ghcr.io", "docker.io"] {
        assert!(
            release(
                "merge",
                &format!(
                    "aiida-devc images merge --registry {registry} --organization aiidateam --tag v1.2.3"
                )
            ),
            "release.yml merges the digests on {registry}: {invocations:#?}"
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
    assert_eq!(needs("merge").as_deref(), Some("images"));
    assert_eq!(needs("features").as_deref(), Some("merge"));
    assert_eq!(needs("templates").as_deref(), Some("features"));
    for (job, body) in jobs {
        let job = job.as_str().unwrap();
        let packages = body["permissions"]["packages"].as_str();
        // `pypi` uploads to PyPI (trusted publishing: an OIDC token), not to a container registry.
        let pushes = !["test", "pypi"].contains(&job);
        if job == "pypi" {
            assert_eq!(
                body["permissions"]["id-token"].as_str(),
                Some("write"),
                "pypi: trusted publishing needs id-token: write"
            );
        }
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
    // Each platform on its native runner, with no emulation on the release path.
    let matrix = release["jobs"]["images"]["strategy"]["matrix"]["include"]
        .as_sequence()
        .expect("a matrix of platforms");
    let runners: Vec<(&str, &str)> = matrix
        .iter()
        .map(|m| {
            (
                m["platform"].as_str().unwrap(),
                m["runner"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        runners,
        [
            ("linux/amd64", "ubuntu-24.04"),
            ("linux/arm64", "ubuntu-24.04-arm")
        ]
    );
    let text =
        std::fs::read_to_string(project_root().join(".github/workflows/release.yml")).unwrap();
    assert!(
        !text.contains("setup-qemu-action"),
        "emulation on the release path"
    );

    let ci = load("ci.yml");
    let on = ci["on"].as_mapping().unwrap();
    assert!(on.contains_key("push") && on.contains_key("pull_request"));
    assert!(on.contains_key("workflow_call"), "release.yml calls ci.yml");
    assert_eq!(ci["permissions"]["contents"].as_str(), Some("read"));
    assert_eq!(ci["jobs"]["test"]["runs-on"].as_str(), Some("ubuntu-24.04"));
    assert_eq!(
        ci["jobs"]["arm64"]["runs-on"].as_str(),
        Some("ubuntu-24.04-arm")
    );
}

/// Hosted runners only, standard actions at majors that run on Node 24, checkouts that keep no
/// token, and secrets only in the steps that push.
#[test]
fn hosted_runners_node24_actions_and_secrets_only_where_something_is_pushed() {
    for path in workflows() {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_hosted_node24_and_least_secrets(&name, &text);
    }
}

/// The first release of each action that runs on Node 24, as (major, minor).
const NODE24: [(&str, (u32, u32)); 8] = [
    ("actions/checkout", (5, 0)),
    ("actions/upload-artifact", (6, 0)),
    ("actions/download-artifact", (7, 0)),
    ("actions/setup-python", (6, 0)),
    ("docker/login-action", (4, 0)),
    ("docker/setup-qemu-action", (4, 0)),
    // The workflow `aiida-devc init --ci` writes: its v0.3 tag follows the latest 0.3 release,
    // which moved to Node 24 in April 2026.
    ("devcontainers/ci", (0, 3)),
    // A container action (no Node): any release of its v1.
    ("pypa/gh-action-pypi-publish", (1, 0)),
];

/// The checks of [`hosted_runners_node24_actions_and_secrets_only_where_something_is_pushed`] on
/// one workflow, `name` with content `text` (also run on the workflow `init --ci` writes).
pub fn assert_hosted_node24_and_least_secrets(name: &str, text: &str) {
    let node24: BTreeMap<&str, (u32, u32)> = NODE24.into_iter().collect();
    assert!(
        !text.contains("self-hosted"),
        "{name} names a self-hosted runner"
    );
    let workflow: Value = serde_yaml_ng::from_str(text).unwrap_or_else(|e| panic!("{name}: {e}"));
    for (job, body) in workflow["jobs"].as_mapping().unwrap() {
        let job = job.as_str().unwrap();
        if let Some(runner) = body["runs-on"].as_str() {
            assert!(
                runner.starts_with("ubuntu-24.04") || runner == "${{ matrix.runner }}",
                "{name} {job}: runs-on {runner}"
            );
        }
        for step in body["steps"].as_sequence().into_iter().flatten() {
            let step_text = serde_yaml_ng::to_string(step).unwrap();
            if let Some(action) = step["uses"].as_str() {
                let (action, version) = action.split_once('@').expect("a pinned action");
                let mut numbers = version.trim_start_matches('v').split('.').map(|n| {
                    n.parse::<u32>()
                        .unwrap_or_else(|_| panic!("{name} {job}: {action}@{version}"))
                });
                let release = (numbers.next().unwrap(), numbers.next().unwrap_or(0));
                let least = node24.get(action).unwrap_or_else(|| {
                    panic!("{name} {job}: {action} is not a standard action here")
                });
                assert!(
                    release >= *least,
                    "{name} {job}: {action}@{version} runs on Node 20"
                );
                if action == "actions/checkout" {
                    assert_eq!(
                        step["with"]["persist-credentials"].as_bool(),
                        Some(false),
                        "{name} {job}"
                    );
                }
            }
            if step_text.contains("secrets.") {
                let run = step["run"].as_str().unwrap_or_default();
                assert!(
                    run.contains("--push-by-digest")
                        || run.contains("images merge")
                        || run.contains(" publish "),
                    "{name} {job}: a secret in a step that pushes nothing: {step_text}"
                );
            }
        }
        let job_text = serde_yaml_ng::to_string(&body["env"]).unwrap();
        assert!(
            !job_text.contains("secrets."),
            "{name} {job}: secrets in the job's env"
        );
    }
    if let Some(env) = workflow.get("env") {
        let env = serde_yaml_ng::to_string(env).unwrap();
        assert!(
            !env.contains("secrets."),
            "{name}: secrets in the workflow's env"
        );
    }
}
