//! Fuzzing the parsers of untrusted files: the execline subset and the s6-rc tree loader.
//!
//! The properties are in [`checks`]; here they run on
//! * the corpus in `tests/fixtures/fuzz/<target>/` (seeds, and every input a fuzzer found
//!   interesting or failing), replayed on every test run;
//! * generated inputs (proptest): scripts and trees built from the grammar, with the characters
//!   that matter (quotes, escapes, braces, comments). `PROPTEST_CASES=100000` runs longer.
//!
//! The same checks are the cargo-fuzz targets in `crates/fuzz/` (see its README).

pub mod checks;

use std::path::PathBuf;

use proptest::prelude::*;

fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
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
    files
        .into_iter()
        .map(|p| {
            let data = std::fs::read(&p).unwrap();
            (p, data)
        })
        .collect()
}

/// Run `check` on each corpus file, naming the file that fails.
fn replay(target: &str, check: fn(&[u8])) {
    for (path, data) in corpus(target) {
        let outcome = std::panic::catch_unwind(|| check(&data));
        assert!(outcome.is_ok(), "{}: the check failed", path.display());
    }
}

#[test]
fn execline_corpus_replays() {
    replay("execline", checks::execline);
}

#[test]
fn s6_rc_tree_corpus_replays() {
    replay("s6_rc_tree", checks::s6_rc_tree);
}

/// Words execline scripts are made of: builtins, unsupported constructs, options, variables.
fn word() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "foreground",
            "background",
            "if",
            "importas",
            "redirfd",
            "fdmove",
            "export",
            "unexport",
            "cd",
            "exec",
            "emptyenv",
            "with-contenv",
            "s6-setuidgid",
            "s6-envdir",
            "s6-notifyoncheck",
            "exit",
            "s6-echo",
            "s6-svc",
            "backtick",
            "pipeline",
            "-s",
            "-a",
            "-D",
            "-d3",
            "-3",
            "-w",
            "--",
            "-",
            "$1",
            "${HOME}",
            "\\$x",
            "#",
            "{",
            "}",
            "\"",
            "\\",
            "",
            "1",
            "0x",
            "\\0x41",
            "\\101",
            "\\n",
        ])
        .prop_map(str::to_string),
        "[a-zA-Z0-9_${}\"\\\\#=./ -]{0,8}",
    ]
}

/// How a word is written: bare (escaping what must be), quoted, or with a line continuation.
fn written(word: String) -> impl Strategy<Value = String> {
    (0..4u8).prop_map(move |how| match how {
        0 => word.clone(),
        1 => format!("\"{}\"", word.replace('\\', "\\\\").replace('"', "\\\"")),
        2 => word
            .chars()
            .map(|c| {
                if " \t\n{}\"\\#".contains(c) {
                    format!("\\{c}")
                } else {
                    c.to_string()
                }
            })
            .collect(),
        _ => format!("{word}\\\n"),
    })
}

