//! One worker's queue pair: one UMEM, two AF_XDP sockets, the frame free
//! list, and the ring operations a run-to-completion loop needs.

use std::{
    error::Error,
    ffi::CString,
    io,
    num::NonZeroU32,
    os::fd::AsRawFd,
    sync::{
        atomic::{AtomicU32, Ordering},
        Arc,
    },
};

use xsk_rs::{
    config::{BindFlags, FrameSize, Interface, LibxdpFlags, QueueSize, SocketConfig, UmemConfig},
    CompQueue, FillQueue, FrameDesc, RxQueue, Socket, TxQueue, Umem,
};

use super::{
    prog::{self, Attached, ReplacedProgram, XdpMode},
    sys, Port, XskConfig, XskError, XskMode, XskStats,
};

/// Distinguishes the UMEMs of one process, so that a [`Frame`] can never be
/// used with a queue pair it does not belong to.
static NEXT_POOL: AtomicU32 = AtomicU32::new(1);

/// A UMEM frame owned by the caller: received with [`QueuePair::rx_batch`]
/// or taken with [`QueuePair::alloc`].
///
/// It is not `Clone`: holding it is the right to touch the frame's bytes
/// (through [`QueuePair::data`] and [`QueuePair::buf_mut`]). It must go back
/// through [`QueuePair::tx_push`] or [`QueuePair::free`]; a dropped `Frame`
/// is a leaked UMEM frame, which [`QueuePair::check_conservation`] reports.
#[derive(Debug)]
#[must_use = "a Frame must be transmitted (QueuePair::tx_push) or freed (QueuePair::free), or it leaks"]
pub struct Frame {
    desc: FrameDesc,
    pool: u32,
    cap: u32,
}

impl Frame {
    /// Current packet length in bytes.
    #[inline]
    pub fn len(&self) -> usize {
        self.desc.lengths().data()
    }

    /// `true` when the packet is empty (a freshly allocated frame).
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes available from the packet start to the end of the frame: the
    /// largest length [`QueuePair::set_len`] accepts.
    #[inline]
    pub fn capacity(&self) -> usize {
        self.cap as usize
    }

    /// Offset of the packet in the UMEM (the descriptor address).
    #[inline]
    pub fn addr(&self) -> u64 {
        self.desc.addr() as u64
    }
}

/// Where the frames of a [`QueuePair`] are. For every port, "fill or RX"
/// counts frames given to the kernel through the fill ring and not yet
/// taken back from the RX ring, and "TX or completion" frames given through
/// the TX ring and not yet taken back from the completion ring; the ring
/// occupancies are the part of those still sitting in a ring.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FrameCounts {
    /// Frames in the UMEM.
    pub total: usize,
    /// In the worker's free list.
    pub free: usize,
    /// Handed to the caller and not given back.
    pub held: usize,
    /// Queued with [`QueuePair::tx_push`], not yet in the TX ring.
    pub tx_staged: [usize; 2],
    /// Given to the kernel for RX (fill ring, kernel, RX ring).
    pub fill_or_rx: [usize; 2],
    /// Given to the kernel for TX (TX ring, kernel, completion ring).
    pub tx_or_comp: [usize; 2],
    /// Entries in the fill ring now.
    pub fill_ring: [usize; 2],
    /// Entries in the RX ring now.
    pub rx_ring: [usize; 2],
    /// Entries in the TX ring now.
    pub tx_ring: [usize; 2],
    /// Entries in the completion ring now.
    pub comp_ring: [usize; 2],
}

impl FrameCounts {
    /// The sum of all the places a frame can be; equals `total` when no
    /// frame is lost.
    pub fn accounted(&self) -> usize {
        self.free
            + self.held
            + self.tx_staged.iter().sum::<usize>()
            + self.fill_or_rx.iter().sum::<usize>()
            + self.tx_or_comp.iter().sum::<usize>()
    }
}

/// [`QueuePair::check_conservation`] found frames unaccounted for.
#[derive(Debug, Clone, thiserror::Error)]
#[error("UMEM frame conservation violated: {reason} ({counts:?})")]
pub struct ConservationError {
    /// What did not add up.
    pub reason: String,
    /// The counts at the time of the check.
    pub counts: Box<FrameCounts>,
}

