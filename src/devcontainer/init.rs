//! `aiida-devc init [DIR]`: write or update `.devcontainer/devcontainer.json` for the plugin in
//! DIR (and, for `--variant compose`, the `.devcontainer/docker-compose.yml` it names; with
//! `--ci`, the GitHub workflow and Dependabot entries of [`super::ci`]).
//!
//! devcontainer.json and dependabot.yml are merged (see [`super::merge`] and [`super::ci`]); the
//! compose file and the workflow are written when absent, left alone when they already say the
//! same, and otherwise refused (nothing written) unless `--force`. Every file is decided, and any
//! refusal made, before the first one is written.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

use super::ci;
use super::compose::{self, ServiceImages};
use super::config::{self, Choices};
use super::merge::{self, Changes};
use crate::host::Host;
use crate::host::ca::Ca;
use crate::plugin::images::{self, ImageChoice, Variant};
use crate::plugin::{self, PluginMetadata};
use pep508_rs::pep440_rs::Version;

/// Write `.devcontainer/devcontainer.json` for the AiiDA plugin in DIR, or merge aiida-devc's
/// settings into the one that is there (keeping your keys, comments and order).
#[derive(Debug, Clone, clap::Args)]
pub struct InitArgs {
    /// The plugin repository (with pyproject.toml, setup.cfg or setup.py).
    #[arg(default_value = ".")]
    pub dir: PathBuf,
    /// Which image family the dev container uses.
    #[arg(long, value_enum, default_value_t = Variant::Services)]
    pub variant: Variant,
    /// Use this image instead of the one picked from the plugin's aiida-core requirement.
    #[arg(long, value_name = "IMAGE")]
    pub image: Option<String>,
    /// Extras installed with the plugin (default: the first of tests, testing, test it declares).
    #[arg(long, value_delimiter = ',', value_name = "EXTRA,...")]
    pub extras: Option<Vec<String>>,
    /// Print the change as a diff and write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Compose variant: the PostgreSQL image (default: the aiida-plugin-compose Template's
    /// postgresImage, postgres:16).
    #[arg(long, value_name = "IMAGE")]
    pub postgres_image: Option<String>,
    /// Compose variant: the RabbitMQ image (default: the aiida-plugin-compose Template's
    /// rabbitmqImage, rabbitmq:3.13).
    #[arg(long, value_name = "IMAGE")]
    pub rabbitmq_image: Option<String>,
    /// Replace an existing compose file (`--variant compose`) or workflow (`--ci`) that differs
    /// from the one init writes.
    #[arg(long)]
    pub force: bool,
    /// Also write `.github/workflows/tests.yml` (the plugin's tests in this dev container on
    /// GitHub Actions, on x86_64 and arm64 runners) and add Dependabot entries for the dev
    /// container's Features and images to `.github/dependabot.yml`.
    #[arg(long)]
    pub ci: bool,
    /// Add the aiida-slurm Feature: Slurm and an SSH server in the container, and the AiiDA
    /// computer localhost-slurm (core.slurm over core.ssh_async). Services variant only.
    #[arg(long)]
    pub slurm: bool,
    /// Where the images are published (HOST[/ORGANIZATION]): the tag is the newest aiida-X.Y.Z
    /// in its tag list that satisfies the plugin's aiida-core requirement.
    #[arg(long, value_name = "HOST[/ORG]", env = "AIIDA_DEVC_REGISTRY", default_value = images::DEFAULT_REGISTRY, value_parser = images::ImageRegistry::parse)]
    pub registry: images::ImageRegistry,
}

/// What `init` decided and did.
#[derive(Debug)]
pub struct InitOutcome {
    pub path: PathBuf,
    pub plugin: PluginMetadata,
    pub image: ImageChoice,
    pub before: Option<String>,
    pub after: String,
    pub changes: Changes,
    pub written: bool,
    /// The image's Python version, when the image is present locally.
    pub image_python: Option<String>,
    /// The compose file (compose variant).
    pub compose: Option<WholeFile>,
    /// The workflow and the Dependabot configuration (`--ci`).
    pub ci: Option<CiOutcome>,
    /// Why the published tags could not be read, when the image was picked from the built-in
    /// releases instead.
    pub tags_unavailable: Option<String>,
    /// This machine's https goes through a TLS-intercepting proxy (its CA bundle holds
    /// certificates beyond Debian's stock set), no CA bundle was asked for, and the file passes
    /// none to the container: the plugin install will fail there.
    pub proxy_ca_missing: bool,
}

