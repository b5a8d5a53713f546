//! Reading `devcontainer-feature.json` / `devcontainer-template.json` (JSON with comments) and
//! checking them, with every problem located as `file:line:column`.
//!
//! The checks follow the devcontainer spec's Feature schema (known properties only, option
//! shapes, semver versions) plus what the reference CLI needs to package (`id`, `version`,
//! `name`, an `install.sh` for Features, a `devcontainer.json` for Templates), and one rule of
//! our own: option values must not carry shell metacharacters (`"`, `$`, backtick, `\`, newline),
//! because the reference CLI writes Feature options unescaped into a file that is sourced by a
//! shell, and substitutes Template options unescaped into JSON files.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use jsonc_parser::ast::{ObjectPropName, Value as Ast};
use jsonc_parser::{CollectOptions, CommentCollectionStrategy};
use serde_json::Value;

use super::CollectionKind;

/// One thing wrong with one file, at a place in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub file: PathBuf,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file.display(),
            self.line,
            self.column,
            self.message
        )
    }
}

/// A parsed JSONC file that remembers where each value is (by JSON pointer).
#[derive(Debug, Clone)]
pub struct JsoncFile {
    pub path: PathBuf,
    pub text: String,
    pub value: Value,
    locations: HashMap<String, (usize, usize)>,
}

impl JsoncFile {
    /// Read and parse; a syntax error is a [`Problem`] at its position.
    pub fn read(path: &Path) -> Result<JsoncFile, Problem> {
        let text = std::fs::read_to_string(path).map_err(|e| Problem {
            file: path.to_owned(),
            line: 1,
            column: 1,
            message: format!("cannot read: {e}"),
        })?;
        JsoncFile::parse(path, text)
    }

    pub fn parse(path: &Path, text: String) -> Result<JsoncFile, Problem> {
        let collect = CollectOptions {
            comments: CommentCollectionStrategy::Off,
            tokens: false,
        };
        let parsed = jsonc_parser::parse_to_ast(&text, &collect, &crate::jsonc::options())
            .map_err(|e| Problem {
                file: path.to_owned(),
                line: e.line_display(),
                column: e.column_display(),
                message: format!("invalid JSON: {}", e.kind()),
            })?;
        let Some(ast) = parsed.value else {
            return Err(Problem {
                file: path.to_owned(),
                line: 1,
                column: 1,
                message: "the file is empty".into(),
            });
        };
        let mut locations = HashMap::new();
        record_locations(&ast, "", &text, &mut locations);
        let value: Value = ast.into();
        Ok(JsoncFile {
            path: path.to_owned(),
            text,
            value,
            locations,
        })
    }

    /// Where the value at `pointer` starts (the closest enclosing value when it is absent).
    pub fn location(&self, pointer: &str) -> (usize, usize) {
        let mut pointer = pointer.to_owned();
        loop {
            if let Some(location) = self.locations.get(&pointer) {
                return *location;
            }
            match pointer.rfind('/') {
                Some(i) => pointer.truncate(i),
                None => return (1, 1),
            }
        }
    }

    /// A problem at the key of the property `pointer` points to.
    pub fn key_problem(&self, pointer: &str, message: impl Into<String>) -> Problem {
        self.problem(&format!("{pointer}{KEY_MARK}"), message)
    }

    /// A problem at the value `pointer` points to.
    pub fn problem(&self, pointer: &str, message: impl Into<String>) -> Problem {
        let (line, column) = self.location(pointer);
        Problem {
            file: self.path.clone(),
            line,
            column,
            message: message.into(),
        }
    }
}

/// Appended to a pointer to find the location of the property's key instead of its value.
const KEY_MARK: char = '\u{0}';

fn escape_pointer(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before
        .rfind('\n')
        .map_or(before.chars().count(), |i| before[i + 1..].chars().count())
        + 1;
    (line, column)
}

fn record_locations(
    ast: &Ast,
    pointer: &str,
    text: &str,
    out: &mut HashMap<String, (usize, usize)>,
) {
    use jsonc_parser::common::Ranged;
    out.insert(pointer.to_owned(), line_column(text, ast.start()));
    match ast {
        Ast::Object(object) => {
            for prop in &object.properties {
                let key = match &prop.name {
                    ObjectPropName::String(s) => s.value.to_string(),
                    ObjectPropName::Word(w) => w.value.to_string(),
                };
                let child = format!("{pointer}/{}", escape_pointer(&key));
                // The key itself, for problems about the property rather than its value.
                out.insert(
                    format!("{child}{KEY_MARK}"),
                    line_column(text, prop.start()),
                );
                record_locations(&prop.value, &child, text, out);
            }
        }
        Ast::Array(array) => {
            for (i, element) in array.elements.iter().enumerate() {
                record_locations(element, &format!("{pointer}/{i}"), text, out);
            }
        }
        _ => {}
    }
}

