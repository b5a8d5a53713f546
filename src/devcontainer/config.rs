//! What aiida-devc puts in a plugin's `devcontainer.json`, each key with the comment that
//! explains it. [`entries`] is the single source of truth for `init` (what to write) and
//! `doctor` (what a working configuration looks like).

use std::path::Path;

use serde_json::json;

use super::compose::{self, ServiceImages};
use super::merge::{Desired, Entry};
use crate::plugin::PluginMetadata;
use crate::plugin::images::{ImageChoice, Variant};

/// Where the home of the image's user is: the database, the file repository, pip's `--user`
/// installs.
pub const HOME: &str = "/home/aiida";
/// The image's non-root user.
pub const USER: &str = "aiida";
/// Where the CA bundle is mounted when one is configured.
pub const CA_TARGET: &str = "/etc/aiida-devc/ca.pem";
/// The host variable that names the CA bundle (also read by `--ca-cert`).
pub const CA_ENV: &str = "AIIDA_DEVC_CA_CERT";
/// How long the lifecycle commands wait for AiiDA to be ready, in seconds.
pub const READY_TIMEOUT_SECS: u32 = 600;

/// The name of the named volume that keeps the home, per dev container.
pub fn home_volume_source() -> String {
    "aiida-home-${devcontainerId}".into()
}

/// The command that installs the plugin for development, quietly (warnings and errors still in
/// full). With uv (the images carry it; several times faster than pip on the same install) into
/// the image's environment when the user can write there, which a `docker commit` or a
/// Codespaces prebuild then keeps with the container; otherwise (no uv, or a UID remapped by the
/// devcontainer tools that cannot write /opt/aiida) with pip into the user site (`~/.local`).
pub fn install_command(extras: &[String]) -> String {
    let target = if extras.is_empty() {
        ".".to_string()
    } else {
        format!(".[{}]", extras.join(","))
    };
    format!(
        "if command -v uv >/dev/null && [ -w \"$VIRTUAL_ENV\" ]; \
         then UV_LINK_MODE=copy uv pip install --quiet --editable '{target}'; \
         else python -m pip install --quiet --disable-pip-version-check --editable '{target}'; fi"
    )
}

/// The supervised daemon's service (s6-overlay's layout, which aiida-init follows).
pub const DAEMON_SERVICE: &str = "aiida-daemon";

/// Install the plugin, then restart the daemon under its supervisor only when its process exists
/// (it may have read the entry points before the install), once it is ready (a daemon stopped
/// while it starts would meet its own start under way); a daemon that has not started yet
/// starts after the install and loads the plugin as it is, and in a container made from a
/// prebuild snapshot the daemon starts after the install anyway. `aiida-init restart` returns
/// once the daemon is ready again, or says why not. `verdi daemon restart` is not used: it would
/// replace the supervised daemon with one that runs outside the supervisor.
pub fn update_content_command(extras: &[String]) -> String {
    format!(
        "{install} && if aiida-init status 2>/dev/null \
         | awk '$1 == \"{DAEMON_SERVICE}\" && $4 != \"-\" {{ up = 1 }} END {{ exit !up }}'; \
         then aiida-init wait --timeout {READY_TIMEOUT_SECS} {DAEMON_SERVICE} \
         && aiida-init restart {DAEMON_SERVICE} --timeout {READY_TIMEOUT_SECS} >/dev/null; fi",
        install = install_command(extras)
    )
}

/// The postCreateCommand that earlier versions of `init` wrote (pip into the user site, then a
/// restart of the daemon), removed from a file that still has it: updateContentCommand does its
/// work now.
pub fn retired_post_create_commands(extras: &[String]) -> Vec<serde_json::Value> {
    let target = if extras.is_empty() {
        ".".to_string()
    } else {
        format!(".[{}]", extras.join(","))
    };
    vec![json!(format!(
        "python -m pip install --quiet --disable-pip-version-check --editable '{target}' \
         && python -m pip list --user --disable-pip-version-check \
         && aiida-init wait --timeout {READY_TIMEOUT_SECS} \
         && aiida-init restart {DAEMON_SERVICE} --timeout {READY_TIMEOUT_SECS}"
    ))]
}

