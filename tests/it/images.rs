//! The images against the real engine: aiida-core-base and aiida-core-with-services as built by
//! `aiida-devc images build` (scripts/test.sh builds them once per run; a missing image fails the
//! test). Each test starts its own containers and volumes, removed when it ends.

use crate::support::{Need, skip_without};
use std::time::Duration;

use crate::support::images::{
    Container, Start, await_sum, base_image, docker, home_volume, submit_add, text,
    with_services_image,
};
use crate::support::{Harness, poll_until};

/// The whole life of a with-services container on a home volume: ready, a calculation through
/// the daemon, a process submitted (daemon stopped) before `docker stop` that finishes after
/// `docker start`, a
/// clean and quick stop (PostgreSQL's and RabbitMQ's own logs: the queued message survives a stop
/// that skips Erlang's last second), and the profile kept across rm and run.
#[test]
fn with_services_runs_calculations_stops_cleanly_and_keeps_the_profile() {
    if skip_without(&[Need::Docker]) {
        return;
    }
    let h = Harness::new();
    let home = home_volume(&h);
    let opts = Start::with_home(&home);
    let c = Container::start(&h, &with_services_image(), opts.clone());
    c.wait_ready();
    let status = c.assert_verdi_ready(true);
    assert!(
        status.contains("postgresql"),
        "storage is not PostgreSQL:\n{status}"
    );

    let pk = submit_add(&c, 1, 2, None);
    assert_eq!(await_sum(&c, &pk), 3);

    // Submitted while the daemon is stopped, so that it waits in RabbitMQ's queue (a job that is
    // running when the container stops dies with it). `verdi daemon stop` keeps the supervised
    // daemon down until the next start.
    c.sh("verdi daemon stop");
    let pending = submit_add(&c, 20, 22, None);
    let (_, status) = c.exec(&["verdi", "status"]);
    assert!(
        !status.contains("Daemon is running"),
        "the daemon came back after verdi daemon stop:\n{status}"
    );
    c.assert_no_bytecode_compiled();
    // PostgreSQL's ICU has its English data (Dockerfiles/aiida-core-with-services/icu-data-en):
    // English collations and case mapping, and no collation of another language.
    let icu = c.sh(r#"psql -XAtc "select 'a' < 'B' collate \"en-x-icu\", upper('straße' collate \"en-US-x-icu\"), (select count(*) from pg_collation where collname = 'de-x-icu')""#);
    assert_eq!(icu.trim(), "t|STRASSE|0");
    let took = c.stop();
    assert!(
        took < Duration::from_secs(8),
        "docker stop took {took:?} (Docker kills at 10 s)"
    );
    assert_eq!(
        c.inspect("{{.State.ExitCode}}"),
        "0",
        "container did not exit cleanly"
    );
    let logs = c.logs();
    assert!(
        logs.contains("database system is shut down"),
        "PostgreSQL did not shut down cleanly:\n{logs}"
    );
    assert!(!logs.contains("SIGKILL"), "something was killed:\n{logs}");

    c.start_again();
    c.wait_ready();
    c.assert_verdi_ready(true);
    let logs = c.logs();
    let restart_log = logs.rsplit("database system is shut down").next().unwrap();
    assert!(
        restart_log.contains("database system was shut down at"),
        "no clean restart of PostgreSQL:\n{restart_log}"
    );
    assert!(
        !restart_log.contains("automatic recovery"),
        "PostgreSQL did crash recovery:\n{restart_log}"
    );
    // RabbitMQ closed its persistent message store before the stop (the queued process's
    // message is in it); after an unclean stop it rebuilds the store's index at the next boot.
    let rabbitmq_log = c.sh("cat ~/.rabbitmq/log/rabbit@localhost.log");
    let (_, rabbitmq_restart) = rabbitmq_log
        .rsplit_once("msg_store_persistent' is stopped")
        .unwrap_or_else(|| panic!("RabbitMQ did not close its message store:\n{rabbitmq_log}"));
    assert!(
        rabbitmq_restart.contains("Started message store of type persistent")
            && !rabbitmq_restart.contains("rebuilding indices from scratch"),
        "RabbitMQ did not restart from a clean stop:\n{rabbitmq_restart}"
    );
    assert_eq!(
        await_sum(&c, &pending),
        42,
        "the process submitted before the stop did not finish"
    );

    // rm and run again on the same home: same profile, same data.
    let profile_uuid = c.sh("verdi profile show default | grep -m1 -i uuid");
    let out = docker(&["rm", "-f", &c.name]);
    assert!(out.status.success(), "{}", text(&out));
    let again = Container::start(&h, &with_services_image(), opts);
    again.wait_ready();
    again.assert_verdi_ready(true);
    assert_eq!(
        again.sh("verdi profile show default | grep -m1 -i uuid"),
        profile_uuid
    );
    assert_eq!(await_sum(&again, &pk), 3, "the first calculation is gone");
}

/// SIGKILL leaves stale PID files (postmaster.pid, circus); the next start must cope. Also: the
/// services listen on localhost only, and RabbitMQ's consumer timeout is off.
#[test]
fn with_services_is_ready_again_after_docker_kill() {
    if skip_without(&[Need::Docker]) {
        return;
    }
    let h = Harness::new();
    let c = Container::ready_with_services_on_a_new_home(&h);
    let pk =
        c.sh("python -c 'from aiida import load_profile, orm; load_profile(); print(orm.Int(7).store().pk)'");
    assert!(
        c.sh("test -e ~/.postgresql/postmaster.pid && ls ~/.aiida/daemon/")
            .contains("circus-default.pid")
    );
    c.kill();
    c.start_again();
    c.wait_ready();
    c.assert_verdi_ready(true);
    let value = c.sh(&format!(
        "python -c 'from aiida import load_profile, orm; load_profile(); print(orm.load_node({}).value)'",
        pk.trim()
    ));
    assert_eq!(value.trim(), "7");
    assert!(
        c.logs().contains("stale"),
        "the stale postmaster.pid was not reported:\n{}",
        c.logs()
    );

    // Services listen on localhost only (PostgreSQL, RabbitMQ, epmd, Erlang distribution).
    let listening = c.sh("cat /proc/net/tcp /proc/net/tcp6 | awk '$4 == \"0A\" {print $2}'");
    let addresses: Vec<&str> = listening.split_whitespace().collect();
    for port in ["1538", "1628"] {
        assert!(
            addresses.contains(&format!("0100007F:{port}").as_str()),
            "port 0x{port} not on 127.0.0.1: {addresses:?}"
        );
    }
    for address in &addresses {
        let host = address.split(':').next().unwrap();
        assert!(
            host == "0100007F" || host == "00000000000000000000000001000000",
            "a socket listens beyond localhost: {address} in {addresses:?}"
        );
    }
    // RabbitMQ's consumer timeout is off (AiiDA holds tasks for a long time).
    let env = c.sh("rabbitmqctl environment");
    assert!(
        env.contains("{consumer_timeout,undefined}"),
        "consumer_timeout is set:\n{env}"
    );
    // Without plugins, on the image's node database, the node boots from the image's boot script
    // with the feature-flags registry made at the build. It loads the modules that trace boots at
    // build time used, an AiiDA-like AMQP session included (rabbit_reader, rabbit_channel,
    // rabbit_amqqueue_process), and those RabbitMQ reads for its boot steps; not RabbitMQ's quorum
    // queues (rabbit_fifo) nor the XML parser (xmerl_scan), which are not loaded (a failed trace
    // at build time would load every module), yet load when called (interactive mode). RabbitMQ
    // finds the registry up to date, so the compiler, which generating it needs, is not loaded;
    // the registry's folder is not on the code path. The node runs on Erlang's emulator without
    // the JIT (Dockerfiles/erlang-interpreter), a user's `erl` on Debian's JIT.
    let boot = c.sh(
        "rabbitmqctl eval '{ok, B} = file:read_file(\"/etc/aiida/rabbitmq/rabbit-registry.boot\"), \
         {script, _, C} = binary_to_term(B), S = lists:append([M || {primLoad, M} <- C]), \
         {erlang:system_info(emu_flavor), init:get_argument(boot), code:get_mode(), \
          [lists:member(M, S) || M <- [rabbit_reader, rabbit_channel, rabbit_amqqueue_process, rabbit_fifo, xmerl_scan, compile]], \
          code:is_loaded(rabbit_fifo), code:is_loaded(xmerl_scan), code:is_loaded(compile), \
          code:which(rabbit_ff_registry), lists:member(\"/etc/aiida/rabbitmq/registry\", code:get_path()), \
          rabbit_feature_flags:list(enabled) =:= rabbit_feature_flags:list(all), \
          element(1, element(1, xmerl_scan:string(\"<a/>\"))), code:ensure_loaded(rabbit_fifo)}.'",
    );
    assert_eq!(
        boot.split_whitespace().collect::<String>(),
        "{emu,{ok,[[\"/etc/aiida/rabbitmq/rabbit-registry\"]]},interactive,[true,true,true,false,false,false],false,false,false,\
         \"/etc/aiida/rabbitmq/registry/rabbit_ff_registry.beam\",false,true,xmlElement,{module,rabbit_fifo}}",
        "RabbitMQ did not boot on the interpreter from its trimmed boot script with the registry made at \
         the build, or a module it left out does not load"
    );
    assert_eq!(
        c.sh("erl -noshell -eval 'io:put_chars(atom_to_list(erlang:system_info(emu_flavor))), halt().'")
            .trim(),
        "jit",
        "a user's erl does not run Debian's JIT emulator"
    );
    assert_rabbitmq_starts_from_debians_erlexec(&c);
    assert_a_configuration_of_ones_own_goes_through_cuttlefish(&c);
    // The daemon runs no circusd-stats process (nothing reads its statistics).
    assert_eq!(
        c.processes("[c]ircus import stats"),
        0,
        "a circusd-stats process runs beside the daemon"
    );

    // verdi's own daemon commands act on the supervised daemon: it is never taken for a stale
    // PID file, and a restart leaves exactly one daemon with one worker.
    let workers = || c.daemon_workers();
    let (code, restart) = c.exec(&["verdi", "daemon", "restart"]);
    assert_eq!(code, 0, "verdi daemon restart failed:\n{restart}");
    assert!(
        !restart.contains("stale"),
        "the supervised daemon was taken for stale:\n{restart}"
    );
    c.assert_verdi_ready(true);
    assert_eq!(
        workers(),
        1,
        "not exactly one daemon worker after a restart"
    );
    let (code, stop) = c.exec(&["verdi", "daemon", "stop"]);
    assert_eq!(code, 0, "verdi daemon stop failed:\n{stop}");
    assert_eq!(
        workers(),
        0,
        "a daemon worker is left after `verdi daemon stop`"
    );
}

/// The node's VM starts without Debian's erl script (services-env's find_erlang): its erlexec
/// runs directly, with the environment the script gives it. Another erl first on PATH is run as
/// it is, on the emulators of the epmd on PATH. services-env is POSIX sh (services-wait, an sh
/// script, sources it).
fn assert_rabbitmq_starts_from_debians_erlexec(c: &Container) {
    let find_erlang = "sh -c '. \"$0\"; find_erlang; echo \"$ERL|$ERTS_BIN|${ROOTDIR:-}\"' /etc/init/services-env";
    let erts = c.sh("echo /usr/lib/erlang/erts-*/bin").trim().to_string();
    assert_eq!(
        c.sh(find_erlang).trim(),
        format!("{erts}/erlexec|{erts}|/usr/lib/erlang"),
        "RabbitMQ's node would not start from Debian's erlexec directly"
    );
    let other_erl = format!(
        "mkdir -p /tmp/other-erl && printf '#!/bin/sh\\nexec /usr/bin/erl \"$@\"\\n' >/tmp/other-erl/erl \
         && chmod +x /tmp/other-erl/erl && PATH=/tmp/other-erl:$PATH {find_erlang}"
    );
    assert_eq!(
        c.sh(&other_erl).trim(),
        format!("erl|{erts}|"),
        "another erl first on PATH is not the one RabbitMQ's node would run"
    );
}

/// The base image alone: SQLite and ZeroMQ, the daemon runs a calculation; the user and the
/// environment follow the contract; and the final image carries no build leftovers.
#[test]
fn base_image_alone_gives_a_working_profile_and_keeps_the_contract() {
    if skip_without(&[Need::Docker]) {
        return;
    }
    let h = Harness::new();
    let c = Container::start(&h, &base_image(), Start::default());
    c.wait_ready();
    let status = c.assert_verdi_ready(false);
    assert!(
        status.contains("sqlite"),
        "storage is not SQLite:\n{status}"
    );
    let pk = submit_add(&c, 2, 3, None);
    assert_eq!(await_sum(&c, &pk), 5);
    c.assert_no_bytecode_compiled();
    // What the download leaves out (Dockerfiles/aiida-core-base/Dockerfile) does not show: git
    // commits, iconv converts glibc's core character sets, and perl-base runs scripts with its
    // core modules.
    let kept = c.sh(r#"cd "$(mktemp -d)" && git init -q && git -c user.name=a -c user.email=a@b commit -q --allow-empty -m m && git log --format=%s && printf 'caf\351\n' | iconv -f ISO-8859-1 -t UTF-8 && perl -MPOSIX -MFile::Temp -e 'print "perl ", POSIX::floor(2.5), "\n"'"#);
    assert_eq!(kept.trim(), "m\ncafé\nperl 2");

    assert_eq!(
        c.sh("id").trim(),
        "uid=1000(aiida) gid=100(users) groups=100(users)"
    );
    assert_eq!(c.sh("echo $HOME $SHELL").trim(), "/home/aiida /bin/bash");
    assert_eq!(c.sh("tr '\\0' ' ' < /proc/1/cmdline").trim(), "/init");
    let checks = c.sh("command -v sudo || echo no-sudo; \
         locale -a | grep -ix en_US.utf8; \
         for t in vim git ssh rsync uv; do command -v $t >/dev/null && echo has-$t; done; \
         bash -ic 'complete -p verdi' 2>/dev/null; \
         ls /var/lib/apt/lists | wc -l; \
         command -v gcc cc cargo rustc || echo no-compiler; \
         test -e /tmp/build-ca.pem || echo no-build-ca");
    for needle in [
        "no-sudo",
        "en_US.utf8",
        "has-vim",
        "has-git",
        "has-ssh",
        "has-rsync",
        "has-uv",
        "complete -",
        "no-compiler",
        "no-build-ca",
    ] {
        assert!(checks.contains(needle), "`{needle}` missing:\n{checks}");
    }
    assert!(
        checks.lines().any(|l| l.trim() == "0"),
        "apt lists left in the image:\n{checks}"
    );
    // pip installs as the user, without root.
    let py = c.sh("python -c 'import sys, site; print(sys.prefix, site.ENABLE_USER_SITE)'");
    assert_eq!(py.trim(), "/opt/aiida True");
}

/// The lite variant's ZeroMQ broker is aiida-init's service `aiida-zmq-broker`, not a child of
/// the daemon's circus. SIGKILLed, it is started again, the daemon restarts its workers to
/// connect to it, and they run a calculation through it. On a restart it starts as the profile
/// step begins. The container still stops cleanly.
/// With-services, whose broker is RabbitMQ, leaves the service down, without a restart or a word
/// in its log.
#[test]
fn lite_broker_is_a_service_of_its_own_that_comes_back_after_a_kill() {
    if skip_without(&[Need::Docker]) {
        return;
    }
    let h = Harness::new();
    let c = Container::start(&h, &base_image(), Start::default());
    c.wait_ready();
    let broker = c.service("aiida-zmq-broker");
    assert_eq!(broker["state"], "up", "{broker}");
    let pid = broker["pid"].as_u64().expect("the broker's PID");
    assert_eq!(
        c.sh(&format!("ps -o ppid= -p {pid}")).trim(),
        "1",
        "not aiida-init's child"
    );
    assert!(
        c.sh("ps -eo args")
            .lines()
            .filter(|l| l.contains("aiida-zmq-broker"))
            .count()
            == 1,
        "more than one broker runs:\n{}",
        c.sh("ps -eo pid,ppid,args")
    );
    c.sh(&format!("kill -KILL {pid}"));
    assert!(
        poll_until(Duration::from_secs(180), Duration::from_millis(200), || {
            let again = c.service("aiida-zmq-broker");
            again["state"] == "up" && again["pid"].as_u64().is_some_and(|p| p != pid)
        }),
        "the broker was not started again: {}",
        c.service("aiida-zmq-broker")
    );
    // The new broker listens in a new socket folder: the daemon restarts its workers to find it.
    assert!(
        poll_until(Duration::from_secs(180), Duration::from_millis(500), || {
            c.logs()
                .contains("the ZeroMQ broker restarted: the workers are restarted")
        }),
        "the workers were not restarted for the new broker:\n{}",
        c.logs()
    );
    c.assert_verdi_ready(false);
    let pk = submit_add(&c, 2, 3, None);
    assert_eq!(await_sum(&c, &pk), 5);

    // On a restart the profile exists, and with it the broker's folder: aiida-prepare asks for
    // the broker as it begins, not after its Python step (forced here by removing the stamp).
    c.sh("rm ~/.aiida/aiida-prepare.stamp");
    c.stop();
    c.start_again();
    c.wait_ready();
    c.assert_verdi_ready(false);
    let logs = c.logs();
    assert!(
        logs.contains("storage up to date"),
        "the restart did not run the Python step:\n{logs}"
    );
    let (prepare, broker) = (c.service("aiida-prepare"), c.service("aiida-zmq-broker"));
    let asked_at = broker["started_ms"].as_u64().expect("the broker's start");
    let prepared_at = prepare["ready_ms"]
        .as_u64()
        .expect("the profile step's end");
    assert!(
        asked_at + 200 <= prepared_at,
        "the broker started at {asked_at} ms, not before the profile step's Python (done at {prepared_at} ms)"
    );
    c.stop();
    assert_eq!(c.inspect("{{.State.ExitCode}}"), "0", "{}", c.logs());

    let rabbitmq = Container::start(&h, &with_services_image(), Start::default());
    rabbitmq.wait_ready();
    let broker = rabbitmq.service("aiida-zmq-broker");
    assert_eq!(
        (&broker["state"], &broker["restarts"]),
        (&"down".into(), &0.into()),
        "{broker}"
    );
    let logs = rabbitmq.logs();
    assert!(
        !logs.contains("aiida-zmq-broker"),
        "the unused broker service spoke:\n{logs}"
    );
}

/// A new container of `image` (its entry point replaced by a sleep): its files, no service.
fn idle<'h>(h: &'h Harness, image: &str) -> Container<'h> {
    Container::start(
        h,
        image,
        Start {
            entrypoint: Some("bash".into()),
            cmd: vec!["-c".into(), "sleep 600".into()],
            ..Start::default()
        },
    )
}

