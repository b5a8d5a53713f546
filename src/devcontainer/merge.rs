//! Merging the settings aiida-devc owns into a `devcontainer.json` without disturbing the rest.
//!
//! The file is edited through jsonc-parser's concrete syntax tree, so every comment, key, order,
//! indentation and trailing comma of the user's file survives. What aiida-devc wants is a tree
//! of [`Entry`]s; each says how much of its key aiida-devc owns ([`Desired`]). Keys that are added
//! get a `//` comment above them that explains the choice; keys that exist are changed in place
//! and keep the user's comments.
//!
//! The same merge writes a new file (merging into `{}`), so a second run on its own output finds
//! nothing to change.

use std::path::Path;

use anyhow::{anyhow, bail};
use jsonc_parser::cst::{CstArray, CstInputValue, CstNode, CstObject, CstRootNode};
use jsonc_parser::{CollectOptions, CommentCollectionStrategy};
use serde_json::Value;

/// One key of an object, how much of it aiida-devc owns, and the comment that explains it.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub key: String,
    pub desired: Desired,
    /// Written above the key when aiida-devc adds it.
    pub comment: Option<String>,
}

impl Entry {
    pub fn new(key: &str, desired: Desired) -> Entry {
        Entry {
            key: key.to_owned(),
            desired,
            comment: None,
        }
    }

    pub fn commented(key: &str, desired: Desired, comment: impl Into<String>) -> Entry {
        Entry {
            key: key.to_owned(),
            desired,
            comment: Some(comment.into()),
        }
    }
}

/// How much of a key aiida-devc owns.
#[derive(Debug, Clone, PartialEq)]
pub enum Desired {
    /// The whole value: added when missing, replaced when different.
    Value(Value),
    /// A suggestion: added when missing, never changed afterwards.
    Default(Value),
    /// Some keys of an object; the object's other keys are the user's.
    Object(Vec<Entry>),
    /// Items an array must contain. An existing item with the same identity (see [`identity`])
    /// counts as present and is left as the user wrote it.
    Items(Vec<Value>),
    /// A key that aiida-devc no longer writes: removed when its value is one of these (what an
    /// earlier version wrote), kept when the user wrote anything else. Never added.
    Retired(Vec<Value>),
}

impl Desired {
    fn to_input(&self) -> CstInputValue {
        match self {
            Desired::Value(v) | Desired::Default(v) => value_to_input(v),
            Desired::Object(entries) => CstInputValue::Object(
                entries
                    .iter()
                    .map(|e| (e.key.clone(), e.desired.to_input()))
                    .collect(),
            ),
            Desired::Items(items) => {
                CstInputValue::Array(items.iter().map(value_to_input).collect())
            }
            Desired::Retired(_) => CstInputValue::Null,
        }
    }
}

fn value_to_input(value: &Value) -> CstInputValue {
    match value {
        Value::Null => CstInputValue::Null,
        Value::Bool(b) => CstInputValue::Bool(*b),
        Value::Number(n) => CstInputValue::Number(n.to_string()),
        Value::String(s) => CstInputValue::String(s.clone()),
        Value::Array(items) => CstInputValue::Array(items.iter().map(value_to_input).collect()),
        Value::Object(map) => CstInputValue::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), value_to_input(v)))
                .collect(),
        ),
    }
}

/// What makes two array items "the same" for [`Desired::Items`]: the `target` of a mount (object
/// or `type=…,source=…,target=…` string form), otherwise the value itself (case-insensitive for
/// strings, so extension ids match however they are spelled).
pub fn identity(item: &Value) -> String {
    match item {
        Value::Object(map) => match map.get("target").and_then(Value::as_str) {
            Some(target) => format!("target={target}"),
            None => item.to_string(),
        },
        Value::String(s) => {
            let target = s.split(',').find_map(|part| {
                let (k, v) = part.split_once('=')?;
                matches!(k.trim(), "target" | "dst" | "destination").then(|| v.trim().to_owned())
            });
            match target {
                Some(target)
                    if s.contains("source=") || s.contains("src=") || s.contains("type=") =>
                {
                    format!("target={target}")
                }
                _ => s.to_lowercase(),
            }
        }
        other => other.to_string(),
    }
}

/// What a merge did, for the summary printed after the diff.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Changes {
    /// Dotted paths of the keys that were added.
    pub added: Vec<String>,
    /// Dotted paths of the keys whose value was replaced.
    pub updated: Vec<String>,
    /// Dotted paths of the keys that were removed (see [`Desired::Retired`]).
    pub removed: Vec<String>,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.updated.is_empty() && self.removed.is_empty()
    }
}

