//! The Engine API side of a build: send a context, show progress, tag, and read back what the
//! image holds (for the tags).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use futures_util::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};

use super::naming::Versions;
use crate::host::docker::{
    BuildImageOptions, ContainerCreateBody, Docker, Error, TagImageOptions, body_full, run_to_end,
};

/// One build request.
pub struct BuildRequest<'a> {
    /// The image's display name, for progress and errors.
    pub display: &'a str,
    /// The first tag, applied by the build itself; none for an intermediate stage (`target`).
    pub tag: Option<&'a str>,
    /// Build only up to this stage of the Dockerfile.
    pub target: Option<&'a str>,
    pub context: Vec<u8>,
    pub build_args: HashMap<String, String>,
    pub labels: HashMap<String, String>,
    pub platform: Option<&'a str>,
    pub no_cache: bool,
    /// Print every line of the builder's output (otherwise a progress bar, or one line per step
    /// when stderr is not a terminal).
    pub verbose: bool,
}

/// Build; returns the image ID.
pub async fn build(docker: &Docker, req: BuildRequest<'_>) -> anyhow::Result<String> {
    let options = BuildImageOptions {
        dockerfile: "Dockerfile".into(),
        t: req.tag.map(str::to_owned),
        target: req.target.unwrap_or_default().to_owned(),
        rm: true,
        forcerm: true,
        nocache: req.no_cache,
        buildargs: Some(req.build_args.clone()),
        labels: Some(req.labels.clone()),
        platform: req.platform.unwrap_or_default().to_owned(),
        ..Default::default()
    };
    let progress = Progress::new(req.display, req.verbose);
    let mut stream = docker.build_image(options, None, Some(body_full(req.context.into())));
    let mut tail: Vec<String> = Vec::new();
    let mut image_id = None;
    while let Some(item) = stream.next().await {
        let info = match item {
            Ok(info) => info,
            // A build step's failure (the stream's `errorDetail`).
            Err(Error::DockerStreamError { error }) => {
                progress.fail();
                bail!(
                    "building {} failed: {}\nlast output:\n{}",
                    req.display,
                    error.trim(),
                    tail.join("\n")
                );
            }
            Err(e) => {
                progress.fail();
                return Err(anyhow!(e).context(format!("building {} failed", req.display)));
            }
        };
        if let Some(id) = info.aux.and_then(|aux| aux.id) {
            image_id = Some(id);
        }
        if let Some(text) = info.stream {
            for line in text.lines().map(str::trim_end).filter(|l| !l.is_empty()) {
                progress.line(line);
                tail.push(line.to_owned());
                if tail.len() > 30 {
                    tail.remove(0);
                }
            }
        }
    }
    progress.done();
    // The classic builder reports the ID as "Successfully built <short id>" and in the stream's
    // `aux`; the tag, when there is one, is the reliable handle.
    let Some(tag) = req.tag else {
        return image_id
            .ok_or_else(|| anyhow!("building {}: the engine named no image", req.display));
    };
    let inspect = docker
        .inspect_image(tag)
        .await
        .with_context(|| format!("the built image {tag} is missing"))?;
    Ok(inspect.id.or(image_id).unwrap_or_default())
}

/// Add `tags` to `image` (a name or ID); `repo` is the name without a tag.
pub async fn tag(docker: &Docker, image: &str, repo: &str, tags: &[String]) -> anyhow::Result<()> {
    for tag in tags {
        let opts = TagImageOptions {
            repo: Some(repo.to_owned()),
            tag: Some(tag.clone()),
        };
        docker
            .tag_image(image, Some(opts))
            .await
            .with_context(|| format!("cannot tag {image} as {repo}:{tag}"))?;
    }
    Ok(())
}

/// Read the versions an image holds by running a short command in it (not its init).
pub async fn probe_versions(docker: &Docker, image: &str, aiida: &str) -> anyhow::Result<Versions> {
    let script = "python -c 'import sys; print(\"%d.%d\" % sys.version_info[:2])' && \
                  { ls /usr/lib/postgresql 2>/dev/null | sort -V | tail -n1; true; }";
    let out = run_capture(docker, image, &["/bin/sh", "-c", script]).await?;
    let mut lines = out.lines().map(str::trim).filter(|l| !l.is_empty());
    let python = lines
        .next()
        .ok_or_else(|| anyhow!("{image}: python printed no version"))?
        .to_owned();
    let postgresql = lines.next().map(str::to_owned);
    Ok(Versions {
        aiida: aiida.to_owned(),
        python,
        postgresql,
    })
}

async fn run_capture(docker: &Docker, image: &str, cmd: &[&str]) -> anyhow::Result<String> {
    let name = format!("aiida-devc-probe-{}", std::process::id());
    let body = ContainerCreateBody {
        image: Some(image.to_owned()),
        entrypoint: Some(vec![]),
        cmd: Some(cmd.iter().map(std::string::ToString::to_string).collect()),
        ..Default::default()
    };
    let finished = run_to_end(docker, Some(&name), body, true).await?;
    if finished.exit_code != 0 {
        bail!(
            "the probe in {image} exited with {}:\n{}",
            finished.exit_code,
            finished.output
        );
    }
    Ok(finished.output)
}

/// Progress of one build: a bar over the Dockerfile's steps on a terminal, one line per step
/// otherwise (CI logs), or every line with `verbose`.
struct Progress {
    bar: ProgressBar,
    verbose: bool,
    started: Instant,
    display: String,
}

impl Progress {
    fn new(display: &str, verbose: bool) -> Progress {
        let bar = ProgressBar::new(0);
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} {prefix} [{bar:20}] {pos}/{len} {elapsed} {wide_msg}",
            )
            .expect("valid template")
            .progress_chars("=> "),
        );
        bar.set_prefix(display.to_owned());
        bar.enable_steady_tick(Duration::from_millis(200));
        Progress {
            bar,
            verbose,
            started: Instant::now(),
            display: display.to_owned(),
        }
    }

    fn line(&self, line: &str) {
        let step = parse_step(line);
        if let Some((n, total, _)) = step {
            self.bar.set_length(total);
            self.bar.set_position(n.saturating_sub(1));
        }
        if self.verbose {
            self.bar.suspend(|| eprintln!("{}: {line}", self.display));
        } else if let Some((n, total, what)) = step {
            let what: String = what.chars().take(100).collect();
            if self.bar.is_hidden() {
                eprintln!("{}: step {n}/{total}: {what}", self.display);
            }
            self.bar.set_message(what);
        }
    }

    fn done(&self) {
        self.bar.finish_and_clear();
        eprintln!("{}: built in {:.0?}", self.display, self.started.elapsed());
    }

    fn fail(&self) {
        self.bar.abandon();
    }
}

/// `Step 3/12 : RUN ...` -> (3, 12, "RUN ...").
pub fn parse_step(line: &str) -> Option<(u64, u64, &str)> {
    let rest = line.strip_prefix("Step ")?;
    let (counts, what) = rest.split_once(" : ")?;
    let (n, total) = counts.split_once('/')?;
    Some((n.parse().ok()?, total.parse().ok()?, what))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builder_steps_are_parsed() {
        assert_eq!(
            parse_step("Step 3/12 : RUN apt-get update"),
            Some((3, 12, "RUN apt-get update"))
        );
        assert_eq!(parse_step(" ---> Running in 1234"), None);
    }
}