/// Properties a `devcontainer-feature.json` may have (the spec's schema, plus `currentId`, which
/// packaging adds).
const FEATURE_PROPERTIES: &[&str] = &[
    "id",
    "version",
    "name",
    "description",
    "documentationURL",
    "licenseURL",
    "keywords",
    "options",
    "containerEnv",
    "privileged",
    "init",
    "capAdd",
    "securityOpt",
    "entrypoint",
    "customizations",
    "installsAfter",
    "dependsOn",
    "legacyIds",
    "deprecated",
    "mounts",
    "onCreateCommand",
    "updateContentCommand",
    "postCreateCommand",
    "postStartCommand",
    "postAttachCommand",
    "currentId",
];

/// Properties a `devcontainer-template.json` may have (the spec's table, plus what packaging adds).
const TEMPLATE_PROPERTIES: &[&str] = &[
    "id",
    "version",
    "name",
    "description",
    "documentationURL",
    "licenseURL",
    "options",
    "platforms",
    "publisher",
    "keywords",
    "optionalPaths",
    "type",
    "files",
    "fileCount",
    "featureIds",
];

const OPTION_PROPERTIES: &[&str] = &["type", "default", "description", "enum", "proposals"];

/// Characters an option value must not contain (see the module documentation).
pub const FORBIDDEN_IN_OPTION_VALUES: &[(char, &str)] = &[
    ('"', "a double quote"),
    ('$', "a '$'"),
    ('`', "a backtick"),
    ('\\', "a backslash"),
    ('\n', "a newline"),
    ('\r', "a carriage return"),
];

/// The first forbidden character in `value`, described.
pub fn unsafe_character(value: &str) -> Option<&'static str> {
    value.chars().find_map(|c| {
        FORBIDDEN_IN_OPTION_VALUES
            .iter()
            .find(|(f, _)| *f == c)
            .map(|(_, name)| *name)
    })
}

fn is_lowercase_id(id: &str) -> bool {
    !id.is_empty()
        && id.chars().all(|c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_' || c == '.'
        })
        && id.starts_with(|c: char| c.is_ascii_alphanumeric())
}

/// Check a metadata file of `kind` whose folder is named `folder_name` (`None` when packaging a
/// single folder, where the id need not match).
pub fn check(file: &JsoncFile, kind: CollectionKind, folder_name: Option<&str>) -> Vec<Problem> {
    let mut problems = Vec::new();
    let Some(object) = file.value.as_object() else {
        problems.push(file.problem("", "the metadata must be a JSON object"));
        return problems;
    };
    check_known_properties(file, kind, object, &mut problems);
    check_identity(file, object, folder_name, &mut problems);
    check_scalar_and_list_types(file, object, &mut problems);
    check_container_env(file, object, &mut problems);
    check_mounts(file, object, &mut problems);
    if let Some(options) = object.get("options") {
        match options.as_object() {
            Some(map) => {
                for (name, option) in map {
                    check_option(file, kind, name, option, &mut problems);
                }
            }
            None => problems.push(file.problem("/options", "'options' must be an object")),
        }
    }
    problems.sort_by_key(|p| (p.line, p.column));
    problems
}

type Object = serde_json::Map<String, Value>;

/// Every top-level property is one the spec knows for `kind`.
fn check_known_properties(
    file: &JsoncFile,
    kind: CollectionKind,
    object: &Object,
    problems: &mut Vec<Problem>,
) {
    let allowed = match kind {
        CollectionKind::Features => FEATURE_PROPERTIES,
        CollectionKind::Templates => TEMPLATE_PROPERTIES,
    };
    for key in object.keys() {
        if !allowed.contains(&key.as_str()) {
            problems.push(file.key_problem(
                &format!("/{}", escape_pointer(key)),
                format!("unknown property '{key}' (allowed: {})", allowed.join(", ")),
            ));
        }
    }
}

