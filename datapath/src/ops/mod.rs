//! Operations on packets.

pub mod bucket;
pub mod frag;
pub mod icmp;
pub mod mss;
