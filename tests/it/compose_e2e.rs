//! `aiida-devc init --variant compose` end to end: the sample plugin in a fresh git repository,
//! the reference CLI's `devcontainer up` on the generated devcontainer.json and
//! docker-compose.yml, with PostgreSQL and RabbitMQ in their own containers (stand-ins built from
//! Debian's packages, passed with `--postgres-image` and `--rabbitmq-image`). AiiDA must be ready:
//! `verdi status` all ✔, the profile on core.psql_dos in the database container with the
//! RabbitMQ broker in the messaging container, the plugin installed.
//!
//! Needs the aiida-core-base image (`aiida-devc images build`, run by scripts/test.sh before the
//! tests), docker-compose, the reference CLI, and PyPI (through the CA option behind a
//! TLS-intercepting proxy) for the plugin's test extras.

use std::time::Instant;

use crate::support::compose::{
    ComposeProject, POSTGRES_IMAGE, RABBITMQ_IMAGE, build_service_images,
};
use crate::support::copy_tree;
use crate::support::plugin_workspace::{PluginWorkspace, aiida_devc, git, sample_plugin, text};

#[test]
fn the_compose_variant_opens_into_aiida_with_separate_postgresql_and_rabbitmq() {
    let ws = PluginWorkspace::new();
    ws.harness
        .require_image("aiidateam/aiida-core-base:aiida-2.9.4");
    build_service_images();
    // Whatever happens, the project's containers, network and volumes go at the end.
    let project = ComposeProject::of_workspace(ws.path());

    copy_tree(&sample_plugin(), ws.path());
    std::fs::remove_dir_all(ws.path().join(".devcontainer")).unwrap();
    git(ws.path(), &["init", "--quiet"]);
    git(ws.path(), &["add", "--all"]);
    git(
        ws.path(),
        &["commit", "--quiet", "--message", "the sample plugin"],
    );
    // A developer's own checkout: the image user's UID owns it.
    ws.chown(1000, 100);

    let ca = crate::support::ca_bundle().map(|b| b.path.to_string_lossy().into_owned());
    let env: Vec<(&str, &str)> = ca
        .iter()
        .map(|p| ("AIIDA_DEVC_CA_CERT", p.as_str()))
        .collect();
    let init = aiida_devc(
        ws.path(),
        &[
            "init",
            ".",
            "--variant",
            "compose",
            "--postgres-image",
            POSTGRES_IMAGE,
            "--rabbitmq-image",
            RABBITMQ_IMAGE,
        ],
        &env,
    );
    let init_out = text(&init.stdout);
    assert!(
        init.status.success(),
        "init failed:\n{init_out}\n{}",
        text(&init.stderr)
    );
    assert!(
        init_out.contains("image: aiidateam/aiida-core-base:aiida-2.9.4"),
        "{init_out}"
    );
    // As where the container is opened: the variable the config mounts is set.
    let doctor = aiida_devc(ws.path(), &["doctor", "."], &env);
    assert!(
        doctor.status.success(),
        "doctor finds problems in init's output:\n{}",
        text(&doctor.stdout)
    );

    let started = Instant::now();
    let up = ws.devcontainer(&["up"], &env);
    assert!(
        up.status.success(),
        "devcontainer up failed:\n{}\n{}",
        text(&up.stdout),
        text(&up.stderr)
    );
    eprintln!(
        "devcontainer up (three containers, pip install, ready): {:.1} s",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(
        project.containers().len(),
        3,
        "expected the aiida, database and messaging containers"
    );

    let status = ws.exec(&["verdi", "status"], &env);
    let components: Vec<&str> = status
        .lines()
        .filter(|l| l.contains('✔') || l.contains('✘') || l.contains('⏺'))
        .collect();
    assert!(
        components.len() >= 5,
        "verdi status is incomplete:\n{status}"
    );
    assert!(
        components.iter().all(|l| l.trim_start().starts_with('✔')),
        "verdi status is not all green:\n{status}"
    );
    for component in ["storage", "broker", "daemon"] {
        assert!(
            components.iter().any(|l| l.contains(component)),
            "no {component} line:\n{status}"
        );
    }
    // The storage is in the database container and the broker is the messaging container's.
    assert!(
        status.contains("@database:5432"),
        "the storage is not the database service:\n{status}"
    );
    assert!(
        status.contains("@messaging:5672"),
        "the broker is not the messaging service:\n{status}"
    );
    let profile = ws.exec(&["verdi", "profile", "show"], &env);
    assert!(profile.contains("core.psql_dos"), "{profile}");
    assert!(profile.contains("core.rabbitmq"), "{profile}");
    let plugins = ws.exec(&["verdi", "plugin", "list", "aiida.workflows"], &env);
    assert!(
        plugins.contains("sample.multiply_add"),
        "the plugin is not installed:\n{plugins}"
    );
}
