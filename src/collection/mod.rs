//! devcontainer collections: the Features in `features/src` and the Templates in
//! `devcontainer-templates/src`, validated, packaged and published (`aiida-devc features|templates
//! validate|package|publish|docs`).
//!
//! The commands take the reference devcontainer CLI's positionals and flags, and produce what it
//! produces: the same tarball entries ([`package`]), the same manifests, annotations and tags
//! ([`crate::oci`], [`publish`]), and the collection artifact at `<registry>/<namespace>:latest`.
//! Everything is read, checked ([`metadata`]) and packaged before the first byte is pushed, so bad
//! input pushes nothing. Progress goes to stderr (a bar on a terminal, plain lines otherwise);
//! `--json` prints one JSON document on stdout for CI. [`docs`] writes each item's README.md.

pub mod bundle;
pub mod docs;
pub mod metadata;
pub mod package;
pub mod publish;

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, Subcommand};
use serde_json::{Value, json};

use crate::oci::auth::AuthEnv;
use crate::oci::{Artifact, Registry};

/// Which collection a command works on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CollectionKind {
    Features,
    Templates,
}

impl CollectionKind {
    /// `feature` / `template`
    pub fn singular(self) -> &'static str {
        match self {
            CollectionKind::Features => "feature",
            CollectionKind::Templates => "template",
        }
    }

    /// `features` / `templates`
    pub fn plural(self) -> &'static str {
        match self {
            CollectionKind::Features => "features",
            CollectionKind::Templates => "templates",
        }
    }

    /// `devcontainer-feature.json` / `devcontainer-template.json`
    pub fn metadata_file(self) -> &'static str {
        match self {
            CollectionKind::Features => "devcontainer-feature.json",
            CollectionKind::Templates => "devcontainer-template.json",
        }
    }
}

/// `aiida-devc features ...` and `aiida-devc templates ...`
#[derive(Debug, Subcommand)]
pub enum CollectionCommand {
    /// Check every metadata file (JSON with comments) against the spec; problems are printed as
    /// file:line:column.
    Validate(ValidateArgs),
    /// Package into devcontainer-<kind>-<id>.tgz files and devcontainer-collection.json.
    Package(PackageArgs),
    /// Package and push to an OCI registry, with the tags X, X.Y, X.Y.Z and latest, and the
    /// collection at <registry>/<namespace>:latest.
    Publish(PublishArgs),
    /// Write each item's README.md from its metadata and NOTES.md; with --check, write nothing
    /// and fail when a README is not current.
    Docs(DocsArgs),
}

/// Options every subcommand shares.
#[derive(Debug, Args)]
pub struct CommonArgs {
    /// The src folder of a collection (one sub-folder per item), or one item's folder.
    #[arg(default_value = ".")]
    pub target: PathBuf,
    /// Print one JSON document on stdout instead of text (for CI).
    #[arg(long)]
    pub json: bool,
    /// Features only: a prebuilt static aiida-init to bundle into the aiida-services Feature, one
    /// per platform (repeat, or separate with commas; the platform is read from each file). The
    /// platforms not given are built from this project's sources with cargo.
    #[arg(
        long,
        value_name = "FILE",
        env = "AIIDA_DEVC_AIIDA_INIT",
        value_delimiter = ','
    )]
    pub aiida_init: Vec<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ValidateArgs {
    #[command(flatten)]
    pub common: CommonArgs,
}

#[derive(Debug, Args)]
pub struct PackageArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Where to write the packages (created as needed).
    #[arg(short = 'o', long, default_value = "./output")]
    pub output_folder: PathBuf,
    /// Delete the output folder first.
    #[arg(short = 'f', long)]
    pub force_clean_output_folder: bool,
}

#[derive(Debug, Args)]
pub struct PublishArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// The OCI registry (host[:port]); plain http is used for localhost only.
    #[arg(short = 'r', long, default_value = "ghcr.io")]
    pub registry: String,
    /// The collection's namespace, for example aiidateam/devcontainer-features.
    #[arg(short = 'n', long)]
    pub namespace: String,
}

#[derive(Debug, Args)]
pub struct DocsArgs {
    /// The src folder of a collection (one sub-folder per item), or one item's folder.
    #[arg(default_value = ".")]
    pub target: PathBuf,
    /// The registry the usage examples refer to.
    #[arg(short = 'r', long, default_value = "ghcr.io")]
    pub registry: String,
    /// The namespace the usage examples refer to [default: aiidateam/devcontainer-features or
    /// aiidateam/devcontainer-templates].
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
    /// Write nothing; fail, naming each file, when a README differs from what would be written.
    #[arg(long)]
    pub check: bool,
    /// Print one JSON document on stdout instead of text (for CI).
    #[arg(long)]
    pub json: bool,
}

