//! A real AiiDA plugin that nobody here wrote, from its PyPI source distribution, opened in a
//! container exactly as VS Code would: `aiida-devc init`, then the reference CLI's
//! `devcontainer up` and `exec`. AiiDA must be ready (`verdi status` all ✔, daemon running), the
//! plugin's entry points registered, its own test suite run in the container; after `docker stop`
//! and `aiida-devc up` it is ready again with its data kept.
//!
//! The plugin is aiida-diff 2.0.0, the AiiDA team's demo plugin (its latest release, 2022). Two of
//! its four tests fail with a current aiida-core because the plugin reads
//! `metadata.options.withmpi`, which aiida-core no longer fills in; the test checks that these are
//! the only failures and that the same calculation fails the same way outside any container (a
//! virtual environment on the host with the same aiida-core, a temporary SQLite profile).
//!
//! Needs the images (`aiida-devc images build`, run by scripts/test.sh before the tests), the
//! reference CLI, and PyPI (through the CA option behind a TLS-intercepting proxy).

use crate::support::{Need, skip_without};
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use crate::support::plugin_workspace::{
    CaEnv, PluginWorkspace, aiida_devc, assert_verdi_all_green, text,
};

/// The plugin: the AiiDA team's demo plugin, with calculations, parsers, data and CLI entry points.
const PLUGIN: &str = "aiida-diff==2.0.0";
const SERVICES_IMAGE: &str = "aiidateam/aiida-core-with-services:latest";

/// `pip download --no-binary :all:` the sdist on the host and unpack it into `dir`, without its
/// top-level folder, with fresh modification times.
fn unpack_sdist(requirement: &str, dir: &Path) {
    let download = tempfile::tempdir().unwrap();
    let out = Command::new("pip")
        .args([
            "download",
            "--quiet",
            "--no-binary",
            ":all:",
            "--no-deps",
            "--dest",
        ])
        .arg(download.path())
        .arg(requirement)
        .output()
        .expect("run pip on the host");
    crate::support::require(
        out.status.success(),
        &format!("pip download {requirement} ({})", text(&out.stderr)),
    );
    let sdist = std::fs::read_dir(download.path())
        .unwrap()
        .next()
        .expect("an sdist")
        .unwrap()
        .path();
    let gz = flate2::read::GzDecoder::new(std::fs::File::open(&sdist).unwrap());
    let mut archive = tar::Archive::new(gz);
    // As a checkout would have them: flit's sdists carry 1970 timestamps, which wheels refuse.
    archive.set_preserve_mtime(false);
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = entry.path().unwrap().into_owned();
        let inner: std::path::PathBuf = path.components().skip(1).collect();
        if inner.as_os_str().is_empty() {
            continue;
        }
        let target = dir.join(inner);
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        entry.unpack(&target).unwrap();
    }
}

/// `devcontainer exec` output whatever the exit code (a test suite that fails still reports).
fn devcontainer_exec_output(ws: &PluginWorkspace, cmd: &[&str], env: &[(&str, &str)]) -> String {
    let mut args = vec!["exec"];
    args.extend_from_slice(cmd);
    let out = ws.devcontainer(&args, env);
    text(&out.stdout) + &text(&out.stderr)
}

/// The error aiida-diff 2.0.0 meets with a current aiida-core, in and out of containers.
const PLUGIN_FAILURE: &str = "'AttributesFrozendict' object has no attribute 'withmpi'";

/// aiida-diff's `test_process` without its fixtures (they need PostgreSQL): a temporary SQLite
/// profile, the same inputs, the same calculation, run on the host.
const OUTSIDE_SCRIPT: &str = r#"
import os, shutil, traceback
from aiida import load_profile, orm
from aiida.engine import run
from aiida.plugins import CalculationFactory, DataFactory
from aiida.storage.sqlite_temp import SqliteTempBackend

load_profile(SqliteTempBackend.create_profile("outside"), allow_switch=True)
computer = orm.Computer("localhost", "localhost", transport_type="core.local", scheduler_type="core.direct",
                        workdir=os.path.abspath("outside-work")).store()
computer.configure()
code = orm.InstalledCode(computer=computer, filepath_executable=shutil.which("diff"), default_calc_job_plugin="diff").store()
inputs = {
    "code": code,
    "parameters": DataFactory("diff")({"ignore-case": True}),
    "file1": orm.SinglefileData(file=os.path.abspath("tests/input_files/file1.txt")),
    "file2": orm.SinglefileData(file=os.path.abspath("tests/input_files/file2.txt")),
    "metadata": {"options": {"max_wallclock_seconds": 30}},
}
try:
    run(CalculationFactory("diff"), **inputs)
    print("OUTSIDE: passed")
except Exception as exc:
    while exc.__cause__ is not None:
        exc = exc.__cause__
    print("OUTSIDE:", type(exc).__name__, exc)
    for frame in traceback.extract_tb(exc.__traceback__):
        if "aiida_diff" in frame.filename:
            print("AT:", os.path.basename(frame.filename), frame.lineno, frame.line)
"#;

