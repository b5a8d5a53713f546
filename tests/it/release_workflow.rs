//! `.github/workflows/release.yml`, run here: its jobs in the order of their `needs`, each
//! platform job of the matrix as its own run (its own runner temp folder, its own build; linux/arm64
//! under qemu here, natively on ubuntu-24.04-arm), every `aiida-devc` step executed by this
//! build's binary, with ghcr.io and docker.io replaced by two registries on localhost, and the
//! artifact actions carried out on a local folder. So a flag renamed in the CLI but not in the
//! workflow, or an artifact path that does not line up, fails here.
//!
//! Then: the merged index of every tag lists, for each platform, exactly the digest its platform
//! job pushed, and `docker pull --platform` of it gives that image; a merge that lacks a platform
//! refuses naming it and writes nothing; a second release of the same tag writes nothing to
//! either registry and changes no digest. The builds are cached by the engine (scripts/test.sh
//! builds both platforms before the tests), so each one takes seconds; the release gates do not
//! (about 1 min for amd64, several under qemu for arm64, per run).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde_json::Value as Json;
use serde_yaml_ng::Value;

use crate::support::collections::{Run, aiida_devc};
use crate::support::images::{docker, text};
use crate::support::registry::Registry;
use crate::support::{project_root, unique_name};
use crate::workflows::{load, words};

const AIIDA_VERSION: &str = aiida_devc::image::DEFAULT_AIIDA_VERSION;
const IMAGES: [&str; 2] = ["aiida-core-base", "aiida-core-with-services"];
const REF_NAME: &str = "v1.2.3";

/// One job of the workflow as one runner runs it: a matrix entry's values and the steps.
struct JobRun {
    job: String,
    matrix: BTreeMap<String, String>,
    body: Value,
}

impl JobRun {
    fn label(&self) -> String {
        match self.matrix.get("platform") {
            Some(platform) => format!("{} ({platform})", self.job),
            None => self.job.clone(),
        }
    }
}

/// Jobs of release.yml that run no aiida-devc command: `pypi` uploads what wheels.yml built
/// and checked (tests/it/wheels.rs builds and checks the Linux wheels the same way).
const OUTSIDE_THE_SIMULATION: &[&str] = &["pypi"];

/// The jobs of release.yml after `test` (the suite itself, ci.yml), in the order their `needs`
/// give, each matrix entry as its own run.
fn release_jobs(workflow: &Value) -> Vec<JobRun> {
    let jobs = workflow["jobs"].as_mapping().expect("jobs");
    assert_eq!(
        workflow["jobs"]["test"]["uses"].as_str(),
        Some("./.github/workflows/ci.yml"),
        "the release starts with the suite"
    );
    let mut done = vec!["test".to_owned()];
    let mut runs = Vec::new();
    while done.len() < jobs.len() {
        let before = done.len();
        for (name, body) in jobs {
            let name = name.as_str().unwrap().to_owned();
            let needs: Vec<String> = match &body["needs"] {
                Value::String(one) => vec![one.clone()],
                Value::Sequence(many) => many
                    .iter()
                    .map(|n| n.as_str().unwrap().to_owned())
                    .collect(),
                _ => Vec::new(),
            };
            if done.contains(&name) || !needs.iter().all(|n| done.contains(n)) {
                continue;
            }
            if OUTSIDE_THE_SIMULATION.contains(&name.as_str()) {
                done.push(name);
                continue;
            }
            let entries: Vec<BTreeMap<String, String>> =
                match body["strategy"]["matrix"]["include"].as_sequence() {
                    Some(include) => include
                        .iter()
                        .map(|entry| {
                            entry
                                .as_mapping()
                                .unwrap()
                                .iter()
                                .map(|(k, v)| {
                                    (
                                        k.as_str().unwrap().to_owned(),
                                        v.as_str().unwrap().to_owned(),
                                    )
                                })
                                .collect()
                        })
                        .collect(),
                    None => vec![BTreeMap::new()],
                };
            for matrix in entries {
                runs.push(JobRun {
                    job: name.clone(),
                    matrix,
                    body: body.clone(),
                });
            }
            done.push(name);
        }
        assert!(done.len() > before, "release.yml: a cycle in needs");
    }
    runs
}

