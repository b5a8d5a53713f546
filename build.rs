//! Records the git commit this binary is built from, for `aiida-devc --version`.
//!
//! From a checkout, `git rev-parse HEAD` of this package's own repository (a repository that
//! merely encloses an unpacked sdist does not count). Elsewhere (a wheel built from the sdist,
//! `cargo install` of a crate), the environment variable `AIIDA_DEVC_GIT_COMMIT`, else
//! `unknown`.

use std::path::{Path, PathBuf};
use std::process::Command;

fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let output = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .ok()?;
    let text = String::from_utf8(output.stdout).ok()?;
    (output.status.success() && !text.trim().is_empty()).then(|| text.trim().to_owned())
}

fn main() {
    println!("cargo::rerun-if-env-changed=AIIDA_DEVC_GIT_COMMIT");
    let root = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let own_repository = git(&root, &["rev-parse", "--show-toplevel"])
        .is_some_and(|top| Path::new(&top).canonicalize().ok() == root.canonicalize().ok());
    let commit = own_repository
        .then(|| git(&root, &["rev-parse", "--short=12", "HEAD"]))
        .flatten();
    if commit.is_some() {
        // Build again when HEAD moves: HEAD (per worktree), the branch it names, packed refs.
        for (dir_arg, file) in [
            ("--absolute-git-dir", "HEAD"),
            ("--git-common-dir", "packed-refs"),
        ] {
            if let Some(dir) = git(&root, &["rev-parse", dir_arg]) {
                println!(
                    "cargo::rerun-if-changed={}",
                    root.join(dir).join(file).display()
                );
            }
        }
        if let (Some(common), Some(branch)) = (
            git(&root, &["rev-parse", "--git-common-dir"]),
            git(&root, &["symbolic-ref", "-q", "HEAD"]),
        ) {
            println!(
                "cargo::rerun-if-changed={}",
                root.join(common).join(branch).display()
            );
        }
    }
    let commit = commit
        .or_else(|| {
            std::env::var("AIIDA_DEVC_GIT_COMMIT")
                .ok()
                .filter(|c| !c.is_empty())
        })
        .unwrap_or_else(|| "unknown".into());
    println!("cargo::rustc-env=AIIDA_DEVC_GIT_COMMIT={commit}");
}