/// Install aiida-core `version` and the plugin in a virtual environment on the host and run
/// [`OUTSIDE_SCRIPT`] in a copy of the plugin; returns what it printed.
fn run_outside_any_container(plugin: &Path, version: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("plugin");
    crate::support::copy_tree(plugin, &copy);
    let venv = dir.path().join("venv");
    let ok = Command::new("python3")
        .arg("-m")
        .arg("venv")
        .arg(&venv)
        .status()
        .expect("python3 -m venv");
    crate::support::require(ok.success(), "python3 with venv on the host");
    let mut pip = Command::new(venv.join("bin/pip"));
    pip.args(["install", "--quiet", &format!("aiida-core=={version}")])
        .arg(&copy);
    if let Some(ca) = crate::support::ca_bundle() {
        pip.env("PIP_CERT", &ca.path);
    }
    let out = pip.output().expect("pip install on the host");
    assert!(
        out.status.success(),
        "pip install on the host: {}",
        text(&out.stderr)
    );
    let out = Command::new(venv.join("bin/python"))
        .current_dir(&copy)
        .env("AIIDA_PATH", dir.path().join("aiida-config"))
        .args(["-c", OUTSIDE_SCRIPT])
        .output()
        .expect("run python on the host");
    text(&out.stdout) + &text(&out.stderr)
}

#[test]
fn a_plugin_from_pypi_opens_into_a_ready_aiida_and_survives_a_restart() {
    if skip_without(&[Need::Docker, Need::DevcontainerCli]) {
        return;
    }
    let ws = PluginWorkspace::new();
    ws.harness.require_image(SERVICES_IMAGE);
    unpack_sdist(PLUGIN, ws.path());
    ws.commit_as_checkout("aiida-diff 2.0.0 from its sdist");

    // The CA option, when one is in use, goes through the generated config as ${localEnv:...}.
    let ca = CaEnv::of_host();
    let env = ca.vars();
    let init_out = ws.init(&[], &env);
    assert!(init_out.contains("aiida-core>=2.0, <3"), "{init_out}");
    crate::support::require(
        init_out.contains("; present locally)"),
        &format!("the image init picked, locally:\n{init_out}"),
    );
    ws.assert_doctor_finds_nothing(&env);

    ws.up(&env, "create, install, ready");
    assert_verdi_all_green(&ws.exec(&["verdi", "status"], &env), &["daemon"]);
    assert_home_is_the_volume_the_engine_api_names(&ws);
    let daemon = ws.exec(&["verdi", "daemon", "status"], &env);
    assert!(daemon.contains("running"), "{daemon}");
    for group in ["aiida.calculations", "aiida.parsers", "aiida.data"] {
        let plugins = ws.exec(&["verdi", "plugin", "list", group], &env);
        assert!(
            plugins
                .lines()
                .any(|l| l.trim().trim_start_matches("* ") == "diff"),
            "no `diff` in {group}:\n{plugins}"
        );
    }
    run_the_plugin_suite(&ws, &env);
    assert_data_survives_a_stop_and_up(&ws, &env);
}

/// The home volume is named with the CLI's ${devcontainerId}: the Engine API path computes the
/// same one, so both find the same data.
fn assert_home_is_the_volume_the_engine_api_names(ws: &PluginWorkspace) {
    let labels = aiida_devc::devcontainer::engine::id_labels(
        ws.path(),
        &ws.path().join(".devcontainer/devcontainer.json"),
    );
    let volume = format!(
        "aiida-home-{}",
        aiida_devc::devcontainer::engine::devcontainer_id(&labels)
    );
    let inspect = ws
        .harness
        .block_on(ws.harness.docker().inspect_container(
            &ws.container(),
            None::<bollard::query_parameters::InspectContainerOptions>,
        ))
        .unwrap();
    assert!(
        inspect
            .mounts
            .unwrap_or_default()
            .iter()
            .any(|m| m.name.as_deref() == Some(volume.as_str())),
        "no volume {volume} on the container"
    );
}

/// The plugin's own suite in the container. aiida-diff 2.0.0 (its latest release) reads
/// `metadata.options.withmpi`, which aiida-core no longer fills in: its two calculation tests
/// fail inside the container, and the very same way outside any container.
fn run_the_plugin_suite(ws: &PluginWorkspace, env: &[(&str, &str)]) {
    let pytest = devcontainer_exec_output(
        ws,
        &[
            "python",
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-rf",
        ],
        env,
    );
    let summary = pytest
        .lines()
        .rev()
        .find(|l| l.contains(" passed"))
        .unwrap_or_default()
        .to_owned();
    eprintln!("the plugin's tests in the container: {summary}");
    assert!(summary.contains("2 passed"), "{pytest}");
    if pytest.contains(" failed") {
        let failed: Vec<&str> = pytest
            .lines()
            .filter(|l| l.starts_with("FAILED "))
            .collect();
        assert_eq!(failed.len(), 2, "{pytest}");
        assert!(
            failed
                .iter()
                .all(|l| l.contains("test_process") || l.contains("test_run")),
            "{pytest}"
        );
        assert!(
            pytest.contains(PLUGIN_FAILURE) && pytest.contains("aiida_diff/calculations.py:74"),
            "{pytest}"
        );
        let version = ws.exec(
            &["python", "-c", "import aiida; print(aiida.__version__)"],
            env,
        );
        let outside = run_outside_any_container(ws.path(), version.trim());
        assert!(
            outside.contains(&format!("OUTSIDE: AttributeError {PLUGIN_FAILURE}")),
            "{outside}"
        );
        assert!(outside.contains("AT: calculations.py 74"), "{outside}");
        eprintln!(
            "the same failure outside any container (aiida-core {}):\n{outside}",
            version.trim()
        );
    }
}

