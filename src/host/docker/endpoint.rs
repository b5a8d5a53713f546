//! Which Docker engine to talk to, and why: the docker CLI's order, so that `aiida-devc` finds
//! the engine `docker` finds.
//!
//! 1. `DOCKER_HOST`;
//! 2. the current context (`DOCKER_CONTEXT`, else `currentContext` in `~/.docker/config.json`,
//!    or `$DOCKER_CONFIG/config.json`), whose endpoint is in
//!    `~/.docker/contexts/meta/<sha256 of its name>/meta.json`;
//! 3. a socket that exists: Docker Desktop's on macOS (`~/.docker/run/docker.sock`), colima's
//!    (`~/.colima/default/docker.sock`), a rootless engine's (`$XDG_RUNTIME_DIR/docker.sock`);
//! 4. the system's: `/var/run/docker.sock`, or the named pipe on Windows.
//!
//! [`resolve`] decides from an [`Environment`] given to it (variables, home, which files
//! exist), so the decision is tested without an engine; [`Environment::from_process`] reads the
//! real one.

use std::fmt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// The engine's address and where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Endpoint {
    /// `unix:///path`, `tcp://host:port`, `npipe:////./pipe/...`.
    pub address: String,
    pub source: Source,
}

/// Why an [`Endpoint`] was chosen.
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    DockerHost,
    /// The named Docker context.
    Context(String),
    DockerDesktop,
    Colima,
    Rootless,
    /// Nothing else was found: the system's socket (or pipe), whether it exists or not.
    Default,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::DockerHost => f.write_str("from DOCKER_HOST"),
            Source::Context(name) => write!(f, "from the Docker context {name}"),
            Source::DockerDesktop => f.write_str("Docker Desktop's socket"),
            Source::Colima => f.write_str("colima's socket"),
            Source::Rootless => f.write_str("a rootless engine's socket in XDG_RUNTIME_DIR"),
            Source::Default => f.write_str("the default"),
        }
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.address, self.source)
    }
}

/// The operating system's conventions that matter here.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Os {
    Linux,
    MacOs,
    Windows,
}

impl Os {
    pub fn current() -> Os {
        if cfg!(windows) {
            Os::Windows
        } else if cfg!(target_os = "macos") {
            Os::MacOs
        } else {
            Os::Linux
        }
    }
}

/// What [`resolve`] looks at; a value so that tests can give their own.
#[derive(Debug, Clone)]
pub struct Environment {
    pub os: Os,
    pub docker_host: Option<String>,
    pub docker_context: Option<String>,
    pub docker_config_dir: Option<PathBuf>,
    pub home: Option<PathBuf>,
    pub xdg_runtime_dir: Option<PathBuf>,
    /// Read a file (`None` when it is missing or unreadable).
    pub read: fn(&Path) -> Option<String>,
    /// Whether a socket (or any file) exists at a path.
    pub exists: fn(&Path) -> bool,
}

impl Environment {
    pub fn from_process() -> Environment {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        Environment {
            os: Os::current(),
            docker_host: var("DOCKER_HOST"),
            docker_context: var("DOCKER_CONTEXT"),
            docker_config_dir: var("DOCKER_CONFIG").map(PathBuf::from),
            home: var("HOME")
                .or_else(|| var("USERPROFILE"))
                .map(PathBuf::from),
            xdg_runtime_dir: var("XDG_RUNTIME_DIR").map(PathBuf::from),
            read: |path| std::fs::read_to_string(path).ok(),
            exists: |path| path.exists(),
        }
    }

    fn config_dir(&self) -> Option<PathBuf> {
        self.docker_config_dir
            .clone()
            .or_else(|| self.home.as_ref().map(|h| h.join(".docker")))
    }

    /// The current context's name, unless it is `default` (which means: no context).
    fn context(&self) -> Option<String> {
        let name = self.docker_context.clone().or_else(|| {
            let config = (self.read)(&self.config_dir()?.join("config.json"))?;
            let config: serde_json::Value = serde_json::from_str(&config).ok()?;
            config["currentContext"].as_str().map(str::to_owned)
        })?;
        (!name.is_empty() && name != "default").then_some(name)
    }

    /// The docker endpoint of context `name`, from its meta.json.
    fn context_endpoint(&self, name: &str) -> Option<String> {
        let digest = Sha256::digest(name.as_bytes());
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        let meta = self
            .config_dir()?
            .join("contexts/meta")
            .join(hex)
            .join("meta.json");
        let meta: serde_json::Value = serde_json::from_str(&(self.read)(&meta)?).ok()?;
        meta["Endpoints"]["docker"]["Host"]
            .as_str()
            .filter(|h| !h.is_empty())
            .map(str::to_owned)
    }
}

