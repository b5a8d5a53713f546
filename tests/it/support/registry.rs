//! A real OCI registry for the tests: Debian's `docker-registry` (distribution 2.8) serving from a
//! temporary folder on 127.0.0.1 with a free port, one per test binary (and one more with
//! htpasswd authentication for the tests of refused credentials).
//!
//! The reference devcontainer CLI speaks plain http only to the host name `localhost`, so the
//! registry is always addressed as `localhost:PORT`. The registry process is tied to a thread that
//! lives as long as the test binary (`PR_SET_PDEATHSIG`), so it stops when the binary ends, also
//! when a test fails, and its storage folder is removed.
#![allow(dead_code)]

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// A running registry.
pub struct Registry {
    /// `localhost:PORT`
    pub host: String,
    pub port: u16,
    /// The folder it stores blobs in, and its log file.
    pub dir: PathBuf,
}

impl Registry {
    /// The shared, anonymous registry of this test binary (started on first use).
    pub fn shared() -> &'static Registry {
        static SHARED: OnceLock<Registry> = OnceLock::new();
        SHARED.get_or_init(|| Registry::start(None))
    }

    /// A second anonymous registry, for what pushes to two registries (ghcr.io and docker.io).
    pub fn second() -> &'static Registry {
        static SECOND: OnceLock<Registry> = OnceLock::new();
        SECOND.get_or_init(|| Registry::start(None))
    }

    /// A registry that only lets `user` with `password` in (htpasswd, bcrypt).
    pub fn with_password(user: &str, password: &str) -> &'static Registry {
        static AUTH: OnceLock<Registry> = OnceLock::new();
        AUTH.get_or_init(|| Registry::start(Some((user, password))))
    }

    fn start(credentials: Option<(&str, &str)>) -> Registry {
        let binary = Path::new("/usr/bin/docker-registry");
        super::require(
            binary.is_file(),
            "the docker-registry package (Debian's OCI registry)",
        );
        let dir = tempfile::Builder::new()
            .prefix("aiida-devc-registry-")
            .tempdir()
            .unwrap()
            .keep();
        let port = free_port();
        let mut config = format!(
            "version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n",
            dir.join("data").display()
        );
        if let Some((user, password)) = credentials {
            let htpasswd = dir.join("htpasswd");
            std::fs::write(&htpasswd, format!("{user}:{}\n", bcrypt(password))).unwrap();
            config.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: aiida-devc-test\n    path: {}\n",
                htpasswd.display()
            ));
        }
        let config_path = dir.join("config.yml");
        let storage_dir = dir.clone();
        std::fs::write(&config_path, config).unwrap();
        let log = std::fs::File::create(dir.join("registry.log")).unwrap();
        // The spawning thread must outlive every test: PR_SET_PDEATHSIG fires when it ends.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            // A small shell owns the registry: when the test binary ends it gets SIGTERM, stops the
            // registry and removes its storage.
            let script = r#"trap 'kill "$pid" 2>/dev/null; wait "$pid"; rm -rf "$2"; exit 0' TERM
"$0" serve "$1" & pid=$!
wait "$pid""#;
            let mut command = Command::new("sh");
            command
                .arg("-c")
                .arg(script)
                .arg(binary)
                .arg(&config_path)
                .arg(&storage_dir);
            command
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log);
            // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
            unsafe {
                command.pre_exec(|| {
                    if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
            let child = command.spawn();
            let ok = child.is_ok();
            tx.send(child.map(|c| c.id()).map_err(|e| e.to_string()))
                .unwrap();
            if ok {
                loop {
                    std::thread::park();
                }
            }
        });
        let pid = rx
            .recv()
            .unwrap()
            .unwrap_or_else(|e| panic!("cannot start docker-registry: {e}"));
        let registry = Registry {
            host: format!("localhost:{port}"),
            port,
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if http_status(port, "/v2/").is_some() {
                return registry;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let log = std::fs::read_to_string(registry.dir.join("registry.log")).unwrap_or_default();
        panic!("docker-registry (pid {pid}) did not answer on port {port} within 20 s:\n{log}");
    }

    /// The tags of a repository (empty when there is none), straight from the registry's API.
    pub fn tags(&self, repository: &str) -> Vec<String> {
        let body = http_get(self.port, &format!("/v2/{repository}/tags/list")).unwrap_or_default();
        let value: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        let mut tags: Vec<String> = value["tags"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|t| t.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        tags.sort();
        tags
    }

    /// Every repository in the registry (the catalog).
    pub fn repositories(&self) -> Vec<String> {
        let body = http_get(self.port, "/v2/_catalog?n=1000").unwrap_or_default();
        let value: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        value["repositories"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|t| t.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The raw manifest at `repository:reference`.
    pub fn manifest(&self, repository: &str, reference: &str) -> Option<String> {
        http_get_accept(
            self.port,
            &format!("/v2/{repository}/manifests/{reference}"),
            "application/vnd.oci.image.manifest.v1+json",
        )
    }

    /// A blob's bytes.
    pub fn blob(&self, repository: &str, digest: &str) -> Vec<u8> {
        http_get_bytes(
            self.port,
            &format!("/v2/{repository}/blobs/{digest}"),
            "*/*",
        )
        .expect("the blob exists")
    }

    /// How many requests that changed something (uploads and manifest PUTs) below `namespace`
    /// the log shows, for proving that a command pushed nothing there. The registry is shared by
    /// tests that run at the same time: each counts its own namespace only.
    pub fn write_requests(&self, namespace: &str) -> usize {
        let log = std::fs::read_to_string(self.dir.join("registry.log")).unwrap_or_default();
        let below = format!("http.request.uri=\"/v2/{namespace}/");
        log.lines()
            .filter(|l| {
                l.contains(&below)
                    && (l.contains("http.request.method=PUT")
                        || l.contains("http.request.method=POST")
                        || l.contains("http.request.method=PATCH"))
            })
            .count()
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A bcrypt hash for htpasswd (distribution accepts only bcrypt), from Python's crypt module.
fn bcrypt(password: &str) -> String {
    let out = Command::new("python3")
        .args(["-W", "ignore", "-c", "import crypt,sys; print(crypt.crypt(sys.argv[1], crypt.mksalt(crypt.METHOD_BLOWFISH)))", password])
        .output();
    let out = out
        .unwrap_or_else(|e| panic!("missing prerequisite: python3 (to hash a test password): {e}"));
    let hash = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert!(
        hash.starts_with("$2"),
        "python3 could not make a bcrypt hash: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    hash
}

fn request(port: u16, path: &str, accept: &str) -> Option<(u16, Vec<u8>)> {
    use std::io::Write;
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: localhost:{port}\r\nAccept: {accept}\r\n\r\n"
    )
    .ok()?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).ok()?;
    let split = response.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&response[..split]).to_string();
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, response[split + 4..].to_vec()))
}

fn http_status(port: u16, path: &str) -> Option<u16> {
    request(port, path, "*/*").map(|(s, _)| s)
}

fn http_get(port: u16, path: &str) -> Option<String> {
    http_get_accept(port, path, "application/json")
}

fn http_get_accept(port: u16, path: &str, accept: &str) -> Option<String> {
    http_get_bytes(port, path, accept).map(|b| String::from_utf8_lossy(&b).into_owned())
}

fn http_get_bytes(port: u16, path: &str, accept: &str) -> Option<Vec<u8>> {
    match request(port, path, accept)? {
        (200, body) => Some(body),
        _ => None,
    }
}