/// What `init` did with a file it writes whole and never merges (the compose file, the workflow).
#[derive(Debug)]
pub struct WholeFile {
    pub path: PathBuf,
    pub before: Option<String>,
    pub after: String,
    pub written: bool,
    /// A different file exists and `--force` was not given (only reported by `--dry-run`; a real
    /// run refuses).
    pub conflict: bool,
}

impl WholeFile {
    /// `after` for `path`, or an error naming `path` when a different file (a `what`) is there
    /// and neither `force` nor `dry_run` is given.
    fn decide(
        path: PathBuf,
        after: String,
        what: &str,
        force: bool,
        dry_run: bool,
    ) -> anyhow::Result<WholeFile> {
        let before = read_if_present(&path)?;
        let differs = before.as_ref().is_some_and(|existing| existing != &after);
        if differs && !force && !dry_run {
            bail!(
                "{}: a different {what} is already there; `aiida-devc init` does not merge \
                 {what}s. Nothing was written. Run with --dry-run to see the difference, \
                 --force to replace it, or remove it",
                path.display()
            );
        }
        Ok(WholeFile {
            path,
            before,
            after,
            written: false,
            conflict: differs && !force,
        })
    }

    /// Whether a real run writes it.
    fn must_write(&self, dry_run: bool) -> bool {
        self.before.as_deref() != Some(self.after.as_str()) && !dry_run && !self.conflict
    }
}

/// What `init --ci` did with the workflow and the Dependabot configuration.
#[derive(Debug)]
pub struct CiOutcome {
    pub workflow: WholeFile,
    pub dependabot_path: PathBuf,
    pub dependabot_before: Option<String>,
    pub dependabot_after: String,
    /// The ecosystems whose entries were added (empty: the file had them all).
    pub dependabot_added: Vec<&'static str>,
    pub dependabot_written: bool,
}

/// The devcontainer.json of a workspace.
pub fn config_path(dir: &Path) -> PathBuf {
    dir.join(".devcontainer").join("devcontainer.json")
}

/// Tags of `repository` in the local engine, one list per image; empty when no engine answers
/// (init works offline).
pub fn local_tags(repository: &str) -> Vec<Vec<String>> {
    let Ok(rt) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return Vec::new();
    };
    rt.block_on(async {
        let Ok(docker) = crate::host::docker::local_client() else {
            return Vec::new();
        };
        let Ok(images) = docker
            .list_images(None::<crate::host::docker::ListImagesOptions>)
            .await
        else {
            return Vec::new();
        };
        let prefix = format!("{repository}:");
        images
            .into_iter()
            .map(|i| {
                i.repo_tags
                    .iter()
                    .filter_map(|t| t.strip_prefix(&prefix).map(str::to_owned))
                    .collect::<Vec<_>>()
            })
            .filter(|tags| !tags.is_empty())
            .collect()
    })
}

/// The Python version of the local image tagged `tag`, from its `python-X.Y` tag.
fn local_python(local_tags: &[Vec<String>], tag: &str) -> Option<String> {
    local_tags
        .iter()
        .find(|tags| tags.iter().any(|t| t == tag))?
        .iter()
        .find_map(|t| t.strip_prefix("python-").map(str::to_owned))
}

impl InitArgs {
    pub fn run(&self, host: &Host) -> anyhow::Result<()> {
        let repository = self.registry.image(self.variant);
        let outcome = self.execute(host, &local_tags(&repository))?;
        if let Some(reason) = &outcome.tags_unavailable {
            eprintln!(
                "note: cannot read the published tags of {}/{}: {reason}\n\
                 note: picked the tag from the built-in list of aiida-core releases and the local images instead",
                self.registry.host,
                self.registry.path(self.variant)
            );
        }
        let mut out = std::io::stdout().lock();
        report(&mut out, &outcome, self.dry_run)?;
        Ok(())
    }

