//! Each Feature's and Template's `README.md`, generated from its metadata file and `NOTES.md`
//! (`aiida-devc features|templates docs`).
//!
//! The shape is the one the reference CLI's `generate-docs` writes, and users know from the
//! devcontainers collections:
//!
//! 1. `# <name> (<id>)` (just the name when it holds the id), the description (and a notice for a deprecated or renamed Feature);
//! 2. "Example Usage": the major-version reference `<registry>/<namespace>/<id>:<major>`, in a
//!    devcontainer.json `features` block (Features) or a `devcontainer templates apply` command
//!    (Templates);
//! 3. "Options": a table of id, description, type and default;
//! 4. "Customizations": the VS Code extensions (a Template's come from its devcontainer.json);
//! 5. the item's `NOTES.md`, verbatim;
//! 6. a footer saying that the file is generated.
//!
//! Docs need more than packaging: a `description` for the item and for every option. A missing
//! one is a problem located in the metadata file. `--check` writes nothing and fails when a
//! committed README differs from what would be generated.

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::CollectionKind;
use super::metadata::Problem;
use super::package::{Source, template_config_path};

/// The file written into each item's folder.
pub const README: &str = "README.md";
/// The hand-written part appended to the generated one.
pub const NOTES: &str = "NOTES.md";

/// Where the project publishes each collection (the namespace the READMEs refer to by default).
pub fn default_namespace(kind: CollectionKind) -> &'static str {
    match kind {
        CollectionKind::Features => "aiidateam/devcontainer-features",
        CollectionKind::Templates => "aiidateam/devcontainer-templates",
    }
}

/// One generated README: where it goes and its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Readme {
    pub path: PathBuf,
    pub text: String,
}

/// What the docs need beyond what packaging checks: a description for the item and each option.
pub fn check(source: &Source) -> Vec<Problem> {
    let file = &source.metadata;
    let mut problems = Vec::new();
    let described = |value: Option<&Value>| {
        value
            .and_then(Value::as_str)
            .is_some_and(|s| !s.trim().is_empty())
    };
    if !described(file.value.get("description")) {
        problems.push(file.problem(
            "",
            "the README needs a 'description' (a sentence on what this does); add one",
        ));
    }
    if let Some(options) = file.value.get("options").and_then(Value::as_object) {
        for (name, option) in options {
            if !described(option.get("description")) {
                problems.push(file.problem(
                    &format!("/options/{}", name.replace('~', "~0").replace('/', "~1")),
                    format!("option '{name}' needs a 'description' for the README's options table"),
                ));
            }
        }
    }
    problems
}

/// The README of `source`, referring to `<registry>/<namespace>/<id>`: the sections of the
/// module doc, in order.
pub fn render(
    source: &Source,
    kind: CollectionKind,
    registry: &str,
    namespace: &str,
) -> anyhow::Result<Readme> {
    let metadata = &source.metadata.value;
    let id = source.id();
    let major = semver::Version::parse(source.version())
        .map_or_else(|_| "latest".into(), |v| v.major.to_string());
    let reference = format!("{registry}/{namespace}/{id}:{major}");

    let mut out = String::new();
    push_heading(&mut out, metadata, id);
    push_example_usage(&mut out, metadata, kind, &reference);
    push_options_table(&mut out, metadata);
    let customizations = match kind {
        CollectionKind::Features => metadata.get("customizations").cloned(),
        CollectionKind::Templates => template_customizations(&source.dir)?,
    };
    push_customizations(&mut out, customizations.as_ref())?;
    let has_notes = push_notes(&mut out, &source.dir)?;
    push_footer(&mut out, kind, has_notes);
    Ok(Readme {
        path: source.dir.join(README),
        text: out,
    })
}

