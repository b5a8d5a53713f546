//! aiida-devc: open an AiiDA plugin in a container.
//!
//! This crate is the developer CLI `aiida-devc`, for Linux, macOS and Windows. The container init
//! `aiida-init` (`crates/aiida-init`, Linux only) is another crate of the workspace; this one
//! shares only the schema of its state file with it (`crates/aiida-init-state`).
//!
//! * [`image`] builds the images through the Docker Engine API;
//! * [`oci`] and [`collection`] package and publish devcontainer Features and Templates;
//! * [`plugin`] reads a plugin's metadata;
//! * [`devcontainer`] writes and checks `devcontainer.json`, and brings a workspace up;
//! * [`jsonc`] is the JSON dialect the devcontainer files are read in;
//! * [`platform`] names each platform the way Docker, OCI, Rust and Debian do;
//! * [`host`] holds what every command needs from the machine it runs on (the Docker engine,
//!   the CA bundle, tools).

pub mod cli;
pub mod collection;
pub mod devcontainer;
pub mod host;
pub mod image;
pub mod jsonc;
pub mod oci;
pub mod platform;
pub mod plugin;
