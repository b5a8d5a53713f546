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
        c.processes("[d]aemon worker"),
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
