//! AiiDA plugin metadata: name, aiida-core and Python requirements, extras (pyproject.toml,
//! setup.cfg, setup.py).
//!
//! `aiida-devc init` needs four facts about the plugin in a repository: its distribution name, the
//! aiida-core versions it accepts (to pick an image, see [`images`]), the Python versions it accepts,
//! and its extras (to install the test dependencies). They are read, in this order, from:
//!
//! 1. `pyproject.toml`, the `[project]` table (PEP 621), when it lists its dependencies statically;
//! 2. `setup.cfg`, `[metadata]` and `[options]` (setuptools' declarative configuration);
//! 3. `setup.py`, the literal keyword arguments of the `setup(...)` call (no code is run).
//!
//! Errors name the file, line and column at fault, like a compiler does.

pub mod images;

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use anyhow::{Context, anyhow, bail};
use pep508_rs::pep440_rs::VersionSpecifiers;
use pep508_rs::{Requirement, VersionOrUrl};

/// Extras that hold a plugin's test dependencies, in order of preference.
pub const TEST_EXTRAS: &[&str] = &["tests", "testing", "test"];
/// Other extras that plugins commonly declare; reported, not installed by default.
pub const KNOWN_EXTRAS: &[&str] = &["dev", "pre-commit", "docs"];

/// What aiida-devc knows about the plugin in a repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginMetadata {
    /// The distribution name, as written (e.g. `aiida-diff`).
    pub name: String,
    /// The file the metadata came from.
    pub source: PathBuf,
    /// The specifiers of the `aiida-core` requirement (`>=2.0,<3`), or `None` when the plugin
    /// does not depend on aiida-core or accepts any version.
    pub aiida_core: Option<VersionSpecifiers>,
    /// `requires-python` / `python_requires`.
    pub requires_python: Option<VersionSpecifiers>,
    /// Every extra and its requirements, in name order.
    pub extras: BTreeMap<String, Vec<String>>,
    /// `(group, name)` of every entry point declared in a group starting with `aiida.`.
    pub entry_points: Vec<(String, String)>,
}

impl PluginMetadata {
    /// The extras to install for development: the first test extra present (see [`TEST_EXTRAS`]).
    pub fn test_extras(&self) -> Vec<String> {
        TEST_EXTRAS
            .iter()
            .find(|extra| self.extras.contains_key(**extra))
            .map(|extra| vec![extra.to_string()])
            .unwrap_or_default()
    }

    /// The aiida-core requirement as written for humans: `aiida-core>=2.0,<3` or `aiida-core`.
    pub fn aiida_core_display(&self) -> String {
        match &self.aiida_core {
            Some(spec) => format!("aiida-core{spec}"),
            None => "aiida-core (any version)".into(),
        }
    }
}

/// A position in a file, printed as `file:line:column` (1-based).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub file: PathBuf,
    pub line: usize,
    pub column: usize,
}

impl Location {
    /// The location of byte `offset` of `text`, the content of `file`.
    pub fn at_offset(file: &Path, text: &str, offset: usize) -> Location {
        let offset = offset.min(text.len());
        let before = &text[..offset];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = before[line_start..].chars().count() + 1;
        Location {
            file: file.to_owned(),
            line,
            column,
        }
    }

    /// The location of the first occurrence of `needle` in `text`, or of the start of the file.
    pub fn of(file: &Path, text: &str, needle: &str) -> Location {
        Location::at_offset(file, text, text.find(needle).unwrap_or(0))
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file.display(), self.line, self.column)
    }
}

