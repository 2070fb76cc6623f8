//! The AF_XDP I/O layer: for one queue id, two ports (interfaces) whose
//! sockets share one UMEM, so forwarding moves a descriptor, never bytes.
//!
//! This is the only module of the crate allowed to use `unsafe`. It wraps
//! [`xsk_rs`] (UMEM, sockets, rings; libxdp built with `cc`) and libbpf
//! (through `libxdp-sys`, for the XDP program).
//!
//! # Layers
//!
//! - [`XskConfig`]: frame and ring sizes, batch, bind mode (zero-copy with
//!   fallback to copy, or forced), XDP attach mode, busy polling, send
//!   buffer.
//! - [`QueuePair`]: one worker's UMEM, its two sockets and the frame free
//!   list; receive a batch ([`QueuePair::rx_batch`]), touch a frame's bytes
//!   ([`QueuePair::data`], [`QueuePair::buf_mut`], [`QueuePair::set_len`]),
//!   allocate and free frames, queue and flush TX, reap completions, refill
//!   the fill rings. Conservation of frames is checked by
//!   [`QueuePair::check_conservation`].
//! - The XDP program (module `prog`): a six-instruction program named
//!   `mtugate_xsk` redirecting each RX queue into its socket, attached once
//!   per interface per process and detached when the last [`QueuePair`] on
//!   it is dropped; a `mtugate_xsk` left attached by a killed run is
//!   detected and replaced, a foreign program is refused unless allowed.
//!
//! # Left out on purpose
//!
//! - Multi-buffer (`XDP_USE_SG`) frames: a frame is one UMEM chunk.
//! - Unaligned UMEM chunks; headroom in front of the packet for the caller
//!   (frames can grow at the tail, in place).
//! - Steering only some traffic into the sockets (router mode): the
//!   program redirects every frame of the queue.
//!
//! # Kernel behaviour worth knowing
//!
//! - Copy mode transmits inside `sendto`, at most `XDP_MAX_TX_SKB_BUDGET`
//!   (default 32) descriptors per call, and always asks for a wakeup; the
//!   skbs it builds are charged to the socket's send buffer, hence the large
//!   `SO_SNDBUFFORCE` default.
//! - A TX descriptor the kernel finds invalid (length 0, crossing a chunk)
//!   is dropped without a completion: the frame would be lost, so
//!   [`QueuePair::tx_push`] refuses such frames.
//! - With `XDP_SHARED_UMEM` the second socket inherits the first one's bind
//!   mode and need-wakeup setting.
#![allow(unsafe_code)]

mod config;
mod prog;
mod queue;
mod sys;

pub use config::{AttachMode, BindMode, BusyPoll, XskConfig, XskMode};
pub use prog::{ReplacedProgram, XdpMode};
pub use queue::{ConservationError, Frame, FrameCounts, PortCounters, QueuePair, SetupReport};
pub use sys::{stop_flag_on_signals, XskStats};

/// One of the two ports of a [`QueuePair`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Port {
    /// The first interface given to [`QueuePair::new`].
    A = 0,
    /// The second interface given to [`QueuePair::new`].
    B = 1,
}

impl Port {
    /// Both ports, A first.
    pub const BOTH: [Port; 2] = [Port::A, Port::B];

    /// The opposite port.
    #[inline]
    pub fn other(self) -> Port {
        match self {
            Port::A => Port::B,
            Port::B => Port::A,
        }
    }

    /// 0 for A, 1 for B.
    #[inline]
    pub fn index(self) -> usize {
        self as usize
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports() {
        assert_eq!(Port::A.other(), Port::B);
        assert_eq!(Port::B.other(), Port::A);
        assert_eq!(Port::BOTH.map(Port::index), [0, 1]);
    }
}
