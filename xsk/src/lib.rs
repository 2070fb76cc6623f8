//! mtugate's AF_XDP layer: for one queue id, N ports (interfaces) whose
//! sockets share one UMEM, so forwarding moves a descriptor, never bytes;
//! and the one poll loop every AF_XDP user in mtugate turns.
//!
//! This is the only crate of the workspace allowed to use `unsafe` (the
//! workspace denies `unsafe_code`; this crate root allows it). Every
//! `unsafe` block says what makes it sound.
//!
//! # Layers
//!
//! - [`ring::Backend`]: one UMEM and the fill, RX, TX and completion rings
//!   of N ports, as user space sees them. Two implementations:
//!   [`XdpBackend`] (feature `afxdp`: the kernel's AF_XDP sockets, over
//!   [`xsk_rs`], with libxdp built with `cc`) and [`MemBackend`] (memory
//!   and a stand-in kernel driven by tests).
//! - [`Queue`]: one worker's frames over a backend: the free list, TX
//!   staging, receive a batch ([`Queue::rx_batch`]), touch a frame's bytes
//!   ([`Queue::data`], [`Queue::buf_mut`], [`Queue::set_len`]), allocate
//!   and free frames, queue and flush TX, reap completions, refill the fill
//!   rings, count every I/O error per port. Conservation of frames is
//!   checked by [`Queue::check_conservation`]; debug builds track every
//!   frame's owner.
//! - [`driver`]: the poll round ([`Poller::round`]) and idle policy, fed by
//!   a [`Handler`]; [`Forward`] is the no-op forwarder the benchmarks'
//!   "raw AF_XDP" ceiling uses.
//! - [`XskConfig`]: frame and ring sizes, batch, bind mode (zero-copy with
//!   fallback to copy, or forced), XDP attach mode, busy polling, send
//!   buffer.
//! - [`PortProgram`] (feature `afxdp`): mtugate's XDP program on one port
//!   (`bpf/mtugate.bpf.c`, compiled with clang at build time, loaded with
//!   libbpf-rs): the fast path that forwards frames needing no work
//!   itself and steers the rest to the AF_XDP sockets, attached through a
//!   pinned `bpf_link` that outlives the process (bypass or block while no
//!   worker runs), owned by one live mtugate per interface.
//!
//! Ports are plain indices (`0..port_count`) into the list given when the
//! queue was opened; the datapath's `PortId` maps onto them one to one.
//!
//! # Left out on purpose
//!
//! - Multi-buffer (`XDP_USE_SG`) frames: a frame is one UMEM chunk.
//! - Unaligned UMEM chunks; headroom in front of the packet for the caller
//!   (frames can grow at the tail, in place).
//!
//! # Kernel behaviour worth knowing
//!
//! - Copy mode transmits inside `sendto`, at most `XDP_MAX_TX_SKB_BUDGET`
//!   (default 32) descriptors per call, and always asks for a wakeup; the
//!   skbs it builds are charged to the socket's send buffer, hence the large
//!   `SO_SNDBUFFORCE` default.
//! - A TX descriptor the kernel finds invalid (length 0, crossing a chunk)
//!   is dropped without a completion: the frame would be lost, so
//!   [`Queue::tx_push`] refuses such frames.
//! - With `XDP_SHARED_UMEM` every socket after the first inherits the first
//!   one's bind mode and need-wakeup setting.
#![allow(unsafe_code)]

#[cfg(feature = "afxdp")]
mod afxdp;
mod config;
pub mod driver;
mod mem;
pub mod meta;
mod napi;
#[cfg(feature = "afxdp")]
mod prog;
mod queue;
pub mod ring;
// Socket options and `poll` are only called by the kernel backend.
#[cfg_attr(not(feature = "afxdp"), allow(dead_code))]
mod sys;
mod xdp_stats;

#[cfg(feature = "afxdp")]
pub use afxdp::{open_queue, PortSpec, SetupReport, XdpBackend, XdpQueue};
pub use config::{AttachMode, BindMode, BusyPoll, XskConfig, XskMode};
pub use driver::{Forward, Handler, Idle, Poller};
pub use mem::{MemBackend, MemConfig, MemDrop};
pub use napi::napi_threads;
#[cfg(feature = "afxdp")]
pub use prog::{
    smallest_route_mtus, xdp_test_run_live, AttachOptions, FastPath, OnFailure, PortProgram,
    ReplacedProgram, RouteMetrics, RouteMtuTable, RoutePrefix, Steer, SynPolice, Takeover, XdpMode,
    MAX_PORTS, MAX_QUEUES, ROUTE_ENTRIES, SRC_ENTRIES,
};
pub use queue::{ConservationError, Frame, FrameCounts, PortCounters, Queue, RefillError};
pub use sys::{stop_flag_on_signals, XskStats};
pub use xdp_stats::XdpStats;

/// Why setting up AF_XDP failed.
#[derive(Debug, thiserror::Error)]
pub enum XskError {
    /// The configuration is inconsistent.
    #[error("invalid AF_XDP config: {0}")]
    Config(String),
    /// The interface does not exist (in this network namespace).
    #[error("interface {iface:?}: {source}")]
    Interface {
        /// Interface name.
        iface: String,
        /// Underlying error.
        source: std::io::Error,
    },
    /// The UMEM could not be created or registered.
    #[error("creating the UMEM: {0}")]
    Umem(String),
    /// A socket could not be created or bound.
    #[error("AF_XDP socket on {iface} queue {queue_id} ({mode:?}): {reason}")]
    Socket {
        /// Interface name.
        iface: String,
        /// Queue id.
        queue_id: u32,
        /// Bind mode tried.
        mode: XskMode,
        /// What failed, with its causes.
        reason: String,
    },
    /// A socket option could not be set.
    #[error("{what} on the AF_XDP socket of {iface}: {source}")]
    SockOpt {
        /// Interface name.
        iface: String,
        /// The option.
        what: &'static str,
        /// Underlying error.
        source: std::io::Error,
    },
    /// An XDP program that is not mtugate's is attached to the interface.
    #[error(
        "{iface} has a foreign XDP program attached (id {id}, name {name:?}); \
         remove it (ip link set dev {iface} xdp off) or allow replacing it"
    )]
    ForeignProgram {
        /// Interface name.
        iface: String,
        /// Kernel program id.
        id: u32,
        /// Kernel program name.
        name: String,
    },
    /// Another live mtugate owns the interface (holds its lock).
    #[error(
        "{iface} is owned by another running mtugate ({owner}); stop it first \
         (nothing was changed on {iface})"
    )]
    Owned {
        /// Interface name.
        iface: String,
        /// What the owner wrote into the lock: its PID and configuration.
        owner: String,
    },
    /// A BPF operation (program, map, attach) failed.
    #[error("{what} on {iface}: {source}")]
    Bpf {
        /// Interface name.
        iface: String,
        /// The operation.
        what: &'static str,
        /// Underlying error.
        source: std::io::Error,
    },
}
