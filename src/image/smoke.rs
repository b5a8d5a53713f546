//! The release gate: a with-services container of each platform must become ready and run a
//! calculation through the daemon before anything is published.
//!
//! For one platform's local image (see [`super::naming::local_tag`]) the smoke test
//! 1. starts a container (another architecture than the host's runs under qemu);
//! 2. waits with `aiida-init wait` until every service is ready;
//! 3. checks that `verdi status` reports the profile, the storage, RabbitMQ as the broker and a
//!    running daemon;
//! 4. submits `core.arithmetic.add` through the daemon and waits until it has finished ok.
//!
//! All of it within [`SMOKE_TIMEOUT`] (sized for emulation, where RabbitMQ alone takes about
//! 30 s). A failure names the platform, the step, the service at fault (from `aiida-init wait`)
//! and the last lines of the container's log. The container is removed either way.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::host::docker::{
    ContainerCreateBody, CreateContainerOptions, Docker, StartContainerOptions, exec, log_tail,
    remove,
};
use crate::platform::Platform;

/// The ceiling for one platform's whole smoke test.
pub const SMOKE_TIMEOUT: Duration = Duration::from_secs(600);

/// Submits `core.arithmetic.add` through the daemon and waits (argv[1] s) until it finishes ok.
const ADD_THROUGH_THE_DAEMON: &str = r#"
import sys, time
from aiida import load_profile, orm, engine
from aiida.plugins import CalculationFactory
load_profile()
code = orm.InstalledCode(label='smoke-add', computer=orm.load_computer('localhost'),
                         filepath_executable='/bin/bash', default_calc_job_plugin='core.arithmetic.add').store()
node = engine.submit(CalculationFactory('core.arithmetic.add'), x=orm.Int(20), y=orm.Int(22), code=code)
deadline = time.time() + float(sys.argv[1])
while not node.is_terminated and time.time() < deadline:
    time.sleep(1)
print(f'process {node.pk}: state={node.process_state} exit_status={node.exit_status}')
assert node.is_finished_ok, 'the calculation did not finish ok'
assert node.outputs.sum.value == 42, f'sum is {node.outputs.sum.value}, not 42'
"#;

/// Run the smoke test of `image` for `platform`; returns how long the container took to be ready.
pub async fn smoke_test(
    docker: &Docker,
    image: &str,
    platform: Platform,
) -> anyhow::Result<Duration> {
    // Unique per call: one process may smoke-test the same platform twice at once.
    static CALLS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let name = format!(
        "aiida-devc-smoke-{}-{}-{}",
        platform.architecture(),
        std::process::id(),
        CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    );
    let body = ContainerCreateBody {
        image: Some(image.to_owned()),
        ..Default::default()
    };
    docker
        .create_container(
            Some(CreateContainerOptions {
                name: Some(name.clone()),
                ..Default::default()
            }),
            body,
        )
        .await
        .with_context(|| {
            format!("smoke test of {platform}: cannot create a container of {image}")
        })?;
    let result = run(docker, &name, platform).await;
    let result = match result {
        Ok(ready) => Ok(ready),
        Err(e) => {
            let tail = log_tail(docker, &name, 30).await;
            Err(e.context(format!(
                "smoke test of {platform} ({image}) failed; last lines of the container's log:\n{tail}"
            )))
        }
    };
    remove(docker, &name).await;
    result
}

async fn run(docker: &Docker, name: &str, platform: Platform) -> anyhow::Result<Duration> {
    let started = Instant::now();
    docker
        .start_container(name, None::<StartContainerOptions>)
        .await?;
    let left = |started: Instant| SMOKE_TIMEOUT.saturating_sub(started.elapsed()).as_secs();

    let uname = exec(docker, name, "aiida", &["uname", "-m"]).await?;
    if uname.stdout.trim() != platform.uname_machine() {
        bail!(
            "{platform}: `uname -m` in the container printed {:?}, not {}",
            uname.stdout.trim(),
            platform.uname_machine()
        );
    }
    // `aiida-init wait` names the service at fault and its last log lines.
    let wait = exec(
        docker,
        name,
        "aiida",
        &[
            "aiida-init",
            "wait",
            "--timeout",
            &left(started).to_string(),
        ],
    )
    .await?;
    if wait.exit_code != 0 {
        bail!(
            "{platform}: the container did not become ready (aiida-init wait exited {}):\n{}{}",
            wait.exit_code,
            wait.stdout,
            wait.stderr
        );
    }
    let ready = started.elapsed();

    let status = exec(docker, name, "aiida", &["verdi", "status"]).await?;
    let text = format!("{}{}", status.stdout, status.stderr);
    let missing: Vec<&str> = [
        "✔ profile:",
        "✔ storage:",
        "✔ broker:",
        "RabbitMQ",
        "✔ daemon:",
    ]
    .into_iter()
    .filter(|needle| !text.contains(needle))
    .collect();
    if status.exit_code != 0 || !missing.is_empty() {
        bail!(
            "{platform}: `verdi status` is not all ✔ with RabbitMQ and the daemon (exit {}, missing {missing:?}):\n{text}",
            status.exit_code
        );
    }

    let add = exec(
        docker,
        name,
        "aiida",
        &[
            "python",
            "-c",
            ADD_THROUGH_THE_DAEMON,
            &left(started).to_string(),
        ],
    )
    .await?;
    if add.exit_code != 0 {
        let daemon_log = exec(
            docker,
            name,
            "aiida",
            &["sh", "-c", "tail -n 30 ~/.aiida/daemon/log/*.log"],
        )
        .await
        .map(|o| o.stdout)
        .unwrap_or_default();
        bail!(
            "{platform}: core.arithmetic.add did not finish through the daemon:\n{}{}\nservice aiida-daemon, last log lines:\n{daemon_log}",
            add.stdout,
            add.stderr
        );
    }
    Ok(ready)
}
