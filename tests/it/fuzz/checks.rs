//! The properties every input must keep, one function per fuzz target. The property tests
//! (`fuzz.rs`), the corpus replay and the cargo-fuzz targets (`crates/fuzz/fuzz_targets/`) all call
//! these, so an input that ever broke one is checked the same way everywhere.
//!
//! Each takes raw bytes (what a fuzzer hands over); inputs that are not UTF-8 are skipped (the
//! CLI reads these files with `read_to_string`, which fails cleanly on them).

use std::path::Path;

use aiida_devc::devcontainer::compose::ServiceImages;
use aiida_devc::devcontainer::config::{self, Choices};
use aiida_devc::devcontainer::merge;
use aiida_devc::plugin::images::{ImageChoice, Variant};
use aiida_devc::plugin::{self, PluginMetadata};

/// The settings `init` merges, for each variant, for a plugin with a test extra.
fn entries() -> Vec<Vec<merge::Entry>> {
    let plugin = PluginMetadata {
        name: "aiida-fuzzed".into(),
        source: "pyproject.toml".into(),
        aiida_core: "~=2.5".parse().ok(),
        requires_python: None,
        extras: [("tests".to_string(), vec!["pytest".to_string()])].into(),
        entry_points: Vec::new(),
    };
    let image = ImageChoice {
        image: "aiidateam/aiida-core-with-services:aiida-2.9.4".into(),
        aiida_core: Some("2.9.4".into()),
        present_locally: false,
    };
    [
        (Variant::Services, false),
        (Variant::Lite, true),
        (Variant::Compose, true),
    ]
    .into_iter()
    .map(|(variant, ca)| {
        config::entries(&Choices {
            plugin: &plugin,
            image: &image,
            variant,
            extras: vec!["tests".into()],
            ca,
            tests_dir: Some("tests".into()),
            slurm: false,
            services: ServiceImages {
                postgres: "postgres:16".into(),
                rabbitmq: "rabbitmq:3.13".into(),
            },
        })
    })
    .collect()
}

/// The devcontainer.json merge, for each variant's settings:
/// * nothing panics;
/// * an error is located (`file:line:column: ...`);
/// * the merged text is valid JSONC, keeps every top-level key of the user's file, and merging
///   into it again changes nothing (the second `init` is a no-op);
/// * a merge that reports no change returns the text unchanged.
pub fn devcontainer_merge(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = Path::new(".devcontainer/devcontainer.json");
    let before = merge::to_value(path, text);
    for entries in entries() {
        let (after, changes) = match merge::merge(path, text, &entries) {
            Ok(merged) => merged,
            Err(e) => {
                let message = format!("{e:#}");
                assert!(
                    message.starts_with(".devcontainer/devcontainer.json:"),
                    "an error without its location: {message}"
                );
                continue;
            }
        };
        if changes.is_empty() {
            assert_eq!(after, text, "no change reported, but the text changed");
        }
        let value = merge::to_value(path, &after)
            .unwrap_or_else(|e| panic!("the merge wrote invalid JSONC ({e:#}):\n{after}"));
        if let Ok(serde_json::Value::Object(user)) = &before {
            for key in user.keys() {
                assert!(
                    value.get(key).is_some(),
                    "the user's key {key:?} was lost:\n{after}"
                );
            }
        }
        let (again, changes) = merge::merge(path, &after, &entries)
            .unwrap_or_else(|e| panic!("the merged file does not merge again ({e:#}):\n{after}"));
        assert!(
            changes.is_empty(),
            "a second merge changed {changes:?}:\n{after}"
        );
        assert_eq!(again, after);
    }
}

/// The plugin metadata readers, on `data` as the repository's `file` (`pyproject.toml`,
/// `setup.cfg` or `setup.py`):
/// * nothing panics;
/// * an error names the file;
/// * metadata read comes from that file.
pub fn plugin_metadata(file: &str, data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(file);
    std::fs::write(&path, text).unwrap();
    match plugin::read(dir.path()) {
        Ok(meta) => {
            assert_eq!(meta.source, path);
            let _ = meta.aiida_core_display();
            let _ = meta.test_extras();
        }
        Err(e) => {
            let message = format!("{e:#}");
            assert!(
                message.contains(&*dir.path().to_string_lossy()),
                "the error names no file: {message}"
            );
        }
    }
}

pub fn pyproject(data: &[u8]) {
    plugin_metadata("pyproject.toml", data);
}

pub fn setup_cfg(data: &[u8]) {
    plugin_metadata("setup.cfg", data);
}

pub fn setup_py(data: &[u8]) {
    plugin_metadata("setup.py", data);
}
