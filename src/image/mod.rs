//! Image builds: `aiida-devc images build` drives `Dockerfiles/` through the Docker Engine API.
//!
//! The chain is `BASE_IMAGE` (default `debian:bookworm`) → `aiida-core-base` →
//! `aiida-core-with-services`, each built in order through the engine's classic builder (no
//! BuildKit needed), with:
//! * build args: the aiida-core version, the base image, opt-in conda (Miniforge);
//! * the CA option (`--ca-cert`): the bundle goes into the build context for the stages that
//!   download over https, never into the final image;
//! * aiida-init compiled on the host for the target platform
//!   ([`crate::host::aiida_init`]) and put in the context as `build/aiida-init`;
//! * the OCI labels and `devcontainer.metadata` ([`labels`]);
//! * tags in upstream's scheme ([`naming`]), read back from the built image.
//!
//! The platform (`--platform`) and the registry/organisation (`--registry`, `--organization`)
//! are parameters, so that multi-architecture builds and pushes can be added on top.

pub mod context;
pub mod driver;
pub mod labels;
pub mod naming;

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};

use crate::platform::Platform;
use naming::{ImageKind, Repository};

/// The aiida-core release the images get unless `--aiida-version` says otherwise.
pub const DEFAULT_AIIDA_VERSION: &str = "2.9.4";
/// The base image of `aiida-core-base`.
pub const DEFAULT_BASE_IMAGE: &str = "debian:bookworm";

/// `aiida-devc images ...`
#[derive(Debug, Subcommand)]
pub enum ImagesCommand {
    /// Build aiida-core-base and aiida-core-with-services (in that order) and tag them.
    Build(BuildArgs),
}

#[derive(Debug, Args)]
pub struct BuildArgs {
    /// Build only these images (a with-services build uses the base image already built with the
    /// same aiida-core version).
    #[arg(long = "image", value_enum, value_name = "IMAGE")]
    pub images: Vec<ImageKind>,
    /// aiida-core release to install from PyPI.
    #[arg(long, default_value = DEFAULT_AIIDA_VERSION, env = "AIIDA_DEVC_AIIDA_VERSION")]
    pub aiida_version: String,
    /// Base image of aiida-core-base (Debian or Ubuntu; ubuntu:24.04 is supported but not tested).
    #[arg(long, default_value = DEFAULT_BASE_IMAGE, env = "AIIDA_DEVC_BASE_IMAGE")]
    pub base_image: String,
    /// Registry host to name the images under, e.g. ghcr.io or localhost:5000 (none: Docker Hub
    /// style names).
    #[arg(long, env = "AIIDA_DEVC_REGISTRY")]
    pub registry: Option<String>,
    /// Organisation (namespace) of the image names.
    #[arg(long, default_value = "aiidateam", env = "AIIDA_DEVC_ORGANIZATION")]
    pub organization: String,
    /// Target platform (linux/amd64, linux/arm64); default: this machine's.
    #[arg(long)]
    pub platform: Option<String>,
    /// Also install conda and mamba (Miniforge, in /opt/conda); needs conda-forge and GitHub to
    /// be reachable.
    #[arg(long)]
    pub with_conda: bool,
    /// Do not move the `latest` tag.
    #[arg(long)]
    pub no_latest: bool,
    /// Build without the engine's layer cache.
    #[arg(long)]
    pub no_cache: bool,
    /// Use this aiida-init binary instead of compiling one (it must match the platform).
    #[arg(long, value_name = "FILE")]
    pub init_binary: Option<PathBuf>,
    /// The aiida-devc source tree (Dockerfiles/ and the aiida-init crate).
    #[arg(long, value_name = "DIR", default_value = env!("CARGO_MANIFEST_DIR"))]
    pub source: PathBuf,
    /// Show every line of the builder's output.
    #[arg(long, short)]
    pub verbose: bool,
}

impl ImagesCommand {
    pub fn run(self, host: &crate::host::HostOptions) -> anyhow::Result<()> {
        match self {
            ImagesCommand::Build(args) => {
                let rt = tokio::runtime::Runtime::new()?;
                rt.block_on(build(args, host)).map(|built| {
                    for image in built {
                        println!("{image}");
                    }
                })
            }
        }
    }
}

