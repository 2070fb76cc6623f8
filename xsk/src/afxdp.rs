//! The kernel's AF_XDP sockets as a [`Backend`], over [`xsk_rs`]: one UMEM
//! shared by the sockets of N ports on one queue id.

use std::{error::Error, ffi::CString, io, num::NonZeroU32, os::fd::AsRawFd};

use xsk_rs::{
    config::{BindFlags, FrameSize, Interface, LibxdpFlags, QueueSize, SocketConfig, UmemConfig},
    CompQueue, FillQueue, FrameDesc, RxQueue, Socket, TxQueue, Umem,
};

use crate::{
    prog::PortProgram,
    ring::{Backend, Desc, RingLevels},
    sys, BindMode, Queue, XskConfig, XskError, XskMode, XskStats,
};

/// One port to open: its interface, and whether its queue is steered into
/// the socket (`false`: a transmit-only port, whose frames go on to the
/// host's stack, e.g. a traffic generator on a host that keeps its ARP and
/// TCP).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortSpec {
    /// Interface name.
    pub iface: String,
    /// Steer the queue's frames to the socket.
    pub receive: bool,
}

impl PortSpec {
    /// A receiving port on `iface`.
    pub fn new(iface: &str) -> PortSpec {
        PortSpec {
            iface: iface.to_owned(),
            receive: true,
        }
    }
}

/// What [`XdpBackend::open`] obtained and did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetupReport {
    /// Zero-copy or copy (the same for every socket of a shared UMEM).
    pub mode: XskMode,
    /// Why zero-copy was not obtained in [`BindMode::Auto`].
    pub zero_copy_error: Option<String>,
    /// `SO_SNDBUF` as the kernel reports it, per port.
    pub sndbuf: Vec<Option<u32>>,
    /// `XDP_MAX_TX_SKB_BUDGET` applied per port (`None`: not set or not
    /// supported by the kernel).
    pub tx_skb_budget: Vec<Option<u32>>,
}

struct XdpPort {
    iface: String,
    receive: bool,
    rx: RxQueue,
    tx: TxQueue,
    fill: FillQueue,
    comp: CompQueue,
    fill_size: usize,
    tx_size: usize,
}

/// The AF_XDP backend: UMEM, sockets and rings of N ports on one queue id.
///
/// xsk-rs descriptors cannot be built from an address, so the backend keeps
/// the last descriptor it saw for each UMEM chunk (from the UMEM's creation,
/// the RX ring or the completion ring) and hands the rings those, with the
/// length the queue asks for. Every address the queue knows came from one
/// of those, so the table always has it (asserted).
pub struct XdpBackend {
    // Sockets before the UMEM they are bound to.
    ports: Vec<XdpPort>,
    umem: Umem,
    table: Vec<FrameDesc>,
    scratch: Vec<FrameDesc>,
    initial: Vec<u64>,
    rx_fds: Vec<i32>,
    base: *mut u8,
    mem_len: usize,
    frame_shift: u32,
    frame_size: usize,
    report: SetupReport,
}

// SAFETY: `base` points into the UMEM mapping that `umem` keeps alive; the
// rings and sockets are owned (xsk-rs's queues are `Send`), so the backend
// can move to the worker's thread as a whole.
unsafe impl Send for XdpBackend {}

impl std::fmt::Debug for XdpBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.ports.iter().map(|p| p.iface.as_str()).collect();
        f.debug_struct("XdpBackend")
            .field("ports", &names)
            .field("report", &self.report)
            .finish_non_exhaustive()
    }
}

/// An AF_XDP [`Queue`].
pub type XdpQueue = Queue<XdpBackend>;

