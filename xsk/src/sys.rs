//! Socket options, statistics, `poll` and signals: thin libc wrappers.

use std::{
    io,
    os::fd::RawFd,
    sync::atomic::{AtomicBool, Ordering},
};

// asm-generic/socket.h (x86_64, aarch64, riscv64 use the generic values).
const SO_SNDBUFFORCE: libc::c_int = 32;
const SO_BUSY_POLL: libc::c_int = 46;
const SO_PREFER_BUSY_POLL: libc::c_int = 69;
const SO_BUSY_POLL_BUDGET: libc::c_int = 70;
// linux/if_xdp.h
const XDP_OPTIONS: libc::c_int = 8;
const XDP_OPTIONS_ZEROCOPY: u32 = 1 << 0;
const XDP_MAX_TX_SKB_BUDGET: libc::c_int = 9;

/// The kernel's drop and error counters of one AF_XDP socket
/// (`getsockopt(SOL_XDP, XDP_STATISTICS)`, `struct xdp_statistics`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct XskStats {
    /// Frames dropped for reasons other than the ones below (e.g. a frame
    /// larger than the UMEM chunk).
    pub rx_dropped: u64,
    /// Frames dropped because the fill ring held an invalid descriptor.
    pub rx_invalid_descs: u64,
    /// TX descriptors the kernel rejected (bad address or length).
    pub tx_invalid_descs: u64,
    /// Frames dropped because the RX ring was full.
    pub rx_ring_full: u64,
    /// Times the kernel found the fill ring empty (a frame was dropped).
    pub rx_fill_ring_empty_descs: u64,
    /// Times the kernel found the TX ring empty when asked to send.
    pub tx_ring_empty_descs: u64,
}

#[cfg(feature = "afxdp")]
impl From<xsk_rs::socket::XdpStatistics> for XskStats {
    fn from(s: xsk_rs::socket::XdpStatistics) -> Self {
        Self {
            rx_dropped: s.rx_dropped(),
            rx_invalid_descs: s.rx_invalid_descs(),
            tx_invalid_descs: s.tx_invalid_descs(),
            rx_ring_full: s.rx_ring_full(),
            rx_fill_ring_empty_descs: s.rx_fill_ring_empty_descs(),
            tx_ring_empty_descs: s.tx_ring_empty_descs(),
        }
    }
}

fn set_int(fd: RawFd, level: libc::c_int, name: libc::c_int, value: u32) -> io::Result<()> {
    let v = value as libc::c_int;
    // SAFETY: `v` is a live `c_int` and the length passed is its size.
    let ret = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            std::ptr::from_ref(&v).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if ret == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn get_int(fd: RawFd, level: libc::c_int, name: libc::c_int) -> io::Result<u32> {
    let mut v: libc::c_int = 0;
    let mut len = size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `v` and `len` are valid for writes and `len` is `v`'s size.
    let ret =
        unsafe { libc::getsockopt(fd, level, name, std::ptr::from_mut(&mut v).cast(), &mut len) };
    if ret == 0 {
        Ok(v as u32)
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Sets the send buffer (forced if allowed) and returns what the kernel
/// reports afterwards (twice the request, as `socket(7)` says).
pub(crate) fn set_sndbuf(fd: RawFd, bytes: u32) -> io::Result<u32> {
    let bytes = bytes.min(i32::MAX as u32 / 2);
    if let Err(e) = set_int(fd, libc::SOL_SOCKET, SO_SNDBUFFORCE, bytes) {
        if e.raw_os_error() != Some(libc::EPERM) {
            return Err(e);
        }
        set_int(fd, libc::SOL_SOCKET, libc::SO_SNDBUF, bytes)?;
    }
    get_int(fd, libc::SOL_SOCKET, libc::SO_SNDBUF)
}

/// `XDP_MAX_TX_SKB_BUDGET`; `Err` on kernels without it.
pub(crate) fn set_tx_skb_budget(fd: RawFd, budget: u32) -> io::Result<()> {
    set_int(fd, libc::SOL_XDP, XDP_MAX_TX_SKB_BUDGET, budget)
}

/// `SO_PREFER_BUSY_POLL`, `SO_BUSY_POLL`, `SO_BUSY_POLL_BUDGET`.
pub(crate) fn set_busy_poll(fd: RawFd, bp: crate::BusyPoll) -> io::Result<()> {
    set_int(
        fd,
        libc::SOL_SOCKET,
        SO_PREFER_BUSY_POLL,
        u32::from(bp.prefer),
    )?;
    set_int(fd, libc::SOL_SOCKET, SO_BUSY_POLL, bp.usecs)?;
    set_int(fd, libc::SOL_SOCKET, SO_BUSY_POLL_BUDGET, bp.budget)
}

/// Whether the bound socket runs in zero-copy mode (`XDP_OPTIONS`).
pub(crate) fn is_zero_copy(fd: RawFd) -> io::Result<bool> {
    Ok(get_int(fd, libc::SOL_XDP, XDP_OPTIONS)? & XDP_OPTIONS_ZEROCOPY != 0)
}

/// Waits up to `timeout_ms` for any of `fds` to become readable.
pub(crate) fn poll_readable(fds: &[RawFd], timeout_ms: i32) -> io::Result<bool> {
    let mut pfds = [libc::pollfd {
        fd: -1,
        events: 0,
        revents: 0,
    }; 4];
    let n = fds.len().min(pfds.len());
    for (p, &fd) in pfds.iter_mut().zip(&fds[..n]) {
        p.fd = fd;
        p.events = libc::POLLIN;
    }
    // SAFETY: `pfds[..n]` is a valid, initialised array of `n` pollfds.
    let ret = unsafe { libc::poll(pfds.as_mut_ptr(), n as libc::nfds_t, timeout_ms) };
    match ret {
        r if r > 0 => Ok(true),
        0 => Ok(false),
        _ => {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                Ok(false)
            } else {
                Err(e)
            }
        }
    }
}

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_stop_signal(_: libc::c_int) {
    // Only an atomic store: async-signal-safe.
    STOP.store(true, Ordering::Relaxed);
}

/// Installs handlers for SIGINT and SIGTERM that set the returned flag, so
/// a worker loop can stop and its queues be dropped (which detaches
/// the XDP programs) instead of the process dying with them attached.
pub fn stop_flag_on_signals() -> io::Result<&'static AtomicBool> {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: `sigaction` is plain old data; all zeroes is a valid value
        // (empty mask, no flags) that is filled in below.
        let mut sa: libc::sigaction = unsafe { std::mem::zeroed() };
        sa.sa_sigaction = on_stop_signal as *const () as libc::sighandler_t;
        sa.sa_flags = libc::SA_RESTART;
        // SAFETY: `sa` is initialised, the handler only performs an atomic
        // store, and a null old-action pointer is allowed.
        let ret = unsafe { libc::sigaction(sig, &sa, std::ptr::null_mut()) };
        if ret != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(&STOP)
}