/// Everything one `images build` made: per image, its name and tags.
#[derive(Debug)]
pub struct BuiltImage {
    pub name: String,
    pub tags: Vec<String>,
    pub id: String,
}

impl std::fmt::Display for BuiltImage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let tags: Vec<String> = self
            .tags
            .iter()
            .map(|t| format!("{}:{t}", self.name))
            .collect();
        write!(f, "{} ({})", tags.join(" "), &self.id)
    }
}

/// Build the requested images in chain order.
pub async fn build(
    args: BuildArgs,
    host: &crate::host::HostOptions,
) -> anyhow::Result<Vec<BuiltImage>> {
    naming::check_aiida_version(&args.aiida_version)?;
    let repo = Repository::new(args.registry.as_deref(), &args.organization)?;
    let mut kinds = if args.images.is_empty() {
        ImageKind::ALL.to_vec()
    } else {
        args.images.clone()
    };
    kinds.sort();
    kinds.dedup();
    let platform = match &args.platform {
        Some(text) => Platform::parse(text)?,
        None => Platform::host(),
    };
    let dockerfiles = args.source.join("Dockerfiles");
    let ca = host.ca_bundle()?;
    let docker = crate::host::docker::connect().await?;

    let init = if kinds.contains(&ImageKind::Base) {
        let path = match &args.init_binary {
            Some(path) => path.clone(),
            None => crate::host::aiida_init::build_static(&args.source, platform, true)?,
        };
        Some(
            std::fs::read(&path)
                .with_context(|| format!("cannot read the aiida-init binary {}", path.display()))?,
        )
    } else {
        None
    };
    if let Some(ca) = &ca {
        eprintln!(
            "CA bundle: {} certificates from {} (build stages only)",
            ca.len(),
            ca.path.display()
        );
    }

    let source = labels::SourceInfo::from_checkout(&args.source);
    let version_tag = format!("aiida-{}", args.aiida_version);
    let mut built = Vec::new();
    for kind in kinds {
        let name = repo.image(kind);
        let (base, generated) = match kind {
            ImageKind::Base => {
                let generated = vec![
                    context::Generated {
                        path: "build/aiida-init".into(),
                        contents: init.clone().expect("compiled above"),
                        mode: 0o755,
                    },
                    context::Generated {
                        path: "build/ca.pem".into(),
                        contents: ca
                            .as_ref()
                            .map(|c| c.pem.clone().into_bytes())
                            .unwrap_or_default(),
                        mode: 0o644,
                    },
                ];
                (args.base_image.clone(), generated)
            }
            ImageKind::WithServices => {
                let base = repo.image(ImageKind::Base).with_tag(&version_tag);
                if docker.inspect_image(&base).await.is_err() {
                    anyhow::bail!(
                        "{base} is missing: build it first (aiida-devc images build --image base)"
                    );
                }
                (base, Vec::new())
            }
        };
        let dir = dockerfiles.join(kind.name());
        let tarball = context::archive(&dir, &generated)?;
        let mut build_args = HashMap::from([("BASE_IMAGE".to_owned(), base.clone())]);
        if kind == ImageKind::Base {
            build_args.insert("AIIDA_VERSION".into(), args.aiida_version.clone());
            build_args.insert("WITH_CONDA".into(), args.with_conda.to_string());
        }
        let first_tag = name.with_tag(&version_tag);
        let id = driver::build(
            &docker,
            driver::BuildRequest {
                display: kind.name(),
                tag: &first_tag,
                context: tarball,
                build_args,
                labels: labels::labels(kind, &args.aiida_version, &base, &source),
                platform: Some(platform.docker()),
                no_cache: args.no_cache,
                verbose: args.verbose,
            },
        )
        .await?;
        let versions = driver::probe_versions(&docker, &first_tag, &args.aiida_version).await?;
        let mut tags = naming::tags(&versions, !args.no_latest);
        if kind == ImageKind::Base {
            tags.retain(|t| !t.starts_with("postgresql-"));
        }
        driver::tag(&docker, &first_tag, &name.0, &tags).await?;
        built.push(BuiltImage {
            name: name.0.clone(),
            tags,
            id,
        });
    }
    Ok(built)
}
