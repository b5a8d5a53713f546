//! `aiida-devc init` as a user runs it: a new devcontainer.json for the sample plugin, a merge
//! into a file full of the user's comments, `--dry-run`, a second run that changes nothing, and
//! the errors for bad input (file:line:column, nothing written).

use crate::support::{Need, skip_without};
use std::fs;
use std::path::Path;

use crate::support::copy_tree;
use crate::support::plugin_workspace::{aiida_devc, sample_plugin, text};

/// A copy of the sample plugin without its committed devcontainer.json.
fn fresh_sample() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    copy_tree(&sample_plugin(), dir.path());
    fs::remove_dir_all(dir.path().join(".devcontainer")).unwrap();
    dir
}

/// Whether the chosen image is present (and so its Python version known) depends on the machine:
/// snapshots do not.
fn normalise(output: &str) -> String {
    output
        .lines()
        .map(|l| {
            match l
                .find("; not present locally")
                .or_else(|| l.find("; present locally"))
            {
                Some(i) if l.starts_with("image: ") => format!("{}; [present or not]", &l[..i]),
                _ => match l.find("; the image has Python") {
                    Some(i) if l.starts_with("python: ") => l[..i].to_owned(),
                    _ => l.to_owned(),
                },
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn init(dir: &Path, args: &[&str]) -> (bool, String, String) {
    let mut all = vec!["--ca-cert", "none", "init", "."];
    all.extend_from_slice(args);
    let out = aiida_devc(dir, &all, &[]);
    (
        out.status.success(),
        normalise(&text(&out.stdout)),
        text(&out.stderr),
    )
}

const CONFIG: &str = ".devcontainer/devcontainer.json";

#[test]
fn init_writes_a_commented_config_and_a_second_run_changes_nothing() {
    let dir = fresh_sample();
    let (ok, stdout, stderr) = init(dir.path(), &[]);
    assert!(ok, "{stderr}");
    insta::assert_snapshot!("init_new_file_output", stdout);
    let first = fs::read_to_string(dir.path().join(CONFIG)).unwrap();
    insta::assert_snapshot!("init_new_file", first);

    let (ok, stdout, stderr) = init(dir.path(), &[]);
    assert!(ok, "{stderr}");
    assert!(
        stdout.ends_with("./.devcontainer/devcontainer.json is up to date."),
        "{stdout}"
    );
    assert_eq!(fs::read_to_string(dir.path().join(CONFIG)).unwrap(), first);
}

#[test]
fn the_committed_sample_config_is_what_init_writes() {
    let dir = tempfile::tempdir().unwrap();
    copy_tree(&sample_plugin(), dir.path());
    let (ok, stdout, stderr) = init(dir.path(), &[]);
    assert!(ok, "{stderr}");
    assert!(
        stdout.ends_with("is up to date."),
        "the sample's devcontainer.json is stale:\n{stdout}"
    );
}

const USER_CONFIG: &str = r#"// My team's dev container. Do not remove the comments below!
{
    /* The display name. */
    "name": "My plugin (team setup)",
    "image": "mcr.microsoft.com/devcontainers/python:3.11", // we used this before
    "forwardPorts": [8888], // jupyter
    // Extra mounts: the team's data
    "mounts": [
        "source=team-data,target=/data,type=volume",
    ],
    "customizations": {
        "vscode": {
            // keep ruff
            "extensions": ["charliermarsh.ruff"],
            "settings": {"editor.formatOnSave": true},
        },
    },
    "postCreateCommand": "pip install -e .",
}
"#;

#[test]
fn init_merges_into_a_config_full_of_comments_and_keeps_them() {
    let dir = fresh_sample();
    fs::create_dir_all(dir.path().join(".devcontainer")).unwrap();
    fs::write(dir.path().join(CONFIG), USER_CONFIG).unwrap();

    let (ok, stdout, stderr) = init(dir.path(), &["--dry-run"]);
    assert!(ok, "{stderr}");
    insta::assert_snapshot!("init_merge_dry_run_output", stdout);
    assert_eq!(
        fs::read_to_string(dir.path().join(CONFIG)).unwrap(),
        USER_CONFIG,
        "--dry-run wrote"
    );

    let (ok, _, stderr) = init(dir.path(), &[]);
    assert!(ok, "{stderr}");
    let merged = fs::read_to_string(dir.path().join(CONFIG)).unwrap();
    insta::assert_snapshot!("init_merged_file", merged);
    for kept in [
        "// My team's dev container",
        "/* The display name. */",
        "// jupyter",
        "// keep ruff",
        "\"editor.formatOnSave\": true",
        "source=team-data,target=/data,type=volume",
    ] {
        assert!(merged.contains(kept), "lost {kept:?}:\n{merged}");
    }

    let (ok, stdout, _) = init(dir.path(), &[]);
    assert!(ok);
    assert!(stdout.ends_with("is up to date."), "{stdout}");
}

#[test]
fn invalid_jsonc_is_reported_with_line_and_column_and_nothing_is_written() {
    let dir = fresh_sample();
    fs::create_dir_all(dir.path().join(".devcontainer")).unwrap();
    let broken = "{\n  // comment\n  \"image\": \"x\",\n  \"name\": [\"y\",\n}\n";
    fs::write(dir.path().join(CONFIG), broken).unwrap();
    let (ok, stdout, stderr) = init(dir.path(), &[]);
    assert!(!ok, "{stdout}");
    assert_eq!(
        stderr.trim(),
        "error: ./.devcontainer/devcontainer.json:5:1: invalid JSONC: Unexpected close brace"
    );
    assert_eq!(fs::read_to_string(dir.path().join(CONFIG)).unwrap(), broken);
}

#[test]
fn an_unreadable_pyproject_is_reported_with_line_and_column_and_nothing_is_written() {
    let dir = fresh_sample();
    let pyproject = fs::read_to_string(dir.path().join("pyproject.toml")).unwrap();
    fs::write(
        dir.path().join("pyproject.toml"),
        pyproject.replace("version = \"0.1.0\"", "version = 0.1.0"),
    )
    .unwrap();
    let (ok, _, stderr) = init(dir.path(), &[]);
    assert!(!ok);
    assert!(stderr.starts_with("error: ./pyproject.toml:7:"), "{stderr}");
    assert!(stderr.contains("invalid TOML"), "{stderr}");
    assert!(
        !dir.path().join(".devcontainer").exists(),
        "something was written"
    );
}

#[test]
fn a_requirement_no_image_satisfies_is_an_error_that_says_what_exists() {
    let dir = fresh_sample();
    let pyproject = fs::read_to_string(dir.path().join("pyproject.toml")).unwrap();
    fs::write(
        dir.path().join("pyproject.toml"),
        pyproject.replace("aiida-core>=2.6,<3", "aiida-core~=1.6"),
    )
    .unwrap();
    let (ok, _, stderr) = init(dir.path(), &[]);
    assert!(!ok);
    assert_eq!(
        stderr.trim(),
        "error: ./pyproject.toml: no image satisfies aiida-core~=1.6: images exist for aiida-core 2.6.0 to 2.9.4 \
         (the built-in list: the tags of docker.io/aiidateam/aiida-core-with-services could not be read). \
         Pick an image with --image, or relax the requirement"
    );
    assert!(!dir.path().join(".devcontainer").exists());
}

#[test]
fn a_setup_cfg_plugin_with_a_ca_bundle_gets_the_ca_mount_without_a_host_path() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(
        dir.path().join("setup.cfg"),
        "[metadata]\nname = aiida-legacy\n[options]\ninstall_requires =\n    aiida-core>=2.0,<2.8\n[options.extras_require]\ntesting =\n    pytest\n",
    )
    .unwrap();
    let ca = dir.path().join("proxy-ca.pem");
    fs::write(
        &ca,
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let out = aiida_devc(
        dir.path(),
        &["init", ".", "--ca-cert", ca.to_str().unwrap()],
        &[],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let config = fs::read_to_string(dir.path().join(CONFIG)).unwrap();
    insta::assert_snapshot!("init_setup_cfg_with_ca", config);
    assert!(
        !config.contains(dir.path().to_str().unwrap()),
        "a host path was written"
    );
}

#[test]
fn a_dockerfile_config_is_refused_with_its_location() {
    let dir = fresh_sample();
    fs::create_dir_all(dir.path().join(".devcontainer")).unwrap();
    fs::write(
        dir.path().join(CONFIG),
        "{\n  \"build\": {\"dockerfile\": \"Dockerfile\"}\n}\n",
    )
    .unwrap();
    let (ok, _, stderr) = init(dir.path(), &[]);
    assert!(!ok);
    assert!(
        stderr.starts_with(
            "error: ./.devcontainer/devcontainer.json:2:3: this configuration uses `build`"
        ),
        "{stderr}"
    );
}

#[test]
fn the_lite_variant_uses_the_base_image_and_says_so() {
    let dir = fresh_sample();
    let (ok, stdout, stderr) = init(dir.path(), &["--variant", "lite"]);
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("image: aiidateam/aiida-core-base:aiida-2.9.4 (aiida-core 2.9.4 satisfies"),
        "{stdout}"
    );
    let config = fs::read_to_string(dir.path().join(CONFIG)).unwrap();
    let lite_comment = "  // The image, picked by `aiida-devc init` from the plugin's requirements:\n  \
                        // aiida-core-base: AiiDA without PostgreSQL and RabbitMQ,\n  \
                        // with aiida-core 2.9.4, the newest release that satisfies aiida-core>=2.6, <3.\n  \
                        \"image\": \"aiidateam/aiida-core-base:aiida-2.9.4\",";
    assert!(config.contains(lite_comment), "{config}");
    // Switching back updates only the image, and the comment aiida-devc wrote above it.
    let (ok, stdout, _) = init(dir.path(), &[]);
    assert!(ok);
    assert!(
        stdout.contains("updated ./.devcontainer/devcontainer.json: updated image."),
        "{stdout}"
    );
    let back = fs::read_to_string(dir.path().join(CONFIG)).unwrap();
    assert!(
        back.contains(
            "  // aiida-core-with-services: PostgreSQL, RabbitMQ and AiiDA in one container,\n"
        ),
        "{back}"
    );
    assert!(!back.contains("aiida-core-base"), "{back}");
    let fresh = fresh_sample();
    init(fresh.path(), &[]);
    assert_eq!(
        back,
        fs::read_to_string(fresh.path().join(CONFIG)).unwrap(),
        "differs from a fresh init"
    );
}

#[test]
fn a_python_requirement_the_local_image_does_not_meet_is_a_warning() {
    if skip_without(&[Need::Docker]) {
        return;
    }
    let h = crate::support::Harness::new();
    h.require_image("aiidateam/aiida-core-with-services:aiida-2.9.4");
    let dir = fresh_sample();
    let pyproject = fs::read_to_string(dir.path().join("pyproject.toml")).unwrap();
    fs::write(
        dir.path().join("pyproject.toml"),
        pyproject.replace(">=3.9", ">=3.99"),
    )
    .unwrap();
    let out = aiida_devc(dir.path(), &["--ca-cert", "none", "init", "."], &[]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        stdout.contains("warning: the plugin requires Python >=3.99 but the image has Python 3."),
        "{stdout}"
    );
}

const COMPOSE: &str = ".devcontainer/docker-compose.yml";

#[test]
fn the_compose_variant_writes_the_config_and_the_compose_file_and_a_second_run_changes_nothing() {
    let dir = fresh_sample();
    let images = [
        "--variant",
        "compose",
        "--postgres-image",
        "local/postgres:15",
        "--rabbitmq-image",
        "local/rabbitmq:3.10",
    ];
    let (ok, stdout, stderr) = init(dir.path(), &images);
    assert!(ok, "{stderr}");
    insta::assert_snapshot!("init_compose_output", stdout);
    let config = fs::read_to_string(dir.path().join(CONFIG)).unwrap();
    insta::assert_snapshot!("init_compose_config", config);
    let compose = fs::read_to_string(dir.path().join(COMPOSE)).unwrap();
    insta::assert_snapshot!("init_compose_file", compose);

    let (ok, stdout, stderr) = init(dir.path(), &images);
    assert!(ok, "{stderr}");
    assert!(
        stdout.ends_with("./.devcontainer/docker-compose.yml is up to date.\n./.devcontainer/devcontainer.json is up to date."),
        "{stdout}"
    );
    assert_eq!(fs::read_to_string(dir.path().join(CONFIG)).unwrap(), config);
    assert_eq!(
        fs::read_to_string(dir.path().join(COMPOSE)).unwrap(),
        compose
    );
}

#[test]
fn the_compose_variant_defaults_to_the_templates_service_images() {
    let dir = fresh_sample();
    let (ok, _, stderr) = init(dir.path(), &["--variant", "compose"]);
    assert!(ok, "{stderr}");
    let compose = fs::read_to_string(dir.path().join(COMPOSE)).unwrap();
    let template: serde_json::Value = serde_json::from_str(
        &fs::read_to_string(
            crate::support::project_root()
                .join("devcontainer-templates/src/aiida-plugin-compose/devcontainer-template.json"),
        )
        .unwrap(),
    )
    .unwrap();
    for option in ["postgresImage", "rabbitmqImage"] {
        let default = template["options"][option]["default"].as_str().unwrap();
        assert!(
            compose.contains(&format!("    image: {default}\n")),
            "{option} {default}:\n{compose}"
        );
    }
}

#[test]
fn a_different_compose_file_is_refused_unless_forced_and_nothing_is_written() {
    let dir = fresh_sample();
    fs::create_dir_all(dir.path().join(".devcontainer")).unwrap();
    let mine = "# my own\nservices:\n  aiida:\n    image: mine:1\n";
    fs::write(dir.path().join(COMPOSE), mine).unwrap();
    let (ok, stdout, stderr) = init(dir.path(), &["--variant", "compose"]);
    assert!(!ok, "{stdout}");
    assert_eq!(
        stderr.trim(),
        "error: ./.devcontainer/docker-compose.yml: a different compose file is already there; `aiida-devc init` \
         does not merge compose files. Nothing was written. Run with --dry-run to see the difference, --force to \
         replace it, or remove it"
    );
    assert_eq!(fs::read_to_string(dir.path().join(COMPOSE)).unwrap(), mine);
    assert!(
        !dir.path().join(CONFIG).exists(),
        "devcontainer.json was written"
    );

    // --dry-run shows the difference and still writes nothing.
    let (ok, stdout, stderr) = init(dir.path(), &["--variant", "compose", "--dry-run"]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("-    image: mine:1\n"), "{stdout}");
    assert!(stdout.contains("would refuse to replace (it differs; --force replaces it) ./.devcontainer/docker-compose.yml."), "{stdout}");
    assert_eq!(fs::read_to_string(dir.path().join(COMPOSE)).unwrap(), mine);
    assert!(!dir.path().join(CONFIG).exists(), "--dry-run wrote");

    let (ok, stdout, stderr) = init(dir.path(), &["--variant", "compose", "--force"]);
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("replaced (--force) ./.devcontainer/docker-compose.yml."),
        "{stdout}"
    );
    let fresh = fresh_sample();
    init(fresh.path(), &["--variant", "compose"]);
    assert_eq!(
        fs::read_to_string(dir.path().join(COMPOSE)).unwrap(),
        fs::read_to_string(fresh.path().join(COMPOSE)).unwrap()
    );
}

#[test]
fn the_compose_variant_merges_into_a_config_full_of_comments() {
    let dir = fresh_sample();
    fs::create_dir_all(dir.path().join(".devcontainer")).unwrap();
    let user_config = USER_CONFIG.replace(
        "    \"image\": \"mcr.microsoft.com/devcontainers/python:3.11\", // we used this before\n",
        "",
    );
    fs::write(dir.path().join(CONFIG), &user_config).unwrap();
    let (ok, _, stderr) = init(dir.path(), &["--variant", "compose"]);
    assert!(ok, "{stderr}");
    let merged = fs::read_to_string(dir.path().join(CONFIG)).unwrap();
    insta::assert_snapshot!("init_compose_merged_file", merged);
    for kept in [
        "// My team's dev container",
        "/* The display name. */",
        "// jupyter",
        "// keep ruff",
    ] {
        assert!(merged.contains(kept), "lost {kept:?}:\n{merged}");
    }
    let (ok, stdout, _) = init(dir.path(), &["--variant", "compose"]);
    assert!(ok);
    assert!(
        stdout.ends_with("devcontainer.json is up to date."),
        "{stdout}"
    );

    // An image-based config is not silently turned into a compose one.
    fs::write(dir.path().join(CONFIG), USER_CONFIG).unwrap();
    let (ok, _, stderr) = init(dir.path(), &["--variant", "compose"]);
    assert!(!ok);
    assert!(
        stderr.starts_with("error: ./.devcontainer/devcontainer.json:5:5: this configuration uses `image`; `--variant compose`"),
        "{stderr}"
    );
    assert_eq!(
        fs::read_to_string(dir.path().join(CONFIG)).unwrap(),
        USER_CONFIG
    );
}

#[test]
fn service_image_flags_need_the_compose_variant() {
    let dir = fresh_sample();
    let (ok, _, stderr) = init(dir.path(), &["--postgres-image", "postgres:15"]);
    assert!(!ok);
    assert_eq!(
        stderr.trim(),
        "error: --postgres-image applies to `--variant compose` only"
    );
    assert!(!dir.path().join(".devcontainer").exists());
}

/// Without a CA bundle option, init warns when this machine's https goes through a
/// TLS-intercepting proxy (the host bundle holds certificates beyond Debian's stock set), since
/// the configuration it writes then makes the plugin install fail in the container; and says how
/// to fix it. `--ca-cert none` (the user's decision) and a machine without a proxy: no warning.
#[test]
fn behind_a_proxy_init_without_a_ca_bundle_says_so_and_how_to_fix_it() {
    let dir = fresh_sample();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_aiida-devc"))
        .current_dir(dir.path())
        .args(["init", "."])
        .env_remove("AIIDA_DEVC_CA_CERT")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let behind_proxy = matches!(
        aiida_devc::host::ca::Ca::resolve(None).unwrap(),
        aiida_devc::host::ca::Ca::Detected(_)
    );
    let warned =
        stdout.contains("warning: https from this machine goes through a TLS-intercepting proxy");
    assert_eq!(warned, behind_proxy, "{stdout}");
    if behind_proxy {
        let last = stdout.lines().last().unwrap_or_default();
        assert!(
            last.contains("CERTIFICATE_VERIFY_FAILED")
                && last.contains("export AIIDA_DEVC_CA_CERT=/etc/ssl/certs/ca-certificates.crt"),
            "the warning is not the last thing said, or lacks the fix:\n{stdout}"
        );
    }
    let config = fs::read_to_string(dir.path().join(CONFIG)).unwrap();
    assert!(!config.contains("AIIDA_DEVC_CA_CERT"), "{config}");

    let (ok, stdout, stderr) = init(dir.path(), &[]);
    assert!(ok, "{stderr}");
    assert!(
        !stdout.contains("warning:"),
        "--ca-cert none still warns:\n{stdout}"
    );
}
