//! Packaging: each Feature or Template folder becomes `devcontainer-<feature|template>-<id>.tgz`,
//! an uncompressed tar of the folder with `./`-prefixed entries, exactly the entries the reference
//! CLI writes; plus `devcontainer-collection.json` listing every packaged metadata.
//!
//! What packaging changes, like the reference CLI: a Feature with `legacyIds` gets `currentId`;
//! a Template gets `type`, `files`, `fileCount` and `featureIds`, and `optionalPaths` entries
//! `dir/*` naming a folder with exactly one file become that file. Changed metadata is written
//! with four-space indentation; unchanged metadata is packaged byte for byte. The tar entries carry
//! the files' own modes and mtimes with owner 0:0, in sorted order, so packaging the same checkout
//! twice gives the same bytes.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde_json::Value;

use super::CollectionKind;
use super::metadata::{JsoncFile, Problem, check, template_option_uses};

/// One Feature or Template folder, read and checked.
#[derive(Debug, Clone)]
pub struct Source {
    /// The folder name (the id in collection mode).
    pub folder_name: String,
    pub dir: PathBuf,
    pub metadata: JsoncFile,
}

impl Source {
    pub fn id(&self) -> &str {
        self.metadata.value["id"]
            .as_str()
            .unwrap_or(&self.folder_name)
    }

    pub fn version(&self) -> &str {
        self.metadata.value["version"].as_str().unwrap_or_default()
    }
}

/// A packaged Feature or Template.
#[derive(Debug, Clone)]
pub struct Package {
    pub id: String,
    pub version: String,
    /// `devcontainer-<kind>-<name>.tgz`
    pub file_name: String,
    /// The metadata as packaged (what goes into the manifest annotation and the collection).
    pub metadata: Value,
    pub tar: Vec<u8>,
}

/// What [`discover`] found: sources to package, and folders that were skipped (with why).
#[derive(Debug, Default)]
pub struct Discovery {
    pub sources: Vec<Source>,
    pub skipped: Vec<String>,
    /// `true` when the target itself was one Feature or Template.
    pub single: bool,
}