/// The services' ports in the container (all on localhost only): VS Code and Codespaces would
/// otherwise offer to forward each one as it starts listening. PostgreSQL, RabbitMQ (AMQP, epmd,
/// Erlang distribution) and SSH (for a service that runs sshd).
pub const SERVICE_PORTS: [(u16, &str); 5] = [
    (5432, "PostgreSQL"),
    (5672, "RabbitMQ"),
    (4369, "epmd (RabbitMQ)"),
    (25672, "Erlang distribution (RabbitMQ)"),
    (2222, "SSH"),
];

/// Everything `init` needs to decide.
pub struct Choices<'a> {
    pub plugin: &'a PluginMetadata,
    pub image: &'a ImageChoice,
    pub variant: Variant,
    /// The extras installed by updateContentCommand.
    pub extras: Vec<String>,
    /// Whether to pass a CA bundle through (`--ca-cert` / `AIIDA_DEVC_CA_CERT` given).
    pub ca: bool,
    /// The folder with the plugin's tests, relative to the repository, when there is one.
    pub tests_dir: Option<String>,
    /// The images of the PostgreSQL and RabbitMQ containers (compose variant).
    pub services: ServiceImages,
    /// Add the aiida-slurm Feature (`init --slurm`).
    pub slurm: bool,
}

/// The aiida-slurm Feature's reference, at its major version, where the project publishes it.
pub fn slurm_feature() -> String {
    format!(
        "ghcr.io/{}/aiida-slurm:0",
        crate::collection::docs::default_namespace(crate::collection::CollectionKind::Features)
    )
}

/// The tests folder of the repository at `dir`, if it has one of the usual names.
pub fn find_tests_dir(dir: &Path) -> Option<String> {
    ["tests", "test"]
        .iter()
        .find(|d| dir.join(d).is_dir())
        .map(std::string::ToString::to_string)
}

/// The settings aiida-devc owns, in the order they are written.
pub fn entries(c: &Choices) -> Vec<Entry> {
    let mut entries = vec![Entry::new("name", Desired::Default(json!(c.plugin.name)))];
    entries.extend(container_entries(c));
    entries.extend(init_and_user_entries());
    entries.extend(features_entry(c));
    entries.extend(mounts_entry(c));
    entries.extend(ca_env_entry(c));
    entries.extend(lifecycle_entries(c));
    entries.extend(editor_entries(c));
    entries
}

/// What runs: the compose file and its AiiDA service, or the one image.
fn container_entries(c: &Choices) -> Vec<Entry> {
    if c.variant != Variant::Compose {
        return vec![image_entry(c)];
    }
    let file = compose::file_name();
    vec![
        Entry::commented(
            "dockerComposeFile",
            Desired::Value(json!(file)),
            format!(
                "Three containers, defined in {file}: AiiDA (aiida-core-base, the image picked by\n\
                 `aiida-devc init` from the plugin's requirements), PostgreSQL and RabbitMQ. The AiiDA\n\
                 container's AIIDA_POSTGRES_HOSTNAME and AIIDA_BROKER_HOST make its profile use them;\n\
                 its home (file repository, pip installs) is a named volume that survives rebuilds."
            ),
        ),
        Entry::commented(
            "service",
            Desired::Value(json!(compose::service())),
            "The service VS Code attaches to: the AiiDA container.",
        ),
        Entry::commented(
            "workspaceFolder",
            Desired::Value(json!(compose::template_setting("workspaceFolder"))),
            format!("Where {file} mounts the repository."),
        ),
    ]
}

