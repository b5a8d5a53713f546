//! What `--push` uploads for one platform's image: its layers, gzip-compressed harder than the
//! engine's own `docker push` does, so that users download less.
//!
//! The engine compresses each layer as it pushes, with Go's default gzip level. Here the image is
//! read from the engine as it is (`docker save`), and each layer is compressed with libdeflate's
//! near-optimal parser ([`LEVEL`]): 6-7 % smaller than the engine's on aiida-core-base, and still
//! plain gzip, which every client that pulls images reads (Docker 20.10 included). The layers'
//! contents are unchanged: each one's SHA-256 is checked against the image config's `diff_ids`,
//! and the config is pushed byte for byte, so the manifest names the local image ID as its config
//! digest and `docker pull` gives the same image. libdeflate's output depends only on its input
//! (the gzip header has no time), so republishing gives the same digests.
//!
//! A layer is compressed once per run ([`Layers`] keeps it by `diff_id`): the layers aiida-core-base
//! and aiida-core-with-services share are compressed once, and uploaded once per registry (mounted
//! from the other repository where the registry allows it). An upload that fails on the way (a
//! reset connection, a 5xx) is tried again, as the engine's push does; a refusal is final.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{Context, bail};
use futures_util::StreamExt;
use serde_json::{Value, json};

use crate::host::docker::Docker;
use crate::oci::artifact::sha256_digest;
use crate::oci::registry::{DOCKER_MANIFEST_MEDIA_TYPE, Registry, RegistryError};

/// libdeflate's level: 10 is the first of its near-optimal levels. 12 saves another 0.2 % at
/// 1.7 times the time (measured on aiida-core-base's largest layers).
pub const LEVEL: i32 = 10;

/// The media types the engine's `docker push` uses, which every engine and registry knows (the
/// manifest's: [`DOCKER_MANIFEST_MEDIA_TYPE`]).
const CONFIG_MEDIA_TYPE: &str = "application/vnd.docker.container.image.v1+json";
const LAYER_MEDIA_TYPE: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";

/// One compressed layer, kept in the run's folder until it is pushed everywhere.
#[derive(Debug, Clone)]
pub struct Blob {
    /// `sha256:...` of the compressed bytes.
    pub digest: String,
    pub size: u64,
    path: PathBuf,
}

/// The compressed layers of one run, by `diff_id`, and where each was uploaded.
pub struct Layers {
    dir: tempfile::TempDir,
    compressed: HashMap<String, Blob>,
    /// `(registry, digest)` → a repository there that holds it.
    uploaded: HashMap<(String, String), String>,
}

/// An image as `docker save` wrote it: its config and its uncompressed layers, in order.
struct Saved {
    config: Vec<u8>,
    layers: Vec<Layer>,
    /// Where it was unpacked (removed once its layers are compressed).
    dir: PathBuf,
}

impl Layers {
    pub fn new() -> anyhow::Result<Layers> {
        Ok(Layers {
            dir: tempfile::Builder::new()
                .prefix("aiida-devc-layers-")
                .tempdir()
                .context("cannot make a folder for the compressed layers")?,
            compressed: HashMap::new(),
            uploaded: HashMap::new(),
        })
    }