/// The engine to talk to in `env` (see the module documentation for the order).
pub fn resolve(env: &Environment) -> Endpoint {
    let endpoint = |address: String, source| Endpoint { address, source };
    if let Some(host) = &env.docker_host {
        return endpoint(host.clone(), Source::DockerHost);
    }
    if let Some(name) = env.context() {
        if let Some(host) = env.context_endpoint(&name) {
            return endpoint(host, Source::Context(name));
        }
    }
    let mut sockets: Vec<(PathBuf, Source)> = Vec::new();
    if let Some(home) = &env.home {
        if env.os == Os::MacOs {
            sockets.push((home.join(".docker/run/docker.sock"), Source::DockerDesktop));
        }
        if env.os != Os::Windows {
            sockets.push((home.join(".colima/default/docker.sock"), Source::Colima));
        }
    }
    if let Some(dir) = env.xdg_runtime_dir.as_ref().filter(|_| env.os == Os::Linux) {
        sockets.push((dir.join("docker.sock"), Source::Rootless));
    }
    for (path, source) in sockets {
        if (env.exists)(&path) {
            return endpoint(format!("unix://{}", path.display()), source);
        }
    }
    let default = if env.os == Os::Windows {
        "npipe:////./pipe/docker_engine"
    } else {
        "unix:///var/run/docker.sock"
    };
    endpoint(default.to_owned(), Source::Default)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An environment with nothing set, where files come from `files` (path, content).
    fn env(os: Os) -> Environment {
        Environment {
            os,
            docker_host: None,
            docker_context: None,
            docker_config_dir: None,
            home: Some(PathBuf::from("/home/u")),
            xdg_runtime_dir: Some(PathBuf::from("/run/user/1000")),
            read: |_| None,
            exists: |_| false,
        }
    }

    #[test]
    fn docker_host_wins() {
        let mut e = env(Os::Linux);
        e.docker_host = Some("tcp://10.0.0.1:2375".into());
        e.docker_context = Some("colima".into());
        e.exists = |_| true;
        let found = resolve(&e);
        assert_eq!(found.address, "tcp://10.0.0.1:2375");
        assert_eq!(found.to_string(), "tcp://10.0.0.1:2375 (from DOCKER_HOST)");
    }

    #[test]
    fn the_current_context_is_read_from_the_config_and_its_meta_file() {
        let mut e = env(Os::Linux);
        e.read = |path| {
            // sha256("colima")
            let meta = "/home/u/.docker/contexts/meta/\
                        f24fd3749c1368328e2b149bec149cb6795619f244c5b584e844961215dadd16/meta.json";
            match path.to_str()? {
                "/home/u/.docker/config.json" => Some(r#"{"currentContext": "colima"}"#.into()),
                p if p == meta => Some(
                    r#"{"Name":"colima","Endpoints":{"docker":{"Host":"unix:///home/u/.colima/default/docker.sock"}}}"#
                        .into(),
                ),
                _ => None,
            }
        };
        let found = resolve(&e);
        assert_eq!(
            found.to_string(),
            "unix:///home/u/.colima/default/docker.sock (from the Docker context colima)"
        );
        // DOCKER_CONTEXT=default means no context: the sockets are tried.
        e.docker_context = Some("default".into());
        assert_eq!(resolve(&e).source, Source::Default);
    }

    #[test]
    fn a_context_without_an_endpoint_falls_through_to_the_sockets() {
        let mut e = env(Os::Linux);
        e.docker_context = Some("gone".into());
        assert_eq!(resolve(&e).address, "unix:///var/run/docker.sock");
    }

    #[test]
    fn sockets_that_exist_are_found_in_order() {
        let mut e = env(Os::MacOs);
        e.exists = |p| {
            p.ends_with(".docker/run/docker.sock") || p.ends_with(".colima/default/docker.sock")
        };
        assert_eq!(resolve(&e).source, Source::DockerDesktop);
        // Docker Desktop's socket is a macOS place only.
        e.os = Os::Linux;
        assert_eq!(resolve(&e).source, Source::Colima);
        e.exists = |p| p == Path::new("/run/user/1000/docker.sock");
        let found = resolve(&e);
        assert_eq!(found.address, "unix:///run/user/1000/docker.sock");
        assert_eq!(found.source, Source::Rootless);
    }

    #[test]
    fn without_anything_the_system_socket_or_pipe() {
        let found = resolve(&env(Os::Linux));
        assert_eq!(
            found.to_string(),
            "unix:///var/run/docker.sock (the default)"
        );
        let found = resolve(&env(Os::Windows));
        assert_eq!(found.address, "npipe:////./pipe/docker_engine");
    }
}
