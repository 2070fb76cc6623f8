//! One worker's queue: a UMEM shared by N ports, the frame free list, and
//! the ring operations a run-to-completion loop needs, over any
//! [`Backend`] (the kernel's AF_XDP sockets, or memory in tests).

use std::{
    io,
    sync::atomic::{AtomicU32, Ordering},
};

use serde::{Deserialize, Serialize};

use crate::ring::{Backend, Desc};
use crate::XskStats;

/// Distinguishes the UMEMs of one process, so that a [`Frame`] can never be
/// used with a queue it does not belong to.
static NEXT_POOL: AtomicU32 = AtomicU32::new(1);

/// A UMEM frame owned by the caller: received with [`Queue::rx_batch`] or
/// taken with [`Queue::alloc`].
///
/// It is not `Clone`: holding it is the right to touch the frame's bytes
/// (through [`Queue::data`] and [`Queue::buf_mut`]). It must go back
/// through [`Queue::tx_push`] or [`Queue::free`]; a dropped `Frame` is a
/// leaked UMEM frame, which [`Queue::check_conservation`] reports.
#[derive(Debug)]
#[must_use = "a Frame must be transmitted (Queue::tx_push) or freed (Queue::free), or it leaks"]
pub struct Frame {
    addr: u64,
    len: u32,
    cap: u32,
    pool: u32,
}

impl Frame {
    /// Current packet length in bytes.
    #[inline]
    pub fn len(&self) -> usize {
        self.len as usize
    }

    /// `true` when the packet is empty (a freshly allocated frame).
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes available from the packet start to the end of the frame: the
    /// largest length [`Queue::set_len`] accepts.
    #[inline]
    pub fn capacity(&self) -> usize {
        self.cap as usize
    }

    /// Offset of the packet in the UMEM (the descriptor address).
    #[inline]
    pub fn addr(&self) -> u64 {
        self.addr
    }
}

/// Where the frames of a [`Queue`] are. Per port, "fill or RX" counts
/// frames given to the kernel through the fill ring and not yet taken back
/// from the RX ring, and "TX or completion" frames given through the TX
/// ring and not yet taken back from the completion ring; the ring levels
/// are the part of those still sitting in a ring.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FrameCounts {
    /// Frames in the UMEM.
    pub total: usize,
    /// In the worker's free list.
    pub free: usize,
    /// Handed to the caller and not given back.
    pub held: usize,
    /// Per port: queued with [`Queue::tx_push`], not yet in the TX ring.
    pub tx_staged: Vec<usize>,
    /// Per port: given to the kernel for RX (fill ring, kernel, RX ring).
    pub fill_or_rx: Vec<usize>,
    /// Per port: given to the kernel for TX (TX ring, kernel, completion ring).
    pub tx_or_comp: Vec<usize>,
    /// Per port: entries in the fill ring now.
    pub fill_ring: Vec<usize>,
    /// Per port: entries in the RX ring now.
    pub rx_ring: Vec<usize>,
    /// Per port: entries in the TX ring now.
    pub tx_ring: Vec<usize>,
    /// Per port: entries in the completion ring now.
    pub comp_ring: Vec<usize>,
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

/// [`Queue::check_conservation`] found frames unaccounted for.
#[derive(Debug, Clone, thiserror::Error)]
#[error("UMEM frame conservation violated: {reason} ({counts:?})")]
pub struct ConservationError {
    /// What did not add up.
    pub reason: String,
    /// The counts at the time of the check.
    pub counts: Box<FrameCounts>,
}

/// A fill-ring wakeup that failed, and on which port.
#[derive(Debug, thiserror::Error)]
#[error("fill ring wakeup of port {port}: {source}")]
pub struct RefillError {
    /// The port whose wakeup failed.
    pub port: usize,
    /// What `poll` said.
    pub source: io::Error,
}

