//! Security scan of both images: no secret in any layer, the image configuration or the build
//! history; no setuid or setgid program that lets the `aiida` user become root; services on
//! localhost only; and the secrets a container needs made per container, at its first start.
//! What is trusted on localhost, and why, is in `Dockerfiles/README.md`.

use crate::support::{Need, skip_without};
use std::collections::BTreeSet;
use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::support::images::{Container, Start, base_image, docker, text, with_services_image};
use crate::support::{Harness, ca_bundle};

/// File names that hold a credential wherever they are.
const SECRET_FILE_NAMES: &[&str] = &[
    ".erlang.cookie",
    ".pgpass",
    ".netrc",
    ".git-credentials",
    ".pypirc",
    "id_rsa",
    "id_dsa",
    "id_ecdsa",
    "id_ed25519",
    "ca.pem",
];

/// Words that name a secret in an environment variable or a build step.
const SECRET_WORDS: &[&str] = &[
    "PASSWORD",
    "PASSWD",
    "TOKEN",
    "SECRET",
    "COOKIE",
    "CREDENTIAL",
];

/// Files larger than this are not searched for key material (keys, cookies and tokens are small).
const CONTENT_SCAN_LIMIT: u64 = 1 << 20;

/// Private keys that upstream packages ship as public test fixtures: known to everyone, so no
/// secret (each matched as the end of a path).
const PUBLIC_TEST_KEYS: &[&str] = &["site-packages/tornado/test/test.key"];

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// A PEM private key block: `-----BEGIN ... PRIVATE KEY-----`, a line break, then base64 (not
/// just the marker, which programs such as ssh-keygen hold as a constant).
fn holds_pem_private_key(content: &[u8]) -> bool {
    const BEGIN: &[u8] = b"-----BEGIN ";
    const END: &[u8] = b"PRIVATE KEY-----";
    let mut rest = content;
    while let Some(at) = rest.windows(BEGIN.len()).position(|w| w == BEGIN) {
        let after = &rest[at + BEGIN.len()..];
        let head = &after[..after.len().min(40 + END.len())];
        let label_len = head.windows(END.len()).position(|w| w == END);
        if let Some(label_len) = label_len.filter(|&n| {
            after[..n]
                .iter()
                .all(|b| b.is_ascii_uppercase() || *b == b' ')
        }) {
            let body = &after[label_len + END.len()..];
            let body = body
                .strip_prefix(b"\r\n")
                .or_else(|| body.strip_prefix(b"\n"))
                .unwrap_or_default();
            let base64 = body
                .iter()
                .take(64)
                .take_while(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='))
                .count();
            if base64 >= 40 {
                return true;
            }
        }
        rest = after;
    }
    false
}

#[test]
fn pem_private_keys_are_told_from_their_markers() {
    let key = b"x\n-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW\n";
    assert!(holds_pem_private_key(key));
    assert!(!holds_pem_private_key(
        b"_SK_START = b\"-----BEGIN OPENSSH PRIVATE KEY-----\""
    ));
    assert!(!holds_pem_private_key(
        b"-----BEGIN %s PRIVATE KEY-----\n%s\n"
    ));
    assert!(!holds_pem_private_key(b"-----BEGIN CERTIFICATE-----\nMIIDdzCCAl+gAwIBAgIEAgAAuTANBgkqhkiG9w0BAQUFADBaMQswCQYDVQQGEwJJ\n"));
}

/// What the scan of one image found.
#[derive(Default)]
struct Scan {
    layers: usize,
    files: usize,
    findings: Vec<String>,
}

/// Every layer of `image` as `docker save` writes it, every file in each (also files that a later
/// layer deletes), and its configuration with the build history.
fn scan_image(image: &str, leaked_certificates: &[String]) -> Scan {
    let mut child = Command::new("docker")
        .args(["save", image])
        .stdout(Stdio::piped())
        .spawn()
        .expect("run docker save");
    let mut scan = Scan::default();
    let mut outer = tar::Archive::new(child.stdout.take().unwrap());
    for entry in outer.entries().expect("read docker save's output") {
        let mut entry = entry.expect("a docker save entry");
        let path = entry.path().unwrap().to_string_lossy().into_owned();
        if path.ends_with("layer.tar") {
            scan.layers += 1;
            scan_layer(&path, entry, leaked_certificates, &mut scan);
        } else if path.ends_with(".json") && !path.contains('/') && path != "manifest.json" {
            let mut text = String::new();
            entry.read_to_string(&mut text).unwrap();
            scan_config(&text, &mut scan.findings);
        }
    }
    assert!(
        child.wait().unwrap().success(),
        "docker save {image} failed"
    );
    scan
}

fn scan_layer(layer: &str, reader: impl Read, leaked_certificates: &[String], scan: &mut Scan) {
    let mut archive = tar::Archive::new(reader);
    for file in archive.entries().expect("read a layer") {
        let mut file = file.expect("a layer entry");
        let path = file.path().unwrap().to_string_lossy().into_owned();
        let mut found = |what: &str| scan.findings.push(format!("{layer}: /{path}: {what}"));
        let name = Path::new(&path)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let regular = file.header().entry_type().is_file();
        if !regular {
            continue;
        }
        scan.files += 1;
        if SECRET_FILE_NAMES.contains(&name.as_str()) {
            found("a credential file");
        }
        if path.starts_with("etc/ssh/ssh_host_") && !path.ends_with(".pub") {
            found("an SSH host key (the same in every container)");
        }
        if path.starts_with("etc/ssl/private/") && !name.starts_with(".wh.") {
            found("a TLS private key (the same in every container)");
        }
        if path.contains(".docker/config.json") {
            found("a Docker credentials file");
        }
        if file.size() > CONTENT_SCAN_LIMIT {
            continue;
        }
        let mut content = Vec::new();
        file.read_to_end(&mut content).unwrap();
        if holds_pem_private_key(&content) && !PUBLIC_TEST_KEYS.iter().any(|k| path.ends_with(k)) {
            found("a PEM private key");
        }
        for cert in leaked_certificates {
            if contains(&content, cert.as_bytes()) {
                found("a certificate of the build's CA bundle");
            }
        }
    }
}

/// The image configuration: no secret in the environment, labels or build history.
fn scan_config(text: &str, findings: &mut Vec<String>) {
    let config: serde_json::Value = serde_json::from_str(text).expect("the image configuration");
    let secret_word = |s: &str| {
        let upper = s.to_uppercase();
        SECRET_WORDS.iter().any(|w| upper.contains(w))
    };
    for variable in config["config"]["Env"].as_array().into_iter().flatten() {
        let variable = variable.as_str().unwrap_or_default();
        let (name, value) = variable.split_once('=').unwrap_or((variable, ""));
        if secret_word(name) && !value.is_empty() {
            findings.push(format!("image environment: {name} has a value"));
        }
    }
    for (name, value) in config["config"]["Labels"].as_object().into_iter().flatten() {
        if secret_word(name) {
            findings.push(format!("image label {name}={value}"));
        }
    }
    for step in config["history"].as_array().into_iter().flatten() {
        let created_by = step["created_by"].as_str().unwrap_or_default();
        // A build argument used by a RUN step is recorded as `|N NAME=value ...`.
        for word in created_by.split_whitespace() {
            if let Some((name, value)) = word.split_once('=') {
                if secret_word(name) && !value.is_empty() && !value.starts_with('$') {
                    findings.push(format!("build history: `{word}` in `{created_by}`"));
                }
            }
        }
        for marker in ["PRIVATE KEY", "BEGIN CERTIFICATE", "ca.pem"] {
            if created_by.contains(marker) {
                findings.push(format!("build history mentions {marker}: `{created_by}`"));
            }
        }
    }
}

/// The certificates of the CA bundle the images are built with that Debian does not ship: the
/// ones a TLS-intercepting proxy adds. Each as its first PEM line (64 characters of base64).
fn build_only_certificates() -> Vec<String> {
    let Some(bundle) = ca_bundle() else {
        return Vec::new();
    };
    let stock =
        aiida_devc::host::ca::stock_certificates(Path::new(aiida_devc::host::ca::STOCK_CERTS_DIR));
    aiida_devc::host::ca::pem_certificates(&bundle.pem)
        .into_iter()
        .filter(|c| !stock.contains(c) && c.len() >= 64)
        .map(|c| c[..64].to_owned())
        .collect()
}

/// No private key, Erlang cookie, credential file, certificate of the build's CA bundle,
/// password or token in any layer of either image (deleted files included), in their
/// environment or in their build history.
#[test]
fn no_secret_in_any_layer_or_the_build_history() {
    if skip_without(&[Need::Docker]) {
        return;
    }
    let h = Harness::new();
    let leaked = build_only_certificates();
    let mut report = Vec::new();
    let mut findings = Vec::new();
    for image in [base_image(), with_services_image()] {
        h.require_image(&image);
        let scan = scan_image(&image, &leaked);
        assert!(
            scan.layers > 0 && scan.files > 1000,
            "{image}: nothing scanned"
        );
        report.push(format!(
            "{image}: {} layers, {} files",
            scan.layers, scan.files
        ));
        findings.extend(scan.findings.into_iter().map(|f| format!("{image}: {f}")));
    }
    assert!(
        findings.is_empty(),
        "secrets in the images ({}; {} build-only CA certificates looked for):\n{}",
        report.join("; "),
        leaked.len(),
        findings.join("\n")
    );
}

/// `bash -c SCRIPT` in a container of `image` as `user`, without the image's init; its stdout.
fn shell(image: &str, user: &str, script: &str) -> String {
    let out = docker(&[
        "run",
        "--rm",
        "--entrypoint",
        "bash",
        "--user",
        user,
        image,
        "-c",
        script,
    ]);
    assert!(
        out.status.success(),
        "{image}: `{script}` failed: {}",
        text(&out)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The setuid and setgid programs of the final filesystem, for a user without root's password:
/// root's password is locked, there is no sudo or doas, and `aiida` is in no group that
/// grants root. What remains is Debian's password tools, which ask for a password `aiida` cannot
/// give, and two helpers that act only for their caller or on host keys that do not exist.
#[test]
fn the_aiida_user_has_no_way_to_become_root() {
    if skip_without(&[Need::Docker]) {
        return;
    }
    let h = Harness::new();
    let allowed: BTreeSet<&str> = [
        "/usr/bin/su",
        "/usr/bin/passwd",
        "/usr/bin/chsh",
        "/usr/bin/chfn",
        "/usr/bin/gpasswd",
        "/usr/bin/newgrp",
        "/usr/bin/mount",
        "/usr/bin/umount",
        "/usr/bin/chage",
        "/usr/bin/expiry",
        "/usr/sbin/unix_chkpwd",
        "/usr/bin/ssh-agent",
        // Signs with the host keys for host-based authentication; the images hold no host key
        // (the layer scan checks it) and it is off in ssh_config.
        "/usr/lib/openssh/ssh-keysign",
        // Group crontab: edits the caller's own crontab (no cron daemon runs in the images).
        "/usr/bin/crontab",
    ]
    .into();
    for image in [base_image(), with_services_image()] {
        h.require_image(&image);
        let stdout = shell(
            &image,
            "1000",
            "find / -xdev -type f -perm /6000 -printf '%u %m %p\\n'; \
             echo ---; id; echo ---; command -v sudo doas pkexec || true",
        );
        let mut parts = stdout.split("---\n");
        let privileged = parts.next().unwrap_or_default();
        let identity = parts.next().unwrap_or_default();
        let escalators = parts.next().unwrap_or_default();
        let unexpected: Vec<&str> = privileged
            .lines()
            .filter(|l| !allowed.contains(l.rsplit(' ').next().unwrap_or_default()))
            .collect();
        assert!(
            unexpected.is_empty(),
            "{image}: setuid/setgid programs beyond Debian's password tools:\n{}",
            unexpected.join("\n")
        );
        assert!(
            identity.starts_with("uid=1000(aiida)") && !identity.contains("(sudo)"),
            "{image}: {identity}"
        );
        assert!(
            escalators.trim().is_empty(),
            "{image}: a privilege escalation tool is installed: {escalators}"
        );
        // As root, read root's password field: locked (`*` or `!`), so su cannot succeed.
        let shadow = shell(&image, "0", "getent shadow root");
        let field = shadow.split(':').nth(1).unwrap_or_default();
        assert!(
            field.starts_with('*') || field.starts_with('!'),
            "{image}: root has a usable password ({:?})",
            shadow.trim()
        );
    }
}

/// Two containers of the with-services image: each made its own profile database password and
/// Erlang cookie at its first start (none comes from the image), and every listening socket is
/// on the loopback interface.
#[test]
fn per_container_secrets_and_services_on_localhost_only() {
    if skip_without(&[Need::Docker]) {
        return;
    }
    let h = Harness::new();
    let read = |c: &Container| {
        c.wait_ready();
        let password = c.sh(
            "python -c 'import json, os; p = json.load(open(os.path.expanduser(\"~/.aiida/config.json\")))[\"profiles\"][\"default\"]; print(p[\"storage\"][\"config\"][\"database_password\"])'",
        );
        let cookie = c.sh("cat ~/.erlang.cookie");
        let listening = c.sh(
            "for f in /proc/net/tcp /proc/net/tcp6; do awk '$4 == \"0A\" {print $2}' $f; done; \
             for f in /proc/net/udp /proc/net/udp6; do awk 'NR > 1 {print $2}' $f; done",
        );
        for address in listening.split_whitespace() {
            let host = address.split(':').next().unwrap();
            assert!(
                host == "0100007F" || host == "00000000000000000000000001000000",
                "{}: a socket listens beyond localhost: {address} in {listening}",
                c.name
            );
        }
        (password.trim().to_owned(), cookie.trim().to_owned())
    };
    let a = Container::start(&h, &with_services_image(), Start::default());
    let b = Container::start(&h, &with_services_image(), Start::default());
    let (password_a, cookie_a) = read(&a);
    let (password_b, cookie_b) = read(&b);
    assert!(password_a.len() >= 20, "a weak password: {password_a:?}");
    assert_ne!(
        password_a, password_b,
        "the same database password in two containers"
    );
    assert!(cookie_a.len() >= 16, "a weak Erlang cookie: {cookie_a:?}");
    assert_ne!(
        cookie_a, cookie_b,
        "the same Erlang cookie in two containers"
    );
}
