//! The with-services image under load and against its own clients: `verdi` keeps working with
//! every CPU core busy, the daemon is reachable however many clients ask for it while the
//! container starts, and the daemon service repairs its PID and sockets files when something
//! rewrites them. Longer soak loops are in `bench/reliability.sh`.

use crate::support::{Need, skip_without};
use std::time::{Duration, Instant};

use crate::support::images::{
    Container, Start, await_sum_within, base_image, cpu_hogs, docker, home_volume, submit_add,
    text, with_services_image,
};
use crate::support::{Harness, poll_until};

/// `verdi daemon status` succeeds and `verdi status` shows everything ready.
fn assert_daemon_reachable(c: &Container, what: &str) {
    let (code, out) = c.exec(&["verdi", "daemon", "status"]);
    assert_eq!(
        code,
        0,
        "{what}: `verdi daemon status` failed:\n{out}\n--- sockets file, socket folders ---\n{}\n--- logs ---\n{}",
        c.sh("cat ~/.aiida/daemon/circus-default.sockets; echo; ls -la /tmp"),
        c.logs()
    );
    c.assert_verdi_ready(true);
}

/// With two busy loops per CPU core running (started before the container, so its start-up is
/// loaded too): `verdi status`, a calculation through the supervised daemon, `verdi daemon
/// restart` and `stop`, the supervised daemon brought back, and a `docker stop` that needs no
/// SIGKILL.
#[test]
fn verdi_and_the_daemon_work_with_every_core_busy() {
    if skip_without(&[Need::Docker]) {
        return;
    }
    let h = Harness::new();
    let _hogs = cpu_hogs(&h, &base_image(), 2, 900);
    let c = Container::start(&h, &with_services_image(), Start::default());
    c.wait_ready();
    assert_daemon_reachable(&c, "under load, once ready");

    let pk = submit_add(&c, 4, 5, None);
    assert_eq!(await_sum_within(&c, &pk, 600), 9);

    // `verdi daemon restart` is a stop and a start: the supervised daemon stays down (stopped
    // as asked) and the new one runs outside aiida-init.
    let (code, out) = c.exec(&["verdi", "daemon", "restart"]);
    assert_eq!(code, 0, "`verdi daemon restart` under load failed:\n{out}");
    assert!(!out.contains("timed out"), "{out}");
    assert_daemon_reachable(&c, "under load, after verdi daemon restart");
    let (code, out) = c.exec(&["verdi", "daemon", "stop"]);
    assert_eq!(code, 0, "`verdi daemon stop` under load failed:\n{out}");
    assert!(!out.contains("timed out"), "{out}");
    assert_eq!(
        c.daemon_workers(),
        0,
        "a worker is left after verdi daemon stop"
    );

    // The supervised daemon again, as the devcontainer's lifecycle command brings it back.
    c.sh("/command/s6-svc -u /run/service/aiida-daemon");
    c.wait_ready();
    assert_daemon_reachable(&c, "under load, the supervised daemon started again");
    let pk = submit_add(&c, 20, 22, None);
    assert_eq!(await_sum_within(&c, &pk, 600), 42);

    let took = c.stop();
    assert_eq!(
        c.inspect("{{.State.ExitCode}}"),
        "0",
        "docker stop under load needed SIGKILL (after {took:?}):\n{}",
        c.logs()
    );
}

/// Clients from the first instant of start-up: three shells call `verdi status` and `verdi
/// daemon status` one after another from `docker run -d` on until the container is ready, on a
/// home volume that keeps the daemon's files from one container to the next (the first start
/// makes the profile, the others reuse it). Every start ends with the daemon reachable, and the
/// sockets file names the folder circus listens in.
#[test]
fn the_daemon_is_reachable_whatever_clients_do_while_it_starts() {
    if skip_without(&[Need::Docker]) {
        return;
    }
    const STARTS: usize = 5;
    let h = Harness::new();
    let home = home_volume(&h);
    let hammer = "for i in 1 2 3; do \
        (while [ ! -e /tmp/stop-clients ]; do verdi status; verdi daemon status; done >/tmp/clients-$i.log 2>&1 &) ; \
        done";
    for start in 1..=STARTS {
        let c = Container::start(&h, &with_services_image(), Start::with_home(&home));
        let out = docker(&["exec", "-d", &c.name, "sh", "-c", hammer]);
        assert!(out.status.success(), "starting the clients: {}", text(&out));
        c.wait_ready();
        // A few more rounds of clients after readiness, then they stop.
        std::thread::sleep(Duration::from_secs(3));
        c.sh("touch /tmp/stop-clients");
        assert!(
            poll_until(Duration::from_secs(180), Duration::from_millis(500), || {
                c.processes("[s]top-clients") == 0
            }),
            "the clients did not stop"
        );
        let clients = c.sh("cat /tmp/clients-*.log | grep -c . || true");
        assert!(
            clients.trim().parse::<u32>().unwrap_or(0) > 0,
            "start {start}: the clients never ran"
        );
        assert_daemon_reachable(&c, &format!("start {start} of {STARTS}"));
        c.sh("test -S \"$(cat ~/.aiida/daemon/circus-default.sockets)/circus.c.sock\"");
        c.stop();
        assert_eq!(c.inspect("{{.State.ExitCode}}"), "0", "{}", c.logs());
        c.remove();
    }
}