fn chain(e: &dyn Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

pub(crate) fn ifindex(iface: &str) -> Result<u32, XskError> {
    let err = |source| XskError::Interface {
        iface: iface.to_owned(),
        source,
    };
    let name =
        CString::new(iface).map_err(|e| err(io::Error::new(io::ErrorKind::InvalidInput, e)))?;
    // SAFETY: `name` is a valid NUL-terminated string that outlives the call.
    let idx = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if idx == 0 {
        Err(err(io::Error::last_os_error()))
    } else {
        Ok(idx)
    }
}

/// The sockets and UMEM of one bind attempt.
struct Opened {
    umem: Umem,
    descs: Vec<FrameDesc>,
    ports: Vec<XdpPort>,
    mode: XskMode,
    sndbuf: Vec<Option<u32>>,
    tx_skb_budget: Vec<Option<u32>>,
}

fn open(
    specs: &[PortSpec],
    queue_id: u32,
    c: &XskConfig,
    mode: XskMode,
) -> Result<Opened, XskError> {
    let cfg_err = |e: &dyn Error| XskError::Config(chain(e));
    let qs = |v: u32| QueueSize::new(v).map_err(|e| cfg_err(&e));
    let umem_cfg = UmemConfig::builder()
        .frame_size(FrameSize::new(c.frame_size).map_err(|e| cfg_err(&e))?)
        .fill_queue_size(qs(c.fill_ring_size)?)
        .comp_queue_size(qs(c.comp_ring_size)?)
        .frame_headroom(0)
        .build()
        .map_err(|e| cfg_err(&e))?;
    let frame_count = NonZeroU32::new(c.frame_count)
        .ok_or_else(|| XskError::Config("frame_count is 0".into()))?;
    let (umem, descs) =
        Umem::new(umem_cfg, frame_count, c.huge_pages).map_err(|e| XskError::Umem(chain(&e)))?;

    let bind = BindFlags::XDP_USE_NEED_WAKEUP
        | match mode {
            XskMode::ZeroCopy => BindFlags::XDP_ZEROCOPY,
            XskMode::Copy => BindFlags::XDP_COPY,
        };
    let sock_cfg = SocketConfig::builder()
        .rx_queue_size(qs(c.rx_ring_size)?)
        .tx_queue_size(qs(c.tx_ring_size)?)
        .libxdp_flags(LibxdpFlags::XSK_LIBXDP_FLAGS_INHIBIT_PROG_LOAD)
        .bind_flags(bind)
        .build();

    let mut ports = Vec::with_capacity(specs.len());
    let mut sndbuf = vec![None; specs.len()];
    let mut tx_skb_budget = vec![None; specs.len()];
    for (i, spec) in specs.iter().enumerate() {
        let iface = spec.iface.as_str();
        let sock_err = |reason: String| XskError::Socket {
            iface: iface.to_owned(),
            queue_id,
            mode,
            reason,
        };
        let name: Interface = iface
            .parse()
            .map_err(|e: std::ffi::NulError| sock_err(e.to_string()))?;
        // SAFETY: the sockets are created with
        // XSK_LIBXDP_FLAGS_INHIBIT_PROG_LOAD, which is what `Socket::new`
        // requires when the UMEM is shared (and is allowed otherwise).
        let (tx, rx, fq_cq) = unsafe { Socket::new(sock_cfg, &umem, &name, queue_id) }
            .map_err(|e| sock_err(chain(&e)))?;
        let (fill, comp) = fq_cq.ok_or_else(|| {
            sock_err(
                "no fill/completion ring returned: (interface, queue) already bound on this UMEM"
                    .into(),
            )
        })?;
        let fd = tx.fd().as_raw_fd();
        let opt_err = |what: &'static str| {
            move |source| XskError::SockOpt {
                iface: iface.to_owned(),
                what,
                source,
            }
        };
        if let Some(bytes) = c.sndbuf {
            sndbuf[i] = Some(sys::set_sndbuf(fd, bytes).map_err(opt_err("SO_SNDBUF(FORCE)"))?);
        }
        if let Some(budget) = c.tx_skb_budget {
            let budget = budget.clamp(32, c.tx_ring_size);
            tx_skb_budget[i] = sys::set_tx_skb_budget(fd, budget).ok().map(|()| budget);
        }
        if let Some(bp) = c.busy_poll {
            sys::set_busy_poll(fd, bp).map_err(opt_err("busy polling"))?;
        }
        ports.push(XdpPort {
            iface: iface.to_owned(),
            receive: spec.receive,
            rx,
            tx,
            fill,
            comp,
            fill_size: c.fill_ring_size as usize,
            tx_size: c.tx_ring_size as usize,
        });
    }

    // Every socket after the first inherits the first one's mode
    // (XDP_SHARED_UMEM); read back what the kernel really did.
    for p in &ports {
        let zc = sys::is_zero_copy(p.tx.fd().as_raw_fd()).map_err(|source| XskError::SockOpt {
            iface: p.iface.clone(),
            what: "XDP_OPTIONS",
            source,
        })?;
        if zc != (mode == XskMode::ZeroCopy) {
            return Err(XskError::Socket {
                iface: p.iface.clone(),
                queue_id,
                mode,
                reason: format!("kernel reports zero-copy {zc}"),
            });
        }
    }
    Ok(Opened {
        umem,
        descs,
        ports,
        mode,
        sndbuf,
        tx_skb_budget,
    })
}

