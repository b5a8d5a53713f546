//! The `S6_*` variables with s6-overlay's meanings, the `user2` bundle, and what a child
//! inherits (signal mask and ignored signals restored, as tini's sigconf test checks).

use std::time::{Duration, Instant};

use crate::support::{Mode, Tree, require_tool, set_dispositions};

const LIMIT: Duration = Duration::from_secs(20);

#[test]
fn s6_cmd_receive_signals_sends_term_to_the_command_only() {
    require_tool("unshare");
    for receive in [true, false] {
        let tree = Tree::new();
        let marker = tree.out_file("started");
        let script = format!(
            "trap '' TERM; touch {}; while :; do sleep 0.05; done",
            marker.display()
        );
        let env: Vec<(&str, &str)> = if receive {
            vec![
                ("S6_CMD_RECEIVE_SIGNALS", "1"),
                ("S6_KILL_GRACETIME", "500"),
            ]
        } else {
            vec![("S6_KILL_GRACETIME", "500")]
        };
        let running = tree.spawn(Mode::Pid1, &["sh", "-c", &script], &env);
        running.wait_for_file(&marker, LIMIT);
        running.signal(libc::SIGTERM);
        if receive {
            // The command ignores TERM, and TERM was only for it: everything keeps running.
            std::thread::sleep(Duration::from_millis(900));
            running.signal(libc::SIGHUP);
            let out = running.finish(LIMIT);
            assert_eq!(out.code, 129, "{out:?}");
        } else {
            // TERM starts the shutdown: the command gets KILL after S6_KILL_GRACETIME.
            let t = Instant::now();
            let out = running.finish(LIMIT);
            assert_eq!(out.code, 137, "{out:?}");
            assert!(t.elapsed() < Duration::from_millis(1500), "{out:?}");
            assert!(
                out.stderr
                    .contains("the command did not stop after SIGTERM"),
                "{out:?}"
            );
        }
    }
}

#[test]
fn sigint_with_no_command_stops_the_container_cleanly() {
    require_tool("unshare");
    let tree = Tree::new();
    let up = tree.out_file("up");
    tree.oneshot_sh(
        "svc",
        &format!("touch {}", up.display()),
        Some(&tree.log_event("down")),
        &[],
    );
    let running = tree.spawn(Mode::Pid1, &[], &[]);
    running.wait_for_file(&up, LIMIT);
    running.wait_ready(&["svc"]);
    running.signal(libc::SIGINT);
    let out = running.finish(LIMIT);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(tree.events().len(), 1, "the down script ran: {out:?}");
}

#[test]
fn s6_cmd_arg0_is_put_before_the_command() {
    let tree = Tree::new();
    let out = tree.run(Mode::Child, &["exit 9"], &[("S6_CMD_ARG0", "sh -c")], LIMIT);
    assert_eq!(out.code, 9, "{out:?}");
}

#[test]
fn s6_cmd_wait_for_services_maxtime_bounds_the_start() {
    let tree = Tree::new();
    tree.longrun("never-ready", "exec sleep 100", &[]).file(
        "never-ready",
        "notification-fd",
        "3\n",
    );
    let marker = tree.out_file("cmd-ran");
    let cmd = format!("touch {}", marker.display());
    let env = [
        ("S6_CMD_WAIT_FOR_SERVICES_MAXTIME", "400"),
        ("S6_BEHAVIOUR_IF_STAGE2_FAILS", "2"),
    ];
    let out = tree.run(Mode::Child, &["sh", "-c", &cmd], &env, LIMIT);
    assert_eq!(out.code, 111, "{out:?}");
    assert!(
        out.stderr
            .contains("services not up within S6_CMD_WAIT_FOR_SERVICES_MAXTIME: never-ready"),
        "{out:?}"
    );
    assert!(!marker.exists());
    assert!(out.elapsed < Duration::from_secs(3), "{out:?}");
}

