//! The real aiida-init binary as PID 1 of a new PID namespace, as PID 2 under tini, as a plain
//! child process, and as PID 1 for an unprivileged user with /run not writable: exit codes,
//! signals, reaping, start order, readiness, restarts, failures, timeouts and shutdown.

use std::time::{Duration, Instant};

use crate::support::{ALL_MODES, Mode, Tree, require_tool, set_dispositions};

const LIMIT: Duration = Duration::from_secs(20);

fn prerequisites() {
    require_tool("unshare");
    require_tool("tini");
    require_tool("setpriv");
}

#[test]
fn exit_codes_0_to_255_propagate_as_pid1() {
    prerequisites();
    let tree = Tree::new();
    for code in 0..=255 {
        let script = format!("exit {code}");
        let out = tree.run(
            Mode::Pid1,
            &["sh", "-c", &script],
            &[("S6_VERBOSITY", "1")],
            LIMIT,
        );
        assert_eq!(out.code, code, "exit {code}: {out:?}");
    }
}

#[test]
fn exit_codes_propagate_in_every_mode() {
    prerequisites();
    let tree = Tree::new();
    for mode in ALL_MODES {
        for code in [0, 1, 2, 32, 64, 127, 254, 255] {
            let script = format!("exit {code}");
            let out = tree.run(mode, &["sh", "-c", &script], &[], LIMIT);
            assert_eq!(out.code, code, "{mode:?} exit {code}: {out:?}");
        }
        let out = tree.run(mode, &["/nonexistent/program"], &[], LIMIT);
        assert_eq!(out.code, 127, "{mode:?}: {out:?}");
        assert!(out.stderr.contains("/nonexistent/program"), "{out:?}");
    }
}

#[test]
fn a_command_killed_by_signal_n_gives_128_plus_n() {
    prerequisites();
    let tree = Tree::new();
    for mode in ALL_MODES {
        for (sig, name) in [(1, "HUP"), (9, "KILL"), (15, "TERM"), (3, "QUIT")] {
            let script = format!("kill -{name} $$");
            let out = tree.run(mode, &["sh", "-c", &script], &[], LIMIT);
            assert_eq!(out.code, 128 + sig, "{mode:?} {name}: {out:?}");
        }
    }
}

#[test]
fn signals_sent_to_pid1_reach_the_command() {
    prerequisites();
    let tree = Tree::new();
    for mode in ALL_MODES {
        for (sig, _name) in [
            (libc::SIGTERM, "TERM"),
            (libc::SIGHUP, "HUP"),
            (libc::SIGUSR1, "USR1"),
            (libc::SIGUSR2, "USR2"),
            (libc::SIGINT, "INT"),
        ] {
            let marker = tree.out_file(&format!("cmd-started-{mode:?}-{sig}"));
            let script = format!("touch {}; exec sleep 100", marker.display());
            let running = tree.spawn(mode, &["sh", "-c", &script], &[]);
            running.wait_for_file(&marker, LIMIT);
            running.signal(sig);
            let out = running.finish(LIMIT);
            assert_eq!(out.code, 128 + sig, "{mode:?} signal {sig}: {out:?}");
        }
    }
}

/// Started as `nohup aiida-init &` would be (HUP, INT and QUIT ignored), aiida-init still
/// hears INT (Linux never discards a blocked signal, ignored or not), while the command gets
/// them ignored (see settings.rs).
#[test]
fn a_shutdown_signal_ignored_when_aiida_init_started_still_stops_it() {
    prerequisites();
    for mode in [Mode::Pid1, Mode::Child] {
        let tree = Tree::new();
        let marker = tree.out_file("up");
        tree.oneshot_sh("svc", &format!("touch {}", marker.display()), None, &[]);
        let mut c = tree.command(mode, &[]);
        set_dispositions(&mut c, &[libc::SIGHUP, libc::SIGINT, libc::SIGQUIT]);
        let running = tree.spawn_command(mode, c);
        running.wait_for_file(&marker, LIMIT);
        running.signal(libc::SIGINT);
        let out = running.finish(LIMIT);
        assert!(
            out.stderr.contains("received SIGINT: shutting down"),
            "{mode:?}: {out:?}"
        );
    }
}

/// A parent that ignores SIGCHLD hands that on: children of a process that ignores it are
/// reaped by the kernel, and their exit status is lost. aiida-init takes SIGCHLD back to its
/// default for itself, and the command gets it ignored, as given.
#[test]
fn sigchld_ignored_when_aiida_init_started_loses_no_exit_status() {
    prerequisites();
    let tree = Tree::new();
    tree.oneshot_sh("svc", "exit 0", None, &[]);
    // As a plain child: `unshare --fork` sets SIGCHLD back to its default.
    let start = |cmd: &[&str]| {
        let mut c = tree.command(Mode::Child, cmd);
        set_dispositions(&mut c, &[libc::SIGCHLD]);
        tree.spawn_command(Mode::Child, c).finish(LIMIT)
    };
    let out = start(&["sh", "-c", "exit 3"]);
    assert_eq!(out.code, 3, "{out:?}");
    let out = start(&["grep", "^SigIgn", "/proc/self/status"]);
    let sigign = out.stdout.trim().trim_start_matches("SigIgn:").trim();
    let sigign = u64::from_str_radix(sigign, 16).unwrap();
    assert_ne!(sigign & (1 << (libc::SIGCHLD - 1)), 0, "{out:?}");
}

