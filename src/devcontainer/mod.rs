//! `devcontainer.json` for a plugin workspace: `aiida-devc init`, `up` and `doctor`.

pub mod merge;