/// Parse JSONC, with errors as `file:line:column: message`.
pub fn parse(path: &Path, text: &str) -> anyhow::Result<CstRootNode> {
    CstRootNode::parse(text, &crate::jsonc::options()).map_err(|err| located(path, &err))
}

/// A JSONC parse error as `file:line:column: invalid JSONC: message`.
fn located(path: &Path, err: &jsonc_parser::errors::ParseError) -> anyhow::Error {
    anyhow!(
        "{}:{}:{}: invalid JSONC: {}",
        path.display(),
        err.line_display(),
        err.column_display(),
        err.kind()
    )
}

/// The file as a plain JSON value (comments dropped), with the same errors as [`parse`].
pub fn to_value(path: &Path, text: &str) -> anyhow::Result<Value> {
    jsonc_parser::parse_to_serde_value::<Option<Value>>(text, &crate::jsonc::options())
        .map_err(|err| located(path, &err))
        .map(|v| v.unwrap_or(Value::Object(Default::default())))
}

/// Merge `entries` into the JSONC `text` (the content of `path`, for error messages). Returns the
/// new text and what changed; the text is unchanged when nothing had to change.
pub fn merge(path: &Path, text: &str, entries: &[Entry]) -> anyhow::Result<(String, Changes)> {
    let root = parse(path, text)?;
    let object = match root.value() {
        None => root.object_value_or_set(),
        Some(value) => match value.as_object() {
            Some(object) => object,
            None => {
                let at = crate::plugin::Location::of(path, text, value.to_string().trim());
                bail!("{at}: the top level of a devcontainer.json must be an object {{ ... }}");
            }
        },
    };
    let mut changes = Changes::default();
    let mut comments = Vec::new();
    merge_object(
        &object,
        entries,
        &mut Vec::new(),
        &mut changes,
        &mut comments,
    )?;
    if changes.is_empty() {
        return Ok((text.to_owned(), changes));
    }
    object.ensure_multiline();
    let merged = root.to_string();
    Ok((insert_comments(&merged, &comments), changes))
}

fn node_value(node: &CstNode) -> Value {
    jsonc_parser::parse_to_serde_value(&node.to_string(), &crate::jsonc::options())
        .unwrap_or(Value::Null)
}

fn merge_object(
    object: &CstObject,
    entries: &[Entry],
    path: &mut Vec<String>,
    changes: &mut Changes,
    comments: &mut Vec<Comment>,
) -> anyhow::Result<()> {
    for entry in entries {
        path.push(entry.key.clone());
        let dotted = path.join(".");
        match object.get(&entry.key) {
            None if matches!(entry.desired, Desired::Retired(_)) => {}
            None => {
                object.append(&entry.key, entry.desired.to_input());
                changes.added.push(dotted);
                collect_comments(entry, path, comments);
            }
            Some(prop) => {
                let current = prop.value();
                match &entry.desired {
                    Desired::Default(_) => {}
                    Desired::Retired(old) => {
                        if current
                            .as_ref()
                            .is_some_and(|c| old.contains(&node_value(c)))
                        {
                            remove_leading_comments(&prop);
                            prop.remove();
                            changes.removed.push(dotted);
                        }
                    }
                    Desired::Value(v) => {
                        if current.as_ref().map(node_value).as_ref() != Some(v) {
                            prop.set_value(value_to_input(v));
                            changes.updated.push(dotted);
                            if let Some(comment) = &entry.comment {
                                comments.push(Comment::refresh(path, comment));
                            }
                        }
                    }
                    Desired::Object(sub) => match current.as_ref().and_then(CstNode::as_object) {
                        Some(inner) => merge_object(&inner, sub, path, changes, comments)?,
                        None => {
                            prop.set_value(entry.desired.to_input());
                            changes.updated.push(dotted);
                        }
                    },
                    Desired::Items(items) => match current.as_ref().and_then(CstNode::as_array) {
                        Some(array) => merge_items(&array, items, &dotted, changes),
                        None => {
                            prop.set_value(entry.desired.to_input());
                            changes.updated.push(dotted);
                        }
                    },
                }
            }
        }
        path.pop();
    }
    Ok(())
}

/// Remove the comment lines right above `prop` (the explanation aiida-devc wrote with it); a line
/// comment's removal takes its line with it.
fn remove_leading_comments(prop: &jsonc_parser::cst::CstObjectProp) {
    let comments: Vec<CstNode> = prop
        .previous_siblings()
        .take_while(|n| n.is_whitespace() || n.is_newline() || n.is_comment())
        .filter(CstNode::is_comment)
        .collect();
    for comment in comments {
        comment.remove();
    }
}

