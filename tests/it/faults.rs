//! Faults at the edges of a with-services container's life: `docker kill` and `docker stop`
//! while it starts (on a fresh home, while the profile is being made; the drops of the build's
//! unused database and user cut short), `docker kill` with a calculation running, and a home
//! volume with no space left. Each ends with `verdi status` all green and nothing lost. The
//! faults of a running container (a service SIGKILLed) are in `bench/faults.sh`; repeated kills
//! in `soak`.

use crate::support::{Need, skip_without};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::images::{
    Container, JOB_KILLED_EXIT_STATUS, Start, await_sum_within, docker, home_volume, submit_add,
    submit_again, text, with_services_image,
};
use crate::support::{Harness, poll_until, require, unique_name};

/// Seconds a fault test waits for a state it provokes (far above the few seconds it takes on
/// a quiet machine).
const CEILING: u64 = 600;

/// The state of each service (`aiida-init status --json`), or `None` while the init does not
/// answer yet.
fn service_states(c: &Container) -> Option<BTreeMap<String, String>> {
    let (code, out) = c.exec(&["aiida-init", "status", "--json"]);
    if code != 0 {
        return None;
    }
    let status: serde_json::Value = serde_json::from_str(&out).ok()?;
    Some(
        status["services"]
            .as_array()?
            .iter()
            .map(|s| {
                (
                    s["name"].as_str().unwrap_or_default().to_owned(),
                    s["state"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect(),
    )
}

/// Polls the service states until `reached` holds; panics with the last states after
/// [`CEILING`] or when `missed` holds (the moment has passed).
fn await_states(
    c: &Container,
    what: &str,
    reached: impl Fn(&BTreeMap<String, String>) -> bool,
    missed: impl Fn(&BTreeMap<String, String>) -> bool,
) {
    let deadline = Instant::now() + Duration::from_secs(CEILING);
    let mut last = None;
    loop {
        if let Some(states) = service_states(c) {
            if reached(&states) {
                return;
            }
            assert!(
                !missed(&states),
                "the start-up went past {what} before it was seen: {states:?}"
            );
            last = Some(states);
        }
        assert!(
            Instant::now() < deadline,
            "{what} not reached in {CEILING} s: {last:?}\n{}",
            c.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn state<'a>(states: &'a BTreeMap<String, String>, service: &str) -> &'a str {
    states.get(service).map_or("", String::as_str)
}

/// What the container's current run wrote to its log (`docker logs` keeps every run's lines).
fn run_logs(c: &Container) -> String {
    let started = c.inspect("{{.State.StartedAt}}");
    text(&docker(&["logs", "--since", &started, &c.name]))
}

/// The PostgreSQL service of the current run came up once, without a crash loop, after a
/// recovery that ended in "ready to accept connections".
fn assert_postgresql_recovered(c: &Container, run_log: &str) {
    assert!(
        run_log.contains("database system is ready to accept connections"),
        "PostgreSQL did not come up:\n{run_log}"
    );
    assert!(
        !run_log.contains("PANIC"),
        "PostgreSQL's recovery failed:\n{run_log}"
    );
    let postgresql = c.service("postgresql");
    assert_eq!(
        postgresql["restarts"], 0,
        "PostgreSQL needed restarts: {postgresql}"
    );
}

/// The profile's database is `aiida-default`, the only one of its kind: an interrupted first
/// start left no second database behind.
fn assert_one_profile_database(c: &Container) {
    let names =
        c.sh("psql -X -A -t -c \"SELECT datname FROM pg_database WHERE datname LIKE 'aiida-%'\"");
    assert_eq!(names.trim(), "aiida-default", "the profile's databases");
    let status = c.assert_verdi_ready(true);
    assert!(
        status.contains("5432/aiida-default /"),
        "the profile does not use aiida-default:\n{status}"
    );
}

/// The calculation `pk` is (still) finished ok with `sum`.
fn assert_finished_with(c: &Container, pk: &str, sum: i64) {
    let check = format!(
        "from aiida import orm\nn = orm.load_node({pk})\nprint(n.is_finished_ok, n.outputs.sum.value)"
    );
    let (code, out) = c.python_in_profile(&check);
    assert_eq!(code, 0, "loading calculation {pk} failed:\n{out}");
    assert_eq!(
        out.lines().last().unwrap_or_default().trim(),
        format!("True {sum}"),
        "calculation {pk} lost:\n{out}"
    );
}

/// `docker kill` on a fresh home once PostgreSQL is up and the profile is being made (not copied
/// from the image's template), then
/// `docker start`: PostgreSQL recovers (no crash loop), the profile is completed on the one
/// database `aiida-default`, the container is ready and a calculation finishes.
#[test]
fn docker_kill_while_starting_then_start_is_ready() {
    if skip_without(&[Need::Docker]) {
        return;
    }
    let h = Harness::new();
    let home = home_volume(&h);
    let c = Container::start(
        &h,
        &with_services_image(),
        Start::with_home_making_the_profile(&home),
    );
    await_states(
        &c,
        "PostgreSQL ready while the profile is made",
        |s| state(s, "postgresql") == "ready" && state(s, "aiida-prepare") == "starting",
        |s| state(s, "aiida-prepare") == "up",
    );
    c.kill();
    assert_ne!(
        c.inspect("{{.State.ExitCode}}"),
        "0",
        "docker kill: {}",
        c.logs()
    );
    c.start_again();
    c.wait_ready();
    let run_log = run_logs(&c);
    assert_postgresql_recovered(&c, &run_log);
    assert_one_profile_database(&c);
    let pk = submit_add(&c, 2, 3, None);
    assert_eq!(await_sum_within(&c, &pk, CEILING), 5);
    c.assert_verdi_ready(true);
}

/// A home volume whose first container made no profile, so that the image build's unused
/// database `aiida-default` and its user are still in its cluster, in the state `sql` (run as
/// PostgreSQL's superuser in that container) leaves them; `check` looks at that state before the
/// container goes.
fn home_with_the_build_database_changed_by(
    h: &Harness,
    sql: &str,
    check: impl FnOnce(&Container),
) -> String {
    let home = home_volume(h);
    let without_profile = Container::start(
        h,
        &with_services_image(),
        Start {
            env: vec!["SETUP_DEFAULT_AIIDA_PROFILE=false".into()],
            ..Start::with_home(&home)
        },
    );
    without_profile.wait_ready();
    without_profile.sh(&format!("psql -d postgres -c \"{sql}\""));
    check(&without_profile);
    without_profile.stop();
    without_profile.remove();
    home
}

/// The PostgreSQL users named `aiida-...`, one per line.
fn database_users(c: &Container) -> String {
    c.sh(
        "psql -X -A -t -c \"SELECT rolname FROM pg_roles WHERE rolname LIKE 'aiida-%' ORDER BY 1\"",
    )
    .trim()
    .to_owned()
}

/// The next start of `home` makes its profile on `aiida-default` with a user `aiida-default` of its
/// own (not beside what the build left, on `aiida-default_1`, nor on the build's user, which has no
/// password), and its log says `said`.
fn assert_the_profile_is_made_in_place(h: &Harness, home: &str, said: &str) {
    let c = Container::start(
        h,
        &with_services_image(),
        Start::with_home_making_the_profile(home),
    );
    c.wait_ready();
    assert_one_profile_database(&c);
    assert_eq!(database_users(&c), "aiida-default", "the database users");
    // Made for the profile, with the password its configuration holds (the build's user has none).
    let has_password = c.sh(
        "psql -X -A -t -c \"SELECT rolpassword IS NOT NULL FROM pg_authid WHERE rolname = 'aiida-default'\"",
    );
    assert_eq!(
        has_password.trim(),
        "t",
        "the profile's database user has no password"
    );
    let logs = c.logs();
    assert!(
        logs.contains(said),
        "the start did not say {said:?}:\n{logs}"
    );
    assert!(
        !logs.contains("cannot log in with a new password"),
        "the start found the build's user in its way:\n{logs}"
    );
}

/// A first start that makes its profile drops the image build's unused database first; killed
/// during that `DROP DATABASE`, it leaves the database marked invalid (what PostgreSQL marks
/// first, and all that is left of a drop cut short: no one can connect to it, and it keeps its
/// name). Made here exactly: the next start finishes the drop.
#[test]
fn a_drop_of_the_unused_build_database_cut_short_is_finished_by_the_next_start() {
    if skip_without(&[Need::Docker]) {
        return;
    }
    let h = Harness::new();
    let home = home_with_the_build_database_changed_by(
        &h,
        "UPDATE pg_database SET datconnlimit = -2 WHERE datname = 'aiida-default'",
        |c| {
            let (code, out) = c.exec(&["psql", "-d", "aiida-default", "-c", "SELECT 1"]);
            assert!(
                code != 0 && out.contains("invalid database"),
                "the database is not invalid as a drop cut short leaves it (exit {code}):\n{out}"
            );
        },
    );
    assert_the_profile_is_made_in_place(&h, &home, "left half-dropped by an interrupted start");
}

/// The same drop stopped between its two statements (the database dropped, its user not yet):
/// the next start drops the user that has no password and nothing depending on it.
#[test]
fn the_build_user_left_by_a_drop_cut_short_is_dropped_by_the_next_start() {
    if skip_without(&[Need::Docker]) {
        return;
    }
    let h = Harness::new();
    let home =
        home_with_the_build_database_changed_by(&h, "DROP DATABASE \\\"aiida-default\\\"", |c| {
            assert_eq!(
                database_users(c),
                "aiida-default",
                "the build's user is not left"
            );
        });
    assert_the_profile_is_made_in_place(
        &h,
        &home,
        "left by an interrupted start after its database was dropped",
    );
}

/// `docker stop` as soon as RabbitMQ's Erlang VM runs after `docker start`, while it boots (the
/// VM ignores a SIGTERM during its first half second): every service stops, nothing is killed,
/// exit 0, well within Docker's 10 s; the next start is ready.
#[test]
fn docker_stop_while_rabbitmq_boots_stops_it_without_a_kill() {
    if skip_without(&[Need::Docker]) {
        return;
    }
    let h = Harness::new();
    let c = Container::ready_with_services_on_a_new_home(&h);
    c.stop();
    c.start_again();
    // Once the VM runs (beam.emu, the image's interpreter; beam.smp, Debian's JIT): before, a
    // SIGTERM ends it at once (the signal's default action).
    assert!(
        poll_until(
            Duration::from_secs(CEILING),
            Duration::from_millis(5),
            || c.processes("[b]eam\\.\\(emu\\|smp\\)") > 0
        ),
        "RabbitMQ's VM did not start:\n{}",
        c.logs()
    );
    let took = c.stop();
    let logs = c.logs();
    let (_, last_start) = logs.rsplit_once("starting rabbitmq").unwrap();
    assert!(
        !last_start.contains("rabbitmq is ready"),
        "RabbitMQ was ready before the stop: the test missed its boot:\n{last_start}"
    );
    assert_eq!(c.inspect("{{.State.ExitCode}}"), "0", "{last_start}");
    assert!(
        !last_start.contains("SIGKILL"),
        "something was killed:\n{last_start}"
    );
    assert!(
        took < Duration::from_secs(8),
        "docker stop took {took:?}:\n{last_start}"
    );
    c.start_again();
    c.wait_ready();
    c.assert_verdi_ready(true);
}

/// `docker kill` while a calculation's job runs (the daemon has submitted it to the scheduler
/// and it sleeps), then `docker start`: the daemon picks the calculation up again, it is not left
/// waiting. Its job ran inside the container and died with it, so the calculation ends with the
/// parser's "invalid output" ([`JOB_KILLED_EXIT_STATUS`]); the same calculation submitted again with its
/// stored input nodes finishes with the right sum. Nothing is lost: the
/// interrupted calculation and its inputs stay in the database.
#[test]
fn docker_kill_during_a_calculation_then_start_resumes_it() {
    if skip_without(&[Need::Docker]) {
        return;
    }
    let h = Harness::new();
    let c = Container::ready_with_services_on_a_new_home(&h);
    // The job sleeps long enough to be running when the kill comes, however slow the machine; it
    // dies with the container, so the sleep costs nothing.
    let pk = submit_add(&c, 20, 22, Some(120));
    let running = format!(
        "import time\nfrom aiida import orm\nn = orm.load_node({pk})\n\
         deadline = time.monotonic() + {CEILING}\n\
         while n.get_job_id() is None and not n.is_terminated and time.monotonic() < deadline:\n\
         \x20   time.sleep(0.5)\n\
         print(n.get_job_id(), n.process_state)"
    );
    let (code, out) = c.python_in_profile(&running);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("ProcessState.WAITING"),
        "the calculation's job did not start (or ended already): {out}"
    );
    c.kill();
    c.start_again();
    c.wait_ready();
    assert_postgresql_recovered(&c, &run_logs(&c));
    let resumed = format!(
        "import time\nfrom aiida import orm\n\
         n = orm.load_node({pk})\n\
         deadline = time.monotonic() + {CEILING}\n\
         while not n.is_terminated and time.monotonic() < deadline:\n\
         \x20   time.sleep(0.5)\n\
         print('state', n.process_state, n.exit_status)\n\
         if n.is_finished_ok:\n\
         \x20   print('sum', n.outputs.sum.value)\n\
         elif n.exit_status == {JOB_KILLED_EXIT_STATUS}:\n\
         \x20   print('job killed')"
    );
    let (code, out) = c.python_in_profile(&resumed);
    assert_eq!(code, 0, "{out}");
    let field = |key: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(key))
            .map(|v| v.trim().to_owned())
    };
    match (field("sum "), out.lines().any(|l| l == "job killed")) {
        (Some(sum), _) => assert_eq!(sum, "42", "{out}"),
        (None, true) => assert_eq!(await_sum_within(&c, &submit_again(&c, &pk), CEILING), 42),
        _ => panic!(
            "calculation {pk} was not resumed to an end after docker start:\n{out}\n--- daemon log ---\n{}\n\
             --- RabbitMQ's queues (is the task there?) ---\n{}\n--- RabbitMQ's log ---\n{}",
            c.sh("tail -n 40 ~/.aiida/daemon/log/*.log || true"),
            c.sh("rabbitmqctl -q list_queues name messages_ready messages_unacknowledged consumers 2>&1 || true"),
            c.sh("tail -n 60 ~/.rabbitmq/log/rabbit@localhost.log || true")
        ),
    }
    c.assert_verdi_ready(true);
}

/// `docker stop` on a fresh home while the profile is being made (not copied from the image's
/// template: its database exists, the profile does not yet): aiida-init stops the services and
/// exits 0 within docker's grace period (no SIGKILL), and the next `docker start` undoes the
/// half-made creation, makes the profile on `aiida-default` again and becomes ready.
#[test]
fn docker_stop_while_the_profile_is_made_then_start_completes_it() {
    if skip_without(&[Need::Docker]) {
        return;
    }
    let h = Harness::new();
    let home = home_volume(&h);
    let c = Container::start(
        &h,
        &with_services_image(),
        Start::with_home_making_the_profile(&home),
    );
    await_states(
        &c,
        "the profile being made",
        |s| state(s, "aiida-prepare") == "starting",
        |s| state(s, "aiida-prepare") == "up",
    );
    // The database is created first, then the profile: stop in between.
    let deadline = Instant::now() + Duration::from_secs(CEILING);
    while !c.logs().contains("PostgreSQL database 'aiida-default'") {
        assert!(
            Instant::now() < deadline,
            "no database created:\n{}",
            c.logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let took = c.stop();
    let first_run = c.logs();
    assert!(
        !first_run.contains("profile 'default' created"),
        "the profile was complete before docker stop:\n{first_run}"
    );
    assert_eq!(
        c.inspect("{{.State.ExitCode}}"),
        "0",
        "docker stop while the profile was made (took {took:?}):\n{first_run}"
    );
    assert!(
        first_run.contains("database system is shut down"),
        "PostgreSQL was not shut down cleanly:\n{first_run}"
    );

    c.start_again();
    c.wait_ready();
    let run_log = run_logs(&c);
    assert!(
        run_log.contains("profile 'default' created"),
        "the next start did not complete the profile:\n{run_log}"
    );
    assert!(
        run_log.contains("profile 'default': the creation a stopped or killed start left half-way was undone, database 'aiida-default' dropped"),
        "the database of the first run was not made again:\n{run_log}"
    );
    assert_postgresql_recovered(&c, &run_log);
    assert_one_profile_database(&c);
    let pk = submit_add(&c, 1, 1, None);
    assert_eq!(await_sum_within(&c, &pk, CEILING), 2);
}

/// The profile step SIGKILLed while it makes a profile on PostgreSQL (once its database holds the
/// first tables of the schema: the database then cannot be told from someone's by its content),
/// then run again: it undoes what the killed run recorded (profile entry, database, user,
/// repository) and makes the profile on `aiida-<profile>` itself, not on `aiida-<profile>_1` beside
/// a half-made one. Run by hand in a ready container, for a second profile, so that the kill
/// lands where it is meant to; the container's first start covers the same path by chance
/// (`docker_kill_while_starting_then_start_is_ready`).
#[test]
fn a_profile_creation_killed_half_way_is_undone_and_made_again_on_its_own_database() {
    if skip_without(&[Need::Docker]) {
        return;
    }
    let h = Harness::new();
    let c = Container::ready_with_services_on_a_new_home(&h);
    let record = "$HOME/.aiida/aiida-prepare.creating";
    // The kill lands between the first table and the end of the creation (record removed);
    // a run so fast that the poll never saw a table is tried again under another name.
    let mut killed = None;
    for attempt in 1..=3 {
        let name = format!("interrupted{attempt}");
        let out = c.sh(&format!(
            r#"AIIDA_PROFILE_NAME={name} /etc/init/aiida-prepare-profile >/tmp/prepare-{name}.log 2>&1 &
pid=$!
tables() {{ psql -X -A -t -d aiida-{name} -c "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'" 2>/dev/null; }}
until [ "$(tables)" -gt 0 ] 2>/dev/null; do
    kill -0 "$pid" 2>/dev/null || {{ echo "finished first"; exit 0; }}
    sleep 0.01
done
kill -KILL "$pid"
wait "$pid" || true
if [ -e {record} ]; then echo "killed half-way: $(cat {record})"; else echo "finished first"; fi"#
        ));
        if out.contains("killed half-way") {
            killed = Some((name, out));
            break;
        }
    }
    let (name, out) =
        killed.expect("in 3 tries the profile step finished before a kill could land");
    assert!(
        out.contains(&format!("\"database\": \"aiida-{name}\"")),
        "the record does not name the database being made: {out}"
    );

    let (code, again) = c.exec(&[
        "env",
        &format!("AIIDA_PROFILE_NAME={name}"),
        "/etc/init/aiida-prepare-profile",
    ]);
    assert_eq!(code, 0, "the profile step after the kill failed:\n{again}");
    assert!(
        again.contains(&format!(
            "profile '{name}': the creation a stopped or killed start left half-way was undone, database 'aiida-{name}' dropped"
        )),
        "nothing undone:\n{again}"
    );
    assert!(
        again.contains(&format!("profile '{name}' created")),
        "no profile made:\n{again}"
    );
    let like = format!("LIKE 'aiida-{name}%'");
    let databases = c.sh(&format!(
        "psql -X -A -t -c \"SELECT datname FROM pg_database WHERE datname {like}\""
    ));
    assert_eq!(
        databases.trim(),
        format!("aiida-{name}"),
        "the profile's databases"
    );
    let users = c.sh(&format!(
        "psql -X -A -t -c \"SELECT rolname FROM pg_roles WHERE rolname {like}\""
    ));
    assert_eq!(
        users.trim(),
        format!("aiida-{name}"),
        "the profile's database users"
    );
    c.sh(&format!("test ! -e {record}"));
    let (code, check) = c.exec(&[
        "python",
        "-c",
        &format!(
            "from aiida import load_profile, orm\n\
             p = load_profile('{name}')\n\
             print(p.storage_config['database_name'], orm.load_computer('localhost').label, orm.QueryBuilder().append(orm.Node).count())"
        ),
    ]);
    assert_eq!(code, 0, "the new profile does not load:\n{check}");
    assert_eq!(
        check.lines().last().unwrap_or_default().trim(),
        format!("aiida-{name} localhost 0"),
        "{check}"
    );
}

/// A process whose task the broker no longer holds never runs again; a worker whose database
/// session broke when PostgreSQL restarted can drop a task that way. Made here by hand: with no
/// worker running, a calculation is submitted and its task purged from RabbitMQ's queue. When
/// PostgreSQL is then SIGKILLed (and restarted by aiida-init), the daemon service stops the
/// workers, sends the process a new task and starts them: the calculation finishes.
#[test]
fn a_process_that_lost_its_task_runs_after_postgresql_restarts() {
    if skip_without(&[Need::Docker]) {
        return;
    }
    let h = Harness::new();
    let c = Container::start(&h, &with_services_image(), Start::default());
    c.wait_ready();
    c.sh("verdi daemon decr 1");
    let deadline = Instant::now() + Duration::from_secs(CEILING);
    assert!(
        poll_until(
            deadline - Instant::now(),
            Duration::from_millis(200),
            || { c.daemon_workers() == 0 }
        ),
        "the worker did not stop"
    );
    let pk = submit_add(&c, 6, 7, None);
    let queue = c.sh("rabbitmqctl -q list_queues name | grep '\\.process\\.queue$'");
    c.sh(&format!("rabbitmqctl -q purge_queue '{}'", queue.trim()));
    c.sh("verdi daemon incr 1");
    std::thread::sleep(Duration::from_secs(10));
    let (code, out) = c.python_in_profile(&format!(
        "from aiida import orm\nprint(orm.load_node({pk}).is_terminated)"
    ));
    assert_eq!(
        (code, out.lines().last().unwrap_or_default()),
        (0, "False"),
        "the calculation ran without its task: {out}"
    );

    c.sh("kill -9 $(head -1 ~/.postgresql/postmaster.pid)");
    let sent = format!("sent again: [{pk}]");
    assert!(
        poll_until(
            deadline.saturating_duration_since(Instant::now()),
            Duration::from_millis(500),
            || c.logs().contains(&sent)
        ),
        "the lost process was not sent again:\n{}",
        c.logs()
    );
    assert_eq!(await_sum_within(&c, &pk, CEILING), 13);
    c.wait_ready();
    c.assert_verdi_ready(true);
}

/// A small ext4 filesystem in a file, attached to a loop device and given to docker as a
/// local-driver volume: a home that keeps its files across restarts and can be filled up. On
/// drop: the containers using the volume, the volume, the loop device and the file are removed.
struct LoopHome {
    volume: String,
    device: String,
    _dir: tempfile::TempDir,
}

fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("missing prerequisite: {program} ({e})"));
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}",
        text(&out)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

impl LoopHome {
    fn new(megabytes: u64) -> LoopHome {
        // SAFETY: geteuid has no preconditions.
        require(
            unsafe { libc::geteuid() } == 0,
            "root, to attach a loop device (the tests run as root in CI)",
        );
        let dir = tempfile::tempdir().unwrap();
        let file: PathBuf = dir.path().join("home.ext4");
        let file_str = file.to_str().unwrap();
        std::fs::File::create(&file)
            .unwrap()
            .set_len(megabytes << 20)
            .unwrap();
        // Owned by the image's user; empty (no lost+found), so docker copies the image's home in
        // on the first mount as it does for any new volume.
        run(
            "mkfs.ext4",
            &["-q", "-F", "-E", "root_owner=1000:100", file_str],
        );
        run("debugfs", &["-w", "-R", "rmdir lost+found", file_str]);
        let device = run("losetup", &["--find", "--show", file_str]);
        let volume = unique_name("loophome");
        let guard = LoopHome {
            volume,
            device,
            _dir: dir,
        };
        let out = docker(&[
            "volume",
            "create",
            "--driver",
            "local",
            "--opt",
            "type=ext4",
            "--opt",
            &format!("device={}", guard.device),
            &guard.volume,
        ]);
        assert!(out.status.success(), "{}", text(&out));
        guard
    }

    /// Fill the filesystem to the last block, as root (the reserved blocks too), from a
    /// throw-away container of `image`.
    fn fill(&self, image: &str) {
        let out = docker(&[
            "run",
            "--rm",
            "--user",
            "root",
            "--entrypoint",
            "sh",
            "-v",
            &format!("{}:/home/aiida", self.volume),
            image,
            "-c",
            "fallocate -l $(df -B1 --output=avail /home/aiida | tail -1) /home/aiida/filler; \
             dd if=/dev/zero of=/home/aiida/filler-rest bs=4k 2>/dev/null; \
             df -B1 --output=avail /home/aiida | tail -1",
        ]);
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            "0",
            "the home is not full: {}",
            text(&out)
        );
    }
}

impl Drop for LoopHome {
    fn drop(&mut self) {
        let filter = format!("volume={}", self.volume);
        let users = docker(&["ps", "-aq", "--filter", &filter]);
        for id in String::from_utf8_lossy(&users.stdout).split_whitespace() {
            let _ = docker(&["rm", "-f", "-v", id]);
        }
        let _ = docker(&["volume", "rm", "-f", &self.volume]);
        let _ = Command::new("losetup").args(["-d", &self.device]).output();
    }
}

/// The home volume full (a small ext4 filesystem on a loop device, filled while the container
/// was stopped): after `docker start`, `aiida-init wait`, `status --json` and the log say which
/// service cannot start and why (No space left on device), and the container stays up for
/// inspection. Once the filler is removed, a restart recovers: ready, `verdi status` green, the
/// calculation made before still there, a new one finishes.
#[test]
fn a_full_home_volume_is_reported_and_a_restart_after_freeing_space_recovers() {
    if skip_without(&[Need::Docker]) {
        return;
    }
    let h = Harness::new();
    let home = LoopHome::new(300);
    let image = with_services_image();
    let c = Container::start(&h, &image, Start::with_home(&home.volume));
    c.wait_ready();
    let before = submit_add(&c, 3, 4, None);
    assert_eq!(await_sum_within(&c, &before, CEILING), 7);
    c.stop();
    home.fill(&image);

    c.start_again();
    // PostgreSQL cannot write its lock file: it exits, is restarted, exits again.
    let deadline = Instant::now() + Duration::from_secs(CEILING);
    let waited = loop {
        let (code, out) = c.exec(&["aiida-init", "wait", "--timeout", "20"]);
        if out.contains("No space left on device") {
            assert_ne!(code, 0, "aiida-init wait said ready:\n{out}");
            break out;
        }
        assert!(
            Instant::now() < deadline && code != 0,
            "no clear error from aiida-init wait ({code}):\n{out}\n--- logs ---\n{}",
            c.logs()
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    assert!(
        waited.contains("postgresql not ready"),
        "aiida-init wait does not name PostgreSQL:\n{waited}"
    );
    let postgresql = c.service("postgresql");
    assert!(
        postgresql["last_lines"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l
                .as_str()
                .unwrap_or_default()
                .contains("No space left on device")),
        "aiida-init status does not show why PostgreSQL fails: {postgresql}"
    );
    let (_, human) = c.exec(&["aiida-init", "status"]);
    assert!(
        human.lines().any(|l| l.starts_with("postgresql ")
            && l.contains("restarted")
            && l.contains("No space left on device")),
        "aiida-init status does not say why PostgreSQL fails:\n{human}"
    );
    let run_log = run_logs(&c);
    assert!(
        run_log.contains("[postgresql]") && run_log.contains("No space left on device"),
        "the log does not say why:\n{run_log}"
    );
    assert_eq!(
        c.inspect("{{.State.Running}}"),
        "true",
        "the container did not stay up"
    );

    let out = docker(&[
        "exec",
        "--user",
        "root",
        &c.name,
        "rm",
        "/home/aiida/filler",
        "/home/aiida/filler-rest",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    c.stop();
    c.start_again();
    c.wait_ready();
    c.assert_verdi_ready(true);
    assert_finished_with(&c, &before, 7);
    let after = submit_add(&c, 5, 6, None);
    assert_eq!(await_sum_within(&c, &after, CEILING), 11);
}
