//! Helpers for the Features and Templates tests: run `aiida-devc` and the reference CLI, copy a
//! collection to a scratch folder, read tar entries.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// What a command printed, and whether it succeeded.
pub struct Run {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(output: Output) -> Run {
        Run {
            success: output.status.success(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }
}

impl Run {
    /// Panic with both streams unless it succeeded.
    pub fn ok(self, what: &str) -> Run {
        assert!(
            self.success,
            "{what} failed:\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout, self.stderr
        );
        self
    }

    /// The JSON document that ends stdout (one line for ours, possibly pretty-printed for the
    /// reference CLI's `--output-format json`).
    pub fn json(&self) -> serde_json::Value {
        let starts: Vec<usize> = self
            .stdout
            .match_indices('{')
            .map(|(i, _)| i)
            .filter(|&i| i == 0 || self.stdout.as_bytes()[i - 1] == b'\n')
            .collect();
        for &start in starts.iter().rev() {
            if let Ok(value) = serde_json::from_str(self.stdout[start..].trim()) {
                return value;
            }
        }
        panic!(
            "stdout does not end with a JSON document:\n{}\n--- stderr\n{}",
            self.stdout, self.stderr
        )
    }
}

/// Run the `aiida-devc` binary of this build.
pub fn aiida_devc(args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut command = Command::new(env!("CARGO_BIN_EXE_aiida-devc"));
    command.args(args);
    for (k, v) in env {
        command.env(k, v);
    }
    Run::from(command.output().expect("run aiida-devc"))
}

/// `aiida-devc features publish SRC -r REGISTRY -n NAMESPACE`, then the `extra` arguments.
pub fn publish_features(src: &Path, registry: &str, namespace: &str, extra: &[&str]) -> Run {
    let mut args = vec![
        "features",
        "publish",
        src.to_str().unwrap(),
        "-r",
        registry,
        "-n",
        namespace,
    ];
    args.extend_from_slice(extra);
    aiida_devc(&args, &[])
}

/// Run the reference devcontainer CLI.
pub fn devcontainer(args: &[&str]) -> Run {
    Run::from(
        Command::new(super::devcontainer_cli())
            .args(args)
            .output()
            .expect("run the reference devcontainer CLI"),
    )
}

/// A scratch copy of the project's `features` (or `devcontainer-templates`) folder.
pub fn scratch_copy(folder: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::Builder::new()
        .prefix("aiida-devc-collection-")
        .tempdir()
        .unwrap();
    let copy = dir.path().join(folder);
    super::copy_tree(&super::project_root().join(folder), &copy);
    (dir, copy)
}

/// A scratch copy of `features/`, packaged into its `out/` folder: aiida-init and the shared
/// services are then in the aiida-services folder, where packaging puts them.
pub fn packaged_features() -> (tempfile::TempDir, PathBuf) {
    let (dir, features) = scratch_copy("features");
    let out = features.join("out");
    aiida_devc(
        &[
            "features",
            "package",
            features.join("src").to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
        ],
        &[],
    )
    .ok("package");
    (dir, features)
}

/// One tar entry: its raw name, mode bits, type and content.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct TarEntry {
    pub name: String,
    pub mode: u32,
    pub directory: bool,
    pub content: Vec<u8>,
}

/// The entries of an (uncompressed) tar, sorted by name.
pub fn tar_entries(bytes: &[u8]) -> Vec<TarEntry> {
    let mut archive = tar::Archive::new(bytes);
    let mut entries: Vec<TarEntry> = archive
        .entries()
        .expect("a tar archive")
        .map(|e| {
            let mut e = e.unwrap();
            let name = String::from_utf8(e.path_bytes().into_owned()).unwrap();
            let mode = e.header().mode().unwrap() & 0o777;
            let directory = e.header().entry_type().is_dir();
            let mut content = Vec::new();
            std::io::Read::read_to_end(&mut e, &mut content).unwrap();
            TarEntry {
                name,
                mode,
                directory,
                content,
            }
        })
        .collect();
    entries.sort();
    entries
}

/// Write the CA bundle the tool would use (if any) where the test images' Dockerfiles pick it up.
pub fn place_ca_bundle(folder: &Path) {
    if let Some(ca) = super::ca_bundle() {
        std::fs::write(folder.join("extra-ca.crt"), &ca.pem).unwrap();
    }
}

/// A unique, valid OCI namespace for one test.
pub fn namespace(what: &str) -> String {
    format!(
        "aiida-devc-test/{}-{}",
        what,
        super::unique_name("ns")
            .rsplit('-')
            .take(2)
            .collect::<Vec<_>>()
            .join("-")
    )
}