    /// Everything but printing: decide, merge, and write unless `--dry-run`.
    pub fn execute(&self, host: &Host, local_tags: &[Vec<String>]) -> anyhow::Result<InitOutcome> {
        let compose_variant = self.variant == Variant::Compose;
        self.refuse_compose_flags_elsewhere()?;
        if self.slurm && self.variant != Variant::Services {
            bail!(
                "--slurm applies to `--variant services` only: the aiida-slurm Feature runs its \
                 services under the aiida-core-with-services image's aiida-init"
            );
        }
        let plugin = plugin::read(&self.dir)?;
        let (image, tags_unavailable) = self.choose_image(host, &plugin, local_tags)?;
        let extras = self.choose_extras(&plugin)?;
        // A CA bundle is written into the configuration only when the user asked for one: the
        // file must not depend on the machine it was generated on.
        let ca = matches!(host.ca, Ca::Given(_));
        let choices = Choices {
            plugin: &plugin,
            image: &image,
            variant: self.variant,
            extras,
            ca,
            tests_dir: config::find_tests_dir(&self.dir),
            slurm: self.slurm,
            services: ServiceImages::or_defaults(
                self.postgres_image.as_deref(),
                self.rabbitmq_image.as_deref(),
            ),
        };
        // The compose file and the CI files are decided (and any conflict refused) before
        // anything is written.
        let compose = if compose_variant {
            Some(self.compose_file(&image.image, &choices.services)?)
        } else {
            None
        };
        let ci = if self.ci {
            Some(self.ci_files()?)
        } else {
            None
        };
        let entries = config::entries(&choices);
        let path = config_path(&self.dir);
        let before = read_if_present(&path)?;
        let base = before
            .clone()
            .unwrap_or_else(|| format!("{}{{}}\n", config::header(&plugin)));
        if before.is_some() {
            refuse_foreign_keys(&path, &base, compose_variant)?;
        }
        let (after, changes) = merge::merge(&path, &base, &entries)?;
        let must_write = before.as_deref() != Some(after.as_str());
        let written = must_write && !self.dry_run;
        let compose = compose.map(|mut c| {
            c.written = c.must_write(self.dry_run);
            c
        });
        let ci = ci.map(|mut c| {
            c.workflow.written = c.workflow.must_write(self.dry_run);
            c.dependabot_written = !c.dependabot_added.is_empty() && !self.dry_run;
            c
        });
        // The compose file first: a devcontainer.json that names a missing file would not open.
        if let Some(c) = compose.as_ref().filter(|c| c.written) {
            write_atomically(&c.path, &c.after)?;
        }
        if written {
            write_atomically(&path, &after)?;
        }
        if let Some(c) = &ci {
            if c.workflow.written {
                write_atomically(&c.workflow.path, &c.workflow.after)?;
            }
            if c.dependabot_written {
                write_atomically(&c.dependabot_path, &c.dependabot_after)?;
            }
        }
        let image_python = image
            .image
            .rsplit_once(':')
            .and_then(|(_, tag)| local_python(local_tags, tag));
        let proxy_ca_missing = matches!(host.ca, Ca::Detected(_))
            && !after.contains(&format!("${{localEnv:{}}}", config::CA_ENV));
        Ok(InitOutcome {
            path,
            plugin,
            image,
            before,
            after,
            changes,
            written,
            image_python,
            compose,
            ci,
            tags_unavailable,
            proxy_ca_missing,
        })
    }

    /// `--postgres-image` and `--rabbitmq-image` mean something for the compose variant only,
    /// `--force` for it and `--ci`.
    fn refuse_compose_flags_elsewhere(&self) -> anyhow::Result<()> {
        if self.variant == Variant::Compose {
            return Ok(());
        }
        for (flag, given) in [
            ("--postgres-image", self.postgres_image.is_some()),
            ("--rabbitmq-image", self.rabbitmq_image.is_some()),
        ] {
            if given {
                bail!("{flag} applies to `--variant compose` only");
            }
        }
        if self.force && !self.ci {
            bail!("--force applies to `--variant compose` and `--ci` only");
        }
        Ok(())
    }

