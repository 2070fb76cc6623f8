//! The ring interface between a [`Queue`](crate::Queue) and whatever is on
//! the other side of its rings: the kernel's AF_XDP sockets
//! ([`XdpBackend`](crate::XdpBackend)) or an in-memory stand-in for tests
//! ([`MemBackend`](crate::MemBackend)).
//!
//! A backend owns one UMEM and, per port, the four rings of an AF_XDP
//! socket: fill (frames given for receiving), RX (frames received), TX
//! (frames to send), completion (frames sent). It moves descriptors only;
//! the queue decides which frame goes where and keeps the books.

use std::io;

use crate::XskStats;

/// A frame descriptor as the rings carry it: the packet's offset in the
/// UMEM and its length. Offsets within a chunk are preserved: a frame
/// received at `chunk + 256` is sent from there.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Desc {
    /// Offset of the first packet byte in the UMEM.
    pub addr: u64,
    /// Packet length in bytes.
    pub len: u32,
}

/// How full a port's rings are right now (reads the rings' shared indices).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RingLevels {
    /// Entries in the fill ring.
    pub fill: usize,
    /// Entries in the RX ring.
    pub rx: usize,
    /// Entries in the TX ring.
    pub tx: usize,
    /// Entries in the completion ring.
    pub comp: usize,
}

/// One UMEM and the rings of N ports, seen from user space.
///
/// Ports are numbered `0..port_count()`. Every method that moves
/// descriptors returns how many it moved; none blocks except
/// [`wait_rx`](Backend::wait_rx).
pub trait Backend {
    /// Number of ports.
    fn port_count(&self) -> usize;
    /// Interface (or test) name of `port`.
    fn name(&self, port: usize) -> &str;
    /// Whether `port` receives at all (a transmit-only port leaves its RX
    /// to the host's stack and gets no fill frames).
    fn receives(&self, port: usize) -> bool;
    /// UMEM frame (chunk) size in bytes, a power of two.
    fn frame_size(&self) -> usize;
    /// The UMEM's chunk start offsets, one per frame, in the order they
    /// should first be used.
    fn initial_frames(&self) -> Vec<u64>;
    /// The UMEM mapping: its first byte and its length. Valid for as long
    /// as the backend lives; the queue hands out views of it only for
    /// frames it holds (in no ring).
    fn memory(&self) -> (*mut u8, usize);
    /// Ring sizes of `port`: (fill, tx).
    fn ring_sizes(&self, port: usize) -> (usize, usize);

    /// Takes up to `out.len()` received descriptors from `port`'s RX ring.
    fn rx_consume(&mut self, port: usize, out: &mut [Desc]) -> usize;
    /// Free slots in `port`'s fill ring, at most `want` (all or nothing
    /// reservations mean asking for what fits).
    fn fill_room(&mut self, port: usize, want: usize) -> usize;
    /// Puts descriptors into `port`'s fill ring; the caller asked for room.
    fn fill_produce(&mut self, port: usize, descs: &[Desc]) -> usize;
    /// Whether the fill ring of `port` asks for a wakeup.
    fn fill_needs_wakeup(&self, port: usize) -> bool;
    /// Wakes the driver to take fill frames (`poll`, timeout 0).
    fn fill_wakeup(&mut self, port: usize) -> io::Result<()>;
    /// Free slots in `port`'s TX ring, at most `want`.
    fn tx_room(&mut self, port: usize, want: usize) -> usize;
    /// Puts descriptors into `port`'s TX ring; the caller asked for room.
    fn tx_produce(&mut self, port: usize, descs: &[Desc]) -> usize;
    /// Whether the TX ring of `port` asks for a wakeup.
    fn tx_needs_wakeup(&self, port: usize) -> bool;
    /// Kicks TX (`sendto`).
    fn tx_wakeup(&mut self, port: usize) -> io::Result<()>;
    /// Descriptors in `port`'s TX ring not yet taken by the kernel.
    fn tx_pending(&mut self, port: usize) -> usize;
    /// Takes up to `out.len()` completed TX descriptors (lengths are not
    /// meaningful) from `port`'s completion ring.
    fn comp_consume(&mut self, port: usize, out: &mut [Desc]) -> usize;
    /// How full the rings of `port` are.
    fn levels(&mut self, port: usize) -> RingLevels;
    /// The kernel's statistics of `port`'s socket.
    fn stats(&self, port: usize) -> io::Result<XskStats>;
    /// Sleeps until a receiving port has a frame or `timeout_ms` passes;
    /// `Ok(true)` if something is readable.
    fn wait_rx(&mut self, timeout_ms: i32) -> io::Result<bool>;
}
