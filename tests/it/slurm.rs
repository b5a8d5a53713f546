//! The aiida-slurm Feature: Slurm and sshd under aiida-init as the container's user, and AiiDA's
//! `localhost-slurm` computer (core.slurm over core.ssh_async to localhost). Real Slurm, real
//! sshd, real aiida-core daemon, built by the reference CLI on top of the aiida-core-with-services
//! image (and on plain Debian with the other Features, in the Feature's own scenarios).

use std::path::Path;

use crate::support::collections::{
    aiida_devc, devcontainer, namespace, packaged_features, place_ca_bundle, publish_features,
    scratch_copy,
};
use crate::support::images::{docker, text, with_services_image};
use crate::support::registry::Registry;
use crate::support::{Need, Workspace, project_root, skip_without};

/// Submits `core.arithmetic.add` to `localhost-slurm` through the daemon (the `add` code there is
/// /bin/bash); argv: x, y, then optionally seconds to sleep first and the walltime in seconds
/// (600 without). Prints the PK.
const SUBMIT: &str = r#"
import sys
from aiida import load_profile, orm, engine
from aiida.plugins import CalculationFactory
load_profile()
try:
    code = orm.load_code('add@localhost-slurm')
except Exception:
    code = orm.InstalledCode(label='add', computer=orm.load_computer('localhost-slurm'),
                             filepath_executable='/bin/bash',
                             default_calc_job_plugin='core.arithmetic.add').store()
options = {'resources': {'num_machines': 1, 'num_mpiprocs_per_machine': 1},
           'max_wallclock_seconds': int(sys.argv[4]) if len(sys.argv) > 4 else 600}
if len(sys.argv) > 3:
    options['sleep'] = int(sys.argv[3])
inputs = {'x': orm.Int(int(sys.argv[1])), 'y': orm.Int(int(sys.argv[2])), 'code': code,
          'metadata': {'options': options}}
print(engine.submit(CalculationFactory('core.arithmetic.add'), **inputs).pk)
"#;

/// Waits up to argv[2] s for process argv[1]'s Slurm job id (or its end); prints `job=<id>`.
const JOB_ID: &str = r#"
import sys, time
from aiida import load_profile, orm
load_profile()
node = orm.load_node(int(sys.argv[1]))
deadline = time.time() + float(sys.argv[2])
while not node.get_job_id() and not node.is_terminated and time.time() < deadline:
    time.sleep(0.5)
print(f'job={node.get_job_id()} state={node.process_state}')
"#;

/// Waits up to argv[2] s for process argv[1] to end; prints its state, exit status and outputs.
const AWAIT: &str = r#"
import sys, time
from aiida import load_profile, orm
load_profile()
node = orm.load_node(int(sys.argv[1]))
deadline = time.time() + float(sys.argv[2])
while not node.is_terminated and time.time() < deadline:
    time.sleep(0.5)
sum_ = node.outputs.sum.value if 'sum' in node.outputs else None
print(f'state={node.process_state.value if node.process_state else None} '
      f'exit_status={node.exit_status} sum={sum_} computer={node.computer.label}')
"#;

/// A workspace on the aiida-core-with-services image with the aiida-slurm Feature from the test
/// registry, brought up by the reference CLI.
struct SlurmWorkspace {
    ws: Workspace,
    _features: tempfile::TempDir,
}

