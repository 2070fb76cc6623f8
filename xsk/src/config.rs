//! Configuration of one worker's AF_XDP queue.

use crate::XskError;

/// How the AF_XDP sockets bind to the driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BindMode {
    /// Try zero-copy first; if the driver (of either port) refuses, build
    /// everything again in copy mode.
    #[default]
    Auto,
    /// Copy mode only (`XDP_COPY`).
    ForceCopy,
    /// Zero-copy only (`XDP_ZEROCOPY`); fail if the driver cannot.
    ForceZeroCopy,
}

/// The bind mode an [`XdpBackend`](crate::XdpBackend) obtained, read back from
/// the kernel (`XDP_OPTIONS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XskMode {
    /// The driver DMAs straight into the UMEM.
    ZeroCopy,
    /// The kernel copies frames between its buffers and the UMEM.
    Copy,
}

/// Where the XDP program that feeds the sockets is attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AttachMode {
    /// Native (driver) mode, falling back to generic (skb) mode.
    #[default]
    Auto,
    /// Native (driver) mode only (`XDP_FLAGS_DRV_MODE`).
    Native,
    /// Generic (skb) mode only (`XDP_FLAGS_SKB_MODE`).
    Generic,
}

/// Busy-polling socket options, set on both sockets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BusyPoll {
    /// `SO_BUSY_POLL`: microseconds to busy poll in a blocking call.
    pub usecs: u32,
    /// `SO_BUSY_POLL_BUDGET`: packets per busy-poll round.
    pub budget: u32,
    /// `SO_PREFER_BUSY_POLL`: ask the kernel to defer softirq processing to
    /// the busy poller.
    pub prefer: bool,
}

impl Default for BusyPoll {
    fn default() -> Self {
        Self {
            usecs: 20,
            budget: 64,
            prefer: true,
        }
    }
}

/// Sizes and options of one worker's queue: one UMEM, one AF_XDP socket
/// per port, all on the same queue id.
///
/// Every ring size and the frame size must be a power of two.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XskConfig {
    /// Size of one UMEM frame (chunk) in bytes: 2048 or 4096 (at most one
    /// page). Default 4096: the packet starts 256 bytes in
    /// (`XDP_PACKET_HEADROOM`), which leaves 3840 bytes, more than any frame a
    /// non-multi-buffer XDP program sees, and room to grow a packet in place.
    /// 2048 leaves 1792 bytes: enough for 1500-byte MTU ports.
    pub frame_size: u32,
    /// Number of frames in the UMEM, shared by every port. Default 8192
    /// (32 MiB with 4096-byte frames).
    pub frame_count: u32,
    /// RX ring size of each socket. Default 2048.
    pub rx_ring_size: u32,
    /// TX ring size of each socket. Default 2048.
    pub tx_ring_size: u32,
    /// Fill ring size of each port. Default 2048.
    pub fill_ring_size: u32,
    /// Completion ring size of each port. Default 2048.
    pub comp_ring_size: u32,
    /// Largest number of descriptors taken from an RX ring at once; also the
    /// size of the TX staging area of each port. Default 64.
    pub batch: u32,
    /// Frames the refill keeps back in the free list for
    /// [`Queue::alloc`](crate::Queue::alloc) (fragments, ICMP
    /// errors). Default 128.
    pub alloc_reserve: u32,
    /// Zero-copy or copy. Default [`BindMode::Auto`].
    pub bind_mode: BindMode,
    /// Native or generic XDP. Default [`AttachMode::Auto`].
    pub attach_mode: AttachMode,
    /// Busy-polling options; `None` (default) leaves the sockets alone.
    pub busy_poll: Option<BusyPoll>,
    /// Socket send buffer in bytes, set with `SO_SNDBUFFORCE` (falls back to
    /// `SO_SNDBUF`, capped by `net.core.wmem_max`, without `CAP_NET_ADMIN`).
    /// Copy-mode TX stalls with the default buffer. Default `Some(64 MiB)`.
    pub sndbuf: Option<u32>,
    /// `XDP_MAX_TX_SKB_BUDGET` (Linux 6.17+): descriptors one copy-mode
    /// `sendto` may transmit, clamped to `[32, tx_ring_size]`. Failure (older
    /// kernels) is ignored and reported. Default `Some(256)`.
    pub tx_skb_budget: Option<u32>,
    /// Replace an XDP program on the ports that is not mtugate's. Default
    /// `false`: such a program is reported as an error.
    pub replace_foreign_program: bool,
    /// Back the UMEM with huge pages. Default `false`.
    pub huge_pages: bool,
}

impl Default for XskConfig {
    fn default() -> Self {
        Self {
            frame_size: 4096,
            frame_count: 8192,
            rx_ring_size: 2048,
            tx_ring_size: 2048,
            fill_ring_size: 2048,
            comp_ring_size: 2048,
            batch: 64,
            alloc_reserve: 128,
            bind_mode: BindMode::Auto,
            attach_mode: AttachMode::Auto,
            busy_poll: None,
            sndbuf: Some(64 << 20),
            tx_skb_budget: Some(256),
            replace_foreign_program: false,
            huge_pages: false,
        }
    }
}

impl XskConfig {
    /// Checks the sizes against each other and against what the kernel
    /// accepts for an aligned UMEM.
    pub fn validate(&self) -> Result<(), XskError> {
        let bad = |msg: String| Err(XskError::Config(msg));
        if !matches!(self.frame_size, 2048 | 4096) {
            return bad(format!(
                "frame_size {} must be 2048 or 4096",
                self.frame_size
            ));
        }
        for (name, v) in [
            ("rx_ring_size", self.rx_ring_size),
            ("tx_ring_size", self.tx_ring_size),
            ("fill_ring_size", self.fill_ring_size),
            ("comp_ring_size", self.comp_ring_size),
        ] {
            if !v.is_power_of_two() {
                return bad(format!("{name} {v} must be a power of two"));
            }
            if v < self.batch {
                return bad(format!("{name} {v} is smaller than batch {}", self.batch));
            }
        }
        if self.batch == 0 || self.batch > 4096 {
            return bad(format!("batch {} must be in 1..=4096", self.batch));
        }
        let min_frames = 4 * u64::from(self.batch) + u64::from(self.alloc_reserve);
        if u64::from(self.frame_count) < min_frames {
            return bad(format!(
                "frame_count {} is below 4 * batch + alloc_reserve = {min_frames}",
                self.frame_count
            ));
        }
        if u64::from(self.frame_count) * u64::from(self.frame_size) > 1 << 40 {
            return bad("UMEM larger than 1 TiB".into());
        }
        if let Some(bp) = self.busy_poll {
            if bp.budget == 0 {
                return bad("busy_poll.budget must be > 0".into());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_valid() {
        XskConfig::default().validate().unwrap();
    }

    #[test]
    fn rejects_bad_sizes() {
        let base = XskConfig::default();
        for c in [
            XskConfig {
                frame_size: 3000,
                ..base.clone()
            },
            XskConfig {
                frame_size: 8192,
                ..base.clone()
            },
            XskConfig {
                rx_ring_size: 1000,
                ..base.clone()
            },
            XskConfig {
                tx_ring_size: 32,
                ..base.clone()
            },
            XskConfig {
                frame_count: 100,
                ..base.clone()
            },
            XskConfig {
                batch: 0,
                ..base.clone()
            },
        ] {
            assert!(c.validate().is_err(), "{c:?}");
        }
    }
}
