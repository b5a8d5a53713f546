#![no_main]
//! The `execline` checks of aiida-init's tests (crates/aiida-init/tests/it/fuzz/checks.rs).

#[allow(dead_code)]
#[path = "../../aiida-init/tests/it/fuzz/checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::execline(data));