impl SlurmWorkspace {
    /// Up with the Feature's `options` (a JSON object's members, without braces).
    fn up(options: &str) -> SlurmWorkspace {
        let registry = Registry::shared();
        let (dir, features) = scratch_copy("features");
        let ns = namespace("slurm");
        publish_features(&features.join("src"), &registry.host, &ns, &[]).ok("publish");
        let config = format!(
            r#"{{
                "image": "{image}",
                "overrideCommand": false,
                "remoteUser": "aiida",
                "features": {{ "{host}/{ns}/aiida-slurm:0": {{ "waitTimeout": "600"{options} }} }}
            }}"#,
            image = with_services_image(),
            host = registry.host
        );
        let ws = Workspace::with_config(&config);
        let turn = crate::support::feature_builds();
        let up = ws.devcontainer(&["up", "--no-lockfile"]);
        drop(turn);
        assert!(
            up.status.success(),
            "devcontainer up failed:\n{}\n{}",
            String::from_utf8_lossy(&up.stdout),
            String::from_utf8_lossy(&up.stderr)
        );
        SlurmWorkspace { ws, _features: dir }
    }

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

    fn python(&self, code: &str, args: &[&str]) -> String {
        let script = format!(
            "python - {} <<'PY'\n{code}\nPY",
            args.iter()
                .map(|a| format!("'{a}'"))
                .collect::<Vec<_>>()
                .join(" ")
        );
        let (ok, out) = self.sh(&script);
        assert!(ok, "python failed:\n{out}");
        out
    }
}

fn field<'a>(out: &'a str, key: &str) -> &'a str {
    out.split_whitespace()
        .find_map(|w| w.strip_prefix(key).and_then(|w| w.strip_prefix('=')))
        .unwrap_or_else(|| panic!("no {key}= in:\n{out}"))
}

#[test]
fn a_calcjob_runs_through_slurm_and_a_queued_one_is_killed() {
    if skip_without(&[Need::Docker, Need::DevcontainerCli]) {
        return;
    }
    let c = SlurmWorkspace::up("");

    // Ready: the postStartCommand waited; check the pieces once more.
    let (ok, out) = c.sh(
        "/usr/local/share/aiida-slurm/wait 600 && scontrol ping && verdi computer test localhost-slurm",
    );
    assert!(ok, "Slurm, sshd or the computer is not ready:\n{out}");
    assert!(out.contains("is UP"), "{out}");
    assert!(
        out.contains("computer localhost-slurm already there"),
        "{out}"
    );

    // A CalcJob through sbatch over SSH, to the end.
    let pk = c.python(SUBMIT, &["2", "3"]);
    let pk = pk.lines().last().unwrap().trim().to_owned();
    let end = c.python(AWAIT, &[&pk, "300"]);
    assert_eq!(field(&end, "state"), "finished", "{end}");
    assert_eq!(field(&end, "exit_status"), "0", "{end}");
    assert_eq!(field(&end, "sum"), "5", "{end}");
    assert_eq!(field(&end, "computer"), "localhost-slurm", "{end}");

    // A job kept queued behind one that holds the whole node; `verdi process kill` cancels it
    // in Slurm.
    let (ok, blocker) = c.sh("cd /tmp && sbatch --parsable --exclusive --wrap 'sleep 900'");
    assert!(ok, "{blocker}");
    let blocker = blocker.trim().to_owned();
    let pk = c.python(SUBMIT, &["1", "1"]);
    let pk = pk.lines().last().unwrap().trim().to_owned();
    let job = c.python(JOB_ID, &[&pk, "300"]);
    let job = field(&job, "job").to_owned();
    assert!(job.parse::<u64>().is_ok(), "no Slurm job for {pk}: {job}");
    let (ok, queued) = c.sh(&format!("squeue -h -j {job} -o %T"));
    assert!(ok && queued.trim() == "PENDING", "job {job}: {queued}");
    let (ok, out) = c.sh(&format!("verdi process kill --timeout 120 {pk}"));
    assert!(ok, "verdi process kill failed:\n{out}");
    let (_, state) = c.sh(&format!("squeue -h -t all -j {job} -o %T"));
    assert_eq!(state.trim(), "CANCELLED", "job {job} after the kill");
    let end = c.python(AWAIT, &[&pk, "120"]);
    assert_eq!(field(&end, "state"), "killed", "{end}");
    let (ok, out) = c.sh(&format!("scancel {blocker}"));
    assert!(ok, "{out}");
}

/// The Slurm job state that process argv[1] recorded from `sacct` (its detailed job info).
const SACCT_STATE: &str = r#"
import sys
from aiida import load_profile, orm
load_profile()
node = orm.load_node(int(sys.argv[1]))
info = (node.get_detailed_job_info() or {}).get('stdout', '').splitlines()
fields = dict(zip(info[0].split('|'), info[1].split('|'))) if len(info) > 1 else {}
print(f"sacct_state={fields.get('State', 'none')} finished_ok={node.is_finished_ok}")
"#;

