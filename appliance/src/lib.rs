//! The `mtugate` appliance: configuration, the poll-mode engine, live
//! reloads, and the final report. The binary (`src/main.rs`) wires them to the command line.

#![deny(unsafe_code)]

pub mod config;
pub mod engine;
pub mod nic;
pub mod reload;
pub mod report;
