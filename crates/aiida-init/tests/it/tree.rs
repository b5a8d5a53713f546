//! Bad service trees: each gives one clear error naming the service directory and the file,
//! exits non-zero, and starts nothing (not even the valid services of the same tree).

use std::time::Duration;

use crate::support::{Mode, Tree};

/// A tree with one valid service that would leave a marker if anything started.
fn tree_with_a_witness() -> Tree {
    let tree = Tree::new();
    let marker = tree.out_file("witness-started");
    tree.oneshot(
        "witness",
        &format!("sh -c \"touch {}\"\n", marker.display()),
        None,
        &[],
    );
    tree
}

/// Run the tree as PID 1 with a command that would leave a marker; assert it failed before
/// starting anything and return stderr.
fn assert_rejected(tree: &Tree, expected: &[&str]) -> String {
    let cmd_marker = tree.out_file("cmd-started");
    let cmd = format!("touch {}", cmd_marker.display());
    let out = tree.run(
        Mode::Pid1,
        &["sh", "-c", &cmd],
        &[],
        Duration::from_secs(10),
    );
    assert_eq!(out.code, 100, "{out:?}");
    for e in expected {
        assert!(out.stderr.contains(e), "expected `{e}` in:\n{}", out.stderr);
    }
    assert!(out.stderr.contains("nothing started"), "{}", out.stderr);
    assert!(
        !tree.out_file("witness-started").exists(),
        "a service started"
    );
    assert!(!cmd_marker.exists(), "the command started");
    // `aiida-init check` reports the same error.
    let mut c = std::process::Command::new(crate::support::bin());
    c.arg("check")
        .env("AIIDA_INIT_ROOT", tree.path().join("root"));
    let check = c.output().unwrap();
    assert_eq!(check.status.code(), Some(100));
    let stderr = String::from_utf8_lossy(&check.stderr).into_owned();
    for e in expected {
        assert!(stderr.contains(e), "check: expected `{e}` in:\n{stderr}");
    }
    out.stderr
}

#[test]
fn a_missing_dependency_is_rejected() {
    let tree = tree_with_a_witness();
    tree.oneshot("app", "true\n", None, &["database"]);
    assert_rejected(
        &tree,
        &[
            "/s6-rc.d/app/dependencies.d/database",
            "`app` depends on `database`, which is not defined",
        ],
    );
}

#[test]
fn a_dependency_cycle_is_rejected() {
    let tree = tree_with_a_witness();
    tree.oneshot("a", "true\n", None, &["c"])
        .oneshot("b", "true\n", None, &["a"])
        .oneshot("c", "true\n", None, &["b"]);
    let err = assert_rejected(&tree, &["dependency cycle"]);
    assert!(
        err.contains("a -> c -> b -> a")
            || err.contains("b -> a -> c -> b")
            || err.contains("c -> b -> a -> c"),
        "{err}"
    );
}

#[test]
fn an_unknown_type_is_rejected() {
    let tree = tree_with_a_witness();
    tree.file("weird", "type", "daemon\n").user("weird");
    assert_rejected(&tree, &["/s6-rc.d/weird/type", "unknown type `daemon`"]);
}

#[test]
fn a_missing_type_is_rejected() {
    let tree = tree_with_a_witness();
    tree.file("untyped", "run", "").user("untyped");
    assert_rejected(&tree, &["/s6-rc.d/untyped/type: missing"]);
}

#[test]
fn a_run_without_the_exec_bit_nor_a_shebang_is_rejected() {
    // s6-rc installs `run` with mode 0755: without a #! line the kernel cannot run it.
    let tree = tree_with_a_witness();
    tree.file("daemon", "type", "longrun\n")
        .file("daemon", "run", "exec sleep 1\n")
        .user("daemon");
    assert_rejected(
        &tree,
        &["/s6-rc.d/daemon/run: neither executable nor a script with a #! line"],
    );
}

#[test]
fn a_data_check_that_is_not_executable_is_rejected() {
    // s6-notifyoncheck execs ./data/check as it is: s6 rejects it too.
    let tree = tree_with_a_witness();
    tree.exec("daemon", "run", "#!/bin/sh\nexec sleep 1\n")
        .file("daemon", "type", "longrun\n")
        .file("daemon", "data/check", "#!/bin/sh\ntrue\n")
        .user("daemon");
    assert_rejected(
        &tree,
        &["/s6-rc.d/daemon/data/check: not executable (chmod +x it)"],
    );
}

#[test]
fn an_unsupported_execline_construct_is_rejected() {
    let tree = tree_with_a_witness();
    tree.oneshot(
        "fancy",
        "#!/command/execlineb -P\nwith-contenv\nmultisubstitute { importas A A } echo $A\n",
        None,
        &[],
    );
    assert_rejected(
        &tree,
        &[
            "/s6-rc.d/fancy/up",
            "`multisubstitute` is an execline construct aiida-init does not support",
        ],
    );
}

#[test]
fn an_unbalanced_block_is_rejected() {
    let tree = tree_with_a_witness();
    tree.oneshot("broken", "foreground { echo hi\n", Some("true\n"), &[]);
    assert_rejected(&tree, &["/s6-rc.d/broken/up", "unmatched {"]);
}