#[test]
fn s6_kill_finish_maxtime_bounds_cont_finish_scripts_and_timeout_finish_bounds_finish() {
    let tree = Tree::new();
    let etc = tree.path().join("root/etc");
    crate::support::write_exec(
        &etc.join("cont-finish.d/slow"),
        "#!/bin/sh\nexec sleep 30\n",
    );
    let out = tree.run(
        Mode::Child,
        &["true"],
        &[("S6_KILL_FINISH_MAXTIME", "300")],
        LIMIT,
    );
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stderr.contains("still running after 300 ms: killed"),
        "{out:?}"
    );
    assert!(out.elapsed < Duration::from_secs(3), "{out:?}");

    let tree = Tree::new();
    tree.longrun("svc", &format!("{}\nexit 1", tree.log_event("run")), &[])
        .exec("svc", "finish", "#!/bin/sh\nexec sleep 30\n")
        .file("svc", "timeout-finish", "200\n");
    let out = tree.run(Mode::Child, &["sleep", "1.6"], &[], LIMIT);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stderr
            .contains("svc: finish took longer than timeout-finish: killing it"),
        "{out:?}"
    );
    let runs = tree.events().len();
    assert!(
        runs >= 2,
        "the service is restarted after its finish is killed: {runs} runs\n{out:?}"
    );
}

#[test]
fn user2_starts_after_legacy_services() {
    let tree = Tree::new();
    tree.oneshot_sh(
        "first",
        &format!("sleep 0.2\n{}", tree.log_event("user")),
        None,
        &[],
    );
    tree.oneshot_sh(
        "second",
        &tree.log_event("user2"),
        None,
        &["legacy-services"],
    );
    // Move `second` from the user bundle to user2.
    let bundles = tree.path().join("root/etc/s6-overlay/user-bundles.d");
    std::fs::remove_file(bundles.join("user/contents.d/second")).unwrap();
    crate::support::write(&bundles.join("user2/contents.d/second"), "");
    let out = tree.run(Mode::Child, &["true"], &[], LIMIT);
    assert_eq!(out.code, 0, "{out:?}");
    let order = tree.event_names();
    assert_eq!(order, vec!["user", "user2"], "{out:?}");
}

#[test]
fn s6_verbosity_0_keeps_aiida_init_quiet() {
    let tree = Tree::new();
    tree.oneshot("svc", "s6-echo service output\n", None, &[]);
    let out = tree.run(Mode::Child, &["true"], &[("S6_VERBOSITY", "0")], LIMIT);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(out.stderr, "", "{out:?}");
    assert_eq!(out.stdout, "[svc] service output\n");
}

#[test]
fn the_command_inherits_the_original_signal_mask_and_ignored_signals() {
    require_tool("unshare");
    // What a process started with HUP, INT and QUIT ignored (as by `nohup ... &`) sees, and
    // what one started with every signal at its default sees.
    let masks = |ignored: &[i32]| {
        let mut c = std::process::Command::new("grep");
        c.args(["-E", "^Sig(Blk|Ign)", "/proc/self/status"]);
        set_dispositions(&mut c, ignored);
        String::from_utf8_lossy(&c.output().unwrap().stdout).into_owned()
    };
    let nohup = [libc::SIGHUP, libc::SIGINT, libc::SIGQUIT];
    let direct = masks(&nohup);
    assert_ne!(direct, masks(&[]), "the ignored signals show in SigIgn");
    // aiida-init catches INT and QUIT itself, but the command gets them ignored, as given.
    let tree = Tree::new();
    for mode in [Mode::Pid1, Mode::Child] {
        let mut c = tree.command(mode, &["grep", "-E", "^Sig(Blk|Ign)", "/proc/self/status"]);
        c.env("S6_VERBOSITY", "0");
        set_dispositions(&mut c, &nohup);
        let out = tree.spawn_command(mode, c).finish(LIMIT);
        assert_eq!(out.code, 0, "{out:?}");
        assert_eq!(out.stdout, direct, "{mode:?}");
    }
    // A service starts with every signal at its default, whatever aiida-init was given.
    let tree = Tree::new();
    let file = tree.out_file("service-masks");
    tree.oneshot(
        "masks",
        &format!(
            "redirfd -w 1 {} grep -E ^Sig(Blk|Ign) /proc/self/status\n",
            file.display()
        ),
        None,
        &[],
    );
    let mut c = tree.command(Mode::Pid1, &["true"]);
    set_dispositions(&mut c, &nohup);
    let out = tree.spawn_command(Mode::Pid1, c).finish(LIMIT);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(tree.read_out("service-masks"), masks(&[]));
}