impl XdpBackend {
    /// Opens queue `queue_id` of every port in `specs`: creates the UMEM
    /// and the sockets (zero-copy first if [`BindMode::Auto`]). The XDP
    /// programs of the ports ([`PortProgram`]) steer frames to them once
    /// registered ([`open_queue`] does both).
    ///
    /// Until the queue's first refill the fill rings are empty, so the
    /// kernel drops (and counts) what arrives in between; [`open_queue`]
    /// refills at once.
    pub fn open(specs: &[PortSpec], queue_id: u32, config: &XskConfig) -> Result<Self, XskError> {
        config.validate()?;
        if specs.is_empty() {
            return Err(XskError::Config("no port to open".into()));
        }
        for (i, a) in specs.iter().enumerate() {
            if specs[..i].iter().any(|b| b.iface == a.iface) {
                return Err(XskError::Config(format!("{} is given twice", a.iface)));
            }
        }
        for s in specs {
            ifindex(&s.iface)?;
        }
        let attempts: &[XskMode] = match config.bind_mode {
            BindMode::Auto => &[XskMode::ZeroCopy, XskMode::Copy],
            BindMode::ForceCopy => &[XskMode::Copy],
            BindMode::ForceZeroCopy => &[XskMode::ZeroCopy],
        };
        let mut zero_copy_error = None;
        let mut opened = None;
        for (i, &mode) in attempts.iter().enumerate() {
            match open(specs, queue_id, config, mode) {
                Ok(o) => {
                    opened = Some(o);
                    break;
                }
                Err(e) if i + 1 < attempts.len() => zero_copy_error = Some(e.to_string()),
                Err(e) => return Err(e),
            }
        }
        let Some(o) = opened else {
            return Err(XskError::Config("no bind mode to try".into()));
        };

        let report = SetupReport {
            mode: o.mode,
            zero_copy_error,
            sndbuf: o.sndbuf,
            tx_skb_budget: o.tx_skb_budget,
        };
        let frame_size = config.frame_size as usize;
        let mem_len = o.descs.len() * frame_size;
        let mut first = o.descs[0];
        // SAFETY: `first` is a descriptor of this UMEM; the view is used
        // only to learn where the mapping starts (the packet start of frame
        // 0 minus its offset), no byte is read or written.
        let ptr = unsafe { o.umem.data_mut(&mut first) }
            .contents_mut()
            .as_mut_ptr();
        let base = ptr.wrapping_sub(first.addr());
        let frame_shift = frame_size.trailing_zeros();
        let mut table = vec![FrameDesc::default(); o.descs.len()];
        let mut initial = Vec::with_capacity(o.descs.len());
        for d in &o.descs {
            table[d.addr() >> frame_shift] = *d;
            initial.push(d.addr() as u64);
        }
        let scratch_len = (config.batch as usize)
            .max(config.fill_ring_size as usize)
            .max(config.comp_ring_size as usize);
        let rx_fds = o
            .ports
            .iter()
            .filter(|p| p.receive)
            .map(|p| p.rx.fd().as_raw_fd())
            .collect();
        let backend = XdpBackend {
            rx_fds,
            ports: o.ports,
            umem: o.umem,
            table,
            scratch: vec![FrameDesc::default(); scratch_len],
            initial,
            base,
            mem_len,
            frame_shift,
            frame_size,
            report,
        };
        Ok(backend)
    }

