//! An in-memory [`Backend`]: a UMEM in a heap allocation and, per port,
//! four bounded rings played by a stand-in "kernel" that the test drives.
//!
//! It lets the worker loop run without root, sockets or a NIC, with the
//! same [`Queue`](crate::Queue) and driver code as the real thing, so that
//! frame conservation, a full TX ring, an empty fill ring and the order of
//! a poll round can be tested deterministically. The kernel's side is
//! explicit: [`MemBackend::inject`] receives a frame into a port (taking a
//! fill descriptor, as the kernel does, or dropping and counting it as the
//! kernel does when the fill ring is empty or the RX ring full) and
//! [`MemBackend::transmit`] sends what is in a TX ring (moving descriptors
//! to the completion ring while it has room).

use std::{collections::VecDeque, io};

use crate::ring::{Backend, Desc, RingLevels};
use crate::XskStats;

/// Sizes and behaviour of a [`MemBackend`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemConfig {
    /// UMEM frame size (power of two).
    pub frame_size: usize,
    /// Frames in the UMEM.
    pub frame_count: usize,
    /// Fill and RX ring size of every port.
    pub rx_ring: usize,
    /// TX and completion ring size of every port.
    pub tx_ring: usize,
    /// Where a received packet starts in its chunk (the kernel's
    /// `XDP_PACKET_HEADROOM` is 256).
    pub headroom: usize,
    /// `tx_wakeup` transmits everything in the TX ring at once, as a
    /// copy-mode `sendto` does; `false` leaves it to [`MemBackend::transmit`].
    pub transmit_on_kick: bool,
    /// The TX ring asks for a wakeup (copy mode always does).
    pub tx_needs_wakeup: bool,
}

impl Default for MemConfig {
    fn default() -> Self {
        MemConfig {
            frame_size: 2048,
            frame_count: 256,
            rx_ring: 64,
            tx_ring: 64,
            headroom: 256,
            transmit_on_kick: true,
            tx_needs_wakeup: true,
        }
    }
}

/// Why the stand-in kernel could not deliver a frame to a port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemDrop {
    /// The fill ring was empty (the kernel's `rx_fill_ring_empty_descs`).
    FillEmpty,
    /// The RX ring was full (`rx_ring_full`).
    RxFull,
    /// The frame does not fit a chunk.
    TooLong,
    /// The port does not receive.
    NotReceiving,
}

#[derive(Debug)]
struct MemPort {
    name: String,
    receives: bool,
    fill: VecDeque<Desc>,
    rx: VecDeque<Desc>,
    tx: VecDeque<Desc>,
    comp: VecDeque<Desc>,
    sent: Vec<Vec<u8>>,
    stats: XskStats,
    kick_error: Option<i32>,
}

/// The in-memory backend. See the module docs.
#[derive(Debug)]
pub struct MemBackend {
    cfg: MemConfig,
    mem: *mut u8,
    mem_len: usize,
    ports: Vec<MemPort>,
}

// SAFETY: `mem` is a heap allocation owned by this value alone (freed in
// `Drop`); moving the value to another thread moves that ownership.
unsafe impl Send for MemBackend {}

impl Drop for MemBackend {
    fn drop(&mut self) {
        // SAFETY: `mem` came from `Box::into_raw` of a boxed slice of
        // `mem_len` bytes in `new`, and is freed only here.
        drop(unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(self.mem, self.mem_len)) });
    }
}

impl MemBackend {
    /// Ports named `names`, all receiving.
    pub fn new(names: &[&str], cfg: MemConfig) -> MemBackend {
        assert!(cfg.frame_size.is_power_of_two() && cfg.headroom < cfg.frame_size);
        let mem_len = cfg.frame_size * cfg.frame_count;
        let mem = Box::into_raw(vec![0u8; mem_len].into_boxed_slice()).cast::<u8>();
        let ports = names
            .iter()
            .map(|n| MemPort {
                name: (*n).to_owned(),
                receives: true,
                fill: VecDeque::with_capacity(cfg.rx_ring),
                rx: VecDeque::with_capacity(cfg.rx_ring),
                tx: VecDeque::with_capacity(cfg.tx_ring),
                comp: VecDeque::with_capacity(cfg.tx_ring),
                sent: Vec::new(),
                stats: XskStats::default(),
                kick_error: None,
            })
            .collect();
        MemBackend {
            cfg,
            mem,
            mem_len,
            ports,
        }
    }

    /// Makes `port` transmit-only (no fill frames, nothing received).
    pub fn set_receives(&mut self, port: usize, receives: bool) {
        self.ports[port].receives = receives;
    }

    /// Makes every TX kick of `port` fail with `errno` (`None`: succeed).
    pub fn set_kick_error(&mut self, port: usize, errno: Option<i32>) {
        self.ports[port].kick_error = errno;
    }