/// Scripts from the grammar: words and nested blocks, with whitespace, newlines and comments.
fn script() -> impl Strategy<Value = String> {
    let leaf = word().prop_flat_map(written);
    let tree = leaf.prop_recursive(4, 48, 8, |inner| {
        prop::collection::vec(inner, 0..8).prop_map(|items| format!("{{ {} }}", items.join(" ")))
    });
    (
        prop::collection::vec(
            (
                tree,
                prop::sample::select(vec![" ", "\n", "\t", " # c\n", "  "]),
            ),
            0..24,
        ),
        prop::bool::ANY,
    )
        .prop_map(|(items, shebang)| {
            let mut s = if shebang {
                "#!/command/execlineb -P\n".to_string()
            } else {
                String::new()
            };
            for (item, sep) in items {
                s.push_str(&item);
                s.push_str(sep);
            }
            s
        })
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

proptest! {
    #![proptest_config(config())]

    #[test]
    fn execline_scripts_from_the_grammar(source in script()) {
        checks::execline(source.as_bytes());
    }

    #[test]
    fn execline_arbitrary_text(source in "(?s)[ -~\n\t{}\"\\\\é€]{0,160}") {
        checks::execline(source.as_bytes());
    }

    #[test]
    fn s6_rc_trees_from_the_grammar(tree in service_tree()) {
        checks::s6_rc_tree(tree.as_bytes());
    }
}

const NAMES: &[&str] = &[
    "db",
    "broker",
    "app",
    "base",
    "user",
    "user2",
    "s6rc-x",
    "legacy-cont-init",
    ".hidden",
    "x y",
];

/// The files of one service directory, in the corpus' text form.
fn service() -> impl Strategy<Value = String> {
    let value = || {
        prop::sample::select(vec![
            "",
            "0",
            "3",
            "5000",
            "-1",
            "18446744073709551615",
            "18446744073709551616",
            "abc",
            " 7 \n",
            "SIGINT",
            "HUP",
            "sigkill",
            "64",
            "65",
            "99999999999",
        ])
    };
    (
        prop::sample::select(NAMES.to_vec()),
        prop::sample::select(vec![
            "oneshot",
            "longrun",
            "bundle",
            "",
            "Longrun",
            "oneshot\nbundle",
        ]),
        prop::collection::vec(
            (prop::sample::select(NAMES.to_vec()), prop::bool::ANY),
            0..4,
        ),
        script(),
        prop::bool::ANY,
        prop::collection::vec(
            (
                prop::sample::select(vec![
                    "notification-fd",
                    "down-signal",
                    "timeout-up",
                    "timeout-down",
                    "timeout-kill",
                    "timeout-finish",
                    "producer-for",
                    "data/check",
                    "finish",
                    "flag-timeout-killpg",
                ]),
                value(),
            ),
            0..4,
        ),
    )
        .prop_map(|(name, kind, deps, script, executable, extra)| {
            let dir = format!("s6-overlay/s6-rc.d/{name}");
            let mut s = format!("=== {dir}/type\n{kind}\n");
            for (dep, as_dir) in deps {
                if kind == "bundle" {
                    s.push_str(&format!("=== {dir}/contents.d/{dep}\n"));
                } else if as_dir {
                    s.push_str(&format!("=== {dir}/dependencies.d/{dep}\n"));
                } else {
                    s.push_str(&format!("=== {dir}/dependencies\n{dep}\n# comment\n"));
                }
            }
            let x = if executable { " +x" } else { "" };
            s.push_str(&format!(
                "=== {dir}/up\n{script}\n=== {dir}/run{x}\n{script}\n"
            ));
            for (file, value) in extra {
                let x = if file == "data/check" || file == "finish" {
                    " +x"
                } else {
                    ""
                };
                s.push_str(&format!("=== {dir}/{file}{x}\n{value}\n"));
            }
            s
        })
}

/// Several services, the user bundles and legacy directories.
fn service_tree() -> impl Strategy<Value = String> {
    (
        prop::collection::vec(service(), 0..6),
        prop::collection::vec(prop::sample::select(NAMES.to_vec()), 0..4),
        prop::sample::select(vec![
            "",
            "=== cont-init.d/10-init +x\n#!/bin/sh\n",
            "=== services.d/web/run +x\n#!/bin/sh\n",
            "=== s6-overlay/user-bundles.d/other/type\nbundle\n",
            "=== s6-overlay/user-bundles.d/user/type\noneshot\n",
            "=== s6-overlay/s6-rc.d/user/contents\ndb\n",
            "=== ../escape\nx\n",
        ]),
    )
        .prop_map(|(services, user, extra)| {
            let mut s = services.concat();
            for name in user {
                s.push_str(&format!(
                    "=== s6-overlay/user-bundles.d/user/contents.d/{name}\n"
                ));
            }
            s.push_str(extra);
            s
        })
}
