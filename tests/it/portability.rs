//! The CLI builds for macOS and Windows: its dependency tree for those targets holds no
//! Linux-only crate (nix, aiida-init's runtime), and every Linux- or Unix-only call in its sources
//! sits behind a `cfg`. Both are cheap enough for every run. The full `cargo check` for Windows
//! and macOS (`scripts/cross-check.sh`: Debian's Rust builds those targets' std from source, 10
//! to 25 min cold) is run by hand; wheels.yml builds and runs the wheels on macOS and Windows
//! runners in GitHub's CI.

use std::process::Command;

use crate::support::project_root;

/// Crates that do not build, or mean Linux-only code, on macOS or Windows.
const LINUX_ONLY: &[&str] = &["nix", "aiida-init", "procfs", "inotify"];

#[test]
fn the_cli_links_no_linux_only_crate_on_macos_or_windows() {
    for target in [
        "x86_64-pc-windows-msvc",
        "x86_64-apple-darwin",
        "aarch64-apple-darwin",
    ] {
        let out = Command::new(env!("CARGO"))
            .args(["tree", "--locked", "-p", "aiida-devc", "-e", "normal"])
            .args(["--prefix", "none", "--target", target])
            .current_dir(project_root())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let tree = String::from_utf8_lossy(&out.stdout);
        let crates: Vec<&str> = tree.lines().filter_map(|l| l.split(' ').next()).collect();
        assert!(crates.contains(&"aiida-init-state"), "{target}: {tree}");
        for linux_only in LINUX_ONLY {
            assert!(
                !crates.contains(linux_only),
                "{target}: aiida-devc depends on {linux_only}:\n{tree}"
            );
        }
    }
}

/// Outside unit tests, `std::os::unix` is used only within three lines after `#[cfg(unix)]`
/// (or a Linux cfg), and `/proc` or `libc::` only after a Linux cfg.
#[test]
fn unix_and_linux_calls_in_the_cli_sit_behind_a_cfg() {
    let mut files = Vec::new();
    let mut dirs = vec![project_root().join("src")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    let mut unguarded = Vec::new();
    for path in files {
        let text = std::fs::read_to_string(&path).unwrap();
        let code = text.split("#[cfg(test)]").next().unwrap_or("");
        let lines: Vec<&str> = code.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            let trimmed = line.trim_start();
            if trimmed.starts_with("//") {
                continue;
            }
            let guard = |what: &[&str]| {
                lines[i.saturating_sub(3)..i]
                    .iter()
                    .any(|l| what.iter().any(|w| l.contains(w)))
            };
            let linux = ["#[cfg(target_os = \"linux\")]"];
            let unix = ["#[cfg(unix)]", "#[cfg(target_os = \"linux\")]"];
            let ok = if line.contains("std::os::unix") {
                guard(&unix)
            } else if line.contains("\"/proc") || line.contains("libc::") {
                guard(&linux)
            } else {
                true
            };
            if !ok {
                unguarded.push(format!("{}:{}: {}", path.display(), i + 1, trimmed));
            }
        }
    }
    assert!(
        unguarded.is_empty(),
        "Unix- or Linux-only code without a cfg (macOS and Windows wheels would not build):\n{}",
        unguarded.join("\n")
    );
}