/// Per-port work counters of a [`QueuePair`] (plain integers owned by the
/// worker).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PortCounters {
    /// Frames taken from the RX ring.
    pub rx_frames: u64,
    /// Non-empty RX batches.
    pub rx_batches: u64,
    /// Frames put into the TX ring.
    pub tx_frames: u64,
    /// Frames taken back from the completion ring.
    pub tx_completed: u64,
    /// `sendto` kicks issued because the TX ring needed a wakeup.
    pub tx_kicks: u64,
    /// [`QueuePair::tx_push`] refusals: staging area and TX ring full.
    pub tx_full: u64,
    /// [`QueuePair::tx_push`] refusals: empty or oversized frame.
    pub tx_bad_len: u64,
    /// Frames put into the fill ring.
    pub fill_frames: u64,
    /// `poll` wakeups issued because the fill ring needed one.
    pub fill_wakeups: u64,
}

/// What [`QueuePair::new`] obtained and did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetupReport {
    /// Zero-copy or copy (the same for both sockets of a shared UMEM).
    pub mode: XskMode,
    /// Why zero-copy was not obtained in [`BindMode::Auto`](super::BindMode).
    pub zero_copy_error: Option<String>,
    /// XDP attach mode per port.
    pub xdp_mode: [XdpMode; 2],
    /// Kernel id of the XDP program per port.
    pub prog_id: [u32; 2],
    /// Programs found attached and detached (left by a killed run, or
    /// foreign ones if allowed).
    pub replaced: Vec<ReplacedProgram>,
    /// `SO_SNDBUF` as the kernel reports it, per port.
    pub sndbuf: [Option<u32>; 2],
    /// `XDP_MAX_TX_SKB_BUDGET` applied per port (`None`: not set or not
    /// supported by the kernel).
    pub tx_skb_budget: [Option<u32>; 2],
}

/// Where a frame is, tracked per frame in debug builds only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Owner {
    Free,
    Held,
    Staged(usize),
    Fill(usize),
    Tx(usize),
}

/// Debug builds: checks and records an ownership transition.
#[inline]
fn track(owner: &mut [Owner], frame_shift: u32, addr: usize, from: Owner, to: Owner) {
    if cfg!(debug_assertions) {
        let i = addr >> frame_shift;
        assert!(i < owner.len(), "frame address {addr:#x} outside the UMEM");
        assert_eq!(
            owner[i], from,
            "frame {i} (addr {addr:#x}) expected {from:?}, moving to {to:?}"
        );
        owner[i] = to;
    }
}

struct PortIo {
    iface: String,
    rx: RxQueue,
    tx: TxQueue,
    fill: FillQueue,
    comp: CompQueue,
    staged: Vec<FrameDesc>,
    fill_or_rx: usize,
    tx_or_comp: usize,
    fill_size: usize,
    tx_size: usize,
    counters: PortCounters,
}

/// One worker's AF_XDP I/O: queue `queue_id` of two ports (A and B), both
/// sockets on one shared UMEM, so forwarding a frame from one port to the
/// other moves its descriptor, never its bytes.
///
/// The worker owns the free list. Every frame is at all times in exactly
/// one place: free list, fill ring (or the kernel, or the RX ring), held by
/// the caller, TX staging, TX ring (or the kernel, or the completion ring).
/// [`frame_counts`](Self::frame_counts) and
/// [`check_conservation`](Self::check_conservation) account for all of
/// them.
///
/// A loop turn: [`reap_completions`](Self::reap_completions),
/// [`refill`](Self::refill), then per port [`rx_batch`](Self::rx_batch),
/// process, [`tx_push`](Self::tx_push) / [`free`](Self::free), and
/// [`flush_tx`](Self::flush_tx). Only the wakeups the rings ask for make
/// system calls.
///
/// Dropping it closes the sockets and, with the last queue pair of the
/// process on an interface, detaches the XDP program.
pub struct QueuePair {
    // Sockets first: they close before the XDP programs are detached.
    ports: [PortIo; 2],
    progs: [Arc<Attached>; 2],
    umem: Umem,
    pool: u32,
    queue_id: u32,
    frame_shift: u32,
    frame_count: usize,
    batch: usize,
    reserve: usize,
    free: Vec<FrameDesc>,
    scratch: Vec<FrameDesc>,
    held: usize,
    refill_first: usize,
    owner: Vec<Owner>,
    report: SetupReport,
}

