//! aiida-init: an s6-overlay-compatible init and supervisor (see `src/bin/aiida-init.rs`).
