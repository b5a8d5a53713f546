//! `aiida-devc init --ci`: the workflow and the Dependabot entries as a user gets them, actionlint
//! and the project's own workflow checks on them, the refusal to replace a different workflow
//! without `--force`, the merge into an existing dependabot.yml, and the workflow's `runCmd` run
//! as devcontainers/ci runs it on a GitHub runner (`devcontainer build`, `up`, then `exec bash -c
//! RUNCMD`, through the reference CLI, as a non-root account) on the sample plugin, whose tests
//! must pass.

use std::fs;
use std::path::Path;

use serde_yaml_ng::Value;

use crate::support::copy_tree;
use crate::support::plugin_workspace::{CaEnv, PluginWorkspace, aiida_devc, sample_plugin, text};
use crate::support::{Need, skip_without};

const WORKFLOW: &str = ".github/workflows/tests.yml";
const DEPENDABOT: &str = ".github/dependabot.yml";
const CONFIG: &str = ".devcontainer/devcontainer.json";

/// A copy of the sample plugin (with its committed devcontainer.json, which `init` leaves as it is).
fn sample() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    copy_tree(&sample_plugin(), dir.path());
    dir
}

/// `aiida-devc --ca-cert none init . ARGS` in `dir`: success, stdout, stderr.
fn init(dir: &Path, args: &[&str]) -> (bool, String, String) {
    let mut all = vec!["--ca-cert", "none", "init", "."];
    all.extend_from_slice(args);
    let out = aiida_devc(dir, &all, &[]);
    (out.status.success(), text(&out.stdout), text(&out.stderr))
}

