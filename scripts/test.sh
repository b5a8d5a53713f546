#!/usr/bin/env bash
# Run every test of aiida-devc against the real things: bootstraps the machine (Docker engine,
# base images for amd64 and arm64, qemu, registry, reference devcontainer CLI), then runs the
# whole cargo test suite.
#
#   bash scripts/test.sh [extra cargo test arguments]
#
# Needs root on a fresh machine (the bootstrap installs packages and starts dockerd).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

# With --arm64: the aiida-services Feature is tested in an arm64 container under emulation, and
# packaging it cross-compiles aiida-init for aarch64.
bash scripts/bootstrap.sh --arm64

# The bootstrap from a new machine's state (no aarch64 handler, no update-binfmts entry) must
# register the handler again. It briefly unregisters it, so it runs before anything else does.
# Only where the bootstrap runs as root (this project's machines; not a hosted runner).
if [ "$(id -u)" = 0 ]; then
    bash tests/bootstrap/new-machine.sh
fi

# Gates before any test: formatting and lints over the whole workspace (both crates, all targets).
cargo fmt --all --check
cargo clippy --locked --workspace --all-targets -- -D warnings
# The fuzz targets (crates/fuzz, outside the workspace) must keep building: type-check them on
# stable (libfuzzer-sys checks on stable; running the targets needs nightly, see
# crates/fuzz/README.md).
cargo check --locked --manifest-path crates/fuzz/Cargo.toml --bins

# The images under test, built once per run for both platforms: aiidateam/aiida-core-base and
# aiidateam/aiida-core-with-services (tags aiida-X.Y.Z, latest, ...) for this machine's platform,
# and the same tags with the suffix -arm64 for linux/arm64 (built under qemu). The multiarch
# tests publish these to a registry on localhost; the engine's layer cache makes a rebuild of
# unchanged sources take seconds.
# AIIDA_DEVC_TEST_PLATFORMS narrows them (ci.yml's arm64 job: linux/arm64 only, natively).
cargo run --locked --quiet --bin aiida-devc -- images build \
    --platform "${AIIDA_DEVC_TEST_PLATFORMS:-linux/amd64,linux/arm64}"

# Unit tests, the real binaries as PID 1, the images, the registry, the reference CLI.
# One test thread per core: the integration tests start containers and services.
# A missing prerequisite (no engine, no reference CLI) fails a test here instead of skipping it.
export AIIDA_DEVC_REQUIRE_PREREQUISITES=1
cargo test --locked --workspace --all-targets "$@"
