//! The Templates collection against the real things: what we publish to a real registry on
//! localhost holds the same entries as what the reference CLI publishes from the same sources,
//! `devcontainer templates apply` works for each Template from the registry, a Template that uses
//! an undeclared option pushes nothing, and the image-based Templates come up with `verdi status`
//! all green (they need the aiida-core-base and aiida-core-with-services images, which
//! scripts/test.sh builds before the tests).

use crate::support::{Need, skip_without};
use std::collections::BTreeSet;

use crate::support::collections::{
    aiida_devc, devcontainer, namespace, publish_features, scratch_copy, tar_entries,
};
use crate::support::registry::Registry;
use crate::support::{Harness, Workspace};

const TEMPLATES: [&str; 3] = ["aiida-plugin", "aiida-plugin-compose", "aiida-plugin-lite"];

/// The layer (tar) and the metadata annotation of `repository:latest`.
fn published(registry: &Registry, repository: &str) -> (Vec<u8>, serde_json::Value) {
    let manifest: serde_json::Value =
        serde_json::from_str(&registry.manifest(repository, "latest").expect("a manifest"))
            .unwrap();
    let layer = registry.blob(
        repository,
        manifest["layers"][0]["digest"].as_str().unwrap(),
    );
    let metadata = serde_json::from_str(
        manifest["annotations"]["dev.containers.metadata"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    (layer, metadata)
}

/// Metadata with `files` as a set: the reference CLI lists them in directory order, we sort.
fn normalised(mut metadata: serde_json::Value) -> serde_json::Value {
    let files: BTreeSet<String> = serde_json::from_value(metadata["files"].take()).unwrap();
    metadata["files"] = serde_json::json!(files);
    metadata
}

#[test]
fn published_templates_hold_the_same_entries_as_the_reference_clis() {
    if skip_without(&[Need::DevcontainerCli]) {
        return;
    }
    let registry = Registry::shared();
    let (_dir, templates) = scratch_copy("devcontainer-templates");
    let src = templates.join("src");
    // A Template with an optional folder of one file: packaging names that file instead.
    let extra = src.join("with-optional");
    std::fs::create_dir_all(extra.join(".devcontainer")).unwrap();
    std::fs::create_dir_all(extra.join(".github/workflows")).unwrap();
    std::fs::write(extra.join("devcontainer-template.json"), r#"{"id": "with-optional", "version": "1.0.0", "name": "W", "optionalPaths": [".github/workflows/*"]}"#).unwrap();
    std::fs::write(extra.join(".devcontainer/devcontainer.json"), r#"{"image": "debian:bookworm", "features": {"ghcr.io/devcontainers/features/common-utils:2": {}}}"#).unwrap();
    std::fs::write(extra.join(".github/workflows/ci.yml"), "on: push\n").unwrap();
    let ours = namespace("templates-ours");
    let theirs = namespace("templates-theirs");
    aiida_devc(
        &[
            "templates",
            "publish",
            src.to_str().unwrap(),
            "-r",
            &registry.host,
            "-n",
            &ours,
        ],
        &[],
    )
    .ok("aiida-devc templates publish");
    devcontainer(&[
        "templates",
        "publish",
        src.to_str().unwrap(),
        "-r",
        &registry.host,
        "-n",
        &theirs,
    ])
    .ok("devcontainer templates publish");

    for id in TEMPLATES.into_iter().chain(["with-optional"]) {
        let (our_tar, our_metadata) = published(registry, &format!("{ours}/{id}"));
        let (their_tar, their_metadata) = published(registry, &format!("{theirs}/{id}"));
        assert_eq!(
            normalised(our_metadata.clone()),
            normalised(their_metadata),
            "metadata of {id}"
        );
        let (ours, theirs) = (tar_entries(&our_tar), tar_entries(&their_tar));
        let names = |e: &[crate::support::collections::TarEntry]| {
            e.iter()
                .map(|e| (e.name.clone(), e.mode, e.directory))
                .collect::<Vec<_>>()
        };
        assert_eq!(names(&ours), names(&theirs), "entries of {id}");
        for (a, b) in ours.iter().zip(&theirs) {
            if a.name == "./devcontainer-template.json" {
                let parse = |bytes: &[u8]| normalised(serde_json::from_slice(bytes).unwrap());
                assert_eq!(
                    parse(&a.content),
                    parse(&b.content),
                    "{id}: devcontainer-template.json"
                );
            } else {
                assert_eq!(a.content, b.content, "{id}: {}", a.name);
            }
        }
        assert!(our_metadata["fileCount"].as_u64().unwrap() >= 2);
        if id == "with-optional" {
            assert_eq!(
                our_metadata["optionalPaths"],
                serde_json::json!([".github/workflows/ci.yml"])
            );
            assert_eq!(
                our_metadata["featureIds"],
                serde_json::json!(["ghcr.io/devcontainers/features/common-utils"])
            );
        }
    }
    // Both collections list the same Templates.
    for ns in [&ours, &theirs] {
        let manifest: serde_json::Value =
            serde_json::from_str(&registry.manifest(ns, "latest").unwrap()).unwrap();
        let json: serde_json::Value = serde_json::from_slice(
            &registry.blob(ns, manifest["layers"][0]["digest"].as_str().unwrap()),
        )
        .unwrap();
        let ids: Vec<&str> = json["templates"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["id"].as_str().unwrap())
            .collect();
        assert_eq!(
            ids,
            [
                "aiida-plugin",
                "aiida-plugin-compose",
                "aiida-plugin-lite",
                "with-optional"
            ]
        );
    }
}

#[test]
fn each_template_applies_from_the_registry() {
    if skip_without(&[Need::DevcontainerCli]) {
        return;
    }
    let (_dir, _templates, registry, ns) = publish_templates("apply");
    for id in TEMPLATES {
        let workspace = tempfile::tempdir().unwrap();
        let run = devcontainer(&[
            "templates",
            "apply",
            "-t",
            &format!("{}/{ns}/{id}", registry.host),
            "-w",
            workspace.path().to_str().unwrap(),
            "-a",
            r#"{"imageTag": "aiida-2.9.4"}"#,
        ])
        .ok(&format!("templates apply {id}"));
        let files: Vec<String> = serde_json::from_value(run.json()["files"].clone()).unwrap();
        assert!(
            files
                .iter()
                .any(|f| f.ends_with(".devcontainer/devcontainer.json")),
            "{id}: {files:?}"
        );
        let text =
            std::fs::read_to_string(workspace.path().join(".devcontainer/devcontainer.json"))
                .unwrap();
        assert!(
            !text.contains("${templateOption"),
            "{id}: an option was not substituted:\n{text}"
        );
        let config = aiida_devc::collection::metadata::JsoncFile::parse(
            std::path::Path::new("devcontainer.json"),
            text.clone(),
        )
        .unwrap_or_else(|p| panic!("{id}: the applied devcontainer.json is not valid: {p}"));
        let image = match config.value.get("image") {
            Some(image) => image.as_str().unwrap().to_owned(),
            None => {
                std::fs::read_to_string(workspace.path().join(".devcontainer/docker-compose.yml"))
                    .unwrap()
            }
        };
        assert!(
            image.contains(":aiida-2.9.4"),
            "{id}: the imageTag option did not reach the image:\n{image}"
        );
        // Defaults fill the options that were not given.
        assert!(
            text.contains("'.[tests]'"),
            "{id}: the pipExtras default is missing:\n{text}"
        );
        for not_applied in ["devcontainer-template.json", "README.md", "NOTES.md"] {
            assert!(
                !workspace.path().join(not_applied).exists(),
                "{id}: {not_applied} was applied"
            );
        }
    }
}

#[test]
fn an_undeclared_template_option_is_located_and_pushes_nothing() {
    let registry = Registry::shared();
    let (_dir, templates) = scratch_copy("devcontainer-templates");
    let config = templates.join("src/aiida-plugin-lite/.devcontainer/devcontainer.json");
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("${templateOption:imageTag}", "${templateOption:imageTagg}");
    std::fs::write(&config, text).unwrap();
    let ns = namespace("bad-template");
    let run = aiida_devc(
        &[
            "templates",
            "publish",
            templates.join("src").to_str().unwrap(),
            "-r",
            &registry.host,
            "-n",
            &ns,
        ],
        &[],
    );
    assert!(!run.success);
    assert!(
        run.stderr.contains("aiida-plugin-lite/.devcontainer/devcontainer.json:5:") && run.stderr.contains("${templateOption:imageTagg} names an option that devcontainer-template.json does not declare"),
        "{}",
        run.stderr
    );
    assert!(
        registry.repositories().iter().all(|r| !r.starts_with(&ns)),
        "something was pushed"
    );
}

/// Where the Templates name the project's Features (the test registry stands in for it).
const PUBLISHED_FEATURES: &str = "ghcr.io/aiidateam/devcontainer-features/";

/// A Template applied from our registry and brought up by the reference CLI.
struct UpTemplate {
    ws: Workspace,
    /// What `devcontainer up` printed (stdout, then stderr).
    log: String,
    _dirs: Vec<tempfile::TempDir>,
}

impl UpTemplate {
    /// `bash -c script` in the container as the remote user: (success, stdout + stderr).
    fn sh(&self, script: &str) -> (bool, String) {
        let out = self.ws.devcontainer(&["exec", "bash", "-c", script]);
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    }
}

/// Apply a Template from our registry with `options` (a JSON object, or none for the defaults),
/// with the Features it names taken from the test registry instead of ghcr.io, bring it up with
/// the reference CLI and run its test.sh.
fn bring_up(id: &str, image: &str, options: Option<&str>) -> UpTemplate {
    Harness::new().require_image(image);
    let (templates_dir, templates, registry, ns) = publish_templates("up");
    let ws = Workspace::with_config("{}");
    let template = format!("{}/{ns}/{id}", registry.host);
    let mut apply = vec![
        "templates",
        "apply",
        "-t",
        &template,
        "-w",
        ws.path().to_str().unwrap(),
    ];
    if let Some(options) = options {
        apply.extend(["-a", options]);
    }
    devcontainer(&apply).ok("apply");
    let mut dirs = vec![templates_dir];
    let config = ws.path().join(".devcontainer/devcontainer.json");
    let text = std::fs::read_to_string(&config).unwrap();
    if text.contains(PUBLISHED_FEATURES) {
        let (features_dir, features) = scratch_copy("features");
        let features_ns = namespace("up-features");
        publish_features(&features.join("src"), &registry.host, &features_ns, &[])
            .ok("publish the Features");
        std::fs::write(
            &config,
            text.replace(
                PUBLISHED_FEATURES,
                &format!("{}/{features_ns}/", registry.host),
            ),
        )
        .unwrap();
        dirs.push(features_dir);
    }
    std::fs::copy(
        templates.join(format!("test/{id}/test.sh")),
        ws.path().join("test.sh"),
    )
    .unwrap();
    // A Template that lists Features (aiida-plugin does) has the CLI build an image with them.
    let turn = text
        .contains(PUBLISHED_FEATURES)
        .then(crate::support::feature_builds);
    let started = std::time::Instant::now();
    let up = ws.devcontainer(&["up", "--no-lockfile"]);
    drop(turn);
    eprintln!(
        "{id} {}: devcontainer up took {:.1} s",
        options.unwrap_or("{}"),
        started.elapsed().as_secs_f64()
    );
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&up.stdout),
        String::from_utf8_lossy(&up.stderr)
    );
    assert!(
        up.status.success(),
        "devcontainer up of {id} failed:\n{log}"
    );
    let test = ws.devcontainer(&["exec", "bash", "test.sh"]);
    assert!(
        test.status.success(),
        "{id}: test.sh failed:\n{}\n{}",
        String::from_utf8_lossy(&test.stdout),
        String::from_utf8_lossy(&test.stderr)
    );
    UpTemplate {
        ws,
        log,
        _dirs: dirs,
    }
}

/// With the default options (`slurm: false`), the aiida-slurm Feature that the Template lists is
/// inert: no Slurm, munge or sshd, no `localhost-slurm` computer, and its postStartCommand prints
/// nothing.
#[test]
fn the_aiida_plugin_template_comes_up_with_services() {
    if skip_without(&[Need::Docker, Need::DevcontainerCli]) {
        return;
    }
    let up = bring_up(
        "aiida-plugin",
        "aiidateam/aiida-core-with-services:latest",
        None,
    );
    let (ok, out) = up.sh(
        "set -e; cat /proc/[0-9]*/comm 2>/dev/null | sort -u > /tmp/comms; \
         if grep -xE 'slurmctld|slurmd|munged|sshd|slurmdbd|mariadbd' /tmp/comms; then echo RUNNING; fi; \
         command -v scontrol sbatch sshd munged || true; \
         aiida-init status; \
         verdi computer list -a",
    );
    assert!(ok, "{out}");
    assert!(!out.contains("RUNNING"), "Slurm processes run:\n{out}");
    for absent in [
        "scontrol",
        "sbatch",
        "/sshd",
        "munged",
        "slurmd",
        "localhost-slurm",
    ] {
        assert!(!out.contains(absent), "{absent} is there:\n{out}");
    }
    assert!(out.contains("localhost"), "no computer list:\n{out}");
    // The Feature's postStartCommand ran, and said nothing: no warning, no output at all.
    let (ok, out) = up.sh("/usr/local/share/aiida-slurm/wait 2>&1; echo \"exit=$?\"");
    assert!(ok && out == "exit=0\n", "the inert wait: {out:?}");
    let log: Vec<&str> = up.log.lines().collect();
    let ran = log
        .iter()
        .position(|l| {
            l.contains("Running the postStartCommand from Feature") && l.contains("/aiida-slurm:0")
        })
        .unwrap_or_else(|| panic!("the Feature's postStartCommand did not run:\n{}", up.log));
    for line in &log[ran + 1..] {
        let lower = line.to_lowercase();
        assert!(
            !line.contains("(!)")
                && !lower.contains("slurm")
                && !lower.contains("warn")
                && !lower.contains("error"),
            "the postStart output has a warning: {line}\n{}",
            up.log
        );
    }
}

/// With `slurm: true`, the Template's container also runs Slurm and sshd, and AiiDA's
/// `localhost-slurm` computer works.
#[test]
fn the_aiida_plugin_template_with_slurm_comes_up_with_slurm_and_its_computer() {
    if skip_without(&[Need::Docker, Need::DevcontainerCli]) {
        return;
    }
    let up = bring_up(
        "aiida-plugin",
        "aiidateam/aiida-core-with-services:latest",
        Some(r#"{"slurm": "true"}"#),
    );
    let (ok, out) = up.sh("scontrol ping && verdi computer test localhost-slurm");
    assert!(ok, "Slurm or the computer is not working:\n{out}");
    assert!(out.contains("is UP"), "{out}");
}

/// The Template's `slurm` option sets the aiida-slurm Feature as `aiida-devc init --slurm` does:
/// the same reference, enabled (init leaves `enabled` at its default, true); off by default.
#[test]
fn the_aiida_plugin_templates_slurm_option_matches_init_slurm() {
    if skip_without(&[Need::DevcontainerCli]) {
        return;
    }
    let (_dir, _templates, registry, ns) = publish_templates("apply-slurm");
    let features = |options: &str| {
        let workspace = tempfile::tempdir().unwrap();
        let mut args = vec![
            "templates".to_owned(),
            "apply".into(),
            "-t".into(),
            format!("{}/{ns}/aiida-plugin", registry.host),
            "-w".into(),
            workspace.path().to_str().unwrap().into(),
        ];
        if !options.is_empty() {
            args.extend(["-a".into(), options.into()]);
        }
        devcontainer(&args.iter().map(String::as_str).collect::<Vec<_>>())
            .ok(&format!("apply {options}"));
        let text =
            std::fs::read_to_string(workspace.path().join(".devcontainer/devcontainer.json"))
                .unwrap();
        aiida_devc::collection::metadata::JsoncFile::parse(
            std::path::Path::new("devcontainer.json"),
            text,
        )
        .unwrap()
        .value["features"]
            .clone()
    };
    let reference = aiida_devc::devcontainer::config::slurm_feature();
    // The reference CLI writes a false boolean option's default as "" (and takes option values
    // as strings only): the Feature reads an empty `enabled` as false.
    for (options, enabled) in [
        ("", ""),
        (r#"{"slurm": "false"}"#, "false"),
        (r#"{"slurm": "true"}"#, "true"),
    ] {
        assert_eq!(
            features(options),
            serde_json::json!({ &reference: { "enabled": enabled } }),
            "options {options:?}"
        );
    }

    // init --slurm on the sample plugin: the same Feature, with every option at its default.
    let dir = tempfile::tempdir().unwrap();
    let plugin = dir.path().join("plugin");
    crate::support::copy_tree(
        &crate::support::project_root().join("tests/fixtures/aiida-sample-plugin"),
        &plugin,
    );
    let _ = std::fs::remove_dir_all(plugin.join(".devcontainer"));
    aiida_devc(
        &[
            "init",
            plugin.to_str().unwrap(),
            "--image",
            "aiidateam/aiida-core-with-services:latest",
            "--slurm",
        ],
        &[],
    )
    .ok("init --slurm");
    let text = std::fs::read_to_string(plugin.join(".devcontainer/devcontainer.json")).unwrap();
    let init = aiida_devc::collection::metadata::JsoncFile::parse(
        std::path::Path::new("devcontainer.json"),
        text,
    )
    .unwrap()
    .value["features"]
        .clone();
    assert_eq!(init, serde_json::json!({ &reference: {} }));
    let feature: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            crate::support::project_root()
                .join("features/src/aiida-slurm/devcontainer-feature.json"),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(
        feature["options"]["enabled"]["default"],
        serde_json::json!(true),
        "init --slurm relies on enabled being true by default"
    );
}

#[test]
fn the_aiida_plugin_lite_template_comes_up_without_services() {
    if skip_without(&[Need::Docker, Need::DevcontainerCli]) {
        return;
    }
    bring_up(
        "aiida-plugin-lite",
        "aiidateam/aiida-core-base:latest",
        None,
    );
}

#[test]
fn the_aiida_plugin_compose_template_comes_up_with_separate_services() {
    if skip_without(&[Need::Docker, Need::DevcontainerCli]) {
        return;
    }
    Harness::new().require_image("aiidateam/aiida-core-base:latest");
    // Stand-ins for the official postgres and rabbitmq images, built from Debian's packages.
    crate::support::compose::build_service_images();

    let (_dir, templates, registry, ns) = publish_templates("up-compose");
    let ws = Workspace::with_config("{}");
    devcontainer(&[
        "templates", "apply", "-t", &format!("{}/{ns}/aiida-plugin-compose", registry.host), "-w", ws.path().to_str().unwrap(),
        "-a", &serde_json::json!({"postgresImage": crate::support::compose::POSTGRES_IMAGE, "rabbitmqImage": crate::support::compose::RABBITMQ_IMAGE}).to_string(),
    ])
    .ok("apply");
    std::fs::copy(
        templates.join("test/aiida-plugin-compose/test.sh"),
        ws.path().join("test.sh"),
    )
    .unwrap();
    let up = ws.devcontainer(&["up", "--no-lockfile"]);
    // Whatever happens, remove the whole Compose project (containers, network, volumes) afterwards.
    let _project = crate::support::compose::ComposeProject::of_workspace(ws.path());
    assert!(
        up.status.success(),
        "devcontainer up failed:\n{}\n{}",
        String::from_utf8_lossy(&up.stdout),
        String::from_utf8_lossy(&up.stderr)
    );
    let test = ws.devcontainer(&["exec", "bash", "test.sh"]);
    assert!(
        test.status.success(),
        "test.sh failed:\n{}\n{}",
        String::from_utf8_lossy(&test.stdout),
        String::from_utf8_lossy(&test.stderr)
    );
}

/// Our Templates, published from a scratch copy to the shared test registry under a namespace
/// of their own: the copy (to keep while the test runs) and its folder, the registry and the
/// namespace.
fn publish_templates(
    what: &str,
) -> (
    tempfile::TempDir,
    std::path::PathBuf,
    &'static Registry,
    String,
) {
    let registry = Registry::shared();
    let (dir, templates) = scratch_copy("devcontainer-templates");
    let ns = namespace(what);
    aiida_devc(
        &[
            "templates",
            "publish",
            templates.join("src").to_str().unwrap(),
            "-r",
            &registry.host,
            "-n",
            &ns,
        ],
        &[],
    )
    .ok("publish");
    (dir, templates, registry, ns)
}
