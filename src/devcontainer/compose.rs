//! The compose variant: AiiDA in aiida-core-base, PostgreSQL and RabbitMQ in their own service
//! containers, described by `.devcontainer/docker-compose.yml`.
//!
//! The compose file is the aiida-plugin-compose Template's, rendered with `init`'s choices (the
//! AiiDA image picked from the plugin's requirements, the `postgresImage` and `rabbitmqImage`
//! options with the Template's defaults), so that the Template and `init` cannot drift apart.
//! The base image's environment contract (`AIIDA_POSTGRES_HOSTNAME`, `AIIDA_POSTGRES_PASSWORD`,
//! `AIIDA_BROKER_HOST`) in that file makes the image's init create the profile on the two
//! services.
//!
//! [`read_service`] reads the service a `devcontainer.json` names back out of its compose files,
//! for `doctor`.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde_json::Value;

use crate::plugin::images::Variant;

/// The Template's compose file (with `${templateOption:...}` placeholders).
const TEMPLATE_COMPOSE: &str = include_str!(
    "../../devcontainer-templates/src/aiida-plugin-compose/.devcontainer/docker-compose.yml"
);
/// The Template's devcontainer.json: the compose file's name, the service and the workspace folder.
const TEMPLATE_CONFIG: &str = include_str!(
    "../../devcontainer-templates/src/aiida-plugin-compose/.devcontainer/devcontainer.json"
);
/// The Template's metadata: the options and their defaults.
const TEMPLATE_METADATA: &str = include_str!(
    "../../devcontainer-templates/src/aiida-plugin-compose/devcontainer-template.json"
);

/// A key of the Template's devcontainer.json (`dockerComposeFile`, `service`, `workspaceFolder`).
pub fn template_setting(key: &str) -> String {
    let config: serde_json::Value =
        jsonc_parser::parse_to_serde_value(TEMPLATE_CONFIG, &crate::jsonc::options())
            .expect("the aiida-plugin-compose Template's devcontainer.json is valid JSONC");
    config[key]
        .as_str()
        .unwrap_or_else(|| panic!("the aiida-plugin-compose Template sets {key}"))
        .to_owned()
}

/// The default of one of the Template's options (`postgresImage`, `rabbitmqImage`).
pub fn template_default(option: &str) -> String {
    let metadata: Value =
        serde_json::from_str(TEMPLATE_METADATA).expect("the Template's metadata is JSON");
    metadata["options"][option]["default"]
        .as_str()
        .unwrap_or_else(|| panic!("the aiida-plugin-compose Template has a default for {option}"))
        .to_owned()
}

/// The name of the compose file, next to devcontainer.json.
pub fn file_name() -> String {
    template_setting("dockerComposeFile")
}

/// The service the dev container runs in.
pub fn service() -> String {
    template_setting("service")
}

/// The compose file of a workspace.
pub fn compose_path(dir: &Path) -> PathBuf {
    dir.join(".devcontainer").join(file_name())
}

/// The images of the two service containers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceImages {
    pub postgres: String,
    pub rabbitmq: String,
}

impl ServiceImages {
    /// The given images, or the Template's defaults.
    pub fn or_defaults(postgres: Option<&str>, rabbitmq: Option<&str>) -> ServiceImages {
        ServiceImages {
            postgres: postgres.map_or_else(|| template_default("postgresImage"), str::to_owned),
            rabbitmq: rabbitmq.map_or_else(|| template_default("rabbitmqImage"), str::to_owned),
        }
    }
}

/// An image reference goes unquoted into YAML: refuse anything but a plain reference.
fn check_reference(flag: &str, image: &str) -> anyhow::Result<()> {
    let plain = |c: char| c.is_ascii_alphanumeric() || "._-/:@".contains(c);
    if image.is_empty() || !image.chars().all(plain) || image.starts_with(['-', '.', '/', ':']) {
        bail!(
            "{flag} {image:?} is not an image reference (like postgres:16 or registry.example/team/postgres:16)"
        );
    }
    Ok(())
}

/// The compose file for `aiida_image` and the service images.
pub fn render(aiida_image: &str, services: &ServiceImages) -> anyhow::Result<String> {
    check_reference("--image", aiida_image)?;
    check_reference("--postgres-image", &services.postgres)?;
    check_reference("--rabbitmq-image", &services.rabbitmq)?;
    let tagged = format!(
        "{}:${{templateOption:imageTag}}",
        Variant::Compose.repository()
    );
    assert!(
        TEMPLATE_COMPOSE.contains(&tagged),
        "the Template's aiida service uses {tagged}"
    );
    let body = TEMPLATE_COMPOSE
        .replace(&tagged, aiida_image)
        .replace("${templateOption:postgresImage}", &services.postgres)
        .replace("${templateOption:rabbitmqImage}", &services.rabbitmq);
    if let Some(i) = body.find("${templateOption:") {
        bail!(
            "the aiida-plugin-compose Template uses an option `init` does not fill: {}",
            &body[i..].lines().next().unwrap_or_default()
        );
    }
    Ok(format!(
        "# Written by `aiida-devc init --variant compose` (the aiida-plugin-compose Template).\n\
         # `aiida-devc init` leaves this file alone once it exists (`--force` rewrites it).\n{body}"
    ))
}

/// One volume of a compose service: where from, where to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceVolume {
    pub source: String,
    pub target: String,
    /// A named volume (not a bind mount of a host path).
    pub named: bool,
}

