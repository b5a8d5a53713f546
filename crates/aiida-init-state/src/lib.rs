//! The state file (`state.json` in aiida-init's runtime directory): one typed schema for its
//! writer, aiida-init's engine, and its readers, `aiida-init status`, `aiida-init wait` and
//! `aiida-devc up`.
//!
//! A crate of its own so that the CLI, which runs on macOS and Windows too, reads the schema
//! without linking aiida-init's Linux-only runtime; aiida-init re-exports it as
//! `aiida_init::state`.
//!
//! The wire format is plain JSON with the field names below. Readers accept files written by
//! older aiida-init versions and by hand: every field has a default, and unknown fields are
//! ignored. Times are milliseconds since the instance started (`boot_unix_ms`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

/// The whole file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct InstanceState {
    /// The aiida-init process.
    pub pid: u32,
    /// That process's start time (`/proc/PID/stat` field 22, clock ticks since the kernel
    /// booted) and PID namespace (`pid:[INODE]`): they tell the running instance from a file
    /// left by an earlier one (after `docker stop`/`docker start`, PID 1 is alive again but is
    /// another process, in another namespace). `None` in files written by older versions.
    pub pid_start_ticks: Option<u64>,
    pub pid_namespace: Option<String>,
    pub phase: Phase,
    /// Wall-clock start, in milliseconds since the Unix epoch.
    pub boot_unix_ms: u64,
    /// When every wanted service had settled (stage 2 over).
    pub services_up_ms: Option<u64>,
    pub command: CommandState,
    /// Each bundle's atomic members.
    pub bundles: BTreeMap<String, Vec<String>>,
    /// Atomic services in start order (those wanted, and any other that is not down).
    pub services: Vec<ServiceState>,
    pub timeline: Vec<TimelineEvent>,
}

/// Where the instance is in its life.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    #[default]
    Starting,
    Running,
    Stopping,
    Finished,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Starting => "starting",
            Phase::Running => "running",
            Phase::Stopping => "stopping",
            Phase::Finished => "finished",
        }
    }
}

/// The container command.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CommandState {
    pub argv: Vec<String>,
    pub pid: Option<i32>,
    /// The exit code, 128+N for signal N.
    pub exit: Option<i32>,
}

/// An atomic service.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ServiceKind {
    #[default]
    Oneshot,
    Longrun,
}

impl ServiceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceKind::Oneshot => "oneshot",
            ServiceKind::Longrun => "longrun",
        }
    }
}

/// A service's state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ServiceStatus {
    #[default]
    Down,
    /// A oneshot's `up` runs, or a longrun waits for its readiness notification or restart.
    Starting,
    /// A oneshot's `up` succeeded, or a longrun without readiness notification runs.
    Up,
    /// A longrun notified readiness.
    Ready,
    Failed,
    Stopping,
}

impl ServiceStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceStatus::Down => "down",
            ServiceStatus::Starting => "starting",
            ServiceStatus::Up => "up",
            ServiceStatus::Ready => "ready",
            ServiceStatus::Failed => "failed",
            ServiceStatus::Stopping => "stopping",
        }
    }
}

/// One service.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ServiceState {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: ServiceKind,
    pub state: ServiceStatus,
    pub pid: Option<i32>,
    /// A longrun with `notification-fd`: ready only once it says so.
    pub notifies_readiness: bool,
    /// Direct dependencies (atomic services).
    pub dependencies: Vec<String>,
    pub started_ms: Option<u64>,
    pub ready_ms: Option<u64>,
    /// From started to ready.
    pub took_ms: Option<u64>,
    pub restarts: u32,
    /// How its last process ended (`exited 1`, `killed by SIGKILL`).
    pub last_exit: Option<String>,
    /// Why it failed or is not started.
    pub reason: Option<String>,
    /// Its last lines of output.
    pub last_lines: Vec<String>,
}

/// s6-overlay's built-in oneshots, which do nothing unless the tree uses the legacy
/// directories or `S6_STAGE2_HOOK`.
const OVERLAY_BUILTINS: &[&str] = &[
    "stage2-hook",
    "fix-attrs",
    "legacy-cont-init",
    "legacy-services",
];

impl ServiceState {
    /// Ready for its dependents and for `wait`: a longrun that notified readiness, or any
    /// service that is up and does not notify readiness.
    pub fn is_ready(&self) -> bool {
        match self.state {
            ServiceStatus::Ready => true,
            ServiceStatus::Up => !self.notifies_readiness,
            _ => false,
        }
    }

    /// A longrun that ran, stopped, and is not restarted (`s6-svc -d`, or `-O` as its `finish`
    /// sends after a stop the service takes for its user's own): down until started again.
    pub fn is_stopped_for_good(&self) -> bool {
        self.kind == ServiceKind::Longrun
            && self.state == ServiceStatus::Down
            && self.pid.is_none()
            && self.last_exit.is_some()
    }

    /// One of s6-overlay's built-in services that is up and took no time: it did nothing, and
    /// summaries (`aiida-init status`, `aiida-devc up`'s timeline) leave it out.
    pub fn is_empty_builtin(&self) -> bool {
        OVERLAY_BUILTINS.contains(&self.name.as_str())
            && self.state == ServiceStatus::Up
            && self.took_ms.unwrap_or(0) == 0
    }
}

/// One line of the timeline.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TimelineEvent {
    pub ms: u64,
    /// A service name, or `(init)` / `(command)`.
    pub service: String,
    pub event: String,
}

