//! Image builds: `aiida-devc images build` drives `Dockerfiles/` through the Docker Engine API.
//!
//! The chain is `BASE_IMAGE` (default `debian:bookworm`) → `aiida-core-base` →
//! `aiida-core-with-services`, each built in order through the engine's classic builder (no
//! BuildKit needed). aiida-core-with-services starts from aiida-core-base's `system` stage
//! (`system_stage`) and copies the rest of aiida-core-base after its services, so that
//! aiida-core's environment, what each release changes, is one of its last layers. With:
//! * build args: the aiida-core version, the base image, opt-in conda (Miniforge);
//! * the CA option (`--ca-cert`): the bundle goes into the build context for the stages that
//!   download over https, never into the final image;
//! * aiida-init compiled on the host for the target platform
//!   ([`crate::host::aiida_init`]) and put in the context as `build/aiida-init`;
//! * for aiida-core-with-services, RabbitMQ's Erlang emulator without the JIT, built (or
//!   cross-compiled) on the host's platform from Debian's source ([`erlang_interpreter`]) and put
//!   in the context under `build/erlang-interpreter/`;
//! * the OCI labels and `devcontainer.metadata` ([`labels`]);
//! * tags in upstream's scheme ([`naming`]), read back from the built image.
//!
//! `--platform LIST` builds the chain once per platform; another platform than the host's runs
//! its RUN steps under qemu, on a base image whose config names that architecture, and is tagged
//! with the architecture as a suffix ([`naming::local_tag`]). `--push` then runs the release gate
//! ([`smoke`]) for every platform and publishes ([`publish`]).

pub mod context;
pub mod digests;
pub mod driver;
pub mod labels;
pub mod layers;
pub mod naming;
pub mod publish;
pub mod smoke;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

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
    /// Build aiida-core-base and aiida-core-with-services (in that order) for each platform and
    /// tag them; with --push, smoke-test every platform and publish one OCI image index per tag.
    Build(BuildArgs),
    /// Smoke-test and publish images already built by `images build` (same names and platforms).
    Push(PushArgs),
    /// Write one OCI image index per tag from the digests that each platform's
    /// `images build --push-by-digest --digests FILE` pushed (one runner per platform).
    Merge(MergeArgs),
}

/// Which images, of which aiida-core release, named how, for which platforms: what `images build`
/// and `images push` share.
#[derive(Debug, Clone, Args)]
pub struct ImageSelection {
    /// Only these images (default: both; a with-services build uses the base image already
    /// built with the same aiida-core version).
    #[arg(long = "image", value_enum, value_name = "IMAGE")]
    pub images: Vec<ImageKind>,
    /// aiida-core release to install from PyPI (for `push`: the one the images were built with).
    #[arg(long, default_value = DEFAULT_AIIDA_VERSION, env = "AIIDA_DEVC_AIIDA_VERSION")]
    pub aiida_version: String,
    /// Registry host to name the images under and to push to, e.g. ghcr.io or localhost:5000
    /// (none: Docker Hub style names).
    #[arg(long, env = "AIIDA_DEVC_REGISTRY")]
    pub registry: Option<String>,
    /// Organisation (namespace) of the image names.
    #[arg(long, default_value = naming::ORGANIZATION, env = "AIIDA_DEVC_ORGANIZATION")]
    pub organization: String,
    /// Target platforms, comma-separated (linux/amd64, linux/arm64); default: this machine's.
    /// Another platform than the host's is built under qemu and tagged with an architecture
    /// suffix (aiida-2.9.4-arm64).
    #[arg(long, value_name = "LIST")]
    pub platform: Option<String>,
}

impl ImageSelection {
    /// The images, in chain order (base first), each once.
    pub fn kinds(&self) -> Vec<ImageKind> {
        let mut kinds = if self.images.is_empty() {
            ImageKind::ALL.to_vec()
        } else {
            self.images.clone()
        };
        kinds.sort();
        kinds.dedup();
        kinds
    }

    /// The platforms `--platform` lists (default: the host's).
    pub fn platforms(&self) -> anyhow::Result<Vec<Platform>> {
        match &self.platform {
            Some(text) => Platform::parse_list(text),
            None => Ok(vec![Platform::host()]),
        }
    }