/// What the sockets race did, done by hand: the sockets file names an empty folder and the PID
/// file is gone, as when a client believed no daemon ran. The daemon service rewrites both
/// within seconds, the daemon is reachable again, and a calculation runs.
#[test]
fn the_daemon_repairs_its_pid_and_sockets_files() {
    if skip_without(&[Need::Docker]) {
        return;
    }
    let h = Harness::new();
    let c = Container::start(&h, &with_services_image(), Start::default());
    c.wait_ready();
    let pid = c.sh("cat ~/.aiida/daemon/circus-default.pid");
    c.sh("echo \"$(mktemp -d)\" > ~/.aiida/daemon/circus-default.sockets; rm ~/.aiida/daemon/circus-default.pid");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (code, _) = c.exec(&["verdi", "daemon", "status"]);
        if code == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the daemon's files were not repaired:\n{}",
            c.logs()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    assert_eq!(c.sh("cat ~/.aiida/daemon/circus-default.pid"), pid);
    assert!(c.logs().contains("rewritten"), "{}", c.logs());
    assert_daemon_reachable(&c, "after the repair");
    let pk = submit_add(&c, 1, 2, None);
    assert_eq!(await_sum_within(&c, &pk, 300), 3);
}

/// The images' verdi (`Dockerfiles/aiida-core-base/init/verdi`, first on PATH) while a container
/// starts. aiida-core's verdi writes an empty configuration file where it finds none, and one
/// that looked just before aiida-prepare wrote the profile's writes its empty one over it (the
/// profile is gone, the daemon starts without one): the test above once caught that on a slow
/// machine. So while aiida-prepare is still on its way, the images' verdi says so and waits until
/// it is done before aiida-core's verdi runs; once it is done, where aiida-init defines no such
/// service (the Features' trees) and where no aiida-init runs, it runs at once. The answers of
/// `aiida-init wait` and aiida-core's verdi are stand-ins here (the messages aiida-init prints),
/// so that each case is exact; the test above has the real ones race.
#[test]
fn verdi_waits_until_aiida_prepare_is_done_while_the_container_starts() {
    let dir = tempfile::tempdir().unwrap();
    let (bin, wrapper, state) = (
        dir.path().join("bin"),
        dir.path().join("wrapper"),
        dir.path().join("state"),
    );
    for folder in [&bin, &wrapper, &state] {
        std::fs::create_dir(folder).unwrap();
    }
    let script = |path: &std::path::Path, body: &str| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::write(path, format!("#!/bin/sh\n{body}")).unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
    };
    // aiida-init's answers to `wait --timeout 0 aiida-prepare` in each case, and its blocking
    // wait, which returns once the test has marked aiida-prepare done.
    script(
        &bin.join("aiida-init"),
        r#"echo "aiida-init $*" >>"$STATE/calls"
case "$FAKE_CASE $1 $2 $3" in
    "done wait --timeout 0") exit 0 ;;
    "no-instance wait --timeout 0")
        echo "aiida-init wait: timed out after 0s: no running aiida-init found" >&2; exit 2 ;;
    "no-service wait --timeout 0")
        echo "aiida-init wait: no service or bundle named \`aiida-prepare\` in the running instance" >&2; exit 1 ;;
    "running wait --timeout 0")
        [ -e "$STATE/prepared" ] && exit 0
        echo "aiida-init wait: aiida-prepare: not ready after 0s (state starting)" >&2; exit 2 ;;
    "running wait --timeout "*)
        while [ ! -e "$STATE/prepared" ]; do sleep 0.05; done; exit 0 ;;
esac
exit 100
"#,
    );
    // aiida-core's verdi: records that it ran, and whether the profile was there by then.
    script(
        &bin.join("verdi"),
        r#"[ -e "$STATE/prepared" ] && there=yes || there=no
echo "verdi $* (profile prepared: $there)" >>"$STATE/calls"
"#,
    );
    std::os::unix::fs::symlink(
        crate::support::project_root().join("Dockerfiles/aiida-core-base/init/verdi"),
        wrapper.join("verdi"),
    )
    .unwrap();
    let path = format!("{}:{}:/usr/bin:/bin", wrapper.display(), bin.display());
    let calls = || std::fs::read_to_string(state.join("calls")).unwrap_or_default();
    let verdi = |case: &str| {
        std::process::Command::new(wrapper.join("verdi"))
            .arg("status")
            .env("PATH", &path)
            .env("STATE", &state)
            .env("FAKE_CASE", case)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };

    // aiida-prepare still running: no verdi of aiida-core's until it is done.
    let waiting = verdi("running");
    assert!(
        poll_until(Duration::from_secs(60), Duration::from_millis(50), || {
            calls().contains("aiida-init wait --timeout 600 aiida-prepare")
        }),
        "the images' verdi did not wait for aiida-prepare: {}",
        calls()
    );
    std::thread::sleep(Duration::from_millis(300));
    assert!(!calls().contains("verdi status"), "{}", calls());
    std::fs::write(state.join("prepared"), "").unwrap();
    let out = waiting.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        calls().ends_with("verdi status (profile prepared: yes)\n"),
        "{}",
        calls()
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("waiting until aiida-prepare has prepared"),
        "{}",
        text(&out)
    );

    // Done already, no such service, no aiida-init: aiida-core's verdi at once, nothing said.
    for case in ["done", "no-service", "no-instance"] {
        std::fs::remove_file(state.join("prepared")).ok();
        std::fs::remove_file(state.join("calls")).ok();
        let out = verdi(case).wait_with_output().unwrap();
        assert!(out.status.success(), "{case}: {}", text(&out));
        assert_eq!(
            calls(),
            "aiida-init wait --timeout 0 aiida-prepare\nverdi status (profile prepared: no)\n",
            "{case}"
        );
        assert!(out.stderr.is_empty(), "{case}: {}", text(&out));
    }
}
