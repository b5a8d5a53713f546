//! `aiida-devc doctor`: one test per misconfiguration that silently breaks AiiDA in a dev
//! container, each against the real engine where the check needs an image (its label, its
//! architecture, its users), plus the clean case.

use crate::support::{Need, skip_without};
use std::fs;
use std::io::Write;
use std::path::Path;

use crate::support::copy_tree;
use crate::support::plugin_workspace::{aiida_devc, sample_plugin, text};
use crate::support::{Harness, base_image, unique_name};
use aiida_devc::oci::artifact::sha256_digest;
use bollard::query_parameters::{CommitContainerOptions, ImportImageOptions};
use futures_util::StreamExt;

const CONFIG: &str = ".devcontainer/devcontainer.json";

/// A copy of the sample plugin with `config` as its devcontainer.json.
fn workspace(config: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    copy_tree(&sample_plugin(), dir.path());
    fs::write(dir.path().join(CONFIG), config).unwrap();
    dir
}

/// `doctor` with the CA bundle option off, so that findings do not depend on this machine's proxy.
/// Its whole output (exit status, stdout, stderr) is checked against the snapshot `name`, with
/// the workspace's path and the test's image names replaced by placeholders.
fn doctor(dir: &Path, name: &str) -> (bool, String) {
    let out = aiida_devc(dir, &["--ca-cert", "none", "doctor", "."], &[]);
    let all = text(&out.stdout) + &text(&out.stderr);
    let shown = format!(
        "success: {}\n--- stdout ---\n{}--- stderr ---\n{}",
        out.status.success(),
        text(&out.stdout),
        text(&out.stderr)
    );
    insta::assert_snapshot!(name, filtered(&shown, dir));
    (out.status.success(), all)
}

/// `output` without what varies between runs: the workspace's path and the unique names the
/// tests give their images (`aiida-devc-test-WHAT-PID-N`).
fn filtered(output: &str, dir: &Path) -> String {
    let canonical = dir.canonicalize().unwrap_or_else(|_| dir.to_owned());
    let mut out = output
        .replace(&canonical.display().to_string(), "[WORKSPACE]")
        .replace(&dir.display().to_string(), "[WORKSPACE]");
    // Which engine, and why, depends on the machine (DOCKER_HOST, a context, a socket).
    if let Some(start) = out.find("Docker engine: ") {
        let end = start + out[start..].find('\n').unwrap_or(out.len() - start);
        out.replace_range(start..end, "Docker engine: [ENDPOINT]");
    }
    while let Some(start) = out.find("aiida-devc-test-") {
        let rest = &out[start + "aiida-devc-test-".len()..];
        let end = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
            .unwrap_or(rest.len());
        let what = rest[..end]
            .trim_end_matches(|c: char| c.is_ascii_digit() || c == '-')
            .to_owned();
        out.replace_range(
            start..start + "aiida-devc-test-".len() + end,
            &format!("[TEST-{what}]"),
        );
    }
    out
}

/// A config like the one init writes, around `image`, with `extra` top-level keys.
fn config_for(image: &str, extra: &str) -> String {
    format!(
        r#"{{
  "image": "{image}",
  "overrideCommand": false,
  "remoteUser": "aiida",{extra}
  "mounts": [{{ "source": "aiida-home-${{devcontainerId}}", "target": "/home/aiida", "type": "volume" }}]
}}
"#
    )
}

/// An image made from the base image with a user `aiida` (UID 1000), the way the AiiDA images
/// have one, an `/init` entry point and `label` as its devcontainer.metadata.
fn image_with_aiida_user(h: &Harness, label: Option<&str>) -> String {
    let name = unique_name("aiida-user");
    let container = unique_name("useradd");
    h.track_container(&container);
    h.require_image(&base_image());
    h.block_on(async {
        let body = bollard::models::ContainerCreateBody {
            image: Some(base_image()),
            cmd: Some(vec![
                "useradd".into(),
                "-m".into(),
                "-u".into(),
                "1000".into(),
                "aiida".into(),
            ]),
            ..Default::default()
        };
        let create = bollard::query_parameters::CreateContainerOptions {
            name: Some(container.clone()),
            ..Default::default()
        };
        h.docker()
            .create_container(Some(create), body)
            .await
            .expect("create");
        h.docker()
            .start_container(
                &container,
                None::<bollard::query_parameters::StartContainerOptions>,
            )
            .await
            .expect("start");
        let mut wait = h.docker().wait_container(
            &container,
            None::<bollard::query_parameters::WaitContainerOptions>,
        );
        let status = wait.next().await.expect("wait").expect("useradd failed");
        assert_eq!(status.status_code, 0);
    });
    let latest = container.clone();
    let mut labels = std::collections::HashMap::new();
    if let Some(label) = label {
        labels.insert("devcontainer.metadata".to_string(), label.to_string());
    }
    let config = bollard::models::ContainerConfig {
        user: Some("aiida".into()),
        entrypoint: Some(vec!["/init".into()]),
        labels: Some(labels),
        ..Default::default()
    };
    let opts = CommitContainerOptions {
        container: Some(latest),
        repo: Some(name.clone()),
        tag: Some("test".into()),
        ..Default::default()
    };
    h.block_on(h.docker().commit_container(opts, config))
        .expect("commit");
    let image = format!("{name}:test");
    h.track_image(&image);
    image
}