    /// The repository the images are named under (after checking the aiida-core version).
    pub fn repository(&self) -> anyhow::Result<Repository> {
        naming::check_aiida_version(&self.aiida_version)?;
        Repository::new(self.registry.as_deref(), &self.organization)
    }
}

#[derive(Debug, Args)]
pub struct BuildArgs {
    #[command(flatten)]
    pub selection: ImageSelection,
    /// Base image of aiida-core-base (Debian or Ubuntu; ubuntu:24.04 is supported but not tested).
    /// For another platform than the host's, its tag gets the architecture as a suffix
    /// (debian:bookworm-arm64, made by `scripts/bootstrap.sh --arm64`).
    #[arg(long, default_value = DEFAULT_BASE_IMAGE, env = "AIIDA_DEVC_BASE_IMAGE")]
    pub base_image: String,
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
    /// Use this aiida-init binary instead of compiling one (only with a single platform, which
    /// it must match).
    #[arg(long, value_name = "FILE")]
    pub init_binary: Option<PathBuf>,
    /// The aiida-devc checkout (Dockerfiles/ and the aiida-init crate) [default: the one this
    /// aiida-devc was built from, else the current directory or a parent].
    #[arg(long, value_name = "DIR")]
    pub source: Option<PathBuf>,
    /// Show every line of the builder's output.
    #[arg(long, short)]
    pub verbose: bool,
    /// After the build: smoke-test each platform, then push every platform's image and one OCI
    /// image index per tag to --registry.
    #[arg(long)]
    pub push: bool,
    #[command(flatten)]
    pub by_digest: ByDigestOptions,
    #[command(flatten)]
    pub publish: PublishOptions,
}

/// One runner per platform: push by digest now, merge the indexes later (`images merge`).
#[derive(Debug, Clone, Default, Args)]
pub struct ByDigestOptions {
    /// Smoke-test each platform, then push its images under the per-platform tag only
    /// (aiida-X.Y.Z-ARCH) and write no index: `images merge` writes the indexes later from
    /// every platform's digests.
    #[arg(long)]
    pub push_by_digest: bool,
    /// With --push-by-digest: write what was pushed (JSON) to FILE, for `images merge --digests`.
    #[arg(long, value_name = "FILE", requires = "push_by_digest")]
    pub digests: Option<PathBuf>,
    /// With --push-by-digest: push the same images to this registry too (repeatable), after the
    /// one release gate.
    #[arg(long, value_name = "HOST", requires = "push_by_digest")]
    pub also_registry: Vec<String>,
}

impl ByDigestOptions {
    /// The plan of a push by digest, or `None` without --push-by-digest.
    fn plan(
        &self,
        selection: &ImageSelection,
        publish: &PublishOptions,
    ) -> anyhow::Result<Option<publish::Plan>> {
        if !self.push_by_digest {
            return Ok(None);
        }
        anyhow::ensure!(
            publish.tags.is_empty(),
            "--tag names an index tag: give it to `images merge`, not to --push-by-digest"
        );
        Ok(Some(
            publish::Plan::new(selection, publish)?.with_mirrors(&self.also_registry)?,
        ))
    }
}

#[derive(Debug, Args)]
pub struct MergeArgs {
    /// Registry host the platform jobs pushed to (ghcr.io, localhost:5000).
    #[arg(long, env = "AIIDA_DEVC_REGISTRY")]
    pub registry: String,
    /// Organisation (namespace) of the image names.
    #[arg(long, default_value = naming::ORGANIZATION, env = "AIIDA_DEVC_ORGANIZATION")]
    pub organization: String,
    /// The digests files of the platform jobs (`images build --push-by-digest --digests FILE`).
    #[arg(long, value_name = "FILE", num_args = 1.., required = true)]
    pub digests: Vec<PathBuf>,
    /// The platforms every index must list, comma-separated: a merge that misses one refuses
    /// and writes nothing.
    #[arg(long, value_name = "LIST", default_value = "linux/amd64,linux/arm64")]
    pub platform: String,
    #[command(flatten)]
    pub publish: PublishOptions,
}