#[test]
fn with_accounting_a_walltime_overrun_is_timeout_and_a_restart_keeps_the_queue_working() {
    if skip_without(&[Need::Docker, Need::DevcontainerCli]) {
        return;
    }
    let c = SlurmWorkspace::up(r#", "accounting": true"#);
    let (ok, out) = c.sh(
        "/usr/local/share/aiida-slurm/wait 600 && aiida-init status | grep -E '^(mariadb|slurmdbd) ' \
         && sacct -n -X -o JobID | wc -l",
    );
    assert!(ok, "slurmdbd or sacct is not ready:\n{out}");
    // Slurm checks time limits about every 30 s and grants a minute per `--time` minute:
    // a 60 s walltime ends between one and two and a half minutes.
    let pk = c.python(SUBMIT, &["1", "2", "900", "60"]);
    let pk = pk.lines().last().unwrap().trim().to_owned();
    let end = c.python(AWAIT, &[&pk, "600"]);
    assert_eq!(field(&end, "state"), "finished", "{end}");
    assert_ne!(field(&end, "exit_status"), "0", "{end}");
    let sacct = c.python(SACCT_STATE, &[&pk]);
    assert_eq!(field(&sacct, "sacct_state"), "TIMEOUT", "{sacct}");
    let (ok, out) = c.sh("sacct -n -X -o State | grep -c TIMEOUT");
    assert!(ok && out.trim() == "1", "sacct: {out}");

    // After `docker stop` and `docker start`, everything comes back and jobs run again.
    let label = format!("devcontainer.local_folder={}", c.ws.path().display());
    let ids = c.ws.harness().containers_with_label(&label);
    assert_eq!(ids.len(), 1, "{ids:?}");
    for step in ["stop", "start"] {
        let out = docker(&[step, &ids[0]]);
        assert!(out.status.success(), "docker {step}: {}", text(&out));
    }
    let (ok, out) = c.sh("/usr/local/share/aiida-slurm/wait 600 && squeue -h | wc -l");
    assert!(ok, "not ready after a restart:\n{out}");
    let pk = c.python(SUBMIT, &["4", "5"]);
    let pk = pk.lines().last().unwrap().trim().to_owned();
    let end = c.python(AWAIT, &[&pk, "300"]);
    assert_eq!(field(&end, "exit_status"), "0", "{end}");
    assert_eq!(field(&end, "sum"), "9", "{end}");
}

/// Runs the Feature's install.sh as root in a container of the image with `env`; returns
/// (exit code, output).
fn install_with(feature: &Path, env: &[&str]) -> (i32, String) {
    let mount = format!("{}:/feature:ro", feature.display());
    let mut args = vec![
        "run",
        "--rm",
        "--user",
        "root",
        "--entrypoint",
        "sh",
        "-v",
        &mount,
    ];
    for e in env {
        args.extend(["-e", e]);
    }
    let image = with_services_image();
    args.extend([image.as_str(), "/feature/install.sh"]);
    let out = docker(&args);
    (out.status.code().unwrap_or(-1), text(&out))
}

#[test]
fn bad_option_values_each_give_one_clear_error() {
    if skip_without(&[Need::Docker]) {
        return;
    }
    let feature = project_root().join("features/src/aiida-slurm");
    for (env, expected) in [
        (
            "SSHPORT=ssh",
            "sshPort must be a TCP port number (1024-65535), not 'ssh'.",
        ),
        (
            "SSHPORT=22",
            "sshPort must be between 1024 and 65535 (sshd runs unprivileged), not 22.",
        ),
        (
            "SSHPORT=6817",
            "sshPort 6817 is taken by Slurm (6817-6819); choose another one.",
        ),
        (
            "ACCOUNTING=yes",
            "accounting must be true or false, not 'yes'.",
        ),
        (
            "WAITTIMEOUT=2m",
            "waitTimeout must be a number of seconds, not '2m'.",
        ),
        ("ENABLED=yes", "enabled must be true or false, not 'yes'."),
        // Invalid even when the Feature is turned off.
        (
            "ENABLED=false SSHPORT=22",
            "sshPort must be between 1024 and 65535 (sshd runs unprivileged), not 22.",
        ),
    ] {
        let env: Vec<&str> = env.split(' ').collect();
        let (code, out) = install_with(&feature, &env);
        assert_one_error(&env.join(" "), code, &out, expected);
    }
    // An option the Feature does not have, as the reference CLI passes it: in
    // devcontainer-features.env next to install.sh.
    let copy = tempfile::tempdir().unwrap();
    crate::support::copy_tree(&feature, copy.path());
    std::fs::write(
        copy.path().join("devcontainer-features.env"),
        "SSHPORT=\"2222\"\nSSH_PORT=\"2022\"\n",
    )
    .unwrap();
    let (code, out) = install_with(copy.path(), &[]);
    assert_one_error(
        "SSH_PORT",
        code,
        &out,
        "unknown option 'SSH_PORT' in devcontainer.json (this Feature's options are enabled, sshPort, accounting and waitTimeout).",
    );
}

/// `enabled: false`, or empty (what a false boolean Template option becomes), installs nothing
/// but a postStartCommand that exits 0 and prints nothing: no packages, no services in the tree.
#[test]
fn turned_off_the_feature_installs_only_a_quiet_wait() {
    if skip_without(&[Need::Docker]) {
        return;
    }
    let feature = project_root().join("features/src/aiida-slurm");
    let mount = format!("{}:/feature:ro", feature.display());
    let image = with_services_image();
    for enabled in ["ENABLED=false", "ENABLED="] {
        let out = docker(&[
            "run",
            "--rm",
            "--user",
            "root",
            "--entrypoint",
            "sh",
            "-v",
            &mount,
            "-e",
            enabled,
            &image,
            "-c",
            "sh /feature/install.sh >/tmp/install.log 2>&1 || { cat /tmp/install.log; exit 1; }; \
             cat /tmp/install.log; \
             wait=$(/usr/local/share/aiida-slurm/wait 2>&1) || { echo \"wait failed: $wait\"; exit 1; }; \
             echo \"wait said: [$wait]\"; \
             echo ---; ls /usr/local/share/aiida-slurm; ls /etc/s6-overlay/s6-rc.d; \
             command -v scontrol sshd munged slurmctld || true; \
             for p in slurm-wlm munge openssh-server; do \
             dpkg -s $p 2>/dev/null | grep -q '^Status: install ok installed' && echo \"installed $p\"; done; true",
        ]);
        let out_text = text(&out);
        assert!(out.status.success(), "{enabled}:\n{out_text}");
        assert!(
            out_text
                .contains("aiida-slurm: enabled is false: Slurm, munge and sshd are not installed"),
            "{enabled}:\n{out_text}"
        );
        assert!(out_text.contains("wait said: []"), "{enabled}:\n{out_text}");
        let (_, installed) = out_text.split_once("---\n").unwrap();
        assert!(installed.starts_with("wait\n"), "{enabled}:\n{out_text}");
        for absent in [
            "slurmctld",
            "slurmd",
            "munged",
            "sshd",
            "slurm-prepare",
            "settings.conf",
            "slurm-wlm",
            "openssh-server",
        ] {
            assert!(
                !installed.contains(absent),
                "{enabled}: {absent} is there:\n{out_text}"
            );
        }
    }
}

/// install.sh failed with exactly one error line, `expected`, before installing anything.
fn assert_one_error(what: &str, code: i32, out: &str, expected: &str) {
    assert_ne!(code, 0, "{what}: install.sh succeeded:\n{out}");
    let errors: Vec<&str> = out.lines().filter(|l| l.starts_with("(!)")).collect();
    assert_eq!(
        errors,
        [format!("(!) aiida-slurm: {expected}")],
        "{what}:\n{out}"
    );
    assert!(!out.contains("installing Slurm"), "{what}:\n{out}");
}

#[test]
fn the_feature_scenarios_pass_under_the_reference_cli() {
    if skip_without(&[Need::Docker, Need::DevcontainerCli]) {
        return;
    }
    let harness = crate::support::Harness::new();
    let before = harness.image_tags();
    let (_dir, features) = packaged_features();
    place_ca_bundle(&features.join("test/aiida-slurm/on_debian"));
    // The scenario on the image uses this run's image.
    let scenarios = features.join("test/aiida-slurm/scenarios.json");
    let text = std::fs::read_to_string(&scenarios).unwrap().replace(
        "aiidateam/aiida-core-with-services:latest",
        &with_services_image(),
    );
    std::fs::write(&scenarios, text).unwrap();
    let turn = crate::support::feature_builds();
    let run = devcontainer(&[
        "features",
        "test",
        "--project-folder",
        features.to_str().unwrap(),
        "--features",
        "aiida-slurm",
        "--skip-autogenerated",
        "--skip-duplicated",
    ]);
    drop(turn);
    // The images the CLI built for the scenarios (their build cache kept: see Harness's drop).
    for tag in harness.image_tags() {
        if !before.contains(&tag) && tag.starts_with("vsc-") {
            let _ = docker(&["rmi", "-f", "--no-prune", &tag]);
        }
    }
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
        report.contains("Passed:      'on_image'")
            && report.contains("Passed:      'off_on_image'")
            && report.contains("Passed:      'on_debian'"),
        "{report}"
    );
}