/// Find the Features or Templates at `target`: a folder holding `devcontainer-<kind>.json`
/// (single mode), or a `src` folder with one sub-folder per item (collection mode; folders
/// starting with `.` are ignored, folders without the metadata file are skipped with a note).
/// Every metadata file is parsed and checked; all problems are returned together.
pub fn discover(
    target: &Path,
    kind: CollectionKind,
) -> anyhow::Result<Result<Discovery, Vec<Problem>>> {
    if !target.is_dir() {
        bail!(
            "{} is not a folder (give the src folder of a collection, or one {} folder)",
            target.display(),
            kind.singular()
        );
    }
    let mut discovery = Discovery::default();
    let mut problems = Vec::new();
    let metadata_name = kind.metadata_file();
    let folders: Vec<(PathBuf, Option<String>)> = if target.join(metadata_name).is_file() {
        discovery.single = true;
        vec![(target.to_owned(), None)]
    } else {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(target)
            .with_context(|| format!("cannot list {}", target.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_dir())
            .collect();
        entries.sort();
        let mut folders = Vec::new();
        for dir in entries {
            let name = dir.file_name().unwrap().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            if !dir.join(metadata_name).is_file() {
                discovery
                    .skipped
                    .push(format!("{} has no {metadata_name}; skipped", dir.display()));
                continue;
            }
            folders.push((dir, Some(name)));
        }
        folders
    };
    if folders.is_empty() {
        bail!(
            "no {} found in {} (expected {} in it or in its sub-folders)",
            kind.plural(),
            target.display(),
            metadata_name
        );
    }
    for (dir, folder) in folders {
        let file = match JsoncFile::read(&dir.join(metadata_name)) {
            Ok(file) => file,
            Err(problem) => {
                problems.push(problem);
                continue;
            }
        };
        problems.extend(check(&file, kind, folder.as_deref()));
        problems.extend(check_folder(&dir, &file, kind));
        let folder_name =
            folder.unwrap_or_else(|| file.value["id"].as_str().unwrap_or_default().to_owned());
        discovery.sources.push(Source {
            folder_name,
            dir,
            metadata: file,
        });
    }
    Ok(if problems.is_empty() {
        Ok(discovery)
    } else {
        Err(problems)
    })
}

/// Checks of the folder beyond its metadata file.
fn check_folder(dir: &Path, metadata: &JsoncFile, kind: CollectionKind) -> Vec<Problem> {
    let mut problems = Vec::new();
    match kind {
        CollectionKind::Features => {
            if !dir.join("install.sh").is_file() {
                problems.push(metadata.problem(
                    "",
                    format!("the Feature folder {} has no install.sh", dir.display()),
                ));
            }
        }
        CollectionKind::Templates => {
            let config = template_config_path(dir);
            match &config {
                None => problems.push(metadata.problem(
                    "",
                    format!("the Template folder {} has no .devcontainer.json or .devcontainer/devcontainer.json", dir.display()),
                )),
                Some(path) => {
                    if let Err(problem) = JsoncFile::read(path) {
                        problems.push(problem);
                    }
                }
            }
            // Every ${templateOption:X} must name a declared option, or it silently becomes ''.
            let declared: Vec<String> = metadata
                .value
                .get("options")
                .and_then(Value::as_object)
                .map(|o| o.keys().cloned().collect())
                .unwrap_or_default();
            for file in walk(dir).unwrap_or_default() {
                if file.ends_with(kind.metadata_file()) {
                    continue;
                }
                let Ok(text) = std::fs::read_to_string(dir.join(&file)) else {
                    continue;
                };
                for (name, line, column) in template_option_uses(&text) {
                    if !declared.contains(&name) {
                        problems.push(Problem {
                            file: dir.join(&file),
                            line,
                            column,
                            message: format!("${{templateOption:{name}}} names an option that {} does not declare", kind.metadata_file()),
                        });
                    }
                }
            }
        }
    }
    problems
}

/// A Template's devcontainer.json: `.devcontainer.json` or `.devcontainer/devcontainer.json`.
pub fn template_config_path(dir: &Path) -> Option<PathBuf> {
    [".devcontainer.json", ".devcontainer/devcontainer.json"]
        .iter()
        .map(|p| dir.join(p))
        .find(|p| p.is_file())
}

/// Files below `dir`, relative, sorted, `/`-separated (dot-files included).
fn walk(dir: &Path) -> std::io::Result<Vec<String>> {
    let mut files = Vec::new();
    let mut pending = vec![PathBuf::new()];
    while let Some(relative) = pending.pop() {
        let mut entries: Vec<_> =
            std::fs::read_dir(dir.join(&relative))?.collect::<Result<_, _>>()?;
        entries.sort_by_key(std::fs::DirEntry::file_name);
        for entry in entries {
            let path = relative.join(entry.file_name());
            if entry.file_type()?.is_dir() {
                pending.push(path);
            } else {
                files.push(path.to_string_lossy().replace('\\', "/"));
            }
        }
    }
    files.sort();
    Ok(files)
}

/// Package one source.
pub fn package(source: &Source, kind: CollectionKind) -> anyhow::Result<Package> {
    let metadata_name = kind.metadata_file();
    let mut metadata = source.metadata.value.clone();
    let rewritten = match kind {
        CollectionKind::Features => {
            let has_legacy = metadata
                .get("legacyIds")
                .and_then(Value::as_array)
                .is_some_and(|a| !a.is_empty());
            if has_legacy {
                let id = metadata["id"].clone();
                metadata
                    .as_object_mut()
                    .unwrap()
                    .insert("currentId".into(), id);
            }
            has_legacy
        }
        CollectionKind::Templates => {
            add_template_properties(&source.dir, &mut metadata)?;
            true
        }
    };
    let replaced = rewritten.then(|| pretty_json(&metadata).into_bytes());
    let tar = tar_folder(&source.dir, metadata_name, replaced.as_deref())
        .with_context(|| format!("cannot package {}", source.dir.display()))?;
    Ok(Package {
        id: source.id().to_owned(),
        version: source.version().to_owned(),
        file_name: format!(
            "devcontainer-{}-{}.tgz",
            kind.singular(),
            source.folder_name
        ),
        metadata,
        tar,
    })
}

/// `JSON.stringify(value, null, 4)`.
pub fn pretty_json(value: &Value) -> String {
    let mut out = Vec::new();
    let formatter = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut serializer = serde_json::Serializer::with_formatter(&mut out, formatter);
    serde::Serialize::serialize(value, &mut serializer).expect("JSON values serialise");
    String::from_utf8(out).expect("serde_json writes UTF-8")
}

fn add_template_properties(dir: &Path, metadata: &mut Value) -> anyhow::Result<()> {
    let config_path = template_config_path(dir).context("no devcontainer.json")?;
    let config = JsoncFile::read(&config_path)
        .map_err(|p| anyhow::anyhow!("{p}"))?
        .value;
    let kind = if config.get("dockerComposeFile").is_some() {
        "dockerCompose"
    } else if config
        .get("build")
        .and_then(|b| b.get("dockerfile"))
        .is_some()
        || config.get("dockerFile").is_some()
    {
        "dockerfile"
    } else {
        "image"
    };
    let files = walk(dir)?;
    let feature_ids: Vec<Value> = config
        .get("features")
        .and_then(Value::as_object)
        .map(|f| f.keys().map(|k| Value::String(resource_name(k))).collect())
        .unwrap_or_default();
    let object = metadata
        .as_object_mut()
        .context("metadata is not an object")?;
    if let Some(Value::Array(optional)) = object.get_mut("optionalPaths") {
        for entry in optional.iter_mut() {
            let Some(folder) = entry.as_str().and_then(|p| p.strip_suffix("/*")) else {
                continue;
            };
            let inside: Vec<&String> = files
                .iter()
                .filter(|f| f.strip_prefix(folder).is_some_and(|r| r.starts_with('/')))
                .collect();
            if let [only] = inside.as_slice() {
                *entry = Value::String((*only).clone());
            }
        }
    }
    let count = files.len();
    object.insert("type".into(), kind.into());
    object.insert(
        "files".into(),
        files.into_iter().map(Value::String).collect(),
    );
    object.insert("fileCount".into(), count.into());
    object.insert("featureIds".into(), Value::Array(feature_ids));
    Ok(())
}

/// `ghcr.io/devcontainers/features/python:1` -> `ghcr.io/devcontainers/features/python`.
fn resource_name(feature: &str) -> String {
    if let Some((resource, _)) = feature.split_once('@') {
        return resource.to_owned();
    }
    match feature.rfind(':') {
        Some(i) if !feature[i..].contains('/') => feature[..i].to_owned(),
        _ => feature.to_owned(),
    }
}

/// A file's permission bits and modification time (seconds since 1970; before 1970 is written as
/// 1970) for its tar header.
#[cfg(unix)]
fn mode_and_mtime(meta: &std::fs::Metadata) -> (u32, u64) {
    use std::os::unix::fs::MetadataExt;
    (
        meta.mode() & 0o7777,
        u64::try_from(meta.mtime()).unwrap_or(0),
    )
}

/// Windows has no permission bits: folders and files get the modes of a fresh checkout on Unix
/// without the executable bit (Feature scripts are run with `sh`, which needs none).
#[cfg(not(unix))]
fn mode_and_mtime(meta: &std::fs::Metadata) -> (u32, u64) {
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs());
    let mode = if meta.is_dir() { 0o755 } else { 0o644 };
    (mode, mtime)
}