/// A one-file image whose config says it is built for arm64 (on an amd64 host) or amd64
/// (elsewhere), loaded from a hand-made `docker save` archive.
fn image_for_other_architecture(h: &Harness) -> (String, &'static str) {
    use aiida_devc::platform::Platform;
    let other = Platform::ALL
        .into_iter()
        .find(|p| *p != Platform::host())
        .expect("a platform other than the host's")
        .architecture();
    let name = format!("{}:test", unique_name("foreign-arch"));
    let mut layer = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    let content = b"foreign\n";
    header.set_size(content.len() as u64);
    header.set_mode(0o644);
    header.set_cksum();
    layer
        .append_data(&mut header, "marker", &content[..])
        .unwrap();
    let layer = layer.into_inner().unwrap();
    let diff_id = sha256_digest(&layer);
    let config = serde_json::json!({
        "architecture": other, "os": "linux",
        "config": {"User": "aiida", "Entrypoint": ["/init"]},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
    })
    .to_string();
    let config_name = format!(
        "{}.json",
        sha256_digest(config.as_bytes()).trim_start_matches("sha256:")
    );
    let manifest =
        serde_json::json!([{"Config": config_name, "RepoTags": [name], "Layers": ["layer/layer.tar"]}])
            .to_string();
    let mut archive = tar::Builder::new(Vec::new());
    for (path, data) in [
        (config_name.as_str(), config.as_bytes()),
        ("layer/layer.tar", &layer[..]),
        ("manifest.json", manifest.as_bytes()),
    ] {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        archive.append_data(&mut header, path, data).unwrap();
    }
    let mut bytes = archive.into_inner().unwrap();
    bytes.flush().unwrap();
    let body = bollard::body_full(bytes.into());
    h.block_on(async {
        let mut stream = h
            .docker()
            .import_image(ImportImageOptions::default(), body, None);
        while let Some(item) = stream.next().await {
            item.expect("docker load of the hand-made image");
        }
    });
    h.track_image(&name);
    (name, other)
}

