//! One registry, reached through `oci-client`: list tags, read and push manifests and blobs.
//!
//! Only the host name `localhost` (with any port) is spoken to over plain http, as the reference
//! devcontainer CLI does; every other registry over https (rustls), trusting the CA bundle of
//! [`crate::host::ca`] in addition to the system's roots. Failures become a [`RegistryError`]
//! that names the registry and what was being done, and never contains a credential.

use std::time::Duration;

use oci_client::client::{Certificate, CertificateEncoding, ClientConfig, ClientProtocol};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::manifest::{OCI_IMAGE_INDEX_MEDIA_TYPE, OciImageIndex};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};

use super::artifact::{Artifact, EMPTY_CONFIG, OCI_MANIFEST_MEDIA_TYPE};
use super::auth::{AuthEnv, Credential};
use crate::host::ca::CaBundle;

/// Why talking to a registry failed, in words a user can act on.
#[derive(Debug)]
pub enum RegistryError {
    /// 401: no credential, or one the registry does not accept.
    Unauthorized {
        registry: String,
        action: String,
        credential: Option<String>,
    },
    /// 403: the credential is known but may not do this.
    Forbidden {
        registry: String,
        action: String,
        credential: Option<String>,
    },
    /// Nothing answers (DNS, connection refused, TLS failure, timeout).
    Unreachable {
        registry: String,
        action: String,
        reason: String,
    },
    /// Anything else the registry or the transport reported.
    Other {
        registry: String,
        action: String,
        reason: String,
    },
}

impl std::fmt::Display for RegistryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let used = |credential: &Option<String>| match credential {
            Some(source) => format!("the credential from {source}"),
            None => "no credential".to_owned(),
        };
        match self {
            RegistryError::Unauthorized {
                registry,
                action,
                credential,
            } => write!(
                f,
                "registry {registry} refused to authenticate while {action} (HTTP 401 Unauthorized; used {}). \
                 Log in with `docker login {registry}`, or set DEVCONTAINERS_OCI_AUTH='{registry}|USER|TOKEN'{}.",
                used(credential),
                if registry == "ghcr.io" {
                    " or GITHUB_TOKEN"
                } else {
                    ""
                }
            ),
            RegistryError::Forbidden {
                registry,
                action,
                credential,
            } => write!(
                f,
                "registry {registry} denied access while {action} (HTTP 403 Forbidden; used {}). \
                 The account needs push rights on this namespace (for ghcr.io: a token with write:packages).",
                used(credential)
            ),
            RegistryError::Unreachable {
                registry,
                action,
                reason,
            } => write!(
                f,
                "registry {registry} is unreachable while {action}: {reason}. Check the name and port, \
                 and that it is running (plain http is only used for localhost)."
            ),
            RegistryError::Other {
                registry,
                action,
                reason,
            } => {
                write!(f, "registry {registry} failed while {action}: {reason}")
            }
        }
    }
}

impl std::error::Error for RegistryError {}

/// A connection to one registry with the credential found for it.
pub struct Registry {
    host: String,
    client: Client,
    auth: RegistryAuth,
    credential_source: Option<String>,
}

impl Registry {
    /// Set up a client for `host` (`name[:port]`) with the credential [`super::auth::lookup`]
    /// finds in `env`, and the extra CA bundle if any.
    pub fn connect(host: &str, env: &AuthEnv, ca: Option<&CaBundle>) -> anyhow::Result<Registry> {
        let credential = super::auth::lookup(host, env)?;
        Registry::with_credential(host, credential, ca)
    }

