//! linux/amd64 and linux/arm64 images published to a real registry as one OCI image index per
//! tag, and used from there: pulled for arm64 and run under qemu, and brought up by the reference
//! devcontainer CLI. Also the release gate (a broken platform publishes nothing), the tag rules
//! (`latest` only moves forward; republishing changes no digest), and what is uploaded (the local
//! image's own layers, compressed smaller than `docker push` would).
//!
//! The images are the ones scripts/test.sh builds once per run for both platforms
//! (`images build --platform linux/amd64,linux/arm64 --organization $AIIDA_DEVC_IMAGE_PREFIX`);
//! each test names them for the test registry (`docker tag`) and runs `aiida-devc images push`.

use crate::support::{Need, skip_without};
use std::collections::BTreeSet;
use std::io::Read;
use std::sync::OnceLock;
use std::time::Instant;

use aiida_devc::oci::artifact::sha256_digest;
use serde_json::Value;

use crate::support::collections::aiida_devc;
use crate::support::images::{Container, Start, docker, text};
use crate::support::registry::Registry;
use crate::support::{Harness, Workspace, unique_name};

const AIIDA_VERSION: &str = aiida_devc::image::DEFAULT_AIIDA_VERSION;
const PLATFORMS: &str = "linux/amd64,linux/arm64";
const IMAGES: [&str; 2] = ["aiida-core-base", "aiida-core-with-services"];
/// Under emulation everything is several times slower (RabbitMQ alone about 30 s).
const EMULATED_READY_TIMEOUT: u64 = 600;

/// The organisation the prebuilt images are named under.
fn prefix() -> String {
    std::env::var("AIIDA_DEVC_IMAGE_PREFIX").unwrap_or_else(|_| "aiidateam".into())
}