/// Slow on an x86_64 host: apt-get install and the first start run under qemu.
#[test]
fn installs_and_answers_on_arm64_under_emulation() {
    if skip_without(&[Need::Docker]) {
        return;
    }
    let image = format!("{}-arm64", with_services_image());
    let arch = docker(&["image", "inspect", "-f", "{{.Architecture}}", &image]);
    crate::support::require(
        text(&arch).trim() == "arm64",
        &format!("the arm64 image {image} (`aiida-devc images build --platform linux/arm64`)"),
    );
    let ctx = tempfile::tempdir().unwrap();
    crate::support::copy_tree(
        &project_root().join("features/src/aiida-slurm"),
        &ctx.path().join("feature"),
    );
    std::fs::write(
        ctx.path().join("Dockerfile"),
        format!(
            "FROM {image}\nUSER root\nCOPY feature /tmp/feature\n\
             RUN sh /tmp/feature/install.sh && rm -rf /tmp/feature\nUSER 1000:100\n"
        ),
    )
    .unwrap();
    let tag = format!("{}:latest", crate::support::unique_name("slurm-arm64"));
    let build = docker(&[
        "build",
        "-q",
        "--platform",
        "linux/arm64",
        "-t",
        &tag,
        ctx.path().to_str().unwrap(),
    ]);
    assert!(build.status.success(), "build: {}", text(&build));
    let name = crate::support::unique_name("slurm-arm64");
    let run = docker(&[
        "run",
        "-d",
        "--platform",
        "linux/arm64",
        "--name",
        &name,
        &tag,
        "sleep",
        "infinity",
    ]);
    let check = docker(&[
        "exec",
        &name,
        "sh",
        "-c",
        "uname -m && aiida-init wait --timeout 1200 slurmd sshd && scontrol ping",
    ]);
    let logs = text(&docker(&["logs", "--tail", "40", &name]));
    let _ = docker(&["rm", "-f", &name]);
    let _ = docker(&["rmi", "-f", &tag]);
    assert!(run.status.success(), "run: {}", text(&run));
    let out = text(&check);
    assert!(check.status.success(), "not ready:\n{out}\n{logs}");
    assert!(out.starts_with("aarch64") && out.contains("is UP"), "{out}");
}

