//! ruff and shellcheck over the scripts of the images and the Features (`Dockerfiles/`,
//! `features/`), and ruff over the daemon service's unit tests (`tests/python`). The scripts have
//! no extension: each is picked by its shebang. `bash scripts/bootstrap.sh` installs both tools.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::{Need, project_root, skip_without};

/// The files git tracks or would track (not ignored) below `folders`, relative to the root.
fn files_below(folders: &[&str]) -> Vec<PathBuf> {
    let out = Command::new("git")
        .args([
            "ls-files",
            "--cached",
            "--others",
            "--exclude-standard",
            "--",
        ])
        .args(folders)
        .current_dir(project_root())
        .output()
        .expect("run git ls-files");
    assert!(out.status.success(), "git ls-files failed");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(PathBuf::from)
        .filter(|path| project_root().join(path).is_file())
        .collect()
}

/// The interpreter named by a file's shebang (`/usr/bin/env bash` names bash), if it has one.
fn interpreter(path: &Path) -> Option<String> {
    let text = std::fs::read(project_root().join(path)).ok()?;
    let first = text.split(|&b| b == b'\n').next()?;
    let line = std::str::from_utf8(first).ok()?.strip_prefix("#!")?;
    let mut words = line.split_whitespace();
    let program = words.next()?.rsplit('/').next()?.to_owned();
    if program == "env" {
        words.next().map(str::to_owned)
    } else {
        Some(program)
    }
}

/// Runs `tool` with `args` then `files` at the root; fails with its output unless it exits 0.
fn lint(tool: &Path, args: &[&str], files: &[PathBuf]) {
    assert!(!files.is_empty(), "no files for {}", tool.display());
    let out = Command::new(tool)
        .args(args)
        .args(files)
        .current_dir(project_root())
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", tool.display()));
    assert!(
        out.status.success(),
        "{} found problems in {files:?}:\n{}{}",
        tool.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn ruff_finds_nothing_in_the_python_of_the_images_and_features() {
    if skip_without(&[Need::ScriptLinters]) {
        return;
    }
    let ruff = project_root().join(".tools/ruff/bin/ruff");
    let files: Vec<PathBuf> = files_below(&["Dockerfiles", "features", "tests/python"])
        .into_iter()
        .filter(|path| {
            path.extension().is_some_and(|e| e == "py")
                || interpreter(path).is_some_and(|p| p.starts_with("python"))
        })
        .collect();
    for script in [
        "aiida-daemon",
        "aiida-prepare-profile",
        "aiida_daemon_compat.py",
    ] {
        assert!(
            files.iter().any(|path| path.ends_with(script)),
            "{script} not among {files:?}"
        );
    }
    lint(
        &ruff,
        &["check", "--no-cache", "--config", "Dockerfiles/ruff.toml"],
        &files,
    );
}

#[test]
fn shellcheck_finds_nothing_in_the_shell_scripts_of_the_images_and_features() {
    if skip_without(&[Need::ScriptLinters]) {
        return;
    }
    let files: Vec<PathBuf> = files_below(&["Dockerfiles", "features"])
        .into_iter()
        .filter(|path| {
            interpreter(path).is_some_and(|p| ["sh", "bash", "dash"].contains(&p.as_str()))
        })
        .collect();
    assert!(
        files.iter().any(|path| path.ends_with("init/verdi")),
        "the image's verdi not among {files:?}"
    );
    // SC1091: the files they source (services-env, the Feature test library) are found where
    // the scripts land in an image or a Feature's test run, not beside them in the repository.
    lint(Path::new("shellcheck"), &["--exclude=SC1091"], &files);
}
