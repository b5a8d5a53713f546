//! The Features collection against the real things: our packages list the same entries as the
//! reference CLI's, what we publish to a real registry on localhost is read by the reference CLI,
//! tags only move forward, bad input pushes nothing, refused and unreachable registries are named,
//! the Features' own scenarios pass under `devcontainer features test`, and a workspace that uses
//! our published Features by their localhost OCI ids comes up with `verdi status` all green.

use crate::support::{Need, skip_without};
use std::path::Path;

use crate::support::Workspace;
use crate::support::collections::{
    aiida_devc, devcontainer, namespace, packaged_features, place_ca_bundle, publish_features,
    scratch_copy, tar_entries,
};
use crate::support::feature_builds;
use crate::support::registry::Registry;

/// On drop, hands the images tagged since `before` by the reference CLI's feature tests
/// (`vsc-<digits>-...`) to the harness for removal, children first. (Its scratch build tag
/// `dev_container_feature_content_temp`, 2 MB, stays: the next feature build reuses it.)
struct ImagesBuiltDuring<'h> {
    harness: &'h crate::support::Harness,
    before: std::collections::BTreeSet<String>,
}

impl Drop for ImagesBuiltDuring<'_> {
    fn drop(&mut self) {
        let built_by_feature_tests = |tag: &String| {
            let rest = tag.strip_prefix("vsc-").unwrap_or_default();
            let digits = rest.chars().take_while(char::is_ascii_digit).count();
            digits > 0 && rest[digits..].starts_with('-')
        };
        let mut new: Vec<String> = self
            .harness
            .image_tags()
            .into_iter()
            .filter(|t| !self.before.contains(t) && built_by_feature_tests(t))
            .collect();
        new.sort_by_key(|t| std::cmp::Reverse((t.contains("-uid:"), t.contains("-features:"))));
        for tag in new {
            self.harness.track_image(&tag);
        }
    }
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// A collection with one tiny Feature `hello` at `version`.
fn hello_collection(version: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    write(
        &dir.path().join("src/hello/devcontainer-feature.json"),
        &format!(
            r#"{{ "id": "hello", "version": "{version}", "name": "Hello", "options": {{ "greeting": {{ "type": "string", "default": "hi" }} }} }}"#
        ),
    );
    write(
        &dir.path().join("src/hello/install.sh"),
        "#!/bin/sh\necho \"$GREETING\" > /usr/local/hello\n",
    );
    dir
}

#[test]
fn packages_list_the_same_entries_as_the_reference_cli() {
    if skip_without(&[Need::DevcontainerCli]) {
        return;
    }
    let (_dir, features) = scratch_copy("features");
    let src = features.join("src");
    // A renamed Feature too: packaging adds currentId and rewrites its JSON (comments dropped).
    write(
        &src.join("renamed/devcontainer-feature.json"),
        "{\n  // renamed from old-name\n  \"id\": \"renamed\", \"version\": \"2.0.0\", \"name\": \"Renamed\",\n  \"legacyIds\": [\"old-name\"], \"options\": {}\n}\n",
    );
    write(&src.join("renamed/install.sh"), "#!/bin/sh\n");
    write(
        &src.join("renamed/.hidden/data"),
        "dot folders are packaged too\n",
    );
    let ours = features.join("ours");
    let theirs = features.join("theirs");
    aiida_devc(
        &[
            "features",
            "package",
            src.to_str().unwrap(),
            "-o",
            ours.to_str().unwrap(),
        ],
        &[],
    )
    .ok("aiida-devc features package");
    // Now that aiida-init is in the aiida-services folder, both tools package the same sources.
    assert!(
        src.join("aiida-services/aiida-init-x86_64").is_file()
            && src.join("aiida-services/aiida-init-aarch64").is_file(),
        "aiida-init was not bundled for both platforms"
    );
    devcontainer(&[
        "features",
        "package",
        src.to_str().unwrap(),
        "-o",
        theirs.to_str().unwrap(),
    ])
    .ok("devcontainer features package");

    for id in ["aiida-core", "aiida-services", "aiida-slurm", "renamed"] {
        let file = format!("devcontainer-feature-{id}.tgz");
        let ours = tar_entries(&std::fs::read(ours.join(&file)).unwrap());
        let theirs = tar_entries(&std::fs::read(theirs.join(&file)).unwrap());
        let names = |entries: &[crate::support::collections::TarEntry]| {
            entries.iter().map(|e| e.name.clone()).collect::<Vec<_>>()
        };
        assert_eq!(names(&ours), names(&theirs), "entry names of {file}");
        assert_eq!(ours, theirs, "entries (modes, types, contents) of {file}");
        assert!(names(&ours).contains(&"./install.sh".to_owned()));
    }
    let collection = |dir: &Path| -> serde_json::Value {
        serde_json::from_str(
            &std::fs::read_to_string(dir.join("devcontainer-collection.json")).unwrap(),
        )
        .unwrap()
    };
    assert_eq!(
        collection(&ours),
        collection(&theirs),
        "devcontainer-collection.json"
    );
    let renamed = collection(&ours)["features"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["id"] == "renamed")
        .cloned()
        .expect("the renamed Feature in the collection");
    assert_eq!(renamed["currentId"], "renamed");
    single_mode_packages_as_the_reference_cli(&src, &ours, &theirs);
}

/// One Feature's folder as the target (single mode), with -f cleaning the output folder: both
/// tools write the same files.
fn single_mode_packages_as_the_reference_cli(src: &Path, ours: &Path, theirs: &Path) {
    let single = src.join("aiida-core");
    for (tool, out) in [("ours", ours), ("theirs", theirs)] {
        let args = [
            "features",
            "package",
            single.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            "-f",
        ];
        match tool {
            "ours" => aiida_devc(&args, &[]).ok("aiida-devc features package (single)"),
            _ => devcontainer(&args).ok("devcontainer features package (single)"),
        };
    }
    let listing = |dir: &Path| {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };
    assert_eq!(listing(ours), listing(theirs), "single-mode output folders");
    let file = "devcontainer-feature-aiida-core.tgz";
    assert_eq!(
        tar_entries(&std::fs::read(ours.join(file)).unwrap()),
        tar_entries(&std::fs::read(theirs.join(file)).unwrap())
    );
}