#[test]
fn s6_stage2_hook_runs_before_base_and_can_stop_the_container() {
    let tree = Tree::new();
    tree.oneshot_sh("svc", &tree.log_event("svc"), None, &["base"]);
    let hook = tree.log_event("hook");
    let out = tree.run(Mode::Child, &["true"], &[("S6_STAGE2_HOOK", &hook)], LIMIT);
    assert_eq!(out.code, 0, "{out:?}");
    let order = tree.event_names();
    assert_eq!(order, vec!["hook", "svc"], "{out:?}");
    let out = tree.run(
        Mode::Child,
        &["true"],
        &[
            ("S6_STAGE2_HOOK", "exit 6"),
            ("S6_BEHAVIOUR_IF_STAGE2_FAILS", "2"),
        ],
        LIMIT,
    );
    assert_eq!(out.code, 6, "{out:?}");
    assert!(out.stderr.contains("stage2-hook: up exited 6"), "{out:?}");
}

#[test]
fn down_signal_is_what_a_stopping_longrun_receives() {
    let tree = Tree::new();
    let up = tree.out_file("up");
    let run = format!(
        "trap '{}; exit 0' INT\ntrap '{}; exit 0' TERM\ntouch {}\nwhile :; do sleep 0.05; done",
        tree.log_event("INT"),
        tree.log_event("TERM"),
        up.display()
    );
    tree.longrun("db", &run, &[])
        .file("db", "down-signal", "SIGINT\n");
    let running = tree.spawn(Mode::Child, &[], &[]);
    running.wait_for_file(&up, LIMIT);
    let (out, _) = running.shut_down(LIMIT);
    assert_eq!(out.code, 0, "{out:?}");
    let got = tree.event_names();
    assert_eq!(got, vec!["INT"], "{out:?}");
}

#[test]
fn huge_durations_do_not_overflow_into_an_endless_or_broken_wait() {
    // 24.8 days is i32::MAX milliseconds, poll's longest timeout; these are far beyond.
    let tree = Tree::new();
    tree.longrun("slow", "sleep 0.3; echo >&3; exec sleep 100", &[])
        .file("slow", "notification-fd", "3\n")
        .file("slow", "timeout-up", "99999999999999\n");
    let marker = tree.out_file("cmd-ran");
    let cmd = format!("touch {}", marker.display());
    let env = [("S6_CMD_WAIT_FOR_SERVICES_MAXTIME", "2147483648000")];
    let out = tree.run(Mode::Child, &["sh", "-c", &cmd], &env, LIMIT);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(marker.exists(), "{out:?}");
    // `wait` with a timeout of years, or an infinite one, waits for readiness as usual.
    let running = tree.spawn(Mode::Child, &[], &env);
    let rt = tree.path().join("rt");
    let env = [("AIIDA_INIT_RUNTIME_DIR", rt.as_path())];
    for timeout in ["1e12", "inf"] {
        let wait = crate::support::aiida_init(&["wait", "--timeout", timeout, "slow"], &env);
        assert!(wait.status.success(), "--timeout {timeout}: {wait:?}");
    }
    let wait = crate::support::aiida_init(&["wait", "--timeout", "-1"], &env);
    assert_eq!(wait.status.code(), Some(100), "{wait:?}");
    let (out, _) = running.shut_down(LIMIT);
    assert_eq!(out.code, 0, "{out:?}");
}