#[test]
fn init_with_slurm_adds_the_feature_and_refuses_other_variants() {
    let (_dir, plugin) = {
        let dir = tempfile::tempdir().unwrap();
        let plugin = dir.path().join("plugin");
        crate::support::copy_tree(
            &project_root().join("tests/fixtures/aiida-sample-plugin"),
            &plugin,
        );
        let _ = std::fs::remove_dir_all(plugin.join(".devcontainer"));
        (dir, plugin)
    };
    let dir = plugin.to_str().unwrap();
    let image = with_services_image();
    aiida_devc(&["init", dir, "--image", &image, "--slurm"], &[]).ok("init --slurm");
    let text = std::fs::read_to_string(plugin.join(".devcontainer/devcontainer.json")).unwrap();
    let config: serde_json::Value = jsonc_parser::parse_to_serde_value::<serde_json::Value>(
        &text,
        &aiida_devc::jsonc::options(),
    )
    .unwrap();
    assert_eq!(
        config["features"],
        serde_json::json!({ "ghcr.io/aiidateam/devcontainer-features/aiida-slurm:0": {} }),
        "{text}"
    );
    assert_eq!(
        config["overrideCommand"],
        serde_json::json!(false),
        "{text}"
    );
    // Again: nothing changes.
    aiida_devc(&["init", dir, "--image", &image, "--slurm"], &[]).ok("init --slurm again");
    assert_eq!(
        std::fs::read_to_string(plugin.join(".devcontainer/devcontainer.json")).unwrap(),
        text
    );
    for variant in ["lite", "compose"] {
        let run = aiida_devc(&["init", dir, "--variant", variant, "--slurm"], &[]);
        assert!(!run.success, "{variant}: {}", run.stdout);
        assert!(
            run.stderr
                .contains("--slurm applies to `--variant services` only"),
            "{variant}: {}",
            run.stderr
        );
    }
}

