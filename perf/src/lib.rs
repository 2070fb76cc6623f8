//! mtugate-perf: benchmark a NIC queue with AF_XDP, and measure what
//! mtugate costs against the Linux kernel. The `mtugate-perf` binary is a
//! thin CLI over these modules.
//!
//! - [`pkt`]: the generator's packets (profiles, stamps, checksums).
//! - [`xio`]: the AF_XDP loops: transmit, receive-and-drop, forward.
//! - [`latency`]: stamped probes through a device under test, one-way
//!   latency into an HDR histogram, `.hgrm` output.
//! - [`plot`]: latency-by-percentile plots as SVG.
//! - [`livegen`]: the XDP-fed generator (live-frames test runs).
//! - [`compare`]: the lab comparison against the kernel.
//!
//! Left out on purpose: multi-queue generation (one queue per process; run
//! one process per queue), multi-buffer frames, hardware timestamps.

pub mod compare;
pub mod latency;
pub mod livegen;
pub mod pkt;
pub mod plot;
pub mod xio;
