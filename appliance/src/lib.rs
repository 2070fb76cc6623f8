//! The `mtugate` appliance: configuration, the poll-mode engine, live
//! reloads, and the final report. The binary (`src/main.rs`) wires them to the command line.

#![deny(unsafe_code)]

pub mod config;
pub mod docs;
pub mod engine;
pub mod idle;
pub mod napi;
pub mod nic;
pub mod privs;
pub mod reload;
pub mod report;
pub mod routes;

/// The git revision of this build (`build.rs`): the abbreviated commit,
/// `-dirty` if the tree had changes, or `unknown` outside git.
pub const REVISION: &str = env!("MTUGATE_REVISION");

/// What `mtugate --version` prints after the name: `0.1.0 (rev 1a2b3c4d5e6f)`.
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (rev ",
    env!("MTUGATE_REVISION"),
    ")"
);