/// The title, the deprecation notice if any, and the description.
fn push_heading(out: &mut String, metadata: &Value, id: &str) {
    let name = metadata["name"].as_str().unwrap_or(id);
    let description = metadata["description"].as_str().unwrap_or_default();
    // "AiiDA (aiida-core)" needs no second "(aiida-core)".
    if name.contains(id) {
        out.push_str(&format!("# {name}\n\n"));
    } else {
        out.push_str(&format!("# {name} ({id})\n\n"));
    }
    if let Some(notice) = notice(metadata) {
        out.push_str(&notice);
        out.push('\n');
    }
    out.push_str(description.trim());
    out.push('\n');
}

/// "Example Usage": a `features` block (Features) or an apply command (Templates).
fn push_example_usage(out: &mut String, metadata: &Value, kind: CollectionKind, reference: &str) {
    out.push_str("\n## Example Usage\n\n");
    match kind {
        CollectionKind::Features => out.push_str(&format!(
            "```json\n\"features\": {{\n    \"{reference}\": {{}}\n}}\n```\n"
        )),
        CollectionKind::Templates => {
            out.push_str(&format!(
                "```sh\ndevcontainer templates apply -t {reference}\n```\n"
            ));
            let first = metadata["options"]
                .as_object()
                .and_then(|o| o.iter().next());
            if let Some((option_id, option)) = first {
                let example = option["default"].as_str().unwrap_or_default();
                out.push_str(&format!(
                    "\nOptions go in `-a` as JSON, for example `-a '{{\"{option_id}\": \"{example}\"}}'`.\n"
                ));
            }
        }
    }
}

/// "Options": one table row per option (nothing when there are none).
fn push_options_table(out: &mut String, metadata: &Value) {
    let Some(options) = metadata.get("options").and_then(Value::as_object) else {
        return;
    };
    if options.is_empty() {
        return;
    }
    out.push_str("\n## Options\n\n");
    out.push_str("| Options Id | Description | Type | Default Value |\n");
    out.push_str("|-----|-----|-----|-----|\n");
    for (option_id, option) in options {
        let default = match option.get("default") {
            None => "-".to_owned(),
            Some(Value::String(s)) if s.is_empty() => "-".to_owned(),
            Some(Value::String(s)) => s.clone(),
            Some(other) => other.to_string(),
        };
        out.push_str(&format!(
            "| {} | {} | {} | {} |\n",
            cell(option_id),
            cell(option["description"].as_str().unwrap_or("-")),
            cell(option["type"].as_str().unwrap_or("-")),
            cell(&default),
        ));
    }
}

/// "Customizations": the VS Code extensions and settings (nothing when there are none).
fn push_customizations(out: &mut String, customizations: Option<&Value>) -> anyhow::Result<()> {
    let vscode = customizations.and_then(|c| c.get("vscode"));
    let extensions: Vec<&str> = vscode
        .and_then(|v| v.get("extensions"))
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let settings = vscode
        .and_then(|v| v.get("settings"))
        .and_then(Value::as_object)
        .filter(|s| !s.is_empty());
    if !extensions.is_empty() || settings.is_some() {
        out.push_str("\n## Customizations\n");
    }
    if !extensions.is_empty() {
        out.push_str("\n### VS Code Extensions\n\n");
        for extension in extensions {
            out.push_str(&format!("- `{extension}`\n"));
        }
    }
    if let Some(settings) = settings {
        out.push_str("\n### VS Code Settings\n\n```json\n");
        out.push_str(&serde_json::to_string_pretty(settings)?);
        out.push_str("\n```\n");
    }
    Ok(())
}

/// The item's `NOTES.md`, verbatim; whether there is one.
fn push_notes(out: &mut String, dir: &Path) -> anyhow::Result<bool> {
    let notes_path = dir.join(NOTES);
    if !notes_path.is_file() {
        return Ok(false);
    }
    let notes = std::fs::read_to_string(&notes_path)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", notes_path.display()))?;
    out.push('\n');
    out.push_str(notes.trim_end());
    out.push('\n');
    Ok(true)
}

