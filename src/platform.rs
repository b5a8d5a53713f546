//! Platforms the images, aiida-init and the Features are built for, and every name each one has.
//!
//! One platform has many spellings: Docker's `linux/arm64`, the OCI image config's architecture
//! `arm64` with variant `v8`, the kernel's `uname -m` `aarch64`, Rust's target triple
//! `aarch64-unknown-linux-gnu` and Debian's architecture `arm64`. They live here and nowhere
//! else, so that adding a platform is one change.

use std::fmt;

use anyhow::bail;

/// A platform aiida-devc builds for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Platform {
    Amd64,
    Arm64,
}

impl Platform {
    /// Every supported platform, in the order builds and indexes list them.
    pub const ALL: [Platform; 2] = [Platform::Amd64, Platform::Arm64];

    /// Parse Docker's spelling (`linux/amd64`, `linux/arm64`, `linux/arm64/v8`) or a bare
    /// architecture (`amd64`, `x86_64`, `arm64`, `aarch64`).
    pub fn parse(text: &str) -> anyhow::Result<Platform> {
        let arch = text.strip_prefix("linux/").unwrap_or(text);
        Ok(match arch {
            "amd64" | "x86_64" => Platform::Amd64,
            "arm64" | "arm64/v8" | "aarch64" => Platform::Arm64,
            _ => bail!("unsupported platform '{text}': use linux/amd64 or linux/arm64"),
        })
    }

    /// A comma-separated list (`linux/amd64,linux/arm64`), sorted, without duplicates.
    pub fn parse_list(text: &str) -> anyhow::Result<Vec<Platform>> {
        let mut platforms = text
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(Platform::parse)
            .collect::<anyhow::Result<Vec<_>>>()?;
        if platforms.is_empty() {
            bail!(
                "--platform: no platform given (use linux/amd64, linux/arm64 or both, comma-separated)"
            );
        }
        platforms.sort();
        platforms.dedup();
        Ok(platforms)
    }

    /// The platform of the machine this program runs on.
    pub fn host() -> Platform {
        match std::env::consts::ARCH {
            "aarch64" => Platform::Arm64,
            _ => Platform::Amd64,
        }
    }

    /// The platform an OCI image config's `architecture` (and `variant`) name, if supported.
    pub fn from_oci(architecture: &str) -> Option<Platform> {
        match architecture {
            "amd64" => Some(Platform::Amd64),
            "arm64" => Some(Platform::Arm64),
            _ => None,
        }
    }

    /// Docker's name: `linux/amd64`, `linux/arm64`.
    pub fn docker(self) -> &'static str {
        match self {
            Platform::Amd64 => "linux/amd64",
            Platform::Arm64 => "linux/arm64",
        }
    }

    /// The OCI image config's (and Go's) architecture: `amd64`, `arm64`.
    pub fn architecture(self) -> &'static str {
        match self {
            Platform::Amd64 => "amd64",
            Platform::Arm64 => "arm64",
        }
    }

    /// The OCI variant, where the platform has one (`v8` for arm64).
    pub fn variant(self) -> Option<&'static str> {
        match self {
            Platform::Amd64 => None,
            Platform::Arm64 => Some("v8"),
        }
    }

    /// What `uname -m` prints in a container of this platform.
    pub fn uname_machine(self) -> &'static str {
        match self {
            Platform::Amd64 => "x86_64",
            Platform::Arm64 => "aarch64",
        }
    }

    /// Rust's target triple (glibc; aiida-init is linked statically).
    pub fn rust_target(self) -> &'static str {
        match self {
            Platform::Amd64 => "x86_64-unknown-linux-gnu",
            Platform::Arm64 => "aarch64-unknown-linux-gnu",
        }
    }

    /// Debian's architecture name (debootstrap, dpkg).
    pub fn debian_arch(self) -> &'static str {
        self.architecture()
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.docker())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_spelling_parses_to_its_platform() {
        for text in ["linux/amd64", "amd64", "x86_64", "linux/x86_64"] {
            assert_eq!(Platform::parse(text).unwrap(), Platform::Amd64, "{text}");
        }
        for text in [
            "linux/arm64",
            "linux/arm64/v8",
            "arm64",
            "aarch64",
            "linux/aarch64",
        ] {
            assert_eq!(Platform::parse(text).unwrap(), Platform::Arm64, "{text}");
        }
        let err = Platform::parse("windows/amd64").unwrap_err().to_string();
        assert!(err.contains("windows/amd64"), "{err}");
    }

    #[test]
    fn names_of_each_platform() {
        assert_eq!(Platform::Amd64.rust_target(), "x86_64-unknown-linux-gnu");
        assert_eq!(Platform::Arm64.rust_target(), "aarch64-unknown-linux-gnu");
        assert_eq!(Platform::Arm64.variant(), Some("v8"));
        assert_eq!(Platform::Arm64.uname_machine(), "aarch64");
        assert_eq!(Platform::Amd64.to_string(), "linux/amd64");
        assert_eq!(Platform::from_oci("arm64"), Some(Platform::Arm64));
        assert_eq!(Platform::from_oci("s390x"), None);
    }

    #[test]
    fn lists_are_sorted_and_deduplicated() {
        assert_eq!(
            Platform::parse_list("linux/arm64, linux/amd64,linux/arm64").unwrap(),
            vec![Platform::Amd64, Platform::Arm64]
        );
        assert!(Platform::parse_list("").is_err());
        assert!(Platform::parse_list("linux/amd64,linux/ppc64le").is_err());
    }
}