impl InstanceState {
    /// Parse the file's text.
    pub fn from_json(text: &str) -> Result<InstanceState> {
        serde_json::from_str(text).context("not an aiida-init state file")
    }

    /// Read and parse the file at `path`.
    pub fn read(path: &Path) -> Result<InstanceState> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("{}: cannot read", path.display()))?;
        InstanceState::from_json(&text).with_context(|| path.display().to_string())
    }

    /// The file's text.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    pub fn service(&self, name: &str) -> Option<&ServiceState> {
        self.services.iter().find(|s| s.name == name)
    }

    /// What `wait NAMES` waits for: the named services, bundles expanded (the `user` bundle
    /// when none is named), plus everything they depend on. `Err(name)`: a name that is
    /// neither a service nor a bundle.
    pub fn targets(&self, names: &[String]) -> Result<BTreeSet<String>, String> {
        let user = ["user".to_string()];
        let names = if names.is_empty() { &user[..] } else { names };
        let mut out = BTreeSet::new();
        for n in names {
            if let Some(members) = self.bundles.get(n) {
                out.extend(members.iter().cloned());
            } else if self.service(n).is_some() {
                out.insert(n.clone());
            } else {
                return Err(n.clone());
            }
        }
        let mut todo: Vec<String> = out.iter().cloned().collect();
        while let Some(n) = todo.pop() {
            for d in self
                .service(&n)
                .map(|s| &s.dependencies)
                .into_iter()
                .flatten()
            {
                if out.insert(d.clone()) {
                    todo.push(d.clone());
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(name: &str, state: ServiceStatus, took_ms: Option<u64>) -> ServiceState {
        ServiceState {
            name: name.into(),
            state,
            took_ms,
            ..ServiceState::default()
        }
    }

    #[test]
    fn an_empty_builtin_is_one_that_is_up_and_took_no_time() {
        assert!(service("fix-attrs", ServiceStatus::Up, Some(0)).is_empty_builtin());
        assert!(service("stage2-hook", ServiceStatus::Up, None).is_empty_builtin());
        assert!(service("legacy-cont-init", ServiceStatus::Up, Some(0)).is_empty_builtin());
        assert!(service("legacy-services", ServiceStatus::Up, Some(0)).is_empty_builtin());
        // It did something, failed, or is not there yet: shown.
        assert!(!service("legacy-cont-init", ServiceStatus::Up, Some(12)).is_empty_builtin());
        assert!(!service("fix-attrs", ServiceStatus::Failed, Some(0)).is_empty_builtin());
        assert!(!service("fix-attrs", ServiceStatus::Starting, None).is_empty_builtin());
        // Not a built-in.
        assert!(!service("postgresql", ServiceStatus::Up, Some(0)).is_empty_builtin());
    }

    #[test]
    fn readiness_depends_on_notification() {
        let mut s = service("db", ServiceStatus::Up, None);
        assert!(s.is_ready());
        s.notifies_readiness = true;
        assert!(!s.is_ready());
        s.state = ServiceStatus::Ready;
        assert!(s.is_ready());
    }

    #[test]
    fn a_file_of_an_older_writer_is_read_with_defaults() {
        let state = InstanceState::from_json(
            r#"{"pid": 1, "phase": "running", "services_up_ms": 7100, "extra": true,
                "services": [{"name": "db", "type": "longrun", "state": "ready", "pid": 12}]}"#,
        )
        .unwrap();
        assert_eq!(state.phase, Phase::Running);
        let db = state.service("db").unwrap();
        assert_eq!(
            (db.kind, db.state, db.pid),
            (ServiceKind::Longrun, ServiceStatus::Ready, Some(12))
        );
        assert!(state.timeline.is_empty());
        assert!(InstanceState::from_json(r#"{"services": 3}"#).is_err());
        assert!(InstanceState::from_json("no such command").is_err());
    }

    #[test]
    fn the_wire_format_round_trips_with_its_field_names() {
        let state = InstanceState {
            pid: 1,
            phase: Phase::Stopping,
            services: vec![ServiceState {
                kind: ServiceKind::Longrun,
                ..service("db", ServiceStatus::Ready, Some(5))
            }],
            ..InstanceState::default()
        };
        let json = state.to_json();
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(value["phase"], "stopping");
        assert_eq!(value["services"][0]["type"], "longrun");
        assert_eq!(value["services"][0]["state"], "ready");
        assert_eq!(value["services"][0]["took_ms"], 5);
        assert_eq!(value["command"]["argv"], serde_json::json!([]));
        assert_eq!(InstanceState::from_json(&json).unwrap(), state);
    }

    #[test]
    fn targets_expand_bundles_and_dependencies() {
        let mut app = service("app", ServiceStatus::Up, None);
        app.dependencies = vec!["db".into()];
        let state = InstanceState {
            bundles: BTreeMap::from([("user".into(), vec!["app".into()])]),
            services: vec![service("db", ServiceStatus::Up, None), app],
            ..InstanceState::default()
        };
        let both = BTreeSet::from(["app".to_string(), "db".to_string()]);
        assert_eq!(state.targets(&[]), Ok(both));
        assert_eq!(
            state.targets(&["db".into()]),
            Ok(BTreeSet::from(["db".to_string()]))
        );
        assert_eq!(state.targets(&["nosuch".into()]), Err("nosuch".into()));
    }
}