/// Where one simulated release writes: the two registries standing for ghcr.io and docker.io,
/// the organization, and the folder that holds the workflow's artifacts.
struct Release {
    ghcr: &'static Registry,
    dockerhub: &'static Registry,
    org: String,
    artifacts: PathBuf,
}

impl Release {
    /// `${{ matrix.X }}`, `${{ runner.temp }}` and `${{ secrets.X }}` (empty: no secrets here).
    fn expression(&self, text: &str, run: &JobRun, runner_temp: &Path) -> String {
        let mut out = String::new();
        let mut rest = text;
        while let Some(start) = rest.find("${{") {
            out.push_str(&rest[..start]);
            let end = rest[start..].find("}}").expect("a closed expression") + start;
            let expr = rest[start + 3..end].trim();
            let value = if let Some(key) = expr.strip_prefix("matrix.") {
                run.matrix
                    .get(key)
                    .unwrap_or_else(|| panic!("{}: no matrix.{key}", run.label()))
                    .clone()
            } else if expr == "runner.temp" {
                runner_temp.display().to_string()
            } else if expr.starts_with("secrets.") {
                String::new()
            } else {
                panic!(
                    "{}: the simulation does not know ${{{{ {expr} }}}}",
                    run.label()
                )
            };
            out.push_str(&value);
            rest = &rest[end + 2..];
        }
        out.push_str(rest);
        out
    }

    /// Run every step of `run`; the aiida-devc commands' results, or the first that failed.
    fn run_job(&self, run: &JobRun) -> Result<Vec<(String, Run)>, String> {
        let runner_temp = tempfile::tempdir().unwrap();
        let temp = runner_temp.path();
        let mut vars: BTreeMap<String, String> = BTreeMap::from([
            ("GITHUB_REF_NAME".into(), REF_NAME.into()),
            ("RUNNER_TEMP".into(), temp.display().to_string()),
            (
                "GITHUB_PATH".into(),
                temp.join("path").display().to_string(),
            ),
            ("ORGANIZATION".into(), self.org.clone()),
        ]);
        if let Some(env) = run.body["env"].as_mapping() {
            for (k, v) in env {
                let value = self.expression(v.as_str().unwrap(), run, temp);
                vars.insert(k.as_str().unwrap().to_owned(), value);
            }
        }
        let mut results = Vec::new();
        for step in run.body["steps"].as_sequence().expect("steps") {
            if let Some(action) = step["uses"].as_str() {
                self.action(run, action, &step["with"], temp);
                continue;
            }
            let script = step["run"].as_str().expect("a step runs or uses");
            for command in script.replace("\\\n", " ").lines() {
                for command in command.split("&&").map(str::trim).filter(|c| !c.is_empty()) {
                    let words = words(&substitute(command, &vars, &run.label()));
                    if words[0] != "aiida-devc" {
                        // Installing aiida-devc: this test runs its own build instead.
                        assert!(
                            words[0] == "cargo" || words[0] == "echo",
                            "{}: `{command}` is not simulated",
                            run.label()
                        );
                        continue;
                    }
                    let args: Vec<String> = words[1..].iter().map(|w| self.local(w)).collect();
                    let args: Vec<&str> = args.iter().map(String::as_str).collect();
                    let line = format!("aiida-devc {}", args.join(" "));
                    let started = Instant::now();
                    let result = aiida_devc(&args, &[]);
                    eprintln!(
                        "release {}: `{line}` took {:.0?}",
                        run.label(),
                        started.elapsed()
                    );
                    if !result.success {
                        return Err(format!(
                            "release {}: `{line}` failed:\n--- stdout\n{}\n--- stderr\n{}",
                            run.label(),
                            result.stdout,
                            result.stderr
                        ));
                    }
                    results.push((line, result));
                }
            }
        }
        Ok(results)
    }

