//! OCI artifacts for devcontainer Features and Templates.
//!
//! A published Feature or Template is an OCI image manifest whose config is the two-byte JSON
//! blob `{}` with media type `application/vnd.devcontainers`, and whose single layer is the
//! packaged folder (an uncompressed tar, media type `application/vnd.devcontainers.layer.v1+tar`).
//! The manifest carries the packaged metadata JSON in the annotation `dev.containers.metadata`.
//! A collection (every Feature or Template of a namespace) is one more manifest at
//! `<registry>/<namespace>:latest` whose layer is `devcontainer-collection.json`.
//!
//! [`artifact`] builds those manifests byte for byte as the reference devcontainer CLI does,
//! [`auth`] finds the credentials for a registry the way the reference CLI and docker do, and
//! [`registry`] talks to a registry (plain http for `localhost` only) through the `oci-client`
//! crate, turning its failures into messages that name the registry and never a credential.

pub mod artifact;
pub mod auth;
pub mod registry;

pub use artifact::{Artifact, Manifest};
pub use registry::{Registry, RegistryError};