/// The report without the lines that depend on the machine (is the image present locally, its
/// Python).
fn normalise(stdout: &str) -> String {
    stdout
        .lines()
        .filter(|l| !l.starts_with("image: ") && !l.starts_with("python: "))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn init_ci_writes_the_workflow_and_the_dependabot_entries_and_a_second_run_changes_nothing() {
    let dir = sample();
    let (ok, stdout, stderr) = init(dir.path(), &["--ci"]);
    assert!(ok, "{stderr}");
    insta::assert_snapshot!("init_ci_output", normalise(&stdout));
    assert_eq!(
        fs::read_to_string(dir.path().join(WORKFLOW)).unwrap(),
        aiida_devc::devcontainer::ci::WORKFLOW
    );
    let dependabot = fs::read_to_string(dir.path().join(DEPENDABOT)).unwrap();
    let yaml: Value = serde_yaml_ng::from_str(&dependabot).unwrap();
    assert_eq!(yaml["version"].as_u64(), Some(2));
    let entries: Vec<(&str, &str)> = yaml["updates"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|u| {
            assert!(u["schedule"]["interval"].is_string(), "{u:?}");
            (
                u["package-ecosystem"].as_str().unwrap(),
                u["directory"].as_str().unwrap(),
            )
        })
        .collect();
    // An image-based configuration: Dependabot's docker ecosystem would find no Dockerfile.
    assert_eq!(entries, [("devcontainers", "/")]);

    let (ok, stdout, stderr) = init(dir.path(), &["--ci"]);
    assert!(ok, "{stderr}");
    assert!(
        stdout.ends_with(
            "./.devcontainer/devcontainer.json is up to date.\n\
             ./.github/workflows/tests.yml is up to date.\n\
             ./.github/dependabot.yml is up to date.\n"
        ),
        "{stdout}"
    );
    assert_eq!(
        fs::read_to_string(dir.path().join(DEPENDABOT)).unwrap(),
        dependabot
    );
}

/// actionlint is clean on the generated workflow, and it passes the checks the project's own
/// workflows pass (hosted runners, actions at releases that run on Node 24, a checkout that keeps
/// no token, no secrets), with read-only permissions and no job container (which would replace the
/// image's /init).
#[test]
fn the_generated_workflow_passes_actionlint_and_the_projects_workflow_checks() {
    if skip_without(&[Need::Actionlint]) {
        return;
    }
    let dir = sample();
    let (ok, _, stderr) = init(dir.path(), &["--ci"]);
    assert!(ok, "{stderr}");
    let path = dir.path().join(WORKFLOW);
    crate::workflows::assert_actionlint_clean(std::slice::from_ref(&path));
    let text = fs::read_to_string(&path).unwrap();
    crate::workflows::assert_hosted_node24_and_least_secrets("tests.yml", &text);
    let workflow: Value = serde_yaml_ng::from_str(&text).unwrap();
    let permissions = workflow["permissions"].as_mapping().unwrap();
    assert_eq!(permissions.len(), 1, "{permissions:?}");
    assert_eq!(workflow["permissions"]["contents"].as_str(), Some("read"));
    for (job, body) in workflow["jobs"].as_mapping().unwrap() {
        assert!(body.get("container").is_none(), "{job:?}: a job container");
        assert!(
            body.get("services").is_none(),
            "{job:?}: service containers"
        );
    }
}

#[test]
fn a_different_workflow_is_refused_unless_forced_and_nothing_is_written() {
    let dir = sample();
    fs::remove_dir_all(dir.path().join(".devcontainer")).unwrap();
    fs::create_dir_all(dir.path().join(".github/workflows")).unwrap();
    let mine = "name: tests\non: push\njobs:\n  t:\n    runs-on: ubuntu-24.04\n    steps:\n      - run: make test\n";
    fs::write(dir.path().join(WORKFLOW), mine).unwrap();

    let (ok, stdout, stderr) = init(dir.path(), &["--ci"]);
    assert!(!ok, "{stdout}");
    assert_eq!(
        stderr.trim(),
        "error: ./.github/workflows/tests.yml: a different workflow is already there; `aiida-devc init` \
         does not merge workflows. Nothing was written. Run with --dry-run to see the difference, --force to \
         replace it, or remove it"
    );
    assert_eq!(fs::read_to_string(dir.path().join(WORKFLOW)).unwrap(), mine);
    assert!(
        !dir.path().join(CONFIG).exists(),
        "devcontainer.json was written"
    );
    assert!(
        !dir.path().join(DEPENDABOT).exists(),
        "dependabot.yml was written"
    );

    // --dry-run shows the difference and still writes nothing.
    let (ok, stdout, stderr) = init(dir.path(), &["--ci", "--dry-run"]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("-      - run: make test\n"), "{stdout}");
    assert!(
        stdout.contains("+        uses: devcontainers/ci@"),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            "would refuse to replace (it differs; --force replaces it) ./.github/workflows/tests.yml."
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains("would change ./.github/dependabot.yml: added entries for devcontainers."),
        "{stdout}"
    );
    assert_eq!(fs::read_to_string(dir.path().join(WORKFLOW)).unwrap(), mine);
    assert!(!dir.path().join(CONFIG).exists(), "--dry-run wrote");
    assert!(!dir.path().join(DEPENDABOT).exists(), "--dry-run wrote");

    let (ok, stdout, stderr) = init(dir.path(), &["--ci", "--force"]);
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("replaced (--force) ./.github/workflows/tests.yml."),
        "{stdout}"
    );
    assert_eq!(
        fs::read_to_string(dir.path().join(WORKFLOW)).unwrap(),
        aiida_devc::devcontainer::ci::WORKFLOW
    );
    assert!(dir.path().join(CONFIG).is_file());
    assert!(dir.path().join(DEPENDABOT).is_file());
}

const USER_DEPENDABOT: &str = r#"# The team's bots: do not remove this comment.
version: 2
updates:
  # Python dependencies, monthly
  - package-ecosystem: "pip"
    directory: "/"
    schedule:
      interval: "monthly" # the team's choice
  - package-ecosystem: "github-actions"
    directory: "/"
    schedule:
      interval: "weekly"
    groups:
      actions:
        patterns: ["*"]
"#;