/// Read the plugin metadata of the repository at `dir` (see the module documentation).
pub fn read(dir: &Path) -> anyhow::Result<PluginMetadata> {
    let pyproject = dir.join("pyproject.toml");
    let setup_cfg = dir.join("setup.cfg");
    let setup_py = dir.join("setup.py");
    let mut partial = None;
    if pyproject.is_file() {
        let text = read_text(&pyproject)?;
        match from_pyproject(&pyproject, &text)? {
            Pyproject::Complete(meta) => return Ok(meta),
            Pyproject::Partial(meta) => partial = Some(meta),
            Pyproject::NoProject => {}
        }
    }
    let fallback = if setup_cfg.is_file() {
        let text = read_text(&setup_cfg)?;
        from_setup_cfg(&setup_cfg, &text)?
    } else if setup_py.is_file() {
        let text = read_text(&setup_py)?;
        from_setup_py(&setup_py, &text)?
    } else if let Some(meta) = partial.take() {
        return Ok(meta);
    } else {
        bail!(
            "{} has no Python package metadata: expected a pyproject.toml with a [project] table, \
             a setup.cfg or a setup.py",
            dir.display()
        );
    };
    // A pyproject.toml with a name but dynamic dependencies: the rest comes from setup.cfg/py.
    Ok(match partial {
        Some(meta) => PluginMetadata {
            name: meta.name,
            entry_points: merge_entry_points(meta.entry_points, fallback.entry_points.clone()),
            ..fallback
        },
        None => fallback,
    })
}

fn merge_entry_points(
    mut a: Vec<(String, String)>,
    b: Vec<(String, String)>,
) -> Vec<(String, String)> {
    for ep in b {
        if !a.contains(&ep) {
            a.push(ep);
        }
    }
    a
}

fn read_text(path: &Path) -> anyhow::Result<String> {
    fs::read_to_string(path).with_context(|| format!("{}: cannot read the file", path.display()))
}

enum Pyproject {
    /// Everything was in `[project]`.
    Complete(PluginMetadata),
    /// `[project]` exists but declares its dependencies as dynamic.
    Partial(PluginMetadata),
    /// No `[project]` table (e.g. a pyproject.toml that only configures tools).
    NoProject,
}

fn from_pyproject(file: &Path, text: &str) -> anyhow::Result<Pyproject> {
    let doc: toml::Table = toml::from_str(text).map_err(|err| {
        let offset = err.span().map_or(0, |s| s.start);
        anyhow!(
            "{}: invalid TOML: {}",
            Location::at_offset(file, text, offset),
            err.message()
        )
    })?;
    let Some(project) = doc.get("project") else {
        return Ok(Pyproject::NoProject);
    };
    let project = project.as_table().ok_or_else(|| {
        anyhow!(
            "{}: [project] must be a table",
            Location::of(file, text, "project")
        )
    })?;
    let name = match project.get("name").and_then(|v| v.as_str()) {
        Some(name) => name.to_owned(),
        None => bail!(
            "{}: [project] has no `name`",
            Location::of(file, text, "[project]")
        ),
    };
    let dynamic: Vec<&str> = project
        .get("dynamic")
        .and_then(|v| v.as_array())
        .map(|a| a.iter().filter_map(|v| v.as_str()).collect())
        .unwrap_or_default();
    let string_list = |value: Option<&toml::Value>, what: &str| -> anyhow::Result<Vec<String>> {
        match value {
            None => Ok(Vec::new()),
            Some(toml::Value::Array(items)) => items
                .iter()
                .map(|v| {
                    v.as_str().map(str::to_owned).ok_or_else(|| {
                        anyhow!(
                            "{}: {what} must be a list of strings",
                            Location::of(file, text, what)
                        )
                    })
                })
                .collect(),
            Some(_) => bail!(
                "{}: {what} must be a list of strings",
                Location::of(file, text, what)
            ),
        }
    };
    let dependencies = string_list(project.get("dependencies"), "dependencies")?;
    let mut extras = BTreeMap::new();
    if let Some(optional) = project
        .get("optional-dependencies")
        .and_then(|v| v.as_table())
    {
        for (extra, reqs) in optional {
            extras.insert(extra.clone(), string_list(Some(reqs), extra)?);
        }
    }
    let requires_python = match project.get("requires-python").and_then(|v| v.as_str()) {
        Some(spec) => Some(parse_specifiers(spec, file, text)?),
        None => None,
    };
    let mut entry_points = Vec::new();
    if let Some(groups) = project.get("entry-points").and_then(|v| v.as_table()) {
        for (group, names) in groups {
            if let Some(names) = names.as_table().filter(|_| group.starts_with("aiida.")) {
                entry_points.extend(names.keys().map(|n| (group.clone(), n.clone())));
            }
        }
    }
    let meta = PluginMetadata {
        name,
        source: file.to_owned(),
        aiida_core: aiida_core_requirement(&dependencies, file, text)?,
        requires_python,
        extras,
        entry_points,
    };
    Ok(
        if dynamic.contains(&"dependencies") && meta.aiida_core.is_none() {
            Pyproject::Partial(meta)
        } else {
            Pyproject::Complete(meta)
        },
    )
}