    /// Push the local `image` to `repository:tag` of `registry`: its layers compressed
    /// (libdeflate at [`LEVEL`]), its config as it is, and a manifest naming them.
    pub async fn push(
        &mut self,
        docker: &Docker,
        image: &str,
        registry: &Registry,
        repository: &str,
        tag: &str,
    ) -> anyhow::Result<()> {
        let saved = self.save(docker, image).await?;
        self.compress_missing(&saved).await?;
        std::fs::remove_dir_all(&saved.dir).ok();
        let mut layers = Vec::new();
        for (diff_id, _) in &saved.layers {
            let blob = self.compressed[diff_id].clone();
            self.upload(registry, repository, &blob).await?;
            layers.push(json!({
                "mediaType": LAYER_MEDIA_TYPE,
                "size": blob.size,
                "digest": blob.digest,
            }));
        }
        let config_digest = sha256_digest(&saved.config);
        if !registry.has_blob(repository, &config_digest).await? {
            registry
                .push_blob(repository, saved.config.clone(), &config_digest)
                .await?;
        }
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": DOCKER_MANIFEST_MEDIA_TYPE,
            "config": {
                "mediaType": CONFIG_MEDIA_TYPE,
                "size": saved.config.len(),
                "digest": config_digest,
            },
            "layers": layers,
        });
        registry
            .push_image_manifest(
                repository,
                tag,
                serde_json::to_vec(&manifest)?,
                DOCKER_MANIFEST_MEDIA_TYPE,
            )
            .await?;
        Ok(())
    }

    /// `docker save` of `image`, unpacked into a folder of its own.
    async fn save(&self, docker: &Docker, image: &str) -> anyhow::Result<Saved> {
        let dir = tempfile::Builder::new()
            .prefix("saved-")
            .tempdir_in(self.dir.path())?
            .keep();
        let archive = dir.join("image.tar");
        {
            let mut file = std::fs::File::create(&archive)
                .with_context(|| format!("cannot write {}", archive.display()))?;
            let mut stream = docker.export_image(image);
            while let Some(chunk) = stream.next().await {
                let chunk =
                    chunk.with_context(|| format!("the engine could not export {image}"))?;
                file.write_all(&chunk)
                    .with_context(|| format!("cannot write {}", archive.display()))?;
            }
        }
        let unpacked = dir.join("image");
        tar::Archive::new(std::fs::File::open(&archive)?)
            .unpack(&unpacked)
            .with_context(|| format!("the engine's export of {image} is not a readable tar"))?;
        std::fs::remove_file(&archive).ok();
        let (config, layers) = read_saved(&unpacked)
            .with_context(|| format!("the engine's export of {image} is not an image archive"))?;
        Ok(Saved {
            config,
            layers,
            dir,
        })
    }

    /// Compress every layer of `saved` that this run has not compressed yet, on every core.
    async fn compress_missing(&mut self, saved: &Saved) -> anyhow::Result<()> {
        // A layer listed twice (two empty ones) is compressed once.
        let todo: HashMap<String, PathBuf> = saved
            .layers
            .iter()
            .filter(|(diff_id, _)| !self.compressed.contains_key(diff_id))
            .cloned()
            .collect();
        let todo = todo.into_iter().collect();
        let out = self.dir.path().to_owned();
        let done = tokio::task::spawn_blocking(move || compress_all(todo, &out)).await??;
        self.compressed.extend(done);
        Ok(())
    }

    /// Make `blob` part of `repository`: already there, mounted from another repository of the
    /// same registry that got it in this run, or uploaded.
    async fn upload(
        &mut self,
        registry: &Registry,
        repository: &str,
        blob: &Blob,
    ) -> anyhow::Result<()> {
        let key = (registry.host().to_owned(), blob.digest.clone());
        if !registry.has_blob(repository, &blob.digest).await? {
            let mounted = match self.uploaded.get(&key) {
                Some(from) if from != repository => {
                    registry.mount_blob(repository, from, &blob.digest).await
                }
                _ => false,
            };
            if !mounted {
                let data = std::fs::read(&blob.path)
                    .with_context(|| format!("cannot read {}", blob.path.display()))?;
                with_retries(&UPLOAD_RETRY_DELAYS, || {
                    registry.push_blob(repository, data.clone(), &blob.digest)
                })
                .await?;
            }
        }
        self.uploaded.insert(key, repository.to_owned());
        Ok(())
    }
}

/// How long an upload that failed on the way waits before each new try: the engine's `docker
/// push`, which this replaces, also tries a layer again (up to 5 times).
const UPLOAD_RETRY_DELAYS: [Duration; 3] = [
    Duration::from_secs(2),
    Duration::from_secs(5),
    Duration::from_secs(10),
];

/// `attempt()`, tried again after each of `delays` while it fails on the way (a registry that
/// stopped answering or answered with an error of its own, as a 5xx or a reset connection do).
/// A refusal (401, 403) is final at once: trying again cannot change it.
async fn with_retries<T, F, Fut>(delays: &[Duration], mut attempt: F) -> Result<T, RegistryError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, RegistryError>>,
{
    let mut delays = delays.iter();
    loop {
        match attempt().await {
            Ok(value) => return Ok(value),
            Err(error @ (RegistryError::Unreachable { .. } | RegistryError::Other { .. })) => {
                let Some(delay) = delays.next() else {
                    return Err(error);
                };
                eprintln!("{error}; trying again in {} s", delay.as_secs());
                tokio::time::sleep(*delay).await;
            }
            Err(refused) => return Err(refused),
        }
    }
}