/// A new container of `image`, ready, whose first start copied the profile made at the image's
/// build (and made none), and in which a calculation runs through the daemon.
fn first_start_copying_the_template<'h>(
    h: &'h Harness,
    image: &str,
    rabbitmq: bool,
) -> Container<'h> {
    let c = Container::start(h, image, Start::default());
    c.wait_ready();
    let logs = c.logs();
    assert!(
        logs.contains(
            "[aiida-prepare] profile 'default': copied from the one made at the image build"
        ) && !logs.contains("profile 'default' created"),
        "the first start did not copy the build's profile:\n{logs}"
    );
    c.assert_verdi_ready(rabbitmq);
    let pk = submit_add(&c, 4, 5, None);
    assert_eq!(await_sum(&c, &pk), 9);
    c
}

/// The base image's first start copies the profile made at its build, with this container's own
/// UUIDs (two containers share none), and it works: a calculation runs. A first start with
/// another creation setting (here the user's e-mail) makes its own profile instead.
#[test]
fn a_first_start_copies_the_build_time_profile_with_new_uuids() {
    if skip_without(&[Need::Docker]) {
        return;
    }
    let h = Harness::new();
    // The profile's identity in the configuration folder argv[1]: the profile UUID, the storage
    // folder, the container's and the database's repository UUID, the computer UUID and the user.
    const IDENTITY: &str = "import json, os, sqlite3, sys
root = sys.argv[1]
profile = json.load(open(root + '/config.json'))['profiles']['default']
path = profile['storage']['config']['filepath'].replace('/home/aiida/.aiida', root, 1)
db = sqlite3.connect(f'file:{path}/database.sqlite?mode=ro', uri=True)
print(profile['PROFILE_UUID'], os.path.basename(path),
      json.load(open(path + '/container/config.json'))['container_id'],
      json.loads(db.execute(\"SELECT val FROM db_dbsetting WHERE key = 'repository|uuid'\").fetchone()[0]),
      db.execute('SELECT uuid FROM db_dbcomputer').fetchone()[0],
      db.execute('SELECT email FROM db_dbuser').fetchone()[0])";
    let identity = |c: &Container, root: &str| {
        let (code, out) = c.exec(&["python3", "-c", IDENTITY, root]);
        assert_eq!(code, 0, "{out}");
        out.trim().to_string()
    };
    let template = idle(&h, &base_image());
    let mut seen = vec![identity(
        &template,
        "/opt/aiida/share/aiida-profile-template/aiida",
    )];
    for _ in 0..2 {
        let c = first_start_copying_the_template(&h, &base_image(), false);
        let now = identity(&c, "/home/aiida/.aiida");
        let fields: Vec<&str> = now.split_whitespace().collect();
        assert_eq!(fields.len(), 6, "{now}");
        assert_eq!(fields[2], fields[3], "repository UUIDs disagree: {now}");
        assert_eq!(fields[5], "aiida@localhost");
        for before in &seen {
            for (field, old) in fields[..5].iter().zip(before.split_whitespace()) {
                assert_ne!(field, &old, "a UUID is shared: {now} and {before}");
            }
        }
        seen.push(now);
    }

    // After a devcontainer UID remap too (the template is not the new UID's).
    let remapped = Container::start(&h, &uid_remapped(&h, &base_image()), Start::default());
    remapped.wait_ready();
    let logs = remapped.logs();
    assert!(
        logs.contains("copied from the one made at the image build"),
        "a UID-remapped first start did not copy the build's profile:\n{logs}"
    );
    remapped.assert_verdi_ready(false);
    assert_eq!(remapped.sh("id -u").trim(), "1234");

    let other = Container::start(
        &h,
        &base_image(),
        Start {
            env: vec!["AIIDA_USER_EMAIL=someone@example.org".into()],
            ..Start::default()
        },
    );
    other.wait_ready();
    let logs = other.logs();
    assert!(
        logs.contains("profile 'default' created") && !logs.contains("copied from"),
        "another creation setting used the build's profile:\n{logs}"
    );
    let made = identity(&other, "/home/aiida/.aiida");
    assert!(made.ends_with(" someone@example.org"), "{made}");
}

/// The with-services image's first start copies the profile made at its build, whose database is
/// in the image's prepared cluster: each container gets its own UUIDs (the profile's, the
/// repository's in the container and the database, the computer's) and its own database
/// password, none of which the image holds, and a calculation runs.
#[test]
fn a_with_services_first_start_copies_the_build_time_profile_and_its_database() {
    if skip_without(&[Need::Docker]) {
        return;
    }
    let h = Harness::new();
    // One line: the profile UUID, the repository UUID of the container, of the template and of
    // the database, the computer UUID, the profile's password and the role's password hash.
    const IDENTITY: &str = r#"set -e
python3 - <<'PY'
import json
template = '/opt/aiida/share/aiida-profile-template/aiida'
profile = json.load(open('/home/aiida/.aiida/config.json'))['profiles']['default']
storage = profile['storage']['config']
def container_id(repository):
    return json.load(open(repository + '/container/config.json'))['container_id']
print(profile['PROFILE_UUID'], container_id(storage['repository_uri'].removeprefix('file://')),
      container_id(template + '/repository/default'), end=' ')
PY
psql -X -A -t -d aiida-default -c "SELECT val #>> '{}' FROM db_dbsetting WHERE key = 'repository|uuid'" \
    -c 'SELECT uuid FROM db_dbcomputer' | tr '\n' ' '
python3 -c "import json; print(json.load(open('/home/aiida/.aiida/config.json'))['profiles']['default']['storage']['config']['database_password'], end=' ')"
psql -X -A -t -c "SELECT rolpassword FROM pg_authid WHERE rolname = 'aiida-default'"
"#;
    let mut seen: Vec<Vec<String>> = Vec::new();
    for _ in 0..2 {
        let c = first_start_copying_the_template(&h, &with_services_image(), true);
        let (code, out) = c.exec(&["bash", "-c", IDENTITY]);
        assert_eq!(code, 0, "{out}");
        let fields: Vec<String> = out.split_whitespace().map(str::to_owned).collect();
        assert_eq!(fields.len(), 7, "{out}");
        let [
            profile,
            container,
            template,
            database,
            computer,
            password,
            role,
        ] = <[String; 7]>::try_from(fields.clone()).unwrap();
        assert_eq!(container, database, "repository UUIDs disagree: {out}");
        assert_ne!(container, template, "the template's repository UUID: {out}");
        assert!(password.len() >= 20, "a weak database password: {out}");
        assert!(
            role.starts_with("SCRAM-SHA-256$"),
            "the role has no password: {out}"
        );
        for before in &seen {
            for (now, old) in [
                profile.clone(),
                container.clone(),
                computer.clone(),
                password.clone(),
                role.clone(),
            ]
            .iter()
            .zip([&before[0], &before[1], &before[4], &before[5], &before[6]])
            {
                assert_ne!(now, old, "shared by two containers: {out} and {before:?}");
            }
        }
        seen.push(fields);
    }
    // The image holds no password: the template's configuration and stamp have an empty one.
    let template = idle(&h, &with_services_image());
    let files = template.sh(
        "cd /opt/aiida/share/aiida-profile-template/aiida && grep -h -e database_password -e '^psql=' config.json aiida-prepare.stamp",
    );
    assert!(
        files.contains("\"database_password\": \"\"")
            && files.contains("psql=postgresql://aiida-default:@localhost"),
        "a password in the image's profile template:\n{files}"
    );
}

/// A home that starts empty (a bind mount; here a tmpfs) gets the image's prepared cluster at the
/// first start (the cluster is outside the home, so Docker copies none into a new volume), and
/// with it the database of the profile template: the first start copies the profile. Without the
/// prepared cluster (hidden here), it gets a new one and makes the profile, and says why without a
/// line that reads as a failure.
#[test]
fn a_with_services_first_start_on_an_empty_home_gets_the_prepared_cluster_or_makes_one() {
    if skip_without(&[Need::Docker]) {
        return;
    }
    let h = Harness::new();
    // What Docker copies into each new home volume at `docker create`: a few dotfiles and
    // RabbitMQ's node database, no cluster.
    let out = docker(&[
        "run",
        "--rm",
        "--entrypoint",
        "sh",
        &with_services_image(),
        "-c",
        "test ! -e /home/aiida/.postgresql && du -sk /home/aiida | cut -f1",
    ]);
    let home_kb: u64 = text(&out).trim().parse().unwrap_or(u64::MAX);
    assert!(
        out.status.success() && home_kb < 1024,
        "the image's home holds a cluster or over 1 MB ({home_kb} kB): {}",
        text(&out)
    );
    let empty_home = "/home/aiida:uid=1000,gid=100,mode=0755,exec";
    let empty = Container::start(
        &h,
        &with_services_image(),
        Start {
            tmpfs: vec![empty_home.into()],
            ..Start::default()
        },
    );
    empty.wait_ready();
    let logs = empty.logs();
    assert!(
        logs.contains("postgresql: cluster copied from /var/lib/aiida/postgresql-cluster into /home/aiida/.postgresql")
            && logs.contains("[aiida-prepare] profile 'default': copied from the one made at the image build"),
        "a home that started empty did not get the prepared cluster and profile:\n{logs}"
    );
    assert_eq!(
        empty
            .sh("stat -c %a ~/.postgresql; find ~/.postgresql ! -user aiida | wc -l")
            .trim(),
        "700\n0",
        "the copied cluster is not the user's own and private"
    );
    empty.assert_verdi_ready(true);
    assert_a_new_node_database_boots_without_the_prepared_registry(&empty);
    // The prepared cluster leaves out the free space and visibility maps (hints PostgreSQL makes
    // again): the template holds none, and vacuuming every database of the copy makes them.
    let maps = "find DIR -type f \\( -name '*_fsm' -o -name '*_vm' \\) | wc -l";
    assert_eq!(
        empty
            .sh(&maps.replace("DIR", "/var/lib/aiida/postgresql-cluster"))
            .trim(),
        "0",
        "the prepared cluster holds free space or visibility maps"
    );
    empty.sh("vacuumdb --all --quiet");
    let made: u64 = empty
        .sh(&maps.replace("DIR", "~/.postgresql"))
        .trim()
        .parse()
        .unwrap_or(0);
    assert!(
        made > 100,
        "vacuuming the copied cluster made {made} free space and visibility maps"
    );
    empty.assert_verdi_ready(true);

    let without_template = Container::start(
        &h,
        &with_services_image(),
        Start {
            tmpfs: vec![
                empty_home.into(),
                "/var/lib/aiida:uid=1000,gid=100,mode=0755".into(),
            ],
            ..Start::default()
        },
    );
    without_template.wait_ready();
    let logs = without_template.logs();
    assert!(
        logs.contains("postgresql: cluster created in /home/aiida/.postgresql")
            && logs.contains("is not the one made at the image build (it is not in this cluster): the profile is made anew")
            && logs.contains("profile 'default' created"),
        "a home that started empty, without the prepared cluster, did not make its profile:\n{logs}"
    );
    for logs in [empty.logs(), logs] {
        for alarm in ["error", "fatal"] {
            assert!(
                !logs.to_lowercase().contains(alarm),
                "a start on an empty home logged {alarm:?}:\n{logs}"
            );
        }
    }
    without_template.assert_verdi_ready(true);
}

/// The image's node got its configuration as Erlang's system configuration, and RabbitMQ found no
/// configuration file to run cuttlefish on (rabbitmq-node). A configuration of one's own
/// (RABBITMQ_CONFIG_FILE naming another file, here a rabbitmq.conf) boots a node as
/// rabbitmq-server does, through cuttlefish, and its listener is where that file says. The
/// second node has its own name, ports and database beside the running one.
fn assert_a_configuration_of_ones_own_goes_through_cuttlefish(c: &Container) {
    assert_eq!(
        c.sh("rabbitmqctl -q eval '{rabbit_prelaunch_conf:get_config_state(), init:get_argument(config)}.'")
            .split_whitespace()
            .collect::<String>(),
        "{#{config_advanced_file=>undefined,config_files=>[]},{ok,[[\"/etc/aiida/rabbitmq/rabbitmq\"]]}}",
        "the image's RabbitMQ configuration did not reach the node as Erlang's system configuration"
    );
    let own = c.sh(
        "set -e; d=$(mktemp -d); printf 'listeners.tcp.default = 127.0.0.1:5673\\n' >\"$d/own.conf\"; \
         RABBITMQ_NODENAME=own@localhost RABBITMQ_DIST_PORT=25673 RABBITMQ_MNESIA_BASE=$d/mnesia \
         RABBITMQ_LOG_BASE=$d/log RABBITMQ_CONFIG_FILE=$d/own.conf /etc/init/rabbitmq-node >\"$d/out\" 2>&1 & \
         node=$!; \
         for _ in $(seq 1200); do grep -q ' 0100007F:1629 00000000:0000 0A ' /proc/net/tcp && break; sleep 0.1; done; \
         if grep -q ' 0100007F:1629 00000000:0000 0A ' /proc/net/tcp; then echo 'listening on 127.0.0.1:5673'; fi; \
         rabbitmqctl -q -n own@localhost eval 'rabbit_prelaunch_conf:get_config_state().' || cat \"$d/out\"; \
         kill -TERM \"$node\"; wait \"$node\" || true; rm -rf \"$d\"",
    );
    assert!(
        own.contains("listening on 127.0.0.1:5673")
            && own.contains("config_files =>")
            && own.contains("/own.conf\"]"),
        "a node with a configuration file of its own did not read it through cuttlefish, or did not \
         listen on its port 5673 within 120 s:\n{own}"
    );
}

/// RabbitMQ's node database is new in `c`: the node boots from the boot script that generates
/// its feature-flags registry (the one made at the build describes the image's database only)
/// and enables every feature flag, so that its feature-flags file is then the image's, and its
/// next start boots with the registry made at the build.
fn assert_a_new_node_database_boots_without_the_prepared_registry(c: &Container) {
    assert_eq!(
        c.sh("rabbitmqctl -q eval 'init:get_argument(boot).'; \
              cmp ~/.rabbitmq/mnesia/rabbit@localhost-feature_flags /etc/aiida/rabbitmq/registry/feature_flags \
              && echo same")
            .split_whitespace()
            .collect::<String>(),
        "{ok,[[\"/etc/aiida/rabbitmq/rabbit\"]]}same",
        "RabbitMQ on a new node database did not boot from rabbit.boot, or its feature flags differ \
         from the image's database's"
    );
}

/// `docker run IMAGE CMD` runs CMD once ready and returns its exit code.
#[test]
fn a_command_runs_once_ready_and_gives_its_exit_code() {
    if skip_without(&[Need::Docker]) {
        return;
    }
    let h = Harness::new();
    let out = h.run(
        &with_services_image(),
        &["verdi", "status"],
        Default::default(),
    );
    assert_eq!(out.exit_code, 0, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("✔ broker:") && out.stdout.contains("Daemon is running"),
        "{}",
        out.stdout
    );
    let out = h.run(&base_image(), &["bash", "-c", "exit 7"], Default::default());
    assert_eq!(out.exit_code, 7);
}

/// `docker run -it IMAGE bash` gets an interactive bash with job control once AiiDA is ready.
#[test]
fn interactive_bash_has_job_control() {
    if skip_without(&[Need::Docker]) {
        return;
    }
    let h = Harness::new();
    h.require_image(&base_image());
    let name = crate::support::unique_name("tty");
    h.track_container(&name);
    // `script` gives docker a terminal, as a user's shell would.
    let cmd = format!(
        "docker run --name {name} -it {} bash -ic 'case $- in *m*) echo JOBS-ON;; esac; sleep 30 & jobs; verdi profile list'",
        base_image()
    );
    let out = std::process::Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .output()
        .expect("run script(1)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("JOBS-ON"), "no job control:\n{text}");
    assert!(
        text.contains("[1]") && text.contains("Running"),
        "jobs did not list the job:\n{text}"
    );
    assert!(
        text.contains("default"),
        "the profile was not ready:\n{text}"
    );
}

/// `--user 1000` and Docker's own `--init` (aiida-init not PID 1) both work.
#[test]
fn explicit_user_and_docker_init_both_work() {
    if skip_without(&[Need::Docker]) {
        return;
    }
    let h = Harness::new();
    let with_user = Container::start(
        &h,
        &base_image(),
        Start {
            user: Some("1000".into()),
            ..Default::default()
        },
    );
    let under_tini = Container::start(
        &h,
        &base_image(),
        Start {
            docker_init: true,
            ..Default::default()
        },
    );
    for c in [&with_user, &under_tini] {
        c.wait_ready();
        c.assert_verdi_ready(false);
    }
    assert!(
        under_tini
            .sh("cat /proc/1/cmdline | tr '\\0' ' '")
            .contains("init")
    );
    assert!(
        !under_tini
            .sh("tr '\\0' ' ' < /proc/1/cmdline")
            .starts_with("/init"),
        "aiida-init is PID 1 despite --init"
    );
    let took = under_tini.stop();
    assert!(
        took < Duration::from_secs(8),
        "stop under --init took {took:?}"
    );
}

/// A devcontainer UID remap (what the devcontainer CLI does for a host user with another UID:
/// new UID and GID in /etc/passwd, only $HOME chowned): pip still installs, services still run.
#[test]
fn after_a_uid_remap_pip_installs_and_services_work() {
    if skip_without(&[Need::Docker]) {
        return;
    }
    let h = Harness::new();
    let tag = uid_remapped(&h, &with_services_image());

    let ca_dir = tempfile::tempdir().unwrap();
    let c = Container::start(&h, &tag, Start::default().with_ca_bundle(ca_dir.path()));
    c.wait_ready();
    c.assert_verdi_ready(true);
    assert_eq!(
        c.sh("id -u; id -g").split_whitespace().collect::<Vec<_>>(),
        ["1234", "1234"]
    );
    c.sh("pip install --quiet --no-deps six==1.16.0");
    let origin = c.sh("python -c 'import six; print(six.__file__)'");
    assert!(
        origin.trim().starts_with("/home/aiida/.local/"),
        "six installed at {origin}"
    );
}

/// A broken service shows in the log and in `aiida-init status`, and the container is not ready.
#[test]
fn a_failing_service_is_reported_and_the_container_is_not_ready() {
    if skip_without(&[Need::Docker]) {
        return;
    }
    let h = Harness::new();
    let home = home_volume(&h);
    // The cluster a first start makes in the home (a copy of the image's), then broken.
    let out = docker(&[
        "run",
        "--rm",
        "-v",
        &format!("{home}:/home/aiida"),
        "--entrypoint",
        "bash",
        &with_services_image(),
        "-c",
        "set -e; /etc/init/postgresql-initdb; rm \"$PGDATA/global/pg_control\"",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let c = Container::start(&h, &with_services_image(), Start::with_home(&home));
    std::thread::sleep(Duration::from_secs(2));
    let (code, out) = c.exec(&["aiida-init", "wait", "--timeout", "20"]);
    assert_ne!(code, 0, "aiida-init wait claimed readiness:\n{out}");
    assert!(
        out.contains("postgresql"),
        "the failing service is not named:\n{out}"
    );
    let (_, status) = c.exec(&["aiida-init", "status"]);
    let line = status
        .lines()
        .find(|l| l.starts_with("postgresql"))
        .unwrap_or_default()
        .to_owned();
    assert!(
        !line.contains("ready"),
        "postgresql shown as ready:\n{status}"
    );
    assert!(
        c.logs().contains("pg_control"),
        "PostgreSQL's error is not in the log:\n{}",
        c.logs()
    );
    // PostgreSQL was started again about once a second meanwhile: the readiness poller of each
    // start ended with it (one poller more per restart once loaded the machine to a standstill).
    let pollers = c.sh("grep -l 's6-notifyonchec[k]' /proc/[0-9]*/cmdline 2>/dev/null | wc -l");
    assert!(
        pollers.trim().parse::<u32>().is_ok_and(|n| n <= 1),
        "readiness pollers left by earlier starts of PostgreSQL: {pollers}\n{status}"
    );
    let (code, out) = c.exec(&["verdi", "status"]);
    assert!(
        code != 0 || !out.contains("Daemon is running"),
        "the daemon runs without its database:\n{out}"
    );
}

/// The labels: OCI annotations and the devcontainer metadata that keeps /init as PID 1; and the
/// reference devcontainer CLI, given only the image, runs /init and waits for readiness.
#[test]
fn devcontainer_cli_runs_init_and_waits_for_readiness() {
    if skip_without(&[Need::Docker, Need::DevcontainerCli]) {
        return;
    }
    let image = base_image();
    let ws = crate::support::Workspace::with_config(&format!(r#"{{ "image": "{image}" }}"#));
    ws.harness().require_image(&image);
    let labels = docker(&["image", "inspect", "-f", "{{json .Config.Labels}}", &image]);
    let labels: serde_json::Value = serde_json::from_slice(&labels.stdout).unwrap();
    for key in ["version", "revision", "source", "created"] {
        assert!(
            labels[format!("org.opencontainers.image.{key}")].is_string(),
            "no OCI {key} label: {labels}"
        );
    }
    let meta: serde_json::Value =
        serde_json::from_str(labels["devcontainer.metadata"].as_str().unwrap()).unwrap();
    assert_eq!(meta[0]["overrideCommand"], false);

    let up = ws.devcontainer(&["up"]);
    let stdout = String::from_utf8_lossy(&up.stdout);
    assert!(
        up.status.success(),
        "devcontainer up failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&up.stderr)
    );
    let all = format!("{stdout}{}", String::from_utf8_lossy(&up.stderr));
    assert!(
        all.contains("aiida-init wait"),
        "the postStartCommand did not run:\n{all}"
    );
    // Ready when `up` returns: no waiting here.
    let exec = ws.devcontainer(&[
        "exec",
        "bash",
        "-c",
        "tr '\\0' ' ' < /proc/1/cmdline; echo; id -un; verdi status",
    ]);
    let out = String::from_utf8_lossy(&exec.stdout);
    assert!(
        exec.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&exec.stderr)
    );
    assert!(out.starts_with("/init"), "PID 1 is not /init:\n{out}");
    assert!(out.contains("aiida\n"), "not the aiida user:\n{out}");
    assert!(
        out.contains("Daemon is running"),
        "not ready right after up:\n{out}"
    );
}

/// The hook folders of derived images run before and after the daemon starts (run-parts order),
/// and SETUP_DEFAULT_AIIDA_PROFILE=false starts without a profile and still becomes ready.
#[test]
fn hooks_run_around_the_daemon_and_the_profile_can_be_turned_off() {
    if skip_without(&[Need::Docker]) {
        return;
    }
    let h = Harness::new();
    h.require_image(&base_image());
    let dir = tempfile::tempdir().unwrap();
    let hook = |name: &str, script: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, format!("#!/bin/bash\nset -e\n{script}\n")).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    };
    let pid_file = "~/.aiida/daemon/circus-default.pid";
    hook(
        "10-before",
        &format!("test -e {pid_file} && echo before:up >> ~/hooks || echo before:down >> ~/hooks"),
    );
    // As a hook that reinstalls aiida-core would: the daemon, loading meanwhile, starts itself
    // again on the new installation. The hook waits (10 s at most) until the daemon loads, that
    // is, runs its import thread: on a busy machine the daemon's Python may still be starting
    // when the hooks run, and then it loads the new installation from the first (right, but
    // without the restart this test is about).
    hook(
        "20-before",
        "echo before:second >> ~/hooks\n\
         for _ in $(seq 500); do\n\
         \x20   pid=$(pgrep -o -f 'aiida-daemon start-circus' || true)\n\
         \x20   if [ -n \"$pid\" ] && [ \"$(ls /proc/$pid/task | wc -l)\" -ge 2 ]; then break; fi\n\
         \x20   sleep 0.02\n\
         done\n\
         touch /opt/aiida/lib/python3*/site-packages/aiida_core-*.dist-info",
    );
    hook(
        "10-after",
        &format!("test -e {pid_file} && echo after:up >> ~/hooks || echo after:down >> ~/hooks"),
    );
    std::fs::write(
        dir.path().join("Dockerfile"),
        format!(
            "FROM {}\nCOPY 10-before 20-before /etc/init/run-before-daemon-start/\nCOPY 10-after /etc/init/run-after-daemon-start/\n",
            base_image()
        ),
    )
    .unwrap();
    let tag = format!("{}:hooks", crate::support::unique_name("hooks"));
    h.track_image(&tag);
    let out = docker(&["build", "-q", "-t", &tag, dir.path().to_str().unwrap()]);
    assert!(
        out.status.success(),
        "building the derived image failed: {}",
        text(&out)
    );

    let with_hooks = Container::start(&h, &tag, Start::default());
    let no_profile = Container::start(
        &h,
        &base_image(),
        Start {
            env: vec!["SETUP_DEFAULT_AIIDA_PROFILE=false".into()],
            ..Default::default()
        },
    );
    with_hooks.wait_ready();
    with_hooks.assert_verdi_ready(false);
    assert_eq!(
        with_hooks
            .sh("cat ~/hooks")
            .split_whitespace()
            .collect::<Vec<_>>(),
        ["before:down", "before:second", "after:up"]
    );
    let logs = with_hooks.logs();
    assert!(
        logs.contains("aiida-core was installed again while the daemon started"),
        "the daemon kept the aiida-core it loaded before the hooks:\n{logs}"
    );

    no_profile.wait_ready();
    let profiles = no_profile.sh("verdi profile list 2>&1 || true");
    assert!(
        profiles.contains("no profiles configured"),
        "a profile was created:\n{profiles}"
    );
    assert!(
        no_profile.logs().contains("no AiiDA profile"),
        "no word about the missing profile:\n{}",
        no_profile.logs()
    );
}

/// The base image with external services (as in a compose file): given AIIDA_POSTGRES_HOSTNAME
/// and AIIDA_BROKER_HOST it makes a PostgreSQL + RabbitMQ profile on them. The services are those
/// of a with-services container whose network (localhost) the base container shares.
#[test]
fn base_image_uses_external_postgresql_and_rabbitmq_when_configured() {
    if skip_without(&[Need::Docker]) {
        return;
    }
    let h = Harness::new();
    let services = Container::start(&h, &with_services_image(), Start::default());
    services.wait_ready();
    let base = Container::start(
        &h,
        &base_image(),
        Start {
            network: Some(format!("container:{}", services.name)),
            env: vec![
                "AIIDA_PROFILE_NAME=external".into(),
                "AIIDA_POSTGRES_HOSTNAME=localhost".into(),
                "AIIDA_POSTGRES_USERNAME=aiida".into(),
                "AIIDA_BROKER_HOST=127.0.0.1".into(),
            ],
            ..Default::default()
        },
    );
    base.wait_ready();
    let status = base.assert_verdi_ready(true);
    assert!(
        status.contains("aiida-external"),
        "not the external PostgreSQL database:\n{status}"
    );
    let pk = submit_add(&base, 4, 5, None);
    assert_eq!(await_sum(&base, &pk), 9);
}

/// The oldest aiida-core this test makes a profile with: its psql_dos schema is `main_0001`, one
/// migration behind the image's aiida-core.
const OLD_AIIDA: &str = "aiida-core~=2.3.0";

/// A home volume whose profile was made by an older aiida-core (2.3, storage schema `main_0001`)
/// is migrated when a container of the image starts on it: the first container (no profile of its
/// own) installs aiida-core 2.3 into a separate virtual environment, makes the profile `default`
/// with it on the container's PostgreSQL and RabbitMQ and stores a node; a new container on the
/// same volume, default settings, migrates the storage, becomes ready, and still has the node.
#[test]
fn a_profile_made_by_an_older_aiida_core_is_migrated_on_start() {
    if skip_without(&[Need::Docker]) {
        return;
    }
    let h = Harness::new();
    let home = home_volume(&h);
    let volume = format!("{home}:/home/aiida");
    let ca_dir = tempfile::tempdir().unwrap();
    let old_opts = Start {
        env: vec!["SETUP_DEFAULT_AIIDA_PROFILE=false".into()],
        volumes: vec![volume.clone()],
        ..Default::default()
    }
    .with_ca_bundle(ca_dir.path());
    let old = Container::start(&h, &with_services_image(), old_opts);
    old.wait_ready();

    // Outside the home volume: the next container only has the image's aiida-core.
    old.sh(&format!(
        "python3 -m venv /tmp/old-aiida && /tmp/old-aiida/bin/pip install --quiet --disable-pip-version-check '{OLD_AIIDA}'"
    ));
    // No configuration file yet: aiida-core 2.3 refuses one in the image's (newer) format.
    let (code, _) = old.exec(&["test", "-e", "/home/aiida/.aiida/config.json"]);
    assert_ne!(
        code, 0,
        "a container without a profile wrote an AiiDA configuration file"
    );
    let version = old.sh("/tmp/old-aiida/bin/verdi --version");
    assert!(version.contains("2.3."), "not aiida-core 2.3: {version}");
    // A home as an image without a profile template left it: the cluster without the template's
    // database and user (which a first start drops when it makes its own profile).
    old.sh(
        "psql -d postgres -c 'DROP DATABASE \"aiida-default\"' -c 'DROP ROLE \"aiida-default\"'",
    );
    // The names aiida-prepare gives (database and user `aiida-<profile>`), made with the image's
    // PostgreSQL superuser `aiida` (trust authentication on localhost).
    old.sh(
        "/tmp/old-aiida/bin/verdi quicksetup --non-interactive --profile default \
         --email aiida@localhost --first-name Old --last-name Version --institution Here \
         --db-backend core.psql_dos --db-host localhost --db-port 5432 \
         --db-name aiida-default --db-username aiida-default --db-password old-version \
         --su-db-name postgres --su-db-username aiida \
         --broker-host 127.0.0.1 --repository /home/aiida/.aiida/repository/default",
    );
    let stored = old.sh(
        "/tmp/old-aiida/bin/python -c \"from aiida import load_profile, orm; load_profile(); print('uuid=' + orm.Str('stored by 2.3').store().uuid)\"",
    );
    let uuid = stored
        .lines()
        .find_map(|line| line.strip_prefix("uuid="))
        .unwrap_or_else(|| panic!("no node stored by aiida-core 2.3:\n{stored}"))
        .to_owned();
    let schema = "psql -d aiida-default -tAc 'SELECT version_num FROM alembic_version'";
    assert_eq!(
        old.sh(schema).trim(),
        "main_0001",
        "aiida-core 2.3 stores another schema"
    );
    old.stop();
    old.remove();

    let new = Container::start(
        &h,
        &with_services_image(),
        Start {
            volumes: vec![volume],
            ..Default::default()
        },
    );
    new.wait_ready();
    let head = new
        .sh("python -c 'from aiida.storage.psql_dos.backend import PsqlDosBackend; print(PsqlDosBackend.version_head())'")
        .trim()
        .to_owned();
    assert_ne!(
        head, "main_0001",
        "the image's aiida-core needs no migration from 2.3"
    );
    let logs = new.logs();
    assert!(
        logs.contains(&format!("migrating the storage from main_0001 to {head}"))
            && logs.contains("storage migrated"),
        "no migration in the log:\n{logs}"
    );
    new.assert_verdi_ready(true);
    assert_eq!(new.sh(schema).trim(), head);
    let (code, out) = new.python_in_profile(&format!(
        "from aiida import orm\nprint(orm.load_node('{uuid}').value)"
    ));
    assert_eq!(
        code, 0,
        "loading the node stored by aiida-core 2.3 failed:\n{out}"
    );
    assert_eq!(out.trim(), "stored by 2.3");
}

/// A restart with nothing changed prepares the profile without starting Python (the stamp of the
/// last prepare and the schema PostgreSQL reports both match), and the profile is used as before;
/// a database that is gone sends the next start back to the full step, which fails with the
/// reason: the container is not ready and the failing service is named.
#[test]
fn a_restart_with_nothing_changed_skips_python_and_a_lost_database_is_still_detected() {
    if skip_without(&[Need::Docker]) {
        return;
    }
    let h = Harness::new();
    let c = Container::ready_with_services_on_a_new_home(&h);
    assert!(
        c.logs().contains(
            "[aiida-prepare] profile 'default': copied from the one made at the image build"
        ),
        "{}",
        c.logs()
    );
    c.stop();
    c.start_again();
    c.wait_ready();
    c.assert_verdi_ready(true);
    let logs = c.logs();
    assert!(
        logs.contains("[aiida-prepare] profile 'default': unchanged since the last start"),
        "the restart did not take the fast path:\n{logs}"
    );
    assert!(
        !logs.contains("storage up to date"),
        "the restart started the Python step:\n{logs}"
    );

    c.sh("psql -d postgres -c 'DROP DATABASE \"aiida-default\" WITH (FORCE)'");
    c.stop();
    c.start_again();
    let (code, out) = c.exec(&["aiida-init", "wait", "--timeout", "300"]);
    assert_ne!(code, 0, "ready without its database:\n{out}");
    assert!(
        out.contains("aiida-prepare"),
        "the failing step is not named:\n{out}"
    );
    // The daemon, started beside the profile step, says why it does not start and stays not
    // ready (it is not restarted in a loop).
    let said = |logs: &str| {
        logs.contains("aiida-daemon: not started") && logs.contains("aiida-prepare failed")
    };
    assert!(
        poll_until(Duration::from_secs(60), Duration::from_millis(200), || {
            said(&c.logs())
        }),
        "the daemon does not say why it waits:\n{}",
        c.logs()
    );
    let daemon = c.service("aiida-daemon");
    assert_eq!(daemon["state"], "starting", "{daemon:#}");
    assert_eq!(daemon["restarts"].as_u64().unwrap_or(0), 0, "{daemon:#}");
}

/// `image` with the user's UID and GID changed to 1234 by the devcontainer CLI's own
/// updateUID.Dockerfile, as VS Code and the CLI do for a host user of another UID.
fn uid_remapped(h: &Harness, image: &str) -> String {
    let dockerfile = crate::support::project_root().join(
        ".tools/devcontainer-cli/node_modules/@devcontainers/cli/scripts/updateUID.Dockerfile",
    );
    crate::support::require(
        dockerfile.is_file(),
        &format!("the devcontainer CLI's {}", dockerfile.display()),
    );
    let tag = format!("{}:uid", crate::support::unique_name("remap"));
    h.track_image(&tag);
    let out = docker(&[
        "build",
        "-q",
        "-t",
        &tag,
        "-f",
        dockerfile.to_str().unwrap(),
        "--build-arg",
        &format!("BASE_IMAGE={image}"),
        "--build-arg",
        "REMOTE_USER=aiida",
        "--build-arg",
        "NEW_UID=1234",
        "--build-arg",
        "NEW_GID=1234",
        "--build-arg",
        "IMAGE_USER=aiida",
        dockerfile.parent().unwrap().to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "building the UID remap image failed: {}",
        text(&out)
    );
    tag
}

/// aiida-core-with-services is built on aiida-core-base's system stage, not on aiida-core-base
/// itself, so that its PostgreSQL and RabbitMQ layer comes before aiida-core's environment (what
/// a new aiida-core release changes). It must still be aiida-core-base plus the services: every
/// variable of aiida-core-base's environment with the same value (PATH: every entry, in order),
/// the same user, working directory and entrypoint, and aiida-core-base's layers from the system
/// stage.
#[test]
fn with_services_is_the_base_image_plus_services_with_aiida_core_last() {
    if skip_without(&[Need::Docker]) {
        return;
    }
    let inspect = |image: &str, format: &str| {
        let out = docker(&["image", "inspect", "-f", format, image]);
        assert!(out.status.success(), "{}", text(&out));
        text(&out)
    };
    let env = |image: &str| -> Vec<(String, String)> {
        inspect(image, "{{range .Config.Env}}{{println .}}{{end}}")
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    };
    let (base, services) = (env(&base_image()), env(&with_services_image()));
    for (key, value) in &base {
        let theirs = services
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str());
        if key == "PATH" {
            let theirs: Vec<&str> = theirs.unwrap_or_default().split(':').collect();
            let in_order: Vec<&str> = theirs
                .iter()
                .copied()
                .filter(|entry| value.split(':').any(|e| e == *entry))
                .collect();
            assert_eq!(
                in_order.join(":"),
                *value,
                "with-services' PATH: {theirs:?}"
            );
        } else {
            assert_eq!(theirs, Some(value.as_str()), "with-services' {key}");
        }
    }
    let config = "{{.Config.User}} {{.Config.WorkingDir}} {{.Config.Entrypoint}} {{.Config.Cmd}}";
    assert_eq!(
        inspect(&with_services_image(), config),
        inspect(&base_image(), config)
    );

    // The layers, oldest first, with what made them.
    let history = |image: &str| -> Vec<String> {
        let out = docker(&[
            "history",
            "--no-trunc",
            "--format",
            "{{.Size}}\t{{.CreatedBy}}",
            image,
        ]);
        assert!(out.status.success(), "{}", text(&out));
        let mut steps: Vec<String> = text(&out)
            .lines()
            .filter(|l| !l.starts_with("0B\t"))
            .map(str::to_owned)
            .collect();
        steps.reverse();
        steps
    };
    let steps = history(&with_services_image());
    let position = |what: &str| {
        steps
            .iter()
            .position(|s| s.contains(what))
            .unwrap_or_else(|| panic!("no layer made by `{what}`:\n{}", steps.join("\n")))
    };
    let services = position("apt-get install -y --no-install-recommends postgresql");
    let environment = position(" in /opt/");
    let prepared = position("/etc/init/postgresql-initdb");
    assert!(
        services < environment && environment < prepared,
        "layers not in the order services, aiida-core, prepared data:\n{}",
        steps.join("\n")
    );
    // The system stage: aiida-core-base's first layer is with-services' first layer.
    let first_layer = |image: &str| {
        inspect(image, "{{index .RootFS.Layers 0}}")
            .trim()
            .to_owned()
    };
    assert_eq!(
        first_layer(&with_services_image()),
        first_layer(&base_image())
    );
}

/// The services' readiness checks, as aiida-init's poll runs them (data/check, `--wait 5`), try
/// again within one process while the service is down: a few processes for 5 s of tries, not
/// one per try (starting a check every 50 ms takes most of a core on a slow or emulated machine,
/// while the service boots on it). A wait still sees the service come up: each check is started
/// on a stopped service, which is then started by hand.
#[test]
fn readiness_checks_wait_in_one_process_and_see_the_service_come_up() {
    if skip_without(&[Need::Docker]) {
        return;
    }
    let h = Harness::new();
    let c = idle(&h, &with_services_image());
    // Processes started in the container's PID namespace while CHECK runs (the two `cat`s count
    // one), its exit code and its time in whole seconds.
    let run_check = |check: &str| -> (u32, i32, u64) {
        let out = c.sh(&format!(
            "before=$(cat /proc/sys/kernel/ns_last_pid); start=$SECONDS; \
             /etc/s6-overlay/s6-rc.d/{check}/data/check; code=$?; \
             echo \"$(( $(cat /proc/sys/kernel/ns_last_pid) - before )) $code $((SECONDS - start))\""
        ));
        let fields: Vec<&str> = out.split_whitespace().collect();
        assert_eq!(fields.len(), 3, "{out}");
        (
            fields[0].parse().unwrap(),
            fields[1].parse().unwrap(),
            fields[2].parse().unwrap(),
        )
    };
    for check in ["rabbitmq", "postgresql"] {
        let (processes, code, seconds) = run_check(check);
        assert_eq!(code, 1, "{check}'s check passed with the service down");
        assert!(
            seconds >= 4,
            "{check}'s check gave up after {seconds} s instead of trying for 5 s"
        );
        assert!(
            processes <= 8,
            "{check}'s check started {processes} processes in its {seconds} s of tries"
        );
    }

    // The checks themselves, waiting long enough for a busy machine, started before the services
    // (PostgreSQL's cluster made as a first start makes it: this container never ran the service).
    c.sh("(/etc/init/rabbitmq-check --wait 300; echo $? >/tmp/rabbitmq-check) >/dev/null 2>&1 & \
          (/etc/init/postgresql-check --wait 300; echo $? >/tmp/postgresql-check) >/dev/null 2>&1 & \
          sleep 1; \
          (setsid /etc/init/rabbitmq-node >/tmp/rabbitmq.log 2>&1 &); \
          /etc/init/postgresql-initdb >/dev/null; \
          pg_ctl --pgdata=\"$PGDATA\" --silent --log=/tmp/postgresql.log start");
    for check in ["rabbitmq", "postgresql"] {
        let out = c.sh(&format!(
            "for _ in $(seq 600); do [ -s /tmp/{check}-check ] && break; sleep 0.5; done; \
             cat /tmp/{check}-check 2>/dev/null || echo none"
        ));
        assert_eq!(
            out.trim(),
            "0",
            "{check}'s check did not see the service come up:\n{}",
            c.sh("tail -20 /tmp/rabbitmq.log /tmp/postgresql.log 2>&1 || true")
        );
    }
}

/// crypto's NIF library in with-services is built by `images build` with its check of elliptic
/// curves moved from every load to the first call that lists them
/// (Dockerfiles/erlang-interpreter/crypto-lazy-curves.patch), over Debian's. It offers what
/// Debian's offers, from the same erlang-crypto: compared with the Compose stand-in's RabbitMQ
/// image, built from Debian's packages alone. Only the OpenSSL headers it was compiled against
/// may differ (Debian's build is older than the libssl3 both link at run time), so
/// `crypto:info_lib/0`'s number and `cryptolib_version_compiled` are left out. It runs on the
/// emulator without the JIT, as RabbitMQ's node runs it, and on Debian's JIT.
#[test]
fn with_services_crypto_library_offers_what_debians_offers() {
    if skip_without(&[Need::Docker]) {
        return;
    }
    // Only the RabbitMQ stand-in's image: this test runs no Compose project.
    crate::support::compose::build_service_image(
        "rabbitmq",
        crate::support::compose::RABBITMQ_IMAGE,
    );
    let offers = |image: &str, flavor: &[&str]| {
        let mut args = vec!["run", "--rm", "--entrypoint", "erl", image];
        args.extend_from_slice(flavor);
        args.extend_from_slice(&[
            "-noshell",
            "-eval",
            "io:format(\"~p~n\", [{erlang:system_info(otp_release), crypto:supports(), crypto:ec_curves(), \
             maps:without([cryptolib_version_compiled], crypto:info()), \
             [{Name, Text} || {Name, _Number, Text} <- crypto:info_lib()]}]), halt().",
        ]);
        let out = docker(&args);
        assert!(out.status.success(), "erl in {image}: {}", text(&out));
        text(&out)
    };
    let debians = offers(crate::support::compose::RABBITMQ_IMAGE, &[]);
    assert!(
        debians.contains("secp256r1") && debians.contains("aes_256_gcm"),
        "Debian's crypto offers no secp256r1 or aes_256_gcm:\n{debians}"
    );
    for flavor in [&["-emu_flavor", "emu"][..], &[]] {
        assert_eq!(
            offers(&with_services_image(), flavor),
            debians,
            "with-services' crypto.so ({flavor:?}) does not offer what Debian's does"
        );
    }
}