/// What `doctor` needs of the service a devcontainer.json names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComposeService {
    /// The compose file that defines the service (the last one, when several do).
    pub file: PathBuf,
    pub text: String,
    pub image: Option<String>,
    pub volumes: Vec<ServiceVolume>,
    /// The service sets its own `entrypoint`, replacing the image's /init.
    pub entrypoint: Option<String>,
}

/// The compose files a devcontainer.json names (`dockerComposeFile`: one path or a list, relative
/// to the folder of devcontainer.json).
pub fn compose_files(config_dir: &Path, config: &Value) -> Vec<PathBuf> {
    match config.get("dockerComposeFile") {
        Some(Value::String(s)) => vec![config_dir.join(s)],
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(Value::as_str)
            .map(|s| config_dir.join(s))
            .collect(),
        _ => Vec::new(),
    }
}

fn volume(value: &serde_yaml_ng::Value) -> Option<ServiceVolume> {
    let (source, target) = match value {
        serde_yaml_ng::Value::String(s) => {
            let mut parts = s.split(':');
            let first = parts.next()?.to_owned();
            match parts.next() {
                Some(target) => (first, target.to_owned()),
                None => (String::new(), first), // an anonymous volume
            }
        }
        serde_yaml_ng::Value::Mapping(map) => {
            let get = |k: &str| {
                map.get(k)
                    .and_then(|v| v.as_str())
                    .unwrap_or_default()
                    .to_owned()
            };
            let kind = get("type");
            let source = get("source");
            let target = get("target");
            let named = kind == "volume" && !source.is_empty();
            return Some(ServiceVolume {
                source,
                target,
                named,
            });
        }
        _ => return None,
    };
    let named = !source.is_empty() && !source.starts_with(['.', '/', '~', '$']);
    Some(ServiceVolume {
        source,
        target,
        named,
    })
}

/// The service `service` in `files`; `None` when no file defines it. Errors name the file.
pub fn read_service(files: &[PathBuf], service: &str) -> anyhow::Result<Option<ComposeService>> {
    let mut found: Option<ComposeService> = None;
    for file in files {
        let text = std::fs::read_to_string(file).with_context(|| {
            format!(
                "{}: cannot read this compose file (named by dockerComposeFile)",
                file.display()
            )
        })?;
        let yaml: serde_yaml_ng::Value =
            serde_yaml_ng::from_str(&text).map_err(|e| match e.location() {
                Some(at) => anyhow::anyhow!(
                    "{}:{}:{}: invalid YAML: {e}",
                    file.display(),
                    at.line(),
                    at.column()
                ),
                None => anyhow::anyhow!("{}: invalid YAML: {e}", file.display()),
            })?;
        let Some(definition) = yaml.get("services").and_then(|s| s.get(service)) else {
            continue;
        };
        let mut entry = found.take().unwrap_or(ComposeService {
            file: file.clone(),
            text: text.clone(),
            image: None,
            volumes: Vec::new(),
            entrypoint: None,
        });
        entry.file = file.clone();
        entry.text = text.clone();
        if let Some(image) = definition.get("image").and_then(|v| v.as_str()) {
            entry.image = Some(image.to_owned());
        }
        if let Some(entrypoint) = definition.get("entrypoint") {
            entry.entrypoint = Some(match entrypoint.as_str() {
                Some(line) => line.to_owned(),
                None => serde_json::to_string(entrypoint).unwrap_or_default(),
            });
        }
        if let Some(volumes) = definition.get("volumes").and_then(|v| v.as_sequence()) {
            entry.volumes.extend(volumes.iter().filter_map(volume));
        }
        found = Some(entry);
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rendered_file_names_the_chosen_images_and_keeps_the_contract() {
        let services = ServiceImages::or_defaults(None, Some("local/rabbitmq:3.10"));
        let text = render("aiidateam/aiida-core-base:aiida-2.9.4", &services).unwrap();
        assert!(
            text.contains("image: aiidateam/aiida-core-base:aiida-2.9.4\n"),
            "{text}"
        );
        assert!(
            text.contains(&format!("image: {}\n", template_default("postgresImage"))),
            "{text}"
        );
        assert!(text.contains("image: local/rabbitmq:3.10\n"), "{text}");
        for contract in [
            "AIIDA_POSTGRES_HOSTNAME: database",
            "AIIDA_BROKER_HOST: messaging",
            "aiida-home:/home/aiida",
        ] {
            assert!(text.contains(contract), "{contract}: {text}");
        }
        let yaml: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).unwrap();
        assert!(yaml["services"][service().as_str()].is_mapping());
    }

    #[test]
    fn an_image_that_is_not_a_reference_is_refused() {
        let services = ServiceImages::or_defaults(Some("postgres:16\n    privileged: true"), None);
        let err = render("aiidateam/aiida-core-base:latest", &services).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("--postgres-image \"postgres:16\\n"),
            "{err}"
        );
    }

    #[test]
    fn the_service_is_read_back_with_its_volumes() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("docker-compose.yml");
        std::fs::write(
            &file,
            render("img:1", &ServiceImages::or_defaults(None, None)).unwrap(),
        )
        .unwrap();
        let service = read_service(&[file], &service()).unwrap().unwrap();
        assert_eq!(service.image.as_deref(), Some("img:1"));
        assert!(
            service
                .volumes
                .iter()
                .any(|v| v.target == "/home/aiida" && v.named),
            "{service:?}"
        );
        assert!(
            service
                .volumes
                .iter()
                .any(|v| v.target == "/workspaces" && !v.named),
            "{service:?}"
        );
        assert_eq!(service.entrypoint, None);
    }
}
