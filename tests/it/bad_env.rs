//! Bad values in the containers' environment: a profile name with spaces or slashes, ports that
//! are not numbers, an empty email. Each gives a clear error naming the variable in
//! `aiida-init wait`, `aiida-init status` and the container log; the container stays up for
//! inspection with nothing created, and a new container with corrected variables on the same home
//! volume becomes ready.

use crate::support::{Need, skip_without};
use std::time::Duration;

use crate::support::Harness;
use crate::support::images::{
    Container, READY_TIMEOUT, Start, base_image, home_volume, with_services_image,
};

/// What `aiida-init wait` says for a container whose environment is bad (it must fail).
fn wait_fails(c: &Container) -> String {
    let timeout = READY_TIMEOUT.to_string();
    // exec fails while the init is still starting: retry a little.
    for _ in 0..50 {
        let (code, out) = c.exec(&["aiida-init", "wait", "--timeout", &timeout]);
        if out.contains("aiida-environment") {
            assert_ne!(code, 0, "wait succeeded with a bad environment:\n{out}");
            return out;
        }
        assert_ne!(code, 0, "wait succeeded with a bad environment:\n{out}");
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!(
        "aiida-init wait never named aiida-environment:\n{}",
        c.logs()
    );
}

/// The profiles in the AiiDA configuration of the container's home (none when there is none).
fn profiles(c: &Container) -> String {
    c.sh(
        "python3 -c \"import json, os; p = os.path.expanduser('~/.aiida/config.json'); \
         print(sorted(json.load(open(p)).get('profiles', {})) if os.path.exists(p) else [])\"",
    )
    .trim()
    .to_owned()
}

/// Start `image` with `bad` variables on a new home volume, check the errors (each of
/// `expected` in wait, status and the log), that the container stays up with nothing created,
/// then start a corrected container on the same volume and check it becomes ready.
fn bad_then_corrected(image: &str, bad: &[&str], expected: &[&str], rabbitmq: bool) {
    let h = Harness::new();
    let home = home_volume(&h);
    let volume = format!("{home}:/home/aiida");
    let c = Container::start(
        &h,
        image,
        Start {
            env: bad.iter().map(std::string::ToString::to_string).collect(),
            volumes: vec![volume.clone()],
            ..Start::default()
        },
    );
    let wait = wait_fails(&c);
    let (_, status) = c.exec(&["aiida-init", "status"]);
    let logs = c.logs();
    for needle in expected {
        assert!(wait.contains(needle), "wait: `{needle}` missing:\n{wait}");
        assert!(logs.contains(needle), "log: `{needle}` missing:\n{logs}");
    }
    assert!(
        status
            .lines()
            .any(|l| l.starts_with("aiida-environment") && l.contains("failed")),
        "{status}"
    );
    assert!(
        status
            .lines()
            .any(|l| l.starts_with("aiida-prepare") && l.contains("not started")),
        "the profile step ran:\n{status}"
    );
    // Still up for inspection, with nothing made from the bad values.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(c.inspect("{{.State.Running}}"), "true", "{}", c.logs());
    assert_eq!(profiles(&c), "[]");
    if rabbitmq {
        // Only the database of the image's profile template, which was in the cluster already.
        assert_eq!(
            profile_databases(&c),
            "aiida-default",
            "a database was made"
        );
    }
    c.stop();

    // The same home, the variables corrected (a valid custom profile name).
    let fixed = Container::start(
        &h,
        image,
        Start {
            env: vec!["AIIDA_PROFILE_NAME=my-profile".into()],
            volumes: vec![volume],
            ..Start::default()
        },
    );
    fixed.wait_ready();
    fixed.assert_verdi_ready(rabbitmq);
    assert_eq!(profiles(&fixed), "['my-profile']");
    if rabbitmq {
        // The template's database, unused by a profile of another name, was dropped.
        assert_eq!(profile_databases(&fixed), "aiida-my-profile");
    }
}

/// The names of the cluster's `aiida-*` databases, one per line, sorted.
fn profile_databases(c: &Container) -> String {
    c.sh("psql -h localhost -U aiida -d postgres -Atc \"SELECT datname FROM pg_database WHERE datname LIKE 'aiida-%' ORDER BY 1\"")
        .trim()
        .to_owned()
}

#[test]
fn with_services_bad_variables_fail_clearly_and_a_corrected_start_becomes_ready() {
    if skip_without(&[Need::Docker]) {
        return;
    }
    bad_then_corrected(
        &with_services_image(),
        &[
            "AIIDA_PROFILE_NAME=my/pro file",
            "AIIDA_POSTGRES_PORT=five",
            "AIIDA_BROKER_PORT=5672x",
            "AIIDA_USER_EMAIL=",
        ],
        &[
            "AIIDA_PROFILE_NAME='my/pro file' is not a usable profile name",
            "AIIDA_POSTGRES_PORT='five' is not a port number",
            "AIIDA_BROKER_PORT='5672x' is not a port number",
            "AIIDA_USER_EMAIL is set but empty",
        ],
        true,
    );
}

#[test]
fn base_bad_variables_fail_clearly_and_a_corrected_start_becomes_ready() {
    if skip_without(&[Need::Docker]) {
        return;
    }
    bad_then_corrected(
        &base_image(),
        &["AIIDA_PROFILE_NAME=with space", "AIIDA_BROKER_PORT=99999"],
        &[
            "AIIDA_PROFILE_NAME='with space' is not a usable profile name",
            "AIIDA_BROKER_PORT='99999' is not a port number",
        ],
        false,
    );
}