/// Tar `dir` with `./`-prefixed entries; `metadata_name` is replaced by `replaced` when given.
fn tar_folder(dir: &Path, metadata_name: &str, replaced: Option<&[u8]>) -> anyhow::Result<Vec<u8>> {
    let mut builder = tar::Builder::new(Vec::new());
    let mut order = Vec::new();
    entry_order(dir, Path::new(""), &mut order)?;
    for (relative, is_dir) in order {
        let full = dir.join(&relative);
        let meta = std::fs::symlink_metadata(&full)?;
        let mut header = tar::Header::new_ustar();
        header.set_uid(0);
        header.set_gid(0);
        let (mode, mtime) = mode_and_mtime(&meta);
        header.set_mtime(mtime);
        header.set_mode(mode);
        let name = if relative.as_os_str().is_empty() {
            "./".to_owned()
        } else if is_dir {
            format!("./{}/", relative.to_string_lossy())
        } else {
            format!("./{}", relative.to_string_lossy())
        };
        set_raw_name(&mut header, &name)?;
        if is_dir {
            header.set_entry_type(tar::EntryType::Directory);
            header.set_size(0);
            header.set_cksum();
            builder.append(&header, std::io::empty())?;
        } else if meta.file_type().is_symlink() {
            bail!(
                "{} is a symbolic link; packages hold regular files only",
                full.display()
            );
        } else {
            let data = match replaced {
                Some(bytes) if relative == Path::new(metadata_name) => bytes.to_vec(),
                _ => std::fs::read(&full)?,
            };
            header.set_entry_type(tar::EntryType::Regular);
            header.set_size(data.len() as u64);
            header.set_cksum();
            builder.append(&header, data.as_slice())?;
        }
    }
    Ok(builder.into_inner()?)
}