/// Per-port work and error counters of a [`Queue`] (plain integers owned
/// by the worker).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
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
    /// [`Queue::tx_push`] refusals: staging area and TX ring full.
    pub tx_full: u64,
    /// [`Queue::tx_push`] refusals: empty or oversized frame.
    pub tx_bad_len: u64,
    /// Frames put into the fill ring.
    pub fill_frames: u64,
    /// `poll` wakeups issued because the fill ring needed one.
    pub fill_wakeups: u64,
    /// TX kicks (`sendto`) that failed. `EAGAIN`/`EBUSY` mean the kernel
    /// was busy (the frames stay in the ring and go out later); `ENXIO` or
    /// `ENETDOWN` mean the interface went away or down.
    pub tx_kick_errors: u64,
    /// Fill-ring wakeups (`poll`) that failed.
    pub fill_wakeup_errors: u64,
    /// The `errno` of the last failure counted above (0: none yet).
    pub last_errno: i32,
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

/// Per-port bookkeeping of a [`Queue`].
#[derive(Debug)]
struct PortBook {
    staged: Vec<Desc>,
    fill_or_rx: usize,
    tx_or_comp: usize,
    fill_size: usize,
    counters: PortCounters,
}

/// One worker's AF_XDP I/O: one queue id of N ports, all on one shared
/// UMEM, so forwarding a frame from one port to another moves its
/// descriptor, never its bytes.
///
/// The worker owns the free list. Every frame is at all times in exactly
/// one place: free list, fill ring (or the kernel, or the RX ring), held by
/// the caller, TX staging, TX ring (or the kernel, or the completion ring).
/// [`frame_counts`](Self::frame_counts) and
/// [`check_conservation`](Self::check_conservation) account for all of
/// them; debug builds also track every frame's owner and panic on a
/// transition that does not match (a frame freed twice, sent while in a
/// ring).
///
/// A loop turn (see [`crate::driver`]): per port [`rx_batch`](Self::rx_batch),
/// process, [`tx_push`](Self::tx_push) / [`free`](Self::free);
/// [`flush_tx`](Self::flush_tx); [`reap_completions`](Self::reap_completions);
/// [`refill`](Self::refill). Only the wakeups the rings ask for make
/// system calls.
pub struct Queue<B: Backend> {
    backend: B,
    ports: Vec<PortBook>,
    base: *mut u8,
    mem_len: usize,
    pool: u32,
    queue_id: u32,
    frame_shift: u32,
    frame_count: usize,
    batch: usize,
    reserve: usize,
    free: Vec<u64>,
    scratch: Vec<Desc>,
    held: usize,
    refill_first: usize,
    owner: Vec<Owner>,
}

// SAFETY: `base` points into the UMEM mapping owned by `backend`, which
// moves with the queue (`B: Send`); the queue is used by one thread at a
// time (every mutating method takes `&mut self`), and the views it hands
// out borrow it.
unsafe impl<B: Backend + Send> Send for Queue<B> {}

impl<B: Backend> std::fmt::Debug for Queue<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = (0..self.ports.len()).map(|p| self.name(p)).collect();
        f.debug_struct("Queue")
            .field("ports", &names)
            .field("queue_id", &self.queue_id)
            .field("frame_count", &self.frame_count)
            .field("free", &self.free.len())
            .field("held", &self.held)
            .finish_non_exhaustive()
    }
}

/// Debug builds: checks and records an ownership transition.
#[inline]
fn track(owner: &mut [Owner], frame_shift: u32, addr: u64, from: Owner, to: Owner) {
    if cfg!(debug_assertions) {
        let i = (addr >> frame_shift) as usize;
        assert!(i < owner.len(), "frame address {addr:#x} outside the UMEM");
        assert_eq!(
            owner[i], from,
            "frame {i} (addr {addr:#x}) expected {from:?}, moving to {to:?}"
        );
        owner[i] = to;
    }
}