    /// The image given with `--image`, or the newest published (else built-in or local) tag
    /// that satisfies the plugin's aiida-core requirement; with why the published tags could
    /// not be read, if they could not.
    fn choose_image(
        &self,
        host: &Host,
        plugin: &PluginMetadata,
        local_tags: &[Vec<String>],
    ) -> anyhow::Result<(ImageChoice, Option<String>)> {
        if let Some(image) = &self.image {
            let given = ImageChoice {
                image: image.clone(),
                aiida_core: None,
                present_locally: false,
            };
            return Ok((given, None));
        }
        let flat: Vec<String> = local_tags.iter().flatten().cloned().collect();
        let requirement = plugin.aiida_core.as_ref();
        let published = images::published_tags(&self.registry, self.variant, host.ca.bundle());
        let mut tags_unavailable = None;
        if let images::PublishedTags::Unavailable(reason) = &published {
            tags_unavailable = Some(reason.clone());
        }
        let chosen = match &published {
            images::PublishedTags::Read(tags) => {
                images::choose_published(self.variant, &self.registry, requirement, tags, &flat)
                    .map_err(|e| e.to_string())
            }
            images::PublishedTags::Unavailable(_) => {
                images::choose_from(&self.registry.image(self.variant), requirement, &flat).map_err(
                    |e| {
                        format!(
                            "{e} (the built-in list: the tags of {}/{} could not be read)",
                            self.registry.host,
                            self.registry.path(self.variant)
                        )
                    },
                )
            }
        };
        let image = chosen.map_err(|e| {
            anyhow::anyhow!(
                "{}: {e}. Pick an image with --image, or relax the requirement",
                plugin.source.display()
            )
        })?;
        Ok((image, tags_unavailable))
    }

    /// The extras given with `--extras` (each one the plugin declares), or its test extras.
    fn choose_extras(&self, plugin: &PluginMetadata) -> anyhow::Result<Vec<String>> {
        let Some(extras) = &self.extras else {
            return Ok(plugin.test_extras());
        };
        for extra in extras {
            if !plugin.extras.contains_key(extra) {
                bail!(
                    "{}: the plugin declares no extra {extra:?} (it has: {})",
                    plugin.source.display(),
                    plugin.extras.keys().cloned().collect::<Vec<_>>().join(", ")
                );
            }
        }
        Ok(extras.clone())
    }

    /// The compose file to write, or an error when a different one exists and `--force` is not
    /// given.
    fn compose_file(
        &self,
        aiida_image: &str,
        services: &ServiceImages,
    ) -> anyhow::Result<WholeFile> {
        WholeFile::decide(
            compose::compose_path(&self.dir),
            compose::render(aiida_image, services)?,
            "compose file",
            self.force,
            self.dry_run,
        )
    }

    /// The workflow (refused when a different one exists and `--force` is not given) and the
    /// merged Dependabot configuration.
    fn ci_files(&self) -> anyhow::Result<CiOutcome> {
        let workflow = WholeFile::decide(
            ci::workflow_path(&self.dir),
            ci::WORKFLOW.to_owned(),
            "workflow",
            self.force,
            self.dry_run,
        )?;
        let dependabot_path = ci::dependabot_path(&self.dir);
        let dependabot_before = read_if_present(&dependabot_path)?;
        let (dependabot_after, dependabot_added) = ci::merge_dependabot(
            &dependabot_path,
            dependabot_before.as_deref(),
            &ci::dependabot_entries(&self.dir, self.variant),
        )?;
        Ok(CiOutcome {
            workflow,
            dependabot_path,
            dependabot_before,
            dependabot_after,
            dependabot_added,
            dependabot_written: false,
        })
    }
}

/// The text of the file at `path`, or `None` when there is none.
fn read_if_present(path: &Path) -> anyhow::Result<Option<String>> {
    match fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("{}: cannot read the file", path.display())),
    }
}