impl std::fmt::Debug for QueuePair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueuePair")
            .field("ifaces", &[&self.ports[0].iface, &self.ports[1].iface])
            .field("queue_id", &self.queue_id)
            .field("frame_count", &self.frame_count)
            .field("free", &self.free.len())
            .field("held", &self.held)
            .field("report", &self.report)
            .finish_non_exhaustive()
    }
}

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

fn ifindex(iface: &str) -> Result<u32, XskError> {
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
    ports: [PortIo; 2],
    mode: XskMode,
    sndbuf: [Option<u32>; 2],
    tx_skb_budget: [Option<u32>; 2],
}

fn open(
    ifaces: [&str; 2],
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

    let mut ports = Vec::with_capacity(2);
    let mut sndbuf = [None; 2];
    let mut tx_skb_budget = [None; 2];
    for (i, &iface) in ifaces.iter().enumerate() {
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
        ports.push(PortIo {
            iface: iface.to_owned(),
            rx,
            tx,
            fill,
            comp,
            staged: Vec::with_capacity(c.batch as usize),
            fill_or_rx: 0,
            tx_or_comp: 0,
            fill_size: c.fill_ring_size as usize,
            tx_size: c.tx_ring_size as usize,
            counters: PortCounters::default(),
        });
    }
    let [a, b]: [PortIo; 2] = ports
        .try_into()
        .map_err(|_| XskError::Config("two ports".into()))?;

    // The second socket inherits the first one's mode (XDP_SHARED_UMEM);
    // read back what the kernel really did.
    let zc = |p: &PortIo| {
        sys::is_zero_copy(p.tx.fd().as_raw_fd()).map_err(|source| XskError::SockOpt {
            iface: p.iface.clone(),
            what: "XDP_OPTIONS",
            source,
        })
    };
    let (zc_a, zc_b) = (zc(&a)?, zc(&b)?);
    if zc_a != zc_b || zc_a != (mode == XskMode::ZeroCopy) {
        return Err(XskError::Socket {
            iface: b.iface.clone(),
            queue_id,
            mode,
            reason: format!("kernel reports zero-copy {zc_a} on port A and {zc_b} on port B"),
        });
    }
    Ok(Opened {
        umem,
        descs,
        ports: [a, b],
        mode,
        sndbuf,
        tx_skb_budget,
    })
}