/// An uncompressed layer: its `diff_id` and the file holding it.
type Layer = (String, PathBuf);

/// The config and the layers of an image archive unpacked in `dir` (the `manifest.json` of
/// `docker save`, in the engine's own layout or the OCI layout of newer engines).
/// [`compress_layer`] checks each file against its `diff_id`.
fn read_saved(dir: &Path) -> anyhow::Result<(Vec<u8>, Vec<Layer>)> {
    let manifest: Value = serde_json::from_slice(&std::fs::read(dir.join("manifest.json"))?)
        .context("manifest.json is not JSON")?;
    let entry = &manifest[0];
    let config_path = entry["Config"]
        .as_str()
        .context("manifest.json names no Config")?;
    let config = std::fs::read(dir.join(config_path))?;
    let config_json: Value =
        serde_json::from_slice(&config).context("the image config is not JSON")?;
    let diff_ids: Vec<String> = config_json["rootfs"]["diff_ids"]
        .as_array()
        .context("the image config has no rootfs.diff_ids")?
        .iter()
        .filter_map(|d| d.as_str().map(str::to_owned))
        .collect();
    let paths: Vec<PathBuf> = entry["Layers"]
        .as_array()
        .context("manifest.json names no Layers")?
        .iter()
        .filter_map(|p| p.as_str().map(|p| dir.join(p)))
        .collect();
    if paths.len() != diff_ids.len() {
        bail!(
            "{} layers in manifest.json but {} in the image config",
            paths.len(),
            diff_ids.len()
        );
    }
    Ok((config, diff_ids.into_iter().zip(paths).collect()))
}

/// Compress `layers` (`diff_id`, uncompressed tar) into `out`, the largest first, one per core.
fn compress_all(mut layers: Vec<Layer>, out: &Path) -> anyhow::Result<HashMap<String, Blob>> {
    layers.sort_by_key(|(_, path)| std::fs::metadata(path).map_or(0, |m| m.len()));
    let queue = Mutex::new(layers);
    let results = Mutex::new(HashMap::new());
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get().min(4));
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                scope.spawn(|| -> anyhow::Result<()> {
                    loop {
                        let Some((diff_id, path)) = queue.lock().expect("not poisoned").pop()
                        else {
                            return Ok(());
                        };
                        let blob = compress_layer(&diff_id, &path, out)?;
                        results.lock().expect("not poisoned").insert(diff_id, blob);
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a compression thread panicked"))
            .collect::<anyhow::Result<Vec<()>>>()
    })?;
    Ok(results.into_inner().expect("not poisoned"))
}

/// Compress the layer at `path`, whose SHA-256 must be `diff_id`, into a file in `out`.
fn compress_layer(diff_id: &str, path: &Path, out: &Path) -> anyhow::Result<Blob> {
    let mut tar = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    // Engines that keep images compressed (containerd's image store) may export the layers as
    // they were pulled.
    if tar.starts_with(&[0x1f, 0x8b]) {
        let mut plain = Vec::new();
        flate2::read::MultiGzDecoder::new(tar.as_slice())
            .read_to_end(&mut plain)
            .with_context(|| format!("{} is not readable gzip", path.display()))?;
        tar = plain;
    }
    let found = sha256_digest(&tar);
    if found != diff_id {
        bail!(
            "a layer of the engine's export has digest {found}, not the image config's {diff_id}"
        );
    }
    let gz = gzip(&tar)?;
    let digest = sha256_digest(&gz);
    let file = out.join(digest.trim_start_matches("sha256:"));
    std::fs::write(&file, &gz).with_context(|| format!("cannot write {}", file.display()))?;
    Ok(Blob {
        digest,
        size: gz.len() as u64,
        path: file,
    })
}

