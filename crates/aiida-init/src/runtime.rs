//! The runtime directory: where a running aiida-init keeps what other processes need to find.
//!
//! The base directory `B` is chosen at start, first match wins:
//!
//! 1. `$AIIDA_INIT_RUNTIME_DIR` when set (created if missing);
//! 2. `/run` when it is a directory this user can write (root in a container);
//! 3. `$XDG_RUNTIME_DIR` when set and writable;
//! 4. `/tmp/aiida-init-<uid>` (created with mode 0700, and refused if someone else owns it).
//!
//! Under `B`, with the same layout as s6-overlay so that scripts written for it work:
//!
//! * `B/s6/container_environment/`: the container environment as an envdir (one file per
//!   variable), read by `with-contenv` and `printcontenv`;
//! * `B/s6-linux-init-container-results/exitcode`: the container's exit code, read at the end;
//! * `B/s6/basedir/bin/halt`: a link to aiida-init that starts the ordered shutdown;
//! * `B/aiida-init/state.json`: services, states and timeline, read by `status` and `wait`;
//! * `B/aiida-init/control`: a FIFO taking one command per line (`halt`, `svc -r NAME`, ...).
//!
//! Other processes (`docker exec aiida-init status`, `with-contenv` in a service) find the
//! running instance with [`locate`]: the same candidates in the same order, plus any
//! `/tmp/aiida-init-*`, keeping the first whose `state.json` names a live process. This works
//! whatever the environment or user of the exec'd process.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use super::state::{InstanceState, Phase};

pub const ENV_RUNTIME_DIR: &str = "AIIDA_INIT_RUNTIME_DIR";

/// The paths of one runtime directory.
#[derive(Debug, Clone)]
pub struct Runtime {
    pub base: PathBuf,
}

impl Runtime {
    pub fn container_environment(&self) -> PathBuf {
        self.base.join("s6/container_environment")
    }
    pub fn exitcode_file(&self) -> PathBuf {
        self.base.join("s6-linux-init-container-results/exitcode")
    }
    pub fn halt_link(&self) -> PathBuf {
        self.base.join("s6/basedir/bin/halt")
    }
    pub fn state_dir(&self) -> PathBuf {
        self.base.join("aiida-init")
    }
    pub fn state_file(&self) -> PathBuf {
        self.state_dir().join("state.json")
    }
    pub fn control_fifo(&self) -> PathBuf {
        self.state_dir().join("control")
    }
}

fn writable_dir(path: &Path) -> bool {
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()) else {
        return false;
    };
    path.is_dir() && unsafe { libc::access(c.as_ptr(), libc::W_OK | libc::X_OK) } == 0
}

/// A base directory is usable when this user can write it and the subdirectories we need
/// (which an image may have created as another user) are ours to write as well.
fn usable(base: &Path) -> bool {
    if !writable_dir(base) {
        return false;
    }
    let rt = Runtime {
        base: base.to_path_buf(),
    };
    let dirs = [
        rt.state_dir(),
        rt.container_environment().parent().unwrap().to_path_buf(),
        rt.exitcode_file().parent().unwrap().to_path_buf(),
    ];
    dirs.iter()
        .all(|d| (std::fs::create_dir_all(d).is_ok()) && writable_dir(d))
}

fn per_uid_tmp() -> PathBuf {
    PathBuf::from(format!("/tmp/aiida-init-{}", nix::unistd::getuid()))
}

/// Choose (and create) the runtime base directory for a new instance.
pub fn choose() -> Result<Runtime> {
    if let Some(dir) = std::env::var_os(ENV_RUNTIME_DIR).filter(|d| !d.is_empty()) {
        let dir = PathBuf::from(dir);
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("{ENV_RUNTIME_DIR}={}: cannot create it", dir.display()))?;
        return Ok(Runtime { base: dir });
    }
    if usable(Path::new("/run")) {
        return Ok(Runtime {
            base: "/run".into(),
        });
    }
    if let Some(x) = std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from) {
        if usable(&x) {
            return Ok(Runtime { base: x });
        }
    }
    let dir = per_uid_tmp();
    match std::fs::create_dir(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => bail!(
            "{}: cannot create the runtime directory: {e}",
            dir.display()
        ),
    }
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let meta = std::fs::symlink_metadata(&dir)?;
    if !meta.is_dir() || meta.uid() != nix::unistd::getuid().as_raw() {
        bail!(
            "{}: exists but is not a directory owned by uid {}; set {ENV_RUNTIME_DIR} to a private directory",
            dir.display(),
            nix::unistd::getuid()
        );
    }
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
    Ok(Runtime { base: dir })
}