/// `id`, `version` and `name` are there; the id is lowercase and matches its folder; the version
/// is semantic.
fn check_identity(
    file: &JsoncFile,
    object: &Object,
    folder_name: Option<&str>,
    problems: &mut Vec<Problem>,
) {
    for required in ["id", "version", "name"] {
        match object.get(required) {
            None => problems
                .push(file.problem("", format!("the required property '{required}' is missing"))),
            Some(Value::String(s)) if !s.trim().is_empty() => {}
            Some(_) => problems.push(file.problem(
                &format!("/{required}"),
                format!("'{required}' must be a non-empty string"),
            )),
        }
    }
    if let Some(Value::String(id)) = object.get("id") {
        if !is_lowercase_id(id) {
            problems.push(file.problem(
                "/id",
                format!("id '{id}' must be lowercase letters, digits, '-', '_' or '.'"),
            ));
        }
        if let Some(folder) = folder_name {
            if folder != id {
                problems.push(file.problem(
                    "/id",
                    format!("id '{id}' does not match its folder name '{folder}'"),
                ));
            }
        }
    }
    if let Some(Value::String(version)) = object.get("version") {
        if semver::Version::parse(version).is_err() {
            problems.push(file.problem(
                "/version",
                format!("version '{version}' is not a semantic version (MAJOR.MINOR.PATCH)"),
            ));
        }
    }
}

/// The properties that must be strings, booleans or arrays of strings are.
fn check_scalar_and_list_types(file: &JsoncFile, object: &Object, problems: &mut Vec<Problem>) {
    for key in [
        "name",
        "description",
        "documentationURL",
        "licenseURL",
        "entrypoint",
        "currentId",
        "publisher",
    ] {
        if let Some(v) = object.get(key) {
            if !v.is_string() {
                problems
                    .push(file.problem(&format!("/{key}"), format!("'{key}' must be a string")));
            }
        }
    }
    for key in ["privileged", "init", "deprecated"] {
        if let Some(v) = object.get(key) {
            if !v.is_boolean() {
                problems.push(
                    file.problem(&format!("/{key}"), format!("'{key}' must be true or false")),
                );
            }
        }
    }
    for key in [
        "keywords",
        "capAdd",
        "securityOpt",
        "installsAfter",
        "legacyIds",
        "platforms",
        "optionalPaths",
    ] {
        if let Some(v) = object.get(key) {
            let ok = v.as_array().is_some_and(|a| a.iter().all(Value::is_string));
            if !ok {
                problems.push(file.problem(
                    &format!("/{key}"),
                    format!("'{key}' must be an array of strings"),
                ));
            }
        }
    }
}

/// `containerEnv` is an object of strings.
fn check_container_env(file: &JsoncFile, object: &Object, problems: &mut Vec<Problem>) {
    let Some(env) = object.get("containerEnv") else {
        return;
    };
    match env.as_object() {
        Some(map) => {
            for (k, v) in map {
                if !v.is_string() {
                    problems.push(file.problem(
                        &format!("/containerEnv/{}", escape_pointer(k)),
                        format!("containerEnv '{k}' must be a string"),
                    ));
                }
            }
        }
        None => problems.push(file.problem(
            "/containerEnv",
            "'containerEnv' must be an object of strings",
        )),
    }
}

/// Each of `mounts` has a `type` (bind or volume) and a `target`.
fn check_mounts(file: &JsoncFile, object: &Object, problems: &mut Vec<Problem>) {
    let Some(mounts) = object.get("mounts") else {
        return;
    };
    match mounts.as_array() {
        Some(items) => {
            for (i, mount) in items.iter().enumerate() {
                let pointer = format!("/mounts/{i}");
                let ok_type = mount
                    .get("type")
                    .and_then(Value::as_str)
                    .is_some_and(|t| t == "bind" || t == "volume");
                let ok_target = mount.get("target").is_some_and(Value::is_string);
                if !(ok_type && ok_target) {
                    problems.push(file.problem(
                        &pointer,
                        "a mount needs \"type\" (\"bind\" or \"volume\") and \"target\"",
                    ));
                }
            }
        }
        None => problems.push(file.problem("/mounts", "'mounts' must be an array")),
    }
}

