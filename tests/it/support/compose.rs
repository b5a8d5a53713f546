//! Docker Compose workspaces: stand-ins for the official postgres and rabbitmq images, built from
//! Debian's packages (no registry is reachable in the test environment), and the removal of a
//! Compose project's containers, networks and volumes when a test ends.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::Path;

use bollard::query_parameters::{ListNetworksOptions, ListVolumesOptions};

use super::Harness;

/// The stand-in PostgreSQL image (the official image's environment contract).
pub const POSTGRES_IMAGE: &str = "aiida-devc-test-postgres:15";
/// The stand-in RabbitMQ image (guest may connect over the network).
pub const RABBITMQ_IMAGE: &str = "aiida-devc-test-rabbitmq:3.10";

/// Build a stand-in from `devcontainer-templates/test/aiida-plugin-compose/services/<dir>` with the
/// classic builder (kept between runs: the layer cache makes a rebuild take seconds).
pub fn build_service_image(dir: &str, tag: &str) {
    let context = super::project_root()
        .join("devcontainer-templates/test/aiida-plugin-compose/services")
        .join(dir);
    let out = std::process::Command::new("docker")
        .env("DOCKER_BUILDKIT", "0")
        .args(["build", "-q", "-t", tag])
        .arg(&context)
        .output()
        .expect("run docker build");
    assert!(
        out.status.success(),
        "building {tag} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Both stand-ins, and a check that docker-compose (which the reference CLI drives) is there.
pub fn build_service_images() {
    let has_compose = std::process::Command::new("docker-compose")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    super::require(
        has_compose,
        "docker-compose (Debian package docker-compose), which the devcontainer CLI uses for Compose",
    );
    build_service_image("postgres", POSTGRES_IMAGE);
    build_service_image("rabbitmq", RABBITMQ_IMAGE);
}

/// The Compose project name the reference CLI gives a workspace whose compose file is in its
/// `.devcontainer` folder.
pub fn project_name(workspace: &Path) -> String {
    let folder = workspace
        .file_name()
        .unwrap()
        .to_string_lossy()
        .to_lowercase();
    let clean: String = folder
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .collect();
    format!("{clean}_devcontainer")
}

/// A Compose project whose containers, networks and volumes are removed on drop (also when the
/// test fails).
pub struct ComposeProject {
    pub name: String,
    harness: Harness,
}

impl ComposeProject {
    pub fn of_workspace(workspace: &Path) -> ComposeProject {
        ComposeProject {
            name: project_name(workspace),
            harness: Harness::new(),
        }
    }

    fn label(&self) -> String {
        format!("com.docker.compose.project={}", self.name)
    }

    /// The project's containers (running or not).
    pub fn containers(&self) -> Vec<String> {
        self.harness.containers_with_label(&self.label())
    }
}

impl Drop for ComposeProject {
    /// Hand the project's containers, networks and volumes to the harness, which removes them
    /// (containers first) when it is dropped right after this.
    fn drop(&mut self) {
        let label = self.label();
        for id in self.harness.containers_with_label(&label) {
            self.harness.track_container(&id);
        }
        let filters: HashMap<String, Vec<String>> =
            [("label".to_string(), vec![label])].into_iter().collect();
        let docker = self.harness.docker().clone();
        let (networks, volumes) = self.harness.block_on(async move {
            let networks = docker
                .list_networks(Some(ListNetworksOptions {
                    filters: Some(filters.clone()),
                }))
                .await
                .unwrap_or_default();
            let volumes = docker
                .list_volumes(Some(ListVolumesOptions {
                    filters: Some(filters),
                }))
                .await
                .ok()
                .and_then(|v| v.volumes)
                .unwrap_or_default();
            (networks, volumes)
        });
        for network in networks.into_iter().filter_map(|n| n.id) {
            self.harness.track_network(&network);
        }
        for volume in volumes {
            self.harness.track_volume(&volume.name);
        }
    }
}