#[test]
fn the_reference_cli_reads_what_we_publish() {
    if skip_without(&[Need::DevcontainerCli]) {
        return;
    }
    let registry = Registry::shared();
    let (_dir, features) = scratch_copy("features");
    let ns = namespace("features");
    let result = publish_features(&features.join("src"), &registry.host, &ns, &["--json"])
        .ok("aiida-devc features publish")
        .json();
    for id in ["aiida-core", "aiida-services", "aiida-slurm"] {
        // The tags of each Feature's own version: X, X.Y, X.Y.Z and latest.
        let metadata: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(features.join(format!("src/{id}/devcontainer-feature.json")))
                .unwrap(),
        )
        .unwrap();
        let version = metadata["version"].as_str().unwrap();
        let parts: Vec<&str> = version.split('.').collect();
        let tags = [
            parts[0].to_owned(),
            parts[..2].join("."),
            version.to_owned(),
            "latest".to_owned(),
        ];
        assert_eq!(
            result[id]["publishedTags"],
            serde_json::json!(tags),
            "{result}"
        );
        assert_eq!(registry.tags(&format!("{ns}/{id}")), tags);
        let digest = result[id]["digest"].as_str().unwrap();
        assert_reference_cli_reads_the_manifest(registry, &ns, id, digest);
        assert_reference_cli_lists_the_tags(&format!("{}/{ns}/{id}", registry.host), &tags);
    }
    assert_collection_lists(
        registry,
        &ns,
        &["aiida-core", "aiida-services", "aiida-slurm"],
    );
}