    /// The kernel receives `bytes` on `port`: a fill descriptor is taken,
    /// the bytes written `headroom` bytes into its chunk, and the frame put
    /// on the RX ring.
    pub fn inject(&mut self, port: usize, bytes: &[u8]) -> Result<(), MemDrop> {
        let (fs, hr) = (self.cfg.frame_size, self.cfg.headroom);
        let rx_ring = self.cfg.rx_ring;
        let p = &mut self.ports[port];
        if !p.receives {
            return Err(MemDrop::NotReceiving);
        }
        if bytes.len() > fs - hr {
            p.stats.rx_dropped += 1;
            return Err(MemDrop::TooLong);
        }
        // As the kernel's copy-mode receive: a buffer from the fill ring
        // first, then a slot in the RX ring (the buffer goes back then).
        if p.fill.is_empty() {
            p.stats.rx_dropped += 1;
            p.stats.rx_fill_ring_empty_descs += 1;
            return Err(MemDrop::FillEmpty);
        }
        if p.rx.len() >= rx_ring {
            p.stats.rx_ring_full += 1;
            return Err(MemDrop::RxFull);
        }
        let Some(d) = p.fill.pop_front() else {
            return Err(MemDrop::FillEmpty);
        };
        // Aligned mode: the kernel uses the chunk the address falls in.
        let addr = (d.addr & !(fs as u64 - 1)) + hr as u64;
        assert!(addr as usize + bytes.len() <= self.mem_len);
        // SAFETY: the chunk is inside the allocation (asserted) and was
        // given to the "kernel" through the fill ring, so no `Frame` for it
        // exists and no view of it is alive.
        unsafe {
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), self.mem.add(addr as usize), bytes.len())
        };
        p.rx.push_back(Desc {
            addr,
            len: bytes.len() as u32,
        });
        Ok(())
    }

    /// The kernel sends up to `max` frames from `port`'s TX ring (recorded
    /// in [`sent`](Self::sent)) while the completion ring has room; returns
    /// how many.
    pub fn transmit(&mut self, port: usize, max: usize) -> usize {
        let tx_ring = self.cfg.tx_ring;
        let mut n = 0;
        while n < max && self.ports[port].comp.len() < tx_ring {
            let Some(d) = self.ports[port].tx.pop_front() else {
                break;
            };
            assert!(d.addr as usize + d.len as usize <= self.mem_len);
            // SAFETY: inside the allocation (asserted); the frame is in the
            // TX ring, so the queue holds no view of it.
            let bytes = unsafe {
                std::slice::from_raw_parts(self.mem.add(d.addr as usize), d.len as usize)
            };
            let p = &mut self.ports[port];
            p.sent.push(bytes.to_vec());
            p.comp.push_back(d);
            n += 1;
        }
        n
    }

    /// Frames sent on `port` so far, oldest first (take them with
    /// `std::mem::take`).
    pub fn sent(&mut self, port: usize) -> &mut Vec<Vec<u8>> {
        &mut self.ports[port].sent
    }

    /// The ring sizes in use.
    pub fn config(&self) -> &MemConfig {
        &self.cfg
    }
}

impl Backend for MemBackend {
    fn port_count(&self) -> usize {
        self.ports.len()
    }

    fn name(&self, port: usize) -> &str {
        &self.ports[port].name
    }

    fn receives(&self, port: usize) -> bool {
        self.ports[port].receives
    }

    fn frame_size(&self) -> usize {
        self.cfg.frame_size
    }

    fn initial_frames(&self) -> Vec<u64> {
        // As xsk-rs hands them out: the packet start of each chunk, after
        // the headroom.
        (0..self.cfg.frame_count)
            .map(|i| (i * self.cfg.frame_size + self.cfg.headroom) as u64)
            .collect()
    }

    fn memory(&self) -> (*mut u8, usize) {
        (self.mem, self.mem_len)
    }

    fn ring_sizes(&self, _port: usize) -> (usize, usize) {
        (self.cfg.rx_ring, self.cfg.tx_ring)
    }

    fn rx_consume(&mut self, port: usize, out: &mut [Desc]) -> usize {
        let p = &mut self.ports[port];
        let n = out.len().min(p.rx.len());
        for (o, d) in out.iter_mut().zip(p.rx.drain(..n)) {
            *o = d;
        }
        n
    }

    fn fill_room(&mut self, port: usize, want: usize) -> usize {
        want.min(self.cfg.rx_ring - self.ports[port].fill.len())
    }

    fn fill_produce(&mut self, port: usize, descs: &[Desc]) -> usize {
        let n = descs
            .len()
            .min(self.cfg.rx_ring - self.ports[port].fill.len());
        self.ports[port].fill.extend(&descs[..n]);
        n
    }

    fn fill_needs_wakeup(&self, _port: usize) -> bool {
        false
    }

    fn fill_wakeup(&mut self, _port: usize) -> io::Result<()> {
        Ok(())
    }

    fn tx_room(&mut self, port: usize, want: usize) -> usize {
        want.min(self.cfg.tx_ring - self.ports[port].tx.len())
    }

    fn tx_produce(&mut self, port: usize, descs: &[Desc]) -> usize {
        let n = descs
            .len()
            .min(self.cfg.tx_ring - self.ports[port].tx.len());
        self.ports[port].tx.extend(&descs[..n]);
        n
    }

    fn tx_needs_wakeup(&self, _port: usize) -> bool {
        self.cfg.tx_needs_wakeup
    }

    fn tx_wakeup(&mut self, port: usize) -> io::Result<()> {
        if let Some(e) = self.ports[port].kick_error {
            return Err(io::Error::from_raw_os_error(e));
        }
        if self.cfg.transmit_on_kick {
            self.transmit(port, usize::MAX);
        }
        Ok(())
    }

    fn tx_pending(&mut self, port: usize) -> usize {
        self.ports[port].tx.len()
    }

    fn comp_consume(&mut self, port: usize, out: &mut [Desc]) -> usize {
        let p = &mut self.ports[port];
        let n = out.len().min(p.comp.len());
        for (o, d) in out.iter_mut().zip(p.comp.drain(..n)) {
            *o = d;
        }
        n
    }

    fn levels(&mut self, port: usize) -> RingLevels {
        let p = &self.ports[port];
        RingLevels {
            fill: p.fill.len(),
            rx: p.rx.len(),
            tx: p.tx.len(),
            comp: p.comp.len(),
        }
    }

    fn stats(&self, port: usize) -> io::Result<XskStats> {
        Ok(self.ports[port].stats)
    }

    fn wait_rx(&mut self, _timeout_ms: i32) -> io::Result<bool> {
        Ok(self.ports.iter().any(|p| !p.rx.is_empty()))
    }
}
