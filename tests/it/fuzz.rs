//! Fuzzing the parsers of a plugin repository's files: the devcontainer.json merge and the plugin
//! metadata readers (pyproject.toml, setup.cfg, setup.py literals).
//!
//! The properties are in [`checks`]; here they run on
//! * the corpus in `tests/fixtures/fuzz/<target>/` (seeds, and every input a fuzzer found
//!   interesting or failing), replayed on every test run;
//! * generated inputs (proptest) built from each format's pieces. `PROPTEST_CASES=100000` runs
//!   longer.
//!
//! The same checks are the cargo-fuzz targets in `crates/fuzz/` (see its README).

pub mod checks;

use std::path::PathBuf;

use proptest::prelude::*;

fn replay(target: &str, check: fn(&[u8])) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/fuzz")
        .join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    assert!(files.len() >= 5, "{}: the corpus is missing", dir.display());
    for path in files {
        let data = std::fs::read(&path).unwrap();
        let outcome = std::panic::catch_unwind(|| check(&data));
        assert!(outcome.is_ok(), "{}: the check failed", path.display());
    }
}

#[test]
fn devcontainer_merge_corpus_replays() {
    replay("devcontainer_merge", checks::devcontainer_merge);
}

#[test]
fn pyproject_corpus_replays() {
    replay("pyproject", checks::pyproject);
}

#[test]
fn setup_cfg_corpus_replays() {
    replay("setup_cfg", checks::setup_cfg);
}

#[test]
fn setup_py_corpus_replays() {
    replay("setup_py", checks::setup_py);
}

/// A few cases by default: the corpus replay is the regression test, these explore.
fn config() -> ProptestConfig {
    ProptestConfig {
        cases: std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(64),
        ..ProptestConfig::default()
    }
}

/// JSONC values made of the keys `init` owns and the user's, with comments and trailing commas.
fn jsonc() -> impl Strategy<Value = String> {
    let key = prop::sample::select(vec![
        "image",
        "mounts",
        "customizations",
        "vscode",
        "extensions",
        "settings",
        "remoteUser",
        "overrideCommand",
        "postCreateCommand",
        "postStartCommand",
        "waitFor",
        "containerEnv",
        "hostRequirements",
        "name",
        "features",
        "dockerComposeFile",
        "service",
        "x\"y",
        "é",
        "",
    ]);
    let leaf = prop_oneof![
        Just("null".to_string()),
        Just("true".to_string()),
        Just("-1.5e3".to_string()),
        "\"[a-z/:=,.${} \\\\\"]{0,12}\"".prop_map(|s| s.replace("\\\"", "").replace('\\', "")),
        Just("\"type=volume,source=x,target=/home/aiida\"".to_string()),
        Just("\"ms-python.python\"".to_string()),
    ];
    let value = leaf.prop_recursive(3, 32, 6, move |inner| {
        prop_oneof![
            prop::collection::vec((inner.clone(), gap()), 0..5).prop_map(|items| {
                let body: Vec<String> = items.into_iter().map(|(v, g)| format!("{g}{v}")).collect();
                format!("[{}]", body.join(","))
            }),
            prop::collection::vec((key.clone(), inner, gap(), prop::bool::ANY), 0..5).prop_map(
                |items| {
                    let body: Vec<String> = items
                        .into_iter()
                        .map(|(k, v, g, comma)| {
                            format!(
                                "{g}\"{}\": {v}{}",
                                k.replace('"', "\\\""),
                                if comma { "," } else { "" }
                            )
                        })
                        .collect();
                    format!("{{{}}}", body.join(","))
                }
            ),
        ]
    });
    (gap(), value, gap()).prop_map(|(a, v, b)| format!("{a}{v}{b}"))
}

fn gap() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec!["", " ", "\n  ", "// c\n", "/* c */", ",", "\n//\n\t"])
}

/// Lines of the three metadata formats, in any order.
fn metadata_lines() -> impl Strategy<Value = String> {
    let line = prop::sample::select(vec![
        "[project]",
        "[metadata]",
        "[options]",
        "[options.extras_require]",
        "[project.optional-dependencies]",
        "[project.entry-points.\"aiida.calculations\"]",
        "[options.entry_points]",
        "name = \"aiida-x\"",
        "name = aiida-x",
        "dynamic = [\"dependencies\"]",
        "dependencies = [\"aiida-core>=2.0,<3\"]",
        "dependencies = [\"aiida-core[",
        "requires-python = \">=3.9\"",
        "python_requires = >=3.9",
        "install_requires =",
        "    aiida-core~=2.5",
        "    aiida-core @ file:///x",
        "tests = [\"pytest\"]",
        "tests =",
        "    pytest",
        "aiida.calculations =",
        "    x.y = m:C",
        "\"x.y\" = \"m:C\"",
        "[",
        "]",
        "=",
        ":",
        "project = 1",
        "[project",
        "  ; comment",
        "# comment",
        "setup(",
        "name=\"aiida-x\",",
        "name=NAME,",
        "install_requires=[\"aiida-core>=2\", 'numpy'],",
        "python_requires='>=3.8',",
        "extras_require={\"tests\": [\"pytest\"], 'docs': ['x']},",
        "extras_require={",
        ")",
        "'\\",
        "é€",
        "\"aiida-core==2.*\"",
        "python_requires=\">=3.8\"",
    ]);
    prop::collection::vec(line, 0..16).prop_map(|lines| lines.join("\n"))
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn devcontainer_merge_generated(text in jsonc()) {
        checks::devcontainer_merge(text.as_bytes());
    }

    #[test]
    fn devcontainer_merge_arbitrary_text(text in "(?s)[ -~\n\té]{0,80}") {
        checks::devcontainer_merge(text.as_bytes());
    }

    #[test]
    fn pyproject_generated(text in metadata_lines()) {
        checks::pyproject(text.as_bytes());
    }

    #[test]
    fn setup_cfg_generated(text in metadata_lines()) {
        checks::setup_cfg(text.as_bytes());
    }

    #[test]
    fn setup_py_generated(text in metadata_lines()) {
        checks::setup_py(text.as_bytes());
    }
}
