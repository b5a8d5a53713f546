//! `devcontainer.json` for a plugin workspace: `aiida-devc init`, `up` and `doctor`.
//!
//! * [`config`] says what a working configuration for an AiiDA plugin holds, each setting with
//!   the comment that explains it;
//! * [`merge`] writes those settings into a new or existing file through jsonc-parser's concrete
//!   syntax tree, keeping the user's comments, keys and order;
//! * [`compose`] renders the compose variant's `docker-compose.yml` from the
//!   aiida-plugin-compose Template and reads compose services back for `doctor`;
//! * [`ci`] is what `init --ci` adds: the GitHub workflow that runs the plugin's tests in the
//!   dev container, and the Dependabot entries merged into `.github/dependabot.yml`;
//! * [`init`] reads the plugin's metadata, picks the image and writes the file (or shows the diff);
//! * [`up`] brings the workspace up with the reference devcontainer CLI and reports readiness;
//! * [`engine`] does the same without the CLI, through the Docker Engine API;
//! * [`doctor`] finds the settings that silently break the services and says how to fix each.

pub mod ci;
pub mod compose;
pub mod config;
pub mod doctor;
pub mod engine;
pub mod init;
pub mod merge;
pub mod up;

pub use doctor::DoctorArgs;
pub use init::InitArgs;
pub use up::UpArgs;