impl<B: Backend> Queue<B> {
    /// A queue over `backend` for queue id `queue_id`: every UMEM frame
    /// starts on the free list; nothing is given to the fill rings until
    /// the first [`refill`](Self::refill).
    ///
    /// `batch` is the largest RX batch and the TX staging size per port;
    /// `reserve` frames are kept back from the fill rings for
    /// [`alloc`](Self::alloc).
    pub fn new(backend: B, queue_id: u32, batch: usize, reserve: usize) -> Self {
        let frame_size = backend.frame_size();
        assert!(frame_size.is_power_of_two(), "frame size {frame_size}");
        let (base, mem_len) = backend.memory();
        let mut free = backend.initial_frames();
        for &a in &free {
            // The packet may start inside its chunk (the kernel's headroom).
            let chunk = a as usize & !(frame_size - 1);
            assert!(
                chunk + frame_size <= mem_len,
                "frame {a:#x} outside the UMEM"
            );
        }
        free.reverse(); // popped from the end: first frames first
        let frame_count = free.len();
        // Large enough for a whole fill ring, so one refill can fill it.
        let scratch_len = (0..backend.port_count())
            .map(|p| backend.ring_sizes(p).0)
            .fold(batch.max(256), usize::max);
        let ports = (0..backend.port_count())
            .map(|p| PortBook {
                staged: Vec::with_capacity(batch),
                fill_or_rx: 0,
                tx_or_comp: 0,
                fill_size: backend.ring_sizes(p).0,
                counters: PortCounters::default(),
            })
            .collect();
        Queue {
            backend,
            ports,
            base,
            mem_len,
            pool: NEXT_POOL.fetch_add(1, Ordering::Relaxed),
            queue_id,
            frame_shift: frame_size.trailing_zeros(),
            frame_count,
            batch,
            reserve,
            free,
            scratch: vec![Desc::default(); scratch_len],
            held: 0,
            refill_first: 0,
            owner: if cfg!(debug_assertions) {
                vec![Owner::Free; mem_len >> frame_size.trailing_zeros()]
            } else {
                Vec::new()
            },
        }
    }

    /// The backend (rings and UMEM).
    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// The backend, mutably (tests drive the in-memory kernel through it).
    pub fn backend_mut(&mut self) -> &mut B {
        &mut self.backend
    }

    /// The queue id of every socket.
    pub fn queue_id(&self) -> u32 {
        self.queue_id
    }

    /// Number of ports.
    pub fn port_count(&self) -> usize {
        self.ports.len()
    }

    /// The interface name of `port`.
    pub fn name(&self, port: usize) -> &str {
        self.backend.name(port)
    }

    /// Whether `port` receives (has its socket steered to).
    pub fn receives(&self, port: usize) -> bool {
        self.backend.receives(port)
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
        assert_eq!(frame.pool, self.pool, "Frame used with another Queue");
    }

    #[inline]
    pub(crate) fn frame(&self, addr: u64, len: u32) -> Frame {
        let size = 1u64 << self.frame_shift;
        let cap = size - (addr & (size - 1));
        // The chunk must lie inside the mapping: `buf_mut` relies on it.
        assert!(
            addr + cap <= self.mem_len as u64,
            "descriptor {addr:#x} outside the UMEM"
        );
        Frame {
            addr,
            len: len.min(cap as u32),
            cap: cap as u32,
            pool: self.pool,
        }
    }

    /// Takes up to [`batch`](Self::batch) received frames from `port`'s RX
    /// ring and appends them to `out`; returns how many. Reserve `batch`
    /// capacity in `out` once and no call allocates.
    #[inline]
    pub fn rx_batch(&mut self, port: usize, out: &mut Vec<Frame>) -> usize {
        let batch = self.batch;
        let n = self.backend.rx_consume(port, &mut self.scratch[..batch]);
        if n == 0 {
            return 0;
        }
        let book = &mut self.ports[port];
        debug_assert!(n <= book.fill_or_rx);
        book.fill_or_rx -= n;
        book.counters.rx_frames += n as u64;
        book.counters.rx_batches += 1;
        self.held += n;
        for i in 0..n {
            let d = self.scratch[i];
            track(
                &mut self.owner,
                self.frame_shift,
                d.addr,
                Owner::Fill(port),
                Owner::Held,
            );
            out.push(self.frame(d.addr, d.len));
        }
        n
    }

    /// The packet bytes of `frame` (its current length).
    #[inline]
    pub fn data<'a>(&'a self, frame: &'a Frame) -> &'a [u8] {
        self.check_pool(frame);
        // SAFETY: `frame` belongs to this UMEM (pool checked) and its chunk
        // lies inside the mapping (checked when the Frame was made), which
        // lives as long as `self`. The caller holds the frame, so it is in
        // no ring and the kernel does not touch it; no mutable view exists
        // while `frame` is borrowed shared (`buf_mut` needs `&mut Frame`).
        unsafe { std::slice::from_raw_parts(self.base.add(frame.addr as usize), frame.len()) }
    }