fn check_option(
    file: &JsoncFile,
    kind: CollectionKind,
    name: &str,
    option: &Value,
    problems: &mut Vec<Problem>,
) {
    let base = format!("/options/{}", escape_pointer(name));
    let id_ok = match kind {
        // The reference CLI substitutes `${templateOption:<\w+>}` only.
        CollectionKind::Templates => {
            !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        }
        CollectionKind::Features => {
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
        }
    };
    if !id_ok {
        let rule = match kind {
            CollectionKind::Templates => "letters, digits and '_'",
            CollectionKind::Features => "letters, digits, '-', '_' and '.'",
        };
        problems.push(file.problem(&base, format!("option name '{name}' may only use {rule}")));
    }
    let Some(map) = option.as_object() else {
        problems.push(file.problem(&base, format!("option '{name}' must be an object")));
        return;
    };
    for key in map.keys() {
        if !OPTION_PROPERTIES.contains(&key.as_str()) {
            problems.push(file.key_problem(
                &format!("{base}/{}", escape_pointer(key)),
                format!(
                    "option '{name}' has an unknown property '{key}' (allowed: {})",
                    OPTION_PROPERTIES.join(", ")
                ),
            ));
        }
    }
    let kind_of = map.get("type").and_then(Value::as_str);
    match kind_of {
        Some("boolean") => match map.get("default") {
            Some(Value::Bool(_)) => {}
            // Templates take string defaults (the reference CLI substitutes a false default as '').
            Some(Value::String(s))
                if kind == CollectionKind::Templates && (s == "true" || s == "false") => {}
            Some(_) => problems.push(file.problem(
                &format!("{base}/default"),
                format!("option '{name}' is boolean: its default must be true or false"),
            )),
            None => problems.push(file.problem(&base, format!("option '{name}' needs a default"))),
        },
        Some("string") => {
            match map.get("default") {
                Some(Value::String(s)) => {
                    check_value(file, &format!("{base}/default"), name, s, problems);
                }
                Some(_) => problems.push(file.problem(
                    &format!("{base}/default"),
                    format!("option '{name}' is a string: its default must be a string"),
                )),
                None => {
                    problems.push(file.problem(&base, format!("option '{name}' needs a default")));
                }
            }
            for list in ["enum", "proposals"] {
                let Some(values) = map.get(list) else {
                    continue;
                };
                let Some(values) = values.as_array() else {
                    problems.push(file.problem(
                        &format!("{base}/{list}"),
                        format!("'{list}' of option '{name}' must be an array of strings"),
                    ));
                    continue;
                };
                for (i, v) in values.iter().enumerate() {
                    let pointer = format!("{base}/{list}/{i}");
                    match v.as_str() {
                        Some(s) => check_value(file, &pointer, name, s, problems),
                        None => problems.push(file.problem(
                            &pointer,
                            format!("'{list}' of option '{name}' must hold strings"),
                        )),
                    }
                }
            }
            if let (Some(Value::Array(allowed)), Some(Value::String(default))) =
                (map.get("enum"), map.get("default"))
            {
                if !allowed.iter().any(|v| v.as_str() == Some(default)) {
                    problems.push(file.problem(&format!("{base}/default"), format!("the default '{default}' of option '{name}' is not one of its enum values")));
                }
            }
        }
        Some(other) => problems.push(file.problem(
            &format!("{base}/type"),
            format!("option '{name}' has type '{other}'; use \"string\" or \"boolean\""),
        )),
        None => problems.push(file.problem(
            &base,
            format!("option '{name}' needs a \"type\" (\"string\" or \"boolean\")"),
        )),
    }
}

fn check_value(
    file: &JsoncFile,
    pointer: &str,
    name: &str,
    value: &str,
    problems: &mut Vec<Problem>,
) {
    if let Some(what) = unsafe_character(value) {
        problems.push(file.problem(
            pointer,
            format!("the value {value:?} of option '{name}' contains {what}; option values are written unquoted into shell and JSON files, so use plain text"),
        ));
    }
}