    /// Set up a client for `host` with `credential`. Fails when the CA bundle holds a
    /// certificate the TLS library cannot load.
    pub fn with_credential(
        host: &str,
        credential: Option<Credential>,
        ca: Option<&CaBundle>,
    ) -> anyhow::Result<Registry> {
        let plain_http = is_localhost(host);
        let protocol = if plain_http {
            ClientProtocol::Http
        } else {
            ClientProtocol::Https
        };
        let extra_root_certificates = ca
            .map(|bundle| {
                split_pem(&bundle.pem)
                    .into_iter()
                    .map(|pem| Certificate {
                        encoding: CertificateEncoding::Pem,
                        data: pem.into_bytes(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        let config = ClientConfig {
            protocol,
            use_monolithic_push: true,
            extra_root_certificates,
            connect_timeout: Some(Duration::from_secs(10)),
            read_timeout: Some(Duration::from_secs(120)),
            user_agent: concat!("aiida-devc/", env!("CARGO_PKG_VERSION")),
            ..Default::default()
        };
        let (auth, credential_source) = match credential {
            Some(c) => {
                let source = c.source.to_string();
                (RegistryAuth::Basic(c.username, c.secret), Some(source))
            }
            None => (RegistryAuth::Anonymous, None),
        };
        install_crypto_provider();
        let client = Client::try_from(config).map_err(|e| {
            let bundle = ca.map_or(String::new(), |ca| {
                format!(" with the CA bundle {}", ca.path.display())
            });
            anyhow::anyhow!("cannot set up a client for registry {host}{bundle}: {e}")
        })?;
        Ok(Registry {
            host: host.to_owned(),
            client,
            auth,
            credential_source,
        })
    }

    pub fn host(&self) -> &str {
        &self.host
    }

    fn reference(&self, repository: &str, tag: &str) -> Reference {
        Reference::with_tag(self.host.clone(), repository.to_owned(), tag.to_owned())
    }

    /// Every tag of `repository`; a repository that does not exist yet has none.
    pub async fn list_tags(&self, repository: &str) -> Result<Vec<String>, RegistryError> {
        let reference = self.reference(repository, "latest");
        match self
            .client
            .list_tags(&reference, &self.auth, None, None)
            .await
        {
            Ok(response) => Ok(response.tags),
            Err(e) if is_not_found(&e) => Ok(Vec::new()),
            Err(e) => Err(self.explain(
                &format!("listing the tags of {}/{repository}", self.host),
                &e,
            )),
        }
    }

    /// The manifest at `repository:tag`, raw, or `None` when there is none.
    pub async fn manifest(
        &self,
        repository: &str,
        tag: &str,
    ) -> Result<Option<Vec<u8>>, RegistryError> {
        let reference = self.reference(repository, tag);
        match self
            .client
            .pull_manifest_raw(&reference, &self.auth, &[OCI_MANIFEST_MEDIA_TYPE])
            .await
        {
            Ok((bytes, _digest)) => Ok(Some(bytes.to_vec())),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(self.explain(&format!("reading {}/{repository}:{tag}", self.host), &e)),
        }
    }

    /// A blob's bytes.
    pub async fn blob(&self, repository: &str, digest: &str) -> Result<Vec<u8>, RegistryError> {
        let reference = self.reference(repository, "latest");
        let mut out = Vec::new();
        self.client
            .store_auth_if_needed(&self.host, &self.auth)
            .await;
        self.client
            .pull_blob(&reference, digest, &mut out)
            .await
            .map_err(|e| {
                self.explain(
                    &format!("downloading {digest} from {}/{repository}", self.host),
                    &e,
                )
            })?;
        Ok(out)
    }

    /// Upload the config and layer blobs of `artifact` to `repository`.
    pub async fn push_blobs(
        &self,
        repository: &str,
        artifact: &Artifact,
    ) -> Result<(), RegistryError> {
        self.push_blob(
            repository,
            EMPTY_CONFIG.to_vec(),
            &artifact.manifest.config.digest,
        )
        .await?;
        self.push_blob(
            repository,
            artifact.layer.clone(),
            &artifact.manifest.layers[0].digest,
        )
        .await
    }

    /// Point `repository:tag` at the manifest of `artifact` (whose blobs must be uploaded).
    pub async fn push_manifest(
        &self,
        repository: &str,
        tag: &str,
        artifact: &Artifact,
    ) -> Result<(), RegistryError> {
        self.push_image_manifest(
            repository,
            tag,
            artifact.manifest.to_bytes(),
            OCI_MANIFEST_MEDIA_TYPE,
        )
        .await
    }

    /// Whether `repository` holds the blob `digest`.
    pub async fn has_blob(&self, repository: &str, digest: &str) -> Result<bool, RegistryError> {
        let reference = self.reference(repository, "latest");
        self.client
            .store_auth_if_needed(&self.host, &self.auth)
            .await;
        self.client
            .blob_exists(&reference, digest)
            .await
            .map_err(|e| {
                self.explain(
                    &format!("looking for {digest} in {}/{repository}", self.host),
                    &e,
                )
            })
    }

    /// Make the blob `digest` of `from` (same registry) part of `repository` without uploading
    /// it again; `false` when the registry does not mount it (then it must be uploaded).
    pub async fn mount_blob(&self, repository: &str, from: &str, digest: &str) -> bool {
        self.client
            .store_auth_if_needed(&self.host, &self.auth)
            .await;
        self.client
            .mount_blob(
                &self.reference(repository, "latest"),
                &self.reference(from, "latest"),
                digest,
            )
            .await
            .is_ok()
    }

    /// Upload `data` as the blob `digest` of `repository`.
    pub async fn push_blob(
        &self,
        repository: &str,
        data: Vec<u8>,
        digest: &str,
    ) -> Result<(), RegistryError> {
        let reference = self.reference(repository, "latest");
        self.client
            .store_auth_if_needed(&self.host, &self.auth)
            .await;
        self.client
            .push_blob(&reference, data, digest)
            .await
            .map_err(|e| {
                self.explain(
                    &format!("uploading {digest} to {}/{repository}", self.host),
                    &e,
                )
            })?;
        Ok(())
    }

    /// Point `repository:tag` at the image manifest `bytes` of `media_type` (whose blobs must be
    /// uploaded).
    pub async fn push_image_manifest(
        &self,
        repository: &str,
        tag: &str,
        bytes: Vec<u8>,
        media_type: &str,
    ) -> Result<(), RegistryError> {
        let reference = self.reference(repository, tag);
        let content_type = media_type.parse().expect("a valid header value");
        self.client
            .push_manifest_raw(&reference, bytes, content_type)
            .await
            .map_err(|e| self.explain(&format!("tagging {}/{repository}:{tag}", self.host), &e))?;
        Ok(())
    }

    /// Where the credential in use came from (`None`: anonymous).
    pub fn credential_source(&self) -> Option<&str> {
        self.credential_source.as_deref()
    }

    /// The descriptor (media type, digest, size) of the image manifest or index at
    /// `repository:reference`, or `None` when there is none.
    pub async fn descriptor(
        &self,
        repository: &str,
        reference: &str,
    ) -> Result<Option<Descriptor>, RegistryError> {
        let target = self.reference(repository, reference);
        match self
            .client
            .pull_manifest_raw(&target, &self.auth, IMAGE_MANIFEST_MEDIA_TYPES)
            .await
        {
            Ok((bytes, digest)) => {
                let media_type = serde_json::from_slice::<serde_json::Value>(&bytes)
                    .ok()
                    .and_then(|v| v["mediaType"].as_str().map(str::to_owned))
                    .unwrap_or_else(|| OCI_MANIFEST_MEDIA_TYPE.to_owned());
                Ok(Some(Descriptor {
                    media_type,
                    digest,
                    size: i64::try_from(bytes.len()).expect("a manifest is far below 2^63 bytes"),
                    bytes: bytes.to_vec(),
                }))
            }
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(self.explain(
                &format!("reading {}/{repository}:{reference}", self.host),
                &e,
            )),
        }
    }

    /// Point `repository:tag` at the OCI image index `index` (whose manifests must be in the same
    /// repository); returns the index's URL.
    pub async fn push_index(
        &self,
        repository: &str,
        tag: &str,
        index: OciImageIndex,
    ) -> Result<String, RegistryError> {
        let reference = self.reference(repository, tag);
        self.client
            .push_manifest_list(&reference, &self.auth, index)
            .await
            .map_err(|e| self.explain(&format!("tagging {}/{repository}:{tag}", self.host), &e))
    }

    fn explain(&self, action: &str, error: &OciDistributionError) -> RegistryError {
        let registry = self.host.clone();
        let action = action.to_owned();
        let credential = self.credential_source.clone();
        match status_of(error) {
            Some(401) => {
                return RegistryError::Unauthorized {
                    registry,
                    action,
                    credential,
                };
            }
            Some(403) => {
                return RegistryError::Forbidden {
                    registry,
                    action,
                    credential,
                };
            }
            _ => {}
        }
        if let OciDistributionError::RequestError(e) = error {
            if e.is_connect() || e.is_timeout() || e.status().is_none() {
                return RegistryError::Unreachable {
                    registry,
                    action,
                    reason: transport_reason(e),
                };
            }
        }
        RegistryError::Other {
            registry,
            action,
            reason: error.to_string(),
        }
    }
}

/// rustls needs one process-wide crypto provider: ring, which builds in seconds (see Cargo.toml).
fn install_crypto_provider() {
    // An error means a provider is installed already, which is as good.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The image manifest that the engine's `docker push` writes (and `images push`, see
/// [`crate::image::layers`]).
pub const DOCKER_MANIFEST_MEDIA_TYPE: &str = "application/vnd.docker.distribution.manifest.v2+json";

/// Media types of image manifests and indexes, OCI's and Docker's (what `docker push` writes).
pub const IMAGE_MANIFEST_MEDIA_TYPES: &[&str] = &[
    OCI_MANIFEST_MEDIA_TYPE,
    OCI_IMAGE_INDEX_MEDIA_TYPE,
    DOCKER_MANIFEST_MEDIA_TYPE,
    "application/vnd.docker.distribution.manifest.list.v2+json",
];

/// A manifest as stored in a registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Descriptor {
    pub media_type: String,
    /// `sha256:...`
    pub digest: String,
    pub size: i64,
    /// The manifest itself.
    pub bytes: Vec<u8>,
}

/// `localhost` or `localhost:PORT`: the only registries spoken to over plain http.
pub fn is_localhost(host: &str) -> bool {
    host.split(':')
        .next()
        .is_some_and(|name| name.eq_ignore_ascii_case("localhost"))
}

fn status_of(error: &OciDistributionError) -> Option<u16> {
    match error {
        OciDistributionError::UnauthorizedError { .. } => Some(401),
        OciDistributionError::AuthenticationFailure(_) => Some(401),
        OciDistributionError::ServerError { code, .. } => Some(*code),
        OciDistributionError::RegistryError { envelope, .. } => {
            envelope.errors.iter().find_map(|e| match e.code {
                OciErrorCode::Unauthorized => Some(401),
                OciErrorCode::Denied => Some(403),
                OciErrorCode::NameUnknown
                | OciErrorCode::ManifestUnknown
                | OciErrorCode::NotFound => Some(404),
                _ => None,
            })
        }
        OciDistributionError::ImageManifestNotFoundError(_) => Some(404),
        OciDistributionError::RequestError(e) => e.status().map(|s| s.as_u16()),
        _ => None,
    }
}

fn is_not_found(error: &OciDistributionError) -> bool {
    status_of(error) == Some(404)
}

/// The innermost cause of a transport failure ("Connection refused", a TLS complaint), which
/// says more than reqwest's outer "error sending request".
fn transport_reason(error: &(dyn std::error::Error + 'static)) -> String {
    let mut reason = error.to_string();
    let mut source = error.source();
    while let Some(inner) = source {
        reason = inner.to_string();
        source = inner.source();
    }
    reason
}

/// The PEM blocks of a bundle, one certificate each (reqwest reads one per call).
fn split_pem(bundle: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current = String::new();
    for line in bundle.lines() {
        if line.trim() == "-----BEGIN CERTIFICATE-----" {
            current.clear();
        }
        current.push_str(line);
        current.push('\n');
        if line.trim() == "-----END CERTIFICATE-----" {
            blocks.push(std::mem::take(&mut current));
        }
    }
    blocks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_localhost_is_plain_http() {
        assert!(is_localhost("localhost:5000"));
        assert!(is_localhost("localhost"));
        assert!(!is_localhost("127.0.0.1:5000"));
        assert!(!is_localhost("localhost.example.org"));
        assert!(!is_localhost("ghcr.io"));
    }

    fn registry_with_secret() -> Registry {
        let credential = Credential {
            username: "me".into(),
            secret: "s3cret-token".into(),
            source: super::super::auth::Source::Env,
        };
        Registry::with_credential("registry.example.org", Some(credential), None).unwrap()
    }

    #[test]
    fn a_403_names_the_registry_and_the_credential_source_but_not_the_secret() {
        let registry = registry_with_secret();
        let error = OciDistributionError::ServerError {
            code: 403,
            url: "https://registry.example.org/v2/x/blobs/uploads/".into(),
            message: "denied".into(),
        };
        let text = registry
            .explain("uploading to registry.example.org/x", &error)
            .to_string();
        assert!(text.starts_with("registry registry.example.org denied access while uploading to registry.example.org/x (HTTP 403 Forbidden; used the credential from DEVCONTAINERS_OCI_AUTH)"), "{text}");
        assert!(!text.contains("s3cret-token"), "{text}");
    }

    #[test]
    fn registry_error_codes_map_to_401_and_403() {
        let registry = registry_with_secret();
        let envelope = |code: &str| -> OciDistributionError {
            let envelope = serde_json::from_str(&format!(
                r#"{{"errors":[{{"code":"{code}","message":"m"}}]}}"#
            ))
            .unwrap();
            OciDistributionError::RegistryError {
                envelope,
                url: "u".into(),
            }
        };
        assert!(matches!(
            registry.explain("x", &envelope("DENIED")),
            RegistryError::Forbidden { .. }
        ));
        assert!(matches!(
            registry.explain("x", &envelope("UNAUTHORIZED")),
            RegistryError::Unauthorized { .. }
        ));
        assert!(matches!(
            registry.explain(
                "x",
                &OciDistributionError::AuthenticationFailure("no".into())
            ),
            RegistryError::Unauthorized { .. }
        ));
    }

    #[test]
    fn an_https_client_trusts_a_real_bundle() {
        let bundle = CaBundle::read(std::path::Path::new(crate::host::ca::HOST_BUNDLE))
            .expect("the host's CA bundle (install ca-certificates)");
        let registry = Registry::with_credential("registry.example.org", None, Some(&bundle));
        assert!(registry.is_ok(), "{:?}", registry.err());
    }

    #[test]
    fn a_bundle_is_split_into_certificates() {
        let one = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        assert_eq!(
            split_pem(&format!("# comment\n{one}{one}")),
            vec![one.to_owned(), one.to_owned()]
        );
    }
}