    /// The `n` bytes in front of the packet of `frame` inside its UMEM
    /// chunk (where the XDP stage's metadata lands), or `None` when the
    /// packet starts less than `n` bytes into its chunk.
    #[inline]
    pub fn in_front<'a>(&'a self, frame: &'a Frame, n: usize) -> Option<&'a [u8]> {
        self.check_pool(frame);
        let offset = frame.addr as usize & ((1usize << self.frame_shift) - 1);
        if offset < n {
            return None;
        }
        // SAFETY: as in `data`: the `n` bytes end where the packet starts and
        // begin inside the same chunk (`offset >= n`), which lies inside the
        // mapping; the caller holds the frame, so the kernel does not write
        // it, and no mutable view exists while `frame` is borrowed shared.
        Some(unsafe { std::slice::from_raw_parts(self.base.add(frame.addr as usize - n), n) })
    }

    /// The whole buffer of `frame`, from the packet start to the end of its
    /// UMEM chunk ([`Frame::capacity`] bytes), so a packet can be rewritten
    /// or grown in place; set the new length with [`set_len`](Self::set_len)
    /// afterwards.
    #[inline]
    pub fn buf_mut<'a>(&'a self, frame: &'a mut Frame) -> &'a mut [u8] {
        self.check_pool(frame);
        // SAFETY: as in `data`, and `frame` is borrowed mutably for `'a`,
        // so this is the only view of the chunk: the caller holds the only
        // `Frame` for it, and the kernel only uses frames that are in a ring.
        unsafe {
            std::slice::from_raw_parts_mut(self.base.add(frame.addr as usize), frame.capacity())
        }
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
        frame.len = len as u32;
    }

    /// Takes a frame from the free list (empty, length 0), or `None` when
    /// the free list is empty.
    #[inline]
    pub fn alloc(&mut self) -> Option<Frame> {
        let addr = self.free.pop()?;
        track(
            &mut self.owner,
            self.frame_shift,
            addr,
            Owner::Free,
            Owner::Held,
        );
        self.held += 1;
        Some(self.frame(addr, 0))
    }