impl QueuePair {
    /// Opens queue `queue_id` of `ifaces[0]` (port A) and `ifaces[1]`
    /// (port B): attaches the XDP program to both interfaces (or reuses this
    /// process's attachment, replacing a program left by a killed run),
    /// creates the UMEM and both sockets (zero-copy first if
    /// [`BindMode::Auto`](super::BindMode)), fills both fill rings and
    /// steers the queue to the sockets.
    ///
    /// The report ([`report`](Self::report)) says which mode was obtained
    /// and what was replaced; logging it is the caller's job.
    pub fn new(ifaces: [&str; 2], queue_id: u32, config: &XskConfig) -> Result<Self, XskError> {
        config.validate()?;
        if ifaces[0] == ifaces[1] {
            return Err(XskError::Config(format!("both ports are {}", ifaces[0])));
        }
        let idx = [ifindex(ifaces[0])?, ifindex(ifaces[1])?];
        let mut replaced = Vec::new();
        let progs = [
            prog::acquire(
                ifaces[0],
                idx[0],
                queue_id,
                config.attach_mode,
                config.replace_foreign_program,
                &mut replaced,
            )?,
            prog::acquire(
                ifaces[1],
                idx[1],
                queue_id,
                config.attach_mode,
                config.replace_foreign_program,
                &mut replaced,
            )?,
        ];

        let attempts: &[XskMode] = match config.bind_mode {
            super::BindMode::Auto => &[XskMode::ZeroCopy, XskMode::Copy],
            super::BindMode::ForceCopy => &[XskMode::Copy],
            super::BindMode::ForceZeroCopy => &[XskMode::ZeroCopy],
        };
        let mut zero_copy_error = None;
        let mut opened = None;
        for (i, &mode) in attempts.iter().enumerate() {
            match open(ifaces, queue_id, config, mode) {
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

        let frame_count = o.descs.len();
        let report = SetupReport {
            mode: o.mode,
            zero_copy_error,
            xdp_mode: [progs[0].mode(), progs[1].mode()],
            prog_id: [progs[0].prog_id(), progs[1].prog_id()],
            replaced,
            sndbuf: o.sndbuf,
            tx_skb_budget: o.tx_skb_budget,
        };
        let batch = config.batch as usize;
        let mut free = Vec::with_capacity(frame_count);
        free.extend(o.descs.into_iter().rev());
        let mut qp = QueuePair {
            ports: o.ports,
            progs,
            umem: o.umem,
            pool: NEXT_POOL.fetch_add(1, Ordering::Relaxed),
            queue_id,
            frame_shift: config.frame_size.trailing_zeros(),
            frame_count,
            batch,
            reserve: config.alloc_reserve as usize,
            free,
            scratch: vec![FrameDesc::default(); batch.max(256)],
            held: 0,
            refill_first: 0,
            owner: if cfg!(debug_assertions) {
                vec![Owner::Free; frame_count]
            } else {
                Vec::new()
            },
            report,
        };
        qp.refill().map_err(|source| XskError::SockOpt {
            iface: qp.ports[0].iface.clone(),
            what: "fill ring wakeup",
            source,
        })?;
        for p in 0..2 {
            if !config.steer_rx[p] {
                continue; // transmit-only port: frames go to the stack
            }
            let fd = qp.ports[p].rx.fd().as_raw_fd();
            qp.progs[p].register(queue_id, fd)?;
        }
        Ok(qp)
    }

    /// What [`new`](Self::new) obtained: bind mode, XDP modes, replaced
    /// programs, socket options.
    pub fn report(&self) -> &SetupReport {
        &self.report
    }

    /// The bind mode obtained.
    pub fn mode(&self) -> XskMode {
        self.report.mode
    }

    /// The queue id of both sockets.
    pub fn queue_id(&self) -> u32 {
        self.queue_id
    }

    /// The interface of `port`.
    pub fn iface(&self, port: Port) -> &str {
        &self.ports[port.index()].iface
    }

    /// The configured batch size.
    pub fn batch(&self) -> usize {
        self.batch
    }

    /// Frames in the UMEM.
    pub fn frame_count(&self) -> usize {
        self.frame_count
    }

    #[inline]
    fn check_pool(&self, frame: &Frame) {
        assert_eq!(frame.pool, self.pool, "Frame used with another QueuePair");
    }

    #[inline]
    fn frame(&self, desc: FrameDesc) -> Frame {
        let size = 1usize << self.frame_shift;
        let cap = size - (desc.addr() & (size - 1));
        Frame {
            desc,
            pool: self.pool,
            cap: cap as u32,
        }
    }

    /// Takes up to [`batch`](Self::batch) received frames from `port`'s RX
    /// ring and appends them to `out`; returns how many. Reserve `batch`
    /// capacity in `out` once and no call allocates.
    #[inline]
    pub fn rx_batch(&mut self, port: Port, out: &mut Vec<Frame>) -> usize {
        let p = port.index();
        let batch = self.batch;
        let io = &mut self.ports[p];
        // SAFETY: the RX ring only returns frames of `self.umem`, the one
        // UMEM both sockets are bound to; the descriptors are written into
        // our scratch array.
        let n = unsafe { io.rx.consume(&mut self.scratch[..batch]) };
        if n == 0 {
            return 0;
        }
        debug_assert!(n <= io.fill_or_rx);
        io.fill_or_rx -= n;
        io.counters.rx_frames += n as u64;
        io.counters.rx_batches += 1;
        self.held += n;
        for i in 0..n {
            let d = self.scratch[i];
            track(
                &mut self.owner,
                self.frame_shift,
                d.addr(),
                Owner::Fill(p),
                Owner::Held,
            );
            out.push(self.frame(d));
        }
        n
    }

    /// The packet bytes of `frame` (its current length).
    #[inline]
    pub fn data<'a>(&'a self, frame: &'a Frame) -> &'a [u8] {
        self.check_pool(frame);
        // SAFETY: the frame belongs to `self.umem` (pool checked) and is held
        // by the caller, so it is in no ring and the kernel does not touch
        // it; no mutable view of it exists while `frame` is borrowed shared,
        // since `buf_mut` and `set_len` need `&mut Frame`.
        unsafe { self.umem.data(&frame.desc) }.contents()
    }

    /// The whole buffer of `frame`, from the packet start to the end of its
    /// UMEM chunk ([`Frame::capacity`] bytes), so a packet can be rewritten
    /// or grown in place; set the new length with [`set_len`](Self::set_len)
    /// afterwards.
    #[inline]
    pub fn buf_mut<'a>(&'a self, frame: &'a mut Frame) -> &'a mut [u8] {
        self.check_pool(frame);
        // A copy: only the pointer is wanted; the length stays as it is.
        let mut desc = frame.desc;
        // SAFETY: as in `data`, and `frame` is borrowed mutably, so this is
        // the only view of the chunk.
        let mut data = unsafe { self.umem.data_mut(&mut desc) };
        let cap = {
            let mut cursor = data.cursor();
            let cap = cursor.buf_len();
            cursor.set_pos(cap);
            cap
        };
        let ptr = data.contents_mut().as_mut_ptr();
        debug_assert_eq!(cap, frame.capacity());
        // SAFETY: `ptr` and `cap` describe the slice xsk-rs just built over
        // this frame's chunk (packet start to chunk end) inside the UMEM
        // mapping, which outlives `'a` (`self` is borrowed for `'a`). Nothing
        // else can reach those bytes for `'a`: the caller holds the only
        // `Frame` for the chunk, borrowed mutably for `'a`, and the kernel
        // only uses frames that are in a ring.
        unsafe { std::slice::from_raw_parts_mut(ptr, cap) }
    }

    /// Sets the packet length of `frame`.
    ///
    /// # Panics
    /// If `len` exceeds [`Frame::capacity`].
    #[inline]
    pub fn set_len(&self, frame: &mut Frame, len: usize) {
        self.check_pool(frame);
        assert!(
            len <= frame.capacity(),
            "length {len} beyond frame capacity {}",
            frame.capacity()
        );
        // SAFETY: as in `buf_mut`; the view is only used to store the length.
        unsafe { self.umem.data_mut(&mut frame.desc) }
            .cursor()
            .set_pos(len);
    }

    /// Takes a frame from the free list (empty, length 0), or `None` when
    /// the free list is empty.
    #[inline]
    pub fn alloc(&mut self) -> Option<Frame> {
        let desc = self.free.pop()?;
        track(
            &mut self.owner,
            self.frame_shift,
            desc.addr(),
            Owner::Free,
            Owner::Held,
        );
        self.held += 1;
        let mut f = self.frame(desc);
        if !f.is_empty() {
            self.set_len(&mut f, 0);
        }
        Some(f)
    }

    /// Gives a frame back to the free list (a dropped packet).
    #[inline]
    pub fn free(&mut self, frame: Frame) {
        self.check_pool(&frame);
        track(
            &mut self.owner,
            self.frame_shift,
            frame.desc.addr(),
            Owner::Held,
            Owner::Free,
        );
        self.held -= 1;
        self.free.push(frame.desc);
    }

    /// Queues `frame` (with its current length) for transmission on `port`.
    /// It reaches the TX ring when the staging area (of
    /// [`batch`](Self::batch) frames) is full or at
    /// [`flush_tx`](Self::flush_tx).
    ///
    /// Gives the frame back when it cannot be queued: staging area and TX
    /// ring full, or a length of 0 (the kernel would drop such a descriptor
    /// without completing it, losing the frame). The caller frees or
    /// retries it.
    #[inline]
    pub fn tx_push(&mut self, port: Port, mut frame: Frame) -> Result<(), Frame> {
        self.check_pool(&frame);
        let p = port.index();
        if frame.is_empty() || frame.len() > frame.capacity() {
            self.ports[p].counters.tx_bad_len += 1;
            return Err(frame);
        }
        if self.ports[p].staged.len() >= self.batch {
            self.produce_staged(p);
            if self.ports[p].staged.len() >= self.batch {
                self.ports[p].counters.tx_full += 1;
                return Err(frame);
            }
        }
        frame.desc.set_options(0);
        track(
            &mut self.owner,
            self.frame_shift,
            frame.desc.addr(),
            Owner::Held,
            Owner::Staged(p),
        );
        self.held -= 1;
        self.ports[p].staged.push(frame.desc);
        Ok(())
    }

    /// Moves as many staged frames of port `p` as fit into its TX ring.
    fn produce_staged(&mut self, p: usize) -> usize {
        let io = &mut self.ports[p];
        if io.staged.is_empty() {
            return 0;
        }
        // libxdp reserves all or nothing: ask for what fits.
        let room = io.tx.nb_free(io.staged.len() as u32) as usize;
        let k = room.min(io.staged.len());
        if k == 0 {
            return 0;
        }
        // SAFETY: the staged descriptors are frames of `self.umem` that we
        // alone own (the caller gave up their `Frame`s, they are in no other
        // ring), each staged once.
        let n = unsafe { io.tx.produce(&io.staged[..k]) };
        for d in &io.staged[..n] {
            track(
                &mut self.owner,
                self.frame_shift,
                d.addr(),
                Owner::Staged(p),
                Owner::Tx(p),
            );
        }
        io.staged.drain(..n);
        io.tx_or_comp += n;
        io.counters.tx_frames += n as u64;
        n
    }

    /// Puts the staged frames of `port` into its TX ring and, if the ring
    /// holds descriptors and the kernel asks for a wakeup (always the case in
    /// copy mode, where `sendto` does the transmitting, at most
    /// `XDP_MAX_TX_SKB_BUDGET` frames per call), kicks it with `sendto`.
    /// Returns the number of frames put into the ring.
    #[inline]
    pub fn flush_tx(&mut self, port: Port) -> io::Result<usize> {
        let p = port.index();
        let n = self.produce_staged(p);
        let io = &mut self.ports[p];
        if io.tx_or_comp > 0 && io.tx.needs_wakeup() {
            let in_ring = io.tx_size - io.tx.nb_free_exact() as usize;
            if in_ring > 0 {
                io.tx.wakeup()?;
                io.counters.tx_kicks += 1;
            }
        }
        Ok(n)
    }

    /// Takes every completed TX frame of both ports back into the free list;
    /// returns how many.
    #[inline]
    pub fn reap_completions(&mut self) -> usize {
        let mut total = 0;
        for p in 0..2 {
            loop {
                let io = &mut self.ports[p];
                let want = io.tx_or_comp.min(self.scratch.len());
                if want == 0 {
                    break;
                }
                // SAFETY: the completion ring only returns addresses of
                // frames of `self.umem` that we put into the TX ring; they
                // are written into our scratch array.
                let n = unsafe { io.comp.consume(&mut self.scratch[..want]) };
                if n == 0 {
                    break;
                }
                io.tx_or_comp -= n;
                io.counters.tx_completed += n as u64;
                for d in &self.scratch[..n] {
                    track(
                        &mut self.owner,
                        self.frame_shift,
                        d.addr(),
                        Owner::Tx(p),
                        Owner::Free,
                    );
                    self.free.push(*d);
                }
                total += n;
                if n < want {
                    break;
                }
            }
        }
        total
    }

    /// Moves frames from the free list into both fill rings (alternating
    /// which port goes first), keeping
    /// [`alloc_reserve`](super::XskConfig::alloc_reserve) frames back for
    /// [`alloc`](Self::alloc). Wakes the driver (`poll`) if a fill ring
    /// asks for it. Returns how many frames were given.
    #[inline]
    pub fn refill(&mut self) -> io::Result<usize> {
        let first = self.refill_first;
        self.refill_first ^= 1;
        let mut total = 0;
        for i in 0..2 {
            let p = first ^ i;
            let avail = self.free.len().saturating_sub(self.reserve);
            let io = &mut self.ports[p];
            if avail > 0 {
                let room = io.fill.nb_free(avail as u32) as usize;
                let k = room.min(avail).min(io.fill_size);
                if k > 0 {
                    let start = self.free.len() - k;
                    // SAFETY: frames on the free list belong to `self.umem`
                    // and are ours alone: in no ring, not held by the caller.
                    let n = unsafe { io.fill.produce(&self.free[start..]) };
                    for d in &self.free[start..start + n] {
                        track(
                            &mut self.owner,
                            self.frame_shift,
                            d.addr(),
                            Owner::Free,
                            Owner::Fill(p),
                        );
                    }
                    self.free.drain(start..start + n);
                    io.fill_or_rx += n;
                    io.counters.fill_frames += n as u64;
                    total += n;
                }
            }
            if io.fill.needs_wakeup() {
                io.fill.wakeup(io.rx.fd_mut(), 0)?;
                io.counters.fill_wakeups += 1;
            }
        }
        Ok(total)
    }

    /// Sleeps until a frame is received on either port or `timeout_ms`
    /// passes (`poll`); `Ok(true)` if something is readable. For idle
    /// periods; the fast path never calls it.
    pub fn wait_rx(&mut self, timeout_ms: i32) -> io::Result<bool> {
        let fds = [
            self.ports[0].rx.fd().as_raw_fd(),
            self.ports[1].rx.fd().as_raw_fd(),
        ];
        sys::poll_readable(&fds, timeout_ms)
    }

    /// The kernel's statistics of `port`'s socket (`XDP_STATISTICS`).
    pub fn stats(&self, port: Port) -> io::Result<XskStats> {
        self.ports[port.index()]
            .rx
            .fd()
            .xdp_statistics()
            .map(XskStats::from)
    }

    /// The work counters of `port`.
    pub fn counters(&self, port: Port) -> PortCounters {
        self.ports[port.index()].counters
    }

    /// Frames not in the free list: held by the caller, staged, or owned by
    /// the kernel (fill/RX and TX/completion sides).
    pub fn frames_in_flight(&self) -> usize {
        self.frame_count - self.free.len()
    }

    /// Where every frame is now, including the ring occupancies (which read
    /// the rings' shared producer/consumer indices).
    pub fn frame_counts(&mut self) -> FrameCounts {
        let mut c = FrameCounts {
            total: self.frame_count,
            free: self.free.len(),
            held: self.held,
            ..FrameCounts::default()
        };
        for (p, io) in self.ports.iter_mut().enumerate() {
            c.tx_staged[p] = io.staged.len();
            c.fill_or_rx[p] = io.fill_or_rx;
            c.tx_or_comp[p] = io.tx_or_comp;
            c.fill_ring[p] = io.fill_size - io.fill.nb_free_exact() as usize;
            c.rx_ring[p] = io.rx.nb_avail_exact() as usize;
            c.tx_ring[p] = io.tx_size - io.tx.nb_free_exact() as usize;
            c.comp_ring[p] = io.comp.nb_avail_exact() as usize;
        }
        c
    }

    /// Checks that every frame is accounted for: the places add up to the
    /// UMEM size, the caller holds exactly `caller_held` frames (more
    /// handed out means the caller dropped a [`Frame`]: a leak), and the
    /// rings hold no more than was given to the kernel. Debug builds also
    /// compare against the per-frame ownership table.
    pub fn check_conservation(
        &mut self,
        caller_held: usize,
    ) -> Result<FrameCounts, ConservationError> {
        let c = self.frame_counts();
        let fail = |reason: String| {
            Err(ConservationError {
                reason,
                counts: Box::new(c),
            })
        };
        if c.accounted() != c.total {
            return fail(format!(
                "{} frames accounted for, {} in the UMEM",
                c.accounted(),
                c.total
            ));
        }
        if c.held != caller_held {
            return fail(format!(
                "{} frames handed to the caller, who holds {caller_held}",
                c.held
            ));
        }
        for p in 0..2 {
            if c.fill_ring[p] + c.rx_ring[p] > c.fill_or_rx[p] {
                return fail(format!(
                    "port {p}: fill + RX rings exceed the frames given for RX"
                ));
            }
            if c.tx_ring[p] + c.comp_ring[p] > c.tx_or_comp[p] {
                return fail(format!(
                    "port {p}: TX + completion rings exceed the frames given for TX"
                ));
            }
        }
        if cfg!(debug_assertions) {
            let count = |o: Owner| self.owner.iter().filter(|&&x| x == o).count();
            let table = [
                ("free", count(Owner::Free), c.free),
                ("held", count(Owner::Held), c.held),
                ("staged A", count(Owner::Staged(0)), c.tx_staged[0]),
                ("staged B", count(Owner::Staged(1)), c.tx_staged[1]),
                ("fill A", count(Owner::Fill(0)), c.fill_or_rx[0]),
                ("fill B", count(Owner::Fill(1)), c.fill_or_rx[1]),
                ("tx A", count(Owner::Tx(0)), c.tx_or_comp[0]),
                ("tx B", count(Owner::Tx(1)), c.tx_or_comp[1]),
            ];
            for (what, table_n, counter_n) in table {
                if table_n != counter_n {
                    return fail(format!(
                        "{what}: ownership table {table_n}, counter {counter_n}"
                    ));
                }
            }
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send<T: Send>() {}

    #[test]
    fn worker_state_moves_to_a_pinned_thread() {
        assert_send::<QueuePair>();
        assert_send::<Frame>();
    }

    #[test]
    fn counts_add_up() {
        let c = FrameCounts {
            total: 10,
            free: 1,
            held: 2,
            tx_staged: [1, 0],
            fill_or_rx: [2, 2],
            tx_or_comp: [1, 1],
            ..FrameCounts::default()
        };
        assert_eq!(c.accounted(), 10);
    }
}