/// The specifiers of the `aiida-core` requirement among `requirements` (PEP 508 strings).
fn aiida_core_requirement(
    requirements: &[String],
    file: &Path,
    text: &str,
) -> anyhow::Result<Option<VersionSpecifiers>> {
    for requirement in requirements {
        // pep508_rs 0.9 panics on a name or an extra that ends with `-`, `.` or `_` before another
        // character (`aiida- >=2`, `aiida-core[a. ]`) instead of returning its error: refused here.
        let ends_badly = |text: &str| {
            let end = text
                .trim_start()
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
                .last();
            matches!(end, Some('-' | '.' | '_'))
        };
        let extras = requirement
            .split_once('[')
            .map_or("", |(_, rest)| rest.split(']').next().unwrap_or(""));
        if ends_badly(requirement) || extras.split(',').any(ends_badly) {
            bail!(
                "{}: invalid requirement {requirement:?}: a package or extra name must end with a letter or digit",
                Location::of(file, text, requirement)
            );
        }
        let parsed =
            Requirement::<pep508_rs::VerbatimUrl>::from_str(requirement).map_err(|err| {
                anyhow!(
                    "{}: invalid requirement {requirement:?}: {}",
                    Location::of(file, text, requirement),
                    err.message
                )
            })?;
        if parsed.name.as_ref() == "aiida-core" {
            return Ok(match parsed.version_or_url {
                Some(VersionOrUrl::VersionSpecifier(spec)) if !spec.is_empty() => Some(spec),
                _ => None,
            });
        }
    }
    Ok(None)
}

fn parse_specifiers(spec: &str, file: &Path, text: &str) -> anyhow::Result<VersionSpecifiers> {
    VersionSpecifiers::from_str(spec).map_err(|err| {
        anyhow!(
            "{}: invalid version specifiers {spec:?}: {err}",
            Location::of(file, text, spec)
        )
    })
}

/// One `key = value` of an INI file, with the line it started on. Continuation lines (indented)
/// are joined with newlines.
struct IniEntry {
    value: String,
}

