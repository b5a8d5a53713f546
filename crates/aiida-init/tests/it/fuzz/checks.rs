//! The properties every input must keep, one function per fuzz target. The property tests
//! (`fuzz.rs`), the corpus replay and the cargo-fuzz targets (`crates/fuzz/fuzz_targets/`) all call
//! these, so an input that ever broke one is checked the same way everywhere.
//!
//! Each takes raw bytes (what a fuzzer hands over); inputs that are not UTF-8 are read as
//! aiida-init reads files (`read_to_string` fails cleanly), so they are skipped.

use std::fmt::Write as _;
use std::path::{Component, Path};

use aiida_init::execline::{self, Token};
use aiida_init::{execline_programs, graph, model, settings};

/// The execline lexer, validator, encoder and word substitution:
/// * nothing panics;
/// * a lex error names its line (`line N: ...`, N within the script);
/// * the tokens, written back as a canonical script, lex to the same tokens;
/// * encoding gives one argv word per word, and one per block word plus its terminator.
pub fn execline(data: &[u8]) {
    let Ok(source) = std::str::from_utf8(data) else {
        return;
    };
    let tokens = match execline::lex(source) {
        Ok(tokens) => tokens,
        Err(e) => {
            let line: usize = e
                .strip_prefix("line ")
                .and_then(|rest| rest.split(':').next())
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("lex error without its line: {e:?}"));
            let lines = source.matches('\n').count() + 1;
            assert!((1..=lines).contains(&line), "line {line} of {lines}: {e:?}");
            return;
        }
    };
    let _ = execline::validate(&tokens);
    let argv = execline::encode(&tokens);
    assert_eq!(argv.len(), encoded_len(&tokens), "{tokens:?} -> {argv:?}");
    let canonical = render(&tokens);
    assert_eq!(
        execline::lex(&canonical).as_ref(),
        Ok(&tokens),
        "{source:?} rendered as {canonical:?}"
    );
    // Substitution as `importas` and `-S` do it, with one value (several multiply words).
    let value = ["v".to_string()];
    let words = words(&tokens);
    for (k, word) in words.iter().enumerate().take(32) {
        let name = words.get(k + 1).map_or("1", String::as_str);
        let out = execline_programs::substitute_word(word, name, Some(&value));
        assert!(out.len() <= 1, "{word:?} {name:?} -> {out:?}");
        let _ = execline_programs::substitute_word(word, name, None);
    }
}

fn encoded_len(tokens: &[Token]) -> usize {
    tokens
        .iter()
        .map(|t| match t {
            Token::Word(_) => 1,
            Token::Block(inner) => encoded_len(inner) + 1,
        })
        .sum()
}

fn words(tokens: &[Token]) -> Vec<String> {
    let mut out = Vec::new();
    for t in tokens {
        match t {
            Token::Word(w) => out.push(w.clone()),
            Token::Block(inner) => out.extend(words(inner)),
        }
    }
    out
}

/// Tokens as a script: every word double-quoted (only `\` and `"` escaped), blocks in braces.
pub fn render(tokens: &[Token]) -> String {
    let mut out = String::new();
    for t in tokens {
        match t {
            Token::Word(w) => {
                out.push('"');
                for c in w.chars() {
                    if c == '"' || c == '\\' {
                        out.push('\\');
                    }
                    out.push(c);
                }
                out.push_str("\" ");
            }
            Token::Block(inner) => {
                let _ = write!(out, "{{ {}}} ", render(inner));
            }
        }
    }
    out
}

/// A service tree written as text, the form of the s6-rc tree corpus: each file starts with a
/// line `=== PATH` (or `=== PATH +x` for an executable), PATH relative to the tree's `etc`
/// (`s6-overlay/s6-rc.d/NAME/type`, `s6-overlay/user-bundles.d/user/contents.d/NAME`,
/// `cont-init.d/10-x`), its content the lines up to the next header. A PATH ending in `/` is an
/// empty directory. Lines before the first header are comments.
pub fn write_tree(text: &str, etc: &Path) {
    let mut current: Option<(std::path::PathBuf, bool, String)> = None;
    let flush = |entry: Option<(std::path::PathBuf, bool, String)>| {
        let Some((path, executable, content)) = entry else {
            return;
        };
        let _ = write_entry(etc, &path, executable, &content);
    };
    for line in text.split_inclusive('\n') {
        if let Some(header) = line.strip_prefix("=== ") {
            flush(current.take());
            let header = header.trim_end_matches('\n');
            let (path, executable) = match header.strip_suffix(" +x") {
                Some(p) => (p, true),
                None => (header, false),
            };
            let relative = Path::new(path);
            let safe = !path.is_empty()
                && relative
                    .components()
                    .all(|c| matches!(c, Component::Normal(_)));
            current = safe.then(|| (relative.to_path_buf(), executable, String::new()));
            if safe && path.ends_with('/') {
                let _ = std::fs::create_dir_all(etc.join(relative));
                current = None;
            }
        } else if let Some((_, _, content)) = current.as_mut() {
            content.push_str(line);
        }
    }
    flush(current);
}

fn write_entry(etc: &Path, path: &Path, executable: bool, content: &str) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let full = etc.join(path);
    if let Some(parent) = full.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(&full, content)?;
    let mode = if executable { 0o755 } else { 0o644 };
    std::fs::set_permissions(&full, std::fs::Permissions::from_mode(mode))
}

/// The s6-rc tree loader and the planner, on a tree written by [`write_tree`]:
/// * nothing panics;
/// * a rejected tree gets an error that names a path inside the tree or the service at fault;
/// * an accepted plan starts only atomic services of the tree, each after its dependencies,
///   and brings up only services of the order.
pub fn s6_rc_tree(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let etc = dir.path().join("etc");
    std::fs::create_dir_all(etc.join("s6-overlay/s6-rc.d")).unwrap();
    write_tree(text, &etc);
    let mut settings = settings::Settings::from_env();
    settings.stage2_hook = None;
    settings.paths = settings::Paths {
        s6_rc_dir: etc.join("s6-overlay/s6-rc.d"),
        bundle_dir: etc.join("s6-overlay/user-bundles.d"),
        cont_init_dir: etc.join("cont-init.d"),
        services_dir: etc.join("services.d"),
        cont_finish_dir: etc.join("cont-finish.d"),
    };
    let tree = match model::load(&settings) {
        Ok(tree) => tree,
        Err(e) => {
            let message = format!("{e:#}");
            assert!(
                message.contains(&*etc.to_string_lossy()),
                "the error names no file of the tree: {message}"
            );
            return;
        }
    };
    let plan = match graph::plan(&tree) {
        Ok(plan) => plan,
        Err(e) => {
            let message = format!("{e:#}");
            assert!(
                message.contains(&*etc.to_string_lossy()) || message.contains('`'),
                "the error names neither a file nor a service: {message}"
            );
            return;
        }
    };
    for (k, name) in plan.order.iter().enumerate() {
        let service = tree
            .services
            .get(name)
            .unwrap_or_else(|| panic!("`{name}` planned but not in the tree"));
        assert!(
            !matches!(service.kind, model::Kind::Bundle { .. }),
            "bundle `{name}` in the start order"
        );
        for dependency in &plan.dependencies[name] {
            let at = plan.order.iter().position(|n| n == dependency);
            assert!(
                at.is_some_and(|at| at < k),
                "`{name}` starts before its dependency `{dependency}`: {:?}",
                plan.order
            );
        }
    }
    for name in &plan.wanted {
        assert!(plan.order.contains(name), "`{name}` wanted but not ordered");
    }
}