#[test]
fn a_hundred_orphaned_zombies_are_reaped() {
    prerequisites();
    let tree = Tree::new();
    // Each `sh -c "sleep 0.2 &"` exits at once: its sleep is orphaned and reparented to
    // aiida-init (PID 1 or subreaper). After they exit, none may stay a zombie.
    let script = r#"
        init=$PPID
        i=0; while [ $i -lt 100 ]; do sh -c 'sleep 0.2 &'; i=$((i+1)); done
        sleep 1.2
        n=0
        for f in /proc/[0-9]*/stat; do
            read -r line < "$f" 2>/dev/null || continue
            rest=${line##*) }
            set -- $rest
            if [ "$1" = Z ] && [ "$2" = "$init" ]; then n=$((n+1)); fi
        done
        echo "zombies=$n"
        exit $n
    "#;
    for mode in ALL_MODES {
        let out = tree.run(mode, &["sh", "-c", script], &[], LIMIT);
        assert!(out.stdout.contains("zombies=0"), "{mode:?}: {out:?}");
        assert_eq!(out.code, 0, "{mode:?}: {out:?}");
    }
}

#[test]
fn services_start_in_dependency_order_and_in_parallel() {
    prerequisites();
    for mode in ALL_MODES {
        let tree = Tree::new();
        let a = format!(
            "{}\nsleep 0.3\n{}",
            tree.log_event("a-start"),
            tree.log_event("a-end")
        );
        let b = format!(
            "{}\nsleep 0.5\n{}",
            tree.log_event("b-start"),
            tree.log_event("b-end")
        );
        let c = format!(
            "{}\nsleep 0.5\n{}",
            tree.log_event("c-start"),
            tree.log_event("c-end")
        );
        let d = tree.log_event("d-start");
        tree.oneshot_sh("a", &a, None, &[])
            .oneshot_sh("b", &b, None, &["a"])
            .oneshot_sh("c", &c, None, &["a"])
            .oneshot_sh("d", &d, None, &["b", "c"]);
        let cmd = tree.log_event("cmd");
        let out = tree.run(mode, &["sh", "-c", &cmd], &[], LIMIT);
        assert_eq!(out.code, 0, "{mode:?}: {out:?}");
        let t = |w: &str| tree.event_time(w);
        assert!(
            t("b-start") >= t("a-end") && t("c-start") >= t("a-end"),
            "{mode:?}: {:?}",
            tree.events()
        );
        assert!(
            t("b-start").abs_diff(t("c-start")) < 250,
            "b and c must start in parallel: {:?}",
            tree.events()
        );
        assert!(
            t("d-start") >= t("b-end").max(t("c-end")),
            "{mode:?}: {:?}",
            tree.events()
        );
        assert!(
            t("cmd") >= t("d-start"),
            "the command runs once the user bundle is up: {:?}",
            tree.events()
        );
    }
}

#[test]
fn service_output_is_prefixed_with_the_service_name() {
    prerequisites();
    let tree = Tree::new();
    tree.oneshot(
        "hello",
        "foreground { s6-echo hello from up } fdmove -c 1 2 s6-echo to stderr\n",
        None,
        &[],
    );
    tree.longrun(
        "talker",
        "echo line one; echo line two; exec sleep 100",
        &[],
    );
    let out = tree.run(Mode::Pid1, &["sleep", "0.3"], &[], LIMIT);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("[hello] hello from up\n"), "{out:?}");
    assert!(out.stderr.contains("[hello] to stderr\n"), "{out:?}");
    // Each line whole and prefixed, a service's lines in their order; the two services write at
    // the same time, so hello's line may come between talker's.
    let one = out.stdout.find("[talker] line one\n");
    let two = out.stdout.find("[talker] line two\n");
    assert!(
        matches!((one, two), (Some(one), Some(two)) if one < two),
        "{out:?}"
    );
}

#[test]
fn readiness_by_notification_fd_gates_dependents() {
    prerequisites();
    for mode in ALL_MODES {
        let tree = Tree::new();
        let run = format!(
            "sleep 0.4\n{}\necho >&3\nexec sleep 100",
            tree.log_event("b-ready")
        );
        tree.longrun("b", &run, &[])
            .file("b", "notification-fd", "3\n");
        tree.oneshot_sh("c", &tree.log_event("c-start"), None, &["b"]);
        let out = tree.run(mode, &["true"], &[], LIMIT);
        assert_eq!(out.code, 0, "{mode:?}: {out:?}");
        tree.assert_not_before("c-start", "b-ready");
    }
}

#[test]
fn readiness_by_data_check_with_s6_notifyoncheck() {
    prerequisites();
    for mode in [Mode::Pid1, Mode::NonRootPid1] {
        let tree = Tree::new();
        let ok = tree.out_file("ok");
        // An execline run script, as s6-overlay trees write them; the check passes once `ok`
        // exists, which a background job creates after 0.5 s.
        tree.file("db", "type", "longrun\n")
            .exec("db", "make-ok.sh", &format!("#!/bin/sh\nsleep 0.5\n{}\ntouch {}\n", tree.log_event("ok-created"), ok.display()))
            .exec("db", "run", "#!/command/execlineb -P\nbackground { ./make-ok.sh }\ns6-notifyoncheck -w 100 -n 0\nsleep 100\n")
            .file("db", "notification-fd", "3\n")
            .exec("db", "data/check", &format!("#!/bin/sh\ntest -e {}\n", ok.display()))
            .user("db");
        tree.oneshot_sh("app", &tree.log_event("app-start"), None, &["db"]);
        let out = tree.run(mode, &["true"], &[], LIMIT);
        assert_eq!(out.code, 0, "{mode:?}: {out:?}");
        tree.assert_not_before("app-start", "ok-created");
    }
}