/// Depth-first, sorted, each directory before its contents and its files before its folders.
fn entry_order(
    root: &Path,
    relative: &Path,
    order: &mut Vec<(PathBuf, bool)>,
) -> std::io::Result<()> {
    order.push((relative.to_path_buf(), true));
    let mut entries: Vec<_> = std::fs::read_dir(root.join(relative))?.collect::<Result<_, _>>()?;
    entries.sort_by_key(std::fs::DirEntry::file_name);
    let mut dirs = Vec::new();
    for entry in entries {
        let path = relative.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            dirs.push(path);
        } else {
            order.push((path, false));
        }
    }
    for sub in dirs {
        entry_order(root, &sub, order)?;
    }
    Ok(())
}

/// Write an entry name into the ustar name (and prefix) fields as is, keeping the `./`.
fn set_raw_name(header: &mut tar::Header, name: &str) -> anyhow::Result<()> {
    let bytes = name.as_bytes();
    let ustar = header.as_ustar_mut().expect("a ustar header");
    if bytes.len() <= ustar.name.len() {
        ustar.name[..bytes.len()].copy_from_slice(bytes);
        return Ok(());
    }
    // Split at a '/' so that the prefix fits 155 bytes and the rest 100.
    let split = (0..bytes.len()).rev().find(|&i| {
        bytes[i] == b'/' && i <= ustar.prefix.len() && bytes.len() - i - 1 <= ustar.name.len()
    });
    let Some(i) = split else {
        bail!("the path {name} is too long for a tar entry");
    };
    ustar.prefix[..i].copy_from_slice(&bytes[..i]);
    ustar.name[..bytes.len() - i - 1].copy_from_slice(&bytes[i + 1..]);
    Ok(())
}

/// `devcontainer-collection.json` for the packaged items.
pub fn collection_json(kind: CollectionKind, packages: &[Package]) -> String {
    let mut root = serde_json::Map::new();
    root.insert(
        "sourceInformation".into(),
        serde_json::json!({"source": "devcontainer-cli"}),
    );
    root.insert(
        kind.plural().into(),
        packages.iter().map(|p| p.metadata.clone()).collect(),
    );
    pretty_json(&Value::Object(root))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_names_drop_tags_and_digests() {
        assert_eq!(
            resource_name("ghcr.io/devcontainers/features/python:1"),
            "ghcr.io/devcontainers/features/python"
        );
        assert_eq!(resource_name("localhost:5000/a/b"), "localhost:5000/a/b");
        assert_eq!(
            resource_name("localhost:5000/a/b@sha256:00"),
            "localhost:5000/a/b"
        );
        assert_eq!(resource_name("./local"), "./local");
    }

    #[test]
    fn entries_are_dot_slash_prefixed_sorted_and_owned_by_root() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("b/c")).unwrap();
        std::fs::write(dir.path().join("b/c/x"), "x").unwrap();
        std::fs::write(dir.path().join(".hidden"), "").unwrap();
        std::fs::write(dir.path().join("a.sh"), "#!/bin/sh\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            dir.path().join("a.sh"),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        let tar = tar_folder(dir.path(), "none", None).unwrap();
        let mut archive = tar::Archive::new(tar.as_slice());
        let entries: Vec<(String, u32, u64)> = archive
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let raw = String::from_utf8(e.path_bytes().into_owned()).unwrap();
                (raw, e.header().mode().unwrap(), e.header().uid().unwrap())
            })
            .collect();
        let names: Vec<&str> = entries.iter().map(|e| e.0.as_str()).collect();
        assert_eq!(
            names,
            ["./", "./.hidden", "./a.sh", "./b/", "./b/c/", "./b/c/x"]
        );
        assert_eq!(entries[2].1 & 0o777, 0o755);
        assert!(entries.iter().all(|e| e.2 == 0));
        assert_eq!(
            tar,
            tar_folder(dir.path(), "none", None).unwrap(),
            "packaging is reproducible"
        );
    }

    #[test]
    fn pretty_json_matches_json_stringify_with_four_spaces() {
        let v: Value = serde_json::from_str(r#"{"b":1,"a":[],"c":{},"d":["x"]}"#).unwrap();
        assert_eq!(
            pretty_json(&v),
            "{\n    \"b\": 1,\n    \"a\": [],\n    \"c\": {},\n    \"d\": [\n        \"x\"\n    ]\n}"
        );
    }
}
