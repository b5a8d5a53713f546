//! The manifest of a devcontainer artifact, identical in bytes to what the reference CLI pushes.

use std::collections::BTreeMap;

use serde::Serialize;
use sha2::{Digest, Sha256};

/// Media type of the manifest itself.
pub const OCI_MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
/// Media type of the config blob of every devcontainer artifact.
pub const DEVCONTAINER_CONFIG_MEDIA_TYPE: &str = "application/vnd.devcontainers";
/// Media type of a packaged Feature or Template (an uncompressed tar).
pub const DEVCONTAINER_TAR_LAYER_MEDIA_TYPE: &str = "application/vnd.devcontainers.layer.v1+tar";
/// Media type of `devcontainer-collection.json`.
pub const DEVCONTAINER_COLLECTION_LAYER_MEDIA_TYPE: &str =
    "application/vnd.devcontainers.collection.layer.v1+json";
/// The config blob: an empty JSON object.
pub const EMPTY_CONFIG: &[u8] = b"{}";
/// The layer annotation that carries the file name.
pub const TITLE_ANNOTATION: &str = "org.opencontainers.image.title";
/// The manifest annotation that carries the packaged metadata JSON.
pub const METADATA_ANNOTATION: &str = "dev.containers.metadata";
/// The manifest annotation ghcr.io uses to show the package type.
pub const GITHUB_PACKAGE_TYPE_ANNOTATION: &str = "com.github.package.type";

/// `sha256:<hex>` of some bytes.
pub fn sha256_digest(bytes: &[u8]) -> String {
    let hash = Sha256::digest(bytes);
    let mut hex = String::with_capacity(64);
    for byte in hash {
        hex.push_str(&format!("{byte:02x}"));
    }
    format!("sha256:{hex}")
}

/// One blob referenced by a manifest.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Descriptor {
    #[serde(rename = "mediaType")]
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

/// An OCI image manifest, with the fields in the order the reference CLI writes them.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Manifest {
    #[serde(rename = "schemaVersion")]
    pub schema_version: u32,
    #[serde(rename = "mediaType")]
    pub media_type: String,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

impl Manifest {
    /// Compact JSON, as pushed.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a manifest always serialises")
    }

    /// The digest the registry will know this manifest by.
    pub fn digest(&self) -> String {
        sha256_digest(&self.to_bytes())
    }
}

/// A blob plus the manifest that publishes it: one packaged Feature or Template, or a collection.
#[derive(Debug, Clone)]
pub struct Artifact {
    /// The layer's bytes (the tar, or the collection JSON).
    pub layer: Vec<u8>,
    pub manifest: Manifest,
}

impl Artifact {
    /// A packaged Feature or Template: `layer` is the tar named `file_name`, `metadata` the
    /// packaged JSON (compact in the annotation).
    pub fn package(
        layer: Vec<u8>,
        file_name: &str,
        metadata: &serde_json::Value,
        registry: &str,
        kind: &str,
    ) -> Artifact {
        let mut annotations = BTreeMap::new();
        annotations.insert(METADATA_ANNOTATION.to_owned(), metadata.to_string());
        if registry == "ghcr.io" {
            annotations.insert(
                GITHUB_PACKAGE_TYPE_ANNOTATION.to_owned(),
                format!("devcontainer_{kind}"),
            );
        }
        Artifact::new(
            layer,
            DEVCONTAINER_TAR_LAYER_MEDIA_TYPE,
            file_name,
            Some(annotations),
        )
    }

    /// The file name the layer carries (`org.opencontainers.image.title`).
    pub fn title(&self) -> &str {
        self.manifest.layers[0]
            .annotations
            .as_ref()
            .and_then(|a| a.get(TITLE_ANNOTATION))
            .map_or("", String::as_str)
    }

    /// The collection artifact (`devcontainer-collection.json`).
    pub fn collection(json: Vec<u8>, registry: &str) -> Artifact {
        let annotations = (registry == "ghcr.io").then(|| {
            let mut map = BTreeMap::new();
            map.insert(
                GITHUB_PACKAGE_TYPE_ANNOTATION.to_owned(),
                "devcontainer_collection".to_owned(),
            );
            map
        });
        Artifact::new(
            json,
            DEVCONTAINER_COLLECTION_LAYER_MEDIA_TYPE,
            "devcontainer-collection.json",
            annotations,
        )
    }

    fn new(
        layer: Vec<u8>,
        media_type: &str,
        title: &str,
        annotations: Option<BTreeMap<String, String>>,
    ) -> Artifact {
        let mut title_annotation = BTreeMap::new();
        title_annotation.insert(TITLE_ANNOTATION.to_owned(), title.to_owned());
        let manifest = Manifest {
            schema_version: 2,
            media_type: OCI_MANIFEST_MEDIA_TYPE.to_owned(),
            config: Descriptor {
                media_type: DEVCONTAINER_CONFIG_MEDIA_TYPE.to_owned(),
                digest: sha256_digest(EMPTY_CONFIG),
                size: EMPTY_CONFIG.len() as u64,
                annotations: None,
            },
            layers: vec![Descriptor {
                media_type: media_type.to_owned(),
                digest: sha256_digest(&layer),
                size: layer.len() as u64,
                annotations: Some(title_annotation),
            }],
            annotations,
        };
        Artifact { layer, manifest }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_empty_config_has_the_digest_the_reference_cli_uses() {
        assert_eq!(
            sha256_digest(EMPTY_CONFIG),
            "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
        );
    }

    #[test]
    fn a_feature_manifest_has_the_reference_field_order_and_annotations() {
        let metadata = serde_json::json!({"id": "hello", "version": "1.2.3", "name": "Hello"});
        let artifact = Artifact::package(
            vec![0; 4],
            "devcontainer-feature-hello.tgz",
            &metadata,
            "localhost:5000",
            "feature",
        );
        let text = String::from_utf8(artifact.manifest.to_bytes()).unwrap();
        let expected = format!(
            concat!(
                r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","#,
                r#""config":{{"mediaType":"application/vnd.devcontainers","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2}},"#,
                r#""layers":[{{"mediaType":"application/vnd.devcontainers.layer.v1+tar","digest":"{}","size":4,"#,
                r#""annotations":{{"org.opencontainers.image.title":"devcontainer-feature-hello.tgz"}}}}],"#,
                r#""annotations":{{"dev.containers.metadata":"{{\"id\":\"hello\",\"version\":\"1.2.3\",\"name\":\"Hello\"}}"}}}}"#
            ),
            sha256_digest(&[0; 4])
        );
        assert_eq!(text, expected);
    }

    #[test]
    fn ghcr_gets_the_package_type_annotation_and_collections_no_metadata() {
        let metadata = serde_json::json!({"id": "x"});
        let feature = Artifact::package(vec![], "f.tgz", &metadata, "ghcr.io", "feature");
        let annotations = feature.manifest.annotations.unwrap();
        assert_eq!(
            annotations[GITHUB_PACKAGE_TYPE_ANNOTATION],
            "devcontainer_feature"
        );
        let collection = Artifact::collection(b"{}".to_vec(), "ghcr.io");
        let annotations = collection.manifest.annotations.unwrap();
        assert_eq!(annotations.len(), 1);
        assert_eq!(
            annotations[GITHUB_PACKAGE_TYPE_ANNOTATION],
            "devcontainer_collection"
        );
        assert!(
            Artifact::collection(b"{}".to_vec(), "localhost:1")
                .manifest
                .annotations
                .is_none()
        );
    }
}