/// `devcontainer features info manifest` reads the Feature `id` published under `ns` with
/// `digest`: a devcontainers artifact whose annotation holds its metadata.
fn assert_reference_cli_reads_the_manifest(registry: &Registry, ns: &str, id: &str, digest: &str) {
    let reference = format!("{}/{ns}/{id}", registry.host);
    let manifest = devcontainer(&[
        "features",
        "info",
        "manifest",
        &reference,
        "--output-format",
        "json",
    ])
    .ok("features info manifest");
    let manifest = manifest.json();
    let canonical = manifest["canonicalId"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert_eq!(canonical, format!("{reference}@{digest}"), "{manifest}");
    let manifest = &manifest["manifest"];
    assert_eq!(
        manifest["config"]["mediaType"], "application/vnd.devcontainers",
        "{manifest}"
    );
    assert_eq!(
        manifest["config"]["digest"],
        "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
    );
    assert_eq!(manifest["config"]["size"], 2);
    assert_eq!(
        manifest["layers"][0]["mediaType"],
        "application/vnd.devcontainers.layer.v1+tar"
    );
    assert_eq!(
        manifest["layers"][0]["annotations"]["org.opencontainers.image.title"],
        format!("devcontainer-feature-{id}.tgz")
    );
    let metadata: serde_json::Value = serde_json::from_str(
        manifest["annotations"]["dev.containers.metadata"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(metadata["id"], id);
    assert_eq!(digest, manifest_digest(registry, &format!("{ns}/{id}")));
}

/// `devcontainer features info tags` lists the tags of the first release, `expected`.
fn assert_reference_cli_lists_the_tags(reference: &str, expected: &[String]) {
    let tags = devcontainer(&[
        "features",
        "info",
        "tags",
        reference,
        "--output-format",
        "json",
    ])
    .ok("features info tags");
    let mut tags: Vec<String> =
        serde_json::from_value(tags.json()["publishedTags"].clone()).unwrap();
    tags.sort();
    assert_eq!(tags, expected);
}

/// The collection artifact at `<ns>:latest` lists the Features `ids`.
fn assert_collection_lists(registry: &Registry, ns: &str, ids: &[&str]) {
    let collection: serde_json::Value = serde_json::from_str(
        &registry
            .manifest(ns, "latest")
            .expect("a collection manifest"),
    )
    .unwrap();
    let layer = &collection["layers"][0];
    assert_eq!(
        layer["mediaType"],
        "application/vnd.devcontainers.collection.layer.v1+json"
    );
    assert_eq!(
        layer["annotations"]["org.opencontainers.image.title"],
        "devcontainer-collection.json"
    );
    let json: serde_json::Value =
        serde_json::from_slice(&registry.blob(ns, layer["digest"].as_str().unwrap())).unwrap();
    assert_eq!(json["sourceInformation"]["source"], "devcontainer-cli");
    let listed: Vec<&str> = json["features"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["id"].as_str().unwrap())
        .collect();
    assert_eq!(listed, ids);
}

fn manifest_digest(registry: &Registry, repository: &str) -> String {
    let bytes = registry.manifest(repository, "latest").unwrap();
    aiida_devc::oci::artifact::sha256_digest(bytes.as_bytes())
}

#[test]
fn republishing_changes_nothing_and_floating_tags_only_move_forward() {
    if skip_without(&[Need::DevcontainerCli]) {
        return;
    }
    let registry = Registry::shared();
    let ns = namespace("tags");
    let repository = format!("{ns}/hello");
    let publish = |version: &str| {
        let collection = hello_collection(version);
        aiida_devc(
            &[
                "features",
                "publish",
                collection.path().join("src").to_str().unwrap(),
                "-r",
                &registry.host,
                "-n",
                &ns,
                "--json",
            ],
            &[],
        )
        .ok(&format!("publish {version}"))
        .json()
    };
    let first = publish("1.2.0");
    assert_eq!(
        first["hello"]["publishedTags"],
        serde_json::json!(["1", "1.2", "1.2.0", "latest"])
    );
    let latest = registry.manifest(&repository, "latest").unwrap();

    // The same version again: skipped, nothing moves.
    let again = publish("1.2.0");
    assert_eq!(again["hello"], serde_json::json!({}), "{again}");
    assert_eq!(registry.tags(&repository), ["1", "1.2", "1.2.0", "latest"]);
    assert_eq!(registry.manifest(&repository, "latest").unwrap(), latest);

    // An older version (a back-port) gets its own tags but does not move 1 or latest.
    let older = publish("1.1.5");
    assert_eq!(
        older["hello"]["publishedTags"],
        serde_json::json!(["1.1", "1.1.5"])
    );
    assert_eq!(registry.manifest(&repository, "latest").unwrap(), latest);
    assert_eq!(registry.manifest(&repository, "1").unwrap(), latest);

    // A newer one moves them.
    let newer = publish("1.3.0");
    assert_eq!(
        newer["hello"]["publishedTags"],
        serde_json::json!(["1", "1.3", "1.3.0", "latest"])
    );
    assert_eq!(
        registry.manifest(&repository, "latest").unwrap(),
        registry.manifest(&repository, "1.3.0").unwrap()
    );
    assert_eq!(
        registry.tags(&repository),
        [
            "1", "1.1", "1.1.5", "1.2", "1.2.0", "1.3", "1.3.0", "latest"
        ]
    );

    // The reference CLI sees the same thing.
    let tags = devcontainer(&[
        "features",
        "info",
        "tags",
        &format!("{}/{repository}", registry.host),
        "--output-format",
        "json",
    ])
    .ok("info tags");
    assert_eq!(tags.json()["publishedTags"].as_array().unwrap().len(), 8);
}

#[test]
fn each_bad_input_gives_its_error_and_pushes_nothing() {
    let registry = Registry::shared();
    for case in bad_feature_cases() {
        assert_refused_with_nothing_pushed(registry, &case);
    }
    // A bad namespace or registry is refused before anything is read.
    let good = hello_collection("1.0.0");
    let src = good.path().join("src");
    let run = publish_features(&src, &registry.host, "Bad/Namespace", &[]);
    assert!(
        !run.success
            && run
                .stderr
                .contains("namespace 'Bad/Namespace' is not valid"),
        "{}",
        run.stderr
    );
    let run = publish_features(&src, "http://localhost:1", "a/b", &[]);
    assert!(
        !run.success
            && run
                .stderr
                .contains("registry 'http://localhost:1' is not a host name"),
        "{}",
        run.stderr
    );
}

/// A Feature with bad metadata (or no install.sh), and the error that names what is wrong.
struct BadFeature {
    what: &'static str,
    json: &'static str,
    install: bool,
    expect: &'static str,
}

/// One bad Feature per kind of mistake.
fn bad_feature_cases() -> [BadFeature; 8] {
    [
        BadFeature {
            what: "syntax",
            json: "{\n  \"id\": \"hello\",\n  \"version\": \"1.0.0\"\n  \"name\": \"x\"\n}",
            install: true,
            expect: "devcontainer-feature.json:3:21: invalid JSON: Expected comma",
        },
        BadFeature {
            what: "dollar",
            json: "{\"id\": \"hello\", \"version\": \"1.0.0\", \"name\": \"x\",\n \"options\": {\"a\": {\"type\": \"string\", \"default\": \"$(id)\"}}}",
            install: true,
            expect: "devcontainer-feature.json:2:49: the value \"$(id)\" of option 'a' contains a '$'",
        },
        BadFeature {
            what: "quote",
            json: "{\"id\": \"hello\", \"version\": \"1.0.0\", \"name\": \"x\",\n \"options\": {\"a\": {\"type\": \"string\", \"default\": \"x\", \"proposals\": [\"a\\\"b\"]}}}",
            install: true,
            expect: "devcontainer-feature.json:2:68: the value \"a\\\"b\" of option 'a' contains a double quote",
        },
        BadFeature {
            what: "backtick",
            json: "{\"id\": \"hello\", \"version\": \"1.0.0\", \"name\": \"x\",\n \"options\": {\"a\": {\"type\": \"string\", \"enum\": [\"`id`\"], \"default\": \"`id`\"}}}",
            install: true,
            expect: "contains a backtick",
        },
        BadFeature {
            what: "newline",
            json: "{\"id\": \"hello\", \"version\": \"1.0.0\", \"name\": \"x\",\n \"options\": {\"a\": {\"type\": \"string\", \"default\": \"a\\nb\"}}}",
            install: true,
            expect: "contains a newline",
        },
        BadFeature {
            what: "version",
            json: "{\"id\": \"hello\", \"version\": \"1.0\", \"name\": \"x\"}",
            install: true,
            expect: "devcontainer-feature.json:1:28: version '1.0' is not a semantic version",
        },
        BadFeature {
            what: "install",
            json: "{\"id\": \"hello\", \"version\": \"1.0.0\", \"name\": \"x\"}",
            install: false,
            expect: "has no install.sh",
        },
        BadFeature {
            what: "unknown",
            json: "{\"id\": \"hello\", \"version\": \"1.0.0\", \"name\": \"x\", \"colour\": \"red\"}",
            install: true,
            expect: "devcontainer-feature.json:1:50: unknown property 'colour'",
        },
    ]
}

/// Publishing `case` beside a good Feature fails with its error and pushes neither; `validate`
/// reports it too.
fn assert_refused_with_nothing_pushed(registry: &Registry, case: &BadFeature) {
    let dir = tempfile::tempdir().unwrap();
    write(
        &dir.path().join("src/hello/devcontainer-feature.json"),
        case.json,
    );
    if case.install {
        write(&dir.path().join("src/hello/install.sh"), "#!/bin/sh\n");
    }
    // A good Feature beside the bad one must not be pushed either.
    write(
        &dir.path().join("src/good/devcontainer-feature.json"),
        r#"{"id": "good", "version": "1.0.0", "name": "Good"}"#,
    );
    write(&dir.path().join("src/good/install.sh"), "#!/bin/sh\n");
    let ns = namespace(case.what);
    let run = publish_features(&dir.path().join("src"), &registry.host, &ns, &[]);
    assert!(!run.success, "{}: publish succeeded", case.what);
    assert!(
        run.stderr.contains(case.expect),
        "{}: expected {:?} in:\n{}",
        case.what,
        case.expect,
        run.stderr
    );
    assert!(
        run.stderr.contains("nothing was packaged or pushed"),
        "{}",
        run.stderr
    );
    let pushed: Vec<String> = registry
        .repositories()
        .into_iter()
        .filter(|r| r.starts_with(&ns))
        .collect();
    assert!(pushed.is_empty(), "{}: pushed {pushed:?}", case.what);
    // validate reports the same problem, with --json for CI.
    let validate = aiida_devc(
        &[
            "features",
            "validate",
            "--json",
            dir.path().join("src").to_str().unwrap(),
        ],
        &[],
    );
    assert!(!validate.success);
    assert_eq!(validate.json()["valid"], false);
}

#[test]
fn refused_and_unreachable_registries_are_named_without_credentials() {
    let secured = Registry::with_password("publisher", "right-password");
    let collection = hello_collection("1.0.0");
    let src = collection.path().join("src");
    let ns = namespace("auth");
    let publish = |env: &[(&str, &str)]| {
        aiida_devc(
            &[
                "features",
                "publish",
                src.to_str().unwrap(),
                "-r",
                &secured.host,
                "-n",
                &ns,
            ],
            env,
        )
    };
    let empty_docker_config = tempfile::tempdir().unwrap();
    let docker_config = empty_docker_config.path().to_str().unwrap();

    let anonymous = publish(&[("DOCKER_CONFIG", docker_config)]);
    assert!(!anonymous.success);
    assert!(
        anonymous.stderr.contains(&format!(
            "registry {} refused to authenticate",
            secured.host
        )),
        "{}",
        anonymous.stderr
    );
    assert!(
        anonymous.stderr.contains("HTTP 401") && anonymous.stderr.contains("used no credential"),
        "{}",
        anonymous.stderr
    );

    let wrong = format!("{}|publisher|wrong-s3cret-value", secured.host);
    let refused = publish(&[
        ("DOCKER_CONFIG", docker_config),
        ("DEVCONTAINERS_OCI_AUTH", &wrong),
    ]);
    assert!(!refused.success);
    assert!(
        refused.stderr.contains("HTTP 401") && refused.stderr.contains("DEVCONTAINERS_OCI_AUTH"),
        "{}",
        refused.stderr
    );
    assert!(
        !refused.stderr.contains("wrong-s3cret-value")
            && !refused.stdout.contains("wrong-s3cret-value"),
        "the secret was printed"
    );
    assert!(secured.tags(&format!("{ns}/hello")).is_empty());

    // The right credential, from a docker config this time, is accepted.
    let config = tempfile::tempdir().unwrap();
    use base64::Engine;
    let auth = base64::engine::general_purpose::STANDARD.encode("publisher:right-password");
    std::fs::write(
        config.path().join("config.json"),
        format!(
            r#"{{"auths": {{"{}": {{"auth": "{auth}"}}}}}}"#,
            secured.host
        ),
    )
    .unwrap();
    publish(&[("DOCKER_CONFIG", config.path().to_str().unwrap())])
        .ok("publish with the docker config's credential");

    // Nothing listens on a port that was just free.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let host = format!("localhost:{port}");
    let unreachable = aiida_devc(
        &[
            "features",
            "publish",
            src.to_str().unwrap(),
            "-r",
            &host,
            "-n",
            &ns,
        ],
        &[],
    );
    assert!(!unreachable.success);
    assert!(
        unreachable
            .stderr
            .contains(&format!("registry {host} is unreachable")),
        "{}",
        unreachable.stderr
    );
}

#[test]
fn the_feature_scenarios_pass_under_the_reference_cli() {
    if skip_without(&[Need::Docker, Need::DevcontainerCli]) {
        return;
    }
    let harness = crate::support::Harness::new();
    let _turn = feature_builds();
    // `devcontainer features test` leaves the images it builds for its scenario workspaces
    // (vsc-<timestamp>-<hash>[-features|-uid]) behind: remove them afterwards.
    let before = harness.image_tags();
    let _cleanup = ImagesBuiltDuring {
        harness: &harness,
        before,
    };
    // aiida-init must be in the aiida-services folder: packaging puts it there.
    let (_dir, features) = packaged_features();
    for scenario in [
        "aiida-core/non_root_sqlite",
        "aiida-services/non_root_services",
    ] {
        place_ca_bundle(&features.join("test").join(scenario));
    }
    let run = devcontainer(&[
        "features",
        "test",
        "--project-folder",
        features.to_str().unwrap(),
        "--features",
        "aiida-core",
        "aiida-services",
        "--skip-autogenerated",
        "--skip-duplicated",
    ]);
    let report = run
        .stdout
        .rsplit("TEST REPORT")
        .next()
        .unwrap_or_default()
        .to_owned();
    assert!(
        run.success,
        "devcontainer features test failed:\n{}\n{}",
        run.stdout, run.stderr
    );
    assert!(
        report.contains("Passed:      'non_root_sqlite'")
            && report.contains("Passed:      'non_root_services'"),
        "{report}"
    );
}

#[test]
fn a_workspace_with_our_published_features_comes_up_with_verdi_status_green() {
    if skip_without(&[Need::Docker, Need::DevcontainerCli]) {
        return;
    }
    let registry = Registry::shared();
    let (_dir, features) = scratch_copy("features");
    let ns = namespace("up");
    publish_features(&features.join("src"), &registry.host, &ns, &[]).ok("publish");

    let config = format!(
        r#"{{
            "build": {{ "dockerfile": "Dockerfile" }},
            "remoteUser": "aiida",
            "features": {{
                "{host}/{ns}/aiida-services:0": {{}},
                "{host}/{ns}/aiida-core:0.1": {{}}
            }}
        }}"#,
        host = registry.host
    );
    let ws = Workspace::with_config(&config);
    let dot = ws.path().join(".devcontainer");
    std::fs::copy(
        features.join("test/aiida-core/non_root_sqlite/Dockerfile"),
        dot.join("Dockerfile"),
    )
    .unwrap();
    place_ca_bundle(&dot);
    let turn = feature_builds();
    let up = ws.devcontainer(&["up", "--no-lockfile"]);
    drop(turn);
    let stdout = String::from_utf8_lossy(&up.stdout);
    assert!(
        up.status.success(),
        "devcontainer up failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&up.stderr)
    );

    let exec = ws.devcontainer(&[
        "exec",
        "bash",
        "-c",
        "id -un; verdi status 2>&1; verdi profile show 2>&1 | grep -o 'core\\.[a-z_]*'",
    ]);
    let out = String::from_utf8_lossy(&exec.stdout).to_string();
    assert!(
        exec.status.success(),
        "verdi status failed:\n{out}\n{}",
        String::from_utf8_lossy(&exec.stderr)
    );
    assert_eq!(out.lines().next(), Some("aiida"), "{out}");
    for line in ["✔ profile", "✔ storage", "✔ broker", "✔ daemon"] {
        assert!(out.contains(line), "no '{line}' in:\n{out}");
    }
    assert!(!out.contains('✘') && !out.contains('⏺'), "{out}");
    assert!(
        out.contains("core.psql_dos") && out.contains("core.rabbitmq"),
        "the profile does not use the services:\n{out}"
    );

    let id = ws.harness().containers_with_label(&format!(
        "devcontainer.local_folder={}",
        ws.path().display()
    ));
    let c = crate::support::images::Container {
        name: id.first().expect("the workspace container").clone(),
        harness: ws.harness(),
        exec_user: Some("aiida".into()),
    };
    the_daemon_stays_supervised_whatever_verdi_daemon_command_runs(&c);

    the_feature_container_stops_cleanly(&c);
}

/// `docker stop` reaches aiida-init through the entrypoint's trap: the daemon stops first, then
/// PostgreSQL and RabbitMQ, cleanly, within Docker's 10 s, exit 0.
fn the_feature_container_stops_cleanly(c: &crate::support::images::Container) {
    let started = std::time::Instant::now();
    let stop = std::process::Command::new("docker")
        .args(["stop", &c.name])
        .output()
        .unwrap();
    assert!(stop.status.success());
    let stop_seconds = started.elapsed().as_secs_f64();
    assert_eq!(c.inspect("{{.State.ExitCode}}"), "0", "unclean exit");
    let log = services_log(c);
    let (_, stop) = log
        .rsplit_once("received SIGTERM: shutting down")
        .unwrap_or_else(|| panic!("aiida-init did not get docker stop's SIGTERM:\n{log}"));
    let daemon_stopped = stop
        .find("aiida-daemon: stopped as requested")
        .unwrap_or_else(|| panic!("the daemon did not stop as requested:\n{stop}"));
    let database_stopped = stop
        .find("database system is shut down")
        .unwrap_or_else(|| panic!("PostgreSQL did not shut down cleanly:\n{stop}"));
    assert!(
        daemon_stopped < database_stopped,
        "PostgreSQL stopped before the daemon:\n{stop}"
    );
    for bad in ["SIGKILL", "connection_forced"] {
        assert!(!stop.contains(bad), "`{bad}` in the stop:\n{stop}");
    }
    assert!(stop_seconds < 10.0, "docker stop took {stop_seconds:.1} s");
    eprintln!(
        "docker stop of the workspace container: {stop_seconds:.2} s, the daemon then PostgreSQL stopped cleanly"
    );
}

/// Ceiling for what the Feature's daemon does on a busy machine (a restart, a calculation).
const DAEMON_CEILING: std::time::Duration = std::time::Duration::from_secs(180);

/// The aiida-services Feature's log (aiida-init and its services), with RabbitMQ's own log files.
fn services_log(c: &crate::support::images::Container) -> String {
    let out = std::process::Command::new("docker")
        .args(["cp", &format!("{}:/tmp/aiida-services.log", c.name), "-"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// With the aiida-core and aiida-services Features, the daemon is aiida-init's `aiida-daemon`
/// service from the first start on, and stays so whatever `verdi daemon` command the user runs:
/// ready in `aiida-init status`, the only circus, a child of aiida-init, with the workers asked
/// for. `verdi daemon stop` keeps it down until `verdi daemon start`; a SIGKILLed PostgreSQL gets
/// its workers restarted, and a calculation submitted afterwards finishes.
fn the_daemon_stays_supervised_whatever_verdi_daemon_command_runs(
    c: &crate::support::images::Container,
) {
    assert_feature_daemon_supervised(c, 1);
    for (commands, workers) in [
        (&["verdi daemon start"][..], 1),
        (&["verdi daemon restart"][..], 1),
        (&["verdi daemon restart --reset"][..], 1),
        (&["verdi daemon stop", "verdi daemon start 2"][..], 2),
        (&["verdi daemon incr 2", "verdi daemon decr 1"][..], 3),
        (&["verdi daemon status"][..], 3),
        (&["verdi daemon restart"][..], 1),
    ] {
        for command in commands {
            c.sh(command);
        }
        eprintln!("after {commands:?}: the daemon is supervised with {workers} workers");
        assert_feature_daemon_supervised(c, workers);
    }

    c.sh("verdi daemon stop");
    let row = c.service("aiida-daemon");
    assert_eq!(row["state"], "down", "after verdi daemon stop: {row}");
    std::thread::sleep(std::time::Duration::from_secs(3));
    assert_eq!(c.processes("[s]tart-circus"), 0, "a daemon came back");
    c.sh("verdi daemon start");
    assert_feature_daemon_supervised(c, 1);

    let restarts = |c: &crate::support::images::Container| {
        services_log(c).matches("PostgreSQL restarted").count()
    };
    let before = restarts(c);
    c.sh("kill -9 $(head -n 1 /var/lib/aiida-services/postgresql/postmaster.pid)");
    assert!(
        crate::support::poll_until(
            DAEMON_CEILING,
            std::time::Duration::from_millis(500),
            || restarts(c) > before
        ),
        "the daemon did not restart its workers after PostgreSQL restarted:\n{}",
        services_log(c)
    );
    assert_feature_daemon_supervised(c, 1);
    let pk = crate::support::images::submit_add(c, 4, 5, None);
    assert_eq!(
        crate::support::images::await_sum_within(c, &pk, DAEMON_CEILING.as_secs()),
        9
    );
}

/// The daemon is the Feature's supervised service: ready, named by circus's PID file, a child of
/// aiida-init, the only circus, with `workers` workers, and `verdi status` all green.
fn assert_feature_daemon_supervised(c: &crate::support::images::Container, workers: usize) {
    let (code, out) = c.exec(&["aiida-init", "wait", "--timeout", "300", "aiida-daemon"]);
    assert_eq!(
        code,
        0,
        "aiida-daemon is not ready:\n{out}\n{}",
        services_log(c)
    );
    let row = c.service("aiida-daemon");
    assert_eq!(row["state"], "ready", "aiida-daemon is not ready: {row}");
    let pid = row["pid"]
        .as_i64()
        .expect("a running aiida-daemon has a PID");
    let pid_file = c.sh("cat ~/.aiida/daemon/circus-*.pid");
    assert_eq!(
        pid_file.trim(),
        pid.to_string(),
        "circus's PID file names another process than the service"
    );
    let parent = c.sh(&format!(
        "cat /proc/$(ps -o ppid= -p {pid} | tr -d ' ')/comm"
    ));
    assert_eq!(
        parent.trim(),
        "aiida-init",
        "the daemon is not aiida-init's child"
    );
    assert_eq!(c.processes("[s]tart-circus"), 1, "not exactly one circus");
    assert!(
        crate::support::poll_until(
            DAEMON_CEILING,
            std::time::Duration::from_millis(250),
            || c.daemon_workers() == workers
        ),
        "not {workers} workers: {}",
        c.sh("ps -eo pid,ppid,args")
    );
    c.assert_verdi_ready(true);
}

#[test]
fn a_renamed_feature_is_published_under_its_legacy_ids_too() {
    if skip_without(&[Need::DevcontainerCli]) {
        return;
    }
    let registry = Registry::shared();
    let dir = tempfile::tempdir().unwrap();
    write(
        &dir.path().join("src/renamed/devcontainer-feature.json"),
        r#"{"id": "renamed", "version": "1.0.0", "name": "Renamed", "legacyIds": ["old-name"]}"#,
    );
    write(&dir.path().join("src/renamed/install.sh"), "#!/bin/sh\n");
    let ns = namespace("legacy");
    let result = aiida_devc(
        &[
            "features",
            "publish",
            dir.path().join("src").to_str().unwrap(),
            "-r",
            &registry.host,
            "-n",
            &ns,
            "--json",
        ],
        &[],
    )
    .ok("publish")
    .json();
    assert_eq!(
        result["renamed"]["publishedLegacyIds"],
        serde_json::json!(["old-name"]),
        "{result}"
    );
    assert_eq!(
        registry.tags(&format!("{ns}/old-name")),
        ["1", "1.0", "1.0.0", "latest"]
    );
    assert_eq!(
        registry.manifest(&format!("{ns}/old-name"), "1.0.0"),
        registry.manifest(&format!("{ns}/renamed"), "1.0.0")
    );
    // The reference CLI resolves the old id to the same Feature.
    let info = devcontainer(&[
        "features",
        "info",
        "manifest",
        &format!("{}/{ns}/old-name", registry.host),
        "--output-format",
        "json",
    ])
    .ok("info manifest");
    let metadata: serde_json::Value = serde_json::from_str(
        info.json()["manifest"]["annotations"]["dev.containers.metadata"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(metadata["currentId"], "renamed");
}

/// The architecture an image's config records (`docker image inspect`), if the image exists.
fn image_architecture(image: &str) -> Option<String> {
    let out = std::process::Command::new("docker")
        .args(["image", "inspect", "--format", "{{.Architecture}}", image])
        .output()
        .expect("run docker");
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// Publish the Features to the test registry, check that the aiida-services package carries an
/// aiida-init per machine, then bring up `image` (whose architecture `machine` names) with the
/// Feature from the registry: aiida-init runs there and PostgreSQL and RabbitMQ become ready.
fn the_published_services_feature_comes_up_on(image: &str, machine: &str) {
    let registry = Registry::shared();
    let (_dir, features) = scratch_copy("features");
    let ns = namespace("multiarch");
    publish_features(&features.join("src"), &registry.host, &ns, &[]).ok("publish");
    // One package for both: the published tarball carries an aiida-init per machine.
    let repository = format!("{ns}/aiida-services");
    let manifest: serde_json::Value = serde_json::from_str(
        &registry
            .manifest(&repository, "latest")
            .expect("a manifest"),
    )
    .unwrap();
    let tar = registry.blob(
        &repository,
        manifest["layers"][0]["digest"].as_str().unwrap(),
    );
    let names: Vec<String> = tar_entries(&tar).into_iter().map(|e| e.name).collect();
    for binary in ["./aiida-init-x86_64", "./aiida-init-aarch64"] {
        assert!(
            names.contains(&binary.to_owned()),
            "{binary} not in {names:?}"
        );
    }

    {
        let expected = if machine == "x86_64" {
            "amd64"
        } else {
            "arm64"
        };
        crate::support::require(
            image_architecture(image).as_deref() == Some(expected),
            &format!(
                "the {expected} base image {image} (`bash scripts/bootstrap.sh{}`, as root)",
                if expected == "arm64" { " --arm64" } else { "" }
            ),
        );
        let config = format!(
            r#"{{
                "image": "{image}",
                "features": {{ "{host}/{ns}/aiida-services:0": {{ "waitTimeout": "600" }} }}
            }}"#,
            host = registry.host
        );
        let ws = Workspace::with_config(&config);
        let turn = feature_builds();
        let up = ws.devcontainer(&["up", "--no-lockfile"]);
        drop(turn);
        assert!(
            up.status.success(),
            "{image}: devcontainer up failed:\n{}\n{}",
            String::from_utf8_lossy(&up.stdout),
            String::from_utf8_lossy(&up.stderr)
        );
        // postStartCommand has waited for the services; check them once more, generously.
        let exec = ws.devcontainer(&[
            "exec",
            "bash",
            "-c",
            "uname -m; aiida-init --version; /usr/local/share/aiida-services/wait 600 \
             && /usr/local/share/aiida-services/root/etc/init/rabbitmq-check && echo amqp-answers",
        ]);
        let out = String::from_utf8_lossy(&exec.stdout).to_string();
        assert!(
            exec.status.success(),
            "{image}: the services are not ready:\n{out}\n{}",
            String::from_utf8_lossy(&exec.stderr)
        );
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.first(), Some(&machine), "{image}: {out}");
        assert!(
            lines.get(1).is_some_and(|l| l.starts_with("aiida-init ")),
            "{image}: aiida-init --version: {out}"
        );
        assert!(
            out.contains("PostgreSQL and RabbitMQ are ready") && out.contains("amqp-answers"),
            "{image}: {out}"
        );
    }
}

#[test]
fn the_published_services_feature_runs_on_amd64() {
    if skip_without(&[Need::Docker]) {
        return;
    }
    the_published_services_feature_comes_up_on(
        &base_for(aiida_devc::platform::Platform::Amd64),
        "x86_64",
    );
}

/// The local base image of `platform` (`debian:bookworm`, or `debian:bookworm-arm64` for the
/// platform that is not the host's), as `scripts/bootstrap.sh --arm64` names them.
fn base_for(platform: aiida_devc::platform::Platform) -> String {
    aiida_devc::image::naming::local_base_image("debian:bookworm", platform)
}

/// Slow on an x86_64 host: the Feature's apt-get install runs under qemu (10 to 40 minutes, with
/// the machine's load); native on an arm64 host.
#[test]
fn the_published_services_feature_runs_on_arm64_under_emulation() {
    if skip_without(&[Need::Docker]) {
        return;
    }
    the_published_services_feature_comes_up_on(
        &base_for(aiida_devc::platform::Platform::Arm64),
        "aarch64",
    );
}

#[test]
fn prebuilt_aiida_init_binaries_are_checked_and_used_for_their_platform() {
    use aiida_devc::collection::bundle::{elf_platform, file_name};
    use aiida_devc::platform::Platform;
    let (_dir, features) = scratch_copy("features");
    let src = features.join("src");
    let out = features.join("out");
    let package = |given: &[&Path]| {
        let mut args = vec![
            "features".to_owned(),
            "package".into(),
            src.display().to_string(),
            "-o".into(),
            out.display().to_string(),
        ];
        for file in given {
            args.push("--aiida-init".into());
            args.push(file.display().to_string());
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        aiida_devc(&args, &[])
    };

    let script = features.join("not-a-binary");
    write(&script, "#!/bin/sh\necho I am not aiida-init\n");
    let run = package(&[&script]);
    assert!(!run.success, "a shell script was bundled as aiida-init");
    assert!(
        run.stderr.contains(&format!(
            "--aiida-init {} is not an executable for linux/amd64 or linux/arm64",
            script.display()
        )),
        "{}",
        run.stderr
    );
    assert!(!out.exists(), "a package was written");

    // A prebuilt amd64 binary (made distinct by a trailing byte) is bundled as it is; the arm64
    // one, not given, is built.
    let built = aiida_devc::host::aiida_init::build_static(
        &crate::support::project_root(),
        Platform::Amd64,
        false,
    )
    .expect("aiida-init builds for linux/amd64");
    let mut bytes = std::fs::read(built).unwrap();
    bytes.push(0);
    let prebuilt = features.join("aiida-init-prebuilt");
    std::fs::write(&prebuilt, &bytes).unwrap();
    let run = package(&[&prebuilt]);
    assert!(run.success, "{}", run.stderr);
    let folder = src.join("aiida-services");
    assert_eq!(
        std::fs::read(folder.join(file_name(Platform::Amd64))).unwrap(),
        bytes
    );
    let arm = std::fs::read(folder.join(file_name(Platform::Arm64))).unwrap();
    assert_eq!(elf_platform(&arm), Some(Platform::Arm64));

    let run = package(&[&prebuilt, &prebuilt]);
    assert!(!run.success);
    assert!(
        run.stderr
            .contains("--aiida-init was given twice for linux/amd64"),
        "{}",
        run.stderr
    );
}

/// The aiida-core Feature pip-installs aiida-core on linux/arm64 too, where an image has no
/// compiler: every dependency must come as a wheel for aarch64 (or pure Python). pip resolves the
/// whole tree for that platform without installing anything.
#[test]
fn aiida_core_and_its_dependencies_have_wheels_for_arm64() {
    let dir = tempfile::tempdir().unwrap();
    let mut command = std::process::Command::new("python3");
    command.args([
        "-m",
        "pip",
        "download",
        "--quiet",
        "--disable-pip-version-check",
        "--only-binary=:all:",
        "--platform",
        "manylinux_2_28_aarch64",
        "--platform",
        "manylinux2014_aarch64",
        // Debian 12's Python, the Feature's tested image.
        "--python-version",
        "3.11",
        "--dest",
        dir.path().to_str().unwrap(),
        "aiida-core",
    ]);
    if let Some(ca) = crate::support::ca_bundle() {
        let pem = dir.path().join("ca.pem");
        std::fs::write(&pem, &ca.pem).unwrap();
        command.env("PIP_CERT", &pem);
    }
    let out = command
        .output()
        .expect("python3 -m pip (bash scripts/bootstrap.sh installs python3-pip)");
    assert!(
        out.status.success(),
        "aiida-core cannot be installed from wheels on linux/arm64:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let wheels: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".whl"))
        .collect();
    assert!(
        wheels.iter().any(|w| w.starts_with("aiida_core-")),
        "{wheels:?}"
    );
    // The compiled ones are for aarch64, not just pure Python that happens to resolve.
    assert!(wheels.iter().any(|w| w.contains("aarch64")), "{wheels:?}");
}

/// install.sh picks the binary by `uname -m` and names any machine it has none for.
#[test]
fn the_services_install_script_refuses_a_machine_it_has_no_aiida_init_for() {
    if skip_without(&[Need::Docker]) {
        return;
    }
    let harness = crate::support::Harness::new();
    harness.require_image(&crate::support::base_image());
    let (_dir, features) = scratch_copy("features");
    let folder = features.join("src/aiida-services");
    // A uname that says riscv64, first on PATH; install.sh stops before installing anything.
    write(
        &features.join("fake-bin/uname"),
        "#!/bin/sh\n[ \"$1\" = -m ] && echo riscv64 || /bin/uname \"$@\"\n",
    );
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        features.join("fake-bin/uname"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    let name = crate::support::unique_name("publish-uname");
    let out = std::process::Command::new("docker")
        .args(["run", "--rm", "--name", &name, "-v"])
        .arg(format!("{}:/feature:ro", folder.display()))
        .arg("-v")
        .arg(format!(
            "{}:/fake-bin:ro",
            features.join("fake-bin").display()
        ))
        .args([
            "-e",
            "PATH=/fake-bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            &crate::support::base_image(),
            "sh",
            "/feature/install.sh",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("(!) aiida-services: this Feature supports linux/amd64 (x86_64) and linux/arm64 (aarch64) only, not 'riscv64'."),
        "{stderr}"
    );
}

/// A stand-in for aiida-init that packaging accepts for `platform` (only its ELF header is read),
/// so that a test that packages the aiida-services Feature need not cross-compile.
fn fake_aiida_init(dir: &Path, platform: aiida_devc::platform::Platform) -> std::path::PathBuf {
    let mut bytes = vec![0u8; 64];
    bytes[..4].copy_from_slice(b"\x7fELF");
    bytes[4] = 2; // 64-bit
    bytes[5] = 1; // little-endian
    let machine: u16 = match platform {
        aiida_devc::platform::Platform::Amd64 => 62,
        aiida_devc::platform::Platform::Arm64 => 183,
    };
    bytes[18..20].copy_from_slice(&machine.to_le_bytes());
    let path = dir.join(format!(
        "fake-{}",
        aiida_devc::collection::bundle::file_name(platform)
    ));
    std::fs::write(&path, bytes).unwrap();
    path
}

/// The packaged aiida-services Feature (packaged from a scratch copy of `features/`, with stand-ins
/// for aiida-init), as tar entries.
fn packaged_services_feature() -> Vec<crate::support::collections::TarEntry> {
    let (_dir, features) = scratch_copy("features");
    let out = features.join("out");
    let fakes: Vec<String> = aiida_devc::platform::Platform::ALL
        .into_iter()
        .map(|p| fake_aiida_init(&features, p).display().to_string())
        .collect();
    let src = features.join("src").display().to_string();
    let out_arg = out.display().to_string();
    let mut args = vec!["features", "package", &src, "-o", &out_arg];
    for fake in &fakes {
        args.extend(["--aiida-init", fake]);
    }
    aiida_devc(&args, &[]).ok("aiida-devc features package");
    tar_entries(&std::fs::read(out.join("devcontainer-feature-aiida-services.tgz")).unwrap())
}

/// The regular files of `entries` below `prefix`: path -> (mode, content).
fn files_below(
    entries: &[crate::support::collections::TarEntry],
    prefix: &str,
) -> std::collections::BTreeMap<String, (u32, Vec<u8>)> {
    entries
        .iter()
        .filter(|e| !e.directory)
        .filter_map(|e| {
            let path = e.name.strip_prefix(prefix)?;
            Some((path.to_owned(), (e.mode & 0o777, e.content.clone())))
        })
        .collect()
}

/// Entries outside `shared` that define one of `services` (a service directory, a run or check
/// script) or RabbitMQ's configuration.
fn defined_elsewhere(
    entries: &[crate::support::collections::TarEntry],
    shared: &str,
    services: &[String],
) -> Vec<String> {
    entries
        .iter()
        .filter(|e| !e.name.starts_with(shared))
        .filter(|e| {
            e.name.ends_with("/rabbitmq.conf")
                || services.iter().any(|s| {
                    e.name.contains(&format!("s6-rc.d/{s}/"))
                        || e.name.ends_with(&format!("init/{s}-run"))
                        || e.name.ends_with(&format!("init/{s}-check"))
                })
        })
        .map(|e| e.name.clone())
        .collect()
}

/// One source for each service: the files of PostgreSQL's and RabbitMQ's services (definitions,
/// scripts, RabbitMQ's configuration) that the aiida-core-with-services image's build context
/// gets are exactly those the packaged aiida-services Feature carries, with the same modes; and
/// neither defines one of those services anywhere else. The daemon service's files the Feature
/// carries are the aiida-core images' own. No Docker needed.
#[test]
fn the_image_and_the_services_feature_ship_the_same_services() {
    use aiida_devc::collection::bundle::SERVICES;
    use aiida_devc::image::context::{SHARED_SERVICES, image_archive};
    use std::os::unix::fs::PermissionsExt;
    let dockerfiles = crate::support::project_root().join("Dockerfiles");
    let context =
        tar_entries(&image_archive(&dockerfiles, "aiida-core-with-services", &[]).unwrap());
    let package = packaged_services_feature();
    let image = files_below(&context, &format!("{SHARED_SERVICES}/"));
    let feature = files_below(&package, &format!("./{SERVICES}/"));
    let services: Vec<String> = std::fs::read_dir(
        dockerfiles
            .join(SHARED_SERVICES)
            .join("etc/s6-overlay/s6-rc.d"),
    )
    .unwrap()
    .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
    .collect();
    assert!(
        services.contains(&"postgresql".to_owned()) && services.contains(&"rabbitmq".to_owned()),
        "{services:?}"
    );
    for needed in [
        "etc/init/rabbitmq-check",
        "etc/init/services-wait",
        "etc/aiida/rabbitmq/rabbitmq.conf",
        "etc/s6-overlay/s6-rc.d/rabbitmq/data/check",
    ] {
        assert!(
            image.contains_key(needed),
            "the image context lacks {needed}"
        );
    }
    let differing: Vec<&String> = image
        .keys()
        .chain(feature.keys())
        .filter(|path| image.get(*path) != feature.get(*path))
        .collect();
    assert!(
        differing.is_empty(),
        "the image and the aiida-services Feature disagree on {differing:?}"
    );
    assert_eq!(
        defined_elsewhere(&context, &format!("{SHARED_SERVICES}/"), &services),
        Vec::<String>::new(),
        "the with-services image defines a shared service outside Dockerfiles/{SHARED_SERVICES}"
    );
    assert_eq!(
        defined_elsewhere(&package, &format!("./{SERVICES}/"), &services),
        Vec::<String>::new(),
        "the aiida-services Feature defines a shared service outside its {SERVICES}/ copy"
    );
    // And both install it.
    let dockerfile =
        std::fs::read_to_string(dockerfiles.join("aiida-core-with-services/Dockerfile")).unwrap();
    for copy in [
        "COPY services/etc/s6-overlay/ /etc/s6-overlay/",
        "COPY services/etc/init/ /etc/init/",
        "COPY services/etc/aiida/rabbitmq/ /etc/aiida/rabbitmq/",
    ] {
        assert!(dockerfile.contains(copy), "the Dockerfile lacks `{copy}`");
    }
    // The daemon service the Feature runs for the aiida-core Feature's profile is the images' own.
    use aiida_devc::collection::bundle::{DAEMON, DAEMON_FILES};
    let daemon = files_below(&package, &format!("./{DAEMON}/"));
    let base = dockerfiles.join("aiida-core-base");
    for file in DAEMON_FILES {
        let path = base.join(file);
        let expected = (
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            std::fs::read(&path).unwrap(),
        );
        assert_eq!(
            daemon.get(*file),
            Some(&expected),
            "the aiida-services Feature's {DAEMON}/{file} is not Dockerfiles/aiida-core-base/{file}"
        );
    }
    assert_eq!(daemon.len(), DAEMON_FILES.len(), "{:?}", daemon.keys());
    let install = package
        .iter()
        .find(|e| e.name == "./install.sh")
        .map(|e| String::from_utf8_lossy(&e.content).into_owned())
        .unwrap_or_default();
    assert!(
        install.contains(r#"cp -R "$HERE/services/etc" "$SHARE/root/etc""#),
        "install.sh does not install the shared services"
    );
}