/// The footer saying the file is generated, and from what.
fn push_footer(out: &mut String, kind: CollectionKind, has_notes: bool) {
    let metadata_file = kind.metadata_file();
    let sources = if has_notes {
        format!("[{metadata_file}]({metadata_file}) and [{NOTES}]({NOTES})")
    } else {
        format!("[{metadata_file}]({metadata_file}); add notes to a {NOTES}")
    };
    out.push_str(&format!(
        "\n---\n\n_Note: this file is generated by `aiida-devc {} docs` from {sources}; edit those, not this file._\n",
        kind.plural(),
    ));
}

/// The reference CLI's notice for a deprecated Feature or one published under other ids before.
fn notice(metadata: &Value) -> Option<String> {
    let deprecated = metadata["deprecated"].as_bool().unwrap_or(false);
    let legacy: Vec<String> = metadata["legacyIds"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(|id| format!("'{id}'"))
                .collect()
        })
        .unwrap_or_default();
    if !deprecated && legacy.is_empty() {
        return None;
    }
    let mut text = String::from("### **IMPORTANT NOTE**\n");
    if deprecated {
        text.push_str("- **This Feature is deprecated, and will no longer receive any further updates/support.**\n");
    }
    if !legacy.is_empty() {
        text.push_str(&format!(
            "- **Ids used to publish this Feature in the past - {}**\n",
            legacy.join(", ")
        ));
    }
    Some(text)
}

/// A table cell: one line, with `|` escaped so that it cannot split the cell.
fn cell(text: &str) -> String {
    text.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .replace('|', "\\|")
}

/// The `customizations` of a Template's devcontainer.json.
fn template_customizations(dir: &Path) -> anyhow::Result<Option<Value>> {
    let Some(path) = template_config_path(dir) else {
        return Ok(None);
    };
    let file = super::metadata::JsoncFile::read(&path).map_err(|p| anyhow::anyhow!("{p}"))?;
    Ok(file.value.get("customizations").cloned())
}

/// The READMEs whose file on disk differs from the generated text (missing ones included).
pub fn stale(readmes: &[Readme]) -> Vec<&Path> {
    readmes
        .iter()
        .filter(|r| std::fs::read_to_string(&r.path).ok().as_deref() != Some(r.text.as_str()))
        .map(|r| r.path.as_path())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collection::metadata::JsoncFile;

    fn source(dir: &Path, json: &str) -> Source {
        Source {
            folder_name: "hello".into(),
            dir: dir.to_owned(),
            metadata: JsoncFile::parse(&dir.join("devcontainer-feature.json"), json.into())
                .unwrap(),
        }
    }

    #[test]
    fn a_feature_readme_has_the_reference_shape() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(NOTES), "## Limitations\n\nNone | yet.\n").unwrap();
        let source = source(
            dir.path(),
            r#"{"id": "hello", "version": "2.1.0", "name": "Hello", "description": "Says hello.",
                "legacyIds": ["hi"],
                "options": {"greeting": {"type": "string", "default": "", "description": "What | to say"},
                            "loud": {"type": "boolean", "default": false, "description": "Shout."}},
                "customizations": {"vscode": {"extensions": ["ms-python.python"]}}}"#,
        );
        let readme = render(&source, CollectionKind::Features, "ghcr.io", "org/features").unwrap();
        insta::assert_snapshot!(readme.text);
    }

    #[test]
    fn missing_descriptions_are_located() {
        let dir = tempfile::tempdir().unwrap();
        let source = source(
            dir.path(),
            "{\"id\": \"hello\", \"version\": \"1.0.0\", \"name\": \"Hello\",\n \"options\": {\"a\": {\"type\": \"string\", \"default\": \"\"}}}",
        );
        let problems: Vec<String> = check(&source)
            .iter()
            .map(std::string::ToString::to_string)
            .collect();
        let file = dir.path().join("devcontainer-feature.json");
        assert_eq!(
            problems,
            vec![
                format!(
                    "{}:1:1: the README needs a 'description' (a sentence on what this does); add one",
                    file.display()
                ),
                format!(
                    "{}:2:19: option 'a' needs a 'description' for the README's options table",
                    file.display()
                ),
            ]
        );
    }
}