impl MergeArgs {
    async fn run(&self, host: &crate::host::Host) -> anyhow::Result<publish::Published> {
        let files = self
            .digests
            .iter()
            .map(|path| Ok((path.clone(), digests::Digests::read(path)?)))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let selection = ImageSelection {
            images: Vec::new(),
            aiida_version: files[0].1.aiida_version.clone(),
            registry: Some(self.registry.clone()),
            organization: self.organization.clone(),
            platform: Some(self.platform.clone()),
        };
        publish::Plan::new(&selection, &self.publish)?
            .merge(&files, host)
            .await
    }
}

/// What a publication takes besides the images (shared by `images build --push` and
/// `images push`).
#[derive(Debug, Clone, Default, Args)]
pub struct PublishOptions {
    /// One more tag to publish (repeatable), e.g. edge or pr-123.
    #[arg(long = "tag", value_name = "NAME")]
    pub tags: Vec<String>,
    /// Print what was pushed (tags, digests, platforms) as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct PushArgs {
    #[command(flatten)]
    pub selection: ImageSelection,
    #[command(flatten)]
    pub by_digest: ByDigestOptions,
    #[command(flatten)]
    pub publish: PublishOptions,
}

impl ImagesCommand {
    pub fn run(self, host: &crate::host::Host) -> anyhow::Result<()> {
        let rt = tokio::runtime::Runtime::new()?;
        match self {
            ImagesCommand::Build(args) => rt.block_on(async {
                let by_digest = args.by_digest.plan(&args.selection, &args.publish)?;
                anyhow::ensure!(
                    !(args.push && by_digest.is_some()),
                    "--push and --push-by-digest exclude each other: one pushes indexes, the other digests for `images merge`"
                );
                let plan = if args.push {
                    Some(publish::Plan::new(&args.selection, &args.publish)?)
                } else if !args.publish.tags.is_empty() && by_digest.is_none() {
                    anyhow::bail!("--tag names a tag to publish: it needs --push");
                } else {
                    None
                };
                let json = args.publish.json;
                let digests_file = args.by_digest.digests.clone();
                let built = build(args, host).await?;
                if !json {
                    for image in &built {
                        println!("{image}");
                    }
                }
                if let Some(plan) = plan {
                    let docker = crate::host::docker::connect().await?;
                    plan.run(&docker, host).await?;
                }
                if let Some(plan) = by_digest {
                    let docker = crate::host::docker::connect().await?;
                    plan.run_by_digest(&docker, host, digests_file.as_deref())
                        .await?;
                }
                anyhow::Ok(())
            }),
            ImagesCommand::Push(args) => rt.block_on(async {
                let docker = crate::host::docker::connect().await?;
                match args.by_digest.plan(&args.selection, &args.publish)? {
                    Some(plan) => plan
                        .run_by_digest(&docker, host, args.by_digest.digests.as_deref())
                        .await
                        .map(|_| ()),
                    None => publish::Plan::new(&args.selection, &args.publish)?
                        .run(&docker, host)
                        .await
                        .map(|_| ()),
                }
            }),
            ImagesCommand::Merge(args) => rt.block_on(args.run(host)).map(|_| ()),
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

/// Build the requested images in chain order, for each platform in turn.
pub async fn build(args: BuildArgs, host: &crate::host::Host) -> anyhow::Result<Vec<BuiltImage>> {
    let repo = args.selection.repository()?;
    let kinds = args.selection.kinds();
    let platforms = args.selection.platforms()?;
    if args.init_binary.is_some() && platforms.len() > 1 {
        anyhow::bail!(
            "--init-binary is for one platform; --platform lists {}",
            platforms.len()
        );
    }
    let source = crate::host::aiida_init::checkout(
        args.source.as_deref(),
        "`aiida-devc images build`",
        "pass --source DIR",
    )?;
    let ca = host.ca.bundle().cloned();
    let docker = crate::host::docker::connect().await?;
    if let Some(ca) = &ca {
        eprintln!(
            "CA bundle: {} certificates from {} (build stages only)",
            ca.len(),
            ca.path.display()
        );
    }
    let mut built = Vec::new();
    for platform in platforms {
        built.extend(
            build_platform(
                &args,
                &source,
                &docker,
                &repo,
                &kinds,
                platform,
                ca.as_ref(),
            )
            .await?,
        );
    }
    Ok(built)
}

/// Build `kinds` for one platform, with the local names of [`naming::local_tag`].
async fn build_platform(
    args: &BuildArgs,
    source: &Path,
    docker: &crate::host::docker::Docker,
    repo: &Repository,
    kinds: &[ImageKind],
    platform: Platform,
    ca: Option<&crate::host::ca::CaBundle>,
) -> anyhow::Result<Vec<BuiltImage>> {
    let dockerfiles = source.join("Dockerfiles");
    let init = if kinds.contains(&ImageKind::Base) {
        let path = match &args.init_binary {
            Some(path) => path.clone(),
            None => crate::host::aiida_init::build_static(source, platform, true)?,
        };
        Some(
            std::fs::read(&path)
                .with_context(|| format!("cannot read the aiida-init binary {}", path.display()))?,
        )
    } else {
        None
    };

    let source = labels::SourceInfo::from_checkout(source);
    let version_tag = format!("aiida-{}", args.selection.aiida_version);
    let mut built = Vec::new();
    for &kind in kinds {
        let name = repo.image(kind);
        // The base image, the generated files of the context and the build args of each.
        let (base, generated, mut build_args) = match kind {
            ImageKind::Base => {
                let generated = vec![
                    context::Generated {
                        path: "build/aiida-init".into(),
                        contents: init.clone().expect("compiled above"),
                        mode: 0o755,
                    },
                    context::Generated {
                        path: "build/ca.pem".into(),
                        contents: ca.map(|c| c.pem.clone().into_bytes()).unwrap_or_default(),
                        mode: 0o644,
                    },
                ];
                let base = naming::local_base_image(&args.base_image, platform);
                check_base_platform(docker, &base, platform).await?;
                let build_args = HashMap::from([
                    (
                        "AIIDA_VERSION".to_owned(),
                        args.selection.aiida_version.clone(),
                    ),
                    ("WITH_CONDA".to_owned(), args.with_conda.to_string()),
                ]);
                (base, generated, build_args)
            }
            ImageKind::WithServices => {
                with_services_inputs(docker, &dockerfiles, args, repo, &version_tag, platform)
                    .await?
            }
        };
        let display = if platform == Platform::host() {
            kind.name().to_owned()
        } else {
            format!("{} ({platform})", kind.name())
        };
        let tarball = context::image_archive(&dockerfiles, kind.name(), &generated)?;
        build_args.insert("BASE_IMAGE".to_owned(), base.clone());
        let first_tag = name.with_tag(&naming::local_tag(&version_tag, platform));
        let id = driver::build(
            docker,
            driver::BuildRequest {
                display: &display,
                tag: Some(&first_tag),
                target: None,
                context: tarball,
                build_args,
                labels: labels::labels(kind, &args.selection.aiida_version, &base, &source),
                platform: Some(platform.docker()),
                no_cache: args.no_cache,
                verbose: args.verbose,
            },
        )
        .await?;
        check_base_platform(docker, &first_tag, platform).await?;
        let versions =
            driver::probe_versions(docker, &first_tag, &args.selection.aiida_version).await?;
        let mut tags = naming::tags(&versions, !args.no_latest);
        if kind == ImageKind::Base {
            tags.retain(|t| !t.starts_with("postgresql-"));
        }
        let tags: Vec<String> = tags
            .iter()
            .map(|t| naming::local_tag(t, platform))
            .collect();
        driver::tag(docker, &first_tag, &name.0, &tags).await?;
        built.push(BuiltImage {
            name: name.0.clone(),
            tags,
            id,
        });
    }
    Ok(built)
}

/// What aiida-core-with-services on `platform` is built from: aiida-core-base (which must have
/// been built), the generated files of its context (RabbitMQ's Erlang emulator), and its build
/// args: aiida-core-base's `system` stage and the erlang-base version of the emulator.
async fn with_services_inputs(
    docker: &crate::host::docker::Docker,
    dockerfiles: &Path,
    args: &BuildArgs,
    repo: &Repository,
    version_tag: &str,
    platform: Platform,
) -> anyhow::Result<(String, Vec<context::Generated>, HashMap<String, String>)> {
    let base = repo
        .image(ImageKind::Base)
        .with_tag(&naming::local_tag(version_tag, platform));
    if docker.inspect_image(&base).await.is_err() {
        anyhow::bail!(
            "{base} is missing: build it first (aiida-devc images build --image base --platform {platform})"
        );
    }
    let system = system_stage(docker, dockerfiles, args, &base, platform).await?;
    let (interpreter, erlang_version) =
        erlang_interpreter(docker, dockerfiles, args, platform).await?;
    let build_args = HashMap::from([
        ("SYSTEM_IMAGE".to_owned(), system),
        ("ERLANG_INTERPRETER_VERSION".to_owned(), erlang_version),
    ]);
    Ok((base, interpreter, build_args))
}

/// The folder of `Dockerfiles/` that builds RabbitMQ's Erlang emulator without the JIT.
pub const ERLANG_INTERPRETER: &str = "erlang-interpreter";

/// RabbitMQ's Erlang emulator without the JIT (`beam.emu`) for aiida-core-with-services on
/// `platform`, as files of its build context below `build/erlang-interpreter/`, and the
/// erlang-base version it was built from (see Dockerfiles/erlang-interpreter/Dockerfile). Built on the
/// host's own platform, from the host's base image, cross-compiled when `platform` is another:
/// a minute, where a build under qemu would take a quarter of an hour.
async fn erlang_interpreter(
    docker: &crate::host::docker::Docker,
    dockerfiles: &Path,
    args: &BuildArgs,
    platform: Platform,
) -> anyhow::Result<(Vec<context::Generated>, String)> {
    let host = Platform::host();
    let base = naming::local_base_image(&args.base_image, host);
    check_base_platform(docker, &base, host).await?;
    let display = format!("Erlang's interpreter for {platform}");
    let id = driver::build(
        docker,
        driver::BuildRequest {
            display: &display,
            tag: None,
            target: None,
            context: context::archive(&dockerfiles.join(ERLANG_INTERPRETER), &[], &[])?,
            build_args: HashMap::from([
                ("BASE_IMAGE".to_owned(), base),
                ("TARGET_ARCH".to_owned(), platform.debian_arch().to_owned()),
            ]),
            labels: HashMap::new(),
            platform: Some(host.docker()),
            no_cache: args.no_cache,
            verbose: args.verbose,
        },
    )
    .await?;
    let (version, files): (Vec<_>, Vec<_>) = crate::host::docker::copy_out(docker, &id, "/out")
        .await?
        .into_iter()
        .partition(|file| file.path == "erlang-version");
    let version = version
        .first()
        .map(|file| String::from_utf8_lossy(&file.contents).trim().to_owned())
        .filter(|v| !v.is_empty())
        .with_context(|| format!("{display}: its build wrote no /out/erlang-version"))?;
    let files = files
        .into_iter()
        .map(|file| context::Generated {
            path: format!("build/{ERLANG_INTERPRETER}/{}", file.path),
            contents: file.contents,
            mode: file.mode,
        })
        .collect();
    Ok((files, version))
}

/// The `system` stage of aiida-core-base (Debian's packages and the user, below aiida-core's
/// environment), which aiida-core-with-services is built on: its PostgreSQL and RabbitMQ then
/// come before aiida-core's environment, so that an image with a new aiida-core release changes
/// only the layers from that environment on. Built from the layer cache of aiida-core-base's own
/// build; fails unless its layers are the first ones of `base_image` (aiida-core-base built from
/// another base image or other sources).
async fn system_stage(
    docker: &crate::host::docker::Docker,
    dockerfiles: &Path,
    args: &BuildArgs,
    base_image: &str,
    platform: Platform,
) -> anyhow::Result<String> {
    let display = format!("{} system stage ({platform})", ImageKind::Base.name());
    let id = driver::build(
        docker,
        driver::BuildRequest {
            display: &display,
            tag: None,
            target: Some("system"),
            context: context::image_archive(dockerfiles, ImageKind::Base.name(), &[])?,
            build_args: HashMap::from([(
                "BASE_IMAGE".to_owned(),
                naming::local_base_image(&args.base_image, platform),
            )]),
            labels: HashMap::new(),
            platform: Some(platform.docker()),
            // Never --no-cache: these must be the very layers of aiida-core-base's build.
            no_cache: false,
            verbose: args.verbose,
        },
    )
    .await?;
    let layers = |image: String| async move {
        let inspect = docker
            .inspect_image(&image)
            .await
            .with_context(|| format!("cannot inspect {image}"))?;
        anyhow::Ok(inspect.root_fs.and_then(|r| r.layers).unwrap_or_default())
    };
    let (system, base) = (
        layers(id.clone()).await?,
        layers(base_image.to_owned()).await?,
    );
    if system.is_empty() || !base.starts_with(&system) {
        anyhow::bail!(
            "{base_image} was not built on this checkout's system stage (another --base-image, or \
             other sources): build it again first (aiida-devc images build --image base --platform {platform})"
        );
    }
    Ok(id)
}

/// Fail unless `image`'s config names `platform`'s architecture (the classic builder builds on
/// a local base as it is, so a base of the wrong architecture gives an image of it).
async fn check_base_platform(
    docker: &crate::host::docker::Docker,
    image: &str,
    platform: Platform,
) -> anyhow::Result<()> {
    let inspect = match docker.inspect_image(image).await {
        Ok(inspect) => inspect,
        // The builder pulls a missing base for the host's platform when a registry answers.
        Err(_) if platform == Platform::host() => return Ok(()),
        Err(e) => {
            return Err(anyhow::anyhow!(e).context(format!(
                "the base image {image} for {platform} is missing (`bash scripts/bootstrap.sh --arm64` makes debian:bookworm-arm64)"
            )));
        }
    };
    let architecture = inspect.architecture.unwrap_or_default();
    anyhow::ensure!(
        architecture == platform.architecture(),
        "{image} is an image for {architecture}, not {platform}: its config must name the architecture \
         (`bash scripts/bootstrap.sh --arm64` makes debian:bookworm-arm64 that way)"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command};

    fn images(args: &str) -> Result<ImagesCommand, clap::Error> {
        let argv = std::iter::once("aiida-devc").chain(args.split_whitespace());
        Cli::try_parse_from(argv).map(|cli| match cli.command {
            Command::Images(command) => command,
            other => panic!("not an images command: {other:?}"),
        })
    }

    #[test]
    fn a_platform_job_pushes_by_digest_to_several_registries_and_the_merge_reads_every_file() {
        let ImagesCommand::Build(build) = images(
            "images build --platform linux/arm64 --push-by-digest --registry ghcr.io \
             --also-registry docker.io --digests d/arm64.json --json",
        )
        .unwrap() else {
            panic!("not a build");
        };
        assert!(build.by_digest.push_by_digest && !build.push);
        assert_eq!(build.by_digest.also_registry, ["docker.io"]);
        assert_eq!(build.by_digest.digests, Some(PathBuf::from("d/arm64.json")));

        let ImagesCommand::Merge(merge) =
            images("images merge --registry ghcr.io --digests a.json b.json --tag v1.2.3").unwrap()
        else {
            panic!("not a merge");
        };
        assert_eq!(merge.digests.len(), 2);
        assert_eq!(merge.platform, "linux/amd64,linux/arm64");
        assert_eq!(merge.publish.tags, ["v1.2.3"]);
    }

    #[test]
    fn digests_and_mirrors_need_push_by_digest_and_a_merge_needs_digests() {
        for args in [
            "images build --digests d.json --registry r",
            "images push --also-registry docker.io --registry r",
            "images merge --registry ghcr.io",
        ] {
            assert!(images(args).is_err(), "{args} parsed");
        }
    }
}