/// The local tags `images build --platform linux/amd64,linux/arm64` gives one image.
fn prebuilt(image: &str) -> [(String, &'static str); 2] {
    let version = format!("aiida-{AIIDA_VERSION}");
    [
        (format!("{}/{image}:{version}", prefix()), "amd64"),
        (format!("{}/{image}:{version}-arm64", prefix()), "arm64"),
    ]
}

/// Name the prebuilt images `localhost:PORT/ORG/...` as `images build --registry` would, so
/// that `images push` finds them; returns the names given (to untag afterwards).
fn name_for_registry(h: &Harness, registry: &Registry, org: &str) -> Vec<String> {
    let mut names = Vec::new();
    for image in IMAGES {
        for (source, arch) in prebuilt(image) {
            h.require_image(&source);
            let suffix = if arch == "amd64" { "" } else { "-arm64" };
            let target = format!(
                "{}/{org}/{image}:aiida-{AIIDA_VERSION}{suffix}",
                registry.host
            );
            let out = docker(&["tag", &source, &target]);
            assert!(out.status.success(), "docker tag: {}", text(&out));
            names.push(target);
        }
    }
    names
}

/// Remove local names (tags only: the images stay under their other names).
fn untag(names: &[String]) {
    for name in names {
        let _ = docker(&["rmi", "--no-prune", name]);
    }
}

/// The per-platform names `images push` gives the local images before pushing them.
fn pushed_names(registry: &Registry, org: &str) -> Vec<String> {
    IMAGES
        .iter()
        .flat_map(|image| {
            ["amd64", "arm64"].map(|arch| {
                format!(
                    "{}/{org}/{image}:aiida-{AIIDA_VERSION}-{arch}",
                    registry.host
                )
            })
        })
        .collect()
}

/// `aiida-devc images push` of both platforms to `registry` under `org`.
fn push(registry: &Registry, org: &str, extra: &[&str]) -> crate::support::collections::Run {
    let mut args = vec![
        "images",
        "push",
        "--platform",
        PLATFORMS,
        "--registry",
        &registry.host,
        "--organization",
        org,
        "--json",
    ];
    args.extend_from_slice(extra);
    aiida_devc(&args, &[])
}

/// aiida-devc's own OCI client on the test registry, with a runtime to drive it from a test.
fn registry_client(registry: &Registry) -> (aiida_devc::oci::Registry, tokio::runtime::Runtime) {
    let client = aiida_devc::oci::Registry::with_credential(&registry.host, None, None).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    (client, rt)
}

/// The registry's manifest at `repo:reference` (any media type), with its digest.
fn manifest(registry: &Registry, repo: &str, reference: &str) -> Option<(Value, String)> {
    let (client, rt) = registry_client(registry);
    let d = rt
        .block_on(client.descriptor(repo, reference))
        .expect("the registry answers")?;
    Some((serde_json::from_slice(&d.bytes).unwrap(), d.digest))
}

fn tags(registry: &Registry, repo: &str) -> BTreeSet<String> {
    let (client, rt) = registry_client(registry);
    rt.block_on(client.list_tags(repo))
        .expect("the registry answers")
        .into_iter()
        .collect()
}

/// The platforms an index lists, as `os/arch[/variant]`.
fn index_platforms(index: &Value) -> Vec<String> {
    index["manifests"]
        .as_array()
        .expect("an index")
        .iter()
        .map(|m| {
            let p = &m["platform"];
            let mut name = format!(
                "{}/{}",
                p["os"].as_str().unwrap(),
                p["architecture"].as_str().unwrap()
            );
            if let Some(v) = p["variant"].as_str() {
                name.push('/');
                name.push_str(v);
            }
            name
        })
        .collect()
}

/// One publication of both platforms per test binary, shared by the tests that use it. When it
/// fails, every test that needs it fails at once with its error (it is not tried again).
struct Published {
    org: String,
    json: Value,
}

fn published() -> &'static Published {
    static ONCE: OnceLock<Result<Published, String>> = OnceLock::new();
    let result = ONCE.get_or_init(|| {
        let h = Harness::new();
        let registry = Registry::shared();
        let org = unique_name("multiarch").replace("aiida-devc-test-", "");
        let names = name_for_registry(&h, registry, &org);
        let started = Instant::now();
        let run = push(registry, &org, &["--tag", "edge"]);
        eprintln!(
            "images push of linux/amd64 and linux/arm64 (both release gates included) took {:.0?}",
            started.elapsed()
        );
        untag(&names);
        untag(&pushed_names(registry, &org));
        if run.success {
            Ok(Published {
                json: run.json(),
                org,
            })
        } else {
            Err(format!(
                "images push of linux/amd64 and linux/arm64 failed:\n--- stdout\n{}\n--- stderr\n{}",
                run.stdout, run.stderr
            ))
        }
    });
    match result {
        Ok(published) => published,
        Err(e) => panic!("{e}"),
    }
}