    /// The local stand-in of a registry the workflow names.
    fn local(&self, word: &str) -> String {
        match word {
            "ghcr.io" => self.ghcr.host.clone(),
            "docker.io" => self.dockerhub.host.clone(),
            _ => word.to_owned(),
        }
    }

    /// The artifact actions on a local folder (checkout: the checkout is this one).
    fn action(&self, run: &JobRun, action: &str, with: &Value, temp: &Path) {
        let input = |key: &str| with[key].as_str().map(|v| self.expression(v, run, temp));
        match action.split('@').next().unwrap() {
            "actions/checkout" => {}
            "actions/upload-artifact" => {
                let name = input("name").expect("an artifact name");
                let mut path = project_root().join(input("path").expect("a path"));
                if !path.exists() {
                    // aiida-init for another platform than the host's is cross-built by Debian's
                    // rustc into target/debian-rustc here; the workflow's runners build natively.
                    let relative = path.strip_prefix(project_root().join("target")).ok();
                    if let Some(relative) = relative {
                        path = project_root().join("target/debian-rustc").join(relative);
                    }
                }
                assert!(
                    path.is_file(),
                    "{}: upload-artifact {name}: {} is missing",
                    run.label(),
                    path.display()
                );
                let dir = self.artifacts.join(&name);
                std::fs::create_dir_all(&dir).unwrap();
                std::fs::copy(&path, dir.join(path.file_name().unwrap())).unwrap();
            }
            "actions/download-artifact" => {
                let pattern = input("pattern").expect("a pattern");
                let prefix = pattern.strip_suffix('*').expect("a NAME-* pattern");
                let into = PathBuf::from(input("path").expect("a path"));
                let merge = with["merge-multiple"].as_bool().unwrap_or(false);
                for artifact in std::fs::read_dir(&self.artifacts).unwrap() {
                    let artifact = artifact.unwrap();
                    let name = artifact.file_name().to_string_lossy().into_owned();
                    if !name.starts_with(prefix) {
                        continue;
                    }
                    let dir = if merge {
                        into.clone()
                    } else {
                        into.join(&name)
                    };
                    std::fs::create_dir_all(&dir).unwrap();
                    for file in std::fs::read_dir(artifact.path()).unwrap() {
                        let file = file.unwrap();
                        std::fs::copy(file.path(), dir.join(file.file_name())).unwrap();
                    }
                }
            }
            other => panic!("{}: the simulation does not know {other}", run.label()),
        }
    }

    /// The whole release, job after job; the results by job label.
    fn run(&self) -> Result<BTreeMap<String, Vec<(String, Run)>>, String> {
        let workflow = load("release.yml");
        let mut results = BTreeMap::new();
        for run in release_jobs(&workflow) {
            results.insert(run.label(), self.run_job(&run)?);
        }
        Ok(results)
    }

    /// A platform job's digests file, as the merge job downloaded it.
    fn digests(&self, arch: &str) -> Json {
        let path = self
            .artifacts
            .join(format!("digests-{arch}"))
            .join(format!("{arch}.json"));
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
    }

    /// Every local name this release gave images (`localhost:PORT/ORG/...`).
    fn local_names(&self) -> Vec<String> {
        let out = docker(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|name| {
                [self.ghcr, self.dockerhub]
                    .iter()
                    .any(|r| name.starts_with(&format!("{}/{}/", r.host, self.org)))
            })
            .map(str::to_owned)
            .collect()
    }
}

impl Drop for Release {
    fn drop(&mut self) {
        for name in self.local_names() {
            let _ = docker(&["rmi", "--no-prune", &name]);
        }
        let _ = std::fs::remove_dir_all(&self.artifacts);
    }
}