impl CollectionCommand {
    pub fn run(self, kind: CollectionKind, host: &crate::host::Host) -> anyhow::Result<()> {
        match self {
            CollectionCommand::Validate(args) => validate(kind, &args),
            CollectionCommand::Package(args) => package_command(kind, &args),
            CollectionCommand::Publish(args) => {
                let ca = host.ca.bundle().cloned();
                publish_command(kind, &args, ca.as_ref())
            }
            CollectionCommand::Docs(args) => docs_command(kind, &args),
        }
    }
}

/// Problems found in the sources; the command fails with them listed.
#[derive(Debug)]
pub struct InvalidSources(pub Vec<metadata::Problem>);

impl std::fmt::Display for InvalidSources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for problem in &self.0 {
            writeln!(f, "{problem}")?;
        }
        write!(
            f,
            "{} problem(s) found; nothing was packaged or pushed",
            self.0.len()
        )
    }
}

impl std::error::Error for InvalidSources {}

/// Discover and check; with `--json`, problems are also printed as JSON.
fn load(kind: CollectionKind, common: &CommonArgs) -> anyhow::Result<package::Discovery> {
    match package::discover(&common.target, kind)? {
        Ok(discovery) => {
            for note in &discovery.skipped {
                eprintln!("note: {note}");
            }
            Ok(discovery)
        }
        Err(problems) => {
            if common.json {
                let list: Vec<Value> = problems
                    .iter()
                    .map(|p| json!({"file": p.file, "line": p.line, "column": p.column, "message": p.message}))
                    .collect();
                println!("{}", json!({"valid": false, "problems": list}));
            }
            Err(InvalidSources(problems).into())
        }
    }
}

fn validate(kind: CollectionKind, args: &ValidateArgs) -> anyhow::Result<()> {
    let discovery = load(kind, &args.common)?;
    let ids: Vec<&str> = discovery.sources.iter().map(package::Source::id).collect();
    if args.common.json {
        println!("{}", json!({"valid": true, kind.plural(): ids}));
    } else {
        println!("{} {} valid: {}", ids.len(), kind.plural(), ids.join(", "));
    }
    Ok(())
}

fn docs_command(kind: CollectionKind, args: &DocsArgs) -> anyhow::Result<()> {
    let common = CommonArgs {
        target: args.target.clone(),
        json: args.json,
        aiida_init: Vec::new(),
    };
    let discovery = load(kind, &common)?;
    let problems: Vec<metadata::Problem> = discovery.sources.iter().flat_map(docs::check).collect();
    if !problems.is_empty() {
        return Err(InvalidSources(problems).into());
    }
    let namespace = args
        .namespace
        .as_deref()
        .unwrap_or(docs::default_namespace(kind));
    publish::check_namespace(namespace).map_err(anyhow::Error::msg)?;
    let readmes = discovery
        .sources
        .iter()
        .map(|source| docs::render(source, kind, &args.registry, namespace))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let stale: Vec<PathBuf> = docs::stale(&readmes)
        .into_iter()
        .map(Path::to_owned)
        .collect();
    if args.check {
        if args.json {
            println!("{}", json!({"current": stale.is_empty(), "stale": stale}));
        }
        if !stale.is_empty() {
            let list: Vec<String> = stale.iter().map(|p| p.display().to_string()).collect();
            anyhow::bail!(
                "{} README(s) not current: {}\nregenerate with: aiida-devc {} docs {}",
                stale.len(),
                list.join(", "),
                kind.plural(),
                args.target.display()
            );
        }
        if !args.json {
            println!("{} README(s) current", readmes.len());
        }
        return Ok(());
    }
    for readme in &readmes {
        if stale.contains(&readme.path) {
            write_atomically(&readme.path, readme.text.as_bytes())?;
            if !args.json {
                println!("wrote {}", readme.path.display());
            }
        } else if !args.json {
            println!("unchanged {}", readme.path.display());
        }
    }
    if args.json {
        let all: Vec<&Path> = readmes.iter().map(|r| r.path.as_path()).collect();
        println!("{}", json!({"readmes": all, "written": stale}));
    }
    Ok(())
}

/// Discover, check, bundle binaries, and package everything in memory.
fn package_all(
    kind: CollectionKind,
    common: &CommonArgs,
) -> anyhow::Result<(package::Discovery, Vec<package::Package>)> {
    let discovery = load(kind, common)?;
    if kind == CollectionKind::Features {
        for source in &discovery.sources {
            bundle::prepare(source, &common.aiida_init, !common.json)?;
        }
    }
    let packages = discovery
        .sources
        .iter()
        .map(|source| package::package(source, kind))
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok((discovery, packages))
}