#[test]
fn a_config_as_init_writes_it_has_no_problem_on_a_matching_image() {
    if skip_without(&[Need::Docker]) {
        return;
    }
    let h = Harness::new();
    let image = image_with_aiida_user(
        &h,
        Some(r#"[{"overrideCommand": false, "remoteUser": "aiida"}]"#),
    );
    let dir = workspace(&config_for(&image, ""));
    crate::support::plugin_workspace::chown_tree(dir.path(), 1000, 1000);
    let (ok, out) = doctor(
        dir.path(),
        "a_config_as_init_writes_it_has_no_problem_on_a_matching_image",
    );
    assert!(ok, "{out}");
    assert!(out.contains("✔ no problems found"), "{out}");
}

#[test]
fn override_command_true_on_an_image_with_init_is_found() {
    if skip_without(&[Need::Docker]) {
        return;
    }
    let h = Harness::new();
    let image = image_with_aiida_user(
        &h,
        Some(r#"[{"overrideCommand": false, "remoteUser": "aiida"}]"#),
    );
    let config =
        config_for(&image, "").replace("\"overrideCommand\": false", "\"overrideCommand\": true");
    let dir = workspace(&config);
    crate::support::plugin_workspace::chown_tree(dir.path(), 1000, 1000);
    let (ok, out) = doctor(
        dir.path(),
        "override_command_true_on_an_image_with_init_is_found",
    );
    assert!(!ok, "{out}");
    assert!(
        out.contains("✘ [override-command] overrideCommand is true"),
        "{out}"
    );
    assert!(
        out.contains("at ./.devcontainer/devcontainer.json:3:3"),
        "{out}"
    );
    assert!(out.contains("fix: set \"overrideCommand\": false"), "{out}");
}

#[test]
fn unset_override_command_on_an_image_without_the_label_is_found() {
    if skip_without(&[Need::Docker]) {
        return;
    }
    let h = Harness::new();
    let image = image_with_aiida_user(&h, None);
    let config = config_for(&image, "").replace("  \"overrideCommand\": false,\n", "");
    let dir = workspace(&config);
    crate::support::plugin_workspace::chown_tree(dir.path(), 1000, 1000);
    let (ok, out) = doctor(
        dir.path(),
        "unset_override_command_on_an_image_without_the_label_is_found",
    );
    assert!(!ok, "{out}");
    assert!(
        out.contains("✘ [override-command] overrideCommand is not set"),
        "{out}"
    );
}

#[test]
fn an_image_for_another_architecture_is_found() {
    if skip_without(&[Need::Docker]) {
        return;
    }
    let h = Harness::new();
    let (image, other) = image_for_other_architecture(&h);
    let dir = workspace(&config_for(&image, ""));
    let (ok, out) = doctor(dir.path(), "an_image_for_another_architecture_is_found");
    assert!(!ok, "{out}");
    assert!(
        out.contains(&format!(
            "✘ [architecture] the image {image} is built for {other}"
        )),
        "{out}"
    );
}

#[test]
fn no_volume_on_the_home_is_found_and_a_bind_mount_too() {
    if skip_without(&[Need::Docker]) {
        return;
    }
    let dir = workspace(
        r#"{ "image": "aiidateam/aiida-core-with-services:aiida-2.9.4", "overrideCommand": false }"#,
    );
    let (ok, out) = doctor(
        dir.path(),
        "no_volume_on_the_home_is_found_and_a_bind_mount_too",
    );
    assert!(!ok);
    assert!(
        out.contains("✘ [home-volume] no volume on /home/aiida"),
        "{out}"
    );

    let dir = workspace(
        r#"{ "image": "aiidateam/aiida-core-with-services:aiida-2.9.4", "overrideCommand": false,
             "mounts": ["source=/srv/aiida,target=/home/aiida,type=bind"] }"#,
    );
    let (ok, out) = doctor(
        dir.path(),
        "no_volume_on_the_home_is_found_and_a_bind_mount_too_2",
    );
    assert!(!ok);
    assert!(
        out.contains("✘ [home-volume] /home/aiida is bind-mounted"),
        "{out}"
    );
    assert!(
        out.contains("at ./.devcontainer/devcontainer.json:2:14"),
        "{out}"
    );
}

#[test]
fn an_aiida_core_requirement_no_image_satisfies_is_found() {
    if skip_without(&[Need::Docker]) {
        return;
    }
    let dir = workspace(&config_for(
        "aiidateam/aiida-core-with-services:aiida-2.9.4",
        "",
    ));
    let pyproject = fs::read_to_string(dir.path().join("pyproject.toml")).unwrap();
    fs::write(
        dir.path().join("pyproject.toml"),
        pyproject.replace("aiida-core>=2.6,<3", "aiida-core<2"),
    )
    .unwrap();
    let (ok, out) = doctor(
        dir.path(),
        "an_aiida_core_requirement_no_image_satisfies_is_found",
    );
    assert!(!ok);
    assert!(
        out.contains("✘ [aiida-core] no image satisfies aiida-core<2"),
        "{out}"
    );
    assert!(out.contains("at ./pyproject.toml:14:6"), "{out}");

    // An image that does not satisfy a satisfiable requirement.
    let dir = workspace(&config_for(
        "aiidateam/aiida-core-with-services:aiida-2.6.4",
        "",
    ));
    let pyproject = fs::read_to_string(dir.path().join("pyproject.toml")).unwrap();
    fs::write(
        dir.path().join("pyproject.toml"),
        pyproject.replace("aiida-core>=2.6,<3", "aiida-core>=2.8"),
    )
    .unwrap();
    let (ok, out) = doctor(
        dir.path(),
        "an_aiida_core_requirement_no_image_satisfies_is_found_2",
    );
    assert!(!ok);
    assert!(
        out.contains(
            "✘ [aiida-core] the image holds aiida-core 2.6.4, the plugin requires aiida-core>=2.8"
        ),
        "{out}"
    );
}

#[test]
fn a_uid_mismatch_the_cli_will_not_fix_is_found() {
    if skip_without(&[Need::Docker]) {
        return;
    }
    let h = Harness::new();
    let image = image_with_aiida_user(
        &h,
        Some(r#"[{"overrideCommand": false, "remoteUser": "aiida"}]"#),
    );
    // A root-owned checkout: the CLI cannot give aiida UID 0 (root has it).
    let dir = workspace(&config_for(&image, ""));
    crate::support::plugin_workspace::chown_tree(dir.path(), 0, 0);
    let (ok, out) = doctor(dir.path(), "a_uid_mismatch_the_cli_will_not_fix_is_found");
    assert!(!ok, "{out}");
    assert!(
        out.contains(
            "✘ [uid] the workspace belongs to UID 0 but aiida in the container is UID 1000"
        ),
        "{out}"
    );
    assert!(
        out.contains("the image's user root already has UID 0"),
        "{out}"
    );

    // A developer's checkout (UID 1001) with updateRemoteUserUID turned off.
    let dir = workspace(&config_for(&image, "\n  \"updateRemoteUserUID\": false,"));
    crate::support::plugin_workspace::chown_tree(dir.path(), 1001, 1001);
    let (ok, out) = doctor(dir.path(), "a_uid_mismatch_the_cli_will_not_fix_is_found_2");
    assert!(!ok, "{out}");
    assert!(out.contains("(updateRemoteUserUID is false)"), "{out}");
    // Without that setting the CLI remaps aiida to 1001 itself: no problem.
    let dir = workspace(&config_for(&image, ""));
    crate::support::plugin_workspace::chown_tree(dir.path(), 1001, 1001);
    let (ok, out) = doctor(dir.path(), "a_uid_mismatch_the_cli_will_not_fix_is_found_3");
    assert!(ok, "{out}");
}

#[test]
fn a_second_daemon_started_by_a_lifecycle_command_is_found() {
    if skip_without(&[Need::Docker]) {
        return;
    }
    let h = Harness::new();
    let image = image_with_aiida_user(
        &h,
        Some(r#"[{"overrideCommand": false, "remoteUser": "aiida"}]"#),
    );
    let config = config_for(
        &image,
        "\n  \"postCreateCommand\": \"pip install -e . && verdi daemon restart\",",
    );
    let dir = workspace(&config);
    crate::support::plugin_workspace::chown_tree(dir.path(), 1000, 1000);
    let (ok, out) = doctor(
        dir.path(),
        "a_second_daemon_started_by_a_lifecycle_command_is_found",
    );
    assert!(!ok, "{out}");
    assert!(
        out.contains("✘ [daemon] postCreateCommand runs `verdi daemon start/restart`"),
        "{out}"
    );
    assert!(
        out.contains("at ./.devcontainer/devcontainer.json:5:3"),
        "{out}"
    );
}

/// A copy of the sample plugin with the devcontainer.json and docker-compose.yml that
/// `init --variant compose` writes.
fn compose_workspace() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    copy_tree(&sample_plugin(), dir.path());
    fs::remove_dir_all(dir.path().join(".devcontainer")).unwrap();
    let out = aiida_devc(
        dir.path(),
        &["--ca-cert", "none", "init", ".", "--variant", "compose"],
        &[],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    crate::support::plugin_workspace::chown_tree(dir.path(), 1000, 1000);
    dir
}

#[test]
fn a_compose_config_as_init_writes_it_has_no_problem() {
    if skip_without(&[Need::Docker]) {
        return;
    }
    let h = Harness::new();
    // The service's image is inspected like an `image` would be: its label, architecture, users.
    h.require_image("aiidateam/aiida-core-base:aiida-2.9.4");
    let dir = compose_workspace();
    let (ok, out) = doctor(
        dir.path(),
        "a_compose_config_as_init_writes_it_has_no_problem",
    );
    assert!(ok, "{out}");
    let (engine, rest) = out.split_once('\n').unwrap();
    assert!(engine.starts_with("Docker engine: "), "{out}");
    assert_eq!(
        rest,
        "✔ no problems found (override-command, daemon, architecture, home-volume, aiida-core, uid, ca-bundle)\n"
    );
}

#[test]
fn a_compose_service_without_a_home_volume_is_found_in_the_compose_file() {
    if skip_without(&[Need::Docker]) {
        return;
    }
    let dir = compose_workspace();
    let compose = dir.path().join(".devcontainer/docker-compose.yml");
    let text = fs::read_to_string(&compose).unwrap();
    fs::write(
        &compose,
        text.replace(
            "      - aiida-home:/home/aiida\n",
            "      - ./home:/home/aiida\n",
        ),
    )
    .unwrap();
    let (ok, out) = doctor(
        dir.path(),
        "a_compose_service_without_a_home_volume_is_found_in_the_compose_file",
    );
    assert!(!ok, "{out}");
    assert!(
        out.contains(
            "✘ [home-volume] /home/aiida of the service \"aiida\" is bind-mounted from ./home"
        ),
        "{out}"
    );
    assert!(
        out.contains("at ./.devcontainer/docker-compose.yml:7:3"),
        "{out}"
    );

    fs::write(
        &compose,
        text.replace("      - aiida-home:/home/aiida\n", ""),
    )
    .unwrap();
    let (ok, out) = doctor(
        dir.path(),
        "a_compose_service_without_a_home_volume_is_found_in_the_compose_file_2",
    );
    assert!(!ok, "{out}");
    assert!(
        out.contains("✘ [home-volume] no volume on /home/aiida in the service \"aiida\""),
        "{out}"
    );
}

#[test]
fn a_compose_service_that_replaces_the_entry_point_is_found() {
    if skip_without(&[Need::Docker]) {
        return;
    }
    let h = Harness::new();
    h.require_image("aiidateam/aiida-core-base:aiida-2.9.4");
    let dir = compose_workspace();
    let compose = dir.path().join(".devcontainer/docker-compose.yml");
    let text = fs::read_to_string(&compose).unwrap();
    fs::write(
        &compose,
        text.replace(
            "    volumes:\n      - ../..",
            "    entrypoint: [\"sleep\", \"infinity\"]\n    volumes:\n      - ../..",
        ),
    )
    .unwrap();
    let (ok, out) = doctor(
        dir.path(),
        "a_compose_service_that_replaces_the_entry_point_is_found",
    );
    assert!(!ok, "{out}");
    assert!(
        out.contains(
            "✘ [override-command] the compose service sets `entrypoint: [\"sleep\",\"infinity\"]`"
        ),
        "{out}"
    );
    assert!(
        out.contains("at ./.devcontainer/docker-compose.yml:9:5"),
        "{out}"
    );
}

#[test]
fn a_compose_config_naming_a_missing_service_is_an_error_with_its_location() {
    let dir = compose_workspace();
    let config = dir.path().join(CONFIG);
    let text = fs::read_to_string(&config).unwrap();
    fs::write(
        &config,
        text.replace("\"service\": \"aiida\"", "\"service\": \"app\""),
    )
    .unwrap();
    let (ok, out) = doctor(
        dir.path(),
        "a_compose_config_naming_a_missing_service_is_an_error_with_its_location",
    );
    assert!(!ok, "{out}");
    assert!(
        out.contains("error: ./.devcontainer/devcontainer.json:12:3: no compose file named by dockerComposeFile defines the service \"app\""),
        "{out}"
    );
}

/// Behind a TLS-intercepting proxy (here: a CA bundle given with --ca-cert), a configuration that
/// passes no CA bundle to the container is found at its plugin install, with the fix; one that
/// mounts ${localEnv:AIIDA_DEVC_CA_CERT} is found when that variable is not set.
#[test]
fn a_proxy_without_a_ca_bundle_in_the_config_is_found_and_an_unset_ca_variable_too() {
    let dir = workspace(&config_for(
        "aiidateam/aiida-core-with-services:aiida-2.9.4",
        "\n  \"postCreateCommand\": \"pip install -e .\",",
    ));
    let ca = dir.path().join("proxy-ca.pem");
    fs::write(
        &ca,
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let run = |config_env: Option<&str>| {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_aiida-devc"));
        command
            .current_dir(dir.path())
            .args(["--ca-cert", ca.to_str().unwrap(), "doctor", "."])
            .env_remove("AIIDA_DEVC_CA_CERT");
        if let Some(value) = config_env {
            command.env("AIIDA_DEVC_CA_CERT", value);
        }
        let out = command.output().unwrap();
        (out.status.success(), text(&out.stdout) + &text(&out.stderr))
    };
    let (ok, out) = run(None);
    assert!(!ok, "{out}");
    assert!(
        out.contains("✘ [ca-bundle]")
            && out.contains("CERTIFICATE_VERIFY_FAILED")
            && out.contains("devcontainer.json:5:")
            && out.contains("fix: export AIIDA_DEVC_CA_CERT="),
        "{out}"
    );

    // With the CA bundle in the configuration (what init writes when AIIDA_DEVC_CA_CERT is set).
    let init = aiida_devc(
        dir.path(),
        &["--ca-cert", ca.to_str().unwrap(), "init", "."],
        &[],
    );
    assert!(init.status.success(), "{}", text(&init.stderr));
    let (_, out) = run(None);
    assert!(
        out.contains(
            "✘ [ca-bundle] the configuration mounts $AIIDA_DEVC_CA_CERT, which is not set here"
        ),
        "{out}"
    );
    let (_, out) = run(Some(ca.to_str().unwrap()));
    assert!(!out.contains("[ca-bundle]"), "{out}");
}
