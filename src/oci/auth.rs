//! Credentials for a registry, found where the reference devcontainer CLI and docker look:
//!
//! 1. `DEVCONTAINERS_OCI_AUTH`: `registry|user|secret[,registry|user|secret...]`;
//! 2. the docker config (`$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`):
//!    `credHelpers[registry]`, then `credsStore`, both through `docker-credential-<helper> get`,
//!    then `auths[registry].auth` (base64 `user:secret`);
//! 3. `GITHUB_TOKEN` for `ghcr.io` only (when `GITHUB_HOST` is unset or `github.com`);
//! 4. otherwise anonymous.
//!
//! The registry is matched by its host (with port), exactly. A [`Credential`] never prints its
//! secret: its `Debug` form shows only where it came from and the user name.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, bail};
use base64::Engine;

/// Where a credential was found (shown in messages instead of the secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Env,
    DockerConfig(PathBuf),
    CredentialHelper(String),
    GithubToken,
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Env => write!(f, "DEVCONTAINERS_OCI_AUTH"),
            Source::DockerConfig(path) => write!(f, "the docker config {}", path.display()),
            Source::CredentialHelper(name) => {
                write!(f, "the credential helper docker-credential-{name}")
            }
            Source::GithubToken => write!(f, "GITHUB_TOKEN"),
        }
    }
}

/// A user name and secret for one registry.
#[derive(Clone)]
pub struct Credential {
    pub username: String,
    pub secret: String,
    pub source: Source,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Credential {{ username: {:?}, secret: <hidden>, source: {} }}",
            self.username, self.source
        )
    }
}

/// The environment the lookup reads; a value so that tests can give their own.
#[derive(Debug, Clone, Default)]
pub struct AuthEnv {
    pub devcontainers_oci_auth: Option<String>,
    pub docker_config_dir: Option<PathBuf>,
    pub home: Option<PathBuf>,
    pub github_token: Option<String>,
    pub github_host: Option<String>,
}

impl AuthEnv {
    pub fn from_process() -> AuthEnv {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        AuthEnv {
            devcontainers_oci_auth: var("DEVCONTAINERS_OCI_AUTH"),
            docker_config_dir: var("DOCKER_CONFIG").map(PathBuf::from),
            home: var("HOME").map(PathBuf::from),
            github_token: var("GITHUB_TOKEN"),
            github_host: var("GITHUB_HOST"),
        }
    }

    fn docker_config_file(&self) -> Option<PathBuf> {
        match (&self.docker_config_dir, &self.home) {
            (Some(dir), _) => Some(dir.join("config.json")),
            (None, Some(home)) => Some(home.join(".docker/config.json")),
            (None, None) => None,
        }
    }
}

/// Find the credential for `registry` (host with port), or `None` for anonymous access.
pub fn lookup(registry: &str, env: &AuthEnv) -> anyhow::Result<Option<Credential>> {
    if let Some(spec) = &env.devcontainers_oci_auth {
        for entry in spec.split(',') {
            let mut parts = entry.splitn(3, '|');
            let (Some(host), Some(user), Some(secret)) = (parts.next(), parts.next(), parts.next())
            else {
                bail!(
                    "DEVCONTAINERS_OCI_AUTH has an entry that is not 'registry|user|token' (entries are separated by ',')"
                );
            };
            if host.trim() == registry {
                return Ok(Some(Credential {
                    username: user.to_owned(),
                    secret: secret.to_owned(),
                    source: Source::Env,
                }));
            }
        }
    }
    if let Some(file) = env.docker_config_file() {
        if file.is_file() {
            if let Some(credential) = from_docker_config(&file, registry)? {
                return Ok(Some(credential));
            }
        }
    }
    if registry == "ghcr.io" {
        let github_com = env.github_host.as_deref().is_none_or(|h| h == "github.com");
        if let (Some(token), true) = (&env.github_token, github_com) {
            return Ok(Some(Credential {
                username: "USERNAME".to_owned(),
                secret: token.clone(),
                source: Source::GithubToken,
            }));
        }
    }
    Ok(None)
}

fn from_docker_config(file: &Path, registry: &str) -> anyhow::Result<Option<Credential>> {
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("cannot read the docker config {}", file.display()))?;
    let config: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("the docker config {} is not valid JSON", file.display()))?;
    let helper = config
        .get("credHelpers")
        .and_then(|h| h.get(registry))
        .or_else(|| config.get("credsStore"))
        .and_then(|h| h.as_str());
    if let Some(helper) = helper {
        if let Some(credential) = from_helper(helper, registry)? {
            return Ok(Some(credential));
        }
    }
    let Some(entry) = config.get("auths").and_then(|a| a.get(registry)) else {
        return Ok(None);
    };
    if let Some(encoded) = entry
        .get("auth")
        .and_then(|a| a.as_str())
        .filter(|a| !a.is_empty())
    {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok());
        let Some((user, secret)) = decoded.as_deref().and_then(|d| d.split_once(':')) else {
            bail!(
                "the docker config {} has an 'auth' for {registry} that is not base64 of 'user:password'",
                file.display()
            );
        };
        return Ok(Some(Credential {
            username: user.to_owned(),
            secret: secret.to_owned(),
            source: Source::DockerConfig(file.to_owned()),
        }));
    }
    Ok(None)
}

