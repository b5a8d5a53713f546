//! Support for the image tests: containers of the images built by `aiida-devc images build`
//! (scripts/test.sh builds them once per run), driven through the `docker` command line the way a
//! user drives them, and removed with their volumes when the test ends (through [`Harness`]).
#![allow(dead_code)]

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use crate::support::{Harness, require, unique_name};

/// `[registry/]organization` of the images under test (`AIIDA_DEVC_IMAGE_PREFIX`, default
/// `aiidateam`), tag `latest` (or `AIIDA_DEVC_IMAGE_TAG`).
fn image(name: &str) -> String {
    let prefix = std::env::var("AIIDA_DEVC_IMAGE_PREFIX").unwrap_or_else(|_| "aiidateam".into());
    let tag = std::env::var("AIIDA_DEVC_IMAGE_TAG").unwrap_or_else(|_| "latest".into());
    format!("{prefix}/{name}:{tag}")
}

pub fn base_image() -> String {
    image("aiida-core-base")
}

pub fn with_services_image() -> String {
    image("aiida-core-with-services")
}

/// Seconds a test allows an image to become ready (far above the expected few seconds: CI
/// machines are shared).
pub const READY_TIMEOUT: u64 = 180;

/// `docker ARGS...`, collecting the output.
pub fn docker(args: &[&str]) -> Output {
    Command::new("docker")
        .args(args)
        .output()
        .expect("run the docker command line")
}

pub fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A container of one of the images, removed (with its anonymous volumes) when the harness drops.
pub struct Container<'h> {
    pub name: String,
    pub harness: &'h Harness,
    /// Who `exec` runs as (`docker exec -u`); the image's user when None.
    pub exec_user: Option<String>,
}

/// How to start a container (`docker run -d` options).
#[derive(Default, Clone)]
pub struct Start {
    pub env: Vec<String>,
    /// `-v` arguments; named volumes are created and tracked.
    pub volumes: Vec<String>,
    pub user: Option<String>,
    /// Docker's own init (tini) as PID 1, aiida-init its child.
    pub docker_init: bool,
    /// `--network` (e.g. `container:NAME` to share another container's localhost).
    pub network: Option<String>,
    /// The command (CMD) after the image's entry point.
    pub cmd: Vec<String>,
    /// `--entrypoint` instead of the image's `/init`.
    pub entrypoint: Option<String>,
    /// `--tmpfs` arguments (`PATH:OPTIONS`): a folder that starts empty, as a bind mount does.
    pub tmpfs: Vec<String>,
}

impl Start {
    /// Nothing but the named volume `home` on /home/aiida (the profile, the database, the files).
    pub fn with_home(home: &str) -> Start {
        Start {
            volumes: vec![format!("{home}:/home/aiida")],
            ..Start::default()
        }
    }

    /// As [`Start::with_home`], with a profile setting other than the one the image's profile
    /// template was made with: the first start makes its profile (database, schema, user,
    /// computer) instead of copying the template (/etc/init/aiida-prepare).
    pub fn with_home_making_the_profile(home: &str) -> Start {
        Start {
            env: vec![MAKES_THE_PROFILE.to_string()],
            ..Start::with_home(home)
        }
    }
}

/// An environment setting that makes a first start create its profile instead of copying the
/// image's build-time template: a profile setting the template was not made with.
pub const MAKES_THE_PROFILE: &str = "AIIDA_USER_INSTITUTION=made at the first start";

impl Start {
    /// The CA bundle option (see [`crate::support::ca_bundle`]), when there is one: written to
    /// `dir` (which must outlive the container), mounted read-only at /etc/aiida-devc/ca.pem,
    /// and named by `PIP_CERT` and `SSL_CERT_FILE` (uv and OpenSSL), as `--ca-cert` makes the
    /// tool do.
    pub fn with_ca_bundle(mut self, dir: &std::path::Path) -> Start {
        if let Some(ca) = crate::support::ca_bundle() {
            let file = dir.join("ca.pem");
            std::fs::write(&file, &ca.pem).unwrap();
            self.volumes
                .push(format!("{}:/etc/aiida-devc/ca.pem:ro", file.display()));
            self.env.push("PIP_CERT=/etc/aiida-devc/ca.pem".into());
            self.env.push("SSL_CERT_FILE=/etc/aiida-devc/ca.pem".into());
        }
        self
    }
}