    /// Steers the queue of every receiving port to its socket, through
    /// that port's program (found in `programs` by interface; a
    /// transmit-only port needs none). Called once the fill rings hold
    /// frames.
    fn register(&self, queue_id: u32, programs: &[&PortProgram]) -> Result<(), XskError> {
        for p in self.ports.iter().filter(|p| p.receive) {
            let prog = programs
                .iter()
                .find(|g| g.iface() == p.iface)
                .ok_or_else(|| XskError::Config(format!("no XDP program for {}", p.iface)))?;
            prog.register(queue_id, p.rx.fd().as_raw_fd())?;
        }
        Ok(())
    }

    /// What [`open`](Self::open) obtained: bind mode, XDP modes, replaced
    /// programs, socket options.
    pub fn report(&self) -> &SetupReport {
        &self.report
    }

    /// The bind mode obtained.
    pub fn mode(&self) -> XskMode {
        self.report.mode
    }

    /// Puts the xsk-rs descriptors for `descs` into the scratch array
    /// (the stored descriptor of each chunk, with the length the queue
    /// asks for); returns how many (at most the scratch size).
    #[inline]
    fn stage(&mut self, descs: &[Desc]) -> usize {
        let k = descs.len().min(self.scratch.len());
        for (out, d) in self.scratch.iter_mut().zip(&descs[..k]) {
            let mut fd = self.table[(d.addr >> self.frame_shift) as usize];
            assert_eq!(fd.addr() as u64, d.addr, "descriptor not from this UMEM");
            fd.set_options(0);
            // SAFETY: the view is used only to store the length in `fd`; the
            // frame is held by the queue, in no ring.
            unsafe { self.umem.data_mut(&mut fd) }
                .cursor()
                .set_pos(d.len as usize);
            *out = fd;
        }
        k
    }
}

/// Opens an [`XdpQueue`]: [`XdpBackend::open`], then the first refill of
/// the fill rings, then steering of the receiving ports' queues through
/// their programs (one per receiving port, matched by interface).
pub fn open_queue(
    specs: &[PortSpec],
    queue_id: u32,
    config: &XskConfig,
    programs: &[&PortProgram],
) -> Result<XdpQueue, XskError> {
    let backend = XdpBackend::open(specs, queue_id, config)?;
    let mut q = Queue::new(
        backend,
        queue_id,
        config.batch as usize,
        config.alloc_reserve as usize,
    );
    q.refill().map_err(|e| XskError::SockOpt {
        iface: specs[e.port].iface.clone(),
        what: "fill ring wakeup",
        source: e.source,
    })?;
    q.backend().register(queue_id, programs)?;
    Ok(q)
}

impl Backend for XdpBackend {
    fn port_count(&self) -> usize {
        self.ports.len()
    }

    fn name(&self, port: usize) -> &str {
        &self.ports[port].iface
    }

    fn receives(&self, port: usize) -> bool {
        self.ports[port].receive
    }

    fn frame_size(&self) -> usize {
        self.frame_size
    }

    fn initial_frames(&self) -> Vec<u64> {
        self.initial.clone()
    }

    fn memory(&self) -> (*mut u8, usize) {
        (self.base, self.mem_len)
    }

    fn ring_sizes(&self, port: usize) -> (usize, usize) {
        (self.ports[port].fill_size, self.ports[port].tx_size)
    }