/// `$NAME` and `${NAME}` of the shell, from `vars`; an unknown variable fails the test.
fn substitute(command: &str, vars: &BTreeMap<String, String>, job: &str) -> String {
    let mut out = String::new();
    let mut chars = command.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '$' {
            out.push(c);
            continue;
        }
        let braced = chars.peek() == Some(&'{');
        if braced {
            chars.next();
        }
        let mut name = String::new();
        while let Some(&c) = chars.peek() {
            if c.is_ascii_alphanumeric() || c == '_' {
                name.push(c);
                chars.next();
            } else {
                break;
            }
        }
        if braced {
            assert_eq!(chars.next(), Some('}'), "{job}: ${{{name} not closed");
        }
        let value = vars
            .get(&name)
            .unwrap_or_else(|| panic!("{job}: `{command}` uses ${name}, which no env sets"));
        out.push_str(value);
    }
    out
}

/// The registry's manifest at `repo:reference`, parsed, and its digest.
fn manifest(registry: &Registry, repo: &str, reference: &str) -> Option<(Json, String)> {
    let client = aiida_devc::oci::Registry::with_credential(&registry.host, None, None).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let d = rt
        .block_on(client.descriptor(repo, reference))
        .expect("the registry answers")?;
    Some((serde_json::from_slice(&d.bytes).unwrap(), d.digest))
}

/// The digest each platform job pushed of `image` to `registry`, by OCI platform name.
fn pushed(release: &Release, registry: &Registry, image: &str) -> BTreeMap<String, String> {
    let mut digests = BTreeMap::new();
    for arch in ["amd64", "arm64"] {
        let file = release.digests(arch);
        for entry in file["images"].as_array().unwrap() {
            if entry["registry"] == registry.host.as_str() && entry["image"] == image {
                digests.insert(
                    entry["platform"].as_str().unwrap().to_owned(),
                    entry["digest"].as_str().unwrap().to_owned(),
                );
            }
        }
    }
    digests
}

/// Every tag's index on `registry`: its platform → digest, and the index digest.
fn indexes(
    release: &Release,
    registry: &Registry,
) -> BTreeMap<String, (BTreeMap<String, String>, String)> {
    let mut all = BTreeMap::new();
    for image in IMAGES {
        let repo = format!("{}/{image}", release.org);
        let mut tags = vec![
            format!("aiida-{AIIDA_VERSION}"),
            "python-3.11".to_owned(),
            "latest".to_owned(),
            REF_NAME.to_owned(),
        ];
        if image == "aiida-core-with-services" {
            tags.push("postgresql-15".into());
        }
        for tag in tags {
            let (index, digest) = manifest(registry, &repo, &tag)
                .unwrap_or_else(|| panic!("{}/{repo}:{tag} is missing", registry.host));
            assert_eq!(
                index["mediaType"], "application/vnd.oci.image.index.v1+json",
                "{repo}:{tag}"
            );
            let platforms = index["manifests"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| {
                    let p = &m["platform"];
                    let mut name = format!("linux/{}", p["architecture"].as_str().unwrap());
                    if let Some(v) = p["variant"].as_str() {
                        name = format!("{name}/{v}");
                    }
                    (name, m["digest"].as_str().unwrap().to_owned())
                })
                .collect();
            all.insert(format!("{repo}:{tag}"), (platforms, digest));
        }
    }
    all
}