/// Data written now is there after `docker stop` and `aiida-devc up`, which restarts the same
/// container (not a new one) and reports AiiDA ready.
fn assert_data_survives_a_stop_and_up(ws: &PluginWorkspace, env: &[(&str, &str)]) {
    let uuid = ws.exec(
        &[
            "python",
            "-c",
            "from aiida import load_profile, orm; load_profile(); print(orm.Str('kept').store().uuid)",
        ],
        env,
    );
    let uuid = uuid.trim().lines().last().unwrap().to_owned();

    let container = ws.container();
    let stop = Instant::now();
    ws.harness
        .block_on(ws.harness.docker().stop_container(
            &container,
            Some(bollard::query_parameters::StopContainerOptions {
                t: Some(30),
                ..Default::default()
            }),
        ))
        .expect("docker stop");
    eprintln!("docker stop: {:.1} s", stop.elapsed().as_secs_f64());

    let restart = Instant::now();
    let up = aiida_devc(ws.path(), &["up", "."], env);
    let up_out = text(&up.stdout);
    assert!(
        up.status.success(),
        "aiida-devc up after a stop failed:\n{up_out}\n{}",
        text(&up.stderr)
    );
    eprintln!(
        "aiida-devc up after a stop: {:.1} s\n{up_out}",
        restart.elapsed().as_secs_f64()
    );
    assert!(up_out.contains("start-up timeline"), "{up_out}");
    assert_eq!(
        ws.container(),
        container,
        "the container was recreated instead of restarted"
    );
    assert_verdi_all_green(
        up_out
            .split("verdi status:")
            .nth(1)
            .expect("verdi status in the output"),
        &["daemon"],
    );
    let kept = ws.exec(
        &[
            "python",
            "-c",
            &format!(
                "from aiida import load_profile, orm; load_profile(); print(orm.load_node('{uuid}').value)"
            ),
        ],
        env,
    );
    assert_eq!(kept.trim().lines().last(), Some("kept"));
}

#[test]
fn the_sample_plugin_comes_up_through_the_engine_api_and_the_reference_cli_finds_it() {
    if skip_without(&[Need::Docker, Need::DevcontainerCli]) {
        return;
    }
    let ws = PluginWorkspace::new();
    ws.harness.require_image(SERVICES_IMAGE);
    crate::support::copy_tree(
        &crate::support::plugin_workspace::sample_plugin(),
        ws.path(),
    );
    ws.chown(1000, 100);
    let up = aiida_devc(ws.path(), &["up", ".", "--engine-api"], &[]);
    let up_out = text(&up.stdout);
    assert!(
        up.status.success(),
        "aiida-devc up --engine-api failed:\n{up_out}\n{}",
        text(&up.stderr)
    );
    assert!(
        text(&up.stderr).contains("through the Docker Engine API"),
        "{}",
        text(&up.stderr)
    );
    assert!(up_out.contains("start-up timeline"), "{up_out}");
    assert_verdi_all_green(
        up_out
            .split("verdi status:")
            .nth(1)
            .expect("verdi status in the output"),
        &["daemon"],
    );

    // The reference CLI recognises the container by its labels and execs into it.
    let plugins = ws.exec(&["verdi", "plugin", "list", "aiida.calculations"], &[]);
    assert!(plugins.contains("sample.multiply_add"), "{plugins}");
    let pytest = ws.exec(
        &["python", "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        &[],
    );
    assert!(
        pytest.contains("3 passed") && !pytest.contains("failed"),
        "{pytest}"
    );

    // Submitted, the work chain runs in the daemon, which started after the editable install of
    // updateContentCommand or was restarted by it: it loads the plugin.
    let submitted = ws.exec(&["python", "-c", SUBMIT_AND_WAIT], &[]);
    assert!(
        submitted.trim_end().ends_with("finished_ok=True result=10"),
        "{submitted}"
    );
}

/// Submit the sample plugin's work chain to the daemon and wait (60 s at most) for it.
pub(crate) const SUBMIT_AND_WAIT: &str = r#"
import time
from aiida import load_profile, orm
from aiida.engine import submit
from aiida.plugins import WorkflowFactory
load_profile()
node = submit(WorkflowFactory("sample.multiply_add"), x=orm.Int(2), y=orm.Int(3), z=orm.Int(4))
deadline = time.time() + 60
while not node.is_terminated and time.time() < deadline:
    time.sleep(0.5)
result = node.outputs.result.value if node.is_finished_ok else node.process_state
print(f"finished_ok={node.is_finished_ok} result={result}")
"#;
