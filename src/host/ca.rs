//! The CA bundle option.
//!
//! Behind a TLS-intercepting proxy (corporate networks, some CI machines) https only works when
//! the proxy's CA is trusted. The host usually trusts it already, but image builds and containers
//! do not see the host's trust store. aiida-devc therefore passes one PEM bundle to them:
//!
//! 1. `--ca-cert FILE` (or `AIIDA_DEVC_CA_CERT`): that file; `none` turns the feature off;
//! 2. otherwise the host's bundle, `/etc/ssl/certs/ca-certificates.crt`, but only when it holds
//!    certificates that Debian's stock set (`/usr/share/ca-certificates`) does not, so that a
//!    machine without a proxy builds exactly what upstream builds.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

/// Where Debian-like systems keep the bundle that `update-ca-certificates` writes.
pub const HOST_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";
/// Where the stock certificates that make up that bundle come from.
pub const STOCK_CERTS_DIR: &str = "/usr/share/ca-certificates";

/// A PEM bundle that was read and checked.
#[derive(Debug, Clone)]
pub struct CaBundle {
    /// Where it came from on the host. Never written into an image or a log line that leaves the
    /// machine: use [`CaBundle::pem`].
    pub path: PathBuf,
    /// The PEM text (one or more certificates).
    pub pem: String,
}

impl CaBundle {
    /// Read and check a PEM bundle: it must hold at least one certificate.
    pub fn read(path: &Path) -> anyhow::Result<CaBundle> {
        let pem = fs::read_to_string(path)
            .with_context(|| format!("cannot read the CA bundle {}", path.display()))?;
        if pem_certificates(&pem).is_empty() {
            bail!(
                "the CA bundle {} holds no PEM certificate (no '-----BEGIN CERTIFICATE-----' block)",
                path.display()
            );
        }
        Ok(CaBundle {
            path: path.to_owned(),
            pem,
        })
    }

    /// How many certificates the bundle holds.
    pub fn len(&self) -> usize {
        pem_certificates(&self.pem).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The CA option of one command run: resolved once, at the start, by [`Ca::resolve`], and passed
/// down to whatever builds, starts containers or talks to a registry.
#[derive(Debug, Clone, Default)]
pub enum Ca {
    /// `--ca-cert none`, or no option on a host without certificates of its own.
    #[default]
    Off,
    /// No option: the host's bundle, which holds certificates beyond the stock set.
    Detected(CaBundle),
    /// `--ca-cert FILE` (or `AIIDA_DEVC_CA_CERT`).
    Given(CaBundle),
}

impl Ca {
    /// Apply the rule in the module documentation (the one place `none` is read).
    pub fn resolve(option: Option<&Path>) -> anyhow::Result<Ca> {
        match option {
            Some(path) if path.as_os_str() == "none" => Ok(Ca::Off),
            Some(path) => CaBundle::read(path).map(Ca::Given),
            None => {
                let host = Path::new(HOST_BUNDLE);
                if !host.exists() {
                    return Ok(Ca::Off);
                }
                let bundle = CaBundle::read(host)?;
                let stock = stock_certificates(Path::new(STOCK_CERTS_DIR));
                let extra = pem_certificates(&bundle.pem)
                    .into_iter()
                    .any(|c| !stock.contains(&c));
                Ok(if extra { Ca::Detected(bundle) } else { Ca::Off })
            }
        }
    }

    /// The bundle to trust, if any.
    pub fn bundle(&self) -> Option<&CaBundle> {
        match self {
            Ca::Off => None,
            Ca::Detected(bundle) | Ca::Given(bundle) => Some(bundle),
        }
    }
}

/// The certificates of a PEM text, each normalised to its base64 body without line breaks.
pub fn pem_certificates(pem: &str) -> Vec<String> {
    let mut certs = Vec::new();
    let mut current: Option<String> = None;
    for line in pem.lines() {
        let line = line.trim();
        if line == "-----BEGIN CERTIFICATE-----" {
            current = Some(String::new());
        } else if line == "-----END CERTIFICATE-----" {
            if let Some(body) = current.take() {
                certs.push(body);
            }
        } else if let Some(body) = current.as_mut() {
            body.push_str(line);
        }
    }
    certs
}

/// Every certificate below Debian's stock directory (recursively).
pub fn stock_certificates(dir: &Path) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else if let Ok(text) = fs::read_to_string(&path) {
                found.extend(pem_certificates(&text));
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    const ONE: &str = "-----BEGIN CERTIFICATE-----\nAAAA\nBBBB\n-----END CERTIFICATE-----\n";

    #[test]
    fn pem_bodies_are_normalised() {
        let two = format!("{ONE}junk\n{}", ONE.replace("AAAA", "CCCC"));
        assert_eq!(pem_certificates(&two), vec!["AAAABBBB", "CCCCBBBB"]);
    }

    #[test]
    fn an_explicit_bundle_without_certificates_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("empty.pem");
        fs::write(&path, "not a certificate\n").unwrap();
        let err = Ca::resolve(Some(&path)).unwrap_err().to_string();
        assert!(
            err.contains("empty.pem") && err.contains("no PEM certificate"),
            "{err}"
        );
    }

    #[test]
    fn none_turns_the_bundle_off() {
        assert!(matches!(
            Ca::resolve(Some(Path::new("none"))).unwrap(),
            Ca::Off
        ));
    }

    #[test]
    fn an_explicit_bundle_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.pem");
        fs::write(&path, ONE).unwrap();
        let Ca::Given(bundle) = Ca::resolve(Some(&path)).unwrap() else {
            panic!("an explicit bundle is Given")
        };
        assert_eq!(bundle.len(), 1);
    }
}
