//! mtugate's datapath.
#![deny(unsafe_code)]

pub mod counters;
pub mod ops;
pub mod pipeline;
pub mod router;
pub mod wire;