/// The compose variant (whose compose file gets the docker-compose ecosystem) merged into a
/// dependabot.yml of the user's.
#[test]
fn dependabot_entries_are_merged_into_an_existing_file_keeping_its_entries_and_comments() {
    let dir = sample();
    fs::remove_dir_all(dir.path().join(".devcontainer")).unwrap();
    fs::create_dir_all(dir.path().join(".github")).unwrap();
    fs::write(dir.path().join(DEPENDABOT), USER_DEPENDABOT).unwrap();
    let compose = ["--variant", "compose", "--ci"];

    let (ok, stdout, stderr) = init(dir.path(), &[&compose[..], &["--dry-run"]].concat());
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("+  - package-ecosystem: docker-compose\n"),
        "{stdout}"
    );
    assert_eq!(
        fs::read_to_string(dir.path().join(DEPENDABOT)).unwrap(),
        USER_DEPENDABOT,
        "--dry-run wrote"
    );
    assert!(!dir.path().join(WORKFLOW).exists(), "--dry-run wrote");

    let (ok, stdout, stderr) = init(dir.path(), &compose);
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains(
            "updated ./.github/dependabot.yml: added entries for devcontainers, docker-compose."
        ),
        "{stdout}"
    );
    let merged = fs::read_to_string(dir.path().join(DEPENDABOT)).unwrap();
    insta::assert_snapshot!("init_ci_dependabot_merged", merged);
    assert!(merged.starts_with(USER_DEPENDABOT), "{merged}");
    let before: Value = serde_yaml_ng::from_str(USER_DEPENDABOT).unwrap();
    let after: Value = serde_yaml_ng::from_str(&merged).unwrap();
    let (before, after) = (
        before["updates"].as_sequence().unwrap(),
        after["updates"].as_sequence().unwrap(),
    );
    assert_eq!(after.len(), before.len() + 2);
    assert_eq!(
        after[..before.len()],
        before[..],
        "the user's entries changed"
    );
    let (ok, stdout, _) = init(dir.path(), &compose);
    assert!(ok);
    assert!(
        stdout.ends_with("./.github/dependabot.yml is up to date.\n"),
        "{stdout}"
    );

    // Invalid YAML: file:line:column, nothing written.
    let broken = "version: 2\nupdates:\n  - package-ecosystem: pip\n   directory: /\n";
    fs::write(dir.path().join(DEPENDABOT), broken).unwrap();
    fs::remove_file(dir.path().join(WORKFLOW)).unwrap();
    let (ok, _, stderr) = init(dir.path(), &compose);
    assert!(!ok);
    assert!(
        stderr.starts_with("error: ./.github/dependabot.yml:4:"),
        "{stderr}"
    );
    assert!(stderr.contains("invalid YAML"), "{stderr}");
    assert_eq!(
        fs::read_to_string(dir.path().join(DEPENDABOT)).unwrap(),
        broken
    );
    assert!(
        !dir.path().join(WORKFLOW).exists(),
        "the workflow was written"
    );
}

#[test]
fn force_needs_the_compose_variant_or_ci() {
    let dir = sample();
    let (ok, _, stderr) = init(dir.path(), &["--force"]);
    assert!(!ok);
    assert_eq!(
        stderr.trim(),
        "error: --force applies to `--variant compose` and `--ci` only"
    );
}

/// The `runCmd` of the generated workflow's devcontainers/ci step.
fn run_cmd(workflow: &str) -> String {
    let yaml: Value = serde_yaml_ng::from_str(workflow).unwrap();
    yaml["jobs"]["tests"]["steps"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|s| {
            s["uses"]
                .as_str()
                .is_some_and(|u| u.starts_with("devcontainers/ci@"))
        })
        .and_then(|s| s["with"]["runCmd"].as_str())
        .expect("a devcontainers/ci step with runCmd")
        .to_owned()
}

/// The account the reference CLI runs as, as on a GitHub runner (not root, so the CLI remaps
/// the container user's UID to it): the current user when not root, else the bootstrap's
/// aiida-devc-runner. Its uid, gid and name.
fn runner_account() -> (u32, u32, String) {
    let id = |args: &[&str]| -> Option<String> {
        let out = std::process::Command::new("id").args(args).output().ok()?;
        out.status
            .success()
            .then(|| text(&out.stdout).trim().to_owned())
    };
    let me = id(&["-u"]).expect("id -u");
    let user = if me == "0" {
        "aiida-devc-runner".to_owned()
    } else {
        id(&["-un"]).expect("id -un")
    };
    let uid = id(&["-u", &user]);
    crate::support::require(
        uid.is_some(),
        "the account aiida-devc-runner (`bash scripts/bootstrap.sh` creates it)",
    );
    let gid = id(&["-g", &user]).unwrap();
    (uid.unwrap().parse().unwrap(), gid.parse().unwrap(), user)
}

/// The group of the Docker engine's socket, for a CLI run as another user.
fn docker_socket_gid() -> Option<u32> {
    use std::os::unix::fs::MetadataExt;
    let host = std::env::var("DOCKER_HOST").unwrap_or_default();
    let socket = host
        .strip_prefix("unix://")
        .unwrap_or("/var/run/docker.sock")
        .to_owned();
    fs::metadata(socket).ok().map(|m| m.gid())
}

