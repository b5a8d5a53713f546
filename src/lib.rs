//! aiida-devc: open an AiiDA plugin in a container.
//!
//! The crate has two faces:
//!
//! * [`init`] is `aiida-init`, the container init and supervisor that runs s6-rc service trees.
//!   It only uses light dependencies so that it builds quickly inside an image build.
//! * Everything else is the developer CLI `aiida-devc` (cargo feature `cli`, on by default):
//!   [`image`] builds the images through the Docker Engine API, [`oci`] and [`collection`]
//!   package and publish devcontainer Features and Templates, [`plugin`] reads a plugin's
//!   metadata, [`devcontainer`] writes and checks `devcontainer.json`, and [`host`] holds what
//!   every command needs from the machine it runs on (the Docker engine, the CA bundle, tools).

pub mod init;

#[cfg(feature = "cli")]
pub mod cli;
#[cfg(feature = "cli")]
pub mod collection;
#[cfg(feature = "cli")]
pub mod devcontainer;
#[cfg(feature = "cli")]
pub mod host;
#[cfg(feature = "cli")]
pub mod image;
#[cfg(feature = "cli")]
pub mod oci;
#[cfg(feature = "cli")]
pub mod plugin;