/// After the push, every tag of both images is an OCI image index in the same repository that
/// lists exactly linux/amd64 and linux/arm64/v8, and --json says what was pushed. Republishing
/// changes no digest; an aiida-core release older than one already there does not move `latest`.
#[test]
fn each_tag_is_an_oci_index_of_amd64_and_arm64_and_latest_only_moves_forward() {
    if skip_without(&[Need::Docker]) {
        return;
    }
    let p = published();
    let registry = Registry::shared();
    let images = p.json["images"].as_array().expect("images in --json");
    assert_eq!(images.len(), 2, "{}", p.json);
    for (image, published) in IMAGES.iter().zip(images) {
        let repo = format!("{}/{image}", p.org);
        let mut expected: BTreeSet<String> = [
            format!("aiida-{AIIDA_VERSION}"),
            "python-3.11".into(),
            "latest".into(),
            "edge".into(),
        ]
        .into();
        if *image == "aiida-core-with-services" {
            expected.insert("postgresql-15".into());
        }
        let json_tags: BTreeSet<String> = published["tags"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap().to_owned())
            .collect();
        assert_eq!(json_tags, expected, "{published}");
        let index_digest = published["index_digest"].as_str().unwrap();
        for tag in &expected {
            let (index, digest) =
                manifest(registry, &repo, tag).unwrap_or_else(|| panic!("{repo}:{tag} missing"));
            assert_eq!(
                index["mediaType"], "application/vnd.oci.image.index.v1+json",
                "{repo}:{tag}: {index}"
            );
            assert_eq!(
                index_platforms(&index),
                ["linux/amd64", "linux/arm64/v8"],
                "{repo}:{tag}"
            );
            assert_eq!(digest, index_digest, "{repo}:{tag}");
            // Every listed manifest lives in the same repository, for its architecture.
            for entry in index["manifests"].as_array().unwrap() {
                let digest = entry["digest"].as_str().unwrap();
                let (single, _) = manifest(registry, &repo, digest)
                    .unwrap_or_else(|| panic!("{repo}@{digest} missing"));
                assert!(single["config"]["digest"].is_string(), "{single}");
            }
        }
    }

    // A newer aiida-core release is already there: republishing 2.9.4 keeps every digest and
    // leaves `latest` where it is.
    let with_services = format!("{}/aiida-core-with-services", p.org);
    let newer = format!("aiida-{}", "99.0.0");
    let (index, _) = manifest(registry, &with_services, &format!("aiida-{AIIDA_VERSION}")).unwrap();
    let amd64_only: oci_index_for_test::Index = oci_index_for_test::only_first(&index);
    let (client, rt) = registry_client(registry);
    for tag in [newer.as_str(), "latest"] {
        rt.block_on(client.push_index(&with_services, tag, amd64_only.clone()))
            .expect("write an index");
    }
    let (_, latest_before) = manifest(registry, &with_services, "latest").unwrap();

    let h = Harness::new();
    let names = name_for_registry(&h, registry, &p.org);
    let again = push(registry, &p.org, &[]);
    untag(&names);
    untag(&pushed_names(registry, &p.org));
    let again = again.ok("republishing the same images").json();
    for (first, second) in p.json["images"]
        .as_array()
        .unwrap()
        .iter()
        .zip(again["images"].as_array().unwrap())
    {
        assert_eq!(first["index_digest"], second["index_digest"], "republished");
        assert_eq!(first["platforms"], second["platforms"], "republished");
    }
    let (_, latest_after) = manifest(registry, &with_services, "latest").unwrap();
    assert_eq!(latest_before, latest_after, "`latest` moved backwards");
    let republished: Vec<&str> = again["images"][1]["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    assert!(!republished.contains(&"latest"), "{republished:?}");
}

/// What a user downloads is the local image as it is, compressed harder than the engine's own
/// `docker push` would: the published linux/amd64 aiida-core-base names the local image ID as its
/// config, each of its layers is one gzip member whose content has the config's `diff_id` for it,
/// and the layers together are smaller than the engine's push of the same image.
#[test]
fn published_layers_are_the_images_own_and_smaller_than_the_engines_push() {
    if skip_without(&[Need::Docker]) {
        return;
    }
    let p = published();
    let registry = Registry::shared();
    let repo = format!("{}/aiida-core-base", p.org);
    let (ours, _) = manifest(registry, &repo, &format!("aiida-{AIIDA_VERSION}-amd64"))
        .expect("the per-platform tag of linux/amd64");
    let (source, _) = &prebuilt("aiida-core-base")[0];
    let id = text(&docker(&["image", "inspect", "-f", "{{.Id}}", source]))
        .trim()
        .to_owned();
    assert_eq!(ours["config"]["digest"], id.as_str(), "{ours}");

    let (client, rt) = registry_client(registry);
    let config: Value = serde_json::from_slice(
        &rt.block_on(client.blob(&repo, &id))
            .expect("the config blob"),
    )
    .unwrap();
    let diff_ids = config["rootfs"]["diff_ids"].as_array().unwrap();
    let layers = ours["layers"].as_array().unwrap();
    assert_eq!(layers.len(), diff_ids.len(), "{ours}");
    for (layer, diff_id) in layers.iter().zip(diff_ids) {
        let digest = layer["digest"].as_str().unwrap();
        let blob = rt
            .block_on(client.blob(&repo, digest))
            .expect("a layer blob");
        assert_eq!(sha256_digest(&blob), digest);
        assert_eq!(layer["size"], blob.len(), "{digest}");
        // One gzip member: a reader that stops after the first one gets the whole layer.
        let mut tar = Vec::new();
        flate2::read::GzDecoder::new(blob.as_slice())
            .read_to_end(&mut tar)
            .unwrap_or_else(|e| panic!("{digest} is not gzip: {e}"));
        assert_eq!(sha256_digest(&tar), diff_id.as_str().unwrap(), "{digest}");
    }

    // The engine's own push of the same image, for comparison.
    let engine = format!("{}/{}/engine-push:amd64", registry.host, p.org);
    assert!(docker(&["tag", source, &engine]).status.success());
    let pushed = docker(&["push", "-q", &engine]);
    untag(std::slice::from_ref(&engine));
    assert!(pushed.status.success(), "docker push: {}", text(&pushed));
    let (theirs, _) = manifest(registry, &format!("{}/engine-push", p.org), "amd64").unwrap();
    let total = |m: &Value| -> u64 {
        m["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["size"].as_u64().unwrap())
            .sum()
    };
    let (ours, theirs) = (total(&ours), total(&theirs));
    eprintln!(
        "aiida-core-base linux/amd64 as published: {ours} bytes; as docker push compresses it: {theirs} bytes ({:.3}x)",
        ours as f64 / theirs as f64
    );
    assert!(
        ours < theirs,
        "published {ours} bytes, not less than docker push's {theirs}"
    );
}

/// `docker pull --platform linux/arm64` of the registry's with-services image gives an arm64
/// image whose container becomes ready under emulation: `uname -m` aarch64, `verdi status` all ✔.
#[test]
fn the_registry_arm64_image_becomes_ready_under_emulation() {
    if skip_without(&[Need::Docker]) {
        return;
    }
    let p = published();
    let registry = Registry::shared();
    let h = Harness::new();
    // A tag no other test names locally (`aiida-X.Y.Z` is what the pushes read).
    let image = format!(
        "{}/{}/aiida-core-with-services:postgresql-15",
        registry.host, p.org
    );
    let out = docker(&["pull", "--platform", "linux/arm64", &image]);
    assert!(out.status.success(), "docker pull: {}", text(&out));
    h.track_image(&image);
    // By ID from here: another test may name the tag locally meanwhile.
    // (The engine's inspect has no variant; the index test checks arm64/v8 in the registry.)
    let inspect = docker(&[
        "image",
        "inspect",
        "-f",
        "{{.Id}} {{.Os}}/{{.Architecture}}",
        &image,
    ]);
    assert!(
        inspect.status.success(),
        "docker image inspect: {}",
        text(&inspect)
    );
    let inspect = String::from_utf8_lossy(&inspect.stdout).trim().to_owned();
    let (id, platform) = inspect.split_once(' ').expect("docker image inspect");
    assert_eq!(platform, "linux/arm64", "{image}");

    let c = Container::start(&h, id, Start::default());
    let started = Instant::now();
    let (code, out) = c.exec(&[
        "aiida-init",
        "wait",
        "--timeout",
        &EMULATED_READY_TIMEOUT.to_string(),
    ]);
    assert_eq!(code, 0, "not ready under emulation:\n{out}\n{}", c.logs());
    eprintln!(
        "arm64 with-services ready under emulation in {:.1?}",
        started.elapsed()
    );
    assert_eq!(c.sh("uname -m").trim(), "aarch64");
    c.assert_verdi_ready(true);
}

/// The reference devcontainer CLI brings up a workspace whose `image` is the registry's
/// with-services image (pulled from it, the local build is not used): `verdi status` all ✔.
#[test]
fn the_reference_cli_brings_up_the_registry_image() {
    if skip_without(&[Need::Docker, Need::DevcontainerCli]) {
        return;
    }
    let p = published();
    let registry = Registry::shared();
    let image = format!(
        "{}/{}/aiida-core-with-services:python-3.11",
        registry.host, p.org
    );
    let _ = docker(&["rmi", "--no-prune", &image]);
    let ws = Workspace::with_config(&format!(r#"{{"image": "{image}"}}"#));
    ws.harness().track_image(&image);
    let up = ws.devcontainer(&["up"]);
    assert!(up.status.success(), "devcontainer up: {}", text(&up));
    let exec = ws.devcontainer(&["exec", "verdi", "status"]);
    let status = text(&exec);
    assert!(exec.status.success(), "verdi status: {status}");
    for needle in [
        "✔ profile:",
        "✔ storage:",
        "✔ broker:",
        "RabbitMQ",
        "✔ daemon:",
    ] {
        assert!(status.contains(needle), "`{needle}` missing:\n{status}");
    }
    // The image came from the registry: its repo digest is the published index's.
    let digests = docker(&["image", "inspect", "-f", "{{json .RepoDigests}}", &image]);
    let published = p.json["images"][1]["index_digest"].as_str().unwrap();
    assert!(
        String::from_utf8_lossy(&digests.stdout).contains(published),
        "{image} was not pulled from the registry: {}",
        text(&digests)
    );
}

/// The release gate: when the arm64 image's service tree is broken, the push fails naming the
/// platform and the service, and the registry has no tag at all for the images.
#[test]
fn a_platform_that_fails_its_smoke_test_publishes_nothing() {
    if skip_without(&[Need::Docker]) {
        return;
    }
    let h = Harness::new();
    let registry = Registry::shared();
    let (org, names) = with_a_broken_arm64_image(&h, registry, "gate");

    let run = push(registry, &org, &[]);
    untag(&names);
    assert!(!run.success, "the push succeeded with a broken arm64 image");
    assert!(
        run.stderr.contains("linux/arm64") && run.stderr.contains("nothing was pushed"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("aiida-prepare"), "{}", run.stderr);
    assert_no_tags(registry, &org);
}

/// With one runner per platform: a platform whose release gate fails pushes nothing, writes no
/// digests file (so the merge job has nothing of it), and the registry has no tag.
#[test]
fn a_platform_job_whose_gate_fails_pushes_nothing_and_writes_no_digests() {
    let h = Harness::new();
    let registry = Registry::shared();
    let (org, names) = with_a_broken_arm64_image(&h, registry, "digest-gate");
    let writes = registry.write_requests(&org);
    let dir = tempfile::tempdir().unwrap();
    let digests = dir.path().join("arm64.json");
    let run = aiida_devc(
        &[
            "images",
            "push",
            "--platform",
            "linux/arm64",
            "--push-by-digest",
            "--registry",
            &registry.host,
            "--organization",
            &org,
            "--digests",
            &digests.display().to_string(),
            "--json",
        ],
        &[],
    );
    untag(&names);
    assert!(!run.success, "the push succeeded with a broken arm64 image");
    assert!(
        run.stderr
            .contains("the release gate failed for linux/arm64: nothing was pushed"),
        "{}",
        run.stderr
    );
    assert!(!digests.exists(), "a digests file was written");
    assert_eq!(
        registry.write_requests(&org),
        writes,
        "something was pushed"
    );
    assert_no_tags(registry, &org);
}

fn assert_no_tags(registry: &Registry, org: &str) {
    for image in IMAGES {
        let repo = format!("{org}/{image}");
        assert_eq!(tags(registry, &repo), BTreeSet::new(), "{repo} got tags");
    }
}

/// The prebuilt images named for `registry` under a new organization (returned, with the local
/// names to untag), the arm64 with-services one rebuilt with a service tree whose profile oneshot
/// fails (COPY only, so the build runs nothing under emulation).
fn with_a_broken_arm64_image(
    h: &Harness,
    registry: &Registry,
    what: &str,
) -> (String, Vec<String>) {
    let org = unique_name(what).replace("aiida-devc-test-", "");
    let names = name_for_registry(h, registry, &org);
    let image = format!(
        "{}/{org}/aiida-core-with-services:aiida-{AIIDA_VERSION}-arm64",
        registry.host
    );
    let context = tempfile::tempdir().unwrap();
    std::fs::write(
        context.path().join("Dockerfile"),
        // The label makes the image this test's own: two tests building the same content would
        // get one image ID, and the first to finish would remove the other's tag with it.
        format!(
            "FROM {image}\nCOPY up /etc/s6-overlay/s6-rc.d/aiida-prepare/up\nLABEL test.organization={org}\n"
        ),
    )
    .unwrap();
    std::fs::write(context.path().join("up"), "/bin/false\n").unwrap();
    let build = std::process::Command::new("docker")
        .env("DOCKER_BUILDKIT", "0")
        .args(["build", "-q", "-t", &image])
        .arg(context.path())
        .output()
        .unwrap();
    assert!(build.status.success(), "docker build: {}", text(&build));
    h.track_image(String::from_utf8_lossy(&build.stdout).trim());
    (org, names)
}

/// An index with only the first manifest of `index` (to stand for another release's index).
mod oci_index_for_test {
    pub type Index = oci_client::manifest::OciImageIndex;

    pub fn only_first(index: &serde_json::Value) -> Index {
        let mut index: Index = serde_json::from_value(index.clone()).unwrap();
        index.manifests.truncate(1);
        index
    }
}

/// `aiida-devc doctor` on a workspace whose image is only in a registry reads the registry's
/// index: one that lacks the host's platform is reported, the published one is not.
#[test]
fn doctor_checks_the_registry_index_for_the_host_platform() {
    if skip_without(&[Need::Docker]) {
        return;
    }
    let p = published();
    let registry = Registry::shared();
    let repo = format!("{}/aiida-core-with-services", p.org);
    let (index, _) = manifest(registry, &repo, &format!("aiida-{AIIDA_VERSION}")).unwrap();
    let mut other_only: oci_index_for_test::Index = serde_json::from_value(index).unwrap();
    let host = aiida_devc::platform::Platform::host().architecture();
    other_only
        .manifests
        .retain(|m| serde_json::to_value(&m.platform).unwrap()["architecture"] != host);
    let (client, rt) = registry_client(registry);
    rt.block_on(client.push_index(&repo, "other-arch-only", other_only))
        .expect("write an index");

    for (tag, finds) in [("edge", false), ("other-arch-only", true)] {
        let image = format!("{}/{repo}:{tag}", registry.host);
        let _ = docker(&["rmi", "--no-prune", &image]);
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join(".devcontainer")).unwrap();
        std::fs::write(
            dir.path().join(".devcontainer/devcontainer.json"),
            format!(
                r#"{{"image": "{image}", "overrideCommand": false, "remoteUser": "aiida",
  "mounts": [{{ "source": "aiida-home-${{devcontainerId}}", "target": "/home/aiida", "type": "volume" }}]}}"#
            ),
        )
        .unwrap();
        let run = aiida_devc(&["doctor", &dir.path().display().to_string()], &[]);
        let out = format!("{}{}", run.stdout, run.stderr);
        assert_eq!(out.contains("[architecture]"), finds, "{image}:\n{out}");
        if finds {
            assert!(out.contains("published for linux/"), "{out}");
        }
    }
}