    /// Gives a frame back to the free list (a dropped packet).
    #[inline]
    pub fn free(&mut self, frame: Frame) {
        self.check_pool(&frame);
        track(
            &mut self.owner,
            self.frame_shift,
            frame.addr,
            Owner::Held,
            Owner::Free,
        );
        self.held -= 1;
        self.free.push(frame.addr);
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
    pub fn tx_push(&mut self, port: usize, frame: Frame) -> Result<(), Frame> {
        self.check_pool(&frame);
        if frame.is_empty() || frame.len() > frame.capacity() {
            self.ports[port].counters.tx_bad_len += 1;
            return Err(frame);
        }
        if self.ports[port].staged.len() >= self.batch {
            self.produce_staged(port);
            if self.ports[port].staged.len() >= self.batch {
                self.ports[port].counters.tx_full += 1;
                return Err(frame);
            }
        }
        track(
            &mut self.owner,
            self.frame_shift,
            frame.addr,
            Owner::Held,
            Owner::Staged(port),
        );
        self.held -= 1;
        self.ports[port].staged.push(Desc {
            addr: frame.addr,
            len: frame.len,
        });
        Ok(())
    }

    /// Moves as many staged frames of `port` as fit into its TX ring.
    fn produce_staged(&mut self, port: usize) -> usize {
        let book = &mut self.ports[port];
        if book.staged.is_empty() {
            return 0;
        }
        let k = self.backend.tx_room(port, book.staged.len());
        if k == 0 {
            return 0;
        }
        let n = self.backend.tx_produce(port, &book.staged[..k]);
        for d in &book.staged[..n] {
            track(
                &mut self.owner,
                self.frame_shift,
                d.addr,
                Owner::Staged(port),
                Owner::Tx(port),
            );
        }
        book.staged.drain(..n);
        book.tx_or_comp += n;
        book.counters.tx_frames += n as u64;
        n
    }

    /// Puts the staged frames of `port` into its TX ring and, if the ring
    /// holds descriptors and the kernel asks for a wakeup (always the case in
    /// copy mode, where `sendto` does the transmitting, at most
    /// `XDP_MAX_TX_SKB_BUDGET` frames per call), kicks it with `sendto`.
    /// Returns the number of frames put into the ring.
    ///
    /// A failed kick is counted ([`PortCounters::tx_kick_errors`]) and
    /// returned; the frames stay in the ring and the next flush retries.
    #[inline]
    pub fn flush_tx(&mut self, port: usize) -> io::Result<usize> {
        let n = self.produce_staged(port);
        if self.ports[port].tx_or_comp > 0
            && self.backend.tx_needs_wakeup(port)
            && self.backend.tx_pending(port) > 0
        {
            let c = &mut self.ports[port].counters;
            match self.backend.tx_wakeup(port) {
                Ok(()) => c.tx_kicks += 1,
                Err(e) => {
                    c.tx_kick_errors += 1;
                    c.last_errno = e.raw_os_error().unwrap_or(-1);
                    return Err(e);
                }
            }
        }
        Ok(n)
    }

    /// Takes every completed TX frame of every port back into the free
    /// list; returns how many.
    #[inline]
    pub fn reap_completions(&mut self) -> usize {
        let mut total = 0;
        for p in 0..self.ports.len() {
            loop {
                let want = self.ports[p].tx_or_comp.min(self.scratch.len());
                if want == 0 {
                    break;
                }
                let n = self.backend.comp_consume(p, &mut self.scratch[..want]);
                if n == 0 {
                    break;
                }
                let book = &mut self.ports[p];
                book.tx_or_comp -= n;
                book.counters.tx_completed += n as u64;
                for d in &self.scratch[..n] {
                    track(
                        &mut self.owner,
                        self.frame_shift,
                        d.addr,
                        Owner::Tx(p),
                        Owner::Free,
                    );
                    self.free.push(d.addr);
                }
                total += n;
                if n < want {
                    break;
                }
            }
        }
        total
    }

    /// Moves frames from the free list into the fill rings of the receiving
    /// ports (rotating which port goes first), keeping
    /// `reserve` frames back for [`alloc`](Self::alloc). Wakes the driver
    /// (`poll`) if a fill ring asks for it. Returns how many frames were
    /// given.
    ///
    /// A failed wakeup is counted ([`PortCounters::fill_wakeup_errors`])
    /// and the first one is returned with its port, after every port was
    /// served.
    #[inline]
    pub fn refill(&mut self) -> Result<usize, RefillError> {
        let nports = self.ports.len();
        let first = self.refill_first;
        self.refill_first = (first + 1) % nports.max(1);
        let mut total = 0;
        let mut err = None;
        for i in 0..nports {
            let p = (first + i) % nports;
            if !self.backend.receives(p) {
                continue;
            }
            let avail = self.free.len().saturating_sub(self.reserve);
            if avail > 0 {
                let want = avail.min(self.ports[p].fill_size).min(self.scratch.len());
                let k = self.backend.fill_room(p, want);
                if k > 0 {
                    let start = self.free.len() - k;
                    for (s, &a) in self.scratch.iter_mut().zip(&self.free[start..]) {
                        *s = Desc { addr: a, len: 0 };
                    }
                    let n = self.backend.fill_produce(p, &self.scratch[..k]);
                    for &a in &self.free[start..start + n] {
                        track(
                            &mut self.owner,
                            self.frame_shift,
                            a,
                            Owner::Free,
                            Owner::Fill(p),
                        );
                    }
                    self.free.drain(start..start + n);
                    let book = &mut self.ports[p];
                    book.fill_or_rx += n;
                    book.counters.fill_frames += n as u64;
                    total += n;
                }
            }
            if self.backend.fill_needs_wakeup(p) {
                let c = &mut self.ports[p].counters;
                match self.backend.fill_wakeup(p) {
                    Ok(()) => c.fill_wakeups += 1,
                    Err(e) => {
                        c.fill_wakeup_errors += 1;
                        c.last_errno = e.raw_os_error().unwrap_or(-1);
                        err.get_or_insert(RefillError { port: p, source: e });
                    }
                }
            }
        }
        match err {
            Some(e) => Err(e),
            None => Ok(total),
        }
    }

    /// Sleeps until a frame is received on a receiving port or
    /// `timeout_ms` passes (`poll`); `Ok(true)` if something is readable.
    /// For idle periods; the fast path never calls it.
    pub fn wait_rx(&mut self, timeout_ms: i32) -> io::Result<bool> {
        self.backend.wait_rx(timeout_ms)
    }

    /// The kernel's statistics of `port`'s socket (`XDP_STATISTICS`).
    pub fn stats(&self, port: usize) -> io::Result<XskStats> {
        self.backend.stats(port)
    }

    /// The work counters of `port`.
    pub fn counters(&self, port: usize) -> PortCounters {
        self.ports[port].counters
    }

    /// Frames not in the free list: held by the caller, staged, or owned by
    /// the kernel (fill/RX and TX/completion sides).
    pub fn frames_in_flight(&self) -> usize {
        self.frame_count - self.free.len()
    }

    /// Where every frame is now, including the ring levels (which read the
    /// rings' shared producer/consumer indices).
    pub fn frame_counts(&mut self) -> FrameCounts {
        let mut c = FrameCounts {
            total: self.frame_count,
            free: self.free.len(),
            held: self.held,
            ..FrameCounts::default()
        };
        for (p, book) in self.ports.iter().enumerate() {
            let l = self.backend.levels(p);
            c.tx_staged.push(book.staged.len());
            c.fill_or_rx.push(book.fill_or_rx);
            c.tx_or_comp.push(book.tx_or_comp);
            c.fill_ring.push(l.fill);
            c.rx_ring.push(l.rx);
            c.tx_ring.push(l.tx);
            c.comp_ring.push(l.comp);
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
        let fail = |reason: String, c: FrameCounts| {
            Err(ConservationError {
                reason,
                counts: Box::new(c),
            })
        };
        if c.accounted() != c.total {
            let reason = format!(
                "{} frames accounted for, {} in the UMEM",
                c.accounted(),
                c.total
            );
            return fail(reason, c);
        }
        if c.held != caller_held {
            let reason = format!(
                "{} frames handed to the caller, who holds {caller_held}",
                c.held
            );
            return fail(reason, c);
        }
        for p in 0..self.ports.len() {
            if c.fill_ring[p] + c.rx_ring[p] > c.fill_or_rx[p] {
                let reason = format!("port {p}: fill + RX rings exceed the frames given for RX");
                return fail(reason, c);
            }
            if c.tx_ring[p] + c.comp_ring[p] > c.tx_or_comp[p] {
                let reason =
                    format!("port {p}: TX + completion rings exceed the frames given for TX");
                return fail(reason, c);
            }
        }
        if cfg!(debug_assertions) {
            let count = |o: Owner| self.owner.iter().filter(|&&x| x == o).count();
            let unused = self.owner.len() - self.frame_count;
            let mut table = vec![
                ("free".to_string(), count(Owner::Free) - unused, c.free),
                ("held".to_string(), count(Owner::Held), c.held),
            ];
            for p in 0..self.ports.len() {
                table.push((
                    format!("staged {p}"),
                    count(Owner::Staged(p)),
                    c.tx_staged[p],
                ));
                table.push((format!("fill {p}"), count(Owner::Fill(p)), c.fill_or_rx[p]));
                table.push((format!("tx {p}"), count(Owner::Tx(p)), c.tx_or_comp[p]));
            }
            for (what, table_n, counter_n) in table {
                if table_n != counter_n {
                    let reason = format!("{what}: ownership table {table_n}, counter {counter_n}");
                    return fail(reason, c);
                }
            }
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_add_up() {
        let c = FrameCounts {
            total: 10,
            free: 1,
            held: 2,
            tx_staged: vec![1, 0],
            fill_or_rx: vec![2, 2],
            tx_or_comp: vec![1, 1],
            ..FrameCounts::default()
        };
        assert_eq!(c.accounted(), 10);
    }
}
