//! The daemon service's Python (`/etc/init/aiida-daemon` and its compatibility module
//! `/etc/init/aiida_daemon_compat.py`) under its unit tests, `tests/python` (pytest), inside the
//! built aiida-core-base image: once with the image's aiida-core, once with the oldest aiida-core
//! the images claim to support (Dockerfiles/README.md), installed by uv into a fresh virtual
//! environment. Each case first runs the compatibility check that the image build runs. pytest
//! comes from PyPI (with the CA bundle option); the tests are mounted read-only.

use crate::support::images::{Container, Start, base_image};
use crate::support::{Harness, Need, project_root, skip_without};

/// The oldest aiida-core release the images claim to support (Dockerfiles/README.md).
const OLDEST_AIIDA: &str = "2.7.5";

/// pytest for the tests, from PyPI.
const PYTEST: &str = "pytest>=8,<10";

/// Runs `script` (bash, `set -e`) in a container of the base image with tests/python at /tests;
/// fails with its whole output unless it succeeds with every test passed and none skipped.
fn pytest_in_base_image(script: &str) {
    let h = Harness::new();
    let ca_dir = tempfile::tempdir().unwrap();
    let tests = project_root().join("tests/python");
    let c = Container::start(
        &h,
        &base_image(),
        Start {
            // Nothing may be written next to the tests: no bytecode, no pytest cache.
            env: vec!["PYTHONDONTWRITEBYTECODE=1".into()],
            volumes: vec![format!("{}:/tests:ro", tests.display())],
            entrypoint: Some("sleep".into()),
            cmd: vec!["infinity".into()],
            ..Start::default()
        }
        .with_ca_bundle(ca_dir.path()),
    );
    let (code, out) = c.exec(&["bash", "-c", &format!("set -e\n{script}")]);
    println!("{out}");
    assert_eq!(code, 0, "the daemon service's Python tests failed:\n{out}");
    assert!(
        out.contains("every internal the daemon service uses is there"),
        "no compatibility check:\n{out}"
    );
    assert!(
        out.contains(" passed") && !out.contains(" skipped") && !out.contains(" failed"),
        "not every test ran and passed:\n{out}"
    );
}

/// The command that runs the tests with `python`.
fn pytest(python: &str) -> String {
    format!(
        "{python} /etc/init/aiida_daemon_compat.py --check\n\
         {python} -m pytest -p no:cacheprovider -q -rs /tests"
    )
}

#[test]
fn the_daemon_services_python_tests_pass_with_the_images_aiida_core() {
    if skip_without(&[Need::Docker]) {
        return;
    }
    // pip installs into the user site of the throwaway container (/opt/aiida/pip.conf).
    pytest_in_base_image(&format!(
        "python -m pip install --quiet --disable-pip-version-check '{PYTEST}'\n{}",
        pytest("python")
    ));
}

#[test]
fn the_daemon_services_python_tests_pass_with_the_oldest_supported_aiida_core() {
    if skip_without(&[Need::Docker]) {
        return;
    }
    pytest_in_base_image(&format!(
        "uv venv --quiet --python /usr/bin/python3 /tmp/oldest\n\
         VIRTUAL_ENV=/tmp/oldest uv pip install --quiet --compile-bytecode 'aiida-core=={OLDEST_AIIDA}' '{PYTEST}'\n\
         /tmp/oldest/bin/python -c 'import aiida; assert aiida.__version__ == \"{OLDEST_AIIDA}\", aiida.__version__'\n{}",
        pytest("/tmp/oldest/bin/python")
    ));
}