/// Refuse an existing configuration (at `path`, with text `base`) that runs its container in a
/// way the chosen variant does not manage: a build or Compose for an image, a build or an image
/// for Compose.
fn refuse_foreign_keys(path: &Path, base: &str, compose_variant: bool) -> anyhow::Result<()> {
    let value = merge::to_value(path, base)?;
    let foreign: &[&str] = if compose_variant {
        &["build", "dockerFile", "image"]
    } else {
        &["build", "dockerFile", "dockerComposeFile"]
    };
    for key in foreign {
        if value.get(key).is_some() {
            let at = plugin::Location::of(path, base, &format!("\"{key}\""));
            if compose_variant {
                bail!(
                    "{at}: this configuration uses `{key}`; `--variant compose` runs AiiDA from \
                     `dockerComposeFile`. Remove `{key}` (and let init set `dockerComposeFile`), or \
                     choose `--variant services` or `lite`"
                );
            }
            bail!(
                "{at}: this configuration uses `{key}`; `aiida-devc init` manages image-based \
                 configurations (and `--variant compose`). Remove `{key}` (and let init set `image`), \
                 or keep it and configure the container by hand"
            );
        }
    }
    Ok(())
}

/// Write through a temporary file in the same folder and a rename: never half a file.
fn write_atomically(path: &Path, text: &str) -> anyhow::Result<()> {
    let dir = path.parent().expect("a file in a folder");
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = dir.join(format!(".{name}.aiida-devc.tmp"));
    fs::write(&tmp, text).with_context(|| format!("cannot write {}", tmp.display()))?;
    fs::rename(&tmp, path).with_context(|| format!("cannot replace {}", path.display()))?;
    Ok(())
}

/// The user-facing report of `init` (snapshot-tested).
pub fn report(out: &mut impl Write, o: &InitOutcome, dry_run: bool) -> anyhow::Result<()> {
    let p = &o.plugin;
    writeln!(
        out,
        "plugin: {} (from {})",
        p.name,
        p.source.file_name().unwrap_or_default().to_string_lossy()
    )?;
    match &o.image.aiida_core {
        Some(v) => {
            let where_ = if o.image.present_locally {
                "present locally".to_string()
            } else {
                format!(
                    "not present locally: build it with `aiida-devc images build --aiida-version {v}`"
                )
            };
            writeln!(
                out,
                "image: {} (aiida-core {v} satisfies {}; {where_})",
                o.image.image,
                p.aiida_core_display()
            )?;
        }
        None => writeln!(out, "image: {} (chosen with --image)", o.image.image)?,
    }
    match (&p.requires_python, &o.image_python) {
        (Some(spec), Some(python)) => {
            let fits = python.parse::<Version>().is_ok_and(|v| spec.contains(&v));
            if fits {
                writeln!(
                    out,
                    "python: the plugin requires {spec}; the image has Python {python}"
                )?;
            } else {
                writeln!(
                    out,
                    "warning: the plugin requires Python {spec} but the image has Python {python}: \
                     pip will refuse to install it. Build an image with a Python that fits."
                )?;
            }
        }
        (Some(spec), None) => writeln!(out, "python: the plugin requires {spec}")?,
        _ => {}
    }
    if !p.extras.is_empty() {
        writeln!(
            out,
            "extras: {}",
            p.extras.keys().cloned().collect::<Vec<_>>().join(", ")
        )?;
    }
    if let Some(c) = &o.compose {
        report_whole_file(out, c, dry_run)?;
    }
    report_config(out, o, dry_run)?;
    if let Some(c) = &o.ci {
        report_ci(out, c, dry_run)?;
    }
    report_proxy_ca(out, o)
}

/// devcontainer.json's part of the report.
fn report_config(out: &mut impl Write, o: &InitOutcome, dry_run: bool) -> anyhow::Result<()> {
    if o.changes.is_empty() {
        writeln!(out, "{} is up to date.", o.path.display())?;
        return Ok(());
    }
    let before = o.before.as_deref().unwrap_or("");
    write!(out, "{}", merge::diff(&o.path, before, &o.after))?;
    let verb = match (dry_run, o.before.is_some()) {
        (true, _) => "would change",
        (false, true) => "updated",
        (false, false) => "created",
    };
    let mut what = Vec::new();
    if !o.changes.added.is_empty() {
        what.push(format!("added {}", o.changes.added.join(", ")));
    }
    if !o.changes.updated.is_empty() {
        what.push(format!("updated {}", o.changes.updated.join(", ")));
    }
    if !o.changes.removed.is_empty() {
        what.push(format!("removed {}", o.changes.removed.join(", ")));
    }
    writeln!(out, "{verb} {}: {}.", o.path.display(), what.join("; "))?;
    if dry_run {
        writeln!(out, "(dry run: nothing written)")?;
    } else {
        writeln!(
            out,
            "Next: `aiida-devc up {}`, or reopen the folder in a container.",
            o.path
                .parent()
                .and_then(Path::parent)
                .unwrap_or(Path::new("."))
                .display()
        )?;
    }
    Ok(())
}