/// Every `${templateOption:NAME}` in `text` with its position, for checking that NAME exists.
pub fn template_option_uses(text: &str) -> Vec<(String, usize, usize)> {
    let mut uses = Vec::new();
    let marker = "${templateOption:";
    let mut from = 0;
    while let Some(i) = text[from..].find(marker) {
        let start = from + i;
        let rest = &text[start + marker.len()..];
        if let Some(end) = rest.find('}') {
            let name = rest[..end].trim().to_owned();
            let (line, column) = line_column(text, start);
            uses.push((name, line, column));
        }
        from = start + marker.len();
    }
    uses
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> JsoncFile {
        JsoncFile::parse(Path::new("f.json"), text.to_owned()).unwrap()
    }

    #[test]
    fn syntax_errors_are_located() {
        let err = JsoncFile::parse(
            Path::new("f.json"),
            "{\n  \"id\": \"x\",\n  \"version\" \"1\"\n}".into(),
        )
        .unwrap_err();
        assert_eq!((err.line, err.column), (3, 13), "{err}");
        assert!(
            err.to_string().starts_with("f.json:3:13: invalid JSON"),
            "{err}"
        );
    }

    #[test]
    fn a_missing_comma_is_an_error() {
        let err = JsoncFile::parse(
            Path::new("f.json"),
            "{\n  \"a\": [1 2],\n  \"b\": 1\n}".into(),
        )
        .unwrap_err();
        assert_eq!((err.line, err.column), (2, 10), "{err}");
        assert!(err.to_string().ends_with("Expected comma"), "{err}");
        let err = JsoncFile::parse(Path::new("f.json"), "{\"a\": 1 // x, y\n \"b\": 2}".into())
            .unwrap_err();
        assert_eq!((err.line, err.column), (1, 8), "{err}");
        assert!(
            JsoncFile::parse(
                Path::new("f.json"),
                "{\"a\": [1, 2,], // c\n \"b\": {}}".into()
            )
            .is_ok()
        );
    }

    #[test]
    fn problems_point_at_the_value() {
        let file = parse(
            "{\n  // c\n  \"id\": \"x\", \"version\": \"1.0\", \"name\": \"X\",\n  \"options\": {\"v\": {\"type\": \"string\", \"default\": \"a$b\"}}\n}",
        );
        let problems = check(&file, CollectionKind::Features, Some("x"));
        let text: Vec<String> = problems
            .iter()
            .map(std::string::ToString::to_string)
            .collect();
        assert_eq!(text.len(), 2, "{text:#?}");
        assert!(
            text[0].starts_with("f.json:3:25: version '1.0' is not a semantic version"),
            "{text:#?}"
        );
        assert!(
            text[1].starts_with("f.json:4:50: the value \"a$b\" of option 'v' contains a '$'"),
            "{text:#?}"
        );
    }

    #[test]
    fn the_problem_report_reads_well() {
        let file = parse(concat!(
            "{\n",
            "    // A Feature with everything wrong that validation looks at.\n",
            "    \"id\": \"Hello\", \"version\": \"one\",\n",
            "    \"colour\": \"red\",\n",
            "    \"options\": {\n",
            "        \"greeting\": {\"type\": \"string\", \"default\": \"hi $USER\", \"proposals\": [\"`date`\"]},\n",
            "        \"flag\": {\"type\": \"boolean\", \"default\": \"yes\"},\n",
            "        \"mode\": {\"type\": \"string\", \"enum\": [\"a\", \"b\"], \"default\": \"c\", \"hint\": 1}\n",
            "    }\n",
            "}\n"
        ));
        let problems = check(&file, CollectionKind::Features, Some("hello"));
        let report = super::super::InvalidSources(problems).to_string();
        insta::assert_snapshot!(report);
    }

    #[test]
    fn each_metacharacter_is_rejected() {
        for bad in ["a\"b", "$HOME", "`id`", "a\nb", "a\\b"] {
            assert!(unsafe_character(bad).is_some(), "{bad:?}");
        }
        assert!(unsafe_character("2.7.1 plus-extras_ok/x:y").is_none());
    }

    #[test]
    fn unknown_properties_missing_fields_and_folder_mismatch() {
        let file = parse(r#"{"id": "Y", "version": "1.0.0", "colour": 1}"#);
        let text: Vec<String> = check(&file, CollectionKind::Features, Some("x"))
            .iter()
            .map(|p| p.message.clone())
            .collect();
        assert!(
            text.iter()
                .any(|m| m.starts_with("unknown property 'colour'")),
            "{text:#?}"
        );
        assert!(
            text.iter()
                .any(|m| m == "the required property 'name' is missing"),
            "{text:#?}"
        );
        assert!(
            text.iter()
                .any(|m| m.contains("does not match its folder name 'x'")),
            "{text:#?}"
        );
        assert!(
            text.iter().any(|m| m.contains("must be lowercase")),
            "{text:#?}"
        );
    }

    #[test]
    fn template_option_uses_are_found() {
        let uses = template_option_uses("a\n  ${templateOption:py} ${templateOption: aiida }");
        assert_eq!(uses, vec![("py".into(), 2, 3), ("aiida".into(), 2, 24)]);
    }
}