#[test]
fn the_release_workflow_publishes_what_its_platform_jobs_pushed_and_a_rerun_writes_nothing() {
    let release = Release {
        ghcr: Registry::shared(),
        dockerhub: Registry::second(),
        org: unique_name("release").replace("aiida-devc-test-", ""),
        artifacts: tempfile::tempdir().unwrap().keep(),
    };
    let started = Instant::now();
    if let Err(e) = release.run() {
        panic!("{e}");
    }
    eprintln!("the release workflow took {:.0?}", started.elapsed());
    let before = indexes_list_what_was_pushed(&release);
    pulls_give_the_pushed_images(&release);
    a_merge_without_arm64_refuses(&release);

    // A second release of the same tag: nothing written to either registry, no digest changed.
    let writes = (
        release.ghcr.write_requests(&release.org),
        release.dockerhub.write_requests(&release.org),
    );
    let digests = (release.digests("amd64"), release.digests("arm64"));
    let started = Instant::now();
    if let Err(e) = release.run() {
        panic!("the second release: {e}");
    }
    eprintln!("the second release took {:.0?}", started.elapsed());
    assert_eq!(
        (release.digests("amd64"), release.digests("arm64")),
        digests,
        "the platform jobs pushed other digests"
    );
    for registry in [release.ghcr, release.dockerhub] {
        assert_eq!(
            indexes(&release, registry),
            before[&registry.host],
            "{}: an index changed",
            registry.host
        );
    }
    assert_eq!(
        (
            release.ghcr.write_requests(&release.org),
            release.dockerhub.write_requests(&release.org)
        ),
        writes,
        "the second release wrote to a registry"
    );
}

/// Each tag's index lists, per platform, the digest its platform job pushed, on both registries;
/// the indexes by registry host.
#[allow(clippy::type_complexity)]
fn indexes_list_what_was_pushed(
    release: &Release,
) -> BTreeMap<String, BTreeMap<String, (BTreeMap<String, String>, String)>> {
    let mut all = BTreeMap::new();
    for registry in [release.ghcr, release.dockerhub] {
        let found = indexes(release, registry);
        for (name, (platforms, _)) in &found {
            let image = name.split(['/', ':']).nth(1).unwrap();
            assert_eq!(
                platforms,
                &pushed(release, registry, image),
                "{}/{name}",
                registry.host
            );
            assert_eq!(platforms.len(), 2, "{name}: {platforms:?}");
        }
        all.insert(registry.host.clone(), found);
    }
    all
}

/// Pulled per platform from the merged index, the image is the one the platform job pushed.
fn pulls_give_the_pushed_images(release: &Release) {
    let with_services = format!(
        "{}/{}/aiida-core-with-services:aiida-{AIIDA_VERSION}",
        release.ghcr.host, release.org
    );
    let repo = format!("{}/aiida-core-with-services", release.org);
    for (platform, digest) in pushed(release, release.ghcr, "aiida-core-with-services") {
        let docker_platform = platform.trim_end_matches("/v8");
        let out = docker(&["pull", "--platform", docker_platform, &with_services]);
        assert!(out.status.success(), "docker pull: {}", text(&out));
        let inspect = docker(&[
            "image",
            "inspect",
            "-f",
            "{{.Id}} {{.Architecture}}",
            &with_services,
        ]);
        let inspect = String::from_utf8_lossy(&inspect.stdout).trim().to_owned();
        let (single, _) = manifest(release.ghcr, &repo, &digest).expect("the pushed manifest");
        let config = single["config"]["digest"].as_str().unwrap();
        assert_eq!(
            inspect,
            format!("{config} {}", docker_platform.trim_start_matches("linux/")),
            "{platform}: the pulled image is not the one its job pushed ({digest})"
        );
    }
}

/// A merge without the arm64 job's digests refuses, names the platform, and writes nothing.
fn a_merge_without_arm64_refuses(release: &Release) {
    let writes = release.ghcr.write_requests(&release.org);
    let amd64 = release.artifacts.join("digests-amd64/amd64.json");
    let refused = aiida_devc(
        &[
            "images",
            "merge",
            "--registry",
            &release.ghcr.host,
            "--organization",
            &release.org,
            "--tag",
            "partial",
            "--digests",
            &amd64.display().to_string(),
        ],
        &[],
    );
    assert!(!refused.success, "a merge without linux/arm64 succeeded");
    assert!(
        refused.stderr.contains("linux/arm64 is missing")
            && refused.stderr.contains("No index was written"),
        "{}",
        refused.stderr
    );
    assert_eq!(
        release.ghcr.write_requests(&release.org),
        writes,
        "the refused merge wrote"
    );
}
