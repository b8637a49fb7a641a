//! The `hashdrop` command line, story by story: one test binary with a module per
//! feature, so the suite links once instead of once per file. The server runs in-process
//! (see `common`). The fleet stories live in `tests/fleet.rs`, a binary of their own,
//! because they need the whole machine.

#[path = "../common/mod.rs"]
mod common;

mod e2e;
mod errors;
mod interop;
mod parts;
mod resume;
mod safety;
mod usage;