/// The candidates a separate process searches, in order.
pub fn candidates() -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Some(dir) = std::env::var_os(ENV_RUNTIME_DIR).filter(|d| !d.is_empty()) {
        out.push(PathBuf::from(dir));
    }
    out.push("/run".into());
    if let Some(x) = std::env::var_os("XDG_RUNTIME_DIR") {
        out.push(PathBuf::from(x));
    }
    out.push(per_uid_tmp());
    if let Ok(entries) = std::fs::read_dir("/tmp") {
        let mut others: Vec<PathBuf> = entries
            .flatten()
            .filter(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                name.strip_prefix("aiida-init-")
                    .is_some_and(|uid| !uid.is_empty() && uid.bytes().all(|b| b.is_ascii_digit()))
            })
            .map(|e| e.path())
            .collect();
        others.sort();
        out.extend(others);
    }
    out
}

/// True when `pid` names a live process (EPERM counts as alive: it exists).
pub fn pid_alive(pid: i32) -> bool {
    if pid <= 0 {
        return false;
    }
    match nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None) {
        Ok(()) => {}
        Err(nix::errno::Errno::EPERM) => {}
        Err(_) => return false,
    }
    // A zombie is not a running instance.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => !s
            .rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z'),
        Err(_) => true,
    }
}

/// The start time of the process whose `/proc` directory is `proc_dir` (`stat` field 22, clock
/// ticks since boot: the same number from every PID namespace), unless it is a zombie.
pub fn start_ticks(proc_dir: &Path) -> Option<u64> {
    let stat = std::fs::read_to_string(proc_dir.join("stat")).ok()?;
    // Field 2 (comm) may hold spaces and parentheses: count from the last ')', which ends it;
    // after it come field 3 (state) onwards, so field 22 is the 20th.
    let mut fields = stat.rsplit_once(')')?.1.split_whitespace();
    if fields.next()? == "Z" {
        return None;
    }
    fields.nth(18)?.parse().ok()
}

/// The PID namespace of the process whose `/proc` directory is `proc_dir` (`pid:[INODE]`).
fn pid_namespace(proc_dir: &Path) -> Option<String> {
    let link = std::fs::read_link(proc_dir.join("ns/pid")).ok()?;
    Some(link.to_string_lossy().into_owned())
}

/// This process's start time and PID namespace, for the state file.
///
/// The start time is read from `/proc/PID/task/PID/stat` (the main thread's, the same number),
/// not from `/proc/self/stat`: qemu's user-mode emulation, which runs the arm64 images on an
/// x86_64 host, answers reads of `/proc/self/stat` and `/proc/PID/stat` of the emulated process
/// itself with a start time of its own making, which would never match what every other process
/// reads for this PID.
pub fn own_identity() -> (Option<u64>, Option<String>) {
    let pid = std::process::id();
    let main_thread = PathBuf::from(format!("/proc/{pid}/task/{pid}"));
    (
        start_ticks(&main_thread),
        pid_namespace(Path::new("/proc/self")),
    )
}

/// Whether the instance that wrote `state` is still running.
///
/// Its process must be alive and be the same process: a file left by an earlier instance (a
/// stopped or killed container started again, where PID 1 is alive but is another process) is
/// not the running instance. Seen from the instance's own PID namespace (`docker exec`), its
/// PID must have the recorded start time; seen from outside (the host, tests), some process of
/// that namespace must. Files of older versions, without those fields, fall back to the PID.
pub fn is_running(state: &InstanceState) -> bool {
    if state.phase == Phase::Finished {
        return false;
    }
    let pid = i32::try_from(state.pid).unwrap_or(0);
    let (Some(ticks), Some(namespace)) = (state.pid_start_ticks, state.pid_namespace.as_deref())
    else {
        return pid_alive(pid);
    };
    if pid_namespace(Path::new("/proc/self")).as_deref() == Some(namespace) {
        return pid > 0 && start_ticks(&Path::new("/proc").join(pid.to_string())) == Some(ticks);
    }
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return false;
    };
    entries.flatten().any(|entry| {
        let dir = entry.path();
        entry
            .file_name()
            .to_string_lossy()
            .bytes()
            .all(|b| b.is_ascii_digit())
            && start_ticks(&dir) == Some(ticks)
            && pid_namespace(&dir).as_deref() == Some(namespace)
    })
}

/// The PID of an instance that runs from `rt` (see [`is_running`]), if one does: a new instance
/// must not take over its runtime directory, whose state and control FIFO `status`, `wait` and
/// the services' commands use.
pub fn running_instance(rt: &Runtime) -> Option<u32> {
    InstanceState::read(&rt.state_file())
        .ok()
        .filter(is_running)
        .map(|state| state.pid)
}