fn package_command(kind: CollectionKind, args: &PackageArgs) -> anyhow::Result<()> {
    let (discovery, packages) = package_all(kind, &args.common)?;
    let out = &args.output_folder;
    if args.force_clean_output_folder && out.exists() {
        std::fs::remove_dir_all(out)
            .with_context(|| format!("cannot clean the output folder {}", out.display()))?;
    }
    std::fs::create_dir_all(out)
        .with_context(|| format!("cannot create the output folder {}", out.display()))?;
    let mut written = Vec::new();
    for package in &packages {
        let path = out.join(&package.file_name);
        write_atomically(&path, &package.tar)?;
        written.push(json!({
            "id": package.id, "version": package.version, "file": path,
            "digest": crate::oci::artifact::sha256_digest(&package.tar), "size": package.tar.len(),
        }));
        if !args.common.json {
            println!(
                "packaged {} {} -> {}",
                package.id,
                package.version,
                path.display()
            );
        }
    }
    let collection_path = out.join("devcontainer-collection.json");
    write_atomically(
        &collection_path,
        package::collection_json(kind, &packages).as_bytes(),
    )?;
    if args.common.json {
        println!(
            "{}",
            json!({"output": out, "single": discovery.single, kind.plural(): written, "collection": collection_path})
        );
    } else {
        println!("wrote {}", collection_path.display());
    }
    Ok(())
}