    #[inline]
    fn rx_consume(&mut self, port: usize, out: &mut [Desc]) -> usize {
        let want = out.len().min(self.scratch.len());
        // SAFETY: the RX ring only returns frames of `self.umem`, the one
        // UMEM every socket is bound to; the descriptors are written into
        // our scratch array.
        let n = unsafe { self.ports[port].rx.consume(&mut self.scratch[..want]) };
        for (o, d) in out.iter_mut().zip(&self.scratch[..n]) {
            self.table[d.addr() >> self.frame_shift] = *d;
            *o = Desc {
                addr: d.addr() as u64,
                len: d.lengths().data() as u32,
            };
        }
        n
    }

    #[inline]
    fn fill_room(&mut self, port: usize, want: usize) -> usize {
        // libxdp reserves all or nothing: ask for what fits.
        let room = self.ports[port].fill.nb_free(want as u32) as usize;
        room.min(want)
    }

    #[inline]
    fn fill_produce(&mut self, port: usize, descs: &[Desc]) -> usize {
        let k = self.stage(descs);
        // SAFETY: the descriptors are frames of `self.umem` that the queue
        // gave up (free list), in no other ring.
        unsafe { self.ports[port].fill.produce(&self.scratch[..k]) }
    }

    #[inline]
    fn fill_needs_wakeup(&self, port: usize) -> bool {
        self.ports[port].fill.needs_wakeup()
    }

    fn fill_wakeup(&mut self, port: usize) -> io::Result<()> {
        let p = &mut self.ports[port];
        p.fill.wakeup(p.rx.fd_mut(), 0)
    }

    #[inline]
    fn tx_room(&mut self, port: usize, want: usize) -> usize {
        let room = self.ports[port].tx.nb_free(want as u32) as usize;
        room.min(want)
    }

    #[inline]
    fn tx_produce(&mut self, port: usize, descs: &[Desc]) -> usize {
        let k = self.stage(descs);
        // SAFETY: the descriptors are frames of `self.umem` that the caller
        // gave up (staged), each once, in no other ring.
        unsafe { self.ports[port].tx.produce(&self.scratch[..k]) }
    }

    #[inline]
    fn tx_needs_wakeup(&self, port: usize) -> bool {
        self.ports[port].tx.needs_wakeup()
    }

    fn tx_wakeup(&mut self, port: usize) -> io::Result<()> {
        self.ports[port].tx.wakeup()
    }

    #[inline]
    fn tx_pending(&mut self, port: usize) -> usize {
        let p = &mut self.ports[port];
        p.tx_size - p.tx.nb_free_exact() as usize
    }

    #[inline]
    fn comp_consume(&mut self, port: usize, out: &mut [Desc]) -> usize {
        let want = out.len().min(self.scratch.len());
        // SAFETY: the completion ring only returns addresses of frames of
        // `self.umem` that we put into the TX ring; they are written into
        // our scratch array.
        let n = unsafe { self.ports[port].comp.consume(&mut self.scratch[..want]) };
        for (o, d) in out.iter_mut().zip(&self.scratch[..n]) {
            self.table[d.addr() >> self.frame_shift] = *d;
            *o = Desc {
                addr: d.addr() as u64,
                len: 0,
            };
        }
        n
    }

    fn levels(&mut self, port: usize) -> RingLevels {
        let p = &mut self.ports[port];
        RingLevels {
            fill: p.fill_size - p.fill.nb_free_exact() as usize,
            rx: p.rx.nb_avail_exact() as usize,
            tx: p.tx_size - p.tx.nb_free_exact() as usize,
            comp: p.comp.nb_avail_exact() as usize,
        }
    }

    fn stats(&self, port: usize) -> io::Result<XskStats> {
        self.ports[port]
            .rx
            .fd()
            .xdp_statistics()
            .map(XskStats::from)
    }

    fn wait_rx(&mut self, timeout_ms: i32) -> io::Result<bool> {
        sys::poll_readable(&self.rx_fds, timeout_ms)
    }
}