/// Parse setuptools' INI dialect: `[section]`, `key = value` (or `key: value`), indented
/// continuation lines, `#` and `;` comments.
fn parse_ini(
    file: &Path,
    text: &str,
) -> anyhow::Result<BTreeMap<String, BTreeMap<String, IniEntry>>> {
    let mut sections: BTreeMap<String, BTreeMap<String, IniEntry>> = BTreeMap::new();
    let mut section: Option<String> = None;
    let mut key: Option<String> = None;
    for (index, raw) in text.lines().enumerate() {
        let line_no = index + 1;
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with(';') {
            continue;
        }
        let indented = raw.starts_with(' ') || raw.starts_with('\t');
        if indented {
            if let (Some(s), Some(k)) = (&section, &key) {
                let entry = sections.get_mut(s).unwrap().get_mut(k).unwrap();
                entry.value.push('\n');
                entry.value.push_str(trimmed);
                continue;
            }
        }
        if trimmed.starts_with('[') {
            if !trimmed.ends_with(']') {
                bail!(
                    "{}:{line_no}:1: unterminated section header {trimmed:?}",
                    file.display()
                );
            }
            let name = trimmed[1..trimmed.len() - 1].trim().to_owned();
            sections.entry(name.clone()).or_default();
            section = Some(name);
            key = None;
            continue;
        }
        let Some(split) = trimmed.find(['=', ':']) else {
            bail!(
                "{}:{line_no}:1: expected `key = value`, found {trimmed:?}",
                file.display()
            );
        };
        let Some(current) = &section else {
            bail!(
                "{}:{line_no}:1: `{trimmed}` is outside any [section]",
                file.display()
            );
        };
        let k = trimmed[..split].trim().to_owned();
        let v = trimmed[split + 1..].trim().to_owned();
        sections
            .get_mut(current)
            .unwrap()
            .insert(k.clone(), IniEntry { value: v });
        key = Some(k);
    }
    Ok(sections)
}

fn ini_list(value: &str) -> Vec<String> {
    value
        .split(['\n', ';'])
        .map(str::trim)
        .filter(|s| !s.is_empty() && !s.starts_with('#'))
        .map(str::to_owned)
        .collect()
}

fn from_setup_cfg(file: &Path, text: &str) -> anyhow::Result<PluginMetadata> {
    let sections = parse_ini(file, text)?;
    let get = |section: &str, key: &str| {
        sections
            .get(section)
            .and_then(|s| s.get(key))
            .map(|e| e.value.as_str())
    };
    let name = get("metadata", "name")
        .ok_or_else(|| {
            anyhow!(
                "{}: [metadata] has no `name`",
                Location::of(file, text, "[metadata]")
            )
        })?
        .to_owned();
    let install_requires = ini_list(get("options", "install_requires").unwrap_or(""));
    let requires_python = match get("options", "python_requires") {
        Some(spec) => Some(parse_specifiers(spec, file, text)?),
        None => None,
    };
    let extras = sections
        .get("options.extras_require")
        .map(|s| {
            s.iter()
                .map(|(k, e)| (k.clone(), ini_list(&e.value)))
                .collect()
        })
        .unwrap_or_default();
    let mut entry_points = Vec::new();
    if let Some(groups) = sections.get("options.entry_points") {
        for (group, entry) in groups.iter().filter(|(g, _)| g.starts_with("aiida.")) {
            for line in ini_list(&entry.value) {
                if let Some((ep, _)) = line.split_once('=') {
                    entry_points.push((group.clone(), ep.trim().to_owned()));
                }
            }
        }
    }
    Ok(PluginMetadata {
        name,
        source: file.to_owned(),
        aiida_core: aiida_core_requirement(&install_requires, file, text)?,
        requires_python,
        extras,
        entry_points,
    })
}

/// The string literals of a Python list/dict literal or a single string, from the text that
/// follows `keyword=` in a `setup(...)` call. Only literals are understood: a name or a call gives
/// an error that says so.
fn python_literal_strings(source: &str) -> Vec<String> {
    let mut strings = Vec::new();
    let mut chars = source.char_indices().peekable();
    let mut depth = 0i32;
    while let Some((_, c)) = chars.next() {
        match c {
            '[' | '{' | '(' => depth += 1,
            ']' | '}' | ')' => {
                depth -= 1;
                if depth <= 0 {
                    break;
                }
            }
            ',' if depth == 0 => break,
            '#' => {
                for (_, c) in chars.by_ref() {
                    if c == '\n' {
                        break;
                    }
                }
            }
            '"' | '\'' => {
                let quote = c;
                let mut s = String::new();
                while let Some((_, c)) = chars.next() {
                    if c == '\\' {
                        if let Some((_, e)) = chars.next() {
                            s.push(e);
                        }
                    } else if c == quote {
                        break;
                    } else {
                        s.push(c);
                    }
                }
                strings.push(s);
                if depth == 0 {
                    break;
                }
            }
            _ => {}
        }
    }
    strings
}

