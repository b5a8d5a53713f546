//! Security checks of both images: no setuid or setgid program that lets the `aiida` user become
//! root; services on localhost only; and the secrets a container needs made per container, at its
//! first start.
//! What is trusted on localhost, and why, is in `Dockerfiles/README.md`.

use std::collections::BTreeSet;

use crate::support::Harness;
use crate::support::images::{Container, Start, base_image, docker, text, with_services_image};

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