fn write_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let partial = path.with_extension("partial");
    std::fs::write(&partial, bytes)
        .with_context(|| format!("cannot write {}", partial.display()))?;
    std::fs::rename(&partial, path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// Progress on stderr: an indicatif bar on a terminal, plain lines otherwise, nothing with `--json`.
struct Progress {
    bar: Option<indicatif::ProgressBar>,
    plain: bool,
}

impl Progress {
    fn new(steps: u64, json: bool) -> Progress {
        use std::io::IsTerminal;
        if json {
            return Progress {
                bar: None,
                plain: false,
            };
        }
        if std::io::stderr().is_terminal() {
            let bar = indicatif::ProgressBar::new(steps);
            bar.set_style(
                indicatif::ProgressStyle::with_template("{spinner} [{bar:30}] {pos}/{len} {msg}")
                    .expect("a valid template")
                    .progress_chars("=> "),
            );
            Progress {
                bar: Some(bar),
                plain: false,
            }
        } else {
            Progress {
                bar: None,
                plain: true,
            }
        }
    }

    fn step(&self, message: String) {
        if let Some(bar) = &self.bar {
            bar.set_message(message);
            bar.inc(1);
        } else if self.plain {
            eprintln!("{message}");
        }
    }

    fn note(&self, message: String) {
        if let Some(bar) = &self.bar {
            bar.println(message);
        } else if self.plain {
            eprintln!("{message}");
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

fn publish_command(
    kind: CollectionKind,
    args: &PublishArgs,
    ca: Option<&crate::host::ca::CaBundle>,
) -> anyhow::Result<()> {
    publish::check_registry(&args.registry).map_err(anyhow::Error::msg)?;
    publish::check_namespace(&args.namespace).map_err(anyhow::Error::msg)?;
    let (_discovery, packages) = package_all(kind, &args.common)?;
    let registry = Registry::connect(&args.registry, &AuthEnv::from_process(), ca)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let result = runtime.block_on(publish_all(kind, args, &registry, &packages))?;
    if args.common.json {
        println!("{}", Value::Object(result));
    }
    Ok(())
}

/// Publish every package, then the collection that lists them; report what was published
/// (the `--json` result, keyed by id).
async fn publish_all(
    kind: CollectionKind,
    args: &PublishArgs,
    registry: &Registry,
    packages: &[package::Package],
) -> anyhow::Result<serde_json::Map<String, Value>> {
    let namespace = &args.namespace;
    // Steps: per package a tag lookup, two blobs and up to four tags; then the collection.
    let progress = Progress::new(packages.len() as u64 * 7 + 3, args.common.json);
    let mut result = serde_json::Map::new();
    for package in packages {
        let entry = publish_package(kind, namespace, registry, package, &progress).await?;
        result.insert(package.id.clone(), Value::Object(entry));
    }
    publish_collection(kind, namespace, registry, packages, &progress).await?;
    progress.finish();
    if !args.common.json {
        print_summary(namespace, registry, packages, &result);
    }
    Ok(result)
}

/// Push one package under its id and its legacy ids; its entry in the result (empty when that
/// version was already published).
async fn publish_package(
    kind: CollectionKind,
    namespace: &str,
    registry: &Registry,
    package: &package::Package,
    progress: &Progress,
) -> anyhow::Result<serde_json::Map<String, Value>> {
    let version = semver::Version::parse(&package.version).with_context(|| {
        format!(
            "version '{}' of {} is not a semantic version",
            package.version, package.id
        )
    })?;
    let artifact = Artifact::package(
        package.tar.clone(),
        &package.file_name,
        &package.metadata,
        registry.host(),
        kind.singular(),
    );
    let repository = format!("{namespace}/{}", package.id);
    let mut entry = serde_json::Map::new();
    match push_versioned(registry, &repository, &version, &artifact, progress).await? {
        Some(tags) => {
            entry.insert("publishedTags".into(), json!(tags));
            entry.insert("digest".into(), json!(artifact.manifest.digest()));
            entry.insert("version".into(), json!(package.version));
            let legacy_published =
                publish_legacy_ids(namespace, registry, package, &version, &artifact, progress)
                    .await?;
            if !legacy_published.is_empty() {
                entry.insert("publishedLegacyIds".into(), json!(legacy_published));
            }
        }
        None => progress.note(format!(
            "{} {} is already published at {}/{repository}; skipped",
            package.id,
            package.version,
            registry.host()
        )),
    }
    Ok(entry)
}

/// Push the same artifact under each of the package's `legacyIds`; the ids it was pushed to.
async fn publish_legacy_ids(
    namespace: &str,
    registry: &Registry,
    package: &package::Package,
    version: &semver::Version,
    artifact: &Artifact,
    progress: &Progress,
) -> anyhow::Result<Vec<String>> {
    let mut legacy_published = Vec::new();
    for legacy in package
        .metadata
        .get("legacyIds")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let Some(legacy) = legacy.as_str() else {
            continue;
        };
        let legacy_repository = format!("{namespace}/{legacy}");
        if push_versioned(registry, &legacy_repository, version, artifact, progress)
            .await?
            .is_some()
        {
            legacy_published.push(legacy.to_owned());
        }
    }
    Ok(legacy_published)
}

/// Push the collection metadata (`devcontainer-collection.json`) to `<namespace>:latest`.
async fn publish_collection(
    kind: CollectionKind,
    namespace: &str,
    registry: &Registry,
    packages: &[package::Package],
    progress: &Progress,
) -> anyhow::Result<()> {
    let collection = Artifact::collection(
        package::collection_json(kind, packages).into_bytes(),
        registry.host(),
    );
    // The same collection there already (a release run again): nothing to push.
    let there = registry.manifest(namespace, "latest").await?;
    if there.as_deref() == Some(collection.manifest.to_bytes().as_slice()) {
        progress.step(format!(
            "the collection at {}/{namespace}:latest is unchanged",
            registry.host()
        ));
        progress.step(format!("{}/{namespace}:latest kept", registry.host()));
        return Ok(());
    }
    progress.step(format!(
        "uploading the collection to {}/{namespace}",
        registry.host()
    ));
    registry.push_blobs(namespace, &collection).await?;
    registry
        .push_manifest(namespace, "latest", &collection)
        .await?;
    progress.step(format!("tagged {}/{namespace}:latest", registry.host()));
    Ok(())
}

/// One line per package (published with its tags, or skipped), then the collection.
fn print_summary(
    namespace: &str,
    registry: &Registry,
    packages: &[package::Package],
    result: &serde_json::Map<String, Value>,
) {
    for package in packages {
        match result[&package.id].get("publishedTags") {
            Some(tags) => {
                let tags: Vec<&str> = tags
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter_map(Value::as_str)
                    .collect();
                println!(
                    "published {}/{namespace}/{} {} as {}",
                    registry.host(),
                    package.id,
                    package.version,
                    tags.join(", ")
                );
            }
            None => println!(
                "skipped {}/{namespace}/{} {} (already published)",
                registry.host(),
                package.id,
                package.version
            ),
        }
    }
    println!(
        "published the collection {}/{namespace}:latest",
        registry.host()
    );
}

/// Push one version to one repository with the tags [`publish::tags_to_push`] chooses; `None`
/// when that version is already there.
async fn push_versioned(
    registry: &Registry,
    repository: &str,
    version: &semver::Version,
    artifact: &Artifact,
    progress: &Progress,
) -> anyhow::Result<Option<Vec<String>>> {
    progress.step(format!(
        "reading the tags of {}/{repository}",
        registry.host()
    ));
    let published = registry.list_tags(repository).await?;
    let Some(tags) = publish::tags_to_push(version, &published) else {
        return Ok(None);
    };
    progress.step(format!(
        "uploading {} ({} bytes) to {}/{repository}",
        artifact.title(),
        artifact.layer.len(),
        registry.host()
    ));
    registry.push_blobs(repository, artifact).await?;
    // The exact version first: if anything fails later, no floating tag points at a version
    // that was not pushed.
    let mut order = tags.clone();
    order.sort_by_key(|t| *t != version.to_string());
    for tag in &order {
        registry.push_manifest(repository, tag, artifact).await?;
        progress.step(format!("tagged {}/{repository}:{tag}", registry.host()));
    }
    Ok(Some(tags))
}
