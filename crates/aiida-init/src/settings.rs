//! The `S6_*` environment variables aiida-init honours, with s6-overlay's meanings and defaults,
//! and aiida-init's own `AIIDA_INIT_*` variables.
//!
//! | Variable | Default | Meaning |
//! |---|---|---|
//! | `S6_KEEP_ENV` | 0 | 1: services and the command keep the whole environment |
//! | `S6_BEHAVIOUR_IF_STAGE2_FAILS` | 0 | 0 continue, 1 warn, 2 stop the container with the failing code |
//! | `S6_CMD_WAIT_FOR_SERVICES` | 0 | 1: `/etc/services.d` services must be ready (not just started) |
//! | `S6_CMD_WAIT_FOR_SERVICES_MAXTIME` | 0 | ms to bring everything up (0: no limit) |
//! | `S6_SERVICES_GRACETIME` | 3000 | ms a stopping longrun without `timeout-kill` gets before SIGKILL |
//! | `S6_KILL_GRACETIME` | 3000 | ms the command gets after SIGTERM, and the leftovers after the final TERM, before KILL; never slept when nothing is left |
//! | `S6_KILL_FINISH_MAXTIME` | 0 | ms limit for each `/etc/cont-finish.d` script (0: no limit) |
//! | `S6_VERBOSITY` | 2 | 0 errors, 1 warnings, 2 start/stop information, 3+ debug |
//! | `S6_CMD_ARG0` | unset | words put before the command's arguments |
//! | `S6_CMD_RECEIVE_SIGNALS` | 0 | 1: TERM (and INT, QUIT, USR1, USR2, PWR, WINCH) go to the command only |
//! | `S6_STAGE2_HOOK` | unset | shell snippet run before `base` (cont-init) and the services that depend on it |
//! | `S6_RUNTIME_PROFILE` | unset | use `/etc/cont-profile.d/<profile>/` instead of `/etc` |
//! | `S6_RUNTIME_BUNDLEDIR` | `<profile>/s6-overlay/user-bundles.d` | where the `user`/`user2` bundles are |
//! | `AIIDA_INIT_ROOT` | `/` | prefix for every `/etc` path (tests, chroots) |
//! | `AIIDA_INIT_S6_RC_DIR` | `<root>/etc/s6-overlay/s6-rc.d` | the service definitions directory |
//! | `AIIDA_INIT_RUNTIME_DIR` | see [`super::runtime`] | the runtime directory |

use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Settings {
    pub keep_env: bool,
    pub behaviour_if_stage2_fails: u8,
    pub cmd_wait_for_services: bool,
    pub cmd_wait_for_services_maxtime: Option<Duration>,
    pub services_gracetime: Duration,
    pub kill_gracetime: Duration,
    pub kill_finish_maxtime: Option<Duration>,
    pub verbosity: u8,
    pub cmd_arg0: Vec<String>,
    pub cmd_receive_signals: bool,
    pub stage2_hook: Option<String>,
    pub paths: Paths,
}

/// Where the service definitions are read from.
#[derive(Debug, Clone)]
pub struct Paths {
    pub s6_rc_dir: PathBuf,
    pub bundle_dir: PathBuf,
    pub cont_init_dir: PathBuf,
    pub services_dir: PathBuf,
    pub cont_finish_dir: PathBuf,
}

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn flag(name: &str) -> bool {
    var(name).is_some_and(|v| v.trim() != "0")
}

fn millis(name: &str, default: u64) -> u64 {
    var(name)
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

fn optional_millis(name: &str) -> Option<Duration> {
    match millis(name, 0) {
        0 => None,
        ms => Some(Duration::from_millis(ms)),
    }
}

impl Settings {
    pub fn from_env() -> Settings {
        let root = PathBuf::from(var("AIIDA_INIT_ROOT").unwrap_or_else(|| "/".into()));
        let etc = root.join("etc");
        let (profile_dir, legacy_base) = match var("S6_RUNTIME_PROFILE") {
            Some(p) => {
                let base = etc.join("cont-profile.d").join(p);
                (base.join("s6-overlay"), base)
            }
            None => (etc.join("s6-overlay"), etc.clone()),
        };
        let s6_rc_dir =
            var("AIIDA_INIT_S6_RC_DIR").map_or_else(|| profile_dir.join("s6-rc.d"), PathBuf::from);
        let bundle_dir = var("S6_RUNTIME_BUNDLEDIR")
            .map_or_else(|| profile_dir.join("user-bundles.d"), PathBuf::from);
        Settings {
            keep_env: flag("S6_KEEP_ENV"),
            behaviour_if_stage2_fails: millis("S6_BEHAVIOUR_IF_STAGE2_FAILS", 0).min(2) as u8,
            cmd_wait_for_services: flag("S6_CMD_WAIT_FOR_SERVICES"),
            cmd_wait_for_services_maxtime: optional_millis("S6_CMD_WAIT_FOR_SERVICES_MAXTIME"),
            services_gracetime: Duration::from_millis(millis("S6_SERVICES_GRACETIME", 3000)),
            kill_gracetime: Duration::from_millis(millis("S6_KILL_GRACETIME", 3000)),
            kill_finish_maxtime: optional_millis("S6_KILL_FINISH_MAXTIME"),
            verbosity: millis("S6_VERBOSITY", 2).min(9) as u8,
            cmd_arg0: var("S6_CMD_ARG0")
                .map(|v| v.split_whitespace().map(String::from).collect())
                .unwrap_or_default(),
            cmd_receive_signals: flag("S6_CMD_RECEIVE_SIGNALS"),
            stage2_hook: var("S6_STAGE2_HOOK"),
            paths: Paths {
                s6_rc_dir,
                bundle_dir,
                cont_init_dir: legacy_base.join("cont-init.d"),
                services_dir: legacy_base.join("services.d"),
                cont_finish_dir: legacy_base.join("cont-finish.d"),
            },
        }
    }
}