/// The plugin developer's path: `aiida-devc init --slurm` in the sample plugin, then `aiida-devc
/// up` (what "Reopen in Container" does), then the plugin's own Slurm test
/// (tests/test_slurm.py): its calculation goes to the container's Slurm over SSH and finishes.
/// The Feature comes from the test registry instead of ghcr.io.
#[test]
fn the_sample_plugins_slurm_test_passes_after_init_slurm_and_up() {
    if skip_without(&[Need::Docker, Need::DevcontainerCli]) {
        return;
    }
    let registry = Registry::shared();
    let (_features_dir, features) = scratch_copy("features");
    let ns = namespace("slurm-up");
    publish_features(&features.join("src"), &registry.host, &ns, &[]).ok("publish");

    let ws = crate::support::plugin_workspace::PluginWorkspace::new();
    crate::support::copy_tree(
        &crate::support::plugin_workspace::sample_plugin(),
        ws.path(),
    );
    ws.init(&["--image", &with_services_image(), "--slurm"], &[]);
    let config = ws.path().join(".devcontainer/devcontainer.json");
    let written = std::fs::read_to_string(&config).unwrap();
    let published = aiida_devc::devcontainer::config::slurm_feature();
    assert!(
        written.contains(&published),
        "init --slurm did not add {published}:\n{written}"
    );
    std::fs::write(
        &config,
        written.replace(&published, &format!("{}/{ns}/aiida-slurm:0", registry.host)),
    )
    .unwrap();
    ws.chown(1000, 100);

    let turn = crate::support::feature_builds();
    let up = crate::support::plugin_workspace::aiida_devc(
        ws.path(),
        &[
            "up",
            ".",
            "--devcontainer-cli",
            crate::support::devcontainer_cli().to_str().unwrap(),
        ],
        &[],
    );
    drop(turn);
    assert!(
        up.status.success(),
        "aiida-devc up failed:\n{}\n{}",
        String::from_utf8_lossy(&up.stdout),
        String::from_utf8_lossy(&up.stderr)
    );
    let pytest = ws.exec(
        &[
            "python",
            "-m",
            "pytest",
            "-q",
            "-rs",
            "-p",
            "no:cacheprovider",
            "tests/test_slurm.py",
        ],
        &[],
    );
    let summary = pytest
        .lines()
        .rev()
        .find(|l| l.contains(" passed") || l.contains(" skipped") || l.contains(" failed"))
        .unwrap_or_default();
    eprintln!("the sample plugin's Slurm test in its dev container: {summary}");
    assert!(
        summary.contains("1 passed") && !summary.contains("skipped") && !summary.contains("failed"),
        "{pytest}"
    );
}