fn merge_items(array: &CstArray, items: &[Value], dotted: &str, changes: &mut Changes) {
    let present: Vec<String> = array
        .elements()
        .iter()
        .map(|e| identity(&node_value(e)))
        .collect();
    for item in items {
        let id = identity(item);
        if !present.contains(&id) {
            array.append(value_to_input(item));
            changes.added.push(format!("{dotted}[{id}]"));
        }
    }
}

fn collect_comments(entry: &Entry, path: &[String], comments: &mut Vec<Comment>) {
    if let Some(comment) = &entry.comment {
        comments.push(Comment {
            path: path.to_vec(),
            text: comment.clone(),
            refresh: false,
        });
    }
    if let Desired::Object(sub) = &entry.desired {
        for child in sub {
            let mut child_path = path.to_vec();
            child_path.push(child.key.clone());
            collect_comments(child, &child_path, comments);
        }
    }
}

/// A comment to write above the property at `path`.
#[derive(Debug, Clone)]
struct Comment {
    path: Vec<String>,
    text: String,
    /// The property existed and its value changed: replace the comment block right above it when
    /// it is the one aiida-devc wrote (same first line), so that it does not go stale.
    refresh: bool,
}

impl Comment {
    fn refresh(path: &[String], text: &str) -> Comment {
        Comment {
            path: path.to_vec(),
            text: text.to_owned(),
            refresh: true,
        }
    }
}

/// Put each comment on its own lines above the property at its path, indented like it.
fn insert_comments(text: &str, comments: &[Comment]) -> String {
    let collect = CollectOptions {
        comments: CommentCollectionStrategy::Off,
        tokens: false,
    };
    let Ok(parsed) = jsonc_parser::parse_to_ast(text, &collect, &crate::jsonc::options()) else {
        return text.to_owned();
    };
    // (start, end, replacement) edits of `text`.
    let mut edits: Vec<(usize, usize, String)> = Vec::new();
    for comment in comments {
        let Some(start) = property_start(parsed.value.as_ref(), &comment.path) else {
            continue;
        };
        let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
        let indent: String = text[line_start..start]
            .chars()
            .take_while(|c| c.is_whitespace())
            .collect();
        if indent.len() != start - line_start {
            continue; // the property shares its line with something else: no room for a comment
        }
        let block: String = comment
            .text
            .lines()
            .map(|l| format!("{indent}// {l}\n"))
            .collect();
        if !comment.refresh {
            edits.push((line_start, line_start, block));
            continue;
        }
        // The `//` lines directly above, with the same indentation.
        let mut block_start = line_start;
        while block_start > 0 {
            let previous = text[..block_start - 1].rfind('\n').map_or(0, |i| i + 1);
            let line = &text[previous..block_start - 1];
            if line.starts_with(&format!("{indent}//")) && !line[indent.len()..].starts_with("///")
            {
                block_start = previous;
            } else {
                break;
            }
        }
        let existing = &text[block_start..line_start];
        let ours = existing.lines().next().map(str::trim) == block.lines().next().map(str::trim);
        if block_start < line_start && ours && existing != block {
            edits.push((block_start, line_start, block));
        }
    }
    edits.sort_by_key(|edit| std::cmp::Reverse(edit.0));
    let mut out = text.to_owned();
    for (start, end, replacement) in edits {
        out.replace_range(start..end, &replacement);
    }
    out
}

fn property_start(value: Option<&jsonc_parser::ast::Value>, path: &[String]) -> Option<usize> {
    let (first, rest) = path.split_first()?;
    let jsonc_parser::ast::Value::Object(object) = value? else {
        return None;
    };
    let prop = object
        .properties
        .iter()
        .find(|p| p.name.as_str() == first)?;
    if rest.is_empty() {
        Some(prop.range.start)
    } else {
        property_start(Some(&prop.value), rest)
    }
}

