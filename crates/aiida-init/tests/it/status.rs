//! What users read of `aiida-init status` (human and `--json`) and of `aiida-init wait`
//! failures, as whole-output snapshots (`tests/it/snapshots/`), with pids, times and temporary
//! paths replaced by placeholders.

use std::path::Path;

use crate::support::{Mode, Tree};

const LIMIT: std::time::Duration = std::time::Duration::from_secs(20);

/// Placeholders for what changes from run to run.
fn filters(tree: &Tree) -> Vec<(String, &'static str)> {
    vec![
        (regex_escape(&tree.path().display().to_string()), "[TREE]"),
        (r"\d+\.\d{3}s".into(), "[T]s"),
        (r#""(\w+_ms|ms)": \d+"#.into(), r#""$1": "[MS]""#),
        (r#""pid": \d+"#.into(), r#""pid": "[PID]""#),
        (
            r#""pid_start_ticks": \d+"#.into(),
            r#""pid_start_ticks": "[TICKS]""#,
        ),
        (r"pid:\[\d+\]".into(), "pid:[NS]"),
        (r"pid \d+".into(), "pid [PID]"),
        (r"(?m)^(\S+ +\S+ +\S+ +)\d+( )".into(), "$1[PID]$2"),
    ]
}

/// Polls `aiida-init status --json` of the instance at `env` until `reached` holds; panics with
/// `what` and the last state after [`LIMIT`].
fn await_status(env: &[(&str, &Path)], what: &str, reached: impl Fn(&serde_json::Value) -> bool) {
    let deadline = std::time::Instant::now() + LIMIT;
    loop {
        let status = crate::support::aiida_init(&["status", "--json"], env);
        let state: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap_or_default();
        if reached(&state) {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "{what}: {state}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

fn regex_escape(text: &str) -> String {
    text.chars()
        .flat_map(|c| {
            let special = "\\.+*?()|[]{}^$#&-~".contains(c);
            special
                .then_some('\\')
                .into_iter()
                .chain(std::iter::once(c))
        })
        .collect()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn status_and_wait_failures_as_users_read_them() {
    let tree = Tree::new();
    tree.longrun("database", "sleep 0.3; echo >&3; exec sleep 100", &[])
        .file("database", "notification-fd", "3\n");
    tree.oneshot(
        "profile",
        "sh -c \"echo creating the profile; echo it went wrong >&2; exit 4\"\n",
        None,
        &["database"],
    );
    let running = tree.spawn(Mode::Pid1, &["sleep", "100"], &[]);
    let rt = tree.path().join("rt");
    let env: [(&str, &Path); 1] = [("AIIDA_INIT_RUNTIME_DIR", rt.as_path())];

    let wait = crate::support::aiida_init(&["wait", "--timeout", "20"], &env);
    assert_eq!(wait.status.code(), Some(1), "{wait:?}");
    let settings = {
        let mut s = insta::Settings::clone_current();
        for (pattern, replacement) in filters(&tree) {
            s.add_filter(&pattern, replacement);
        }
        s
    };
    let _guard = settings.bind_to_scope();
    insta::assert_snapshot!("wait_failed", text(&wait.stderr));

    // Once the failure is known, the services are up and the command runs.
    let wait_db = crate::support::aiida_init(&["wait", "--timeout", "20", "database"], &env);
    assert!(wait_db.status.success(), "{wait_db:?}");
    let human = crate::support::aiida_init(&["status"], &env);
    assert!(human.status.success(), "{human:?}");
    insta::assert_snapshot!("status", text(&human.stdout));
    let json = crate::support::aiida_init(&["status", "--json"], &env);
    assert!(json.status.success(), "{json:?}");
    insta::assert_snapshot!("status_json", text(&json.stdout));

    let timeout = crate::support::aiida_init(&["wait", "--timeout", "0.2", "nosuch"], &env);
    assert_eq!(timeout.status.code(), Some(1), "{timeout:?}");
    insta::assert_snapshot!("wait_unknown_service", text(&timeout.stderr));
    let (out, _) = running.shut_down(LIMIT);
    assert_eq!(out.code, 143, "{out:?}");
}

#[test]
fn a_wait_that_times_out_names_the_services_not_ready() {
    let tree = Tree::new();
    tree.longrun("broker", "echo booting the broker; exec sleep 100", &[])
        .file("broker", "notification-fd", "3\n");
    let running = tree.spawn(Mode::Pid1, &[], &[]);
    let rt = tree.path().join("rt");
    let env: [(&str, &Path); 1] = [("AIIDA_INIT_RUNTIME_DIR", rt.as_path())];
    // Its output reaches the state file within a second or so.
    await_status(&env, "no output", |state| {
        state["services"][0]["last_lines"][0] == "booting the broker"
    });
    let wait = crate::support::aiida_init(&["wait", "--timeout", "0.5"], &env);
    assert_eq!(wait.status.code(), Some(2), "{wait:?}");
    let mut settings = insta::Settings::clone_current();
    for (pattern, replacement) in filters(&tree) {
        settings.add_filter(&pattern, replacement);
    }
    settings.bind(|| insta::assert_snapshot!("wait_timed_out", text(&wait.stderr)));
    let (out, _) = running.shut_down(LIMIT);
    assert_eq!(out.code, 0, "{out:?}");
}

/// After `docker stop` and `docker start`, the runtime directory still holds the state file of
/// the earlier instance, whose PID (1) is alive again but is another process. `wait` must not
/// take that file's "stopping" for the new instance's (it failed a reopened dev container's
/// postStartCommand with "the instance is shutting down"): it waits for the new instance.
#[test]
fn a_state_file_left_by_an_earlier_instance_is_not_taken_for_the_running_one() {
    let dir = tempfile::tempdir().unwrap();
    let rt = dir.path().join("rt");
    std::fs::create_dir_all(rt.join("aiida-init")).unwrap();
    // A live process of this PID namespace (this test), with another start time than the one
    // recorded.
    let namespace = std::fs::read_link("/proc/self/ns/pid").unwrap();
    let stale = format!(
        r#"{{"pid": {}, "pid_start_ticks": 1, "pid_namespace": "{}", "phase": "stopping", "services": []}}"#,
        std::process::id(),
        namespace.display()
    );
    std::fs::write(rt.join("aiida-init/state.json"), stale).unwrap();
    let env: [(&str, &Path); 1] = [("AIIDA_INIT_RUNTIME_DIR", rt.as_path())];

    let wait = crate::support::aiida_init(&["wait", "--timeout", "0.5"], &env);
    assert_eq!(wait.status.code(), Some(2), "{wait:?}");
    assert_eq!(
        text(&wait.stderr),
        "aiida-init wait: timed out after 0.5s: no running aiida-init found\n"
    );
    let status = crate::support::aiida_init(&["status"], &env);
    assert!(!status.status.success(), "{status:?}");
}

/// A longrun that exits at once, again and again (PostgreSQL on a full home volume, say): `status`
/// shows its restarts and its last line on its own row, `wait` names it with its last lines, and
/// the instance keeps running for inspection.
#[test]
fn a_longrun_that_keeps_failing_says_why_in_status_and_wait() {
    let tree = Tree::new();
    tree.longrun(
        "database",
        "echo 'FATAL:  could not write lock file \"postmaster.pid\": No space left on device' >&2; exit 1",
        &[],
    )
    .file("database", "notification-fd", "3\n");
    let running = tree.spawn(Mode::Pid1, &[], &[]);
    let rt = tree.path().join("rt");
    let env: [(&str, &Path); 1] = [("AIIDA_INIT_RUNTIME_DIR", rt.as_path())];
    await_status(&env, "not restarted twice", |state| {
        state["services"][0]["restarts"].as_u64().unwrap_or(0) >= 2
    });
    let human = crate::support::aiida_init(&["status"], &env);
    assert!(human.status.success(), "{human:?}");
    let human = text(&human.stdout);
    let row = human
        .lines()
        .find(|l| l.starts_with("database "))
        .unwrap_or_else(|| panic!("no row for the service:\n{human}"));
    assert!(
        row.contains("restarted")
            && row.contains("last exited 1: FATAL:  could not write lock file \"postmaster.pid\": No space left on device"),
        "the row does not say why the service fails:\n{human}"
    );

    let wait = crate::support::aiida_init(&["wait", "--timeout", "0.5"], &env);
    assert_eq!(wait.status.code(), Some(2), "{wait:?}");
    let stderr = text(&wait.stderr);
    assert!(
        stderr.contains("database not ready") && stderr.contains("No space left on device"),
        "{stderr}"
    );
    let (out, _) = running.shut_down(LIMIT);
    assert_eq!(out.code, 0, "{out:?}");
}
