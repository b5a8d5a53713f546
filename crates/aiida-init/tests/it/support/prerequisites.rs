//! The one place that decides what a missing prerequisite (a Docker engine, a host tool) does,
//! for the tests of both crates (the CLI's harness includes this file): with
//! `AIIDA_DEVC_REQUIRE_PREREQUISITES=1` (which `scripts/test.sh` sets) or `CI=true`, the test
//! fails; otherwise it says in one line that it did not run, and why, and returns.

use std::io::Write;

/// Whether a missing prerequisite fails the test.
pub fn required() -> bool {
    std::env::var("AIIDA_DEVC_REQUIRE_PREREQUISITES").is_ok_and(|v| v == "1")
        || std::env::var("CI").is_ok_and(|v| v == "true")
}

/// A prerequisite is missing (`why`): fails the test when [`required`], otherwise prints the
/// one line and returns, for the test to return too.
pub fn skip(why: &str) {
    assert!(
        !required(),
        "missing prerequisite: {why}. Run `bash scripts/bootstrap.sh` (as root) first."
    );
    let test = std::thread::current()
        .name()
        .unwrap_or("this test")
        .to_owned();
    // Straight to stderr: the test harness captures `println!` of a passing test.
    let _ = writeln!(
        std::io::stderr(),
        "skipped: {test}: {why} (set AIIDA_DEVC_REQUIRE_PREREQUISITES=1 to fail instead)"
    );
}
