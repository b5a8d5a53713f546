//! The test harness itself, against the real engine: a container runs, https works inside it
//! with the CA option, and the reference devcontainer CLI brings up and execs into a workspace.

use crate::support::{Harness, RunOptions, Workspace, base_image};
use crate::support::{Need, skip_without};

#[test]
fn a_container_from_the_base_image_runs_a_command() {
    if skip_without(&[Need::Docker]) {
        return;
    }
    let h = Harness::new();
    let out = h.run(
        &base_image(),
        &["sh", "-c", "echo hello; echo oops >&2; exit 3"],
        RunOptions::default(),
    );
    assert_eq!(out.stdout, "hello\n");
    assert_eq!(out.stderr, "oops\n");
    assert_eq!(out.exit_code, 3);
}

#[test]
fn pip_download_over_https_works_with_the_ca_option() {
    if skip_without(&[Need::Docker]) {
        return;
    }
    let h = Harness::new();
    let mut opts = RunOptions::default();
    // The bundle goes in read-only and is used through the variables pip and OpenSSL read,
    // exactly as `--ca-cert` makes the tool do.
    if let Some(ca) = crate::support::ca_bundle() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("ca.pem");
        std::fs::write(&file, &ca.pem).unwrap();
        opts.binds
            .push(format!("{}:/etc/aiida-devc/ca.pem:ro", file.display()));
        opts.env.push("PIP_CERT=/etc/aiida-devc/ca.pem".into());
        opts.env.push("SSL_CERT_FILE=/etc/aiida-devc/ca.pem".into());
        std::mem::forget(dir); // the file must outlive the container; it is tiny and in /tmp
    }
    let script = "set -e
        apt-get update -qq >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-pip >/dev/null
        cd /tmp && pip download --no-deps --quiet aiida-core && ls";
    let out = h.run(&base_image(), &["sh", "-c", script], opts);
    assert_eq!(
        out.exit_code, 0,
        "pip download failed:\n{}\n{}",
        out.stdout, out.stderr
    );
    assert!(
        out.stdout
            .lines()
            .any(|l| l.starts_with("aiida_core-") && l.ends_with(".whl")),
        "no aiida-core wheel was downloaded:\n{}",
        out.stdout
    );
}

#[test]
fn the_reference_cli_brings_up_a_workspace_and_execs_in_it() {
    if skip_without(&[Need::Docker, Need::DevcontainerCli]) {
        return;
    }
    let ws = Workspace::with_config(&format!(r#"{{ "image": "{}" }}"#, base_image()));
    let up = ws.devcontainer(&["up"]);
    let stdout = String::from_utf8_lossy(&up.stdout);
    assert!(
        up.status.success(),
        "devcontainer up failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&up.stderr)
    );
    // The CLI ends with one JSON line describing the result.
    let result: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(result["outcome"], "success", "{result}");

    let exec = ws.devcontainer(&["exec", "sh", "-c", "cat /etc/debian_version; pwd"]);
    assert!(
        exec.status.success(),
        "devcontainer exec failed: {}",
        String::from_utf8_lossy(&exec.stderr)
    );
    let out = String::from_utf8_lossy(&exec.stdout);
    let mut lines = out.lines();
    assert!(
        lines.next().unwrap().starts_with("12."),
        "not Debian 12: {out}"
    );
    let folder = ws.path().file_name().unwrap().to_string_lossy().to_string();
    assert_eq!(lines.next().unwrap(), format!("/workspaces/{folder}"));
}