fn setup_py_keyword<'a>(text: &'a str, keyword: &str) -> Option<(usize, &'a str)> {
    let pattern = format!("{keyword}=");
    let mut from = 0;
    while let Some(found) = text[from..].find(&pattern) {
        let at = from + found;
        let before_ok = text[..at]
            .chars()
            .last()
            .is_none_or(|c| !c.is_alphanumeric() && c != '_');
        if before_ok {
            return Some((at, text[at + pattern.len()..].trim_start()));
        }
        from = at + pattern.len();
    }
    None
}

fn from_setup_py(file: &Path, text: &str) -> anyhow::Result<PluginMetadata> {
    let literal = |keyword: &str| -> anyhow::Result<Option<Vec<String>>> {
        let Some((at, rest)) = setup_py_keyword(text, keyword) else {
            return Ok(None);
        };
        if !rest.starts_with(['"', '\'', '[', '{', '(']) {
            bail!(
                "{}: `{keyword}=` is not a literal; aiida-devc reads setup.py without running it. \
                 Move the metadata to pyproject.toml ([project]) or setup.cfg",
                Location::at_offset(file, text, at)
            );
        }
        Ok(Some(python_literal_strings(rest)))
    };
    let name = literal("name")?
        .and_then(|v| v.into_iter().next())
        .ok_or_else(|| {
            anyhow!(
                "{}: no `name=` in the setup() call",
                Location::at_offset(file, text, 0)
            )
        })?;
    let install_requires = literal("install_requires")?.unwrap_or_default();
    let requires_python = match literal("python_requires")?.and_then(|v| v.into_iter().next()) {
        Some(spec) => Some(parse_specifiers(&spec, file, text)?),
        None => None,
    };
    // extras_require={"tests": [...], ...}: keys are the strings followed by ':'.
    let mut extras = BTreeMap::new();
    if let Some((_, rest)) = setup_py_keyword(text, "extras_require") {
        let mut current: Option<String> = None;
        let body = &rest[..matching_close(rest).unwrap_or(rest.len())];
        for (i, s) in string_literals_with_ends(body) {
            let after = body[i..].trim_start();
            if after.starts_with(':') {
                current = Some(s.clone());
                extras.entry(s).or_insert_with(Vec::new);
            } else if let Some(extra) = &current {
                extras.get_mut(extra).unwrap().push(s);
            }
        }
    }
    Ok(PluginMetadata {
        name,
        source: file.to_owned(),
        aiida_core: aiida_core_requirement(&install_requires, file, text)?,
        requires_python,
        extras,
        entry_points: Vec::new(),
    })
}

/// The byte offset just past the bracket that closes the one `text` starts with.
fn matching_close(text: &str) -> Option<usize> {
    let mut depth = 0;
    let mut quote: Option<char> = None;
    for (i, c) in text.char_indices() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'') => quote = Some(c),
            (None, '[' | '{' | '(') => depth += 1,
            (None, ']' | '}' | ')') => {
                depth -= 1;
                if depth == 0 {
                    return Some(i + 1);
                }
            }
            _ => {}
        }
    }
    None
}