/// `data` as one gzip member, compressed at [`LEVEL`].
fn gzip(data: &[u8]) -> anyhow::Result<Vec<u8>> {
    let level = libdeflater::CompressionLvl::new(LEVEL).expect("a level libdeflate has");
    let mut compressor = libdeflater::Compressor::new(level);
    let mut gz = vec![0; compressor.gzip_compress_bound(data.len())];
    let n = compressor
        .gzip_compress(data, &mut gz)
        .map_err(|e| anyhow::anyhow!("gzip compression failed: {e:?}"))?;
    gz.truncate(n);
    Ok(gz)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tar of text and binary-ish files, as a layer holds.
    fn sample_layer() -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for i in 0..200u32 {
            let text = format!("def function_{i}(x):\n    return x * {i} + {}\n", i * i).repeat(40);
            let mut header = tar::Header::new_gnu();
            header.set_size(text.len() as u64);
            header.set_mode(0o644);
            header.set_mtime(0);
            header.set_cksum();
            builder
                .append_data(&mut header, format!("lib/module_{i}.py"), text.as_bytes())
                .unwrap();
        }
        builder.into_inner().unwrap()
    }

    #[test]
    fn a_layer_compresses_to_gzip_that_gives_it_back_smaller_than_the_default_level() {
        let layer = sample_layer();
        let gz = gzip(&layer).unwrap();
        assert_eq!(&gz[..2], &[0x1f, 0x8b], "a gzip member");
        // Any gzip reader gives the layer back (flate2 here, Go's in the engine).
        let mut back = Vec::new();
        flate2::read::GzDecoder::new(gz.as_slice())
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, layer);
        let mut default = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        default.write_all(&layer).unwrap();
        let default = default.finish().unwrap();
        assert!(
            gz.len() < default.len(),
            "libdeflate level {LEVEL}: {} bytes, zlib's default level: {} bytes",
            gz.len(),
            default.len()
        );
    }

    #[test]
    fn the_same_layer_gives_the_same_blob() {
        let layer = sample_layer();
        assert_eq!(
            sha256_digest(&gzip(&layer).unwrap()),
            sha256_digest(&gzip(&layer).unwrap())
        );
        assert_eq!(
            sha256_digest(b""),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    fn failure(unreachable: bool) -> RegistryError {
        let (registry, action) = ("localhost:5000".to_owned(), "uploading".to_owned());
        if unreachable {
            RegistryError::Unreachable {
                registry,
                action,
                reason: "connection reset".to_owned(),
            }
        } else {
            RegistryError::Forbidden {
                registry,
                action,
                credential: None,
            }
        }
    }

    #[test]
    fn an_upload_that_fails_on_the_way_is_tried_again_and_a_refusal_is_not() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let delays = [Duration::ZERO; 3];
        // Fails twice on the way, then succeeds: three tries.
        let mut tries = 0;
        let result = rt.block_on(with_retries(&delays, || {
            tries += 1;
            let outcome = if tries < 3 {
                Err(failure(true))
            } else {
                Ok(tries)
            };
            async move { outcome }
        }));
        assert_eq!(result.unwrap(), 3);
        // Fails on the way every time: one try and one per delay, then the last error.
        let mut tries = 0;
        let result: Result<(), _> = rt.block_on(with_retries(&delays, || {
            tries += 1;
            async { Err(failure(true)) }
        }));
        assert!(matches!(result, Err(RegistryError::Unreachable { .. })));
        assert_eq!(tries, 4);
        // Refused: no second try.
        let mut tries = 0;
        let result: Result<(), _> = rt.block_on(with_retries(&delays, || {
            tries += 1;
            async { Err(failure(false)) }
        }));
        assert!(matches!(result, Err(RegistryError::Forbidden { .. })));
        assert_eq!(tries, 1);
    }

    #[test]
    fn a_layer_that_is_not_the_configs_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("layer.tar");
        std::fs::write(&path, sample_layer()).unwrap();
        let wrong = sha256_digest(b"another layer");
        let err = compress_layer(&wrong, &path, dir.path()).unwrap_err();
        assert!(err.to_string().contains(&wrong), "{err}");
        let right = sha256_digest(&sample_layer());
        let blob = compress_layer(&right, &path, dir.path()).unwrap();
        assert_eq!(blob.size, std::fs::metadata(&blob.path).unwrap().len());
    }
}