#[test]
fn a_bundle_naming_an_unknown_service_is_rejected() {
    let tree = tree_with_a_witness();
    tree.user("ghost");
    assert_rejected(
        &tree,
        &[
            "user-bundles.d/user/contents.d/ghost",
            "no service or bundle named `ghost`",
        ],
    );
}

#[test]
fn bad_numbers_and_signals_are_rejected() {
    let tree = tree_with_a_witness();
    tree.oneshot("t", "true\n", None, &[])
        .file("t", "timeout-up", "soon\n");
    assert_rejected(
        &tree,
        &[
            "/s6-rc.d/t/timeout-up",
            "`soon` is not a number of milliseconds",
        ],
    );
    let tree = tree_with_a_witness();
    tree.longrun("d", "exec sleep 1", &[])
        .file("d", "down-signal", "SIGNOPE\n");
    assert_rejected(
        &tree,
        &["/s6-rc.d/d/down-signal", "`SIGNOPE` is not a signal"],
    );
}

#[test]
fn check_prints_the_start_order_of_a_valid_tree() {
    let tree = Tree::new();
    tree.oneshot("db", "true\n", None, &["base"])
        .longrun("api", "exec sleep 1", &["db"]);
    // The old location of the user bundle still works, with a warning.
    crate::support::write(&tree.rc().join("user/type"), "bundle\n");
    crate::support::write(&tree.rc().join("user/contents.d/api"), "");
    let mut c = std::process::Command::new(crate::support::bin());
    c.arg("check")
        .env("AIIDA_INIT_ROOT", tree.path().join("root"));
    let out = c.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(
        stdout.contains("  db (oneshot) after fix-attrs, legacy-cont-init\n"),
        "{stdout}"
    );
    assert!(stdout.contains("  api (longrun) after db\n"), "{stdout}");
    assert!(stdout.find("db (oneshot)").unwrap() < stdout.find("api (longrun)").unwrap());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("old location"),
        "{out:?}"
    );
}

#[test]
fn an_execline_run_script_outside_the_subset_is_rejected() {
    let tree = tree_with_a_witness();
    tree.file("daemon", "type", "longrun\n")
        .exec(
            "daemon",
            "run",
            "#!/command/execlineb -P\nbacktick -n X { hostname } daemon\n",
        )
        .user("daemon");
    assert_rejected(&tree, &["/s6-rc.d/daemon/run", "`backtick`"]);
}

#[test]
fn a_logging_pipeline_is_rejected_with_advice() {
    let tree = tree_with_a_witness();
    tree.longrun("app", "exec sleep 1", &[])
        .file("app", "producer-for", "app-log\n");
    tree.longrun("app-log", "exec cat", &[])
        .file("app-log", "consumer-for", "app\n");
    assert_rejected(
        &tree,
        &["/producer-for", "logging pipelines are not supported"],
    );
}

#[test]
fn a_bundle_cycle_is_rejected() {
    let tree = tree_with_a_witness();
    tree.file("group-a", "type", "bundle\n")
        .file("group-a", "contents.d/group-b", "");
    tree.file("group-b", "type", "bundle\n")
        .file("group-b", "contents.d/group-a", "");
    tree.user("group-a");
    assert_rejected(
        &tree,
        &["contents.d: bundle cycle", "group-a -> group-b -> group-a"],
    );
}

#[test]
fn the_old_user_bundle_location_still_runs_its_services() {
    let tree = Tree::new();
    let marker = tree.out_file("ran");
    tree.file("legacy-style", "type", "oneshot\n")
        .file("legacy-style", "up", &format!("#!/command/execlineb -P\nwith-contenv\nforeground {{ s6-echo starting }}\nsh -c \"touch {}\"\n", marker.display()));
    crate::support::write(&tree.rc().join("user/type"), "bundle\n");
    crate::support::write(&tree.rc().join("user/contents.d/legacy-style"), "");
    let out = tree.run(Mode::Pid1, &["true"], &[], Duration::from_secs(10));
    assert_eq!(out.code, 0, "{out:?}");
    assert!(marker.exists(), "{out:?}");
    assert!(out.stdout.contains("[legacy-style] starting"), "{out:?}");
    assert!(out.stderr.contains("old location"), "{out:?}");
}

#[test]
fn a_stop_order_naming_an_undefined_service_is_rejected() {
    let tree = tree_with_a_witness();
    tree.oneshot("app", "true\n", None, &[])
        .file("app", "stops-before.d/database", "");
    assert_rejected(
        &tree,
        &[
            "/s6-rc.d/app/stops-before.d/database",
            "`app` stops before `database`, which is not defined",
        ],
    );
}

#[test]
fn a_stop_order_against_a_dependency_is_rejected_as_a_cycle() {
    // `app` depends on `database`, so it stops first; `database` cannot also stop before it.
    let tree = tree_with_a_witness();
    tree.oneshot("database", "true\n", None, &[])
        .oneshot("app", "true\n", None, &["database"])
        .file("database", "stops-before.d/app", "");
    let err = assert_rejected(&tree, &["stops-before.d: the shutdown order has a cycle"]);
    assert!(
        err.contains("app -> database -> app") || err.contains("database -> app -> database"),
        "{err}"
    );
}