impl<'h> Container<'h> {
    /// A with-services container on a new home volume (removed with the harness), ready: what
    /// the life-cycle and fault tests start from.
    pub fn ready_with_services_on_a_new_home(h: &'h Harness) -> Container<'h> {
        let home = home_volume(h);
        let c = Container::start(h, &with_services_image(), Start::with_home(&home));
        c.wait_ready();
        c
    }

    /// `docker run -d` the image.
    pub fn start(h: &'h Harness, image: &str, opts: Start) -> Container<'h> {
        h.require_image(image);
        let name = unique_name("img");
        h.track_container(&name);
        let mut args: Vec<String> = vec!["run".into(), "-d".into(), "--name".into(), name.clone()];
        for e in opts.env {
            args.extend(["-e".into(), e]);
        }
        for v in opts.volumes {
            if let Some((source, _)) = v.split_once(':') {
                if !source.starts_with('/') {
                    h.track_volume(source);
                }
            }
            args.extend(["-v".into(), v]);
        }
        for t in opts.tmpfs {
            args.extend(["--tmpfs".into(), t]);
        }
        if let Some(u) = opts.user {
            args.extend(["--user".into(), u]);
        }
        if let Some(n) = opts.network {
            args.extend(["--network".into(), n]);
        }
        if opts.docker_init {
            args.push("--init".into());
        }
        if let Some(e) = opts.entrypoint {
            args.extend(["--entrypoint".into(), e]);
        }
        args.push(image.into());
        args.extend(opts.cmd);
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = docker(&refs);
        assert!(out.status.success(), "docker run failed: {}", text(&out));
        Container {
            name,
            harness: h,
            exec_user: None,
        }
    }

    /// `docker exec` as the image's user (or [`Self::exec_user`]); returns (exit code,
    /// stdout+stderr).
    pub fn exec(&self, cmd: &[&str]) -> (i32, String) {
        let mut args = vec!["exec"];
        if let Some(user) = &self.exec_user {
            args.extend(["-u", user]);
        }
        args.push(&self.name);
        args.extend_from_slice(cmd);
        let out = docker(&args);
        (out.status.code().unwrap_or(-1), text(&out))
    }

    /// A Python snippet run with the profile loaded (as in `verdi shell`); returns (exit code,
    /// stdout+stderr).
    pub fn python_in_profile(&self, code: &str) -> (i32, String) {
        let script = format!("from aiida import load_profile\nload_profile()\n{code}");
        self.exec(&["python", "-c", &script])
    }

    /// `bash -lc SCRIPT` through exec; panics with the output when it fails.
    pub fn sh(&self, script: &str) -> String {
        let (code, out) = self.exec(&["bash", "-c", script]);
        assert_eq!(code, 0, "in {}: `{script}` failed:\n{out}", self.name);
        out
    }

    /// Block until the container is ready (`aiida-init wait`); returns the time it took from now.
    pub fn wait_ready(&self) -> Duration {
        let start = Instant::now();
        // exec fails while the container is still starting its init: retry briefly.
        loop {
            let (code, out) = self.exec(&[
                "aiida-init",
                "wait",
                "--timeout",
                &READY_TIMEOUT.to_string(),
            ]);
            if code == 0 {
                return start.elapsed();
            }
            // Only a container whose init has not started yet gets another try.
            assert!(
                start.elapsed() <= Duration::from_secs(10) && !out.contains("failed"),
                "{} did not become ready ({code}):\n{out}\n--- logs ---\n{}",
                self.name,
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// `verdi status` output, asserted to be fully ready: profile, storage, daemon, and the
    /// broker line when `rabbitmq` is true.
    pub fn assert_verdi_ready(&self, rabbitmq: bool) -> String {
        let (code, out) = self.exec(&["verdi", "status"]);
        assert_eq!(code, 0, "verdi status failed:\n{out}");
        for needle in ["✔ profile:", "✔ storage:", "✔ daemon:", "Daemon is running"] {
            assert!(
                out.contains(needle),
                "`{needle}` missing from verdi status:\n{out}"
            );
        }
        if rabbitmq {
            assert!(
                out.contains("✔ broker:") && out.contains("RabbitMQ"),
                "no RabbitMQ broker:\n{out}"
            );
        }
        out
    }

    /// Asserts that nothing in this container compiled Python bytecode into the image's
    /// environment: the image's build wrote the bytecode of everything the container ran so far
    /// (Dockerfiles/aiida-core-base/compile-bytecode). A `.pyc` newer than /etc/hostname, which
    /// Docker writes when it creates the container, was compiled here.
    pub fn assert_no_bytecode_compiled(&self) {
        let compiled = self.sh(
            "find /opt/aiida -name '*.pyc' -newer /etc/hostname -printf '%P\\n' | sort | head -40",
        );
        assert!(
            compiled.trim().is_empty(),
            "modules compiled at run time, which the image's build should have compiled \
             (add what imports them to compile-bytecode's RUNTIME_IMPORTS):\n{compiled}"
        );
    }

    /// `docker logs`, both streams in the order they were written (as one pipe).
    pub fn logs(&self) -> String {
        let out = Command::new("sh")
            .args(["-c", "docker logs \"$1\" 2>&1", "sh", &self.name])
            .output()
            .expect("run the docker command line");
        text(&out)
    }

    /// `docker stop`; returns how long it took.
    pub fn stop(&self) -> Duration {
        let start = Instant::now();
        let out = docker(&["stop", &self.name]);
        assert!(out.status.success(), "docker stop failed: {}", text(&out));
        start.elapsed()
    }

    pub fn kill(&self) {
        let out = docker(&["kill", &self.name]);
        assert!(out.status.success(), "docker kill failed: {}", text(&out));
        // Wait until the engine has seen it die.
        let _ = docker(&["wait", &self.name]);
    }

    /// `docker rm` of the stopped container (its volumes stay, for a next container).
    pub fn remove(&self) {
        let out = docker(&["rm", &self.name]);
        assert!(out.status.success(), "docker rm failed: {}", text(&out));
    }

    pub fn start_again(&self) {
        let out = docker(&["start", &self.name]);
        assert!(out.status.success(), "docker start failed: {}", text(&out));
    }

    /// `docker inspect -f FORMAT`.
    /// How many processes' command lines match the grep `pattern`; bracket one of its letters
    /// (`[d]aemon worker`) so that grep and the shell running it are not counted.
    pub fn processes(&self, pattern: &str) -> usize {
        self.sh(&format!("ps -eo args | grep -c '{pattern}' || true"))
            .trim()
            .parse()
            .expect("a count from grep -c")
    }

    /// How many daemon workers run: processes whose command line ends in `daemon worker`
    /// (`verdi -p PROFILE daemon worker`, or the image's worker program with its arguments), not
    /// counting the `aiida-init circusd` that runs them, whose command line names theirs.
    pub fn daemon_workers(&self) -> usize {
        self.sh("ps -eo args | grep '[d]aemon worker$' | grep -vc 'aiida-init circusd' || true")
            .trim()
            .parse()
            .expect("a count from grep -c")
    }

    /// The row of `service` in `aiida-init status --json`.
    pub fn service(&self, service: &str) -> serde_json::Value {
        let (code, out) = self.exec(&["aiida-init", "status", "--json"]);
        assert_eq!(code, 0, "aiida-init status --json failed:\n{out}");
        let status: serde_json::Value = serde_json::from_str(&out).expect("status as JSON");
        status["services"]
            .as_array()
            .expect("a list of services")
            .iter()
            .find(|s| s["name"] == service)
            .unwrap_or_else(|| panic!("no service {service} in:\n{out}"))
            .clone()
    }

    pub fn inspect(&self, format: &str) -> String {
        let out = docker(&["inspect", "-f", format, &self.name]);
        assert!(
            out.status.success(),
            "docker inspect failed: {}",
            text(&out)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }
}

/// Submits `core.arithmetic.add` (optionally sleeping first) through the daemon; prints the PK.
const SUBMIT_ADD: &str = r#"
import sys
from aiida import load_profile, orm, engine
from aiida.plugins import CalculationFactory
load_profile()
try:
    code = orm.load_code('add@localhost')
except Exception:
    code = orm.InstalledCode(label='add', computer=orm.load_computer('localhost'),
                             filepath_executable='/bin/bash', default_calc_job_plugin='core.arithmetic.add').store()
inputs = {'x': orm.Int(int(sys.argv[1])), 'y': orm.Int(int(sys.argv[2])), 'code': code}
if len(sys.argv) > 3:
    inputs['metadata'] = {'options': {'sleep': int(sys.argv[3])}}
print(engine.submit(CalculationFactory('core.arithmetic.add'), **inputs).pk)
"#;

/// Waits (up to argv[2] s) for process argv[1] to finish; prints `sum=<value>` or fails.
const AWAIT_PROCESS: &str = r#"
import sys, time
from aiida import load_profile, orm
load_profile()
node = orm.load_node(int(sys.argv[1]))
deadline = time.time() + float(sys.argv[2])
while not node.is_terminated and time.time() < deadline:
    time.sleep(0.5)
print(f'state={node.process_state} exit_status={node.exit_status}')
assert node.is_finished_ok, 'not finished ok'
print(f'sum={node.outputs.sum.value}')
"#;

pub fn submit_add(c: &Container, x: i64, y: i64, sleep: Option<u64>) -> String {
    let mut args = vec![
        "python".to_string(),
        "-c".into(),
        SUBMIT_ADD.into(),
        x.to_string(),
        y.to_string(),
    ];
    if let Some(s) = sleep {
        args.push(s.to_string());
    }
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, out) = c.exec(&refs);
    assert_eq!(code, 0, "submitting core.arithmetic.add failed:\n{out}");
    last_pk(&out)
}

/// The exit status of a core.arithmetic.add calculation whose job died with its container
/// (`docker kill` while the job ran): its parser finds no valid output ("invalid output").
pub const JOB_KILLED_EXIT_STATUS: i64 = 320;

/// Submits calculation `pk` again with its own stored inputs (after its job died with the
/// container: [`JOB_KILLED_EXIT_STATUS`]); returns the new calculation's PK.
pub fn submit_again(c: &Container, pk: &str) -> String {
    let (code, out) = c.python_in_profile(&format!(
        "from aiida import orm\nfrom aiida.engine import submit\nn = orm.load_node({pk})\n\
         print(submit(n.process_class, x=n.inputs.x, y=n.inputs.y, code=n.inputs.code).pk)"
    ));
    assert_eq!(code, 0, "submitting calculation {pk} again failed:\n{out}");
    last_pk(&out)
}

/// The PK a submission printed: the last number (a log line on stderr may follow it).
fn last_pk(out: &str) -> String {
    out.lines()
        .rev()
        .map(str::trim)
        .find(|line| !line.is_empty() && line.bytes().all(|b| b.is_ascii_digit()))
        .unwrap_or_else(|| panic!("no PK in:\n{out}"))
        .to_owned()
}

pub fn await_sum(c: &Container, pk: &str) -> i64 {
    await_sum_within(c, pk, 120)
}

/// [`await_sum`] with a ceiling of `seconds`.
pub fn await_sum_within(c: &Container, pk: &str, seconds: u64) -> i64 {
    let (code, out) = c.exec(&["python", "-c", AWAIT_PROCESS, pk, &seconds.to_string()]);
    assert_eq!(
        code,
        0,
        "process {pk} did not finish ok:\n{out}\n--- daemon log ---\n{}",
        c.sh("tail -n 40 ~/.aiida/daemon/log/*.log || true")
    );
    out.lines()
        .find_map(|l| l.strip_prefix("sum="))
        .expect("a sum")
        .trim()
        .parse()
        .unwrap()
}

/// A named volume for the home folder, removed when the harness drops.
pub fn home_volume(h: &Harness) -> String {
    let name = unique_name("home");
    h.track_volume(&name);
    name
}

/// A container of `image` that keeps `per_core` busy loops per CPU core running for `seconds`
/// (then it exits): the load of a machine busy with builds and other containers. Removed with
/// the harness.
pub fn cpu_hogs<'h>(h: &'h Harness, image: &str, per_core: usize, seconds: u64) -> Container<'h> {
    let script = format!(
        "for i in $(seq $(( $(nproc) * {per_core} ))); do timeout {seconds} sh -c 'while :; do :; done' & done; wait"
    );
    let hogs = Container::start(
        h,
        image,
        Start {
            entrypoint: Some("sh".into()),
            cmd: vec!["-c".into(), script],
            ..Default::default()
        },
    );
    // The loops are running once the container's processes include them.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, top) = hogs.exec(&["sh", "-c", "ps -eo args | grep -c '^sh -c while'"]);
        if top.trim().parse::<usize>().unwrap_or(0) >= per_core {
            return hogs;
        }
        assert!(
            Instant::now() < deadline,
            "the CPU hogs did not start:\n{}",
            hogs.logs()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

pub fn require_docker_cli() {
    require(
        Command::new("docker")
            .arg("version")
            .output()
            .is_ok_and(|o| o.status.success()),
        "the docker command line talking to the engine",
    );
}