/// The warning for a machine behind a TLS-intercepting proxy whose configuration passes no CA
/// bundle, last so that it is seen.
fn report_proxy_ca(out: &mut impl Write, o: &InitOutcome) -> anyhow::Result<()> {
    if o.proxy_ca_missing {
        writeln!(
            out,
            "warning: https from this machine goes through a TLS-intercepting proxy (its CA bundle \
             trusts certificates beyond Debian's stock set), and this configuration passes no CA \
             bundle to the container: the plugin install will fail there with \
             CERTIFICATE_VERIFY_FAILED under \"Reopen in Container\" and `devcontainer up` \
             (`aiida-devc up` passes one for its own run only). To fix it: `export {env}=/etc/ssl/certs/ca-certificates.crt` \
             (or the proxy's bundle), run `aiida-devc init` again, and keep {env} exported where VS Code starts.",
            env = config::CA_ENV
        )?;
    }
    Ok(())
}

/// The part of the report on a file init writes whole (the compose file, the workflow).
fn report_whole_file(out: &mut impl Write, c: &WholeFile, dry_run: bool) -> anyhow::Result<()> {
    if c.before.as_deref() == Some(c.after.as_str()) {
        writeln!(out, "{} is up to date.", c.path.display())?;
        return Ok(());
    }
    write!(
        out,
        "{}",
        merge::diff(&c.path, c.before.as_deref().unwrap_or(""), &c.after)
    )?;
    let verb = match (dry_run, c.before.is_some()) {
        (true, _) if c.conflict => "would refuse to replace (it differs; --force replaces it)",
        (true, true) => "would replace",
        (true, false) => "would create",
        (false, true) => "replaced (--force)",
        (false, false) => "created",
    };
    writeln!(out, "{verb} {}.", c.path.display())?;
    Ok(())
}

/// The workflow's and the Dependabot configuration's part of the report.
fn report_ci(out: &mut impl Write, c: &CiOutcome, dry_run: bool) -> anyhow::Result<()> {
    report_whole_file(out, &c.workflow, dry_run)?;
    let path = &c.dependabot_path;
    if c.dependabot_added.is_empty() {
        writeln!(out, "{} is up to date.", path.display())?;
    } else {
        let before = c.dependabot_before.as_deref().unwrap_or("");
        write!(out, "{}", merge::diff(path, before, &c.dependabot_after))?;
        let verb = match (dry_run, c.dependabot_before.is_some()) {
            (true, _) => "would change",
            (false, true) => "updated",
            (false, false) => "created",
        };
        writeln!(
            out,
            "{verb} {}: added entries for {}.",
            path.display(),
            c.dependabot_added.join(", ")
        )?;
    }
    if !dry_run && (c.workflow.written || c.dependabot_written) {
        writeln!(
            out,
            "Next: commit .github/; the workflow runs the tests in the dev container on every push \
             and pull request."
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_help_names_the_templates_service_image_defaults() {
        use clap::Args;
        let help = InitArgs::augment_args(clap::Command::new("init"))
            .render_long_help()
            .to_string();
        let help = help.split_whitespace().collect::<Vec<_>>().join(" ");
        for option in ["postgresImage", "rabbitmqImage"] {
            let default = compose::template_default(option);
            assert!(
                help.contains(&format!("{option}, {default})")),
                "{option} {default}: {help}"
            );
        }
    }

    #[test]
    fn the_python_version_comes_from_the_tags_of_the_same_image() {
        let local = vec![
            vec!["aiida-2.8.0".to_string(), "python-3.10".into()],
            vec![
                "aiida-2.9.4".to_string(),
                "latest".into(),
                "python-3.11".into(),
            ],
        ];
        assert_eq!(local_python(&local, "aiida-2.9.4").as_deref(), Some("3.11"));
        assert_eq!(local_python(&local, "aiida-2.8.0").as_deref(), Some("3.10"));
        assert_eq!(local_python(&local, "aiida-2.7.5"), None);
    }
}
