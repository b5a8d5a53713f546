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

use crate::support::compose::{
    ComposeProject, POSTGRES_IMAGE, RABBITMQ_IMAGE, build_service_images,
};
use crate::support::copy_tree;
use crate::support::plugin_workspace::{
    CaEnv, PluginWorkspace, assert_verdi_all_green, sample_plugin,
};
use crate::support::{Need, skip_without};

#[test]
fn the_compose_variant_opens_into_aiida_with_separate_postgresql_and_rabbitmq() {
    if skip_without(&[Need::Docker]) {
        return;
    }
    let ws = PluginWorkspace::new();
    ws.harness
        .require_image("aiidateam/aiida-core-base:aiida-2.9.4");
    build_service_images();
    // Whatever happens, the project's containers, network and volumes go at the end.
    let project = ComposeProject::of_workspace(ws.path());

    copy_tree(&sample_plugin(), ws.path());
    std::fs::remove_dir_all(ws.path().join(".devcontainer")).unwrap();
    ws.commit_as_checkout("the sample plugin");

    let ca = CaEnv::of_host();
    let env = ca.vars();
    let init_out = ws.init(
        &[
            "--variant",
            "compose",
            "--postgres-image",
            POSTGRES_IMAGE,
            "--rabbitmq-image",
            RABBITMQ_IMAGE,
        ],
        &env,
    );
    assert!(
        init_out.contains("image: aiidateam/aiida-core-base:aiida-2.9.4"),
        "{init_out}"
    );
    // As where the container is opened: the variable the config mounts is set.
    ws.assert_doctor_finds_nothing(&env);

    ws.up(&env, "three containers, pip install, ready");
    assert_eq!(
        project.containers().len(),
        3,
        "expected the aiida, database and messaging containers"
    );

    let status = ws.exec(&["verdi", "status"], &env);
    assert_verdi_all_green(&status, &["storage", "broker", "daemon"]);
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
