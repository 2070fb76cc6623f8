//! mtugate's datapath.
#![deny(unsafe_code)]

pub mod counters;
pub mod ops;
pub mod pipeline;
pub mod pmtu;
pub mod prf;
pub mod router;
pub mod rules;
pub mod wire;