/// A unified diff of `old` → `new`, labelled with `path`.
pub fn diff(path: &Path, old: &str, new: &str) -> String {
    let label = path.display().to_string();
    similar::TextDiff::from_lines(old, new)
        .unified_diff()
        .context_radius(3)
        .header(&format!("a/{label}"), &format!("b/{label}"))
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn entries() -> Vec<Entry> {
        vec![
            Entry::commented("image", Desired::Value(json!("img:1")), "The image."),
            Entry::new("name", Desired::Default(json!("plugin"))),
            Entry::commented(
                "mounts",
                Desired::Items(vec![
                    json!({"source": "v", "target": "/home/aiida", "type": "volume"}),
                ]),
                "Home volume.",
            ),
            Entry::new(
                "customizations",
                Desired::Object(vec![Entry::new(
                    "vscode",
                    Desired::Object(vec![Entry::new(
                        "extensions",
                        Desired::Items(vec![json!("ms-python.python")]),
                    )]),
                )]),
            ),
        ]
    }

    #[test]
    fn merging_into_nothing_then_again_changes_nothing() {
        let path = Path::new("devcontainer.json");
        let (first, changes) = merge(path, "{}\n", &entries()).unwrap();
        assert_eq!(
            changes.added,
            vec!["image", "name", "mounts", "customizations"]
        );
        assert!(
            first.contains("  // The image.\n  \"image\": \"img:1\""),
            "{first}"
        );
        let (second, changes) = merge(path, &first, &entries()).unwrap();
        assert!(changes.is_empty(), "{changes:?}");
        assert_eq!(first, second);
    }

    #[test]
    fn user_values_are_kept_where_aiida_devc_does_not_own_them() {
        let path = Path::new("devcontainer.json");
        let text = "{\n  // mine\n  \"name\": \"Mine\",\n  \"image\": \"other\", // old\n  \"mounts\": [\"source=x,target=/home/aiida,type=volume\"],\n  \"customizations\": {\"vscode\": {\"extensions\": [\"MS-Python.Python\", \"foo.bar\"]}}\n}\n";
        let (out, changes) = merge(path, text, &entries()).unwrap();
        assert_eq!(changes.updated, vec!["image"]);
        assert!(changes.added.is_empty(), "{changes:?}");
        assert!(out.contains("// mine\n  \"name\": \"Mine\""), "{out}");
        assert!(out.contains("\"image\": \"img:1\", // old"), "{out}");
    }

    #[test]
    fn invalid_jsonc_names_line_and_column() {
        let err = merge(
            Path::new("x/devcontainer.json"),
            "{\n  \"a\": 1,\n  \"b\" 2\n}\n",
            &entries(),
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("x/devcontainer.json:3:7: invalid JSONC"),
            "{err}"
        );
    }

    #[test]
    fn a_top_level_array_is_refused() {
        let err = merge(Path::new("d.json"), "[1]\n", &entries()).unwrap_err();
        assert!(
            err.to_string()
                .contains("d.json:1:1: the top level of a devcontainer.json must be an object"),
            "{err}"
        );
    }

    #[test]
    fn an_updated_value_refreshes_only_the_comment_aiida_devc_wrote() {
        let path = Path::new("devcontainer.json");
        let ours = "{\n  // The image.\n  // Version 1.\n  \"image\": \"img:1\"\n}\n";
        let entries = vec![Entry::commented(
            "image",
            Desired::Value(json!("img:2")),
            "The image.\nVersion 2.",
        )];
        let (out, _) = merge(path, ours, &entries).unwrap();
        assert_eq!(
            out,
            "{\n  // The image.\n  // Version 2.\n  \"image\": \"img:2\"\n}\n"
        );

        let theirs = "{\n  // Pinned on purpose.\n  \"image\": \"img:1\"\n}\n";
        let (out, _) = merge(path, theirs, &entries).unwrap();
        assert_eq!(
            out,
            "{\n  // Pinned on purpose.\n  \"image\": \"img:2\"\n}\n"
        );
    }

    #[test]
    fn a_retired_key_goes_with_its_comment_only_when_it_holds_what_aiida_devc_wrote() {
        let path = Path::new("devcontainer.json");
        let entries = vec![Entry::new("old", Desired::Retired(vec![json!("ours")]))];
        let text = "{\n  \"a\": [\n    1\n  ],\n  // Ours, line 1.\n  // Line 2.\n  \"old\": \"ours\",\n  // Next.\n  \"c\": 1\n}\n";
        let (out, changes) = merge(path, text, &entries).unwrap();
        assert_eq!(
            out,
            "{\n  \"a\": [\n    1\n  ],\n  // Next.\n  \"c\": 1\n}\n"
        );
        assert_eq!(changes.removed, vec!["old"]);

        let theirs = "{\n  // Mine.\n  \"old\": \"mine\"\n}\n";
        let (out, changes) = merge(path, theirs, &entries).unwrap();
        assert_eq!(out, theirs);
        assert!(changes.is_empty(), "{changes:?}");
        let (out, changes) = merge(path, "{}\n", &entries).unwrap();
        assert_eq!(out, "{}\n");
        assert!(changes.is_empty(), "{changes:?}");
    }
}