/// Ask `docker-credential-<helper> get` (the docker credential helper protocol).
fn from_helper(helper: &str, registry: &str) -> anyhow::Result<Option<Credential>> {
    let program = format!("docker-credential-{helper}");
    let mut child = match Command::new(&program)
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(child) => child,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            bail!(
                "the docker config names the credential helper '{helper}' for {registry}, but {program} is not on PATH"
            )
        }
        Err(e) => return Err(e).with_context(|| format!("cannot run {program}")),
    };
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(registry.as_bytes())?;
    let output = child
        .wait_with_output()
        .with_context(|| format!("cannot run {program}"))?;
    if !output.status.success() {
        // "credentials not found" is the protocol's way to say: nothing stored for this host.
        return Ok(None);
    }
    #[derive(serde::Deserialize)]
    struct HelperAnswer {
        #[serde(rename = "Username")]
        username: String,
        #[serde(rename = "Secret")]
        secret: String,
    }
    let answer: HelperAnswer = serde_json::from_slice(&output.stdout).with_context(|| {
        format!("{program} get answered something that is not the credential helper JSON")
    })?;
    Ok(Some(Credential {
        username: answer.username,
        secret: answer.secret,
        source: Source::CredentialHelper(helper.to_owned()),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_with_config(config: &str) -> (tempfile::TempDir, AuthEnv) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("config.json"), config).unwrap();
        let env = AuthEnv {
            docker_config_dir: Some(dir.path().to_owned()),
            ..Default::default()
        };
        (dir, env)
    }

    #[test]
    fn the_environment_variable_wins_and_matches_the_host_exactly() {
        let env = AuthEnv {
            devcontainers_oci_auth: Some("other.io|a|b,localhost:5000|me|s3cret".into()),
            ..Default::default()
        };
        let credential = lookup("localhost:5000", &env).unwrap().unwrap();
        assert_eq!(
            (credential.username.as_str(), credential.secret.as_str()),
            ("me", "s3cret")
        );
        assert!(lookup("localhost:5001", &env).unwrap().is_none());
        assert!(!format!("{credential:?}").contains("s3cret"));
    }

    #[test]
    fn docker_config_auths_are_decoded() {
        let (_dir, env) =
            env_with_config(r#"{"auths": {"registry.example.org": {"auth": "dXNlcjpwYXNz"}}}"#);
        let credential = lookup("registry.example.org", &env).unwrap().unwrap();
        assert_eq!(
            (credential.username.as_str(), credential.secret.as_str()),
            ("user", "pass")
        );
    }

    #[test]
    fn a_missing_credential_helper_is_named() {
        let (_dir, env) =
            env_with_config(r#"{"credHelpers": {"example.org": "nonexistent-helper"}}"#);
        let err = lookup("example.org", &env).unwrap_err().to_string();
        assert!(
            err.contains("docker-credential-nonexistent-helper"),
            "{err}"
        );
    }

    #[test]
    fn a_credential_helper_is_asked() {
        let bin = tempfile::tempdir().unwrap();
        let helper = bin.path().join("docker-credential-fake");
        std::fs::write(&helper, "#!/bin/sh\nread host\necho \"{\\\"Username\\\":\\\"u-$host\\\",\\\"Secret\\\":\\\"t\\\"}\"\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
        let credential = {
            // The helper is found on PATH, like docker finds it.
            let _guard = PATH_LOCK.lock().unwrap();
            let old = std::env::var_os("PATH").unwrap_or_default();
            let mut paths = vec![bin.path().to_owned()];
            paths.extend(std::env::split_paths(&old));
            // SAFETY: PATH_LOCK serialises the tests of this module that touch the environment.
            unsafe { std::env::set_var("PATH", std::env::join_paths(paths).unwrap()) };
            let (_dir, env) = env_with_config(r#"{"credsStore": "fake"}"#);
            let result = lookup("example.org", &env);
            unsafe { std::env::set_var("PATH", old) };
            result.unwrap().unwrap()
        };
        assert_eq!(credential.username, "u-example.org");
        assert_eq!(credential.source, Source::CredentialHelper("fake".into()));
    }

    static PATH_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

    #[test]
    fn github_token_is_only_for_ghcr() {
        let env = AuthEnv {
            github_token: Some("ghp_x".into()),
            ..Default::default()
        };
        assert_eq!(
            lookup("ghcr.io", &env).unwrap().unwrap().source,
            Source::GithubToken
        );
        assert!(lookup("example.org", &env).unwrap().is_none());
        let enterprise = AuthEnv {
            github_host: Some("github.example.com".into()),
            ..env
        };
        assert!(lookup("ghcr.io", &enterprise).unwrap().is_none());
    }
}
