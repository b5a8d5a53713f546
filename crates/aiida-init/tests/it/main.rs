//! The integration tests of aiida-init, one module per area: the real binary as PID 1 of a new
//! PID namespace, under tini, as a plain child and as an unprivileged user (`pid1`, `settings`,
//! `tty`), bad service trees (`tree`), the execline subset against Debian's real `execlineb`
//! (`execline`), inside Docker containers (`docker`), what users read of `status` and `wait`
//! as snapshots (`status`), the parsers fuzzed (`fuzz`), and the layering of the modules
//! (`layering`). `support` holds the harness.

mod support;

mod docker;
mod execline;
mod fuzz;
mod layering;
mod pid1;
mod settings;
mod status;
mod tree;
mod tty;