/// A service that exits and is started again leaves no readiness poller behind: each
/// s6-notifyoncheck poller ends with its own start of the service, as s6's does, instead of
/// polling a check that keeps failing (`-n 0`: forever), one poller more at every restart.
#[test]
fn a_restarted_service_leaves_no_readiness_poller_behind() {
    prerequisites();
    let tree = Tree::new();
    let starts = tree.out_file("starts");
    let pollers = tree.out_file("pollers");
    tree.file("db", "type", "longrun\n")
        .exec(
            "db",
            "run",
            &format!(
                "#!/command/execlineb -P\ns6-notifyoncheck -w 50 -n 0\nsh -c \"echo start >> {}; sleep 0.5; exit 1\"\n",
                starts.display()
            ),
        )
        .file("db", "notification-fd", "3\n")
        .exec("db", "data/check", &format!("#!/bin/sh\necho $PPID >> {}\nexit 1\n", pollers.display()))
        .user("db");
    // A plain child: the pollers' PIDs, which the check writes, are the host's.
    let running = tree.spawn(Mode::Child, &["sleep", "100"], &[]);
    let ceiling = Duration::from_secs(120);
    let deadline = Instant::now() + ceiling;
    while tree.read_out("starts").lines().count() < 4 {
        assert!(
            Instant::now() < deadline,
            "the service was not started 4 times"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let polling = || -> (Vec<i32>, usize) {
        let seen: std::collections::BTreeSet<i32> = tree
            .read_out("pollers")
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect();
        let alive = seen
            .iter()
            .copied()
            .filter(|p| aiida_init::runtime::pid_alive(*p))
            .collect();
        (alive, seen.len())
    };
    // Every poller but the one of the running start (if any) ends with its start, however busy
    // the machine is.
    let deadline = Instant::now() + ceiling;
    loop {
        let (alive, seen) = polling();
        if alive.len() <= 1 {
            assert!(seen >= 2, "too few pollers ran a check to tell: {seen}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "pollers of earlier starts still poll: {alive:?} ({seen} seen)"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let (out, _) = running.shut_down(LIMIT);
    assert_eq!(out.code, 0, "{out:?}");
}

/// The readiness poller sleeps while its check runs: RabbitMQ's check runs for the whole of its
/// boot, on the cores the boot needs. It used to wake every 5 ms, and to spin for the last
/// millisecond of each wait (its poll timeout rounded down): about a seventh of a core.
#[test]
fn the_readiness_poller_takes_no_cpu_while_its_check_runs() {
    prerequisites();
    let tree = Tree::new();
    let stat = tree.out_file("poller-stat");
    tree.file("db", "type", "longrun\n")
        .exec(
            "db",
            "run",
            "#!/command/execlineb -P\ns6-notifyoncheck -w 50 -n 0\nsleep 100\n",
        )
        .file("db", "notification-fd", "3\n")
        .exec(
            "db",
            "data/check",
            &format!(
                "#!/bin/sh\nsleep 3\ncat /proc/$PPID/stat > {}.part && mv {0}.part {0}\n",
                stat.display()
            ),
        )
        .user("db");
    let running = tree.spawn(Mode::Child, &["sleep", "100"], &[]);
    let deadline = Instant::now() + Duration::from_secs(120);
    while tree.read_out("poller-stat").is_empty() {
        assert!(
            Instant::now() < deadline,
            "the check did not run to its end"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let stat = tree.read_out("poller-stat");
    // utime and stime: fields 14 and 15 of /proc/PID/stat, the 12th and 13th after the command.
    let fields: Vec<&str> = stat
        .rsplit_once(") ")
        .map(|(_, rest)| rest.split(' ').collect())
        .unwrap_or_default();
    let ticks: Vec<u64> = fields
        .get(11..13)
        .unwrap_or_default()
        .iter()
        .filter_map(|f| f.parse().ok())
        .collect();
    assert_eq!(ticks.len(), 2, "unreadable stat: {stat}");
    // SAFETY: sysconf has no preconditions.
    let ticks_per_s = u64::try_from(unsafe { libc::sysconf(libc::_SC_CLK_TCK) }).unwrap();
    let cpu_ms = (ticks[0] + ticks[1]) * 1000 / ticks_per_s;
    // Waking up alone costs microseconds: 100 ms over 3 s is a poller that polls or spins.
    assert!(
        cpu_ms < 100,
        "the poller used {cpu_ms} ms of CPU during a 3 s check"
    );
    running.shut_down(LIMIT);
}

#[test]
fn a_longrun_killed_with_sigkill_comes_back() {
    prerequisites();
    for mode in ALL_MODES {
        let tree = Tree::new();
        let pids = tree.out_file("pids");
        tree.longrun(
            "svc",
            &format!(
                "{}\necho $$ >> {}\nexec sleep 100",
                tree.log_event("spawn"),
                pids.display()
            ),
            &[],
        );
        let running = tree.spawn(mode, &[], &[]);
        running.wait_for_file(&pids, LIMIT);
        // The file exists as soon as the shell opened it: wait for its line.
        let deadline = Instant::now() + LIMIT;
        while !tree.read_out("pids").ends_with('\n') {
            assert!(Instant::now() < deadline, "the service wrote no pid");
            std::thread::sleep(Duration::from_millis(10));
        }
        let first: i32 = tree.read_out("pids").trim().parse().unwrap();
        let first_host = host_pid_of_sleep(&running, first, mode);
        // SAFETY: kill(2).
        unsafe { libc::kill(first_host, libc::SIGKILL) };
        let deadline = Instant::now() + LIMIT;
        while tree.read_out("pids").lines().count() < 2 {
            assert!(Instant::now() < deadline, "the service did not come back");
            std::thread::sleep(Duration::from_millis(20));
        }
        let spawns: Vec<u64> = tree
            .events()
            .iter()
            .filter(|(_, w)| w == "spawn")
            .map(|(t, _)| *t)
            .collect();
        // aiida-init respawns 1 s after the previous spawn; the scripts' own clocks start a
        // little after each spawn, so allow for that jitter (an immediate restart is ~ms).
        assert!(
            spawns[1] - spawns[0] >= 800,
            "restarts are at least 1 s apart: {spawns:?}"
        );
        let (out, _) = running.shut_down(LIMIT);
        assert_eq!(out.code, 0, "{out:?}");
    }
}

/// The host pid of a process known by its pid inside the namespace (NSpid in /proc).
fn host_pid_of_sleep(running: &crate::support::Running, inner: i32, mode: Mode) -> i32 {
    if mode == Mode::Child {
        return inner;
    }
    let top = running.top_pid();
    let mut todo = vec![top];
    while let Some(p) = todo.pop() {
        if let Ok(status) = std::fs::read_to_string(format!("/proc/{p}/status")) {
            if let Some(line) = status.lines().find(|l| l.starts_with("NSpid:")) {
                if line.split_whitespace().last() == Some(&inner.to_string()) {
                    return p;
                }
            }
        }
        todo.extend(crate::support::children_of(p));
    }
    panic!("no process with pid {inner} in the namespace");
}

#[test]
fn a_failing_oneshot_under_each_stage2_behaviour() {
    prerequisites();
    for mode in ALL_MODES {
        for behaviour in ["0", "1", "2"] {
            let tree = Tree::new();
            tree.oneshot(
                "broken",
                "sh -c \"echo about to fail; exit 3\"\n",
                None,
                &[],
            );
            let marker = tree.out_file("cmd-ran");
            let cmd = format!("touch {}", marker.display());
            let out = tree.run(
                mode,
                &["sh", "-c", &cmd],
                &[("S6_BEHAVIOUR_IF_STAGE2_FAILS", behaviour)],
                LIMIT,
            );
            match behaviour {
                "0" | "1" => {
                    assert_eq!(out.code, 0, "{behaviour}: {out:?}");
                    assert!(marker.exists(), "{behaviour}: the command must still run");
                }
                _ => {
                    assert_eq!(
                        out.code, 3,
                        "the failing code becomes the exit code: {out:?}"
                    );
                    assert!(!marker.exists(), "the command must not run");
                }
            }
            if behaviour == "1" {
                assert!(
                    out.stderr
                        .contains("warning: some services failed to start (broken)"),
                    "{out:?}"
                );
            }
            assert!(out.stderr.contains("broken: up exited 3"), "{out:?}");
        }
    }
}

#[test]
fn up_and_down_timeouts_are_enforced() {
    prerequisites();
    for mode in ALL_MODES {
        let tree = Tree::new();
        tree.oneshot("slow-up", "sleep 30\n", None, &[])
            .file("slow-up", "timeout-up", "300\n");
        let out = tree.run(
            mode,
            &["true"],
            &[("S6_BEHAVIOUR_IF_STAGE2_FAILS", "2")],
            LIMIT,
        );
        assert_ne!(out.code, 0, "{mode:?}: {out:?}");
        assert!(
            out.stderr.contains("slow-up: up timed out after 300 ms"),
            "{mode:?}: {out:?}"
        );
        assert!(out.elapsed < Duration::from_secs(3), "{mode:?}: {out:?}");

        let tree = Tree::new();
        tree.oneshot("slow-down", "true\n", Some("sleep 30\n"), &[])
            .file("slow-down", "timeout-down", "300\n");
        let out = tree.run(mode, &["true"], &[], LIMIT);
        assert_eq!(out.code, 0, "{mode:?}: {out:?}");
        assert!(
            out.stderr.contains("slow-down: down timed out"),
            "{mode:?}: {out:?}"
        );
        assert!(out.elapsed < Duration::from_secs(3), "{mode:?}: {out:?}");
    }
}

#[test]
fn shutdown_runs_in_reverse_dependency_order() {
    prerequisites();
    for mode in ALL_MODES {
        let tree = Tree::new();
        tree.oneshot_sh("a", "true", Some(&tree.log_event("a-down")), &[]);
        let b = format!(
            "trap '{}; exit 0' TERM\nwhile :; do sleep 0.05; done",
            tree.log_event("b-term")
        );
        tree.longrun("b", &b, &["a"]);
        let up = tree.out_file("c-up");
        tree.oneshot_sh(
            "c",
            &format!("touch {}", up.display()),
            Some(&tree.log_event("c-down")),
            &["b"],
        );
        let running = tree.spawn(mode, &[], &[]);
        running.wait_for_file(&up, LIMIT);
        running.wait_ready(&["c"]);
        let (out, _) = running.shut_down(LIMIT);
        assert_eq!(out.code, 0, "{mode:?}: {out:?}");
        let order = tree.event_names();
        assert_eq!(
            order,
            vec!["c-down", "b-term", "a-down"],
            "{mode:?}: {out:?}"
        );
    }
}

/// `stops-before.d/` orders the shutdown alone: the client starts without waiting for the
/// broker (which becomes ready only once the client runs, so a start order would never finish),
/// and the broker gets its signal only once the client, slow to stop, is down.
#[test]
fn a_stop_order_holds_at_shutdown_without_ordering_the_start() {
    prerequisites();
    let tree = Tree::new();
    let client_started = tree.out_file("client-started");
    let broker = format!(
        "i=0; until [ -e {} ] || [ $i -ge 600 ]; do sleep 0.05; i=$((i+1)); done\n\
         [ -e {} ] || exit 1\necho >&3\ntrap '{}; exit 0' TERM\nwhile :; do sleep 0.05; done",
        client_started.display(),
        client_started.display(),
        tree.log_event("broker-term")
    );
    tree.longrun("broker", &broker, &[])
        .file("broker", "notification-fd", "3\n");
    let client = format!(
        "touch {}\ntrap 'sleep 0.3; {}; exit 0' TERM\nwhile :; do sleep 0.05; done",
        client_started.display(),
        tree.log_event("client-term")
    );
    tree.longrun("client", &client, &[])
        .file("client", "stops-before.d/broker", "");
    let running = tree.spawn(Mode::Pid1, &[], &[]);
    running.wait_ready(&["broker", "client"]);
    let (out, _) = running.shut_down(LIMIT);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(
        tree.event_names(),
        vec!["client-term", "broker-term"],
        "{out:?}"
    );
}

#[test]
fn shutdown_with_nothing_left_returns_at_once() {
    prerequisites();
    for mode in ALL_MODES {
        let tree = Tree::new();
        let started = tree.out_file("started");
        tree.longrun(
            "quick",
            &format!("touch {}; exec sleep 100", started.display()),
            &[],
        );
        let running = tree.spawn(
            mode,
            &[],
            &[
                ("S6_KILL_GRACETIME", "3000"),
                ("S6_SERVICES_GRACETIME", "3000"),
            ],
        );
        running.wait_for_file(&started, LIMIT);
        let (out, took) = running.shut_down(LIMIT);
        assert_eq!(out.code, 0, "{mode:?}: {out:?}");
        assert!(
            took < Duration::from_millis(1000),
            "{mode:?}: shutdown took {took:?}, the grace time must not be slept"
        );
    }
}

#[test]
fn a_service_that_ignores_sigterm_is_killed_after_timeout_kill() {
    prerequisites();
    for mode in ALL_MODES {
        let tree = Tree::new();
        let started = tree.out_file("started");
        tree.longrun(
            "stubborn",
            &format!(
                "trap '' TERM\ntouch {}\nwhile :; do sleep 0.05; done",
                started.display()
            ),
            &[],
        )
        .file("stubborn", "timeout-kill", "500\n")
        .file("stubborn", "flag-timeout-killpg", "");
        let running = tree.spawn(mode, &[], &[]);
        running.wait_for_file(&started, LIMIT);
        let (out, took) = running.shut_down(LIMIT);
        assert_eq!(out.code, 0, "{mode:?}: {out:?}");
        assert!(
            took >= Duration::from_millis(450) && took < Duration::from_millis(1800),
            "{mode:?}: {took:?} {out:?}"
        );
        assert!(
            out.stderr
                .contains("stubborn: still running after its grace time: sending SIGKILL"),
            "{out:?}"
        );
    }
}

#[test]
fn finish_exiting_125_keeps_a_longrun_down() {
    prerequisites();
    for mode in ALL_MODES {
        let tree = Tree::new();
        tree.longrun("once", &tree.log_event("run"), &[]).exec(
            "once",
            "finish",
            &format!(
                "#!/bin/sh\n{}\nexit 125\n",
                tree.log_event("finish $1 $2 $3")
            ),
        );
        let out = tree.run(mode, &["sleep", "1.3"], &[], LIMIT);
        assert_eq!(out.code, 0, "{mode:?}: {out:?}");
        let events = tree.event_names();
        assert_eq!(events, vec!["run", "finish 0 0 once"], "{mode:?}: {out:?}");
    }
}

#[test]
fn the_container_environment_needs_with_contenv_unless_s6_keep_env() {
    prerequisites();
    for mode in [Mode::Pid1, Mode::NonRootPid1] {
        let tree = Tree::new();
        let plain = tree.out_file("plain");
        let with = tree.out_file("with");
        tree.oneshot(
            "plain",
            &format!("sh -c \"echo FOO=$FOO > {}\"\n", plain.display()),
            None,
            &[],
        );
        tree.oneshot(
            "with",
            &format!(
                "with-contenv sh -c \"echo FOO=$FOO > {}\"\n",
                with.display()
            ),
            None,
            &[],
        );
        let out = tree.run(mode, &["true"], &[("FOO", "bar")], LIMIT);
        assert_eq!(out.code, 0, "{out:?}");
        assert_eq!(
            std::fs::read_to_string(&plain).unwrap_or_else(|_| panic!("{out:?}")),
            "FOO=\n"
        );
        assert_eq!(
            std::fs::read_to_string(&with).unwrap_or_else(|_| panic!("{out:?}")),
            "FOO=bar\n"
        );
        let out = tree.run(
            mode,
            &["true"],
            &[("FOO", "kept"), ("S6_KEEP_ENV", "1")],
            LIMIT,
        );
        assert_eq!(out.code, 0, "{out:?}");
        assert_eq!(std::fs::read_to_string(&plain).unwrap(), "FOO=kept\n");
    }
}

#[test]
fn non_root_uses_the_fallback_runtime_dir_and_s6_setuidgid_rules() {
    prerequisites();
    let tree = Tree::new();
    let me = tree.out_file("self");
    let other = tree.out_file("other");
    tree.oneshot(
        "self",
        &format!("s6-setuidgid nobody sh -c \"id -u > {}\"\n", me.display()),
        None,
        &[],
    );
    tree.oneshot(
        "other",
        &format!(
            "foreground {{ s6-setuidgid root true }} importas r ? sh -c \"echo $r > {}\"\n",
            other.display()
        ),
        None,
        &[],
    );
    let rt = tree.path().join("rt-nobody");
    let cmd = format!(
        "test -f {}/aiida-init/state.json && test -f {}/s6/container_environment/PATH",
        rt.display(),
        rt.display()
    );
    let out = tree.run(Mode::NonRootPid1, &["sh", "-c", &cmd], &[], LIMIT);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(std::fs::read_to_string(&me).unwrap(), "65534\n");
    assert_eq!(
        std::fs::read_to_string(&other).unwrap().trim(),
        "111",
        "{out:?}"
    );
    assert!(out.stderr.contains("cannot switch to root"), "{out:?}");
}

#[test]
fn non_root_without_xdg_runtime_dir_falls_back_to_tmp() {
    prerequisites();
    let tree = Tree::new();
    let dir = std::path::Path::new("/tmp/aiida-init-65534");
    let cmd = format!("test -f {}/aiida-init/state.json", dir.display());
    let mut c = tree.command(Mode::NonRootPid1, &["sh", "-c", &cmd]);
    c.env_remove("XDG_RUNTIME_DIR");
    let out = c.output().unwrap();
    let _ = std::fs::remove_dir_all(dir);
    assert!(out.status.success(), "{out:?}");
}

#[test]
fn status_and_wait_report_the_running_instance() {
    prerequisites();
    let tree = Tree::new();
    tree.longrun("slow", "sleep 0.5; echo >&3; exec sleep 100", &[])
        .file("slow", "notification-fd", "3\n");
    tree.oneshot(
        "broken",
        "sh -c \"echo it went wrong; exit 4\"\n",
        None,
        &[],
    );
    tree.file("lonely", "type", "bundle\n").user("lonely");
    let running = tree.spawn(Mode::Pid1, &[], &[]);
    let rt = tree.path().join("rt");
    let env = [("AIIDA_INIT_RUNTIME_DIR", rt.as_path())];
    let t = Instant::now();
    let wait = crate::support::aiida_init(&["wait", "--timeout", "10", "slow"], &env);
    assert!(wait.status.success(), "{wait:?}");
    assert!(
        t.elapsed() >= Duration::from_millis(400),
        "wait returned before readiness"
    );
    let wait = crate::support::aiida_init(&["wait", "--timeout", "10"], &env);
    assert_eq!(wait.status.code(), Some(1), "{wait:?}");
    assert_eq!(
        String::from_utf8_lossy(&wait.stderr),
        "aiida-init wait: broken failed: up exited 4\nlast lines of broken:\n  it went wrong\n"
    );
    let status = crate::support::aiida_init(&["status", "--json"], &env);
    let v: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    let slow = v["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "slow")
        .unwrap();
    assert_eq!(slow["state"], "ready");
    assert!(slow["pid"].as_i64().unwrap() > 1);
    assert!(slow["took_ms"].as_u64().unwrap() >= 400);
    // The human form, whole, is in the `status` snapshots.
    let wait = crate::support::aiida_init(&["wait", "--timeout", "0.3", "nosuch"], &env);
    assert_eq!(wait.status.code(), Some(1));
    let (out, _) = running.shut_down(LIMIT);
    assert_eq!(out.code, 0);
}

#[test]
fn halt_and_s6_svc_control_the_running_instance() {
    prerequisites();
    let tree = Tree::new();
    let pids = tree.out_file("pids");
    tree.longrun(
        "svc",
        &format!("echo $$ >> {}; exec sleep 100", pids.display()),
        &[],
    );
    let running = tree.spawn(Mode::Pid1, &[], &[]);
    running.wait_for_file(&pids, LIMIT);
    let rt = tree.path().join("rt");
    let env = [("AIIDA_INIT_RUNTIME_DIR", rt.as_path())];
    let svc_dir = tree.svc("svc");
    let out = crate::support::aiida_init(&["s6-svc", "-r", svc_dir.to_str().unwrap()], &env);
    assert!(out.status.success(), "{out:?}");
    let deadline = Instant::now() + LIMIT;
    while tree.read_out("pids").lines().count() < 2 {
        assert!(
            Instant::now() < deadline,
            "s6-svc -r did not restart the service"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    std::fs::write(rt.join("s6-linux-init-container-results/exitcode"), "42\n").unwrap();
    let out = crate::support::aiida_init(&["halt"], &env);
    assert!(out.status.success(), "{out:?}");
    let out = running.finish(LIMIT);
    assert_eq!(out.code, 42, "halt exits with the exit code file: {out:?}");
}

#[test]
fn legacy_directories_run_in_s6_overlay_order() {
    prerequisites();
    let tree = Tree::new();
    let etc = tree.path().join("root/etc");
    crate::support::write_exec(
        &etc.join("cont-init.d/10-first"),
        &format!("#!/bin/sh\n{}\n", tree.log_event("cont-init-10")),
    );
    crate::support::write_exec(
        &etc.join("cont-init.d/20-second"),
        &format!("#!/bin/sh\nsleep 0.2\n{}\n", tree.log_event("cont-init-20")),
    );
    crate::support::write_exec(
        &etc.join("cont-finish.d/10-bye"),
        &format!("#!/bin/sh\n{}\n", tree.log_event("cont-finish")),
    );
    crate::support::write_exec(
        &etc.join("services.d/legacy/run"),
        &format!(
            "#!/bin/sh\n{}\necho >&3\nexec sleep 100\n",
            tree.log_event("services.d")
        ),
    );
    crate::support::write(&etc.join("services.d/legacy/notification-fd"), "3\n");
    tree.oneshot_sh(
        "usersvc",
        &tree.log_event("user"),
        Some(&tree.log_event("user-down")),
        &["base"],
    );
    // With S6_CMD_WAIT_FOR_SERVICES=1 the command waits for services.d to be ready.
    let out = tree.run(
        Mode::Pid1,
        &["sh", "-c", &tree.log_event("cmd")],
        &[("S6_CMD_WAIT_FOR_SERVICES", "1")],
        LIMIT,
    );
    assert_eq!(out.code, 0, "{out:?}");
    let order = tree.event_names();
    assert_eq!(
        order,
        vec![
            "cont-init-10",
            "cont-init-20",
            "user",
            "services.d",
            "cmd",
            "user-down",
            "cont-finish"
        ],
        "{out:?}"
    );
}

#[test]
fn run_and_finish_without_the_exec_bit_run_through_their_interpreter_as_under_s6_rc() {
    prerequisites();
    let tree = Tree::new();
    let ran = tree.out_file("ran");
    let finished = tree.out_file("finished");
    // Mode 0644, as s6-rc source trees in the wild ship them.
    tree.file("daemon", "type", "longrun\n")
        .file(
            "daemon",
            "run",
            &format!(
                "#!/bin/sh\necho \"run as $0\" > {}\nexit 3\n",
                ran.display()
            ),
        )
        .file(
            "daemon",
            "finish",
            &format!(
                "#!/bin/sh -e\necho \"finish $1\" > {}\nexit 125\n",
                finished.display()
            ),
        )
        .user("daemon");
    let wait = format!("while [ ! -s {} ]; do sleep 0.05; done", finished.display());
    let out = tree.run(Mode::Pid1, &["sh", "-c", &wait], &[], LIMIT);
    assert_eq!(out.code, 0, "{out:?}");
    let run_path = tree.svc("daemon").join("run");
    assert_eq!(
        std::fs::read_to_string(&ran).unwrap(),
        format!("run as {}\n", run_path.display())
    );
    assert_eq!(std::fs::read_to_string(&finished).unwrap(), "finish 3\n");
}

#[test]
fn each_log_line_is_written_whole() {
    // stderr is a datagram socket: each write() arrives as one message, so a line written in
    // pieces (`aiida-init: info: `, then the message) would show as several.
    let tree = Tree::new();
    tree.oneshot("setup", "true\n", None, &[]);
    tree.longrun(
        "daemon",
        "echo one; echo two >&2; exec sleep 100",
        &["setup"],
    );
    let (ours, theirs) = std::os::unix::net::UnixDatagram::pair().unwrap();
    let mut c = tree.command(Mode::Child, &["sh", "-c", "sleep 0.3; exit 3"]);
    c.env("S6_VERBOSITY", "2")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::from(std::os::fd::OwnedFd::from(
            theirs,
        )));
    let status = c.status().unwrap();
    assert_eq!(status.code(), Some(3));
    ours.set_nonblocking(true).unwrap();
    let mut messages = Vec::new();
    let mut buf = [0u8; 65536];
    while let Ok(n) = ours.recv(&mut buf) {
        messages.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    assert!(
        messages
            .iter()
            .any(|m| m == "aiida-init: info: starting daemon\n"),
        "{messages:?}"
    );
    assert!(
        messages.contains(&"[daemon] two\n".to_string()),
        "{messages:?}"
    );
    for m in &messages {
        assert!(
            m.ends_with('\n')
                && m.lines()
                    .all(|l| l.starts_with("aiida-init: ") || l.starts_with('[')),
            "a line written in pieces: {m:?} in {messages:?}"
        );
    }
}

/// The `state.json` entry of `name` in the instance at `env`.
fn service_state(env: &[(&str, &std::path::Path)], name: &str) -> serde_json::Value {
    let status = crate::support::aiida_init(&["status", "--json"], env);
    let v: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    v["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .cloned()
        .unwrap_or_else(|| panic!("no {name} in {v}"))
}

#[test]
fn restart_returns_once_the_longrun_is_ready_again_and_refuses_what_it_cannot_restart() {
    prerequisites();
    let tree = Tree::new();
    let first = tree.out_file("first-start-done");
    tree.longrun("db", "sleep 0.4; echo >&3; exec sleep 100", &[])
        .file("db", "notification-fd", "3\n");
    // Ready at its first start only: a restart never gets ready.
    tree.longrun(
        "flaky",
        &format!(
            "if [ -e {m} ]; then echo not this time; exec sleep 100; fi; touch {m}; echo >&3; exec sleep 100",
            m = first.display()
        ),
        &[],
    )
    .file("flaky", "notification-fd", "3\n");
    // Its finish keeps it down after any exit (as the daemon's does after `verdi daemon stop`):
    // a restart brings it up all the same.
    tree.longrun("keeps-down", "echo >&3; exec sleep 100", &[])
        .file("keeps-down", "notification-fd", "3\n")
        .exec("keeps-down", "finish", "#!/bin/sh\nexit 125\n");
    tree.oneshot("setup", "true\n", None, &[]);
    let running = tree.spawn(Mode::Pid1, &[], &[]);
    let rt = tree.path().join("rt");
    let env = [("AIIDA_INIT_RUNTIME_DIR", rt.as_path())];
    let wait = crate::support::aiida_init(&["wait", "--timeout", "20"], &env);
    assert!(wait.status.success(), "{wait:?}");
    let kept = service_state(&env, "keeps-down");
    let out = crate::support::aiida_init(&["restart", "keeps-down", "--timeout", "20"], &env);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let again = service_state(&env, "keeps-down");
    assert_eq!(again["state"], "ready");
    assert_ne!(again["pid"], kept["pid"]);
    let before = service_state(&env, "db");

    let t = Instant::now();
    let out = crate::support::aiida_init(&["restart", "db", "--timeout", "20"], &env);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(
        t.elapsed() >= Duration::from_millis(400),
        "returned before readiness"
    );
    let after = service_state(&env, "db");
    assert_eq!(after["state"], "ready");
    // Taken down and started again on request: not a restart after an exit.
    assert_eq!(after["restarts"], before["restarts"]);
    assert_ne!(after["pid"], before["pid"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("db is ready again (pid {})\n", after["pid"])
    );

    // A longrun stopped with `s6-svc -d` is started again.
    let down = crate::support::aiida_init(&["s6-svc", "-d", "db"], &env);
    assert!(down.status.success(), "{down:?}");
    let deadline = Instant::now() + LIMIT;
    while service_state(&env, "db")["state"] != "down" {
        assert!(Instant::now() < deadline, "db did not go down");
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = crate::support::aiida_init(&["restart", "db"], &env);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(service_state(&env, "db")["state"], "ready");

    let out = crate::support::aiida_init(&["restart", "setup"], &env);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "aiida-init restart: setup is a oneshot: its up ran once at start-up, and there is no process to restart\n"
    );
    let out = crate::support::aiida_init(&["restart", "nosuch"], &env);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "aiida-init restart: no service named `nosuch` in the running instance\n"
    );
    let out = crate::support::aiida_init(&["restart", "user"], &env);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "aiida-init restart: user is a bundle: restart one of its longruns (db, flaky, keeps-down, setup)\n"
    );
    let out = crate::support::aiida_init(&["restart"], &env);
    assert_eq!(out.status.code(), Some(100), "{out:?}");

    let t = Instant::now();
    let out = crate::support::aiida_init(&["restart", "flaky", "--timeout", "1.5"], &env);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(t.elapsed() >= Duration::from_millis(1500));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "aiida-init restart: flaky not ready again after 1.5s (state starting)\nlast lines of flaky:\n  not this time\n"
    );
    let (out, _) = running.shut_down(LIMIT);
    assert_eq!(out.code, 0, "{out:?}");
}

/// A longrun outside the user bundle (the aiida-services Feature's AiiDA daemon, whose profile
/// does not exist yet at start-up) is listed down, not started; `aiida-init start` brings it up
/// once its dependencies run; from then on it stays listed when it goes down, and it stops
/// before what it depends on.
#[test]
fn a_longrun_outside_the_bundle_is_listed_down_and_started_on_request() {
    prerequisites();
    let tree = Tree::new();
    tree.longrun(
        "database",
        &format!(
            "echo >&3; trap '{}; exit 0' TERM; while :; do sleep 0.05; done",
            tree.log_event("database-stopped")
        ),
        &[],
    )
    .file("database", "notification-fd", "3\n");
    // Not in the user bundle: only `type`, `run` and its dependency.
    tree.file("daemon", "type", "longrun\n")
        .exec(
            "daemon",
            "run",
            &format!(
                "#!/bin/sh\n{}\necho >&3\ntrap '{}; exit 0' TERM\nwhile :; do sleep 0.05; done\n",
                tree.log_event("daemon-started"),
                tree.log_event("daemon-stopped")
            ),
        )
        .file("daemon", "notification-fd", "3\n")
        .file("daemon/dependencies.d", "database", "");
    let running = tree.spawn(Mode::Pid1, &[], &[]);
    let rt = tree.path().join("rt");
    let env = [("AIIDA_INIT_RUNTIME_DIR", rt.as_path())];
    let wait = crate::support::aiida_init(&["wait", "--timeout", "20"], &env);
    assert!(wait.status.success(), "{wait:?}");
    std::thread::sleep(Duration::from_millis(500));
    let before = service_state(&env, "daemon");
    assert_eq!(
        (before["state"].as_str(), &before["pid"]),
        (Some("down"), &serde_json::Value::Null)
    );
    assert!(!tree.event_names().contains(&"daemon-started".to_string()));

    let out = crate::support::aiida_init(&["start", "daemon", "--timeout", "20"], &env);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(service_state(&env, "daemon")["state"], "ready");
    let out = crate::support::aiida_init(&["wait", "--timeout", "20", "daemon"], &env);
    assert!(out.status.success(), "{out:?}");

    let (out, _) = running.shut_down(LIMIT);
    assert_eq!(out.code, 0, "{out:?}");
    tree.assert_not_before("database-stopped", "daemon-stopped");
}

#[test]
fn a_longrun_whose_finish_sends_once_stays_down_until_start_brings_it_up() {
    prerequisites();
    let tree = Tree::new();
    // As the AiiDA daemon's service: run exits 0 when its user stopped it, and then its finish
    // keeps it down (`s6-svc -O`) instead of letting it be restarted.
    let stop = tree.out_file("stop-now");
    tree.longrun(
        "daemon",
        &format!(
            "echo >&3; while [ ! -e {s} ]; do sleep 0.05; done; rm -f {s}; exit 0",
            s = stop.display()
        ),
        &[],
    )
    .file("daemon", "notification-fd", "3\n")
    .exec(
        "daemon",
        "finish",
        &format!(
            "#!/bin/sh\nif [ \"$1\" = 0 ]; then {} s6-svc -O .; echo stopped by its user; fi\nexit 0\n",
            crate::support::bin().display()
        ),
    );
    let running = tree.spawn(Mode::Pid1, &[], &[]);
    let rt = tree.path().join("rt");
    let env = [("AIIDA_INIT_RUNTIME_DIR", rt.as_path())];
    let wait = crate::support::aiida_init(&["wait", "--timeout", "20"], &env);
    assert!(wait.status.success(), "{wait:?}");
    let first = service_state(&env, "daemon");

    // `start` of a longrun that runs leaves it as it is.
    let out = crate::support::aiida_init(&["start", "daemon", "--timeout", "20"], &env);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(service_state(&env, "daemon")["pid"], first["pid"]);

    std::fs::write(&stop, "").unwrap();
    let deadline = Instant::now() + LIMIT;
    while service_state(&env, "daemon")["state"] != "down" {
        assert!(Instant::now() < deadline, "daemon did not go down");
        std::thread::sleep(Duration::from_millis(20));
    }
    // Down for good: not restarted a second later, and `wait` says so at once.
    std::thread::sleep(Duration::from_millis(1500));
    let down = service_state(&env, "daemon");
    assert_eq!(
        (down["state"].as_str(), down["restarts"].as_u64()),
        (Some("down"), Some(0))
    );
    let t = Instant::now();
    let out = crate::support::aiida_init(&["wait", "--timeout", "20"], &env);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "wait did not fail at once"
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "aiida-init wait: daemon is down and not restarted (`aiida-init start daemon` starts it)\nlast lines of daemon:\n  stopped by its user\n"
    );
    let status = crate::support::aiida_init(&["status"], &env);
    let table = String::from_utf8_lossy(&status.stdout);
    let row = table.lines().find(|l| l.starts_with("daemon ")).unwrap();
    assert!(row.contains("stopped by its user"), "{table}");

    // `start` brings it up again; `wait` is then satisfied.
    let out = crate::support::aiida_init(&["start", "daemon", "--timeout", "20"], &env);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let again = service_state(&env, "daemon");
    assert_eq!(again["state"], "ready");
    assert_ne!(again["pid"], first["pid"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("daemon is ready (pid {})\n", again["pid"])
    );
    let wait = crate::support::aiida_init(&["wait", "--timeout", "20"], &env);
    assert!(wait.status.success(), "{wait:?}");
    let out = crate::support::aiida_init(&["start", "user"], &env);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let (out, _) = running.shut_down(LIMIT);
    assert_eq!(out.code, 0, "{out:?}");
}

#[test]
fn a_second_instance_beside_a_running_one_starts_nothing_and_says_why() {
    prerequisites();
    let tree = Tree::new();
    let starts = tree.out_file("starts");
    tree.longrun(
        "server",
        &format!(
            "echo started >> {}; echo >&3; exec sleep 100",
            starts.display()
        ),
        &[],
    )
    .file("server", "notification-fd", "3\n");
    let running = tree.spawn(Mode::Pid1, &[], &[]);
    running.wait_ready(&["server"]);
    // `aiida-init stop server` is no command of aiida-init's: it reads as a container command,
    // which a second instance would run after starting every service again.
    let out = tree
        .command(Mode::Child, &["stop", "server"])
        .output()
        .expect("run aiida-init");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(100), "{stderr}");
    assert!(
        stderr.contains("another aiida-init (pid ")
            && stderr.contains("already runs the services of")
            && stderr.contains("`stop server`"),
        "{stderr}"
    );
    assert_eq!(tree.read_out("starts"), "started\n");
    let status = crate::support::aiida_init(
        &["status", "--json"],
        &[("AIIDA_INIT_RUNTIME_DIR", running.runtime.as_path())],
    );
    let v: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(v["pid"], 1, "the state file names another instance: {v}");
    let (out, _) = running.shut_down(LIMIT);
    assert_eq!(out.code, 0);
}
