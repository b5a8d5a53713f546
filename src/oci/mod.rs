//! OCI artifacts: packaging devcontainer Features and Templates and pushing them to registries.