/// Every string literal of `text` with the offset just past its closing quote.
fn string_literals_with_ends(text: &str) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    let mut chars = text.char_indices();
    while let Some((_, c)) = chars.next() {
        if c == '"' || c == '\'' {
            let mut s = String::new();
            for (j, d) in chars.by_ref() {
                if d == c {
                    found.push((j + 1, s));
                    break;
                }
                s.push(d);
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) {
        fs::write(dir.join(name), text).unwrap();
    }

    #[test]
    fn pyproject_gives_name_requirement_extras_and_entry_points() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "pyproject.toml",
            r#"[project]
name = "aiida-thing"
requires-python = ">=3.9"
dependencies = ["numpy", "aiida-core[atomic_tools]>=2.5,<3; python_version >= '3.9'"]
[project.optional-dependencies]
testing = ["pytest"]
docs = ["sphinx"]
[project.entry-points."aiida.calculations"]
"thing.calc" = "aiida_thing:Calc"
[project.entry-points."console_scripts"]
thing = "aiida_thing:main"
"#,
        );
        let meta = read(dir.path()).unwrap();
        assert_eq!(meta.name, "aiida-thing");
        assert_eq!(meta.aiida_core.as_ref().unwrap().to_string(), ">=2.5, <3");
        assert_eq!(meta.requires_python.as_ref().unwrap().to_string(), ">=3.9");
        assert_eq!(meta.test_extras(), vec!["testing"]);
        assert_eq!(
            meta.entry_points,
            vec![("aiida.calculations".into(), "thing.calc".into())]
        );
    }

    #[test]
    fn invalid_toml_names_file_line_and_column() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "pyproject.toml",
            "[project]\nname = \"x\"\ndependencies = [\"a\",\n  oops]\n",
        );
        let err = read(dir.path()).unwrap_err().to_string();
        assert!(err.contains("pyproject.toml:4:3: invalid TOML"), "{err}");
    }

    #[test]
    fn an_invalid_requirement_is_located_in_the_file() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "pyproject.toml",
            "[project]\nname = \"x\"\ndependencies = [\n  \"aiida-core>>2\",\n]\n",
        );
        let err = read(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("pyproject.toml:4:4: invalid requirement \"aiida-core>>2\""),
            "{err}"
        );
    }

    #[test]
    fn setup_cfg_is_read_when_pyproject_only_configures_tools() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "pyproject.toml",
            "[build-system]\nrequires = [\"setuptools\"]\n",
        );
        write(
            dir.path(),
            "setup.cfg",
            "[metadata]\nname = aiida-old\n\n[options]\npython_requires = >=3.8\ninstall_requires =\n    aiida-core~=2.4\n    numpy\n\n[options.extras_require]\ntests =\n    pytest\n\n[options.entry_points]\naiida.parsers =\n    old.parser = aiida_old:Parser\n",
        );
        let meta = read(dir.path()).unwrap();
        assert_eq!(meta.name, "aiida-old");
        assert_eq!(meta.aiida_core.as_ref().unwrap().to_string(), "~=2.4");
        assert_eq!(meta.test_extras(), vec!["tests"]);
        assert_eq!(
            meta.entry_points,
            vec![("aiida.parsers".into(), "old.parser".into())]
        );
    }

    #[test]
    fn setup_py_literals_are_read_without_running_it() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "setup.py",
            "from setuptools import setup\nsetup(\n    name='aiida-legacy',\n    python_requires='>=3.7',\n    install_requires=['aiida-core>=2.1,<2.7', \"six\"],\n    extras_require={'testing': ['pytest', 'pgtest'], 'docs': ['sphinx']},\n)\n",
        );
        let meta = read(dir.path()).unwrap();
        assert_eq!(meta.name, "aiida-legacy");
        assert_eq!(meta.aiida_core.as_ref().unwrap().to_string(), ">=2.1, <2.7");
        assert_eq!(meta.extras["testing"], vec!["pytest", "pgtest"]);
        assert_eq!(meta.extras["docs"], vec!["sphinx"]);
    }

    #[test]
    fn setup_py_computed_metadata_is_an_error_with_its_location() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "setup.py",
            "import json\nsetup(\n    name=NAME,\n)\n",
        );
        let err = read(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("setup.py:3:5: `name=` is not a literal"),
            "{err}"
        );
    }

    #[test]
    fn a_directory_without_metadata_says_what_it_looked_for() {
        let dir = tempfile::tempdir().unwrap();
        let err = read(dir.path()).unwrap_err().to_string();
        assert!(err.contains("no Python package metadata"), "{err}");
    }
}
