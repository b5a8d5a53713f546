//! A real AiiDA plugin that nobody here wrote, from its PyPI source distribution, opened in a
//! container exactly as VS Code would: `aiida-devc init`, then the reference CLI's
//! `devcontainer up` and `exec`. AiiDA must be ready (`verdi status` all ✔, daemon running), the
//! plugin's entry points registered, its own test suite green; after `docker stop` and
//! `aiida-devc up` it is ready again with its data kept.
//!
//! Needs the images (`aiida-devc images build`, run by scripts/test.sh before the tests), the
//! reference CLI, and PyPI (through the CA option behind a TLS-intercepting proxy).

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use support::plugin_workspace::{PluginWorkspace, aiida_devc, text};

/// The plugin: the AiiDA team's demo plugin, with calculations, parsers, data and CLI entry points.
const PLUGIN: &str = "aiida-diff==2.0.0";
const SERVICES_IMAGE: &str = "aiidateam/aiida-core-with-services:latest";

/// `pip download --no-binary :all:` the sdist on the host and unpack it into `dir`, without its
/// top-level folder.
fn unpack_sdist(requirement: &str, dir: &Path) {
    let download = tempfile::tempdir().unwrap();
    let out = Command::new("pip")
        .args(["download", "--quiet", "--no-binary", ":all:", "--no-deps", "--dest"])
        .arg(download.path())
        .arg(requirement)
        .output()
        .expect("run pip on the host");
    support::require(out.status.success(), &format!("pip download {requirement} ({})", text(&out.stderr)));
    let sdist = std::fs::read_dir(download.path()).unwrap().next().expect("an sdist").unwrap().path();
    let gz = flate2::read::GzDecoder::new(std::fs::File::open(&sdist).unwrap());
    let mut archive = tar::Archive::new(gz);
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

fn git(dir: &Path, args: &[&str]) {
    let out = Command::new("git")
        .current_dir(dir)
        .args(["-c", "user.name=aiida-devc test", "-c", "user.email=test@aiida-devc.invalid"])
        .args(args)
        .output()
        .expect("run git");
    assert!(out.status.success(), "git {args:?}: {}", text(&out.stderr));
}

/// `devcontainer exec` and its output; panics with both streams when it fails.
fn exec(ws: &PluginWorkspace, cmd: &[&str], env: &[(&str, &str)]) -> String {
    let mut args = vec!["exec"];
    args.extend_from_slice(cmd);
    let out = ws.devcontainer(&args, env);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{cmd:?} failed:\n{stdout}\n{}", text(&out.stderr));
    stdout
}

/// Every line of `verdi status` that reports a component is a ✔, and the daemon is one of them.
fn assert_all_green(status: &str) {
    let components: Vec<&str> = status.lines().filter(|l| l.contains('✔') || l.contains('✘') || l.contains('⏺')).collect();
    assert!(components.len() >= 5, "verdi status is incomplete:\n{status}");
    assert!(components.iter().all(|l| l.trim_start().starts_with('✔')), "verdi status is not all green:\n{status}");
    assert!(components.iter().any(|l| l.contains("daemon")), "no daemon line:\n{status}");
}

#[test]
fn a_plugin_from_pypi_opens_into_a_ready_aiida_and_survives_a_restart() {
    let ws = PluginWorkspace::new();
    ws.harness.require_image(SERVICES_IMAGE);
    unpack_sdist(PLUGIN, ws.path());
    git(ws.path(), &["init", "--quiet"]);
    git(ws.path(), &["add", "--all"]);
    git(ws.path(), &["commit", "--quiet", "--message", "aiida-diff 2.0.0 from its sdist"]);
    // A developer's own checkout: the image user's UID owns it.
    ws.chown(1000, 100);

    // The CA option, when one is in use, goes through the generated config as ${localEnv:...}.
    let ca = support::ca_bundle().map(|b| b.path.to_string_lossy().into_owned());
    let env: Vec<(&str, &str)> = ca.iter().map(|p| ("AIIDA_DEVC_CA_CERT", p.as_str())).collect();

    let init = aiida_devc(ws.path(), &["init", "."], &env);
    let init_out = text(&init.stdout);
    assert!(init.status.success(), "init failed:\n{init_out}\n{}", text(&init.stderr));
    assert!(init_out.contains("aiida-core>=2.0, <3"), "{init_out}");
    support::require(init_out.contains("; present locally)"), &format!("the image init picked, locally:\n{init_out}"));
    let doctor = aiida_devc(ws.path(), &["doctor", "."], &[]);
    assert!(doctor.status.success(), "doctor finds problems in init's output:\n{}", text(&doctor.stdout));

    let started = Instant::now();
    let up = ws.devcontainer(&["up"], &env);
    let up_out = text(&up.stdout);
    assert!(up.status.success(), "devcontainer up failed:\n{up_out}\n{}", text(&up.stderr));
    eprintln!("devcontainer up (create, pip install, ready): {:.1} s", started.elapsed().as_secs_f64());

    assert_all_green(&exec(&ws, &["verdi", "status"], &env));
    let daemon = exec(&ws, &["verdi", "daemon", "status"], &env);
    assert!(daemon.contains("running"), "{daemon}");
    for group in ["aiida.calculations", "aiida.parsers", "aiida.data"] {
        let plugins = exec(&ws, &["verdi", "plugin", "list", group], &env);
        assert!(plugins.lines().any(|l| l.trim().trim_start_matches("* ") == "diff"), "no `diff` in {group}:\n{plugins}");
    }
    let pytest = exec(&ws, &["python", "-m", "pytest", "-q", "-p", "no:cacheprovider"], &env);
    assert!(pytest.contains("passed") && !pytest.contains("failed"), "{pytest}");

    // Data written now must be there after a restart.
    let uuid = exec(
        &ws,
        &["python", "-c", "from aiida import load_profile, orm; load_profile(); print(orm.Str('kept').store().uuid)"],
        &env,
    );
    let uuid = uuid.trim().lines().last().unwrap().to_owned();

    let container = ws.container();
    let stop = Instant::now();
    ws.harness
        .block_on(ws.harness.docker().stop_container(&container, Some(bollard::query_parameters::StopContainerOptions { t: Some(30), ..Default::default() })))
        .expect("docker stop");
    eprintln!("docker stop: {:.1} s", stop.elapsed().as_secs_f64());

    let restart = Instant::now();
    let up = aiida_devc(ws.path(), &["up", "."], &env);
    let up_out = text(&up.stdout);
    assert!(up.status.success(), "aiida-devc up after a stop failed:\n{up_out}\n{}", text(&up.stderr));
    eprintln!("aiida-devc up after a stop: {:.1} s\n{up_out}", restart.elapsed().as_secs_f64());
    assert!(up_out.contains("start-up timeline"), "{up_out}");
    assert_eq!(ws.container(), container, "the container was recreated instead of restarted");
    assert_all_green(up_out.split("verdi status:").nth(1).expect("verdi status in the output"));
    let kept = exec(
        &ws,
        &["python", "-c", &format!("from aiida import load_profile, orm; load_profile(); print(orm.load_node('{uuid}').value)")],
        &env,
    );
    assert_eq!(kept.trim().lines().last(), Some("kept"));
}
