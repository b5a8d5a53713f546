//! The CLI's layers: the Engine API client (bollard) is used in one module only,
//! `src/host/docker/`, and `src/image` (builds, the release gate, publishing) imports nothing
//! from `src/devcontainer` (a plugin's configuration and its containers).

use std::path::{Path, PathBuf};

use crate::support::project_root;

/// Every `.rs` file below `dir`, with its text.
fn sources(dir: &Path) -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(sources(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            let text = std::fs::read_to_string(&path).unwrap();
            out.push((path, text));
        }
    }
    out
}

#[test]
fn only_the_docker_module_uses_bollard() {
    let src = project_root().join("src");
    let docker = src.join("host/docker");
    let users: Vec<PathBuf> = sources(&src)
        .into_iter()
        .filter(|(path, text)| !path.starts_with(&docker) && text.contains("bollard"))
        .map(|(path, _)| path)
        .collect();
    assert!(
        users.is_empty(),
        "bollard outside src/host/docker: {users:?}"
    );
}

#[test]
fn image_imports_nothing_from_devcontainer() {
    let image = project_root().join("src/image");
    let upward: Vec<PathBuf> = sources(&image)
        .into_iter()
        .filter(|(_, text)| text.contains("devcontainer::"))
        .map(|(path, _)| path)
        .collect();
    assert!(
        upward.is_empty(),
        "src/image imports from src/devcontainer: {upward:?}"
    );
}