/// Find the runtime directory of the running instance, if any (see [`is_running`]).
pub fn locate() -> Option<Runtime> {
    candidates()
        .into_iter()
        .map(|base| Runtime { base })
        .find(|rt| InstanceState::read(&rt.state_file()).is_ok_and(|state| is_running(&state)))
}

/// Write `contents` to `path` atomically (temporary file, then swapped in or renamed).
///
/// When `path` exists, the new file is exchanged with it (`renameat2` with `RENAME_EXCHANGE`)
/// and the old one removed: readers see the old or the new contents, as with a rename, but ext4
/// does not flush the new file's data first, which it does for a rename over an existing file
/// (`auto_da_alloc`) and which costs a fraction of a millisecond that nothing here needs (the
/// file is not meant to survive a crash). Where the exchange is unsupported, a plain rename.
pub fn write_atomic(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, contents)?;
    if exchange(&tmp, path).is_ok() {
        // `tmp` now holds the old contents.
        let _ = std::fs::remove_file(&tmp);
        return Ok(());
    }
    std::fs::rename(&tmp, path)
}

/// Atomically swap the files `a` and `b` (both must exist).
fn exchange(a: &Path, b: &Path) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let c = |p: &Path| {
        std::ffi::CString::new(p.as_os_str().as_bytes())
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))
    };
    let (a, b) = (c(a)?, c(b)?);
    // SAFETY: renameat2 with two valid NUL-terminated paths relative to the working directory.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_renameat2,
            libc::AT_FDCWD,
            a.as_ptr(),
            libc::AT_FDCWD,
            b.as_ptr(),
            libc::RENAME_EXCHANGE,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Dump `vars` into `dir` as an envdir: one file per variable, the value as its content.
pub fn write_envdir(dir: &Path, vars: &[(String, String)]) -> Result<()> {
    if dir.exists() {
        std::fs::remove_dir_all(dir)
            .with_context(|| format!("{}: cannot clear the old envdir", dir.display()))?;
    }
    std::fs::create_dir_all(dir)
        .with_context(|| format!("{}: cannot create the envdir", dir.display()))?;
    for (k, v) in vars {
        if k.is_empty() || k.contains('/') || k.contains('=') || k.starts_with('.') {
            continue;
        }
        std::fs::write(dir.join(k), v)
            .with_context(|| format!("{}: cannot write {k}", dir.display()))?;
    }
    Ok(())
}

/// Read an envdir written by [`write_envdir`] (values are whole files).
pub fn read_envdir(dir: &Path) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    let entries = std::fs::read_dir(dir)
        .with_context(|| format!("{}: cannot read the container environment", dir.display()))?;
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        let value = std::fs::read(e.path()).unwrap_or_default();
        out.push((name, String::from_utf8_lossy(&value).into_owned()));
    }
    out.sort();
    Ok(out)
}

/// The runtime directory for helpers that run inside a service (explicit variable first).
pub fn for_helpers() -> Result<Runtime> {
    locate().ok_or_else(|| {
        anyhow::anyhow!(
            "no running aiida-init found (searched {})",
            candidates()
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )
    })
}

/// Send one request (`halt`, `svc -r NAME`) to the running instance's control FIFO.
pub fn send_control(rt: &Runtime, line: &str) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let fifo = rt.control_fifo();
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&fifo)
        .with_context(|| format!("unable to open {}", fifo.display()))?;
    f.write_all(format!("{line}\n").as_bytes())
        .with_context(|| format!("unable to write to {}", fifo.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_recorded_start_time_is_what_other_processes_read_for_this_pid() {
        let seen_by_others = start_ticks(&Path::new("/proc").join(std::process::id().to_string()));
        assert!(seen_by_others.is_some());
        assert_eq!(own_identity().0, seen_by_others);
    }

    #[test]
    fn this_process_is_running_and_a_namesake_with_another_start_time_is_not() {
        let (ticks, namespace) = own_identity();
        let state = |ticks: Option<u64>, phase: Phase| InstanceState {
            pid: std::process::id(),
            pid_start_ticks: ticks,
            pid_namespace: namespace.clone(),
            phase,
            ..InstanceState::default()
        };
        assert!(ticks.is_some() && namespace.is_some());
        assert!(is_running(&state(ticks, Phase::Stopping)));
        assert!(!is_running(&state(ticks, Phase::Finished)));
        assert!(!is_running(&state(ticks.map(|t| t + 1), Phase::Running)));
        // Another namespace: some process of it must have the start time.
        let elsewhere = InstanceState {
            pid_namespace: Some("pid:[1]".into()),
            ..state(ticks, Phase::Running)
        };
        assert!(!is_running(&elsewhere));
    }

    #[test]
    fn write_atomic_creates_then_replaces_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        write_atomic(&path, b"first").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"first");
        write_atomic(&path, b"second, longer").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"second, longer");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("state.json")]);
    }
}
