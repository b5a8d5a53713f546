#![no_main]
//! The `setup_cfg` checks of the CLI's tests (tests/it/fuzz/checks.rs).

#[allow(dead_code)]
#[path = "../../../tests/it/fuzz/checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::setup_cfg(data));
