#!/usr/bin/env bash
# `cargo check` of the CLI (aiida-devc's library and binary) for Windows and macOS on this Linux
# machine, where rustup cannot download those targets' standard libraries: Debian's Rust 1.96
# (rustc-web, cargo-web) compiles std for the target from Debian's own copy of its source
# (rust-web-src) with `-Zbuild-std` (RUSTC_BOOTSTRAP=1: build-std is unstable). Type checking and
# borrow checking run for the target, with its cfgs (`unix`, `windows`, `target_os`), so a
# Linux-only call in the host side fails here. Nothing is linked: the wheels for those platforms
# are built and run on their own runners (.github/workflows/wheels.yml).
#
#   bash scripts/cross-check.sh [TARGET...]
#
# TARGET defaults to x86_64-pc-windows-gnu x86_64-apple-darwin aarch64-apple-darwin. ring, the
# one C dependency, is compiled for the target too: with MinGW's gcc for Windows, and with clang
# and no SDK for macOS (ring's own switch for sysroot-less builds, as it uses for wasm32).
# Needs (Debian, as root): apt-get install rustc-web cargo-web rust-web-src clang
# gcc-mingw-w64-x86-64. Its own target directory: target/cross-check.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DEBIAN_RUSTC=/usr/bin/rustc
DEBIAN_CARGO=/usr/bin/cargo
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(x86_64-pc-windows-gnu x86_64-apple-darwin aarch64-apple-darwin)

die() { printf 'cross-check: error: %s\n' "$*" >&2; exit 1; }

[ -x "$DEBIAN_RUSTC" ] && [ -x "$DEBIAN_CARGO" ] \
    || die "Debian's Rust is missing: apt-get install rustc-web cargo-web"
[ -f "$("$DEBIAN_RUSTC" --print sysroot)/lib/rustlib/src/rust/library/std/Cargo.toml" ] \
    || die "the Rust standard library's source is missing: apt-get install rust-web-src"

for target in "${TARGETS[@]}"; do
    env=(RUSTC="$DEBIAN_RUSTC" RUSTC_BOOTSTRAP=1 CARGO_TARGET_DIR="$ROOT/target/cross-check")
    underscored=${target//-/_}
    case "$target" in
        *-windows-gnu)
            command -v x86_64-w64-mingw32-gcc >/dev/null \
                || die "MinGW's gcc is missing: apt-get install gcc-mingw-w64-x86-64"
            ;;
        *-apple-darwin)
            command -v clang >/dev/null || die "clang is missing: apt-get install clang"
            # No macOS SDK here: ring's C needs none with RING_CORE_NOSTDLIBINC but for two
            # headers, given here as stubs: Apple's TargetConditionals.h (the macOS values) and
            # the stdlib.h that clang's own mm_malloc.h includes (malloc and free). An SDKROOT
            # keeps cc-rs from asking xcrun for an SDK.
            sdk=$(mktemp -d)
            mkdir -p "$sdk/include"
            printf '#define TARGET_OS_MAC 1\n#define TARGET_OS_OSX 1\n#define TARGET_OS_IPHONE 0\n' \
                >"$sdk/include/TargetConditionals.h"
            printf '#include <stddef.h>\nvoid *malloc(size_t);\nvoid free(void *);\n' >"$sdk/include/stdlib.h"
            env+=("CC_$underscored=clang" "SDKROOT=$sdk"
                "CFLAGS_$underscored=-nostdlibinc -DRING_CORE_NOSTDLIBINC=1 -I$sdk/include")
            ;;
        *) die "unsupported target $target (windows-gnu or apple-darwin)" ;;
    esac
    start=$(date +%s)
    (cd "$ROOT" && env "${env[@]}" "$DEBIAN_CARGO" check --locked --quiet -p aiida-devc --lib --bins \
        -Zbuild-std=std,panic_abort --target "$target") \
        || die "aiida-devc does not build for $target (see above)"
    echo "cross-check: aiida-devc builds for $target ($(( $(date +%s) - start )) s)"
done