/// The image, with a comment on what it holds and why it was picked.
fn image_entry(c: &Choices) -> Entry {
    let what = match c.variant {
        Variant::Services => {
            "aiida-core-with-services: PostgreSQL, RabbitMQ and AiiDA in one container"
        }
        Variant::Lite => "aiida-core-base: AiiDA without PostgreSQL and RabbitMQ",
        Variant::Compose => "aiida-core-base, with PostgreSQL and RabbitMQ in their own containers",
    };
    let release = match &c.image.aiida_core {
        Some(v) => format!(
            "with aiida-core {v}, the newest release that satisfies {}",
            c.plugin.aiida_core_display()
        ),
        None => "chosen with `aiida-devc init --image`".into(),
    };
    Entry::commented(
        "image",
        Desired::Value(json!(c.image.image)),
        format!(
            "The image, picked by `aiida-devc init` from the plugin's requirements:\n{what},\n{release}."
        ),
    )
}

/// The image's init stays PID 1, and the image's non-root user works in it.
fn init_and_user_entries() -> [Entry; 2] {
    [
        Entry::commented(
            "overrideCommand",
            Desired::Value(json!(false)),
            "Keep the image's /init (aiida-init) as PID 1: it starts the services and the daemon,\n\
             and stops them cleanly on `docker stop`. `true` would replace it with a sleep loop.",
        ),
        Entry::commented(
            "remoteUser",
            Desired::Value(json!(USER)),
            "The image's non-root user, owner of the AiiDA profile.",
        ),
    ]
}

/// `init --slurm`: the aiida-slurm Feature (other Features the file has are kept).
fn features_entry(c: &Choices) -> Option<Entry> {
    c.slurm.then(|| {
        Entry::commented(
            "features",
            Desired::Object(vec![Entry::new(
                &slurm_feature(),
                Desired::Default(json!({})),
            )]),
            "Slurm and an SSH server on 127.0.0.1, run by the image's aiida-init as its user, and\n\
             the AiiDA computer localhost-slurm (core.slurm over core.ssh_async to localhost).",
        )
    })
}

/// The home volume (the compose file keeps it in its own named volume) and the CA bundle; none
/// when there is neither.
fn mounts_entry(c: &Choices) -> Option<Entry> {
    let compose = c.variant == Variant::Compose;
    let mut mounts = Vec::new();
    if !compose {
        mounts.push(json!({"source": home_volume_source(), "target": HOME, "type": "volume"}));
    }
    if c.ca {
        mounts
            .push(json!({"source": format!("${{localEnv:{CA_ENV}}}"), "target": CA_TARGET, "type": "bind"}));
    }
    if mounts.is_empty() {
        return None;
    }
    let mounts_comment = if compose {
        format!(
            "The CA bundle named by ${CA_ENV} on the host is mounted for https behind a\n\
             TLS-intercepting proxy (export it before opening the folder)."
        )
    } else if c.ca {
        format!(
            "The home ({HOME}: database, file repository, pip installs) is a named volume per dev\n\
             container: it survives rebuilds. The CA bundle named by ${CA_ENV} on the host is\n\
             mounted for https behind a TLS-intercepting proxy (export it before opening the folder)."
        )
    } else {
        format!(
            "The home ({HOME}: database, file repository, pip installs) is a named volume per dev\n\
             container: it survives rebuilds."
        )
    };
    Some(Entry::commented(
        "mounts",
        Desired::Items(mounts),
        mounts_comment,
    ))
}

