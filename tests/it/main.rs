//! The integration tests of the `aiida-devc` CLI, one module per area, against the real things:
//! a Docker engine, the images, a registry on localhost and the reference devcontainer CLI.
//! `support` holds the harness they share.

mod support;

mod bad_env;
mod circusd;
mod compose_e2e;
mod daemon_commands;
mod daemon_python;
mod docs;
mod doctor_command;
mod faults;
mod features;
mod fuzz;
mod harness;
mod images;
mod init_ci;
mod init_command;
mod init_registry;
mod layering;
mod multiarch;
mod podman;
mod portability;
mod prebuild;
mod quiet_log;
mod release_workflow;
mod reliability;
mod script_lints;
mod security;
mod slurm;
mod soak;
mod templates;
mod wheels;
mod workflows;
mod workspace_e2e;
