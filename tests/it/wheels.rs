//! The PyPI package as users install it (`scripts/wheels.sh`): the manylinux wheels for x86_64
//! and aarch64 pass maturin's manylinux_2_17 audit, install into a fresh venv (the aarch64 one in
//! an arm64 container under qemu), and there print the version and the same `init --dry-run` as
//! the cargo-built binary; `uvx --from WHEEL aiida-devc init` writes the same devcontainer.json;
//! the sdist carries what the CLI is built from and nothing else.
//!
//! Every `init` runs with `--ca-cert none --registry localhost:9` and no Docker engine, so the
//! image comes from the built-in release list on every machine (as the script does).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::plugin_workspace::{sample_plugin, text};
use crate::support::{copy_tree, project_root};

const INIT_ARGS: &[&str] = &["--ca-cert", "none", "init", "--registry", "localhost:9"];

/// `bash scripts/wheels.sh ARGS`; its stdout, trimmed. The failure shows the script's stderr.
fn wheels_sh(args: &[&str]) -> String {
    let out = Command::new("bash")
        .arg(project_root().join("scripts/wheels.sh"))
        .args(args)
        .output()
        .expect("run scripts/wheels.sh");
    assert!(
        out.status.success(),
        "scripts/wheels.sh {}: {}\n{}{}",
        args.join(" "),
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout).trim().to_owned()
}

/// The cargo-built binary, run in `plugin` as the script runs the installed one.
fn reference(plugin: &Path, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_aiida-devc"))
        .args(args)
        .current_dir(plugin)
        .env("DOCKER_HOST", "unix:///nonexistent")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    text(&out.stdout)
}

/// A copy of the sample plugin without its committed devcontainer.json.
fn fresh_sample() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    copy_tree(&sample_plugin(), dir.path());
    fs::remove_dir_all(dir.path().join(".devcontainer")).unwrap();
    dir
}

/// The wheel's file name: `aiida_devc-VERSION-py3-none-manylinux2014_ARCH.manylinux_2_17_ARCH.whl`.
fn assert_manylinux_name(wheel: &Path, arch: &str) {
    let name = wheel.file_name().unwrap().to_string_lossy();
    assert_eq!(
        name,
        format!(
            "aiida_devc-{}-py3-none-manylinux2014_{arch}.manylinux_2_17_{arch}.whl",
            env!("CARGO_PKG_VERSION")
        )
    );
    let size = fs::metadata(wheel).unwrap().len();
    eprintln!("{name}: {} kB", size / 1024);
}

/// What the installed wheel printed (the script's OUT folder) is what the cargo binary prints.
fn assert_same_as_reference(out: &Path, plugin: &Path) {
    let version = fs::read_to_string(out.join("version.txt")).unwrap();
    assert_eq!(version, reference(plugin, &["--version"]));
    assert!(
        version.starts_with(&format!(
            "aiida-devc {} (commit ",
            env!("CARGO_PKG_VERSION")
        )),
        "{version}"
    );
    let dry_run = fs::read_to_string(out.join("init-dry-run.txt")).unwrap();
    let mut args = INIT_ARGS.to_vec();
    args.extend(["--dry-run", "."]);
    assert_eq!(dry_run, reference(plugin, &args));
}

/// Build the wheel for `arch`, install and run it with `scripts/wheels.sh CHECK` (`check`, or
/// `check-arm64` in a container), and compare what it printed with the cargo-built binary.
fn build_and_check(arch: &str, check: &str) -> PathBuf {
    let wheel = PathBuf::from(wheels_sh(&["build", arch]));
    assert!(wheel.is_file(), "{}", wheel.display());
    assert_manylinux_name(&wheel, arch);
    let out = tempfile::tempdir().unwrap();
    let sample = sample_plugin();
    wheels_sh(&[
        check,
        wheel.to_str().unwrap(),
        sample.to_str().unwrap(),
        out.path().to_str().unwrap(),
    ]);
    // The script runs init on a copy without .devcontainer: so does the reference.
    assert_same_as_reference(out.path(), fresh_sample().path());
    wheel
}

#[test]
fn the_x86_64_wheel_installs_into_a_venv_and_uvx_runs_it_like_the_cargo_binary() {
    let wheel = build_and_check("x86_64", "check");

    // uvx from the wheel writes the file the cargo binary writes.
    let by_uvx = fresh_sample();
    wheels_sh(&[
        "uvx",
        wheel.to_str().unwrap(),
        by_uvx.path().to_str().unwrap(),
    ]);
    let by_cargo = fresh_sample();
    let mut args = INIT_ARGS.to_vec();
    args.push(".");
    reference(by_cargo.path(), &args);
    let file =
        |dir: &Path| fs::read_to_string(dir.join(".devcontainer/devcontainer.json")).unwrap();
    assert_eq!(file(by_uvx.path()), file(by_cargo.path()));
}

#[test]
fn the_aarch64_wheel_installs_into_a_venv_in_an_arm64_container() {
    build_and_check("aarch64", "check-arm64");
}

#[test]
fn the_sdist_carries_the_sources_and_a_pyproject_at_its_root() {
    let out = tempfile::tempdir().unwrap();
    let sdist = PathBuf::from(wheels_sh(&["sdist", out.path().to_str().unwrap()]));
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(
        sdist.file_name().unwrap().to_string_lossy(),
        format!("aiida_devc-{version}.tar.gz")
    );
    let listing = Command::new("tar").arg("tzf").arg(&sdist).output().unwrap();
    let prefix = format!("aiida_devc-{version}/");
    let files: Vec<String> = text(&listing.stdout)
        .lines()
        .filter_map(|l| l.strip_prefix(&prefix).map(str::to_owned))
        .collect();
    for needed in [
        "pyproject.toml",
        "PKG-INFO",
        "Cargo.toml",
        "Cargo.lock",
        "build.rs",
        "src/main.rs",
        "crates/aiida-init-state/src/lib.rs",
        "devcontainer-templates/src/aiida-plugin-compose/.devcontainer/docker-compose.yml",
    ] {
        assert!(files.iter().any(|f| f == needed), "{needed} in {files:#?}");
    }
    for left_out in [
        "tests/",
        "features/",
        "Dockerfiles/",
        "bench/",
        "crates/aiida-init/",
    ] {
        assert!(
            !files.iter().any(|f| f.starts_with(left_out)),
            "{left_out} in {files:#?}"
        );
    }
}