/// With a CA bundle: the variables that make pip, OpenSSL and requests trust it.
fn ca_env_entry(c: &Choices) -> Option<Entry> {
    c.ca.then(|| {
        Entry::commented(
            "containerEnv",
            Desired::Object(
                ["PIP_CERT", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE"]
                    .iter()
                    .map(|k| Entry::new(k, Desired::Value(json!(CA_TARGET))))
                    .collect(),
            ),
            "pip, OpenSSL and requests trust the mounted CA bundle.",
        )
    })
}

/// The plugin's install on creation, and (for an image without the label) the wait at each start.
fn lifecycle_entries(c: &Choices) -> Vec<Entry> {
    let extras = if c.extras.is_empty() {
        "no extras".to_string()
    } else {
        format!("its extras [{}]", c.extras.join(","))
    };
    let mut entries = vec![Entry::commented(
        "updateContentCommand",
        Desired::Value(json!(update_content_command(&c.extras))),
        format!(
            "When the container is created and when its content is updated (Codespaces prebuilds\n\
             run it too, so a codespace starts with the plugin installed): the plugin in editable\n\
             mode, with {extras}. A daemon already running is restarted through aiida-init to\n\
             load the plugin; one that starts later loads it anyway."
        ),
    )];
    entries.push(Entry::new(
        "postCreateCommand",
        Desired::Retired(retired_post_create_commands(&c.extras)),
    ));
    // The images init picks carry postStartCommand `aiida-init wait` and waitFor in their
    // devcontainer.metadata label, which the devcontainer tools merge into this file: a second
    // wait here would only run twice. An image given with --image may not have the label.
    if c.image.aiida_core.is_none() {
        entries.extend([
            Entry::commented(
                "postStartCommand",
                Desired::Value(json!(format!("aiida-init wait --timeout {READY_TIMEOUT_SECS}"))),
                "At every start: wait until the services, the profile and the daemon are ready\n\
                 (`aiida-init status` shows which service took how long).",
            ),
            Entry::commented(
                "waitFor",
                Desired::Value(json!("postStartCommand")),
                "VS Code and Codespaces open the terminal only once postStartCommand is done: AiiDA is ready.",
            ),
        ]);
    }
    entries
}

/// VS Code's Python extension with pytest, the services' ports left alone, and the machine
/// Codespaces should provide.
fn editor_entries(c: &Choices) -> Vec<Entry> {
    let mut settings = vec![
        Entry::new("python.testing.pytestEnabled", Desired::Value(json!(true))),
        Entry::new(
            "python.testing.unittestEnabled",
            Desired::Default(json!(false)),
        ),
    ];
    if let Some(tests) = &c.tests_dir {
        settings.push(Entry::new(
            "python.testing.pytestArgs",
            Desired::Default(json!([tests])),
        ));
    }
    let mut entries = vec![Entry::commented(
        "customizations",
        Desired::Object(vec![Entry::new(
            "vscode",
            Desired::Object(vec![
                Entry::new(
                    "extensions",
                    Desired::Items(vec![json!("ms-python.python")]),
                ),
                Entry::new("settings", Desired::Object(settings)),
            ]),
        )]),
        "VS Code: the Python extension, with pytest as the test runner.",
    )];
    entries.push(Entry::commented(
        "portsAttributes",
        Desired::Object(
            SERVICE_PORTS
                .iter()
                .map(|(port, label)| {
                    Entry::new(
                        &port.to_string(),
                        Desired::Value(json!({"label": label, "onAutoForward": "ignore"})),
                    )
                })
                .collect(),
        ),
        "The services' ports (PostgreSQL, RabbitMQ, SSH) stay inside the container: VS Code and\n\
             Codespaces do not offer to forward them.",
    ));
    entries.push(Entry::commented(
        "hostRequirements",
        Desired::Default(json!({"cpus": 2, "memory": "4gb"})),
        "Codespaces: PostgreSQL, RabbitMQ and the daemon want at least 2 cores and 4 GB\n\
             (the smallest machine free accounts get).",
    ));
    entries
}

/// The first lines of a file that `init` creates.
pub fn header(plugin: &PluginMetadata) -> String {
    format!(
        "// Dev container for {name}, written by `aiida-devc init`.\n\
         // Running `aiida-devc init` again updates the settings it owns and keeps your own keys\n\
         // and comments; `aiida-devc doctor` checks the file for settings that break AiiDA.\n",
        name = plugin.name
    )
}
