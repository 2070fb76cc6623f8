//! mtugate's management thread: the operator's window into the appliance
//! and the one way to change it while it runs.
//!
//! # Layers
//!
//! - [`link`]: the workers' end. A worker reads one shared atomic (the
//!   epoch) per round; when it moves, the worker applies a pending
//!   configuration at that batch boundary and publishes a double-buffered
//!   snapshot (cumulative counters, latency histograms) over a crossbeam
//!   channel. No lock, allocation or syscall on the hot path.
//! - [`aggregate`]: the management thread's view of every worker, turned
//!   into a [`model::Stats`] document once per interval (rates over the
//!   interval, busy ratio, latency per interval and since start).
//! - [`prom`], [`hgrm`], [`view`]: the document as Prometheus text, as the
//!   HdrHistogram percentile format, and as an 80×24 terminal screen.
//!   The counters come from tables declared once
//!   ([`mtugate_datapath::counter_table!`]: the pipeline's
//!   [`Counters`](mtugate_datapath::pipeline::Counters), and
//!   [`model::IoStats`], [`model::KernelSocketStats`] for AF_XDP): metric
//!   names, help, labels and JSON keys are walked from them, never listed
//!   again ([`table`] writes and reads their JSON).
//! - [`server`]: the threads: aggregation and SIGHUP, the read-only HTTP
//!   listener, the control socket (root only) that also takes
//!   `POST /reload`.
//! - [`client`]: what `mtugate stats` and `mtugate reload` use to talk to
//!   a running appliance.
//!
//! # Left out on purpose
//!
//! - Writes over HTTP: the TCP listener serves reads only, whatever the
//!   address; changes go through the Unix socket, guarded by file modes.
//! - Changing ports, queues or cores live: those need new AF_XDP sockets
//!   and threads; a reload that asks for it is refused and says so.
//! - This crate does not depend on the appliance (configuration files are
//!   the appliance's business, behind [`server::Reloader`]) nor on the
//!   AF_XDP layer (the worker converts its counters into [`link`]'s types).

#![deny(unsafe_code)]

pub mod aggregate;
pub mod client;
pub mod final_stats;
pub mod hgrm;
pub mod link;
pub mod model;
pub mod prom;
pub mod server;
pub mod table;
pub mod view;

pub use aggregate::QueueInfo;
pub use link::{WorkerCounters, WorkerLink};
pub use server::{Mgmt, MgmtError, MgmtOptions, Prepared, Refusal, Reloader};

/// Largest latency a histogram tracks (10 s, in ns); larger values are
/// recorded as this.
pub const HIST_HIGH_NS: u64 = 10_000_000_000;
/// Significant digits of every latency histogram.
pub const HIST_SIGFIG: u8 = 3;