/// `devcontainer SUBCOMMAND --workspace-folder DIR REST...` as the runner account (through
/// setpriv when this process is root), with `home` as its HOME and `env` added.
fn devcontainer_as_runner(
    dir: &Path,
    account: &(u32, u32, String),
    home: &Path,
    args: &[&str],
    env: &[(&str, &str)],
) -> std::process::Output {
    let (subcommand, rest) = args.split_first().unwrap();
    let cli = crate::support::devcontainer_cli();
    let mut command = if is_root() {
        let mut c = std::process::Command::new("setpriv");
        c.arg(format!("--reuid={}", account.0))
            .arg(format!("--regid={}", account.1));
        match docker_socket_gid() {
            Some(gid) => c.arg(format!("--groups={gid}")),
            None => c.arg("--clear-groups"),
        };
        c.arg("--").arg(&cli);
        c
    } else {
        std::process::Command::new(&cli)
    };
    command
        .arg(subcommand)
        .arg("--workspace-folder")
        .arg(dir)
        .args(rest)
        .env("HOME", home)
        .envs(env.iter().copied())
        .output()
        .expect("run the reference devcontainer CLI")
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// What the workflow's step does on a runner, here: devcontainers/ci runs `devcontainer build`,
/// `devcontainer up` and `devcontainer exec bash -c RUNCMD` on the checkout, as the runner's
/// non-root account (which makes the CLI remap the image user's UID to it). The sample plugin's
/// tests must pass in the container, with the services up (aiida-init is PID 1).
#[test]
fn the_workflows_run_command_passes_the_sample_plugins_tests_in_its_dev_container() {
    if skip_without(&[Need::Docker, Need::DevcontainerCli]) {
        return;
    }
    let ws = PluginWorkspace::new();
    ws.harness
        .require_image("aiidateam/aiida-core-with-services:aiida-2.9.4");
    copy_tree(&sample_plugin(), ws.path());
    ws.commit_as_checkout("the sample plugin");
    let ca = CaEnv::of_host();
    let env = ca.vars();
    let init_out = ws.init(&["--ci"], &env);
    assert!(
        init_out.contains("image: aiidateam/aiida-core-with-services:aiida-2.9.4"),
        "{init_out}"
    );
    let cmd = run_cmd(&fs::read_to_string(ws.path().join(WORKFLOW)).unwrap());

    // The checkout belongs to the runner's account, which runs the CLI, as on GitHub.
    let account = runner_account();
    ws.chown(account.0, account.1);
    let home = tempfile::tempdir().unwrap();
    crate::support::plugin_workspace::chown_tree(home.path(), account.0, account.1);
    let cli = |args: &[&str]| devcontainer_as_runner(ws.path(), &account, home.path(), args, &env);
    let started = std::time::Instant::now();
    for step in [&["build"][..], &["up"][..]] {
        let out = cli(step);
        assert!(
            out.status.success(),
            "devcontainer {step:?} as {}:\n{}\n{}",
            account.2,
            text(&out.stdout),
            text(&out.stderr)
        );
    }
    eprintln!(
        "build and up as {} (uid {}): {:.1} s",
        account.2,
        account.0,
        started.elapsed().as_secs_f64()
    );
    let out = cli(&["exec", "bash", "-c", &cmd]);
    let output = text(&out.stdout) + &text(&out.stderr);
    eprintln!(
        "build, up and runCmd: {:.1} s",
        started.elapsed().as_secs_f64()
    );
    assert!(out.status.success(), "runCmd failed:\n{output}");
    let summary = output
        .lines()
        .rev()
        .find(|l| l.contains(" passed"))
        .unwrap_or_default();
    assert!(
        summary.contains("3 passed") && !summary.contains("failed"),
        "{output}"
    );
    // The tests ran under aiida-init as PID 1, as the image's user, remapped by the CLI to the
    // runner's UID.
    let pid1 = ws.exec(&["cat", "/proc/1/cmdline"], &env);
    assert!(pid1.starts_with("/init"), "PID 1: {pid1:?}");
    let uid = ws.exec(&["id", "-u"], &env);
    assert_eq!(
        uid.trim(),
        account.0.to_string(),
        "the container user's UID"
    );
}
